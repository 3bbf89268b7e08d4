"""Parallel backtest (issue 19): ``tastyrec.backtest`` over 8 days, a process pool of 2 vs serial.

A script, not a test. It writes a synthetic 8-day Quote recording with the recorder's own Parquet
writer (``benchmarks/_synthetic.py``'s ``frame_quotes`` and ``write_recording``: one frame of 20
quotes every 2 ms, ``--rows`` per day), then runs one strategy -- every Quote of the day through
``ReplayStreamer.listen`` into a running mean spread and mid, the shape of a real backtest loop
-- with ``tastyrec.backtest(by="day")``:

  (a) serially in this process (``executor=None``);
  (b) on ``ProcessPoolExecutor(2)`` (spawn; a fresh pool each repeat, its start-up counted).

Medians of ``--repeats`` wall times. The machine has 2 cores shared with other jobs: the ratio
from the same run is what counts, not the absolute figures.

Usage::

    .venv/bin/python benchmarks/bench_parallel_backtest.py [--rows 400000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout
sys.path.insert(0, str(HERE))

import polars as pl  # noqa: E402
from _synthetic import frame_quotes, write_recording  # noqa: E402

import tastyrec  # noqa: E402
from tastyrec import Quote, ReplayStreamer  # noqa: E402

DAYS = 8
DAY_NS = 86_400 * 10**9


async def mean_spread(streamer: ReplayStreamer) -> dict[str, float | int]:
    """Every Quote of the day, one at a time, as a backtest's loop takes them."""
    n, spread, mid = 0, 0.0, 0.0
    async for quote in streamer.listen(Quote):
        n += 1
        spread += quote.ask_price - quote.bid_price
        mid += (quote.ask_price + quote.bid_price) / 2
    return {"quotes": n, "mean_spread": spread / max(n, 1), "mean_mid": mid / max(n, 1)}


def write_days(root: Path, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    table = frame_quotes(rows, 200, seed=19)
    for day in range(DAYS):
        exact = pc.add(table.column("recv_epoch_ns"), day * DAY_NS)
        shifted = table.set_column(
            table.schema.get_field_index("recv_epoch_ns"), "recv_epoch_ns", exact
        ).set_column(
            table.schema.get_field_index("recv_ns"),
            "recv_ns",
            pc.divide(exact, 1000).cast(pa.timestamp("us", tz="UTC")),
        )
        write_recording(root, shifted.cast(table.schema), file_rows=rows)


def timed(executor: ProcessPoolExecutor | None, root: Path) -> tuple[float, pl.DataFrame]:
    began = time.perf_counter()
    result = tastyrec.backtest(mean_spread, root, executor=executor, types=[Quote])
    return time.perf_counter() - began, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000, help="quotes per day")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tastyrec-bench-backtest-"))
    try:
        write_days(root, args.rows)
        print(
            f"{DAYS} days x {args.rows:,} quotes, {platform.python_version()}, "
            f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
        )
        serial, pooled = [], []
        expected = None
        for _ in range(args.repeats):
            seconds, result = timed(None, root)
            serial.append(seconds)
            spawn = multiprocessing.get_context("spawn")
            began = time.perf_counter()
            with ProcessPoolExecutor(2, mp_context=spawn) as pool:
                _, pooled_result = timed(pool, root)
            pooled.append(time.perf_counter() - began)  # the pool's start-up and shutdown too
            assert result["error"].null_count() == DAYS, result
            assert result.drop("seconds").equals(pooled_result.drop("seconds"))
            assert result["quotes"].to_list() == [args.rows] * DAYS
            expected = result
        assert expected is not None
        s, p = statistics.median(serial), statistics.median(pooled)
        rate = DAYS * args.rows
        print(f"serial:           {s:6.2f} s  ({rate / s:,.0f} quotes/s)  runs {serial}")
        print(f"process pool (2): {p:6.2f} s  ({rate / p:,.0f} quotes/s)  runs {pooled}")
        print(f"speed-up: {s / p:.2f}x  (load now {os.getloadavg()[0]:.1f})")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
