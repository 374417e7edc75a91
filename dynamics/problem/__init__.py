"""The problem layer: configuration, features, function classes and their moments, constants.

:class:`Problem` is built from a validated configuration (:mod:`.config`) and gives
the system that is trained and its start; :mod:`.regimes` holds the constants L, Δ,
δ and the regime.  Knows the solvers, not the analysis or the reports.
"""

from .problem import Problem, task_overrides


__all__ = ["Problem", "task_overrides"]
