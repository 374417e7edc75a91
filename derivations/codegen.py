"""Numba kernels generated from the SymPy derivation: one module for every K, cached on disk.

The generated module holds the two derived column functions of
:mod:`attnflow.solvers.columns` (``column_loss_gradient`` and ``column_hessian``), printed
as loops from the indexed derivation of :mod:`attnflow.derivations.indexed` (sums over a
symbolic K), followed verbatim by the shared assembly of :mod:`attnflow.solvers.assembly`
(right-hand side, Jacobian, events, GD loop).  The loops read K from the array
shapes, so the code, its generation and its compilation do not grow with K.  The
printer hoists every sum into a temporary indexed by its free indices (``u = Ma``
once per column, ``β = aᵀu`` once), computed in float64 before the output loops;
the Hessian, proved symmetric in the derivation, is filled on and above the
diagonal and mirrored.  The softmax is the log-sum-exp of
:func:`attnflow.solvers.columns.column_attention`; the derived expressions are polynomials
in the attention and the moments, so nothing in them can overflow.

Every problem parameter (G, F, p, η) and K itself are runtime arguments.  The
module is written once under :func:`cache_dir` with a name keyed by a hash of the
derivation's and the assembly's source and of the library versions, so neither a
parameter sweep nor a K sweep regenerates or recompiles, and Numba's
``cache=True`` keeps the machine code next to the module::

    kernels = load_kernels(8)            # generate (or find) and import; the same module for any K
    system = ScoreSystem(G, F, p, kernels=kernels)
"""

import hashlib
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy
import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from ..solvers import assembly, columns, finite_prompt, pullback

from . import checks, indexed, stages

ASSEMBLY_MARKER = "# ---- ASSEMBLY"
# Numba's cache tracks only each function's own file, so everything the generated module
# calls into is part of the key: a change anywhere gives a new module and fresh machine code.
# stages.py is among them: generation checks the indexed column against the unrolled stages.
_SOURCES = (Path(indexed.__file__), Path(checks.__file__), Path(stages.__file__), Path(__file__),
            Path(assembly.__file__), Path(columns.__file__), Path(finite_prompt.__file__), Path(pullback.__file__))


def cache_dir():
    """Return where generated modules live: ``$ATTNFLOW_CACHE_DIR``, else ``~/.cache/attnflow/kernels``."""
    root = os.environ.get("ATTNFLOW_CACHE_DIR")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "attnflow" / "kernels"


def kernel_key():
    """Hash everything the generated source depends on: the derivation and assembly code, library versions.

    K is not part of it: one module serves every K.

    Returns
    -------
    str
        The SHA-256 hex digest of the library versions (SymPy, Numba, NumPy, Python) and
        of the source files the generated module is printed from or calls into.
    """
    h = hashlib.sha256()
    h.update(f"sympy={sp.__version__};numba={numba.__version__};numpy={numpy.__version__};"
             f"python={sys.version_info[:3]}".encode())
    for path in _SOURCES:
        h.update(path.read_bytes())
    return h.hexdigest()


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

    def lines(self):
        """Allocation (once per call, outside every loop) and computation of the temporaries."""
        out = []
        for name, placeholders, _, _ in self.temporaries:
            if placeholders:
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


def _kernel_source(name, arguments, doc, outputs, result=None):
    """One ``@njit`` loop kernel: K from ``a.shape``, temporaries, output loops, optional returned scalar."""
    sums = _Sums()
    outputs = [(target, indices, sums.hoist(expr), symmetric) for target, indices, expr, symmetric in outputs]
    result = None if result is None else sums.hoist(result)
    body = ["K = a.shape[0]"] + sums.lines()
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


def module_source(key=None):
    """Return the full text of the generated kernel module (one for every K).

    Parameters
    ----------
    key : str, optional
        The :func:`kernel_key` written into the module (computed when not given).

    Returns
    -------
    str
        A header with the key, the derived column kernels (:func:`column_source`) and the
        assembly of :mod:`attnflow.solvers.assembly` from its ``# ---- ASSEMBLY`` marker on.
    """
    key = key or kernel_key()
    assembly_source = Path(assembly.__file__).read_text()
    shared = assembly_source[assembly_source.index(ASSEMBLY_MARKER):]
    header = (
        '"""attnflow kernels for every K, generated by derivations.codegen from the indexed SymPy derivation.\n\n'
        f"Key {key}; sympy {sp.__version__}, numba {numba.__version__}. Do not edit: regenerated\n"
        'whenever the derivation, the assembly or a library version changes.\n"""\n\n'
        "import numpy as np\n"
        "from numba import njit, prange\n\n"
        "from attnflow.solvers.columns import column_attention, label_gap_moments, target_log_gap\n"
        "from attnflow.solvers.finite_prompt import finite_attention, finite_column, finite_column_hessian\n"
        "from attnflow.solvers.pullback import flow_sandwich, jacobian_from_hessians, log_loss\n\n"
        f'NAME = "generated"\nKEY = "{key}"\n\n\n'
    )
    return header + column_source() + "\n\n" + shared


def module_path(key=None):
    """Return the generated module's file: one per key, whatever K."""
    key = key or kernel_key()
    return cache_dir() / f"attnflow_kernels_{key[:16]}.py"


def load_kernels(K=None):
    """Import the generated kernel module, generating it first if needed; the same module serves every K.

    Compilation happens on first call of each kernel (and is cached by Numba).

    Parameters
    ----------
    K : int, optional
        Validated when given (an integer ≥ 2) but not used: the kernels read it from the arrays.

    Returns
    -------
    module
        A kernel set for :class:`attnflow.solvers.ScoreSystem`; it also carries
        ``generated_now`` (whether this call wrote it), ``generation_time`` (s, SymPy
        derivation, checks and printing; 0 on a cache hit) and ``path``.

    Raises
    ------
    ValueError
        If K is given and is not an integer ≥ 2.
    """
    if K is not None and (int(K) != K or K < 2):
        raise ValueError(f"K: expected an integer ≥ 2, got {K}")
    key = kernel_key()
    path = module_path(key)
    name = path.stem
    if name in sys.modules:
        module = sys.modules[name]
        module.generated_now, module.generation_time = False, 0.0
        return module
    generated_now, seconds = False, 0.0
    if not path.exists():
        start = time.perf_counter()
        text = module_source(key)
        seconds = time.perf_counter() - start
        path.parent.mkdir(parents=True, exist_ok=True)
        # Atomic: parallel sweep workers may generate the same module at once.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
        generated_now = True
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    module.generated_now, module.generation_time, module.path = generated_now, seconds, path
    return module


def dispatchers(module):
    """Return the Numba dispatchers of a kernel module (for compile-cache statistics)."""
    return {n: f for n, f in vars(module).items() if isinstance(f, numba.core.registry.CPUDispatcher)
            and getattr(f, "__module__", None) == module.__name__}
