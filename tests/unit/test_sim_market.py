"""The synthetic market: deterministic, self-consistent, realistic where clients care."""

from __future__ import annotations

import math

import pytest

from tastyrec.events import SNAPSHOT_BEGIN, SNAPSHOT_END, SNAPSHOT_SNIP
from tastyrec.sim.market import (
    Market,
    parse_candle_symbol,
    parse_option_symbol,
    ts_index,
)

T0 = 1721664000000  # 2024-07-22T16:00:00Z
OPTION = ".SPY261218C600"


def test_ts_index_matches_the_documented_examples():
    assert ts_index(1684559855338) == 7235129486797176832
    assert ts_index(T0) == 7394490574700544000
    assert ts_index(T0, 5) == 7394490574700544005


def test_same_seed_same_market_and_order_independence():
    a, b = Market(seed=7), Market(seed=7)
    # b looks at other symbols first: SPY's path must not depend on it
    b.quote("AAPL", T0)
    b.quote(OPTION, T0 + 5)
    for t in (T0, T0 + 123, T0 + 86_400_000):
        assert a.quote("SPY", t) == b.quote("SPY", t)
        assert a.trade("SPY", t) == b.trade("SPY", t)
    assert Market(seed=8).quote("SPY", T0) != a.quote("SPY", T0)


@pytest.mark.parametrize("symbol", ["SPY", "AAPL", "ZZZZ", "SPX", OPTION, ".SPY261218P602.5"])
def test_quotes_have_bid_below_ask(symbol):
    m = Market(0)
    for i in range(200):
        q = m.quote(symbol, T0 + i * 97)
        assert 0 <= q.bid_price < q.ask_price, q
        assert q.event_time == 0


def test_equity_prices_move_like_a_random_walk():
    m = Market(0)
    mids = [m.quote("SPY", T0 + i * 60_000).mid_price for i in range(600)]
    assert len(set(mids)) > 300  # it moves
    assert max(mids) / min(mids) < 1.2  # but not wildly in 10 hours
    assert 400 < mids[0] < 700


def test_index_quotes_have_nan_sizes_and_null_exchange_codes():
    q = Market(0).quote("SPX", T0)
    assert math.isnan(q.bid_size) and math.isnan(q.ask_size)
    assert q.bid_exchange_code == "\x00" and q.ask_exchange_code == "\x00"
    assert 4000 < q.bid_price < 8000


def test_trades_are_inside_the_quote_and_day_volume_grows():
    m = Market(0)
    last_volume = 0.0
    last_time = 0
    for i in range(1, 300):
        tr = m.trade("AAPL", T0 + i * 250)
        assert tr is not None
        bid, ask = m.quote("AAPL", tr.time).bid_price, m.quote("AAPL", tr.time).ask_price
        assert bid <= tr.price <= ask
        assert tr.tick_direction in {"UP", "DOWN", "ZERO_UP", "ZERO_DOWN", "ZERO", "UNDEFINED"}
        if tr.time > last_time:
            assert tr.day_volume > last_volume
        last_volume, last_time = tr.day_volume, tr.time
        assert tr.day_id == tr.time // 86_400_000
    assert m.trade("SPX", T0) is None  # indices do not trade


def test_time_and_sales_are_a_consistent_tape():
    m = Market(0)
    prints = m.time_and_sales("SPY", T0, T0 + 10_000)
    assert len(prints) > 10
    times = [p.time for p in prints]
    assert times == sorted(times) and T0 < times[0] and times[-1] <= T0 + 10_000
    for p in prints:
        assert p.index == ts_index(p.time)
        assert p.bid_price <= p.price <= p.ask_price
        assert p.aggressor_side in {"BUY", "SELL", "UNDEFINED"}
        assert p.buyer is None and p.seller is None and p.type == "NEW"
    # the last print before a time is the Trade event at that time
    trade = m.trade("SPY", T0 + 10_000)
    assert trade is not None and trade.time == prints[-1].time and trade.price == prints[-1].price


def test_option_symbols_parse_with_fractional_strikes():
    o = parse_option_symbol(".SPY261218C602.5")
    assert o is not None
    assert (o.underlying, o.is_call, o.strike) == ("SPY", True, 602.5)
    assert o.expiration_ms == 1797624000000  # 2026-12-18T20:00:00Z
    p = parse_option_symbol(".BRK/B250117P400")
    assert p is not None and p.underlying == "BRK/B" and not p.is_call
    assert parse_option_symbol("SPY") is None
    assert parse_option_symbol(".SPY261318C600") is None  # month 13


def test_greeks_and_theo_follow_black_scholes():
    m = Market(0)
    call = m.greeks(".SPY261218C560", T0)
    put = m.greeks(".SPY261218P560", T0)
    theo = m.theo_price(".SPY261218C560", T0)
    assert call is not None and put is not None and theo is not None
    assert 0 < call.delta < 1 and -1 < put.delta < 0
    assert call.gamma > 0 and call.vega > 0 and call.theta < 0
    assert call.price == theo.price and call.index == ts_index(T0)
    # put-call parity: C - P = S e^-qT - K e^-rT
    years = (1797624000000 - T0) / (365 * 86_400_000)
    parity = theo.underlying_price * math.exp(-theo.dividend * years) - 560 * math.exp(
        -theo.interest * years
    )
    assert call.price - put.price == pytest.approx(parity, abs=0.01)
    assert m.greeks("SPY", T0) is None


def test_expired_options_have_nan_greeks():
    g = Market(0).greeks(".SPY240719C500", T0)
    assert g is not None and math.isnan(g.delta) and math.isnan(g.volatility)
    assert g.price >= 0


def test_summary_profile_underlying():
    m = Market(0)
    s = m.summary("SPY", T0)
    assert s.day_low_price <= s.day_open_price <= s.day_high_price
    assert s.day_close_price_type == "REGULAR" and s.prev_day_close_price_type == "FINAL"
    assert s.prev_day_id == s.day_id - 1
    p = m.profile("AAPL", T0)
    assert p.description and p.trading_status == "ACTIVE"
    assert p.low_52_week_price < p.high_52_week_price
    assert math.isnan(p.free_float) and not math.isnan(p.beta)
    assert math.isnan(m.profile("SPX", T0).earnings_per_share)
    u = m.underlying("SPY", T0)
    assert u is not None and u.option_volume == u.call_volume + u.put_volume
    assert m.underlying(OPTION, T0) is None


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("AAPL{=1d}", "AAPL{=d}"),
        ("AAPL{=1h}", "AAPL{=h}"),
        ("AAPL{=1m,tho=true}", "AAPL{=m,tho=true}"),
        ("AAPL{=5m,tho=true}", "AAPL{=5m,tho=true}"),
        ("SPY{=2mo}", "SPY{=2mo}"),
    ],
)
def test_candle_symbols_are_normalised(given, normalized):
    cs = parse_candle_symbol(given)
    assert cs is not None and cs.normalized == normalized and cs.supported
    assert parse_candle_symbol("AAPL") is None


def test_candle_slots_align_to_calendar():
    cs = parse_candle_symbol("SPY{=mo}")
    assert cs is not None
    assert cs.start(cs.slot(T0)) == 1719792000000  # 2024-07-01
    w = parse_candle_symbol("SPY{=w}")
    assert w is not None and w.start(w.slot(T0)) == 1721606400000  # Monday 2024-07-22


def test_candle_snapshot_flags_order_and_consistency():
    m = Market(0)
    cs = parse_candle_symbol("SPY{=5m}")
    assert cs is not None
    now = T0 + 1_234_567
    snap = m.candle_snapshot(cs, now - 3_600_000, now, limit=1000)
    assert len(snap) == 13
    assert snap[0].event_flags == SNAPSHOT_BEGIN and snap[-1].event_flags == SNAPSHOT_END
    assert all(c.event_flags == 0 for c in snap[1:-1])
    times = [c.time for c in snap]
    assert times == sorted(times, reverse=True)  # newest first
    for c in snap:
        assert c.event_symbol == "SPY{=5m}" and c.index == ts_index(c.time)
        assert c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high
        assert c.volume > 0 and c.low <= c.vwap <= c.high
    # a closed candle does not change later; the live one grows
    later = m.candle_snapshot(cs, now - 3_600_000, now + 600_000, limit=1000)
    assert later[3].time == snap[1].time
    assert later[3].close == snap[1].close and later[3].high == snap[1].high


def test_candle_snapshot_single_and_snipped():
    m = Market(0)
    cs = parse_candle_symbol("SPY{=d}")
    assert cs is not None
    (one,) = m.candle_snapshot(cs, T0, T0, limit=10)
    assert one.event_flags == SNAPSHOT_BEGIN | SNAPSHOT_END
    snap = m.candle_snapshot(cs, 1_000_000_000, T0, limit=50)  # the SDK's default fromTime
    assert len(snap) == 50
    assert snap[-1].event_flags == SNAPSHOT_SNIP and snap[0].event_flags == SNAPSHOT_BEGIN
    assert snap[0].time == 1721606400000


def test_index_candles_have_nan_volume():
    cs = parse_candle_symbol("SPX{=h}")
    assert cs is not None
    c = Market(0).candle(cs, cs.slot(T0), T0 + 10)
    assert math.isnan(c.volume) and c.open > 1000


def test_summary_samples_are_cached_but_the_same_as_computed_from_scratch():
    from tastyrec.sim.market import DAY_MS, Market

    symbols = ["SPY", ".SPY261218C600", "SPX"]
    day0 = 1_795_000_000_000 // DAY_MS * DAY_MS
    offsets = [1, 299_999, 300_000, 300_001, 4_000_000, 4_000_000, 3_000_000]
    times = [day0 + o for o in offsets] + [day0 + DAY_MS + 10, day0 + DAY_MS + 900_000]
    cached = Market(5)
    for t in times:
        for symbol in symbols:
            fresh = Market(5).summary(symbol, t)  # nothing cached
            assert cached.summary(symbol, t) == fresh, (symbol, t - day0)
