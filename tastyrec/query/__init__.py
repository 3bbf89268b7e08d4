"""SQL and dataframes over recordings: DuckDB views, polars scans, analysis, compaction.

* :func:`connect` — a DuckDB connection with a view per recorded event type, ``sessions`` and
  ``gaps``; :func:`refresh` picks up new files.
* :func:`scan` — a polars LazyFrame over one event type, pushdown on ``date`` and symbol.
* :func:`ohlcv`, :func:`mid_bars`, :func:`asof_quotes`, :func:`quote_metrics`,
  :func:`spread_stats` — bars, as-of joins, spread and micro-price statistics.
* :func:`inventory` — what a recording holds (``tastyrec info``).
* :func:`compact` — merge small files into large sorted ones (``tastyrec compact``).
* ``Recorder.connect()`` (in :mod:`tastyrec.record.recorder`) — the same views over a running
  recorder's files *and* the rows not yet in Parquet.

Every function lists files through :mod:`tastyrec.catalog`. The command line is in
:mod:`tastyrec.query.commands` (imported only by the CLI: it needs click and rich). Names are
imported on first use (:mod:`tastyrec._lazy`): ``tastyrec sql`` loads DuckDB, not polars.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from .._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from ..storage.sql import connect, refresh
    from ._analysis import asof_quotes, mid_bars, ohlcv, quote_metrics, spread_stats
    from ._compact import DEFAULT_MAX_ROWS, CompactionResult, compact
    from ._inventory import Inventory, TypeInventory, inventory
    from ._scan import scan

_EXPORTS: Final = {
    **dict.fromkeys(
        ("asof_quotes", "mid_bars", "ohlcv", "quote_metrics", "spread_stats"), "._analysis"
    ),
    **dict.fromkeys(("DEFAULT_MAX_ROWS", "CompactionResult", "compact"), "._compact"),
    **dict.fromkeys(("connect", "refresh"), "..storage.sql"),
    **dict.fromkeys(("Inventory", "TypeInventory", "inventory"), "._inventory"),
    "scan": "._scan",
}

__all__ = (
    "DEFAULT_MAX_ROWS",
    "CompactionResult",
    "Inventory",
    "TypeInventory",
    "asof_quotes",
    "compact",
    "connect",
    "inventory",
    "mid_bars",
    "ohlcv",
    "quote_metrics",
    "refresh",
    "scan",
    "spread_stats",
)

__getattr__, __dir__ = _lazy_exports(__name__, globals(), _EXPORTS)
