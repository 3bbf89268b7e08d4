"""DXLink COMPACT decode benchmark: tastytrade SDK vs msgspec floor vs tastyrec (issue 2).

A script, not a test. It generates a realistic COMPACT FEED_DATA stream as raw frame bytes (500
equities + 500 options, 75 % Quote / 15 % Trade / 10 % Greeks, "NaN" strings in 2.5 % of sizes
and volumes and 0.5 % of prices and greeks, 100 events per message, fields in the order the
tastytrade SDK requests them) and measures, in one run, events per second of:

  (a) the SDK's own path: ``json.loads(frame)`` then ``Quote.from_stream(values)`` etc.;
  (b) the floor: ``msgspec.json.decode(frame)`` and nothing else;
  (c) tastyrec's recorder path: ``messages.decode`` -> ``ColumnAccumulator.add`` -> ``flush``
      -> Arrow RecordBatches (rows out are counted and must equal events in);
  (d) tastyrec's listener path: ``structs(plan, values)`` per message.

Usage::

    .venv/bin/python benchmarks/bench_decode.py [--messages 2000] [--repeats 5] [--seed 7]

Default: 200k events per repeat, 5 repeats, ~30 s on one core.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from tastyrec.dxlink import messages
from tastyrec.dxlink.compact import ColumnAccumulator, FieldPlan, plan, structs
from tastyrec.events import Greeks, Quote, Trade
from tastyrec.events.base import Event
from tastyrec.events.registry import spec

EVENTS_PER_MESSAGE = 100
# share of double values sent as "NaN": real feeds mostly send NaN sizes and volumes, prices less
NAN_SIZE = 0.025
NAN_PRICE = 0.005
EXCHANGES = "QPZKNVXAJ"
TICKS = ("UP", "DOWN", "ZERO", "ZERO_UP", "ZERO_DOWN", "UNDEFINED")


def sdk_fields() -> dict[str, list[str]]:
    """The field lists the SDK requests (pydantic field order, camelCase), checked against ours."""
    from pydantic.alias_generators import to_camel
    from tastytrade.dxfeed import Greeks as SGreeks, Quote as SQuote, Trade as STrade

    out = {}
    for sdk_cls, ours in ((SQuote, Quote), (STrade, Trade), (SGreeks, Greeks)):
        names = [to_camel(name) for name in sdk_cls.model_fields]
        if tuple(names) != spec(ours).wire_names:
            raise SystemExit(f"SDK field order of {ours.__name__} differs: {names}")
        out[ours.__name__] = names
    return out


def _double(rng: random.Random, value: float, share: float = NAN_PRICE) -> float | str:
    return "NaN" if rng.random() < share else value


def _size(rng: random.Random, value: float) -> float | str:
    return _double(rng, value, NAN_SIZE)


def make_stream(n_messages: int, seed: int) -> tuple[list[bytes], int]:
    """Raw FEED_DATA frames and the number of events they carry."""
    rng = random.Random(seed)
    equities = [f"EQ{i:03d}" for i in range(497)] + ["SPY", "SPX", "QQQ"]
    options = [f".SPY{26 + i % 2}12{18 - i % 3}{'CP'[i % 2]}{400 + i // 2}" for i in range(500)]
    symbols = equities + options
    base_ms = 1721664000000
    index_base = 7394490574700544000
    frames = []
    for m in range(n_messages):
        r = rng.random()
        values: list[Any] = []
        t = base_ms + m * 100
        if r < 0.75:
            kind = "Quote"
            for _ in range(EVENTS_PER_MESSAGE):
                sym = rng.choice(symbols)
                px = round(rng.uniform(1, 600), 2)
                idx = sym == "SPX"
                values += [
                    sym, 0, 0, 0,  # eventTime, sequence, timeNanoPart: 0 as recorded (§8)
                    t - rng.randrange(5000), "\u0000" if idx else rng.choice(EXCHANGES),
                    t - rng.randrange(5000), "\u0000" if idx else rng.choice(EXCHANGES),
                    _double(rng, px), _double(rng, round(px + 0.01 * rng.randrange(1, 20), 2)),
                    _size(rng, float(rng.randrange(1, 50) * 100)),
                    _size(rng, float(rng.randrange(1, 50) * 100)),
                ]  # fmt: skip
        elif r < 0.90:
            kind = "Trade"
            for _ in range(EVENTS_PER_MESSAGE):
                sym = rng.choice(symbols)
                px = round(rng.uniform(1, 600), 2)
                values += [
                    sym, 0, t - rng.randrange(5000), 0, rng.randrange(1 << 20),
                    rng.choice(EXCHANGES), 19926, rng.choice(TICKS), rng.random() < 0.1,
                    _double(rng, px), _double(rng, round(rng.uniform(-5, 5), 2)),
                    _size(rng, float(rng.randrange(1, 500))),
                    _size(rng, float(rng.randrange(1, 10**8))),
                    _size(rng, round(rng.uniform(1e6, 1e10), 1)),
                ]  # fmt: skip
        else:
            kind = "Greeks"
            for _ in range(EVENTS_PER_MESSAGE):
                sym = rng.choice(options)
                values += [
                    sym, 0, 0, index_base + rng.randrange(1 << 22), t - rng.randrange(5000), 0,
                    _double(rng, round(rng.uniform(0.05, 50), 2)),
                    _double(rng, rng.uniform(0.1, 0.9)), _double(rng, rng.uniform(-1, 1)),
                    _double(rng, rng.uniform(0, 0.1)), _double(rng, rng.uniform(-1, 0)),
                    _double(rng, rng.uniform(-0.5, 0.5)), _double(rng, rng.uniform(0, 2)),
                ]  # fmt: skip
        msg = {"type": "FEED_DATA", "channel": 3, "data": [kind, values]}
        frames.append(json.dumps(msg, separators=(",", ":")).encode())
    return frames, n_messages * EVENTS_PER_MESSAGE


def run_sdk(frames: list[bytes]) -> int:
    from tastytrade.dxfeed import Greeks as SGreeks, Quote as SQuote, Trade as STrade

    types: dict[str, Any] = {"Quote": SQuote, "Trade": STrade, "Greeks": SGreeks}
    out = 0
    for frame in frames:
        data = json.loads(frame)["data"]
        for i in range(0, len(data), 2):
            out += len(types[data[i]].from_stream(data[i + 1]))
    return out


def run_floor(frames: list[bytes]) -> int:
    decode = msgspec.json.decode
    for frame in frames:
        decode(frame)
    return 0


def _plans(fields: dict[str, list[str]]) -> dict[str, FieldPlan]:
    classes: dict[str, type[Event]] = {"Quote": Quote, "Trade": Trade, "Greeks": Greeks}
    return {name: plan(classes[name], tuple(names)) for name, names in fields.items()}


def run_columns(frames: list[bytes], plans: dict[str, FieldPlan]) -> int:
    decode = messages.decode
    now = time.time_ns
    acc = ColumnAccumulator()
    rows = 0
    for frame in frames:
        data = decode(frame).data  # type: ignore[union-attr]
        recv_ns = now()
        for i in range(0, len(data), 2):
            if acc.add(plans[data[i]], data[i + 1], recv_ns):
                rows += sum(b.num_rows for b in acc.flush())
    rows += sum(b.num_rows for b in acc.flush())
    if acc.bad_messages:
        raise SystemExit(f"tastyrec dropped {acc.bad_messages} messages: {acc.last_error}")
    return rows


def run_structs(frames: list[bytes], plans: dict[str, FieldPlan]) -> int:
    decode = messages.decode
    out = 0
    for frame in frames:
        data = decode(frame).data  # type: ignore[union-attr]
        for i in range(0, len(data), 2):
            out += len(structs(plans[data[i]], data[i + 1]))
    return out


def measure(
    paths: dict[str, Callable[[], int]], events: int, repeats: int
) -> dict[str, tuple[float, float, int]]:
    """Median events/s per path, by process CPU time and by wall time, and the events out.

    The paths run round-robin (a, b, c, d, a, b, ...), so that load from other processes on a
    shared machine falls on all of them alike; CPU time leaves out the time the process waited
    for a core.
    """
    cpu: dict[str, list[float]] = {name: [] for name in paths}
    wall: dict[str, list[float]] = {name: [] for name in paths}
    out: dict[str, int] = {}
    for _ in range(repeats):
        for name, fn in paths.items():
            gc.collect()
            start_cpu, start = time.process_time(), time.perf_counter()
            out[name] = fn()
            cpu[name].append(events / (time.process_time() - start_cpu))
            wall[name].append(events / (time.perf_counter() - start))
    return {
        name: (statistics.median(cpu[name]), statistics.median(wall[name]), out[name])
        for name in paths
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="round-robin repeats of all paths")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # the SDK logs each dropped event at DEBUG

    fields = sdk_fields()
    frames, events = make_stream(args.messages, args.seed)
    size = sum(map(len, frames))
    plans = _plans(fields)
    print(
        f"stream: {len(frames)} FEED_DATA messages, {events} events, "
        f"{size / events:.1f} JSON bytes/event; {args.repeats} repeats; "
        f"Python {platform.python_version()}, msgspec {msgspec.__version__}"
    )

    results = measure(
        {
            "(a) SDK json.loads + from_stream": lambda: run_sdk(frames),
            "(b) msgspec.json.decode only (floor)": lambda: run_floor(frames) or events,
            "(c) tastyrec -> Arrow (ColumnAccumulator)": lambda: run_columns(frames, plans),
            "(d) tastyrec structs() per message": lambda: run_structs(frames, plans),
        },
        events,
        args.repeats,
    )
    print(
        "\n| path | events/s, CPU time (median) | events/s, wall (median) | events out | dropped |"
        "\n|---|---:|---:|---:|---:|"
    )
    for name, (cpu, wall, out) in results.items():
        print(f"| {name} | {cpu / 1e3:,.0f} k | {wall / 1e3:,.0f} k | {out:,} | {events - out:,} |")
    (a, _, n_sdk), (b, _, _), (c, _, rows), (d, _, n_structs) = results.values()
    if rows != events or n_structs != events:
        raise SystemExit(f"tastyrec lost events: {rows} rows, {n_structs} structs of {events}")
    print(
        f"\nCPU-time ratios: c/a = {c / a:.1f}x (target >= 15x)   "
        f"b/c = {b / c:.2f}x (target <= 2.5x)   d/a = {d / a:.1f}x"
    )
    wa, wb, wc, wd = (wall for _, wall, _ in results.values())
    print(f"wall-time ratios: c/a = {wc / wa:.1f}x   b/c = {wb / wc:.2f}x   d/a = {wd / wa:.1f}x")
    print(
        f"SDK silently dropped {events - n_sdk} of {events} events "
        f"({(events - n_sdk) / events:.2%}, NaN in required fields); tastyrec dropped 0"
    )


if __name__ == "__main__":
    main()
