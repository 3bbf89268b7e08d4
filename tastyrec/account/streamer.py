"""AlertStreamer: the tastytrade SDK's account-streamer interface over :class:`.AccountProtocol`.

A thin I/O loop (anyio on asyncio, websockets through :mod:`tastyrec.transport`) around the
sans-I/O protocol, standing on :class:`tastyrec._stream.StreamShell` with the DXLink streamer
(lifecycle, reconnect loop and its one ``process_exception`` decision, gaps, watchdog, taps,
injected ``clock``/``sleep``). What it adds to the SDK's behaviour:

* **Errors at the call.** Every ``subscribe_*`` waits for the server's status reply to *its*
  request; an error reply raises :class:`~tastyrec.exceptions.RequestError` right there (a
  rejected auth-token says ``"failed"``).
* **Reconnect.** websockets' own backoff (``WEBSOCKETS_BACKOFF_*`` environment variables);
  ``disconnect_fn(streamer, *disconnect_args)`` runs at once when a connection breaks;
  subscriptions are restored automatically on the new connection (the server replays nothing), and
  only once they are all acknowledged does ``reconnect_fn(streamer, *reconnect_args)`` run. A
  restore the server refuses is fatal (the same token would be refused again): the
  :class:`~tastyrec.exceptions.RequestError` leaves the ``async with`` block. Each break is a
  :class:`~tastyrec._stream.Gap` in :attr:`AlertStreamer.gaps` (the recorder's ``account`` gaps).
* **Heartbeats and watchdog.** A ``heartbeat`` every ``heartbeat_interval`` seconds (the server
  wants one every 2-60 s); a connection that sends nothing back for ``heartbeat_interval +
  reply_timeout`` seconds is dead, dropped and replaced, instead of freezing.
* **Bounded memory.** Each payload type's queue holds at most ``queue_size`` notifications; when a
  listener falls behind the oldest are dropped and counted (``stats.dropped``). Notifications of
  unknown types are kept (:class:`~tastyrec.events.account.UnknownNotification`, ``listen``-able)
  and counted in ``stats.unknown``; malformed frames and payloads are counted, never fatal.
* **Tap.** :meth:`AlertStreamer.tap` gives every notification in arrival order and never drops
  (the receive loop waits for a full tap); :meth:`close_tap` ends one from the streamer's side.

Tokens are never logged and never part of a repr or an exception.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

from .. import transport
from .._queue import ChunkQueue
from .._stream import Reconnect, ShellStats, StreamShell
from ..events.account import ACCOUNT_TYPES, AccountEvent, UnknownNotification
from ..exceptions import (
    LocalProtocolError,
    RequestError,
)
from . import protocol as p

__all__ = ("AlertStreamer", "AlertStreamerStats")

logger = logging.getLogger(__name__)

T = TypeVar("T", bound=AccountEvent | UnknownNotification)
Callback = Callable[..., Awaitable[Any]]

#: Default bound of each payload type's listener queue, in notifications.
DEFAULT_QUEUE_SIZE: Final = 10_000
_LISTENABLE: Final[frozenset[type[Any]]] = frozenset({*ACCOUNT_TYPES.values(), UnknownNotification})


class _HasAccountNumber(Protocol):
    @property
    def account_number(self) -> str: ...


@dataclass
class AlertStreamerStats(ShellStats):
    """Counters an AlertStreamer exposes; all cumulative over its life (see
    :class:`.ShellStats` for frames, bad_frames, skipped, dropped, connects, disconnects,
    failed_connects)."""

    notifications: int = 0  #: notifications received (known and unknown types)
    unknown: Counter[str] = field(default_factory=Counter)  #: unknown notification types
    error_replies: int = 0  #: status replies with ``status: error``
    heartbeats: int = 0  #: heartbeats sent


class _Waiter:
    """A request waiting for its status reply."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.reply: p.Reply | None = None  # None when done: the connection was lost


class AlertStreamer(StreamShell[p.NotificationReceived]):
    """Stream account notifications (orders, fills, balances, positions...), with the tastytrade
    SDK's interface.

    Example usage::

        async with AlertStreamer(url="wss://streamer.tastyworks.com", token=access_token) as s:
            await s.subscribe_accounts(["5WT00000"])
            async for order in s.listen(PlacedOrder):
                print(order.id, order.status, [leg.fills for leg in order.legs])

    Args:
        url: the account-streamer websocket URL (``wss://streamer.tastyworks.com``; sandbox
            ``wss://streamer.cert.tastyworks.com``).
        token: the OAuth access token, or the whole REST ``Authorization`` value
            (``Bearer <token>``); sent as ``auth-token`` with every message. Replace it before it
            expires with :meth:`set_token`.
        disconnect_fn: ``async def fn(streamer, *disconnect_args)``, run as soon as a connection
            breaks.
        reconnect_fn: ``async def fn(streamer, *reconnect_args)``, run once a new connection is up
            and every subscription has been restored.
        queue_size: bound of each payload type's listener queue (oldest dropped first).
        heartbeat_interval: seconds between heartbeats.
        reply_timeout: seconds (of ``clock``/``sleep``) a request waits for its status reply;
            then ``TimeoutError`` (a restore not answered in time: a new connection).
        connect_timeout: seconds (of ``clock``/``sleep``) ``async with`` waits for the first
            connection.
        reconnect_delays: backoff generator factory (default: websockets' backoff).
        source: the ``source`` tag sent with every action.
        clock: monotonic seconds (default ``time.monotonic``), for the watchdog.
        sleep: ``async def sleep(seconds)`` (default ``anyio.sleep``), for heartbeats, the
            watchdog and every timeout.
    """

    def __init__(
        self,
        *,
        url: str,
        token: str,
        disconnect_fn: Callback | None = None,
        disconnect_args: tuple[Any, ...] = (),
        reconnect_fn: Callback | None = None,
        reconnect_args: tuple[Any, ...] = (),
        heartbeat_interval: float = 20.0,
        reply_timeout: float = 10.0,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        connect_timeout: float = 30.0,
        reconnect_delays: Callable[[], Iterator[float]] | None = None,
        source: str = p.SOURCE,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        if not token:
            raise LocalProtocolError("the account streamer needs an access token")
        if queue_size < 1:
            raise LocalProtocolError(f"queue_size must be at least 1, not {queue_size!r}")
        super().__init__(
            url, disconnect_fn, disconnect_args, reconnect_fn, reconnect_args,
            connect_timeout, reconnect_delays, logger, clock, sleep,
        )  # fmt: skip
        self.url: str = url
        self._token = token
        self.queue_size = queue_size
        self.heartbeat_interval = heartbeat_interval
        self.reply_timeout = reply_timeout
        self.silence_limit = heartbeat_interval + reply_timeout
        self.protocol: p.AccountProtocol = p.AccountProtocol(source=source)
        self.stats: AlertStreamerStats = AlertStreamerStats()
        self._queues: dict[type[Any], ChunkQueue[Any]] = {
            cls: ChunkQueue(queue_size) for cls in _LISTENABLE
        }
        self._waiters: dict[int, _Waiter] = {}
        self._restored = anyio.Event()
        self._up = anyio.Event()  # replaced by an unset one when a connection is lost

    @property
    def connected(self) -> bool:
        """Whether a connection is open with every subscription restored."""
        return self._transport is not None and self._restored.is_set()

    @property
    def session_id(self) -> str | None:
        """The server's ``web-socket-session-id`` of the current connection, once it replied."""
        return self.protocol.session_id

    def set_token(self, token: str) -> None:
        """Use a new access token from the next message on (access tokens live 15 minutes)."""
        if not token:
            raise LocalProtocolError("the account streamer needs an access token")
        self._token = token
        self.protocol.set_auth_token(token)

    # --- lifecycle ---------------------------------------------------------------------------

    def _timeout_message(self) -> str:
        return (
            f"no account-streamer connection to {self._shown_url!r} within "
            f"{self.connect_timeout} s; check the URL and that the server is up"
        )

    async def _before_connection(self) -> None:
        self._restored = anyio.Event()

    async def _serve(self, conn: transport.Transport, tg: TaskGroup) -> str:
        async with self._send_lock:
            ids = self.protocol.connect(self._token)
            waiters = self._wait_for(ids)
        tg.start_soon(self._receive_loop, conn)
        await self._flush()
        await self._await_restore(ids, waiters)
        self._restored.set()
        self._up.set()
        tg.start_soon(self._heartbeat_loop)
        return f"{len(ids)} subscriptions restored"

    def _connection_closed(self) -> None:
        if self._up.is_set():
            self._up = anyio.Event()
        self.protocol.close()
        self._release_waiters()

    def _wait_for(self, ids: Iterable[int]) -> list[_Waiter]:
        waiters = []
        for rid in ids:
            waiter = self._waiters[rid] = _Waiter()
            waiters.append(waiter)
        return waiters

    async def _await_restore(self, ids: list[int], waiters: list[_Waiter]) -> None:
        async def all_answered() -> None:
            for waiter in waiters:
                await waiter.done.wait()

        if not await self._within(self.reply_timeout, all_answered):  # on the injected clock
            raise Reconnect(f"no reply to the restoring requests within {self.reply_timeout} s")
        for rid, waiter in zip(ids, waiters, strict=True):
            if waiter.reply is None:
                raise Reconnect("connection lost while restoring subscriptions")
            if not waiter.reply.ok:
                # fatal: the same token and subscriptions would be refused again
                raise RequestError(waiter.reply.action, waiter.reply.message or "", rid)

    def _release_waiters(self) -> None:
        """The connection is gone: every waiting request learns it (reply None)."""
        for waiter in self._waiters.values():
            waiter.done.set()
        self._waiters.clear()

    async def _on_frame(self) -> None:
        for event in self.protocol.events_received():
            if isinstance(event, p.NotificationReceived):
                self._on_notification(event)
                async with self._tap_lock:
                    await self._to_taps(event)
            elif isinstance(event, p.Reply):
                self._on_reply(event)
            else:
                self.stats.bad_frames += 1
                self.stats.skipped[event.reason] += 1
                self._log_once(f"skip:{event.reason}", "skipped %s: %s", event.reason, event.detail)

    def _on_notification(self, event: p.NotificationReceived) -> None:
        self.stats.notifications += 1
        payload = event.event
        if isinstance(payload, UnknownNotification):
            self.stats.unknown[payload.type] += 1
            self._log_once(
                f"unknown:{payload.type}", "< unknown notification type %r kept", payload.type
            )
        self._last_event_ns = event.recv_ns
        if self._queues[type(payload)].put(payload, 1):
            self.stats.dropped[type(payload).__name__] += 1

    def _on_reply(self, reply: p.Reply) -> None:
        if not reply.ok:
            self.stats.error_replies += 1
            if reply.action == "heartbeat" or reply.request_id is None:
                self._log_once(
                    f"error:{reply.action}",
                    "< the server refused %r: %r",
                    reply.action,
                    reply.message,
                )
        if reply.request_id is not None:
            waiter = self._waiters.pop(reply.request_id, None)
            if waiter is not None:
                waiter.reply = reply
                waiter.done.set()

    async def _heartbeat_loop(self) -> None:
        while True:
            await self._sleep(self.heartbeat_interval)
            async with self._send_lock:
                self.protocol.heartbeat()
            self.stats.heartbeats += 1
            await self._flush()

    # --- subscriptions -----------------------------------------------------------------------

    async def _request(self, method: Callable[..., int | None], *args: Any) -> None:
        """Call a protocol method that queues an action, send it, wait for its reply.

        If the connection is lost first, the subscription (already in the desired state) is
        restored on the next connection: wait for that instead.
        """
        async with self._send_lock:
            rid = method(*args)
            waiter = self._wait_for([rid])[0] if rid is not None else None
        if waiter is None:
            await self._restored_anew()
            return
        await self._flush()
        if not await self._within(self.reply_timeout, waiter.done.wait):  # the injected clock
            assert rid is not None
            self._waiters.pop(rid, None)
            action = self.protocol.pending.get(rid, "the request")
            raise TimeoutError(f"no reply to {action!r} within {self.reply_timeout} s")
        reply = waiter.reply
        if reply is None:
            await self._restored_anew()
        elif not reply.ok:
            raise RequestError(reply.action, reply.message or "", rid)

    async def _restored_anew(self) -> None:
        while not self.connected:
            await self._up.wait()  # set when a connection has its subscriptions back

    async def subscribe_accounts(self, accounts: Iterable[_HasAccountNumber | str]) -> None:
        """Receive orders, balances, positions, trading status, transactions and gain summaries
        of these accounts (``connect``).

        Args:
            accounts: SDK ``Account`` objects (anything with ``account_number``) or numbers.

        Returns once the server confirmed the subscription
        (docs/account-streamer.md#subscriptions-are-confirmed): notifications sent after that reach
        the listeners.

        Raises:
            RequestError: the server refused (``"failed"``: the auth-token was rejected; an
                account the session does not own). The refused accounts are dropped from the
                subscriptions, so a reconnect does not ask for them again.
        """
        if isinstance(accounts, str):
            accounts = [accounts]
        numbers = [a if isinstance(a, str) else a.account_number for a in accounts]
        wanted = self.protocol.subscriptions.accounts
        before = list(wanted)
        try:
            await self._request(self.protocol.subscribe_accounts, numbers)
        except RequestError:
            wanted[:] = before
            raise

    async def subscribe_public_watchlists(self) -> None:
        """Receive public watchlist changes (:class:`~tastyrec.events.account.Watchlist`)."""
        await self._request(self.protocol.subscribe_public_watchlists)

    async def subscribe_quote_alerts(self) -> None:
        """Receive the user's triggered quote alerts (``QuoteAlert``)."""
        await self._request(self.protocol.subscribe_quote_alerts)

    async def subscribe_user_messages(self, external_id: str) -> None:
        """Subscribe to user messages (``user-message-subscribe``; ``external_id`` is the user's
        external-id). Their payload format is undocumented: they arrive as
        :class:`~tastyrec.events.account.UnknownNotification`."""
        await self._request(self.protocol.subscribe_user_messages, external_id)

    # --- events --------------------------------------------------------------------------------

    def _queue(self, cls: type[Any]) -> ChunkQueue[Any]:
        queue = self._queues.get(cls)
        if queue is None:
            names = sorted(c.__name__ for c in _LISTENABLE)
            raise LocalProtocolError(f"cannot listen to {cls!r}; one of {names}")
        return queue

    async def listen(self, alert_class: type[T]) -> AsyncIterator[T]:
        """Yield payloads of one class as they arrive, forever (``PlacedOrder``, ``AccountBalance``,
        ``UnknownNotification``...)."""
        queue = self._queue(alert_class)
        while True:
            item: T = await _get(queue)
            yield item

    async def get_event(self, alert_class: type[T]) -> T:
        """Wait for and return the next payload of one class."""
        item: T = await _get(self._queue(alert_class))
        return item

    def get_event_nowait(self, alert_class: type[T]) -> T | None:
        """The next payload of one class, or ``None`` if none is waiting."""
        queue = self._queue(alert_class)
        taken = queue.take_chunk()
        item: T | None = None if taken is None else taken[0]
        return item

    def tap(self, max_items: int = 1024) -> MemoryObjectReceiveStream[p.NotificationReceived]:
        """Receive every notification with its wire type, server time and receipt time (the
        recorder's input), in arrival order. A tap never drops: when ``max_items`` are waiting,
        the streamer waits for the reader. Close the returned stream, or call
        :meth:`close_tap`, to stop tapping."""
        return self._open_tap(max_items)

    def queued(self, alert_class: type[Any]) -> int:
        """Number of payloads of one class waiting for a listener."""
        return len(self._queue(alert_class))


async def _get(queue: ChunkQueue[Any]) -> Any:
    """The oldest payload of ``queue``, once there is one."""
    while (taken := queue.take_chunk()) is None:
        await queue.wait()
    return taken[0]
