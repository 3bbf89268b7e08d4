"""The write-ahead journal: append, fsync policies, torn tails, corruption."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pyarrow as pa
import pytest

from tastyrec.events import Quote
from tastyrec.exceptions import StorageError
from tastyrec.schema import arrow_schema
from tastyrec.storage.journal import (
    MAGIC,
    FsyncPolicy,
    JournalWriter,
    SegmentContents,
    SegmentReader,
    read_segment,
)


def read_streamed(path):
    """SegmentReader's view of a segment, in read_segment's terms."""
    reader = SegmentReader(path)
    batches = list(reader)
    assert reader.rows == sum(b.num_rows for b in batches)
    return SegmentContents(reader.schema, batches, reader.torn_bytes)


@pytest.fixture(params=["mapped", "streamed"])
def read(request):
    """Both readers of a segment (read_segment maps it, SegmentReader streams it) obey the
    same rules."""
    return read_segment if request.param == "mapped" else read_streamed


def write(path: Path, batches, fsync=FsyncPolicy.NEVER) -> JournalWriter:
    journal = JournalWriter(path, batches[0].schema, fsync=fsync)
    for b in batches:
        journal.append(b)
    journal.close()
    return journal


def same(a: pa.RecordBatch, b: pa.RecordBatch) -> bool:
    """Equal rows, NaN equal to NaN."""

    def key(batch):
        return [
            tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in row.values())
            for row in batch.to_pylist()
        ]

    return key(a) == key(b)


@pytest.mark.parametrize("policy", list(FsyncPolicy))
def test_round_trip(tmp_path, make_quotes, policy, read):
    batches = [make_quotes(range(i * 10, i * 10 + 10), start=i * 10) for i in range(5)]
    journal = write(tmp_path / "a" / "s.arrows", batches, policy)
    assert journal.rows == 50 and journal.closed
    contents = read(tmp_path / "a" / "s.arrows")
    assert contents.torn_bytes == 0 and contents.rows == 50
    assert contents.schema == batches[0].schema
    assert contents.schema.metadata == arrow_schema(Quote).metadata
    assert all(same(a, b) for a, b in zip(contents.batches, batches, strict=True))


def test_every_cut_keeps_exactly_the_complete_records(tmp_path, make_quotes, read):
    batches = [make_quotes(range(i, i + 3), start=i) for i in range(4)]
    path = tmp_path / "s.arrows"
    write(path, batches)
    data = path.read_bytes()
    # record boundaries: the size after each append
    ends = []
    probe = tmp_path / "probe.arrows"
    journal = JournalWriter(probe, batches[0].schema, fsync=FsyncPolicy.NEVER)
    header = journal.bytes
    for b in batches:
        journal.append(b)
        ends.append(journal.bytes)
    journal.close()
    for cut in range(0, len(data), 7):
        path.write_bytes(data[:cut])
        contents = read(path)
        complete = sum(1 for e in ends if e <= cut)
        assert len(contents.batches) == complete, cut
        assert contents.rows == 3 * complete
        good = ends[complete - 1] if complete else (header if cut >= header else 0)
        assert contents.torn_bytes == cut - good or (cut < header and contents.rows == 0)


@pytest.mark.parametrize("tail", [b"\x00" * 4096, b"\xff" * 100, os.urandom(333)])
def test_garbage_or_zeroed_tail_is_dropped(tmp_path, make_quotes, tail, read):
    batches = [make_quotes(range(i, i + 3), start=i) for i in range(3)]
    path = tmp_path / "s.arrows"
    write(path, batches)
    with open(path, "ab") as fh:
        fh.write(tail)
    contents = read(path)
    assert contents.rows == 9 and contents.torn_bytes == len(tail)


def test_flipped_byte_stops_at_the_damaged_record(tmp_path, make_quotes, read):
    batches = [make_quotes(range(i, i + 3), start=i) for i in range(3)]
    path = tmp_path / "s.arrows"
    journal = JournalWriter(path, batches[0].schema, fsync=FsyncPolicy.NEVER)
    journal.append(batches[0])
    first_end = journal.bytes
    journal.append(batches[1])
    journal.append(batches[2])
    journal.close()
    data = bytearray(path.read_bytes())
    data[first_end + 20] ^= 0xFF  # inside the second record's payload
    path.write_bytes(bytes(data))
    contents = read(path)
    assert contents.rows == 3 and contents.torn_bytes == len(data) - first_end


def test_not_a_journal(tmp_path, read):
    path = tmp_path / "x.arrows"
    path.write_bytes(b"PAR1 and more")
    with pytest.raises(StorageError, match="not a tastyrec journal"):
        read(path)


def test_empty_and_header_only_segments(tmp_path, make_quotes, read):
    empty = tmp_path / "e.arrows"
    empty.write_bytes(b"")
    assert read(empty).rows == 0
    path = tmp_path / "h.arrows"
    JournalWriter(path, make_quotes([1]).schema, fsync=FsyncPolicy.NEVER).close()
    contents = read(path)
    assert contents.schema is not None and contents.rows == 0 and contents.torn_bytes == 0
    assert path.read_bytes().startswith(MAGIC)


def test_refuses_to_overwrite_and_reports_paths(tmp_path, make_quotes):
    path = tmp_path / "s.arrows"
    write(path, [make_quotes([1])])
    with pytest.raises(StorageError, match="cannot create the journal segment"):
        JournalWriter(path, make_quotes([1]).schema, fsync=FsyncPolicy.NEVER)


def test_schema_mismatch_is_refused(tmp_path, make_quotes):
    journal = JournalWriter(tmp_path / "s.arrows", make_quotes([1]).schema, fsync=FsyncPolicy.NEVER)
    with pytest.raises(StorageError, match="schema"):
        journal.append(pa.record_batch({"x": [1]}))


def test_write_errors_become_storage_errors(tmp_path, make_quotes, monkeypatch):
    journal = JournalWriter(tmp_path / "s.arrows", make_quotes([1]).schema, fsync=FsyncPolicy.NEVER)

    def full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(StorageError, match="No space left on device"):
        journal.append(make_quotes([1]))
    assert journal.rows == 0  # not counted


def test_sync_later_runs_after_close(tmp_path, make_quotes, read):
    journal = JournalWriter(tmp_path / "s.arrows", make_quotes([1]).schema, fsync=FsyncPolicy.NEVER)
    assert journal.sync_later() is not None  # the header (never synced with "never")
    assert journal.sync_later() is None  # nothing new
    journal.append(make_quotes([1, 2]))
    sync = journal.sync_later()
    assert sync is not None and journal.sync_later() is None
    journal.close()
    sync()  # its own descriptor: the segment being closed does not matter
    assert read(tmp_path / "s.arrows").rows == 2
