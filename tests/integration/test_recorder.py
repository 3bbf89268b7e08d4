"""The Recorder against the simulator over loopback: real websockets, real Parquet, real DuckDB."""

from __future__ import annotations

import base64
import json
import logging
import math
import time
import traceback
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest

from tastyrec.dxlink.streamer import DXLinkStreamer
from tastyrec.events import Greeks, Profile, Quote, Summary, Trade
from tastyrec.exceptions import SchemaError
from tastyrec.record.recorder import Recorder
from tastyrec.record.sink import RotationPolicy
from tastyrec.sim import Simulator
from tastyrec.sim.engine import SimConfig
from tastyrec.storage.layout import partition_date
from tests.integration.manual_time import ManualTime
from tests.integration.waits import WAIT_S, fast_delays, wait_until
from tests.integration.wire import expected_rows, recorded_rows, sent_events

pytestmark = pytest.mark.anyio

OPTION = ".SPY261218C600"
SYMBOLS = ["SPY", "QQQ", "AAPL", OPTION]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    config = SimConfig(keepalive_timeout=5.0, quote_rate_hz=50.0)
    async with Simulator(seed=3, token=None, config=config, keep_sent=True) as server:
        yield server


def streamer_for(server: Simulator, **kwargs: Any) -> DXLinkStreamer:
    options: dict[str, Any] = {
        "url": server.url,
        "token": None,
        "queue_size": 0,
        "tap_interval": 0.05,
        "keepalive_timeout": 10.0,  # the watchdog is tested on its own: no false alarms here
        "reconnect_delays": fast_delays,
        **kwargs,
    }
    return DXLinkStreamer(**options)


# the independent decoder of what the simulator sent: tests/integration/wire.py


def every_type(quotes: int = 20) -> Callable[[Recorder], bool]:
    """Until every subscribed type has rows, and ``quotes`` quotes."""
    types = ("Quote", "Trade", "Greeks", "Summary", "Profile")
    return lambda r: all(r.stats.rows.get(t) for t in types) and r.stats.rows["Quote"] >= quotes


async def record_and_stop(
    server: Simulator,
    root: Path,
    until: Callable[[Recorder], bool] | None = None,
    **recorder_options: Any,
) -> tuple[Recorder, DXLinkStreamer]:
    until = until or every_type()
    async with streamer_for(server) as streamer:
        async with Recorder(root, streamer, **recorder_options) as recorder:
            await streamer.subscribe(Quote, SYMBOLS)
            await streamer.subscribe(Trade, SYMBOLS[:3])
            await streamer.subscribe(Greeks, [OPTION])
            await streamer.subscribe(Summary, SYMBOLS)
            await streamer.subscribe(Profile, SYMBOLS)
            await wait_until(lambda: until(recorder))
            server.stall(True)  # nothing more is sent; what was sent must all arrive
            assert server.sent is not None
            await server.quiesce()  # a send already under way when the stall began completes
            sent = sum(len(v) for v in sent_events(server.sent).values())
            await wait_until(lambda: streamer.stats.events == sent)
    return recorder, streamer


# --- exactly once, content equal ------------------------------------------------------------------


async def test_every_sent_event_is_recorded_exactly_once(sim: Simulator, tmp_path: Path) -> None:
    recorder, streamer = await record_and_stop(sim, tmp_path)
    assert sim.sent is not None
    sent = sent_events(sim.sent)
    assert {"Quote", "Trade", "Greeks", "Summary", "Profile"} <= set(sent)
    for cls in (Quote, Trade, Greeks, Summary, Profile):
        expected = expected_rows(cls, sent[cls.__name__])
        assert recorded_rows(tmp_path, cls) == expected, cls.__name__
        assert recorder.stats.rows[cls.__name__] == len(expected)
    total = sum(len(v) for v in sent.values())
    assert recorder.stats.rows_written == total == streamer.stats.events
    assert not list(tmp_path.rglob("*.arrows")) and not list(tmp_path.rglob("*.tmp"))


async def test_journaled_bytes_are_what_the_journal_holds_before_any_file(
    sim: Simulator, tmp_path: Path
) -> None:
    """The status display's "saved" figures: rows and bytes in the journal, while no Parquet
    file exists yet (files appear only at rotation, an hour by default)."""
    async with streamer_for(sim) as streamer, Recorder(tmp_path, streamer) as recorder:
        day = partition_date(time.time_ns())
        await streamer.subscribe(Quote, SYMBOLS)
        await wait_until(lambda: recorder.stats.rows["Quote"] >= 20)
        # no await between a journal write and its count: this holds at any await point
        on_disk = sum(p.stat().st_size for p in tmp_path.rglob("*.arrows"))
        stats = recorder.stats
        if partition_date(time.time_ns()) != day:  # a New York midnight sealed a segment
            pytest.skip("crossed a New York midnight while recording; run it again")
        assert stats.files == 0
        assert stats.journal_bytes == on_disk > 0


async def test_rotation_during_recording_loses_nothing(sim: Simulator, tmp_path: Path) -> None:
    recorder, _ = await record_and_stop(
        sim, tmp_path, every_type(quotes=60), rotation=RotationPolicy(max_rows=10)
    )
    assert sim.sent is not None
    sent = sent_events(sim.sent)
    files = list((tmp_path / "Quote").glob("date=*/*.parquet"))
    assert len(files) >= 3
    assert all(pq.read_metadata(f).num_rows < 10 + 4096 for f in files)
    assert recorded_rows(tmp_path, Quote) == expected_rows(Quote, sent["Quote"])
    assert recorder.stats.files == len(list(tmp_path.glob("*/date=*/*.parquet")))


async def test_duckdb_reads_the_recording(sim: Simulator, tmp_path: Path) -> None:
    from tastyrec.storage.layout import partition_date

    day_before = partition_date(time.time_ns())
    recorder, _ = await record_and_stop(sim, tmp_path)
    days = {day_before.isoformat(), partition_date(time.time_ns()).isoformat()}
    con = duckdb.connect()
    glob = str(tmp_path / "Quote" / "*" / "*.parquet")
    rows = con.execute(
        f"SELECT count(*), count(DISTINCT event_symbol), typeof(any_value(recv_ns)), "
        f"typeof(any_value(bid_time)), any_value(date) FROM read_parquet('{glob}', "
        "hive_partitioning = true)"
    ).fetchone()
    assert rows is not None
    count, symbols, recv_type, time_type, day = rows
    assert count == recorder.stats.rows["Quote"] and symbols == len(SYMBOLS)
    # nanosecond receipt times: DuckDB 2 has a time-zone-aware nanosecond type for them
    assert recv_type in ("TIMESTAMPTZ_NS", "TIMESTAMP WITH TIME ZONE")
    assert time_type == "TIMESTAMP WITH TIME ZONE"
    assert str(day) in days  # the New York date (a recording can span midnight)


async def test_sessions_table_and_metadata(sim: Simulator, tmp_path: Path) -> None:
    recorder, _ = await record_and_stop(sim, tmp_path)
    [session_file] = (tmp_path / "_sessions").glob("*.parquet")
    [session] = pq.read_table(session_file).to_pylist()
    assert session["session_id"] == recorder.session_id and session["status"] == "ended"
    assert session["start"] < session["end"]
    assert session["source"] == sim.url and set(SYMBOLS) <= set(session["symbols"])
    assert set(session["event_types"]) == {"Quote", "Trade", "Greeks", "Summary", "Profile"}
    assert session["rows"] == sum(recorder.stats.rows.values())
    assert session["files"] == recorder.stats.files
    meta = pq.read_metadata(recorder.files[0].path).metadata
    assert meta[b"tastyrec.session_id"] == recorder.session_id.encode()
    assert meta[b"tastyrec.schema_version"] == b"2"
    assert meta[b"tastyrec.source"] == sim.url.encode()
    assert meta[b"tastyrec.dxlink_contract"] == b"AUTO"
    # the period the channel asked for: subscribe()'s default refresh_interval, 0.1 s
    assert meta[b"tastyrec.aggregation_period_s"] == b"0.1"


async def test_source_never_carries_credentials(tmp_path: Path) -> None:
    from tastyrec.record.recorder import safe_source

    assert (
        safe_source("wss://user:secret@host:443/realtime?token=abc#x") == "wss://host:443/realtime"
    )
    async with Recorder(tmp_path, source=safe_source("wss://u:p@h/x?t=1")) as recorder:
        recorder.record(Quote("SPY", 0, 0, 0, 0, "Q", 0, "Q", 1.0, 2.0, 3.0, 4.0))
    for path in tmp_path.rglob("*.parquet"):
        assert b"secret" not in path.read_bytes() and b"p@h" not in path.read_bytes()


async def test_a_token_in_the_url_reaches_no_log_error_or_file(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``--url "ws://user:TOKEN@host/...?token=TOKEN"``: a connect, a disconnect and a reconnect
    logged at DEBUG (ours and websockets': request line, Authorization header), reprs, errors,
    Parquet metadata and the bookkeeping tables never show the token."""
    caplog.set_level(logging.DEBUG)
    secret = "url-secret-7d1e04"
    url = f"ws://tastyuser:{secret}@127.0.0.1:{sim.port}/realtime?token={secret}&apiKey={secret}"
    async with streamer_for(sim, url=url) as streamer:
        async with Recorder(tmp_path, streamer) as recorder:
            await streamer.subscribe(Quote, ["SPY"])
            await wait_until(lambda: recorder.stats.rows["Quote"] > 0)
            await sim.drop()
            await wait_until(lambda: streamer.stats.connects == 2)
            before = recorder.stats.rows["Quote"]
            await wait_until(lambda: recorder.stats.rows["Quote"] > before)
        shown = repr(streamer)
    errors = []
    for bad_url, error in (
        (url.replace("ws://", "http://"), Exception),  # websockets' InvalidURI quotes the URL
        (url.replace(f"{sim.port}", "1"), Exception),  # nothing listens there
    ):
        with anyio.fail_after(WAIT_S + 5), pytest.raises(error) as info:
            async with streamer_for(sim, url=bad_url, connect_timeout=1.0):
                pass
        errors.append("".join(traceback.format_exception(info.value)))

    log = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    redacted = f"ws://127.0.0.1:{sim.port}/realtime?token=<redacted>&apiKey=<redacted>"
    assert f"connected to {redacted}" in log and f"connection to {redacted} lost" in log
    assert "GET /realtime?token=<redacted>&apiKey=<redacted> HTTP/1.1" in log  # websockets DEBUG
    assert "Authorization: <redacted>" in log
    assert redacted in shown and "InvalidURI" in errors[0]
    basic = base64.b64encode(f"tastyuser:{secret}".encode()).decode()
    files = {
        str(path): path.read_bytes()
        for path in tmp_path.rglob("*")
        if path.is_file() and not path.name.endswith(".lock")
    }
    assert any("_sessions" in p for p in files) and any("_gaps" in p for p in files)
    assert any(p.endswith(".parquet") and "Quote" in p for p in files)
    for text in (log, shown, *errors):
        assert secret not in text and basic not in text
    for path, data in files.items():
        assert secret.encode() not in data and basic.encode() not in data, path
    (session,) = pl.read_parquet(tmp_path / "_sessions" / "*.parquet")["source"].to_list()
    assert session == f"ws://127.0.0.1:{sim.port}/realtime"  # "URL without credentials"
    meta = pq.read_metadata(next(tmp_path.glob("Quote/*/*.parquet"))).metadata
    assert meta[b"tastyrec.source"] == session.encode()


# --- gaps -----------------------------------------------------------------------------------------


async def test_gaps_are_recorded_across_faults(tmp_path: Path) -> None:
    """The watchdog on a clock the test moves (it used to be 0.5 s of real silence, which a
    loaded machine could mistake for a stall); every frame hands its rows to the tap at once
    (tap_rows=1), so no tap flush waits for that clock."""
    t = ManualTime()
    config = SimConfig(keepalive_timeout=120.0, quote_rate_hz=50.0)  # never times us out here
    async with (
        Simulator(seed=3, token=None, config=config) as sim,
        streamer_for(
            sim, keepalive_timeout=60.0, tap_rows=1, clock=t.clock, sleep=t.sleep
        ) as streamer,
    ):
        async with Recorder(tmp_path, streamer) as recorder:
            await streamer.subscribe(Quote, ["SPY"])
            await wait_until(lambda: recorder.stats.rows["Quote"] > 0)
            await sim.drop()
            await wait_until(lambda: len(streamer.gaps) == 1 and streamer.gaps[0].resumed_ns)
            rows_before = recorder.stats.rows["Quote"]
            await wait_until(lambda: recorder.stats.rows["Quote"] > rows_before)
            sim.stall(True)
            await sim.quiesce()
            t.advance(59.9)  # every frame arrived at 0 on this clock: not silent for long yet
            await anyio.wait_all_tasks_blocked()
            assert len(streamer.gaps) == 1
            t.advance(0.1)  # silent for keepalive_timeout: the watchdog drops the connection
            await wait_until(lambda: len(streamer.gaps) == 2)
            sim.stall(False)
            await wait_until(lambda: streamer.gaps[1].resumed_ns is not None)
            await wait_until(lambda: recorder.stats.gaps == 2 and recorder.stats.reconnects == 2)
    [gap_file] = (tmp_path / "_gaps").glob("*.parquet")
    gaps = pl.read_parquet(gap_file)
    assert gaps.height == 2
    for row in gaps.iter_rows(named=True):
        assert row["session_id"] == recorder.session_id
        assert row["last_received"] <= row["disconnected"] < row["resumed"]
        assert row["reason"]
    assert "silent" in gaps["reason"][1]
    # what was received before each break is in Parquet: nothing after last_received is missing
    quotes = pl.read_parquet(tmp_path / "Quote" / "*" / "*.parquet")
    for row in gaps.iter_rows(named=True):
        assert quotes.filter(pl.col("recv_ns") == row["last_received"]).height >= 1


# --- bad input ------------------------------------------------------------------------------------


async def test_bad_input_is_counted_and_the_stream_continues(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with streamer_for(sim) as streamer:
        async with Recorder(tmp_path, streamer) as recorder:
            await streamer.subscribe(Quote, ["SPY"])
            await wait_until(lambda: recorder.stats.rows["Quote"] > 0)
            channel = next(c.id for c in streamer.protocol.channels.values())
            width = len(streamer.protocol.channels[channel].event_fields["Quote"])
            deep_arrays = "[" * 1000 + "]" * 1000
            deep_objects = '{"a":' * 1000 + "1" + "}" * 1000
            bad = [
                "this is not JSON {",
                json.dumps({"type": "FEED_DATA", "channel": channel, "data": ["Quote", [1, 2]]}),
                json.dumps(
                    {"type": "FEED_DATA", "channel": channel, "data": ["Nonsense", [1, 2, 3]]}
                ),
                json.dumps(
                    {
                        "type": "FEED_DATA",
                        "channel": channel,
                        "data": ["Quote", ["Quote", "SPY"] + [{"x": 1}] * (width - 2)],
                    }
                ),
                json.dumps({"type": "MYSTERY"}),
                # ~2 KB nesting 1,000 deep: msgspec's RecursionError used to end the recording
                f'{{"type":"FEED_DATA","channel":{channel},"data":["Quote",{deep_arrays}]}}',
                f'{{"type":"FEED_DATA","channel":{channel},"data":[{deep_objects}]}}',
            ]
            for frame in bad:
                await sim.send_raw(frame)
            await wait_until(lambda: recorder.stats.bad >= 5 and recorder.stats.skipped)
            before = recorder.stats.rows["Quote"]
            await wait_until(lambda: recorder.stats.rows["Quote"] > before)  # still recording
    assert recorder.stats.bad >= 5
    assert sum(recorder.stats.skipped.values()) >= 1
    assert streamer.stats.connects == 1 and streamer.stats.disconnects == 0
    quotes = pl.read_parquet(tmp_path / "Quote" / "*" / "*.parquet")
    assert quotes.height == recorder.stats.rows["Quote"]
    assert quotes["event_symbol"].unique().to_list() == ["SPY"]
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len({r.getMessage() for r in warnings}) == len(warnings)  # once per kind


# --- live frame -----------------------------------------------------------------------------------


async def test_live_frame_is_bounded_and_fresh(sim: Simulator, tmp_path: Path) -> None:
    async with streamer_for(sim) as streamer:
        async with Recorder(tmp_path, streamer, live_rows=50) as recorder:
            assert recorder.frame(Quote).height == 0
            await streamer.subscribe(Quote, SYMBOLS)
            await wait_until(lambda: recorder.stats.rows["Quote"] > 200)
            frame = recorder.frame(Quote)
            assert 0 < frame.height <= 50
            assert frame.columns[-2:] == ["recv_ns", "recv_epoch_ns"]
            latest = recorder.latest(Quote)
            assert sorted(latest["event_symbol"].to_list()) == sorted(SYMBOLS)
            lag_ms = (time.time_ns() - frame["recv_epoch_ns"].max()) / 1e6  # type: ignore[operator]
            assert lag_ms < 1000


# --- events from user code ------------------------------------------------------------------------


async def test_user_events_structs_and_sdk_objects(tmp_path: Path) -> None:
    from tastytrade.dxfeed import Quote as SDKQuote

    ours = Quote("SPY", 0, 0, 0, 0, "Q", 0, "Q", 500.25, 500.5, 100.0, math.nan)
    sdk = SDKQuote(
        event_symbol="QQQ",
        event_time=0,
        sequence=0,
        time_nano_part=0,
        bid_time=0,
        bid_exchange_code="Q",
        ask_time=0,
        ask_exchange_code="Q",
        bid_price=Decimal("400.5"),
        ask_price=Decimal("400.75"),
        bid_size=Decimal("3"),
        ask_size=Decimal("4"),
    )
    async with Recorder(tmp_path) as recorder:
        recorder.record(ours, sdk)
        with pytest.raises(SchemaError, match="cannot record"):
            recorder.record(object())
        await wait_until(lambda: recorder.stats.rows["Quote"] == 2)
    quotes = pl.read_parquet(tmp_path / "Quote" / "*" / "*.parquet")
    assert quotes["event_symbol"].to_list() == ["SPY", "QQQ"]
    assert quotes["bid_price"].to_list() == [500.25, 400.5]
    assert math.isnan(quotes["ask_size"][0]) and quotes["ask_size"][1] == 4.0
    [session] = pq.read_table(next((tmp_path / "_sessions").glob("*.parquet"))).to_pylist()
    assert session["source"] is None and session["status"] == "ended"


async def test_failed_body_marks_the_session_failed(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError):
        async with Recorder(tmp_path) as recorder:
            recorder.record(Quote("SPY", 0, 0, 0, 0, "Q", 0, "Q", 1.0, 2.0, 3.0, 4.0))
            1 / 0  # noqa: B018
    assert pl.read_parquet(tmp_path / "Quote" / "*" / "*.parquet").height == 1
    [session] = pq.read_table(next((tmp_path / "_sessions").glob("*.parquet"))).to_pylist()
    assert session["status"] == "failed"


async def test_unwritable_output_is_a_clear_error(tmp_path: Path) -> None:
    from tastyrec.exceptions import StorageError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match="cannot write to the output folder"):
        async with Recorder(blocker / "data"):
            pass


async def test_disk_full_mid_recording_stops_with_the_journal_kept(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from tastyrec.exceptions import StorageError
    from tastyrec.storage import journal

    real_write = os.write
    full = False

    def write(fd: int, data: Any) -> int:
        if full:
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(journal.os, "write", write)
    with pytest.raises(StorageError, match="No space left on device"):
        async with streamer_for(sim) as streamer:
            async with Recorder(tmp_path, streamer) as recorder:
                await streamer.subscribe(Quote, ["SPY"])
                await wait_until(lambda: recorder.stats.rows["Quote"] > 0)
                recorded = recorder.stats.rows["Quote"]
                full = True
                with anyio.fail_after(WAIT_S):  # a bound: the failure cancels it first
                    await anyio.sleep_forever()
    full = False
    monkeypatch.undo()
    # what had been recorded is kept (in Parquet or the journal) and recovers completely
    from tastyrec.record.recorder import recover

    recover(tmp_path)
    quotes = pl.read_parquet(tmp_path / "Quote" / "*" / "*.parquet")
    assert quotes.height >= recorded


async def test_a_symbol_never_becomes_a_path(tmp_path: Path) -> None:
    out = tmp_path / "data"
    nasty = ["../../escape", "/etc/passwd", "SPY/../../x", "..", "C:\\evil", "\x00"]
    async with Recorder(out) as recorder:
        recorder.record(*(Quote(s, 0, 0, 0, 0, "Q", 0, "Q", 1.0, 2.0, 3.0, 4.0) for s in nasty))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # nothing escaped
    files = [p.relative_to(out).parts[:2] for p in out.rglob("*.parquet")]
    assert all(parts[0] in ("Quote", "_sessions") for parts in files)
    quotes = pl.read_parquet(out / "Quote" / "*" / "*.parquet")
    assert quotes["event_symbol"].to_list() == nasty


async def test_recover_removes_temporary_files_of_a_dead_session(tmp_path: Path) -> None:
    from tastyrec.record.recorder import recover

    async with Recorder(tmp_path) as recorder:
        recorder.record(Quote("SPY", 0, 0, 0, 0, "Q", 0, "Q", 1.0, 2.0, 3.0, 4.0))
    [data] = tmp_path.glob("Quote/date=*/*.parquet")
    [session] = tmp_path.glob("_sessions/*.parquet")
    # what a crash in the middle of writing leaves behind (the session's lock is free)
    (data.parent / (data.name + ".tmp")).write_bytes(b"PAR1 half")
    (session.parent / (session.name + ".1a2b3c4d.tmp")).write_bytes(b"PAR1 half")
    (tmp_path / "_journal" / f"{recorder.session_id}.lock").touch()
    recover(tmp_path)
    assert not list(tmp_path.rglob("*.tmp"))
    assert not list((tmp_path / "_journal").glob("*.lock"))
    assert pl.read_parquet(data).height == 1
