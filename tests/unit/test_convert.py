"""Events handed in by user code (tastyrec Structs, tastytrade SDK objects) -> Arrow batches."""

from __future__ import annotations

import enum
import math
import random
import struct
import time
import types
import typing
from decimal import Decimal
from typing import Any

import msgspec
import pyarrow as pa
import pytest
import tastytrade.dxfeed as dxfeed

from tastyrec.events import Event, Quote, TimeAndSale, Trade, TradeETH
from tastyrec.events.registry import EVENT_TYPES, FieldKind, spec
from tastyrec.exceptions import SchemaError
from tastyrec.record.convert import to_batches
from tastyrec.schema import RECV_EXACT_COLUMN, arrow_schema

NAMES = sorted(EVENT_TYPES)
SDK_NAMES = sorted(name for name in dxfeed.__all__ if name != "Event")
RECV = 1721664000123456789


def _random_event(cls: type[Event], rng: random.Random) -> Event:
    args: list[Any] = []
    for f in spec(cls).fields:
        if f.name == "event_symbol":
            args.append(rng.choice(["SPY", ".SPY261218C600", "AAPL{=5m}", "BTC/USD:CXTALP"]))
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


def _structs(cls: type[Event], batch: pa.RecordBatch) -> list[Event]:
    cols = []
    for f in spec(cls).fields:
        arr = batch.column(f.name)
        if f.kind is FieldKind.TIME_MS:
            arr = arr.cast(pa.int64())
        cols.append(arr.to_pylist())
    return list(map(cls, *cols))


def _bits(v: Any) -> Any:
    """A value's identity, bit for bit for floats (NaN, -0.0)."""
    return struct.pack("<d", v) if isinstance(v, float) else (type(v), v)


def _rows(batch: pa.RecordBatch) -> list[list[Any]]:
    return [[_bits(v) for v in row.values()] for row in batch.to_pylist()]


def _same_events(a: list[Event], b: list[Event]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert list(map(_bits, msgspec.structs.astuple(x))) == list(
            map(_bits, msgspec.structs.astuple(y))
        )


# -- tastyrec Structs ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_struct_round_trip_every_type(name: str) -> None:
    cls = EVENT_TYPES[name]
    events = [_random_event(cls, random.Random(name)) for _ in range(40)]
    (out,) = to_batches(events, recv_ns=RECV)
    assert out.event_type is cls
    assert out.num_rows == 40
    assert out.batch.schema.equals(arrow_schema(cls), check_metadata=True)
    _same_events(_structs(cls, out.batch), events)
    assert out.batch.column(RECV_EXACT_COLUMN).to_pylist() == [RECV] * 40


def test_defaults_follow_the_value_policy() -> None:
    (out,) = to_batches([Quote("SPY")], recv_ns=RECV)
    row = out.batch.to_pylist()[0]
    assert math.isnan(row["bid_price"]) and math.isnan(row["ask_size"])
    assert row["sequence"] == 0 and row["bid_exchange_code"] is None
    assert out.batch.column("bid_time").cast(pa.int64()).to_pylist() == [0]


def test_mixed_types_grouped_in_first_seen_order_keeping_order_within_a_type() -> None:
    events: list[object] = [
        Trade("A", sequence=1),
        Quote("A", sequence=1),
        Trade("B", sequence=2),
        TradeETH("A", sequence=3),
        Quote("B", sequence=2),
        Trade("C", sequence=3),
    ]
    out = to_batches(events, recv_ns=RECV)
    assert [b.event_type for b in out] == [Trade, Quote, TradeETH]
    assert out[0].batch.column("event_symbol").to_pylist() == ["A", "B", "C"]
    assert out[0].batch.column("sequence").to_pylist() == [1, 2, 3]
    assert out[1].batch.column("event_symbol").to_pylist() == ["A", "B"]
    assert out[2].batch.column("event_symbol").to_pylist() == ["A"]


def test_subclass_of_an_event_records_as_that_event() -> None:
    class MyQuote(Quote, frozen=True):
        note: str = "mine"

    (out,) = to_batches([MyQuote("SPY", bid_price=1.5), Quote("QQQ")], recv_ns=RECV)
    assert out.event_type is Quote
    assert out.batch.schema.equals(arrow_schema(Quote))
    assert out.batch.column("bid_price").to_pylist()[0] == 1.5


def test_no_events() -> None:
    assert to_batches([]) == []
    assert to_batches(iter(())) == []


def test_default_recv_ns_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_time_ns() -> int:
        calls.append(1)
        return RECV + len(calls)

    monkeypatch.setattr(time, "time_ns", fake_time_ns)
    out = to_batches([Quote("A"), Trade("A"), Quote("B")])
    assert len(calls) == 1
    for b in out:
        assert set(b.batch.column(RECV_EXACT_COLUMN).to_pylist()) == {RECV + 1}


def test_accepts_an_iterator() -> None:
    (out,) = to_batches((Quote(s) for s in "ABC"), recv_ns=RECV)
    assert out.batch.column("event_symbol").to_pylist() == ["A", "B", "C"]


def test_decimals_ints_and_none_in_struct_doubles() -> None:
    class Level(enum.IntEnum):
        ONE = 1

    (out,) = to_batches(
        [
            Quote("A", bid_price=Decimal("1.1"), ask_price=3, bid_size=None),  # type: ignore[arg-type]
            Quote("B", sequence=Level.ONE, bid_time=None),  # type: ignore[arg-type]
        ],
        recv_ns=RECV,
    )
    rows = out.batch.to_pylist()
    assert rows[0]["bid_price"] == 1.1 and rows[0]["ask_price"] == 3.0
    assert math.isnan(rows[0]["bid_size"])
    assert rows[1]["sequence"] == 1 and type(rows[1]["sequence"]) is int
    assert out.batch.column("bid_time").cast(pa.int64()).to_pylist() == [0, 0]


# -- tastytrade SDK objects ---------------------------------------------------------------------


def _sdk_kind(sdk_cls: Any, name: str) -> str:
    """'int', 'none' or 'other': how the SDK annotates a field."""
    ann = sdk_cls.model_fields[name].annotation
    args = set(typing.get_args(ann)) if isinstance(ann, types.UnionType) else {ann}
    args.discard(type(None))
    if not args:
        return "none"
    return "int" if args == {int} else "other"


def _pair(name: str, rng: random.Random, absent: bool = False) -> tuple[Any, Event]:
    """An SDK object and the tastyrec Struct with the same values."""
    sdk_cls = getattr(dxfeed, name)
    ours = EVENT_TYPES[name]
    sdk_kwargs: dict[str, Any] = {}
    our_kwargs: dict[str, Any] = {}
    for f in spec(ours).fields:
        kind = _sdk_kind(sdk_cls, f.name)
        info = sdk_cls.model_fields[f.name]
        if absent and not info.is_required() and info.default is not None:
            our_kwargs[f.name] = float(info.default)  # left out: the SDK's default (Decimal 0)
        elif kind == "none" or (absent and not info.is_required()):
            sdk_kwargs[f.name] = None
            our_kwargs[f.name] = f.default
        elif f.name == "event_symbol":
            sdk_kwargs[f.name] = our_kwargs[f.name] = rng.choice(["SPY", ".SPY261218C600"])
        elif f.kind is FieldKind.DOUBLE and kind == "int":
            value = rng.randrange(0, 10**9)
            sdk_kwargs[f.name], our_kwargs[f.name] = value, float(value)
        elif f.kind is FieldKind.DOUBLE:
            dec = Decimal(rng.randrange(-(10**9), 10**9)) / 10**4
            sdk_kwargs[f.name], our_kwargs[f.name] = dec, float(dec)
        elif f.kind is FieldKind.BOOL:
            sdk_kwargs[f.name] = our_kwargs[f.name] = rng.random() < 0.5
        elif f.kind is FieldKind.STRING:
            sdk_kwargs[f.name] = our_kwargs[f.name] = rng.choice(["Q", "\u0000", "ACTIVE"])
        elif f.kind is FieldKind.TIME_MS:
            sdk_kwargs[f.name] = our_kwargs[f.name] = rng.choice([0, 1721664000125])
        else:
            sdk_kwargs[f.name] = our_kwargs[f.name] = rng.randrange(-(2**40), 2**40)
    return sdk_cls(**sdk_kwargs), ours(**our_kwargs)


def test_sdk_classes_have_our_field_names() -> None:
    """What the module docstring states: every SDK event field is ours, and the reverse."""
    for name in SDK_NAMES:
        sdk_cls = getattr(dxfeed, name)
        assert set(sdk_cls.model_fields) == set(spec(EVENT_TYPES[name]).names), name


@pytest.mark.parametrize("absent", [False, True])
@pytest.mark.parametrize("name", SDK_NAMES)
def test_sdk_objects_give_the_rows_of_the_equivalent_structs(name: str, absent: bool) -> None:
    rng = random.Random(f"{name}{absent}")
    pairs = [_pair(name, rng, absent) for _ in range(20)]
    (from_sdk,) = to_batches([p[0] for p in pairs], recv_ns=RECV)
    (from_structs,) = to_batches([p[1] for p in pairs], recv_ns=RECV)
    assert from_sdk.event_type is EVENT_TYPES[name]
    assert from_sdk.batch.schema.equals(arrow_schema(EVENT_TYPES[name]), check_metadata=True)
    assert _rows(from_sdk.batch) == _rows(from_structs.batch)


def test_sdk_objects_from_stream() -> None:
    sdk = dxfeed.Quote.from_stream(
        ["SPY", 0, 7, 0, 1721664000125, "Q", 1721664000126, "X", "601.5", "601.52", "NaN", 300]
    )
    (out,) = to_batches(sdk, recv_ns=RECV)
    (ours,) = to_batches(
        [
            Quote(
                "SPY",
                sequence=7,
                bid_time=1721664000125,
                bid_exchange_code="Q",
                ask_time=1721664000126,
                ask_exchange_code="X",
                bid_price=601.5,
                ask_price=601.52,
                bid_size=0.0,  # the SDK turned the NaN size into 0
                ask_size=300.0,
            )
        ],
        recv_ns=RECV,
    )
    assert _rows(out.batch) == _rows(ours.batch)


def test_sdk_and_structs_mixed_in_one_batch() -> None:
    rng = random.Random(3)
    sdk, struct_ = _pair("Quote", rng)
    sdk_trade, _ = _pair("Trade", rng)
    out = to_batches([sdk, Quote("X"), sdk_trade, struct_], recv_ns=RECV)
    assert [b.event_type for b in out] == [Quote, Trade]
    assert out[0].batch.column("event_symbol").to_pylist() == [
        sdk.event_symbol,
        "X",
        struct_.event_symbol,
    ]
    rows = _rows(out[0].batch)
    assert rows[0] == rows[2]


def test_sdk_subclass_and_special_decimals() -> None:
    class MyTrade(dxfeed.Trade):
        pass

    _, base = _pair("TimeAndSale", random.Random(1))
    sdk_ts, _ = _pair("TimeAndSale", random.Random(1))
    sdk_ts.price = Decimal("NaN")
    sdk_ts.bid_price = Decimal("-Infinity")
    trade = MyTrade.model_validate(
        {
            "eventSymbol": "SPY",
            "eventTime": 0,
            "time": 1,
            "timeNanoPart": 0,
            "sequence": 0,
            "exchangeCode": "Q",
            "dayId": 20000,
            "tickDirection": "UP",
            "extendedTradingHours": False,
            "price": "601.5",
            "size": 12,
        }
    )
    out = to_batches([trade, sdk_ts], recv_ns=RECV)
    assert [b.event_type for b in out] == [Trade, TimeAndSale]
    row = out[0].batch.to_pylist()[0]
    assert row["price"] == 601.5 and row["size"] == 12.0 and math.isnan(row["change"])
    ts = out[1].batch.to_pylist()[0]
    assert math.isnan(ts["price"]) and ts["bid_price"] == -math.inf
    assert isinstance(base, TimeAndSale)
    assert ts["buyer"] is None and ts["exchange_code"] == base.exchange_code


# -- errors -------------------------------------------------------------------------------------


class Quote2:
    """Not an event, although called like one."""


@pytest.mark.parametrize(
    "obj",
    [
        object(),
        {"eventSymbol": "SPY"},
        "Quote",
        Event("SPY"),
        dxfeed.Event(event_symbol="SPY", event_time=0),
        type("Quote", (), {})(),
        Quote2(),
        Quote,
    ],
)
def test_not_an_event_is_a_schema_error(obj: object) -> None:
    with pytest.raises(SchemaError, match="not an event") as info:
        to_batches([Quote("SPY"), obj])
    assert repr(obj)[:40] in str(info.value)
    assert type(obj).__qualname__ in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"bid_price": "1.5"}, "Quote.bid_price: '1.5' (str)"),
        ({"bid_price": True}, "Quote.bid_price: True (bool)"),
        ({"bid_price": Decimal("sNaN")}, "Quote.bid_price: Decimal('sNaN')"),
        ({"bid_price": 10**400}, "Quote.bid_price"),
        ({"sequence": 1.0}, "Quote.sequence: 1.0 (float)"),
        ({"sequence": True}, "Quote.sequence: True (bool)"),
        ({"sequence": Decimal(1)}, "Quote.sequence: Decimal('1')"),
        ({"sequence": 2**63}, "Quote.sequence: 9223372036854775808 (int), expected an int64"),
        ({"bid_time": -(2**63) - 1}, "Quote.bid_time"),
        ({"bid_time": "2024-07-22"}, "Quote.bid_time: '2024-07-22' (str)"),
        ({"bid_exchange_code": b"Q"}, "Quote.bid_exchange_code: b'Q' (bytes)"),
        ({"bid_exchange_code": 1}, "Quote.bid_exchange_code: 1 (int)"),
        ({"bid_exchange_code": "\ud800"}, "Quote.bid_exchange_code"),
    ],
)
def test_wrong_value_type_is_a_schema_error(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SchemaError) as info:
        to_batches([Quote("SPY"), Quote("SPY", **kwargs)])
    assert fragment in str(info.value)


def test_wrong_bool_and_symbol_are_schema_errors() -> None:
    with pytest.raises(SchemaError, match=r"Trade.extended_trading_hours: 1 \(int\)"):
        to_batches([Trade("SPY", extended_trading_hours=1)])  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match=r"Quote.event_symbol: None \(NoneType\)"):
        to_batches([Quote(None)])  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match=r"Quote.event_symbol: 5 \(int\)"):
        to_batches([Quote(5)])  # type: ignore[arg-type]


def test_sdk_object_with_a_bad_value_is_a_schema_error() -> None:
    sdk, _ = _pair("Quote", random.Random(5))
    sdk.bid_price = "1.5"  # pydantic does not validate assignments by default
    with pytest.raises(SchemaError, match=r"Quote.bid_price: '1.5' \(str\)"):
        to_batches([sdk])


def test_sdk_object_missing_a_field_is_a_schema_error() -> None:
    partial = dxfeed.Quote.model_construct(event_symbol="SPY", event_time=0)
    with pytest.raises(SchemaError, match="Quote object without a 'sequence' attribute"):
        to_batches([partial])


@pytest.mark.parametrize("recv_ns", [1.5, "1", 2**63, True])
def test_bad_recv_ns_is_a_schema_error(recv_ns: Any) -> None:
    with pytest.raises(SchemaError, match="recv_ns"):
        to_batches([Quote("SPY")], recv_ns=recv_ns)
