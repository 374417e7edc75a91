"""A compiled stiff integrator: the Rosenbrock method Rodas4P2 of order 4(3) run entirely in Numba.

The flow of the scores at N = ∞ is not stiff, and the explicit DOP853 of
:mod:`solvers.integrator` takes the fewest steps; at finite N without the query in the
softmax the flow converges exponentially to finite scores and becomes stiff (a step size
bounded by stability, not accuracy: :func:`solvers.flow.auto_method` picks this method
there), and then an explicit method takes ever more steps while a stiff one does not.  Rodas4P2 (Steinebach 2020, see
the coefficients below) is a 6-stage Rosenbrock method of the RODAS family (Hairer &
Wanner, *Solving Ordinary Differential Equations II*, Section IV.7): stiffly accurate and
L-stable (|R(z)| ≤ 1 for Re z ≤ 0, R(∞) = 0), with an embedded 3rd-order solution for the
error estimate and a 3rd-order dense output; unlike RODAS4 it keeps its order on
Prothero–Robinson problems ``y' = −λ(y − g(t)) + g'(t)``, the stiff components that
follow a slow forcing (RODAS4's step count grew 40× for 100× less tolerance there).  Each
step evaluates the Jacobian once (the kernel set's analytic ``flow_jacobian``), factors
``I/(γh) − J`` once (LU with partial pivoting) and solves with it six times; a rejected
step keeps the Jacobian and factors again for the shorter step.

The step is written in Hairer's transformed variables (``rodas.f``: coefficients a_ij,
c_ij of the stages, no matrix–vector product), for the autonomous flow (the stage
times and ∂f/∂t are not needed):

    (I/(γh) − J) k_s = f(y + Σ_{j<s} a_sj k_j) + Σ_{j<s} (c_sj / h) k_j,    s = 1…6,
    y_new = y + Σ_{j≤4} a_5j k_j + k_5 + k_6,   error estimate k_6,

and the interpolant on the step, ``s = (t − t_old)/h``,

    y(s) = (1 − s) y_old + s (y_new + (1 − s)(Σ h_2j k_j + s Σ h_3j k_j)),

which is the form of DOP853's interpolant with three rows, so the event location and the
output grid of :mod:`solvers.integrator` serve both methods unchanged.  As for any method,
the step size follows the error of the step, not of the interpolant: where the state
between steps is not resolved by the steps themselves (a purely algebraic stiff
component, whose step error vanishes), the interpolant is only as good as the step size.

Interface: that of :mod:`solvers.integrator` (callbacks ``rhs(y, *args)`` and
``events(y, *event_args)``, compiled once for their types) plus ``jac(y, *args) -> (n, n)``.
Step-size control: Hairer's (``rodas.f``), ``h_new = h / q`` with ``q = err^{1/4}/0.9``
clipped to ``[1/6, 5]``, and Gustafsson's predictive controller on accepted steps.
"""

import functools

import numpy as np
from numba import njit, types

from . import integrator
from .integrator import (FINISHED, NDENSE, NFEV, NJEV, NLU, NON_FINITE, NREJECTED, NSTEPS, PAUSED, STEP_UNDERFLOW,
                         STOPPED, CompiledRun, _compiled_for, _copy, _events_and_output, _needs_interpolant, _rms)

# The coefficients of Rodas4P2 (G. Steinebach, "Improvement of Rosenbrock-Wanner method RODASP",
# in Progress in Differential-Algebraic Equations II, Springer 2020, pp. 165-184), in the transformed
# variables of Hairer's rodas.f, as tabulated in OrdinaryDiffEq.jl (Rodas4P2Tableau in
# lib/OrdinaryDiffEqRosenbrockTableaus/src/rosenbrock_tableaus.jl).  Row s of A and C gives
# stage s + 1; the sixth stage starts from the embedded solution y + Σ a_5j k_j + k_5.
GAMMA = 0.25
_A5 = (7.089566927282776, 4.573591406461604, -8.423496976860259, -0.959280113459775)
A = np.array([[0.0, 0.0, 0.0, 0.0, 0.0],
              [3.0, 0.0, 0.0, 0.0, 0.0],
              [0.906377755268814, -0.189707390391685, 0.0, 0.0, 0.0],
              [3.758617027739064, 1.161741776019525, -0.849258085312803, 0.0, 0.0],
              [*_A5, 0.0],
              [*_A5, 1.0]])
C = np.array([[0.0, 0.0, 0.0, 0.0, 0.0],
              [-12.0, 0.0, 0.0, 0.0, 0.0],
              [-6.354581592719008, 0.338972550544623, 0.0, 0.0, 0.0],
              [-8.575016317114033, -7.606483992117508, 12.224997650124820, 0.0, 0.0],
              [-5.888975457523102, -8.157396617841821, 24.805546872612922, 12.790401512796979, 0.0],
              [-4.408651676063871, -6.692003137674639, 24.625568527593117, 16.627521966636085, -5.714285714285718]])
# Dense output: rows Σ_j h_2j k_j and Σ_j h_3j k_j over the first five stages.
D = np.array([[-5.323528268423303, -10.042123754867493, 17.175254928256965, -5.079931171878093, -0.016185991706112],
              [6.984505741529879, 6.914061169603662, -0.849178943070653, 18.104410789349338, -3.516963011559032]])
N_STAGES = 6
ORDER, ERROR_ORDER = 4, 3

# Hairer's step-size controller (rodas.f defaults): h_new/h in [MIN_FACTOR, MAX_FACTOR].
SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.2, 6.0


@njit(cache=True)
def _lu_factor(E, piv):
    """LU factorisation of E in place with partial pivoting (row swaps in piv); False if singular."""
    n = E.shape[0]
    for k in range(n):
        p = k
        big = abs(E[k, k])
        for i in range(k + 1, n):
            if abs(E[i, k]) > big:
                big, p = abs(E[i, k]), i
        piv[k] = p
        if big == 0.0 or not np.isfinite(big):
            return False
        if p != k:
            for j in range(n):
                E[k, j], E[p, j] = E[p, j], E[k, j]
        inverse = 1.0 / E[k, k]
        for i in range(k + 1, n):
            E[i, k] *= inverse
            m = E[i, k]
            if m != 0.0:
                for j in range(k + 1, n):
                    E[i, j] -= m * E[k, j]
    return True


@njit(cache=True)
def _lu_solve(E, piv, b):
    """Solve ``E x = b`` in place in b with the factors of :func:`_lu_factor`."""
    n = E.shape[0]
    for k in range(n):
        p = piv[k]
        if p != k:
            b[k], b[p] = b[p], b[k]
    for i in range(n):
        acc = b[i]
        for j in range(i):
            acc -= E[i, j] * b[j]
        b[i] = acc
    for i in range(n - 1, -1, -1):
        acc = b[i]
        for j in range(i + 1, n):
            acc -= E[i, j] * b[j]
        b[i] = acc / E[i, i]


def _run(rhs, jac, events, args, event_args, t_end, t_pause, rtol, atol, fixed, clock, y, f, t_out, Y_out, levels,
         which, terminal, g, hits, values, counters):
    """Advance the Rodas4P2 solution from ``clock[0]`` until t_end, a terminal event, or past t_pause.

    The arguments are those of :func:`solvers.integrator._run` without the tableau, plus
    ``jac``; clock is ``[t, |h| of the next step, last accepted h, its error]`` (the last
    two for the predictive controller; 0 before the first step).  Returns the status.
    """
    n = y.shape[0]
    L = levels.shape[0]
    K = np.empty((N_STAGES, n))
    E = np.empty((n, n))
    piv = np.empty(n, dtype=np.int64)
    F = np.empty((3, n))
    y_new = np.empty(n)
    y_tmp = np.empty(n)
    scale = np.empty(n)
    g_new = np.empty(L)
    roots = np.empty(L)
    t = clock[0]
    h_abs = clock[1]
    h_accepted, error_accepted = clock[2], clock[3]
    while True:
        if t >= t_end:
            return FINISHED
        if t >= t_pause:
            return PAUSED
        J = jac(y, *args)
        counters[NJEV] += 1
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
            diagonal = 1.0 / (GAMMA * h)
            for i in range(n):
                for j in range(n):
                    E[i, j] = -J[i, j]
                E[i, i] += diagonal
            counters[NLU] += 1
            if not _lu_factor(E, piv):
                # Singular (or non-finite) matrix: a shorter step, as rodas.f does.
                last_error = 0.0 if np.isfinite(J).all() else np.inf
                h_abs *= 0.5
                rejected = True
                counters[NREJECTED] += 1
                continue
            for s in range(N_STAGES):
                if s == 0:
                    for i in range(n):
                        K[0, i] = f[i]
                else:
                    for i in range(n):
                        acc = 0.0
                        for j in range(s):
                            acc += A[s, j] * K[j, i]
                        y_tmp[i] = y[i] + acc
                    stage = rhs(y_tmp, *args)
                    for i in range(n):
                        acc = 0.0
                        for j in range(s):
                            acc += C[s, j] * K[j, i]
                        K[s, i] = stage[i] + acc / h
                _lu_solve(E, piv, K[s])
            counters[NFEV] += N_STAGES - 1
            for i in range(n):
                y_new[i] = y_tmp[i] + K[N_STAGES - 1, i]
                scale[i] = atol + max(abs(y[i]), abs(y_new[i])) * rtol
            error = _rms(K[N_STAGES - 1], scale)
            last_error = error
            if fixed:
                break
            if error <= 1.0:
                quotient = min(1.0 / MIN_FACTOR, max(1.0 / MAX_FACTOR, error ** 0.25 / SAFETY))
                if h_accepted > 0.0:
                    # Gustafsson's predictive controller (rodas.f, PRED = .TRUE.).
                    predicted = (h_accepted / h_abs) * (error * error / error_accepted) ** 0.25 / SAFETY
                    quotient = max(quotient, min(1.0 / MIN_FACTOR, max(1.0 / MAX_FACTOR, predicted)))
                h_accepted = h_abs
                error_accepted = max(1e-2, error)
                factor = 1.0 / quotient
                if rejected:
                    factor = min(1.0, factor)
                h_abs *= factor
                break
            # A NaN error (overflow in a stage) is rejected with the largest decrease.
            if np.isfinite(error):
                h_abs /= min(1.0 / MIN_FACTOR, error ** 0.25 / SAFETY)
            else:
                h_abs *= MIN_FACTOR
            rejected = True
            counters[NREJECTED] += 1
        counters[NSTEPS] += 1

        if _needs_interpolant(events, event_args, y_new, t_new, levels, which, g, g_new, hits, values, t_out,
                              counters):
            counters[NDENSE] += 1
            for i in range(n):
                F[0, i] = y_new[i] - y[i]
                for r in range(2):
                    acc = 0.0
                    for j in range(N_STAGES - 1):
                        acc += D[r, j] * K[j, i]
                    F[1 + r, i] = acc
        t_stop, stop = _events_and_output(events, event_args, F, y, y_new, t, t_new, h, levels, which, terminal, g,
                                          g_new, hits, values, roots, t_out, Y_out, y_tmp, counters)
        t = t_stop
        for i in range(n):
            y[i] = y_new[i]
        clock[0], clock[1], clock[2], clock[3] = t, h_abs, h_accepted, error_accepted
        if stop:
            return STOPPED
        for i in range(n):
            if not np.isfinite(y[i]):
                return NON_FINITE
        _copy(rhs(y, *args), f)
        counters[NFEV] += 1


@functools.cache
def _compiled(rhs_type, events_type, args_type, event_args_type, jac_type):
    """The start and run loop compiled for callbacks and arguments of these types (cached on disk)."""
    array = types.float64[::1]
    counters = types.int64[::1]
    run = njit(types.int64(rhs_type, jac_type, events_type, args_type, event_args_type, types.float64,
                           types.float64, types.float64, types.float64, types.boolean, array, array, array, array,
                           types.float64[:, ::1], array, types.int64[::1], types.boolean[::1], array, array, array,
                           counters), cache=True)(_run)
    return integrator.compile_start(rhs_type, args_type), run


def dispatchers():
    """List the compiled Rodas4P2 loops made so far (with the start they share with DOP853)."""
    return integrator.dispatchers(_compiled)


class RosenbrockRun(CompiledRun):
    """One Rodas4P2 integration in compiled code, started at t = 0.

    Parameters
    ----------
    rhs : numba.core.registry.CPUDispatcher
        ``rhs(y, *args) -> dy/dt``, as for :class:`solvers.integrator.CompiledRun`.
    jac : numba.core.registry.CPUDispatcher
        ``jac(y, *args) -> (n, n)``, the Jacobian of rhs.
    events, args, event_args, y0, t_end, rtol, atol
        As for :class:`solvers.integrator.CompiledRun`.
    **options
        ``levels``, ``which``, ``terminal``, ``fixed_step`` of
        :class:`solvers.integrator.CompiledRun`.

    Raises
    ------
    ValueError
        As :class:`solvers.integrator.CompiledRun`: an index in which is not below the
        number of event values.

    Notes
    -----
    :meth:`run` is that of :class:`solvers.integrator.CompiledRun`; :attr:`counts` adds
    njev and nlu.

    Examples
    --------
    A stiff linear ODE, ``u' = −λ (u − c)``, ``c' = −c`` with λ = 10⁴ from (0, 1): u
    follows c within 1/λ, and for t ≫ 1/λ ``u = λ/(λ − 1) e^{−t}``.  Rodas4P2 matches it
    with a tenth of the steps of the explicit DOP853, whose step is bounded by stability.

    >>> import numpy as np
    >>> from numba import njit
    >>> from attnflow.solvers.integrator import FINISHED
    >>> @njit
    ... def linear(y, A, Ms, p, logp, prompt):
    ...     return A @ y
    >>> @njit
    ... def linear_jacobian(y, A, Ms, p, logp, prompt):
    ...     return A.copy()
    >>> @njit
    ... def no_events(y, Ms, p, logp, prompt):
    ...     return 0.0, 0.0
    >>> lam = 1e4
    >>> rest = (np.zeros((1, 1, 1)), np.zeros(1), np.zeros(1), np.zeros(1))
    >>> args = (np.array([[-lam, lam], [0.0, -1.0]]), *rest)
    >>> t_out = np.array([0.0, 0.5, 1.0])
    >>> run = RosenbrockRun(linear, linear_jacobian, no_events, args, rest, np.array([0.0, 1.0]),
    ...                     t_end=1.0, rtol=1e-8, atol=1e-10)
    >>> status, t_final, y_final, Y = run.run(t_out)
    >>> status == FINISHED
    True
    >>> exact = lam / (lam - 1) * np.exp(-t_out[1:])
    >>> bool(np.abs(Y[1:, 0] / exact - 1).max() < 1e-8)
    True
    >>> explicit = CompiledRun(linear, no_events, args, rest, np.array([0.0, 1.0]), t_end=1.0, rtol=1e-8,
    ...                        atol=1e-10)
    >>> _ = explicit.run(t_out)
    >>> run.counts["nsteps"] < explicit.counts["nsteps"] / 10
    True
    """

    error_order = ERROR_ORDER

    def __init__(self, rhs, jac, events, args, event_args, y0, t_end, rtol, atol, **options):
        self._jac_function = jac
        super().__init__(rhs, events, args, event_args, y0, t_end, rtol, atol, **options)
        self.clock = np.array([0.0, self.clock[1], 0.0, 0.0])     # + the predictive controller's memory

    def _compile(self, rhs, events, args, event_args):
        """``(start, run, rhs, events, n_values, jac)`` of the Rodas4P2 loops."""
        return _compiled_for(_compiled, rhs, events, args, event_args, self.y0, jac=self._jac_function)

    def _advance(self, t_pause, t_out, Y):
        """One call of the compiled Rodas4P2 loop, until t_end, a terminal event or past t_pause; its status."""
        return self.loop(self.rhs, self.jac, self.events, self.args, self.event_args, self.t_end, t_pause, self.rtol,
                         self.atol, self.fixed, self.clock, self.y, self.f, t_out, Y, self.levels, self.which,
                         self.terminal, self.g, self.hits, self.values, self.counters)

    @property
    def counts(self):
        """Counters as a dict: nfev, njev, nlu, nsteps, nrejected, ndense, nevents."""
        return {**super().counts, "njev": int(self.counters[NJEV]), "nlu": int(self.counters[NLU])}

