"""DuckDB over a recording: one view per event type, plus ``sessions`` and ``gaps``.

Each event type's view reads the files :func:`tastyrec.catalog.recording_files` lists, with
``hive_partitioning`` (the ``date`` column, a ``DATE``, prunes whole files) and ``union_by_name``
(files written by other schema versions line up by column name; a missing column reads as
NULL). DuckDB pushes ``event_symbol`` filters into the Parquet scan, where row-group min/max
statistics skip row groups: compacted files (sorted by symbol) make that pruning sharp.

Times are real timestamps: ``recv_ns`` and wire times are ``TIMESTAMPTZ``; ``recv_epoch_ns`` is
the exact receipt time (``BIGINT`` epoch nanoseconds, :mod:`tastyrec.schema`). Files of schema
version 1 (a nanosecond ``recv_ns``, no ``recv_epoch_ns``) read the same: the view takes the
exact value from their ``recv_ns`` and floors ``recv_ns`` to the microsecond. The connection's
``TimeZone`` is UTC unless asked otherwise.

With ``start`` / ``end``, each event type's view holds only the rows received in that window
(files outside it are not even listed), under the one rule of :mod:`tastyrec._time`: naive
means New York time, a date is a whole New York day (a date ``end`` included) -- the rows
:func:`scan` and :class:`~tastyrec.ReplayStreamer` select for the same arguments. The window is
kept on the connection (DuckDB variable ``tastyrec_window``) for :func:`refresh`. SQL text is
DuckDB's own: a timestamp literal in a query is read in the session ``TimeZone`` (UTC).

The views are a snapshot of the files at :func:`connect` time. A later recording's new files,
or a compaction that replaced files, are picked up by :func:`refresh` (or a new connection);
a query over a snapshot whose files a compaction deleted fails with a DuckDB ``IOException``.

Over ``s3://`` the snapshot also holds what DuckDB asked of each object: its size and
modification time (asked once, not at every bind: a view binds at every query) and the last
bytes read of it (its footer; a small file whole), within
:data:`tastyrec.objectstore.SNAPSHOT_TAIL_BYTES` (:func:`tastyrec.objectstore.register_duckdb`
with ``snapshot``). Queries then cost no request but the row groups they read; an object a
compaction deleted meanwhile still answers from what the snapshot holds of it, and fails on
the first read it does not hold (a ``duckdb.Error`` naming the object: "reading s3://...").
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import duckdb

from .. import _time, catalog
from .._time import TimeLike
from ..catalog import existing_location, reading_location
from ..exceptions import StorageError
from . import layout
from .tables import GAP_COLUMNS, SESSION_COLUMNS, Column, bookkeeping_files, sql_columns

if TYPE_CHECKING:
    from ..objectstore import S3Location

__all__ = ("connect", "parquet_source", "refresh")

#: tastyrec.schema's RECV_COLUMN and RECV_EXACT_COLUMN (not imported: that module loads
#: polars and numpy, which ``tastyrec sql`` does without)
RECV_COLUMN: Final = "recv_ns"
RECV_EXACT_COLUMN: Final = "recv_epoch_ns"

#: Names of the bookkeeping views.
SESSIONS_VIEW: Final = "sessions"
GAPS_VIEW: Final = "gaps"
#: The DuckDB variable holding a connection's receipt-time window, ``[start_ns, end_ns]``.
WINDOW_VARIABLE: Final = "tastyrec_window"


def quote_ident(name: str) -> str:
    """``name`` as a DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def quote_str(text: str) -> str:
    """``text`` as a DuckDB string literal."""
    return "'" + text.replace("'", "''") + "'"


def parquet_source(files: Sequence[Path | str], *, hive: bool = True) -> str:
    """A ``read_parquet(...)`` table expression over exactly ``files``."""
    listed = ", ".join(quote_str(str(f)) for f in files)
    options = "union_by_name = true"
    if hive:
        options += ", hive_partitioning = true, hive_types = {'date': 'DATE'}"
    return f"read_parquet([{listed}], {options})"


def connect(
    path: str | os.PathLike[str] | S3Location = "data",
    *,
    database: str = ":memory:",
    timezone: str | None = "UTC",
    start: TimeLike | None = None,
    end: TimeLike | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with a view per recorded event type, and ``sessions`` and ``gaps``.

    Example usage::

        con = tastyrec.connect("data")
        con.sql("SELECT event_symbol, avg(ask_price - bid_price) FROM Quote GROUP BY 1").show()

    Args:
        path: the recording folder (``tastyrec record --out``).
        database: DuckDB database to open (default: in memory; the views only read Parquet).
        timezone: the session ``TimeZone`` timestamps are shown in (``None``: DuckDB's default).
        start: event views keep rows received at or after this: a datetime (naive = New York
            time), a date (from that New York day on), ISO text or epoch ns
            (:mod:`tastyrec._time`).
        end: ... and before this; a date keeps that whole New York day.

    Returns:
        The connection; views are named after event types (``Quote``, ``Trade``...), each with a
        ``date`` column (the New York date of receipt). Call :func:`refresh` to see new files.

    ``path`` may be ``s3://bucket/prefix``: DuckDB then reads the listed objects through
    :func:`tastyrec.objectstore.register_duckdb` (pyarrow's S3 filesystem, no extension
    download), with ranged GETs of the footers and of the row groups a filter keeps. Each view
    is over the explicit list of its files, never a bucket-wide glob (docs/object-storage.md).
    Each object's info and footer are asked once per connection (or :func:`refresh`), not at
    every query.

    Raises:
        RecordingNotFound: ``path`` is not a folder, or no key is under the URL (a
            ``StorageError``).
        UnsupportedLocation: ``path`` is a URL of another scheme than ``s3://``.
        StorageError: a file cannot be read (``ObjectStoreError``: the store failed).
        ValueError: ``start`` or ``end`` is text that is not a time.
    """
    root = existing_location(path)
    window = (_time.start_ns(start), _time.end_ns(end))
    con = duckdb.connect(database)
    if timezone is not None:
        con.execute(f"SET TimeZone = {quote_str(timezone)}")
    if window != (None, None):
        con.execute(f"SET VARIABLE {WINDOW_VARIABLE} = ?::BIGINT[]", [list(window)])
    refresh(con, root)
    return con


def refresh(
    con: duckdb.DuckDBPyConnection, path: str | os.PathLike[str] | S3Location
) -> list[str]:
    """(Re)create the views of :func:`connect` on ``con`` from the files there now (within
    the receipt-time window :func:`connect` was given, if any).

    Returns:
        The event type views created.

    Raises:
        UnsupportedLocation: ``path`` is a URL of another scheme than ``s3://``.
        StorageError: a file cannot be read.
    """
    root = reading_location(path)
    fs = None
    if not isinstance(root, Path):
        from .. import objectstore

        fs = objectstore.s3_filesystem()
        objectstore.register_duckdb(con, fs, snapshot=True)
    start_ns, end_ns = _window(con)
    created = []
    for event_type in catalog.location_event_types(root, fs):
        files = catalog.location_files(root, event_type, start=start_ns, end=end_ns, fs=fs)
        if files:
            source = receipt_select(con, parquet_source(files))
            _create_view(con, event_type, source + _where(start_ns, end_ns))
            created.append(event_type)
    for name, folder, columns in (
        (SESSIONS_VIEW, layout.SESSIONS_DIR, SESSION_COLUMNS),
        (GAPS_VIEW, layout.GAPS_DIR, GAP_COLUMNS),
    ):
        listed = bookkeeping_files(root, folder, fs)
        _bookkeeping_view(con, name, [str(f) for f in listed], columns)
    return created


def _window(con: duckdb.DuckDBPyConnection) -> tuple[int | None, int | None]:
    """The ``(start_ns, end_ns)`` window :func:`connect` stored on ``con`` (``None``: open)."""
    row = con.execute(f"SELECT getvariable({quote_str(WINDOW_VARIABLE)})").fetchone()
    if row is None or row[0] is None:
        return None, None
    start_ns, end_ns = row[0]
    return start_ns, end_ns


def _where(start_ns: int | None, end_ns: int | None) -> str:
    """A ``WHERE`` on the exact receipt time keeping ``start_ns <= recv_epoch_ns < end_ns`` (every
    view has that column: :func:`receipt_select` derives it for schema version 1 files)."""
    column = quote_ident(RECV_EXACT_COLUMN)
    bounds = [
        f"{column} {op} {int(ns)}"
        for op, ns in ((">=", start_ns), ("<", end_ns))
        if ns is not None
    ]
    return (" WHERE " + " AND ".join(bounds)) if bounds else ""


def receipt_select(con: duckdb.DuckDBPyConnection, source: str) -> str:
    """``source`` (a table expression) with the receipt columns of the current schema version.

    Rows of schema version 1 files get ``recv_epoch_ns`` from their nanosecond ``recv_ns``,
    which is floored to a microsecond ``TIMESTAMPTZ`` (as the recorder does). A source of
    current files only is returned as it is.

    Raises:
        StorageError: a file cannot be read.
    """
    try:
        described = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    except duckdb.Error as exc:
        raise StorageError(f"cannot read {source:.200}: {exc}") from exc
    types = {str(row[0]): str(row[1]) for row in described}
    recv, exact = RECV_COLUMN, RECV_EXACT_COLUMN
    if recv not in types or (types[recv] == "TIMESTAMP WITH TIME ZONE" and exact in types):
        return source
    value = f"epoch_ns({quote_ident(recv)})"
    if exact in types:
        value = f"coalesce({quote_ident(exact)}, {value})"
    columns = []
    for name in types:
        if name == recv:
            columns.append(f"make_timestamptz({value} // 1000) AS {quote_ident(recv)}")
            columns.append(f"{value} AS {quote_ident(exact)}")
        elif name != exact:
            columns.append(quote_ident(name))
    return f"(SELECT {', '.join(columns)} FROM {source})"


def _create_view(con: duckdb.DuckDBPyConnection, name: str, source: str) -> None:
    try:
        con.execute(f"CREATE OR REPLACE VIEW {quote_ident(name)} AS SELECT * FROM {source}")
    except duckdb.Error as exc:
        raise StorageError(f"cannot read the {name} files: {exc}") from exc


def _bookkeeping_view(
    con: duckdb.DuckDBPyConnection, name: str, files: list[str], schema: tuple[Column, ...]
) -> None:
    if files:
        _create_view(con, name, parquet_source(files, hive=False))
        return
    # no files yet: the same columns, no rows (in SQL: registering an Arrow table would make
    # DuckDB import pandas, a third of a second for `tastyrec sql`)
    columns = ", ".join(
        f"CAST(NULL AS {sql_type}) AS {quote_ident(column)}"
        for column, sql_type in sql_columns(schema)
    )
    _create_view(con, name, f"(SELECT {columns} WHERE false)")
