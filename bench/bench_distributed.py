"""``attnflow sweep`` locally and on a Dask LocalCluster: points per second, interleaved.

The same grid as ``bench_sweep.py`` (orthonormal K = 8, linear task, compiled flows that
stop at loss 1e-6), swept N points at a time, taking turns within each repeat:

* local-1, local-2: the local process pool with 1 and 2 workers;
* dask-1, dask-2: a ``distributed.LocalCluster`` of 1 and 2 single-thread worker processes,
  started once (and warmed) before the timing, through ``--scheduler``.

Printed: points per second (max and median over the repeats), and Dask's overhead per
task measured in the same run (a batch of no-op tasks through ``client.map``), which with
the chunk size gives the extrapolation to a cluster: a chunk of c points costs c·t_point +
t_task, so W workers sweep about W / (t_point + t_task / c) points a second.
Run: ``python bench/bench_distributed.py [N]`` (N = 2000 by default; needs the dask extra).
"""

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attnflow.dynamics.commands.sweep import MAX_CHUNK, sweep  # noqa: E402
from bench_sweep import CFG  # noqa: E402

REPEATS = 3
NOOP_TASKS = 500


def _noop(x):
    return x


def main(N):
    import distributed
    params = [("task.L", [float(L) for L in np.geomspace(2.0, 50.0, N)])]
    work = Path(tempfile.mkdtemp(prefix="bench_distributed_"))
    clusters = {w: distributed.LocalCluster(n_workers=w, threads_per_worker=1, processes=True,
                                            dashboard_address=None, silence_logs=50) for w in (1, 2)}
    counter = [0]

    def run(jobs=None, scheduler=None):
        counter[0] += 1
        out = work / f"s{counter[0]}"
        start = time.perf_counter()
        rows = sweep(CFG, params, out, jobs=jobs, progress=False, scheduler=scheduler)
        seconds = time.perf_counter() - start
        assert len(rows) == N and all(r["status"] == "ok" for r in rows)
        shutil.rmtree(out)
        return N / seconds

    cases = {"local-1": lambda: run(jobs=1), "local-2": lambda: run(jobs=2),
             "dask-1": lambda: run(scheduler=clusters[1].scheduler_address),
             "dask-2": lambda: run(scheduler=clusters[2].scheduler_address)}
    for case in cases.values():                   # warm: kernels loaded in every worker
        case()
    rates = {name: [] for name in cases}
    task_overhead = []
    with distributed.Client(clusters[2].scheduler_address) as client:
        for _ in range(REPEATS):
            for name, case in cases.items():
                rates[name].append(case())
            start = time.perf_counter()
            client.gather(client.map(_noop, range(NOOP_TASKS), pure=False))
            task_overhead.append((time.perf_counter() - start) / NOOP_TASKS)
    for cluster in clusters.values():
        cluster.close()
    shutil.rmtree(work)
    print(f"K = 8 compiled flows to loss 1e-6, N = {N} points a sweep, {REPEATS} repeats, chunks of ≤ {MAX_CHUNK}")
    print(f"{'':10s} {'max pts/s':>10s} {'median':>10s}")
    for name, values in rates.items():
        print(f"{name:10s} {max(values):10.1f} {statistics.median(values):10.1f}")
    t_task = min(task_overhead)
    t_point = 1.0 / max(rates["local-1"])
    print(f"Dask overhead per task: {1e3 * t_task:.2f} ms (min of {REPEATS} batches of {NOOP_TASKS} no-op tasks); "
          f"one point {1e3 * t_point:.2f} ms (local-1)")
    for workers in (8, 64, 512):
        print(f"extrapolated, {workers} single-thread workers, chunks of {MAX_CHUNK}: "
              f"{workers / (t_point + t_task / MAX_CHUNK):,.0f} points/s "
              f"(ignores the parent writing chunks and the scheduler's own limit)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
