"""Chain recording against the fake REST API and the DXLink simulator, over loopback.

The underlying is moved on demand: the simulator's market is replaced by a subclass whose plain
symbols' paths can be scaled (options follow, being priced off the underlying's path), so a
re-centre happens at once instead of after hours of simulated drift.

The token-renewal test compares the Parquet rows with what the simulator sent (``keep_sent``),
decoded independently with json and the FEED_CONFIG field lists.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pyarrow.parquet as pq
import pytest

from tastyrec.chain import get_option_chain, select_strikes
from tastyrec.demo import demo_session
from tastyrec.dxlink import messages as m
from tastyrec.dxlink.streamer import DXLinkStreamer
from tastyrec.events.market import Greeks, Quote, Summary
from tastyrec.exceptions import ApiError, LocalProtocolError
from tastyrec.record.chains import (
    SUBSCRIPTION_SCHEMA,
    ChainRecorder,
    recentre_threshold,
    record_chains,
)
from tastyrec.record.recorder import Recorder
from tastyrec.session import Session
from tastyrec.sim import SimConfig, Simulator
from tastyrec.sim.market import Market
from tastyrec.sim.rest import QUOTE_TOKEN_ROUTE, ApiSimulator
from tests.integration.waits import WAIT_S, fast_delays, wait_until
from tests.integration.wire import expected_rows, recorded_rows, sent_events

pytestmark = pytest.mark.anyio

TOKEN = "sim-quote-token-chains-5a1c"
ROTATED = "sim-quote-token-rotated-9d02"
DTE = (0, 7)
STRIKES = 3


def no_delays() -> Iterator[float]:
    return itertools.repeat(0.0)


class MovableMarket(Market):
    """The synthetic market, with plain symbols' prices scaled by ``factor`` (options follow)."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.factor: dict[str, float] = {}

    def path(self, symbol: str, t_ms: int) -> float:
        price = super().path(symbol, t_ms)
        if symbol.startswith("."):  # priced off self.path(underlying): already moved
            return price
        return price * self.factor.get(symbol, 1.0)



def make_streamer(session: Any, **kwargs: Any) -> DXLinkStreamer:
    options: dict[str, Any] = {
        "queue_size": 0,
        "tap_interval": 0.05,
        "keepalive_timeout": 10.0,  # the watchdog is tested on its own: no false alarms here
        "connect_timeout": WAIT_S,
        "reconnect_delays": fast_delays,
        **kwargs,
    }
    return DXLinkStreamer(session, **options)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    config = SimConfig(
        keepalive_timeout=30.0, quote_rate_hz=20.0, greeks_rate_hz=5.0, summary_rate_hz=1.0
    )
    async with Simulator(seed=5, token=TOKEN, config=config, keep_sent=True) as server:
        server.market = MovableMarket(5)  # before any connection: each takes sim.market
        yield server


@pytest.fixture
async def api(sim: Simulator) -> AsyncIterator[ApiSimulator]:
    async with ApiSimulator(sim) as server:  # its chains are centred on sim.market's prices
        yield server


@pytest.fixture
async def session(api: ApiSimulator) -> AsyncIterator[Session]:
    async with Session(
        api.client_secret, api.refresh_token, api_url=api.url, retry_delays=no_delays
    ) as s:
        yield s


def subscribed(streamer: DXLinkStreamer, event_type: type[Any]) -> set[str]:
    return {key[1] for key in streamer.protocol.subscriptions.get(event_type.__name__, {})}


def removed_on_the_wire(server: Simulator, event_type: str) -> set[str]:
    return {
        s.symbol
        for x in server.received
        if isinstance(x, m.FeedSubscription)
        for s in x.remove or ()
        if s.type == event_type
    }


# --- selection, re-centring, the _subscriptions table ---------------------------------------------


async def test_chain_follows_the_underlying(
    sim: Simulator, api: ApiSimulator, session: Session, tmp_path: Path
) -> None:
    market = sim.market
    assert isinstance(market, MovableMarket)
    chain = await get_option_chain(session, "SPY")
    async with make_streamer(session) as streamer, Recorder(tmp_path, streamer) as recorder:
        await streamer.subscribe(Quote, ["SPY"])  # someone else's: never unsubscribed
        chains = ChainRecorder(
            session, streamer, ["SPY"], dte=DTE, strikes=STRIKES, recorder=recorder
        )
        async with chains:
            # initial selection: N strikes either side of the simulator's price, per expiry
            first = chains.centre["SPY"]
            spot = market.path("SPY", int(time.time() * 1000))
            assert abs(first - spot) < 0.01 * spot
            initial = chains.symbols()
            assert initial == [o.streamer_symbol for o in select_strikes(chain, first, 3, DTE)]
            expiries = {d for d, opts in chain.items() if opts[0].days_to_expiration <= DTE[1]}
            by_day = defaultdict(list)
            for o in chains.selected["SPY"]:
                by_day[o.expiration_date].append(o)
            assert set(by_day) == expiries and len(expiries) >= 4
            for options in by_day.values():
                strikes = sorted({float(o.strike_price) for o in options})
                assert len(options) == 4 * STRIKES  # 3 strikes a side, call and put
                assert sum(k < first for k in strikes) == sum(k >= first for k in strikes) == 3
            for cls in (Greeks, Quote, Summary):
                assert set(initial) <= subscribed(streamer, cls)
            assert subscribed(streamer, Greeks) == set(initial)
            assert "SPY" in subscribed(streamer, Summary)  # the underlying is recorded too
            assert chains.threshold("SPY") == 1.5  # min(2, 3 / 2) spacings of 1.0
            await wait_until(lambda: {"Greeks", "Quote", "Summary"} <= set(recorder.stats.rows))

            # a small move: no re-centre
            market.factor["SPY"] = 1 + 0.5 / first
            await wait_until(lambda: chains.mid["SPY"] > first + 0.3)  # it saw the move
            assert chains.recentres["SPY"] == 0 and chains.symbols() == initial

            # the underlying moves 1%: new strikes in, old out
            market.factor["SPY"] = 1.01
            await wait_until(lambda: chains.recentres["SPY"] == 1)
            second = chains.centre["SPY"]
            assert second - first > 4
            now = chains.symbols()
            assert now == [o.streamer_symbol for o in select_strikes(chain, second, 3, DTE)]
            added, removed = set(now) - set(initial), set(initial) - set(now)
            assert added and removed
            for cls in (Greeks, Quote, Summary):
                assert subscribed(streamer, cls) & (added | set(initial)) == set(now)
                # the server gets the removal a moment after the streamer sends it
                await wait_until(lambda c=cls: removed <= removed_on_the_wire(sim, c.__name__))
            await wait_until(lambda: added <= set(recorder.latest(Greeks)["event_symbol"]))
            await wait_until(lambda: added <= set(recorder.latest(Quote)["event_symbol"]))
            # several more rounds of Greeks, long after the old options were unsubscribed
            rounds = recorder.stats.rows["Greeks"] + 5 * len(now)
            await wait_until(lambda: recorder.stats.rows["Greeks"] >= rounds)
        # leaving unsubscribes what it subscribed, but not the SPY quote it found
        assert subscribed(streamer, Greeks) == set() and subscribed(streamer, Summary) == set()
        assert subscribed(streamer, Quote) == {"SPY"}
    # the _subscriptions table, named like the session's
    [table_file] = (tmp_path / "_subscriptions").glob("*.parquet")
    [session_file] = (tmp_path / "_sessions").glob("*.parquet")
    assert table_file.name == session_file.name
    table = pq.read_table(table_file)
    assert table.schema.equals(SUBSCRIPTION_SCHEMA, check_metadata=False)
    rows = table.to_pylist()
    assert {r["session_id"] for r in rows} == {recorder.session_id}
    assert {r["underlying"] for r in rows} == {"SPY"}

    def symbols(action: str, reason: str, event_type: str) -> list[str]:
        return [
            r["symbol"]
            for r in rows
            if (r["action"], r["reason"], r["event_type"]) == (action, reason, event_type)
        ]

    for name in ("Greeks", "Quote", "Summary"):
        start = symbols("subscribe", "initial", name)
        assert sorted(start) == sorted(initial + (["SPY"] if name != "Greeks" else []))
        assert set(symbols("subscribe", "recentre", name)) == added
        assert set(symbols("unsubscribe", "recentre", name)) == removed
        assert sorted(symbols("unsubscribe", "close", name)) == sorted(
            now + (["SPY"] if name == "Summary" else [])
        )
    assert {r["price"] for r in rows if r["reason"] == "recentre"} == {second}
    times = [r["time"] for r in rows]
    assert times == sorted(times)
    # what was recorded: the options chosen at one time or another, the new ones included
    greeks = pq.read_table(list((tmp_path / "Greeks").glob("date=*/*.parquet")))
    recorded = set(greeks["event_symbol"].to_pylist())
    assert added <= recorded <= set(initial) | added
    # the old ones stopped once unsubscribed: after each one's last Greeks, the followed options
    # had several rounds of theirs (measured in events, not seconds: any load gives the same)
    names, recv = greeks["event_symbol"].to_pylist(), greeks["recv_ns"].to_pylist()
    order = sorted(range(len(names)), key=lambda i: recv[i])
    last_seen = {names[i]: n for n, i in enumerate(order)}
    followed = set(now)
    for symbol in removed:
        after = sum(1 for i in order[last_seen.get(symbol, -1) + 1 :] if names[i] in followed)
        assert after >= 4 * len(now), (symbol, after)


async def test_forced_recentre_and_errors(sim: Simulator, session: Session, tmp_path: Path) -> None:
    async with make_streamer(session) as streamer:
        chains = ChainRecorder(
            session,
            streamer,
            ["spy"],
            dte=(1, 2),
            strikes=2,
            event_types=(Greeks,),
            recentre_strikes=10,
            out=tmp_path,
        )
        with pytest.raises(LocalProtocolError, match="no chain or no price"):
            await chains.recentre("SPY")
        async with chains:
            centre = chains.centre["SPY"]
            assert chains.threshold("SPY") == 10.0
            before = chains.symbols()
            added, removed = await chains.recentre("SPY", centre + 20)
            assert len(added) == len(removed) == len(before)  # 2 a side: all replaced
            assert chains.symbols() == added and chains.recentres["SPY"] == 1
            assert subscribed(streamer, Greeks) == set(added)
            # an own session id when no recorder is given
            assert chains.path is not None and chains.session_id in chains.path.name
        [table_file] = (tmp_path / "_subscriptions").glob("*.parquet")
        assert pq.read_table(table_file).num_rows == len(chains.changes) > 0
        # an underlying without options: fatal on entering, nothing left subscribed
        with pytest.raises(ApiError) as info:
            async with ChainRecorder(session, streamer, ["NOPE"], ready_timeout_s=WAIT_S):
                pass
        assert info.value.status_code == 404
        assert not streamer._taps  # the chain recorder's tap was closed
    with pytest.raises(LocalProtocolError):
        ChainRecorder(session, streamer, [])
    with pytest.raises(LocalProtocolError):
        ChainRecorder(session, streamer, ["SPY"], strikes=0)


def test_recentre_threshold() -> None:
    from datetime import date
    from decimal import Decimal

    from tastyrec.chain import Option, OptionType

    def opt(strike: str) -> Option:
        return Option("", "", "SPX", "SPXW", Decimal(strike), OptionType.CALL, date.today(), 0)

    grid = [opt(k) for k in ("5590", "5595", "5600", "5605")]
    assert recentre_threshold(grid, strikes=20) == 10.0  # 2 spacings of 5
    assert recentre_threshold(grid, strikes=2) == 5.0  # N / 2
    assert recentre_threshold(grid, strikes=1) == 2.5  # never below half a spacing
    assert recentre_threshold(grid, strikes=20, recentre_strikes=3) == 15.0
    assert recentre_threshold([opt("5600")], strikes=20) == math.inf


# --- the CLI's entry points ---------------------------------------------------------------------


async def test_record_chains_demo(tmp_path: Path) -> None:
    async def until_greeks(recorder: Recorder, chains: ChainRecorder) -> None:
        assert chains.symbols()
        await wait_until(lambda: recorder.stats.rows["Greeks"] >= len(chains.symbols()))

    with anyio.fail_after(3 * WAIT_S):
        async with demo_session() as session:
            recorder = await record_chains(
                tmp_path, session, ["SPY"], dte=(0, 3), strikes=2, run=until_greeks
            )
    assert recorder.stats.rows_written == sum(recorder.stats.rows.values()) > 0
    for name in ("Greeks", "Quote", "Summary"):
        assert list((tmp_path / name).glob("date=*/*.parquet")), name
    quotes = pq.read_table(list((tmp_path / "Quote").glob("date=*/*.parquet")))
    assert "SPY" in set(quotes["event_symbol"].to_pylist())  # the underlying too
    [table_file] = (tmp_path / "_subscriptions").glob("*.parquet")
    actions = pq.read_table(table_file)["action"].to_pylist()
    assert actions.count("subscribe") == actions.count("unsubscribe") > 0
    [session_row] = pq.read_table(list((tmp_path / "_sessions").glob("*.parquet"))).to_pylist()
    assert session_row["status"] == "ended"


async def test_demo_chain_records_every_option_all_through_the_run(tmp_path: Path) -> None:
    """The CLI demo's whole SPY chain (``--chain SPY --demo``: 0-45 DTE, 10 strikes a side,
    ~1,300 options) keeps coming: every option followed from the start to the end has quotes in
    each third of the recording after its first ones, judged by the events recorded (the
    recording's own order), not by rates that depend on machine load."""
    followed: list[str] = []
    initial: set[str] = set()

    async def until_five_quotes_each(recorder: Recorder, chains: ChainRecorder) -> None:
        await wait_until(lambda: bool(chains.symbols()), 10 * WAIT_S)
        n = len(chains.symbols())
        await wait_until(lambda: recorder.stats.rows["Quote"] >= 6 * n, 30 * WAIT_S)
        followed.extend(chains.symbols())
        initial.update(c.symbol for c in chains.changes if c.reason == "initial")

    with anyio.fail_after(40 * WAIT_S):
        async with demo_session() as session:
            await record_chains(tmp_path, session, ["SPY"], run=until_five_quotes_each)
    options = set(followed) & initial  # followed from the start to the end (no re-centre)
    assert len(options) > 1_000, len(options)
    table = pq.read_table(list((tmp_path / "Quote").glob("date=*/*.parquet")))
    table = table.sort_by("recv_ns")
    symbols = [s for s in table["event_symbol"].to_pylist() if s in options]
    seen: set[str] = set()
    start = len(symbols)
    for i, symbol in enumerate(symbols):  # from the row where every option has had one
        seen.add(symbol)
        if len(seen) == len(options):
            start = i + 1
            break
    rest = symbols[start:]
    assert len(rest) >= 3 * len(options), (len(rest), len(options))
    third = len(rest) // 3
    for k in range(3):
        missing = options - set(rest[k * third : (k + 1) * third])
        assert not missing, (k, len(missing), sorted(missing)[:5])


# --- quote-token renewal while recording: nothing lost, nothing twice ----------------------------


async def test_token_renewal_mid_recording_loses_nothing(
    sim: Simulator, api: ApiSimulator, session: Session, tmp_path: Path
) -> None:
    symbols = ["SPY", "QQQ", "AAPL", "MSFT"]
    async with make_streamer(session) as streamer:
        async with Recorder(tmp_path, streamer) as recorder:
            await streamer.subscribe(Quote, symbols, refresh_interval=0.02)
            await wait_until(lambda: recorder.stats.rows["Quote"] >= 50)
            before = len(sim.received)
            await sim.expire_token(ROTATED)  # UNAUTHORIZED; only the new token works now
            await wait_until(
                lambda: any(isinstance(x, m.FeedSubscription) for x in sim.received[before:])
            )
            n = streamer.stats.events
            await wait_until(lambda: streamer.stats.events >= n + 50)
            sim.stall(True)  # nothing more is sent; what was sent must all arrive
            await sim.quiesce()
            assert sim.sent is not None
            sent = sent_events(sim.sent)
            await wait_until(lambda: streamer.stats.events == len(sent["Quote"]))
        assert streamer.stats.connects == 1 and streamer.stats.disconnects == 0
        assert streamer.gaps == []
    assert [x.token for x in sim.received if isinstance(x, m.Auth)] == [TOKEN, ROTATED]
    assert api.calls[QUOTE_TOKEN_ROUTE] == 2
    expected = expected_rows(Quote, sent["Quote"])
    got = recorded_rows(tmp_path, Quote)
    assert got == expected  # every row once, in receipt order, equal to what was sent
    assert len({r[0] for r in got[-40:]}) == len(symbols)  # all restored after the renewal
    assert recorder.stats.rows_written == len(expected)
    assert not list(tmp_path.glob("_gaps/*.parquet"))
    for path in tmp_path.rglob("*.parquet"):
        data = path.read_bytes()
        assert TOKEN.encode() not in data and ROTATED.encode() not in data


async def test_spx_chain_has_both_roots_priced_off_spx(session: Session, sim: Simulator) -> None:
    async with make_streamer(session) as streamer:
        async with ChainRecorder(
            session, streamer, ["SPX"], dte=(0, 10), strikes=2, event_types=(Greeks,)
        ) as chains:
            options = chains.selected["SPX"]
            roots = {o.root_symbol for o in options}
            assert "SPXW" in roots  # dailies; SPX monthlies too when one is within 10 days
            assert chains.threshold("SPX") == 5.0  # min(2, 2 / 2) spacings of 5
            spx = chains.centre["SPX"]
            assert abs(spx - sim.market.path("SPX", int(time.time() * 1000))) < 0.01 * spx
            calls = {o.streamer_symbol for o in options if o.option_type == "C"}
            deltas: dict[str, float] = {}
            with streamer.tap() as tap, anyio.fail_after(WAIT_S):
                async for batch in tap:
                    if batch.event_type is Greeks:
                        rows = batch.batch.to_pylist()
                        deltas.update((r["event_symbol"], r["delta"]) for r in rows)
                    if calls <= set(deltas):
                        break
                await streamer.close_tap(tap, flush=False)
            # near the money off SPX (not off a made-up "SPXW" stock): deltas around one half
            live = [deltas[s] for s in calls if not math.isnan(deltas[s])]
            assert live and all(0.05 < d < 0.95 for d in live)
