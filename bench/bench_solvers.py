"""Compiled kernels against plain NumPy, measured side by side in one run.

For K = 4, 8, 16 (random unit features in R^K, single-index sin task, L = 3):

* flow: one LSODA trajectory from S = 0 until the loss reaches 1e-6, the same
  ``solve_ivp`` call with the Numba right-hand side, Jacobian and loss event as with
  their NumPy twins (``solvers.references.numpy_twins``);
* GD: 10⁵ iterations of the exact map, the compiled loop against a NumPy loop;
* rhs: one right-hand-side call alone, which shows how much of a flow trajectory is
  solve_ivp's own per-call overhead (the same for both, so it caps the flow ratio).

Prints seconds and the speed-up ratio.  Run: ``python bench/bench_solvers.py``.
"""

import math
import sys
import time
import timeit
from pathlib import Path

import numpy as np
from scipy.integrate import solve_ivp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attnflow.derivations import load_kernels  # noqa: E402
from attnflow.dynamics.problem import config  # noqa: E402
from attnflow.dynamics.problem import Problem  # noqa: E402
from attnflow.solvers import ScoreSystem, iterate_gd, kernels  # noqa: E402
from attnflow.solvers.references import numpy_twins as ref  # noqa: E402

TARGET_LOSS = 1e-6


def problem(K):
    cfg = config.from_dict({"features": {"kind": "random-unit", "K": K, "d": K, "seed": 0},
                            "task": {"kind": "single-index", "L": 3.0}})
    return Problem.from_config(cfg)


def flow_seconds(system, rhs, jac, loss, args):
    """One LSODA trajectory to the target loss with ``rhs(y, *args)`` and ``jac(y, *args)``."""
    K = system.K

    def stop(t, y):
        return math.log(loss(y.reshape(K, K))) - math.log(TARGET_LOSS)
    stop.terminal, stop.direction = True, -1
    start = time.perf_counter()
    sol = solve_ivp(lambda t, y: rhs(y, *args), (0, 1e12), np.zeros(K * K), method="LSODA",
                    jac=lambda t, y: jac(y, *args), events=stop, rtol=1e-8, atol=1e-10)
    seconds = time.perf_counter() - start
    assert sol.status == 1, sol.message
    return seconds, sol.nfev, sol.t[-1]


def best_of(n, fn):
    return min(fn() for _ in range(n))


def main():
    print("Numba: hand-written kernels (solvers.kernels); gen: kernels generated from the SymPy derivation,")
    print("which `attnflow` runs by default.  Ratios are NumPy time / compiled time.")
    print(f"{'K':>3} | {'flow numba s':>12} {'flow numpy s':>12} {'ratio':>6} {'gen':>6} {'nfev':>6} | "
          f"{'GD numba s':>10} {'GD numpy s':>10} {'ratio':>6} {'gen':>6} | "
          f"{'rhs numba µs':>12} {'rhs numpy µs':>12} {'ratio':>6} {'gen':>6}")
    for K in (4, 8, 16):
        pr = problem(K)
        system = ScoreSystem(pr.features.G, pr.F, pr.p)            # hand-written kernels
        generated = ScoreSystem(pr.features.G, pr.F, pr.p, kernels=load_kernels(K))
        system.warm_up()
        generated.warm_up()
        gen_loss = lambda S: generated.loss(S)  # noqa: E731
        G, Ms, p, logp, prompt = system.args
        F = system.F
        numba_loss = lambda S: kernels.loss(np.ascontiguousarray(S), Ms, p, logp, prompt)  # noqa: E731
        numpy_loss = lambda S: ref.loss_and_gradient(S, F, p, logp)[0]  # noqa: E731
        fn, nfev, _ = min(flow_seconds(system, kernels.flow_rhs, kernels.flow_jacobian, numba_loss, system.args)
                          for _ in range(3))
        fp, _, _ = min(flow_seconds(system, ref.flow_rhs, ref.flow_jacobian, numpy_loss, (G, F, p, logp))
                       for _ in range(2))
        fg, _, _ = min(flow_seconds(system, generated.kernels.flow_rhs, generated.kernels.flow_jacobian, gen_loss,
                                    generated.args) for _ in range(3))
        eta = 0.5 * system.stable_step(pr.S0)
        steps = 100_000
        gn = best_of(3, lambda: iterate_gd(system, pr.S0, eta, steps).wall_time)
        gg = best_of(3, lambda: iterate_gd(generated, pr.S0, eta, steps).wall_time)
        numpy_steps = 10_000  # timed on 10⁴ and scaled: the loop's cost per iteration is constant
        start = time.perf_counter()
        ref.gd_iterate(pr.S0, G, F, p, logp, eta, numpy_steps)
        gp = (time.perf_counter() - start) * steps / numpy_steps
        y = np.random.default_rng(K).standard_normal(K * K)
        calls = 20_000
        rn = min(timeit.repeat(lambda: kernels.flow_rhs(y, *system.args), number=calls, repeat=3)) / calls * 1e6
        rp = min(timeit.repeat(lambda: ref.flow_rhs(y, G, F, p, logp), number=calls, repeat=3)) / calls * 1e6
        rg = min(timeit.repeat(lambda: generated.kernels.flow_rhs(y, *generated.args), number=calls, repeat=3)) / calls * 1e6
        print(f"{K:>3} | {fn:12.4f} {fp:12.4f} {fp / fn:6.1f} {fp / fg:6.1f} {nfev:>6} | "
              f"{gn:10.4f} {gp:10.4f} {gp / gn:6.1f} {gp / gg:6.1f} | {rn:12.2f} {rp:12.2f} {rp / rn:6.1f} {rp / rg:6.1f}")


if __name__ == "__main__":
    main()
