"""The websocket transport: the only module that imports websockets.

:func:`connections` wraps websockets' reconnecting client, ``async for ws in connect(...)``, so
reconnection uses websockets' own exponential backoff, which users tune with the
``WEBSOCKETS_BACKOFF_INITIAL_DELAY``, ``WEBSOCKETS_BACKOFF_MIN_DELAY``,
``WEBSOCKETS_BACKOFF_MAX_DELAY`` and ``WEBSOCKETS_BACKOFF_FACTOR`` environment variables (read by
websockets when it is imported). Foreign exceptions are mapped to tastyrec's at this boundary.

Secrets: :func:`redact` is the one token redactor. Every log line and error message that shows a
URL or a frame passes through it: a token in a URL's userinfo or query (``--url
"wss://user:TOKEN@host/realtime?token=TOKEN"``) and the ``token``/``auth-token`` of a frame are
replaced, and websockets' own DEBUG lines (request line, ``Authorization`` header, frame dumps)
go through it by the logger adapter both streamers and both simulators use.

tastyrec runs on anyio's asyncio backend because websockets' client is asyncio-based.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Final

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.uri import parse_uri

from ._redact import REDACTED, redact
from .exceptions import ConnectionClosedError, ConnectionClosedOK

__all__ = (
    "DEFAULT_MAX_SIZE",
    "Transport",
    "backoff",
    "connections",
    "map_exceptions",
    "process_exception",
    "redact",
    "redacting_logger",
)

#: Largest inbound message accepted: candle snapshots exceed websockets' 1 MiB default.
DEFAULT_MAX_SIZE: Final = 64 * 1024 * 1024

#: websockets' backoff generator (jitter, then exponential, capped; reset after a success).
backoff: Final = websockets.client.backoff


#: websockets logs request and response headers at DEBUG; these carry credentials
_SECRET_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})

class _RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    """websockets' logger with secrets removed from what it logs.

    At DEBUG, websockets logs the request line (``> GET /realtime?token=... HTTP/1.1``), every
    header (``> Authorization: Basic ...`` when the URL has userinfo) and every frame (``> TEXT
    '{"type":"AUTH","token":...}'``).
    """

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            if (
                len(args) == 2
                and isinstance(args[0], str)
                and args[0].lower() in _SECRET_HEADERS
                and msg in ("> %s: %s", "< %s: %s")
            ):
                args = (args[0], REDACTED)
            super().log(level, msg, *(_redact_arg(a) for a in args), **kwargs)


def redacting_logger(name: str) -> logging.LoggerAdapter[logging.Logger]:
    """A websockets logger (``websockets.client``/``websockets.server``) that redacts secrets."""
    return _RedactingLogger(logging.getLogger(name), {})


def _redact_arg(arg: object) -> object:
    if isinstance(arg, int | float):
        return arg
    text = str(arg)
    redacted = redact(text)
    return arg if redacted == text else redacted


@contextlib.contextmanager
def map_exceptions(max_size: int | None = None) -> Iterator[None]:
    """Map websockets' close exceptions to :class:`~tastyrec.exceptions.ConnectionClosed`.

    Args:
        max_size: the connection's inbound message limit, named in the error when websockets
            closed the connection (1009) because a message from the peer exceeded it.
    """
    try:
        yield
    except websockets.ConnectionClosedOK as exc:
        code = exc.rcvd.code if exc.rcvd else None
        raise ConnectionClosedOK(code, exc.rcvd.reason if exc.rcvd else "") from exc
    except websockets.ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd else None
        reason = exc.rcvd.reason if exc.rcvd else ""
        message = None
        if exc.sent is not None and exc.sent.code == 1009 and not exc.rcvd_then_sent:
            # we closed first, with 1009: websockets' PayloadTooBig (its text is the close reason).
            # A close frame received now only echoes ours: not the server's 1009 (which would
            # mean a message of *ours* was too big), so no code.
            code, reason = None, ""
            limit = "the" if max_size is None else f"the {_size(max_size)}"
            message = (
                f"message too big: the server sent a message over {limit} inbound limit "
                f"({exc.sent.reason}); closed the connection with 1009"
            )
        raise ConnectionClosedError(code, reason, message=message) from exc


def _size(n: int) -> str:
    """``67108864`` as ``"64 MiB"``; sizes that are not whole KiB/MiB in bytes."""
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} bytes"


class Transport:
    """One open websocket: send and receive text frames, close."""

    def __init__(self, ws: ClientConnection, max_size: int | None = None) -> None:
        self._ws = ws
        self._max_size = max_size

    async def send(self, data: bytes) -> None:
        """Send UTF-8 JSON bytes as one text frame."""
        with map_exceptions():
            await self._ws.send(data, text=True)

    async def recv(self) -> bytes:
        """Receive one frame (as bytes, without decoding text to str)."""
        with map_exceptions(self._max_size):
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
    on_retry: Callable[[Exception], None] | None = None,
    decide_retry: Callable[[Exception], Exception | None] | None = None,
) -> AsyncIterator[Transport]:
    """Yield a new :class:`Transport` each time the previous one is done with.

    Failed connection attempts are retried with websockets' backoff (network errors, and HTTP
    500/502/503/504 on the upgrade: tastytrade's gateway answers 502 at times,
    docs/dxlink.md#strict-order-and-502-on-the-upgrade); ``on_retry(exc)`` is told of each such
    attempt. A fatal error (bad URL, HTTP 4xx) is raised. So is a refused connection before any
    connection succeeded: nothing listens at that address, which a wrong URL or port explains far
    more often than a server restarting, and waiting out ``connect_timeout`` would only delay saying
    so. Once a connection has succeeded, a refused reconnect is retried like any network error.

    WebSocket pings are off: DXLink needs application KEEPALIVEs, not pings
    (docs/dxlink.md#keepalive). Compression is off: permessage-deflate costs far more CPU than it
    saves on loopback and LAN (docs/performance.md#the-wire).

    ``decide_retry(exc)``, when given, replaces that decision (and ``on_retry``): ``None`` to
    retry, else the error to raise; the streamers pass their
    :meth:`~tastyrec._stream.StreamShell.process_exception`, built on :func:`process_exception`.

    Raises:
        ConnectionClosedError: the first attempt was refused (``code`` is ``None``).
    """
    try:
        parse_uri(url)  # as connect() will, but its InvalidURI quotes the URL, credentials and all
    except websockets.InvalidURI as exc:
        raise websockets.InvalidURI(redact(exc.uri), exc.msg) from None
    kwargs = {} if reconnect_delays is None else {"reconnect_delays": reconnect_delays}
    connected = False

    def decide(exc: Exception) -> Exception | None:
        if decide_retry is not None:
            return decide_retry(exc)
        fatal = process_exception(exc, url=url, connected=connected)
        if fatal is None and on_retry is not None:
            on_retry(exc)
        return fatal

    client = connect(
        url,
        max_size=max_size,
        open_timeout=open_timeout,
        ping_interval=None,
        compression=None,
        logger=redacting_logger("websockets.client"),
        process_exception=decide,
        **kwargs,  # type: ignore[arg-type]
    )
    async for ws in client:
        connected = True
        yield Transport(ws, max_size)


def process_exception(exc: Exception, *, url: str, connected: bool) -> Exception | None:
    """Whether a failed connection attempt is retried (``None``) or the error to raise.

    websockets' own decision (network errors and HTTP 500/502/503/504 retried; a bad URL,
    HTTP 4xx fatal), and one rule of ours: a refused connection before any connection
    succeeded (``connected`` False) is fatal, with a message saying to check the URL.
    """
    if not connected and _refused(exc):
        return ConnectionClosedError(
            None,
            f"cannot connect to {redact(url)!r}: connection refused; check the URL (host and "
            "port) and that the server is up",
        )
    fatal: Exception | None = websockets.client.process_exception(exc)
    return fatal


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
