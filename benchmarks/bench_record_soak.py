"""The Recorder against the simulator: disk, latency and memory (issue 3, targets 2-4).

A script, not a test. It starts tastyrec's simulator (``tastyrec.sim.Simulator``) in a separate
process (pinned to CPU 1; this process is pinned to CPU 0) and records it for ``--minutes``
with the recorder's defaults, as ``tastyrec record`` runs it: ``DXLinkStreamer(queue_size=0,
tap_interval=0.05)`` and ``Recorder(out, streamer)`` with its default rotation, fsync and live
frame bounds.

Symbol mix (default): 30 equities/ETFs/indices and 120 options on 5 of them (3 expirations
30-90 days out, 4 strikes around the simulated spot, calls and puts); Quote for all 150, Trade
for all 150, Greeks for the options, TimeAndSale for the equities. Rates are the simulator's
defaults (Quote 10/s, Trade 2/s, Greeks 2/s, TimeAndSale 4/s per symbol; its market model decides
when trades print) with its 0.1 s aggregation period: about 1,700 events/s. The simulator is pure
Python (30-200 us of market model per event): 500 symbols at these rates saturate its core and it
then sends less, irregularly. Summary is left out: the simulator spends 3-4 ms on each Summary
and makes all of them at once every 5 s, which stops its stream for ~0.8 s each time.

It measures:

* **disk** (target <= 10 bytes/Quote): Parquet bytes / rows per event type once the recorder has
  closed; the same Quotes re-encoded as DXLink COMPACT JSON give the wire size for comparison.
  Zero loss: rows in Parquet == events the streamer received (else the script exits 1); at the
  end the subscriptions are removed and the stream left to go quiet before the recorder closes.
* **latency** (target: receipt -> visible in ``recorder.frame(Quote)`` within 100 ms): the task
  watches ``rec.stats.last_recv_ns["Quote"]`` every 2 ms; when it moves, it reads
  ``rec.frame(Quote)`` and takes ``now - recv_ns`` of every row that became visible (per event:
  median, p99, max). It also samples, at random moments 50-150 ms apart, the age of the newest
  visible row, ``now - max(recv_ns)``: this includes the time since the last Quote frame arrived
  (the simulator flushes each channel every 0.1 s aggregation period), so it is an upper bound;
  the gaps between Quote frames received are reported beside it. The cost of ``frame()`` too.
* **memory** (target: flat RSS): ``VmRSS`` of this process from ``/proc/self/status`` every
  10 s; first, middle, last and max, and the linear trend after 5 minutes: the live frames fill
  up during the first ~5 minutes (100k rows or 300 s per type), so "flat" is judged after that.
  The latency figures are kept in fixed-size histograms, so the measuring itself does not grow.

Usage::

    .venv/bin/python benchmarks/bench_record_soak.py [--minutes 10] [--equities 30]
        [--options 120] [--quote-rate 10] [--seed 0] [--out DIR] [--no-pin] [--progress-every 6]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import anyio
import msgspec
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from tastyrec.schema import RECV_EXACT_COLUMN

TOKEN = "soak-token"
EQUITIES = (
    "SPY QQQ IWM DIA SPX NDX VIX AAPL MSFT NVDA AMZN GOOGL META TSLA AMD NFLX AVGO JPM BAC XOM "
    "CVX WMT COST HD UNH LLY JNJ PG KO PEP MRK ABBV ORCL CRM ADBE INTC CSCO QCOM TXN MU GLD SLV "
    "TLT HYG XLF XLE XLK SMH ARKK COIN"
).split()
UNDERLYINGS = ("SPY", "QQQ", "AAPL", "NVDA", "TSLA")
RSS_EVERY_S = 10.0
WATCH_S = 0.002


# --- the simulator process ---------------------------------------------------------------------


def serve(quote_rate: float, seed: int) -> None:
    """Run the simulator until stdin closes; print its URL as the first stdout line."""
    from tastyrec.sim import SimConfig, Simulator

    async def run() -> None:
        config = SimConfig(quote_rate_hz=quote_rate)
        async with Simulator(port=0, token=TOKEN, seed=seed, config=config) as sim:
            print(json.dumps({"url": sim.url}), flush=True)
            await anyio.to_thread.run_sync(sys.stdin.buffer.read, abandon_on_cancel=True)

    anyio.run(run, backend="asyncio")


class SimProcess:
    def __init__(self, quote_rate: float, seed: int, cpu: int | None) -> None:
        cmd = [sys.executable, __file__, "--serve", "--quote-rate", str(quote_rate)]
        cmd += ["--seed", str(seed)]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None,
        )
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(60)
        if not line or not line[0]:
            self.close()
            raise SystemExit("the simulator did not start within 60 s")
        self.url: str = json.loads(line[0])["url"]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- the symbol mix ----------------------------------------------------------------------------


def symbol_mix(n_equities: int, n_options: int, seed: int) -> tuple[list[str], list[str]]:
    """Equities, and options on :data:`UNDERLYINGS` with strikes around the simulated spot."""
    from tastyrec.sim.market import Market

    market = Market(seed)
    now = datetime.now(UTC)
    now_ms = int(now.timestamp() * 1000)
    expiries = [(now + timedelta(days=d)).strftime("%y%m%d") for d in (30, 60, 90)]
    options: list[str] = []
    per_chain = max(1, n_options // (len(UNDERLYINGS) * len(expiries) * 2))
    for und in UNDERLYINGS:
        spot = market.path(und, now_ms)
        step = _strike_step(spot)
        atm = round(spot / step) * step
        for exp in expiries:
            for k in range(per_chain):
                strike = atm + (k - per_chain // 2) * step
                options += [f".{und}{exp}{cp}{strike:g}" for cp in "CP"]
    return EQUITIES[:n_equities], options[:n_options]


def _strike_step(spot: float) -> float:
    return 1.0 if spot < 200 else 5.0 if spot < 1000 else 25.0


# --- measurements ------------------------------------------------------------------------------


def rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS in /proc/self/status")


class Histogram:
    """Fixed-size histogram of milliseconds (0.1 ms bins up to 10 s): no growth while it records."""

    BIN_MS: Final = 0.1
    BINS: Final = 100_000

    def __init__(self) -> None:
        self.counts = np.zeros(self.BINS + 1, dtype=np.int64)  # the last bin: >= 10 s
        self.max_ms = 0.0

    def add(self, values_ms: np.ndarray) -> None:
        if not len(values_ms):
            return
        bins = np.clip((values_ms / self.BIN_MS).astype(np.int64), 0, self.BINS)
        self.counts += np.bincount(bins, minlength=self.BINS + 1)
        self.max_ms = max(self.max_ms, float(values_ms.max()))

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def share_above(self, ms: float) -> float:
        """Share of the values at or above ``ms`` (to the bin)."""
        return float(self.counts[int(ms / self.BIN_MS) :].sum() / max(self.n, 1))

    def percentile(self, q: float) -> float:
        """Upper edge of the bin holding the q-th percentile."""
        if not self.n:
            return float("nan")
        rank = int(np.searchsorted(np.cumsum(self.counts), q / 100 * self.n))
        return min((rank + 1) * self.BIN_MS, self.max_ms)


class Latency:
    """Receipt -> visible in ``rec.frame(Quote)``, per event, and the newest row's age."""

    def __init__(self) -> None:
        self.per_event = Histogram()
        self.newest_age = Histogram()
        self.frame_cost = Histogram()

    async def watch(self, rec: Any, quote: type[Any], warmup_s: float) -> None:
        await anyio.sleep(warmup_s)
        seen = rec.stats.last_recv_ns.get("Quote", 0)
        while True:
            await anyio.sleep(WATCH_S)
            last = rec.stats.last_recv_ns.get("Quote", 0)
            if last == seen:
                continue
            now = time.time_ns()
            frame = self._frame(rec, quote)
            recv = frame.get_column(RECV_EXACT_COLUMN).to_numpy()
            new = recv[recv > seen]
            self.per_event.add((now - new) / 1e6)
            seen = int(recv.max())

    async def sample(self, rec: Any, quote: type[Any], warmup_s: float) -> None:
        await anyio.sleep(warmup_s)
        rng = random.Random(1)
        while True:
            await anyio.sleep(rng.uniform(0.05, 0.15))
            now = time.time_ns()
            frame = self._frame(rec, quote)
            if frame.height:
                newest = frame.get_column(RECV_EXACT_COLUMN).max()
                self.newest_age.add(np.array([(now - newest) / 1e6]))  # type: ignore[operator]

    def _frame(self, rec: Any, quote: type[Any]) -> pl.DataFrame:
        start = time.perf_counter()
        frame = rec.frame(quote)
        self.frame_cost.add(np.array([(time.perf_counter() - start) * 1e3]))
        return frame


async def record(args: argparse.Namespace, url: str, out: Path) -> dict[str, Any]:
    from tastyrec.dxlink.streamer import DXLinkStreamer
    from tastyrec.events import Greeks, Quote, TimeAndSale, Trade
    from tastyrec.record.recorder import Recorder

    equities, options = symbol_mix(args.equities, args.options, args.seed)
    subs: list[tuple[type[Any], list[str]]] = [
        (Quote, equities + options),
        (Trade, equities + options),
        (Greeks, options),
        (TimeAndSale, equities),
    ]
    duration = args.minutes * 60
    latency = Latency()
    rss: list[tuple[float, int]] = []
    arrow: list[int] = []  # pyarrow's memory pool, bytes, at each RSS sample
    progress: list[str] = []
    async with DXLinkStreamer(url=url, token=TOKEN, queue_size=0, tap_interval=0.05) as streamer:
        bounds = {}
        if args.live_rows is not None:
            bounds["live_rows"] = args.live_rows
        if args.live_age is not None:
            bounds["live_age_s"] = args.live_age
        async with Recorder(out, streamer, **bounds) as rec:
            for cls, symbols in subs:
                await streamer.subscribe(cls, symbols)
            start = time.monotonic()

            snapshots: list[Any] = []

            async def sample_rss() -> None:
                while True:
                    if args.tracemalloc and len(rss) == args.tracemalloc_from // 10:
                        snapshots.append(tracemalloc.take_snapshot())
                    rss.append((time.monotonic() - start, rss_kib()))
                    arrow.append(pa.total_allocated_bytes())
                    if len(rss) % args.progress_every == 1 or args.progress_every == 1:
                        elapsed = time.monotonic() - start
                        rows = sum(rec.stats.rows.values())
                        rate = rows / max(elapsed, 1e-9)
                        mib, pool = rss[-1][1] / 1024, arrow[-1] / 2**20
                        line = (
                            f"  t={elapsed:5.0f} s  rows={rows:>10,}  ({rate:,.0f}/s)  "
                            f"RSS={mib:.1f} MiB  Arrow pool={pool:.1f} MiB"
                        )
                        progress.append(line)
                        print(line, flush=True)
                    await anyio.sleep(RSS_EVERY_S)

            async with anyio.create_task_group() as tg:
                tg.start_soon(sample_rss)
                tg.start_soon(latency.watch, rec, Quote, min(5.0, duration / 4))
                tg.start_soon(latency.sample, rec, Quote, min(5.0, duration / 4))
                await anyio.sleep(duration)
                tg.cancel_scope.cancel()
            rss.append((time.monotonic() - start, rss_kib()))
            arrow.append(pa.total_allocated_bytes())
            if snapshots:
                grown = tracemalloc.take_snapshot().compare_to(snapshots[0], "lineno")
                print(
                    f"\ntracemalloc: growth since t={args.tracemalloc_from} s, "
                    f"top {args.tracemalloc}:"
                )
                for stat in grown[: args.tracemalloc]:
                    print(f"  {stat}")
            # stop the stream and let it go quiet, so that every event received is one the
            # recorder was running for (what arrives after it closes its tap is not recorded)
            for cls, _ in subs:
                await streamer.unsubscribe_all(cls)
            received = await quiesce(streamer)
        closed = time.monotonic()
        rows = dict(rec.stats.rows)  # after the recorder's final drain
        bad = streamer.stats.bad_frames
        if streamer.stats.events != received:
            raise SystemExit("events arrived after the stream was stopped; cannot check loss")
    return {
        "rss": rss,
        "arrow": arrow,
        "latency": latency,
        "received": received,
        "rows": rows,
        "bad": bad,
        "elapsed_s": closed - start,
        "duration_s": duration,
        "symbols": (len(equities), len(options)),
    }


async def quiesce(streamer: Any, quiet_s: float = 1.0, limit_s: float = 15.0) -> int:
    """Events received once none has arrived for ``quiet_s`` (at most ``limit_s``)."""
    with anyio.fail_after(limit_s):
        while True:
            before = streamer.stats.events
            await anyio.sleep(quiet_s)
            if streamer.stats.events == before:
                return int(before)


def disk(out: Path) -> dict[str, tuple[int, int, int]]:
    """Per event type: rows, bytes and files of the Parquet written."""
    result = {}
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("_")):
        files = sorted(folder.glob("date=*/*.parquet"))
        if files:
            rows = sum(pq.read_metadata(f).num_rows for f in files)
            result[folder.name] = (rows, sum(f.stat().st_size for f in files), len(files))
    return result


def wire_bytes_per_quote(out: Path, n: int = 100_000) -> float:
    """The recorded Quotes re-encoded as DXLink COMPACT values (100 per FEED_DATA), per event."""
    from tastyrec.events import Quote
    from tastyrec.events.registry import FieldKind, spec

    files = sorted((out / "Quote").glob("date=*/*.parquet"))
    table = pq.read_table(files[0]).slice(0, n)
    s = spec(Quote)
    cols = []
    for f in s.fields:
        col = table.column(f.name)
        if f.kind is FieldKind.TIME_MS:
            values = col.cast("int64").to_pylist()
        elif f.kind is FieldKind.DOUBLE:
            values = ["NaN" if v != v else v for v in col.to_pylist()]
        else:
            values = col.to_pylist()
        cols.append(values)
    flat = [v for row in zip(*cols, strict=True) for v in row]
    k = len(cols) * 100
    size = 0
    for i in range(0, len(flat), k):
        msg = {"type": "FEED_DATA", "channel": 1, "data": ["Quote", flat[i : i + k]]}
        size += len(msgspec.json.encode(msg))
    return size / table.num_rows


def arrival_gaps_ms(out: Path) -> np.ndarray:
    """Time between successive Quote frames received (distinct ``recv_ns``), from the Parquet."""
    files = sorted((out / "Quote").glob("date=*/*.parquet"))
    recv = np.concatenate(
        [pq.read_table(f, columns=[RECV_EXACT_COLUMN]).column(0).to_numpy() for f in files]
    )
    return np.diff(np.unique(recv)) / 1e6


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="recording duration")
    parser.add_argument("--equities", type=int, default=30, help=f"at most {len(EQUITIES)}")
    parser.add_argument("--options", type=int, default=120)
    parser.add_argument("--quote-rate", type=float, default=10.0, help="quotes/symbol/s")
    parser.add_argument("--seed", type=int, default=0, help="simulator market seed")
    parser.add_argument("--out", type=Path, default=None, help="Parquet root (default: temp)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to CPUs")
    parser.add_argument(
        "--progress-every", type=int, default=6, help="print every Nth RSS sample (10 s each)"
    )
    parser.add_argument("--live-rows", type=int, default=None, help="Recorder live_rows")
    parser.add_argument("--live-age", type=float, default=None, help="Recorder live_age_s")
    parser.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        help="diagnosis: trace Python allocations and print the N lines that grew most",
    )
    parser.add_argument(
        "--tracemalloc-from", type=int, default=120, help="... from this time (s) to the end"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tracemalloc:
        tracemalloc.start(8)
    if args.serve:
        serve(args.quote_rate, args.seed)
        return

    pin = not args.no_pin and (os.cpu_count() or 1) >= 2
    sim = SimProcess(args.quote_rate, args.seed, 1 if pin else None)
    if pin:
        os.sched_setaffinity(0, {0})
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_soak_"))
    print(
        f"recording {sim.url} for {args.minutes:g} min into {out}; pinned: {pin}; "
        f"Python {platform.python_version()}, polars {pl.__version__}"
    )
    try:
        result = anyio.run(record, args, sim.url, out, backend="asyncio")
    finally:
        sim.close()
    try:
        report(args, out, result)
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)


def report(args: argparse.Namespace, out: Path, result: dict[str, Any]) -> None:
    files = disk(out)
    in_parquet = sum(rows for rows, _, _ in files.values())
    received = result["received"]
    n_eq, n_opt = result["symbols"]
    print(
        f"\n{n_eq} equities + {n_opt} options; {received:,} events received in "
        f"{result['duration_s']:.0f} s ({received / result['duration_s']:,.0f}/s); "
        f"{result['bad']} bad frames; recorder closed {result['elapsed_s']:.0f} s after start"
    )
    print(
        "\n| event type | rows | Parquet bytes | files | bytes/event |\n|---|---:|---:|---:|---:|"
    )
    for name, (rows, size, n) in files.items():
        print(f"| {name} | {rows:,} | {size:,} | {n} | {size / rows:.2f} |")
    total_size = sum(size for _, size, _ in files.values())
    print(f"| all | {in_parquet:,} | {total_size:,} | | {total_size / max(in_parquet, 1):.2f} |")
    if "Quote" in files:
        print(f"Quote on the wire (COMPACT JSON, 100/message): {wire_bytes_per_quote(out):.1f} B")

    lat: Latency = result["latency"]
    print(
        "\n| latency, ms | samples | median | p99 | max | >= 100 ms |"
        "\n|---|---:|---:|---:|---:|---:|"
    )
    for label, h in (
        ("receipt -> visible in frame(Quote), per event", lat.per_event),
        ("age of the newest visible row, sampled", lat.newest_age),
        ("cost of one rec.frame(Quote) call", lat.frame_cost),
    ):
        print(
            f"| {label} | {h.n:,} | {h.percentile(50):.1f} | {h.percentile(99):.1f} "
            f"| {h.max_ms:.1f} | {h.share_above(100):.3%} |"
        )
    if "Quote" in files:
        gaps = arrival_gaps_ms(out)
        print(
            f"time between Quote frames received (ms): median {_pct(gaps, 50):.1f}, "
            f"p99 {_pct(gaps, 99):.1f}, max {gaps.max():.1f}; "
            f"{int((gaps > 100).sum())} gaps > 100 ms"
        )

    rss = result["rss"]
    mib = [kib / 1024 for _, kib in rss]
    mid = len(rss) // 2
    settled = [kib / 1024 for t, kib in rss if t >= min(300.0, rss[-1][0] / 2)]
    print(
        f"\nRSS (MiB), {len(rss)} samples every {RSS_EVERY_S:g} s: first {mib[0]:.1f} "
        f"(t={rss[0][0]:.0f} s), middle {mib[mid]:.1f} (t={rss[mid][0]:.0f} s), last {mib[-1]:.1f} "
        f"(t={rss[-1][0]:.0f} s), max {max(mib):.1f}; after t={min(300.0, rss[-1][0] / 2):.0f} s: "
        f"min {min(settled):.1f}, max {max(settled):.1f}, "
        f"median {statistics.median(settled):.1f}"
    )
    late = [(t, kib / 1024) for t, kib in rss if t >= min(300.0, rss[-1][0] / 2)]
    if len(late) >= 2:
        fit = statistics.linear_regression([t for t, _ in late], [m for _, m in late])
        print(f"RSS trend after t={late[0][0]:.0f} s: {fit.slope * 60:+.2f} MiB/min")
    print("RSS series, MiB: " + " ".join(f"{m:.0f}" for m in mib))
    print("Arrow pool series, MiB: " + " ".join(f"{b / 2**20:.0f}" for b in result["arrow"]))

    rows = result["rows"]
    lost = received - in_parquet
    print(
        f"\nzero loss: events received {received:,}, recorded {sum(rows.values()):,}, "
        f"in Parquet {in_parquet:,}, lost {lost:,}"
    )
    if lost or rows != {k: r for k, (r, _, _) in files.items()}:
        raise SystemExit("FAILED: rows in Parquet differ from events received")


if __name__ == "__main__":
    main()
