"""The per-query column derived once for every K: indexed SymPy sums over a symbolic K.

The unrolled stages of :mod:`attnflow.derivations.stages` write the column loss in K
explicit symbols ``a_1 … a_K``, so their size (and the code printed from them)
grows with K.  Here the same chain runs on ``sympy.IndexedBase`` entries ``a[n]``,
``M[n, m]`` with ``Sum`` over ``n = 0 … K−1`` and K a symbol:

    ℓ = ½ Σ_n Σ_m M_nm a_n a_m,
    g_i = ∂ℓ/∂s_i = a_i (∂ℓ/∂a_i − Σ_n a_n ∂ℓ/∂a_n)               (softmax rule),
    H_ij = ∂g_j/∂s_i = a_i (∂g_j/∂a_i − Σ_n a_n ∂g_j/∂a_n).

SymPy differentiates the sums (``∂a_n/∂a_i = δ_ni``) and evaluates the Kronecker
sums; :func:`canonical` brings every result to one normal form (summation indices
named by depth, ``M`` symmetric, constant factors outside the sums) so that equal
expressions compare equal.  :func:`column` runs the chain and its checks: the
textbook forms ``g = a ∘ (u − β)`` and ``H = DMD + diag(g) − g aᵀ − a gᵀ``
(``u = Ma``, ``β = aᵀu``, ``D = diag(a) − aaᵀ``) for symbolic K, ``H = Hᵀ``, and,
for K = 2 and 3, equality with the unrolled stages (:func:`verify_against_unrolled`).
Every check raises :class:`attnflow.derivations.checks.DerivationCheckFailed` when it fails.
:mod:`attnflow.derivations.codegen` prints loop kernels from the textbook grouping
(:func:`textbook_column`), which the checks prove equal to the derived column.
"""

from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from . import stages
from .checks import DerivationCheckFailed, require

K = sp.Symbol("K", integer=True, positive=True)
a = sp.IndexedBase("a")
M = sp.IndexedBase("M")
# Summation indices are renamed by nesting depth, so equal sums print and compare alike.
_BOUND_NAMES = ("n", "m", "l", "r", "q")
# Unrolled comparisons run for these K (the explicit stages check themselves symbolically up to 3).
UNROLLED_CHECK_KS = (2, 3)


def index(name):
    """An index running over the features, ``0 … K−1``."""
    return sp.Idx(sp.Symbol(name, integer=True), K)


I, J = index("i"), index("j")


def total(body, x):
    """``Σ_{x=0}^{K−1} body``."""
    return sp.Sum(body, (x, 0, K - 1))


# --- normal form -----------------------------------------------------------------------

def _decide(condition):
    """Truth of a Piecewise condition for every index in range (``0 ≤ x ≤ K−1``): True, False or None."""
    if condition in (sp.true, sp.false):
        return bool(condition)
    if isinstance(condition, (sp.And, sp.Or)):
        parts = [_decide(c) for c in condition.args]
        if None in parts:
            return None
        return all(parts) if isinstance(condition, sp.And) else any(parts)
    indices = condition.atoms(sp.Idx)
    if not isinstance(condition, sp.core.relational.Relational) or len(indices) != 1:
        return None
    # x = ξ ≥ 0 and K = ξ + 1 + κ with κ ≥ 0 cover exactly the indices in range.
    xi, kappa = sp.symbols("xi kappa", integer=True, nonnegative=True)
    (x,) = indices
    gap = sp.expand((condition.lhs - condition.rhs).xreplace({x: xi}).subs(K, xi + 1 + kappa))
    verdict = condition.func(gap, 0)
    return bool(verdict) if verdict in (sp.true, sp.false) else None


def settle(expr):
    """Evaluate the sums over Kronecker deltas, keeping the branch valid for indices in range."""
    expr = expr.doit()

    def branch(piecewise):
        for value, condition in piecewise.args:
            verdict = _decide(condition)
            if verdict is None:
                raise DerivationCheckFailed(f"derivation check failed: cannot decide {condition} for indices 0…K−1")
            if verdict:
                return value
        raise DerivationCheckFailed(f"derivation check failed: no branch of {piecewise} holds")

    while expr.has(sp.Piecewise):
        expr = expr.replace(lambda e: isinstance(e, sp.Piecewise), branch)
    return expr


def _unique_dummies(expr):
    """Every summation index renamed to a fresh one, so renaming by depth cannot capture."""
    if isinstance(expr, sp.Sum):
        fresh = {x: sp.Idx(sp.Dummy("d", integer=True), K) for x, _, _ in expr.limits}
        return sp.Sum(_unique_dummies(expr.function.xreplace(fresh)),
                      *[(fresh[x], lo, hi) for x, lo, hi in expr.limits])
    if not expr.args or isinstance(expr, (sp.Idx, sp.Indexed)):
        return expr
    return expr.func(*[_unique_dummies(arg) for arg in expr.args])


def _split_sum(body, x):
    """``Σ_x body`` with the sum distributed over terms and x-free factors moved outside."""
    body = sp.expand(body)
    if isinstance(body, sp.Add):
        return sp.Add(*[_split_sum(term, x) for term in body.args])
    inside, outside = [], []
    for factor in sp.Mul.make_args(body):
        (inside if factor.has(x) else outside).append(factor)
    if not inside:
        return sp.Mul(*outside) * K
    return sp.Mul(*outside) * total(sp.Mul(*inside), x)


def _normal(expr, depth):
    if isinstance(expr, sp.Sum):
        # SymPy merges nested sums into one with several limits, innermost first.
        count = len(expr.limits)
        names = [index(_BOUND_NAMES[depth + count - 1 - k]) for k in range(count)]
        body = _normal(expr.function.xreplace({x: name for (x, _, _), name in zip(expr.limits, names)}),
                       depth + count)
        for name in names:
            body = _split_sum(body, name)
        return body
    if isinstance(expr, sp.Indexed) and expr.base == M:
        # M is symmetric: one order of its indices.
        return M[tuple(sorted(expr.indices, key=sp.default_sort_key))]
    if not expr.args or isinstance(expr, (sp.Idx, sp.Indexed)):
        return expr
    return expr.func(*[_normal(arg, depth) for arg in expr.args])


def _apply_deltas(expr):
    """In each term ``δ_xy f``, write f with the later index replaced by the earlier (``δ_ij u_j = δ_ij u_i``)."""
    terms = []
    for term in sp.Add.make_args(sp.expand(expr)):
        factors = sp.Mul.make_args(term)
        rest = [f for f in factors if not isinstance(f, sp.KroneckerDelta)]
        deltas = [f for f in factors if isinstance(f, sp.KroneckerDelta)]
        body = sp.Mul(*rest)
        for delta in deltas:
            keep, drop = sorted(delta.args, key=sp.default_sort_key)
            body = body.xreplace({drop: keep})
        terms.append(sp.Mul(*deltas) * body)
    return sp.Add(*terms)


def canonical(expr):
    """Return the normal form of an indexed expression.

    Summation indices named by depth, M's indices sorted, factors outside sums,
    Kronecker deltas applied to their term, expanded: two equal expressions have
    the same normal form.
    """
    return sp.expand(_normal(_unique_dummies(_apply_deltas(expr)), 0))


def equal(x, y):
    """Whether two indexed expressions are identical for every K (their normal forms' difference is 0)."""
    return canonical(x - y) == 0


def through_softmax(f, x, attention=a):
    """``∂f/∂s_x = a_x (∂f/∂a_x − Σ_ν a_ν ∂f/∂a_ν)`` for f in the attention ``a = softmax(s + log p)``.

    ``attention`` names the IndexedBase of the softmax differentiated through (``a`` unless
    told): another head's attention in :mod:`attnflow.derivations.indexed_heads`.
    """
    nu = index("nu")
    w = attention
    return canonical(settle(w[x] * (sp.diff(f, w[x]) - total(w[nu] * settle(sp.diff(f, w[nu])), nu))))


# --- the column ------------------------------------------------------------------------

@dataclass(frozen=True)
class IndexedColumn:
    """The column in indexed form, each entry a canonical SymPy expression in ``a``, ``M`` and K.

    Attributes
    ----------
    loss : sympy.Expr
        ℓ, a scalar.
    gradient : sympy.Expr
        ``g_i``, free index I.
    hessian : sympy.Expr
        ``H_ij``, free indices I, J.
    """

    loss: sp.Expr
    gradient: sp.Expr
    hessian: sp.Expr


def derive_column():
    """Differentiate ``ℓ = ½ aᵀ M a`` through the softmax twice, in indexed form (no checks)."""
    n, m = index("n"), index("m")
    loss = canonical(sp.Rational(1, 2) * total(total(M[n, m] * a[n] * a[m], m), n))
    gradient = through_softmax(loss, I)
    hessian = through_softmax(gradient.xreplace({I: J}), I)
    return IndexedColumn(loss, gradient, hessian)


def textbook_column():
    """Return the column as the textbook writes it, grouped.

    ``ℓ = ½β``, ``g_i = a_i (u_i − β)``,
    ``H_ij = a_i a_j (M_ij − u_i − u_j + β) + δ_ij g_i − g_i a_j − a_i g_j`` (that is DMD + diag(g) − g aᵀ − a gᵀ),
    with ``u_i = Σ_m M_im a_m`` and ``β = Σ_n a_n u_n`` written as sums.

    :func:`column` proves it equal to the derived column for every K; the kernels are
    printed from it because its grouping keeps the differences ``u_i − β`` and
    ``M_ij − u_i − u_j + β`` that stay accurate when the attention saturates (the
    expanded form cancels terms of order one instead).
    """
    n, m = index("n"), index("m")
    u = lambda x: total(M[x, m] * a[m], m)               # noqa: E731 (u_x = Σ_m M_xm a_m)
    beta = total(a[n] * total(M[n, m] * a[m], m), n)
    g = lambda x: a[x] * (u(x) - beta)                    # noqa: E731
    H = a[I] * a[J] * (M[I, J] - u(I) - u(J) + beta) + sp.KroneckerDelta(I, J) * g(I) - g(I) * a[J] - a[I] * g(J)
    return IndexedColumn(beta / 2, g(I), H)


def to_unrolled(expr, k, values=None):
    """Return the indexed expression for ``K = k`` in the symbols of the unrolled stages (``a_1``, ``M_12``, …).

    Parameters
    ----------
    expr : sympy.Expr
        An indexed expression.
    k : int
        The number of features to unroll to.
    values : dict, optional
        The integers the free indices take (``{I: 0, J: 1}``).

    Returns
    -------
    sympy.Expr
    """
    a_sym, M_sym = stages.attention_symbols(k), stages.moment_matrix(k)
    # xreplace, not subs: subs renames the Idx in a Sum's body and limits apart and sums wrongly.
    expr = expr.xreplace({x: sp.Integer(v) for x, v in (values or {}).items()}).xreplace({K: sp.Integer(k)}).doit()
    def entry(e):
        return a_sym[int(e.indices[0])] if e.base == a else M_sym[int(e.indices[0]), int(e.indices[1])]
    return expr.replace(lambda e: isinstance(e, sp.Indexed), entry)


def verify_against_unrolled(column, k, unrolled=None):
    """Raise :class:`DerivationCheckFailed` unless the indexed column equals the unrolled stages for ``K = k``.

    Every entry of the gradient and the Hessian, and the loss, are expanded at K = k
    and compared with :func:`attnflow.derivations.stages.column_hessian`'s expressions; the
    difference must expand to 0.  Only the unrolled expressions are needed, so the unrolled
    stages' own checks (explicit softmax simplified, most of the generation time) are left to
    ``derive``, which runs them.

    Parameters
    ----------
    column : IndexedColumn
    k : int
        The number of features of the comparison.
    unrolled : dict, optional
        The unrolled stages' ``loss``, ``gradient`` and ``hessian``; derived when None.

    Returns
    -------
    str
        The sentence stating what was checked.

    Raises
    ------
    DerivationCheckFailed
        At the first entry that differs.
    """
    unrolled = unrolled or stages.column_hessian(stages.column_gradient(stages.column_loss(k), run_checks=False),
                                                 run_checks=False).data
    require(sp.expand(to_unrolled(column.loss, k) - unrolled["loss"]) == 0,
            f"indexed loss equals the unrolled one at K = {k}")
    for i in range(k):
        require(sp.expand(to_unrolled(column.gradient, k, {I: i}) - unrolled["gradient"][i]) == 0,
                f"indexed g_{i + 1} equals the unrolled one at K = {k}")
        for j in range(k):
            require(sp.expand(to_unrolled(column.hessian, k, {I: i, J: j}) - unrolled["hessian"][i, j]) == 0,
                    f"indexed H_{i + 1}{j + 1} equals the unrolled one at K = {k}")
    return rf"the indexed $\ell$, $g_i$ and $H_{{ij}}$ at $K = {k}$ equal the unrolled stages entry by entry (expanded)"


def softmax_sandwich():
    """``(D M D)_ij = Σ_n Σ_m D_in M_nm D_mj`` with ``D = diag(a) − a aᵀ``, its Kronecker sums evaluated."""
    n, m = index("n"), index("m")
    D = lambda x, y: a[x] * sp.KroneckerDelta(x, y) - a[x] * a[y]      # noqa: E731
    return settle(total(total(D(I, n) * M[n, m] * D(m, J), m), n))


def check_column(derived, textbook):
    """Run every check on the derived indexed column; return the sentences of what SymPy verified."""
    n = index("n")
    u = lambda x: total(M[x, n] * a[n], n)               # noqa: E731
    beta = 2 * textbook.loss
    require(equal(softmax_sandwich(), a[I] * a[J] * (M[I, J] - u(I) - u(J) + beta)),
            "(DMD)_ij = a_i a_j (M_ij − u_i − u_j + β) in indexed form")
    require(equal(derived.loss, textbook.loss), "ℓ = ½ β in indexed form")
    require(equal(derived.gradient, textbook.gradient), "g_i = a_i (u_i − β) in indexed form")
    require(equal(derived.hessian, textbook.hessian), "H = DMD + diag(g) − g aᵀ − a gᵀ in indexed form")
    require(equal(derived.hessian, derived.hessian.xreplace({I: J, J: I})), "H_ij = H_ji in indexed form")
    checks = [r"$\ell = \tfrac12\beta$, $g_i = a_i(u_i - \beta)$ and "
              r"$H = DMD + \mathrm{diag}(g) - g a^\top - a g^\top$ for symbolic $K$ (normal forms compared)",
              r"$H_{ij} = H_{ji}$ for symbolic $K$"]
    checks += [verify_against_unrolled(derived, k) for k in UNROLLED_CHECK_KS]
    return checks


@lru_cache(maxsize=None)
def column():
    """The checked column in the textbook grouping the kernels are printed from, and its
    :class:`attnflow.derivations.stages.Stage` (cached: a few seconds of SymPy)."""
    derived, textbook = derive_column(), textbook_column()
    checks = check_column(derived, textbook)
    u, beta = sp.IndexedBase("u"), sp.Symbol("beta")
    n = index("n")
    eqs = [sp.Eq(sp.Symbol(r"\ell"), derived.loss), sp.Eq(sp.IndexedBase("g")[I], derived.gradient),
           sp.Eq(sp.IndexedBase("H")[I, J], derived.hessian),
           sp.Eq(u[I], total(M[I, n] * a[n], n)), sp.Eq(beta, total(a[n] * u[n], n))]
    text = ("The same column for every $K$ at once: SymPy differentiates sums over a symbolic $K$ "
            "(with $\\partial a_n/\\partial a_i = \\delta_{ni}$) through the softmax rule. The result equals the "
            "textbook grouping $g_i = a_i(u_i - \\beta)$, $H = DMD + \\mathrm{diag}(g) - g a^\\top - a g^\\top$ "
            "for every $K$, and the kernels are printed as loops from that grouping, so their size does not depend "
            "on $K$.")
    stage = stages.Stage("indexed_column", "The column for every K (indexed form)", text, eqs, checks,
                         data={"derived": derived, "textbook": textbook})
    return textbook, stage
