"""Assembly of the score dynamics from the per-query column functions.

State: the K×K score matrix ``S[n, k] = v_nᵀ Q v_k`` (key feature n, query
feature k).  For query k, ``a = softmax(S[:, k] + log p)`` and the per-query loss
``ℓ_k = ½ aᵀ M⁽ᵏ⁾ a`` with ``M⁽ᵏ⁾_nm = F_nm − F_nk − F_km + F_kk``; the kernels take
the stack ``Ms[k] = M⁽ᵏ⁾`` (built once per problem by :class:`attnflow.solvers.ScoreSystem`,
so no kernel rebuilds it per call), and the column functions give ``ℓ``, its
gradient g and Hessian H in the column's scores.  Then

    ℒ(S) = Σ_k p_k ℓ_k,    Γ[:, k] = p_k g⁽ᵏ⁾,    dS/dt = −G Γ G,

and the Jacobian with respect to the C-ordered state ``y[n*K + k] = S[n, k]`` is
``J[(i,l), (m,k)] = −p_k (G H⁽ᵏ⁾)_im G_kl``.  Every problem parameter (G, the moments Ms, p, η and
the prompt ``prompt = [N, h, q]``: the prompt length and the quadrature step of
:mod:`attnflow.solvers.finite_prompt`, and q = 1 when the query token sits in the softmax,
with Ms then (K, K+1, K+1); ``None`` (or N = 0) for the large-prompt limit) is a runtime
argument, so a parameter sweep compiles once (``cache=True``: once per machine).  The two
prompt models are two argument types: compiled for ``None``, the kernels leave out the
finite-prompt code.
The Jacobian is analytic at every N (at finite N through
:func:`attnflow.solvers.finite_prompt.finite_column_hessian`).

Everything below the ASSEMBLY marker is shared verbatim: this module runs it with
the hand-written columns of :mod:`attnflow.solvers.columns`, and :mod:`attnflow.derivations.codegen`
copies it into each generated module after the SymPy-generated columns, so the two
kernel sets differ only in the derived part.
"""

import numpy as np
from numba import njit

from .columns import column_attention, column_hessian, column_loss_gradient
from .finite_prompt import finite_attention, finite_column, finite_column_hessian
from .pullback import flow_sandwich, jacobian_from_hessians, log_loss

# ---- ASSEMBLY (copied into generated kernel modules; keep it self-contained) ----


# The prompt argument of every kernel: ``None`` in the large-prompt limit, else ``[N, h, q]``
# (``[0, h, 0]`` also means N = ∞).  Every finite-prompt call sits under a literal
# ``if prompt is not None ...``, which Numba removes while compiling for ``None`` (its dead-branch
# pruning of arguments typed None): then the finite-prompt kernels, about 6 s of a cold compile,
# are not compiled at all.

@njit(cache=True)
def _large_prompt(prompt):
    """Whether the prompt argument stands for the large-prompt limit."""
    if prompt is None:
        return True
    return prompt[0] <= 0


@njit(cache=True)
def _query(prompt, k):
    """The ``query`` argument of the finite-prompt columns: k if the query token is in the softmax, else −1."""
    return k if prompt[2] > 0 else -1


@njit(cache=True)
def attention(S, logp, prompt):
    """Total attention ``A[n, k]`` of query k on feature n (its expectation over prompts at finite N)."""
    K = S.shape[0]
    A = np.empty((K, K))
    a = np.empty(K)
    s = np.empty(K)
    for k in range(K):
        for n in range(K):
            s[n] = S[n, k]
        if prompt is not None and prompt[0] > 0:
            finite_attention(s, logp, int(prompt[0]), prompt[1], a, _query(prompt, k))
        else:
            column_attention(s, logp, a)
        for n in range(K):
            A[n, k] = a[n]
    return A


# From this K on, the large-prompt columns are computed from one matrix product (BLAS)
# instead of K matrix-vector loops; below it the loops are faster than the call.
PRODUCT_FORM_MIN_K = 16

# The product form's exponential (_softmax_numerators): e^x = 2ⁿ·e^r, n = round(x / log 2) by adding
# and subtracting 1.5·2⁵², r = x − n·log 2 in two parts (Cody–Waite: n·LN2_HI is exact), e^r by its
# Taylor polynomial to degree 13 (|r| ≤ ½ log 2: truncation 4e-18 relative), 2ⁿ from the exponent bits.
# Straight-line arithmetic that LLVM vectorises, within 1 ulp of np.exp (libm's, one call per entry,
# ~11 ns: 3 µs of a K = 16 iteration, twice its matrix products).  Below EXP_MIN the result would
# be subnormal, where 2ⁿ has no exponent bits: those entries take np.exp.
EXP_LOG2E = 1.4426950408889634
EXP_LN2_HI = 6.93147180369123816490e-01
EXP_LN2_LO = 1.90821492927058770002e-10
EXP_SHIFTER = 6755399441055744.0
EXP_SHIFTER_BITS = 4843621399236968448          # the bits of EXP_SHIFTER as an int64
EXP_MIN = -708.0


@njit(cache=True, fastmath={"contract"})
def _softmax_numerators(S, logp, top, E, scratch):
    """Write ``E[n, k] = exp(S[n, k] + logp[n] − top[k])`` (every exponent ≤ 0; NaN stays NaN).

    ``scratch`` is a (K, K) array whose contents are overwritten.  FMA contraction is allowed
    here only: it shortens the polynomial and rounds no worse.
    """
    K = S.shape[0]
    x = E.reshape(K * K)
    t = scratch.reshape(K * K)
    low = 0
    for n in range(K):
        for k in range(K):
            x[n * K + k] = S[n, k] + logp[n] - top[k]
    for i in range(K * K):                  # one flat loop: vectorised, also at K = 16
        v = x[i]
        low += v < EXP_MIN
        v = EXP_MIN if v < EXP_MIN else v   # not max(): a NaN must stay NaN
        shifted = v * EXP_LOG2E + EXP_SHIFTER
        t[i] = shifted
        n = shifted - EXP_SHIFTER
        r = (v - n * EXP_LN2_HI) - n * EXP_LN2_LO
        r2 = r * r
        r4 = r2 * r2
        # Σ_j r^j / (j + 2)! for j ≤ 11, in Estrin's order (a shallow dependency chain)
        q03 = (1.0 / 2 + r * (1.0 / 6)) + r2 * (1.0 / 24 + r * (1.0 / 120))
        q47 = (1.0 / 720 + r * (1.0 / 5040)) + r2 * (1.0 / 40320 + r * (1.0 / 362880))
        q811 = (1.0 / 3628800 + r * (1.0 / 39916800)) + r2 * (1.0 / 479001600 + r * (1.0 / 6227020800))
        x[i] = 1.0 + (r + r2 * ((q03 + r4 * q47) + (r4 * r4) * q811))
    bits = t.view(np.int64)                 # the low bits of shifted hold n: make them 2ⁿ
    for i in range(K * K):
        bits[i] = (bits[i] - (EXP_SHIFTER_BITS - 1023)) << 52
    for i in range(K * K):
        x[i] *= t[i]
    if low > 0:                             # subnormal or zero: rare, and exact through np.exp
        for n in range(K):
            for k in range(K):
                v = S[n, k] + logp[n] - top[k]
                if v < EXP_MIN:
                    E[n, k] = np.exp(v)


@njit(cache=True)
def _product_form_arrays(Ms, K):
    """``(F̃, E, FW, work)`` of :func:`_loss_gradient_gap_products` at K features: F̃ = M⁽⁰⁾, scratch.

    Only ``Ms[0]`` is read: a GD ensemble passes that alone
    (:func:`attnflow.solvers.ensemble.iterate_gd_ensemble`).
    """
    Ft = np.empty((K, K))          # a copy by loops: np.ascontiguousarray costs 0.4 s of a cold compile
    for n in range(K):
        for m in range(K):
            Ft[n, m] = Ms[0, n, m]
    return Ft, np.empty((K, K)), np.empty((K, K)), np.empty((5, K))


@njit(cache=True)
def _loss_gradient_gap_products(S, Ft, p, logp, Gamma, E, FW, work):
    """:func:`loss_gradient_gap` at N = ∞ with every query's label gaps from one product.

    Row and column k of ``M⁽ᵏ⁾`` vanish, so ``u⁽ᵏ⁾ = M⁽ᵏ⁾ w`` with ``w`` query k's
    attention off its own feature (``w_k = 0``, ``σ_k = Σ w``), and since
    ``M⁽ᵏ⁾_nm = F̃_nm − F̃_nk − F̃_km + F̃_kk`` for any F̃ that differs from F by
    ``c1ᵀ + 1cᵀ`` — ``F̃ = M⁽⁰⁾`` is one —

        u⁽ᵏ⁾_n = (F̃W)_nk − F̃_nk σ_k − (F̃W)_kk + F̃_kk σ_k,   u⁽ᵏ⁾_k = 0,

    with ``W`` the attention matrix with its diagonal zeroed.  Every term is O(σ_k), so the
    gradient keeps its relative precision when the attention is within 1e-300 of one,
    as the column loops do.  The product is taken on the softmax numerators ``E`` (W times
    each column's normaliser ``T_k``), which u, β and Γ are linear in: the attention is
    never normalised entry by entry.  Cost: one K×K product (2K³ flops) plus O(K²).

    Parameters
    ----------
    S, p, logp, Gamma : ndarray
        As in :func:`loss_gradient_gap`.
    Ft : (K, K) ndarray
        ``M⁽⁰⁾`` (C-contiguous, for BLAS): :func:`_product_form_arrays`.
    E, FW : (K, K) ndarray
        Scratch (C-contiguous), overwritten.
    work : (5, K) ndarray
        Scratch, overwritten.

    Returns
    -------
    loss, gap : float
        As in :func:`loss_gradient_gap`.
    """
    K = S.shape[0]
    top, off, inv_total, beta, diag = work[0], work[1], work[2], work[3], work[4]
    # Row by row throughout: every array is read and written contiguously (C order).
    for k in range(K):
        top[k] = -np.inf
    for n in range(K):
        for k in range(K):
            top[k] = max(top[k], S[n, k] + logp[n])
    _softmax_numerators(S, logp, top, E, FW)
    for k in range(K):
        diag[k] = E[k, k]
        E[k, k] = 0.0                      # E is now W·T: the attention off each query's feature
        off[k] = 0.0
    for n in range(K):
        for k in range(K):
            off[k] += E[n, k]              # σ_k T_k
    shift = top                            # top is not needed again
    for k in range(K):
        inv_total[k] = 1.0 / (diag[k] + off[k])
        beta[k] = 0.0
    np.dot(Ft, E, FW)
    for k in range(K):
        shift[k] = Ft[k, k] * off[k] - FW[k, k]
    for n in range(K):                     # FW becomes u (its diagonal is not used: W_kk = 0)
        for k in range(K):
            u = (FW[n, k] - Ft[n, k] * off[k] + shift[k]) * inv_total[k]
            FW[n, k] = u
            beta[k] += E[n, k] * u
    loss = 0.0
    sigma = 0.0                            # max_k σ_k: one log, not K (log is monotonic)
    for k in range(K):
        beta[k] *= inv_total[k]
        loss += p[k] * 0.5 * beta[k]
        sigma = max(sigma, off[k] * inv_total[k])
        off[k] = p[k] * inv_total[k]           # Γ's column factor p_k / T_k
    for n in range(K):
        for k in range(K):
            Gamma[n, k] = off[k] * E[n, k] * (FW[n, k] - beta[k])
    for k in range(K):                     # u_kk = 0
        Gamma[k, k] = -off[k] * diag[k] * beta[k]
    return loss, np.log(sigma)


@njit(cache=True)
def loss_gradient_gap(S, Ms, p, logp, prompt, Gamma):
    """Population loss ℒ(S) and ``max_k log(1 − A_kk)``; writes ``Γ = ∂ℒ/∂S`` into ``Gamma``.

    The gap is the one quantity every crossing event uses (flow and GD, every variant):
    ``1 − A_kk`` is everything query k does not pay its own feature, the attention on the
    other features plus, with the query token in the softmax, the query's own share:
    ``Σ_{n≠k} A_nk + A_qk``.  Each term is computed to full relative precision, so the
    gap stays exact when A_kk is within 1e-300 of one.

    Parameters
    ----------
    S : (K, K) ndarray
        Scores.
    Ms, p, logp, prompt : ndarray
        The runtime arrays of :attr:`attnflow.solvers.system.ScoreSystem.args` (label-gap
        moment stack, probabilities, their logs, ``[N, h, q]`` or None for N = ∞).
    Gamma : (K, K) ndarray
        Output: ``Γ = ∂ℒ/∂S``.

    Returns
    -------
    loss : float
        ``ℒ(S)``.
    gap : float
        ``max_k log(1 − A_kk)``.
    """
    K = S.shape[0]
    if _large_prompt(prompt) and K >= PRODUCT_FORM_MIN_K:
        Ft, E, FW, work = _product_form_arrays(Ms, K)
        return _loss_gradient_gap_products(S, Ft, p, logp, Gamma, E, FW, work)
    a = np.empty(K)
    s = np.empty(K)
    g = np.empty(K)
    loss = 0.0
    gap = -np.inf
    for k in range(K):
        for n in range(K):
            s[n] = S[n, k]
        M = Ms[k]
        if prompt is not None and prompt[0] > 0:
            value, _, off = finite_column(s, logp, M, int(prompt[0]), prompt[1], g, a, _query(prompt, k))
        else:
            column_attention(s, logp, a)
            value = column_loss_gradient(a, M, g)
            off = 0.0
        loss += p[k] * value
        for n in range(K):
            Gamma[n, k] = p[k] * g[n]
            if n != k:
                off += a[n]
        gap = max(gap, np.log(off))
    return loss, gap


@njit(cache=True)
def loss_and_gradient(S, Ms, p, logp, prompt, Gamma):
    """Population loss ℒ(S); writes ``Γ = ∂ℒ/∂S`` into ``Gamma``."""
    return loss_gradient_gap(S, Ms, p, logp, prompt, Gamma)[0]


@njit(cache=True)
def loss(S, Ms, p, logp, prompt):
    """Population loss ℒ(S)."""
    K = S.shape[0]
    return loss_gradient_gap(S, Ms, p, logp, prompt, np.empty((K, K)))[0]


# Up to this K, at N = ∞, flow_rhs and event_values work one query at a time on the flat
# state (_flow_rhs_columns, _event_values_columns) with one scratch allocation: at K = 4 the
# general path's ten small allocations and K logarithms were most of a right-hand side's cost.
# It is SANDWICH_LOOPS_MAX_K of solvers.pullback: above it the sandwich is two BLAS products.
COLUMN_FLOW_MAX_K = 8


@njit(cache=True, inline="always")
def _column_moments(y, k, logp, Ms, w):
    """Query k of the flat state y at N = ∞: its attention into ``w[:K]``, ``u = M⁽ᵏ⁾ a`` into ``w[K:2K]``; returns ``β = aᵀu``.

    The arithmetic of :func:`attnflow.solvers.columns.column_attention` and
    ``column_loss_gradient`` operation for operation (so Γ and ℒ are the same to the bit),
    reading the column ``S[:, k] = y[k::K]`` in place, without the normaliser's logarithm
    and without array views (each would take and drop a reference to its parent, per query).
    """
    K = logp.shape[0]
    top = -np.inf
    for n in range(K):
        z = y[n * K + k] + logp[n]
        if z > top:
            top = z
    total = 0.0
    for n in range(K):
        e = np.exp(y[n * K + k] + logp[n] - top)
        w[n] = e
        total += e
    for n in range(K):
        w[n] /= total
    beta = 0.0
    for n in range(K):
        acc = 0.0
        for m in range(K):
            acc += Ms[k, n, m] * w[m]
        w[K + n] = acc
        beta += w[n] * acc
    return beta


@njit(cache=True)
def _event_values_columns(y, Ms, p, logp):
    """:func:`event_values` at N = ∞ for K ≤ COLUMN_FLOW_MAX_K: the loss and gap without Γ."""
    K = logp.shape[0]
    w = np.empty(2 * K)
    value = 0.0
    worst = 0.0
    for k in range(K):
        beta = _column_moments(y, k, logp, Ms, w)
        value += p[k] * ((1 / 2) * beta)
        off = 0.0
        for n in range(K):
            if n != k:
                off += w[n]
        worst = max(worst, off)
    return np.log(worst), log_loss(value)


@njit(cache=True)
def event_values(y, Ms, p, logp, prompt):
    """``(max_k log(1 − A_kk), log ℒ)`` at the flattened state: every flow event in one call."""
    K = logp.shape[0]
    if _large_prompt(prompt) and K <= COLUMN_FLOW_MAX_K:
        return _event_values_columns(y, Ms, p, logp)
    value, gap = loss_gradient_gap(y.reshape((K, K)), Ms, p, logp, prompt, np.empty((K, K)))
    return gap, log_loss(value)


@njit(cache=True)
def _flow_rhs_columns(y, G, Ms, p, logp):
    """:func:`flow_rhs` at N = ∞ for K ≤ COLUMN_FLOW_MAX_K, one query at a time, Γ never stored.

    Query k's gradient column ``Γ[:, k] = p_k a ∘ (u − β)`` is added into ``T = Γ G`` as the
    rank-one term ``Γ[:, k] G[k, :]`` as soon as it is known; then ``−G T``.  Every entry of T
    and of the output is summed in the order of :func:`attnflow.solvers.pullback.flow_sandwich`,
    so the result equals ``flow_sandwich(G, Γ)`` to the bit, with two allocations (T and the
    output, which holds each query's a and u until it is written) where that path makes ten
    at K = 4.
    """
    K = G.shape[0]
    T = np.zeros(K * K)
    out = np.empty(K * K)                  # K² ≥ 2K: room for a and u
    for k in range(K):
        beta = _column_moments(y, k, logp, Ms, out)
        pk = p[k]
        for n in range(K):
            c = pk * (out[n] * (out[K + n] - beta))   # Γ[n, k]
            for l in range(K):
                T[n * K + l] += c * G[k, l]
    for i in range(K * K):
        out[i] = 0.0
    for i in range(K):
        for n in range(K):
            c = -G[i, n]
            for l in range(K):
                out[i * K + l] += c * T[n * K + l]
    return out


@njit(cache=True)
def flow_rhs(y, G, Ms, p, logp, prompt):
    """Right-hand side of ``dS/dt = −G Γ(S) G`` on the flattened (C order) state."""
    K = G.shape[0]
    if _large_prompt(prompt) and K <= COLUMN_FLOW_MAX_K:
        return _flow_rhs_columns(y, G, Ms, p, logp)
    Gamma = np.empty((K, K))
    loss_gradient_gap(y.reshape((K, K)), Ms, p, logp, prompt, Gamma)
    return flow_sandwich(G, Gamma)


@njit(cache=True)
def column_flow_rhs(y, G, Ms, p, logp, prompt):
    """:func:`flow_rhs` where it works one query at a time (N = ∞, K ≤ ``COLUMN_FLOW_MAX_K``), equal to the bit.

    The integrators' callback there (:meth:`attnflow.solvers.system.ScoreSystem.callbacks`):
    it does not link :func:`loss_gradient_gap`, which flow_rhs does for the other K and
    which LLVM would optimise once more (about 3 s of a cold run).  ``prompt`` is not read.
    """
    return _flow_rhs_columns(y, G, Ms, p, logp)


@njit(cache=True)
def column_event_values(y, Ms, p, logp, prompt):
    """:func:`event_values` where it works one query at a time (N = ∞, K ≤ ``COLUMN_FLOW_MAX_K``), equal to the bit."""
    return _event_values_columns(y, Ms, p, logp)


@njit(cache=True)
def score_hessians(S, Ms, p, logp, prompt, Hs):
    """Write ``Hs[k] = ∂Γ[:, k]/∂S[:, k] = p_k H⁽ᵏ⁾`` (Γ's columns depend only on their own scores)."""
    K = S.shape[0]
    H = np.empty((K, K))
    a = np.empty(K)
    s = np.empty(K)
    for k in range(K):
        for n in range(K):
            s[n] = S[n, k]
        if prompt is not None and prompt[0] > 0:
            finite_column_hessian(s, logp, Ms[k], int(prompt[0]), prompt[1], H, _query(prompt, k))
        else:
            column_attention(s, logp, a)
            column_hessian(a, Ms[k], H)
        for n in range(K):
            for m in range(K):
                Hs[k, n, m] = p[k] * H[n, m]


@njit(cache=True)
def flow_jacobian(y, G, Ms, p, logp, prompt):
    """Jacobian of :func:`flow_rhs` with respect to the flattened state."""
    K = G.shape[0]
    Hs = np.empty((K, K, K))
    score_hessians(y.reshape((K, K)), Ms, p, logp, prompt, Hs)
    return jacobian_from_hessians(G, Hs)


# The separate key and query factors (attnflow.solvers.separate): state y = [B.ravel(), C.ravel()],
# B and C h×K, scores S = BᵀC.  The same arguments as flow_rhs / event_values / flow_jacobian
# (K from the arrays, h = y.size // (2K)), so the compiled integrators run them in the loops
# already compiled for the score flow.

@njit(cache=True)
def _factor_scores(y, K):
    """``(B, C, S = BᵀC)`` of the factor state y: B and C are views, S a new (K, K) array."""
    half = y.shape[0] // 2
    h = half // K
    B = y[:half].reshape((h, K))
    C = y[half:].reshape((h, K))
    S = np.zeros((K, K))
    for i in range(h):
        for n in range(K):
            b = B[i, n]
            for k in range(K):
                S[n, k] += b * C[i, k]
    return B, C, S


@njit(cache=True)
def _factor_velocity(B, C, G, Gamma, out):
    """Write ``[−CΓᵀG, −BΓG]`` (flattened) into out, ``(ΓᵀG)_km = Σ_n Γ_nk G_nm``."""
    h, K = B.shape
    GammaTG = np.zeros((K, K))
    GammaG = np.zeros((K, K))
    for n in range(K):
        for m in range(K):
            g = G[n, m]
            for k in range(K):
                GammaTG[k, m] += Gamma[n, k] * g
                GammaG[k, m] += Gamma[k, n] * g
    half = h * K
    for i in range(h):
        for a in range(K):
            db = 0.0
            dc = 0.0
            for k in range(K):
                db += C[i, k] * GammaTG[k, a]
                dc += B[i, k] * GammaG[k, a]
            out[i * K + a] = -db
            out[half + i * K + a] = -dc


@njit(cache=True)
def separate_rhs(y, G, Ms, p, logp, prompt):
    """Flow of the factors, ``[dB/dt, dC/dt] = [−CΓᵀG, −BΓG]`` with ``Γ = ∂ℒ/∂S`` at ``S = BᵀC``."""
    K = G.shape[0]
    B, C, S = _factor_scores(y, K)
    Gamma = np.empty((K, K))
    loss_gradient_gap(S, Ms, p, logp, prompt, Gamma)
    out = np.empty(y.shape[0])
    _factor_velocity(B, C, G, Gamma, out)
    return out


@njit(cache=True)
def separate_event_values(y, Ms, p, logp, prompt):
    """:func:`event_values` at the scores ``BᵀC`` of the factor state y."""
    K = logp.shape[0]
    S = _factor_scores(y, K)[2]
    value, gap = loss_gradient_gap(S, Ms, p, logp, prompt, np.empty((K, K)))
    return gap, log_loss(value)


@njit(cache=True)
def separate_jacobian(y, G, Ms, p, logp, prompt):
    """Jacobian of :func:`separate_rhs`, (2hK, 2hK), from the column Hessians ``Hs[k]`` at ``S = BᵀC``.

    A change of ``B_jm`` moves row m of S by ``C[j]``, a change of ``C_jk`` moves column k
    by ``B[j]``; with ``HG[k] = Hs[k] G``, ``BH[k] = B Hs[k]`` and ``BHG[k] = BH[k] G`` the
    product rule gives the blocks (rows: the output; columns: the input)

        ∂Ḃ_ia/∂B_jm = −Σ_k C_ik C_jk HG[k]_ma,
        ∂Ḃ_ia/∂C_jk = −δ_ij (ΓᵀG)_ka − C_ik BHG[k]_ja,
        ∂Ċ_ia/∂B_jm = −δ_ij (ΓG)_ma − Σ_k BH[k]_im C_jk G_ka,
        ∂Ċ_ia/∂C_jk = −(Σ_n B_in BH[k]_jn) G_ka.
    """
    K = G.shape[0]
    B, C, S = _factor_scores(y, K)
    h = B.shape[0]
    Gamma = np.empty((K, K))
    loss_gradient_gap(S, Ms, p, logp, prompt, Gamma)
    Hs = np.empty((K, K, K))
    score_hessians(S, Ms, p, logp, prompt, Hs)
    HG = np.empty((K, K, K))
    BH = np.empty((K, h, K))
    BHG = np.empty((K, h, K))
    for k in range(K):
        HG[k] = Hs[k] @ G
        BH[k] = B @ Hs[k]
        BHG[k] = BH[k] @ G
    GammaG = Gamma @ G
    GammaTG = Gamma.T @ G
    half = h * K
    J = np.zeros((2 * half, 2 * half))
    for i in range(h):
        for a in range(K):
            row_b = i * K + a
            row_c = half + i * K + a
            for j in range(h):
                for m in range(K):
                    col = j * K + m
                    bb = 0.0
                    cb = 0.0
                    for k in range(K):
                        bb += C[i, k] * C[j, k] * HG[k, m, a]
                        cb += BH[k, i, m] * C[j, k] * G[k, a]
                    J[row_b, col] = -bb
                    J[row_c, col] = -cb
                for k in range(K):
                    col = half + j * K + k
                    bhb = 0.0
                    for n in range(K):
                        bhb += B[i, n] * BH[k, j, n]
                    J[row_b, col] = -C[i, k] * BHG[k, j, a]
                    J[row_c, col] = -bhb * G[k, a]
            for m in range(K):
                J[row_b, half + i * K + m] -= GammaTG[m, a]
                J[row_c, i * K + m] -= GammaG[m, a]
    return J


# The step callbacks of the compiled GD loop (attnflow.solvers.gd): at the state y, write the flow's
# right-hand side into dy and the scores into S (K, K), using ``work`` (the loop allocates it once per
# call, sized by the system's gd_callback) for every other array; return (ℒ, max_k log(1 − A_kk)).
# One kernel evaluation gives all three.

@njit(cache=True)
def _is_identity(G):
    """Whether G is the identity (stops at the first entry that is not)."""
    K = G.shape[0]
    for n in range(K):
        for m in range(K):
            if G[n, m] != (1.0 if n == m else 0.0):
                return False
    return True


def score_gd_work(K):
    """Scratch floats :func:`score_gd_step` needs at K features: Γ, G·Γ, and the product form's arrays."""
    return 4 * K * K + 5 * K


@njit(cache=True)
def score_gd_step(y, G, Ms, p, logp, prompt, dy, S, work):
    """GD step callback of the scores: ``dy = −(G Γ G).ravel()``, ``S = y`` as K×K; returns ``(ℒ, gap)``.

    ``work`` holds :func:`score_gd_work` floats: no array is allocated per iteration (at K = 256
    an iteration's allocations were page faults on 512 kB blocks), except the column loops'
    three K-vectors below ``PRODUCT_FORM_MIN_K``.
    """
    K = G.shape[0]
    KK = K * K
    for n in range(K):
        for m in range(K):
            S[n, m] = y[n * K + m]
    Gamma = work[:KK].reshape((K, K))
    if _large_prompt(prompt) and K >= PRODUCT_FORM_MIN_K:    # what loss_gradient_gap runs, on this scratch
        value, gap = _loss_gradient_gap_products(S, Ms[0], p, logp, Gamma, work[2 * KK:3 * KK].reshape((K, K)),
                                                 work[3 * KK:4 * KK].reshape((K, K)),
                                                 work[4 * KK:4 * KK + 5 * K].reshape((5, K)))
    else:
        value, gap = loss_gradient_gap(S, Ms, p, logp, prompt, Gamma)
    if _is_identity(G):      # orthonormal features: the sandwich is Γ itself
        for n in range(K):
            for m in range(K):
                dy[n * K + m] = -Gamma[n, m]
    else:
        half = work[KK:2 * KK].reshape((K, K))
        np.dot(G, Gamma, half)
        np.dot(half, G, dy.reshape((K, K)))
        for i in range(KK):
            dy[i] = -dy[i]
    return value, gap


@njit(cache=True)
def separate_gd_step(y, G, Ms, p, logp, prompt, dy, S, work):
    """GD step callback of the separate factors: ``dy`` = :func:`separate_rhs`, ``S = BᵀC``; returns ``(ℒ, gap)``.

    ``work`` holds K² floats (Γ).
    """
    K = G.shape[0]
    B, C, scores = _factor_scores(y, K)
    for n in range(K):
        for m in range(K):
            S[n, m] = scores[n, m]
    Gamma = work[:K * K].reshape((K, K))
    value, gap = loss_gradient_gap(scores, Ms, p, logp, prompt, Gamma)
    _factor_velocity(B, C, G, Gamma, dy)
    return value, gap
