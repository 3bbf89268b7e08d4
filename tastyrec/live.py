"""LiveFrame: a bounded in-memory polars frame of the recent events of one event type.

The recorder hands every Arrow RecordBatch it records (schema :func:`~tastyrec.schema.arrow_schema`)
to :meth:`LiveFrame.add`; user code reads :meth:`LiveFrame.frame` (the recent window) and
:meth:`LiveFrame.latest` (the newest row of every symbol seen) whenever it likes.

This module is pure: it imports no I/O (no anyio, sockets or files). The clock is injected, and
it is only used to decide which rows are older than ``max_age_s``.

Theory of operation:

* **Window.** Each batch becomes a polars DataFrame (``pl.from_arrow``: zero-copy for numbers,
  one pass for strings) appended to a deque of chunks. A small batch is linked into the newest
  chunk (``vstack``, rechunked every 32 batches) while that chunk stays within 4096 rows, so a
  stream of tiny batches does not leave thousands of frames for :meth:`~LiveFrame.frame` to
  concatenate; an add copies at most 4096 rows, never the whole window.
* **Row bound.** It drops the oldest chunks and slices the oldest one partially. The slice is
  zero-copy, so the sliced-off rows stay in memory until their chunk goes: memory is bounded by
  ``max_rows`` plus one chunk.
* **Age bound.** Whole chunks whose newest ``recv_ns`` is older than the cutoff are dropped on
  every add and frame(); :meth:`~LiveFrame.frame` filters the rows of a chunk that is partly old.
* **Latest row per symbol.** Symbols get dense integer ids from a dict (one C-level ``map`` per
  batch; Python work only for symbols seen for the first time). Each added frame is queued with
  its ids; the frame is shared with the window, so queuing copies nothing. The queue is merged
  into the per-symbol state when it holds as many rows as the state (at least 4096) or 32
  frames, or when :meth:`~LiveFrame.latest` is called. A merge finds the last occurrence of
  each id with ``numpy.maximum.at`` (hashing the symbol strings again costs several times more)
  and gathers those rows once. Merges are amortised O(rows added). Memory is bounded by the
  number of distinct symbols: state and queue each hold about one row per symbol (or 4096),
  plus one batch.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from .events.base import Event
from .exceptions import SchemaError
from .schema import RECV_COLUMN, arrow_schema, polars_schema

__all__ = ("LiveFrame",)

#: chunks smaller than this are merged with the next batch; also the smallest latest() merge
_COALESCE_ROWS: Final = 4096

#: most polars chunks in a window chunk, and most frames queued for latest(): concatenating
#: many tiny frames costs far more per row than a few large ones
_MAX_PARTS: Final = 32

_SYMBOL: Final = "event_symbol"
_Ids = npt.NDArray[np.int64]


@dataclass
class _Chunk:
    frame: pl.DataFrame
    #: smallest and largest recv_ns when the chunk was made (a front slice keeps them as bounds)
    min_ns: int
    max_ns: int


def _last_mask(ids: _Ids, n_ids: int) -> npt.NDArray[np.bool_]:
    """True at the last occurrence of each id in ``ids`` (ids are in ``range(n_ids)``)."""
    n = len(ids)
    last = np.full(n_ids, -1, dtype=np.int64)
    # ufunc.at is unbuffered: the largest position of each id wins, whatever the order
    np.maximum.at(last, ids, np.arange(n, dtype=np.int64))
    keep = np.zeros(n, dtype=np.bool_)
    keep[last[last >= 0]] = True
    return keep


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
        self._recv_index: int = self._arrow_schema.get_field_index(RECV_COLUMN)
        self._chunks: collections.deque[_Chunk] = collections.deque()
        self._rows = 0
        # latest(): symbol -> dense id; the merged state; added frames not merged yet
        self._ids: dict[str, int] = {}
        self._latest = pl.DataFrame(schema=self._schema)
        self._latest_ids: _Ids = np.zeros(0, dtype=np.int64)
        self._pending: list[tuple[pl.DataFrame, _Ids]] = []
        self._pending_rows = 0

    @property
    def rows(self) -> int:
        """Rows currently held in the window.

        Chunks that aged out are released on the next :meth:`add` or :meth:`frame`, so this can
        briefly include rows that :meth:`frame` would no longer return.
        """
        return self._rows

    def add(self, batch: pa.RecordBatch) -> None:
        """Append one recorded batch (rows in arrival order) and apply both bounds.

        Amortised O(rows in the batch): the window is never concatenated here.

        Raises:
            SchemaError: the batch's schema is not ``arrow_schema(event_type)``.
        """
        if not batch.schema.equals(self._arrow_schema):
            raise SchemaError(
                f"batch schema does not match {self.event_type.__name__}: {batch.schema!r}"
            )
        n = int(batch.num_rows)
        if n == 0:
            return
        recv_col = batch.column(self._recv_index)
        if recv_col.null_count or batch.column(0).null_count:
            raise SchemaError(f"{self.event_type.__name__} batch with null {_SYMBOL} or recv_ns")
        recv: npt.NDArray[np.int64] = recv_col.view(pa.int64()).to_numpy(zero_copy_only=True)
        frame = cast(pl.DataFrame, pl.from_arrow(batch))  # a RecordBatch gives a DataFrame
        self._add_latest(frame)
        cutoff = self._cutoff()
        self._trim_age(cutoff)  # first, so that old rows are not coalesced into a new chunk
        min_ns, max_ns = int(recv.min()), int(recv.max())
        last = self._chunks[-1] if self._chunks else None
        if last is not None and last.frame.height + n <= _COALESCE_ROWS:
            # vstack only links the new columns in; copy once every _MAX_PARTS batches
            last.frame = last.frame.vstack(frame)
            if last.frame.n_chunks() > _MAX_PARTS:
                last.frame = last.frame.rechunk()
            last.min_ns = min(last.min_ns, min_ns)
            last.max_ns = max(last.max_ns, max_ns)
        else:
            self._chunks.append(_Chunk(frame, min_ns, max_ns))
        self._rows += n
        self._trim_rows()
        self._trim_age(cutoff)  # a batch that arrives already too old

    def frame(self) -> pl.DataFrame:
        """The rows within both bounds, oldest first, as one DataFrame.

        The schema is ``polars_schema(event_type)``, also when there are no rows.
        """
        cutoff = self._cutoff()
        self._trim_age(cutoff)
        parts = []
        for chunk in self._chunks:
            if cutoff is not None and chunk.min_ns < cutoff:
                parts.append(chunk.frame.filter(pl.col(RECV_COLUMN).dt.epoch("ns") >= cutoff))
            else:
                parts.append(chunk.frame)
        if not parts:
            return pl.DataFrame(schema=self._schema)
        return pl.concat(parts, rechunk=True)

    def latest(self) -> pl.DataFrame:
        """The newest row (by arrival) of every symbol added so far, one row per symbol.

        Not limited by the window: a symbol that has been quiet for longer than ``max_age_s``
        keeps its last row. Rows are ordered by the arrival of that last row, oldest first.
        """
        self._merge()
        return self._latest.clone()

    # -- internals -----------------------------------------------------------------------------

    def _cutoff(self) -> int | None:
        return None if self._max_age_ns is None else self._clock() - self._max_age_ns

    def _trim_rows(self) -> None:
        if self.max_rows is None:
            return
        excess = self._rows - self.max_rows
        while excess > 0:
            oldest = self._chunks[0]
            height = oldest.frame.height
            if height <= excess:
                self._chunks.popleft()
                self._rows -= height
                excess -= height
            else:
                oldest.frame = oldest.frame.slice(excess)
                self._rows -= excess
                excess = 0

    def _trim_age(self, cutoff: int | None) -> None:
        if cutoff is None:
            return
        # whole chunks only, from the oldest; a partly old chunk is filtered by frame()
        while self._chunks and self._chunks[0].max_ns < cutoff:
            self._rows -= self._chunks.popleft().frame.height

    def _symbol_ids(self, symbols: list[Any]) -> _Ids:
        ids = self._ids
        found = list(map(ids.get, symbols))
        try:
            return np.fromiter(found, dtype=np.int64, count=len(found))
        except TypeError:  # None: symbols seen for the first time
            pass
        for i in [i for i, id_ in enumerate(found) if id_ is None]:
            found[i] = ids.setdefault(symbols[i], len(ids))
        return np.fromiter(found, dtype=np.int64, count=len(found))

    def _add_latest(self, frame: pl.DataFrame) -> None:
        ids = self._symbol_ids(frame.get_column(_SYMBOL).to_list())
        # queued whole: the frame is shared with the window, and one merge of several batches
        # costs less than reducing each batch on its own
        self._pending.append((frame, ids))
        self._pending_rows += len(ids)
        if (
            self._pending_rows >= max(len(self._latest_ids), _COALESCE_ROWS)
            or len(self._pending) >= _MAX_PARTS
        ):
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        frames = [self._latest, *(f for f, _ in self._pending)]
        ids = np.concatenate([self._latest_ids, *(i for _, i in self._pending)])
        keep = _last_mask(ids, len(self._ids))
        # filter keeps the input chunks; one chunk keeps the next merge and latest() cheap
        self._latest = pl.concat(frames).filter(pl.Series(keep)).rechunk()
        self._latest_ids = ids[keep]
        self._pending.clear()
        self._pending_rows = 0
