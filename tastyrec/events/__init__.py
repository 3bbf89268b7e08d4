"""DXLink event types: one msgspec Struct per event, the single schema everything derives from."""

from __future__ import annotations

from .base import (
    EMPTY_SNAPSHOT,
    REMOVE_EVENT,
    SNAPSHOT_BEGIN,
    SNAPSHOT_END,
    SNAPSHOT_MODE,
    SNAPSHOT_SNIP,
    TX_PENDING,
    Event,
    IndexedEvent,
    is_snapshot_marker,
)
from .market import (
    Candle,
    Greeks,
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

__all__ = (
    "EMPTY_SNAPSHOT",
    "REMOVE_EVENT",
    "SNAPSHOT_BEGIN",
    "SNAPSHOT_END",
    "SNAPSHOT_MODE",
    "SNAPSHOT_SNIP",
    "TX_PENDING",
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
    "is_snapshot_marker",
)
