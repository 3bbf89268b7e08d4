"""An independent decoder of what the simulator sent, to compare recordings with.

``Simulator(keep_sent=True).sent`` holds every frame; these functions decode them with plain
``json`` and the FEED_CONFIG field lists (none of tastyrec's decoding), and read recorded rows
back from Parquet in the same normalised form.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tastyrec.events.registry import spec


def sent_events(frames: list[Any]) -> dict[str, list[dict[str, Any]]]:
    """Events in the server's FEED_DATA frames, decoded with json and the FEED_CONFIG fields.

    Each FEED_DATA is decoded by its own shape: a list of objects is FULL (the ``full`` chaos
    switches format without a FEED_CONFIG), type/values pairs are COMPACT.
    """
    fields: dict[tuple[int, str], list[str]] = {}
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for frame in frames:
        msg = json.loads(frame)
        if msg["type"] == "FEED_CONFIG":
            for name, names in (msg.get("eventFields") or {}).items():
                fields[(msg["channel"], name)] = names
        elif msg["type"] == "FEED_DATA" and msg["data"] and isinstance(msg["data"][0], dict):
            for row in msg["data"]:
                out[row["eventType"]].append(row)
        elif msg["type"] == "FEED_DATA":
            data = msg["data"]
            for name, values in zip(data[0::2], data[1::2], strict=True):
                names = fields[(msg["channel"], name)]
                for i in range(0, len(values), len(names)):
                    out[name].append(dict(zip(names, values[i : i + len(names)], strict=True)))
    return out


def normalise(value: Any) -> Any:
    if value in ("NaN", "Infinity", "-Infinity"):
        return float(value)
    if isinstance(value, float) and math.isnan(value):
        return "NaN"  # NaN == NaN for comparisons
    return value


def expected_rows(event_type: type[Any], events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    s = spec(event_type)
    rows = []
    for event in events:
        row = []
        for f in s.fields:
            value = normalise(event.get(f.wire_name, f.default))
            if f.kind.name == "DOUBLE" and not isinstance(value, str):
                value = normalise(float(value))
            row.append(value)
        rows.append(tuple(row))
    return rows


def recorded_rows(root: Path, event_type: type[Any]) -> list[tuple[Any, ...]]:
    files = sorted((root / event_type.__name__).glob("date=*/*.parquet"))
    if not files:
        return []
    table = pa.concat_tables(pq.read_table(f) for f in files)
    table = table.sort_by("recv_ns")  # receipt order across files
    names = [f.name for f in spec(event_type).fields]
    columns = [
        table[n].cast(pa.int64()) if pa.types.is_timestamp(table[n].type) else table[n]
        for n in names
    ]
    lists = [c.to_pylist() for c in columns]
    return [tuple(normalise(v) for v in row) for row in zip(*lists, strict=True)]
