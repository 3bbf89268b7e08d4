"""Which committed Parquet files make up a recording: the one file lister every reader uses.

:func:`connect`, :func:`scan`, ``tastyrec info``, ``tastyrec compact`` and replay all list files
here, so they agree on what a recording holds::

    <root>/<EventType>/date=YYYY-MM-DD/<name>.parquet

What is listed, and what is not:

* **Committed files only.** A file counts once it has its final ``*.parquet`` name: the sink and
  compaction write ``*.parquet.tmp`` (the bookkeeping tables ``*.parquet.<hex>.tmp``) and rename.
  Temporary names never end in ``.parquet``; names starting with ``.`` are ignored too.
* **Not superseded.** A compacted file (name ``<stamp>Z-compact<hex>-<seq>.parquet``, see
  :mod:`tastyrec.query` compaction) names the files it replaces in its key-value metadata
  (:data:`COMPACTED_FROM_KEY`, a JSON list of file names in the same folder). Those files are
  hidden from the moment the compacted file exists until compaction deletes them, so a listing
  holds the old files or the new one, never both and never neither.
* **Time order.** Files are sorted by the UTC receipt time of their first row (the start of every
  name), then by name. Rows inside a recorder's file are in receipt order; rows inside a
  compacted file are sorted by symbol, then receipt time, so files of one partition may overlap
  in time: a reader that needs one global time order merges or sorts rows itself.

Listing reads file names, plus the footer of each compacted file (a few kB). It never opens the
journal (``_journal/``) or the bookkeeping folders (``_sessions/``, ``_gaps/``).

**Interrupted compactions.** A compacted file is published (renamed to its final name) only
after it was verified, and the files it replaces are deleted right after. A compaction killed
between the two leaves both, which tastyrec's readers never show together (above) but raw
``read_parquet`` globs would count twice. So listing a partition *finishes* such a compaction:
replaced files still present beside their published compacted file are deleted (roll forward).
The compacted file's ``COMPACTED_FROM_KEY`` is the intent record: it is written before the file
becomes visible, atomically with it. A compaction killed *before* publishing left only a
``*.parquet.tmp`` (never listed, never globbed); ``tastyrec compact`` removes it (roll back).
Every tastyrec command that opens a recording -- :func:`connect`, :func:`scan`, ``info``,
``sql``, replay, ``compact`` -- lists it here, so each one repairs what it lists.

Times (``start``, ``end``) follow the one rule of :mod:`tastyrec._time`: naive means New York
time, a date is a whole New York day (a date ``end`` included). Locations go through
:func:`tastyrec._location.recording_path` (an ``s3://`` URL is refused, never taken for a folder).

Which files of a partition are current (the compaction rule above, and finishing an interrupted
compaction) is decided once, for local folders and object storage alike, by
:func:`tastyrec.storage.listing.current_files`; this module walks the recording around it.

This module imports the standard library, pyarrow and :mod:`tastyrec.storage.layout` and
:mod:`~tastyrec.storage.listing` only (no DuckDB, no polars), so every reader can use it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from . import _time
from ._location import existing_recording, recording_path, url_scheme
from ._time import TimeLike
from .exceptions import RecordingNotFound, UnsupportedLocation
from .storage import layout, listing
from .storage.listing import COMPACT_SESSION_PREFIX, COMPACTED_FROM_KEY, is_compacted

if TYPE_CHECKING:
    import pyarrow.fs as pafs

    from .objectstore import S3Location

__all__ = (
    "COMPACTED_FROM_KEY",
    "COMPACT_SESSION_PREFIX",
    "Partition",
    "compacted_from",
    "event_types",
    "existing_location",
    "finish_compactions",
    "first_recv_ns",
    "hidden_files",
    "is_compacted",
    "location_event_types",
    "location_files",
    "partition_files",
    "partitions",
    "reading_location",
    "recording_files",
    "s3_recording_files",
)

_TYPE_NAME = re.compile(r"^[A-Z][A-Za-z0-9]{0,63}$")
_STAMP = re.compile(r"^(\d{8}T\d{6})\.(\d{9})Z-")
_NS: Final = 1_000_000_000
#: a timestamp unit -> nanoseconds
_UNIT_NS: Final = {"ns": 1, "us": 1_000, "ms": 1_000_000}
#: listing again when a listed file vanished under us (a compaction finished meanwhile)
_LIST_ATTEMPTS: Final = 5


@dataclass(frozen=True)
class Partition:
    """One ``<root>/<EventType>/date=YYYY-MM-DD`` folder."""

    event_type: str
    day: date
    path: Path


def event_types(root: str | os.PathLike[str]) -> list[str]:
    """Names of the event types recorded under ``root`` (folders with a ``date=`` partition).

    Sorted by name. Bookkeeping folders (``_journal``, ``_sessions``, ``_gaps``) are not types.
    """
    base = recording_path(root)
    if not base.is_dir():
        return []
    return sorted(
        entry.name
        for entry in os.scandir(base)
        if entry.is_dir() and _TYPE_NAME.match(entry.name) and _date_dirs(Path(entry.path))
    )


def _date_dirs(folder: Path) -> list[tuple[date, Path]]:
    out = []
    for entry in os.scandir(folder):
        if entry.is_dir() and entry.name.startswith("date="):
            try:
                day = date.fromisoformat(entry.name.removeprefix("date="))
            except ValueError:
                continue  # not ours: skip, like readers' ``date=*`` globs would not
            out.append((day, Path(entry.path)))
    return sorted(out)


def partitions(
    root: str | os.PathLike[str],
    event_type: str,
    *,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
) -> list[Partition]:
    """The date partitions of one event type, oldest first, optionally within a time range.

    Args:
        root: the recording folder.
        event_type: an event type name (``"Quote"``).
        start: keep the partitions that may hold rows received at or after this
            (:mod:`tastyrec._time`: a date is its New York day, naive times New York time).
        end: keep the partitions that may hold rows received before this (a date: up to and
            including that New York day).

    Raises:
        SchemaError: ``event_type`` is not a plain event type name.
        ValueError: ``start`` or ``end`` is text that is not a time.
    """
    folder = recording_path(root) / layout.check_type_name(event_type)
    lo, hi = _days(_time.start_ns(start), _time.end_ns(end))
    if not folder.is_dir():
        return []
    return [
        Partition(event_type, day, path)
        for day, path in _date_dirs(folder)
        if (lo is None or day >= lo) and (hi is None or day <= hi)
    ]


def recording_files(
    root: str | os.PathLike[str],
    event_type: str,
    *,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
) -> list[Path]:
    """The committed, current Parquet files of one event type, in time order.

    This signature is stable: the replay streamer relies on it.

    Args:
        root: the recording folder (``tastyrec record --out``).
        event_type: an event type name, e.g. ``"Quote"`` (``Quote.__name__``).
        start: keep the files that may hold rows received at or after this: a datetime (naive
            means New York time), a date (its New York midnight), ISO text or epoch ns -- the
            rule of :mod:`tastyrec._time`.
        end: keep the files that may hold rows received before this (a date: up to and
            including that New York day).

    Returns:
        Paths (under ``root``) sorted by the receipt time of each file's first row, then name.
        The list may hold rows outside the range (whole files are listed): filter rows on
        ``recv_ns`` to be exact. Empty if nothing was recorded.

    Raises:
        SchemaError: ``event_type`` is not a plain event type name.
        StorageError: a compacted file's footer cannot be read.
        ValueError: ``start`` or ``end`` is text that is not a time.
    """
    start_ns, end_ns = _time.start_ns(start), _time.end_ns(end)
    parts = partitions(root, event_type, start=start_ns, end=end_ns)
    first_day = None if start_ns is None else layout.partition_date(start_ns)
    files: list[Path] = []
    for part in parts:
        for path in partition_files(part.path):
            first = first_recv_ns(path.name)
            if end_ns is not None and first is not None and first >= end_ns:
                continue
            if start_ns is not None and part.day == first_day and _ends_before(path, start_ns):
                continue
            files.append(path)
    return sorted(files, key=_time_key)


def partition_files(folder: Path) -> list[Path]:
    """The current committed files of one partition folder (unsorted semantics: by name).

    Superseded files (named by a compacted file) are left out. If a listed file vanishes while
    listing (a compaction deleted it), the folder is listed again.

    Raises:
        StorageError: a compacted file's footer cannot be read.
    """
    for _ in range(_LIST_ATTEMPTS):
        visible, _hidden = _list_partition(folder)
        if all(p.exists() for p in visible):
            return visible
    return visible


def _list_partition(folder: Path) -> tuple[list[Path], set[str]]:
    """(current files, names hidden by compacted files) of one partition folder."""
    visible, hidden = listing.current_files(listing.LocalPartition(folder))
    return [folder / n for n in visible], hidden


def finish_compactions(root: str | os.PathLike[str]) -> None:
    """Finish every compaction of the recording at ``root`` that was interrupted between
    publishing its merged file and deleting the files it replaces (what listing a partition
    does for that partition): raw ``read_parquet`` globs then see each row once again."""
    base = recording_path(root)
    for name in event_types(base):
        for _, folder in _date_dirs(base / name):
            _list_partition(folder)


def hidden_files(folder: Path) -> set[str]:
    """Names in ``folder`` that compacted files replace (possibly already deleted)."""
    return _list_partition(folder)[1]


def compacted_from(path: Path) -> list[str] | None:
    """The names a compacted file replaces (``[]`` if none are recorded; ``None`` if gone).

    Raises:
        StorageError: the footer is unreadable or its list is malformed.
    """
    return listing.compacted_from(listing.LocalPartition(path.parent), path.name)


def first_recv_ns(name: str) -> int | None:
    """Epoch ns of the first row's receipt time encoded in a file name, or ``None``."""
    match = _STAMP.match(name)
    if match is None:
        return None
    stamp = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    return int(stamp.timestamp()) * _NS + int(match.group(2))


def _time_key(path: Path) -> tuple[int, str]:
    first = first_recv_ns(path.name)
    return (first if first is not None else 1 << 62, path.name)


def _ends_before(path: Path, start_ns: int) -> bool:
    """Whether every row of ``path`` was received before ``start_ns`` (from the footer stats)."""
    try:
        import pyarrow.parquet as pq

        meta = pq.read_metadata(path)
        # the Parquet leaf column (nested columns before it have several leaves each)
        leaves = [meta.schema.column(i) for i in range(meta.num_columns)]
        index = next((i for i, c in enumerate(leaves) if c.path == "recv_ns"), -1)
        if index < 0:
            return False
        recv_type = meta.schema.to_arrow_schema().field("recv_ns").type
        scale = _UNIT_NS.get(getattr(recv_type, "unit", ""))
        if scale is None or leaves[index].physical_type != "INT64":
            return False
        newest = None
        for rg in range(meta.num_row_groups):
            stats = meta.row_group(rg).column(index).statistics
            if stats is None or not stats.has_min_max:
                return False
            # the raw int64, not `stats.max`: pyarrow hands nanoseconds to Python through pandas
            # a microsecond column is floored (schema version 2): up to its last nanosecond
            value = int(stats.max_raw) * scale + scale - 1
            newest = value if newest is None else max(newest, value)
    except (OSError, ValueError):
        return False  # list it; the reader reports what is wrong with it
    return newest is not None and newest < start_ns


def _days(start_ns: int | None, end_ns: int | None) -> tuple[date | None, date | None]:
    """The New York dates of the first and last nanosecond of ``[start_ns, end_ns)``."""
    lo = None if start_ns is None else layout.partition_date(start_ns)
    hi = None if end_ns is None else layout.partition_date(end_ns - 1)
    return lo, hi


def reading_location(location: str | os.PathLike[str] | S3Location) -> Path | S3Location:
    """A recording location to read: a local folder (:func:`recording_path`) or an
    ``s3://bucket/prefix`` (:class:`~tastyrec.objectstore.S3Location`).

    Raises:
        UnsupportedLocation: a URL of another scheme, a bad bucket name or key prefix, or
            credentials in the URL (never repeated).
    """
    from .objectstore import S3Location, parse_location

    if isinstance(location, S3Location):
        return location
    scheme = url_scheme(os.fspath(location)) if isinstance(location, str) else None
    if scheme not in ("s3", "s3a"):
        return recording_path(location)
    try:
        parsed = parse_location(location)
    except ValueError as exc:
        raise UnsupportedLocation(str(exc)) from None
    assert isinstance(parsed, S3Location)
    return parsed


def existing_location(location: str | os.PathLike[str] | S3Location) -> Path | S3Location:
    """:func:`reading_location`, which must hold a recording: a local folder that exists
    (:func:`existing_recording`), or a key prefix with at least one key under it (one LIST
    request of at most one key).

    Raises:
        UnsupportedLocation: see :func:`reading_location`.
        RecordingNotFound: nothing at ``location``.
        ObjectStoreError: the store could not be asked (network, permissions).
    """
    loc = reading_location(location)
    if isinstance(loc, Path):
        return existing_recording(loc)
    from .objectstore import prefix_exists

    if prefix_exists(loc):
        return loc
    raise RecordingNotFound(
        f"no recording at {loc.url}: there is no key under {loc.url}/; give the bucket and "
        "prefix `tastyrec record --out` wrote to (and the endpoint in AWS_ENDPOINT_URL for an "
        "S3-compatible service)",
        loc.url,
    )


# -- object storage ----------------------------------------------------------------------------
#
# The same listing over ``s3://bucket/prefix`` (:class:`tastyrec.objectstore.S3Location`):
# :func:`tastyrec.objectstore.list_parquet` walks key prefixes one level at a time, naming the
# ``date=`` partitions of the window directly, so a query for a day lists that day's prefix,
# never the bucket. Compacted files' footers are read through the same filesystem (two ranged
# GETs each); replaced objects still present are deleted (roll forward), as on disk. Staging
# objects of uploads (``.<name>.<token>.uploading``) do not end in ``.parquet``: never listed.


def location_event_types(root: Path | S3Location, fs: pafs.S3FileSystem | None = None) -> list[str]:
    """:func:`event_types` of a local folder or an ``s3://`` location.

    Raises:
        ObjectStoreError: the store could not be listed.
    """
    if isinstance(root, Path):
        return event_types(root)
    import pyarrow.fs as pafs

    from .objectstore import _dirs, _error, s3_filesystem

    fs = s3_filesystem() if fs is None else fs
    try:
        return sorted(
            i.base_name
            for i in _dirs(fs, root.path)
            if i.type == pafs.FileType.Directory and _TYPE_NAME.match(i.base_name)
        )
    except OSError as exc:
        raise _error("listing", root.url, exc) from None


def location_files(
    root: Path | S3Location,
    event_type: str,
    *,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    fs: pafs.S3FileSystem | None = None,
) -> list[str]:
    """:func:`recording_files` of a local folder or an ``s3://`` location, as text: local paths,
    or ``s3://bucket/key`` URLs (what DuckDB, after
    :func:`tastyrec.objectstore.register_duckdb`, and polars read). Same order, same rules.

    Raises:
        SchemaError: ``event_type`` is not a plain event type name.
        StorageError: a compacted file's footer cannot be read; ObjectStoreError: listing failed.
    """
    if isinstance(root, Path):
        return [str(p) for p in recording_files(root, event_type, start=start, end=end)]
    return [f"s3://{p}" for p in s3_recording_files(root, event_type, start=start, end=end, fs=fs)]


def s3_recording_files(
    root: S3Location,
    event_type: str,
    *,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    fs: pafs.S3FileSystem | None = None,
) -> list[str]:
    """The committed, current Parquet objects of one event type under ``root``, in time order,
    as ``bucket/key`` paths (what pyarrow's S3 filesystem takes). See :func:`recording_files`.

    Raises:
        SchemaError: ``event_type`` is not a plain event type name.
        StorageError: a compacted file's footer cannot be read; ObjectStoreError: listing failed.
    """
    from .objectstore import list_parquet, s3_filesystem

    fs = s3_filesystem() if fs is None else fs
    start_ns, end_ns = _time.start_ns(start), _time.end_ns(end)
    lo, hi = _days(start_ns, end_ns)
    listed = list_parquet(fs, root, [layout.check_type_name(event_type)], lo, hi)
    folders: dict[str, list[str]] = {}
    for info in listed:
        folder, _, name = info.path.rpartition("/")
        if not name.startswith("."):
            folders.setdefault(folder, []).append(name)
    files: list[str] = []
    for folder, names in folders.items():
        visible, _hidden = listing.current_files(listing.ObjectPartition(fs, folder, tuple(names)))
        for name in visible:
            first = first_recv_ns(name)
            if end_ns is not None and first is not None and first >= end_ns:
                continue
            files.append(f"{folder}/{name}")
    return sorted(files, key=lambda p: _time_key(Path(p)))
