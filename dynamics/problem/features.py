"""Discrete feature sets ``V ∈ R^{K×d}`` (rows ``v_1 … v_K``) and their geometry.

Examples
--------
The separation Δ is the smallest distance between two features: √2 for
orthonormal features, √(2K/(K−1)) for a regular simplex.

>>> features = orthonormal(3)
>>> features.K, features.d, features.orthonormal
(3, 3, True)
>>> round(features.Delta, 6)
1.414214
>>> round(simplex(3).Delta, 6)
1.732051
>>> explicit([[1.0, 0.0], [1.0, 0.0]]).Delta
Traceback (most recent call last):
...
attnflow.dynamics.errors.AttnflowError: features.matrix: rows 0 and 1 are the same feature (distance 0); features must be distinct
"""

from dataclasses import dataclass

import numpy as np

from ..errors import AttnflowError


KINDS = ("orthonormal", "random-unit", "simplex", "explicit")


@dataclass(frozen=True)
class FeatureSet:
    """A validated feature matrix with its Gram matrix and separation.

    Attributes
    ----------
    V : (K, d) array
        The features, one per row (read-only).
    kind : str
        How the features were made: one of :data:`KINDS`.
    G : (K, K) array
        Gram matrix ``V Vᵀ``.
    Delta : float
        ``min_{n≠k} ‖v_n − v_k‖`` (reconstructed definition, docs/model.md §3).

    Raises
    ------
    AttnflowError
        ``features.matrix`` when V is not a usable feature matrix (see
        :func:`check_feature_matrix`).
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
        """Number of features."""
        return self.V.shape[0]

    @property
    def d(self):
        """Dimension of the features."""
        return self.V.shape[1]

    @property
    def G(self):
        """Gram matrix ``V Vᵀ``, shape (K, K)."""
        return self.V @ self.V.T

    @property
    def distances(self):
        """``(K, K)`` matrix of ``‖v_n − v_m‖``, with ``inf`` on the diagonal."""
        return pairwise_distances(self.V)

    @property
    def Delta(self):
        """Separation ``Δ = min_{n≠k} ‖v_n − v_k‖``."""
        return float(self.distances.min())

    @property
    def orthonormal(self):
        """Whether ``V Vᵀ`` is the identity (to 1e-12)."""
        return bool(np.allclose(self.G, np.eye(self.K), atol=1e-12))


def pairwise_distances(V):
    """Return ``‖v_n − v_m‖`` for all pairs, ``inf`` on the diagonal (so ``min`` is the separation).

    Parameters
    ----------
    V : array, shape (K, d)

    Returns
    -------
    array, shape (K, K)
    """
    diff = V[:, None, :] - V[None, :, :]
    dist = np.sqrt(np.einsum("nmd,nmd->nm", diff, diff))
    np.fill_diagonal(dist, np.inf)
    return dist


def check_feature_matrix(V, field):
    """Raise :class:`AttnflowError` unless ``V`` is a usable feature matrix.

    Usable: a K×d matrix with K ≥ 2 and d ≥ 1, finite, no zero row, no two equal rows.

    Parameters
    ----------
    V : array
        The candidate matrix.
    field : str
        Configuration field named in the error.

    Raises
    ------
    AttnflowError
        Naming the first row at fault.
    """
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
    """Return the first K standard basis vectors of R^d as a feature set.

    Only G matters to the dynamics, so no rotation.

    Parameters
    ----------
    K : int
        Number of features.
    d : int, optional
        Dimension, at least K; K when None.

    Returns
    -------
    FeatureSet

    Raises
    ------
    AttnflowError
        ``features.d`` when d < K.
    """
    d = K if d is None else d
    if d < K:
        raise AttnflowError("features.d", f"orthonormal features need d ≥ K = {K}, got d = {d}")
    return FeatureSet(np.eye(K, d), kind="orthonormal")


def random_unit(K, d=None, seed=0):
    """Return K independent uniform unit vectors in R^d as a feature set.

    Parameters
    ----------
    K : int
        Number of features.
    d : int, optional
        Dimension; K when None.
    seed : int
        Seed of the generator.

    Returns
    -------
    FeatureSet
    """
    d = K if d is None else d
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((K, d))
    return FeatureSet(X / np.linalg.norm(X, axis=1, keepdims=True), kind="random-unit")


def simplex(K, d=None):
    """Return the K unit vectors of a regular simplex centred at 0: ``v_nᵀ v_m = −1/(K−1)``.

    Parameters
    ----------
    K : int
        Number of vertices.
    d : int, optional
        Dimension, at least K − 1; K when None.

    Returns
    -------
    FeatureSet

    Raises
    ------
    AttnflowError
        ``features.d`` when d < K − 1.
    """
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
    """Return the features given as a list of K rows of d numbers (``features.matrix``).

    Parameters
    ----------
    matrix : array_like, shape (K, d)

    Returns
    -------
    FeatureSet

    Raises
    ------
    AttnflowError
        ``features.matrix`` when the rows are not numbers of one length or do not make
        a usable feature matrix.
    """
    try:
        V = np.array(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        raise AttnflowError("features.matrix", "expected a list of K rows of d numbers each") from None
    return FeatureSet(V, kind="explicit")
