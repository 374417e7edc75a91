"""``attnflow check``: the papers' claims as numerical protocols with verdicts.

Every claim of ``model.md`` §4 (C1–C8 from Li, Duan, Liang 2025; H1–H3 from
Huang, Cheng, Liang 2023) becomes a protocol: runs or sweeps, measured numbers,
scaling exponents with confidence intervals, orderings, and a verdict PASS, FAIL
or INCONCLUSIVE with the reason written beside it.  A claim that fails
numerically is a finding, reported plainly with its evidence.  Claims that rest on
a reconstructed definition (Δ, δ, the threshold c*) say so.

All protocols run at N = ∞ with merged parameters, the setting this version solves.
"""

import math
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from ..solvers import integrate_flow, iterate_gd

from . import figures
from .errors import AttnflowError
from .fits import power_law
from .phases import BOUNDARY_TOLERANCE, crossing_time, log_slope, per_query_times, phase_boundary
from .problem import Problem
from .progress import progress_bar
from .files import dump_json, prepare_out_dir, write_text
from .run import choose_step_size, versions

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"


@dataclass
class Verdict:
    claim: str
    statement: str
    verdict: str
    reason: str
    numbers: dict = field(default_factory=dict)
    figure: str = None
    reconstructed: bool = False
    choices: list = field(default_factory=list)   # free choices the paper does not fix, named in the report
    details: list = field(default_factory=list)   # markdown lines shown after the reason (tables)


def flow_to_convergence(problem, t_end=1e9, stop_rel=1e-8, method="auto"):
    """The flow until the loss is ``stop_rel`` times its initial value (or ``t_end``)."""
    system = problem.system()
    return integrate_flow(system, problem.S0, t_end, method=method, rtol=1e-9, atol=1e-12,
                          stop_loss=stop_rel * system.loss(problem.S0), n_out=400)


def problem_with(cfg, **overrides):
    """The problem of ``cfg`` with fields overridden; ``task__L=3`` means ``task.L = 3``."""
    return Problem.from_config(cfg.with_overrides({k.replace("__", "."): v for k, v in overrides.items()}))


def _late_slope(t, y, decades=1.5):
    """Fitted log-log slope over the last ``decades`` of time."""
    keep = (t >= t[-1] / 10**decades) & (t > 0) & (y > 0)
    return float(np.polyfit(np.log(t[keep]), np.log(y[keep]), 1)[0])


def fast_phases(t, loss, threshold=-1.25):
    """Number of separate time intervals in which the loss falls faster than ``t^threshold``."""
    _, slope = log_slope(np.asarray(t, float), np.asarray(loss, float))
    fast = slope < threshold
    return int(np.sum(fast[1:] & ~fast[:-1]) + (1 if len(fast) and fast[0] else 0))


def attention_phases(times, gap=2.0):
    """Number of groups of per-query transition times separated by more than a factor ``gap``."""
    ts = sorted(t for t in times if t)
    return 0 if not ts else 1 + sum(b > gap * a for a, b in zip(ts, ts[1:]))


# --- thresholds that decide verdicts ----------------------------------------------------
#
# Every threshold a verdict hinges on is a window: the accepted range of a measured number, why that
# range, and the range halved (narrowed by a factor 2 around its centre in the natural scale, or for a
# one-sided cutoff moved halfway towards the derived value; each claim says which in one line).  The
# verdict is decided again from the numbers already measured, with each window halved alone and with
# all of them halved at once; no solver runs again.

def deciding_window(name, measured, accepted, halved, why, halving, passes=None, passes_halved=None):
    """One threshold that decides a verdict, as a dict for ``numbers["windows"]``.

    ``accepted`` and ``halved`` are ``(lo, hi)`` bounds (None: unbounded); the check passes when every
    value of ``measured`` (a number, or a dict or list of them) lies inside.  ``passes`` and
    ``passes_halved`` replace that test where the threshold acts through a quantity recomputed with it
    (a phase boundary found with the tolerance halved, say).
    """
    values = list(measured.values()) if isinstance(measured, dict) else (
        list(measured) if isinstance(measured, (list, tuple)) else [measured])

    def inside(window):
        lo, hi = window
        return all(v is not None and (lo is None or v >= lo) and (hi is None or v <= hi) for v in values)

    return {"name": name, "measured": measured, "accepted": list(accepted), "halved": list(halved),
            "why": why, "halving": halving,
            "passes": bool(inside(accepted) if passes is None else passes),
            "passes_halved": bool(inside(halved) if passes_halved is None else passes_halved)}


def decide(windows, rule):
    """The verdict ``rule`` gives on the windows' pass flags, and the verdict with every window halved.

    ``rule`` maps ``{window name: passes}`` to a verdict.  Each window also records the verdict with
    only itself halved (``verdict_with_this_window_halved``).
    """
    flags = {w["name"]: w["passes"] for w in windows}
    for w in windows:
        w["verdict_with_this_window_halved"] = rule({**flags, w["name"]: w["passes_halved"]})
    return rule(flags), rule({w["name"]: w["passes_halved"] for w in windows})


def _judged(numbers, windows, rule):
    """``decide`` on ``windows``, recorded in ``numbers`` (``windows``, ``verdict_with_window_halved``)."""
    verdict, halved = decide(windows, rule)
    numbers.update(windows=windows, verdict_with_window_halved=halved)
    return verdict


def _all_pass(flags):
    return PASS if all(flags.values()) else FAIL


# --- the claims ----------------------------------------------------------------------

def claim_c1(ctx):
    """Two phases: the target attention rises fast, then converges to one; the loss follows."""
    tr = ctx.base_flow
    boundary = phase_boundary(tr.t, tr.loss)
    boundary_halved = phase_boundary(tr.t, tr.loss, tol=BOUNDARY_TOLERANCE / 2)
    _, slope = log_slope(tr.t, tr.loss)
    late = _late_slope(tr.t, tr.loss)
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
    verdict = _judged(numbers, windows, _all_pass)
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


def claim_c2(ctx):
    """Irrelevant attention decays more slowly than the loss and can oscillate (GD)."""
    tr = ctx.base_flow
    irrelevant = tr.irrelevant_attention
    s_irr, s_loss = _late_slope(tr.t, irrelevant), _late_slope(tr.t, tr.loss)
    system = ctx.base.system()
    stable = system.stable_step(ctx.base.S0)
    runs = {}
    for factor in ctx.eta_factors:
        gd = iterate_gd(system, ctx.base.S0, factor * stable, ctx.gd_steps, n_out=300)
        converged = gd.success and gd.loss[-1] < 1e-2 * gd.loss[0]
        runs[factor] = (gd, converged)
    oscillating = {f: gd.counters["max_oscillations_per_feature"] for f, (gd, ok) in runs.items() if ok}
    numbers = {"late_slope_irrelevant_attention": s_irr, "late_slope_loss": s_loss,
               "gd_eta_factors_of_stable_step": list(ctx.eta_factors),
               "max_oscillations_per_irrelevant_feature_in_converging_runs": oscillating}
    factors = (min(ctx.eta_factors), max(ctx.eta_factors))
    centre, half = math.sqrt(factors[0] * factors[1]), math.sqrt(factors[1] / factors[0]) ** 0.5
    seen = lambda lo, hi: any(v > 0 for f, v in oscillating.items() if lo <= f <= hi)  # noqa: E731
    windows = [
        deciding_window("late-slope gap, irrelevant attention minus loss", s_irr - s_loss, (0.3, None), (0.4, None),
                        "derived: t^-1/2 against t^-1, a gap of 0.5; 0.3 leaves 0.2 for pre-asymptotic corrections",
                        "the cutoff moved halfway to the derived 0.5"),
        deciding_window("range of GD step multiples searched for an oscillation", oscillating, factors,
                        (centre / half, centre * half),
                        "from half the linearly stable step, where GD stays close to the flow, to 128×, far past "
                        "linear stability; one oscillation in one converging run is enough, the claim says 'can'",
                        "narrowed by 2 in log around its centre", passes=seen(*factors),
                        passes_halved=seen(centre / half, centre * half)),
    ]
    verdict = _judged(numbers, windows, lambda ok: (PASS if ok[windows[1]["name"]] else INCONCLUSIVE)
                      if ok[windows[0]["name"]] else FAIL)
    slower, osc = windows[0]["passes"], windows[1]["passes"]
    reason = (f"Late phase (flow): the largest irrelevant attention decays like t^{s_irr:.3f}, the loss like t^{s_loss:.3f} "
              f"({'slower' if slower else 'not slower'}, as derived: −1/2 against −1). GD at "
              f"{', '.join(f'{f:g}' for f in ctx.eta_factors)}× the stable step: "
              + ("oscillations of irrelevant attention seen in converging runs." if osc else
                 "no converging run showed an oscillation of an irrelevant attention's log-odds, so 'can oscillate' is "
                 "not observed here."))
    choices = ["the setting: the base problem; its flow for the decay rates (as C1), GD from S = 0 for the oscillations",
               "decay rates: lines fitted over the last 1.5 decades of the flow to the largest irrelevant attention and to "
               "the loss: the late laws are power laws (derived)",
               f"GD steps: {', '.join(f'{f:g}' for f in ctx.eta_factors)} × the linearly stable step 2/λ_max at the start, "
               f"{ctx.gd_steps} iterations; a run counts if its loss falls below 1e-2 of the initial one (a diverging or "
               "stalled run says nothing about oscillation during convergence)",
               "an oscillation: a reversal of an irrelevant attention's log-odds against the target (the solver's count), "
               "the worst feature's count per run"]
    best = max(runs, key=lambda f: runs[f][0].counters["max_oscillations_per_feature"])
    fig = figures.irrelevant_attention(ctx.fig("C2"), tr, runs[best][0], best)
    return Verdict("C2", "Attention to irrelevant features decays more slowly and can oscillate.", verdict, reason, numbers, fig,
                   choices=choices)


def l_sweep(ctx, kind, link=None):
    """Flow and start-of-training quantities over L spanning ``ctx.decades`` around 1/(Δδ₀).

    Memoised on the context: C3 and C4 share the single-index sweep.
    """
    if (kind, link) not in ctx.sweeps:
        ctx.sweeps[kind, link] = _l_sweep(ctx, kind, link)
    return ctx.sweeps[kind, link]


def _threshold_L(ctx, overrides):
    """L* = c*/(Δδ₀) of the configuration with ``overrides``, δ₀ its small-L (linear-response) value."""
    c = Problem.from_config(ctx.cfg.with_overrides({**overrides, "task.L": 1e-3})).constants()
    return ctx.threshold / (c.Delta * c.delta)


def _l_sweep(ctx, kind, link):
    task = {"task.kind": kind}
    if link:
        task["task.link"] = link
    L_star = _threshold_L(ctx, task)
    Ls = L_star * np.geomspace(10 ** (-ctx.decades / 2), 10 ** (ctx.decades / 2), ctx.points)
    rows = []
    with progress_bar(f"L sweep ({kind})", ctx.progress) as report:
        for i, L in enumerate(Ls):
            pr = Problem.from_config(ctx.cfg.with_overrides({**task, "task.L": float(L)}))
            s = pr.system()
            tr = flow_to_convergence(pr, stop_rel=1e-4)
            pc = pr.constants()
            rows.append({"L": float(L), "L_Delta_delta": pc.L_Delta_delta, "regime": pc.regime,
                         "t_half": tr.crossings["t_half"], "grad_norm": float(np.abs(s.rhs(pr.S0)).max()),
                         "stable_step": s.stable_step(pr.S0), "trajectory": tr})
            if report:
                report((i + 1) / len(Ls))
    return L_star, rows


C3_WINDOW = 10.0      # the breakpoint may lie within this factor of L* either way


def claim_c3(ctx):
    L_star, rows = l_sweep(ctx, "frequency")
    L = np.array([r["L"] for r in rows])
    t = np.array([r["t_half"] if r["t_half"] is not None else np.nan for r in rows])
    k = max(3, len(L) // 4)
    low, high = power_law(L[:k], t[:k]), power_law(L[-k:], t[-k:])
    # Breakpoint: where the two asymptotic power laws meet.
    L_break = math.exp((math.log(high.prefactor) - math.log(low.prefactor)) / (low.exponent - high.exponent))
    ratio = L_break / L_star
    _, scaled = l_sweep(ctx, "single-index", "sin")
    products = [r["t_half"] * r["L"] ** 2 for r in scaled if r["t_half"]]
    spread = max(products) / min(products) - 1
    numbers = {"L_star_threshold_over_Delta_delta0": L_star, "small_L_exponent": asdict(low), "large_L_exponent": asdict(high),
               "L_break": L_break, "L_break_over_L_star": ratio,
               "single_index_t_half_times_L2_relative_spread": spread}
    # The window for the breakpoint: Θ(1/(Δδ)) fixes the threshold only up to a constant that the
    # available text does not give, so an O(1) factor is allowed, one decade either way; the sweep
    # reaches further (±1.5 or ±2 decades), so a breakpoint at its edge, or none, still fails.
    differ = low.ci95[1] < high.ci95[0]
    windows = [deciding_window("breakpoint L_break/L*", ratio, (1 / C3_WINDOW, C3_WINDOW),
                               (C3_WINDOW ** -0.5, C3_WINDOW ** 0.5),
                               "Θ(1/(Δδ)) leaves the constant free; one decade either way, and the sweep reaches "
                               "further so a breakpoint at its edge still fails", "narrowed by 2 in log around L*")]
    verdict = _judged(numbers, windows, lambda ok: PASS if differ and ok[windows[0]["name"]] else FAIL)
    split, halved = verdict == PASS, numbers["verdict_with_window_halved"]
    numbers.update(breakpoint_window_factor=C3_WINDOW,
                   narrowest_passing_window_factor=max(ratio, 1 / ratio) if differ else None,
                   points_per_asymptotic_fit=k)
    reason = (f"Frequency class f = sin(L wᵀx), L over {ctx.decades:g} decades around L* = c*/(Δδ₀) = {L_star:.3g}: "
              f"t_half ∝ L^{low.exponent:.2f} for small L (labels ≈ linear, speed set by L²) and L^{high.exponent:.2f} for "
              f"large L (bounded labels); the two laws meet at L = {L_break:.3g} = {ratio:.2f}·L*"
              + (", a split at L = Θ(1/(Δδ))." if split else ", not at Θ(1/(Δδ)).")
              + f" Window: a breakpoint within a factor {C3_WINDOW:g} of L* passes, because Θ(·) leaves the constant "
                "free (c* = 1 is the reconstruction) and one decade either way still leaves the sweep's outer decades "
                "to fail a breakpoint at its edge. With the window halved (a factor "
              + f"{C3_WINDOW ** 0.5:.2f} either way) the verdict is {halved}"
              + (f"; the breakpoint is {abs(math.log(ratio)):.1%} (in log) from L*, so only a window narrower than a "
                 f"factor {max(ratio, 1 / ratio):.4f} would change it." if differ else ".")
              + f" Finding: for the single-index class f = L·φ(wᵀx) the flow has no regime change at all: t_half·L² is "
                f"constant to {spread:.1e} (exact symmetry f → λf, time → λ²t); only a fixed GD step size separates its regimes.")
    choices = ["the class: frequency f = sin(L wᵀx) (the single-index class has no regime change in the flow)",
               "the speed measure: flow time t_half at which every query's target attention reaches 1/2",
               f"the threshold L* = c*/(Δδ₀) with c* = {ctx.threshold:g} and δ₀ the small-L value (reconstructed)",
               f"the sweep: {len(L)} values of L log-spaced over {ctx.decades:g} decades around L*, each flow run until the "
               "loss is 1e-4 of its initial value (t_half comes long before)",
               f"the asymptotic fits: the {k} smallest and {k} largest L of the {len(L)}-point sweep; the slopes must "
               "differ beyond their 95 % intervals"]
    fig = figures.phase_diagram(ctx.fig("C3"), rows, L_star, "frequency class: flow t_half against L")
    return Verdict("C3", "L governs the convergence speed; the regimes split at L = Θ(1/(Δδ)).", verdict, reason,
                   numbers, fig, reconstructed=True, choices=choices)


def claim_c4(ctx):
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
    verdict = _judged(numbers, windows, _all_pass)
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


# --- C5: flat against sharp under every protocol a reader of the paper could mean ---------------

# The class and features C5 compares on.  The dynamics see the class only through the moments M⁽ᵏ⁾.
# On orthonormal or simplex features the labels wᵀv_n are exchangeable, F = a(L)·I + b(L)·11ᵀ, b
# cancels in M, and M(L) = a(L)·M₁; the single-index class L·φ(wᵀx) has M ∝ L² on any features.
# There L only rescales the loss (as f → λf, η → λ²η), so flat and sharp differ by a loss scale and
# nothing else.  Random unit vectors break that symmetry.
C5_SETTING = {"task.kind": "frequency", "task.L": None, "features.kind": "random-unit", "features.K": 4,
              "features.d": 4, "features.seed": 0, "features.matrix": None}
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

    Returns
    -------
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
            pr = Problem.from_config(self.ctx.cfg.with_overrides({**C5_SETTING, "task.L": factor * self.L_star}))
            system = pr.system()
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
    L_star = _threshold_L(ctx, {k: v for k, v in C5_SETTING.items() if k != "task.L"})
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
        "accepted": "each protocol's levels (table), within " + _bounds([min(ctx.c5_levels), max(ctx.c5_levels)]),
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
    c = ctx.base_constants
    out = {"problem": f"{ctx.base.function_class.describe()}, {ctx.base.features.kind} features"}
    for name, f in zip(("flat", "sharp"), C5_L_FACTORS):
        pr = problem_with(ctx.cfg, task__L=f * ctx.threshold / (c.Delta * c.delta))
        system = pr.system()
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


def claim_c6(ctx):
    c = ctx.base_constants
    results, fits = {}, {}
    eps = np.geomspace(1e-1, 1e-6, 11)
    for name, factor in (("flat", 0.3), ("sharp", 3.0)):
        pr = problem_with(ctx.cfg, task__L=factor * ctx.threshold / (c.Delta * c.delta))
        tr = flow_to_convergence(pr, stop_rel=1e-7)
        times = [crossing_time(tr.t, tr.loss / tr.loss[0], e) for e in eps]
        results[name] = (tr, times)
        late = [(1 / e, t) for e, t in zip(eps, times) if e <= 1e-3 and t]
        fits[name] = power_law([x for x, _ in late], [t for _, t in late])
    numbers = {"relative_loss_levels": eps.tolist(), **{f"t_{k}": v[1] for k, v in results.items()},
               **{f"fit_{k}": asdict(f) for k, f in fits.items()}}
    reached = all(all(t is not None for t in v[1]) for v in results.values())
    windows = [
        deciding_window("exponent of time against 1/ε", {k: f.exponent for k, f in fits.items()}, (0.8, 1.2), (0.9, 1.1),
                        "'polynomial' read as the derived late law ℒ ≈ C/t, time ∝ 1/ε; ±0.2 leaves room for the "
                        "approach to it over ε = 1e-3…1e-6", "narrowed around 1"),
        deciding_window("R² of the power law", {k: f.r2 for k, f in fits.items()}, (0.99, None), (0.995, None),
                        "a power law is a straight line on log-log axes; curvature (an exponential, a log factor) "
                        "lowers R²", "the cutoff moved halfway to 1"),
    ]
    verdict = _judged(numbers, windows, lambda ok: _all_pass({**ok, "every level reached": reached}))
    reason = ("Both regimes reach a relative loss of 1e-6; the time to relative loss ε grows like "
              + " and ".join(f"ε^-{f.exponent:.3f} ({k}, CI {f.ci95[0]:.3f}–{f.ci95[1]:.3f})" for k, f in fits.items())
              + ": polynomial, matching the derived late law ℒ ≈ C/t.")
    choices = ["the setting: the base problem at L = 0.3·L* and 3·L*, L* = c*/(Δδ₀), as C5 (one on each side of the "
               "threshold), flows until the loss is 1e-7 of its initial value",
               "the accuracy: the loss relative to its initial value, 11 levels log-spaced from 1e-1 to 1e-6, so both "
               "regimes are measured on one scale",
               "the fit: the levels ε ≤ 1e-3, past the fast phase, where the late law applies"]
    fig = figures.time_to_accuracy(ctx.fig("C6"), eps, {k: v[1] for k, v in results.items()})
    return Verdict("C6", "Near-zero loss in polynomial time in both regimes.", verdict, reason, numbers, fig, choices=choices)


def claim_c7(ctx):
    cases = {"random-unit K=6 d=4": problem_with(ctx.cfg, features__kind="random-unit", features__K=6, features__d=4, features__seed=1),
             "imbalanced p": problem_with(ctx.cfg, prompt__p=[0.55] + [0.45 / (ctx.base.K - 1)] * (ctx.base.K - 1))}
    flows = {"base": ctx.base_flow, **{name: flow_to_convergence(pr) for name, pr in cases.items()}}
    finals, slopes = {}, {}
    for name, tr in flows.items():
        finals[name] = float(np.diagonal(tr.final_attention).min())
        slopes[name] = _late_slope(tr.t, 1 - tr.target_attention.min(axis=1))
    g = np.array([1.0, -1.0] * (ctx.base.K // 2) + [1.0] * (ctx.base.K % 2))
    deg = problem_with(ctx.cfg, task__kind="finite", task__functions=[g.tolist(), (-g).tolist()], task__L=None)
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
    verdict = _judged(numbers, windows, _all_pass)
    reason = ("In every non-degenerate case the attention gap 1 − min_k A_kk decays like "
              + ", ".join(f"t^{sl:.3f}" for sl in slopes.values())
              + f" (derived: t^-1/2) and is below {1 - min(finals.values()):.1e} when the runs stop at relative loss 1e-8. "
              f"The reviewer's degenerate class (one fixed sign pattern) is flagged and its attention stays at "
              f"{degenerate:.3f}: non-degeneracy is needed, as model.md §3 says.")
    choices = ["the cases: the base problem, random unit features K = 6 > d = 4 (seed 1), and p = 0.55 on one feature: "
               "non-orthonormal features and an imbalanced prompt, each breaking one symmetry of the base problem; flows "
               "until the loss is 1e-8 of its initial value",
               "the degenerate class: two functions ±g with g = (1, −1, 1, −1, …), run to t = 1e7 or relative loss 1e-12; "
               "reported, not judged (the claim assumes non-degeneracy)"]
    return Verdict("C7", "At convergence each query attends to the tokens of its own feature.", verdict,
                   reason, numbers, figures_degenerate, choices=choices)


def claim_c8(ctx):
    cases = {"simplex K=4 linear σ=0.5": dict(features__kind="simplex", features__K=4, features__d=3, task__kind="linear", task__sigma=0.5),
             "simplex K=4 linear σ=2": dict(features__kind="simplex", features__K=4, features__d=3, task__kind="linear", task__sigma=2.0),
             "random-unit K=5 d=3 linear": dict(features__kind="random-unit", features__K=5, features__d=3, features__seed=2, task__kind="linear"),
             "random-unit K=4 d=8 linear": dict(features__kind="random-unit", features__K=4, features__d=8, features__seed=3, task__kind="linear")}
    out = {}
    for name, kw in cases.items():
        tr = flow_to_convergence(problem_with(ctx.cfg, **kw), stop_rel=1e-6)
        out[name] = {"final_min_target_attention": float(np.diagonal(tr.final_attention).min()),
                     "relative_loss": float(tr.loss[-1] / tr.loss[0]), "two_phases": phase_boundary(tr.t, tr.loss) is not None,
                     "two_phases_with_band_halved": phase_boundary(tr.t, tr.loss, tol=BOUNDARY_TOLERANCE / 2) is not None}
    # The claim is about convergence (C6, C7); whether a separate fast phase shows (C1) is reported, not judged.
    # The runs stop at relative loss 1e-6 (an event, met to within its interpolation): reaching it is not a window.
    reached = all(v["relative_loss"] <= 1.01e-6 for v in out.values())
    windows = [deciding_window("final min target attention", {k: v["final_min_target_attention"] for k, v in out.items()},
                               (0.99, None), (0.995, None),
                               "every query on its own feature at relative loss 1e-6, where the gap is a few 1e-3 at most",
                               "the cutoff moved halfway to 1")]
    numbers = dict(out)
    verdict = _judged(numbers, windows, lambda ok: _all_pass({**ok, "relative loss 1e-6 reached": reached}))
    reason = ("Non-orthonormal features (simplex, random unit vectors, K > d and K < d) with linear tasks all reach "
              "relative loss 1e-6 with every query on its own feature: "
              + "; ".join(f"{k}: attention {v['final_min_target_attention']:.4f}" for k, v in out.items())
              + ". Finding: a fast phase steeper than t^-1.25 is detected on "
              + ", ".join(k for k, v in out.items() if v["two_phases"]) + " but not on "
              + (", ".join(k for k, v in out.items() if not v["two_phases"]) or "none")
              + " (close random features converge in a drawn-out transition).")
    choices = ["the cases: the simplex (K = 4 in d = 3) with linear tasks of σ = 0.5 and 2, random unit features with K > d "
               "(5 in 3) and K < d (4 in 8): non-orthonormal features of both kinds and two scales of linear function",
               "the runs: flows until the loss is 1e-6 of its initial value",
               f"a separate fast phase (C1's test: a loss slope below t^{-1 - BOUNDARY_TOLERANCE:g}): reported, not judged; "
               "with the band around t^-1 halved it is detected on "
               + (", ".join(k for k, v in out.items() if v["two_phases_with_band_halved"]) or "none")]
    return Verdict("C8", "The results hold without orthonormal features, and for all non-constant linear functions.",
                   verdict, reason, numbers, choices=choices)


def orthonormal_linear(ctx, K=4, p="uniform"):
    """The predecessor paper's setting: orthonormal features, linear task with σ = 1."""
    return Problem.from_config(ctx.cfg.with_overrides({"features.kind": "orthonormal", "features.K": K, "features.d": K,
                                                       "features.matrix": None, "task.kind": "linear", "task.sigma": 1.0,
                                                       "task.L": None, "prompt.p": p}))


def claim_h1(ctx):
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
    verdict = _judged(numbers, windows, lambda ok: _all_pass({**ok, "relative loss 1e-8 reached": reached}))
    choices = ["the setting: the predecessor paper's, orthonormal features K = d = 4, linear task σ = 1, uniform p, "
               "gradient flow until the loss is 1e-8 of its initial value ('near-zero error')"]
    return Verdict("H1", "Balanced features (linear task, orthonormal): two phases to near-zero error.", verdict,
                   f"One fast phase (count {n_fast}) then the 1/t phase; relative loss {relative:.1e}, "
                   f"min target attention {final:.5f}.", numbers, ctx.balanced_imbalanced_figure, choices=choices)


def claim_h2(ctx):
    tr = ctx.imbalanced_flow
    times = per_query_times(tr, 0.9)
    n_fast = fast_phases(tr.t, tr.loss)
    balanced = per_query_times(ctx.balanced_flow, 0.9)
    dominant = int(np.argmax(ctx.imbalanced_p))
    others = [t for k, t in enumerate(times) if k != dominant]
    first = times[dominant] is not None and all(t is None or times[dominant] < t for t in others)
    # Phases of convergence: groups of queries whose attention reaches 0.9 at times a factor > 2 apart.
    groups = attention_phases(times)
    numbers = {"p": ctx.imbalanced_p, "t_attention_0.9_per_query": times, "attention_phases": groups,
               "attention_phases_balanced": attention_phases(balanced), "fast_phases_in_loss": n_fast}
    more = lambda gap: attention_phases(times, gap) > attention_phases(balanced, gap)  # noqa: E731
    windows = [deciding_window("separation of two phases of convergence (ratio of 0.9-crossing times)",
                               {"imbalanced": times, "balanced": balanced}, (2.0, None), (4.0, None),
                               "queries with equal p cross at the same time; a factor 2 (a third of a decade of time) "
                               "tells distinct phases apart and ignores small spreads",
                               "stricter: the separation doubled in log (factor 4)",
                               passes=more(2.0), passes_halved=more(4.0))]
    verdict = _judged(numbers, windows, lambda ok: (PASS if ok[windows[0]["name"]] else INCONCLUSIVE) if first else FAIL)
    choices = [f"the setting: H1's (orthonormal, K = 4, linear σ = 1, flow to relative loss 1e-8) with p = {ctx.imbalanced_p}: "
               "one dominant feature, the others equal",
               "convergence of a query: its own attention A_kk reaches 0.9, above every starting value p_k, so the "
               "dominant query (starting at 0.7) is timed too",
               "'first': the dominant query's 0.9-crossing strictly before every other's",
               "'more phases': more groups of crossing times than with balanced p, not separate drops of the loss "
               "(counted as well, with C1's test)"]
    return Verdict("H2", "Imbalanced features: the dominant feature converges first, the others later through more phases.",
                   verdict, f"p = {ctx.imbalanced_p}: time for each query's attention to reach 0.9: "
                            + ", ".join(f"{t:.3g}" if t else "never" for t in times)
                            + f" (dominant {'first' if first else 'not first'}); {groups} phases of convergence against "
                            f"{attention_phases(balanced)} with balanced p. The loss shows {n_fast} fast phase(s): the later "
                            "phase is visible in the attention of the under-represented queries, not as a separate drop of the loss.",
                   numbers, ctx.balanced_imbalanced_figure, choices=choices)


def claim_h3(ctx):
    Ks = ctx.K_values
    t_att, t_eps = [], []
    for K in Ks:
        tr = flow_to_convergence(orthonormal_linear(ctx, K=K), stop_rel=1e-3)
        # Attention 0.9, not 1/2: with K = 2 and uniform p the attention starts at 1/2.
        t_att.append(max(per_query_times(tr, 0.9)))
        t_eps.append(crossing_time(tr.t, tr.loss / tr.loss[0], 1e-2))
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
    verdict = _judged(numbers, windows, lambda ok: _all_pass({**ok, "power law fits better": fit.r2 >= r2_exp}))
    reason = (f"Orthonormal linear task, K = {list(Ks)}: the time for every query's attention to reach 0.9 grows like "
              f"K^{fit.exponent:.3f} (CI {fit.ci95[0]:.3f}–{fit.ci95[1]:.3f}, R² = {fit.r2:.4f}); an exponential in K "
              f"fits with R² = {r2_exp:.4f}.")
    fig = figures.time_against_K(ctx.fig("H3"), Ks, {"attention 0.9": t_att, "relative loss 1e-2": t_eps})
    choices = [f"the setting: orthonormal features, linear task σ = 1, uniform p, K = {list(Ks)} (d = K), flows until the "
               "loss is 1e-3 of its initial value",
               "the time to converge: every query's attention at 0.9 (1/2 is where K = 2 starts); the time to relative "
               "loss 1e-2 is reported beside it",
               "the alternative: an exponential in K, log t fitted linear in K; the verdict compares the two R²"]
    return Verdict("H3", "The time to converge grows polynomially in K.", verdict, reason, numbers, fig, choices=choices)


CLAIMS = {"C1": claim_c1, "C2": claim_c2, "C3": claim_c3, "C4": claim_c4, "C5": claim_c5, "C6": claim_c6,
          "C7": claim_c7, "C8": claim_c8, "H1": claim_h1, "H2": claim_h2, "H3": claim_h3}


@dataclass
class Context:
    cfg: object
    out: Path
    quick: bool = False
    progress: bool = True

    def __post_init__(self):
        self.base = Problem.from_config(self.cfg)
        self.base_constants = self.base.constants()
        self.threshold = self.cfg.regime.threshold
        self.decades = 3.0 if self.quick else 4.0
        self.points = 9 if self.quick else 21
        self.eta_factors = (0.5, 2.0, 8.0, 32.0, 128.0)
        self.gd_steps = 3000 if self.quick else 20000
        self.gd_steps_long = 20000 if self.quick else 200000
        # C5: loss levels in half decades (the smallest within reach of the automatic step), the GD
        # budget, and the L sweep from flat to sharp (multiples of L*; it holds the flat and sharp pair).
        self.c5_levels = tuple(10.0 ** -np.arange(1.0, (4.0 if self.quick else 4.5) + 0.01, 0.5))
        self.c5_steps = 50000 if self.quick else 200000
        self.c5_L_factors = (0.1, 0.3, 0.6, 1.6, 3.0, 10.0) if self.quick else (0.03, 0.1, 0.3, 0.6, 1.6, 3.0, 10.0, 30.0)
        self.K_values = (2, 3, 4, 6, 8) if self.quick else (2, 3, 4, 6, 8, 12, 16)
        self.imbalanced_p = [0.7, 0.1, 0.1, 0.1]
        self.sweeps = {}
        (self.out / "figures").mkdir(parents=True, exist_ok=True)

    # Flows several claims share, integrated once.
    @cached_property
    def base_flow(self):
        return flow_to_convergence(self.base)

    @cached_property
    def balanced_flow(self):
        return flow_to_convergence(orthonormal_linear(self))

    @cached_property
    def imbalanced_flow(self):
        return flow_to_convergence(orthonormal_linear(self, p=self.imbalanced_p))

    # H1 and H2 share one figure; whichever runs first draws it, so a subset links no missing file.
    @cached_property
    def balanced_imbalanced_figure(self):
        return figures.balanced_imbalanced(self.fig("H1_H2"), self.balanced_flow, self.imbalanced_flow)

    def fig(self, name):
        return self.out / "figures" / f"{name}.png"

    def oscillation_map(self, rows, factors=(0.5, 1.0, 4.0, 16.0, 64.0, 256.0, 1024.0)):
        """For each L: the step sizes tried, whether GD converged and how many oscillations it showed."""
        out = []
        for r in rows[:: max(1, len(rows) // 5)]:
            pr = problem_with(self.cfg, task__L=r["L"])
            s = pr.system()
            for f in factors:
                gd = iterate_gd(s, pr.S0, f * r["stable_step"], 2000, n_out=20)
                out.append({"L": r["L"], "eta": f * r["stable_step"],
                            "converged": bool(gd.success and gd.loss[-1] < 1e-2 * gd.loss[0]),
                            "oscillations": gd.counters["max_oscillations_per_feature"]})
        return out


def check(cfg, out_dir, quick=False, claims=None, progress=True):
    """Run the protocols; write ``report.md``, ``report.json`` and figures; return the verdicts."""
    K = len(cfg.features.matrix) if cfg.features.matrix else cfg.features.K
    if K < 3:
        # At K = 2 from S = 0 the target attention starts at 1/2: t_half is 0 and the phase
        # and regime protocols (C1, C3, H1–H3 …) have nothing to measure.
        raise AttnflowError("features.K", "check needs K ≥ 3: at K = 2 the target attention starts at 1/2, "
                                          "so the transition times it measures are all 0")
    out = prepare_out_dir(out_dir)              # a bad --out fails before any work
    ctx = Context(cfg, out, quick, progress)
    verdicts = []
    names = claims or list(CLAIMS)
    with progress_bar("claims", progress) as report:
        for i, name in enumerate(names):
            v = CLAIMS[name](ctx)
            # Every threshold that decides the verdict is a free choice too: named with its window and why.
            v.choices = v.choices + [f"{w['name']}: {_bounds(w['accepted'])}; why: {w['why']}" for w in v.numbers.get("windows", [])]
            if v.figure is not None:
                v.figure = str(Path(v.figure).name)
            verdicts.append(v)
            if report:
                report((i + 1) / len(names))
    write_report(out, cfg, ctx, verdicts)
    return verdicts


def _bounds(window):
    """A window's bounds as text: "≥ lo", "≤ hi" or "lo to hi" (text as it is)."""
    if not isinstance(window, (list, tuple)):
        return str(window)
    lo, hi = window
    return f"≤ {hi:.4g}" if lo is None else (f"≥ {lo:.4g}" if hi is None else f"{lo:.4g} to {hi:.4g}")


def _short(x):
    """A measured number, or a dict or list of them, as short text."""
    if isinstance(x, dict):
        return ", ".join(f"{k}: {_short(v)}" for k, v in x.items())
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_short(v) for v in x) + "]"
    return f"{x:.5g}" if isinstance(x, float) else str(x)


def _window_lines(v):
    """Markdown: the verdict with every deciding window halved, then each window alone."""
    windows = v.numbers.get("windows", [])
    if not windows:
        return []
    lines = ["", f"With the window halved: {v.numbers['verdict_with_window_halved']}"
             + (" (every deciding window at once; each alone below)" if len(windows) > 1 else "")]
    lines += [f"- {w['name']}: {_bounds(w['accepted'])}, halved {_bounds(w['halved'])} ({w['halving']}); measured "
              f"{_short(w['measured'])}; verdict with this window halved: {w['verdict_with_this_window_halved']}"
              for w in windows]
    return lines


def write_report(out, cfg, ctx, verdicts):
    c = ctx.base_constants
    data = {"versions": versions(), "config": cfg.raw, "quick": ctx.quick,
            "base": {"L": c.L, "Delta": c.Delta, "delta": c.delta, "L_Delta_delta": c.L_Delta_delta, "regime": c.regime},
            "verdicts": [asdict(v) for v in verdicts]}
    dump_json(out / "report.json", data)
    lines = ["# attnflow check", "",
             f"Base problem: K = {ctx.base.K}, {ctx.base.features.kind} features, {ctx.base.function_class.describe()}; "
             f"LΔδ = {c.L_Delta_delta:.3g} ({c.regime}). Large prompts (N = ∞), merged parameters. "
             f"{'Quick grids (CI).' if ctx.quick else 'Full grids.'}",
             "", "Δ, δ and the threshold c* are this project's reconstruction (model.md §3); claims marked † depend on them.",
             "", "| claim | verdict | with the windows halved | statement |", "|---|---|---|---|"]
    lines += [f"| {v.claim}{' †' if v.reconstructed else ''} | **{v.verdict}** | "
              f"{v.numbers.get('verdict_with_window_halved', '–')} | {v.statement} |" for v in verdicts]
    for v in verdicts:
        lines += ["", f"## {v.claim}: {v.verdict}", "", f"*{v.statement}*", "", v.reason]
        if v.details:
            lines += [""] + v.details
        if v.choices:
            lines += ["", "Free choices the paper does not fix:"] + [f"- {c}" for c in v.choices]
        lines += _window_lines(v)
        if v.figure:
            lines += ["", f"![{v.claim}](figures/{v.figure})"]
    write_text(out / "report.md", "\n".join(lines) + "\n")
