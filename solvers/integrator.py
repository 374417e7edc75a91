"""A compiled adaptive integrator: the DOP853 pair of order 8(5,3) run entirely in Numba.

:func:`scipy.integrate.solve_ivp` spends about 50 µs of Python per step around a
right-hand side that costs a few µs; the flow of the scores is not stiff and DOP853
needs only 50–70 steps to t = 10⁶, so the whole run fits in compiled code.  The
algorithm is SciPy's ``DOP853`` step for step (same tableau, the combined 5th/3rd-order
error norm, the same step-size controller and initial step, FSAL, the 7th-order dense
output), with event location on the dense output and the output grid evaluated in
the compiled loop.  The coefficients are read from
:mod:`scipy.integrate._ivp.dop853_coefficients` at import, not copied.

Interface.  A system supplies two Numba functions and their runtime arguments,

    rhs(y, *rhs_args) -> dy/dt           (a new 1-d array),
    events(y, *event_args) -> values     (a tuple of floats),

(autonomous: the flow has no explicit t, so the stage times C are not used), which is
the calling convention of the kernels themselves (``flow_rhs(y, G, Ms, p,
logp, prompt)``, ``event_values(y, Ms, p, logp, prompt)``): a kernel set, hand-written
or generated, is passed as it is, with no adapter to compile.  The integrator is
compiled for the *types* of the callbacks (``numba.types.FunctionType``: a function
pointer) and of the arguments, not for the functions themselves, so one compiled loop per
prompt model (the large-prompt limit passes ``prompt = None``, finite N an array), cached on
disk, serves every kernel set and every K, and a parameter sweep never recompiles: the
parameters are the values of the arguments.  Every system gives its
callbacks through ``system.callbacks()`` -> ``(rhs, events, args, event_args, jac)``: a
:class:`attnflow.solvers.system.ScoreSystem` its kernel set's ``flow_rhs``, ``event_values`` and
``flow_jacobian`` (large and finite N: one kernel set serves both); the separate factors the
same kernel set's ``separate_rhs``, ``separate_event_values``, ``separate_jacobian``, with the
same argument types, so they run in the loops compiled for the scores; the noisy model its
quadrature kernels (:mod:`attnflow.solvers.noisy`), a second argument type for which the loops
compile once more.

Events.  Event i is ``g_i(y) = values[which[i]] − levels[i]``; a downward crossing
(``g ≥ 0`` before a step, ``g ≤ 0`` after it, SciPy's rule) is located on the dense
output by the Illinois method to ``4 ε_mach`` relative, and only the first crossing of
each event is kept.  A terminal event ends the run at its crossing.

Other compiled methods (:mod:`solvers.rosenbrock`) reuse the start, the event location and
output grid (:func:`_needs_interpolant`, :func:`_events_and_output`: any interpolant of the
form of :func:`_dense`), the counters, :func:`_compiled_for` and :class:`CompiledRun`.
"""

import functools
import importlib.util
from pathlib import Path

import numba
import numpy as np
import scipy
from numba import njit, types
from numba.experimental.function_type import _get_wrapper_address


def _scipy_dop853_coefficients():
    """SciPy's DOP853 tableau module, ``scipy/integrate/_ivp/dop853_coefficients.py`` (plain NumPy).

    Loaded from its file, not imported by name: ``import scipy.integrate._ivp…`` runs
    ``scipy.integrate``'s ``__init__``, which imports ``scipy.special``, ``scipy.optimize`` and
    ``scipy.sparse.linalg`` (about 0.6 s of a 2 s hot ``attnflow run``) that the compiled
    integrator never uses.  Falls back to the import if the file is not where it was.
    """
    path = Path(scipy.__file__).parent / "integrate" / "_ivp" / "dop853_coefficients.py"
    if not path.is_file():
        from scipy.integrate._ivp import dop853_coefficients
        return dop853_coefficients
    spec = importlib.util.spec_from_file_location("attnflow_scipy_dop853_coefficients", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_dop853 = _scipy_dop853_coefficients()

# Status codes returned by the compiled loop.
FINISHED, STOPPED, PAUSED, STEP_UNDERFLOW, NON_FINITE = 0, 1, 2, -1, -2
STATUS_NAMES = {FINISHED: "finished", STOPPED: "stopped by a terminal event", PAUSED: "paused",
                STEP_UNDERFLOW: "step size underflow", NON_FINITE: "non-finite state"}

# Counter slots (int64 array): right-hand sides, accepted and rejected steps, steps that
# built the dense output (3 right-hand sides each for DOP853), event-function calls, grid rows
# written; Jacobians and LU factorisations (the Rosenbrock method of solvers.rosenbrock).
NFEV, NSTEPS, NREJECTED, NDENSE, NEVENTS, NRECORDED, NJEV, NLU = range(8)
N_COUNTERS = 8

# SciPy's step-size controller (scipy.integrate._ivp.rk).
SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.2, 10.0
ERROR_EXPONENT = -1.0 / 8.0          # error estimator order 7
EPS = np.finfo(float).eps

N_STAGES = _dop853.N_STAGES
TABLEAU = tuple(np.ascontiguousarray(x, dtype=np.float64) for x in (
    _dop853.A, _dop853.B, _dop853.C, _dop853.E3, _dop853.E5, _dop853.D))


@njit(cache=True)
def _rms(x, scale):
    s = 0.0
    for i in range(x.shape[0]):
        v = x[i] / scale[i]
        s += v * v
    return np.sqrt(s / x.shape[0])


@njit(cache=True)
def _combine(weights, K, m, out):
    """``out[i] = Σ_{j<m} weights[j] K[j, i]``, stage after stage over contiguous rows.

    Each sum starts at 0 and adds its terms in the order of j, as a loop over j inside a
    loop over i would, so the result is the same to the bit; this order lets the n sums
    advance side by side, where the other makes one chain of dependent additions per i.
    """
    n = out.shape[0]
    for i in range(n):
        out[i] = 0.0
    for j in range(m):
        c = weights[j]
        for i in range(n):
            out[i] += c * K[j, i]


@njit(cache=True)
def _copy(x, out):
    """``out[:] = x`` for equal-length vectors.  A slice assignment would compile Numba's
    broadcast check with its formatted error message: about 3 s of a cold start."""
    for i in range(out.shape[0]):
        out[i] = x[i]


@njit(cache=True)
def _dense(F, y_old, x, out):
    """DOP853's 7th-order interpolant at ``x = (t − t_old)/h`` (SciPy's ``Dop853DenseOutput``)."""
    n = y_old.shape[0]
    P = F.shape[0]
    for i in range(n):
        v = 0.0
        for j in range(P):
            v += F[P - 1 - j, i]
            v *= x if j % 2 == 0 else 1.0 - x
        out[i] = v + y_old[i]


def _start(rhs, args, y0, f0, t_end, rtol, atol, order, counters):
    """``f0 = rhs(y0)`` and SciPy's ``select_initial_step`` for a method whose error estimate
    is of this order (7 for DOP853); returns the first step size."""
    n = y0.shape[0]
    _copy(rhs(y0, *args), f0)
    counters[NFEV] += 1
    scale = np.empty(n)
    for i in range(n):
        scale[i] = atol + abs(y0[i]) * rtol
    d0 = _rms(y0, scale)
    d1 = _rms(f0, scale)
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    h0 = min(h0, t_end)
    # Element loops, not array expressions: the same arithmetic, less to compile.
    y1 = np.empty(n)
    for i in range(n):
        y1[i] = y0[i] + h0 * f0[i]
    f1 = rhs(y1, *args)
    counters[NFEV] += 1
    for i in range(n):
        y1[i] = f1[i] - f0[i]
    d2 = _rms(y1, scale) / h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1.0))
    return min(min(100.0 * h0, h1), t_end)    # two-argument min: the tuple form compiles an extra 0.4 s


def _run(rhs, events, args, event_args, A, B, C, E3, E5, D, t_end, t_pause, rtol, atol, fixed, clock, y, f,
         t_out, Y_out, levels, which, terminal, g, hits, values, counters):
    """Advance the DOP853 solution from ``clock[0]`` until t_end, a terminal event, or past t_pause.

    Resumable: everything carried between calls is in the arrays passed in.
    args, event_args : the runtime arguments of rhs and events.

    fixed : take every step with the size clock[1], whatever the error (to measure the
        method's order).
    clock : [t, |h| of the next step]; updated.  y, f : state and its derivative at t; updated.
    t_out, Y_out : output grid and its rows; rows ``counters[NRECORDED]`` onwards are
        written as the solution passes their times (the caller writes t = 0).
    levels, which, terminal : event i is ``values[which[i]] − levels[i]``, terminal if
        ``terminal[i]``; g (L,) holds the event values at t and hits (L,) the first
        crossing times (NaN: none yet).  values : room for the tuple the events return.
    Returns the status: FINISHED, STOPPED (then clock[0] is the crossing time and y the
    state there), PAUSED (t ≥ t_pause), STEP_UNDERFLOW or NON_FINITE.
    """
    n = y.shape[0]
    L = levels.shape[0]
    S = N_STAGES
    NE = D.shape[1]
    K = np.empty((NE, n))
    F = np.empty((D.shape[0] + 3, n))
    y_new = np.empty(n)
    y_tmp = np.empty(n)
    err3 = np.empty(n)
    scale = np.empty(n)
    g_new = np.empty(L)
    roots = np.empty(L)
    t = clock[0]
    h_abs = clock[1]
    while True:
        if t >= t_end:
            return FINISHED
        if t >= t_pause:
            return PAUSED
        min_step = 10.0 * (np.nextafter(t, np.inf) - t)
        h_abs = max(h_abs, min_step)
        rejected = False
        last_error = 0.0
        while True:                                   # one accepted step
            if h_abs < min_step:
                clock[0], clock[1] = t, h_abs
                return NON_FINITE if not np.isfinite(last_error) else STEP_UNDERFLOW
            t_new = min(t + h_abs, t_end)
            if fixed and t_end - t_new < 1e-6 * h_abs:
                t_new = t_end            # no sliver of a step from rounding in n·(T/n)
            h = t_new - t
            h_abs = abs(h)
            for i in range(n):
                K[0, i] = f[i]
            for s in range(1, S):
                _combine(A[s], K, s, y_tmp)
                for i in range(n):
                    y_tmp[i] = y[i] + h * y_tmp[i]
                _copy(rhs(y_tmp, *args), K[s])
            _combine(B, K, S, y_new)
            for i in range(n):
                y_new[i] = y[i] + h * y_new[i]
            _copy(rhs(y_new, *args), K[S])
            counters[NFEV] += S
            _combine(E5, K, S + 1, y_tmp)
            _combine(E3, K, S + 1, err3)
            e5 = 0.0
            e3 = 0.0
            for i in range(n):
                scale[i] = atol + max(abs(y[i]), abs(y_new[i])) * rtol
                e5 += (y_tmp[i] / scale[i]) ** 2
                e3 += (err3[i] / scale[i]) ** 2
            if e5 == 0.0 and e3 == 0.0:
                error = 0.0
            else:
                error = h_abs * e5 / np.sqrt((e5 + 0.01 * e3) * n)
            last_error = error
            if fixed:
                break
            if error < 1.0:
                factor = MAX_FACTOR if error == 0.0 else min(MAX_FACTOR, SAFETY * error ** ERROR_EXPONENT)
                if rejected:
                    factor = min(1.0, factor)
                h_abs *= factor
                break
            # A NaN error (overflow in a stage) is rejected with the largest decrease.
            factor = SAFETY * error ** ERROR_EXPONENT if np.isfinite(error) else MIN_FACTOR
            h_abs *= max(MIN_FACTOR, factor)
            rejected = True
            counters[NREJECTED] += 1
        counters[NSTEPS] += 1

        # The dense output is built only for steps that need it (a grid point or an event inside).
        if _needs_interpolant(events, event_args, y_new, t_new, levels, which, g, g_new, hits, values, t_out,
                              counters):
            _dense_coefficients(rhs, args, A, D, t, h, y, y_new, f, K, y_tmp, F, counters)
        t_stop, stop = _events_and_output(events, event_args, F, y, y_new, t, t_new, h, levels, which, terminal, g,
                                          g_new, hits, values, roots, t_out, Y_out, y_tmp, counters)
        t = t_stop
        for i in range(n):
            y[i] = y_new[i]
            f[i] = K[S, i]                                 # FSAL
        clock[0], clock[1] = t, h_abs
        if stop:
            return STOPPED
        for i in range(n):
            if not np.isfinite(y[i]):
                return NON_FINITE


@njit(cache=True)
def _dense_coefficients(rhs, args, A, D, t, h, y, y_new, f, K, y_tmp, F, counters):
    """The three extra stages and the rows F of the interpolant (SciPy's ``_dense_output_impl``)."""
    n = y.shape[0]
    S = N_STAGES
    for s in range(S + 1, A.shape[0]):
        _combine(A[s], K, s, y_tmp)
        for i in range(n):
            y_tmp[i] = y[i] + h * y_tmp[i]
        _copy(rhs(y_tmp, *args), K[s])
    counters[NFEV] += A.shape[0] - S - 1
    counters[NDENSE] += 1
    for i in range(n):
        dy = y_new[i] - y[i]
        F[0, i] = dy
        F[1, i] = h * f[i] - dy
        F[2, i] = 2.0 * dy - h * (K[S, i] + f[i])
    for r in range(D.shape[0]):
        row = F[3 + r]
        _combine(D[r], K, D.shape[1], row)
        for i in range(n):
            row[i] = h * row[i]


@njit(cache=True)
def _event_values(events, y, event_args, out):
    """The tuple ``events(y, *event_args)`` written into the array out."""
    values = events(y, *event_args)
    for i in range(len(values)):
        out[i] = values[i]


@njit(cache=True)
def _locate(events, event_args, F, y, t, h, values, index, level, g_left, g_right, y_tmp, counters):
    """Time in ``[t, t + h]`` where ``values[index] − level`` crosses zero on the interpolant.

    Illinois (regula falsi that halves the stale end's value), with a bisection when
    a step fails to halve the bracket; stops at a width of ``4 ε_mach`` relative.
    Returns the end of the final bracket where the event value is ≤ 0.
    """
    a, b = 0.0, 1.0                  # in units of the step: x = (t' − t)/h
    ga, gb = g_left, g_right
    if gb == 0.0:
        return t + h
    side = 0
    bisect = False
    for _ in range(200):
        width = b - a
        if width * abs(h) <= 4.0 * EPS * max(abs(t + a * h), abs(t + b * h)):
            break
        x = 0.5 * (a + b)
        if not bisect and ga - gb > 0.0:
            secant = b - gb * (b - a) / (gb - ga)
            if a < secant < b:
                x = secant
        _dense(F, y, x, y_tmp)
        _event_values(events, y_tmp, event_args, values)
        counters[NEVENTS] += 1
        gx = values[index] - level
        if gx > 0.0:
            a, ga = x, gx
            if side == -1:
                gb *= 0.5            # Illinois: the end kept twice running counts half
            side = -1
        else:
            b, gb = x, gx
            if gx == 0.0:
                break
            if side == 1:
                ga *= 0.5
            side = 1
        bisect = b - a > 0.5 * width     # slow progress: bisect next time round
    return t + b * h


@njit(cache=True)
def _needs_interpolant(events, event_args, y_new, t_new, levels, which, g, g_new, hits, values, t_out, counters):
    """After a step to ``t_new``: the event values there into g_new, and whether the step needs
    its interpolant (an event not yet hit crosses in it, or an output time lies inside it)."""
    need = False
    if levels.shape[0] > 0:
        _event_values(events, y_new, event_args, values)
        counters[NEVENTS] += 1
        for e in range(levels.shape[0]):
            g_new[e] = values[which[e]] - levels[e]
            if g[e] >= 0.0 and g_new[e] <= 0.0 and np.isnan(hits[e]):
                need = True
    rec = counters[NRECORDED]
    return need or (rec < t_out.shape[0] and t_out[rec] < t_new)


@njit(cache=True)
def _events_and_output(events, event_args, F, y, y_new, t, t_new, h, levels, which, terminal, g, g_new, hits, values,
                       roots, t_out, Y_out, y_tmp, counters):
    """The step from (t, y) to (t_new = t + h, y_new) with interpolant rows F (see :func:`_dense`; built
    when :func:`_needs_interpolant` said so): locate the crossings in it, record the first
    of each in hits, write the output rows it passes, and move g to g_new.

    Returns ``(t_stop, stop)``: at a terminal crossing ``stop`` is True, t_stop is its time
    and y_new is overwritten with the state there; otherwise t_stop = t_new.
    """
    L = levels.shape[0]
    t_stop = t_new
    stop = False
    for e in range(L):
        roots[e] = np.nan
        if g[e] >= 0.0 and g_new[e] <= 0.0 and np.isnan(hits[e]):
            roots[e] = _locate(events, event_args, F, y, t, h, values, which[e], levels[e], g[e], g_new[e],
                               y_tmp, counters)
            if terminal[e] and roots[e] <= t_stop:
                t_stop = roots[e]
                stop = True
    for e in range(L):
        if not np.isnan(roots[e]) and roots[e] <= t_stop:
            hits[e] = roots[e]
        g[e] = g_new[e]
    if stop:
        # The state at the terminal crossing, from the interpolant (as solve_ivp does).
        _dense(F, y, (t_stop - t) / h, y_new)
    rec = counters[NRECORDED]
    while rec < t_out.shape[0] and t_out[rec] <= t_stop:
        if t_out[rec] == t_stop:
            _copy(y_new, Y_out[rec])
        else:
            _dense(F, y, (t_out[rec] - t) / h, Y_out[rec])
        rec += 1
    counters[NRECORDED] = rec
    return t_stop, stop


START_SIGNATURE = (types.float64[::1], types.float64[::1], types.float64, types.float64, types.float64,
                   types.float64, types.int64[::1])
"""The argument types of :func:`_start` after ``rhs`` and its arguments: y0, f0, t_end, rtol, atol, order, counters."""


@functools.cache
def compile_start(rhs_type, args_type):
    """:func:`_start` compiled for a right-hand side and arguments of these types (cached on disk)."""
    return njit(types.float64(rhs_type, args_type, *START_SIGNATURE), cache=True, nogil=True)(_start)


@functools.cache
def _compiled(rhs_type, events_type, args_type, event_args_type):
    """The start and run loop compiled for callbacks and arguments of these types (cached on disk)."""
    array = types.float64[::1]
    matrix = types.float64[:, ::1]
    counters = types.int64[::1]
    run = njit(types.int64(rhs_type, events_type, args_type, event_args_type, matrix, array, array, array,
                           array, matrix,
                           types.float64, types.float64, types.float64, types.float64, types.boolean, array, array,
                           array, array, matrix, array, counters, types.boolean[::1], array, array,
                           array, counters), cache=True, nogil=True)(_run)      # nogil: for the ensembles' threads
    return compile_start(rhs_type, args_type), run


def _entry_point(dispatcher):
    """The compiled function of a single-signature dispatcher: calling it skips the dispatcher's
    Python-level typing of the tuple and function arguments (~100 µs a call); it unboxes in C."""
    return dispatcher.overloads[dispatcher.signatures[0]].entry_point


def dispatchers(compile_loops=None):
    """List the compiled loops made so far by ``compile_loops`` (DOP853's by default).

    There is one start and one run per combination of argument types.
    """
    return list(_LOOPS.get(compile_loops or _compiled, ()))


class _Callback(types.WrapperAddressProtocol):
    """A Numba function as a typed function pointer, its address looked up once.

    Passing the dispatcher itself would make Numba look the address up on every call
    into the compiled loop (about a millisecond); this object hands it over directly.
    """

    def __init__(self, dispatcher, signature):
        self.dispatcher = dispatcher            # keeps the compiled code alive
        self._signature = signature
        self._address = _get_wrapper_address(dispatcher, signature)

    def __wrapper_address__(self):
        return self._address

    def signature(self):
        return self._signature


_COMPILED = {}
_LOOPS = {}


def _array_key(arrays):
    # None (the large-prompt limit's prompt argument) is a type of its own.
    return tuple(None if a is None else (a.ndim, a.dtype.str, a.flags.c_contiguous) for a in arrays)


def _compiled_for(compile_loops, rhs, events, args, event_args, y0, jac=None):
    """The start and run entry points, the callbacks and the number of event values, memoised.

    compile_loops(rhs_type, events_type, args_type, event_args_type[, jac_type]) -> (start, run):
    the method's loops compiled for these types (:func:`_compiled` for DOP853).  Returns
    ``(start, run, rhs, events, n_values, jac)`` with the callbacks as typed function pointers
    (jac None when not given).

    The key is the functions and the arrays' dimensions, dtypes and layouts, cheap to
    hash: ``numba.typeof`` of a tuple and hashing Numba types cost ~200 µs a call.
    """
    key = (compile_loops, rhs, events, jac, _array_key(args), _array_key(event_args))
    if key not in _COMPILED:
        array = types.float64[::1]
        args_type, event_args_type = numba.typeof(args), numba.typeof(event_args)
        # The types the callbacks return: from one call each (they are compiled functions).
        rhs_type = types.FunctionType(numba.typeof(rhs(y0, *args))(array, *args_type))
        n_values = len(events(y0, *event_args))
        events_type = types.FunctionType(types.UniTuple(types.float64, n_values)(array, *event_args_type))
        jac_types = () if jac is None else (types.FunctionType(numba.typeof(jac(y0, *args))(array, *args_type)),)
        start, run = compile_loops(rhs_type, events_type, args_type, event_args_type, *jac_types)
        loops = _LOOPS.setdefault(compile_loops, [])
        loops.extend(d for d in (start, run) if d not in loops)
        _COMPILED[key] = (_entry_point(start), _entry_point(run), _Callback(rhs, rhs_type.signature),
                          _Callback(events, events_type.signature), n_values,
                          None if jac is None else _Callback(jac, jac_types[0].signature))
    return _COMPILED[key]


class CompiledRun:
    """One DOP853 integration in compiled code, started at t = 0.

    After construction ``f0`` (dy/dt at y0) and ``first_step`` are known, so the caller
    can choose the output grid; then :meth:`run` integrates.

    Parameters
    ----------
    rhs, events : numba.core.registry.CPUDispatcher
        Numba functions ``rhs(y, *args) -> dy/dt``, ``events(y, *event_args) -> tuple of
        floats`` (see the module docstring).
    args, event_args : tuple of ndarray
        Their runtime arrays.
    y0 : (n,) array_like
        Initial state.
    t_end : float
        Final time.
    rtol, atol : float
        SciPy's tolerances.
    levels, which, terminal : sequence, optional
        The events (see :func:`_run`): event i crosses where ``events(y)[which[i]]``
        falls through ``levels[i]``, and ends the run if ``terminal[i]``.
    fixed_step : float, optional
        If positive, every step has this size and is accepted (no error control).

    Raises
    ------
    ValueError
        If an index in which is not below the number of event values.

    Notes
    -----
    Subclasses (other methods) override ``error_order``, :meth:`_compile` and :meth:`_advance`.

    Examples
    --------
    ``y' = −y`` from y(0) = 1 against the exact exponential.  The callbacks take the
    argument types of the kernels (``y, G, Ms, p, logp, prompt`` and two event values),
    so the loop compiled for the kernels (cached on disk) runs them.

    >>> import numpy as np
    >>> from numba import njit
    >>> @njit
    ... def linear(y, A, Ms, p, logp, prompt):
    ...     return A @ y
    >>> @njit
    ... def no_events(y, Ms, p, logp, prompt):
    ...     return 0.0, 0.0
    >>> rest = (np.zeros((1, 1, 1)), np.zeros(1), np.zeros(1), np.zeros(1))
    >>> run = CompiledRun(linear, no_events, (np.array([[-1.0]]), *rest), rest, np.array([1.0]),
    ...                   t_end=2.0, rtol=1e-10, atol=1e-12)
    >>> t_out = np.array([0.0, 1.0, 2.0])
    >>> status, t_final, y_final, Y = run.run(t_out)
    >>> status == FINISHED, t_final
    (True, 2.0)
    >>> bool(np.abs(Y[:, 0] - np.exp(-t_out)).max() < 1e-9)
    True
    """

    error_order = 7            # of the error estimate, for the first step size

    def __init__(self, rhs, events, args, event_args, y0, t_end, rtol, atol, levels=(), which=(), terminal=(),
                 fixed_step=0.0):
        self.y = np.array(y0, dtype=np.float64)
        self.y0 = self.y.copy()
        self.start, self.loop, self.rhs, self.events, n_values, self.jac = self._compile(rhs, events, args,
                                                                                         event_args)
        self.args, self.event_args = args, event_args
        self.f = np.empty_like(self.y)
        self.t_end, self.rtol, self.atol = float(t_end), float(rtol), float(atol)
        self.levels = np.ascontiguousarray(levels, dtype=np.float64)
        self.which = np.ascontiguousarray(which, dtype=np.int64)
        if len(self.which) and not 0 <= self.which.min() <= self.which.max() < n_values:
            raise ValueError(f"which: expected indices below {n_values}, the number of event values")
        self.terminal = np.ascontiguousarray(terminal, dtype=np.bool_)
        self.hits = np.full(len(self.levels), np.nan)
        self.values = np.empty(n_values)
        self.counters = np.zeros(N_COUNTERS, dtype=np.int64)
        self.first_step = self.start(self.rhs, args, self.y, self.f, self.t_end, self.rtol, self.atol,
                                     float(self.error_order), self.counters)
        self.f0 = self.f.copy()
        self.fixed = fixed_step > 0
        self.clock = np.array([0.0, fixed_step if self.fixed else self.first_step])
        self.g = np.empty(len(self.levels))
        self.initial_values = None           # the event values at y0, when there are events
        if len(self.levels):
            self.initial_values = np.array(events(self.y, *event_args), dtype=np.float64)
            self.counters[NEVENTS] += 1
            self.g[:] = self.initial_values[self.which] - self.levels

    def _compile(self, rhs, events, args, event_args):
        """``(start, run, rhs, events, n_values, jac)`` of :func:`_compiled_for` for this method."""
        return _compiled_for(_compiled, rhs, events, args, event_args, self.y0)

    def _advance(self, t_pause, t_out, Y):
        """One call of the compiled loop, until t_end, a terminal event or past t_pause; its status."""
        return self.loop(self.rhs, self.events, self.args, self.event_args, *TABLEAU, self.t_end, t_pause,
                         self.rtol, self.atol, self.fixed, self.clock, self.y, self.f, t_out, Y, self.levels,
                         self.which, self.terminal, self.g, self.hits, self.values, self.counters)

    def run(self, t_out, pauses=(), on_pause=None):
        """Integrate, writing the solution at the times ``t_out`` (increasing, from 0).

        Parameters
        ----------
        t_out : array_like
            Output times, increasing, from 0.
        pauses : sequence of float, optional
            Increasing times at which control returns to Python after the step that
            passes them, to call ``on_pause(t)`` (progress reports); the steps taken do
            not depend on them.
        on_pause : callable, optional
            Called with the current time at each pause.

        Returns
        -------
        status : int
            ``FINISHED``, ``STOPPED`` (a terminal event) or a failure (``STATUS_NAMES``).
        t_final : float
            The time reached.
        y_final : ndarray
            The state there.
        Y : (len(t_out), n) ndarray
            The solution at t_out, filled for the times ≤ t_final (rows beyond it are NaN).
        """
        t_out = np.ascontiguousarray(t_out, dtype=np.float64)
        Y = np.full((len(t_out), len(self.y)), np.nan)
        rec = 0
        while rec < len(t_out) and t_out[rec] <= 0.0:
            Y[rec] = self.y0
            rec += 1
        self.counters[NRECORDED] = rec
        status = PAUSED
        for t_pause in (*pauses, np.inf):
            if t_pause <= self.clock[0]:
                continue                 # passed by the last step: no empty call
            status = self._advance(float(t_pause), t_out, Y)
            if status != PAUSED:
                break
            if on_pause is not None:
                on_pause(self.clock[0])
        return status, float(self.clock[0]), self.y.copy(), Y

    @property
    def counts(self):
        """Counters as a dict: nfev, nsteps, nrejected, ndense, nevents."""
        return {"nfev": int(self.counters[NFEV]), "nsteps": int(self.counters[NSTEPS]),
                "nrejected": int(self.counters[NREJECTED]), "ndense": int(self.counters[NDENSE]),
                "nevents": int(self.counters[NEVENTS])}
