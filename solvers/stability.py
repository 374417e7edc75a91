"""Linear stability of gradient descent on the scores without the K²×K² Jacobian.

The flow ``dS/dt = −G Γ(S) G`` has the Jacobian ``−J = (G ⊗ G) H`` where H is
block-diagonal in the query: block k is ``Hs[k] = ∂Γ[:, k]/∂S[:, k]`` (symmetric).
With ``R = G^½`` (G is a Gram matrix, positive semi-definite), ``(G ⊗ G) H`` has the
nonzero eigenvalues of the symmetric operator

    X ↦ R · Hcol(R X R) · R,        Hcol(Y)[:, k] = Hs[k] Y[:, k],

(``AB`` and ``BA`` share their nonzero eigenvalues, with ``A = R ⊗ R``).  Its largest
eigenvalue λ_max gives the largest linearly stable GD step ``2/λ_max``; Lanczos
(:func:`scipy.sparse.linalg.eigsh`) finds it from products with the operator (up to
K = 8 the assembled K²×K² operator's eigenvalues are faster), each
O(K³) work (four K×K products and the K column blocks) and O(K²) memory besides
the K³ entries of Hs, where the dense Jacobian would take K⁴ entries (34 GB at K = 256).

The operator is applied to ``Xᵀ`` (row k is query k), which permutes the state and
leaves the eigenvalues alone, so every array is read row by row.

Examples
--------
Three features in the plane (G is no identity, so the products with ``R = G^½`` run),
against the eigenvalues of the dense K²×K² Jacobian:

>>> import numpy as np
>>> from attnflow.solvers import ScoreSystem
>>> V = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
>>> G = V @ V.T
>>> system = ScoreSystem(G, 2.0 * G, np.array([0.5, 0.3, 0.2]))
>>> S = np.array([[2.0, 0.5, -0.3], [0.1, 1.5, 0.4], [-0.2, 0.3, 1.0]])
>>> lam = largest_flow_eigenvalue(system.hessians(S), gram_square_root(G))
>>> dense = np.linalg.eigvals(-system.jacobian(S))
>>> bool(abs(lam - dense.real.max()) < 1e-12 * lam), bool(np.abs(dense.imag).max() < 1e-12)
(True, True)
>>> round(lam, 6), round(2 / lam, 4)           # the largest stable GD step is 2/λ_max
(0.093658, 21.3544)
"""

import numpy as np
from numba import njit


def gram_square_root(G):
    """``R = G^½``, the symmetric positive semi-definite square root of a Gram matrix.

    Eigenvalues that rounding left slightly below 0 count as 0; a clearly negative one
    (below −1e-10 of the largest) means G is no Gram matrix, and the similarity above fails.

    Parameters
    ----------
    G : ndarray, shape (K, K)
        Gram matrix ``V Vᵀ`` of the features.

    Returns
    -------
    ndarray, shape (K, K)
        R with ``R R = G``, symmetric; exactly the identity when G is.

    Raises
    ------
    ValueError
        If G has a clearly negative eigenvalue.

    Examples
    --------
    >>> G = np.array([[2.0, 1.0], [1.0, 2.0]])
    >>> R = gram_square_root(G)
    >>> bool(np.allclose(R @ R, G)), bool(np.array_equal(R, R.T))
    (True, True)
    >>> gram_square_root(np.array([[1.0, 2.0], [2.0, 1.0]]))
    Traceback (most recent call last):
    ...
    ValueError: G: expected a positive semi-definite Gram matrix, has eigenvalue -1
    """
    K = G.shape[0]
    if np.array_equal(G, np.eye(K)):
        return np.eye(K)                     # exactly: the products with R are then skipped
    w, U = np.linalg.eigh(G)
    if w[0] < -1e-10 * max(abs(w[-1]), abs(w[0])):
        raise ValueError(f"G: expected a positive semi-definite Gram matrix, has eigenvalue {w[0]:.3g}")
    R = (U * np.sqrt(np.clip(w, 0.0, None))) @ U.T
    return np.ascontiguousarray(0.5 * (R + R.T))


@njit(cache=True)
def symmetrised_flow_product(Hs, R, identity, x):
    """Product ``vec(R · Hcol(R X R) · R)`` of the symmetrised flow operator with ``x = vec(Xᵀ)``.

    Hs must be symmetric (:func:`largest_flow_eigenvalue` symmetrises it once).

    Parameters
    ----------
    Hs : ndarray, shape (K, K, K)
        Symmetric column Hessians.
    R : ndarray, shape (K, K)
        ``G^½``.
    identity : bool
        R is the identity: skip its products.
    x : ndarray, shape (K²,)
        The vector ``vec(Xᵀ)``.

    Returns
    -------
    ndarray, shape (K²,)
    """
    K = R.shape[0]
    Xt = x.reshape((K, K))
    Yt = Xt if identity else R @ Xt @ R          # (R X R)ᵀ = R Xᵀ R: R is symmetric
    Zt = np.empty((K, K))
    for k in range(K):
        H = Hs[k]
        y = Yt[k]
        for n in range(K):
            acc = 0.0
            for m in range(K):
                acc += H[n, m] * y[m]
            Zt[k, n] = acc
    if identity:
        return Zt.ravel()
    return (R @ Zt @ R).ravel()


# Up to K = 8 (K² = 64) the eigenvalues of the assembled operator are found faster than by Lanczos
# (0.02–0.4 ms against 0.3–1.4 ms, measured): a sweep asks for a stable step at every point.
DENSE_MAX_K = 8


def largest_flow_eigenvalue(Hs, R):
    """Largest eigenvalue of ``(G ⊗ G) H`` (that is of −J) from the column Hessians.

    By Lanczos on the matrix-free operator; up to K = :data:`DENSE_MAX_K` from the assembled
    K²×K² operator ``(R ⊗ R) diag(Hs) (R ⊗ R)`` (``numpy.linalg.eigvalsh``), which is faster there.

    Parameters
    ----------
    Hs : ndarray, shape (K, K, K)
        Column Hessians, ``Hs[k] = ∂Γ[:, k]/∂S[:, k]``.
    R : ndarray, shape (K, K)
        ``G^½`` (:func:`gram_square_root`).

    Returns
    -------
    float
        λ_max, 0 when the operator vanishes.  Lanczos starts from a fixed pseudo-random vector
        (reproducible, and with a component on every eigenvector whatever the problem's
        symmetry); the Ritz value is converged to a residual of 1e-14 of its size, so its
        relative error is below that (a symmetric problem's eigenvalue error is at most the residual).

    Raises
    ------
    scipy.sparse.linalg.ArpackNoConvergence
        If Lanczos does not converge in three tries (20, 40, then 80 Lanczos vectors, at most K²).

    Examples
    --------
    See the module's examples: λ_max equals the dense Jacobian's largest eigenvalue.
    """
    K = R.shape[0]
    # Symmetric to the last bit, whatever rounding the kernels left: Lanczos assumes it.
    # In place on one copy: at K = 256 each K³ array is 134 MB.
    Hs = np.array(Hs, dtype=np.float64, order="C")
    for block in Hs:
        block += block.T.copy()
    Hs *= 0.5
    if not np.any(Hs):
        return 0.0
    R = np.ascontiguousarray(R, dtype=np.float64)
    identity = bool(np.array_equal(R, np.eye(K)))
    if K <= DENSE_MAX_K:
        return _assembled(Hs, R, identity)
    return _lanczos(Hs, R, identity)


def _assembled(Hs, R, identity):
    """λ_max of the assembled operator: the blocks' own with R = I, else of ``(R ⊗ R) diag(Hs) (R ⊗ R)``
    (row-major, as :func:`symmetrised_flow_product` applies it)."""
    if identity:
        return float(np.linalg.eigvalsh(Hs)[:, -1].max())
    K = R.shape[0]
    P = np.kron(R, R)
    PD = np.empty((K * K, K * K))
    for k in range(K):
        PD[:, k * K:(k + 1) * K] = P[:, k * K:(k + 1) * K] @ Hs[k]
    M = PD @ P
    return float(np.linalg.eigvalsh(0.5 * (M + M.T))[-1])


def _lanczos(Hs, R, identity):
    """λ_max of the matrix-free operator by Lanczos (see :func:`largest_flow_eigenvalue`)."""
    # Imported here, not at the top: scipy.sparse.linalg costs about 0.1–0.4 s of import and
    # only a GD step from the stability bound needs it, not every run.
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    n = R.shape[0] ** 2
    operator = LinearOperator((n, n), matvec=lambda x: symmetrised_flow_product(
        Hs, R, identity, np.ascontiguousarray(x, dtype=np.float64).ravel()), dtype=np.float64)
    start = np.random.default_rng(0).standard_normal(n)
    ncv = min(n, 20)
    for _ in range(3):
        try:
            return float(eigsh(operator, k=1, which="LA", v0=start, ncv=ncv, tol=1e-14, maxiter=100 * n,
                               return_eigenvectors=False)[0])
        except ArpackNoConvergence:
            ncv = min(n, 2 * ncv)       # a wider Krylov space separates a tight cluster at the top
    raise ArpackNoConvergence("Lanczos did not converge to the largest eigenvalue of the flow Jacobian", [], [])
