"""AlertStreamer against the account simulator over loopback websockets."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import connect as ws_connect

from tastyrec.account import AlertStreamer
from tastyrec.events.account import (
    AccountBalance,
    CurrentPosition,
    ExternalTransaction,
    PlacedComplexOrder,
    PlacedOrder,
    QuoteAlert,
    TradingStatus,
    UnderlyingYearGainSummary,
    UnknownNotification,
    Watchlist,
)
from tastyrec.exceptions import LocalProtocolError, RequestError
from tastyrec.sim.account import AccountSimulator, open_simulators
from tastyrec.sim.account_server import AccountServerConnection
from tastyrec.sim.brokerage import AccountSimConfig
from tests.integration.manual_time import ManualTime, Reconnects
from tests.integration.waits import WAIT_S, fast_delays, wait_until

pytestmark = pytest.mark.anyio

TOKEN = "acct-token-7c1e5b"  # distinctive, so a leak is easy to spot
FAST = AccountSimConfig(step_s=0.01, fill_step_s=0.01)


@pytest.fixture
async def sim() -> AsyncIterator[AccountSimulator]:
    async with AccountSimulator(token=TOKEN, order_every_s=None, config=FAST) as server:
        yield server


def make_streamer(server: AccountSimulator, **kwargs: Any) -> AlertStreamer:
    options: dict[str, Any] = {
        "url": server.url,
        "token": TOKEN,
        "connect_timeout": WAIT_S,
        "reply_timeout": WAIT_S,
        "reconnect_delays": fast_delays,
        **kwargs,
    }
    return AlertStreamer(**options)


async def until_status(streamer: AlertStreamer, order_id: int, status: str) -> list[PlacedOrder]:
    seen = []
    async for order in streamer.listen(PlacedOrder):
        if order.id == order_id:
            seen.append(order)
            if order.status == status:
                return seen
    raise AssertionError("unreachable")


class FakeAccount:
    """What subscribe_accounts uses of the SDK's Account."""

    def __init__(self, number: str) -> None:
        self.account_number = number


async def test_every_notification_type_through_listen(
    sim: AccountSimulator, monkeypatch: pytest.MonkeyPatch
):
    # a still market: the sell realizes a loss (bid < the buy's ask), so a gain summary is
    # published; on the moving one it sold at exactly the buy's price in ~5% of runs (no summary)
    monkeypatch.setattr(sim.book.market, "bid_ask", lambda symbol, t_ms: (100.0, 100.02))
    async with make_streamer(sim) as streamer:
        await streamer.subscribe_accounts([FakeAccount(sim.account_number)])
        await streamer.subscribe_public_watchlists()
        await streamer.subscribe_quote_alerts()
        with anyio.fail_after(WAIT_S):
            oid = await sim.place_order([("SPY", "Buy to Open", 10)])
            await until_status(streamer, oid, "Filled")
            oid = await sim.place_order([("SPY", "Sell to Close", 4)])
            await until_status(streamer, oid, "Filled")
            await sim.place_complex_order(
                "OCO",
                [
                    {"legs": [("QQQ", "Buy to Open", 1)], "order_type": "Limit", "price": -1},
                    {"legs": [("QQQ", "Buy to Open", 1)], "order_type": "Limit", "price": -2},
                ],
            )
            await sim.deposit("2500.00")
            await sim.update_trading_status(is_closing_only=True)
            await sim.trigger_quote_alert("AAPL", "250")
            await sim.publish_watchlist("Tech", ["AAPL", "MSFT"])
            await sim.send_notification("OrderChain", {"id": 77})

            position = await streamer.get_event(CurrentPosition)
            assert position.symbol == "SPY" and position.quantity == 10
            balance = await streamer.get_event(AccountBalance)
            assert balance.account_number == sim.account_number
            summary = await streamer.get_event(UnderlyingYearGainSummary)
            assert summary.symbol == "SPY"
            complex_order = await streamer.get_event(PlacedComplexOrder)
            assert complex_order.type == "OCO" and len(complex_order.orders) == 2
            tx = await streamer.get_event(ExternalTransaction)
            assert tx.amount == Decimal("2500.00") and tx.direction == "Incoming"
            status = await streamer.get_event(TradingStatus)
            assert status.is_closing_only is True
            alert = await streamer.get_event(QuoteAlert)
            assert alert.symbol == "AAPL" and alert.threshold_numeric == Decimal(250)
            watchlist = await streamer.get_event(Watchlist)
            assert watchlist.name == "Tech"
            unknown = await streamer.get_event(UnknownNotification)
            assert unknown.type == "OrderChain" and unknown.data == {"id": 77}
        assert streamer.stats.unknown == {"OrderChain": 1}
        with pytest.raises(LocalProtocolError):
            await streamer.get_event(int)  # type: ignore[type-var]
    # every message carried the REST Authorization value and a distinct request id
    assert {r.auth_token for r in sim.received} == {f"Bearer {TOKEN}"}
    ids = [r.request_id for r in sim.received]
    assert len(set(ids)) == len(ids) and None not in ids


async def test_order_lifecycles_cancel_reject_and_consistent_balance(sim: AccountSimulator):
    async with make_streamer(sim) as streamer:
        await streamer.subscribe_accounts([sim.account_number])
        with anyio.fail_after(WAIT_S):
            oid = await sim.place_order([("AAPL", "Buy to Open", 100)])
            seen = await until_status(streamer, oid, "Filled")
            assert [o.status for o in seen[:4]] == ["Received", "Routed", "In Flight", "Live"]
            assert [len(o.legs[0].fills) for o in seen[4:]] == [1, 2]  # one message per fill
            fills = seen[-1].legs[0].fills
            position = await streamer.get_event(CurrentPosition)
            balance = await streamer.get_event(AccountBalance)
            cost = sum(f.quantity * f.fill_price for f in fills)
            assert position.quantity == 100 and position.quantity_direction == "Long"
            assert balance.cash_balance == Decimal(100000) - cost
            assert balance.net_liquidating_value == balance.cash_balance + (
                balance.long_equity_value
            )

            resting = await sim.place_order(
                [("SPY", "Buy to Open", 1)], order_type="Limit", price="-1.00"
            )
            await until_status(streamer, resting, "Live")
            await sim.cancel(resting)
            seen = await until_status(streamer, resting, "Cancelled")
            assert [o.status for o in seen] == ["Cancel Requested", "Cancelled"]

            doomed = await sim.place_order([("SPY", "Buy to Open", 1)])
            await sim.reject(doomed, "Insufficient buying power")
            seen = await until_status(streamer, doomed, "Rejected")
            assert seen[-1].reject_reason == "Insufficient buying power"


async def test_wrong_token_raises_at_the_call():
    async with AccountSimulator(token=TOKEN, order_every_s=None) as server:
        async with make_streamer(server, token="not-the-token") as streamer:
            with anyio.fail_after(WAIT_S), pytest.raises(RequestError) as info:
                await streamer.subscribe_accounts(["5WT00000"])
            assert info.value.action == "connect" and info.value.message == "failed"
            assert "Bearer <access token>" in str(info.value)
            assert "not-the-token" not in str(info.value)
            assert streamer.connected  # the server keeps the socket open
            streamer.set_token(TOKEN)
            await streamer.subscribe_accounts(["5WT00000"])
            assert streamer.session_id is not None and len(streamer.session_id) == 8


async def test_reconnect_restores_subscriptions_then_calls_back(sim: AccountSimulator):
    calls: list[tuple[Any, ...]] = []
    disconnected = anyio.Event()
    reconnected = anyio.Event()

    async def on_disconnect(streamer: AlertStreamer, *args: Any) -> None:
        calls.append(("disconnect", streamer, *args))
        disconnected.set()

    async def on_reconnect(streamer: AlertStreamer, *args: Any) -> None:
        # subscriptions are back before this runs
        calls.append(("reconnect", streamer, *args, streamer.connected))
        reconnected.set()

    async with make_streamer(
        sim,
        disconnect_fn=on_disconnect,
        disconnect_args=("d",),
        reconnect_fn=on_reconnect,
        reconnect_args=("a", 2),
    ) as streamer:
        await streamer.subscribe_accounts([sim.account_number])
        await streamer.subscribe_quote_alerts()
        first_session = streamer.session_id
        before = len(sim.received)
        with anyio.fail_after(WAIT_S):
            await sim.drop()
            await disconnected.wait()
            await reconnected.wait()
        assert calls == [
            ("disconnect", streamer, "d"),
            ("reconnect", streamer, "a", 2, True),
        ]
        restored = [(r.action, r.value) for r in sim.received[before:]]
        assert restored[:2] == [
            ("connect", [sim.account_number]),
            ("quote-alerts-subscribe", None),
        ]
        assert streamer.session_id != first_session
        assert (streamer.stats.connects, streamer.stats.disconnects) == (2, 1)
        with anyio.fail_after(WAIT_S):
            oid = await sim.place_order([("SPY", "Buy to Open", 1)])
            await until_status(streamer, oid, "Filled")
            await sim.trigger_quote_alert("SPY", 1)
            assert (await streamer.get_event(QuoteAlert)).symbol == "SPY"


async def test_subscribe_during_an_outage_waits_for_the_restore(sim: AccountSimulator):
    down, release = anyio.Event(), anyio.Event()

    async def on_disconnect(streamer: AlertStreamer) -> None:
        down.set()
        await release.wait()  # the next connection is made only after this returns

    async with make_streamer(sim, disconnect_fn=on_disconnect) as s:
        await s.subscribe_public_watchlists()
        with anyio.fail_after(WAIT_S):
            await sim.drop()
            await down.wait()
            assert not s.connected
            async with anyio.create_task_group() as tg:
                tg.start_soon(s.subscribe_accounts, [sim.account_number])  # sent by the restore
                await wait_until(lambda: sim.account_number in s.protocol.subscriptions.accounts)
                assert not s.connected
                release.set()
            assert s.connected
            oid = await sim.place_order([("SPY", "Buy to Open", 1)])
            await until_status(s, oid, "Received")
        connects = [r for r in sim.received if r.action == "connect"]
        assert len(connects) == 1  # only in the restore, not also on its own


async def test_heartbeats_carry_the_token_and_are_answered(sim: AccountSimulator):
    """On a clock the test moves: a heartbeat every ``heartbeat_interval`` exactly, and the
    replies keep the watchdog (``heartbeat_interval + reply_timeout`` = 30 s) quiet for 60 s."""
    t = ManualTime()
    async with make_streamer(
        sim, heartbeat_interval=20.0, reply_timeout=10.0, clock=t.clock, sleep=t.sleep
    ) as streamer:
        assert t.deadlines() == [20.0, 30.0]  # the first heartbeat; the watchdog
        for beat in (1, 2, 3):
            frames = streamer.stats.frames
            t.advance(20.0)
            await wait_until(
                lambda: streamer.stats.frames > frames  # noqa: B023 (its reply)
                and 20.0 * (beat + 1) in t.deadlines()  # noqa: B023 (the next one)
            )
            assert streamer.stats.heartbeats == beat
        assert streamer.stats.error_replies == 0
        assert streamer.stats.disconnects == 0  # 60 s on its clock: the replies kept it up
        beats = [r for r in sim.received if r.action == "heartbeat"]
        assert len(beats) == 3 and all(r.auth_token == f"Bearer {TOKEN}" for r in beats)


def mute_replies(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The simulator stops answering requests while ``muted[0]`` is True (it still reads them)."""
    muted = [False]
    real_reply = AccountServerConnection._reply

    def reply(self: AccountServerConnection, message: dict[str, Any]) -> None:
        if not muted[0]:
            real_reply(self, message)

    monkeypatch.setattr(AccountServerConnection, "_reply", reply)
    return muted


async def test_a_request_not_answered_times_out_on_the_streamers_clock(
    sim: AccountSimulator, monkeypatch: pytest.MonkeyPatch
):
    """On a clock the test moves: a subscribe the server never answers raises ``TimeoutError``
    exactly ``reply_timeout`` after it was sent, not a moment earlier (no real waiting)."""
    muted = mute_replies(monkeypatch)
    t = ManualTime()
    async with make_streamer(
        sim, heartbeat_interval=20.0, reply_timeout=10.0, clock=t.clock, sleep=t.sleep
    ) as streamer:
        muted[0] = True
        failed = anyio.Event()
        errors: list[BaseException] = []

        async def subscribe() -> None:
            try:
                await streamer.subscribe_quote_alerts()
            except TimeoutError as exc:
                errors.append(exc)
            failed.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(subscribe)
            sent = ("quote-alerts-subscribe", None)
            await wait_until(lambda: sent in [(r.action, r.value) for r in sim.received])
            await wait_until(lambda: 10.0 in t.deadlines())  # the reply timeout's deadline
            t.advance(9.9)
            await anyio.wait_all_tasks_blocked()
            assert not failed.is_set()
            t.advance(0.1)
            with anyio.fail_after(WAIT_S):
                await failed.wait()
        assert "no reply to 'quote-alerts-subscribe' within 10.0 s" in str(errors[0])
        assert not streamer._waiters  # the timed-out request is forgotten
        assert streamer.stats.disconnects == 0  # a request timing out does not drop the link


async def test_a_restore_not_answered_makes_a_new_connection_on_the_streamers_clock(
    sim: AccountSimulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    """On a clock the test moves: after a drop, a restore the server never answers is given up
    ``reply_timeout`` later (a gap, a new connection), and the next answered restore ends it."""
    muted = mute_replies(monkeypatch)
    t = ManualTime()
    async with make_streamer(
        sim, heartbeat_interval=20.0, reply_timeout=10.0, clock=t.clock, sleep=t.sleep
    ) as streamer:
        reconnects = Reconnects(streamer)
        await streamer.subscribe_accounts([sim.account_number])
        muted[0] = True
        await sim.drop()
        # the new connection sent its restoring connect, which is not answered
        await wait_until(lambda: sim.connection_count == 1 and streamer.stats.disconnects == 1)
        await wait_until(lambda: sum(r.action == "connect" for r in sim.received) == 2)
        await wait_until(lambda: t.now + 10.0 in t.deadlines())
        t.advance(9.9)
        await anyio.wait_all_tasks_blocked()
        assert streamer.stats.disconnects == 1 and not streamer.connected
        muted[0] = False  # the next connection's restore is answered
        t.advance(0.1)
        await reconnects.wait(1, WAIT_S)
        assert streamer.stats.disconnects == 2 and streamer.stats.connects == 2
        assert len(streamer.gaps) == 1 and streamer.gaps[0].resumed_ns is not None
        assert streamer.connected
        assert sum(r.action == "connect" for r in sim.received) == 3
    assert "lost: no reply to the restoring requests within 10.0 s" in caplog.text


async def test_malformed_frames_and_payloads_are_counted_not_fatal(sim: AccountSimulator):
    async with make_streamer(sim) as streamer:
        await streamer.subscribe_accounts([sim.account_number])
        await sim.send_raw("this is not JSON {")
        await sim.send_raw('{"type":"Order","data":' + "[" * 1000 + "]" * 1000 + "}")  # too deep
        await sim.send_notification("Order", {"id": "bad"})
        with anyio.fail_after(WAIT_S):
            oid = await sim.place_order([("SPY", "Buy to Open", 1)])
            await until_status(streamer, oid, "Received")
        assert streamer.stats.bad_frames == 3
        assert streamer.stats.skipped == {"bad Order": 1}


async def test_tokens_never_reach_the_logs(sim: AccountSimulator, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    # a token in the URL too (userinfo and query) is redacted by the same helper as DXLink's
    url = f"ws://me:{TOKEN}@127.0.0.1:{sim.port}/?token={TOKEN}"
    async with make_streamer(sim, url=url) as streamer:
        await streamer.subscribe_accounts([sim.account_number])
        await streamer.subscribe_quote_alerts()
        assert TOKEN not in repr(streamer)
        await sim.drop()
        await wait_until(lambda: streamer.stats.connects == 2)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "auth-token" in text  # frames were logged...
    assert "GET /?token=<redacted> HTTP/1.1" in text and "lost" in text  # ...the URL too...
    assert TOKEN not in text  # ...without the token


async def test_simulators_run_together_on_one_market():
    async with open_simulators(order_every_s=0.05, account_config=FAST) as (dx, acct):
        assert acct.market is dx.market
        assert dx.url.startswith("ws://127.0.0.1:") and acct.url.startswith("ws://127.0.0.1:")
        async with make_streamer(acct, token="sim-token") as streamer:
            await streamer.subscribe_accounts([acct.account_number])
            first_status: dict[int, str] = {}
            with anyio.fail_after(WAIT_S):
                # orders the simulator places by itself; the first may be under way already
                async for order in streamer.listen(PlacedOrder):
                    first_status.setdefault(order.id, order.status)
                    if first_status[order.id] == "Received" and order.status != "Received":
                        break  # one seen from its start, and moving on
        assert order.account_number == acct.account_number


async def test_tap_gives_every_notification_with_its_times(sim: AccountSimulator):
    async with make_streamer(sim) as streamer:
        tap = streamer.tap()
        await streamer.subscribe_accounts([sim.account_number])
        with anyio.fail_after(WAIT_S):
            oid = await sim.place_order([("SPY", "Buy to Open", 1)])
            await until_status(streamer, oid, "Filled")
            await streamer.get_event(AccountBalance)
    with tap:
        taken = [item async for item in tap]  # ends when the streamer closes
    names = [n.type_name for n in taken]
    assert names[:4] == ["Order"] * 4 and names[-2:] == ["CurrentPosition", "AccountBalance"]
    assert all(n.timestamp_ms and n.recv_ns > n.timestamp_ms * 1_000_000 - 10**9 for n in taken)
    assert [n.recv_ns for n in taken] == sorted(n.recv_ns for n in taken)


async def test_an_account_the_session_does_not_own_raises_at_the_call(sim: AccountSimulator):
    reconnected = anyio.Event()

    async def on_reconnect(streamer: AlertStreamer) -> None:
        reconnected.set()

    async with make_streamer(sim, reconnect_fn=on_reconnect) as streamer:
        with anyio.fail_after(WAIT_S), pytest.raises(RequestError) as info:
            await streamer.subscribe_accounts(["5WT99999"])
        assert info.value.action == "connect"
        assert info.value.message == "unauthorized account '5WT99999'"
        await streamer.subscribe_accounts([sim.account_number])  # the socket is still good
        with anyio.fail_after(WAIT_S):
            oid = await sim.place_order([("SPY", "Buy to Open", 1)])
            await until_status(streamer, oid, "Filled")
            before = len(sim.received)
            await sim.drop()
            await reconnected.wait()  # the refused account is not asked for again
        assert [(r.action, r.value) for r in sim.received[before:]] == [
            ("connect", [sim.account_number])
        ]


async def test_a_client_that_only_pings_stays_connected_and_a_silent_one_is_cut():
    """FIELD_REPORTS #14: websocket pings are activity. Simulated time (the injected clock) moves
    200 s in 20 s steps, one ping after each; the silent client is cut by the same pump pass
    that finds the pinging one alive."""
    now = [1_795_000_000.0]
    async with AccountSimulator(
        token=TOKEN, order_every_s=None, config=FAST, clock=lambda: now[0]
    ) as server:
        hello = {"action": "connect", "value": [server.account_number], "request-id": 1}
        hello["auth-token"] = f"Bearer {TOKEN}"
        async with (
            ws_connect(server.url, ping_interval=None) as pinger,
            ws_connect(server.url, ping_interval=None) as silent,
        ):
            with anyio.fail_after(WAIT_S):
                for ws in (pinger, silent):
                    await ws.send(json.dumps(hello))
                    assert json.loads(await ws.recv())["status"] == "ok"
                for _ in range(10):
                    now[0] += 20
                    await (await pinger.ping())  # the pong: the server has seen the ping
                await silent.wait_closed()
                assert (silent.close_code, silent.close_reason) == (1000, "idle timeout")
                await pinger.send(json.dumps({**hello, "action": "heartbeat", "request-id": 2}))
                reply = json.loads(await pinger.recv())
            assert (reply["action"], reply["status"]) == ("heartbeat", "ok")


async def test_subscribe_accounts_returns_once_the_server_confirmed(sim: AccountSimulator):
    """FIELD_REPORTS #12: an order placed the moment subscribe_accounts returns is not lost
    (its first notification, ``Received``, is published at once, while placing it)."""
    async with make_streamer(sim) as streamer:
        with anyio.fail_after(WAIT_S):
            await streamer.subscribe_accounts([sim.account_number])
            assert streamer.protocol.pending == {}  # the reply came in
            oid = await sim.place_order([("SPY", "Buy to Open", 1)])
            first = await streamer.get_event(PlacedOrder)
    assert (first.id, first.status) == (oid, "Received")


async def test_a_failure_handling_a_frame_closes_the_simulator_with_1011(
    sim: AccountSimulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    def broken(self: Any, raw: Any, now: float) -> None:
        raise KeyError("simulated bug")

    monkeypatch.setattr(AccountServerConnection, "receive_text", broken)
    async with ws_connect(sim.url, ping_interval=None) as ws:
        with anyio.fail_after(WAIT_S):
            await ws.send(json.dumps({"action": "heartbeat", "auth-token": f"Bearer {TOKEN}"}))
            await ws.wait_closed()
    assert (ws.close_code, ws.close_reason) == (1011, "simulator failure")
    assert isinstance(sim.failed, KeyError)
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        "= account simulator failed and stopped serving (KeyError: 'simulated bug')"
    ]
    with pytest.raises(OSError):  # it no longer listens
        async with ws_connect(sim.url, open_timeout=WAIT_S):
            pass
