"""Brute-force references for prompts of finite length N: every composition of N.

The quadrature of :mod:`attnflow.solvers.finite_prompt` is checked against these:
an enumeration of all count vectors in double precision and in mpmath, and a Monte
Carlo average over sampled prompts.  They cost the number of compositions of N, so
they serve tests and benchmarks, never the solvers.
"""

import math
from itertools import combinations

import numpy as np
from scipy.special import gammaln, log_softmax


def compositions(N, K):
    """Every count vector c ≥ 0 with Σc = N (stars and bars), as an array (C, K).

    Examples
    --------
    >>> compositions(2, 3).tolist()
    [[0, 0, 2], [0, 1, 1], [0, 2, 0], [1, 0, 1], [1, 1, 0], [2, 0, 0]]
    >>> len(compositions(4, 3))                      # C(N + K − 1, K − 1)
    15
    """
    out = []
    for bars in combinations(range(N + K - 1), K - 1):
        prev, counts = -1, []
        for b in bars:
            counts.append(b - prev - 1)
            prev = b
        counts.append(N + K - 2 - prev)
        out.append(counts)
    return np.array(out)


def enumerate_column(s, p, M, N):
    """Brute force over all compositions of N: per-query loss and gradient (A-form).

    Parameters
    ----------
    s : ndarray, shape (K,)
        The query's scores.
    p : ndarray, shape (K,)
        Feature probabilities.
    M : ndarray, shape (K, K)
        The query's label-gap moments.
    N : int
        Prompt length.

    Returns
    -------
    loss : float
        ``½ E[aᵀ M a]`` over the multinomial prompt counts.
    grad : ndarray, shape (K,)
        Its gradient in s.

    Examples
    --------
    At N = 1 the prompt is a single token, whose attention is one: the loss is
    ``½ Σ_n p_n M_nn``, whatever the scores, and the gradient vanishes.

    >>> M = np.array([[0.0, 0.0, 0.0], [0.0, 2.0, 1.0], [0.0, 1.0, 2.0]])
    >>> loss, grad = enumerate_column(np.array([3.0, -1.0, 0.5]), np.array([0.5, 0.3, 0.2]), M, 1)
    >>> round(float(loss), 12), grad.tolist()
    (0.5, [0.0, 0.0, 0.0])
    """
    c = compositions(N, len(p))
    logprob = gammaln(N + 1) - gammaln(c + 1).sum(axis=1) + (c * np.log(p)).sum(axis=1)
    prob = np.exp(logprob)
    with np.errstate(divide="ignore"):
        logits = np.log(c) + s                       # log(c_n w_n); −inf where c_n = 0
    A = np.exp(log_softmax(logits, axis=1))
    MA = A @ M
    beta = np.einsum("cn,cn->c", A, MA)
    loss = 0.5 * prob @ beta
    grad = prob @ (A * (MA - beta[:, None]))
    return loss, grad


def enumerate_column_exact(s, p, M, N, digits=40, query=-1):
    """:func:`enumerate_column` in ``digits``-digit arithmetic (mpmath), plus E[A] and the Hessian.

    Double-precision enumeration loses up to 1e-8 of tiny late-training gradients to
    cancellation between compositions; this is the reference the tests use.  Per
    composition the Hessian is the large-prompt one of :mod:`attnflow.solvers.columns`,
    ``a_j(δ_jl − a_l)(u_j − β) + a_j a_l(M_jl − u_j − 2u_l + 2β)`` with ``u = M a``.
    ``query = k`` puts the query token (feature k, value 0, count 1) in the softmax as
    coordinate K of (K+1)×(K+1) M, and folds its derivatives onto score k.
    Returns floats: ``(loss, gradient, expected attention on the context, Hessian)``.
    """
    import mpmath as mp
    K = len(p)
    R = K + 1 if query >= 0 else K                    # coordinates in the softmax
    with mp.workdps(digits):
        s_ = [mp.mpf(float(x)) for x in s] + ([mp.mpf(float(s[query]))] if query >= 0 else [])
        M_ = [[mp.mpf(float(M[i][j])) for j in range(R)] for i in range(R)]
        logp = [mp.log(mp.mpf(float(x))) for x in p]
        loss, grad, att = mp.mpf(0), [mp.mpf(0)] * R, [mp.mpf(0)] * K
        hess = [[mp.mpf(0)] * R for _ in range(R)]
        for c in compositions(N, K):
            c = [int(x) for x in c]
            prob = mp.exp(mp.loggamma(N + 1) - sum(mp.loggamma(x + 1) for x in c) + sum(x * lp for x, lp in zip(c, logp)))
            weights = [x * mp.exp(si) for x, si in zip(c + [1] * (R - K), s_)]
            Z = sum(weights)
            A = [wi / Z for wi in weights]
            MA = [sum(M_[i][j] * A[j] for j in range(R)) for i in range(R)]
            beta = sum(A[i] * MA[i] for i in range(R))
            loss += prob * beta / 2
            for j in range(R):
                grad[j] += prob * A[j] * (MA[j] - beta)
                if j < K:
                    att[j] += prob * A[j]
                for l in range(R):
                    hess[j][l] += prob * (A[j] * ((j == l) - A[l]) * (MA[j] - beta)
                                          + A[j] * A[l] * (M_[j][l] - MA[j] - 2 * MA[l] + 2 * beta))
        if query >= 0:                                 # the query's score is s_k: fold, still in mpmath
            grad = [grad[j] + (grad[K] if j == query else 0) for j in range(K)]
            hess = [[hess[j][l] + (hess[j][K] if l == query else 0) for l in range(K)] for j in range(R)]
            hess = [[hess[j][l] + (hess[K][l] if j == query else 0) for l in range(K)] for j in range(K)]
        return (float(loss), np.array([float(x) for x in grad]), np.array([float(x) for x in att]),
                np.array([[float(x) for x in row] for row in hess]))


def monte_carlo_column(s, p, M, N, samples, seed=0):
    """Sampled prompts: per-query loss and gradient with their standard errors.

    Parameters
    ----------
    s, p, M, N
        As in :func:`enumerate_column`.
    samples : int
        Number of sampled prompts.
    seed : int, optional
        Seed of the generator.

    Returns
    -------
    loss, loss_error : float
        Mean per-query loss and its standard error.
    grad, grad_error : ndarray, shape (K,)
        Mean gradient and its standard errors.
    """
    rng = np.random.default_rng(seed)
    c = rng.multinomial(N, p, size=samples)
    with np.errstate(divide="ignore"):
        A = np.exp(log_softmax(np.log(c) + s, axis=1))
    MA = A @ M
    beta = np.einsum("cn,cn->c", A, MA)
    G = A * (MA - beta[:, None])
    return (0.5 * beta.mean(), 0.5 * beta.std(ddof=1) / math.sqrt(samples),
            G.mean(axis=0), G.std(axis=0, ddof=1) / math.sqrt(samples))
