"""Sweeps on a Dask cluster: the same table as a local sweep, and a worker killed mid-sweep
loses no point and writes none twice (a real LocalCluster of two worker processes)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from attnflow.dynamics.cli import main
from attnflow.dynamics.commands.sweep import sweep
from attnflow.dynamics.errors import AttnflowError
from attnflow.dynamics.problem import config

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")

# LSODA points (not the compiled ensemble): chunks of a few points that take a moment each,
# so there is time to kill a worker while chunks are still running.
BASE = config.loads('[features]\nK = 3\n[training]\nmethod = "LSODA"\nt_end = 1e5\nn_out = 60\n')
PARAMS = [("task.L", [0.2, 0.5, 1.0, 2.0, 5.0, 10.0]), ("task.link", ["sin", "tanh", "relu", "erf"])]


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as c:
        yield c


@pytest.fixture(scope="module")
def local_table(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "sweep"
    sweep(BASE, PARAMS, out, jobs=1, progress=False)
    return (out / "table.csv").read_text()


def _recorded_indices(out):
    indices = []
    for path in (out / "points").glob("*.json"):
        indices += [r["index"] for r in json.loads(path.read_text())["records"]]
    return indices


def test_a_cluster_sweep_equals_the_local_one(cluster, local_table, tmp_path):
    out = tmp_path / "dask"
    rows = sweep(BASE, PARAMS, out, progress=False, scheduler=cluster.scheduler_address)
    assert len(rows) == 24
    assert (out / "table.csv").read_text() == local_table
    assert sorted(_recorded_indices(out)) == list(range(24))
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["scheduler"] == cluster.scheduler_address and provenance["jobs"] == 2


def test_a_worker_killed_mid_sweep_loses_nothing(cluster, local_table, tmp_path):
    out = tmp_path / "killed"
    with distributed.Client(cluster.scheduler_address) as client:
        pids = list(client.run(os.getpid).values())
    result = {}
    thread = threading.Thread(target=lambda: result.update(
        rows=sweep(BASE, PARAMS, out, progress=False, scheduler=cluster.scheduler_address)))
    thread.start()
    deadline = time.monotonic() + 120
    while not (out / "points").exists() or not list((out / "points").glob("*.json")):
        assert time.monotonic() < deadline, "no chunk finished in two minutes"
        time.sleep(0.05)
    os.kill(pids[0], signal.SIGKILL)           # a worker dies while chunks are still queued or running
    assert len(_recorded_indices(out)) < 24, "the sweep had finished before the kill"
    thread.join(timeout=600)
    assert not thread.is_alive()
    assert len(result["rows"]) == 24
    indices = _recorded_indices(out)
    assert sorted(indices) == list(range(24)), "every point exactly once"
    assert (out / "table.csv").read_text() == local_table


def test_an_unreachable_scheduler_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("")
    code = main(["sweep", str(cfg), "--param", "task.L=1,2", "--out", str(tmp_path / "o"),
                 "--scheduler", "tcp://127.0.0.1:9", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --scheduler: cannot reach a Dask scheduler at 'tcp://127.0.0.1:9'")
    assert err.count("\n") == 1


def test_a_malformed_scheduler_address_is_one_line_and_nothing_else(tmp_path):
    """Checked before any Client exists: a half-built Client would print a traceback at exit."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("")
    out = subprocess.run([sys.executable, "-m", "attnflow", "sweep", str(cfg), "--param", "task.L=1,2", "--out",
                          str(tmp_path / "o"), "--scheduler", "not an address", "--quiet"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.startswith("error: --scheduler: expected a scheduler address such as tcp://HOST:8786, "
                                 "got 'not an address'") and out.stderr.count("\n") == 1, out.stderr


def test_without_the_extra_the_error_names_it(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_distributed(name, *args, **kwargs):
        if name == "distributed" or name.startswith("distributed."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_distributed)
    from attnflow.dynamics.commands.distributed import client_for
    with pytest.raises(AttnflowError, match=r'^--scheduler: needs dask.distributed, an optional extra: '
                                            r'pip install "attnflow\[dask\]"$'):
        client_for("tcp://127.0.0.1:8786")
