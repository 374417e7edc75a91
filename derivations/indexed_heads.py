"""The multi-head column derived once for every K and every H: indexed SymPy sums.

With H heads the prediction uses the mean attention ``ā = (1/H) Σ_h a^h`` and query k's loss
is ``ℓ = ½ āᵀ M ā`` (:mod:`attnflow.solvers.multihead`).  Here head h's attention is ``a``,
a second head h' ≠ h's is ``b``, and the other heads' attention summed is ``c`` (constant in
both heads' scores), so ``ā = (a + b + c)/H`` with K and H symbols, and the chain of
:mod:`attnflow.derivations.indexed` runs on it:

    g^h_i = ∂ℓ/∂s^h_i                          (softmax rule in a),
    ∂g^h_i/∂s^{h'}_j,  ∂g^h_i/∂s^h_j             (softmax rule in b, in a).

:func:`heads_column` checks the results, in normal form for symbolic K and H, against the
grouping the kernels are printed from, with ``u = M ā``:

    g^h = a ∘ (u − aᵀu) / H,
    ∂g^h/∂s^{h'} = D^a M D^b / H²                               (h' ≠ h),
    ∂g^h/∂s^h − D^a M D^a / H² = diag(g^h) − g^h aᵀ − a g^hᵀ      (the diagonal correction),

that the Hessian is symmetric (``∂g^h_i/∂s^h_j = ∂g^h_j/∂s^h_i``, and the (h, h') block is the
transpose of the (h', h) one), and, for K = 2, 3 at H = 2 and K = 2 at H = 3, every entry
against the unrolled derivation (:func:`unrolled_heads`: the loss written out in K·H attention
symbols and differentiated head by head with the softmax rule of
:func:`attnflow.derivations.stages.through_softmax`).  Every check raises
:class:`attnflow.derivations.checks.DerivationCheckFailed` when it fails.
"""

from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from . import stages
from .checks import require
from .indexed import I, J, M, a, canonical, index, settle, through_softmax, total

b = sp.IndexedBase("b")            # a second head h' ≠ h
c = sp.IndexedBase("c")            # the remaining heads' attention, summed
abar = sp.IndexedBase("abar")      # the mean attention ā, a kernel argument
u = sp.IndexedBase("u")            # u = M ā, a kernel argument
H = sp.Symbol("H", integer=True, positive=True)
# (K, H) of the unrolled comparisons: two heads up to K = 3, and a third head (c ≠ 0) at K = 2.
UNROLLED_HEAD_CHECKS = ((2, 2), (3, 2), (2, 3))


def mean_attention(x):
    """``ā_x = (a_x + b_x + c_x)/H``: head h, head h' and the other heads."""
    return (a[x] + b[x] + c[x]) / H


def _is_two_fold(expr):
    return isinstance(expr, sp.Sum) and any(isinstance(f, sp.Sum) for f in sp.Mul.make_args(expr.function))


def _either_order(expr):
    """A two-fold sum ``Σ_n x_n Σ_m y_nm`` in whichever order of its bound indices sorts first.

    :func:`attnflow.derivations.indexed.canonical` names bound indices by depth, so
    ``Σ_n b_n Σ_m M_nm a_m`` and ``Σ_n a_n Σ_m M_nm b_m`` (equal) have different normal forms
    once two attentions meet in one sum; choosing the order makes them one.
    """
    ((n, lo, hi),) = expr.limits
    inner = [f for f in sp.Mul.make_args(expr.function) if isinstance(f, sp.Sum)]
    if len(inner) != 1 or len(inner[0].limits) != 1 or inner[0].function.has(sp.Sum):
        return expr                  # only Σ_n x_n Σ_m y_nm occurs in the head column
    ((m, lo_m, hi_m),) = inner[0].limits
    rest = sp.Mul(*[f for f in sp.Mul.make_args(expr.function) if f is not inner[0]])
    swapped = sp.Sum(sp.Sum(rest * inner[0].function, (n, lo, hi)), (m, lo_m, hi_m))
    return min((canonical(expr), canonical(swapped)), key=sp.default_sort_key)


def heads_equal(x, y):
    """Whether two indexed expressions are identical for every K and H (normal form, sums in either order)."""
    difference = canonical(x - y)
    return canonical(difference.replace(_is_two_fold, _either_order)) == 0


@dataclass(frozen=True)
class IndexedHeads:
    """Head h's column in indexed form, canonical SymPy expressions in ``a``, ``b``, ``c``, ``M``, K and H.

    Attributes
    ----------
    loss : sympy.Expr
        ℓ = ½ āᵀ M ā, a scalar.
    gradient : sympy.Expr
        ``g^h_i``, free index I.
    own_block : sympy.Expr
        ``∂g^h_i/∂s^h_j``, free indices I, J.
    cross_block : sympy.Expr
        ``∂g^h_i/∂s^{h'}_j`` for h' ≠ h, free indices I, J.
    """

    loss: sp.Expr
    gradient: sp.Expr
    own_block: sp.Expr
    cross_block: sp.Expr


@dataclass(frozen=True)
class HeadKernels:
    """The grouping the multi-head column kernels are printed from (proved equal to :class:`IndexedHeads`).

    Attributes
    ----------
    loss, moments : sympy.Expr
        ℓ = ½ Σ_n ā_n Σ_m M_nm ā_m and ``u_i = Σ_m M_im ā_m``, in ``abar`` and M.
    gradient : sympy.Expr
        ``g^h_i = a_i (u_i − Σ_n a_n u_n)/H``, in ``a``, ``u`` and H.
    cross_block : sympy.Expr
        ``(D^a M D^b)_ij / H²``, in ``a``, ``b``, M and H.
    correction : sympy.Expr
        ``δ_ij g_i − g_i a_j − a_i g_j``, in ``a``, ``u`` and H.
    """

    loss: sp.Expr
    moments: sp.Expr
    gradient: sp.Expr
    cross_block: sp.Expr
    correction: sp.Expr


def derive_heads():
    """Differentiate ``ℓ = ½ āᵀ M ā`` through head h's softmax, then through h's and h''s, in indexed form."""
    n, m = index("n"), index("m")
    loss = canonical(sp.Rational(1, 2) * total(total(M[n, m] * mean_attention(n) * mean_attention(m), m), n))
    gradient = through_softmax(loss, I, attention=a)
    return IndexedHeads(loss, gradient, through_softmax(gradient, J, attention=a),
                        through_softmax(gradient, J, attention=b))


def kernel_heads():
    """Return the multi-head column in the grouping the kernels are printed from (:class:`HeadKernels`).

    The differences ``u_i − aᵀu`` and ``M_ij − (Ma)_j − (Mb)_i + aᵀMb`` stay, as in
    :func:`attnflow.derivations.indexed.textbook_column`: they keep their accuracy when
    the attention saturates.
    """
    n, m = index("n"), index("m")
    moments = total(M[I, m] * abar[m], m)
    loss = sp.Rational(1, 2) * total(abar[n] * total(M[n, m] * abar[m], m), n)
    g = lambda x: a[x] * (u[x] - total(a[n] * u[n], n)) / H             # noqa: E731
    ma = lambda x: total(a[n] * M[n, x], n)                              # noqa: E731 ((aᵀM)_x)
    cross = a[I] * b[J] * (M[I, J] - ma(J) - total((M[I, m] - ma(m)) * b[m], m)) / H**2
    correction = sp.KroneckerDelta(I, J) * g(I) - g(I) * a[J] - a[I] * g(J)
    return HeadKernels(loss, moments, g(I), cross, correction)


def _in_heads(expr):
    """A :class:`HeadKernels` expression in ``a``, ``b``, ``c``: ā and ``u = M ā`` written out."""
    m = index("m")
    expr = expr.replace(lambda e: isinstance(e, sp.Indexed) and e.base == u,
                        lambda e: total(M[e.indices[0], m] * mean_attention(m), m))
    return expr.replace(lambda e: isinstance(e, sp.Indexed) and e.base == abar,
                        lambda e: mean_attention(e.indices[0]))


def unrolled_heads(k, heads):
    """The unrolled multi-head column: K·H attention symbols, the softmax rule head by head.

    Parameters
    ----------
    k, heads : int
        Features and heads.

    Returns
    -------
    dict
        ``attention`` (``attention[h][n]`` the symbol ``a^h_n``), ``M``, ``loss``,
        ``gradient`` (``gradient[h][i]``) and ``blocks`` (``blocks[h][h'][i][j] = ∂g^h_i/∂s^{h'}_j``).
    """
    attention = [sp.symbols(f"a^{h + 1}_1:{k + 1}", positive=True) for h in range(heads)]
    Mk = stages.moment_matrix(k)
    mean = [sp.Add(*[attention[h][n] for h in range(heads)]) / heads for n in range(k)]
    loss = sp.Rational(1, 2) * sp.Add(*[Mk[n, m] * mean[n] * mean[m] for n in range(k) for m in range(k)])
    gradient = [[stages.through_softmax(loss, attention[h], i) for i in range(k)] for h in range(heads)]
    blocks = [[[[stages.through_softmax(gradient[h][i], attention[hh], j) for j in range(k)] for i in range(k)]
               for hh in range(heads)] for h in range(heads)]
    return {"attention": attention, "M": Mk, "loss": loss, "gradient": gradient, "blocks": blocks}


def _expand_sums(expr, k):
    """Every ``Σ_{x=0}^{K−1}`` in expr written out as k terms (SymPy's ``doit`` takes seconds for this)."""
    if isinstance(expr, sp.Sum):
        body = _expand_sums(expr.function, k)
        for x, _, _ in expr.limits:
            body = sp.Add(*[body.xreplace({x: sp.Integer(v)}) for v in range(k)])
        return body
    if not expr.args or isinstance(expr, (sp.Idx, sp.Indexed)):
        return expr
    return expr.func(*[_expand_sums(arg, k) for arg in expr.args])


def _unroll(expr, k, bases, values):
    """``expr`` at ``K = k`` with the free indices at ``values`` and every IndexedBase replaced by ``bases``' symbols."""
    expr = _expand_sums(expr.xreplace({x: sp.Integer(v) for x, v in values.items()}), k)
    return expr.replace(lambda e: isinstance(e, sp.Indexed),
                        lambda e: bases[e.base][tuple(int(x) for x in e.indices)]
                        if len(e.indices) > 1 else bases[e.base][int(e.indices[0])])


def verify_heads_against_unrolled(heads_column, k, heads):
    """Raise :class:`DerivationCheckFailed` unless the indexed head column equals :func:`unrolled_heads`.

    For every ordered pair of distinct heads (h, h') (``a``, ``b`` their attentions, ``c``
    the others' summed, H the number of heads), the loss, every entry of ``g^h``,
    ``∂g^h/∂s^h`` and ``∂g^h/∂s^{h'}`` are expanded at K = k and compared with the unrolled
    ones; the difference must expand to 0.

    Parameters
    ----------
    heads_column : IndexedHeads
    k, heads : int
        Features and heads of the comparison (heads ≥ 2).

    Returns
    -------
    str
        The sentence stating what was checked.
    """
    unrolled = unrolled_heads(k, heads)
    A = unrolled["attention"]
    for h in range(heads):
        for hh in range(heads):
            if hh == h:
                continue
            rest = [sp.Add(*[A[r][n] for r in range(heads) if r not in (h, hh)]) for n in range(k)]
            bases = {a: A[h], b: A[hh], c: rest, M: unrolled["M"]}

            def at(expr, values=None, bases=bases):
                return sp.expand(_unroll(expr, k, bases, values or {}).xreplace({H: sp.Integer(heads)}))
            require(sp.expand(at(heads_column.loss) - unrolled["loss"]) == 0,
                    f"indexed multi-head loss equals the unrolled one at K = {k}, H = {heads}")
            for i in range(k):
                require(sp.expand(at(heads_column.gradient, {I: i}) - unrolled["gradient"][h][i]) == 0,
                        f"indexed g^{h + 1}_{i + 1} equals the unrolled one at K = {k}, H = {heads}")
                for j in range(k):
                    for block, other in ((heads_column.own_block, h), (heads_column.cross_block, hh)):
                        require(sp.expand(at(block, {I: i, J: j}) - unrolled["blocks"][h][other][i][j]) == 0,
                                f"indexed ∂g^{h + 1}_{i + 1}/∂s^{other + 1}_{j + 1} equals the unrolled one "
                                f"at K = {k}, H = {heads}")
    return (rf"the indexed $\ell$, $g^h_i$ and the blocks $\partial g^h_i/\partial s^{{h'}}_j$ at $K = {k}$, "
            rf"$H = {heads}$ equal the unrolled derivation in ${k * heads}$ attention symbols entry by entry, "
            r"for every pair of heads (expanded)")


def check_heads(derived, kernels):
    """Run every check on the derived head column; return the sentences of what SymPy verified."""
    require(heads_equal(derived.loss, _in_heads(kernels.loss)), "ℓ = ½ āᵀ M ā in indexed form")
    require(heads_equal(settle(sp.diff(kernels.loss, abar[I])), kernels.moments), "u = ∂ℓ/∂ā = M ā in indexed form")
    require(heads_equal(derived.gradient, _in_heads(kernels.gradient)), "g^h = a ∘ (u − aᵀu)/H in indexed form")
    require(heads_equal(derived.cross_block, kernels.cross_block), "∂g^h/∂s^{h'} = D^a M D^b/H² in indexed form")
    require(heads_equal(derived.own_block, kernels.cross_block.xreplace({b: a}) + _in_heads(kernels.correction)),
            "∂g^h/∂s^h = D^a M D^a/H² + diag(g^h) − g^h aᵀ − a g^hᵀ in indexed form")
    require(heads_equal(derived.own_block, derived.own_block.xreplace({I: J, J: I})),
            "∂g^h_i/∂s^h_j = ∂g^h_j/∂s^h_i in indexed form")
    require(heads_equal(derived.cross_block, derived.cross_block.xreplace({I: J, J: I, a: b, b: a})),
            "the (h, h') block is the transpose of the (h', h) block in indexed form")
    checks = [r"$\ell = \tfrac12 \bar a^\top M \bar a$ with $u = \partial\ell/\partial\bar a = M\bar a$, $g^h = a^h \circ (u - a^{h\top} u)/H$, "
              r"$\partial g^h/\partial s^{h'} = D^h M D^{h'}/H^2$ ($h' \ne h$) and "
              r"$\partial g^h/\partial s^h = D^h M D^h/H^2 + \mathrm{diag}(g^h) - g^h a^{h\top} - a^h g^{h\top}$ "
              r"for symbolic $K$ and $H$ (normal forms compared)",
              r"the Hessian is symmetric: $\partial g^h_i/\partial s^h_j = \partial g^h_j/\partial s^h_i$ and the "
              r"$(h, h')$ block is the transpose of the $(h', h)$ block, for symbolic $K$ and $H$"]
    checks += [verify_heads_against_unrolled(derived, k, heads) for k, heads in UNROLLED_HEAD_CHECKS]
    return checks


@lru_cache(maxsize=None)
def heads_column():
    """The checked multi-head column in the grouping the kernels are printed from, and its
    :class:`attnflow.derivations.stages.Stage` (cached: seconds of SymPy)."""
    derived, kernels = derive_heads(), kernel_heads()
    checks = check_heads(derived, kernels)
    g, B = sp.IndexedBase("g"), sp.IndexedBase("B")
    eqs = [sp.Eq(sp.Symbol(r"\ell"), derived.loss), sp.Eq(g[I], derived.gradient),
           sp.Eq(sp.IndexedBase("B^{hh}")[I, J], derived.own_block), sp.Eq(B[I, J], derived.cross_block),
           sp.Eq(abar[I], mean_attention(I))]
    text = ("Several heads for every $K$ and every $H$ at once: head $h$'s attention $a$, a second head's $b$ and the "
            "other heads' summed $c$ give the mean $\\bar a = (a + b + c)/H$; SymPy differentiates "
            "$\\ell = \\tfrac12 \\bar a^\\top M \\bar a$ through $a$'s softmax, then through $a$'s and $b$'s, with "
            "sums over a symbolic $K$ and $H$ a symbol. The results equal $g^h = a^h \\circ (u - a^{h\\top} u)/H$ "
            "($u = M\\bar a$), the cross block $D^h M D^{h'}/H^2$ and the diagonal correction "
            "$\\mathrm{diag}(g^h) - g^h a^{h\\top} - a^h g^{h\\top}$, and the multi-head kernels are printed as loops "
            "from that grouping.")
    stage = stages.Stage("indexed_heads", "Several heads for every K (indexed form)", text, eqs, checks,
                         data={"derived": derived, "kernels": kernels})
    return kernels, stage
