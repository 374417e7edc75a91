"""Sweeps on a Dask cluster: chunks of points sent to a ``dask.distributed`` scheduler.

The sweep's parent process stays where the output directory is.  It submits every
chunk of points (the unit the local pool runs too) as one task; a worker computes the
chunk's records and returns them, and the parent writes ``points/NNNNN.json`` as each
chunk finishes, so workers need no shared file system and a record is written once,
by one process.  A worker that dies mid-chunk loses nothing: the scheduler runs the
chunk again elsewhere and only the one result reaches the parent.

Dask is an optional extra: ``pip install "attnflow[dask]"``.  A cluster is started by
the user (``dask scheduler`` and ``dask worker ADDRESS`` on the machines, or
dask-jobqueue on SLURM or PBS; ``docs/guide.md`` shows both) and named by its
scheduler's address, ``--scheduler tcp://HOST:8786``.
"""

from ..errors import AttnflowError

EXTRA = 'pip install "attnflow[dask]"'


def client_for(address, timeout=10.0):
    """A ``distributed.Client`` connected to the scheduler at ``address``.

    Raises
    ------
    AttnflowError
        If dask.distributed is not installed or the scheduler cannot be reached.
    """
    try:
        from distributed import Client
    except ImportError:
        raise AttnflowError("--scheduler", f"needs dask.distributed, an optional extra: {EXTRA}") from None
    from distributed.comm import parse_address, parse_host_port
    try:
        # A malformed address is refused here: a Client that fails to parse it leaves a
        # half-built object whose finaliser prints a traceback at exit.
        scheme, location = parse_address(address)
        if scheme in ("tcp", "tls"):
            parse_host_port(location)
    except (TypeError, ValueError) as e:
        raise AttnflowError("--scheduler", f"expected a scheduler address such as tcp://HOST:8786, got {address!r} "
                                           f"({e})") from None
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise AttnflowError("--scheduler", f"cannot reach a Dask scheduler at {address!r} ({e})") from None


def worker_threads(client):
    """The number of worker threads the cluster has now (the sweep's parallelism)."""
    return max(1, sum(client.nthreads().values()))


def run_chunks(client, compute, shared, chunks, on_records):
    """Run ``compute(shared, chunk)`` for every chunk on the cluster; call ``on_records`` with each result.

    Parameters
    ----------
    client : distributed.Client
        Connected to the cluster (:func:`client_for`).
    compute : callable
        A module-level function ``compute(shared, chunk) -> records`` (workers import it).
    shared : object
        Sent to the cluster once (the base configuration) and passed to every call.
    chunks : list
        The chunks, one task each.
    on_records : callable
        Called in this process with each chunk's records, in the order chunks finish.

    On any exception (Ctrl-C included) the chunks not yet finished are cancelled
    before it propagates; what ``on_records`` has seen is kept.
    """
    from distributed import as_completed
    [remote] = client.scatter([shared], broadcast=True)
    futures = client.map(compute, [remote] * len(chunks), chunks, pure=False)
    try:
        for future in as_completed(futures, loop=client.loop):
            on_records(future.result())
    except BaseException:
        client.cancel(futures)
        raise
