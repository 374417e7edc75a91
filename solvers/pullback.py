"""The kernel-set-independent ends of the flow kernels: ``−G Γ G``, its Jacobian from the column Hessians, ``log ℒ``.

:mod:`solvers.assembly` builds ``flow_rhs``, ``event_values`` and ``flow_jacobian`` from
these and :func:`solvers.assembly.loss_gradient_gap` / ``score_hessians``.  They live
here, compiled once for every kernel set, so that :class:`solvers.ScoreSystem` can
compose them with a kernel set's ``loss_gradient_gap`` and ``score_hessians`` from
Python: the same arithmetic, without compiling the composed kernels, each of which
Numba would build with all of ``loss_gradient_gap`` (or ``score_hessians``) linked in
and optimised again, one to two seconds apiece of a cold start.
"""

import numpy as np
from numba import njit


# Up to this K the sandwich is two loop nests into one output array; above it two BLAS
# products (each call of which costs about as much as the whole loop at K = 4).
SANDWICH_LOOPS_MAX_K = 8


@njit(cache=True)
def flow_sandwich(G, Gamma):
    """``dS/dt = −G Γ G``, flattened in C order."""
    K = G.shape[0]
    if K > SANDWICH_LOOPS_MAX_K:               # two products into the output, no temporaries beyond GΓ
        half = np.empty((K, K))
        np.dot(G, Gamma, half)
        out = np.empty(K * K)
        np.dot(half, G, out.reshape((K, K)))
        for i in range(K * K):
            out[i] = -out[i]
        return out
    T = np.zeros((K, K))                 # T = Γ G, row by row (contiguous reads and writes)
    for n in range(K):
        for m in range(K):
            c = Gamma[n, m]
            for l in range(K):
                T[n, l] += c * G[m, l]
    out = np.zeros(K * K)
    for i in range(K):
        for n in range(K):
            c = -G[i, n]
            for l in range(K):
                out[i * K + l] += c * T[n, l]
    return out


@njit(cache=True)
def log_loss(value):
    """``log ℒ`` floored at ``log 1e-300``: the loss event's value."""
    return np.log(max(value, 1e-300))


@njit(cache=True)
def jacobian_from_hessians(G, Hs):
    """``J[(i,l), (m,k)] = −(G Hs[k])_im G_kl``: the flow's Jacobian from ``Hs[k] = p_k H⁽ᵏ⁾``."""
    K = G.shape[0]
    J = np.empty((K * K, K * K))
    for k in range(K):
        GH = G @ Hs[k]
        for i in range(K):
            for m in range(K):
                for l in range(K):
                    J[i * K + l, m * K + k] = -GH[i, m] * G[k, l]
    return J
