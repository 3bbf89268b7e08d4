"""Options at chain scale: a set priced at once equals each option priced alone, and a
channel's option subscriptions are served as batches (schedule, first values in slices,
conflation, unsubscribe, both data formats, frame size), all in simulated time."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import msgspec
import numpy as np

from tastyrec.events.registry import EVENT_TYPES
from tastyrec.sim import SimConfig
from tastyrec.sim.batch import FRESH_PER_TICK
from tastyrec.sim.market import Market
from tastyrec.sim.options import BOOK_TYPES, OptionBook, columns
from tests.unit.test_sim_engine import Client

T0 = 1721664000.0  # 2024-07-22T16:00:00Z
T0_MS = int(T0 * 1000)
#: calls and puts of several underlyings and roots, near and far, one already expired
OPTIONS = [
    f".{root}{exp}{cp}{strike}"
    for root, strikes in (("SPY", (540, 560, 582.5)), ("SPXW", (5400, 5600)), ("AAPL", (225,)))
    for exp in ("240722", "240726", "241220", "240719")
    for cp in "CP"
    for strike in strikes
]


def encoded(value: Any) -> bytes:
    return msgspec.json.encode(value)  # NaN-aware equality: NaN encodes as null


def test_a_book_prices_each_option_as_the_market_prices_it_alone() -> None:
    for t_ms in (T0_MS, T0_MS + 3_600_000 + 17, T0_MS + 6 * 3_600_000):  # the last: day two
        chain_market, single = Market(3), Market(3)
        book = OptionBook([p for s in OPTIONS if (p := chain_market.option_params(s))])
        order = np.arange(len(OPTIONS))[::-1].copy()  # another order: the same values
        for name in sorted(BOOK_TYPES):
            cols = columns(book, chain_market, name, order, t_ms)
            cls = EVENT_TYPES[name]
            n = len(order)
            lists = {k: v if isinstance(v, list) else [v] * n for k, v in cols.items()}
            for j, i in enumerate(order.tolist()):
                symbol = OPTIONS[i]
                event = cls(**{k: v[j] for k, v in lists.items()})
                alone = getattr(single, _method(name))(symbol, t_ms)
                assert encoded(event) == encoded(alone), (name, symbol, t_ms)


def _method(name: str) -> str:
    return {"Quote": "quote", "Greeks": "greeks", "TheoPrice": "theo_price"}.get(name, "summary")


def test_an_option_summary_brackets_its_open_and_now() -> None:
    m = Market(1)
    for t in range(0, 20 * 3_600_000, 3_600_000):
        s = m.summary(".SPY240726C560", T0_MS + t)
        now = m.path(".SPY240726C560", T0_MS + t)
        assert s.day_low_price <= s.day_open_price <= s.day_high_price
        assert s.day_low_price <= round(now, 2) <= s.day_high_price


def test_option_trades_print_at_the_option_quote() -> None:
    m = Market(2)
    trade = m.trade(".SPY240726C560", T0_MS)
    assert trade is not None
    quote = m.quote(".SPY240726C560", trade.time)
    assert trade.price in (
        quote.bid_price,
        quote.ask_price,
        round((quote.bid_price + quote.ask_price) / 2, 4),
    )


# --- the engine serves option subscriptions as batches ------------------------------------------


def chain(n: int) -> list[str]:
    return [f".SPY241220{'CP'[i % 2]}{400 + i // 2}" for i in range(n)]


def subscribe(c: Client, symbols: list[str], *types: str) -> None:
    c.send(
        type="FEED_SUBSCRIPTION",
        channel=1,
        add=[{"type": t, "symbol": s} for s in symbols for t in types],
    )


def events(frames: list[dict[str, Any]], name: str, c: Client) -> list[dict[str, Any]]:
    """The FEED_DATA events of type ``name`` in ``frames`` as dicts, COMPACT or FULL (with the
    fields ``c``'s server announced last)."""
    fields: list[str] = []
    for raw in c.raw:
        if '"FEED_CONFIG"' not in raw:
            continue
        f = json.loads(raw)
        if name in f.get("eventFields", {}):
            fields = f["eventFields"][name]
    out: list[dict[str, Any]] = []
    for f in frames:
        if f["type"] != "FEED_DATA":
            continue
        if isinstance(f["data"][0], str):
            kind, values = f["data"]
            if kind == name:
                w = len(fields)
                out.extend(
                    dict(zip(fields, values[i : i + w], strict=True))
                    for i in range(0, len(values), w)
                )
        else:
            out.extend(e for e in f["data"] if e["eventType"] == name)
    return out


def test_every_option_every_period_first_values_in_slices_values_the_market_s() -> None:
    config = SimConfig(option_quote_rate_hz=1.0, greeks_rate_hz=0.5, default_aggregation_s=0.1)
    c = Client(config)
    c.handshake()
    c.open()
    symbols = chain(2 * FRESH_PER_TICK + 500)
    subscribe(c, symbols, "Quote", "Greeks")
    first = c.tick(0.01)
    assert 0 < len(events(first, "Quote", c)) <= FRESH_PER_TICK  # a slice, not all at once
    frames = first + c.tick(1.0)
    firsts = events(frames, "Quote", c)
    assert {q["eventSymbol"] for q in firsts} == set(symbols)  # all within a second
    later = c.tick(10.0)
    quotes, greeks = events(later, "Quote", c), events(later, "Greeks", c)
    per_symbol = dict.fromkeys(symbols, 0)
    for q in quotes:
        per_symbol[q["eventSymbol"]] += 1
    assert set(per_symbol.values()) <= {9, 10, 11}, sorted(set(per_symbol.values()))
    times: dict[str, list[int]] = {}
    for g in greeks:
        times.setdefault(g["eventSymbol"], []).append(g["time"])
    assert set(times) == set(symbols)
    assert {b - a for ts in times.values() for a, b in itertools.pairwise(ts)} == {
        2000
    }  # every 2 s
    market = Market(0)
    for g in greeks[:: len(greeks) // 50]:
        expected = market.greeks(g["eventSymbol"], g["time"])
        assert expected is not None
        assert (g["price"], g["delta"]) == (expected.price, expected.delta)
    for q in quotes[:: len(quotes) // 50]:
        t = q["bidTime"]  # the quote at its instant, found from its bid time
        assert any(
            (m := market.quote(q["eventSymbol"], ms)).bid_time == t
            and (m.bid_price, m.ask_price) == (q["bidPrice"], q["askPrice"])
            for ms in range(t, t + 501)
        ), q


def test_unsubscribed_and_reset_options_stop_and_others_go_on() -> None:
    c = Client(SimConfig(option_quote_rate_hz=2.0, default_aggregation_s=0.0))
    c.handshake()
    c.open()
    symbols = chain(40)
    subscribe(c, symbols, "Quote")
    c.tick(1.0)
    c.send(
        type="FEED_SUBSCRIPTION",
        channel=1,
        remove=[{"type": "Quote", "symbol": s} for s in symbols[:10]],
    )
    after = {q["eventSymbol"] for q in events(c.tick(2.0), "Quote", c)}
    assert after == set(symbols[10:])
    subscribe(c, symbols[:1], "Quote")  # again: its current value at once, then on schedule
    assert {q["eventSymbol"] for q in events(c.tick(0.02), "Quote", c)} >= {symbols[0]}
    c.send(type="FEED_SUBSCRIPTION", channel=1, reset=True)
    assert events(c.tick(2.0), "Quote", c) == []


def test_conflated_per_aggregation_period_full_format_and_frame_size() -> None:
    config = SimConfig(option_quote_rate_hz=10.0, max_frame_bytes=4_000)
    c = Client(config)
    c.handshake()
    c.open(acceptAggregationPeriod=1.0, acceptDataFormat="FULL")
    symbols = chain(100)
    subscribe(c, symbols, "Quote", "Summary", "TheoPrice")
    frames = c.tick(0.5) + c.tick(5.0)
    quotes = events(frames, "Quote", c)
    per_symbol: dict[str, int] = {}
    for q in quotes:
        per_symbol[q["eventSymbol"]] = per_symbol.get(q["eventSymbol"], 0) + 1
    assert set(per_symbol) == set(symbols) and max(per_symbol.values()) <= 7  # ~1/s, not 10/s
    assert all(len(raw.encode()) <= 4_000 for raw in c.raw)
    summaries = events(frames, "Summary", c)
    assert {s["eventSymbol"] for s in summaries} == set(symbols)
    assert all(s["dayClosePrice"] == "NaN" for s in summaries)  # NaN spelled as the feed does
    theo = events(frames, "TheoPrice", c)
    assert {t["eventSymbol"] for t in theo} == set(symbols)


def test_compact_rows_equal_the_per_event_encoding() -> None:
    """A batch's bulk COMPACT encoding is what the per-event path sends (fields asked for,
    unknown ones null, NaN as "NaN")."""
    c = Client(SimConfig(default_aggregation_s=0.0))
    c.handshake()
    c.open(acceptEventFields={"Quote": ["eventType", "eventSymbol", "bidPrice", "bidSize", "nope"]})
    symbols = chain(300)
    subscribe(c, symbols, "Quote")
    frames = c.tick(0.01)  # one tick: the first values of all 300, priced at c.now
    market = Market(0)
    got = events(frames, "Quote", c)
    assert got
    nan_sizes = 0
    for q in got:
        assert q["eventType"] == "Quote" and q["nope"] is None
        ms = int(c.now * 1000)
        expected = market.quote(q["eventSymbol"], ms)
        bid_size = "NaN" if math.isnan(expected.bid_size) else expected.bid_size
        nan_sizes += bid_size == "NaN"
        assert (q["bidPrice"], q["bidSize"]) == (expected.bid_price, bid_size), q
    assert json.dumps(got)  # plain JSON values
