"""``attnflow sweep`` of K = 8 points against one compiled run, interleaved: the flow or GD.

The grid: orthonormal features K = 8, the linear task with L in geomspace(2, 50, N),
S(0) = 0, 400 output points, and

* ``--mode flow`` (the default): ``method = "DOP853-compiled"``, t_end = 10⁷,
  ``stop_loss = 1e-6`` (every point stops there), rtol = 1e-8, atol = 1e-10;
* ``--mode gd``: 2000 iterations at the automatic step size (half the stable step at the
  start, computed per point as the sweep does), no stop.

Timed, taking turns within each repeat (so machine load hits all alike):

* sweep: :func:`attnflow.dynamics.commands.sweep.sweep` of the N points into a new directory with
  jobs = 2 — the whole command: pool start, problems, step sizes, ensembles, files and table;
* single: ``integrate_flow(method="DOP853-compiled")`` or ``iterate_gd`` of the middle point's
  problem (system and step size found beforehand), the mean of 20 runs;
* ensemble: :func:`solvers.ensemble.integrate_flow_ensemble` or ``iterate_gd_ensemble`` of the
  N problems (systems built beforehand) on a thread per core;
* ensemble-1: the same on one thread (what each sweep worker runs), first 500 problems.

Printed: seconds per point, min and median over the repeats, and each one's ratio to
single (min / min); then the 10⁴-point sweep the minimum implies.
Run: ``python bench/bench_sweep.py [N] [--mode flow|gd]`` (N = 3000 by default).  N = 2000 took
3 minutes of wall time (76 s of CPU) on 2 cores shared with four other jobs.
"""

import argparse
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
from attnflow.solvers import integrate_flow, iterate_gd  # noqa: E402
from attnflow.solvers.ensemble import integrate_flow_ensemble, iterate_gd_ensemble  # noqa: E402

REPEATS = 3
JOBS = 2
SINGLE_RUNS = 20
SERIAL_PROBLEMS = 500
TRAINING = {"flow": {"mode": "flow", "method": "DOP853-compiled", "t_end": 1e7, "stop_loss": 1e-6, "rtol": 1e-8,
                     "atol": 1e-10, "n_out": 400},
            "gd": {"mode": "gd", "steps": 2000, "n_out": 400}}


def main(N, mode):
    cfg = config.from_dict({"features": {"kind": "orthonormal", "K": 8}, "task": {"kind": "linear"},
                            "training": TRAINING[mode]})
    Ls = [float(L) for L in np.geomspace(2.0, 50.0, N)]
    params = [("task.L", Ls)]
    problems = [Problem.from_config(cfg.with_overrides({"task.L": L})) for L in Ls]
    systems = [p.system() for p in problems]
    S0 = np.stack([p.start for p in problems])
    t = cfg.training
    middle = systems[N // 2]
    etas = [0.5 * s.stable_step(x) for s, x in zip(systems, S0)] if mode == "gd" else None

    def ensemble(which, parallel):
        which = list(which)
        if mode == "gd":
            return iterate_gd_ensemble([systems[i] for i in which], S0[which], [etas[i] for i in which], t.steps,
                                       t.eps, t.stop_loss, t.n_out, parallel=parallel)
        return integrate_flow_ensemble([systems[i] for i in which], S0[which], t.t_end, t.rtol, t.atol,
                                       t.eps, t.stop_loss, t.n_out, parallel=parallel)

    def single():
        if mode == "gd":
            return iterate_gd(middle, S0[N // 2], etas[N // 2], t.steps, t.eps, t.stop_loss, t.n_out)
        return integrate_flow(middle, S0[N // 2], t.t_end, t.method, t.rtol, t.atol, t.eps, t.stop_loss, t.n_out)

    work = tempfile.mkdtemp(prefix="bench_sweep_")
    runs = {"sweep": 0}

    def run_sweep():
        runs["sweep"] += 1
        out = Path(work) / f"s{runs['sweep']}"
        rows = sweep(cfg, params, out, jobs=JOBS, progress=False)
        shutil.rmtree(out)
        return rows

    # Warm up (Numba's caches loaded, the pool's fork path used once) and check what is timed.
    done = {"flow": {"stop_loss"}, "gd": {"finished", "max_steps"}}[mode]
    assert single().status in done
    result = ensemble(range(N), True)
    assert set(result.status) <= done, set(result.status)
    ensemble(range(2), False)
    sweep(cfg, [("task.L", Ls[:4])], Path(work) / "warm", jobs=JOBS, progress=False)

    timings = {"sweep": [], "single": [], "ensemble": [], "ensemble-1": []}
    for _ in range(REPEATS):
        start = time.perf_counter()
        rows = run_sweep()
        timings["sweep"].append((time.perf_counter() - start) / N)
        assert len(rows) == N and all(r[f"{mode}:status"] in done for r in rows)
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

    if mode == "gd":
        print(f"GD, K = 8, N = {N} points, {REPEATS} repeats, sweep jobs = {JOBS}; {t.steps} iterations each "
              f"({np.count_nonzero(result.status == 'finished')} finished, the others max_steps)")
    else:
        steps = result.nsteps
        print(f"flow, K = 8, N = {N} points, {REPEATS} repeats, sweep jobs = {JOBS}; every run stops at loss 1e-6 "
              f"after {steps.min()}–{steps.max()} steps (median {int(np.median(steps))})")
    base = min(timings["single"])
    print(f"{'':12s} {'min ms/pt':>10s} {'median':>10s} {'÷ single':>9s}")
    for name, values in timings.items():
        print(f"{name:12s} {1e3 * min(values):10.3f} {1e3 * statistics.median(values):10.3f} "
              f"{min(values) / base:9.2f}")
    print(f"a 10⁴-point sweep at the minimum: {1e4 * min(timings['sweep']):.1f} s on {JOBS} processes")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("N", type=int, nargs="?", default=3000)
    parser.add_argument("--mode", choices=sorted(TRAINING), default="flow")
    args = parser.parse_args()
    main(args.N, args.mode)
