"""EventSink rotation (rows, bytes, age with a fake clock, New York midnight) and Parquet output."""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tastyrec.exceptions import StorageError
from tastyrec.record.sink import (
    EventSink,
    RotationPolicy,
    convert_segment,
    journal_segments,
    prune_journal,
)
from tastyrec.storage import layout
from tastyrec.storage.journal import FsyncPolicy, read_segment
from tastyrec.storage.parquet import ROW_GROUP_ROWS

NS = 1_000_000_000
T0 = int(datetime.fromisoformat("2026-11-20T15:00:00+00:00").timestamp()) * NS


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sink(root: Path, make_quotes, policy: RotationPolicy, clock=None) -> EventSink:
    return EventSink(
        root,
        make_quotes([T0]).schema,
        "cafe0001",
        policy,
        FsyncPolicy.NEVER,
        {"tastyrec.source": "test"},
        clock or Clock(),
    )


def rows_of(paths) -> int:
    return sum(pq.read_metadata(p).num_rows for p in paths)


def test_rotation_by_rows(tmp_path, make_quotes):
    s = sink(tmp_path, make_quotes, RotationPolicy(max_rows=100))
    sealed = []
    for i in range(25):
        sealed += s.append(make_quotes(range(T0 + i * 10, T0 + i * 10 + 10), start=i * 10))
    assert len(sealed) == 2  # at 100 and 200 rows
    assert s.journal is not None and s.journal.rows == 50
    sealed += s.seal()
    written = [convert_segment(tmp_path, p) for p in sealed]
    assert [w.rows for w in written if w] == [100, 100, 50]
    assert journal_segments(tmp_path) == []


def test_journaled_bytes_count_every_segment_on_disk(tmp_path, make_quotes):
    """What the status display shows as saved before any Parquet file exists."""
    s = sink(tmp_path, make_quotes, RotationPolicy(max_rows=100))
    assert s.journaled_bytes == 0
    sealed = []
    for i in range(25):
        sealed += s.append(make_quotes(range(T0 + i * 10, T0 + i * 10 + 10), start=i * 10))
        segments = [*sealed, *([s.journal.path] if s.journal is not None else [])]
        assert s.journaled_bytes == sum(p.stat().st_size for p in segments)
    assert len(sealed) == 2
    total = s.journaled_bytes
    sealed += s.seal()
    assert s.journaled_bytes == total == sum(p.stat().st_size for p in sealed)


def test_rotation_by_bytes(tmp_path, make_quotes):
    one = make_quotes(range(T0, T0 + 100))
    s = sink(tmp_path, make_quotes, RotationPolicy(max_bytes=one.nbytes * 3))
    sealed = []
    for _ in range(10):
        sealed += s.append(one)
    assert len(sealed) == 3  # every 3 batches (plus the header's few bytes)


def test_rotation_by_age_uses_the_injected_clock(tmp_path, make_quotes):
    clock = Clock()
    s = sink(tmp_path, make_quotes, RotationPolicy(max_age_s=60), clock)
    assert s.append(make_quotes([T0])) == []
    clock.now += 59.9
    assert s.rotate_if_due() == []
    clock.now += 0.1
    sealed = s.rotate_if_due()
    assert len(sealed) == 1 and s.journal is None
    assert s.rotate_if_due() == []  # nothing open: nothing to rotate


def test_files_never_span_new_york_midnight(tmp_path, make_quotes):
    # 2026-11-01 is 25 hours long in New York: it ends at 2026-11-02T05:00Z
    end = layout.day_end_ns(date(2026, 11, 1))
    s = sink(tmp_path, make_quotes, RotationPolicy())
    recv = [end - 2, end - 1, end, end + 1, end - 3]  # one late-arriving row from before
    sealed = s.append(make_quotes(recv))
    sealed += s.seal()
    files = [convert_segment(tmp_path, p) for p in sealed]
    assert [f.path.parent.name for f in files if f] == ["date=2026-11-01", "date=2026-11-02"]
    first = pl.read_parquet(files[0].path)["recv_epoch_ns"].to_list()
    second = pl.read_parquet(files[1].path)["recv_epoch_ns"].to_list()
    assert first == [end - 2, end - 1, end - 3] and second == [end, end + 1]


def test_parquet_content_settings_and_metadata(tmp_path, make_quotes):
    n = ROW_GROUP_ROWS + 1000
    batches = [
        make_quotes(range(T0 + i, T0 + min(i + 4096, n)), start=i) for i in range(0, n, 4096)
    ]
    s = sink(tmp_path, make_quotes, RotationPolicy())
    for b in batches:
        s.append(b)
    [segment] = s.seal()
    written = convert_segment(tmp_path, segment)
    assert written is not None and written.rows == n and not segment.exists()
    assert written.last_recv_ns == T0 + n - 1
    assert written.path.name.endswith("-cafe0001-00001.parquet")
    meta = pq.read_metadata(written.path)
    groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert groups == [ROW_GROUP_ROWS, 1000]
    kv = meta.metadata
    assert kv[b"tastyrec.source"] == b"test" and kv[b"tastyrec.event_type"] == b"Quote"
    col = meta.row_group(0).column(0)
    assert col.path_in_schema == "event_symbol" and col.compression == "ZSTD"
    assert "RLE_DICTIONARY" in col.encodings
    recv = meta.row_group(0).column(meta.schema.names.index("recv_ns"))
    assert "DELTA_BINARY_PACKED" in recv.encodings
    table = pq.read_table(written.path)
    assert table.schema.remove_metadata() == batches[0].schema.remove_metadata()
    expected = pl.from_arrow(pa.Table.from_batches(batches))
    assert pl.from_arrow(table).equals(expected)  # NaN-aware, exact


def test_conversion_is_idempotent(tmp_path, make_quotes):
    s = sink(tmp_path, make_quotes, RotationPolicy())
    s.append(make_quotes(range(T0, T0 + 10)))
    [segment] = s.seal()
    kept = segment.read_bytes()
    first = convert_segment(tmp_path, segment)
    segment.write_bytes(kept)  # as if killed after the rename, before the delete
    again = convert_segment(tmp_path, segment)
    assert again is not None and first is not None
    assert again.path == first.path and again.rows == 10 and not segment.exists()
    assert len(list(tmp_path.rglob("*.parquet"))) == 1


def test_torn_segment_converts_its_intact_rows(tmp_path, make_quotes):
    s = sink(tmp_path, make_quotes, RotationPolicy())
    s.append(make_quotes(range(T0, T0 + 10)))
    s.append(make_quotes(range(T0 + 10, T0 + 20), start=10))
    [segment] = s.seal()
    segment.write_bytes(segment.read_bytes()[:-5])
    written = convert_segment(tmp_path, segment)
    assert written is not None and written.rows == 10 and written.torn_bytes > 0


def test_empty_segment_makes_no_file(tmp_path, make_quotes):
    s = sink(tmp_path, make_quotes, RotationPolicy())
    s.append(make_quotes([T0]))
    [segment] = s.seal()
    segment.write_bytes(segment.read_bytes()[:10])
    assert convert_segment(tmp_path, segment) is None
    assert not list(tmp_path.rglob("*.parquet")) and not segment.exists()
    prune_journal(tmp_path)
    assert list((tmp_path / "_journal").iterdir()) == []


def test_failed_write_keeps_the_journal_and_leaves_no_partial_file(
    tmp_path, make_quotes, monkeypatch
):
    s = sink(tmp_path, make_quotes, RotationPolicy())
    s.append(make_quotes(range(T0, T0 + 10)))
    [segment] = s.seal()

    def full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(StorageError, match="No space left on device.*tastyrec recover"):
        convert_segment(tmp_path, segment)
    assert read_segment(segment).rows == 10
    assert not list(tmp_path.rglob("*.parquet*"))


def test_policy_validation():
    with pytest.raises(ValueError):
        RotationPolicy(max_rows=0)
    assert RotationPolicy(max_rows=5).due(5, 0, 0) == "rows"
    assert RotationPolicy(max_bytes=5).due(0, 5, 0) == "bytes"
    assert RotationPolicy(max_age_s=5).due(0, 0, 5) == "age"
    assert RotationPolicy().due(0, 0, 0) is None


def _rss_anon_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    pytest.skip("no RssAnon in /proc/self/status")


def test_release_memory_gives_a_worker_threads_freed_memory_back():
    """What a conversion leaves in a worker thread's malloc arena: ~200 MiB of records, freed,
    pinned by every hundredth one. glibc keeps it mapped; release_memory returns it."""
    import threading

    from tastyrec.record.sink import _malloc_trim, release_memory

    if _malloc_trim() is None:
        pytest.skip("not glibc: no malloc_trim")
    kept: list[bytes] = []
    levels: list[float] = []

    def convert_like() -> None:
        records = [bytes(10_000) for _ in range(20_000)]
        kept.extend(records[::100])
        del records
        levels.append(_rss_anon_mib())  # freed, but still mapped
        release_memory()
        levels.append(_rss_anon_mib())

    worker = threading.Thread(target=convert_like)
    worker.start()
    worker.join()
    freed, released = levels
    assert len(kept) == 200
    assert freed - released > 100, levels
