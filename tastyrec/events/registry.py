"""Wire name -> event Struct, and the per-field facts every other schema is derived from.

:func:`spec` turns an event class into an :class:`EventSpec` by reading the Struct with
:func:`msgspec.structs.fields` and its type hints: field order is the FEED_SETUP
``acceptEventFields`` order, the COMPACT decoding order and the Arrow column order. There is no
second, hand-written schema anywhere in tastyrec.
"""

from __future__ import annotations

import enum
import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final

import msgspec

from ..exceptions import SchemaError
from .base import Event
from .market import (
    Candle,
    Greeks,
    OptionSale,
    Order,
    Profile,
    Quote,
    Series,
    Summary,
    TheoPrice,
    TimeAndSale,
    Trade,
    TradeETH,
    Underlying,
)

__all__ = (
    "EVENT_TYPES",
    "EventSpec",
    "FieldKind",
    "FieldSpec",
    "event_class",
    "spec",
    "struct_fields",
)


class FieldKind(enum.Enum):
    """How a field travels on the wire (docs/dxlink.md#value-encoding) and how it is stored.

    The first five are the kinds of DXLink event fields (:data:`WIRE_KINDS`); the others occur
    only in account payloads (JSON of the account streamer and of REST).
    """

    DOUBLE = "d"  # JSON number or "NaN"/"Infinity"/"-Infinity"; float64
    LONG = "i"  # JSON integer; int64
    TIME_MS = "t"  # JSON integer, epoch ms; timestamp[ms, UTC] in Arrow
    STRING = "s"  # JSON string or null
    BOOL = "b"  # JSON true/false
    DECIMAL = "decimal"  # exact decimal; decimal128(38, 10)
    DATETIME = "datetime"  # ISO 8601 time; timestamp[us, UTC]
    DATE = "date"  # ISO 8601 date; date32
    STRUCT = "struct"  # a nested Struct (FieldSpec.struct); an Arrow struct
    STRUCT_LIST = "struct_list"  # a list of nested Structs; a list of Arrow structs
    JSON = "json"  # anything else (free-form objects, unions of value types); JSON text


#: The kinds a DXLink event field can have.
WIRE_KINDS: Final = frozenset(
    (FieldKind.DOUBLE, FieldKind.LONG, FieldKind.TIME_MS, FieldKind.STRING, FieldKind.BOOL)
)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of an event type."""

    name: str  #: attribute name (snake_case, the SDK's)
    wire_name: str  #: DXLink name (camelCase)
    kind: FieldKind
    default: Any  #: value used when the server omits the field or sends null
    required: bool = False  #: no default: every value has it
    struct: type[msgspec.Struct] | None = None  #: the nested Struct of STRUCT(_LIST) fields


@dataclass(frozen=True)
class EventSpec:
    """Everything tastyrec knows about one event type, derived from its Struct."""

    name: str  #: DXLink event type name, e.g. ``"Quote"``
    cls: type[Event]
    fields: tuple[FieldSpec, ...]

    @functools.cached_property
    def wire_names(self) -> tuple[str, ...]:
        """Field names in wire order: what FEED_SETUP ``acceptEventFields`` asks for."""
        return tuple(f.wire_name for f in self.fields)

    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        """Attribute (and column) names in wire order."""
        return tuple(f.name for f in self.fields)

    @functools.cached_property
    def by_wire_name(self) -> Mapping[str, int]:
        """Lower-cased wire name -> field position (servers may change case: ``VWAP``)."""
        return {f.wire_name.lower(): i for i, f in enumerate(self.fields)}

    @property
    def indexed(self) -> bool:
        """Whether the events carry eventFlags and an index."""
        return "event_flags" in self.names


_SCALARS: Final[dict[Any, FieldKind]] = {
    float: FieldKind.DOUBLE,
    bool: FieldKind.BOOL,
    int: FieldKind.LONG,
    str: FieldKind.STRING,
    Decimal: FieldKind.DECIMAL,
    datetime: FieldKind.DATETIME,
    date: FieldKind.DATE,
}


def _is_struct(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, msgspec.Struct)


def _kind(hint: Any) -> tuple[FieldKind, type[msgspec.Struct] | None]:
    """The kind of a field's type hint, and its nested Struct if it has one.

    ``X | None`` is the kind of ``X``; a union of several value types is JSON text.
    """
    if typing.get_origin(hint) is typing.Annotated:
        hint, *extras = typing.get_args(hint)
        for extra in extras:
            if isinstance(extra, msgspec.Meta) and (extra.extra or {}).get("arrow_unit") == "ms":
                return FieldKind.TIME_MS, None
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    members = [m for m in (typing.get_args(hint) if union else (hint,)) if m is not type(None)]
    if len(members) != 1:
        return FieldKind.JSON, None
    (member,) = members
    scalar = _SCALARS.get(member)
    if scalar is not None:
        return scalar, None
    if _is_struct(member):
        return FieldKind.STRUCT, member
    if typing.get_origin(member) is list:
        (item,) = typing.get_args(member)
        if _is_struct(item):
            return FieldKind.STRUCT_LIST, item
    return FieldKind.JSON, None


@functools.cache
def struct_fields(cls: type[msgspec.Struct]) -> tuple[FieldSpec, ...]:
    """The fields of any msgspec Struct, in declaration order, each with its kind (cached).

    The one derivation of columns from Structs: :func:`spec` (market events) and the account
    tables (:mod:`tastyrec.storage.account_schema`) both stand on it.

    Raises:
        SchemaError: ``cls`` is not a msgspec Struct.
    """
    if not _is_struct(cls):
        raise SchemaError(f"{cls!r} is not a msgspec Struct")
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = []
    for f in msgspec.structs.fields(cls):
        kind, nested = _kind(hints[f.name])
        default = None if f.default is msgspec.NODEFAULT else f.default
        fields.append(FieldSpec(f.name, f.encode_name, kind, default, f.required, nested))
    return tuple(fields)


@functools.cache
def spec(cls: type[Event]) -> EventSpec:
    """The :class:`EventSpec` of an event class (cached)."""
    if not (isinstance(cls, type) and issubclass(cls, Event)):
        raise SchemaError(f"not an event type: {cls!r}")
    fields = struct_fields(cls)
    for f in fields:
        if f.kind not in WIRE_KINDS:
            hint = typing.get_type_hints(cls, include_extras=True)[f.name]
            raise SchemaError(f"unsupported field type {hint!r}")
    return EventSpec(cls.__name__, cls, fields)


#: Every DXLink event type tastyrec knows, by wire name.
EVENT_TYPES: Final[Mapping[str, type[Event]]] = types.MappingProxyType(
    {
        cls.__name__: cls
        for cls in (
            Quote,
            Trade,
            TradeETH,
            Greeks,
            Summary,
            Profile,
            Candle,
            TimeAndSale,
            TheoPrice,
            Underlying,
            Order,
            Series,
            OptionSale,
        )
    }
)


def event_class(name: str) -> type[Event]:
    """The event class of a DXLink event type name; :class:`SchemaError` if unknown."""
    try:
        return EVENT_TYPES[name]
    except KeyError:
        raise SchemaError(
            f"unknown event type {name!r}; known types: {', '.join(EVENT_TYPES)}"
        ) from None
