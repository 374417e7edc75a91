"""Exact population dynamics for prompts of finite length N.

For query k with scores s and label-gap moments M, prompt counts ``c ~ Multinomial(N, p)``
and ``Z = Σ_m c_m w_m`` with ``w = e^s``, the per-query loss and its gradient are

    ℓ  = ½ E[(c∘w)ᵀ M (c∘w) / Z²],
    g_j = ∂ℓ/∂s_j = w_j E[c_j (M(c∘w))_j / Z²] − w_j E[(c∘w)ᵀ M (c∘w) c_j / Z³].

With ``1/Z^r = Γ(r)⁻¹ ∫₀^∞ τ^{r−1} e^{−τZ} dτ`` and the tilted multinomial moments
(``u_m = p_m e^{−τ w_m}``, ``Φ = Σ u_m``, ``a_r = N(N−1)…(N−r+1) Φ^{N−r}``)

    E[(c∘w)ᵀM(c∘w) e^{−τZ}]      = a₂ q + a₁ d,                  x = w∘u, y = Mx, q = xᵀy,
    E[c_j (M(c∘w))_j e^{−τZ}]    = a₂ u_j y_j + a₁ u_j M_jj w_j,  d = Σ_n M_nn w_n x_n,
    E[(c∘w)ᵀM(c∘w) c_j e^{−τZ}]  = a₃ u_j q + a₂ (u_j d + 2 w_j u_j y_j) + a₁ M_jj w_j² u_j,

so every expectation is a one-dimensional integral costing O(K²) per node, whatever
the number of compositions of N.  For the gradient the integrand is rearranged
(see :func:`finite_column`) so that the pieces shift invariance would cancel only
after integration cancel identically instead.  The integrand has bumps at the scales
``τ ~ 1/(N w_n)``, which late in training lie many decades apart, so it is
integrated in ``v = log τ``, where it is smooth with double-exponential tails and
the trapezoid rule converges exponentially; the difference between step h and 2h
(every other node, free) is the reported error.

The query token inside the softmax (value 0, weight ``w_q = w_k``) is one more token of
count exactly 1: every integrand gains the factor ``e^{−τ w_q}`` and the terms where
it is picked (one fewer falling factor ``a_r`` each).  The Hessian
(:func:`finite_column_hessian`) differentiates the same integrands.
"""

import math

import numpy as np
from numba import njit

from .columns import label_gap_stack

DEFAULT_STEP = 0.125


@njit(cache=True)
def _log_falling(N, r):
    out = 0.0
    for i in range(r):
        out += math.log(N - i)
    return out


@njit(cache=True)
def _grid(s, N, h, w):
    """Write ``w = e^{s − max s}``; return ``(v_lo, number of steps)`` of the log-τ grid.

    The integrand's bumps sit at τ ~ 1/(N w_n); the grid runs from far below the
    smallest (1e-17/N: the attention integrand, a 1/Z moment, vanishes there only like
    τ) to where e^{−τ w_min} has died (80/w_min).
    """
    top = -np.inf
    for n in range(s.shape[0]):
        top = max(top, s[n])
    wmin = 1.0
    for n in range(s.shape[0]):
        w[n] = math.exp(s[n] - top)
        if w[n] > 0.0:
            wmin = min(wmin, w[n])
    v_lo = math.log(1e-17 / N)
    return v_lo, int(math.ceil((math.log(80.0 / wmin) - v_lo) / h))


@njit(cache=True)
def _tilt(tau, w, logp, u):
    """Write ``u_m = p_m e^{−τ w_m}``; return ``log Φ = log Σ u_m`` (log-sum-exp)."""
    big = -np.inf
    for m in range(w.shape[0]):
        u[m] = logp[m] - tau * w[m]
        big = max(big, u[m])
    total = 0.0
    for m in range(w.shape[0]):
        total += math.exp(u[m] - big)
    for m in range(w.shape[0]):
        u[m] = math.exp(u[m])
    return big + math.log(total)


@njit(cache=True)
def _a(N, r, logphi):
    """``N(N−1)…(N−r+1) Φ^{N−r}`` (0 when N < r)."""
    return math.exp(_log_falling(N, r) + (N - r) * logphi) if N >= r else 0.0


@njit(cache=True)
def finite_attention(s, logp, N, h, att, query):
    """Expected total attention ``E[A_n] = ∫ τ a₁ x_n e^{−τ w_q} dv`` of one query at prompt length N.

    ``query`` is the query's feature when the query token sits in the softmax (its own
    weight ``w_q = w_query`` joins the denominator), −1 when it does not.

    Parameters
    ----------
    s : ndarray, shape (K,)
        The query's scores.
    logp : ndarray, shape (K,)
        Log feature probabilities.
    N : int
        Prompt length.
    h : float
        Step of the log-τ trapezoid rule.
    att : ndarray, shape (K,)
        Output: ``E[A_n]``.
    query : int
        The query's feature, or −1.

    Returns
    -------
    float
        The attention the query token pays itself, ``E[w_q / (Z + w_q)] =
        ∫ τ w_q a₀ e^{−τ w_q} dv`` (0 without it): a positive integral of its own, so
        ``1 − A_kk = Σ_{n≠k} E[A_n] + share`` keeps full relative precision.
    """
    K = s.shape[0]
    w = np.empty(K)
    u = np.empty(K)
    v_lo, J = _grid(s, N, h, w)
    wq = w[query] if query >= 0 else 0.0
    for n in range(K):
        att[n] = 0.0
    share = 0.0
    for step in range(J + 1):
        tau = math.exp(v_lo + step * h)
        logphi = _tilt(tau, w, logp, u)
        eq = math.exp(-tau * wq)
        a1 = _a(N, 1, logphi) * eq
        for n in range(K):
            att[n] += h * tau * a1 * w[n] * u[n]
        share += h * tau * wq * _a(N, 0, logphi) * eq
    return share


@njit(cache=True)
def finite_column(s, logp, M, N, h, g, att, query):
    """Per-query loss at prompt length N; writes the score gradient into g and E[A] into att.

    ``query = −1``: the softmax runs over the N context tokens, M is the K×K label-gap
    matrix.  ``query = k``: the query token (feature k, value 0) sits in the softmax
    too; M is then the (K+1)×(K+1) matrix of :func:`attnflow.solvers.columns.label_gap_stack`
    with ``include_query`` (last row: the query's gap ``−f_k``); the query's own score
    is ``s_k``, and ``g[k]`` follows from shift invariance.

    Parameters
    ----------
    s, logp, N, h, att, query
        As in :func:`finite_attention`.
    M : ndarray, shape (K, K) or (K+1, K+1)
        Label-gap moments of the query.
    g : ndarray, shape (K,)
        Output: the score gradient ``∂ℓ/∂s``.

    Returns
    -------
    loss : float
        The per-query loss ℓ.
    error : float
        Bound on the quadrature error of the loss and of every gradient entry (the
        largest difference between steps h and 2h).
    share : float
        The attention the query token pays itself (0 without it), as in
        :func:`finite_attention`.
    """
    K = s.shape[0]
    w = np.empty(K)
    u = np.empty(K)
    x = np.empty(K)
    y = np.empty(K)
    v_lo, J = _grid(s, N, h, w)
    wq = w[query] if query >= 0 else 0.0
    loss_h = 0.0
    loss_2h = 0.0
    grad_h = np.zeros(K)
    grad_2h = np.zeros(K)
    for n in range(K):
        att[n] = 0.0
    share = 0.0
    for step in range(J + 1):
        tau = math.exp(v_lo + step * h)
        eq = math.exp(-tau * wq)       # the query's factor of e^{−τZ}; 1 without it
        logphi = _tilt(tau, w, logp, u)
        a0, a1, a2, a3 = _a(N, 0, logphi), _a(N, 1, logphi), _a(N, 2, logphi), _a(N, 3, logphi)
        for m in range(K):
            x[m] = w[m] * u[m]
            att[m] += h * tau * a1 * eq * x[m]
        share += h * tau * wq * a0 * eq
        q = 0.0
        d = 0.0
        for n in range(K):
            acc = 0.0
            for m in range(K):
                acc += M[n, m] * x[m]
            y[n] = acc
            q += x[n] * acc
            d += M[n, n] * w[n] * x[n]
        even = step % 2 == 0
        fl = a2 * q + a1 * d
        X = mu = Mqq = 0.0
        if query >= 0:
            Mqq = M[K, K]
            for m in range(K):
                X += x[m]
                mu += x[m] * M[m, K]
            fl += 2.0 * wq * a1 * mu + wq * wq * Mqq * a0
        fl *= 0.5 * tau * tau * eq          # ∫ τ f dτ = ∫ τ² f dv
        loss_h += fl
        if even:
            loss_2h += fl
        # Gradient integrand (v-measure).  Per prompt ∂ℓ/∂s_j = Σ_{m,l} A_j A_m A_l (M_jl − M_ml)
        # (Σ A = 1), whose m = j terms vanish identically; with 1/Z³ = ½∫τ³e^{−τZ}dv and the
        # tilted multinomial third moments this is
        #   ½τ³ x_j Σ_m x_m [a₃(y_j − y_m) + a₂((M_jm − M_mm) w_m + (M_jj − M_jm) w_j)]:
        # it sums to zero over j identically (shift invariance holds node by node), so
        # nothing large is subtracted and tiny late-training gradients keep their
        # relative accuracy.  The query token (count 1, weight w_q) adds the terms with
        # m or l equal to q, with a₂ → a₁ for each q taken.  Its own score is s_k, whose
        # two shares (token and query) would cancel to rounding late in training, so
        # g_k comes from shift invariance instead: g_k = −Σ_{j≠k} g_j.
        c = 0.5 * tau * tau * tau * eq
        for j in range(K):
            if j == query:
                continue
            acc = 0.0
            for m in range(K):
                acc += x[m] * (a3 * (y[j] - y[m]) + a2 * ((M[j, m] - M[m, m]) * w[m] + (M[j, j] - M[j, m]) * w[j]))
            if query >= 0:
                mj = M[j, K]
                acc += (wq * (a2 * (X * mj - mu + y[j] - mu) + a1 * w[j] * (M[j, j] - mj))
                        + wq * wq * a1 * (mj - Mqq))
            fg = c * x[j] * acc
            grad_h[j] += fg
            if even:
                grad_2h[j] += fg
    if query >= 0:
        grad_h[query] = -grad_h.sum()
        grad_2h[query] = -grad_2h.sum()
    error = abs(loss_h - 2.0 * loss_2h) * h
    for j in range(K):
        g[j] = grad_h[j] * h
        error = max(error, abs(grad_h[j] - 2.0 * grad_2h[j]) * h)
    return loss_h * h, error, share


@njit(cache=True)
def finite_column_hessian(s, logp, M, N, h, H, query):
    """Write the per-query Hessian ``∂²ℓ/∂s∂s`` at prompt length N into ``H``.

    Off the diagonal, the derivative in ``s_l`` of :func:`finite_column`'s rearranged
    gradient integrand ``½τ³ x_j acc_j``, ``acc_j = a₃(X y_j − q) + a₂ b_j`` with
    ``X = Σx``, ``b_j = z_j − d + w_j(M_jj X − y_j)`` and ``z = M(x∘w)``.  At fixed τ,
    ``∂x_m = δ_ml ξ_l`` with ``ξ = x∘(1 − τw)``, ``∂(x_m w_m) = δ_ml η_l`` with
    ``η = x∘w∘(2 − τw)``, and ``∂a_r = −τ x_l a_{r+1}``, so for ``l ≠ j``

        ∂_l acc_j = −τx_l(a₄(X y_j − q) + a₃ b_j) + a₃ξ_l(y_j + X M_jl − 2y_l)
                    + a₂((M_jl − M_ll) η_l + w_j (M_jj − M_jl) ξ_l).

    With the query in the softmax (``query = k``, M as in :func:`finite_column`) the
    integrand is ``½τ³ e^{−τw_q} x_j T_j`` with
    ``T_j = acc_j + w_q(a₂(X m_j − 2μ + y_j) + a₁ w_j(M_jj − m_j)) + w_q² a₁(m_j − M_qq)``
    (``m = M[:K, K]``, ``μ = Σ x_m m_m``) for ``j ≠ k``; ``s_k`` moves both the tokens of
    feature k and ``w_q = w_k``, whose share ``w_q ∂/∂w_q`` is added in column k.  Row
    k follows from symmetry.

    The diagonal follows from shift invariance, ``H_jj = −Σ_{l≠j} H_jl``: computed
    directly it is a difference of O(M) terms and loses the tiny late-training values.
    O(K²) per node.
    """
    K = s.shape[0]
    w = np.empty(K)
    u = np.empty(K)
    x = np.empty(K)
    y = np.empty(K)
    xi = np.empty(K)
    eta = np.empty(K)
    b = np.empty(K)
    v_lo, J = _grid(s, N, h, w)
    wq = w[query] if query >= 0 else 0.0
    for j in range(K):
        for l in range(K):
            H[j, l] = 0.0
    for step in range(J + 1):
        tau = math.exp(v_lo + step * h)
        eq = math.exp(-tau * wq)
        logphi = _tilt(tau, w, logp, u)
        a1, a2, a3, a4 = _a(N, 1, logphi), _a(N, 2, logphi), _a(N, 3, logphi), _a(N, 4, logphi)
        X = 0.0
        mu = 0.0
        for m in range(K):
            x[m] = w[m] * u[m]
            xi[m] = x[m] * (1.0 - tau * w[m])
            eta[m] = x[m] * w[m] * (2.0 - tau * w[m])
            X += x[m]
            if query >= 0:
                mu += x[m] * M[m, K]
        q = 0.0
        d = 0.0
        for n in range(K):
            yn = 0.0
            zn = 0.0
            for m in range(K):
                yn += M[n, m] * x[m]
                zn += M[n, m] * x[m] * w[m]
            y[n] = yn
            b[n] = zn - w[n] * yn
            q += x[n] * yn
            d += M[n, n] * w[n] * x[n]
        for n in range(K):
            b[n] += w[n] * M[n, n] * X - d
        c = 0.5 * tau * tau * tau * h * eq
        for j in range(K):
            if j == query:
                continue
            if query >= 0:
                mj, Mqq = M[j, K], M[K, K]
                lin = X * mj - 2.0 * mu + y[j]
                q1 = wq * (a2 * lin + a1 * w[j] * (M[j, j] - mj))
                q2 = wq * wq * a1 * (mj - Mqq)
            for l in range(K):
                if l == j:
                    continue
                dT = (-tau * x[l] * (a4 * (X * y[j] - q) + a3 * b[j])
                      + a3 * xi[l] * (y[j] + X * M[j, l] - 2.0 * y[l])
                      + a2 * ((M[j, l] - M[l, l]) * eta[l] + w[j] * (M[j, j] - M[j, l]) * xi[l]))
                if query >= 0:
                    dT += (wq * (-tau * x[l] * (a3 * lin + a2 * w[j] * (M[j, j] - mj))
                                 + a2 * xi[l] * (mj - 2.0 * M[l, K] + M[j, l]))
                           - tau * x[l] * wq * wq * a2 * (mj - Mqq))
                    if l == query:      # the query's own weight w_q = w_k moves with s_k
                        T = a3 * (X * y[j] - q) + a2 * b[j] + q1 + q2
                        dT += -tau * wq * T + q1 + 2.0 * q2
                H[j, l] += c * x[j] * dT
    if query >= 0:
        for l in range(K):
            if l != query:
                H[query, l] = H[l, query]
    for j in range(K):
        total = 0.0
        for l in range(K):
            if l != j:
                total += H[j, l]
        H[j, j] = -total


def loss_and_gradient(S, F, p, N, h=DEFAULT_STEP, include_query=False):
    """Population loss at prompt length N, its gradient Γ (K×K) and the quadrature error bound.

    Parameters
    ----------
    S : ndarray, shape (K, K)
        Scores; column k is query k's.
    F : ndarray, shape (K, K)
        Function-class moments ``E_f[f(V) f(V)ᵀ]``.
    p : ndarray, shape (K,)
        Feature probabilities.
    N : int
        Prompt length.
    h : float, optional
        Step of the log-τ trapezoid rule.
    include_query : bool, optional
        The query token (value 0) sits in the softmax.

    Returns
    -------
    loss : float
        ``Σ_k p_k ℓ_k``.
    Gamma : ndarray, shape (K, K)
        ``∂ℒ/∂S``.
    error : float
        Bound on the quadrature error of the loss and of every entry of Γ (the largest
        difference between steps h and 2h).

    Examples
    --------
    At N = 4 against the brute-force sum over the 15 compositions of 4 into K = 3 counts:

    >>> from attnflow.solvers.columns import label_gap_stack
    >>> from attnflow.solvers.references.enumeration import enumerate_column
    >>> S = np.array([[1.0, -0.5, 0.2], [0.3, 0.8, -0.1], [-0.4, 0.1, 1.2]])
    >>> F, p = np.eye(3) + 0.25, np.array([0.5, 0.3, 0.2])
    >>> loss, Gamma, error = loss_and_gradient(S, F, p, N=4)
    >>> Ms = label_gap_stack(F, False)
    >>> columns = [enumerate_column(S[:, k], p, Ms[k], 4) for k in range(3)]
    >>> exact_loss = sum(p[k] * columns[k][0] for k in range(3))
    >>> exact_Gamma = np.stack([p[k] * columns[k][1] for k in range(3)], axis=1)
    >>> bool(abs(loss - exact_loss) < 1e-14), bool(np.abs(Gamma - exact_Gamma).max() < 1e-14)
    (True, True)
    >>> bool(error < 1e-12), round(float(loss), 6)
    (True, 0.2523)
    """
    K = S.shape[0]
    logp = np.log(p)
    Ms = label_gap_stack(F, include_query)
    Gamma = np.empty((K, K))
    g = np.empty(K)
    att = np.empty(K)
    total, error = 0.0, 0.0
    for k in range(K):
        value, err, _ = finite_column(np.ascontiguousarray(S[:, k]), logp, Ms[k], int(N), h, g, att,
                                   k if include_query else -1)
        total += p[k] * value
        Gamma[:, k] = p[k] * g
        error = max(error, p[k] * err)
    return total, Gamma, error


def grid_steps(s, N, h=DEFAULT_STEP):
    """Number of quadrature steps for one query: grows like log N, not with the compositions of N.

    Examples
    --------
    >>> s = np.array([1.0, 0.3, -0.4])
    >>> grid_steps(s, 4), grid_steps(s, 10**6)
    (372, 471)
    """
    return _grid(np.asarray(s, dtype=np.float64), int(N), h, np.empty(len(s)))[1] + 1


def missing_query_probability(p, N):
    """Probability that a prompt has no token of the query's feature, per query: (1 − p_k)^N.

    Examples
    --------
    >>> missing_query_probability([0.5, 0.3, 0.2], 4).round(12).tolist()
    [0.0625, 0.2401, 0.4096]
    """
    return (1.0 - np.asarray(p)) ** N
