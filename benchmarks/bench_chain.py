"""SPX-scale chain streaming: 20,000 option symbols, Greeks and Quote, from the simulator (issue 7).

A script, not a test. It starts tastyrec's simulator in a separate process (pinned to CPU 1;
this process to CPU 0), takes the SPX chain the fake REST API serves (``tastyrec.sim.rest``:
SPX and SPXW roots, 0-45 DTE, strikes +-15 % of the simulated spot on a 5-point grid) through
``Session`` and ``get_option_chain`` as a user would, keeps the first ``--symbols`` option
symbols, and subscribes Greeks and Quote for all of them on one ``DXLinkStreamer`` read through
a tap (``queue_size=0``, as the recorder reads it); with ``--record``, a ``Recorder`` also records
everything into Parquet (a temp dir), and its rows are checked against the events. It measures:

* **subscription**: FEED_SUBSCRIPTION messages and their largest size (the streamer chunks at
  <= 500 entries / 16 KiB, DXLINK.md §12), and the time until every symbol has sent both types;
* **rate**: events/s per 10 s window, per type;
* **zero loss**: at the end the subscriptions are removed and the stream left to go quiet; then
  the frames the simulator sent == the frames the streamer received, the rows the tap delivered
  == the events the streamer counted, and nothing was dropped, malformed or disconnected (else
  the script exits 1);
* **memory**: ``VmRSS`` of this process every 10 s (first, last, max, linear trend).

The simulator's per-symbol rates are parameters (``--quote-rate``, ``--greeks-rate``): its market
model is pure Python (Black-Scholes per option event), so it, not the client, bounds the total
event rate; the script reports the rate reached, which is the simulator's capacity at this scale.

Usage::

    .venv/bin/python benchmarks/bench_chain.py [--minutes 10] [--symbols 20000]
        [--quote-rate 0.5] [--greeks-rate 0.2] [--seed 0] [--no-pin]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

TOKEN = "chain-bench-token"
WINDOW_S = 10.0


# --- the simulator process (DXLink + fake REST API) ---------------------------------------------


def serve(quote_rate: float, greeks_rate: float, seed: int) -> None:
    """Run the simulator and the fake REST API; print their URLs; on stdin EOF exit.

    A line ``frames`` on stdin prints the FEED_DATA frames sent so far (JSON).
    """
    from tastyrec.sim import SimConfig, Simulator
    from tastyrec.sim.rest import ApiSimulator

    sent = {"frames": 0, "feed_data": 0}

    class CountingSimulator(Simulator):
        async def _flush(self, ws: Any, c: Any) -> None:
            if self._stalled:
                return
            async with c.lock:
                for frame in c.engine.data_to_send():
                    await ws.send(frame)
                    sent["frames"] += 1
                    if frame.startswith('{"type":"FEED_DATA"'):
                        sent["feed_data"] += 1

    async def run() -> None:
        config = SimConfig(
            quote_rate_hz=quote_rate,
            greeks_rate_hz=greeks_rate,
            keepalive_timeout=60,
            max_inbound_bytes=128 * 1024,
        )
        async with (
            CountingSimulator(port=0, token=TOKEN, seed=seed, config=config) as sim,
            ApiSimulator(sim) as api,
        ):
            print(json.dumps({"dxlink": sim.url, "api": api.url}), flush=True)
            while True:
                line = await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
                if not line:
                    return
                print(json.dumps(sent), flush=True)

    anyio.run(run, backend="asyncio")


class SimProcess:
    def __init__(self, args: argparse.Namespace, cpu: int | None) -> None:
        cmd = [sys.executable, __file__, "--serve", "--seed", str(args.seed)]
        cmd += ["--quote-rate", str(args.quote_rate), "--greeks-rate", str(args.greeks_rate)]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None,
        )
        urls = self.readline(60)
        self.dxlink: str = urls["dxlink"]
        self.api: str = urls["api"]

    def readline(self, timeout: float) -> dict[str, Any]:
        line: list[str] = []
        assert self.proc.stdout is not None
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        if not line or not line[0]:
            self.close()
            raise SystemExit("the simulator process did not answer")
        return dict(json.loads(line[0]))

    def sent(self) -> dict[str, int]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("frames\n")
        self.proc.stdin.flush()
        return {k: int(v) for k, v in self.readline(30).items()}

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS in /proc/self/status")


def trend_kib_per_min(samples: list[tuple[float, int]]) -> float:
    if len(samples) < 3:
        return float("nan")
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mr = sum(r for _, r in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    cov = sum((t - mt) * (r - mr) for t, r in samples)
    return cov / var * 60 if var else float("nan")


# --- the client ----------------------------------------------------------------------------------


async def run(args: argparse.Namespace, sim: SimProcess) -> dict[str, Any]:
    from tastyrec.chain import get_option_chain
    from tastyrec.dxlink.streamer import DXLinkStreamer
    from tastyrec.events.market import Greeks, Quote
    from tastyrec.session import Session

    result: dict[str, Any] = {}
    async with Session("sim-client-secret", "sim-refresh-token", api_url=sim.api) as session:
        t0 = time.monotonic()
        chain = await get_option_chain(session, "SPX")
        result["chain_s"] = time.monotonic() - t0
        near = [o for options in chain.values() for o in options if o.days_to_expiration <= 45]
        result["chain_0_45"] = len(near)
        symbols = [o.streamer_symbol for o in near][: args.symbols]
        result["symbols"] = len(symbols)
        streamer = DXLinkStreamer(
            session, queue_size=0, tap_interval=0.05, keepalive_timeout=60, connect_timeout=30
        )
        out = Path(tempfile.mkdtemp(prefix="bench_chain_")) if args.record else None
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(streamer)
            recorder = None
            # the recorder closes (flushes, converts) before its files are counted
            recording = await stack.enter_async_context(contextlib.AsyncExitStack())
            if out is not None:  # recording: the Recorder's own tap, journal and Parquet
                from tastyrec.record.recorder import Recorder
                from tastyrec.record.sink import RotationPolicy

                rotation = RotationPolicy(max_rows=args.rotate_rows) if args.rotate_rows else None
                recorder = await recording.enter_async_context(
                    Recorder(out, streamer, rotation=rotation)
                )
            proto = streamer.protocol
            sizes: list[int] = []
            original = proto._send

            def counting_send(msg: Any) -> None:
                from tastyrec.dxlink import messages as m

                if isinstance(msg, m.FeedSubscription):
                    sizes.append(len(m.encode(msg)))
                original(msg)

            proto._send = counting_send  # type: ignore[method-assign]
            tap = streamer.tap(max_batches=256)
            rows: dict[str, int] = {"Greeks": 0, "Quote": 0}
            seen: dict[str, set[str]] = {"Greeks": set(), "Quote": set()}
            all_seen = anyio.Event()
            t_sub = time.monotonic()
            t_all: list[float] = []

            async def consume() -> None:
                async for cb in tap:
                    name = cb.event_type.__name__
                    rows[name] = rows.get(name, 0) + cb.num_rows
                    if not all_seen.is_set():
                        seen[name].update(pc.unique(cb.batch.column("event_symbol")).to_pylist())
                        if all(len(s) >= len(symbols) for s in seen.values()):
                            t_all.append(time.monotonic() - t_sub)
                            all_seen.set()

            windows: list[dict[str, Any]] = []
            rss: list[tuple[float, int]] = [(0.0, rss_kib())]
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await streamer.subscribe(Greeks, symbols, refresh_interval=0.1)
                await streamer.subscribe(Quote, symbols, refresh_interval=0.1)
                result["subscribe_s"] = time.monotonic() - t_sub
                end = time.monotonic() + args.minutes * 60
                last = dict(rows)
                while time.monotonic() < end:
                    await anyio.sleep(WINDOW_S)
                    now = time.monotonic() - t_sub
                    rate = {k: (rows[k] - last.get(k, 0)) / WINDOW_S for k in rows}
                    last = dict(rows)
                    rss.append((now, rss_kib()))
                    windows.append({"t_s": round(now), "rate": rate, "rss_kib": rss[-1][1]})
                    print(
                        f"{now:6.0f} s  Greeks {rate['Greeks']:8.0f}/s"
                        f"  Quote {rate['Quote']:8.0f}/s"
                        f"  symbols seen G {len(seen['Greeks'])} Q {len(seen['Quote'])}"
                        f"  RSS {rss[-1][1] / 1024:.0f} MiB",
                        flush=True,
                    )
                await streamer.unsubscribe_all(Greeks)
                await streamer.unsubscribe_all(Quote)
                with anyio.fail_after(60):
                    while True:  # quiet for 2 s
                        before = streamer.stats.frames
                        await anyio.sleep(2)
                        if streamer.stats.frames == before:
                            break
                await streamer.close_tap(tap)
                # frames still in flight (the simulator may lag under load) arrive first
                sent = sim.sent()
                with anyio.move_on_after(30):
                    while streamer.stats.frames < sent["frames"]:
                        await anyio.sleep(0.1)
                        sent = sim.sent()
            await recording.aclose()
            result["rss_recording_closed_kib"] = rss_kib()
            if out is not None and recorder is not None:
                # after the recorder closed: every event it received is in a Parquet file
                parquet = {
                    name: sum(
                        pq.read_metadata(f).num_rows for f in (out / name).glob("*/*.parquet")
                    )
                    for name in ("Greeks", "Quote")
                }
                result["parquet_rows"] = parquet
                result["recorded_rows"] = dict(recorder.stats.rows)
                result["parquet_bytes"] = sum(f.stat().st_size for f in out.glob("*/*/*.parquet"))
                shutil.rmtree(out, ignore_errors=True)
            result["sent"] = sent
            stats = streamer.stats
            result.update(
                frames_received=stats.frames,
                events=stats.events,
                rows=dict(rows),
                dropped=dict(stats.dropped),
                bad_frames=stats.bad_frames,
                disconnects=stats.disconnects,
                server_errors=[str(e) for e in streamer.server_errors],
                subscription_messages=len(sizes),
                max_subscription_bytes=max(sizes, default=0),
                all_symbols_s=t_all[0] if t_all else None,
                seen={k: len(v) for k, v in seen.items()},
                windows=windows,
                rss_first_kib=rss[0][1],
                rss_last_kib=rss[-1][1],
                rss_max_kib=max(r for _, r in rss),
                rss_trend_kib_per_min=trend_kib_per_min(rss[len(rss) // 3 :]),
            )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--symbols", type=int, default=20_000)
    parser.add_argument("--quote-rate", type=float, default=0.5)
    parser.add_argument("--greeks-rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--json", type=Path, help="write the result here too")
    parser.add_argument(
        "--record",
        action="store_true",
        help="also record everything with a Recorder (Parquet in a temp dir) and check its rows",
    )
    parser.add_argument(
        "--rotate-rows", type=int, default=None, help="with --record: rotation bound in rows"
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.quote_rate, args.greeks_rate, args.seed)
        return
    pin = not args.no_pin and hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2
    if pin:
        os.sched_setaffinity(0, {0})
    sim = SimProcess(args, 1 if pin else None)
    try:
        result = anyio.run(run, args, sim, backend="asyncio")
    finally:
        sim.close()
    result["machine"] = f"{platform.python_version()} {platform.machine()} cpus={os.cpu_count()}"
    result["args"] = {k: v for k, v in vars(args).items() if k != "json"}
    print(json.dumps({k: v for k, v in result.items() if k != "windows"}, indent=2, default=str))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    sent = result["sent"]
    ok = (
        sent["frames"] == result["frames_received"]
        and sum(result["rows"].values()) == result["events"]
        and not result["dropped"]
        and result["bad_frames"] == 0
        and result["disconnects"] == 0
        and (not args.record or sum(result["parquet_rows"].values()) == result["events"])
    )
    print("zero loss: " + ("yes" if ok else "NO"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
