"""The bookkeeping tables' files (tastyrec.storage.bookkeeping): what is written reads back."""

from __future__ import annotations

import pyarrow.parquet as pq

from tastyrec._arrow_values import rows as python_rows
from tastyrec.storage import layout
from tastyrec.storage.bookkeeping import (
    SUBSCRIPTION_SCHEMA,
    GapRow,
    SessionRow,
    SubscriptionChange,
    read_session_rows,
    session_file_name,
    subscriptions_path,
    write_gaps,
    write_subscriptions,
)
from tastyrec.storage.tables import gap_schema, session_schema

NS = 1_000_000_000
START = 1_795_000_000 * NS


def test_a_session_row_is_rewritten_in_place(tmp_path):
    row = SessionRow("3f9a1c2b", START, "wss://example/feed", ["SPY"], ["Quote"])
    row.write(tmp_path)
    row.status, row.end_ns, row.rows, row.files = "ended", START + 5 * NS, 12, 1
    row.write(tmp_path)
    [(path, found)] = read_session_rows(tmp_path, "3f9a1c2b")
    assert path.parent == tmp_path / layout.SESSIONS_DIR
    assert path.stem == session_file_name(START, "3f9a1c2b")
    assert pq.read_schema(path).remove_metadata() == session_schema()
    assert {k: found[k] for k in ("status", "start", "end", "rows", "files", "symbols")} == {
        "status": "ended",
        "start": START,
        "end": START + 5 * NS,
        "rows": 12,
        "files": 1,
        "symbols": ["SPY"],
    }
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left
    assert read_session_rows(tmp_path, "other") == []


def test_gaps_are_written_oldest_first_and_none_make_no_file(tmp_path):
    write_gaps(tmp_path, "s1", START, [])
    assert not (tmp_path / layout.GAPS_DIR).exists()
    gaps = [
        GapRow(None, START + 9 * NS, None, "account streamer connection lost", "account"),
        GapRow(START + NS, START + 2 * NS, START + 3 * NS, "keepalive timeout", "dxlink"),
    ]
    write_gaps(tmp_path, "s1", START, gaps)
    [path] = (tmp_path / layout.GAPS_DIR).iterdir()
    table = pq.read_table(path)
    assert table.schema.remove_metadata() == gap_schema()
    assert python_rows(table) == [
        {
            "session_id": "s1",
            "last_received": START + NS,
            "disconnected": START + 2 * NS,
            "resumed": START + 3 * NS,
            "reason": "keepalive timeout",
            "stream": "dxlink",
        },
        {
            "session_id": "s1",
            "last_received": None,
            "disconnected": START + 9 * NS,
            "resumed": None,
            "reason": "account streamer connection lost",
            "stream": "account",
        },
    ]


def test_subscription_changes_read_back(tmp_path):
    path = subscriptions_path(tmp_path, START, "s1")
    assert path.parent == tmp_path / layout.SUBSCRIPTIONS_DIR
    changes = [
        SubscriptionChange(START, "SPY", "subscribe", "Quote", ".SPY261218C600", "initial", 600.1),
        SubscriptionChange(
            START + NS, "SPY", "unsubscribe", "Quote", ".SPY261218C600", "close", None
        ),
    ]
    write_subscriptions(path, "s1", changes)
    table = pq.read_table(path)
    assert table.schema.remove_metadata() == SUBSCRIPTION_SCHEMA
    assert [r["time"] for r in python_rows(table)] == [START, START + NS]
    assert table.column("session_id").to_pylist() == ["s1", "s1"]
    assert table.column("price").to_pylist() == [600.1, None]
    assert table.column("reason").to_pylist() == ["initial", "close"]
