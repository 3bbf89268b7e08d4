"""Session: tastytrade's REST API with OAuth, as the tastytrade SDK's ``Session`` is used.

Role: mint and refresh OAuth access tokens, fetch (and cache) DXLink quote tokens, and make the
few REST calls tastyrec needs (accounts, option chains through :mod:`tastyrec.chain`). Only this
module imports the HTTP client, httpx2 (the maintained httpx fork the tastytrade SDK uses); it
maps httpx2's exceptions to :mod:`tastyrec.exceptions` at this boundary. It must not import the
DXLink modules.

Facts it relies on (docs/account-streamer.md#authentication,
docs/dxlink.md#getting-the-url-and-token):

* ``POST {base}/oauth/token`` with a JSON body ``{"grant_type": "refresh_token", ...}`` answers
  ``access_token``/``expires_in`` at the top level (no ``data`` envelope). Access tokens live 15
  minutes: they are refreshed :data:`ACCESS_TOKEN_MARGIN_S` before they expire, and once more if
  an API call answers 401 anyway.
* Every other answer is ``{"data": ..., "context": ...}``; errors are non-2xx with
  ``{"error": {"code", "message", "errors"?}}``.
* Every request carries ``User-Agent: tastyrec/<version>``: tastytrade answers 401 without one.
  ``Accept-Version`` goes to production only (the sandbox rejects it).
* ``GET /api-quote-tokens`` gives the DXLink URL and a quote token valid 24 hours. It is cached and
  renewed :data:`QUOTE_TOKEN_MARGIN_S` before it expires, or at once with ``force=True`` (what a
  streamer does after an unsolicited ``AUTH_STATE UNAUTHORIZED``).

Quote tokens reach a DXLink streamer through :class:`~tastyrec.quote_tokens.QuoteTokenSource`
(:mod:`tastyrec.quote_tokens`, re-exported here), a small typed interface: the streamer asks for
a token, a fresh one, and when the cached one is due for renewal, and reads nothing else off the
session.

Retries: network errors, 429 and 5xx answers are retried with capped exponential backoff, at
most ``max_retries`` times (a 429's ``Retry-After`` is honoured up to ``max_retry_after_s``; a
longer wait fails at once). Everything else fails at once with a message that says what to do.

**Secrets** (client secret, refresh token, access token, quote token) appear in no log record, no
exception message and no repr: they live in private attributes, the dataclass fields holding them
have ``repr=False``, and server error texts are scrubbed of them before they are quoted.

**No sync constructor is needed.** Like the SDK's Session (12.x and later), the constructor does
no I/O: the first access token is minted on the first call (or by ``await session.refresh()``),
so ``Session(secret, refresh)`` works the same in sync and async code. Close it with
``await session.aclose()`` or use it as ``async with``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import anyio
import httpx2

from ._closing import AsyncClosing
from ._version import __version__
from .exceptions import ApiError, CredentialsError, RateLimitError
from .quote_tokens import (
    QUOTE_TOKEN_MARGIN_S,
    QuoteToken,
    QuoteTokenSource,
    parse_quote_token as _parse_quote_token,
    quote_token_source,
)

__all__ = (
    "ACCESS_TOKEN_MARGIN_S",
    "API_URL",
    "CERT_URL",
    "QUOTE_TOKEN_MARGIN_S",
    "USER_AGENT",
    "Account",
    "QuoteToken",
    "QuoteTokenSource",
    "Session",
    "quote_token_source",
)

logger = logging.getLogger(__name__)

#: production REST API
API_URL: Final = "https://api.tastyworks.com"
#: sandbox ("cert") REST API; its credentials are separate, and it resets every 24 h
CERT_URL: Final = "https://api.cert.tastyworks.com"
#: the API version production is asked for (the SDK's; the sandbox rejects the header)
API_VERSION: Final = "20251101"
#: sent on every request; tastytrade answers 401 without one
USER_AGENT: Final = f"tastyrec/{__version__}"
#: environment variables read when the constructor's arguments are not given
ENV_API_URL: Final = "TASTYTRADE_API_URL"
ENV_CLIENT_SECRET: Final = "TASTYTRADE_CLIENT_SECRET"
ENV_REFRESH_TOKEN: Final = "TASTYTRADE_REFRESH_TOKEN"
#: refresh an access token this long before it expires (the SDK's 60 s)
ACCESS_TOKEN_MARGIN_S: Final = 60.0
#: access-token life when the answer has no ``expires_in``
ACCESS_TOKEN_TTL_S: Final = 900
_TRANSIENT: Final = frozenset({429, 500, 502, 503, 504})
_MAX_QUOTED: Final = 300  # characters of a server's error text quoted in a message
_ACCOUNT_HELP: Final = (
    "create a new refresh token at my.tastytrade.com (Manage > My Profile > API > "
    "OAuth Applications) and set TASTYTRADE_CLIENT_SECRET and TASTYTRADE_REFRESH_TOKEN"
)


def backoff(initial_s: float = 0.5, factor: float = 2.0, max_s: float = 8.0) -> Iterator[float]:
    """Retry delays: jittered, then exponential, capped (websockets' shape).

    tastyrec's one retry schedule for calls: REST retries here, and the DXLink streamer's
    attempts to get a new quote token after ``UNAUTHORIZED``. Reconnects are websockets' own
    backoff (:data:`tastyrec.transport.backoff`), which users tune through the
    ``WEBSOCKETS_BACKOFF_*`` environment variables.
    """
    delay = initial_s
    while True:
        yield delay * random.uniform(0.8, 1.2)
        delay = min(delay * factor, max_s)


@dataclass(frozen=True)
class Account:
    """One of the customer's accounts (``GET /customers/me/accounts``), the fields tastyrec uses.

    Attributes:
        account_number: e.g. ``"5WT00000"``.
        nickname: the customer's name for it.
        account_type_name: e.g. ``"Individual"``.
        margin_or_cash: ``"Margin"`` or ``"Cash"``.
        is_closed: closed accounts are left out unless asked for.
        authority_level: the user's authority, e.g. ``"owner"``.
    """

    account_number: str
    nickname: str = ""
    account_type_name: str = ""
    margin_or_cash: str = ""
    is_closed: bool = False
    authority_level: str = ""


class Session(AsyncClosing):
    """A tastytrade API session from an OAuth client secret and refresh token.

    Example usage::

        async with Session(client_secret, refresh_token) as session:
            chain = await get_option_chain(session, "SPY")
            async with DXLinkStreamer(session) as streamer:
                await streamer.subscribe(Quote, ["SPY"])

    Args:
        client_secret: the OAuth application's client secret
            (default: ``$TASTYTRADE_CLIENT_SECRET``).
        refresh_token: the user's refresh token (default: ``$TASTYTRADE_REFRESH_TOKEN``).
        is_test: use the sandbox (``api.cert.tastyworks.com``) instead of production.
        api_url: base URL override, for proxies and tests (default: ``$TASTYTRADE_API_URL``,
            else production or sandbox).
        user_agent: the ``User-Agent`` header.
        timeout_s: per-request timeout.
        max_retries: retries of a transient failure (network error, 429, 5xx) per call.
        max_retry_after_s: longest 429 ``Retry-After`` waited for; a longer one fails at once.
        retry_delays: factory of retry-delay iterators (default: capped exponential backoff).
        clock: epoch seconds; injectable for tests.
        access_token_margin_s: refresh the access token this long before it expires.
        quote_token_margin_s: renew the quote token this long before it expires.

    Raises:
        CredentialsError: no client secret or refresh token, given or in the environment.
    """

    def __init__(
        self,
        client_secret: str | None = None,
        refresh_token: str | None = None,
        is_test: bool = False,
        *,
        api_url: str | None = None,
        user_agent: str = USER_AGENT,
        timeout_s: float = 30.0,
        max_retries: int = 3,
        max_retry_after_s: float = 60.0,
        retry_delays: Callable[[], Iterator[float]] = backoff,
        clock: Callable[[], float] = time.time,
        access_token_margin_s: float = ACCESS_TOKEN_MARGIN_S,
        quote_token_margin_s: float = QUOTE_TOKEN_MARGIN_S,
    ) -> None:
        secret = client_secret or os.environ.get(ENV_CLIENT_SECRET)
        refresh = refresh_token or os.environ.get(ENV_REFRESH_TOKEN)
        if not secret:
            raise CredentialsError(
                f"no OAuth client secret: pass client_secret or set {ENV_CLIENT_SECRET}"
            )
        if not refresh:
            raise CredentialsError(
                f"no OAuth refresh token: pass refresh_token or set {ENV_REFRESH_TOKEN}"
            )
        self._client_secret = secret
        self._refresh_token = refresh
        #: whether this is a sandbox session
        self.is_test = is_test
        #: the REST base URL in use
        self.api_url = (
            api_url or os.environ.get(ENV_API_URL) or (CERT_URL if is_test else API_URL)
        ).rstrip("/")
        self.max_retries = max_retries
        self.max_retry_after_s = max_retry_after_s
        self.retry_delays = retry_delays
        self.clock = clock
        self.access_token_margin_s = access_token_margin_s
        self.quote_token_margin_s = quote_token_margin_s
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": user_agent,
        }
        if not is_test:
            headers["Accept-Version"] = API_VERSION
        self._client = httpx2.AsyncClient(base_url=self.api_url, headers=headers, timeout=timeout_s)
        self._access_token = ""
        self._access_expires = 0.0  # epoch seconds
        self._quote_token: QuoteToken | None = None
        self._refresh_lock = anyio.Lock()
        self._quote_lock = anyio.Lock()

    def __repr__(self) -> str:
        return f"Session(api_url={self.api_url!r}, is_test={self.is_test!r})"

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()

    # --- the SDK's names -------------------------------------------------------------------

    @property
    def session_token(self) -> str:
        """The current OAuth access token (the SDK's name; empty before the first call)."""
        return self._access_token

    @property
    def session_expiration(self) -> float:
        """When the current access token expires, in epoch seconds (0 before the first call)."""
        return self._access_expires

    async def _get(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """The SDK's private GET: the ``data`` of the answer (for code written for the SDK)."""
        return await self.get(path, params=kwargs.get("params"))

    # --- tokens ----------------------------------------------------------------------------

    async def refresh(self, force: bool = False) -> None:
        """Mint a new access token if the current one expires within the margin (or ``force``).

        Raises:
            CredentialsError: tastytrade rejected the client secret or refresh token.
            RateLimitError, ApiError: tastytrade kept failing (after the retries).
        """
        if not force and self._access_valid():
            return
        async with self._refresh_lock:
            if not force and self._access_valid():
                return
            body = {
                "grant_type": "refresh_token",
                "refresh_token": self._refresh_token,
                "client_secret": self._client_secret,
            }
            data = await self._request("POST", "/oauth/token", json_body=body, auth=False)
            token = data.get("access_token") if isinstance(data, dict) else None
            if not isinstance(token, str) or not token:
                raise ApiError(
                    f"tastytrade's token endpoint at {self.api_url!r} answered without an "
                    "access_token; check TASTYTRADE_API_URL (is it the REST API?)",
                    200,
                )
            ttl = data.get("expires_in", ACCESS_TOKEN_TTL_S)
            ttl = ttl if isinstance(ttl, int | float) and ttl > 0 else ACCESS_TOKEN_TTL_S
            self._access_token = token
            self._access_expires = self.clock() + ttl
            logger.info("= access token refreshed, valid for %d s", ttl)

    def _access_valid(self) -> bool:
        return bool(self._access_token) and (
            self.clock() < self._access_expires - self.access_token_margin_s
        )

    #: quote tokens are cached and renewed before they expire (:class:`QuoteTokenSource`)
    renews_quote_token = True

    def quote_token_due_in(self) -> float | None:
        """Seconds until the cached quote token is due for renewal, ``quote_token_margin_s``
        before it expires (negative: overdue; ``None``: none cached yet)."""
        qt = self._quote_token
        if qt is None:
            return None
        return qt.expires_at.timestamp() - self.quote_token_margin_s - self.clock()

    @property
    def quote_token(self) -> QuoteToken | None:
        """The cached quote token (``None`` before the first :meth:`get_quote_token`)."""
        return self._quote_token

    async def get_quote_token(self, force: bool = False) -> QuoteToken:
        """The DXLink URL and quote token: cached, renewed before it expires (or if ``force``).

        Args:
            force: fetch a new one even if the cached one looks valid (after the DXLink server
                withdrew authorisation).

        Raises:
            ApiError: tastytrade refused (e.g. the user is not a customer) or kept failing.
        """
        async with self._quote_lock:
            cached = self._quote_token
            if not force and cached is not None and self._quote_valid(cached):
                return cached
            data = await self.get("/api-quote-tokens")
            qt = _parse_quote_token(data, self.clock())
            if qt is None:
                raise ApiError(
                    "tastytrade's /api-quote-tokens answer has no token or dxlink-url; "
                    "check TASTYTRADE_API_URL (is it the REST API?)",
                    200,
                )
            self._quote_token = qt
            logger.info(
                "= quote token renewed (level %s, DXLink %s, expires %s)",
                qt.level,
                qt.dxlink_url,
                qt.expires_at.isoformat(),
            )
            return qt

    def _quote_valid(self, qt: QuoteToken) -> bool:
        return self.clock() < qt.expires_at.timestamp() - self.quote_token_margin_s

    # --- REST --------------------------------------------------------------------------------

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """GET an API path; the ``data`` of the answer.

        Raises:
            CredentialsError: the credentials were rejected.
            RateLimitError: 429 after the retries, or a ``Retry-After`` above the limit.
            ApiError: any other failure; the message says what to do.
        """
        body = await self._request("GET", path, params=params)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise ApiError(
                f"tastytrade's answer to GET {path} has no data object; check TASTYTRADE_API_URL",
                200,
            )
        return data

    async def get_accounts(self, include_closed: bool = False) -> list[Account]:
        """The customer's accounts (``/customers/me/accounts``), open ones unless asked."""
        data = await self.get("/customers/me/accounts")
        out = []
        for item in data.get("items", []):
            acc = item.get("account", {})
            account = Account(
                account_number=str(acc.get("account-number", "")),
                nickname=str(acc.get("nickname", "")),
                account_type_name=str(acc.get("account-type-name", "")),
                margin_or_cash=str(acc.get("margin-or-cash", "")),
                is_closed=bool(acc.get("is-closed", False)),
                authority_level=str(item.get("authority-level", "")),
            )
            if include_closed or not account.is_closed:
                out.append(account)
        return out

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        auth: bool = True,
    ) -> Any:
        """One API call with its retries; the decoded JSON body of a 2xx answer."""
        delays = self.retry_delays()
        retries = 0
        reauthorised = False
        while True:
            headers = {}
            if auth:
                await self.refresh()
                headers["Authorization"] = f"Bearer {self._access_token}"
            logger.debug("> %s %s", method, path)
            try:
                resp = await self._client.request(
                    method, path, params=params, json=json_body, headers=headers
                )
            except httpx2.TransportError as exc:
                if retries >= self.max_retries:
                    raise ApiError(
                        f"no answer from tastytrade at {self.api_url!r} for {method} {path} "
                        f"({type(exc).__name__}: {self._scrub(str(exc))}) after "
                        f"{retries + 1} attempts; check the network (and {ENV_API_URL}, if set) "
                        "and try again"
                    ) from None
                retries += 1
                delay = next(delays)
                logger.warning(
                    "= %s %s failed (%s); retry %d in %.1f s",
                    method,
                    path,
                    type(exc).__name__,
                    retries,
                    delay,
                )
                await anyio.sleep(delay)
                continue
            status = resp.status_code
            logger.debug("< %d %s %s", status, method, path)
            if 200 <= status < 300:
                try:
                    return resp.json()
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise ApiError(
                        f"tastytrade answered {method} {path} with a body that is not JSON; "
                        f"check {ENV_API_URL} (is {self.api_url!r} the REST API?)",
                        status,
                    ) from None
            code, text = self._error_of(resp)
            if status == 401 and auth and not reauthorised:
                # the access token was refused before its time: mint one and try once more
                reauthorised = True
                await self.refresh(force=True)
                continue
            if status in _TRANSIENT:
                retry_after = _retry_after(resp) if status == 429 else None
                if (
                    status == 429
                    and retry_after is not None
                    and retry_after > (self.max_retry_after_s)
                ):
                    raise RateLimitError(
                        f"tastytrade rate limit (429) on {method} {path}: it asks to wait "
                        f"{retry_after:.0f} s; wait that long and try again, or make fewer "
                        "requests",
                        error_code=code,
                        retry_after=retry_after,
                    )
                if retries < self.max_retries:
                    retries += 1
                    delay = next(delays)
                    if retry_after is not None:
                        delay = max(delay, retry_after)
                    logger.warning(
                        "= %s %s answered %d; retry %d in %.1f s",
                        method,
                        path,
                        status,
                        retries,
                        delay,
                    )
                    await anyio.sleep(delay)
                    continue
                if status == 429:
                    raise RateLimitError(
                        f"tastytrade rate limit (429) on {method} {path} after {retries + 1} "
                        "attempts; wait a minute and try again, or make fewer requests",
                        error_code=code,
                        retry_after=retry_after,
                    )
                raise ApiError(
                    f"tastytrade answered {status} to {method} {path} {retries + 1} times "
                    f"({_detail(code, text)}); the service may be down or in maintenance "
                    "(see status.tastytrade.com); try again later",
                    status,
                    code,
                )
            raise self._fatal(method, path, status, code, text, auth)

    def _fatal(
        self, method: str, path: str, status: int, code: str, text: str, auth: bool
    ) -> ApiError:
        detail = _detail(code, text)
        env = "sandbox" if self.is_test else "production"
        if not auth and status in (400, 401, 403):
            return CredentialsError(
                f"tastytrade ({env}, {self.api_url}) rejected the OAuth credentials "
                f"({status}, {detail}): the refresh token may be revoked or mistyped, or "
                "belong to the other environment (production vs sandbox: is_test / --sandbox); "
                + _ACCOUNT_HELP,
                status,
                code,
            )
        if status == 401:
            return CredentialsError(
                f"tastytrade refused a fresh access token for {method} {path} (401, {detail}); "
                "check that the OAuth application has the 'read' scope, or " + _ACCOUNT_HELP,
                status,
                code,
            )
        if path.startswith("/api-quote-tokens") and status in (400, 403, 404):
            return ApiError(
                f"tastytrade gives no quote token to this user ({status}, {detail}): "
                "market data needs a tastytrade customer account (opened and funded); the "
                "sandbox has no market data of its own",
                status,
                code,
            )
        if status == 403:
            return ApiError(
                f"tastytrade does not permit {method} {path} for this user ({detail}); check "
                "the OAuth application's scopes and the account's permissions",
                status,
                code,
            )
        if status == 404:
            return ApiError(
                f"tastytrade has nothing at {method} {path} (404, {detail}); check the symbol",
                status,
                code,
            )
        return ApiError(f"tastytrade answered {status} to {method} {path} ({detail})", status, code)

    def _error_of(self, resp: httpx2.Response) -> tuple[str, str]:
        """(code, message) of an error answer, scrubbed of secrets."""
        code, text = "", ""
        try:
            body = resp.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, dict):  # tastytrade's {"error": {"code", "message", "errors"}}
                code = str(error.get("code", ""))
                parts = [str(error.get("message", ""))]
                parts.extend(
                    f"{sub.get('code', '')}: {sub.get('message', '')}"
                    for sub in error.get("errors") or []
                    if isinstance(sub, dict)
                )
                text = "; ".join(p for p in parts if p)
            elif isinstance(error, str):  # OAuth's {"error": "invalid_grant", ...}
                code = error
                text = str(body.get("error_description", ""))
        elif body is None:
            text = resp.text
        return self._scrub(code), self._scrub(text)

    def _scrub(self, text: str) -> str:
        """``text`` without any secret this session knows, cut to a readable length."""
        secrets = [self._client_secret, self._refresh_token, self._access_token]
        if self._quote_token is not None:
            secrets.append(self._quote_token.token)
        for secret in secrets:
            if secret:
                text = text.replace(secret, "<redacted>")
        text = " ".join(text.split())
        return text if len(text) <= _MAX_QUOTED else text[:_MAX_QUOTED] + "..."


def _detail(code: str, text: str) -> str:
    if code and text:
        return f"{code}: {text!r}"
    if code:
        return code
    return repr(text) if text else "no details"


def _retry_after(resp: httpx2.Response) -> float | None:
    """The ``Retry-After`` header in seconds (delta-seconds only; dates are ignored)."""
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds)
