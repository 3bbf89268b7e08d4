"""Bars, as-of joins and spread statistics against values computed by hand."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from tastyrec.query import asof_quotes, mid_bars, ohlcv, quote_metrics, spread_stats

T0 = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def frame(rows: list[dict]) -> pl.DataFrame:
    df = pl.DataFrame(rows)
    return df.with_columns(pl.col("recv_ns").cast(pl.Datetime("ns", "UTC")))


TRADES = frame(
    [
        {"event_symbol": "SPY", "recv_ns": at(0), "price": 10.0, "size": 100.0},
        {"event_symbol": "SPY", "recv_ns": at(10), "price": 12.0, "size": 200.0},
        {"event_symbol": "SPY", "recv_ns": at(30), "price": math.nan, "size": 5.0},
        {"event_symbol": "QQQ", "recv_ns": at(30), "price": 5.0, "size": 1.0},
        {"event_symbol": "SPY", "recv_ns": at(59.999), "price": 9.0, "size": 100.0},
        {"event_symbol": "SPY", "recv_ns": at(60), "price": 11.0, "size": 50.0},
        {"event_symbol": "SPY", "recv_ns": at(185), "price": 13.0, "size": 10.0},
    ]
)

QUOTES = frame(
    [
        {"event_symbol": "SPY", "recv_ns": at(-1), "bid_price": 9.9, "ask_price": 10.1,
         "bid_size": 100.0, "ask_size": 300.0},
        {"event_symbol": "SPY", "recv_ns": at(10), "bid_price": 11.9, "ask_price": 12.0,
         "bid_size": 10.0, "ask_size": 10.0},
        {"event_symbol": "SPY", "recv_ns": at(50), "bid_price": 0.0, "ask_price": 9.5,
         "bid_size": 0.0, "ask_size": 10.0},
    ]
)  # fmt: skip

STATS_QUOTES = frame(
    [
        {"event_symbol": "SPY", "recv_ns": at(0), "bid_price": 10.0, "ask_price": 10.2,
         "bid_size": 100.0, "ask_size": 300.0},
        {"event_symbol": "SPY", "recv_ns": at(10), "bid_price": 10.0, "ask_price": 10.1,
         "bid_size": 200.0, "ask_size": 200.0},
        {"event_symbol": "SPY", "recv_ns": at(20), "bid_price": math.nan, "ask_price": 10.1,
         "bid_size": 1.0, "ask_size": 1.0},
        {"event_symbol": "SPY", "recv_ns": at(40), "bid_price": 10.05, "ask_price": 10.15,
         "bid_size": 300.0, "ask_size": 100.0},
        {"event_symbol": "AAA", "recv_ns": at(5), "bid_price": 1.0, "ask_price": 1.5,
         "bid_size": 1.0, "ask_size": 3.0},
    ]
)  # fmt: skip


def test_ohlcv_one_minute_bars():
    bars = ohlcv(TRADES, "1m")
    assert bars.columns == [
        "event_symbol", "recv_ns", "open", "high", "low", "close", "count", "volume", "vwap"
    ]  # fmt: skip
    rows = bars.to_dicts()
    assert [(r["event_symbol"], r["recv_ns"]) for r in rows] == [
        ("QQQ", at(0)),
        ("SPY", at(0)),
        ("SPY", at(60)),
        ("SPY", at(180)),  # no bar for the empty minute 2:00-3:00
    ]
    spy0 = rows[1]
    # the NaN trade is left out; 59.999 s falls in the first minute
    assert (spy0["open"], spy0["high"], spy0["low"], spy0["close"]) == (10.0, 12.0, 9.0, 9.0)
    assert spy0["count"] == 3 and spy0["volume"] == 400.0
    assert spy0["vwap"] == pytest.approx((10 * 100 + 12 * 200 + 9 * 100) / 400)  # 10.75
    assert rows[2]["open"] == rows[2]["close"] == 11.0 and rows[2]["volume"] == 50.0
    assert rows[3]["close"] == 13.0 and rows[3]["count"] == 1
    assert rows[0]["vwap"] == 5.0


def test_ohlcv_other_intervals_and_lazy_frames():
    bars = ohlcv(TRADES.lazy(), timedelta(seconds=30), by=None, size=None)
    assert isinstance(bars, pl.LazyFrame)
    got = bars.collect()
    assert "volume" not in got.columns
    # 0-30 s: SPY 10, 12; 30-60 s: QQQ 5, SPY 9; 60-90 s: 11; 180-210 s: 13
    assert got["recv_ns"].to_list() == [at(0), at(30), at(60), at(180)]
    assert got["open"].to_list() == [10.0, 5.0, 11.0, 13.0]
    assert got["low"].to_list() == [10.0, 5.0, 11.0, 13.0]
    assert got["high"].to_list() == [12.0, 9.0, 11.0, 13.0]
    assert got["count"].to_list() == [2, 2, 1, 1]


def test_mid_bars():
    bars = mid_bars(STATS_QUOTES, "1m").filter(pl.col("event_symbol") == "SPY")
    # valid mids: 10.1, 10.05, 10.1 (the NaN bid is left out)
    assert bars.select("open", "high", "low", "close", "count").row(0) == pytest.approx(
        (10.1, 10.1, 10.05, 10.1, 3)
    )


def test_asof_join_takes_the_prevailing_valid_quote():
    joined = asof_quotes(TRADES, QUOTES)
    rows = {(r["event_symbol"], r["recv_ns"]): r for r in joined.to_dicts()}
    assert joined["recv_ns"].is_sorted()
    first = rows[("SPY", at(0))]
    assert (first["bid_price"], first["ask_price"], first["side"]) == (9.9, 10.1, "inside")
    assert first["mid"] == pytest.approx(10.0) and first["spread"] == pytest.approx(0.2)
    assert first["quote_time"] == at(-1)
    # a quote at exactly the trade's time prevails; price at the ask is a buy
    exact = rows[("SPY", at(10))]
    assert (exact["bid_price"], exact["side"], exact["quote_time"]) == (11.9, "buy", at(10))
    # the one-sided quote at 50 s is skipped: the 10 s quote prevails; 9 <= bid is a sell
    late = rows[("SPY", at(59.999))]
    assert (late["bid_price"], late["side"]) == (11.9, "sell")
    # no QQQ quote at all
    qqq = rows[("QQQ", at(30))]
    assert qqq["bid_price"] is None and qqq["side"] is None
    assert len(joined) == len(TRADES)


def test_asof_join_tolerance():
    joined = asof_quotes(TRADES, QUOTES.lazy(), tolerance="5s")
    rows = {(r["event_symbol"], r["recv_ns"]): r for r in joined.to_dicts()}
    assert rows[("SPY", at(0))]["bid_price"] == 9.9  # 1 s old
    assert rows[("SPY", at(59.999))]["bid_price"] is None  # 49.999 s old


def test_quote_metrics_micro_price():
    m = quote_metrics(STATS_QUOTES).filter(pl.col("event_symbol") == "SPY")
    assert len(m) == 3  # the NaN bid is not a valid quote
    # (10 * 300 + 10.2 * 100) / 400: leans toward the bid, where the size is smaller
    assert m["micro_price"].to_list() == pytest.approx([10.05, 10.05, 10.125])
    assert m["imbalance"].to_list() == pytest.approx([-0.5, 0.0, 0.5])
    assert m["spread_bps"][0] == pytest.approx(0.2 / 10.1 * 10_000)


def test_spread_stats():
    stats = spread_stats(STATS_QUOTES)
    assert stats["event_symbol"].to_list() == ["AAA", "SPY"]
    spy = stats.row(1, named=True)
    assert spy["quotes"] == 3
    assert spy["mean_spread"] == pytest.approx((0.2 + 0.1 + 0.1) / 3)
    assert spy["median_spread"] == pytest.approx(0.1)
    assert (spy["min_spread"], spy["max_spread"]) == pytest.approx((0.1, 0.2))
    # 0.2 stood 10 s, 0.1 stood 30 s (the invalid quote does not end it), the last one 0 s
    assert spy["time_weighted_spread"] == pytest.approx((0.2 * 10 + 0.1 * 30) / 40)
    assert spy["mean_spread_bps"] == pytest.approx(
        (0.2 / 10.1 + 0.1 / 10.05 + 0.1 / 10.1) * 10_000 / 3
    )
    assert spy["mean_micro_minus_mid"] == pytest.approx((-0.05 + 0.0 + 0.025) / 3)
    assert spy["mean_imbalance"] == pytest.approx(0.0)
    aaa = stats.row(0, named=True)
    # a single quote: no time it stood for
    assert aaa["quotes"] == 1 and aaa["time_weighted_spread"] is None
    assert aaa["mean_micro_minus_mid"] == pytest.approx((1.0 * 3 + 1.5 * 1) / 4 - 1.25)
    overall = spread_stats(STATS_QUOTES.lazy(), by=None).collect()
    assert overall["quotes"].item() == 4


def test_nan_sizes_leave_micro_price_out_not_the_spread():
    quotes = frame(
        [
            {"event_symbol": "SPY", "recv_ns": at(0), "bid_price": 10.0, "ask_price": 10.2,
             "bid_size": math.nan, "ask_size": 300.0},
            {"event_symbol": "SPY", "recv_ns": at(1), "bid_price": 10.0, "ask_price": 10.1,
             "bid_size": 100.0, "ask_size": 300.0},
        ]
    )  # fmt: skip
    m = quote_metrics(quotes)
    assert m["micro_price"].to_list()[0] is None and m["imbalance"].to_list()[0] is None
    stats = spread_stats(quotes).row(0, named=True)
    assert stats["quotes"] == 2 and stats["mean_spread"] == pytest.approx(0.15)
    assert stats["mean_micro_minus_mid"] == pytest.approx((10.0 * 300 + 10.1 * 100) / 400 - 10.05)
    assert stats["mean_imbalance"] == pytest.approx(-0.5)
