"""Session against the fake tastytrade REST API (tastyrec.sim.rest) on 127.0.0.1.

Token lifetimes are tested with one injected clock shared by the client and the fake server; no
test sleeps (retry delays are zero; a 429's ``Retry-After`` is ``0``).
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from tastyrec.exceptions import (
    ApiError,
    AuthenticationError,
    CredentialsError,
    RateLimitError,
)
from tastyrec.session import Session
from tastyrec.sim.rest import (
    ACCOUNTS_ROUTE,
    CHAIN_ROUTE,
    QUOTE_TOKEN_ROUTE,
    TOKEN_ROUTE,
    ApiSimulator,
)
from tests.integration.waits import WAIT_S

pytestmark = pytest.mark.anyio

SECRET = "sim-client-secret-4d2b"
REFRESH = "sim-refresh-token-8e71"
QUOTE = "sim-quote-token-c0a5"


class Clock:
    """Epoch seconds that move only when told."""

    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def no_delays() -> Iterator[float]:
    return itertools.repeat(0.0)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def api(clock: Clock) -> AsyncIterator[ApiSimulator]:
    async with ApiSimulator(
        client_secret=SECRET, refresh_token=REFRESH, quote_token=QUOTE, clock=clock
    ) as server:
        yield server


def make_session(api: ApiSimulator, clock: Clock, **kwargs: Any) -> Session:
    options: dict[str, Any] = {
        "api_url": api.url,
        "clock": clock,
        "retry_delays": no_delays,
        "timeout_s": WAIT_S,
        **kwargs,
    }
    return Session(
        options.pop("client_secret", SECRET), options.pop("refresh_token", REFRESH), **options
    )


# --- tokens ------------------------------------------------------------------------------------


async def test_access_token_refreshed_ahead_of_expiry(api: ApiSimulator, clock: Clock) -> None:
    async with make_session(api, clock) as session:
        for _ in range(3):
            await session.get_accounts()
        assert api.calls[TOKEN_ROUTE] == 1
        first = session.session_token
        assert first == api.access_tokens[0]
        assert session.session_expiration == clock.now + 900
        clock.now += 900 - 61  # 61 s left: more than the 60 s margin
        await session.get_accounts()
        assert api.calls[TOKEN_ROUTE] == 1
        clock.now += 2  # 59 s left: refreshed before the call, which uses the new token
        await session.get_accounts()
        assert api.calls[TOKEN_ROUTE] == 2
        assert session.session_token == api.access_tokens[1] != first
        assert api.requests[-1].headers["authorization"] == f"Bearer {api.access_tokens[1]}"
        await session.refresh(force=True)
        assert api.calls[TOKEN_ROUTE] == 3
    for request in api.requests:
        assert request.headers["user-agent"].startswith("tastyrec/")
        assert request.headers["accept-version"] == "20251101"  # production mode
        if request.path == "/oauth/token":
            assert "authorization" not in request.headers
        else:
            assert request.headers["authorization"].startswith("Bearer sim-access-")


async def test_sandbox_sends_no_accept_version(api: ApiSimulator, clock: Clock) -> None:
    async with make_session(api, clock, is_test=True) as session:
        await session.get_accounts()
    assert all("accept-version" not in r.headers for r in api.requests)
    assert all(r.headers["user-agent"].startswith("tastyrec/") for r in api.requests)


async def test_refresh_grant_body(api: ApiSimulator, clock: Clock) -> None:
    async with make_session(api, clock) as session:
        await session.refresh()
    (grant,) = [r for r in api.requests if r.path == "/oauth/token"]
    assert json.loads(grant.body) == {
        "grant_type": "refresh_token",
        "refresh_token": REFRESH,
        "client_secret": SECRET,
    }


async def test_access_token_refused_early_is_refreshed_once(
    api: ApiSimulator, clock: Clock
) -> None:
    async with make_session(api, clock) as session:
        await session.get_accounts()
        api.expire_access_tokens()  # e.g. revoked server-side before its 15 minutes
        accounts = await session.get_accounts()
    assert [a.account_number for a in accounts] == ["5WT00000"]
    assert api.calls[TOKEN_ROUTE] == 2
    assert api.calls[ACCOUNTS_ROUTE] == 3  # ok, 401, ok


async def test_quote_token_cached_and_renewed_before_expiry(
    api: ApiSimulator, clock: Clock
) -> None:
    async with make_session(api, clock) as session:
        assert session.quote_token is None
        qt = await session.get_quote_token()
        assert qt.token == QUOTE and qt.level == "api"
        assert qt.expires_at.timestamp() == pytest.approx(clock.now + 86_400, abs=0.01)
        assert await session.get_quote_token() is qt
        clock.now += 86_400 - 3_601  # just over an hour left: still cached
        assert await session.get_quote_token() is qt
        assert api.calls[QUOTE_TOKEN_ROUTE] == 1
        clock.now += 2  # under an hour left: renewed
        api.quote_token = "renewed-quote-token"
        renewed = await session.get_quote_token()
        assert renewed.token == "renewed-quote-token"
        assert api.calls[QUOTE_TOKEN_ROUTE] == 2
        again = await session.get_quote_token(force=True)  # after an unsolicited UNAUTHORIZED
        assert again is not renewed and api.calls[QUOTE_TOKEN_ROUTE] == 3
        assert session.quote_token is again


async def test_accounts(api: ApiSimulator, clock: Clock) -> None:
    async with make_session(api, clock) as session:
        open_ = await session.get_accounts()
        every = await session.get_accounts(include_closed=True)
        data = await session._get("/customers/me/accounts")  # the SDK's private name
    assert [(a.account_number, a.is_closed) for a in open_] == [("5WT00000", False)]
    assert [a.account_number for a in every] == ["5WT00000", "5WT00001"]
    assert every[0].authority_level == "owner" and every[0].margin_or_cash == "Margin"
    # the fake's JSON is the shape the tastytrade SDK's models accept
    tastytrade_account = pytest.importorskip("tastytrade.account")
    sdk = [tastytrade_account.Account(**item["account"]) for item in data["items"]]
    assert [a.account_number for a in sdk] == ["5WT00000", "5WT00001"]


# --- errors ------------------------------------------------------------------------------------


def texts(exc: BaseException) -> str:
    """Everything a user could see of an exception: its text, repr, causes and contexts."""
    out = []
    seen: BaseException | None = exc
    while seen is not None:
        out += [str(seen), repr(seen)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(out)


async def test_bad_refresh_token_is_fatal_and_says_what_to_do(
    api: ApiSimulator, clock: Clock
) -> None:
    async with make_session(api, clock, refresh_token="not-the-refresh-token-1f") as session:
        with pytest.raises(CredentialsError) as info:
            await session.get_quote_token()
    exc = info.value
    assert isinstance(exc, AuthenticationError) and isinstance(exc, ApiError)
    assert exc.status_code == 401 and exc.error_code == "invalid_grant"
    message = str(exc)
    assert "TASTYTRADE_REFRESH_TOKEN" in message and "sandbox" in message
    assert "revoked" in message
    assert "not-the-refresh-token-1f" not in texts(exc) and SECRET not in texts(exc)
    assert api.calls[TOKEN_ROUTE] == 1  # never retried
    assert api.calls[QUOTE_TOKEN_ROUTE] == 0


async def test_revoked_refresh_token(api: ApiSimulator, clock: Clock) -> None:
    async with make_session(api, clock) as session:
        await session.get_accounts()
        api.revoke_refresh_token()
        await session.get_accounts()  # the access token still works for its 15 minutes
        clock.now += 900
        with pytest.raises(CredentialsError) as info:
            await session.get_accounts()
    assert "revoked" in str(info.value)
    assert REFRESH not in texts(info.value)


async def test_429_with_retry_after_is_retried(api: ApiSimulator, clock: Clock) -> None:
    api.fail(QUOTE_TOKEN_ROUTE, 429, times=2, retry_after="0")
    async with make_session(api, clock) as session:
        qt = await session.get_quote_token()
    assert qt.token == QUOTE
    assert api.calls[QUOTE_TOKEN_ROUTE] == 3


async def test_429_asking_for_a_long_wait_fails_at_once(api: ApiSimulator, clock: Clock) -> None:
    api.fail(QUOTE_TOKEN_ROUTE, 429, times=5, retry_after="120", code="rate_limited")
    async with make_session(api, clock) as session:
        with anyio.fail_after(WAIT_S), pytest.raises(RateLimitError) as info:
            await session.get_quote_token()
    assert info.value.retry_after == 120
    assert info.value.status_code == 429
    assert "wait" in str(info.value) and "120 s" in str(info.value)
    assert api.calls[QUOTE_TOKEN_ROUTE] == 1


async def test_429_every_time_gives_up_after_the_retries(api: ApiSimulator, clock: Clock) -> None:
    api.fail(ACCOUNTS_ROUTE, 429, times=100)
    async with make_session(api, clock, max_retries=2) as session:
        with pytest.raises(RateLimitError) as info:
            await session.get_accounts()
    assert "3 attempts" in str(info.value) and "fewer requests" in str(info.value)
    assert api.calls[ACCOUNTS_ROUTE] == 3


async def test_5xx_once_then_ok(api: ApiSimulator, clock: Clock) -> None:
    api.fail(TOKEN_ROUTE, 502, times=1)
    api.fail(QUOTE_TOKEN_ROUTE, 503, times=1)
    async with make_session(api, clock) as session:
        qt = await session.get_quote_token()
    assert qt.token == QUOTE
    assert api.calls[TOKEN_ROUTE] == 2 and api.calls[QUOTE_TOKEN_ROUTE] == 2


async def test_5xx_every_time(api: ApiSimulator, clock: Clock) -> None:
    api.fail(QUOTE_TOKEN_ROUTE, 500, times=100, code="internal_error", message="boom")
    async with make_session(api, clock) as session:
        with pytest.raises(ApiError) as info:
            await session.get_quote_token()
    exc = info.value
    assert type(exc) is ApiError and exc.status_code == 500 and exc.error_code == "internal_error"
    assert "4 times" in str(exc) and "try again later" in str(exc) and "boom" in str(exc)
    assert api.calls[QUOTE_TOKEN_ROUTE] == 4


async def test_no_server(clock: Clock) -> None:
    with anyio.fail_after(WAIT_S):
        async with ApiSimulator() as gone:
            url = gone.url
        session = Session(SECRET, REFRESH, api_url=url, retry_delays=no_delays, max_retries=1)
        async with session:
            with pytest.raises(ApiError) as info:
                await session.get_accounts()
    assert info.value.status_code is None
    assert "no answer" in str(info.value) and "2 attempts" in str(info.value)
    assert "network" in str(info.value)


async def test_not_a_customer(api: ApiSimulator, clock: Clock) -> None:
    api.fail(
        QUOTE_TOKEN_ROUTE,
        403,
        code="quote_streamer.customer_not_found_error",
        message="You must be a customer to access quote streamer tokens",
    )
    async with make_session(api, clock) as session:
        with pytest.raises(ApiError) as info:
            await session.get_quote_token()
    assert info.value.error_code == "quote_streamer.customer_not_found_error"
    assert "customer account" in str(info.value)
    assert api.calls[QUOTE_TOKEN_ROUTE] == 1


async def test_unknown_chain_symbol(api: ApiSimulator, clock: Clock) -> None:
    async with make_session(api, clock) as session:
        with pytest.raises(ApiError) as info:
            await session.get("/option-chains/NOPE/nested")
    assert info.value.status_code == 404 and "check the symbol" in str(info.value)
    assert api.calls[CHAIN_ROUTE] == 1


async def test_secrets_never_reach_logs_or_errors(
    api: ApiSimulator, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors = []
    async with make_session(api, clock) as session:
        await session.get_quote_token()
        await session.get_accounts()
        clock.now += 900
        await session.get_accounts()  # a second refresh
        api.fail(ACCOUNTS_ROUTE, 400, message=f"bad token {api.access_tokens[-1]} {REFRESH}")
        with pytest.raises(ApiError) as info:
            await session.get_accounts()
        errors.append(info.value)
        api.fail(TOKEN_ROUTE, 401, message=f"refresh {REFRESH} secret {SECRET}")
        with pytest.raises(CredentialsError) as cred:
            await session.refresh(force=True)
        errors.append(cred.value)
        assert "<redacted>" in str(info.value) and "<redacted>" in str(cred.value)
        shown = repr(session) + repr(session.quote_token) + str(session.quote_token)
    logged = "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records
    )
    assert "> GET /api-quote-tokens" in logged  # debug logging was on
    assert any(r.name.startswith("httpx2") for r in caplog.records)  # the HTTP client's too
    secrets = [SECRET, REFRESH, QUOTE, *api.access_tokens]
    assert len(secrets) == 5
    for secret in secrets:
        assert secret not in logged
        assert secret not in shown
        for exc in errors:
            assert secret not in texts(exc)
