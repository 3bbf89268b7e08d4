"""Replay against live: a recording made from the simulator replays to exactly what the live
streamer delivered, in the order the server sent it."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from tastyrec.dxlink.streamer import DXLinkStreamer
from tastyrec.events import Candle, Event, Greeks, Profile, Quote, Summary, TimeAndSale, Trade
from tastyrec.record.recorder import Recorder
from tastyrec.record.sink import RotationPolicy
from tastyrec.replay import ReplayStreamer
from tastyrec.sim import Simulator
from tastyrec.sim.engine import SimConfig
from tests.integration.waits import fast_delays, wait_until
from tests.integration.wire import sent_events

pytestmark = pytest.mark.anyio

OPTION = ".SPY261218C600"
EQUITIES = ["SPY", "QQQ", "AAPL"]
TYPES: list[type[Event]] = [Quote, Trade, Greeks, Summary, Profile, TimeAndSale, Candle]


def wire(events: list[Any]) -> list[bytes]:
    """Bit-exact images of events (msgpack keeps every float's bits, NaN included)."""
    return [msgspec.msgpack.encode(e) for e in events]


@pytest.fixture
async def recorded(tmp_path: Path) -> AsyncIterator[tuple[Path, dict[str, list[Any]], list[Any]]]:
    """Record ~2 s from the simulator while listening live; yield (folder, live events by type,
    frames the server sent)."""
    config = SimConfig(keepalive_timeout=5.0, quote_rate_hz=40.0, summary_rate_hz=2.0)
    live: dict[str, list[Any]] = defaultdict(list)
    async with Simulator(seed=11, token=None, config=config, keep_sent=True) as sim:
        async with DXLinkStreamer(
            url=sim.url,
            token=None,
            queue_size=1_000_000,
            tap_interval=0.05,
            reconnect_delays=fast_delays,
        ) as streamer:
            async with Recorder(
                tmp_path, streamer, source="simulator", rotation=RotationPolicy(max_age_s=0.7)
            ):

                async def collect(cls: type[Event]) -> None:
                    async for event in streamer.listen(cls):
                        live[cls.__name__].append(event)

                async with anyio.create_task_group() as tg:
                    for cls in TYPES:
                        streamer.queued(cls)  # each listener's queue exists before any event
                        tg.start_soon(collect, cls)
                    await streamer.subscribe(Quote, [*EQUITIES, OPTION])
                    await streamer.subscribe(Trade, EQUITIES)
                    await streamer.subscribe(Summary, EQUITIES)
                    await streamer.subscribe(Greeks, [OPTION])
                    await streamer.subscribe(Profile, EQUITIES)
                    await streamer.subscribe(TimeAndSale, EQUITIES)
                    await streamer.subscribe_candle(["SPY"], "1m")
                    await wait_until(
                        lambda: len(live["Quote"]) > 80
                        and all(live[cls.__name__] for cls in TYPES)
                        and len(list((tmp_path / "Quote").glob("date=*/*.parquet"))) >= 2,
                        60,
                    )
                    sim.stall(True)  # nothing more is sent; what was sent all arrives
                    await sim.quiesce()
                    assert sim.sent is not None
                    sent = sum(len(v) for v in sent_events(sim.sent).values())
                    await wait_until(lambda: sum(len(v) for v in live.values()) >= sent, 60)
                    tg.cancel_scope.cancel()
        frames = list(sim.sent or [])
    yield tmp_path, live, frames


async def test_replay_is_exactly_what_the_live_streamer_delivered(
    recorded: tuple[Path, dict[str, list[Any]], list[Any]],
) -> None:
    root, live, _ = recorded
    assert len(live["Quote"]) > 40 and live["Trade"] and live["Greeks"] and live["Candle"]
    assert live["Profile"] and live["TimeAndSale"] and live["Summary"]
    assert len(list((root / "Quote").glob("date=*/*.parquet"))) >= 2  # rotated: several files
    # everything subscribed, one type listened to: the others are not kept for nobody
    async with ReplayStreamer(root) as replay:
        await replay.subscribe(Quote, [*EQUITIES, OPTION])
        await replay.subscribe(Trade, EQUITIES)
        await replay.subscribe(Summary, EQUITIES)
        await replay.subscribe(Greeks, [OPTION])
        await replay.subscribe_candle(["SPY"], "1m")
        assert wire([e async for e in replay.listen(Quote)]) == wire(live["Quote"])
        assert replay.stats.dropped.total() == 0
    # one type at a time, each in its own replay (a fresh timeline per type)
    for cls in TYPES:
        async with ReplayStreamer(root) as replay:
            if cls is Candle:
                await replay.subscribe_candle(["SPY"], "1m")
            else:
                await replay.subscribe(cls, [*EQUITIES, OPTION])
            replayed = [e async for e in replay.listen(cls)]
        assert all(type(e) is cls for e in replayed)
        assert wire(replayed) == wire(live[cls.__name__]), cls.__name__


async def test_several_types_in_one_iterator_come_in_the_order_the_server_sent_them(
    recorded: tuple[Path, dict[str, list[Any]], list[Any]],
) -> None:
    root, _, frames = recorded
    sent: list[tuple[str, str]] = []
    widths: dict[tuple[int, str], int] = {}
    for frame in frames:
        msg = json.loads(frame)
        if msg["type"] == "FEED_CONFIG":
            for name, names in (msg.get("eventFields") or {}).items():
                widths[(msg["channel"], name)] = len(names)
        elif msg["type"] == "FEED_DATA":
            data = msg["data"]
            for name, values in zip(data[0::2], data[1::2], strict=True):
                if name in ("Quote", "Trade", "Greeks"):
                    width = widths[(msg["channel"], name)]
                    sent += [(name, symbol) for symbol in values[0::width]]
    async with ReplayStreamer(root) as replay:
        await replay.subscribe(Quote, [*EQUITIES, OPTION])
        await replay.subscribe(Trade, EQUITIES)
        await replay.subscribe(Greeks, [OPTION])
        replayed = [
            (type(e).__name__, e.event_symbol) async for e in replay.listen(Quote, Trade, Greeks)
        ]
        assert replay.finished
    assert replayed == sent


async def test_listeners_in_separate_tasks_each_get_their_type(
    recorded: tuple[Path, dict[str, list[Any]], list[Any]],
) -> None:
    root, live, _ = recorded
    got: dict[str, list[Any]] = defaultdict(list)
    async with ReplayStreamer(root) as replay:
        await replay.subscribe(Quote, [*EQUITIES, OPTION])
        await replay.subscribe(Trade, EQUITIES)

        async def take(cls: type[Event]) -> None:
            async for event in replay.listen(cls):
                got[cls.__name__].append(event)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(take, Quote)
                tg.start_soon(take, Trade)
        assert replay.stats.dropped.total() == 0
    assert wire(got["Quote"]) == wire(live["Quote"])
    assert wire(got["Trade"]) == wire(live["Trade"])
