"""A local DXLink server that streams pre-encoded COMPACT FEED_DATA as fast as the client reads.

A benchmark tool, not a simulator: it speaks just enough DXLink (DXLINK.md §4-§8) for the
tastytrade SDK's ``DXLinkStreamer`` and tastyrec's to connect, and then sends a fixed stream:

* ``SETUP`` -> ``SETUP`` + ``AUTH_STATE UNAUTHORIZED``; ``AUTH`` with the right token ->
  ``AUTH_STATE AUTHORIZED`` (a wrong one -> ``UNAUTHORIZED``); ``KEEPALIVE`` both ways (the server
  sends one every 20 s);
* ``CHANNEL_REQUEST`` -> ``CHANNEL_OPENED`` (echoing the parameters, ``subFormat: LIST``);
* ``FEED_SETUP`` -> ``FEED_CONFIG`` echoing the client's accepted fields; the data for that
  channel is then encoded in *that client's* field order (pre-encoded once per field list, and
  the frames of the channel built right then, before any subscription);
* once every streamed event type (``--types``) has a ``FEED_SUBSCRIPTION``, the connection gets
  the whole stream once, one ``FEED_DATA`` per message, on each type's channel, as fast as
  websockets' write buffer drains (``await send``), then stays open until the client leaves.

The stream is the one of ``bench_decode.py`` (issue 2): 500 equities + 500 options, 75 % Quote /
15 % Trade / 10 % Greeks messages, 100 events per message, "NaN" strings in 2.5 % of sizes and
volumes and 0.5 % of prices and greeks, ``"\\u0000"`` exchange codes for SPX, eventTime 0. Frames
are built before the connection's stream starts, so the send loop only does socket writes.

On start it prints one JSON line on stdout: ``port``, ``url``, ``token``, ``events`` (per type),
``sdk_events`` (per type: events without "NaN" in a field the SDK requires, i.e. what the SDK's
``listen()`` yields; the SDK silently drops the others) and ``json_bytes_per_event``. It exits
when stdin closes (its parent went away) or after ``--max-seconds``.

Usage (normally started by ``bench_record.py``)::

    .venv/bin/python benchmarks/dxlink_blaster.py [--messages 5000] [--seed 7] [--cpu 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import msgspec
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

TOKEN = "bench-token"
EVENTS_PER_MESSAGE = 100
NAN_SIZE = 0.025
NAN_PRICE = 0.005
EXCHANGES = "QPZKNVXAJ"
TICKS = ("UP", "DOWN", "ZERO", "ZERO_UP", "ZERO_DOWN", "UNDEFINED")
KEEPALIVE_S = 20.0

#: the field lists the tastytrade SDK requests (DXLINK.md §9), the order values are generated in
FIELDS: dict[str, tuple[str, ...]] = {
    "Quote": (
        "eventSymbol", "eventTime", "sequence", "timeNanoPart", "bidTime", "bidExchangeCode",
        "askTime", "askExchangeCode", "bidPrice", "askPrice", "bidSize", "askSize",
    ),
    "Trade": (
        "eventSymbol", "eventTime", "time", "timeNanoPart", "sequence", "exchangeCode", "dayId",
        "tickDirection", "extendedTradingHours", "price", "change", "size", "dayVolume",
        "dayTurnover",
    ),
    "Greeks": (
        "eventSymbol", "eventTime", "eventFlags", "index", "time", "sequence", "price",
        "volatility", "delta", "gamma", "theta", "rho", "vega",
    ),
}  # fmt: skip
#: fields whose "NaN" makes the SDK drop the event (no default in its pydantic model)
SDK_REQUIRED: dict[str, tuple[str, ...]] = {
    "Quote": ("bidPrice", "askPrice"),
    "Trade": ("price",),
    "Greeks": ("price", "volatility", "delta", "gamma", "theta", "rho", "vega"),
}


def equities() -> list[str]:
    return [f"EQ{i:03d}" for i in range(497)] + ["SPY", "SPX", "QQQ"]


def options() -> list[str]:
    return [f".SPY{26 + i % 2}12{18 - i % 3}{'CP'[i % 2]}{400 + i // 2}" for i in range(500)]


def subscriptions() -> dict[str, list[str]]:
    """What a client subscribes to, per event type, to receive the whole stream."""
    return {"Quote": equities() + options(), "Trade": equities() + options(), "Greeks": options()}


class Stream:
    """The generated events, as flat COMPACT value lists in :data:`FIELDS` order, per message."""

    def __init__(self, n_messages: int, seed: int, types: Sequence[str]) -> None:
        rng = random.Random(seed)
        eq, opt = equities(), options()
        symbols = eq + opt
        base_ms = 1721664000000
        index_base = 7394490574700544000

        def dbl(value: float, share: float = NAN_PRICE) -> float | str:
            return "NaN" if rng.random() < share else value

        def size(value: float) -> float | str:
            return dbl(value, NAN_SIZE)

        self.messages: list[tuple[str, list[Any]]] = []
        self.events: Counter[str] = Counter()
        self.sdk_events: Counter[str] = Counter()
        wanted = set(types)
        while len(self.messages) < n_messages:
            r = rng.random()
            t = base_ms + len(self.messages) * 100
            values: list[Any] = []
            if r < 0.75:
                kind = "Quote"
                for _ in range(EVENTS_PER_MESSAGE):
                    sym = rng.choice(symbols)
                    px = round(rng.uniform(1, 600), 2)
                    idx = sym == "SPX"
                    values += [
                        sym, 0, 0, 0,
                        t - rng.randrange(5000), "\u0000" if idx else rng.choice(EXCHANGES),
                        t - rng.randrange(5000), "\u0000" if idx else rng.choice(EXCHANGES),
                        dbl(px), dbl(round(px + 0.01 * rng.randrange(1, 20), 2)),
                        size(float(rng.randrange(1, 50) * 100)),
                        size(float(rng.randrange(1, 50) * 100)),
                    ]  # fmt: skip
            elif r < 0.90:
                kind = "Trade"
                for _ in range(EVENTS_PER_MESSAGE):
                    sym = rng.choice(symbols)
                    px = round(rng.uniform(1, 600), 2)
                    values += [
                        sym, 0, t - rng.randrange(5000), 0, rng.randrange(1 << 20),
                        rng.choice(EXCHANGES), 19926, rng.choice(TICKS), rng.random() < 0.1,
                        dbl(px), dbl(round(rng.uniform(-5, 5), 2)),
                        size(float(rng.randrange(1, 500))),
                        size(float(rng.randrange(1, 10**8))),
                        size(round(rng.uniform(1e6, 1e10), 1)),
                    ]  # fmt: skip
            else:
                kind = "Greeks"
                for _ in range(EVENTS_PER_MESSAGE):
                    sym = rng.choice(opt)
                    values += [
                        sym, 0, 0, index_base + rng.randrange(1 << 22), t - rng.randrange(5000), 0,
                        dbl(round(rng.uniform(0.05, 50), 2)),
                        dbl(rng.uniform(0.1, 0.9)), dbl(rng.uniform(-1, 1)),
                        dbl(rng.uniform(0, 0.1)), dbl(rng.uniform(-1, 0)),
                        dbl(rng.uniform(-0.5, 0.5)), dbl(rng.uniform(0, 2)),
                    ]  # fmt: skip
            if kind not in wanted:
                continue
            self.messages.append((kind, values))
            self.events[kind] += EVENTS_PER_MESSAGE
            self.sdk_events[kind] += _sdk_valid(kind, values)
        self._bodies: dict[tuple[str, tuple[str, ...]], list[bytes]] = {}

    @property
    def total(self) -> int:
        return sum(self.events.values())

    def bodies(self, kind: str, fields: tuple[str, ...]) -> list[bytes]:
        """The ``data`` JSON of every message of one type, values in ``fields`` order (cached)."""
        key = (kind, fields)
        if key not in self._bodies:
            canonical = FIELDS[kind]
            k = len(canonical)
            lower = [name.lower() for name in canonical]
            # name -> canonical position, matched case-insensitively; unknown names are null
            perm = [lower.index(f.lower()) if f.lower() in lower else None for f in fields]
            encode = msgspec.json.encode
            out = []
            for this, values in self.messages:
                if this != kind:
                    continue
                if list(fields) != list(canonical):
                    n = len(values) // k
                    flat: list[Any] = [None] * (n * len(fields))
                    for j, src in enumerate(perm):
                        flat[j :: len(fields)] = values[src::k] if src is not None else [None] * n
                    values = flat
                out.append(encode([kind, values]))
            self._bodies[key] = out
        return self._bodies[key]

    def frames(self, kind: str, fields: tuple[str, ...], channel: int) -> list[bytes]:
        """Every FEED_DATA frame of one type, in stream order, for one channel."""
        head = b'{"type":"FEED_DATA","channel":%d,"data":' % channel
        return [head + body + b"}" for body in self.bodies(kind, fields)]

    def interleave(self, frames: dict[str, list[bytes]]) -> list[bytes]:
        """One connection's whole stream: the frames of each type, in stream order."""
        nxt = dict.fromkeys(frames, 0)
        out = []
        for kind, _ in self.messages:
            out.append(frames[kind][nxt[kind]])
            nxt[kind] += 1
        return out


def _sdk_valid(kind: str, values: list[Any]) -> int:
    names = FIELDS[kind]
    k = len(names)
    n = len(values) // k
    bad = [False] * n
    for name in SDK_REQUIRED[kind]:
        for i, v in enumerate(values[names.index(name) :: k]):
            if v == "NaN":
                bad[i] = True
    return n - sum(bad)


def check_sdk_rule(stream: Stream, n_messages: int = 40) -> None:
    """Check :data:`SDK_REQUIRED` against the SDK's own ``from_stream`` on a few messages."""
    import logging

    from tastytrade.dxfeed import Greeks, Quote, Trade

    classes: dict[str, Any] = {"Quote": Quote, "Trade": Trade, "Greeks": Greeks}
    logging.disable(logging.CRITICAL)
    try:
        for kind, values in stream.messages[:n_messages]:
            got = len(classes[kind].from_stream(values))
            if got != _sdk_valid(kind, values):
                raise SystemExit(
                    f"SDK keeps {got} {kind} events, rule says {_sdk_valid(kind, values)}"
                )
    finally:
        logging.disable(logging.NOTSET)


class Connection:
    """One client connection: the handshake, then the stream once."""

    def __init__(self, ws: ServerConnection, stream: Stream, types: Sequence[str], log: bool):
        self.ws = ws
        self.stream = stream
        self.types = tuple(types)
        self.log = log
        self.authorized = False
        self.channel_of: dict[str, int] = {}  # event type -> channel, from FEED_SETUP
        self.frames: dict[str, list[bytes]] = {}  # event type -> its frames, built at FEED_SETUP
        self.subscribed: set[str] = set()
        self.started = False
        self.tasks: set[asyncio.Task[None]] = set()

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(msg, separators=(",", ":")))

    async def run(self) -> None:
        keepalive = asyncio.create_task(self.keepalive())
        try:
            async for raw in self.ws:
                await self.receive(json.loads(raw))
        except ConnectionClosed:
            pass
        finally:
            keepalive.cancel()
            for task in self.tasks:
                task.cancel()

    async def keepalive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_S)
            await self.send({"type": "KEEPALIVE", "channel": 0})

    async def receive(self, msg: dict[str, Any]) -> None:
        kind, ch = msg.get("type"), msg.get("channel", 0)
        if kind == "SETUP":
            await self.send(
                {
                    "type": "SETUP",
                    "channel": 0,
                    "keepaliveTimeout": 60,
                    "acceptKeepaliveTimeout": 60,
                    "version": "1.0-blaster",
                }
            )
            if not self.authorized:
                await self.send({"type": "AUTH_STATE", "channel": 0, "state": "UNAUTHORIZED"})
        elif kind == "AUTH":
            self.authorized = msg.get("token") == TOKEN
            state = "AUTHORIZED" if self.authorized else "UNAUTHORIZED"
            reply = {"type": "AUTH_STATE", "channel": 0, "state": state}
            if self.authorized:
                reply["userId"] = "bench"
            await self.send(reply)
        elif kind in ("KEEPALIVE", "ERROR"):
            pass
        elif not self.authorized:
            await self.send(_error(ch, "BAD_ACTION", "AUTH step missing"))
        elif kind == "CHANNEL_REQUEST":
            params = dict(msg.get("parameters") or {}, subFormat="LIST")
            opened = {"type": "CHANNEL_OPENED", "channel": ch, "service": msg.get("service")}
            await self.send(opened | {"parameters": params})
        elif kind == "CHANNEL_CANCEL":
            await self.send({"type": "CHANNEL_CLOSED", "channel": ch})
        elif kind == "FEED_SETUP":
            accepted = {
                name: tuple(names)
                for name, names in (msg.get("acceptEventFields") or {}).items()
                if name in FIELDS
            }
            for name, names in accepted.items():
                self.channel_of[name] = ch
                if name in self.types:
                    self.frames[name] = self.stream.frames(name, names, ch)
            config: dict[str, Any] = {
                "type": "FEED_CONFIG",
                "channel": ch,
                "dataFormat": "COMPACT",
                "aggregationPeriod": msg.get("acceptAggregationPeriod", 0.1),
            }
            if accepted:
                config["eventFields"] = {name: list(names) for name, names in accepted.items()}
            await self.send(config)
        elif kind == "FEED_SUBSCRIPTION":
            for entry in msg.get("add") or ():
                if self.channel_of.get(entry.get("type")) == ch:
                    self.subscribed.add(entry["type"])
            if not self.started and all(t in self.subscribed for t in self.types):
                self.started = True
                task = asyncio.create_task(self.blast())
                self.tasks.add(task)

    async def blast(self) -> None:
        frames = self.stream.interleave({t: self.frames[t] for t in self.types})
        start = time.perf_counter()
        send = self.ws.send
        try:
            for frame in frames:  # whole messages: websockets keeps concurrent sends apart
                await send(frame, text=True)
        except ConnectionClosed:
            return
        if self.log:
            took = time.perf_counter() - start
            print(
                f"blaster: {self.stream.total} events in {len(frames)} frames written in "
                f"{took:.3f} s ({self.stream.total / took:,.0f} events/s)",
                file=sys.stderr,
                flush=True,
            )


def _error(channel: int, error: str, message: str) -> dict[str, Any]:
    return {"type": "ERROR", "channel": channel, "error": error, "message": message}


async def serve_stream(stream: Stream, types: Sequence[str], max_seconds: float, log: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def watch_stdin() -> None:  # the parent closes our stdin (or dies): stop
        sys.stdin.buffer.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()

    async def handler(ws: ServerConnection) -> None:
        await Connection(ws, stream, types, log).run()

    async with serve(
        handler,
        "127.0.0.1",
        0,
        compression=None,
        ping_interval=None,
        max_size=4 * 1024 * 1024,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        size = sum(len(b) for kind in types for b in stream.bodies(kind, FIELDS[kind]))
        info = {
            "port": port,
            "url": f"ws://127.0.0.1:{port}/realtime",
            "token": TOKEN,
            "messages": len(stream.messages),
            "events": dict(stream.events),
            "sdk_events": dict(stream.sdk_events),
            "json_bytes_per_event": round(size / stream.total, 1),
        }
        print(json.dumps(info), flush=True)
        try:
            await asyncio.wait_for(stop.wait(), max_seconds)
        except TimeoutError:
            print(f"blaster: stopping after {max_seconds} s", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5000, help="FEED_DATA messages streamed")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--types", default="Quote,Trade,Greeks", help="event types streamed")
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    parser.add_argument("--max-seconds", type=float, default=3600, help="exit after this long")
    parser.add_argument("--verbose", action="store_true", help="log each stream on stderr")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    types = [t for t in args.types.split(",") if t]
    unknown = set(types) - set(FIELDS)
    if unknown:
        raise SystemExit(f"unknown event types {sorted(unknown)}; known: {sorted(FIELDS)}")
    stream = Stream(args.messages, args.seed, types)
    check_sdk_rule(stream)
    asyncio.run(serve_stream(stream, types, args.max_seconds, args.verbose))


if __name__ == "__main__":
    main()
