"""How the cost grows with K (4 … 256) and with the prompt length N, against the flop bound.

Three kernels at N = ∞, random unit features in d = K, single-index sin task (L = 3):

* one flow right-hand side ``−G Γ(S) G``: ``F̃·W`` for the label gaps of every query
  and ``G·Γ·G``, three K×K products, ``6K³`` flops (plus O(K²));
* one GD iteration ``S ← S − η G Γ G`` (:func:`solvers.iterate_gd`): the same ``6K³``;
* the stable step ``2/λ_max`` (:meth:`solvers.ScoreSystem.stable_step`): the K column
  Hessians (≈ ``12K³``: ``u = M⁽ᵏ⁾a`` and the K² entries of each) and m Lanczos products
  of ``10K³`` each (four K×K products and the K column blocks); m is counted in the run.

The flop bound of a kernel is its flop count over ``R_K``, the float64 rate of K×K
products through the BLAS the kernels call, measured in the same run in a compiled loop
(:mod:`blas_rate`, shared with ``bench_gd.py``, which also sets the convention: BLAS on
one thread, for the kernels and the NumPy baselines alike); ``x bound`` is the measured
time over it.
The NumPy column is the vectorised twin of :mod:`solvers.reference_numpy` (for the
stable step: its dense K²×K² Jacobian and ``np.linalg.eigvals``, up to K = 32: at
K = 64 it takes minutes, at K = 256 34 GB).  Then one right-hand side at finite N =
8 … 10⁴ (K = 8, the quadrature of :mod:`solvers.finite_prompt`: ``nodes`` log-τ points
per query, each ≈ ``2K² + 30K`` flops) against N = ∞.

Every measurement is repeated (``--repeats``) with all sizes interleaved in each
repeat; tables show the minimum and the median.  Run: ``python bench/bench_kgrowth.py``
(about 2 minutes on a quiet core).
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
from attnflow.solvers import stability  # noqa: E402
from attnflow.solvers.finite_prompt import grid_steps  # noqa: E402
from blas_rate import describe_threads, matmul_rate  # noqa: E402

KS = (4, 8, 16, 32, 64, 128, 256)
NUMPY_DENSE_MAX_K = 32
NS = (8, 32, 128, 1024, 10_000)


def problem(K):
    cfg = config.from_dict({"features": {"kind": "random-unit", "K": K, "d": K, "seed": 0},
                            "task": {"kind": "single-index", "L": 3.0},
                            "training": {"kernels": "hand-written", "method": "DOP853-compiled"}})
    return Problem.from_config(cfg)


def seconds(fn, budget=0.02):
    """Seconds per call of ``fn``: enough calls to fill ``budget`` seconds (at least one)."""
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    calls = max(1, int(budget / max(once, 1e-9)))
    if calls == 1:
        return once
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


class CountingProduct:
    """Counts the Lanczos products of :mod:`solvers.stability` (wraps its compiled product)."""

    def __init__(self):
        self.calls, self.inner = 0, stability.symmetrised_flow_product

    def __call__(self, *args):
        self.calls += 1
        return self.inner(*args)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (default %(default)s)")
    parser.add_argument("--K", type=int, nargs="*", default=list(KS))
    args = parser.parse_args()
    counter = CountingProduct()
    stability.symmetrised_flow_product = counter

    cases = {}
    for K in args.K:
        pr = problem(K)
        system = ScoreSystem(pr.features.G, pr.F, pr.p)
        system.warm_up()
        rng = np.random.default_rng(K)
        S = 0.5 * rng.standard_normal((K, K))                  # away from S = 0's symmetric spectrum
        counter.calls = 0
        step = system.stable_step(S)
        products = counter.calls
        y = S.ravel().copy()
        eta = 0.1 * step
        gd_steps = max(5, int(2e6 // K**3))
        cases[K] = dict(system=system, S=S, y=y, eta=eta, gd_steps=gd_steps, products=products,
                        times={name: [] for name in ("rhs", "rhs_np", "gd", "gd_np", "step", "step_np", "rate")})
    finite = {N: ScoreSystem(cases[8]["system"].G, cases[8]["system"].F, cases[8]["system"].p, N=N)
              for N in NS} if 8 in cases else {}
    for s in finite.values():
        s.rhs(cases[8]["S"])                                   # compile outside the timing
    n_times = {N: [] for N in (np.inf, *NS)} if finite else {}

    for _ in range(args.repeats):                              # interleaved: every size in every repeat
        for K, c in cases.items():
            system, S, y, t = c["system"], c["S"], c["y"], c["times"]
            G, F, p, logp = system.G, system.F, system.p, system.logp
            t["rate"].append(matmul_rate(K, repeats=2))
            t["rhs"].append(seconds(lambda: system.flat_rhs(y)))
            t["rhs_np"].append(seconds(lambda: ref.flow_rhs(y, G, F, p, logp)))
            run = iterate_gd(system, S, c["eta"], c["gd_steps"], n_out=2)
            t["gd"].append(run.wall_time / max(run.counters["iterations"], 1))
            steps_np = max(2, c["gd_steps"] // 10)
            t["gd_np"].append(seconds(lambda: ref.gd_iterate(S, G, F, p, logp, c["eta"], steps_np), 0) / steps_np)
            t["step"].append(seconds(lambda: system.stable_step(S), 0))
            if K <= NUMPY_DENSE_MAX_K:
                t["step_np"].append(seconds(lambda: np.linalg.eigvals(-ref.flow_jacobian(y, G, F, p, logp)), 0))
        for N in n_times:
            s = cases[8]["system"] if N == np.inf else finite[N]
            n_times[N].append(seconds(lambda: s.flat_rhs(cases[8]["y"])))

    def cell(ts):
        return f"{min(ts) * 1e6:9.1f}/{statistics.median(ts) * 1e6:9.1f}" if ts else f"{'skipped':>19}"

    print(describe_threads())
    print(f"K growth: µs min/median of {args.repeats} interleaved repeats; bound = flops / R_K "
          "(R_K: K×K np.dot in a compiled loop, the kernels' BLAS, best of this run); "
          "numpy = vectorised NumPy / compiled, minima")
    print(f"{'K':>4} {'R_K GF/s':>8} | {'flow RHS':>19} {'x bound':>7} {'numpy':>6} | {'GD iteration':>19} "
          f"{'x bound':>7} {'numpy':>6} | {'stable step':>19} {'Lanczos':>7} {'x bound':>7} {'numpy':>7}")
    for K, c in cases.items():
        t = c["times"]
        rate = max(t["rate"])
        bound_sandwich = 6 * K**3 / rate
        bound_step = (12 + 10 * c["products"]) * K**3 / rate
        step_np = f"{min(t['step_np']) / min(t['step']):7.1f}" if t["step_np"] else f"{'—':>7}"
        print(f"{K:>4} {rate / 1e9:8.2f} | {cell(t['rhs'])} {min(t['rhs']) / bound_sandwich:7.1f} "
              f"{min(t['rhs_np']) / min(t['rhs']):6.1f} | {cell(t['gd'])} {min(t['gd']) / bound_sandwich:7.1f} "
              f"{min(t['gd_np']) / min(t['gd']):6.1f} | {cell(t['step'])} {c['products']:7d} "
              f"{min(t['step']) / bound_step:7.1f} {step_np}", flush=True)
    print(f"stable step, numpy column: dense Jacobian + eigvals, run up to K = {NUMPY_DENSE_MAX_K} only "
          "(minutes at K = 64, 34 GB at K = 256)")
    if n_times:
        K, rate = 8, max(cases[8]["times"]["rate"])
        print(f"\nN growth at K = {K}: one flow RHS, µs min/median; nodes = log-τ quadrature points per query "
              f"(at these scores); bound = (4K³ + K·nodes·(2K² + 30K)) / R_K")
        print(f"{'N':>6} {'nodes':>6} | {'flow RHS':>19} {'x bound':>7} {'/ N=inf':>7}")
        for N, ts in n_times.items():
            nodes = 0 if N == np.inf else max(grid_steps(cases[8]["S"][:, k], N) for k in range(K))
            flops = 6 * K**3 if N == np.inf else 4 * K**3 + K * nodes * (2 * K**2 + 30 * K)
            label = "inf" if N == np.inf else f"{N:,}"
            print(f"{label:>6} {nodes:>6} | {cell(ts)} {min(ts) / (flops / rate):7.1f} "
                  f"{min(ts) / min(n_times[np.inf]):7.1f}")


if __name__ == "__main__":
    main()
