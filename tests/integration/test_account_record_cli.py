"""``tastyrec simulate`` and ``tastyrec record --account`` as users run them (real subprocesses)."""

from __future__ import annotations

import signal
from typing import Any

import anyio
import pyarrow.parquet as pq
import pytest

import tastyrec
from tastyrec.account import AlertStreamer
from tastyrec.events.account import PlacedOrder
from tastyrec.storage.journal import read_segment

WAIT_S = 20.0


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.anyio
async def test_simulate_announces_the_account_streamer_after_the_dxlink_line(cli: Any) -> None:
    proc = cli.start("simulate", "--order-every", "300ms")
    out = proc.wait_for("three lines", lambda: len(lines(proc.stdout)) >= 3 and proc.stdout)
    first, second, third = lines(out)[:3]
    assert first.startswith("dxlink ws://127.0.0.1:") and first.endswith("/realtime")
    assert second.startswith("account ws://127.0.0.1:")
    number = third.removeprefix("account-number ").strip()
    assert third.startswith("account-number ") and number
    async with AlertStreamer(url=second.split()[1], token="sim-token") as alerts:
        await alerts.subscribe_accounts([number])
        with anyio.fail_after(WAIT_S):  # the account trades by itself
            order = await alerts.get_event(PlacedOrder)
    assert order.account_number == number
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0, proc.stderr


def test_record_demo_account_writes_order_tables_beside_market_data(cli: Any) -> None:
    out = cli.workdir / "rec"
    proc = cli.record_until(
        out,
        # orders placed and at least one filled (a fill moves the position)
        lambda rows: rows.get("PlacedOrder", 0) >= 10 and rows.get("CurrentPosition", 0) >= 1,
        "--demo", "--account", "5WT00000", "--symbols", "SPY", "--order-every", "300ms",
        "--reconcile-every", "1s",
    )  # fmt: skip
    assert "PlacedOrder" in proc.stdout and "Quote" in proc.stdout
    assert list((out / "PlacedOrder").glob("date=*/*.parquet"))
    assert not (out / "Order").exists()
    con = tastyrec.connect(out)
    [(orders, filled, accounts)] = con.sql(
        "SELECT count(DISTINCT id), count(*) FILTER (status = 'Filled'), "
        "list(DISTINCT account_number) FROM PlacedOrder"
    ).fetchall()
    assert orders >= 2 and filled >= 1 and accounts == ["5WT00000"]
    [(fills,)] = con.sql(
        "SELECT count(*) FROM PlacedOrder, UNNEST(legs) AS t(l), UNNEST(l.fills) AS u(f) "
        "WHERE status = 'Filled'"
    ).fetchall()
    assert fills >= 1
    [(symbols,)] = con.sql("SELECT symbols FROM sessions").fetchall()
    assert "5WT00000" in symbols and "SPY" in symbols


def test_record_demo_account_is_reconciled_at_connect(cli: Any) -> None:
    """The demo wires the simulated REST API too: at connect the recorder takes the account's
    balance and positions from it, which the stream (no orders placed here) never sends."""
    out = cli.workdir / "rec"
    cli.record_until(
        out,
        lambda rows: rows.get("AccountBalance", 0) >= 1,
        "--demo", "--account", "5WT00000", "--symbols", "SPY", "--order-every", "0",
    )  # fmt: skip
    rows = tastyrec.connect(out).sql("SELECT from_snapshot FROM AccountBalance").fetchall()
    assert rows == [(True,)]


def test_account_without_demo_needs_an_url_and_a_token(cli: Any) -> None:
    out = cli.workdir / "nothing"
    proc = cli.run("record", "--account", "5WT00000", "--out", str(out))
    assert proc.popen.returncode == 2
    assert "--account-url" in proc.stderr and "--account-token" in proc.stderr
    assert "TASTYREC_ACCOUNT_TOKEN" in proc.stderr and "--demo" in proc.stderr
    assert not out.exists()


def test_kill_9_while_recording_accounts_loses_nothing_journaled(cli: Any) -> None:
    out = cli.workdir / "crash"
    proc = cli.start(
        "record",
        "--demo",
        "--account",
        "5WT00000",
        "--symbols",
        "SPY",
        "--order-every",
        "200ms",
        "--fsync",
        "always",
        "--out",
        str(out),
        "--no-status",
    )

    def journaled_orders() -> int:
        rows = 0
        for seg in out.glob("_journal/PlacedOrder/date=*/*.arrows"):
            try:
                rows += read_segment(seg).rows
            except FileNotFoundError:
                pass
        return rows

    proc.wait_for("journaled orders", lambda: journaled_orders() >= 5, timeout=WAIT_S)
    proc.popen.send_signal(signal.SIGKILL)
    proc.wait(10)
    journaled = journaled_orders()  # what the dead recorder had journaled, at least 5 rows
    assert journaled >= 5
    rec = cli.run("recover", str(out))
    assert rec.popen.returncode == 0, rec.stderr
    files = list(out.glob("PlacedOrder/date=*/*.parquet"))
    assert sum(pq.read_metadata(f).num_rows for f in files) == journaled
    assert not list(out.glob("_journal/**/*.arrows"))
    table = pq.read_table(files[0])
    assert table.schema.field("legs").type.value_type.field("fills") is not None


def test_compact_keeps_account_tables_exactly(cli: Any) -> None:
    out = cli.workdir / "rec"
    cli.record_until(
        out,
        lambda rows: len(list((out / "PlacedOrder").glob("date=*/*.parquet"))) >= 2,
        "--demo", "--account", "5WT00000", "--symbols", "SPY", "--order-every", "200ms",
        "--rotate-age", "1s",
    )  # fmt: skip
    assert len(list((out / "PlacedOrder").glob("date=*/*.parquet"))) >= 2
    query = (
        "SELECT o.id, o.status, f.fill_id, f.quantity, f.fill_price, o.recv_ns FROM PlacedOrder o, "
        "UNNEST(o.legs) AS t(l), UNNEST(l.fills) AS u(f) ORDER BY ALL"
    )
    before = tastyrec.connect(out).sql(query).fetchall()
    orders_before = tastyrec.connect(out).sql("SELECT count(*) FROM PlacedOrder").fetchall()
    compacted = cli.run("compact", str(out), timeout=60)
    assert compacted.popen.returncode == 0, compacted.stderr
    assert len(list((out / "PlacedOrder").glob("date=*/*.parquet"))) == 1
    assert tastyrec.connect(out).sql(query).fetchall() == before and before
    assert tastyrec.connect(out).sql("SELECT count(*) FROM PlacedOrder").fetchall() == orders_before
