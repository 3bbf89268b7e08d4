"""Reconciling the account stream against REST (FIELD_REPORTS #13): the simulated REST API serves
what the simulated book published, the SDK's own calls read it, and the recorder records what
the stream did not say — at connect, after a reconnect and on its timer — marked
``from_snapshot``, once, on the replay timeline.

Everything over loopback: the DXLink and account simulators on one market, the fake REST API
wired to the account simulator, tastyrec's OAuth :class:`~tastyrec.session.Session` against it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import polars as pl
import pytest

from tastyrec.account import AlertStreamer
from tastyrec.events.account import AccountBalance, PlacedOrder
from tastyrec.record.recorder import Recorder
from tastyrec.replay.streamer import ReplayStreamer
from tastyrec.session import Session
from tastyrec.sim.account import AccountSimulator, open_simulators
from tastyrec.sim.brokerage import AccountSimConfig
from tastyrec.sim.rest import ApiSimulator
from tests.integration.waits import WAIT_S, fast_delays, wait_until

pytestmark = pytest.mark.anyio

FAST = AccountSimConfig(step_s=0.02, fill_step_s=0.02)




@dataclass
class Env:
    acct: AccountSimulator
    api: ApiSimulator
    rest: Session
    alerts: AlertStreamer
    out: Path

    def recorder(self, every_s: float | None = None) -> Recorder:
        return Recorder(
            self.out,
            account_streamer=self.alerts,
            account_session=self.rest,
            reconcile_every_s=every_s,
        )

    async def subscribe(self) -> None:
        await self.alerts.subscribe_accounts([self.acct.account_number])

    def book_order(self, oid: int) -> PlacedOrder | None:
        return self.acct.book.rest_orders.get(oid)

    def table(self, name: str) -> pl.DataFrame:
        return pl.read_parquet(self.out / name / "*" / "*.parquet").sort("recv_ns")


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with open_simulators(
        dxlink_token=None, account_token=None, order_every_s=None, account_config=FAST
    ) as (dx, acct):
        async with (
            ApiSimulator(dxlink=dx, account=acct) as api,
            Session(api.client_secret, api.refresh_token, api_url=api.url) as rest,
            AlertStreamer(
                url=acct.url, token="t", reconnect_delays=fast_delays, reply_timeout=WAIT_S
            ) as alerts,
        ):
            yield Env(acct, api, rest, alerts, tmp_path / "rec")


def is_filled(order: Any) -> bool:
    return order is not None and order.status == "Filled"


def fill_quantity(order: Any) -> Decimal:
    return sum((f.quantity for leg in order.legs for f in leg.fills), Decimal(0))


def runs(recorder: Recorder, reason: str) -> list[Any]:
    """The finished reconciliation runs of one reason."""
    return [r for r in recorder.reconciliations if r.reason == reason and r.ended_ns is not None]


# --- the simulated endpoints, read by the SDK's own calls ------------------------------------


async def test_sdk_account_calls_read_the_simulated_book(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    session_mod = pytest.importorskip("tastytrade.session")
    account_mod = pytest.importorskip("tastytrade.account")
    monkeypatch.setattr(session_mod, "API_URL", env.api.url)
    oid = await env.acct.place_order([("SPY", "Buy to Open", 3)])
    await wait_until(lambda: is_filled(env.book_order(oid)))
    await wait_until(lambda: ("5WT00000", "SPY") in env.acct.book.rest_positions)
    async with session_mod.Session(env.api.client_secret, env.api.refresh_token) as sdk:
        [account] = await account_mod.Account.get(sdk)
        orders = await account.get_live_orders(sdk)
        positions = await account.get_positions(sdk)
        balance = await account.get_balances(sdk)
    [order] = orders
    assert (order.id, order.status) == (oid, "Filled")
    assert sum(f.quantity for f in order.legs[0].fills) == 3
    [position] = positions
    assert (position.symbol, position.quantity, position.quantity_direction) == ("SPY", 3, "Long")
    book = env.acct.book
    assert balance.cash_balance == book.cash[account.account_number]  # exact: Decimal
    assert balance.cash_balance < book.config.starting_cash
    assert env.api.calls["GET /accounts/balances"] == 1  # the SDK's /balances/USD path


async def test_simulated_endpoints_refuse_unknown_accounts_and_tokens(env: Env) -> None:
    from tastyrec.exceptions import ApiError

    with pytest.raises(ApiError):
        await env.rest.get("/accounts/5WT99999/positions")
    data = await env.rest.get("/accounts/5WT00000/orders/live")
    assert data["items"] == []


# --- reconciliation in the recorder -----------------------------------------------------------


async def test_connect_records_the_state_the_stream_never_sent_as_snapshot_rows(env: Env) -> None:
    """An order filled before the recorder subscribed: the stream replays nothing, so only
    the reconciliation at connect can record the order, its position and the balance."""
    oid = await env.acct.place_order([("SPY", "Buy to Open", 5)])
    await wait_until(lambda: is_filled(env.book_order(oid)))
    await wait_until(lambda: ("5WT00000", "SPY") in env.acct.book.rest_positions)
    async with env.recorder() as recorder:
        await env.subscribe()
        await wait_until(lambda: runs(recorder, "connect") and recorder.reconciliations[0].rows)
    [run] = recorder.reconciliations
    assert run.error is None and run.rows == 3
    orders = env.table("PlacedOrder")
    assert orders["from_snapshot"].to_list() == [True]
    assert orders["event_time"].to_list() == [None]
    assert (orders["id"][0], orders["status"][0]) == (oid, "Filled")
    positions = env.table("CurrentPosition")
    assert positions["from_snapshot"].to_list() == [True]
    assert positions["quantity"][0] == Decimal(5)
    balances = env.table("AccountBalance")
    assert balances["cash_balance"].to_list() == [env.acct.book.cash["5WT00000"]]


async def test_a_dropped_fill_is_found_by_the_reconciliation_after_a_reconnect(env: Env) -> None:
    """The simulator drops the order's Filled notification (the last fill); the stream says
    it is Live and partly filled. After the account stream reconnects, the recording holds the
    order's final state, Filled with every fill, marked from_snapshot; what the stream did say
    (the position and balance that followed) is not recorded again."""
    env.acct.drop_notifications("Order", when=lambda o: o.status == "Filled")
    async with env.recorder() as recorder:
        await env.subscribe()
        await wait_until(lambda: runs(recorder, "connect"))
        oid = await env.acct.place_order([("SPY", "Buy to Open", 4)])
        await wait_until(lambda: env.acct.dropped)
        # the position and balance after the fill came through the stream (the balance after
        # the starting one the connect snapshot recorded)
        await wait_until(lambda: recorder.stats.rows["CurrentPosition"] >= 1)
        await wait_until(lambda: recorder.stats.rows["AccountBalance"] >= 2)
        await env.acct.drop()
        await wait_until(lambda: runs(recorder, "reconnect"))
    [dropped] = env.acct.dropped
    assert isinstance(dropped.payload, PlacedOrder)
    assert dropped.payload.id == oid and dropped.payload.status == "Filled"
    orders = env.table("PlacedOrder").filter(pl.col("id") == oid)
    stream = orders.filter(~pl.col("from_snapshot"))
    assert "Filled" not in stream["status"].to_list()  # the stream never said it
    last = orders.row(-1, named=True)
    assert (last["status"], last["from_snapshot"]) == ("Filled", True)
    assert sum(f["quantity"] for leg in last["legs"] for f in leg["fills"]) == Decimal(4)
    [reconnect] = runs(recorder, "reconnect")
    assert reconnect.rows == 1  # the order; position and balance were said by the stream
    positions = env.table("CurrentPosition")
    assert positions["from_snapshot"].to_list() == [False]


async def test_the_timer_reconciles_without_a_reconnect(env: Env) -> None:
    env.acct.drop_notifications("Order", when=lambda o: o.status == "Filled")
    async with env.recorder(every_s=0.2) as recorder:
        await env.subscribe()
        oid = await env.acct.place_order([("QQQ", "Buy to Open", 2)])
        await wait_until(lambda: env.acct.dropped)
        await wait_until(lambda: any(r.rows for r in runs(recorder, "timer")))
        assert env.alerts.stats.connects == 1  # no reconnect helped
    orders = env.table("PlacedOrder").filter(pl.col("id") == oid)
    last = orders.row(-1, named=True)
    assert (last["status"], last["from_snapshot"]) == ("Filled", True)
    assert orders.filter(pl.col("status") == "Filled").height == 1  # later timer runs: no news


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


ACCOUNT_TABLES = ("PlacedOrder", "CurrentPosition", "AccountBalance", "ExternalTransaction")


async def test_nothing_is_recorded_twice_when_the_stream_said_it(env: Env) -> None:
    """Orders (a multi-leg one too), positions and balances the stream delivered are not news:
    reconciliations after them (the timer, on an injected clock, and a reconnect) record
    nothing, and every snapshot row in the files is counted by a run."""
    clock = FakeClock()
    recorder = Recorder(
        env.out,
        account_streamer=env.alerts,
        account_session=env.rest,
        reconcile_every_s=60.0,
        clock=clock,
    )
    book = env.acct.book
    async with recorder:
        await env.subscribe()
        await wait_until(lambda: runs(recorder, "connect"))
        ids = [
            await env.acct.place_order([("SPY", "Buy to Open", 3)]),
            await env.acct.place_order([("QQQ", "Buy to Open", 10), ("SPY", "Buy to Open", 2)]),
        ]
        await env.acct.deposit("250.00")
        await wait_until(lambda: all(is_filled(env.book_order(i)) for i in ids))
        await wait_until(lambda: ("5WT00000", "QQQ") in book.rest_positions)
        # every notification the book sent, and the connect snapshot, is in the recording
        await wait_until(
            lambda: (
                sum(recorder.stats.rows[t] for t in ACCOUNT_TABLES)
                >= len(book.published) + runs(recorder, "connect")[0].rows
            )
        )
        assert runs(recorder, "timer") == []  # the clock has not moved
        clock.now += 61.0
        await wait_until(lambda: runs(recorder, "timer"))
        await env.acct.drop()
        await wait_until(lambda: runs(recorder, "reconnect"))
    later = [r for r in recorder.reconciliations if r.reason != "connect"]
    assert [r.reason for r in later] == ["timer", "reconnect"]
    assert all(r.rows == 0 and r.error is None for r in later)
    [connect] = runs(recorder, "connect")
    assert connect.rows == 1  # the starting balance, which the stream never sends
    snapshot_rows = sum(
        env.table(name)["from_snapshot"].sum()
        for name in ("PlacedOrder", "CurrentPosition", "AccountBalance")
    )
    assert snapshot_rows == 1


async def test_replay_delivers_snapshot_rows_in_their_place_on_the_timeline(env: Env) -> None:
    env.acct.drop_notifications("Order", when=lambda o: o.status == "Filled")
    async with env.recorder() as recorder:
        await env.subscribe()
        await wait_until(lambda: runs(recorder, "connect"))
        oid = await env.acct.place_order([("SPY", "Buy to Open", 2)])
        await wait_until(lambda: env.acct.dropped)
        await wait_until(lambda: recorder.stats.rows["AccountBalance"] >= 2)
        await env.acct.drop()
        await wait_until(lambda: runs(recorder, "reconnect"))
        await env.acct.deposit("10")  # a stream event after the reconciliation
        await wait_until(lambda: recorder.stats.rows["AccountBalance"] >= 3)
    async with ReplayStreamer(env.out) as replay:
        await replay.subscribe_accounts([env.acct.account_number])
        with anyio.fail_after(WAIT_S):
            got = [e async for e in replay.listen(PlacedOrder, AccountBalance)]
    kinds = [
        (type(e).__name__, getattr(e, "status", None))
        for e in got
        if isinstance(e, AccountBalance) or e.id == oid
    ]
    # the starting balance (snapshot at connect), the order's stream walk up to Live, the
    # balance after the fill, then the snapshot's Filled order, then the deposit's balance
    assert kinds[0] == ("AccountBalance", None)
    filled = kinds.index(("PlacedOrder", "Filled"))
    assert ("PlacedOrder", "Live") in kinds[:filled]
    assert kinds[filled + 1 :] == [("AccountBalance", None)]
    assert kinds.count(("PlacedOrder", "Filled")) == 1
    recv = env.table("PlacedOrder").filter(pl.col("id") == oid)["recv_ns"].to_list()
    assert recv == sorted(recv)


async def test_a_failing_rest_api_is_retried_at_the_next_trigger(env: Env) -> None:
    env.api.fail("GET /accounts/orders/live", 400, times=1)  # not retried by the session
    async with env.recorder(every_s=0.1) as recorder:
        await env.subscribe()
        await wait_until(lambda: len([r for r in recorder.reconciliations if r.ended_ns]) >= 2)
    first, second = recorder.reconciliations[:2]
    assert first.error is not None and first.rows == 0
    assert "sim-access" not in first.error  # no token in the message
    assert second.error is None and second.rows == 1  # the balance, at last


async def test_with_every_third_order_notification_dropped_each_order_ends_as_the_book_ended_it(
    tmp_path: Path,
) -> None:
    """The chaos option (``AccountSimConfig.drop_order_every``): whatever the stream lost, the
    last recorded state of every order (stream or snapshot) is the book's, once the timer has
    reconciled after the orders ended."""
    config = AccountSimConfig(step_s=0.02, fill_step_s=0.02, drop_order_every=3)
    async with open_simulators(
        dxlink_token=None, account_token=None, order_every_s=None, account_config=config
    ) as (dx, acct):
        async with (
            ApiSimulator(dxlink=dx, account=acct) as api,
            Session(api.client_secret, api.refresh_token, api_url=api.url) as rest,
            AlertStreamer(url=acct.url, token="t", reply_timeout=WAIT_S) as alerts,
        ):
            clock = FakeClock()
            env = Env(acct, api, rest, alerts, tmp_path / "rec")
            recorder = Recorder(
                env.out,
                account_streamer=alerts,
                account_session=rest,
                reconcile_every_s=60.0,
                clock=clock,
            )
            async with recorder:
                await env.subscribe()
                await wait_until(lambda: runs(recorder, "connect"))  # its timer starts after it
                ids = [
                    await acct.place_order([("SPY", "Buy to Open", 4)]),
                    await acct.place_order([("QQQ", "Buy to Open", 3), ("IWM", "Buy to Open", 2)]),
                    await acct.place_order([("SPY", "Buy to Open", 1)], reject_reason="no"),
                ]
                await wait_until(
                    lambda: all(
                        (o := env.book_order(i)) is not None and o.status in ("Filled", "Rejected")
                        for i in ids
                    )
                )
                clock.now += 61.0
                await wait_until(lambda: runs(recorder, "timer"))
    assert acct.dropped  # the chaos did drop order notifications
    orders = env.table("PlacedOrder")
    for oid in ids:
        last = orders.filter(pl.col("id") == oid).row(-1, named=True)
        book = acct.book.rest_orders[oid]
        assert last["status"] == book.status
        fills = sorted(f["fill_id"] for leg in last["legs"] for f in leg["fills"])
        assert fills == sorted(f.fill_id for leg in book.legs for f in leg.fills)


async def test_simulate_drops_order_notifications_when_asked(cli: Any) -> None:
    """`tastyrec simulate --drop-order-every 1`: a client gets the account's balances and
    positions after fills, but no Order notification at all (without the option it has had
    several by the first balance)."""
    proc = cli.start("simulate", "--order-every", "200ms", "--drop-order-every", "1")
    text = proc.wait_for("the api line", lambda: "api " in proc.stdout and proc.stdout)
    urls = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
    async with AlertStreamer(url=urls["account"], token="sim-token") as streamer:
        assert streamer.queued(PlacedOrder) == 0  # its queue exists before anything arrives
        await streamer.subscribe_accounts([urls["account-number"]])
        with anyio.fail_after(WAIT_S):  # a fill moved the balance: orders were placed
            await streamer.get_event(AccountBalance)
        assert streamer.queued(PlacedOrder) == 0
