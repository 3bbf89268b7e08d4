"""The tastytrade account streamer: orders, fills, balances and positions as they change.

:mod:`.messages` (wire format) and :mod:`.protocol` (sans-I/O client) import no I/O libraries;
:mod:`.streamer` is the I/O loop (anyio, websockets through :mod:`tastyrec.transport`).
"""

from __future__ import annotations

from .protocol import AccountProtocol
from .streamer import AlertStreamer, AlertStreamerStats

__all__ = ("AccountProtocol", "AlertStreamer", "AlertStreamerStats")
