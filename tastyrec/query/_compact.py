"""Compaction: merge a partition's small files into few large ones sorted by symbol and time.

Theory of operation
-------------------
A partition is ``<root>/<EventType>/date=YYYY-MM-DD``. For each one, under an exclusive lock on
``<root>/_compact.lock`` (one compaction per recording at a time):

0. *Finish earlier work.* Files that an existing compacted file replaces (see below) are deleted,
   and temporary files of an interrupted compaction (``*-compact*.parquet.tmp``) are removed.
1. *Choose.* The inputs are the partition's current files as :mod:`tastyrec.catalog` lists them:
   committed ``*.parquet`` only, never a file still being produced (a recorder writes
   ``*.parquet.tmp`` and renames). A file whose journal segment still exists is skipped too:
   ``tastyrec recover`` may still convert that segment, and must find its file. Compacted files
   already holding ``max_rows`` are left alone. Fewer than two inputs: nothing to do, which
   makes compaction idempotent.
2. *Merge.* The inputs (grouped into outputs of at most ``max_rows`` rows, in time order) are
   read, their schemas unified by column name (a column some files lack is null there), and the
   rows stably sorted by ``event_symbol`` then ``recv_ns`` (receipt order kept for equal times).
3. *Write* ``<stamp>Z-compact<hex>-<seq>.parquet.tmp`` with the recorder's Parquet settings
   (:mod:`tastyrec.record.sink`), its key-value metadata naming the files it replaces
   (:data:`tastyrec.catalog.COMPACTED_FROM_KEY`); ``fsync``.
4. *Check* before anything is published: the file is read back; its row count must equal the
   inputs' footers and the rows read; every column must equal the sorted rows bit for bit
   (floats compared as bit patterns, so NaN is checked too).
5. *Publish*: ``os.replace`` to the final ``.parquet`` name, ``fsync`` the folder. From this
   instant the catalog hides the replaced files: tastyrec's readers (:func:`connect`,
   :func:`scan`, ``info``, replay) see the new file instead of the old ones, never both, never
   neither.
6. *Delete* the replaced files, ``fsync`` the folder.

A crash at any point leaves a consistent recording: before 5, the old files are current and the
temporary file is removed by the next run; after 5, the new file is current and the next run
deletes the old ones (step 0). Nothing is ever deleted before its rows are published elsewhere.

What readers that glob ``*/date=*/*.parquet`` themselves (raw DuckDB, pyarrow datasets) see:
between steps 5 and 6 — milliseconds, or until the next ``tastyrec compact`` after a crash
there — both the old files and the new one, so rows appear twice. Use :func:`tastyrec.connect`,
:func:`tastyrec.scan` or :func:`tastyrec.catalog.recording_files` to never see that.

Memory: one output's rows are held (about twice) in memory; ``max_rows`` bounds it.
"""

from __future__ import annotations

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
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import catalog
from .._version import __version__
from ..events.registry import EVENT_TYPES
from ..exceptions import StorageError
from ..record import layout
from ..record.journal import fsync_dir
from ..record.sink import ROW_GROUP_ROWS, _parquet_options
from ..schema import RECV_COLUMN, arrow_schema

__all__ = ("DEFAULT_MAX_ROWS", "CompactionResult", "compact")

logger = logging.getLogger(__name__)

#: Rows per compacted file, at most (memory use is about twice that many rows).
DEFAULT_MAX_ROWS: Final = 20_000_000
LOCK_NAME: Final = "_compact.lock"
SYMBOL_COLUMN: Final = "event_symbol"

#: Test hook: called with the name of each step about to run: "write", "publish", and "delete"
#: before each replaced file is deleted.
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
    path: str | os.PathLike[str],
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
    root = Path(path)
    if not root.is_dir():
        raise StorageError(f"no recording at {str(root)!r}: give the folder a recording wrote")
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


@contextlib.contextmanager
def _lock(root: Path) -> Iterator[None]:
    path = root / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StorageError(f"cannot create {str(path)!r}: {exc.strerror or exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StorageError(
                f"another `tastyrec compact` is running on {str(root)!r}; wait for it to finish"
            ) from None
        yield
    finally:
        os.close(fd)


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
    for stale in folder.glob(f"*-{catalog.COMPACT_SESSION_PREFIX}*.tmp"):
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


def _read_inputs(group: list[tuple[Path, int]]) -> list[pa.Table]:
    tables = []
    for file, rows in group:
        try:
            table = pq.read_table(file, use_threads=True)
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(
                f"cannot read {str(file)!r}: {exc}; nothing was compacted in its partition"
            ) from exc
        if table.num_rows != rows:
            raise StorageError(f"{str(file)!r} read {table.num_rows} rows, its footer {rows}")
        tables.append(table)
    return tables


def _target_schema(event_type: str, tables: list[pa.Table]) -> pa.Schema:
    """The current schema's columns first, then any others the files have; metadata merged."""
    schemas = [t.schema for t in tables]
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
    versions = sorted(
        {(s.metadata or {}).get(b"tastyrec.schema_version", b"").decode() for s in schemas} - {""}
    )
    if sessions:
        meta[b"tastyrec.session_id"] = ",".join(sessions).encode()
    if versions:
        meta[b"tastyrec.schema_version"] = ",".join(versions).encode()
    meta[b"tastyrec.event_type"] = event_type.encode()
    meta[b"tastyrec.compacted_by"] = __version__.encode()
    return pa.schema(fields, metadata=meta)


def _merge(
    root: Path, part: catalog.Partition, group: list[tuple[Path, int]], row_group_rows: int
) -> Path:
    tables = _read_inputs(group)
    schema = _target_schema(part.event_type, tables)
    conformed = [_conform(t, schema) for t in tables]
    table = pa.concat_tables(conformed)
    expected = sum(r for _, r in group)
    if table.num_rows != expected:
        raise StorageError(f"read {table.num_rows} rows from files whose footers say {expected}")
    table = _sorted(table)
    first_ns = _min_recv(table)
    name = layout.file_name(first_ns, catalog.COMPACT_SESSION_PREFIX + secrets.token_hex(4), 1)
    target = part.path / (name + layout.PARQUET_SUFFIX)
    tmp = target.with_name(target.name + ".tmp")
    replaced = json.dumps([f.name for f, _ in group]).encode()
    out_schema = schema.with_metadata(
        {**(schema.metadata or {}), catalog.COMPACTED_FROM_KEY: replaced}
    )
    _step("write")
    try:
        _write(tmp, out_schema, table, row_group_rows)
        _verify(tmp, table, expected)
        _step("publish")
        os.replace(tmp, target)
        fsync_dir(part.path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    for file, _ in group:
        _step("delete")
        with contextlib.suppress(FileNotFoundError):
            file.unlink()
    fsync_dir(part.path)
    return target


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = []
    for f in schema:
        if f.name in table.column_names:
            col = table.column(f.name)
            columns.append(col if col.type == f.type else col.cast(f.type))
        else:
            columns.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _sorted(table: pa.Table) -> pa.Table:
    """Rows stably sorted by symbol, then receipt time (equal keys keep file, then row order).

    Symbols are sorted through their dictionary (a few hundred distinct values) and the rows
    with a stable ``numpy.lexsort`` on integer keys: ~8x faster than sorting the strings.
    """
    if not table.num_rows or RECV_COLUMN not in table.column_names:
        return table
    recv = table.column(RECV_COLUMN).cast(pa.int64()).to_numpy()
    keys = [np.nan_to_num(recv)]
    symbols: pa.DictionaryArray | None = None
    if SYMBOL_COLUMN in table.column_names:
        symbols = pc.dictionary_encode(table.column(SYMBOL_COLUMN)).combine_chunks()
        rank = pc.rank(symbols.dictionary, sort_keys="ascending", tiebreaker="first")
        codes = np.asarray(rank, dtype=np.int64)[symbols.indices.fill_null(0).to_numpy()]
        # nulls (never written by the recorder) sort first
        codes[np.asarray(symbols.indices.is_null())] = -1
        keys.append(codes)
    order = pa.array(np.lexsort(keys))  # the last key is the primary one
    columns = []
    for name in table.column_names:
        if name == SYMBOL_COLUMN and symbols is not None:
            taken = pa.DictionaryArray.from_arrays(symbols.indices.take(order), symbols.dictionary)
            columns.append(taken.cast(table.schema.field(name).type))
        else:
            columns.append(table.column(name).take(order))
    return pa.Table.from_arrays(columns, schema=table.schema)


def _min_recv(table: pa.Table) -> int:
    if RECV_COLUMN in table.column_names and table.num_rows:
        value = pc.min(table.column(RECV_COLUMN).cast(pa.int64())).as_py()
        if value is not None:
            return int(value)
    return time.time_ns()


def _write(path: Path, schema: pa.Schema, table: pa.Table, row_group_rows: int) -> None:
    try:
        with open(path, "wb") as fh:
            with pq.ParquetWriter(fh, schema, **_parquet_options(schema)) as writer:
                writer.write_table(table.replace_schema_metadata(schema.metadata), row_group_rows)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise StorageError(
            f"cannot write {str(path)!r}: {exc.strerror or exc}; the old files are untouched: "
            "free space (or fix permissions) and run `tastyrec compact` again"
        ) from exc


def _verify(path: Path, expected: pa.Table, rows: int) -> None:
    """The written file holds exactly ``expected`` (bit for bit), or StorageError."""
    written = pq.read_table(path, use_threads=True)
    if written.num_rows != rows or pq.read_metadata(path).num_rows != rows:
        raise StorageError(
            f"compaction check failed: {str(path)!r} holds {written.num_rows} rows, expected "
            f"{rows}; the old files are untouched"
        )
    if written.column_names != expected.column_names:
        raise StorageError(f"compaction check failed: columns of {str(path)!r} differ")
    for name in expected.column_names:
        if not _bits(written.column(name)).equals(_bits(expected.column(name))):
            raise StorageError(
                f"compaction check failed: column {name!r} of {str(path)!r} differs from its "
                "inputs; the old files are untouched"
            )


def _bits(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Floats as their bit patterns (NaN == NaN), other columns unchanged."""
    if pa.types.is_float64(column.type):
        return pa.chunked_array([c.view(pa.int64()) for c in column.chunks], pa.int64())
    if pa.types.is_float32(column.type):
        return pa.chunked_array([c.view(pa.int32()) for c in column.chunks], pa.int32())
    return column
