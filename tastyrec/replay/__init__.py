"""Replay: recordings back through the live streamer's interface, or as polars frames.

* :class:`ReplayStreamer` -- ``DXLinkStreamer``'s interface over a recording folder.
* :func:`replay_frames` -- the vectorised path: polars DataFrames in receipt order, chunk by chunk.
"""

from __future__ import annotations

from .frames import replay_frames
from .streamer import ReplayStreamer

__all__ = ("ReplayStreamer", "replay_frames")
