"""An unmodified real DXLink client, the tastytrade SDK's DXLinkStreamer, against the simulator."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import anyio
import pytest

from tastyrec.dxlink.messages import Auth, ChannelRequest, FeedSetup, FeedSubscription
from tastyrec.events import REMOVE_EVENT, SNAPSHOT_BEGIN, SNAPSHOT_END
from tastyrec.sim import SimConfig, Simulator

dxfeed = pytest.importorskip("tastytrade.dxfeed")
streamer_mod = pytest.importorskip("tastytrade.streamer")

OPTION = ".SPY261218C600"
TIMEOUT = 15.0


class StubSession:
    """Just what DXLinkStreamer uses of a tastytrade Session."""

    client_kwargs: dict[str, Any] = {}

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    async def _get(self, path: str) -> dict[str, Any]:
        assert path == "/api-quote-tokens"
        return {"dxlink-url": self.sim.url, "token": self.sim.token, "level": "api"}


def _close_sdk_streams(streamer: Any) -> None:
    """The SDK never closes its per-type memory streams; anyio then warns (ResourceWarning)
    when they are garbage-collected, which ``filterwarnings = error`` turns into a failure at
    session end. Close them here, for the SDK."""
    for stream in [*streamer._send.values(), *streamer._recv.values()]:
        stream.close()


async def test_sdk_streamer_receives_every_event_type():
    config = SimConfig(profile_rate_hz=1.0, summary_rate_hz=1.0, candle_rate_hz=2.0)
    start = datetime.now(UTC) - timedelta(hours=3)
    async with (
        Simulator(port=0, token="sim-token", config=config) as sim,
        streamer_mod.DXLinkStreamer(StubSession(sim)) as streamer,
    ):
        await streamer.subscribe(dxfeed.Quote, ["SPY", "SPX"])
        await streamer.subscribe(dxfeed.Trade, ["AAPL"])
        await streamer.subscribe(dxfeed.Greeks, [OPTION])
        await streamer.subscribe(dxfeed.Summary, ["SPY"])
        await streamer.subscribe(dxfeed.Profile, ["AAPL"])
        await streamer.subscribe(dxfeed.TimeAndSale, ["SPY"])
        await streamer.subscribe(dxfeed.TheoPrice, [OPTION])
        await streamer.subscribe(dxfeed.Underlying, ["SPY"])
        await streamer.subscribe_candle(["SPY"], "1h", start)

        with anyio.fail_after(TIMEOUT):
            quotes = {}
            while len(quotes) < 2:
                q = await streamer.get_event(dxfeed.Quote)
                quotes[q.event_symbol] = q
            for q in quotes.values():
                assert Decimal(0) < q.bid_price < q.ask_price
            assert quotes["SPX"].bid_size == 0  # "NaN" on the wire -> the SDK's default
            assert quotes["SPX"].bid_exchange_code == "\x00"

            trade = await streamer.get_event(dxfeed.Trade)
            assert trade.event_symbol == "AAPL" and trade.price > 0 and trade.day_volume > 0

            greeks = await streamer.get_event(dxfeed.Greeks)
            assert greeks.event_symbol == OPTION
            assert 0 < greeks.delta < 1 and greeks.gamma > 0 and greeks.volatility > 0

            theo = await streamer.get_event(dxfeed.TheoPrice)
            assert theo.event_symbol == OPTION and theo.underlying_price > 100

            summary = await streamer.get_event(dxfeed.Summary)
            assert summary.day_low_price <= summary.day_open_price <= summary.day_high_price
            assert summary.day_close_price is None  # "NaN" on the wire

            profile = await streamer.get_event(dxfeed.Profile)
            assert profile.description and profile.trading_status == "ACTIVE"
            assert profile.free_float is None

            sale = await streamer.get_event(dxfeed.TimeAndSale)
            assert sale.event_symbol == "SPY" and sale.bid_price <= sale.price <= sale.ask_price
            assert sale.size > 0 and sale.buyer is None

            underlying = await streamer.get_event(dxfeed.Underlying)
            assert underlying.event_symbol == "SPY" and underlying.volatility > 0
            assert underlying.option_volume == underlying.call_volume + underlying.put_volume

            # FIELD_REPORTS #3: the SDK asks for candles on an AUTO channel, where production
            # answers with an explicitly empty snapshot (eventFlags 14 = SNAPSHOT_BEGIN |
            # SNAPSHOT_END | REMOVE_EVENT, NaN prices, which the SDK turns into 0) instead of the
            # 3 hours of history asked for, and nothing after it; history needs contract HISTORY.
            candle = await streamer.get_event(dxfeed.Candle)
            # until a quote the simulator made 3 s later has come through the same socket: live
            # candles (each 0.5 s on a HISTORY channel) would have come before it
            later_ms = time.time() * 1000 + 3000
            while (await streamer.get_event(dxfeed.Quote)).bid_time < later_ms:
                pass
        assert candle.event_symbol == "SPY{=h,tho=true}"
        assert candle.event_flags == SNAPSHOT_BEGIN | SNAPSHOT_END | REMOVE_EVENT == 14
        assert (candle.open, candle.high, candle.low, candle.close) == (0, 0, 0, 0)
        assert candle.volume is None and candle.vwap is None
        assert streamer.get_event_nowait(dxfeed.Candle) is None

    _close_sdk_streams(streamer)

    # the SDK spoke the protocol the way DXLINK.md says it does
    assert any(isinstance(m, Auth) for m in sim.received)
    setups = [m for m in sim.received if isinstance(m, FeedSetup)]
    assert {name for m in setups for name in (m.accept_event_fields or {})} >= {
        "Quote",
        "Candle",
        "TimeAndSale",
    }
    subs = [m for m in sim.received if isinstance(m, FeedSubscription)]
    (candle_sub,) = [s for m in subs for s in m.add or () if s.type == "Candle"]
    assert candle_sub.from_time == round(start.timestamp() * 1000)
    requests = [m for m in sim.received if isinstance(m, ChannelRequest)]
    assert {m.parameters["contract"] for m in requests} == {"AUTO"}  # Candle's channel too
