"""C2: irrelevant attention decays more slowly than the loss and can oscillate under GD."""

from ...files import write_text
from ...reporting import figures

from ..oscillation import CONVERGED, FULL_SPACE, OSCILLATES, QUICK_SPACE, example_toml, search_oscillation
from .runs import late_slope
from .verdicts import FAIL, INCONCLUSIVE, PASS, Verdict, deciding_window, judged


def claim_c2(ctx):
    """Irrelevant attention decays more slowly than the loss and can oscillate (GD).

    The decay rates come from the base problem's flow; the oscillation from
    :func:`attnflow.dynamics.analysis.oscillation.search_oscillation` over its quick
    space (``ctx.search == "quick"``, a few seconds) or its full one (``"full"``).
    """
    tr = ctx.base_flow
    irrelevant = tr.irrelevant_attention
    s_irr, s_loss = late_slope(tr.t, irrelevant), late_slope(tr.t, tr.loss)
    space = FULL_SPACE if ctx.search == "full" else QUICK_SPACE
    found = search_oscillation(ctx.cfg, space)
    e, sp = found.evidence, found.space
    reversals = e.get("reversals", 0)
    numbers = {"late_slope_irrelevant_attention": s_irr, "late_slope_loss": s_loss,
               "oscillation_search": {"verdict": found.verdict, "evidence": e, "space": sp, "example": found.example}}
    windows = [
        deciding_window("late-slope gap, irrelevant attention minus loss", s_irr - s_loss, (0.3, None), (0.4, None),
                        "derived: t^-1/2 against t^-1, a gap of 0.5; 0.3 leaves 0.2 for pre-asymptotic corrections",
                        "the cutoff moved halfway to the derived 0.5"),
        deciding_window("reversals of the example's irrelevant log-odds under GD", reversals, (2, None), (4, None),
                        "two reversals (down, up, down) are one oscillation, more than the transient rise-then-fall "
                        "the flow can show; the claim says 'can', so one converging run is enough",
                        "two oscillations (four reversals) asked instead of one"),
    ]
    verdict = judged(numbers, windows, lambda ok: (PASS if ok[windows[1]["name"]] else INCONCLUSIVE)
                      if ok[windows[0]["name"]] else FAIL)
    slower = windows[0]["passes"]
    reason = (f"Late phase (flow): the largest irrelevant attention decays like t^{s_irr:.3f}, the loss like t^{s_loss:.3f} "
              f"({'slower' if slower else 'not slower'}, as derived: −1/2 against −1). " + found.summary() + ".")
    choices = ["the setting: the base problem's flow for the decay rates (as C1); for the oscillation a search "
               f"({'full' if space is FULL_SPACE else 'quick'} space) over Gram matrices, p, prompts, parametrisations, "
               "starts, training sets, heads and steps built from the base configuration (docs/findings.md, C2)",
               "decay rates: lines fitted over the last 1.5 decades of the flow to the largest irrelevant attention and to "
               "the loss: the late laws are power laws (derived)",
               f"a run counts if GD's loss reaches {CONVERGED:g} of the initial one within {space.steps} iterations "
               "(its reversals are counted up to there), or, at a finite prompt's loss floor, if it ends there below its "
               "initial loss; a diverging or stalled run says nothing about oscillation during convergence",
               "an oscillation: two or more reversals of the direction of change of one irrelevant log-odds S_nk − S_kk "
               "between consecutive iterations (changes below 1e-6 of the pair's largest are round-off), and more than "
               "the flow of the same problem shows; the smallest example: smallest K, then fewest iterations"]
    if found.verdict == OSCILLATES:
        path = ctx.out / "C2_example.toml"
        write_text(path, example_toml(found.example))
        choices.append(f"the example, {path.name} in the output directory: `attnflow run {path.name} --out DIR` "
                       "reproduces the oscillating run")
        fig = figures.irrelevant_attention(ctx.fig("C2"), tr, found.trajectory, e["pair"], found.flow,
                                           f"K = {e['K']}, {e['setting']}, η = {e['eta_factor']:.3g}× stable step")
    else:
        fig = figures.irrelevant_attention(ctx.fig("C2"), tr)
    return Verdict("C2", "Attention to irrelevant features decays more slowly and can oscillate.", verdict, reason, numbers, fig,
                   choices=choices)
