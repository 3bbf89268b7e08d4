"""The official dxFeed JavaScript client (npm ``@dxfeed/dxlink-api`` 0.3.0) against the simulator.

The simulator must be faithful enough that dxFeed's own client works against it unchanged. Each
test starts a :class:`~tastyrec.sim.Simulator` in-process on ``127.0.0.1:0`` and runs
``tests/js/client.mjs`` under Node; the script prints one JSON object per line (events, state
changes, FEED_CONFIGs, errors, anything the client logged) and a summary. Raw frames are traced to
the script's stderr and quoted in assertion messages.

Needs ``node`` on PATH (skipped otherwise) and ``npm ci --prefix tests/js`` (fails otherwise, so a
CI that forgot the install step does not go green by skipping).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pyarrow.parquet as pq
import pytest
from anyio.abc import ByteReceiveStream

from tastyrec.events import EMPTY_SNAPSHOT
from tastyrec.replay.feed import ReplayFeed
from tastyrec.sim import SimConfig, Simulator
from tastyrec.sim.market import Market, parse_candle_symbol
from tests.integration.waits import WAIT_S, wait_until

NODE = shutil.which("node")
JS_DIR = Path(__file__).resolve().parents[1] / "js"
CLIENT = JS_DIR / "client.mjs"
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"

pytestmark = [
    pytest.mark.node,
    pytest.mark.anyio,
    pytest.mark.skipif(NODE is None, reason="node is not on PATH"),
]

TOKEN = "sim-token"
RUN_S = 60.0
#: extra wall time allowed beyond the script's own run time before it is killed
GRACE_S = 20.0

STOCK = "SPY"
CANDLE_REQUESTED = f"{STOCK}{{=1m}}"
#: DXLINK.md §11: the server echoes the candle symbol with a period of 1 dropped
CANDLE_ECHOED = f"{STOCK}{{=m}}"

STOCK_TYPES = ("Quote", "Trade", "Summary", "Profile", "TimeAndSale")
OPTION_TYPES = ("Greeks", "TheoPrice")
ALL_TYPES = (*STOCK_TYPES, *OPTION_TYPES, "Candle")

SNAPSHOT_BEGIN = 0x04
SNAPSHOT_END = 0x08
SNAPSHOT_SNIP = 0x10
NAN_STRINGS = ("NaN", "Infinity", "-Infinity")

#: fields that are JSON integers on the wire (DXLINK.md §9 types ``i``)
INT_FIELDS = frozenset(
    {
        "eventTime",
        "eventFlags",
        "index",
        "time",
        "timeNanoPart",
        "sequence",
        "bidTime",
        "askTime",
        "dayId",
        "prevDayId",
        "haltStartTime",
        "haltEndTime",
        "exDividendDayId",
        "count",
    }
)
#: fields that are strings or null
STR_FIELDS = frozenset(
    {
        "eventSymbol",
        "bidExchangeCode",
        "askExchangeCode",
        "exchangeCode",
        "tickDirection",
        "dayClosePriceType",
        "prevDayClosePriceType",
        "description",
        "shortSaleRestriction",
        "tradingStatus",
        "statusReason",
        "exchangeSaleConditions",
        "tradeThroughExempt",
        "aggressorSide",
        "type",
        "buyer",
        "seller",
    }
)
BOOL_FIELDS = frozenset({"extendedTradingHours", "spreadLeg", "validTick"})


def option_symbols() -> tuple[str, str]:
    """A call and a put on SPY expiring on a Friday about three months from now."""
    expiry = dt.date.today() + dt.timedelta(days=90)
    expiry += dt.timedelta(days=(4 - expiry.weekday()) % 7)
    yymmdd = expiry.strftime("%y%m%d")
    return f".{STOCK}{yymmdd}C600", f".{STOCK}{yymmdd}P600"


def _no_json_constants(name: str) -> Any:
    # Node's JSON.stringify never writes NaN/Infinity literals; one here would be a harness bug.
    raise ValueError(f"bare JSON constant {name!r} in client output")


@dataclass
class ClientRun:
    """What one run of ``client.mjs`` printed."""

    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    configs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    #: the acceptEventFields sent; None when the run asked for no fields
    requested: dict[str, list[str]] | None = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    #: index into ``events`` of the first event after each ``auth:AUTHORIZED``
    authorized_at: list[int] = field(default_factory=list)

    def parse(self) -> None:
        for raw in self.stdout.splitlines():
            if not raw.strip():
                continue
            line = json.loads(raw, parse_constant=_no_json_constants)
            if "eventType" in line:
                self.events.append(line)
            elif "state" in line:
                self.states.append(line["state"])
                if line["state"] == "auth:AUTHORIZED":
                    self.authorized_at.append(len(self.events))
            elif "config" in line:
                self.configs.append(line["config"])
            elif "error" in line:
                self.errors.append(line["error"])
            elif "log" in line:
                self.logs.append(line)
            elif "requested" in line:
                self.requested = line["requested"]
            elif "summary" in line:
                self.summary = line
            else:
                raise AssertionError(f"unexpected client output line {raw!r}")

    def of(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["eventType"] == event_type]

    def describe(self, frames: int = 40) -> str:
        """Diagnostics for an assertion message: exit, logs, errors, states and the raw frames."""
        counts = {t: len(self.of(t)) for t in sorted({e["eventType"] for e in self.events})}
        trace = self.stderr.splitlines()
        head = trace[:frames]
        tail = trace[-10:] if len(trace) > frames else []
        return "\n".join(
            [
                f"exit={self.returncode} timed_out={self.timed_out} counts={counts}",
                f"logs={self.logs[:10]}",
                f"errors={self.errors[:10]}",
                f"states={self.states}",
                "frames (first):",
                *head,
                *(["frames (last):", *tail] if tail else []),
            ]
        )


async def run_client(
    url: str,
    token: str | None,
    symbols: tuple[str, ...],
    *,
    seconds: float = RUN_S,
    tolerate: tuple[str, ...] = (),
    during: Any = None,
    setup: str | None = None,
    until: Callable[[ClientRun], bool] | None = None,
    candle_contract: str | None = None,
) -> ClientRun:
    """Run ``client.mjs`` until ``until`` holds for what it printed so far (then it is stopped
    with SIGTERM and prints its summary as at the end of a run), ``seconds`` at most: a bound
    on failure, never what a test waits for. Without ``until``, for ``seconds`` (a run with a
    fixed length: a rejected token's). ``during(progress)``, an async callable, runs alongside;
    ``progress()`` is what the client printed so far. ``setup`` is the script's DXLINK_SETUP
    (what FEED_SETUP asks for); ``candle_contract`` its DXLINK_CANDLE_CONTRACT (the contract of
    the candles' feed; the script's default is HISTORY)."""
    if not (JS_DIR / "node_modules").is_dir():
        pytest.fail(
            "tests/js/node_modules is missing: run `npm ci --prefix tests/js` "
            "to install the official dxFeed JavaScript client"
        )
    assert NODE is not None
    env = {
        **os.environ,
        "DXLINK_TRACE": "1",
        "DXLINK_TOLERATE_ERRORS": ",".join(tolerate),
        **({} if setup is None else {"DXLINK_SETUP": setup}),
        **({} if candle_contract is None else {"DXLINK_CANDLE_CONTRACT": candle_contract}),
    }
    command = [NODE, str(CLIENT), url, token or "-", str(seconds), *symbols]
    out: list[bytes] = []
    err: list[bytes] = []

    async def drain(stream: ByteReceiveStream | None, sink: list[bytes]) -> None:
        assert stream is not None
        async for chunk in stream:
            sink.append(chunk)  # noqa: PERF401 (as it comes: progress() reads it meanwhile)

    def progress() -> ClientRun:
        text = b"".join(out).decode(errors="replace")
        partial = ClientRun(None, text[: text.rfind("\n") + 1], "")
        partial.parse()
        return partial

    async def stop_when_done() -> None:
        assert until is not None
        # polls the client's output (no event to wait for); the run's own bound below ends first
        await wait_until(lambda: until(progress()), seconds + GRACE_S + WAIT_S)
        process.terminate()

    timed_out = False
    async with await anyio.open_process(command, env=env) as process:
        async with anyio.create_task_group() as tg:
            tg.start_soon(drain, process.stdout, out)
            tg.start_soon(drain, process.stderr, err)
            if during is not None:
                tg.start_soon(during, progress)
            if until is not None:
                tg.start_soon(stop_when_done)
            with anyio.move_on_after(seconds + GRACE_S):
                await process.wait()
            tg.cancel_scope.cancel()
            if process.returncode is None:
                timed_out = True
                process.kill()
                await process.wait()
    run = ClientRun(
        returncode=process.returncode,
        stdout=b"".join(out).decode(),
        stderr=b"".join(err).decode(),
        timed_out=timed_out,
    )
    run.parse()
    return run


def assert_clean(run: ClientRun) -> None:
    """The client exited by itself, normally, and neither logged nor published an error."""
    assert not run.timed_out, run.describe()
    assert run.summary is not None, run.describe()
    assert run.logs == [], run.describe()
    assert run.returncode == 0, run.describe()


def announced(run: ClientRun) -> dict[str, list[str]]:
    """The eventFields of every FEED_CONFIG, merged as the client merges them."""
    merged: dict[str, list[str]] = {}
    for config in run.configs:
        merged.update(config.get("eventFields") or {})
    return merged


def assert_values_sane(run: ClientRun) -> None:
    """Every event carries exactly the configured fields, each with a value of its wire type."""
    fields = announced(run)
    for event in run.events:
        event_type = event["eventType"]
        expected = set(fields[event_type]) | {"eventType"}
        assert set(event) == expected, (event_type, sorted(set(event) ^ expected))
        for name, value in event.items():
            if name == "eventType":
                continue
            # openInterest is a long in Summary but a double in Candle (DXLINK.md §9)
            if name in INT_FIELDS or (event_type, name) == ("Summary", "openInterest"):
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif name in STR_FIELDS:
                ok = value is None or isinstance(value, str)
            elif name in BOOL_FIELDS:
                ok = isinstance(value, bool)
            else:  # doubles: a number or a NaN/Infinity string, never null
                ok = (
                    isinstance(value, int | float) and not isinstance(value, bool)
                ) or value in NAN_STRINGS
            assert ok, f"{event_type}.{name} = {value!r}: wrong wire type in {event}"


def num(value: Any) -> float:
    """A double field's value as a float (NaN for "NaN")."""
    return float(value)


def frames(run: ClientRun, direction: str) -> list[dict[str, Any]]:
    """The frames the client sent (``">"``) or received (``"<"``), from its trace."""
    out = []
    for line in run.stderr.splitlines():
        if line.startswith('{"dir":'):  # Node itself may write other things to stderr
            trace = json.loads(line)
            if trace["dir"] == direction:
                out.append(json.loads(trace["frame"]))
    return out


def channel_contracts(run: ClientRun) -> dict[int, str]:
    """Channel id -> the contract of each CHANNEL_REQUEST the client sent."""
    return {
        f["channel"]: f["parameters"]["contract"]
        for f in frames(run, ">")
        if f["type"] == "CHANNEL_REQUEST"
    }


def channels_of(run: ClientRun, event_type: str) -> set[int]:
    """The channels whose FEED_DATA carried ``event_type``."""
    out = set()
    for f in frames(run, "<"):
        if f["type"] == "FEED_DATA":
            data = f["data"]
            types = {data[0]} if isinstance(data[0], str) else {e["eventType"] for e in data}
            if event_type in types:
                out.add(f["channel"])
    return out


def assert_history_is_the_markets(candles: list[dict[str, Any]], market: Market) -> None:
    """The history the application received carries the simulator market's bars: every candle
    of the snapshot but its first, the newest, which was still open when it was sent."""
    cs = parse_candle_symbol(CANDLE_REQUESTED)
    assert cs is not None
    end = next(i for i, c in enumerate(candles) if c["eventFlags"] & (SNAPSHOT_END | SNAPSHOT_SNIP))
    closed = candles[1 : end + 1]
    assert len(closed) >= 59, f"only {len(closed)} closed candles for an hour of 1m history"
    now_ms = int(time.time() * 1000)  # any time after they closed
    for c in closed:
        m = market.candle(cs, cs.slot(c["time"]), now_ms)
        assert (m.open, m.high, m.low, m.close, m.volume, m.count) == (
            c["open"],
            c["high"],
            c["low"],
            c["close"],
            num(c["volume"]),
            c["count"],
        ), c


async def test_token_mode_all_types() -> None:
    """Token auth, every subscribed event type, sane values, normalised candle snapshot."""
    call, put = option_symbols()
    async with Simulator(host="127.0.0.1", port=0, seed=0, token=TOKEN) as sim:
        started_ms = time.time() * 1000
        run = await run_client(
            sim.url,
            sim.token,
            (STOCK, call, put),
            until=lambda r: has_everything(r, ALL_TYPES, {call, put}),
        )
        market = sim.market

    assert_clean(run)
    assert run.errors == [], run.describe()
    # JS sends AUTH right after SETUP; the first UNAUTHORIZED must not count as a rejection.
    assert "auth:AUTHORIZING" in run.states, run.describe()
    assert "auth:AUTHORIZED" in run.states, run.describe()
    assert "connection:CONNECTED" in run.states, run.describe()
    assert "channel:OPENED" in run.states, run.describe()

    for event_type in ALL_TYPES:
        assert run.of(event_type), f"no {event_type} events\n{run.describe()}"
    assert run.summary is not None
    assert run.summary["summary"] == {t: len(run.of(t)) for t in ALL_TYPES}

    # FEED_CONFIG echoes the requested names in the requested order (DXLINK.md §6)
    merged: dict[str, list[str]] = {}
    for config in run.configs:
        assert config["dataFormat"] == "COMPACT", config
        merged.update(config["eventFields"])
    assert run.requested is not None
    for event_type in ALL_TYPES:
        assert merged.get(event_type) == run.requested[event_type], event_type

    assert_values_sane(run)
    # absent doubles travel as "NaN" strings and reach the client as such (e.g. Profile.beta)
    assert any(v == "NaN" for e in run.events for v in e.values()), run.describe()

    symbols_by_type = {
        **{t: {STOCK} for t in STOCK_TYPES},
        **{t: {call, put} for t in OPTION_TYPES},
        "Candle": {CANDLE_ECHOED},
    }
    for event_type, expected in symbols_by_type.items():
        seen = {e["eventSymbol"] for e in run.of(event_type)}
        assert seen <= expected, (event_type, seen)
        assert seen == expected or event_type not in OPTION_TYPES, (event_type, seen)

    quotes = [q for q in run.of("Quote") if isinstance(q["bidPrice"], int | float)]
    assert quotes, "no quote with a numeric bid"
    for q in quotes:
        assert num(q["bidPrice"]) < num(q["askPrice"]), q
        # the simulator, like real feeds, sends an occasional "NaN" size
        assert all(math.isnan(num(q[k])) or num(q[k]) > 0 for k in ("bidSize", "askSize")), q

    for t in run.of("Trade") + run.of("TimeAndSale"):
        assert num(t["price"]) > 0, t

    greeks = run.of("Greeks")
    deltas = {g["eventSymbol"]: num(g["delta"]) for g in greeks}
    assert all(-1.0 <= d <= 1.0 for d in deltas.values()), deltas
    assert deltas[call] >= 0.0 >= deltas[put], deltas
    for g in greeks:
        assert num(g["gamma"]) >= 0 and num(g["volatility"]) > 0, g
    for p in run.of("TheoPrice"):
        assert num(p["price"]) >= 0 and -1.0 <= num(p["delta"]) <= 1.0, p

    # Candles on a feed of their own opened with contract HISTORY (FIELD_REPORTS #3), the rest
    # on one AUTO feed; history from fromTime (one hour ago): a snapshot opened by SNAPSHOT_BEGIN
    # and closed by SNAPSHOT_END/SNIP, every candle inside the requested window, OHLC consistent,
    # the closed ones the market's bars.
    contracts = channel_contracts(run)
    assert sorted(contracts.values()) == ["AUTO", "HISTORY"], contracts
    assert {contracts[ch] for ch in channels_of(run, "Candle")} == {"HISTORY"}, run.describe()
    assert {contracts[ch] for ch in channels_of(run, "Quote")} == {"AUTO"}, run.describe()
    candles = run.of("Candle")
    assert_history_is_the_markets(candles, market)
    flags = [c["eventFlags"] for c in candles]
    assert flags[0] & SNAPSHOT_BEGIN, flags[:3]
    assert any(f & (SNAPSHOT_END | SNAPSHOT_SNIP) for f in flags), flags
    assert len(candles) >= 30, f"only {len(candles)} candles for an hour of 1m history"
    window_start = started_ms - 3600_000 - 60_000 - 10_000
    for c in candles:
        assert window_start <= c["time"] <= time.time() * 1000, c
        assert c["time"] % 60_000 == 0, c
        o, h, lo, cl = (num(c[k]) for k in ("open", "high", "low", "close"))
        if not math.isnan(o):
            assert lo <= min(o, cl) <= max(o, cl) <= h, c


async def test_candles_on_an_auto_feed_get_the_empty_snapshot() -> None:
    """FIELD_REPORTS #3: candles asked for on an AUTO channel (what the tastytrade SDK and web
    platform use for everything) get one explicitly empty snapshot: eventFlags 14, NaN prices
    and volume, and nothing after it, while the other types flow on."""

    def empty_snapshot_then_quotes(run: ClientRun) -> bool:
        at = next((i for i, e in enumerate(run.events) if e["eventType"] == "Candle"), None)
        # 30 quotes after it (>= 3 s at 10 per second): a HISTORY feed gets a live bar a second
        return at is not None and sum(e["eventType"] == "Quote" for e in run.events[at:]) >= 30

    async with Simulator(
        host="127.0.0.1", port=0, seed=0, token=TOKEN, config=SimConfig(candle_rate_hz=2.0)
    ) as sim:
        run = await run_client(
            sim.url,
            sim.token,
            (STOCK,),
            candle_contract="AUTO",
            until=empty_snapshot_then_quotes,
        )

    assert_clean(run)
    assert run.errors == [], run.describe()
    assert sorted(channel_contracts(run).values()) == ["AUTO", "AUTO"], run.describe()
    (candle,) = run.of("Candle")
    assert candle["eventSymbol"] == CANDLE_ECHOED
    assert candle["eventFlags"] == 14 == EMPTY_SNAPSHOT  # SNAPSHOT_BEGIN|SNAPSHOT_END|REMOVE_EVENT
    for name in ("open", "high", "low", "close", "volume", "vwap"):
        assert candle[name] == "NaN", (name, candle)
    assert_values_sane(run)


async def test_no_auth_mode() -> None:
    """A server without auth says AUTHORIZED first; the client, with no token, gets data."""
    async with Simulator(host="127.0.0.1", port=0, seed=0, token=None) as sim:
        run = await run_client(sim.url, None, (STOCK,), until=has_stock_data)

    assert_clean(run)
    assert run.errors == [], run.describe()
    assert "auth:AUTHORIZING" not in run.states, run.describe()
    assert "auth:AUTHORIZED" in run.states, run.describe()
    for event_type in (*STOCK_TYPES, "Candle"):
        assert run.of(event_type), f"no {event_type} events\n{run.describe()}"
    assert_values_sane(run)


async def test_wrong_token_rejected() -> None:
    """A wrong token ends at UNAUTHORIZED with no data and never reaches AUTHORIZED."""
    async with Simulator(host="127.0.0.1", port=0, seed=0, token=TOKEN) as sim:
        run = await run_client(
            sim.url, "not-the-token", (STOCK,), seconds=2.0, tolerate=("UNKNOWN", "UNAUTHORIZED")
        )

    assert not run.timed_out and run.summary is not None, run.describe()
    assert run.logs == [], run.describe()
    assert "auth:AUTHORIZED" not in run.states, run.describe()
    assert "auth:UNAUTHORIZED" in run.states[run.states.index("auth:AUTHORIZING") :], run.describe()
    assert run.events == [], run.describe()


def has_everything(run: ClientRun, types: Any, options: set[str]) -> bool:
    """Every type has arrived (the options' types for every option) and a candle snapshot has
    ended: what a test of one run checks is all there."""
    candles = run.of("Candle")
    return (
        all(run.of(t) for t in types)
        and all({e["eventSymbol"] for e in run.of(t)} >= options for t in OPTION_TYPES)
        and any(c["eventFlags"] & (SNAPSHOT_END | SNAPSHOT_SNIP) for c in candles)
    )


def has_stock_data(run: ClientRun) -> bool:
    return has_everything(run, (*STOCK_TYPES, "Candle"), set())


def received_again(run: ClientRun) -> bool:
    """After a second authorisation, every stock type and a new candle snapshot arrived."""
    if len(run.authorized_at) < 2:
        return False
    after = run.events[run.authorized_at[-1] :]
    types = {e["eventType"] for e in after}
    snapshot = any(e["eventType"] == "Candle" and e["eventFlags"] & SNAPSHOT_BEGIN for e in after)
    return types >= {*STOCK_TYPES, "Candle"} and snapshot


async def wait_for_client(progress: Callable[[], ClientRun], done: Callable[[ClientRun], bool]):
    await wait_until(lambda: done(progress()), RUN_S + GRACE_S)


def assert_keeps_receiving(run: ClientRun) -> None:
    """After the last (re-)authorisation the client resubscribed: live data and a new snapshot."""
    assert len(run.authorized_at) >= 2, run.describe()
    after = run.events[run.authorized_at[-1] :]
    after_types = {e["eventType"] for e in after}
    for event_type in (*STOCK_TYPES, "Candle"):
        assert event_type in after_types, f"no {event_type} after re-auth\n{run.describe()}"
    # the feed re-sends FEED_SUBSCRIPTION reset+add, so the candle history is sent again
    assert any(c["eventFlags"] & SNAPSHOT_BEGIN for c in after if c["eventType"] == "Candle"), (
        run.describe()
    )
    assert_values_sane(run)


@pytest.mark.parametrize("fault", ["drop", "restart"], ids=["1006-drop", "1012-restart"])
async def test_the_official_client_survives_what_production_does(fault: str) -> None:
    """A 1012 "Reconnection is required" close (FIELD_REPORTS #4), like an abort: the official
    client reconnects by itself, re-auths and resubscribes, and the values it then gets are the
    market's (history included)."""
    async with Simulator(host="127.0.0.1", port=0, seed=0, token=TOKEN) as sim:

        async def fault_once(progress: Callable[[], ClientRun]) -> None:
            await wait_for_client(progress, has_stock_data)
            await (sim.drop() if fault == "drop" else sim.restart())

        run = await run_client(
            sim.url, sim.token, (STOCK,), tolerate=("UNKNOWN",), during=fault_once,
            until=received_again,
        )  # fmt: skip
        market = sim.market

    assert_clean(run)
    assert {e["type"] for e in run.errors} <= {"UNKNOWN"}, run.describe()
    assert run.states.count("connection:CONNECTING") == 2, run.describe()
    assert_keeps_receiving(run)
    assert_market_values(run, market)


async def test_expire_token_reauths() -> None:
    """Unsolicited UNAUTHORIZED: the app re-sends the token, the client re-requests its channel."""
    async with Simulator(host="127.0.0.1", port=0, seed=0, token=TOKEN) as sim:
        connections: list[int] = []

        async def expire_once(progress: Callable[[], ClientRun]) -> None:
            await wait_for_client(progress, has_stock_data)
            await sim.expire_token()
            await wait_for_client(progress, received_again)
            connections.append(sim.connection_count)

        run = await run_client(
            sim.url, sim.token, (STOCK,), during=expire_once, until=received_again
        )

    assert_clean(run)
    assert run.errors == [], run.describe()
    assert connections == [1], run.describe()  # re-authorised on the same connection
    i = run.states.index("app:reauth")
    assert run.states[i - 1] == "auth:UNAUTHORIZED", run.describe()
    assert "auth:AUTHORIZED" in run.states[i:], run.describe()
    assert_keeps_receiving(run)


# --- what FEED_SETUP asks for (every field is optional) ----------------------------------------


def assert_market_values(run: ClientRun, market: Market) -> None:
    """The values the application receives are the simulator market's, not just well-typed:
    each Quote is the market's quote at some instant, each print the market's print."""
    quotes = run.of("Quote")
    assert quotes, run.describe()
    for q in quotes[:20]:
        # the market's quote at t_ms has bidTime in [t_ms - 500, t_ms]
        matches = [
            m
            for t_ms in range(q["bidTime"], q["bidTime"] + 501)
            if (m := market.quote(STOCK, t_ms)).bid_time == q["bidTime"]
            and m.ask_time == q["askTime"]
        ]
        assert any(
            (m.bid_price, m.ask_price, m.bid_exchange_code, m.ask_exchange_code)
            == (q["bidPrice"], q["askPrice"], q["bidExchangeCode"], q["askExchangeCode"])
            and m.ask_size == num(q["askSize"])
            for m in matches
        ), q
    prints = run.of("TimeAndSale")
    assert prints, run.describe()
    for t in prints[:20]:
        (m,) = market.time_and_sales(STOCK, t["time"] - 1, t["time"])
        assert (m.price, m.size, m.aggressor_side) == (t["price"], t["size"], t["aggressorSide"])
    for t in run.of("Trade")[:20]:
        m = market.trade(STOCK, t["time"])
        assert m is not None and (m.time, m.price, m.size) == (t["time"], t["price"], t["size"])


SETUPS = {
    # no acceptDataFormat: FEED_CONFIG must still say COMPACT, or the client drops every event
    "no-format": "period,fields",
    "fields-only": "fields",
    # no FEED_SETUP at all: the server's default fields, announced with the format
    "nothing": "",
    # eventType asked for: production puts the type name in that slot (FIELD_REPORTS #2)
    "eventType": "format,fields,eventType",
    "eventType-FULL": "FULL,fields,eventType",
}


@pytest.mark.parametrize("setup", SETUPS.values(), ids=SETUPS.keys())
async def test_feed_setup_variants_deliver_the_markets_values(setup: str) -> None:
    """Whatever FEED_SETUP names (or omits), the official client decodes every message, the
    application sees ``eventType == "Quote"`` on quotes, and the prices are the market's."""
    async with Simulator(host="127.0.0.1", port=0, seed=0, token=TOKEN) as sim:
        run = await run_client(sim.url, sim.token, (STOCK,), setup=setup, until=has_stock_data)
        market = sim.market

    assert_clean(run)  # the client logs "Cannot parse data" for each message it drops
    assert run.errors == [], run.describe()
    words = set(setup.split(","))
    data_format = "FULL" if "FULL" in words else "COMPACT"
    assert run.configs, run.describe()
    for config in run.configs:  # FIELD_REPORTS #1: every FEED_CONFIG states the format
        assert config["dataFormat"] == data_format, config
    if "period" in words:
        assert all(c["aggregationPeriod"] == 0.1 for c in run.configs), run.configs
    fields = announced(run)
    if "fields" in words:
        assert run.requested is not None
        assert {t: fields[t] for t in run.requested if t in fields} == {
            t: run.requested[t] for t in fields
        }
    else:
        assert run.requested is None
    for event_type in (*STOCK_TYPES, "Candle"):
        events = run.of(event_type)
        assert events, f"no {event_type} events\n{run.describe()}"
        assert all(e["eventSymbol"] in (STOCK, CANDLE_ECHOED) for e in events), events[:3]
    # routing by eventType works: never null, always the type the client counted it as
    assert run.summary is not None and set(run.summary["summary"]) == {*STOCK_TYPES, "Candle"}
    assert all(isinstance(e["eventType"], str) for e in run.events)
    if "eventType" in words:
        assert all(f[0] == "eventType" for f in fields.values()), fields
    if data_format == "COMPACT":
        assert_values_sane(run)
    else:  # FULL omits absent (null) fields, so check what is there
        for e in run.events:
            assert set(e) <= {*fields[e["eventType"]], "eventType"}, e
    assert_market_values(run, market)


def _value(v: Any) -> Any:
    """A wire value comparable with a recorded one: "NaN" and NaN both become None."""
    if isinstance(v, str) and v in NAN_STRINGS:
        v = float(v)
    return None if isinstance(v, float) and math.isnan(v) else v


@pytest.mark.parametrize(
    "setup", ["fields", "format,fields,eventType"], ids=["no-format", "eventType"]
)
async def test_serve_gives_the_official_client_the_recorded_values(setup: str) -> None:
    """``tastyrec serve`` (the engine over a ReplayFeed) speaks the same wire: with no format
    asked for, or eventType asked for, the client gets every recorded SPY quote and trade."""

    def feed() -> ReplayFeed:
        return ReplayFeed(SAMPLE, speed=math.inf)

    def every_recorded_spy_event(run: ClientRun) -> bool:
        return all(len(run.of(t)) >= n for t, n in recorded_spy.items())

    recorded_spy = {
        t: pq.read_table(SAMPLE / t, filters=[("event_symbol", "=", STOCK)]).num_rows
        for t in ("Quote", "Trade")
    }
    async with Simulator(host="127.0.0.1", port=0, token=TOKEN, feed_factory=feed) as sim:
        run = await run_client(
            sim.url, sim.token, (STOCK,), setup=setup, until=every_recorded_spy_event
        )

    assert_clean(run)
    assert run.errors == [], run.describe()
    assert run.configs and all(c["dataFormat"] == "COMPACT" for c in run.configs), run.configs
    for event_type, columns in (
        ("Quote", ("bid_price", "ask_price", "bid_size")),
        ("Trade", ("price", "size", "day_volume")),
    ):
        recorded = pq.read_table(
            SAMPLE / event_type, columns=list(columns), filters=[("event_symbol", "=", STOCK)]
        ).to_pylist()
        wire = (
            ["bidPrice", "askPrice", "bidSize"]
            if event_type == "Quote"
            else ["price", "size", "dayVolume"]
        )
        got = run.of(event_type)
        assert recorded and len(got) == len(recorded), (event_type, len(got), len(recorded))
        assert all(e["eventType"] == event_type and e["eventSymbol"] == STOCK for e in got)
        assert [[_value(e[w]) for w in wire] for e in got] == [
            [_value(r[c]) for c in columns] for r in recorded
        ]
