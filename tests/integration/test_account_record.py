"""Recording the account streamer beside market data, querying it, replaying it interleaved.

Everything over loopback against the simulators (:func:`tastyrec.sim.account.open_simulators`:
the DXLink and account simulators on one market, so fills are priced from the quotes streamed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import polars as pl
import pyarrow.parquet as pq
import pytest

import tastyrec
from tastyrec.account import AlertStreamer
from tastyrec.dxlink.streamer import DXLinkStreamer
from tastyrec.events.account import (
    AccountBalance,
    CurrentPosition,
    ExternalTransaction,
    FillInfo,
    Leg,
    PlacedOrder,
    UnknownNotification,
)
from tastyrec.events.market import Quote
from tastyrec.exceptions import SchemaError
from tastyrec.record.recorder import Recorder
from tastyrec.replay.streamer import ReplayStreamer
from tastyrec.sim.account import AccountSimulator, open_simulators
from tastyrec.sim.brokerage import AccountSimConfig
from tastyrec.sim.server import Simulator
from tests.integration.waits import WAIT_S, fast_delays, wait_until

pytestmark = pytest.mark.anyio

FAST = AccountSimConfig(step_s=0.02, fill_step_s=0.02)




@dataclass
class Session:
    dx: Simulator
    acct: AccountSimulator
    streamer: DXLinkStreamer
    alerts: AlertStreamer
    out: Path

    def recorder(self) -> Recorder:
        return Recorder(self.out, self.streamer, account_streamer=self.alerts)

    async def subscribe(self) -> None:
        await self.alerts.subscribe_accounts([self.acct.account_number])
        await self.streamer.subscribe(Quote, ["SPY", "QQQ"])


@pytest.fixture
async def session(tmp_path: Path) -> AsyncIterator[Session]:
    async with open_simulators(
        dxlink_token=None, account_token=None, order_every_s=None, account_config=FAST
    ) as (dx, acct):
        async with (
            DXLinkStreamer(url=dx.url, token=None) as streamer,
            AlertStreamer(
                url=acct.url, token="t", reconnect_delays=fast_delays, reply_timeout=WAIT_S
            ) as alerts,
        ):
            yield Session(dx, acct, streamer, alerts, tmp_path / "rec")


async def trade(s: Session, live: list[PlacedOrder]) -> list[int]:
    """Place a few orders (one multi-leg, one rejected) and wait until the live listener has
    seen every one of them end."""
    ids = [
        await s.acct.place_order([("SPY", "Buy to Open", 100)]),
        await s.acct.place_order([("QQQ", "Buy to Open", 10), ("SPY", "Sell to Close", 50)]),
        await s.acct.place_order([("SPY", "Buy to Open", 1)], reject_reason="no buying power"),
    ]
    await s.acct.deposit("1234.56")
    ended = {"Filled", "Rejected", "Cancelled"}
    with anyio.fail_after(WAIT_S):
        async for order in s.alerts.listen(PlacedOrder):
            live.append(order)
            done = {o.id for o in live if o.status in ended}
            if done >= set(ids):
                break
    return ids


async def test_orders_fills_and_quotes_are_recorded_queried_and_replayed_in_receipt_order(
    session: Session,
) -> None:
    s = session
    live: list[PlacedOrder] = []
    async with s.recorder() as recorder:
        await s.subscribe()
        await wait_until(lambda: recorder.stats.rows["Quote"] >= 4)  # a book to trade against
        await trade(s, live)
        with anyio.fail_after(WAIT_S):  # balances and positions follow the fills
            await s.alerts.get_event(CurrentPosition)
            await s.alerts.get_event(ExternalTransaction)
        quotes = recorder.stats.rows["Quote"]
        await wait_until(lambda: recorder.stats.rows["Quote"] >= quotes + 2)  # more after the fill
    # what the live listener has not taken yet was delivered live too
    while (order := s.alerts.get_event_nowait(PlacedOrder)) is not None:
        live.append(order)
    # the live frame of an account table
    frame = recorder.frame(PlacedOrder)
    assert frame.height == recorder.stats.rows["PlacedOrder"] == len(live)
    out = s.out

    # --- files: tables named after the classes, never DXLink's Order
    folders = {p.name for p in out.iterdir() if not p.name.startswith("_")}
    assert {"PlacedOrder", "AccountBalance", "CurrentPosition", "ExternalTransaction", "Quote"} <= (
        folders
    )
    assert "Order" not in folders
    [meta] = [pq.read_metadata(f).metadata for f in (out / "PlacedOrder").rglob("*.parquet")]
    assert meta[b"tastyrec.event_type"] == b"PlacedOrder"
    assert meta[b"tastyrec.stream"] == b"account"
    assert meta[b"tastyrec.accounts"] == s.acct.account_number.encode()

    # --- DuckDB: a view per account table; UNNEST over legs and fills; exact decimals
    con = tastyrec.connect(out)
    views = {
        r[0] for r in con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    }
    assert {"PlacedOrder", "AccountBalance", "CurrentPosition", "Quote"} <= views
    filled = con.sql(
        """
        SELECT o.id, l.symbol, f.fill_id, f.quantity, f.fill_price, typeof(f.fill_price)
        FROM (SELECT * FROM PlacedOrder WHERE status = 'Filled') AS o,
             UNNEST(o.legs) AS t(l), UNNEST(l.fills) AS u(f)
        ORDER BY o.id, f.fill_id
        """
    ).fetchall()
    expected = sorted(
        (o.id, leg.symbol, f.fill_id, f.quantity, f.fill_price)
        for o in live
        if o.status == "Filled"
        for leg in o.legs
        for f in leg.fills
    )
    assert [r[:5] for r in filled] == expected  # Decimal == Decimal: exact
    assert filled and {r[5] for r in filled} == {"DECIMAL(38,10)"}
    [(rejected,)] = con.sql(
        "SELECT reject_reason FROM PlacedOrder WHERE status = 'Rejected'"
    ).fetchall()
    assert rejected == "no buying power"
    [(cash,)] = con.sql("SELECT sum(amount) FROM ExternalTransaction").fetchall()
    assert cash == Decimal("1234.56")
    # receipt times on the same axis as the quotes
    [(first_q, last_q)] = con.sql(
        "SELECT epoch_ns(min(recv_ns)), epoch_ns(max(recv_ns)) FROM Quote"
    ).fetchall()
    [(first_o,)] = con.sql("SELECT epoch_ns(min(recv_ns)) FROM PlacedOrder").fetchall()
    assert first_q < first_o < last_q

    # --- replay: the same orders as live, interleaved with quotes in recorded order
    async with ReplayStreamer(out) as replay:
        await replay.subscribe_accounts([s.acct.account_number])
        await replay.subscribe(Quote, ["*"])
        with anyio.fail_after(WAIT_S):
            merged = [e async for e in replay.listen(Quote, PlacedOrder)]
    replayed = [e for e in merged if isinstance(e, PlacedOrder)]
    assert replayed == live  # every field, Decimals and nested fills included
    quotes = pl.read_parquet(out / "Quote" / "*" / "*.parquet")
    orders = pl.read_parquet(out / "PlacedOrder" / "*" / "*.parquet")
    timeline = sorted(
        [(t, 0, i) for i, t in enumerate(quotes["recv_ns"].dt.epoch("ns"))]
        + [(t, 1, i) for i, t in enumerate(orders["recv_ns"].dt.epoch("ns"))]
    )
    assert [(type(e) is PlacedOrder) for e in merged] == [k == 1 for _, k, _ in timeline]
    assert [e.event_symbol for e in merged if isinstance(e, Quote)] == quotes[
        "event_symbol"
    ].to_list()
    # a fill can be studied against the book it hit: a SPY quote came before the first fill
    first_fill = next(
        i for i, e in enumerate(merged) if isinstance(e, PlacedOrder) and e.status == "Filled"
    )
    assert any(isinstance(e, Quote) and e.event_symbol == "SPY" for e in merged[:first_fill])


async def test_account_subscriptions_filter_by_account_number(session: Session) -> None:
    s = session
    live: list[PlacedOrder] = []
    async with s.recorder():
        await s.subscribe()
        await trade(s, live)
    async with ReplayStreamer(s.out) as replay:
        await replay.subscribe(PlacedOrder, ["5WT99999"])  # not recorded
        await replay.subscribe(AccountBalance, ["*"])
        with anyio.fail_after(WAIT_S):
            got = [e async for e in replay.listen(PlacedOrder, AccountBalance)]
    assert got and all(isinstance(e, AccountBalance) for e in got)
    assert {e.account_number for e in got} == {s.acct.account_number}


async def test_account_disconnects_are_gaps_and_dxlink_replay_ignores_them(
    session: Session,
) -> None:
    s = session
    calls: list[str] = []

    async def on_reconnect(streamer: Any, tag: str) -> None:
        calls.append(tag)

    s.alerts.reconnect_fn, s.alerts.reconnect_args = on_reconnect, ("again",)
    async with s.recorder() as recorder:
        await s.subscribe()
        await s.acct.place_order([("SPY", "Buy to Open", 5)])
        with anyio.fail_after(WAIT_S):  # quiet before the break: nothing is lost in it
            while (await s.alerts.get_event(PlacedOrder)).status != "Filled":
                pass
            await s.alerts.get_event(CurrentPosition)
        await wait_until(lambda: recorder.stats.rows["CurrentPosition"])
        await s.acct.drop()
        await wait_until(lambda: recorder.account_gaps and recorder.account_gaps[0].resumed_ns)
        await wait_until(lambda: recorder.stats.reconnects)
        assert calls == ["again"]  # the user's callback still runs, with its arguments
        gap = recorder.account_gaps[0]
        assert gap.last_received_ns is not None and gap.last_received_ns < gap.disconnected_ns
        assert gap.resumed_ns is not None and gap.disconnected_ns <= gap.resumed_ns
        assert recorder.account_gaps == s.alerts.gaps  # the streamer's own record of its breaks
    assert s.alerts.reconnect_fn is on_reconnect  # the recorder never replaces the callbacks
    gaps = pl.read_parquet(s.out / "_gaps" / "*.parquet")
    assert gaps["stream"].to_list() == ["account"]
    # why, as the streamer saw it (the simulator dropped the socket: no close frame)
    assert gaps["reason"][0] == "connection closed: code=None reason=''"
    assert recorder.stats.gaps == 1 and recorder.stats.reconnects == 1
    fired: list[str] = []

    async def on_disconnect(streamer: Any) -> None:
        fired.append("down")

    async with ReplayStreamer(s.out, disconnect_fn=on_disconnect) as replay:
        await replay.subscribe_accounts(["*"])
        with anyio.fail_after(WAIT_S):
            assert [e async for e in replay.listen(PlacedOrder)]
    assert fired == [] and replay.gaps == []


async def test_record_accepts_account_payloads_from_user_code(tmp_path: Path) -> None:
    at = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
    order = PlacedOrder(
        id=7,
        account_number="5WT00001",
        time_in_force="Day",
        order_type="Limit",
        underlying_symbol="SPY",
        underlying_instrument_type="Equity",
        status="Filled",
        cancellable=False,
        editable=False,
        edited=False,
        updated_at=at,
        price=Decimal("-601.2345"),
        legs=[
            Leg(
                instrument_type="Equity",
                symbol="SPY",
                action="Buy to Open",
                quantity=Decimal(3),
                remaining_quantity=Decimal(0),
                fills=[
                    FillInfo(
                        fill_id="f1",
                        quantity=Decimal(3),
                        fill_price=Decimal("601.2345"),
                        filled_at=at,
                    )
                ],
            )
        ],
    )
    unknown = UnknownNotification("OrderChain", {"chain": [1, 2]}, 1)
    async with Recorder(tmp_path) as recorder:
        recorder.record(order, unknown)
        with pytest.raises(SchemaError):
            recorder.record(object())
    async with ReplayStreamer(tmp_path) as replay:
        await replay.subscribe(PlacedOrder, ["5WT00001"])
        await replay.subscribe(UnknownNotification, ["*"])
        with anyio.fail_after(WAIT_S):
            got = [e async for e in replay.listen(PlacedOrder, UnknownNotification)]
    assert got == [order, unknown]
    assert isinstance(got[0], PlacedOrder) and got[0].price == Decimal("-601.2345")


async def test_a_failing_account_simulator_ends_its_stream_not_the_recording(
    session: Session, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The simulators run in the recorder's process (``record --demo``): a bug in the account
    simulator closes its connections (a gap) with one error line, and the quotes go on."""
    s = session

    def broken_tick(now: float) -> None:
        raise ArithmeticError("simulated bug in the book")

    async with s.recorder() as recorder:
        await s.subscribe()
        await s.acct.place_order([("SPY", "Buy to Open", 5)])
        with anyio.fail_after(WAIT_S):
            while (await s.alerts.get_event(PlacedOrder)).status != "Filled":
                pass
        monkeypatch.setattr(s.acct.book, "tick", broken_tick)
        await wait_until(lambda: recorder.account_gaps)  # the stream ended: a gap is open
        quotes = recorder.stats.rows["Quote"]
        await wait_until(lambda: recorder.stats.rows["Quote"] >= quotes + 4)  # recording goes on
        assert isinstance(s.acct.failed, ArithmeticError)
        assert recorder.account_gaps[0].resumed_ns is None  # the simulator stays down
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage() for r in errors] == [
        "= account simulator failed and stopped serving "
        "(ArithmeticError: simulated bug in the book)"
    ]
    gaps = pl.read_parquet(s.out / "_gaps" / "*.parquet")
    assert gaps["stream"].to_list() == ["account"]
    assert pl.read_parquet(s.out / "Quote" / "*" / "*.parquet").height >= quotes + 4
