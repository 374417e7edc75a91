"""Feature sets, function classes and their moments, constants and regimes."""

import numpy as np
import pytest
from scipy import special

from attnflow.dynamics.problem import features as feat
from attnflow.dynamics.problem import function_classes as fc
from attnflow.dynamics.errors import AttnflowError
from attnflow.solvers.columns import label_gap_stack

from .conftest import make_problem


# --- features ------------------------------------------------------------------------

@pytest.mark.parametrize("K,d", [(2, 1), (3, 2), (5, 4), (5, 9)])
def test_simplex_is_regular_and_centred(K, d):
    fs = feat.simplex(K, d)
    G = fs.G
    np.testing.assert_allclose(np.diag(G), 1.0, atol=1e-14)
    np.testing.assert_allclose(G[~np.eye(K, dtype=bool)], -1.0 / (K - 1), atol=1e-14)
    np.testing.assert_allclose(fs.V.sum(axis=0), 0.0, atol=1e-14)
    assert fs.Delta == pytest.approx(np.sqrt(2 + 2 / (K - 1)), rel=1e-14)


def test_orthonormal_and_random_unit():
    fs = feat.orthonormal(3, 5)
    assert fs.orthonormal and fs.Delta == pytest.approx(np.sqrt(2))
    r = feat.random_unit(6, 3, seed=7)
    np.testing.assert_allclose(np.linalg.norm(r.V, axis=1), 1.0, atol=1e-14)
    np.testing.assert_array_equal(r.V, feat.random_unit(6, 3, seed=7).V)
    assert not np.array_equal(r.V, feat.random_unit(6, 3, seed=8).V)


def test_delta_by_hand():
    fs = feat.explicit([[0, 0, 1], [3, 0, 1], [0, 4, 1]])
    assert fs.Delta == pytest.approx(3.0)     # distances 3, 4, 5


@pytest.mark.parametrize("matrix,needle", [
    ([[1, 0]], "at least K = 2"),
    ([[1, 0], [np.nan, 1]], "row 1 has a non-finite"),
    ([[1, 0], [0, 0]], "row 1 is the zero vector"),
    ([[1, 0], [0, 1], [1, 0]], "rows 0 and 2 are the same feature"),
    ([1, 2, 3], "expected a K×d matrix"),
])
def test_degenerate_feature_sets_are_rejected(matrix, needle):
    with pytest.raises(AttnflowError, match=needle) as info:
        feat.explicit(matrix)
    assert info.value.field == "features.matrix"


def test_orthonormal_and_simplex_need_enough_dimensions():
    with pytest.raises(AttnflowError, match="need d ≥ K = 4"):
        feat.orthonormal(4, 3)
    with pytest.raises(AttnflowError, match="needs d ≥ 4"):
        feat.simplex(5, 3)


# --- function classes ----------------------------------------------------------------

def test_sphere_cos_mean_closed_forms():
    u = np.array([[0.3, 0.0, 0.4]])            # r = 0.5
    assert fc.sphere_cos_mean(u, 3)[0] == pytest.approx(np.sin(0.5) / 0.5, rel=1e-14)
    assert fc.sphere_cos_mean(u[:, :2] * 0 + [[0.5, 0]], 2)[0] == pytest.approx(special.j0(0.5), rel=1e-14)
    assert fc.sphere_cos_mean(np.array([[0.5]]), 1)[0] == pytest.approx(np.cos(0.5), rel=1e-14)
    assert fc.sphere_cos_mean(np.zeros((1, 4)), 4)[0] == 1.0


CLASSES = [fc.SingleIndex(2.0, "sin"), fc.SingleIndex(1.5, "relu"), fc.SingleIndex(0.7, "identity"),
           fc.Frequency(3.0), fc.Linear(1.3)]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.describe())
@pytest.mark.parametrize("d", [2, 3, 5])
def test_exact_moments_match_quadrature_and_monte_carlo(cls, d):
    V = 1.3 * feat.random_unit(4, d, seed=d).V
    exact = cls.moments(V, "exact")
    quad = cls.moments(V, "quadrature")
    # relu has a kink: Gauss–Jacobi converges algebraically and its error estimate says so.
    tol = 1e-5 if getattr(cls, "link", None) == "relu" else 1e-12
    assert np.abs(quad.F - exact.F).max() <= tol * np.abs(exact.F).max()
    assert np.abs(quad.F - exact.F).max() <= max(3 * quad.error, 1e-13 * np.abs(exact.F).max())
    mc = cls.moments(V, "monte-carlo", mc_samples=40_000, seed=1)
    assert mc.method == "monte-carlo" and mc.error > 0
    assert np.abs(mc.F - exact.F).max() <= 5 * mc.error


@pytest.mark.parametrize("link", ["tanh", "erf"])
def test_quadrature_links_match_monte_carlo(link):
    V = feat.random_unit(3, 4, seed=0).V * 2
    cls = fc.SingleIndex(1.0, link)
    quad = cls.moments(V)                       # auto falls back to quadrature
    assert quad.method == "quadrature" and quad.error < 1e-10
    mc = cls.moments(V, "monte-carlo", mc_samples=40_000, seed=2)
    assert np.abs(mc.F - quad.F).max() <= 5 * mc.error
    with pytest.raises(AttnflowError, match="no closed form"):
        cls.moments(V, "exact")


def test_single_index_draws_are_L_lipschitz():
    rng = np.random.default_rng(0)
    for link in fc.LINKS:
        cls = fc.SingleIndex(2.5, link)
        X = rng.standard_normal((200, 2, 3))
        y = cls.sample_labels(rng, X, None)
        ratio = np.abs(y[:, 0] - y[:, 1]) / np.linalg.norm(X[:, 0] - X[:, 1], axis=1)
        assert ratio.max() <= 2.5 + 1e-12
        assert ratio.max() > 0.5                # and not trivially so


def test_finite_class_lipschitz_and_moments():
    V = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    values = np.array([[0.0, 1.0, 1.0], [0.0, -3.0, 0.0]])
    cls = fc.Finite(values, np.array([0.25, 0.75]))
    # Largest quotient: |−3 − 0| / ‖v_2 − v_3‖ = 3 / √5 vs |−3 − 0| / 1 = 3.
    assert cls.lipschitz(V).L == pytest.approx(3.0)
    np.testing.assert_allclose(cls.moments(V).F, 0.25 * np.outer(values[0], values[0])
                               + 0.75 * np.outer(values[1], values[1]))


def test_given_moments_lower_bound_and_gaussian_sampler():
    V = feat.orthonormal(3).V
    F = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 1.5]])
    cls = fc.GivenMoments(F)
    lip = cls.lipschitz(V)
    assert lip.reconstructed and lip.L == pytest.approx(np.sqrt(3.5 / 2))   # E(f1−f3)² = 3.5, ‖Δv‖ = √2
    mc = fc.monte_carlo_moments(cls, V, 50_000, seed=3)
    assert np.abs(mc.F - F).max() <= 5 * mc.error


@pytest.mark.parametrize("F,needle", [
    ([[1, 2], [0, 1]], "symmetric"),
    ([[1, 2], [2, 1]], "positive semi-definite"),
    ([[1, 0, 0], [0, 1, 0], [0, 0, 1]], "expected a 2×2"),
])
def test_bad_moment_matrices(F, needle):
    with pytest.raises(AttnflowError, match=needle):
        fc.check_moment_matrix(F, 2)


# --- constants and regimes -----------------------------------------------------------

def test_constants_by_hand_linear_orthonormal():
    """Linear, σ, orthonormal: M⁽ᵏ⁾_nn = 2σ², ‖Δv‖ = √2, L = σ√d: δ = 1/√d, LΔδ = σ√2."""
    sigma, K = 0.6, 3
    problem = make_problem(features={"kind": "orthonormal", "K": K}, task={"kind": "linear", "sigma": sigma})
    c = problem.constants()
    assert c.L == pytest.approx(sigma * np.sqrt(K))
    assert c.Delta == pytest.approx(np.sqrt(2))
    assert c.delta == pytest.approx(1 / np.sqrt(K))
    assert c.L_Delta_delta == pytest.approx(sigma * np.sqrt(2))
    assert c.regime == "flat" and c.nondegenerate
    assert make_problem(features={"kind": "orthonormal", "K": K},
                        task={"kind": "linear", "sigma": 0.8}).constants().regime == "sharp"


def test_regime_threshold_is_configurable_and_labelled():
    kw = dict(features={"kind": "simplex", "K": 4, "d": 3}, task={"kind": "single-index", "L": 1.0})
    c = make_problem(**kw).constants()
    assert c.regime == "flat" and 0.5 < c.L_Delta_delta < 1
    assert make_problem(**kw, regime={"threshold": 0.5}).constants().regime == "sharp"
    assert {"Delta", "delta", "regime"} <= set(c.as_dict()["reconstructed"])


def test_degenerate_sign_pattern_class_is_flagged():
    """A reviewer's class: f = ±g with one fixed pattern g; a mixture of wrong features can be exact."""
    g = np.array([1.0, -1.0, 1.0, -1.0])
    problem = make_problem(features={"kind": "orthonormal", "K": 4},
                           task={"kind": "finite", "functions": [g.tolist(), (-g).tolist()]})
    c = problem.constants()
    assert not c.nondegenerate and c.min_offtarget_eigenvalue <= 1e-12
    M = label_gap_stack(problem.F)[0]
    assert M[2, 2] == pytest.approx(0.0)       # features 1 and 3 have the same label in every draw


def test_generated_features_are_built_once_per_kind_size_and_seed():
    """Points of a sweep that differ in the task share one (immutable) feature set; another seed,
    or the same seed in another dimension, gives other features."""
    a = make_problem(features={"kind": "random-unit", "K": 4, "d": 5, "seed": 3}, task={"kind": "linear", "L": 1.0})
    b = make_problem(features={"kind": "random-unit", "K": 4, "d": 5, "seed": 3}, task={"kind": "linear", "L": 2.0})
    c = make_problem(features={"kind": "random-unit", "K": 4, "d": 5, "seed": 4}, task={"kind": "linear", "L": 1.0})
    assert a.features is b.features and not a.features.V.flags.writeable
    assert not np.allclose(a.features.V, c.features.V)
    np.testing.assert_array_equal(a.features.V, feat.random_unit(4, 5, 3).V)
    simplex = make_problem(features={"kind": "simplex", "K": 4, "d": 5, "seed": 9}).features
    assert simplex is make_problem(features={"kind": "simplex", "K": 4, "d": 5, "seed": 1}).features
