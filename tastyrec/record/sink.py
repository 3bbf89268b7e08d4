"""Event batches -> journal segments -> Parquet files: rotation, atomic publication, recovery.

Theory of operation (crash safety)
----------------------------------
1. :meth:`EventSink.append` writes each batch to the open journal segment of its event type and
   New York date (:mod:`tastyrec.storage.journal`); only then does the batch count as recorded.
2. A segment is *sealed* when the rotation policy says so (rows, bytes or age, whichever comes
   first) or when the New York date of receipt changes (a batch straddling midnight is split).
3. :func:`convert_segment` turns a sealed segment into Parquet and publishes it
   (:func:`tastyrec.storage.publish.publish`: ``<name>.parquet.tmp`` beside the target,
   ``fsync``, ``os.replace`` to ``<name>.parquet``, ``fsync`` the folder), and only then deletes
   the segment.
4. :func:`recover` runs the same conversion over segments left by a recorder that died
   (its session lock is free), keeping every intact record and dropping only a torn tail.

Readers (DuckDB, polars, replay) glob ``*.parquet`` only, so they see a file whole or not at all.
If the process dies between steps 3's rename and delete, the Parquet file exists and the next
recovery just deletes the segment: a file name is fixed when its segment is opened, so recovery
is idempotent and never writes a row twice.

Parquet settings: :mod:`tastyrec.storage.parquet`. Rows stay in receipt order.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..exceptions import StorageError
from ..schema import receipt_ns
from ..storage import layout
from ..storage.journal import FsyncPolicy, JournalWriter, SegmentReader
from ..storage.parquet import write_row_groups
from ..storage.publish import publish

__all__ = (
    "EventSink",
    "RotationPolicy",
    "WrittenFile",
    "convert_segment",
    "journal_segments",
    "prune_journal",
    "release_memory",
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RotationPolicy:
    """When a file is closed and a new one started: whichever limit is reached first.

    The defaults make a few files per event type and hour at most, never thousands of tiny ones,
    and bound the journal (uncompressed Arrow, several times the Parquet size) on disk.

    Attributes:
        max_rows: rows per file.
        max_bytes: bytes of uncompressed Arrow data (the journal segment) per file.
        max_age_s: seconds since the file's first row was written.
    """

    max_rows: int = 5_000_000
    max_bytes: int = 512 * 1024 * 1024
    max_age_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.max_rows < 1 or self.max_bytes < 1 or not self.max_age_s > 0:
            raise ValueError(f"rotation limits must be positive: {self!r}")

    def due(self, rows: int, nbytes: int, age_s: float) -> str | None:
        """The reason to rotate now (``"rows"``, ``"bytes"``, ``"age"``), or ``None``."""
        if rows >= self.max_rows:
            return "rows"
        if nbytes >= self.max_bytes:
            return "bytes"
        if age_s >= self.max_age_s:
            return "age"
        return None


@dataclass
class _Open:
    journal: JournalWriter
    day: date
    day_end_ns: int
    opened_s: float


@dataclass
class EventSink:
    """The open journal segment of one event type; decides rotation. Synchronous, no threads.

    Example::

        sink = EventSink(root, arrow_schema(Quote), session_id="3f9a1c2b")
        sealed = sink.append(batch)          # journal paths ready for convert_segment()
        sealed += sink.seal()                # at the end

    Args:
        root: the recording folder.
        schema: the event type's Arrow schema (its ``tastyrec.event_type`` metadata names it).
        session_id: the recording session's id, part of every file name.
        policy: rotation limits.
        fsync: the journal's fsync policy.
        metadata: key-value metadata for each file (provenance), beside the schema's own.
        clock: monotonic seconds, for file age (injectable for tests).
    """

    root: Path
    schema: pa.Schema
    session_id: str
    policy: RotationPolicy = field(default_factory=RotationPolicy)
    fsync: FsyncPolicy = FsyncPolicy.INTERVAL
    metadata: Mapping[str, str] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    _open: _Open | None = field(default=None, init=False, repr=False)
    _seq: int = field(default=0, init=False, repr=False)
    _sealed_bytes: int = field(default=0, init=False, repr=False)

    @property
    def event_type(self) -> str:
        """The event type name (from the schema metadata)."""
        return bytes(self.schema.metadata[b"tastyrec.event_type"]).decode()

    @property
    def journal(self) -> JournalWriter | None:
        """The open segment, if any."""
        return None if self._open is None else self._open.journal

    @property
    def journaled_bytes(self) -> int:
        """Bytes written to every journal segment of this sink so far, the open one included."""
        return self._sealed_bytes + (0 if self._open is None else self._open.journal.bytes)

    def append(self, batch: pa.RecordBatch) -> list[Path]:
        """Journal one batch; returns the segments this sealed (to be converted).

        Raises:
            StorageError: the journal could not be written (the batch is not recorded).
        """
        sealed: list[Path] = []
        while batch.num_rows:
            recv = receipt_ns(batch)
            first_ns = int(recv[0].as_py())
            if self._open is None:
                self._start(first_ns)
            current = self._open
            assert current is not None
            # rows received after this file's New York midnight go to the next day's file
            late = pc.greater_equal(recv, current.day_end_ns)
            if not pc.any(late).as_py():
                current.journal.append(batch)
                break
            # also rows before the file's day (the clock stepped back) stay in this file
            keep = batch.filter(pc.invert(late))
            if keep.num_rows:
                current.journal.append(keep)
            batch = batch.filter(late)
            sealed += self.seal()
            self._start(int(pc.min(receipt_ns(batch)).as_py()))
        sealed += self.rotate_if_due()
        return sealed

    def _start(self, first_ns: int) -> None:
        self._seq += 1
        day = layout.partition_date(first_ns)
        name = layout.file_name(first_ns, self.session_id, self._seq)
        path = layout.journal_path(self.root, self.event_type, day, name)
        meta = dict(self.schema.metadata or {})
        meta.update({k.encode(): v.encode() for k, v in self.metadata.items()})
        journal = JournalWriter(path, self.schema.with_metadata(meta), fsync=self.fsync)
        self._open = _Open(journal, day, layout.day_end_ns(day), self.clock())

    def rotate_if_due(self) -> list[Path]:
        """Seal the open segment if the policy says so (call it on a timer too, for age)."""
        current = self._open
        if current is None:
            return []
        reason = self.policy.due(
            current.journal.rows, current.journal.bytes, self.clock() - current.opened_s
        )
        if reason is None:
            return []
        logger.info("= rotating %s (%s): %s", self.event_type, reason, current.journal.path.name)
        return self.seal()

    def seal(self) -> list[Path]:
        """Close the open segment; returns it (empty if none was open)."""
        current, self._open = self._open, None
        if current is None:
            return []
        self._sealed_bytes += current.journal.bytes
        current.journal.close()
        return [current.journal.path]

    def sync_later(self) -> Callable[[], None] | None:
        """A thread-safe function that ``fsync``\\ s the open segment (see JournalWriter)."""
        return None if self._open is None else self._open.journal.sync_later()


@dataclass(frozen=True)
class WrittenFile:
    """A Parquet file made from a journal segment."""

    path: Path
    event_type: str
    rows: int
    bytes: int
    #: bytes of torn tail dropped from the segment (only after a crash)
    torn_bytes: int = 0
    #: receipt time of the newest row (epoch ns), when known
    last_recv_ns: int | None = None


def convert_segment(root: Path, segment: Path, *, keep_segment: bool = False) -> WrittenFile | None:
    """Turn a sealed (or left-over) journal segment into its Parquet file, then delete it.

    Blocking: run it in a worker thread. Idempotent: if the Parquet file already exists (a crash
    after the rename), the segment is just deleted. A segment with no intact rows makes no file.
    Afterwards the memory the conversion freed goes back to the OS (:func:`release_memory`).
    ``keep_segment``: leave the segment (recording into object storage: the uploader deletes
    it once the file's upload is confirmed, :mod:`tastyrec.record.upload`).

    Returns:
        The file written (or found), or ``None`` when the segment held no rows.

    Raises:
        StorageError: the Parquet file could not be written; the segment is kept.
    """
    try:
        return _convert(root, segment, keep_segment)
    finally:
        release_memory()


def _convert(root: Path, segment: Path, keep_segment: bool = False) -> WrittenFile | None:
    target = layout.parquet_for_journal(root, segment)
    event_type = target.parent.parent.name
    if target.exists():
        meta = pq.read_metadata(target)
        _unlink(segment)
        return WrittenFile(target, event_type, meta.num_rows, target.stat().st_size)
    # one record at a time: a conversion holds a row group in memory, not the segment
    reader = SegmentReader(segment)
    last_ns: list[int] = []

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            if batch.num_rows:
                last_ns.append(int(pc.max(receipt_ns(batch)).as_py()))
            yield batch

    published = False
    try:
        if reader.schema is not None:
            schema = reader.schema
            published = publish(
                target,
                lambda fh: write_row_groups(fh, schema, batches()),
                check=lambda _: reader.rows > 0,
            )
        if reader.torn_bytes:
            logger.warning(
                "dropped a torn tail of %d bytes from %s (intact: %d rows)",
                reader.torn_bytes,
                segment.name,
                reader.rows,
            )
        if not published:
            _unlink(segment)
            return None
    except OSError as exc:
        raise StorageError(
            f"cannot write {str(target)!r}: {exc.strerror or exc}; the data is kept in the "
            f"journal {str(segment)!r}: free space (or fix permissions) and run "
            f"`tastyrec recover {root}`"
        ) from exc
    if not keep_segment:
        _unlink(segment)
    return WrittenFile(
        target, event_type, reader.rows, target.stat().st_size, reader.torn_bytes, max(last_ns)
    )


def release_memory() -> None:
    """Give memory freed after a conversion back to the OS (thread-safe, a few ms).

    Converting a 5 M-row segment allocates and frees a few hundred MiB: row groups in Arrow's
    pool, journal records read as Python ``bytes`` (``malloc`` in the worker thread's arena).
    Freed, that memory is not returned by itself: mimalloc keeps its pages for reuse, and glibc
    returns an arena's free pages only from the top. Measured in a 100-minute recording, RSS
    stepped up by ~230 MiB at the first rotation and stayed there (benchmarks/RESULTS.md). So:
    the Arrow pool releases its unused pages, and on glibc ``malloc_trim(0)`` returns the free
    pages of every arena.
    """
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or ``None`` (macOS, Windows, musl)."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def prune_journal(root: Path) -> None:
    """Remove empty folders of the journal (call only when no sink is writing)."""
    base = root / layout.JOURNAL_DIR
    if not base.is_dir():
        return
    for folder in sorted(base.glob("*/date=*"), reverse=True) + sorted(base.glob("*")):
        if folder.is_dir():
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when empty


def journal_segments(root: Path) -> list[Path]:
    """Every journal segment under ``root``, oldest name first."""
    base = root / layout.JOURNAL_DIR
    if not base.is_dir():
        return []
    return sorted(base.glob("*/date=*/*" + layout.JOURNAL_SUFFIX), key=lambda p: p.name)
