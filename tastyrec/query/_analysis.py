"""Analysis helpers people otherwise rewrite each time: bars, as-of joins, spread statistics.

Built on polars; each takes a DataFrame or a LazyFrame (from :func:`tastyrec.scan`, a live
frame or your own) and returns the same kind. Time columns default to ``recv_ns`` (local receipt
time, on every recorded row); pass ``time="time"`` to use a Trade's exchange time instead.

Conventions (stated once, tested against hand-computed values):

* A quote is *valid* when both prices are finite and positive; others (NaN or 0 on a one-sided
  book) are left out of mids, spreads and bars.
* ``mid = (bid + ask) / 2``; ``spread = ask - bid``; ``spread_bps = spread / mid * 10_000``;
  ``micro_price = (bid * ask_size + ask * bid_size) / (bid_size + ask_size)`` (the size-weighted
  mid that leans toward the side with less size); ``imbalance = (bid_size - ask_size) /
  (bid_size + ask_size)``; both are null when a size is NaN or both sizes are 0.
* Bars are left-closed, left-labelled windows ``[t, t + every)`` per symbol; empty windows make
  no bar. Trades with a NaN or non-positive price are left out of bars.

This module imports polars only (no DuckDB, no file access).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

import polars as pl

__all__ = ("asof_quotes", "mid_bars", "ohlcv", "quote_metrics", "spread_stats")

F = TypeVar("F", pl.DataFrame, pl.LazyFrame)

_BID, _ASK, _BID_SIZE, _ASK_SIZE = "bid_price", "ask_price", "bid_size", "ask_size"


def _like(result: pl.LazyFrame, original: F) -> F:
    return result.collect() if isinstance(original, pl.DataFrame) else result


def _valid_quote() -> pl.Expr:
    bid, ask = pl.col(_BID), pl.col(_ASK)
    return bid.is_finite() & ask.is_finite() & (bid > 0) & (ask > 0)


def quote_metrics(quotes: F) -> F:
    """Valid quotes with ``mid``, ``spread``, ``spread_bps``, ``micro_price`` and ``imbalance``.

    Args:
        quotes: rows with ``bid_price``, ``ask_price``, ``bid_size`` and ``ask_size``.
    """
    bid, ask = pl.col(_BID), pl.col(_ASK)
    bid_size, ask_size = pl.col(_BID_SIZE), pl.col(_ASK_SIZE)
    total = bid_size + ask_size
    # NaN sizes (DXLink sends them) or an empty book make both null, left out of means
    sized = bid_size.is_finite() & ask_size.is_finite() & (total > 0)
    result = (
        quotes.lazy()
        .filter(_valid_quote())
        .with_columns(mid=(bid + ask) / 2, spread=ask - bid)
        .with_columns(
            spread_bps=pl.col("spread") / pl.col("mid") * 10_000,
            micro_price=pl.when(sized).then((bid * ask_size + ask * bid_size) / total),
            imbalance=pl.when(sized).then((bid_size - ask_size) / total),
        )
    )
    return _like(result, quotes)


def ohlcv(
    trades: F,
    every: str | timedelta = "1m",
    *,
    time: str = "recv_ns",
    price: str = "price",
    size: str | None = "size",
    by: str | None = "event_symbol",
) -> F:
    """Open/high/low/close/volume bars at any interval (``"1s"``, ``"5m"``, ``"1h"``...).

    Example usage::

        bars = ohlcv(tastyrec.scan("data", Trade), "5m").collect()

    Args:
        trades: rows with ``time``, ``price`` (and ``size``) columns.
        every: the bar length, a polars duration string or a timedelta.
        time: the time column bars are cut on.
        price: the price column.
        size: the size column summed into ``volume`` (and weighting ``vwap``); ``None``: neither.
        by: bars per value of this column (``None``: one series).

    Returns:
        One row per non-empty bar: ``by``, ``time`` (the bar's start), ``open``, ``high``,
        ``low``, ``close``, ``count`` and, with ``size``, ``volume`` and ``vwap``; sorted by
        ``by``, then time.
    """
    p = pl.col(price)
    aggs = [
        p.first().alias("open"),
        p.max().alias("high"),
        p.min().alias("low"),
        p.last().alias("close"),
        pl.len().alias("count"),
    ]
    if size is not None:
        s = pl.col(size)
        aggs += [s.sum().alias("volume"), ((p * s).sum() / s.sum()).alias("vwap")]
    keys: list[str] = [by] if by is not None else []
    result = (
        trades.lazy()
        .filter(p.is_finite() & (p > 0))
        .sort([*keys, time], maintain_order=True)
        .group_by_dynamic(time, every=every, closed="left", label="left", group_by=by)
        .agg(aggs)
        .sort([*keys, time])
    )
    return _like(result, trades)


def mid_bars(
    quotes: F,
    every: str | timedelta = "1m",
    *,
    time: str = "recv_ns",
    by: str | None = "event_symbol",
) -> F:
    """OHLC bars of the quote mid price (valid quotes only); ``count`` is quotes per bar."""
    with_mid = quote_metrics(quotes.lazy())
    result = ohlcv(with_mid, every, time=time, price="mid", size=None, by=by)
    return _like(result, quotes)


def asof_quotes(
    trades: F,
    quotes: pl.DataFrame | pl.LazyFrame,
    *,
    time: str = "recv_ns",
    quote_time: str = "recv_ns",
    by: str = "event_symbol",
    tolerance: str | timedelta | None = None,
) -> F:
    """Each trade with the quote prevailing when it happened (the last at or before it).

    Args:
        trades: trade rows with ``by`` and ``time`` columns.
        quotes: quote rows with ``by``, ``quote_time`` and the four price and size columns.
        time: the trades' time column.
        quote_time: the quotes' time column.
        by: the symbol column both share.
        tolerance: ignore quotes older than this (``"5s"``); ``None``: any older quote.

    Returns:
        The trades in time order, with ``bid_price``, ``ask_price``, ``bid_size``,
        ``ask_size``, ``mid``, ``spread``, ``quote_time`` (when the quote was received) and
        ``side``: ``"buy"`` at or above the ask, ``"sell"`` at or below the bid, ``"inside"``
        between, null without a quote. Invalid quotes are skipped, not matched.
    """
    q = (
        quote_metrics(quotes.lazy())
        .select(
            by,
            pl.col(quote_time).alias("quote_time"),
            _BID,
            _ASK,
            _BID_SIZE,
            _ASK_SIZE,
            "mid",
            "spread",
        )
        .sort("quote_time", maintain_order=True)
    )
    price = pl.col("price")
    result = (
        trades.lazy()
        .sort(time, maintain_order=True)
        .join_asof(
            q,
            left_on=time,
            right_on="quote_time",
            by=by,
            strategy="backward",
            tolerance=tolerance,
            coalesce=False,
            check_sortedness=False,  # sorted by time just above; polars cannot check with `by`
        )
        .with_columns(
            side=pl.when(pl.col(_ASK).is_null())
            .then(None)
            .when(price >= pl.col(_ASK))
            .then(pl.lit("buy"))
            .when(price <= pl.col(_BID))
            .then(pl.lit("sell"))
            .otherwise(pl.lit("inside"))
        )
    )
    if by + "_right" in result.collect_schema().names():
        result = result.drop(by + "_right")
    return _like(result, trades)


def spread_stats(
    quotes: F,
    *,
    time: str = "recv_ns",
    by: str | None = "event_symbol",
) -> F:
    """Spread and micro-price statistics per symbol over valid quotes.

    Returns:
        Per ``by``: ``quotes``; ``mean_spread``, ``median_spread``, ``min_spread``,
        ``max_spread``; ``time_weighted_spread`` (each spread weighted by how long it stood,
        until the next quote of the symbol; the last quote has weight 0); ``mean_spread_bps``;
        ``mean_micro_minus_mid`` (the micro-price's mean offset from the mid, in price units);
        ``mean_imbalance``. Sorted by ``by``.
    """
    keys: list[str] = [by] if by is not None else []
    over = pl.lit(True) if by is None else pl.col(by)
    metrics = (
        quote_metrics(quotes.lazy())
        .sort([*keys, time], maintain_order=True)
        .with_columns(
            _held=(pl.col(time).shift(-1).over(over) - pl.col(time))
            .dt.total_nanoseconds()
            .fill_null(0)
            .cast(pl.Float64)
        )
    )
    spread = pl.col("spread")
    aggs = [
        pl.len().alias("quotes"),
        spread.mean().alias("mean_spread"),
        spread.median().alias("median_spread"),
        spread.min().alias("min_spread"),
        spread.max().alias("max_spread"),
        pl.when(pl.col("_held").sum() > 0)
        .then((spread * pl.col("_held")).sum() / pl.col("_held").sum())
        .otherwise(None)
        .alias("time_weighted_spread"),
        pl.col("spread_bps").mean().alias("mean_spread_bps"),
        (pl.col("micro_price") - pl.col("mid")).mean().alias("mean_micro_minus_mid"),
        pl.col("imbalance").mean().alias("mean_imbalance"),
    ]
    if by is None:
        result = metrics.select(aggs)
    else:
        result = metrics.group_by(by).agg(aggs).sort(by)
    return _like(result, quotes)
