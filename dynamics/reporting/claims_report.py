"""The report of ``attnflow check``: report.md and report.json, verdict by verdict."""

import math
from dataclasses import asdict

from ..analysis.claims.verdicts import bounds
from ..files import dump_json, write_text
from .summary import versions


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
    lines += [f"- {w['name']}: {bounds(w['accepted'])}, halved {bounds(w['halved'])} ({w['halving']}); measured "
              f"{_short(w['measured'])}; verdict with this window halved: {w['verdict_with_this_window_halved']}"
              for w in windows]
    return lines


def _prompt(problem):
    if math.isinf(problem.N):
        return "large prompts (N = ∞)"
    return f"prompts of N = {int(problem.N)} tokens" + (" with the query in the softmax" if problem.include_query else "")


def write_report(out, cfg, ctx, verdicts):
    """Write ``report.json`` and ``report.md``: every verdict with its reason, numbers, windows and figure.

    Parameters
    ----------
    out : Path
        The output directory.
    cfg : Config
        The configuration (echoed in the report).
    ctx : Context
        The shared context (base problem and its constants, quick or full).
    verdicts : list of Verdict
        In report order.
    """
    c = ctx.base_constants
    note = "; ".join(ctx.notes) or None
    data = {"versions": versions(), "config": cfg.raw, "quick": ctx.quick,
            "model": {"system": f"score system, {_prompt(ctx.base)}, merged parameters, no noise",
                      "note": note},
            "base": {"L": c.L, "Delta": c.Delta, "delta": c.delta, "L_Delta_delta": c.L_Delta_delta, "regime": c.regime},
            "verdicts": [asdict(v) for v in verdicts]}
    dump_json(out / "report.json", data)
    lines = ["# attnflow check", "",
             f"Base problem: K = {ctx.base.K}, {ctx.base.features.kind} features, {ctx.base.function_class.describe()}; "
             f"LΔδ = {c.L_Delta_delta:.3g} ({c.regime}). The score system: {_prompt(ctx.base)}, merged "
             f"parameters, no noise. {'Quick grids (CI).' if ctx.quick else 'Full grids.'}",
             *(["", f"Note: {note}."] if note else []),
             "", "Δ, δ and the threshold c* are this project's reconstruction (docs/model.md §11); claims marked † depend on them.",
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
