"""DXLinkStreamer(session): quote tokens from the fake REST API, the simulator for DXLink.

The loss check compares what the simulator sent (``keep_sent``), decoded independently with json
and the FEED_CONFIG field lists, with what the streamer delivered; a *barrier* (an ``ERROR`` with
a unique message, sent after the data) tells when the client has handled everything sent before.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from tastyrec.dxlink import messages as m
from tastyrec.dxlink.streamer import DXLinkStreamer
from tastyrec.events.market import Quote
from tastyrec.exceptions import CredentialsError
from tastyrec.session import Session
from tastyrec.sim import SimConfig, Simulator
from tastyrec.sim.rest import QUOTE_TOKEN_ROUTE, TOKEN_ROUTE, ApiSimulator
from tests.integration.manual_time import Reconnects
from tests.integration.waits import WAIT_S, fast_delays, wait_until

pytestmark = pytest.mark.anyio

TOKEN = "sim-quote-token-1b9d"
ROTATED = "sim-quote-token-rotated-77e3"
SYMBOLS = ["SPY", "QQQ", "AAPL", "MSFT"]


def no_delays() -> Iterator[float]:
    return itertools.repeat(0.0)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    config = SimConfig(keepalive_timeout=5.0, quote_rate_hz=20.0)
    async with Simulator(seed=7, token=TOKEN, config=config, keep_sent=True) as server:
        yield server


@pytest.fixture
async def api(sim: Simulator) -> AsyncIterator[ApiSimulator]:
    async with ApiSimulator(sim) as server:
        yield server


def make_session(api: ApiSimulator, **kwargs: Any) -> Session:
    return Session(
        api.client_secret, api.refresh_token, api_url=api.url, retry_delays=no_delays, **kwargs
    )


def make_streamer(session: Any, **kwargs: Any) -> DXLinkStreamer:
    return DXLinkStreamer(
        session,
        keepalive_timeout=10.0,  # the watchdog is tested on its own: no false alarms here
        connect_timeout=WAIT_S,
        reconnect_delays=fast_delays,
        **kwargs,
    )


_barriers = itertools.count()


async def barrier(server: Simulator, streamer: DXLinkStreamer) -> None:
    marker = f"barrier-{next(_barriers)}"
    await server.send_error("UNKNOWN", marker)
    await wait_until(lambda: any(e.message == marker for e in streamer.server_errors))


def sent_quotes(frames: list[Any]) -> list[tuple[Any, ...]]:
    """(symbol, bidTime, bidPrice, askPrice) of every Quote the simulator sent, in order."""
    fields: dict[int, list[str]] = {}
    out = []
    for frame in frames:
        msg = json.loads(frame)
        if msg["type"] == "FEED_CONFIG" and msg.get("eventFields", {}).get("Quote"):
            fields[msg["channel"]] = msg["eventFields"]["Quote"]
        elif msg["type"] == "FEED_DATA":
            data = msg["data"]
            for name, values in zip(data[0::2], data[1::2], strict=True):
                if name != "Quote":
                    continue
                names = fields[msg["channel"]]
                for i in range(0, len(values), len(names)):
                    row = dict(zip(names, values[i : i + len(names)], strict=True))
                    out.append(
                        (row["eventSymbol"], row["bidTime"], row["bidPrice"], row["askPrice"])
                    )
    return out


def received(streamer: DXLinkStreamer) -> list[tuple[Any, ...]]:
    out = []
    while (q := streamer.get_event_nowait(Quote)) is not None:
        out.append((q.event_symbol, q.bid_time, q.bid_price, q.ask_price))
    return out


async def test_streamer_from_session(sim: Simulator, api: ApiSimulator) -> None:
    async with make_session(api) as session, make_streamer(session) as streamer:
        assert streamer.url == sim.url
        await streamer.subscribe(Quote, ["SPY"])
        with anyio.fail_after(WAIT_S):
            quote = await streamer.get_event(Quote)
        assert quote.event_symbol == "SPY" and quote.bid_price < quote.ask_price
        assert session.quote_token is not None and session.quote_token.token == TOKEN
    assert api.calls[TOKEN_ROUTE] == 1 and api.calls[QUOTE_TOKEN_ROUTE] == 1
    assert [x.token for x in sim.received if isinstance(x, m.Auth)] == [TOKEN]


async def test_rotated_quote_token_mid_stream_loses_nothing(
    sim: Simulator, api: ApiSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with make_session(api) as session, make_streamer(session) as streamer:
        await streamer.subscribe(Quote, SYMBOLS, refresh_interval=0.02)
        await wait_until(lambda: streamer.stats.events >= 50)
        before = len(sim.received)
        # the server withdraws authorisation; only the new token works from now on, and the fake
        # REST API serves the simulator's current token
        await sim.expire_token(ROTATED)
        await wait_until(
            lambda: any(isinstance(x, m.FeedSubscription) for x in sim.received[before:])
        )
        events_at_restore = streamer.stats.events
        await wait_until(lambda: streamer.stats.events >= events_at_restore + 50)
        await barrier(sim, streamer)
        assert sim.sent is not None
        sent = sent_quotes(sim.sent)
        got = received(streamer)
        # nothing lost, nothing twice: exactly what the server sent, in order
        assert got == sent
        assert len(got) == streamer.stats.events
        assert streamer.stats.dropped["Quote"] == 0
        symbols_after = {s for s, *_ in sent_quotes(sim.sent)[-100:]}
        assert symbols_after == set(SYMBOLS)  # every subscription restored
        # on the same connection: no reconnect, no gap
        assert streamer.stats.connects == 1 and streamer.stats.disconnects == 0
        assert streamer.gaps == [] and sim.connection_count == 1
        assert streamer.connected
        auths = [x.token for x in sim.received if isinstance(x, m.Auth)]
        assert auths == [TOKEN, ROTATED]
        assert api.calls[QUOTE_TOKEN_ROUTE] == 2 and streamer.quote_token_renewals == 2
        shown = repr(streamer) + repr(session) + repr(session.quote_token)
    logged = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)
    assert "re-authorising with a new quote token" in logged
    for secret in (TOKEN, ROTATED, api.client_secret, api.refresh_token, *api.access_tokens):
        assert secret not in logged
        assert secret not in shown


async def test_rotation_survives_a_failing_rest_call(sim: Simulator, api: ApiSimulator) -> None:
    async with make_session(api) as session, make_streamer(session) as streamer:
        await streamer.subscribe(Quote, ["SPY"])
        await wait_until(lambda: streamer.stats.events >= 5)
        api.fail(QUOTE_TOKEN_ROUTE, 503, times=1)
        api.fail(QUOTE_TOKEN_ROUTE, 429, times=1, retry_after="0")
        await sim.expire_token(ROTATED)
        await wait_until(
            lambda: any(isinstance(x, m.Auth) and x.token == ROTATED for x in sim.received)
        )
        n = streamer.stats.events
        await wait_until(lambda: streamer.stats.events >= n + 5)
        assert streamer.stats.disconnects == 0
    assert api.calls[QUOTE_TOKEN_ROUTE] == 4  # first token, 503, 429, new token


async def test_revoked_credentials_stop_the_streamer(sim: Simulator, api: ApiSimulator) -> None:
    session = make_session(api)
    with anyio.fail_after(WAIT_S), pytest.raises(CredentialsError) as info:
        async with session, make_streamer(session) as streamer:
            await streamer.subscribe(Quote, ["SPY"])
            await wait_until(lambda: streamer.stats.events >= 1)
            api.revoke_refresh_token()
            api.expire_access_tokens()
            await sim.expire_token(ROTATED)
            await anyio.sleep_forever()
    assert "refresh token" in str(info.value)
    assert api.refresh_token not in str(info.value)


async def test_reconnect_uses_the_sessions_token(sim: Simulator, api: ApiSimulator) -> None:
    async with make_session(api) as session, make_streamer(session) as streamer:
        await streamer.subscribe(Quote, ["SPY"])
        await wait_until(lambda: streamer.stats.events >= 1)
        reconnects = Reconnects(streamer)
        await sim.drop()
        await reconnects.wait()
        assert streamer.stats.connects == 2
        assert api.calls[QUOTE_TOKEN_ROUTE] == 1  # still valid for ~24 h: the cached one
        n = streamer.stats.events
        await wait_until(lambda: streamer.stats.events > n)
    assert [x.token for x in sim.received if isinstance(x, m.Auth)] == [TOKEN, TOKEN]


async def test_quote_token_renewed_in_the_background(sim: Simulator) -> None:
    # tokens live 3 s and are renewed when under 2.5 s are left: about every second
    async with (
        ApiSimulator(sim, quote_token_ttl_s=3.0) as api,
        make_session(api, quote_token_margin_s=2.5) as session,
        make_streamer(session) as streamer,
    ):
        await streamer.subscribe(Quote, ["SPY"])
        await wait_until(lambda: api.calls[QUOTE_TOKEN_ROUTE] >= 3, limit_s=4 * WAIT_S)
        # renewed in the session only: the live connection was not disturbed
        assert streamer.stats.connects == 1 and streamer.stats.disconnects == 0
        assert sum(isinstance(x, m.Auth) for x in sim.received) == 1
        # an UNAUTHORIZED now finds a fresh token at hand (or fetches one)
        await sim.expire_token(ROTATED)
        await wait_until(
            lambda: any(isinstance(x, m.Auth) and x.token == ROTATED for x in sim.received)
        )
        n = streamer.stats.events
        await wait_until(lambda: streamer.stats.events > n)


async def test_tastytrade_sdk_session(sim: Simulator, api: ApiSimulator) -> None:
    """The SDK's Session, pointed at the fake API: the streamer takes tokens through its _get."""
    tastytrade = pytest.importorskip("tastytrade")
    sdk = tastytrade.Session(api.client_secret, api.refresh_token)
    sdk._client.base_url = api.url  # the SDK has no base-URL setting
    async with sdk, make_streamer(sdk) as streamer:
        assert streamer.url == sim.url
        await streamer.subscribe(Quote, ["SPY"])
        await wait_until(lambda: streamer.stats.events >= 1)
        await sim.expire_token(ROTATED)
        await wait_until(
            lambda: any(isinstance(x, m.Auth) and x.token == ROTATED for x in sim.received)
        )
        n = streamer.stats.events
        await wait_until(lambda: streamer.stats.events > n)
        assert streamer.stats.disconnects == 0
    assert api.calls[QUOTE_TOKEN_ROUTE] == 2
    assert Counter(type(x) for x in sim.received)[m.Auth] == 2
