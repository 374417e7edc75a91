"""Sweeps: determinism, resuming, failures recorded, parameter parsing."""

import json
import signal

import pytest

from attnflow.dynamics.problem import config
from attnflow.dynamics.commands import sweep as sweep_module
from attnflow.dynamics.cli import main
from attnflow.dynamics.errors import AttnflowError, Interrupted
from attnflow.dynamics.commands.sweep import grid, parse_param, read_table, sweep

BASE = config.loads('[features]\nkind = "simplex"\nK = 3\nd = 2\n[training]\nmode = "both"\nsteps = 3000\n'
                    't_end = 1e5\nn_out = 60\n')
PARAMS = [("task.L", [0.2, 1.0, 5.0]), ("task.link", ["sin", "tanh"])]


def test_parse_param_forms():
    field, values = parse_param("task.L=0.1:100:log:4")
    assert field == "task.L" and values == pytest.approx([0.1, 1.0, 10.0, 100.0])
    assert parse_param("training.eta=1:2:lin:3")[1] == pytest.approx([1.0, 1.5, 2.0])
    assert parse_param("task.link=sin,relu")[1] == ["sin", "relu"]
    assert parse_param("features.K=2,3")[1] == [2, 3]
    for bad in ("task.L", "L=1:2:log:3", "task.L=0:1:log:3", "task.L=1:2:cubic:3", "task.L=a:2:log:3"):
        with pytest.raises(AttnflowError):
            parse_param(bad)
    assert grid(PARAMS)[1] == {"task.L": 0.2, "task.link": "tanh"}


def test_interrupted_and_resumed_sweep_equals_an_uninterrupted_one(tmp_path):
    whole = sweep(BASE, PARAMS, tmp_path / "whole", jobs=1, progress=False)
    part = sweep(BASE, PARAMS, tmp_path / "resumed", jobs=1, progress=False, limit=2)   # "interrupted"
    assert len(part) == 2
    resumed = sweep(BASE, PARAMS, tmp_path / "resumed", jobs=2, progress=False)
    assert resumed == whole
    assert (tmp_path / "whole" / "table.csv").read_text() == (tmp_path / "resumed" / "table.csv").read_text()
    prov = json.loads((tmp_path / "resumed" / "provenance.json").read_text())
    assert prov["completed"] == 6 and prov["failed"] == 0 and prov["solver"]["method"] == "auto"
    assert {"numpy", "scipy", "numba", "sympy"} <= set(prov["versions"])


def test_ctrl_c_in_a_serial_sweep_keeps_the_finished_points(tmp_path, monkeypatch):
    """A real SIGINT while the third point runs (jobs = 1; a small sweep runs a point per
    chunk): two points saved, table and provenance written, Interrupted raised; the rerun
    gives the uninterrupted table."""
    # Python's own Ctrl-C handler, as in a terminal: a test run started in the background
    # (or under nohup) inherits SIGINT ignored, and then no KeyboardInterrupt would come.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    run_chunk, calls, handler = sweep_module._run_chunk, [], signal.getsignal(signal.SIGINT)

    def ctrl_c_during_the_third_point(args):
        assert len(args[1]) == 1
        calls.append(args[1][0][0])
        if len(calls) == 3:
            signal.raise_signal(signal.SIGINT)       # KeyboardInterrupt inside the point's work
        return run_chunk(args)

    monkeypatch.setattr(sweep_module, "_run_chunk", ctrl_c_during_the_third_point)
    out = tmp_path / "s"
    with pytest.raises(Interrupted, match=r"^interrupted: 2 of 6 points done; rerun the same command to resume$"):
        sweep(BASE, PARAMS, out, jobs=1, progress=False)
    assert len(read_table(out / "table.csv")) == 2 and len(list((out / "points").glob("*.json"))) == 2
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["interrupted"] and prov["completed"] == 2 and prov["points"] == 6
    assert signal.getsignal(signal.SIGINT) is handler                         # restored
    monkeypatch.undo()
    signal.signal(signal.SIGINT, previous)
    resumed = sweep(BASE, PARAMS, out, jobs=1, progress=False)
    assert resumed == sweep(BASE, PARAMS, tmp_path / "whole", jobs=1, progress=False)
    assert (out / "table.csv").read_bytes() == (tmp_path / "whole" / "table.csv").read_bytes()


def test_parallel_sweep_is_deterministic(tmp_path):
    a = sweep(BASE, PARAMS, tmp_path / "a", jobs=2, progress=False)
    b = sweep(BASE, PARAMS, tmp_path / "b", jobs=1, progress=False)
    assert a == b
    rows = read_table(tmp_path / "a" / "table.csv")
    assert [r["param:task.L"] for r in rows] == [0.2, 0.2, 1.0, 1.0, 5.0, 5.0]
    # Scaling symmetry across the grid: t_half · L² is the same for every L of one link.
    sin = [r for r in rows if r["param:task.link"] == "sin"]
    products = [r["flow:t_half"] * r["L"] ** 2 for r in sin]
    assert max(products) == pytest.approx(min(products), rel=1e-5)


def test_failing_points_are_recorded_and_the_sweep_goes_on(tmp_path):
    # η = 0.5 would end its 3000 steps far from convergence (status max_steps); 5 converges.
    params = [("training.eta", [5.0, 1e6]), ("prompt.p", [[0.5, 0.3, 0.2]])]
    rows = sweep(BASE.with_overrides({"features.kind": "random-unit", "features.seed": 1}), params,
                 tmp_path / "s", jobs=1, progress=False)
    assert rows[0]["status"] == "ok"
    assert rows[1]["status"] != "ok" and rows[1]["gd:status"] in ("score-limit", "not-converging", "non-finite")
    bad = sweep(BASE, [("features.K", [3, 5])], tmp_path / "k", jobs=1, progress=False)
    assert bad[0]["status"] == "ok"
    assert bad[1]["status"] == "error" and "features.d" in bad[1]["message"]     # simplex K = 5 needs d ≥ 4


def test_sweep_refuses_a_different_grid_in_the_same_directory(tmp_path):
    sweep(BASE, PARAMS[:1], tmp_path, jobs=1, progress=False)
    with pytest.raises(AttnflowError, match="holds a different sweep"):
        sweep(BASE, PARAMS, tmp_path, jobs=1, progress=False)


def test_sweep_command(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[features]\nkind = "orthonormal"\nK = 3\n[task]\nkind = "linear"\n[training]\nt_end = 1e4\n')
    assert main(["sweep", str(cfg), "--param", "task.sigma=0.5:2:log:3", "--out", str(tmp_path / "o"),
                 "--quiet", "--jobs", "1"]) == 0
    assert "3 points (0 not ok)" in capsys.readouterr().out
    assert main(["sweep", str(cfg), "--param", "task.sigma=-1,1", "--out", str(tmp_path / "p")]) == 2
    assert "task.sigma: expected a number > 0" in capsys.readouterr().err


COMPILED_FLOW = BASE.with_overrides({"training.mode": "flow", "training.method": "DOP853-compiled",
                                     "training.t_end": 1e4})
COMPILED_PARAMS = [("features.K", [3, 5]), ("task.L", [0.2, 1.0, 5.0]), ("training.stop_loss", [0.0, 1e-3])]


GD = BASE.with_overrides({"training.mode": "gd", "training.steps": 2000})
FINITE_N = [("features.K", [3]), ("task.L", [0.2, 5.0]), ("prompt.N", [4])]


def _counted_ensembles(monkeypatch):
    """Patch the sweep's two ensembles to record ``(which, problems)`` of every call."""
    calls = []
    for name in ("integrate_flow_ensemble", "iterate_gd_ensemble"):
        def counted(systems, *args, _ensemble=getattr(sweep_module, name), _name=name, **options):
            calls.append((_name.split("_")[0], len(systems)))
            return _ensemble(systems, *args, **options)
        monkeypatch.setattr(sweep_module, name, counted)
    return calls


@pytest.mark.parametrize("cfg, params, expected", [
    (COMPILED_FLOW, COMPILED_PARAMS, [("integrate", 3)] * 2),
    (GD, COMPILED_PARAMS, [("iterate", 3)] * 2),
    (GD.with_overrides({"training.eta": 300.0}), COMPILED_PARAMS[1:], [("iterate", 3)] * 2),  # saturated, score-limit
    (BASE, COMPILED_PARAMS, [("integrate", 3), ("iterate", 3)] * 2),          # "both", method "auto"
    (BASE, FINITE_N, []),                                  # "auto" at a finite prompt: the stiff flow, alone
    (COMPILED_FLOW.with_overrides({"training.method": "Rodas4P2-compiled"}), COMPILED_PARAMS[1:], []),
], ids=["flow", "gd", "gd-diverging", "both-auto", "auto-stiff-alone", "rodas-alone"])
def test_compiled_points_run_as_ensembles_and_give_the_rows_of_point_row(monkeypatch, cfg, params, expected):
    """A chunk's points that compiled loops on the scores solve (GD, the DOP853 flow, both) run as
    one ensemble per training section; every row equals the row of the point run alone through solve
    (bit for bit), failures included; a flow by another method runs alone."""
    calls = _counted_ensembles(monkeypatch)
    chunk = list(enumerate(grid(params)))
    records = sweep_module.chunk_records(cfg, chunk)
    assert calls == expected                  # K = 3, one ensemble per stop_loss; K = 5 fails (simplex in d = 2)
    assert [r["index"] for r in records] == list(range(len(chunk)))
    for (index, overrides), record in zip(chunk, records):
        row, _ = sweep_module.point_row(cfg, overrides)
        assert list(record["row"]) == list(row)
        for key, value in row.items():         # equal, NaN (a diverged run's final loss) included, and of one type
            assert type(record["row"][key]) is type(value), key
            assert record["row"][key] == value or (value != value and record["row"][key] != record["row"][key]), key
    statuses = [r["row"]["status"] for r in records]
    if cfg.training.eta == 300.0:
        assert {"ok", "saturated", "score-limit"} <= set(statuses), statuses
    elif params is COMPILED_PARAMS:
        assert statuses[:6] == ["ok"] * 6 and statuses[6:] == ["error"] * 6
        kinds = ["flow"] * (cfg.training.mode != "gd") + ["gd"] * (cfg.training.mode != "flow")
        for kind in kinds:
            assert {r["row"][f"{kind}:status"] for r in records[:6]} == {"finished", "stop_loss"}


def test_a_chunked_compiled_sweep_resumes_to_the_uninterrupted_table(tmp_path):
    params = [("task.L", [0.2 * 1.5 ** i for i in range(12)]), ("task.link", ["sin", "tanh"])]    # 24 points
    whole = sweep(COMPILED_FLOW, params, tmp_path / "whole", jobs=1, progress=False)
    assert len(list((tmp_path / "whole" / "points").glob("*.json"))) == 8       # chunks of 3
    sweep(COMPILED_FLOW, params, tmp_path / "resumed", jobs=1, progress=False, limit=7)      # "interrupted"
    resumed = sweep(COMPILED_FLOW, params, tmp_path / "resumed", jobs=2, progress=False)
    assert resumed == whole and all(r["status"] == "ok" for r in whole)
    assert (tmp_path / "whole" / "table.csv").read_bytes() == (tmp_path / "resumed" / "table.csv").read_bytes()
