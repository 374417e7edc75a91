"""Displayed equations as SymPy expressions, with the hand-set LaTeX the Markdown and LaTeX documents show.

A stage's equation is either a SymPy object (``Eq`` of derived expressions) or a
:class:`Display`: the SymPy parts of one displayed line (``a = b, \\quad c = d``) and,
where the derivation was typeset by hand, that LaTeX.  The HTML page prints the parts
through SymPy's MathML printer; Markdown and LaTeX keep the hand-set form.  Two small
SymPy objects stand for the notation SymPy has no class for: :class:`Relation`
(``ξ ∼ N(0, ν²I)``, ``ŷ → …``) and :class:`Norm` (``‖x‖``).
"""

from dataclasses import dataclass

import sympy as sp
from sympy.core.symbol import Str


@dataclass(frozen=True)
class Display:
    """One displayed line of a derivation.

    Attributes
    ----------
    latex : str or None
        The hand-set LaTeX of the line; None prints the parts with :func:`sympy.latex`.
    parts : tuple
        SymPy objects shown side by side (set apart by a quad), or read as one chain
        ``parts[0] = parts[1] = …`` when ``chain`` is true.
    chain : bool
    """

    latex: str
    parts: tuple
    chain: bool = False

    def __post_init__(self):
        if not self.parts or not all(isinstance(p, sp.Basic) for p in self.parts):
            raise TypeError(f"Display: the parts must be SymPy objects, got {self.parts!r}")

    def to_latex(self):
        """Return the line as LaTeX: the hand-set form, or SymPy's LaTeX of the parts."""
        if self.latex is not None:
            return self.latex
        return (" = " if self.chain else r", \quad ").join(sp.latex(p) for p in self.parts)


class Relation(sp.Basic):
    """``lhs OP rhs`` for a relation SymPy has no class for (``∼``, ``→``, ``∈``).

    Parameters
    ----------
    lhs, rhs : sympy.Basic
    op : str
        The relation's character, e.g. ``"∼"``.
    """

    def __new__(cls, lhs, op, rhs):
        return super().__new__(cls, sp.sympify(lhs), Str(op), sp.sympify(rhs))

    @property
    def lhs(self):
        """The left-hand side."""
        return self.args[0]

    @property
    def op(self):
        """The relation's character."""
        return self.args[1].name

    @property
    def rhs(self):
        """The right-hand side."""
        return self.args[2]

    def _latex(self, printer):
        ops = {"∼": r"\sim", "→": r"\to", "∈": r"\in", "≈": r"\approx"}
        return f"{printer._print(self.lhs)} {ops.get(self.op, self.op)} {printer._print(self.rhs)}"


class Norm(sp.Expr):
    """The Euclidean norm ``‖x‖`` of a vector expression (SymPy has none for matrix expressions); a scalar."""

    is_commutative = True

    def __new__(cls, arg):
        return super().__new__(cls, sp.sympify(arg))

    def _latex(self, printer):
        return rf"\left\| {printer._print(self.args[0])} \right\|"
