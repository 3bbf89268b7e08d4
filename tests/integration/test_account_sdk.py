"""An unmodified real account-streamer client, the tastytrade SDK's AlertStreamer, against the
account simulator: every payload the simulator sends must validate in the SDK's pydantic models."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import anyio
import pytest

from tastyrec.exceptions import _leaves
from tastyrec.sim.account import AccountSimulator, open_simulators
from tastyrec.sim.brokerage import AccountSimConfig
from tastyrec.sim.rest import ApiSimulator
from tests.integration.waits import WAIT_S

streamer_mod = pytest.importorskip("tastytrade.streamer")
order_mod = pytest.importorskip("tastytrade.order")
account_mod = pytest.importorskip("tastytrade.account")
watchlists_mod = pytest.importorskip("tastytrade.watchlists")
utils_mod = pytest.importorskip("tastytrade.utils")
session_mod = pytest.importorskip("tastytrade.session")

TOKEN = "sdk-access-token-3e9"


class StubSession:
    """Just what the SDK's AlertStreamer reads of a tastytrade Session: ``is_test`` (to pick a
    URL, overridden below), ``client_kwargs`` (for its httpx2 client), ``refresh()`` (called
    before every subscription) and ``session_token`` (sent as ``Bearer <session_token>``)."""

    is_test = False
    client_kwargs: dict[str, Any] = {}

    def __init__(self, token: str) -> None:
        self.session_token = token
        self.refreshes = 0

    async def refresh(self) -> None:
        self.refreshes += 1


class StubAccount:
    def __init__(self, number: str) -> None:
        self.account_number = number


@pytest.fixture
async def sim() -> AsyncIterator[AccountSimulator]:
    config = AccountSimConfig(step_s=0.01, fill_step_s=0.01, order_updated_at_ms=True)
    async with AccountSimulator(token=TOKEN, order_every_s=None, config=config) as server:
        yield server


def sdk_streamer(server: AccountSimulator, token: str = TOKEN) -> Any:
    streamer = streamer_mod.AlertStreamer(StubSession(token))
    streamer.base_url = server.url  # instead of wss://streamer.tastyworks.com
    return streamer


def close_sdk_queues(streamer: Any) -> None:
    """The SDK never closes its unbounded per-type streams; anyio then warns (ResourceWarning)
    when they are garbage-collected, which ``filterwarnings = error`` turns into a failure."""
    for stapled in streamer._queues.values():
        stapled.send_stream.close()
        stapled.receive_stream.close()


async def sdk_order(streamer: Any, order_id: int, status: str) -> Any:
    async for order in streamer.listen(order_mod.PlacedOrder):
        if order.id == order_id and order.status == status:
            return order
    raise AssertionError("unreachable")


async def next_of(streamer: Any, cls: type) -> Any:
    async for item in streamer.listen(cls):
        return item
    raise AssertionError("unreachable")


async def test_sdk_alert_streamer_receives_every_type(sim: AccountSimulator):
    streamer = sdk_streamer(sim)
    try:
        async with streamer:
            with anyio.fail_after(WAIT_S):
                await streamer.subscribe_accounts([StubAccount(sim.account_number)])
                await streamer.subscribe_public_watchlists()
                await streamer.subscribe_quote_alerts()

                oid = await sim.place_order(
                    [("SPY   261218C00600000", "Buy to Open", 2), ("SPY", "Sell to Open", 100)]
                )
                filled = await sdk_order(streamer, oid, "Filled")
                position = await next_of(streamer, account_mod.CurrentPosition)
                balance = await next_of(streamer, account_mod.AccountBalance)

                await sim.place_order([("SPY", "Buy to Close", 100)])
                summary = await next_of(streamer, streamer_mod.UnderlyingYearGainSummary)
                await sim.place_complex_order(
                    "OTO",
                    [{"legs": [("QQQ", "Sell to Close", 1)], "order_type": "Limit", "price": 1e6}],
                    trigger={"legs": [("QQQ", "Buy to Open", 1)]},
                )
                complex_order = await next_of(streamer, order_mod.PlacedComplexOrder)
                await sim.deposit("-300")
                tx = await next_of(streamer, streamer_mod.ExternalTransaction)
                await sim.update_trading_status(day_trade_count=2)
                status = await next_of(streamer, account_mod.TradingStatus)
                await sim.trigger_quote_alert("AAPL", "199.5")
                alert = await next_of(streamer, streamer_mod.QuoteAlert)
                await sim.publish_watchlist("Futures", ["/ESZ6"])
                watchlist = await next_of(streamer, watchlists_mod.Watchlist)
                await sim.send_notification("OrderChain", {"id": 1})  # the SDK logs and skips
    finally:
        close_sdk_queues(streamer)

    assert filled.legs[0].symbol == "SPY   261218C00600000" and filled.legs[0].fills
    assert filled.updated_at.year >= 2025  # sent as epoch ms: the SDK's pydantic accepts it
    assert position.account_number == sim.account_number
    assert balance.net_liquidating_value > 0 and balance.pending_cash == 0
    assert summary.symbol == "SPY"
    assert complex_order.type == "OTO" and complex_order.trigger_order is not None
    assert tx.amount == Decimal(300) and tx.direction == "Outgoing"
    assert status.day_trade_count == 2
    assert alert.threshold_numeric == Decimal("199.5")
    assert watchlist.name == "Futures" and watchlist.watchlist_entries[0]["symbol"] == "/ESZ6"
    # the SDK spoke the protocol the way ACCOUNT_STREAMER.md says it does
    assert [r.action for r in sim.received] == [
        "connect",
        "public-watchlists-subscribe",
        "quote-alerts-subscribe",
    ]
    assert {r.auth_token for r in sim.received} == {f"Bearer {TOKEN}"}
    assert [r.request_id for r in sim.received] == [1, 2, 3]
    assert sim.received[0].value == [sim.account_number]


async def test_sdk_alert_streamer_gets_the_documented_error_for_a_bad_token(
    sim: AccountSimulator,
):
    streamer = sdk_streamer(sim, token="wrong")
    try:
        with anyio.fail_after(WAIT_S), pytest.raises(BaseException) as info:
            async with streamer:
                await streamer.subscribe_accounts([StubAccount(sim.account_number)])
                await anyio.sleep_forever()  # the error ends it (fail_after bounds it)
    finally:
        close_sdk_queues(streamer)
    errors = list(_leaves(info.value))
    assert any(isinstance(e, utils_mod.TastytradeError) and "failed" in str(e) for e in errors), (
        errors
    )


async def sdk_error(streamer: Any, action: Any) -> str:
    """Run ``action`` in the SDK streamer and return the TastytradeError it raises."""
    with anyio.fail_after(WAIT_S), pytest.raises(BaseException) as info:
        async with streamer:
            await action(streamer)
            await anyio.sleep_forever()  # the error comes from the SDK's reader task
    errors = [e for e in _leaves(info.value) if isinstance(e, utils_mod.TastytradeError)]
    assert errors, list(_leaves(info.value))
    return str(errors[0])


async def test_sdk_streamer_raises_for_an_account_the_session_does_not_own(sim: AccountSimulator):
    streamer = sdk_streamer(sim)

    async def subscribe(s: Any) -> None:
        await s.subscribe_accounts([StubAccount("5WT99999")])

    try:
        message = await sdk_error(streamer, subscribe)
    finally:
        close_sdk_queues(streamer)
    assert message == "Alert streamer error: unauthorized account '5WT99999'"


@pytest.fixture
async def simulate(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[AccountSimulator, Any]]:
    """What ``tastyrec simulate`` serves: both simulators and the fake REST API, wired the same
    way (``ApiSimulator(dxlink=..., account=...)``); the SDK's API URL points at the fake."""
    config = AccountSimConfig(step_s=0.01, fill_step_s=0.01)
    async with open_simulators(order_every_s=None, account_config=config) as (dx, acct):
        async with ApiSimulator(dxlink=dx, account=acct) as api:
            monkeypatch.setattr(session_mod, "API_URL", api.url)
            yield acct, api


async def test_sdk_session_logs_in_at_the_simulated_api_and_streams_the_account(simulate):
    """FIELD_REPORTS #11: the SDK's own flow, unchanged: Session(client_secret, refresh_token)
    -> Account.get -> AlertStreamer(session), whose auth-token is the API's access token."""
    acct, api = simulate
    async with session_mod.Session(api.client_secret, api.refresh_token) as session:
        accounts = await account_mod.Account.get(session)
        streamer = streamer_mod.AlertStreamer(session)
        streamer.base_url = acct.url  # instead of wss://streamer.tastyworks.com
        try:
            async with streamer:
                with anyio.fail_after(WAIT_S):
                    await streamer.subscribe_accounts(accounts)
                    oid = await acct.place_order([("SPY", "Buy to Open", 3)])
                    filled = await sdk_order(streamer, oid, "Filled")
                    balance = await next_of(streamer, account_mod.AccountBalance)
        finally:
            close_sdk_queues(streamer)
    assert [a.account_number for a in accounts] == [acct.account_number]
    assert sum(f.quantity for f in filled.legs[0].fills) == 3
    assert balance.account_number == acct.account_number
    assert api.access_tokens and acct.token != api.access_tokens[0]
    assert {r.auth_token for r in acct.received} == {f"Bearer {api.access_tokens[0]}"}


@pytest.mark.parametrize("which", ["forged", "expired"])
async def test_sdk_streamer_with_a_token_the_api_did_not_issue_or_that_expired_fails(
    simulate, which: str
):
    acct, api = simulate
    async with session_mod.Session(api.client_secret, api.refresh_token) as session:
        await session.refresh()
    token = session.session_token
    if which == "forged":
        token += "0"  # one character more: never issued
    else:
        api.expire_access_tokens()
    streamer = sdk_streamer(acct, token=token)

    async def subscribe(s: Any) -> None:
        await s.subscribe_accounts([StubAccount(acct.account_number)])

    try:
        message = await sdk_error(streamer, subscribe)
    finally:
        close_sdk_queues(streamer)
    assert message == "Alert streamer error: failed"


SDK_PING_INTERVAL_S = 20.0  # httpx2's keepalive ping interval, which the SDK keeps
IDLE_TIMEOUT_S = 60.0  # the simulator's, as production's is reported (FIELD_REPORTS #14)
RUN_S = 600.0  # ten minutes: ten idle periods


@pytest.mark.slow
async def test_sdk_streamer_that_only_pings_stays_connected_across_idle_periods(monkeypatch):
    """FIELD_REPORTS #14, in real time (10 minutes): the SDK's Session + AlertStreamer send no
    text after subscribing, only websocket pings every 20 s. Against the simulator's 60 s idle
    timeout it stays connected for ten idle periods and keeps receiving orders (one every 30 s);
    a cut would end the SDK's ``async with`` with an error (it never reconnects)."""
    config = AccountSimConfig(step_s=0.01, fill_step_s=0.01, idle_timeout_s=IDLE_TIMEOUT_S)
    async with open_simulators(order_every_s=None, account_config=config) as (dx, acct):
        async with ApiSimulator(dxlink=dx, account=acct) as api:
            monkeypatch.setattr(session_mod, "API_URL", api.url)
            async with session_mod.Session(api.client_secret, api.refresh_token) as session:
                accounts = await account_mod.Account.get(session)
                streamer = streamer_mod.AlertStreamer(session)
                streamer.base_url = acct.url
                filled = []
                try:
                    async with streamer:
                        with anyio.fail_after(WAIT_S):
                            await streamer.subscribe_accounts(accounts)
                        texts = len(acct.received)
                        end = anyio.current_time() + RUN_S
                        while anyio.current_time() < end:
                            # the scenario's length, not a wait for an event: idle time must pass
                            await anyio.sleep(IDLE_TIMEOUT_S / 2)
                            with anyio.fail_after(WAIT_S):
                                oid = await acct.place_order([("SPY", "Buy to Open", 1)])
                                filled.append(await sdk_order(streamer, oid, "Filled"))
                            assert acct.connection_count == 1
                finally:
                    close_sdk_queues(streamer)
    assert len(filled) >= 15  # an order every 30-40 s for ten minutes, all on one connection
    assert len(acct.received) == texts  # no text frame after subscribing: pings alone


async def test_sdk_flow_works_unchanged_against_tastyrec_simulate(cli, monkeypatch):
    """The whole command: `tastyrec simulate` (its account trading by itself every 200 ms) and
    the SDK pointed at its announced `api` and `account` URLs, logging in with the credentials
    it prints."""
    proc = cli.start("simulate", "--order-every", "200ms", "--quote-rate", "1")
    text = proc.wait_for("the api line", lambda: "api " in proc.stdout and proc.stdout)
    urls = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
    monkeypatch.setattr(session_mod, "API_URL", urls["api"])
    async with session_mod.Session("sim-client-secret", "sim-refresh-token") as session:
        accounts = await account_mod.Account.get(session)
        streamer = streamer_mod.AlertStreamer(session)
        streamer.base_url = urls["account"]
        try:
            async with streamer:
                with anyio.fail_after(WAIT_S):
                    await streamer.subscribe_accounts(accounts)
                    async for order in streamer.listen(order_mod.PlacedOrder):
                        if order.status == "Filled":
                            break
        finally:
            close_sdk_queues(streamer)
    assert [a.account_number for a in accounts] == [urls["account-number"]]
    assert order.account_number == urls["account-number"] and order.legs[0].fills
    assert proc.alive()
