"""AccountProtocol: the client side of the account streamer as a sans-I/O state machine.

No sockets, no clock, no anyio: frames go in through :meth:`AccountProtocol.receive_text`, protocol
events come out of :meth:`~AccountProtocol.events_received`, bytes to send come out of
:meth:`~AccountProtocol.data_to_send`. The I/O layer (:mod:`.streamer`) is a thin loop around it.

Theory of operation
-------------------
*Messages.* Every action carries ``auth-token``, exactly the REST ``Authorization`` value
(``Bearer <access token>``; docs/account-streamer.md#actions), a fresh ``request-id`` (1, 2, 3...
per protocol object) and ``source``. The token may be replaced at any time (:meth:`set_auth_token`):
access tokens live 15 minutes and each message must carry a valid one.

*Replies.* The server answers each action with one status message (no ``type``;
docs/account-streamer.md#status-replies). A reply is matched to its request by ``request-id`` and
comes out as :class:`Reply` (``ok`` or not, with the server's ``message``), so the I/O layer can
raise at the call that caused an error.

*Subscriptions.* :attr:`subscriptions` is the desired state (accounts, public watchlists, quote
alerts, user messages), kept across connections. Nothing is replayed by the server after a
reconnect (docs/account-streamer.md#notifications: nothing is replayed), so :meth:`connect` on a
fresh socket queues the actions that restore it: ``connect`` with every account first, then the
others; it returns their request ids. While no socket is open a subscribe call only changes the
desired state.

*Notifications.* ``{"type", "data", "timestamp"}`` frames (and ``{"results": [...]}`` batches)
become :class:`NotificationReceived` with the payload Struct of
:data:`~tastyrec.events.account.ACCOUNT_TYPES` or, for an unknown type,
:class:`~tastyrec.events.account.UnknownNotification`. A payload that does not fit its Struct
becomes :class:`Skipped` (counted by the caller), never an exception.

Errors: misuse raises :class:`~tastyrec.exceptions.LocalProtocolError`; an undecodable frame raises
:class:`~tastyrec.exceptions.RemoteProtocolError` from :meth:`receive_text` (the caller counts it
and goes on). Tokens never appear in a repr or an exception.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from .._version import __version__
from ..events.account import AccountEvent, UnknownNotification, decode_payload
from ..exceptions import LocalProtocolError, SchemaError
from . import messages as m

__all__ = (
    "SOURCE",
    "AccountProtocol",
    "ConnectionState",
    "NotificationReceived",
    "ProtocolEvent",
    "Reply",
    "Skipped",
    "Subscriptions",
    "authorization_value",
)

#: the ``source`` tag sent with every action
SOURCE: Final = f"tastyrec/{__version__}"


def authorization_value(token: str) -> str:
    """The REST ``Authorization`` value for an access token: ``Bearer <token>``.

    A value that already starts with ``Bearer `` is kept as it is.
    """
    return token if token.startswith("Bearer ") else f"Bearer {token}"


class ConnectionState(enum.Enum):
    """State of the protocol object's current socket."""

    IDLE = "idle"  # connect() not called yet
    OPEN = "open"  # a socket is open: actions are sent
    CLOSED = "closed"  # the socket is gone: subscribe calls only change the desired state


@dataclass
class Subscriptions:
    """What the client wants to receive; restored on every new socket."""

    accounts: list[str] = field(default_factory=list)
    public_watchlists: bool = False
    quote_alerts: bool = False
    user_message: str | None = None  #: the user's external-id, for ``user-message-subscribe``


# --- protocol events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """The server's status message for one action.

    Attributes:
        request_id: the request it answers (None: the server echoed no id we sent).
        action: the action echoed.
        ok: ``status == "ok"``.
        message: the server's text on errors (``"failed"`` for a rejected auth-token).
        session_id: the server's ``web-socket-session-id``.
        value: the echoed ``value`` (accounts, for ``connect``).
    """

    request_id: int | None
    action: str
    ok: bool
    message: str | None
    session_id: str | None
    value: Any = None


@dataclass(frozen=True, slots=True)
class NotificationReceived:
    """One notification: its wire ``type``, payload, server time (epoch ms) and receipt time."""

    type_name: str
    event: AccountEvent | UnknownNotification
    timestamp_ms: int | None
    recv_ns: int


@dataclass(frozen=True, slots=True)
class Skipped:
    """A notification dropped because its payload did not fit its Struct (counted by reason)."""

    reason: str
    detail: str


ProtocolEvent = Reply | NotificationReceived | Skipped


class AccountProtocol:
    """The account streamer's client protocol, without I/O.

    Example usage::

        proto = AccountProtocol()
        ids = proto.connect("Bearer eyJ...")       # on a fresh socket: restore subscriptions
        rid = proto.subscribe_accounts(["5WT00000"])
        for data in proto.data_to_send(): await ws.send(data)
        proto.receive_text(await ws.recv(), time.time_ns())
        for event in proto.events_received(): ...  # Reply, NotificationReceived, Skipped

    Args:
        source: the ``source`` tag sent with every action.
    """

    def __init__(self, *, source: str = SOURCE) -> None:
        self.source = source
        self.state = ConnectionState.IDLE
        self.subscriptions = Subscriptions()
        #: requests sent on this socket and not answered yet: request id -> action
        self.pending: dict[int, str] = {}
        #: the server's ``web-socket-session-id`` of this socket (from its first reply)
        self.session_id: str | None = None
        self._auth: str | None = None
        self._next_id = 0
        self._out: list[bytes] = []
        self._events: list[ProtocolEvent] = []

    def __repr__(self) -> str:
        return f"AccountProtocol(state={self.state.name}, session_id={self.session_id!r})"

    # --- connection ----------------------------------------------------------------------

    def connect(self, auth_token: str) -> list[int]:
        """Start on a fresh socket: queue the actions that restore :attr:`subscriptions`.

        Args:
            auth_token: the access token, or the whole ``Authorization`` value.

        Returns:
            The request ids of the restoring actions, in the order sent.
        """
        self._auth = authorization_value(auth_token)
        self.state = ConnectionState.OPEN
        self.pending.clear()
        self.session_id = None
        self._out.clear()
        ids: list[int] = []
        subs = self.subscriptions
        if subs.accounts:
            ids.append(self._send("connect", list(subs.accounts)))
        if subs.public_watchlists:
            ids.append(self._send("public-watchlists-subscribe"))
        if subs.quote_alerts:
            ids.append(self._send("quote-alerts-subscribe"))
        if subs.user_message is not None:
            ids.append(self._send("user-message-subscribe", subs.user_message))
        return ids

    def close(self) -> None:
        """The socket is gone: forget its pending requests and unsent data."""
        self.state = ConnectionState.CLOSED
        self.pending.clear()
        self._out.clear()

    def set_auth_token(self, auth_token: str) -> None:
        """Use a new access token (or ``Authorization`` value) from the next message on."""
        self._auth = authorization_value(auth_token)

    # --- actions -------------------------------------------------------------------------

    def subscribe_accounts(self, accounts: Iterable[str]) -> int | None:
        """Add accounts (``connect`` with every subscribed account).

        Returns:
            The request id, or None if no socket is open (sent on the next :meth:`connect`).
        """
        numbers = [accounts] if isinstance(accounts, str) else list(accounts)
        if not numbers:
            raise LocalProtocolError("subscribe_accounts needs at least one account number")
        for n in numbers:
            if not isinstance(n, str) or not n:
                raise LocalProtocolError(f"bad account number {n!r}")
            if n not in self.subscriptions.accounts:
                self.subscriptions.accounts.append(n)
        return self._send_if_open("connect", list(self.subscriptions.accounts))

    def subscribe_public_watchlists(self) -> int | None:
        """Subscribe to public watchlist changes (``PublicWatchlists``)."""
        self.subscriptions.public_watchlists = True
        return self._send_if_open("public-watchlists-subscribe")

    def subscribe_quote_alerts(self) -> int | None:
        """Subscribe to the user's quote alerts (``QuoteAlert``)."""
        self.subscriptions.quote_alerts = True
        return self._send_if_open("quote-alerts-subscribe")

    def subscribe_user_messages(self, external_id: str) -> int | None:
        """Subscribe to user messages (``value`` = the user's external-id; payload unconfirmed)."""
        self.subscriptions.user_message = external_id
        return self._send_if_open("user-message-subscribe", external_id)

    def heartbeat(self) -> int:
        """Queue a ``heartbeat`` (keeps the session alive; the server answers it)."""
        if self.state is not ConnectionState.OPEN:
            raise LocalProtocolError(f"cannot send a heartbeat in state {self.state.name}")
        return self._send("heartbeat")

    def _send_if_open(self, action: str, value: list[str] | str | None = None) -> int | None:
        return self._send(action, value) if self.state is ConnectionState.OPEN else None

    def _send(self, action: str, value: list[str] | str | None = None) -> int:
        if self._auth is None:
            raise LocalProtocolError("no auth-token: call connect() first")
        self._next_id += 1
        rid = self._next_id
        request = m.Request(
            action=action, auth_token=self._auth, value=value, request_id=rid, source=self.source
        )
        self._out.append(m.encode(request))
        self.pending[rid] = action
        return rid

    # --- I/O -----------------------------------------------------------------------------

    def receive_text(self, raw: str | bytes, recv_ns: int) -> None:
        """Process one frame from the server.

        Raises:
            RemoteProtocolError: the frame is not a reply, notification or batch.
        """
        for msg in m.decode_frame(raw):
            if isinstance(msg, m.StatusReply):
                self._on_reply(msg)
            else:
                self._on_notification(msg, recv_ns)

    def _on_reply(self, msg: m.StatusReply) -> None:
        if self.session_id is None and msg.web_socket_session_id:
            self.session_id = msg.web_socket_session_id
        rid = msg.request_id
        if rid is not None and self.pending.pop(rid, None) is None:
            rid = None  # not one of ours (or already answered)
        self._events.append(
            Reply(rid, msg.action, msg.ok, msg.message, msg.web_socket_session_id, msg.value)
        )

    def _on_notification(self, msg: m.Notification, recv_ns: int) -> None:
        try:
            event = decode_payload(msg.type, msg.data, msg.timestamp)
        except SchemaError as exc:
            self._events.append(Skipped(f"bad {msg.type}", str(exc)))
            return
        self._events.append(NotificationReceived(msg.type, event, msg.timestamp, recv_ns))

    def events_received(self) -> list[ProtocolEvent]:
        """Take the events produced by :meth:`receive_text` since the last call."""
        events, self._events = self._events, []
        return events

    @property
    def has_data_to_send(self) -> bool:
        """Whether :meth:`data_to_send` would return anything."""
        return bool(self._out)

    def data_to_send(self) -> list[bytes]:
        """Take the frames to send, in order (UTF-8 JSON, one text frame each)."""
        out, self._out = self._out, []
        return out
