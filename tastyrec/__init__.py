"""tastyrec: record tastytrade's real-time streams into Parquet and play them back.

The public names are re-exported here; the modules behind them are private unless documented.
The library never configures logging (only the command line does).

Names are imported lazily, on first use (PEP 562 ``__getattr__``): ``import tastyrec`` stays
cheap, so ``tastyrec sql`` does not pay for polars, pyarrow and websockets before it runs its
query. ``from tastyrec import Quote`` works as usual, and type checkers see plain imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ._lazy import lazy_exports as _lazy_exports
from ._version import __version__

if TYPE_CHECKING:
    from .account import AlertStreamer
    from .chain import Option, OptionType, get_option_chain, select_strikes
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
    from .events.account import (
        AccountBalance,
        CurrentPosition,
        ExternalTransaction,
        PlacedComplexOrder,
        PlacedOrder,
        QuoteAlert,
        TradingStatus,
        UnderlyingYearGainSummary,
        UnknownNotification,
        Watchlist,
    )
    from .exceptions import (
        ApiError,
        AuthenticationError,
        ConnectionClosed,
        ConnectionClosedError,
        ConnectionClosedOK,
        CredentialsError,
        EndOfReplay,
        LocalProtocolError,
        ProtocolError,
        RateLimitError,
        RemoteProtocolError,
        RequestError,
        SchemaError,
        ServerError,
        StorageError,
        TastyrecError,
    )
    from .live import LiveFrame
    from .query import (
        asof_quotes,
        compact,
        connect,
        inventory,
        mid_bars,
        ohlcv,
        quote_metrics,
        scan,
        spread_stats,
    )
    from .record import (
        FsyncPolicy,
        Recorder,
        RecorderStats,
        RecoveryReport,
        RotationPolicy,
        WrittenFile,
        recover,
    )
    from .record.chains import ChainRecorder, record_chains
    from .replay import BacktestError, ReplayStreamer, backtest, replay_frames
    from .session import QuoteToken, Session

#: public name -> the module that defines it
_EXPORTS: Final[dict[str, str]] = {
    **dict.fromkeys(("AlertStreamer",), ".account"),
    **dict.fromkeys(("Option", "OptionType", "get_option_chain", "select_strikes"), ".chain"),
    **dict.fromkeys(("ColumnBatch",), ".dxlink.compact"),
    **dict.fromkeys(
        ("DXLinkStreamer", "Gap", "StreamerStats", "candle_symbol"), ".dxlink.streamer"
    ),
    **dict.fromkeys(
        (
            "Candle",
            "Event",
            "Greeks",
            "IndexedEvent",
            "OptionSale",
            "Order",
            "Profile",
            "Quote",
            "Series",
            "Summary",
            "TheoPrice",
            "TimeAndSale",
            "Trade",
            "TradeETH",
            "Underlying",
        ),
        ".events",
    ),
    **dict.fromkeys(
        (
            "AccountBalance",
            "CurrentPosition",
            "ExternalTransaction",
            "PlacedComplexOrder",
            "PlacedOrder",
            "QuoteAlert",
            "TradingStatus",
            "UnderlyingYearGainSummary",
            "UnknownNotification",
            "Watchlist",
        ),
        ".events.account",
    ),
    **dict.fromkeys(
        (
            "ApiError",
            "AuthenticationError",
            "ConnectionClosed",
            "ConnectionClosedError",
            "ConnectionClosedOK",
            "CredentialsError",
            "EndOfReplay",
            "LocalProtocolError",
            "ProtocolError",
            "RateLimitError",
            "RemoteProtocolError",
            "RequestError",
            "SchemaError",
            "ServerError",
            "StorageError",
            "TastyrecError",
        ),
        ".exceptions",
    ),
    **dict.fromkeys(("LiveFrame",), ".live"),
    **dict.fromkeys(
        (
            "asof_quotes",
            "compact",
            "connect",
            "inventory",
            "mid_bars",
            "ohlcv",
            "quote_metrics",
            "scan",
            "spread_stats",
        ),
        ".query",
    ),
    **dict.fromkeys(
        (
            "FsyncPolicy",
            "Recorder",
            "RecorderStats",
            "RecoveryReport",
            "RotationPolicy",
            "WrittenFile",
            "recover",
        ),
        ".record",
    ),
    **dict.fromkeys(("ChainRecorder", "record_chains"), ".record.chains"),
    **dict.fromkeys(("BacktestError", "ReplayStreamer", "backtest", "replay_frames"), ".replay"),
    **dict.fromkeys(("QuoteToken", "Session"), ".session"),
}

__all__ = (
    "AccountBalance",
    "AlertStreamer",
    "ApiError",
    "asof_quotes",
    "AuthenticationError",
    "backtest",
    "BacktestError",
    "Candle",
    "candle_symbol",
    "ChainRecorder",
    "ColumnBatch",
    "compact",
    "connect",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "CredentialsError",
    "CurrentPosition",
    "DXLinkStreamer",
    "EndOfReplay",
    "Event",
    "ExternalTransaction",
    "FsyncPolicy",
    "Gap",
    "get_option_chain",
    "Greeks",
    "IndexedEvent",
    "inventory",
    "LiveFrame",
    "LocalProtocolError",
    "mid_bars",
    "ohlcv",
    "Option",
    "OptionSale",
    "OptionType",
    "Order",
    "PlacedComplexOrder",
    "PlacedOrder",
    "Profile",
    "ProtocolError",
    "Quote",
    "quote_metrics",
    "QuoteAlert",
    "QuoteToken",
    "RateLimitError",
    "record_chains",
    "Recorder",
    "RecorderStats",
    "recover",
    "RecoveryReport",
    "RemoteProtocolError",
    "replay_frames",
    "ReplayStreamer",
    "RequestError",
    "RotationPolicy",
    "scan",
    "SchemaError",
    "select_strikes",
    "Series",
    "ServerError",
    "Session",
    "spread_stats",
    "StorageError",
    "StreamerStats",
    "Summary",
    "TastyrecError",
    "TheoPrice",
    "TimeAndSale",
    "Trade",
    "TradeETH",
    "TradingStatus",
    "Underlying",
    "UnderlyingYearGainSummary",
    "UnknownNotification",
    "Watchlist",
    "WrittenFile",
    "__version__",
)


__getattr__, __dir__ = _lazy_exports(__name__, globals(), _EXPORTS)
