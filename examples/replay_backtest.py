"""Backtest a toy strategy on a recorded session, through the live streamer's interface.

The strategy is written against ``listen()``, as it would be live; only the streamer changes
(``ReplayStreamer`` instead of ``DXLinkStreamer``). It trades SPY on a mid-price crossover of a
fast and a slow moving average, filling at the quote it sees, and reports the result. Then the
same day goes through the vectorised path (``replay_frames``) for a one-line statistic.

Run: python examples/replay_backtest.py [RECORDING]   (default: the sample in tests/data/sample)
"""

from __future__ import annotations

import sys
from collections import deque
from pathlib import Path
from typing import Any

import anyio
import polars as pl

from tastyrec import Quote, ReplayStreamer, Trade, replay_frames

SAMPLE = Path(__file__).resolve().parent.parent / "tests" / "data" / "sample"


async def strategy(streamer: Any, symbol: str = "SPY") -> dict[str, float]:
    """Moving-average crossover on the mid; works the same on a live DXLinkStreamer."""
    await streamer.subscribe(Quote, [symbol])
    await streamer.subscribe(Trade, [symbol])
    fast: deque[float] = deque(maxlen=5)
    slow: deque[float] = deque(maxlen=20)
    position = 0
    cash = 0.0
    trades_seen = 0
    last_mid = float("nan")
    async for event in streamer.listen(Quote, Trade):  # receipt order, as recorded
        if isinstance(event, Trade):
            trades_seen += 1
            continue
        mid = event.mid_price
        if mid != mid:  # NaN: a one-sided quote
            continue
        last_mid = mid
        fast.append(mid)
        slow.append(mid)
        if len(slow) < 20:
            continue
        signal = sum(fast) / len(fast) - sum(slow) / len(slow)
        if signal > 0 and position <= 0:
            cash -= event.ask_price * (1 - position)
            position = 1
        elif signal < 0 and position >= 0:
            cash += event.bid_price * (1 + position)
            position = -1
    pnl = cash + position * last_mid
    return {"pnl": pnl, "position": position, "trades_seen": trades_seen}


async def main(path: Path) -> None:
    async with ReplayStreamer(path) as streamer:
        result = await strategy(streamer)
        print(f"replayed up to {streamer.time}: {result}")
    spreads = pl.concat(
        frame.select((pl.col("ask_price") - pl.col("bid_price")).alias("spread"))
        for frame in replay_frames(path, Quote, symbols=["SPY"])
    )
    print(f"SPY mean spread over the day: {spreads['spread'].mean():.4f}")


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]) if len(sys.argv) > 1 else SAMPLE)
