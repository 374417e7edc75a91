"""``attnflow sweep``: a grid of problems, run in parallel, resumable, as a tidy table.

Each grid point is the base configuration with some fields overridden
(``--param task.L=0.1:100:log:40``, several allowed: their Cartesian product).
Every finished point is written at once to ``DIR/points/NNNNN.json``; a rerun with
the same grid skips those, so an interrupted sweep resumes where it stopped.  The
table ``DIR/table.csv`` holds one row per point in grid order and only
deterministic columns (timings live in ``DIR/provenance.json``), so an interrupted
and resumed sweep gives the same table as one that was not.  A point that fails is
recorded with its status and message and does not stop the sweep.

Ctrl-C stops a sweep at once: the workers are ended, the table and provenance of the
finished points are written and :class:`~attnflow.dynamics.errors.Interrupted` is raised (the
command line exits with status 130).  A sweep killed outright keeps its finished
points too, and its workers exit when they notice.  While a sweep runs it holds an
exclusive ``flock`` on ``DIR/.lock``, so a second sweep into the same directory is
refused; the kernel releases the lock however the process ends.  Every file is
written atomically (:mod:`attnflow.dynamics.files`).
"""

import contextlib
import csv
import fcntl
import itertools
import json
import math
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..analysis.phases import phase_boundary, step_sizes
from ..analysis.solve import solve
from ..errors import AttnflowError, Interrupted
from ..files import dump_json, prepare_out_dir, remove_stale_temps, write_csv, write_text
from ..problem import Problem
from ..progress import progress_bar
from ..reporting.summary import versions
from ..reporting.tables import write_parquet


MAX_POINTS = 1_000_000       # points of one sweep (the product of the --param sizes)


def parse_param(text):
    """``FIELD=LO:HI:log:N``, ``FIELD=LO:HI:lin:N`` or ``FIELD=v1,v2,…`` → (field, list of values)."""
    field, sep, spec = text.partition("=")
    if not sep or "." not in field:
        raise AttnflowError("--param", f"expected SECTION.KEY=LO:HI:log:N or SECTION.KEY=v1,v2,…, got {text!r}")
    parts = spec.split(":")
    if len(parts) == 4:
        lo, hi, scale, n = parts
        try:
            lo, hi, n = float(lo), float(hi), int(n)
        except ValueError:
            raise AttnflowError("--param", f"{field}: LO, HI must be numbers and N an integer in {spec!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise AttnflowError("--param", f"{field}: LO and HI must be finite in {spec!r}")
        if n > MAX_POINTS:
            raise AttnflowError("--param", f"{field}: N = {n:,} exceeds {MAX_POINTS:,} points")
        if n < 1 or scale not in ("log", "lin") or (scale == "log" and not (lo > 0 and hi > 0)):
            raise AttnflowError("--param", f"{field}: expected LO:HI:log:N with LO, HI > 0 or LO:HI:lin:N, N ≥ 1, "
                                           f"got {spec!r}")
        values = np.geomspace(lo, hi, n) if scale == "log" else np.linspace(lo, hi, n)
        return field, [float(v) for v in values]
    items = spec.split(",")
    if len(items) > MAX_POINTS:
        raise AttnflowError("--param", f"{field}: {len(items):,} values exceed {MAX_POINTS:,} points")
    values = []
    for item in items:
        item = item.strip()
        try:
            values.append(int(item))
        except ValueError:
            try:
                values.append(float(item))
            except ValueError:
                values.append(item)
    return field, values


def grid(params):
    """The Cartesian product as a list of {field: value} dicts, first parameter slowest."""
    fields = [f for f, _ in params]
    return [dict(zip(fields, combo)) for combo in itertools.product(*[v for _, v in params])]


def _maybe(x):
    return "" if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def point_row(cfg, overrides):
    """Run one grid point; return the table row (deterministic values) and its timings."""
    row = {f"param:{k}": v for k, v in overrides.items()}
    start = time.perf_counter()
    try:
        point_cfg = cfg.with_overrides(overrides)
        problem = Problem.from_config(point_cfg)
        c = problem.constants()
        row.update(L=c.L, Delta=c.Delta, delta=c.delta, L_Delta_delta=c.L_Delta_delta, regime=c.regime,
                   nondegenerate=c.nondegenerate, initial_loss=problem.initial_loss())
        result = solve(problem, point_cfg.training, progress=False)
        for kind, tr in result.trajectories.items():
            cr = tr.crossings
            row[f"{kind}:status"] = tr.status
            row[f"{kind}:t_half"] = _maybe(cr["t_half"])
            for e, t in cr["t_attention"].items():
                row[f"{kind}:t_attention_{e:g}"] = _maybe(t)
            for e, t in cr["t_loss"].items():
                row[f"{kind}:t_loss_{e:g}"] = _maybe(t)
            row[f"{kind}:t_boundary"] = _maybe(phase_boundary(tr.t, tr.loss))
            row[f"{kind}:final_loss"] = float(tr.loss[-1])
            row[f"{kind}:final_min_target_attention"] = float(np.diagonal(tr.final_attention).min())
            for name, value in tr.counters.items():
                row[f"{kind}:{name}"] = value
        if "gd" in result.trajectories:
            row["gd:eta"] = result.eta
            row["gd:stable_step_at_start"] = result.stable_step_at_start
        if "flow" in result.trajectories:
            steps = step_sizes(problem.score_system(), result.trajectories["flow"])
            row["flow:stable_step_min"] = steps.minimum
            row["flow:stable_step_final"] = steps.final
        trajectories = result.trajectories.values()
        row["status"] = "ok" if all(tr.success for tr in trajectories) else "/".join(tr.status for tr in trajectories)
        row["message"] = ""
    except AttnflowError as e:
        row["status"], row["message"] = "error", " ".join(str(e).split())
    except Exception as e:  # noqa: BLE001 — a failing point is recorded, never fatal to the sweep
        row["status"], row["message"] = "crashed", f"{type(e).__name__}: {' '.join(str(e).split())}"
    return row, time.perf_counter() - start


def _run_point(args):
    cfg, index, overrides, out = args
    row, seconds = point_row(cfg, overrides)
    record = {"index": index, "overrides": overrides, "row": row, "seconds": seconds}
    dump_json(Path(out) / "points" / f"{index:05d}.json", record, indent=None)
    return record


def _load_done(out, points):
    done = {}
    for path in sorted((Path(out) / "points").glob("*.json")):
        try:
            record = json.loads(path.read_text())
            i = record["index"]
            matches = i < len(points) and record["overrides"] == points[i]
        except (ValueError, KeyError, TypeError):      # not a point file of ours: the point is rerun
            continue
        if matches:
            done[i] = record
    return done


@contextmanager
def _exclusive(out):
    """Hold ``DIR/.lock`` (flock, released by the kernel whenever this process ends, however it ends)."""
    path = out / ".lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise AttnflowError("--out", f"cannot open the lock file {path}: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise AttnflowError("--out", f"{out} is in use by another sweep (pid {holder})") from None
    except OSError as e:                      # a file system without locks
        os.close(fd)
        raise AttnflowError("--out", f"cannot lock {path}: {e.strerror}") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield fd
    finally:
        os.close(fd)


def _init_worker(lock_fd, lock_id):
    """Set up a worker process of the pool."""
    # Ctrl-C reaches the whole process group; the parent alone decides what to do, and ends the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A forked worker holds a copy of the lock's descriptor, which would keep the sweep locked
    # after the parent died.  (Checked by inode: a spawned worker's descriptor numbers differ.)
    with contextlib.suppress(OSError):
        st = os.fstat(lock_fd)
        if (st.st_dev, st.st_ino) == lock_id:
            os.close(lock_fd)
    # A killed parent cannot end its workers: they notice it is gone and exit.
    parent = os.getppid()

    def exit_when_orphaned():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=exit_when_orphaned, daemon=True).start()


def _end_pool(pool):
    """Stop a pool at once: cancel what has not started and terminate the workers."""
    workers = list((pool._processes or {}).values())   # no public API for this before Python 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.join(timeout=5)


def _run_points(args, jobs, lock_fd, done, report):
    """Run the points ``args``, serially or in a pool, adding each finished record to ``done``."""
    if jobs == 1 or len(args) <= 1:
        for n, a in enumerate(args, 1):
            record = _run_point(a)
            done[record["index"]] = record
            if report:
                report(n / len(args))
        return
    st = os.fstat(lock_fd)
    pool = ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker,
                               initargs=(lock_fd, (st.st_dev, st.st_ino)))
    try:
        futures = [pool.submit(_run_point, a) for a in args]
        for n, fut in enumerate(as_completed(futures), 1):
            record = fut.result()
            done[record["index"]] = record
            if report:
                report(n / len(args))
    except BaseException:
        with _sigint_ignored():              # a second Ctrl-C must not cut this short
            _end_pool(pool)
        raise
    pool.shutdown()


def sweep(cfg, params, out_dir, jobs=None, progress=True, limit=None):
    """Run the grid; return the list of rows (grid order).  ``limit`` stops after that many new points.

    Holds ``DIR/.lock`` while it runs.  On Ctrl-C (KeyboardInterrupt) it stops the
    workers, writes the table and provenance of the finished points and raises
    :class:`~attnflow.dynamics.errors.Interrupted`; rerunning resumes.
    """
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise AttnflowError("--jobs", f"expected an integer ≥ 1, got {jobs}")
    out = prepare_out_dir(out_dir)
    try:
        (out / "points").mkdir(exist_ok=True)
    except OSError as e:
        raise AttnflowError("--out", f"cannot create {out / 'points'}: {e.strerror}") from None
    with _exclusive(out) as lock_fd:
        return _sweep(cfg, params, out, jobs, progress, limit, lock_fd)


def _sweep(cfg, params, out, jobs, progress, limit, lock_fd):
    points = grid(params)
    spec = {"base_config": cfg.raw, "params": [[f, v] for f, v in params]}
    spec_path = out / "sweep.json"
    if spec_path.exists():
        try:
            previous = json.loads(spec_path.read_text())
        except (OSError, ValueError) as e:
            raise AttnflowError("--out", f"{spec_path} is unreadable ({e}); use a new --out directory") from None
        if previous != json.loads(json.dumps(spec)):
            raise AttnflowError(str(out), "holds a different sweep (sweep.json differs); use a new --out directory")
    done = _load_done(out, points)
    todo = [i for i in range(len(points)) if i not in done]
    if limit is not None:
        todo = todo[:limit]
    if todo:
        # Generate and compile the kernels once, here, before the workers need them (and
        # before anything is written: a first point that cannot be built is an input error).
        Problem.from_config(cfg.with_overrides(points[todo[0]])).score_system().warm_up()
    remove_stale_temps(out, ("sweep.json", "table.csv", "table.parquet", "provenance.json"))   # left by a killed sweep
    remove_stale_temps(out / "points")
    write_text(spec_path, json.dumps(spec, indent=2))       # as compared above (no plain_json)
    jobs = jobs or os.cpu_count() or 1
    start = time.perf_counter()
    interrupted = False
    try:
        with progress_bar(f"sweep ({len(points)} points, {len(done)} done before)", progress) as report:
            _run_points([(cfg, i, points[i], str(out)) for i in todo], jobs, lock_fd, done, report)
    except KeyboardInterrupt:
        interrupted = True
    with _sigint_ignored(interrupted):      # after one Ctrl-C, write what is done even if another comes
        if interrupted:
            # What is on disk is what is done (a point may have been saved just before its worker ended).
            done = _load_done(out, points)
        rows = [done[i]["row"] for i in sorted(done)]
        _write_table(out / "table.csv", rows)
        provenance = {
            "versions": versions(), "base_config": cfg.raw, "resolved_base_config": cfg.resolved(),
            "params": spec["params"], "points": len(points), "completed": len(done), "interrupted": interrupted,
            "jobs": jobs,
            "solver": {"method": cfg.training.method, "rtol": cfg.training.rtol, "atol": cfg.training.atol,
                       "kernels": cfg.training.kernels},
            "failed": sum(1 for r in rows if r["status"] != "ok"),
            "seconds_per_point": {str(i): done[i]["seconds"] for i in sorted(done)},
            "wall_time_s_this_run": time.perf_counter() - start,
        }
        dump_json(out / "provenance.json", provenance)
        write_parquet(out / "table.parquet", rows, provenance)
    if interrupted:
        raise Interrupted(f"interrupted: {len(done)} of {len(points)} points done; rerun the same command to resume")
    return rows


@contextmanager
def _sigint_ignored(enabled=True):
    """Ignore Ctrl-C in this block (the main thread's handler; elsewhere nothing changes)."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _write_table(path, rows):
    columns = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    write_csv(path, columns, rows)


def read_table(path):
    """The table as a list of dicts with numbers parsed (empty cells → None)."""
    def parse(v):
        if v == "":
            return None
        for cast in (int, float):
            try:
                return cast(v)
            except ValueError:
                pass
        return {"True": True, "False": False}.get(v, v)
    with open(path, newline="") as fh:
        return [{k: parse(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def validated_params(cfg, texts, options=None):
    """Parse ``--param`` texts and check the grid before anything runs; return the params.

    Each field once, at most :data:`MAX_POINTS` points, and every value valid for its
    field (``cfg.with_overrides`` raises the field's one-line error otherwise).
    ``options`` names the command-line option of each text in errors (default ``--param``).
    """
    params = []
    for text, option in zip(texts, options or ["--param"] * len(texts)):
        try:
            params.append(parse_param(text))
        except AttnflowError as e:
            raise AttnflowError(option, e.message) from None
    fields = [field for field, _ in params]
    repeated = sorted({f for f in fields if fields.count(f) > 1})
    if repeated:
        raise AttnflowError("--param", f"{', '.join(repeated)} given more than once; give each field one --param")
    points = math.prod(len(values) for _, values in params)
    if points > MAX_POINTS:
        raise AttnflowError("--param", f"the grid has {points:,} points; at most {MAX_POINTS:,} per sweep")
    for field, values in params:
        for v in values:
            cfg.with_overrides({field: v})
    return params

