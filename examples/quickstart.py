"""The pipeline from Python, stage by stage: configuration → problem → system → solution.

Run:  python examples/quickstart.py      (prints only; a few seconds with warm caches)
"""

import argparse

import numpy as np

from attnflow.dynamics.problem import config
from attnflow.dynamics.problem import Problem
from attnflow.solvers import integrate_flow, iterate_gd

# No options; --help describes the script and exits before any work.
argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()

cfg = config.loads("""
[features]
kind = "random-unit"
K = 5
d = 4
seed = 1

[task]
kind = "single-index"
link = "tanh"
L = 2.0
""")
problem = Problem.from_config(cfg)            # features, class moments F, p, S0
c = problem.constants()
print(f"LΔδ = {c.L_Delta_delta:.3g} → {c.regime} regime; F by {problem.moments.method} "
      f"(error {problem.moments.error:.1e})")

system = problem.score_system()                     # arrays G, F, p + generated kernels
print("compile or cache load:", f"{system.warm_up():.2f} s")
flow = integrate_flow(system, problem.S0, t_end=1e6, method="Radau")
print("flow:", flow.status, flow.counters, "t_half =", f"{flow.crossings['t_half']:.4g}")

eta = 0.5 * system.stable_step(problem.S0)
gd = iterate_gd(system, problem.S0, eta, steps=20_000)
print("GD:", gd.status, f"η = {eta:.3g}", "final loss", f"{gd.loss[-1]:.3e}")
print("final target attention:", np.round(np.diag(flow.final_attention), 4))
