"""Phase detection and step sizes against closed forms and known behaviour."""

import numpy as np
import pytest
from scipy.optimize import brentq

from attnflow.dynamics.analysis import phases
from attnflow.solvers import integrate_flow, iterate_gd

from .conftest import make_problem
from .test_solvers import _two_feature_system, _two_feature_time


def test_crossing_time_is_exact_for_power_laws():
    t = np.concatenate([[0.0], np.geomspace(1e-2, 1e6, 50)])
    y = 3.0 / np.maximum(t, 1e-300)          # y = 3/t
    assert phases.crossing_time(t, y, 1e-3) == pytest.approx(3e3, rel=1e-12)
    assert phases.crossing_time(t, y, 1e-9) is None
    # Non-positive values fall back to linear interpolation in t, exact for a straight line.
    assert phases.crossing_time(t, t - 7.0, 0.0, direction=+1) == pytest.approx(7.0, rel=1e-12)


def test_crossings_on_the_closed_form_two_feature_flow():
    """From the recorded grid alone: attention 1 − ε at t(u = ε), within the interpolation error of 400 points."""
    sigma = 1.0
    t_of_u = _two_feature_time(sigma)
    tr = integrate_flow(_two_feature_system(sigma), np.zeros((2, 2)), 1e7, rtol=1e-10, atol=1e-12)
    for eps in (1e-1, 1e-2, 1e-3):
        assert phases.per_query_times(tr, 1 - eps)[0] == pytest.approx(t_of_u(eps), rel=2e-3)
        assert phases.crossing_time(tr.t, tr.loss, eps**2) == pytest.approx(t_of_u(eps), rel=2e-3)


def test_phase_boundary_of_a_known_curve():
    """ℒ = 1/(1 + t³) + 1e-3/t: the boundary is where the exact slope returns to −1.25."""
    def loss(t):
        return 1 / (1 + t**3) + 1e-3 / t

    def slope(t):
        return t * (-3 * t**2 / (1 + t**3) ** 2 - 1e-3 / t**2) / loss(t)

    t = np.geomspace(1e-3, 1e6, 2000)
    t_min = t[np.argmin([slope(x) for x in t])]
    expected = brentq(lambda x: slope(x) + 1.25, t_min, 1e6)
    assert phases.phase_boundary(t, loss(t)) == pytest.approx(expected, rel=1e-2)
    assert phases.phase_boundary(t, 1 / (1 + t)) is None      # never faster than 1/t


def test_flow_has_a_fast_then_a_slow_phase(simplex_sharp):
    tr = integrate_flow(simplex_sharp.score_system(), simplex_sharp.S0, 1e8)
    boundary = phases.phase_boundary(tr.t, tr.loss)
    assert tr.crossings["t_half"] < boundary < tr.t[-1]


def _finite_optimum():
    """K = 3 features on a line (d = 1): query 3 cannot attend to itself, so the optimum is finite."""
    return make_problem(features={"kind": "explicit", "matrix": [[1.0], [-1.0], [0.5]]}, task={"kind": "linear"})


def test_stable_step_separates_converging_from_diverging_gd_at_a_finite_optimum():
    """GD started near the optimum S* converges for η = 0.9 · 2/λ_max(S*) and leaves it for 1.1 ·."""
    problem = _finite_optimum()
    system = problem.score_system()
    flow = integrate_flow(system, problem.S0, 1e7)
    steps = phases.step_sizes(system, flow)
    S_star = flow.S[-1]
    start = S_star + 1e-3 * np.outer(problem.features.V[:, 0], problem.features.V[:, 0])   # stays in range(V⊗V)
    for factor, converges in ((0.9, True), (1.1, False)):
        gd = iterate_gd(system, start, factor * steps.final, 3000)
        distance = np.abs(gd.S[-1] - S_star).max()
        assert (distance < 1e-6) == converges, (factor, distance)
    assert steps.minimum < steps.final          # the transient near S = 0 is more curved than the optimum


def test_step_sizes_scale_like_one_over_L_squared():
    """f → λf multiplies the Hessian by λ²: the stable step divides by λ²."""
    base = make_problem(features={"kind": "simplex", "K": 4, "d": 3}, task={"kind": "single-index", "L": 1.0})
    sharp = make_problem(features={"kind": "simplex", "K": 4, "d": 3}, task={"kind": "single-index", "L": 10.0})
    a = base.score_system().stable_step(base.S0)
    b = sharp.score_system().stable_step(sharp.S0)
    assert a / b == pytest.approx(100.0, rel=1e-10)


def test_gd_oscillation_counter_sees_oscillations():
    """Near the finite optimum with η above the limit the log-odds flip every step."""
    problem = _finite_optimum()
    system = problem.score_system()
    flow = integrate_flow(system, problem.S0, 1e7)
    final = phases.step_sizes(system, flow).final
    start = flow.S[-1] + 1e-3 * np.outer(problem.features.V[:, 0], problem.features.V[:, 0])
    calm = iterate_gd(system, start, 0.3 * final, 200)
    wild = iterate_gd(system, start, 1.1 * final, 200)
    assert calm.counters["attention_oscillations"] == 0
    assert wild.counters["max_oscillations_per_feature"] >= 150
