"""Event base Structs and the eventFlags bits.

Every DXLink event type is a frozen msgspec Struct whose attributes are the tastytrade SDK's
snake_case names and whose field order is the DXLink wire order
(docs/dxlink.md#event-types-and-fields). ``rename="camel"`` gives the wire names (``bid_price`` ->
``bidPrice``). From these classes alone
:mod:`tastyrec.events.registry` derives FEED_SETUP ``acceptEventFields``, COMPACT and FULL decoding
and the Arrow and polars schemas.

Value policy (dxFeed's own: primitives have no null, absence is NaN or 0):

* doubles are ``float``; ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` become IEEE values, an absent
  double is NaN. No event is ever dropped because a value is NaN.
* longs are ``int`` (64-bit); an absent long is 0.
* strings are ``str | None``; absent is ``None``; ``"\\u0000"`` exchange codes are kept as sent.
* booleans are ``bool``; absent is ``False``.

Wire times in milliseconds are annotated with :data:`TimeMs`, so the Arrow schema stores them as
UTC timestamps (exactly the same integer) that DuckDB and polars read as times.

This module imports only msgspec.
"""

from __future__ import annotations

import math
from typing import Annotated, Final

import msgspec

__all__ = (
    "EMPTY_SNAPSHOT",
    "NAN",
    "REMOVE_EVENT",
    "SNAPSHOT_BEGIN",
    "SNAPSHOT_END",
    "SNAPSHOT_MODE",
    "SNAPSHOT_SNIP",
    "TX_PENDING",
    "Event",
    "IndexedEvent",
    "TimeMs",
    "is_snapshot_marker",
)

NAN: Final = math.nan

TX_PENDING: Final = 0x01
REMOVE_EVENT: Final = 0x02
SNAPSHOT_BEGIN: Final = 0x04
SNAPSHOT_END: Final = 0x08
SNAPSHOT_SNIP: Final = 0x10
SNAPSHOT_MODE: Final = 0x40
#: eventFlags of the one event of an explicitly empty snapshot (SNAPSHOT_BEGIN | SNAPSHOT_END |
#: REMOVE_EVENT = 14, values NaN): what production answers a Candle subscription on an ``AUTO``
#: channel (docs/dxlink.md#candle-history-needs-history), or on ``HISTORY`` when there is no
#: history.
EMPTY_SNAPSHOT: Final = SNAPSHOT_BEGIN | SNAPSHOT_END | REMOVE_EVENT
_SNAPSHOT_EDGES: Final = SNAPSHOT_BEGIN | SNAPSHOT_END | SNAPSHOT_SNIP

#: A wire time in epoch milliseconds; stored in Arrow as ``timestamp[ms, UTC]``.
TimeMs = Annotated[int, msgspec.Meta(extra={"arrow_unit": "ms"})]


class Event(msgspec.Struct, frozen=True, rename="camel", gc=False):
    """Base of every DXLink event: the fields every event type starts with.

    Structs accept positional arguments in wire order, which is how the decoder builds them
    column by column without per-value Python work.
    """

    #: symbol of this event (for candles, the normalised candle symbol)
    event_symbol: str
    #: time of this event as set by the source, epoch ms; usually 0 on DXLink
    event_time: TimeMs = 0


class IndexedEvent(Event, frozen=True, gc=False):
    """An event with an index and eventFlags (snapshots, transactions, removals)."""

    #: transactional and snapshot flags (see the ``pending``/``snapshot_*`` properties)
    event_flags: int = 0
    #: unique per-symbol (and per-source) index of this event
    index: int = 0

    @property
    def pending(self) -> bool:
        """TX_PENDING: part of a transaction that is not complete yet."""
        return self.event_flags & TX_PENDING != 0

    @property
    def remove(self) -> bool:
        """REMOVE_EVENT: remove the entry with this index."""
        return self.event_flags & REMOVE_EVENT != 0

    @property
    def snapshot_begin(self) -> bool:
        """SNAPSHOT_BEGIN: the first event of a snapshot."""
        return self.event_flags & SNAPSHOT_BEGIN != 0

    @property
    def snapshot_end(self) -> bool:
        """SNAPSHOT_END: the last event of a complete snapshot."""
        return self.event_flags & SNAPSHOT_END != 0

    @property
    def snapshot_snip(self) -> bool:
        """SNAPSHOT_SNIP: the last event of a snapshot cut short by a limit."""
        return self.event_flags & SNAPSHOT_SNIP != 0

    @property
    def snapshot_marker(self) -> bool:
        """REMOVE_EVENT on a snapshot's first or last event: a marker that carries no entry
        (no bar, no print), e.g. the one event of an empty snapshot (:data:`EMPTY_SNAPSHOT`), or
        dxFeed's snapshot-closing event at index 0. Its values are NaN."""
        return is_snapshot_marker(self.event_flags)

    @property
    def snapshot_mode(self) -> bool:
        """SNAPSHOT_MODE: publishing side only; not expected from a server."""
        return self.event_flags & SNAPSHOT_MODE != 0


def is_snapshot_marker(event_flags: int) -> bool:
    """Whether eventFlags mark a snapshot boundary that carries no entry (REMOVE_EVENT together
    with SNAPSHOT_BEGIN, SNAPSHOT_END or SNAPSHOT_SNIP), see
    :attr:`IndexedEvent.snapshot_marker`."""
    return event_flags & REMOVE_EVENT != 0 and event_flags & _SNAPSHOT_EDGES != 0
