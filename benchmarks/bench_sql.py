"""SQL over 10 M recorded quotes: ``connect()`` and ``tastyrec sql`` against raw DuckDB.

The quotes are synthetic (500 symbols, random-walk prices, NaN sizes sprinkled in) but written
with the recorder's real Parquet writer (:func:`tastyrec.storage.parquet.write_parquet`: zstd,
dictionary, delta receipt times, 256k-row row groups), as ``--files`` files in one partition.
Both sides run the same aggregation on the same files in the same run; medians of repeats.

* in-process: a fresh ``tastyrec.query.connect(root)`` (listing included) + the query, against a
  fresh ``duckdb.connect()`` + the query over ``read_parquet('<root>/Quote/*/*.parquet')``;
* command line: ``tastyrec sql`` as a subprocess against ``python -c "import duckdb; ..."``
  (both pay interpreter start-up; tastyrec's imports are reported separately). Bytecode is
  cached, as after ``pip install`` (in a temporary ``PYTHONPYCACHEPREFIX``, warmed by one run of
  each command, for both sides). ``--no-bytecode`` also times both with
  ``PYTHONDONTWRITEBYTECODE=1``: with an editable install, tastyrec's modules are then compiled
  from source on every run, which no installed copy does.

Run: python benchmarks/bench_sql.py [--rows 10000000] [--repeats 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from tastyrec.events import Quote
from tastyrec.schema import RECV_COLUMN, RECV_EXACT_COLUMN, arrow_schema, receipt_arrays
from tastyrec.storage import layout
from tastyrec.storage.parquet import write_parquet

QUERY = (
    "SELECT event_symbol, count(*) AS n, round(avg(ask_price - bid_price), 9) AS spread, "
    "max(bid_size) AS max_bid_size, epoch_ns(max(recv_ns)) AS last "
    "FROM {source} GROUP BY 1 ORDER BY 1"
)
NS = 1_000_000_000
START_NS = 1_795_269_600 * NS  # 2026-11-20 14:00 UTC (09:00 New York)


def quote_table(
    count: int, first_ns: int, rng: np.random.Generator, symbols: int = 500
) -> pa.Table:
    """``count`` synthetic quotes received 1 µs apart from ``first_ns``, with the recorder's
    schema: ``symbols`` symbols, random-walk prices, 1 % NaN bid sizes."""
    schema = arrow_schema(Quote)  # the current schema version (its metadata says which)
    names = np.array([f"SYM{i:03d}" for i in range(symbols)], dtype=object)
    recv = first_ns + np.arange(count, dtype=np.int64) * 1000  # 1 M quotes/s
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
    }
    cols[RECV_COLUMN], cols[RECV_EXACT_COLUMN] = receipt_arrays(recv)
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
        path = layout.parquet_path(
            root, "Quote", day, layout.file_name(first_ns, "bench001", n + 1)
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        write_parquet(path, table.schema, table.to_batches(max_chunksize=8192))


def median_s(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", type=Path, default=None, help="generate into (or reuse) DIR")
    parser.add_argument(
        "--no-bytecode",
        action="store_true",
        help="also time the commands with PYTHONDONTWRITEBYTECODE=1 (modules compiled each run)",
    )
    args = parser.parse_args()

    import duckdb

    from tastyrec.query import connect

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / "rec"
        if not list(root.glob("Quote/*/*.parquet")):
            t0 = time.perf_counter()
            make_recording(root, args.rows, args.files)
            print(f"generated {args.rows:,} quotes in {time.perf_counter() - t0:.1f} s")
        size = sum(f.stat().st_size for f in root.glob("Quote/*/*.parquet"))
        print(
            f"{args.rows:,} quotes, {args.files} files, {size / 1e6:.0f} MB; repeats {args.repeats}"
        )
        glob = f"read_parquet('{root}/Quote/*/*.parquet')"

        def raw() -> object:
            return duckdb.connect().sql(QUERY.format(source=glob)).fetchall()

        def ours() -> object:
            return connect(root).sql(QUERY.format(source="Quote")).fetchall()

        raw()  # warm the page cache once for both
        t_raw, r_raw = median_s(raw, args.repeats)
        t_ours, r_ours = median_s(ours, args.repeats)
        assert repr(r_raw) == repr(r_ours), "different answers"  # repr: NaN == NaN
        print(f"in-process  raw DuckDB {t_raw:.3f} s   connect() {t_ours:.3f} s", end="   ")
        print(f"ratio {t_ours / t_raw:.2f}x")

        cli = [
            sys.executable,
            "-m",
            "tastyrec",
            "sql",
            QUERY.format(source="Quote"),
            "--data",
            str(root),
        ]
        raw_cli = [
            sys.executable,
            "-c",
            "import duckdb, sys; duckdb.sql(sys.argv[1]).write_csv('/dev/stdout')",
            QUERY.format(source=glob),
        ]
        cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        setups = [("bytecode cached", cached)]
        if args.no_bytecode:
            setups.append(("PYTHONDONTWRITEBYTECODE=1", {**cached, "PYTHONDONTWRITEBYTECODE": "1"}))
        for label, env in setups:
            command_line(label, env, cli, raw_cli, root, args.repeats)


def command_line(
    label: str, env: dict[str, str], cli: list[str], raw_cli: list[str], root: Path, repeats: int
) -> None:
    """Time ``tastyrec sql`` against the raw ``python -c`` as subprocesses under ``env``."""

    def run(cmd: list[str]) -> object:
        return subprocess.run(cmd, capture_output=True, check=True, env=env).stdout

    start_cli = [*cli[:4], "SELECT 1", "--data", str(root)]
    import_duckdb = [sys.executable, "-c", "import duckdb"]
    for cmd in (raw_cli, cli, start_cli, import_duckdb):  # warm-up: writes the bytecode cache
        run(cmd)
    assert run(cli) == run(raw_cli), "different CSV"
    t_cli_raw, _ = median_s(lambda: run(raw_cli), repeats)
    t_cli, _ = median_s(lambda: run(cli), repeats)
    t_start, _ = median_s(lambda: run(start_cli), repeats)
    t_py, _ = median_s(lambda: run(import_duckdb), repeats)
    print(f"command line ({label})")
    print(
        f"  python+duckdb {t_cli_raw:.3f} s   tastyrec sql {t_cli:.3f} s   "
        f"ratio {t_cli / t_cli_raw:.2f}x"
    )
    q_ours, q_raw = t_cli - t_start, t_cli_raw - t_py
    print(f"  start-up alone  `tastyrec sql 'SELECT 1'` {t_start:.3f} s, ", end="")
    print(f"`python -c 'import duckdb'` {t_py:.3f} s")
    print(f"  query part  tastyrec sql {q_ours:.3f} s vs raw {q_raw:.3f} s ({q_ours / q_raw:.2f}x)")


if __name__ == "__main__":
    main()
