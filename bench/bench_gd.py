"""Gradient descent per iteration against the flop bound, NumPy and (if installed) PyTorch.

One GD iteration at N = ∞ needs ``F·A`` (the label gaps of every query at once) and
``G·Γ·G``: three K×K products, ``6K³`` flops, plus O(K²) for the softmax and the
gaps.  The flop bound of an iteration is therefore ``6K³ / R`` with ``R`` the
matrix-multiply rate of this machine, measured in the same run twice:

* ``R_K``: three K×K products through NumPy's BLAS (what a K×K iteration can reach,
  call overhead included);
* ``R_peak``: one 1024×1024 product (the machine's sustained double-precision rate).

For K = 4 … 64 (random unit features, single-index sin task, L = 3, η half the
stable step) it times, interleaved and repeated, the compiled loop (``iterate_gd``),
the vectorised NumPy loop of :mod:`attnflow.solvers.references.numpy_twins` and, when ``torch`` is
importable, the same map in PyTorch on the CPU.  Prints µs per iteration (min and
median of the repeats) and the ratios; ``x bound`` is the compiled time over the
bound ``6K³/R_peak`` (1.0 would be the physical limit).

Last, an ensemble of ``--batch`` problems per K (the same problem at B step sizes) in one
compiled call against the same problems run one by one: problems × iterations per second
and the ratio to the bound ``6K³/R_peak`` per iteration (on all cores: the bound is per core).

Run: ``python bench/bench_gd.py [--repeats 5] [--batch 32]``.
"""

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
from attnflow.solvers.ensemble import iterate_gd_ensemble  # noqa: E402

try:
    import torch
except ImportError:                                  # optional baseline
    torch = None


def problem(K):
    cfg = config.from_dict({"features": {"kind": "random-unit", "K": K, "d": K, "seed": 0},
                            "task": {"kind": "single-index", "L": 3.0}, "training": {"kernels": "hand-written"}})
    return Problem.from_config(cfg)


def matmul_seconds(n, products, repeats=5):
    """Best time of ``products`` chained n×n products through NumPy's BLAS."""
    rng = np.random.default_rng(n)
    A, B = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    out = np.empty((n, n))
    best = np.inf
    calls = max(1, int(2e7 // (2 * n**3 * products)))
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            for _ in range(products):
                np.dot(A, B, out)
        best = min(best, (time.perf_counter() - start) / calls)
    return best


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
    parser.add_argument("--K", type=int, nargs="*", default=[4, 8, 16, 32, 64])
    parser.add_argument("--batch", type=int, default=32, help="problems per ensemble (default %(default)s)")
    args = parser.parse_args()
    if torch is not None:
        torch.set_num_threads(1)
    peak = 2 * 1024**3 / matmul_seconds(1024, 1)
    print(f"sustained matmul rate R_peak = {peak / 1e9:.1f} GFLOP/s (1024×1024, NumPy BLAS)")
    print("µs per GD iteration: min / median of the repeats; ratios use the minima")
    head = (f"{'K':>3} | {'bound µs':>8} {'R_K GF/s':>8} | {'compiled':>15} {'x bound':>7} | {'numpy':>15} "
            f"{'np/comp':>7}" + (f" | {'torch':>15} {'tc/comp':>7}" if torch is not None else ""))
    print(head)
    for K in args.K:
        pr = problem(K)
        system = ScoreSystem(pr.features.G, pr.F, pr.p)
        system.warm_up()
        G, F, p, logp = system.G, system.F, system.p, system.logp
        eta = 0.5 * system.stable_step(pr.S0)
        steps = max(200, int(2e6 // K**3))
        np_steps = max(50, steps // 20)
        bound_K = matmul_seconds(K, 3)                      # three K×K products per iteration
        rate_K = 6 * K**3 / bound_K
        bound = 6 * K**3 / peak
        times = {"compiled": [], "numpy": [], "torch": []}
        iterate_gd(system, pr.S0, eta, 10)                  # compile outside the timing
        for _ in range(args.repeats):                       # interleaved
            times["compiled"].append(iterate_gd(system, pr.S0, eta, steps).wall_time / steps)
            start = time.perf_counter()
            ref.gd_iterate(pr.S0, G, F, p, logp, eta, np_steps)
            times["numpy"].append((time.perf_counter() - start) / np_steps)
            if torch is not None:
                start = time.perf_counter()
                torch_gd(pr.S0, G, F, p, logp, eta, np_steps)
                times["torch"].append((time.perf_counter() - start) / np_steps)

        def cell(name):
            ts = times[name]
            return f"{min(ts) * 1e6:7.1f}/{statistics.median(ts) * 1e6:7.1f}"
        c = min(times["compiled"])
        line = (f"{K:>3} | {bound * 1e6:8.2f} {rate_K / 1e9:8.2f} | {cell('compiled')} {c / bound:7.1f} | "
                f"{cell('numpy')} {min(times['numpy']) / c:7.1f}")
        if torch is not None:
            line += f" | {cell('torch')} {min(times['torch']) / c:7.1f}"
        print(line, flush=True)
    print(f"\nensembles of {args.batch} problems: problems × iterations per second (min of the repeats)")
    print(f"{'K':>3} | {'one by one':>12} {'ensemble':>12} {'ratio':>6} | {'ens. µs/it':>10} {'x bound':>7}")
    for K in args.K:
        pr = problem(K)
        system = ScoreSystem(pr.features.G, pr.F, pr.p)
        eta0 = 0.5 * system.stable_step(pr.S0)
        etas = eta0 * np.geomspace(0.25, 1.0, args.batch)
        steps = max(100, int(2e5 // K**3))
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
        print(f"{K:>3} | {work / min(one):12.3g} {work / min(ens):12.3g} {min(one) / min(ens):6.2f} | "
              f"{per_it * 1e6:10.2f} {per_it / (6 * K**3 / peak):7.1f}", flush=True)


if __name__ == "__main__":
    main()
