"""DXLinkStreamer against the in-process simulator over real websockets on 127.0.0.1.

Every wait is bounded with ``anyio.fail_after``. Where a test must know that the client has
processed everything the server sent before some point, it uses a *barrier*: the simulator sends
an ``ERROR`` with a unique message after that point, and frames keep their order on the socket, so
once the message shows up in ``streamer.server_errors`` everything before it has been handled.
Waits on counters that have no event to await poll every few ms (``waits.wait_until``).
"""

from __future__ import annotations

import itertools
import logging
import math
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pyarrow as pa
import pytest

from tastyrec import transport
from tastyrec.dxlink import messages as m
from tastyrec.dxlink.streamer import DXLinkStreamer
from tastyrec.events import SNAPSHOT_BEGIN, SNAPSHOT_END, SNAPSHOT_SNIP
from tastyrec.events.market import (
    Candle,
    Greeks,
    Profile,
    Quote,
    Summary,
    TheoPrice,
    TimeAndSale,
    Trade,
    TradeETH,
    Underlying,
)
from tastyrec.exceptions import AuthenticationError, ConnectionClosed, LocalProtocolError
from tastyrec.schema import arrow_schema
from tastyrec.sim import Simulator
from tastyrec.sim.engine import SimConfig
from tests.integration.manual_time import ManualTime, Reconnects
from tests.integration.waits import WAIT_S, fast_delays, wait_until

pytestmark = pytest.mark.anyio

TOKEN = "sim-token-5f3a9c"  # distinctive, so a leak is easy to spot
OPTION = ".SPY261218C600"
#: generous bound for anything that should happen within a few aggregation periods


def sim_config(**kwargs: Any) -> SimConfig:
    return SimConfig(**{"keepalive_timeout": 5.0, "quote_rate_hz": 20.0, **kwargs})


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(seed=7, token=TOKEN, config=sim_config()) as server:
        yield server


def make_streamer(server: Simulator, **kwargs: Any) -> DXLinkStreamer:
    options: dict[str, Any] = {
        "url": server.url,
        "token": server.token,
        "keepalive_timeout": 10.0,  # the watchdog is tested on its own: no false alarms here
        "connect_timeout": WAIT_S,
        "reconnect_delays": fast_delays,
        **kwargs,
    }
    return DXLinkStreamer(**options)


_barriers = itertools.count()


async def barrier(server: Simulator, streamer: DXLinkStreamer) -> None:
    """Return once the streamer has processed every frame the server sent before this call."""
    marker = f"barrier-{next(_barriers)}"
    await server.send_error("UNKNOWN", marker)
    await wait_until(lambda: any(e.message == marker for e in streamer.server_errors))


def drain(streamer: DXLinkStreamer, event_type: type[Any]) -> list[Any]:
    out = []
    while (event := streamer.get_event_nowait(event_type)) is not None:
        out.append(event)
    return out


async def next_for(streamer: DXLinkStreamer, event_type: type[Any], symbol: str) -> Any:
    with anyio.fail_after(WAIT_S):
        async for event in streamer.listen(event_type):
            if event.event_symbol == symbol:
                return event
    raise AssertionError("unreachable")


def subscriptions_sent(server: Simulator, start: int = 0) -> list[m.FeedSubscription]:
    return [msg for msg in server.received[start:] if isinstance(msg, m.FeedSubscription)]


def added(msgs: list[m.FeedSubscription]) -> list[m.Subscription]:
    return [s for msg in msgs for s in msg.add or ()]


# --- 1. every event type -----------------------------------------------------------------------


async def test_every_event_type(sim: Simulator) -> None:
    async with make_streamer(sim) as streamer:
        await streamer.subscribe(Quote, ["SPY", "QQQ"])
        for cls in (Trade, TradeETH, Summary, Profile, TimeAndSale, Underlying):
            await streamer.subscribe(cls, ["SPY"])
        await streamer.subscribe(Greeks, [OPTION])
        await streamer.subscribe(TheoPrice, [OPTION])

        seen = set()
        with anyio.fail_after(WAIT_S):
            async for quote in streamer.listen(Quote):
                assert type(quote) is Quote
                assert quote.bid_price < quote.ask_price
                assert quote.bid_price > 0
                seen.add(quote.event_symbol)
                if seen == {"SPY", "QQQ"}:
                    break

        with anyio.fail_after(WAIT_S):
            trade = await streamer.get_event(Trade)
            eth = await streamer.get_event(TradeETH)
            summary = await streamer.get_event(Summary)
            profile = await streamer.get_event(Profile)
            sale = await streamer.get_event(TimeAndSale)
            underlying = await streamer.get_event(Underlying)
            greeks = await streamer.get_event(Greeks)
            theo = await streamer.get_event(TheoPrice)

        assert type(trade) is Trade and trade.event_symbol == "SPY"
        assert trade.price > 0 and trade.size > 0 and trade.time > 0
        assert type(eth) is TradeETH and eth.event_symbol == "SPY" and eth.price > 0
        assert summary.event_symbol == "SPY" and summary.day_open_price > 0
        assert summary.day_low_price <= summary.day_high_price
        assert profile.event_symbol == "SPY" and profile.description
        assert profile.low_52_week_price <= profile.high_52_week_price
        assert sale.event_symbol == "SPY" and sale.price > 0 and sale.size > 0
        assert underlying.event_symbol == "SPY" and underlying.volatility > 0
        assert greeks.event_symbol == OPTION
        assert 0 < greeks.delta < 1 and greeks.gamma > 0 and greeks.volatility > 0
        assert theo.event_symbol == OPTION and theo.price > 0 and theo.underlying_price > 0
        assert streamer.stats.bad_frames == 0
        assert not streamer.server_errors


@pytest.mark.parametrize(
    ("limit", "minutes", "tail"), [(1000, 10, SNAPSHOT_END), (5, 30, SNAPSHOT_SNIP)]
)
async def test_candle_snapshot(limit: int, minutes: int, tail: int) -> None:
    # the simulator's clock starts half-way through a minute (and runs on), so no minute
    # boundary passes while the snapshot is built, whenever the test runs
    t0, started = 1_765_000_230.0, time.monotonic()
    config = sim_config(candle_snapshot_limit=limit)
    clock = lambda: t0 + (time.monotonic() - started)  # noqa: E731
    async with (
        Simulator(seed=7, token=TOKEN, config=config, clock=clock) as sim,
        make_streamer(sim) as streamer,
    ):
        start = datetime.fromtimestamp(t0, UTC) - timedelta(minutes=minutes)
        await streamer.subscribe_candle(["SPY"], "1m", start_time=start)
        with anyio.fail_after(WAIT_S):
            snapshot = [await streamer.get_event(Candle)]
            while not snapshot[-1].event_flags & tail:
                snapshot.append(await streamer.get_event(Candle))

        (sub,) = added(subscriptions_sent(sim))
        assert sub.symbol == "SPY{=1m,tho=true}"
        assert sub.from_time == math.floor(start.timestamp() * 1000)
        assert {c.event_symbol for c in snapshot} == {"SPY{=m,tho=true}"}
        assert snapshot[0].event_flags & SNAPSHOT_BEGIN
        assert not any(c.event_flags & (SNAPSHOT_BEGIN | tail) for c in snapshot[1:-1])
        times = [c.time for c in snapshot]
        assert times == sorted(times, reverse=True)  # newest first
        assert all(b - a == 60_000 for a, b in itertools.pairwise(reversed(times)))
        assert len(snapshot) == (limit if tail == SNAPSHOT_SNIP else minutes + 1)
        if tail == SNAPSHOT_END:
            assert times[-1] <= sub.from_time < times[-1] + 60_000
        for c in snapshot:
            assert c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high


def channel_contracts(server: Simulator, start: int = 0) -> dict[int, str]:
    """Channel id -> contract of each CHANNEL_REQUEST the simulator got (from ``start`` on)."""
    return {
        msg.channel: msg.parameters["contract"]
        for msg in server.received[start:]
        if isinstance(msg, m.ChannelRequest)
    }


async def history(streamer: DXLinkStreamer) -> list[Candle]:
    """The next candle snapshot, SNAPSHOT_BEGIN to SNAPSHOT_END/SNIP."""
    with anyio.fail_after(WAIT_S):
        while not (candle := await streamer.get_event(Candle)).snapshot_begin:
            pass
        snapshot = [candle]
        while not snapshot[-1].event_flags & (SNAPSHOT_END | SNAPSHOT_SNIP):
            snapshot.append(await streamer.get_event(Candle))
    return snapshot


async def test_candle_history_comes_on_a_history_channel_also_after_a_reconnect(
    sim: Simulator,
) -> None:
    """FIELD_REPORTS #3: candles are asked for on a channel opened with contract HISTORY (on
    AUTO the simulator, like production, sends one empty snapshot), the other types on AUTO; a
    reconnect restores each on the same channel with the same contract, and the history again."""
    start = datetime.now(UTC) - timedelta(minutes=20)
    async with make_streamer(sim) as streamer:
        await streamer.subscribe(Quote, ["SPY"])
        await streamer.subscribe_candle(["SPY", "QQQ"], "1m", start_time=start)
        await streamer.subscribe(Greeks, [OPTION])
        first = await history(streamer)
        second = await history(streamer)
        assert channel_contracts(sim) == {1: "AUTO", 3: "HISTORY", 5: "AUTO"}
        for snapshot in (first, second):
            # 20 minutes of bars and the live one (22 if a minute began since `start`)
            assert len(snapshot) in (21, 22) and not any(c.snapshot_marker for c in snapshot)
            assert all(c.low <= min(c.open, c.close) <= max(c.open, c.close) for c in snapshot)
        assert {first[0].event_symbol, second[0].event_symbol} == {
            "SPY{=m,tho=true}",
            "QQQ{=m,tho=true}",
        }

        n = len(sim.received)
        reconnects = Reconnects(streamer)
        await sim.drop()
        await reconnects.wait()
        assert streamer.stats.connects == 2
        assert channel_contracts(sim, n) == {1: "AUTO", 3: "HISTORY", 5: "AUTO"}
        drain(streamer, Candle)
        again = await history(streamer)
        assert len(again) >= 21 and not any(c.snapshot_marker for c in again)
        assert (await next_for(streamer, Greeks, OPTION)).delta > 0


async def test_a_candle_symbol_the_server_refuses_is_a_warning_naming_it(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Tick candles (``SPY{=t}``) are refused by the simulator with ERROR BAD_ACTION on the
    candle channel: the streamer logs it at WARNING with the channel's event type and keeps it in
    ``server_errors``, never silence; the rest of the subscriptions flow on."""
    caplog.set_level(logging.WARNING, logger="tastyrec")
    async with make_streamer(sim) as streamer:
        await streamer.subscribe(Quote, ["SPY"])
        await streamer.subscribe_candle(["SPY"], "t")
        await wait_until(lambda: bool(streamer.server_errors))
        (error,) = streamer.server_errors
        candle_channel = next(
            ch.id for ch in streamer.protocol.channels.values() if ch.event_type == "Candle"
        )
        assert (error.error_type, error.channel) == ("BAD_ACTION", candle_channel)
        assert "'SPY{=t,tho=true}'" in error.message
        (warning,) = [r.getMessage() for r in caplog.records if "server error" in r.getMessage()]
        assert warning.startswith(
            f"< server error BAD_ACTION on channel {candle_channel} (Candle subscriptions): "
            "Candle symbol(s) 'SPY{=t,tho=true}' not supported"
        ), warning
        assert (await next_for(streamer, Quote, "SPY")).bid_price > 0
        assert streamer.get_event_nowait(Candle) is None


# --- 2. NaN ------------------------------------------------------------------------------------


async def test_nan_values_are_kept(sim: Simulator) -> None:
    async with make_streamer(sim) as streamer:
        await streamer.subscribe(Quote, ["SPX"])
        await streamer.subscribe(Summary, ["SPX"])
        with anyio.fail_after(WAIT_S):
            quote = await streamer.get_event(Quote)
            summary = await streamer.get_event(Summary)
        assert quote.event_symbol == "SPX"
        assert math.isnan(quote.bid_size) and math.isnan(quote.ask_size)
        assert 0 < quote.bid_price < quote.ask_price
        assert math.isnan(summary.prev_day_volume)
        assert summary.day_open_price > 0
        assert streamer.stats.bad_frames == 0


# --- 3. unsubscribe ----------------------------------------------------------------------------


async def test_unsubscribe(sim: Simulator) -> None:
    async with make_streamer(sim) as streamer:
        await streamer.subscribe(Quote, ["SPY", "QQQ"], refresh_interval=0.05)
        await streamer.subscribe(Trade, ["QQQ"])
        assert (await next_for(streamer, Quote, "SPY")).event_symbol == "SPY"

        start = len(sim.received)
        await streamer.unsubscribe(Quote, ["SPY"])
        await wait_until(lambda: bool(subscriptions_sent(sim, start)))
        (msg,) = subscriptions_sent(sim, start)
        assert [s.symbol for s in msg.remove or ()] == ["SPY"] and not msg.add
        await barrier(sim, streamer)
        drain(streamer, Quote)
        later: list[Quote] = []
        with anyio.fail_after(WAIT_S):
            while len(later) < 8:  # 8 quotes = at least 8 aggregation periods of QQQ
                later.append(await streamer.get_event(Quote))
        assert {q.event_symbol for q in later} == {"QQQ"}

        await streamer.unsubscribe_all(Quote)
        await wait_until(lambda: any(msg.reset for msg in subscriptions_sent(sim, start)))
        await barrier(sim, streamer)
        drain(streamer, Quote)
        drain(streamer, Trade)  # the Trade awaited below must be one received after this
        trades_before = streamer.stats.events
        with anyio.move_on_after(0.5):  # 10 aggregation periods: no Quote may come
            quote = await streamer.get_event(Quote)
            pytest.fail(f"a quote after unsubscribe_all: {quote}")
        assert streamer.protocol.subscribed(Quote) == []
        with anyio.fail_after(WAIT_S):
            assert (await streamer.get_event(Trade)).event_symbol == "QQQ"
        assert streamer.stats.events > trades_before


# --- 4. columnar tap ---------------------------------------------------------------------------


async def test_tap(sim: Simulator) -> None:
    async with make_streamer(sim, tap_interval=0.05) as streamer:
        tap = streamer.tap()
        batches = []
        rows = 0
        await streamer.subscribe(Quote, ["SPY", "QQQ", "IWM"], refresh_interval=0.05)
        with anyio.fail_after(WAIT_S):
            while rows < 60:
                batches.append(await tap.receive())
                rows += batches[-1].num_rows
        await streamer.unsubscribe_all(Quote)
        await barrier(sim, streamer)
        total = streamer.stats.events  # nothing else is subscribed
        with anyio.fail_after(WAIT_S):
            while rows < total:
                batches.append(await tap.receive())
                rows += batches[-1].num_rows
        assert rows == total == streamer.stats.events
        tap.close()

    schema = arrow_schema(Quote)
    recv: list[int] = []
    for b in batches:
        assert b.event_type is Quote
        assert b.batch.schema.equals(schema, check_metadata=True)
        assert b.batch.column("recv_ns").null_count == 0
        recv.extend(b.batch.column("recv_epoch_ns").to_pylist())
        assert pa.compute.all(pa.compute.less(b.batch["bid_price"], b.batch["ask_price"])).as_py()
    assert recv == sorted(recv) and recv[-1] > recv[0]
    now_ns = time.time_ns()
    assert now_ns - 60e9 < recv[0] <= now_ns
    symbols = set(
        itertools.chain.from_iterable(b.batch["event_symbol"].to_pylist() for b in batches)
    )
    assert symbols == {"SPY", "QQQ", "IWM"}


async def test_tap_only_streamer_keeps_no_listener_queues(sim: Simulator) -> None:
    async with make_streamer(sim, queue_size=0) as streamer:
        tap = streamer.tap()
        await streamer.subscribe(Quote, ["SPY", "QQQ"], refresh_interval=0.05)
        with anyio.fail_after(WAIT_S):
            rows = 0
            while rows < 40:
                rows += (await tap.receive()).num_rows
        assert streamer._queues == {}  # nothing held for listeners that cannot exist
        assert sum(streamer.stats.dropped.values()) == 0
        with pytest.raises(LocalProtocolError, match="tap"):
            await streamer.get_event(Quote)
        tap.close()


# --- 5. faults ---------------------------------------------------------------------------------


class Recorder:
    """disconnect_fn / reconnect_fn that log, next to every frame the client sends."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.log: list[tuple[str, Any]] = []
        self.disconnected = anyio.Event()
        self.reconnected = anyio.Event()
        send = transport.Transport.send

        async def logging_send(conn: transport.Transport, data: bytes) -> None:
            self.log.append(("sent", m.decode(data)))
            await send(conn, data)

        monkeypatch.setattr(transport.Transport, "send", logging_send)

    async def on_disconnect(self, streamer: DXLinkStreamer, *args: Any) -> None:
        self.log.append(("disconnect", (streamer, *args)))
        self.disconnected.set()

    async def on_reconnect(self, streamer: DXLinkStreamer, *args: Any) -> None:
        self.log.append(("reconnect", (streamer, *args)))
        self.reconnected.set()

    def streamer(self, server: Simulator, **kwargs: Any) -> DXLinkStreamer:
        return make_streamer(
            server,
            disconnect_fn=self.on_disconnect,
            disconnect_args=("d", 1),
            reconnect_fn=self.on_reconnect,
            reconnect_args=("r", 2),
            **kwargs,
        )

    def reset(self) -> None:
        self.log.clear()
        self.disconnected = anyio.Event()
        self.reconnected = anyio.Event()


async def test_drop_restores_subscriptions_then_calls_reconnect_fn(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = Recorder(monkeypatch)
    start = datetime.now(UTC) - timedelta(minutes=5)
    from_time = math.floor(start.timestamp() * 1000)
    async with rec.streamer(sim) as streamer:
        await streamer.subscribe(Quote, ["SPY"])
        await streamer.subscribe_candle(["SPY"], "1m", start_time=start)
        await next_for(streamer, Quote, "SPY")
        rec.reset()
        n = len(sim.received)

        await sim.drop()
        with anyio.fail_after(WAIT_S):
            await rec.reconnected.wait()

        kinds = [kind for kind, _ in rec.log]
        assert kinds.count("disconnect") == kinds.count("reconnect") == 1
        assert rec.log[0] == ("disconnect", (streamer, "d", 1))
        assert rec.log[-1] == ("reconnect", (streamer, "r", 2))
        sent = [msg for kind, msg in rec.log if kind == "sent"]
        assert isinstance(sent[0], m.Setup) and isinstance(sent[1], m.Auth)
        restored = added([msg for msg in sent if isinstance(msg, m.FeedSubscription)])
        assert {(s.type, s.symbol, s.from_time) for s in restored} == {
            ("Quote", "SPY", None),
            ("Candle", "SPY{=1m,tho=true}", from_time),
        }
        # and the server did get them, on the new connection
        await wait_until(lambda: len(added(subscriptions_sent(sim, n))) == 2)
        assert {(s.type, s.from_time) for s in added(subscriptions_sent(sim, n))} == {
            ("Quote", None),
            ("Candle", from_time),
        }
        assert streamer.stats.connects == 2 and streamer.stats.disconnects == 1
        assert sim.connection_count == 1

        drain(streamer, Quote)
        drain(streamer, Candle)
        with anyio.fail_after(WAIT_S):
            quote = await streamer.get_event(Quote)
            candle = await streamer.get_event(Candle)
        assert quote.event_symbol == "SPY" and quote.bid_price < quote.ask_price
        assert candle.event_symbol == "SPY{=m,tho=true}"
        assert candle.event_flags & SNAPSHOT_BEGIN  # a new snapshot for the new connection
        assert not candle.snapshot_marker  # with bars: on HISTORY (FIELD_REPORTS #3)


async def test_stall_detected_by_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a clock the test moves: a feed silent for ``keepalive_timeout`` (60 s, as in
    production) is dropped exactly then, not a moment earlier, and a new connection made."""
    t = ManualTime()
    rec = Recorder(monkeypatch)
    config = sim_config(keepalive_timeout=120.0)  # the server never times us out here
    async with (
        Simulator(seed=7, token=TOKEN, config=config) as sim,
        rec.streamer(sim, keepalive_timeout=60.0, clock=t.clock, sleep=t.sleep) as streamer,
    ):
        await streamer.subscribe(Quote, ["SPY"])
        await next_for(streamer, Quote, "SPY")  # every frame so far arrived at t = 0
        sim.stall(True)
        try:
            t.advance(59.9)
            assert 60.0 in t.deadlines()  # the watchdog sleeps on, to 60 s after the last frame
            assert not rec.disconnected.is_set() and streamer.stats.disconnects == 0
            t.advance(0.1)
            with anyio.fail_after(WAIT_S):
                await rec.disconnected.wait()
            assert streamer.gaps[-1].reason == "no data: silent for 60.0 s"
        finally:
            sim.stall(False)
        with anyio.fail_after(WAIT_S):
            await rec.reconnected.wait()
        assert streamer.stats.disconnects == 1
        assert streamer.stats.connects == 2
        assert streamer.connected
        drain(streamer, Quote)
        assert (await next_for(streamer, Quote, "SPY")).bid_price > 0


async def test_connect_timeout_is_on_the_streamers_clock() -> None:
    """On a clock the test moves: a server that accepts the websocket and never answers SETUP
    ends ``async with`` with ``ConnectionClosed`` exactly ``connect_timeout`` later."""
    from websockets.asyncio.server import ServerConnection, serve

    t = ManualTime()
    greeted = anyio.Event()

    async def mute(ws: ServerConnection) -> None:
        await ws.recv()  # SETUP, never answered
        greeted.set()
        await ws.wait_closed()

    async with serve(mute, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        streamer = DXLinkStreamer(
            url=f"ws://127.0.0.1:{port}/", token="t", connect_timeout=30.0,
            clock=t.clock, sleep=t.sleep, reconnect_delays=fast_delays,
        )  # fmt: skip
        result: list[BaseException] = []
        done = anyio.Event()

        async def enter() -> None:
            try:
                async with streamer:
                    pass
            except ConnectionClosed as exc:
                result.append(exc)
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(enter)
            with anyio.fail_after(WAIT_S):
                await greeted.wait()
            await wait_until(lambda: 30.0 in t.deadlines())
            t.advance(29.9)
            await anyio.wait_all_tasks_blocked()
            assert not done.is_set()
            t.advance(0.1)
            with anyio.fail_after(WAIT_S):
                await done.wait()
    assert "no authorised DXLink connection" in str(result[0])
    assert "within 30.0 s" in str(result[0])


async def test_keepalives_are_sent_when_idle_on_the_streamers_clock() -> None:
    """On a clock the test moves: an idle connection gets a KEEPALIVE exactly every
    ``keepalive_interval`` after the last message sent, not before."""
    t = ManualTime()

    def keepalives() -> int:
        return sum(isinstance(x, m.Keepalive) for x in sim.received)

    async with (
        Simulator(seed=7, token=TOKEN, config=sim_config(keepalive_timeout=60.0)) as sim,
        make_streamer(sim, keepalive_timeout=100.0, clock=t.clock, sleep=t.sleep) as streamer,
    ):
        interval = streamer.protocol.keepalive_interval  # half the server's timeout, not ours
        assert interval == 30.0
        # the keepalive loop sleeps to the last message sent (at 0) + the server's interval (it
        # used to sleep ours, 50 s, having started before the server's SETUP arrived); the
        # watchdog to the last message received + keepalive_timeout
        await wait_until(lambda: interval in t.deadlines())
        assert 100.0 in t.deadlines()
        sent = keepalives()
        t.advance(interval - 0.5)
        assert interval in t.deadlines()  # not woken yet
        for n in (1, 2):
            t.advance(0.5 if n == 1 else interval)
            await wait_until(lambda: keepalives() == sent + n)  # noqa: B023
            await wait_until(lambda: (n + 1) * interval in t.deadlines())  # noqa: B023
        assert streamer.stats.disconnects == 0


async def test_malformed_frame_is_counted(sim: Simulator) -> None:
    async with make_streamer(sim) as streamer:
        await streamer.subscribe(Quote, ["SPY"])
        await next_for(streamer, Quote, "SPY")
        assert streamer.stats.bad_frames == 0
        await sim.send_malformed()
        await barrier(sim, streamer)
        assert streamer.stats.bad_frames == 1
        drain(streamer, Quote)
        assert (await next_for(streamer, Quote, "SPY")).bid_price > 0
        assert streamer.stats.connects == 1 and streamer.stats.disconnects == 0
        assert sim.connection_count == 1


@pytest.mark.parametrize("open_, close", [("[", "]"), ('{"a":', "}")], ids=["arrays", "objects"])
async def test_deeply_nested_frames_are_counted_not_fatal(
    sim: Simulator, open_: str, close: str
) -> None:
    """A ~2 KB frame nesting 1,000 deep (RecursionError in msgspec) is a skipped bad frame."""
    async with make_streamer(sim) as streamer:
        await streamer.subscribe(Quote, ["SPY"])
        await next_for(streamer, Quote, "SPY")
        depth = max(1000, sys.getrecursionlimit())  # deep enough whatever the process's limit
        deep = open_ * depth + "1" + close * depth
        frames = [
            f'{{"type":"FEED_DATA","channel":1,"data":["Quote",[{deep}]]}}',
            f'{{"type":"FEED_DATA","channel":1,"data":[{deep}]}}',
            f'{{"type":"MYSTERY","channel":1,"x":{deep}}}',
            deep,
        ]
        for frame in frames:
            await sim.send_raw(frame)
        await barrier(sim, streamer)
        assert streamer.stats.bad_frames == len(frames)
        drain(streamer, Quote)
        assert (await next_for(streamer, Quote, "SPY")).bid_price > 0
        assert streamer.stats.connects == 1 and streamer.stats.disconnects == 0


async def test_inbound_message_over_the_limit_is_named_and_reconnected(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    """websockets closes with 1009 when the server sends more than max_size: the warning and
    the gap say a message was too big and what the limit is, not ``code=None reason=''``."""
    limit = 64 * 1024
    async with make_streamer(sim, max_inbound_bytes=limit) as streamer:
        await streamer.subscribe(Quote, ["SPY"])
        await next_for(streamer, Quote, "SPY")
        reconnects = Reconnects(streamer)
        await sim.send_raw("x" * (limit + 1))
        await reconnects.wait()
        assert streamer.stats.connects == 2
        drain(streamer, Quote)
        assert (await next_for(streamer, Quote, "SPY")).bid_price > 0
    (gap,) = streamer.gaps
    assert "too big" in gap.reason and "64 KiB" in gap.reason and "1009" in gap.reason, gap
    assert f"{limit + 1} bytes" in gap.reason  # websockets knew the frame's size
    (warning,) = [
        r.getMessage()
        for r in caplog.records
        if r.levelname == "WARNING" and "lost" in r.getMessage()
    ]
    assert gap.reason in warning and "code=None" not in warning
    assert streamer.stats.disconnects == 1


async def test_server_error_is_kept(sim: Simulator) -> None:
    async with make_streamer(sim) as streamer:
        await streamer.subscribe(Quote, ["SPY"])
        await next_for(streamer, Quote, "SPY")
        await sim.send_error("BAD_ACTION", "simulated trouble")
        await wait_until(lambda: bool(streamer.server_errors))
        (error,) = streamer.server_errors
        assert (error.error_type, error.message, error.channel) == (
            "BAD_ACTION",
            "simulated trouble",
            0,
        )
        drain(streamer, Quote)
        assert (await next_for(streamer, Quote, "SPY")).bid_price > 0
        assert streamer.stats.connects == 1 and streamer.stats.disconnects == 0


async def test_expired_token_reauthorises(sim: Simulator) -> None:
    async with make_streamer(sim) as streamer:
        await streamer.subscribe(Quote, ["SPY"])
        await next_for(streamer, Quote, "SPY")
        n = len(sim.received)
        await sim.expire_token()
        # AUTH again, then the channel re-opened and the subscription re-sent
        await wait_until(lambda: bool(added(subscriptions_sent(sim, n))))
        sent = sim.received[n:]
        assert isinstance(sent[0], m.Auth)
        assert [s.symbol for s in added(subscriptions_sent(sim, n))] == ["SPY"]
        await barrier(sim, streamer)
        drain(streamer, Quote)
        assert (await next_for(streamer, Quote, "SPY")).bid_price > 0
        assert streamer.connected
        assert streamer.stats.connects == 1 and streamer.stats.disconnects == 0
        assert sim.connection_count == 1


async def test_rotated_token_is_fatal(sim: Simulator) -> None:
    with anyio.fail_after(WAIT_S), pytest.raises(AuthenticationError) as info:
        async with make_streamer(sim) as streamer:
            await streamer.subscribe(Quote, ["SPY"])
            await next_for(streamer, Quote, "SPY")
            await sim.expire_token(new_token="other")
            await anyio.sleep_forever()
    assert type(info.value) is AuthenticationError  # at once: no reconnect, no retried AUTH
    assert sum(isinstance(x, m.Auth) for x in sim.received) <= 2
    assert TOKEN not in str(info.value)
    assert streamer.stats.connects == 1


# --- 6. auth -----------------------------------------------------------------------------------


async def test_wrong_token(sim: Simulator) -> None:
    with anyio.fail_after(WAIT_S), pytest.raises(AuthenticationError) as info:
        async with make_streamer(sim, token="not-the-token"):
            pytest.fail("authorised with a wrong token")
    assert type(info.value) is AuthenticationError
    assert "not-the-token" not in str(info.value)
    # fatal, not retried: one SETUP and one AUTH, on one connection
    assert [type(x) for x in sim.received] == [m.Setup, m.Auth]


async def test_no_auth_server() -> None:
    async with (
        Simulator(seed=7, token=None, config=sim_config()) as sim,
        make_streamer(sim, token=None) as streamer,
    ):
        assert streamer.connected
        await streamer.subscribe(Quote, ["SPY"])
        assert (await next_for(streamer, Quote, "SPY")).bid_price > 0
        assert not any(isinstance(msg, m.Auth) for msg in sim.received)


async def test_token_never_leaks(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with make_streamer(sim) as streamer:
        await streamer.subscribe(Quote, ["SPY"])
        await next_for(streamer, Quote, "SPY")
        await sim.expire_token()  # re-sends AUTH
        await wait_until(lambda: sum(isinstance(x, m.Auth) for x in sim.received) == 2)
        text = repr(streamer)
    bad = "wrong-5f3a9c-token"
    wrong = make_streamer(sim, token=bad)
    with anyio.fail_after(WAIT_S), pytest.raises(AuthenticationError) as info:
        async with wrong:
            pass
    text += repr(wrong)
    messages = []
    exc: BaseException | None = info.value
    while exc is not None:
        messages.append(repr(exc))
        exc = exc.__cause__ or exc.__context__
    assert any(isinstance(x, m.Auth) and x.token == TOKEN for x in sim.received)
    # both sides: the client's logs and the simulator's (its websockets server dumps frames too)
    client_log = "\n".join(r.getMessage() for r in caplog.records)
    assert "> " in client_log and "AUTH" in client_log  # debug logging of frames was on
    assert any(r.name == "websockets.server" for r in caplog.records)
    for secret in (TOKEN, bad):
        assert secret not in client_log
        assert secret not in text
        assert not any(secret in msg for msg in messages)


# --- 7. slow listener --------------------------------------------------------------------------


async def test_slow_listener_bounded_memory(sim: Simulator) -> None:
    symbols = [f"SYM{i}" for i in range(200)]
    async with make_streamer(sim, queue_size=500) as streamer:
        t_sub = time.time()
        await streamer.subscribe(Quote, symbols, refresh_interval=0.05)
        await wait_until(lambda: streamer.stats.dropped["Quote"] >= 3000)
        await wait_until(lambda: time.time() - t_sub > 1.5)
        assert streamer.queued(Quote) <= 500
        assert streamer.stats.events > 3500
        kept = drain(streamer, Quote)
        assert 0 < len(kept) <= 500
        # the newest were kept: the oldest quotes had bid_time <= t_sub (+ a little)
        assert max(q.bid_time for q in kept) > (t_sub + 0.8) * 1000
        assert (
            streamer.stats.dropped["Quote"] + len(kept) + streamer.queued(Quote)
            == streamer.stats.events
        )
        with anyio.fail_after(WAIT_S):
            fresh = await streamer.get_event(Quote)
        assert fresh.event_symbol in symbols and fresh.bid_price < fresh.ask_price


# --- 8. large subscriptions --------------------------------------------------------------------


async def test_large_subscription_is_chunked() -> None:
    # a server that refuses anything larger than the official JS client sends (FIELD_REPORTS #7)
    # each symbol's current quote once (at its subscription), then one per 100 s: at 1 Hz the
    # 3,000 quotes a second outran a loaded machine, and the last symbol's first quote queued
    # behind a backlog that grew with the load (7-18 s under burn_cpu, 20 s once)
    config = sim_config(quote_rate_hz=0.01, max_inbound_bytes=8192)
    symbols = [f"S{i:04d}" for i in range(3000)]
    async with (
        Simulator(seed=7, token=TOKEN, config=config) as sim,
        make_streamer(sim) as streamer,
    ):
        await streamer.subscribe(Quote, symbols)
        last = await next_for(streamer, Quote, symbols[-1])
        assert last.bid_price < last.ask_price
        msgs = subscriptions_sent(sim)
        assert len(msgs) >= 6
        for msg in msgs:
            assert len(m.encode(msg)) <= 8192
            assert len(msg.add or ()) <= 500
        assert [s.symbol for s in added(msgs)] == symbols
        assert streamer.stats.events == len(symbols)  # one quote each: a fixed amount of work
        assert sim.connection_count == 1
        assert streamer.stats.disconnects == 0
        assert not streamer.server_errors


async def test_oversized_frame_is_fatal() -> None:
    """A 1009 close cannot be cured by reconnecting: the same restore would be refused again."""
    config = sim_config(max_inbound_bytes=8 * 1024)
    symbols = [f"S{i:04d}" for i in range(1000)]
    async with Simulator(seed=7, token=TOKEN, config=config) as sim:
        with anyio.fail_after(WAIT_S), pytest.raises(LocalProtocolError) as info:
            async with make_streamer(sim, max_message_bytes=256 * 1024) as streamer:
                await streamer.subscribe(Quote, symbols)
                await anyio.sleep_forever()
        assert "1009" in str(info.value) and "max_message_bytes" in str(info.value)
        assert streamer.stats.connects == 1


# --- 9. SDK session ----------------------------------------------------------------------------


class StubSession:
    def __init__(self, server: Simulator) -> None:
        self.server = server
        self.paths: list[str] = []

    async def _get(self, path: str) -> dict[str, Any]:
        self.paths.append(path)
        return {"dxlink-url": self.server.url, "token": self.server.token, "level": "api"}


async def test_sdk_session(sim: Simulator) -> None:
    session = StubSession(sim)
    async with DXLinkStreamer(
        session, keepalive_timeout=2.0, reconnect_delays=fast_delays
    ) as streamer:
        assert session.paths == ["/api-quote-tokens"]
        assert streamer.url == sim.url
        await streamer.subscribe(Quote, ["SPY"])
        assert (await next_for(streamer, Quote, "SPY")).bid_price > 0
    assert any(isinstance(x, m.Auth) and x.token == TOKEN for x in sim.received)


# --- 10. inbound frames far above websockets' 1 MiB default ----------------------------------


async def test_large_inbound_frames_are_accepted() -> None:
    config = sim_config(
        max_frame_bytes=8_000_000,
        candle_snapshot_limit=50_000,
        candle_snapshot_part=50_000,  # the whole snapshot in one part, so in one frame
        keepalive_timeout=30,
    )
    async with Simulator(seed=7, token=TOKEN, config=config) as server:
        frames: list[int] = []
        async with make_streamer(server, keepalive_timeout=30) as streamer:
            assert streamer._transport is not None
            recv = streamer._transport.recv

            async def recording_recv() -> bytes:
                frame = await recv()
                frames.append(len(frame))
                return frame

            streamer._transport.recv = recording_recv  # type: ignore[method-assign]
            start = datetime.fromtimestamp(time.time() - 3 * 3600, tz=UTC)
            await streamer.subscribe_candle(["SPY"], "1s", start_time=start)
            with anyio.fail_after(20):
                candle = await streamer.get_event(Candle)
                assert candle.snapshot_begin
                count = 1
                while not candle.snapshot_end:
                    candle = await streamer.get_event(Candle)
                    count += 1
        assert count >= 10_000  # three hours of one-second candles, in one snapshot
        assert max(frames) > 1024 * 1024  # at least one frame over websockets' default limit
        assert streamer.stats.disconnects == 0
