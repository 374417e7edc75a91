"""``attnflow run``: one problem end to end, config → problem → system → solvers → files.

Stages a user can call one by one::

    cfg = attnflow.load_config("my.toml")
    problem = attnflow.Problem.from_config(cfg)
    result = attnflow.solve(problem, cfg.training)   # {"flow": Trajectory, "gd": Trajectory}
    summary = summarize(cfg, problem, result)        # attnflow.dynamics.reporting.summary
    write_outputs(out_dir, cfg, problem, result)     # trajectory.npz, summary.json, *.png
"""

from ..analysis.solve import check_gd, solve
from ..files import prepare_out_dir
from ..problem import Problem
from ..problem.config import inert_settings
from ..reporting.summary import write_outputs


def run(cfg, out_dir, progress=True, plots=True, warn=None):
    """``attnflow run``: solve the configured problem and write every output.

    ``warn`` (optional) is called with each note on a setting that has no effect, once
    the problem is known to be valid.
    """
    prepare_out_dir(out_dir)                     # a bad --out fails before any work
    problem = Problem.from_config(cfg)
    for note in inert_settings(cfg) if warn else ():
        warn(note)
    result = solve(problem, cfg.training, progress)
    summary = write_outputs(out_dir, cfg, problem, result, plots)
    check_gd(result)
    return problem, result, summary
