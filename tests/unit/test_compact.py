"""COMPACT/FULL FEED_DATA values -> columns and Structs (tastyrec.dxlink.compact). No sockets."""

from __future__ import annotations

import math
import random
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pytest

from tastyrec.dxlink.compact import (
    ColumnAccumulator,
    ColumnBatch,
    FieldPlan,
    columns,
    full_to_compact,
    plan,
    structs,
)
from tastyrec.events import Candle, Event, Greeks, Profile, Quote, TimeAndSale, Trade
from tastyrec.events.registry import EVENT_TYPES, FieldKind, spec
from tastyrec.exceptions import RemoteProtocolError
from tastyrec.schema import arrow_schema

# DXLINK.md §8, worked example (COMPACT Quote, channel 7)
QUOTE_FIELDS = (
    "eventSymbol", "eventTime", "sequence", "timeNanoPart", "bidTime", "bidExchangeCode",
    "askTime", "askExchangeCode", "bidPrice", "askPrice", "bidSize", "askSize",
)  # fmt: skip
QUOTE_FRAME = (
    '{"type":"FEED_DATA","channel":7,"data":["Quote",['
    '"SPY",0,0,0,1721664000000,"Q",1721664000125,"P",559.35,559.36,300.0,1200.0,'
    '"SPX",0,0,0,1721663999000,"\\u0000",1721663999000,"\\u0000",5560.1,5561.45,"NaN","NaN"]]}'
)
# DXLINK.md §8, worked example (Trade with eventType announced), FULL and COMPACT
TRADE_FIELDS = ("eventType", "eventSymbol", "price", "dayVolume", "size")
TRADE_FULL = (
    '{"type":"FEED_DATA","channel":1,"data":['
    '{"eventType":"Trade","eventSymbol":"SPY","price":559.36,"dayVolume":1.3743299E7,"size":100.0},'
    '{"eventType":"Trade","eventSymbol":"BTC/USD:CXTALP","price":58356.71,"dayVolume":"NaN",'
    '"size":"NaN"}]}'
)
TRADE_COMPACT = (
    '["Trade",["Trade","SPY",559.36,1.3743299E7,100.0,'
    '"Trade","BTC/USD:CXTALP",58356.71,"NaN","NaN"]]'
)


def _quote_values() -> list[Any]:
    data = msgspec.json.decode(QUOTE_FRAME)["data"]
    assert data[0] == "Quote"
    return list(data[1])


def _same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b) and type(a) is type(b)


def _events(p: FieldPlan, values: list[Any]) -> list[Any]:
    """structs(), typed loosely for the attribute checks below."""
    return list(structs(p, values))


def _row(event: Any) -> list[Any]:
    cls: type[Event] = type(event)
    return [getattr(event, name) for name in spec(cls).names]


def _column_rows(p: FieldPlan, values: list[Any]) -> list[list[Any]]:
    """Rows of columns() as Python values (times as their exact epoch-ms integers)."""
    cols = []
    for f, arr in zip(p.spec.fields, columns(p, values), strict=True):
        if f.kind is FieldKind.TIME_MS:
            arr = arr.cast(pa.int64())
        cols.append(arr.to_pylist())
    return [list(r) for r in zip(*cols, strict=True)]


# --- the worked examples -----------------------------------------------------------------------


def test_compact_quote_worked_example() -> None:
    p = plan(Quote, QUOTE_FIELDS)
    assert p.identity and p.width == 12 and p.unknown == ()
    spy, spx = _events(p, _quote_values())
    assert spy == Quote(
        event_symbol="SPY",
        bid_time=1721664000000,
        bid_exchange_code="Q",
        ask_time=1721664000125,
        ask_exchange_code="P",
        bid_price=559.35,
        ask_price=559.36,
        bid_size=300.0,
        ask_size=1200.0,
    )
    assert spx.event_symbol == "SPX"
    assert spx.bid_exchange_code == "\u0000" and spx.ask_exchange_code == "\u0000"
    assert (spx.bid_price, spx.ask_price) == (5560.1, 5561.45)
    assert math.isnan(spx.bid_size) and math.isnan(spx.ask_size)
    assert spx.bid_time == spx.ask_time == 1721663999000


def test_compact_quote_worked_example_columns() -> None:
    p = plan(Quote, QUOTE_FIELDS)
    cols = dict(zip(spec(Quote).names, columns(p, _quote_values()), strict=True))
    assert cols["event_symbol"].to_pylist() == ["SPY", "SPX"]
    assert cols["bid_exchange_code"].to_pylist() == ["Q", "\u0000"]
    assert cols["ask_exchange_code"].to_pylist() == ["P", "\u0000"]
    assert cols["bid_time"].type == pa.timestamp("ms", tz="UTC")
    assert cols["bid_time"].cast(pa.int64()).to_pylist() == [1721664000000, 1721663999000]
    assert cols["ask_time"].cast(pa.int64()).to_pylist() == [1721664000125, 1721663999000]
    assert cols["bid_price"].to_pylist() == [559.35, 5560.1]
    sizes = cols["bid_size"].to_numpy()
    assert sizes[0] == 300.0 and np.isnan(sizes[1])
    assert cols["ask_size"].null_count == 0  # NaN is a value, not a null
    assert cols["sequence"].type == pa.int64() and cols["sequence"].to_pylist() == [0, 0]


def test_full_trade_worked_example() -> None:
    rows = msgspec.json.decode(TRADE_FULL)["data"]
    by_type, unknown = full_to_compact(rows)
    assert unknown == []
    p, values = by_type["Trade"]
    spy, btc = _events(p, values)
    assert (spy.event_symbol, spy.price, spy.day_volume, spy.size) == (
        "SPY",
        559.36,
        13743299.0,
        100.0,
    )
    assert btc.event_symbol == "BTC/USD:CXTALP" and btc.price == 58356.71
    assert math.isnan(btc.day_volume) and math.isnan(btc.size)
    # fields FULL rows omit are null -> defaults
    assert spy.time == 0 and spy.exchange_code is None and spy.extended_trading_hours is False
    assert math.isnan(spy.change)


def test_compact_trade_with_event_type_announced() -> None:
    name, values = msgspec.json.decode(TRADE_COMPACT)
    p = plan(EVENT_TYPES[name], TRADE_FIELDS)
    assert p.unknown == ("eventType",)
    assert p.positions[:2] == (1, None)  # eventSymbol is announced second, eventTime not at all
    assert not p.identity
    spy, btc = _events(p, values)
    assert (spy.event_symbol, spy.price, spy.day_volume, spy.size) == (
        "SPY",
        559.36,
        13743299.0,
        100.0,
    )
    assert btc.event_symbol == "BTC/USD:CXTALP" and math.isnan(btc.size)
    # FULL and COMPACT give the same events
    full_p, full_values = full_to_compact(msgspec.json.decode(TRADE_FULL)["data"])[0]["Trade"]
    for a, b in zip(_events(full_p, full_values), (spy, btc), strict=True):
        assert all(map(_same, _row(a), _row(b)))
    cols = dict(zip(spec(Trade).names, columns(p, values), strict=True))
    assert cols["price"].to_pylist() == [559.36, 58356.71]
    assert cols["exchange_code"].to_pylist() == [None, None]
    assert cols["event_time"].cast(pa.int64()).to_pylist() == [0, 0]


# --- value encoding ----------------------------------------------------------------------------


def test_nan_and_infinities_are_ieee_values_never_dropped() -> None:
    p = plan(Trade, ("eventSymbol", "price", "change", "size"))
    values = ["A", "NaN", "Infinity", "-Infinity", "B", 1.5, "-Infinity", "NaN"]
    a, b = _events(p, values)
    assert math.isnan(a.price) and a.change == math.inf and a.size == -math.inf
    assert b.price == 1.5 and b.change == -math.inf and math.isnan(b.size)
    cols = columns(p, values)
    assert len(cols[0]) == 2
    price, change, size = (cols[spec(Trade).names.index(n)] for n in ("price", "change", "size"))
    assert np.isnan(price.to_numpy()[0]) and price.to_pylist()[1] == 1.5
    assert change.to_pylist() == [math.inf, -math.inf]
    assert size.to_pylist()[0] == -math.inf and np.isnan(size.to_numpy()[1])
    assert price.null_count == change.null_count == size.null_count == 0


def test_longs_near_7_4e18_stay_exact() -> None:
    index = 7394490574700544000
    p = plan(Candle, ("eventSymbol", "index", "time", "close"))
    values = ["SPY{=5m}", index, 1721664000000, 559.0, "SPY{=5m}", index + 1, 1721664300000, 1.0]
    a, b = _events(p, values)
    assert a.index == index and b.index == index + 1
    cols = dict(zip(spec(Candle).names, columns(p, values), strict=True))
    assert cols["index"].type == pa.int64()
    assert cols["index"].to_pylist() == [index, index + 1]
    assert cols["time"].cast(pa.int64()).to_pylist() == [1721664000000, 1721664300000]


def test_null_strings_stay_none_and_absent_fields_get_defaults() -> None:
    p = plan(TimeAndSale, ("eventSymbol", "price", "buyer", "seller", "spreadLeg", "index"))
    values = ["SPY", 1.0, None, "MM1", None, None, "SPY", None, "X", None, True, 5]
    a, b = _events(p, values)
    assert a.buyer is None and a.seller == "MM1" and b.buyer == "X" and b.seller is None
    assert a.spread_leg is False and b.spread_leg is True  # null bool -> False
    assert a.index == 0 and b.index == 5  # null long -> 0
    assert math.isnan(b.price)  # null double -> NaN
    # never announced: defaults
    assert a.time == 0 and a.exchange_code is None and math.isnan(a.bid_price)
    assert a.valid_tick is False and a.type is None
    rows = _column_rows(p, values)
    assert [rows[0][i] for i in (1, 3)] == [0, 0]  # event_time, index
    for got, want in zip(rows, (a, b), strict=True):
        assert all(map(_same, got, _row(want)))


def test_fields_in_another_order_than_the_struct() -> None:
    order = ("askSize", "bidPrice", "eventSymbol", "askExchangeCode", "bidTime")
    p = plan(Quote, order)
    assert not p.identity and p.unknown == ()
    assert p.positions[0] == 2 and p.positions[spec(Quote).names.index("ask_size")] == 0
    (q,) = _events(p, [10.0, 99.5, "QQQ", "Z", 1721664000000])
    assert (q.event_symbol, q.ask_size, q.bid_price, q.ask_exchange_code, q.bid_time) == (
        "QQQ", 10.0, 99.5, "Z", 1721664000000,
    )  # fmt: skip
    assert math.isnan(q.ask_price) and q.bid_exchange_code is None and q.sequence == 0
    (row,) = _column_rows(p, [10.0, 99.5, "QQQ", "Z", 1721664000000])
    assert all(map(_same, row, _row(q)))


def test_unknown_names_ignored_and_listed() -> None:
    p = plan(Greeks, ("eventSymbol", "futureField", "delta", "eventType"))
    assert p.unknown == ("futureField", "eventType")
    assert p.width == 4
    (g,) = _events(p, ["X", {"any": "thing"}, 0.5, "Greeks"])
    assert g.event_symbol == "X" and g.delta == 0.5
    assert len(columns(p, ["X", [1, 2], 0.5, "Greeks"])) == len(spec(Greeks).fields)


def test_names_match_case_insensitively() -> None:
    assert (
        plan(Candle, ("eventSymbol", "VWAP")).positions
        == plan(Candle, ("eventSymbol", "vwap")).positions
    )
    (c,) = _events(plan(Candle, ("eventSymbol", "VWAP")), ["SPY{=d}", 560.25])
    assert c.vwap == 560.25
    assert plan(Candle, ("EVENTSYMBOL", "vwap")).unknown == ()


def test_plan_is_cached_and_defaults_to_struct_order() -> None:
    assert plan(Quote) is plan(Quote)
    assert plan(Quote) == plan(Quote, spec(Quote).wire_names)
    assert plan(Quote).identity and plan(Quote).count([0] * 24) == 2


@pytest.mark.parametrize("convert", [structs, columns])
def test_wrong_value_count(convert: Any) -> None:
    with pytest.raises(RemoteProtocolError, match="not a multiple"):
        convert(plan(Quote, QUOTE_FIELDS), _quote_values()[:-1])


@pytest.mark.parametrize("convert", [structs, columns])
@pytest.mark.parametrize("bad", [1.5, 2.0, "12", "NaN", [1]])
def test_non_integer_in_a_long_field(convert: Any, bad: Any) -> None:
    values = _quote_values()
    values[12 + 2] = bad  # SPX sequence
    with pytest.raises(RemoteProtocolError, match=r"Quote\.sequence"):
        convert(plan(Quote, QUOTE_FIELDS), values)


@pytest.mark.parametrize("convert", [structs, columns])
def test_float_in_a_time_field(convert: Any) -> None:
    values = _quote_values()
    values[4] = 1721664000000.5  # SPY bidTime
    with pytest.raises(RemoteProtocolError, match=r"Quote\.bid_time"):
        convert(plan(Quote, QUOTE_FIELDS), values)


@pytest.mark.parametrize("convert", [structs, columns])
def test_long_out_of_int64_range(convert: Any) -> None:
    values = _quote_values()
    values[2] = 2**63
    with pytest.raises(RemoteProtocolError, match=r"Quote\.sequence"):
        convert(plan(Quote, QUOTE_FIELDS), values)


@pytest.mark.parametrize("convert", [structs, columns])
@pytest.mark.parametrize(("index", "bad"), [(8, "abc"), (5, 7), (0, None), (0, 3)])
def test_other_wrong_types(convert: Any, index: int, bad: Any) -> None:
    values = _quote_values()
    values[index] = bad  # bidPrice "abc", bidExchangeCode 7, eventSymbol null / 3
    with pytest.raises(RemoteProtocolError):
        convert(plan(Quote, QUOTE_FIELDS), values)


def test_empty_values_give_no_events() -> None:
    p = plan(Quote, QUOTE_FIELDS)
    assert structs(p, []) == []
    assert [len(c) for c in columns(p, [])] == [0] * 12


# --- ColumnAccumulator -------------------------------------------------------------------------


def _quote_message(i: int, n: int) -> list[Any]:
    out: list[Any] = []
    for j in range(n):
        out += [
            f"S{i}",
            0,
            j,
            0,
            1721664000000 + j,
            "Q",
            1721664000000,
            "P",
            float(i),
            1.0,
            "NaN",
            2.0,
        ]
    return out


def test_accumulator_batches_many_messages_with_recv_ns_per_row() -> None:
    p = plan(Quote, QUOTE_FIELDS)
    acc = ColumnAccumulator(max_rows=50)
    flags = [acc.add(p, _quote_message(i, 7), recv_ns=1_000 + i) for i in range(10)]
    assert flags == [False] * 7 + [True] * 3  # 56 rows >= 50 after the 8th message
    assert acc.rows == 70
    (batch,) = acc.flush()
    assert acc.rows == 0 and acc.flush() == []
    assert isinstance(batch, ColumnBatch) and batch.event_type is Quote
    assert batch.num_rows == 70
    assert batch.batch.schema == arrow_schema(Quote)
    recv = batch.batch.column("recv_epoch_ns").to_pylist()
    assert recv == [1_000 + i for i in range(10) for _ in range(7)]
    assert batch.batch.column("event_symbol").to_pylist() == [
        f"S{i}" for i in range(10) for _ in range(7)
    ]
    assert batch.batch.column("sequence").to_pylist() == list(range(7)) * 10
    assert batch.batch.column("bid_price").to_pylist() == [
        float(i) for i in range(10) for _ in range(7)
    ]
    assert np.isnan(batch.batch.column("bid_size").to_numpy()).all()
    assert acc.bad_messages == 0 and acc.last_error is None


def test_accumulator_separates_event_types_and_plans() -> None:
    acc = ColumnAccumulator()
    acc.add(plan(Quote, QUOTE_FIELDS), _quote_message(1, 2), recv_ns=5)
    acc.add(plan(Greeks), ["G", 0, 0, 1, 0, 0, 1.0, 0.2, 0.5, 0.1, -0.1, 0.0, 0.3], recv_ns=6)
    acc.add(plan(Quote, ("eventSymbol", "bidPrice")), ["Q2", 3.0, "Q3", "NaN"], recv_ns=7)
    batches = acc.flush()
    assert [(b.event_type, b.num_rows) for b in batches] == [(Quote, 2), (Greeks, 1), (Quote, 2)]
    assert batches[2].batch.column("bid_price").to_pylist()[0] == 3.0
    assert batches[2].batch.column("recv_epoch_ns").to_pylist() == [7, 7]


def test_accumulator_drops_and_counts_a_bad_message_keeps_the_rest() -> None:
    p = plan(Quote, QUOTE_FIELDS)
    acc = ColumnAccumulator()
    bad = _quote_message(2, 3)
    bad[12 + 4] = 1.5  # a float in bidTime of the second event
    acc.add(p, _quote_message(1, 3), recv_ns=10)
    acc.add(p, bad, recv_ns=20)
    acc.add(p, _quote_message(3, 3), recv_ns=30)
    (batch,) = acc.flush()
    assert batch.num_rows == 6
    assert batch.batch.column("event_symbol").to_pylist() == ["S1"] * 3 + ["S3"] * 3
    assert batch.batch.column("recv_epoch_ns").to_pylist() == [10] * 3 + [30] * 3
    assert acc.bad_messages == 1
    assert isinstance(acc.last_error, RemoteProtocolError)
    assert "Quote.bid_time" in str(acc.last_error)


def test_accumulator_all_bad_gives_no_batch() -> None:
    acc = ColumnAccumulator()
    acc.add(plan(Quote, ("eventSymbol", "sequence")), ["A", "x"], recv_ns=1)
    assert acc.flush() == []
    assert acc.bad_messages == 1


def test_accumulator_rejects_a_wrong_count_at_add() -> None:
    acc = ColumnAccumulator()
    with pytest.raises(RemoteProtocolError):
        acc.add(plan(Quote, QUOTE_FIELDS), _quote_values()[:-3], recv_ns=1)
    assert acc.rows == 0 and acc.flush() == []


# --- structs() and columns() agree, for every event type ----------------------------------------

_CODES = ["Q", "P", "\u0000", "Z", None]
_WORDS = ["UP", "ACTIVE", "", "Très", "a,b", None]


def _random_value(kind: FieldKind, rng: random.Random) -> Any:
    r = rng.random()
    if kind is FieldKind.DOUBLE:
        if r < 0.1:
            return rng.choice(["NaN", "Infinity", "-Infinity", None])
        return rng.choice(
            [rng.uniform(-1e6, 1e6), float(rng.randrange(10**6)), 5e-324, 1.3743299e7]
        )
    if kind is FieldKind.LONG:
        return rng.choice([0, 0, rng.randrange(-(2**63), 2**63), 7394490574700544000, None])
    if kind is FieldKind.TIME_MS:
        return rng.choice([0, 1721664000000 + rng.randrange(10**9), None])
    if kind is FieldKind.BOOL:
        return rng.choice([True, False, None])
    return rng.choice(_CODES if r < 0.5 else _WORDS)


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
@pytest.mark.parametrize("seed", [1, 2])
def test_structs_and_columns_agree(name: str, seed: int) -> None:
    rng = random.Random(f"{name}{seed}")
    cls = EVENT_TYPES[name]
    s = spec(cls)
    fields = list(s.fields)
    rng.shuffle(fields)  # announced in another order, with one field missing
    announced = tuple(f.wire_name for f in fields if f is s.fields[0] or rng.random() < 0.9)
    p = plan(cls, announced)
    by_name = {f.wire_name: f for f in s.fields}
    values: list[Any] = []
    for i in range(60):
        for w in announced:
            kind = by_name[w].kind
            values.append(f"SYM{i % 7}" if w == "eventSymbol" else _random_value(kind, rng))
    events = _events(p, values)
    rows = _column_rows(p, values)
    assert len(events) == len(rows) == 60
    for event, row in zip(events, rows, strict=True):
        want = _row(event)
        assert all(map(_same, row, want)), (row, want)
    acc = ColumnAccumulator()
    acc.add(p, values, recv_ns=1)
    (batch,) = acc.flush()
    assert batch.batch.schema == arrow_schema(cls)
    assert batch.num_rows == 60


def test_bad_values_in_both_paths_for_every_kind() -> None:
    p = plan(TimeAndSale, ("eventSymbol", "price", "index", "time", "exchangeCode", "validTick"))
    good: list[Any] = ["SPY", 1.0, 1, 1721664000000, "Q", True]
    for pos, bad in [(1, "bad"), (2, 1.5), (3, "t"), (4, 3.5), (5, "yes"), (5, 1)]:
        values = list(good)
        values[pos] = bad
        for convert in (structs, columns):
            with pytest.raises(RemoteProtocolError):
                convert(p, values)


def test_profile_with_all_fields() -> None:
    p = plan(Profile)
    values: list[Any] = [
        "AAPL", 0, "Apple Inc. - Common Stock", "INACTIVE", "ACTIVE", 0, 0, 19900, None,
        237.23, 164.08, 1.24, 15.2e9, "NaN", "NaN", 6.57, 0.25, 4.0, 15.1e9,
    ]  # fmt: skip
    (prof,) = _events(p, values)
    assert prof.description == "Apple Inc. - Common Stock" and prof.status_reason is None
    assert prof.ex_dividend_day_id == 19900 and math.isnan(prof.high_limit_price)
    (row,) = _column_rows(p, values)
    assert all(map(_same, row, _row(prof)))


@pytest.mark.parametrize(
    "codes",
    [
        ["Q", "P", "\u0000", "Z"],  # one character each: built from buffers
        ["", "ab", "c", "d"],  # as many characters as values, but not one each
        ["é", "ü", "Q", "€"],  # one character, several bytes
        ["Q", None, "P", "Z"],
        ["NASDAQ", "", "Q", "\u0000\u0000"],
    ],
)
def test_string_columns_exact(codes: list[str | None]) -> None:
    p = plan(Quote, ("eventSymbol", "bidExchangeCode"))
    values = [v for i, code in enumerate(codes) for v in (f"S{i}", code)]
    arr = columns(p, values)[spec(Quote).names.index("bid_exchange_code")]
    arr.validate(full=True)
    assert arr.type == pa.string() and arr.to_pylist() == codes
    assert [q.bid_exchange_code for q in _events(p, values)] == codes
