"""Production's failure modes (FIELD_REPORTS.md #4-#6), provoked by the simulator's chaos kinds,
survived by DXLinkStreamer + Recorder over real websockets on loopback.

Each test records, provokes the fault, lets recording go on, then stalls the simulator and waits
(``quiesce``) until the client has received exactly what was sent; the recording must then equal
what the server sent (decoded independently by tests/integration/wire.py): nothing lost, nothing
twice, nothing misdecoded, and a break in the stream is a gap row saying why.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tastyrec.dxlink.streamer import DXLinkStreamer
from tastyrec.events import Quote, TimeAndSale
from tastyrec.record.recorder import Recorder
from tastyrec.sim import Simulator
from tastyrec.sim.engine import SimConfig
from tastyrec.sim.server import CHAOS_502_REFUSALS
from tests.integration.manual_time import Reconnects
from tests.integration.waits import fast_delays, wait_until
from tests.integration.wire import expected_rows, recorded_rows, sent_events

pytestmark = pytest.mark.anyio



@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    config = SimConfig(keepalive_timeout=30.0, quote_rate_hz=20.0, time_and_sale_rate_hz=10.0)
    async with Simulator(seed=5, token="tok", config=config, keep_sent=True) as server:
        yield server


def streamer_for(server: Simulator) -> DXLinkStreamer:
    return DXLinkStreamer(
        url=server.url,
        token="tok",
        queue_size=0,
        tap_interval=0.05,
        keepalive_timeout=30.0,
        reconnect_delays=fast_delays,
    )



async def settle(server: Simulator, streamer: DXLinkStreamer) -> int:
    """Stop the server sending and wait until the client has received all it sent."""
    server.stall(True)
    await server.quiesce()
    assert server.sent is not None
    total = sum(len(v) for v in sent_events(server.sent).values())
    await wait_until(lambda: streamer.stats.events == total)
    return total


async def more_rows(recorder: Recorder) -> None:
    """Wait until both types have been recorded further than now."""
    before = (recorder.stats.rows["Quote"], recorder.stats.rows["TimeAndSale"])
    await wait_until(
        lambda: (
            recorder.stats.rows["Quote"] > before[0]
            and recorder.stats.rows["TimeAndSale"] > before[1]
        )
    )


async def record_through(
    server: Simulator, root: Path, fault: Callable[[DXLinkStreamer], Any]
) -> tuple[Recorder, DXLinkStreamer]:
    async with streamer_for(server) as streamer:
        async with Recorder(root, streamer) as recorder:
            await streamer.subscribe(Quote, ["SPY", "SPX"])
            await streamer.subscribe(TimeAndSale, ["SPY"])
            await more_rows(recorder)
            await fault(streamer)
            await more_rows(recorder)  # recording goes on after the fault
            await settle(server, streamer)
    # leaving the Recorder wrote everything received to Parquet
    return recorder, streamer


def assert_recorded_what_was_sent(server: Simulator, root: Path, streamer: DXLinkStreamer) -> None:
    assert server.sent is not None
    sent = sent_events(server.sent)
    for cls in (Quote, TimeAndSale):
        expected = expected_rows(cls, sent[cls.__name__])
        assert expected
        assert recorded_rows(root, cls) == expected, cls.__name__
    assert streamer.stats.bad_frames == 0 and not streamer.stats.skipped


def gap_rows(root: Path) -> list[dict[str, Any]]:
    [gap_file] = (root / "_gaps").glob("*.parquet")
    return list(pl.read_parquet(gap_file).iter_rows(named=True))


async def test_close_1012_service_restart_reconnects_resubscribes_and_records_a_gap(
    sim: Simulator, tmp_path: Path
) -> None:
    """FIELD_REPORTS #4: dxFeed closes with 1012 "Reconnection is required"."""

    async def restart(streamer: DXLinkStreamer) -> None:
        reconnects = Reconnects(streamer)
        await sim.restart()
        await reconnects.wait()
        assert streamer.gaps and streamer.gaps[-1].resumed_ns is not None

    recorder, streamer = await record_through(sim, tmp_path, restart)
    assert_recorded_what_was_sent(sim, tmp_path, streamer)
    [gap] = gap_rows(tmp_path)
    assert "1012" in gap["reason"] and "Reconnection is required" in gap["reason"]
    assert gap["last_received"] <= gap["disconnected"] < gap["resumed"]
    assert streamer.stats.connects == 2 and recorder.stats.reconnects == 1
    # the new connection asked for every subscription again
    adds = [
        (a.type, a.symbol)
        for msg in sim.received
        if type(msg).__name__ == "FeedSubscription"
        for a in (msg.add or ())  # type: ignore[union-attr]
    ]
    assert sorted(adds) == sorted(2 * [("Quote", "SPY"), ("Quote", "SPX"), ("TimeAndSale", "SPY")])


async def test_a_silent_switch_to_full_loses_and_garbles_nothing(
    sim: Simulator, tmp_path: Path
) -> None:
    """FIELD_REPORTS #5: a channel goes from COMPACT to FULL mid-session without FEED_CONFIG.
    Nothing breaks, so there is no gap; the switch is counted and logged instead."""

    async def switch(streamer: DXLinkStreamer) -> None:
        await sim.switch_format()
        await wait_until(lambda: streamer.stats.format_switches == 2)  # both channels

    recorder, streamer = await record_through(sim, tmp_path, switch)
    assert sim.sent is not None
    data = [f for f in sim.sent if '"FEED_DATA"' in str(f)]
    assert '"data":["' in str(data[0]) and '"data":[{' in str(data[-1])  # COMPACT, then FULL
    assert_recorded_what_was_sent(sim, tmp_path, streamer)
    assert not streamer.gaps and recorder.stats.gaps == 0
    assert streamer.stats.connects == 1


async def test_502_on_the_upgrade_is_retried_and_recorded_in_the_gap(
    sim: Simulator, tmp_path: Path
) -> None:
    """FIELD_REPORTS #6: intermittent 502 Bad Gateway on the websocket upgrade."""

    async def bad_gateway(streamer: DXLinkStreamer) -> None:
        # everything sent so far is received before the connection is cut (an abort would
        # lose frames still in the socket buffers, which no client can get back)
        await settle(sim, streamer)
        reconnects = Reconnects(streamer)
        sim.refuse_upgrades(CHAOS_502_REFUSALS)  # what the "502" chaos does
        await sim.drop()
        sim.stall(False)
        await reconnects.wait()
        assert streamer.gaps and streamer.gaps[-1].resumed_ns is not None

    recorder, streamer = await record_through(sim, tmp_path, bad_gateway)
    assert sim.refused_upgrades == CHAOS_502_REFUSALS
    assert streamer.stats.failed_connects == CHAOS_502_REFUSALS
    assert_recorded_what_was_sent(sim, tmp_path, streamer)
    [gap] = gap_rows(tmp_path)
    assert f"{CHAOS_502_REFUSALS} reconnect attempt(s) failed" in gap["reason"]
    assert "HTTP 502" in gap["reason"]
    assert streamer.stats.connects == 2


async def test_a_502_before_the_first_connection_is_retried(sim: Simulator) -> None:
    sim.refuse_upgrades(2)
    async with streamer_for(sim) as streamer:
        await streamer.subscribe(Quote, ["SPY"])
        await wait_until(lambda: streamer.stats.events > 0)
    assert sim.refused_upgrades == 2 and streamer.stats.failed_connects == 2
    assert not streamer.gaps  # nothing was being recorded yet


@pytest.mark.parametrize("kind", ["restart", "502"])
async def test_the_chaos_schedule_fires_the_new_kinds(kind: str) -> None:
    config = SimConfig(chaos=((kind, 0.3),), keepalive_timeout=30.0)
    async with Simulator(token=None, config=config) as server:
        streamer = DXLinkStreamer(
            url=server.url, token=None, queue_size=10, reconnect_delays=fast_delays
        )
        reconnects = Reconnects(streamer)
        async with streamer:
            await streamer.subscribe(Quote, ["SPY"])
            await reconnects.wait()
            assert len(streamer.gaps) >= 1 and streamer.gaps[0].resumed_ns
    reason = streamer.gaps[0].reason
    assert ("1012" in reason) if kind == "restart" else ("HTTP 502" in reason)


async def test_the_chaos_schedule_switches_format() -> None:
    config = SimConfig(chaos=(("full", 0.3),), keepalive_timeout=30.0)
    async with Simulator(token=None, config=config) as server:
        streamer = DXLinkStreamer(url=server.url, token=None, queue_size=1000)
        async with streamer:
            await streamer.subscribe(Quote, ["SPY"])
            await wait_until(lambda: streamer.stats.format_switches >= 2)  # to FULL and back
            before = streamer.stats.events
            await wait_until(lambda: streamer.stats.events > before)
    assert streamer.stats.bad_frames == 0 and not streamer.gaps
