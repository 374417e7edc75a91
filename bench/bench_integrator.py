"""The compiled DOP853 (:mod:`attnflow.solvers.integrator`) against ``solve_ivp``, interleaved in one run.

For K = 4, 8, 16 (random unit features in R^K, single-index sin task, L = 3, S(0) = 0,
the generated kernels that ``attnflow`` runs by default), one flow trajectory from
t = 0 to t = 10⁶ at rtol = 1e-8, atol = 1e-10, timed as:

* compiled: :class:`attnflow.solvers.integrator.CompiledRun`, the end point only;
* compiled+: the same with the flow's seven crossing events and a 400-point output grid
  (what ``integrate_flow(method="DOP853-compiled")`` asks of it);
* integrate_flow: :func:`attnflow.solvers.flow.integrate_flow` end to end with its defaults
  (compiled DOP853 here, events, the 400-point grid, the loss on it, the trajectory);
* LSODA / DOP853: ``solve_ivp`` with the same Numba right-hand side (and Jacobian for LSODA);
* LSODA-np / DOP853-np: ``solve_ivp`` with the plain NumPy right-hand side and Jacobian
  (:mod:`attnflow.solvers.references.numpy_twins`).

No solve_ivp run has events or dense output, so they do less than compiled+.  The
configurations take turns within each repeat (so machine load hits all alike); the
table gives the min and median over the repeats and each one's ratio to compiled
(min / min).  Run: ``python bench/bench_integrator.py``.
"""

import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy.integrate import solve_ivp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attnflow.dynamics.problem import config  # noqa: E402
from attnflow.dynamics.problem import Problem  # noqa: E402
from attnflow.solvers import integrator  # noqa: E402
from attnflow.solvers.flow import integrate_flow  # noqa: E402
from attnflow.solvers.references import numpy_twins as ref  # noqa: E402

T_END, RTOL, ATOL = 1e6, 1e-8, 1e-10
REPEATS = 7


def problem(K):
    cfg = config.from_dict({"features": {"kind": "random-unit", "K": K, "d": K, "seed": 0},
                            "task": {"kind": "single-index", "L": 3.0}})
    return Problem.from_config(cfg)


def configurations(system, S0):
    """name → a function running one trajectory and returning its (nfev, nsteps)."""
    rhs, events, args, event_args, _ = system.callbacks()
    kernels = system.kernels
    y0 = system.flatten(S0)
    G, _, p, logp, _ = args
    F = system.F
    levels = [math.log(0.5)] + [math.log(e) for e in (1e-2, 1e-3, 1e-4)] * 2
    which = [0, 0, 0, 0, 1, 1, 1]
    grid = np.concatenate([[0.0], np.geomspace(1e-3, T_END, 399)])

    def compiled(events_and_grid):
        def go():
            if events_and_grid:
                run = integrator.CompiledRun(rhs, events, args, event_args, y0, T_END, RTOL, ATOL, levels, which,
                                             [False] * len(levels))
                status = run.run(grid)[0]
            else:
                run = integrator.CompiledRun(rhs, events, args, event_args, y0, T_END, RTOL, ATOL)
                status = run.run(np.array([0.0, T_END]))[0]
            assert status == integrator.FINISHED
            return run.counts["nfev"], run.counts["nsteps"]
        return go

    def scipy(method, f, jac, f_args):
        options = {"jac": lambda t, y: jac(y, *f_args)} if method == "LSODA" else {}

        def go():
            sol = solve_ivp(lambda t, y: f(y, *f_args), (0.0, T_END), y0, method=method, rtol=RTOL, atol=ATOL,
                            **options)
            assert sol.status == 0, sol.message
            return sol.nfev, len(sol.t) - 1
        return go

    def end_to_end():
        run = integrate_flow(system, S0, T_END)
        assert run.status in ("finished", "t_end"), run.message
        return run.counters["nfev"], run.counters["nsteps"]

    return {"compiled": compiled(False), "compiled+": compiled(True), "integrate_flow": end_to_end,
            "LSODA": scipy("LSODA", kernels.flow_rhs, kernels.flow_jacobian, args),
            "DOP853": scipy("DOP853", kernels.flow_rhs, None, args),
            "LSODA-np": scipy("LSODA", ref.flow_rhs, ref.flow_jacobian, (G, F, p, logp)),
            "DOP853-np": scipy("DOP853", ref.flow_rhs, None, (G, F, p, logp))}


def interleaved_seconds(runs, repeats=REPEATS):
    """name → the seconds of each repeat; the configurations take turns within a repeat, so load hits all alike."""
    seconds = {name: [] for name in runs}
    for _ in range(repeats):
        for name, go in runs.items():
            start = time.perf_counter()
            go()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def main():
    print(f"One trajectory to t = {T_END:g} at rtol = {RTOL:g}, atol = {ATOL:g}; {REPEATS} interleaved repeats.")
    print("Seconds: min / median; ratio: min of the configuration / min of compiled.")
    print(f"{'K':>3} {'configuration':>14} {'min s':>10} {'median s':>10} {'ratio':>8} {'nfev':>6} {'steps':>6}")
    for K in (4, 8, 16):
        pr = problem(K)
        system = pr.score_system()
        system.warm_up()
        runs = configurations(system, pr.S0)
        counts = {name: go() for name, go in runs.items()}          # warm-up (and compilation)
        seconds = interleaved_seconds(runs)
        base = min(seconds["compiled"])
        for name in runs:
            nfev, steps = counts[name]
            print(f"{K:>3} {name:>14} {min(seconds[name]):10.5f} {statistics.median(seconds[name]):10.5f} "
                  f"{min(seconds[name]) / base:8.1f} {nfev:>6} {steps:>6}")


if __name__ == "__main__":
    main()
