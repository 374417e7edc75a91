"""``attnflow phase-diagram``: a two-parameter sweep drawn as a heatmap with the regime boundary.

``phase_diagram(cfg, x, y, z, out_dir)`` runs the grid of the two fields through
:func:`~attnflow.dynamics.commands.sweep.sweep` (so it runs in parallel, resumes, and
reuses a finished sweep in the same directory), then writes ``phase_diagram.png``
and ``phase_diagram.json`` (the axes, the z matrix and what was drawn) beside the
sweep's own files.  :func:`phase_diagram_from_table` draws from an existing sweep
directory instead, without running anything.
"""

import json
from pathlib import Path

import numpy as np

from ..errors import AttnflowError
from ..files import dump_json, prepare_out_dir
from ..problem import config
from ..reporting.phase_diagram import grid_of, plot_phase_diagram
from .sweep import read_table, sweep


def _draw(out, rows, x_field, y_field, z, threshold, task_kind, source):
    grid = grid_of(rows, x_field, y_field, z)
    drawn = plot_phase_diagram(out / "phase_diagram.png", grid, threshold, task_kind)
    as_list = lambda a: [v if isinstance(v, str) else float(v) for v in a.tolist()]  # noqa: E731
    dump_json(out / "phase_diagram.json", {
        "x": {"field": x_field, "values": as_list(grid.x)}, "y": {"field": y_field, "values": as_list(grid.y)},
        "z": {"column": grid.z_column, "values": [[None if np.isnan(v) else float(v) for v in row] for row in grid.z]},
        "threshold": threshold, "source": source, **drawn})
    return grid


def phase_diagram(cfg, x, y, z, out_dir, jobs=None, progress=True, scheduler=None):
    """Run the (y, x) grid and draw column ``z``; return the :class:`PhaseGrid`.

    Parameters
    ----------
    cfg : Config
        The base configuration.
    x, y : (field, values)
        The swept fields, as :func:`~attnflow.dynamics.commands.sweep.parse_param` returns them.
    z : str
        A column of the sweep table (``t_half`` resolves to ``flow:t_half``).
    out_dir : path
        The sweep directory; rerunning resumes, and a finished sweep is only drawn.
    jobs, progress, scheduler
        As for :func:`~attnflow.dynamics.commands.sweep.sweep`.
    """
    if x[0] == y[0]:
        raise AttnflowError("--y", f"{y[0]} is also --x; give two different fields")
    rows = sweep(cfg, [y, x], out_dir, jobs=jobs, progress=progress, scheduler=scheduler)
    return _draw(Path(out_dir), rows, x[0], y[0], z, cfg.regime.threshold, cfg.task.kind, "sweep")


def phase_diagram_from_table(sweep_dir, x_field, y_field, z, out_dir=None):
    """Draw column ``z`` of a finished sweep over two of its swept fields (nothing runs).

    Every other swept field must have a single value in the table.
    """
    sweep_dir = Path(sweep_dir)
    spec_path, table_path = sweep_dir / "sweep.json", sweep_dir / "table.csv"
    if not table_path.is_file() or not spec_path.is_file():
        raise AttnflowError("--from", f"{sweep_dir} is not a sweep directory (no table.csv and sweep.json)")
    spec = json.loads(spec_path.read_text())
    swept = {field: values for field, values in spec["params"]}
    for field in (x_field, y_field):
        if field not in swept:
            raise AttnflowError(field, f"was not swept in {sweep_dir} (swept: {', '.join(swept)})")
    others = [f for f, values in swept.items() if f not in (x_field, y_field) and len(values) > 1]
    if others:
        raise AttnflowError("--from", f"the sweep also varies {', '.join(others)}; a phase diagram has two axes")
    cfg = config.from_dict(spec["base_config"])
    out = prepare_out_dir(out_dir) if out_dir is not None else sweep_dir
    return _draw(out, read_table(table_path), x_field, y_field, z, cfg.regime.threshold, cfg.task.kind,
                 str(sweep_dir))
