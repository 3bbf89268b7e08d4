"""Arrow values to Python and to text without pandas (tastyrec._arrow_values), and the
``tastyrec sql`` terminal table / vertical layout that shows them.

The tables come from DuckDB, as in ``tastyrec sql``. The no-pandas checks run in a subprocess
where ``import pandas`` fails (a shadowing package on ``PYTHONPATH``): with pandas importable,
pyarrow would hide the problem by handing out ``pandas.Timestamp``.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from datetime import timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from tastyrec._arrow_values import format_ns, rows, text_columns
from tastyrec.query.commands import _cell, _render_table

#: 2026-12-07 00:52:00.195026056 UTC: not a whole microsecond
T = 1_796_604_720_195_026_056

VALUES = f"""
SELECT make_timestamp_ns({T})::TIMESTAMPTZ_NS AS recv_ns,
       make_timestamp_ns({T}) AS naive_ns,
       TIMESTAMPTZ '2026-12-07 00:52:00.074+00' AS bid_time,
       [make_timestamp_ns({T}), NULL] AS times,
       {{'at': make_timestamp_ns(-1), 'n': 1}} AS s,
       MAP {{'k': make_timestamp_ns(500000000)}} AS m,
       TIME '12:00:01.5' AS clock,
       'SPY' AS symbol,
       1.25::DOUBLE AS price
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
"""


def duck_table(query: str = VALUES) -> pa.Table:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    table = con.sql(query).to_arrow_table()
    assert table is not None
    return table


def test_rows_give_times_as_exact_integer_nanoseconds():
    got = rows(duck_table())
    assert got[0] == {
        "recv_ns": T,
        "naive_ns": T,
        "bid_time": 1_796_604_720_074_000_000,
        "times": [T, None],
        "s": {"at": -1, "n": 1},
        "m": [("k", 500_000_000)],
        "clock": 43_201_500_000_000,
        "symbol": "SPY",
        "price": 1.25,
    }
    assert set(got[1].values()) == {None}
    # a slice (non-zero offset) and several chunks keep row alignment
    table = pa.concat_tables([duck_table(), duck_table()])
    assert rows(table.slice(1, 2)) == [got[1], got[0]]


def test_text_is_exact_to_the_unit_and_in_the_column_time_zone():
    (recv, naive, bid, times, s, m, clock, symbol, price) = text_columns(duck_table(), _cell)
    assert recv == ["2026-12-07 00:52:00.195026056+00:00", "NULL"]
    assert naive == ["2026-12-07 00:52:00.195026056", "NULL"]
    assert bid == ["2026-12-07 00:52:00.074000+00:00", "NULL"]
    assert times[0] == "['2026-12-07 00:52:00.195026056', None]"
    assert s[0] == "{'at': '1969-12-31 23:59:59.999999999', 'n': 1}"
    assert m[0] == "[('k', '1970-01-01 00:00:00.500000000')]"
    assert clock == ["12:00:01.500000", "NULL"]
    assert symbol == ["SPY", "NULL"] and price == ["1.25", "NULL"]
    ny = pa.array([T], pa.timestamp("ns", tz="America/New_York"))
    assert text_columns(pa.table({"t": ny}), _cell) == [["2026-12-06 19:52:00.195026056-05:00"]]
    fixed = pa.array([T // 1_000_000], pa.timestamp("ms", tz="+05:30"))
    assert text_columns(pa.table({"t": fixed}), _cell) == [["2026-12-07 06:22:00.195+05:30"]]


def test_format_ns():
    assert format_ns(T) == "2026-12-07 00:52:00.195026056"
    assert format_ns(T, digits=3, tz=timezone(timedelta(hours=-5))) == (
        "2026-12-06 19:52:00.195-05:00"
    )
    assert format_ns(0, digits=0) == "1970-01-01 00:00:00"
    assert format_ns(2**63 - 1) == "2262-04-11 23:47:16.854775807"
    assert format_ns((2**63 - 1) * 1000) == "infinity"


def run_without_pandas(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    shadow = tmp_path / "shadow" / "pandas"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no pandas in this test')\n")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow.parent), str(root)])}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip


def test_without_pandas_values_text_and_file_pruning_are_the_same(tmp_path):
    """What pandas' presence must not change: rows(), text_columns(), and recording_files()
    pruning on the footer statistics of a nanosecond receipt time."""
    from datetime import UTC, datetime

    from tastyrec import catalog
    from tastyrec.storage import layout

    path = layout.parquet_path(
        tmp_path / "rec", "Quote", layout.partition_date(T), layout.file_name(T, "aaaa0001", 1)
    )
    path.parent.mkdir(parents=True)
    recv = pa.array([T, T + 1], pa.int64()).cast(pa.timestamp("ns", tz="UTC"))
    pq.write_table(pa.table({"event_symbol": ["SPY", "SPY"], "recv_ns": recv}), path)
    after = datetime(2026, 12, 7, 0, 53, tzinfo=UTC)
    assert catalog.recording_files(tmp_path / "rec", "Quote", start=after) == []
    code = f"""
        import pyarrow as pa
        from datetime import UTC, datetime
        from tastyrec import catalog
        from tastyrec._arrow_values import rows, text_columns
        from tastyrec.query.commands import _cell
        from tests.unit.test_arrow_values import duck_table
        try:
            pa.array([{T}], pa.timestamp("ns")).to_pylist()
        except ValueError:
            print("pyarrow needs pandas")
        table = duck_table()
        print(repr(rows(table)))
        print(repr(text_columns(table, _cell)))
        after = datetime(2026, 12, 7, 0, 53, tzinfo=UTC)
        print(repr(catalog.recording_files({str(tmp_path / "rec")!r}, "Quote", start=after)))
    """
    proc = run_without_pandas(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "pyarrow needs pandas"  # the shadow works: the check means something
    assert lines[1:] == [
        repr(rows(duck_table())),
        repr(text_columns(duck_table(), _cell)),
        "[]",
    ]


# --- the terminal table and the vertical layout -----------------------------------------------


def render(table: pa.Table, width: int, *, fit: bool) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, legacy_windows=False)
    _render_table(table, console, fit=fit)
    return out.getvalue()


QUOTES = f"""
SELECT 'SPY' AS event_symbol, make_timestamp_ns({T} + i)::TIMESTAMPTZ_NS AS recv_ns,
       TIMESTAMPTZ '2026-12-07 00:52:00.074+00' AS bid_time, 576.44 + i AS bid_price,
       'Q' AS bid_exchange_code, 'X' AS ask_exchange_code, 1000.0 AS bid_size,
       2900.0 AS ask_size, 0 AS sequence, 0 AS time_nano_part
FROM range(3) t(i)
"""


@pytest.mark.parametrize("width", [160, 400])
def test_a_result_that_fits_is_a_table_with_nothing_cut(width):
    table = duck_table(QUOTES).select(["event_symbol", "recv_ns", "bid_price"])
    text = render(table, width, fit=True)
    assert "…" not in text and "-[ row" not in text
    assert "2026-12-07 00:52:00.195026058+00:00" in text and "timestamp[ns, tz=UTC]" in text
    assert "│ SPY " in text and "3 rows" in text


def test_a_result_too_wide_for_the_terminal_is_shown_one_record_per_block():
    table = duck_table(QUOTES)
    text = render(table, 160, fit=True)
    assert "…" not in text and "│" not in text
    blocks = text.split("-[ row ")[1:]
    assert [b.split(" ]")[0] for b in blocks] == ["1", "2", "3"]
    lines = blocks[2].splitlines()
    assert lines[1] == "event_symbol:      SPY"
    assert lines[2] == "recv_ns:           2026-12-07 00:52:00.195026058+00:00"
    assert lines[3] == "bid_time:          2026-12-07 00:52:00.074000+00:00"
    assert text.rstrip().endswith("3 rows")
    assert max(len(line) for line in text.splitlines()) <= 160
    # the same result at a width it fits: a table
    assert "-[ row" not in render(table, 400, fit=True)


def test_a_file_gets_the_whole_table_however_wide():
    table = duck_table(QUOTES)
    text = render(table, 80, fit=False)
    assert "…" not in text and "-[ row" not in text
    assert "2026-12-07 00:52:00.195026056+00:00" in text
    assert max(len(line) for line in text.splitlines()) > 160


def test_brackets_in_values_are_text_not_markup():
    table = duck_table("SELECT '[bold]x[/bold]' AS v, ['a'] AS l")
    text = render(table, 80, fit=True)
    assert "[bold]x[/bold]" in text and "['a']" in text


def test_an_empty_result_too_wide_still_names_its_columns():
    table = duck_table(QUOTES + " LIMIT 0")
    text = render(table, 40, fit=True)
    assert "columns: event_symbol, recv_ns" in text and "0 rows" in text


def test_inventory_times_are_exact_epoch_nanoseconds():
    import tastyrec

    sample = Path(__file__).resolve().parents[1] / "data" / "sample"
    inv = tastyrec.inventory(sample)
    quote = next(t for t in inv.types if t.event_type == "Quote")
    first, last = (
        duckdb.connect()
        .execute(
            "SELECT epoch_ns(min(recv_ns)), epoch_ns(max(recv_ns)) "
            f"FROM read_parquet('{sample}/Quote/*/*.parquet')"
        )
        .fetchone()
    )
    assert (quote.first_ns, quote.last_ns) == (first, last)
    assert quote.first is not None and quote.first.tzinfo is not None
    assert round(quote.first.timestamp() * 1e6) == first // 1000  # to the microsecond
    (session,) = inv.sessions
    assert isinstance(session["start"], int) and isinstance(session["end"], int)
    assert session["start"] <= first <= last <= session["end"]
    (gap,) = inv.gaps
    assert isinstance(gap["disconnected"], int)
