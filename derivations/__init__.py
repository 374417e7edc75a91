"""SymPy derivations of the score-space dynamics and the kernels generated from them.

Stages a user can call one by one (:mod:`attnflow.derivations.stages`), code generation
(:mod:`attnflow.derivations.codegen`).
"""

from .codegen import load_kernels
from .stages import derive

__all__ = ["derive", "load_kernels"]
