"""Candle history in the simulator: one candle at a time (the old way) against the snapshot
priced a part at a time with numpy, in the same run, and the longest one part takes.

    .venv/bin/python benchmarks/bench_candle_snapshot.py [--repeats 5]

Each case is a day of 1-minute candles (1,441 with the live one) for an ETF, an index and an
option (an option's path is a Black-Scholes price of its underlying's, so it costs more). The
results must be equal, candle for candle; medians of ``--repeats`` runs, process CPU time.
"""

from __future__ import annotations

import argparse
import statistics
import time

from tastyrec.sim.market import Market, parse_candle_symbol

NOW_MS = 1_765_000_000_000  # a fixed instant: the same work on every run
DAY_MS = 86_400_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{'symbol':<24} {'candles':>7} {'one at a time':>14} {'vectorised':>11} {'ratio':>6}"
          f" {'longest part':>13}")  # fmt: skip
    for symbol in ("SPY{=1m}", "SPX{=1m}", ".SPY261218C600{=1m}"):
        cs = parse_candle_symbol(symbol)
        assert cs is not None
        old, new, part = [], [], []
        for _ in range(args.repeats):
            market = Market(0)  # no cache carried over between the two ways
            t = time.process_time()
            slots = range(cs.slot(NOW_MS), cs.slot(NOW_MS - DAY_MS) - 1, -1)
            one = [market.candle(cs, s, NOW_MS) for s in slots]
            old.append(time.process_time() - t)
            market = Market(0)
            t = time.process_time()
            parts = []
            for p in market.candle_snapshot_parts(cs, NOW_MS - DAY_MS, NOW_MS, 10_000):
                part.append(time.process_time() - t)
                parts.append(p)
                t = time.process_time()
            new.append(sum(part[-len(parts) :]))
            snap = [c for p in parts for c in p]
            assert [(c.time, c.open, c.high, c.low, c.close, c.volume) for c in snap] == [
                (c.time, c.open, c.high, c.low, c.close, c.volume) for c in one
            ]
        a, b = statistics.median(old), statistics.median(new)
        print(f"{symbol:<24} {len(one):>7} {a * 1000:>11.1f} ms {b * 1000:>8.1f} ms {a / b:>5.1f}x"
              f" {max(part) * 1000:>10.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
