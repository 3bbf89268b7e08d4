"""The user's paths on a plain install: ``pip install .`` and nothing else (no pandas).

The test extras bring pandas in (through the tastytrade SDK), and with pandas installed pyarrow
hands nanosecond timestamps to Python quietly; without it, it raises. So these tests run the
command line of a *second* virtual environment that has only ``pip install .``, as real
subprocesses, the way the README's quick start leaves a user:

* ``tastyrec record --demo``; ``kill -9`` once the journal holds rows; ``tastyrec recover``;
  another ``kill -9``; ``tastyrec record`` again into the same folder (it recovers first);
* ``tastyrec info``; ``tastyrec sql`` on a terminal (a pseudo-terminal of a known width: the
  table, and the vertical layout of a result too wide for it), as CSV into a pipe, a file and
  ``-o``, as JSON lines and as Parquet; ``tastyrec replay``; ``tastyrec compact``.

Every value shown is checked against DuckDB reading the Parquet files directly (in this test
process), as integers, so "the same values with or without pandas" is what is asserted.

Which venv: ``$TASTYREC_PLAIN_VENV`` (CI builds it with ``python3 -m venv .venv-plain &&
.venv-plain/bin/pip install .``); it must exist and hold no pandas, else the tests fail. Unset,
the session builds one itself (about half a minute from pip's cache): a test that skips proves
nothing, and a build failure (a packaging bug: a dependency missing from ``pyproject.toml``) is
exactly what this module is for, so only a Python that cannot create a venv at all skips.
"""

from __future__ import annotations

import calendar
import csv
import fcntl
import io
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tastyrec.exceptions import StorageError
from tastyrec.storage.journal import read_segment
from tests.integration.conftest import Cli, Proc

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
VENV_ENV = "TASTYREC_PLAIN_VENV"
SYMBOLS = "SPY,QQQ,.SPY261218C600"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
#: DuckDB's CSV text of a TIMESTAMPTZ, and polars' JSON text (fraction trimmed or in full)
TIME_TEXT = re.compile(r"(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(?:\+00(?::00)?)?")


@dataclass(frozen=True)
class PlainInstall:
    venv: Path

    @property
    def tastyrec(self) -> Path:
        return self.venv / "bin" / "tastyrec"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def _build(venv: Path) -> None:
    made = subprocess.run(
        [sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=300
    )
    if made.returncode != 0:
        pytest.skip(
            f"this Python cannot create a venv ({made.stderr.strip()[-300:]}); "
            f"set {VENV_ENV} to a venv made with `pip install .` to run these tests"
        )
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if pip.returncode != 0:
        pytest.fail(
            f"`pip install {ROOT}` into a fresh venv failed:\n{pip.stderr[-3000:]}\n"
            f"(offline? set {VENV_ENV} to a venv made with `pip install .`, or deselect with "
            '-m "not slow")'
        )


@pytest.fixture(scope="session")
def plain(tmp_path_factory: pytest.TempPathFactory) -> PlainInstall:
    given = os.environ.get(VENV_ENV)
    if given:
        install = PlainInstall(Path(given).resolve())
        if not install.tastyrec.is_file():
            pytest.fail(f"{VENV_ENV}={given!r} has no bin/tastyrec: run `pip install .` into it")
    else:
        install = PlainInstall(tmp_path_factory.mktemp("plain") / "venv")
        _build(install.venv)
    # the installed package is this checkout's (a venv built from an older one proves nothing)
    where = subprocess.run(
        [str(install.python), "-c", "import tastyrec; print(tastyrec.__file__)"],
        capture_output=True, text=True, timeout=60, env=_env(), cwd=install.venv,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr
    installed = Path(where.stdout.strip()).parent
    stale = [
        str(p.relative_to(ROOT))
        for p in sorted((ROOT / "tastyrec").rglob("*.py"))
        if (installed / p.relative_to(ROOT / "tastyrec")).read_bytes() != p.read_bytes()
    ]
    assert not stale, f"{installed} is not this checkout ({stale[:3]}...): reinstall it"
    return install


def _env() -> dict[str, str]:
    """The environment of the plain venv's commands: nothing that points at the test venv
    (PYTHONPATH, VIRTUAL_ENV), no credentials, no terminal size override."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "COLUMNS", "LINES", "TASTYREC_DXLINK_TOKEN")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {k: v for k, v in env.items() if not k.startswith(("TASTYTRADE_", "JUPYTER_"))}


@pytest.fixture
def cli(plain: PlainInstall, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    runner = Cli(tmp_path_factory.mktemp("plain-cli"), command=[str(plain.tastyrec)])
    runner.env = _env()
    try:
        yield runner
    finally:
        runner.close()


def ok(proc: Proc) -> str:
    """stdout of a finished command that must have succeeded without a traceback."""
    assert proc.popen.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


# --- the recording: record, kill -9, recover, kill -9, record again ----------------------------


def journaled_rows(out: Path) -> int:
    rows = 0
    for segment in out.glob("_journal/*/date=*/*.arrows"):
        try:
            rows += read_segment(segment).rows
        except StorageError:
            if segment.exists():
                raise
    return rows


def sessions(out: Path) -> dict[str, str]:
    """session id -> status, read with pyarrow (strings only: no timestamps to Python)."""
    found = {}
    for path in (out / "_sessions").glob("*.parquet"):
        table = pq.read_table(path, columns=["session_id", "status"])
        found.update(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))
    return found


def kill_9_once_journaled(cli: Cli, out: Path) -> str:
    """Record until the journal holds rows, kill -9; return the killed session's id."""
    before = set(sessions(out))
    proc = cli.start(
        "record", "--symbols", SYMBOLS, "--demo", "--out", str(out), "--fsync", "always",
        "--no-status",
    )  # fmt: skip
    proc.wait_for("rows in the journal", lambda: journaled_rows(out) >= 10, timeout=60)
    proc.popen.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    (killed,) = set(sessions(out)) - before
    assert sessions(out)[killed] == "recording"
    assert (out / "_journal" / f"{killed}.lock").exists()
    return killed


@dataclass
class Recording:
    workdir: Path
    out: Path
    recovered_by_recover: str
    recovered_by_record: str
    recover_stdout: str
    record_again_stderr: str


@pytest.fixture(scope="module")
def recording(plain: PlainInstall, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    runner = Cli(tmp_path_factory.mktemp("plain-rec"), command=[str(plain.tastyrec)])
    runner.env = _env()
    out = runner.workdir / "data"
    try:
        # the README's quick start, shorter
        ok(runner.run("record", "--symbols", SYMBOLS, "--demo", "--for", "3s", timeout=120))
        first = kill_9_once_journaled(runner, out)
        recover = runner.run("recover", str(out), timeout=120)
        recover_stdout = ok(recover)
        second = kill_9_once_journaled(runner, out)
        again = runner.run(
            "record", "--symbols", SYMBOLS, "--demo", "--for", "2s", "--out", str(out),
            timeout=120,
        )  # fmt: skip
        ok(again)
        yield Recording(runner.workdir, out, first, second, recover_stdout, again.stderr)
    finally:
        runner.close()


# --- what DuckDB reads from the files directly -------------------------------------------------


def duck(out: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for folder in sorted(out.iterdir()):
        if not folder.name.startswith("_") and list(folder.glob("date=*/*.parquet")):
            con.execute(
                f"CREATE VIEW {folder.name} AS SELECT * FROM read_parquet("
                f"'{folder}/date=*/*.parquet', hive_partitioning = true, union_by_name = true)"
            )
    return con


def utc_text(epoch_ns: int, digits: int = 9) -> str:
    """``2026-11-21 13:44:20.582229960`` (written here, independently of tastyrec's own)."""
    seconds, frac = divmod(epoch_ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))
    return text + "." + f"{frac:09d}"[:digits] if digits else text


def text_ns(text: str) -> int:
    """Epoch ns of a UTC time as DuckDB's CSV or polars' JSON writes it."""
    match = TIME_TEXT.fullmatch(text)
    assert match, text
    day, clock, frac = match.groups()
    seconds = calendar.timegm(time.strptime(f"{day} {clock}", "%Y-%m-%d %H:%M:%S"))
    return seconds * 1_000_000_000 + int((frac or "").ljust(9, "0"))


#: the first Quotes, in an order that rows differing in what is shown cannot tie in
FIRST_QUOTES = (
    "FROM Quote ORDER BY recv_ns, event_symbol, bid_time, bid_price, ask_time, ask_price LIMIT 5"
)


def expected_quotes(out: Path) -> list[tuple[str, int, int, float]]:
    """(symbol, recv_ns, bid_time in epoch ns, bid price) of the first Quotes."""
    query = "SELECT event_symbol, epoch_ns(recv_ns), epoch_ns(bid_time), bid_price " + FIRST_QUOTES
    rows = duck(out).execute(query).fetchall()
    assert len(rows) == 5
    return rows


# --- pseudo-terminal ---------------------------------------------------------------------------


def on_terminal(argv: list[str], cwd: Path, columns: int, timeout: float = 60.0) -> str:
    """Run ``argv`` with stdin, stdout and stderr on a pseudo-terminal ``columns`` wide; its
    output without colours, ``\\r\\n`` made ``\\n``. Fails on a non-zero exit."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**_env(), "TERM": "xterm-256color"}
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"{argv} gave no end of output in {timeout} s: {b''.join(chunks)!r}")
            ready, _, _ = select.select([master], [], [], remaining)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal has exited
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = ANSI.sub("", b"".join(chunks).decode()).replace("\r\n", "\n")
    assert code == 0, text
    assert "Traceback" not in text, text
    return text


# --- the tests ---------------------------------------------------------------------------------


def test_the_plain_venv_has_no_pandas(plain):
    proc = subprocess.run(
        [str(plain.python), "-c", "import pandas"], capture_output=True, text=True, timeout=60,
        env=_env(), cwd=plain.venv,
    )  # fmt: skip
    assert proc.returncode != 0 and "No module named 'pandas'" in proc.stderr, proc.stderr


def test_kill_9_then_recover_then_record_again(recording):
    out = recording.out
    statuses = sessions(out)
    assert statuses[recording.recovered_by_recover] == "recovered"
    assert statuses[recording.recovered_by_record] == "recovered"
    assert sorted(statuses.values()) == ["ended", "ended", "recovered", "recovered"]
    assert not list(out.glob("_journal/*.lock")), "a lock left behind"
    assert not list(out.glob("_journal/*/date=*/*.arrows")), "journal segments left"
    match = re.search(r"recovered ([\d,]+) rows into (\d+) files", recording.recover_stdout)
    assert match and int(match.group(1).replace(",", "")) > 0, recording.recover_stdout
    # the next `record` into the folder recovered the second killed session first
    assert "recovered" in recording.record_again_stderr, recording.record_again_stderr


def test_info_shows_what_duckdb_reads(recording, cli):
    text = ok(cli.run("info", str(recording.out), timeout=60))
    con = duck(recording.out)
    for event_type in ("Quote", "Trade", "Greeks", "Summary", "Profile"):
        rows, first, last = con.execute(
            f"SELECT count(*), min(recv_epoch_ns), max(recv_epoch_ns) FROM {event_type}"
        ).fetchone()
        (line,) = [x for x in text.splitlines() if f" {event_type} " in x]
        assert f" {rows:,} " in line, line
        assert utc_text(first) in line and utc_text(last) in line, line
    assert "sessions: 4" in text
    for session, status in sessions(recording.out).items():
        (line,) = [x for x in text.splitlines() if session in x]
        assert status in line, line
    (start,) = con.execute(  # a session's start, nanoseconds and all
        "SELECT epoch_ns(start) FROM read_parquet("
        f"'{recording.out}/_sessions/*.parquet') WHERE session_id = ?",
        [recording.recovered_by_recover],
    ).fetchone()
    assert utc_text(start) in text


def test_sql_on_a_terminal_shows_whole_times_and_goes_vertical_when_too_wide(recording, plain):
    expected = expected_quotes(recording.out)
    wide = on_terminal(
        [str(plain.tastyrec), "sql", f"SELECT * {FIRST_QUOTES}"], recording.workdir, columns=160
    )
    assert "…" not in wide
    blocks = wide.split("-[ row ")[1:]
    assert [b.split(" ]")[0] for b in blocks] == ["1", "2", "3", "4", "5"]
    for block, (symbol, recv_ns, bid_ns, bid) in zip(blocks, expected, strict=True):
        fields = {
            name.strip(): value.strip()
            for name, _, value in (line.partition(": ") for line in block.splitlines()[1:])
            if value
        }
        assert fields["event_symbol"] == symbol
        assert fields["recv_ns"] == utc_text(recv_ns, 6) + "+00:00"  # microseconds (schema 2)
        assert fields["bid_time"] == utc_text(bid_ns, 6) + "+00:00"
        assert float(fields["bid_price"]) == bid
    assert wide.rstrip().endswith("5 rows")

    narrow = on_terminal(
        [str(plain.tastyrec), "sql", f"SELECT event_symbol, recv_ns, bid_price {FIRST_QUOTES}"],
        recording.workdir,
        columns=160,
    )
    assert "…" not in narrow and "-[ row" not in narrow
    assert "timestamp[us, tz=UTC]" in narrow
    lines = [line for line in narrow.splitlines() if line.startswith("│")]
    assert len(lines) == 5 and max(len(line) for line in narrow.splitlines()) <= 160
    for line, (symbol, recv_ns, _, bid) in zip(lines, expected, strict=True):
        cells = [c.strip() for c in line.strip("│").split("│")]
        assert cells == [symbol, utc_text(recv_ns, 6) + "+00:00", repr(bid)]


def test_sql_csv_json_and_parquet_hold_the_values_duckdb_reads(recording, cli, tmp_path):
    expected = expected_quotes(recording.out)
    query = f"SELECT event_symbol, recv_ns, bid_time, bid_price {FIRST_QUOTES}"
    base = ["sql", query, "--data", str(recording.out)]

    def from_csv(text: str) -> list[tuple[str, int, int, float]]:
        return [
            (
                r["event_symbol"],
                text_ns(r["recv_ns"]),
                text_ns(r["bid_time"]),
                float(r["bid_price"]),
            )
            for r in csv.DictReader(io.StringIO(text))
        ]

    into_file = ok(cli.run(*base, timeout=60))  # the Cli's stdout is a file
    assert from_csv(into_file) == expected
    into_pipe = subprocess.run(
        [*cli.command, *base], capture_output=True, text=True, timeout=60, env=_env(),
        cwd=cli.workdir,
    )  # fmt: skip
    assert into_pipe.returncode == 0, into_pipe.stderr
    assert into_pipe.stdout == into_file
    named = tmp_path / "q.csv"
    ok(cli.run(*base, "-o", str(named), timeout=60))
    assert named.read_text() == into_file

    lines = ok(cli.run(*base, "--format", "json", timeout=60)).splitlines()
    rows = [json.loads(line) for line in lines]
    assert [
        (r["event_symbol"], text_ns(r["recv_ns"]), text_ns(r["bid_time"]), r["bid_price"])
        for r in rows
    ] == expected

    parquet = tmp_path / "q.parquet"
    ok(cli.run(*base, "--format", "parquet", "-o", str(parquet), timeout=60))
    table = pq.read_table(parquet)
    assert str(table.schema.field("recv_ns").type) == "timestamp[us, tz=UTC]"
    assert [
        (symbol, recv_us * 1000, bid_us * 1000, bid)
        for symbol, recv_us, bid_us, bid in zip(
            table.column("event_symbol").to_pylist(),
            table.column("recv_ns").cast(pa.int64()).to_pylist(),  # microseconds
            table.column("bid_time").cast(pa.int64()).to_pylist(),  # microseconds
            table.column("bid_price").to_pylist(),
            strict=True,
        )
    ] == expected


def test_replay_prints_every_recorded_event(recording, cli):
    lines = ok(cli.run("replay", str(recording.out), timeout=120)).splitlines()
    events = [json.loads(line) for line in lines]
    con = duck(recording.out)
    counts: dict[str, int] = {}
    for event in events:
        counts[event["event_type"]] = counts.get(event["event_type"], 0) + 1
    assert set(counts) >= {"Quote", "Trade", "Greeks", "Summary", "Profile"}
    for event_type, n in counts.items():
        assert con.execute(f"SELECT count(*) FROM {event_type}").fetchone() == (n,)


def test_compact_then_sql_and_info_give_the_same_answers(recording, cli, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(recording.out, copy)
    query = (
        "SELECT event_symbol, count(*) AS n, max(recv_ns) AS last, min(bid_price) AS low "
        "FROM Quote GROUP BY 1 ORDER BY 1"
    )
    before = ok(cli.run("sql", query, "--data", str(copy), timeout=60))
    done = ok(cli.run("compact", str(copy), timeout=120))
    assert done.startswith("compacted "), done
    assert list(copy.glob("Quote/date=*/*-compact*.parquet"))
    assert ok(cli.run("sql", query, "--data", str(copy), timeout=60)) == before
    info = ok(cli.run("info", str(copy), timeout=60))
    assert "compacted)" in info and "sessions: 4" in info
