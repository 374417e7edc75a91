"""Discrete feature sets ``V ∈ R^{K×d}`` (rows ``v_1 … v_K``) and their geometry."""

from dataclasses import dataclass

import numpy as np

from ..errors import AttnflowError


KINDS = ("orthonormal", "random-unit", "simplex", "explicit")


@dataclass(frozen=True)
class FeatureSet:
    """A validated feature matrix with its Gram matrix and separation.

    Attributes
    ----------
    V : (K, d) array, rows are the features.
    G : (K, K) Gram matrix ``V Vᵀ``.
    Delta : ``min_{n≠k} ‖v_n − v_k‖`` (reconstructed definition, docs/model.md §3).
    """

    V: np.ndarray
    kind: str = "explicit"

    def __post_init__(self):
        V = np.array(self.V, dtype=np.float64)
        check_feature_matrix(V, "features.matrix")
        V.setflags(write=False)
        object.__setattr__(self, "V", V)

    @property
    def K(self):
        return self.V.shape[0]

    @property
    def d(self):
        return self.V.shape[1]

    @property
    def G(self):
        return self.V @ self.V.T

    @property
    def distances(self):
        """``(K, K)`` matrix of ``‖v_n − v_m‖``, with ``inf`` on the diagonal."""
        return pairwise_distances(self.V)

    @property
    def Delta(self):
        return float(self.distances.min())

    @property
    def orthonormal(self):
        return bool(np.allclose(self.G, np.eye(self.K), atol=1e-12))


def pairwise_distances(V):
    """``‖v_n − v_m‖`` for all pairs, ``inf`` on the diagonal (so ``min`` is the separation)."""
    diff = V[:, None, :] - V[None, :, :]
    dist = np.sqrt(np.einsum("nmd,nmd->nm", diff, diff))
    np.fill_diagonal(dist, np.inf)
    return dist


def check_feature_matrix(V, field):
    """Raise :class:`AttnflowError` unless ``V`` is a usable feature matrix."""
    if V.ndim != 2:
        raise AttnflowError(field, f"expected a K×d matrix, got an array of shape {V.shape}")
    K, d = V.shape
    if K < 2:
        raise AttnflowError(field, f"need at least K = 2 features, got {K}")
    if d < 1:
        raise AttnflowError(field, "features need at least one coordinate (d ≥ 1)")
    if not np.all(np.isfinite(V)):
        n = int(np.argwhere(~np.isfinite(V))[0, 0])
        raise AttnflowError(field, f"row {n} has a non-finite entry")
    norms = np.linalg.norm(V, axis=1)
    scale = norms.max()
    if scale == 0 or norms.min() <= 1e-12 * scale:
        n = int(np.argmin(norms))
        raise AttnflowError(
            field, f"row {n} is the zero vector: its scores v_nᵀQv_k stay 0, so nothing about it can be learned")
    dist = pairwise_distances(V)
    n, m = np.unravel_index(np.argmin(dist), dist.shape)
    if dist[n, m] <= 1e-9 * scale:
        raise AttnflowError(field, f"rows {min(n, m)} and {max(n, m)} are the same feature (distance "
                                   f"{dist[n, m]:.3g}); features must be distinct")


def orthonormal(K, d=None):
    """The first K standard basis vectors of R^d (d ≥ K).  Only G matters, so no rotation."""
    d = K if d is None else d
    if d < K:
        raise AttnflowError("features.d", f"orthonormal features need d ≥ K = {K}, got d = {d}")
    return FeatureSet(np.eye(K, d), kind="orthonormal")


def random_unit(K, d=None, seed=0):
    """K independent uniform unit vectors in R^d, seeded."""
    d = K if d is None else d
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((K, d))
    return FeatureSet(X / np.linalg.norm(X, axis=1, keepdims=True), kind="random-unit")


def simplex(K, d=None):
    """K unit vectors of a regular simplex centred at 0: ``v_nᵀ v_m = −1/(K−1)``; d ≥ K − 1."""
    d = K if d is None else d
    if d < K - 1:
        raise AttnflowError("features.d", f"a regular simplex of K = {K} vertices needs d ≥ {K - 1}, got d = {d}")
    C = np.eye(K) - 1.0 / K                      # centred basis vectors, in R^K
    # Coordinates in an orthonormal basis of the (K−1)-dim span, padded to d.
    U, s, _ = np.linalg.svd(C)
    coords = C @ U[:, : K - 1]
    coords /= np.linalg.norm(coords, axis=1, keepdims=True)
    V = np.zeros((K, d))
    V[:, : K - 1] = coords
    return FeatureSet(V, kind="simplex")


def explicit(matrix):
    try:
        V = np.array(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        raise AttnflowError("features.matrix", "expected a list of K rows of d numbers each") from None
    return FeatureSet(V, kind="explicit")
