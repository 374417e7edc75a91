"""Phases of a trajectory: crossing times, the fast/slow boundary, per-query times, step sizes.

Definitions (the paper's are not public; these are this project's, stated here and
in the report):

* target attention: ``min_k A_kk``, the worst query's total attention on its own
  feature; ``t_half`` is the first time it reaches 1/2, ``t_attention[ε]`` the first
  time it reaches ``1 − ε``, ``t_loss[ε]`` the first time ``ℒ ≤ ε`` (None: never).  The
  same in every variant, flow and GD: the solvers' events watch ``1 − A_kk``, the
  attention on the other features plus, with the query in the softmax, the query's own
  share (so a level above that variant's cap is never reached);
* crossing time of a level: first time the recorded quantity reaches it, by linear
  interpolation in (log t, log y) between output points (the solvers' event times are
  exact; this is for levels chosen after the run);
* fast/slow boundary: after the steepest descent of the loss on log-log axes, the
  first time the local slope ``d log ℒ / d log t`` rises above ``−1 − tol`` (the late
  phase decays like ``1/t``, :mod:`attnflow.derivations.asymptotics`);
* stable step along a trajectory: ``2/λ_max`` of the loss's Hessian in the trained
  parameters at each output point (the nonzero eigenvalues of ``(G ⊗ G) H``).

Examples
--------
A synthetic loss that falls like ``t⁻³`` until t = 10 and like ``1/t`` after it:

>>> t = np.logspace(-1, 4, 501)
>>> loss = np.where(t < 10, 1e-3 * (t / 10) ** -3, 1e-3 * (t / 10) ** -1)
>>> round(crossing_time(t, loss, 1e-4), 6)      # on the 1/t branch: t = 100
100.0
>>> crossing_time(t, loss, 1e-12) is None        # never reached
True
>>> round(phase_boundary(t, loss))               # where the slope rises back to ≈ −1
10
"""

from dataclasses import dataclass

import numpy as np


BOUNDARY_TOLERANCE = 0.25


def crossing_time(t, y, level, direction=-1):
    """Return the first t at which y reaches ``level``; None if never.

    Interpolates linearly in (log t, log y) for positive values, which is exact for
    power laws; the point t = 0 is used only when the level is met there.

    Parameters
    ----------
    t, y : array_like, shape (n,)
        Output times (increasing) and the recorded quantity.
    level : float
        The level to reach.
    direction : {-1, +1}
        −1: y reaches the level going down (``y ≤ level``); +1: going up.

    Returns
    -------
    float or None
    """
    t, y = np.asarray(t, float), np.asarray(y, float)
    hit = (y <= level) if direction < 0 else (y >= level)
    if not hit.any():
        return None
    i = int(np.argmax(hit))
    if i == 0:
        return float(t[0])
    t0, t1, y0, y1 = t[i - 1], t[i], y[i - 1], y[i]
    if t0 > 0 and min(y0, y1, level) > 0:
        u = (np.log(level) - np.log(y0)) / (np.log(y1) - np.log(y0))
        return float(np.exp(np.log(t0) + u * (np.log(t1) - np.log(t0))))
    u = (level - y0) / (y1 - y0)
    return float(t0 + u * (t1 - t0))


def log_slope(t, y):
    """Return the local slope ``d log y / d log t`` by central differences.

    Parameters
    ----------
    t, y : array, shape (n,)
        Only the points with t > 0 and y > 0 are used.

    Returns
    -------
    (array, array)
        The interior times and the slope at each.
    """
    keep = (t > 0) & (y > 0)
    lt, ly = np.log(t[keep]), np.log(y[keep])
    return t[keep][1:-1], (ly[2:] - ly[:-2]) / (lt[2:] - lt[:-2])


def phase_boundary(t, loss, late_exponent=-1.0, tol=BOUNDARY_TOLERANCE):
    """Return the end of the fast phase (see the module doc); None if the run never reaches the slow phase.

    Parameters
    ----------
    t, loss : array_like, shape (n,)
        Output times and the loss there.
    late_exponent : float
        Exponent of the late-phase law (−1: ``ℒ ∝ 1/t``).
    tol : float
        How close to ``late_exponent`` the slope must come back.

    Returns
    -------
    float or None
        The first time after the steepest descent at which the slope is at least
        ``late_exponent − tol``; None when there is no fast phase or no slow one.
    """
    tm, slope = log_slope(np.asarray(t, float), np.asarray(loss, float))
    if len(slope) < 3:
        return None
    steepest = int(np.argmin(slope))
    if slope[steepest] >= late_exponent - tol:
        return None                      # never faster than the late law: no fast phase
    after = np.flatnonzero(slope[steepest:] >= late_exponent - tol)
    return float(tm[steepest + after[0]]) if len(after) else None


def per_query_times(trajectory, level):
    """Return the time each query's own attention A_kk first reaches ``level`` (None where never).

    Interpolates the gap ``1 − A_kk`` (a power law late in training) down to ``1 − level``.

    Parameters
    ----------
    trajectory : Trajectory
        A solved trajectory with ``t`` and ``target_attention`` (n, K).
    level : float
        The attention level, below 1.

    Returns
    -------
    list of float or None
        One entry per query k.
    """
    gap = 1.0 - trajectory.target_attention
    return [crossing_time(trajectory.t, gap[:, k], 1.0 - level) for k in range(gap.shape[1])]


@dataclass
class StepSizes:
    """Linear-stability step sizes along a trajectory.

    Attributes
    ----------
    t : array
        Output times.
    stable : array
        ``2/λ_max`` at each output point.
    minimum, t_minimum : float
        The smallest stable step and the time it occurs.
    final : float
        The stable step at the last point.
    """

    t: np.ndarray
    stable: np.ndarray          # 2/λ_max at each output point
    minimum: float
    t_minimum: float
    final: float

    @property
    def recommended(self):
        """The smallest stable step along the path: GD with it is linearly stable everywhere on the flow's path."""
        return self.minimum


def step_sizes(system, trajectory):
    """Return the linearly stable step ``2/λ_max`` at each output point of a score trajectory.

    Parameters
    ----------
    system : ScoreSystem
        The system whose Hessian is used.
    trajectory : Trajectory
        A trajectory in score space (``trajectory.S``).

    Returns
    -------
    StepSizes
    """
    stable = np.array([system.stable_step(S) for S in trajectory.S])
    i = int(np.argmin(stable))
    return StepSizes(trajectory.t, stable, float(stable[i]), float(trajectory.t[i]), float(stable[-1]))
