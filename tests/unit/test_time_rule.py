"""One meaning of user time, through every entry point (issue 18).

A small recording -- a Quote every 10 minutes from New York midnight on Saturday 2026-10-31
(EDT) to New York midnight on Tuesday 2026-11-03 (EST), across the end of daylight saving time
on Sunday 2026-11-01 (a 25-hour day) -- is read with the same ``start`` / ``end`` through
``scan``, ``connect`` (SQL), the catalog's file pruning, ``ReplayStreamer``, ``replay_frames``,
``serve``'s feed and the command line (``tastyrec replay``, ``tastyrec sql``). Every one must
select exactly the rows the case's hand-written UTC window holds. Row ``k`` has ``bid_price = k``.

The machine's time zone must not matter: one test runs the entry points in a subprocess with
``TZ`` set far from New York (and checks that the subprocess really runs in it).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import tastyrec
from tastyrec import _time, catalog
from tastyrec.cli import main as cli_main
from tastyrec.events import Quote
from tastyrec.replay import ReplayStreamer, replay_frames
from tastyrec.replay.feed import SETTLE_S, ReplayFeed
from tastyrec.schema import RECV_COLUMN, RECV_EXACT_COLUMN, arrow_schema, receipt_arrays
from tastyrec.storage import layout

NS = 1_000_000_000
#: New York midnight starting Saturday 2026-10-31 (EDT, UTC-4)
FIRST = datetime(2026, 10, 31, 4, tzinfo=UTC)
#: New York midnight starting Tuesday 2026-11-03 (EST, UTC-5)
LAST = datetime(2026, 11, 3, 5, tzinfo=UTC)
STEP = timedelta(minutes=10)
ROWS = int((LAST - FIRST) / STEP)  # 73 hours: 438 rows
TOKYO = ZoneInfo("Asia/Tokyo")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def epoch_ns(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)) * 1000


def recv_of(k: int) -> int:
    return epoch_ns(FIRST + k * STEP)


@dataclass(frozen=True)
class Case:
    name: str
    start: Any
    end: Any
    #: the window by hand, in UTC: rows with lo <= recv < hi (None: open)
    lo: datetime | None
    hi: datetime | None

    def expected(self) -> list[int]:
        lo = -math.inf if self.lo is None else epoch_ns(self.lo)
        hi = math.inf if self.hi is None else epoch_ns(self.hi)
        return [k for k in range(ROWS) if lo <= recv_of(k) < hi]


CASES = [
    # 09:30-16:00 in New York on an EDT day is 13:30-20:00 UTC (not 09:30-16:00 UTC)
    Case(
        "naive datetime",
        datetime(2026, 10, 31, 9, 30),
        datetime(2026, 10, 31, 16),
        utc(2026, 10, 31, 13, 30),
        utc(2026, 10, 31, 20),
    ),
    Case(
        "aware UTC",
        utc(2026, 11, 2, 14, 30),
        utc(2026, 11, 2, 21),
        utc(2026, 11, 2, 14, 30),
        utc(2026, 11, 2, 21),
    ),
    Case(
        "aware, another zone",
        datetime(2026, 11, 1, 23, tzinfo=TOKYO),
        datetime(2026, 11, 2, 6, tzinfo=TOKYO),
        utc(2026, 11, 1, 14),
        utc(2026, 11, 1, 21),
    ),
    # a date as start is its New York midnight (EST on Monday: 05:00 UTC)
    Case("date as start", date(2026, 11, 2), None, utc(2026, 11, 2, 5), None),
    # a date as end keeps that whole New York day: up to Sunday's New York midnight (EDT)
    Case("date as end", None, date(2026, 10, 31), None, utc(2026, 11, 1, 4)),
    # the DST day, start and end the same date: 25 hours, 150 rows
    Case(
        "DST-change day as dates",
        date(2026, 11, 1),
        date(2026, 11, 1),
        utc(2026, 11, 1, 4),
        utc(2026, 11, 2, 5),
    ),
    Case("date text as end", None, "2026-10-31", None, utc(2026, 11, 1, 4)),
    # 01:30 happens twice on the DST day: fold=0, the first (EDT); 03:00 is EST
    Case(
        "ISO naive across the repeated hour",
        "2026-11-01T01:30",
        "2026-11-01T03:00",
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 1, 8),
    ),
    Case(
        "ISO with offsets",
        "2026-10-31T09:30-04:00",
        "2026-10-31T18:00:00+00:00",
        utc(2026, 10, 31, 13, 30),
        utc(2026, 10, 31, 18),
    ),
    Case(
        "ISO Z start, date text end",
        "2026-11-02T14:30Z",
        "2026-11-02",
        utc(2026, 11, 2, 14, 30),
        utc(2026, 11, 3, 5),
    ),
    # a row sits exactly at 12:00:00: one microsecond later (the command line's finest
    # ISO text) leaves it out
    Case(
        "epoch ns",
        epoch_ns(utc(2026, 11, 1, 12)) + 1_000,
        epoch_ns(utc(2026, 11, 1, 13)),
        utc(2026, 11, 1, 12, 0, 0, 1),
        utc(2026, 11, 1, 13),
    ),
]
IDS = [c.name for c in CASES]


def write_recording(root: Path) -> dict[int, Path]:
    """One Quote file per New York day; returns the file of each row."""
    schema = arrow_schema(Quote)
    by_day: dict[date, list[int]] = {}
    for k in range(ROWS):
        by_day.setdefault(layout.partition_date(recv_of(k)), []).append(k)
    where: dict[int, Path] = {}
    for seq, (day, ks) in enumerate(sorted(by_day.items()), start=1):
        cols: dict[str, pa.Array] = {}
        recv, exact = receipt_arrays(np.array([recv_of(k) for k in ks], np.int64))
        for f in schema:
            if f.name == RECV_COLUMN:
                cols[f.name] = recv
            elif f.name == RECV_EXACT_COLUMN:
                cols[f.name] = exact
            elif f.name == "bid_price":
                cols[f.name] = pa.array([float(k) for k in ks], f.type)
            elif pa.types.is_timestamp(f.type):
                cols[f.name] = pa.array([0] * len(ks), pa.int64()).cast(f.type)
            elif pa.types.is_string(f.type):
                cols[f.name] = pa.array(["SPY"] * len(ks), f.type)
            else:
                cols[f.name] = pa.array([1] * len(ks), pa.int64()).cast(f.type)
        path = layout.parquet_path(
            root, "Quote", day, layout.file_name(recv_of(ks[0]), "aaaa0001", seq)
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(cols, schema=schema), path)
        where.update(dict.fromkeys(ks, path))
    return where


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, Path]]:
    root = tmp_path_factory.mktemp("time_rule") / "rec"
    return root, write_recording(root)


def test_the_recording_spans_the_dst_change() -> None:
    days = [layout.partition_date(recv_of(k)) for k in range(ROWS)]
    assert sorted(set(days)) == [date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2)]
    assert days.count(date(2026, 11, 1)) == 150  # 25 hours
    assert days.count(date(2026, 10, 31)) == days.count(date(2026, 11, 2)) == 144


def test_every_case_selects_some_rows_but_not_all() -> None:
    for case in CASES:
        assert 0 < len(case.expected()) < ROWS, case.name


# --- the entry points ------------------------------------------------------------------------


def via_scan(root: Path, start: Any, end: Any) -> list[int]:
    frame = tastyrec.scan(root, Quote, start=start, end=end).collect()
    return sorted(int(x) for x in frame["bid_price"])


def via_connect(root: Path, start: Any, end: Any) -> list[int]:
    con = tastyrec.connect(root, start=start, end=end)
    return [int(r[0]) for r in con.sql("SELECT bid_price FROM Quote ORDER BY 1").fetchall()]


def via_replay(root: Path, start: Any, end: Any) -> list[int]:
    got: list[int] = []

    async def run() -> None:
        async with ReplayStreamer(root, start=start, end=end) as streamer:
            await streamer.subscribe(Quote, ["SPY"])
            got.extend([int(quote.bid_price) async for quote in streamer.listen(Quote)])

    anyio.run(run, backend="asyncio")
    return got


def via_frames(root: Path, start: Any, end: Any) -> list[int]:
    return [
        int(x)
        for frame in replay_frames(root, Quote, start=start, end=end)
        for x in frame["bid_price"]
    ]


def via_serve_feed(root: Path, start: Any, end: Any) -> list[int]:
    feed = ReplayFeed(root, speed=math.inf, start=start, end=end)
    feed.subscribe("Quote", "SPY", now=0.0)
    got: list[int] = []
    for _ in range(ROWS + 2):  # bounded: every poll hands out at least one event or ends
        events = feed.poll(SETTLE_S + 1.0)
        got += [int(event.bid_price) for _, event in events]
        if not events:
            break
    assert feed.finished
    return got


def cli_text(value: Any) -> str:
    """The command-line spelling of a case's value (the same instant or day)."""
    if isinstance(value, int):
        seconds, nanos = divmod(value, NS)
        return datetime.fromtimestamp(seconds, UTC).replace(microsecond=nanos // 1000).isoformat()
    return value if isinstance(value, str) else value.isoformat()


def window_args(start: Any, end: Any) -> list[str]:
    args = []
    if start is not None:
        args += ["--start", cli_text(start)]
    if end is not None:
        args += ["--end", cli_text(end)]
    return args


def via_cli_replay(root: Path, start: Any, end: Any) -> list[int]:
    args = ["replay", str(root), "--events", "Quote", *window_args(start, end)]
    result = CliRunner().invoke(cli_main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return [int(json.loads(line)["bid_price"]) for line in result.stdout.splitlines()]


def via_cli_sql(root: Path, start: Any, end: Any) -> list[int]:
    query = "SELECT bid_price::BIGINT AS k FROM Quote ORDER BY 1"
    args = ["sql", query, "--data", str(root), "--format", "csv", *window_args(start, end)]
    result = CliRunner().invoke(cli_main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return [int(line) for line in result.stdout.splitlines()[1:]]


ENTRY_POINTS = {
    "scan": via_scan,
    "connect": via_connect,
    "ReplayStreamer": via_replay,
    "replay_frames": via_frames,
    "serve feed": via_serve_feed,
    "tastyrec replay": via_cli_replay,
    "tastyrec sql": via_cli_sql,
}


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_every_entry_point_selects_the_same_rows(
    recording: tuple[Path, dict[int, Path]], case: Case, entry: str
) -> None:
    root, _ = recording
    assert sorted(ENTRY_POINTS[entry](root, case.start, case.end)) == case.expected()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_catalog_prunes_to_the_files_holding_the_rows(
    recording: tuple[Path, dict[int, Path]], case: Case
) -> None:
    root, where = recording
    listed = catalog.recording_files(root, "Quote", start=case.start, end=case.end)
    assert listed == sorted({where[k] for k in case.expected()})


def test_the_machine_time_zone_does_not_matter(
    recording: tuple[Path, dict[int, Path]], tmp_path: Path
) -> None:
    """The same cases in a subprocess whose local time is Kolkata's (UTC+5:30, no DST)."""
    root, _ = recording
    chosen = [c for c in CASES if c.name in ("naive datetime", "DST-change day as dates")]
    code = textwrap.dedent(
        f"""
        import json, time
        from datetime import date, datetime
        from tests.unit.test_time_rule import CASES, ENTRY_POINTS
        from pathlib import Path

        root = Path({str(root)!r})
        out = {{"utcoffset": time.localtime().tm_gmtoff}}
        for case in CASES:
            if case.name in {[c.name for c in chosen]!r}:
                out[case.name] = {{
                    name: sorted(fn(root, case.start, case.end))
                    for name, fn in ENTRY_POINTS.items()
                }}
        print(json.dumps(out))
        """
    )
    env = {**os.environ, "TZ": "Asia/Kolkata"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out.pop("utcoffset") == 5 * 3600 + 1800  # the subprocess really is in Kolkata
    for case in chosen:
        assert out[case.name] == dict.fromkeys(ENTRY_POINTS, case.expected()), case.name


def test_the_command_line_in_another_time_zone(recording: tuple[Path, dict[int, Path]]) -> None:
    """`tastyrec sql --start/--end` as a real subprocess, TZ far from New York."""
    root, _ = recording
    case = CASES[0]  # naive
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tastyrec",
            "sql",
            "SELECT count(*) AS n FROM Quote",
            "--data",
            str(root),
            "--format",
            "csv",
            *window_args(case.start, case.end),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "TZ": "Pacific/Auckland"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["n", str(len(case.expected()))]


# --- the rule itself ---------------------------------------------------------------------------


def test_to_ns_reads_every_kind_of_time() -> None:
    nine_thirty = epoch_ns(utc(2026, 11, 20, 14, 30))  # 09:30 EST
    assert _time.to_ns(datetime(2026, 11, 20, 9, 30)) == nine_thirty
    assert _time.to_ns("2026-11-20T09:30") == nine_thirty
    assert _time.to_ns(" 2026-11-20 09:30 ") == nine_thirty
    assert _time.to_ns("2026-11-20T14:30Z") == nine_thirty
    assert _time.to_ns(datetime(2026, 11, 20, 23, 30, tzinfo=TOKYO)) == nine_thirty
    assert _time.to_ns(nine_thirty) == nine_thirty
    assert _time.to_ns(date(2026, 11, 20)) == epoch_ns(utc(2026, 11, 20, 5))
    # microseconds are exact (no float on the way)
    assert _time.to_ns(utc(2026, 11, 20, 14, 30, 0, 999_999)) == nine_thirty + 999_999_000


def test_end_of_a_date_is_the_next_new_york_midnight() -> None:
    assert _time.end_ns(date(2026, 11, 1)) == epoch_ns(utc(2026, 11, 2, 5))  # 25-hour day
    assert _time.end_ns("2026-03-08") == epoch_ns(utc(2026, 3, 9, 4))  # 23-hour day
    assert _time.end_ns(datetime(2026, 3, 8)) == epoch_ns(utc(2026, 3, 8, 5))  # an instant
    assert _time.start_ns(None) is None and _time.end_ns(None) is None


def test_wall_times_dst_makes_twice_or_never() -> None:
    # 01:30 on 2026-11-01 happens twice: fold=0 is the first (EDT), fold=1 the second (EST)
    assert _time.to_ns(datetime(2026, 11, 1, 1, 30)) == epoch_ns(utc(2026, 11, 1, 5, 30))
    assert _time.to_ns(datetime(2026, 11, 1, 1, 30, fold=1)) == epoch_ns(utc(2026, 11, 1, 6, 30))
    # 02:30 on 2026-03-08 never happens: read with the offset before the change (EST)
    assert _time.to_ns("2026-03-08T02:30") == epoch_ns(utc(2026, 3, 8, 7, 30))


def test_what_is_not_a_time_is_refused_clearly() -> None:
    for bad in ("yesterday-ish", "", "2026-13-01", "11/20/2026"):
        with pytest.raises(ValueError, match="is not a time: give an ISO date"):
            _time.to_ns(bad)
    for wrong in (True, 1.5, None, [2026, 11, 20]):
        with pytest.raises(TypeError, match="not a time"):
            _time.to_ns(wrong)  # type: ignore[arg-type]
    assert _time.day("2026-11-20") == date(2026, 11, 20)
    with pytest.raises(ValueError, match="is not a date such as"):
        _time.day("2026-11-20T09:30")


def test_pandas_timestamps_keep_their_nanoseconds() -> None:
    pd = pytest.importorskip("pandas")
    naive = pd.Timestamp("2026-11-20 09:30:00.000000007")
    assert _time.to_ns(naive) == epoch_ns(utc(2026, 11, 20, 14, 30)) + 7
    aware = pd.Timestamp("2026-11-20 14:30:00.000000007", tz="UTC")
    assert _time.to_ns(aware) == epoch_ns(utc(2026, 11, 20, 14, 30)) + 7
    np = pytest.importorskip("numpy")
    assert _time.end_ns(np.int64(aware.value)) == aware.value


def test_the_command_line_refuses_what_is_not_a_time(
    recording: tuple[Path, dict[int, Path]],
) -> None:
    root, _ = recording
    for command in (["replay", str(root)], ["sql", "SELECT 1", "--data", str(root)]):
        result = CliRunner().invoke(cli_main, [*command, "--end", "tomorrow"])
        assert result.exit_code == 2, result.output
        assert "--end" in result.output and "is not a time" in result.output
    result = CliRunner().invoke(cli_main, ["compact", str(root), "--date", "2026-11-20T09:30"])
    assert result.exit_code == 2 and "is not a date such as" in result.output
