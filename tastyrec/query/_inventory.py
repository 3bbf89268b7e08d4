"""What a recording holds, for ``tastyrec info``: per event type and in the bookkeeping tables.

Row counts and bytes come from file footers and sizes; symbols and the first and last receipt
times from one DuckDB pass over the ``event_symbol`` and ``recv_epoch_ns`` columns of each type.

Times are integer epoch nanoseconds (exact; a ``datetime`` holds microseconds only, and pyarrow
hands nanosecond timestamps to Python only through pandas, which tastyrec does not need).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from .. import catalog
from .._arrow_values import rows as python_rows
from .._location import existing_recording
from ..exceptions import StorageError
from ..storage.sql import connect, parquet_source, quote_ident, receipt_select

__all__ = ("Inventory", "TypeInventory", "inventory")


@dataclass(frozen=True)
class TypeInventory:
    """One event type of a recording."""

    event_type: str
    files: int
    rows: int
    bytes: int
    symbols: int
    #: receipt time of the first and last row, epoch ns (UTC)
    first_ns: int | None
    last_ns: int | None
    dates: tuple[date, ...]
    #: files that are the product of compaction
    compacted: int = 0

    @property
    def first(self) -> datetime | None:
        """:attr:`first_ns` as a UTC datetime (to the microsecond)."""
        return _datetime(self.first_ns)

    @property
    def last(self) -> datetime | None:
        """:attr:`last_ns` as a UTC datetime (to the microsecond)."""
        return _datetime(self.last_ns)


@dataclass
class Inventory:
    """A recording's contents."""

    root: Path
    types: list[TypeInventory] = field(default_factory=list)
    #: rows of the ``sessions`` table, as dicts (newest start last); times in epoch ns
    sessions: list[dict[str, object]] = field(default_factory=list)
    #: rows of the ``gaps`` table, as dicts; times in epoch ns
    gaps: list[dict[str, object]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """Rows over all event types."""
        return sum(t.rows for t in self.types)

    @property
    def bytes(self) -> int:
        """Bytes of Parquet over all event types."""
        return sum(t.bytes for t in self.types)


def inventory(path: str | os.PathLike[str] = "data") -> Inventory:
    """Files, rows, bytes, symbols and time range per event type; sessions and gaps.

    Raises:
        StorageError: no recording at ``path``, or a file cannot be read.
    """
    root = existing_recording(path)
    con = connect(root)
    result = Inventory(root)
    try:
        for event_type in catalog.event_types(root):
            files = catalog.recording_files(root, event_type)
            if not files:
                continue
            rows = sum(pq.read_metadata(f).num_rows for f in files)
            # symbols for market data, account numbers for account tables, else none
            names = pq.read_schema(files[0]).names
            key = next((c for c in ("event_symbol", "account_number") if c in names), None)
            distinct = f"count(DISTINCT {key})" if key else "0"
            # through Arrow, times as integers: DuckDB's own conversion of time zones needs
            # pytz, pyarrow's of nanosecond timestamps pandas
            symbols, first, last = python_rows(
                _arrow(
                    con,
                    # the exact receipt times, of every schema version
                    f"SELECT {distinct}, min(recv_epoch_ns), max(recv_epoch_ns) FROM "
                    + receipt_select(con, parquet_source(files, hive=False)),
                )
            )[0].values()
            result.types.append(
                TypeInventory(
                    event_type,
                    len(files),
                    rows,
                    sum(f.stat().st_size for f in files),
                    int(symbols),
                    first,
                    last,
                    tuple(sorted({date.fromisoformat(f.parent.name[5:]) for f in files})),
                    sum(catalog.is_compacted(f.name) for f in files),
                )
            )
        result.sessions = _rows(con, "sessions", "start")
        result.gaps = _rows(con, "gaps", "disconnected")
    except duckdb.Error as exc:
        raise StorageError(f"cannot read the recording at {str(root)!r}: {exc}") from exc
    finally:
        con.close()
    return result


def _rows(con: duckdb.DuckDBPyConnection, view: str, order: str) -> list[dict[str, object]]:
    query = f"SELECT * FROM {quote_ident(view)} ORDER BY {quote_ident(order)}"
    return python_rows(_arrow(con, query))


def _arrow(con: duckdb.DuckDBPyConnection, query: str) -> pa.Table:
    table = con.sql(query).to_arrow_table()
    assert table is not None  # a query, not a statement
    return table


def _datetime(epoch_ns: int | None) -> datetime | None:
    if epoch_ns is None:
        return None
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=epoch_ns // 1000)
