"""The multi-head assembly: H heads' loss, gradient, Hessian blocks, flow and GD callbacks from the column functions.

:mod:`attnflow.solvers.multihead` documents the model.  For query k and each count vector c
of the prompt (one row ``log p`` at N = ∞), :func:`_head_columns` gives every head's attention
``a^h`` and the mean ā; the column functions give ``ℓ = ½ āᵀ M ā`` and ``u = M ā``
(``mean_column_loss``), head h's ``g^h = a^h ∘ (u − a^hᵀu)/H`` (``head_column_gradient``) and the
Hessian blocks ``∂g^h/∂s^{h'} = D^h M D^{h'}/H² + δ_{hh'}(diag(g^h) − g^h a^hᵀ − a^h g^hᵀ)``
(``head_column_cross_hessian`` and ``head_column_hessian_correction``), and the assembly sums
them over count vectors and queries: ``ℒ = Σ_k p_k E[ℓ_k]``, ``Γ^h[:, k] = p_k E[g^h]``.

With the query token in the softmax (finite N, ``Ms`` of (K+1)×(K+1) matrices from
:func:`attnflow.solvers.columns.label_gap_stack`) every head's softmax has K + 1 entries, the
last the query token's, of logit ``S^h[k, k]`` (log count 0) and value 0; the column functions
run on the (K+1)-vectors unchanged (they read the length from their arguments), and since
``S^h[k, k]`` is the logit of both feature k's tokens and the query token, Γ^h's entry k and
the Hessian blocks' row and column k follow from shift invariance, as for one head
(:mod:`attnflow.solvers.finite_prompt`).

Everything below the MULTIHEAD ASSEMBLY marker is shared verbatim, like
:mod:`attnflow.solvers.assembly`'s: this module runs it with the hand-written columns of
:mod:`attnflow.solvers.columns`, and :mod:`attnflow.derivations.codegen` copies it into each
generated module after the columns printed from the indexed derivation
(:mod:`attnflow.derivations.indexed_heads`), so the two kernel sets differ only in the derived part.
"""

import numpy as np
from numba import njit

from .columns import (column_attention, head_column_cross_hessian, head_column_gradient,
                      head_column_hessian_correction, mean_column_loss)
from .pullback import flow_sandwich, log_loss

# ---- MULTIHEAD ASSEMBLY (copied into generated kernel modules; keep it self-contained) ----


@njit(cache=True)
def _head_columns(S, logc, k, s, a, abar):
    """Query k's attention of every head into ``a`` (H, L) and their mean into ``abar``; returns
    the mean's share off feature k, ``Σ_{n≠k} ā_n``, each term to full relative precision
    (``s`` is scratch of length L).

    L = K, or K + 1 with the query token in the softmax: its logit is head h's ``S^h[k, k]``
    (its feature is k, its count 1, so ``logc[K] = 0``), its entry the last, and its share
    counts as off feature k."""
    H, K, L = S.shape[0], S.shape[1], a.shape[1]
    off = 0.0
    for n in range(L):
        abar[n] = 0.0
    for h in range(H):
        for n in range(K):
            s[n] = S[h, n, k]
        if L > K:
            s[K] = S[h, k, k]
        column_attention(s, logc, a[h])
        for n in range(L):
            abar[n] += a[h, n] / H
            if n != k:
                off += a[h, n] / H
    return off


@njit(cache=True)
def _prompt_logits(logc, c, lq):
    """Row c of the log counts into ``lq``; with the query token (``lq`` of length K + 1) its log count 0 last."""
    K = logc.shape[1]
    for n in range(K):
        lq[n] = logc[c, n]
    if lq.shape[0] > K:
        lq[K] = 0.0


@njit(cache=True)
def _fold_query_hessian(Hk, k):
    """Row and column k of each head pair's block of ``Hk`` (H, K, H, K) from shift invariance.

    With the query token in the softmax ``S^h[k, k]`` moves two logits (feature k's tokens and the
    query's), whose shares would cancel to rounding late in training.  Every block's rows and
    columns sum to zero (ā is invariant under shifting one head's logits, and Σ_n g^h_n = 0), so
    ``B[k, m] = −Σ_{n≠k} B[n, m]`` and ``B[n, k] = −Σ_{m≠k} B[n, m]`` from the entries off k,
    which involve one logit each (the finite-prompt column's rule, finite_prompt.py)."""
    H, K = Hk.shape[0], Hk.shape[1]
    for h in range(H):
        for hh in range(H):
            for m in range(K):
                if m != k:
                    total = 0.0
                    for n in range(K):
                        if n != k:
                            total += Hk[h, n, hh, m]
                    Hk[h, k, hh, m] = -total
            for n in range(K):
                total = 0.0
                for m in range(K):
                    if m != k:
                        total += Hk[h, n, hh, m]
                Hk[h, n, hh, k] = -total


@njit(cache=True)
def multihead_loss_gradient_gap(S, Ms, p, weights, logc, Gamma):
    """ℒ of H heads and ``max_k log(1 − E[ā_kk])``; writes ``Γ^h = ∂ℒ/∂S^h`` into ``Gamma``.

    The expectation over prompts is the weighted sum over count vectors (rows of ``logc``,
    :func:`attnflow.solvers.multihead.prompt_counts`); one row ``log p`` of weight 1 is the
    large-prompt limit.

    Parameters
    ----------
    S : ndarray, shape (H, K, K)
        The heads' scores.
    Ms : ndarray, shape (K, L, L)
        Label-gap moment stack (:func:`attnflow.solvers.columns.label_gap_stack`); L = K + 1
        puts the query token in every head's softmax (its row and column last).
    p : ndarray, shape (K,)
        Feature probabilities (of the query).
    weights : ndarray, shape (C,)
        Probability of each count vector.
    logc : ndarray, shape (C, K)
        Log counts (−inf for an absent feature), or ``log p`` at N = ∞.
    Gamma : ndarray, shape (H, K, K)
        Output: the gradient of each head.

    Returns
    -------
    loss : float
    gap : float
        ``max_k log Σ_{n≠k} E[ā_nk]`` (the query token's share included), each term to full
        relative precision.
    """
    H, K = S.shape[0], S.shape[1]
    L = Ms.shape[1]                    # K, or K + 1 with the query token
    a = np.empty((H, L))
    s = np.empty(L)
    abar = np.empty(L)
    u = np.empty(L)
    gh = np.empty(L)
    lq = np.empty(L)
    work = np.empty((2, L))            # the column functions' scratch
    g = np.empty((H, K))
    loss = 0.0
    gap = -np.inf
    for k in range(K):
        M = Ms[k]
        for h in range(H):
            for n in range(K):
                g[h, n] = 0.0
        ell_k = 0.0
        off_k = 0.0
        for c in range(weights.shape[0]):
            weight = weights[c]
            if weight == 0.0:          # an underflowed count vector: its share is below 1e-308
                continue
            _prompt_logits(logc, c, lq)
            off = _head_columns(S, lq, k, s, a, abar)
            ell_k += weight * mean_column_loss(abar, M, u, work)
            off_k += weight * off
            for h in range(H):
                head_column_gradient(a[h], u, H, gh)
                for n in range(K):
                    g[h, n] += weight * gh[n]
        if L > K:
            # S^h[k, k] is the logit of feature k's tokens and of the query token, whose shares
            # would cancel to rounding late in training: g_k from shift invariance instead
            for h in range(H):
                total = 0.0
                for n in range(K):
                    if n != k:
                        total += g[h, n]
                g[h, k] = -total
        loss += p[k] * ell_k
        for h in range(H):
            for n in range(K):
                # the single-head kernel's order of operations (a weight of 1 is exact), so that
                # one head at N = ∞ is it bit for bit
                Gamma[h, n, k] = p[k] * g[h, n]
        gap = max(gap, np.log(off_k))
    return loss, gap


@njit(cache=True)
def multihead_hessians(S, Ms, p, weights, logc, Hs):
    """Write ``Hs[k, h, n, h', m] = p_k ∂g^h_n/∂s^{h'}_m`` (query k's column Hessian) into Hs.

    Parameters
    ----------
    S : ndarray, shape (H, K, K)
    Ms, p, weights, logc : ndarray
        As :func:`multihead_loss_gradient_gap`.
    Hs : ndarray, shape (K, H, K, H, K)
        Output; each ``Hs[k]`` reshaped (HK, HK) is symmetric.  With the query token in the
        softmax its blocks' row and column k follow from shift invariance (:func:`_fold_query_hessian`).
    """
    H, K = S.shape[0], S.shape[1]
    L = Ms.shape[1]                    # K, or K + 1 with the query token
    a = np.empty((H, L))
    s = np.empty(L)
    abar = np.empty(L)
    u = np.empty(L)
    lq = np.empty(L)
    B = np.empty((L, L))
    work = np.empty((2, L))            # the column functions' scratch
    for k in range(K):
        M = Ms[k]
        for h in range(H):
            for n in range(K):
                for hh in range(H):
                    for m in range(K):
                        Hs[k, h, n, hh, m] = 0.0
        for c in range(weights.shape[0]):
            weight = weights[c]
            if weight == 0.0:
                continue
            _prompt_logits(logc, c, lq)
            _head_columns(S, lq, k, s, a, abar)
            mean_column_loss(abar, M, u, work)
            pk = weight * p[k]
            for h in range(H):
                # the (h', h) block is the (h, h') block transposed (the derivation proves it): each pair once
                for hh in range(h, H):
                    head_column_cross_hessian(a[h], a[hh], M, H, B, work)
                    for n in range(K):
                        for m in range(K):
                            Hs[k, h, n, hh, m] += pk * B[n, m]
                    if hh != h:
                        for n in range(K):
                            for m in range(K):
                                Hs[k, hh, m, h, n] += pk * B[n, m]
                head_column_hessian_correction(a[h], u, H, B)
                for n in range(K):
                    for m in range(K):
                        Hs[k, h, n, h, m] += pk * B[n, m]
        if L > K:
            _fold_query_hessian(Hs[k], k)


@njit(cache=True)
def multihead_attention(S, Ms, weights, logc, A):
    """Write every head's expected attention ``A[h, n, k] = E[softmax(S^h[:, k] + log c)[n]]`` into A (H, K, K).

    ``Ms``, ``weights``, ``logc`` as :func:`multihead_loss_gradient_gap` (at N = ∞ one row ``log p``);
    with the query token in the softmax (``Ms`` of (K + 1)² matrices) it joins each softmax
    and A holds the attention on the K features' tokens, without the query's own share (as
    one head's :func:`attnflow.solvers.finite_prompt.finite_attention`).
    """
    H, K = S.shape[0], S.shape[1]
    L = Ms.shape[1]
    s = np.empty(L)
    a = np.empty(L)
    lq = np.empty(L)
    for h in range(H):
        for k in range(K):
            for n in range(K):
                A[h, n, k] = 0.0
                s[n] = S[h, n, k]
            if L > K:
                s[K] = S[h, k, k]
            for c in range(weights.shape[0]):
                if weights[c] == 0.0:
                    continue
                _prompt_logits(logc, c, lq)
                column_attention(s, lq, a)
                for n in range(K):
                    A[h, n, k] += weights[c] * a[n]


@njit(cache=True)
def _effective_scores(S, logp, out):
    """:func:`attnflow.solvers.multihead.effective_scores` of one state S (H, K, K) into out (K, K)."""
    H, K = S.shape[0], S.shape[1]
    Z = np.empty(H)
    for k in range(K):
        mean_Z = 0.0
        for h in range(H):
            top = -np.inf
            for n in range(K):
                top = max(top, S[h, n, k] + logp[n])
            total = 0.0
            for n in range(K):
                total += np.exp(S[h, n, k] + logp[n] - top)
            Z[h] = top + np.log(total)
            mean_Z += Z[h] / H
        for n in range(K):
            top = -np.inf
            for h in range(H):
                top = max(top, S[h, n, k] - Z[h])
            total = 0.0
            for h in range(H):
                total += np.exp(S[h, n, k] - Z[h] - top)
            out[n, k] = top + np.log(total / H) + mean_Z


# ---- compiled callbacks: the score flow's argument types, five C-contiguous arrays (2-d, 3-d, 1-d, 1-d,
# 1-d), here (G, Ms, p, weights, logc.ravel()), with H = y.size // K² and K = Ms.shape[0], so the
# integrators' and the GD loop's machine code compiled for the scores serves the heads at every N.


@njit(cache=True)
def _head_gradients(y, Ms, p, weights, logc):
    K = Ms.shape[0]
    H = y.shape[0] // (K * K)
    Gamma = np.empty((H, K, K))
    value, gap = multihead_loss_gradient_gap(y.reshape((H, K, K)), Ms, p, weights,
                                             logc.reshape((weights.shape[0], K)), Gamma)
    return value, gap, Gamma


@njit(cache=True)
def _head_velocity(G, Gamma, dy):
    """``dy = [−(G Γ^h G).ravel() for each head]``."""
    H, K = Gamma.shape[0], Gamma.shape[1]
    for h in range(H):
        step = flow_sandwich(G, Gamma[h])
        for i in range(K * K):
            dy[h * K * K + i] = step[i]


@njit(cache=True)
def multihead_rhs(y, G, Ms, p, weights, logc):
    """``dS^h/dt = −G Γ^h G`` for every head at the flat state y (H·K²,): the integrators' ``rhs``."""
    _, _, Gamma = _head_gradients(y, Ms, p, weights, logc)
    dy = np.empty(y.shape[0])
    _head_velocity(G, Gamma, dy)
    return dy


@njit(cache=True)
def multihead_event_values(y, Ms, p, weights, logc):
    """``(max_k log(1 − E[ā_kk]), log ℒ)`` at the flat state y: the integrators' ``events``."""
    value, gap, _ = _head_gradients(y, Ms, p, weights, logc)
    return gap, log_loss(value)


@njit(cache=True)
def multihead_jacobian(y, G, Ms, p, weights, logc):
    """``J[(h,i,l), (h',m,k)] = −(G Hs[k]^{hh'})_im G_kl`` at the flat state y: the stiff integrator's ``jac``."""
    K = G.shape[0]
    H = y.shape[0] // (K * K)
    Hs = np.empty((K, H, K, H, K))
    multihead_hessians(y.reshape((H, K, K)), Ms, p, weights, logc.reshape((weights.shape[0], K)), Hs)
    n = H * K * K
    J = np.zeros((n, n))
    for k in range(K):
        for h in range(H):
            for i in range(K):
                for b in range(H):
                    for m in range(K):
                        gh = 0.0
                        for j in range(K):
                            gh += G[i, j] * Hs[k, h, j, b, m]
                        for l in range(K):
                            J[h * K * K + i * K + l, b * K * K + m * K + k] = -gh * G[k, l]
    return J


@njit(cache=True)
def multihead_gd_step(y, G, Ms, p, weights, logc, dy, S, work):
    """The GD loop's ``step``: ``dy`` = :func:`multihead_rhs`, ``S`` the effective scores; returns ``(ℒ, gap)``.

    ``work`` (the loop's scratch) is not used: the heads' gradients allocate their own arrays.
    """
    value, gap, Gamma = _head_gradients(y, Ms, p, weights, logc)
    _head_velocity(G, Gamma, dy)
    _effective_scores(y.reshape(Gamma.shape), np.log(p), S)
    return value, gap
