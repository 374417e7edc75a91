"""Render derivation stages as Markdown (with ``$…$`` math) or a standalone LaTeX document.

A document is a list of blocks, each ``(kind, content)``: ``"h1"``/``"h2"``/``"h3"``
headings, ``"p"`` paragraphs (Markdown text with ``$…$`` math), ``"eq"`` display
equations (a SymPy object, a :class:`~attnflow.derivations.notation.Display` or, in
Markdown and LaTeX only, a LaTeX string), ``"list"`` bullet lists, ``"code"`` verbatim
text.  :mod:`attnflow.derivations.html` renders the same blocks as an HTML page.
"""

import re

import sympy as sp

from .notation import Display

_LATEX_HEADINGS = {"h1": "section*", "h2": "subsection*", "h3": "subsubsection*"}
# Unicode the project's labels use (e.g. "RMS of ‖w‖ = σ√d"), for plain pdflatex.
_UNICODE = {"σ": r"$\sigma$", "√": r"$\surd$", "‖": r"$\|$", "−": "-", "≤": r"$\le$", "≥": r"$\ge$",
            "ᵀ": r"$^\top$", "Δ": r"$\Delta$", "δ": r"$\delta$", "ℓ": r"$\ell$", "ε": r"$\varepsilon$",
            "η": r"$\eta$", "Σ": r"$\Sigma$", "∂": r"$\partial$", "·": r"$\cdot$", "×": r"$\times$",
            "→": r"$\to$", "≈": r"$\approx$", "ŷ": r"$\hat y$", "λ": r"$\lambda$", "π": r"$\pi$",
            "²": r"$^2$", "∞": r"$\infty$", "⁽": "(", "⁾": ")", "ᵏ": "k"}


def equation_latex(eq):
    """Return an equation as LaTeX: a string as it is, a Display's LaTeX, a SymPy object through :func:`sympy.latex`."""
    if isinstance(eq, str):
        return eq
    return eq.to_latex() if isinstance(eq, Display) else sp.latex(eq)


def stage_blocks(stage, equations=None):
    """Return the blocks of one stage: heading, text, equations (or the ``equations`` given), checks.

    Parameters
    ----------
    stage : Stage
        A derivation stage (title, text, equations, checks).
    equations : list, optional
        Equations shown instead of the stage's own.

    Returns
    -------
    list of (str, object)
    """
    blocks = [("h2", stage.title), ("p", stage.text)]
    blocks += [("eq", e) for e in (stage.equations if equations is None else equations)]
    if stage.checks:
        blocks.append(("list", [f"SymPy verified: {c}" for c in stage.checks]))
    return blocks


def to_markdown(blocks):
    """Render blocks as Markdown with ``$…$`` inline and ``$$…$$`` display math.

    Parameters
    ----------
    blocks : list of (str, object)
        See the module doc for the kinds.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        For an unknown block kind (a programming error).

    Examples
    --------
    >>> print(to_markdown([("h2", "Loss"), ("p", "The column loss:"), ("eq", "a^2")]), end="")
    ## Loss
    <BLANKLINE>
    The column loss:
    <BLANKLINE>
    $$
    a^2
    $$
    """
    out = []
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + content)
        elif kind == "p":
            out.append(content)
        elif kind == "eq":
            out.append(f"$$\n{equation_latex(content)}\n$$")
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in content))
        elif kind == "code":
            out.append(f"```\n{content}\n```")
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    return "\n\n".join(out) + "\n"


def _latex_text(text):
    """Markdown text (with $…$ math kept) to LaTeX text: escape outside math, `code` → \\texttt."""
    parts = re.split(r"(\$[^$]+\$)", text)
    out = []
    for part in parts:
        if part.startswith("$") and part.endswith("$") and len(part) > 1:
            out.append(part)
            continue
        part = part.replace("\\", r"\textbackslash{}")
        for ch in "&%#_{}":
            part = part.replace(ch, "\\" + ch)
        part = re.sub(r"`([^`]*)`", r"\\texttt{\1}", part)
        part = re.sub(r"\*\*([^*]*)\*\*", r"\\textbf{\1}", part)
        out.append("".join(_UNICODE.get(ch, ch) for ch in part))
    return "".join(out)


def to_latex(blocks, title="attnflow derivation"):
    """Render blocks as a standalone LaTeX document (pdflatex; the labels' Unicode is mapped to math).

    Parameters
    ----------
    blocks : list of (str, object)
        See the module doc for the kinds.
    title : str
        The document's title.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        For an unknown block kind (a programming error).
    """
    body = []
    for kind, content in blocks:
        if kind in _LATEX_HEADINGS:
            body.append(f"\\{_LATEX_HEADINGS[kind]}{{{_latex_text(content)}}}")
        elif kind == "p":
            body.append(_latex_text(content))
        elif kind == "eq":
            body.append(f"\\[\n{equation_latex(content)}\n\\]")
        elif kind == "list":
            items = "\n".join(f"  \\item {_latex_text(item)}" for item in content)
            body.append(f"\\begin{{itemize}}\n{items}\n\\end{{itemize}}")
        elif kind == "code":
            body.append(f"\\begin{{verbatim}}\n{content}\n\\end{{verbatim}}")
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    return ("\\documentclass[11pt]{article}\n\\usepackage[utf8]{inputenc}\n\\usepackage{amsmath,amssymb}\n"
            "\\usepackage[margin=2.5cm]{geometry}\n"
            f"\\title{{{_latex_text(title)}}}\n\\date{{}}\n\\begin{{document}}\n\\maketitle\n\n"
            + "\n\n".join(body) + "\n\n\\end{document}\n")
