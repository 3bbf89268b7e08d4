"""``tastyrec sql``, ``info`` and ``compact`` as users run them: real subprocesses, real files.

The recording is made the way the README shows: ``tastyrec record --demo`` into ``data/``.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

SAMPLE = Path(__file__).parent.parent / "data" / "sample"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh ``tastyrec record --demo`` recording (made once for this module)."""
    from .conftest import Cli

    cli = Cli(tmp_path_factory.mktemp("demo"))
    try:
        types = ("Quote", "Trade", "Greeks", "Summary", "Profile")
        cli.record_until(
            cli.workdir / "data",
            lambda rows: all(rows.get(t) for t in types) and rows["Quote"] >= 30,
            "--symbols", "SPY,QQQ,.SPY261218C600", "--demo",
        )  # fmt: skip
    finally:
        cli.close()
    assert list((cli.workdir / "data").glob("Quote/date=*/*.parquet"))
    return cli.workdir


def test_sql_csv_when_piped(cli, demo):
    proc = cli.run(
        "sql",
        "SELECT event_symbol, count(*) AS n, avg(ask_price - bid_price) AS spread "
        "FROM Quote GROUP BY 1 ORDER BY 1",
        cwd=demo,
    )
    assert proc.popen.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [r["event_symbol"] for r in rows] == [".SPY261218C600", "QQQ", "SPY"]
    assert all(int(r["n"]) > 0 and float(r["spread"]) >= 0 for r in rows)


def test_sql_formats_and_output_files(cli, demo, tmp_path):
    query = "SELECT event_symbol, recv_ns, bid_price FROM Quote ORDER BY recv_ns LIMIT 5"
    proc = cli.run("sql", query, "--format", "json", cwd=demo)
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 5 and set(lines[0]) == {"event_symbol", "recv_ns", "bid_price"}
    out = tmp_path / "q.parquet"
    proc = cli.run("sql", query, "--format", "parquet", "-o", str(out), cwd=demo)
    assert proc.popen.returncode == 0, proc.stderr
    table = pq.read_table(out)
    assert (
        table.num_rows == 5 and str(table.schema.field("recv_ns").type) == "timestamp[us, tz=UTC]"
    )
    text = tmp_path / "q.txt"
    proc = cli.run("sql", query, "--format", "table", "-o", str(text), cwd=demo)
    shown = text.read_text()
    assert "event_symbol" in shown and "5 rows" in shown and "│" in shown


def test_sql_over_bookkeeping_and_a_data_option(cli, tmp_path):
    shutil.copytree(SAMPLE, tmp_path / "rec")
    proc = cli.run(
        "sql", "SELECT session_id, status FROM sessions", "--data", str(tmp_path / "rec")
    )
    assert proc.stdout.splitlines() == ["session_id,status", "44f3ceba,ended"]
    proc = cli.run("sql", "SELECT count(*) AS gaps FROM gaps", "-d", str(tmp_path / "rec"))
    assert proc.stdout.splitlines()[1] == "1"


def test_sql_errors_say_what_to_do(cli, demo, tmp_path):
    proc = cli.run("sql", "SELECT * FROM Nope", cwd=demo)
    assert proc.popen.returncode == 1
    assert "Nope" in proc.stderr and "tables in 'data': " in proc.stderr
    assert "Quote" in proc.stderr and "tastyrec info data" in proc.stderr
    proc = cli.run("sql", "SELECT 1", "--data", str(tmp_path / "missing"))
    assert proc.popen.returncode == 2 and "there is no folder" in proc.stderr
    for fmt in ("csv", "json", "table"):
        out = str(tmp_path / "no" / "x")
        proc = cli.run("sql", "SELECT 1", "--data", str(SAMPLE), "--format", fmt, "-o", out)
        assert proc.popen.returncode == 2, proc.stderr
        assert f"no folder {str(tmp_path / 'no')!r} for -o: create it first" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_info_shows_types_sessions_and_gaps(cli, tmp_path):
    shutil.copytree(SAMPLE, tmp_path / "rec")
    proc = cli.run("info", str(tmp_path / "rec"))
    assert proc.popen.returncode == 0, proc.stderr
    out = proc.stdout
    for name in ("Candle", "Greeks", "Profile", "Quote", "Summary", "TimeAndSale", "Trade"):
        assert name in out
    assert "2,384 rows" in out and "955" in out and "2026-11-21 13:44:20.582229960" in out
    assert "sessions: 1" in out and "44f3ceba" in out and "ended" in out
    assert "gaps: 1" in out and "connection closed" in out


def test_info_of_the_default_folder(cli, demo):
    proc = cli.run("info", cwd=demo)
    assert proc.popen.returncode == 0, proc.stderr
    assert "Quote" in proc.stdout and "Greeks" in proc.stdout and "sessions: 1" in proc.stdout


def test_compact_then_the_same_answers(cli, tmp_path):
    rec = tmp_path / "rec"
    shutil.copytree(SAMPLE, rec)
    query = (  # order-independent aggregates (a float sum depends on the row order)
        "SELECT event_symbol, count(*), min(bid_price), max(recv_ns) FROM Quote "
        "GROUP BY 1 ORDER BY 1"
    )
    before = cli.run("sql", query, "-d", str(rec)).stdout
    proc = cli.run("compact", str(rec))
    assert proc.popen.returncode == 0, proc.stderr
    assert proc.stdout.startswith("compacted 19 files into 7 (2,384 rows) in 7 of 7 partitions")
    assert "Quote date=2026-11-21: 3 files -> 1 (955 rows" in proc.stderr
    assert cli.run("sql", query, "-d", str(rec)).stdout == before
    again = cli.run("compact", str(rec), "--date", "2026-11-21")
    assert again.stdout.strip() == "7 partitions up to date"
    none = cli.run("compact", str(rec), "--date", "2026-11-22")
    assert none.stdout.strip() == f"nothing recorded in {str(rec)!r} on 2026-11-22"
    bad = cli.run("compact", str(rec), "--date", "yesterday")
    assert bad.popen.returncode == 2 and "is not a date such as" in bad.stderr


def test_sql_csv_is_the_same_text_into_a_pipe_a_file_or_o_file(tmp_path):
    """DuckDB writes the CSV whatever stdout is (into a file through a temporary file): times
    keep their nanoseconds and look the same however the output is taken."""
    import subprocess
    import sys

    query = (
        "SELECT event_symbol, count(*) AS n, min(bid_price) AS low, max(recv_ns) AS last, "
        "max(bid_time) AS bid_time FROM Quote GROUP BY 1 ORDER BY 1"
    )
    command = [sys.executable, "-m", "tastyrec", "sql", query, "--data", str(SAMPLE)]
    piped = subprocess.run(  # stdout is a pipe: DuckDB writes to /dev/stdout
        command, capture_output=True, text=True, timeout=60, check=True
    )
    into_file = tmp_path / "out.csv"
    into_file.write_text("kept\n")
    with open(into_file, "a") as fh:  # `>>`: what the file held stays
        subprocess.run(command, stdout=fh, timeout=60, check=True)
    named = tmp_path / "named.csv"
    subprocess.run([*command, "-o", str(named)], timeout=60, check=True)
    assert into_file.read_text() == "kept\n" + piped.stdout
    assert named.read_text() == piped.stdout
    rows = list(csv.DictReader(io.StringIO(piped.stdout)))
    assert [r["event_symbol"] for r in rows] == sorted(r["event_symbol"] for r in rows)
    assert len(rows) == 5 and all(int(r["n"]) > 0 for r in rows)
    assert all(re.fullmatch(r"2026-11-2\d \d\d:\d\d:\d\d\.\d{1,9}\+00", r["last"]) for r in rows)


def test_sql_starts_without_the_recording_stack():
    """``tastyrec sql`` into a pipe imports click and DuckDB, not the streamers, the event
    classes, polars or pyarrow: its start-up counts in the within-1.2x-of-raw-DuckDB target."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from tastyrec.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "heavy = ('anyio', 'msgspec', 'websockets', 'polars', 'pyarrow', 'numpy', 'rich')\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in heavy]\n"
        "ours = ('tastyrec.events', 'tastyrec.dxlink', 'tastyrec.record.recorder')\n"
        "loaded += [m for m in sys.modules if m.startswith(ours)]\n"
        "print('LOADED', sorted(loaded), file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "sql", "SELECT count(*) AS n FROM Quote", "-d", str(SAMPLE)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert proc.stdout.splitlines()[0] == "n" and int(proc.stdout.splitlines()[1]) > 0
    assert proc.stderr.strip().splitlines()[-1] == "LOADED []"
