"""The solution stage: integrate the flow and iterate GD as the configuration asks.

``solve(problem, cfg.training)`` returns a :class:`RunResult` holding the
trajectories (:class:`attnflow.solvers.Trajectory`), the step size and how it was
chosen, and the kernels' provenance.  Nothing here writes files.

Examples
--------
Three orthonormal features, a flat single-index task, the flow to t = 10⁴ and GD
with the automatic step size:

>>> import attnflow
>>> cfg = attnflow.config_from_dict({"features": {"K": 3}, "task": {"L": 0.5},
...                                  "training": {"mode": "both", "t_end": 1e4, "steps": 2000}})
>>> result = solve(attnflow.Problem.from_config(cfg), cfg.training, progress=False)
>>> sorted(result.trajectories), result.eta_source
(['flow', 'gd'], 'auto: half the stable step 2/λ_max at the initial scores')
>>> flow = main_trajectory(result)
>>> flow.status, bool(flow.loss[-1] < flow.loss[0] / 100)
('finished', True)
>>> check_gd(result)          # GD converged: nothing to raise
"""

import math
import time
from dataclasses import dataclass, field

from ...solvers import integrate_flow, iterate_gd

from ..errors import AttnflowError
from ..problem import Problem
from ..progress import progress_bar


@dataclass
class RunResult:
    """The trajectories of a run with the step size used and timings.

    Attributes
    ----------
    trajectories : dict
        ``"flow"`` and/or ``"gd"`` → :class:`attnflow.solvers.Trajectory`.
    kernels : dict
        Provenance of the kernels: set, module, whether generated now, timings.
    eta, eta_source, stable_step_at_start : float, str, float
        GD's step size, how it was chosen, and ``2/λ_max`` at the start (None without GD).
    compile_time, wall_time : float
        Seconds spent compiling the kernels, and in the whole solve.
    noise_free : dict
        With token noise: the same runs of the reduced noise-free model, for comparison.
    """

    trajectories: dict                 # "flow" / "gd" → Trajectory
    kernels: dict = field(default_factory=dict)
    eta: float = None
    eta_source: str = None
    stable_step_at_start: float = None
    compile_time: float = 0.0
    wall_time: float = 0.0
    noise_free: dict = field(default_factory=dict)   # with token noise: the reduced noise-free runs

def choose_step_size(system, S0, eta):
    """Return GD's step size, how it was chosen and the stable step at the start.

    Parameters
    ----------
    system : ScoreSystem, SeparateSystem or NoisySystem
        The trained system.
    S0 : array or tuple of arrays
        The system's initial state: scores, separate factors or the noisy model's Q.
    eta : float or "auto"
        ``training.eta``; ``"auto"`` is half the linear stability limit ``2/λ_max`` at S0.

    Returns
    -------
    (float, str, float)
        ``(η, source, stable)``.

    Raises
    ------
    AttnflowError
        ``training.eta`` when ``"auto"`` is asked for and the loss has no curvature at S0.
    """
    stable = system.stable_step(S0)
    if eta != "auto":
        return float(eta), "given", stable
    if not math.isfinite(stable):
        raise AttnflowError("training.eta", "\"auto\" needs curvature at the initial scores, and the loss "
                                            "has none there (is the task constant?); give a number")
    return 0.5 * stable, "auto: half the stable step 2/λ_max at the initial scores", stable

def solve(problem: Problem, training, progress=True):
    """Integrate the flow and/or iterate GD as ``training`` asks (on the factors, if separate).

    Parameters
    ----------
    problem : Problem
        The problem; its :meth:`~attnflow.dynamics.problem.Problem.system` is trained
        from :attr:`~attnflow.dynamics.problem.Problem.start`.
    training : Section
        The validated ``[training]`` section (mode, t_end, method, tolerances, eta, steps …).
    progress : bool
        Whether to show progress bars on stderr.

    Returns
    -------
    RunResult

    Raises
    ------
    AttnflowError
        ``training.eta`` when the automatic step size cannot be chosen.
    """
    start = time.perf_counter()
    system = problem.system()
    compile_time = system.warm_up(gd=training.mode != "flow")
    kernels = problem.score_system().kernels
    result = RunResult({}, compile_time=compile_time, kernels={
        "set": kernels.NAME, "module": getattr(kernels, "path", kernels.__file__).__str__(),
        "generated_now": getattr(kernels, "generated_now", False),
        "generation_time_s": getattr(kernels, "generation_time", 0.0), "compile_time_s": compile_time})
    if training.mode in ("flow", "both"):
        with progress_bar("gradient flow", progress) as report:
            result.trajectories["flow"] = integrate_flow(
                system, problem.start, training.t_end, training.method, training.rtol, training.atol,
                training.eps, training.stop_loss, training.n_out, report)
    if training.mode in ("gd", "both"):
        eta, source, stable = choose_step_size(system, problem.start, training.eta)
        result.eta, result.eta_source, result.stable_step_at_start = eta, source, stable
        with progress_bar("gradient descent", progress) as report:
            result.trajectories["gd"] = iterate_gd(system, problem.start, eta, training.steps, training.eps,
                                                   training.stop_loss, training.n_out, progress=report)
    if problem.training_set is not None:
        # Imported here: solvers.training_set (about 10 ms of import) serves only a training set.
        from ...solvers.training_set import attach_population_loss

        for trajectory in result.trajectories.values():
            trajectory.state = None        # iterate_gd keeps the flat states: here they are the scores S
            attach_population_loss(trajectory, problem.score_system(), training.eps)
    if problem.noise > 0:
        # How far the noise-free reduced model is: the same runs without noise, in score space.
        reduced = problem.score_system()
        reduced.warm_up(gd=training.mode != "flow")
        if "flow" in result.trajectories:
            result.noise_free["flow"] = integrate_flow(reduced, problem.S0, training.t_end, training.method,
                                                       training.rtol, training.atol, training.eps,
                                                       training.stop_loss, training.n_out)
        if "gd" in result.trajectories:
            result.noise_free["gd"] = iterate_gd(reduced, problem.S0, result.eta, training.steps, training.eps,
                                                 training.stop_loss, training.n_out)
    result.wall_time = time.perf_counter() - start
    return result

def main_trajectory(result):
    """Return the flow if there is one, else GD: what ``trajectory.npz`` holds."""
    return result.trajectories.get("flow", result.trajectories.get("gd"))

def check_gd(result):
    """Raise the clear one-line error for a GD step size that diverged or saturated the softmax.

    A run that only ran out of steps is reported by its status, not raised.

    Parameters
    ----------
    result : RunResult

    Raises
    ------
    AttnflowError
        ``training.eta``, with the largest linearly stable step at the start.
    """
    tr = result.trajectories.get("gd")
    if tr is not None and tr.diverged:
        raise AttnflowError("training.eta", f"{result.eta:g} does not converge: {tr.message}; the largest "
                                            f"linearly stable step at the start is {result.stable_step_at_start:.4g}")
