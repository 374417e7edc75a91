"""The compiled DOP853 (:mod:`attnflow.solvers.integrator`): order, agreement with solve_ivp, events, counters, no recompilation."""


import numpy as np
import pytest
from numba import njit
from scipy.integrate import solve_ivp
from scipy.linalg import expm

from attnflow.solvers import integrate_flow
from attnflow.solvers import integrator
from attnflow.solvers.integrator import CompiledRun
from attnflow.solvers.separate import SeparateSystem, lazy_start
from attnflow.solvers.system import ScoreSystem

from .conftest import make_problem


# Test systems take the flow kernels' argument types (y, G, Ms, p, logp, prompt) and return
# two event values, so they run in the loop compiled for the kernels; only they compile.
@njit(cache=True)
def _linear_rhs(y, A, Ms, p, logp, prompt):
    """``y' = A y``."""
    return A @ y


@njit(cache=True)
def _square_rhs(y, A, Ms, p, logp, prompt):
    """``y' = y²``: from y(0) = 1 it blows up at t = 1."""
    return y * y


@njit(cache=True)
def _nan_beyond_two(y, A, Ms, p, logp, prompt):
    """``y' = 1`` while y ≤ 2, NaN beyond: from y(0) = 1 the state cannot pass t = 1."""
    return np.where(y <= 2.0, 1.0, np.nan)


@njit(cache=True)
def _no_events(y, Ms, p, logp, prompt):
    return 0.0, 0.0


def _run(rhs, A, y0, t_end, rtol, atol, **options):
    """A CompiledRun of ``rhs`` with ``A`` as its G argument and no events."""
    rest = (np.zeros((1, 1, 1)), np.zeros(1), np.zeros(1), np.zeros(1))
    args = (np.ascontiguousarray(A, dtype=np.float64), *rest)
    return CompiledRun(rhs, _no_events, args, rest, y0, t_end, rtol, atol, **options)


def _linear_problem():
    """A 4×4 linear system with rotating, decaying modes; the exact solution is ``expm(A t) y0``."""
    A = np.array([[-0.3, 2.0, 0.0, 0.1], [-2.0, -0.3, 0.5, 0.0], [0.0, -0.5, -0.1, 1.0], [0.2, 0.0, -1.0, -0.2]])
    return A, np.array([1.0, 0.5, -0.5, 0.25])


def _slope(h, err):
    return np.polyfit(np.log(h), np.log(err), 1)[0]


def test_fixed_steps_converge_at_order_eight_and_the_dense_output_at_order_seven():
    """Global error at T = 4 and interpolated error at mid-step points, for 8–22 fixed steps.

    The step solution is of order 8: the fitted slope of log error against log h is in
    [7.5, 8.7].  The interpolant at mid-step is of order 7 locally (error h⁸) on top of the
    global error h⁸, so it too falls like h⁸: slope in [7.0, 8.7]."""
    A, y0 = _linear_problem()
    T = 4.0
    steps = np.array([8, 11, 16, 22])
    h = T / steps
    end_errors, mid_errors = [], []
    for n in steps:
        mid = (np.arange(n) + 0.5) * T / n
        run = _run(_linear_rhs, A, y0, T, 1e-8, 1e-10, fixed_step=T / n)
        status, t_final, y_final, Y = run.run(np.concatenate([[0.0], mid, [T]]))
        assert status == integrator.FINISHED and t_final == T
        assert run.counts["nsteps"] == n and run.counts["nrejected"] == 0
        exact = np.array([expm(A * t) @ y0 for t in mid])
        end_errors.append(np.abs(y_final - expm(A * T) @ y0).max())
        mid_errors.append(np.abs(Y[1:-1] - exact).max())
        np.testing.assert_array_equal(Y[-1], y_final)
    assert 7.5 < _slope(h, end_errors) < 8.7, end_errors
    assert 7.0 < _slope(h, mid_errors) < 8.7, mid_errors
    assert end_errors[-1] < 2e-10


def test_adaptive_error_follows_the_tolerance():
    """With atol = rtol/100, the global error at T = 20 stays below 100·rtol and falls as rtol does."""
    A, y0 = _linear_problem()
    T = 20.0
    errors = []
    for rtol in (1e-6, 1e-8, 1e-10, 1e-12):
        run = _run(_linear_rhs, A, y0, T, rtol, rtol / 100)
        status, _, y_final, _ = run.run(np.array([0.0, T]))
        assert status == integrator.FINISHED
        errors.append(np.abs(y_final - expm(A * T) @ y0).max())
        assert errors[-1] < 100 * rtol * np.abs(y0).max()
    assert np.all(np.diff(np.log10(errors)) < -1.0), errors     # > 10× less error per 100× tighter rtol


@pytest.mark.parametrize("rhs,status", [(_square_rhs, integrator.STEP_UNDERFLOW),
                                        (_nan_beyond_two, integrator.NON_FINITE)])
def test_failures_are_reported_with_their_time(rhs, status):
    """A blow-up ends in a step-size underflow, a NaN right-hand side in a non-finite status, both at t ≈ 1."""
    run = _run(rhs, np.zeros((1, 1)), np.array([1.0]), 3.0, 1e-8, 1e-10)
    result, t_final, _, Y = run.run(np.array([0.0, 0.5, 2.0, 3.0]))
    assert result == status
    assert t_final == pytest.approx(1.0, abs=1e-6)
    assert np.isfinite(Y[1]).all() and np.isnan(Y[2:]).all()     # rows beyond the end are left NaN


def _sharp():
    return make_problem(features={"kind": "simplex", "K": 4, "d": 3}, task={"kind": "single-index", "L": 3.0})


def _finite(include_query):
    return make_problem(features={"kind": "random-unit", "K": 3, "d": 3, "seed": 1},
                        task={"kind": "single-index", "L": 2.0}, prompt={"N": 12, "include_query": include_query})


@pytest.mark.parametrize("make,t_end,rtol", [(_sharp, 1e4, 1e-12), (lambda: _finite(False), 1e3, 1e-10),
                                             (lambda: _finite(True), 2e4, 1e-10)],
                         ids=["large-N", "finite-N", "finite-N-query"])
def test_trajectories_match_radau(make, t_end, rtol):
    """The whole output grid against solve_ivp Radau (analytic Jacobian), both at rtol (1e-12 at N = ∞;
    1e-10 at finite N, where Radau takes 10–16 s at 1e-12) and atol = rtol/100: relative 1e-8 of the
    largest score; the crossing times to relative 1e-8."""
    problem = make()
    system = problem.score_system()
    atol = rtol / 100
    eps = (0.1, 1e-2, 1e-3)      # 0.1: a loss level the query variant reaches (its attention caps below 1/2 here)
    tr = integrate_flow(system, problem.S0, t_end, method="DOP853-compiled", rtol=rtol, atol=atol, n_out=80, eps=eps)
    assert tr.status in ("finished", "t_end") and tr.t[-1] == t_end and len(tr.t) == 80   # reached t_end
    y0 = system.flatten(problem.S0)
    sol = solve_ivp(lambda t, y: system.flat_rhs(y), (0, t_end), y0, method="Radau", rtol=rtol, atol=atol,
                    jac=lambda t, y: system.flat_jacobian(y), dense_output=True)
    reference = sol.sol(tr.t).T.reshape(-1, system.K, system.K)
    scale = np.abs(reference).max(axis=(1, 2))
    assert np.all(np.abs(tr.S - reference).max(axis=(1, 2)) <= 1e-8 * np.maximum(scale, 1e-3))
    radau = integrate_flow(system, problem.S0, t_end, method="Radau", rtol=rtol, atol=atol, eps=eps)
    compare = [(tr.crossings["t_half"], radau.crossings["t_half"])]
    compare += [(tr.crossings[k][e], radau.crossings[k][e]) for k in ("t_attention", "t_loss") for e in eps]
    assert any(b not in (None, 0.0) for _, b in compare)
    for a, b in compare:
        assert (a is None) == (b is None)
        if b is not None:
            assert a == pytest.approx(b, rel=1e-8)


def test_steps_counters_and_crossings_equal_scipys_dop853():
    """SciPy's DOP853 step for step: the same accepted and rejected steps, and
    nfev = 2 + 12·(accepted + rejected) + 3·(steps with dense output) exactly; crossing times equal
    solve_ivp's events to relative 1e-10 (the same interpolant, located by a different root finder)."""
    problem = _sharp()
    system = problem.score_system()
    eps = (1e-2, 1e-3)
    tr = integrate_flow(system, problem.S0, 1e6, method="DOP853-compiled", eps=eps, n_out=100)
    ref = integrate_flow(system, problem.S0, 1e6, method="DOP853", eps=eps, n_out=100)
    c = tr.counters
    assert c["nfev"] == 2 + 12 * (c["nsteps"] + c["nrejected"]) + 3 * c["ndense"]
    assert 0 < c["ndense"] <= c["nsteps"] and c["njev"] == 0 and c["nlu"] == 0
    assert c["nsteps"] == ref.counters["nsteps"]
    # solve_ivp builds the dense output on every step: its nfev gives its rejected steps.
    rejected = (ref.counters["nfev"] - 2 - 15 * ref.counters["nsteps"]) / 12
    assert c["nrejected"] == rejected
    assert tr.crossings["t_half"] == pytest.approx(ref.crossings["t_half"], rel=1e-10)
    for kind in ("t_attention", "t_loss"):
        for e in eps:
            assert ref.crossings[kind][e] is not None
            assert tr.crossings[kind][e] == pytest.approx(ref.crossings[kind][e], rel=1e-10)
    np.testing.assert_allclose(tr.S[-1], ref.S[-1], rtol=1e-12, atol=1e-12)


def test_stop_loss_stops_at_the_level():
    """The terminal event: the loss at the final time equals stop_loss to 1e-10 relative, at
    solve_ivp's stopping time to 1e-8; the grid is cut there and ends with the stop."""
    problem = _sharp()
    system = problem.score_system()
    stop = 1e-5
    tr = integrate_flow(system, problem.S0, 1e9, method="DOP853-compiled", stop_loss=stop, n_out=200,
                        rtol=1e-10, atol=1e-12)
    ref = integrate_flow(system, problem.S0, 1e9, method="DOP853", stop_loss=stop, rtol=1e-10, atol=1e-12)
    assert tr.status == "stop_loss" and tr.message == f"loss reached {stop:g} at t = {tr.t[-1]:.6g}"
    assert tr.loss[-1] == pytest.approx(stop, rel=1e-10)
    assert tr.t[-1] == pytest.approx(ref.t[-1], rel=1e-8)
    assert np.all(np.diff(tr.t) > 0) and np.all(tr.loss[:-1] > stop)
    assert tr.crossings["t_loss"][1e-4] < tr.t[-1]


def test_compiled_flow_takes_the_start_from_the_run(monkeypatch):
    """integrate_flow with a compiled method evaluates dy/dt and the events at y0 once, in the
    run: the system's Python-level flat_rhs and flat_event_values are not called, and the grid
    starts at max(first step, 10⁻³/max|dy/dt(0)|) as before."""
    problem = _sharp()
    system = problem.score_system()
    y0 = system.flatten(problem.S0)
    speed = np.abs(system.flat_rhs(y0)).max()
    rhs, events, args, event_args, _ = system.callbacks()
    first_step = CompiledRun(rhs, events, args, event_args, y0, 1e6, 1e-8, 1e-10).first_step

    def refuse(self, y):
        raise AssertionError("evaluated from Python")

    monkeypatch.setattr(ScoreSystem, "flat_rhs", refuse)
    monkeypatch.setattr(ScoreSystem, "flat_event_values", refuse)
    tr = integrate_flow(system, problem.S0, 1e6, method="DOP853-compiled")
    assert tr.status == "finished" and tr.t[0] == 0.0
    assert tr.t[1] == pytest.approx(max(first_step, 1e-3 / speed), rel=1e-15)
    assert tr.crossings["t_half"] > 0


class _NoCallbacks(ScoreSystem):
    """The scores without compiled callbacks, as a system with NumPy kernels only would be."""

    def callbacks(self):
        return None


def test_a_system_without_compiled_callbacks_runs_the_scipy_twin():
    """A system without compiled callbacks: "auto" (DOP853-compiled here) runs solve_ivp's
    DOP853, says so, and gives that method's trajectory exactly."""
    problem = _sharp()
    scores = problem.score_system()
    system = _NoCallbacks(scores.G, scores.F, scores.p)
    auto = integrate_flow(system, problem.S0, 1e3, n_out=20)
    twin = integrate_flow(system, problem.S0, 1e3, "DOP853", n_out=20)
    assert auto.message.endswith("(DOP853-compiled needs compiled callbacks, which _NoCallbacks has not: "
                                 "ran solve_ivp's DOP853)")
    assert np.array_equal(auto.t, twin.t) and np.array_equal(auto.S, twin.S)
    assert auto.crossings == twin.crossings


def test_progress_is_reported_in_log_time_and_does_not_change_the_steps():
    """Increasing fractions inside (0, 1) while the loop runs, then 1; the pauses for them leave
    the steps, counters and output exactly as without a progress callback."""
    fractions = []
    problem = _sharp()
    system = problem.score_system()
    tr = integrate_flow(system, problem.S0, 1e6, method="DOP853-compiled", progress=fractions.append)
    inside = [f for f in fractions if f < 1]
    assert fractions[-1] == 1.0 and len(inside) >= 20
    assert inside[0] > 0 and np.all(np.diff(inside) > 0)
    quiet = integrate_flow(system, problem.S0, 1e6, method="DOP853-compiled")
    assert tr.counters == quiet.counters
    np.testing.assert_array_equal(tr.S, quiet.S)


def test_separate_factors_run_in_the_loops_compiled_for_the_scores():
    """The factors' callbacks take the score flow's argument types: after a score run, DOP853-compiled
    and Rodas4P2-compiled run the separate system with no new loop, and agree with solve_ivp."""
    from attnflow.solvers import rosenbrock

    problem = make_problem(features={"kind": "orthonormal", "K": 2}, task={"kind": "linear"})
    scores = problem.score_system()
    system = SeparateSystem(scores, h=4)
    start = lazy_start(np.eye(2), 2.0)
    for method, reference, loops in (("DOP853-compiled", "DOP853", integrator.dispatchers),
                                     ("Rodas4P2-compiled", "Radau", rosenbrock.dispatchers)):
        integrate_flow(scores, problem.S0, 10.0, method=method, n_out=5)
        before = loops()
        tr = integrate_flow(system, start, 10.0, method=method, n_out=20, rtol=1e-10, atol=1e-12)
        assert loops() == before and len(before) in (2, 4, 6)    # also the finite prompt's and the noisy model's
        assert tr.status in ("finished", "t_end") and tr.message.startswith("reached t_end")
        ref = integrate_flow(system, start, 10.0, method=reference, n_out=20, rtol=1e-10, atol=1e-12)
        assert np.abs(tr.state[-1] - ref.state[-1]).max() <= 1e-7 * np.abs(ref.state[-1]).max()


def test_parameters_are_runtime_arguments_nothing_recompiles():
    """One compiled loop per prompt model serves every problem.  The large-prompt limit and finite N
    are two argument types (the kernels' prompt argument is None at N = ∞, so its compiled code
    leaves the finite-prompt kernels out): a start and a run each.  After those, problems with
    other parameters, another K (3, 6), another N, the query token, and the hand-written kernels
    instead of the generated ones add no loop and no signature to them or to the kernels."""
    from attnflow.solvers import ScoreSystem, kernels

    systems = []

    def run(problem, system=None):
        system = system or problem.score_system()
        tr = integrate_flow(system, problem.S0, 100.0, method="DOP853-compiled", n_out=10)
        assert tr.status in ("finished", "t_end")          # reached t_end (near convergence or not)
        systems.append(system)

    def counts():
        loops = integrator.dispatchers()
        kernel_sets = {id(s.kernels): s.kernels for s in systems}.values()
        return len(loops), [len(d.signatures) for d in loops], {
            (k.__name__, name): len(getattr(k, name).signatures) for k in kernel_sets
            for name in ("flow_rhs", "event_values", "column_flow_rhs", "column_event_values")}

    run(_sharp())
    loops, signatures, _ = counts()
    # A start and a run, one signature each, for the scores' argument types (and as many for the
    # noisy model's and the finite prompt's, if an earlier test of this session ran them).
    assert loops in (2, 4, 6) and set(signatures) == {1}
    run(make_problem(features={"kind": "simplex", "K": 4, "d": 3}, task={"kind": "single-index", "L": 0.7}))
    run(make_problem(features={"kind": "random-unit", "K": 6, "d": 4, "seed": 3}, task={"kind": "linear"}))
    sharp = _sharp()
    run(sharp, ScoreSystem(sharp.score_system().G, sharp.F, sharp.p, kernels=kernels))
    assert counts()[:2] == (loops, signatures)
    run(_finite(False))
    finite_loops = counts()
    assert finite_loops[0] - loops in (0, 2) and set(finite_loops[1]) == {1}
    # At most N = ∞ and finite N per kernel; 0 for flow_rhs and event_values if only K ≤ 8 ran at N = ∞
    # (the column callbacks) and this process ran no finite N before.
    assert set(finite_loops[2].values()) <= {0, 1, 2}
    run(_finite(True))
    run(make_problem(features={"kind": "random-unit", "K": 6, "d": 4, "seed": 4}, task={"kind": "linear"}))
    run(make_problem(features={"kind": "random-unit", "K": 3, "d": 3, "seed": 5}, task={"kind": "linear"},
                     prompt={"N": 9}))
    assert counts() == finite_loops


def _separate(N):
    from attnflow.solvers.separate import random_factors

    problem = _finite(False) if N else _sharp()
    system = SeparateSystem(problem.score_system(), h=3 if N else 2)
    V = problem.features.V
    return system, tuple(W @ V.T for W in random_factors(system.h, V.shape[1], 1.0, seed=2))


def _noisy():
    from attnflow.solvers.noisy import NoisySystem

    rng = np.random.default_rng(5)
    V = rng.standard_normal((3, 2))
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    return NoisySystem(V, np.array([0.5, 0.3, 0.2]), sigma=1.0, noise=0.2, nodes=6), 0.1 * rng.standard_normal((2, 2))


@pytest.mark.parametrize("method", ["DOP853-compiled", "Rodas4P2-compiled"])
@pytest.mark.parametrize("make,t_end", [(lambda: _separate(None), 2e3), (lambda: _separate(12), 1e3),
                                        (_noisy, 1e3)], ids=["separate-large-N", "separate-finite-N", "noisy"])
def test_other_systems_match_radau(make, t_end, method):
    """The separate factors and the noisy model through the compiled methods: the whole output grid of
    the state against solve_ivp Radau (analytic Jacobian) at rtol 1e-10, atol 1e-12, to 1e-8 of the
    largest state entry; the crossing times to relative 1e-8."""
    system, start = make()
    rtol, atol, eps = 1e-10, 1e-12, (0.1, 1e-2)
    tr = integrate_flow(system, start, t_end, method=method, rtol=rtol, atol=atol, n_out=60, eps=eps)
    assert tr.status in ("finished", "t_end") and tr.t[-1] == t_end and len(tr.t) == 60
    y0 = system.flatten(start)
    sol = solve_ivp(lambda t, y: system.flat_rhs(y), (0, t_end), y0, method="Radau", rtol=rtol, atol=atol,
                    jac=lambda t, y: system.flat_jacobian(y), dense_output=True)
    reference = sol.sol(tr.t).T
    scale = np.abs(reference).max(axis=1)
    assert np.all(np.abs(tr.state - reference).max(axis=1) <= 1e-8 * scale)
    radau = integrate_flow(system, start, t_end, method="Radau", rtol=rtol, atol=atol, eps=eps)
    compare = [(tr.crossings["t_half"], radau.crossings["t_half"])]
    compare += [(tr.crossings[k][e], radau.crossings[k][e]) for k in ("t_attention", "t_loss") for e in eps]
    assert sum(b not in (None, 0.0) for _, b in compare) >= 2
    for a, b in compare:
        assert (a is None) == (b is None)
        if b is not None:
            assert a == pytest.approx(b, rel=1e-8)
