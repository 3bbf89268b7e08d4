"""Bars and as-of joins with polars: 5-second OHLCV bars, and each trade with its prevailing quote.

Run: python examples/bars_asof.py [RECORDING] (default: the sample recording shipped in tests/).
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

from tastyrec.events import Quote, Trade
from tastyrec.query import asof_quotes, mid_bars, ohlcv, scan, spread_stats

ROOT = Path(__file__).parent.parent
path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests" / "data" / "sample"

trades = scan(path, Trade, symbols=["SPY"])
quotes = scan(path, Quote, symbols=["SPY"])

print("SPY trade bars, 5 s:")
print(ohlcv(trades, "5s").collect())
print("SPY quote-mid bars, 5 s:")
print(mid_bars(quotes, "5s").select("recv_ns", "open", "high", "low", "close", "count").collect())

joined = asof_quotes(trades, quotes).collect()
print("trades with the prevailing quote:")
print(joined.select("recv_ns", "price", "size", "bid_price", "ask_price", "side").head(8))
print(joined.group_by("side").agg(pl.len().alias("trades")).sort("side"))

print("spread and micro-price statistics:")
with pl.Config(tbl_cols=-1, tbl_width_chars=250):
    print(spread_stats(scan(path, Quote)).collect())
