"""A fake tastytrade REST API on 127.0.0.1 for tests and demos: OAuth, quote tokens, chains.

Role: answer the few endpoints tastyrec uses with the JSON shapes tastytrade documents
(docs/account-streamer.md#authentication, docs/dxlink.md#getting-the-url-and-token; the tastytrade
SDK's models for the chain and accounts), point quote tokens at a :class:`~tastyrec.sim.Simulator`,
and fail on demand so the client's error handling can be tested. Nothing here reaches the internet.

Endpoints:

* ``POST /oauth/token``: refresh-token grant; ``{"access_token", "token_type", "expires_in"}``
  (no ``data`` envelope). A wrong or revoked refresh token or client secret answers 401.
* ``GET /api-quote-tokens``: ``token`` (the simulator's current token, so after
  ``sim.expire_token(new)`` the new one is served), ``dxlink-url``, ``level``, ``issued-at``,
  ``expires-at``.
* ``GET /customers/me/accounts``: the account simulator's accounts (default ``5WT00000``) and a
  closed one.
* ``GET /option-chains/{symbol}/nested``: a generated chain (:func:`nested_chain`) centred on the
  simulator market's price of the underlying: SPY, QQQ, IWM, AAPL... (daily expirations), SPX
  (two roots, SPX monthlies AM-settled and SPXW dailies), any other symbol 404.
* ``GET /accounts/{n}/orders/live``, ``/accounts/{n}/positions``, ``/accounts/{n}/balances`` (and
  ``/balances/USD``, the SDK 13.x path): with an account simulator (``account=``), the last
  state its book published of each order of the day, each open position and the balances: what
  the account stream said, including notifications the simulator dropped on purpose
  (:meth:`~.account.AccountSimulator.drop_notifications`), so a client can reconcile against
  it. Payloads are the stream's (``encode_payload``): the SDK's ``Account.get_live_orders``,
  ``get_positions`` and ``get_balances`` validate them. An unknown account answers 404.

Every call except the token grant needs ``Authorization: Bearer <access token>`` with a token this
server issued and that has not expired (401 otherwise), and every call needs a ``User-Agent``
(401 without, as tastytrade does). Calls are counted in :attr:`ApiSimulator.calls`.

Why the standard library's ``ThreadingHTTPServer`` in a thread (and not h11 over anyio): it needs
no dependency, and it runs outside the event loop of the code under test, so a test that blocks
or starves its loop cannot stall the server (and the server cannot hide a client that forgets to
await); it also serves synchronous callers (a CLI demo). Its state is guarded by one lock.

Secrets sent to it are never logged (request lines only, at DEBUG).

Size: a little over 600 lines because it is one fake API: the routes, the faults it injects and the
request log share one server object and handler; the account model behind it is :mod:`.brokerage`'s.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self
from urllib.parse import unquote, urlsplit

import anyio

from .._closing import AsyncClosing
from ..events.account import AccountEvent, PlacedOrder, encode_payload
from .market import Market

if TYPE_CHECKING:
    from .account import AccountSimulator
    from .server import Simulator

__all__ = ("ApiSimulator", "Fault", "RecordedRequest", "nested_chain", "streamer_symbol")

logger = logging.getLogger(__name__)

#: route names, as used by :meth:`ApiSimulator.fail` and :attr:`ApiSimulator.calls`
TOKEN_ROUTE: Final = "POST /oauth/token"
QUOTE_TOKEN_ROUTE: Final = "GET /api-quote-tokens"
ACCOUNTS_ROUTE: Final = "GET /customers/me/accounts"
CHAIN_ROUTE: Final = "GET /option-chains/nested"  # any symbol
#: an account's orders of the day, open positions and balances (any account number; balances
#: with or without the ``/USD`` currency the SDK appends)
LIVE_ORDERS_ROUTE: Final = "GET /accounts/orders/live"
POSITIONS_ROUTE: Final = "GET /accounts/positions"
BALANCES_ROUTE: Final = "GET /accounts/balances"

#: (strike increment, strike range either side as a fraction of spot) per underlying
_STRIKES: Final[dict[str, tuple[float, float]]] = {
    "SPY": (1.0, 0.15),
    "QQQ": (1.0, 0.15),
    "IWM": (1.0, 0.15),
    "XSP": (1.0, 0.15),
    "AAPL": (2.5, 0.25),
    "MSFT": (5.0, 0.25),
    "NVDA": (1.0, 0.30),
    "TSLA": (2.5, 0.35),
    "AMZN": (2.5, 0.25),
    "SPX": (5.0, 0.15),
    "NDX": (25.0, 0.15),
}
_INDEX_ROOTS: Final = {"SPX": "SPXW", "NDX": "NDXP", "XSP": "XSP"}


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server answered (for test assertions; ``body`` may hold secrets)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Fault:
    """A scripted failure: answer ``status`` to the next ``times`` calls of ``route``."""

    route: str
    status: int
    times: int = 1
    retry_after: str | None = None
    code: str = "simulated"
    message: str = "simulated failure"


def streamer_symbol(root: str, expiration: date, call: bool, strike: float) -> str:
    """The dxFeed symbol of an option, as tastytrade writes it: ``.SPY250117C600``,
    ``.SPY250117P602.5``."""
    text = f"{strike:.0f}" if strike % 1 == 0 else f"{strike:.2f}".rstrip("0")
    return f".{root}{expiration:%y%m%d}{'C' if call else 'P'}{text}"


def occ_symbol(root: str, expiration: date, call: bool, strike: float) -> str:
    """The OCC symbol: root padded to 6, ``YYMMDD``, C/P, strike x 1000 in 8 digits."""
    return f"{root:<6}{expiration:%y%m%d}{'C' if call else 'P'}{round(strike * 1000):08d}"


def _third_friday(year: int, month: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(4 - first.weekday()) % 7 + 14)


def nested_chain(
    symbol: str, spot: float, today: date, max_dte: int = 60, monthly_dte: int = 400
) -> list[dict[str, Any]]:
    """The items of ``/option-chains/{symbol}/nested`` for a generated chain.

    Every weekday up to ``max_dte`` days out is an expiration (``Weekly``; third Fridays are
    ``Regular``), then third Fridays up to ``monthly_dte``. Strikes run on the underlying's grid
    from ``spot`` x (1 - range) to ``spot`` x (1 + range). Indices (SPX, NDX) have two roots,
    like tastytrade's: the monthly AM-settled root and the PM-settled weekly one (SPXW).

    Args:
        symbol: the underlying.
        spot: its price, the chain's centre.
        today: day 0 of ``days-to-expiration``.
        max_dte: last daily expiration, in days.
        monthly_dte: last monthly expiration, in days.
    """
    increment, width = _STRIKES.get(symbol, (1.0 if spot < 200 else 5.0, 0.2))
    lo = math.ceil(spot * (1 - width) / increment)
    hi = math.floor(spot * (1 + width) / increment)
    strikes = [round(i * increment, 2) for i in range(max(lo, 1), hi + 1)]
    days = [today + timedelta(days=d) for d in range(max_dte + 1)]
    dailies = [d for d in days if d.weekday() < 5]
    monthlies = []
    month = date(today.year, today.month, 1)
    while (month - today).days <= monthly_dte:
        friday = _third_friday(month.year, month.month)
        if 0 <= (friday - today).days <= monthly_dte:
            monthlies.append(friday)
        month = date(month.year + month.month // 12, month.month % 12 + 1, 1)

    def expiration(root: str, day: date, kind: str, settlement: str) -> dict[str, Any]:
        return {
            "expiration-type": kind,
            "expiration-date": day.isoformat(),
            "days-to-expiration": (day - today).days,
            "settlement-type": settlement,
            "strikes": [
                {
                    "strike-price": f"{k:.1f}" if k % 1 == 0 else f"{k}",
                    "call": occ_symbol(root, day, True, k),
                    "call-streamer-symbol": streamer_symbol(root, day, True, k),
                    "put": occ_symbol(root, day, False, k),
                    "put-streamer-symbol": streamer_symbol(root, day, False, k),
                }
                for k in strikes
            ],
        }

    def item(root: str, chain_type: str, expirations: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "underlying-symbol": symbol,
            "root-symbol": root,
            "option-chain-type": chain_type,
            "shares-per-contract": 100,
            "tick-sizes": [{"value": "0.05", "threshold": "3.0"}, {"value": "0.1"}]
            if symbol in _INDEX_ROOTS
            else [{"value": "0.01"}],
            "deliverables": [
                {
                    "id": 1,
                    "root-symbol": root,
                    "deliverable-type": "Shares" if symbol not in _INDEX_ROOTS else "Cash",
                    "description": f"100 shares of {symbol}",
                    "amount": "100.0",
                    "symbol": symbol,
                    "instrument-type": "Equity" if symbol not in _INDEX_ROOTS else "Index",
                    "percent": "100",
                }
            ],
            "expirations": expirations,
        }

    monthly_set = set(monthlies)
    if symbol in _INDEX_ROOTS and _INDEX_ROOTS[symbol] != symbol:
        weekly_root = _INDEX_ROOTS[symbol]
        monthly_exps = [expiration(symbol, d, "Regular", "AM") for d in monthlies]
        weekly_days = sorted(set(dailies) | {d for d in monthlies if (d - today).days <= max_dte})
        weekly_exps = [
            expiration(weekly_root, d, "Regular" if d in monthly_set else "Weekly", "PM")
            for d in weekly_days
        ]
        return [item(symbol, "Standard", monthly_exps), item(weekly_root, "Standard", weekly_exps)]
    every = sorted(set(dailies) | monthly_set)
    exps = [expiration(symbol, d, "Regular" if d in monthly_set else "Weekly", "PM") for d in every]
    return [item(symbol, "Standard", exps)]


class ApiSimulator(AsyncClosing):
    """A local fake of tastytrade's REST API, with switchable failures and call counts.

    Example usage::

        async with Simulator(token="sim-token") as sim, ApiSimulator(dxlink=sim) as api:
            session = Session(api.client_secret, api.refresh_token, api_url=api.url)
            async with DXLinkStreamer(session) as streamer:
                ...
            assert api.calls["POST /oauth/token"] == 1

    Args:
        dxlink: the DXLink simulator quote tokens point at (its URL and current token); its
            market also prices the chains' underlyings.
        client_secret, refresh_token: the credentials accepted.
        quote_token: a fixed quote token to serve instead of the simulator's.
        dxlink_url: the DXLink URL to serve when there is no simulator.
        access_token_ttl_s: ``expires_in`` of access tokens (tastytrade: 900).
        quote_token_ttl_s: life of quote tokens (tastytrade: 24 h).
        clock: epoch seconds, for token expiry and days-to-expiration; injectable for tests.
        host, port: where to listen (port 0 picks a free one; see :attr:`url`).
        seed: market seed when there is no simulator.
        account: the account simulator: its accounts are the user's (``/customers/me/accounts``)
            and the access tokens this API issues are accepted on its stream, as at tastytrade
            (docs/account-streamer.md#the-auth-token-is-the-rest-access-token).
    """

    def __init__(
        self,
        dxlink: Simulator | None = None,
        *,
        account: AccountSimulator | None = None,
        client_secret: str = "sim-client-secret",
        refresh_token: str = "sim-refresh-token",
        quote_token: str | None = None,
        dxlink_url: str | None = None,
        access_token_ttl_s: int = 900,
        quote_token_ttl_s: float = 86_400.0,
        clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
    ) -> None:
        self.dxlink = dxlink
        self.account = account
        if account is not None:
            account.token_issuer = self
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.quote_token = quote_token
        self.dxlink_url = dxlink_url
        self.access_token_ttl_s = access_token_ttl_s
        self.quote_token_ttl_s = quote_token_ttl_s
        self.clock = clock
        self.host = host
        self.port = port
        self.market = dxlink.market if dxlink is not None else Market(seed)
        #: every call by route (``"POST /oauth/token"``...), failed ones included
        self.calls: Counter[str] = Counter()
        #: every request answered, in order
        self.requests: list[RecordedRequest] = []
        #: access tokens issued, oldest first
        self.access_tokens: list[str] = []
        self.faults: list[Fault] = []
        self._access_expiry: dict[str, float] = {}
        self._revoked = False
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"ApiSimulator(url={self.url!r})"

    @property
    def url(self) -> str:
        """``http://host:port`` (the bound port once started): pass it as ``api_url``."""
        return f"http://{self.host}:{self.port}"

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Listen and serve in a daemon thread."""
        handler = type("_BoundHandler", (_Handler,), {"api": self})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="tastyrec-api-sim",
            daemon=True,
        )
        self._thread.start()
        logger.info("= fake tastytrade API listening on %s", self.url)

    def close(self) -> None:
        """Stop serving and close the listening socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def aclose(self) -> None:
        """:meth:`close` from async code (in a worker thread: the server thread is joined)."""
        await anyio.to_thread.run_sync(self.close)

    # -- switches ------------------------------------------------------------------------------

    def fail(
        self,
        route: str,
        status: int,
        times: int = 1,
        *,
        retry_after: str | None = None,
        code: str = "simulated",
        message: str = "simulated failure",
    ) -> None:
        """Answer ``status`` to the next ``times`` calls of ``route`` (``"*"``: any route).

        Args:
            route: e.g. ``"POST /oauth/token"``, ``"GET /api-quote-tokens"``,
                ``"GET /option-chains/nested"``, ``"*"``.
            status: the HTTP status to answer, with tastytrade's error body.
            times: how many calls fail before the route works again.
            retry_after: the ``Retry-After`` header to send (e.g. ``"0"``, ``"120"``).
            code, message: the error body's ``code`` and ``message``.
        """
        with self._lock:
            self.faults.append(Fault(route, status, times, retry_after, code, message))

    def revoke_refresh_token(self) -> None:
        """Make the refresh token invalid (401 from then on), as revoking it in the web UI."""
        with self._lock:
            self._revoked = True

    def access_token_valid(self, token: str) -> bool:
        """Whether ``token`` is an access token this server issued that has not expired (the
        account simulator accepts these: :class:`~.account.TokenIssuer`)."""
        with self._lock:
            expiry = self._access_expiry.get(token)
            return expiry is not None and self.clock() < expiry

    def expire_access_tokens(self) -> None:
        """Invalidate every access token issued so far (their next use answers 401)."""
        with self._lock:
            self._access_expiry.clear()

    # -- request handling (server threads) -------------------------------------------------------

    def _handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        path = unquote(urlsplit(raw_path).path).rstrip("/") or "/"
        route = f"{method} {path}"
        if path.startswith("/option-chains/") and path.endswith("/nested"):
            route = CHAIN_ROUTE
        number, account_route = _account_route(path)
        if method == "GET" and account_route is not None:
            route = account_route
        with self._lock:
            self.calls[route] += 1
            for fault in self.faults:
                if fault.times > 0 and fault.route in (route, "*"):
                    fault.times -= 1
                    extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                    return fault.status, extra, _error(fault.code, fault.message)
            if not headers.get("user-agent"):
                return 401, {}, _error("unauthorized", "User-Agent header is required")
            if route == TOKEN_ROUTE:
                return self._token(body)
            auth = headers.get("authorization", "")
            token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else ""
            expiry = self._access_expiry.get(token)
            if expiry is None or self.clock() >= expiry:
                return 401, {}, _error("token_invalid", "This token is invalid or expired")
        if route == QUOTE_TOKEN_ROUTE:
            return 200, {}, self._envelope(self._quote_token(), path)
        if route == ACCOUNTS_ROUTE:
            return 200, {}, self._envelope(self._accounts(), path)
        if route == CHAIN_ROUTE:
            symbol = path.split("/")[2]
            items = self.chain(symbol)
            if items is None:
                return 404, {}, _error("record_not_found", f"no option chain for {symbol}")
            return 200, {}, self._envelope({"items": items}, path)
        if account_route is not None and self.account is not None:
            return self._account_data(account_route, number, path)
        return 404, {}, _error("not_found", f"{route} is not simulated")

    def _account_data(self, route: str, number: str, path: str) -> tuple[int, dict[str, str], Any]:
        """Orders, positions or balances of a simulated account: the last state the book
        published of each (so what the stream said, dropped notifications included)."""
        assert self.account is not None
        book = self.account.book
        if number not in book.accounts:
            return 404, {}, _error("record_not_found", f"no account {number!r}")
        if route == BALANCES_ROUTE:
            return 200, {}, self._envelope(encode_payload(book.rest_balances[number]), path)
        payloads: list[AccountEvent]
        if route == LIVE_ORDERS_ROUTE:
            orders = list(book.rest_orders.values())  # a copy under the GIL: see AccountBook
            mine = sorted((o for o in orders if o.account_number == number), key=_order_id)
            payloads = list(mine)
        else:
            positions = list(book.rest_positions.values())
            payloads = [p for p in positions if p.account_number == number]
        return 200, {}, self._envelope({"items": [encode_payload(p) for p in payloads]}, path)

    def _token(self, body: bytes) -> tuple[int, dict[str, str], Any]:
        try:
            grant = json.loads(body or b"{}")
        except json.JSONDecodeError:
            return 400, {}, _error("invalid_request", "body is not JSON")
        if not isinstance(grant, dict) or grant.get("grant_type") != "refresh_token":
            return 400, {}, _error("unsupported_grant_type", "only refresh_token is simulated")
        if (
            self._revoked
            or grant.get("refresh_token") != self.refresh_token
            or grant.get("client_secret") != self.client_secret
        ):
            return 401, {}, _error("invalid_grant", "Grant is invalid, revoked or expired")
        token = f"sim-access-{len(self.access_tokens)}-{secrets.token_hex(8)}"
        self.access_tokens.append(token)
        self._access_expiry[token] = self.clock() + self.access_token_ttl_s
        return (
            200,
            {},
            {"access_token": token, "token_type": "Bearer", "expires_in": self.access_token_ttl_s},
        )

    def _quote_token(self) -> dict[str, Any]:
        now = self.clock()
        if self.quote_token is not None:
            token = self.quote_token
        elif self.dxlink is not None and self.dxlink.token is not None:
            token = self.dxlink.token
        else:
            token = "sim-quote-token"
        url = self.dxlink.url if self.dxlink is not None else self.dxlink_url
        return {
            "token": token,
            "dxlink-url": url or "ws://127.0.0.1:9/realtime",
            "level": "api",
            "issued-at": _iso(now),
            "expires-at": _iso(now + self.quote_token_ttl_s),
            "websocket-url": "https://127.0.0.1:9/cometd",
        }

    def _accounts(self) -> dict[str, Any]:
        def account(number: str, nickname: str, closed: bool) -> dict[str, Any]:
            return {
                "account": {
                    "account-number": number,
                    "nickname": nickname,
                    "account-type-name": "Individual",
                    "margin-or-cash": "Margin",
                    "is-closed": closed,
                    "is-foreign": False,
                    "is-firm-error": False,
                    "is-firm-proprietary": False,
                    "is-futures-approved": True,
                    "is-test-drive": False,
                    "day-trader-status": False,
                    "external-id": f"A{number}",
                    "opened-at": "2024-01-02T15:00:00.000+00:00",
                    "created-at": "2024-01-02T15:00:00.000+00:00",
                    "funding-date": "2024-01-03",
                    "investment-objective": "SPECULATION",
                    "suitable-options-level": "No Restrictions",
                },
                "authority-level": "owner",
            }

        numbers = self.account.book.accounts if self.account is not None else ["5WT00000"]
        items = [account(n, "Individual", False) for n in numbers]
        if "5WT00001" not in numbers:
            items.append(account("5WT00001", "Old IRA", True))
        return {"items": items}

    def chain(self, symbol: str) -> list[dict[str, Any]] | None:
        """The nested chain items served for ``symbol`` (None: 404), centred on its price now."""
        if symbol not in _STRIKES:
            return None
        now = self.clock()
        spot = self.market.path(symbol, int(now * 1000))
        return nested_chain(symbol, spot, datetime.fromtimestamp(now, UTC).date())

    def _envelope(self, data: dict[str, Any], path: str) -> dict[str, Any]:
        return {"data": data, "context": path}

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)


def _order_id(order: PlacedOrder) -> int:
    return order.id


def _account_route(path: str) -> tuple[str, str | None]:
    """``(account number, route)`` of an account data path, or ``("", None)``."""
    parts = path.split("/")
    if len(parts) < 4 or parts[1] != "accounts":
        return "", None
    number, rest = parts[2], parts[3:]
    if rest == ["orders", "live"]:
        return number, LIVE_ORDERS_ROUTE
    if rest == ["positions"]:
        return number, POSITIONS_ROUTE
    if rest == ["balances"] or (len(rest) == 2 and rest[0] == "balances"):
        return number, BALANCES_ROUTE
    return "", None


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _iso(epoch_s: float) -> str:
    return (
        datetime.fromtimestamp(epoch_s, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class _Handler(BaseHTTPRequestHandler):
    """One connection's requests, handed to :meth:`ApiSimulator._handle`."""

    api: ApiSimulator
    protocol_version = "HTTP/1.1"  # keep-alive, as the real API (httpx2 pools connections)
    timeout = 5  # an idle keep-alive connection is closed after this many seconds
    server_version = "tastyrec-api-sim"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, extra, payload = self.api._handle(self.command, self.path, headers, body)
        except Exception:  # a bug in the fake: answer 500 and keep it visible in the log
            logger.exception("= fake API failed on %s %s", self.command, self.path)
            status, extra, payload = 500, {}, _error("internal", "simulator error")
        self.api._record(RecordedRequest(self.command, self.path, headers, body, status))
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = _serve
    do_POST = _serve
    do_PUT = _serve
    do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        # request lines only: no headers, no bodies (they carry secrets)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("= %s %s", self.address_string(), format % args)
