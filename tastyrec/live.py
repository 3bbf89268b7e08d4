"""LiveFrame: a bounded in-memory polars frame of the recent events of one event type.

The recorder hands every Arrow RecordBatch it records (schema :func:`~tastyrec.schema.arrow_schema`)
to :meth:`LiveFrame.add`; user code reads :meth:`LiveFrame.frame` (the recent window) and
:meth:`LiveFrame.latest` (the newest row of every symbol seen) whenever it likes.

This module is pure: it imports no I/O (no anyio, sockets or files). The clock is injected, and
it is only used to decide which rows are older than ``max_age_s``.

Theory of operation:

* **Lazy.** :meth:`LiveFrame.add` runs for every batch the recorder writes, so it does almost
  nothing: it keeps the Arrow batch (zero-copy) and applies the bounds. Polars frames are built
  only when :meth:`~LiveFrame.frame` or :meth:`~LiveFrame.latest` is called. (Converting every
  batch to polars on arrival cost the recorder a third of its throughput.)
* **Window.** A deque of Arrow batches. Batches smaller than 4096 rows are gathered and combined
  into one, so a stream of tiny batches never leaves thousands of pieces to concatenate.
* **Row bound.** It drops the oldest batches and slices the oldest one (zero-copy): memory is
  bounded by ``max_rows`` plus one batch.
* **Age bound.** Whole batches whose newest ``recv_ns`` is older than the cutoff are dropped on
  every add and frame(); :meth:`~LiveFrame.frame` filters the rows of a batch that is partly old.
* **Latest row per symbol.** Added batches are also queued; the queue is folded into the
  per-symbol state (one row per symbol) when it holds 65,536 rows or as many as the state, or
  256 batches (so a slow type's queue never outlives the window by minutes), or
  when :meth:`~LiveFrame.latest` is called: a polars ``group_by`` over the state and the queue
  keeps the last row of each symbol. Amortised, that is a few tens of ns per row, all in Rust;
  memory is bounded by the number of distinct symbols plus the queue.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, cast

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from .events.base import Event
from .exceptions import SchemaError
from .schema import RECV_EXACT_COLUMN, arrow_schema, polars_schema

__all__ = ("LiveFrame",)

#: batches smaller than this are combined with their neighbours in the window
_COALESCE_ROWS: Final = 4096
#: rows queued for latest() before they are folded into the per-symbol state
_FOLD_ROWS: Final = 65_536
#: ... or batches: a slow type (100 rows/s, 20 batches/s) would otherwise keep ~10 minutes of
#: small batches alive, far beyond the window, each with its own buffers (the soak's RSS growth)
_FOLD_BATCHES: Final = 256

_SYMBOL: Final = "event_symbol"


@dataclass
class _Piece:
    batch: pa.RecordBatch
    #: smallest and largest recv_ns when the piece was made (a front slice keeps them as bounds)
    min_ns: int
    max_ns: int


class LiveFrame:
    """The recent events of one event type as a polars DataFrame, bounded by rows and by age.

    Args:
        event_type: the event class whose batches are added (schema ``arrow_schema(event_type)``).
        max_rows: keep at most this many of the newest rows; ``None`` for no row bound.
        max_age_s: keep rows whose ``recv_ns`` is at most this many seconds older than
            ``clock()``; ``None`` for no age bound.
        clock: epoch nanoseconds now (injected for tests); compared with ``recv_ns``.

    Raises:
        ValueError: both bounds are ``None``, or a bound is not positive.

    Not thread-safe: add and read from one thread (the recorder's event loop).

    Example usage::

        live = LiveFrame(Quote, max_rows=50_000, max_age_s=60)
        live.add(batch)                                # each recorded pa.RecordBatch of Quotes
        spy = live.frame().filter(pl.col("event_symbol") == "SPY")
        board = live.latest()                          # one row per symbol ever seen
    """

    def __init__(
        self,
        event_type: type[Event],
        *,
        max_rows: int | None = 100_000,
        max_age_s: float | None = 300.0,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if max_rows is None and max_age_s is None:
            raise ValueError("LiveFrame needs max_rows or max_age_s (or both)")
        if max_rows is not None and max_rows <= 0:
            raise ValueError(f"max_rows must be positive, not {max_rows!r}")
        if max_age_s is not None and not max_age_s > 0:
            raise ValueError(f"max_age_s must be positive, not {max_age_s!r}")
        self.event_type = event_type
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self._max_age_ns = None if max_age_s is None else round(max_age_s * 1e9)
        self._clock = clock
        self._arrow_schema: pa.Schema = arrow_schema(event_type)
        self._schema = polars_schema(event_type)
        # the exact receipt time (epoch ns), compared with the clock
        self._recv_index: int = self._arrow_schema.get_field_index(RECV_EXACT_COLUMN)
        self._pieces: collections.deque[_Piece] = collections.deque()
        self._small: list[_Piece] = []  # newest small batches, not combined yet
        self._small_rows = 0
        self._rows = 0
        # latest(): the folded state (one row per symbol, in order of that row's arrival) and
        # the batches added since
        self._latest = pl.DataFrame(schema=self._schema)
        self._queue: list[pa.RecordBatch] = []
        self._queue_rows = 0

    @property
    def rows(self) -> int:
        """Rows currently held in the window.

        Batches that aged out are released on the next :meth:`add` or :meth:`frame`, so this
        can briefly include rows that :meth:`frame` would no longer return.
        """
        return self._rows

    def add(self, batch: pa.RecordBatch) -> None:
        """Append one recorded batch (rows in arrival order) and apply both bounds.

        O(1) for the batch's data (nothing is copied or converted here), amortised.

        Raises:
            SchemaError: the batch's schema is not ``arrow_schema(event_type)``, or it has a
                null symbol or receipt time.
        """
        if not batch.schema.equals(self._arrow_schema):
            raise SchemaError(
                f"batch schema does not match {self.event_type.__name__}: {batch.schema!r}"
            )
        n = int(batch.num_rows)
        if n == 0:
            return
        recv = batch.column(self._recv_index)
        if recv.null_count or batch.column(0).null_count:
            raise SchemaError(f"{self.event_type.__name__} batch with null {_SYMBOL} or recv_ns")
        bounds = pc.min_max(recv)
        piece = _Piece(batch, bounds["min"].as_py(), bounds["max"].as_py())
        self._queue.append(batch)
        self._queue_rows += n
        if (
            self._queue_rows >= max(_FOLD_ROWS, self._latest.height)
            or len(self._queue) >= _FOLD_BATCHES
        ):
            self._fold()
        cutoff = self._cutoff()
        self._trim_age(cutoff)
        if n < _COALESCE_ROWS:
            self._small.append(piece)
            self._small_rows += n
            if self._small_rows >= _COALESCE_ROWS or len(self._small) >= 64:
                self._combine_small()
        else:
            self._combine_small()
            self._pieces.append(piece)
        self._rows += n
        self._trim_rows()
        self._trim_age(cutoff)  # a batch that arrives already too old

    def frame(self) -> pl.DataFrame:
        """The rows within both bounds, oldest first, as one DataFrame.

        The schema is ``polars_schema(event_type)``, also when there are no rows.
        """
        cutoff = self._cutoff()
        self._trim_age(cutoff)
        self._combine_small()
        batches = [p.batch for p in self._pieces]
        if not batches:
            return pl.DataFrame(schema=self._schema)
        table = pa.Table.from_batches(batches, self._arrow_schema)
        frame = cast(pl.DataFrame, pl.from_arrow(table, rechunk=True))
        if cutoff is not None and self._pieces[0].min_ns < cutoff:
            frame = frame.filter(pl.col(RECV_EXACT_COLUMN) >= cutoff)
        return frame

    def latest(self) -> pl.DataFrame:
        """The newest row (by arrival) of every symbol added so far, one row per symbol.

        Not limited by the window: a symbol that has been quiet for longer than ``max_age_s``
        keeps its last row. Rows are ordered by the arrival of that last row, oldest first.
        """
        self._fold()
        return self._latest.clone()

    # -- internals -----------------------------------------------------------------------------

    def _cutoff(self) -> int | None:
        return None if self._max_age_ns is None else self._clock() - self._max_age_ns

    def _combine_small(self) -> None:
        if not self._small:
            return
        small, rows, self._small, self._small_rows = self._small, self._small_rows, [], 0
        if self._pieces and self._pieces[-1].batch.num_rows + rows <= _COALESCE_ROWS:
            small.insert(0, self._pieces.pop())  # keep growing the newest small piece
        if len(small) == 1:
            self._pieces.append(small[0])
            return
        table = pa.Table.from_batches([p.batch for p in small], self._arrow_schema)
        batch = table.combine_chunks().to_batches()[0]
        lo = min(p.min_ns for p in small)
        hi = max(p.max_ns for p in small)
        self._pieces.append(_Piece(batch, lo, hi))

    def _trim_rows(self) -> None:
        if self.max_rows is None:
            return
        excess = self._rows - self.max_rows
        while excess > 0:
            if not self._pieces:
                self._combine_small()
            oldest = self._pieces[0]
            height = int(oldest.batch.num_rows)
            if height <= excess:
                self._pieces.popleft()
                self._rows -= height
                excess -= height
            else:
                oldest.batch = oldest.batch.slice(excess)
                self._rows -= excess
                excess = 0

    def _trim_age(self, cutoff: int | None) -> None:
        if cutoff is None:
            return
        # whole batches only, from the oldest; a partly old batch is filtered by frame()
        while self._pieces and self._pieces[0].max_ns < cutoff:
            self._rows -= int(self._pieces.popleft().batch.num_rows)
        if not self._pieces and self._small and max(p.max_ns for p in self._small) < cutoff:
            self._rows -= self._small_rows
            self._small, self._small_rows = [], 0

    def _fold(self) -> None:
        if not self._queue:
            return
        queue, self._queue, self._queue_rows = self._queue, [], 0
        added = cast(pl.DataFrame, pl.from_arrow(pa.Table.from_batches(queue, self._arrow_schema)))
        both = pl.concat([self._latest, added], rechunk=False)
        # the position of each symbol's last row, in arrival order of those rows
        last = (
            both.select(_SYMBOL)
            .with_row_index("i")
            .group_by(_SYMBOL)
            .agg(pl.col("i").max())
            .get_column("i")
            .sort()
        )
        self._latest = both[last].rechunk()
