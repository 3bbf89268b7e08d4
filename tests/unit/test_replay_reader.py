"""The replay reader: merging row groups of many files by receipt time, with bounded memory."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tastyrec.events import Quote, Trade
from tastyrec.replay.reader import Timeline, conform, merge_order, to_events
from tastyrec.schema import arrow_schema, receipt_ns
from tastyrec.storage.layout import file_name, parquet_path, partition_date
from tastyrec.storage.parquet import write_parquet

T0 = 1_795_000_000_000_000_000


def quotes(
    recv: list[int], symbols: list[str] | None = None, bid: list[float] | None = None
) -> pa.Table:
    n = len(recv)
    schema = arrow_schema(Quote)
    return pa.table(
        {
            "event_symbol": symbols or [f"S{i % 3}" for i in range(n)],
            "event_time": pa.array([0] * n, pa.int64()).cast(schema.field("event_time").type),
            "sequence": list(range(n)),
            "time_nano_part": [0] * n,
            "bid_time": pa.array([r // 1_000_000 for r in recv]).cast(
                schema.field("bid_time").type
            ),
            "bid_exchange_code": ["Q"] * n,
            "ask_time": pa.array([0] * n, pa.int64()).cast(schema.field("ask_time").type),
            "ask_exchange_code": [None] * n,
            "bid_price": bid or [100.0 + i for i in range(n)],
            "ask_price": [101.0] * n,
            "bid_size": [math.nan] * n,
            "ask_size": [math.inf] * n,
            "recv_ns": pa.array([r // 1000 for r in recv], schema.field("recv_ns").type),
            "recv_epoch_ns": pa.array(recv, pa.int64()),
        }
    ).cast(schema)


def version_1(table: pa.Table) -> pa.Table:
    """``table`` as schema version 1 wrote it: ``recv_ns`` in nanoseconds, no exact column."""
    exact = table.column("recv_epoch_ns").cast(pa.timestamp("ns", tz="UTC"))
    table = table.set_column(table.schema.get_field_index("recv_ns"), "recv_ns", exact)
    return table.drop_columns(["recv_epoch_ns"])


def write(
    root: Path, table: pa.Table, session: str, seq: int, row_group: int | None = None
) -> Path:
    first = int(receipt_ns(table)[0].as_py())
    path = parquet_path(root, "Quote", partition_date(first), file_name(first, session, seq))
    path.parent.mkdir(parents=True, exist_ok=True)
    if row_group is None:
        write_parquet(path, table.schema, table.to_batches())
    else:
        pq.write_table(table, path, row_group_size=row_group)
    return path


def drain(timeline: Timeline) -> tuple[list[int], list[int]]:
    """(recv_ns, sequence) of every row, in the order the steps give them (merged per step)."""
    recv: list[int] = []
    seqs: list[int] = []
    while (step := timeline.next_step()) is not None:
        which, rows = merge_order(step.pieces)
        for w, r in zip(which.tolist(), rows.tolist(), strict=True):
            piece = step.pieces[w]
            recv.append(int(piece.recv[r]))
            seqs.append(piece.batch.get_column("sequence")[r])
    return recv, seqs


def test_overlapping_sessions_merge_by_receipt_time(tmp_path: Path) -> None:
    a = [T0 + 10 * i for i in range(1000)]  # every 10 ns
    b = [T0 + 5 + 10 * i for i in range(1000)]  # between them: a second recorder
    write(tmp_path, quotes(a), "aaaa", 1, row_group=100)
    write(tmp_path, quotes(b), "bbbb", 1, row_group=64)
    recv, _ = drain(Timeline(tmp_path, [Quote], chunk_rows=50))
    assert recv == sorted(a + b)


def test_files_of_schema_versions_1_and_2_merge_by_exact_receipt_time(tmp_path: Path) -> None:
    a = [T0 + 10 * i for i in range(300)]  # a version 1 file: exact nanoseconds in recv_ns
    b = [T0 + 5 + 10 * i for i in range(300)]  # version 2, within the same microseconds
    write(tmp_path, version_1(quotes(a)), "aaaa", 1, row_group=100)
    write(tmp_path, quotes(b), "bbbb", 1, row_group=64)
    recv, _ = drain(Timeline(tmp_path, [Quote], chunk_rows=50))
    assert recv == sorted(a + b)


def test_ties_keep_file_order_and_steps_never_go_back(tmp_path: Path) -> None:
    recv_a = [T0 + (i // 7) for i in range(700)]  # frames of 7 rows share a receipt time
    write(tmp_path, quotes(recv_a), "aaaa", 1, row_group=64)  # ties straddle row groups
    timeline = Timeline(tmp_path, [Quote], chunk_rows=32)
    last = -1
    order: list[int] = []
    while (step := timeline.next_step()) is not None:
        first = min(int(p.recv[0]) for p in step.pieces)
        assert first >= last
        last = step.horizon_ns
        which, rows = merge_order(step.pieces)
        order += [
            step.pieces[w].batch.get_column("sequence")[r]
            for w, r in zip(which.tolist(), rows.tolist(), strict=True)
        ]
        assert len(timeline._open) <= 2  # a sequential file: at most two row groups open
    assert order == list(range(700))


@pytest.mark.parametrize("chunk_rows", [50, 8192])
def test_event_columns_skip_the_microsecond_receipt_column(tmp_path: Path, chunk_rows: int) -> None:
    a = [T0 + 10 * i for i in range(300)]  # schema version 1: recv_ns is the only receipt column
    b = [T0 + 5 + 10 * i for i in range(300)]  # version 2, one more (unused) column missing
    write(tmp_path, version_1(quotes(a)), "aaaa", 1, row_group=100)
    write(tmp_path, quotes(b).drop_columns(["ask_size"]), "bbbb", 1, row_group=64)
    full = Timeline(tmp_path, [Quote], chunk_rows=chunk_rows)
    lean = Timeline(tmp_path, [Quote], chunk_rows=chunk_rows, event_columns=True)
    events: dict[bool, list[bytes]] = {False: [], True: []}
    for flag, timeline in ((False, full), (True, lean)):
        while (step := timeline.next_step()) is not None:
            for piece in step.pieces:
                names = piece.batch.columns
                assert ("recv_ns" in names) is not flag and names[-1] == "recv_epoch_ns"
                assert piece.recv.tolist() == piece.batch["recv_epoch_ns"].to_list()
                events[flag] += [msgspec.msgpack.encode(e) for e in to_events(Quote, piece.batch)]
    assert len(events[True]) == 600 and events[True] == events[False]


def test_an_unsorted_file_is_sorted_stably(tmp_path: Path) -> None:
    # a compacted file: sorted by symbol, then time
    recv = [T0 + 3, T0 + 1, T0 + 5, T0 + 1, T0 + 2, T0 + 4]
    table = quotes(recv, symbols=["A", "A", "A", "B", "B", "B"])
    table = table.take(pa.array([1, 0, 2, 3, 4, 5]))  # A: 1, 3, 5 ; B: 1, 2, 4
    write(tmp_path, table, "cccc", 1)
    got, seqs = drain(Timeline(tmp_path, [Quote]))
    assert got == sorted(recv)
    assert seqs == [1, 3, 4, 0, 5, 2]  # ties at T0+1: A's row before B's, as in the file


def test_start_is_inclusive_and_end_exclusive(tmp_path: Path) -> None:
    recv = [T0 + i for i in range(100)]
    write(tmp_path, quotes(recv), "dddd", 1, row_group=10)
    got, _ = drain(Timeline(tmp_path, [Quote], start_ns=T0 + 20, end_ns=T0 + 45))
    assert got == recv[20:45]


def test_a_type_added_later_reads_only_rows_after_the_horizon(tmp_path: Path) -> None:
    write(tmp_path, quotes([T0 + i for i in range(50)]), "eeee", 1, row_group=10)
    timeline = Timeline(tmp_path, [Trade], chunk_rows=10)  # no Trade files: nothing
    assert timeline.next_step() is None
    timeline.add_type(Quote, after_ns=T0 + 29)
    got, _ = drain(timeline)
    assert got == [T0 + i for i in range(30, 50)]


def test_rows_of_another_schema_version_are_conformed() -> None:
    table = version_1(quotes([T0 + 1999, T0 + 2001])).drop_columns(["ask_size"])
    table = table.append_column("future_field", pa.array(["x", "y"]))
    frame = conform(pl.from_arrow(table), Quote)  # type: ignore[arg-type]
    assert frame.columns == list(arrow_schema(Quote).names)
    assert frame["recv_epoch_ns"].to_list() == [T0 + 1999, T0 + 2001]  # exact, from recv_ns
    assert frame["recv_ns"].dt.epoch("us").to_list() == [T0 // 1000 + 1, T0 // 1000 + 2]
    events = to_events(Quote, frame)
    assert math.isnan(events[0].ask_size)  # the field's default
    assert events[1].bid_price == 101.0


def test_events_are_bit_exact() -> None:
    values = [math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308]
    table = quotes([T0 + i for i in range(6)], bid=values)
    events: list[Any] = to_events(Quote, pl.from_arrow(table))  # type: ignore[arg-type]
    got = [e.bid_price for e in events]
    assert np.array(got).tobytes() == np.array(values).tobytes()
    assert events[0].ask_exchange_code is None and events[0].bid_exchange_code == "Q"
    assert events[3].bid_time == (T0 + 3) // 1_000_000 and isinstance(events[3].bid_time, int)
    assert events[2].sequence == 2 and events[2].event_time == 0
    expected = Quote(
        "S0", 0, 0, 0, T0 // 1_000_000, "Q", 0, None, math.nan, 101.0, math.nan, math.inf
    )
    assert msgspec.msgpack.encode(events[0]) == msgspec.msgpack.encode(expected)


def test_a_file_without_receipt_times_is_refused(tmp_path: Path) -> None:
    from tastyrec.exceptions import SchemaError

    path = tmp_path / "Quote" / "date=2026-11-18" / "x.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"event_symbol": ["SPY"]}), path)
    with pytest.raises(SchemaError, match="recv_ns"):
        Timeline(tmp_path, [Quote])


def test_temporary_files_are_never_read(tmp_path: Path) -> None:
    path = write(tmp_path, quotes([T0, T0 + 1]), "ffff", 1)
    (path.parent / (path.name + ".tmp")).write_bytes(b"half a file")
    got, _ = drain(Timeline(tmp_path, [Quote]))
    assert got == [T0, T0 + 1]
