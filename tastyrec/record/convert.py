"""Events handed to the recorder by user code -> Arrow batches, one :class:`ColumnBatch` per type.

The recorder's hot path is columnar (COMPACT values -> Arrow, :mod:`tastyrec.dxlink.compact`). This
module is the side door for events that user code already holds as objects: tastyrec's own event
Structs and the tastytrade SDK's event objects (``tastytrade.dxfeed.Quote`` etc., pydantic models).
Values are checked by type and collected per field, then each column becomes one ``pa.array``.
It imports no I/O and does not import the SDK: SDK objects are recognised by their class's module
(``tastytrade.dxfeed.*``) and class name.

Which class an object maps to, the first match along its class's MRO:

* a class in :data:`~tastyrec.events.registry.EVENT_TYPES` (a subclass of ``Quote`` records as
  ``Quote``: only ``Quote``'s fields are read);
* a class from ``tastytrade.dxfeed.*`` whose name is an event type name
  (:func:`~tastyrec.events.registry.event_class`).

Anything else raises :class:`~tastyrec.exceptions.SchemaError`.

SDK classes compared with ours (tastytrade 13.2.3, ``tastytrade.dxfeed``), field by field:

* **Names.** Candle, Greeks, Profile, Quote, Summary, TheoPrice, TimeAndSale, Trade and Underlying
  have exactly our field names, so our names are read as attributes; no renaming is needed. Only
  TimeAndSale's order differs (``exchange_sale_conditions`` is last in the SDK): attributes are
  read by name, so order does not matter. An attribute the object lacks raises SchemaError rather
  than being filled with a default.
* **Types.** The SDK's doubles are ``Decimal`` (converted with ``float()``, the nearest double).
  Some of our doubles are ``int`` in the SDK: Candle ``open_interest``, Trade and TimeAndSale
  ``size``, Underlying ``call_volume``, ``put_volume``, ``option_volume`` (converted with
  ``float()``). TimeAndSale ``buyer`` and ``seller`` are typed ``None`` in the SDK (always absent).
  Times are ``int`` epoch milliseconds, as ours.
* **Absent values.** ``None`` (the SDK's optional fields) becomes our absent value: NaN, 0,
  ``None`` or ``False``. The SDK already replaced some absent values with 0 before we see them:
  Quote ``bid_size``/``ask_size`` and Candle ``open``/``high``/``low``/``close`` are 0 where the
  feed sent NaN, and events with NaN in other required fields were dropped by the SDK. These
  cannot be recovered here; the columnar path keeps them.
* **Not in the SDK.** TradeETH, Order, Series and OptionSale have no SDK class; only tastyrec
  Structs of those types are accepted.

Accepted values per field kind (for Structs too, whose values msgspec does not check on
construction): doubles ``float``, ``int`` (not ``bool``), ``Decimal`` or ``None``; longs and
times ``int`` (not ``bool``, range int64) or ``None``; strings ``str`` or ``None``
(``event_symbol`` must be a ``str``); booleans ``bool`` or ``None``. Anything else raises
SchemaError naming the event type, the field and the value: never a silently converted value.
"""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any, Final

import numpy as np
import pyarrow as pa

from ..dxlink.compact import ColumnBatch
from ..events.base import Event
from ..events.registry import EVENT_TYPES, EventSpec, FieldKind, FieldSpec, spec
from ..exceptions import SchemaError
from ..schema import ARROW_TYPES, arrow_schema, receipt_arrays

__all__ = ("to_batches",)

#: module prefix of the tastytrade SDK's event classes
_SDK_MODULE: Final = "tastytrade.dxfeed."

_OURS: Final = frozenset(EVENT_TYPES.values())
_NONE: Final = type(None)
#: type of an object -> the event class it is recorded as (only event types are cached)
_TARGETS: Final[dict[type, type[Event]]] = {}
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


def to_batches(events: Iterable[object], recv_ns: int | None = None) -> list[ColumnBatch]:
    """Convert event objects into one :class:`ColumnBatch` per event type.

    Events are grouped by type, in the order each type first appears; within a type they keep
    their order. Each batch has exactly :func:`~tastyrec.schema.arrow_schema` of its type.

    Args:
        events: tastyrec event Structs and/or tastytrade SDK event objects, mixed freely.
        recv_ns: receipt time, epoch nanoseconds, stored on every row; ``time.time_ns()`` (read
            once per call) when ``None``.

    Returns:
        The batches, one per event type present (an empty list for no events).

    Raises:
        SchemaError: an object that is not an event, or a value of the wrong type.
    """
    groups: dict[type[Event], list[object]] = {}
    for obj in events:
        try:
            cls = _target(type(obj))
        except SchemaError:
            raise SchemaError(
                f"not an event: {obj!r:.200} ({type(obj).__module__}.{type(obj).__qualname__} is "
                "neither a tastyrec event Struct nor a tastytrade.dxfeed event)"
            ) from None
        group = groups.get(cls)
        if group is None:
            groups[cls] = [obj]
        else:
            group.append(obj)
    if not groups:
        return []
    if recv_ns is None:
        recv_ns = time.time_ns()
    elif type(recv_ns) is not int or not _INT64_MIN <= recv_ns <= _INT64_MAX:
        raise SchemaError(f"recv_ns must be an int64 of epoch nanoseconds, not {recv_ns!r}")
    return [_batch(spec(cls), group, recv_ns) for cls, group in groups.items()]


def _target(tp: type) -> type[Event]:
    """The event class that objects of type ``tp`` are recorded as; SchemaError if none."""
    cls = _TARGETS.get(tp)
    if cls is not None:
        return cls
    for base in tp.__mro__:
        if base in _OURS:
            cls = base
        elif base.__module__.startswith(_SDK_MODULE) and base.__name__ in EVENT_TYPES:
            cls = EVENT_TYPES[base.__name__]
        if cls is not None:
            _TARGETS[tp] = cls
            return cls
    raise SchemaError(f"not an event type: {tp!r}")


def _batch(s: EventSpec, group: list[object], recv_ns: int) -> ColumnBatch:
    getter = operator.attrgetter(*s.names)
    try:
        rows = list(map(getter, group))
    except AttributeError:
        for obj in group:
            for name in s.names:
                if not hasattr(obj, name):
                    raise SchemaError(
                        f"{s.name} object without a {name!r} attribute: {obj!r:.200}"
                    ) from None
        raise  # pragma: no cover - attrgetter failed, but no attribute is missing
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
    arrays = [_CONVERTERS[f.kind](s, f, col) for f, col in zip(s.fields, columns, strict=True)]
    recv = np.full(len(group), recv_ns, dtype=np.int64)
    arrays += receipt_arrays(recv)
    return ColumnBatch(s.cls, pa.RecordBatch.from_arrays(arrays, schema=arrow_schema(s.cls)))


def _bad(s: EventSpec, f: FieldSpec, value: object, expected: str) -> SchemaError:
    return SchemaError(
        f"bad value for {s.name}.{f.name}: {value!r:.200} ({type(value).__name__}), "
        f"expected {expected}"
    )


def _check(
    s: EventSpec,
    f: FieldSpec,
    col: Sequence[Any],
    ok: Callable[[type], bool],
    expected: str,
) -> set[type]:
    """The set of value types in ``col``, after checking each type with ``ok``."""
    types = set(map(type, col))
    for tp in types:
        if not ok(tp):
            raise _bad(s, f, next(v for v in col if type(v) is tp), expected)
    return types


def _is_double(tp: type) -> bool:
    return tp is _NONE or issubclass(tp, float | Decimal) or _is_int(tp)


def _is_int(tp: type) -> bool:
    return issubclass(tp, int) and not issubclass(tp, bool)


def _doubles(s: EventSpec, f: FieldSpec, col: Sequence[Any]) -> pa.Array:
    types = _check(s, f, col, _is_double, "a float, int, Decimal or None")
    if types != {float}:
        values: list[float] = []
        for v in col:
            try:
                values.append(math.nan if v is None else float(v))
            except (ValueError, OverflowError):  # Decimal("sNaN"), an int beyond float range
                raise _bad(s, f, v, "a value that converts to a double") from None
        col = values
    return pa.array(col, type=_FLOAT64)


def _ints(s: EventSpec, f: FieldSpec, col: Sequence[Any]) -> pa.Array:
    types = _check(s, f, col, lambda tp: tp is _NONE or _is_int(tp), "an int or None")
    if _NONE in types:
        col = [f.default if v is None else v for v in col]
    if types - {_NONE} != {int}:  # int subclasses (IntEnum...): plain ints for Arrow
        col = [int(v) for v in col]
    if col and not (_INT64_MIN <= min(col) and max(col) <= _INT64_MAX):
        bad = next(v for v in col if not _INT64_MIN <= v <= _INT64_MAX)
        raise _bad(s, f, bad, "an int64")
    arr = pa.array(col, type=_INT64)
    return arr if f.kind is FieldKind.LONG else arr.view(_TIME_TYPE)


def _strings(s: EventSpec, f: FieldSpec, col: Sequence[Any]) -> pa.Array:
    if f.name == "event_symbol":
        _check(s, f, col, lambda tp: issubclass(tp, str), "a str")
    else:
        _check(s, f, col, lambda tp: tp is _NONE or issubclass(tp, str), "a str or None")
    try:
        return pa.array(col, type=_STRING)
    except (pa.ArrowException, UnicodeError) as exc:  # lone surrogates do not encode to UTF-8
        raise SchemaError(f"bad value for {s.name}.{f.name}: {exc}") from None


def _bools(s: EventSpec, f: FieldSpec, col: Sequence[Any]) -> pa.Array:
    types = _check(s, f, col, lambda tp: tp is bool or tp is _NONE, "a bool or None")
    if _NONE in types:
        col = [False if v is None else v for v in col]
    return pa.array(col, type=_BOOL)


_FLOAT64: Final = pa.float64()
_INT64: Final = pa.int64()
_STRING: Final = pa.string()
_BOOL: Final = pa.bool_()
_TIME_TYPE: Final = ARROW_TYPES[FieldKind.TIME_MS]
_CONVERTERS: Final[dict[FieldKind, Callable[[EventSpec, FieldSpec, Sequence[Any]], pa.Array]]] = {
    FieldKind.DOUBLE: _doubles,
    FieldKind.LONG: _ints,
    FieldKind.TIME_MS: _ints,
    FieldKind.STRING: _strings,
    FieldKind.BOOL: _bools,
}
