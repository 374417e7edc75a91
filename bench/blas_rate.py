"""The flop bound of ``bench_gd.py`` and ``bench_kgrowth.py``: one definition for both.

Import this module before NumPy.  It fixes the convention every rate and time of those
benchmarks is measured under: **BLAS on one thread**, for both OpenBLAS builds in the
process (NumPy's, and SciPy's, which Numba's ``np.dot`` calls through
``scipy.linalg.cython_blas``).  Measured 2026-11-26 on the shared 2-core machine, a 2-thread
dgemm at K = 256 ranged from 0.3 to 39 GFLOP/s between repeats (other jobs on the
second core), a 1-thread one from 32 to 36: a bound on all threads would measure the
neighbours.  The NumPy baselines run under the same setting.

``R_K`` is the rate of the BLAS the compiled kernels call, at the size they call it:
K×K times K×K into a preallocated array, ``np.dot(A, B, out)`` repeated inside one
compiled loop (no Python call per product).  An iteration of GD (or one flow right-hand
side) makes three such products (``F̃·W`` and the sandwich ``G·Γ·G``), ``6K³`` flops, so its
flop bound is ``6K³ / R_K``, the time of the three products alone.
"""

import os

for _name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import time  # noqa: E402

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

FLOPS_PER_ITERATION = 6          # × K³: F̃·W (2K³) and G·Γ·G (4K³)


@njit(cache=True)
def _dgemm_loop(A, B, out, calls):
    """``calls`` products ``out = A·B`` through Numba's BLAS binding."""
    for _ in range(calls):
        np.dot(A, B, out)


def matmul_rate(K, repeats=5, flops=2e7, cpu=False):
    """``R_K`` in flop/s: the best of ``repeats`` timings of about ``flops`` flops of K×K dgemm.

    With ``cpu``, timed in CPU seconds of the calling thread (``time.thread_time``, which the
    one-thread BLAS runs on) instead of wall seconds: on a shared machine the time slices
    other jobs take are not counted.
    """
    clock = time.thread_time if cpu else time.perf_counter
    rng = np.random.default_rng(K)
    A, B = rng.standard_normal((2, K, K))
    out = np.empty((K, K))
    calls = max(1, int(flops // (2 * K**3)))
    _dgemm_loop(A, B, out, 1)                    # compile (or load) outside the timing
    best = np.inf
    for _ in range(repeats):
        start = clock()
        _dgemm_loop(A, B, out, calls)
        best = min(best, (clock() - start) / calls)
    return 2 * K**3 / best


def bound_seconds(K, rate):
    """The flop bound of one GD iteration or flow right-hand side at rate ``rate``: ``6K³ / R_K``."""
    return FLOPS_PER_ITERATION * K**3 / rate


def describe_threads():
    """One line: the BLAS libraries loaded and their thread counts (threadpoolctl, if installed)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS threads: OPENBLAS_NUM_THREADS=1 (threadpoolctl not installed to confirm)"
    libs = [f"{i['prefix']} {i['version']}: {i['num_threads']}" for i in threadpool_info() if i["user_api"] == "blas"]
    return "BLAS threads: " + ", ".join(libs)
