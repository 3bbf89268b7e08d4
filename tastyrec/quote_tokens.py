"""DXLink quote tokens: what they are, how one is parsed, and where a streamer gets them.

:class:`QuoteTokenSource` is the small typed interface between the REST side and a DXLink
streamer: the streamer asks for a token, a fresh one, and when the cached one is due for renewal,
and reads nothing else off the session. :class:`tastyrec.session.Session` is one (it caches and
renews); :func:`quote_token_source` makes one of the tastytrade SDK's ``Session`` too. Kept
apart from :mod:`tastyrec.session` (the HTTP client, OAuth and retries): this module does no I/O
of its own and imports no HTTP client. Its names are re-exported by :mod:`tastyrec.session`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from .exceptions import ApiError, LocalProtocolError

__all__ = (
    "QUOTE_TOKEN_MARGIN_S",
    "QUOTE_TOKEN_TTL_S",
    "QuoteToken",
    "QuoteTokenSource",
    "parse_quote_token",
    "quote_token_source",
)

#: renew a quote token this long before it expires (they live 24 h)
QUOTE_TOKEN_MARGIN_S: Final = 3600.0
#: a quote token's life when the answer has no ``expires-at``
QUOTE_TOKEN_TTL_S: Final = 86_400.0


@dataclass(frozen=True)
class QuoteToken:
    """A DXLink quote token and where to use it (``GET /api-quote-tokens``).

    Attributes:
        token: the token to send in DXLink ``AUTH`` (not in the repr).
        dxlink_url: the DXLink websocket URL to connect to.
        level: ``"api"`` in production (the sandbox reports ``"demo"``).
        expires_at: when the token stops working (24 h after issue).
        issued_at: when it was issued, if the server said.
    """

    token: str = field(repr=False)
    dxlink_url: str
    level: str
    expires_at: datetime
    issued_at: datetime | None = None


class QuoteTokenSource(Protocol):
    """Where a DXLink streamer gets its quote tokens (:class:`~tastyrec.session.Session` is one)."""

    #: whether tokens are cached and renewed before they expire, so that
    #: ``get_quote_token()`` without ``force`` is cheap and returns the newest
    renews_quote_token: bool

    async def get_quote_token(self, force: bool = False) -> QuoteToken:
        """The current quote token; a new one from tastytrade if ``force``."""
        ...

    def quote_token_due_in(self) -> float | None:
        """Seconds until the cached token is due for renewal (``None``: nothing to renew)."""
        ...


class _SdkQuoteTokens:
    """Quote tokens of any object with the tastytrade SDK's async ``_get(path)`` (its
    ``Session``): one ``GET /api-quote-tokens`` each time, no cache, no renewal."""

    renews_quote_token = False

    def __init__(self, session: Any) -> None:
        self._session = session

    async def get_quote_token(self, force: bool = False) -> QuoteToken:
        data = await self._session._get("/api-quote-tokens")
        qt = parse_quote_token(data, time.time())
        if qt is None:
            raise ApiError("the /api-quote-tokens answer has no token or dxlink-url", 200)
        return qt

    def quote_token_due_in(self) -> float | None:
        return None


def quote_token_source(session: object) -> QuoteTokenSource:
    """``session`` as a :class:`QuoteTokenSource`: itself if it is one (a
    :class:`~tastyrec.session.Session`), else through the tastytrade SDK's
    ``_get("/api-quote-tokens")``.

    Raises:
        LocalProtocolError: it has neither (an argument error: also a ``ValueError``).
    """
    if hasattr(session, "get_quote_token") and hasattr(session, "quote_token_due_in"):
        source: QuoteTokenSource = session  # type: ignore[assignment]
        return source
    if hasattr(session, "_get"):
        return _SdkQuoteTokens(session)
    raise LocalProtocolError(f"cannot get a quote token from {type(session).__name__}")


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_quote_token(data: Mapping[str, Any], now: float) -> QuoteToken | None:
    """The quote token of a ``GET /api-quote-tokens`` answer (``None``: no token or URL in
    it); without ``expires-at`` it lives :data:`QUOTE_TOKEN_TTL_S` from issue (or ``now``)."""
    token, url = data.get("token"), data.get("dxlink-url")
    if not isinstance(token, str) or not token or not isinstance(url, str) or not url:
        return None
    issued = _parse_time(data.get("issued-at"))
    expires = _parse_time(data.get("expires-at"))
    if expires is None:
        start = issued.timestamp() if issued is not None else now
        expires = datetime.fromtimestamp(start + QUOTE_TOKEN_TTL_S, UTC)
    return QuoteToken(
        token=token,
        dxlink_url=url,
        level=str(data.get("level", "")),
        expires_at=expires,
        issued_at=issued,
    )
