"""Separate key and query matrices, ``Q = W_Kᵀ W_Q`` with ``W_K, W_Q ∈ R^{h×d}``.

The loss depends on Q only through the scores ``S = V Q Vᵀ``, so with the reduced
factors ``B = W_K Vᵀ`` and ``C = W_Q Vᵀ`` (h×K) the scores are ``S = Bᵀ C`` and, from
``∇_{W_K} ℒ = W_Q Vᵀ Γᵀ V`` and ``∇_{W_Q} ℒ = W_K Vᵀ Γ V`` (``Γ = ∂ℒ/∂S``),

    dB/dt = −C Γᵀ G,      dC/dt = −B Γ G,      GD: (B, C) ← (B − ηCΓᵀG, C − ηBΓG).

The parts of W_K and W_Q orthogonal to the features' span never move and never
enter S, so (B, C) is a closed, exact system of 2hK equations, whatever d.
``B = C = 0`` is a stationary point: training needs a random start of some scale.

The merged model is a limit: the lazy start ``B₀ = α[Vᵀ; 0]``, ``C₀ = α[0; Vᵀ]``
(h = 2d, :func:`lazy_start`) has ``S₀ = 0`` and ``B₀ᵀB₀ = C₀ᵀC₀ = α²G``, and
``dS/dt = −GΓCᵀC − BᵀBΓG``.  Over a time O(α⁻²) the factors move by O(α⁻¹), to
first order in the block orthogonal to their start (dB ∝ C, dC ∝ B), so ``CᵀC`` and
``BᵀB`` change only by O(α⁻²): in the time ``τ = 2α² t`` the scores follow the merged
flow with an error O(α⁻⁴).
"""

import math
import time
from dataclasses import dataclass

import numpy as np

from .gd import iterate_gd
from .system import ScoreSystem


def lazy_start(V, alpha):
    """Factors ``(B₀, C₀) = (α[Vᵀ; 0], α[0; Vᵀ])`` (h = 2d) of the lazy start.

    S₀ = BᵀC = 0, and the factors' scores follow the merged flow in the time 2α²t with
    an error O(α⁻⁴).

    Parameters
    ----------
    V : array_like, shape (K, d)
        Features.
    alpha : float
        Scale α of the start.

    Returns
    -------
    B0, C0 : ndarray, shape (2d, K)
        The initial factors.

    Examples
    --------
    >>> B0, C0 = lazy_start(np.eye(2), 3.0)
    >>> B0.shape, float(np.abs(B0.T @ C0).max())
    ((4, 2), 0.0)
    >>> (B0.T @ B0).tolist()                           # α² G
    [[9.0, 0.0], [0.0, 9.0]]
    """
    V = np.asarray(V, dtype=np.float64)
    zero = np.zeros_like(V.T)
    return alpha * np.vstack([V.T, zero]), alpha * np.vstack([zero, V.T])


def random_factors(h, d, scale, seed=0):
    """Random key and query matrices ``(W_K, W_Q)``, each h×d with i.i.d. N(0, scale²/d) entries.

    Their factors are ``(W_K Vᵀ, W_Q Vᵀ)``.

    Parameters
    ----------
    h, d : int
        Head and token dimensions.
    scale : float
        Scale of the entries.
    seed : int, optional
        Seed of the generator.

    Returns
    -------
    WK, WQ : ndarray, shape (h, d)
    """
    rng = np.random.default_rng(seed)
    WK, WQ = scale * rng.standard_normal((2, h, d)) / math.sqrt(d)
    return WK, WQ


@dataclass(frozen=True)
class SeparateSystem:
    """The flow and GD map of the separate factors on top of a :class:`ScoreSystem`.

    Parameters
    ----------
    scores : ScoreSystem
        The score system (features, moments, p, prompt model, kernels).
    h : int
        Head dimension (rows of B and C).

    Raises
    ------
    ValueError
        If h is not an integer ≥ 1.

    The state is ``y = [B.ravel(), C.ravel()]``; the flat interface is the one
    :func:`attnflow.solvers.integrate_flow` and :func:`attnflow.solvers.gd.iterate_gd` run.
    """

    scores: ScoreSystem
    h: int

    state_is_scores = False

    def __post_init__(self):
        if int(self.h) != self.h or self.h < 1:
            raise ValueError(f"h: expected a head dimension ≥ 1, got {self.h}")

    @property
    def K(self):
        """Number of features."""
        return self.scores.K

    def loss(self, S):
        """Population loss at the scores S (that of :attr:`scores`)."""
        return self.scores.loss(S)

    def flat_loss(self, y):
        """Population loss at the state y."""
        return self.scores.loss(self.scores_of(y)[0])

    def flat_losses(self, Y):
        """Population loss at each state of Y (T, 2hK)."""
        return self.scores.flat_losses(self.scores_of(Y).reshape(len(Y), -1))

    def flat_attention(self, y):
        """Attention matrix A (K×K) at the state y."""
        return self.scores.attention(self.scores_of(y)[0])

    def warm_up(self, gd=True):
        """Compile (or load from the on-disk cache) every kernel and loop the factors run; return the seconds.

        The score system's kernels, the factors' and (if gd) the GD loop.  As :meth:`ScoreSystem.warm_up`, on a K = 2, h = 1 twin: Numba compiles for types, not sizes.
        """
        start = time.perf_counter()
        self.scores.warm_up(gd)
        sc = self.scores
        twin = SeparateSystem(ScoreSystem(np.eye(2), np.eye(2), np.full(2, 0.5), kernels=sc.kernels, N=sc.N,
                                          quadrature_step=sc.quadrature_step, include_query=sc.include_query), 1)
        factors = (np.array([[1.0, 0.5]]), np.array([[0.5, 1.0]]))
        rhs, events, args, event_args, jac = twin.callbacks()
        y = twin.flatten(factors)
        rhs(y, *args), events(y, *event_args), jac(y, *args)
        if gd:
            iterate_gd(twin, factors, eta=1e-3, steps=1, n_out=2)
        return time.perf_counter() - start

    def split(self, y):
        """``(B, C)``, each (h, K), as views of the state y."""
        n = self.h * self.K
        return y[:n].reshape(self.h, self.K), y[n:].reshape(self.h, self.K)

    def flatten(self, start):
        """The state for initial factors ``start = (B₀, C₀)`` (validated).

        Raises
        ------
        ValueError
            If start is not a pair of finite h×K matrices.
        """
        try:
            B, C = (np.asarray(x, dtype=np.float64) for x in start)
        except (TypeError, ValueError):
            raise ValueError("start: expected the factors (B0, C0)") from None
        for name, X in (("B0", B), ("C0", C)):
            if X.shape != (self.h, self.K) or not np.all(np.isfinite(X)):
                raise ValueError(f"{name}: expected a finite {self.h}×{self.K} matrix, got shape {X.shape}")
        return np.concatenate([B.ravel(), C.ravel()])

    def scores_of(self, Y):
        """Scores ``BᵀC`` (T, K, K) of states Y (T, 2hK)."""
        n = self.h * self.K
        Y = np.atleast_2d(Y)
        B = Y[:, :n].reshape(-1, self.h, self.K)
        C = Y[:, n:].reshape(-1, self.h, self.K)
        return np.einsum("tin,tik->tnk", B, C)

    def _parts(self, y):
        B, C = self.split(y)
        S = B.T @ C
        return B, C, S, self.scores.gradient(S)

    def _rhs(self, B, C, Gamma):
        """``[−CΓᵀG, −BΓG]`` flattened."""
        G = self.scores.G
        return np.concatenate([-(C @ Gamma.T @ G).ravel(), -(B @ Gamma @ G).ravel()])

    def flat_rhs(self, y):
        """Flow right-hand side ``[−CΓᵀG, −BΓG]`` at the state y."""
        B, C, _, Gamma = self._parts(y)
        return self._rhs(B, C, Gamma)

    def flat_event_values(self, y):
        """The score system's event values at the scores ``BᵀC`` of the state y."""
        B, C = self.split(y)
        return self.scores.flat_event_values((B.T @ C).ravel())

    def callbacks(self):
        """The compiled flow of the factors: the kernel set's ``separate_*`` functions.

        They take the score flow's arguments (h comes from the state's size), so the
        integrators run them in the loops compiled for the scores.

        Returns
        -------
        tuple
            ``(rhs, events, args, event_args, jac)`` as :meth:`ScoreSystem.callbacks`, with
            :func:`attnflow.solvers.assembly.separate_rhs`, ``separate_event_values`` and
            ``separate_jacobian``.
        """
        kernels = self.scores.kernels
        _, _, args, event_args, _ = self.scores.callbacks()
        return kernels.separate_rhs, kernels.separate_event_values, args, event_args, kernels.separate_jacobian

    def gd_callback(self):
        """``(step, args, work)`` of the compiled GD loop (:mod:`attnflow.solvers.gd`).

        The kernel set's :func:`attnflow.solvers.assembly.separate_gd_step` with the score flow's
        arguments and K² floats of scratch.
        """
        return self.scores.kernels.separate_gd_step, self.scores.callbacks()[2], self.K * self.K

    def flat_jacobian(self, y):
        """Analytic Jacobian of :meth:`flat_rhs`, (2hK, 2hK).

        With ``Hs[k] = ∂Γ[:, k]/∂S[:, k]`` (symmetric) and ``BH[k] = B Hs[k]``: a change
        of ``B_jm`` moves row m of S by ``C[j]``, a change of ``C_jk`` moves column k of S
        by ``B[j]``, and the product rule gives the four blocks below.
        """
        B, C, S, Gamma = self._parts(y)
        G = self.scores.G
        Hs = self.scores.hessians(S)
        h, K = self.h, self.K
        eye = np.eye(h)
        BH = np.einsum("in,knm->kim", B, Hs)
        HG = Hs @ G                                               # HG[k] = Hs[k] G
        JBB = -np.einsum("ik,jk,kma->iajm", C, C, HG)
        JCB = -np.einsum("ij,ma->iajm", eye, Gamma @ G) - np.einsum("kim,jk,ka->iajm", BH, C, G)
        JBC = -np.einsum("ij,ka->iajk", eye, Gamma.T @ G) - np.einsum("ik,kja->iajk", C, BH @ G)
        JCC = -np.einsum("in,kjn,ka->iajk", B, BH, G)
        n = h * K
        return np.block([[JBB.reshape(n, n), JBC.reshape(n, n)], [JCB.reshape(n, n), JCC.reshape(n, n)]])

    def stable_step(self, start):
        """The smaller of ``2 / max Re eig(−J)`` at the factors ``start`` and the merged scores' limit at ``BᵀC``.

        A small random start has almost no curvature; the factors' grows to the
        merged one as they do, so the factors' limit alone would be far too large.
        """
        y = self.flatten(start)
        lam = np.linalg.eigvals(-self.flat_jacobian(y)).real.max()
        return min(2.0 / lam if lam > 0 else np.inf, self.scores.stable_step(self.scores_of(y)[0]))
