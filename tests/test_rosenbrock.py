"""The compiled Rodas4P2 (:mod:`solvers.rosenbrock`): order, agreement with closed forms and solve_ivp,
events, stop_loss, counters, a stiff problem, no recompilation."""

import numpy as np
import pytest
from numba import njit
from scipy.integrate import solve_ivp
from scipy.linalg import expm

from attnflow.solvers import integrate_flow, integrator, rosenbrock
from attnflow.solvers.integrator import CompiledRun
from attnflow.solvers.rosenbrock import RosenbrockRun
from attnflow.solvers.separate import SeparateSystem, lazy_start

from .conftest import make_problem
from .test_integrator import _finite, _linear_problem, _linear_rhs, _no_events, _sharp, _slope
from .test_solvers import _two_feature_system, _two_feature_time

METHOD = "Rodas4P2-compiled"


# Test systems take the flow kernels' argument types (y, G, Ms, p, logp, prompt), as in test_integrator.
@njit(cache=True)
def _linear_jac(y, A, Ms, p, logp, prompt):
    return A.copy()


@njit(cache=True)
def _riccati_rhs(y, A, Ms, p, logp, prompt):
    """``y' = y²``: from y(0) = 1/2, y(t) = 1/(2 − t)."""
    return y * y


@njit(cache=True)
def _riccati_jac(y, A, Ms, p, logp, prompt):
    return np.diag(2.0 * y)


def _stiff_linear(lam):
    """``u' = −λ (u − c)``, ``c' = −s``, ``s' = c``: u relaxes within 1/λ onto the slow cosine c."""
    return np.array([[-lam, lam, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def _stiff_exact(lam, u0, t):
    """u(t) of :func:`_stiff_linear` from (u0, 1, 0)."""
    steady = lam * lam / (lam * lam + 1)
    return steady * np.cos(t) + lam / (lam * lam + 1) * np.sin(t) + (u0 - steady) * np.exp(-lam * t)


def _args(A):
    rest = (np.zeros((1, 1, 1)), np.zeros(1), np.zeros(1), np.zeros(1))
    return (np.ascontiguousarray(A, dtype=np.float64), *rest), rest


def _rodas(rhs, jac, A, y0, t_end, rtol, atol, **options):
    """A RosenbrockRun of ``rhs`` with ``A`` as its G argument and no events."""
    args, rest = _args(A)
    return RosenbrockRun(rhs, jac, _no_events, args, rest, y0, t_end, rtol, atol, **options)


def _fixed_step_errors(rhs, jac, A, y0, T, steps, exact):
    """Errors at T and at the mid-step points (the interpolant) with n fixed steps, for each n."""
    end_errors, mid_errors = [], []
    for n in steps:
        mid = (np.arange(n) + 0.5) * T / n
        run = _rodas(rhs, jac, A, y0, T, 1e-8, 1e-10, fixed_step=T / n)
        status, t_final, y_final, Y = run.run(np.concatenate([[0.0], mid, [T]]))
        assert status == integrator.FINISHED and t_final == T
        assert run.counts["nsteps"] == n and run.counts["nrejected"] == 0
        np.testing.assert_array_equal(Y[-1], y_final)
        end_errors.append(np.abs(y_final - exact(T)).max())
        mid_errors.append(np.abs(Y[1:-1] - np.array([exact(t) for t in mid])).max())
    return end_errors, mid_errors


def test_fixed_steps_converge_at_order_four_and_the_interpolant_too():
    """Global error at T and interpolated error at mid-step points for 10–80 fixed steps, on a
    linear system (4×4 rotating decaying modes) and on the nonlinear ``y' = y²``.

    Rodas4P2 is of order 4: the fitted slope of log error against log h is in [3.7, 4.4].  The
    interpolant is of order 3 locally (error h⁴) on top of the global error h⁴, so it too
    falls like h⁴: slope in [3.5, 4.4]."""
    A, y0 = _linear_problem()
    steps = np.array([10, 14, 20, 28, 40])
    end, mid = _fixed_step_errors(_linear_rhs, _linear_jac, A, y0, 4.0, steps, lambda t: expm(A * t) @ y0)
    assert 3.7 < _slope(4.0 / steps, end) < 4.4, end
    assert 3.5 < _slope(4.0 / steps, mid) < 4.4, mid
    steps = np.array([20, 28, 40, 56, 80])
    end, mid = _fixed_step_errors(_riccati_rhs, _riccati_jac, np.zeros((1, 1)), np.array([0.5]), 1.0, steps,
                                  lambda t: np.array([1.0 / (2.0 - t)]))
    assert 3.7 < _slope(1.0 / steps, end) < 4.4, end
    assert 3.5 < _slope(1.0 / steps, mid) < 4.4, mid


def test_adaptive_error_follows_the_tolerance_and_the_counters_add_up():
    """With atol = rtol/100, the global error at T = 20 stays below 100·rtol and falls as rtol does.
    Every step costs one Jacobian, each try one LU and five right-hand sides, each accepted step one
    more (f at the new state): njev = nsteps, nlu = nsteps + nrejected,
    nfev = 2 + 5·(nsteps + nrejected) + nsteps."""
    A, y0 = _linear_problem()
    T = 20.0
    errors = []
    for rtol in (1e-6, 1e-8, 1e-10, 1e-12):
        run = _rodas(_linear_rhs, _linear_jac, A, y0, T, rtol, rtol / 100)
        status, _, y_final, _ = run.run(np.array([0.0, T]))
        assert status == integrator.FINISHED
        errors.append(np.abs(y_final - expm(A * T) @ y0).max())
        assert errors[-1] < 100 * rtol * np.abs(y0).max()
        c = run.counts
        assert c["njev"] == c["nsteps"] and c["nlu"] == c["nsteps"] + c["nrejected"]
        assert c["nfev"] == 2 + 5 * (c["nsteps"] + c["nrejected"]) + c["nsteps"]
    assert np.all(np.diff(np.log10(errors)) < -1.0), errors     # > 10× less error per 100× tighter rtol


def test_a_stiff_problem_takes_far_fewer_steps_than_dop853():
    """``u' = −λ (u − cos t)`` (the cosine from a slow linear oscillator) to t = 10 from u = 0, at
    λ = 10⁴: DOP853's steps are bounded by stability (|hλ| ≲ 6, so > 10⁴ steps), Rodas4P2's by
    accuracy only: it takes < 1/50 of them, and at λ = 10⁶ no more than 1.2× as many as at 10⁴.
    The output grid meets the tolerance against the exact solution (Rodas4P2 within 10·rtol,
    DOP853 within 100·rtol)."""
    T, rtol, atol = 10.0, 1e-6, 1e-9
    y0 = np.array([0.0, 1.0, 0.0])
    grid = np.linspace(0.0, T, 41)
    steps = {}
    for name, lam, run, bound in (
            ("rodas", 1e4, _rodas(_linear_rhs, _linear_jac, _stiff_linear(1e4), y0, T, rtol, atol), 10 * rtol),
            ("rodas-stiffer", 1e6, _rodas(_linear_rhs, _linear_jac, _stiff_linear(1e6), y0, T, rtol, atol),
             10 * rtol),
            ("dop853", 1e4, CompiledRun(_linear_rhs, _no_events, *_args(_stiff_linear(1e4)), y0, T, rtol, atol),
             100 * rtol)):
        status, _, _, Y = run.run(grid)
        assert status == integrator.FINISHED
        assert np.abs(Y[1:, 0] - _stiff_exact(lam, 0.0, grid[1:])).max() < bound, name
        steps[name] = run.counts["nsteps"]
    assert steps["dop853"] > 10_000
    assert steps["rodas"] * 50 < steps["dop853"], steps
    assert steps["rodas-stiffer"] < 1.2 * steps["rodas"], steps


def test_flow_matches_the_closed_form_on_two_features():
    """K = 2 orthonormal features, linear task, S(0) = 0: the crossing times and the whole output
    grid (t(u(t)) = t) against the closed form t(u) to relative 1e-8."""
    sigma = 1.5
    t_of_u = _two_feature_time(sigma)
    eps = (1e-2, 1e-3)
    tr = integrate_flow(_two_feature_system(sigma), np.zeros((2, 2)), t_end=1e6, method=METHOD,
                        rtol=1e-12, atol=1e-14, eps=eps, n_out=60)
    assert tr.status == "finished"
    for e in eps:
        assert tr.crossings["t_attention"][e] == pytest.approx(t_of_u(e), rel=1e-8)
        assert tr.crossings["t_loss"][e] == pytest.approx(t_of_u(np.sqrt(e) / sigma), rel=1e-8)
    u = tr.attention[1:, 1, 0]
    np.testing.assert_allclose([t_of_u(x) for x in u], tr.t[1:], rtol=1e-8)


@pytest.mark.parametrize("make,t_end,rtol", [(_sharp, 1e4, 1e-12), (lambda: _finite(False), 1e3, 1e-10),
                                             (lambda: _finite(True), 2e4, 1e-10)],
                         ids=["large-N", "finite-N", "finite-N-query"])
def test_trajectories_and_crossings_match_radau(make, t_end, rtol):
    """The whole output grid against solve_ivp Radau (analytic Jacobian), both at rtol (1e-12 at N = ∞;
    1e-10 at finite N, where Radau takes 10–16 s at 1e-12) and atol = rtol/100: relative 1e-8 of the
    largest score; the crossing times against solve_ivp's events to relative 1e-8."""
    problem = make()
    system = problem.score_system()
    atol = rtol / 100
    eps = (0.1, 1e-2, 1e-3)      # 0.1: a loss level the query variant reaches (its attention caps below 1/2 here)
    tr = integrate_flow(system, problem.S0, t_end, method=METHOD, rtol=rtol, atol=atol, n_out=80, eps=eps)
    assert tr.status in ("finished", "t_end") and tr.t[-1] == t_end and len(tr.t) == 80   # reached t_end
    c = tr.counters
    assert c["njev"] == c["nsteps"] and c["nlu"] == c["nsteps"] + c["nrejected"]
    assert c["nfev"] == 2 + 5 * (c["nsteps"] + c["nrejected"]) + c["nsteps"]
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


def test_stop_loss_stops_at_the_level():
    """The terminal event: the loss at the final time equals stop_loss to 1e-10 relative, at
    solve_ivp's (Radau) stopping time to 1e-8; the grid is cut there and ends with the stop."""
    problem = _sharp()
    system = problem.score_system()
    stop = 1e-5
    tr = integrate_flow(system, problem.S0, 1e9, method=METHOD, stop_loss=stop, n_out=200, rtol=1e-11, atol=1e-13)
    ref = integrate_flow(system, problem.S0, 1e9, method="Radau", stop_loss=stop, rtol=1e-11, atol=1e-13)
    assert tr.status == "stop_loss" and tr.message == f"loss reached {stop:g} at t = {tr.t[-1]:.6g}"
    assert tr.loss[-1] == pytest.approx(stop, rel=1e-10)
    assert tr.t[-1] == pytest.approx(ref.t[-1], rel=1e-8)
    assert np.all(np.diff(tr.t) > 0) and np.all(tr.loss[:-1] > stop)
    assert tr.crossings["t_loss"][1e-4] < tr.t[-1]


def test_failures_are_reported_with_their_time():
    """``y' = y²`` from y(0) = 1 blows up at t = 1: a step-size underflow there, rows beyond left NaN."""
    run = _rodas(_riccati_rhs, _riccati_jac, np.zeros((1, 1)), np.array([1.0]), 3.0, 1e-8, 1e-10)
    status, t_final, _, Y = run.run(np.array([0.0, 0.5, 2.0, 3.0]))
    assert status == integrator.STEP_UNDERFLOW
    assert t_final == pytest.approx(1.0, abs=1e-6)
    assert np.isfinite(Y[1]).all() and np.isnan(Y[2:]).all()


def test_parameters_are_runtime_arguments_nothing_recompiles():
    """One compiled Rodas4P2 loop per prompt model serves every problem: after a run at K = 4 at
    N = ∞ and one at finite N (two argument types: the prompt is None at N = ∞), other parameters,
    another K, another N and the query token add no loop and no signature."""
    def run(problem):
        tr = integrate_flow(problem.score_system(), problem.S0, 100.0, method=METHOD, n_out=10)
        assert tr.status in ("finished", "t_end")

    run(_sharp())
    run(_finite(False))
    # A start and a run, one signature each, for each prompt model's argument types (and as many
    # for the noisy model's, if an earlier test of this session ran it).
    before = rosenbrock.dispatchers()
    assert len(before) in (4, 6) and all(len(d.signatures) == 1 for d in before)
    run(make_problem(features={"kind": "simplex", "K": 4, "d": 3}, task={"kind": "single-index", "L": 0.7}))
    run(_finite(True))
    run(make_problem(features={"kind": "random-unit", "K": 6, "d": 4, "seed": 3}, task={"kind": "linear"}))
    assert rosenbrock.dispatchers() == before and all(len(d.signatures) == 1 for d in before)


def _same_run(a, b):
    assert a.counters == b.counters and a.message == b.message
    np.testing.assert_array_equal(a.S, b.S)


def test_auto_is_the_compiled_dop853_where_the_flow_is_not_stiff():
    """method = "auto" (the default of integrate_flow and of training.method) runs DOP853-compiled, step
    for step, at N = ∞, at finite N with the query in the softmax and on separate factors at N = ∞;
    the configuration offers exactly the methods integrate_flow knows."""
    from attnflow.dynamics.problem import config
    from attnflow.solvers.flow import METHODS

    assert set(config.METHODS) == set(METHODS) and config.default().training.method == "auto"
    for problem in (_sharp(), _finite(True)):
        _same_run(integrate_flow(problem.score_system(), problem.S0, 1e3, n_out=30),
                  integrate_flow(problem.score_system(), problem.S0, 1e3, method="DOP853-compiled", n_out=30))
    separate = SeparateSystem(make_problem(features={"kind": "orthonormal", "K": 2}, task={"kind": "linear"}).score_system(),
                              h=4)
    start = lazy_start(np.eye(2), 2.0)
    tr = integrate_flow(separate, start, 10.0, method="auto", n_out=20)
    _same_run(tr, integrate_flow(separate, start, 10.0, method="DOP853-compiled", n_out=20))


def test_auto_takes_rodas_where_the_flow_becomes_stiff():
    """Finite N = 2 without the query in the softmax: the loss has a floor, reached at finite scores,
    and the flow converges to them exponentially (the Jacobian's eigenvalues tend to a nonzero limit),
    so it is stiff at late times.  auto runs Rodas4P2-compiled (step for step): to t = 10⁷ in < 1000
    steps, while DOP853-compiled needs more than 5× as many already to t = 10⁶."""
    problem = make_problem(features={"kind": "simplex", "K": 3, "d": 2}, prompt={"N": 2})
    system = problem.score_system()
    auto = integrate_flow(system, problem.S0, 1e7, n_out=30)
    _same_run(auto, integrate_flow(system, problem.S0, 1e7, method=METHOD, n_out=30))
    assert auto.status == "finished" and auto.counters["nsteps"] < 1000
    J = system.flat_jacobian(system.flatten(auto.S[-1]))
    assert 1e7 * np.abs(np.linalg.eigvals(J).real).max() > 1e4             # stiff: (1 + t)·max|Re λ| ≫ 1
    explicit = integrate_flow(system, problem.S0, 1e6, method="DOP853-compiled", n_out=30)
    assert explicit.counters["nsteps"] > 5 * auto.counters["nsteps"], (explicit.counters, auto.counters)
