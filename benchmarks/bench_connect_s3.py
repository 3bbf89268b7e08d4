"""Opening a recording of many small files on S3 (moto on loopback): requests and time.

``tastyrec.connect("s3://...")`` builds one DuckDB view per event type over the explicit list of
its objects; each later query on a view binds ``read_parquet`` over that list again. This counts
the requests (moto's request recorder: HEADs, ranged GETs) and times ``connect`` and three
successive queries on the ``Quote`` view (``count(*)``, a symbol filter, a date filter), over
``--files`` small files of synthetic quotes spread across ``--days`` New York days (the
recorder's Parquet writer, ``_synthetic.uniform_quotes``); medians of ``--repeats``.

moto serves each request through a Python server: read the times as what the request pattern
costs on loopback, not as S3 speed.

Run: python benchmarks/bench_connect_s3.py [--files 100] [--days 4] [--rows 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.integration.s3server
sys.path.insert(0, str(Path(__file__).resolve().parent))  # _synthetic

import numpy as np
from _synthetic import START_NS, uniform_quotes

import tastyrec
from tastyrec import objectstore
from tastyrec.storage import layout
from tastyrec.storage.parquet import write_parquet
from tests.integration.s3server import Request, S3Server, use_fake_aws_environment

DAY_NS = 86_400 * 10**9
QUERIES = {
    "count(*)": "SELECT count(*) FROM Quote",
    "symbol filter": (
        "SELECT count(*), round(sum(bid_price), 4) FROM Quote WHERE event_symbol = 'SYM007'"
    ),
    "date filter": "SELECT count(*) FROM Quote WHERE date = (SELECT min(date) FROM Quote)",
}


def make_files(root: Path, files: int, days: int, rows: int) -> None:
    """``files`` files of ``rows`` quotes each, spread round-robin over ``days`` days."""
    rng = np.random.default_rng(1)
    for n in range(files):
        first_ns = START_NS + (n % days) * DAY_NS + (n // days) * rows * 1000
        table = uniform_quotes(rows, first_ns, rng, 50)
        day = layout.partition_date(first_ns)
        path = layout.parquet_path(root, "Quote", day, layout.file_name(first_ns, "bench001", n))
        path.parent.mkdir(parents=True, exist_ok=True)
        write_parquet(path, table.schema, table.to_batches(max_chunksize=8192))


def kinds(requests: list[Request]) -> Counter[str]:
    """Requests by kind: LIST (a GET of no object), HEAD and GET of an object, other."""
    counted: Counter[str] = Counter()
    for r in requests:
        if r.method == "GET" and not r.path.endswith(".parquet"):
            counted["LIST"] += 1
        else:
            counted[r.method] += 1
    return counted


def run(url: str) -> tuple[list[float], list[object]]:
    """Times of connect and each query (s), and the query results."""
    times, results = [], []
    t0 = time.perf_counter()
    con = tastyrec.connect(url)
    times.append(time.perf_counter() - t0)
    for query in QUERIES.values():
        t0 = time.perf_counter()
        results.append(con.sql(query).fetchall())
        times.append(time.perf_counter() - t0)
    con.close()
    return times, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-connect-s3-") as tmp:
        use_fake_aws_environment(Path(tmp))
        local = Path(tmp) / "rec"
        make_files(local, args.files, args.days, args.rows)
        files = sorted(local.rglob("*.parquet"))
        server = S3Server(Path(tmp))
        server.start()
        try:
            os.environ["AWS_ENDPOINT_URL"] = server.endpoint
            fs = objectstore.s3_filesystem()
            root = objectstore.S3Location(server.bucket, "rec")
            for f in files:
                objectstore.upload(f, root.join(f.relative_to(local).as_posix()), fs=fs)
            _, expected = run(str(local))
            # requests, one run, step by step
            steps = ["connect", *QUERIES]
            counts = []
            con = None
            for i, step in enumerate(steps):
                with server.recording() as requests:
                    if i == 0:
                        con = tastyrec.connect(root.url)
                    else:
                        assert con is not None
                        con.sql(QUERIES[step]).fetchall()
                counts.append(kinds(requests))
            assert con is not None
            con.close()
            runs = [run(root.url) for _ in range(args.repeats)]
            for _, results in runs:
                assert repr(results) == repr(expected), (results, expected)
            medians = [statistics.median(t[i] for t, _ in runs) for i in range(len(steps))]
            totals = statistics.median(sum(t) for t, _ in runs)
            print(f"{len(files)} files over {args.days} days, {args.rows} rows each; "
                  f"median of {args.repeats}")
            print("| step | LIST | HEAD | GET | time |")
            print("|---|---:|---:|---:|---:|")
            for step, c, m in zip(steps, counts, medians, strict=True):
                print(f"| {step} | {c['LIST']} | {c['HEAD']} | {c['GET']} | {m:.3f} s |")
            total = sum(counts, Counter())
            print(f"| connect + 3 queries | {total['LIST']} | {total['HEAD']} | {total['GET']} "
                  f"| {totals:.3f} s |")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
