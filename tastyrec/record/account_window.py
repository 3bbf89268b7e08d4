"""The newest rows of each account table a recorder keeps in memory, for ``Recorder.frame``.

Market data has :class:`tastyrec.live.LiveFrame` (bounded by rows and age, with ``latest``); an
account table is a few rows a second with nested columns (legs, fills), so it keeps whole
batches, bounded by rows only, and becomes a polars frame of the table's own columns.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from ..storage.account_schema import AccountRecord, account_arrow_schema

__all__ = ("AccountWindow",)


class AccountWindow:
    """The newest ``max_rows`` rows of every account table (``None``: all of them).

    Example usage::

        window = AccountWindow(max_rows=100_000)
        window.add("PlacedOrder", batch)
        window.frame(PlacedOrder)
    """

    def __init__(self, max_rows: int | None) -> None:
        self.max_rows = max_rows
        self._batches: dict[str, list[pa.RecordBatch]] = {}

    def add(self, name: str, batch: pa.RecordBatch) -> None:
        """Keep ``batch`` of the table ``name``; drop whole old batches beyond ``max_rows``."""
        kept = self._batches.setdefault(name, [])
        kept.append(batch)
        if self.max_rows is not None:
            rows = sum(b.num_rows for b in kept)
            while len(kept) > 1 and rows - kept[0].num_rows >= self.max_rows:
                rows -= kept.pop(0).num_rows

    def frame(self, cls: type[AccountRecord]) -> pl.DataFrame:
        """The rows kept of ``cls``'s table, with its columns (empty if none)."""
        batches = self._batches.get(cls.__name__, [])
        table = pa.Table.from_batches(batches, account_arrow_schema(cls))
        frame = pl.from_arrow(table, rechunk=True)
        assert isinstance(frame, pl.DataFrame)
        return frame
