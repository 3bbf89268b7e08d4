"""Record a few seconds from the built-in simulator, look at the live frame, then query the files.

Run: python examples/record_demo.py
"""

from __future__ import annotations

import tempfile
import time

import anyio
import duckdb

from tastyrec import DXLinkStreamer, Greeks, Quote, Recorder
from tastyrec.sim import Simulator

OPTION = ".SPY261218C600"


async def main(out: str) -> None:
    async with Simulator(token=None) as sim:  # a local DXLink server with a synthetic market
        async with DXLinkStreamer(url=sim.url, token=None, queue_size=0) as streamer:
            async with Recorder(out, streamer, source="simulator") as recorder:
                await streamer.subscribe(Quote, ["SPY", "QQQ", OPTION])
                await streamer.subscribe(Greeks, [OPTION])
                await anyio.sleep(3)
                print("newest quote per symbol, from memory while recording:")
                print(recorder.latest(Quote).select("event_symbol", "bid_price", "ask_price"))
    print(recorder.stats.summary(time.time_ns()))
    print("the same data from the Parquet files, with DuckDB:")
    print(
        duckdb.sql(
            "SELECT event_symbol, count(*) AS quotes, round(avg(ask_price - bid_price), 4) AS "
            f"spread FROM read_parquet('{out}/Quote/*/*.parquet', hive_partitioning = true) "
            "GROUP BY 1 ORDER BY 1"
        )
    )


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        anyio.run(main, folder)
