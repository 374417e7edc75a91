"""The six figures of the papers' settings, as PNG files.

Run:  python examples/figures.py [--out figures] [--quick]

1. flat_and_sharp.png: the paper's Figure 1 setting, a flat and a sharp problem trained
   by GD with one step size, loss and attention against iterations;
2. many_L.png: many L values overlaid (the paper's Figure 4 setting);
3. phase_diagram.png: transition times against L, flat and sharp shaded, the threshold
   marked, GD and flow side by side;
4. step_size.png: the largest stable step against L, and where GD oscillates or fails;
5. degenerate.png: a degenerate class (one fixed sign pattern of labels) where
   attention does not concentrate, beside a non-degenerate one;
6. balanced_imbalanced.png: the linear task with orthonormal features, balanced and
   imbalanced p (the predecessor paper's settings).
"""

import argparse
from pathlib import Path

import numpy as np

from attnflow.dynamics.problem import config
from attnflow.dynamics.reporting import figures
from attnflow.dynamics.analysis.claims import Context, flow_to_convergence, l_sweep, orthonormal_linear, problem_with
from attnflow.dynamics.analysis.phases import phase_boundary
from attnflow.dynamics.problem import Problem
from attnflow.dynamics.analysis.solve import choose_step_size
from attnflow.solvers import iterate_gd

BASE = """
[features]
kind = "simplex"
K = 4
d = 3

[task]
kind = "single-index"
link = "sin"
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="figures", help="directory for the PNGs, created if missing (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="fewer points and iterations (seconds instead of half a minute)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config.loads(BASE)
    ctx = Context(cfg, out, quick=args.quick)
    c = ctx.base_constants
    L_star = ctx.threshold / (c.Delta * c.delta)
    steps = 20_000 if args.quick else 200_000

    # 1. Flat and sharp with one step size.
    flat, sharp = problem_with(cfg, task__L=0.3 * L_star), problem_with(cfg, task__L=3 * L_star)
    eta, _, _ = choose_step_size(sharp.score_system(), sharp.S0, "auto")
    runs = {name: iterate_gd(pr.score_system(), pr.S0, eta, steps) for name, pr in (("flat", flat), ("sharp", sharp))}
    print(figures.flat_and_sharp(out / "flat_and_sharp.png", runs, {"flat": 0.3 * L_star, "sharp": 3 * L_star}, eta))

    # 2. Many L overlaid, GD with the same step size.
    Ls = L_star * np.geomspace(0.1, 10, 7)
    many = {}
    for L in Ls:
        pr = problem_with(cfg, task__L=float(L))
        many[float(L)] = iterate_gd(pr.score_system(), pr.S0, eta, steps)
    print(figures.many_L(out / "many_L.png", many))

    # 3. Phase diagram: flow and GD times against L (frequency class: a genuine regime change).
    L_star_f, rows = l_sweep(ctx, "frequency")
    gd_half = []
    for r in rows:
        pr = problem_with(cfg, task__kind="frequency", task__L=r["L"])
        s = pr.score_system()
        g = iterate_gd(s, pr.S0, 0.5 * s.stable_step(pr.S0), steps, n_out=50)
        gd_half.append(g.crossings["t_half"] or np.nan)
        flow = flow_to_convergence(pr, stop_rel=1e-4)          # the sweep keeps numbers only, not trajectories
        r["t_boundary"] = phase_boundary(flow.t, flow.loss)
    print(figures.phase_diagram(out / "phase_diagram.png", rows, L_star_f, "frequency class: transition times against L",
                                gd_rows={"t_half": gd_half}))

    # 4. Step size against L (single-index class).
    L_star_s, rows_s = l_sweep(ctx, "single-index", "sin")
    print(figures.step_size_against_L(out / "step_size.png", rows_s, L_star_s, ctx.oscillation_map(rows_s)))

    # 5. Degenerate against non-degenerate.
    g = [1.0, -1.0, 1.0, -1.0]
    deg = problem_with(cfg, task__kind="finite", task__functions=[g, [-x for x in g]])
    print(figures.degenerate(out / "degenerate.png", {"non-degenerate (sin, L = 1)": flow_to_convergence(Problem.from_config(cfg)),
                                                       "degenerate sign pattern": flow_to_convergence(deg, t_end=1e7)}))

    # 6. The predecessor paper: linear task, orthonormal features, balanced and imbalanced p.
    print(figures.balanced_imbalanced(out / "balanced_imbalanced.png", flow_to_convergence(orthonormal_linear(ctx)),
                                      flow_to_convergence(orthonormal_linear(ctx, p=[0.7, 0.1, 0.1, 0.1]))))


if __name__ == "__main__":
    main()
