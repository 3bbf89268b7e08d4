"""Snapshot markers are not data: the rows a recording leaves out of its event tables.

A snapshot marker is an indexed event whose eventFlags have REMOVE_EVENT together with
SNAPSHOT_BEGIN, SNAPSHOT_END or SNAPSHOT_SNIP (:func:`tastyrec.events.is_snapshot_marker`): it
delimits a snapshot and carries no entry, its values are NaN. The one users meet is the explicitly
empty snapshot, eventFlags 14: production's whole answer to a Candle subscription on an ``AUTO``
channel (docs/dxlink.md#candle-history-needs-history), and its answer on ``HISTORY`` when there is
no history from ``fromTime``. Recorded, it would be a Candle row with NaN open/high/low/close that
every ``min(low)``, ``max(high)`` and bar count over the table takes for a bar, so the recorder
drops it here, before the journal and the live frame (and therefore before Parquet, queries, replay
and ``tastyrec serve``), and says so once per symbol in the log. A removal that is not on a
snapshot's edge (REMOVE_EVENT alone: "the entry at this index is gone") is data and is recorded.

Imports pyarrow and the event flags only; nothing of the recorder.
"""

from __future__ import annotations

import logging
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from ..events.base import EMPTY_SNAPSHOT, REMOVE_EVENT, SNAPSHOT_BEGIN, SNAPSHOT_END, SNAPSHOT_SNIP

__all__ = ("SnapshotMarkers",)

logger = logging.getLogger(__name__)

_FLAGS: Final = "event_flags"
_SYMBOL: Final = "event_symbol"
_EDGES: Final = SNAPSHOT_BEGIN | SNAPSHOT_END | SNAPSHOT_SNIP


class SnapshotMarkers:
    """Takes snapshot markers out of record batches; counts them per (event type, symbol)."""

    def __init__(self) -> None:
        #: markers left out so far, by (event type, symbol)
        self.dropped: dict[tuple[str, str], int] = {}

    def drop(self, event_type: str, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` without its snapshot markers (the same batch when it has none)."""
        index = batch.schema.get_field_index(_FLAGS)
        if index < 0:
            return batch  # not an indexed event type
        flags = batch.column(index)
        marker = pc.and_(
            pc.not_equal(pc.bit_wise_and(flags, REMOVE_EVENT), 0),
            pc.not_equal(pc.bit_wise_and(flags, _EDGES), 0),
        )
        if not pc.any(marker).as_py():
            return batch
        symbols = batch.column(_SYMBOL).filter(marker).to_pylist()
        for symbol, value in zip(symbols, flags.filter(marker).to_pylist(), strict=True):
            key = (event_type, symbol)
            if key not in self.dropped:
                self._log(event_type, symbol, value)
            self.dropped[key] = self.dropped.get(key, 0) + 1
        return batch.filter(pc.invert(marker))

    @staticmethod
    def _log(event_type: str, symbol: str, flags: int) -> None:
        if flags == EMPTY_SNAPSHOT:
            logger.warning(
                "< the server sent an empty %s snapshot for %r (eventFlags 14: no history from "
                "fromTime; on a channel with contract AUTO that is all production sends): it is "
                "no bar, so it is not recorded",
                event_type,
                symbol,
            )
        else:
            logger.info(
                "< %s snapshot marker for %r (eventFlags %d, no entry) is not recorded",
                event_type,
                symbol,
                flags,
            )
