"""A query over a recording on S3 (moto on loopback) against the same files on local disk.

The recording is ``bench_sql.py``'s: synthetic quotes written with the recorder's Parquet
writer, ``--files`` files in one partition. It is uploaded with ``tastyrec.objectstore.upload``
into a moto server started on 127.0.0.1 (``tests/integration/s3server.py``, fake credentials),
then the same queries run through ``tastyrec.connect(<local folder>)`` and
``tastyrec.connect("s3://bucket/rec")`` (DuckDB reading through fsspec over pyarrow's S3
filesystem: ranged GETs), listing included; medians of repeats. The server's request recorder
counts the GETs and the bytes they asked for in one repeat of each S3 query.

moto keeps objects in memory and serves them through a Python (werkzeug) server: a real S3
endpoint has more latency per request and far more bandwidth; read the S3 figures as "what the
request pattern costs on loopback", not as S3 speed.

Run: python benchmarks/bench_query_s3.py [--rows 10000000] [--files 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.integration.s3server
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_sql

import duckdb
import numpy as np
import pyarrow as pa
from bench_sql import QUERY, START_NS

import tastyrec
from tastyrec import objectstore
from tastyrec.events import Quote
from tastyrec.schema import arrow_schema
from tastyrec.storage import layout
from tastyrec.storage.parquet import write_parquet
from tests.integration.s3server import FAKE_ENV, S3Server


def quote_table(count: int, first_ns: int, rng: np.random.Generator, symbols: int) -> pa.Table:
    """``bench_sql.quote_table`` in the current schema (version 2: microsecond ``recv_ns``
    and the exact ``recv_epoch_ns``): quotes 1 µs apart, random-walk prices."""
    schema = arrow_schema(Quote)
    names = np.array([f"SYM{i:03d}" for i in range(symbols)], dtype=object)
    recv = first_ns + np.arange(count, dtype=np.int64) * 1000
    sym = rng.integers(0, symbols, count)
    mid = 100 + sym * 0.5 + rng.normal(0, 0.05, count).cumsum() / 100
    spread = rng.integers(1, 5, count) * 0.01
    sizes = rng.integers(1, 50, (2, count)).astype(np.float64) * 100
    sizes[0, rng.random(count) < 0.01] = np.nan
    ms = (recv // 1_000_000).astype("datetime64[ms]")
    cols = {
        "event_symbol": pa.array(names[sym], pa.string()),
        "event_time": pa.array(np.zeros(count, "datetime64[ms]"), schema.field(1).type),
        "sequence": pa.array(np.zeros(count, np.int64)),
        "time_nano_part": pa.array(np.zeros(count, np.int64)),
        "bid_time": pa.array(ms, schema.field("bid_time").type),
        "bid_exchange_code": pa.array(np.full(count, "Q", object), pa.string()),
        "ask_time": pa.array(ms, schema.field("ask_time").type),
        "ask_exchange_code": pa.array(np.full(count, "Q", object), pa.string()),
        "bid_price": pa.array(np.round(mid - spread / 2, 2)),
        "ask_price": pa.array(np.round(mid + spread / 2, 2)),
        "bid_size": pa.array(sizes[0]),
        "ask_size": pa.array(sizes[1]),
        "recv_ns": pa.array((recv // 1000).astype("datetime64[us]"), schema.field("recv_ns").type),
        "recv_epoch_ns": pa.array(recv),
    }
    return pa.table(cols, schema=schema)


def make_recording(root: Path, rows: int, files: int, symbols: int = 500, seed: int = 1) -> None:
    """``rows`` quotes in ``files`` files of one Quote partition, written like the recorder."""
    rng = np.random.default_rng(seed)
    per_file = rows // files
    for n in range(files):
        count = per_file if n < files - 1 else rows - per_file * (files - 1)
        first_ns = START_NS + n * per_file * 1000
        table = quote_table(count, first_ns, rng, symbols)
        day = layout.partition_date(first_ns)
        name = layout.file_name(first_ns, "bench001", n + 1)
        path = layout.parquet_path(root, "Quote", day, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_parquet(path, table.schema, table.to_batches(max_chunksize=8192))

QUERIES = {
    "aggregate by symbol (all rows)": QUERY.format(source="Quote"),
    "one symbol, count + avg": (
        "SELECT count(*), round(avg(ask_price - bid_price), 9) FROM Quote "
        "WHERE event_symbol = 'SYM007'"
    ),
    "count(*) (footers only)": "SELECT count(*) FROM Quote",
}


def timed(root: str | Path, query: str, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        con = tastyrec.connect(root)
        result = con.sql(query).fetchall()
        times.append(time.perf_counter() - t0)
        con.close()
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for name in list(os.environ):
        if name.startswith("AWS_"):
            del os.environ[name]
    os.environ.update(FAKE_ENV)
    with tempfile.TemporaryDirectory(prefix="bench-query-s3-") as tmp:
        os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = f"{tmp}/none"
        local = Path(tmp) / "rec"
        t0 = time.perf_counter()
        make_recording(local, args.rows, args.files)
        files = sorted(local.rglob("*.parquet"))
        size = sum(f.stat().st_size for f in files)
        print(f"made {args.rows:,} rows in {len(files)} files, {size:,} bytes "
              f"({time.perf_counter() - t0:.1f} s)")
        server = S3Server(Path(tmp))
        server.start()
        try:
            os.environ["AWS_ENDPOINT_URL"] = server.endpoint
            fs = objectstore.s3_filesystem()
            root = objectstore.S3Location(server.bucket, "rec")
            t0 = time.perf_counter()
            for f in files:
                objectstore.upload(f, root.join(f.relative_to(local).as_posix()), fs=fs)
            print(f"uploaded in {time.perf_counter() - t0:.1f} s")
            sizes = {
                f"rec/{f.relative_to(local).as_posix()}": f.stat().st_size for f in files
            }
            print(f"| query ({args.rows:,} rows, {len(files)} files) | local | s3 (moto) "
                  "| GETs | bytes served |")
            print("|---|---:|---:|---:|---:|")
            for label, query in QUERIES.items():
                local_s, local_rows = timed(local, query, args.repeats)
                s3_s, s3_rows = timed(root.url, query, args.repeats)
                assert repr(s3_rows) == repr(local_rows), label  # repr: NaN-safe
                con = tastyrec.connect(root.url)
                note = ""
                try:
                    with server.recording() as requests:
                        con.sql(query).fetchall()
                except duckdb.Error as exc:  # seen once under the recorder: see RESULTS.md
                    note = f" (recorded run failed: {str(exc)[:60]}; counted with threads=1)"
                    con.execute("SET threads = 1")
                    with server.recording() as requests:
                        con.sql(query).fetchall()
                gets = [r for r in requests if r.method == "GET" and r.range]
                asked = 0  # bytes served: a range past the end of an object is cut there
                for r in gets:
                    lo, _, hi = r.range.removeprefix("bytes=").partition("-")
                    size = sizes[unquote(r.path).lstrip("/").split("/", 1)[1]]
                    asked += max(0, min(int(hi), size - 1) - int(lo) + 1)
                print(
                    f"| {label} | {local_s:.3f} s | {s3_s:.3f} s | {len(gets)} | {asked:,} |{note}"
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
