"""The replay engine: one cursor over a recording and one pacer, for every replay that hands out
events one by one (:class:`~tastyrec.replay.ReplayStreamer`, and ``tastyrec serve``'s
:class:`~tastyrec.replay.feed.ReplayFeed`).

* :class:`Cursor` -- *what* comes next: the recording's timeline (:class:`.reader.Timeline`) of
  the subscribed types, filtered to the subscriptions, built into Structs a whole column at a
  time and merged by receipt time (stable: ties keep the order of the types subscribed, then
  file order). It hands out :class:`Batch` es, each later than (or as late as) the one before.
* :class:`Pacer` -- *when* it is due: the anchor arithmetic between the wall clock (seconds) and
  recorded time (epoch ns). A speed mode is one subclass: :class:`AsFastAsPossible`,
  :class:`RealTime` (``speed`` times real time); :func:`pacer` picks one for a ``speed``.

Neither does I/O beyond the cursor reading Parquet files (in the caller's thread: an async
caller runs :meth:`Cursor.next_step` in a worker thread when :attr:`Cursor.will_read`), and
neither awaits or sleeps: callers do, for as long as :meth:`Pacer.delay` says.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from ..storage.account_schema import is_account_type
from .reader import RecordClass, Step, Timeline, merge_order, table_name, to_events

if TYPE_CHECKING:
    from ..objectstore import S3Location

__all__ = (
    "ACCOUNT_COLUMN",
    "WILDCARD",
    "AsFastAsPossible",
    "Batch",
    "Cursor",
    "Pacer",
    "RealTime",
    "pacer",
)

_NS: Final = 1_000_000_000
#: subscribe to every symbol (or account) of a type
WILDCARD: Final = "*"
#: the column account-table subscriptions filter on (market events: ``event_symbol``)
ACCOUNT_COLUMN: Final = "account_number"

Times = np.ndarray[Any, np.dtype[np.int64]]  # receipt times, epoch ns


@dataclass(eq=False, slots=True)
class Batch:
    """A step's events, filtered and built, in receipt order; ``pos`` of them handed out."""

    recv: Times  # receipt time of each event, ascending
    events: list[Any]
    types: Times  # index (in Cursor.event_types) of each event's class
    #: the one type index of every event, if they are all of one type (no mask needed)
    only: int | None
    pos: int = 0

    @property
    def left(self) -> int:
        """Events not handed out yet."""
        return len(self.events) - self.pos

    def next_ns(self) -> int:
        """The receipt time of the next event (there must be one)."""
        return int(self.recv[self.pos])

    def stop_before(self, ns: int) -> int:
        """The index of the first event received at or after ``ns``."""
        return int(np.searchsorted(self.recv, ns, "left"))

    def stop_after(self, ns: float) -> int:
        """The index of the first event received after ``ns`` (``math.inf``: the end; finite
        values must be ints, as a float is not exact at epoch-ns magnitudes)."""
        if ns == math.inf:
            return len(self.events)
        if ns == -math.inf:
            return 0
        return int(np.searchsorted(self.recv, int(ns), "right"))

    def take(self, stop: int) -> tuple[list[Any], Times, Times]:
        """(events, their type indices, their receipt times) from ``pos`` to ``stop``; moves
        ``pos`` there. The whole batch at once is not copied."""
        start, self.pos = self.pos, stop
        if start == 0 and stop == len(self.events):
            return self.events, self.types, self.recv
        return self.events[start:stop], self.types[start:stop], self.recv[start:stop]


class Cursor:
    """A recording's events of the subscribed types and symbols, in receipt order, a step at a
    time.

    Args:
        root: the recording folder.
        start_ns: events received at or after this (epoch ns).
        end_ns: ... and before this.
        chunk_rows: rows read per open file run per step (see :class:`.reader.Timeline`).

    A class is read from its first :meth:`subscribe` on, from the receipt time reached then
    (subscribing during a replay delivers the events received from then on). Market events
    are filtered on ``event_symbol``, account payloads on ``account_number``; ``"*"`` keeps
    every row; classes without the column (``QuoteAlert``...) are kept whole once subscribed.
    """

    def __init__(
        self,
        root: Path | S3Location,
        *,
        start_ns: int | None,
        end_ns: int | None,
        chunk_rows: int,
    ) -> None:
        self.timeline = Timeline(
            root, [], start_ns=start_ns, end_ns=end_ns, chunk_rows=chunk_rows, event_columns=True
        )
        #: class -> the symbols (account numbers) subscribed; an empty set reads nothing
        self.subscriptions: dict[RecordClass, set[str]] = {}

    @property
    def event_types(self) -> list[RecordClass]:
        """The classes read so far; a :class:`Batch`'s ``types`` index this list."""
        return self.timeline.event_types

    @property
    def will_read(self) -> bool:
        """Whether the next :meth:`next_step` reads from a file (slow: run it in a thread)."""
        return self.timeline.will_read

    @property
    def exhausted(self) -> bool:
        """Whether every step has been read."""
        return self.timeline.exhausted

    @property
    def horizon_ns(self) -> int | None:
        """The receipt time of the latest row read so far (every row still to come is later)."""
        return self.timeline.horizon_ns

    def subscribe(self, cls: RecordClass, names: Iterable[str]) -> None:
        """Read ``cls`` rows of these symbols (account numbers, ``"*"``) from now on.

        Raises:
            SchemaError: ``cls`` is never recorded.
        """
        table_name(cls)
        self.subscriptions.setdefault(cls, set()).update(names)
        self.timeline.add_type(cls, self.timeline.horizon_ns)

    def unsubscribe(self, cls: RecordClass, names: Iterable[str]) -> None:
        """Stop keeping these symbols (account numbers) of ``cls``."""
        subs = self.subscriptions.get(cls)
        if subs is not None:
            subs.difference_update(names)

    def unsubscribe_all(self, cls: RecordClass) -> None:
        """Stop keeping ``cls``."""
        self.subscriptions.pop(cls, None)

    def next_step(self) -> Step | None:
        """The next step of the timeline, unfiltered (``None`` at the end): may read files."""
        return self.timeline.next_step()

    def next_batch(self) -> Batch | None:
        """:meth:`decode` of :meth:`next_step` (``None`` at the end)."""
        step = self.timeline.next_step()
        return None if step is None else self.decode(step)

    def decode(self, step: Step) -> Batch:
        """A step filtered to the subscriptions, built into Structs and merged by receipt time
        (stable); empty if nothing in it is subscribed."""
        classes = self.timeline.event_types
        kept: list[tuple[int, list[Any], Times]] = []  # (type index, events, receipt times)
        for piece in step.pieces:
            cls = classes[piece.type_index]
            names = self.subscriptions.get(cls)
            if not names:
                continue
            batch, recv = piece.batch, piece.recv
            column = ACCOUNT_COLUMN if is_account_type(cls) else "event_symbol"
            if WILDCARD not in names and column in batch.columns:
                mask = batch.get_column(column).is_in(list(names))
                keep = mask.to_numpy()
                if not keep.all():
                    batch, recv = batch.filter(mask), recv[keep]
            if batch.height:
                kept.append((piece.type_index, to_events(cls, batch), recv))
        if not kept:
            empty = np.empty(0, np.int64)
            return Batch(empty, [], empty, None)
        indices = {index for index, _, _ in kept}
        only = next(iter(indices)) if len(indices) == 1 else None
        if len(kept) == 1:
            index, events, recv = kept[0]
            return Batch(recv, events, np.full(len(events), index, np.int64), only)
        which, rows = merge_order([recv for _, _, recv in kept])
        built = [events for _, events, _ in kept]
        events = [built[w][r] for w, r in zip(which.tolist(), rows.tolist(), strict=True)]
        recv = np.sort(np.concatenate([recv for _, _, recv in kept]), kind="stable")
        types = np.array([index for index, _, _ in kept], np.int64)[which]
        return Batch(recv, events, types, only)


class Pacer:
    """When recorded events are due: the arithmetic between the wall clock (seconds, of any
    monotonic clock) and recorded time (epoch ns), from an anchor (a wall time and the recorded
    time that is due then). Nothing is due before the anchor's wall time.

    Subclasses are the speed modes; every method but :meth:`start` needs the anchor.
    """

    __slots__ = ("anchor",)

    def __init__(self) -> None:
        #: (wall seconds, recorded epoch ns) that are the same moment; ``None`` until started
        self.anchor: tuple[float, int] | None = None

    @property
    def started(self) -> bool:
        """Whether the anchor is set."""
        return self.anchor is not None

    def start(self, wall: float, recorded_ns: int) -> None:
        """Anchor: ``recorded_ns`` is due at ``wall`` (once; later calls change nothing)."""
        if self.anchor is None:
            self.anchor = (wall, recorded_ns)

    def reached(self, wall: float) -> float:
        """The recorded time due by ``wall``: every event received at or before it is due.
        An int when finite; ``-inf`` before the anchor, ``inf`` if everything is."""
        raise NotImplementedError

    def wall_at(self, ns: int) -> float:
        """The wall time at which ``ns`` is due (never before the anchor)."""
        raise NotImplementedError

    def delay(self, ns: int, wall: float) -> float:
        """Seconds from ``wall`` until ``ns`` is due (0 if it is)."""
        raise NotImplementedError

    def _anchor(self) -> tuple[float, int]:
        if self.anchor is None:
            raise RuntimeError("the pacer has not been started")
        return self.anchor


class AsFastAsPossible(Pacer):
    """Everything is due from the anchor on (``speed=math.inf``)."""

    __slots__ = ()

    def reached(self, wall: float) -> float:
        return math.inf if wall >= self._anchor()[0] else -math.inf

    def wall_at(self, ns: int) -> float:
        return self._anchor()[0]

    def delay(self, ns: int, wall: float) -> float:
        return max(0.0, self._anchor()[0] - wall)


class RealTime(Pacer):
    """Recorded time runs ``speed`` times as fast as the wall clock (1.0: real time)."""

    __slots__ = ("speed",)

    def __init__(self, speed: float) -> None:
        if not 0 < speed < math.inf:
            raise ValueError(f"speed must be positive and finite, not {speed!r}")
        super().__init__()
        self.speed = speed

    def reached(self, wall: float) -> float:
        start, recorded = self._anchor()
        if wall < start:
            return -math.inf
        return recorded + math.floor((wall - start) * self.speed * _NS)

    def wall_at(self, ns: int) -> float:
        start, recorded = self._anchor()
        return max(start, start + (ns - recorded) / self.speed / _NS)

    def delay(self, ns: int, wall: float) -> float:
        start, _ = self._anchor()
        if wall < start:
            return start - wall + max(0.0, self.wall_at(ns) - start)
        reached = self.reached(wall)
        return 0.0 if reached >= ns else (ns - reached) / self.speed / _NS


def pacer(speed: float) -> Pacer:
    """The pacer of a replay speed: ``math.inf`` as fast as possible, else ``speed`` times
    real time.

    Raises:
        ValueError: ``speed`` is not positive.
    """
    if not speed > 0:
        raise ValueError(f"speed must be positive, not {speed!r}")
    return AsFastAsPossible() if speed == math.inf else RealTime(speed)
