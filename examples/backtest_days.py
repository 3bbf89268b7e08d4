"""Backtest a strategy over every symbol-day of a recording, in parallel on a process pool.

``tastyrec.backtest`` runs one replay per day (``by="day"``) or per symbol and day
(``by="symbol-day"``) as tasks of any ``concurrent.futures.Executor`` -- here a process pool;
on a cluster, a Dask client's ``client.get_executor()`` -- and gathers one row per task in a
polars DataFrame. A task that fails has its exception in the ``error`` column; the others go on.

The strategy is a module-level ``async`` function (tasks are pickled to the workers). It gets
the slice's streamer already subscribed to ``types`` for its symbol, so it only listens.

Run: python examples/backtest_days.py [RECORDING]   (default: the sample in tests/data/sample)
"""

from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import polars as pl

import tastyrec
from tastyrec import Quote, ReplayStreamer

SAMPLE = Path(__file__).resolve().parent.parent / "tests" / "data" / "sample"


async def spread_stats(streamer: ReplayStreamer) -> dict[str, float | int]:
    """Quotes seen, mean spread and last mid of one symbol-day."""
    count, spread_sum, last_mid = 0, 0.0, float("nan")
    async for quote in streamer.listen(Quote):
        spread = quote.ask_price - quote.bid_price
        if spread == spread:  # NaN: a one-sided quote
            count += 1
            spread_sum += spread
            last_mid = quote.mid_price
    if not count:
        raise ValueError("no two-sided quote")
    return {"quotes": count, "mean_spread": spread_sum / count, "last_mid": last_mid}


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else SAMPLE
    # "spawn" (or "forkserver"): a forked child of a process that ran polars can deadlock
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = tastyrec.backtest(
            spread_stats, path, executor=pool, by="symbol-day", types=[Quote]
        )
    with pl.Config(tbl_rows=40, tbl_cols=10):
        print(results.drop("seconds"))
    failed = results.filter(pl.col("error").is_not_null())
    print(f"{results.height} symbol-days, {failed.height} failed")


if __name__ == "__main__":
    main()
