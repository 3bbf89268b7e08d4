"""Replay reading only the columns events need (issue 18): an in-process A/B.

``listen()``'s cursor reads its timeline with ``Timeline(event_columns=True)``: a market event's
fields and the exact ``recv_epoch_ns``, not schema version 2's microsecond ``recv_ns`` (nothing
uses it: the exact column orders the rows). This script measures that against reading every
column, in one process on the same files (``bench_replay.py``'s recording), alternating the two
each round (A B, B A, ...) so that a shared machine's load falls on both alike:

  * ``read``: the timeline alone (Parquet decoding, merge, steps), CPU ns per event;
  * ``listen``: ``ReplayStreamer.listen(Quote)`` end to end, its cursor's timeline switched by
    replacing ``tastyrec.replay._engine.Timeline`` with one that sets ``event_columns``.

Medians, ranges and the per-round new/old ratio of CPU time (all threads of this process): pin
it to one CPU (``taskset -c 1``).

Usage::

    taskset -c 1 .venv/bin/python benchmarks/bench_replay_columns.py [--rows 2000000]
        [--rounds 16]
"""

from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))  # _synthetic, bench_replay

from _synthetic import frame_quotes, write_recording
from bench_replay import run_listen

from tastyrec.events import Quote
from tastyrec.replay import _engine
from tastyrec.replay.reader import DEFAULT_CHUNK_ROWS, Timeline

EVENT_COLUMNS = {"on": True}  # what the patched cursor's timeline reads


def cursor_timeline(*args: Any, **kwargs: Any) -> Timeline:
    return Timeline(*args, **{**kwargs, "event_columns": EVENT_COLUMNS["on"]})


def read(root: Path, event_columns: bool) -> int:
    timeline = Timeline(root, [Quote], chunk_rows=DEFAULT_CHUNK_ROWS, event_columns=event_columns)
    n = 0
    while (step := timeline.next_step()) is not None:
        n += step.rows
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=16)
    args = parser.parse_args()
    _engine.Timeline = cursor_timeline  # type: ignore[assignment,misc]
    folder = Path(tempfile.mkdtemp(prefix="bench_replay_columns_"))
    try:
        write_recording(folder, frame_quotes(args.rows, 500, 1), 1_000_000)
        runs = {
            "read": lambda flag: read(folder, flag),
            "listen": lambda flag: anyio.run(run_listen, folder),
        }
        ns: dict[tuple[str, bool], list[float]] = {(k, f): [] for k in runs for f in (False, True)}
        for r in range(args.rounds):
            for name, fn in runs.items():
                for flag in (False, True) if r % 2 == 0 else (True, False):
                    EVENT_COLUMNS["on"] = flag
                    gc.collect()
                    c0 = time.process_time()
                    n = fn(flag)
                    ns[(name, flag)].append((time.process_time() - c0) / n * 1e9)
                    assert n == args.rows, (name, n)
        print(f"{args.rows:,} Quotes, {args.rounds} rounds; CPU ns per event, median (range)")
        for name in runs:
            old, new = ns[(name, False)], ns[(name, True)]
            ratio = [b / a for a, b in zip(old, new, strict=True)]
            print(
                f"  {name:6s} every column {statistics.median(old):5.0f} ({min(old):.0f}-"
                f"{max(old):.0f})   without recv_ns {statistics.median(new):5.0f} ({min(new):.0f}-"
                f"{max(new):.0f})   new/old per round {statistics.median(ratio):.3f} "
                f"({min(ratio):.3f}-{max(ratio):.3f}), lower in {sum(x < 1 for x in ratio)}"
                f"/{len(ratio)}"
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
