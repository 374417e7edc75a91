"""Random function classes 𝓕 and their moments ``F = E_f[f(V) f(V)ᵀ]``.

Noise-free, with the query kept out of the softmax, the dynamics see the class
only through the K×K matrix F (docs/model.md §2).  Each class here gives

* ``moments(V, method)``: F with the method used and an error estimate,
* ``lipschitz(V)``: its Lipschitz constant L and where that number comes from,
* ``sample_labels(rng, X, idx)``: labels of one random function per prompt, for
  Monte Carlo moments and for training the real network on sampled prompts.

Where a class draws a direction ``w`` uniformly from the unit sphere, the
two-dimensional projections ``(wᵀa, wᵀb)`` are integrated by Gauss–Jacobi
quadrature in the exact marginal densities of the sphere, and ``E cos(wᵀu)`` has
the closed form ``Γ(d/2) (2/r)^{d/2−1} J_{d/2−1}(r)``, ``r = ‖u‖``.

Examples
--------
The linear class ``f(x) = wᵀx``, ``w ~ N(0, σ² I)``, has ``F = σ² V Vᵀ``, so on
orthonormal features F is ``σ²`` times the identity, in closed form:

>>> from attnflow.dynamics.problem.features import orthonormal
>>> V = orthonormal(3).V
>>> moments = Linear(sigma=2.0).moments(V)
>>> moments.method, moments.error
('exact', 0.0)
>>> moments.F
array([[4., 0., 0.],
       [0., 4., 0.],
       [0., 0., 4.]])
>>> float(Linear(sigma=2.0).lipschitz(V).L)    # RMS of ‖w‖ = σ√d
3.4641...

Quadrature and Monte Carlo agree with a closed form to their stated error:

>>> sharp = Frequency(L=3.0)
>>> quadrature = sharp.moments(V, "quadrature")
>>> bool(abs(quadrature.F - sharp.moments(V, "exact").F).max() < 1e-8)
True
"""

from dataclasses import dataclass, field

import numpy as np
from scipy import special

from ..errors import AttnflowError
from .features import pairwise_distances


KINDS = ("linear", "single-index", "frequency", "expression", "finite", "moments")
LINKS = ("sin", "tanh", "relu", "erf", "identity")
METHODS = ("auto", "exact", "quadrature", "monte-carlo")

_LINK_FUNCTIONS = {
    "sin": np.sin,
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "erf": special.erf,
    "identity": lambda z: z,
}
# Lipschitz constants of the links; f = L φ(wᵀx) / Lip(φ) is then exactly L-Lipschitz.
_LINK_LIPSCHITZ = {"sin": 1.0, "tanh": 1.0, "relu": 1.0, "erf": 2.0 / np.sqrt(np.pi), "identity": 1.0}


@dataclass(frozen=True)
class Moments:
    """``F`` with how it was obtained: ``error`` bounds ``max |F − F_true|``.

    For quadrature, ``error`` is the change between n and 2n nodes per axis; for
    Monte Carlo, the largest standard error of an entry; 0 for closed forms.
    """

    F: np.ndarray
    method: str
    error: float = 0.0
    detail: str = ""


@dataclass(frozen=True)
class Lipschitz:
    """The class's Lipschitz constant and a label saying what kind of number it is."""

    L: float
    source: str
    reconstructed: bool = False


def sphere_cos_mean(u, d):
    """Return ``E[cos(wᵀu)]`` for ``w`` uniform on the unit sphere of R^d.

    Parameters
    ----------
    u : array, shape (..., d)
        Vectors along the last axis.
    d : int
        Dimension of the sphere's ambient space.

    Returns
    -------
    array, shape (...)
        ``Γ(d/2) (2/r)^{d/2−1} J_{d/2−1}(r)`` with ``r = ‖u‖`` (``cos r`` for d = 1),
        by its Taylor series ``1 − r²/(2d)`` near ``r = 0``.
    """
    r = np.linalg.norm(u, axis=-1)
    if d == 1:
        return np.cos(r)
    nu = d / 2.0 - 1.0
    small = r < 1e-6
    rs = np.where(small, 1.0, r)
    out = special.gamma(d / 2.0) * (2.0 / rs) ** nu * special.jv(nu, rs)
    return np.where(small, 1.0 - r**2 / (2.0 * d), out)


def _pair_indices(K):
    return np.triu_indices(K)


def _symmetric_from_pairs(K, values):
    F = np.empty((K, K))
    i, j = _pair_indices(K)
    F[i, j] = values
    F[j, i] = values
    return F


def sphere_pair_quadrature(phi, V, nodes):
    """Integrate ``F_nm = E_w[φ(wᵀv_n) φ(wᵀv_m)]`` by quadrature, ``w`` uniform on the sphere of R^d.

    Writing ``v_m = b1 e1 + b2 e2`` with ``e1 = v_n/‖v_n‖``, only ``t = wᵀe1`` and
    ``u = wᵀe2`` matter.  For d ≥ 3, ``t`` has density ∝ (1−t²)^((d−3)/2) and, given
    t, ``u = √(1−t²) s`` with s of density ∝ (1−s²)^((d−4)/2): a product of
    Gauss–Jacobi rules.  For d = 2, ``(t, u) = (cos θ, sin θ)`` with the trapezoid
    rule (spectral for periodic integrands); for d = 1, ``w = ±1``.

    Parameters
    ----------
    phi : callable
        Vectorised scalar function φ.
    V : array, shape (K, d)
        Features, one per row.
    nodes : int
        Nodes per axis.

    Returns
    -------
    array, shape (K, K)
        The symmetric matrix F.
    """
    K, d = V.shape
    i, j = _pair_indices(K)
    a, b = V[i], V[j]
    na = np.linalg.norm(a, axis=1)
    b1 = np.einsum("pd,pd->p", a, b) / na
    b2 = np.sqrt(np.maximum(np.einsum("pd,pd->p", b, b) - b1**2, 0.0))
    if d == 1:
        t = np.array([1.0, -1.0])
        vals = 0.5 * (phi(na[:, None] * t) * phi(b1[:, None] * t)).sum(axis=1)
        return _symmetric_from_pairs(K, vals)
    if d == 2:
        theta = 2 * np.pi * np.arange(nodes) / nodes
        t, u = np.cos(theta), np.sin(theta)
        vals = (phi(na[:, None] * t) * phi(b1[:, None] * t + b2[:, None] * u)).mean(axis=1)
        return _symmetric_from_pairs(K, vals)
    t, wt = special.roots_jacobi(nodes, (d - 3) / 2.0, (d - 3) / 2.0)
    s, ws = special.roots_jacobi(nodes, (d - 4) / 2.0, (d - 4) / 2.0)
    wt, ws = wt / wt.sum(), ws / ws.sum()
    u = np.sqrt(1 - t**2)[:, None] * s[None, :]                    # (nt, ns)
    first = phi(na[:, None] * t)                                   # (P, nt)
    second = phi(b1[:, None, None] * t[None, :, None] + b2[:, None, None] * u[None])
    vals = np.einsum("pt,pts,t,s->p", first, second, wt, ws)
    return _symmetric_from_pairs(K, vals)


def adaptive_sphere_quadrature(phi, V, tol=1e-10, start=32, max_nodes=1024):
    """Compute F by :func:`sphere_pair_quadrature`, doubling the nodes until two rules agree.

    Parameters
    ----------
    phi : callable
        Vectorised scalar function φ.
    V : array, shape (K, d)
        Features, one per row.
    tol : float
        Agreement asked of two successive rules, relative to ``max |F|``.
    start, max_nodes : int
        Nodes per axis of the first rule, and the most nodes tried.

    Returns
    -------
    Moments
        F from the finer rule; ``error`` is the change from the coarser one.
    """
    n = start
    F = sphere_pair_quadrature(phi, V, n)
    while True:
        F2 = sphere_pair_quadrature(phi, V, 2 * n)
        err = float(np.abs(F2 - F).max())
        scale = max(float(np.abs(F2).max()), 1e-300)
        if err <= tol * scale or 2 * n >= max_nodes or V.shape[1] == 1:
            return Moments(F2, "quadrature", err, f"Gauss–Jacobi, {2 * n} nodes per axis")
        F, n = F2, 2 * n


def monte_carlo_moments(cls, V, samples, seed, batch_entries=20_000_000):
    """Estimate F by sampling functions from ``cls``.

    The products ``f(v_n) f(v_m)`` are summed in batches of at most ``batch_entries``
    numbers, so memory stays bounded whatever ``samples`` and K are.

    Parameters
    ----------
    cls : FunctionClass
        The class whose ``sample_labels`` draws the functions.
    V : array, shape (K, d)
        Features, one per row.
    samples : int
        Number of sampled functions (at least 2).
    seed : int
        Seed of the generator.
    batch_entries : int
        Most numbers held in one batch of products.

    Returns
    -------
    Moments
        The sample mean; ``error`` is the largest standard error of an entry.
    """
    rng = np.random.default_rng(seed)
    K = V.shape[0]
    batch = max(2, batch_entries // (K * K))
    total, total_sq = np.zeros((K, K)), np.zeros((K, K))
    for start in range(0, samples, batch):
        size = min(batch, samples - start)
        idx = np.broadcast_to(np.arange(K), (size, K))
        X = np.broadcast_to(V, (size,) + V.shape)
        Y = cls.sample_labels(rng, X, idx)                         # (size, K)
        prods = Y[:, :, None] * Y[:, None, :]
        total += prods.sum(axis=0)
        total_sq += (prods**2).sum(axis=0)
    F = total / samples
    var = np.maximum(total_sq / samples - F**2, 0.0) * samples / (samples - 1)
    se = np.sqrt(var / samples)
    return Moments(F, "monte-carlo", float(se.max()), f"{samples} sampled functions, seed {seed}")


def uniform_sphere(rng, size, d):
    """Draw ``size`` independent directions uniform on the unit sphere of R^d, shape (size, d)."""
    w = rng.standard_normal((size, d))
    return w / np.linalg.norm(w, axis=1, keepdims=True)


@dataclass(frozen=True)
class FunctionClass:
    """Base class of the function classes 𝓕.

    Subclasses give ``exact_moments`` and/or ``quadrature_moments``, ``sample_labels``,
    ``lipschitz`` and ``describe``.  Asking for quadrature on a class whose moments are a
    closed form returns the closed form.
    """

    def exact_moments(self, V):
        """Return F in closed form, or None when the class has none.

        Parameters
        ----------
        V : array, shape (K, d)
            Features, one per row.

        Returns
        -------
        array, shape (K, K), or None
        """
        return None

    def quadrature_moments(self, V):
        """Return F by deterministic quadrature, or None when quadrature does not apply.

        Parameters
        ----------
        V : array, shape (K, d)
            Features, one per row.

        Returns
        -------
        Moments or None
            ``error`` estimates the quadrature error.
        """
        return None

    def moments(self, V, method="auto", mc_samples=200_000, seed=0):
        """Return ``F = E_f[f(V) f(V)ᵀ]`` by the method asked for.

        Parameters
        ----------
        V : array, shape (K, d)
            Features, one per row.
        method : {"auto", "exact", "quadrature", "monte-carlo"}
            ``"auto"`` takes the closed form when there is one, quadrature otherwise.
        mc_samples : int
            Sampled functions for ``"monte-carlo"``.
        seed : int
            Seed for ``"monte-carlo"``.

        Returns
        -------
        Moments
            F, the method actually used and an error estimate.

        Raises
        ------
        AttnflowError
            ``task.moment_method`` when the class has no closed form and ``"exact"`` was
            asked for, or neither closed form nor quadrature applies.
        """
        if method == "monte-carlo":
            return monte_carlo_moments(self, V, mc_samples, seed)
        if method in ("auto", "exact"):
            exact = self.exact_moments(V)
            if exact is not None:
                return Moments(exact, "exact", 0.0, "closed form")
            if method == "exact":
                raise AttnflowError("task.moment_method",
                                    f"no closed form for {self.describe()}; use \"quadrature\" or \"auto\"")
        quad = self.quadrature_moments(V)
        if quad is not None:
            return quad
        exact = self.exact_moments(V)
        if exact is None:
            raise AttnflowError("task.moment_method", f"quadrature does not apply to {self.describe()}")
        return Moments(exact, "exact", 0.0, "closed form (no quadrature needed)")

    def describe(self):
        """Return a short human-readable name of the class and its parameters."""
        return type(self).__name__


@dataclass(frozen=True)
class Linear(FunctionClass):
    """``f(x) = wᵀx``, ``w ~ N(0, σ² I)``: the task of Huang, Cheng, Liang (2023).

    Reconstructed: a Gaussian w has no finite Lipschitz bound, so L is the RMS
    Lipschitz constant ``(E‖w‖²)^{1/2} = σ √d``.
    """

    sigma: float = 1.0

    def exact_moments(self, V):
        return self.sigma**2 * (V @ V.T)

    def lipschitz(self, V):
        """Return the RMS Lipschitz constant ``σ√d`` (reconstructed: a Gaussian w has no bound)."""
        return Lipschitz(self.sigma * np.sqrt(V.shape[1]), "RMS of ‖w‖ = σ√d", reconstructed=True)

    def sample_labels(self, rng, X, idx):
        """Draw ``w ~ N(0, σ² I)`` per prompt and return the labels ``wᵀx``, shape (B, T)."""
        w = self.sigma * rng.standard_normal((X.shape[0], X.shape[-1]))
        return np.einsum("btd,bd->bt", X, w)

    def describe(self):
        return f"linear (sigma = {self.sigma:g})"


@dataclass(frozen=True)
class SingleIndex(FunctionClass):
    """``f(x) = L φ(wᵀx) / Lip(φ)``, ``w`` uniform on the unit sphere: every draw is L-Lipschitz."""

    L: float = 1.0
    link: str = "sin"

    @property
    def scale(self):
        """The factor ``L / Lip(φ)`` that makes every draw exactly L-Lipschitz."""
        return self.L / _LINK_LIPSCHITZ[self.link]

    def exact_moments(self, V):
        d = V.shape[1]
        c2 = self.scale**2
        if self.link == "identity":
            return c2 * (V @ V.T) / d
        if self.link == "sin":
            diff = V[:, None, :] - V[None, :, :]
            summ = V[:, None, :] + V[None, :, :]
            return c2 * 0.5 * (sphere_cos_mean(diff, d) - sphere_cos_mean(summ, d))
        if self.link == "relu":
            # relu is 1-homogeneous: the sphere average is the Gaussian arc-cosine kernel / d.
            n = np.linalg.norm(V, axis=1)
            cos = np.clip((V @ V.T) / np.outer(n, n), -1.0, 1.0)
            theta = np.arccos(cos)
            return c2 * np.outer(n, n) * (np.sin(theta) + (np.pi - theta) * cos) / (2 * np.pi * d)
        return None

    def quadrature_moments(self, V):
        phi = _LINK_FUNCTIONS[self.link]
        m = adaptive_sphere_quadrature(phi, V)
        return Moments(self.scale**2 * m.F, m.method, self.scale**2 * m.error, m.detail)

    def lipschitz(self, V):
        """Return L: every draw is exactly L-Lipschitz."""
        return Lipschitz(self.L, "every draw is L-Lipschitz")

    def sample_labels(self, rng, X, idx):
        """Draw a direction w per prompt and return ``L φ(wᵀx) / Lip(φ)``, shape (B, T)."""
        w = uniform_sphere(rng, X.shape[0], X.shape[-1])
        return self.scale * _LINK_FUNCTIONS[self.link](np.einsum("btd,bd->bt", X, w))

    def describe(self):
        return f"single-index (L = {self.L:g}, link = {self.link})"


@dataclass(frozen=True)
class Frequency(FunctionClass):
    """``f(x) = sin(L wᵀx)``, ``w`` uniform on the unit sphere: bounded labels, L-Lipschitz."""

    L: float = 1.0

    def exact_moments(self, V):
        d = V.shape[1]
        diff = V[:, None, :] - V[None, :, :]
        summ = V[:, None, :] + V[None, :, :]
        return 0.5 * (sphere_cos_mean(self.L * diff, d) - sphere_cos_mean(self.L * summ, d))

    def quadrature_moments(self, V):
        return adaptive_sphere_quadrature(lambda z: np.sin(self.L * z), V)

    def lipschitz(self, V):
        """Return L: every draw is L-Lipschitz."""
        return Lipschitz(self.L, "every draw is L-Lipschitz")

    def sample_labels(self, rng, X, idx):
        """Draw a direction w per prompt and return ``sin(L wᵀx)``, shape (B, T)."""
        w = uniform_sphere(rng, X.shape[0], X.shape[-1])
        return np.sin(self.L * np.einsum("btd,bd->bt", X, w))

    def describe(self):
        return f"frequency (L = {self.L:g})"


@dataclass(frozen=True)
class Finite(FunctionClass):
    """An explicit list of J functions, given by their values on the features, with weights."""

    values: np.ndarray = field(default=None)   # (J, K)
    weights: np.ndarray = field(default=None)  # (J,), sums to one

    def exact_moments(self, V):
        return np.einsum("j,jn,jm->nm", self.weights, self.values, self.values)

    def lipschitz(self, V):
        """Return the largest difference quotient of the used functions on the features (exact)."""
        # On a finite set the best Lipschitz constant of a real function is attained by
        # its McShane extension, so the largest difference quotient is exact.
        diff = np.abs(self.values[:, :, None] - self.values[:, None, :])
        dist = pairwise_distances(V)
        used = self.weights > 0
        return Lipschitz(float((diff[used] / dist).max()), "largest difference quotient on the features")

    def sample_labels(self, rng, X, idx):
        """Draw one of the J functions per prompt by its weight and return its values at ``idx``."""
        j = rng.choice(len(self.weights), size=X.shape[0], p=self.weights)
        return self.values[j[:, None], idx]

    def describe(self):
        return f"finite ({len(self.weights)} functions)"


@dataclass(frozen=True)
class GivenMoments(FunctionClass):
    """A raw moment matrix F.  Sampled labels are Gaussian ``f(V) ~ N(0, F)``, one class with these moments."""

    F: np.ndarray = field(default=None)
    L: float = None

    def exact_moments(self, V):
        return self.F

    def lipschitz(self, V):
        """Return the stated L, or the lower bound ``max √E(f_n−f_k)² / ‖v_n−v_k‖`` from F."""
        if self.L is not None:
            return Lipschitz(self.L, "given")
        dg = np.diag(self.F)
        Mnn = dg[:, None] + dg[None, :] - 2 * self.F          # E[(f_n − f_k)²]
        dist = pairwise_distances(V)
        return Lipschitz(float((np.sqrt(np.maximum(Mnn, 0)) / dist).max()),
                         "lower bound max √E(f_n−f_k)² / ‖v_n−v_k‖ (task.L not given)", reconstructed=True)

    def sample_labels(self, rng, X, idx):
        """Draw ``f(V) ~ N(0, F)`` per prompt and return its values at ``idx``, shape (B, T)."""
        lam, U = np.linalg.eigh(self.F)          # F may be singular: no Cholesky
        root = U * np.sqrt(np.maximum(lam, 0.0))
        Y = rng.standard_normal((X.shape[0], len(self.F))) @ root.T
        return np.take_along_axis(Y, idx, axis=1)

    def describe(self):
        return "given moment matrix"


def check_moment_matrix(F, K, field_name="task.F"):
    """Check that F is a finite, symmetric, positive semi-definite K×K matrix.

    Parameters
    ----------
    F : array_like
        The candidate moment matrix.
    K : int
        Number of features.
    field_name : str
        Configuration field named in the error.

    Returns
    -------
    array, shape (K, K)
        F as floats, symmetrised (rounding-level asymmetry removed).

    Raises
    ------
    AttnflowError
        When F has the wrong shape, a non-finite entry, is not symmetric or has a
        negative eigenvalue (beyond rounding).
    """
    F = np.asarray(F, dtype=np.float64)
    if F.shape != (K, K):
        raise AttnflowError(field_name, f"expected a {K}×{K} matrix (K = features.K), got shape {F.shape}")
    if not np.all(np.isfinite(F)):
        raise AttnflowError(field_name, "has a non-finite entry")
    scale = max(np.abs(F).max(), 1e-300)
    if np.abs(F - F.T).max() > 1e-10 * scale:
        raise AttnflowError(field_name, "must be symmetric (it is E[f(V) f(V)ᵀ])")
    lam = np.linalg.eigvalsh(F).min()
    if lam < -1e-10 * scale:
        raise AttnflowError(field_name, f"must be positive semi-definite; smallest eigenvalue {lam:.3g}")
    return 0.5 * (F + F.T)


@dataclass(frozen=True)
class Expression(FunctionClass):
    """``f(x) = expr(x; θ)`` with independent random parameters θ (see :mod:`attnflow.derivations.moments`)."""

    text: str = ""
    expr: object = None
    xs: tuple = ()
    params: tuple = ()
    laws: dict = field(default_factory=dict)
    L: float = None
    lipschitz_draws: int = 2000

    @classmethod
    def parse(cls, text, parameters, d, L=None):
        """Build the class from the configuration's expression text and parameter laws.

        Parameters
        ----------
        text : str
            The expression in ``x1 … xd`` and the parameters (``task.expression``).
        parameters : dict or None
            Parameter name → law specification (``task.parameters``).
        d : int
            Dimension of the features.
        L : float, optional
            A stated Lipschitz bound (``task.L``); estimated when None.

        Returns
        -------
        Expression

        Raises
        ------
        AttnflowError
            When a law or the expression does not parse, or a declared parameter is unused.
        """
        from ...derivations import moments as sm
        laws = {}
        for name, spec in (parameters or {}).items():
            try:
                laws[name] = sm.parse_parameter(name, spec)
            except ValueError as e:
                raise AttnflowError(f"task.parameters.{name}", str(e)) from None
        try:
            expr, xs, params = sm.parse_expression(text, d, list(laws))
        except ValueError as e:
            raise AttnflowError("task.expression", str(e)) from None
        unused = sorted(str(p) for p in params if p not in expr.free_symbols)
        if unused:
            raise AttnflowError(f"task.parameters.{unused[0]}", f"is declared but {text!r} does not use it")
        return cls(text, expr, xs, params, {p: laws[str(p)] for p in params}, L)

    def exact_moments(self, V):
        from ...derivations import moments as sm
        try:
            return sm.exact_moments(self.expr, self.xs, self.params, self.laws, V)
        except sm.NoClosedForm:
            return None

    def quadrature_moments(self, V):
        from ...derivations import moments as sm
        try:
            F, err, n = sm.quadrature_moments(self.expr, self.xs, self.params, self.laws, V)
        except sm.NoClosedForm as e:
            raise AttnflowError("task.moment_method", str(e)) from None
        return Moments(F, "quadrature", err, f"tensor Gauss rule, {n} nodes per random parameter")

    def _draw(self, rng, size):
        return [self.laws[p].sample(rng, size) for p in self.params]

    def sample_labels(self, rng, X, idx):
        """Draw θ per prompt from its laws and return ``expr(x; θ)`` on the tokens, shape (B, T)."""
        from ...derivations import moments as sm
        theta = [t.reshape((-1,) + (1,) * (X.ndim - 2)) for t in self._draw(rng, X.shape[0])]
        return sm.values_on(self.expr, self.xs, self.params)(X, theta)

    def lipschitz(self, V):
        """Return the stated ``task.L``, or estimate L from the gradient of the expression.

        The estimate is the RMS over ``lipschitz_draws`` draws of θ of the largest
        ``‖∇f‖`` on the features and 200 random points of their convex hull.

        Raises
        ------
        AttnflowError
            ``task.L`` when the estimate is not finite.
        """
        if self.L is not None:
            return Lipschitz(self.L, "stated bound (task.L)")
        import sympy as sp
        grad = sp.lambdify(list(self.xs) + list(self.params), [sp.diff(self.expr, x) for x in self.xs], "numpy")
        rng = np.random.default_rng(0)
        # The features and random points of their convex hull.
        points = np.vstack([V, rng.dirichlet(np.ones(len(V)), 200) @ V])
        theta = [t[:, None] for t in self._draw(rng, self.lipschitz_draws)]
        with np.errstate(all="ignore"):              # an overflow or a pole is reported below
            G = np.stack([np.asarray(g, dtype=complex).real * np.ones((self.lipschitz_draws, len(points)))
                          for g in grad(*points.T, *theta)])
            per_draw = np.sqrt((G**2).sum(axis=0)).max(axis=1)
            L = float(np.sqrt(np.mean(per_draw**2)))
        if not np.isfinite(L):
            raise AttnflowError("task.L", f"the estimated Lipschitz constant of {self.text!r} is not finite (its "
                                          "gradient overflows or is undefined near the features); state task.L")
        return Lipschitz(L,
                         f"estimated: RMS over {self.lipschitz_draws} draws of the largest ‖∇f‖ on the features "
                         "and 200 points of their convex hull", reconstructed=True)

    def describe(self):
        return f"expression {self.text}"
