"""Publication figures for the claims and the paper's settings (matplotlib, Agg, log axes).

Each function takes computed data, writes one PNG and returns its path.  The
scripts in ``examples/`` and ``attnflow check`` both call them.
"""

import matplotlib


matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..files import write_png
from .plots import draw_per_query, positive_times

plt.rcParams.update({"figure.dpi": 150, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3,
                     "axes.spines.top": False, "axes.spines.right": False})


def _save(fig, path):
    fig.tight_layout()
    write_png(path, fig)
    plt.close(fig)
    return path


def two_phases(path, tr, boundary):
    """Draw C1's figure: loss and worst target attention against t, the phase boundary and t_half marked.

    Every function here takes the PNG's ``path`` first, draws one figure and returns ``path``.
    """
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    t, loss, target = positive_times(tr.t, tr.loss, tr.target_attention.min(axis=1))
    a.loglog(t, loss, color="C0")
    a.set(xlabel="time t", ylabel="population loss", title="loss")
    b.semilogx(t, target, color="C1")
    b.set(xlabel="time t", ylabel="min_k A_kk", title="target attention", ylim=(0, 1.02))
    for ax in (a, b):
        if boundary:
            ax.axvline(boundary, color="0.4", ls="--", lw=0.8, label="fast/slow boundary")
        if tr.crossings["t_half"]:
            ax.axvline(tr.crossings["t_half"], color="C3", ls=":", lw=0.8, label="attention 1/2")
    if b.get_legend_handles_labels()[0]:                   # no marker drawn: no (empty) legend
        b.legend(fontsize=7)
    return _save(fig, path)


def irrelevant_attention(path, flow, gd=None, pair=None, gd_flow=None, label=""):
    """Draw C2's figure: the flow's late decay and, when given, an oscillating GD run beside its loss.

    Parameters
    ----------
    path : Path
        The PNG to write.
    flow : Trajectory
        The base problem's flow (irrelevant attention and loss against t, log-log).
    gd, pair, gd_flow, label : optional
        As in :func:`oscillating_attention`: the two panels of the oscillation example.

    Returns
    -------
    Path
    """
    fig, axes = plt.subplots(1, 3 if gd is not None else 1, figsize=(13 if gd is not None else 4.5, 3.4),
                             squeeze=False)
    a = axes[0, 0]
    t, irr, loss = positive_times(flow.t, flow.irrelevant_attention, flow.loss)
    a.loglog(t, irr, label="max irrelevant A_nk")
    a.loglog(t, loss / loss[0], label="loss / initial loss")
    a.set(xlabel="time t", title="flow: late decay")
    a.legend(fontsize=7)
    if gd is not None:
        _draw_oscillation(axes[0, 1], axes[0, 2], gd, pair, gd_flow, label)
    return _save(fig, path)


def oscillating_attention(path, gd, pair, flow=None, label=""):
    """Draw an irrelevant attention against GD iterations beside the loss (the oscillation example).

    Parameters
    ----------
    path : Path
        The PNG to write.
    gd : Trajectory
        A GD run with every iteration recorded.
    pair : (int, int)
        ``(n, k)``: query k's attention to feature n is drawn.
    flow : Trajectory, optional
        The flow of the same problem, drawn against ``t / η`` (iterations).
    label : str, optional
        The setting, in the title.

    Returns
    -------
    Path
    """
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    _draw_oscillation(a, b, gd, pair, flow, label)
    return _save(fig, path)


def _draw_oscillation(a, b, gd, pair, flow, label):
    n, k = pair
    eta = gd.t[-1] / gd.iteration[-1] if gd.iteration[-1] > 0 else 1.0
    it = gd.iteration.astype(float)
    a.plot(it, gd.attention[:, n, k], "o-", ms=3, color="C2", label="GD")
    b.semilogy(it, gd.loss, "o-", ms=3, color="C2", label="GD")
    if flow is not None:
        keep = flow.t <= gd.t[-1]
        a.plot(flow.t[keep] / eta, flow.attention[keep, n, k], color="0.4", lw=1, label="flow (t / η)")
        b.semilogy(flow.t[keep] / eta, flow.loss[keep], color="0.4", lw=1, label="flow (t / η)")
    a.set(xlabel="GD iteration", ylabel=f"A[{n}, {k}]",
          title=f"query {k}'s attention to feature {n}" + (f"\n{label}" if label else ""))
    b.set(xlabel="GD iteration", ylabel="population loss", title="loss")
    for ax in (a, b):
        ax.title.set_fontsize(8)
        ax.legend(fontsize=7)


def phase_diagram(path, rows, L_star, title, gd_rows=None):
    """Draw transition times against L; flat and sharp shaded, threshold marked.

    Parameters
    ----------
    path : Path
        The PNG to write.
    rows : list of dict
        One per L: ``L`` and the flow's ``t_half`` and ``t_boundary`` (None: never).
    L_star : float
        The threshold L* between the regimes.
    title : str
    gd_rows : dict, optional
        Label → GD times (η · iterations), one per row.

    Returns
    -------
    Path
    """
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    L = np.array([r["L"] for r in rows])
    ax.axvspan(L.min() / 1.5, L_star, color="C0", alpha=0.08, label="flat (LΔδ < c*)")
    ax.axvspan(L_star, L.max() * 1.5, color="C3", alpha=0.08, label="sharp")
    ax.axvline(L_star, color="0.3", ls="--", lw=0.8)
    for key, style in (("t_half", "o-"), ("t_boundary", "s--")):
        y = [r.get(key) for r in rows]
        if any(v is not None for v in y):
            ax.loglog(L, [np.nan if v is None else v for v in y], style, ms=3, label=f"flow {key}")
    for key, label in ((gd_rows or {}).items()):
        ax.loglog(L, label, "^:", ms=3, label=f"GD {key} (η·iterations)")
    ax.set(xlabel="Lipschitz constant L", ylabel="time", title=title)
    ax.legend(fontsize=7)
    return _save(fig, path)


def step_size_against_L(path, rows, L_star, oscillation_map):
    """Draw C4's figure: the largest stable step against L, with the GD runs tried marked by outcome.

    Parameters
    ----------
    path : Path
        The PNG to write.
    rows : list of dict
        One per L: ``L`` and ``stable_step``.
    L_star : float
        The threshold L*.
    oscillation_map : list of dict
        From :meth:`Context.oscillation_map`: ``L``, ``eta``, ``converged``, ``oscillations``.

    Returns
    -------
    Path
    """
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    L = [r["L"] for r in rows]
    ax.loglog(L, [r["stable_step"] for r in rows], "k-", label="largest linearly stable η (2/λ_max at start)")
    for kind, marker, color in (("converged, no oscillation", "o", "C2"), ("converged, oscillating", "s", "C1"),
                                ("not converged", "x", "C3")):
        pts = [m for m in oscillation_map if
               (kind.startswith("not") and not m["converged"]) or
               (m["converged"] and kind.endswith("oscillating") and m["oscillations"] > 0) or
               (m["converged"] and kind.endswith("no oscillation") and m["oscillations"] == 0)]
        if pts:
            ax.scatter([m["L"] for m in pts], [m["eta"] for m in pts], marker=marker, color=color, s=14, label=f"GD: {kind}")
    ax.axvline(L_star, color="0.3", ls="--", lw=0.8)
    ax.set(xlabel="Lipschitz constant L", ylabel="step size η", title="step size against L")
    ax.legend(fontsize=6)
    return _save(fig, path)


def flat_and_sharp(path, runs, Ls, eta):
    """Draw the paper's Figure 1 setting: loss and attention against iterations, one η.

    Parameters
    ----------
    path : Path
        The PNG to write.
    runs : dict
        Label → GD trajectory.
    Ls : dict
        Label → L (in the legend).
    eta : float
        The shared step size (in the title).

    Returns
    -------
    Path
    """
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, gd in runs.items():
        it, loss, target = positive_times(gd.iteration.astype(float), gd.loss, gd.target_attention.min(axis=1))
        a.loglog(it, loss, label=f"{name} (L = {Ls[name]:.3g})")
        b.semilogx(it, target, label=name)
    a.set(xlabel="GD iteration", ylabel="population loss", title=f"one step size η = {eta:.3g}")
    b.set(xlabel="GD iteration", ylabel="min_k A_kk", ylim=(0, 1.02))
    a.legend(fontsize=7)
    return _save(fig, path)


def many_L(path, trajectories):
    """Draw the paper's Figure 4 setting: many L values overlaid.

    Parameters
    ----------
    path : Path
        The PNG to write.
    trajectories : dict
        L → trajectory; GD runs are drawn against iterations, flows against t.

    Returns
    -------
    Path
    """
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    cmap = plt.get_cmap("viridis")
    Ls = sorted(trajectories)
    for i, L in enumerate(Ls):
        tr = trajectories[L]
        x = tr.iteration.astype(float) if tr.iteration is not None else tr.t
        x, loss, target = positive_times(x, tr.loss, tr.target_attention.min(axis=1))
        color = cmap(i / max(1, len(Ls) - 1))
        a.loglog(x, loss, color=color, label=f"L = {L:.3g}")
        b.semilogx(x, target, color=color)
    xl = "GD iteration" if trajectories[Ls[0]].iteration is not None else "time t"
    a.set(xlabel=xl, ylabel="population loss")
    b.set(xlabel=xl, ylabel="min_k A_kk", ylim=(0, 1.02))
    a.legend(fontsize=6, ncol=2)
    return _save(fig, path)


def time_to_accuracy(path, eps, times):
    """Draw the time to reach each relative loss ε against 1/ε, one line per labelled run (``times``).

    Returns
    -------
    Path
    """
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name, t in times.items():
        ax.loglog(1 / np.asarray(eps), [np.nan if v is None else v for v in t], "o-", ms=3, label=name)
    ax.set(xlabel="1 / relative loss ε", ylabel="time to reach ε", title="time to accuracy")
    ax.legend(fontsize=7)
    return _save(fig, path)


def degenerate(path, runs):
    """Draw the worst target attention against t for a degenerate and a non-degenerate class (``runs``: label → trajectory).

    Returns
    -------
    Path
    """
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name, tr in runs.items():
        t, target = positive_times(tr.t, tr.target_attention.min(axis=1))
        ax.semilogx(t, target, label=name)
    ax.set(xlabel="time t", ylabel="min_k A_kk", ylim=(0, 1.02), title="degenerate vs non-degenerate class")
    ax.legend(fontsize=7)
    return _save(fig, path)


def balanced_imbalanced(path, balanced, imbalanced):
    """Draw H1's and H2's figure: each query's A_kk against t, balanced and imbalanced p side by side.

    Returns
    -------
    Path
    """
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, (name, tr) in zip(axes, (("balanced p", balanced), ("imbalanced p", imbalanced))):
        t, target = positive_times(tr.t, tr.target_attention)
        draw_per_query(ax, t, target)
        ax.set(xlabel="time t", title=f"linear task, orthonormal features, {name}", ylim=(0, 1.02))
    axes[0].set_ylabel("A_kk")
    axes[1].legend(fontsize=7)
    return _save(fig, path)


def time_against_K(path, Ks, series):
    """Draw H3's figure: times against the number of features K, one line per series (label → times).

    Returns
    -------
    Path
    """
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name, t in series.items():
        ax.loglog(Ks, [np.nan if v is None else v for v in t], "o-", ms=3, label=name)
    ax.set(xlabel="number of features K", ylabel="time", title="time against K")
    ax.legend(fontsize=7)
    return _save(fig, path)


def c5_protocols(path, protocols, Ls):
    """Draw C5's figure: iterations to each loss level for the flat and the sharp problem, per protocol.

    One panel per accuracy scale, one line style per step-size rule; a last panel
    shows, over the L sweep, the fastest L at each level.

    Parameters
    ----------
    path : Path
        The PNG to write.
    protocols : list of dict
        One per protocol (rule × scale), as C5 records them.
    Ls : dict
        ``{"flat": L, "sharp": L}``.

    Returns
    -------
    Path
    """
    scales = list(dict.fromkeys(p["accuracy_scale"] for p in protocols))
    rules = list(dict.fromkeys(p["step_rule"] for p in protocols))
    styles = ["o-", "s--", "^:", "d-."]
    fig, axes = plt.subplots(1, len(scales) + 1, figsize=(12, 3.9))
    for p in protocols:
        ax = axes[scales.index(p["accuracy_scale"])]
        style = styles[rules.index(p["step_rule"]) % len(styles)]
        for name, color in (("flat", "C0"), ("sharp", "C3")):
            its = np.array([np.nan if n is None else max(n, 0.8) for n in p[f"iterations_{name}"]], float)
            ax.loglog(p["levels"], its, style, ms=3, color=color,
                      label=f"{name} (L = {Ls[name]:.3g}), {p['step_rule']} η: {p['verdict']}")
    for ax, scale in zip(axes, scales):
        ax.invert_xaxis()
        ax.set(xlabel="loss level ε" + (" (× initial loss)" if scale == "relative" else ""),
               ylabel="iterations to reach it", title=f"{scale} accuracy")
        ax.legend(fontsize=5.5)
    ax = axes[-1]
    for k, p in enumerate(protocols):
        pts = [(f["level"], f["L_over_L_star"]) for f in p["sweep"]["fastest"] if f["L"]]
        if pts:
            x, y = zip(*pts)
            # A small vertical offset per protocol keeps coinciding lines apart.
            ax.loglog(x, np.asarray(y) * 1.06 ** (k - len(protocols) / 2), styles[rules.index(p["step_rule"]) % 4],
                      ms=3, color=f"C{k}", label=p["name"])
    ax.axhline(1.0, color="0.3", ls=":", lw=0.8)
    ax.invert_xaxis()
    ax.set(xlabel="loss level ε (absolute, or × initial loss)", ylabel="fastest L / L* over the L sweep",
           title="L sweep: sharp side above the line")
    ax.legend(fontsize=5.5)
    return _save(fig, path)
