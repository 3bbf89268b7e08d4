"""Schemas of the bookkeeping tables: ``_sessions/`` (one row per recording session) and
``_gaps/`` (one row per disconnect -> reconnect).

Kept apart from :mod:`.recorder` so that readers (``tastyrec.connect``, ``tastyrec sql``) get
them without importing the recorder and its dependencies. Imports pyarrow only.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

__all__ = ("GAP_SCHEMA", "SESSION_SCHEMA")

#: the receipt-time type (same as :data:`tastyrec.schema.RECV_TYPE`, without importing polars)
RECV_TYPE: Final = pa.timestamp("ns", tz="UTC")

SESSION_SCHEMA: Final = pa.schema(
    [
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("start", RECV_TYPE, nullable=False),
        pa.field("end", RECV_TYPE),
        pa.field("source", pa.string()),
        pa.field("symbols", pa.list_(pa.string())),
        pa.field("event_types", pa.list_(pa.string())),
        pa.field("status", pa.string(), nullable=False),
        pa.field("rows", pa.int64(), nullable=False),
        pa.field("files", pa.int64(), nullable=False),
        pa.field("tastyrec_version", pa.string(), nullable=False),
    ]
)
GAP_SCHEMA: Final = pa.schema(
    [
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("last_received", RECV_TYPE),
        pa.field("disconnected", RECV_TYPE, nullable=False),
        pa.field("resumed", RECV_TYPE),
        pa.field("reason", pa.string()),
        pa.field("stream", pa.string()),
    ]
)
