"""Render derivation blocks as one self-contained HTML page with MathML (``attnflow derive --format html``).

Displayed equations are printed from their SymPy expressions by SymPy's MathML
presentation printer (:class:`MathMLPrinter` adapts it to the derivation's notation:
symbol names such as ``a_{12}`` or ``\\Gamma_{nk}``, ``⊤``, partial derivatives, sums
over several indices, block matrices).  The math inside paragraphs is short LaTeX
written by hand in the stages' texts; :func:`tex_to_mathml` translates the subset
they use.  The page needs no script, font or file from anywhere: any browser with
MathML (Firefox, Chromium ≥ 109, Safari) shows it offline.
"""

import html
import re

import sympy as sp
from sympy.printing.mathml import MathMLPresentationPrinter
from sympy.printing.pretty.pretty_symbology import greek_unicode
from sympy.printing.conventions import split_super_sub

from .notation import Display

# Chromium draws U+02D9 (the dot accent) too faintly to see, so the dot is U+22C5.
_ACCENTS = {"hat": "\u02c6", "dot": "\u22c5", "tilde": "\u02dc", "bar": "\u00af"}
_NAMES = {**greek_unicode, "ell": "ℓ", "nabla": "∇", "epsilon": "ε", "varepsilon": "ε"}


class MathMLPrinter(MathMLPresentationPrinter):
    """SymPy's MathML presentation printer, with the notation of the derivation."""

    def _identifier(self, text):
        """``<mi>``, ``<mn>`` or a row of them for one name or index (``12`` → mn, ``nk`` → n, k)."""
        if text.isdigit():
            return self._element("mn", text)
        if text.isalnum() and text not in _NAMES and 1 < len(text) <= 4:
            row = self.dom.createElement("mrow")
            for ch in text:
                row.appendChild(self._element("mn" if ch.isdigit() else "mi", ch))
            return row
        return self._element("mi", _NAMES.get(text, text))

    def _element(self, tag, text, **attributes):
        element = self.dom.createElement(tag)
        element.appendChild(self.dom.createTextNode(text))
        for key, value in attributes.items():
            element.setAttribute(key, value)
        return element

    def _nested(self, scripts):
        """``E_xi_q``'s subscripts as ``ξ_q``: the first script carries the next."""
        x = self._identifier(scripts[0])
        for script in scripts[1:]:
            sub = self.dom.createElement("msub")
            sub.appendChild(x)
            sub.appendChild(self._identifier(script))
            x = sub
        return x

    def _base(self, name):
        for suffix, accent in _ACCENTS.items():
            if name.endswith(suffix) and len(name) > len(suffix):
                over = self.dom.createElement("mover")
                over.setAttribute("accent", "true")
                over.appendChild(self._base(name[:-len(suffix)]))
                over.appendChild(self._element("mo", accent))
                return over
        return self._element("mi", _NAMES.get(name, name))

    def _name(self, name):
        """A symbol or function name as MathML: ``a_{12}``, ``\\hat{y}``, ``Gamma_nk``, ``H^(k)``, ``Sdot_il``."""
        name = re.sub(r"\\(hat|dot|tilde|bar)\s*\{?(\w)\}?", r"\2\1", name)
        base, supers, subs = split_super_sub(name.replace("\\", "").replace("{", "").replace("}", ""))
        x = self._base(base)
        scripts = [("msub", subs), ("msup", supers)]
        if subs and supers:
            scripts = [("msubsup", subs + supers)]
        for tag, parts in scripts:
            if not parts:
                continue
            wrapper = self.dom.createElement(tag)
            wrapper.appendChild(x)
            if tag == "msubsup":
                wrapper.appendChild(self._nested(subs))
                wrapper.appendChild(self._nested(supers))
            else:
                wrapper.appendChild(self._nested(parts))
            x = wrapper
        return x

    def _print_Symbol(self, sym, style="plain"):
        return self._name(sym.name)

    def _print_MatrixSymbol(self, sym):
        return self._name(sym.name)

    def _print_AppliedUndef(self, e):
        row = self.dom.createElement("mrow")
        row.appendChild(self._name(type(e).__name__))
        row.appendChild(self._paren_comma_separated(*e.args))
        return row

    def _print_Exp1(self, e):
        return self._element("mi", "e")

    def _print_Transpose(self, expr):
        sup = self.dom.createElement("msup")
        if isinstance(expr.arg, sp.MatrixSymbol):
            sup.appendChild(self._print(expr.arg))
        else:
            row = self.dom.createElement("mrow")
            row.appendChild(self._l_paren())
            row.appendChild(self._print(expr.arg))
            row.appendChild(self._r_paren())
            sup.appendChild(row)
        sup.appendChild(self._element("mo", "⊤"))
        return sup

    def _print_MatMul(self, expr):
        # SymPy prints -η G Γ G as (−1) η G Γ G; write the sign once.
        coefficient, matrices = expr.as_coeff_matrices()
        if coefficient.could_extract_minus_sign():
            row = self.dom.createElement("mrow")
            row.appendChild(self._element("mo", "−"))
            factors = ([] if coefficient == -1 else [-coefficient]) + list(matrices)
            row.appendChild(self._print(sp.MatMul(*factors, evaluate=False) if len(factors) > 1 else factors[0]))
            return row
        return super()._print_MatMul(expr)

    def _print_KroneckerDelta(self, e):
        sub = self.dom.createElement("msub")
        sub.appendChild(self._element("mi", "δ"))
        row = self.dom.createElement("mrow")
        for index in e.args:
            row.appendChild(self._print(index))
        sub.appendChild(row)
        return sub

    def _print_DiagMatrix(self, e):
        row = self.dom.createElement("mrow")
        row.appendChild(self._element("mi", "diag"))
        row.appendChild(self._paren_comma_separated(e.args[0]))
        return row

    def _print_BlockMatrix(self, e):
        return self._print(e.blocks)

    def _big_operator(self, e, symbol):
        # SymPy lists the innermost index first; the outermost operator is written first.
        row = self.dom.createElement("mrow")
        for var, low, high in reversed(e.limits):
            op = self.dom.createElement("munderover")
            op.appendChild(self._element("mo", symbol))
            under = self.dom.createElement("mrow")
            under.appendChild(self._print(var))
            under.appendChild(self._element("mo", "="))
            under.appendChild(self._print(low))
            op.appendChild(under)
            op.appendChild(self._print(high))
            row.appendChild(op)
        row.appendChild(self.parenthesize(e.function, sp.printing.precedence.PRECEDENCE["Mul"]))
        return row

    def _print_Sum(self, e):
        return self._big_operator(e, "∑")

    def _print_Product(self, e):
        return self._big_operator(e, "∏")

    def _print_Derivative(self, e):
        # The derivation's derivatives are partial (a_m depends on every score).
        top = self.dom.createElement("mrow")
        bottom = self.dom.createElement("mrow")
        order = sum(count for _, count in e.variable_count)
        top.appendChild(self._power(self._element("mo", "∂"), order))
        for var, count in e.variable_count:
            bottom.appendChild(self._element("mo", "∂"))
            bottom.appendChild(self._power(self._print(var), count))
        frac = self.dom.createElement("mfrac")
        frac.appendChild(top)
        frac.appendChild(bottom)
        row = self.dom.createElement("mrow")
        row.appendChild(frac)
        row.appendChild(self._print(e.expr))
        return row

    def _power(self, element, power):
        if power == 1:
            return element
        sup = self.dom.createElement("msup")
        sup.appendChild(element)
        sup.appendChild(self._element("mn", str(power)))
        return sup

    def _print_Relation(self, e):
        row = self.dom.createElement("mrow")
        row.appendChild(self._print(e.lhs))
        row.appendChild(self._element("mo", e.op))
        row.appendChild(self._print(e.rhs))
        return row

    def _print_Norm(self, e):
        row = self.dom.createElement("mrow")
        row.appendChild(self._element("mo", "‖"))
        row.appendChild(self._print(e.args[0]))
        row.appendChild(self._element("mo", "‖"))
        return row


_ENTITY = re.compile(r"&(#x[0-9a-fA-F]+|#[0-9]+|[A-Za-z][A-Za-z0-9]*);")


def _characters(markup):
    """Character references (``&#x2211;``, ``&InvisibleTimes;``) as the characters, UTF-8 throughout."""
    def one(match):
        if match.group(1) in ("lt", "gt", "amp", "quot", "apos"):
            return match.group(0)
        text = html.unescape(match.group(0))
        return html.escape(text) if text in "<>&" else text
    markup = _ENTITY.sub(one, markup).replace("\u2146", "d")    # ⅆ: the differential, an upright d
    # SymPy writes the ASCII hyphen; browsers draw it as a hyphen, not as the minus sign.
    return markup.replace("<mo>-</mo>", "<mo>−</mo>").replace("<mn>-", "<mn>−")


def expression_mathml(expr):
    """Return a SymPy object as MathML presentation markup (no ``<math>`` wrapper).

    Parameters
    ----------
    expr : sympy.Basic

    Returns
    -------
    str

    Examples
    --------
    >>> import sympy as sp
    >>> expression_mathml(sp.Symbol("a_12") / 2)
    '<mrow><mfrac><msub><mi>a</mi><mn>12</mn></msub><mn>2</mn></mfrac></mrow>'
    """
    return _characters(MathMLPrinter().doprint(expr))


def equation_mathml(eq):
    """Return one displayed equation as a ``<math display="block">`` element.

    Parameters
    ----------
    eq : sympy.Basic or Display
        A SymPy object, or a :class:`~attnflow.derivations.notation.Display` whose parts are printed.

    Returns
    -------
    str

    Raises
    ------
    TypeError
        For an equation given only as LaTeX text (it has no expression to print).
    """
    if isinstance(eq, str):
        raise TypeError(f"a displayed equation needs its SymPy expression, got LaTeX only: {eq[:60]!r}")
    parts = eq.parts if isinstance(eq, Display) else (eq,)
    glue = '<mo>=</mo>' if isinstance(eq, Display) and eq.chain else '<mspace width="2em"/>'
    return '<math display="block">' + glue.join(expression_mathml(p) for p in parts) + "</math>"


# --- the LaTeX of the stages' texts ------------------------------------------------------

_TEX_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|[0-9]+(?:\.[0-9]+)?|[A-Za-z]|\s+|.", re.S)
_TEX_IDENTIFIERS = {**{name: ch for name, ch in greek_unicode.items() if name[0].isalpha()},
                    "ell": "ℓ", "infty": "∞", "partial": "∂", "nabla": "∇", "varepsilon": "ε", "epsilon": "ϵ",
                    "dots": "…", "ldots": "…", "cdots": "⋯"}
_TEX_OPERATORS = {"le": "≤", "leq": "≤", "ge": "≥", "geq": "≥", "ne": "≠", "neq": "≠", "approx": "≈",
                  "sim": "∼", "to": "→", "rightarrow": "→", "leftarrow": "←", "in": "∈", "times": "×",
                  "cdot": "⋅", "circ": "∘", "otimes": "⊗", "top": "⊤", "pm": "±", "propto": "∝", "mid": "∣",
                  "sum": "∑", "prod": "∏", "int": "∫", "|": "‖", "{": "{", "}": "}", "surd": "√", "star": "⋆"}
_TEX_FUNCTIONS = ("log", "exp", "max", "min", "sin", "cos", "det", "tr", "arg")
_TEX_SPACES = {",": "0.17em", ";": "0.28em", ":": "0.22em", " ": "0.28em", "quad": "1em", "qquad": "2em", "!": "0"}
_TEX_IGNORED = {"left", "right", "big", "Big", "bigl", "bigr", "Bigl", "Bigr", "textstyle", "displaystyle"}
_SCRIPT = dict(zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "𝒜ℬ𝒞𝒟ℰℱ𝒢ℋℐ𝒥𝒦ℒℳ𝒩𝒪𝒫𝒬ℛ𝒮𝒯𝒰𝒱𝒲𝒳𝒴𝒵"))
_DOUBLE_STRUCK = {"R": "ℝ", "N": "ℕ", "Z": "ℤ", "C": "ℂ", "Q": "ℚ", "E": "𝔼"}
_SCRIPT_FREE = re.compile(r"\s+")


class _TexReader:
    """A recursive reader of the LaTeX subset written in the stages' texts."""

    def __init__(self, tex):
        self.tokens = [t for t in _TEX_TOKEN.findall(tex) if not _SCRIPT_FREE.fullmatch(t)]
        self.pos = 0
        self.after = ""

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self):
        token = self.peek()
        self.pos += 1
        return token

    def row(self, until=None):
        items = []
        while self.peek() is not None and self.peek() != until:
            items.append(self.scripted())
        if until is not None:
            self.take()
        return items

    def scripted(self):
        self.after = ""
        base = self.atom()
        after = self.after                # the space after a function name goes after its scripts
        sub = sup = None
        while self.peek() in ("_", "^"):
            which = self.take()
            argument = self.argument()
            if which == "_":
                sub = argument
            else:
                sup = argument
        if sub is not None and sup is not None:
            return f"<msubsup>{base}{sub}{sup}</msubsup>{after}"
        if sub is not None:
            return f"<msub>{base}{sub}</msub>{after}"
        if sup is not None:
            return f"<msup>{base}{sup}</msup>{after}"
        return base + after

    def argument(self):
        """One argument: a braced group, or one token (``\\tfrac12`` reads 1, then 2)."""
        token = self.peek()
        if token is not None and token[0].isdigit() and len(token) > 1 and "." not in token:
            self.tokens[self.pos] = token[1:]
            return f"<mn>{token[0]}</mn>"
        return self.atom()

    def braced_text(self):
        if self.peek() != "{":
            return self.take() or ""
        self.take()
        depth, text = 1, []
        while self.peek() is not None:
            token = self.take()
            depth += {"{": 1, "}": -1}.get(token, 0)
            if depth == 0:
                break
            text.append(token)
        return "".join(text)

    def atom(self):
        token = self.take()
        if token is None:
            return "<mrow></mrow>"
        if token == "{":
            return "<mrow>" + "".join(self.row("}")) + "</mrow>"
        if token[0].isdigit():
            return f"<mn>{token}</mn>"
        if token.isalpha():
            return f"<mi>{token}</mi>"
        if not token.startswith("\\"):
            return "<mo>" + html.escape({"-": "−", "*": "∗", "'": "′"}.get(token, token)) + "</mo>"
        name = token[1:]
        if name in _TEX_IGNORED:
            return self.atom() if self.peek() is not None else "<mrow></mrow>"
        if name in _TEX_SPACES:
            return f'<mspace width="{_TEX_SPACES[name]}"/>'
        if name in _TEX_IDENTIFIERS:
            return f"<mi>{_TEX_IDENTIFIERS[name]}</mi>"
        if name in _TEX_OPERATORS:
            return "<mo>" + html.escape(_TEX_OPERATORS[name]) + "</mo>"
        if name in _TEX_FUNCTIONS:
            self.after = '<mspace width="0.17em"/>'
            return f"<mi>{name}</mi>"
        if name in ("frac", "tfrac", "dfrac"):
            return f"<mfrac>{self.argument()}{self.argument()}</mfrac>"
        if name == "sqrt":
            return f"<msqrt>{self.argument()}</msqrt>"
        if name in _ACCENTS:
            return f'<mover accent="true">{self.argument()}<mo>{_ACCENTS[name]}</mo></mover>'
        if name in ("mathrm", "operatorname"):
            return f'<mi mathvariant="normal">{html.escape(self.braced_text())}</mi>'
        if name in ("text", "textrm", "mbox"):
            return f"<mtext>{html.escape(self.braced_text())}</mtext>"
        if name == "mathcal":
            text = self.braced_text()
            return f"<mi>{''.join(_SCRIPT.get(ch, ch) for ch in text)}</mi>"
        if name == "mathbb":
            text = self.braced_text()
            return f"<mi>{''.join(_DOUBLE_STRUCK.get(ch, ch) for ch in text)}</mi>"
        # A command outside the subset: its name, upright (tests check the pages have none).
        return f'<mi mathvariant="normal">{html.escape(token)}</mi>'


def tex_to_mathml(tex, display=False):
    """Return inline LaTeX (the subset of the stages' texts) as a ``<math>`` element.

    Parameters
    ----------
    tex : str
        LaTeX without the ``$`` delimiters.
    display : bool
        Whether to make it a displayed (block) equation.

    Returns
    -------
    str

    Examples
    --------
    >>> tex_to_mathml(r"\\tfrac12 a^\\top M a")
    '<math><mfrac><mn>1</mn><mn>2</mn></mfrac><msup><mi>a</mi><mo>⊤</mo></msup><mi>M</mi><mi>a</mi></math>'
    """
    opening = '<math display="block">' if display else "<math>"
    return opening + "".join(_TexReader(tex).row()) + "</math>"


def text_html(text):
    """Return a paragraph of the stages' Markdown (``$…$`` math, ``**bold**``, ```code```) as HTML.

    Parameters
    ----------
    text : str

    Returns
    -------
    str
    """
    out = []
    for part in re.split(r"(\$[^$]+\$)", text):
        if len(part) > 1 and part.startswith("$") and part.endswith("$"):
            out.append(tex_to_mathml(part[1:-1]))
            continue
        part = html.escape(part, quote=False)
        part = re.sub(r"`([^`]*)`", r"<code>\1</code>", part)
        out.append(re.sub(r"\*\*([^*]*)\*\*", r"<strong>\1</strong>", part))
    return "".join(out)


_STYLE = """
body { margin: 0; background: #fff; color: #1a1a1a; font: 17px/1.55 Georgia, "Times New Roman", serif; }
main { max-width: 54rem; margin: 0 auto; padding: 2rem 1.5rem 4rem; }
h1 { font-size: 1.7rem; margin: 0 0 1rem; }
h2 { font-size: 1.3rem; margin: 2.2rem 0 0.6rem; padding-bottom: 0.2rem; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.1rem; margin: 1.6rem 0 0.5rem; }
math { font-family: "STIX Two Math", "Latin Modern Math", "Cambria Math", "DejaVu Math TeX Gyre", "TeX Gyre Pagella Math", math; }
.eq { overflow-x: auto; overflow-y: hidden; margin: 0.5rem 0; padding: 0.3rem 0; }
.eq math { font-size: 1.12em; }
ul { padding-left: 1.4rem; }
code, pre { font: 0.9em/1.4 "DejaVu Sans Mono", Menlo, Consolas, monospace; background: #f4f4f4; }
code { padding: 0 0.2em; }
pre { padding: 0.6rem; overflow-x: auto; }
""".strip()


def to_html(blocks, title="attnflow derivation"):
    """Render blocks as one self-contained HTML page: MathML equations, inline CSS, no script, no link.

    Parameters
    ----------
    blocks : list of (str, object)
        As for :func:`attnflow.derivations.export.to_markdown`; every ``"eq"`` block holds a SymPy
        object or a :class:`~attnflow.derivations.notation.Display`.
    title : str
        The page's title.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        For an unknown block kind (a programming error).
    TypeError
        For a displayed equation given only as LaTeX.
    """
    body = []
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{text_html(content)}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{text_html(content)}</p>")
        elif kind == "eq":
            body.append(f'<div class="eq">{equation_mathml(content)}</div>')
        elif kind == "list":
            items = "\n".join(f"<li>{text_html(item)}</li>" for item in content)
            body.append(f"<ul>\n{items}\n</ul>")
        elif kind == "code":
            body.append(f"<pre>{html.escape(content)}</pre>")
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8"/>\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1"/>\n'
            f"<title>{html.escape(title)}</title>\n<style>\n{_STYLE}\n</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(body) + "\n</main>\n</body>\n</html>\n")
