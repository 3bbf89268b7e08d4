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
  (:func:`tastyrec.schema.polars_schema`): a column the file lacks gets the field's default
  (NaN, 0, null, false), a column the schema lacks is dropped.
* **Account tables.** The classes of :mod:`tastyrec.events.account` (``PlacedOrder``,
  ``AccountBalance``..., tables named after the class) merge into the same timeline: every
  function here dispatches on the class, market events through their registry spec, account
  payloads through :mod:`tastyrec.storage.account_schema` (:func:`conform` to
  ``account_polars_schema``, missing columns null; :func:`to_events` through
  ``account_events_from_arrow``: Decimals, nested legs and fills exact).
* **Reading.** With polars (several times faster than pyarrow here, docs/performance.md#replay), one
  row group at a time (a slice of a lazy scan reads only that row group).
* **Memory.** At most ``chunk_rows`` rows per open run are cut per step, and a run is loaded
  whole only when the merge reaches it: memory is a few row groups (256Ki rows each, as the
  recorder writes them) per event type, whatever the size of the recording.

This module reads files but never writes; it has no asyncio in it (the replay streamer drives
it, in a worker thread when it reads).
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeAlias, cast

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import catalog
from ..events.base import Event
from ..events.registry import FieldKind, event_class, spec
from ..exceptions import SchemaError, StorageError
from ..schema import RECV_COLUMN, RECV_EXACT_COLUMN, polars_schema, upgrade_frame
from ..storage.account_schema import (
    AccountRecord,
    account_class,
    account_events_from_arrow,
    account_polars_schema,
    is_account_type,
)
from ..storage.layout import check_type_name

if TYPE_CHECKING:
    from ..objectstore import S3Location

__all__ = (
    "Piece",
    "Step",
    "Timeline",
    "first_receipt_ns",
    "merge_order",
    "recording_files",
    "table_name",
    "to_events",
)

#: A class whose rows a timeline reads: a market event or an account payload class.
RecordClass: TypeAlias = type[Event] | type[AccountRecord]

logger = logging.getLogger(__name__)

#: Default rows cut from each open run per step.
DEFAULT_CHUNK_ROWS: Final = 8192


def recording_files(root: Path | S3Location, event_type: str) -> Sequence[Path | str]:
    """The committed Parquet files of one event type, as every reader lists them
    (:func:`tastyrec.catalog.recording_files`: no temporaries, no files a compaction replaced);
    ``s3://bucket/key`` URLs for a recording on object storage."""
    if isinstance(root, Path):
        return catalog.recording_files(root, check_type_name(event_type))
    return catalog.location_files(root, check_type_name(event_type))


def _open(path: Path | str) -> pq.ParquetFile:
    """A local file or an ``s3://`` object (:func:`tastyrec.objectstore.open_parquet`)."""
    if isinstance(path, str) and path.startswith("s3://"):
        from ..objectstore import open_parquet

        file: pq.ParquetFile = open_parquet(path)
        return file
    return pq.ParquetFile(path)


def _scan(path: Path | str) -> pl.LazyFrame:
    """``pl.scan_parquet`` of a local file or an ``s3://`` object."""
    if isinstance(path, str) and path.startswith("s3://"):
        from ..objectstore import polars_credential_provider, polars_storage_options

        options, credentials = polars_storage_options(), polars_credential_provider()
        return pl.scan_parquet(path, storage_options=options, credential_provider=credentials)
    return pl.scan_parquet(path)


def table_name(cls: type[Any]) -> str:
    """The folder (and view) name of a class's rows: the event type name (``Quote``) or the
    account payload class name (``PlacedOrder``).

    Raises:
        SchemaError: neither a market event nor an account payload class.
    """
    if is_account_type(cls):
        return str(cls.__name__)
    return spec(cast("type[Event]", cls)).name


def record_class(name: str) -> RecordClass:
    """The class of a recorded table name, market event or account payload.

    Raises:
        SchemaError: not a recorded table name.
    """
    try:
        return event_class(check_type_name(name))
    except SchemaError:
        return account_class(name)


def first_receipt_ns(root: Path | S3Location) -> int | None:
    """The earliest receipt time in a recording (any event type; a folder or ``s3://``);
    ``None`` if it is empty.

    File names start with their first row's receipt time, so only the first file of each type
    is looked at.
    """
    firsts = []
    for name in catalog.location_event_types(root):
        try:
            record_class(name)
        except SchemaError:
            continue  # not an event type's folder
        for path in recording_files(root, name)[:1]:
            bounds = _row_group_bounds(path)
            if bounds:
                firsts.append(min(b[3] for b in bounds))
    return min(firsts) if firsts else None


@dataclass(order=True)
class _Run:
    min_ns: int
    max_ns: int
    seq: int  # tie-break: file order, then row-group order
    type_index: int = field(compare=False)
    path: Path | str = field(compare=False)
    row_group: int = field(compare=False)
    offset: int = field(compare=False)  # first row of the row group in the file
    rows: int = field(compare=False)
    #: the file's column names
    columns: tuple[str, ...] = field(default=(), compare=False)
    batch: pl.DataFrame | None = field(default=None, compare=False)
    recv: np.ndarray[Any, np.dtype[np.int64]] | None = field(default=None, compare=False)
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Piece:
    """Rows of one event type, in receipt order, from one run."""

    type_index: int
    batch: pl.DataFrame
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
        return sum(p.batch.height for p in self.pieces)


class Timeline:
    """The rows of several event types of a recording, merged in receipt order.

    Args:
        root: the recording folder (``tastyrec record --out``).
        event_types: the event classes to read (market events and account payload classes),
            in the order that breaks receipt-time ties.
        start_ns: skip rows received before this (epoch ns, inclusive).
        end_ns: stop before rows received at or after this (epoch ns, exclusive).
        chunk_rows: rows cut from each open run per step.
        files: ``{event type name: [paths]}`` to read instead of listing ``root``.
        event_columns: read only what events are built from -- a market event's fields and the
            exact receipt time (``recv_epoch_ns``; ``recv_ns`` in schema version 1 files, which
            have nothing else) -- not schema version 2's microsecond ``recv_ns``: the pieces'
            frames of market events then lack ``recv_ns`` (:class:`._engine.Cursor` reads so).

    Raises:
        StorageError: a file cannot be read.
    """

    def __init__(
        self,
        root: str | Path | S3Location,
        event_types: Sequence[RecordClass],
        *,
        start_ns: int | None = None,
        end_ns: int | None = None,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        files: dict[str, list[Path]] | None = None,
        event_columns: bool = False,
    ) -> None:
        if chunk_rows <= 0:
            raise ValueError(f"chunk_rows must be positive, not {chunk_rows!r}")
        self.root = Path(root) if isinstance(root, str) else root
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.chunk_rows = chunk_rows
        self.event_columns = event_columns
        self.event_types: list[RecordClass] = []
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

    def add_type(self, cls: RecordClass, after_ns: int | None = None) -> int:
        """Start reading ``cls`` too (rows received after ``after_ns`` only); its type index.

        A type already read keeps its index and is not read twice.
        """
        if cls in self.event_types:
            return self.event_types.index(cls)
        index = len(self.event_types)
        self.event_types.append(cls)
        name = table_name(cls)
        paths: Sequence[Path | str]
        if self._files is not None:
            paths = self._files.get(name, [])
        else:
            paths = recording_files(self.root, name)
        low = self.start_ns if after_ns is None else max(after_ns + 1, self.start_ns or 0)
        for path in paths:
            columns, bounds = _file_bounds(path)
            for rg, offset, rows, lo, hi in bounds:
                if (low is not None and hi < low) or (
                    self.end_ns is not None and lo >= self.end_ns
                ):
                    continue
                run = _Run(lo, hi, self._seq, index, path, rg, offset, rows, columns)
                heapq.heappush(self._pending, run)
                self._seq += 1
        self._after[index] = low
        return index

    @property
    def will_read(self) -> bool:
        """Whether the next :meth:`next_step` reads from a file (slow: run it in a thread)."""
        if not self._open:
            return bool(self._pending)
        horizon = min(self._chunk_end(run) for run in self._open)
        return bool(self._pending) and self._pending[0].min_ns <= horizon

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
        only_events = self.event_columns and not is_account_type(cls) and bool(run.columns)
        try:
            # polars reads Parquet several times faster than pyarrow does here
            # (docs/performance.md#replay); the slice of one row group reads just that row group
            lazy = _scan(run.path)
            if only_events:  # not decoding a column no event is built from
                lazy = lazy.select(_event_columns(cast("type[Event]", cls), run.columns))
            frame = lazy.slice(run.offset, run.rows).collect()
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise StorageError(f"cannot read {str(run.path)!r}: {exc}") from exc
        # one chunk: to_numpy() without copies
        frame = conform(frame, cls, recv_ns=not only_events).rechunk()
        values = _ns_values(frame)
        if len(values) > 1 and bool(np.any(values[1:] < values[:-1])):
            frame = frame.sort(RECV_EXACT_COLUMN, maintain_order=True)
            values = _ns_values(frame)
        low, high = self._after.get(run.type_index), self.end_ns
        if low is not None or high is not None:
            first = 0 if low is None else int(np.searchsorted(values, low, side="left"))
            last = len(values) if high is None else int(np.searchsorted(values, high, "left"))
            frame, values = frame.slice(first, max(last - first, 0)), values[first:last]
        self.rows_read += frame.height
        if frame.height:
            run.batch, run.recv, run.pos = frame, values, 0
            self._open.append(run)


def _ns_values(frame: pl.DataFrame) -> np.ndarray[Any, np.dtype[np.int64]]:
    return frame.get_column(RECV_EXACT_COLUMN).to_numpy().astype(np.int64, copy=False)


def _event_columns(cls: type[Event], columns: tuple[str, ...]) -> list[str]:
    """The columns of a file with ``columns`` that ``cls`` events are built from, and its exact
    receipt time (``recv_epoch_ns``, or schema version 1's nanosecond ``recv_ns``)."""
    receipt = RECV_EXACT_COLUMN if RECV_EXACT_COLUMN in columns else RECV_COLUMN
    fields = _event_schema(cls)
    return [c for c in columns if c == receipt or (c in fields and c != RECV_EXACT_COLUMN)]


@functools.cache
def _event_schema(cls: type[Event]) -> pl.Schema:
    """:func:`polars_schema` without the microsecond ``recv_ns`` (events never use it)."""
    return pl.Schema([(n, t) for n, t in polars_schema(cls).items() if n != RECV_COLUMN])


def _row_group_bounds(path: Path | str) -> list[tuple[int, int, int, int, int]]:
    """``(row group, first row, rows, min recv_ns, max recv_ns)`` of every non-empty row group."""
    return _file_bounds(path)[1]


def _file_bounds(path: Path | str) -> tuple[tuple[str, ...], list[tuple[int, int, int, int, int]]]:
    """The file's column names, and :func:`_row_group_bounds`."""
    try:
        meta = _open(path).metadata
        columns = tuple(meta.schema.to_arrow_schema().names)
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"cannot read {str(path)!r}: {exc}") from exc
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    if RECV_COLUMN not in names:
        raise SchemaError(f"{str(path)!r} has no {RECV_COLUMN} column: not a tastyrec recording")
    # the exact receipt time; schema version 1 has it in recv_ns (nanoseconds)
    name = RECV_EXACT_COLUMN if RECV_EXACT_COLUMN in names else RECV_COLUMN
    col = names.index(name)
    bounds = []
    offset = 0
    for rg in range(meta.num_row_groups):
        group = meta.row_group(rg)
        rows = group.num_rows
        if rows:
            stats = group.column(col).statistics
            if stats is not None and stats.has_min_max:
                lo, hi = int(stats.min_raw), int(stats.max_raw)
            else:  # no statistics: read the column once
                recv = _open(path).read_row_group(rg, columns=[name]).column(0)
                ints = recv.cast(pa.int64())
                lo, hi = int(pc.min(ints).as_py()), int(pc.max(ints).as_py())
            bounds.append((rg, offset, rows, lo, hi))
        offset += rows
    return columns, bounds


def conform(frame: pl.DataFrame, cls: RecordClass, *, recv_ns: bool = True) -> pl.DataFrame:
    """``frame`` with exactly the columns of ``polars_schema(cls)``, in order (without
    ``recv_ns`` if not ``recv_ns``: a market event's fields and ``recv_epoch_ns``).

    A missing column gets the field's default value; an extra column is dropped; a column of
    another type is cast (``SchemaError`` if it cannot be). For an account payload class the
    schema is ``account_polars_schema(cls)`` and a missing column is null.
    """
    if RECV_EXACT_COLUMN not in frame.columns:  # schema version 1's receipt time
        frame = upgrade_frame(frame, frame.columns)
    if is_account_type(cls):
        return _conform_account(frame, cast("type[AccountRecord]", cls))
    cls = cast("type[Event]", cls)
    schema = polars_schema(cls) if recv_ns else _event_schema(cls)
    if frame.schema == schema:
        return frame
    defaults = {f.name: f.default for f in spec(cls).fields}
    exprs = []
    for name, dtype in schema.items():
        if name in frame.columns:
            exprs.append(pl.col(name).cast(dtype, strict=True))
        elif name in defaults:
            default = defaults[name]
            exprs.append(pl.lit(default, dtype=dtype).alias(name))
        else:
            raise SchemaError(f"{cls.__name__} rows without {name!r}")
    try:
        return frame.select(exprs)
    except pl.exceptions.PolarsError as exc:
        raise SchemaError(f"{cls.__name__} columns of unexpected types: {exc}") from None


def _conform_account(frame: pl.DataFrame, cls: type[AccountRecord]) -> pl.DataFrame:
    schema = account_polars_schema(cls)
    if frame.schema == schema:
        return frame
    exprs = [
        pl.col(name).cast(dtype, strict=True)
        if name in frame.columns
        else pl.lit(None, dtype=dtype).alias(name)
        for name, dtype in schema.items()
    ]
    try:
        return frame.select(exprs)
    except pl.exceptions.PolarsError as exc:
        raise SchemaError(f"{cls.__name__} columns of unexpected types: {exc}") from None


def merge_order(
    pieces: Sequence[Piece] | Sequence[np.ndarray[Any, np.dtype[np.int64]]],
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Interleave ``pieces`` (or their receipt-time arrays) by receipt time: ``(piece index,
    row)`` of each row, in order.

    Stable: rows with equal receipt times stay in piece order (type order, then file order),
    and within a piece in their own order.
    """
    if not pieces:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    times = [p.recv if isinstance(p, Piece) else p for p in pieces]
    recv = np.concatenate(times)
    which = np.concatenate([np.full(len(t), i, dtype=np.int64) for i, t in enumerate(times)])
    rows = np.concatenate([np.arange(len(t), dtype=np.int64) for t in times])
    order = np.argsort(recv, kind="stable")
    return which[order], rows[order]


def to_events(cls: RecordClass, frame: pl.DataFrame) -> list[Any]:
    """The rows of a conformed frame as ``cls`` Structs, bit-exact (NaN and infinities kept).

    Wire times come back as the integer milliseconds the server sent. Account payloads come
    back with their exact Decimals (the same values, at the stored scale) and nested lists.
    """
    if is_account_type(cls):
        rows = account_events_from_arrow(cast("type[AccountRecord]", cls), frame.to_arrow())
        return [event for event, _, _ in rows]
    s = spec(cast("type[Event]", cls))
    n = frame.height
    columns = [
        _column(f.kind, f.default, series, n)
        for f, series in zip(s.fields, frame.iter_columns(), strict=False)
    ]
    return list(map(cls, *columns))


def _column(kind: FieldKind, default: Any, series: pl.Series, n: int) -> Iterable[Any]:
    """One column's Python values, whole: no per-value Python code, and none of polars'
    expression-backed Series methods (``to_physical``, ``fill_null``: ~0.4 ms each) unless
    the column has nulls (only files of another schema version have)."""
    if kind is FieldKind.STRING:
        return series.to_list()
    if series.null_count():
        series = series.to_physical().fill_null(default)
    if kind is FieldKind.BOOL:
        return series.to_list()
    values = series.to_numpy()
    if values.dtype.kind == "M":  # TIME_MS: datetime64[ms] -> the integer ms, no copy
        values = values.view(np.int64)
    if n and values[0] == values[-1] and bool((values == values[0]).all()):
        return itertools.repeat(values[0].item(), n)  # e.g. event_time, all 0
    return cast("list[Any]", values.tolist())
