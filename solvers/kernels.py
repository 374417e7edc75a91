"""The hand-written kernel set: :mod:`attnflow.solvers.columns` with the shared :mod:`attnflow.solvers.assembly`.

A kernel set is any namespace with the functions below; :class:`attnflow.solvers.ScoreSystem`
takes one (this one by default) and :mod:`attnflow.derivations.codegen` builds others from
SymPy.  This set is the reference the generated ones are tested against.
"""

from .assembly import (  # noqa: F401
    GD_FINISHED, GD_NONFINITE, GD_SATURATED, GD_SCORE_LIMIT, GD_STOP_LOSS, attention, event_values, flow_jacobian,
    flow_rhs, gd_batch, gd_iterate, loss, loss_and_gradient, loss_gradient_gap, score_gd_step, score_hessians,
    separate_event_values, separate_gd_step, separate_jacobian, separate_rhs)
from .columns import (  # noqa: F401
    column_attention, column_hessian, column_loss_gradient, label_gap_moments, target_log_gap)

NAME = "hand-written"
