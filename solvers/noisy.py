"""Token noise: ``x = v_k + ξ`` with ``ξ ~ N(0, ν² I_d)`` on every token and on the query.

With noise the scores no longer close on the feature set, so the model lives in the
full d×d space of Q.  For the linear class (``f(x) = wᵀx``, ``w ~ N(0, σ² I)``) in the
large-prompt limit the expectation over the context tokens is exact: for a query x
with ``b = Q x``, Gaussian tilting gives ``E_ξ[e^{(v+ξ)ᵀb}] = e^{vᵀb + ν²|b|²/2}`` and
``E_ξ[(v+ξ) e^{(v+ξ)ᵀb}] = (v + ν² b) e^{vᵀb + ν²|b|²/2}``, so

    ŷ = wᵀ r̂(x),   r̂ = Vᵀπ + ν² b,   π = softmax(V b + log p),
    ℒ(Q) = ½ σ² Σ_k p_k E_ξq |r(v_k + ξq)|²,   r(x) = r̂(x) − x,
    ∇_Q ℒ = σ² Σ_k p_k E_ξq [(J r) xᵀ],   J = ∂r̂/∂b = Vᵀ(diag π − ππᵀ)V + ν² I.

Only the query's noise ξq is left to integrate: a tensor Gauss–Hermite rule with
``n`` nodes per dimension while ``n^d`` stays small (error: the change from n to
n + 4 nodes), else Monte Carlo with fixed samples (common random numbers, so the
flow is that of one deterministic loss; error: the standard error).  The attention
reported is ``A[n, k] = E_ξq[π_n]``, the expected total attention of query k on the
tokens of feature n.  At ν = 0 this is the noise-free model with ``F = σ² G``.
"""

import math
import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numba import njit
from scipy.special import log_softmax

from .gd import iterate_gd

MAX_TENSOR_NODES = 40_000
MONTE_CARLO_SAMPLES = 20_000


def default_nodes(d):
    """Gauss–Hermite nodes per dimension for a d-dimensional query-noise expectation.

    Parameters
    ----------
    d : int
        Token dimension.

    Returns
    -------
    int
        As many nodes as ``MAX_TENSOR_NODES`` (40000) tensor nodes allow, at most 24;
        0 when fewer than 4 would fit (then use Monte Carlo).
    """
    n = min(24, int(MAX_TENSOR_NODES ** (1.0 / d) + 1e-9))
    return n if n >= 4 else 0


def query_noise_rule(d, noise, nodes=None, samples=MONTE_CARLO_SAMPLES, seed=0):
    """Quadrature rule for ``E[g(ξ)]``, ``ξ ~ N(0, noise² I_d)``.

    Tensor Gauss–Hermite with ``nodes`` per dimension (default :func:`default_nodes`) if
    ``nodes^d ≤ 40000``, else ``samples`` Monte Carlo points with equal weights.

    Parameters
    ----------
    d : int
        Dimension of ξ.
    noise : float
        Noise scale ν (0: a single point at the origin).
    nodes : int, optional
        Gauss–Hermite nodes per dimension (default :func:`default_nodes`).
    samples : int, optional
        Monte Carlo sample count when the tensor rule is too large.
    seed : int, optional
        Seed of the Monte Carlo samples (fixed: common random numbers).

    Returns
    -------
    points : ndarray, shape (M, d)
        The points ξ.
    weights : ndarray, shape (M,)
        Weights summing to one.
    name : str
        The rule's name, for reports.

    Examples
    --------
    >>> points, weights, name = query_noise_rule(2, 0.5, nodes=5)
    >>> points.shape, name
    ((25, 2), 'Gauss–Hermite, 5 nodes per dimension')
    >>> round(float(weights @ points[:, 0] ** 2), 12)     # E[ξ₁²] = ν²
    0.25
    """
    if noise == 0:
        return np.zeros((1, d)), np.ones(1), "none (no noise)"
    nodes = default_nodes(d) if nodes is None else nodes
    if nodes > 0 and nodes ** d <= MAX_TENSOR_NODES:
        z, w = np.polynomial.hermite_e.hermegauss(nodes)       # probabilists': weight e^{−z²/2}
        w = w / w.sum()
        grids = np.meshgrid(*([z] * d), indexing="ij")
        points = noise * np.stack([g.ravel() for g in grids], axis=1)
        weights = np.prod(np.meshgrid(*([w] * d), indexing="ij"), axis=0).ravel()
        return points, weights, f"Gauss–Hermite, {nodes} nodes per dimension"
    rng = np.random.default_rng(seed)
    return noise * rng.standard_normal((samples, d)), np.full(samples, 1.0 / samples), f"Monte Carlo, {samples} samples"


# ---- compiled kernels: the arithmetic of NoisySystem._evaluate and NoisySystem.hessian in loops,
# one query point at a time (no per-point allocation).  Their arguments are those of
# NoisySystem.callbacks: V (K, d), points (M, d), weights (M,), p, logp (K,), params = [σ, ν].

@njit(cache=True)
def _noisy_point(Q, V, logp, nu2, k, xi, x, b, z, pi, r):
    """At the query ``x = v_k + ξ``: writes x, ``b = Q x``, the log-sum-exp softmax ``π`` of
    ``V b + log p`` and the residual ``r = Vᵀπ + ν² b − x``; returns ``|r|²``."""
    K, d = V.shape
    for i in range(d):
        x[i] = V[k, i] + xi[i]
    for i in range(d):
        acc = 0.0
        for j in range(d):
            acc += Q[i, j] * x[j]
        b[i] = acc
    top = -np.inf
    for n in range(K):
        acc = logp[n]
        for i in range(d):
            acc += V[n, i] * b[i]
        z[n] = acc
        top = max(top, acc)
    total = 0.0
    for n in range(K):
        pi[n] = np.exp(z[n] - top)
        total += pi[n]
    for n in range(K):
        pi[n] /= total
    squared = 0.0
    for i in range(d):
        acc = nu2 * b[i] - x[i]
        for n in range(K):
            acc += pi[n] * V[n, i]
        r[i] = acc
        squared += acc * acc
    return squared


@njit(cache=True)
def noisy_evaluate(Q, V, points, weights, p, logp, params, grad, A, with_gradient):
    """Loss ℒ(Q) under the query-noise rule; writes the attention ``A[n, k] = E[π_n]`` and, if
    with_gradient, ``∇_Q ℒ`` into grad (d×d): :meth:`NoisySystem._evaluate` compiled."""
    K, d = V.shape
    sigma2, nu2 = params[0] ** 2, params[1] ** 2
    x = np.empty(d)
    b = np.empty(d)
    r = np.empty(d)
    Jr = np.empty(d)
    z = np.empty(K)
    pi = np.empty(K)
    u = np.empty(K)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            grad[i, j] = 0.0
    for k in range(K):
        for n in range(K):
            A[n, k] = 0.0
        for m in range(points.shape[0]):
            w = weights[m]
            squared = _noisy_point(Q, V, logp, nu2, k, points[m], x, b, z, pi, r)
            loss += 0.5 * sigma2 * p[k] * w * squared
            for n in range(K):
                A[n, k] += w * pi[n]
            if with_gradient:
                mean = 0.0
                for n in range(K):
                    acc = 0.0
                    for i in range(d):
                        acc += V[n, i] * r[i]
                    u[n] = acc
                    mean += pi[n] * acc
                for i in range(d):
                    acc = nu2 * r[i]
                    for n in range(K):
                        acc += pi[n] * (u[n] - mean) * V[n, i]
                    Jr[i] = sigma2 * p[k] * w * acc
                for i in range(d):
                    for j in range(d):
                        grad[i, j] += Jr[i] * x[j]
    return loss


@njit(cache=True)
def _noisy_gap(A):
    """``max_k log(1 − A_kk)``, 1 − A_kk as the sum of the other features' attention (exact near one)."""
    K = A.shape[0]
    gap = -np.inf
    for k in range(K):
        off = 0.0
        for n in range(K):
            if n != k:
                off += A[n, k]
        gap = max(gap, np.log(off))
    return gap


@njit(cache=True)
def noisy_rhs(y, V, points, weights, p, logp, params):
    """Flow of the noisy model, ``dQ/dt = −∇ℒ(Q)``, on the flat state ``y = Q.ravel()``."""
    K, d = V.shape
    grad = np.empty((d, d))
    noisy_evaluate(y.reshape((d, d)), V, points, weights, p, logp, params, grad, np.empty((K, K)), True)
    out = np.empty(d * d)
    for i in range(d):
        for j in range(d):
            out[i * d + j] = -grad[i, j]
    return out


@njit(cache=True)
def noisy_event_values(y, V, points, weights, p, logp, params):
    """``(max_k log(1 − A_kk), log ℒ)`` at the flat state (the flow's events)."""
    K, d = V.shape
    A = np.empty((K, K))
    loss = noisy_evaluate(y.reshape((d, d)), V, points, weights, p, logp, params, np.empty((d, d)), A, False)
    return _noisy_gap(A), np.log(max(loss, 1e-300))


@njit(cache=True)
def noisy_gd_step(y, V, points, weights, p, logp, params, dy, S, work):
    """GD step callback (:mod:`attnflow.solvers.gd`): ``dy`` = :func:`noisy_rhs`, the scores
    ``S = V Q Vᵀ``; returns ``(ℒ, max_k log(1 − A_kk))``.  ``work`` (the loop's scratch) is not used."""
    K, d = V.shape
    Q = y.reshape((d, d))
    grad = np.empty((d, d))
    A = np.empty((K, K))
    value = noisy_evaluate(Q, V, points, weights, p, logp, params, grad, A, True)
    for i in range(d):
        for j in range(d):
            dy[i * d + j] = -grad[i, j]
    QV = np.zeros((d, K))
    for i in range(d):
        for j in range(d):
            for k in range(K):
                QV[i, k] += Q[i, j] * V[k, j]
    for n in range(K):
        for k in range(K):
            acc = 0.0
            for i in range(d):
                acc += V[n, i] * QV[i, k]
            S[n, k] = acc
    return value, _noisy_gap(A)


@njit(cache=True)
def noisy_jacobian(y, V, points, weights, p, logp, params):
    """Jacobian of :func:`noisy_rhs`, ``−∂²ℒ/∂Q∂Q`` (d², d²): :meth:`NoisySystem.hessian` compiled.

    Per query point, with ``D = diag π − ππᵀ``, ``u = V r``, ``E = diag(u − πᵀu) − π uᵀ``,
    ``J = VᵀDV + ν² I`` and ``P = VᵀEDV + J²``: ``H += σ² p_k w P ⊗ x xᵀ``.
    """
    K, d = V.shape
    Q = y.reshape((d, d))
    sigma2, nu2 = params[0] ** 2, params[1] ** 2
    x = np.empty(d)
    b = np.empty(d)
    r = np.empty(d)
    z = np.empty(K)
    pi = np.empty(K)
    u = np.empty(K)
    piV = np.empty(d)
    uDV = np.empty(d)
    DV = np.empty((K, d))
    EDV = np.empty((K, d))
    J = np.empty((d, d))
    P = np.empty((d, d))
    H = np.zeros((d * d, d * d))
    for k in range(K):
        for m in range(points.shape[0]):
            _noisy_point(Q, V, logp, nu2, k, points[m], x, b, z, pi, r)
            c = sigma2 * p[k] * weights[m]
            mean = 0.0
            for n in range(K):
                acc = 0.0
                for i in range(d):
                    acc += V[n, i] * r[i]
                u[n] = acc
                mean += pi[n] * acc
            for e in range(d):
                acc = 0.0
                for n in range(K):
                    acc += pi[n] * V[n, e]
                piV[e] = acc
            for e in range(d):
                acc = 0.0
                for n in range(K):
                    DV[n, e] = pi[n] * (V[n, e] - piV[e])
                    acc += u[n] * DV[n, e]
                uDV[e] = acc
            for n in range(K):
                for e in range(d):
                    EDV[n, e] = (u[n] - mean) * DV[n, e] - pi[n] * uDV[e]
            for i in range(d):
                for e in range(d):
                    acc = nu2 if i == e else 0.0
                    for n in range(K):
                        acc += V[n, i] * DV[n, e]
                    J[i, e] = acc
            for i in range(d):
                for e in range(d):
                    acc = 0.0
                    for n in range(K):
                        acc += V[n, i] * EDV[n, e]
                    for j in range(d):
                        acc += J[i, j] * J[j, e]
                    P[i, e] = c * acc
            for i in range(d):
                for a in range(d):
                    for j in range(d):
                        for bb in range(d):
                            H[i * d + j, a * d + bb] -= P[i, a] * x[j] * x[bb]
    return H


@dataclass(frozen=True)
class NoisySystem:
    """Gradient flow ``dQ/dt = −∇ℒ(Q)`` of the linear task with token noise, large-prompt limit.

    Parameters
    ----------
    V : ndarray, shape (K, d)
        Features.
    p : ndarray, shape (K,)
        Feature probabilities.
    sigma : float
        The linear class's scale (``w ~ N(0, σ² I)``).
    noise : float
        ν, the noise scale (≥ 0).
    nodes : int, optional
        Gauss–Hermite nodes per dimension (default :func:`default_nodes`: 24 up to
        d = 3, 14 at d = 4, …; Monte Carlo above 40000 tensor nodes).

    Raises
    ------
    ValueError
        If V is not a finite K×d matrix or the noise scale is not finite and ≥ 0.

    The state is ``Q.ravel()`` (d²); the flat interface is the one
    :func:`attnflow.solvers.integrate_flow` and :func:`attnflow.solvers.gd.iterate_gd` run, with the
    analytic Hessian (:meth:`hessian`) for the implicit solvers.
    """

    V: np.ndarray
    p: np.ndarray
    sigma: float
    noise: float
    nodes: int = None

    state_is_scores = False

    def __post_init__(self):
        V = np.ascontiguousarray(self.V, dtype=np.float64)
        if V.ndim != 2 or not np.all(np.isfinite(V)):
            raise ValueError(f"V: expected a finite K×d matrix, got shape {V.shape}")
        object.__setattr__(self, "V", V)
        object.__setattr__(self, "p", np.asarray(self.p, dtype=np.float64))
        if not (math.isfinite(self.noise) and self.noise >= 0):
            raise ValueError(f"noise: expected a finite scale ≥ 0, got {self.noise}")

    @property
    def K(self):
        """Number of features."""
        return self.V.shape[0]

    @property
    def d(self):
        """Token dimension."""
        return self.V.shape[1]

    @cached_property
    def rule(self):
        """``(points, weights, name)`` of the query-noise expectation."""
        return query_noise_rule(self.d, self.noise, self.nodes)

    @cached_property
    def logp(self):
        """``log p``, the softmax offset of each feature's tokens."""
        return np.log(self.p)

    def _forward(self, Q, k, points):
        """Queries ``X = v_k + ξ`` at the rule's points, ``b = Q x``, the attention π and the residual r."""
        X = self.V[k] + points                                  # (M, d)
        b = X @ Q.T
        pi = np.exp(log_softmax(b @ self.V.T + self.logp, axis=1))   # (M, K)
        return X, b, pi, pi @ self.V + self.noise ** 2 * b - X

    def _evaluate(self, Q, rule=None, gradient=True):
        """Loss, gradient (d×d) and attention (K×K) at Q under a quadrature rule."""
        points, weights = (rule or self.rule)[:2]
        loss, grad, A = 0.0, np.zeros((self.d, self.d)), np.empty((self.K, self.K))
        for k in range(self.K):
            X, b, pi, r = self._forward(Q, k, points)
            loss += 0.5 * self.sigma ** 2 * self.p[k] * weights @ np.einsum("md,md->m", r, r)
            A[:, k] = weights @ pi
            if gradient:
                u = r @ self.V.T                                # (V r)_n
                Jr = (pi * (u - np.einsum("mn,mn->m", pi, u)[:, None])) @ self.V + self.noise ** 2 * r
                grad += self.sigma ** 2 * self.p[k] * (Jr * weights[:, None]).T @ X
        return loss, grad, A

    @staticmethod
    def _event_values(loss, A):
        """``(max_k log(1 − A_kk), log ℒ)``; 1 − A_kk as a sum of positive terms, exact near one."""
        A = A.copy()
        np.fill_diagonal(A, 0.0)
        return float(np.log(A.sum(axis=0).max())), math.log(max(loss, 1e-300))

    def hessian(self, Q):
        """``∂²ℒ/∂Q∂Q`` as a (d², d²) matrix on the row-major ``Q.ravel()``.

        With ``db = dQ x``: ``dπ = D V db`` (``D = diag π − ππᵀ``), and
        ``d(J r) = (Vᵀ E D V + J²) db =: P db`` where ``E = diag(u − πᵀu) − π uᵀ``,
        ``u = V r``; so ``H = σ² Σ_k p_k E_ξq[P ⊗ x xᵀ]`` (Kronecker, row-major).
        """
        Q = np.asarray(Q, dtype=np.float64)
        points, weights = self.rule[:2]
        V, nu2, d = self.V, self.noise ** 2, self.d
        H = np.zeros((d, d, d, d))
        for k in range(self.K):
            X, b, pi, r = self._forward(Q, k, points)
            u = r @ V.T
            DV = pi[:, :, None] * (V[None] - (pi @ V)[:, None, :])                    # (M, K, d)
            J = np.einsum("nd,mne->mde", V, DV) + nu2 * np.eye(d)
            EDV = ((u - np.einsum("mn,mn->m", pi, u)[:, None])[:, :, None] * DV
                   - pi[:, :, None] * np.einsum("mn,mne->me", u, DV)[:, None, :])
            P = np.einsum("nd,mne->mde", V, EDV) + J @ J
            H += self.sigma ** 2 * self.p[k] * np.einsum("m,mia,mj,mb->ijab", weights, P, X, X, optimize=True)
        return H.reshape(d * d, d * d)

    def loss_of(self, Q):
        """Loss ℒ(Q) under the query-noise rule."""
        return self._evaluate(np.asarray(Q, dtype=np.float64), gradient=False)[0]

    def gradient(self, Q):
        """Gradient ``∇_Q ℒ`` (d×d) under the query-noise rule."""
        return self._evaluate(np.asarray(Q, dtype=np.float64))[1]

    def quadrature_error(self, Q):
        """Error estimate of the loss at Q: the change with 4 more nodes per dimension, or the MC standard error."""
        points, weights, name = self.rule
        Q = np.asarray(Q, dtype=np.float64)
        if name.startswith("none"):
            return 0.0
        if name.startswith("Gauss"):
            finer = query_noise_rule(self.d, self.noise, (self.nodes or default_nodes(self.d)) + 4)
            return abs(self._evaluate(Q, finer, gradient=False)[0] - self.loss_of(Q))
        per_sample = 0.0            # per-sample loss, for the standard error of the mean
        for k in range(self.K):
            r = self._forward(Q, k, points)[3]
            per_sample = per_sample + 0.5 * self.sigma ** 2 * self.p[k] * np.einsum("md,md->m", r, r)
        return float(per_sample.std(ddof=1) / math.sqrt(len(per_sample)))

    # flat interface
    def flatten(self, Q0):
        """The flat state ``Q0.ravel()`` of an initial d×d matrix.

        Raises
        ------
        ValueError
            If Q0 is not a finite d×d matrix.
        """
        Q0 = np.ascontiguousarray(Q0, dtype=np.float64)
        if Q0.shape != (self.d, self.d) or not np.all(np.isfinite(Q0)):
            raise ValueError(f"Q0: expected a finite {self.d}×{self.d} matrix, got shape {Q0.shape}")
        return Q0.ravel()

    def flat_rhs(self, y):
        """Flow right-hand side ``−∇ℒ`` on the flat state."""
        return -self.gradient(y.reshape(self.d, self.d)).ravel()

    def flat_jacobian(self, y):
        """Jacobian of :meth:`flat_rhs`: minus the Hessian (d², d²)."""
        return -self.hessian(y.reshape(self.d, self.d))

    def flat_loss(self, y):
        """Loss at the flat state."""
        return self.loss_of(y.reshape(self.d, self.d))

    def flat_losses(self, Y):
        """Loss at each state of Y (T, d²)."""
        return np.array([self.flat_loss(y) for y in Y])

    def flat_attention(self, y):
        """Expected attention ``A[n, k]`` (K×K) at the flat state."""
        return self._evaluate(y.reshape(self.d, self.d), gradient=False)[2]

    def flat_event_values(self, y):
        """``(max_k log(1 − A_kk), log ℒ)``."""
        loss, _, A = self._evaluate(y.reshape(self.d, self.d), gradient=False)
        return self._event_values(loss, A)

    @cached_property
    def args(self):
        """The runtime arguments of the compiled kernels: ``(V, points, weights, p, logp, [σ, ν])``."""
        points, weights = (np.ascontiguousarray(a, dtype=np.float64) for a in self.rule[:2])
        return self.V, points, weights, np.ascontiguousarray(self.p), np.ascontiguousarray(self.logp), \
            np.array([self.sigma, self.noise], dtype=np.float64)

    def callbacks(self):
        """The compiled flow for :mod:`attnflow.solvers.integrator` and :mod:`attnflow.solvers.rosenbrock`.

        Returns
        -------
        tuple
            ``(rhs, events, args, event_args, jac)``: :func:`noisy_rhs`,
            :func:`noisy_event_values` and :func:`noisy_jacobian` with :attr:`args` (both
            take the same arrays).  A new argument type for the integrators' loops, compiled
            once more for it (cached on disk).
        """
        return noisy_rhs, noisy_event_values, self.args, self.args, noisy_jacobian

    def gd_callback(self):
        """``(step, args, 0)`` of the compiled GD loop (:mod:`attnflow.solvers.gd`): :func:`noisy_gd_step`, :attr:`args`, no scratch."""
        return noisy_gd_step, self.args, 0

    def scores_of(self, Y):
        """Scores ``V Q Vᵀ`` (T, K, K) of states Y (T, d²)."""
        Q = np.atleast_2d(Y).reshape(-1, self.d, self.d)
        return self.V @ Q @ self.V.T

    def stable_step(self, Q0):
        """Largest stable explicit-Euler (GD) step at Q0: ``2 / λ_max`` of the Hessian (inf if none positive)."""
        lam = np.linalg.eigvals(-self.flat_jacobian(self.flatten(Q0))).real.max()
        return 2.0 / lam if lam > 0 else np.inf

    def warm_up(self, gd=True):
        """Compile (or load from the on-disk cache) the compiled kernels and (if gd) the GD loop; return the seconds.

        On a K = 2, d = 2 twin with four quadrature points: Numba compiles for types, not sizes.
        """
        start = time.perf_counter()
        twin = NoisySystem(np.eye(2), np.full(2, 0.5), 1.0, 0.5, nodes=2)
        rhs, events, args, event_args, jac = twin.callbacks()
        y = np.zeros(4)
        rhs(y, *args), events(y, *event_args), jac(y, *args)
        if gd:
            iterate_gd(twin, np.zeros((2, 2)), eta=1e-3, steps=1, n_out=2)
        return time.perf_counter() - start
