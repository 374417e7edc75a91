"""``attnflow sweep``: a grid of problems, run in parallel, resumable, as a tidy table.

Each grid point is the base configuration with some fields overridden
(``--param task.L=0.1:100:log:40``, several allowed: their Cartesian product).
The points run in chunks, a task of the process pool each (about eight per worker, at
most :data:`MAX_CHUNK` points when the base configuration runs as ensembles,
:data:`MAX_CHUNK_ALONE` otherwise).  A finished chunk is written at once to
``DIR/points/NNNNN.json`` (NNNNN its first index); a rerun with the same grid skips
the points saved, so an interrupted sweep resumes where it stopped.  The points of a
chunk that train the scores alone (merged parameters, one head, no token noise, the
population loss) by compiled loops — GD, and the flow by the compiled DOP853, which the
default method ``auto`` is wherever the flow is not stiff — run together in
:func:`solvers.ensemble.integrate_flow_ensemble` and
:func:`solvers.ensemble.iterate_gd_ensemble`, which give the numbers each gives alone.
The table ``DIR/table.csv`` holds one row per point in grid order and only
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

Columns: the parameters, the problem's constants, and per trajectory its status,
crossing times, fast/slow boundary, final loss and target attention and solver counters
(with a finite training set, ``training.prompts``, the loss is the training loss, and
``final_population_loss``, ``generalization_gap`` and ``t_population_loss_ε`` follow);
``flow:stable_step_final`` is the stable GD step ``2/λ_max`` of the score system at the flow's final scores.
(The minimum of that step along the flow, once a column, cost a dense K²×K² eigenvalue
problem at every output point — 90 % of a K = 8 point's time — and is no longer in the
table; :func:`attnflow.dynamics.analysis.phases.step_sizes` computes it for one trajectory.)
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

from ...solvers import ScoreSystem
from ...solvers.ensemble import integrate_flow_ensemble, iterate_gd_ensemble
from ...solvers.flow import AUTO, auto_method
from ...solvers.gd import crossing_times
from ...solvers.trajectory import SUCCESSFUL

from ..analysis.phases import phase_boundary
from ..analysis.solve import choose_step_size, solve
from ..errors import AttnflowError, Interrupted
from ..files import dump_json, prepare_out_dir, remove_stale_temps, write_csv, write_text
from ..problem import Problem
from ..progress import progress_bar
from ..reporting.summary import versions
from ..reporting.tables import columns_of, write_parquet
from .distributed import client_for, run_chunks, worker_threads


MAX_POINTS = 1_000_000       # points of one sweep (the product of the --param sizes)
# Points a worker runs (and saves in one file) at a time: many when they run as one compiled
# ensemble (milliseconds each), few otherwise (a point may take seconds, and an interrupted
# chunk is rerun).
MAX_CHUNK, MAX_CHUNK_ALONE = 100, 8


def parse_param(text):
    """Parse one ``--param``: ``FIELD=LO:HI:log:N``, ``FIELD=LO:HI:lin:N`` or ``FIELD=v1,v2,…``.

    Parameters
    ----------
    text : str
        The option's value.

    Returns
    -------
    field : str
        The configuration path, ``SECTION.KEY``.
    values : list
        The grid values: N log- or linearly spaced floats, or the listed values (each
        an int, else a float, else the string).

    Raises
    ------
    AttnflowError
        Field ``--param``: the text is malformed, a range is not finite (or not positive
        on a log scale), or it has more than :data:`MAX_POINTS` values.

    Examples
    --------
    >>> parse_param("task.L=0.1:10:log:3")
    ('task.L', [0.1, 1.0, 10.0])
    >>> parse_param("features.K=2,4, 8")
    ('features.K', [2, 4, 8])
    >>> parse_param("task.L=0:1:log:3")
    Traceback (most recent call last):
    ...
    attnflow.dynamics.errors.AttnflowError: --param: task.L: expected LO:HI:log:N with LO, HI > 0 or LO:HI:lin:N, N ≥ 1, got '0:1:log:3'
    """
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
    """The Cartesian product as a list of {field: value} dicts, first parameter slowest.

    Examples
    --------
    >>> grid([("task.L", [1, 2]), ("features.K", [3, 4])])
    [{'task.L': 1, 'features.K': 3}, {'task.L': 1, 'features.K': 4}, {'task.L': 2, 'features.K': 3}, {'task.L': 2, 'features.K': 4}]
    """
    fields = [f for f, _ in params]
    return [dict(zip(fields, combo)) for combo in itertools.product(*[v for _, v in params])]


def _maybe(x):
    return "" if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def _problem_columns(row, problem):
    """The problem's own columns: constants, regime and the initial loss."""
    c = problem.constants()
    row.update(L=c.L, Delta=c.Delta, delta=c.delta, L_Delta_delta=c.L_Delta_delta, regime=c.regime,
               nondegenerate=c.nondegenerate, initial_loss=problem.initial_loss())


def _trajectory_columns(row, kind, status, crossings, t, loss, final_min_target_attention, counters):
    """The columns ``kind:…`` of one trajectory (a Trajectory's numbers or an ensemble's)."""
    row[f"{kind}:status"] = status
    row[f"{kind}:t_half"] = _maybe(crossings["t_half"])
    for e, when in crossings["t_attention"].items():
        row[f"{kind}:t_attention_{e:g}"] = _maybe(when)
    for e, when in crossings["t_loss"].items():
        row[f"{kind}:t_loss_{e:g}"] = _maybe(when)
    row[f"{kind}:t_boundary"] = _maybe(phase_boundary(t, loss))
    row[f"{kind}:final_loss"] = float(loss[-1])
    row[f"{kind}:final_min_target_attention"] = float(final_min_target_attention)
    for name, value in counters.items():
        row[f"{kind}:{name}"] = value


def _training_set_columns(row, kind, tr):
    """With a finite training set: the population loss of the final scores, the generalisation
    gap ``ℒ(S) − ℒ̂(S)`` there, and the population loss's crossing times."""
    row[f"{kind}:final_population_loss"] = float(tr.population_loss[-1])
    row[f"{kind}:generalization_gap"] = float(tr.population_loss[-1] - tr.loss[-1])
    for e, when in tr.crossings["t_population_loss"].items():
        row[f"{kind}:t_population_loss_{e:g}"] = _maybe(when)


def point_row(cfg, overrides):
    """Run one grid point; return the table row (deterministic values) and its timings.

    Parameters
    ----------
    cfg : Config
        The base configuration.
    overrides : dict
        ``{field: value}`` of the point.

    Returns
    -------
    row : dict
        The point's table row; a point that fails has ``status`` ``"error"`` (an
        :class:`~attnflow.dynamics.errors.AttnflowError`) or ``"crashed"`` and the message.
    seconds : float
        Its wall time.
    """
    row = {f"param:{k}": v for k, v in overrides.items()}
    start = time.perf_counter()
    try:
        point_cfg = cfg.with_overrides(overrides)
        problem = Problem.from_config(point_cfg)
        _problem_columns(row, problem)
        result = solve(problem, point_cfg.training, progress=False)
        for kind, tr in result.trajectories.items():
            _trajectory_columns(row, kind, tr.status, tr.crossings, tr.t, tr.loss,
                                np.diagonal(tr.final_attention).min(), tr.counters)
            if tr.population_loss is not None:
                _training_set_columns(row, kind, tr)
        if "gd" in result.trajectories:
            row["gd:eta"] = result.eta
            row["gd:stable_step_at_start"] = result.stable_step_at_start
        if "flow" in result.trajectories:
            row["flow:stable_step_final"] = problem.score_system().stable_step(result.trajectories["flow"].S[-1])
        trajectories = result.trajectories.values()
        row["status"] = "ok" if all(tr.success for tr in trajectories) else "/".join(tr.status for tr in trajectories)
        row["message"] = ""
    except AttnflowError as e:
        row["status"], row["message"] = "error", " ".join(str(e).split())
    except Exception as e:  # noqa: BLE001 — a failing point is recorded, never fatal to the sweep
        row["status"], row["message"] = "crashed", f"{type(e).__name__}: {' '.join(str(e).split())}"
    return row, time.perf_counter() - start


def _runs_as_ensemble(training):
    """Whether the points of a sweep with this training section may run as ensembles: GD, and the
    flow by the compiled DOP853 ("auto" is that method unless a point's flow is stiff)."""
    return training.mode == "gd" or training.method in (AUTO, "DOP853-compiled")


def _ensemble_member(cfg, overrides):
    """``(problem, training, step)`` of a point whose whole run is compiled loops on the scores
    (:mod:`attnflow.solvers.ensemble` runs it; ``step`` is GD's ``(η, stable step at the start)``
    or None), or None: run it alone."""
    try:
        point_cfg = cfg.with_overrides(overrides)
        training = point_cfg.training
        if not _runs_as_ensemble(training):
            return None
        problem = Problem.from_config(point_cfg)
        system = problem.system()
        if not isinstance(system, ScoreSystem):
            return None                  # factors, heads, token noise, a training set: their own loops, alone
        if training.mode != "gd" and training.method == AUTO and auto_method(system) != "DOP853-compiled":
            return None                  # a stiff flow: the compiled Rodas4P2, alone
        problem.constants()
        step = None
        if training.mode != "flow":
            eta, _, stable = choose_step_size(system, problem.start, training.eta)
            step = (eta, stable)
    except Exception:  # noqa: BLE001 — point_row records the failure as it records any
        return None
    return problem, training, step


def _ensemble_rows(members):
    """Rows of points that share one training section and kernel set, run as ensembles:
    ``[(overrides, problem, training, step)]``.  Each row equals :func:`point_row`'s for the
    point (tested)."""
    training = members[0][2]
    systems = [problem.system() for _, problem, _, _ in members]
    S0 = np.stack([problem.start for _, problem, _, _ in members])
    flow = gd = None
    if training.mode != "gd":
        flow = integrate_flow_ensemble(systems, S0, training.t_end, training.rtol, training.atol, training.eps,
                                       training.stop_loss, training.n_out, parallel=False)
    if training.mode != "flow":
        gd = iterate_gd_ensemble(systems, S0, [step[0] for *_, step in members], training.steps, training.eps,
                                 training.stop_loss, training.n_out, parallel=False)
    rows = []
    for b, (overrides, problem, _, step) in enumerate(members):
        row = {f"param:{k}": v for k, v in overrides.items()}
        _problem_columns(row, problem)
        statuses = []
        if flow is not None:
            time_of = lambda t: None if math.isnan(t) else float(t)  # noqa: E731
            crossings = {"t_half": time_of(flow.t_half[b]),
                         "t_attention": {e: time_of(t) for e, t in zip(training.eps, flow.t_attention[b])},
                         "t_loss": {e: time_of(t) for e, t in zip(training.eps, flow.t_loss[b])}}
            m = int(flow.n_recorded[b])
            _trajectory_columns(row, "flow", str(flow.status[b]), crossings, flow.t_out[b, :m], flow.loss_out[b, :m],
                                flow.final_min_target_attention[b], flow.counters(b))
            statuses.append(row["flow:status"])
        if gd is not None:
            eta = step[0]
            crossings = crossing_times(eta, np.r_[gd.iterations_half[b], gd.iterations_attention[b]],
                                       gd.iterations_loss[b], training.eps)
            m = int(gd.n_recorded[b])
            _trajectory_columns(row, "gd", str(gd.status[b]), crossings, eta * gd.iteration_out[b, :m].astype(float),
                                gd.loss_out[b, :m], gd.final_min_target_attention[b], gd.counters(b))
            statuses.append(row["gd:status"])
            row["gd:eta"], row["gd:stable_step_at_start"] = step
        if flow is not None:
            row["flow:stable_step_final"] = systems[b].stable_step(flow.final_S[b])
        row["status"] = "ok" if all(s in SUCCESSFUL for s in statuses) else "/".join(statuses)
        row["message"] = ""
        rows.append(row)
    return rows


def _ensemble_key(problem, training):
    """Points with equal keys run in one ensemble: one K, kernel set, prompt model and training."""
    system = problem.system()
    return (id(system.kernels), system.K, tuple(system.prompt), system.Ms.shape, training.mode, training.t_end,
            training.rtol, training.atol, tuple(training.eps), training.stop_loss, training.n_out, training.steps)


def chunk_records(cfg, chunk):
    """Run the points ``chunk`` (a list of ``(index, overrides)``); return their records in that order.

    The points that compiled loops on the scores solve alone run together, as ensembles
    (:mod:`attnflow.solvers.ensemble`), per training section and kernel set (their
    ``seconds`` share its time equally), on this thread (``--jobs`` is the sweep's
    parallelism); the others run one by one.
    """
    records, groups = {}, {}
    for index, overrides in chunk:
        start = time.perf_counter()
        member = _ensemble_member(cfg, overrides)
        if member is None:
            row, seconds = point_row(cfg, overrides)
            records[index] = {"index": index, "overrides": overrides, "row": row, "seconds": seconds}
            continue
        group = groups.setdefault(_ensemble_key(*member[:2]), [])      # each point has its own step size
        group.append((index, overrides, *member, time.perf_counter() - start))
    for group in groups.values():
        start = time.perf_counter()
        try:
            rows = _ensemble_rows([(overrides, *member) for _, overrides, *member, _ in group])
        except Exception:  # noqa: BLE001 — whatever failed is recorded point by point
            rows = [point_row(cfg, overrides)[0] for _, overrides, *_ in group]
        share = (time.perf_counter() - start) / len(group)
        for (index, overrides, *_, seconds), row in zip(group, rows):
            records[index] = {"index": index, "overrides": overrides, "row": row, "seconds": seconds + share}
    return [records[index] for index, _ in chunk]


def _save_chunk(out, records):
    """Write a finished chunk's records to ``points/NNNNN.json`` (its first index), atomically."""
    dump_json(Path(out) / "points" / f"{records[0]['index']:05d}.json", {"records": records}, indent=None)


def _run_chunk(args):
    """Run a chunk of points and save their records in one file (a task of the local pool)."""
    cfg, chunk, out = args
    records = chunk_records(cfg, chunk)
    _save_chunk(out, records)
    return records


def _load_done(out, points):
    """The finished points' records from ``points/*.json`` (chunks ``{"records": […]}``, or one record)."""
    done = {}
    for path in sorted((Path(out) / "points").glob("*.json")):
        try:
            content = json.loads(path.read_text())
            records = content["records"] if "records" in content else [content]
            for record in records:
                i = record["index"]
                if i < len(points) and record["overrides"] == points[i]:
                    done[i] = record
        except (ValueError, KeyError, TypeError):      # not a point file of ours: its points are rerun
            continue
    return done


def _chunks(todo, points, jobs, largest):
    """The points to run as ``[(index, overrides)]`` chunks: a task of the pool each.

    About eight chunks a worker, at most ``largest`` points each: small sweeps still save
    (and report) point by point, large ones pay the pool's and the file's cost per chunk
    and run many points in one ensemble.
    """
    size = max(1, min(largest, -(-len(todo) // (8 * jobs))))
    return [[(i, points[i]) for i in todo[k:k + size]] for k in range(0, len(todo), size)]


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


def _run_points(args, jobs, lock_fd, done, report, client=None):
    """Run the chunks ``args``: serially, in a local pool, or on a Dask cluster (``client``);
    add each finished record to ``done``."""
    total = sum(len(a[1]) for a in args)
    finished = 0

    def finished_chunk(records):
        nonlocal finished
        for record in records:
            done[record["index"]] = record
        finished += len(records)
        if report:
            report(finished / total)

    if client is not None:
        # Workers return records; this process writes them, so each is written once and
        # the workers need no shared file system.
        cfg, out = args[0][0], args[0][2]
        def saved_chunk(records):
            _save_chunk(out, records)
            finished_chunk(records)

        run_chunks(client, chunk_records, cfg, [a[1] for a in args], saved_chunk)
        return
    if jobs == 1 or len(args) <= 1:
        for a in args:
            finished_chunk(_run_chunk(a))
        return
    st = os.fstat(lock_fd)
    pool = ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker,
                               initargs=(lock_fd, (st.st_dev, st.st_ino)))
    try:
        futures = [pool.submit(_run_chunk, a) for a in args]
        for fut in as_completed(futures):
            finished_chunk(fut.result())
    except BaseException:
        with _sigint_ignored():              # a second Ctrl-C must not cut this short
            _end_pool(pool)
        raise
    pool.shutdown()


def sweep(cfg, params, out_dir, jobs=None, progress=True, limit=None, scheduler=None):
    """Run the grid; return the list of rows (grid order).

    Holds ``DIR/.lock`` while it runs.  On Ctrl-C (KeyboardInterrupt) it stops the
    workers, writes the table and provenance of the finished points and raises
    :class:`~attnflow.dynamics.errors.Interrupted`; rerunning resumes.

    Parameters
    ----------
    cfg : Config
        The base configuration.
    params : list of (str, list)
        The parameters and their values (:func:`validated_params`).
    out_dir : str or Path
        Output directory: ``sweep.json``, ``points/``, ``table.csv``, ``table.parquet``,
        ``provenance.json``.
    jobs : int, optional
        Worker processes (default: the number of CPUs; with ``scheduler``, the cluster's
        worker threads, which sizes the chunks).
    progress : bool, optional
        Show a progress bar.
    limit : int, optional
        Stop after that many new points.
    scheduler : str, optional
        A ``dask.distributed`` scheduler's address (``tcp://HOST:8786``): the chunks of
        points run on that cluster instead of local processes, and the table is the same
        (:mod:`attnflow.dynamics.commands.distributed`).

    Returns
    -------
    list of dict
        The rows of every point done so far, in grid order.

    Raises
    ------
    AttnflowError
        If jobs is not an integer ≥ 1, the directory cannot be used, is locked by another
        sweep or holds a different sweep, the first point cannot be built, or the
        scheduler cannot be reached (or dask.distributed is not installed).
    Interrupted
        On Ctrl-C, after the finished points are saved.
    """
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise AttnflowError("--jobs", f"expected an integer ≥ 1, got {jobs}")
    out = prepare_out_dir(out_dir)
    try:
        (out / "points").mkdir(exist_ok=True)
    except OSError as e:
        raise AttnflowError("--out", f"cannot create {out / 'points'}: {e.strerror}") from None
    with _exclusive(out) as lock_fd:
        if scheduler is None:
            return _sweep(cfg, params, out, jobs, progress, limit, lock_fd)
        with contextlib.closing(client_for(scheduler)) as client:
            return _sweep(cfg, params, out, jobs, progress, limit, lock_fd, client)


def _sweep(cfg, params, out, jobs, progress, limit, lock_fd, client=None):
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
        member = _ensemble_member(cfg, points[todo[0]])
        first = cfg.with_overrides(points[todo[0]])
        problem = member[0] if member else Problem.from_config(first)       # (which raises for a bad point)
        problem.system().warm_up(gd=first.training.mode != "flow")
        if member:
            # The ensembles' loops too: compiled (or loaded) once here, not by every worker at once.
            if first.training.mode != "gd":
                integrate_flow_ensemble([problem.system()], problem.start, 1e-3, n_out=2, parallel=False)
            if first.training.mode != "flow":
                iterate_gd_ensemble([problem.system()], problem.start, 1e-3, 1, n_out=2, parallel=False)
    remove_stale_temps(out, ("sweep.json", "table.csv", "table.parquet", "provenance.json"))   # left by a killed sweep
    remove_stale_temps(out / "points")
    write_text(spec_path, json.dumps(spec, indent=2))       # as compared above (no plain_json)
    jobs = jobs or (worker_threads(client) if client is not None else os.cpu_count() or 1)
    start = time.perf_counter()
    interrupted = False
    try:
        with progress_bar(f"sweep ({len(points)} points, {len(done)} done before)", progress) as report:
            largest = MAX_CHUNK if _runs_as_ensemble(cfg.training) else MAX_CHUNK_ALONE
            _run_points([(cfg, chunk, str(out)) for chunk in _chunks(todo, points, jobs, largest)], jobs, lock_fd,
                        done, report, client)
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
            "jobs": jobs, "scheduler": None if client is None else client.scheduler.address,
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
    """Write the rows as CSV, columns in first-seen order (as table.parquet has them)."""
    write_csv(path, columns_of(rows), rows)


def read_table(path):
    """The table as a list of dicts with numbers parsed (empty cells → None).

    Parameters
    ----------
    path : str or Path
        A sweep's ``table.csv``.

    Returns
    -------
    list of dict
        One dict per row; ints, floats and booleans parsed, other cells as strings.
    """
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

    Parameters
    ----------
    cfg : Config
        The base configuration.
    texts : list of str
        The ``--param`` values.
    options : list of str, optional
        The option that gave each text, for error messages.

    Returns
    -------
    list of (str, list)
        The parsed parameters, as :func:`parse_param` gives them.

    Raises
    ------
    AttnflowError
        If a text is malformed, a field is repeated, the grid has more than
        :data:`MAX_POINTS` points, or a value is invalid for its field.
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

