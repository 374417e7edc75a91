"""H1 (Huang, Cheng, Liang 2023): balanced orthonormal features, linear task — two phases to near-zero error."""

import numpy as np

from ..phases import BOUNDARY_TOLERANCE, phase_boundary
from .runs import fast_phases
from .verdicts import Verdict, all_pass, deciding_window, judged


def claim_h1(ctx):
    """Test H1: balanced orthonormal features and a linear task reach near-zero error in two phases.

    Parameters
    ----------
    ctx : Context
        The base problem, shared flows, sweep sizes and the figure directory.

    Returns
    -------
    Verdict
        PASS, FAIL or INCONCLUSIVE with its reason, numbers, windows and figure.
    """
    tr = ctx.balanced_flow
    n_fast = fast_phases(tr.t, tr.loss)
    final = float(np.diagonal(tr.final_attention).min())
    relative = float(tr.loss[-1] / tr.loss[0])
    numbers = {"fast_phases": n_fast, "relative_final_loss": relative, "final_min_target_attention": final}
    halved_band = -1 - BOUNDARY_TOLERANCE / 2
    n_fast_halved = fast_phases(tr.t, tr.loss, threshold=halved_band)
    windows = [deciding_window("slope band of the slow phase (one fast phase, then the slow phase)",
                               {"fast_phases": n_fast, "fast_phases_with_band_halved": n_fast_halved},
                               (-1 - BOUNDARY_TOLERANCE, None), (halved_band, None),
                               "a fast phase is an interval where the loss falls faster than t^-1.25, a quarter power "
                               "beyond the late law t^-1 (C1's boundary)",
                               "the band around t^-1 halved (edge t^-1.125); fast phases counted again on the same run",
                               passes=n_fast == 1 and phase_boundary(tr.t, tr.loss) is not None,
                               passes_halved=n_fast_halved == 1 and phase_boundary(tr.t, tr.loss, tol=BOUNDARY_TOLERANCE / 2)
                               is not None)]
    # The run stops at relative loss 1e-8 (an event, met to within its interpolation): reaching it is not a window.
    reached = relative <= 1.01e-8
    verdict = judged(numbers, windows, lambda ok: all_pass({**ok, "relative loss 1e-8 reached": reached}))
    choices = ["the setting: the predecessor paper's, orthonormal features K = d = 4, linear task σ = 1, uniform p, "
               "gradient flow until the loss is 1e-8 of its initial value ('near-zero error')"]
    return Verdict("H1", "Balanced features (linear task, orthonormal): two phases to near-zero error.", verdict,
                   f"One fast phase (count {n_fast}) then the 1/t phase; relative loss {relative:.1e}, "
                   f"min target attention {final:.5f}.", numbers, ctx.balanced_imbalanced_figure, choices=choices)
