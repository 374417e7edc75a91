"""C4: flat regime — smaller gradients, larger stable step sizes; sharp — larger gradients, smaller steps."""

from dataclasses import asdict

from ...reporting import figures

from ..fits import power_law
from .runs import l_sweep
from .verdicts import Verdict, all_pass, deciding_window, judged


def claim_c4(ctx):
    """Test C4: the flat regime has smaller gradients and larger stable steps than the sharp one.

    Parameters
    ----------
    ctx : Context
        The base problem, shared flows, sweep sizes and the figure directory.

    Returns
    -------
    Verdict
        PASS, FAIL or INCONCLUSIVE with its reason, numbers, windows and figure.
    """
    L_star, rows = l_sweep(ctx, "single-index", "sin")
    L = [r["L"] for r in rows]
    g = power_law(L, [r["grad_norm"] for r in rows])
    s = power_law(L, [r["stable_step"] for r in rows])
    numbers = {"gradient_norm_at_start": asdict(g), "stable_step_at_start": asdict(s), "L_star": L_star}
    windows = [
        deciding_window("gradient-norm exponent in L, lower end of its 95 % CI", g.ci95[0], (0, None), (1, None),
                        "the claim is an ordering (larger gradients at larger L): the exponent must be above 0",
                        "stricter: the cutoff moved halfway to the derived +2"),
        deciding_window("stable-step exponent in L, upper end of its 95 % CI", s.ci95[1], (None, 0), (None, -1),
                        "the claim is an ordering (smaller stable steps at larger L): the exponent must be below 0",
                        "stricter: the cutoff moved halfway to the derived -2"),
    ]
    verdict = judged(numbers, windows, all_pass)
    reason = (f"Single-index sin class over {ctx.decades:g} decades of L: the initial gradient grows like L^{g.exponent:.3f} and the "
              f"largest linearly stable step shrinks like L^{s.exponent:.3f}, so the flat regime (small L) has smaller gradients "
              "and admits larger steps. Both exponents are exactly ±2 by the symmetry f → λf.")
    choices = ["the setting: the single-index class f = L·sin(wᵀx) on the base features, the sweep C3 also uses "
               f"({len(L)} values of L over {ctx.decades:g} decades around L*): L enters it as an amplitude only",
               "gradient size: the largest entry of the flow's right-hand side at S = 0; step size: the linear stability "
               "limit 2/λ_max at S = 0. Both at the start, where the regimes are defined"]
    fig = figures.step_size_against_L(ctx.fig("C4"), rows, L_star, ctx.oscillation_map(rows))
    return Verdict("C4", "Flat regime: smaller gradients, larger stable step sizes; sharp: larger gradients, smaller steps.",
                   verdict, reason, numbers, fig, reconstructed=True, choices=choices)
