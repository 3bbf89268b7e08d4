"""DXLink messages as msgspec Structs: a tagged union on ``"type"``, one shared decoder.

Both sides use these: the client protocol (:mod:`.protocol`) and the simulator
(:mod:`tastyrec.sim.engine`), so client and fake server cannot drift apart. Field names follow the
asyncapi specification (``keepaliveTimeout``, ``acceptEventFields``...) through ``rename="camel"``;
optional fields left at their default are not sent (``omit_defaults``). So the default of a field
is ``None`` (absent) wherever absent and default mean different things: a real value equal to a
non-``None`` default would silently vanish from the wire (a ``FEED_CONFIG`` without ``dataFormat``
makes the official JS client drop every COMPACT message,
docs/dxlink.md#the-data-format-is-always-stated).

Values inside messages are typed as deep as the protocol goes (``FEED_DATA`` holds type names,
lists of scalars or objects of scalars; channel parameters one level more), so a hostile frame
nesting arrays a thousand deep is refused at the first nested array instead of being built, and
any ``RecursionError`` from msgspec is a malformed message like any other.

:func:`decode` maps every failure to :class:`~tastyrec.exceptions.RemoteProtocolError` or
:class:`UnknownMessage`, never to a msgspec exception. :func:`redact` makes any message safe to log.
This module imports only msgspec.
"""

from __future__ import annotations

import typing
from typing import Any, Final

import msgspec

from ..exceptions import RemoteProtocolError

__all__ = (
    "AnyMessage",
    "Auth",
    "AuthState",
    "ChannelCancel",
    "ChannelClosed",
    "ChannelOpened",
    "ChannelRequest",
    "Error",
    "FeedConfig",
    "FeedData",
    "FeedSetup",
    "FeedSubscription",
    "JSONScalar",
    "Keepalive",
    "Message",
    "Setup",
    "Subscription",
    "UnknownMessage",
    "decode",
    "encode",
    "redact",
)


#: a JSON value with no structure inside (docs/dxlink.md#value-encoding: every event field is one of
#: these)
JSONScalar = str | int | float | bool | None
#: a CHANNEL_REQUEST/CHANNEL_OPENED parameter: a scalar, or one level more (DOM ``sources``)
_Parameter = JSONScalar | list[JSONScalar] | dict[str, JSONScalar]


class Message(
    msgspec.Struct,
    tag_field="type",
    rename="camel",
    omit_defaults=True,
    kw_only=True,
    frozen=True,
):
    """Base of every DXLink message: ``type`` (the tag) and ``channel`` (0 = connection).

    ``channel`` has no default on purpose: ``omit_defaults`` would drop a default 0 from the
    wire, and receivers drop frames without a numeric ``channel`` (docs/dxlink.md#transport).
    """

    channel: int


class Setup(Message, frozen=True, tag="SETUP"):
    """First message of each side (asyncapi SetupMessage)."""

    version: str
    keepalive_timeout: float | None = None
    accept_keepalive_timeout: float | None = None


class Auth(Message, frozen=True, tag="AUTH"):
    """Client's token (asyncapi AuthMessage). Its repr never shows the token."""

    token: str

    def __repr__(self) -> str:
        return f"Auth(channel={self.channel}, token=<redacted>)"


class AuthState(Message, frozen=True, tag="AUTH_STATE"):
    """Server's authorisation state: ``AUTHORIZED`` or ``UNAUTHORIZED``."""

    state: str
    user_id: str | None = None


class Keepalive(Message, frozen=True, tag="KEEPALIVE"):
    """Filler that keeps the connection alive (any message counts)."""


class Error(Message, frozen=True, tag="ERROR"):
    """An error report (informational; both directions)."""

    error: str
    message: str = ""


class ChannelRequest(Message, frozen=True, tag="CHANNEL_REQUEST"):
    """Client asks to open a channel for a service (``FEED``)."""

    service: str
    parameters: dict[str, _Parameter] = {}


class ChannelOpened(Message, frozen=True, tag="CHANNEL_OPENED"):
    """Server opened the channel; echoes the service and parameters."""

    service: str = ""
    parameters: dict[str, _Parameter] = {}


class ChannelCancel(Message, frozen=True, tag="CHANNEL_CANCEL"):
    """Client closes a channel."""


class ChannelClosed(Message, frozen=True, tag="CHANNEL_CLOSED"):
    """Server closed a channel (answer to CHANNEL_CANCEL, or unprompted)."""


class FeedSetup(Message, frozen=True, tag="FEED_SETUP"):
    """Client's wishes for a FEED channel; every field optional."""

    accept_aggregation_period: float | None = None
    accept_data_format: str | None = None
    accept_event_fields: dict[str, list[str]] | None = None


class FeedConfig(Message, frozen=True, tag="FEED_CONFIG"):
    """What the server actually applies; ``event_fields`` announces COMPACT field order.

    asyncapi FeedConfigMessage requires ``aggregationPeriod`` and ``dataFormat``, but its own
    example omits them, so they decode as ``None`` when absent ("unchanged"); any value given is
    always sent, ``"COMPACT"`` and ``0`` included.
    """

    aggregation_period: float | None = None
    data_format: str | None = None
    event_fields: dict[str, list[str]] | None = None


class Subscription(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True):
    """One FEED_SUBSCRIPTION entry: ``{"type", "symbol"[, "fromTime"][, "source"]}``."""

    type: str
    symbol: str
    from_time: int | None = None
    source: str | None = None


class FeedSubscription(Message, frozen=True, tag="FEED_SUBSCRIPTION"):
    """Client changes subscriptions: reset, then remove, then add. No acknowledgement."""

    add: list[Subscription] | None = None
    remove: list[Subscription] | None = None
    reset: bool | None = None


class FeedData(Message, frozen=True, tag="FEED_DATA"):
    """Events: COMPACT (``["Quote", [values...], ...]``) or FULL (a list of objects).

    Typed no deeper than the protocol nests: a value that is itself an array or object is a
    malformed message.
    """

    data: list[str | list[JSONScalar] | dict[str, JSONScalar]]


AnyMessage = (
    Setup
    | Auth
    | AuthState
    | Keepalive
    | Error
    | ChannelRequest
    | ChannelOpened
    | ChannelCancel
    | ChannelClosed
    | FeedSetup
    | FeedConfig
    | FeedSubscription
    | FeedData
)


class UnknownMessage(msgspec.Struct, frozen=True):
    """A well-formed message of a type we do not know (e.g. DOM service messages)."""

    type: str
    channel: int
    raw: dict[str, Any]


class _Envelope(msgspec.Struct):
    type: str
    channel: int


_decoder: Final = msgspec.json.Decoder(AnyMessage)
_envelope_decoder: Final = msgspec.json.Decoder(_Envelope)
_raw_decoder: Final = msgspec.json.Decoder(dict[str, Any])
_encoder: Final = msgspec.json.Encoder()
_KNOWN_TYPES: Final = frozenset(cls.__struct_config__.tag for cls in typing.get_args(AnyMessage))


def decode(raw: str | bytes) -> AnyMessage | UnknownMessage:
    """Decode one text frame.

    Returns:
        The message, or :class:`UnknownMessage` for a valid message of an unknown type.

    Raises:
        RemoteProtocolError: not JSON, no string ``type`` / integer ``channel``, a known type
            with missing or mistyped fields, or nesting too deep to decode.
    """
    # msgspec raises RecursionError (not a DecodeError) on a frame nested ~1,000 deep
    try:
        msg: AnyMessage = _decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        why = _why(exc)
        try:
            env = _envelope_decoder.decode(raw)
        except (msgspec.DecodeError, RecursionError):
            raise RemoteProtocolError(f"malformed message: {why}; frame {_clip(raw)!r}") from None
        if env.type in _KNOWN_TYPES:
            raise RemoteProtocolError(f"invalid {env.type} message: {why}") from None
        try:
            fields = _raw_decoder.decode(raw)
        except RecursionError:
            raise RemoteProtocolError(
                f"malformed {env.type!r} message: {_why(RecursionError())}"
            ) from None
        return UnknownMessage(env.type, env.channel, fields)
    return msg


def _why(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)


def encode(msg: msgspec.Struct) -> bytes:
    """Encode a message (or part of one) as JSON: UTF-8 bytes, sent as a text frame."""
    return _encoder.encode(msg)


def redact(msg: AnyMessage | UnknownMessage) -> str:
    """A loggable rendering of a message: tokens replaced, long data clipped."""
    if isinstance(msg, Auth):
        return repr(msg)
    if isinstance(msg, UnknownMessage):
        return f"UnknownMessage(type={msg.type!r}, channel={msg.channel})"
    return _clip(_encoder.encode(msg))


def _clip(raw: str | bytes, limit: int = 200) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"
