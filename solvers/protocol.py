"""The interface every system implements: what integrate_flow, iterate_gd and the analysis call.

A *system* is the derived dynamics of one model variant: the large- or finite-prompt score
system (:class:`attnflow.solvers.system.ScoreSystem`), the separate key and query factors
(:class:`attnflow.solvers.separate.SeparateSystem`), the noisy d×d model
(:class:`attnflow.solvers.noisy.NoisySystem`), several heads
(:class:`attnflow.solvers.multihead.MultiHeadSystem`) and a finite training set
(:class:`attnflow.solvers.training_set.TrainingSetSystem`).  Each keeps its own state — the
scores, the factors, Q, the heads' scores — as one flat float64 vector y, and implements
every member of :class:`System`; ``tests/test_protocol.py`` checks that each class defines
them all itself.

The solvers never ask which variant they run: the compiled integrators take
:meth:`System.callbacks`, the GD loop :meth:`System.gd_callback`, the SciPy reference
methods :meth:`System.flat_rhs` and :meth:`System.flat_jacobian`, and everything after the
run (losses, attention, crossings, reports) goes through the flat methods and
:meth:`System.scores_of`.
"""

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class System(Protocol):
    """The flat interface of a system (see the module docstring)."""

    state_is_scores: bool
    """Whether the flat state is the K×K scores themselves (then no ``state`` is kept apart)."""

    @property
    def K(self) -> int:
        """Number of features."""

    def flatten(self, start) -> np.ndarray:
        """The flat state y of an initial state in the system's own form (validated: ValueError)."""

    def flat_rhs(self, y) -> np.ndarray:
        """The gradient flow's right-hand side ``dy/dt`` at y."""

    def flat_jacobian(self, y) -> np.ndarray:
        """The analytic Jacobian ``∂(dy/dt)/∂y`` at y, (n, n)."""

    def flat_event_values(self, y) -> tuple:
        """``(max_k log(1 − A_kk), log ℒ)`` at y: the quantities every crossing event watches."""

    def flat_loss(self, y) -> float:
        """The loss at y."""

    def flat_losses(self, Y) -> np.ndarray:
        """The loss at every state of Y (T, n): the loss on an output grid."""

    def flat_attention(self, y) -> np.ndarray:
        """The attention ``A[n, k]`` (K, K) the prediction uses at y."""

    def scores_of(self, Y) -> np.ndarray:
        """Scores (T, K, K) whose softmax is that attention, for states Y (T, n)."""

    def callbacks(self):
        """``(rhs, events, args, event_args, jac)`` of the compiled integrators, or None (NumPy only)."""

    def gd_callback(self):
        """``(step, args, work)`` of the compiled GD loop, or None (NumPy only).

        ``step(y, *args, dy, S, scratch) -> (ℒ, max_k log(1 − A_kk))`` writes the flow's
        right-hand side at y into dy and the scores into S; ``scratch`` holds ``work`` floats
        the loop allocates once per call (:func:`attnflow.solvers.gd.iterate_gd`).
        """

    def stable_step(self, start) -> float:
        """The largest linearly stable GD step at the start (inf without curvature)."""

    def warm_up(self, gd: bool = True) -> float:
        """Compile (or load) the system's kernels; the seconds it took.

        Without ``gd``, only what a flow runs: a flow-only run does not compile the GD loop and
        the stable step.
        """


def members():
    """The names a system must define: the protocol's attributes and methods.

    Examples
    --------
    >>> sorted(members())[:3]
    ['K', 'callbacks', 'flat_attention']
    """
    return sorted(set(System.__annotations__) | {n for n in vars(System) if not n.startswith("_")})
