"""Compaction: merge a partition's small files into few large ones sorted by symbol and time.

Size: a little over 600 lines, one procedure told in the order it runs (the lossless check is
:mod:`tastyrec.query._compact_check`, object storage :mod:`tastyrec.query._compact_s3`).

Theory of operation
-------------------
A partition is ``<root>/<EventType>/date=YYYY-MM-DD``. A folder that is not a recording (no
event type folder, no ``_sessions``, ``_journal`` or ``_gaps``) is refused before anything is
created in it. For each partition, under an exclusive lock on ``<root>/_compact.lock`` (one
compaction per recording at a time; the file is removed when the compaction ends):

0. *Finish earlier work.* Files that an existing compacted file replaces (see below) are deleted,
   and temporary files of an interrupted compaction (``*-compact*.parquet.tmp``) are removed.
1. *Choose.* The inputs are the partition's current files as :mod:`tastyrec.catalog` lists them:
   committed ``*.parquet`` only, never a file still being produced (a recorder writes
   ``*.parquet.tmp`` and renames). A file whose journal segment still exists is skipped too:
   ``tastyrec recover`` may still convert that segment, and must find its file. Compacted files
   already holding ``max_rows`` are left alone. Fewer than two inputs: nothing to do, which
   makes compaction idempotent.
2. *Merge.* The inputs (grouped into outputs of at most ``max_rows`` rows, in time order) are
   read (strings as dictionaries), their schemas unified by column name (a column some files
   lack is null there), each input's row count checked against its footer, and the row order
   computed: stably by ``event_symbol`` then ``recv_epoch_ns`` (receipt order kept for equal
   times). Files of schema version 1 are rewritten in the current one
   (:func:`tastyrec.schema.upgrade`: ``recv_epoch_ns`` from their nanosecond ``recv_ns``).
3. *Write* ``<stamp>Z-compact<hex>-<seq>.parquet.tmp`` with the recorder's Parquet settings
   (:mod:`tastyrec.storage.parquet`: zstd, dictionary, delta ``recv_ns``, 256Ki-row row groups) —
   except that every timestamp column is delta-encoded (see :func:`_compacted_options`) —,
   its key-value metadata naming the files it replaces
   (:data:`tastyrec.catalog.COMPACTED_FROM_KEY`); ``fsync``. Row groups are gathered in that
   order one at a time (a worker thread prepares the next while the writer encodes), and a
   digest of each is kept: its row count and a position-weighted checksum of every column.
4. *Check* before anything is published: the file is opened afresh, its footer's row count,
   row groups and schema checked, and every row group decoded from disk and digested again;
   each must equal the digest of what was handed to the writer (see
   :func:`tastyrec.query._compact_check.verify`).
5. *Publish*: ``os.replace`` to the final ``.parquet`` name, ``fsync`` the folder (steps 3-5
   are :func:`tastyrec.storage.publish.publish`, the routine every file of a recording goes
   through, with the check of step 4). From this
   instant the catalog hides the replaced files: tastyrec's readers (:func:`connect`,
   :func:`scan`, ``info``, replay) see the new file instead of the old ones, never both, never
   neither.
6. *Delete* the replaced files, ``fsync`` the folder.

A crash at any point leaves a consistent recording: before 5, the old files are current and the
temporary file is removed by the next run; after 5, the new file is current and the next run
deletes the old ones (step 0). Nothing is ever deleted before its rows are published elsewhere.

What readers that glob ``*/date=*/*.parquet`` themselves (raw DuckDB, pyarrow datasets) see:
between steps 5 and 6 — milliseconds, or after a crash there until a tastyrec command lists
that partition (the catalog rolls the compaction forward) — the old files and the new one,
so rows appear twice. Use :func:`tastyrec.connect`,
:func:`tastyrec.scan` or :func:`tastyrec.catalog.recording_files` to never see that.

Memory: one output's rows are held once (plus a few row groups) in memory; ``max_rows``
bounds it.

Where the time goes (10 M quotes, 2 cores): decoding the inputs and copying them into one chunk
per column (fresh memory is costly on these machines: zeroing pages was half of all CPU time
before the second copy of the rows was dropped), the sort (a radix sort on the symbol rank),
the single-threaded Parquet writer (~2 s, the floor: the gather runs beside it), and the
read-back (~0.7 s on both cores).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import catalog
from .._location import existing_recording
from .._version import __version__
from ..events.registry import EVENT_TYPES
from ..exceptions import StorageError
from ..schema import RECV_EXACT_COLUMN, SCHEMA_VERSION, arrow_schema, upgrade
from ..storage import layout
from ..storage.parquet import ROW_GROUP_ROWS, parquet_options
from ..storage.publish import TMP_SUFFIX, fsync_dir, publish
from ._compact_check import Digest, digest, is_string, verify

if TYPE_CHECKING:
    from ..objectstore import S3Location

__all__ = ("DEFAULT_MAX_ROWS", "CompactionResult", "compact")

logger = logging.getLogger(__name__)

#: Rows per compacted file, at most (memory use is about twice that many rows).
DEFAULT_MAX_ROWS: Final = 20_000_000
LOCK_NAME: Final = layout.COMPACT_LOCK
SYMBOL_COLUMN: Final = "event_symbol"

#: Test and benchmark hook: called with the name of each step about to run: "sort" (the inputs
#: are read), "write", "verify", "publish", and "delete" before each replaced file is deleted.
_step_hook: Callable[[str], None] | None = None


@dataclass
class CompactionResult:
    """What compaction did to one partition."""

    event_type: str
    day: date
    #: the files merged (deleted once the outputs were published)
    inputs: list[Path] = field(default_factory=list)
    #: the compacted files written
    outputs: list[Path] = field(default_factory=list)
    rows: int = 0
    #: bytes of the inputs and of the outputs
    bytes_in: int = 0
    bytes_out: int = 0
    #: replaced files deleted that an interrupted earlier compaction had left
    cleaned: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        """Whether anything was merged or cleaned up."""
        return bool(self.outputs or self.cleaned)


def compact(
    path: str | os.PathLike[str] | S3Location,
    *,
    day: date | None = None,
    event_types: list[str] | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    row_group_rows: int = ROW_GROUP_ROWS,
    progress: Callable[[CompactionResult], None] | None = None,
) -> list[CompactionResult]:
    """Compact every partition of a recording (or those of one date). Blocking.

    Safe while a recorder writes into the same folder, idempotent, lossless and crash-safe:
    see the module docstring.

    Args:
        path: the recording folder.
        day: only partitions of this New York date (``None``: all).
        event_types: only these event types (``None``: all recorded).
        max_rows: rows per compacted file, at most.
        row_group_rows: rows per Parquet row group (the recorder's by default).
        progress: called with each partition's result as it finishes.

    Returns:
        One result per partition looked at, in type then date order.

    Raises:
        StorageError: no recording at ``path``, another compaction is running on it, a file
            cannot be read or written, or the written file did not match its inputs (then
            nothing was published and the old files are untouched).
    """
    from ..catalog import reading_location

    location = reading_location(path)
    if not isinstance(location, Path):  # s3://bucket/prefix
        if max_rows < 1 or row_group_rows < 1:
            raise ValueError("max_rows and row_group_rows must be positive")
        from ..catalog import existing_location
        from ._compact_s3 import compact_s3

        existing_location(location)
        return compact_s3(
            location,
            day=day,
            event_types=event_types,
            max_rows=max_rows,
            row_group_rows=row_group_rows,
            progress=progress,
        )
    root = existing_recording(location)
    if not _is_recording(root):
        raise StorageError(
            f"{str(root)!r} is not a recording (no event type folders, no {layout.SESSIONS_DIR}): "
            "give the folder `tastyrec record --out` wrote; nothing was changed"
        )
    if max_rows < 1 or row_group_rows < 1:
        raise ValueError("max_rows and row_group_rows must be positive")
    results = []
    with _lock(root):
        for event_type in event_types or catalog.event_types(root):
            for part in catalog.partitions(root, event_type, start=day, end=day):
                result = _compact_partition(root, part, max_rows, row_group_rows)
                results.append(result)
                if progress is not None:
                    progress(result)
    return results


def _is_recording(root: Path) -> bool:
    """Whether ``root`` holds a recording: bookkeeping folders or an event type's partitions."""
    bookkeeping = (layout.SESSIONS_DIR, layout.JOURNAL_DIR, layout.GAPS_DIR)
    return any((root / name).is_dir() for name in bookkeeping) or bool(catalog.event_types(root))


@contextlib.contextmanager
def _lock(root: Path) -> Iterator[None]:
    """Hold ``<root>/_compact.lock`` exclusively; remove it at the end, still holding it.

    A compaction that opened the file just before the holder removed it would lock a file no
    longer at that path, beside a third one that creates it anew: so the lock counts only if
    the locked file is still the one at the path, else the file there is opened again.
    """
    path = root / LOCK_NAME
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot create {str(path)!r}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StorageError(
                f"another `tastyrec compact` is running on {str(root)!r}; wait for it to finish"
            ) from None
        if _same_file(fd, path):
            break
        os.close(fd)
    try:
        yield
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:  # harmless: the next compaction locks the same file
            logger.warning("= could not remove %s: %s", path, exc.strerror or exc)
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        at_path = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (at_path.st_dev, at_path.st_ino)


def _step(name: str) -> None:
    if _step_hook is not None:
        _step_hook(name)


def _compact_partition(
    root: Path, part: catalog.Partition, max_rows: int, row_group_rows: int
) -> CompactionResult:
    started = time.perf_counter()
    result = CompactionResult(part.event_type, part.day)
    result.cleaned = _finish_earlier(part.path)
    inputs = []
    for file in catalog.partition_files(part.path):
        if _segment_of(root, part, file).exists():
            continue  # recover() may still convert that segment: its file must stay
        rows = pq.read_metadata(file).num_rows
        if catalog.is_compacted(file.name) and rows >= max_rows:
            continue
        inputs.append((file, rows))
    # names start with the first row's UTC time: name order is time order
    if len(inputs) >= 2:
        for group in _groups(inputs, max_rows):
            if len(group) < 2:
                continue  # one file alone (a full one's neighbour): nothing to merge
            result.bytes_in += sum(_size(f) for f, _ in group)
            output = _merge(root, part, group, row_group_rows)
            result.inputs += [f for f, _ in group]
            result.outputs.append(output)
            result.rows += sum(r for _, r in group)
            result.bytes_out += output.stat().st_size
    result.seconds = time.perf_counter() - started
    if result.outputs:
        logger.info(
            "= compacted %s date=%s: %d files -> %d (%d rows) in %.2f s",
            part.event_type,
            part.day,
            len(result.inputs),
            len(result.outputs),
            result.rows,
            result.seconds,
        )
    return result


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _segment_of(root: Path, part: catalog.Partition, file: Path) -> Path:
    return layout.journal_path(root, part.event_type, part.day, file.stem)


def _finish_earlier(folder: Path) -> int:
    """Delete files replaced by published compacted files, and stale compaction temporaries."""
    removed = 0
    for name in sorted(catalog.hidden_files(folder)):
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
            removed += 1
    for stale in folder.glob(f"*-{catalog.COMPACT_SESSION_PREFIX}*{TMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    if removed:
        fsync_dir(folder)
    return removed


def _groups(inputs: list[tuple[Path, int]], max_rows: int) -> list[list[tuple[Path, int]]]:
    """Consecutive files (time order) whose rows add up to at most ``max_rows`` each."""
    groups: list[list[tuple[Path, int]]] = [[]]
    rows = 0
    for item in inputs:
        if groups[-1] and rows + item[1] > max_rows:
            groups.append([])
            rows = 0
        groups[-1].append(item)
        rows += item[1]
    return groups


def _read_inputs(group: list[tuple[Path, int]]) -> list[tuple[pa.Schema, pa.Table]]:
    """Each file's schema (as written) and rows, string columns read as dictionaries.

    Reading strings as dictionaries skips materialising them (the costliest part of a pyarrow
    read), gives the symbol's sort key for free, and makes the later gather move int32 codes.
    """
    read = []
    for file, rows in group:
        try:
            meta = pq.read_metadata(file)
            schema = meta.schema.to_arrow_schema()
            strings = [f.name for f in schema if is_string(f.type)]
            pf = pq.ParquetFile(file, metadata=meta, read_dictionary=strings)
            table = pf.read(use_threads=True)
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(
                f"cannot read {str(file)!r}: {exc}; nothing was compacted in its partition"
            ) from exc
        if table.num_rows != rows or meta.num_rows != rows:
            raise StorageError(f"{str(file)!r} read {table.num_rows} rows, its footer {rows}")
        # schema version 1: the receipt columns of the current version
        read.append((upgrade(schema.empty_table()).schema, upgrade(table)))
    return read


def _work_type(kind: pa.DataType) -> pa.DataType:
    """The in-memory type of a column while merging: strings as int32-coded dictionaries."""
    return pa.dictionary(pa.int32(), kind) if is_string(kind) else kind


def _target_schema(event_type: str, schemas: list[pa.Schema]) -> pa.Schema:
    """The current schema's columns first, then any others the files have; metadata merged."""
    unified = pa.unify_schemas(schemas, promote_options="permissive")
    cls = EVENT_TYPES.get(event_type)
    order = [f.name for f in arrow_schema(cls)] if cls is not None else []
    names = [n for n in order if n in unified.names]
    names += [n for n in unified.names if n not in names]
    fields = []
    for name in names:
        f = unified.field(name)
        # a column some file lacks holds nulls there
        everywhere = all(name in s.names and not s.field(name).nullable for s in schemas)
        fields.append(f.with_nullable(not everywhere))
    meta: dict[bytes, bytes] = {}
    for s in schemas:
        meta.update(s.metadata or {})
    sessions = sorted(
        {(s.metadata or {}).get(b"tastyrec.session_id", b"").decode() for s in schemas} - {""}
    )
    if sessions:
        meta[b"tastyrec.session_id"] = ",".join(sessions).encode()
    meta[b"tastyrec.schema_version"] = SCHEMA_VERSION.encode()  # inputs were upgraded
    meta[b"tastyrec.event_type"] = event_type.encode()
    meta[b"tastyrec.compacted_by"] = __version__.encode()
    return pa.schema(fields, metadata=meta)


def _merge(
    root: Path, part: catalog.Partition, group: list[tuple[Path, int]], row_group_rows: int
) -> Path:
    read = _read_inputs(group)
    schema = _target_schema(part.event_type, [s for s, _ in read])
    work = pa.schema([f.with_type(_work_type(f.type)) for f in schema])
    columns = _chunked(work, [_conform(t, work) for _, t in read])
    del read
    expected = sum(r for _, r in group)
    keys = {
        n: columns.pop(n).combine_chunks()
        for n in (SYMBOL_COLUMN, RECV_EXACT_COLUMN)
        if n in work.names
    }
    with concurrent.futures.ThreadPoolExecutor(1, "tastyrec-compact") as pool:
        # copying the other columns (fresh memory: slow) overlaps the sort
        rest = pool.submit(_combine_chunks, columns)
        _step("sort")
        order = _sort_order(pa.table(keys))
        others = rest.result()
    table = pa.Table.from_arrays(
        [keys[f.name] if f.name in keys else others[f.name] for f in work], schema=work
    )
    del keys, others
    if table.num_rows != expected:
        raise StorageError(f"read {table.num_rows} rows from files whose footers say {expected}")
    first_ns = _min_recv(table)
    name = layout.file_name(first_ns, catalog.COMPACT_SESSION_PREFIX + secrets.token_hex(4), 1)
    target = part.path / (name + layout.PARQUET_SUFFIX)
    replaced = json.dumps([f.name for f, _ in group]).encode()
    out_schema = schema.with_metadata(
        {**(schema.metadata or {}), catalog.COMPACTED_FROM_KEY: replaced}
    )
    written: list[Digest] = []

    def write(fh: BinaryIO) -> None:
        nonlocal table, order
        written.extend(_write(fh, out_schema, table, order, row_group_rows))
        del table, order

    def check(tmp: Path) -> bool:
        _step("verify")
        verify(tmp, out_schema, written, expected)
        _step("publish")
        return True

    _step("write")
    try:
        publish(target, write, check=check)
    except OSError as exc:
        raise StorageError(
            f"cannot write {str(target)!r}: {exc.strerror or exc}; the old files are untouched: "
            "free space (or fix permissions) and run `tastyrec compact` again"
        ) from exc
    for file, _ in group:
        _step("delete")
        with contextlib.suppress(FileNotFoundError):
            file.unlink()
    fsync_dir(part.path)
    return target


def _chunked(schema: pa.Schema, tables: list[pa.Table]) -> dict[str, pa.ChunkedArray]:
    """The columns of ``tables`` (all of ``schema``) by name, string dictionaries unified."""
    columns = {
        f.name: pa.chunked_array([c for t in tables for c in t.column(f.name).chunks], f.type)
        for f in schema
    }
    del tables[:]
    for f in schema:
        if pa.types.is_dictionary(f.type):
            columns[f.name] = pa.table([columns[f.name]], [f.name]).unify_dictionaries().column(0)
    return columns


def _combine_chunks(columns: dict[str, pa.ChunkedArray]) -> dict[str, pa.Array]:
    """One array per column, each chunked column released as soon as it is copied.

    Peak memory stays near one copy of the rows: fresh memory is expensive (zeroing pages was
    half of the CPU time of a profiled run).
    """
    combined = {}
    for name in list(columns):
        combined[name] = columns.pop(name).combine_chunks()
    return combined


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = []
    for f in schema:
        if f.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, f.type))
            continue
        col = table.column(f.name)
        if col.type != f.type:
            if pa.types.is_dictionary(f.type):
                # a string column read plainly, or with another value type
                col = pc.dictionary_encode(col.cast(f.type.value_type)).cast(f.type)
            else:
                col = col.cast(f.type)
        columns.append(col)
    return pa.Table.from_arrays(columns, schema=schema)


def _sort_order(table: pa.Table) -> pa.Array | None:
    """Row order, stably sorted by symbol then receipt time (``None``: keep the order).

    Equal keys keep file, then row order. Symbols are ranked through their dictionary (a few
    hundred distinct values), so the keys are integers. A recorder's file is in receipt order,
    and so is a symbol's run in a compacted file: when every symbol's receipt times already
    rise in input order — the usual case — a stable radix sort on the symbol rank alone is the
    answer (2-3x faster than ``numpy.lexsort`` on both keys), checked on the result; otherwise
    (files overlapping in time) the two-key ``lexsort`` runs.
    """
    if not table.num_rows or RECV_EXACT_COLUMN not in table.column_names:
        return None
    recv_col = table.column(RECV_EXACT_COLUMN).combine_chunks().view(pa.int64())
    if recv_col.null_count:
        recv_col = pc.fill_null(recv_col, 0)  # nulls (never written) sort first
    recv = recv_col.to_numpy()
    if SYMBOL_COLUMN not in table.column_names:
        return pa.array(np.argsort(recv, kind="stable"))
    symbols = table.column(SYMBOL_COLUMN).combine_chunks()
    if not pa.types.is_dictionary(symbols.type):
        symbols = pc.dictionary_encode(symbols)
    size = len(symbols.dictionary)
    # ranks from 1; null symbols (never written by the recorder) get 0 and sort first
    small = size < np.iinfo(np.uint16).max
    rank = np.zeros(size + 1, dtype=np.uint16 if small else np.int64)
    rank[:-1] = np.asarray(pc.rank(symbols.dictionary, sort_keys="ascending"))
    indices = symbols.indices
    if indices.null_count:
        indices = pc.fill_null(indices, size)
    codes = rank[indices.to_numpy()]
    if small:
        order = np.argsort(codes, kind="stable")  # numpy: a radix sort for 16-bit keys
        if _sorted_within(codes, recv, order):
            return pa.array(order)
    return pa.array(np.lexsort((recv, codes)))  # the last key is the primary one


def _sorted_within(codes: np.ndarray, recv: np.ndarray, order: np.ndarray) -> bool:
    """Whether ``recv[order]`` rises within each run of equal ``codes[order]`` (in slices)."""
    step = 1 << 20
    for start in range(0, len(order), step):
        part = order[start : start + step + 1]
        times, keys = recv[part], codes[part]
        if np.any((times[1:] < times[:-1]) & (keys[1:] == keys[:-1])):
            return False
    return True


def _min_recv(table: pa.Table) -> int:
    if RECV_EXACT_COLUMN in table.column_names and table.num_rows:
        value = pc.min(table.column(RECV_EXACT_COLUMN)).as_py()
        if value is not None:
            return int(value)
    return time.time_ns()


def _compacted_options(schema: pa.Schema) -> dict[str, Any]:
    """The recorder's Parquet settings, with every timestamp column delta-encoded.

    The recorder delta-encodes only the receipt time, and dictionary-encodes the other times:
    in its files rows are in receipt order, so a row group holds a few hundred distinct
    milliseconds in long runs. Sorted by symbol, a row group spans the whole partition's time
    range: dictionary indices of ~14 bits per value that zstd cannot shrink (the compacted
    10 M quotes grew from 66 MB to 98 MB, 36 MB of it ``bid_time`` and ``ask_time``), while
    each symbol's times rise, which delta encoding stores in a few bits. Readers decode both.
    """
    options = parquet_options(schema)
    delta = [f.name for f in schema if pa.types.is_timestamp(f.type)]
    options["use_dictionary"] = [n for n in options["use_dictionary"] if n not in delta]
    options["column_encoding"] = {
        **options["column_encoding"],
        **dict.fromkeys(delta, "DELTA_BINARY_PACKED"),
    }
    return options


def _write(
    fh: BinaryIO, schema: pa.Schema, table: pa.Table, order: pa.Array | None, row_group_rows: int
) -> list[Digest]:
    """Write ``table``'s rows in ``order`` to ``fh``, one row group per ``row_group_rows``.

    A worker thread gathers the next row groups (Arrow's ``take`` releases the GIL) and
    computes their digests while the writer — single-threaded — encodes the current one, so
    the second core works too. Row groups are dropped once written (only digests are kept):
    memory stays near one copy of the rows.

    Returns:
        The digest of each row group written (for :func:`._compact_check.verify`).
    """
    starts = range(0, table.num_rows, row_group_rows)

    def gather(start: int) -> tuple[pa.Table, Digest]:
        if order is None:
            rows = table.slice(start, row_group_rows)
        else:
            rows = table.take(order.slice(start, row_group_rows))
        columns = [
            rows.column(f.name).cast(f.type) if is_string(f.type) else rows.column(f.name)
            for f in schema
        ]
        out = pa.Table.from_arrays(columns, schema=schema)
        return out, digest(out)

    digests: list[Digest] = []
    with concurrent.futures.ThreadPoolExecutor(1, "tastyrec-compact") as pool:
        with pq.ParquetWriter(fh, schema, **_compacted_options(schema)) as writer:
            pending = [pool.submit(gather, s) for s in starts[:2]]
            for n in range(len(starts)):
                rows, rows_digest = pending.pop(0).result()
                if n + 2 < len(starts):
                    pending.append(pool.submit(gather, starts[n + 2]))
                writer.write_table(rows, row_group_rows)
                digests.append(rows_digest)
                del rows
    return digests
