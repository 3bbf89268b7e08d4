"""The one atomic publication routine (tastyrec.storage.publish) and the Parquet writers on it."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tastyrec.storage import publish as publish_module
from tastyrec.storage.parquet import (
    ROW_GROUP_ROWS,
    parquet_options,
    write_parquet,
    write_small_table,
)
from tastyrec.storage.publish import fsync_dir, publish, temporary_path


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


class Syncs:
    """Records the durable steps in order: ``"fsync"`` (the file), ``"replace"``, and the path of
    a folder synced (not synced for real: the folder's own fsync would count as a file's)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd: int) -> None:
            self.calls.append("fsync")
            real_fsync(fd)

        def replace(src: Any, dst: Any) -> None:
            self.calls.append("replace")
            real_replace(src, dst)

        monkeypatch.setattr(publish_module.os, "fsync", fsync)
        monkeypatch.setattr(publish_module.os, "replace", replace)
        monkeypatch.setattr(publish_module, "fsync_dir", lambda path: self.calls.append(str(path)))


def test_publish_writes_syncs_renames_and_syncs_the_folder(tmp_path, monkeypatch):
    syncs = Syncs(monkeypatch)
    target = tmp_path / "a" / "b" / "x.parquet"
    seen: list[list[str]] = []

    def write(fh: Any) -> None:
        fh.write(b"payload")
        seen.append(listing(target.parent))  # only the temporary exists while writing

    assert publish(target, write) is True
    assert seen == [["x.parquet.tmp"]]
    assert target.read_bytes() == b"payload"
    assert listing(target.parent) == ["x.parquet"]
    assert syncs.calls == ["fsync", "replace", str(target.parent)]


def test_publish_replaces_an_existing_file_whole(tmp_path):
    target = tmp_path / "x.parquet"
    target.write_bytes(b"old")
    publish(target, lambda fh: fh.write(b"new"), tag="ab12")
    assert target.read_bytes() == b"new"
    assert listing(tmp_path) == ["x.parquet"]


def test_a_check_that_says_no_publishes_nothing(tmp_path):
    target = tmp_path / "x.parquet"
    checked: list[bytes] = []

    def check(tmp: Path) -> bool:
        checked.append(tmp.read_bytes())  # written, synced and closed when checked
        return False

    assert publish(target, lambda fh: fh.write(b"rows"), check=check) is False
    assert checked == [b"rows"]
    assert listing(tmp_path) == []


@pytest.mark.parametrize("stage", ["write", "check"])
def test_an_error_leaves_the_old_file_and_no_temporary(tmp_path, stage):
    target = tmp_path / "x.parquet"
    target.write_bytes(b"old")

    def write(fh: Any) -> None:
        fh.write(b"half")
        if stage == "write":
            raise OSError(errno.ENOSPC, "No space left on device")

    def check(tmp: Path) -> bool:
        raise RuntimeError("the written file differs")

    with pytest.raises((OSError, RuntimeError)):
        publish(target, write, check=check)
    assert target.read_bytes() == b"old"
    assert listing(tmp_path) == ["x.parquet"]


def test_a_failed_rename_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "x.parquet"

    def replace(src: Any, dst: Any) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(publish_module.os, "replace", replace)
    with pytest.raises(OSError, match="I/O error"):
        publish(target, lambda fh: fh.write(b"rows"))
    assert listing(tmp_path) == []


def test_temporary_names_are_beside_the_target_and_tagged():
    target = Path("/r/Quote/date=2026-11-20/n.parquet")
    assert temporary_path(target) == target.with_name("n.parquet.tmp")
    assert temporary_path(target, "ab12") == target.with_name("n.parquet.ab12.tmp")


def test_fsync_dir_accepts_a_folder(tmp_path):
    fsync_dir(tmp_path)
    with pytest.raises(FileNotFoundError):
        fsync_dir(tmp_path / "missing")


def test_write_parquet_publishes_row_groups_with_the_recorded_settings(tmp_path):
    n = ROW_GROUP_ROWS + 10
    table = pa.table(
        {
            "event_symbol": pa.array(["SPY"] * n),
            "recv_ns": pa.array(range(n), pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
        }
    )
    target = tmp_path / "Quote" / "date=2026-11-20" / "f.parquet"
    write_parquet(target, table.schema, table.to_batches(max_chunksize=100_000))
    meta = pq.read_metadata(target)
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [
        ROW_GROUP_ROWS,
        10,
    ]
    recv = meta.row_group(0).column(1)
    assert recv.compression == "ZSTD"
    assert "DELTA_BINARY_PACKED" in recv.encodings
    assert parquet_options(table.schema)["use_dictionary"] == ["event_symbol"]
    assert pq.read_table(target).equals(table)
    assert listing(target.parent) == ["f.parquet"]


def test_write_small_table_replaces_a_bookkeeping_file(tmp_path):
    path = tmp_path / "_sessions" / "s.parquet"
    write_small_table(path, pa.table({"status": ["recording"]}), tag="aa")
    write_small_table(path, pa.table({"status": ["ended"]}), tag="bb")
    assert pq.read_table(path).column("status").to_pylist() == ["ended"]
    assert listing(path.parent) == ["s.parquet"]
