"""Training the real network on sampled prompts, in the full d×d parameter space.

Each step draws a fresh batch of B prompts: N context tokens ``x_i = v_{k_i}``
with ``k_i ~ p``, a query ``x_q = v_k`` with ``k ~ p``, one random function per
prompt and its labels.  The network is ``ŷ = Σ_i y_i softmax_i(x_iᵀ Q x_q)`` over
the N context tokens (and, with ``include_query``, the query token itself with value
0); the step is plain gradient descent on the batch mean of ``½ (ŷ − y_q)²`` with the
exact per-prompt gradient ``(ŷ − y_q) Σ_i attn_i (y_i − ŷ) x_i x_qᵀ``.  With H heads
the output is the heads' mean, ``ŷ = (1/H) Σ_h Σ_i y_i softmax_i(x_iᵀ Q_h x_q)``, and
head h's gradient is ``(ŷ − y_q)/H · Σ_i attn^h_i (y_i − ŷ^h) x_i x_qᵀ`` with ``ŷ^h`` its own output.  Nothing here uses scores, counts or
moments: it is the independent route that checks the reduced equations.
"""

import numpy as np
from scipy.special import log_softmax


def batch_loss_and_gradient(Q, X, y, xq, yq):
    """Mean loss and its gradient over a batch of prompts.

    Parameters
    ----------
    Q : ndarray, shape (d, d)
        The merged key-query matrix.
    X : ndarray, shape (B, N, d)
        Tokens in the softmax.
    y : ndarray, shape (B, N)
        Their values (labels).
    xq : ndarray, shape (B, d)
        Queries.
    yq : ndarray, shape (B,)
        The queries' labels.

    Returns
    -------
    loss : float
        Batch mean of ``½ (ŷ − y_q)²``.
    grad : ndarray, shape (d, d)
        Its gradient in Q.
    """
    scores = np.einsum("bnd,de,be->bn", X, Q, xq)
    attn = np.exp(log_softmax(scores, axis=1))
    yhat = np.einsum("bn,bn->b", attn, y)
    err = yhat - yq
    weight = err[:, None] * attn * (y - yhat[:, None])
    grad = np.einsum("bn,bnd,be->de", weight, X, xq) / len(yq)
    return 0.5 * np.mean(err**2), grad


def batch_loss_and_head_gradients(Qs, X, y, xq, yq):
    """Mean loss of the H-head network (output the heads' mean) and its gradient in each head's matrix.

    Parameters
    ----------
    Qs : ndarray, shape (H, d, d)
        The heads' merged key-query matrices.
    X, y, xq, yq : ndarray
        As :func:`batch_loss_and_gradient`.

    Returns
    -------
    loss : float
        Batch mean of ``½ (ŷ − y_q)²``.
    grads : ndarray, shape (H, d, d)
        Its gradient in each Q_h.
    """
    H = len(Qs)
    keys = np.einsum("hde,be->hbd", Qs, xq)                     # Q_h x_q, then one product per head
    scores = np.matmul(X[None], keys[..., None])[..., 0]          # (H, B, N)
    attn = np.exp(log_softmax(scores, axis=2))
    head_out = np.einsum("hbn,bn->hb", attn, y)
    err = head_out.mean(axis=0) - yq
    weight = err[None, :, None] * attn * (y[None] - head_out[:, :, None]) / H
    pulled = np.matmul(weight[:, :, None, :], X[None])[:, :, 0]   # Σ_i weight_i x_i: (H, B, d)
    grads = np.einsum("hbd,be->hde", pulled, xq) / len(yq)
    return 0.5 * np.mean(err**2), grads


def train_sampled(V, p, N, sample_labels, Q0, eta, steps, batch, seed=0, record_at=None, include_query=False,
                  noise=0.0):
    """Stochastic GD of the real network on fresh prompts each step.

    Parameters
    ----------
    V : ndarray, shape (K, d)
        Features.
    p : ndarray, shape (K,)
        Feature probabilities.
    N : int
        Context tokens per prompt.
    sample_labels : callable
        ``sample_labels(rng, X, idx) → y``: labels of one random function per
        prompt for tokens X (B, T, d) whose feature indices are idx (B, T).
    Q0 : ndarray or tuple
        (d, d) initial merged matrix, (H, d, d) initial matrices of H heads (output
        their mean), or a pair ``(W_K, W_Q)`` (each h×d) to train the separate key and
        query matrices, ``Q = W_Kᵀ W_Q``, by GD on both.
    eta : float
        Step size.
    steps : int
        Number of GD steps.
    batch : int
        Prompts per step.
    seed : int, optional
        Seed of the generator.
    record_at : array_like of int, optional
        Iterations at which Q is returned (default: every iteration).
    include_query : bool, optional
        The query token (value 0) also sits in the softmax.
    noise : float, optional
        Every token and the query is ``v_k + ξ``, ``ξ ~ N(0, noise² I)``; labels are
        the function at the noisy points.

    Returns
    -------
    dict
        ``iteration`` (R,), ``Q`` (R, d, d), ``S = V Q Vᵀ`` (R, K, K) and the
        minibatch ``loss`` at each recorded iteration; with heads ``Q`` (R, H, d, d) and
        ``S`` (R, H, K, K), each head's.
    """
    rng = np.random.default_rng(seed)
    K, d = V.shape
    record_at = np.arange(steps + 1) if record_at is None else np.asarray(record_at)
    separate = isinstance(Q0, tuple)
    heads = not separate and np.ndim(Q0) == 3
    if separate:
        WK, WQ = (np.array(W, dtype=np.float64) for W in Q0)
    else:
        Q = np.array(Q0, dtype=np.float64)
    Qs, losses = [], []
    for it in range(steps + 1):
        idx = rng.choice(K, size=(batch, N + 1), p=p)        # last column is the query
        tokens = V[idx]
        if noise > 0:
            tokens = tokens + noise * rng.standard_normal(tokens.shape)
        labels = sample_labels(rng, tokens, idx)
        keys = N + 1 if include_query else N
        values = labels[:, :keys].copy()
        values[:, N:] = 0.0                                 # the query token's value
        if separate:
            Q = WK.T @ WQ
        gradient = batch_loss_and_head_gradients if heads else batch_loss_and_gradient
        value, grad = gradient(Q, tokens[:, :keys], values, tokens[:, N], labels[:, N])
        if it in record_at:
            Qs.append(Q.copy())
            losses.append(value)
        if it < steps and separate:
            WK, WQ = WK - eta * WQ @ grad.T, WQ - eta * WK @ grad     # ∇_{W_K} = W_Q ∇_Qᵀ, ∇_{W_Q} = W_K ∇_Q
        elif it < steps:
            Q -= eta * grad
    Qs = np.array(Qs)
    return {"iteration": record_at, "Q": Qs, "S": V @ Qs @ V.T, "loss": np.array(losses)}
