"""Candles in recordings: history from a HISTORY channel, and no empty snapshot taken for a bar.

FIELD_REPORTS #3: on a channel with contract AUTO production answers a Candle subscription with
one event, eventFlags 14 (SNAPSHOT_BEGIN | SNAPSHOT_END | REMOVE_EVENT) and NaN prices: an
explicitly empty snapshot. The recorder leaves such snapshot markers out of the tables users query
(:mod:`tastyrec.record._snapshots`); these tests make the simulator send one, through tastyrec's
streamer with its Candle channel forced to AUTO (what the tastytrade SDK does) and through
``Recorder.record`` (what an SDK user hands over).
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest

from tastyrec.dxlink import protocol
from tastyrec.dxlink.streamer import DXLinkStreamer
from tastyrec.events import EMPTY_SNAPSHOT, REMOVE_EVENT, SNAPSHOT_BEGIN, Candle, Quote
from tastyrec.query import connect
from tastyrec.record.recorder import Recorder
from tastyrec.sim import SimConfig, Simulator
from tests.integration.waits import fast_delays, wait_until

pytestmark = pytest.mark.anyio



@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    config = SimConfig(keepalive_timeout=5.0, candle_rate_hz=2.0)
    async with Simulator(seed=3, token=None, config=config) as server:
        yield server


def streamer_for(server: Simulator) -> DXLinkStreamer:
    return DXLinkStreamer(
        url=server.url,
        token=None,
        queue_size=0,
        tap_interval=0.05,
        keepalive_timeout=10.0,
        reconnect_delays=fast_delays,
    )


def contract_of(root: Path, event_type: str) -> set[bytes]:
    return {
        pq.read_metadata(path).metadata[b"tastyrec.dxlink_contract"]
        for path in (root / event_type).rglob("*.parquet")
    }


async def test_candle_history_is_recorded_from_a_history_channel(
    sim: Simulator, tmp_path: Path
) -> None:
    """tastyrec's own streamer: bars, no marker, and the files say which contract they came from."""
    start = datetime.now(UTC) - timedelta(minutes=30)
    async with streamer_for(sim) as streamer, Recorder(tmp_path, streamer) as recorder:
        await streamer.subscribe(Quote, ["SPY"])
        await streamer.subscribe_candle(["SPY"], "1m", start_time=start)
        await wait_until(
            lambda: recorder.stats.rows["Candle"] > 31 and recorder.stats.rows["Quote"]
        )
    candles = pl.read_parquet(tmp_path / "Candle" / "*" / "*.parquet")
    assert candles["event_flags"].to_list()[0] == SNAPSHOT_BEGIN
    assert (candles["event_flags"] & REMOVE_EVENT).sum() == 0
    assert candles["low"].max() <= candles["high"].max() and not candles["open"].is_nan().any()
    assert contract_of(tmp_path, "Candle") == {b"HISTORY"}
    assert contract_of(tmp_path, "Quote") == {b"AUTO"}


async def test_an_empty_snapshot_from_an_auto_channel_is_not_recorded(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Candles asked for on AUTO get only the empty snapshot: no Candle row at all, a warning
    once per symbol that says why, and the rest of the recording as usual."""
    caplog.set_level(logging.WARNING, logger="tastyrec")
    monkeypatch.setattr(protocol, "FEED_CONTRACTS", {})  # every channel AUTO, as the SDK's
    start = datetime.now(UTC) - timedelta(days=90)
    async with streamer_for(sim) as streamer, Recorder(tmp_path, streamer) as recorder:
        await streamer.subscribe_candle(["SPY", "QQQ"], "1d", start_time=start)
        await streamer.subscribe(Quote, ["SPY"])
        markers = recorder._markers.dropped
        await wait_until(lambda: len(markers) == 2 and recorder.stats.rows["Quote"] > 0)
        candle_channel = next(
            ch for ch in streamer.protocol.channels.values() if ch.event_type == "Candle"
        )
        assert candle_channel.contract == "AUTO"
        assert recorder.frame(Candle).height == 0
    assert markers == {("Candle", "SPY{=d,tho=true}"): 1, ("Candle", "QQQ{=d,tho=true}"): 1}
    assert streamer.stats.events > recorder.stats.rows_written  # the two markers did arrive
    assert "Candle" not in recorder.stats.rows
    assert not (tmp_path / "Candle").exists()
    assert pl.read_parquet(tmp_path / "Quote" / "*" / "*.parquet").height > 0
    warnings = [r.getMessage() for r in caplog.records if "empty Candle snapshot" in r.getMessage()]
    assert sorted(warnings) == [
        f"< the server sent an empty Candle snapshot for {s!r} (eventFlags 14: no history from "
        "fromTime; on a channel with contract AUTO that is all production sends): it is no bar, "
        "so it is not recorded"
        for s in ("QQQ{=d,tho=true}", "SPY{=d,tho=true}")
    ]


async def test_record_keeps_bars_and_removals_and_drops_snapshot_markers(tmp_path: Path) -> None:
    """Events handed to ``record()`` (tastyrec Structs and the tastytrade SDK's objects): the
    empty snapshot and a snapshot-closing marker are left out of Parquet, the live frame and
    DuckDB; a bar and a plain removal (REMOVE_EVENT alone, "the bar at this index is gone") are
    data and are kept."""
    from tastytrade.dxfeed import Candle as SDKCandle

    t = 1_795_000_020_000
    bar = Candle("SPY{=m}", 0, 0, 1, t, 0, 10, 100.0, 1.5, 40.0, 50.0, math.nan, math.nan,
                 1.0, 2.0, 0.5, 1.5)  # fmt: skip
    removal = Candle("SPY{=m}", 0, REMOVE_EVENT, 2, t - 60_000)
    empty = Candle("QQQ{=m}", event_flags=EMPTY_SNAPSHOT)
    closing = Candle("SPY{=m}", event_flags=REMOVE_EVENT | 0x08)  # SNAPSHOT_END at index 0
    sdk_empty: Any = SDKCandle(
        event_symbol="IWM{=m}",
        event_time=0,
        event_flags=EMPTY_SNAPSHOT,
        index=0,
        time=0,
        sequence=0,
        count=0,
        open="NaN",
        high="NaN",
        low="NaN",
        close="NaN",
    )
    async with Recorder(tmp_path) as recorder:
        recorder.record(empty, bar, closing, removal, sdk_empty)
        await wait_until(lambda: recorder.stats.rows["Candle"] == 2)
        live = recorder.frame(Candle)
        assert live["event_flags"].to_list() == [0, REMOVE_EVENT]
    assert recorder._markers.dropped == {
        ("Candle", "QQQ{=m}"): 1,
        ("Candle", "SPY{=m}"): 1,
        ("Candle", "IWM{=m}"): 1,
    }
    stored = pl.read_parquet(tmp_path / "Candle" / "*" / "*.parquet")
    assert stored["event_flags"].to_list() == [0, REMOVE_EVENT]
    assert stored["open"].to_list()[0] == 1.0
    con = connect(tmp_path)
    assert con.execute('SELECT count(*), max(high) FROM "Candle"').fetchone() == (2, 2.0)
