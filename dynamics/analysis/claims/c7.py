"""C7: at convergence each query attends to the tokens of its own feature."""

import numpy as np

from ...problem import task_overrides
from ...reporting import figures

from .runs import flow_to_convergence, late_slope, own_features, problem_with
from .verdicts import Verdict, all_pass, deciding_window, judged


def claim_c7(ctx):
    """Test C7: at convergence each query attends to the tokens of its own feature.

    Parameters
    ----------
    ctx : Context
        The base problem, shared flows, sweep sizes and the figure directory.

    Returns
    -------
    Verdict
        PASS, FAIL or INCONCLUSIVE with its reason, numbers, windows and figure.
    """
    cases = {"random-unit K=6 d=4": problem_with(ctx.cfg, own_features("random-unit", 6, 4, seed=1)),
             "imbalanced p": problem_with(ctx.cfg, {"prompt.p": [0.55] + [0.45 / (ctx.base.K - 1)] * (ctx.base.K - 1)})}
    flows = {"base": ctx.base_flow, **{name: flow_to_convergence(pr) for name, pr in cases.items()}}
    finals, slopes = {}, {}
    for name, tr in flows.items():
        finals[name] = float(np.diagonal(tr.final_attention).min())
        slopes[name] = late_slope(tr.t, 1 - tr.target_attention.min(axis=1))
    g = np.array([1.0, -1.0] * (ctx.base.K // 2) + [1.0] * (ctx.base.K % 2))
    deg = problem_with(ctx.cfg, task_overrides("finite", functions=[g.tolist(), (-g).tolist()]))
    deg_tr = flow_to_convergence(deg, t_end=1e7, stop_rel=1e-12)
    degenerate = float(np.diagonal(deg_tr.final_attention).min())
    figures_degenerate = figures.degenerate(ctx.fig("C7"), {"non-degenerate (base)": ctx.base_flow, "degenerate sign pattern": deg_tr})
    numbers = {"final_min_target_attention": finals, "late_slope_of_attention_gap": slopes,
               "degenerate_final_min_target_attention": degenerate,
               "degenerate_is_flagged": not deg.constants().nondegenerate}
    # "Converges to one" is about the limit: the gap 1 − min_k A_kk must keep decaying (derived law t^-1/2).
    windows = [
        deciding_window("final min target attention", finals, (0.99, None), (0.995, None),
                        "attention on the own feature at the runs' end (relative loss 1e-8), where the gap is ~1e-3 "
                        "or less", "the cutoff moved halfway to 1"),
        deciding_window("late slope of the attention gap 1 − min_k A_kk", slopes, (-0.6, -0.4), (-0.55, -0.45),
                        "'converges to one' is about the limit: the gap must keep decaying, by the derived law t^-1/2; "
                        "±0.1 leaves room for the approach to it over the last 1.5 decades", "narrowed around -1/2"),
    ]
    verdict = judged(numbers, windows, all_pass)
    reason = ("In every non-degenerate case the attention gap 1 − min_k A_kk decays like "
              + ", ".join(f"t^{sl:.3f}" for sl in slopes.values())
              + f" (derived: t^-1/2) and is below {1 - min(finals.values()):.1e} when the runs stop at relative loss 1e-8. "
              f"The reviewer's degenerate class (one fixed sign pattern) is flagged and its attention stays at "
              f"{degenerate:.3f}: non-degeneracy is needed, as docs/model.md §3 says.")
    choices = ["the cases: the base problem, random unit features K = 6 > d = 4 (seed 1), and p = 0.55 on one feature: "
               "non-orthonormal features and an imbalanced prompt, each breaking one symmetry of the base problem; flows "
               "until the loss is 1e-8 of its initial value",
               "the degenerate class: two functions ±g with g = (1, −1, 1, −1, …), run to t = 1e7 or relative loss 1e-12; "
               "reported, not judged (the claim assumes non-degeneracy)"]
    return Verdict("C7", "At convergence each query attends to the tokens of its own feature.", verdict,
                   reason, numbers, figures_degenerate, choices=choices)
