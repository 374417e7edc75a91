"""Numba kernels and SciPy integration for the score-space dynamics.

Knows arrays, not configurations: everything here takes ``G``, ``F``, ``p`` and
initial scores, so it can be used without :mod:`attnflow.dynamics`.

* :mod:`.system` — :class:`ScoreSystem`, the derived system the kernels run on;
  :mod:`.separate`, :mod:`.noisy` and :mod:`.multihead` — the separate key/query factors,
  the token noise model and several attention heads, with the same flat interface;
* :mod:`.columns`, :mod:`.assembly`, :mod:`.finite_prompt` — the per-query pieces, their
  assembly into the K×K dynamics, the exact finite-N expectation; :mod:`.kernels` — the
  hand-written kernel set;
* :mod:`.flow`, :mod:`.integrator`, :mod:`.gd`, :mod:`.ensemble` — the gradient flow
  (SciPy or a compiled DOP853), the gradient-descent map, many problems in one call;
* :mod:`.stability` — the largest stable GD step without the K²×K² Jacobian;
* :mod:`.trajectory` — :class:`Trajectory`, what a run returns;
* :mod:`.references` — independent routes the tests check the solvers against.
"""

from .flow import integrate_flow
from .gd import iterate_gd
from .system import ScoreSystem
from .trajectory import Trajectory

__all__ = ["ScoreSystem", "Trajectory", "integrate_flow", "iterate_gd"]
