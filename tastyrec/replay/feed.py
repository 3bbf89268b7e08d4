"""ReplayFeed: a recording as the event source of the simulator's server (``tastyrec serve``).

The simulator's sans-I/O server (:class:`tastyrec.sim.engine.ServerConnection`) asks its feed for
the events due at each tick; this feed answers from a recording, paced by the receipt times: each
connection gets its own replay, which starts at ``start`` (default: the first event of the
recording) a moment (:data:`SETTLE_S`) after the connection first subscribes, and runs at
``speed`` times real time.
Subscriptions made later deliver events from the replay's current time on, as a live server does.
Each event is given with its receipt time, so that the server applies the client's aggregation
period in *recorded* time, at any ``speed``: a client asking for 10 s gets at most one Quote per
symbol per 10 s of the recorded day, and every Trade and TimeAndSale
(docs/dxlink.md#aggregation-conflates-ticker-events-only).

No I/O beyond reading the recording's Parquet files (in the caller's thread).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Final

from .. import _time
from .._time import TimeLike
from ..catalog import existing_location
from ..events.base import Event
from ..events.registry import event_class
from ._engine import WILDCARD, Batch, Cursor, pacer
from .reader import DEFAULT_CHUNK_ROWS, first_receipt_ns

if TYPE_CHECKING:
    from ..objectstore import S3Location

__all__ = ("ReplayFeed",)

#: at most this many events per poll when replaying as fast as possible
MAX_BURST: Final = 10_000
#: the replay starts this long after the first subscription, so that the subscriptions a client
#: sends together (one message per channel) all see the recording from its start
SETTLE_S: Final = 0.25


class ReplayFeed:
    """One connection's replay of a recording folder, for :class:`tastyrec.sim.Simulator`.

    Args:
        root: the recording folder.
        speed: multiple of real time; ``math.inf`` sends as fast as the connection takes it.
        start: replay from this receipt time (default: the first event recorded); datetime,
            date, ISO text or epoch ns, naive = New York time (:mod:`tastyrec._time`).
        end: ... until this one (a date: up to the end of that New York day).
        chunk_rows: rows read per file per step.

    Raises:
        RecordingNotFound: there is no folder at ``root``.
        UnsupportedLocation: ``root`` is a URL.
        ValueError: ``start`` or ``end`` is text that is not a time.

    Example usage::

        async with Simulator(token=None, feed_factory=lambda: ReplayFeed("data")) as server:
            print(server.url)  # any DXLink client now gets the recorded day

    The replay engine's :class:`~tastyrec.replay._engine.Cursor` reads every subscribed type
    whole (the server subscribes symbol by symbol, and a symbol subscribed later gets the events
    from the replay's time on, so symbols are matched as events are handed out) and its
    :class:`~tastyrec.replay._engine.Pacer` starts :data:`SETTLE_S` after the first
    subscription.
    """

    def __init__(
        self,
        root: str | Path | S3Location,
        *,
        speed: float = 1.0,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ) -> None:
        self._pacer = pacer(speed)  # ValueError unless positive
        self.speed = speed
        self.start_ns = _time.start_ns(start)
        end_ns = _time.end_ns(end)
        self.root = existing_location(root)  # a folder, or s3://bucket/prefix with keys
        self._cursor = Cursor(
            self.root, start_ns=self.start_ns, end_ns=end_ns, chunk_rows=chunk_rows
        )
        self._subs: dict[str, set[str]] = {}
        self._batch: Batch | None = None  # read, not all handed out yet
        self._reached = -math.inf
        #: events handed out so far
        self.sent = 0

    @property
    def finished(self) -> bool:
        """Whether every recorded event has been handed out."""
        return self._pacer.started and self._cursor.exhausted and not self._left()

    def subscribe(self, event_type: str, symbol: str, now: float) -> None:
        cls = event_class(event_type)
        if not self._pacer.started:
            self._pacer.start(now + SETTLE_S, self._first_ns())
        self._subs.setdefault(event_type, set()).add(symbol)
        self._cursor.subscribe(cls, [WILDCARD])

    def unsubscribe(self, event_type: str, symbol: str) -> None:
        symbols = self._subs.get(event_type)
        if symbols is None:
            return
        symbols.discard(symbol)
        if not symbols:  # read none of the type until it is subscribed again
            self._cursor.unsubscribe(event_class(event_type), [WILDCARD])

    def poll(self, now: float) -> list[tuple[int, Event]]:
        """The events due by ``now``, each with its receipt time (epoch ns), in receipt order."""
        if not self._pacer.started:
            return []
        limit = self._pacer.reached(now)
        out: list[tuple[int, Event]] = []
        subs = self._subs
        while len(out) < MAX_BURST:
            batch = self._batch
            if batch is not None and batch.left:
                events, start = batch.events, batch.pos
                stop = batch.stop_after(limit)
                i = start
                recv = batch.recv[start:stop].tolist()
                while i < stop and len(out) < MAX_BURST:
                    event = events[i]
                    if event.event_symbol in subs.get(type(event).__name__, ()):
                        out.append((recv[i - start], event))
                    i += 1
                batch.pos = i
            if self._left() or not self._read_more(limit):
                break
        self.sent += len(out)
        # cut short (a burst), or the next event is not due yet; else all up to now is given
        batch = self._batch
        self._reached = min(limit, batch.next_ns() - 1) if batch and batch.left else limit
        return out

    def reached_ns(self) -> float:
        """After :meth:`poll`: every event received at or before this time (epoch ns) has been
        given (``-inf`` before the replay starts; the replay's time goes on after its last
        event, so that a conflated last value is sent when its period has passed)."""
        return self._reached

    def next_due(self) -> float | None:
        anchor = self._pacer.anchor
        if anchor is None:
            return None
        batch = self._batch
        if batch is not None and batch.left:
            return self._pacer.wall_at(batch.next_ns())
        if self._cursor.exhausted:
            return None
        horizon = self._cursor.horizon_ns
        return anchor[0] if horizon is None else self._pacer.wall_at(horizon)

    # -- internals -----------------------------------------------------------------------------

    def _left(self) -> int:
        return 0 if self._batch is None else self._batch.left

    def _read_more(self, limit: float) -> bool:
        """Read the next step, if events at or before ``limit`` may be in it."""
        horizon = self._cursor.horizon_ns
        if limit == -math.inf or (horizon is not None and horizon > limit):
            return False  # settling (subscriptions still coming), or nothing due yet
        batch = self._cursor.next_batch()
        if batch is None:
            return False
        self._batch = batch
        return True

    def _first_ns(self) -> int:
        if self.start_ns is not None:
            return self.start_ns
        first = first_receipt_ns(self.root)
        return 0 if first is None else first
