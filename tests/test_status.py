"""Honest statuses: GD frozen by a saturated softmax, runs that end far from convergence,
and the flow at absurdly short horizons."""

import subprocess
import sys
from pathlib import Path

import pytest

from attnflow.dynamics.errors import AttnflowError
from attnflow.dynamics.analysis.solve import RunResult, check_gd
from attnflow.solvers import integrate_flow, iterate_gd
from attnflow.solvers.separate import SeparateSystem, lazy_start

from .conftest import make_problem

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base():
    problem = make_problem()
    system = problem.score_system()
    return problem, system, system.stable_step(problem.S0)


def test_gd_far_above_the_stable_step_is_saturated_not_finished(base):
    """At 100× the stable step one step makes every softmax one-hot in float64 and GD freezes."""
    problem, system, stable = base
    gd = iterate_gd(system, problem.S0, 100 * stable, 2000)
    assert gd.status == "saturated" and not gd.success and gd.diverged
    assert "saturated the float64 softmax" in gd.message and "not a converged solution" in gd.message
    assert gd.counters["iterations"] < 10                 # it stopped where it froze, not after 2000 steps
    with pytest.raises(AttnflowError, match="training.eta"):
        check_gd(RunResult({"gd": gd}, eta=100 * stable, stable_step_at_start=stable))


def test_the_state_gd_loop_reports_saturation_too(base):
    """The separate factors' GD (the generic compiled loop) freezes the same way at 100× the stable step."""
    problem, system, _ = base
    separate = SeparateSystem(system, 2 * problem.features.d)
    start = lazy_start(problem.features.V, 1.0)
    gd = iterate_gd(separate, start, 100 * separate.stable_step(start), 2000)
    assert gd.status == "saturated" and gd.counters["iterations"] < 10


def test_gd_out_of_steps_far_from_convergence_says_so(base):
    problem, system, stable = base
    gd = iterate_gd(system, problem.S0, 0.5 * stable, 5)
    assert gd.status == "max_steps" and not gd.success and not gd.diverged
    assert "far from convergence" in gd.message and "training.steps" in gd.message
    check_gd(RunResult({"gd": gd}, eta=0.5 * stable, stable_step_at_start=stable))   # not a divergence: no error


def test_scaled_task_out_of_steps_at_small_relative_loss_still_says_so():
    """L = 10⁴ with the automatic step: 10⁴ steps cover t ≈ 0.015 and end at loss ≈ 50, still falling like 1/t."""
    problem = make_problem(task={"L": 1e4})
    system = problem.score_system()
    gd = iterate_gd(system, problem.S0, 0.5 * system.stable_step(problem.S0), 10_000)
    assert gd.status == "max_steps" and gd.loss[-1] > 1.0


def test_converged_runs_are_finished(base):
    problem, system, stable = base
    gd = iterate_gd(system, problem.S0, 0.5 * stable, 10_000)
    assert gd.status == "finished" and gd.success, gd.message
    flow = integrate_flow(system, problem.S0, 1e6)
    assert flow.status == "finished" and flow.success, flow.message


def test_flow_that_ends_early_says_so(base):
    problem, system, _ = base
    flow = integrate_flow(system, problem.S0, 1.0)
    assert flow.status == "t_end" and not flow.success
    assert "far from convergence" in flow.message and "training.t_end" in flow.message


@pytest.mark.parametrize("method", ["LSODA", "auto", "Rodas4P2-compiled"])
def test_flow_to_a_vanishing_horizon_returns_at_once(method):
    """t_end = 1e-200 (LSODA's automatic first step underflows below 1e-154; the compiled methods' first
    step is at most t_end) returns in a subprocess bounded to 60 s."""
    code = ("from tests.conftest import make_problem; from attnflow.solvers import integrate_flow; "
            "p = make_problem(); s = p.score_system(); "
            f"tr = integrate_flow(s, p.S0, 1e-200, method={method!r}); "
            "print(tr.status, tr.t[-1], tr.counters['nsteps'])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    status, t_final, steps = out.stdout.split()
    assert status == "t_end" and float(t_final) == 1e-200 and int(steps) <= 10


def test_constant_finite_class_runs_without_runtime_warnings(tmp_path):
    """Rows that are constant on the features: L = 0, so δ = 0 by definition (not 0/0) and no NumPy warning."""
    import warnings

    from attnflow.dynamics.problem import config
    from attnflow.dynamics.commands.run import run
    cfg = config.from_dict({"features": {"kind": "orthonormal", "K": 3},
                            "task": {"kind": "finite", "functions": [[1, 1, 1], [1, 1, 1]]},
                            "training": {"mode": "both", "eta": 0.1, "steps": 200, "t_end": 1e3}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        problem, result, summary = run(cfg, tmp_path, progress=False, plots=True)
    assert summary["delta"] == 0 and summary["L_Delta_delta"] == 0 and summary["regime"] == "flat"
    assert not summary["constants"]["nondegenerate"]
    assert summary["flow"]["final_loss"] == 0 and summary["gd"]["status"] == "finished"
