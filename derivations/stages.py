"""The derivation of the score dynamics, stage by stage, as SymPy objects.

Each function returns a :class:`Stage`: the equations (SymPy ``Eq``), a short
explanation, and the symbolic checks SymPy performed on the way.  Call them one by
one, or :func:`derive` for the whole chain::

    >>> from attnflow.derivations import stages
    >>> g = stages.column_gradient(stages.column_loss(3))
    >>> print(g.equations[-1])               # g_n = a_n (u_n − β), u = M a, β = aᵀ M a
    Eq(g_3, a_3*(-B + u_3))

The per-query ("column") stages are written in the attention ``a`` of one query
over the K features and the label-gap moments ``M``; the softmax is applied
through its derivative rule, ``∂f/∂s_i = a_i (∂f/∂a_i − Σ_n a_n ∂f/∂a_n)``, which
keeps every derived expression of size O(K²) so that code generation scales.
"""

from dataclasses import dataclass, field

import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixElement

from .checks import require
from .notation import Display, Relation

# Symbolic checks that expand explicit softmax quotients get expensive quickly; they
# run for K up to this size, and the stage says so.
SYMBOLIC_CHECK_MAX_K = 3


@dataclass
class Stage:
    """One step of the derivation.

    Attributes
    ----------
    name : short identifier (``"column_gradient"``).
    title : heading for reports.
    text : explanation in Markdown with ``$…$`` LaTeX.
    equations : SymPy ``Eq`` objects, in order.
    checks : sentences stating what SymPy verified (symbolically) in this stage.
    data : the expressions later stages and code generation use, by name.
    """

    name: str
    title: str
    text: str
    equations: list
    checks: list = field(default_factory=list)
    data: dict = field(default_factory=dict)

    def __repr__(self):
        return f"Stage({self.name!r}: {len(self.equations)} equations, {len(self.checks)} checks)"


# --- symbols ---------------------------------------------------------------------------

def attention_symbols(K):
    """Return the positive symbols ``a_1 … a_K`` of one query's attention."""
    return sp.symbols(f"a_1:{K + 1}", positive=True)


def score_symbols(K):
    """Return the real symbols ``s_1 … s_K`` of one column of scores."""
    return sp.symbols(f"s_1:{K + 1}", real=True)


def moment_matrix(K, name="M"):
    """A symmetric K×K matrix of symbols ``M_ij`` (``M_ji`` is the same symbol)."""
    return sp.Matrix(K, K, lambda i, j: sp.Symbol(f"{name}_{min(i, j) + 1}{max(i, j) + 1}", real=True))


def _sum(expr, *indices, K):
    """``Σ_{i=1}^{K}`` of ``expr`` over the named indices, the first written outermost."""
    return sp.Sum(expr, *[(sp.Symbol(i, integer=True), 1, K) for i in reversed(indices)])


def _is_zero(expr):
    return sp.simplify(sp.together(expr)) == 0


def explicit_softmax(s, logp):
    """``a_n = exp(s_n + l_n) / Σ_m exp(s_m + l_m)`` as explicit SymPy quotients."""
    e = [sp.exp(si + li) for si, li in zip(s, logp)]
    Z = sp.Add(*e)
    return [ei / Z for ei in e]


def through_softmax(expr, a, i):
    """``∂ expr / ∂s_i`` for an expression in the attention ``a = softmax(s + log p)``.

    The chain rule with ``∂a_m/∂s_i = a_m (δ_mi − a_i)`` (stage
    :func:`softmax_derivative`) in vector form: ``a_i (∂f/∂a_i − Σ_n a_n ∂f/∂a_n)``.
    """
    inner = sp.Add(*[an * sp.diff(expr, an) for an in a])
    return a[i] * (sp.diff(expr, a[i]) - inner)


# --- stages ----------------------------------------------------------------------------

def network(K):
    """Stage: attention with counts, the prediction, and the loss in label-gap moments.

    Parameters
    ----------
    K : int
        Number of features.

    Returns
    -------
    Stage
    """
    s = score_symbols(K)
    c = sp.symbols(f"c_1:{K + 1}", nonnegative=True)
    f = sp.symbols(f"f_1:{K + 1}", real=True)
    k = 0  # query feature 1: any other is a relabelling of the features
    Z = sp.Add(*[ci * sp.exp(si) for ci, si in zip(c, s)])
    A = [ci * sp.exp(si) / Z for ci, si in zip(c, s)]
    A_sym = sp.symbols(f"A_1:{K + 1}", nonnegative=True)
    yhat = sp.Add(*[Ai * fi for Ai, fi in zip(A, f)])
    gap_form = sp.Add(*[Ai * (fi - f[k]) for Ai, fi in zip(A, f)])
    checks = []
    require(_is_zero(yhat - f[k] - gap_form), "prediction error in label gaps")
    checks.append(r"$\hat y - f(v_k) - \sum_n A_n (f(v_n) - f(v_k))$ simplifies to $0$ (because $\sum_n A_n = 1$)")
    # E over f is linear: replace f_n f_m by F_nm in the expanded square of the label gap.
    F = moment_matrix(K, "F")
    M = moment_matrix(K, "M")
    n, m = 1, min(2, K - 1)
    expanded = sp.expand((f[n] - f[k]) * (f[m] - f[k]))
    expected_F = expanded.subs({f[i] * f[j]: F[i, j] for i in range(K) for j in range(K)},
                               simultaneous=True).subs({f[i] ** 2: F[i, i] for i in range(K)})
    require(sp.expand(expected_F - (F[n, m] - F[n, k] - F[k, m] + F[k, k])) == 0, "label-gap moments M⁽ᵏ⁾ from F")
    checks.append(r"$E[(f_n - f_k)(f_m - f_k)] = F_{nm} - F_{nk} - F_{km} + F_{kk}$ (expanded and compared)")
    eqs = [
        sp.Eq(sp.Symbol("A_n"), sp.Symbol("c_n") * sp.exp(sp.Symbol("s_n"))
              / sp.Sum(sp.Symbol("c_m") * sp.exp(sp.Symbol("s_m")), (sp.Symbol("m"), 1, K))),
        sp.Eq(sp.Symbol(r"\hat{y}"), sp.Add(*[Ai * fi for Ai, fi in zip(A_sym, f)])),
        sp.Eq(sp.Symbol(r"\ell_k"), sp.Rational(1, 2) * sp.Add(*[
            A_sym[i] * A_sym[j] * M[i, j] for i in range(K) for j in range(K)])),
        sp.Eq(sp.Symbol("M_nm"), sp.Symbol("F_nm") - sp.Symbol("F_nk") - sp.Symbol("F_km") + sp.Symbol("F_kk")),
    ]
    text = (f"Query feature $k$ (shown for $k = 1$; the others relabel the $K = {K}$ features). "
            "A prompt has $c_n$ tokens of feature $n$, each with score $s_n = v_n^\\top Q v_k$; the "
            "total attention on feature $n$ is $A_n$. Since $\\sum_n A_n = 1$, the error "
            "$\\hat y - f(v_k) = \\sum_n A_n (f(v_n) - f(v_k))$, and its mean square over the random "
            "function is a quadratic form in the label-gap moments $M_{nm} = E[(f_n - f_k)(f_m - f_k)]$, "
            "which depend on the class only through $F = E[f(V) f(V)^\\top]$. Row and column $k$ of $M$ vanish.")
    A_n, A_m, f_n, M_nm = sp.symbols("A_n A_m f_n M_nm")
    indexed = [eqs[0],
               Display(r"\hat{y} = \sum_n A_n f_n", (sp.Eq(sp.Symbol(r"\hat{y}"), _sum(A_n * f_n, "n", K=K)),)),
               Display(r"\ell_k = \tfrac12 \sum_{n,m} A_n A_m M_{nm}",
                       (sp.Eq(sp.Symbol(r"\ell_k"), sp.Rational(1, 2) * _sum(A_n * A_m * M_nm, "n", "m", K=K)),)),
               eqs[3]]
    return Stage("network", "The network and its loss", text, eqs, checks, data={"indexed": indexed})


def large_prompt_limit(K):
    """Stage: as N → ∞, counts c_n/N → p_n, so the attention is a deterministic softmax.

    Parameters
    ----------
    K : int
        Number of features.

    Returns
    -------
    Stage
    """
    s = score_symbols(K)
    logp = sp.symbols(f"l_1:{K + 1}", real=True)
    a = explicit_softmax(s, logp)
    a_sym = attention_symbols(K)
    eqs = [sp.Eq(a_sym[i], a[i]) for i in range(min(K, 3))]
    text = ("As the prompt grows, $c_n / N \\to p_n$ almost surely, so "
            "$A_n \\to a_n = \\mathrm{softmax}(s + \\log p)_n$ with $l_n = \\log p_n$. "
            "Numerically the softmax is evaluated with the log-sum-exp shift.")
    return Stage("large_prompt_limit", "The large-prompt limit", text, eqs, data={"a": a_sym, "s": s, "l": logp})


def softmax_derivative(K):
    """Stage: ``∂a_m/∂s_j = a_m (δ_mj − a_j)``, derived from the explicit softmax.

    Parameters
    ----------
    K : int
        Number of features.

    Returns
    -------
    Stage
    """
    s = score_symbols(K)
    logp = sp.symbols(f"l_1:{K + 1}", real=True)
    a = explicit_softmax(s, logp)
    checks = []
    if K <= SYMBOLIC_CHECK_MAX_K:
        for m in range(K):
            for j in range(K):
                require(_is_zero(sp.diff(a[m], s[j]) - a[m] * (sp.KroneckerDelta(m, j) - a[j])),
                        "softmax derivative from the exponential definition")
        checks.append(rf"$\partial a_m/\partial s_j - a_m(\delta_{{mj}} - a_j)$ simplifies to $0$ for all $m, j$ ($K = {K}$)")
    a_sym = attention_symbols(K)
    m_, j_ = sp.symbols("m j", integer=True)
    eqs = [sp.Eq(sp.Derivative(sp.Function("a_m")(sp.Symbol("s_j")), sp.Symbol("s_j")),
                 sp.Symbol("a_m") * (sp.KroneckerDelta(m_, j_) - sp.Symbol("a_j")))]
    text = ("Differentiating the softmax gives $\\partial a_m / \\partial s_j = a_m(\\delta_{mj} - a_j)$; "
            "for any $f(a)$ the chain rule then reads "
            "$\\partial f/\\partial s_i = a_i\\,(\\partial f/\\partial a_i - \\sum_n a_n \\partial f/\\partial a_n)$.")
    return Stage("softmax_derivative", "Differentiating through the softmax", text, eqs, checks,
                 data={"a": a_sym})


def column_loss(K):
    """Stage: the per-query loss ``ℓ = ½ aᵀ M a`` in the attention.

    Parameters
    ----------
    K : int
        Number of features.

    Returns
    -------
    Stage
    """
    a = attention_symbols(K)
    M = moment_matrix(K)
    loss = sp.Rational(1, 2) * sp.Add(*[M[i, j] * a[i] * a[j] for i in range(K) for j in range(K)])
    text = "In the large-prompt limit the per-query loss is $\\ell = \\tfrac12 a^\\top M a$."
    return Stage("column_loss", "Per-query loss", text, [sp.Eq(sp.Symbol(r"\ell"), loss)],
                 data={"a": a, "M": M, "loss": loss, "indexed": [Display(
                     r"\ell = \tfrac12 \sum_{n,m} M_{nm} a_n a_m",
                     (sp.Eq(sp.Symbol(r"\ell"), sp.Rational(1, 2) * _sum(sp.Symbol("M_nm") * sp.Symbol("a_n")
                                                                        * sp.Symbol("a_m"), "n", "m", K=K)),))]})


def column_gradient(loss_stage, run_checks=True):
    """Stage: ``g_i = ∂ℓ/∂s_i = a_i (u_i − B)`` with ``u = ∂ℓ/∂a = M a`` and ``B = aᵀ u``.

    Parameters
    ----------
    loss_stage : Stage
        :func:`column_loss`'s stage (its data ``a``, ``M``, ``loss``).
    run_checks : bool
        False skips this stage's own symbolic checks (and lists none): for callers that
        only compare against its expressions (:mod:`attnflow.derivations.indexed`).

    Returns
    -------
    Stage
    """
    a, M, loss = (loss_stage.data[x] for x in ("a", "M", "loss"))
    K = len(a)
    u = [sp.diff(loss, ai) for ai in a]
    B = sp.Add(*[ai * ui for ai, ui in zip(a, u)])
    # through_softmax in the grouped form: the inner sum is B for every i, built once.
    grad = [a[i] * (u[i] - B) for i in range(K)]
    checks = []
    if run_checks:
        for i in range(K):
            require(sp.expand(grad[i] - through_softmax(loss, a, i)) == 0, "column gradient through the softmax")
        checks.append(r"$g_i$ equals the softmax chain rule applied to $\ell$ (expanded and compared)")
    if run_checks and K <= SYMBOLIC_CHECK_MAX_K:
        s = score_symbols(K)
        logp = sp.symbols(f"l_1:{K + 1}", real=True)
        explicit = explicit_softmax(s, logp)
        sub = dict(zip(a, explicit))
        direct = loss.subs(sub)
        for i in range(K):
            require(_is_zero(sp.diff(direct, s[i]) - grad[i].subs(sub)),
                    "column gradient against the explicit softmax")
        checks.append(rf"$g_i - \partial\ell/\partial s_i$ with the explicit softmax simplifies to $0$ ($K = {K}$)")
    u_sym = sp.symbols(f"u_1:{K + 1}")
    Bs = sp.Symbol("B")
    eqs = [sp.Eq(u_sym[i], u[i]) for i in range(K)]
    eqs += [sp.Eq(Bs, sp.Add(*[ai * ui for ai, ui in zip(a, u_sym)]))]
    eqs += [sp.Eq(sp.Symbol(f"g_{i + 1}"), a[i] * (u_sym[i] - Bs)) for i in range(K)]
    text = ("With $u = \\partial\\ell/\\partial a = M a$ and $B = a^\\top M a = 2\\ell$, the gradient in the "
            "column's scores is $g_i = a_i (u_i - B)$. Its entries sum to zero: shifting all scores of a "
            "query changes nothing.")
    a_n, a_m, u_n, M_nm = sp.symbols("a_n a_m u_n M_nm")
    indexed = [Display(r"u_n = \sum_m M_{nm} a_m", (sp.Eq(u_n, _sum(M_nm * a_m, "m", K=K)),)),
               Display(r"B = \sum_n a_n u_n", (sp.Eq(Bs, _sum(a_n * u_n, "n", K=K)),)),
               Display(r"g_n = a_n (u_n - B)", (sp.Eq(sp.Symbol("g_n"), a_n * (u_n - Bs)),))]
    return Stage("column_gradient", "Gradient in the scores", text, eqs, checks,
                 data={"a": a, "M": M, "loss": loss, "gradient": grad, "indexed": indexed})


def column_hessian(gradient_stage, run_checks=True):
    """Stage: ``H_ij = ∂g_j/∂s_i``, again through the softmax rule.

    Parameters
    ----------
    gradient_stage : Stage
        :func:`column_gradient`'s stage (its data ``a``, ``M``, ``gradient``).
    run_checks : bool
        As for :func:`column_gradient`.

    Returns
    -------
    Stage
    """
    a, M, grad = (gradient_stage.data[x] for x in ("a", "M", "gradient"))
    K = len(a)
    H = sp.zeros(K, K)
    for j in range(K):
        d = [sp.diff(grad[j], an) for an in a]
        inner = sp.Add(*[an * dn for an, dn in zip(a, d)])      # shared by the whole column j
        for i in range(K):
            H[i, j] = a[i] * (d[i] - inner)
    checks = []
    if run_checks and K <= SYMBOLIC_CHECK_MAX_K:
        for i in range(K):
            for j in range(i + 1, K):
                require(sp.expand(H[i, j] - H[j, i]) == 0, "column Hessian symmetric")
        checks.append(rf"$H = H^\top$ (expanded, $K = {K}$)")
        u = sp.Matrix(M) * sp.Matrix(a)
        beta = (sp.Matrix(a).T * u)[0]
        D = sp.diag(*a) - sp.Matrix(a) * sp.Matrix(a).T
        g = [a[i] * (u[i] - beta) for i in range(K)]
        closed = D * M * D + sp.diag(*g) - sp.Matrix(g) * sp.Matrix(a).T - sp.Matrix(a) * sp.Matrix(g).T
        require(sp.expand(H - closed) == sp.zeros(K, K), "H = DMD + diag(g) − gaᵀ − agᵀ")
        checks.append(rf"$H = DMD + \mathrm{{diag}}(g) - g a^\top - a g^\top$ with $D = \mathrm{{diag}}(a) - a a^\top$ (expanded, $K = {K}$)")
    Hm, Dm, Mm = (sp.MatrixSymbol(x, K, K) for x in "HDM")
    av, gv = sp.MatrixSymbol("a", K, 1), sp.MatrixSymbol("g", K, 1)
    eqs = [Display(r"H = D M D + \mathrm{diag}(g) - g a^\top - a g^\top",
                   (sp.Eq(Hm, sp.MatAdd(Dm * Mm * Dm, sp.DiagMatrix(gv), -gv * av.T, -av * gv.T, evaluate=False),
                          evaluate=False),)),
           Display(r"D = \mathrm{diag}(a) - a a^\top",
                   (sp.Eq(Dm, sp.MatAdd(sp.DiagMatrix(av), -av * av.T, evaluate=False), evaluate=False),))]
    text = ("Applying the softmax rule to $g$ gives the Hessian of the per-query loss in its scores; "
            "in matrix form $H = D M D + \\mathrm{diag}(g) - g a^\\top - a g^\\top$ with the softmax "
            "Jacobian $D = \\mathrm{diag}(a) - a a^\\top$.")
    return Stage("column_hessian", "Hessian in the scores", text, eqs, checks,
                 data={"a": a, "M": M, "loss": gradient_stage.data["loss"], "gradient": grad, "hessian": H})


def pull_back(K, d=None):
    """Stage: with ``S = V Q Vᵀ``, the flow in Q pulls back to ``dS/dt = −G Γ G``.

    Parameters
    ----------
    K : int
        Number of features.
    d : int, optional
        Their dimension; K when None.

    Returns
    -------
    Stage
    """
    d = d or K
    V, Q = sp.MatrixSymbol("V", K, d), sp.MatrixSymbol("Q", d, d)
    Gamma, G = sp.MatrixSymbol("Gamma", K, K), sp.MatrixSymbol("G", K, K)
    S, Sdot, Qdot = sp.MatrixSymbol("S", K, K), sp.MatrixSymbol("Sdot", K, K), sp.MatrixSymbol("Qdot", d, d)
    v_n, v_k = sp.MatrixSymbol("v_n", d, 1), sp.MatrixSymbol("v_k", d, 1)
    Gamma_nk = sp.Symbol("Gamma_nk")
    loss = sp.Symbol("ℒ")
    eqs = [Display(r"S_{nk} = v_n^\top Q v_k, \qquad S = V Q V^\top",
                   (sp.Eq(sp.Symbol("S_nk"), v_n.T * Q * v_k, evaluate=False), sp.Eq(S, V * Q * V.T))),
           Display(r"\nabla_Q \mathcal{L} = \sum_{n,k} \Gamma_{nk}\, v_n v_k^\top = V^\top \Gamma V",
                   (sp.Derivative(loss, Q, evaluate=False), _sum(Gamma_nk * v_n * v_k.T, "n", "k", K=K),
                    V.T * Gamma * V), chain=True),
           Display(r"\dot S = V \dot Q V^\top = -G \Gamma G, \qquad G = V V^\top",
                   (Relation(Sdot, "=", sp.Eq(V * Qdot * V.T, -G * Gamma * G, evaluate=False)),
                    sp.Eq(G, V * V.T, evaluate=False))),
           Display(r"\Gamma_{nk} = p_k\, g^{(k)}_n", (sp.Eq(Gamma_nk, sp.Mul(sp.Symbol("p_k"), sp.Symbol("g^(k)_n"), evaluate=False)),))]
    text = ("Scores are linear in $Q$, so $\\partial\\mathcal{L}/\\partial Q = \\sum_{n,k} \\Gamma_{nk} v_n v_k^\\top"
            " = V^\\top \\Gamma V$ with $\\Gamma = \\partial\\mathcal{L}/\\partial S$, and the flow "
            "$\\dot Q = -\\nabla_Q\\mathcal{L}$ gives $\\dot S = V \\dot Q V^\\top = -G\\Gamma G$ with the Gram "
            "matrix $G = VV^\\top$. From $Q_0 = 0$ the whole trajectory stays in this $K\\times K$ space. "
            "Column $k$ of $\\Gamma$ is $p_k$ times the column gradient of query $k$ "
            "(`derivations.stages.verify_pull_back` checks this symbolically on the full $d\\times d$ model).")
    return Stage("pull_back", "Pull-back through the merged key-query matrix", text, eqs,
                 data={"S": V * Q * V.T, "grad_Q": V.T * Gamma * V, "S_dot": -G * Gamma * G})


def flow_jacobian(K):
    """Stage: the Jacobian of the flow, ``−(G ⊗ G)`` times the block-diagonal matrix of ``p_k H⁽ᵏ⁾``.

    Parameters
    ----------
    K : int
        Number of features.

    Returns
    -------
    Stage
    """
    G, H = sp.MatrixSymbol("G", K, K), sp.MatrixSymbol("H^(k)", K, K)
    i, l, m, k = sp.symbols("i l m k", integer=True)
    eqs = [Display(r"\frac{\partial \dot S_{il}}{\partial S_{mk}} = -p_k\, (G H^{(k)})_{im}\, G_{kl}",
                   (sp.Eq(sp.Derivative(sp.Symbol("Sdot_il"), sp.Symbol("S_mk"), evaluate=False),
                          -sp.Symbol("p_k") * MatrixElement(G * H, i, m) * G[k, l]),))]
    text = ("Column $k$ of $\\Gamma$ depends only on column $k$ of $S$, so the Jacobian of the flow is "
            "$-(G\\otimes G)$ times the block-diagonal matrix of $p_k H^{(k)}$. The stiff solvers "
            "(LSODA, Radau, BDF) receive it analytically.")
    return Stage("flow_jacobian", "Jacobian of the flow", text, eqs)


def gd_map(K):
    """Stage: the GD map ``S⁺ = S − η G Γ(S) G`` in score space, exact; the Euler scheme of the flow.

    Parameters
    ----------
    K : int
        Number of features.

    Returns
    -------
    Stage
    """
    S, G, Gamma = sp.MatrixSymbol("S", K, K), sp.MatrixSymbol("G", K, K), sp.MatrixSymbol("Gamma", K, K)
    eta = sp.Symbol("eta", positive=True)
    eqs = [Display(r"S^{+} = S - \eta\, G\, \Gamma(S)\, G",
                   (sp.Eq(sp.MatrixSymbol("S^+", K, K), sp.MatAdd(S, -eta * G * Gamma * G, evaluate=False),
                          evaluate=False),))]
    text = ("Gradient descent $Q \\leftarrow Q - \\eta \\nabla_Q\\mathcal{L}$ maps to "
            "$S \\leftarrow S - \\eta G\\Gamma(S)G$ exactly; with $t = \\eta \\cdot$ iteration it is the "
            "explicit Euler scheme of the flow, first-order accurate as $\\eta \\to 0$.")
    return Stage("gd_map", "The gradient-descent map", text, eqs, data={"S_next": S - eta * G * Gamma * G})


@dataclass
class Derivation:
    """The whole chain for K features: stages in order, and the column expressions."""

    K: int
    stages: list

    def stage(self, name):
        """Return the stage called ``name``; raise KeyError when there is none."""
        for st in self.stages:
            if st.name == name:
                return st
        raise KeyError(name)

    @property
    def columns(self):
        """The data of the last column stage: ``a``, ``M``, ``loss``, ``gradient``, ``hessian``."""
        return self.stage("column_hessian").data


def derive(K):
    """Run every stage for K features; return the :class:`Derivation`.

    Parameters
    ----------
    K : int
        Number of features, at least 2.

    Returns
    -------
    Derivation
        The stages in order, each with its equations and the SymPy checks it passed.

    Raises
    ------
    ValueError
        When K is not an integer ≥ 2.

    Examples
    --------
    >>> d = derive(2)
    >>> [stage.name for stage in d.stages]            # doctest: +NORMALIZE_WHITESPACE
    ['network', 'large_prompt_limit', 'softmax_derivative', 'column_loss', 'column_gradient',
     'column_hessian', 'pull_back', 'flow_jacobian', 'gd_map']
    """
    if int(K) != K or K < 2:
        raise ValueError(f"K: expected an integer ≥ 2, got {K}")
    loss = column_loss(K)
    grad = column_gradient(loss)
    hess = column_hessian(grad)
    return Derivation(K, [network(K), large_prompt_limit(K), softmax_derivative(K), loss, grad, hess,
                          pull_back(K), flow_jacobian(K), gd_map(K)])


def verify_pull_back(K=2, d=2):
    """Symbolically check ∇_Q ℒ = Vᵀ Γ V on the full d×d model (small K, d); return the difference.

    Every entry of V, Q, F and p is a symbol; ℒ(Q) is written from the network
    (softmax of ``V Q v_k + log p``) with raw moments F, differentiated in Q, and
    compared with the pulled-back score gradient ``Γ_nk = p_k g⁽ᵏ⁾_n``, whose column
    gradient comes from :func:`column_gradient`.

    Parameters
    ----------
    K, d : int
        Number of features and their dimension (keep them small: the check is symbolic).

    Returns
    -------
    sympy.Matrix, shape (d, d)
        The simplified differences, all zero when the reduction is exact.
    """
    V = sp.Matrix(K, d, lambda n, i: sp.Symbol(f"v_{n + 1}{i + 1}", real=True))
    Q = sp.Matrix(d, d, lambda i, j: sp.Symbol(f"q_{i + 1}{j + 1}", real=True))
    F = moment_matrix(K, "F")
    p = sp.symbols(f"p_1:{K + 1}", positive=True)
    S = V * Q * V.T
    col = column_gradient(column_loss(K)).data
    a_sym, M_sym = col["a"], col["M"]
    total = 0
    Gamma = sp.zeros(K, K)
    for k in range(K):
        a = explicit_softmax([S[n, k] for n in range(K)], [sp.log(pn) for pn in p])
        # Loss from the network with raw moments: ½ E(aᵀf − f_k)².
        total += p[k] * sp.Rational(1, 2) * (
            sum(a[n] * a[m] * F[n, m] for n in range(K) for m in range(K))
            - 2 * sum(a[n] * F[n, k] for n in range(K)) + F[k, k])
        Mk = {M_sym[n, m]: F[n, m] - F[n, k] - F[k, m] + F[k, k] for n in range(K) for m in range(K)}
        for n in range(K):
            Gamma[n, k] = p[k] * col["gradient"][n].subs(Mk, simultaneous=True).subs(dict(zip(a_sym, a)))
    grad_Q = sp.Matrix(d, d, lambda i, j: sp.diff(total, Q[i, j]))
    return (grad_Q - V.T * Gamma * V).applyfunc(lambda e: sp.simplify(sp.together(e)))
