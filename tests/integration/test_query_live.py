"""SQL over a running recorder: Parquet files and the journal tail in one view, no duplicates."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tastyrec.dxlink.streamer import DXLinkStreamer
from tastyrec.events import Quote, Trade
from tastyrec.query import connect
from tastyrec.record.recorder import Recorder
from tastyrec.record.sink import RotationPolicy
from tastyrec.sim import Simulator
from tastyrec.sim.engine import SimConfig
from tests.integration.waits import fast_delays, wait_until

pytestmark = pytest.mark.anyio

SAMPLE = Path(__file__).parent.parent / "data" / "sample"
SYMBOLS = ["SPY", "QQQ", "AAPL"]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    config = SimConfig(keepalive_timeout=5.0, quote_rate_hz=50.0)
    async with Simulator(seed=5, token=None, config=config) as server:
        yield server


def sample_rows(event_type: str) -> int:
    return sum(pq.read_metadata(f).num_rows for f in SAMPLE.glob(f"{event_type}/*/*.parquet"))


def counts(con, types) -> dict[str, int]:
    return {t: con.sql(f'SELECT count(*) FROM "{t}"').fetchall()[0][0] for t in types}


async def test_live_views_cover_files_and_the_tail_through_rotations(sim, tmp_path):
    out = tmp_path / "rec"
    shutil.copytree(SAMPLE, out)  # history from an earlier session
    history = {t: sample_rows(t) for t in ("Quote", "Trade")}
    streamer = DXLinkStreamer(
        url=sim.url,
        token=None,
        queue_size=0,
        tap_interval=0.05,
        keepalive_timeout=10.0,  # the watchdog is tested on its own: no false alarms here
        reconnect_delays=fast_delays,
    )
    mixed = 0
    snapshots = 0
    async with streamer:
        rotation = RotationPolicy(max_rows=20)
        async with Recorder(out, streamer, rotation=rotation, recover=False) as recorder:
            await streamer.subscribe(Quote, SYMBOLS)
            await streamer.subscribe(Trade, SYMBOLS)
            seen = 0
            # bounded by iterations, each wait by WAIT_S: a snapshot costs ~0.1-0.3 s of DuckDB,
            # so a bound on the whole loop's time would measure the machine's load
            while (snapshots < 40 or mixed < 3) and snapshots < 400:
                # the next snapshot once the recorder has more rows than the last one saw
                await wait_until(lambda: sum(recorder.stats.rows.values()) > seen)  # noqa: B023
                seen = sum(recorder.stats.rows.values())
                # no await between the snapshot and reading the counters it must equal
                con = recorder.connect()
                recorded = dict(recorder.stats.rows)
                in_files = sum(f.rows for f in recorder.files if f.event_type == "Quote")
                got = counts(con, recorded)
                expected = {t: n + history.get(t, 0) for t, n in recorded.items()}
                assert got == expected
                # rows of this session: from files and from the journal tail, once each
                tail = recorded.get("Quote", 0) - in_files
                mixed += in_files > 0 and tail > 0
                snapshots += 1
                # the tail carries the partition date like the files do
                nulls = con.sql("SELECT count(*) FROM Quote WHERE date IS NULL").fetchall()
                assert nulls == [(0,)]
                con.close()
            assert recorder.stats.files >= 2  # rotations happened meanwhile
        final = dict(recorder.stats.rows)
    # after the recorder: the files alone hold the same rows
    con = connect(out)
    assert counts(con, final) == {t: n + history.get(t, 0) for t, n in final.items()}
    assert mixed >= 3


async def test_user_events_are_in_the_live_view_before_any_file(tmp_path):
    async with Recorder(tmp_path, recover=False) as recorder:
        recorder.record(Quote("SPY", 0, 1, 0, 0, "Q", 0, "Q", 1.0, 2.0, 3.0, 4.0))
        con = recorder.connect()  # buffered events count as received
        assert not recorder.files
        rows = con.sql("SELECT event_symbol, bid_price, ask_price FROM Quote").fetchall()
        assert rows == [("SPY", 1.0, 2.0)]
        assert con.sql("SELECT count(*) FROM sessions").fetchall() == [(1,)]
        tail_types = con.sql("DESCRIBE Quote").fetchall()
    # the journal tail has the columns and types the files have
    file_types = connect(tmp_path).sql("DESCRIBE Quote").fetchall()
    assert [r[:2] for r in tail_types] == [r[:2] for r in file_types]
    assert ("recv_ns", "TIMESTAMP WITH TIME ZONE") in [r[:2] for r in file_types]
