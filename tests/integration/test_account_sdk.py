"""An unmodified real account-streamer client, the tastytrade SDK's AlertStreamer, against the
account simulator: every payload the simulator sends must validate in the SDK's pydantic models."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import anyio
import pytest

from tastyrec.exceptions import _leaves
from tastyrec.sim.account import AccountSimulator
from tastyrec.sim.account_engine import AccountSimConfig

streamer_mod = pytest.importorskip("tastytrade.streamer")
order_mod = pytest.importorskip("tastytrade.order")
account_mod = pytest.importorskip("tastytrade.account")
watchlists_mod = pytest.importorskip("tastytrade.watchlists")
utils_mod = pytest.importorskip("tastytrade.utils")

TOKEN = "sdk-access-token-3e9"
WAIT_S = 10.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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
                await anyio.sleep(WAIT_S)
    finally:
        close_sdk_queues(streamer)
    errors = list(_leaves(info.value))
    assert any(isinstance(e, utils_mod.TastytradeError) and "failed" in str(e) for e in errors), (
        errors
    )
