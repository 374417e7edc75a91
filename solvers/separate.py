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

from .gd import GD_FINISHED, GD_NONFINITE, GD_SCORE_LIMIT, GD_STOP_LOSS, gd_trajectory, log_iterations
from .system import ScoreSystem


def lazy_start(V, alpha):
    """Factors ``(B₀, C₀) = (α[Vᵀ; 0], α[0; Vᵀ])`` (h = 2d): S₀ = 0, and the merged flow in time 2α²t, error O(α⁻⁴)."""
    V = np.asarray(V, dtype=np.float64)
    zero = np.zeros_like(V.T)
    return alpha * np.vstack([V.T, zero]), alpha * np.vstack([zero, V.T])


def random_factors(h, d, scale, seed=0):
    """``(W_K, W_Q)``, each h×d with i.i.d. N(0, scale²/d) entries; their factors are ``(W_K Vᵀ, W_Q Vᵀ)``."""
    rng = np.random.default_rng(seed)
    WK, WQ = scale * rng.standard_normal((2, h, d)) / math.sqrt(d)
    return WK, WQ


@dataclass(frozen=True)
class SeparateSystem:
    """The flow and GD map of the separate factors on top of a :class:`ScoreSystem`.

    Parameters
    ----------
    scores : the score system (features, moments, p, prompt model, kernels).
    h : head dimension (rows of B and C).

    The state is ``y = [B.ravel(), C.ravel()]``; the flat interface is the one
    :func:`solvers.integrate_flow` integrates.
    """

    scores: ScoreSystem
    h: int

    factored = True

    def __post_init__(self):
        if int(self.h) != self.h or self.h < 1:
            raise ValueError(f"h: expected a head dimension ≥ 1, got {self.h}")

    @property
    def K(self):
        return self.scores.K

    def loss(self, S):
        return self.scores.loss(S)

    def attention(self, S):
        return self.scores.attention(S)

    def warm_up(self):
        return self.scores.warm_up()

    def split(self, y):
        """``(B, C)``, each (h, K), as views of the state y."""
        n = self.h * self.K
        return y[:n].reshape(self.h, self.K), y[n:].reshape(self.h, self.K)

    def flatten(self, start):
        """The state for initial factors ``start = (B₀, C₀)`` (validated)."""
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

    def flat_rhs(self, y):
        B, C, _, Gamma = self._parts(y)
        G = self.scores.G
        return np.concatenate([-(C @ Gamma.T @ G).ravel(), -(B @ Gamma @ G).ravel()])

    def flat_event_values(self, y):
        B, C = self.split(y)
        return self.scores.flat_event_values((B.T @ C).ravel())

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
        """``2 / max Re eig(−J)`` at the factors ``start``: the linear stability limit of GD there."""
        lam = np.linalg.eigvals(-self.flat_jacobian(self.flatten(start))).real.max()
        return 2.0 / lam if lam > 0 else np.inf


def iterate_separate_gd(system, start, eta, steps, eps=(1e-2, 1e-3, 1e-4), stop_loss=0.0, n_out=400,
                        score_limit=700.0, progress=None):
    """Gradient descent on the factors: ``(B, C) ← (B − ηCΓᵀG, C − ηBΓG)``, from ``start = (B₀, C₀)``.

    Same records, crossings and statuses as :func:`solvers.iterate_gd` (a Python loop
    around the compiled gradient kernel; oscillations are not counted).  The
    trajectory's ``state`` holds the recorded factors.
    """
    if not (eta > 0 and math.isfinite(eta)):
        raise ValueError(f"eta: expected a finite step size > 0, got {eta}")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps: expected a positive integer, got {steps}")
    y = system.flatten(start).copy()
    B, C = system.split(y)
    G = system.scores.G
    record_at = log_iterations(steps, n_out)
    states, S_rec, loss_rec = [], [], []
    attn_levels = np.log(np.array([0.5, *eps]))
    attn_hits = np.full(len(attn_levels), -1, dtype=np.int64)
    loss_hits = np.full(len(eps), -1, dtype=np.int64)
    increases, prev, code, it = 0, np.inf, GD_FINISHED, 0
    Gamma = np.empty((system.K, system.K))
    kernels, scores = system.scores.kernels, system.scores
    report_every = max(1, steps // 50)
    start_time = time.perf_counter()
    while True:
        S = B.T @ C
        L, gap = kernels.loss_gradient_gap(S, scores.Ms, scores.p, scores.logp, scores.prompt, Gamma)
        if not np.isfinite(L):
            code = GD_NONFINITE
            break
        increases += L > prev * (1.0 + 1e-12)
        prev = L
        attn_hits[(attn_hits < 0) & (gap <= attn_levels)] = it
        loss_hits[(loss_hits < 0) & (L <= np.asarray(eps))] = it
        if len(S_rec) < len(record_at) and record_at[len(S_rec)] == it:
            states.append(y.copy())
            S_rec.append(S)
            loss_rec.append(L)
        if stop_loss > 0 and L <= stop_loss:
            code = GD_STOP_LOSS
            break
        if it >= steps:
            break
        dB, dC = C @ Gamma.T @ G, B @ Gamma @ G
        B -= eta * dB
        C -= eta * dC
        it += 1
        if progress is not None and it % report_every == 0:
            progress(it / steps)
        if not np.all(np.isfinite(y)):
            code = GD_NONFINITE
            break
        if np.abs(B.T @ C).max() > score_limit:
            code = GD_SCORE_LIMIT
            break
    wall = time.perf_counter() - start_time
    if code in (GD_NONFINITE, GD_SCORE_LIMIT):
        states.append(y.copy())            # the trajectory keeps the state that broke the run
    n = len(S_rec)
    return gd_trajectory(system, eta, eps, code, it, record_at[:n], np.array(S_rec).reshape(n, system.K, system.K),
                         np.array(loss_rec), B.T @ C, attn_hits, loss_hits, increases, None, score_limit,
                         stop_loss, wall, state=np.array(states))
