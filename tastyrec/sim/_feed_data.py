"""FEED_DATA encoding of the simulated DXLink server: events (objects or columns) to frames.

COMPACT (``["Quote",[v, v, ..., v, v, ...]]``: the values of many events in the announced field
order, flattened) or FULL (one object per event, empty fields left out); doubles that are not
finite become the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (docs/dxlink.md#data-formats).
A frame is cut between events to stay within ``max_frame_bytes``. Pure functions: the
:class:`~.engine.ServerConnection` decides what to send and when.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any, Final

import msgspec

from ..events.base import Event
from ..events.registry import EVENT_TYPES, EventSpec, FieldKind, spec

__all__ = ("event_frames", "column_frames")

_ENCODER: Final = msgspec.json.Encoder()
#: plan index of the ``eventType`` pseudo-field: not a Struct field, but a field clients may ask
#: for in ``acceptEventFields``; its value is the event type's name
_EVENT_TYPE: Final = -1

#: (Struct field index, _EVENT_TYPE or None; wire name) of each field sent, in order
Plan = list[tuple[int | None, str]]


def event_frames(
    channel: int,
    data_format: str,
    name: str,
    fields: Sequence[str],
    events: list[Event],
    limit: int,
) -> list[str]:
    """FEED_DATA frames of ``events`` (all of type ``name``) with ``fields``."""
    s = spec(EVENT_TYPES[name])
    plan = _plan(s, fields)
    if data_format == "FULL":
        rows = [_full_row(s, plan, name, e) for e in events]
        return _frames(_head(channel, None), "]}", rows, limit)
    rows = [_compact_row(s, plan, name, e) for e in events]
    return _frames(_head(channel, name), "]]}", rows, limit)


def column_frames(
    channel: int,
    data_format: str,
    name: str,
    fields: Sequence[str],
    groups: Iterable[dict[str, list[Any] | Any]],
    limit: int,
) -> list[str]:
    """FEED_DATA frames of events given as columns (an :class:`~.batch.OptionBatch`'s: a list
    per column, or one value for all rows), encoded in bulk: COMPACT frames are the flat value
    lists of many events, one msgspec call per frame."""
    cls = EVENT_TYPES[name]
    s = spec(cls)
    plan = _plan(s, fields)
    out: list[str] = []
    for cols in groups:
        n = len(cols["event_symbol"])
        if data_format == "FULL":
            lists = [_expand(cols[f], n) for f in cls.__struct_fields__]
            events = [cls(*row) for row in zip(*lists, strict=True)]
            rows = [_full_row(s, plan, name, e) for e in events]
            out += _frames(_head(channel, None), "]}", rows, limit)
            continue
        values: list[list[Any]] = []
        for i, _ in plan:
            if i is None:
                values.append([None] * n)
            elif i == _EVENT_TYPE:
                values.append([name] * n)
            else:
                f = s.fields[i]
                values.append(_json_column(f.kind, cols[f.name], n))
        flat = list(itertools.chain.from_iterable(zip(*values, strict=True)))
        out += _frames_bulk(_head(channel, name), "]]}", flat, len(plan), limit)
    return out


def _head(channel: int, compact_name: str | None) -> str:
    if compact_name is None:
        return f'{{"type":"FEED_DATA","channel":{channel},"data":['
    return f'{{"type":"FEED_DATA","channel":{channel},"data":["{compact_name}",['


def _plan(s: EventSpec, fields: Sequence[str]) -> Plan:
    return [(_field_index(s, f), f) for f in fields]


def _frames(head: str, tail: str, rows: Iterable[str], limit: int) -> list[str]:
    out: list[str] = []
    overhead = len(head.encode()) + len(tail.encode())
    chunk: list[str] = []
    size = overhead
    for row in rows:
        n = len(row.encode()) + 1
        if chunk and size + n > limit:
            out.append(head + ",".join(chunk) + tail)
            chunk, size = [], overhead
        chunk.append(row)
        size += n
    if chunk:
        out.append(head + ",".join(chunk) + tail)
    return out


def _frames_bulk(head: str, tail: str, flat: list[Any], width: int, limit: int) -> list[str]:
    """Frames of the flat value list ``flat`` (``width`` values an event), as large as
    ``limit`` allows, cut between events."""
    out: list[str] = []
    overhead = len(head.encode()) + len(tail.encode())
    rows = len(flat) // width
    i, take = 0, 256
    while i < rows:
        take = max(1, min(take, rows - i))
        body = _ENCODER.encode(flat[i * width : (i + take) * width])
        size = overhead + len(body) - 2
        if size > limit and take > 1:
            take = min(take - 1, take * (limit - overhead) * 9 // (10 * (size - overhead)))
            continue
        out.append(head + body[1:-1].decode() + tail)
        i += take
        take = int((limit - overhead) * take * 0.95 / max(1, len(body)))
    return out


def _compact_row(s: EventSpec, plan: Plan, name: str, e: Event) -> str:
    values: list[Any] = []
    for i, _ in plan:
        if i is None:
            values.append(None)
        # production puts the type name there (docs/dxlink.md#the-type-name-in-compact-rows)
        elif i == _EVENT_TYPE:
            values.append(name)
        else:
            f = s.fields[i]
            values.append(_json_value(f.kind, getattr(e, f.name)))
    return _ENCODER.encode(values).decode()[1:-1]


def _full_row(s: EventSpec, plan: Plan, name: str, e: Event) -> str:
    # every FULL object has it (docs/dxlink.md#data-formats)
    row: dict[str, Any] = {"eventType": name}
    for i, wire in plan:
        if i is None or i == _EVENT_TYPE:
            continue
        f = s.fields[i]
        value = getattr(e, f.name)
        if value is not None:  # the spec omits empty fields in FULL
            row[wire] = _json_value(f.kind, value)
    return _ENCODER.encode(row).decode()


def _json_value(kind: FieldKind, value: Any) -> Any:
    if kind is FieldKind.DOUBLE:
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return float(value)
    return value


def _expand(column: list[Any] | Any, n: int) -> list[Any]:
    return column if isinstance(column, list) else [column] * n


def _json_column(kind: FieldKind, column: list[Any] | Any, n: int) -> list[Any]:
    """A column as JSON values: :func:`_json_value` of each (only where needed: most columns
    are finite floats, ints or strings as they are)."""
    if not isinstance(column, list):
        return [_json_value(kind, column)] * n
    if kind is FieldKind.DOUBLE and not math.isfinite(sum(column)):
        # v - v is 0.0 for a finite v, NaN for NaN and the infinities
        return [v if v - v == 0.0 else _json_value(kind, v) for v in column]
    return column


def _field_index(s: EventSpec, wire: str) -> int | None:
    """Index of the Struct field a requested name means (case-insensitive), ``_EVENT_TYPE``, or
    None for a name the event does not have (sent as null)."""
    key = wire.lower()
    if key == "eventtype":
        return _EVENT_TYPE
    return s.by_wire_name.get(key)
