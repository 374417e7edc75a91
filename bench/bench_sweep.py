"""``attnflow sweep`` of compiled K = 8 flow points against one compiled trajectory, interleaved.

The grid: orthonormal features K = 8, the linear task with L in geomspace(2, 50, N),
S(0) = 0, ``training.mode = "flow"``, ``method = "DOP853-compiled"``, t_end = 10⁷,
``stop_loss = 1e-6`` (every point stops there), rtol = 1e-8, atol = 1e-10, 400 output
points.  Timed, taking turns within each repeat (so machine load hits all alike):

* sweep: :func:`attnflow.dynamics.commands.sweep.sweep` of the N points into a new directory with
  jobs = 2 — the whole command: pool start, problems, ensembles, files and table;
* single: ``integrate_flow(method="DOP853-compiled")`` of the middle point's problem
  (system built beforehand), the mean of 20 runs;
* ensemble: :func:`solvers.ensemble.integrate_flow_ensemble` of the N problems (systems
  built beforehand) on a thread per core;
* ensemble-1: the same on one thread (what each sweep worker runs), first 500 problems.

Printed: seconds per point, min and median over the repeats, and each one's ratio to
single (min / min); then the 10⁴-point sweep the minimum implies.
Run: ``python bench/bench_sweep.py [N]`` (N = 3000 by default).  N = 2000 took 3 minutes of
wall time (76 s of CPU) on 2 cores shared with four other jobs.
"""

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attnflow.dynamics.problem import config  # noqa: E402
from attnflow.dynamics.problem import Problem  # noqa: E402
from attnflow.dynamics.commands.sweep import sweep  # noqa: E402
from attnflow.solvers import integrate_flow  # noqa: E402
from attnflow.solvers.ensemble import integrate_flow_ensemble  # noqa: E402

REPEATS = 3
JOBS = 2
SINGLE_RUNS = 20
SERIAL_PROBLEMS = 500
CFG = config.from_dict({"features": {"kind": "orthonormal", "K": 8}, "task": {"kind": "linear"},
                        "training": {"mode": "flow", "method": "DOP853-compiled", "t_end": 1e7, "stop_loss": 1e-6,
                                     "rtol": 1e-8, "atol": 1e-10, "n_out": 400}})


def main(N):
    Ls = [float(L) for L in np.geomspace(2.0, 50.0, N)]
    params = [("task.L", Ls)]
    problems = [Problem.from_config(CFG.with_overrides({"task.L": L})) for L in Ls]
    systems = [p.system() for p in problems]
    S0 = np.stack([p.start for p in problems])
    t = CFG.training
    middle = systems[N // 2]

    def ensemble(which, parallel):
        return integrate_flow_ensemble([systems[i] for i in which], S0[list(which)], t.t_end, t.rtol, t.atol,
                                       t.eps, t.stop_loss, t.n_out, parallel=parallel)

    def single():
        return integrate_flow(middle, S0[N // 2], t.t_end, t.method, t.rtol, t.atol, t.eps, t.stop_loss, t.n_out)

    work = tempfile.mkdtemp(prefix="bench_sweep_")
    runs = {"sweep": 0}

    def run_sweep():
        runs["sweep"] += 1
        out = Path(work) / f"s{runs['sweep']}"
        rows = sweep(CFG, params, out, jobs=JOBS, progress=False)
        shutil.rmtree(out)
        return rows

    # Warm up (Numba's caches loaded, the pool's fork path used once) and check what is timed.
    assert single().status == "stop_loss"
    result = ensemble(range(N), True)
    assert set(result.status) == {"stop_loss"}, set(result.status)
    ensemble(range(2), False)
    sweep(CFG, [("task.L", Ls[:4])], Path(work) / "warm", jobs=JOBS, progress=False)

    timings = {"sweep": [], "single": [], "ensemble": [], "ensemble-1": []}
    for _ in range(REPEATS):
        start = time.perf_counter()
        rows = run_sweep()
        timings["sweep"].append((time.perf_counter() - start) / N)
        assert len(rows) == N and all(r["status"] == "ok" for r in rows)
        start = time.perf_counter()
        for _ in range(SINGLE_RUNS):
            single()
        timings["single"].append((time.perf_counter() - start) / SINGLE_RUNS)
        start = time.perf_counter()
        ensemble(range(N), True)
        timings["ensemble"].append((time.perf_counter() - start) / N)
        m = min(N, SERIAL_PROBLEMS)
        start = time.perf_counter()
        ensemble(range(m), False)
        timings["ensemble-1"].append((time.perf_counter() - start) / m)
    shutil.rmtree(work)

    steps = result.nsteps
    print(f"K = 8, N = {N} points, {REPEATS} repeats, sweep jobs = {JOBS}; every run stops at loss 1e-6 "
          f"after {steps.min()}–{steps.max()} steps (median {int(np.median(steps))})")
    base = min(timings["single"])
    print(f"{'':12s} {'min ms/pt':>10s} {'median':>10s} {'÷ single':>9s}")
    for name, values in timings.items():
        print(f"{name:12s} {1e3 * min(values):10.3f} {1e3 * statistics.median(values):10.3f} "
              f"{min(values) / base:9.2f}")
    print(f"a 10⁴-point sweep at the minimum: {1e4 * min(timings['sweep']):.1f} s on {JOBS} processes")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
