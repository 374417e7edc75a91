"""Tidy sweep tables (Parquet) and two-parameter phase diagrams drawn from a real sweep."""

import json
import math

import numpy as np
import pytest

from attnflow.dynamics.cli import main
from attnflow.dynamics.commands.phase_diagram import phase_diagram, phase_diagram_from_table
from attnflow.dynamics.commands.sweep import read_table
from attnflow.dynamics.problem import config
from attnflow.dynamics.reporting.tables import load_table, read_provenance

BASE = config.loads('[features]\nK = 3\n[training]\nt_end = 1e4\nn_out = 40\n')
X = ("task.L", [0.3, 1.0, 3.0])
Y = ("features.K", [3, 4])


@pytest.fixture(scope="module")
def diagram(tmp_path_factory):
    out = tmp_path_factory.mktemp("pd") / "sweep"
    grid = phase_diagram(BASE, X, Y, "t_half", out, jobs=1, progress=False)
    return out, grid


def _same(a, b):
    """Equal values, None ≡ NaN ≡ a missing cell."""
    a = math.nan if a is None else a
    b = math.nan if b is None else b
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def test_parquet_round_trips_the_csv_values_with_provenance(diagram):
    out, _ = diagram
    csv_rows = read_table(out / "table.csv")
    frame = load_table(out / "table.parquet")
    assert list(frame.columns) == list(csv_rows[0])
    assert len(frame) == len(csv_rows) == 6
    for i, row in enumerate(csv_rows):
        for column, value in row.items():
            cell = frame[column].iloc[i]
            cell = cell.item() if hasattr(cell, "item") else cell
            assert _same(cell, value), (i, column, cell, value)
    provenance = read_provenance(out / "table.parquet")
    assert provenance == json.loads((out / "provenance.json").read_text())
    assert load_table(out).equals(frame)                        # a directory reads its Parquet table


def test_phase_diagram_z_values_are_the_sweeps(diagram):
    out, grid = diagram
    assert (out / "phase_diagram.png").stat().st_size > 10_000
    drawn = json.loads((out / "phase_diagram.json").read_text())
    assert drawn["z"]["column"] == "flow:t_half" and drawn["x"]["values"] == X[1] and drawn["y"]["values"] == Y[1]
    rows = read_table(out / "table.csv")
    for row in rows:
        i, j = Y[1].index(row["param:features.K"]), X[1].index(row["param:task.L"])
        assert drawn["z"]["values"][i][j] == row["flow:t_half"] == grid.z[i, j]
    # The linear task's moments scale as L², so t_half scales as L⁻² exactly: the law drawn.
    assert drawn["predicted_exponent"] == -2.0
    np.testing.assert_allclose(grid.z[:, 0] / grid.z[:, -1], (X[1][-1] / X[1][0]) ** 2, rtol=1e-5)
    # LΔδ grows with L: the grid 0.3 … 3 crosses c* = 1 at every K, so the boundary is drawn.
    assert drawn["boundary_drawn"] is True


def test_phase_diagram_from_a_finished_sweep_runs_nothing(diagram, tmp_path):
    out, grid = diagram
    again = phase_diagram_from_table(out, "task.L", "features.K", "final_loss", tmp_path / "redrawn")
    assert again.z_column == "flow:final_loss" and (tmp_path / "redrawn" / "phase_diagram.png").exists()
    assert sorted(p.name for p in (tmp_path / "redrawn").iterdir()) == ["phase_diagram.json", "phase_diagram.png"]


def test_phase_diagram_errors_are_one_line(diagram, tmp_path, capsys):
    out, _ = diagram
    cases = [
        (["--from", str(out), "--x", "task.L", "--y", "features.K", "--z", "nope"], "error: --z: no column 'nope'"),
        (["--from", str(out), "--x", "task.L", "--y", "task.link", "--z", "t_half"], "error: task.link: was not swept"),
        (["--from", str(tmp_path), "--x", "task.L", "--y", "features.K", "--z", "t_half"],
         "error: --from: " + str(tmp_path) + " is not a sweep directory"),
    ]
    cfg = tmp_path / "c.toml"
    cfg.write_text("")
    cases += [
        ([str(cfg), "--x", "task.L=0:1:log:3", "--y", "features.K=3,4", "--z", "t_half", "--out", str(tmp_path / "a")],
         "error: --x: task.L: expected LO:HI:log:N"),
        ([str(cfg), "--x", "task.L=1,2", "--y", "task.L=3,4", "--z", "t_half", "--out", str(tmp_path / "b")],
         "error: --param: task.L given more than once"),
        ([str(cfg), "--x", "task.L=1,2", "--y", "features.K=3,4", "--z", "t_half"], "error: phase-diagram: needs CONFIG"),
    ]
    for argv, expected in cases:
        assert main(["phase-diagram", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(expected) and err.count("\n") == 1, err
