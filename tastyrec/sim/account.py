"""The account-streamer simulator: :class:`~.brokerage.AccountBook` over real websockets.

Role: accept websocket connections (``websockets.asyncio.server``, 127.0.0.1 by default, any path,
no handshake auth), give each one an :class:`~.account_server.AccountServerConnection`, and run one
pump that ticks the book at its deadlines (orders walking their lifecycle, the book's own orders
every ``order_every_s``) and delivers what it publishes to the sockets subscribed to it. Tests
drive the account directly (:meth:`AccountSimulator.place_order`, :meth:`~AccountSimulator.cancel`,
:meth:`~AccountSimulator.reject`, :meth:`~AccountSimulator.drop`...). This and :mod:`.server` are
the only simulator modules that import websockets or anyio.

:func:`run_simulators` runs this and the DXLink :class:`~.server.Simulator` together on one
:class:`~.market.Market`, so fills are priced from the quotes the DXLink side streams.

A failure inside the simulator (a bug in the book, a payload that cannot be encoded) ends its
stream, not the process it runs in (``record --demo`` runs it beside the recorder): every
connection is closed with 1011, it stops listening and logs one error line.

Tokens are never logged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any, Final, Protocol, Self

import anyio
from websockets.asyncio.server import ServerConnection as WsConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import Event

from ..account.messages import Request
from ..account.protocol import authorization_value
from .account_server import AccountServerConnection
from .brokerage import DEFAULT_ACCOUNT, AccountBook, AccountSimConfig, Outgoing
from .engine import SimConfig
from .market import Market
from .server import LoopbackServer, Simulator

__all__ = ("AccountSimulator", "TokenIssuer", "open_simulators", "run_simulators")

logger = logging.getLogger(__name__)

_MAX_IDLE_S: Final = 0.25
_KEEP_RECEIVED: Final = 10_000


class TokenIssuer(Protocol):
    """Who else's access tokens the account streamer accepts (e.g. the fake REST API's)."""

    def access_token_valid(self, token: str) -> bool:
        """Whether ``token`` is an access token it issued that has not expired."""
        ...


class _PingAwareConnection(WsConnection):
    """A server connection that reports every frame received, pings included: websockets
    answers pings by itself and never shows them to the handler, but they are activity."""

    on_control_frame: Callable[[], None] | None = None

    def process_event(self, event: Event) -> None:
        if (
            self.on_control_frame is not None
            and isinstance(event, Frame)
            and event.opcode in (Opcode.PING, Opcode.PONG)
        ):
            self.on_control_frame()
        super().process_event(event)


class AccountSimulator(LoopbackServer):
    """A local tastytrade account streamer with a simulated account that trades.

    Example usage::

        async with AccountSimulator(token="sim-token", order_every_s=None) as sim:
            async with AlertStreamer(url=sim.url, token=sim.token) as streamer:
                await streamer.subscribe_accounts([sim.account_number])
                order_id = await sim.place_order([("SPY", "Buy to Open", 100)])
                async for order in streamer.listen(PlacedOrder):
                    if order.id == order_id and order.status == "Filled":
                        break

    Args:
        host: interface to bind (loopback by default).
        port: TCP port; 0 picks a free one (see :attr:`url`).
        token: the accepted access token: ``auth-token`` must be ``Bearer <token>``, or carry an
            access token ``token_issuer`` issued; None accepts any non-empty auth-token (demo
            mode).
        market: the market fills are priced from (default: ``Market(seed)``).
        seed: market seed (when no market is given) and the seed of the book's own orders.
        order_every_s: the account places an order by itself this often (None: never); overrides
            ``config.order_every_s``.
        accounts: the simulated account numbers (the first is the default everywhere).
        config: timings and modes (:class:`~.brokerage.AccountSimConfig`).
        clock: epoch seconds; injectable for tests.
        token_issuer: also accept the unexpired access tokens it issued (the fake REST API,
            :class:`~.rest.ApiSimulator`, that clients log in at:
            docs/account-streamer.md#the-auth-token-is-the-rest-access-token); settable later as
            :attr:`token_issuer`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = "sim-token",
        market: Market | None = None,
        seed: int = 0,
        order_every_s: float | None = 15.0,
        accounts: Sequence[str] = (DEFAULT_ACCOUNT,),
        config: AccountSimConfig | None = None,
        clock: Callable[[], float] = time.time,
        token_issuer: TokenIssuer | None = None,
    ) -> None:
        base = config if config is not None else AccountSimConfig()
        self.config = dataclasses.replace(base, order_every_s=order_every_s)
        every = self.config.drop_order_every
        if every is not None and every < 1:
            raise ValueError(f"drop_order_every must be at least 1, not {every!r}")
        self.host = host
        self.port = port
        self.token = token
        self.market = market if market is not None else Market(seed)
        self.clock = clock
        self.token_issuer = token_issuer
        self.book = AccountBook(self.market, clock(), accounts, seed, self.config)
        #: the last decoded client requests of every connection, in arrival order (for tests)
        self.received: list[Request] = []
        #: notifications dropped by :meth:`drop_notifications`, in order
        self.dropped: list[Outgoing] = []
        self._drops: list[list[Any]] = []
        self._orders_seen = 0
        self._conns: dict[WsConnection, _Conn] = {}
        self._failed: BaseException | None = None
        self._wake = anyio.Event()

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``ws://host:port`` (the bound port once started); any path is accepted."""
        return f"ws://{self.host}:{self.port}"

    @property
    def account_number(self) -> str:
        """The first (default) simulated account."""
        return self.book.accounts[0]

    @property
    def connection_count(self) -> int:
        """Currently open client connections."""
        return len(self._conns)

    async def __aenter__(self) -> Self:
        tg = await self._listen(self._handler, create_connection=_PingAwareConnection)
        tg.start_soon(self._pump)
        logger.info(
            "= account simulator listening on %s (account %s, auth %s)",
            self.url,
            self.account_number,
            self.token is not None,
        )
        return self

    # -- driving the account ---------------------------------------------------------------------

    async def place_order(
        self, legs: Iterable[tuple[str, str, int | Decimal]], **kwargs: Any
    ) -> int:
        """Place an order (see :meth:`.AccountBook.place_order`); returns its id."""
        oid = self.book.place_order(self.clock(), legs, **kwargs)
        await self._publish()
        return oid

    async def place_complex_order(
        self, type: str, orders: Sequence[dict[str, Any]], **kwargs: Any
    ) -> int:
        """Place an OCO/OTO/OTOCO order (see :meth:`.AccountBook.place_complex_order`)."""
        cid = self.book.place_complex_order(self.clock(), type, orders, **kwargs)
        await self._publish()
        return cid

    async def cancel(self, order_id: int) -> None:
        """Cancel a working order (``Cancel Requested``, then ``Cancelled``)."""
        self.book.cancel(self.clock(), order_id)
        await self._publish()

    async def reject(self, order_id: int, reason: str = "Rejected by the simulator") -> None:
        """Reject a working order that has no fills."""
        self.book.reject(self.clock(), order_id, reason)
        await self._publish()

    async def deposit(self, amount: Decimal | float | str, account: str | None = None) -> None:
        """Move money in or out (``ExternalTransaction`` and ``AccountBalance``)."""
        self.book.deposit(self.clock(), amount, account)
        await self._publish()

    async def trigger_quote_alert(self, symbol: str, threshold: Decimal | float | str) -> None:
        """Publish a triggered ``QuoteAlert``."""
        self.book.trigger_quote_alert(self.clock(), symbol, threshold)
        await self._publish()

    async def publish_watchlist(self, name: str, symbols: Iterable[str]) -> None:
        """Publish a changed public watchlist (``PublicWatchlists``)."""
        self.book.publish_watchlist(self.clock(), name, symbols)
        await self._publish()

    async def update_trading_status(self, account: str | None = None, **changes: Any) -> None:
        """Change and publish an account's ``TradingStatus``."""
        self.book.update_trading_status(self.clock(), account, **changes)
        await self._publish()

    async def send_notification(
        self, type_name: str, data: Any, account: str | None = None
    ) -> None:
        """Publish any notification as it is (an unknown type, a bad payload) to an account."""
        self.book.emit_raw(self.clock(), type_name, data, account)
        await self._publish()

    async def send_raw(self, frame: str) -> None:
        """Send ``frame`` as it is to every client (malformed-input tests)."""
        for ws, c in list(self._conns.items()):
            with contextlib.suppress(ConnectionClosed):
                async with c.lock:
                    await ws.send(frame)

    async def drop(self) -> None:
        """Abort every connection without a close handshake (the client sees 1006)."""
        for ws in list(self._conns):
            ws.transport.abort()

    def drop_notifications(
        self,
        type_name: str = "Order",
        *,
        times: int = 1,
        when: Callable[[Any], bool] | None = None,
    ) -> None:
        """Chaos: silently drop the next ``times`` notifications of ``type_name`` (``"Order"``,
        ``"CurrentPosition"``...) for which ``when(payload)`` is true (default: all), as production
        has been seen to (docs/account-streamer.md#lost-order-events). The book goes on as if they
        had been sent: the REST API (:class:`~.rest.ApiSimulator`) still shows their state.
        Heartbeats and replies flow as usual; :attr:`dropped` lists what was dropped."""
        self._drops.append([type_name, times, when])

    def _dropped(self, out: Outgoing) -> bool:
        every = self.config.drop_order_every
        if every is not None and out.type_name == "Order":
            self._orders_seen += 1
            if self._orders_seen % every == 0:
                self.dropped.append(out)
                return True
        for rule in self._drops:
            name, left, when = rule
            if left > 0 and out.type_name == name and (when is None or when(out.payload)):
                rule[1] = left - 1
                self.dropped.append(out)
                return True
        return False

    def expire_token(self, new_token: str) -> None:
        """Accept only ``new_token`` from now on (the old one gets ``"failed"``)."""
        self.token = new_token

    # -- connections ---------------------------------------------------------------------------

    def _check_token(self, auth_token: str) -> bool:
        if self.token is None:
            return bool(auth_token)
        if auth_token == authorization_value(self.token):
            return True
        issuer = self.token_issuer
        access = auth_token.removeprefix("Bearer ")
        return (
            issuer is not None
            and access != auth_token  # the REST Authorization form only
            and bool(access)
            and issuer.access_token_valid(access)
        )

    async def _handler(self, ws: WsConnection) -> None:
        engine = AccountServerConnection(
            self._check_token,
            secrets.token_hex(4),
            self.config,
            self.clock(),
            accounts=self.book.accounts,
        )
        c = _Conn(engine)
        self._conns[ws] = c
        if isinstance(ws, _PingAwareConnection):
            ws.on_control_frame = lambda: engine.receive_ping(self.clock())
        logger.info("= client connected from %s", ws.remote_address)
        try:
            async for raw in ws:
                engine.receive_text(raw, self.clock())
                self.received.extend(engine.received)
                engine.received.clear()
                if len(self.received) > 2 * _KEEP_RECEIVED:  # a server that runs for days
                    del self.received[:-_KEEP_RECEIVED]
                await self._flush(ws, c)
        except ConnectionClosed:
            pass
        except Exception as exc:  # contained: see _fail
            self._fail(exc)
            await ws.close(1011, "simulator failure")  # before the handler's return closes 1000
        finally:
            del self._conns[ws]
            logger.info("= client %s gone (%s)", ws.remote_address, ws.close_code)

    async def _publish(self) -> None:
        """Deliver what the book published to the subscribed sockets, now."""
        for out in self.book.take():
            if self._dropped(out):
                continue
            for c in self._conns.values():
                c.engine.deliver(out)
        for ws, c in list(self._conns.items()):
            await self._flush(ws, c)
        self._wake.set()  # the book may have a new, earlier deadline

    @property
    def failed(self) -> BaseException | None:
        """The error that stopped the simulator (None while it serves)."""
        return self._failed

    def _fail(self, exc: Exception) -> None:
        """A failure inside the simulator ends its stream, not the process it runs in.

        Every connection is closed with 1011 and the server stops listening (clients see a
        disconnect and cannot reconnect: a recorder notes a gap and records the rest); the book
        is left as it was, for a post-mortem.
        """
        if self._failed is not None:
            return
        self._failed = exc
        logger.error(
            "= account simulator failed and stopped serving (%s: %s)", type(exc).__name__, exc
        )
        logger.debug("= account simulator failure", exc_info=exc)
        if self._server is not None:
            self._server.close(code=1011, reason="simulator failure")

    async def _pump(self) -> None:
        try:
            await self._pump_forever()
        except Exception as exc:  # contained: see _fail
            self._fail(exc)

    async def _pump_forever(self) -> None:
        while True:
            now = self.clock()
            self.book.tick(now)
            await self._publish()
            for ws, c in list(self._conns.items()):
                c.engine.tick(now)
                if c.engine.close is not None:
                    with contextlib.suppress(ConnectionClosed):
                        await ws.close(*c.engine.close)
            deadlines = [self.book.next_deadline()]
            deadlines += [c.engine.next_deadline() for c in self._conns.values()]
            delay = min(deadlines) - self.clock()
            delay = _MAX_IDLE_S if math.isnan(delay) else max(0.001, min(delay, _MAX_IDLE_S))
            self._wake = anyio.Event()
            with anyio.move_on_after(delay):
                await self._wake.wait()

    async def _flush(self, ws: WsConnection, c: _Conn) -> None:
        try:
            async with c.lock:
                for frame in c.engine.data_to_send():
                    await ws.send(frame.decode())
        except ConnectionClosed:
            pass  # it is gone; its handler cleans up


class _Conn:
    def __init__(self, engine: AccountServerConnection) -> None:
        self.engine = engine
        self.lock = anyio.Lock()


@contextlib.asynccontextmanager
async def open_simulators(
    *,
    host: str = "127.0.0.1",
    dxlink_port: int = 0,
    account_port: int = 0,
    seed: int = 0,
    dxlink_token: str | None = "sim-token",
    account_token: str | None = "sim-token",
    sim_config: SimConfig | None = None,
    account_config: AccountSimConfig | None = None,
    order_every_s: float | None = 15.0,
    accounts: Sequence[str] = (DEFAULT_ACCOUNT,),
) -> AsyncIterator[tuple[Simulator, AccountSimulator]]:
    """Run the DXLink simulator and the account simulator together, on one market.

    Keyword arguments are those of :class:`~.server.Simulator` and :class:`AccountSimulator`
    (``dxlink_``/``account_`` prefixed where both have one).

    Yields:
        ``(dxlink_simulator, account_simulator)``, both listening.
    """
    async with Simulator(
        host=host, port=dxlink_port, seed=seed, token=dxlink_token, config=sim_config
    ) as dx:
        async with AccountSimulator(
            host=host,
            port=account_port,
            token=account_token,
            market=dx.market,
            seed=seed,
            order_every_s=order_every_s,
            accounts=accounts,
            config=account_config,
        ) as acct:
            yield dx, acct


async def run_simulators(
    announce: Callable[[str], object | Awaitable[object]],
    **kwargs: Any,
) -> None:
    """Serve both simulators until cancelled, announcing their URLs first.

    ``announce`` gets one line each, in this order: ``dxlink ws://HOST:PORT/realtime``, then
    ``account ws://HOST:PORT``, then ``account-number 5WT00000`` (e.g. ``click.echo`` plus a
    stdout flush). Keyword arguments are those of :func:`open_simulators`.
    """
    async with open_simulators(**kwargs) as (dx, acct):
        for line in (
            f"dxlink {dx.url}",
            f"account {acct.url}",
            f"account-number {acct.account_number}",
        ):
            result = announce(line)
            if isinstance(result, Awaitable):
                await result
        await anyio.sleep_forever()
