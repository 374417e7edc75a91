"""Numba kernels and SciPy integration for the score-space dynamics.

Knows arrays, not configurations: everything here takes ``G``, ``F``, ``p`` and
initial scores, so it can be used without :mod:`dynamics`.
"""

from .flow import integrate_flow
from .gd import iterate_gd
from .system import ScoreSystem
from .trajectory import Trajectory

__all__ = ["ScoreSystem", "Trajectory", "integrate_flow", "iterate_gd"]
