"""Replay: recordings back through the live streamer's interface, or as polars frames.

* :class:`ReplayStreamer` -- ``DXLinkStreamer``'s interface over a recording folder.
* :func:`replay_frames` -- the vectorised path: polars DataFrames in receipt order, chunk by chunk.
* :func:`backtest` -- a strategy over each day (or symbol-day), in parallel on any Executor.
"""

from __future__ import annotations

from .frames import replay_frames
from .parallel import BacktestError, backtest
from .streamer import ReplayStreamer

__all__ = ("BacktestError", "ReplayStreamer", "backtest", "replay_frames")
