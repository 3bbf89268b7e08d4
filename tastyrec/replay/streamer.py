"""ReplayStreamer: a recording played back through the live streamer's interface.

Swapping ``DXLinkStreamer(...)`` for ``ReplayStreamer(path)`` is the only change strategy code
needs: ``subscribe``, ``unsubscribe``, ``unsubscribe_all``, ``subscribe_candle``,
``unsubscribe_candle``, ``listen``, ``get_event`` and ``get_event_nowait`` behave as they do live,
and the events are the same Structs with the same values (bit-exact, NaN included).

Theory of operation:

* **Pull, not push.** No task runs in the background. When a listener has nothing left, it asks
  the streamer to *advance*: the engine's :class:`~tastyrec.replay._engine.Cursor` reads the next
  step of the timeline (a few thousand rows per event type, in a worker thread when it reads a
  file), filters it to the subscribed symbols and turns it into Structs in whole columns (no
  per-event channel); the :class:`~tastyrec.replay._engine.Pacer` of the ``speed`` says which of
  them are due, and those are handed to every listener buffer that wants their types. Only one
  advance runs at a time; several listeners in several tasks each get their own buffer, as with
  the live streamer's per-type queues. ``tastyrec serve`` replays with the same cursor and
  pacer (:mod:`tastyrec.replay.feed`).
* **Order.** ``listen(Quote)`` yields Quotes in receipt order. ``listen(Quote, Trade)`` (several
  types in one iterator, an extension of the SDK's interface) yields both in the exact recorded
  interleaving, by receipt time; events received in the same frame keep their order within a
  type and are ordered by the types given across types.
* **End.** When the recording (or ``end``) is exhausted, ``listen()`` iterators finish and
  ``get_event`` raises :class:`~tastyrec.exceptions.EndOfReplay`, so a backtest loop ends by
  itself.
* **Speed.** ``speed=math.inf`` (the default) replays as fast as the consumer takes events;
  ``speed=1`` in real time; any other value is a multiplier of real time. Pacing follows the
  receipt times, from ``start`` (or the first event) on.
* **Time.** :attr:`ReplayStreamer.time_ns` (and :attr:`~ReplayStreamer.time`) is the recorded
  receipt time (``recv_ns``) of the event ``listen()`` / ``get_event`` handed out last, at every
  speed: read right after an event arrives, it is that event's receipt time, which is what a
  backtest timestamps its decisions with. Events reach a listener's buffer a step at a time, so
  the time follows the events as they are yielded, not as steps are released. ``listen``'s loop
  is the hot path, so the usual case -- one listener -- does no per-event work for it: the time
  is read off the position of the chunk's list iterator (``operator.length_hint``, exact for a
  list iterator) when asked for. With several listeners (or ``get_event`` beside one), each
  event handed out sets the time, and marks the lone listener's position so that whichever
  handed out an event last wins. Inside ``disconnect_fn`` / ``reconnect_fn`` it is the recorded
  disconnect / reconnect time.
* **Account events.** A recording's account tables (``tastyrec record --account``) replay
  through the same interface: ``subscribe(PlacedOrder, ["5WT00000"])`` (account numbers, or
  ``"*"`` for every account) or, as with the live ``AlertStreamer``,
  :meth:`ReplayStreamer.subscribe_accounts` (every account-bound payload class of those accounts,
  and unknown notifications), :meth:`~ReplayStreamer.subscribe_quote_alerts` and
  :meth:`~ReplayStreamer.subscribe_public_watchlists`. Classes without an ``account_number``
  (``QuoteAlert``, ``Watchlist``, ``UnknownNotification``) replay whole once subscribed.
  ``listen(Quote, PlacedOrder)`` interleaves fills with the book they hit, in receipt order;
  payloads come back equal to what the live ``listen`` got (Decimals exact, at the stored scale).
* **Gaps.** Recorded disconnects (the recording's ``_gaps`` table) replay too:
  ``disconnect_fn(streamer, *disconnect_args)`` runs when the replay reaches the moment the
  connection was lost, ``reconnect_fn(streamer, *reconnect_args)`` when it was back, each once
  every event before that moment has been taken, and :attr:`ReplayStreamer.gaps` grows as it
  would live. These are the DXLink stream's gaps: the account streamer's (``stream =
  'account'``) are in the table but fire no callback here.
* **Bounded memory.** Each listener buffer holds at most ``queue_size`` events; a subscribed type
  nobody takes loses its oldest events first (counted in ``stats.dropped``), as live. Reading
  holds a few row groups per type (see :mod:`tastyrec.replay.reader`).

Size: a little over 600 lines because it is the live streamers' public surface replayed
(``subscribe*``, ``listen``, ``get_event``, both market and account payloads, gap markers); reading,
the cursor and the pacer are :mod:`.reader`'s and :mod:`._engine`'s.
"""

from __future__ import annotations

import logging
import math
import operator
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar, cast, overload

import anyio
import anyio.lowlevel
import numpy as np

from .. import _time
from .._closing import AsyncClosing
from .._queue import ChunkQueue
from .._time import TimeLike, to_ns
from ..catalog import existing_location, reading_location
from ..dxlink.streamer import DEFAULT_QUEUE_SIZE, Gap, StreamerStats, candle_symbol
from ..events.account import (
    AccountBalance,
    CurrentPosition,
    ExternalTransaction,
    PlacedComplexOrder,
    PlacedOrder,
    QuoteAlert,
    TradingStatus,
    UnderlyingYearGainSummary,
    UnknownNotification,
    Watchlist,
)
from ..events.base import Event
from ..events.candle_symbol import parse_candle_symbol
from ..events.market import Candle
from ..exceptions import EndOfReplay, LocalProtocolError
from ..storage.account_schema import AccountRecord
from ..storage.tables import read_gaps
from ._engine import WILDCARD, Batch, Cursor, pacer
from .reader import DEFAULT_CHUNK_ROWS, RecordClass, table_name

if TYPE_CHECKING:
    from ..objectstore import S3Location

__all__ = ("ReplayStreamer", "TimeLike", "to_ns")

logger = logging.getLogger(__name__)

E = TypeVar("E", bound=Event | AccountRecord)
E2 = TypeVar("E2", bound=Event | AccountRecord)
Callback = Callable[..., Awaitable[Any]]
_NS: Final = 1_000_000_000
#: what ``subscribe_accounts`` subscribes to (the live account streamer's ``connect``)
ACCOUNT_BOUND: Final[tuple[type[AccountRecord], ...]] = (
    PlacedOrder,
    PlacedComplexOrder,
    AccountBalance,
    CurrentPosition,
    TradingStatus,
    ExternalTransaction,
    UnderlyingYearGainSummary,
)


def normalized_candle_symbol(symbol: str) -> str:
    """The candle symbol as the server echoes it in events (``SPY{=1m}`` -> ``SPY{=m}``)."""
    parsed = parse_candle_symbol(symbol)
    return symbol if parsed is None else parsed.normalized


_Times = np.ndarray[Any, np.dtype[np.int64]]  # receipt times, epoch ns


class _Sink:
    """One listener's buffer: chunks of events in order, at most ``max_events``
    (a :class:`~tastyrec._queue.ChunkQueue` that cuts the oldest chunk at its head and keeps
    the newest whole).

    Each chunk is a pair: the events (a list), and the receipt time (epoch ns) of each (an
    array: converted to Python ints only when read, off the hot path).
    """

    __slots__ = ("listeners", "max_events", "name", "queue", "types")

    def __init__(self, types: tuple[RecordClass, ...], max_events: int) -> None:
        self.types = frozenset(types)
        self.name = "+".join(cls.__name__ for cls in types)
        self.max_events = max_events
        self.queue: ChunkQueue[tuple[list[Any], _Times]] = ChunkQueue(max_events, partial=True)
        self.listeners = 0  # listen() iterators running on this buffer

    @property
    def size(self) -> int:
        """Events waiting."""
        return self.queue.size

    def put(self, events: list[Any], recv: _Times) -> int:
        """Append events and their receipt times; the number of oldest events dropped to stay
        within the bound.

        Only events queued before are dropped: a listener always gets the newest step whole.
        """
        return self.queue.put((events, recv), len(events))

    def take_chunk(self) -> tuple[list[Any], _Times] | None:
        """The oldest chunk not taken yet: (events, receipt times)."""
        taken = self.queue.take_chunk()
        if taken is None:
            return None
        (events, recv), head = taken
        return (events[head:], recv[head:]) if head else (events, recv)

    def take_one(self) -> tuple[Any, int] | None:
        """The oldest event not taken yet and its receipt time."""
        queue = self.queue
        if not queue.chunks:
            return None
        (events, recv), _ = queue.chunks[0]
        head = queue.head
        taken = events[head], int(recv[head])
        queue.advance()
        return taken


class ReplayStreamer(AsyncClosing):
    """Play a recording back with the interface of :class:`~tastyrec.DXLinkStreamer`.

    Example usage::

        async with ReplayStreamer("data", start="2026-11-20T09:30") as streamer:
            await streamer.subscribe(Quote, ["SPY"])
            async for quote in streamer.listen(Quote):   # ends with the recording
                print(streamer.time, quote.bid_price, quote.ask_price)

    Args:
        path: the recording folder (``tastyrec record --out``).
        start: replay events received at or after this (datetime, date, ISO string or epoch
            ns; naive times are New York time: :mod:`tastyrec._time`).
        end: ... and before this (a date: up to the end of that New York day).
        speed: ``math.inf`` (default) as fast as events are taken; ``1.0`` real time; any
            positive multiplier of real time.
        disconnect_fn: ``async def fn(streamer, *disconnect_args)``, run at each recorded
            disconnect.
        reconnect_fn: ``async def fn(streamer, *reconnect_args)``, run at each recorded
            reconnect.
        queue_size: bound of each listener's buffer, in events (oldest dropped first).
        chunk_rows: rows read per event type per step.
        clock: monotonic seconds (injected for tests of pacing).
        sleep: ``async def sleep(seconds)`` that pacing waits with (injected with ``clock``).

    Raises:
        UnsupportedLocation: ``path`` is a URL (``s3://...``).
        RecordingNotFound: (on entering; also a ``FileNotFoundError``) ``path`` is not a folder.
    """

    def __init__(
        self,
        path: str | Path | S3Location,
        *,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        speed: float = math.inf,
        disconnect_fn: Callback | None = None,
        disconnect_args: tuple[Any, ...] = (),
        reconnect_fn: Callback | None = None,
        reconnect_args: tuple[Any, ...] = (),
        queue_size: int = DEFAULT_QUEUE_SIZE,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = anyio.sleep,
    ) -> None:
        self._pacer = pacer(speed)  # ValueError unless positive
        if queue_size <= 0:
            raise ValueError(f"queue_size must be positive, not {queue_size!r}")
        self.path = reading_location(path)  # a folder or s3://bucket/prefix
        self.start_ns = _time.start_ns(start)
        self.end_ns = _time.end_ns(end)
        self.speed = speed
        self.disconnect_fn = disconnect_fn
        self.disconnect_args = disconnect_args
        self.reconnect_fn = reconnect_fn
        self.reconnect_args = reconnect_args
        self.queue_size = queue_size
        self.stats = StreamerStats()
        #: recorded breaks in the stream reached so far, oldest first
        self.gaps: list[Gap] = []
        self._clock = clock
        self._sleep = sleep
        # what comes next (subscriptions, merge) and when it is due (speed)
        self._cursor = Cursor(
            self.path, start_ns=self.start_ns, end_ns=self.end_ns, chunk_rows=chunk_rows
        )
        self._sinks: dict[tuple[RecordClass, ...], _Sink] = {}
        self._batch: Batch | None = None  # built, not all handed to the buffers yet
        self._markers: deque[tuple[int, bool, Gap]] = deque()  # (time, is_disconnect, gap)
        self._lock = anyio.Lock()
        self._time_ns: int | None = self.start_ns
        # a lone listener's chunk in flight: (its iterator, the receipt times); see time_ns
        self._lone: tuple[Iterator[Any], _Times] | None = None
        self._lone_mark = 0  # the lone chunk's events left when something else last set the time
        self._connected = False
        self._finished = False
        self._entered = False

    def __repr__(self) -> str:
        return f"ReplayStreamer({str(self.path)!r}, time={self.time})"

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await anyio.to_thread.run_sync(self.open)
        return self

    def open(self) -> None:
        """Check the folder and read its recorded gaps (``async with`` does this).

        Blocking but short (it reads the small ``_gaps`` table). Only needed without
        ``async with``, e.g. in a synchronous pytest fixture; idempotent.

        Raises:
            RecordingNotFound: ``path`` is not a folder (also a ``FileNotFoundError``).
        """
        if self._entered:
            return
        existing_location(self.path)
        self._markers = deque(self._read_gaps())
        self._connected = True
        self.stats.connects += 1
        self._entered = True

    def close(self) -> None:
        """Stop the replay (synchronous :meth:`aclose`)."""
        self._finished = True
        self._connected = False
        self._batch = None
        for sink in self._sinks.values():
            sink.queue.clear()

    async def aclose(self) -> None:
        """Stop the replay: listeners finish, buffers are released."""
        self.close()

    @property
    def connected(self) -> bool:
        """``True`` while the replay is inside a recorded connection (not in a gap)."""
        return self._connected and not self._finished

    @property
    def finished(self) -> bool:
        """Whether every event of the recording (up to ``end``) has been handed out."""
        return self._finished

    @property
    def time_ns(self) -> int | None:
        """The replay's time, epoch ns: the recorded receipt time (``recv_ns``) of the event
        ``listen()`` / ``get_event`` / ``get_event_nowait`` handed out last, at every speed.

        Before the first event it is ``start`` (``None`` without one); inside ``disconnect_fn``
        / ``reconnect_fn``, the recorded disconnect / reconnect time.
        """
        lone = self._lone
        if lone is not None:
            # a lone listener's events are handed out with no per-event work (the hot path of a
            # backtest): its position in the chunk is read off the list iterator, and wins if it
            # moved since anything else set the time
            left = operator.length_hint(lone[0])
            if left != self._lone_mark:
                recv = lone[1]
                return int(recv[len(recv) - left - 1])
        return self._time_ns

    def _set_time(self, ns: int) -> None:
        """Set the time to the receipt time of an event handed out other than by the lone
        listener's chunk (another listener, ``get_event``) or of a recorded gap's edge."""
        self._time_ns = ns
        lone = self._lone
        if lone is not None:  # its next event moves the time on again
            self._lone_mark = operator.length_hint(lone[0])

    @property
    def time(self) -> datetime | None:
        """:attr:`time_ns` as a UTC datetime, to the microsecond (``None`` before the first
        event without a ``start``)."""
        ns = self.time_ns
        if ns is None:
            return None
        seconds, rest = divmod(ns, _NS)  # exact: a float of epoch seconds is not, to the µs
        return datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest // 1000)

    # --- subscriptions -----------------------------------------------------------------------

    async def subscribe(
        self, event_type: RecordClass, symbols: Iterable[str], refresh_interval: float = 0.1
    ) -> None:
        """Replay ``event_type`` events of ``symbols`` (``"*"`` for every symbol).

        For an account payload class (``PlacedOrder``...), ``symbols`` are account numbers
        (``"*"`` for every account); classes without an account number (``QuoteAlert``,
        ``Watchlist``, ``UnknownNotification``) replay whole whatever is given.
        Subscribing during the replay delivers events received from then on.
        """
        self._cursor.subscribe(event_type, _as_list(symbols))  # SchemaError: never recorded

    async def unsubscribe(self, event_type: RecordClass, symbols: Iterable[str]) -> None:
        """Stop replaying these symbols (or account numbers) of ``event_type``."""
        self._cursor.unsubscribe(event_type, _as_list(symbols))

    async def unsubscribe_all(self, event_type: RecordClass) -> None:
        """Stop replaying ``event_type``."""
        self._cursor.unsubscribe_all(event_type)

    async def subscribe_accounts(self, accounts: Iterable[Any]) -> None:
        """Replay what the live ``AlertStreamer.subscribe_accounts`` would deliver: orders,
        complex orders, balances, positions, trading status, transactions and gain summaries of
        these accounts (numbers, SDK ``Account`` objects, or ``"*"``), and unknown
        notifications."""
        items = [accounts] if isinstance(accounts, str) else list(accounts)
        numbers = [a if isinstance(a, str) else a.account_number for a in items]
        for cls in ACCOUNT_BOUND:
            await self.subscribe(cls, numbers)
        await self.subscribe(UnknownNotification, [WILDCARD])

    async def subscribe_quote_alerts(self) -> None:
        """Replay the recorded quote alerts (``QuoteAlert``)."""
        await self.subscribe(QuoteAlert, [WILDCARD])

    async def subscribe_public_watchlists(self) -> None:
        """Replay the recorded public watchlist changes (``Watchlist``)."""
        await self.subscribe(Watchlist, [WILDCARD])

    async def subscribe_candle(
        self,
        symbols: Iterable[str],
        interval: str,
        start_time: datetime | None = None,
        extended_trading_hours: bool = False,
        refresh_interval: float = 0.1,
    ) -> None:
        """Replay candles of ``interval`` for ``symbols``, matched as the server names them.

        The recorded candle symbols are the server's normalised ones: ``("SPY", "1m")`` asks for
        ``SPY{=1m,tho=true}``, which arrives (and is recorded) as ``SPY{=m,tho=true}``; with
        ``extended_trading_hours=True``, ``SPY{=1m}`` as ``SPY{=m}``. This subscribes to those.
        ``start_time`` is accepted for compatibility: the history a live server sent from it is
        part of the recording.
        """
        names = [
            normalized_candle_symbol(candle_symbol(s, interval, extended_trading_hours))
            for s in _as_list(symbols)
        ]
        await self.subscribe(Candle, names)

    async def unsubscribe_candle(
        self, ticker: str, interval: str | None = None, extended_trading_hours: bool = False
    ) -> None:
        """Remove a candle subscription made with :meth:`subscribe_candle`."""
        name = candle_symbol(ticker, interval or "", extended_trading_hours)
        await self.unsubscribe(Candle, [normalized_candle_symbol(name)])

    # --- events ------------------------------------------------------------------------------

    @overload
    def listen(self, event_type: type[E], /) -> AsyncIterator[E]: ...
    @overload
    def listen(self, event_type: type[E], other: type[E2], /) -> AsyncIterator[E | E2]: ...
    @overload
    def listen(self, *event_types: RecordClass) -> AsyncIterator[Any]: ...

    def listen(self, *event_types: type[Any]) -> AsyncIterator[Any]:
        """Yield events of one type -- or of several, interleaved in receipt order -- until the
        recording (or ``end``) is exhausted."""
        if not event_types:
            raise LocalProtocolError("listen() needs at least one event type")
        return self._listen(self._sink(event_types))

    async def _listen(self, sink: _Sink) -> AsyncIterator[Any]:
        sink.listeners += 1
        try:
            while True:
                taken = sink.take_chunk()
                if taken is None:
                    if not await self._advance(sink):
                        return
                    continue
                events, recv = taken
                if sink.listeners == 1 and len(self._sinks) == 1:
                    # the only listener: time_ns reads the receipt time off the iterator
                    it = iter(events)
                    self._time_ns = self.time_ns  # the previous chunk's, before it is replaced
                    self._lone, self._lone_mark = (it, recv), len(recv)
                    for event in it:
                        yield event
                else:  # several: each sets the time as it hands an event out
                    for ns, event in zip(recv.tolist(), events, strict=True):
                        self._set_time(ns)
                        yield event
                await anyio.lowlevel.checkpoint()  # let listeners in other tasks take theirs
        finally:
            sink.listeners -= 1

    async def get_event(self, event_type: type[E]) -> E:
        """The next event of one type.

        Raises:
            EndOfReplay: the recording (or ``end``) is exhausted.
        """
        sink = self._sink((event_type,))
        while True:
            taken = sink.take_one()
            if taken is not None:
                self._set_time(taken[1])
                return cast(E, taken[0])
            if not await self._advance(sink):
                raise EndOfReplay(f"the replay of {str(self.path)!r} has no more events")

    def get_event_nowait(self, event_type: type[E]) -> E | None:
        """The next event of one type, or ``None`` if none is due (or the replay is over).

        As fast as possible, this reads on (synchronously) until an event of the type is there;
        it stops (``None``) before a recorded disconnect or reconnect whose callback has to run
        (an awaiting :meth:`get_event` or :meth:`listen` runs it). When paced, it returns only
        events whose time has come.
        """
        sink = self._sink((event_type,))
        taken = sink.take_one()
        if taken is None and not self._finished and not self._lock.locked():
            taken = self._read_on(sink)
        if taken is None:
            return None
        self._set_time(taken[1])
        return cast(E, taken[0])

    def _read_on(self, sink: _Sink) -> tuple[Any, int] | None:
        """:meth:`get_event_nowait`'s synchronous advance: the next event of ``sink``, if any
        is due without awaiting."""
        while not self._release(sink):
            marker = self._due_marker()
            if marker is not None:
                if self._delay(marker[0]) > 0:
                    return None  # not due yet
                callback = self.disconnect_fn if marker[1] else self.reconnect_fn
                if callback is not None:
                    return None  # its (async) callback runs at the next get_event/listen
                self._apply_marker()
                continue
            if self._batch is not None and self._batch.left:
                return None  # not due yet
            batch = self._cursor.next_batch()
            if batch is None:
                return None
            self._batch = batch
        return sink.take_one()

    def queued(self, event_type: RecordClass) -> int:
        """Events of one type waiting in its :meth:`listen` / :meth:`get_event` buffer."""
        sink = self._sinks.get((event_type,))
        return 0 if sink is None else sink.size

    def _sink(self, event_types: Sequence[type[Any]]) -> _Sink:
        key = tuple(dict.fromkeys(event_types))
        sink = self._sinks.get(key)
        if sink is None:
            for cls in key:
                table_name(cls)  # SchemaError for a non-event
            sink = self._sinks[key] = _Sink(key, self.queue_size)
        return sink

    # --- the engine --------------------------------------------------------------------------
    # The cursor says what comes next, the pacer when it is due; this hands it to the listener
    # buffers (_Sink), between the recorded disconnects and reconnects.

    async def _advance(self, sink: _Sink) -> bool:
        """Hand out more events; ``False`` once the replay is over and ``sink`` is empty."""
        async with self._lock:
            while not sink.size:
                if self._finished:
                    return False
                if await self._fire_marker():
                    continue
                if self._release(sink):
                    continue
                batch = self._batch
                if batch is not None and batch.left:
                    # held back by pacing (a marker due first would have fired above)
                    await self._sleep_until(batch.next_ns())
                    continue
                cursor = self._cursor
                if cursor.will_read:  # decoding Parquet: off the event loop
                    step = await anyio.to_thread.run_sync(cursor.next_step)
                else:  # slicing what is read already: a thread hop would cost more
                    step = cursor.next_step()
                if step is None:
                    await self._finish()
                else:
                    self._batch = cursor.decode(step)
            return True

    def _release(self, sink: _Sink) -> bool:
        """Hand the events of the batch that are due, and before the next recorded disconnect
        or reconnect, to every buffer that wants them; whether ``sink`` got any."""
        batch = self._batch
        if batch is None or not batch.left:
            return False
        stop = batch.stop_after(self._reached(batch.next_ns()))
        if self._markers:
            stop = min(stop, batch.stop_before(self._markers[0][0]))
        if stop <= batch.pos:
            return False
        events, types, recv = batch.take(stop)
        self.stats.events += len(events)
        classes = self._cursor.event_types
        for other in self._sinks.values():
            wanted = np.fromiter((cls in other.types for cls in classes), bool, len(classes))
            if batch.only is not None:  # one type: all or nothing
                if not wanted[batch.only]:
                    continue
                mine, mine_recv = events, recv
            else:
                mask = wanted[types]
                if mask.all():
                    mine, mine_recv = events, recv
                elif mask.any():
                    mine = [e for e, keep in zip(events, mask.tolist(), strict=True) if keep]
                    mine_recv = recv[mask]
                else:
                    continue
            dropped = other.put(mine, mine_recv)
            if dropped:
                self.stats.dropped[other.name] += dropped
        return sink.size > 0

    def _due_marker(self) -> tuple[int, bool, Gap] | None:
        """The next recorded disconnect/reconnect, if every event before it is out (whether
        its time has come is the pacer's business)."""
        if not self._markers:
            return None
        marker = self._markers[0]
        at = marker[0]
        batch = self._batch
        if batch is not None and batch.left:
            if batch.next_ns() < at:
                return None  # events before it are still to be handed out
        elif not self._cursor.exhausted:
            horizon = self._cursor.horizon_ns
            if horizon is None or horizon < at:
                return None  # read on first: there may be events before it
        return marker

    def _apply_marker(self) -> tuple[Callback | None, tuple[Any, ...]]:
        """Pass the next marker: the state a live streamer would be in; its callback."""
        at, disconnect, gap = self._markers.popleft()
        self._set_time(at)  # what the callback sees; the next event handed out moves it on
        if disconnect:
            self._connected = False
            self.stats.disconnects += 1
            self.gaps.append(gap)
            return self.disconnect_fn, self.disconnect_args
        self._connected = True
        self.stats.connects += 1
        return self.reconnect_fn, self.reconnect_args

    async def _fire_marker(self) -> bool:
        """Pass the next marker once it is due, running its callback; whether it did."""
        marker = self._due_marker()
        if marker is None:
            return False
        at = marker[0]
        if self._delay(at) > 0:
            await self._sleep_until(at)
            return True
        callback, args = self._apply_marker()
        if callback is not None:
            await callback(self, *args)
        return True

    async def _finish(self) -> None:
        while self._markers:  # after the last event (the recording ended inside a gap)
            await self._fire_marker()
        self._finished = True
        self._connected = False

    # --- pacing ------------------------------------------------------------------------------

    def _started_pacer(self, first_ns: int) -> None:
        """Anchor the pacer the first time it is asked: ``start`` (else the first event or
        marker) is due now."""
        self._pacer.start(self._clock(), first_ns if self.start_ns is None else self.start_ns)

    def _reached(self, first_ns: int) -> float:
        """The recorded time due now (see :meth:`Pacer.reached`)."""
        if not self._pacer.started:
            self._started_pacer(first_ns)
        return self._pacer.reached(self._clock())

    def _delay(self, at_ns: int) -> float:
        """Seconds until ``at_ns`` is due (0 if it is)."""
        if not self._pacer.started:
            self._started_pacer(at_ns)
        return self._pacer.delay(at_ns, self._clock())

    async def _sleep_until(self, at_ns: int) -> None:
        delay = self._delay(at_ns)
        if delay > 0:
            await self._sleep(delay)

    # --- gaps --------------------------------------------------------------------------------

    def _read_gaps(self) -> list[tuple[int, bool, Gap]]:
        """The recording's DXLink disconnects and reconnects inside ``start``/``end``, as
        markers ``(time, is_disconnect, gap)`` in time order (disconnects first on a tie)."""
        markers: list[tuple[int, bool, Gap]] = []
        for row in read_gaps(self.path):
            if row.stream not in (None, "dxlink"):
                continue  # the account streamer's: not this streamer's connection
            lost, back = row.disconnected_ns, row.resumed_ns
            gap = Gap(row.last_received_ns, lost, row.reason, back)
            if self._inside(lost):
                markers.append((lost, True, gap))
                if back is not None and self._inside(back):
                    markers.append((back, False, gap))
        markers.sort(key=lambda m: (m[0], not m[1]))
        return markers

    def _inside(self, ns: int) -> bool:
        return (self.start_ns is None or ns >= self.start_ns) and (
            self.end_ns is None or ns < self.end_ns
        )


def _as_list(symbols: Iterable[str]) -> list[str]:
    return [symbols] if isinstance(symbols, str) else list(symbols)
