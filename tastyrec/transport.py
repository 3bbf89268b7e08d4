"""The websocket transport: the only module that imports websockets.

:func:`connections` wraps websockets' reconnecting client, ``async for ws in connect(...)``, so
reconnection uses websockets' own exponential backoff, which users tune with the
``WEBSOCKETS_BACKOFF_INITIAL_DELAY``, ``WEBSOCKETS_BACKOFF_MIN_DELAY``,
``WEBSOCKETS_BACKOFF_MAX_DELAY`` and ``WEBSOCKETS_BACKOFF_FACTOR`` environment variables (read by
websockets when it is imported). Foreign exceptions are mapped to tastyrec's at this boundary.

tastyrec runs on anyio's asyncio backend because websockets' client is asyncio-based.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import re
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from types import TracebackType
from typing import Any, Final

import anyio
import websockets
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream
from websockets.asyncio.client import ClientConnection, connect

from .exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK, _unwrap_group

__all__ = (
    "DEFAULT_MAX_SIZE",
    "Transport",
    "backoff",
    "connections",
    "map_exceptions",
    "redacting_logger",
    "start_streaming",
    "stop_streaming",
)

#: Largest inbound message accepted: candle snapshots exceed websockets' 1 MiB default.
DEFAULT_MAX_SIZE: Final = 64 * 1024 * 1024

#: websockets' backoff generator (jitter, then exponential, capped; reset after a success).
backoff: Final = websockets.client.backoff


_TOKEN_RE: Final = re.compile(r'"token"\s*:\s*"[^"]*"?')


class _RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    """websockets' client logger with AUTH tokens removed from its frame dumps.

    At DEBUG, websockets logs every frame it sends (``> TEXT '{"type":"AUTH","token":...}'``).
    """

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            super().log(level, msg, *(_redact_arg(a) for a in args), **kwargs)


def redacting_logger(name: str) -> logging.LoggerAdapter[logging.Logger]:
    """A websockets logger (``websockets.client``/``websockets.server``) that redacts tokens."""
    return _RedactingLogger(logging.getLogger(name), {})


def _redact_arg(arg: object) -> object:
    if isinstance(arg, int | float):
        return arg
    text = str(arg)
    return _TOKEN_RE.sub('"token":<redacted>', text) if '"token"' in text else arg


@contextlib.contextmanager
def map_exceptions() -> Iterator[None]:
    """Map websockets' close exceptions to :class:`~tastyrec.exceptions.ConnectionClosed`."""
    try:
        yield
    except websockets.ConnectionClosedOK as exc:
        code = exc.rcvd.code if exc.rcvd else None
        raise ConnectionClosedOK(code, exc.rcvd.reason if exc.rcvd else "") from exc
    except websockets.ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd else None
        raise ConnectionClosedError(code, exc.rcvd.reason if exc.rcvd else "") from exc


class Transport:
    """One open websocket: send and receive text frames, close."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws

    async def send(self, data: bytes) -> None:
        """Send UTF-8 JSON bytes as one text frame."""
        with map_exceptions():
            await self._ws.send(data, text=True)

    async def recv(self) -> bytes:
        """Receive one frame (as bytes, without decoding text to str)."""
        with map_exceptions():
            return await self._ws.recv(decode=False)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection (with a close handshake)."""
        await self._ws.close(code, reason)

    def abort(self) -> None:
        """Drop the connection at once, without a close handshake (a dead peer)."""
        self._ws.transport.abort()


async def connections(
    url: str,
    *,
    max_size: int | None = DEFAULT_MAX_SIZE,
    open_timeout: float | None = 10,
    reconnect_delays: Callable[[], Iterator[float]] | None = None,
) -> AsyncIterator[Transport]:
    """Yield a new :class:`Transport` each time the previous one is done with.

    Failed connection attempts are retried with websockets' backoff; a fatal error (bad URL,
    HTTP 4xx) is raised. So is a refused connection before any connection succeeded: nothing
    listens at that address, which a wrong URL or port explains far more often than a server
    restarting, and waiting out ``connect_timeout`` would only delay saying so. Once a
    connection has succeeded, a refused reconnect is retried like any network error.

    WebSocket pings are off: DXLink needs application KEEPALIVEs, not pings (DXLINK.md §1).
    Compression is off: permessage-deflate costs far more CPU than it saves on loopback and LAN
    (PERFORMANCE.md).

    Raises:
        ConnectionClosedError: the first attempt was refused (``code`` is ``None``).
    """
    kwargs = {} if reconnect_delays is None else {"reconnect_delays": reconnect_delays}
    connected = False

    def process_exception(exc: Exception) -> Exception | None:
        # the one place deciding retry vs fatal for both streamers (websockets' pattern)
        if not connected and _refused(exc):
            return ConnectionClosedError(
                None,
                f"cannot connect to {url!r}: connection refused; check the URL (host and "
                "port) and that the server is up",
            )
        return websockets.client.process_exception(exc)

    client = connect(
        url,
        max_size=max_size,
        open_timeout=open_timeout,
        ping_interval=None,
        compression=None,
        logger=redacting_logger("websockets.client"),
        process_exception=process_exception,
        **kwargs,  # type: ignore[arg-type]
    )
    async for ws in client:
        connected = True
        yield Transport(ws)


#: errnos of an address that cannot be reached, asyncio's ``Multiple exceptions`` included
_UNREACHABLE: Final = frozenset({errno.ECONNREFUSED, errno.EADDRNOTAVAIL, errno.ENETUNREACH})
_ERRNO_RE: Final = re.compile(r"\[Errno (\d+)\]")


def _refused(exc: Exception) -> bool:
    """Whether a connection attempt was refused (every address of the host tried).

    A host with several addresses (``localhost``: ``::1`` and ``127.0.0.1``) fails with a plain
    ``OSError("Multiple exceptions: [Errno 111] ..., [Errno 99] ...")`` on Python 3.11.
    """
    if isinstance(exc, ConnectionRefusedError):
        return True
    if type(exc) is not OSError or not str(exc).startswith("Multiple exceptions"):
        return False
    codes = {int(n) for n in _ERRNO_RE.findall(str(exc))}
    return errno.ECONNREFUSED in codes and codes <= _UNREACHABLE


# --- the lifecycle both streamers share (DXLink and account) ---------------------------------


async def start_streaming(
    tg: TaskGroup,
    run: Callable[..., Coroutine[Any, Any, Any]],
    connect_timeout: float,
    timeout_message: str,
) -> None:
    """Enter ``tg`` and start ``run`` in it (``await tg.start(run)``) within ``connect_timeout``.

    On failure the task group is closed and the real cause raised: ``ConnectionClosed`` with
    ``timeout_message`` when ``run`` was not ready in time, else the one meaningful exception
    of the group (a tastyrec error such as an authentication failure).
    """
    await tg.__aenter__()
    try:
        with anyio.fail_after(connect_timeout):
            await tg.start(run)
    except BaseException as exc:
        tg.cancel_scope.cancel()
        try:
            await tg.__aexit__(None, None, None)
        except BaseExceptionGroup as eg:
            raise _unwrap_group(eg) from None
        if isinstance(exc, TimeoutError):
            raise ConnectionClosed(None, timeout_message) from None
        if isinstance(exc, BaseExceptionGroup):  # run failed before it was ready
            raise _unwrap_group(exc) from None
        raise


async def stop_streaming(
    tg: TaskGroup,
    conn: Transport | None,
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
        return await tg.__aexit__(exc_type, exc, tb)
    except BaseExceptionGroup as eg:
        raise _unwrap_group(eg) from None
    finally:
        for tap in taps:
            tap.close()
