"""The simulator serving a whole SPX-sized option chain in real time (issue 16).

A script, not a test. It starts tastyrec's DXLink simulator in a process of its own (no auth,
default :class:`~tastyrec.sim.SimConfig` rates: option quotes 1/s, Greeks and TheoPrice 0.5/s,
Summary 0.2/s), takes ``--symbols`` option symbols of the SPX chain the fake REST API generates
(:func:`tastyrec.sim.rest.nested_chain`: SPX + SPXW roots), and subscribes them for Quote,
Greeks, Summary and TheoPrice, plus SPX for Quote, Trade and Summary, from a light raw-websocket
client in this process (``websockets``' asyncio client, frames decoded with msgspec, events
counted; no Structs). The subscription is sent as a real client does, in FEED_SUBSCRIPTION
messages of at most ``--message-bytes`` (8 KiB, the streamer's default).

After a warm-up (until every option has delivered a Quote and Greeks, timed as *first values*),
it measures for ``--seconds``:

* the simulator's CPU (utime + stime of its process from ``/proc/<pid>/stat``): share of one
  core, and per event served;
* events/s per type;
* per-option intervals between two Quotes (and two Greeks) received: median, p99, max, and the
  share of options whose longest interval is within 1.5 s (Quote: 1 s plus receipt jitter) /
  5 s (Greeks);
* tick-to-delivery lag: receipt time minus the event's own ``time`` (Greeks and TheoPrice, which
  the simulator stamps with the instant it priced them), median and p99;
* the largest gap between two frames received (the longest the connection was held up).

Usage::

    .venv/bin/python benchmarks/bench_sim_chain.py [--symbols 20000] [--seconds 60] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from array import array
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

OPTION_TYPES = ("Quote", "Greeks", "Summary", "TheoPrice")
UNDERLYING_TYPES = ("Quote", "Trade", "Summary")


def serve(seed: int) -> None:
    """Run the DXLink simulator (no auth); print its URL; exit on stdin EOF."""
    from tastyrec.sim import SimConfig, Simulator

    async def run() -> None:
        config = SimConfig(keepalive_timeout=120)
        async with Simulator(port=0, token=None, seed=seed, config=config) as sim:
            print(json.dumps({"url": sim.url}), flush=True)
            await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)

    anyio.run(run, backend="asyncio")


def chain_symbols(count: int, seed: int) -> list[str]:
    from tastyrec.sim.market import Market, parse_option_symbol
    from tastyrec.sim.rest import nested_chain

    now = datetime.now(UTC)
    spot = Market(seed).path("SPX", int(now.timestamp() * 1000))
    out: list[str] = []
    for item in nested_chain("SPX", spot, now.date()):
        for expiration in item["expirations"]:
            for strike in expiration["strikes"]:
                out += [strike["call-streamer-symbol"], strike["put-streamer-symbol"]]

    def nearest_first(symbol: str) -> tuple[int, str]:
        opt = parse_option_symbol(symbol)
        return (opt.expiration_ms if opt is not None else 0, symbol)

    return sorted(set(out), key=nearest_first)[:count]


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def subscription_messages(symbols: list[str], max_bytes: int) -> list[str]:
    entries = [{"type": t, "symbol": s} for s in symbols for t in OPTION_TYPES]
    entries += [{"type": t, "symbol": "SPX"} for t in UNDERLYING_TYPES]
    messages, chunk, size = [], [], 60
    for e in entries:
        n = len(json.dumps(e)) + 1
        if chunk and size + n > max_bytes:
            messages.append(json.dumps({"type": "FEED_SUBSCRIPTION", "channel": 1, "add": chunk}))
            chunk, size = [], 60
        chunk.append(e)
        size += n
    messages.append(json.dumps({"type": "FEED_SUBSCRIPTION", "channel": 1, "add": chunk}))
    return messages


def pct(values: Any, q: float) -> float:
    data = sorted(values)
    return data[min(len(data) - 1, int(q * len(data)))] if data else float("nan")


async def client(url: str, args: argparse.Namespace, sim_pid: int) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    symbols = chain_symbols(args.symbols, args.seed)
    options = set(symbols)
    decode = msgspec.json.Decoder().decode
    layout: dict[str, tuple[int, int, int]] = {}  # type -> (width, symbol index, time index)
    last: dict[str, dict[str, float]] = {t: {} for t in OPTION_TYPES}
    gaps: dict[str, array[float]] = {t: array("d") for t in ("Quote", "Greeks")}
    longest: dict[str, dict[str, float]] = {t: {} for t in ("Quote", "Greeks")}
    lags: array[float] = array("d")
    counts: dict[str, int] = {}
    measuring = False
    frame_gap = 0.0
    async with connect(url, max_size=None, compression=None, ping_interval=None) as ws:
        await ws.send(
            json.dumps(
                {
                    "type": "SETUP",
                    "channel": 0,
                    "version": "0.1-bench/1",
                    "keepaliveTimeout": 120,
                    "acceptKeepaliveTimeout": 120,
                }
            )
        )
        await ws.send(
            json.dumps(
                {
                    "type": "CHANNEL_REQUEST",
                    "channel": 1,
                    "service": "FEED",
                    "parameters": {"contract": "AUTO"},
                }
            )
        )
        await ws.send(
            json.dumps(
                {
                    "type": "FEED_SETUP",
                    "channel": 1,
                    "acceptAggregationPeriod": 0.1,
                    "acceptDataFormat": "COMPACT",
                }
            )
        )
        t_sub = time.monotonic()
        messages = subscription_messages(symbols, args.message_bytes)
        for message in messages:
            await ws.send(message)
        print(
            f"subscribed {len(symbols)} options x {len(OPTION_TYPES)} types + SPX in "
            f"{len(messages)} messages",
            flush=True,
        )
        first_values = None
        t0 = cpu0 = end = 0.0
        warm_until = next_check = float("inf")
        next_check = 0.0
        own0 = 0.0
        prev_frame = time.monotonic()
        while True:
            raw = await ws.recv()
            now = time.time()
            mono = time.monotonic()
            if measuring:
                frame_gap = max(frame_gap, mono - prev_frame)
            prev_frame = mono
            msg = decode(raw)
            kind = msg.get("type")
            if kind == "FEED_CONFIG" and msg.get("eventFields"):
                for name, fields in msg["eventFields"].items():
                    time_i = fields.index("time") if "time" in fields else -1
                    layout[name] = (len(fields), fields.index("eventSymbol"), time_i)
            if kind == "KEEPALIVE" or kind == "AUTH_STATE" and msg.get("state") == "AUTHORIZED":
                await ws.send('{"type":"KEEPALIVE","channel":0}')
            if kind != "FEED_DATA":
                continue
            name, flat = msg["data"]
            width, sym_i, time_i = layout[name]
            syms = flat[sym_i::width]
            if measuring:
                counts[name] = counts.get(name, 0) + len(syms)
                if name in gaps:
                    seen, g, top = last[name], gaps[name], longest[name]
                    for s in syms:
                        before = seen.get(s)
                        if before is not None:
                            d = now - before
                            g.append(d)
                            if d > top.get(s, 0.0):
                                top[s] = d
                        seen[s] = now
                if name in ("Greeks", "TheoPrice") and time_i >= 0:
                    lags.extend(now - t / 1000 for t in flat[time_i::width])
                if mono >= end:
                    break
            elif name in last:
                last[name].update(dict.fromkeys(syms, now))
                if first_values is None and mono >= next_check:
                    next_check = mono + 0.25
                    if all(
                        len(last[t].keys() & options) == len(options) for t in ("Quote", "Greeks")
                    ):
                        first_values = mono - t_sub
                        print(
                            f"first values of every option after {first_values:.1f} s", flush=True
                        )
                        warm_until = mono + 3.0  # measure past the first slices
                if mono >= warm_until:
                    last = {t: {} for t in OPTION_TYPES}
                    measuring, t0, cpu0 = True, mono, cpu_s(sim_pid)
                    own0 = time.process_time()
                    end = mono + args.seconds
    elapsed = time.monotonic() - t0
    cpu = cpu_s(sim_pid) - cpu0
    own = time.process_time() - own0
    total = sum(counts.values())
    return {
        "options": len(symbols),
        "first_values_s": first_values,
        "seconds": elapsed,
        "sim_cpu_share": cpu / elapsed,
        "sim_cpu_us_per_event": cpu / total * 1e6,
        "client_cpu_share": own / elapsed,
        "events_per_s": {k: round(v / elapsed) for k, v in sorted(counts.items())},
        "events_per_s_total": round(total / elapsed),
        "quote_interval_s": {
            "median": statistics.median(gaps["Quote"]),
            "p99": pct(gaps["Quote"], 0.99),
            "max": max(gaps["Quote"]),
        },
        "greeks_interval_s": {
            "median": statistics.median(gaps["Greeks"]),
            "p99": pct(gaps["Greeks"], 0.99),
            "max": max(gaps["Greeks"]),
        },
        "options_quote_within_1_5s": sum(1 for s in options if longest["Quote"].get(s, 99) <= 1.5)
        / len(options),
        "options_greeks_within_5s": sum(1 for s in options if longest["Greeks"].get(s, 99) <= 5.0)
        / len(options),
        "lag_ms": {"median": statistics.median(lags) * 1000, "p99": pct(lags, 0.99) * 1000},
        "longest_frame_gap_ms": frame_gap * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--symbols", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--message-bytes", type=int, default=8192)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.seed)
        return
    cmd = [sys.executable, __file__, "--serve", "--seed", str(args.seed)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = json.loads(proc.stdout.readline())["url"]
        result = anyio.run(client, url, args, proc.pid)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
