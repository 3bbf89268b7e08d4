"""Account-streamer frames as msgspec Structs, shared by the client and the simulator.

Client -> server: :class:`Request` (``action``, ``auth-token``, optional ``value``,
``request-id`` and ``source``; docs/account-streamer.md#actions). Server -> client, told apart by
their keys (docs/account-streamer.md#notifications): a status reply has ``action``
(:class:`StatusReply`), a notification has ``type`` (:class:`Notification`), a batch has ``results``
(a list of notifications). Keys are kebab-case; optional fields left at ``None`` are not sent
(``omit_defaults``).

:func:`decode_frame` maps every failure to :class:`~tastyrec.exceptions.RemoteProtocolError`, never
to a msgspec exception. Requests never show their token in a repr: use :func:`redact` to log a
frame (with :func:`tastyrec.transport.redact`, the one redactor). This module imports only
msgspec (and the redactor's own module).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from .._redact import redact as _redact
from ..exceptions import RemoteProtocolError

__all__ = (
    "ACTIONS",
    "Notification",
    "Request",
    "StatusReply",
    "decode_frame",
    "decode_request",
    "encode",
    "redact",
)

#: the actions a client may send (``account-subscribe`` is the old name of ``connect``)
ACTIONS: Final = frozenset(
    {
        "connect",
        "account-subscribe",
        "heartbeat",
        "public-watchlists-subscribe",
        "quote-alerts-subscribe",
        "user-message-subscribe",
    }
)


class Request(msgspec.Struct, rename="kebab", omit_defaults=True, kw_only=True, frozen=True):
    """A client action. ``auth_token`` is the REST ``Authorization`` value: ``Bearer <token>``."""

    action: str
    auth_token: str | None = None
    value: list[str] | str | None = None
    request_id: int | None = None
    source: str | None = None

    def __repr__(self) -> str:
        return (
            f"Request(action={self.action!r}, value={self.value!r}, "
            f"request_id={self.request_id!r}, auth_token=<redacted>)"
        )


class StatusReply(msgspec.Struct, rename="kebab", omit_defaults=True, kw_only=True, frozen=True):
    """The server's answer to one action: ``status`` is ``ok`` or ``error`` (with ``message``)."""

    status: str
    action: str
    web_socket_session_id: str | None = None
    value: Any = None
    request_id: int | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the action succeeded."""
        return self.status == "ok"


class Notification(msgspec.Struct, rename="kebab", omit_defaults=True, kw_only=True, frozen=True):
    """A pushed object ``{"type", "data", "timestamp"}`` (epoch ms); ``data`` is a full object."""

    type: str
    data: Any
    timestamp: int | None = None
    ws_sequence: int | None = None


class _Frame(msgspec.Struct, rename="kebab", kw_only=True):
    action: str | None = None
    type: str | None = None
    results: list[Any] | None = None


_frame_decoder: Final = msgspec.json.Decoder(_Frame)
_request_decoder: Final = msgspec.json.Decoder(Request)
_raw_decoder: Final = msgspec.json.Decoder(dict[str, Any])
_encoder: Final = msgspec.json.Encoder()


def decode_frame(raw: str | bytes) -> list[StatusReply | Notification]:
    """Decode one server frame into its messages (a batch gives several, in order).

    Raises:
        RemoteProtocolError: not a JSON object, none of ``action``/``type``/``results``, or a
            reply/notification with missing or mistyped keys.
    """
    try:
        frame = _frame_decoder.decode(raw)
        if frame.action is not None:
            return [msgspec.json.decode(raw, type=StatusReply)]
        if frame.type is not None:
            return [msgspec.json.decode(raw, type=Notification)]
        if frame.results is not None:
            return [msgspec.convert(item, Notification) for item in frame.results]
    except RecursionError:  # msgspec's answer to JSON nested ~1,000 deep (not a DecodeError)
        raise RemoteProtocolError(
            f"malformed frame: nested too deeply; frame {_clip(raw)!r}"
        ) from None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RemoteProtocolError(f"malformed frame: {exc}; frame {_clip(raw)!r}") from None
    raise RemoteProtocolError(f"frame with no action, type or results: {_clip(raw)!r}")


def decode_request(raw: str | bytes) -> Request:
    """Decode a client frame (the simulator's side).

    Raises:
        RemoteProtocolError: not a JSON object with a string ``action`` and well-typed keys.
    """
    try:
        return _request_decoder.decode(raw)
    except RecursionError:
        raise RemoteProtocolError("malformed request: nested too deeply") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RemoteProtocolError(f"malformed request: {exc}") from None


def encode(msg: Any) -> bytes:
    """Encode a message (Struct or JSON-able builtins) as UTF-8 JSON, sent as a text frame."""
    return _encoder.encode(msg)


def redact(raw: str | bytes) -> str:
    """A loggable rendering of a frame: the ``auth-token`` value replaced, long frames clipped."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return _clip(_redact(text))


def _clip(raw: str | bytes, limit: int = 300) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"
