"""Cold start: what warm_up compiles, and that the ScoreSystem's composed kernels are the kernel set's bit for bit."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from attnflow.solvers import ScoreSystem, kernels

from .conftest import random_system_arrays

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("N", [np.inf, 12])
def test_system_methods_equal_the_kernels_they_stand_for_exactly(N):
    """ScoreSystem composes loss_gradient_gap / score_hessians with solvers.pullback instead of
    calling loss, flow_rhs, event_values and flow_jacobian: the same arithmetic, so equal to the bit."""
    K = 5
    V, F, p = random_system_arrays(K, 3, 4)
    system = ScoreSystem(V @ V.T, F, p, N=N)
    S = np.random.default_rng(0).standard_normal((K, K)) * 3
    y = S.ravel().copy()
    Gamma = np.empty((K, K))
    value = kernels.loss_and_gradient(S, system.Ms, system.p, system.logp, system.prompt, Gamma)
    assert system.loss(S) == kernels.loss(S, *system.args[1:]) == value
    assert np.array_equal(system.gradient(S), Gamma)
    assert np.array_equal(system.flat_rhs(y), kernels.flow_rhs(y, *system.args))
    assert np.array_equal(system.jacobian(S), kernels.flow_jacobian(y, *system.args))
    assert system.flat_event_values(y) == kernels.event_values(y, *system.args[1:])


@pytest.mark.slow
def test_cold_warm_up_compiles_each_kernel_once_and_nothing_it_does_not_need(tmp_path):
    """A fresh process with empty caches: load_kernels + warm_up compiles every function for one
    signature only, none of the wrappers that would link loss_gradient_gap or score_hessians in again,
    no string formatting (Numba's array assignment error message cost 4 s in the GD loop), and at
    N = ∞ none of the finite-prompt kernels; ``warm_up(gd=False)`` (a flow-only run) leaves the GD
    loop and the stable step to a later ``warm_up()``."""
    script = textwrap.dedent("""
        import json
        import numpy as np
        from numba.core import event
        from attnflow.derivations import load_kernels
        from attnflow.solvers import ScoreSystem, integrate_flow
        compiled = []
        class Recorder(event.Listener):
            def on_start(self, e):
                f = e.data["dispatcher"].py_func
                compiled.append([f.__module__, f.__qualname__, str(e.data["args"])])
            def on_end(self, e):
                pass
        with event.install_listener("numba:compile", Recorder()):
            kernels = load_kernels(4)
            system = ScoreSystem(np.eye(4), np.eye(4), np.full(4, 0.25), kernels=kernels)
            system.warm_up(gd=False)
            flow_only = len(compiled)
            system.warm_up()
            warm = len(compiled)
            integrate_flow(system, np.zeros((4, 4)), 1.0, n_out=3)
        print(json.dumps({"module": kernels.__name__, "compiled": compiled, "flow_only": flow_only, "warm": warm}))
    """)
    env = dict(os.environ, ATTNFLOW_CACHE_DIR=str(tmp_path / "kernels"), NUMBA_CACHE_DIR=str(tmp_path / "numba"),
               PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    names = {name for module, name, _ in result["compiled"] if module.startswith("attnflow")}
    assert {"loss_gradient_gap", "score_hessians", "attention", "_gd_loop", "score_gd_step", "column_loss_gradient",
            "column_hessian"} <= names
    assert not {"loss", "loss_and_gradient", "flow_rhs", "event_values", "flow_jacobian"} & names
    assert not {"finite_column", "finite_column_hessian", "finite_attention"} & names
    flow_only = {name for module, name, _ in result["compiled"][:result["flow_only"]]}
    assert {"loss_gradient_gap", "score_hessians", "attention"} <= flow_only
    assert not {"_gd_loop", "score_gd_step", "symmetrised_flow_product"} & flow_only
    # A K = 4 flow at N = ∞ runs the column callbacks: flow_rhs and event_values (which link
    # loss_gradient_gap once more) are not compiled.
    flow = {name for module, name, _ in result["compiled"][result["warm"]:]}
    assert {"column_flow_rhs", "column_event_values"} <= flow and not {"flow_rhs", "event_values"} & flow
    # One compilation per function and module: no second specialisation (the generated module
    # and solvers share no function names, so the module is not needed to tell them apart).
    generated = [name for module, name, _ in result["compiled"] if module == result["module"]]
    assert len(generated) == len(set(generated)) and len(generated) >= 6
    assert not [name for module, name, _ in result["compiled"] if "unicode" in module or "shape_context" in name]


SOLVE_DEFAULT = textwrap.dedent("""
    import sys
    from attnflow import default_config, Problem, solve
    cfg = default_config().with_overrides({"training.t_end": 10.0})
    run = solve(Problem.from_config(cfg), cfg.training, progress=False)
    print(run.kernels["set"], run.trajectories["flow"].status, "sympy" in sys.modules)
""")


@pytest.fixture(scope="module")
def generated_kernels(tmp_path_factory):
    """``(env, first)``: an environment whose ``ATTNFLOW_CACHE_DIR`` starts empty, and the finished
    process that solved the default problem in it, so generated the kernels and compiled them there.
    Shared by the tests below: the cold compile of the generated module takes 20–40 s."""
    env = dict(os.environ, ATTNFLOW_CACHE_DIR=str(tmp_path_factory.mktemp("kernels")), PYTHONPATH=str(ROOT))
    first = subprocess.run([sys.executable, "-c", SOLVE_DEFAULT], env=env, capture_output=True, text=True,
                           timeout=600, cwd=ROOT)
    assert first.returncode == 0, first.stderr
    return env, first


def test_a_run_on_generated_kernels_already_on_disk_does_not_import_sympy(generated_kernels):
    """SymPy (about a second of import) is needed to generate the kernel module, not to load it:
    the second process solves a problem on the generated kernels without importing it."""
    env, first = generated_kernels
    second = subprocess.run([sys.executable, "-c", SOLVE_DEFAULT], env=env, capture_output=True, text=True,
                            timeout=600, cwd=ROOT)
    assert first.stdout.split()[::2] == ["generated", "True"]        # generated here, with SymPy
    assert second.returncode == 0, second.stderr
    assert second.stdout.split()[::2] == ["generated", "False"]


# Runs the command line in this process, then prints which of these modules it imported.
CLI_AND_MODULES = textwrap.dedent("""
    import json
    import sys
    from attnflow.dynamics.cli import main
    status = main(sys.argv[1:])
    watched = ("numba", "scipy.special", "scipy.integrate", "scipy.optimize", "matplotlib", "sympy")
    print(json.dumps({"status": status, "imported": [m for m in watched if m in sys.modules]}))
""")


def test_a_hot_run_without_plots_imports_neither_scipy_integrate_nor_matplotlib_nor_sympy(generated_kernels,
                                                                                          tmp_path):
    """A hot ``attnflow run --no-plots`` (generated kernels and their machine code on disk) runs the
    compiled DOP853 and writes no figure: scipy.integrate (with scipy.optimize, about 0.2 s of import),
    matplotlib and SymPy are not needed, so not imported.  numba and scipy.special (the sine link's
    exact moments) are, which shows the check sees the run's imports."""
    env, _ = generated_kernels
    config = tmp_path / "K4.toml"
    config.write_text("[features]\nK = 4\n\n[training]\nt_end = 1.0\nn_out = 10\n")
    out = subprocess.run([sys.executable, "-c", CLI_AND_MODULES, "run", str(config), "--out", str(tmp_path / "out"),
                          "--no-plots", "--quiet"], env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"status": 0, "imported": ["numba", "scipy.special"]}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["kernels"]["set"] == "generated" and summary["kernels"]["generated_now"] is False
    assert summary["flow"]["status"] == "t_end"
