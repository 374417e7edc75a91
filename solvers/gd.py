"""The exact gradient-descent map of the population loss, in one compiled loop.

:func:`iterate_gd` runs any system's map ``y ← y + η·flat_rhs(y)`` — the scores'
``S ← S − η G Γ(S) G``, the separate factors, the noisy model, several heads, a training
set — in one compiled loop (:func:`_gd_loop`) driven by the system's ``gd_callback()``.
The loop is compiled once per argument types, like the integrators' loops (the factors
share the scores' types; each other system adds its own), and cached on disk.
:func:`attnflow.solvers.ensemble.iterate_gd_ensemble` runs the same loop on many problems.

Examples
--------
>>> import numpy as np
>>> from attnflow.solvers import ScoreSystem
>>> system = ScoreSystem(np.eye(3), np.eye(3), np.full(3, 1 / 3))     # K = 3 orthonormal: G = F = I
>>> trajectory = iterate_gd(system, np.zeros((3, 3)), eta=1.0, steps=2000)
>>> trajectory.status, int(trajectory.iteration[-1]), float(trajectory.t[-1])
('finished', 2000, 2000.0)
>>> float(trajectory.loss[0]), bool(trajectory.loss[-1] < 1e-3)          # ℒ(0) = (K − 1) / (2K)
(0.333..., True)
>>> float(trajectory.crossings["t_half"]), float(trajectory.crossings["t_loss"][1e-2])
(7.0, 80.0)
"""

import functools
import math
import time

import numba
import numpy as np
from numba import types

from .integrator import _array_key, _Callback, _entry_point
from .trajectory import Trajectory, far_from_convergence

# How the GD loop stopped (its first return value).
GD_FINISHED, GD_NONFINITE, GD_SCORE_LIMIT, GD_STOP_LOSS, GD_SATURATED = 0, 1, 2, 3, 4
# log(2⁻⁵²): an off-target attention below double precision's epsilon makes the softmax one-hot.
SATURATED_LOG_GAP = -36.04365338911715

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


MIN_CHUNK_ITERATIONS = 64


def _in_chunks(advance, row_shape, K, steps, n_out, eps, progress, chunks):
    """Drive the compiled GD loop (:func:`_gd_loop`) in ``chunks`` calls, for progress.

    ``advance(it0, it1, record_at, rows, losses, attn_levels, attn_hits, loss_levels, loss_hits,
    last_sign, flips) -> (code, it, recorded, increases)`` runs iterations it0 to it1.  Each
    chunk re-evaluates iteration it0, which the previous chunk recorded already, so only the
    records after it are handed on.  Returns ``(code, it, iteration, rows, losses, attn_hits,
    loss_hits, increases, flips, wall)`` with the records cut to those written.
    """
    record_at = log_iterations(steps, n_out)
    rows = np.zeros((len(record_at), *row_shape))
    losses = np.full(len(record_at), np.nan)
    attn_levels = np.log(np.array([0.5, *eps]))
    attn_hits = np.full(len(attn_levels), -1, dtype=np.int64)
    loss_levels = np.array(eps, dtype=np.float64)
    loss_hits = np.full(len(loss_levels), -1, dtype=np.int64)
    last_sign = np.zeros((K, K), dtype=np.int64)
    flips = np.zeros((K, K), dtype=np.int64)
    # Each chunk re-evaluates its first iteration's loss and gradient: at least MIN_CHUNK_ITERATIONS
    # per chunk keeps that under 2 % (100 steps in 50 chunks made 150 evaluations).
    chunks = max(1, min(chunks, steps // MIN_CHUNK_ITERATIONS))
    bounds = np.unique(np.linspace(0, steps, chunks + 1).astype(np.int64))
    start = time.perf_counter()
    n_rec, increases, it = 0, 0, 0
    code = GD_FINISHED
    for it0, it1 in zip(bounds[:-1], bounds[1:]):
        first = n_rec
        sel = record_at[first:]
        sel = sel[sel <= it1]
        code, it, got, inc = advance(int(it0), int(it1), sel, rows[first:], losses[first:], attn_levels, attn_hits,
                                     loss_levels, loss_hits, last_sign, flips)
        n_rec += got
        increases += inc
        if progress is not None:
            progress(it1 / steps)
        if code != GD_FINISHED:
            break
    wall = time.perf_counter() - start
    return (code, it, record_at[:n_rec], rows[:n_rec], losses[:n_rec], attn_hits, loss_hits, increases, flips,
            wall)


def _status(code, iteration, loss_out, min_target_attention, eps):
    """The status of a GD run that stopped with ``code`` and recorded ``loss_out`` at ``iteration``
    (its last point where it stopped), and for ``"max_steps"`` how far from convergence it ended.

    A run that did all its steps is ``"not-converging"`` if its loss rose overall, ``"max_steps"``
    if it ended far from convergence (:func:`attnflow.solvers.trajectory.far_from_convergence`, with
    the target attention ``min_k A_kk`` at its end), else ``"finished"``; any other stop keeps the
    loop's name.  Returns ``(status, far)``, far None unless ``"max_steps"``.
    """
    if code != GD_FINISHED:
        return _STATUS[code], None
    if loss_out[-1] > loss_out[0]:
        return "not-converging", None
    far = far_from_convergence(iteration, loss_out, min_target_attention, eps)
    return ("finished", None) if far is None else ("max_steps", far)


def ended_off_grid(recorded, it):
    """Whether a run that stopped at iteration ``it`` did so after its last recorded iteration.

    A divergence, saturation or the stop between two log-grid points: its record gains that end.
    """
    return len(recorded) == 0 or recorded[-1] != it


def crossing_times(eta, attn_hits, loss_hits, eps):
    """A GD run's ``crossings`` from its first iterations at the levels, as times ``η · iteration``.

    ``attn_hits`` holds the attention levels (1/2, then ``eps``), ``loss_hits`` the loss levels,
    −1 for never; the times are plain floats as the flow's, None for never.
    """
    time_of = lambda hit: float(eta * int(hit)) if hit >= 0 else None  # noqa: E731
    return {"t_half": time_of(attn_hits[0]), "t_attention": {e: time_of(h) for e, h in zip(eps, attn_hits[1:])},
            "t_loss": {e: time_of(h) for e, h in zip(eps, loss_hits)}}


def _trajectory(system, eta, eps, code, it, iteration, S_out, loss_out, y, attn_hits, loss_hits,
                increases, flips, score_limit, stop_loss, wall, state=None):
    """The :class:`Trajectory` of a GD run from what its loop recorded.

    code, it : how and at which iteration the loop stopped.  iteration, S_out, loss_out :
    the records.  y : the flat state where it stopped.  attn_hits, loss_hits : first
    iterations at the attention levels (1/2, then ``eps``) and loss levels, −1 if never.
    flips : (K, K) oscillation counts.
    state : the recorded states when they are not the scores.
    """
    iteration = iteration.copy()
    if ended_off_grid(iteration, it):
        # The run ended off the log grid (a divergence, saturation or the stop): keep the state it
        # ended at, so the user sees it and the final loss is the one that stopped the run.
        iteration = np.append(iteration, it)
        S_out = np.concatenate([S_out, system.scores_of(y)])
        loss_out = np.append(loss_out, system.flat_loss(y) if np.all(np.isfinite(y)) else np.nan)
        if state is not None:
            state = np.vstack([state, y])
    target = np.diagonal(system.flat_attention(y)).min() if code == GD_FINISHED else np.nan
    status, far = _status(code, iteration, loss_out, target, eps)
    if status in ("non-finite", "score-limit"):
        message = (f"gradient descent diverged at iteration {it}: "
                   + ("non-finite scores" if code == GD_NONFINITE else
                      f"a score exceeded {score_limit:g}"))
    elif status == "saturated":
        message = (f"the step size saturated the float64 softmax: at iteration {it} every query's attention "
                   f"is one-hot to double precision (loss {loss_out[-1]:.3g}) and a step no longer changes "
                   "the state; this is not a converged solution, use a smaller step size")
    elif status == "stop_loss":
        message = f"loss reached {stop_loss:g} at iteration {it}"
    elif status == "not-converging":
        message = (f"the loss after {it} iterations ({loss_out[-1]:.3g}) exceeds the initial loss "
                   f"({loss_out[0]:.3g}): the step size is too large to converge")
    elif status == "max_steps":
        message = (f"{it} iterations (t = {eta * it:.3g}) ended far from convergence: {far}; give more "
                   "steps (training.steps) or a larger step size (training.eta)")
    else:
        message = f"{it} iterations"

    crossings = crossing_times(eta, attn_hits, loss_hits, eps)
    counters = {"iterations": int(it), "loss_increases": int(increases),
                "attention_oscillations": int(flips.sum()), "max_oscillations_per_feature": int(flips.max())}
    return Trajectory("gd", eta * iteration.astype(np.float64), S_out, loss_out, system.flat_attention,
                      iteration=iteration, oscillations=flips, crossings=crossings, status=status, message=message,
                      counters=counters, wall_time=wall, state=state)


def _validate(eta, steps):
    if not (eta > 0 and math.isfinite(eta)):
        raise ValueError(f"eta: expected a finite step size > 0, got {eta}")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps: expected a positive integer, got {steps}")


def _gd_loop(step, args, y, eta, it0, it_end, record_at, Y_rec, loss_rec, attn_levels, attn_hits, loss_levels,
             loss_hits, score_limit, stop_loss, last_sign, flips, dy, S, S_prev, scratch):
    """Iterate ``y ← y + η·dy(y)`` in place from iteration it0 to it_end: the GD loop of every system.

    ``step(y, *args, dy, S, scratch) -> (ℒ, gap)`` writes the flow's right-hand side at y into
    dy and the scores into S (K, K), and returns the loss and ``max_k log(1 − A_kk)``: one
    kernel evaluation per iteration.  Resumable by chunks (each call re-evaluates iteration it0).

    Parameters
    ----------
    y : (n,) ndarray
        The state at iteration it0, advanced in place.
    eta : float
        Step size η.
    it0, it_end : int
        First and last iteration of this chunk.
    record_at : ndarray of int64
        Increasing iteration numbers within ``[it0, it_end]``; the state and its loss are
        written to ``Y_rec[j]``, ``loss_rec[j]`` (the loss alone if ``Y_rec`` has no columns).
    attn_levels, loss_levels : ndarray
        Thresholds on ``max_k log(1 − A_kk)`` (so ``log ε``) and on the loss; ``*_hits[j]``
        receives the first iteration at or below the level (entries already ≥ 0 are left alone).
    score_limit : float
        Stop when ``max |S|`` exceeds it.
    stop_loss : float
        If positive, stop once ``ℒ ≤ stop_loss``.
    last_sign, flips : (K, K) ndarray of int64
        Carried across chunks (see below).
    dy, S, S_prev, scratch : ndarray
        Scratch: ``scratch`` is the step's own (``gd_callback()``'s size).

    Returns
    -------
    status, last_iteration, n_recorded, loss_increases : int
        ``status`` is one of ``GD_FINISHED``, ``GD_NONFINITE``, ``GD_SCORE_LIMIT``,
        ``GD_STOP_LOSS``, ``GD_SATURATED``; a loss increase counts only beyond a relative
        1e-12, so rounding at convergence is not one.

    Notes
    -----
    The oscillation counts follow the scores' actual change per step: for each irrelevant
    pair (n ≠ k) the sign of ``Δ(S_nk − S_kk)``, each difference taken within an entry
    (exact), against its previous non-zero sign.  Saturation: a step that leaves the scores
    (all the loss sees) bit-identical while ``gap ≤ log 2⁻⁵²``.
    """
    n = y.shape[0]
    K = S.shape[0]
    R = record_at.shape[0]
    diagonal_change = np.empty(K)
    rec = 0
    increases = 0
    prev = np.inf
    it = it0
    L, gap = step(y, *args, dy, S, scratch)
    for a in range(K):
        for k in range(K):
            S_prev[a, k] = S[a, k]
    while True:
        if not np.isfinite(L):
            return GD_NONFINITE, it, rec, increases
        if L > prev * (1.0 + 1e-12):
            increases += 1
        prev = L
        for j in range(attn_levels.shape[0]):
            if attn_hits[j] < 0 and gap <= attn_levels[j]:
                attn_hits[j] = it
        for j in range(loss_levels.shape[0]):
            if loss_hits[j] < 0 and L <= loss_levels[j]:
                loss_hits[j] = it
        while rec < R and record_at[rec] == it:
            for i in range(Y_rec.shape[1]):              # none: the losses alone (ensembles)
                Y_rec[rec, i] = y[i]
            loss_rec[rec] = L
            rec += 1
        if stop_loss > 0.0 and L <= stop_loss:
            return GD_STOP_LOSS, it, rec, increases
        if it >= it_end:
            return GD_FINISHED, it, rec, increases
        # The passes below are branch-free (counts, not early exits) so LLVM vectorises them:
        # at K = 64 the branching version cost a quarter of an iteration.
        bad = 0
        for i in range(n):
            v = y[i] + eta * dy[i]
            y[i] = v
            bad += not (abs(v) < np.inf)                   # inf or NaN
        it += 1
        if bad > 0:
            return GD_NONFINITE, it, rec, increases
        gap_before = gap
        L, gap = step(y, *args, dy, S, scratch)
        for k in range(K):
            diagonal_change[k] = S[k, k] - S_prev[k, k]
        changed = 0
        outside = 0
        for a in range(K):                                 # row by row: contiguous in C order
            for k in range(K):
                new = S[a, k]
                old = S_prev[a, k]
                change = (new - old) - diagonal_change[k]  # sign of Δ(S_ak − S_kk); 0 at a = k
                sign = (change > 0) - (change < 0)
                last = last_sign[a, k]
                flips[a, k] += (sign != 0) & (last != 0) & (sign != last)
                last_sign[a, k] = last if sign == 0 else sign
                changed += new != old
                outside += not (abs(new) <= score_limit)   # also NaN
                S_prev[a, k] = new
        if outside > 0:
            for a in range(K):
                for k in range(K):
                    if not np.isfinite(S[a, k]):
                        return GD_NONFINITE, it, rec, increases
            return GD_SCORE_LIMIT, it, rec, increases
        if changed == 0 and gap_before <= SATURATED_LOG_GAP:
            return GD_SATURATED, it, rec, increases


@functools.cache
def _compiled_gd(step_type, args_type):
    """:func:`_gd_loop` compiled for a step callback and arguments of these types (cached on disk)."""
    array, matrix = types.float64[::1], types.float64[:, ::1]
    ints, int_matrix = types.int64[::1], types.int64[:, ::1]
    signature = types.UniTuple(types.int64, 4)(
        step_type, args_type, array, types.float64, types.int64, types.int64, ints, matrix, array, array, ints,
        array, ints, types.float64, types.float64, int_matrix, int_matrix, array, matrix, matrix, array)
    return numba.njit(signature, cache=True, nogil=True)(_gd_loop)     # nogil: ensembles run it on threads


_GD_LOOPS = {}


def _gd_loop_for(step, args, y, S, scratch):
    """The loop's entry point and the step as a typed function pointer, memoised by the step and
    the arrays' dimensions, dtypes and layouts (see :func:`attnflow.solvers.integrator._compiled_for`)."""
    key = (step, _array_key(args))
    if key not in _GD_LOOPS:
        args_type = numba.typeof(args)
        returned = numba.typeof(step(y.copy(), *args, np.empty_like(y), S, scratch))      # compiles the step
        step_type = types.FunctionType(returned(types.float64[::1], *args_type, types.float64[::1],
                                                types.float64[:, ::1], types.float64[::1]))
        loop = _compiled_gd(step_type, args_type)
        _GD_LOOPS[key] = (loop, _entry_point(loop), _Callback(step, step_type.signature))
    return _GD_LOOPS[key][1:]


def dispatchers():
    """List the compiled GD loops made so far (one per combination of argument types)."""
    return list({id(loop): loop for loop, _, _ in _GD_LOOPS.values()}.values())


def iterate_gd(system, start, eta, steps, eps=(1e-2, 1e-3, 1e-4), stop_loss=0.0, n_out=400, score_limit=700.0,
               progress=None, chunks=50):
    """Run ``steps`` iterations of gradient descent ``y ← y + η·flat_rhs(y)`` from ``start``.

    For a :class:`attnflow.solvers.system.ScoreSystem` that is ``S ← S − η G Γ(S) G`` on the
    population loss, for :class:`attnflow.solvers.separate.SeparateSystem`
    ``(B, C) ← (B − ηCΓᵀG, C − ηBΓG)``, for :class:`attnflow.solvers.noisy.NoisySystem`
    ``Q ← Q − η∇ℒ(Q)``; every system runs the one compiled loop (:func:`_gd_loop`) with its
    ``gd_callback()``.  ``score_limit`` and saturation apply to the scores ``scores_of(y)``.

    Parameters
    ----------
    system : System
        Any system of :mod:`attnflow.solvers.protocol` (scores, factors, noisy, heads,
        training set).
    start : array_like or tuple
        Initial state as ``system.flatten`` takes it: the scores S₀ (K, K), the factors
        ``(B₀, C₀)``, Q₀, the heads' scores (H, K, K).
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
        The compiled loop runs in this many pieces (at most: each of at least
        ``MIN_CHUNK_ITERATIONS``) so ``progress(fraction)`` can report.

    Returns
    -------
    Trajectory
        With ``iteration``, and ``state`` (T, n) the recorded states unless they are the
        scores; ``status`` is ``"finished"``, ``"stop_loss"``, ``"non-finite"`` or
        ``"score-limit"`` (both: the step size diverged), ``"saturated"`` (a step that
        left the scores bit-identical while every query's softmax was one-hot in float64:
        GD is frozen there for good, and not at a solution), ``"not-converging"`` when the
        final loss exceeds the initial one, or ``"max_steps"`` when the steps ran out far
        from convergence (:func:`attnflow.solvers.trajectory.far_from_convergence`).
        Counters: ``iterations`` done, ``loss_increases`` (steps where the loss went up by
        more than a relative 1e-12), ``attention_oscillations`` (reversals of the
        irrelevant attentions' log-odds against the target, summed) and
        ``max_oscillations_per_feature``.  ``oscillations`` on the trajectory holds the
        (K, K) reversal counts.

    Raises
    ------
    ValueError
        If eta is not a finite positive number, steps not a positive integer, or the start
        is rejected by ``system.flatten``.

    Examples
    --------
    See the module's examples: K = 3 with orthonormal features from ``S0 = 0``.
    """
    _validate(eta, steps)
    y = np.array(system.flatten(start), dtype=np.float64)          # a copy: advanced in place
    K = system.K
    step, args, work = system.gd_callback()
    dy, S, S_prev, scratch = np.empty_like(y), np.empty((K, K)), np.empty((K, K)), np.empty(work)
    loop, step = _gd_loop_for(step, args, y, S, scratch)

    def advance(it0, it1, record_at, Y_rec, loss_rec, attn_levels, attn_hits, loss_levels, loss_hits, last_sign,
                flips):
        return loop(step, args, y, float(eta), it0, it1, record_at, Y_rec, loss_rec, attn_levels, attn_hits,
                    loss_levels, loss_hits, float(score_limit), float(stop_loss), last_sign, flips, dy, S, S_prev,
                    scratch)

    code, it, iteration, states, loss_rec, attn_hits, loss_hits, increases, flips, wall = _in_chunks(
        advance, (len(y),), K, steps, n_out, eps, progress, chunks)
    return _trajectory(system, eta, eps, code, it, iteration, system.scores_of(states), loss_rec, y, attn_hits,
                       loss_hits, increases, flips, score_limit, stop_loss, wall,
                       state=None if system.state_is_scores else states)
