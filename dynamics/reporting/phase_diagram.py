"""Two-parameter phase diagrams from a sweep table: a heatmap with the regime boundary.

The grid is read back from the table's ``param:FIELD`` columns, so any two swept
configuration fields work as axes and any numeric column as the colour.  The
boundary ``LΔδ = c*`` is the level-c* contour of the table's ``L_Delta_delta``
column over the same grid (drawn only where the grid crosses it).  Beside the
heatmap, z against x for each y, with the scaling the model predicts exactly where
there is one: a task whose moments scale as ``F ∝ L²`` (linear and single-index
classes) has ``S_L(t) = S_1(L² t)``, so every crossing time scales as ``L⁻²``
(``docs/model.md`` §4).

Examples
--------
>>> rows = [{"param:task.L": L, "param:features.K": K, "flow:t_half": K * L, "L_Delta_delta": L}
...         for K in (3, 4) for L in (0.1, 1.0, 10.0)]
>>> diagram = grid_of(rows, "task.L", "features.K", "flow:t_half")
>>> diagram.x.tolist(), diagram.y.tolist()
([0.1, 1.0, 10.0], [3, 4])
>>> diagram.z[1].tolist()
[0.4, 4.0, 40.0]
"""

import math
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from ..errors import AttnflowError  # noqa: E402
from ..files import write_png  # noqa: E402
from .tables import columns_of  # noqa: E402

# Crossing-time columns: the quantities the exact L⁻² law applies to.
TIME_COLUMNS = ("t_half", "t_attention_", "t_loss_", "t_boundary")


@dataclass(frozen=True)
class PhaseGrid:
    """A z column on the (y, x) grid of a sweep: ``z[i, j]`` at ``y[i]``, ``x[j]`` (NaN: no value)."""

    x_field: str
    y_field: str
    z_column: str
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    boundary: np.ndarray          # LΔδ on the same grid (NaN where unknown)


def resolve_column(rows, name):
    """The table column ``name`` names: itself, or the one column ending in ``:name``.

    ``t_half`` → ``flow:t_half``; the flow's when both flow and GD have it.
    """
    columns = columns_of(rows)
    if name in columns:
        return name
    matches = [c for c in columns if c.endswith(":" + name)]
    if len(matches) > 1 and f"flow:{name}" in matches:
        return f"flow:{name}"
    if len(matches) == 1:
        return matches[0]
    numeric = [c for c in columns if not c.startswith("param:") and any(
        isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool) for r in rows)]
    raise AttnflowError("--z", f"no column {name!r} in the sweep table; numeric columns: {', '.join(numeric)}")


def _number(value):
    if value is None or isinstance(value, bool) or value == "":
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _axis_values(rows, field):
    values = []
    for row in rows:
        v = row.get(f"param:{field}")
        if v not in values:
            values.append(v)
    try:
        return np.array(sorted(values, key=float))
    except (TypeError, ValueError):
        return np.array(values, dtype=object)


def grid_of(rows, x_field, y_field, z):
    """The :class:`PhaseGrid` of column ``z`` over two swept fields of a sweep's rows."""
    for field in (x_field, y_field):
        if not rows or f"param:{field}" not in rows[0]:
            raise AttnflowError(field, "is not a swept field of this table (no param:" + field + " column)")
    z_column = resolve_column(rows, z)
    x, y = _axis_values(rows, x_field), _axis_values(rows, y_field)
    xi = {v: j for j, v in enumerate(x.tolist())}
    yi = {v: i for i, v in enumerate(y.tolist())}
    Z = np.full((len(y), len(x)), np.nan)
    B = np.full((len(y), len(x)), np.nan)
    for row in rows:
        i, j = yi[row[f"param:{y_field}"]], xi[row[f"param:{x_field}"]]
        Z[i, j] = _number(row.get(z_column))
        B[i, j] = _number(row.get("L_Delta_delta"))
    return PhaseGrid(x_field, y_field, z_column, x, y, Z, B)


def _log_spaced(values):
    v = np.asarray(values)
    return v.dtype != object and len(v) > 2 and np.all(v > 0) and v.max() / v.min() >= 20


def _edges(values, log):
    """Cell edges around the grid values (geometric midpoints on a log axis)."""
    v = np.asarray(values, dtype=float)
    if len(v) == 1:
        return np.array([v[0] / 2, v[0] * 2]) if log else np.array([v[0] - 0.5, v[0] + 0.5])
    if log:
        mid = np.sqrt(v[1:] * v[:-1])
        return np.concatenate([[v[0] ** 2 / mid[0]], mid, [v[-1] ** 2 / mid[-1]]])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]])


def predicted_exponent(grid, task_kind):
    """The exact exponent of z in x, or None: −2 for crossing times in task.L when F ∝ L²."""
    is_time = any(grid.z_column.split(":")[-1].startswith(t) for t in TIME_COLUMNS)
    if grid.x_field == "task.L" and is_time and task_kind in ("linear", "single-index"):
        return -2.0
    return None


def plot_phase_diagram(path, grid, threshold, task_kind=None, title=None):
    """Draw the heatmap (left) and z against x for each y (right) to ``path`` (PNG, atomically).

    Parameters
    ----------
    path : the PNG to write.
    grid : a :class:`PhaseGrid`.
    threshold : the regime constant c*; the boundary is the contour LΔδ = c*.
    task_kind : the base configuration's ``task.kind`` (for the predicted scaling).
    title : the figure's title.

    Returns
    -------
    dict
        What was drawn: ``boundary_drawn`` (bool), ``predicted_exponent`` (or None),
        ``log_x``, ``log_y``, ``log_z``.
    """
    numeric_x = grid.x.dtype != object
    numeric_y = grid.y.dtype != object
    log_x, log_y = _log_spaced(grid.x), _log_spaced(grid.y)
    finite = grid.z[np.isfinite(grid.z)]
    log_z = finite.size > 0 and np.all(finite > 0) and finite.max() / finite.min() >= 100
    fig, (ax, side) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1.2, 1]})
    xs = grid.x.astype(float) if numeric_x else np.arange(len(grid.x), dtype=float)
    ys = grid.y.astype(float) if numeric_y else np.arange(len(grid.y), dtype=float)
    mesh = ax.pcolormesh(_edges(xs, log_x), _edges(ys, log_y), np.ma.masked_invalid(grid.z), shading="flat",
                         cmap="viridis", norm=LogNorm() if log_z else None)
    fig.colorbar(mesh, ax=ax, label=grid.z_column)
    ax.set_xscale("log" if log_x else "linear")
    ax.set_yscale("log" if log_y else "linear")
    # Few values on a linear axis (K = 2, 4, 8, or names): a tick at each.
    if not log_x and len(xs) <= 12:
        ax.set_xticks(xs, [str(v) for v in grid.x])
    if not log_y and len(ys) <= 12:
        ax.set_yticks(ys, [str(v) for v in grid.y])
    ax.set_xlabel(grid.x_field)
    ax.set_ylabel(grid.y_field)
    boundary_drawn = False
    B = grid.boundary
    if len(xs) > 1 and len(ys) > 1 and np.isfinite(B).all() and B.min() < threshold < B.max():
        ax.contour(xs, ys, B, levels=[threshold], colors="white", linewidths=2.0, linestyles="--")
        ax.plot([], [], color="white", ls="--", label=f"LΔδ = c* = {threshold:g}")
        ax.legend(loc="best", fontsize=8, facecolor="0.3", labelcolor="white")
        boundary_drawn = True
    exponent = predicted_exponent(grid, task_kind) if numeric_x else None
    for i, yv in enumerate(grid.y):
        keep = np.isfinite(grid.z[i]) & ((grid.z[i] > 0) if log_z else True)
        side.plot(xs[keep], grid.z[i][keep], marker="o", ms=3, label=f"{grid.y_field} = {yv}")
        if exponent is not None and keep.any():
            j = np.flatnonzero(keep)[len(np.flatnonzero(keep)) // 2]
            guide = grid.z[i][j] * (xs[keep] / xs[j]) ** exponent
            side.plot(xs[keep], guide, color="black", ls=":", lw=1.2, zorder=3)
    if exponent is not None:
        side.plot([], [], color="black", ls=":", label=f"exact law ∝ L^{exponent:g} (F ∝ L²), through the middle point")
    side.set_xscale("log" if log_x else "linear")
    side.set_yscale("log" if log_z else "linear")
    side.set_xlabel(grid.x_field)
    side.set_ylabel(grid.z_column)
    side.grid(True, alpha=0.3)
    side.legend(fontsize=7, loc="best")
    if not boundary_drawn:
        ax.set_title("the regime boundary LΔδ = c* lies outside this grid", fontsize=9)
    fig.suptitle(title or f"{grid.z_column} over {grid.x_field} × {grid.y_field}")
    fig.tight_layout()
    write_png(path, fig, dpi=130)
    plt.close(fig)
    return {"boundary_drawn": boundary_drawn, "predicted_exponent": exponent, "log_x": bool(log_x),
            "log_y": bool(log_y), "log_z": bool(log_z)}
