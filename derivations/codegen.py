"""Numba kernels generated from the SymPy derivation: one module for every K, cached on disk.

The generated module holds the two derived column functions of
:mod:`attnflow.solvers.columns` (``column_loss_gradient`` and ``column_hessian``), printed
as loops from the indexed derivation of :mod:`attnflow.derivations.indexed` (sums over a
symbolic K), followed verbatim by the shared assembly of :mod:`attnflow.solvers.assembly`
(right-hand side, Jacobian, events, GD loop).  The module for several heads
(``load_kernels(heads=True)``, generated only when heads are used) adds the four
multi-head column functions (``mean_column_loss``, ``head_column_gradient``,
``head_column_cross_hessian``, ``head_column_hessian_correction``), printed from
:mod:`attnflow.derivations.indexed_heads` (K and H symbols), and the multi-head assembly of
:mod:`attnflow.solvers.multihead_assembly`.  The loops read K from the array
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
    with_heads = load_kernels(8, heads=True)
    heads = MultiHeadSystem(ScoreSystem(G, F, p, kernels=with_heads), 2, kernels=with_heads)
"""

import functools
import hashlib
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

from importlib.metadata import version

import numba
import numpy

from ..solvers import assembly, columns, finite_prompt, multihead_assembly, pullback

# SymPy is imported only to generate a module (kernel_source): loading one that is on disk,
# the path of every run after the first, does not pay its import (about a second).
_HERE = Path(__file__).parent
# Numba's cache tracks only each function's own file, so everything the generated module
# calls into is part of the key: a change anywhere gives a new module and fresh machine code.
# stages.py is among them: generation checks the indexed column against the unrolled stages.
_SOURCES = (_HERE / "indexed.py", _HERE / "checks.py", _HERE / "stages.py", Path(__file__), _HERE / "kernel_source.py",
            Path(assembly.__file__), Path(columns.__file__), Path(finite_prompt.__file__), Path(pullback.__file__),
            _HERE / "indexed_heads.py", Path(multihead_assembly.__file__))


def cache_dir():
    """Return where generated modules live: ``$ATTNFLOW_CACHE_DIR``, else ``~/.cache/attnflow/kernels``."""
    root = os.environ.get("ATTNFLOW_CACHE_DIR")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "attnflow" / "kernels"


@functools.cache
def _library_versions():
    # Once per process: importlib.metadata parses SymPy's metadata file on every call (about 1 ms,
    # which a sweep paid per point when it looked its kernels up).
    return (f"sympy={version('sympy')};numba={numba.__version__};numpy={numpy.__version__};"
            f"python={sys.version_info[:3]}")


def kernel_key():
    """Hash everything the generated source depends on: the derivation and assembly code (multi-head too), library versions.

    K is not part of it: one module serves every K.

    Returns
    -------
    str
        The SHA-256 hex digest of the library versions (SymPy, Numba, NumPy, Python) and
        of the source files the generated module is printed from or calls into.
    """
    # Hashed again only when a source file changes (path, size or modification time): a sweep
    # looks its kernels up per point, and reading and hashing the sources took 0.3 ms each time.
    return _key_of(tuple((str(path), st.st_size, st.st_mtime_ns) for path in _SOURCES for st in [path.stat()]))


@functools.lru_cache(maxsize=16)
def _key_of(stamps):
    h = hashlib.sha256()
    h.update(_library_versions().encode())
    for path, _, _ in stamps:
        h.update(Path(path).read_bytes())
    return h.hexdigest()


def module_path(key=None, heads=False):
    """Return the generated module's file: one per key (and with or without heads), whatever K."""
    key = key or kernel_key()
    return cache_dir() / f"attnflow_{'heads_' if heads else ''}kernels_{key[:16]}.py"


def load_kernels(K=None, heads=False):
    """Import the generated kernel module, generating it first if needed; the same module serves every K.

    Compilation happens on first call of each kernel (and is cached by Numba).

    Parameters
    ----------
    K : int, optional
        Validated when given (an integer ≥ 2) but not used: the kernels read it from the arrays.
    heads : bool, optional
        The module that also holds the multi-head kernels, for
        :class:`attnflow.solvers.multihead.MultiHeadSystem` (and its score system).  A module
        of its own: deriving and checking the heads' column takes about 10 s of SymPy, which
        a problem without heads does not pay.

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
    path = module_path(key, heads)
    name = path.stem
    if name in sys.modules:
        module = sys.modules[name]
        module.generated_now, module.generation_time = False, 0.0
        return module
    generated_now, seconds = False, 0.0
    if not path.exists():
        from .kernel_source import module_source

        start = time.perf_counter()
        text = module_source(key, heads)
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


def __getattr__(name):
    # The printing half (column_source, heads_source, module_source, the markers) lives in kernel_source,
    # imported with SymPy only when asked for.
    if name in ("column_source", "heads_source", "module_source", "ASSEMBLY_MARKER", "MULTIHEAD_ASSEMBLY_MARKER"):
        from . import kernel_source

        return getattr(kernel_source, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def dispatchers(module):
    """Return the Numba dispatchers of a kernel module (for compile-cache statistics)."""
    return {n: f for n, f in vars(module).items() if isinstance(f, numba.core.registry.CPUDispatcher)
            and getattr(f, "__module__", None) == module.__name__}
