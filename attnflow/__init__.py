"""attnflow: the training dynamics of softmax attention learning in-context regression.

The package has three layers, one folder each in the repository:
:mod:`attnflow.derivations` (SymPy: the equations and the code generated from them),
:mod:`attnflow.solvers` (Numba and SciPy: kernels, integrators, ensembles) and
:mod:`attnflow.dynamics` (the science and the user: configuration, problems, phases,
claims, reports, the command line).  This module is the public API: the pipeline
configuration → problem → system → solution, one stage per call.

Examples
--------
>>> import attnflow
>>> cfg = attnflow.config_from_text('''
... [features]
... K = 3
... [task]
... L = 0.5
... [training]
... method = "Radau"
... t_end = 1e4
... ''')
>>> problem = attnflow.Problem.from_config(cfg)
>>> problem.constants().regime
'flat'
>>> result = attnflow.solve(problem, cfg.training, progress=False)
>>> flow = result.trajectories["flow"]
>>> flow.status, bool(flow.crossings["t_half"] > 0)
('finished', True)
"""

__version__ = "0.1.0"

# Public name → module that defines it.  Imported on first use, so ``import attnflow``
# and ``attnflow --version`` stay instant (the solvers pull in SciPy, Numba and SymPy).
_PUBLIC = {
    "load_config": "attnflow.dynamics.problem.config:load",
    "config_from_text": "attnflow.dynamics.problem.config:loads",
    "config_from_dict": "attnflow.dynamics.problem.config:from_dict",
    "default_config": "attnflow.dynamics.problem.config:default",
    "Config": "attnflow.dynamics.problem.config:Config",
    "Problem": "attnflow.dynamics.problem:Problem",
    "solve": "attnflow.dynamics.analysis.solve:solve",
    "run": "attnflow.dynamics.commands.run:run",
    "sweep": "attnflow.dynamics.commands.sweep:sweep",
    "check": "attnflow.dynamics.commands.check:check",
    "AttnflowError": "attnflow.dynamics.errors:AttnflowError",
    "derive": "attnflow.derivations.stages:derive",
    "load_kernels": "attnflow.derivations.codegen:load_kernels",
    "ScoreSystem": "attnflow.solvers.system:ScoreSystem",
    "Trajectory": "attnflow.solvers.trajectory:Trajectory",
    "integrate_flow": "attnflow.solvers.flow:integrate_flow",
    "iterate_gd": "attnflow.solvers.gd:iterate_gd",
    "iterate_gd_ensemble": "attnflow.solvers.ensemble:iterate_gd_ensemble",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'attnflow' has no attribute {name!r}")
    import importlib
    module, _, attribute = _PUBLIC[name].partition(":")
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value              # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
