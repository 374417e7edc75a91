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
    total = 0.0
    for k in range(V.shape[0]):
        a = _attention(Q, V, p, k)
        total += 0.5 * p[k] * (a @ F @ a - 2 * a @ F[:, k] + F[k, k])
    return total


def gradient(Q, V, F, p):
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
