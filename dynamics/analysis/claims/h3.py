"""H3 (Huang, Cheng, Liang 2023): the time to converge grows polynomially in K."""

import math
from dataclasses import asdict

import numpy as np

from ...reporting import figures

from ..fits import power_law
from ..phases import crossing_time, per_query_times
from .runs import flow_to_convergence, orthonormal_linear
from .verdicts import INCONCLUSIVE, Verdict, all_pass, deciding_window, judged


def claim_h3(ctx):
    """Test H3: the time to converge grows polynomially in K.

    Parameters
    ----------
    ctx : Context
        The base problem, shared flows, sweep sizes and the figure directory.

    Returns
    -------
    Verdict
        PASS, FAIL or INCONCLUSIVE with its reason, numbers, windows and figure.
    """
    Ks = ctx.K_values
    t_att, t_eps, final = [], [], []
    for K in Ks:
        tr = flow_to_convergence(orthonormal_linear(ctx, K=K), stop_rel=1e-3)
        # Attention 0.9, not 1/2: with K = 2 and uniform p the attention starts at 1/2.
        times = per_query_times(tr, 0.9)
        t_att.append(None if None in times else max(times))
        t_eps.append(crossing_time(tr.t, tr.loss / tr.loss[0], 1e-2))
        final.append(float(tr.target_attention[-1].min()))
    statement = "The time to converge grows polynomially in K."
    unreached = [K for K, t in zip(Ks, t_att) if t is None]
    if unreached:
        # At finite N a query's attention cannot pass 1 − (1 − p_k)^N (its feature may be missing from the
        # prompt): below 0.9 there is no time to measure, and nothing decides.
        numbers = {"K": list(Ks), "t_attention_0.9": t_att, "t_relative_loss_1e-2": t_eps,
                   "final_min_attention": final}
        N = ctx.cfg.prompt.N
        reason = (f"Not every query's attention reaches 0.9 at K = {unreached} (the lowest ends at "
                  f"{min(a for K, a in zip(Ks, final) if K in unreached):.3f})"
                  + (f": at N = {N:g} a query's attention cannot pass 1 − (1 − 1/K)^N, the chance that its feature "
                     "is in the prompt, so there is no convergence time to fit in K." if math.isfinite(N) else "."))
        fig = figures.time_against_K(ctx.fig("H3"), Ks, {"attention 0.9": t_att, "relative loss 1e-2": t_eps})
        return Verdict("H3", statement, INCONCLUSIVE, reason, numbers, fig)
    fit = power_law(Ks, t_att)
    y = np.log(t_att)
    resid = y - np.polyval(np.polyfit(Ks, y, 1), Ks)
    r2_exp = float(1 - np.sum(resid**2) / np.sum((y - y.mean()) ** 2))
    numbers = {"K": list(Ks), "t_attention_0.9": t_att, "t_relative_loss_1e-2": t_eps, "fit": asdict(fit),
               "r2_exponential": r2_exp}
    windows = [deciding_window("R² of the power law in K", fit.r2, (0.98, None), (0.99, None),
                               "polynomial growth is a straight line on log-log axes; 0.98 leaves room for the curvature "
                               f"of the small K (from K = {Ks[0]})", "the cutoff moved halfway to 1")]
    # Polynomial rather than exponential: the power law must fit at least as well as log t linear in K.
    verdict = judged(numbers, windows, lambda ok: all_pass({**ok, "power law fits better": fit.r2 >= r2_exp}))
    reason = (f"Orthonormal linear task, K = {list(Ks)}: the time for every query's attention to reach 0.9 grows like "
              f"K^{fit.exponent:.3f} (CI {fit.ci95[0]:.3f}–{fit.ci95[1]:.3f}, R² = {fit.r2:.4f}); an exponential in K "
              f"fits with R² = {r2_exp:.4f}.")
    fig = figures.time_against_K(ctx.fig("H3"), Ks, {"attention 0.9": t_att, "relative loss 1e-2": t_eps})
    choices = [f"the setting: orthonormal features, linear task σ = 1, uniform p, K = {list(Ks)} (d = K), flows until the "
               "loss is 1e-3 of its initial value",
               "the time to converge: every query's attention at 0.9 (1/2 is where K = 2 starts); the time to relative "
               "loss 1e-2 is reported beside it",
               "the alternative: an exponential in K, log t fitted linear in K; the verdict compares the two R²"]
    return Verdict("H3", statement, verdict, reason, numbers, fig, choices=choices)
