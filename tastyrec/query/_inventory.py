"""What a recording holds, for ``tastyrec info``: per event type and in the bookkeeping tables.

Row counts and bytes come from file footers and sizes; symbols and the first and last receipt
times from one DuckDB pass over the ``event_symbol`` and ``recv_ns`` columns of each type.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from .. import catalog
from ..exceptions import StorageError
from ._duck import connect, parquet_source, quote_ident

__all__ = ("Inventory", "TypeInventory", "inventory")


@dataclass(frozen=True)
class TypeInventory:
    """One event type of a recording."""

    event_type: str
    files: int
    rows: int
    bytes: int
    symbols: int
    first: datetime | None
    last: datetime | None
    dates: tuple[date, ...]
    #: files that are the product of compaction
    compacted: int = 0


@dataclass
class Inventory:
    """A recording's contents."""

    root: Path
    types: list[TypeInventory] = field(default_factory=list)
    #: rows of the ``sessions`` table, as dicts (newest start last)
    sessions: list[dict[str, object]] = field(default_factory=list)
    #: rows of the ``gaps`` table, as dicts
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
    root = Path(path)
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
            # through Arrow: DuckDB's own conversion of time zones needs pytz
            symbols, first, last = (
                _arrow(
                    con,
                    f"SELECT {distinct}, min(recv_ns), max(recv_ns) FROM "
                    + parquet_source(files, hive=False),
                )
                .to_pylist()[0]
                .values()
            )
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
    rows: list[dict[str, object]] = _arrow(con, query).to_pylist()
    return rows


def _arrow(con: duckdb.DuckDBPyConnection, query: str) -> pa.Table:
    table = con.sql(query).to_arrow_table()
    assert table is not None  # a query, not a statement
    return table
