"""Record -> S3 (moto on loopback) vs record -> local disk: same stream, same run (issue 19).

A script, not a test. It reuses ``bench_record.py``'s machinery (the ``dxlink_blaster.py``
server pinned to CPU 1, each run in a fresh interpreter pinned to CPU 0, round-robin repeats)
with two paths that differ only in ``out``:

  ``local``: ``Recorder(out=DIR, rotation=RotationPolicy(max_rows=--rotate-rows))``;
  ``s3``:    ``Recorder(out="s3://bench/<run>", journal=DIR, same rotation)``: each file made at
             rotation is uploaded by the uploader thread while the recording goes on.

The same ``--rotate-rows`` for both, small enough that files are made (and, for ``s3``,
uploaded) *during* the ingest. The rate is the ingest rate: from the first event's receipt to
the moment the recorder has journaled every event sent (``bench_record``'s wall time); the close
(the last conversion, and for ``s3`` waiting for the last uploads) is reported apart as
``close_s``. Every row is checked at the destination (Parquet footers read locally or through
the S3 filesystem): the script exits 1 on any loss.

moto's server (``tests/integration/s3server.py``) runs in its own process, not pinned, with fake
credentials; no real AWS variable reaches it.

Usage::

    .venv/bin/python benchmarks/bench_record_s3.py [--messages 5000] [--repeats 3]
        [--rotate-rows 50000] [--no-pin]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import bench_record  # noqa: E402
from bench_record import POLL_S, TAP_OPTIONS, Run  # noqa: E402
from dxlink_blaster import subscriptions  # noqa: E402

BUCKET = "tastyrec-bench"
ROTATE_ENV = "BENCH_RECORD_S3_ROTATE_ROWS"


def _rows_at(out: str, journal: Path) -> dict[str, int]:
    """Rows per event type in the Parquet files at the destination."""
    import pyarrow.parquet as pq

    from tastyrec.objectstore import S3Location, list_parquet, parse_location, s3_filesystem

    loc = parse_location(out)
    counts: dict[str, int] = {}
    if isinstance(loc, S3Location):
        fs = s3_filesystem()
        for info in list_parquet(fs, loc):
            with fs.open_input_file(info.path) as fh:
                rows = pq.ParquetFile(fh).metadata.num_rows
            name = info.path[len(loc.path) + 1 :].split("/")[0]
            counts[name] = counts.get(name, 0) + rows
    else:
        for path in Path(out).glob("*/date=*/*.parquet"):
            name = path.parent.parent.name
            counts[name] = counts.get(name, 0) + pq.read_metadata(path).num_rows
    return counts


async def _run(info: dict[str, Any], limit_s: float, out: Path, to_s3: bool) -> Run:
    from tastyrec.dxlink.streamer import DXLinkStreamer
    from tastyrec.events import Greeks, Quote, Trade
    from tastyrec.record.recorder import Recorder
    from tastyrec.record.sink import RotationPolicy

    classes: dict[str, Any] = {"Quote": Quote, "Trade": Trade, "Greeks": Greeks}
    total = sum(info["events"].values())
    subs = subscriptions()
    rotation = RotationPolicy(max_rows=int(os.environ[ROTATE_ENV]))
    dest = f"s3://{BUCKET}/{out.name}" if to_s3 else str(out)
    rows = 0
    with anyio.move_on_after(limit_s):
        async with DXLinkStreamer(
            url=info["url"], token=info["token"], queue_size=0, tap_interval=0.05, **TAP_OPTIONS
        ) as streamer:
            rec = Recorder(dest, streamer, journal=out if to_s3 else None, rotation=rotation)
            async with rec:
                for name in info["events"]:
                    await streamer.subscribe(classes[name], subs[name])
                cpu0 = time.process_time()
                first_ns = time.time_ns()
                seen_first = False
                while True:
                    rows = sum(rec.stats.rows.values())
                    if rows and not seen_first:
                        first_ns, seen_first = min(rec.stats.last_recv_ns.values()), True
                    if rows >= total:
                        break
                    await anyio.sleep(POLL_S)
                end_ns, cpu1 = time.time_ns(), time.process_time()
                up = rec.stats.upload
                during = (up.uploaded_files, up.files) if up is not None else (0, 0)
            closed_ns = time.time_ns()
        at_dest = _rows_at(dest, out)
        return Run(
            rows,
            (end_ns - first_ns) / 1e9,
            cpu1 - cpu0,
            {
                "files": rec.stats.files,
                "uploaded_during_ingest": during[0],
                "waiting_at_end": during[1],
                "close_s": f"{(closed_ns - end_ns) / 1e9:.3f}",
                "parquet_rows": sum(at_dest.values()),
                "parquet_ok": at_dest == info["events"],
            },
        )
    raise SystemExit(f"timed out after {limit_s} s with {rows} of {total} rows")


async def run_local(info: dict[str, Any], limit_s: float, out: Path) -> Run:
    return await _run(info, limit_s, out, to_s3=False)


async def run_s3(info: dict[str, Any], limit_s: float, out: Path) -> Run:
    return await _run(info, limit_s, out, to_s3=True)


def _register() -> None:
    bench_record.PATHS.update({"record": run_local, "record_s3": run_s3})
    bench_record.LABELS.update(
        {
            "record": "Recorder -> local disk (rotating)",
            "record_s3": "Recorder -> s3:// (moto, loopback; rotating, uploads meanwhile)",
        }
    )
    bench_record.__file__ = __file__  # the children run this script (with these paths)


def main() -> None:
    _register()
    if "--child" in sys.argv:
        bench_record.main()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], add_help=True)
    parser.add_argument("--rotate-rows", type=int, default=50_000)
    args, rest = parser.parse_known_args()
    os.environ[ROTATE_ENV] = str(args.rotate_rows)

    from tests.integration.s3server import S3Server, use_fake_aws_environment

    logs = Path(tempfile.mkdtemp(prefix="bench_record_s3_moto_"))
    use_fake_aws_environment(logs)
    server = S3Server(logs, BUCKET)
    server.start()
    os.environ["AWS_ENDPOINT_URL"] = server.endpoint
    print(f"moto S3 server at {server.endpoint}; rotation every {args.rotate_rows:,} rows")
    sys.argv = [sys.argv[0], "--paths", "record,record_s3", *rest]
    runs: dict[str, list[Run]] = {"record": [], "record_s3": []}
    spawn = bench_record.spawn

    def spawn_and_keep(a: argparse.Namespace, name: str, *more: Any, **kw: Any) -> Run:
        run = spawn(a, name, *more, **kw)
        runs[name].append(run)
        return run

    bench_record.spawn = spawn_and_keep
    try:
        bench_record.main()
    finally:
        server.stop()
    ratios = [s.rate / r.rate for s, r in zip(runs["record_s3"], runs["record"], strict=True)]
    if ratios:
        ratios.sort()
        print(
            f"s3/local ingest rate: median of per-repeat ratios {ratios[len(ratios) // 2]:.2f}x "
            f"(range {ratios[0]:.2f}-{ratios[-1]:.2f})"
        )


if __name__ == "__main__":
    main()
