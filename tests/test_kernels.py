"""The Numba kernels against finite differences and an independent NumPy implementation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnflow.derivations import load_kernels
from attnflow.solvers import ScoreSystem, kernels
from attnflow.solvers.references import numpy_twins as ref

from .conftest import random_system_arrays


def _system(K, d, seed):
    V, F, p = random_system_arrays(K, d, seed)
    return ScoreSystem(V @ V.T, F, p)


def _central_difference(fun, x, h):
    """Central differences of ``fun`` (scalar or vector valued) along each coordinate of x."""
    cols = []
    for i in range(x.size):
        e = np.zeros_like(x)
        e.flat[i] = h
        cols.append((np.asarray(fun(x + e)) - np.asarray(fun(x - e))) / (2 * h))
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("K,d,seed,scale", [(2, 2, 0, 1.0), (4, 3, 1, 2.0), (6, 8, 2, 3.0), (5, 2, 3, 0.5)])
def test_gradient_equals_finite_differences(K, d, seed, scale):
    system = _system(K, d, seed)
    S = np.random.default_rng(seed).standard_normal((K, K)) * scale
    fd = _central_difference(lambda x: system.loss(x.reshape(K, K)), S.ravel(), 1e-5).reshape(K, K)
    Gamma = system.gradient(S)
    # Central differences with h = 1e-5 have truncation error ~ h² |ℒ'''| ≈ 1e-10.
    assert np.abs(fd - Gamma).max() <= 1e-7 * np.abs(Gamma).max()


@pytest.mark.parametrize("K,d,seed", [(2, 2, 0), (3, 3, 4), (5, 3, 5)])
def test_jacobian_equals_finite_differences_of_rhs(K, d, seed):
    system = _system(K, d, seed)
    S = np.random.default_rng(seed + 10).standard_normal((K, K)) * 2
    fd = _central_difference(lambda y: system.rhs(y.reshape(K, K)).ravel(), S.ravel(), 1e-5)
    J = system.jacobian(S)
    assert np.abs(fd - J).max() <= 1e-7 * np.abs(J).max()


@pytest.mark.parametrize("K,d,seed", [(2, 1, 0), (4, 4, 1), (7, 3, 2), (16, 16, 3)])
def test_kernels_equal_numpy_reference(K, d, seed):
    system = _system(K, d, seed)
    S = np.random.default_rng(seed).standard_normal((K, K)) * 4
    L, Gamma = ref.loss_and_gradient(S, system.F, system.p, system.logp)
    assert system.loss(S) == pytest.approx(L, rel=1e-13)
    np.testing.assert_allclose(system.gradient(S), Gamma, rtol=0, atol=1e-13 * np.abs(Gamma).max())
    np.testing.assert_allclose(system.jacobian(S), ref.flow_jacobian(S.ravel(), system.G, system.F, system.p, system.logp),
                               rtol=0, atol=1e-12 * np.abs(system.jacobian(S)).max())
    np.testing.assert_allclose(system.attention(S), ref.attention(S, system.logp), rtol=1e-13, atol=1e-300)


def test_hessian_blocks_are_symmetric():
    system = _system(5, 3, 7)
    S = np.random.default_rng(1).standard_normal((5, 5))
    H, M, a = np.empty((5, 5)), np.empty((5, 5)), np.empty(5)
    for k in range(5):
        kernels.column_attention(S[:, k].copy(), system.logp, a)
        kernels.label_gap_moments(system.F, k, M)
        kernels.column_hessian(a, M, H)
        np.testing.assert_allclose(H, H.T, atol=1e-14)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.sampled_from([1e-3, 1.0, 30.0, 700.0]))
def test_attention_columns_sum_to_one_and_loss_is_finite(seed, scale):
    """Log-sum-exp keeps every quantity finite even for scores near the float64 exp limit."""
    system = _system(4, 3, seed)
    S = np.random.default_rng(seed).standard_normal((4, 4)) * scale
    A = system.attention(S)
    np.testing.assert_allclose(A.sum(axis=0), 1.0, atol=1e-14)
    assert np.all(A >= 0)
    L = system.loss(S)
    assert np.isfinite(L) and L >= 0
    assert np.all(np.isfinite(system.gradient(S)))
    assert np.all(np.isfinite(system.jacobian(S)))


def test_target_log_gap_is_exact_far_beyond_double_precision_of_attention():
    """log(1 − A_kk) stays exact when 1 − A_kk underflows relative to one (S_kk − S_nk = 60)."""
    K = 3
    S = np.zeros((K, K))
    np.fill_diagonal(S, 60.0)
    logp = np.log(np.full(K, 1 / K))
    expected = np.log((K - 1) * np.exp(-60.0) / (1 + (K - 1) * np.exp(-60.0)))
    assert kernels.target_log_gap(S, logp) == pytest.approx(expected, rel=1e-14)


def test_system_rejects_bad_arrays():
    with pytest.raises(ValueError, match="G: expected a square matrix"):
        ScoreSystem(np.ones((2, 3)), np.eye(2), [0.5, 0.5])
    with pytest.raises(ValueError, match="F: expected a 2×2 matrix"):
        ScoreSystem(np.eye(2), np.eye(3), [0.5, 0.5])
    with pytest.raises(ValueError, match="F: has non-finite"):
        ScoreSystem(np.eye(2), np.array([[1, np.nan], [0, 1]]), [0.5, 0.5])
    with pytest.raises(ValueError, match="p: expected positive probabilities"):
        ScoreSystem(np.eye(2), np.eye(2), [1.0, 0.0])


@pytest.mark.parametrize("gap", [0.0, 5.0, 60.0, 650.0])
def test_fused_gap_equals_log_sum_exp_gap(gap):
    """The solvers' cheap gap (Σ_{n≠k} A_nk) equals the two-log-sum-exp formula, even at S_kk − S_nk = 650."""
    system = _system(4, 3, 11)
    S = np.random.default_rng(2).standard_normal((4, 4)) + gap * np.eye(4)
    fused = kernels.event_values(S.ravel(), system.Ms, system.p, system.logp, system.prompt)[0]
    assert fused == pytest.approx(kernels.target_log_gap(S, system.logp), rel=1e-13)


@pytest.mark.parametrize("K", [2, 3, 4, 8, 9])
def test_column_flow_path_equals_gradient_and_sandwich_to_the_bit(K):
    """flow_rhs and event_values at N = ∞ and K ≤ COLUMN_FLOW_MAX_K (one query at a time, Γ never
    stored) against loss_gradient_gap + flow_sandwich, of both kernel sets, at scores up to one-hot
    attention; K = 9 is the general path on either side of the switch.  The callbacks the integrators
    get there, column_flow_rhs and column_event_values, give the same numbers; at K = 9 and at finite
    N the system hands over flow_rhs and event_values themselves."""
    from attnflow.solvers.pullback import flow_sandwich, log_loss

    V, F, p = random_system_arrays(K, 3, K)
    rng = np.random.default_rng(K)
    for kernel_set in (kernels, load_kernels(K)):
        system = ScoreSystem(V @ V.T, F, p, kernels=kernel_set)
        G, Ms, p_, logp, prompt = system.args
        for scale in (0.0, 1.0, 30.0, 800.0):
            y = rng.standard_normal(K * K) * scale
            Gamma = np.empty((K, K))
            value, gap = kernel_set.loss_gradient_gap(y.reshape(K, K), Ms, p_, logp, prompt, Gamma)
            assert np.array_equal(kernel_set.flow_rhs(y, *system.args), flow_sandwich(G, Gamma))
            assert kernel_set.event_values(y, Ms, p_, logp, prompt) == (gap, log_loss(value))
            rhs, events, args, event_args, _ = system.callbacks()
            assert np.array_equal(rhs(y, *args), flow_sandwich(G, Gamma)) and events(y, *event_args) == (gap,
                                                                                                      log_loss(value))
        small = (kernel_set.column_flow_rhs, kernel_set.column_event_values)
        assert (system.callbacks()[:2] == small) == (K <= 8)
        finite = ScoreSystem(V @ V.T, F, p, kernels=kernel_set, N=5)
        assert finite.callbacks()[:2] == (kernel_set.flow_rhs, kernel_set.event_values)


# K = 2 … 64 with one module; at K = 64 a couple of samples (the Jacobian has K⁴ entries).
GENERIC_CASES = [(K, seed) for K in (2, 3, 4, 5, 7, 8, 12, 16, 23, 32) for seed in range(3)] + [(64, 0), (64, 1)]


@pytest.mark.parametrize("K,seed", GENERIC_CASES)
def test_generated_loop_kernels_equal_hand_written_for_every_K(K, seed):
    """The one generated module at any K: loss, Γ, Hessians, attention, Jacobian within 1e-12 of the scale."""
    generated = load_kernels(K)
    V, F, p = random_system_arrays(K, min(K, 4), seed)
    gen = ScoreSystem(V @ V.T, F, p, kernels=generated)
    hand = ScoreSystem(V @ V.T, F, p)
    rng = np.random.default_rng(seed)
    for scale in (0.3, 3.0, 15.0):
        S = rng.standard_normal((K, K)) * scale
        assert gen.loss(S) == pytest.approx(hand.loss(S), rel=1e-12)
        for fn in ("gradient", "hessians", "attention") + (("jacobian",) if K <= 16 else ()):
            x, y = getattr(gen, fn)(S), getattr(hand, fn)(S)
            assert np.abs(x - y).max() <= 1e-12 * np.abs(y).max(), fn
    # The column functions themselves, with the last query's label-gap matrix.
    a, g, H = np.empty(K), np.empty(K), np.empty((K, K))
    ref_g, ref_H = np.empty(K), np.empty((K, K))
    kernels.column_attention(S[:, 0].copy(), gen.logp, a)
    M = gen.Ms[K - 1]
    loss = kernels.column_loss_gradient(a, M, ref_g)
    assert generated.column_loss_gradient(a, M, g) == pytest.approx(loss, rel=1e-12)
    generated.column_hessian(a, M, H)
    kernels.column_hessian(a, M, ref_H)
    assert np.abs(g - ref_g).max() <= 1e-12 * np.abs(ref_g).max()
    assert np.abs(H - ref_H).max() <= 1e-12 * np.abs(ref_H).max()
