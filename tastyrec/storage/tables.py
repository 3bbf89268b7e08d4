"""Columns of the bookkeeping tables: ``_sessions/`` (one row per recording session) and
``_gaps/`` (one row per disconnect -> reconnect).

Each column is declared once, as ``(name, kind, nullable)``; the Arrow schemas the recorder
writes (:func:`session_schema`, :func:`gap_schema`) and the DuckDB types of the empty views
``tastyrec.connect`` makes before any file exists (:func:`sql_columns`) are derived from that.
:func:`read_gaps` reads ``_gaps/`` back (replay fires its recorded disconnects). Kept apart from
:mod:`.recorder`, and importing pyarrow only inside functions, so that ``tastyrec sql`` starts
without pyarrow.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Final, NamedTuple

from . import layout

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

    from ..objectstore import S3Location

__all__ = (
    "GAP_COLUMNS",
    "SESSION_COLUMNS",
    "GapRow",
    "bookkeeping_files",
    "gap_schema",
    "read_gaps",
    "session_schema",
    "sql_columns",
)

Column = tuple[str, str, bool]  # (name, kind, nullable)

SESSION_COLUMNS: Final[tuple[Column, ...]] = (
    ("session_id", "string", False),
    ("start", "time", False),
    ("end", "time", True),
    ("source", "string", True),
    ("symbols", "strings", True),
    ("event_types", "strings", True),
    ("status", "string", False),
    ("rows", "int64", False),
    ("files", "int64", False),
    ("tastyrec_version", "string", False),
)
GAP_COLUMNS: Final[tuple[Column, ...]] = (
    ("session_id", "string", False),
    ("last_received", "time", True),
    ("disconnected", "time", False),
    ("resumed", "time", True),
    ("reason", "string", True),
    ("stream", "string", True),
)

#: DuckDB type of each kind
_SQL: Final = {
    "string": "VARCHAR",
    "time": "TIMESTAMPTZ_NS",
    "strings": "VARCHAR[]",
    "int64": "BIGINT",
}


def _arrow(columns: tuple[Column, ...]) -> pa.Schema:
    import pyarrow as pa

    types = {
        "string": pa.string(),
        # the receipt-time type (tastyrec.schema.RECV_TYPE)
        "time": pa.timestamp("ns", tz="UTC"),
        "strings": pa.list_(pa.string()),
        "int64": pa.int64(),
    }
    return pa.schema([pa.field(n, types[kind], nullable=null) for n, kind, null in columns])


@functools.cache
def session_schema() -> pa.Schema:
    """The Arrow schema of ``_sessions/*.parquet``."""
    return _arrow(SESSION_COLUMNS)


@functools.cache
def gap_schema() -> pa.Schema:
    """The Arrow schema of ``_gaps/*.parquet``."""
    return _arrow(GAP_COLUMNS)


def sql_columns(columns: tuple[Column, ...]) -> list[tuple[str, str]]:
    """``(name, DuckDB type)`` of each column."""
    return [(name, _SQL[kind]) for name, kind, _ in columns]


class GapRow(NamedTuple):
    """One row of ``_gaps/``: a recorded break in a stream (times in epoch ns), as the recorder
    writes it (:func:`tastyrec.storage.bookkeeping.write_gaps`) and :func:`read_gaps` reads it."""

    last_received_ns: int | None
    disconnected_ns: int
    resumed_ns: int | None
    reason: str
    #: ``"dxlink"`` or ``"account"``; ``None`` in recordings older than the column
    stream: str | None


def bookkeeping_files(
    root: Path | S3Location, folder: str, fs: pafs.S3FileSystem | None = None
) -> list[Path] | list[str]:
    """The ``*.parquet`` files of a bookkeeping folder (``_sessions``, ``_gaps``), sorted:
    paths, or ``s3://`` URLs (listed through ``fs``, by default the shared filesystem).

    Raises:
        ObjectStoreError: the store could not be listed.
    """
    if isinstance(root, Path):
        where = root / folder
        return sorted(where.glob("*" + layout.PARQUET_SUFFIX)) if where.is_dir() else []
    import pyarrow.fs as pafs

    from ..objectstore import _error, shared_filesystem

    selector = pafs.FileSelector(root.join(folder).path, allow_not_found=True)
    try:
        infos = (shared_filesystem() if fs is None else fs).get_file_info(selector)
    except OSError as exc:
        raise _error("listing", root.url, exc) from None
    return sorted(
        f"s3://{i.path}"
        for i in infos
        if i.type == pafs.FileType.File
        and i.base_name.endswith(layout.PARQUET_SUFFIX)
        and not i.base_name.startswith(".")
    )


def read_gaps(root: Path | S3Location) -> list[GapRow]:
    """Every recorded gap of the recording at ``root`` (all sessions, both streams), in file
    order; ``[]`` if there are none.

    Raises:
        OSError, pyarrow.ArrowException: a ``_gaps`` file cannot be read.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows: list[GapRow] = []
    for path in bookkeeping_files(root, layout.GAPS_DIR):
        if isinstance(path, str):  # an object: through the shared S3 filesystem
            from ..objectstore import shared_filesystem

            table = pq.read_table(path.removeprefix("s3://"), filesystem=shared_filesystem())
        else:
            table = pq.read_table(path)
        times = [
            table.column(name).cast(pa.int64()).to_pylist()
            for name in ("last_received", "disconnected", "resumed")
        ]
        reasons = table.column("reason").to_pylist()
        streams = (
            table.column("stream").to_pylist()
            if "stream" in table.column_names
            else [None] * table.num_rows
        )
        rows.extend(
            GapRow(last, lost, back, reason or "", stream)
            for last, lost, back, reason, stream in zip(*times, reasons, streams, strict=True)
        )
    return rows
