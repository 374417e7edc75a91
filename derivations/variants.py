"""The model variants' derivations, as :class:`attnflow.derivations.stages.Stage` objects with SymPy checks.

- :func:`finite_prompt`: exact expectations over prompts of length N by one-dimensional
  integrals (the route of :mod:`attnflow.solvers.finite_prompt`);
- :func:`query_in_softmax`: the query token (value 0) inside the softmax;
- :func:`separate_matrices`: ``Q = W_Kᵀ W_Q`` trained as two factors (:mod:`attnflow.solvers.separate`);
- :func:`token_noise`: Gaussian token noise, the tilting identities behind :mod:`attnflow.solvers.noisy`;
- :func:`multi_head`: H heads with averaged outputs (:mod:`attnflow.solvers.multihead`).
- :func:`training_set`: the empirical loss of M prompts, ``∇_Q ℒ̂ = Vᵀ Γ̂ V`` (:mod:`attnflow.solvers.training_set`).

Each check is made on a small instance where SymPy can do it exactly.
"""

from itertools import product

import sympy as sp

from . import indexed_heads
from .checks import require
from .notation import Display, Norm, Relation
from .stages import Stage, _is_zero, explicit_softmax, moment_matrix, score_symbols


def _compositions(N, K):
    return [c for c in product(range(N + 1), repeat=K) if sum(c) == N]


def finite_prompt():
    """Stage: exact expectations over prompts of length N by one-dimensional integrals.

    Checks ``Γ(r)⁻¹ ∫₀^∞ τ^{r−1} e^{−τZ} dτ = Z^{−r}`` (r = 1, 2, 3) and the tilted
    moments ``E[c_j c_m e^{−τZ}]``, ``E[c_j² c_m e^{−τZ}]`` on small instances.

    Returns
    -------
    Stage
    """
    tau, Z = sp.Symbol("tau", positive=True), sp.Symbol("Z", positive=True)
    checks = []
    for r in (1, 2, 3):
        integral = sp.integrate(tau ** (r - 1) * sp.exp(-tau * Z), (tau, 0, sp.oo)) / sp.gamma(r)
        require(_is_zero(integral - Z ** -r), "Γ(r)⁻¹∫τ^{r−1}e^{−τZ}dτ = Z^{−r}")
    checks.append("$\\Gamma(r)^{-1}\\int_0^\\infty \\tau^{r-1} e^{-\\tau Z} d\\tau = Z^{-r}$ for $r = 1, 2, 3$")
    # Tilted multinomial moments, by enumerating the compositions of N = 4 into K = 3 counts.
    N, K = 4, 3
    u = sp.symbols("u_1:4", positive=True)
    Phi = sum(u)

    def tilted(weight):
        return sp.expand(sum(sp.factorial(N) / sp.prod([sp.factorial(x) for x in c])
                             * sp.prod([ui ** x for ui, x in zip(u, c)]) * weight(c) for c in _compositions(N, K)))

    def a(r):
        return sp.ff(N, r) * Phi ** (N - r)
    require(_is_zero(tilted(lambda c: c[0] * c[1]) - sp.expand(a(2) * u[0] * u[1])), "tilted moment E[c₀c₁e^{−τZ}]")
    require(_is_zero(tilted(lambda c: c[0] ** 2) - sp.expand(a(2) * u[0] ** 2 + a(1) * u[0])),
            "tilted moment E[c₀²e^{−τZ}]")
    require(_is_zero(tilted(lambda c: c[0] ** 2 * c[1]) - sp.expand(a(3) * u[0] ** 2 * u[1] + a(2) * u[0] * u[1])),
            "tilted moment E[c₀²c₁e^{−τZ}]")
    checks.append("the tilted moments $E[c_j c_m e^{-\\tau Z}]$ and $E[c_j^2 c_m e^{-\\tau Z}]$ equal the "
                  "falling-factorial forms, by enumerating the compositions of $N = 4$ into 3 counts")
    Kf, Nf, r = sp.Symbol("K", integer=True, positive=True), sp.Symbol("N", integer=True), sp.Symbol("r")
    m_, n_, l_ = sp.symbols("m n l", integer=True)
    c_m, w_m, u_m, u_j, p_m, w_j = sp.symbols("c_m w_m u_m u_j p_m w_j")
    x_j, x_m, x_n, y_j, y_m, w_n = sp.symbols("x_j x_m x_n y_j y_m w_n")
    a_1, a_2, a_3, a_r, Phi = sp.symbols("a_1 a_2 a_3 a_r Phi")
    E = sp.Function("E")
    Mv = sp.MatrixSymbol("M", Kf, Kf)
    xv, wv, uv, yv = (sp.MatrixSymbol(name, Kf, 1) for name in "xwuy")

    def total(expr, index):
        return sp.Sum(expr, (index, 1, Kf))
    eqs = [Display(r"Z = \sum_m c_m w_m, \quad w_m = e^{s_m}, \qquad \frac{1}{Z^r} = \frac{1}{\Gamma(r)}\int_0^\infty "
                   r"\tau^{r-1} e^{-\tau Z}\, d\tau",
                   (sp.Eq(Z, total(c_m * w_m, m_)), sp.Eq(w_m, sp.exp(sp.Symbol("s_m"))),
                    sp.Eq(1 / Z ** r, sp.Integral(tau ** (r - 1) * sp.exp(-tau * Z), (tau, 0, sp.oo)) / sp.gamma(r)))),
           Display(r"E\Big[\prod_m u_m^{c_m}\Big] = \Big(\sum_m p_m u_m\Big)^N, \qquad "
                   r"E[c_j c_m e^{-\tau Z}] = a_2 u_j u_m + \delta_{jm} a_1 u_j",
                   (sp.Eq(E(sp.Product(u_m ** c_m, (m_, 1, Kf))), total(p_m * u_m, m_) ** Nf),
                    sp.Eq(E(sp.Symbol("c_j") * c_m * sp.exp(-tau * Z)),
                          a_2 * u_j * u_m + sp.KroneckerDelta(sp.Symbol("j"), m_) * a_1 * u_j))),
           Display(r"u_m = p_m e^{-\tau w_m}, \quad \Phi = \sum_m u_m, \quad a_r = N(N-1)\cdots(N-r+1)\, \Phi^{N-r}",
                   (sp.Eq(u_m, p_m * sp.exp(-tau * w_m)), sp.Eq(Phi, total(u_m, m_)),
                    sp.Eq(a_r, sp.factorial(Nf) / sp.factorial(Nf - r) * Phi ** (Nf - r)))),
           Display(r"\ell = \tfrac12 \int_0^\infty \tau \,(a_2\, x^\top M x + a_1 \textstyle\sum_n M_{nn} w_n x_n)\, d\tau, "
                   r"\quad x = w \circ u",
                   (sp.Eq(sp.Symbol("ell"), sp.Integral(tau * (
                       a_2 * sp.Sum(x_n * sp.Symbol("M_nl") * sp.Symbol("x_l"), (l_, 1, Kf), (n_, 1, Kf))
                       + a_1 * total(sp.Symbol("M_nn") * w_n * x_n, n_)), (tau, 0, sp.oo)) / 2),
                    sp.Eq(xv, sp.HadamardProduct(wv, uv), evaluate=False))),
           Display(r"g_j = \tfrac12\int_0^\infty \tau^2\, x_j \sum_m x_m \big[a_3 (y_j - y_m) + a_2\big((M_{jm} - M_{mm}) w_m "
                   r"+ (M_{jj} - M_{jm}) w_j\big)\big] d\tau, \quad y = M x",
                   (sp.Eq(sp.Symbol("g_j"), sp.Integral(tau ** 2 * x_j * total(x_m * (
                       a_3 * (y_j - y_m) + a_2 * ((sp.Symbol("M_jm") - sp.Symbol("M_mm")) * w_m
                                                  + (sp.Symbol("M_jj") - sp.Symbol("M_jm")) * w_j)), m_),
                       (tau, 0, sp.oo)) / 2),
                    sp.Eq(yv, Mv * xv, evaluate=False)))]
    text = ("For a prompt of length $N$ the counts are multinomial and the attention random. Writing the inverse "
            "powers of the softmax denominator as integrals and the count moments through the generating function "
            "turns every expectation over prompts into a one-dimensional integral costing $O(K^2)$ per node, "
            "whatever the number of compositions of $N$. The gradient is written as "
            "$\\sum_{m,l} A_j A_m A_l (M_{jl} - M_{ml})$, whose integrand sums to zero over $j$ identically, so "
            "late-training gradients keep their relative accuracy; the Hessian differentiates it, with the diagonal "
            "from shift invariance. `solvers/finite_prompt.py` integrates in $\\log\\tau$ by the trapezoid rule.")
    return Stage("finite_prompt", "Prompts of finite length N", text, eqs, checks)


def query_in_softmax(K=3):
    """Stage: the query token (value 0) inside the softmax, checked on K features.

    Parameters
    ----------
    K : int
        Number of features of the check.

    Returns
    -------
    Stage
    """
    A = sp.symbols(f"A_1:{K + 1}", positive=True)
    f = sp.symbols(f"f_1:{K + 1}", real=True)
    k = 0
    A_q = 1 - sum(A)                                   # the query's own share
    y_hat = sum(An * fn for An, fn in zip(A, f)) + A_q * 0
    error = sum(An * (fn - f[k]) for An, fn in zip(A, f)) - A_q * f[k]
    checks = []
    require(_is_zero(y_hat - f[k] - error), "error with the query's share")
    checks.append(f"$\\hat y - f_k = \\sum_n A_n (f_n - f_k) - A_q f_k$ when $\\sum_n A_n + A_q = 1$ ($K = {K}$)")
    # The augmented moments: E[(f_n − f_k)(−f_k)] and E[f_k²] through E[f_a f_b] = F_ab.
    F = sp.Matrix(K, K, lambda i, j: sp.Symbol(f"F_{min(i, j) + 1}{max(i, j) + 1}", real=True))

    def expectation(expr):
        expr = sp.expand(expr)
        return expr.subs({f[i] * f[j]: F[i, j] for i in range(K) for j in range(K) if i != j}
                         ).subs({f[i] ** 2: F[i, i] for i in range(K)})
    n = 1
    require(_is_zero(expectation((f[n] - f[k]) * (-f[k])) - (F[k, k] - F[n, k])),
            "augmented moment M_nq = F_kk − F_nk")
    require(_is_zero(expectation(f[k] ** 2) - F[k, k]), "augmented moment M_qq = F_kk")
    checks.append("$E[(f_n - f_k)(-f_k)] = F_{kk} - F_{nk}$ and $E[f_k^2] = F_{kk}$ from $E[f_a f_b] = F_{ab}$")
    i_, n_ = sp.symbols("i n", integer=True)
    s_i, S_kk, f_k = sp.Symbol("s_i"), sp.Symbol("S_kk"), sp.Symbol("f_k")
    Kf = sp.Symbol("K", integer=True, positive=True)
    yhat = sp.Symbol("yhat")
    Mk, mv, Fkk = sp.MatrixSymbol("M^(k)", Kf, Kf), sp.MatrixSymbol("m", Kf, 1), sp.MatrixSymbol("F_kk", 1, 1)
    eqs = [Display(r"\hat y = \frac{\sum_i y_i e^{s_i} + 0\cdot e^{S_{kk}}}{\sum_i e^{s_i} + e^{S_{kk}}}, \qquad "
                   r"\hat y - f_k = \sum_n A_n (f_n - f_k) - A_q f_k",
                   (sp.Eq(yhat, sp.Mul(sp.Add(sp.Sum(sp.Symbol("y_i") * sp.exp(s_i), (i_, 1, Kf)),
                                              sp.Mul(0, sp.exp(S_kk), evaluate=False), evaluate=False),
                                       1 / (sp.Sum(sp.exp(s_i), (i_, 1, Kf)) + sp.exp(S_kk)), evaluate=False)),
                    sp.Eq(yhat - f_k, sp.Sum(sp.Symbol("A_n") * (sp.Symbol("f_n") - f_k), (n_, 1, Kf))
                          - sp.Symbol("A_q") * f_k))),
           Display(r"\tilde M^{(k)} = \begin{pmatrix} M^{(k)} & m \\ m^\top & F_{kk} \end{pmatrix}, \quad "
                   r"m_n = F_{kk} - F_{nk}",
                   (sp.Eq(sp.MatrixSymbol("Mtilde^(k)", Kf + 1, Kf + 1), sp.BlockMatrix([[Mk, mv], [mv.T, Fkk]]),
                          evaluate=False),
                    sp.Eq(sp.Symbol("m_n"), sp.Symbol("F_kk") - sp.Symbol("F_nk"))))]
    text = ("The query token, value 0, joins the softmax with its own score $S_{kk}$, the score of its feature's "
            "tokens. The error gains the entry $-f_k$ with weight $A_q$, so each label-gap matrix gains a row and "
            "column and the loss depends on $F$, not only on label gaps. At finite $N$ the query is a token of count "
            "exactly 1: every integrand gains $e^{-\\tau w_k}$ and the terms where it is picked. Its share is "
            "$O(1/N)$, so the large-prompt limit is the one without it. Because $S_{kk}$ also sets the query's "
            "weight, the attention on the query's own feature cannot pass $E[c_k/(c_k+1)]$.")
    return Stage("query_in_softmax", "The query inside the softmax", text, eqs, checks)


def separate_matrices(K=2, d=2, h=2):
    """Stage: ``Q = W_Kᵀ W_Q`` trained as two factors, the chain rule checked symbolically.

    Parameters
    ----------
    K, d, h : int
        Features, dimension and head dimension of the check.

    Returns
    -------
    Stage
    """
    V = sp.Matrix(K, d, lambda n, i: sp.Symbol(f"v_{n + 1}{i + 1}", real=True))
    WK = sp.Matrix(h, d, lambda a, i: sp.Symbol(f"k_{a + 1}{i + 1}", real=True))
    WQ = sp.Matrix(h, d, lambda a, i: sp.Symbol(f"q_{a + 1}{i + 1}", real=True))
    Gamma = sp.Matrix(K, K, lambda n, k: sp.Symbol(f"Gamma_{n + 1}{k + 1}", real=True))
    S = V * WK.T * WQ * V.T
    # ℒ enters only through S; to first order ℒ = Σ Γ_nk S_nk with Γ = ∂ℒ/∂S.
    loss = sum(Gamma[n, k] * S[n, k] for n in range(K) for k in range(K))
    grad_K = sp.Matrix(h, d, lambda a, i: sp.diff(loss, WK[a, i]))
    grad_Q = sp.Matrix(h, d, lambda a, i: sp.diff(loss, WQ[a, i]))
    require(all(_is_zero(e) for e in grad_K - WQ * V.T * Gamma.T * V), "∇_{W_K}ℒ = W_Q VᵀΓᵀV")
    require(all(_is_zero(e) for e in grad_Q - WK * V.T * Gamma * V), "∇_{W_Q}ℒ = W_K VᵀΓV")
    checks = [f"$\\nabla_{{W_K}}\\mathcal{{L}} = W_Q V^\\top \\Gamma^\\top V$ and "
              f"$\\nabla_{{W_Q}}\\mathcal{{L}} = W_K V^\\top \\Gamma V$ for $K = {K}$, $d = {d}$, $h = {h}$ with "
              "every entry a symbol"]
    Kf, df, hf = (sp.Symbol(x, integer=True, positive=True) for x in "Kdh")
    Qm, Vm = sp.MatrixSymbol("Q", df, df), sp.MatrixSymbol("V", Kf, df)
    W_K, W_Q = sp.MatrixSymbol("W_K", hf, df), sp.MatrixSymbol("W_Q", hf, df)
    Bm, Cm = sp.MatrixSymbol("B", hf, Kf), sp.MatrixSymbol("C", hf, Kf)
    Gm, Gam = sp.MatrixSymbol("G", Kf, Kf), sp.MatrixSymbol("Gamma", Kf, Kf)
    eqs = [Display(r"Q = W_K^\top W_Q, \quad B = W_K V^\top,\ C = W_Q V^\top \in \mathbb{R}^{h\times K}, \quad S = B^\top C",
                   (sp.Eq(Qm, W_K.T * W_Q), sp.Eq(Bm, W_K * Vm.T), sp.Eq(Cm, W_Q * Vm.T),
                    Relation(sp.Tuple(Bm, Cm), "∈", sp.MatrixSymbol("ℝ^h×K", 1, 1)),
                    sp.Eq(sp.MatrixSymbol("S", Kf, Kf), Bm.T * Cm))),
           Display(r"\dot B = -C\,\Gamma^\top G, \qquad \dot C = -B\,\Gamma\, G",
                   (sp.Eq(sp.MatrixSymbol("Bdot", hf, Kf), -Cm * Gam.T * Gm),
                    sp.Eq(sp.MatrixSymbol("Cdot", hf, Kf), -Bm * Gam * Gm))),
           Display(r"\dot S = -G\Gamma\, C^\top C - B^\top B\, \Gamma G",
                   (sp.Eq(sp.MatrixSymbol("Sdot", Kf, Kf),
                          sp.MatAdd(-Gm * Gam * Cm.T * Cm, -Bm.T * Bm * Gam * Gm, evaluate=False)),))]
    text = ("With separate key and query matrices the loss still depends on them only through $S$, so the "
            "reduced factors $B$ and $C$ form a closed, exact system of $2hK$ equations (the parts of $W_K$, $W_Q$ "
            "outside the features' span never move). $B = C = 0$ is stationary: training starts from a random "
            "initialisation. The lazy start $B_0 = \\alpha[V^\\top; 0]$, $C_0 = \\alpha[0; V^\\top]$ has "
            "$S_0 = 0$ and $B_0^\\top B_0 = C_0^\\top C_0 = \\alpha^2 G$: in the time $2\\alpha^2 t$ it follows the "
            "merged flow $\\dot S = -G\\Gamma G$, with an error $O(\\alpha^{-4})$.")
    return Stage("separate_matrices", "Separate key and query matrices", text, eqs, checks)


def token_noise():
    """Stage: Gaussian token noise, the tilting identities behind :mod:`attnflow.solvers.noisy`.

    Returns
    -------
    Stage
    """
    xi, v, b = sp.symbols("xi v b", real=True)
    nu = sp.Symbol("nu", positive=True)
    density = sp.exp(-xi ** 2 / (2 * nu ** 2)) / (sp.sqrt(2 * sp.pi) * nu)
    tilt = sp.exp(v * b + nu ** 2 * b ** 2 / 2)
    zeroth = sp.integrate(sp.exp((v + xi) * b) * density, (xi, -sp.oo, sp.oo))
    first = sp.integrate((v + xi) * sp.exp((v + xi) * b) * density, (xi, -sp.oo, sp.oo))
    require(_is_zero(zeroth - tilt) and _is_zero(first - (v + nu ** 2 * b) * tilt), "Gaussian tilting identities")
    checks = ["$E_\\xi[e^{(v+\\xi) b}] = e^{vb + \\nu^2 b^2/2}$ and $E_\\xi[(v+\\xi) e^{(v+\\xi) b}] = "
              "(v + \\nu^2 b)\\, e^{vb + \\nu^2 b^2/2}$ by integration (one coordinate; coordinates are independent)"]
    Kf, df = (sp.Symbol(x, integer=True, positive=True) for x in "Kd")
    vec = {name: sp.MatrixSymbol(name, df, 1) for name in ("x", "v_n", "xi", "b", "x_q", "w", "v_k", "xi_q")}
    Qm, Vm = sp.MatrixSymbol("Q", df, df), sp.MatrixSymbol("V", Kf, df)
    pi = sp.MatrixSymbol("pi", Kf, 1)
    f, k_ = sp.Function("f"), sp.Symbol("k", integer=True)
    eqs = [Display(r"x = v_n + \xi, \quad \xi \sim N(0, \nu^2 I), \quad b = Q x_q",
                   (sp.Eq(vec["x"], vec["v_n"] + vec["xi"]),
                    Relation(vec["xi"], "∼", sp.Function("N")(0, nu ** 2 * sp.Symbol("I"))),
                    sp.Eq(vec["b"], Qm * vec["x_q"]))),
           Display(r"\hat y \to w^\top\big(V^\top \pi + \nu^2 b\big), \quad \pi = \mathrm{softmax}(V b + \log p) "
                   r"\quad (N \to \infty,\ f(x) = w^\top x)",
                   (Relation(sp.Symbol("yhat"), "→", vec["w"].T * (Vm.T * pi + nu ** 2 * vec["b"])),
                    sp.Eq(pi, sp.Function("softmax")(sp.Symbol("Vb") + sp.Symbol("log p")), evaluate=False),
                    sp.Tuple(Relation(sp.Symbol("N"), "→", sp.oo), Relation(f(sp.Symbol("x")), "=",
                                                                        vec["w"].T * vec["x"])))),
           Display(r"\mathcal{L}(Q) = \tfrac12 \sigma^2 \sum_k p_k\, E_{\xi_q} \big\| V^\top\pi + \nu^2 b - x_q \big\|^2, "
                   r"\quad x_q = v_k + \xi_q",
                   (sp.Eq(sp.Function("ℒ")(Qm), sp.Symbol("sigma") ** 2 / 2 * sp.Sum(
                       sp.Symbol("p_k") * sp.Function("E_xi_q")(Norm(Vm.T * pi + nu ** 2 * vec["b"] - vec["x_q"]) ** 2),
                       (k_, 1, Kf))),
                    sp.Eq(vec["x_q"], vec["v_k"] + vec["xi_q"])))]
    text = ("With noise the scores no longer close on the feature set, so the model is the full $d\\times d$ $Q$. "
            "In the large-prompt limit the prediction is a ratio of expectations over one token; for Gaussian "
            "noise both are tilted Gaussians, and the common factor $e^{\\nu^2 |b|^2/2}$ cancels. Only the query's "
            "own noise is left to integrate (Gauss–Hermite, or Monte Carlo with its standard error).")
    return Stage("token_noise", "Token noise", text, eqs, checks)


def multi_head(K=2, H=2):
    """Stage: H heads whose outputs are averaged, the gradient and Hessian checked against SymPy differentiation.

    The explicit large-prompt loss ``½ Σ_k p_k (ā_k − e_k)ᵀ F (ā_k − e_k)`` of H score
    matrices (every score, probability and moment a symbol, the softmax written out) is
    differentiated by SymPy and compared with ``Γ^h[:, k] = (p_k/H) D^h_k F (ā_k − e_k)``; the
    column Hessian blocks ``∂g^h/∂s^{h'}`` (what the stiff solvers' Jacobian is built from)
    are compared with differentiating the column gradient.  The stage also lists the checks of
    the indexed form the kernels are printed from
    (:func:`attnflow.derivations.indexed_heads.heads_column`, symbolic K and H).

    Parameters
    ----------
    K, H : int
        Features and heads of the check.

    Returns
    -------
    Stage
        ``data`` holds the symbols (``scores``: H matrices, ``F``, ``p``) and the expressions
        ``loss`` and ``gradient`` (H matrices), for numerical comparisons.
    """
    S = [sp.Matrix(K, K, lambda n, k, h=h: sp.Symbol(f"s^{h + 1}_{n + 1}{k + 1}", real=True)) for h in range(H)]
    F = sp.Matrix(K, K, lambda i, j: sp.Symbol(f"F_{min(i, j) + 1}{max(i, j) + 1}", real=True))
    p = sp.symbols(f"p_1:{K + 1}", positive=True)
    logp = [sp.log(pk) for pk in p]
    # a[h][k]: head h's attention of query k, explicit softmax quotients.
    a = [[sp.Matrix(explicit_softmax(S[h][:, k], logp)) for k in range(K)] for h in range(H)]
    abar = [sum((a[h][k] for h in range(H)), sp.zeros(K, 1)) / H for k in range(K)]
    errors = [abar[k] - sp.eye(K)[:, k] for k in range(K)]
    loss = sum(p[k] * (errors[k].T * F * errors[k])[0, 0] for k in range(K)) / 2
    gradient = []
    for h in range(H):
        Gh = sp.zeros(K, K)
        for k in range(K):
            D = sp.diag(*a[h][k]) - a[h][k] * a[h][k].T
            Gh[:, k] = p[k] * D * F * errors[k] / H
        gradient.append(Gh)
    for h in range(H):
        for n in range(K):
            for k in range(K):
                require(_is_zero(sp.diff(loss, S[h][n, k]) - gradient[h][n, k]),
                        f"∂ℒ/∂S^{h + 1}_{n + 1}{k + 1} = (p_k/H)(D^h F (ā − e_k))_n")
    checks = [f"$\\partial\\mathcal{{L}}/\\partial S^h = \\Gamma^h$, $\\Gamma^h_{{\\cdot k}} = \\frac{{p_k}}{{H}}"
              f"(\\mathrm{{diag}}\\,a^h_k - a^h_k a^{{h\\top}}_k) F (\\bar a_k - e_k)$, by differentiating the "
              f"explicit loss ($K = {K}$, $H = {H}$, every score, $p_k$ and $F_{{nm}}$ a symbol)"]
    # One column (query 1) in the label-gap form the kernels use: ℓ = ½ āᵀ M ā, g^h = (1/H) D^h M ā.
    s = [sp.Matrix(score_symbols(K)).subs({sym: sp.Symbol(f"t^{h + 1}_{i + 1}", real=True)
                                           for i, sym in enumerate(score_symbols(K))}) for h in range(H)]
    M = moment_matrix(K)
    col = [sp.Matrix(explicit_softmax(s[h], logp)) for h in range(H)]
    cbar = sum(col, sp.zeros(K, 1)) / H
    u = M * cbar
    D = [sp.diag(*col[h]) - col[h] * col[h].T for h in range(H)]
    g = [D[h] * u / H for h in range(H)]
    for h in range(H):
        beta_h = (col[h].T * u)[0, 0]
        for hh in range(H):
            block = D[h] * M * D[hh] / H**2
            if h == hh:
                block += sp.diag(*g[h]) - g[h] * col[h].T - col[h] * g[h].T
            require(_is_zero(g[h][0] - col[h][0] * (u[0] - beta_h) / H), "g^h_n = a^h_n (u_n − a^hᵀu)/H")
            for n in range(K):
                for m in range(K):
                    require(_is_zero(sp.diff(g[h][n], s[hh][m]) - block[n, m]),
                            f"Hessian block ({h + 1}, {hh + 1}) entry ({n + 1}, {m + 1})")
    checks.append(f"the column Hessian blocks $\\partial g^h/\\partial s^{{h'}} = D^h M D^{{h'}}/H^2 + "
                  f"\\delta_{{hh'}}(\\mathrm{{diag}}\\,g^h - g^h a^{{h\\top}} - a^h g^{{h\\top}})$ by differentiating "
                  f"$g^h = D^h M \\bar a / H$ ($K = {K}$, $H = {H}$)")
    # What the kernels are printed from: the same column in indexed form, for every K and H.
    _, indexed_stage = indexed_heads.heads_column()
    checks += [f"indexed form (the printed kernels): {check}" for check in indexed_stage.checks]
    Hs, Ns, Kf, ds = (sp.Symbol(x, integer=True, positive=True) for x in "HNKd")
    h, i, k = (sp.Symbol(x, integer=True) for x in "hik")
    vec = lambda name: sp.MatrixSymbol(name, Kf, 1)                       # noqa: E731
    a_h, abar, e_k, g_h = vec("a^h_k"), vec(r"\bar{a}_k"), vec("e_k"), vec("g^h")
    Fm, Gm, Vm = sp.MatrixSymbol("F", Kf, Kf), sp.MatrixSymbol("G", Kf, Kf), sp.MatrixSymbol("V", Kf, Kf)
    Qh, Dh, Dh2 = sp.MatrixSymbol("Q_h", Kf, Kf), sp.MatrixSymbol("D^h", Kf, Kf), sp.MatrixSymbol("D^{h'}", Kf, Kf)
    Gam_h, M_k = sp.MatrixSymbol(r"\Gamma^h", Kf, Kf), sp.MatrixSymbol("M", Kf, Kf)
    softmax = sp.Function("softmax")
    gap = abar - e_k
    eqs = [Display(r"\hat y = \frac1H \sum_h \sum_i y_i\, \mathrm{softmax}_i(x_i^\top Q_h x_q), \qquad S^h = V Q_h V^\top",
                   (sp.Eq(sp.Symbol(r"\hat{y}"), sp.Sum(sp.Symbol("y_i") * sp.Function("softmax_i")(
                       sp.Symbol("s^h_i")), (i, 1, Ns), (h, 1, Hs)) / Hs),
                    sp.Eq(sp.MatrixSymbol("s^h_i", 1, 1), sp.MatrixSymbol("x_i", ds, 1).T * sp.MatrixSymbol("Q_h", ds, ds)
                          * sp.MatrixSymbol("x_q", ds, 1)),
                    sp.Eq(sp.MatrixSymbol("S^h", Kf, Kf), Vm * Qh * Vm.T))),
           Display(r"a^h_k = \mathrm{softmax}(S^h_{\cdot k} + \log p), \quad \bar a_k = \frac1H \sum_h a^h_k, \quad "
                   r"\mathcal{L} = \tfrac12 \sum_k p_k (\bar a_k - e_k)^\top F (\bar a_k - e_k)",
                   (sp.Eq(sp.Symbol("a^h_k"), softmax(sp.Symbol("S^h_·k") + sp.log(sp.Symbol("p")))),
                    sp.Eq(sp.Symbol(r"\bar{a}_k"), sp.Sum(sp.Symbol("a^h_k"), (h, 1, Hs)) / Hs),
                    sp.Eq(sp.Symbol("ℒ"), sp.MatMul(sp.Rational(1, 2), sp.Sum(
                        sp.Symbol("p_k") * sp.Symbol(r"\ell_k"), (k, 1, Kf)))),
                    sp.Eq(sp.MatrixSymbol(r"\ell_k", 1, 1), gap.T * Fm * gap))),
           Display(r"\Gamma^h_{\cdot k} = \frac{p_k}{H} (\mathrm{diag}\, a^h_k - a^h_k a^{h\top}_k) F (\bar a_k - e_k), \qquad "
                   r"\dot S^h = -G\, \Gamma^h G",
                   (sp.Eq(sp.MatrixSymbol("Γ^h_·k", Kf, 1),
                          sp.Symbol("p_k") / Hs * (Dh * Fm * gap)),
                    sp.Eq(Dh, sp.MatAdd(sp.DiagMatrix(a_h), -a_h * a_h.T, evaluate=False)),
                    sp.Eq(sp.MatrixSymbol(r"\dot{S}^h", Kf, Kf), -Gm * Gam_h * Gm))),
           Display(r"\frac{\partial g^h}{\partial s^{h'}} = \frac{D^h M D^{h'}}{H^2} + \delta_{hh'}\big(\mathrm{diag}\, g^h - "
                   r"g^h a^{h\top} - a^h g^{h\top}\big), \quad g^h = \frac{D^h M \bar a}{H}",
                   (sp.Eq(sp.MatrixSymbol("H^hh'", Kf, Kf),
                          Dh * M_k * Dh2 / Hs**2 + sp.KroneckerDelta(sp.Symbol("h"), sp.Symbol("h'"))
                          * (sp.MatAdd(sp.DiagMatrix(g_h), -g_h * a_h.T, -a_h * g_h.T, evaluate=False))),
                    sp.Eq(g_h, Dh * M_k * abar / Hs)))]
    text = ("With $H$ heads whose outputs are averaged, the loss depends on each $Q_h$ only through its scores "
            "$S^h = VQ_hV^\\top$, so the state is the $H$ score matrices. At $N = \\infty$ the prediction uses the mean "
            "attention $\\bar a$; the heads are coupled through it alone. Heads started equal get equal gradients and "
            "stay equal, following the one-head flow slowed down by $H$ (each moves by $\\Gamma/H$): training needs "
            "a random start. The kernels are printed from the same column derived in indexed form "
            "(`derivations/indexed_heads.py`: head $h$'s attention $a$, a second head's $b$ and the other heads' summed "
            "$c$, $\\bar a = (a + b + c)/H$, with $K$ and $H$ symbols), checked against these formulas for symbolic "
            "$K$ and $H$ and against the unrolled derivation in $KH$ attention symbols for $K \\le 3$; "
            "`solvers/multihead_assembly.py` sums them over heads and queries, $O(HK^2)$ per query for the gradient "
            "and $O(H^2K^2)$ for the Hessian blocks. At finite $N$ they hold for each count vector $c$ of the "
            "prompt with $\\log c$ in place of $\\log p$, and the expectation over prompts is their exact sum "
            "weighted by the multinomial probabilities, over all $\\binom{N+K-1}{K-1}$ count vectors.")
    return Stage("multi_head", "Several attention heads", text, eqs, checks,
                 data={"scores": S, "F": F, "p": p, "loss": loss, "gradient": gradient})


def training_set(K=2, M=2, d=2):
    """Stage: the empirical loss of M prompts, ``∇_Q ℒ̂ = Vᵀ Γ̂ V``, checked symbolically.

    Every entry of V, Q, the prompts' counts and labels is a symbol; prompt m asks query
    ``m mod K`` and has the query token (value 0) in its softmax, the hardest case.  ℒ̂(Q)
    is written from the network and differentiated in Q; Γ̂ from the per-prompt rule
    ``∂ℓ/∂a = e u``, ``u = w∘(y − ŷ)``, with the query token's entry folded into S[k, k]
    (:mod:`attnflow.solvers.training_set`).  The Hessian rule
    ``∂²ℓ/∂a² = uuᵀ + e(diag u − uwᵀ − wuᵀ)`` is checked on three logits.

    Parameters
    ----------
    K, M, d : int
        Features, prompts and dimension of the check (keep them small: it is symbolic).

    Returns
    -------
    Stage
    """
    V = sp.Matrix(K, d, lambda n, i: sp.Symbol(f"v_{n + 1}{i + 1}", real=True))
    Q = sp.Matrix(d, d, lambda i, j: sp.Symbol(f"q_{i + 1}{j + 1}", real=True))
    S = V * Q * V.T
    loss, Gamma = 0, sp.zeros(K, K)
    for m in range(M):
        k = m % K
        c = sp.symbols(f"c_{m + 1}_1:{K + 1}", positive=True)
        y = sp.symbols(f"y_{m + 1}_1:{K + 1}", real=True)
        logits = [S[n, k] + sp.log(c[n]) for n in range(K)] + [S[k, k]]
        values = list(y) + [0]
        expo = [sp.exp(a) for a in logits]
        w = [x / sp.Add(*expo) for x in expo]
        yhat = sum(wi * vi for wi, vi in zip(w, values))
        e = yhat - y[k]
        loss += sp.Rational(1, 2) * e ** 2 / M
        u = [wi * (vi - yhat) for wi, vi in zip(w, values)]
        for n in range(K):
            Gamma[n, k] += e * u[n] / M
        Gamma[k, k] += e * u[K] / M                  # the query token's logit is S[k, k]
    grad_Q = sp.Matrix(d, d, lambda i, j: sp.diff(loss, Q[i, j]))
    require(all(_is_zero(x) for x in grad_Q - V.T * Gamma * V), "∇_Q ℒ̂ = Vᵀ Γ̂ V on the training set")
    a = sp.symbols("a_1:4", real=True)
    z = sp.symbols("z_1:4", real=True)
    y_target = sp.Symbol("y_t", real=True)
    expo = [sp.exp(x) for x in a]
    w = [x / sp.Add(*expo) for x in expo]
    yhat = sum(wi * zi for wi, zi in zip(w, z))
    e = yhat - y_target
    u = [wi * (zi - yhat) for wi, zi in zip(w, z)]
    hessian = sp.Matrix(3, 3, lambda i, j: sp.diff(e ** 2 / 2, a[i], a[j]))
    rule = sp.Matrix(3, 3, lambda i, j: u[i] * u[j] + e * ((u[i] if i == j else 0) - u[i] * w[j] - w[i] * u[j]))
    require(all(_is_zero(x) for x in hessian - rule), "∂²ℓ/∂a² = uuᵀ + e(diag u − uwᵀ − wuᵀ)")
    checks = [f"$\\nabla_Q\\hat{{\\mathcal L}} = V^\\top\\hat\\Gamma V$ for $K = {K}$, $M = {M}$, $d = {d}$, finite N "
              "with the query token in the softmax, every entry of $V$, $Q$, the counts and the labels a symbol",
              "$\\partial^2\\ell/\\partial a^2 = uu^\\top + e(\\mathrm{diag}\\,u - uw^\\top - wu^\\top)$ on three logits"]
    Mf, Kf = (sp.Symbol(x, integer=True, positive=True) for x in "MK")
    m_, n_ = sp.Symbol("m", integer=True), sp.Symbol("n", integer=True)
    yhat_m, e_m = sp.Symbol("ŷ_m"), sp.Symbol("e_m")
    f_m = sp.Function("f_m")
    G_, Gam = sp.MatrixSymbol("G", Kf, Kf), sp.MatrixSymbol("Γ̂", Kf, Kf)
    eqs = [Display(r"\hat y_m = \sum_n w_{m,n} f_m(v_n), \quad w_m = \mathrm{softmax}_n(S_{n k_m} + \log c_{m,n}), "
                   r"\quad \hat{\mathcal L} = \frac1M \sum_m \tfrac12 (\hat y_m - f_m(v_{k_m}))^2",
                   (sp.Eq(yhat_m, sp.Sum(sp.Symbol("w_m,n") * f_m(sp.Symbol("v_n")), (n_, 1, Kf))),
                    sp.Eq(sp.Symbol("w_m,n"), sp.Function("softmax_n")(sp.Symbol("S_n,k_m") + sp.log(sp.Symbol("c_m,n")))),
                    sp.Eq(sp.Symbol("ℒ̂"), sp.Sum(sp.Rational(1, 2) * (yhat_m - f_m(sp.Symbol("v_k_m"))) ** 2,
                                                 (m_, 1, Mf)) / Mf))),
           Display(r"\hat\Gamma_{n,k} = \frac1M \sum_{m:\,k_m = k} e_m\, w_{m,n} (y_{m,n} - \hat y_m), \qquad "
                   r"\dot S = -G\,\hat\Gamma\,G",
                   (sp.Eq(sp.Symbol("Γ̂_n,k"), sp.Sum(sp.KroneckerDelta(sp.Symbol("k_m"), sp.Symbol("k")) * e_m * sp.Symbol("w_m,n")
                                                     * (sp.Symbol("y_m,n") - yhat_m),
                                                     (m_, 1, Mf)) / Mf),
                    sp.Eq(e_m, yhat_m - f_m(sp.Symbol("v_k_m"))),
                    sp.Eq(sp.MatrixSymbol("Ṡ", Kf, Kf), -G_ * Gam * G_)))]
    text = ("On a finite training set the loss is a mean over the M prompts drawn once; without token noise it "
            "still depends on $Q$ only through $S = VQV^\\top$, so the flow and GD stay in score space with "
            "$\\hat\\Gamma = \\partial\\hat{\\mathcal L}/\\partial S$ in place of $\\Gamma$ (docs/model.md §13).")
    return Stage("training_set", "A finite training set", text, eqs, checks)
