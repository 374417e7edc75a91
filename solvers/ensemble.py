"""Ensembles: many problems of one K run by the compiled loops, in parallel over problems.

A sweep over parameters (L, p, the features, η, …) is a batch of score systems that
share K.  :func:`iterate_gd_ensemble` stacks their arrays and runs the exact GD map of
every problem, :func:`integrate_flow_ensemble` its gradient flow, and both return numbers
only — status, iterations or times, crossings, final loss and attention — without building
a trajectory per problem.  Each problem runs the very compiled loop that
:func:`attnflow.solvers.gd.iterate_gd` or ``integrate_flow(method="DOP853-compiled")`` runs,
called at its entry point (no Python-level typing) with the problem's rows of the stacked
arrays, so an ensemble equals the same problems run one by one, and it compiles nothing
those runs do not compile.  The loops release the GIL: the problems run on a thread per
core, in blocks, with no OpenMP or TBB threads (which a forked sweep worker could not use).

Examples
--------
>>> import numpy as np
>>> from attnflow.solvers import ScoreSystem
>>> systems = [ScoreSystem(np.eye(3), L**2 * np.eye(3), np.full(3, 1 / 3)) for L in (0.5, 1.0, 2.0)]
>>> result = iterate_gd_ensemble(systems, np.zeros((3, 3, 3)), eta=[2.0, 1.0, 0.25], steps=2000)
>>> [str(s) for s in result.status]
['finished', 'finished', 'finished']
"""

import functools
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
from numba import njit, types

from . import integrator
from .assembly import PRODUCT_FORM_MIN_K
from .flow import _log_grid
from . import gd
from .gd import _validate
from .system import ScoreSystem
from .trajectory import far_from_convergence


@dataclass(frozen=True)
class EnsembleResult:
    """Per-problem numbers of a GD ensemble (arrays of length B, or (B, ·)).

    Attributes
    ----------
    status : ndarray of str, shape (B,)
        The status :func:`attnflow.solvers.gd.iterate_gd` gives the same run (``finished``,
        ``stop_loss``, ``max_steps``, ``not-converging``, ``non-finite``, ``score-limit``,
        ``saturated``).
    iterations : ndarray, shape (B,)
        The iteration each problem stopped at.
    iterations_half : ndarray, shape (B,)
        First iteration with target attention ``min_k A_kk ≥ 1/2`` (−1: never).
    iterations_attention, iterations_loss : ndarray, shape (B, len(eps))
        First iterations with attention ``≥ 1 − ε`` and loss ``≤ ε`` (−1: never).
    final_loss, final_min_target_attention : ndarray, shape (B,)
        Loss and target attention ``min_k A_kk`` where each run ended (NaN at non-finite scores).
    final_S : ndarray, shape (B, K, K)
        The final scores.
    loss_increases, attention_oscillations, max_oscillations_per_feature : ndarray, shape (B,)
        Counters as in :func:`attnflow.solvers.gd.iterate_gd`.
    iteration_out, loss_out : ndarray, shape (B, ·)
        The recorded iterations and the loss there, as the trajectory of iterate_gd holds
        them (log-spaced, and the iteration a run stopped at last); entries past a run's
        ``n_recorded`` are −1 and NaN.
    n_recorded : ndarray, shape (B,)
        Number of recorded points of each run.
    """

    status: np.ndarray
    iterations: np.ndarray
    iterations_half: np.ndarray
    iterations_attention: np.ndarray
    iterations_loss: np.ndarray
    final_loss: np.ndarray
    final_min_target_attention: np.ndarray
    final_S: np.ndarray
    loss_increases: np.ndarray
    attention_oscillations: np.ndarray
    max_oscillations_per_feature: np.ndarray
    iteration_out: np.ndarray
    loss_out: np.ndarray
    n_recorded: np.ndarray

    def counters(self, b):
        """The counters of problem b as the trajectory of iterate_gd holds them."""
        return {"iterations": int(self.iterations[b]), "loss_increases": int(self.loss_increases[b]),
                "attention_oscillations": int(self.attention_oscillations[b]),
                "max_oscillations_per_feature": int(self.max_oscillations_per_feature[b])}


def iterate_gd_ensemble(systems, S0, eta, steps, eps=(1e-2, 1e-3, 1e-4), stop_loss=0.0, n_out=400,
                        score_limit=700.0, parallel=True):
    """Gradient descent on B problems of one K at once, in parallel over problems.

    Parameters
    ----------
    systems : sequence of ScoreSystem
        B :class:`attnflow.solvers.system.ScoreSystem` of one K and one prompt model, with
        one kernel set (their arrays are stacked; only the arrays differ).
    S0 : array_like, shape (B, K, K) or (K, K)
        Initial scores.
    eta : float or array_like, shape (B,)
        Step size, one or one per problem.
    steps : int or array_like, shape (B,)
        Iterations, one or one per problem.
    eps, n_out, score_limit
        As in :func:`attnflow.solvers.gd.iterate_gd` (only the loss is recorded).
    stop_loss : float or array_like, shape (B,), optional
        As in :func:`attnflow.solvers.gd.iterate_gd`, one for all problems or one per
        problem; 0 never stops.
    parallel : bool, optional
        Run the problems on a thread per core (:func:`threads`); False runs them on the
        calling thread.

    Returns
    -------
    EnsembleResult
        Its numbers equal those of :func:`attnflow.solvers.gd.iterate_gd` on
        each problem alone (the same compiled loop runs; tested to the bit).

    Raises
    ------
    ValueError
        If there are no systems, they differ in K, prompt model or kernel set, a step
        size, step count or stop_loss is invalid, n_out is not an integer ≥ 2, or S0 is not
        finite.

    Examples
    --------
    See the module's examples: three task scales L, each with its own step size.
    """
    systems = list(systems)
    if not systems:
        raise ValueError("systems: expected at least one problem")
    first = systems[0]
    K = first.K
    for s in systems:
        if s.K != K or s.kernels is not first.kernels or s.N != first.N or s.query_in_softmax != first.query_in_softmax:
            raise ValueError("systems: an ensemble needs one K, one prompt model and one kernel set")
    if isinstance(n_out, bool) or int(n_out) != n_out or n_out < 2:
        raise ValueError(f"n_out: expected an integer ≥ 2, got {n_out}")
    B = len(systems)
    eta = np.broadcast_to(np.asarray(eta, dtype=np.float64), (B,)).copy()
    steps = np.broadcast_to(np.asarray(steps, dtype=np.int64), (B,)).copy()
    for e, n in zip(eta, steps):
        _validate(e, n)
    stop_loss = np.broadcast_to(np.asarray(stop_loss, dtype=np.float64), (B,))
    if not np.all(np.isfinite(stop_loss) & (stop_loss >= 0)):
        raise ValueError("stop_loss: expected finite losses ≥ 0")
    S = np.array(np.broadcast_to(S0, (B, K, K)), dtype=np.float64, order="C")
    if not np.all(np.isfinite(S)):
        raise ValueError("S0: expected finite scores")
    G = np.stack([s.G for s in systems])
    prompt = first.args[4]
    # At N = ∞ from PRODUCT_FORM_MIN_K on, the GD kernels read only M⁽⁰⁾ of each problem's
    # label-gap stack (assembly._loss_gradient_gap_products): stacking that alone keeps 32 problems
    # at K = 256 at 16 MB, where the whole stacks, 4.3 GB, took most of the ensemble's time.
    product_form = not first.finite and K >= PRODUCT_FORM_MIN_K
    Ms = np.stack([s.Ms[:1] if product_form else s.Ms for s in systems])
    p = np.stack([s.p for s in systems])
    logp = np.stack([s.logp for s in systems])
    attn_levels = np.log(np.array([0.5, *eps]))
    loss_levels = np.array(eps, dtype=np.float64)
    record_at = {int(n): gd.log_iterations(int(n), int(n_out)) for n in set(steps.tolist())}
    width = max(len(r) for r in record_at.values()) + 1            # and the iteration a run stops at
    code = np.empty(B, dtype=np.int64)
    last_it = np.empty(B, dtype=np.int64)
    iteration_out = np.full((B, width), -1, dtype=np.int64)
    loss_out = np.full((B, width), np.nan)
    n_recorded = np.empty(B, dtype=np.int64)
    final_attention = np.empty(B)
    attn_hits = np.full((B, len(attn_levels)), -1, dtype=np.int64)
    loss_hits = np.full((B, len(loss_levels)), -1, dtype=np.int64)
    increases = np.empty(B, dtype=np.int64)
    flips = np.zeros((B, K, K), dtype=np.int64)
    step, _, work = first.gd_callback()
    y = S.reshape(B, K * K)                     # a view: the loop advances S in place
    loop, step = gd._gd_loop_for(step, (G[0], Ms[0], p[0], logp[0], prompt), y[0].copy(), np.empty((K, K)),
                                 np.empty(work))
    loss, attention = first.kernels.loss, first.kernels.attention

    def run(b):
        """iterate_gd on problem b: the loop, then its end point and final attention as the trajectory's."""
        at = record_at[int(steps[b])]
        code[b], last_it[b], m, increases[b] = loop(
            step, (G[b], Ms[b], p[b], logp[b], prompt), y[b], eta[b], 0, steps[b], at, np.empty((len(at), 0)),
            loss_out[b], attn_levels, attn_hits[b], loss_levels, loss_hits[b], float(score_limit), stop_loss[b],
            np.zeros((K, K), dtype=np.int64), flips[b], np.empty(K * K), np.empty((K, K)), np.empty((K, K)),
            np.empty(work))
        iteration_out[b, :m] = at[:m]
        finite = np.all(np.isfinite(S[b]))
        if gd.ended_off_grid(at[:m], last_it[b]):
            iteration_out[b, m] = last_it[b]
            loss_out[b, m] = loss(S[b], Ms[b], p[b], logp[b], prompt) if finite else np.nan
            m += 1
        n_recorded[b] = m
        final_attention[b] = np.diagonal(attention(S[b], logp[b], prompt)).min() if finite else np.nan

    for_each_problem(run, B, parallel)
    status = np.array([gd._status(code[b], iteration_out[b, :n_recorded[b]], loss_out[b, :n_recorded[b]],
                                  final_attention[b], eps)[0] for b in range(B)])
    return EnsembleResult(status, last_it, attn_hits[:, 0], attn_hits[:, 1:], loss_hits,
                          loss_out[np.arange(B), n_recorded - 1], final_attention, S, increases, flips.sum(axis=(1, 2)),
                          flips.max(axis=(1, 2)), iteration_out, loss_out, n_recorded)


def threads(parallel, B):
    """How many threads run B problems: one per core Numba may use (``NUMBA_NUM_THREADS``), or 1."""
    return max(1, min(B, numba.config.NUMBA_NUM_THREADS)) if parallel else 1


def for_each_problem(run, B, parallel):
    """Call ``run(b)`` for b = 0 … B − 1, on :func:`threads` threads.

    ``run`` spends its time in compiled loops that release the GIL, so the threads run in
    parallel.  Problems go out in blocks, a few per thread (for balance, since their costs
    differ); an exception in any of them is raised here.
    """
    n = threads(parallel, B)
    if n == 1:
        for b in range(B):
            run(b)
        return
    blocks = np.array_split(np.arange(B), min(B, 4 * n))
    with ThreadPoolExecutor(n) as pool:
        for _ in pool.map(lambda block: [run(int(b)) for b in block], blocks):
            pass


# --- the gradient flow: the compiled DOP853 of solvers.integrator on every problem ---------------

# The first step as CompiledRun chooses it (SciPy's rule for an error estimate of this order).
DOP853_ERROR_ORDER = float(integrator.CompiledRun.error_order)


def _flow_outputs(loss, attention, Y, y, t_out, t_final, t_end, Ms, p, logp, prompt, loss_out):
    """The loss on the output grid as :func:`solvers.flow.integrate_flow` keeps it (cut at the final
    time, which is appended), into ``loss_out``; returns ``(points kept, final loss, final target
    attention min_k A_kk)``.  Compiled per callback and argument types (:func:`_compiled_outputs`)."""
    M = t_out.shape[0]
    K = logp.shape[0]
    kept = 0
    for r in range(M):
        if t_final < t_end and not t_out[r] < t_final:
            break
        loss_out[r] = loss(np.ascontiguousarray(Y[r]).reshape(K, K), Ms, p, logp, prompt)
        kept += 1
    last = y.reshape(K, K)
    if t_final < t_end:
        loss_out[kept] = loss(last, Ms, p, logp, prompt)
        kept += 1
    A_final = attention(last, logp, prompt)
    smallest = np.inf
    for k in range(K):
        if np.isnan(A_final[k, k]):          # as NumPy's min: NaN wins
            smallest = np.nan
            break
        smallest = min(smallest, A_final[k, k])
    return kept, loss_out[kept - 1], smallest


@functools.cache
def _compiled_outputs(loss_type, attention_type, arrays_type):
    """:func:`_flow_outputs` compiled for these callback and array types (cached on disk)."""
    array, matrix = types.float64[::1], types.float64[:, ::1]
    signature = types.Tuple((types.int64, types.float64, types.float64))(
        loss_type, attention_type, matrix, array, array, types.float64, types.float64, *arrays_type, array)
    return njit(signature, cache=True, nogil=True)(_flow_outputs)


@dataclass(frozen=True)
class FlowEnsembleResult:
    """Per-problem numbers of a flow ensemble (arrays of length B, or (B, ·)).

    Attributes
    ----------
    status : ndarray of str, shape (B,)
        The status :func:`attnflow.solvers.flow.integrate_flow` gives the same run
        (``finished``, ``t_end``, ``stop_loss``, ``failed``, ``non-finite``).
    t_final : ndarray, shape (B,)
        The time each run ended.
    t_half : ndarray, shape (B,)
        First time the target attention ``min_k A_kk`` reaches 1/2 (NaN: never).
    t_attention, t_loss : ndarray, shape (B, len(eps))
        First times the attention reaches ``1 − ε`` and the loss falls to ε (NaN: never;
        0 when met at the start, as in integrate_flow).
    final_loss, final_min_target_attention : ndarray, shape (B,)
        Loss and target attention ``min_k A_kk`` at the final scores.
    final_S : ndarray, shape (B, K, K)
        The final scores.
    nfev, nsteps, nrejected, ndense, nevents : ndarray, shape (B,)
        The compiled integrator's counters.
    t_out, loss_out : ndarray, shape (B, n_out)
        The output grid and the loss on it, as the trajectory of integrate_flow holds
        them (a run that ended early has its grid cut at t_final, which is the last
        point); the entries past a run's ``n_recorded`` are NaN.
    n_recorded : ndarray, shape (B,)
        Number of valid output points of each run.
    """

    status: np.ndarray
    t_final: np.ndarray
    t_half: np.ndarray
    t_attention: np.ndarray
    t_loss: np.ndarray
    final_loss: np.ndarray
    final_min_target_attention: np.ndarray
    final_S: np.ndarray
    nfev: np.ndarray
    nsteps: np.ndarray
    nrejected: np.ndarray
    ndense: np.ndarray
    nevents: np.ndarray
    t_out: np.ndarray
    loss_out: np.ndarray
    n_recorded: np.ndarray

    def counters(self, b):
        """The counters of problem b as the trajectory of integrate_flow holds them."""
        return {"njev": 0, "nlu": 0, "nfev": int(self.nfev[b]), "nsteps": int(self.nsteps[b]),
                "nrejected": int(self.nrejected[b]), "ndense": int(self.ndense[b]), "nevents": int(self.nevents[b])}


_OUTPUTS = {}


def _outputs_for(kernels, event_args):
    """The entry point of :func:`_flow_outputs` and the kernel set's ``loss`` and ``attention`` as
    typed function pointers, memoised per kernel set and prompt type."""
    key = (kernels, event_args[-1] is None)
    if key not in _OUTPUTS:
        Ms, p, logp, prompt = event_args
        K = logp.shape[0]
        matrix = types.float64[:, ::1]
        arrays_type = tuple(numba.typeof(event_args))
        loss_type = types.FunctionType(types.float64(matrix, *arrays_type))
        attention_type = types.FunctionType(numba.typeof(kernels.attention(np.zeros((K, K)), logp, prompt))(
            matrix, numba.typeof(logp), numba.typeof(prompt)))
        outputs = _compiled_outputs(loss_type, attention_type, arrays_type)
        _OUTPUTS[key] = (integrator._entry_point(outputs),
                         integrator._Callback(kernels.loss, loss_type.signature),
                         integrator._Callback(kernels.attention, attention_type.signature))
    return _OUTPUTS[key]


def integrate_flow_ensemble(systems, S0, t_end, rtol=1e-8, atol=1e-10, eps=(1e-2, 1e-3, 1e-4), stop_loss=0.0,
                            n_out=400, parallel=True):
    """The gradient flow of B problems of one K by the compiled DOP853, in parallel over problems.

    Each problem runs the very loop that ``integrate_flow(system, S0, t_end,
    method="DOP853-compiled", ...)`` runs (:mod:`solvers.integrator`), with the same events,
    output grid and status rules, so the numbers equal that call's on each problem alone
    (tested to the bit); no trajectory object is built.

    Parameters
    ----------
    systems : sequence of ScoreSystem
        B :class:`attnflow.solvers.system.ScoreSystem` of one K, one kernel set and one
        prompt model (N, quadrature step, query); only their arrays G, F, p differ.
    S0 : array_like, shape (B, K, K) or (K, K)
        Initial scores.
    t_end, rtol, atol, eps, n_out
        As in :func:`attnflow.solvers.flow.integrate_flow`.
    stop_loss : float or array_like, shape (B,), optional
        As in :func:`attnflow.solvers.flow.integrate_flow`, one for all problems or one per
        problem (e.g. a fraction of each problem's initial loss); 0 never stops.
    parallel : bool, optional
        Run the problems on a thread per core (:func:`threads`); False runs them on the
        calling thread.

    Returns
    -------
    FlowEnsembleResult

    Raises
    ------
    ValueError
        If there are no systems, they are not ScoreSystems of one K, prompt model and
        kernel set, t_end is not finite and positive, n_out is not an integer ≥ 2, or S0
        has the wrong shape or is not finite.

    Examples
    --------
    Three task scales L: the flow's time scales like 1/L², so the first time the target
    attention reaches 1/2 falls fourfold per doubling of L.

    >>> import numpy as np
    >>> from attnflow.solvers import ScoreSystem, integrate_flow
    >>> systems = [ScoreSystem(np.eye(3), L**2 * np.eye(3), np.full(3, 1 / 3)) for L in (0.5, 1.0, 2.0)]
    >>> result = integrate_flow_ensemble(systems, np.zeros((3, 3)), t_end=2000.0)
    >>> result.status.tolist()
    ['finished', 'finished', 'finished']
    >>> (result.t_half[:2] / result.t_half[1:]).round(6).tolist()
    [4.0, 4.0]

    Problem by problem the numbers are those of the compiled flow alone:

    >>> alone = integrate_flow(systems[1], np.zeros((3, 3)), 2000.0, method="DOP853-compiled")
    >>> bool(alone.crossings["t_half"] == result.t_half[1]), bool(alone.loss[-1] == result.final_loss[1])
    (True, True)
    >>> bool(np.array_equal(alone.S[-1], result.final_S[1]))
    True
    """
    systems = list(systems)
    if not systems:
        raise ValueError("systems: expected at least one problem")
    first = systems[0]
    if not isinstance(first, ScoreSystem):
        raise ValueError(f"systems: expected ScoreSystems (compiled kernels), got {type(first).__name__}")
    K = first.K
    for s in systems:
        if (not isinstance(s, ScoreSystem) or s.K != K or s.kernels is not first.kernels
                or not np.array_equal(s.prompt, first.prompt) or s.Ms.shape != first.Ms.shape):
            raise ValueError("systems: a flow ensemble needs one K, one prompt model and one kernel set")
    if not (t_end > 0 and math.isfinite(t_end)):
        raise ValueError(f"t_end: expected a finite positive time, got {t_end}")
    if isinstance(n_out, bool) or int(n_out) != n_out or n_out < 2:
        raise ValueError(f"n_out: expected an integer ≥ 2, got {n_out}")
    B, n, n_out = len(systems), K * K, int(n_out)
    S0 = np.asarray(S0, dtype=np.float64)
    if S0.shape not in ((K, K), (B, K, K)):
        raise ValueError(f"S0: expected ({K}, {K}) or ({B}, {K}, {K}) scores, got shape {S0.shape}")
    y = np.array(np.broadcast_to(S0, (B, K, K)), dtype=np.float64, order="C").reshape(B, n)
    if not np.all(np.isfinite(y)):
        raise ValueError("S0: expected finite scores")
    t_end, rtol, atol = float(t_end), float(rtol), float(atol)
    G = np.stack([s.G for s in systems])
    Ms = np.stack([s.Ms for s in systems])
    p = np.stack([s.p for s in systems])
    logp = np.stack([s.logp for s in systems])
    prompt = first.prompt_argument
    rhs_kernel, events_kernel = first.callbacks()[:2]
    start, loop, rhs, events, n_values, _ = integrator._compiled_for(
        integrator._compiled, rhs_kernel, events_kernel, (G[0], Ms[0], p[0], logp[0], prompt),
        (Ms[0], p[0], logp[0], prompt), y[0].copy())
    outputs, loss, attention = _outputs_for(first.kernels, (Ms[0], p[0], logp[0], prompt))

    # The events of integrate_flow: target attention 1/2 and 1 − ε, loss ε, and the stop,
    # one row of levels per problem (a problem that does not stop has the stop at −inf).
    eps = [float(e) for e in eps]
    stop_loss = np.broadcast_to(np.asarray(stop_loss, dtype=np.float64), (B,))
    if not np.all(np.isfinite(stop_loss) & (stop_loss >= 0)):
        raise ValueError("stop_loss: expected finite losses ≥ 0")
    levels = [math.log(0.5)] + [math.log(e) for e in eps] + [math.log(e) for e in eps]
    which = [0] * (1 + len(eps)) + [1] * len(eps)
    levels = np.repeat(np.array([levels]), B, axis=0)
    if np.any(stop_loss > 0):
        with np.errstate(divide="ignore"):
            levels = np.hstack([levels, np.log(stop_loss)[:, None]])
        which.append(1)
    which = np.array(which, dtype=np.int64)
    terminal = np.zeros(levels.shape[1], dtype=np.bool_)
    terminal[1 + 2 * len(eps):] = True

    values0 = np.empty((B, n_values))
    counters = np.zeros((B, integrator.N_COUNTERS), dtype=np.int64)
    t_out = np.empty((B, n_out))
    hits = np.full(levels.shape, np.nan)
    t_final = np.empty(B)
    status = np.empty(B, dtype=np.int64)
    loss_out = np.full((B, n_out), np.nan)
    n_recorded = np.empty(B, dtype=np.int64)
    final_loss, final_attention = np.empty(B), np.empty(B)

    def run(b):
        """integrate_flow's compiled DOP853 on problem b: its start, grid, run and outputs."""
        args = (G[b], Ms[b], p[b], logp[b], prompt)
        event_args = args[1:]
        f = np.empty(n)
        first_step = start(rhs, args, y[b], f, t_end, rtol, atol, DOP853_ERROR_ORDER, counters[b])
        speed = np.abs(f).max()
        values0[b] = events_kernel(y[b], *event_args)
        counters[b, integrator.NEVENTS] += 1
        t_out[b] = _log_grid(first_step if speed == 0 else max(first_step, 1e-3 / speed), t_end, n_out)
        Y = np.full((n_out, n), np.nan)
        Y[0] = y[b]                          # the grid starts at t = 0
        counters[b, integrator.NRECORDED] = 1
        clock = np.array([0.0, first_step])
        status[b] = loop(rhs, events, args, event_args, *integrator.TABLEAU, t_end, np.inf, rtol, atol, False,
                         clock, y[b], f, t_out[b], Y, levels[b], which, terminal, values0[b, which] - levels[b],
                         hits[b], np.empty(n_values), counters[b])
        t_final[b] = clock[0]
        n_recorded[b], final_loss[b], final_attention[b] = outputs(
            loss, attention, Y, y[b], t_out[b], clock[0], t_end, *event_args, loss_out[b])

    for_each_problem(run, B, parallel)
    names = np.empty(B, dtype=object)
    for b in range(B):
        if t_final[b] < t_end:       # the grid cut at the final time, which is the last point
            kept = n_recorded[b] - 1
            t_out[b, kept] = t_final[b]
            t_out[b, kept + 1:] = np.nan
        if status[b] == integrator.FINISHED:
            m = n_recorded[b]
            far = far_from_convergence(t_out[b, :m], loss_out[b, :m], final_attention[b], eps)
            names[b] = "finished" if far is None else "t_end"
        elif status[b] == integrator.STOPPED:
            names[b] = "stop_loss"
        else:
            names[b] = "non-finite" if status[b] == integrator.NON_FINITE else "failed"
    # A level already met at t = 0 never crosses: its time is 0 (as integrate_flow's crossings).
    crossed = np.where(values0[:, which] <= levels, 0.0, hits)
    m = len(eps)
    return FlowEnsembleResult(
        names.astype(str), t_final, crossed[:, 0], crossed[:, 1:1 + m], crossed[:, 1 + m:1 + 2 * m], final_loss,
        final_attention, y.reshape(B, K, K), counters[:, integrator.NFEV], counters[:, integrator.NSTEPS],
        counters[:, integrator.NREJECTED], counters[:, integrator.NDENSE], counters[:, integrator.NEVENTS], t_out,
        loss_out, n_recorded)
