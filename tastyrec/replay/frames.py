"""The vectorised replay path: a recording as polars DataFrames in receipt order, chunk by chunk.

For backtests that work on columns rather than on one event at a time. The same merge as the
:class:`~tastyrec.replay.ReplayStreamer` (:class:`~tastyrec.replay.reader.Timeline`), without
building any per-event object: every frame's rows were received at or after every row of the
frames before it, and memory is bounded by ``chunk_rows`` (plus the row groups being read), not
by the size of the recording.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Final

import polars as pl

from .. import _time
from .._time import TimeLike
from ..catalog import existing_location
from ..events.base import Event
from ..schema import RECV_EXACT_COLUMN
from .reader import Timeline

__all__ = ("replay_frames",)

#: Default rows per open file run per frame.
DEFAULT_FRAME_ROWS: Final = 65_536
#: Column naming the event type of each row when several types are replayed together.
TYPE_COLUMN: Final = "event_type"


def replay_frames(
    path: str | Path,
    event_types: type[Event] | Sequence[type[Event]],
    *,
    symbols: Iterable[str] | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    chunk_rows: int = DEFAULT_FRAME_ROWS,
) -> Iterator[pl.DataFrame]:
    """Iterate a recording as polars DataFrames in receipt order.

    Args:
        path: the recording folder.
        event_types: one event class -- frames have its columns (``polars_schema``) -- or
            several: frames then have every column of all of them (null where a type has no
            such column) and an ``event_type`` column, rows interleaved by receipt time (ties in
            the order the types are given).
        symbols: only these ``event_symbol`` values (default: all).
        start: rows received at or after this (datetime, date, ISO string or epoch ns; naive
            times are New York time: :mod:`tastyrec._time`).
        end: ... and before this (a date: up to the end of that New York day).
        chunk_rows: rows taken from each file being read per frame (frames are about this big).

    Example usage::

        for quotes in replay_frames("data", Quote, symbols=["SPY"]):
            mids = (quotes["bid_price"] + quotes["ask_price"]) / 2
            ...

    Raises:
        RecordingNotFound: there is no folder at ``path`` (raised at the first ``next()``).
        UnsupportedLocation: ``path`` is a URL.
        StorageError: a file cannot be read.
    """
    classes: list[type[Event]] = (
        [event_types] if isinstance(event_types, type) else list(event_types)
    )
    several = not isinstance(event_types, type)
    timeline = Timeline(
        existing_location(path),
        classes,
        start_ns=_time.start_ns(start),
        end_ns=_time.end_ns(end),
        chunk_rows=chunk_rows,
    )
    wanted = None if symbols is None else sorted(set(symbols))
    while (step := timeline.next_step()) is not None:
        frames = []
        for piece in step.pieces:
            frame = piece.batch
            if wanted is not None:
                frame = frame.filter(pl.col("event_symbol").is_in(wanted))
                if not frame.height:
                    continue
            if several:
                name = timeline.event_types[piece.type_index].__name__
                frame = frame.with_columns(pl.lit(name).alias(TYPE_COLUMN))
            frames.append((piece.recv, frame))
        if not frames:
            continue
        if len(frames) == 1:
            yield frames[0][1]
            continue
        combined = pl.concat(
            [f for _, f in frames], how="diagonal_relaxed" if several else "vertical"
        )
        # pieces that follow one another in time (a row group and the next) need no sort
        ordered = all(
            len(a) == 0 or len(b) == 0 or a[-1] <= b[0]
            for (a, _), (b, _) in zip(frames, frames[1:], strict=False)
        )
        yield combined if ordered else combined.sort(RECV_EXACT_COLUMN, maintain_order=True)
