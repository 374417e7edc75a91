"""Figures: loss and attention against time on log axes (matplotlib, Agg backend)."""

import matplotlib


matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..files import write_png

_STYLE = {"flow": {"ls": "-", "lw": 1.8}, "gd": {"ls": "--", "lw": 1.4}}
_NAMES = {"flow": "gradient flow", "gd": "gradient descent"}


def positive_times(t, *ys):
    """Keep the points with t > 0 (log axes): ``(t, *ys)`` restricted alike."""
    keep = np.asarray(t) > 0
    return (np.asarray(t)[keep],) + tuple(np.asarray(y)[keep] for y in ys)


def draw_loss(ax, trajectories, color=None):
    """Draw the loss of each trajectory against t on log-log axes.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    trajectories : dict
        ``"flow"`` / ``"gd"`` → Trajectory (GD is drawn against η · iteration).
    color : str, optional
        One colour for every line; matplotlib's cycle when None.
    """
    training_set = False
    for kind, tr in trajectories.items():
        t, loss = positive_times(tr.t, tr.loss)
        if tr.population_loss is None:
            ax.loglog(t, np.maximum(loss, 1e-300), color=color, label=_NAMES[kind], **_STYLE[kind])
            continue
        # A finite training set: its loss, and the population loss of the same scores, fainter.
        training_set = True
        line, = ax.loglog(t, np.maximum(loss, 1e-300), color=color, label=f"{_NAMES[kind]}, training",
                          **_STYLE[kind])
        t, population = positive_times(tr.t, tr.population_loss)
        ax.loglog(t, np.maximum(population, 1e-300), color=line.get_color(), alpha=0.5,
                  label=f"{_NAMES[kind]}, population", **_STYLE[kind])
    ax.set_xlabel("time t  (GD: η · iteration)")
    ax.set_ylabel("training and population loss" if training_set else "population loss")
    ax.grid(True, which="major", alpha=0.3)


def draw_attention(ax, trajectories, color=None):
    """The worst query's target attention gap 1 − min_k A_kk, and the largest irrelevant attention."""
    for kind, tr in trajectories.items():
        t, gap, irrelevant = positive_times(tr.t, 1 - tr.target_attention.min(axis=1), tr.irrelevant_attention)
        ax.loglog(t, np.maximum(gap, 1e-300), color=color, label=f"1 − min_k A_kk ({_NAMES[kind]})",
                  **_STYLE[kind])
        ax.loglog(t, np.maximum(irrelevant, 1e-300), color=color, alpha=0.5,
                  label=f"max irrelevant A_nk ({_NAMES[kind]})", ls=":" if kind == "flow" else "-.")
    ax.set_xlabel("time t  (GD: η · iteration)")
    ax.set_ylabel("attention")
    ax.grid(True, which="major", alpha=0.3)


# Up to this many queries each gets its own curve, colour (C0–C9) and legend entry; beyond it the
# colours would repeat and the legend outgrow the figure, so the queries are summarised.
MAX_QUERY_CURVES = 10


def draw_per_query(ax, t, target, label=True, color="C0", suffix="", **style):
    """Each query's target attention ``target[:, k]`` against ``t`` on a log axis.

    For K > :data:`MAX_QUERY_CURVES` the spread over the queries instead: the median and
    the min–max band, in ``color``, with two legend entries ending in ``suffix``.
    ``label`` says whether the per-query curves (small K) get legend entries.
    """
    K = target.shape[1]
    if K <= MAX_QUERY_CURVES:
        for k in range(K):
            ax.semilogx(t, target[:, k], color=f"C{k}", label=f"query {k + 1}" if label else None, **style)
        return
    ax.fill_between(t, target.min(axis=1), target.max(axis=1), color=color, alpha=0.18, lw=0,
                    label=f"min–max over {K} queries{suffix}")
    ax.semilogx(t, np.median(target, axis=1), color=color, label=f"median over queries{suffix}", **style)


def draw_target(ax, trajectories):
    """Each query's attention on its own feature (linear y, log t); summarised for large K."""
    for i, (kind, tr) in enumerate(trajectories.items()):
        t, target = positive_times(tr.t, tr.target_attention)
        suffix = f" ({_NAMES[kind]})" if len(trajectories) > 1 else ""
        draw_per_query(ax, t, target, label=kind == "flow" or len(trajectories) == 1, color=f"C{i}",
                       suffix=suffix, **_STYLE[kind])
    ax.axhline(0.5, color="0.6", lw=0.8)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("time t  (GD: η · iteration)")
    ax.set_ylabel("target attention A_kk")
    ax.grid(True, which="major", alpha=0.3)


def plot_run(out_dir, trajectories, title=""):
    """Write ``loss.png`` and ``attention.png`` for one run.

    Parameters
    ----------
    out_dir : str or Path
        The run's output directory.
    trajectories : dict
        ``"flow"`` / ``"gd"`` → Trajectory.
    title : str
        Drawn above both figures.
    """
    fig, ax = plt.subplots(figsize=(5.5, 4))
    draw_loss(ax, trajectories)
    ax.legend()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    write_png(f"{out_dir}/loss.png", fig, dpi=150)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    draw_target(axes[0], trajectories)
    axes[0].legend(fontsize=8)
    draw_attention(axes[1], trajectories)
    axes[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    write_png(f"{out_dir}/attention.png", fig, dpi=150)
    plt.close(fig)


def plot_comparison(path, runs, xlabel_iterations=False):
    """Side-by-side panels, one column per labelled run: ``runs = {label: trajectories}``."""
    fig, axes = plt.subplots(2, len(runs), figsize=(5.2 * len(runs), 7.5), squeeze=False)
    for col, (label, trajectories) in enumerate(runs.items()):
        draw_loss(axes[0, col], trajectories)
        axes[0, col].set_title(label, fontsize=10)
        axes[0, col].legend(fontsize=8)
        draw_attention(axes[1, col], trajectories)
        axes[1, col].legend(fontsize=7)
    fig.tight_layout()
    write_png(path, fig, dpi=150)
    plt.close(fig)
