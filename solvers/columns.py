"""The per-query ("column") pieces of the score dynamics, hand-derived.

For query k the scores on the features form the column ``s = S[:, k]``; the
attention is ``a = softmax(s + log p)`` and the per-query loss is ``½ aᵀ M a`` with
the label-gap moments ``M = M⁽ᵏ⁾``.  With ``u = M a`` and ``β = aᵀ u``:

    ℓ = ½ β,      g = ∂ℓ/∂s = a ∘ (u − β),
    H = ∂²ℓ/∂s∂s = D M D + diag(g) − g aᵀ − a gᵀ,    D = diag(a) − a aᵀ.

:mod:`derivations` derives the same two functions with SymPy and generates them;
these hand-written ones are the reference the generated code is tested against.
The attention itself (:func:`column_attention`) is the stable log-sum-exp both use.
"""

import numpy as np
from numba import njit


@njit(cache=True)
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


def label_gap_stack(F, include_query=False):
    """``Ms[k] = M⁽ᵏ⁾`` for every query, (K, K, K): what the kernels take instead of F.

    With ``include_query`` (the query token, value 0, inside the softmax) each matrix
    gains a last row and column for the query's own gap ``0 − f_k``:
    ``M_nq = E[(f_n − f_k)(−f_k)] = F_kk − F_nk`` and ``M_qq = F_kk``, shape (K, K+1, K+1).

    Parameters
    ----------
    F : ndarray, shape (K, K)
        Function-class moments ``E_f[f(V) f(V)ᵀ]``.
    include_query : bool, optional
        Add the query token's row and column.

    Returns
    -------
    ndarray, shape (K, K, K) or (K, K+1, K+1)

    Examples
    --------
    >>> Ms = label_gap_stack(np.eye(3))
    >>> Ms.shape, Ms[0].tolist()                     # M⁽⁰⁾: row and column 0 are zero
    ((3, 3, 3), [[0.0, 0.0, 0.0], [0.0, 2.0, 1.0], [0.0, 1.0, 2.0]])
    >>> label_gap_stack(np.eye(3), include_query=True)[0, 3].tolist()   # [F_00 − F_n0, F_00]
    [0.0, 1.0, 1.0, 1.0]
    """
    K = F.shape[0]
    Ms = np.zeros((K, K + 1, K + 1) if include_query else (K, K, K))
    for k in range(K):
        label_gap_moments(F, k, Ms[k, :K, :K])
        if include_query:
            Ms[k, :K, K] = Ms[k, K, :K] = F[k, k] - F[:, k]
            Ms[k, K, K] = F[k, k]
    return Ms


@njit(cache=True)
def label_gap_moments(F, k, M):
    """Write ``M⁽ᵏ⁾_nm = F_nm − F_nk − F_km + F_kk`` into ``M``.

    Row and column k are zero by definition and are set so exactly (rounding would
    leave 1e-16 residues that swamp late-training gradients); M is filled symmetrically.
    """
    K = F.shape[0]
    for n in range(K):
        for m in range(n, K):
            v = 0.0 if (n == k or m == k) else F[n, m] - F[n, k] - F[k, m] + F[k, k]
            M[n, m] = v
            M[m, n] = v


@njit(cache=True)
def _moments(a, M):
    """``u = M a`` and ``β = aᵀ u``."""
    K = a.shape[0]
    u = np.empty(K)
    beta = 0.0
    for n in range(K):
        acc = 0.0
        for m in range(K):
            acc += M[n, m] * a[m]
        u[n] = acc
        beta += a[n] * acc
    return u, beta


@njit(cache=True)
def column_loss_gradient(a, M, g):
    """Return ``ℓ = ½ aᵀ M a`` and write ``g = ∂ℓ/∂s`` (through the softmax) into ``g``.

    Parameters
    ----------
    a : ndarray, shape (K,)
        The query's attention (:func:`column_attention`).
    M : ndarray, shape (K, K)
        Its label-gap moments (symmetric).
    g : ndarray, shape (K,)
        Output: the score gradient.

    Returns
    -------
    float
        The per-query loss ℓ.

    Examples
    --------
    >>> a, g = np.full(3, 1 / 3), np.empty(3)
    >>> round(column_loss_gradient(a, label_gap_stack(np.eye(3))[0], g), 12), g.round(12).tolist()
    (0.333333333333, [-0.222222222222, 0.111111111111, 0.111111111111])
    """
    K = a.shape[0]
    u, beta = _moments(a, M)
    for n in range(K):
        g[n] = a[n] * (u[n] - beta)
    return 0.5 * beta


@njit(cache=True)
def column_hessian(a, M, H):
    """Write ``∂²ℓ/∂s∂s`` into ``H``."""
    K = a.shape[0]
    u, beta = _moments(a, M)
    # (D M D)_nm = a_n a_m (M_nm − u_n − u_m + β), using M = Mᵀ.
    for n in range(K):
        gn = a[n] * (u[n] - beta)
        for m in range(K):
            gm = a[m] * (u[m] - beta)
            H[n, m] = a[n] * a[m] * (M[n, m] - u[n] - u[m] + beta) - gn * a[m] - a[n] * gm
        H[n, n] += gn


# ---- several heads (solvers.multihead): query k's column of head h, with a = a^h, the mean
# attention ā = (1/H) Σ_h a^h and u = M ā.  ℓ = ½ āᵀ M ā, g^h = a ∘ (u − aᵀu)/H, and the column
# Hessian's (h, h') block is D^h M D^{h'} / H² plus, on the diagonal h' = h, diag(g^h) − g^h aᵀ − a g^hᵀ.


@njit(cache=True)
def mean_column_loss(abar, M, u, work):
    """Return ``ℓ = ½ āᵀ M ā`` of the mean attention ā and write ``u = M ā`` into ``u``.

    Parameters
    ----------
    abar : ndarray, shape (K,)
        The heads' mean attention.
    M : ndarray, shape (K, K)
        The query's label-gap moments (symmetric).
    u : ndarray, shape (K,)
        Output: ``M ā``.
    work : ndarray, shape (2, K)
        Scratch (the generated twin's sums; unused here).

    Returns
    -------
    float
        The per-query loss ℓ.

    Examples
    --------
    >>> u = np.empty(3)
    >>> ell = mean_column_loss(np.full(3, 1 / 3), label_gap_stack(np.eye(3))[0], u, np.empty((2, 3)))
    >>> round(ell, 12), u.round(12).tolist()
    (0.333333333333, [0.0, 1.0, 1.0])
    """
    K = abar.shape[0]
    beta = 0.0
    for n in range(K):
        acc = 0.0
        for m in range(K):
            acc += M[n, m] * abar[m]
        u[n] = acc
        beta += abar[n] * acc
    return 0.5 * beta


@njit(cache=True)
def head_column_gradient(a, u, H, g):
    """Write head h's column gradient ``g = ∂ℓ/∂s^h = a ∘ (u − aᵀu) / H`` into ``g``.

    Parameters
    ----------
    a : ndarray, shape (K,)
        Head h's attention of the query.
    u : ndarray, shape (K,)
        ``M ā`` (:func:`mean_column_loss`).
    H : int
        Number of heads.
    g : ndarray, shape (K,)
        Output.
    """
    K = a.shape[0]
    beta = 0.0
    for n in range(K):
        beta += a[n] * u[n]
    for n in range(K):
        g[n] = a[n] * (u[n] - beta) / H


@njit(cache=True)
def head_column_cross_hessian(a, b, M, H, B, work):
    """Write ``D^a M D^b / H²`` into ``B``: the block ``∂g^h/∂s^{h'}`` (a = a^h, b = a^{h'}) without the diagonal correction.

    ``D^a = diag(a) − a aᵀ``.  With h' = h (b = a) the diagonal block is this plus
    :func:`head_column_hessian_correction`.

    Parameters
    ----------
    a, b : ndarray, shape (K,)
        The two heads' attention of the query.
    M : ndarray, shape (K, K)
        The query's label-gap moments (symmetric).
    H : int
        Number of heads.
    B : ndarray, shape (K, K)
        Output.
    work : ndarray, shape (2, K)
        Scratch (the generated twin's sums; unused here).
    """
    K = a.shape[0]
    # (D^a M)_nm = a_n (M_nm − Σ_j a_j M_jm), into B; then (D^a M D^b)_nm = b_m ((D^a M)_nm − Σ_j (D^a M)_nj b_j)
    for m in range(K):
        col = 0.0
        for j in range(K):
            col += a[j] * M[j, m]
        for n in range(K):
            B[n, m] = a[n] * (M[n, m] - col)
    for n in range(K):
        row = 0.0
        for j in range(K):
            row += B[n, j] * b[j]
        for m in range(K):
            B[n, m] = b[m] * (B[n, m] - row) / (H * H)


@njit(cache=True)
def head_column_hessian_correction(a, u, H, B):
    """Write the diagonal block's correction ``diag(g) − g aᵀ − a gᵀ`` into ``B``, ``g = a ∘ (u − aᵀu)/H``.

    Parameters
    ----------
    a : ndarray, shape (K,)
        Head h's attention of the query.
    u : ndarray, shape (K,)
        ``M ā`` (:func:`mean_column_loss`).
    H : int
        Number of heads.
    B : ndarray, shape (K, K)
        Output (symmetric).
    """
    K = a.shape[0]
    beta = 0.0
    for n in range(K):
        beta += a[n] * u[n]
    for n in range(K):
        gn = a[n] * (u[n] - beta) / H
        for m in range(K):
            gm = a[m] * (u[m] - beta) / H
            B[n, m] = -(gn * a[m] + a[n] * gm)
        B[n, n] += gn


@njit(cache=True)
def target_log_gap(S, logp):
    """``max_k log(1 − A_kk)``: log of the worst query's attention off its own feature.

    A difference of log-sum-exps, exact when the attention is within 1e-300 of one;
    the solvers get the same number cheaper from ``loss_gradient_gap``, and this
    independent formula checks it in the tests.
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
