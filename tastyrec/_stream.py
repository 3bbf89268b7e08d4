"""The streaming shell both live streamers stand on (DXLink and account).

What is the same for :class:`~tastyrec.dxlink.streamer.DXLinkStreamer` and
:class:`~tastyrec.account.streamer.AlertStreamer` lives here, once:

* **Lifecycle.** ``async with`` enters a task group and waits (``connect_timeout``) for the first
  connection to be up with every subscription restored; leaving it closes the connection politely
  and ends every tap; :meth:`StreamShell.aclose` is the same.
* **Reconnect.** ``async for conn in transport.connections(...)`` (websockets' backoff). One
  function decides retry vs fatal, for failed connection attempts and lost connections alike:
  :meth:`StreamShell.process_exception` (websockets' ``process_exception`` is the model); it
  returns ``None`` to retry, or the error to raise out of ``async with`` instead. A subclass
  extends it, a user may replace it on an instance.
  ``disconnect_fn(streamer, *disconnect_args)`` runs at once when a connection breaks,
  ``reconnect_fn(streamer, *reconnect_args)`` once a new one has its subscriptions back.
* **Gaps.** Every break in the stream is a :class:`Gap` in :attr:`StreamShell.gaps`: opened when
  the loss is noticed, its reason extended by each failed reconnect attempt, closed when the
  subscriptions are back. The recorder reads them from here (no wrapping of callbacks).
* **Watchdog.** A connection silent for longer than :attr:`StreamShell.silence_limit` is dead:
  it is aborted and a new one made, instead of freezing.
* **Taps.** :meth:`StreamShell.tap` / :meth:`StreamShell.close_tap`: fan-out to bounded memory
  streams that never drop (the receive loop waits for a full tap).
* **Sending.** Whatever the sans-I/O protocol queued is sent in order under one lock; DEBUG lines
  ``> frame`` / ``< frame`` go through :func:`tastyrec.transport.redact`, the one redactor.
* **Time.** ``clock`` (monotonic seconds) and ``sleep`` are injected, so keepalive, heartbeat
  and watchdog behaviour is tested without real waits; so are the timeouts (``connect_timeout``
  and the account streamer's reply timeouts): :meth:`StreamShell._within` races a wait against
  the injected ``sleep``, never anyio's clock. Only the 2 s bound on the polite close when
  leaving is real time (teardown must end whatever a test does with its clock). Receipt times
  (``recv_ns``) and gap times are wall-clock ``time.time_ns()``.

A subclass supplies the protocol object and the per-connection part: :meth:`_before_connection`,
:meth:`_serve` (send the greeting, start its tasks, return once restored),
:meth:`_on_frame` (the protocol's events of one frame) and :meth:`_connection_closed`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from . import transport
from ._taskgroup import leave_group, start_in_group, within
from .exceptions import ConnectionClosed, RemoteProtocolError, _leaves, _unwrap_group

__all__ = ("Gap", "ShellStats", "StreamShell")

Callback = Callable[..., Awaitable[Any]]
T = TypeVar("T")
#: longest rendering of a frame in a DEBUG line
_CLIP: int = 300


class SansIO(Protocol):
    """What the shell needs of a sans-I/O protocol object."""

    @property
    def has_data_to_send(self) -> bool: ...

    def data_to_send(self) -> Iterator[bytes] | list[bytes]: ...

    def receive_text(self, raw: bytes, recv_ns: int) -> None: ...

    def close(self) -> None: ...


@dataclass
class ShellStats:
    """Counters every streamer keeps; all cumulative over its life."""

    frames: int = 0  #: frames received
    bad_frames: int = 0  #: malformed or unexpected frames, skipped
    skipped: Counter[str] = field(default_factory=Counter)  #: skipped items, by reason
    dropped: Counter[str] = field(default_factory=Counter)  #: dropped by full queues, by type
    connects: int = 0  #: connections up with subscriptions restored (1 + reconnects)
    disconnects: int = 0  #: connections lost
    failed_connects: int = 0  #: connection attempts that failed and were retried


@dataclass
class Gap:
    """A break in the stream: a lost connection, until a new one has every subscription back.

    Attributes:
        last_received_ns: receipt time of the last event before the break (None: none yet).
        disconnected_ns: when the loss was noticed.
        reason: why the connection was lost, and then why reconnect attempts failed, if any
            did (e.g. HTTP 502 on the upgrade).
        resumed_ns: when subscriptions were restored on a new connection (None: not yet).
        failed_attempts: reconnect attempts that failed during the gap.
    """

    last_received_ns: int | None
    disconnected_ns: int
    reason: str
    resumed_ns: int | None = None
    failed_attempts: int = 0
    _cause: str = field(default="", repr=False, compare=False)

    def attempt_failed(self, exc: Exception) -> None:
        """Note a failed reconnect attempt in :attr:`reason`."""
        if not self._cause:
            self._cause = self.reason
        self.failed_attempts += 1
        self.reason = (
            f"{self._cause}; {self.failed_attempts} reconnect attempt(s) failed, the last: "
            f"{transport.redact(str(exc) or type(exc).__name__)}"
        )


class Reconnect(Exception):
    """Drop this connection and make a new one (a silent peer, a restore not answered)."""


class StreamShell(Generic[T]):
    """Lifecycle, reconnect loop, gaps, watchdog, taps and sending of a live streamer.

    ``T`` is what a tap carries. See the module docstring; the subclass sets ``protocol``,
    ``stats`` and ``silence_limit`` before any connection is made.
    """

    protocol: SansIO
    stats: ShellStats
    #: seconds of silence after which a connection is dead
    silence_limit: float

    def __init__(
        self,
        url: str | None,
        disconnect_fn: Callback | None,
        disconnect_args: tuple[Any, ...],
        reconnect_fn: Callback | None,
        reconnect_args: tuple[Any, ...],
        connect_timeout: float,
        reconnect_delays: Callable[[], Iterator[float]] | None,
        logger: logging.Logger,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        max_inbound_bytes: int | None = transport.DEFAULT_MAX_SIZE,
    ) -> None:
        self.url = url
        self.disconnect_fn = disconnect_fn
        self.disconnect_args = disconnect_args
        self.reconnect_fn = reconnect_fn
        self.reconnect_args = reconnect_args
        self.connect_timeout = connect_timeout
        self.reconnect_delays = reconnect_delays
        self.max_inbound_bytes = max_inbound_bytes
        self._logger = logger
        self._clock = time.monotonic if clock is None else clock
        self._sleep = anyio.sleep if sleep is None else sleep
        #: every break in the stream, oldest first (one small record per reconnect)
        self.gaps: list[Gap] = []
        self._last_event_ns: int | None = None
        self._taps: list[MemoryObjectSendStream[T]] = []
        #: held while items are handed to the taps: they arrive in receipt order, and close_tap
        #: waits for a delivery under way instead of cutting it short (losing what it carried)
        self._tap_lock = anyio.Lock()
        self._tap_ends: dict[int, MemoryObjectSendStream[T]] = {}
        self._transport: transport.Transport | None = None
        self._send_lock = anyio.Lock()
        self._tg: TaskGroup | None = None
        self._last_recv = 0.0
        self._last_send = 0.0
        self._logged: set[str] = set()
        self._closing = False
        self._started = False  # the first connection was up, with its subscriptions
        self._ever_connected = False  # a websocket was ever opened

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self._shown_url!r}, connected={self.connected})"

    @property
    def connected(self) -> bool:
        """Whether a connection is open and usable."""
        raise NotImplementedError

    @property
    def _shown_url(self) -> str | None:
        """The URL as logs, reprs and errors show it: credentials redacted."""
        return None if self.url is None else transport.redact(self.url)

    # --- lifecycle -------------------------------------------------------------------------

    def _timeout_message(self) -> str:
        return (
            f"no connection to {self._shown_url!r} within {self.connect_timeout} s; "
            "check the URL and that the server is up"
        )

    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await _start_streaming(
            self._tg, self._run, self.connect_timeout, self._timeout_message(), self._sleep
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        self._closing = True
        try:
            return await _stop_streaming(
                self._tg, self._transport, self._taps, exc_type, exc, tb
            )
        finally:
            self._tg = None

    async def aclose(self) -> None:
        """Stop streaming (the same as leaving ``async with``)."""
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    # --- the reconnect loop ----------------------------------------------------------------

    def process_exception(self, exc: Exception) -> Exception | None:
        """Retry (``None``) or the error to raise instead: the one reconnect decision.

        Called with each failed connection attempt and with each error that ended a
        connection. The default: a lost connection (closed, silent, a network error) is
        retried; an attempt is decided by :func:`tastyrec.transport.process_exception` (a
        refused first connection and HTTP 4xx are fatal, network errors and 5xx retried).
        """
        if isinstance(exc, ConnectionClosed | Reconnect):
            return None
        return transport.process_exception(exc, url=self.url or "", connected=self._ever_connected)

    async def _run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        assert self.url is not None
        log = self._logger
        async for conn in transport.connections(
            self.url,
            max_size=self.max_inbound_bytes,
            reconnect_delays=self.reconnect_delays,
            decide_retry=self._attempt_failed,
        ):
            self._transport = conn
            self._ever_connected = True
            fatal: Exception | None = None
            try:
                await self._before_connection()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._watchdog, conn)
                    detail = await self._serve(conn, tg)
                    self.stats.connects += 1
                    if not self._started:
                        self._started = True
                        log.info("= connected to %s", self._shown_url)
                        task_status.started()
                    else:
                        log.info("= reconnected to %s; %s", self._shown_url, detail)
                        if self.gaps and self.gaps[-1].resumed_ns is None:
                            self.gaps[-1].resumed_ns = time.time_ns()
                        if self.reconnect_fn is not None:
                            await self.reconnect_fn(self, *self.reconnect_args)
            except* (ConnectionClosed, Reconnect, OSError) as eg:
                fatal = self._fatal(eg)
                if not self._closing and fatal is None:
                    log.warning("= connection to %s lost: %s", self._shown_url, eg.exceptions[0])
                    if self._started and (not self.gaps or self.gaps[-1].resumed_ns is not None):
                        self.gaps.append(Gap(self._last_event_ns, time.time_ns(), _reason(eg)))
            finally:
                self._transport = None
                self._connection_closed()
            if self._closing:
                await self._flush_taps()
                return
            if fatal is not None:
                await self._flush_taps()
                raise fatal
            self.stats.disconnects += 1
            if self._started and self.disconnect_fn is not None:  # at once, before anything else
                await self.disconnect_fn(self, *self.disconnect_args)
            await self._flush_taps()  # what arrived before the break is not lost

    def _fatal(self, eg: BaseExceptionGroup[BaseException]) -> Exception | None:
        for exc in _leaves(eg):
            if isinstance(exc, Exception) and (fatal := self.process_exception(exc)) is not None:
                return fatal
        return None

    def _attempt_failed(self, exc: Exception) -> Exception | None:
        """A connection attempt failed: fatal, or noted (stats, log, gap) and retried."""
        fatal = self.process_exception(exc)
        if fatal is None:
            self.stats.failed_connects += 1
            self._logger.warning(
                "= connection attempt to %s failed: %s; retrying",
                self._shown_url,
                transport.redact(str(exc) or type(exc).__name__),
            )
            if self.gaps and self.gaps[-1].resumed_ns is None:
                self.gaps[-1].attempt_failed(exc)
        return fatal

    async def _before_connection(self) -> None:
        """Runs before each connection's tasks start (hook)."""

    async def _serve(self, conn: transport.Transport, tg: TaskGroup) -> str:
        """Greet, start the connection's tasks in ``tg`` (the receive loop: :meth:`_receive_loop`)
        and return once every subscription is restored, with what the reconnect log line says."""
        raise NotImplementedError

    def _connection_closed(self) -> None:
        """The connection is gone (hook; the default closes the protocol)."""
        self.protocol.close()

    # --- receiving, sending, watching ------------------------------------------------------

    async def _receive_loop(self, conn: transport.Transport) -> None:
        proto, stats, log = self.protocol, self.stats, self._logger
        while True:
            raw = await conn.recv()
            now = time.time_ns()
            self._last_recv = self._clock()
            stats.frames += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug("< %s", shown_frame(raw))
            try:
                proto.receive_text(raw, now)
            except RemoteProtocolError as exc:
                stats.bad_frames += 1
                self._log_once("bad-frame", "skipped a malformed frame: %s", exc)
                continue
            await self._on_frame()

    async def _on_frame(self) -> None:
        """Handle the protocol's events of the frame just received (hook)."""
        raise NotImplementedError

    async def _flush(self) -> None:
        """Send whatever the protocol has queued, in order."""
        conn = self._transport
        if conn is None or not self.protocol.has_data_to_send:
            return  # the common case after a data frame: no lock, no checkpoint
        log = self._logger
        async with self._send_lock:
            for data in self.protocol.data_to_send():
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("> %s", shown_frame(data))
                await conn.send(data)
                self._last_send = self._clock()

    async def _change(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call a protocol method that queues messages, then send them, in order."""
        async with self._send_lock:
            result = method(*args, **kwargs)
        await self._flush()
        return result

    async def _watchdog(self, conn: transport.Transport) -> None:
        self._last_recv = self._clock()
        while True:
            deadline = self._last_recv + self.silence_limit
            now = self._clock()
            if now >= deadline:
                self._logger.warning(
                    "= nothing from %s for %.1f s: connection is dead, reconnecting",
                    self._shown_url,
                    now - self._last_recv,
                )
                conn.abort()
                raise Reconnect(f"silent for {now - self._last_recv:.1f} s")
            await self._sleep(deadline - now)

    async def _within(self, seconds: float, wait: Callable[[], Awaitable[object]]) -> bool:
        """Run ``wait()`` for at most ``seconds`` of the injected clock: whether it finished.

        ``wait`` must not raise (it waits for events).
        """
        return await within(self._sleep, seconds, wait)

    def _log_once(self, key: str, msg: str, *args: Any) -> None:
        """Log at WARNING the first time ``key`` is seen, at DEBUG after that."""
        level = logging.WARNING if key not in self._logged else logging.DEBUG
        self._logged.add(key)
        self._logger.log(level, msg, *args)

    # --- taps ------------------------------------------------------------------------------

    def _open_tap(self, max_items: int) -> MemoryObjectReceiveStream[T]:
        send, receive = anyio.create_memory_object_stream[T](max_items)
        self._taps.append(send)
        self._tap_ends[id(receive)] = send
        return receive

    async def _to_taps(self, item: T) -> None:
        """Hand ``item`` to every tap, waiting for full ones; a tap whose reader left is ended.

        The caller holds :attr:`_tap_lock`.
        """
        for tap in list(self._taps):
            try:
                await tap.send(item)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                if tap in self._taps:  # close_tap may have taken it out already
                    self._taps.remove(tap)
                tap.close()

    async def _flush_taps(self) -> None:
        """Hand the taps what is gathered but not sent yet (hook: nothing is, by default)."""

    async def close_tap(self, tap: MemoryObjectReceiveStream[T], *, flush: bool = True) -> None:
        """Flush what has been received into the taps (unless ``flush`` is False), end ``tap``.

        The reader then gets every item received up to this call, followed by the end of the
        stream: the way to stop recording without losing the last fraction of a second. The
        tap ends even if this call is cancelled (the flush is then cut short).
        """
        try:
            if flush:
                await self._flush_taps()
                async with self._tap_lock:  # a delivery under way finishes into this tap first
                    self._end_tap(tap)
        finally:
            self._end_tap(tap)

    def _end_tap(self, tap: MemoryObjectReceiveStream[T]) -> None:
        send = self._tap_ends.pop(id(tap), None)
        if send is not None:
            if send in self._taps:
                self._taps.remove(send)
            send.close()  # wakes a waiting reader with the end of the stream


async def _start_streaming(
    tg: TaskGroup,
    run: Callable[..., Coroutine[Any, Any, Any]],
    connect_timeout: float,
    timeout_message: str,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> None:
    """Enter ``tg`` and start ``run`` in it (``await tg.start(run)``) within ``connect_timeout``
    seconds of ``sleep``'s clock.

    On failure the task group is closed and the real cause raised: ``ConnectionClosed`` with
    ``timeout_message`` when ``run`` was not ready in time, else the one meaningful exception
    of the group (a tastyrec error such as an authentication failure).
    """
    await start_in_group(
        tg,
        run,
        timeout_s=connect_timeout,
        timeout_error=ConnectionClosed(None, timeout_message),
        sleep=sleep,
    )


async def _stop_streaming(
    tg: TaskGroup,
    conn: transport.Transport | None,
    taps: Iterable[MemoryObjectSendStream[Any]],
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> bool | None:
    """Close ``conn`` politely (2 s at most), cancel and leave ``tg``, close every tap."""
    if conn is not None:
        with anyio.move_on_after(2, shield=True):
            await conn.close(1000, "bye")
    tg.cancel_scope.cancel()
    try:
        return await leave_group(tg, exc_type, exc, tb)
    finally:
        for tap in taps:
            tap.close()


def shown_frame(data: bytes | str) -> str:
    """A frame as a DEBUG line shows it: secrets redacted, then clipped."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = transport.redact(text)
    return text if len(text) <= _CLIP else f"{text[:_CLIP]}...({len(text)} chars)"


def _reason(eg: BaseExceptionGroup[BaseException]) -> str:
    """Why a connection was lost: the watchdog's finding first, else the first error."""
    leaves = list(_leaves(eg))
    for exc in leaves:
        if isinstance(exc, Reconnect):
            return f"no data: {exc}"
    exc = _unwrap_group(eg)
    return str(exc) or type(exc).__name__
