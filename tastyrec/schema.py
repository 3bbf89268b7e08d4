"""Arrow and polars schemas of the event types, derived from the event Structs (cached).

Columns are the Struct attributes in wire order, then :data:`RECV_COLUMN`, the local receipt time
(nanoseconds, UTC). Wire times (:data:`tastyrec.events.base.TimeMs`) are ``timestamp[ms, UTC]``:
the same integer the server sent, read as a time by DuckDB and polars.
"""

from __future__ import annotations

import functools
from typing import Final

import polars as pl
import pyarrow as pa

from .events.base import Event
from .events.registry import FieldKind, spec

__all__ = ("ARROW_TYPES", "DECIMAL_TYPE", "RECV_COLUMN", "arrow_schema", "polars_schema")

#: Name of the local receipt-time column on every recorded row.
RECV_COLUMN: Final = "recv_ns"

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
RECV_TYPE: Final = pa.timestamp("ns", tz="UTC")


@functools.cache
def arrow_schema(cls: type[Event]) -> pa.Schema:
    """The Arrow schema of ``cls``: its fields in wire order, then ``recv_ns``."""
    s = spec(cls)
    fields = [
        pa.field(f.name, ARROW_TYPES[f.kind], nullable=f.kind is FieldKind.STRING) for f in s.fields
    ]
    fields[0] = pa.field(s.fields[0].name, pa.string(), nullable=False)  # event_symbol
    fields.append(pa.field(RECV_COLUMN, RECV_TYPE, nullable=False))
    return pa.schema(fields, metadata={b"tastyrec.event_type": s.name.encode()})


@functools.cache
def polars_schema(cls: type[Event]) -> pl.Schema:
    """The polars schema of ``cls``, the same columns as :func:`arrow_schema`."""
    frame = pl.DataFrame(arrow_schema(cls).empty_table())
    return frame.schema
