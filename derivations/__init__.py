"""SymPy derivations of the score-space dynamics and the kernels generated from them.

Stages a user can call one by one (:mod:`attnflow.derivations.stages`), code generation
(:mod:`attnflow.derivations.codegen`).  ``derive`` is imported on first use, with SymPy:
loading generated kernels (``load_kernels``) does not need it.
"""

from .codegen import load_kernels

__all__ = ["derive", "load_kernels"]


def __getattr__(name):
    if name == "derive":
        from .stages import derive

        return derive
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
