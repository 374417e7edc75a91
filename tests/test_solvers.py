"""Flow and GD solvers: an analytic solution, counters, monotonicity, convergence order, symmetries."""

import numpy as np
import pytest
import sympy as sp

from attnflow.solvers import ScoreSystem, integrate_flow, iterate_gd
from attnflow.solvers.flow import METHODS

from .conftest import make_problem


def _two_feature_time(sigma):
    """t(u) for K = 2 orthonormal features, linear task, uniform p, S(0) = 0.

    u = off-target attention solves du/dt = −2σ²(1−u)²u³ with u(0) = 1/2, so
    t(u) = ∫_u^{1/2} dv / (2σ²(1−v)²v³), integrated by SymPy in closed form.
    """
    v, u = sp.symbols("v u", positive=True)
    antiderivative = sp.integrate(1 / ((1 - v) ** 2 * v**3), v)
    expr = (antiderivative.subs(v, sp.Rational(1, 2)) - antiderivative.subs(v, u)) / (2 * sigma**2)
    fn = sp.lambdify(u, expr, "mpmath")
    # SymPy's antiderivative has log(v − 1); the two iπ parts cancel in the difference.
    return lambda x: float(sp.re(fn(x)))


def _two_feature_system(sigma):
    return make_problem(features={"kind": "orthonormal", "K": 2},
                        task={"kind": "linear", "sigma": sigma}).score_system()


@pytest.mark.parametrize("method", METHODS)
def test_flow_matches_closed_form_on_two_features(method):
    sigma = 1.5
    t_of_u = _two_feature_time(sigma)
    eps = (1e-2, 1e-3)
    tr = integrate_flow(_two_feature_system(sigma), np.zeros((2, 2)), t_end=1e6, method=method,
                        rtol=1e-10, atol=1e-12, eps=eps, n_out=60)
    assert tr.status == "finished"
    # Attention 1 − ε is reached when u = ε; loss ε when σ²u² = ε.
    for e in eps:
        assert tr.crossings["t_attention"][e] == pytest.approx(t_of_u(e), rel=1e-6)
        assert tr.crossings["t_loss"][e] == pytest.approx(t_of_u(np.sqrt(e) / sigma), rel=1e-6)
    # The whole output grid: t(u(t)) = t, with u read off the scores.
    u = tr.attention[1:, 1, 0]
    t_back = np.array([t_of_u(x) for x in u])
    np.testing.assert_allclose(t_back, tr.t[1:], rtol=1e-6)
    np.testing.assert_allclose(tr.loss, sigma**2 * tr.attention[:, 1, 0] ** 2, rtol=1e-12)


def test_late_phase_loss_decays_like_one_over_four_t():
    """From du/dt ≈ −2σ²u³: u ≈ 1/(2σ√t), so ℒ = σ²u² ≈ 1/(4t) whatever σ."""
    for sigma in (0.5, 2.0):
        tr = integrate_flow(_two_feature_system(sigma), np.zeros((2, 2)), t_end=1e7, rtol=1e-10, atol=1e-14)
        assert tr.t[-1] * tr.loss[-1] == pytest.approx(0.25, rel=2e-3)


@pytest.mark.parametrize("method", METHODS)
def test_flow_counters_and_status(simplex_sharp, method):
    tr = integrate_flow(simplex_sharp.score_system(), simplex_sharp.S0, t_end=1e3, method=method, n_out=50)
    assert tr.success and tr.status == "finished"
    c = tr.counters
    assert c["nfev"] >= c["nsteps"] > 0
    if method in ("Radau", "BDF"):
        assert c["njev"] >= 1 and c["nlu"] >= 1
    if method in ("RK45", "DOP853"):
        assert c["njev"] == 0 and c["nlu"] == 0
    assert len(tr.t) == 50 and tr.t[0] == 0 and tr.t[-1] == pytest.approx(1e3)
    assert np.all(np.diff(tr.t) > 0)


def test_methods_agree(simplex_sharp):
    finals = [integrate_flow(simplex_sharp.score_system(), simplex_sharp.S0, t_end=1e3, method=m,
                             rtol=1e-10, atol=1e-12).S[-1] for m in METHODS]
    for S in finals[1:]:
        np.testing.assert_allclose(S, finals[0], rtol=1e-6)


def test_loss_never_increases_along_the_flow():
    problem = make_problem(features={"kind": "random-unit", "K": 6, "d": 4, "seed": 3},
                           task={"kind": "frequency", "L": 2.0}, prompt={"p": [0.3, 0.2, 0.2, 0.1, 0.1, 0.1]})
    tr = integrate_flow(problem.score_system(), problem.S0, t_end=1e6, n_out=400)
    assert np.all(np.diff(tr.loss) <= 1e-10 * tr.loss[0])
    assert tr.loss[-1] < 1e-2 * tr.loss[0]


def test_stop_loss_ends_the_flow_at_the_level(simplex_sharp):
    tr = integrate_flow(simplex_sharp.score_system(), simplex_sharp.S0, t_end=1e9, stop_loss=1e-5)
    assert tr.status == "stop_loss"
    assert tr.loss[-1] == pytest.approx(1e-5, rel=1e-6)
    assert tr.t[-1] < 1e9


def test_flow_progress_advances_during_the_integration(simplex_sharp):
    """The report callback gets increasing fractions strictly inside (0, 1) while solve_ivp runs, then 1.
    (LSODA: the compiled methods report after the steps that pass fixed times, test_integrator.)"""
    fractions = []
    integrate_flow(simplex_sharp.score_system(), simplex_sharp.S0, 1e6, method="LSODA", progress=fractions.append)
    inside = [f for f in fractions if f < 1]
    assert fractions[-1] == 1.0 and len(inside) >= 50
    assert inside[0] > 0 and np.all(np.diff(inside) > 0)
    # Spread over the run, not bunched at either end (the bar moves throughout).
    assert np.histogram(inside, bins=5, range=(0, 1))[0].min() >= 5


def test_flow_progress_does_not_depend_on_the_unit_of_time():
    """f → λf runs the same flow λ² times faster: the progress, in log time from the initial time scale,
    is the same sequence.  (In log(1 + t) a sharp problem with t_end = 1 sat near 0 % for most of the run.)
    LSODA: its steps scale with the time unit; SciPy's DOP853 first step (copied by the compiled one) does
    not (an absolute 1e-6 from S = 0), so its first reports differ."""
    runs = []
    for L in (1.0, 100.0):
        problem = make_problem(features={"kind": "simplex", "K": 4, "d": 3}, task={"kind": "single-index", "L": L})
        fractions = []
        integrate_flow(problem.score_system(), problem.S0, 1e4 / L**2, method="LSODA", progress=fractions.append)
        runs.append(np.array(fractions))
    assert len(runs[0]) == len(runs[1])
    np.testing.assert_allclose(runs[1], runs[0], atol=1e-4)
    assert np.median(runs[1]) > 0.3


def test_gd_converges_to_the_flow_at_first_order(simplex_sharp):
    """GD at time T = η·n differs from the flow by O(η): halving η halves the error."""
    system, T = simplex_sharp.score_system(), 20.0
    flow = integrate_flow(system, simplex_sharp.S0, t_end=T, rtol=1e-12, atol=1e-12).S[-1]
    errors = []
    for eta in (0.04, 0.02, 0.01):
        gd = iterate_gd(system, simplex_sharp.S0, eta, int(round(T / eta)), n_out=10)
        errors.append(np.abs(gd.S[-1] - flow).max())
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all((ratios > 1.9) & (ratios < 2.1)), ratios
    assert errors[-1] < 1e-2


def test_gd_records_and_counts(simplex_sharp):
    gd = iterate_gd(simplex_sharp.score_system(), simplex_sharp.S0, 1.0, 5000, n_out=100)
    assert gd.status == "finished" and gd.counters["iterations"] == 5000
    assert gd.iteration[0] == 0 and gd.iteration[-1] == 5000 and np.all(np.diff(gd.iteration) > 0)
    np.testing.assert_allclose(gd.t, 1.0 * gd.iteration)
    # Crossing iterations are exact: the recorded loss just before and at the crossing.
    full = iterate_gd(simplex_sharp.score_system(), simplex_sharp.S0, 1.0, 5000, n_out=10**6)
    for e, t in gd.crossings["t_loss"].items():
        it = int(round(t))
        assert full.loss[it] <= e < full.loss[it - 1]


def _diverging_problem():
    return make_problem(features={"kind": "random-unit", "K": 4, "d": 3, "seed": 1},
                        task={"kind": "single-index", "L": 2.0}, prompt={"p": [0.4, 0.3, 0.2, 0.1]})


@pytest.mark.parametrize("factor,status", [(300, "not-converging"), (3000, "score-limit")])
def test_gd_reports_steps_that_do_not_converge(factor, status):
    problem = _diverging_problem()
    system = problem.score_system()
    gd = iterate_gd(system, problem.S0, factor * system.stable_step(problem.S0), 2000)
    assert gd.status == status and not gd.success
    # The message states the stopping reason with the numbers of this trajectory.
    it = gd.counters["iterations"]
    assert gd.iteration[-1] == it
    if status == "not-converging":
        assert it == 2000
        assert gd.message == (f"the loss after 2000 iterations ({gd.loss[-1]:.3g}) exceeds the initial loss "
                              f"({gd.loss[0]:.3g}): the step size is too large to converge")
        assert gd.loss[-1] > gd.loss[0]
    else:
        assert 0 < it < 2000
        assert gd.message == f"gradient descent diverged at iteration {it}: a score exceeded 700"
        assert np.abs(gd.S[-1]).max() > 700 and np.abs(gd.S[-2]).max() <= 700   # the breaking state is kept


def test_gd_with_half_the_stable_step_converges():
    problem = _diverging_problem()
    system = problem.score_system()
    gd = iterate_gd(system, problem.S0, 0.5 * system.stable_step(problem.S0), 20000)
    assert gd.success and gd.counters["loss_increases"] == 0 and gd.loss[-1] < 1e-2 * gd.loss[0]


@pytest.mark.parametrize("lam", [0.1, 3.0])
def test_scaling_f_by_lambda_rescales_time_by_lambda_squared(lam):
    """f → λf: S_λ(t) = S(λ²t) in the flow, and GD with η/λ² gives the same iterates."""
    base = make_problem(features={"kind": "random-unit", "K": 4, "d": 3, "seed": 2},
                        task={"kind": "single-index", "L": 1.0, "link": "tanh"})
    scaled = make_problem(features={"kind": "random-unit", "K": 4, "d": 3, "seed": 2},
                          task={"kind": "single-index", "L": lam, "link": "tanh"})
    np.testing.assert_allclose(scaled.F, lam**2 * base.F, rtol=1e-12)
    T = 5e4   # beyond t_half ≈ 1.8e4 of the base problem
    a = integrate_flow(base.score_system(), base.S0, t_end=T, rtol=1e-11, atol=1e-12)
    b = integrate_flow(scaled.score_system(), scaled.S0, t_end=T / lam**2, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(b.S[-1], a.S[-1], rtol=1e-7, atol=1e-9)
    assert b.crossings["t_half"] * lam**2 == pytest.approx(a.crossings["t_half"], rel=1e-6)
    ga = iterate_gd(base.score_system(), base.S0, 2.0, 300)
    gb = iterate_gd(scaled.score_system(), scaled.S0, 2.0 / lam**2, 300)
    np.testing.assert_allclose(gb.S, ga.S, rtol=1e-10, atol=1e-12)


def test_permuting_features_permutes_scores():
    rng = np.random.default_rng(0)
    V = rng.standard_normal((5, 3))
    values = rng.standard_normal((3, 5))
    p = np.array([0.3, 0.25, 0.2, 0.15, 0.1])
    perm = np.array([3, 0, 4, 1, 2])

    def run(V, values, p):
        problem = make_problem(features={"kind": "explicit", "matrix": V.tolist()},
                               task={"kind": "finite", "functions": values.tolist()}, prompt={"p": p.tolist()})
        system = problem.score_system()
        return (integrate_flow(system, problem.S0, t_end=100.0, rtol=1e-11, atol=1e-12).S[-1],
                iterate_gd(system, problem.S0, 0.3, 200).S[-1])

    flow, gd = run(V, values, p)
    flow_p, gd_p = run(V[perm], values[:, perm], p[perm])
    np.testing.assert_allclose(flow_p, flow[np.ix_(perm, perm)], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(gd_p, gd[np.ix_(perm, perm)], rtol=1e-12, atol=1e-13)


def test_orthonormal_queries_evolve_independently():
    """With G = I each query column obeys its own equation: changing column 0 leaves column 1's flow."""
    system = make_problem(features={"kind": "orthonormal", "K": 3}, task={"kind": "linear"}).score_system()
    S0 = np.zeros((3, 3))
    S1 = S0.copy()
    S1[:, 0] = [2.0, -1.0, 0.5]
    a = integrate_flow(system, S0, t_end=50.0, rtol=1e-11, atol=1e-12).S[-1]
    b = integrate_flow(system, S1, t_end=50.0, rtol=1e-11, atol=1e-12).S[-1]
    np.testing.assert_allclose(a[:, 1:], b[:, 1:], rtol=1e-8)
    assert np.abs(a[:, 0] - b[:, 0]).max() > 0.1


def test_solver_arguments_are_checked():
    system = ScoreSystem(np.eye(2), np.eye(2), [0.5, 0.5])
    with pytest.raises(ValueError, match="method"):
        integrate_flow(system, np.zeros((2, 2)), 1.0, method="Euler")
    with pytest.raises(ValueError, match="t_end"):
        integrate_flow(system, np.zeros((2, 2)), -1.0)
    with pytest.raises(ValueError, match="S0"):
        integrate_flow(system, np.zeros((3, 3)), 1.0)
    with pytest.raises(ValueError, match="eta"):
        iterate_gd(system, np.zeros((2, 2)), float("nan"), 10)
