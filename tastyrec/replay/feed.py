"""ReplayFeed: a recording as the event source of the simulator's server (``tastyrec serve``).

The simulator's sans-I/O server (:class:`tastyrec.sim.engine.ServerConnection`) asks its feed for
the events due at each tick; this feed answers from a recording, paced by the receipt times: each
connection gets its own replay, which starts at ``start`` (default: the first event of the
recording) a moment (:data:`SETTLE_S`) after the connection first subscribes, and runs at
``speed`` times real time.
Subscriptions made later deliver events from the replay's current time on, as a live server does.
Each event is given with its receipt time, so that the server applies the client's aggregation
period in *recorded* time, at any ``speed``: a client asking for 10 s gets at most one Quote per
symbol per 10 s of the recorded day, and every Trade and TimeAndSale (FIELD_REPORTS.md #8).

No I/O beyond reading the recording's Parquet files (in the caller's thread).
"""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path
from typing import Final

import numpy as np

from .. import _time
from .._location import existing_recording
from .._time import TimeLike
from ..events.base import Event
from ..events.registry import event_class
from .reader import DEFAULT_CHUNK_ROWS, Timeline, first_receipt_ns, merge_order, to_events

__all__ = ("ReplayFeed",)

_NS: Final = 1_000_000_000
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
    """

    def __init__(
        self,
        root: str | Path,
        *,
        speed: float = 1.0,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, not {speed!r}")
        self.speed = speed
        self.start_ns = _time.start_ns(start)
        end_ns = _time.end_ns(end)
        self.root = existing_recording(root)
        self._timeline = Timeline(
            self.root, [], start_ns=self.start_ns, end_ns=end_ns, chunk_rows=chunk_rows
        )
        self._subs: dict[str, set[str]] = {}
        self._recv: deque[int] = deque()
        self._events: deque[Event] = deque()
        self._anchor: tuple[float, int] | None = None  # (wall seconds, virtual ns)
        self._reached = -math.inf
        #: events handed out so far
        self.sent = 0

    @property
    def finished(self) -> bool:
        """Whether every recorded event has been handed out."""
        return self._anchor is not None and self._timeline.exhausted and not self._events

    def subscribe(self, event_type: str, symbol: str, now: float) -> None:
        cls = event_class(event_type)
        if self._anchor is None:
            self._anchor = (now + SETTLE_S, self._first_ns())
        self._subs.setdefault(event_type, set()).add(symbol)
        self._timeline.add_type(cls, self._timeline.horizon_ns)

    def unsubscribe(self, event_type: str, symbol: str) -> None:
        self._subs.get(event_type, set()).discard(symbol)

    def poll(self, now: float) -> list[tuple[int, Event]]:
        """The events due by ``now``, each with its receipt time (epoch ns), in receipt order."""
        if self._anchor is None:
            return []
        limit = self._virtual(now)
        out: list[tuple[int, Event]] = []
        while len(out) < MAX_BURST:
            while self._events and self._recv[0] <= limit and len(out) < MAX_BURST:
                recv = self._recv.popleft()
                event = self._events.popleft()
                if event.event_symbol in self._subs.get(type(event).__name__, ()):
                    out.append((recv, event))
            if self._events or not self._read_more(limit):
                break
        self.sent += len(out)
        # cut short (a burst), or the next event is not due yet; else all up to now is given
        self._reached = min(limit, self._recv[0] - 1) if self._events else limit
        return out

    def reached_ns(self) -> float:
        """After :meth:`poll`: every event received at or before this time (epoch ns) has been
        given (``-inf`` before the replay starts; the replay's time goes on after its last
        event, so that a conflated last value is sent when its period has passed)."""
        return self._reached

    def next_due(self) -> float | None:
        if self._anchor is None:
            return None
        if self._events:
            return self._wall(self._recv[0])
        if self._timeline.exhausted:
            return None
        horizon = self._timeline.horizon_ns
        return self._anchor[0] if horizon is None else self._wall(horizon)

    # -- internals -----------------------------------------------------------------------------

    def _read_more(self, limit: float) -> bool:
        """Stage the next step, if events at or before ``limit`` may be in it."""
        horizon = self._timeline.horizon_ns
        if limit == -math.inf or (horizon is not None and horizon > limit):
            return False  # settling (subscriptions still coming), or nothing due yet
        step = self._timeline.next_step()
        if step is None:
            return False
        pieces = [
            p
            for p in step.pieces
            if self._subs.get(self._timeline.event_types[p.type_index].__name__)
        ]
        built = [to_events(self._timeline.event_types[p.type_index], p.batch) for p in pieces]
        which, rows = merge_order(pieces)
        recv = np.concatenate([p.recv for p in pieces]) if pieces else np.empty(0, np.int64)
        self._recv.extend(np.sort(recv, kind="stable").tolist())
        self._events.extend(built[w][r] for w, r in zip(which.tolist(), rows.tolist(), strict=True))
        return True

    def _first_ns(self) -> int:
        if self.start_ns is not None:
            return self.start_ns
        first = first_receipt_ns(self.root)
        return 0 if first is None else first

    def _virtual(self, now: float) -> float:
        assert self._anchor is not None
        wall, virtual = self._anchor
        if now < wall:
            return -math.inf  # settling
        if self.speed == math.inf:
            return math.inf
        return virtual + (now - wall) * self.speed * _NS

    def _wall(self, ns: int) -> float:
        assert self._anchor is not None
        wall, virtual = self._anchor
        if self.speed == math.inf:
            return wall
        return max(wall, wall + (ns - virtual) / self.speed / _NS)
