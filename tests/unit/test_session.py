"""Session without a server: configuration, parsing of answers, secrets kept out of text."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tastyrec.exceptions import AuthenticationError, CredentialsError, TastyrecError
from tastyrec.session import (
    API_URL,
    CERT_URL,
    USER_AGENT,
    QuoteToken,
    Session,
    _detail,
    _parse_quote_token,
)

SECRET = "client-secret-7c1e"
REFRESH = "refresh-token-93ab"


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TASTYTRADE_API_URL", "TASTYTRADE_CLIENT_SECRET", "TASTYTRADE_REFRESH_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_base_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Session(SECRET, REFRESH).api_url == API_URL
    assert Session(SECRET, REFRESH, is_test=True).api_url == CERT_URL
    monkeypatch.setenv("TASTYTRADE_API_URL", "http://127.0.0.1:8080/")
    assert Session(SECRET, REFRESH).api_url == "http://127.0.0.1:8080"
    assert Session(SECRET, REFRESH, True, api_url="http://proxy:1").api_url == "http://proxy:1"


def test_headers_production_and_sandbox() -> None:
    prod = Session(SECRET, REFRESH)._client.headers
    cert = Session(SECRET, REFRESH, is_test=True)._client.headers
    assert prod["User-Agent"] == cert["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith("tastyrec/")
    assert prod["Accept-Version"] == "20251101"
    assert "Accept-Version" not in cert  # the sandbox rejects it
    assert "Authorization" not in prod  # set per request, never stored in the client


def test_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASTYTRADE_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("TASTYTRADE_REFRESH_TOKEN", REFRESH)
    session = Session()
    assert session._client_secret == SECRET and session._refresh_token == REFRESH


@pytest.mark.parametrize(
    ("secret", "refresh", "missing"),
    [(None, REFRESH, "TASTYTRADE_CLIENT_SECRET"), (SECRET, None, "TASTYTRADE_REFRESH_TOKEN")],
)
def test_missing_credentials(secret: str | None, refresh: str | None, missing: str) -> None:
    with pytest.raises(CredentialsError) as info:
        Session(secret, refresh)
    assert missing in str(info.value)
    assert isinstance(info.value, AuthenticationError | TastyrecError)
    assert SECRET not in str(info.value) and REFRESH not in str(info.value)


def test_reprs_hold_no_secret() -> None:
    session = Session(SECRET, REFRESH)
    session._access_token = "access-token-55d0"
    qt = QuoteToken("quote-token-e4f2", "ws://x/realtime", "api", datetime.now(UTC))
    text = repr(session) + str(session) + repr(qt) + str(qt)
    for secret in (SECRET, REFRESH, "access-token-55d0", "quote-token-e4f2"):
        assert secret not in text
    assert "ws://x/realtime" in repr(qt)


def test_scrub_removes_every_secret_and_bounds_length() -> None:
    session = Session(SECRET, REFRESH)
    session._access_token = "access-token-55d0"
    text = session._scrub(f"bad {REFRESH} and {SECRET} and access-token-55d0 " + "x" * 1000)
    assert SECRET not in text and REFRESH not in text and "access-token-55d0" not in text
    assert text.count("<redacted>") == 3
    assert len(text) < 400


def test_parse_quote_token() -> None:
    data = {
        "token": "qt",
        "dxlink-url": "wss://tasty-openapi-ws.dxfeed.com/realtime",
        "level": "api",
        "issued-at": "2025-01-02T03:04:05.678Z",
        "expires-at": "2025-01-03T03:04:05.678Z",
        "websocket-url": "https://tasty-openapi-ws.dxfeed.com/realtime",
    }
    qt = _parse_quote_token(data, now=0.0)
    assert qt is not None
    assert qt.token == "qt" and qt.level == "api"
    assert qt.dxlink_url == "wss://tasty-openapi-ws.dxfeed.com/realtime"
    assert qt.expires_at == datetime(2025, 1, 3, 3, 4, 5, 678000, tzinfo=UTC)
    # no expires-at: 24 hours after issue (or after now)
    no_expiry = _parse_quote_token({**data, "expires-at": None}, now=0.0)
    assert no_expiry is not None
    assert (no_expiry.expires_at - qt.issued_at).total_seconds() == 86_400  # type: ignore[operator]
    bare = _parse_quote_token({"token": "qt", "dxlink-url": "ws://x"}, now=1000.0)
    assert bare is not None and bare.expires_at.timestamp() == 87_400.0
    assert _parse_quote_token({"dxlink-url": "ws://x"}, now=0.0) is None
    assert _parse_quote_token({"token": "qt"}, now=0.0) is None


def test_error_detail() -> None:
    assert _detail("invalid_grant", "Grant revoked") == "invalid_grant: 'Grant revoked'"
    assert _detail("invalid_grant", "") == "invalid_grant"
    assert _detail("", "oops") == "'oops'"
    assert _detail("", "") == "no details"
