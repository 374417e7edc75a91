"""Early- and late-phase asymptotics of the flow, derived with SymPy.

Early phase: at ``S = 0`` every query's attention is ``a = p``.  The initial velocity
``V₀ = −G Γ(0) G`` and the Jacobian ``J(0)`` follow from the derived column gradient
and Hessian at ``a = p``; its eigenvalues are the linear rates of the early phase, and
the linear drift ``S ≈ V₀ t`` estimates when the target attention reaches 1/2.

Late phase: near convergence query k puts ``ε_n = a_n`` (n ≠ k) on wrong features.
Row and column k of ``M⁽ᵏ⁾`` vanish, so ``ℓ = ½ εᵀ M̃ ε`` exactly and
``g_n = ε_n (M̃ε)_n + O(ε³)``.  With ``G = γ I`` the query's scores obey
``d log ε_n / dt = −γ² p_k (g_n − g_k)``, and the self-similar ansatz ``ε = c/√t`` gives
``c_n (M̃c)_n + cᵀM̃c = 1/(2γ² p_k)``; summing the K − 1 equations fixes
``q = cᵀM̃c = (K−1)/(2γ² p_k K)``, so

    ℒ(t) ≈ Σ_k p_k q_k / (2t) = (K − 1) / (4 γ² t),      1 − A_kk ≈ (Σ_n c_n) / √t,

whatever M and p (for a non-degenerate class).  For other Gram matrices the
exponents (−1 for the loss, −1/2 for the attention gap) are the same; the constant
is not derived here.
"""

from dataclasses import dataclass

import numpy as np
import sympy as sp
from scipy.optimize import brentq

from ..solvers.columns import label_gap_stack

from .checks import require
from .notation import Display
from .stages import Stage, column_gradient, column_loss, derive


def _column_functions(derivation):
    """Lambdified column gradient and Hessian in (a, M) from the derived expressions."""
    col = derivation.columns
    a, M, K = col["a"], col["M"], derivation.K
    args = list(a) + [M[i, j] for i in range(K) for j in range(i, K)]
    grad = sp.lambdify(args, list(col["gradient"]), "numpy")
    hess = sp.lambdify(args, col["hessian"], "numpy")
    iu = np.triu_indices(K)

    def pack(av, Mv):
        return list(av) + list(Mv[iu])
    return (lambda av, Mv: np.array(grad(*pack(av, Mv)), dtype=float),
            lambda av, Mv: np.array(hess(*pack(av, Mv)), dtype=float))


@dataclass
class EarlyPhase:
    """The flow linearised at ``S = 0``.

    Attributes
    ----------
    velocity : array, shape (K, K)
        ``V₀ = dS/dt`` at S = 0.
    jacobian : array, shape (K², K²)
        ``J(0)`` on the C-ordered state.
    rates : array
        Real parts of the eigenvalues of J(0), descending.
    t_half_drift : float
        Linear-drift estimate of the time the target attention reaches 1/2.
    """

    velocity: np.ndarray        # V₀ = dS/dt at S = 0
    jacobian: np.ndarray        # J(0), (K², K²) on the C-ordered state
    rates: np.ndarray           # eigenvalues of J(0), real parts, descending
    t_half_drift: float         # linear-drift estimate of the time target attention reaches 1/2


def early_phase(G, F, p, derivation=None):
    """Linearise the flow at ``S = 0`` from the derived column expressions.

    Parameters
    ----------
    G, F : array, shape (K, K)
        Gram matrix of the features and moment matrix of the class.
    p : array, shape (K,)
        Feature probabilities.
    derivation : Derivation, optional
        The symbolic derivation for K features; derived when None.

    Returns
    -------
    EarlyPhase
    """
    K = len(p)
    derivation = derivation or derive(K)
    grad, hess = _column_functions(derivation)
    Gamma = np.empty((K, K))
    J = np.empty((K * K, K * K))
    Ms = label_gap_stack(F)
    for k in range(K):
        Mk = Ms[k]
        Gamma[:, k] = p[k] * grad(p, Mk)
        GH = G @ hess(p, Mk)
        # J[(i,l), (m,k)] = −p_k (G H⁽ᵏ⁾)_im G_kl, the layout of solvers.assembly.flow_jacobian.
        for i in range(K):
            for m in range(K):
                J[i * K:(i + 1) * K, m * K + k] = -p[k] * GH[i, m] * G[k, :]
    V0 = -G @ Gamma @ G
    rates = np.sort(np.linalg.eigvals(J).real)[::-1]
    return EarlyPhase(V0, J, rates, _drift_half_time(V0, p))


def _drift_half_time(V0, p):
    """Largest over queries of the first t with softmax(V₀[:, k] t + log p)_k = 1/2 (inf if never)."""
    logp = np.log(p)
    worst = 0.0
    for k in range(len(p)):
        def excess(t):
            z = V0[:, k] * t + logp
            z -= z.max()
            e = np.exp(z)
            return e[k] / e.sum() - 0.5
        if excess(0.0) >= 0:
            continue
        hi = 1.0
        while excess(hi) < 0 and hi < 1e300:
            hi *= 2.0
        if excess(hi) < 0:
            return np.inf
        worst = max(worst, brentq(excess, 0.0, hi, xtol=1e-14, rtol=1e-12))
    return worst


@dataclass
class LatePhase:
    """The leading-order decay near convergence.

    Attributes
    ----------
    loss_exponent : float
        ℒ ∝ t^loss_exponent.
    gap_exponent : float
        1 − A_kk ∝ t^gap_exponent.
    loss_constant : float or None
        C in ℒ ≈ C/t (G = γI only).
    gap_constant : float or None
        D in max_k(1 − A_kk) ≈ D/√t (G = γI only).
    gamma : float or None
        γ when G = γI.
    """

    loss_exponent: float              # ℒ ∝ t^loss_exponent
    gap_exponent: float               # 1 − A_kk ∝ t^gap_exponent
    loss_constant: float = None       # C in ℒ ≈ C/t (G = γI only)
    gap_constant: float = None        # D in max_k(1 − A_kk) ≈ D/√t (G = γI only)
    gamma: float = None


def late_phase_stage(K=3):
    """SymPy: the leading-order column near convergence and the self-similar constant."""
    loss = column_loss(K)
    grad = column_gradient(loss).data["gradient"]
    a, M = loss.data["a"], loss.data["M"]
    h = sp.Symbol("h", positive=True)
    eps = sp.symbols(f"epsilon_2:{K + 1}", positive=True)
    # Query 1 converged: M's first row and column vanish, a_1 = 1 − h Σ ε, a_n = h ε_n.
    sub = {a[0]: 1 - h * sp.Add(*eps)}
    sub.update({a[n]: h * eps[n - 1] for n in range(1, K)})
    zero_row = {M[0, j]: 0 for j in range(K)}
    Mt = sp.Matrix(K - 1, K - 1, lambda i, j: M[i + 1, j + 1])
    e = sp.Matrix(eps)
    loss_exact = sp.expand(loss.data["loss"].subs(zero_row).subs(sub))
    checks = []
    require(sp.expand(loss_exact - h**2 * (e.T * Mt * e)[0] / 2) == 0, "late-phase loss = h²εᵀM̃ε/2")
    checks.append(r"$\ell = \tfrac12 h^2 \varepsilon^\top \tilde M \varepsilon$ exactly when row and column $k$ of $M$ vanish")
    for n in range(1, K):
        g = sp.expand(grad[n].subs(zero_row).subs(sub))
        lead = sp.expand(h**2 * eps[n - 1] * (Mt * e)[n - 1])
        require(sp.expand(g - lead).coeff(h, 2) == 0 and g.coeff(h, 1) == 0,
                "late-phase gradient leading order h²ε(M̃ε)")
    checks.append(r"$g_n = h^2 \varepsilon_n (\tilde M\varepsilon)_n + O(h^3)$ for every $n \ne k$ (series in $h$)")
    Kq, gam, pk, q = sp.symbols("K gamma p_k q", positive=True)
    # Σ_n [c_n (M̃c)_n + q] = (K − 1)/(2γ²p_k) with Σ_n c_n (M̃c)_n = q:
    q_sol = sp.solve(sp.Eq(q + (Kq - 1) * q, (Kq - 1) / (2 * gam**2 * pk)), q)[0]
    # ℒ = Σ_k p_k q_k / (2t); every term p_k q_k / 2 is the same, (K − 1)/(4γ²K).
    C = sp.simplify(Kq * pk * q_sol / 2)
    checks.append(rf"summing the $K-1$ self-similarity equations gives $q = {sp.latex(q_sol)}$")
    t = sp.Symbol("t", positive=True)
    # The sums run over the features other than the query's (here k = 1).
    m_, l_ = sp.symbols("m l", integer=True)
    c_m, c_l = sp.Symbol("c_m"), sp.Symbol("c_l")
    eqs = [Display(r"\varepsilon_n(t) = c_n / \sqrt{t}",
                   (sp.Eq(sp.Function("varepsilon_n")(t), sp.Symbol("c_n") / sp.sqrt(t)),)),
           Display(r"c_n (\tilde M c)_n + c^\top \tilde M c = " + sp.latex(1 / (2 * gam**2 * pk)),
                   (sp.Eq(sp.Add(sp.Symbol("c_n") * sp.Sum(sp.Symbol("Mtilde_nm") * c_m, (m_, 2, K)),
                                 sp.Sum(c_m * sp.Symbol("Mtilde_ml") * c_l, (l_, 2, K), (m_, 2, K)), evaluate=False),
                          1 / (2 * gam**2 * pk)),)),
           Display(r"\mathcal{L}(t) = " + sp.latex(C / sp.Symbol("t")),
                   (sp.Eq(sp.Function("ℒ")(t), C / t),))]
    text = ("Near convergence query $k$ keeps $\\varepsilon_n = a_n$ on the wrong features. With $G = \\gamma I$, "
            "$\\frac{d}{dt}\\log\\varepsilon_n = -\\gamma^2 p_k (g_n - g_k)$, and the ansatz "
            "$\\varepsilon = c/\\sqrt t$ balances both sides. The loss then decays like $1/t$ and the attention "
            "gap like $1/\\sqrt t$: softmax attention reaches one only as the scores diverge logarithmically.")
    return Stage("late_phase", "Late phase", text, eqs, checks,
                 data={"q": q_sol, "loss_constant": C})


def late_phase(G, F, p):
    """Return the late-phase law: exponents always, constants when ``G = γ I``.

    The constants solve ``c ∘ (M̃c) = 1/(2γ²p_kK)`` per query (:func:`positive_scaling`).

    Parameters
    ----------
    G, F : array, shape (K, K)
        Gram matrix of the features and moment matrix of the class.
    p : array, shape (K,)
        Feature probabilities.

    Returns
    -------
    LatePhase
    """
    K = len(p)
    gamma = G[0, 0]
    if not np.allclose(G, gamma * np.eye(K), rtol=0, atol=1e-12 * abs(gamma)):
        return LatePhase(-1.0, -0.5)
    gap = 0.0
    Ms = label_gap_stack(F)
    for k in range(K):
        off = np.arange(K) != k
        Mt = Ms[k][np.ix_(off, off)]
        c = positive_scaling(Mt, 1.0 / (2 * gamma**2 * p[k] * K))
        if c is None:
            return LatePhase(-1.0, -0.5, (K - 1) / (4 * gamma**2), None, gamma)
        gap = max(gap, float(c.sum()))
    return LatePhase(-1.0, -0.5, (K - 1) / (4 * gamma**2), gap, gamma)


def positive_scaling(M, r, iterations=100):
    """Return the positive solution of ``c ∘ (M c) = r`` for positive-definite M, or None.

    It is the minimiser of the strictly convex ``½ cᵀMc − r Σ log c_n``; damped Newton
    from ``c = √(r / diag M)``, halving steps to stay positive and descend.

    Parameters
    ----------
    M : array, shape (n, n)
    r : float
        The right-hand side, the same for every entry.
    iterations : int
        Most Newton steps.

    Returns
    -------
    array, shape (n,), or None
        None when M is not positive definite (or Newton does not converge).
    """
    if np.linalg.eigvalsh(M).min() <= 0:
        return None
    c = np.sqrt(r / np.diag(M))
    phi = lambda c: 0.5 * c @ M @ c - r * np.log(c).sum()  # noqa: E731
    for _ in range(iterations):
        grad = M @ c - r / c
        if np.abs(grad * c).max() <= 1e-15 * r:
            return c
        step = np.linalg.solve(M + np.diag(r / c**2), grad)
        t = 1.0
        while (np.any(c - t * step <= 0) or phi(c - t * step) > phi(c)) and t > 1e-12:
            t /= 2
        c = c - t * step
    return c if np.abs((M @ c) * c - r).max() <= 1e-10 * r else None
