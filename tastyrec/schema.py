"""Arrow and polars schemas of the event types, derived from the event Structs (cached).

Columns are the Struct attributes in wire order, then the local receipt time twice:

* :data:`RECV_COLUMN` (``recv_ns``), ``timestamp[us, UTC]``: Parquet ``TIMESTAMP(MICROS,
  isAdjustedToUTC=true)``, which Apache Spark, Trino, DuckDB, polars and pandas all read as a
  timestamp with their default settings. It is the receipt time floored to the microsecond.
* :data:`RECV_EXACT_COLUMN` (``recv_epoch_ns``), ``int64``: the same receipt time, exact, in
  epoch nanoseconds, as the local clock (``time.time_ns()``) gave it.

Why both (schema version 2; version 1 had only ``recv_ns`` as ``TIMESTAMP(NANOS)``, which Spark
refuses without a legacy flag, FIELD_REPORTS #15). Microseconds are all a user needs as a time:
the clock is read once per websocket frame, the network's jitter is far above a microsecond, and
events of one frame share one receipt time anyway. But tastyrec relies on the exact value: it
orders replay by it (``ReplayStreamer.time_ns``, ties between event types of the same
microsecond), names files by it, and splits rows into New York days, compaction and crash
recovery compare it. Truncating would make two frames of one microsecond equal and change
``time_ns`` of every replayed event. The exact column costs little (delta-encoded like
``recv_ns``, a few bits a row) and keeps every value of version 1 files. The name ``recv_ns``
stays for the timestamp so that queries written for version 1 (``WHERE recv_ns >= TIMESTAMP
'...'``, ``time="recv_ns"``) keep working.

Wire times (:data:`tastyrec.events.base.TimeMs`) are ``timestamp[ms, UTC]``: the same integer
the server sent, read as a time by DuckDB and polars.

Readers accept both versions: :func:`receipt_ns` gives the exact receipt times of any batch,
:func:`upgrade` and :func:`upgrade_frame` bring version 1 data (``recv_ns`` in nanoseconds, no
``recv_epoch_ns``) into this schema.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Final, TypeVar

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from .events.base import Event
from .events.registry import FieldKind, spec

__all__ = (
    "ARROW_TYPES",
    "DECIMAL_TYPE",
    "RECV_COLUMN",
    "RECV_EXACT_COLUMN",
    "SCHEMA_VERSION",
    "arrow_schema",
    "polars_schema",
    "receipt_arrays",
    "receipt_ns",
    "upgrade",
    "upgrade_frame",
)

#: Version of the recorded columns, in each file's metadata (``tastyrec.schema_version``).
#: 2: ``recv_ns`` is ``timestamp[us, UTC]`` and ``recv_epoch_ns`` the exact receipt time.
SCHEMA_VERSION: Final = "2"

#: Name of the local receipt-time column on every recorded row (a timestamp, microseconds).
RECV_COLUMN: Final = "recv_ns"
#: Name of the exact receipt time on every recorded row (int64 epoch nanoseconds).
RECV_EXACT_COLUMN: Final = "recv_epoch_ns"

#: Arrow type of every Decimal field (account payloads: :mod:`tastyrec.storage.account_schema`).
DECIMAL_TYPE: Final = pa.decimal128(38, 10)
#: Arrow type of each field kind (nested Structs: Arrow structs of their fields' types).
ARROW_TYPES: Final[dict[FieldKind, pa.DataType]] = {
    FieldKind.DOUBLE: pa.float64(),
    FieldKind.LONG: pa.int64(),
    FieldKind.TIME_MS: pa.timestamp("ms", tz="UTC"),
    FieldKind.STRING: pa.string(),
    FieldKind.BOOL: pa.bool_(),
    FieldKind.DECIMAL: DECIMAL_TYPE,
    FieldKind.DATETIME: pa.timestamp("us", tz="UTC"),
    FieldKind.DATE: pa.date32(),
    FieldKind.JSON: pa.string(),
}
#: Arrow type of :data:`RECV_COLUMN`.
RECV_TYPE: Final = pa.timestamp("us", tz="UTC")
_NS_PER_US: Final = 1000


@functools.cache
def arrow_schema(cls: type[Event]) -> pa.Schema:
    """The Arrow schema of ``cls``: its fields in wire order, then the two receipt times."""
    s = spec(cls)
    fields = [
        pa.field(f.name, ARROW_TYPES[f.kind], nullable=f.kind is FieldKind.STRING) for f in s.fields
    ]
    fields[0] = pa.field(s.fields[0].name, pa.string(), nullable=False)  # event_symbol
    fields.append(pa.field(RECV_COLUMN, RECV_TYPE, nullable=False))
    fields.append(pa.field(RECV_EXACT_COLUMN, pa.int64(), nullable=False))
    return pa.schema(fields, metadata={b"tastyrec.event_type": s.name.encode()})


@functools.cache
def polars_schema(cls: type[Event]) -> pl.Schema:
    """The polars schema of ``cls``, the same columns as :func:`arrow_schema`."""
    frame = pl.DataFrame(arrow_schema(cls).empty_table())
    return frame.schema


def receipt_arrays(ns: np.ndarray[Any, np.dtype[np.int64]]) -> tuple[pa.Array, pa.Array]:
    """The ``recv_ns`` and ``recv_epoch_ns`` arrays of receipt times ``ns`` (epoch ns)."""
    n = len(ns)
    micros = np.floor_divide(ns, _NS_PER_US)
    return (
        pa.Array.from_buffers(RECV_TYPE, n, [None, pa.py_buffer(micros)]),
        pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(ns)]),
    )


def receipt_ns(data: pa.RecordBatch | pa.Table) -> pa.Array | pa.ChunkedArray:
    """The exact receipt times (int64 epoch ns) of a batch or table of any schema version."""
    if RECV_EXACT_COLUMN in data.schema.names:
        return data.column(RECV_EXACT_COLUMN)
    column = data.column(RECV_COLUMN)  # version 1: a nanosecond timestamp
    return column.cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64())


_Arrow = TypeVar("_Arrow", pa.RecordBatch, pa.Table)


def upgrade(data: _Arrow) -> _Arrow:
    """``data`` with the receipt columns of this schema version (unchanged if it has them)."""
    names = data.schema.names
    if RECV_EXACT_COLUMN in names or RECV_COLUMN not in names:
        return data
    index = names.index(RECV_COLUMN)
    exact = receipt_ns(data)
    micros = pc.divide(exact, _NS_PER_US)  # integer division truncates: floors times after 1970
    field = data.schema.field(index)
    data = data.set_column(
        index, pa.field(RECV_COLUMN, RECV_TYPE, field.nullable), micros.cast(RECV_TYPE)
    )
    return data.add_column(
        index + 1, pa.field(RECV_EXACT_COLUMN, pa.int64(), field.nullable), exact
    )


_Frame = TypeVar("_Frame", pl.DataFrame, pl.LazyFrame)


def upgrade_frame(frame: _Frame, names: Sequence[str]) -> _Frame:
    """A polars frame with columns ``names`` given the receipt columns of this version.

    Version 1 rows (``recv_ns`` in nanoseconds, no ``recv_epoch_ns``, or a null one where files
    of both versions were scanned together into a nanosecond ``recv_ns``) get the exact value
    from ``recv_ns``; ``recv_ns`` becomes microseconds (floored).
    """
    if RECV_COLUMN not in names:
        return frame
    recv = pl.col(RECV_COLUMN)
    exact = recv.dt.epoch("ns")
    if RECV_EXACT_COLUMN in names:
        exact = pl.coalesce(pl.col(RECV_EXACT_COLUMN), exact)
    frame = frame.with_columns(
        recv.dt.cast_time_unit("us").dt.convert_time_zone("UTC"),
        exact.alias(RECV_EXACT_COLUMN),
    )
    if RECV_EXACT_COLUMN not in names:
        order = list(names)
        order.insert(order.index(RECV_COLUMN) + 1, RECV_EXACT_COLUMN)
        frame = frame.select(order)
    return frame
