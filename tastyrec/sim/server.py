"""The DXLink simulator: :class:`~tastyrec.sim.engine.ServerConnection` over real websockets.

Role: accept websocket connections (``websockets.asyncio.server``, 127.0.0.1 by default), drive one
sans-I/O engine per connection with the wall clock, and inject faults (drop, stall, malformed
frame, ERROR, token expiry, close 1012, a silent switch to FULL, HTTP 502 on the upgrade) on
demand or on a chaos schedule. This is the only simulator module
that imports websockets or anyio; it runs on anyio's asyncio backend (websockets is asyncio).

Each connection has two tasks: a reader that feeds frames to the engine and a pump that calls
``tick`` at the engine's deadlines (at least every 50 ms) and writes whatever the engine queued,
one text frame per message, under one lock so frames keep their order. Library pings are off:
DXLink keepalive is application-level (docs/dxlink.md#keepalive). Oversized client frames are
refused by websockets' ``max_size`` (close 1009).

Tokens are never logged.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Final, Self

import anyio
from websockets.asyncio.server import Server, ServerConnection as WsConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .._closing import AsyncClosing
from ..dxlink.messages import AnyMessage, UnknownMessage
from ..transport import redacting_logger
from .engine import Feed, ServerConnection, SimConfig
from .market import Market

__all__ = ("LoopbackServer", "Simulator")

logger = logging.getLogger(__name__)

_MAX_IDLE_S: Final = 0.05
MALFORMED_FRAME: Final = "this is not JSON {"
CHAOS_KINDS: Final = frozenset(
    {"drop", "stall", "malformed", "error", "expire", "restart", "full", "502"}
)
#: the close production sends before a service restart
#: (docs/dxlink.md#close-1012-reconnection-is-required)
RESTART_CLOSE: Final = (1012, "Reconnection is required")
#: upgrade attempts refused with 502 each time the ``502`` chaos fires
CHAOS_502_REFUSALS: Final = 2


class LoopbackServer(AsyncClosing):
    """What both simulators share: listening for websocket clients, a task group for the
    background tasks, and closing.

    Subclasses set ``host`` and ``port`` before :meth:`_listen`, and start their background tasks
    in the task group it returns.
    """

    host: str
    port: int
    _server: Server | None = None
    _tg: anyio.abc.TaskGroup | None = None

    async def _listen(
        self,
        handler: Callable[[WsConnection], Awaitable[None]],
        max_size: int | None = 2**20,
        create_connection: type[WsConnection] | None = None,
        process_request: Callable[[WsConnection, Request], Response | None] | None = None,
    ) -> anyio.abc.TaskGroup:
        """Listen on ``host:port`` (``port`` becomes the bound port) and enter the task group."""
        self._server = await serve(
            handler,
            self.host,
            self.port,
            create_connection=create_connection,
            process_request=process_request,
            max_size=max_size,
            ping_interval=None,
            compression=None,
            logger=redacting_logger("websockets.server"),  # its DEBUG frame dumps show tokens
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self._tg

    async def aclose(self) -> None:
        """Stop the background tasks, close every connection and stop listening."""
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(None, None, None)
            self._tg = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def serve_forever(self) -> None:
        """Serve until cancelled (e.g. by Ctrl-C in a CLI)."""
        await anyio.sleep_forever()


class Simulator(LoopbackServer):
    """A local DXLink server with a deterministic synthetic market and fault injection.

    Example usage::

        async with Simulator(port=0, token="sim-token") as sim:
            async with DXLinkStreamer(url=sim.url, token=sim.token) as streamer:
                ...
            await sim.drop()  # the client must reconnect

    Args:
        host: interface to bind (loopback by default).
        port: TCP port; 0 picks a free one (see :attr:`url`).
        seed: market seed; the same seed gives the same prices for the same symbol and time.
        token: the accepted AUTH token; None = no-auth (demo) mode, AUTHORIZED right after SETUP.
        config: rates, limits and the chaos schedule.
        clock: epoch seconds; injectable for tests.
        keep_sent: keep every frame sent in :attr:`sent` (tests compare recordings with it).
        feed_factory: makes each connection's event source instead of the synthetic market,
            e.g. ``lambda: ReplayFeed("data")`` to serve a recording (``tastyrec serve``).

    Chaos: every ``(kind, every_seconds)`` in ``config.chaos`` runs in its own task and fires
    every ``every_seconds`` (the first time one period after start): ``drop`` aborts every
    connection, ``stall`` stops all output for ``config.chaos_stall_s`` (default 2 x
    ``keepalive_timeout``) then resumes, ``malformed`` sends a non-JSON frame, ``error`` sends
    ``ERROR UNKNOWN``, ``expire`` withdraws authorisation without rotating the token (a client
    that re-sends AUTH with the same token is authorised again). Three more do what production
    has done to clients (docs/dxlink.md#what-production-does): ``restart`` closes every connection
    with 1012, "Reconnection is required" (#4); ``full`` switches every COMPACT channel to FULL, and
    a FULL one back to COMPACT, *without* a FEED_CONFIG, as production did without warning (#5);
    ``502`` aborts every connection and answers the next :data:`CHAOS_502_REFUSALS` upgrade attempts
    with HTTP 502 Bad Gateway (#6).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        token: str | None = "sim-token",
        config: SimConfig | None = None,
        clock: Callable[[], float] = time.time,
        keep_sent: bool = False,
        feed_factory: Callable[[], Feed] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.seed = seed
        self.token = token
        self.config = config if config is not None else SimConfig()
        for kind, every in self.config.chaos:
            if kind not in CHAOS_KINDS or not every > 0:
                raise ValueError(f"bad chaos entry {(kind, every)!r}")
        self.market = Market(seed)
        self.clock = clock
        #: decoded client messages of every connection, in arrival order (for tests)
        self.received: list[AnyMessage | UnknownMessage] = []
        #: with ``keep_sent``: every frame sent to any client, in order (for tests)
        self.sent: list[str | bytes] | None = [] if keep_sent else None
        self.feed_factory = feed_factory
        self._conns: dict[WsConnection, _Conn] = {}
        self._stalled = False
        self._refusals = 0
        #: upgrade attempts answered with HTTP 502 so far
        self.refused_upgrades = 0

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``ws://host:port/realtime`` (the bound port once started)."""
        return f"ws://{self.host}:{self.port}/realtime"

    @property
    def connection_count(self) -> int:
        """Currently open client connections."""
        return len(self._conns)

    async def __aenter__(self) -> Self:
        tg = await self._listen(
            self._handler, self.config.max_inbound_bytes, process_request=self._process_request
        )
        for kind, every in self.config.chaos:
            tg.start_soon(self._chaos, kind, every)
        logger.info(
            "= DXLink simulator listening on %s (auth %s)", self.url, self.token is not None
        )
        return self

    # -- fault injection -----------------------------------------------------------------------

    def _check_token(self, token: str) -> bool:
        return self.token is not None and token == self.token

    async def drop(self) -> None:
        """Abort every connection: no close handshake (the client sees 1006)."""
        for ws in list(self._conns):
            ws.transport.abort()

    def stall(self, stalled: bool = True) -> None:
        """Stop (True) or resume (False) sending anything, keepalives too; sockets stay open.

        Frames already being sent when the stall begins still go out: :meth:`quiesce` waits for
        them.
        """
        self._stalled = stalled
        logger.info("= stall %s", stalled)
        if not stalled:
            for c in self._conns.values():
                c.wake.set()

    async def quiesce(self) -> None:
        """After :meth:`stall`: wait until no send is under way, so nothing more is sent and
        :attr:`sent` is complete (then a test can wait for the client to receive exactly that)."""
        for c in list(self._conns.values()):
            async with c.lock:
                pass

    async def restart(self) -> None:
        """Close every connection with 1012 "Reconnection is required", as production does
        before a service restart (docs/dxlink.md#close-1012-reconnection-is-required)."""
        for ws in list(self._conns):
            try:
                await ws.close(*RESTART_CLOSE)
            except ConnectionClosed:
                pass  # it is gone; its handler cleans up

    def refuse_upgrades(self, count: int) -> None:
        """Answer the next ``count`` websocket upgrade attempts with HTTP 502 Bad Gateway, as
        tastytrade's gateway intermittently does
        (docs/dxlink.md#strict-order-and-502-on-the-upgrade)."""
        self._refusals += count

    def _process_request(self, ws: WsConnection, request: Request) -> Response | None:
        if self._refusals <= 0:
            return None
        self._refusals -= 1
        self.refused_upgrades += 1
        logger.info("= refused an upgrade with 502 (%d more to refuse)", self._refusals)
        return ws.respond(HTTPStatus.BAD_GATEWAY, "Bad Gateway\n")

    async def switch_format(self) -> None:
        """Switch every channel's data format (COMPACT to FULL, FULL to COMPACT) without a
        FEED_CONFIG: production once did this mid-session, without warning
        (docs/dxlink.md#the-format-can-change-mid-session). Clients must decode each FEED_DATA by
        its own shape."""
        for c in list(self._conns.values()):
            async with c.lock:  # between two frames, never in the middle of a flush
                c.engine.switch_format()

    async def send_malformed(self) -> None:
        """Send a non-JSON text frame to every client."""
        await self.send_raw(MALFORMED_FRAME)

    async def send_raw(self, frame: str) -> None:
        """Send ``frame`` as it is to every client (bad-input tests: wrong counts, types...)."""
        for ws, c in list(self._conns.items()):
            try:
                async with c.lock:
                    await ws.send(frame)
            except ConnectionClosed:
                pass  # it is gone; its handler cleans up

    async def send_error(self, error: str = "UNKNOWN", message: str = "simulated error") -> None:
        """Send ``ERROR`` on channel 0 to every client."""
        for ws, c in list(self._conns.items()):
            c.engine.send_error(error, message)
            await self._flush(ws, c)

    async def expire_token(self, new_token: str | None = None) -> None:
        """Withdraw authorisation (unsolicited ``AUTH_STATE UNAUTHORIZED``) from every client.

        Args:
            new_token: if given, it becomes the only valid token (the old one stops working).
        """
        if new_token is not None:
            self.token = new_token
        for ws, c in list(self._conns.items()):
            c.engine.expire()
            await self._flush(ws, c)

    async def _chaos(self, kind: str, every: float) -> None:
        while True:
            await anyio.sleep(every)
            logger.info("= chaos %s", kind)
            if kind == "drop":
                await self.drop()
            elif kind == "stall":
                self.stall(True)
                s = self.config.chaos_stall_s
                await anyio.sleep(s if s is not None else 2 * self.config.keepalive_timeout)
                self.stall(False)
            elif kind == "malformed":
                await self.send_malformed()
            elif kind == "error":
                await self.send_error("UNKNOWN", "simulated chaos error")
            elif kind == "restart":
                await self.restart()
            elif kind == "full":
                await self.switch_format()
            elif kind == "502":
                self.refuse_upgrades(CHAOS_502_REFUSALS)
                await self.drop()
            else:
                await self.expire_token()

    # -- connections ---------------------------------------------------------------------------

    async def _handler(self, ws: WsConnection) -> None:
        check = None if self.token is None else self._check_token
        feed = None if self.feed_factory is None else self.feed_factory()
        c = _Conn(ServerConnection(self.config, self.market, check, self.clock(), feed=feed))
        self._conns[ws] = c
        logger.info("= client connected from %s", ws.remote_address)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._pump, ws, c)
                await self._read(ws, c)
                tg.cancel_scope.cancel()
        finally:
            del self._conns[ws]
            logger.info("= client %s gone (%s)", ws.remote_address, ws.close_code)

    async def _read(self, ws: WsConnection, c: _Conn) -> None:
        try:
            async for raw in ws:
                c.engine.receive_text(raw, self.clock())
                self.received.extend(c.engine.messages_received())
                await self._flush(ws, c)
                c.wake.set()
        except ConnectionClosed:
            pass

    async def _pump(self, ws: WsConnection, c: _Conn) -> None:
        try:
            while True:
                if not self._stalled:
                    c.engine.tick(self.clock())
                    await self._flush(ws, c)
                    if c.engine.close is not None:
                        await ws.close(*c.engine.close)
                        return
                delay = c.engine.next_deadline() - self.clock()
                delay = _MAX_IDLE_S if math.isnan(delay) else max(0.001, min(delay, _MAX_IDLE_S))
                c.wake = anyio.Event()
                with anyio.move_on_after(delay):
                    await c.wake.wait()
        except ConnectionClosed:
            pass

    async def _flush(self, ws: WsConnection, c: _Conn) -> None:
        if self._stalled:
            return
        async with c.lock:
            if self._stalled:  # stalled while this waited for the lock
                return
            frames = c.engine.data_to_send()
            for frame in frames:
                await ws.send(frame)
                if self.sent is not None:
                    self.sent.append(frame)


class _Conn:
    def __init__(self, engine: ServerConnection) -> None:
        self.engine = engine
        self.lock = anyio.Lock()
        self.wake = anyio.Event()
