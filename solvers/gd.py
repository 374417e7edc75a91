"""The exact gradient-descent map of the population loss, compiled for the scores.

:func:`iterate_gd` runs ``S ← S − η G Γ(S) G`` in a compiled loop;
:func:`iterate_state_gd` runs any other system's map ``y ← y + η·flat_rhs(y)``
(separate factors, the noisy model) in a Python loop.

Examples
--------
>>> import numpy as np
>>> from attnflow.solvers import ScoreSystem
>>> system = ScoreSystem(np.eye(3), np.eye(3), np.full(3, 1 / 3))     # K = 3, G = F = I
>>> trajectory = iterate_gd(system, np.zeros((3, 3)), eta=1.0, steps=2000)
>>> trajectory.status, int(trajectory.iteration[-1]), float(trajectory.t[-1])
('finished', 2000, 2000.0)
>>> float(trajectory.loss[0]), bool(trajectory.loss[-1] < 1e-3)          # ℒ(0) = (K − 1) / (2K)
(0.333..., True)
>>> float(trajectory.crossings["t_half"]), float(trajectory.crossings["t_loss"][1e-2])
(7.0, 80.0)
"""

import math
import time

import numpy as np

from .assembly import GD_FINISHED, GD_NONFINITE, GD_SATURATED, GD_SCORE_LIMIT, GD_STOP_LOSS, SATURATED_LOG_GAP
from .trajectory import Trajectory, far_from_convergence

_STATUS = {
    GD_FINISHED: "finished",
    GD_NONFINITE: "non-finite",
    GD_SCORE_LIMIT: "score-limit",
    GD_STOP_LOSS: "stop_loss",
    GD_SATURATED: "saturated",
}


def log_iterations(steps, n):
    """Iteration 0 and about ``n − 1`` distinct log-spaced iterations up to ``steps`` (all if n > steps).

    Examples
    --------
    >>> log_iterations(1000, 5).tolist()
    [0, 1, 10, 100, 1000]
    """
    if n > steps:
        return np.arange(steps + 1, dtype=np.int64)
    grid = np.unique(np.round(np.geomspace(1, steps, max(n - 1, 1))).astype(np.int64))
    return np.concatenate([[0], grid])


def iterate_gd(system, S0, eta, steps, eps=(1e-2, 1e-3, 1e-4), stop_loss=0.0, n_out=400,
               score_limit=700.0, progress=None, chunks=50):
    """Run ``steps`` iterations of gradient descent on the population loss from ``S0``.

    Parameters
    ----------
    system : ScoreSystem
        The score system (its arrays and kernel set).
    S0 : array_like, shape (K, K)
        Initial scores.
    eta : float
        Step size; ``t = η · iteration`` makes GD comparable with the flow.
    steps : int
        Number of iterations (≥ 1).
    eps : sequence of float, optional
        Levels ε of the crossings ``t_attention`` and ``t_loss``.
    stop_loss : float, optional
        If positive, stop once the loss reaches it.
    n_out : int, optional
        About this many log-spaced iterations are recorded (:func:`log_iterations`).
    score_limit : float, optional
        A score beyond it means the step size diverged.  A converging run has
        scores of order ``log t``; past 700 the float64 softmax is exactly one-hot
        (``e^−700 ≈ 1e−304``), the gradient vanishes and GD is frozen where it landed.
    progress : callable, optional
        Called with the fraction done after each chunk.
    chunks : int, optional
        The compiled loop runs in this many pieces so ``progress(fraction)`` can report.

    Returns
    -------
    Trajectory
        With ``iteration``; ``status`` is ``"finished"``, ``"stop_loss"``,
        ``"non-finite"`` or ``"score-limit"`` (both: the step size diverged), ``"saturated"``
        (a step froze GD in a one-hot float64 softmax, see :func:`attnflow.solvers.assembly.gd_iterate`),
        ``"not-converging"`` when the final loss exceeds the initial one, or ``"max_steps"``
        when the steps ran out far from convergence
        (:func:`attnflow.solvers.trajectory.far_from_convergence`).
        Counters: ``iterations`` done, ``loss_increases`` (steps where the loss went up by more
        than a relative 1e-12), ``attention_oscillations`` (reversals of the irrelevant
        attentions' log-odds against the target, summed) and ``max_oscillations_per_feature``.
        ``oscillations`` on the trajectory holds the (K, K) reversal counts.

    Raises
    ------
    ValueError
        If eta is not a finite positive number, steps not a positive integer, or S0 not a
        finite K×K matrix.

    Examples
    --------
    See the module's examples: K = 3 with orthonormal features from ``S0 = 0``.
    """
    _validate(eta, steps)
    K = system.K
    G, Ms, p, logp, prompt = system.args
    kernels = system.kernels
    S = np.array(S0, dtype=np.float64, order="C")
    if S.shape != (K, K) or not np.all(np.isfinite(S)):
        raise ValueError(f"S0: expected a finite {K}×{K} matrix, got shape {S.shape}")

    record_at = log_iterations(steps, n_out)
    S_rec = np.zeros((len(record_at), K, K))
    loss_rec = np.full(len(record_at), np.nan)
    attn_levels = np.log(np.array([0.5, *eps]))
    attn_hits = np.full(len(attn_levels), -1, dtype=np.int64)
    loss_levels = np.array(eps, dtype=np.float64)
    loss_hits = np.full(len(loss_levels), -1, dtype=np.int64)
    last_sign = np.zeros((K, K), dtype=np.int64)
    flips = np.zeros((K, K), dtype=np.int64)

    bounds = np.unique(np.linspace(0, steps, chunks + 1).astype(np.int64))
    start = time.perf_counter()
    n_rec, increases, it = 0, 0, 0
    code = GD_FINISHED
    for it0, it1 in zip(bounds[:-1], bounds[1:]):
        # Each chunk starts by re-evaluating iteration it0, which the previous chunk
        # recorded already, so only the records after it are handed on.
        first = n_rec
        sel = record_at[first:]
        sel = sel[sel <= it1]
        code, it, got, inc = kernels.gd_iterate(
            S, G, Ms, p, logp, prompt, float(eta), int(it0), int(it1), sel,
            S_rec[first:], loss_rec[first:], attn_levels, attn_hits, loss_levels, loss_hits,
            float(score_limit), float(stop_loss), last_sign, flips)
        n_rec += got
        increases += inc
        if progress is not None:
            progress(it1 / steps)
        if code != GD_FINISHED:
            break
    wall = time.perf_counter() - start
    return _trajectory(system, eta, eps, code, it, record_at[:n_rec], S_rec[:n_rec], loss_rec[:n_rec], S,
                         attn_hits, loss_hits, increases, flips, score_limit, stop_loss, wall)


def _trajectory(system, eta, eps, code, it, iteration, S_out, loss_out, S_last, attn_hits, loss_hits,
                  increases, flips, score_limit, stop_loss, wall, state=None):
    """The :class:`Trajectory` of a GD run from what its loop recorded (shared by every GD loop).

    code, it : how and at which iteration the loop stopped.  iteration, S_out, loss_out :
    the records.  S_last : the scores where it stopped.  attn_hits, loss_hits : first
    iterations at the attention levels (1/2, then ``eps``) and loss levels, −1 if never.
    flips : (K, K) oscillation counts, or None when the loop does not count them.
    state : the recorded states when they are not the scores (the diverged one last).
    """
    status = _STATUS[code]
    iteration = iteration.copy()
    if code in (GD_NONFINITE, GD_SCORE_LIMIT, GD_SATURATED):
        # Keep the state that ended the run so the user can see it.
        iteration = np.append(iteration, it)
        S_out = np.concatenate([S_out, S_last[None]])
        last = S_last.ravel() if state is None else state[-1]
        loss_out = np.append(loss_out, system.flat_loss(last) if np.all(np.isfinite(last)) else np.nan)
    if code in (GD_NONFINITE, GD_SCORE_LIMIT):
        message = (f"gradient descent diverged at iteration {it}: "
                   + ("non-finite scores" if code == GD_NONFINITE else
                      f"a score exceeded {score_limit:g}"))
    elif code == GD_SATURATED:
        message = (f"the step size saturated the float64 softmax: at iteration {it} every query's attention "
                   f"is one-hot to double precision (loss {loss_out[-1]:.3g}) and a step no longer changes "
                   "the state; this is not a converged solution, use a smaller step size")
    elif code == GD_STOP_LOSS:
        message = f"loss reached {stop_loss:g} at iteration {it}"
    elif loss_out[-1] > loss_out[0]:
        status = "not-converging"
        message = (f"the loss after {it} iterations ({loss_out[-1]:.3g}) exceeds the initial loss "
                   f"({loss_out[0]:.3g}): the step size is too large to converge")
    else:
        message = f"{it} iterations"
        last = S_out[-1].ravel() if state is None else state[-1]
        far = far_from_convergence(iteration, loss_out, np.diagonal(system.flat_attention(last)).min(), eps)
        if far is not None:
            status = "max_steps"
            message = (f"{it} iterations (t = {eta * it:.3g}) ended far from convergence: {far}; give more "
                       "steps (training.steps) or a larger step size (training.eta)")

    crossings = {
        "t_half": eta * attn_hits[0] if attn_hits[0] >= 0 else None,
        "t_attention": {e: (eta * h if h >= 0 else None) for e, h in zip(eps, attn_hits[1:])},
        "t_loss": {e: (eta * h if h >= 0 else None) for e, h in zip(eps, loss_hits)},
    }
    counters = {"iterations": int(it), "loss_increases": int(increases)}
    if flips is not None:
        counters.update(attention_oscillations=int(flips.sum()), max_oscillations_per_feature=int(flips.max()))
    return Trajectory("gd", eta * iteration.astype(np.float64), S_out, loss_out, system.flat_attention,
                      iteration=iteration, oscillations=flips, crossings=crossings, status=status, message=message,
                      counters=counters, wall_time=wall, state=state)


def _validate(eta, steps):
    if not (eta > 0 and math.isfinite(eta)):
        raise ValueError(f"eta: expected a finite step size > 0, got {eta}")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps: expected a positive integer, got {steps}")


def iterate_state_gd(system, start, eta, steps, eps=(1e-2, 1e-3, 1e-4), stop_loss=0.0, n_out=400,
                     score_limit=700.0, progress=None):
    """Gradient descent ``y ← y + η·flat_rhs(y)`` on a system whose state is not the scores.

    For :class:`attnflow.solvers.separate.SeparateSystem` that is ``(B, C) ← (B − ηCΓᵀG, C − ηBΓG)``,
    for :class:`attnflow.solvers.noisy.NoisySystem` ``Q ← Q − η∇ℒ(Q)``.  Same records, crossings
    and statuses as :func:`iterate_gd` (a Python loop around the system's compiled or
    vectorised pieces; oscillations are not counted); ``state`` holds the recorded
    states, and ``score_limit`` and saturation (a step that leaves them bit-identical
    while the softmax is one-hot) apply to the scores ``scores_of(y)``.  Each iteration
    makes one ``flat_event_values_and_rhs`` call: the loss, the attention gap and the step.

    Parameters
    ----------
    system : SeparateSystem or NoisySystem
        Any system with the flat interface (``flatten``, ``flat_event_values_and_rhs``,
        ``scores_of``).
    start : object
        Initial state as ``system.flatten`` takes it (the factors ``(B₀, C₀)``, or Q₀).
    eta, steps, eps, stop_loss, n_out, score_limit, progress
        As in :func:`iterate_gd`.

    Returns
    -------
    Trajectory
        As :func:`iterate_gd`'s, with ``state`` (T, n) the recorded states.

    Raises
    ------
    ValueError
        If eta or steps are invalid, or the start is rejected by ``system.flatten``.
    """
    _validate(eta, steps)
    y = system.flatten(start).copy()
    record_at = log_iterations(steps, n_out)
    states, loss_rec = [], []
    attn_levels = np.log(np.array([0.5, *eps]))
    attn_hits = np.full(len(attn_levels), -1, dtype=np.int64)
    loss_levels = np.array(eps, dtype=np.float64)
    loss_hits = np.full(len(eps), -1, dtype=np.int64)
    increases, prev, code, it = 0, np.inf, GD_FINISHED, 0
    report_every = max(1, steps // 50)
    S = system.scores_of(y)
    clock = time.perf_counter()
    while True:
        gap, log_loss, rhs = system.flat_event_values_and_rhs(y)
        L = math.exp(log_loss)
        if not math.isfinite(log_loss):
            code = GD_NONFINITE
            break
        increases += L > prev * (1.0 + 1e-12)
        prev = L
        attn_hits[(attn_hits < 0) & (gap <= attn_levels)] = it
        loss_hits[(loss_hits < 0) & (L <= loss_levels)] = it
        if len(states) < len(record_at) and record_at[len(states)] == it:
            states.append(y.copy())
            loss_rec.append(L)
        if stop_loss > 0 and L <= stop_loss:
            code = GD_STOP_LOSS
            break
        if it >= steps:
            break
        y += eta * rhs
        it += 1
        if progress is not None and it % report_every == 0:
            progress(it / steps)
        if not np.all(np.isfinite(y)):
            code = GD_NONFINITE
            break
        S, S_before = system.scores_of(y), S
        if np.abs(S).max() > score_limit:
            code = GD_SCORE_LIMIT
            break
        # Frozen: the scores (all the loss sees) no longer change, though parameters that
        # are exactly 0 may still move by 1e-300s.
        if gap <= SATURATED_LOG_GAP and np.array_equal(S, S_before):
            code = GD_SATURATED
            break
    wall = time.perf_counter() - clock
    n = len(states)
    if code in (GD_NONFINITE, GD_SCORE_LIMIT, GD_SATURATED):
        states.append(y.copy())            # the trajectory keeps the state that ended the run
    states = np.array(states)
    return _trajectory(system, eta, eps, code, it, record_at[:n], system.scores_of(states[:n]),
                         np.array(loss_rec), system.scores_of(y)[0], attn_hits, loss_hits, increases, None,
                         score_limit, stop_loss, wall, state=states)
