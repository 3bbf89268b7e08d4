"""Arrow values as Python values and as text, without pandas.

pyarrow hands a nanosecond timestamp, time or duration to Python as a ``pandas.Timestamp`` when
pandas is installed; without pandas it raises ``ValueError: Nanosecond resolution temporal type
... Install pandas`` for any value that is not a whole microsecond. tastyrec does not depend on
pandas (``pip install tastyrec`` brings none), and DuckDB hands every timestamp to Python
through Arrow, so nothing in tastyrec calls ``to_pylist``/``as_py``/``fetchall`` on a column that
may hold such values: it comes here instead.

* :func:`rows` — a table's rows as dicts; every timestamp, time of day and duration, at any
  depth (inside structs, lists, maps), is an ``int`` count of nanoseconds (timestamps: since
  the epoch, UTC). Exact, and the same with or without pandas.
* :func:`text_columns` — each column's cells as display strings; times are exact to their unit
  (nanoseconds shown in full), in the column's time zone.
* :func:`format_ns` — one epoch-nanosecond time as ``2026-11-21 13:44:20.582229960``.

Imports pyarrow and the standard library only (no DuckDB, polars or pandas).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, Final

import pyarrow as pa

__all__ = ("format_ns", "rows", "text_columns")

_NS_PER: Final = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_DIGITS: Final = {"s": 0, "ms": 3, "us": 6, "ns": 9}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_NS: Final = 86_400 * 1_000_000_000
_INT64_MAX: Final = 2**63 - 1
_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")

#: converts an array of one temporal type into Python values, one per slot (None for nulls)
Leaf = Callable[[pa.Array], list[Any]]


def rows(table: pa.Table) -> list[dict[str, Any]]:
    """The rows of ``table`` as dicts, times as integer nanoseconds (see the module docstring).

    Use it instead of ``table.to_pylist()`` wherever a column may be a nanosecond timestamp.
    """
    columns = [_column(table.column(i), _ints_ns) for i in range(table.num_columns)]
    names = table.column_names
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def text_columns(table: pa.Table, cell: Callable[[Any], str]) -> list[list[str]]:
    """Each column of ``table`` as display strings: times by :func:`format_ns` and friends
    (exact to the unit, in the column's time zone), everything else by ``cell(value)``."""
    out = []
    for i in range(table.num_columns):
        column = table.column(i)
        if _is_temporal(column.type):
            out.append(["NULL" if v is None else v for v in _column(column, _texts)])
        else:
            out.append([cell(v) for v in _column(column, _texts)])
    return out


def format_ns(epoch_ns: int, *, digits: int = 9, tz: tzinfo | None = None) -> str:
    """``epoch_ns`` as ``YYYY-MM-DD HH:MM:SS.fffffffff`` (``digits`` of the fraction).

    With ``tz``, the local time there followed by its UTC offset (``+00:00``); without, UTC and
    no offset.
    """
    seconds, frac = divmod(epoch_ns, 1_000_000_000)
    try:
        moment = _EPOCH + timedelta(seconds=seconds)
        if tz is not None:
            moment = moment.astimezone(tz)
    except OverflowError:  # beyond year 9999 (DuckDB's infinity is int64's extreme)
        if abs(epoch_ns) >= _INT64_MAX - _NS_PER["s"]:
            return "infinity" if epoch_ns > 0 else "-infinity"
        return f"{epoch_ns} ns since 1970-01-01"
    text = f"{moment.year:04d}-{moment:%m-%d %H:%M:%S}"
    if digits:
        text += "." + f"{frac:09d}"[:digits]
    if tz is not None:
        text += _offset(moment.utcoffset())
    return text


# --- traversal -----------------------------------------------------------------------------


def _is_temporal(t: pa.DataType) -> bool:
    return bool(pa.types.is_timestamp(t) or pa.types.is_time(t) or pa.types.is_duration(t))


def _holds_temporal(t: pa.DataType) -> bool:
    if _is_temporal(t):
        return True
    if pa.types.is_dictionary(t):
        return _holds_temporal(t.value_type)
    return any(_holds_temporal(t.field(i).type) for i in range(t.num_fields))


def _column(column: pa.ChunkedArray | pa.Array, leaf: Leaf) -> list[Any]:
    if isinstance(column, pa.ChunkedArray):
        return [v for chunk in column.chunks for v in _values(chunk, leaf)]
    return _values(column, leaf)


def _values(array: pa.Array, leaf: Leaf) -> list[Any]:
    """``array.to_pylist()``, with every temporal value converted by ``leaf``."""
    t = array.type
    if not _holds_temporal(t):
        return list(array.to_pylist())
    if _is_temporal(t):
        return leaf(array)
    if pa.types.is_dictionary(t):
        return _values(array.dictionary_decode(), leaf)
    valid = array.is_valid().to_pylist()
    if pa.types.is_struct(t):
        names = [t.field(i).name for i in range(t.num_fields)]
        fields = [_values(child, leaf) for child in array.flatten()]  # slice-aware
        return [
            dict(zip(names, values, strict=True)) if ok else None
            for ok, *values in zip(valid, *fields, strict=True)
        ]
    if pa.types.is_map(t) or _is_list(t):
        import pyarrow.compute as pc  # here: flat tables (the usual case) need none of it

        # a map's layout is that of a list of key/value structs
        lists = array.view(pa.list_(t.field(0))) if pa.types.is_map(t) else array
        items = _values(pc.list_flatten(lists), leaf)  # the slots of non-null lists, in order
        lengths = pc.list_value_length(lists).to_pylist()
        out: list[Any] = []
        start = 0
        for ok, n in zip(valid, lengths, strict=True):
            if not ok:
                out.append(None)
                continue
            part = items[start : start + n]
            start += n
            # as pyarrow does: a map is a list of (key, value) pairs
            out.append([tuple(e.values()) for e in part] if pa.types.is_map(t) else part)
        return out
    # a union or another layout DuckDB does not produce: whatever pyarrow makes of it
    return list(array.to_pylist())


def _is_list(t: pa.DataType) -> bool:
    return bool(pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))


def _counts(array: pa.Array) -> list[int | None]:
    """The raw integer of each slot (epoch units, units since midnight, or a duration)."""
    width = pa.int32() if pa.types.is_time32(array.type) else pa.int64()
    return list(array.cast(width).to_pylist())


# --- leaves --------------------------------------------------------------------------------


def _ints_ns(array: pa.Array) -> list[Any]:
    scale = _NS_PER[array.type.unit]
    return [None if v is None else v * scale for v in _counts(array)]


def _texts(array: pa.Array) -> list[Any]:
    t = array.type
    scale, digits = _NS_PER[t.unit], _DIGITS[t.unit]
    counts = _counts(array)
    if pa.types.is_timestamp(t):
        tz = _zone(t.tz) if t.tz else None
        return [None if v is None else format_ns(v * scale, digits=digits, tz=tz) for v in counts]
    if pa.types.is_time(t):
        return [None if v is None else _clock(v * scale, digits) for v in counts]
    return [None if v is None else _duration(v * scale, digits) for v in counts]


def _zone(name: str) -> tzinfo:
    match = _OFFSET.match(name)
    if match:
        sign = -1 if match.group(1) == "-" else 1
        minutes = int(match.group(2)) * 60 + int(match.group(3))
        return timezone(sign * timedelta(minutes=minutes))
    if name.upper() in ("UTC", "Z", "ETC/UTC"):
        return UTC
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # tzdata is a dependency

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC  # shown with +00:00, so never mistaken for local time


def _offset(delta: timedelta | None) -> str:
    minutes = int((delta or timedelta()).total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


def _clock(ns: int, digits: int) -> str:
    seconds, frac = divmod(ns, 1_000_000_000)
    hours, rest = divmod(seconds, 3600)
    text = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return text + ("." + f"{frac:09d}"[:digits] if digits else "")


def _duration(ns: int, digits: int) -> str:
    sign = "-" if ns < 0 else ""
    days, rest = divmod(abs(ns), _DAY_NS)
    text = _clock(rest, digits)
    return f"{sign}{days} days {text}" if days else sign + text
