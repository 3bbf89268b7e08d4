"""ReplayStreamer and replay_frames on the sample recording shipped with the tests."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import duckdb
import msgspec
import polars as pl
import pytest

from tastyrec.events import Candle, Greeks, Quote, Trade
from tastyrec.exceptions import EndOfReplay
from tastyrec.replay import ReplayStreamer, replay_frames

pytestmark = pytest.mark.anyio

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def table(sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con.execute(sql).fetchall()


def _recorded(event_type: str, where: str) -> list[tuple[str, int]]:
    files = sorted((SAMPLE / event_type).glob("date=*/*.parquet"))
    frame = pl.concat([pl.read_parquet(f) for f in files])
    frame = frame.with_columns(pl.col("recv_ns").dt.epoch("ns").alias("ns"))
    frame = frame.sql(f"SELECT * FROM self WHERE {where}")
    frame = frame.sort("ns", maintain_order=True)
    return list(zip(frame["event_symbol"].to_list(), frame["ns"].to_list(), strict=True))


def gap() -> tuple[int, int]:
    ((lost, back),) = table(
        f"SELECT epoch_ns(disconnected), epoch_ns(resumed) FROM '{SAMPLE}/_gaps/*.parquet'"
    )
    return lost, back


async def test_listen_ends_with_the_recording_and_get_event_raises() -> None:
    async with ReplayStreamer(SAMPLE) as replay:
        await replay.subscribe(Quote, ["SPY", "QQQ"])
        quotes = [q async for q in replay.listen(Quote)]
        assert replay.finished
        with pytest.raises(EndOfReplay):
            await replay.get_event(Quote)
        assert replay.get_event_nowait(Quote) is None
    expected = _recorded("Quote", "event_symbol IN ('SPY', 'QQQ')")
    assert [q.event_symbol for q in quotes] == [s for s, _ in expected]
    assert len(quotes) > 100


async def test_get_event_and_get_event_nowait_walk_the_same_events() -> None:
    async with ReplayStreamer(SAMPLE) as a, ReplayStreamer(SAMPLE) as b:
        for replay in (a, b):
            await replay.subscribe(Trade, ["*"])
        waited = []
        with pytest.raises(EndOfReplay):
            while True:
                waited.append(await a.get_event(Trade))
        polled = []
        while (event := b.get_event_nowait(Trade)) is not None:
            polled.append(event)
    assert len(waited) == len(_recorded("Trade", "true")) > 50
    assert msgspec.msgpack.encode(waited) == msgspec.msgpack.encode(polled)


async def test_start_end_and_the_virtual_time() -> None:
    all_quotes = _recorded("Quote", "true")
    start_ns = all_quotes[100][1]
    end_ns = all_quotes[400][1]
    seen: list[int | None] = []
    async with ReplayStreamer(SAMPLE, start=start_ns, end=end_ns) as replay:
        assert replay.time_ns == start_ns
        await replay.subscribe(Quote, ["*"])
        n = 0
        async for _ in replay.listen(Quote):
            n += 1
            seen.append(replay.time_ns)
    expected = [ns for _, ns in all_quotes if start_ns <= ns < end_ns]
    assert n == len(expected)
    assert seen == sorted(seen) and seen[-1] == expected[-1]
    assert replay.time is not None and replay.time.tzinfo is not None


async def test_recorded_gaps_fire_the_callbacks_between_the_right_events() -> None:
    lost, back = gap()
    log: list[tuple[str, Any]] = []

    async def on_disconnect(streamer: ReplayStreamer, tag: str) -> None:
        assert not streamer.connected
        assert streamer.time_ns == lost  # the recorded moment the connection was lost
        log.append(("disconnect", tag))

    async def on_reconnect(streamer: ReplayStreamer, tag: str, n: int) -> None:
        assert streamer.connected
        assert streamer.time_ns == back
        log.append(("reconnect", (tag, n)))

    async with ReplayStreamer(
        SAMPLE,
        disconnect_fn=on_disconnect,
        disconnect_args=("lost",),
        reconnect_fn=on_reconnect,
        reconnect_args=("back", 7),
    ) as replay:
        await replay.subscribe(Quote, ["*"])
        async for _quote in replay.listen(Quote):
            assert replay.time_ns is not None
            log.append(("quote", replay.time_ns))
        assert len(replay.gaps) == 1 and replay.gaps[0].disconnected_ns == lost
        assert replay.stats.disconnects == 1 and replay.stats.connects == 2
    names = [kind for kind, _ in log]
    assert names.count("disconnect") == 1 and names.count("reconnect") == 1
    d, r = names.index("disconnect"), names.index("reconnect")
    assert d < r and log[d][1] == "lost" and log[r][1] == ("back", 7)
    assert all(ns < lost for kind, ns in log[:d] if kind == "quote")
    assert all(ns >= back for kind, ns in log[r:] if kind == "quote")
    assert d > 10 and len(log) - r > 10  # quotes on both sides


async def test_candles_match_the_normalised_symbol_the_server_sent() -> None:
    async with ReplayStreamer(SAMPLE) as replay:
        await replay.subscribe_candle(["SPY"], "1m")
        candles = [c async for c in replay.listen(Candle)]
    assert len(candles) == len(_recorded("Candle", "true")) > 0
    assert {c.event_symbol for c in candles} == {"SPY{=m,tho=true}"}
    async with ReplayStreamer(SAMPLE) as replay:
        await replay.subscribe_candle(["SPY"], "5m")  # not recorded: nothing
        assert [c async for c in replay.listen(Candle)] == []


async def test_unsubscribe_and_subscribe_during_the_replay() -> None:
    got: list[Any] = []
    async with ReplayStreamer(SAMPLE, chunk_rows=16) as replay:
        await replay.subscribe(Quote, ["SPY", "QQQ"])
        async for event in replay.listen(Quote, Greeks):
            got.append(event)
            if len(got) == 50:
                await replay.unsubscribe(Quote, ["QQQ"])
                await replay.subscribe(Greeks, [".SPY261218C600"])
    before, after = got[:50], got[50:]
    assert {e.event_symbol for e in before} == {"SPY", "QQQ"}
    # events already read (one chunk per file being read) may still come, then no more
    late_qqq = [i for i, e in enumerate(after) if e.event_symbol == "QQQ"]
    assert len(late_qqq) <= 32 and (not late_qqq or max(late_qqq) < 64)
    assert any(e.event_symbol == "SPY" for e in after[64:])
    greeks = [e for e in after if isinstance(e, Greeks)]
    assert len(greeks) > 10 and not any(isinstance(e, Greeks) for e in before)


async def test_a_type_nobody_takes_is_bounded_and_counted() -> None:
    async with ReplayStreamer(SAMPLE, queue_size=10, chunk_rows=16) as replay:
        await replay.subscribe(Quote, ["*"])
        await replay.subscribe(Trade, ["*"])
        n = 0
        async for _ in replay.listen(Quote):
            n += 1
            if n == 1:  # a Trade buffer from now on, that nobody takes from
                replay.get_event_nowait(Trade)
        assert 0 < replay.queued(Trade) <= 10 + 48  # the bound, plus at most one step
        assert replay.stats.dropped["Trade"] > 30
        assert "Quote" not in replay.stats.dropped
    assert n == len(_recorded("Quote", "true"))  # the listener that takes loses nothing


async def test_several_listeners_in_one_task_group_finish_together() -> None:
    counts: dict[str, int] = {}
    async with ReplayStreamer(SAMPLE) as replay:
        await replay.subscribe(Quote, ["*"])
        await replay.subscribe(Trade, ["*"])

        async def count(cls: type[Any]) -> None:
            counts[cls.__name__] = sum([1 async for _ in replay.listen(cls)])

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(count, Quote)
                tg.start_soon(count, Trade)
    assert counts == {
        "Quote": len(_recorded("Quote", "true")),
        "Trade": len(_recorded("Trade", "true")),
    }


async def test_a_folder_that_is_not_there_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no recording"):
        async with ReplayStreamer(tmp_path / "nope"):
            pass


def test_replay_frames_one_type_is_the_recording_in_receipt_order() -> None:
    frames = list(replay_frames(SAMPLE, Quote, chunk_rows=100))
    assert len(frames) > 3
    whole = pl.concat(frames)
    expected = _recorded("Quote", "true")
    ns = whole["recv_epoch_ns"].to_list()
    assert list(zip(whole["event_symbol"].to_list(), ns, strict=True)) == expected
    spy = pl.concat(list(replay_frames(SAMPLE, Quote, symbols=["SPY"])))
    assert spy["event_symbol"].unique().to_list() == ["SPY"]
    assert spy.height == sum(1 for s, _ in expected if s == "SPY")


def test_replay_frames_several_types_interleave_with_an_event_type_column() -> None:
    frames = list(replay_frames(SAMPLE, [Quote, Trade], chunk_rows=64))
    whole = pl.concat(frames, how="diagonal_relaxed")
    assert set(whole["event_type"].unique().to_list()) == {"Quote", "Trade"}
    ns = whole["recv_ns"].dt.epoch("ns")
    assert ns.is_sorted()
    assert whole.height == len(_recorded("Quote", "true")) + len(_recorded("Trade", "true"))
    trades = whole.filter(pl.col("event_type") == "Trade")
    assert trades["price"].null_count() == 0 and not math.isnan(trades["price"][0])


class FakeTime:
    """A monotonic clock that only moves when the replay sleeps (no real waiting)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_pacing_follows_receipt_times_under_an_injected_clock() -> None:
    fake = FakeTime()
    speed = 4.0
    released: list[tuple[float, int]] = []  # (fake wall clock, recv_ns) of each event
    async with ReplayStreamer(SAMPLE, speed=speed, clock=fake.clock, sleep=fake.sleep) as replay:
        await replay.subscribe(Quote, ["SPY"])
        await replay.subscribe(Trade, ["SPY"])
        async for _ in replay.listen(Quote, Trade):
            assert replay.time_ns is not None
            released.append((fake.now, replay.time_ns))
    recv = [ns for _, ns in _recorded("Quote", "event_symbol = 'SPY'")]
    recv = sorted(recv + [ns for s, ns in _recorded("Trade", "true") if s == "SPY"])
    assert len(released) == len(recv)
    first = recv[0]
    for (wall, _), ns in zip(released, recv, strict=True):
        due = 1000.0 + (ns - first) / speed / 1e9
        assert due - 1e-6 <= wall <= due + 1e-3  # never early, and not late
    # the replay slept through the recording's span at 4x, with nothing real
    assert sum(fake.slept) == pytest.approx((recv[-1] - first) / speed / 1e9, abs=1e-3)


def _in_receipt_order(*types: tuple[str, str]) -> list[tuple[str, str, int]]:
    """(type, symbol, recv_ns) of the recorded events of ``(type, where)``, in the order a
    replay hands them out: by receipt time; one frame's events by the types' order given."""
    rows = [
        (ns, order, i, name, symbol)
        for order, (name, where) in enumerate(types)
        for i, (symbol, ns) in enumerate(_recorded(name, where))
    ]
    return [(name, symbol, ns) for ns, _, _, name, symbol in sorted(rows)]


@pytest.mark.parametrize("speed", [math.inf, 1.0, 10.0], ids=["inf", "1x", "10x"])
async def test_the_time_is_the_receipt_time_of_the_event_just_handed_out(speed: float) -> None:
    fake = FakeTime()
    expected = _in_receipt_order(
        ("Quote", "event_symbol IN ('SPY', 'QQQ')"), ("Trade", "event_symbol = 'SPY'")
    )
    seen: list[tuple[str, str, int | None]] = []
    async with ReplayStreamer(SAMPLE, speed=speed, clock=fake.clock, sleep=fake.sleep) as replay:
        await replay.subscribe(Quote, ["SPY", "QQQ"])
        await replay.subscribe(Trade, ["SPY"])
        async for event in replay.listen(Quote, Trade):
            seen.append((type(event).__name__, event.event_symbol, replay.time_ns))
            ns = replay.time_ns
            assert ns is not None and replay.time is not None
            assert replay.time == datetime.fromtimestamp(ns // 1_000_000_000, UTC).replace(
                microsecond=ns % 1_000_000_000 // 1000
            )
    assert len(seen) > 300  # a few steps' worth: the clock used to run a step ahead
    assert seen == expected
    if speed != math.inf:  # paced: each event came out when its time was due, not before
        first = expected[0][2]
        assert fake.now == pytest.approx(1000.0 + (expected[-1][2] - first) / speed / 1e9)


@pytest.mark.parametrize("speed", [math.inf, 10.0], ids=["inf", "10x"])
async def test_get_event_sets_the_time_to_the_receipt_time_of_its_event(speed: float) -> None:
    fake = FakeTime()
    expected = _in_receipt_order(("Quote", "event_symbol = 'SPY'"))
    seen: list[tuple[str, str, int | None]] = []
    async with ReplayStreamer(
        SAMPLE, speed=speed, clock=fake.clock, sleep=fake.sleep, chunk_rows=64
    ) as replay:
        await replay.subscribe(Quote, ["SPY"])
        with pytest.raises(EndOfReplay):
            while True:
                quote = await replay.get_event(Quote)
                seen.append(("Quote", quote.event_symbol, replay.time_ns))
    assert seen == expected and len(seen) > 100
    polled: list[tuple[str, str, int | None]] = []
    async with ReplayStreamer(SAMPLE, chunk_rows=64) as replay:
        await replay.subscribe(Quote, ["SPY"])
        while (quote := replay.get_event_nowait(Quote)) is not None:
            polled.append(("Quote", quote.event_symbol, replay.time_ns))
    assert polled == expected


def _trade_recv() -> dict[tuple[str, float], int]:
    """Recorded trades by (symbol, day volume) -- cumulative, so one trade each -- to recv_ns."""
    files = sorted((SAMPLE / "Trade").glob("date=*/*.parquet"))
    frame = pl.concat([pl.read_parquet(f) for f in files])
    ns = frame["recv_ns"].dt.epoch("ns").to_list()
    keys = zip(frame["event_symbol"].to_list(), frame["day_volume"].to_list(), strict=True)
    recv = dict(zip(keys, ns, strict=True))
    assert len(recv) == frame.height  # the key is unique
    return recv


async def test_get_event_beside_a_listener_takes_the_time_and_the_listener_takes_it_back() -> None:
    expected = _in_receipt_order(("Quote", "event_symbol = 'SPY'"))
    trade_recv = _trade_recv()
    seen: list[tuple[str, str, int | None]] = []
    trades = 0
    async with ReplayStreamer(SAMPLE) as replay:
        await replay.subscribe(Quote, ["SPY"])
        await replay.subscribe(Trade, ["SPY"])
        async for quote in replay.listen(Quote):
            seen.append(("Quote", quote.event_symbol, replay.time_ns))
            if len(seen) % 40 == 10:  # in the middle of a chunk the listener is handing out
                trade = await replay.get_event(Trade)
                assert replay.time_ns == trade_recv[trade.event_symbol, trade.day_volume]
                trades += 1
    assert trades > 3
    assert seen == expected


async def test_listeners_in_two_tasks_each_see_the_time_of_their_own_event() -> None:
    quotes = _in_receipt_order(("Quote", "true"))
    trades = _in_receipt_order(("Trade", "true"))
    seen: dict[str, list[tuple[str, str, int | None]]] = {"Quote": [], "Trade": []}
    async with ReplayStreamer(SAMPLE) as replay:
        await replay.subscribe(Quote, ["*"])
        await replay.subscribe(Trade, ["*"])
        quotes_started = anyio.Event()

        async def take(cls: type[Any]) -> None:
            if cls is Trade:  # start while the quote listener, alone so far, is mid-chunk
                await quotes_started.wait()
            async for event in replay.listen(cls):
                seen[cls.__name__].append((cls.__name__, event.event_symbol, replay.time_ns))
                if len(seen["Quote"]) == 5:
                    quotes_started.set()
                await anyio.lowlevel.checkpoint()  # the other task runs between any two events

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(take, Quote)
                tg.start_soon(take, Trade)
    assert seen["Quote"] == quotes
    # the trade listener got what was released from when it started (the types are released
    # together, and a type with no listener yet keeps nothing): a tail of the recorded trades
    assert seen["Trade"] == trades[len(trades) - len(seen["Trade"]) :] and len(seen["Trade"]) > 50


async def test_paced_get_event_nowait_gives_each_event_once_due_never_early() -> None:
    """Polled while an injected clock moves on, every event comes out at the first poll after
    its time (reading on across steps and the recorded gap), none before."""
    fake = FakeTime()
    expected = _in_receipt_order(("Quote", "event_symbol = 'SPY'"))
    first = expected[0][2]
    speed = 10.0
    polls: list[tuple[float, int | None]] = []  # (clock, time_ns) of each event taken
    async with ReplayStreamer(
        SAMPLE, speed=speed, clock=fake.clock, sleep=fake.sleep, chunk_rows=64
    ) as replay:
        await replay.subscribe(Quote, ["SPY"])
        span_s = (expected[-1][2] - first) / speed / 1e9
        got: list[tuple[str, str, int | None]] = []
        while fake.now <= 1000.0 + span_s + 0.1:
            while (quote := replay.get_event_nowait(Quote)) is not None:
                got.append(("Quote", quote.event_symbol, replay.time_ns))
                polls.append((fake.now, replay.time_ns))
            fake.now += 0.05
    assert got == expected and len(got) > 100
    for wall, ns in polls:
        assert ns is not None
        due = 1000.0 + (ns - first) / speed / 1e9
        assert due - 1e-6 <= wall < due + 0.05 + 1e-6  # not early; at the first poll after
