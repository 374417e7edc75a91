"""The examples in the docstrings run, as written, and the main entry points have them."""

import doctest
import importlib
import pkgutil

import pytest

import attnflow

MODULES = sorted(["attnflow"] + [m.name for m in pkgutil.walk_packages(attnflow.__path__, "attnflow.")
                                 if not m.name.endswith("__main__")])

# Entry points a newcomer starts from: each must show a worked example.
WITH_EXAMPLES = ["attnflow", "attnflow.dynamics.problem.config", "attnflow.dynamics.problem.problem",
                 "attnflow.dynamics.problem.features", "attnflow.dynamics.problem.function_classes",
                 "attnflow.dynamics.analysis.solve", "attnflow.dynamics.analysis.phases",
                 "attnflow.dynamics.commands.run", "attnflow.dynamics.commands.sweep", "attnflow.derivations.stages",
                 "attnflow.solvers.ensemble", "attnflow.solvers.gd", "attnflow.solvers.stability",
                 "attnflow.solvers.finite_prompt", "attnflow.solvers.flow", "attnflow.solvers.system",
                 "attnflow.solvers.integrator", "attnflow.solvers.multihead"]


def _run(name):
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder(exclude_empty=True).find(module, name):
        if test.filename and not test.filename.endswith(".py"):
            continue
        runner.run(test)
    return runner.summarize(verbose=False)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = _run(name)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_entry_points_have_examples(name):
    assert _run(name).attempted >= 3, name
