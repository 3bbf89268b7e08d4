"""LiveFrame: row and age bounds (fake clock), latest row per symbol, memory, exact values."""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Sequence
from typing import Any

import msgspec
import polars as pl
import pyarrow as pa
import pytest

from tastyrec.dxlink.compact import ColumnAccumulator, plan
from tastyrec.events import Event, Quote, Trade
from tastyrec.events.registry import FieldKind, spec
from tastyrec.exceptions import SchemaError
from tastyrec.live import LiveFrame
from tastyrec.schema import RECV_EXACT_COLUMN, polars_schema

S = 1_000_000_000  # one second in ns
T0 = 1_721_664_000 * S


class FakeClock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def _batch(events: Sequence[Event], recv_ns: int | Sequence[int] = T0) -> pa.RecordBatch:
    """One RecordBatch of ``events`` through the recorder's own converter."""
    recvs = [recv_ns] * len(events) if isinstance(recv_ns, int) else list(recv_ns)
    acc = ColumnAccumulator(max_rows=1 << 30)
    p = plan(type(events[0]))
    for event, recv in zip(events, recvs, strict=True):
        acc.add(p, list(msgspec.structs.astuple(event)), recv)
    (out,) = acc.flush()
    return out.batch


def _quotes(symbols: Sequence[str], start: int = 0) -> list[Event]:
    return [Quote(s, sequence=start + i, bid_price=float(start + i)) for i, s in enumerate(symbols)]


def _seq(frame: pl.DataFrame) -> list[int]:
    return frame.get_column("sequence").to_list()


def _recv(frame: pl.DataFrame) -> list[int]:
    return frame.get_column(RECV_EXACT_COLUMN).to_list()


def _bits(v: Any) -> Any:
    return struct.pack("<d", v) if isinstance(v, float) else (type(v), v)


def _events(frame: pl.DataFrame, cls: type[Event]) -> list[Event]:
    cols = []
    for f in spec(cls).fields:
        col = frame.get_column(f.name)
        if f.kind is FieldKind.TIME_MS:
            col = col.dt.epoch("ms")
        cols.append(col.to_list())
    return list(map(cls, *cols))


# -- construction -------------------------------------------------------------------------------


def test_needs_a_bound() -> None:
    with pytest.raises(ValueError, match="max_rows or max_age_s"):
        LiveFrame(Quote, max_rows=None, max_age_s=None)
    with pytest.raises(ValueError, match="max_rows must be positive, not 0"):
        LiveFrame(Quote, max_rows=0)
    with pytest.raises(ValueError, match="max_age_s must be positive, not -1.0"):
        LiveFrame(Quote, max_age_s=-1.0)
    LiveFrame(Quote, max_rows=None)  # age only
    LiveFrame(Quote, max_age_s=None)  # rows only


@pytest.mark.parametrize("cls", [Quote, Trade])
def test_empty_frames_have_the_schema(cls: type[Event]) -> None:
    live = LiveFrame(cls)
    assert live.rows == 0
    for frame in (live.frame(), live.latest()):
        assert frame.height == 0
        assert frame.schema == polars_schema(cls)


def test_schema_after_trimming_everything() -> None:
    clock = FakeClock()
    live = LiveFrame(Quote, max_age_s=1.0, clock=clock)
    live.add(_batch(_quotes(["A"])))
    clock.now += 5 * S
    frame = live.frame()
    assert frame.height == 0 and frame.schema == polars_schema(Quote)
    assert live.rows == 0


def test_rejects_a_batch_of_another_type() -> None:
    live = LiveFrame(Quote)
    with pytest.raises(SchemaError, match="does not match Quote"):
        live.add(_batch([Trade("A")]))
    assert live.rows == 0


def test_empty_batch_is_ignored() -> None:
    live = LiveFrame(Quote)
    live.add(_batch(_quotes(["A"])).slice(0, 0))
    assert live.rows == 0 and live.frame().height == 0 and live.latest().height == 0


# -- row bound ----------------------------------------------------------------------------------


def test_row_bound_keeps_exactly_the_newest_rows() -> None:
    live = LiveFrame(Quote, max_rows=10, max_age_s=None)
    n = 0
    for size in (3, 4, 5, 7, 1):
        live.add(_batch(_quotes(["A"] * size, start=n)))
        n += size
        assert live.rows == min(n, 10)
        assert _seq(live.frame()) == list(range(max(0, n - 10), n))


def test_row_bound_with_one_batch_larger_than_the_bound() -> None:
    live = LiveFrame(Quote, max_rows=100, max_age_s=None)
    live.add(_batch(_quotes(["A", "B"] * 2500)))
    assert live.rows == 100
    assert _seq(live.frame()) == list(range(4900, 5000))


def test_row_bound_over_large_batches() -> None:
    live = LiveFrame(Quote, max_rows=10_000, max_age_s=None)
    n = 0
    for _ in range(6):
        live.add(_batch(_quotes(["A"] * 4500, start=n)))
        n += 4500
    assert live.rows == 10_000
    assert _seq(live.frame()) == list(range(n - 10_000, n))


# -- age bound ----------------------------------------------------------------------------------


def test_age_bound_with_a_fake_clock() -> None:
    clock = FakeClock()
    live = LiveFrame(Quote, max_rows=None, max_age_s=10.0, clock=clock)
    # one batch with rows received over 4 seconds, then one a second later
    live.add(_batch(_quotes(["A"] * 5), [T0, T0 + S, T0 + 2 * S, T0 + 3 * S, T0 + 4 * S]))
    live.add(_batch(_quotes(["B"] * 2, start=5), T0 + 5 * S))
    assert _seq(live.frame()) == [0, 1, 2, 3, 4, 5, 6]

    clock.now = T0 + 12 * S  # cutoff T0 + 2 s: rows received before it are gone
    assert _seq(live.frame()) == [2, 3, 4, 5, 6]
    assert min(_recv(live.frame())) == T0 + 2 * S

    clock.now = T0 + 15 * S + 1  # everything older than T0 + 5 s + 1 ns
    assert live.frame().height == 0
    assert live.rows == 0  # whole chunks released


def test_age_bound_releases_chunks_on_add() -> None:
    clock = FakeClock()
    live = LiveFrame(Quote, max_rows=None, max_age_s=1.0, clock=clock)
    for i in range(50):
        clock.now = T0 + i * S
        live.add(_batch(_quotes(["A"] * 5000, start=i * 5000), clock.now))
        assert live.rows <= 2 * 5000
    assert _seq(live.frame())[0] == 48 * 5000


def test_old_rows_are_not_coalesced_into_new_chunks() -> None:
    clock = FakeClock()
    live = LiveFrame(Quote, max_rows=None, max_age_s=1.0, clock=clock)
    live.add(_batch(_quotes(["A"] * 3), T0))
    clock.now = T0 + 10 * S
    live.add(_batch(_quotes(["B"] * 2, start=3), clock.now))
    assert live.rows == 2
    assert _seq(live.frame()) == [3, 4]


def test_a_batch_that_arrives_too_old_is_not_kept() -> None:
    clock = FakeClock(T0 + 100 * S)
    live = LiveFrame(Quote, max_rows=None, max_age_s=1.0, clock=clock)
    live.add(_batch(_quotes(["A"] * 3), T0))
    assert live.rows == 0 and live.frame().height == 0
    assert live.latest().get_column("event_symbol").to_list() == ["A"]


def test_both_bounds() -> None:
    clock = FakeClock()
    live = LiveFrame(Quote, max_rows=3, max_age_s=3.5, clock=clock)
    for i in range(6):
        clock.now = T0 + i * S
        live.add(_batch(_quotes(["A"], start=i), clock.now))
    assert _seq(live.frame()) == [3, 4, 5]  # the row bound is the tighter one: age keeps 2..5
    clock.now = T0 + 7 * S
    assert _seq(live.frame()) == [4, 5]  # now the age bound is
    assert live.rows <= 3


# -- values -------------------------------------------------------------------------------------


def test_values_are_exact() -> None:
    rng = random.Random(7)
    events: list[Event] = [
        Quote(
            rng.choice(["SPY", ".SPY261218C600", "BTC/USD:CXTALP"]),
            event_time=rng.choice([0, 1721664000125]),
            sequence=rng.choice([0, 2**63 - 1, -(2**63), i]),
            bid_time=rng.choice([0, -1, 253402300799999]),
            bid_exchange_code=rng.choice([None, "\u0000", "Q", ""]),
            bid_price=rng.choice([math.nan, math.inf, -math.inf, -0.0, 5e-324, 601.51]),
            ask_price=rng.uniform(-1e9, 1e9),
        )
        for i in range(300)
    ]
    recvs = [T0 + i for i in range(300)]
    live = LiveFrame(Quote, max_rows=1000, max_age_s=None)
    live.add(_batch(events[:100], recvs[:100]))
    live.add(_batch(events[100:], recvs[100:]))
    frame = live.frame()
    assert frame.schema == polars_schema(Quote)
    back = _events(frame, Quote)
    for a, b in zip(events, back, strict=True):
        assert list(map(_bits, msgspec.structs.astuple(a))) == list(
            map(_bits, msgspec.structs.astuple(b))
        )
    assert _recv(frame) == recvs
    assert math.isnan(frame.get_column("ask_size")[0])  # absent double stays NaN


# -- latest -------------------------------------------------------------------------------------


def test_latest_across_batches_keeps_quiet_symbols() -> None:
    clock = FakeClock()
    live = LiveFrame(Quote, max_rows=None, max_age_s=60.0, clock=clock)
    live.add(_batch(_quotes(["A", "B", "C", "A"], start=0), T0))
    clock.now = T0 + 3600 * S  # C is quiet for an hour, longer than the window
    live.add(_batch(_quotes(["B", "A", "B"], start=10), clock.now))
    assert live.frame().get_column("event_symbol").to_list() == ["B", "A", "B"]

    latest = live.latest()
    assert latest.schema == polars_schema(Quote)
    # one row per symbol, ordered by the arrival of that row: C (oldest), A, B
    assert latest.get_column("event_symbol").to_list() == ["C", "A", "B"]
    assert _seq(latest) == [2, 11, 12]
    assert _recv(latest) == [T0, T0 + 3600 * S, T0 + 3600 * S]
    assert math.isnan(latest.get_column("ask_price")[0])


def test_latest_is_unaffected_by_the_row_bound() -> None:
    live = LiveFrame(Quote, max_rows=2, max_age_s=None)
    live.add(_batch(_quotes(["A", "B", "C", "D", "E"])))
    assert live.rows == 2
    assert live.latest().get_column("event_symbol").to_list() == ["A", "B", "C", "D", "E"]


def test_latest_matches_a_reference_over_many_merges() -> None:
    rng = random.Random(11)
    symbols = [f".SPY2501{i:05d}C450" for i in range(3000)]
    live = LiveFrame(Quote, max_rows=20_000, max_age_s=None)
    expected: dict[str, int] = {}  # symbol -> sequence of its newest row, in arrival order
    n = 0
    for i in range(60):
        size = rng.choice([1, 17, 500, 2000, 5000])
        # a symbol set that drifts, so that some symbols stop updating
        chosen = [symbols[rng.randrange(i * 20, i * 20 + 1500)] for _ in range(size)]
        live.add(_batch(_quotes(chosen, start=n)))
        for j, s in enumerate(chosen):
            expected.pop(s, None)
            expected[s] = n + j
        n += size
        if i % 7 == 0:  # latest() between adds merges early; results must not change
            latest = live.latest()
            assert latest.get_column("event_symbol").to_list() == list(expected)
            assert _seq(latest) == list(expected.values())
    latest = live.latest()
    assert latest.height == len(expected)
    assert latest.get_column("event_symbol").to_list() == list(expected)
    assert _seq(latest) == list(expected.values())
    assert latest.get_column("bid_price").to_list() == [float(v) for v in expected.values()]


# -- memory -------------------------------------------------------------------------------------


def test_memory_stays_bounded() -> None:
    clock = FakeClock()
    live = LiveFrame(Quote, max_rows=3000, max_age_s=None, clock=clock)
    symbols = [f"S{i}" for i in range(200)]
    template = _batch(_quotes(symbols * 5))  # 1000 rows
    seen_rows = []
    seen_chunks = []
    for _ in range(1000):
        live.add(template)
        seen_rows.append(live.rows)
        seen_chunks.append(len(live._pieces) + len(live._small))
        assert live.rows <= 3000
        assert live._queue_rows <= 65_536 + 1000  # latest() queue: bounded without latest()
        assert live._latest.height <= len(symbols)
    assert seen_rows[-1] == 3000 and max(seen_rows) == 3000
    assert max(seen_chunks[100:]) == max(seen_chunks[:100])  # chunk count does not grow
    assert live.latest().height == len(symbols)


def test_tiny_batches_are_coalesced() -> None:
    live = LiveFrame(Quote, max_rows=None, max_age_s=3600.0, clock=FakeClock())
    rows = _batch(_quotes(["A"] * 5000))
    for i in range(5000):
        live.add(rows.slice(i, 1))
    assert live.rows == 5000
    # not 5000 one-row batches for frame() to concatenate
    assert len(live._pieces) <= 2 and len(live._small) < 64
    assert _seq(live.frame()) == list(range(5000))
    assert _seq(live.latest()) == [4999]


def test_a_slow_types_latest_queue_does_not_outlive_the_window() -> None:
    # 20 small batches a second (the recorder's tap) of a slow type: 5 rows each
    clock = FakeClock()
    live = LiveFrame(Quote, max_rows=None, max_age_s=60.0, clock=clock)
    symbols = [f"S{i}" for i in range(5)]
    queued = []
    for i in range(20 * 600):  # ten minutes
        clock.now += 50_000_000
        live.add(_batch(_quotes(symbols, start=i), recv_ns=clock.now))
        queued.append(len(live._queue))
    assert max(queued) <= 256  # batches held for latest(): ~13 s worth, not ten minutes
    assert live.rows <= 5 * 20 * 60 + 4096  # whole pieces age out; frame() filters the rest
    assert live.frame().height <= 5 * 20 * 60 + 5
    assert live.latest().height == 5
    assert sorted(live.latest()["event_symbol"].to_list()) == symbols
