"""Plain NumPy twins of :mod:`attnflow.solvers.kernels`, vectorised over queries.

They are written from the same formulas in a different style (whole-matrix
operations instead of loops) and serve two purposes: a second implementation for
the tests, and the baseline the benchmarks in ``bench/`` measure against.
"""

import numpy as np
from scipy.special import log_softmax


def attention(S, logp):
    """``A[n, k] = softmax(S[:, k] + log p)[n]``."""
    return np.exp(log_softmax(S + logp[:, None], axis=0))


def loss_and_gradient(S, F, p, logp):
    """Return ``(ℒ, Γ)`` at N = ∞."""
    A = attention(S, logp)
    FA = F @ A                                     # (Fa_k)_n for every query k
    B = FA - F + (np.diag(F) - np.diag(FA))[None, :]
    beta = np.einsum("nk,nk->k", A, B)
    Gamma = p[None, :] * A * (B - beta[None, :])
    return 0.5 * p @ beta, Gamma


def flow_rhs(y, G, F, p, logp):
    """Flow right-hand side ``−(G Γ G).ravel()`` at the flat scores y, N = ∞."""
    K = G.shape[0]
    _, Gamma = loss_and_gradient(y.reshape(K, K), F, p, logp)
    return -(G @ Gamma @ G).ravel()


def flow_jacobian(y, G, F, p, logp):
    """Jacobian (K², K²) of :func:`flow_rhs` on the row-major flat scores."""
    K = G.shape[0]
    S = y.reshape(K, K)
    A = attention(S, logp)
    FA = F @ A
    B = FA - F + (np.diag(F) - np.diag(FA))[None, :]
    beta = np.einsum("nk,nk->k", A, B)
    R = A * (B - beta[None, :])
    # H[k] = D_k F D_k + diag(r_k) − r_k a_kᵀ − a_k r_kᵀ, D_k = diag(a_k) − a_k a_kᵀ
    D = np.einsum("nk,nm->knm", A, np.eye(K)) - np.einsum("nk,mk->knm", A, A)
    H = D @ F @ D
    H += np.einsum("nk,nm->knm", R, np.eye(K))
    H -= np.einsum("nk,mk->knm", R, A) + np.einsum("nk,mk->knm", A, R)
    GH = np.einsum("in,knm->kim", G, H) * p[:, None, None]
    # J[(i,l),(m,k)] = −GH[k,i,m] G[k,l]
    J = -np.einsum("kim,kl->ilmk", GH, G)
    return J.reshape(K * K, K * K)


def gd_iterate(S0, G, F, p, logp, eta, steps):
    """The GD map in a Python loop; returns the final scores and the loss history."""
    S = S0.copy()
    history = np.empty(steps + 1)
    for it in range(steps + 1):
        L, Gamma = loss_and_gradient(S, F, p, logp)
        history[it] = L
        if it < steps:
            S = S - eta * (G @ Gamma @ G)
    return S, history


def multihead_loss_and_gradient(S, F, p, logp):
    """Return ``(ℒ, Γ)`` of H heads at N = ∞, S and Γ of shape (H, K, K), from F directly.

    ``ℒ = ½ Σ_k p_k (ā_k − e_k)ᵀ F (ā_k − e_k)`` with the mean attention ``ā``, and
    ``Γ^h[:, k] = (p_k / H) (diag a^h_k − a^h_k a^h_kᵀ) F (ā_k − e_k)``.
    """
    H, K = S.shape[0], S.shape[1]
    A = np.stack([attention(Sh, logp) for Sh in S])            # (H, K, K)
    E = A.mean(axis=0) - np.eye(K)                               # ā_k − e_k in column k
    FE = F @ E
    value = 0.5 * p @ np.einsum("nk,nk->k", E, FE)
    Gamma = p[None, None, :] * (A * FE[None] - A * np.einsum("hnk,nk->hk", A, FE)[:, None, :]) / H
    return value, Gamma
