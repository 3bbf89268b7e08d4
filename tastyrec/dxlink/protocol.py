"""DXLinkProtocol: the client side of DXLink as a sans-I/O state machine.

No sockets, no clock, no anyio: text goes in through :meth:`DXLinkProtocol.receive_text`, protocol
events come out of :meth:`~DXLinkProtocol.events_received`, bytes to send come out of
:meth:`~DXLinkProtocol.data_to_send`. The I/O layer (:mod:`.streamer`) is a thin loop around it.

Theory of operation
-------------------
*Connection.* :meth:`connect` queues ``SETUP`` and, with a token, ``AUTH`` at once (as the dxFeed
JS client does). The server answers ``SETUP`` and then its *initial* ``AUTH_STATE``; the first
``AUTH_STATE`` after the server's ``SETUP`` is that initial state, so a first ``UNAUTHORIZED`` is
not a rejection (docs/dxlink.md#authorization). Any later ``UNAUTHORIZED`` is: :class:`AuthRejected`
before we were authorised, :class:`AuthExpired` after (token expiry); the I/O layer decides what to
do.

*Channels.* One FEED channel per event type, odd ids (1, 3, 5...) handed out in order of first use
and kept for the life of the object, so a reconnect re-requests each type on its own channel with
its own contract. The contract comes from one table, :data:`FEED_CONTRACTS` (:func:`contract_for`):
``HISTORY`` for Candle, ``AUTO`` for every other type. On an ``AUTO`` channel production answers a
Candle subscription with ``fromTime`` by an explicitly empty snapshot (one event, eventFlags
``SNAPSHOT_BEGIN|SNAPSHOT_END|REMOVE_EVENT``, NaN prices;
docs/dxlink.md#candle-history-needs-history); the same request on a ``HISTORY`` channel gets the
bars. Channels are requested only once ``AUTHORIZED`` (service messages before that are rejected by
the server).

*Subscriptions.* :attr:`subscriptions` is the desired state, kept across reconnects. When a channel
opens, the protocol sends ``FEED_SETUP`` (aggregation period, ``COMPACT``, ``acceptEventFields``
from the event Struct) and then every desired subscription; while it is open, changes are sent as
deltas. Every ``FEED_SUBSCRIPTION`` is chunked to at most :attr:`max_message_bytes` (8,192 by
default: the official JS client's ``maxSendSubscriptionChunkSize``,
docs/dxlink.md#large-subscriptions-close-with-1009) and
:attr:`max_entries`, so a large subscription never makes the server close with 1009.

*Reconnect.* Call :meth:`connect` again on a fresh socket: connection and channel states reset,
subscriptions (candles with their ``fromTime``) are restored as the channels reopen.

*Data.* ``FEED_CONFIG`` ``eventFields`` are merged per type; ``FEED_DATA`` is decoded by the fields
the server announced *when it announced them* (a :class:`~.compact.FieldPlan` travels with each
:class:`FeedEvents`), falling back to the fields we asked for. Each ``FEED_DATA`` is decoded by
its own shape (objects: FULL; type/values pairs: COMPACT), whatever ``FEED_CONFIG`` said:
production has switched a channel to FULL mid-session without a word
(docs/dxlink.md#the-format-can-change-mid-session), which is reported as :class:`FormatSwitched`.
Nothing is converted here: values stay the flat COMPACT list, so the recorder can batch them and
listeners can build Structs lazily.

Errors: misuse raises :class:`~tastyrec.exceptions.LocalProtocolError`; a malformed or unexpected
server message raises :class:`~tastyrec.exceptions.RemoteProtocolError` from :meth:`receive_text`
before any of its events are emitted (the caller counts it and goes on).

Size: over 600 lines because it is one cohesive thing, the sans-I/O DXLink client state machine
(connection, authorisation, channels, feed configuration, subscriptions and their chunking,
FEED_DATA decoding): every method reads or changes the same connection and channel state, and its
protocol events are the vocabulary the streamer consumes. The message codecs are :mod:`.messages`',
the COMPACT decoder :mod:`.compact`'s.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from .._version import __version__
from ..events.base import Event
from ..events.registry import EVENT_TYPES, spec
from ..exceptions import LocalProtocolError, RemoteProtocolError, SchemaError
from . import messages as m
from .compact import FieldPlan, full_to_compact, plan

__all__ = (
    "DEFAULT_CONTRACT",
    "DXLINK_VERSION",
    "FEED_CONTRACTS",
    "MAX_SUBSCRIPTION_BYTES",
    "AuthExpired",
    "AuthRejected",
    "Authorized",
    "Channel",
    "ChannelClosed",
    "ChannelOpened",
    "ChannelState",
    "ConnectionState",
    "DXLinkProtocol",
    "FeedConfigured",
    "FeedEvents",
    "FormatSwitched",
    "ProtocolEvent",
    "ServerErrorReceived",
    "ServerSetup",
    "Skipped",
    "SubscriptionKey",
    "contract_for",
)

#: SETUP version: protocol 0.1, implementation tastyrec.
DXLINK_VERSION: Final = f"0.1-tastyrec/{__version__}"
#: Largest FEED_SUBSCRIPTION sent by default: the official dxFeed JS client splits its
#: subscriptions at 8,192 characters (``maxSendSubscriptionChunkSize``,
#: docs/dxlink.md#large-subscriptions-close-with-1009).
MAX_SUBSCRIPTION_BYTES: Final = 8192
#: FEED contract of the channels of the event types not in :data:`FEED_CONTRACTS` (what the
#: tastytrade SDK and web platform use for everything).
DEFAULT_CONTRACT: Final = "AUTO"
#: The one place deciding a FEED channel's ``contract`` per event type. Candle history needs
#: ``HISTORY``: on ``AUTO`` production sends an empty snapshot instead
#: (docs/dxlink.md#candle-history-needs-history).
FEED_CONTRACTS: Final[Mapping[str, str]] = MappingProxyType({"Candle": "HISTORY"})


def contract_for(event_type: str) -> str:
    """The ``contract`` of the FEED channel that carries ``event_type`` (a wire name)."""
    return FEED_CONTRACTS.get(event_type, DEFAULT_CONTRACT)


class ConnectionState(enum.Enum):
    """Connection-level state (channel 0)."""

    IDLE = "idle"  # connect() not called yet
    SETUP = "setup"  # SETUP sent, waiting for the server's SETUP and initial AUTH_STATE
    UNAUTHORIZED = "unauthorized"  # server's initial state is UNAUTHORIZED; AUTH pending
    AUTHORIZED = "authorized"
    CLOSED = "closed"


class ChannelState(enum.Enum):
    """State of one FEED channel."""

    CLOSED = "closed"
    REQUESTED = "requested"
    OPENED = "opened"
    CANCELLING = "cancelling"


# (event type name, symbol, source) identifies a subscription
SubscriptionKey = tuple[str, str, str | None]


# --- protocol events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerSetup:
    """The server's SETUP: it expects a message from us at least every ``keepalive_timeout`` s."""

    version: str
    keepalive_timeout: float | None
    accept_keepalive_timeout: float | None


@dataclass(frozen=True, slots=True)
class Authorized:
    """AUTH_STATE AUTHORIZED."""

    user_id: str | None


@dataclass(frozen=True, slots=True)
class AuthRejected:
    """The token was rejected (UNAUTHORIZED in answer to AUTH, or no token where one is needed)."""

    reason: str


@dataclass(frozen=True, slots=True)
class AuthExpired:
    """UNAUTHORIZED after AUTHORIZED: the token expired or was revoked."""


@dataclass(frozen=True, slots=True)
class ChannelOpened:
    """A FEED channel opened; its subscriptions have been (re)sent."""

    channel: int
    event_type: str


@dataclass(frozen=True, slots=True)
class ChannelClosed:
    """A FEED channel closed (answer to our cancel, or by the server)."""

    channel: int
    event_type: str
    by_server: bool


@dataclass(frozen=True, slots=True)
class FeedConfigured:
    """FEED_CONFIG: what the server applies on a channel."""

    channel: int
    #: None when the server did not say (asyncapi's own FEED_CONFIG example omits it)
    aggregation_period: float | None
    #: the channel's data format after this FEED_CONFIG (unchanged if it did not say)
    data_format: str
    event_fields: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class FeedEvents:
    """Events of one type from one FEED_DATA, still as the flat COMPACT values list.

    Attributes:
        plan: how to read ``values`` (the fields announced when the data arrived).
        values: ``count * plan.width`` values, already checked to be a whole number of events.
        recv_ns: local receipt time passed to :meth:`DXLinkProtocol.receive_text`.
    """

    channel: int
    plan: FieldPlan
    values: list[Any]
    count: int
    recv_ns: int

    @property
    def event_type(self) -> type[Event]:
        """The event class of these events."""
        return self.plan.spec.cls


@dataclass(frozen=True, slots=True)
class FormatSwitched:
    """A FEED_DATA came in the other format than the channel's FEED_CONFIG said, with no new
    FEED_CONFIG: production has switched COMPACT -> FULL mid-session
    (docs/dxlink.md#the-format-can-change-mid-session). It was decoded by its own shape;
    ``data_format`` is now the channel's format."""

    channel: int
    data_format: str


@dataclass(frozen=True, slots=True)
class ServerErrorReceived:
    """A DXLink ERROR from the server (informational: the protocol does not stop)."""

    error: str
    message: str
    channel: int


@dataclass(frozen=True, slots=True)
class Skipped:
    """Something well-formed that we do not handle was skipped (counted by the caller)."""

    reason: str
    detail: str


ProtocolEvent = (
    ServerSetup
    | Authorized
    | AuthRejected
    | AuthExpired
    | ChannelOpened
    | ChannelClosed
    | FeedConfigured
    | FeedEvents
    | FormatSwitched
    | ServerErrorReceived
    | Skipped
)


@dataclass
class Channel:
    """One FEED channel: the event type it carries, its contract, and what the server announced
    for it."""

    id: int
    event_type: str
    aggregation_period: float
    #: the ``contract`` parameter of its CHANNEL_REQUEST (:func:`contract_for` its event type)
    contract: str = DEFAULT_CONTRACT
    state: ChannelState = ChannelState.CLOSED
    data_format: str = "COMPACT"
    event_fields: dict[str, tuple[str, ...]] = field(default_factory=dict)


class DXLinkProtocol:
    """Sans-I/O DXLink client.

    Example::

        proto = DXLinkProtocol()
        proto.connect(token)
        proto.subscribe(Quote, ["SPY"])
        for data in proto.data_to_send():
            await ws.send(data, text=True)
        proto.receive_text(await ws.recv(), recv_ns=time.time_ns())
        for event in proto.events_received():
            ...

    Args:
        keepalive_timeout: seconds we wait for any server message before calling it dead (sent in
            SETUP; the server sends something at least this often).
        accept_keepalive_timeout: the timeout we would like the server to use for us.
        max_message_bytes: largest FEED_SUBSCRIPTION we send, encoded (larger ones are split).
            The default is the size the official dxFeed JS client splits at (8,192 characters;
            counted here in UTF-8 bytes, which is never less). A single entry larger than this
            is sent alone.
        max_entries: most entries in one FEED_SUBSCRIPTION.
    """

    def __init__(
        self,
        *,
        keepalive_timeout: float = 60,
        accept_keepalive_timeout: float = 60,
        max_message_bytes: int = MAX_SUBSCRIPTION_BYTES,
        max_entries: int = 500,
    ) -> None:
        self.keepalive_timeout = keepalive_timeout
        self.accept_keepalive_timeout = accept_keepalive_timeout
        self.max_message_bytes = max_message_bytes
        self.max_entries = max_entries
        self.state = ConnectionState.IDLE
        #: the server's keepalive timeout once its SETUP arrived
        self.server_keepalive_timeout: float | None = None
        #: channels by id
        self.channels: dict[int, Channel] = {}
        #: desired subscriptions, by event type name, kept across reconnects
        self.subscriptions: dict[str, dict[SubscriptionKey, m.Subscription]] = {}
        self._by_type: dict[str, Channel] = {}
        self._token: str | None = None
        self._auth_states_seen = 0
        self._was_authorized = False
        self._outgoing: list[bytes] = []
        self._events: list[ProtocolEvent] = []

    # --- I/O interface ---------------------------------------------------------------------

    def data_to_send(self) -> list[bytes]:
        """Messages to send, in order, each as one text frame (UTF-8 JSON bytes)."""
        out, self._outgoing = self._outgoing, []
        return out

    @property
    def has_data_to_send(self) -> bool:
        """Whether :meth:`data_to_send` would return anything."""
        return bool(self._outgoing)

    def events_received(self) -> list[ProtocolEvent]:
        """Protocol events produced by :meth:`receive_text` since the last call."""
        out, self._events = self._events, []
        return out

    @property
    def keepalive_interval(self) -> float:
        """How often to send KEEPALIVE when idle: half the server's timeout (or ours)."""
        return (self.server_keepalive_timeout or self.accept_keepalive_timeout) / 2

    def connect(self, token: str | None = None) -> None:
        """Start (or restart, on a new socket) the connection: queue SETUP and AUTH.

        Subscriptions made before, or on a previous connection, are restored once the channels
        open. ``token=None`` suits servers that authorise without one (dxFeed's demo).
        """
        self._token = token
        self.state = ConnectionState.SETUP
        self.server_keepalive_timeout = None
        self._auth_states_seen = 0
        self._was_authorized = False
        self._outgoing = []
        self._events = []
        for channel in self.channels.values():
            channel.state = ChannelState.CLOSED
            channel.event_fields.clear()
        self._send(
            m.Setup(
                channel=0,
                version=DXLINK_VERSION,
                keepalive_timeout=self.keepalive_timeout,
                accept_keepalive_timeout=self.accept_keepalive_timeout,
            )
        )
        if token is not None:
            self._send(m.Auth(channel=0, token=token))

    def authenticate(self, token: str) -> None:
        """Send AUTH with a (new) token, e.g. after :class:`AuthExpired`."""
        self._require_connected()
        self._token = token
        self._send(m.Auth(channel=0, token=token))

    def send_keepalive(self) -> None:
        """Queue a KEEPALIVE (the I/O layer calls this when it has been idle)."""
        self._require_connected()
        self._send(m.Keepalive(channel=0))

    def close(self) -> None:
        """Mark the connection closed (the socket is gone); subscriptions are kept."""
        self.state = ConnectionState.CLOSED
        for channel in self.channels.values():
            channel.state = ChannelState.CLOSED

    # --- subscriptions ---------------------------------------------------------------------

    def subscribe(
        self,
        event_type: type[Event],
        symbols: Iterable[str],
        *,
        refresh_interval: float = 0.1,
        from_time: int | None = None,
        source: str | None = None,
    ) -> None:
        """Add subscriptions (sent now if the channel is open, else when it opens).

        Args:
            event_type: the event class, e.g. ``Quote``.
            symbols: symbols to add (a single string is one symbol).
            refresh_interval: aggregation period in seconds; fixed when the channel first opens.
            from_time: epoch **milliseconds**, for time-series events (candles); re-adding a
                symbol with a new ``from_time`` replaces it.
            source: order source for order-book events (e.g. ``"NTV"``).
        """
        name = self._event_name(event_type)
        entries = [
            m.Subscription(type=name, symbol=s, from_time=from_time, source=source)
            for s in _symbols(symbols)
        ]
        if not entries:
            return
        desired = self.subscriptions.setdefault(name, {})
        for entry in entries:
            desired[(name, entry.symbol, source)] = entry
        channel = self._channel_for(name, refresh_interval)
        if channel.state is ChannelState.OPENED:
            self._send_subscription(channel, add=entries)
        else:
            self._request_channel(channel)

    def unsubscribe(
        self, event_type: type[Event], symbols: Iterable[str], *, source: str | None = None
    ) -> None:
        """Remove subscriptions; unknown symbols are ignored."""
        name = self._event_name(event_type)
        desired = self.subscriptions.get(name, {})
        removed = [
            entry
            for s in _symbols(symbols)
            if (entry := desired.pop((name, s, source), None)) is not None
        ]
        channel = self._by_type.get(name)
        if removed and channel is not None and channel.state is ChannelState.OPENED:
            # asyncapi: fromTime is ignored on remove; tastytrade's server accepts it omitted
            self._send_subscription(
                channel,
                remove=[
                    m.Subscription(type=name, symbol=e.symbol, source=e.source) for e in removed
                ],
            )

    def unsubscribe_all(self, event_type: type[Event]) -> None:
        """Remove every subscription of one event type (a FEED_SUBSCRIPTION ``reset``)."""
        name = self._event_name(event_type)
        self.subscriptions.pop(name, None)
        channel = self._by_type.get(name)
        if channel is not None and channel.state is ChannelState.OPENED:
            self._send(m.FeedSubscription(channel=channel.id, reset=True))

    def subscribed(self, event_type: type[Event]) -> list[m.Subscription]:
        """The desired subscriptions of one event type."""
        return list(self.subscriptions.get(self._event_name(event_type), {}).values())

    # --- receiving -------------------------------------------------------------------------

    def receive_text(self, raw: str | bytes, recv_ns: int = 0) -> None:
        """Process one text frame from the server.

        Args:
            raw: the frame.
            recv_ns: local receipt time (epoch ns), attached to the events it carries.

        Raises:
            RemoteProtocolError: the frame is malformed or not allowed now; nothing of it was
                applied.
            LocalProtocolError: :meth:`connect` was not called.
        """
        self._require_connected()
        msg = m.decode(raw)
        if isinstance(msg, m.FeedData):
            self._on_feed_data(msg, recv_ns)
        elif isinstance(msg, m.Keepalive):
            pass
        elif isinstance(msg, m.FeedConfig):
            self._on_feed_config(msg)
        elif isinstance(msg, m.Setup):
            self.server_keepalive_timeout = msg.keepalive_timeout
            self._events.append(
                ServerSetup(msg.version, msg.keepalive_timeout, msg.accept_keepalive_timeout)
            )
        elif isinstance(msg, m.AuthState):
            self._on_auth_state(msg)
        elif isinstance(msg, m.ChannelOpened):
            self._on_channel_opened(msg)
        elif isinstance(msg, m.ChannelClosed):
            self._on_channel_closed(msg)
        elif isinstance(msg, m.Error):
            self._events.append(ServerErrorReceived(msg.error, msg.message, msg.channel))
        elif isinstance(msg, m.UnknownMessage):
            self._events.append(Skipped("unknown message type", msg.type))
        else:
            raise RemoteProtocolError(f"unexpected {m.redact(msg)} from the server")

    def _on_auth_state(self, msg: m.AuthState) -> None:
        self._auth_states_seen += 1
        initial = self._auth_states_seen == 1
        if msg.state == "AUTHORIZED":
            self.state = ConnectionState.AUTHORIZED
            self._was_authorized = True
            self._events.append(Authorized(msg.user_id))
            for channel in self.channels.values():
                if self.subscriptions.get(channel.event_type) or channel.state in (
                    ChannelState.REQUESTED,
                    ChannelState.OPENED,
                ):
                    channel.state = ChannelState.CLOSED
                    self._request_channel(channel)
        elif msg.state == "UNAUTHORIZED":
            if self._was_authorized:
                self.state = ConnectionState.UNAUTHORIZED
                self._was_authorized = False
                self._events.append(AuthExpired())
            elif initial:
                self.state = ConnectionState.UNAUTHORIZED
                if self._token is None:
                    self._events.append(
                        AuthRejected("the server requires a token and none was given")
                    )
            else:
                self._events.append(AuthRejected("the server rejected the token"))
        else:
            raise RemoteProtocolError(f"unknown AUTH_STATE state {msg.state!r}")

    def _on_channel_opened(self, msg: m.ChannelOpened) -> None:
        channel = self.channels.get(msg.channel)
        if channel is None:
            raise RemoteProtocolError(
                f"CHANNEL_OPENED for channel {msg.channel} we did not request"
            )
        if channel.state is ChannelState.OPENED:
            return  # a repeated confirmation: nothing to restore
        channel.state = ChannelState.OPENED
        channel.event_fields.clear()
        s = spec(EVENT_TYPES[channel.event_type])
        self._send(
            m.FeedSetup(
                channel=channel.id,
                accept_aggregation_period=channel.aggregation_period,
                accept_data_format="COMPACT",
                accept_event_fields={s.name: list(s.wire_names)},
            )
        )
        desired = list(self.subscriptions.get(channel.event_type, {}).values())
        if desired:
            self._send_subscription(channel, add=desired, reset=True)
        self._events.append(ChannelOpened(channel.id, channel.event_type))

    def _on_channel_closed(self, msg: m.ChannelClosed) -> None:
        channel = self.channels.get(msg.channel)
        if channel is None:
            raise RemoteProtocolError(f"CHANNEL_CLOSED for unknown channel {msg.channel}")
        by_server = channel.state is not ChannelState.CANCELLING
        channel.state = ChannelState.CLOSED
        self._events.append(ChannelClosed(channel.id, channel.event_type, by_server))
        if self.subscriptions.get(channel.event_type) and self.state is ConnectionState.AUTHORIZED:
            self._request_channel(channel)  # closed under our feet while we still want data

    def _on_feed_config(self, msg: m.FeedConfig) -> None:
        channel = self._open_channel(msg.channel, "FEED_CONFIG")
        if msg.data_format is not None:
            channel.data_format = msg.data_format
        if msg.event_fields:
            for name, names in msg.event_fields.items():
                channel.event_fields[name] = tuple(names)
        self._events.append(
            FeedConfigured(
                channel.id, msg.aggregation_period, channel.data_format, dict(channel.event_fields)
            )
        )

    def _on_feed_data(self, msg: m.FeedData, recv_ns: int) -> None:
        channel = self._open_channel(msg.channel, "FEED_DATA")
        data = msg.data
        out: list[ProtocolEvent] = []
        # each FEED_DATA is decoded by its own shape, whatever FEED_CONFIG said
        # (docs/dxlink.md#the-format-can-change-mid-session)
        shape = "FULL" if data and isinstance(data[0], dict) else "COMPACT"
        if data and shape != channel.data_format:
            out.append(FormatSwitched(channel.id, shape))
        if shape == "FULL":
            grouped, unknown = full_to_compact(data)
            for p, rows in grouped.values():
                out.append(FeedEvents(channel.id, p, rows, p.count(rows), recv_ns))
            out.extend(Skipped("unknown event type", name) for name in unknown)
        else:  # COMPACT: one or more "<Type>", [values...] pairs
            if len(data) % 2:
                raise RemoteProtocolError(
                    f"COMPACT data with {len(data)} items is not type/values pairs"
                )
            for i in range(0, len(data), 2):
                name, values = data[i], data[i + 1]
                if not isinstance(name, str) or not isinstance(values, list):
                    raise RemoteProtocolError(
                        f"COMPACT pair {i // 2} is not a type name and a list"
                    )
                cls = EVENT_TYPES.get(name)
                if cls is None:
                    out.append(Skipped("unknown event type", name))
                    continue
                p = self._plan(channel, cls)
                out.append(FeedEvents(channel.id, p, values, p.count(values), recv_ns))
        if data:  # only now: a malformed frame changes nothing
            channel.data_format = shape
        self._events.extend(out)

    @staticmethod
    def _plan(channel: Channel, cls: type[Event]) -> FieldPlan:
        announced = channel.event_fields.get(cls.__name__)
        try:
            return plan(cls, announced)
        except SchemaError as exc:
            raise RemoteProtocolError(
                f"cannot decode {cls.__name__} fields {announced!r}: {exc}"
            ) from None

    # --- helpers ---------------------------------------------------------------------------

    def _require_connected(self) -> None:
        if self.state in (ConnectionState.IDLE, ConnectionState.CLOSED):
            raise LocalProtocolError(
                f"not connected (state {self.state.value}); call connect() first"
            )

    def _open_channel(self, channel_id: int, what: str) -> Channel:
        channel = self.channels.get(channel_id)
        # REQUESTED: a re-request after AUTHORIZED races with data still in flight; fine
        if channel is None or channel.state not in (ChannelState.OPENED, ChannelState.REQUESTED):
            raise RemoteProtocolError(f"{what} for channel {channel_id}, which is not open")
        return channel

    @staticmethod
    def _event_name(event_type: type[Event]) -> str:
        name = getattr(event_type, "__name__", "")
        if not isinstance(name, str) or EVENT_TYPES.get(name) is not event_type:
            raise LocalProtocolError(f"not a DXLink event type: {event_type!r}")
        return name

    def _channel_for(self, name: str, refresh_interval: float) -> Channel:
        channel = self._by_type.get(name)
        if channel is None:
            if refresh_interval < 0:
                raise LocalProtocolError(f"refresh_interval must be >= 0, got {refresh_interval!r}")
            channel_id = 2 * len(self.channels) + 1  # asyncapi: clients use odd channel ids
            channel = Channel(channel_id, name, refresh_interval, contract_for(name))
            self.channels[channel_id] = channel
            self._by_type[name] = channel
        return channel

    def _request_channel(self, channel: Channel) -> None:
        if self.state is not ConnectionState.AUTHORIZED or channel.state is not ChannelState.CLOSED:
            return  # requested once authorised (service messages before AUTHORIZED are rejected)
        channel.state = ChannelState.REQUESTED
        self._send(
            m.ChannelRequest(
                channel=channel.id, service="FEED", parameters={"contract": channel.contract}
            )
        )

    def _send_subscription(
        self,
        channel: Channel,
        *,
        add: list[m.Subscription] | None = None,
        remove: list[m.Subscription] | None = None,
        reset: bool = False,
    ) -> None:
        """Send FEED_SUBSCRIPTION messages: reset (with the first), removals, additions, each
        message at most :attr:`max_message_bytes` encoded and :attr:`max_entries` entries."""
        pending_reset = reset
        for key, entries in (("remove", remove or []), ("add", add or [])):
            start = 0
            while start < len(entries):
                chunk = self._chunk(channel.id, key, entries, start, pending_reset)
                start += len(chunk)
                self._send(
                    m.FeedSubscription(
                        channel=channel.id, reset=pending_reset or None, **{key: chunk}
                    )
                )
                pending_reset = False
        if pending_reset:
            self._send(m.FeedSubscription(channel=channel.id, reset=True))

    def _chunk(
        self, channel_id: int, key: str, entries: list[m.Subscription], start: int, reset: bool
    ) -> list[m.Subscription]:
        """The longest run of ``entries`` from ``start`` that fits one message (at least one).

        Sizes are exact: the message without entries (``"add":[]``), plus each entry, plus the
        commas between them, is what :func:`~.messages.encode` produces.
        """
        empty = m.FeedSubscription(channel=channel_id, reset=reset or None, **{key: []})
        size = len(m.encode(empty))
        chunk: list[m.Subscription] = []
        for i in range(start, len(entries)):
            entry = entries[i]
            entry_size = len(m.encode(entry)) + (1 if chunk else 0)
            if chunk and (
                size + entry_size > self.max_message_bytes or len(chunk) >= self.max_entries
            ):
                break
            chunk.append(entry)
            size += entry_size
        return chunk

    def _send(self, msg: m.Message) -> None:
        self._outgoing.append(m.encode(msg))


def _symbols(symbols: Iterable[str]) -> list[str]:
    if isinstance(symbols, str):
        return [symbols]
    out = list(symbols)
    for s in out:
        if not isinstance(s, str) or not s:
            raise LocalProtocolError(f"symbols must be non-empty strings, got {s!r}")
    return out
