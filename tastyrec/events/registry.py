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
)


class FieldKind(enum.Enum):
    """How a field travels on the wire (DXLINK.md §8) and how it is stored."""

    DOUBLE = "d"  # JSON number or "NaN"/"Infinity"/"-Infinity"; float64
    LONG = "i"  # JSON integer; int64
    TIME_MS = "t"  # JSON integer, epoch ms; timestamp[ms, UTC] in Arrow
    STRING = "s"  # JSON string or null
    BOOL = "b"  # JSON true/false


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of an event type."""

    name: str  #: attribute name (snake_case, the SDK's)
    wire_name: str  #: DXLink name (camelCase)
    kind: FieldKind
    default: Any  #: value used when the server omits the field or sends null


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


def _kind(hint: Any) -> FieldKind:
    extras: tuple[Any, ...] = ()
    if typing.get_origin(hint) is typing.Annotated:
        hint, *rest = typing.get_args(hint)
        extras = tuple(rest)
    for extra in extras:
        if isinstance(extra, msgspec.Meta) and (extra.extra or {}).get("arrow_unit") == "ms":
            return FieldKind.TIME_MS
    if hint is float:
        return FieldKind.DOUBLE
    if hint is bool:
        return FieldKind.BOOL
    if hint is int:
        return FieldKind.LONG
    if hint is str or (
        isinstance(hint, types.UnionType) and set(typing.get_args(hint)) == {str, type(None)}
    ):
        return FieldKind.STRING
    raise SchemaError(f"unsupported field type {hint!r}")


@functools.cache
def spec(cls: type[Event]) -> EventSpec:
    """The :class:`EventSpec` of an event class (cached)."""
    if not (isinstance(cls, type) and issubclass(cls, Event)):
        raise SchemaError(f"not an event type: {cls!r}")
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = []
    for f in msgspec.structs.fields(cls):
        default = None if f.default is msgspec.NODEFAULT else f.default
        fields.append(FieldSpec(f.name, f.encode_name, _kind(hints[f.name]), default))
    return EventSpec(cls.__name__, cls, tuple(fields))


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
