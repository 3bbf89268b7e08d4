"""`tastyrec replay` and `tastyrec serve` as real subprocesses, and the replay server against real
DXLink clients (tastyrec's streamer and the tastytrade SDK's)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pyarrow.parquet as pq
import pytest

from tastyrec.dxlink.streamer import DXLinkStreamer
from tastyrec.events import Candle, Quote, Trade
from tastyrec.replay import ReplayStreamer
from tastyrec.replay.feed import ReplayFeed
from tastyrec.sim import Simulator
from tests.integration.waits import wait_until
from tests.integration.wire import sent_events

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
TASTYREC = [sys.executable, "-m", "tastyrec"]


def rows(event_type: str) -> int:
    return sum(pq.read_metadata(f).num_rows for f in (SAMPLE / event_type).glob("*/*.parquet"))


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TASTYREC, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_replay_prints_every_event_as_a_json_line_in_receipt_order() -> None:
    done = run("replay", str(SAMPLE))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    types = ["Quote", "Trade", "Summary", "Profile", "TimeAndSale", "Greeks", "Candle"]
    assert len(lines) == sum(rows(t) for t in types)
    assert {line["event_type"] for line in lines} == set(types)
    quote = next(line for line in lines if line["event_type"] == "Quote")
    assert {"event_symbol", "bid_price", "ask_price", "bid_time"} <= quote.keys()
    assert isinstance(quote["bid_time"], int)  # the wire's epoch milliseconds


async def test_replay_json_is_what_the_replay_streamer_gives() -> None:
    done = run("replay", str(SAMPLE), "--events", "Quote,Trade", "--symbols", "SPY,AAPL")
    assert done.returncode == 0, done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    async with ReplayStreamer(SAMPLE) as replay:
        await replay.subscribe(Quote, ["SPY", "AAPL"])
        await replay.subscribe(Trade, ["SPY", "AAPL"])
        expected = [
            {**msgspec.structs.asdict(e), "event_type": type(e).__name__}
            async for e in replay.listen(Quote, Trade)
        ]
    # NaN prints as null
    for row in expected:
        for key, value in row.items():
            if isinstance(value, float) and math.isnan(value):
                row[key] = None
    assert printed == expected and len(printed) > 100


def test_replay_start_end_and_bad_input() -> None:
    done = run("replay", str(SAMPLE), "--events", "Trade", "--start", "2026-11-21T13:44:30Z")
    assert done.returncode == 0, done.stderr
    times = [json.loads(line)["time"] for line in done.stdout.splitlines()]
    assert 0 < len(times) < rows("Trade")
    bad = run("replay", str(SAMPLE), "--start", "yesterday-ish")
    assert bad.returncode == 2 and "--start" in bad.stderr and "ISO" in bad.stderr
    unknown = run("replay", str(SAMPLE), "--events", "Quotes")
    assert unknown.returncode == 2 and "unknown event type 'Quotes'" in unknown.stderr
    missing = run("replay", str(SAMPLE / "nope"))
    assert missing.returncode == 2 and "there is no folder" in missing.stderr


def test_replay_into_a_closed_pipe_is_quiet() -> None:
    cmd = " ".join([*TASTYREC, "replay", str(SAMPLE)]) + " | head -n 3"
    done = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert len(done.stdout.splitlines()) == 3
    assert "Traceback" not in done.stderr


def test_serve_prints_its_url_first_and_plays_the_recording(cli: Any) -> None:
    proc = cli.start("serve", str(SAMPLE), "--speed", "50")
    url = proc.wait_for("the URL", lambda: proc.stdout.startswith("dxlink ") and proc.stdout)
    url = url.split()[1]
    assert url.startswith("ws://127.0.0.1:")

    async def client() -> list[Quote]:
        got: list[Quote] = []
        async with DXLinkStreamer(url=url, token=None) as streamer:
            await streamer.subscribe(Quote, ["SPY"])
            with anyio.move_on_after(5):  # 20 s recorded at 50x: under half a second
                async for quote in streamer.listen(Quote):
                    got.append(quote)  # noqa: PERF401 (the list must survive the timeout)
        return got

    quotes = anyio.run(client)
    spy = sum(
        pq.read_table(f, filters=[("event_symbol", "=", "SPY")]).num_rows
        for f in (SAMPLE / "Quote").glob("*/*.parquet")
    )
    assert len(quotes) == spy
    assert all(q.event_symbol == "SPY" for q in quotes)


async def test_the_replay_server_gives_a_dxlink_client_the_recorded_events() -> None:
    async with ReplayStreamer(SAMPLE) as replay:
        await replay.subscribe(Quote, ["SPY", "QQQ"])
        await replay.subscribe_candle(["SPY"], "1m")
        expected = [e async for e in replay.listen(Quote, Candle)]

    def feed() -> ReplayFeed:
        return ReplayFeed(SAMPLE, speed=math.inf)

    async with Simulator(token=None, feed_factory=feed, keep_sent=True) as server:
        async with DXLinkStreamer(url=server.url, token=None) as streamer:
            got: dict[str, list[Any]] = {"Quote": [], "Candle": []}

            async def take(cls: type[Any]) -> None:
                async for event in streamer.listen(cls):
                    got[cls.__name__].append(event)

            async with anyio.create_task_group() as tg:
                for cls in (Quote, Candle):
                    streamer.queued(cls)  # its listener's queue exists before anything arrives
                    tg.start_soon(take, cls)
                await streamer.subscribe(Quote, ["SPY", "QQQ"])
                await streamer.subscribe_candle(["SPY"], "1m")
                await wait_until(lambda: len(got["Quote"]) + len(got["Candle"]) >= len(expected))
                # nothing more is sent; every event the server sent arrives (an extra one too)
                server.stall(True)
                await server.quiesce()
                assert server.sent is not None
                sent = sum(len(v) for v in sent_events(server.sent).values())
                await wait_until(lambda: len(got["Quote"]) + len(got["Candle"]) >= sent)
                tg.cancel_scope.cancel()
    quotes = [e for e in expected if isinstance(e, Quote)]
    candles = [e for e in expected if isinstance(e, Candle)]
    assert msgspec.msgpack.encode(got["Quote"]) == msgspec.msgpack.encode(quotes)
    assert msgspec.msgpack.encode(got["Candle"]) == msgspec.msgpack.encode(candles)


async def test_the_tastytrade_sdk_runs_against_the_replay_server() -> None:
    dxfeed = pytest.importorskip("tastytrade.dxfeed")
    sdk = pytest.importorskip("tastytrade.streamer")

    class StubSession:
        client_kwargs: dict[str, Any] = {}

        def __init__(self, url: str) -> None:
            self.url = url

        async def _get(self, path: str) -> dict[str, Any]:
            return {"dxlink-url": self.url, "token": "replay", "level": "api"}

    def feed() -> ReplayFeed:
        return ReplayFeed(SAMPLE, speed=math.inf)

    async with Simulator(token="replay", feed_factory=feed) as server:
        streamer = sdk.DXLinkStreamer(StubSession(server.url))
        async with streamer:
            await streamer.subscribe(dxfeed.Trade, ["SPY", "QQQ", "AAPL"])
            with anyio.fail_after(15):
                trades = [await streamer.get_event(dxfeed.Trade) for _ in range(20)]
            for stream in [*streamer._send.values(), *streamer._recv.values()]:
                stream.close()
    recorded = pq.read_table(SAMPLE / "Trade", columns=["event_symbol", "price"]).to_pylist()
    assert [(t.event_symbol, float(t.price)) for t in trades] == [
        (r["event_symbol"], r["price"]) for r in recorded[:20]
    ]
