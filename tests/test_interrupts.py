"""Outputs survive interruption: atomic writes, Ctrl-C and kill -9 of `sweep` and `run`, the
sweep lock, and output directories that cannot be used.

The subprocess tests use a tiny grid (K = 3, a short flow) so that each takes seconds.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from attnflow.dynamics import files
from attnflow.dynamics.cli import main
from attnflow.dynamics.commands.sweep import _exclusive, read_table

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
CONFIG = '[features]\nkind = "simplex"\nK = 3\nd = 2\n[training]\nt_end = 1e3\nn_out = 20\n'
PARAMS = ["--param", "task.L=0.1:10:log:30", "--param", "task.link=sin,tanh"]     # 60 points


# --- write_atomic ------------------------------------------------------------------------------

def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    files.dump_json(path, {"a": 1})
    with pytest.raises(TypeError):
        files.dump_json(path, {"a": object()})            # serialisation fails
    with monkeypatch.context() as m:
        m.setattr(files.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(5, "Input/output error")))
        with pytest.raises(OSError):
            files.write_text(path, "x" * 100_000)            # fails after the temporary file was written
    with monkeypatch.context() as m:
        m.setattr(files.os, "replace", lambda a, b: (_ for _ in ()).throw(OSError(28, "No space left on device")))
        with pytest.raises(OSError):
            files.write_npz(path, x=np.arange(10))
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["summary.json"]


def test_atomic_files_have_ordinary_permissions_and_stale_temporaries_are_removed(tmp_path):
    files.write_text(tmp_path / "a.md", "text")
    (tmp_path / "ordinary").write_text("text")
    assert (tmp_path / "a.md").stat().st_mode == (tmp_path / "ordinary").stat().st_mode   # not mkstemp's 0600
    (tmp_path / "ordinary").unlink()
    for name in (".summary.json.abcd_123.tmp", ".loss.png.zz9yy8xx.tmp", ".other.txt.abcdefgh.tmp", ".notes.tmp"):
        (tmp_path / name).write_text("half")
    assert files.remove_stale_temps(tmp_path, ("summary.json", "loss.png")) == 2
    assert sorted(os.listdir(tmp_path)) == [".notes.tmp", ".other.txt.abcdefgh.tmp", "a.md"]


# --- output directories ------------------------------------------------------------------------

def _bad_outs(tmp_path):
    (tmp_path / "a-file").write_text("")
    return {str(tmp_path / "a-file"): "is a file, not a directory", "/proc/x": "/proc/x",
            "/dev/null/x": "Not a directory", "": "empty path"}


@pytest.mark.parametrize("command", ["run", "sweep", "check", "demo"])
def test_unusable_output_directories_are_one_line_errors(tmp_path, capsys, command):
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG)
    for out, message in _bad_outs(tmp_path).items():
        argv = {"run": ["run", str(cfg)], "check": ["check", str(cfg), "--claims", "C1"], "demo": ["demo"],
                "sweep": ["sweep", str(cfg), "--param", "task.L=1,2"]}[command]
        assert main(argv + ["--out", out, "--quiet"]) == 2, out
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: --out: ") and message in err, err


def test_derive_out_must_be_a_writable_file(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG)
    bad = {str(tmp_path): "is a directory, not a file", "/proc/x/d.md": "No such file or directory",
           "/dev/null/x": "/dev/null is a file, not a directory", "": "empty path"}
    for out, message in bad.items():
        assert main(["derive", str(cfg), "--out", out]) == 2, out
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: --out: ") and message in err, err


def test_sweep_jobs_must_be_positive(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG)
    for jobs in ("0", "-2"):
        assert main(["sweep", str(cfg), "--param", "task.L=1,2", "--out", str(tmp_path / "o"), "--jobs", jobs]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: --jobs: expected an integer ≥ 1, got {jobs}")


def test_a_second_sweep_into_a_locked_directory_is_refused(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / "o"
    out.mkdir()
    with _exclusive(out):                    # flock conflicts between two open files, even in one process
        assert main(["sweep", str(cfg), "--param", "task.L=1,2", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --out: {out} is in use by another sweep (pid {os.getpid()})\n"
    assert not (out / "table.csv").exists()
    assert main(["sweep", str(cfg), "--param", "task.L=1,2", "--out", str(out), "--quiet", "--jobs", "1"]) == 0


# --- sweep: Ctrl-C and kill -9 in a real process -----------------------------------------------

@pytest.fixture(scope="module")
def sweep_setup(tmp_path_factory):
    """The config file and the table of the same grid swept without interruption."""
    base = tmp_path_factory.mktemp("sweep")
    cfg = base / "c.toml"
    cfg.write_text(CONFIG)
    assert main(["sweep", str(cfg), *PARAMS, "--out", str(base / "whole"), "--jobs", "2", "--quiet"]) == 0
    return cfg, (base / "whole" / "table.csv").read_bytes()


def _start_sweep(cfg, out, stderr):
    # Standard error to a file, not a pipe: the workers share it, and waiting for a pipe's end
    # would wait for them.  SIGINT restored to its default: a shell may start background jobs
    # with it ignored.
    return subprocess.Popen([sys.executable, "-m", "attnflow", "sweep", str(cfg), *PARAMS, "--out", str(out),
                             "--jobs", "2", "--quiet"], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=stderr, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_points(proc, out, timeout=60):
    deadline = time.monotonic() + timeout
    while not list((out / "points").glob("*.json")):
        assert proc.poll() is None, "the sweep ended early"
        assert time.monotonic() < deadline, "no point finished"
        time.sleep(0.02)


def _children(pid):
    """Live child processes of ``pid`` (Linux /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] not in "ZX":
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except (OSError, IndexError):
        return False


def _check_outputs_whole(out):
    """Every file under its final name is complete; returns the finished point count (the
    records of the saved chunks)."""
    points = 0
    for p in sorted((out / "points").glob("*.json")):
        points += len(json.loads(p.read_text())["records"])
    json.loads((out / "sweep.json").read_text())
    return points


def test_ctrl_c_stops_a_sweep_keeps_its_points_and_the_rerun_completes_it(sweep_setup, tmp_path, capsys):
    cfg, whole_table = sweep_setup
    out = tmp_path / "o"
    with open(tmp_path / "stderr", "w+") as stderr:
        proc = _start_sweep(cfg, out, stderr)
    try:
        _wait_for_points(proc, out)
        # While it runs, a second sweep into the same directory is refused.
        assert main(["sweep", str(cfg), *PARAMS, "--out", str(out), "--quiet"]) == 2
        assert capsys.readouterr().err == f"error: --out: {out} is in use by another sweep (pid {proc.pid})\n"
        os.killpg(proc.pid, signal.SIGINT)      # as Ctrl-C in a terminal: to the sweep and its workers
        sent = time.monotonic()
        proc.wait(timeout=20)
        elapsed = time.monotonic() - sent
    finally:
        proc.kill()
    err = (tmp_path / "stderr").read_text()
    assert proc.returncode == 130, err
    assert elapsed < 5
    assert "Traceback" not in err and err.count("\n") == 1
    done = _check_outputs_whole(out)
    assert err == f"interrupted: {done} of 60 points done; rerun the same command to resume\n"
    assert 1 <= done < 60
    rows = read_table(out / "table.csv")
    provenance = json.loads((out / "provenance.json").read_text())
    assert len(rows) == provenance["completed"] == done and provenance["points"] == 60 and provenance["interrupted"]
    # The rerun finishes the grid; its table is the uninterrupted one, byte for byte.
    assert main(["sweep", str(cfg), *PARAMS, "--out", str(out), "--jobs", "2", "--quiet"]) == 0
    assert (out / "table.csv").read_bytes() == whole_table
    assert not json.loads((out / "provenance.json").read_text())["interrupted"]


def test_kill_9_of_a_sweep_loses_nothing_saved_and_its_workers_exit(sweep_setup, tmp_path):
    cfg, whole_table = sweep_setup
    out = tmp_path / "o"
    proc = _start_sweep(cfg, out, subprocess.DEVNULL)
    try:
        _wait_for_points(proc, out)
        workers = _children(proc.pid)
        proc.kill()
        proc.wait(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL and len(workers) >= 2
    with _exclusive(out):                         # free at once: the workers hold no copy of the lock
        pass
    deadline = time.monotonic() + 10
    try:
        while any(_alive(w) for w in workers):    # orphaned workers notice and exit
            assert time.monotonic() < deadline, "workers outlived their sweep"
            time.sleep(0.05)
    finally:
        for w in filter(_alive, workers):         # only if the test failed: leave no orphans behind
            os.kill(w, signal.SIGKILL)
    assert 1 <= _check_outputs_whole(out) < 60
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp") and not p.name.startswith(".")]
    assert main(["sweep", str(cfg), *PARAMS, "--out", str(out), "--jobs", "2", "--quiet"]) == 0
    assert (out / "table.csv").read_bytes() == whole_table
    assert not list(out.rglob("*.tmp"))                      # a killed writer's temporaries were cleared


# --- run: kill -9 while it writes --------------------------------------------------------------

def test_kill_9_of_run_never_leaves_a_truncated_output(tmp_path):
    """A forked copy of this process reruns `run` into one directory without pause and is
    killed at assorted moments; after each kill every output under its final name loads."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[features]\nkind = "simplex"\nK = 3\nd = 2\n[training]\nmode = "both"\nsteps = 20000\n'
                   't_end = 1e5\nn_out = 20000\n')
    out = tmp_path / "o"
    argv = ["run", str(cfg), "--out", str(out), "--quiet", "--no-plots"]
    assert main(argv) == 0                                   # the previous, complete outputs
    written = [None]                                         # the task sections of the runs so far
    # With the old direct writes about one kill in four left a truncated npz at these moments.
    for n, delay in enumerate((0.05, 0.13, 0.22, 0.29, 0.37, 0.41, 0.53, 0.64, 0.71, 0.89, 1.02, 1.13)):
        written.append({"L": 1 + n})
        pid = os.fork()
        if pid == 0:                                         # the child: `run` again and again, never returns
            try:
                with open(os.devnull, "w") as sink:
                    os.dup2(sink.fileno(), 1)
                    while True:
                        main(argv + ["--set", f"task.L={1 + n}"])
            finally:
                os._exit(1)
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        for name in ("trajectory.npz", "trajectory_gd.npz"):
            with np.load(out / name) as data:
                assert data["S"].shape[1:] == (3, 3) and len(data["t"]) == len(data["loss"])
        summary = json.loads((out / "summary.json").read_text())
        assert summary["config"].get("task") in written
    (out / ".summary.json.abcdefgh.tmp").write_text("left by a killed run")
    assert main(argv) == 0
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
