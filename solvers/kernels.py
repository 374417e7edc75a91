"""The hand-written kernel set: :mod:`attnflow.solvers.columns` with the shared assemblies.

The assemblies are :mod:`attnflow.solvers.assembly` and :mod:`attnflow.solvers.multihead_assembly`.

A kernel set is any namespace with the functions below; :class:`attnflow.solvers.ScoreSystem`
and :class:`attnflow.solvers.multihead.MultiHeadSystem` take one (this one by default) and
:mod:`attnflow.derivations.codegen` builds others from SymPy.  This set is the reference the generated ones are tested against.
"""

from .assembly import (  # noqa: F401
    COLUMN_FLOW_MAX_K, attention, column_event_values, column_flow_rhs, event_values, flow_jacobian, flow_rhs,
    loss, loss_and_gradient, loss_gradient_gap, score_gd_step, score_gd_work, score_hessians,
    separate_event_values, separate_gd_step, separate_jacobian, separate_rhs)
from .columns import (  # noqa: F401
    column_attention, column_hessian, column_loss_gradient, head_column_cross_hessian, head_column_gradient,
    head_column_hessian_correction, label_gap_moments, mean_column_loss, target_log_gap)
from .multihead_assembly import (  # noqa: F401
    multihead_attention, multihead_event_values, multihead_gd_step, multihead_hessians, multihead_jacobian,
    multihead_loss_gradient_gap, multihead_rhs)

NAME = "hand-written"
