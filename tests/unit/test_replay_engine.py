"""The replay engine: the cursor (subscription filter, stable merge by receipt time) and the
pacers (anchor arithmetic of each speed mode), apart from the streamer and serve's feed."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
import pytest

from tastyrec.events import Event, Quote, Trade
from tastyrec.record.convert import to_batches
from tastyrec.replay._engine import (
    AsFastAsPossible,
    Batch,
    Cursor,
    RealTime,
    pacer,
)
from tastyrec.storage.layout import file_name, parquet_path, partition_date
from tastyrec.storage.parquet import write_parquet

T0 = 1_795_000_000_000_000_000


def write(root: Path, frames: list[tuple[int, list[Event]]], session: str = "s1") -> None:
    """One file per type of ``(recv_ns, events received together)`` frames."""
    tables: dict[str, list[pa.RecordBatch]] = {}
    for recv, events in frames:
        for batch in to_batches(events, recv):
            tables.setdefault(batch.event_type.__name__, []).append(batch.batch)
    for name, batches in tables.items():
        first = int(batches[0].column("recv_ns")[0].value)
        path = parquet_path(root, name, partition_date(first), file_name(first, session, 1))
        path.parent.mkdir(parents=True, exist_ok=True)
        write_parquet(path, batches[0].schema, batches)


def drain(cursor: Cursor) -> list[tuple[str, str, int]]:
    """(type, symbol, recv_ns) of every event the cursor hands out, batch after batch."""
    out: list[tuple[str, str, int]] = []
    last = -1
    while (batch := cursor.next_batch()) is not None:
        assert list(batch.recv) == sorted(batch.recv)
        assert not len(batch.recv) or batch.recv[0] >= last  # batches never go back
        last = int(batch.recv[-1]) if len(batch.recv) else last
        for event, ns, index in zip(batch.events, batch.recv, batch.types, strict=True):
            assert type(event) is cursor.event_types[index]
            out.append((type(event).__name__, event.event_symbol, int(ns)))
    return out


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    # 40 frames 1 µs apart; each has a Quote of SPY and QQQ and, every other frame, a Trade
    frames: list[tuple[int, list[Event]]] = []
    for i in range(40):
        events: list[Event] = [Quote("SPY", bid_price=float(i)), Quote("QQQ", bid_price=-i)]
        if i % 2 == 0:
            events.append(Trade("SPY", price=float(i)))
        frames.append((T0 + 1000 * i, events))
    write(tmp_path, frames)
    return tmp_path


def test_the_cursor_keeps_the_subscribed_symbols_in_receipt_order(recording: Path) -> None:
    cursor = Cursor(recording, start_ns=None, end_ns=None, chunk_rows=7)
    cursor.subscribe(Quote, ["QQQ"])
    cursor.subscribe(Trade, ["*"])
    got = drain(cursor)
    expected = [("Quote", "QQQ", T0 + 1000 * i) for i in range(40)]
    expected += [("Trade", "SPY", T0 + 1000 * i) for i in range(0, 40, 2)]
    # by receipt time; one frame's events in the order the types were subscribed
    order = {"Quote": 0, "Trade": 1}
    assert got == sorted(expected, key=lambda e: (e[2], order[e[0]]))


def test_ties_follow_the_subscription_order_of_the_types(recording: Path) -> None:
    cursor = Cursor(recording, start_ns=None, end_ns=None, chunk_rows=5)
    cursor.subscribe(Trade, ["SPY"])
    cursor.subscribe(Quote, ["SPY"])
    got = drain(cursor)
    assert got[:3] == [("Trade", "SPY", T0), ("Quote", "SPY", T0), ("Quote", "SPY", T0 + 1000)]
    assert len(got) == 60


def test_unsubscribed_steps_are_empty_batches_and_start_end_bound_them(recording: Path) -> None:
    cursor = Cursor(recording, start_ns=T0 + 10_000, end_ns=T0 + 20_000, chunk_rows=4)
    cursor.subscribe(Quote, ["SPY"])
    cursor.unsubscribe(Quote, ["SPY"])  # still read, nothing kept
    batches = []
    while (batch := cursor.next_batch()) is not None:
        batches.append(batch)
    assert batches and all(b.left == 0 and b.events == [] for b in batches)
    assert cursor.exhausted
    again = Cursor(recording, start_ns=T0 + 10_000, end_ns=T0 + 20_000, chunk_rows=4)
    again.subscribe(Quote, ["SPY", "QQQ"])
    again.unsubscribe_all(Quote)
    again.subscribe(Trade, ["SPY"])
    assert [ns for _, _, ns in drain(again)] == [T0 + 1000 * i for i in range(10, 20, 2)]


def test_a_type_subscribed_later_comes_from_the_time_reached(recording: Path) -> None:
    cursor = Cursor(recording, start_ns=None, end_ns=None, chunk_rows=8)
    cursor.subscribe(Quote, ["SPY"])
    first = cursor.next_batch()
    assert first is not None and first.left
    horizon = cursor.horizon_ns
    assert horizon is not None
    cursor.subscribe(Trade, ["SPY"])
    trades = [ns for name, _, ns in drain(cursor) if name == "Trade"]
    assert trades and min(trades) > horizon


def test_a_batch_hands_out_its_events_in_parts() -> None:
    recv = pa.array([5, 7, 7, 9], pa.int64()).to_numpy()
    batch = Batch(recv, ["a", "b", "c", "d"], recv * 0, 0)
    assert (batch.stop_before(7), batch.stop_after(7), batch.stop_after(math.inf)) == (1, 3, 4)
    assert batch.stop_after(-math.inf) == 0
    events, _, times = batch.take(batch.stop_after(7))
    assert events == ["a", "b", "c"] and list(times) == [5, 7, 7]
    assert (batch.left, batch.next_ns()) == (1, 9)
    whole = Batch(recv, ["a", "b", "c", "d"], recv * 0, 0)
    assert whole.take(4)[0] is whole.events  # handed out whole: no copy


def test_real_time_pacing_is_anchor_arithmetic() -> None:
    p = RealTime(4.0)
    assert not p.started
    p.start(100.0, T0)
    p.start(200.0, T0 + 5)  # anchored once
    assert p.anchor == (100.0, T0)
    assert p.reached(99.0) == -math.inf  # before the anchor nothing is due
    assert p.reached(100.0) == T0
    assert p.reached(101.0) == T0 + 4_000_000_000  # 4x: 1 s of wall is 4 s recorded
    assert p.wall_at(T0 + 2_000_000_000) == pytest.approx(100.5)
    assert p.wall_at(T0 - 10) == 100.0  # never before the anchor
    assert p.delay(T0 + 2_000_000_000, 100.25) == pytest.approx(0.25)
    assert p.delay(T0 + 2_000_000_000, 100.5) == 0.0
    assert p.delay(T0 + 2_000_000_000, 99.0) == pytest.approx(1.5)


def test_as_fast_as_possible_is_due_from_the_anchor_on() -> None:
    p = AsFastAsPossible()
    p.start(10.0, T0)
    assert (p.reached(9.0), p.reached(10.0)) == (-math.inf, math.inf)
    assert p.wall_at(T0 + 10**15) == 10.0
    assert (p.delay(T0 + 10**15, 9.5), p.delay(T0, 10.0)) == (0.5, 0.0)


@pytest.mark.parametrize("speed", [0.0, -1.0, math.nan])
def test_a_speed_must_be_positive(speed: float) -> None:
    with pytest.raises(ValueError, match="speed"):
        pacer(speed)


def test_each_speed_is_one_pacer_class() -> None:
    assert type(pacer(math.inf)) is AsFastAsPossible
    real = pacer(2.5)
    assert isinstance(real, RealTime) and real.speed == 2.5
    with pytest.raises(RuntimeError):
        real.reached(0.0)  # not started
