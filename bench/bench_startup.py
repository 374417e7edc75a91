"""Cold and hot start of the generated kernels, each in a fresh process.

Two commands, for K = 4, 16, 64, and the floor they stand on:

* ``run``: ``python -m attnflow run CONFIG --out DIR --no-plots --quiet`` with the
  default problem at that K (orthonormal features, single-index task, gradient flow)
  and ``t_end = 1``, so the integration itself is a negligible part;
* ``load+warm``: ``load_kernels(K)`` and ``ScoreSystem(...).warm_up()`` alone;
* ``floor`` (K = 0 in the table): a process that imports NumPy and Numba and calls one
  trivial function compiled with ``cache=True`` — what any program with cached Numba code
  pays before doing anything (Numba's import and its first dispatch set up its typing and
  target registries).  On this 2-core machine that is 1.2–1.4 s, so a hot ``run`` cannot
  finish in 1 s; what it adds to the floor is attnflow's own cost.

Cold: empty ``ATTNFLOW_CACHE_DIR`` and ``NUMBA_CACHE_DIR`` (fresh temporary directories
per repeat): SymPy generates the module and Numba compiles everything, the project's
hand-written kernels included.  Hot: the same directories after the cold repeat filled
them, so the module and the machine code come from disk.  Each entry is the wall time
and the CPU time (user + system, from ``getrusage`` of the child) of the whole process,
interpreter start and imports included; min and median over the repeats.  CPU time is
the number to read on a shared machine: wall time waits for other processes.

Run: ``python bench/bench_startup.py [--repeats 3] [--K 4 16 64]``.
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LOAD_AND_WARM = """
import sys
import numpy as np
from attnflow.derivations import load_kernels
from attnflow.solvers import ScoreSystem
K = int(sys.argv[1])
ScoreSystem(np.eye(K), np.eye(K), np.full(K, 1 / K), kernels=load_kernels(K)).warm_up()
"""


def _timed(command, env, timeout=1200):
    """Run ``command``; return (wall s, CPU s of the child).  Raises if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


FLOOR = """
import numba

@numba.njit(cache=True)
def one(x):
    return x + 1

one(1)
"""


def _commands(K, work):
    config = work / f"K{K}.toml"
    config.write_text(f"[features]\nK = {K}\n\n[training]\nt_end = 1.0\nn_out = 10\n")
    return {"run": [sys.executable, "-m", "attnflow", "run", str(config), "--out", str(work / f"out{K}"),
                    "--no-plots", "--quiet"],
            "load+warm": [sys.executable, "-c", LOAD_AND_WARM, str(K)]}


def measure(Ks, repeats):
    """``{(K, command, "cold"|"hot"): [(wall, cpu), …]}``; the floor has K = 0."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="attnflow-startup-") as tmp:
        work = Path(tmp)
        (work / "floor.py").write_text(FLOOR)          # cache=True needs a file to locate the cache by
        for K in [0, *Ks]:
            commands = {"floor": [sys.executable, str(work / "floor.py")]} if K == 0 else _commands(K, work)
            for name, command in commands.items():
                for r in range(repeats):
                    caches = work / f"{name}-{K}-{r}"
                    env = dict(os.environ, ATTNFLOW_CACHE_DIR=str(caches / "kernels"),
                               NUMBA_CACHE_DIR=str(caches / "numba"), PYTHONPATH=str(ROOT))
                    results.setdefault((K, name, "cold"), []).append(_timed(command, env))
                    results.setdefault((K, name, "hot"), []).append(_timed(command, env))
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--K", type=int, nargs="+", default=[4, 16, 64])
    args = parser.parse_args(argv)
    results = measure(args.K, args.repeats)
    print(f"{'K':>4} {'command':10} {'start':5} | {'wall min':>8} {'wall med':>8} | {'CPU min':>8} {'CPU med':>8}  (s)")
    for (K, name, kind), samples in results.items():
        wall, cpu = zip(*samples)
        print(f"{K:>4} {name:10} {kind:5} | {min(wall):8.2f} {statistics.median(wall):8.2f} | "
              f"{min(cpu):8.2f} {statistics.median(cpu):8.2f}")


if __name__ == "__main__":
    main()
