"""Reading a recording back in receipt order, chunk by chunk, with bounded memory.

A recording is many Parquet files per event type (one per rotation, per recorder session, per
New York day), each a sequence of row groups. This module merges all of them, across event
types, into one timeline ordered by ``recv_ns`` (the local receipt time on every row), without
ever holding more than a few row groups per event type in memory.

Theory of operation:

* **Runs.** Every row group of every file is a *run*: a sequence of rows sorted by ``recv_ns``,
  known before it is read by the ``recv_ns`` statistics in the file footer (min and max).
  Recorder files are written in receipt order, so a run needs no sorting; a run that is not
  sorted (a compacted file is sorted by symbol) is sorted (stably) when it is loaded.
* **Merge.** Runs are opened in order of their first receipt time, only when the merge reaches
  it. Each :meth:`Timeline.next_step` looks at the open runs, takes the *horizon* -- the
  smallest receipt time at the end of the next ``chunk_rows`` rows of any open run -- opens every
  run that starts at or before the horizon, and cuts from each open run the rows up to and
  including the horizon. Every row of a step is later than (or as late as) every row of the
  previous step, so steps are a merge in time order; within a step, the rows of one run keep
  their order, and the caller orders across runs (:func:`merge_order`).
* **Ties.** Events received in one frame share their ``recv_ns``. Among them the order within a
  file is the order received; across event types (a frame can carry several) the order is the
  order of the ``event_types`` given, which the recording does not keep.
* **Schema changes.** Every row group is conformed to the current schema of its event type
  (:func:`tastyrec.schema.arrow_schema`): a column the file lacks gets the field's default
  (NaN, 0, null, false), a column the schema lacks is dropped.
* **Memory.** At most ``chunk_rows`` rows per open run are cut per step, and a run is loaded
  whole only when the merge reaches it: memory is a few row groups (256Ki rows each, as the
  recorder writes them) per event type, whatever the size of the recording.

This module reads files but never writes; it has no asyncio in it (the replay streamer drives
it, in a worker thread when it reads).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..events.base import Event
from ..events.registry import FieldKind, spec
from ..exceptions import SchemaError, StorageError
from ..record.layout import PARQUET_SUFFIX, check_type_name
from ..schema import RECV_COLUMN, arrow_schema

__all__ = ("Piece", "Step", "Timeline", "merge_order", "recording_files", "to_events")

logger = logging.getLogger(__name__)

#: Default rows cut from each open run per step.
DEFAULT_CHUNK_ROWS: Final = 4096


def recording_files(root: Path, event_type: str) -> list[Path]:
    """The committed Parquet files of one event type under ``root``, in name (time) order.

    Temporary files (``*.parquet.tmp``) and bookkeeping folders are never listed.
    """
    try:
        from ..catalog import recording_files as catalog_files  # compaction-aware, if present
    except ImportError:
        folder = root / check_type_name(event_type)
        return sorted(folder.glob(f"date=*/*{PARQUET_SUFFIX}"))
    return list(catalog_files(root, event_type))


@dataclass(order=True)
class _Run:
    min_ns: int
    max_ns: int
    seq: int  # tie-break: file order, then row-group order
    type_index: int = field(compare=False)
    path: Path = field(compare=False)
    row_group: int = field(compare=False)
    batch: pa.RecordBatch | None = field(default=None, compare=False)
    recv: np.ndarray[Any, np.dtype[np.int64]] | None = field(default=None, compare=False)
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Piece:
    """Rows of one event type, in receipt order, from one run."""

    type_index: int
    batch: pa.RecordBatch
    recv: np.ndarray[Any, np.dtype[np.int64]]


@dataclass(frozen=True)
class Step:
    """A slice of the timeline: every row is at or after every row of the previous step.

    ``pieces`` are in ``event_types`` order (then file order); :func:`merge_order` interleaves
    them by receipt time.
    """

    pieces: list[Piece]
    #: the receipt time of the latest row in this step
    horizon_ns: int

    @property
    def rows(self) -> int:
        """Rows in this step."""
        return sum(p.batch.num_rows for p in self.pieces)


class Timeline:
    """The rows of several event types of a recording, merged in receipt order.

    Args:
        root: the recording folder (``tastyrec record --out``).
        event_types: the event classes to read, in the order that breaks receipt-time ties.
        start_ns: skip rows received before this (epoch ns, inclusive).
        end_ns: stop before rows received at or after this (epoch ns, exclusive).
        chunk_rows: rows cut from each open run per step.
        files: ``{event type name: [paths]}`` to read instead of listing ``root``.

    Raises:
        StorageError: a file cannot be read.
    """

    def __init__(
        self,
        root: str | Path,
        event_types: Sequence[type[Event]],
        *,
        start_ns: int | None = None,
        end_ns: int | None = None,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        files: dict[str, list[Path]] | None = None,
    ) -> None:
        if chunk_rows <= 0:
            raise ValueError(f"chunk_rows must be positive, not {chunk_rows!r}")
        self.root = Path(root)
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.chunk_rows = chunk_rows
        self.event_types: list[type[Event]] = []
        self._files = files
        self._pending: list[_Run] = []  # heap by (min_ns, seq)
        self._open: list[_Run] = []
        self._seq = 0
        self._after: dict[int, int | None] = {}  # type index -> first receipt time to read
        #: rows loaded from files so far
        self.rows_read = 0
        #: the receipt time of the latest row returned (rows still to come are later)
        self.horizon_ns: int | None = None
        for cls in event_types:
            self.add_type(cls)

    def add_type(self, cls: type[Event], after_ns: int | None = None) -> int:
        """Start reading ``cls`` too (rows received after ``after_ns`` only); its type index.

        A type already read keeps its index and is not read twice.
        """
        if cls in self.event_types:
            return self.event_types.index(cls)
        index = len(self.event_types)
        self.event_types.append(cls)
        name = spec(cls).name
        paths = self._files.get(name, []) if self._files is not None else None
        if paths is None:
            paths = recording_files(self.root, name)
        low = self.start_ns if after_ns is None else max(after_ns + 1, self.start_ns or 0)
        for path in paths:
            for rg, lo, hi in _row_group_bounds(path):
                if (low is not None and hi < low) or (
                    self.end_ns is not None and lo >= self.end_ns
                ):
                    continue
                heapq.heappush(self._pending, _Run(lo, hi, self._seq, index, path, rg))
                self._seq += 1
        self._after[index] = low
        return index

    @property
    def exhausted(self) -> bool:
        """Whether every row has been returned."""
        return not self._pending and not self._open

    def next_step(self) -> Step | None:
        """The next slice of the timeline; ``None`` once every row has been returned."""
        while True:
            if not self._open:
                if not self._pending:
                    return None
                self._load(heapq.heappop(self._pending))
                continue
            horizon = min(self._chunk_end(run) for run in self._open)
            while self._pending and self._pending[0].min_ns <= horizon:
                run = heapq.heappop(self._pending)
                self._load(run)
                if run in self._open:
                    horizon = min(horizon, self._chunk_end(run))
            pieces: list[Piece] = []
            for run in sorted(self._open, key=lambda r: (r.type_index, r.seq)):
                assert run.batch is not None and run.recv is not None
                stop = int(np.searchsorted(run.recv, horizon, side="right"))
                if stop > run.pos:
                    n = stop - run.pos
                    pieces.append(
                        Piece(run.type_index, run.batch.slice(run.pos, n), run.recv[run.pos : stop])
                    )
                    run.pos = stop
            self._open = [r for r in self._open if r.recv is not None and r.pos < len(r.recv)]
            self.horizon_ns = horizon
            if pieces:
                return Step(pieces, horizon)

    def _chunk_end(self, run: _Run) -> int:
        assert run.recv is not None
        return int(run.recv[min(run.pos + self.chunk_rows, len(run.recv)) - 1])

    def _load(self, run: _Run) -> None:
        cls = self.event_types[run.type_index]
        schema = arrow_schema(cls)
        try:
            table = pq.ParquetFile(run.path).read_row_group(run.row_group)
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(f"cannot read {str(run.path)!r}: {exc}") from exc
        batch = conform(table, cls)
        recv = batch.column(schema.get_field_index(RECV_COLUMN))
        values: np.ndarray[Any, np.dtype[np.int64]] = (
            recv.cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        )
        if len(values) > 1 and bool(np.any(values[1:] < values[:-1])):
            order = np.argsort(values, kind="stable")
            batch = batch.take(pa.array(order))
            values = values[order]
        low, high = self._after.get(run.type_index), self.end_ns
        if low is not None or high is not None:
            first = 0 if low is None else int(np.searchsorted(values, low, side="left"))
            last = len(values) if high is None else int(np.searchsorted(values, high, "left"))
            batch, values = batch.slice(first, max(last - first, 0)), values[first:last]
        self.rows_read += batch.num_rows
        if batch.num_rows:
            run.batch, run.recv, run.pos = batch, values, 0
            self._open.append(run)


def _row_group_bounds(path: Path) -> list[tuple[int, int, int]]:
    """``(row group, min recv_ns, max recv_ns)`` of every non-empty row group of a file."""
    try:
        meta = pq.ParquetFile(path).metadata
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"cannot read {str(path)!r}: {exc}") from exc
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    if RECV_COLUMN not in names:
        raise SchemaError(f"{str(path)!r} has no {RECV_COLUMN} column: not a tastyrec recording")
    col = names.index(RECV_COLUMN)
    bounds = []
    for rg in range(meta.num_row_groups):
        group = meta.row_group(rg)
        if not group.num_rows:
            continue
        stats = group.column(col).statistics
        if stats is not None and stats.has_min_max:
            bounds.append((rg, int(stats.min_raw), int(stats.max_raw)))
        else:  # no statistics: read the column once
            recv = pq.ParquetFile(path).read_row_group(rg, columns=[RECV_COLUMN]).column(0)
            ints = recv.cast(pa.int64())
            bounds.append((rg, int(pc.min(ints).as_py()), int(pc.max(ints).as_py())))
    return bounds


def conform(table: pa.Table | pa.RecordBatch, cls: type[Event]) -> pa.RecordBatch:
    """``table`` as one RecordBatch with exactly the columns of ``arrow_schema(cls)``.

    A missing column gets the field's default value; an extra column is dropped; a column of
    another type is cast (``SchemaError`` if it cannot be).
    """
    schema = arrow_schema(cls)
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    n = table.num_rows
    defaults = {f.name: f for f in spec(cls).fields}
    arrays = []
    for target in schema:
        if target.name in table.column_names:
            column = table.column(target.name).combine_chunks()
            if not column.type.equals(target.type):
                try:
                    column = column.cast(target.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise SchemaError(
                        f"column {target.name!r} of {cls.__name__} is {column.type}, "
                        f"not {target.type}: {exc}"
                    ) from None
            arrays.append(column)
        elif target.name in defaults:
            f = defaults[target.name]
            arrays.append(_default_array(f.kind, f.default, n, target.type))
        else:
            raise SchemaError(f"{cls.__name__} rows without {target.name!r}")
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _default_array(kind: FieldKind, default: Any, n: int, type_: pa.DataType) -> pa.Array:
    if kind is FieldKind.STRING:
        return pa.nulls(n, type_)
    if kind is FieldKind.DOUBLE:
        return pa.array(np.full(n, default, dtype=np.float64))
    if kind is FieldKind.BOOL:
        return pa.array(np.full(n, bool(default)))
    return pa.array(np.full(n, int(default or 0), dtype=np.int64)).cast(type_)


def merge_order(pieces: Sequence[Piece]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Interleave ``pieces`` by receipt time: ``(piece index, row)`` of each row, in order.

    Stable: rows with equal receipt times stay in piece order (type order, then file order),
    and within a piece in their own order.
    """
    if not pieces:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    recv = np.concatenate([p.recv for p in pieces])
    which = np.concatenate([np.full(len(p.recv), i, dtype=np.int64) for i, p in enumerate(pieces)])
    rows = np.concatenate([np.arange(len(p.recv), dtype=np.int64) for p in pieces])
    order = np.argsort(recv, kind="stable")
    return which[order], rows[order]


def to_events(cls: type[Event], batch: pa.RecordBatch) -> list[Event]:
    """The rows of a conformed batch as ``cls`` Structs, bit-exact (NaN and infinities kept).

    Wire times come back as the integer milliseconds the server sent.
    """
    s = spec(cls)
    columns: list[Iterable[Any]] = []
    for f, column in zip(s.fields, batch.columns, strict=False):
        if f.kind is FieldKind.STRING:
            columns.append(column.to_pylist())
        elif f.kind is FieldKind.TIME_MS:
            columns.append(column.view(pa.int64()).to_numpy(zero_copy_only=False).tolist())
        elif f.kind is FieldKind.BOOL:
            columns.append(column.fill_null(False).to_pylist())
        else:
            if column.null_count:
                column = column.fill_null(f.default)
            columns.append(column.to_numpy(zero_copy_only=False).tolist())
    return list(map(cls, *columns))
