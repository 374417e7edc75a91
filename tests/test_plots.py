"""Figures stay readable for many features: per-query curves up to K = 10, summaries beyond."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from attnflow.dynamics.reporting import figures
from attnflow.dynamics.reporting.plots import MAX_QUERY_CURVES, draw_target, plot_run
from attnflow.solvers import Trajectory


def _softmax_columns(y):
    S = y.reshape(int(round(np.sqrt(y.size))), -1)
    e = np.exp(S - S.max(axis=0))
    return e / e.sum(axis=0)


def _trajectories(K):
    """Synthetic flow and GD runs: query k's own score grows like c_k log(1 + t), each at its own rate."""
    t = np.concatenate([[0.0], np.geomspace(1e-2, 1e5, 120)])
    rates = np.linspace(0.5, 2.0, K)
    S = np.log1p(t)[:, None, None] * np.diag(rates)[None]
    loss = 1 / (1 + t)
    flow = Trajectory("flow", t, S, loss, _softmax_columns)
    gd = Trajectory("gd", t[::2], S[::2], loss[::2], _softmax_columns, iteration=np.arange(len(t[::2])))
    return {"flow": flow, "gd": gd}


def _legend_labels(ax):
    legend = ax.get_legend()
    return [] if legend is None else [text.get_text() for text in legend.get_texts()]


@pytest.mark.parametrize("K", [4, 48])
def test_target_attention_legend_fits_for_any_K(K):
    fig, ax = plt.subplots()
    draw_target(ax, _trajectories(K))
    ax.legend()
    labels = _legend_labels(ax)
    plt.close(fig)
    if K <= MAX_QUERY_CURVES:
        assert labels == [f"query {k + 1}" for k in range(K)]         # small K as before: one curve each
    else:
        assert 0 < len(labels) <= 4 and any(f"over {K} queries" in label for label in labels)


def test_plots_at_K_48_are_written_with_short_legends(tmp_path, monkeypatch):
    legends = []
    close = plt.close

    def record_then_close(fig):
        legends.extend(len(_legend_labels(ax)) for ax in fig.axes)
        close(fig)

    monkeypatch.setattr(plt, "close", record_then_close)
    trajectories = _trajectories(48)
    plot_run(tmp_path, trajectories, title="K = 48")
    figures.balanced_imbalanced(tmp_path / "bi.png", trajectories["flow"], trajectories["flow"])
    for name in ("loss.png", "attention.png", "bi.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    assert legends and max(legends) <= 10
