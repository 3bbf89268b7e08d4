"""The whole tastyrec error tree.

Every error tastyrec raises derives from :class:`TastyrecError`::

    TastyrecError
    +-- ProtocolError               abstract: the DXLink protocol was broken
    |   +-- LocalProtocolError      (also a ValueError) a bad argument, or a request illegal now
    |   +-- RemoteProtocolError     the server sent something malformed or unexpected
    +-- ConnectionClosed            the websocket closed; .code and .reason
    |   +-- ConnectionClosedOK
    |   +-- ConnectionClosedError
    +-- AuthenticationError         token rejected (AUTH_STATE UNAUTHORIZED): fatal, never retried
    |   +-- CredentialsError        (also an ApiError) OAuth refresh token/client secret rejected
    +-- ServerError                 a DXLink ERROR message; .error_type is the spec's error type
    +-- SchemaError                 Struct <-> wire/Arrow mismatch, unknown event type or field
    +-- StorageError                sink or journal failure
    |   +-- RecordingNotFound       (also a FileNotFoundError) no recording folder at that path
    |   +-- UnsupportedLocation     (also a ValueError) an object-storage URL, not a local folder
    +-- EndOfReplay                 a replay has handed out every event (get_event)
    +-- ApiError                    a tastytrade REST call failed; .status_code, .error_code
        +-- RateLimitError          429 Too Many Requests; .retry_after (seconds)
    +-- RequestError                the account streamer answered an action with status error

Argument errors, one rule: a caller's bad argument is a ``ValueError`` (``TypeError`` for a
value of the wrong type). Where tastyrec's own state or protocol is involved (the streamers,
replay, the simulator: a missing URL or token, a queue size below 1, listening to a class that
is never streamed, subscribing before a channel is open) it is a :class:`LocalProtocolError`,
which is also a ``ValueError``: ``except ValueError`` catches every bad argument wherever it is
raised, ``except TastyrecError`` everything tastyrec raises.

Messages never contain tokens: only the offending value, formatted with ``!r``.
This module imports nothing from the rest of tastyrec.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = (
    "ApiError",
    "AuthenticationError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "CredentialsError",
    "EndOfReplay",
    "LocalProtocolError",
    "ProtocolError",
    "RateLimitError",
    "RecordingNotFound",
    "RemoteProtocolError",
    "RequestError",
    "SchemaError",
    "ServerError",
    "StorageError",
    "TastyrecError",
    "UnsupportedLocation",
)


class TastyrecError(Exception):
    """Base class of every exception raised by tastyrec."""


class ProtocolError(TastyrecError):
    """The DXLink protocol was broken, by us or by the server."""


class LocalProtocolError(ProtocolError, ValueError):
    """We were asked for something the protocol does not allow in the current state, or given
    a bad argument (the module docstring's argument rule: also a ``ValueError``)."""


class RemoteProtocolError(ProtocolError):
    """The server sent a message that is malformed or not allowed in the current state."""


class ConnectionClosed(TastyrecError):
    """The websocket connection closed.

    Attributes:
        code: the websocket close code, or ``None`` when no close frame was received.
        reason: the close reason sent by the peer (may be empty); with no ``code``, tastyrec's
            own account of why there is no connection, which is then the whole message.

    ``message`` replaces the default text when more is known than code and reason (e.g. that
    we closed the connection because the server sent a message over our size limit).
    """

    def __init__(self, code: int | None, reason: str = "", *, message: str | None = None) -> None:
        self.code = code
        self.reason = reason
        if message is not None:
            super().__init__(message)
        elif code is None and reason:  # no close frame: our words, not the peer's
            super().__init__(reason)
        else:
            super().__init__(f"connection closed: code={code!r} reason={reason!r}")


class ConnectionClosedOK(ConnectionClosed):
    """The connection closed normally (1000 or 1001)."""


class ConnectionClosedError(ConnectionClosed):
    """The connection closed abnormally; a streamer reconnects after this."""


class AuthenticationError(TastyrecError):
    """The server rejected the token (``AUTH_STATE UNAUTHORIZED`` after ``AUTH``).

    It is fatal: reconnecting with the same token cannot succeed. Get a new quote token (it is
    valid for 24 hours) and start again.
    """


class ServerError(TastyrecError):
    """The server sent a DXLink ``ERROR`` message.

    Attributes:
        error_type: one of ``UNSUPPORTED_PROTOCOL``, ``TIMEOUT``, ``UNAUTHORIZED``,
            ``INVALID_MESSAGE``, ``BAD_ACTION``, ``UNKNOWN``.
        message: the server's text.
        channel: the channel it arrived on (0 for the connection).
    """

    def __init__(self, error_type: str, message: str, channel: int = 0) -> None:
        self.error_type = error_type
        self.message = message
        self.channel = channel
        super().__init__(f"server error {error_type} on channel {channel}: {message!r}")


class SchemaError(TastyrecError):
    """An event type or field does not match tastyrec's event schemas."""


class StorageError(TastyrecError):
    """Writing or reading a recording failed."""


class RecordingNotFound(StorageError, FileNotFoundError):
    """There is no recording folder where one was asked for (a missing path, or a file).

    Raised by every reader (``connect``, ``scan``, ``ReplayStreamer``, ``replay_frames``,
    ``compact``...) through one function, so ``except StorageError`` and ``except
    FileNotFoundError`` both catch it.

    Attributes:
        filename: the path given, as text.
    """

    def __init__(self, message: str, filename: str | None = None) -> None:
        super().__init__(message)
        self.filename = filename

    def __str__(self) -> str:  # OSError's would be "[Errno None] None: <filename>"
        return str(self.args[0]) if self.args else ""


class UnsupportedLocation(StorageError, ValueError):
    """A recording location tastyrec cannot use: an object-storage URL (``s3://...``).

    Such a URL is never taken for a local folder (which would write a folder named ``s3:``).
    """


class ApiError(TastyrecError):
    """A tastytrade REST call failed (after the retries transient failures get).

    The message says what to do; it never contains a secret.

    Attributes:
        status_code: the HTTP status, or ``None`` when no answer came (network error).
        error_code: tastytrade's error code (``error.code`` in the body), if any.
    """

    def __init__(self, message: str, status_code: int | None = None, error_code: str = "") -> None:
        self.status_code = status_code
        self.error_code = error_code
        super().__init__(message)


class CredentialsError(ApiError, AuthenticationError):
    """tastytrade rejected the OAuth client secret or refresh token: fatal, never retried.

    Refresh tokens are per environment (production or sandbox) and end when revoked.
    """


class RateLimitError(ApiError):
    """tastytrade answered 429 Too Many Requests too often or asked for too long a wait.

    Attributes:
        retry_after: the wait the server asked for, in seconds (``None`` if it did not say).
    """

    def __init__(
        self,
        message: str,
        status_code: int | None = 429,
        error_code: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, status_code, error_code)


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions inside (nested) exception groups, in order."""
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            yield from _leaves(sub)
    else:
        yield exc


def _unwrap_group(eg: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one meaningful exception of a task group's failure, for callers who expect it plain.

    A tastyrec error if there is one; else the only exception that is not a cancellation or an
    interrupt; else the group itself (several unrelated failures stay visible).
    """
    import asyncio  # here: only a failed task group calls this, and asyncio is loaded by then

    leaves = list(_leaves(eg))
    for exc in leaves:
        if isinstance(exc, TastyrecError):
            return exc
    real = [e for e in leaves if not isinstance(e, asyncio.CancelledError | KeyboardInterrupt)]
    return real[0] if len(real) == 1 else eg


class RequestError(TastyrecError):
    """The account streamer answered an action with ``status: error``.

    Raised at the call that sent the action (``subscribe_accounts``...). The server says
    ``"failed"`` when it rejects the ``auth-token`` (docs/account-streamer.md#status-replies).

    Attributes:
        action: the action refused (``connect``, ``quote-alerts-subscribe``...).
        message: the server's text.
        request_id: the request's id, if it had one.
    """

    def __init__(self, action: str, message: str, request_id: int | None = None) -> None:
        self.action = action
        self.message = message
        self.request_id = request_id
        hint = (
            "; the auth-token must be the REST Authorization value, 'Bearer <access token>', "
            "and access tokens expire after 15 minutes"
            if message == "failed"
            else ""
        )
        super().__init__(
            f"account streamer refused {action!r} (request {request_id!r}): {message!r}{hint}"
        )


class EndOfReplay(TastyrecError):
    """A replay has handed out every event of its recording (up to its ``end``).

    Raised by :meth:`tastyrec.ReplayStreamer.get_event`; ``listen()`` iterators just finish.
    """
