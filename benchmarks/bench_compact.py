"""Compaction of 10 M recorded quotes: rows per second (target >= 2 M rows/s).

Generates the quotes like benchmarks/bench_sql.py (``_synthetic.make_recording``: the recorder's
Parquet writer, ``--files`` files in one partition), then runs :func:`tastyrec.query.compact`
once per repeat on a fresh copy, each in a fresh interpreter (as ``tastyrec compact`` runs: a
warm process reuses memory and reads ~2x faster on these machines): read, sort by symbol and
time, write, read back and check, publish, delete. Prints each run, its phases, and the median.

Run: python benchmarks/bench_compact.py [--rows 10000000] [--files 20] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one(root: Path) -> dict[str, object]:
    """Compact ``root`` once in this process; the seconds, sizes and phases."""
    import pyarrow.parquet as pq

    from tastyrec.query import _compact, compact

    marks = [("read", time.perf_counter())]
    _compact._step_hook = lambda step: marks.append((step, time.perf_counter()))
    t0 = time.perf_counter()
    (result,) = compact(root)
    seconds = time.perf_counter() - t0
    marks.append(("end", time.perf_counter()))
    (out,) = result.outputs
    assert pq.read_metadata(out).num_rows == result.rows
    phases: dict[str, float] = {}
    for (a, ta), (_, tb) in zip(marks, marks[1:], strict=False):
        phases[a] = phases.get(a, 0.0) + tb - ta
    return {
        "seconds": seconds,
        "rows": result.rows,
        "files": len(result.inputs),
        "bytes_in": result.bytes_in,
        "bytes_out": result.bytes_out,
        "phases": phases,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return
    from _synthetic import make_recording

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source"
        make_recording(source, args.rows, args.files)
        runs = []
        for n in range(args.repeats):
            root = Path(tmp) / f"run{n}"
            shutil.copytree(source, root)
            proc = subprocess.run(
                [sys.executable, __file__, "--one", str(root)],
                capture_output=True,
                text=True,
                check=True,
            )
            run = json.loads(proc.stdout.splitlines()[-1])
            runs.append(run)
            phases = {k: round(v, 2) for k, v in run["phases"].items() if k != "delete"}
            print(
                f"run {n + 1}: {run['files']} files -> 1, {run['rows']:,} rows in "
                f"{run['seconds']:.2f} s = {run['rows'] / run['seconds'] / 1e6:.2f} M rows/s "
                f"({run['bytes_in'] / 1e6:.0f} MB -> {run['bytes_out'] / 1e6:.0f} MB) {phases}",
                flush=True,
            )
            shutil.rmtree(root)
        median = statistics.median(r["seconds"] for r in runs)
        rows = runs[0]["rows"]
        print(f"median of {len(runs)}: {median:.2f} s = {rows / median / 1e6:.2f} M rows/s")
        # phases: "read" inputs (+ copy to single chunks, overlapping "sort"), "sort" keys,
        # "write" (gather + encode + fsync), "verify" (decode + digests), "publish", "delete"
        print(
            "phase medians (s):",
            {
                k: round(statistics.median(r["phases"].get(k, 0.0) for r in runs), 2)
                for k in runs[0]["phases"]
            },
        )


if __name__ == "__main__":
    main()
