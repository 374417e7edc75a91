"""``attnflow run``: one problem end to end, config → problem → system → solvers → files.

Stages a user can call one by one::

    cfg = attnflow.load_config("my.toml")
    problem = attnflow.Problem.from_config(cfg)
    result = attnflow.solve(problem, cfg.training)   # {"flow": Trajectory, "gd": Trajectory}
    summary = summarize(cfg, problem, result)        # attnflow.dynamics.reporting.summary
    write_outputs(out_dir, cfg, problem, result)     # trajectory.npz, summary.json, *.png

Examples
--------
>>> import os, tempfile
>>> import attnflow
>>> cfg = attnflow.config_from_dict({"features": {"K": 3}, "task": {"L": 0.5}, "training": {"t_end": 1e4}})
>>> with tempfile.TemporaryDirectory() as out:
...     problem, result, summary = run(cfg, out, progress=False, plots=False)
...     files = sorted(os.listdir(out))
>>> files
['summary.json', 'trajectory.npz']
>>> summary["regime"], summary["flow"]["status"]
('flat', 'finished')
"""

from ..analysis.solve import check_gd, solve
from ..files import prepare_out_dir
from ..problem import Problem
from ..problem.config import inert_settings
from ..reporting.summary import write_outputs


def run(cfg, out_dir, progress=True, plots=True, warn=None):
    """Solve the configured problem and write every output (``attnflow run``).

    Parameters
    ----------
    cfg : Config
        The validated configuration.
    out_dir : str or Path
        Output directory, created if missing; checked before any work.
    progress : bool
        Whether to show progress bars on stderr.
    plots : bool
        Whether to draw the PNG plots.
    warn : callable, optional
        Called with each note on a setting that has no effect, once the problem is
        known to be valid.

    Returns
    -------
    (Problem, RunResult, dict)
        The problem, the solved trajectories and the summary written to ``summary.json``.

    Raises
    ------
    AttnflowError
        When ``out_dir`` cannot be written, the configuration does not make a problem,
        or GD's step size diverged (after the outputs are written).
    """
    prepare_out_dir(out_dir)                     # a bad --out fails before any work
    problem = Problem.from_config(cfg)
    for note in inert_settings(cfg) if warn else ():
        warn(note)
    result = solve(problem, cfg.training, progress)
    summary = write_outputs(out_dir, cfg, problem, result, plots)
    check_gd(result)
    return problem, result, summary
