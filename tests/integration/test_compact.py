"""Compaction on real Parquet: lossless, sorted, idempotent, crash-safe, safe beside a recorder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tastyrec import catalog
from tastyrec.events import Quote
from tastyrec.exceptions import StorageError
from tastyrec.query import _compact as compaction, compact, connect, scan
from tastyrec.query._inventory import inventory
from tastyrec.record.recorder import Recorder, recover
from tastyrec.record.sink import RotationPolicy
from tastyrec.replay import replay_frames
from tastyrec.storage import layout
from tests.integration.waits import wait_until

SAMPLE = Path(__file__).parent.parent / "data" / "sample"
TYPES = ["Candle", "Greeks", "Profile", "Quote", "Summary", "TimeAndSale", "Trade"]


@pytest.fixture
def rec(tmp_path: Path) -> Path:
    out = tmp_path / "rec"
    shutil.copytree(SAMPLE, out)
    return out


def contents(root: Path, event_type: str) -> pl.DataFrame:
    """Every row tastyrec's readers see, in a canonical order (NaN-safe comparisons)."""
    table = connect(root).sql(f'SELECT * EXCLUDE (date) FROM "{event_type}"').to_arrow_table()
    return pl.from_arrow(table).sort(pl.all())


def raw_glob_rows(root: Path, event_type: str) -> int:
    return duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{root}/{event_type}/*/*.parquet')"
    ).fetchall()[0][0]


def test_compaction_is_lossless_sorted_and_idempotent(rec):
    before = {t: contents(rec, t) for t in TYPES}
    inputs = {t: sorted(rec.glob(f"{t}/*/*.parquet")) for t in TYPES}
    results = compact(rec, row_group_rows=64)
    assert [r.event_type for r in results] == TYPES
    for r in results:
        assert sorted(r.inputs) == inputs[r.event_type] and len(r.outputs) == 1
        (out,) = r.outputs
        assert sorted(out.parent.glob("*.parquet")) == [out]  # the old files are gone
        assert catalog.compacted_from(out) == [p.name for p in inputs[r.event_type]]
        table = pq.read_table(out)
        assert r.rows == table.num_rows == before[r.event_type].height
        # sorted by symbol, then receipt time
        keys = table.select(["event_symbol", "recv_ns"])
        order = pc.sort_indices(keys, [("event_symbol", "ascending"), ("recv_ns", "ascending")])
        assert order.equals(pa.array(range(table.num_rows), pa.uint64()))
        meta = pq.read_metadata(out)
        assert meta.num_row_groups == -(-table.num_rows // 64)
        # the recorder's writer settings: zstd, delta-encoded receipt time
        col = meta.row_group(0).column(table.schema.get_field_index("recv_ns"))
        assert col.compression == "ZSTD" and "DELTA_BINARY_PACKED" in col.encodings
        assert contents(rec, r.event_type).equals(before[r.event_type])
    # again: nothing to do, nothing changes
    names = sorted(p.name for p in rec.glob("*/*/*.parquet"))
    again = compact(rec)
    assert not any(r.changed for r in again)
    assert sorted(p.name for p in rec.glob("*/*/*.parquet")) == names


def test_new_files_are_merged_with_the_compacted_one(rec):
    (first,) = compact(rec, event_types=["Trade"])[0].outputs
    extra = (
        rec
        / "Trade"
        / "date=2026-11-21"
        / (layout.file_name(2 * 10**18, "bbbb2222", 1) + ".parquet")
    )
    shutil.copy(first, extra)  # a later file (here: the same rows again)
    (result,) = compact(rec, event_types=["Trade"])
    assert sorted(result.inputs) == sorted([first, extra]) and result.rows == 2 * 104
    assert contents(rec, "Trade").height == 2 * 104


def test_max_rows_makes_several_files(rec):
    before = contents(rec, "Candle")
    (result,) = compact(rec, event_types=["Candle"], max_rows=400)
    # three files of 350-370 rows: each group holds one input at most, nothing to merge
    assert result.outputs == []
    (result,) = compact(rec, event_types=["Candle"], max_rows=800)
    # the first two fit in one file; the third alone is left as it is
    assert len(result.outputs) == 1 and len(result.inputs) == 2
    assert contents(rec, "Candle").equals(before)
    assert not compact(rec, event_types=["Candle"], max_rows=800)[0].changed


def test_files_still_in_the_journal_and_files_being_written_are_left_alone(rec):
    folder = rec / "Quote" / "date=2026-11-21"
    files = sorted(folder.glob("*.parquet"))
    # a crash left the last file's journal segment: recover() may still convert it
    segment = rec / "_journal" / "Quote" / "date=2026-11-21" / (files[-1].stem + ".arrows")
    segment.parent.mkdir(parents=True, exist_ok=True)
    segment.write_bytes(b"TRJ1")
    tmp = folder / "20261121T134450.000000000Z-44f3ceba-00009.parquet.tmp"
    tmp.write_bytes(b"being written")
    (result,) = compact(rec, event_types=["Quote"])
    assert sorted(result.inputs) == files[:-1]
    assert files[-1].exists() and tmp.read_bytes() == b"being written"
    assert contents(rec, "Quote").height == 955


def test_a_second_compaction_at_the_same_time_is_refused(rec):
    import fcntl
    import os

    fd = os.open(rec / compaction.LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(StorageError, match="another `tastyrec compact` is running"):
            compact(rec)
    finally:
        os.close(fd)


def test_the_lock_file_is_removed_when_done_and_a_folder_not_a_recording_is_refused(rec, tmp_path):
    compact(rec)
    assert not (rec / compaction.LOCK_NAME).exists()
    other = tmp_path / "not-a-recording"
    (other / "2026").mkdir(parents=True)
    (other / "notes.txt").write_text("keep me\n")
    with pytest.raises(StorageError, match="is not a recording"):
        compact(other)
    assert sorted(p.name for p in other.iterdir()) == ["2026", "notes.txt"]


def test_a_lock_on_a_file_its_holder_just_removed_does_not_count(rec, monkeypatch):
    """A compaction opening the lock file just before the one holding it removes it (when it
    ends) must not run beside a third that creates the file anew: it opens the file again."""
    import os

    path = rec / compaction.LOCK_NAME
    opened = []
    real_open = os.open

    def open_then_removed(file, flags, mode=0o777):
        fd = real_open(file, flags, mode)
        if not opened:  # the holder ends and removes the file right after our open
            os.unlink(file)
        opened.append(fd)
        return fd

    monkeypatch.setattr(compaction.os, "open", open_then_removed)
    with compaction._lock(rec):
        monkeypatch.undo()
        held = os.stat(path)  # the file at the path is the one locked
        assert len(opened) == 2
        assert (held.st_dev, held.st_ino) == (
            os.fstat(opened[1]).st_dev,
            os.fstat(opened[1]).st_ino,
        )
    assert not path.exists()


def test_a_bad_written_file_is_never_published(rec, monkeypatch):
    before = sorted(rec.glob("Quote/*/*"))

    def corrupt(*args):  # the check sees a different file
        raise StorageError("compaction check failed: simulated")

    monkeypatch.setattr(compaction, "verify", corrupt)
    with pytest.raises(StorageError, match="check failed"):
        compact(rec, event_types=["Quote"])
    assert sorted(rec.glob("Quote/*/*")) == before  # old files kept, temporary removed


CRASH = """
import os, sys
from tastyrec.query import _compact
calls = []
def hook(step):
    calls.append(step)
    if step == sys.argv[2] and calls.count(step) == int(sys.argv[3]):
        os._exit(9)  # a crash: no cleanup, no exception handlers
_compact._step_hook = hook
_compact.compact(sys.argv[1], event_types=["Quote"])
"""


@pytest.mark.parametrize(
    ("step", "nth"),
    [("write", 1), ("publish", 1), ("delete", 1), ("delete", 2), ("delete", 3)],
    ids=["before-write", "before-publish", "before-delete", "mid-delete", "last-delete"],
)
def test_a_crash_at_any_step_leaves_a_consistent_recording(rec, step, nth):
    before = contents(rec, "Quote")
    proc = subprocess.run(
        [sys.executable, "-c", CRASH, str(rec), step, str(nth)], capture_output=True, timeout=60
    )
    assert proc.returncode == 9, proc.stderr.decode()
    folder = rec / "Quote" / "date=2026-11-21"
    published = [p for p in folder.glob("*.parquet") if catalog.is_compacted(p.name)]
    assert bool(published) == (step == "delete")
    if step == "delete":
        # raw globs see the old rows beside the new until a tastyrec command opens the folder
        assert raw_glob_rows(rec, "Quote") > 955
    # tastyrec's readers see every row exactly once, whatever the crash left ...
    assert contents(rec, "Quote").equals(before)
    # ... and opening the recording finished the interrupted compaction (roll forward)
    assert raw_glob_rows(rec, "Quote") == 955
    # the next run removes a half-written file (roll back) and merges; nothing left after delete
    (result,) = compact(rec, event_types=["Quote"])
    assert result.changed == (step != "delete")  # after a delete crash the reader finished it
    assert not list(folder.glob("*.tmp"))
    (final,) = folder.glob("*.parquet")
    assert catalog.is_compacted(final.name)
    assert contents(rec, "Quote").equals(before)
    assert raw_glob_rows(rec, "Quote") == 955


@pytest.mark.parametrize(
    "reader",
    [
        lambda root: connect(root).close(),
        lambda root: scan(root, Quote).collect(),
        lambda root: inventory(root),
        lambda root: list(replay_frames(root, [Quote])),
        lambda root: recover(root),  # what `tastyrec record` and `tastyrec recover` run first
    ],
    ids=["connect", "scan", "info", "replay", "record-and-recover"],
)
def test_every_reader_finishes_a_compaction_killed_before_deleting(rec, reader):
    before = contents(rec, "Quote")
    proc = subprocess.run(
        [sys.executable, "-c", CRASH, str(rec), "delete", "1"], capture_output=True, timeout=60
    )
    assert proc.returncode == 9, proc.stderr.decode()
    assert raw_glob_rows(rec, "Quote") > 955
    reader(rec)
    assert raw_glob_rows(rec, "Quote") == 955
    folder = rec / "Quote" / "date=2026-11-21"
    (final,) = folder.glob("*.parquet")
    assert catalog.is_compacted(final.name)
    assert contents(rec, "Quote").equals(before)


def test_readers_see_every_row_once_during_compactions(rec):
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            read_until(stop)
        except BaseException as exc:
            errors.append(exc)

    def read_until(stop: threading.Event) -> None:
        while not stop.is_set():
            for _ in range(20):  # a file may vanish between listing and reading: list again
                try:
                    files = catalog.recording_files(rec, "Quote")
                    seen.append(sum(pq.read_metadata(f).num_rows for f in files))
                    break
                except FileNotFoundError:
                    continue
            else:
                errors.append(AssertionError("no consistent listing in 20 attempts"))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in range(8):
            extra = (
                rec
                / "Quote"
                / "date=2026-11-21"
                / (layout.file_name(2 * 10**18 + n, "cccc3333", n) + ".parquet")
            )
            # published as a recorder publishes (the reader must never meet a half-copied file)
            staged = extra.with_name(extra.name + ".tmp")
            shutil.copy(
                SAMPLE
                / "Quote"
                / "date=2026-11-21"
                / next(
                    p.name for p in sorted((SAMPLE / "Quote" / "date=2026-11-21").glob("*.parquet"))
                ),
                staged,
            )
            os.replace(staged, extra)
            expected = 955 + sum(400 for _ in range(n + 1))
            compact(rec, event_types=["Quote"])
            assert contents(rec, "Quote").height == expected
    finally:
        stop.set()
        thread.join(10)
    assert not errors, errors
    assert seen and all(s >= 955 for s in seen)
    # a listing holds the old files or the new one: never both (a multiple of neither)
    valid = {955 + 400 * k for k in range(9)}
    assert set(seen) <= valid


async def test_compaction_beside_a_running_recorder_loses_and_repeats_nothing(tmp_path):
    out = tmp_path / "live"
    total = 0
    runs = 0
    async with Recorder(out, rotation=RotationPolicy(max_rows=50)) as recorder:
        for i in range(40):
            recorder.record_many(
                Quote(
                    "SPY" if k % 2 else "QQQ", 0, i * 100 + k, 0, 0, "Q", 0, "Q", 1.0, 2.0, 3.0, 4.0
                )
                for k in range(25)
            )
            total += 25
            # the recorder has journaled (and rotated) them: compaction runs beside its files
            await wait_until(lambda: recorder.stats.rows["Quote"] >= total)  # noqa: B023
            if i % 5 == 4:
                await anyio.to_thread.run_sync(lambda: compact(out))
                runs += 1
    compact(out)
    seqs = pl.from_arrow(connect(out).sql("SELECT sequence FROM Quote").to_arrow_table())[
        "sequence"
    ]
    assert runs == 8 and seqs.len() == total and seqs.n_unique() == total
    assert not list(out.glob("_journal/*/*/*.arrows"))


@pytest.mark.parametrize("column", ["bid_price", "event_symbol", "recv_ns", "bid_size"])
def test_the_check_catches_a_corrupted_write(rec, monkeypatch, column):
    """The real check (no stub): the written file differs from what was handed to the writer."""
    before = sorted(rec.glob("Quote/*/*"))
    real_verify = compaction.verify

    def corrupt_then_verify(path, schema, written_digests, rows):
        # rewrite the written (not yet published) file with one value changed in the last row
        # group (same rows, same schema)
        written = pq.read_table(path)
        col = written.column(column).to_pylist()
        i = len(col) - 3
        if column == "event_symbol":
            col[i] = col[i] + "X"
        elif column == "recv_ns":
            col[i] = col[i].replace(microsecond=(col[i].microsecond + 1) % 1_000_000)
        elif column == "bid_size":
            col[i] = -0.0 if col[i] == 0.0 else 0.0  # a sign bit: equal as floats, not as bits
        else:
            col[i] = col[i] + 0.01
        idx = written.schema.get_field_index(column)
        written = written.set_column(
            idx, written.schema.field(idx), pa.array(col, written.schema.field(idx).type)
        )
        pq.write_table(written, path, row_group_size=100)
        real_verify(path, schema, written_digests, rows)

    monkeypatch.setattr(compaction, "verify", corrupt_then_verify)
    with pytest.raises(StorageError, match=f"check failed: column {column!r} differing"):
        compact(rec, event_types=["Quote"], row_group_rows=100)
    assert sorted(rec.glob("Quote/*/*")) == before  # old files kept, temporary removed


def test_the_check_catches_a_truncated_write(rec, monkeypatch):
    before = sorted(rec.glob("Quote/*/*"))
    real_verify = compaction.verify

    def drop_a_row_then_verify(path, schema, written_digests, rows):
        written = pq.read_table(path)
        pq.write_table(written.slice(1), path)
        real_verify(path, schema, written_digests, rows)

    monkeypatch.setattr(compaction, "verify", drop_a_row_then_verify)
    with pytest.raises(StorageError, match="check failed: 954 rows where 955 were expected"):
        compact(rec, event_types=["Quote"])
    assert sorted(rec.glob("Quote/*/*")) == before


def test_the_digest_sees_every_bit_and_every_position():
    digest = compaction.digest
    base = pa.table(
        {
            "f": pa.array([1.0, float("nan"), None, 0.0]),
            "s": pa.array(["a", None, "bc", ""]),
            "t": pa.array([1, 2, 3, None], pa.timestamp("ns", tz="UTC")),
        }
    )
    same = pa.Table.from_batches(base.to_batches(max_chunksize=3))  # other chunking, same rows
    assert digest(base)[1] == digest(same)[1]
    negzero = base.set_column(0, "f", pa.array([1.0, float("nan"), None, -0.0]))
    swapped = base.set_column(1, "s", pa.array(["bc", None, "a", ""]))
    moved = base.set_column(1, "s", pa.array(["ab", None, "c", ""]))
    null = base.set_column(2, "t", pa.array([1, 2, None, None], pa.timestamp("ns", tz="UTC")))
    for other, col in [(negzero, 0), (swapped, 1), (moved, 1), (null, 2)]:
        assert digest(other)[1][col] != digest(base)[1][col]
