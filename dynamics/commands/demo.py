"""``attnflow demo``: the same task in the flat and the sharp regime, side by side.

A regular simplex of K = 4 features in R³ (not orthonormal) and the single-index
class ``f(x) = L sin(wᵀx)``; L = 0.3 is flat and L = 3 sharp (c* = 1).  Both are run
as a gradient flow and as gradient descent with one shared step size, the one
``eta = "auto"`` picks for the sharp problem, as in the paper's Figure 1 where the
two regimes are trained alike.  The configs are written next to the results, so
``attnflow run DIR/flat.toml --out …`` reproduces either.
"""

from ..analysis.solve import check_gd, choose_step_size, solve
from ..files import prepare_out_dir, write_text
from ..problem import config
from ..problem import Problem
from ..reporting.plots import plot_comparison
from ..reporting.report import run_report
from ..reporting.summary import write_outputs


CONFIG = """\
[features]
kind = "simplex"
K = 4
d = 3

[task]
kind = "single-index"
link = "sin"
L = {L}

[training]
mode = "both"
eta = {eta}
steps = 1000000
t_end = 1e8
stop_loss = 1e-7
"""

REGIMES = {"flat": 0.3, "sharp": 3.0}


def demo(out_dir="attnflow-demo", progress=True):
    """Run both problems, write their outputs, a comparison figure and ``report.md``; return the report.

    Parameters
    ----------
    out_dir : str or Path
        Output directory, created if missing.
    progress : bool
        Whether to show progress bars on stderr.

    Returns
    -------
    str
        The report, as written to ``report.md``.

    Raises
    ------
    AttnflowError
        ``--out`` when the directory cannot be created or written.
    """
    out = prepare_out_dir(out_dir)
    sharp = Problem.from_config(config.loads(CONFIG.format(L=REGIMES["sharp"], eta='"auto"')))
    eta, _, _ = choose_step_size(sharp.score_system(), sharp.S0, "auto")
    sections = ["# attnflow demo: flat and sharp regime",
                "",
                f"Shared GD step size η = {eta:.4g} (auto for the sharp problem). Loss is absolute; "
                "the sharp class has 100× larger labels² (f → λf maps S(t) → S(λ²t) in the flow).",
                ""]
    runs = {}
    for name, L in REGIMES.items():
        text = CONFIG.format(L=L, eta=repr(float(eta)))
        write_text(out / f"{name}.toml", text)
        cfg = config.loads(text)
        problem = Problem.from_config(cfg)
        result = solve(problem, cfg.training, progress)
        summary = write_outputs(out / name, cfg, problem, result)
        check_gd(result)
        runs[f"{name}: L = {L:g}, LΔδ = {summary['L_Delta_delta']:.3g}"] = result.trajectories
        sections += [run_report(summary, heading=f"{name} (L = {L:g})"), ""]
    plot_comparison(out / "demo.png", runs)
    sections.append(f"Figures: {out / 'demo.png'}, and loss.png / attention.png in {out / 'flat'} and {out / 'sharp'}.")
    report = "\n".join(sections)
    write_text(out / "report.md", report + "\n")
    return report
