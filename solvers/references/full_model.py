"""The full model in d×d parameter space at N = ∞, for checking the score reduction.

Independent of :mod:`attnflow.solvers.kernels`: the loss is written from the network's
output ``ŷ = aᵀ f(V)`` with ``a = softmax(V Q v_k + log p)`` and expanded with the
raw moments F (not the label-gap moments M⁽ᵏ⁾), and the gradient is taken in Q:

    ℒ(Q) = ½ Σ_k p_k (aᵀFa − 2 aᵀF_{:,k} + F_kk),
    ∇_Q ℒ = Σ_k p_k Σ_n a_n ((Fa)_n − aᵀFa − F_nk + aᵀF_{:,k}) v_n v_kᵀ,

the second line from ``∂ŷ/∂Q = Σ_n a_n (f_n − ŷ) v_n v_kᵀ`` and
``E[(ŷ − f_k)(f_n − ŷ)] = (Fa)_n − aᵀFa − F_nk + aᵀF_{:,k}``.
"""

import numpy as np
from scipy.integrate import solve_ivp
from scipy.special import softmax


def _attention(Q, V, p, k):
    return softmax(V @ Q @ V[k] + np.log(p))


def loss(Q, V, F, p):
    """Population loss ``ℒ(Q) = ½ Σ_k p_k (aᵀFa − 2 aᵀF_{:,k} + F_kk)`` at N = ∞.

    Parameters
    ----------
    Q : ndarray, shape (d, d)
        The merged key-query matrix.
    V : ndarray, shape (K, d)
        Features.
    F : ndarray, shape (K, K)
        Raw moments ``E_f[f(V) f(V)ᵀ]``.
    p : ndarray, shape (K,)
        Feature probabilities.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> V, F, p = np.eye(3), np.eye(3), np.full(3, 1 / 3)
    >>> round(float(loss(np.zeros((3, 3)), V, F, p)), 12)    # uniform attention: (K − 1) / (2K)
    0.333333333333
    >>> bool(loss(50 * np.eye(3), V, F, p) < 1e-20)          # each query attends to its own feature
    True
    """
    total = 0.0
    for k in range(V.shape[0]):
        a = _attention(Q, V, p, k)
        total += 0.5 * p[k] * (a @ F @ a - 2 * a @ F[:, k] + F[k, k])
    return total


def gradient(Q, V, F, p):
    """Gradient ``∇_Q ℒ`` (d×d) of :func:`loss`, same arguments.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> V, Q, dQ = rng.standard_normal((3, 2)), rng.standard_normal((2, 2)), rng.standard_normal((2, 2))
    >>> F, p, h = np.eye(3), np.array([0.2, 0.3, 0.5]), 1e-6
    >>> central = (loss(Q + h * dQ, V, F, p) - loss(Q - h * dQ, V, F, p)) / (2 * h)
    >>> bool(abs(central - np.sum(gradient(Q, V, F, p) * dQ)) < 1e-8)
    True
    """
    grad = np.zeros_like(Q)
    for k in range(V.shape[0]):
        a = _attention(Q, V, p, k)
        Fa = F @ a
        c = a * (Fa - a @ Fa - F[:, k] + a @ F[:, k])
        grad += p[k] * np.outer(V.T @ c, V[k])
    return grad


def integrate_flow(V, F, p, Q0, t_eval, rtol=1e-12, atol=1e-14):
    """``dQ/dt = −∇_Q ℒ`` with DOP853; returns Q at ``t_eval``, shape (T, d, d)."""
    d = V.shape[1]
    sol = solve_ivp(lambda t, q: -gradient(q.reshape(d, d), V, F, p).ravel(),
                    (0.0, float(t_eval[-1])), np.asarray(Q0, float).ravel(), method="DOP853",
                    t_eval=t_eval, rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"full-model flow failed: {sol.message}")
    return sol.y.T.reshape(-1, d, d)


def iterate_gd(V, F, p, Q0, eta, steps):
    """``Q ← Q − η ∇_Q ℒ``; returns all iterates, shape (steps + 1, d, d)."""
    Qs = [np.asarray(Q0, float)]
    for _ in range(steps):
        Qs.append(Qs[-1] - eta * gradient(Qs[-1], V, F, p))
    return np.array(Qs)
