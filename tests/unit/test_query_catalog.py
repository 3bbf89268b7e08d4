"""The shared file lister: committed files only, superseded files hidden, time order, ranges."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tastyrec import catalog
from tastyrec.events import Quote
from tastyrec.exceptions import SchemaError, StorageError
from tastyrec.schema import arrow_schema
from tastyrec.storage import layout

NS = 1_000_000_000
#: 2026-11-20 15:00 UTC (10:00 in New York)
T0 = int(datetime(2026, 11, 20, 15, tzinfo=UTC).timestamp()) * NS


def write(root: Path, recv_ns: list[int], session: str = "aaaa0001", seq: int = 1, **meta) -> Path:
    """A Quote file named like the recorder names it, with rows received at ``recv_ns``."""
    schema = arrow_schema(Quote)
    n = len(recv_ns)
    cols = {}
    for f in schema:
        if f.name == "recv_ns":
            cols[f.name] = pa.array([t // 1000 for t in recv_ns], f.type)
        elif f.name == "recv_epoch_ns":
            cols[f.name] = pa.array(list(recv_ns), f.type)
        elif pa.types.is_timestamp(f.type):
            cols[f.name] = pa.array([0] * n, pa.int64()).cast(f.type)
        elif pa.types.is_string(f.type):
            cols[f.name] = pa.array(["SPY"] * n, f.type)
        else:
            cols[f.name] = pa.array([1] * n, pa.int64()).cast(f.type)
    extra = {k.encode(): v.encode() for k, v in meta.items()}
    table = pa.table(cols, schema=schema.with_metadata({**schema.metadata, **extra}))
    day = layout.partition_date(recv_ns[0])
    path = layout.parquet_path(root, "Quote", day, layout.file_name(recv_ns[0], session, seq))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def test_lists_committed_files_in_time_order_across_partitions(tmp_path):
    next_day = T0 + 24 * 3600 * NS
    b = write(tmp_path, [T0 + 5 * NS], "bbbb0002", 1)
    a = write(tmp_path, [T0 + 1 * NS], "ffff0001", 7)
    c = write(tmp_path, [next_day], "aaaa0001", 2)
    folder = a.parent
    # temporaries of the sink, of the bookkeeping writer and of compaction; a hidden file
    (folder / (a.name + ".tmp")).write_bytes(b"partial")
    (folder / (a.name + ".1a2b3c4d.tmp")).write_bytes(b"partial")
    (folder / "x-compact1234abcd-00001.parquet.tmp").write_bytes(b"partial")
    (folder / ".hidden.parquet").write_bytes(b"")
    (tmp_path / "_journal" / "Quote" / "date=2026-11-20").mkdir(parents=True)
    (tmp_path / "_sessions").mkdir()
    assert catalog.recording_files(tmp_path, "Quote") == [a, b, c]
    assert catalog.event_types(tmp_path) == ["Quote"]
    assert catalog.recording_files(tmp_path, "Trade") == []
    assert [p.day for p in catalog.partitions(tmp_path, "Quote")] == [
        date(2026, 11, 20),
        date(2026, 11, 21),
    ]


def test_date_and_time_ranges(tmp_path):
    early = write(tmp_path, [T0, T0 + 10 * NS], "aaaa0001", 1)
    late = write(tmp_path, [T0 + 60 * NS, T0 + 70 * NS], "aaaa0001", 2)
    tomorrow = write(tmp_path, [T0 + 24 * 3600 * NS], "aaaa0001", 3)
    files = catalog.recording_files
    assert files(tmp_path, "Quote", start=date(2026, 11, 21)) == [tomorrow]
    assert files(tmp_path, "Quote", end=date(2026, 11, 20)) == [early, late]
    at = datetime.fromtimestamp((T0 + 30 * NS) / NS, UTC)
    # footer statistics: every row of `early` came before `at`
    assert files(tmp_path, "Quote", start=at) == [late, tomorrow]
    # the file name: `late` starts after `at`
    assert files(tmp_path, "Quote", end=at) == [early]
    naive = at.astimezone(layout.MARKET_TZ).replace(tzinfo=None)  # naive means New York time
    assert files(tmp_path, "Quote", start=naive) == [late, tomorrow]
    assert files(tmp_path, "Quote", start=naive, end=naive) == []
    # the same instant read as UTC would be five hours later: `late` ends before it
    assert files(tmp_path, "Quote", start=at.replace(tzinfo=None)) == [tomorrow]


def test_files_replaced_by_a_compacted_file_are_hidden(tmp_path):
    a = write(tmp_path, [T0], "aaaa0001", 1)
    b = write(tmp_path, [T0 + NS], "aaaa0001", 2)
    c = write(tmp_path, [T0 + 2 * NS], "aaaa0001", 3)
    merged = write(
        tmp_path,
        [T0, T0 + NS],
        "compact0badf00d",
        1,
        **{"tastyrec.compacted_from": json.dumps([a.name, b.name])},
    )
    assert catalog.is_compacted(merged.name) and not catalog.is_compacted(a.name)
    # both old and new exist on disk (between publish and delete): only the new one is listed
    assert catalog.recording_files(tmp_path, "Quote") == [merged, c]
    assert catalog.hidden_files(a.parent) == {a.name, b.name}


def test_a_malformed_replacement_list_is_a_clear_error(tmp_path):
    write(tmp_path, [T0], "compact00000001", 1, **{"tastyrec.compacted_from": "{not json"})
    with pytest.raises(StorageError, match="malformed tastyrec.compacted_from"):
        catalog.recording_files(tmp_path, "Quote")


def test_names_are_checked_and_missing_roots_are_empty(tmp_path):
    with pytest.raises(SchemaError):
        catalog.recording_files(tmp_path, "../etc")
    assert catalog.event_types(tmp_path / "nope") == []
    assert catalog.recording_files(tmp_path / "nope", "Quote") == []


def test_first_receipt_time_comes_from_the_name():
    name = layout.file_name(T0 + 123, "aaaa0001", 1) + ".parquet"
    assert catalog.first_recv_ns(name) == T0 + 123
    assert catalog.first_recv_ns("something-else.parquet") is None
