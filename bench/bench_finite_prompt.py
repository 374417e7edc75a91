"""Finite-prompt kernels: cost against N, and against brute-force enumeration.

Prints, for K = 4 and K = 16, the time of one loss-and-gradient evaluation at
N = 8, 64, 10³, 10⁴ relative to N = 8 (the cost grows like log N), for K = 3
the speed-up over enumerating every composition of N, and at N = 64 the analytic
flow Jacobian against central differences of the right-hand side (2K² calls).  Run:
``python bench/bench_finite_prompt.py``.
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attnflow.solvers import ScoreSystem, finite_prompt  # noqa: E402
from attnflow.solvers.columns import label_gap_moments  # noqa: E402
from attnflow.solvers.references import enumeration  # noqa: E402


def seconds(fn, repeat=5):
    fn()
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    rng = np.random.default_rng(0)
    print(f"{'K':>3} {'N':>6} {'s per gradient':>15} {'vs N = 8':>9}")
    for K in (4, 16):
        W = rng.standard_normal((K, K))
        S = rng.standard_normal((K, K)) * 5
        base = None
        for N in (8, 64, 1000, 10_000):
            system = ScoreSystem(np.eye(K), W @ W.T, np.full(K, 1 / K), N=N)
            t = seconds(lambda: system.gradient(S))
            base = base or t
            print(f"{K:>3} {N:>6} {t:15.2e} {t / base:9.2f}")
    print(f"\n{'K':>3} {'N':>6} {'compositions':>12} {'enumerate s':>12} {'quadrature s':>13} {'ratio':>7}")
    K = 3
    W = rng.standard_normal((K, K))
    M = np.empty((K, K))
    label_gap_moments(W @ W.T, 0, M)
    s, p = rng.standard_normal(K), np.full(K, 1 / K)
    g, att = np.empty(K), np.empty(K)
    for N in (8, 64, 256):
        te = seconds(lambda: enumeration.enumerate_column(s, p, M, N), repeat=2)
        tq = seconds(lambda: finite_prompt.finite_column(s, np.log(p), M, N, finite_prompt.DEFAULT_STEP, g, att, -1))
        print(f"{K:>3} {N:>6} {len(enumeration.compositions(N, K)):>12} {te:12.2e} {tq:13.2e} {te / tq:7.0f}")
    print(f"\n{'K':>3} {'include_query':>13} {'analytic Jacobian s':>20} {'central differences s':>22} {'ratio':>6}")
    for K in (4, 8):
        W = rng.standard_normal((K, K))
        S = rng.standard_normal((K, K)) * 3
        for include_query in (False, True):
            system = ScoreSystem(np.eye(K), W @ W.T, np.full(K, 1 / K), N=64, include_query=include_query)
            y = S.ravel()

            def central():
                for i in range(y.size):
                    up, down = y.copy(), y.copy()
                    up[i] += 1e-5
                    down[i] -= 1e-5
                    system.flat_rhs(up) - system.flat_rhs(down)
            ta, tc = seconds(lambda: system.jacobian(S)), seconds(central)
            print(f"{K:>3} {str(include_query):>13} {ta:20.2e} {tc:22.2e} {tc / ta:6.1f}")


if __name__ == "__main__":
    main()
