"""SQL over a running recorder: each view covers the Parquet files *and* the journal tail.

:meth:`tastyrec.Recorder.connect` takes a snapshot on the event loop (what this recorder has
converted, its sealed and open journal segments) and hands it to :func:`live_connection`.

No duplicates across a rotation: the recorder's converter thread renames a segment's Parquet
file into place, then deletes the segment, then lists the file in ``Recorder.files`` (under its
lock). A segment's rows are therefore read from exactly one place:

* its file is in the snapshot of ``Recorder.files``: the file (the segment is gone);
* else the segment can still be read: the segment (and this session's files outside the
  snapshot are left out of the Parquet list, even if the rename already happened);
* else it was converted after the snapshot: its file, which exists (renamed before the delete)
  unless a compaction already replaced it by a file the listing holds.

Other sessions' files come from :mod:`tastyrec.catalog`. The result is a snapshot: call
``Recorder.connect()`` again for newer rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa

from .. import catalog
from ..exceptions import StorageError
from ..schema import upgrade
from ..storage import layout
from ..storage.journal import read_segment
from ..storage.sql import connect, parquet_source, quote_ident, receipt_select

__all__ = ("live_connection",)


def live_connection(
    root: Path, session_id: str, written: set[Path], segments: Iterable[Path]
) -> duckdb.DuckDBPyConnection:
    """A :func:`connect` connection whose views add the rows of ``segments`` not yet in Parquet.

    Args:
        root: the recording folder.
        session_id: the running recorder's session id.
        written: the Parquet files this recorder had converted at the snapshot.
        segments: its sealed (unconverted) and open journal segments at the snapshot.
    """
    mine = f"-{session_id}-"
    files: dict[str, list[Path]] = defaultdict(list)
    hidden: dict[Path, set[str]] = {}
    for event_type in catalog.event_types(root):
        for path in catalog.recording_files(root, event_type):
            if mine not in path.name or path in written:
                files[event_type].append(path)
    tail: dict[str, list[pa.RecordBatch]] = defaultdict(list)
    for segment in segments:
        target = layout.parquet_for_journal(root, segment)
        event_type = target.parent.parent.name
        if target in written:
            continue
        try:
            contents = read_segment(segment)
        except StorageError:
            if segment.exists():
                raise
            # converted after the snapshot: its rows are in its file now
            folder = target.parent
            if folder not in hidden:
                hidden[folder] = catalog.hidden_files(folder)
            if target.exists() and target.name not in hidden[folder]:
                if target not in files[event_type]:
                    files[event_type].append(target)
            continue
        day = date.fromisoformat(target.parent.name.removeprefix("date="))
        tail[event_type] += [_with_date(b, day) for b in contents.batches if b.num_rows]
    con = connect(root)
    for event_type in sorted(set(files) | set(tail)):
        parts = []
        if files[event_type]:
            source = receipt_select(con, parquet_source(sorted(files[event_type])))
            parts.append(f"SELECT * FROM {source}")
        if tail[event_type]:
            name = f"_tail_{event_type}"
            con.register(name, _table(tail[event_type]))
            parts.append(f"SELECT * FROM {quote_ident(name)}")
        union = " UNION ALL BY NAME ".join(parts)
        con.execute(f"CREATE OR REPLACE VIEW {quote_ident(event_type)} AS {union}")
    return con


def _with_date(batch: pa.RecordBatch, day: date) -> pa.RecordBatch:
    column = pa.array([day] * batch.num_rows, pa.date32())
    return batch.append_column(pa.field("date", pa.date32()), column)


def _table(batches: list[pa.RecordBatch]) -> pa.Table:
    """One table of batches whose schemas may differ (segments of other schema versions), with
    the receipt columns of the current version, as the files' views have them."""
    tables = [pa.Table.from_batches([upgrade(b)]) for b in batches]
    return pa.concat_tables(tables, promote_options="permissive")
