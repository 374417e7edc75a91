"""Numba kernels generated from the SymPy derivation, cached on disk as real modules.

A generated module holds the two derived column functions of
:mod:`solvers.columns` (``column_loss_gradient`` and ``column_hessian``), printed
from the expressions of :func:`derivations.stages.derive` after common-subexpression
elimination, followed verbatim by the shared assembly of :mod:`solvers.assembly`
(right-hand side, Jacobian, events, GD loop).  The softmax is the log-sum-exp of
:func:`solvers.columns.column_attention`; the derived expressions are polynomials
in the attention and the moments, so nothing in them can overflow.

Every problem parameter (G, F, p, η) is a runtime argument; only the number of
features K is built into the code.  Modules are written once per K under
:func:`cache_dir` with a name keyed by a hash of the derivation's and the
assembly's source and of the library versions, so a parameter sweep never
regenerates or recompiles, and Numba's ``cache=True`` keeps the machine code next
to the module::

    kernels = load_kernels(8)            # generate (or find) and import
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

import solvers.assembly
import solvers.columns
import solvers.finite_prompt

from . import stages

ASSEMBLY_MARKER = "# ---- ASSEMBLY"
# Numba's cache tracks only each function's own file, so everything the generated module
# calls into is part of the key: a change anywhere gives a new module and fresh machine code.
_SOURCES = (Path(stages.__file__), Path(__file__), Path(solvers.assembly.__file__), Path(solvers.columns.__file__),
            Path(solvers.finite_prompt.__file__))


def cache_dir():
    """Where generated modules live: ``$ATTNFLOW_CACHE_DIR``, else ``~/.cache/attnflow/kernels``."""
    root = os.environ.get("ATTNFLOW_CACHE_DIR")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "attnflow" / "kernels"


def kernel_key(K):
    """Hash of everything the generated source depends on: K, the derivation and assembly code, versions."""
    h = hashlib.sha256()
    h.update(f"K={K};sympy={sp.__version__};numba={numba.__version__};numpy={numpy.__version__};"
             f"python={sys.version_info[:3]}".encode())
    for path in _SOURCES:
        h.update(path.read_bytes())
    return h.hexdigest()


class _ArrayPrinter(PythonCodePrinter):
    """Prints each input symbol by the name of the local it is loaded into (``a_3`` → ``a2``)."""

    def __init__(self, names):
        super().__init__({"fully_qualified_modules": False})
        self._names = names

    def _print_Symbol(self, expr):
        return self._names.get(expr, super()._print_Symbol(expr))


def column_source(derivation):
    """Python source of ``column_loss_gradient`` and ``column_hessian`` for the derivation's K."""
    col = derivation.columns
    a, M, K = col["a"], col["M"], derivation.K
    # Array entries are read once into locals: straight-line code full of repeated
    # indexing takes Numba several times longer to compile.
    loads = {ai: (f"a{i}", f"a[{i}]") for i, ai in enumerate(a)}
    loads.update({M[i, j]: (f"M{i}_{j}", f"M[{i}, {j}]") for i in range(K) for j in range(i, K)})
    printer = _ArrayPrinter({sym: local for sym, (local, _) in loads.items()})

    def body(outputs, targets, result=None):
        temps, reduced = sp.cse(outputs, symbols=sp.numbered_symbols("x"))
        used = set().union(*(e.free_symbols for e in outputs))
        lines = [f"    {loads[sym][0]} = {loads[sym][1]}" for sym in loads if sym in used]
        lines += [f"    {printer.doprint(sym)} = {printer.doprint(val)}" for sym, val in temps]
        for target, expr in zip(targets, reduced[: len(targets)]):
            lines.append(f"    {target} = {printer.doprint(expr)}")
        if result is not None:
            lines.append(f"    return {printer.doprint(reduced[-1])}")
        return "\n".join(lines)

    H = col["hessian"]
    hess_entries = [(i, j) for i in range(K) for j in range(i, K)]   # H is symmetric
    hess_targets = [f"H[{i}, {j}] = H[{j}, {i}]" if i != j else f"H[{i}, {i}]" for i, j in hess_entries]
    return (
        "@njit(cache=True)\n"
        "def column_loss_gradient(a, M, g):\n"
        '    """Generated: return ℓ = ½ aᵀMa and write g = ∂ℓ/∂s into g."""\n'
        + body(list(col["gradient"]) + [col["loss"]], [f"g[{i}]" for i in range(K)], result=True)
        + "\n\n\n@njit(cache=True)\n"
        "def column_hessian(a, M, H):\n"
        '    """Generated: write H = ∂²ℓ/∂s∂s into H."""\n'
        + body([H[i, j] for i, j in hess_entries], hess_targets)
        + "\n"
    )


def module_source(K, key=None):
    """The full text of the generated kernel module for K features."""
    key = key or kernel_key(K)
    assembly = Path(solvers.assembly.__file__).read_text()
    shared = assembly[assembly.index(ASSEMBLY_MARKER):]
    header = (
        f'"""attnflow kernels for K = {K}, generated by derivations.codegen from the SymPy derivation.\n\n'
        f"Key {key}; sympy {sp.__version__}, numba {numba.__version__}. Do not edit: regenerated\n"
        'whenever the derivation, the assembly or a library version changes.\n"""\n\n'
        "import numpy as np\n"
        "from numba import njit\n\n"
        "from solvers.columns import column_attention, label_gap_moments\n"
        "from solvers.finite_prompt import finite_attention, finite_column, finite_column_hessian\n\n"
        f'NAME = "generated"\nK = {K}\nKEY = "{key}"\n\n\n'
    )
    return header + column_source(stages.derive(K)) + "\n\n" + shared


def module_path(K, key=None):
    key = key or kernel_key(K)
    return cache_dir() / f"attnflow_kernels_K{K}_{key[:16]}.py"


def load_kernels(K):
    """Import the generated kernel module for K features, generating it first if needed.

    The returned module is a kernel set for :class:`solvers.ScoreSystem`; it also
    carries ``generated_now`` (whether this call wrote it), ``generation_time`` (s,
    SymPy derivation, CSE and printing; 0 on a cache hit) and ``path``.
    Compilation happens on first call of each kernel (and is cached by Numba).
    """
    if int(K) != K or K < 2:
        raise ValueError(f"K: expected an integer ≥ 2, got {K}")
    key = kernel_key(K)
    path = module_path(K, key)
    name = path.stem
    if name in sys.modules:
        module = sys.modules[name]
        module.generated_now, module.generation_time = False, 0.0
        return module
    generated_now, seconds = False, 0.0
    if not path.exists():
        start = time.perf_counter()
        text = module_source(K, key)
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
    """The Numba dispatchers of a kernel module (for compile-cache statistics)."""
    return {n: f for n, f in vars(module).items() if isinstance(f, numba.core.registry.CPUDispatcher)
            and getattr(f, "__module__", None) == module.__name__}
