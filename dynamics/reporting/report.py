"""Short human-readable reports of runs (plain text that is also valid Markdown)."""


def _fmt(x):
    return "never" if x is None else f"{x:.4g}"


def trajectory_lines(name, s):
    """Return the report's lines on one trajectory.

    Parameters
    ----------
    name : str
        Its label, e.g. ``"gradient flow"``.
    s : dict
        Its summary (:func:`attnflow.dynamics.reporting.summary.trajectory_summary`).

    Returns
    -------
    list of str
    """
    lines = [f"- {name}: {s['status']} ({s['message']}), t_final = {_fmt(s['t_final'])}, "
             f"final loss = {s['final_loss']:.3e}"]
    lines.append(f"  - target attention reaches 1/2 at t = {_fmt(s['t_half'])}"
                 + (f" (iteration {s['iterations_half']})" if "iterations_half" in s and s["iterations_half"] is not None else ""))
    for (eps, ta), tl in zip(s["t_attention_eps"].items(), s["t_loss_eps"].values()):
        lines.append(f"  - ε = {eps}: attention ≥ 1 − ε at t = {_fmt(ta)}, loss ≤ ε at t = {_fmt(tl)}")
    diag = [s["final_attention"][k][k] for k in range(len(s["final_attention"]))]
    lines.append("  - final target attention A_kk: " + ", ".join(f"{a:.6f}" for a in diag))
    counters = ", ".join(f"{k} = {v}" for k, v in s["counters"].items())
    lines.append(f"  - counters: {counters}; wall time {s['wall_time_s']:.3g} s")
    return lines


def run_report(summary, heading=None):
    """Return the report of one run: problem, constants and regime, each trajectory, kernels.

    Parameters
    ----------
    summary : dict
        The run's summary (what ``summary.json`` holds).
    heading : str, optional
        The Markdown heading; ``"attnflow run"`` when None.

    Returns
    -------
    str
        Plain text that is also valid Markdown.
    """
    p = summary["problem"]
    c = summary["constants"]
    lines = [f"## {heading}" if heading else "## attnflow run", ""]
    lines.append(f"- problem: K = {p['K']}, d = {p['d']}, {p['features']} features, {p['task']}; "
                 f"F by {p['F_method']} (error ≤ {p['F_error']:.1e}); initial loss {p['initial_loss']:.4g}")
    lines.append(f"- L = {c['L']:.4g} ({c['L_source']}), Δ = {c['Delta']:.4g}, δ = {c['delta']:.4g}, "
                 f"LΔδ = {c['L_Delta_delta']:.4g} → **{c['regime']}** (threshold c* = {c['threshold']:g}; "
                 f"reconstructed: {', '.join(c['reconstructed'])})")
    if "finite_prompt" in summary:
        fp = summary["finite_prompt"]
        how = (f"exact sum over {fp['count_vectors']:,} count vectors" if "count_vectors" in fp else
               f"exact expectation, quadrature error ≤ {fp['quadrature_error_at_end']:.1e}")
        lines.append(f"- prompts of N = {fp['N']} tokens ({how}); probability that a query's feature is missing: "
                     + ", ".join(f"{x:.3g}" for x in fp["missing_query_probability"]))
    if "heads" in summary:
        hs = summary["heads"]
        index = "; ".join(f"{kind} {hs[kind]['specialisation_at_start']:.3g} → {hs[kind]['specialisation_at_end']:.3g}"
                          for kind in ("flow", "gd") if kind in hs)
        lines.append(f"- {hs['H']} heads, outputs averaged: attention below is their mean; specialisation index "
                     f"(0: the heads attend alike) at the start → the end: {index}")
    if "training_set" in summary:
        ts = summary["training_set"]
        runs = [(name, ts[kind]) for name, kind in (("flow", "flow"), ("GD", "gd")) if kind in ts]
        lines.append(f"- trained on a finite set of M = {ts['prompts']} prompts (the losses below are training "
                     "losses); at the end " + "; ".join(
                         f"{name}: population loss {r['final_population_loss']:.4g}, generalisation gap "
                         f"{r['generalization_gap']:.3g}" for name, r in runs))
    if not c["nondegenerate"]:
        lines.append(f"- warning: the class is degenerate (smallest off-target eigenvalue of M⁽ᵏ⁾ = "
                     f"{c['min_offtarget_eigenvalue']:.3g}): attention need not concentrate")
    if "flow" in summary:
        lines += trajectory_lines("gradient flow", summary["flow"])
    if "gd" in summary:
        g = summary["gd"]
        lines.append(f"- gradient descent with η = {g['eta']:.4g} ({g['eta_source']}; "
                     f"stable step at start {g['stable_step_at_start']:.4g})")
        lines += trajectory_lines("gradient descent", g)
    k = summary["kernels"]
    lines.append(f"- kernels: {k['set']} ({'generated now in ' + format(k['generation_time_s'], '.3g') + ' s, ' if k['generated_now'] else ''}"
                 f"compile or cache load {k['compile_time_s']:.3g} s); total {summary['wall_time_s']:.3g} s")
    return "\n".join(lines)
