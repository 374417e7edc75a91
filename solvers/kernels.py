"""Hand-written Numba kernels for the large-prompt (N = ∞) score dynamics.

State: the K×K score matrix ``S[n, k] = v_nᵀ Q v_k`` (key feature n, query
feature k).  Every problem parameter is a runtime argument, so a parameter sweep
compiles once (and, with ``cache=True``, once per machine).

For query k the attention on feature n is ``a = softmax(S[:, k] + log p)``.  With
``F = E_f[f(V) f(V)ᵀ]`` and ``Σ_n a_n = 1``, the per-query error moment is
``β_k = aᵀ M⁽ᵏ⁾ a`` where ``(M⁽ᵏ⁾ a)_n = b_n = (Fa)_n − F_nk − (Fa)_k + F_kk``, so the
K×K×K stack ``M⁽ᵏ⁾`` is never formed.  Then

    ℒ(S) = ½ Σ_k p_k β_k,
    Γ_nk = ∂ℒ/∂S_nk = p_k a_n (b_n − β_k),
    ∂Γ_nk/∂S_mk = p_k H⁽ᵏ⁾_nm,   H⁽ᵏ⁾ = D F D + diag(r) − r aᵀ − a rᵀ,

with ``D = diag(a) − a aᵀ`` (``D 1 = 0`` turns ``D M⁽ᵏ⁾ D`` into ``D F D``) and
``r = a ∘ (b − β)``.  The flow is ``dS/dt = −G Γ G``; its Jacobian with respect to
the C-ordered state ``y[n*K + k] = S[n, k]`` is
``J[(i,l), (m,k)] = −(G H⁽ᵏ⁾)_im p_k G_kl``.

These kernels are the reference the generated kernels of ``derivations`` are
tested against; ``solvers.reference_numpy`` holds plain NumPy twins for
benchmarks and tests.
"""

import numpy as np
from numba import njit


@njit(cache=True, fastmath=False)
def column_attention(s, logp, a):
    """Write ``softmax(s + logp)`` into ``a`` (log-sum-exp); return log of the normaliser."""
    K = s.shape[0]
    top = -np.inf
    for n in range(K):
        z = s[n] + logp[n]
        if z > top:
            top = z
    total = 0.0
    for n in range(K):
        e = np.exp(s[n] + logp[n] - top)
        a[n] = e
        total += e
    for n in range(K):
        a[n] /= total
    return top + np.log(total)


@njit(cache=True)
def attention(S, logp):
    """Total attention ``A[n, k]`` of query k on feature n, for every query."""
    K = S.shape[0]
    A = np.empty((K, K))
    a = np.empty(K)
    s = np.empty(K)
    for k in range(K):
        for n in range(K):
            s[n] = S[n, k]
        column_attention(s, logp, a)
        for n in range(K):
            A[n, k] = a[n]
    return A


@njit(cache=True)
def _column_moments(F, k, a, Fa, b):
    """Fill ``Fa = F a`` and ``b = M⁽ᵏ⁾ a``; return ``β = aᵀ M⁽ᵏ⁾ a``."""
    K = a.shape[0]
    for n in range(K):
        acc = 0.0
        for m in range(K):
            acc += F[n, m] * a[m]
        Fa[n] = acc
    shift = F[k, k] - Fa[k]
    beta = 0.0
    for n in range(K):
        b[n] = Fa[n] - F[n, k] + shift
        beta += a[n] * b[n]
    return beta


@njit(cache=True)
def loss_gradient_gap(S, F, p, logp, Gamma):
    """Population loss ℒ(S) at N = ∞ and ``max_k log(1 − A_kk)``; writes ``Γ = ∂ℒ/∂S`` into ``Gamma``.

    ``1 − A_kk = Σ_{n≠k} A_nk`` is a sum of positive terms each computed to full
    relative precision, so the gap stays exact when A_kk is within 1e-300 of one.
    """
    K = S.shape[0]
    a = np.empty(K)
    s = np.empty(K)
    Fa = np.empty(K)
    b = np.empty(K)
    loss = 0.0
    gap = -np.inf
    for k in range(K):
        for n in range(K):
            s[n] = S[n, k]
        column_attention(s, logp, a)
        beta = _column_moments(F, k, a, Fa, b)
        loss += 0.5 * p[k] * beta
        off = 0.0
        for n in range(K):
            Gamma[n, k] = p[k] * a[n] * (b[n] - beta)
            if n != k:
                off += a[n]
        g = np.log(off)
        if g > gap:
            gap = g
    return loss, gap


@njit(cache=True)
def loss_and_gradient(S, F, p, logp, Gamma):
    """Population loss ℒ(S) at N = ∞; writes ``Γ = ∂ℒ/∂S`` into ``Gamma``."""
    return loss_gradient_gap(S, F, p, logp, Gamma)[0]


@njit(cache=True)
def event_values(y, F, p, logp):
    """``(max_k log(1 − A_kk), log ℒ)`` at the flattened state: every flow event in one call."""
    K = logp.shape[0]
    loss, gap = loss_gradient_gap(y.reshape((K, K)), F, p, logp, np.empty((K, K)))
    return gap, np.log(max(loss, 1e-300))


@njit(cache=True)
def loss(S, F, p, logp):
    """Population loss ℒ(S) at N = ∞."""
    K = S.shape[0]
    return loss_and_gradient(S, F, p, logp, np.empty((K, K)))


@njit(cache=True)
def flow_rhs(y, G, F, p, logp):
    """Right-hand side of ``dS/dt = −G Γ(S) G`` on the flattened (C order) state."""
    K = G.shape[0]
    S = y.reshape((K, K))
    Gamma = np.empty((K, K))
    loss_and_gradient(S, F, p, logp, Gamma)
    return -(G @ Gamma @ G).ravel()


@njit(cache=True)
def column_hessian(S, F, logp, k, H):
    """Write the Hessian of ``½ β_k`` in the column ``S[:, k]`` into ``H`` (without p_k)."""
    K = S.shape[0]
    a = np.empty(K)
    s = np.empty(K)
    Fa = np.empty(K)
    b = np.empty(K)
    r = np.empty(K)
    for n in range(K):
        s[n] = S[n, k]
    column_attention(s, logp, a)
    beta = _column_moments(F, k, a, Fa, b)
    for n in range(K):
        r[n] = a[n] * (b[n] - beta)
    # D F D with D = diag(a) − a aᵀ: (DF)_nm = a_n (F_nm − (aᵀF)_m), (DFD)_nm = ((DF)_nm − (DF a)_n) a_m.
    DF = np.empty((K, K))
    for m in range(K):
        col = 0.0
        for j in range(K):
            col += a[j] * F[j, m]
        for n in range(K):
            DF[n, m] = a[n] * (F[n, m] - col)
    for n in range(K):
        row = 0.0
        for j in range(K):
            row += DF[n, j] * a[j]
        for m in range(K):
            H[n, m] = (DF[n, m] - row) * a[m] - r[n] * a[m] - a[n] * r[m]
        H[n, n] += r[n]


@njit(cache=True)
def flow_jacobian(y, G, F, p, logp):
    """Jacobian of :func:`flow_rhs` with respect to the flattened state."""
    K = G.shape[0]
    S = y.reshape((K, K))
    J = np.empty((K * K, K * K))
    H = np.empty((K, K))
    for k in range(K):
        column_hessian(S, F, logp, k, H)
        GH = G @ H
        for i in range(K):
            for m in range(K):
                c = -p[k] * GH[i, m]
                for l in range(K):
                    J[i * K + l, m * K + k] = c * G[k, l]
    return J


@njit(cache=True)
def target_log_gap(S, logp):
    """``max_k log(1 − A[k, k])``: log of the worst query's attention off its own feature.

    Computed as a difference of log-sum-exps so it stays accurate when the
    attention is within 1e-300 of one.
    """
    K = S.shape[0]
    worst = -np.inf
    for k in range(K):
        top_all = -np.inf
        top_off = -np.inf
        for n in range(K):
            z = S[n, k] + logp[n]
            if z > top_all:
                top_all = z
            if n != k and z > top_off:
                top_off = z
        tot_all = 0.0
        tot_off = 0.0
        for n in range(K):
            z = S[n, k] + logp[n]
            tot_all += np.exp(z - top_all)
            if n != k:
                tot_off += np.exp(z - top_off)
        gap = top_off + np.log(tot_off) - (top_all + np.log(tot_all))
        if gap > worst:
            worst = gap
    return worst


GD_FINISHED, GD_NONFINITE, GD_SCORE_LIMIT, GD_STOP_LOSS = 0, 1, 2, 3


@njit(cache=True)
def gd_iterate(S, G, F, p, logp, eta, it0, it_end, record_at, S_rec, loss_rec,
               attn_levels, attn_hits, loss_levels, loss_hits, score_limit, stop_loss):
    """Iterate the exact gradient-descent map ``S ← S − η G Γ(S) G`` in place.

    Runs from iteration ``it0`` (the state ``S`` passed in) to ``it_end`` and can be
    called again on the next chunk.  The loss is evaluated at every iterate.

    record_at : increasing iteration numbers within ``[it0, it_end]``; the iterate and
        its loss are written to ``S_rec[j]``, ``loss_rec[j]``.
    attn_levels, loss_levels : thresholds on ``max_k log(1 − A_kk)`` (so ``log ε``) and
        on the loss; ``*_hits[j]`` receives the first iteration at or below the level
        (entries already ≥ 0 are left alone).
    score_limit : stop when ``max |S|`` exceeds it.  stop_loss : if positive, stop once ``ℒ ≤ stop_loss``.

    Returns ``(status, last_iteration, n_recorded, loss_increases)``; status is one
    of ``GD_FINISHED``, ``GD_NONFINITE``, ``GD_SCORE_LIMIT``, ``GD_STOP_LOSS``.
    """
    K = S.shape[0]
    R = record_at.shape[0]
    Gamma = np.empty((K, K))
    half = np.empty((K, K))
    step = np.empty((K, K))
    identity = True          # orthonormal features: G = I and the sandwich is Γ itself
    for n in range(K):
        for m in range(K):
            if G[n, m] != (1.0 if n == m else 0.0):
                identity = False
    rec = 0
    increases = 0
    prev = np.inf
    it = it0
    while True:
        L, gap = loss_gradient_gap(S, F, p, logp, Gamma)
        if not np.isfinite(L):
            return GD_NONFINITE, it, rec, increases
        if L > prev:
            increases += 1
        prev = L
        for j in range(attn_levels.shape[0]):
            if attn_hits[j] < 0 and gap <= attn_levels[j]:
                attn_hits[j] = it
        for j in range(loss_levels.shape[0]):
            if loss_hits[j] < 0 and L <= loss_levels[j]:
                loss_hits[j] = it
        while rec < R and record_at[rec] == it:
            S_rec[rec] = S
            loss_rec[rec] = L
            rec += 1
        if stop_loss > 0.0 and L <= stop_loss:
            return GD_STOP_LOSS, it, rec, increases
        if it >= it_end:
            return GD_FINISHED, it, rec, increases
        if identity:
            step[:, :] = Gamma
        else:
            np.dot(G, Gamma, half)
            np.dot(half, G, step)
        big = 0.0
        for n in range(K):
            for k in range(K):
                S[n, k] -= eta * step[n, k]
                v = abs(S[n, k])
                if not (v <= big):  # also catches NaN
                    big = v
        it += 1
        if not np.isfinite(big):
            return GD_NONFINITE, it, rec, increases
        if big > score_limit:
            return GD_SCORE_LIMIT, it, rec, increases
