"""DXLinkStreamer: the tastytrade SDK's streamer interface over :class:`.DXLinkProtocol`.

A thin I/O loop (anyio on asyncio, websockets through :mod:`tastyrec.transport`) around the
sans-I/O protocol, standing on :class:`tastyrec._stream.StreamShell` with the account streamer
(lifecycle, reconnect loop and its one ``process_exception`` decision, gaps, watchdog, taps,
injected ``clock``/``sleep``). What it adds to the SDK's behaviour:

* **Reconnect.** websockets' own backoff (``WEBSOCKETS_BACKOFF_*`` environment variables);
  ``disconnect_fn(streamer, *disconnect_args)`` runs at once when a connection breaks,
  ``reconnect_fn(streamer, *reconnect_args)`` once a new one is up *and* every channel, feed setup
  and subscription (candles with their ``fromTime``) has been restored. Each break is a
  :class:`~tastyrec._stream.Gap` in :attr:`DXLinkStreamer.gaps`.
* **Watchdog.** A connection silent for longer than ``keepalive_timeout`` is dead (the server must
  send something at least that often): it is dropped and a new one made, instead of freezing.
* **Errors.** A rejected token raises :class:`~tastyrec.exceptions.AuthenticationError` out of the
  ``async with`` block instead of looping; server ``ERROR`` messages are logged at WARNING, naming
  the event type of the channel they arrived on (a refused subscription is answered on its type's
  channel and then never sends anything), and kept in :attr:`DXLinkStreamer.server_errors`; a
  close with 1009 (a message of ours over the server's size limit) raises
  :class:`~tastyrec.exceptions.LocalProtocolError`, since the restore on a new connection would be
  refused the same way, while a message from the server over
  ``max_inbound_bytes`` (websockets then closes with 1009 itself) is a lost connection whose
  reason says so; malformed frames and unknown event types are counted in
  :attr:`DXLinkStreamer.stats` and logged once per kind, never fatal.
* **Bounded memory.** Each event type's queue holds at most ``queue_size`` events; when a listener
  falls behind, the *oldest* events are dropped and counted (``stats.dropped``). Structs are built
  only when a listener takes events (from the queued COMPACT values), not on receipt.
* **Sessions.** ``DXLinkStreamer(session)`` takes the DXLink URL and quote token from a
  :class:`~tastyrec.session.Session` (or the tastytrade SDK's ``Session``: anything with the SDK's
  ``_get("/api-quote-tokens")``), through the typed :class:`~tastyrec.session.QuoteTokenSource`
  interface. When the server withdraws authorisation (unsolicited ``AUTH_STATE UNAUTHORIZED``, the
  quote token expired or was rotated), a fresh token is taken from the session and ``AUTH`` re-sent
  on the *same* connection: the protocol then re-opens the channels and restores every
  subscription, no reconnect, no gap marker (the server sends nothing while unauthorised, so
  nothing received is lost or received twice). With tastyrec's Session the token is also renewed in
  the background before it expires, so that re-AUTH needs no REST round trip; the live connection
  is not re-authorised pre-emptively, because a re-AUTH makes the protocol re-open every channel
  (and re-send candle history). A session that cannot give a new token (credentials rejected, or
  tastytrade failing for about ten minutes, retried on :func:`tastyrec.session.backoff`) stops the
  streamer with its :class:`~tastyrec.exceptions.ApiError`.
* **Columnar tap.** :meth:`DXLinkStreamer.tap` yields Arrow batches per event type with the
  receipt time, without per-event objects: the recorder's input. A tap never drops: when its
  buffer is full the receive loop waits (backpressure on the socket). :meth:`close_tap` flushes
  and ends one.

Tokens are never logged and never part of a repr or an exception, not even one inside the URL
(its userinfo or query, see :func:`tastyrec.transport.redact`).

Size: a little over 600 lines because it is everything DXLink-specific of one streamer: quote-token
renewal, frame handling, keepalives, the columnar tap and the SDK-compatible
``subscribe*``/``listen`` surface with its docstrings; the lifecycle, reconnects, watchdog, gaps and
taps are the shell's (:mod:`tastyrec._stream`) and the protocol is :mod:`.protocol`'s.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Self, TypeVar

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

from .. import transport
from .._queue import ChunkQueue
from .._stream import Gap, ShellStats, StreamShell
from ..events.base import Event
from ..events.candle_symbol import candle_symbol
from ..events.market import Candle
from ..exceptions import (
    ApiError,
    AuthenticationError,
    ConnectionClosed,
    CredentialsError,
    LocalProtocolError,
    RemoteProtocolError,
    ServerError,
)
from ..session import QuoteTokenSource, backoff, quote_token_source
from . import protocol as p
from .compact import ColumnAccumulator, ColumnBatch, FieldPlan, structs

__all__ = ("DXLinkStreamer", "Gap", "StreamerStats", "candle_symbol")

logger = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)
Callback = Callable[..., Awaitable[Any]]

#: Default bound of each event type's listener queue, in events.
DEFAULT_QUEUE_SIZE: Final = 100_000
#: attempts to get a new quote token after UNAUTHORIZED, waiting between them on the REST
#: retry schedule (:func:`tastyrec.session.backoff` from 1 s, doubling, capped at 4 minutes:
#: about 10 minutes in all)
_REAUTH_ATTEMPTS: Final = 10


@dataclass
class StreamerStats(ShellStats):
    """Counters a streamer exposes; all cumulative over its life (see :class:`.ShellStats`
    for frames, bad_frames, skipped, dropped, connects, disconnects, failed_connects)."""

    events: int = 0  #: events received
    #: FEED_DATA in another format than announced (docs/dxlink.md#the-format-can-change-mid-session)
    format_switches: int = 0


class _EventQueue:
    """One event type's listener queue: COMPACT chunks in a :class:`.ChunkQueue` (whole chunks
    dropped), Structs built on the way out."""

    def __init__(self, name: str, max_events: int, stats: StreamerStats) -> None:
        self.name = name
        self.stats = stats
        self.chunks: ChunkQueue[tuple[FieldPlan, list[Any], int]] = ChunkQueue(max_events)
        self._decoded: list[Event] = []
        self._pos = 0

    def put(self, plan: FieldPlan, values: list[Any], count: int) -> None:
        dropped = self.chunks.put((plan, values, count), count)
        if dropped:
            self.stats.dropped[self.name] += dropped

    def get_nowait(self) -> Event | None:
        while self._pos >= len(self._decoded):
            taken = self.chunks.take_chunk()
            if taken is None:
                return None
            (plan, values, count), _ = taken
            try:
                self._decoded, self._pos = structs(plan, values), 0
            except RemoteProtocolError as exc:
                self.stats.bad_frames += 1
                logger.warning("skipped %d %s events: %s", count, self.name, exc)
                self._decoded, self._pos = [], 0
        event = self._decoded[self._pos]
        self._pos += 1
        return event

    async def get(self) -> Event:
        while (event := self.get_nowait()) is None:
            await self.chunks.wait()
        return event

    def __len__(self) -> int:
        return len(self.chunks) + len(self._decoded) - self._pos


class DXLinkStreamer(StreamShell[ColumnBatch]):
    """Stream DXLink events, with the tastytrade SDK's interface.

    Example usage::

        async with DXLinkStreamer(url="wss://...", token=token) as streamer:
            await streamer.subscribe(Quote, ["SPY", "QQQ"])
            async for quote in streamer.listen(Quote):
                print(quote.event_symbol, quote.bid_price, quote.ask_price)

    Args:
        session: optional; a :class:`~tastyrec.session.Session` (quote tokens from its
            ``get_quote_token()``), or any object with an async ``_get("/api-quote-tokens")``
            returning the tastytrade quote-token payload (``dxlink-url``, ``token``), e.g. the
            tastytrade SDK's ``Session``. Used when ``url``/``token`` are not given, and for a
            fresh token when the server withdraws authorisation.
        url: the DXLink websocket URL.
        token: the quote token; ``None`` for servers that authorise without one.
        disconnect_fn: ``async def fn(streamer, *disconnect_args)``, run when a connection breaks.
        reconnect_fn: ``async def fn(streamer, *reconnect_args)``, run once a new connection is up
            and every subscription has been restored.
        queue_size: bound of each event type's listener queue, in events (oldest dropped first);
            0 for a streamer read only through :meth:`tap` (no listener queues at all).
        keepalive_timeout: seconds of silence after which the connection is considered dead.
        connect_timeout: seconds (of ``clock``/``sleep``) ``async with`` waits for the first
            authorised connection.
        reconnect_delays: backoff generator factory (default: websockets' backoff).
        max_message_bytes: largest FEED_SUBSCRIPTION sent (8,192, where the official JS client
            splits; larger subscriptions go in several messages).
        max_inbound_bytes: largest message accepted from the server (64 MiB: candle snapshots
            are large); a larger one closes the connection with 1009, which is logged, recorded
            as the gap's reason, and followed by a reconnect. ``None``: no limit.
        tap_rows: rows gathered per event type before a tap batch is flushed.
        tap_interval: seconds between tap flushes of whatever is gathered.
        clock: monotonic seconds (default ``time.monotonic``), for keepalives and the watchdog.
        sleep: ``async def sleep(seconds)`` (default ``anyio.sleep``), likewise, and for
            ``connect_timeout``.
    """

    def __init__(
        self,
        session: Any = None,
        *,
        url: str | None = None,
        token: str | None = None,
        disconnect_fn: Callback | None = None,
        disconnect_args: tuple[Any, ...] = (),
        reconnect_fn: Callback | None = None,
        reconnect_args: tuple[Any, ...] = (),
        queue_size: int = DEFAULT_QUEUE_SIZE,
        keepalive_timeout: float = 60,
        connect_timeout: float = 30,
        max_message_bytes: int = p.MAX_SUBSCRIPTION_BYTES,
        max_inbound_bytes: int | None = transport.DEFAULT_MAX_SIZE,
        reconnect_delays: Callable[[], Iterator[float]] | None = None,
        tap_rows: int = 4096,
        tap_interval: float = 0.1,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        if session is None and url is None:
            raise LocalProtocolError("give a url (and token), or a session")
        super().__init__(
            url, disconnect_fn, disconnect_args, reconnect_fn, reconnect_args,
            connect_timeout, reconnect_delays, logger, clock, sleep, max_inbound_bytes,
        )  # fmt: skip
        self.session = session
        self._tokens: QuoteTokenSource | None = None  # the session, as a source of quote tokens
        self._token = token
        self.queue_size = queue_size
        self.keepalive_timeout = self.silence_limit = keepalive_timeout
        self.tap_interval = tap_interval
        self.protocol: p.DXLinkProtocol = p.DXLinkProtocol(
            keepalive_timeout=keepalive_timeout,
            accept_keepalive_timeout=keepalive_timeout,
            max_message_bytes=max_message_bytes,
        )
        self.stats: StreamerStats = StreamerStats()
        #: the most recent server ERROR messages
        self.server_errors: deque[ServerError] = deque(maxlen=100)
        self._queues: dict[str, _EventQueue] = {}
        self._accumulator = ColumnAccumulator(tap_rows)
        self._authorized = anyio.Event()
        self._restored = anyio.Event()
        self._conn_tg: TaskGroup | None = None  # the current connection's tasks
        #: quote tokens taken from the session (the first one included)
        self.quote_token_renewals = 0

    @property
    def connected(self) -> bool:
        """Whether a connection is open and authorised."""
        return self._transport is not None and self.protocol.state is p.ConnectionState.AUTHORIZED

    @property
    def tap_pending_rows(self) -> int:
        """Events received but not yet handed to the taps (they are, every ``tap_interval`` s
        or at ``tap_rows`` rows of a type): what a recorder killed now would lose."""
        return self._accumulator.rows

    # --- lifecycle ---------------------------------------------------------------------------

    def _timeout_message(self) -> str:
        return (
            f"no authorised DXLink connection to {self._shown_url!r} within "
            f"{self.connect_timeout} s; check the URL and that the server is up"
        )

    async def __aenter__(self) -> Self:
        if self.url is None or (self._token is None and self.session is not None):
            await self._fetch_quote_token()
        return await super().__aenter__()

    def _quote_tokens(self) -> QuoteTokenSource:
        if self._tokens is None:
            self._tokens = quote_token_source(self.session)
        return self._tokens

    async def _fetch_quote_token(self, force: bool = False) -> None:
        qt = await self._quote_tokens().get_quote_token(force=force)
        url, token = qt.dxlink_url, qt.token
        if self.url is None:
            self.url = url
        elif url != self.url:
            self._log_once(
                "url-change",
                "= the session's DXLink URL is now %s; kept %s",
                transport.redact(url),
                self._shown_url,
            )
        if token != self._token:
            self.quote_token_renewals += 1
        self._token = token

    async def _reauthorize(self) -> None:
        """After an unsolicited UNAUTHORIZED: a fresh quote token from the session, AUTH again."""
        used = self._token
        delays = backoff(initial_s=1.0, factor=2.0, max_s=240.0)
        for attempt in range(1, _REAUTH_ATTEMPTS + 1):
            try:
                if self._session_renews():
                    await self._fetch_quote_token()  # renewed in the background already?
                if self._token == used:
                    await self._fetch_quote_token(force=True)
                break
            except CredentialsError:
                raise
            except ApiError as exc:
                if attempt == _REAUTH_ATTEMPTS:
                    raise
                delay = next(delays)
                logger.warning("= no new quote token (%s); trying again in %.0f s", exc, delay)
                await self._sleep(delay)
        if self._token is None:
            raise AuthenticationError("the session gave no quote token")
        logger.info(
            "= re-authorising %s quote token",
            "with a new" if self._token != used else "with the same (the session's)",
        )
        await self._change(self.protocol.authenticate, self._token)

    def _session_renews(self) -> bool:
        """Whether the session caches quote tokens and renews them before they expire."""
        if self.session is None:
            return False
        try:
            return self._quote_tokens().renews_quote_token
        except LocalProtocolError:  # url and token given, with a session that gives no tokens
            return False

    async def _quote_token_loop(self) -> None:
        """Keep tastyrec's Session's quote token fresh, so a re-AUTH needs no REST call."""
        tokens = self._quote_tokens()
        while True:
            due = tokens.quote_token_due_in()
            if due is None:  # url and token were given: nothing to keep fresh
                return
            await self._sleep(max(1.0, due))
            try:
                await tokens.get_quote_token()
            except CredentialsError:
                raise
            except ApiError as exc:  # the cached token is still valid for a while
                logger.warning("= could not renew the quote token yet: %s", exc)

    async def _before_connection(self) -> None:
        self._authorized = anyio.Event()
        self._restored = anyio.Event()
        if self._started and self._session_renews():
            await self._renew_before_connect()

    async def _serve(self, conn: transport.Transport, tg: TaskGroup) -> str:
        self._conn_tg = tg
        if self._session_renews():
            tg.start_soon(self._quote_token_loop)
        await self._change(self.protocol.connect, self._token)
        tg.start_soon(self._receive_loop, conn)
        tg.start_soon(self._tap_flush_loop)
        await self._authorized.wait()
        # only now is the server's keepalive timeout known (its SETUP came first)
        tg.start_soon(self._keepalive_loop)
        await self._restored.wait()
        return "subscriptions restored"

    async def _renew_before_connect(self) -> None:
        """A reconnect uses the session's current token (renewed if it is about to expire)."""
        try:
            await self._fetch_quote_token()
        except CredentialsError:
            raise
        except ApiError as exc:  # renewed an hour early: the one we have still works
            logger.warning("= could not renew the quote token: %s; reconnecting with it", exc)

    def process_exception(self, exc: Exception) -> Exception | None:
        """Retry (``None``) or the error to raise instead (see
        :meth:`.StreamShell.process_exception`); also fatal: a close with 1009."""
        if isinstance(exc, ConnectionClosed) and exc.code == 1009:
            # message too big: the restore after a reconnect would be refused the same way
            fatal = LocalProtocolError(
                f"the server closed the connection with 1009 (message too big: "
                f"{exc.reason!r}); lower max_message_bytes "
                f"(now {self.protocol.max_message_bytes!r})"
            )
            fatal.__cause__ = exc
            return fatal
        return super().process_exception(exc)

    async def _on_frame(self) -> None:
        proto = self.protocol
        flush_taps = False
        for event in proto.events_received():
            if isinstance(event, p.FeedEvents):
                flush_taps |= self._on_events(event)
            else:
                self._on_protocol_event(event)
        await self._flush()
        # only now, with FEED_SETUP and subscriptions sent, may reconnect_fn run
        self._check_restored()
        if flush_taps:
            await self._flush_taps()

    def _on_events(self, event: p.FeedEvents) -> bool:
        self.stats.events += event.count
        self._last_event_ns = event.recv_ns
        name = event.plan.spec.name
        queue = self._queues.get(name)
        if queue is not None:
            queue.put(event.plan, event.values, event.count)
        if self._taps:
            return self._accumulator.add(event.plan, event.values, event.recv_ns)
        return False

    def _on_protocol_event(self, event: p.ProtocolEvent) -> None:
        if isinstance(event, p.Authorized):
            self._authorized.set()
        elif isinstance(event, p.AuthRejected):
            raise AuthenticationError(
                f"DXLink server at {self._shown_url!r} rejected the token: {event.reason}; "
                "get a new quote token (they are valid for 24 hours)"
            )
        elif isinstance(event, p.AuthExpired):
            logger.warning("= the server withdrew authorisation (token expired?); re-authorising")
            if self.session is not None and self._conn_tg is not None:
                self._conn_tg.start_soon(self._reauthorize)
            elif self._token is not None:
                self.protocol.authenticate(self._token)
        elif isinstance(event, p.ServerErrorReceived):
            error = ServerError(event.error, event.message, event.channel)
            self.server_errors.append(error)
            # name the channel's event type: an ERROR about a subscription (a refused candle
            # symbol, the candle cap) arrives on its type's channel, and nothing else will
            channel = self.protocol.channels.get(event.channel)
            logger.warning(
                "< server error %s on channel %d%s: %s",
                event.error,
                event.channel,
                f" ({channel.event_type} subscriptions)" if channel is not None else "",
                event.message,
            )
            if event.error == "UNAUTHORIZED" and not self._authorized.is_set():
                raise AuthenticationError(f"DXLink server at {self._shown_url!r}: {event.message}")
        elif isinstance(event, p.Skipped):
            self.stats.skipped[event.reason] += 1
            self._log_once(
                f"skip:{event.reason}:{event.detail}", "skipped %s %r", event.reason, event.detail
            )
        elif isinstance(event, p.FormatSwitched):
            self.stats.format_switches += 1
            self._log_once(
                f"format:{event.channel}:{event.data_format}",
                "< channel %d switched to %s without a FEED_CONFIG; decoding each message by its "
                "own format",
                event.channel,
                event.data_format,
            )
        elif isinstance(event, p.ChannelClosed) and event.by_server:
            logger.warning("< server closed channel %d (%s)", event.channel, event.event_type)

    def _check_restored(self) -> None:
        proto = self.protocol
        if proto.state is not p.ConnectionState.AUTHORIZED or self._restored.is_set():
            return
        pending = [
            ch
            for ch in proto.channels.values()
            if proto.subscriptions.get(ch.event_type) and ch.state is not p.ChannelState.OPENED
        ]
        if not pending:
            self._restored.set()

    async def _keepalive_loop(self) -> None:
        while True:
            interval = self.protocol.keepalive_interval
            await self._sleep(max(0.0, self._last_send + interval - self._clock()))
            if self._clock() - self._last_send >= interval:
                await self._change(self.protocol.send_keepalive)

    async def _tap_flush_loop(self) -> None:
        while True:
            await self._sleep(self.tap_interval)
            await self._flush_taps()

    async def _flush_taps(self) -> None:
        async with self._tap_lock:  # a flush under way ends before this one looks
            if not self._accumulator.rows:
                return
            bad = self._accumulator.bad_messages
            batches = self._accumulator.flush()
            if self._accumulator.bad_messages > bad:
                self.stats.bad_frames += self._accumulator.bad_messages - bad
                self._log_once(
                    "bad-values",
                    "skipped a message with bad values: %s",
                    self._accumulator.last_error,
                )
            for batch in batches:
                await self._to_taps(batch)

    # --- subscriptions -------------------------------------------------------------------

    def _queue(self, event_type: type[Event]) -> _EventQueue:
        if self.queue_size <= 0:
            raise LocalProtocolError(
                "this streamer has no listener queues (queue_size=0); read it with tap()"
            )
        name = event_type.__name__
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _EventQueue(name, self.queue_size, self.stats)
        return queue

    async def subscribe(
        self,
        event_type: type[Event],
        symbols: Iterable[str],
        refresh_interval: float = 0.1,
        *,
        source: str | None = None,
    ) -> None:
        """Subscribe to events of one type for these symbols (for candles see
        :meth:`subscribe_candle`).

        Args:
            event_type: e.g. ``Quote``.
            symbols: symbols to add (a single string is one symbol).
            refresh_interval: aggregation period in seconds for this event type; fixed once the
                type's channel is open.
            source: order source for order-book events (``Order``), e.g. ``"NTV"``.
        """
        await self._subscribe(event_type, symbols, refresh_interval, source=source)

    async def _subscribe(
        self,
        event_type: type[Event],
        symbols: Iterable[str],
        refresh_interval: float,
        *,
        from_time: int | None = None,
        source: str | None = None,
    ) -> None:
        if self.queue_size > 0:
            self._queue(event_type)  # events are kept from now on, before anyone listens
        await self._change(
            self.protocol.subscribe,
            event_type,
            symbols,
            refresh_interval=refresh_interval,
            from_time=from_time,
            source=source,
        )

    async def unsubscribe(self, event_type: type[Event], symbols: Iterable[str]) -> None:
        """Remove subscriptions of one event type."""
        await self._change(self.protocol.unsubscribe, event_type, symbols)

    async def unsubscribe_all(self, event_type: type[Event]) -> None:
        """Remove every subscription of one event type."""
        await self._change(self.protocol.unsubscribe_all, event_type)

    async def subscribe_candle(
        self,
        symbols: Iterable[str],
        interval: str,
        start_time: datetime | None = None,
        extended_trading_hours: bool = False,
        refresh_interval: float = 0.1,
    ) -> None:
        """Subscribe to candles of ``interval`` (``"5m"``, ``"1h"``, ``"1d"``...) from
        ``start_time`` (default: the SDK's, 1970-01-12); history first, then live updates.

        Candles go on a channel of their own opened with contract ``HISTORY``: on ``AUTO``,
        where the tastytrade SDK asks, production sends no history, only an empty snapshot
        (one event with eventFlags 14, NaN prices; docs/dxlink.md#candle-history-needs-history). A
        history that is really empty arrives the same way: check
        :attr:`~tastyrec.events.Candle.snapshot_marker`. The server normalises the symbol in the
        events it sends: ``SPY{=1d}`` arrives as ``SPY{=d}``. A candle symbol the server refuses is
        answered with an ``ERROR`` on the candle channel, logged at WARNING and kept in
        :attr:`server_errors`.
        """
        from_time = (
            1_000_000_000 if start_time is None else math.floor(start_time.timestamp() * 1000)
        )
        names = [candle_symbol(s, interval, extended_trading_hours) for s in _as_list(symbols)]
        await self._subscribe(Candle, names, refresh_interval, from_time=from_time)

    async def unsubscribe_candle(
        self, ticker: str, interval: str | None = None, extended_trading_hours: bool = False
    ) -> None:
        """Remove a candle subscription made with :meth:`subscribe_candle`."""
        await self.unsubscribe(
            Candle, [candle_symbol(ticker, interval or "", extended_trading_hours)]
        )

    # --- events --------------------------------------------------------------------------

    async def listen(self, event_type: type[E]) -> AsyncIterator[E]:
        """Yield events of one type as they arrive, forever (until the streamer closes)."""
        queue = self._queue(event_type)
        while True:
            event = queue.get_nowait()
            if event is None:
                event = await queue.get()
            yield event  # type: ignore[misc]

    async def get_event(self, event_type: type[E]) -> E:
        """Wait for and return the next event of one type."""
        return await self._queue(event_type).get()  # type: ignore[return-value]

    def get_event_nowait(self, event_type: type[E]) -> E | None:
        """The next event of one type, or ``None`` if none is waiting."""
        return self._queue(event_type).get_nowait()  # type: ignore[return-value]

    def queued(self, event_type: type[Event]) -> int:
        """Number of events of one type waiting for a listener."""
        return len(self._queue(event_type))

    def tap(self, max_batches: int = 64) -> MemoryObjectReceiveStream[ColumnBatch]:
        """Receive every event as Arrow batches (:class:`~.compact.ColumnBatch`), per type.

        Each batch has the event type's Arrow schema with ``recv_ns``, the local receipt time.
        When ``max_batches`` are waiting, the streamer waits for the reader (nothing is dropped).
        Close the returned stream to stop tapping.
        """
        return self._open_tap(max_batches)


def _as_list(symbols: Iterable[str]) -> list[str]:
    return [symbols] if isinstance(symbols, str) else list(symbols)
