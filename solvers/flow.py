"""Gradient flow of the scores, of the separate factors or of the noisy model, by any integrator.

The flow is ``dS/dt = −G Γ(S) G``, the flow of the separate key and query factors
(:class:`attnflow.solvers.separate.SeparateSystem`) or of the noisy d×d model
(:class:`attnflow.solvers.noisy.NoisySystem`), run through :func:`scipy.integrate.solve_ivp`,
the compiled DOP853 of :mod:`attnflow.solvers.integrator` or the compiled Rodas4P2 of
:mod:`attnflow.solvers.rosenbrock`.
"""

import math
import time

import numpy as np

from . import integrator, rosenbrock
from .system import ScoreSystem
from .trajectory import Trajectory, far_from_convergence

IMPLICIT = ("LSODA", "Radau", "BDF")
# Compiled methods run the whole integration in Numba, on the callbacks every system gives
# (system.callbacks()); the solve_ivp methods stay selectable, the reference they are tested against.
COMPILED = ("DOP853-compiled", "Rodas4P2-compiled")
# "auto": see auto_method.
AUTO = "auto"
METHODS = (AUTO,) + IMPLICIT + ("RK45", "DOP853") + COMPILED
LSODA_SHORTEST_AUTOMATIC = 1e-150     # shorter intervals underflow LSODA's automatic first step


def auto_method(system):
    """Choose the compiled method that "auto" stands for.

    Rodas4P2-compiled for a finite prompt without the query in the softmax,
    DOP853-compiled otherwise.
    Where the loss has no floor (large prompt, or the query token in the softmax) the scores
    grow without bound, the Jacobian's eigenvalues decay like 1/t and (1 + t)·max|Re λ(J)|
    stays O(1): the flow is not stiff and DOP853's 8th order takes the fewest steps.  Without
    the query a feature can be absent from a finite prompt, the loss has a floor reached at
    finite scores, the flow converges to them exponentially (λ(J) tends to a nonzero limit)
    and is stiff once t ≫ 1/|λ| (N = 2, K = 3: DOP853 needs ~80 000 steps to t = 10⁷, Rodas4P2
    ~360).  The separate factors follow their scores' prompt, a training set its population's
    (a prompt missing its query's feature gives the floor); the noisy model (N = ∞) takes DOP853.

    Parameters
    ----------
    system : ScoreSystem, SeparateSystem or NoisySystem
        The system to integrate (the separate factors' system is judged by its ``scores``).

    Returns
    -------
    str
        ``"Rodas4P2-compiled"`` or ``"DOP853-compiled"``.

    Examples
    --------
    >>> import numpy as np
    >>> from attnflow.solvers.system import ScoreSystem
    >>> moments = (np.eye(3), np.eye(3), np.full(3, 1 / 3))
    >>> auto_method(ScoreSystem(*moments))
    'DOP853-compiled'
    >>> auto_method(ScoreSystem(*moments, N=8)), auto_method(ScoreSystem(*moments, N=8, include_query=True))
    ('Rodas4P2-compiled', 'DOP853-compiled')
    """
    scores = getattr(system, "scores", getattr(system, "population", system))    # a training set: its population's
    if isinstance(scores, ScoreSystem) and scores.finite and not scores.query_in_softmax:
        return "Rodas4P2-compiled"
    return "DOP853-compiled"


def _log_grid(t_first, t_last, n):
    """``0`` followed by ``n − 1`` log-spaced times from ``t_first`` to ``t_last`` (just ``t_last`` if n = 2)."""
    if not t_last > 0:
        return np.array([0.0])
    if n == 2:               # geomspace of one point would give t_first, and the grid would miss t_last
        return np.array([0.0, t_last])
    t_first = min(max(t_first, t_last * 1e-12), t_last)
    return np.concatenate([[0.0], np.geomspace(t_first, t_last, n - 1)])


def integrate_flow(system, S0, t_end, method=AUTO, rtol=1e-8, atol=1e-10,
                   eps=(1e-2, 1e-3, 1e-4), stop_loss=0.0, n_out=400, progress=None):
    """Integrate the gradient flow from ``S0`` to ``t_end`` (or until ``ℒ ≤ stop_loss``).

    Parameters
    ----------
    system : System
        Any implementation of :class:`attnflow.solvers.protocol.System` (the scores, the separate
        factors, the noisy model, several heads, a training set).
    S0 : (K, K) array_like
        Initial scores; the initial factors ``(B0, C0)`` for a SeparateSystem, the initial
        d×d Q for a NoisySystem.
    t_end : float
        Final time (finite, positive).
    method : str, optional
        A :func:`solve_ivp` method (LSODA, Radau and BDF get the analytic Jacobian),
        "DOP853-compiled": SciPy's DOP853 step for step in compiled code
        (:mod:`attnflow.solvers.integrator`), "Rodas4P2-compiled": the stiff Rosenbrock method Rodas4P2
        with the kernels' analytic Jacobian in compiled code (:mod:`attnflow.solvers.rosenbrock`), or
        "auto" (the default): one of the two compiled methods by whether the flow becomes
        stiff (:func:`auto_method`).  Every system runs the compiled methods, on the
        Numba callbacks of its ``callbacks()`` (the scores' kernel set, the factors'
        ``separate_*`` functions of the same kernel set, the noisy model's quadrature kernels).
    rtol, atol : float, optional
        The integrator's relative and absolute tolerances.
    eps : tuple of float, optional
        Levels ε for the crossing times of attention ``1 − ε`` and loss ``ε``.
    stop_loss : float, optional
        If positive, a terminal event stops the run when the loss reaches it.
    n_out : int, optional
        Output points: ``t = 0`` and a log-spaced grid up to the final time, from the
        first solver step or 10⁻³ of the initial time scale ``1/max|dS/dt(0)|``, whichever
        is later (from the dense interpolant, so the grid spans the whole run).  The
        compiled method knows only its first step size before the run: its grid goes from
        there to t_end and, when the run ends early (stop_loss, failure), is cut at the
        final time, which is appended as the last point.
    progress : callable, optional
        ``progress(fraction)`` with fraction in [0, 1] of log-time.

    Returns
    -------
    Trajectory
        With counters ``nfev``, ``njev``, ``nlu``, ``nsteps`` (the compiled methods add
        ``nrejected``, ``ndense`` and ``nevents``); when the state is not the scores
        (separate factors, the noisy model's Q) the trajectory's ``state`` holds it on the
        output grid.  ``status`` is ``"finished"``, ``"stop_loss"``, ``"failed"`` (the
        solver's message) or ``"t_end"`` when it reached t_end far from convergence
        (:func:`attnflow.solvers.trajectory.far_from_convergence`).

    Raises
    ------
    ValueError
        If method is not one of ``METHODS``, t_end is not finite and positive, or S0 is not
        a valid initial state of the system (the message starts with the field's name).

    Examples
    --------
    The default method is compiled DOP853 for a large prompt; SciPy's Radau agrees on the
    time at which the attention reaches one half.

    >>> import numpy as np
    >>> from attnflow.solvers.system import ScoreSystem
    >>> system = ScoreSystem(np.eye(3), np.eye(3), np.full(3, 1 / 3))
    >>> run = integrate_flow(system, np.zeros((3, 3)), t_end=1e4)
    >>> run.status, run.message
    ('finished', 'reached t_end = 10000')
    >>> radau = integrate_flow(system, np.zeros((3, 3)), t_end=1e4, method="Radau")
    >>> abs(run.crossings["t_half"] / radau.crossings["t_half"] - 1) < 1e-6
    True
    >>> integrate_flow(system, np.zeros((3, 3)), t_end=-1.0)
    Traceback (most recent call last):
    ...
    ValueError: t_end: expected a finite positive time, got -1.0
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if not (t_end > 0 and math.isfinite(t_end)):
        raise ValueError(f"t_end: expected a finite positive time, got {t_end}")
    y0 = system.flatten(S0)
    flat_rhs, flat_event_values = system.flat_rhs, system.flat_event_values

    # Progress is reported in steps of 0.1 %, the bar's resolution: a few hundred calls per run
    # (tau and log_span: see _time_scale, computed below unless a compiled method returns first).
    state = {"reported": 0.0}

    def rhs(t, y):
        if progress is not None:
            fraction = min(math.log1p(max(t, 0.0) / tau) / log_span, 1.0)
            if fraction >= state["reported"] + 1e-3:
                state["reported"] = fraction
                progress(fraction)
        return flat_rhs(y)

    def jac(t, y):
        return system.flat_jacobian(y)

    # solve_ivp evaluates every event at each step with the same (t, y): one kernel call serves all.
    cache = {"t": None, "y": None, "values": None}

    def values(t, y):
        if t != cache["t"] or not np.array_equal(y, cache["y"]):
            cache.update(t=t, y=y.copy(), values=flat_event_values(y))
        return cache["values"]

    # Events are signed distances to each level (in logs); they cross downwards.
    levels = [("t_half", None, math.log(0.5), 0)]
    levels += [("t_attention", e, math.log(e), 0) for e in eps]
    levels += [("t_loss", e, math.log(e), 1) for e in eps]
    if stop_loss > 0:
        levels.append(("stop", None, math.log(stop_loss), 1))
    if method == AUTO:
        method = auto_method(system)
    fallback = ""
    if method in COMPILED:
        callbacks = system.callbacks()
        if callbacks is not None:
            return _integrate_compiled(system, method, callbacks, y0, t_end, rtol, atol, levels, stop_loss,
                                       n_out, progress)
        # A system with NumPy kernels only (none today) runs the SciPy twin.
        twin = "Radau" if method == "Rodas4P2-compiled" else "DOP853"
        fallback = f" ({method} needs compiled callbacks, which {type(system).__name__} has not: ran solve_ivp's {twin})"
        method = twin
    # Imported here, not at the top: scipy.integrate costs about 0.6 s of import (it pulls in
    # scipy.special, scipy.optimize and scipy.sparse.linalg), and the default, compiled methods
    # return above without it.
    from scipy.integrate import solve_ivp

    speed, tau, log_span = _time_scale(flat_rhs(y0), t_end)
    events = []
    for name, _, level, which in levels:
        ev = (lambda level, which: lambda t, y: values(t, y)[which] - level)(level, which)
        ev.direction = -1
        ev.terminal = name == "stop"
        events.append(ev)

    options = {"jac": jac} if method in IMPLICIT else {}
    if method == "LSODA" and t_end < LSODA_SHORTEST_AUTOMATIC:
        # LSODA's first-step estimate is 1/√(1/(tol·t_end²) + …): below ~1e-154 the square
        # underflows to 0, the step is 0, and solve_ivp loops for ever at t = 0.  One step of
        # the whole interval instead (its error test shortens it if need be).
        options["first_step"] = t_end
    start = time.perf_counter()
    sol = solve_ivp(rhs, (0.0, t_end), y0, method=method, rtol=rtol, atol=atol,
                    events=events, dense_output=True, **options)
    wall = time.perf_counter() - start
    if progress is not None:
        progress(1.0)

    t_final = float(sol.t[-1])
    t_first = float(sol.t[1]) if len(sol.t) > 1 else t_final
    if speed > 0:
        t_first = max(t_first, 1e-3 / speed)
    t = _log_grid(t_first, t_final, n_out)
    Y = sol.sol(t).T if len(sol.t) > 1 else y0[None, :]
    S = system.scores_of(Y)
    loss = system.flat_losses(Y)

    crossings = _crossings(levels, flat_event_values(y0), [float(h[0]) if len(h) else None for h in sol.t_events])

    message = f"{method}: {sol.message}"
    if sol.status < 0:
        status = "failed"
    elif sol.status == 1:
        status = "stop_loss"
        message = f"loss reached {stop_loss:g} at t = {t_final:.6g}"
    else:
        status, message = _reached_t_end(system, t_end, t, loss, Y[-1], eps)
    message += fallback
    counters = {"nfev": int(sol.nfev), "njev": int(sol.njev), "nlu": int(sol.nlu),
                "nsteps": int(len(sol.t) - 1)}
    state = None if system.state_is_scores else Y
    return Trajectory("flow", t, S, loss, system.flat_attention, crossings=crossings, status=status,
                      message=message, counters=counters, wall_time=wall, state=state)


def _time_scale(f0, t_end):
    """``(speed, τ, log(1 + t_end/τ))`` from dy/dt at the start, f0.

    Nothing visible happens before a fraction of the initial time scale 1/speed,
    ``speed = max|dy/dt(0)|``.  Progress is log time measured from that scale, as the output
    grid advances: ``log(1 + t/τ)`` with ``τ = 10⁻³/speed``, so a sharp problem (τ ≪ 1) does
    not sit at 0 % while t < 1.
    """
    speed = float(np.abs(f0).max())
    tau = 1e-3 / speed if speed > 0 else 1.0
    return speed, tau, math.log1p(t_end / tau)


def _reached_t_end(system, t_end, t, loss, y_last, eps):
    """Status and message of a run that reached t_end: ``finished``, or ``t_end`` far from convergence."""
    far = far_from_convergence(t, loss, np.diagonal(system.flat_attention(y_last)).min(), eps)
    if far is None:
        return "finished", f"reached t_end = {t_end:g}"
    return "t_end", f"reached t_end = {t_end:g} far from convergence: {far}; give a larger training.t_end"


def _crossings(levels, at_start, first_hits):
    """The trajectory's crossing times from each level's first crossing (None: none)."""
    crossings = {"t_half": None, "t_attention": {}, "t_loss": {}}
    for (name, e, level, which), hit in zip(levels, first_hits):
        # A level already met at t = 0 never crosses: its time is 0.
        when = 0.0 if at_start[which] <= level else hit
        if name == "t_half":
            crossings[name] = when
        elif name != "stop":
            crossings[name][e] = when
    return crossings


def _integrate_compiled(system, method, callbacks, y0, t_end, rtol, atol, levels, stop_loss, n_out, progress):
    """:func:`integrate_flow` with a compiled method: DOP853 (:class:`attnflow.solvers.integrator.CompiledRun`)
    or Rodas4P2 (:class:`attnflow.solvers.rosenbrock.RosenbrockRun`, with the system's analytic Jacobian);
    callbacks: ``system.callbacks()``.  The time scale and the event values at the start come
    from the run's own first evaluations (its ``f0`` and ``initial_values``), not from
    the system's Python-level methods again."""
    start = time.perf_counter()
    rhs, events, args, event_args, jac = callbacks
    options = {"levels": [level for _, _, level, _ in levels], "which": [which for *_, which in levels],
               "terminal": [name == "stop" for name, *_ in levels]}
    if method == "Rodas4P2-compiled":
        run = rosenbrock.RosenbrockRun(rhs, jac, events, args, event_args, y0, t_end, rtol, atol, **options)
    else:
        run = integrator.CompiledRun(rhs, events, args, event_args, y0, t_end, rtol, atol, **options)
    speed, tau, log_span = _time_scale(run.f0, t_end)
    t_first = run.first_step if speed == 0 else max(run.first_step, 1e-3 / speed)
    t = _log_grid(t_first, t_end, n_out)
    pauses, on_pause = (), None
    if progress is not None:
        # Control returns to Python after the step passing each of these times (the steps do
        # not depend on them): progress in log time as for solve_ivp, 0.5 % at a time.
        pauses = tau * np.expm1(np.linspace(0.0, log_span, 201)[1:-1])

        def on_pause(t_now):
            progress(min(math.log1p(t_now / tau) / log_span, 1.0))
    status, t_final, y_final, Y = run.run(t, pauses, on_pause)
    wall = time.perf_counter() - start
    if progress is not None:
        progress(1.0)
    if t_final < t_end:
        # Cut the grid at the final time, which becomes the last point.
        keep = t < t_final
        t, Y = np.append(t[keep], t_final), np.vstack([Y[keep], y_final])
    S = system.scores_of(Y)
    loss = system.flat_losses(Y)
    crossings = _crossings(levels, run.initial_values, [None if np.isnan(h) else float(h) for h in run.hits])
    counters = {"njev": 0, "nlu": 0, **run.counts}      # DOP853 has neither
    if status == integrator.FINISHED:
        eps = [e for name, e, *_ in levels if name == "t_attention"]
        name, message = _reached_t_end(system, t_end, t, loss, Y[-1], eps)
    elif status == integrator.STOPPED:
        name, message = "stop_loss", f"loss reached {stop_loss:g} at t = {t_final:.6g}"
    else:
        name = "non-finite" if status == integrator.NON_FINITE else "failed"
        message = f"{method}: {integrator.STATUS_NAMES[status]} at t = {t_final:.6g}"
    state = None if system.state_is_scores else Y
    return Trajectory("flow", t, S, loss, system.flat_attention, crossings=crossings, status=name,
                      message=message, counters=counters, wall_time=wall, state=state)
