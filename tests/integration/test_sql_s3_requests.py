"""How many requests the views of ``tastyrec.connect("s3://...")`` cost: a real S3-compatible
server (moto) on 127.0.0.1, its request recorder counting HEADs and GETs.

DuckDB asks its filesystem for a file's existence, info, size and modification time and opens it
(each a HEAD through fsspec) and reads its footer (a GET) at every bind of ``read_parquet``; a
view binds again at every query. Over a recording of many files that was ~8 HEADs and 2 GETs per
file to connect and ~14 HEADs and 2 GETs per file for each query (benchmarks/RESULTS.md, "Opening
many small files on S3"). The views' filesystem takes the objects of a snapshot as immutable
(:func:`tastyrec.objectstore.fsspec_filesystem` with ``snapshot``): one HEAD for each object's
info, one to open it, one GET for its footer, for the life of the connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

import tastyrec
from tastyrec import objectstore
from tastyrec.events import Quote
from tastyrec.objectstore import S3Location
from tastyrec.schema import RECV_COLUMN, RECV_EXACT_COLUMN, arrow_schema, receipt_arrays
from tastyrec.storage import layout
from tastyrec.storage.parquet import write_parquet
from tests.integration.s3server import Request, S3Server

#: files of the recording, spread over DAYS New York days
FILES = 24
DAYS = 3
ROWS = 50
#: 2026-11-20 14:00 UTC
START_NS = 1_795_269_600 * 10**9
DAY_NS = 86_400 * 10**9
#: requests connect() makes whatever the number of files: the listings (a LIST per level), the
#: bookkeeping views' files (none here), and slack for a retried request
FIXED = 12

QUERIES = (
    "SELECT count(*) FROM Quote",
    "SELECT count(*), round(sum(bid_size), 2) FROM Quote WHERE event_symbol = 'SYM3'",
    "SELECT count(*) FROM Quote WHERE date = (SELECT min(date) FROM Quote)",
)


def quotes(first_ns: int, rows: int) -> pa.Table:
    """``rows`` quotes received 1 µs apart from ``first_ns``, 7 symbols, in the current schema;
    random prices and sizes (seeded by ``first_ns``: files do not compress to nothing)."""
    rng = np.random.default_rng(first_ns % 2**32)
    schema = arrow_schema(Quote)
    recv = first_ns + np.arange(rows, dtype=np.int64) * 1000
    columns: dict[str, pa.Array] = {}
    for field in schema:
        if pa.types.is_string(field.type):
            values = [f"SYM{i % 7}" for i in range(rows)]
            columns[field.name] = pa.array(values, field.type)
        elif pa.types.is_floating(field.type):
            columns[field.name] = pa.array(np.round(rng.uniform(1, 500, rows), 2))
        elif field.name not in (RECV_COLUMN, RECV_EXACT_COLUMN):
            columns[field.name] = pa.array(np.zeros(rows, np.int64)).cast(field.type)
    columns[RECV_COLUMN], columns[RECV_EXACT_COLUMN] = receipt_arrays(recv)
    return pa.table({f.name: columns[f.name] for f in schema}, schema=schema)


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    """FILES small Quote files over DAYS days, written by the recorder's Parquet writer."""
    root = tmp_path / "rec"
    for n in range(FILES):
        first_ns = START_NS + (n % DAYS) * DAY_NS + (n // DAYS) * ROWS * 1000
        day = layout.partition_date(first_ns)
        path = layout.parquet_path(root, "Quote", day, layout.file_name(first_ns, "footers1", n))
        path.parent.mkdir(parents=True, exist_ok=True)
        table = quotes(first_ns, ROWS)
        write_parquet(path, table.schema, table.to_batches())
    return root


@pytest.fixture
def bucket(s3: S3Server, recording: Path) -> S3Location:
    root = S3Location(s3.bucket, "rec")
    fs = objectstore.s3_filesystem()
    for file in sorted(recording.rglob("*.parquet")):
        objectstore.upload(file, root.join(file.relative_to(recording).as_posix()), fs=fs)
    return root


def object_requests(requests: Sequence[Request], method: str) -> list[Request]:
    """``method`` requests of one object (a HEAD, or a ranged or whole GET), not listings."""
    return [r for r in requests if r.method == method and r.path.endswith(".parquet")]


def test_connect_and_queries_ask_each_object_once(s3, recording, bucket):
    expected = [tastyrec.connect(recording).sql(q).fetchall() for q in QUERIES]
    assert expected[0] == [(FILES * ROWS,)] and expected[2][0][0] == (FILES // DAYS) * ROWS
    with s3.recording() as at_connect:
        con = tastyrec.connect(bucket.url)
    with s3.recording() as at_queries:
        answers = [con.sql(q).fetchall() for q in QUERIES]
    assert answers == expected
    # connect: per object one HEAD for its info and one to open it, one GET for its footer
    # (DuckDB reads a file this small whole in that GET); before the snapshot filesystem it
    # was 8 HEADs and 2 GETs per object (DESCRIBE, then CREATE VIEW, each binding)
    heads, gets = object_requests(at_connect, "HEAD"), object_requests(at_connect, "GET")
    assert len(gets) <= FILES + FIXED, gets
    assert len(heads) <= 2 * FILES + FIXED, len(heads)
    assert {r.path for r in gets} == {r.path for r in heads}
    assert len({r.path for r in gets}) == FILES
    # the queries bind the views again: nothing more is asked of the store (was 14 HEADs and
    # 2 GETs per object and query)
    footers = object_requests(at_queries, "GET")
    assert len(footers) + len(gets) <= FILES + FIXED, footers
    assert len(object_requests(at_queries, "HEAD")) <= FIXED


def test_a_large_file_reads_its_footer_once_and_its_row_groups_per_query(s3, tmp_path):
    # a file too large to be read whole: the footer is kept, the row groups a query needs are
    # read from the store at each query (DuckDB's own caches may keep them: at most as many)
    root = tmp_path / "big"
    first_ns = START_NS
    table = quotes(first_ns, 500_000)
    path = layout.parquet_path(
        root, "Quote", layout.partition_date(first_ns), layout.file_name(first_ns, "big00001", 1)
    )
    path.parent.mkdir(parents=True)
    write_parquet(path, table.schema, table.to_batches(max_chunksize=8192))
    url = S3Location(s3.bucket, "big")
    objectstore.upload(path, url.join(path.relative_to(root).as_posix()))
    query = "SELECT count(*), round(sum(bid_size), 2) FROM Quote WHERE event_symbol = 'SYM3'"
    expected = tastyrec.connect(root).sql(query).fetchall()
    con = tastyrec.connect(url.url)
    gone = tastyrec.connect(url.url)
    size = path.stat().st_size
    assert size > 4 * 2**20  # more than DuckDB reads in one block (2 MiB)
    heads = 0
    for n in range(2):
        with s3.recording() as requests:
            assert con.sql(query).fetchall() == expected
        gets = object_requests(requests, "GET")
        heads += len(object_requests(requests, "HEAD"))
        # the first query reads row groups from the store (DuckDB may keep them for the next)
        assert gets or n > 0, "the row groups come from the store"
        # no GET reaches the end of the object: the footer was kept from connect
        assert all(r.range and int(r.range.rpartition("-")[2]) < size - 1 for r in gets), gets
    # opened once for the snapshot (at connect, or at the first row-group read), not by every
    # handle DuckDB opens on it
    assert heads <= 1, heads
    # the object deleted (a compaction): the snapshot holds its info and footer, not the row
    # groups: the first read of one fails, naming the object
    key = url.join(path.relative_to(root).as_posix())
    objectstore.s3_filesystem().delete_file(key.path)
    with pytest.raises(duckdb.Error, match=r"(opening|reading) s3://.*big00001"):
        gone.sql(query).fetchall()
