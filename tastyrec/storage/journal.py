"""Write-ahead journal: append-only segments of Arrow record batches, each checksummed.

Theory of operation
-------------------
Every batch the recorder receives is appended to the open segment of its event type *before* it
counts as recorded. A segment is one file::

    b"TRJ1"                                   magic
    record(schema message)                    the Arrow schema, with the file's metadata
    record(batch message) ...                 one per appended batch

    record = u64 little-endian length | u32 crc32 of payload | payload (an Arrow IPC message)

Each record is written with a single ``write`` of the whole frame, so after ``kill -9`` the file
holds every record the process finished writing (the OS page cache survives the process). After a
power loss it holds at least every record written before the last ``fsync``; beyond that the tail
may be missing, cut short or zero-filled. :func:`read_segment` keeps every record whose length and
checksum are intact and stops at the first that is not — the *torn tail*, reported, never fatal.

``fsync`` policy (:class:`FsyncPolicy`):

* ``always`` — ``fsync`` after every append: nothing acknowledged is lost, even on power loss.
* ``interval`` — the recorder calls :meth:`JournalWriter.sync` on a timer (default every second):
  a crash of the process loses nothing written; a power loss loses at most the last interval.
* ``never`` — the OS writes back when it likes: safe against a killed process, not power loss.

Segments are written by the recorder and turned into Parquet by :mod:`tastyrec.record.sink`,
then deleted; SQL over a running recording (:mod:`tastyrec.record.live_sql`) reads them too. This
module imports pyarrow and the standard library only.
"""

from __future__ import annotations

import enum
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.ipc as ipc

from ..exceptions import StorageError
from .publish import fsync_dir

__all__ = (
    "FsyncPolicy",
    "JournalWriter",
    "SegmentContents",
    "SegmentReader",
    "read_segment",
)

MAGIC: Final = b"TRJ1"
_HEADER = struct.Struct("<QI")
#: refuse records larger than this when reading (a corrupt length must not allocate 2**63 bytes)
MAX_RECORD_BYTES: Final = 1 << 31


class FsyncPolicy(enum.Enum):
    """When journal appends are forced to stable storage (see the module docstring)."""

    ALWAYS = "always"
    INTERVAL = "interval"
    NEVER = "never"


def _frame(payload: pa.Buffer | bytes) -> bytes:
    data = memoryview(payload)
    return _HEADER.pack(len(data), zlib.crc32(data)) + bytes(data)


class JournalWriter:
    """Appends record batches of one schema to a new segment file.

    Example::

        journal = JournalWriter(path, arrow_schema(Quote), fsync=FsyncPolicy.INTERVAL)
        journal.append(batch)      # durable against kill -9 once this returns
        journal.sync()             # durable against power loss
        journal.close()

    Raises:
        StorageError: the segment cannot be created or written (disk full, permissions...).
    """

    def __init__(self, path: Path, schema: pa.Schema, *, fsync: FsyncPolicy) -> None:
        self.path = path
        self.schema = schema
        self.fsync = fsync
        #: rows appended
        self.rows = 0
        #: bytes in the file
        self.bytes = 0
        self._dirty = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise _storage_error("cannot create the journal segment", path, exc) from exc
        self._write(MAGIC + _frame(schema.serialize()))
        if fsync is not FsyncPolicy.NEVER:
            self.sync()
            try:
                fsync_dir(path.parent)
            except OSError as exc:
                raise _storage_error("cannot sync the journal folder", path.parent, exc) from exc

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            raise StorageError(f"journal segment {str(self.path)!r} is closed")
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as exc:
            raise _storage_error("cannot write the journal", self.path, exc) from exc
        self.bytes += len(data)
        self._dirty = True

    def append(self, batch: pa.RecordBatch) -> None:
        """Append one batch (one ``write``); with ``always``, also ``fsync`` it."""
        if batch.schema != self.schema:
            raise StorageError(
                f"batch schema does not match the journal segment {str(self.path)!r}"
            )
        self._write(_frame(batch.serialize()))
        self.rows += batch.num_rows
        if self.fsync is FsyncPolicy.ALWAYS:
            self.sync()

    def sync(self) -> None:
        """Force what was appended to stable storage (a no-op when nothing new was written)."""
        if self._fd is None or not self._dirty:
            return
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise _storage_error("cannot sync the journal", self.path, exc) from exc
        self._dirty = False

    def sync_later(self) -> Callable[[], None] | None:
        """A function that syncs what was appended so far, safe to run in another thread.

        It works on a duplicate of the file descriptor, so the segment may be appended to or
        closed meanwhile. ``None`` when there is nothing new to sync.
        """
        if self._fd is None or not self._dirty:
            return None
        fd = os.dup(self._fd)
        self._dirty = False
        path = self.path

        def sync() -> None:
            try:
                os.fsync(fd)
            except OSError as exc:
                raise _storage_error("cannot sync the journal", path, exc) from exc
            finally:
                os.close(fd)

        return sync

    def close(self) -> None:
        """Sync (unless the policy is ``never``) and close the segment."""
        if self._fd is None:
            return
        try:
            if self.fsync is not FsyncPolicy.NEVER:
                self.sync()
        finally:
            os.close(self._fd)
            self._fd = None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._fd is None


@dataclass
class SegmentContents:
    """What :func:`read_segment` found in a segment."""

    schema: pa.Schema | None
    batches: list[pa.RecordBatch]
    #: bytes after the last intact record (a torn tail), 0 for a clean segment
    torn_bytes: int

    @property
    def rows(self) -> int:
        """Rows in the intact batches."""
        return sum(b.num_rows for b in self.batches)


def _intact(length: int, crc: int, payload: memoryview | bytes | None) -> bool:
    """Whether a record's header and payload are whole and match their checksum."""
    return (
        0 < length <= MAX_RECORD_BYTES
        and payload is not None
        and len(payload) == length
        and zlib.crc32(payload) == crc
    )


def _records(data: memoryview) -> Iterator[tuple[int, memoryview]]:
    """(end offset, payload) of every intact record; stops at the first damaged one."""
    pos = len(MAGIC)
    while pos + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, pos)
        start = pos + _HEADER.size
        end = start + length
        payload = data[start:end] if 0 < length <= MAX_RECORD_BYTES else None
        if not _intact(length, crc, payload):
            return
        assert payload is not None
        yield end, payload
        pos = end


class SegmentReader:
    """The intact batches of a journal segment, one record at a time (for conversion).

    Unlike :func:`read_segment`, which maps the whole segment, this reads each record into its
    own buffer, so converting a segment holds one row group in memory, not the segment (a
    mapped segment's pages count in RSS until it is unmapped). Same rules: it stops at the
    first damaged record, and :attr:`torn_bytes` is what follows the last intact one.

    Example usage::

        reader = SegmentReader(path)
        for batch in reader:  # after the schema record
            ...
        print(reader.rows, reader.torn_bytes)

    Raises:
        StorageError: the file cannot be read, or it is not a journal segment.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        #: the segment's schema (``None``: killed before it was written)
        self.schema: pa.Schema | None = None
        #: rows in the intact batches read so far
        self.rows = 0
        #: bytes after the last intact record, once iterated to the end
        self.torn_bytes = 0
        try:
            self._fh = open(path, "rb")
            self._size = os.fstat(self._fh.fileno()).st_size
            magic = self._fh.read(len(MAGIC))
        except OSError as exc:
            raise _storage_error("cannot read the journal segment", path, exc) from exc
        self._good = len(magic)
        if len(magic) < len(MAGIC):  # created, killed before the header was written
            self._fh.close()
            self.torn_bytes = self._size
            return
        if magic != MAGIC:
            self._fh.close()
            raise StorageError(f"{str(path)!r} is not a tastyrec journal segment")
        first = self._next()
        if first is not None:
            try:
                self.schema = ipc.read_schema(pa.py_buffer(first))
            except (pa.ArrowException, ValueError):
                self.schema = None
            else:
                self._good = self._fh.tell()
        if self.schema is None:
            self._finish()

    def _next(self) -> bytes | None:
        try:
            header = self._fh.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return None
            length, crc = _HEADER.unpack(header)
            payload = self._fh.read(length) if 0 < length <= MAX_RECORD_BYTES else None
        except OSError as exc:
            raise _storage_error("cannot read the journal segment", self.path, exc) from exc
        return payload if _intact(length, crc, payload) else None

    def _finish(self) -> None:
        self.torn_bytes = self._size - self._good
        self._fh.close()

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        if self.schema is None or self._fh.closed:
            return
        try:
            while (payload := self._next()) is not None:
                try:
                    batch = ipc.read_record_batch(pa.py_buffer(payload), self.schema)
                    batch.validate(full=True)
                except (pa.ArrowException, ValueError):
                    break  # checksum intact but not Arrow: treat like a torn tail
                self._good = self._fh.tell()
                self.rows += batch.num_rows
                yield batch
        finally:
            self._finish()


def read_segment(path: Path) -> SegmentContents:
    """Every intact batch of a journal segment, and how many bytes of torn tail follow them.

    Raises:
        StorageError: the file cannot be read, or it is not a journal segment.
    """
    try:
        size = path.stat().st_size
        # mapped, not read: batches are zero-copy views, memory is the OS page cache's
        raw = pa.memory_map(str(path)).read_buffer() if size else pa.py_buffer(b"")
    except OSError as exc:
        raise _storage_error("cannot read the journal segment", path, exc) from exc
    if size < len(MAGIC):  # created, killed before the header was written
        return SegmentContents(None, [], size)
    data = memoryview(raw)
    if bytes(data[: len(MAGIC)]) != MAGIC:
        raise StorageError(f"{str(path)!r} is not a tastyrec journal segment")
    schema: pa.Schema | None = None
    batches: list[pa.RecordBatch] = []
    good = len(MAGIC)
    for end, payload in _records(data):
        buf = raw.slice(end - len(payload), len(payload))
        try:
            if schema is None:
                schema = ipc.read_schema(buf)
            else:
                batch = ipc.read_record_batch(buf, schema)
                batch.validate(full=True)
                batches.append(batch)
        except (pa.ArrowException, ValueError):
            break  # checksum intact but not Arrow: treat like a torn tail
        good = end
    return SegmentContents(schema, batches, size - good)


def _storage_error(what: str, path: Path, exc: OSError) -> StorageError:
    reason = exc.strerror or str(exc)
    return StorageError(f"{what} {str(path)!r}: {reason}")
