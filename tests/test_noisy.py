"""Token noise: the full-parameter model with the query-noise expectation, against the noise-free
model, finite differences, Monte Carlo and training on sampled noisy prompts."""

import numpy as np
import pytest

from attnflow.solvers import ScoreSystem, integrate_flow
from attnflow.solvers.references import full_model
from attnflow.solvers.gd import iterate_gd
from attnflow.solvers.noisy import NoisySystem, query_noise_rule
from attnflow.solvers.references.sampled import train_sampled

from .conftest import central_differences, make_problem


def _case(K=3, d=3, seed=0):
    rng = np.random.default_rng(seed)
    V = rng.standard_normal((K, d))
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    p = rng.dirichlet(np.ones(K) * 3)
    Q = rng.standard_normal((d, d))
    return V, p, Q


def test_without_noise_it_is_the_noise_free_model():
    """ν = 0: loss, gradient and attention equal the full d×d model with F = σ²G, 1e-13."""
    V, p, Q = _case()
    system = NoisySystem(V, p, sigma=1.3, noise=0.0)
    F = 1.3 ** 2 * V @ V.T
    assert system.loss_of(Q) == pytest.approx(full_model.loss(Q, V, F, p), rel=1e-13)
    np.testing.assert_allclose(system.gradient(Q), full_model.gradient(Q, V, F, p), rtol=0, atol=1e-13)
    np.testing.assert_allclose(system.flat_attention(Q.ravel()), ScoreSystem(V @ V.T, F, p).attention(V @ Q @ V.T),
                               atol=1e-14)


def test_gradient_equals_finite_differences_of_the_loss():
    V, p, Q = _case(seed=1)
    system = NoisySystem(V, p, sigma=1.0, noise=0.4)
    ref = central_differences(lambda y: np.array([system.flat_loss(y)]), Q.ravel(), rel_step=1e-6)[0]
    np.testing.assert_allclose(system.gradient(Q).ravel(), ref, rtol=0, atol=1e-8 * np.abs(ref).max())


def test_hessian_equals_finite_differences_of_the_gradient():
    V, p, Q = _case(K=4, d=3, seed=4)
    system = NoisySystem(V, p, sigma=0.8, noise=0.3)
    ref = central_differences(system.flat_rhs, Q.ravel(), rel_step=1e-6)
    J = system.flat_jacobian(Q.ravel())
    assert np.abs(J - ref).max() <= 1e-7 * np.abs(ref).max()
    np.testing.assert_allclose(J, J.T, atol=1e-12 * np.abs(J).max())       # a Hessian


def test_quadrature_against_monte_carlo_and_its_error_estimate():
    """The n → n + 4 error estimate tracks the true error (against 40 nodes) within a factor 2."""
    V, p, Q = _case(seed=2)
    system = NoisySystem(V, p, sigma=1.0, noise=0.5)
    assert system.rule[2] == "Gauss–Hermite, 24 nodes per dimension" and system.quadrature_error(Q) < 1e-12
    reference = NoisySystem(V, p, sigma=1.0, noise=0.5, nodes=34).loss_of(Q)
    for n in (6, 8, 10):
        coarse = NoisySystem(V, p, sigma=1.0, noise=0.5, nodes=n)
        assert 0.5 < coarse.quadrature_error(Q) / abs(coarse.loss_of(Q) - reference) < 2
    points, weights, name = query_noise_rule(3, 0.5, nodes=100)        # 10⁶ tensor nodes: Monte Carlo
    assert name.startswith("Monte Carlo")
    mc = NoisySystem(V, p, sigma=1.0, noise=0.5, nodes=100)
    se = mc.quadrature_error(Q)
    assert abs(mc.loss_of(Q) - system.loss_of(Q)) <= 4 * se and se < 1e-2 * system.loss_of(Q)


def test_distance_from_the_noise_free_model_shrinks_like_noise_squared():
    V, p, _ = _case(seed=3)

    def final_scores(noise):
        system = NoisySystem(V, p, 1.0, noise, nodes=8)
        return integrate_flow(system, np.zeros((3, 3)), 5.0, method="DOP853", rtol=1e-10, atol=1e-12).S[-1]
    free = final_scores(0.0)
    distance = [np.abs(final_scores(noise) - free).max() for noise in (0.01, 0.02, 0.04)]
    np.testing.assert_allclose(np.array(distance[1:]) / np.array(distance[:-1]), 4.0, rtol=0.01)


@pytest.mark.slow
def test_sampled_training_on_noisy_prompts_tracks_the_noisy_gd():
    """The real network on noisy prompts (N = 1024) within 4 SE of the noisy model's GD,
    while the noise-free GD is more than 10 SE away."""
    problem = make_problem(features={"kind": "random-unit", "K": 3, "d": 3, "seed": 5}, task={"kind": "linear"},
                           prompt={"noise": 0.4})
    system = problem.system()
    eta, steps, checkpoints = 1.0, 20, [5, 10, 20]
    expected = iterate_gd(system, problem.start, eta, steps, n_out=steps + 1).S[checkpoints]
    free = iterate_gd(NoisySystem(system.V, system.p, system.sigma, 0.0), problem.start, eta, steps,
                            n_out=steps + 1).S[checkpoints]
    runs = np.array([train_sampled(problem.features.V, problem.p, 1024, problem.function_class.sample_labels,
                                   problem.start, eta, steps, batch=200, seed=seed, record_at=checkpoints,
                                   noise=0.4)["S"]
                     for seed in range(16)])
    mean, se = runs.mean(axis=0), runs.std(axis=0, ddof=1) / 4
    assert np.abs(free - expected).max() > 10 * se.max()
    assert np.all(np.abs(mean - expected) <= 4 * se)


def test_compiled_kernels_equal_the_numpy_model():
    """noisy_rhs, noisy_jacobian, noisy_event_values and noisy_evaluate against the NumPy
    _evaluate / hessian they compile, 1e-12 relative: several K and d, with and without noise."""
    from attnflow.solvers.noisy import noisy_evaluate, noisy_event_values, noisy_jacobian, noisy_rhs

    for K, d, noise, nodes in ((2, 2, 0.0, None), (3, 2, 0.4, 7), (3, 3, 0.3, 5), (4, 3, 0.8, 6)):
        V, p, Q = _case(K, d, seed=K + d)
        system = NoisySystem(V, p, sigma=1.3, noise=noise, nodes=nodes)
        y = system.flatten(2.0 * Q)
        args = system.args
        loss, grad, A = system._evaluate(2.0 * Q)
        grad_c, A_c = np.empty((d, d)), np.empty((K, K))
        assert noisy_evaluate(2.0 * Q, *args, grad_c, A_c, True) == pytest.approx(loss, rel=1e-12)
        assert np.abs(grad_c - grad).max() <= 1e-12 * np.abs(grad).max()
        assert np.abs(A_c - A).max() <= 1e-12
        rhs = noisy_rhs(y, *args)
        assert np.abs(rhs - system.flat_rhs(y)).max() <= 1e-12 * np.abs(rhs).max()
        J, ref = noisy_jacobian(y, *args), system.flat_jacobian(y)
        assert np.abs(J - ref).max() <= 1e-12 * np.abs(ref).max()
        assert noisy_event_values(y, *args) == pytest.approx(system.flat_event_values(y), rel=1e-12)
