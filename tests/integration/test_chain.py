"""Option chains: the nested endpoint of the fake REST API, parsing, strike selection.

The fake's chains are cross-checked against the tastytrade SDK's own models and symbol
conversions where the SDK is installed, and their symbols are subscribed on the simulator.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import anyio
import pytest

from tastyrec.chain import (
    Option,
    OptionType,
    get_option_chain,
    parse_dte,
    parse_nested_chain,
    select_strikes,
)
from tastyrec.dxlink.streamer import DXLinkStreamer
from tastyrec.events.market import Greeks
from tastyrec.exceptions import ApiError
from tastyrec.session import Session
from tastyrec.sim import SimConfig, Simulator
from tastyrec.sim.rest import ApiSimulator, nested_chain, occ_symbol, streamer_symbol

pytestmark = pytest.mark.anyio

NOW = datetime(2025, 1, 15, 15, 0, tzinfo=UTC).timestamp()  # a Wednesday
TODAY = date(2025, 1, 15)
DX = re.compile(r"^\.[A-Z]+\d{6}[CP]\d+(\.\d+)?$")  # the SDK's pattern for dxFeed symbols


def no_delays() -> Iterator[float]:
    return itertools.repeat(0.0)


@pytest.fixture
async def api() -> AsyncIterator[ApiSimulator]:
    async with ApiSimulator(clock=lambda: NOW) as server:
        yield server


@pytest.fixture
async def session(api: ApiSimulator) -> AsyncIterator[Session]:
    async with Session(
        api.client_secret, api.refresh_token, api_url=api.url, retry_delays=no_delays
    ) as s:
        yield s


async def test_spy_chain(session: Session, api: ApiSimulator) -> None:
    chain = await get_option_chain(session, "SPY")
    days = list(chain)
    assert days == sorted(days) and days[0] == TODAY  # a 0DTE expiration first
    assert all(d.weekday() < 5 for d in days)
    first = chain[days[0]]
    option = first[0]  # the SDK's seed example: chain[exp][0].streamer_symbol
    assert option.streamer_symbol.startswith(".SPY250115C")
    assert option.option_type is OptionType.CALL and first[1].option_type is OptionType.PUT
    assert first[1].strike_price == option.strike_price
    assert option.expiration_date == TODAY and option.days_to_expiration == 0
    assert option.underlying_symbol == option.root_symbol == "SPY"
    assert option.settlement_type == "PM" and option.shares_per_contract == 100
    spot = api.market.path("SPY", int(NOW * 1000))
    strikes = sorted({o.strike_price for o in first})
    assert strikes[0] < Decimal(spot) < strikes[-1]
    assert all(b - a == 1 for a, b in itertools.pairwise(strikes))
    for options in chain.values():
        assert len({o.streamer_symbol for o in options}) == len(options)
        for o in options:
            assert DX.match(o.streamer_symbol)
            assert isinstance(o.strike_price, Decimal)
            assert o.expiration_date == (TODAY + timedelta(days=o.days_to_expiration))
    # third Fridays are Regular expirations, the others Weekly
    assert chain[date(2025, 1, 17)][0].expiration_type == "Regular"
    assert chain[date(2025, 1, 16)][0].expiration_type == "Weekly"


async def test_spx_chain_has_two_roots(session: Session) -> None:
    chain = await get_option_chain(session, "SPX")
    monthly = chain[date(2025, 1, 17)]  # the third Friday: SPX (AM) and SPXW (PM) both expire
    assert {o.root_symbol for o in monthly} == {"SPX", "SPXW"}
    assert {o.settlement_type for o in monthly if o.root_symbol == "SPX"} == {"AM"}
    assert {o.settlement_type for o in monthly if o.root_symbol == "SPXW"} == {"PM"}
    assert {o.underlying_symbol for o in monthly} == {"SPX"}
    assert {o.root_symbol for o in chain[date(2025, 1, 16)]} == {"SPXW"}
    assert monthly[0].streamer_symbol.startswith(".SPX250117C")
    strikes = sorted({o.strike_price for o in monthly})
    assert all(b - a == 5 for a, b in itertools.pairwise(strikes))
    # SPX scale: 0-45 DTE holds well over 20,000 option symbols
    near = [o for options in chain.values() for o in options if o.days_to_expiration <= 45]
    assert len(near) > 20_000


async def test_unknown_symbol(session: Session) -> None:
    with pytest.raises(ApiError) as info:
        await get_option_chain(session, "NOPE")
    assert info.value.status_code == 404


async def test_matches_the_tastytrade_sdk(session: Session) -> None:
    instruments = pytest.importorskip("tastytrade.instruments")
    data = await session._get("/option-chains/SPX/nested")
    sdk_chains = [instruments.NestedOptionChain(**item) for item in data["items"]]
    assert [c.root_symbol for c in sdk_chains] == ["SPX", "SPXW"]
    ours = parse_nested_chain(data)
    sdk_symbols = {
        (s.call_streamer_symbol, s.put_streamer_symbol)
        for c in sdk_chains
        for e in c.expirations
        for s in e.strikes
    }
    assert len(sdk_symbols) * 2 == sum(len(v) for v in ours.values())
    for options in ours.values():
        for o in options[:50]:
            # the SDK's own conversions agree with the fake's symbols
            assert instruments.Option.occ_to_streamer_symbol(o.symbol) == o.streamer_symbol
            assert instruments.Option.streamer_symbol_to_occ(o.streamer_symbol) == o.symbol
    # the SDK's get_option_chain signature works with our Session for the nested models too
    sdk_nested = await instruments.NestedOptionChain.get(session, "SPY")
    assert sdk_nested[0].expirations[0].strikes[0].call_streamer_symbol == (
        (await get_option_chain(session, "SPY"))[TODAY][0].streamer_symbol
    )


async def test_chain_symbols_stream_from_the_simulator() -> None:
    config = SimConfig(keepalive_timeout=5.0, greeks_rate_hz=20.0)
    async with (
        Simulator(seed=3, token="chain-token", config=config) as sim,
        ApiSimulator(sim) as api,  # the real clock: the simulator prices live options only
        Session(api.client_secret, api.refresh_token, api_url=api.url) as session,
    ):
        chain = await get_option_chain(session, "SPY")
        spot = api.market.path("SPY", int(datetime.now(UTC).timestamp() * 1000))
        chosen = select_strikes(chain, spot, strikes=2, dte=(1, 7))
        symbols = [o.streamer_symbol for o in chosen]
        days = {o.expiration_date for o in chosen}
        assert len(days) >= 4 and len(symbols) == len(days) * 2 * 2 * 2  # 2 a side, C and P
        async with DXLinkStreamer(session, keepalive_timeout=2.0, connect_timeout=5) as streamer:
            await streamer.subscribe(Greeks, symbols)
            seen: set[str] = set()
            with anyio.fail_after(10):
                while seen != set(symbols):
                    greeks = await streamer.get_event(Greeks)
                    seen.add(greeks.event_symbol)
                    assert 0 < abs(greeks.delta) < 1 and greeks.volatility > 0


# --- pure: parsing and selection -----------------------------------------------------------------


def chain_of(
    spot: float = 100.0, today: date = TODAY, symbol: str = "SPY"
) -> dict[date, list[Option]]:
    return parse_nested_chain({"items": nested_chain(symbol, spot, today, max_dte=10)})


def test_symbols() -> None:
    assert streamer_symbol("SPY", date(2025, 1, 17), True, 600.0) == ".SPY250117C600"
    assert streamer_symbol("SPY", date(2025, 1, 17), False, 602.5) == ".SPY250117P602.5"
    assert occ_symbol("SPY", date(2025, 1, 17), False, 602.5) == "SPY   250117P00602500"
    assert occ_symbol("SPXW", date(2025, 1, 17), True, 5000) == "SPXW  250117C05000000"


def test_fractional_strikes_parse_exactly() -> None:
    chain = chain_of(spot=100.0, symbol="AAPL")  # 2.5 increments
    strikes = sorted({o.strike_price for o in chain[TODAY]})
    assert Decimal("102.5") in strikes
    (call,) = [
        o for o in chain[TODAY] if o.strike_price == Decimal("102.5") and o.option_type == "C"
    ]
    assert call.streamer_symbol == ".AAPL250115C102.5"


def test_select_strikes_either_side_per_expiry() -> None:
    chain = chain_of(spot=100.0)  # strikes 85..115 by 1
    chosen = select_strikes(chain, 100.4, strikes=2, dte=(0, 1))
    assert {o.expiration_date for o in chosen} == {TODAY, TODAY + timedelta(days=1)}
    today = [o for o in chosen if o.expiration_date == TODAY]
    assert [(float(o.strike_price), o.option_type.value) for o in today] == [
        (99.0, "C"), (99.0, "P"), (100.0, "C"), (100.0, "P"),
        (101.0, "C"), (101.0, "P"), (102.0, "C"), (102.0, "P"),
    ]  # fmt: skip
    # a price on a strike counts that strike as the first above
    on = select_strikes(chain, 100.0, strikes=1, dte=(0, 0))
    assert sorted({float(o.strike_price) for o in on}) == [99.0, 100.0]
    # at the edge of the chain: what there is
    low = select_strikes(chain, 10.0, strikes=3, dte=(0, 0))
    assert sorted({float(o.strike_price) for o in low}) == [85.0, 86.0, 87.0]
    assert select_strikes(chain, 100.0, strikes=0) == []


def test_select_strikes_dte_range_and_roots() -> None:
    chain = chain_of(spot=5600.0, symbol="SPX")
    chosen = select_strikes(chain, 5600.0, strikes=5, dte=(1, 3))
    days = {o.expiration_date for o in chosen}
    assert days == {TODAY + timedelta(days=d) for d in (1, 2)}  # Thu, Fri (Sat, Sun: none)
    friday = [o for o in chosen if o.expiration_date == date(2025, 1, 17)]
    assert {o.root_symbol for o in friday} == {"SPX", "SPXW"}
    assert len(friday) == 2 * 10 * 2  # per root: 10 strikes, call and put
    # days counted from another date
    later = select_strikes(chain, 5600.0, strikes=1, dte=(0, 0), today=date(2025, 1, 16))
    assert {o.expiration_date for o in later} == {date(2025, 1, 16)}


def test_parse_dte() -> None:
    assert parse_dte("0-45") == (0, 45)
    assert parse_dte(" 7 ") == (7, 7)
    for bad in ("", "a-b", "45-0", "-3", "1-2-3"):
        with pytest.raises(ValueError, match="DTE"):
            parse_dte(bad)


def test_malformed_chain() -> None:
    good: dict[str, Any] = {"items": nested_chain("SPY", 100.0, TODAY, max_dte=1)}
    del good["items"][0]["expirations"][0]["strikes"][0]["put-streamer-symbol"]
    with pytest.raises(ApiError, match="not a nested chain"):
        parse_nested_chain(good)
    with pytest.raises(ApiError):
        parse_nested_chain({})
