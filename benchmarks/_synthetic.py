"""Synthetic Quote recordings for the benchmarks, written the way the recorder writes them.

One home for what ``bench_sql.py``, ``bench_query_s3.py``, ``bench_replay.py`` (and the scripts that
borrow their data: ``bench_compact.py``, ``bench_convert_memory.py``,
``bench_parallel_backtest.py``) measure against: quotes in the current schema (version 2: the
microsecond ``recv_ns`` and the exact ``recv_epoch_ns``, built by
:func:`tastyrec.schema.receipt_arrays` as the recorder builds them), written with the recorder's
Parquet writer (:func:`tastyrec.storage.parquet.write_parquet`: zstd, dictionary, delta receipt
times, 256Ki-row row groups) in the recorder's layout.

Two shapes, each with the seeds and random draws it always had, so figures in RESULTS.md stay
comparable:

* :func:`uniform_quotes` / :func:`make_recording` (the SQL, S3-query, compaction and memory
  benchmarks): one quote every 1 µs, ``SYM000``-style symbols with random-walk mids, prices
  rounded to the cent, 1 % NaN bid sizes, ``--files`` files in one partition;
* :func:`frame_quotes` / :func:`write_recording` (the replay and backtest benchmarks): frames of
  20 quotes sharing a receipt time every 2 ms, ``SYM0000``-style symbols around fixed levels,
  seven exchange codes, ~0.3 % NaN bid sizes, files of ``file_rows`` rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa

from tastyrec.events import Quote
from tastyrec.schema import RECV_COLUMN, RECV_EXACT_COLUMN, arrow_schema, receipt_arrays
from tastyrec.storage import layout
from tastyrec.storage.parquet import write_parquet

NS: Final = 1_000_000_000
#: 2026-11-20 14:00 UTC (09:00 New York): where :func:`make_recording` starts.
START_NS: Final = 1_795_269_600 * NS
#: 2026-11-18, during New York trading hours: where :func:`frame_quotes` starts.
FRAMES_START_NS: Final = 1_795_000_000_000_000_000
EXCHANGES: Final = np.array(["Q", "N", "P", "K", "Z", "V", "X"])


def quote_table(
    symbol: np.ndarray[Any, Any],
    recv_ns: np.ndarray[Any, np.dtype[np.int64]],
    quote_ms: np.ndarray[Any, Any],
    exchanges: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    prices: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    sizes: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
) -> pa.Table:
    """Quotes in the recorder's schema from per-row arrays: ``quote_ms`` is both the bid and the
    ask time (epoch ms), ``exchanges``/``prices``/``sizes`` are (bid, ask) pairs; event time,
    sequence and nano part are zero, the receipt columns come from ``recv_ns`` (epoch ns)."""
    schema = arrow_schema(Quote)  # the current schema version (its metadata says which)
    count = len(recv_ns)
    ms_type = schema.field("bid_time").type
    quote_time = pa.array(np.asarray(quote_ms, np.int64)).cast(ms_type)
    cols = {
        "event_symbol": pa.array(symbol, pa.string()),
        "event_time": pa.array(np.zeros(count, np.int64)).cast(schema.field("event_time").type),
        "sequence": pa.array(np.zeros(count, np.int64)),
        "time_nano_part": pa.array(np.zeros(count, np.int64)),
        "bid_time": quote_time,
        "bid_exchange_code": pa.array(exchanges[0], pa.string()),
        "ask_time": quote_time,
        "ask_exchange_code": pa.array(exchanges[1], pa.string()),
        "bid_price": pa.array(prices[0], pa.float64()),
        "ask_price": pa.array(prices[1], pa.float64()),
        "bid_size": pa.array(sizes[0], pa.float64()),
        "ask_size": pa.array(sizes[1], pa.float64()),
    }
    cols[RECV_COLUMN], cols[RECV_EXACT_COLUMN] = receipt_arrays(
        np.ascontiguousarray(recv_ns, np.int64)
    )
    return pa.table(cols, schema=schema)


def uniform_quotes(
    count: int, first_ns: int, rng: np.random.Generator, symbols: int = 500
) -> pa.Table:
    """``count`` synthetic quotes received 1 µs apart from ``first_ns``: ``symbols`` symbols,
    random-walk prices, 1 % NaN bid sizes (the draws of ``rng`` in a fixed order)."""
    names = np.array([f"SYM{i:03d}" for i in range(symbols)], dtype=object)
    recv = first_ns + np.arange(count, dtype=np.int64) * 1000  # 1 M quotes/s
    sym = rng.integers(0, symbols, count)
    mid = 100 + sym * 0.5 + rng.normal(0, 0.05, count).cumsum() / 100
    spread = rng.integers(1, 5, count) * 0.01
    sizes = rng.integers(1, 50, (2, count)).astype(np.float64) * 100
    sizes[0, rng.random(count) < 0.01] = np.nan
    exchange = np.full(count, "Q", object)
    return quote_table(
        names[sym],
        recv,
        recv // 1_000_000,
        (exchange, exchange),
        (np.round(mid - spread / 2, 2), np.round(mid + spread / 2, 2)),
        (sizes[0], sizes[1]),
    )


def make_recording(root: Path, rows: int, files: int, symbols: int = 500, seed: int = 1) -> None:
    """``rows`` :func:`uniform_quotes` from :data:`START_NS` in ``files`` files of one Quote
    partition of ``root``, written like the recorder (batches of 8192 rows)."""
    rng = np.random.default_rng(seed)
    per_file = rows // files
    for n in range(files):
        count = per_file if n < files - 1 else rows - per_file * (files - 1)
        first_ns = START_NS + n * per_file * 1000
        table = uniform_quotes(count, first_ns, rng, symbols)
        day = layout.partition_date(first_ns)
        path = layout.parquet_path(
            root, "Quote", day, layout.file_name(first_ns, "bench001", n + 1)
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        write_parquet(path, table.schema, table.to_batches(max_chunksize=8192))


def frame_quotes(rows: int, symbols: int, seed: int) -> pa.Table:
    """``rows`` realistic Quotes from :data:`FRAMES_START_NS`: 20 events per frame share a
    receipt time, one frame every 2 ms, ~0.3 % NaN sizes."""
    rng = np.random.default_rng(seed)
    names = np.array([f"SYM{i:04d}" for i in range(symbols)])
    sym = rng.integers(0, symbols, rows)
    base = rng.uniform(5, 600, symbols)
    mid = np.round(base[sym] * (1 + rng.normal(0, 0.001, rows)), 2)
    spread = rng.integers(1, 5, rows) / 100
    recv = FRAMES_START_NS + (np.arange(rows) // 20) * 2_000_000  # one frame every 2 ms
    t_ms = recv // 1_000_000 - rng.integers(0, 50, rows)
    bid_size = rng.integers(1, 50, rows) * 100.0
    bid_size[rng.random(rows) < 0.003] = np.nan
    bid_exchange = EXCHANGES[rng.integers(0, len(EXCHANGES), rows)]
    ask_exchange = EXCHANGES[rng.integers(0, len(EXCHANGES), rows)]
    ask_size = rng.integers(1, 50, rows) * 100.0
    return quote_table(
        names[sym],
        recv,
        t_ms,
        (bid_exchange, ask_exchange),
        (mid - spread / 2, mid + spread / 2),
        (bid_size, ask_size),
    )


def write_recording(root: Path, table: pa.Table, file_rows: int) -> list[Path]:
    """``table`` (Quotes sorted by receipt time) in files of ``file_rows`` rows under ``root``,
    written like the recorder (batches of 65,536 rows); the paths, in order."""
    schema = arrow_schema(Quote)
    paths = []
    for seq, offset in enumerate(range(0, table.num_rows, file_rows), start=1):
        part = table.slice(offset, file_rows)
        first = int(part.column(RECV_EXACT_COLUMN)[0].as_py())
        path = layout.parquet_path(
            root, "Quote", layout.partition_date(first), layout.file_name(first, "bench", seq)
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        write_parquet(path, schema, part.to_batches(max_chunksize=65_536))
        paths.append(path)
    return paths
