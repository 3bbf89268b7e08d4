"""Arrow schemas for account-streamer payloads, derived from the Structs, and the conversions.

Role: turn :mod:`tastyrec.events.account` payloads (with their server time and local receipt
time) into Arrow record batches for Parquet, and back. As for market events, the Struct is the one
schema, read by the same code: :func:`tastyrec.events.registry.struct_fields` gives each field's
kind, :data:`tastyrec.schema.ARROW_TYPES` its Arrow type; nothing is hand-kept. This module
imports pyarrow and msgspec, no I/O library.

Mapping:

* ``Decimal`` -> ``decimal128(38, 10)``. Decimals keep their exact value (money must add up in
  DuckDB: ``SUM(quantity * fill_price)`` is exact in ``DECIMAL(38,10)``), and DuckDB and polars
  read the column as a number without casts, which a string column would need. Ten fractional
  digits and 28 integer digits cover every amount and price tastytrade sends (prices have at most
  4-6 decimals); a value that does not fit exactly raises :class:`~tastyrec.exceptions.SchemaError`
  instead of being rounded.
* ``datetime`` -> ``timestamp[us, UTC]``; ``date`` -> ``date32``; ``int`` -> ``int64``;
  ``bool`` -> ``bool``; ``str`` -> ``string``.
* nested Structs -> Arrow structs; ``list[Struct]`` (legs, fills, a complex order's orders) ->
  nested Arrow lists of structs, so ``UNNEST(legs)`` works in DuckDB.
* free-form JSON (``dict``/``Any``: watchlist entries, related orders) and unions of several value
  types (``complex_order_id: int | str``) -> a ``string`` holding the JSON text, decoded back
  exactly.

Every table also has ``event_time`` (the notification's ``timestamp``: server time, epoch ms, as
``timestamp[ms, UTC]``), ``recv_ns`` and ``recv_epoch_ns`` (local receipt time, microsecond
timestamp and exact epoch nanoseconds: :mod:`tastyrec.schema`), the same receipt-time axis as
market data, and ``from_snapshot`` (``bool``): true on rows the recorder
took from a REST snapshot because the stream had not said them (:mod:`tastyrec.account.reconcile`;
their ``event_time`` is null and ``recv_ns`` is when the REST answer arrived), false on rows of
the stream. Files written before the column existed read it as null (DuckDB's
``union_by_name``, the replay reader's conform).

Recorded tables are named after the classes (:data:`RECORDED_ACCOUNT_TYPES`: ``PlacedOrder``,
``AccountBalance``..., and ``UnknownNotification`` for notification types tastyrec does not know,
their payload kept as JSON text), so they never collide with DXLink's ``Order`` event. The schema
metadata names the table (``tastyrec.event_type``) as market schemas do, so the recorder's sinks
and every reader treat both alike.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import msgspec
import pyarrow as pa

from ..events.account import ACCOUNT_TYPES, AccountEvent, UnknownNotification
from ..events.registry import FieldKind, FieldSpec, struct_fields
from ..exceptions import SchemaError
from ..schema import (
    ARROW_TYPES,
    DECIMAL_TYPE,
    RECV_COLUMN,
    RECV_EXACT_COLUMN,
    RECV_TYPE,
    receipt_ns,
)

if TYPE_CHECKING:
    import polars as pl

__all__ = (
    "DECIMAL_TYPE",
    "RECORDED_ACCOUNT_TYPES",
    "SNAPSHOT_COLUMN",
    "AccountRecord",
    "account_arrow_schema",
    "account_class",
    "account_events_from_arrow",
    "account_events_to_batch",
    "account_polars_schema",
    "is_account_type",
)

#: What an account table holds: a payload Struct, or an unknown notification kept raw.
AccountRecord: TypeAlias = AccountEvent | UnknownNotification

#: Table name -> class of every account table a recording can hold (the class names).
RECORDED_ACCOUNT_TYPES: Final[dict[str, type[AccountRecord]]] = {
    **{cls.__name__: cls for cls in ACCOUNT_TYPES.values()},
    UnknownNotification.__name__: UnknownNotification,
}

#: The column marking rows taken from a REST snapshot (reconciliation), not from the stream.
SNAPSHOT_COLUMN: Final = "from_snapshot"
_EXTRA: Final = (
    pa.field("event_time", ARROW_TYPES[FieldKind.TIME_MS]),
    pa.field(RECV_COLUMN, RECV_TYPE, nullable=False),
    pa.field(RECV_EXACT_COLUMN, pa.int64(), nullable=False),
    pa.field(SNAPSHOT_COLUMN, pa.bool_()),
)
_json_encoder: Final = msgspec.json.Encoder()

# a field's conversion: "v" value as is, "json" JSON text, ("struct", cls), ("list", cls)
_Conv = Any


def _conversion(f: FieldSpec) -> _Conv:
    if f.kind is FieldKind.JSON:
        return "json"
    if f.kind is FieldKind.STRUCT:
        return ("struct", f.struct)
    if f.kind is FieldKind.STRUCT_LIST:
        return ("list", f.struct)
    return "v"


def _arrow_type(f: FieldSpec) -> pa.DataType:
    if f.struct is None:
        return ARROW_TYPES[f.kind]
    nested = pa.struct(_fields(f.struct))
    return pa.list_(nested) if f.kind is FieldKind.STRUCT_LIST else nested


@functools.cache
def _plan(cls: type[msgspec.Struct]) -> tuple[tuple[str, str, _Conv], ...]:
    """(attribute name, wire name, conversion) per field of a Struct."""
    return tuple((f.name, f.wire_name, _conversion(f)) for f in struct_fields(cls))


@functools.cache
def _fields(cls: type[msgspec.Struct]) -> tuple[pa.Field, ...]:
    return tuple(
        pa.field(f.name, _arrow_type(f), nullable=not f.required) for f in struct_fields(cls)
    )


def is_account_type(cls: type[Any]) -> bool:
    """Whether ``cls`` is recorded as an account table (a payload class or UnknownNotification)."""
    return RECORDED_ACCOUNT_TYPES.get(getattr(cls, "__name__", "")) is cls


def account_class(name: str) -> type[AccountRecord]:
    """The class of an account table name (``"PlacedOrder"`` -> :class:`PlacedOrder`).

    Raises:
        SchemaError: not an account table name.
    """
    try:
        return RECORDED_ACCOUNT_TYPES[name]
    except KeyError:
        raise SchemaError(
            f"{name!r} is not an account table; one of {', '.join(RECORDED_ACCOUNT_TYPES)}"
        ) from None


@functools.cache
def account_arrow_schema(cls: type[AccountRecord]) -> pa.Schema:
    """The Arrow schema of one payload class: its fields (snake_case), then ``event_time`` and
    ``recv_ns``. Cached per class. The metadata names the table (``tastyrec.event_type``)."""
    name = cls.__name__.encode()
    return pa.schema(
        [*_fields(cls), *_EXTRA],
        metadata={b"tastyrec.event_type": name, b"tastyrec.event": name},
    )


@functools.cache
def account_polars_schema(cls: type[AccountRecord]) -> pl.Schema:
    """The polars schema of one payload class, the same columns as :func:`account_arrow_schema`."""
    import polars as pl

    return pl.DataFrame(account_arrow_schema(cls).empty_table()).schema


def _to_row(event: msgspec.Struct) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, _, conv in _plan(type(event)):
        value = getattr(event, name)
        if value is None:
            row[name] = None
        elif conv == "v":
            row[name] = value
        elif conv == "json":
            row[name] = _json_encoder.encode(value).decode()
        elif conv[0] == "struct":
            row[name] = _to_row(value)
        else:
            row[name] = [_to_row(v) for v in value]
    return row


def account_events_to_batch(
    cls: type[AccountRecord],
    items: Iterable[tuple[AccountRecord, int | None, int]],
    *,
    from_snapshot: bool = False,
) -> pa.RecordBatch:
    """A record batch of payloads of one class.

    Args:
        cls: the payload class (every item must be one).
        items: ``(payload, event_time_ms, recv_ns)``: the notification's ``timestamp`` (or None)
            and the local receipt time.
        from_snapshot: the rows come from a REST snapshot (the ``from_snapshot`` column).

    Raises:
        SchemaError: an item of another class, or a value Arrow cannot hold exactly.
    """
    rows = []
    for event, event_time, recv_ns in items:
        if type(event) is not cls:
            raise SchemaError(f"a {type(event).__name__} in a batch of {cls.__name__}")
        row = _to_row(event)
        row["event_time"] = event_time
        row[RECV_COLUMN] = recv_ns // 1000  # microseconds
        row[RECV_EXACT_COLUMN] = recv_ns
        row[SNAPSHOT_COLUMN] = from_snapshot
        rows.append(row)
    try:
        return pa.RecordBatch.from_pylist(rows, schema=account_arrow_schema(cls))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise SchemaError(f"cannot store {cls.__name__} in Arrow: {exc}") from None


def _from_row(cls: type[msgspec.Struct], row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, key, conv in _plan(cls):
        value = row.get(name)
        if value is None:
            continue
        if conv == "json":
            value = msgspec.json.decode(value)
        elif conv != "v":
            kind, sub = conv
            value = (
                _from_row(sub, value) if kind == "struct" else [_from_row(sub, v) for v in value]
            )
        out[key] = value
    return out


def account_events_from_arrow(
    cls: type[AccountRecord], data: pa.Table | pa.RecordBatch
) -> list[tuple[AccountRecord, datetime | None, int]]:
    """The payloads of a table written by :func:`account_events_to_batch` (or read back from
    Parquet), with their ``event_time`` and ``recv_ns`` (epoch ns)."""
    table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
    recv = receipt_ns(table).to_pylist()
    times = table.column("event_time").to_pylist()
    out = []
    extra = [n for n in ("event_time", RECV_COLUMN, RECV_EXACT_COLUMN) if n in table.column_names]
    for row, t, r in zip(
        table.drop_columns(extra).to_pylist(),
        times,
        recv,
        strict=True,
    ):
        try:
            event = msgspec.convert(_from_row(cls, row), cls)
        except msgspec.ValidationError as exc:
            raise SchemaError(f"a {cls.__name__} row does not fit: {exc}") from None
        out.append((event, t, r))
    return out
