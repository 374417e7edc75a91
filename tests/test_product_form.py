"""The large-K product form of the large-prompt columns equals the column loops.

For K ≥ ``PRODUCT_FORM_MIN_K`` the kernels compute every query's label gaps from one
matrix product (:func:`attnflow.solvers.assembly._loss_gradient_gap_products`).  It must give
the same loss, gradient and attention gap as the per-column loops, also where the
attention is within 1e-300 of one (scores up to ±700), where a naive product form
would lose the gradient's relative precision.
"""

import math

import numpy as np
import pytest

from attnflow.solvers import assembly
from attnflow.solvers.columns import column_attention, column_loss_gradient, label_gap_stack

from .conftest import random_system_arrays


def column_loops(S, Ms, p, logp):
    """The per-column reference: ``Γ[:, k] = p_k a ∘ (M⁽ᵏ⁾a − β)``, gap ``max_k log Σ_{n≠k} a_n``.

    Also returns each entry's rounding scale ``p_k a_n (|M|w + aᵀ|M|w)_n`` (w: the attention
    off feature k): the size of the terms that cancel in it, which bounds the rounding error
    of any summation order.
    """
    K = S.shape[0]
    Gamma, scale, a, g = np.empty((K, K)), np.empty((K, K)), np.empty(K), np.empty(K)
    loss, gap = 0.0, -np.inf
    for k in range(K):
        column_attention(np.ascontiguousarray(S[:, k]), logp, a)
        M = np.ascontiguousarray(Ms[k, :K, :K])
        loss += p[k] * column_loss_gradient(a, M, g)
        Gamma[:, k] = p[k] * g
        w = a.copy()
        w[k] = 0.0
        u_abs = np.abs(M) @ w
        scale[:, k] = p[k] * a * (u_abs + a @ u_abs)
        with np.errstate(divide="ignore"):            # all off-target mass may underflow to 0
            gap = max(gap, np.log(w.sum()))
    return loss, Gamma, gap, scale


@pytest.mark.parametrize("K", [2, 5, 16, 33, 64])
@pytest.mark.parametrize("scale", [0.5, 30.0, 300.0, 700.0])
@pytest.mark.parametrize("include_query", [False, True])
def test_product_form_equals_column_loops(K, scale, include_query):
    _, F, p = random_system_arrays(K, K, seed=K)
    Ms = label_gap_stack(F, include_query)
    logp = np.log(p)
    rng = np.random.default_rng(K + int(scale))
    # Large positive diagonal, so late-training attention (off-target mass down to e^-700).
    S = rng.standard_normal((K, K)) * scale / 10 + np.eye(K) * scale
    Gamma = np.empty((K, K))
    Ft, E, FW, work = assembly._product_form_arrays(Ms, K)
    loss, gap = assembly._loss_gradient_gap_products(S, Ft, p, logp, Gamma, E, FW, work)
    ref_loss, ref_Gamma, ref_gap, scale = column_loops(S, Ms, p, logp)
    # Every entry to 1e-12 of its own rounding scale, which is O(σ_k) and not O(1): a tiny
    # late-training gradient (off-target attention down to e^-700) must keep its digits.
    assert np.all(np.abs(Gamma - ref_Gamma) <= 1e-12 * scale)
    assert loss == pytest.approx(ref_loss, rel=1e-12, abs=1e-300)
    assert gap == pytest.approx(ref_gap, rel=1e-12, abs=1e-12)


def test_kernels_switch_to_the_product_form_from_its_threshold():
    """The assembled kernel at K = PRODUCT_FORM_MIN_K takes the product path, below it the loops."""
    K = assembly.PRODUCT_FORM_MIN_K
    _, F, p = random_system_arrays(K, K, seed=1)
    Ms, logp, prompt = label_gap_stack(F), np.log(p), np.zeros(3)
    S = np.random.default_rng(2).standard_normal((K, K))
    G1, G2 = np.empty((K, K)), np.empty((K, K))
    Ft, E, FW, work = assembly._product_form_arrays(Ms, K)
    assert assembly.loss_gradient_gap(S, Ms, p, logp, prompt, G1) == \
        assembly._loss_gradient_gap_products(S, Ft, p, logp, G2, E, FW, work)
    np.testing.assert_array_equal(G1, G2)


def test_softmax_numerators_are_exp_within_one_ulp():
    """The product form's vectorised exponential over the whole range the softmax feeds it
    (exponents ≤ 0): within 1 ulp of the exponential in extended precision where the result is
    normal, libm's exp itself below EXP_MIN (subnormal results and zeros), exactly 1 at 0, NaN kept."""
    K = 64
    rng = np.random.default_rng(3)
    x = np.concatenate([-rng.random(1500) * 0.8, -rng.random(1500) * 708.0, -708.0 - rng.random(500) * 40,
                        -rng.random(500) * 1e-9, [0.0, -0.0, assembly.EXP_MIN, np.nextafter(assembly.EXP_MIN, 0),
                                                  np.nextafter(assembly.EXP_MIN, -1), -745.2, -800.0, np.nan]])
    x = np.concatenate([x, -rng.random(K * K - x.size) * 50.0])
    S, logp, top = x.reshape(K, K), np.zeros(K), np.zeros(K)
    E, scratch = np.empty((K, K)), np.empty((K, K))
    assembly._softmax_numerators(S, logp, top, E, scratch)
    got = E.ravel()
    assert np.isnan(got[np.isnan(x)]).all() and np.isnan(got).sum() == 1
    finite = ~np.isnan(x)
    want = np.exp(x[finite].astype(np.longdouble))          # extended precision where the platform has it
    normal = x[finite] >= assembly.EXP_MIN
    err = np.abs(got[finite][normal].astype(np.longdouble) - want[normal])
    assert np.all(err <= np.spacing(want[normal].astype(float)))
    below = x[finite][~normal]
    assert below.size > 400
    np.testing.assert_array_equal(got[finite][~normal], [math.exp(v) for v in below])   # what Numba's np.exp calls
    assert got[x == 0.0].tolist() == [1.0, 1.0]


def test_gd_step_on_reused_scratch_equals_the_allocating_kernels():
    """score_gd_step runs the product form on the loop's scratch, kept across iterations and chunks:
    on scratch left dirty by another state it gives loss_gradient_gap's loss and gap bit for bit and
    flat_rhs to 1e-14, and GD in 3 chunks equals GD in one, bit for bit, at K = 20, with features
    (G ≠ I) and without, at a step size that makes irrelevant attentions oscillate."""
    from attnflow.solvers import ScoreSystem, iterate_gd

    K = 20
    V, F, p = random_system_arrays(K, K, seed=11)
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    rng = np.random.default_rng(4)
    for G in (V @ V.T, np.eye(K)):
        system = ScoreSystem(G, F, p)
        step, args, work = system.gd_callback()
        scratch = np.full(work, np.nan)
        for S in rng.standard_normal((2, K, K)):
            y, dy, S_out = S.ravel().copy(), np.empty(K * K), np.empty((K, K))
            value, gap = step(y, *args, dy, S_out, scratch)
            want = system.kernels.loss_gradient_gap(S, system.Ms, p, system.logp, None, np.empty((K, K)))
            assert (value, gap) == want and np.array_equal(S_out, S)
            rhs = system.flat_rhs(y)
            assert np.abs(dy - rhs).max() <= 1e-14 * np.abs(rhs).max()
        S0 = 0.3 * rng.standard_normal((K, K))
        eta = 1.5 * system.stable_step(S0)                    # oscillating irrelevant attentions
        a = iterate_gd(system, S0, eta, 300, chunks=3)
        b = iterate_gd(system, S0, eta, 300, chunks=1)
        assert a.status == b.status and a.counters == b.counters and a.counters["attention_oscillations"] > 0
        assert a.crossings == b.crossings
        np.testing.assert_array_equal(a.S, b.S)
        np.testing.assert_array_equal(a.loss, b.loss)


def test_the_blas_sandwich_equals_its_matrix_products():
    """flow_sandwich above SANDWICH_LOOPS_MAX_K writes −GΓG through two products into its output."""
    from attnflow.solvers.pullback import SANDWICH_LOOPS_MAX_K, flow_sandwich

    K = SANDWICH_LOOPS_MAX_K + 5
    rng = np.random.default_rng(6)
    G, Gamma = rng.standard_normal((2, K, K))
    want = -(G @ Gamma @ G).ravel()
    np.testing.assert_allclose(flow_sandwich(G, Gamma), want, rtol=0, atol=1e-13 * np.abs(want).max())
