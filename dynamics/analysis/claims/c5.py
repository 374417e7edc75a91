"""C5: which regime GD brings to a loss level faster, under every step-size rule and accuracy scale a reader could mean."""

import math

import numpy as np

from ...problem import task_overrides
from ...reporting import figures
from ....solvers import iterate_gd

from ..solve import choose_step_size
from .runs import base_threshold_L, own_features, problem_with, scaled, threshold_L
from .verdicts import FAIL, INCONCLUSIVE, PASS, Verdict, bounds


# The class and features C5 compares on.  The dynamics see the class only through the moments M⁽ᵏ⁾.
# On orthonormal or simplex features the labels wᵀv_n are exchangeable, F = a(L)·I + b(L)·11ᵀ, b
# cancels in M, and M(L) = a(L)·M₁; the single-index class L·φ(wᵀx) has M ∝ L² on any features.
# There L only rescales the loss (as f → λf, η → λ²η), so flat and sharp differ by a loss scale and
# nothing else.  Random unit vectors break that symmetry.
C5_SETTING = {**task_overrides("frequency"), **own_features("random-unit", 4, 4, seed=0)}

C5_L_FACTORS = (0.3, 3.0)          # flat and sharp: multiples of the threshold L* = c*/(Δδ₀)

STEP_RULES = {
    "common": "one step size for both, the sharp problem's automatic step (the paper's Figure 1 setting)",
    "own auto": "each problem at its own automatic step, half its linear stability limit 2/λ_max at the start",
    "own largest": "each problem at the largest step of its converging interval above the automatic step "
                   "(bisection on log η to 1 %)",
}

ACCURACY_SCALES = {"absolute": "loss levels ε", "relative": "loss levels ε·ℒ(0), relative to each problem's initial loss"}

# A loss at or below this has underflowed: the float64 softmax is exactly one-hot and GD is frozen.
UNDERFLOW = float(np.nextafter(0.0, 1.0))

def gd_converges(system, S0, eta, level, steps):
    """Whether gradient descent at step ``eta`` converges to the loss ``level`` within ``steps`` iterations.

    Converges means all of:

    - the loss reaches ``level`` within the budget, with no score non-finite or beyond 700 (diverged);
    - the loss never underflows to 0 on the way (an exactly one-hot float64 softmax: the gradient
      vanishes and GD freezes where it landed, which is not convergence);
    - no query's target attention ever falls below its value at the start, and every one passes 1/2:
      GD moves each query's attention towards its own feature, as the paper's dynamics do.  A step
      that lowers one overshoots onto a wrong feature; such runs reach small losses, if at all, by
      escaping a plateau of erratic length (measured on the C5 flat problem: 204 iterations at 64×
      the automatic step, 151 063 at 128×), which says nothing about the regime.

    Parameters
    ----------
    system : ScoreSystem
    S0 : array, shape (K, K)
        The initial scores.
    eta : float
        The step size.
    level : float
        The absolute loss level to reach.
    steps : int
        The iteration budget.

    Returns
    -------
    bool
    """
    gd = iterate_gd(system, S0, eta, steps, eps=(float(level), UNDERFLOW), stop_loss=level, n_out=steps + 1)
    if gd.status != "stop_loss" or gd.crossings["t_loss"][UNDERFLOW] is not None or gd.crossings["t_half"] is None:
        return False
    target = _target_attention(system, gd)            # (iterations up to the stop, K)
    return bool(np.all(target >= target[0] - 1e-12))

def _target_attention(system, gd):
    """(T, K) attention of each query on its own feature at every recorded iterate."""
    if system.prompt[0] > 0:
        return gd.target_attention                    # finite N: the system's expectation over prompts
    # N = ∞: A_kk = 1 / Σ_n exp(l_nk − l_kk), l = S + log p, vectorised over the iterates.
    logits = gd.S + system.logp[None, :, None]        # S[t, n, k]: key feature n, query k
    own = np.diagonal(logits, axis1=1, axis2=2)[:, None, :]
    return 1.0 / np.exp(logits - own).sum(axis=1)

def largest_converging_step(system, S0, start, level, steps, resolution=0.01, growth=4.0, max_growths=12):
    """The upper edge of the converging interval of step sizes that contains ``start``.

    The step grows from ``start`` by ``growth`` until one fails to converge (:func:`gd_converges`),
    then bisection on log η shrinks the bracket until its ratio is at most ``1 + resolution``.

    Parameters
    ----------
    system, S0, level, steps
        As for :func:`gd_converges`.
    start : float
        A step size to start from.
    resolution : float
        The bracket's final ratio is at most ``1 + resolution``.
    growth : float
        Factor by which the step grows until one fails.
    max_growths : int
        Most growths tried.

    Returns
    -------
    (float or None, float or None, int)
        ``(eta, eta_fail, probes)``: ``eta`` converges, ``eta_fail`` ≤ (1 + resolution)·eta does not
        (``None`` when no step up to ``start·growth^max_growths`` fails), ``probes`` GD runs made.
        ``eta`` is None when ``start`` itself does not converge.
    """
    if not gd_converges(system, S0, start, level, steps):
        return None, start, 1
    lo, hi, probes = start, start * growth, 1
    while True:
        probes += 1
        if not gd_converges(system, S0, hi, level, steps):
            break
        if probes > max_growths:
            return hi, None, probes
        lo, hi = hi, hi * growth
    while hi / lo > 1 + resolution:
        mid = math.sqrt(lo * hi)
        probes += 1
        if gd_converges(system, S0, mid, level, steps):
            lo = mid
        else:
            hi = mid
    return lo, hi, probes

def _iterations_to_levels(system, S0, eta, levels, steps):
    """First iteration at or below each loss level (None: not within ``steps``); GD stops at the smallest."""
    levels = [float(e) for e in levels]
    gd = iterate_gd(system, S0, eta, steps, eps=tuple(levels), stop_loss=min(levels), n_out=2)
    hits = gd.crossings["t_loss"]
    return [None if hits[e] is None else int(round(hits[e] / eta)) for e in levels], gd.status

class _C5Problems:
    """The C5 problems by L, each with its automatic and (on demand, once) largest converging step,
    and its GD runs to the absolute and relative levels, memoised by (L, η)."""

    def __init__(self, ctx, L_star):
        self.ctx, self.L_star, self.problems, self.largest, self.runs = ctx, L_star, {}, {}, {}

    def get(self, factor):
        if factor not in self.problems:
            pr = problem_with(self.ctx.cfg, {**C5_SETTING, **scaled(factor * self.L_star)})
            system = pr.score_system()
            loss0 = float(system.loss(pr.S0))
            auto, _, _ = choose_step_size(system, pr.S0, "auto")
            self.problems[factor] = {"L": factor * self.L_star, "problem": pr, "system": system, "initial_loss": loss0,
                                     # Flat and sharp by the side of L* (as in C3): for this class the
                                     # reconstructed LΔδ stays below c* at every L (0.57 at L*, about 0.43 beyond).
                                     "auto": auto, "regime": "flat" if factor < 1 else ("sharp" if factor > 1 else "threshold"),
                                     "L_Delta_delta": pr.constants().L_Delta_delta,
                                     # Converging means reaching the smallest level of either accuracy scale.
                                     "smallest_level": min(self.ctx.c5_levels[-1], self.ctx.c5_levels[-1] * loss0)}
        return self.problems[factor]

    def largest_step(self, factor):
        if factor not in self.largest:
            p = self.get(factor)
            self.largest[factor] = largest_converging_step(p["system"], p["problem"].S0, p["auto"], p["smallest_level"],
                                                           self.ctx.c5_steps)
        return self.largest[factor]

    def eta(self, factor, rule, common):
        return {"common": common, "own auto": self.get(factor)["auto"], "own largest": self.largest_step(factor)[0]}[rule]

    def iterations(self, factor, eta):
        """``{"absolute": [...], "relative": [...]}``: iterations to each level of ``ctx.c5_levels``."""
        if (factor, eta) not in self.runs:
            p, levels = self.get(factor), list(self.ctx.c5_levels)
            if eta is None:
                its = [None] * (2 * len(levels))
            else:
                its, _ = _iterations_to_levels(p["system"], p["problem"].S0, eta,
                                               levels + [e * p["initial_loss"] for e in levels], self.ctx.c5_steps)
            self.runs[factor, eta] = {"absolute": its[:len(levels)], "relative": its[len(levels):]}
        return self.runs[factor, eta]

def _faster(a, b, names=("flat", "sharp")):
    """Which of two iteration counts is smaller (None: the level was not reached)."""
    if a is None and b is None:
        return "neither"
    if b is None or (a is not None and a < b):
        return names[0]
    if a is None or b < a:
        return names[1]
    return "tie"

def _ordering_verdict(faster):
    """The claim on one protocol's per-level ordering (levels from low to high accuracy).

    PASS: sharp faster at the lowest accuracy decided and flat at the highest (the claimed crossover);
    FAIL: the reverse crossover, or no crossover (one regime faster, or ties, at every decided level);
    INCONCLUSIVE: both regimes win somewhere but not in the claimed order.
    """
    decided = [f for f in faster if f in ("flat", "sharp")]
    if decided and decided[0] == "sharp" and decided[-1] == "flat":
        return PASS
    if "flat" in decided and "sharp" in decided and not (decided[0] == "flat" and decided[-1] == "sharp"):
        return INCONCLUSIVE
    return FAIL

def _sweep_crossover(ctx, c5, factors, rule, scale, common):
    """Over the L sweep: the fastest L at each level and where the fastest regime changes."""
    rows = [c5.get(f) for f in factors]
    its = [c5.iterations(f, c5.eta(f, rule, common))[scale] for f in factors]
    keep = [j for j, e in enumerate(ctx.c5_levels)
            if scale == "relative" or e < min(r["initial_loss"] for r in rows)]
    fastest, changes = [], []
    for j in keep:
        reached = [(its[i][j], i) for i in range(len(factors)) if its[i][j] is not None]
        if not reached:
            fastest.append({"level": ctx.c5_levels[j], "L": None, "L_over_L_star": None, "regime": None, "iterations": None})
            continue
        n, i = min(reached)
        fastest.append({"level": ctx.c5_levels[j], "L": rows[i]["L"], "L_over_L_star": factors[i],
                        "regime": rows[i]["regime"], "iterations": n})
    decided = [f for f in fastest if f["regime"]]
    for a, b in zip(decided, decided[1:]):
        if a["regime"] != b["regime"]:
            changes.append({"between_levels": [a["level"], b["level"]], "from_L": a["L"], "to_L": b["L"],
                            "from_regime": a["regime"], "to_regime": b["regime"]})
    return {"L_over_L_star": list(factors), "iterations": [[its[i][j] for j in keep] for i in range(len(factors))],
            "levels": [ctx.c5_levels[j] for j in keep], "fastest": fastest, "regime_changes": changes}

def _describe_changes(sweep):
    """One sentence: the fastest side of L* at each level of the sweep, and where it changes."""
    decided = [f for f in sweep["fastest"] if f["regime"]]
    if not decided:
        return "no L reaches any level within the budget"
    if not sweep["regime_changes"]:
        Ls = ", ".join(f"{L:.3g}" for L in sorted({f["L"] for f in decided}))
        return f"the fastest L is on the {decided[0]['regime']} side at every level (L = {Ls}): no crossover"
    return "; ".join(f"the fastest L moves from the {c['from_regime']} side (L = {c['from_L']:.3g}) to the {c['to_regime']} "
                     f"side (L = {c['to_L']:.3g}) between ε = {c['between_levels'][0]:.0e} and {c['between_levels'][1]:.0e}"
                     + (" (the claimed direction)" if c["from_regime"] == "sharp" else " (the reverse of the claim)")
                     for c in sweep["regime_changes"])

CONVERGES_MEANS = ("GD from S = 0 reaches the smallest loss level of either accuracy scale within the step budget, "
                   "with no score non-finite or beyond 700, the loss never exactly 0 (a frozen, one-hot float64 "
                   "softmax), and no query's target attention ever below its starting value (a step that lowers one "
                   "overshoots onto a wrong feature and escapes, if at all, after an erratic plateau)")

def claim_c5(ctx):
    """Flat against sharp under each protocol a reader could mean: three step-size rules × two accuracy scales."""
    L_star = threshold_L(ctx, C5_SETTING)
    c5 = _C5Problems(ctx, L_star)
    flat_f, sharp_f = C5_L_FACTORS
    flat, sharp = c5.get(flat_f), c5.get(sharp_f)
    common = sharp["auto"]
    # The common rule over the L sweep: one step for every L, the smallest automatic step of the sweep.
    sweep_common = min(c5.get(f)["auto"] for f in ctx.c5_L_factors)
    protocols = []
    for rule in STEP_RULES:
        etas = {"flat": c5.eta(flat_f, rule, common), "sharp": c5.eta(sharp_f, rule, common)}
        runs = {"flat": c5.iterations(flat_f, etas["flat"]), "sharp": c5.iterations(sharp_f, etas["sharp"])}
        for scale in ACCURACY_SCALES:
            # Absolute levels above a problem's initial loss are reached with zero iterations: only
            # levels below both initial losses compare anything.
            keep = [j for j, e in enumerate(ctx.c5_levels)
                    if scale == "relative" or e < min(flat["initial_loss"], sharp["initial_loss"])]
            itf = [runs["flat"][scale][j] for j in keep]
            its = [runs["sharp"][scale][j] for j in keep]
            faster = [_faster(a, b) for a, b in zip(itf, its)]
            protocols.append({
                "name": f"{rule} η, {scale} ε", "step_rule": rule, "step_rule_definition": STEP_RULES[rule],
                "accuracy_scale": scale, "accuracy_definition": ACCURACY_SCALES[scale],
                "eta_flat": etas["flat"], "eta_sharp": etas["sharp"],
                "levels": [ctx.c5_levels[j] for j in keep], "iterations_flat": itf, "iterations_sharp": its,
                "faster": faster, "verdict": _ordering_verdict(faster),
                "sweep": _sweep_crossover(ctx, c5, ctx.c5_L_factors, rule, scale, sweep_common)})
    largest = {}
    for name, f in (("flat", flat_f), ("sharp", sharp_f)):
        eta, fail, probes = c5.largest_step(f)
        largest[name] = {"eta": eta, "eta_fail": fail, "over_auto": eta / c5.get(f)["auto"] if eta else None,
                         "gd_runs": probes, "relative_resolution": 0.01, "converging_level": c5.get(f)["smallest_level"]}
    base = _base_own_auto_relative(ctx)
    numbers = {"setting": "frequency class f = sin(L wᵀx), random-unit features K = 4, d = 4, seed 0",
               "reading": "sharp faster at the lowest accuracy compared, flat faster at the highest (a crossover as ε falls)",
               "L_star": L_star, "L_flat": flat["L"], "L_sharp": sharp["L"],
               "L_Delta_delta_flat": flat["L_Delta_delta"], "L_Delta_delta_sharp": sharp["L_Delta_delta"],
               "initial_loss_flat": flat["initial_loss"], "initial_loss_sharp": sharp["initial_loss"],
               "step_budget": ctx.c5_steps, "loss_level_grid": list(ctx.c5_levels),
               "converges_means": CONVERGES_MEANS, "largest_step": largest,
               "sweep_L_over_L_star": list(ctx.c5_L_factors), "sweep_common_eta": sweep_common,
               "protocols": protocols, "base_problem_own_auto_relative": base}
    verdict, reason = _c5_summary(protocols, flat, sharp, largest, base)
    # The compared accuracy range decides orderings: the verdict again on its central half (in log).
    for p in protocols:
        keep = _levels_halved(p["levels"])
        p["levels_in_range_halved"] = [p["levels"][j] for j in keep]
        p["verdict_with_range_halved"] = _ordering_verdict([p["faster"][j] for j in keep])
    halved = _over_protocols(p["verdict_with_range_halved"] for p in protocols)
    numbers.update(verdict_with_window_halved=halved, windows=[{
        "name": "accuracy range compared (each protocol)",
        "measured": {p["name"]: p["verdict"] for p in protocols},   # the verdicts on the whole range
        "accepted": "each protocol's levels (table), within " + bounds([min(ctx.c5_levels), max(ctx.c5_levels)]),
        "halved": "the central half in log of each protocol's levels",
        "why": "from the coarsest level below both initial losses down to the finest the automatic step reaches "
               "within the budget: 'high' and 'low' accuracy are relative, so the widest range measured",
        "halving": "per protocol: " + "; ".join(f"{p['name']} {p['verdict_with_range_halved']}" for p in protocols),
        "verdict_with_this_window_halved": halved}])
    choices = [f"the setting: {numbers['setting']} (on orthonormal or simplex features the frequency class, and on any "
               "features the single-index class, only rescale the loss with L: see the last sentence above)",
               f"flat and sharp at L = {flat_f:g}·L* and {sharp_f:g}·L*, L* = c*/(Δδ₀) as in C3 (the reconstructed LΔδ "
               f"itself is {flat['L_Delta_delta']:.2f} and {sharp['L_Delta_delta']:.2f}: below c* = 1 at both)",
               f"the reading of the claim: {numbers['reading']}",
               "the step-size rule and the accuracy scale: every combination is reported",
               f"the loss levels 1e-01 … {ctx.c5_levels[-1]:.0e} in half decades and the budget of {ctx.c5_steps} "
               "iterations; a level not reached within it counts as slower",
               "the common step: the sharp problem's automatic one (over the L sweep, the smallest automatic step)",
               f"what converging means for the largest step: {CONVERGES_MEANS}; steps grow ×4 from the automatic one "
               "until one fails, then bisection on log η to 1 %"]
    fig = figures.c5_protocols(ctx.fig("C5"), protocols, {"flat": flat["L"], "sharp": sharp["L"]})
    return Verdict("C5", "Flat may converge faster when high accuracy is required; sharp faster when L is large relative to the accuracy.",
                   verdict, reason, numbers, fig, reconstructed=True, choices=choices,
                   details=_c5_details(protocols, ctx.c5_L_factors))

def _base_own_auto_relative(ctx):
    """The base problem's class and features, flat and sharp each at its own automatic step, relative levels."""
    out = {"problem": f"{ctx.base.function_class.describe()}, {ctx.base.features.kind} features"}
    for name, f in zip(("flat", "sharp"), C5_L_FACTORS):
        pr = problem_with(ctx.cfg, scaled(f * base_threshold_L(ctx)))
        system = pr.score_system()
        eta, _, _ = choose_step_size(system, pr.S0, "auto")
        loss0 = system.loss(pr.S0)
        out[f"iterations_{name}"], _ = _iterations_to_levels(system, pr.S0, eta, [e * loss0 for e in ctx.c5_levels],
                                                             ctx.c5_steps)
    out["identical"] = out["iterations_flat"] == out["iterations_sharp"]
    return out

def _over_protocols(verdicts):
    """C5's verdict from the protocols' verdicts: PASS or FAIL if all agree, INCONCLUSIVE otherwise."""
    verdicts = set(verdicts)
    return PASS if verdicts == {PASS} else (FAIL if verdicts == {FAIL} else INCONCLUSIVE)

def _levels_halved(levels):
    """The levels inside the central half (in log) of the range ``levels`` spans: the compared range halved."""
    lo, hi = math.log(min(levels)), math.log(max(levels))
    centre, half = (lo + hi) / 2, (hi - lo) / 4
    return [j for j, e in enumerate(levels) if abs(math.log(e) - centre) <= half * (1 + 1e-9)]

def _c5_summary(protocols, flat, sharp, largest, base):
    """The overall verdict and its reason: which protocols support the claim and which contradict it."""
    by = {v: [p["name"] for p in protocols if p["verdict"] == v] for v in (PASS, FAIL, INCONCLUSIVE)}
    verdict = _over_protocols(p["verdict"] for p in protocols)
    lf, ls = largest["flat"], largest["sharp"]
    steps = (f"{lf['eta']:.4g} and {ls['eta']:.4g} ({lf['over_auto']:.1f}× and {ls['over_auto']:.1f}× automatic)"
             if lf["eta"] and ls["eta"] else "not found (the automatic step does not converge within the budget)")
    reason = (f"Frequency class on random unit features (K = 4, d = 4): flat L = {flat['L']:.3g}, sharp L = {sharp['L']:.3g} "
              f"(0.3 and 3 × L* = c*/(Δδ₀)), initial losses {flat['initial_loss']:.3g} and {sharp['initial_loss']:.3g}; "
              f"automatic steps {flat['auto']:.4g} and {sharp['auto']:.4g}, largest converging steps {steps}. "
              f"Of the six protocols (table), the claim is supported by: {'; '.join(by[PASS]) or 'none'}. Contradicted by: "
              f"{'; '.join(by[FAIL]) or 'none'}." + (f" Mixed under: {'; '.join(by[INCONCLUSIVE])}." if by[INCONCLUSIVE] else "")
              + " Per protocol, PASS needs sharp faster at the lowest accuracy compared and flat at the highest; FAIL, "
              "one regime faster throughout or the reverse order; INCONCLUSIVE, both win somewhere but not in that order. "
              f"On the base problem ({base['problem']}) at each problem's own automatic step the iterations to every "
              "relative level are " + ("identical for flat and sharp: there L only rescales the loss (f → λf, η → λ²η)."
                                       if base["identical"] else "not identical."))
    return verdict, reason

def _c5_details(protocols, factors):
    """Markdown: one row per protocol, the iterations to each level for both problems, then the L sweep."""
    fmt = lambda xs: ", ".join("–" if x is None else str(x) for x in xs)  # noqa: E731
    eta = lambda x: "–" if x is None else f"{x:.4g}"  # noqa: E731
    lines = ["| protocol | η flat | η sharp | levels ε | iterations flat | iterations sharp | faster | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for p in protocols:
        lines.append(f"| {p['name']} | {eta(p['eta_flat'])} | {eta(p['eta_sharp'])} | "
                     f"{', '.join(f'{e:.0e}' for e in p['levels'])}{' ×ℒ(0)' if p['accuracy_scale'] == 'relative' else ''} | "
                     f"{fmt(p['iterations_flat'])} | {fmt(p['iterations_sharp'])} | {', '.join(p['faster'])} | {p['verdict']} |")
    lines += ["", "Levels run from low to high accuracy; – : not reached within the budget (counts as slower).",
              "", f"Over the L sweep (L/L* = {', '.join(f'{f:g}' for f in factors)}), the fastest L at each level:"]
    lines += [f"- {p['name']}: {_describe_changes(p['sweep'])}." for p in protocols]
    return lines
