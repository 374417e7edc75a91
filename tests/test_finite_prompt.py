"""Exact finite-prompt dynamics against enumeration, Monte Carlo, the large-prompt limit and training."""

import numpy as np
import pytest

from attnflow.solvers import ScoreSystem, finite_prompt, integrate_flow, iterate_gd
from attnflow.solvers.columns import label_gap_moments, label_gap_stack
from attnflow.solvers.references import enumeration
from attnflow.solvers.references.sampled import train_sampled

from .conftest import make_problem


def _column_case(K, seed, scale):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(K) * 2)
    W = rng.standard_normal((K, K + 1))
    F = W @ W.T
    k = int(rng.integers(K))
    M = np.empty((K, K))
    label_gap_moments(F, k, M)
    s = rng.standard_normal(K) * scale / 2
    s[k] += scale                            # late training: the query's own score leads by `scale`
    return s, p, M


@pytest.mark.parametrize("K", [2, 3, 4])
@pytest.mark.parametrize("N", [1, 2, 5, 12])
@pytest.mark.parametrize("scale", [0.5, 30.0])
def test_loss_gradient_and_attention_equal_enumeration(K, N, scale):
    """Against 40-digit enumeration over all compositions of N: relative 1e-10, scores up to 30.

    Loss, gradient, expected attention and the analytic Hessian (the flow Jacobian's
    blocks).  Relative to the largest entry: late-training entries span 1e-60 to 1.
    """
    s, p, M = _column_case(K, 100 * K + N, scale)
    g, att, H = np.empty(K), np.empty(K), np.empty((K, K))
    loss, error, _ = finite_prompt.finite_column(s, np.log(p), M, N, finite_prompt.DEFAULT_STEP, g, att, -1)
    ref_loss, ref_grad, ref_att, ref_hess = enumeration.enumerate_column_exact(s, p, M, N)
    assert loss == pytest.approx(ref_loss, rel=1e-10)
    np.testing.assert_allclose(att, ref_att, rtol=1e-10, atol=1e-300)
    if N == 1:
        assert np.all(g == 0)                # one token: the attention is one whatever the scores
    else:
        assert np.abs(g - ref_grad).max() <= 1e-10 * np.abs(ref_grad).max()
    finite_prompt.finite_column_hessian(s, np.log(p), M, N, finite_prompt.DEFAULT_STEP, H, -1)
    assert np.abs(H - ref_hess).max() <= 1e-10 * np.abs(ref_hess).max()
    assert error <= 1e-12 * max(1.0, abs(ref_loss))


@pytest.mark.parametrize("K", [2, 3, 4])
@pytest.mark.parametrize("N", [1, 2, 5, 12])
@pytest.mark.parametrize("scale", [0.5, 30.0])
def test_query_in_softmax_equals_enumeration(K, N, scale):
    """The query token (value 0) in the softmax: loss, gradient, E[A], Hessian against 40-digit enumeration, 1e-10."""
    rng = np.random.default_rng(100 * K + N)
    p = rng.dirichlet(np.ones(K) * 2)
    W = rng.standard_normal((K, K + 1))
    k = int(rng.integers(K))
    M = label_gap_stack(W @ W.T, include_query=True)[k]
    s = rng.standard_normal(K) * scale / 2
    s[k] += scale
    g, att = np.empty(K), np.empty(K)
    loss, error, share = finite_prompt.finite_column(s, np.log(p), M, N, finite_prompt.DEFAULT_STEP, g, att, k)
    ref_loss, ref_grad, ref_att, ref_hess = enumeration.enumerate_column_exact(s, p, M, N, query=k)
    assert loss == pytest.approx(ref_loss, rel=1e-10)
    np.testing.assert_allclose(att, ref_att, rtol=1e-10, atol=1e-300)
    assert np.abs(g - ref_grad).max() <= 1e-10 * np.abs(ref_grad).max()
    H = np.empty((K, K))
    finite_prompt.finite_column_hessian(s, np.log(p), M, N, finite_prompt.DEFAULT_STEP, H, k)
    assert np.abs(H - ref_hess).max() <= 1e-10 * np.abs(ref_hess).max()
    assert error <= 1e-12 * max(1.0, abs(ref_loss))
    assert ref_att.sum() < 1                  # the query keeps a share of the attention
    # Its share, a quadrature of its own (≥ 1/(N+1), so 1 − Σ E[A] is an accurate reference here).
    assert share == pytest.approx(1.0 - ref_att.sum(), rel=1e-10)
    alone = np.empty(K)
    assert finite_prompt.finite_attention(s, np.log(p), N, finite_prompt.DEFAULT_STEP, alone, k) == \
        pytest.approx(share, rel=1e-13)
    np.testing.assert_allclose(alone, att, rtol=1e-13, atol=1e-300)


def test_query_in_softmax_system_and_its_large_prompt_limit():
    """ScoreSystem with the query in the softmax: the analytic Jacobian against enumeration
    Hessians, and the dynamics tending to the query-free large-prompt limit like 1/N."""
    K = 3
    problem = make_problem(features={"kind": "random-unit", "K": K, "d": 3, "seed": 2},
                           prompt={"N": 5, "include_query": True})
    system = problem.score_system()
    S = np.random.default_rng(0).standard_normal((K, K))
    ref = np.empty((K * K, K * K))
    for k in range(K):
        _, _, _, H = enumeration.enumerate_column_exact(S[:, k], system.p, system.Ms[k], 5, query=k)
        for m in range(K):
            ref[:, m * K + k] = -system.p[k] * np.outer(system.G @ H[:, m], system.G[k]).ravel()
    assert np.abs(system.jacobian(S) - ref).max() <= 1e-10 * np.abs(ref).max()
    inf = ScoreSystem(system.G, system.F, system.p, include_query=True)
    assert not inf.query_in_softmax and inf.Ms.shape == (K, K, K)
    Ns = 2 ** np.arange(10, 16)         # here the query's O(1/N) nearly cancels the prompt's: start late
    gaps = [abs(ScoreSystem(system.G, system.F, system.p, N=int(N), include_query=True).loss(S) - inf.loss(S))
            for N in Ns]
    assert np.polyfit(np.log(Ns), np.log(gaps), 1)[0] == pytest.approx(-1.0, abs=0.02)


def test_double_precision_enumeration_agrees_where_it_can():
    s, p, M = _column_case(3, 7, 1.0)
    loss, grad = enumeration.enumerate_column(s, p, M, 6)
    ref_loss, ref_grad, _, _ = enumeration.enumerate_column_exact(s, p, M, 6)
    assert loss == pytest.approx(ref_loss, rel=1e-13)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10)


def test_flow_jacobian_at_finite_N_equals_enumeration():
    """The analytic finite-N flow Jacobian against one assembled from 40-digit enumeration Hessians."""
    K, N = 3, 5
    features = {"kind": "random-unit", "K": K, "d": 3, "seed": 2}
    system = make_problem(features=features, prompt={"N": N}, training={"kernels": "hand-written"}).score_system()
    S = np.random.default_rng(0).standard_normal((K, K)) * 4
    G = system.G
    ref = np.empty((K * K, K * K))
    Gamma = np.empty((K, K))
    for k in range(K):
        _, g, _, H = enumeration.enumerate_column_exact(S[:, k], system.p, system.Ms[k], N)
        Gamma[:, k] = system.p[k] * g
        for m in range(K):   # ∂(−G Γ G)[i, l] / ∂S[m, k] = −p_k (G H)_im G_kl
            ref[:, m * K + k] = -system.p[k] * np.outer(G @ H[:, m], G[k]).ravel()
    np.testing.assert_allclose(system.rhs(S), -(G @ Gamma @ G), rtol=0, atol=1e-12 * np.abs(Gamma).max())
    assert np.abs(system.jacobian(S) - ref).max() <= 1e-10 * np.abs(ref).max()
    generated = make_problem(features=features, prompt={"N": N}).score_system()    # the default kernel set
    assert np.abs(generated.jacobian(S) - ref).max() <= 1e-10 * np.abs(ref).max()


def test_monte_carlo_agrees_at_N_256():
    s, p, M = _column_case(4, 3, 2.0)
    g, att = np.empty(4), np.empty(4)
    loss, _, _ = finite_prompt.finite_column(s, np.log(p), M, 256, finite_prompt.DEFAULT_STEP, g, att, -1)
    mc_loss, mc_se, mc_grad, mc_grad_se = enumeration.monte_carlo_column(s, p, M, 256, 200_000, seed=1)
    assert abs(mc_loss - loss) <= 4 * mc_se
    assert np.all(np.abs(mc_grad - g) <= 4 * mc_grad_se)


def test_converges_to_the_large_prompt_limit_at_rate_one_over_N():
    problem = make_problem(features={"kind": "random-unit", "K": 4, "d": 3, "seed": 1}, prompt={"p": [0.4, 0.3, 0.2, 0.1]})
    S = np.random.default_rng(4).standard_normal((4, 4))
    inf = problem.score_system()
    Ns = 2 ** np.arange(6, 13)
    gaps = [abs(ScoreSystem(inf.G, inf.F, inf.p, N=int(N)).loss(S) - inf.loss(S)) for N in Ns]
    slope = np.polyfit(np.log(Ns), np.log(gaps), 1)[0]
    assert slope == pytest.approx(-1.0, abs=0.03)
    grad_gap = np.abs(ScoreSystem(inf.G, inf.F, inf.p, N=4096).gradient(S) - inf.gradient(S)).max()
    assert grad_gap < 1e-2 * np.abs(inf.gradient(S)).max()


def test_missing_query_sets_the_loss_floor_at_small_N():
    """Trained long, each query's expected attention on its own feature tends to P(feature present) = 1 − (1 − p_k)^N."""
    for N in (2, 4, 8):
        problem = make_problem(features={"kind": "simplex", "K": 3, "d": 2}, prompt={"N": N})
        tr = integrate_flow(problem.score_system(), problem.S0, 1e7)
        present = 1 - finite_prompt.missing_query_probability(problem.p, N)
        np.testing.assert_allclose(np.diagonal(tr.final_attention), present, rtol=2e-3)
        assert tr.loss[-1] > 0.5 * tr.loss[0] * finite_prompt.missing_query_probability(problem.p, N).min()
    assert integrate_flow(make_problem(features={"kind": "simplex", "K": 3, "d": 2}).score_system(),
                          np.zeros((3, 3)), 1e7).loss[-1] < 1e-5


def test_query_in_softmax_caps_the_attention_at_the_expected_count_share():
    """The query token's score is S_kk, tied to its own feature's tokens: trained long, the attention on
    them tends to E[c_k / (c_k + 1)] (c_k ~ Binomial(N, p_k)), not to P(feature present)."""
    from scipy.stats import binom
    for N in (2, 8):
        problem = make_problem(features={"kind": "simplex", "K": 3, "d": 2}, prompt={"N": N, "include_query": True})
        tr = integrate_flow(problem.score_system(), problem.S0, 1e7)
        c = np.arange(N + 1)
        share = [(binom.pmf(c, N, pk) * c / (c + 1)).sum() for pk in problem.p]
        np.testing.assert_allclose(np.diagonal(tr.final_attention), share, rtol=2e-3)


def test_cost_does_not_grow_with_the_number_of_compositions():
    s = np.array([30.0, 0.0, -2.0, 1.0])
    h = finite_prompt.DEFAULT_STEP
    assert finite_prompt.grid_steps(s, 10_000, h) - finite_prompt.grid_steps(s, 8, h) <= np.log(10_000 / 8) / h + 2
    K = 16
    system = ScoreSystem(np.eye(K), np.eye(K) + 0.5, np.full(K, 1 / K), N=10_000)
    assert np.isfinite(system.loss(np.random.default_rng(0).standard_normal((K, K)) * 10))


@pytest.mark.slow
@pytest.mark.parametrize("include_query", [False, True])
def test_sampled_prompt_training_tracks_exact_finite_N_gd(include_query):
    """At N = 8 the real network on sampled prompts follows the exact finite-N GD map (no O(1/N) bias left).

    The exact map it must follow is told apart from its neighbours by more than 10
    standard errors: N = ∞, and the same N with the query's place in the softmax flipped.
    """
    problem = make_problem(features={"kind": "random-unit", "K": 3, "d": 3, "seed": 5}, task={"kind": "linear"},
                           prompt={"N": 8, "p": [0.5, 0.3, 0.2], "include_query": include_query})
    system = problem.score_system()
    eta = 0.5 * system.stable_step(problem.S0)
    checkpoints = [4, 10, 16]

    def exact(**changes):
        kwargs = dict(N=8, include_query=include_query) | changes
        return iterate_gd(ScoreSystem(system.G, system.F, system.p, **kwargs), problem.S0, eta, 16, n_out=17).S[checkpoints]
    expected = exact()
    runs = np.array([train_sampled(problem.features.V, problem.p, 8, problem.function_class.sample_labels,
                                   np.zeros((3, 3)), eta, 16, batch=2000, seed=seed, record_at=checkpoints,
                                   include_query=include_query)["S"]
                     for seed in range(16)])
    mean, se = runs.mean(axis=0), runs.std(axis=0, ddof=1) / 4
    for neighbour in (exact(N=np.inf), exact(include_query=not include_query)):
        assert np.abs(neighbour - expected).max() > 10 * se.max()
    assert np.all(np.abs(mean - expected) <= 4 * se)
    np.testing.assert_allclose(iterate_gd(system, problem.S0, eta, 16, n_out=17).S[checkpoints], expected, rtol=1e-13)
