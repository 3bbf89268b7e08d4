"""RSS kept after converting journal segments, with and without giving freed memory back.

The recorder converts a sealed segment in a worker thread while its event loop keeps allocating.
Freed, the conversion's memory is not returned to the OS by itself: mimalloc (Arrow's pool) keeps
its pages, and glibc returns a thread arena's free pages only from the top. A 100-minute
recording stepped up ~230 MiB at its first rotation and stayed there (issue 3). Since then
:func:`tastyrec.record.sink.convert_segment` ends with :func:`~tastyrec.record.sink.release_memory`.

Each mode runs in a fresh process: a thread churns allocations the way an event loop does
(``bytes``, small numpy arrays, lists; a bounded working set), and after a warm-up ``--segments``
copies of one Quote journal segment (``--rows`` rows in 70-row records, as the tap writes them)
are converted one after the other in a thread pool. ``RssAnon`` (``/proc/self/status``) is read
before, after each conversion, and a few seconds after the last.

* ``release``: as shipped;
* ``no-release``: ``release_memory`` replaced by a no-op (the code before the fix);
* ``idle``: no conversion at all (the churn alone: the baseline).

Run: python benchmarks/bench_convert_memory.py [--rows 3000000] [--segments 3]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from tastyrec.record import sink
from tastyrec.storage import layout
from tastyrec.storage.journal import FsyncPolicy, JournalWriter

MODES = ("idle", "no-release", "release")
RECORD_ROWS = 70  # rows per journal record: ~50 ms of tap at 1,400 quotes/s
SESSION = "bench0c0"


def rss_anon_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    raise SystemExit("no RssAnon in /proc/self/status (Linux only)")


def make_segment(path: Path, rows: int) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from _synthetic import START_NS, uniform_quotes

    table = uniform_quotes(rows, START_NS, np.random.default_rng(7))
    journal = JournalWriter(path, table.schema, fsync=FsyncPolicy.NEVER)
    for batch in table.to_batches(max_chunksize=RECORD_ROWS):
        journal.append(batch)
    journal.close()


def churn(stop: threading.Event) -> None:
    """An event loop's allocations: a bounded, constantly renewed working set."""
    keep: list[Any] = []
    rng = random.Random(0)
    while not stop.is_set():
        keep.append((b"x" * rng.randint(600, 9000), np.zeros(rng.randint(10, 200)), [1.0] * 70))
        if len(keep) > 2000:
            del keep[: rng.randint(1, 1500)]
        time.sleep(0.0001)


def child(mode: str, segment: Path, segments: int, work: Path) -> dict[str, Any]:
    if mode == "no-release":
        sink.release_memory = lambda: None  # type: ignore[assignment]
    stop = threading.Event()
    thread = threading.Thread(target=churn, args=(stop,))
    thread.start()
    time.sleep(5.0)  # the churn's working set is in place
    before = rss_anon_mib()
    after: list[float] = []
    seconds: list[float] = []
    with ThreadPoolExecutor(4) as pool:
        for n in range(segments):
            name = layout.file_name(0, SESSION, n + 2)  # a new file each time
            copy = layout.journal_path(work, "Quote", layout.partition_date(0), name)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(segment, copy)
            start = time.perf_counter()
            if mode == "idle":
                time.sleep(1.0)
            else:
                written = pool.submit(sink.convert_segment, work, copy).result()
                assert written is not None and written.path.name.startswith(name)
                assert not copy.exists()
            seconds.append(time.perf_counter() - start)
            after.append(rss_anon_mib())
    time.sleep(3.0)
    end = rss_anon_mib()
    stop.set()
    thread.join()
    return {"before": before, "after": after, "end": end, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--segments", type=int, default=3)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--segment", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.segment, args.segments, args.work)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        name = layout.file_name(0, SESSION, 1)
        segment = Path(tmp) / "src" / name
        segment.parent.mkdir()
        make_segment(segment, args.rows)
        size = segment.stat().st_size
        print(f"segment: {args.rows:,} quotes, {size / 1e6:.0f} MB; {args.segments} conversions")
        print("\n| mode | RssAnon before | after each conversion | 3 s later | kept | s each |")
        print("|---|---:|---|---:|---:|---:|")
        for mode in MODES:
            work = Path(tmp) / mode
            out = subprocess.run(
                [sys.executable, __file__, "--child", mode, "--segment", str(segment)]
                + ["--segments", str(args.segments), "--work", str(work)],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            r = json.loads(out.splitlines()[-1])
            each = ", ".join(f"{a:.0f}" for a in r["after"])
            print(
                f"| {mode} | {r['before']:.0f} MiB | {each} MiB | {r['end']:.0f} MiB | "
                f"**{r['end'] - r['before']:+.0f} MiB** | {np.median(r['seconds']):.2f} |"
            )


if __name__ == "__main__":
    main()
