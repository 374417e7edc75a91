"""C1 (Li, Duan, Liang 2025): two phases — the target attention rises fast, then converges to one; the loss follows."""

import numpy as np

from ...reporting import figures

from ..phases import BOUNDARY_TOLERANCE, log_slope, phase_boundary
from .runs import late_slope
from .verdicts import Verdict, all_pass, deciding_window, judged


def claim_c1(ctx):
    """Two phases: the target attention rises fast, then converges to one; the loss follows."""
    tr = ctx.base_flow
    boundary = phase_boundary(tr.t, tr.loss)
    boundary_halved = phase_boundary(tr.t, tr.loss, tol=BOUNDARY_TOLERANCE / 2)
    _, slope = log_slope(tr.t, tr.loss)
    late = late_slope(tr.t, tr.loss)
    final = float(np.diagonal(tr.final_attention).min())
    t_half = tr.crossings["t_half"]
    numbers = {"t_half": t_half, "t_boundary": boundary, "steepest_loss_slope": float(slope.min()),
               "late_loss_slope": late, "final_min_target_attention": final, "final_relative_loss": float(tr.loss[-1] / tr.loss[0])}
    before = lambda b: b is not None and t_half is not None and t_half < b  # noqa: E731
    windows = [
        deciding_window("steepest loss slope (fast phase)", float(slope.min()), (None, -1.5), (None, -2.0),
                        "the late law is t^-1 (derived); a fast phase must fall faster by half a power of t",
                        "stricter: twice the margin beyond t^-1"),
        deciding_window("slope band of the slow phase (boundary after t_half)",
                        {"t_half": t_half, "t_boundary": boundary, "t_boundary_halved": boundary_halved},
                        (-1 - BOUNDARY_TOLERANCE, None), (-1 - BOUNDARY_TOLERANCE / 2, None),
                        "the slow phase starts where the local slope rises above t^-1.25, midway between the "
                        "fast-phase cutoff t^-1.5 and the late law t^-1",
                        "the band around t^-1 halved (edge t^-1.125); the boundary found again on the same run",
                        passes=before(boundary), passes_halved=before(boundary_halved)),
        deciding_window("late loss slope", late, (-1.1, -0.9), (-1.05, -0.95),
                        "the derived late law ℒ ≈ C/t; ±0.1 leaves room for the pre-asymptotic correction over "
                        "the last 1.5 decades", "narrowed around -1"),
        deciding_window("final min target attention", final, (0.99, None), (0.995, None),
                        "'converges to one' at the run's end (relative loss 1e-8), where the gap is ~1e-4",
                        "the cutoff moved halfway to 1"),
    ]
    verdict = judged(numbers, windows, all_pass)
    reason = ("Fast phase: the loss falls faster than t^-1.5 (steepest slope {:.2f}) while the target attention passes 1/2 "
              "(t = {:.3g}) before the boundary (t = {}); slow phase: the loss decays like t^{:.3f} and the target "
              "attention approaches one (min {:.5f}).").format(slope.min(), t_half or float("nan"),
                                                             f"{boundary:.3g}" if boundary else "none", late, final)
    choices = ["the setting: the base problem of the configuration, gradient flow (compiled DOP853, rtol 1e-9) until the loss is "
               "1e-8 of its initial value, 400 output times: the claim is about the flow, stopped deep in the slow phase",
               "target attention: min_k A_kk, the worst query (phases module), t_half where it reaches 1/2: "
               "the claim speaks of the target attention as one quantity, the worst query bounds them all",
               "local slope: central differences of log ℒ against log t on the output times; late slope: a line fitted "
               "over the last 1.5 decades, long enough to average, short enough to be past the transition"]
    fig = figures.two_phases(ctx.fig("C1"), tr, boundary)
    return Verdict("C1", "Target attention rises rapidly early, then converges to one (two phases, in loss and in attention).",
                   verdict, reason, numbers, fig, choices=choices)
