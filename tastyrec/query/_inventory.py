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
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    import pyarrow.fs as pafs

    from ..objectstore import S3Location

from .. import catalog
from .._arrow_values import rows as python_rows
from ..catalog import existing_location
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

    root: Path | S3Location
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


def inventory(path: str | os.PathLike[str] | S3Location = "data") -> Inventory:
    """Files, rows, bytes, symbols and time range per event type; sessions and gaps.

    Raises:
        StorageError: no recording at ``path``, or a file cannot be read.
    """
    root = existing_location(path)
    con = connect(root)
    result = Inventory(root)
    fs = None
    if not isinstance(root, Path):
        from ..objectstore import s3_filesystem

        fs = s3_filesystem()
    try:
        for event_type in catalog.location_event_types(root, fs):
            files = catalog.location_files(root, event_type, fs=fs)
            if not files:
                continue
            metas = [_metadata(f, fs) for f in files]
            rows = sum(m.num_rows for m in metas)
            # symbols for market data, account numbers for account tables, else none
            names = metas[0].schema.to_arrow_schema().names
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
            names_of = [os.path.split(f) if fs is None else f.rsplit("/", 1) for f in files]
            result.types.append(
                TypeInventory(
                    event_type,
                    len(files),
                    rows,
                    _sizes(files, fs),
                    int(symbols),
                    first,
                    last,
                    tuple(
                        sorted({date.fromisoformat(os.path.basename(d)[5:]) for d, _ in names_of})
                    ),
                    sum(catalog.is_compacted(n) for _, n in names_of),
                )
            )
        result.sessions = _rows(con, "sessions", "start")
        result.gaps = _rows(con, "gaps", "disconnected")
    except duckdb.Error as exc:
        raise StorageError(f"cannot read the recording at {str(root)!r}: {exc}") from exc
    finally:
        con.close()
    return result


def _metadata(file: str, fs: pafs.S3FileSystem | None) -> pq.FileMetaData:
    """The footer of a local file or an ``s3://`` object (one or two ranged GETs)."""
    if fs is None:
        return pq.read_metadata(file)
    return pq.read_metadata(file.removeprefix("s3://"), filesystem=fs)


def _sizes(files: list[str], fs: pafs.S3FileSystem | None) -> int:
    """Bytes of ``files`` (a HEAD per object on S3)."""
    if fs is None:
        return sum(os.stat(f).st_size for f in files)
    return sum(int(i.size or 0) for i in fs.get_file_info([f.removeprefix("s3://") for f in files]))


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
