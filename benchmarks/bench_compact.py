"""Compaction of 10 M recorded quotes: rows per second (target >= 2 M rows/s).

Generates the quotes like benchmarks/bench_sql.py (the recorder's Parquet writer, ``--files``
files in one partition), then runs :func:`tastyrec.query.compact` once per repeat on a fresh
copy: read, sort by symbol and time, write, read back and compare, publish, delete.

Run: python benchmarks/bench_compact.py [--rows 10000000] [--files 20] [--repeats 1]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
from bench_sql import make_recording

from tastyrec.query import _compact, compact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source"
        make_recording(source, args.rows, args.files)
        steps: dict[str, float] = {}
        for n in range(args.repeats):
            root = Path(tmp) / f"run{n}"
            shutil.copytree(source, root)
            marks = [("start", time.perf_counter())]

            def mark(step: str, marks: list[tuple[str, float]] = marks) -> None:
                marks.append((step, time.perf_counter()))

            _compact._step_hook = mark
            t0 = time.perf_counter()
            (result,) = compact(root)
            seconds = time.perf_counter() - t0
            marks.append(("end", time.perf_counter()))
            (out,) = result.outputs
            assert pq.read_metadata(out).num_rows == args.rows == result.rows
            for (a, ta), (_, tb) in zip(marks, marks[1:], strict=False):
                steps[a] = steps.get(a, 0.0) + tb - ta
            print(
                f"run {n + 1}: {len(result.inputs)} files -> 1, {result.rows:,} rows in "
                f"{seconds:.2f} s = {result.rows / seconds / 1e6:.2f} M rows/s "
                f"({result.bytes_in / 1e6:.0f} MB -> {result.bytes_out / 1e6:.0f} MB)"
            )
            shutil.rmtree(root)
        # "start"->"write": read + sort; "write"->"publish": write + read back + compare
        print("phases (s, summed):", {k: round(v, 2) for k, v in steps.items()})


if __name__ == "__main__":
    main()
