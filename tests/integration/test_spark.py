"""Apache Spark reads a recording as it is, with its default settings (issue 19).

Schema version 1's ``TIMESTAMP(NANOS)`` receipt time made Spark refuse every table
(FIELD_REPORTS #15); version 2's ``recv_ns`` is ``TIMESTAMP(MICROS, UTC)``. The recording here is
the sample compacted (compaction rewrites it in the current schema with the project's writer)
plus a second day; Spark and DuckDB must agree on rows, the ``date`` partition and timestamps.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import tastyrec
from tests.integration.sample_days import SAMPLE, copy_sample_days

pytestmark = [
    pytest.mark.skipif(
        shutil.which("java") is None, reason="no Java runtime (`java` not on PATH): Spark needs one"
    ),
]
TYPES = ["Quote", "Trade", "Greeks"]


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    pyspark_sql = pytest.importorskip("pyspark.sql")
    session = (
        pyspark_sql.SparkSession.builder.master("local[1]")
        .appName("tastyrec-test")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "512m")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.ui.showConsoleProgress", "false")
        # start-up and compile time only (a few hundred rows): nothing about reading Parquet
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -Xss4m")
        .config("spark.sql.codegen.wholeStage", "false")
        .config("spark.sql.adaptive.enabled", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("spark")
    shutil.copytree(SAMPLE, root / "rec")
    tastyrec.compact(root / "rec")  # the sample (version 1) rewritten by the project's writer
    copy_sample_days(root / "more", 2)  # and the next day, written as the recorder writes
    for day in (root / "more").glob("*/date=2026-11-22"):
        shutil.copytree(day, root / "rec" / day.parent.name / day.name)
    return root / "rec"


def test_every_file_is_schema_version_2(recording: Path) -> None:
    files = list(recording.glob("*/date=*/*.parquet"))
    assert len(files) >= 2 * len(TYPES)
    for f in files:
        schema = pq.read_schema(f)
        assert schema.metadata[b"tastyrec.schema_version"] == b"2"
        assert str(schema.field("recv_ns").type) == "timestamp[us, tz=UTC]"


@pytest.mark.parametrize("event_type", TYPES)
def test_spark_reads_what_duckdb_reads(spark: Any, recording: Path, event_type: str) -> None:
    df = spark.read.parquet(str(recording / event_type))  # default settings, partition discovery
    types = dict(df.dtypes)
    assert types["recv_ns"] == "timestamp" and types["recv_epoch_ns"] == "bigint"
    assert types["date"] == "date"
    df.createOrReplaceTempView("t")
    got = spark.sql(
        "SELECT date, event_symbol, unix_micros(recv_ns) AS us, recv_epoch_ns FROM t "
        "ORDER BY recv_epoch_ns, event_symbol, us"
    ).collect()
    con = tastyrec.connect(recording)
    expected = con.sql(
        f'SELECT date, event_symbol, epoch_us(recv_ns), recv_epoch_ns FROM "{event_type}" '
        "ORDER BY recv_epoch_ns, event_symbol, 3"
    ).fetchall()
    assert len(got) == len(expected) > 0
    assert [tuple(r) for r in got] == expected
    days = {r[0] for r in expected}
    assert len(days) == 2
    # the timestamp is the exact receipt time floored to the microsecond
    assert all(us == ns // 1000 for _, _, us, ns in expected)


def test_spark_refused_schema_version_1(spark: Any) -> None:
    """Why version 2 exists: the sample's nanosecond receipt time is refused (FIELD_REPORTS #15)."""
    with pytest.raises(Exception, match="(?i)illegal parquet type|TIMESTAMP\\(NANOS"):
        spark.read.parquet(str(SAMPLE / "Quote")).collect()
