"""Live recording over loopback: tastyrec vs the tastytrade SDK's DXLinkStreamer (issue 3, #1).

A script, not a test. It starts ``dxlink_blaster.py`` in a separate process (pinned to CPU 1)
and then, round-robin over ``--repeats``, runs each client once in a fresh interpreter pinned to
CPU 0 (the client has a core of its own, and no run inherits the heap of another: after an SDK
run, the recorder in the same process was ~20 % slower). Every connection gets the same stream of
pre-encoded COMPACT FEED_DATA (``--messages`` x 100 events, 75 % Quote / 15 % Trade / 10 %
Greeks, 1000 symbols, "NaN" strings) as fast as the client reads it:

  (a) ``sdk``: the unmodified tastytrade SDK ``DXLinkStreamer`` (a stub session points it at the
      server), one ``async for`` over ``listen(cls)`` per event type, counting events; done when
      every event the SDK keeps has come out (it silently drops events with "NaN" in a required
      field; the server tells us how many it keeps);
  (b) ``tap``: tastyrec's ``DXLinkStreamer(queue_size=0)`` read through ``tap()`` (Arrow batches,
      no disk): the streamer's share of the recorder's cost;
  (c) ``record``: tastyrec's ``Recorder`` on that streamer, writing Parquet; done when
      ``rec.stats.rows`` has every event sent; the Parquet files written when the block is left
      are then counted (zero loss: rows == events sent, else the script exits 1);
  (d) ``record_nolive`` (not run by default): (c) with ``LiveFrame.add`` patched to a no-op,
      to measure what the live frames cost; attribution only.

Wall time runs from the receipt of the first event (the first event out of ``listen()`` for the
SDK; the smallest ``recv_ns`` for tastyrec) to the moment the last event is received (sdk, tap)
or recorded (record); CPU time is the client process's, from the return of the ``subscribe`` calls
(the server starts streaming once every type is subscribed) to that same end, and leaves out
waits for a core on a shared machine. The table shows medians over the repeats and the median of
the per-repeat ratios record/sdk and tap/sdk (target: record >= 10x).

Logging stays at its defaults (the SDK sets its own logger to DEBUG; no handler is configured).

Usage::

    .venv/bin/python benchmarks/bench_record.py [--messages 5000] [--repeats 5] [--seed 7]
        [--paths sdk,tap,record] [--out DIR] [--no-pin] [--timeout 120] [--tap-rows N]
        [--profile record]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout
sys.path.insert(0, str(HERE))

from dxlink_blaster import subscriptions  # noqa: E402

from tastyrec.schema import RECV_EXACT_COLUMN, receipt_ns  # noqa: E402

POLL_S = 0.002
#: extra DXLinkStreamer options for the tastyrec paths (``--tap-rows``); empty = its defaults
TAP_OPTIONS: dict[str, Any] = {}


@dataclass
class Run:
    """One client run: events out (received or recorded), wall and CPU seconds."""

    events: int
    wall_s: float
    cpu_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.wall_s

    @property
    def cpu_rate(self) -> float:
        return self.events / self.cpu_s


class Blaster:
    """The server process: started once, serves every run."""

    def __init__(self, messages: int, seed: int, cpu: int | None) -> None:
        cmd = [sys.executable, str(HERE / "dxlink_blaster.py"), "--messages", str(messages)]
        cmd += ["--seed", str(seed), "--max-seconds", "7200"]
        if cpu is not None:
            cmd += ["--cpu", str(cpu)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(120)
        if not line or not line[0]:
            self.close()
            raise SystemExit("the blaster did not start within 120 s")
        self.info: dict[str, Any] = json.loads(line[0])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # the blaster exits when its stdin closes
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class StubSession:
    """Just what the SDK's DXLinkStreamer uses of a tastytrade Session."""

    client_kwargs: dict[str, Any] = {}

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    async def _get(self, path: str) -> dict[str, Any]:
        assert path == "/api-quote-tokens"
        return {"dxlink-url": self.url, "token": self.token, "level": "api"}


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _first_recv_ns(batch: pa.RecordBatch | pa.Table) -> int:
    return int(pc.min(receipt_ns(batch)).as_py())


async def run_sdk(info: dict[str, Any], limit_s: float, out: Path) -> Run:
    from tastytrade.dxfeed import Greeks, Quote, Trade
    from tastytrade.streamer import DXLinkStreamer

    classes: dict[str, Any] = {"Quote": Quote, "Trade": Trade, "Greeks": Greeks}
    expected: dict[str, int] = info["sdk_events"]
    got = dict.fromkeys(expected, 0)
    subs = subscriptions()
    first_ns: list[int] = []

    async def consume(streamer: Any, name: str) -> None:
        target = expected[name]
        n = 0
        async for _ in streamer.listen(classes[name]):
            if not first_ns:
                first_ns.append(time.time_ns())
            n += 1
            if n == target:
                break
        got[name] = n

    with anyio.move_on_after(limit_s):
        async with DXLinkStreamer(StubSession(info["url"], info["token"])) as streamer:
            async with anyio.create_task_group() as tg:
                for name in expected:
                    tg.start_soon(consume, streamer, name)
                for name in expected:
                    await streamer.subscribe(classes[name], subs[name])
                cpu0 = time.process_time()
            end_ns, cpu1 = time.time_ns(), time.process_time()
            for stream in [*streamer._send.values(), *streamer._recv.values()]:
                stream.close()  # the SDK never closes them (ResourceWarning at exit)
            return Run(sum(got.values()), (end_ns - first_ns[0]) / 1e9, cpu1 - cpu0)
    raise SystemExit(f"sdk: timed out after {limit_s} s with {got} of {expected} events")


async def run_tap(info: dict[str, Any], limit_s: float, out: Path) -> Run:
    from tastyrec.dxlink.streamer import DXLinkStreamer
    from tastyrec.events import Greeks, Quote, Trade

    classes: dict[str, Any] = {"Quote": Quote, "Trade": Trade, "Greeks": Greeks}
    total = sum(info["events"].values())
    subs = subscriptions()
    rows = 0
    first_ns = 0
    with anyio.move_on_after(limit_s):
        async with DXLinkStreamer(
            url=info["url"], token=info["token"], queue_size=0, tap_interval=0.05, **TAP_OPTIONS
        ) as streamer:
            tap = streamer.tap()
            for name in info["events"]:
                await streamer.subscribe(classes[name], subs[name])
            cpu0 = time.process_time()
            async for batch in tap:
                if not rows:
                    first_ns = _first_recv_ns(batch.batch)
                rows += batch.num_rows
                if rows >= total:
                    break
            end_ns, cpu1 = time.time_ns(), time.process_time()
            tap.close()
            frames = streamer.stats.frames
            return Run(rows, (end_ns - first_ns) / 1e9, cpu1 - cpu0, {"frames": frames})
    raise SystemExit(f"tap: timed out after {limit_s} s with {rows} of {total} rows")


async def run_record(info: dict[str, Any], limit_s: float, out: Path) -> Run:
    from tastyrec.dxlink.streamer import DXLinkStreamer
    from tastyrec.events import Greeks, Quote, Trade
    from tastyrec.record.recorder import Recorder

    classes: dict[str, Any] = {"Quote": Quote, "Trade": Trade, "Greeks": Greeks}
    total = sum(info["events"].values())
    subs = subscriptions()
    rows = 0
    with anyio.move_on_after(limit_s):
        async with DXLinkStreamer(
            url=info["url"], token=info["token"], queue_size=0, tap_interval=0.05, **TAP_OPTIONS
        ) as streamer:
            async with Recorder(out, streamer) as rec:
                for name in info["events"]:
                    await streamer.subscribe(classes[name], subs[name])
                cpu0 = time.process_time()
                while True:  # polled: the recorder has no "rows reached" event
                    rows = sum(rec.stats.rows.values())
                    if rows >= total:
                        break
                    await anyio.sleep(POLL_S)
                end_ns, cpu1 = time.time_ns(), time.process_time()
            closed_ns, cpu2 = time.time_ns(), time.process_time()
        written = parquet_rows(out)
        first_ns = min(first for _, first in written.values())
        in_files = {name: n for name, (n, _) in written.items()}
        return Run(
            rows,
            (end_ns - first_ns) / 1e9,
            cpu1 - cpu0,
            {
                "close_s": f"{(closed_ns - end_ns) / 1e9:.3f}",
                "cpu_with_close_s": f"{cpu2 - cpu0:.3f}",
                "parquet_rows": sum(in_files.values()),
                "parquet_ok": in_files == info["events"],
            },
        )
    raise SystemExit(f"record: timed out after {limit_s} s with {rows} of {total} rows")


async def run_record_nolive(info: dict[str, Any], limit_s: float, out: Path) -> Run:
    """``record`` with ``LiveFrame.add`` replaced by a no-op: the live frames' share, for
    attribution only (not a supported configuration)."""
    import tastyrec.live

    add = tastyrec.live.LiveFrame.add
    tastyrec.live.LiveFrame.add = lambda self, batch: None  # type: ignore[method-assign]
    try:
        return await run_record(info, limit_s, out)
    finally:
        tastyrec.live.LiveFrame.add = add  # type: ignore[method-assign]


def parquet_rows(root: Path) -> dict[str, tuple[int, int]]:
    """Rows in the Parquet files of each event type, and the smallest ``recv_ns``."""
    out = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")):
        files = sorted(folder.glob("date=*/*.parquet"))
        if not files:
            continue
        rows = sum(pq.read_metadata(f).num_rows for f in files)
        first = min(_first_recv_ns(pq.read_table(f, columns=[RECV_EXACT_COLUMN])) for f in files)
        out[folder.name] = (rows, first)
    return out


PATHS: dict[str, Callable[[dict[str, Any], float, Path], Awaitable[Run]]] = {
    "sdk": run_sdk,
    "tap": run_tap,
    "record": run_record,
    "record_nolive": run_record_nolive,
}
LABELS = {
    "sdk": "(a) tastytrade SDK DXLinkStreamer, listen() per type",
    "tap": "(b) tastyrec DXLinkStreamer, tap() only (no disk)",
    "record": "(c) tastyrec Recorder -> Parquet",
    "record_nolive": "(d) (c) with LiveFrame.add a no-op (attribution only)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5000, help="FEED_DATA messages per run")
    parser.add_argument("--repeats", type=int, default=5, help="round-robin repeats of all paths")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--paths", default="sdk,tap,record", help="comma-separated, from " + ",".join(PATHS)
    )
    parser.add_argument("--out", type=Path, default=None, help="Parquet root (default: a temp dir)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds allowed per run")
    parser.add_argument("--no-pin", action="store_true", help="do not pin client/server to CPUs")
    parser.add_argument(
        "--tap-rows", type=int, default=None, help="DXLinkStreamer tap_rows (default: its own)"
    )
    parser.add_argument(
        "--profile", default=None, help="after the repeats, run this path once under cProfile"
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # PATH:INFO-JSON
    args = parser.parse_args()
    if args.tap_rows is not None:
        TAP_OPTIONS["tap_rows"] = args.tap_rows
    if args.child:
        child(args)
        return
    paths = [p for p in args.paths.split(",") if p]
    unknown = set(paths) - set(PATHS)
    if unknown:
        raise SystemExit(f"unknown paths {sorted(unknown)}; known: {sorted(PATHS)}")

    pin = not args.no_pin and (os.cpu_count() or 1) >= 2
    blaster = Blaster(args.messages, args.seed, 1 if pin else None)
    if pin:
        os.sched_setaffinity(0, {0})
    root = args.out or Path(tempfile.mkdtemp(prefix="bench_record_"))
    info = blaster.info
    total = sum(info["events"].values())
    versions = _versions()
    print(
        f"stream: {info['messages']} FEED_DATA messages, {total:,} events {info['events']}, "
        f"{info['json_bytes_per_event']} JSON bytes/event; "
        f"SDK keeps {sum(info['sdk_events'].values()):,}; "
        f"{args.repeats} repeats; pinned: {pin}\n{versions}"
    )
    runs: dict[str, list[Run]] = {p: [] for p in paths}
    failed = False
    try:
        for rep in range(args.repeats):
            for name in paths:
                run = spawn(args, name, info, root / f"{name}-{rep}", pin)
                runs[name].append(run)
                extra = "".join(f" {k}={v}" for k, v in run.extra.items())
                print(
                    f"  repeat {rep + 1} {name:>6}: {run.events:>9,} events in {run.wall_s:6.3f} s "
                    f"= {run.rate / 1e3:8,.1f} k/s wall, {run.cpu_rate / 1e3:8,.1f} k/s CPU{extra}",
                    flush=True,
                )
                if name != "sdk" and run.events != total:
                    failed = True
                if name.startswith("record") and not run.extra["parquet_ok"]:
                    failed = True
        if args.profile:
            spawn(args, name, info, root / "profile", pin, profile=args.profile)
    finally:
        blaster.close()
        if args.out is None:
            shutil.rmtree(root, ignore_errors=True)

    print(
        "\n| client | events/s, wall (median) | events/s, CPU (median) | events out (last run) "
        "| events sent | lost |\n|---|---:|---:|---:|---:|---:|"
    )
    for name, rs in runs.items():
        expected = sum(info["sdk_events"].values()) if name == "sdk" else total
        last = rs[-1].events
        print(
            f"| {LABELS[name]} | {statistics.median(r.rate for r in rs) / 1e3:,.0f} k "
            f"| {statistics.median(r.cpu_rate for r in rs) / 1e3:,.0f} k | {last:,} | {total:,} "
            f"| {total - last:,}{' (SDK drops NaN events)' if name == 'sdk' else ''} |"
        )
        if name == "sdk" and last != expected:
            failed = True
    for base in ("sdk", "tap"):
        if base not in runs:
            continue
        for name in paths:
            if name in ("sdk", base):
                continue
            ratios = [r.rate / s.rate for r, s in zip(runs[name], runs[base], strict=True)]
            cpu = [r.cpu_rate / s.cpu_rate for r, s in zip(runs[name], runs[base], strict=True)]
            print(
                f"{name}/{base}: median of per-repeat ratios {statistics.median(ratios):.2f}x wall "
                f"(range {min(ratios):.2f}-{max(ratios):.2f}), {statistics.median(cpu):.2f}x CPU"
                + ("  (target >= 10x)" if (name, base) == ("record", "sdk") else "")
            )
    if failed:
        raise SystemExit("FAILED: events lost (see the table)")


def spawn(
    args: argparse.Namespace,
    name: str,
    info: dict[str, Any],
    out: Path,
    pin: bool,
    profile: str | None = None,
) -> Run:
    """Run one path once in a fresh interpreter (no heap or allocator state from other runs)."""
    cmd = [sys.executable, __file__, "--child", json.dumps([profile or name, info, str(out)])]
    cmd += ["--timeout", str(args.timeout)]
    if args.tap_rows is not None:
        cmd += ["--tap-rows", str(args.tap_rows)]
    if profile:
        cmd += ["--profile", profile]
    if not pin:
        cmd += ["--no-pin"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=args.timeout + 60)
    *lines, last = proc.stdout.splitlines() or [""]
    if lines:
        print("\n".join(lines))
    if proc.returncode:
        raise SystemExit(f"{name} run failed (exit {proc.returncode})")
    return Run(**json.loads(last))


def child(args: argparse.Namespace) -> None:
    name, info, out = json.loads(args.child)
    if not args.no_pin and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {0})
    if args.profile:
        profile(PATHS[name], info, args.timeout, Path(out))
        print(json.dumps({"events": 0, "wall_s": 1, "cpu_s": 1}))
        return
    gc.collect()
    run = anyio.run(PATHS[name], info, args.timeout, Path(out), backend="asyncio")
    print(json.dumps(dataclasses.asdict(run)))


def profile(
    fn: Callable[[dict[str, Any], float, Path], Awaitable[Run]],
    info: dict[str, Any],
    limit_s: float,
    out: Path,
) -> None:
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    anyio.run(fn, info, limit_s, out, backend="asyncio")
    prof.disable()
    print(f"\ncProfile of one run of {fn.__name__} (the close of a recorder included):")
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)


def _versions() -> str:
    from importlib.metadata import version

    names = ("tastytrade", "websockets", "msgspec", "pyarrow", "polars", "anyio")
    return f"Python {platform.python_version()}, " + ", ".join(f"{n} {version(n)}" for n in names)


if __name__ == "__main__":
    main()
