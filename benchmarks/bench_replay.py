"""Replay speed (issue 4): ReplayStreamer.listen() and replay_frames() against the SDK.

A script, not a test. It writes a synthetic Quote recording with the recorder's own Parquet writer
(``tastyrec.storage.parquet.write_parquet``: zstd, dictionary, delta-encoded receipt times, row
groups of 256Ki rows) in the recorder's layout, files of ``--file-rows`` rows
(``_synthetic.frame_quotes`` and ``write_recording``), then measures in one run:

  (a) the baseline: the tastytrade SDK building the same Quotes from the wire --
      ``Quote.from_stream(values)`` on COMPACT value lists of 100 events (the values as the
      server sends them, already parsed from JSON; the JSON parse is not counted);
  (b) ``ReplayStreamer.listen(Quote)`` as fast as possible, every Quote of the recording, from the
      Parquet files to tastyrec Quote Structs in the consumer's ``async for``;
  (c) the vectorised path: ``replay_frames(root, Quote)`` rows per second (polars frames).

With ``--phases`` it also splits (b) into what it is made of, in CPU nanoseconds per event, by
running the replay engine's cursor (``tastyrec.replay._engine.Cursor``) without the streamer:
``read`` (Parquet decoding, the merge and slicing into steps), ``build`` (turning each step's
columns into Quote Structs, ``to_events``), ``free`` (dropping them), and ``hand out`` -- what
``listen()`` costs on top: the streamer, its async generator and the consumer's ``async for``.

Targets: (b) >= 2,000,000 events/s and >= 15x (a); (c) >= 20,000,000 rows/s. Medians of
``--repeats`` runs; the machine is shared, so ratios from the same run are what count. Each rate
is given twice: per second of wall time, and per second of this process's CPU time (all its
threads), which other processes on a shared machine disturb far less; pin the script to one CPU
(``taskset -c 1``) to make both mean one core.

Usage::

    .venv/bin/python benchmarks/bench_replay.py [--rows 5000000] [--file-rows 1000000]
        [--sdk-rows 200000] [--repeats 5] [--symbols 500] [--phases]
"""

from __future__ import annotations

import argparse
import gc
import math
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import polars as pl
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))  # _synthetic

from _synthetic import frame_quotes, write_recording

from tastyrec.events import Quote
from tastyrec.replay import ReplayStreamer
from tastyrec.replay._engine import Cursor
from tastyrec.replay.frames import replay_frames
from tastyrec.replay.reader import DEFAULT_CHUNK_ROWS
from tastyrec.schema import arrow_schema


def sdk_messages(table: pa.Table, rows: int) -> list[list[Any]]:
    """The first ``rows`` Quotes as COMPACT value lists of 100 events, the SDK's field order."""
    part = table.slice(0, rows)
    columns = []
    for name in arrow_schema(Quote).names[:-2]:  # not the receipt times
        col = part.column(name)
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.int64())
        values = col.to_pylist()
        if pa.types.is_floating(col.type):
            values = ["NaN" if isinstance(v, float) and math.isnan(v) else v for v in values]
        columns.append(values)
    flat = [v for row in zip(*columns, strict=True) for v in row]
    width = len(columns)
    return [flat[i : i + 100 * width] for i in range(0, len(flat), 100 * width)]


def run_sdk(messages: list[list[Any]]) -> int:
    from tastytrade.dxfeed import Quote as SdkQuote

    n = 0
    for values in messages:
        n += len(SdkQuote.from_stream(values))
    return n


async def run_listen(root: Path) -> int:
    n = 0
    async with ReplayStreamer(root) as replay:
        await replay.subscribe(Quote, ["*"])
        async for _ in replay.listen(Quote):
            n += 1
    return n


def run_frames(root: Path) -> int:
    return sum(frame.height for frame in replay_frames(root, Quote))


def run_phases(root: Path) -> dict[str, float]:
    """CPU seconds of the cursor's phases over the whole recording: ``read``, ``build``,
    ``free`` (see the module docstring)."""
    cursor = Cursor(root, start_ns=None, end_ns=None, chunk_rows=DEFAULT_CHUNK_ROWS)
    cursor.subscribe(Quote, ["*"])
    spent = {"read": 0.0, "build": 0.0, "free": 0.0}
    clock = time.process_time
    gc.collect()
    while True:
        c0 = clock()
        step = cursor.next_step()
        c1 = clock()
        spent["read"] += c1 - c0
        if step is None:
            return spent
        batch = cursor.decode(step)
        c2 = clock()
        del batch
        spent["build"] += c2 - c1
        spent["free"] += clock() - c2


def timed(fn: Any) -> tuple[float, float, int]:
    """(wall seconds, process CPU seconds, what ``fn`` returned)."""
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    n = fn()
    return time.perf_counter() - t0, time.process_time() - c0, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--file-rows", type=int, default=1_000_000)
    parser.add_argument("--sdk-rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--phases", action="store_true", help="split listen() into phases")
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()}, polars {pl.__version__}, pyarrow {pa.__version__}; "
        f"{args.rows:,} Quotes in files of {args.file_rows:,} rows"
    )
    folder = Path(tempfile.mkdtemp(prefix="bench_replay_"))
    try:
        table = frame_quotes(args.rows, args.symbols, args.seed)
        files = write_recording(folder, table, args.file_rows)
        size = sum(f.stat().st_size for f in files)
        print(
            f"recording: {len(files)} files, {size / 2**20:.1f} MiB ({size / args.rows:.1f} B/row)"
        )
        messages = sdk_messages(table, min(args.sdk_rows, args.rows))
        del table
        runs: dict[str, Any] = {
            "sdk": lambda: run_sdk(messages),
            "listen": lambda: anyio.run(run_listen, folder),
            "frames": lambda: run_frames(folder),
        }
        rates = {clock: {name: [] for name in runs} for clock in ("wall", "cpu")}
        phases: dict[str, list[float]] = {}
        run_sdk(messages[:10])  # warm-up, not counted: the SDK's import and model building
        for r in range(args.repeats):
            for name, fn in runs.items():
                wall, cpu, n = timed(fn)
                assert name == "sdk" or n == args.rows, (name, n, args.rows)
                rates["wall"][name].append(n / wall)
                rates["cpu"][name].append(n / cpu)
            if args.phases:
                spent = run_phases(folder)
                listen_cpu = args.rows / rates["cpu"]["listen"][-1]  # seconds, this repeat
                spent["hand out"] = listen_cpu - sum(spent.values())
                for phase, seconds in spent.items():
                    phases.setdefault(phase, []).append(seconds / args.rows * 1e9)
            print(
                f"  repeat {r + 1}: "
                + "  ".join(
                    f"{name} {rates['wall'][name][-1]:,.0f}/s ({rates['cpu'][name][-1]:,.0f}/cpu-s)"
                    for name in runs
                )
            )
        for clock, per in (("wall", "second"), ("cpu", "CPU second")):
            got = rates[clock]
            med = {k: statistics.median(v) for k, v in got.items()}
            ratios = [b / a for a, b in zip(got["sdk"], got["listen"], strict=True)]
            print(f"\nmedians per {per}:")
            print(f"(a) SDK Quote.from_stream:        {med['sdk']:>13,.0f} events/s")
            print(
                f"(b) ReplayStreamer.listen(Quote): {med['listen']:>13,.0f} events/s "
                f"(target 2,000,000) = {statistics.median(ratios):.1f}x the SDK "
                f"(per-repeat ratios {min(ratios):.1f}-{max(ratios):.1f}; target 15x)"
            )
            print(f"(c) replay_frames(Quote):         {med['frames']:>13,.0f} rows/s (target 20M)")
        if phases:
            print("\nlisten() by phase, CPU ns per event (median; per-repeat range):")
            for phase, ns in phases.items():
                print(f"  {phase:9s} {statistics.median(ns):6.0f}  ({min(ns):.0f}-{max(ns):.0f})")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
