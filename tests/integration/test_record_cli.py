"""``tastyrec record`` as users run it: a real subprocess, real files, read back with DuckDB.

Sources are the built-in simulator (``--demo``) or a ``tastyrec simulate`` subprocess on
127.0.0.1. Waits poll the file system with deadlines; every subprocess is bounded.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, datetime, time as dtime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from tastyrec import __version__
from tastyrec.exceptions import StorageError
from tastyrec.storage.journal import read_segment
from tastyrec.storage.layout import MARKET_TZ, parquet_for_journal, partition_date

TOKEN_ENV = "TASTYREC_DXLINK_TOKEN"
OPTION = ".SPY261218C600"
SUMMARY = re.compile(
    r"^recorded ([\d,]+) events(?: \((?P<types>[^)]*)\))? in .+ into (\d+) files? \([^)]+\) in .+; "
)


# --- helpers -------------------------------------------------------------------------------


def data_files(out: Path) -> list[Path]:
    return sorted(out.glob("*/date=*/*.parquet"))


def files_by_type(out: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in data_files(out):
        found.setdefault(path.parent.parent.name, []).append(path)
    return found


def read_type(out: Path, event_type: str) -> pa.Table:
    return pa.concat_tables(pq.ParquetFile(p).read() for p in files_by_type(out)[event_type])


def all_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def sessions(out: Path) -> list[dict]:
    return [
        row
        for path in sorted((out / "_sessions").glob("*.parquet"))
        for row in pq.ParquetFile(path).read().to_pylist()
    ]


def parse_summary(stdout: str) -> tuple[int, dict[str, int], int]:
    """(events, events per type, files) of the one summary line."""
    lines = stdout.splitlines()
    assert len(lines) == 1, stdout
    match = SUMMARY.match(lines[0])
    assert match, lines[0]
    per_type = {}
    for item in (match.group("types") or "").split(", "):
        if item:
            name, n = item.rsplit(" ", 1)
            per_type[name] = int(n.replace(",", ""))
    return int(match.group(1).replace(",", "")), per_type, int(match.group(3))


def assert_finished_cleanly(out: Path, proc) -> dict[str, int]:
    """A clean end: summary matches the Parquet files, no journal left, session ``ended``."""
    events, per_type, files = parse_summary(proc.stdout)
    counts = {
        t: sum(pq.ParquetFile(p).metadata.num_rows for p in ps)
        for t, ps in files_by_type(out).items()
    }
    assert counts == per_type
    assert sum(counts.values()) == events
    assert len(data_files(out)) == files
    assert not list(out.rglob("*.arrows")) and not list(out.rglob("*.tmp"))
    assert not list((out / "_journal").glob("*.lock"))
    (session,) = sessions(out)
    assert session["status"] == "ended"
    assert session["rows"] == events and session["files"] == files
    return counts


def assert_one_clear_error(stderr: str, *needles: str) -> None:
    """stderr says what is wrong (every needle) in one ``Error: ...`` line, with no traceback."""
    tail = "\n".join(stderr.splitlines()[-4:])
    for needle in needles:
        assert needle in stderr, tail
    if "Traceback" in stderr:
        pytest.fail(f"a traceback ({len(stderr.splitlines())} lines) instead of a message:\n{tail}")
    errors = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, tail
    for needle in needles:
        assert needle in errors[0], errors[0]


def ny_today() -> date:
    return datetime.now(MARKET_TZ).date()


def record_demo(cli, out: Path, *args: str, symbols: str = "SPY", duration: str = "1s"):
    return cli.run(
        "record",
        "--symbols",
        symbols,
        "--demo",
        "--for",
        duration,
        "--out",
        str(out),
        "--no-status",
        *args,
    )


# --- no source ------------------------------------------------------------------------------


def test_no_url_and_no_token_is_one_clear_message_and_writes_nothing(cli):
    out = cli.workdir / "out"
    proc = cli.run("record", "--symbols", "SPY", "--out", str(out))
    assert proc.popen.returncode == 2
    assert_one_clear_error(proc.stderr, "--demo", TOKEN_ENV, "--url")
    assert not out.exists()
    # the default --out (./data) is not created either
    proc = cli.run("record", "--symbols", "SPY")
    assert proc.popen.returncode == 2
    assert not (cli.workdir / "data").exists()


# --- a demo recording -----------------------------------------------------------------------


def test_demo_recording_layout_metadata_and_duckdb_types(cli):
    out = cli.workdir / "rec"
    day_before = ny_today()
    types = ("Quote", "Trade", "Summary", "Profile", "Greeks")
    counts = record_until(
        cli,
        out,
        lambda rows: all(rows.get(t) for t in types) and rows["Quote"] >= 30,
        symbols=f"SPY,QQQ,{OPTION}",
    )
    days = {day_before, ny_today()}

    # default event types; Greeks only for the option
    assert set(counts) == {"Quote", "Trade", "Summary", "Profile", "Greeks"}
    assert set(read_type(out, "Greeks").column("event_symbol").to_pylist()) == {OPTION}
    assert set(read_type(out, "Quote").column("event_symbol").to_pylist()) == {
        "SPY",
        "QQQ",
        OPTION,
    }

    (session,) = sessions(out)
    assert session["source"] == "simulator"
    assert session["symbols"] == sorted(["SPY", "QQQ", OPTION])
    assert session["event_types"] == sorted(counts)
    for path in data_files(out):
        # <out>/<EventType>/date=YYYY-MM-DD/<name>.parquet, the New York date of receipt
        event_type, partition, name = path.relative_to(out).parts
        day = date.fromisoformat(partition.removeprefix("date="))
        assert day in days
        ns = pq.ParquetFile(path).read(columns=["recv_epoch_ns"]).column("recv_epoch_ns")
        assert {partition_date(pc.min(ns).as_py()), partition_date(pc.max(ns).as_py())} == {day}
        assert f"-{session['session_id']}-" in name
        meta = {k.decode(): v.decode() for k, v in pq.read_metadata(path).metadata.items()}
        assert meta["tastyrec.version"] == __version__
        assert meta["tastyrec.schema_version"] == "2"
        assert meta["tastyrec.source"] == "simulator"
        assert meta["tastyrec.session_id"] == session["session_id"]
        assert meta["tastyrec.event_type"] == event_type

    con = duckdb.connect()
    glob = f"{out}/Quote/date=*/*.parquet"
    types = dict(
        con.execute(
            f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM "
            f"read_parquet('{glob}', hive_partitioning=true))"
        ).fetchall()
    )
    # tz-aware: wire times in ms, the receipt time in microseconds (schema version 2: what
    # Spark reads too), its exact nanoseconds beside it
    for column in ("event_time", "bid_time", "ask_time", "recv_ns"):
        assert types[column] == "TIMESTAMP WITH TIME ZONE", column
    assert types["recv_epoch_ns"] == "BIGINT"
    assert types["date"] == "DATE"
    recv = con.execute(
        f"SELECT recv_epoch_ns, epoch_us(recv_ns) FROM read_parquet('{glob}', "
        "hive_partitioning=true) ORDER BY 1"
    ).fetchall()
    exact = sorted(read_type(out, "Quote").column("recv_epoch_ns").to_pylist())
    assert recv == [(ns, ns // 1000) for ns in exact]
    (total,) = con.execute(
        f"SELECT count(*) FROM read_parquet('{out}/*/date=*/*.parquet', hive_partitioning=true)"
    ).fetchone()
    assert total == sum(counts.values())


# --- signals --------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_recording_flushes_everything_and_exits_0(cli, signum):
    out = cli.workdir / "rec"
    proc = cli.start(
        "record", "--symbols", "SPY,QQQ", "--demo", "--for", "60s", "--out", str(out), "--no-status"
    )

    def journal():
        found = {}
        for seg in out.glob("_journal/*/date=*/*.arrows"):
            try:
                found[seg] = read_segment(seg)
            except StorageError:
                if seg.exists():
                    raise
        return found

    proc.wait_for("journaled rows", lambda: sum(c.rows for c in journal().values()) >= 20)
    before = journal()
    proc.popen.send_signal(signum)
    assert proc.wait(10, f"exit after {signum.name}") == 0, proc.stderr
    assert_finished_cleanly(out, proc)
    for seg, contents in before.items():  # every row journaled before the signal is in Parquet
        if not contents.rows:
            continue
        table = pq.ParquetFile(parquet_for_journal(out, seg)).read()
        assert_frame_equal(
            pl.from_arrow(table.slice(0, contents.rows)),
            pl.from_arrow(pa.Table.from_batches(contents.batches, contents.schema)),
        )
    assert not (out / "_journal").exists() or not any((out / "_journal").iterdir())


# --- options --------------------------------------------------------------------------------


def test_symbols_from_a_file_and_chosen_events(cli):
    listing = cli.workdir / "symbols.txt"
    listing.write_text("# my watchlist\nSPY\n\n  QQQ   # the index ETF\nSPY\n# AAPL\n")
    out = cli.workdir / "rec"
    proc = record_demo(cli, out, "--events", "Quote,Trade", symbols=f"@{listing}")
    assert proc.popen.returncode == 0, proc.stderr
    counts = assert_finished_cleanly(out, proc)
    assert "Quote" in counts and set(counts) <= {"Quote", "Trade"}
    assert set(read_type(out, "Quote").column("event_symbol").to_pylist()) == {"SPY", "QQQ"}
    (session,) = sessions(out)
    assert session["symbols"] == ["QQQ", "SPY"]
    assert session["event_types"] == ["Quote", "Trade"]


def test_symbols_file_that_does_not_exist_is_a_usage_error(cli):
    out = cli.workdir / "rec"
    proc = record_demo(cli, out, symbols=f"@{cli.workdir / 'missing.txt'}")
    assert proc.popen.returncode == 2
    assert_one_clear_error(proc.stderr, "missing.txt")
    assert not out.exists()


def record_until(cli, out: Path, enough, *args: str, symbols: str = "SPY") -> dict[str, int]:
    """Record from the demo until ``enough(journal_rows)`` holds, then Ctrl-C; the recording
    finished cleanly. Returns the rows per type in the files."""
    proc = cli.record_until(out, enough, "--symbols", symbols, "--demo", *args)
    return assert_finished_cleanly(out, proc)


#: late evening in New York (already the next day in UTC), both DST changes, a morning
PINNED = {
    "ny-23:30": datetime(2026, 12, 7, 23, 30, tzinfo=MARKET_TZ),
    "spring-forward-23:30": datetime(2026, 3, 8, 23, 30, tzinfo=MARKET_TZ),  # a 23-hour day
    "fall-back-23:30": datetime(2026, 11, 1, 23, 30, tzinfo=MARKET_TZ),  # a 25-hour day
    "ny-09:35": datetime(2026, 12, 7, 9, 35, tzinfo=MARKET_TZ),
}


@pytest.mark.parametrize("now", PINNED.values(), ids=PINNED.keys())
def test_candles_from_the_start_of_the_new_york_day(cli, now: datetime):
    cli.pin_clock(now)
    out = cli.workdir / "rec"
    midnight = datetime.combine(now.date(), dtime(0), MARKET_TZ)
    # elapsed time, not wall-clock difference: 1,350 minutes on the 23-hour day
    minutes = int(now.timestamp() - midnight.timestamp()) // 60
    counts = record_until(
        cli,
        out,
        lambda rows: rows.get("Candle", 0) > 2 * (minutes + 1) and rows.get("Quote", 0) > 0,
        "--events", "Quote", "--candles", "1m", symbols="SPY,QQQ",
    )  # fmt: skip
    assert set(counts) == {"Quote", "Candle"}
    candles = read_type(out, "Candle")
    symbols = set(candles.column("event_symbol").to_pylist())
    # the SDK's candle symbol; the server sends 1m as m
    assert symbols == {"SPY{=m,tho=true}", "QQQ{=m,tho=true}"}, symbols
    for symbol in symbols:
        times = set(
            candles.filter(pc.equal(candles.column("event_symbol"), symbol))
            .column("time")
            .cast(pa.int64())
            .to_pylist()
        )
        start = int(midnight.timestamp()) * 1000
        # history from the New York midnight on, every minute of it, then the live candle
        assert min(times) == start
        assert set(range(start, start + (minutes + 1) * 60_000, 60_000)) <= times
    # partitioned by the New York date of receipt, the pinned day, not the UTC one
    assert {p.parent.name for p in data_files(out)} == {f"date={now.date()}"}


def test_unknown_event_type_is_exit_2_and_writes_nothing(cli):
    out = cli.workdir / "rec"
    proc = record_demo(cli, out, "--events", "Quote,Quot")
    assert proc.popen.returncode == 2
    assert_one_clear_error(proc.stderr, "unknown event type 'Quot'", "--events")
    assert not out.exists()


# --- a DXLink server at --url ---------------------------------------------------------------


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``tastyrec simulate`` subprocess (token ``sim-token``); yields its URL."""
    log = tmp_path_factory.mktemp("simulate")
    with open(log / "stdout", "wb") as fo, open(log / "stderr", "wb") as fe:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tastyrec", "simulate", "--seed", "7"],
            stdout=fo,
            stderr=fe,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 10
        while not (log / "stdout").read_text().endswith("\n"):
            assert proc.poll() is None, (log / "stderr").read_text()
            assert time.monotonic() < deadline, "simulate printed no URL"
            time.sleep(0.02)  # kept: polls another process's stdout (no event crosses to here)
        first = (log / "stdout").read_text().splitlines()[0]
        assert re.fullmatch(r"dxlink ws://127\.0\.0\.1:\d+/realtime", first), first
        yield first.split()[1]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_record_from_a_url_with_a_token(cli, simulator):
    out = cli.workdir / "rec"
    proc = cli.record_until(
        out, lambda rows: rows.get("Quote", 0) > 0,
        "--symbols", "SPY", "--url", simulator, "--token", "sim-token",
    )  # fmt: skip
    assert_finished_cleanly(out, proc)
    assert sessions(out)[0]["source"] == simulator
    assert data_files(out)
    for path in data_files(out):
        meta = pq.read_metadata(path).metadata
        assert meta[b"tastyrec.source"] == simulator.encode()
    for path in all_files(out):  # the token is never stored
        assert b"sim-token" not in path.read_bytes()


def test_record_with_a_token_from_the_environment(cli, simulator):
    out = cli.workdir / "rec"
    cli.env[TOKEN_ENV] = "sim-token"
    proc = cli.run(
        "record",
        "--symbols",
        "SPY",
        "--url",
        simulator,
        "--for",
        "1s",
        "--out",
        str(out),
        "--no-status",
    )
    assert proc.popen.returncode == 0, proc.stderr
    assert_finished_cleanly(out, proc)


def test_a_rejected_token_is_a_clear_error_and_leaves_no_files(cli, simulator):
    out = cli.workdir / "rec"
    token = "wrong-token-7c1e"
    proc = cli.run(
        "record",
        "--symbols",
        "SPY",
        "--url",
        simulator,
        "--token",
        token,
        "--for",
        "5s",
        "--out",
        str(out),
        "--no-status",
    )
    assert proc.popen.returncode == 1
    assert not all_files(out), all_files(out)
    assert token not in proc.stderr + proc.stdout
    assert_one_clear_error(proc.stderr, "rejected the token")


# --- unwritable output ----------------------------------------------------------------------


def test_an_unwritable_output_folder_is_a_clear_error(cli):
    # --out naming a file (or a folder under one): test_cli_traps.py
    out = Path("/proc/tastyrec-test-out")
    proc = record_demo(cli, out)
    assert proc.popen.returncode == 1
    assert proc.stdout == ""
    assert_one_clear_error(proc.stderr, "cannot write to the output folder", str(out))


# --- recover --------------------------------------------------------------------------------


def test_recover_a_folder_without_a_journal_and_a_path_that_is_not_a_folder(cli):
    empty = cli.workdir / "empty"
    empty.mkdir()
    proc = cli.run("recover", str(empty))
    assert proc.popen.returncode == 0, proc.stderr
    assert proc.stdout.startswith("recovered 0 rows into 0 files from 0 interrupted session")
    assert not all_files(empty)

    missing = cli.workdir / "missing"
    proc = cli.run("recover", str(missing))
    assert proc.popen.returncode == 2
    assert_one_clear_error(proc.stderr, "there is no folder", str(missing))
    assert not missing.exists()
