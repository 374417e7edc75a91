"""The compiled DOP853 against numbalsoda's LSODA and DOP853 with the same right-hand side.

numbalsoda (https://github.com/Nicholaswogan/numbalsoda) runs LSODA and a DOP853 in
compiled C++/Fortran and calls the right-hand side through a Numba ``cfunc`` pointer,
so neither side pays Python per step.  Here both call the same compiled kernel,
``flow_rhs`` of the problem's kernel set: numbalsoda through a ``cfunc`` that wraps it
(the problem's arrays captured as constants, the result copied into ``du``), attnflow
through :class:`attnflow.solvers.integrator.CompiledRun`.

For K = 4, 8, 16 (random unit features, single-index sin task, L = 3, S(0) = 0), one
trajectory from t = 0 to t = 10⁶ at rtol = 1e-8, atol = 1e-10, end point only, no
events; the configurations take turns within each repeat.  The table gives min and
median seconds and each one's ratio to attnflow (min / min), right-hand-side counts and
the end point's error against attnflow's DOP853 at rtol 1e-13.  The same tolerances do not
give the same accuracy (LSODA's error is about 100× DOP853's here), so attnflow's DOP853 also
runs at the looser rtol 1e-7 and 1e-6: the accuracy-matched comparison is the row whose error
is at most LSODA's.

numbalsoda is not a dependency of attnflow; install it to run this (it builds from
source and needs a Fortran compiler: ``apt-get install gfortran && pip install numbalsoda``).
Run: ``python bench/bench_numbalsoda.py``.
"""

import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attnflow.solvers import integrator  # noqa: E402
from bench_integrator import ATOL, REPEATS, RTOL, T_END, interleaved_seconds, problem  # noqa: E402  (the same problems and tolerances)

try:
    import numba
    import numbalsoda
except ImportError:
    sys.exit("bench_numbalsoda: numbalsoda is not installed (pip install numbalsoda; it needs gfortran)")

def numbalsoda_rhs(flow_rhs, args, n):
    """A numbalsoda ``cfunc`` ``(t, u, du, data)`` that calls ``flow_rhs(u, *args)``."""
    G, Ms, p, logp, prompt = args

    @numba.cfunc(numbalsoda.lsoda_sig)
    def rhs(t, u, du, data):
        y = numba.carray(u, (n,))
        dy = numba.carray(du, (n,))
        f = flow_rhs(y, G, Ms, p, logp, prompt)
        for i in range(n):
            dy[i] = f[i]
    return rhs


def configurations(system, S0):
    """name → a function running one trajectory and returning (end point, nfev)."""
    rhs, events, args, event_args, _ = system.callbacks()
    y0 = system.flatten(S0)
    t_eval = np.array([0.0, T_END])
    pointer = numbalsoda_rhs(system.kernels.flow_rhs, args, y0.size).address

    def attnflow(rtol):
        def go():
            run = integrator.CompiledRun(rhs, events, args, event_args, y0, T_END, rtol, ATOL * rtol / RTOL)
            status, _, y_end, _ = run.run(t_eval)
            assert status == integrator.FINISHED
            return y_end, run.counts["nfev"]
        return go

    def external(solve):
        def go():
            Y, success = solve(pointer, y0, t_eval, rtol=RTOL, atol=ATOL)[:2]
            assert success
            return Y[-1], None
        return go

    return {"attnflow DOP853": attnflow(RTOL), "numbalsoda LSODA": external(numbalsoda.lsoda),
            "numbalsoda DOP853": external(numbalsoda.dop853), "attnflow rtol 1e-7": attnflow(1e-7),
            "attnflow rtol 1e-6": attnflow(1e-6)}, attnflow(1e-13)


def main():
    print(f"One trajectory to t = {T_END:g} at rtol = {RTOL:g}, atol = {ATOL:g}; {REPEATS} interleaved repeats.")
    print("Seconds: min / median; ratio: min of the configuration / min of attnflow's compiled DOP853.")
    print(f"{'K':>3} {'configuration':>18} {'min s':>10} {'median s':>10} {'ratio':>7} {'nfev':>6} {'error':>9}")
    for K in (4, 8, 16):
        pr = problem(K)
        system = pr.score_system()
        system.warm_up()
        runs, tight = configurations(system, pr.S0)
        results = {name: go() for name, go in runs.items()}            # warm-up (and compilation)
        reference = tight()[0]
        seconds = interleaved_seconds(runs)
        base = min(seconds["attnflow DOP853"])
        for name, (end, nfev) in results.items():
            print(f"{K:>3} {name:>18} {min(seconds[name]):10.5f} {statistics.median(seconds[name]):10.5f} "
                  f"{min(seconds[name]) / base:7.2f} {nfev if nfev is not None else '—':>6} "
                  f"{np.max(np.abs(end - reference)):9.1e}", flush=True)


if __name__ == "__main__":
    main()
