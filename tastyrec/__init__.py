"""tastyrec: record tastytrade's real-time streams into Parquet and play them back.

The public names are re-exported here; the modules behind them are private unless documented.
The library never configures logging (only the command line does).
"""

from __future__ import annotations

from ._version import __version__
from .dxlink.compact import ColumnBatch
from .dxlink.streamer import DXLinkStreamer, Gap, StreamerStats, candle_symbol
from .events import (
    Candle,
    Event,
    Greeks,
    IndexedEvent,
    OptionSale,
    Order,
    Profile,
    Quote,
    Series,
    Summary,
    TheoPrice,
    TimeAndSale,
    Trade,
    TradeETH,
    Underlying,
)
from .exceptions import (
    AuthenticationError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    SchemaError,
    ServerError,
    StorageError,
    TastyrecError,
)
from .live import LiveFrame
from .record import (
    FsyncPolicy,
    Recorder,
    RecorderStats,
    RecoveryReport,
    RotationPolicy,
    WrittenFile,
    recover,
)

__all__ = (
    "AuthenticationError",
    "Candle",
    "ColumnBatch",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "DXLinkStreamer",
    "Event",
    "FsyncPolicy",
    "Gap",
    "Greeks",
    "IndexedEvent",
    "LiveFrame",
    "LocalProtocolError",
    "OptionSale",
    "Order",
    "Profile",
    "ProtocolError",
    "Quote",
    "Recorder",
    "RecorderStats",
    "RecoveryReport",
    "RemoteProtocolError",
    "RotationPolicy",
    "SchemaError",
    "Series",
    "ServerError",
    "StorageError",
    "StreamerStats",
    "Summary",
    "TastyrecError",
    "TheoPrice",
    "TimeAndSale",
    "Trade",
    "TradeETH",
    "Underlying",
    "WrittenFile",
    "candle_symbol",
    "recover",
    "__version__",
)
