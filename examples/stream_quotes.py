"""Stream quotes and Greeks from the built-in simulator, and tap the same feed as Arrow batches.

Run: python examples/stream_quotes.py
Swap the Simulator for a real endpoint by giving DXLinkStreamer a url and token instead.
"""

from __future__ import annotations

import anyio
import polars as pl

from tastyrec import DXLinkStreamer, Greeks, Quote
from tastyrec.sim import Simulator


async def main() -> None:
    async with Simulator(token=None) as sim, DXLinkStreamer(url=sim.url) as streamer:
        batches = streamer.tap()
        await streamer.subscribe(Quote, ["SPY", "QQQ", "SPX"])
        await streamer.subscribe(Greeks, [".SPY261218C600", ".SPY261218P550"])

        with anyio.fail_after(10):
            for _ in range(3):
                quote = await streamer.get_event(Quote)
                print(f"{quote.event_symbol:>5} {quote.bid_price:>9.2f} x {quote.ask_price:<9.2f}")
            greeks = await streamer.get_event(Greeks)
            print(f"{greeks.event_symbol} delta={greeks.delta:.3f} iv={greeks.volatility:.3f}")

            # the columnar tap: the same events as Arrow record batches, ready for polars
            batch = await batches.receive()
        frame = pl.from_arrow(batch.batch)
        assert isinstance(frame, pl.DataFrame)
        print(f"a {batch.event_type.__name__} batch of {batch.num_rows} rows:")
        print(frame.select("event_symbol", "bid_price", "ask_price", "recv_ns").head())


if __name__ == "__main__":
    anyio.run(main, backend="asyncio")
