"""Separate key and query matrices: the reduced factor dynamics against the full parameters,
finite differences, the merged limit and training on sampled prompts."""

import numpy as np
import pytest

from attnflow.solvers import ScoreSystem, integrate_flow, iterate_gd
from attnflow.solvers.references import full_model
from attnflow.solvers.references.sampled import train_sampled
from attnflow.solvers.separate import SeparateSystem, lazy_start, random_factors

from .conftest import central_differences, make_problem, random_system_arrays


@pytest.mark.parametrize("N", [np.inf, 6])
def test_jacobian_equals_finite_differences(N):
    V, F, p = random_system_arrays(3, 4, seed=1)
    system = SeparateSystem(ScoreSystem(V @ V.T, F, p, N=N), h=2)
    y = system.flatten([W @ V.T for W in random_factors(2, 4, 1.5, seed=3)])
    J = system.flat_jacobian(y)
    ref = central_differences(system.flat_rhs, y, rel_step=1e-6)
    assert np.abs(J - ref).max() <= 1e-7 * np.abs(ref).max()


def test_reduced_gd_equals_gd_on_the_full_key_and_query_matrices():
    """(B, C) GD against GD on W_K, W_Q (h×d) with the full d×d population gradient, 1e-11; K > d too."""
    for K, d, h in ((3, 4, 2), (4, 3, 5)):
        V, F, p = random_system_arrays(K, d, seed=K)
        rng = np.random.default_rng(0)
        WK, WQ = 0.7 * rng.standard_normal((2, h, d))
        eta, steps = 0.3, 40
        reduced = iterate_gd(SeparateSystem(ScoreSystem(V @ V.T, F, p), h), (WK @ V.T, WQ @ V.T),
                                      eta, steps, n_out=steps + 1)
        for _ in range(steps):
            grad = full_model.gradient(WK.T @ WQ, V, F, p)
            WK, WQ = WK - eta * WQ @ grad.T, WQ - eta * WK @ grad
        S_full = V @ WK.T @ WQ @ V.T
        assert np.abs(reduced.S[-1] - S_full).max() <= 1e-11 * np.abs(S_full).max()
        assert reduced.state.shape == (steps + 1, 2 * h * K)


def test_flow_from_a_small_random_start_escapes_the_saddle_and_converges():
    problem = make_problem(features={"kind": "simplex", "K": 3, "d": 2},
                           model={"parametrization": "separate", "head_dim": 2, "init_scale": 0.01})
    system = problem.system()
    tr = integrate_flow(system, problem.start, 1e6, eps=(1e-2,))
    assert tr.success and tr.loss[-1] < 1e-4 * tr.loss[0]
    assert np.all(np.diagonal(tr.final_attention) > 0.99)
    merged = integrate_flow(problem.score_system(), np.zeros((3, 3)), 1e6, eps=(1e-2,))
    # From a small start the factors first have to grow: attention 1/2 comes later than merged.
    assert tr.crossings["t_half"] > 2 * merged.crossings["t_half"]


def test_merged_flow_is_the_lazy_limit():
    """B₀ = α[Vᵀ; 0], C₀ = α[0; Vᵀ]: S(τ / 2α²) → merged S(τ) with error O(α⁻⁴) (ratio 16 per doubling)."""
    V, F, p = random_system_arrays(3, 3, seed=2)
    scores = ScoreSystem(V @ V.T, F, p)
    tau = np.array([0.5, 2.0, 8.0])
    merged = [integrate_flow(scores, np.zeros((3, 3)), t, method="DOP853", rtol=1e-11, atol=1e-13).S[-1] for t in tau]
    errors = []
    for alpha in (4.0, 8.0, 16.0):
        system = SeparateSystem(scores, 2 * V.shape[1])
        S = [integrate_flow(system, lazy_start(V, alpha), t / (2 * alpha**2), method="DOP853",
                            rtol=1e-11, atol=1e-13).S[-1] for t in tau]
        errors.append(max(np.abs(a - b).max() for a, b in zip(S, merged)))
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    np.testing.assert_allclose(ratios, 16.0, rtol=0.05)
    assert errors[-1] < 1e-4


def test_bad_factors_are_one_clear_error():
    V, F, p = random_system_arrays(3, 3, seed=2)
    system = SeparateSystem(ScoreSystem(V @ V.T, F, p), 2)
    with pytest.raises(ValueError, match="B0: expected a finite 2×3 matrix"):
        system.flatten((np.zeros((3, 3)), np.zeros((2, 3))))
    with pytest.raises(ValueError, match="h: expected a head dimension"):
        SeparateSystem(system.scores, 0)


@pytest.mark.slow
def test_sampled_training_of_both_matrices_tracks_the_reduced_gd():
    """The real network, W_K and W_Q trained on sampled prompts (N = 1024), within 4 SE of the reduced GD;
    the merged GD from the same Q₀ is more than 10 SE away."""
    problem = make_problem(features={"kind": "random-unit", "K": 3, "d": 3, "seed": 5}, task={"kind": "linear"},
                           model={"parametrization": "separate", "head_dim": 2, "init_scale": 1.0, "seed": 3})
    system = problem.system()
    eta, steps, checkpoints = 1.0, 30, [10, 20, 30]
    expected = iterate_gd(system, problem.start, eta, steps, n_out=steps + 1).S[checkpoints]
    WK, WQ = problem.factors
    runs = np.array([train_sampled(problem.features.V, problem.p, 1024, problem.function_class.sample_labels,
                                   (WK, WQ), eta, steps, batch=200, seed=seed, record_at=checkpoints)["S"]
                     for seed in range(16)])
    mean, se = runs.mean(axis=0), runs.std(axis=0, ddof=1) / 4
    merged = iterate_gd(problem.score_system(), problem.S0, eta, steps, n_out=steps + 1).S[checkpoints]
    assert np.abs(merged - expected).max() > 10 * se.max()
    assert np.all(np.abs(mean - expected) <= 4 * se)


def test_diverging_step_size_is_reported_with_the_state_that_broke_the_run():
    V, F, p = random_system_arrays(3, 3, seed=2)
    system = SeparateSystem(ScoreSystem(V @ V.T, F, p), 2)
    start = [W @ V.T for W in random_factors(2, 3, 1.0, seed=1)]
    tr = iterate_gd(system, start, eta=1e4, steps=100)
    assert tr.status in ("score-limit", "non-finite") and not tr.success
    assert len(tr.state) == len(tr.S) == len(tr.loss) and tr.counters["iterations"] < 100
    np.testing.assert_allclose(system.scores_of(tr.state[-1])[0], tr.S[-1])


@pytest.mark.parametrize("N,include_query", [(np.inf, False), (7, False), (7, True)])
def test_compiled_factor_kernels_equal_the_numpy_flow(N, include_query):
    """The kernel set's separate_rhs / separate_jacobian / separate_event_values against
    SeparateSystem's NumPy flat_rhs / flat_jacobian / flat_event_values, 1e-12 relative, several h and K."""
    from attnflow.solvers import kernels

    for K, d, h in ((2, 3, 1), (3, 4, 2), (4, 3, 5), (5, 5, 3)):
        V, F, p = random_system_arrays(K, d, seed=10 * K + h)
        scores = ScoreSystem(V @ V.T, F, p, N=N, include_query=include_query)
        system = SeparateSystem(scores, h)
        rng = np.random.default_rng(h)
        y = system.flatten((rng.standard_normal((h, K)), 1.5 * rng.standard_normal((h, K))))
        rhs = kernels.separate_rhs(y, *scores.args)
        ref = system.flat_rhs(y)
        assert rhs.shape == ref.shape and np.abs(rhs - ref).max() <= 1e-12 * np.abs(ref).max()
        J = kernels.separate_jacobian(y, *scores.args)
        ref = system.flat_jacobian(y)
        assert J.shape == ref.shape and np.abs(J - ref).max() <= 1e-12 * np.abs(ref).max()
        assert kernels.separate_event_values(y, *scores.args[1:]) == pytest.approx(system.flat_event_values(y),
                                                                                    rel=1e-12)
