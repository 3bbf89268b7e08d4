"""Draw the mid price and the bid-ask spread over time (needs matplotlib: the ``plot`` extra).

Run: python examples/plot_mid_spread.py [--symbol SPY] [--out mid_spread.png] [RECORDING]
(default recording: the sample shipped in tests/; default output: a file in the temp folder).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import polars as pl

from tastyrec.events import Quote
from tastyrec.query import quote_metrics, scan

ROOT = Path(__file__).parent.parent

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("recording", nargs="?", default=str(ROOT / "tests" / "data" / "sample"))
parser.add_argument("--symbol", default="SPY")
parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "tastyrec_mid_spread.png"))
args = parser.parse_args()

try:
    import matplotlib

    matplotlib.use("Agg")  # files only, no window
    import matplotlib.pyplot as plt
except ImportError:
    print("this example draws with matplotlib: pip install 'tastyrec[plot]' (or matplotlib)")
    sys.exit(0)

quotes = quote_metrics(scan(args.recording, Quote, symbols=[args.symbol]).sort("recv_ns"))
frame = quotes.select("recv_ns", "mid", "spread").collect()
if frame.is_empty():
    sys.exit(f"no valid {args.symbol} quotes in {args.recording}")
times = frame["recv_ns"].dt.replace_time_zone(None).to_list()  # UTC, naive for matplotlib

fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
top.plot(times, frame["mid"].to_list(), linewidth=1)
top.set_ylabel("mid price")
top.set_title(f"{args.symbol}: mid price and spread (UTC)")
bottom.step(times, frame["spread"].to_list(), where="post", linewidth=1, color="tab:orange")
bottom.set_ylabel("spread")
fig.autofmt_xdate()
fig.tight_layout()
fig.savefig(args.out, dpi=100)
stats = frame.select(
    pl.col("mid").min().alias("low"), pl.col("mid").max().alias("high"), pl.col("spread").mean()
).row(0)
print(f"wrote {args.out}: {frame.height} quotes, mid {stats[0]}..{stats[1]}")
print(f"mean spread {stats[2]:.4f}")
