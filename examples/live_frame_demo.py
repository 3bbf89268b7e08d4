"""The live frame and SQL over a running recording, from the built-in simulator (no account).

While a demo recording runs: the bounded live polars frame (``recorder.frame``/``latest``), and
``recorder.connect()``, one DuckDB connection over the Parquet files *and* the rows not yet
written to Parquet.

Run: python examples/live_frame_demo.py
"""

from __future__ import annotations

import tempfile

import anyio
import polars as pl

from tastyrec import DXLinkStreamer, Quote, Recorder, RotationPolicy, Trade
from tastyrec.sim import Simulator


async def main() -> None:
    with tempfile.TemporaryDirectory() as out:
        async with Simulator(token=None) as sim:
            async with DXLinkStreamer(url=sim.url, token=None) as streamer:
                rotation = RotationPolicy(max_rows=20)  # small files: rotations while we look
                async with Recorder(out, streamer, rotation=rotation) as recorder:
                    await streamer.subscribe(Quote, ["SPY", "QQQ"])
                    await streamer.subscribe(Trade, ["SPY", "QQQ"])
                    for second in range(1, 4):
                        await anyio.sleep(1.0)
                        frame = recorder.frame(Quote)
                        mids = frame.group_by("event_symbol").agg(
                            ((pl.col("bid_price") + pl.col("ask_price")) / 2).last().alias("mid"),
                            pl.len().alias("quotes"),
                        )
                        print(f"after {second} s: live frame holds {frame.height} quotes")
                        print(mids.sort("event_symbol"))
                        con = recorder.connect()  # files + the journal tail, no duplicates
                        total = con.sql("SELECT count(*) FROM Quote").fetchall()[0][0]
                        print(
                            f"SQL sees {total} quotes ({len(recorder.files)} files written so "
                            f"far, the rest from the tail)"
                        )
                        con.close()
                    print("latest quote per symbol:")
                    print(recorder.latest(Quote).select("event_symbol", "bid_price", "ask_price"))


if __name__ == "__main__":
    anyio.run(main, backend="asyncio")
