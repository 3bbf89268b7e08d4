"""Arrow and polars schemas derived from the event Structs, and Struct -> Arrow -> Struct."""

from __future__ import annotations

import math
import random
import struct
from typing import Any

import msgspec
import polars as pl
import pyarrow as pa
import pytest

from tastyrec.dxlink.compact import ColumnAccumulator, plan
from tastyrec.events import Candle, Event, Greeks, Quote
from tastyrec.events.registry import EVENT_TYPES, FieldKind, spec
from tastyrec.schema import (
    ARROW_TYPES,
    RECV_COLUMN,
    RECV_EXACT_COLUMN,
    arrow_schema,
    polars_schema,
)

NAMES = sorted(EVENT_TYPES)
_POLARS: dict[FieldKind, pl.DataType] = {
    FieldKind.DOUBLE: pl.Float64(),
    FieldKind.LONG: pl.Int64(),
    FieldKind.TIME_MS: pl.Datetime("ms", "UTC"),
    FieldKind.STRING: pl.String(),
    FieldKind.BOOL: pl.Boolean(),
}


def _random_event(cls: type[Event], rng: random.Random) -> Event:
    args: list[Any] = []
    for f in spec(cls).fields:
        if f.name == "event_symbol":
            args.append(rng.choice(["SPY", ".SPY261218C600", "SPX", "AAPL{=5m}", "BTC/USD:CXTALP"]))
        elif f.kind is FieldKind.DOUBLE:
            args.append(
                rng.choice([math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308])
                if rng.random() < 0.3
                else rng.uniform(-1e9, 1e9)
            )
        elif f.kind is FieldKind.LONG:
            args.append(rng.choice([0, -1, 2**63 - 1, -(2**63), 7394490574700544000, 12]))
        elif f.kind is FieldKind.TIME_MS:
            args.append(rng.choice([0, 1721664000125, -1, 253402300799999]))
        elif f.kind is FieldKind.BOOL:
            args.append(rng.random() < 0.5)
        else:
            args.append(rng.choice([None, "\u0000", "Q", "ACTIVE", "Très bien", ""]))
    return cls(*args)


def _to_batch(events: list[Event], recv_ns: int) -> pa.RecordBatch:
    cls = type(events[0])
    values = [v for e in events for v in msgspec.structs.astuple(e)]
    acc = ColumnAccumulator()
    acc.add(plan(cls), values, recv_ns)
    (batch,) = acc.flush()
    assert acc.bad_messages == 0
    return batch.batch


def _from_batch(cls: type[Event], batch: pa.RecordBatch) -> list[Event]:
    cols = []
    for f in spec(cls).fields:
        arr = batch.column(f.name)
        if f.kind is FieldKind.TIME_MS:
            arr = arr.cast(pa.int64())  # the exact integer the server sent
        cols.append(arr.to_pylist())
    return list(map(cls, *cols))


def _bits(v: Any) -> Any:
    """A value's identity, bit for bit for floats (NaN, -0.0)."""
    return struct.pack("<d", v) if isinstance(v, float) else (type(v), v)


@pytest.mark.parametrize("name", NAMES)
def test_arrow_schema_columns_and_types(name: str) -> None:
    cls = EVENT_TYPES[name]
    schema = arrow_schema(cls)
    fields = [f.name for f in msgspec.structs.fields(cls)]
    assert schema.names == [*fields, RECV_COLUMN, RECV_EXACT_COLUMN]
    # what Spark, Trino, DuckDB, polars and pandas all read as a timestamp by default
    assert schema.field(RECV_COLUMN).type == pa.timestamp("us", tz="UTC")
    assert schema.field(RECV_EXACT_COLUMN).type == pa.int64()
    assert not schema.field(RECV_COLUMN).nullable
    assert not schema.field(RECV_EXACT_COLUMN).nullable
    assert schema.field("event_symbol").type == pa.string()
    assert not schema.field("event_symbol").nullable
    for f in spec(cls).fields[1:]:
        assert schema.field(f.name).type == ARROW_TYPES[f.kind]
        assert schema.field(f.name).nullable == (f.kind is FieldKind.STRING)
    assert schema.metadata == {b"tastyrec.event_type": name.encode()}


def test_arrow_types_of_known_fields() -> None:
    quote = arrow_schema(Quote)
    assert quote.field("bid_time").type == pa.timestamp("ms", tz="UTC")
    assert quote.field("event_time").type == pa.timestamp("ms", tz="UTC")
    assert quote.field("sequence").type == pa.int64()
    assert quote.field("bid_price").type == pa.float64()
    assert quote.field("bid_exchange_code").type == pa.string()
    greeks = arrow_schema(Greeks)
    assert greeks.field("index").type == pa.int64()
    assert greeks.field("event_flags").type == pa.int64()
    assert greeks.field("time").type == pa.timestamp("ms", tz="UTC")


@pytest.mark.parametrize("name", NAMES)
def test_polars_schema_matches_arrow(name: str) -> None:
    cls = EVENT_TYPES[name]
    schema = polars_schema(cls)
    assert list(schema.names()) == arrow_schema(cls).names
    assert schema[RECV_COLUMN] == pl.Datetime("us", "UTC")
    assert schema[RECV_EXACT_COLUMN] == pl.Int64()
    assert schema["event_symbol"] == pl.String()
    for f in spec(cls).fields[1:]:
        assert schema[f.name] == _POLARS[f.kind], f.name


@pytest.mark.parametrize("name", NAMES)
def test_struct_arrow_struct_round_trip_is_bit_exact(name: str) -> None:
    cls = EVENT_TYPES[name]
    rng = random.Random(name)
    events = [_random_event(cls, rng) for _ in range(50)]
    batch = _to_batch(events, recv_ns=1721664000123456789)
    assert batch.schema == arrow_schema(cls)
    assert batch.num_rows == 50
    back = _from_batch(cls, batch)
    for a, b in zip(events, back, strict=True):
        assert list(map(_bits, msgspec.structs.astuple(a))) == list(
            map(_bits, msgspec.structs.astuple(b))
        )
    recv = batch.column(RECV_EXACT_COLUMN).to_pylist()
    assert recv == [1721664000123456789] * 50


def test_time_ms_columns_carry_the_exact_integer() -> None:
    (q,) = _from_batch(Quote, _to_batch([Quote("SPY", bid_time=1721664000125)], 7))
    assert isinstance(q, Quote) and q.bid_time == 1721664000125
    batch = _to_batch([Quote("SPY", bid_time=1721664000125, ask_time=1)], 7)
    frame = pl.from_arrow(batch)
    assert isinstance(frame, pl.DataFrame)
    assert frame["bid_time"].dt.epoch("ms").to_list() == [1721664000125]
    assert str(frame["bid_time"][0]) == "2024-07-22 16:00:00.125000+00:00"
    assert frame["ask_time"].dt.epoch("ms").to_list() == [1]


@pytest.mark.parametrize("name", NAMES)
def test_polars_reads_the_batch_with_polars_schema(name: str) -> None:
    cls = EVENT_TYPES[name]
    batch = _to_batch([_random_event(cls, random.Random(i)) for i in range(20)], recv_ns=5)
    frame = pl.from_arrow(batch)
    assert isinstance(frame, pl.DataFrame)
    assert frame.schema == polars_schema(cls)
    assert frame.height == 20


def test_polars_keeps_nan_and_big_longs() -> None:
    index = 7394490574700544000
    events: list[Event] = [
        Candle("SPY{=5m}", index=index, time=1721664000000, close=math.nan, open=-math.inf),
        Candle("SPY{=5m}", index=index + 1, close=559.5),
    ]
    frame = pl.from_arrow(_to_batch(events, recv_ns=1))
    assert isinstance(frame, pl.DataFrame)
    assert frame["index"].to_list() == [index, index + 1]
    assert frame["close"].is_nan().to_list() == [True, False]
    assert frame["close"].null_count() == 0
    assert frame["open"][0] == -math.inf
    assert frame["time"].dt.epoch("ms").to_list() == [1721664000000, 0]


def test_duckdb_views_name_the_same_receipt_columns() -> None:
    from tastyrec.storage import sql as _duck  # names them itself, to stay light for `tastyrec sql`

    assert (_duck.RECV_COLUMN, _duck.RECV_EXACT_COLUMN) == (RECV_COLUMN, RECV_EXACT_COLUMN)
