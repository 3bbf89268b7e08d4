"""Make the sample recording shipped with the tests (tests/data/sample/), from the simulator.

The recording drives the replay tests, the pytest-plugin tests, the SQL tests and the examples.
It is made once and committed, so it also stands for a recording of schema version 1 (the first
released schema): later schema versions must keep reading, replaying and compacting it.

What it holds: ~20 s of Quote, Trade, Summary, Profile and TimeAndSale for SPY, QQQ and AAPL,
Quote and Greeks for two SPY options, and 1-minute candles for SPY from the start of the New
York day; the server drops every connection once half-way, so there is a recorded gap (the
streamer reconnects and resubscribes); files rotate every 8 s, so each type has several files.

Run (replaces tests/data/sample/)::

    .venv/bin/python tests/data/make_sample.py [--seconds 20] [--out tests/data/sample]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from datetime import datetime, time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout

from tastyrec import (
    DXLinkStreamer,
    Greeks,
    Profile,
    Quote,
    Recorder,
    RotationPolicy,
    Summary,
    TimeAndSale,
    Trade,
)
from tastyrec.sim import Simulator

EQUITIES = ["SPY", "QQQ", "AAPL"]
OPTIONS = [".SPY261218C600", ".SPY261218P600"]


async def make(out: Path, seconds: float) -> None:
    async with Simulator(token=None, seed=7) as sim:
        async with DXLinkStreamer(url=sim.url, token=None, queue_size=0, tap_interval=0.05) as s:
            async with Recorder(
                out,
                s,
                source="simulator",
                symbols=EQUITIES + OPTIONS,
                rotation=RotationPolicy(max_age_s=8),
            ):
                for cls in (Quote, Trade, Summary, Profile, TimeAndSale):
                    await s.subscribe(cls, EQUITIES if cls is not Quote else EQUITIES + OPTIONS)
                await s.subscribe(Greeks, OPTIONS)
                midnight = datetime.combine(
                    datetime.now(ZoneInfo("America/New_York")).date(),
                    dtime(0),
                    ZoneInfo("America/New_York"),
                )
                await s.subscribe_candle(["SPY"], "1m", start_time=midnight)
                await anyio.sleep(seconds / 2)
                await sim.drop()
                await anyio.sleep(seconds / 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "sample")
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    anyio.run(make, args.out, args.seconds)


if __name__ == "__main__":
    main()
