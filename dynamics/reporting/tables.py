"""Sweep tables as tidy columns: ``table.parquet`` beside ``table.csv``, and one loader.

A sweep's table has one row per grid point and one column per measured quantity
(``docs/guide.md`` lists the columns and their units).  The Parquet file holds the
same values as the CSV with their types (float64, int64, bool, string; empty cells
are nulls) and the sweep's provenance as JSON in the file's metadata (key
``attnflow``), so a table carries how it was made.  :func:`load_table` returns a
pandas DataFrame from either file.

Examples
--------
>>> import tempfile, pathlib
>>> rows = [{"param:task.L": 0.1, "status": "ok", "flow:t_half": 2.5},
...         {"param:task.L": 10.0, "status": "ok", "flow:t_half": None}]
>>> with tempfile.TemporaryDirectory() as d:
...     path = write_parquet(pathlib.Path(d) / "table.parquet", rows, {"points": 2})
...     table = load_table(path)
...     provenance = read_provenance(path)
>>> table["flow:t_half"].tolist()
[2.5, nan]
>>> provenance
{'points': 2}
"""

import io
import json
import math
from pathlib import Path

from ..errors import AttnflowError
from ..files import plain_json, write_atomic

METADATA_KEY = b"attnflow"


def columns_of(rows):
    """Column names in first-seen order over the rows (the CSV's order)."""
    columns = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    return columns


def _arrow_column(values):
    """One column as a typed pyarrow array: bool, int64, float64 or string.

    Missing values (None, and the empty cells a CSV row holds for them) are nulls; in a
    float column they are NaN, as pandas reads them.
    """
    import pyarrow as pa
    values = [None if v == "" else v for v in values]
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if present and all(isinstance(v, bool) for v in present):
        return pa.array(values, type=pa.bool_())
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.array(values, type=pa.int64())
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pa.array([math.nan if v is None else float(v) for v in values], type=pa.float64())
    return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def write_parquet(path, rows, provenance):
    """Write ``rows`` (dicts) as a Parquet table with ``provenance`` in its metadata, atomically.

    Parameters
    ----------
    path : str or Path
        The file to write (its directory must exist).
    rows : list of dict
        One dict per grid point; missing keys are nulls.
    provenance : dict
        JSON-serialisable description of how the table was made.

    Returns
    -------
    Path
        ``path``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    columns = columns_of(rows)
    arrays = [_arrow_column([row.get(c) for row in rows]) for c in columns]
    table = pa.table(dict(zip(columns, arrays))) if columns else pa.table({})
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(plain_json(provenance)).encode()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return write_atomic(Path(path), buffer.getvalue())


def read_provenance(path):
    """The provenance dict stored in a table.parquet (None if it has none)."""
    import pyarrow.parquet as pq
    metadata = pq.read_schema(path).metadata or {}
    return json.loads(metadata[METADATA_KEY]) if METADATA_KEY in metadata else None


def load_table(path):
    """A sweep table as a pandas DataFrame: ``table.parquet``, ``table.csv`` or a sweep directory.

    A directory is read from its ``table.parquet`` when present, else its ``table.csv``.

    Raises
    ------
    AttnflowError
        If the file is missing or pandas (or pyarrow, for Parquet) is not installed.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "table.parquet" if (path / "table.parquet").exists() else path / "table.csv"
    if not path.is_file():
        raise AttnflowError(str(path), "no such sweep table (expected table.parquet or table.csv)")
    try:
        import pandas as pd
    except ImportError:
        raise AttnflowError("pandas", "load_table returns a pandas DataFrame: pip install pandas") from None
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path)
