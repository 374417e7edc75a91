"""``attnflow derive``: the derivation, step by step, down to this configuration's equations.

Small K (≤ 3) shows every equation in full; larger K the indexed form.  Numbers
are rounded to four significant digits for reading; the solvers use the exact ones.
"""

import numpy as np
import sympy as sp

from ...derivations import asymptotics, export, html, stages, variants
from ...derivations.codegen import module_path
from ...derivations.notation import Display, Relation
from ...solvers.columns import label_gap_stack

from ..errors import AttnflowError


EXPLICIT_MAX_K = 3
MATRIX_MAX_K = 8
# The early phase's dense K²×K² Jacobian (asymptotics.early_phase) and the SymPy stages for this K
# (minutes at K = 32, growing like K⁴) bound the document; the solvers go further.
DERIVE_MAX_K = 64


def _num(x):
    return sp.Float(float(x), 4)


def _matrix_equation(name, A):
    """``name = [[…]]`` with the entries rounded for reading, as a displayed equation."""
    A = np.atleast_2d(A)
    matrix = sp.ImmutableMatrix(A.shape[0], A.shape[1], lambda i, j: _num(A[i, j]))
    return Display(f"{name} = " + sp.latex(matrix), (sp.Eq(sp.Symbol(name), matrix, evaluate=False),))


def _entry(latex_name, symbol_name, value):
    """``name = value`` with the hand-set LaTeX name (``\\dot S_{11}``) and a SymPy symbol for MathML."""
    return Display(f"{latex_name} = " + sp.latex(value), (sp.Eq(sp.Symbol(symbol_name), value),))


def derivation_blocks(problem, training=None):
    """Return the whole derivation document of a problem as export blocks.

    Every equation is shown in full for K ≤ ``EXPLICIT_MAX_K``, in indexed form for
    larger K; the sections on the variants this configuration uses (finite N, query in
    the softmax, separate matrices, token noise) follow the main chain.

    Parameters
    ----------
    problem : Problem
    training : Section, optional
        The ``[training]`` section, for the GD map and its step size.

    Returns
    -------
    list of (str, object)
        Blocks for :mod:`attnflow.derivations.export`.
    """
    K = problem.K
    if K > DERIVE_MAX_K:
        raise AttnflowError("features.K", f"derive writes the SymPy derivation and the dense K²×K² Jacobian at "
                                          f"S = 0 ({K ** 4 * 8 / 1e9:.3g} GB at K = {K}); at most K = {DERIVE_MAX_K}")
    explicit = K <= EXPLICIT_MAX_K
    derivation = stages.derive(K)
    c = problem.constants()
    variant_stages = _variant_stages(problem)
    blocks = [("h1", f"Score dynamics of softmax attention, K = {K}"),
              ("p", f"Configuration: $K = {K}$ features in $d = {problem.features.d}$ dimensions "
                    f"({problem.features.kind}), task {problem.function_class.describe()}, {_model_words(problem)}. "
                    + ("Every equation is shown in full." if explicit else
                       "Equations are shown in indexed form (full form for $K \\le 3$).")
                    + (" The derivation starts from the merged matrix and large prompts; the sections on this "
                       "configuration's variants follow it." if variant_stages else ""))]
    for st in derivation.stages:
        indexed = st.data.get("indexed")
        if st.name == "large_prompt_limit":
            indexed = [_softmax_indexed(K)]
        blocks += export.stage_blocks(st, None if explicit or indexed is None else indexed)
        if st.name == "column_hessian" and explicit:
            H = st.data["hessian"]
            blocks += [("p", "In full, entry by entry:")]
            blocks += [("eq", _entry(f"H_{{{i + 1}{j + 1}}}", f"H_{i + 1}{j + 1}", sp.factor(H[i, j])))
                       for i in range(K) for j in range(i, K)]

    for st in variant_stages:
        blocks += export.stage_blocks(st)

    blocks += [("h2", "This configuration")]
    if variant_stages:
        blocks.append(("p", "The numbers below enter the merged large-prompt equations; for this configuration's "
                            "variants the solvers take the same $G$, $F$ and $p$ into the forms of the sections "
                            "above, and the early- and late-phase estimates are those of the merged large-prompt "
                            "flow."))
    blocks += [("p", "Gram matrix $G = VV^\\top$, moments $F$ (" + problem.moments.method
                + (f", error $\\le {problem.moments.error:.1e}$" if problem.moments.error else "")
                + ") and feature probabilities $p$:")]
    if K <= MATRIX_MAX_K:
        blocks += [("eq", _matrix_equation("G", problem.features.G)), ("eq", _matrix_equation("F", problem.F)),
                   ("eq", _matrix_equation("p", problem.p[None, :]))]
    else:
        blocks.append(("p", f"($K = {K}$: the matrices are in `summary.json` of `attnflow run`.)"))
    blocks.append(("list", [
        f"$L = {c.L:.4g}$ ({c.L_source})",
        f"$\\Delta = {c.Delta:.4g}$, $\\delta = {c.delta:.4g}$, $L\\Delta\\delta = {c.L_Delta_delta:.4g}$: "
        f"**{c.regime}** regime (threshold $c^* = {c.threshold:g}$; $\\Delta$, $\\delta$ and the threshold are "
        "reconstructed definitions)",
        "non-degenerate class" if c.nondegenerate else
        f"**degenerate class**: smallest off-target eigenvalue of $M^{{(k)}}$ is {c.min_offtarget_eigenvalue:.3g}"]))
    blocks += _explicit_equations(problem, derivation) if explicit else [
        ("p", "The flow, with $a_{nk}$ the attention of query $k$ on feature $n$:"),
        ("eq", _indexed_flow(K))]
    if training is not None and training.mode in ("gd", "both"):
        eta = training.eta if training.eta == "auto" else f"{training.eta:g}"
        blocks.append(("p", f"Gradient descent iterates $S \\leftarrow S - \\eta\\, G\\Gamma(S)G$ with "
                            f"$\\eta$ = {eta} (auto: half the stable step at the start)."))
    blocks += _asymptotic_blocks(problem, derivation)
    blocks += [("h2", "Generated code"),
               ("p", "`derivations.codegen` prints the column gradient and Hessian as loops from their indexed form "
                     "(sums over a symbolic $K$, checked against the unrolled stages for $K = 2, 3$) into one Numba "
                     f"module for every $K$: `{module_path(heads=problem.heads > 1)}`"
                     + (" (with the heads' column kernels, printed from their indexed form, and the multi-head "
                        "assembly)" if problem.heads > 1 else "")
                     + ". Every parameter ($K$, $G$, $F$, $p$, $\\eta$) is a runtime argument, so the module is "
                       "generated and compiled once per machine.")]
    return blocks


def _softmax_indexed(K):
    """The large-prompt softmax for every ``n = 1 … K`` in one line (the stage spells out only three)."""
    m = sp.Symbol("m", integer=True)
    softmax = sp.exp(sp.Symbol("l_n") + sp.Symbol("s_n")) / sp.Sum(sp.exp(sp.Symbol("l_m") + sp.Symbol("s_m")), (m, 1, K))
    return Display(rf"a_n = \frac{{e^{{l_n + s_n}}}}{{\sum_{{m=1}}^{{{K}}} e^{{l_m + s_m}}}}, "
                   rf"\qquad n = 1, \dots, {K}",
                   (sp.Eq(sp.Symbol("a_n"), softmax), Relation(sp.Symbol("n"), "∈", sp.Range(1, K + 1))))


def _indexed_flow(K):
    """The flow in indexed form, for K beyond the explicit equations."""
    n, m = sp.symbols("n m", integer=True)
    a_nk, a_mk, u_nk, B_k = sp.symbols("a_nk a_mk u_nk B_k")
    G, Gamma = sp.MatrixSymbol("G", K, K), sp.MatrixSymbol("Gamma", K, K)
    return Display(r"\dot S = -G \Gamma G, \quad \Gamma_{nk} = p_k\, a_{nk} (u_{nk} - B_k), \quad "
                   r"u_{nk} = \sum_m M^{(k)}_{nm} a_{mk}, \quad B_k = \sum_n a_{nk} u_{nk}",
                   (sp.Eq(sp.MatrixSymbol("Sdot", K, K), -G * Gamma * G),
                    sp.Eq(sp.Symbol("Gamma_nk"), sp.Symbol("p_k") * a_nk * (u_nk - B_k)),
                    sp.Eq(u_nk, sp.Sum(sp.Symbol("M^(k)_nm") * a_mk, (m, 1, K))),
                    sp.Eq(B_k, sp.Sum(a_nk * u_nk, (n, 1, K)))))


def _model_words(problem):
    """The prompt and parameter model of the configuration, in words."""
    words = ["large prompts ($N = \\infty$)" if not np.isfinite(problem.N) else f"prompts of length $N = {int(problem.N)}$"]
    if problem.include_query:
        words.append("the query inside the softmax")
    if problem.separate:
        words.append(f"separate key and query matrices ($h = {problem.factors[0].shape[0]}$)")
    if problem.noise > 0:
        words.append(f"token noise $\\nu = {problem.noise:g}$")
    if problem.heads > 1:
        words.append(f"{problem.heads} heads, outputs averaged")
    if problem.training_set is not None:
        words.append(f"a finite training set of $M = {len(problem.training_set[0])}$ prompts")
    return ", ".join(words)


def _variant_stages(problem):
    """The derivation stages of the variants this configuration uses, in the order of the pipeline."""
    out = []
    if np.isfinite(problem.N):
        out.append(variants.finite_prompt())
    if problem.include_query:
        out.append(variants.query_in_softmax())
    if problem.separate:
        out.append(variants.separate_matrices())
    if problem.noise > 0:
        out.append(variants.token_noise())
    if problem.heads > 1:
        out.append(variants.multi_head())
    if problem.training_set is not None:
        out.append(variants.training_set())
    return out


def _explicit_equations(problem, derivation):
    """The flow written out with this configuration's numbers, in the attentions a_nk."""
    K = problem.K
    A = sp.Matrix(K, K, lambda n, k: sp.Symbol(f"a_{{{n + 1}{k + 1}}}", positive=True))
    Gam = sp.Matrix(K, K, lambda n, k: sp.Symbol(f"\\Gamma_{{{n + 1}{k + 1}}}"))
    Ms = label_gap_stack(problem.F)
    blocks = [("p", "With this configuration's numbers, $a_{nk}$ being query $k$'s attention on feature $n$ "
                    "($a_{\\cdot k} = \\mathrm{softmax}(S_{\\cdot k} + \\log p)$), "
                    "$u_{nk} = \\sum_m M^{(k)}_{nm} a_{mk}$ and $B_k = \\sum_n a_{nk} u_{nk}$:")]
    for k in range(K):
        Mk = Ms[k]
        for n in range(K):
            u = sp.Add(*[_num(Mk[n, m]) * A[m, k] for m in range(K)])
            blocks.append(("eq", _entry(f"u_{{{n + 1}{k + 1}}}", f"u_{n + 1}{k + 1}", u)))
        gamma = sp.Mul(_num(problem.p[k]), sp.Symbol(f"a_n{k + 1}"),
                       sp.Symbol(f"u_n{k + 1}") - sp.Symbol(f"B_{k + 1}"), evaluate=False)
        blocks.append(("eq", Display(f"\\Gamma_{{n{k + 1}}} = {float(problem.p[k]):.4g}\\, a_{{n{k + 1}}}"
                                     f" (u_{{n{k + 1}}} - B_{k + 1})", (sp.Eq(sp.Symbol(f"Gamma_n{k + 1}"), gamma),))))
    Gm = sp.Matrix(K, K, lambda i, j: _num(problem.features.G[i, j]))
    rhs = -(Gm * Gam * Gm)
    blocks += [("eq", _entry(f"\\dot S_{{{n + 1}{k + 1}}}", f"Sdot_{n + 1}{k + 1}", sp.expand(rhs[n, k])))
               for n in range(K) for k in range(K)]
    return blocks


def _asymptotic_blocks(problem, derivation):
    G, F, p = problem.features.G, problem.F, problem.p
    early = asymptotics.early_phase(G, F, p, derivation)
    late = asymptotics.late_phase(G, F, p)
    K = problem.K
    blocks = [("h2", "Early phase: linearisation at $S = 0$"),
              ("p", "At $S = 0$ every query attends with $a = p$. The derived gradient and Hessian at $a = p$ give the "
                    "initial velocity $V_0 = -G\\Gamma(0)G$ and the Jacobian $J(0)$; the linear drift $S \\approx V_0 t$ "
                    "estimates when the target attention reaches $1/2$.")]
    if K <= MATRIX_MAX_K:
        blocks.append(("eq", _matrix_equation("V_0", early.velocity)))
    top = ", ".join(f"{r:.4g}" for r in early.rates[:4])
    blocks.append(("list", [f"largest eigenvalues of $J(0)$: {top}",
                            f"drift estimate of the time to attention $1/2$: $t_{{1/2}} \\approx {early.t_half_drift:.4g}$"]))
    blocks += export.stage_blocks(asymptotics.late_phase_stage(min(K, 3)))
    if late.loss_constant is not None:
        items = [f"$G = {late.gamma:.4g}\\, I$: $\\mathcal{{L}}(t) \\approx {late.loss_constant:.4g}/t$"]
        if late.gap_constant is not None:
            items.append(f"$\\max_k (1 - A_{{kk}}) \\approx {late.gap_constant:.4g}/\\sqrt{{t}}$")
    else:
        items = ["$G$ is not a multiple of $I$: the exponents hold ($\\mathcal{L} \\propto t^{-1}$, "
                 "$1 - A_{kk} \\propto t^{-1/2}$); the constants are not derived."]
    blocks.append(("list", items))
    return blocks


def render(problem, training=None, fmt="markdown"):
    """Return the derivation document of a problem (``attnflow derive``).

    Parameters
    ----------
    problem : Problem
    training : Section, optional
        The ``[training]`` section, for the GD map and its step size.
    fmt : {"markdown", "latex", "html"}
        Markdown with ``$…$`` math, a standalone LaTeX document, or one self-contained
        HTML page whose equations are MathML printed from their SymPy expressions.

    Returns
    -------
    str
    """
    blocks = derivation_blocks(problem, training)
    if fmt == "latex":
        return export.to_latex(blocks, title=f"attnflow: score dynamics for K = {problem.K}")
    if fmt == "html":
        return html.to_html(blocks, title=f"attnflow: score dynamics for K = {problem.K}")
    return export.to_markdown(blocks)
