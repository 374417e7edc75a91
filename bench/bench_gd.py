"""Gradient descent per iteration against the flop bound, NumPy and (if installed) PyTorch.

One GD iteration at N = ∞ needs ``F̃·W`` (the label gaps of every query at once) and
``G·Γ·G``: three K×K products, ``6K³`` flops, plus O(K²) for the softmax and the
gaps.  Its flop bound is ``6K³ / R_K`` with ``R_K`` the rate of K×K products through
the BLAS the kernels call, measured in the same run (:mod:`blas_rate`, which also sets
the convention: BLAS on one thread, for the kernels and for NumPy alike).

For each K (random unit features, single-index sin task, L = 3, η half the stable step)
it times, interleaved and repeated, the compiled loop (``iterate_gd``), the vectorised
NumPy loop of :mod:`attnflow.solvers.references.numpy_twins` and, when ``torch`` is
importable, the same map in PyTorch on the CPU (one thread).  Prints µs per iteration
(wall: min and median of the repeats; cpu: the minimum of the calling thread's CPU time,
which the other jobs of a shared machine do not inflate) and the ratios of the minima in
both clocks; ``x bound`` is the compiled time over ``6K³ / R_K`` with R_K timed by the
same clock (1.0 would be the three products alone).

Last, an ensemble of ``--batch`` problems per K (the same problem at B step sizes) in one
call (parallel over problems, a thread per core) against the same problems run
one by one: problems × iterations per second, and ``x bound``: the ensemble's time per
problem-iteration times its threads over ``6K³ / R_K`` (the bound is one core's).

Run: ``python bench/bench_gd.py [--repeats 5] [--batch 32]``.
"""

import blas_rate  # noqa: F401  (first: it sets the BLAS thread convention before NumPy loads)
import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attnflow.dynamics.problem import config  # noqa: E402
from attnflow.dynamics.problem import Problem  # noqa: E402
from attnflow.solvers import ScoreSystem, iterate_gd  # noqa: E402
from attnflow.solvers.references import numpy_twins as ref  # noqa: E402
from attnflow.solvers.ensemble import iterate_gd_ensemble, threads as ensemble_threads  # noqa: E402
from blas_rate import bound_seconds, describe_threads, matmul_rate  # noqa: E402

try:
    import torch
except ImportError:                                  # optional baseline
    torch = None


def problem(K):
    cfg = config.from_dict({"features": {"kind": "random-unit", "K": K, "d": K, "seed": 0},
                            "task": {"kind": "single-index", "L": 3.0}, "training": {"kernels": "hand-written"}})
    return Problem.from_config(cfg)


def torch_gd(S0, G, F, p, logp, eta, steps):
    S = torch.tensor(S0)
    G, F, p, logp = (torch.tensor(x) for x in (G, F, p, logp))
    diagF = torch.diagonal(F)
    with torch.no_grad():
        for _ in range(steps):
            A = torch.softmax(S + logp[:, None], dim=0)
            FA = F @ A
            B = FA - F + (diagF - torch.diagonal(FA))[None, :]
            beta = (A * B).sum(dim=0)
            Gamma = p[None, :] * A * (B - beta[None, :])
            S = S - eta * (G @ Gamma @ G)
    return S


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats (default %(default)s)")
    parser.add_argument("--K", type=int, nargs="*", default=[16, 32, 64, 128, 256])
    parser.add_argument("--batch", type=int, default=32, help="problems per ensemble (default %(default)s)")
    args = parser.parse_args()
    if torch is not None:
        torch.set_num_threads(1)
    rates = {K: matmul_rate(K) for K in args.K}
    cpu_rates = {K: matmul_rate(K, cpu=True) for K in args.K}
    print(describe_threads())
    print("bound = 6K³ / R_K, R_K: K×K np.dot in a compiled loop (the kernels' BLAS), this run")
    print("µs per GD iteration, wall: min / median of the repeats; cpu: min of the calling thread's CPU time "
          "(what the shared machine's other jobs do not inflate); ratios of the minima, wall | cpu")
    head = (f"{'K':>3} | {'R_K GF/s':>11} {'bound µs':>9} | {'compiled wall':>17} {'cpu':>8} {'x bound':>11} | "
            f"{'numpy wall':>17} {'cpu':>8} {'np/comp':>11}"
            + (f" | {'torch wall':>17} {'tc/comp':>11}" if torch is not None else ""))
    print(head)
    for K in args.K:
        pr = problem(K)
        system = ScoreSystem(pr.features.G, pr.F, pr.p)
        system.warm_up()
        G, F, p, logp = system.G, system.F, system.p, system.logp
        eta = 0.5 * system.stable_step(pr.S0)
        steps = max(100, int(4e8 // K**3))
        np_steps = max(20, steps // 20)
        rates[K] = max(rates[K], matmul_rate(K))              # the better of two samples
        cpu_rates[K] = max(cpu_rates[K], matmul_rate(K, cpu=True))
        bound, cpu_bound = bound_seconds(K, rates[K]), bound_seconds(K, cpu_rates[K])
        wall = {"compiled": [], "numpy": [], "torch": []}
        cpu = {"compiled": [], "numpy": [], "torch": []}
        iterate_gd(system, pr.S0, eta, 10)                  # compile outside the timing

        def timed(name, run):
            """Time ``run()``, which returns the iterations it made, in both clocks."""
            start, start_cpu = time.perf_counter(), time.thread_time()
            n = run()
            wall[name].append((time.perf_counter() - start) / n)
            cpu[name].append((time.thread_time() - start_cpu) / n)

        def numpy_run():
            ref.gd_iterate(pr.S0, G, F, p, logp, eta, np_steps)
            return np_steps

        def torch_run():
            torch_gd(pr.S0, G, F, p, logp, eta, np_steps)
            return np_steps

        for _ in range(args.repeats):                       # interleaved
            timed("compiled", lambda: iterate_gd(system, pr.S0, eta, steps, n_out=2).counters["iterations"])
            timed("numpy", numpy_run)
            if torch is not None:
                timed("torch", torch_run)

        def cell(name):
            ts = wall[name]
            return f"{min(ts) * 1e6:8.1f}/{statistics.median(ts) * 1e6:8.1f} {min(cpu[name]) * 1e6:8.1f}"

        def ratio(name):
            return f"{min(wall[name]) / min(wall['compiled']):5.2f}|{min(cpu[name]) / min(cpu['compiled']):5.2f}"
        line = (f"{K:>3} | {rates[K] / 1e9:5.1f}|{cpu_rates[K] / 1e9:5.1f} {bound * 1e6:9.2f} | {cell('compiled')} "
                f"{min(wall['compiled']) / bound:5.2f}|{min(cpu['compiled']) / cpu_bound:5.2f} | "
                f"{cell('numpy')} {ratio('numpy')}")
        if torch is not None:
            line += f" | {cell('torch')[:17]} {ratio('torch')}"
        print(line, flush=True)
    threads = ensemble_threads(True, args.batch)
    print(f"\nensembles of {args.batch} problems on {threads} threads: problems × iterations per second "
          "(min of the repeats); x bound = µs per problem-iteration × threads / (6K³ / R_K)")
    print(f"{'K':>3} | {'one by one':>12} {'ensemble':>12} {'ratio':>6} | {'ens. µs/it':>10} {'x bound':>7}")
    for K in args.K:
        pr = problem(K)
        system = ScoreSystem(pr.features.G, pr.F, pr.p)
        eta0 = 0.5 * system.stable_step(pr.S0)
        etas = eta0 * np.geomspace(0.25, 1.0, args.batch)
        steps = max(5, int(1e8 // (args.batch * K**3)))
        systems = [system] * args.batch
        iterate_gd_ensemble(systems[:2], pr.S0, etas[:2], 5)                   # compile outside the timing
        one, ens = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for eta in etas:
                iterate_gd(system, pr.S0, eta, steps, n_out=2)
            one.append(time.perf_counter() - start)
            start = time.perf_counter()
            iterate_gd_ensemble(systems, pr.S0, etas, steps)
            ens.append(time.perf_counter() - start)
        work = args.batch * steps
        per_it = min(ens) / work
        print(f"{K:>3} | {work / min(one):12.4g} {work / min(ens):12.4g} {min(one) / min(ens):6.2f} | "
              f"{per_it * 1e6:10.2f} {per_it * threads / bound_seconds(K, rates[K]):7.2f}", flush=True)


if __name__ == "__main__":
    main()
