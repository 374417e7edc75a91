"""The printing half of :mod:`attnflow.derivations.codegen`: the generated module's source from SymPy.

The indexed column derivations of :mod:`attnflow.derivations.indexed` (one head) and
:mod:`attnflow.derivations.indexed_heads` (several) printed as Numba loop kernels (every sum
hoisted into a temporary, common subexpressions in the outermost loop they can), followed by
the shared assemblies of :mod:`attnflow.solvers.assembly` and :mod:`attnflow.solvers.multihead_assembly`.  Imported
only when a module is generated, so loading a generated module does not import SymPy.
"""

from pathlib import Path

import numba
import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from ..solvers import assembly, multihead_assembly

from . import indexed, indexed_heads
from .codegen import kernel_key

ASSEMBLY_MARKER = "# ---- ASSEMBLY"
MULTIHEAD_ASSEMBLY_MARKER = "# ---- MULTIHEAD ASSEMBLY"


class _LoopPrinter(PythonCodePrinter):
    """Prints indexed expressions as Python for Numba: ``a[n]``, ``M[i, n]``, δ as a comparison."""

    def __init__(self):
        super().__init__({"fully_qualified_modules": False})

    def _print_Idx(self, expr):
        return self._print(expr.label)

    def _print_Indexed(self, expr):
        return f"{expr.base.label}[{', '.join(self._print(x) for x in expr.indices)}]"

    def _print_KroneckerDelta(self, expr):
        x, y = (self._print(arg) for arg in expr.args)
        return f"(1.0 if {x} == {y} else 0.0)"


_PRINTER = _LoopPrinter()


class _Sums:
    """The sums of one kernel, each hoisted into a temporary indexed by its free indices.

    ``Σ_m M[i, m] a[m]`` in ``g_i`` and ``Σ_m M[j, m] a[m]`` in ``H_ij`` are one
    temporary ``sum0[p0]`` (free indices renamed to placeholders ``p0, p1, …``
    before comparing normal forms); a sum inside a sum refers to the inner one's
    temporary, so each is computed once per call, in O(K^(free indices + 1)).
    """

    def __init__(self):
        self.temporaries = []      # (name, placeholders, bound index, summand), in dependency order
        self._names = {}

    def hoist(self, expr):
        """``expr`` with every sum replaced by a reference to its temporary."""
        if isinstance(expr, (sp.Idx, sp.Indexed)) or not expr.args:
            return expr
        if not isinstance(expr, sp.Sum):
            return expr.func(*[self.hoist(arg) for arg in expr.args])
        summand = self.hoist(expr.function)
        for x, lo, hi in expr.limits:                 # innermost first
            if (lo, hi) != (0, indexed.K - 1):
                raise ValueError(f"sum over {x} from {lo} to {hi}: expected 0 … K−1")
            summand = self._temporary(summand, x)
        return summand

    def _temporary(self, summand, x):
        free = sorted(summand.atoms(sp.Idx) - {x}, key=str)
        placeholders = [indexed.index(f"p{k}") for k in range(len(free))]
        definition = summand.xreplace(dict(zip(free, placeholders)))
        key = indexed.canonical(sp.Sum(definition, (x, 0, indexed.K - 1)))
        if key not in self._names:
            self._names[key] = f"sum{len(self.temporaries)}"
            self.temporaries.append((self._names[key], placeholders, x, definition))
        name = self._names[key]
        return sp.IndexedBase(name)[tuple(free)] if free else sp.Symbol(name)

    def lines(self, scratch=None):
        """Allocation (once per call, outside every loop) and computation of the temporaries.

        scratch : the name of a (rows, K) argument whose rows hold the one-index temporaries
        instead of arrays allocated per call (kernels called in the innermost loops).
        """
        out = []
        rows = 0
        for name, placeholders, _, _ in self.temporaries:
            if len(placeholders) == 1 and scratch:
                out.append(f"{name} = {scratch}[{rows}]")
                rows += 1
            elif placeholders:
                shape = "K" if len(placeholders) == 1 else "(" + ", ".join(["K"] * len(placeholders)) + ")"
                out.append(f"{name} = np.empty({shape})")
        for name, placeholders, x, summand in self.temporaries:
            depth = len(placeholders)
            out += [" " * 4 * d + f"for {_PRINTER.doprint(p)} in range(K):" for d, p in enumerate(placeholders)]
            pad = " " * 4 * depth
            acc = "acc" if placeholders else name
            out += [pad + f"{acc} = 0.0", pad + f"for {_PRINTER.doprint(x)} in range(K):",
                    pad + f"    {acc} += {_PRINTER.doprint(summand)}"]
            if placeholders:
                out.append(pad + f"{name}[{', '.join(_PRINTER.doprint(p) for p in placeholders)}] = acc")
        return out


def _output_lines(target, indices, expr, symmetric=False):
    """Loops writing ``target[indices] = expr``; common subexpressions sit in the outermost loop they can.

    symmetric : the derivation proved ``target[i, j] = target[j, i]``: fill j ≥ i and mirror.
    """
    temps, (reduced,) = sp.cse([expr], symbols=sp.numbered_symbols("x"))
    level = {}
    for sym, value in temps:
        uses = [indices.index(x) + 1 for x in value.atoms(sp.Idx) if x in indices]
        uses += [level[t] for t in value.free_symbols if t in level]
        level[sym] = max(uses, default=0)
    out = [f"{sym} = {_PRINTER.doprint(value)}" for sym, value in temps if level[sym] == 0]
    for depth, x in enumerate(indices, start=1):
        pad = " " * 4 * (depth - 1)
        start = _PRINTER.doprint(indices[depth - 2]) if symmetric and depth == 2 else "0"
        out.append(pad + f"for {_PRINTER.doprint(x)} in range({start}, K):")
        out += [pad + f"    {sym} = {_PRINTER.doprint(value)}" for sym, value in temps if level[sym] == depth]
    pad = " " * 4 * len(indices)
    entry = f"{target}[{', '.join(_PRINTER.doprint(x) for x in indices)}]"
    if symmetric:
        mirror = f"{target}[{', '.join(_PRINTER.doprint(x) for x in reversed(indices))}]"
        out += [pad + f"value = {_PRINTER.doprint(reduced)}", pad + f"{entry} = value", pad + f"{mirror} = value"]
    else:
        out.append(pad + f"{entry} = {_PRINTER.doprint(reduced)}")
    return out


def _kernel_source(name, arguments, doc, outputs, result=None, size="a", scratch=None):
    """One ``@njit`` loop kernel: K from the shape of the argument ``size``, temporaries (in the rows of
    the argument ``scratch`` when given), output loops, optional returned scalar."""
    sums = _Sums()
    outputs = [(target, indices, sums.hoist(expr), symmetric) for target, indices, expr, symmetric in outputs]
    result = None if result is None else sums.hoist(result)
    body = [f"K = {size}.shape[0]"] + sums.lines(scratch)
    for target, indices, expr, symmetric in outputs:
        body += _output_lines(target, indices, expr, symmetric)
    if result is not None:
        body.append(f"return {_PRINTER.doprint(result)}")
    return (f"@njit(cache=True)\ndef {name}({arguments}):\n    \"\"\"{doc}\"\"\"\n"
            + "".join(f"    {line}\n" for line in body))


def column_source():
    """Python source of the loop kernels ``column_loss_gradient`` and ``column_hessian``, for every K."""
    col, _ = indexed.column()
    I, J = indexed.I, indexed.J
    return (
        _kernel_source("column_loss_gradient", "a, M, g",
                       "Generated: return ℓ = ½ aᵀMa and write g = ∂ℓ/∂s into g (K = a.shape[0]).",
                       [("g", (I,), col.gradient, False)], result=col.loss)
        + "\n\n"
        + _kernel_source("column_hessian", "a, M, H", "Generated: write H = ∂²ℓ/∂s∂s into H (K = a.shape[0]).",
                         [("H", (I, J), col.hessian, True)])
    )


def heads_source():
    """Python source of the multi-head column kernels, for every K and H (:mod:`attnflow.derivations.indexed_heads`).

    ``mean_column_loss(abar, M, u, work)`` returns ℓ = ½ āᵀMā and writes ``u = Mā``;
    ``head_column_gradient(a, u, H, g)`` writes head h's ``g^h = a ∘ (u − aᵀu)/H``;
    ``head_column_cross_hessian(a, b, M, H, B, work)`` writes ``D^a M D^b / H²``, the block
    ``∂g^h/∂s^{h'}`` without the diagonal correction; ``head_column_hessian_correction(a, u, H, B)``
    writes that correction, ``diag(g^h) − g^h aᵀ − a g^hᵀ`` (symmetric: filled on and above the
    diagonal and mirrored).  ``work`` is a (2, K) scratch array for the sums with a free index:
    these kernels run for every head pair, count vector and query, where allocating them per
    call cost more than the arithmetic.
    """
    heads, _ = indexed_heads.heads_column()
    I, J = indexed.I, indexed.J
    return "\n\n".join([
        _kernel_source("mean_column_loss", "abar, M, u, work",
                       "Generated: return ℓ = ½ āᵀMā and write u = Mā into u (K = abar.shape[0]; work: (2, K) scratch).",
                       [("u", (I,), heads.moments, False)], result=heads.loss, size="abar", scratch="work"),
        _kernel_source("head_column_gradient", "a, u, H, g",
                       "Generated: write head h's g = ∂ℓ/∂s^h = a ∘ (u − aᵀu)/H into g (a = a^h, u = Mā).",
                       [("g", (I,), heads.gradient, False)]),
        _kernel_source("head_column_cross_hessian", "a, b, M, H, B, work",
                       "Generated: write B = D^a M D^b / H² into B: ∂g^h/∂s^{h'} for a = a^h, b = a^{h'}, "
                       "without the diagonal correction (work: (2, K) scratch).",
                       [("B", (I, J), heads.cross_block, False)], scratch="work"),
        _kernel_source("head_column_hessian_correction", "a, u, H, B",
                       "Generated: write the diagonal block's correction diag(g) − g aᵀ − a gᵀ into B "
                       "(g = a ∘ (u − aᵀu)/H).",
                       [("B", (I, J), heads.correction, True)]),
    ])


def _shared(module, marker):
    """The text of a shared assembly module from its marker on."""
    source = Path(module.__file__).read_text()
    return source[source.index(marker):]


def module_source(key=None, heads=False):
    """Return the full text of the generated kernel module (one for every K).

    Parameters
    ----------
    key : str, optional
        The :func:`kernel_key` written into the module (computed when not given).
    heads : bool, optional
        Also the multi-head kernels (the module of ``load_kernels(heads=True)``).

    Returns
    -------
    str
        A header with the key, the derived column kernels (:func:`column_source`) and the
        assembly of :mod:`attnflow.solvers.assembly` from its ``# ---- ASSEMBLY`` marker on;
        with heads, then the multi-head column kernels (:func:`heads_source`) and the assembly
        of :mod:`attnflow.solvers.multihead_assembly` from its ``# ---- MULTIHEAD ASSEMBLY`` marker on.
    """
    key = key or kernel_key()
    header = (
        '"""attnflow kernels for every K, generated by derivations.codegen from the indexed SymPy derivation.\n\n'
        f"Key {key}; sympy {sp.__version__}, numba {numba.__version__}. Do not edit: regenerated\n"
        'whenever the derivation, the assembly or a library version changes.\n"""\n\n'
        "import numpy as np\n"
        "from numba import njit\n\n"
        "from attnflow.solvers.columns import column_attention, label_gap_moments, target_log_gap\n"
        "from attnflow.solvers.finite_prompt import finite_attention, finite_column, finite_column_hessian\n"
        "from attnflow.solvers.pullback import flow_sandwich, jacobian_from_hessians, log_loss\n\n"
        f'NAME = "generated"\nKEY = "{key}"\n\n\n'
    )
    text = header + column_source() + "\n\n" + _shared(assembly, ASSEMBLY_MARKER)
    if heads:
        text += "\n\n\n" + heads_source() + "\n\n\n" + _shared(multihead_assembly, MULTIHEAD_ASSEMBLY_MARKER)
    return text
