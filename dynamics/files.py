"""Output files: every file written atomically, into directories checked before any work.

A file is written to a temporary dot-file in its own directory (``.NAME.XXXXXXXX.tmp``),
flushed to disk and renamed onto its final name, so a reader — or a run killed at
any moment — sees either the previous complete file or the new complete file, never
a truncated one.  A process killed mid-write can leave its temporary dot-file
behind; :func:`remove_stale_temps` clears them and ``run`` and ``sweep`` call it when
they start.
"""

import contextlib
import csv
import io
import json
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from .errors import AttnflowError


# The process umask, so that files renamed from mkstemp's private 0600 temporaries get the
# same permissions as files opened for writing the ordinary way.
_UMASK = os.umask(0)
os.umask(_UMASK)

# mkstemp's names: the prefix, 8 characters of its alphabet, the suffix.
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")


def write_atomic(path, data):
    """Write ``data`` (bytes, or str as UTF-8) to ``path`` atomically; return the path.

    The temporary file lives in the same directory (a rename is atomic only within one
    file system) and is removed if anything fails before the rename.
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~_UMASK)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def write_text(path, text):
    """Write ``text`` to ``path`` as UTF-8, atomically; return the path."""
    return write_atomic(path, text)


def plain_json(x):
    """Return ``x`` with NumPy scalars and arrays as Python values and non-finite floats as None (valid JSON)."""
    if isinstance(x, dict):
        return {str(k): plain_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain_json(v) for v in x]
    if isinstance(x, np.ndarray):
        return plain_json(x.tolist())
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def dump_json(path, data, indent=2):
    """Write ``data`` to ``path`` as strict JSON (see :func:`plain_json`), atomically; return the path.

    ``indent=None`` writes one line.
    """
    text = json.dumps(plain_json(data), indent=indent, allow_nan=False)
    return write_atomic(path, text + "\n" if indent is not None else text)


def write_npz(path, **arrays):
    """Write ``arrays`` to ``path`` by ``np.savez_compressed``, atomically; return the path."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return write_atomic(path, buffer.getvalue())


def write_csv(path, columns, rows):
    """Write a CSV table with a header of ``columns``, atomically; return the path.

    Parameters
    ----------
    path : str or Path
    columns : list of str
        The header, in order.
    rows : iterable of dict
        One per line; a missing cell is left empty.
    """
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in columns})
    return write_atomic(path, buffer.getvalue())


def write_png(path, fig, **savefig_options):
    """Write a matplotlib figure to ``path`` as PNG, atomically; return the path.

    ``savefig_options`` go to ``fig.savefig``.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **savefig_options)
    return write_atomic(path, buffer.getvalue())


def remove_stale_temps(directory, names=None):
    """Remove the temporary files a killed writer left in ``directory``.

    Parameters
    ----------
    directory : str or Path
    names : iterable of str, optional
        Remove the temporary files of these outputs only; of any file when None (a
        directory only attnflow writes).

    Returns
    -------
    int
        How many were removed.
    """
    directory = Path(directory)
    removed = 0
    for path in directory.glob(".*.tmp"):
        match = _TEMP_NAME.match(path.name)
        if match and (names is None or match["name"] in names):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed


def _os_reason(e):
    return e.strerror or type(e).__name__


def prepare_out_dir(path, field="--out"):
    """Create the output directory ``path`` if needed and check that files can be created in it.

    Parameters
    ----------
    path : str or Path
    field : str
        The option or field named in the error.

    Returns
    -------
    Path
        The directory.

    Raises
    ------
    AttnflowError
        ``field``, for an empty path, an existing file, or a directory that cannot be
        created or written (naming the path and the operating system's reason).
    """
    if str(path).strip() == "":
        raise AttnflowError(field, "expected a directory, got an empty path")
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise AttnflowError(field, f"{path} is a file, not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AttnflowError(field, f"cannot create the directory {path}: {_os_reason(e)}") from None
    try:
        # An unnamed file where the OS supports it (O_TMPFILE): nothing is left behind.
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise AttnflowError(field, f"cannot write in the directory {path}: {_os_reason(e)}") from None
    return out


def prepare_out_file(path, field="--out"):
    """Check that the file ``path`` can be written (creating its directory if needed); return it as a Path.

    Raises
    ------
    AttnflowError
        ``field``, for an empty path, a directory, a link, device or pipe, or a place
        that cannot be written.
    """
    if str(path).strip() == "":
        raise AttnflowError(field, "expected a file name, got an empty path")
    target = Path(path)
    if target.is_dir():
        raise AttnflowError(field, f"{path} is a directory, not a file")
    if target.is_symlink() or (target.exists() and not target.is_file()):
        # The atomic rename would replace the link or the device itself (as root: /dev/null).
        raise AttnflowError(field, f"{path} exists and is not a regular file (a link, a device or a pipe); "
                                   "name a new or a regular file")
    parent = target.parent
    if parent.exists() and not parent.is_dir():
        raise AttnflowError(field, f"cannot write {path}: {parent} is a file, not a directory")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise AttnflowError(field, f"cannot write {path}: {_os_reason(e)}") from None
    return target
