"""SQL over 10 M recorded quotes: ``connect()`` and ``tastyrec sql`` against raw DuckDB.

The quotes are synthetic (500 symbols, random-walk prices, NaN sizes sprinkled in) but written
with the recorder's real Parquet writer (:func:`tastyrec.storage.parquet.write_parquet`: zstd,
dictionary, delta receipt times, 256k-row row groups), as ``--files`` files in one partition
(``_synthetic.make_recording``, shared with the other benchmarks).
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

from _synthetic import make_recording

QUERY = (
    "SELECT event_symbol, count(*) AS n, round(avg(ask_price - bid_price), 9) AS spread, "
    "max(bid_size) AS max_bid_size, epoch_ns(max(recv_ns)) AS last "
    "FROM {source} GROUP BY 1 ORDER BY 1"
)


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
