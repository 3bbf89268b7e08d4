"""connect() and scan() over real recordings: the shipped sample, schema changes, pruning."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tastyrec.events import Greeks, Quote, Trade
from tastyrec.exceptions import StorageError
from tastyrec.query import compact, connect, refresh, scan
from tastyrec.schema import arrow_schema, upgrade
from tastyrec.storage import layout

SAMPLE = Path(__file__).parent.parent / "data" / "sample"
TYPES = ["Candle", "Greeks", "Profile", "Quote", "Summary", "TimeAndSale", "Trade"]
DAY = date(2026, 11, 21)


@pytest.fixture
def rec(tmp_path: Path) -> Path:
    """A private copy of the sample recording (schema version 1)."""
    out = tmp_path / "rec"
    shutil.copytree(SAMPLE, out)
    return out


def arrow(con: duckdb.DuckDBPyConnection, query: str) -> pa.Table:
    return con.sql(query).to_arrow_table()


def scan_node(con: duckdb.DuckDBPyConnection, query: str, tmp_path: Path) -> dict:
    """DuckDB's profile of the Parquet scan of ``query``."""
    out = tmp_path / "profile.json"
    con.execute("PRAGMA enable_profiling = 'json'")
    con.execute(f"PRAGMA profiling_output = '{out}'")
    con.sql(query).fetchall()
    con.execute("PRAGMA disable_profiling")
    nodes = [json.loads(out.read_text())]
    while nodes:
        node = nodes.pop()
        if node.get("type") == "TABLE_SCAN":
            return node
        nodes += node.get("operator", []) + node.get("children", [])
    raise AssertionError("no TABLE_SCAN in the profile")


def test_the_sample_is_a_schema_version_1_recording():
    # the schema-evolution fixture: keep it as recorded by the first released schema
    for f in SAMPLE.glob("*/date=*/*.parquet"):
        assert pq.read_schema(f).metadata[b"tastyrec.schema_version"] == b"1"


def test_one_view_per_event_type_plus_sessions_and_gaps(rec):
    con = connect(rec)
    names = sorted(r[0] for r in con.sql("SHOW TABLES").fetchall())
    assert names == sorted([*TYPES, "gaps", "sessions"])
    for name in TYPES:
        expected = sum(pq.read_metadata(f).num_rows for f in rec.glob(f"{name}/*/*.parquet"))
        assert con.sql(f'SELECT count(*) FROM "{name}"').fetchall() == [(expected,)]
    sessions = arrow(con, "SELECT * FROM sessions").to_pylist()
    assert [s["session_id"] for s in sessions] == ["44f3ceba"]
    assert sessions[0]["rows"] == sum(
        con.sql(f'SELECT count(*) FROM "{n}"').fetchall()[0][0] for n in TYPES
    )
    assert con.sql("SELECT count(*) FROM gaps").fetchall() == [(1,)]


def test_times_are_timestamps_and_date_is_the_partition(rec):
    con = connect(rec)
    types = dict(con.sql("SELECT column_name, column_type FROM (DESCRIBE Quote)").fetchall())
    # a schema version 1 recording, read as version 2 has it
    assert types["recv_ns"] == "TIMESTAMP WITH TIME ZONE"
    assert types["recv_epoch_ns"] == "BIGINT"
    assert types["bid_time"] == "TIMESTAMP WITH TIME ZONE"
    assert types["date"] == "DATE"
    row = arrow(con, "SELECT min(recv_ns) AS first, any_value(date) AS d FROM Quote").to_pylist()
    first = row[0]["first"]
    assert first.year == 2026 and first.tzinfo is not None and row[0]["d"] == DAY
    # nanoseconds are kept in recv_epoch_ns: the same value as the file; recv_ns is floored
    raw = pq.read_table(sorted(rec.glob("Quote/*/*.parquet"))[0], columns=["recv_ns"])
    exact = raw.column(0).cast(pa.int64()).to_pylist()[0]
    assert con.sql(
        "SELECT min(recv_epoch_ns), epoch_us(min(recv_ns)) FROM Quote"
    ).fetchall() == [(exact, exact // 1000)]
    # the shown time zone is UTC
    assert con.sql("SELECT current_setting('TimeZone')").fetchall() == [("UTC",)]


def test_symbol_filters_skip_row_groups_and_date_filters_skip_files(rec, tmp_path):
    compact(rec, row_group_rows=100)  # sorted by symbol: row-group statistics are sharp
    con = connect(rec)
    node = scan_node(con, "SELECT count(*) FROM Quote WHERE event_symbol = 'SPY'", tmp_path)
    assert node["rows_scanned"] == 191  # only SPY's rows
    assert node["row_groups_scanned"] < node["total_row_groups_to_scan"] == 10
    # another day's partition: a filter on date never opens it
    other = rec / "Quote" / "date=2026-11-22"
    other.mkdir()
    shutil.copy(next((rec / "Quote" / "date=2026-11-21").glob("*.parquet")), other / "x.parquet")
    refresh(con, rec)
    assert con.sql("SELECT count(*) FROM Quote").fetchall() == [(955 * 2,)]
    node = scan_node(con, "SELECT count(*) FROM Quote WHERE date = DATE '2026-11-22'", tmp_path)
    assert node["extra_info"]["Total Files Read"] == "1"
    assert "2026-11-22" in node["extra_info"]["Filename(s)"]


def write_changed_quote_file(rec: Path) -> Path:
    """A Quote file from a different schema: one column more, one column less."""
    base = pq.read_table(sorted(rec.glob("Quote/*/*.parquet"))[0]).slice(0, 10)
    changed = base.drop_columns(["ask_exchange_code"]).append_column(
        "queue_position", pa.array(range(10), pa.int32())
    )
    meta = dict(changed.schema.metadata)
    meta[b"tastyrec.schema_version"] = b"3"
    path = (
        rec
        / "Quote"
        / "date=2026-11-21"
        / (layout.file_name(10**18 * 2, "9999eeee", 1) + ".parquet")
    )
    pq.write_table(changed.replace_schema_metadata(meta), path)
    return path


def test_schema_changes_across_files_are_tolerated(rec):
    write_changed_quote_file(rec)
    con = connect(rec)
    got = arrow(
        con,
        "SELECT count(*) AS n, count(queue_position) AS with_queue, "
        "count(ask_exchange_code) AS with_exchange, sum(queue_position) AS q FROM Quote",
    ).to_pylist()[0]
    assert got == {"n": 965, "with_queue": 10, "with_exchange": 955, "q": sum(range(10))}
    # polars reads every file into the current schema: the extra column is left out
    frame = scan(rec, Quote).collect()
    assert frame.height == 965 and "queue_position" not in frame.columns
    assert frame["ask_exchange_code"].null_count() == 10


def test_schema_changes_survive_compaction(rec):
    write_changed_quote_file(rec)
    before = arrow(connect(rec), "SELECT * EXCLUDE (date) FROM Quote ORDER BY ALL")
    (result,) = compact(rec, event_types=["Quote"])
    assert len(result.inputs) == 4 and len(result.outputs) == 1
    meta = pq.read_schema(result.outputs[0]).metadata
    assert meta[b"tastyrec.schema_version"] == b"2"  # rewritten in the current version
    after = arrow(connect(rec), "SELECT * EXCLUDE (date) FROM Quote ORDER BY ALL")
    # polars' equality treats NaN (the sample has NaN sizes) as equal to NaN
    assert pl.from_arrow(after.select(before.column_names)).equals(pl.from_arrow(before))


def test_scan_pushes_date_and_symbol_down(rec):
    lf = scan(rec, Quote).filter(pl.col("event_symbol") == "SPY", pl.col("date") == DAY)
    plan = lf.explain()
    scan_part = plan[plan.index("Parquet SCAN") :]
    assert "SELECTION" in scan_part and "event_symbol" in scan_part and "date" in scan_part
    assert lf.select(pl.len()).collect().item() == 191
    assert scan(rec, Quote, symbols=["SPY", "QQQ"]).select(pl.len()).collect().item() == 382
    assert scan(rec, Quote, start=date(2026, 11, 22)).collect().height == 0
    later = datetime(2026, 11, 21, 13, 44, 30, tzinfo=UTC)
    times = scan(rec, Trade, start=later).select("recv_ns").collect()["recv_ns"]
    assert times.len() > 0 and times.min() >= later
    assert scan(rec, Greeks).collect_schema()["recv_ns"] == pl.Datetime("us", "UTC")


def test_a_missing_recording_is_a_clear_error(tmp_path):
    with pytest.raises(StorageError, match="no recording at"):
        connect(tmp_path / "nope")
    with pytest.raises(StorageError, match="no recording at"):
        scan(tmp_path / "nope", Quote)


def test_an_empty_folder_has_empty_bookkeeping_views(tmp_path):
    con = connect(tmp_path)
    assert con.sql("SELECT count(*) FROM sessions").fetchall() == [(0,)]
    assert "session_id" in [r[0] for r in con.sql("DESCRIBE gaps").fetchall()]
    assert scan(tmp_path, Quote).collect().schema["recv_ns"] == pl.Datetime("us", "UTC")
    assert arrow_schema(Quote).names[0] == "event_symbol"


def test_files_of_schema_versions_1_and_2_in_one_view(rec):
    """A recording upgraded mid-way: DuckDB, polars, replay order and compaction agree."""
    files = sorted(rec.glob("Quote/*/*.parquet"))
    exact = sorted(
        ns
        for f in files
        for ns in pq.read_table(f, columns=["recv_ns"]).column(0).cast(pa.int64()).to_pylist()
    )
    newer = upgrade(pq.read_table(files[1]))  # one file rewritten as version 2 writes it
    meta = {**newer.schema.metadata, b"tastyrec.schema_version": b"2"}
    pq.write_table(newer.replace_schema_metadata(meta), files[1])
    con = connect(rec)
    types = dict(con.sql("SELECT column_name, column_type FROM (DESCRIBE Quote)").fetchall())
    assert types["recv_ns"] == "TIMESTAMP WITH TIME ZONE" and types["recv_epoch_ns"] == "BIGINT"
    rows = con.sql("SELECT recv_epoch_ns, epoch_us(recv_ns) FROM Quote ORDER BY 1").fetchall()
    assert rows == [(ns, ns // 1000) for ns in exact]
    frame = scan(rec, Quote).collect().sort("recv_epoch_ns")
    assert frame["recv_epoch_ns"].to_list() == exact
    assert frame["recv_ns"].dt.epoch("us").to_list() == [ns // 1000 for ns in exact]
    compact(rec, event_types=["Quote"])
    (merged,) = rec.glob("Quote/*/*.parquet")
    assert pq.read_schema(merged).field("recv_ns").type == pa.timestamp("us", tz="UTC")
    again = connect(rec).sql("SELECT recv_epoch_ns, epoch_us(recv_ns) FROM Quote ORDER BY 1")
    assert again.fetchall() == rows
