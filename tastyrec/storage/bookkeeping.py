"""The bookkeeping tables' files: one small Parquet file per recording session, rewritten whole.

* ``_sessions/<name>.parquet``: session id, start, end, source, symbols, event types, status
  (``recording``, ``ended``, ``failed``, ``recovered``), rows, files, tastyrec version.
* ``_gaps/<name>.parquet``: one row per disconnect -> reconnect: the receipt time of the last event
  before the break, when it was noticed, when the subscriptions were restored, why, and which
  stream broke (``stream``: ``dxlink`` or ``account``).
* ``_subscriptions/<name>.parquet`` (option-chain recordings,
  :class:`~tastyrec.record.chains.ChainRecorder`): one row per symbol and event type subscribed
  or unsubscribed (:class:`SubscriptionChange`).

``<name>`` is :func:`session_file_name`; the columns are :mod:`.tables`'. Each rewrite is
published atomically (:func:`tastyrec.storage.publish.publish`) under a temporary name of its
own, so two writers in one process (a timer, the exit) never share a temporary file.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

from .._arrow_values import rows as python_rows
from .._version import __version__
from ..schema import RECV_TYPE
from . import layout
from .parquet import write_small_table
from .tables import GapRow, gap_schema, session_schema

__all__ = (
    "ACCOUNT_STREAM",
    "DXLINK_STREAM",
    "SUBSCRIPTION_SCHEMA",
    "GapRow",
    "SessionRow",
    "SubscriptionChange",
    "read_session_rows",
    "session_file_name",
    "subscriptions_path",
    "write_gaps",
    "write_subscriptions",
)

#: ``stream`` values of the gaps table.
DXLINK_STREAM: Final = "dxlink"
ACCOUNT_STREAM: Final = "account"


def session_file_name(start_ns: int, session_id: str) -> str:
    """The stem of a session's files in ``_sessions/`` and ``_gaps/``."""
    return layout.file_name(start_ns, session_id, 0)


def _write(path: Path, table: pa.Table) -> None:
    write_small_table(path, table, tag=secrets.token_hex(4))


@dataclass
class SessionRow:
    """A recording session's row of ``_sessions``."""

    session_id: str
    start_ns: int
    source: str | None
    symbols: list[str] = field(default_factory=list)
    event_types: list[str] = field(default_factory=list)
    status: str = "recording"
    end_ns: int | None = None
    rows: int = 0
    files: int = 0

    def write(self, root: Path) -> None:
        """Publish this row as the session's file under ``root/_sessions``.

        Raises:
            OSError: it could not be written (the previous version stays).
        """
        row = {
            "session_id": [self.session_id],
            "start": [self.start_ns],
            "end": [self.end_ns],
            "source": [self.source],
            "symbols": [sorted(self.symbols)],
            "event_types": [sorted(self.event_types)],
            "status": [self.status],
            "rows": [self.rows],
            "files": [self.files],
            "tastyrec_version": [__version__],
        }
        name = session_file_name(self.start_ns, self.session_id)
        _write(
            root / layout.SESSIONS_DIR / f"{name}{layout.PARQUET_SUFFIX}",
            pa.table(row, schema=session_schema()),
        )


def read_session_rows(root: Path, session_id: str) -> list[tuple[Path, dict[str, Any]]]:
    """The files of a session's row in ``root/_sessions`` and the row each holds (times as
    epoch ns)."""
    folder = root / layout.SESSIONS_DIR
    # times as epoch ns: pyarrow gives nanosecond timestamps to Python only through pandas
    return [
        (path, python_rows(pq.read_table(path))[0])
        for path in folder.glob(f"*-{session_id}-*{layout.PARQUET_SUFFIX}")
    ]


def _table(
    schema: pa.Schema, session_id: str, rows: Sequence[Any], attributes: Mapping[str, str]
) -> pa.Table:
    """A table of ``schema``: ``session_id`` on every row, each other column (``attributes``:
    column -> attribute name) read off ``rows``."""
    columns: dict[str, list[Any]] = {"session_id": [session_id] * len(rows)}
    for column, attribute in attributes.items():
        columns[column] = [getattr(row, attribute) for row in rows]
    return pa.table({f.name: columns[f.name] for f in schema}, schema=schema)


#: gaps column -> GapRow attribute
_GAP_ATTRIBUTES: Final = {
    "last_received": "last_received_ns",
    "disconnected": "disconnected_ns",
    "resumed": "resumed_ns",
    "reason": "reason",
    "stream": "stream",
}


def write_gaps(root: Path, session_id: str, start_ns: int, gaps: Sequence[GapRow]) -> None:
    """Publish a session's gaps (all of them, oldest first) under ``root/_gaps``; none: no file.

    Raises:
        OSError: it could not be written (the previous version stays).
    """
    if not gaps:
        return
    ordered = sorted(gaps, key=lambda g: g.disconnected_ns)
    table = _table(gap_schema(), session_id, ordered, _GAP_ATTRIBUTES)
    name = session_file_name(start_ns, session_id)
    _write(root / layout.GAPS_DIR / f"{name}{layout.PARQUET_SUFFIX}", table)


SUBSCRIPTION_SCHEMA: Final = pa.schema(
    [
        pa.field("time", RECV_TYPE, nullable=False),
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("underlying", pa.string(), nullable=False),
        pa.field("action", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("price", pa.float64()),
    ]
)


@dataclass(frozen=True, slots=True)
class SubscriptionChange:
    """One row of the ``_subscriptions`` table: a symbol subscribed or unsubscribed."""

    time_ns: int
    underlying: str
    action: str  #: ``"subscribe"`` or ``"unsubscribe"``
    event_type: str
    symbol: str
    reason: str  #: ``"initial"``, ``"recentre"``, ``"chain"`` or ``"close"``
    price: float | None  #: the underlying's mid behind the change

    @property
    def time_us(self) -> int:
        """``time_ns`` in the unit of the ``time`` column (:data:`tastyrec.schema.RECV_TYPE`)."""
        return self.time_ns // 1000


#: subscriptions column -> SubscriptionChange attribute
_SUBSCRIPTION_ATTRIBUTES: Final = {
    "time": "time_us",
    **{n: n for n in ("underlying", "action", "event_type", "symbol", "reason", "price")},
}


def subscriptions_path(root: Path, start_ns: int, session_id: str) -> Path:
    """The ``_subscriptions`` file of a session that started at ``start_ns``."""
    name = session_file_name(start_ns, session_id)
    return root / layout.SUBSCRIPTIONS_DIR / f"{name}{layout.PARQUET_SUFFIX}"


def write_subscriptions(path: Path, session_id: str, changes: Sequence[SubscriptionChange]) -> None:
    """Publish a session's subscription changes (all of them, oldest first) at ``path``.

    Raises:
        OSError: it could not be written (the previous version stays).
    """
    _write(path, _table(SUBSCRIPTION_SCHEMA, session_id, changes, _SUBSCRIPTION_ATTRIBUTES))
