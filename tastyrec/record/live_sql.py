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

Recording into ``s3://…`` (:func:`live_connection` with ``store``): the root is the local
journal dir, whose Parquet files the uploader (:mod:`tastyrec.record.upload`) deletes once their
upload is confirmed (the journal segment first, then the file). A row is then in one of three
places, read in this order, and each view reads every file of the recording exactly once:

0. *The journal tail*, read first (at the snapshot, on the event loop), as above.
1. *Local files*, listed next. Each is hard-linked into a folder of this connection
   (``<journal dir>/_live/<pid>-<token>/``, removed when the connection is garbage-collected): the
   uploader deleting the original later leaves the link, so a query made after an upload still
   reads it. A file gone before its link was made was uploaded (deleted only after that).
2. *The bucket*, listed after the local files (:func:`tastyrec.catalog.location_files`, the
   same listing as ``tastyrec.connect("s3://…")``). Every file deleted locally before step 1 was
   confirmed in the bucket before that, so it is listed here; a name found in both places is
   read once, from its link (same name, same bytes: the uploader keeps a file's name as its key).
   A local file that a compaction in the bucket has already replaced (named in a listed
   compacted file's footer) is left out: the compacted object holds its rows.
3. This recorder's files (from either place) follow the rotation rule: a file is read if it was
   in the snapshot of ``Recorder.files``, or if its segment (in the snapshot) could no longer be
   read in step 0: the uploader deletes a segment only once the file is in the bucket, which the
   listing of step 2, made after, then holds. Otherwise its rows came from its segment.

``_sessions`` and ``_gaps`` are read the same way (links of the local files, the bucket's for
the rest): the live session's row is the local, newest one. Listing the bucket costs one
paginated LIST per event type (and two ranged GETs per compacted file beside a file not yet
uploaded); a store that cannot be listed is an :class:`~tastyrec.objectstore.ObjectStoreError`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import weakref
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Final

import duckdb
import pyarrow as pa

from .. import catalog
from ..exceptions import StorageError
from ..schema import upgrade
from ..storage import layout
from ..storage.journal import read_segment
from ..storage.listing import ObjectPartition, compacted_from, is_compacted
from ..storage.sql import (
    GAPS_VIEW,
    SESSIONS_VIEW,
    _bookkeeping_view,
    connect,
    parquet_source,
    quote_ident,
    quote_str,
    receipt_select,
)
from ..storage.tables import GAP_COLUMNS, SESSION_COLUMNS, bookkeeping_files

if TYPE_CHECKING:
    import pyarrow.fs as pafs

    from ..objectstore import S3Config, S3Location

__all__ = (
    "LIVE_DIR",
    "Tail",
    "live_connection",
    "live_views",
    "read_tail",
    "remove_stale_snapshots",
)

#: the folder of the journal dir holding each live connection's links (recording into s3://)
LIVE_DIR: Final = "_live"


def live_connection(
    root: Path,
    session_id: str,
    written: set[Path],
    segments: Iterable[Path],
    *,
    store: S3Location | None = None,
    fs: pafs.S3FileSystem | None = None,
) -> duckdb.DuckDBPyConnection:
    """A :func:`connect` connection whose views add the rows of ``segments`` not yet in Parquet.

    Args:
        root: the recording folder (with ``store``: the local journal dir).
        session_id: the running recorder's session id.
        written: the Parquet files this recorder had converted at the snapshot.
        segments: its sealed (unconverted) and open journal segments at the snapshot.
        store: the bucket and prefix the recorder uploads into (module docstring); ``None``
            for a local recording.
        fs: with ``store``, the S3 filesystem to list and read with (default: from the AWS
            configuration: short timeouts and no SDK retries to list, on the event loop, and
            the shared filesystem to read at query time).

    Raises:
        StorageError: a file or journal segment cannot be read (``ObjectStoreError``: the
            store could not be listed).
    """
    return live_views(
        root, session_id, written, read_tail(root, written, segments), store=store, fs=fs
    )


@dataclass(frozen=True)
class Tail:
    """What :func:`read_tail` read of a snapshot's journal segments."""

    #: rows of the segments not converted at the snapshot, per event type
    batches: dict[str, list[pa.RecordBatch]]
    #: Parquet files of the segments that could no longer be read (converted since)
    late: list[Path]


def read_tail(root: Path, written: set[Path], segments: Iterable[Path]) -> Tail:
    """Read the snapshot's journal segments (memory-mapped: fast). Call it on the thread that
    appends to the open segments (the recorder's event loop): a record being appended from
    another thread would be a torn tail here.

    Raises:
        StorageError: a segment that exists cannot be read.
    """
    tail, late = _read_tail(root, written, segments)
    return Tail(tail, late)


def live_views(
    root: Path,
    session_id: str,
    written: set[Path],
    snapshot_tail: Tail,
    *,
    store: S3Location | None = None,
    fs: pafs.S3FileSystem | None = None,
) -> duckdb.DuckDBPyConnection:
    """:func:`live_connection` from a :func:`read_tail` of the same snapshot: the listings and
    DuckDB's binding of the views (which reads every file's footer: seconds for many objects),
    blocking; any thread."""
    tail, late = snapshot_tail.batches, snapshot_tail.late
    if store is not None:
        return _store_connection(root, store, session_id, written, late, tail, fs)
    mine = f"-{session_id}-"
    files: dict[str, list[Path]] = defaultdict(list)
    for event_type in catalog.event_types(root):
        for path in catalog.recording_files(root, event_type):
            if mine not in path.name or path in written:
                files[event_type].append(path)
    hidden: dict[Path, set[str]] = {}
    for target in late:  # converted after the snapshot: its rows are in its file now
        folder = target.parent
        if folder not in hidden:
            hidden[folder] = catalog.hidden_files(folder)
        event_type = folder.parent.name
        if target.exists() and target.name not in hidden[folder]:
            if target not in files[event_type]:
                files[event_type].append(target)
    con = connect(root)
    _create_views(con, {t: [str(p) for p in sorted(fs_)] for t, fs_ in files.items()}, tail)
    return con


def _read_tail(
    root: Path, written: set[Path], segments: Iterable[Path]
) -> tuple[dict[str, list[pa.RecordBatch]], list[Path]]:
    """(rows of the segments not converted at the snapshot, per event type; the Parquet files
    of the segments that could no longer be read: converted since, their rows in the file)."""
    tail: dict[str, list[pa.RecordBatch]] = defaultdict(list)
    late: list[Path] = []
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
            late.append(target)
            continue
        day = date.fromisoformat(target.parent.name.removeprefix("date="))
        tail[event_type] += [_with_date(b, day) for b in contents.batches if b.num_rows]
    return tail, late


def _create_views(
    con: duckdb.DuckDBPyConnection,
    files: dict[str, list[str]],
    tail: dict[str, list[pa.RecordBatch]],
) -> None:
    """One view per event type over its ``files`` (local paths or ``s3://`` URLs) and its
    ``tail`` rows."""
    for event_type in sorted(set(files) | set(tail)):
        parts = []
        if files.get(event_type):
            source = receipt_select(con, parquet_source(files[event_type]))
            parts.append(f"SELECT * FROM {source}")
        if tail.get(event_type):
            name = f"_tail_{event_type}"
            con.register(name, _table(tail[event_type]))
            parts.append(f"SELECT * FROM {quote_ident(name)}")
        union = " UNION ALL BY NAME ".join(parts)
        con.execute(f"CREATE OR REPLACE VIEW {quote_ident(event_type)} AS {union}")


# --- recording into object storage --------------------------------------------------------------


def _store_connection(
    root: Path,
    store: S3Location,
    session_id: str,
    written: set[Path],
    late: list[Path],
    tail: dict[str, list[pa.RecordBatch]],
    fs: pafs.S3FileSystem | None,
) -> duckdb.DuckDBPyConnection:
    """The views of a recorder into ``store``: local files (linked), then the bucket's, then
    the tail (module docstring)."""
    remove_stale_snapshots(root)
    snapshot = root / LIVE_DIR / f"{os.getpid()}-{secrets.token_hex(4)}"
    con = duckdb.connect()
    # the links go when the connection does, or now if building the views fails
    remove = weakref.finalize(con, _remove_snapshot, snapshot)
    try:
        _store_views(con, root, store, snapshot, session_id, written, late, tail, fs)
    except BaseException:
        con.close()
        remove()
        raise
    return con


def _store_views(
    con: duckdb.DuckDBPyConnection,
    root: Path,
    store: S3Location,
    snapshot: Path,
    session_id: str,
    written: set[Path],
    late: list[Path],
    tail: dict[str, list[pa.RecordBatch]],
    fs: pafs.S3FileSystem | None,
) -> None:
    from .. import objectstore

    con.execute(f"SET TimeZone = {quote_str('UTC')}")
    # 1. local files, linked before the bucket is listed
    local: dict[str, dict[str, str]] = defaultdict(dict)
    for event_type in catalog.event_types(root):
        for path in catalog.recording_files(root, event_type):
            link = snapshot / event_type / path.parent.name / path.name
            if _link(path, link):
                local[event_type][path.name] = str(link)
    books: dict[str, dict[str, str]] = {}
    for folder in (layout.SESSIONS_DIR, layout.GAPS_DIR):
        books[folder] = {}
        for path in sorted((root / folder).glob("*" + layout.PARQUET_SUFFIX)):
            link = snapshot / folder / path.name
            if _link(path, link):
                books[folder][path.name] = str(link)
    # 2. the bucket, listed after (on the recorder's event loop: bounded, see _listing_fs)
    objectstore.register_duckdb(con, objectstore.shared_filesystem() if fs is None else fs)
    fs = _listing_fs() if fs is None else fs
    remote: dict[str, dict[str, str]] = defaultdict(dict)
    for event_type in catalog.location_event_types(store, fs):
        for url in catalog.location_files(store, event_type, fs=fs):
            remote[event_type][url.rpartition("/")[2]] = url
    # 3. each name once; this session's files by the rotation rule
    mine = f"-{session_id}-"
    keep = {p.name for p in written} | {p.name for p in late}
    files: dict[str, list[str]] = {}
    for event_type in sorted(set(local) | set(remote)):
        here, there = local[event_type], remote[event_type]
        replaced = _compacted_away(fs, here.keys() - there.keys(), there)
        chosen = [
            here[name] if name in here else there[name]
            for name in sorted(here.keys() | there.keys())
            if name not in replaced and (mine not in name or name in keep)
        ]
        if chosen:
            files[event_type] = chosen
    _create_views(con, files, tail)
    for view, folder, columns in (
        (SESSIONS_VIEW, layout.SESSIONS_DIR, SESSION_COLUMNS),
        (GAPS_VIEW, layout.GAPS_DIR, GAP_COLUMNS),
    ):
        listed = {u.rpartition("/")[2]: u for u in map(str, bookkeeping_files(store, folder, fs))}
        listed.update(books[folder])  # the local version is the newest
        _bookkeeping_view(con, view, [listed[n] for n in sorted(listed)], columns)


#: the listing filesystems, one per configuration
_LISTING: dict[S3Config, pafs.S3FileSystem] = {}


def _listing_fs() -> pafs.S3FileSystem:
    """The filesystem that lists the bucket for :meth:`Recorder.connect`, which runs on the
    recorder's event loop: a store that does not answer fails the call within a few seconds
    (``ObjectStoreError``; call again) instead of holding the recording's loop for the SDK's
    retries. Queries read through the shared filesystem, with its usual retries."""
    from ..objectstore import s3_config, s3_filesystem

    config = s3_config()
    fs = _LISTING.get(config)
    if fs is None:
        fs = _LISTING[config] = s3_filesystem(
            config, connect_timeout=2.0, request_timeout=10.0, sdk_attempts=1
        )
    return fs


def _link(path: Path, link: Path) -> bool:
    """Hard-link ``path`` at ``link`` (a copy where links are not supported); ``False`` if
    ``path`` is gone (uploaded and deleted meanwhile)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(path, link)
    except FileNotFoundError:
        return False
    except OSError:  # a file system without hard links: a copy (an open file stays readable)
        try:
            shutil.copyfile(path, link)
        except FileNotFoundError:
            return False
    return True


def _compacted_away(
    fs: pafs.S3FileSystem, names: Iterable[str], listed: dict[str, str]
) -> set[str]:
    """Of ``names`` (local files the bucket does not list), those that a listed compacted
    object replaces: uploaded, then compacted, before the uploader deleted the local copy."""
    names = set(names)
    if not names:
        return set()
    replaced: set[str] = set()
    for name, url in listed.items():
        if is_compacted(name):
            folder = url.removeprefix("s3://").rpartition("/")[0]
            replaced.update(compacted_from(ObjectPartition(fs, folder, ()), name) or ())
    return replaced & names


def _remove_snapshot(snapshot: Path) -> None:
    """Remove a connection's links (and ``_live`` itself when no other is left)."""
    shutil.rmtree(snapshot, ignore_errors=True)
    with contextlib.suppress(OSError):
        snapshot.parent.rmdir()  # only succeeds when empty


def remove_stale_snapshots(root: Path) -> None:
    """Remove the link folders of live connections whose process has ended."""
    base = root / LIVE_DIR
    try:
        entries = list(base.iterdir())
    except FileNotFoundError:
        return
    for entry in entries:
        pid = entry.name.partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _with_date(batch: pa.RecordBatch, day: date) -> pa.RecordBatch:
    column = pa.array([day] * batch.num_rows, pa.date32())
    return batch.append_column(pa.field("date", pa.date32()), column)


def _table(batches: list[pa.RecordBatch]) -> pa.Table:
    """One table of batches whose schemas may differ (segments of other schema versions), with
    the receipt columns of the current version, as the files' views have them."""
    tables = [pa.Table.from_batches([upgrade(b)]) for b in batches]
    return pa.concat_tables(tables, promote_options="permissive")
