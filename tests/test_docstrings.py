"""Every public module, function, class and method of the dynamics, solvers and
derivations layers has a docstring whose one-line summary ends with a period (issue 12)."""

import functools
import importlib
import inspect
import pkgutil

import pytest

import attnflow.derivations
import attnflow.dynamics
import attnflow.solvers

MODULES = sorted(
    m.name
    for package in (attnflow.dynamics, attnflow.solvers, attnflow.derivations)
    for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
) + ["attnflow.derivations", "attnflow.dynamics", "attnflow.solvers"]


def _public_definitions(module):
    """Yield (qualified name, object) for the public functions, classes and methods that
    `module` itself defines (imports from elsewhere are checked in their own module)."""
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if not (inspect.isfunction(value) or inspect.isclass(value)):
            continue
        if getattr(value, "__module__", None) != module.__name__:
            continue
        yield name, value
        if inspect.isclass(value):
            for attribute, member in vars(value).items():
                if attribute.startswith("_"):
                    continue
                function = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
                if isinstance(function, property):
                    function = function.fget
                if isinstance(function, functools.cached_property):
                    function = function.func
                if inspect.isfunction(function):
                    # getdoc on the class attribute inherits a base-class docstring
                    yield f"{name}.{attribute}", getattr(value, attribute)


def _summary_problem(obj):
    doc = inspect.getdoc(obj)
    if not doc:
        return "no docstring"
    summary = doc.strip().splitlines()[0].strip()
    if not summary.endswith("."):
        return f"first line does not end with a period: {summary!r}"
    return None


@pytest.mark.parametrize("name", MODULES)
def test_public_definitions_have_docstrings(name):
    module = importlib.import_module(name)
    problems = [f"{name} (module): {p}" for p in [_summary_problem(module)] if p]
    problems += [f"{name}.{qualified}: {p}" for qualified, obj in _public_definitions(module)
                 if (p := _summary_problem(obj))]
    assert not problems, "\n".join(problems)
