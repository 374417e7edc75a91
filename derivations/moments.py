"""Moments ``F = E[f(V) f(V)ᵀ]`` of a function class given as a SymPy expression.

The class is ``f(x) = expr(x0, …, x{d−1}; θ)`` with independent random parameters
θ, each ``normal(μ, σ)`` or ``uniform(a, b)`` (or a fixed number).  Three routes:

* exact: the covariance kernel ``κ(x, y) = E_θ[f(x) f(y)]`` is computed once,
  symbolically.  Trigonometric and hyperbolic functions are rewritten as
  exponentials; every term must then be a monomial in θ times ``exp(αᵀθ + β)``
  with α, β free of θ (linear, sine and cosine of Gaussian or uniform projections,
  and similar).  For each parameter ``E[θ^j e^{αθ}] = ∂^j_α M(α)`` with the moment
  generating function M of its distribution.  Other expressions raise
  :class:`NoClosedForm`.
* quadrature: a tensor Gauss rule over the random parameters (Hermite for normal,
  Legendre for uniform), with the number of nodes per axis doubled until two rules
  agree; the change is the reported error.
* Monte Carlo is done by the function class in :mod:`dynamics` with the sampler here.
"""

import math
import re
from dataclasses import dataclass

import numpy as np
import sympy as sp
from scipy import special

from .safe_expression import UnsafeExpression, build, build_number, check_name

MAX_PARAMETER = 1e6      # magnitude of a parameter's mean, bounds or value

_DIST = re.compile(r"^\s*(normal|uniform)\s*\(\s*([^,()]+)\s*,\s*([^,()]+)\s*\)\s*$")


class NoClosedForm(Exception):
    """The expression is outside what the exact route handles."""


@dataclass(frozen=True)
class Parameter:
    """The law of one random parameter θ of an expression class.

    Attributes
    ----------
    name : str
    kind : {"normal", "uniform", "fixed"}
    a : float
        μ, the lower bound, or the value.
    b : float
        σ, or the upper bound.
    """

    name: str
    kind: str          # "normal", "uniform" or "fixed"
    a: float           # μ, lower bound, or the value
    b: float = 0.0     # σ, upper bound

    def mgf(self, t):
        """Return the moment generating function ``E[e^{tθ}]`` as a SymPy expression in t."""
        a, b = sp.nsimplify(self.a), sp.nsimplify(self.b)
        if self.kind == "fixed":
            return sp.exp(a * t)
        if self.kind == "normal":
            return sp.exp(a * t + b**2 * t**2 / 2)
        return (sp.exp(b * t) - sp.exp(a * t)) / ((b - a) * t)

    def moment_times_exp(self, j, alpha):
        """Return ``E[θ^j e^{αθ}]`` exactly, as a SymPy expression.

        Parameters
        ----------
        j : int
            Power of θ.
        alpha : sympy.Expr
            Rate of the exponential (the uniform law's ``α = 0`` is taken in closed form).
        """
        t = sp.Dummy("t")
        if self.kind == "uniform" and sp.simplify(alpha) == 0:
            a, b = sp.nsimplify(self.a), sp.nsimplify(self.b)
            return (b ** (j + 1) - a ** (j + 1)) / ((j + 1) * (b - a))
        return sp.diff(self.mgf(t), t, j).subs(t, alpha)

    def nodes(self, n):
        """Return n quadrature nodes and weights (summing to one) for this parameter's law.

        Gauss–Hermite for a normal law, Gauss–Legendre for a uniform one, the value
        itself (one node) for a fixed one.

        Returns
        -------
        (array, array)
        """
        if self.kind == "fixed":
            return np.array([self.a]), np.array([1.0])
        if self.kind == "normal":
            x, w = special.roots_hermitenorm(n)
            return self.a + self.b * x, w / w.sum()
        x, w = special.roots_legendre(n)
        return self.a + (self.b - self.a) * (x + 1) / 2, w / w.sum()

    def sample(self, rng, size):
        """Draw ``size`` independent values of θ with the generator ``rng``, shape (size,)."""
        if self.kind == "fixed":
            return np.full(size, self.a)
        if self.kind == "normal":
            return rng.normal(self.a, self.b, size)
        return rng.uniform(self.a, self.b, size)


def parse_parameter(name, spec):
    """Parse the law of one random parameter.

    Parameters
    ----------
    name : str
        The parameter's name (a plain identifier, not a reserved one).
    spec : str or float
        ``"normal(0, 1)"``, ``"uniform(-1, 1)"`` or a number (a fixed value).

    Returns
    -------
    Parameter

    Raises
    ------
    ValueError
        Naming what is wrong; :class:`~attnflow.dynamics.problem.function_classes.Expression`
        turns it into ``task.parameters.NAME``.
    """
    check_name(name)
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        if not abs(spec) <= MAX_PARAMETER:
            raise ValueError(f"expected a finite number of magnitude ≤ {MAX_PARAMETER:g}, got {spec!r}")
        return Parameter(name, "fixed", float(spec))
    m = _DIST.match(spec) if isinstance(spec, str) else None
    if not m:
        raise ValueError(f"expected a number, \"normal(mean, std)\" or \"uniform(low, high)\", got {spec!r}")
    try:
        a, b = build_number(m.group(2)), build_number(m.group(3))
    except UnsafeExpression as e:
        raise ValueError(f"the arguments of {spec!r} must be numbers: {e}") from None
    if max(abs(a), abs(b)) > MAX_PARAMETER:
        raise ValueError(f"the arguments of {spec!r} must be at most {MAX_PARAMETER:g} in magnitude")
    if m.group(1) == "normal" and not b > 0:
        raise ValueError(f"normal needs a positive standard deviation, got {b:g}")
    if m.group(1) == "uniform" and not b > a:
        raise ValueError(f"uniform needs low < high, got {a:g}, {b:g}")
    return Parameter(name, m.group(1), a, b)


def parse_expression(text, d, names):
    """Parse an expression in ``x0 … x{d−1}`` and the parameter names into SymPy.

    The text is never evaluated as Python: :mod:`attnflow.derivations.safe_expression` builds the
    expression from its syntax tree, allowing only arithmetic and a named set of functions.

    Parameters
    ----------
    text : str
        The expression.
    d : int
        Dimension of the features: the coordinates are ``x0 … x{d−1}``.
    names : list of str
        The random parameters' names.

    Returns
    -------
    (sympy.Expr, tuple of Symbol, tuple of Symbol)
        The expression, the coordinate symbols and the parameter symbols.

    Raises
    ------
    ValueError
        When anything else appears, or the expression does not depend on the coordinates.
    """
    for name in names:
        check_name(name)
    xs = tuple(sp.Symbol(f"x{i}", real=True) for i in range(d))
    params = tuple(sp.Symbol(name, real=True) for name in names)
    expr = build(text, {str(s): s for s in xs + params})      # raises UnsafeExpression, a ValueError
    if not expr.free_symbols & set(xs):
        raise ValueError(f"{text!r} does not depend on x0..x{d - 1}: the labels carry no information")
    return expr, xs, params


def _exp_polynomial(expr):
    """Rewrite trigonometric/hyperbolic functions as exponentials and expand into terms."""
    return sp.expand(sp.powsimp(sp.expand(expr.rewrite(sp.exp)), combine="exp"))


def _expect(product, params, laws):
    """``E_θ`` of a sum of terms ``c · Π θ_p^{j_p} · exp(αᵀθ + β)``, exactly; else NoClosedForm."""
    total = 0
    for term in sp.Add.make_args(product):
        coeff, rest = term.as_independent(*params, as_Add=False)
        exponent, powers = 0, {}
        for factor in sp.Mul.make_args(sp.powsimp(rest, combine="exp")):
            base, e = factor.as_base_exp()
            if isinstance(factor, sp.exp):
                exponent += factor.args[0]
            elif base in params and e.is_Integer and e >= 0:
                powers[base] = powers.get(base, 0) + int(e)
            elif factor.free_symbols & set(params):
                raise NoClosedForm(f"factor {factor} is not a power of a parameter or an exponential")
            else:
                coeff *= factor
        exponent = sp.expand(exponent)
        value = coeff * sp.exp(exponent.subs({p: 0 for p in params}))
        for p in params:
            alpha = exponent.coeff(p)
            if sp.expand(exponent - alpha * p).has(p) or alpha.has(*params):
                raise NoClosedForm(f"exponent {exponent} is not linear in {p}")
            value *= laws[p].moment_times_exp(powers.get(p, 0), alpha)
        total += value
    return total


MAX_EXPANDED_TERMS = 20_000


def expanded_terms_bound(expr):
    """An upper bound on the number of terms of ``expr`` expanded into exponential monomials.

    Trigonometric and hyperbolic functions count as two exponentials; an integer power
    of a sum of m terms counts as the number of monomials of that degree.  Used to
    refuse, before expanding, an exact route that would not fit in memory.
    """
    if expr.is_Add:
        return sum(expanded_terms_bound(a) for a in expr.args)
    if expr.is_Mul:
        return math.prod(expanded_terms_bound(a) for a in expr.args)
    if expr.is_Pow and expr.exp.is_Integer:
        m, n = expanded_terms_bound(expr.base), abs(int(expr.exp))
        return math.comb(n + m - 1, m - 1) if m > 1 else 1
    if isinstance(expr, (sp.sin, sp.cos, sp.tan, sp.sinh, sp.cosh, sp.tanh)):
        return 2
    return 1


def covariance_kernel(expr, xs, params, laws):
    """Return ``κ(x, y) = E_θ[f(x) f(y)]`` in closed form, as a SymPy expression in x and y.

    Parameters
    ----------
    expr : sympy.Expr
        f, in the coordinates ``xs`` and the parameters ``params``.
    xs, params : tuple of Symbol
    laws : dict
        Parameter symbol → :class:`Parameter`.

    Returns
    -------
    (sympy.Expr, tuple of Symbol)
        κ and the symbols ``y0 …`` of its second point.

    Raises
    ------
    NoClosedForm
        When f(x) f(y) would expand into too many terms or its expectation has no closed form.
    """
    bound = expanded_terms_bound(expr) ** 2
    if bound > MAX_EXPANDED_TERMS:
        raise NoClosedForm(f"f(x) f(y) would expand into up to {bound:.3g} terms (more than {MAX_EXPANDED_TERMS})")
    ys = sp.symbols(f"y0:{len(xs)}", real=True)
    other = expr.subs(dict(zip(xs, ys)), simultaneous=True)
    return _expect(_exp_polynomial(expr * other), params, laws), ys


def exact_moments(expr, xs, params, laws, V):
    """F from the closed-form kernel; the imaginary part of the result is checked to vanish.

    The kernel is evaluated for all pairs at once.  Where that gives 0/0 (a uniform
    parameter's MGF at α = 0, e.g. on the diagonal), the pair is redone with its
    numbers substituted first, so the exact α = 0 moment is used.

    Parameters
    ----------
    expr, xs, params, laws
        As for :func:`covariance_kernel`.
    V : array, shape (K, d)
        The features.

    Returns
    -------
    array, shape (K, K)

    Raises
    ------
    NoClosedForm
        When there is no closed-form kernel, or it does not come out real.
    """
    kernel, ys = covariance_kernel(expr, xs, params, laws)
    fn = sp.lambdify(list(xs) + list(ys), kernel, "numpy")
    K = V.shape[0]
    i, j = np.triu_indices(K)
    with np.errstate(invalid="ignore", divide="ignore"):
        vals = np.asarray(fn(*V[i].T, *V[j].T), dtype=complex) * np.ones(len(i))
    for q in np.flatnonzero(~np.isfinite(vals)):
        at = [expr.subs({x: sp.nsimplify(v) for x, v in zip(xs, V[n])}) for n in (i[q], j[q])]
        vals[q] = complex(sp.N(_expect(_exp_polynomial(at[0] * at[1]), params, laws), 20))
    scale = max(np.abs(vals).max(), 1e-300)
    if np.abs(vals.imag).max() > 1e-12 * scale:
        raise NoClosedForm("the kernel did not come out real")
    F = np.empty((K, K))
    F[i, j] = vals.real
    F[j, i] = vals.real
    return F


def values_on(expr, xs, params):
    """``f(X; θ)`` vectorised: call with X (..., d) and θ arrays broadcastable to X[..., 0]."""
    fn = sp.lambdify(list(xs) + list(params), expr, "numpy")
    return lambda X, theta: np.asarray(fn(*np.moveaxis(X, -1, 0), *theta), dtype=float) * np.ones(X.shape[:-1])


def quadrature_moments(expr, xs, params, laws, V, tol=1e-10, max_points=2_000_000):
    """Compute F by tensor Gauss quadrature over the random parameters, doubling the nodes until two rules agree.

    Parameters
    ----------
    expr, xs, params, laws
        As for :func:`covariance_kernel`.
    V : array, shape (K, d)
        The features.
    tol : float
        Agreement asked of two successive rules, relative to ``max |F|``.
    max_points : int
        Most quadrature points (the product over the random parameters) allowed.

    Returns
    -------
    (array, float, int)
        F, the change between the last two rules, and the nodes per axis.

    Raises
    ------
    NoClosedForm
        When the random parameters need more than ``max_points`` points.
    """
    f = values_on(expr, xs, params)
    random = [p for p in params if laws[p].kind != "fixed"]

    def rule(n):
        grids = [laws[p].nodes(n) for p in params]
        mesh = np.meshgrid(*[g[0] for g in grids], indexing="ij")
        weight = np.ones(mesh[0].shape) if mesh else np.ones(())
        for axis, (_, w) in enumerate(grids):
            shape = [1] * len(grids)
            shape[axis] = len(w)
            weight = weight * w.reshape(shape)
        theta = [m.ravel()[:, None] for m in mesh]
        Y = f(V[None, :, :], theta)                     # (points, K)
        return np.einsum("q,qn,qm->nm", weight.ravel(), Y, Y)

    n = 8
    F = rule(n)
    while True:
        if (2 * n) ** len(random) > max_points:
            raise NoClosedForm(f"{len(random)} random parameters need more than {max_points} quadrature points "
                               "at the accuracy asked; use moment_method = \"monte-carlo\"")
        F2 = rule(2 * n)
        err = float(np.abs(F2 - F).max())
        if err <= tol * max(float(np.abs(F2).max()), 1e-300) or not random or 2 * n >= 256:
            return F2, err, 2 * n
        F, n = F2, 2 * n
