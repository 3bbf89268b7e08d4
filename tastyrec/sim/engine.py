"""Sans-I/O DXLink server logic: one :class:`ServerConnection` per websocket connection.

Role: everything the simulated tastytrade/dxFeed server decides (docs/dxlink.md): the SETUP /
AUTH handshake, channels, FEED_SETUP / FEED_CONFIG, subscriptions, FEED_DATA in COMPACT or FULL
with exact field order and ``"NaN"`` strings (the encoding is :mod:`._feed_data`'s),
aggregation, candle snapshots, keepalives and the client-silence timeout. It reuses
:mod:`tastyrec.dxlink.messages` for every control message, so client and fake server cannot
drift apart.

Size: over 600 lines because it is one state machine (connection, channels, subscriptions,
candle snapshots, flushing, deadlines) over one set of fields; the market, the option chains and
the wire encoding of FEED_DATA live in :mod:`.market`, :mod:`.options` and :mod:`._feed_data`.

It must not import websockets, anyio, asyncio, socket or ``time``: text goes in through
:meth:`ServerConnection.receive_text`, frames come out of :meth:`ServerConnection.data_to_send`,
and the caller passes ``now`` (epoch seconds) to every call, then calls :meth:`tick` no later than
:meth:`next_deadline`. A close the server wants is reported in :attr:`ServerConnection.close`.

Choices where the real server's behaviour is unconfirmed (marked *unconfirmed* in docs/dxlink.md):

* errors about a request go on the request's channel; an unparseable frame gets
  ``ERROR INVALID_MESSAGE`` on channel 0 and the connection stays open;
* an invalid token gets ``AUTH_STATE UNAUTHORIZED``; after ``max_auth_failures`` invalid AUTHs in a
  row the server sends ``ERROR UNAUTHORIZED`` and closes (1008) — the tastytrade SDK re-sends its
  token on every UNAUTHORIZED and would otherwise loop forever;
* AUTHORIZED is only ever sent in answer to an AUTH (or once after SETUP in no-auth mode);
* unknown event types in ``add`` get ``ERROR BAD_ACTION``; the known ones are still added. Types
  the market does not simulate (Order, Series, OptionSale) are accepted and stay silent;
* Candle history follows the channel's ``contract`` (docs/dxlink.md#candle-history-needs-history,
  where production contradicts the specification's "AUTO picks HISTORY for Candle"): on ``HISTORY``
  the snapshot from ``fromTime`` (without one: a one-candle snapshot of the live candle), served a
  part per tick, then live updates of the newest candle; on any other contract (``AUTO``;
  ``TICKER``/``STREAM`` and a request naming none are treated alike, unconfirmed) exactly one event,
  the explicitly empty snapshot (eventFlags 14 = SNAPSHOT_BEGIN|SNAPSHOT_END|REMOVE_EVENT, NaN
  prices and volumes), and nothing after it: the report saw one event and no more, so a client
  relying on ``AUTO`` for candles fails against the simulator as it would against production;
* a Candle symbol the simulator cannot build candles for (no period, ``SPY``, which dxFeed reads
  as tick candles; a tick, volume or price period, ``SPY{=t}``, ``SPY{=100v}``) is not added and
  gets ``ERROR BAD_ACTION`` on the channel naming it, instead of a subscription that never sends
  anything. With a feed (``tastyrec serve``) candles are whatever was recorded, on any contract
  (the recording's history included), and an unknown symbol is silent, as live;
* the client-silence timeout sends ``ERROR TIMEOUT`` and closes with 1000.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import msgspec

from ..dxlink.messages import (
    AnyMessage,
    Auth,
    AuthState,
    ChannelCancel,
    ChannelClosed,
    ChannelOpened,
    ChannelRequest,
    Error,
    FeedConfig,
    FeedSetup,
    FeedSubscription,
    Keepalive,
    Message,
    Setup,
    Subscription,
    UnknownMessage,
    decode,
    encode,
    redact,
)
from ..events.base import EMPTY_SNAPSHOT, Event
from ..events.candle_symbol import CandleSymbol, parse_candle_symbol
from ..events.market import Candle, TradeETH
from ..events.registry import EVENT_TYPES, EventSpec, spec
from ..exceptions import RemoteProtocolError
from ._feed_data import column_frames, event_frames
from .batch import OptionBatch
from .market import Market
from .options import BOOK_TYPES

__all__ = ("SERVER_VERSION", "ServerConnection", "SimConfig")

logger = logging.getLogger(__name__)

#: what the simulator reports as its ``version`` in SETUP (the real server's format)
SERVER_VERSION: Final = "1.0-1.2.1-tastyrec-sim"
CANDLE_TOO_BIG: Final = "Your subscription size for event type 'Candle' is too big"
#: the FEED contract on which Candle subscriptions get their history
#: (docs/dxlink.md#candle-history-needs-history)
HISTORY: Final = "HISTORY"
#: types sent as "latest value per symbol" (TICKER-like), conflated per aggregation period; the
#: others are streams, every event sent: Trade and TimeAndSale are STREAM
#: (docs/dxlink.md#aggregation-conflates-ticker-events-only)
CONFLATED: Final = frozenset({"Quote", "Greeks", "Summary", "Profile", "TheoPrice", "Underlying"})

#: the event types a market prices on demand, one method each (symbol, epoch ms -> event or None)
_PRICED: Final[dict[str, Callable[[Market, str, int], Event | None]]] = {
    "Quote": Market.quote,
    "Greeks": Market.greeks,
    "TheoPrice": Market.theo_price,
    "Underlying": Market.underlying,
    "Summary": Market.summary,
    "Profile": Market.profile,
}


class SimConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Simulator settings (all optional).

    Attributes:
        keepalive_timeout: seconds of client silence after which the server sends
            ``ERROR TIMEOUT`` and closes; announced as the server's ``keepaliveTimeout``.
        quote_rate_hz: Quote events per symbol per second (likewise the other ``*_rate_hz``).
        option_quote_rate_hz: Quote events per option symbol per second. An option chain is
            thousands of symbols: with the Greeks' and TheoPrice's 0.5 Hz, 20,000 options are
            44,000 events/s (production-like: every quote at least once a second).
        max_inbound_bytes: a larger client frame closes the connection with 1009.
        candle_cap: per-connection Candle subscription cap (``ERROR BAD_ACTION`` over it).
        candle_snapshot_limit: at most this many candles per snapshot (newest kept, SNIP flag).
        candle_snapshot_part: a snapshot is priced and queued this many candles per tick, so a
            long history never holds up other subscriptions or connections for long.
        max_frame_bytes: FEED_DATA frames are split to stay at or below this size.
        default_aggregation_s: aggregation period of a channel before any FEED_SETUP.
        max_auth_failures: invalid AUTHs in a row before ``ERROR UNAUTHORIZED`` and close.
        chaos: ``(kind, every_seconds)`` pairs, kind in
            drop|stall|malformed|error|expire|restart|full|502; each
            kind fires every ``every_seconds`` (first time after one period), see
            :class:`tastyrec.sim.Simulator`.
        chaos_stall_s: how long a chaos stall lasts; None means 2 x ``keepalive_timeout``.
    """

    keepalive_timeout: float = 60.0
    quote_rate_hz: float = 10.0
    option_quote_rate_hz: float = 1.0
    trade_rate_hz: float = 2.0
    greeks_rate_hz: float = 0.5
    theo_rate_hz: float = 0.5
    underlying_rate_hz: float = 1.0
    summary_rate_hz: float = 0.2
    profile_rate_hz: float = 0.05
    candle_rate_hz: float = 1.0
    time_and_sale_rate_hz: float = 4.0
    max_inbound_bytes: int = 128 * 1024
    candle_cap: int | None = None
    candle_snapshot_limit: int = 10_000
    candle_snapshot_part: int = 256
    max_frame_bytes: int = 60_000
    default_aggregation_s: float = 0.1
    max_auth_failures: int = 3
    chaos: tuple[tuple[str, float], ...] = ()
    chaos_stall_s: float | None = None

    def rate_hz(self, event_type: str) -> float:
        """Events per symbol per second for ``event_type`` (0 = never)."""
        return {
            "Quote": self.quote_rate_hz,
            "Trade": self.trade_rate_hz,
            "TradeETH": self.trade_rate_hz,
            "Greeks": self.greeks_rate_hz,
            "TheoPrice": self.theo_rate_hz,
            "Underlying": self.underlying_rate_hz,
            "Summary": self.summary_rate_hz,
            "Profile": self.profile_rate_hz,
            "Candle": self.candle_rate_hz,
            "TimeAndSale": self.time_and_sale_rate_hz,
        }.get(event_type, 0.0)

    def option_rate_hz(self, event_type: str) -> float:
        """Events per option symbol per second for ``event_type`` (0 = never)."""
        return self.option_quote_rate_hz if event_type == "Quote" else self.rate_hz(event_type)


class Feed(Protocol):
    """A source of events for a connection, instead of the synthetic market (sans-I/O)."""

    def subscribe(self, event_type: str, symbol: str, now: float) -> None:
        """Start giving events of ``event_type`` for ``symbol`` (as events name it)."""

    def unsubscribe(self, event_type: str, symbol: str) -> None:
        """Stop giving them."""

    def poll(self, now: float) -> list[tuple[int, Event]]:
        """The events due by ``now`` (epoch seconds), in order, each with its time (epoch ns;
        a recording's receipt time): conflation counts the aggregation period in these times."""

    def reached_ns(self) -> float:
        """After :meth:`poll`: every event timed at or before this (epoch ns) has been given."""

    def next_due(self) -> float | None:
        """When (epoch seconds) the next event is due; ``None``: none known."""


@dataclass
class _Sub:
    type: str
    symbol: str
    from_time: int | None
    next_due: float
    candle: CandleSymbol | None = None
    #: Candle: slot of the last candle sent; TimeAndSale/Trade: time (ms) of the last print sent
    last: int | None = None
    #: Candle: the rest of the history snapshot, queued a part per tick before live candles
    snapshot: Iterator[list[Candle]] | None = None
    #: Candle: whether live updates follow the snapshot (not after an empty one on AUTO)
    live: bool = True


@dataclass
class _Channel:
    id: int
    service: str
    parameters: dict[str, Any]
    aggregation_s: float
    data_format: str = "COMPACT"
    #: the CHANNEL_REQUEST's ``contract`` parameter (None: it named none)
    contract: str | None = None
    #: requested field names per type, echoed exactly as requested
    fields: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: fields last announced with eventFields, per type
    announced: dict[str, tuple[str, ...]] = field(default_factory=dict)
    subs: dict[tuple[str, str, str | None], _Sub] = field(default_factory=dict)
    #: conflated events waiting for the next flush: (type, symbol) -> event
    latest: dict[tuple[str, str], Event] = field(default_factory=dict)
    #: stream events waiting for the next flush, in order
    stream: list[Event] = field(default_factory=list)
    next_flush: float = 0.0
    #: with a feed: (type, symbol) -> feed time (ns) of the last conflated event sent
    sent_ns: dict[tuple[str, str], int] = field(default_factory=dict)
    #: with a feed: conflated events waiting for their period to pass, (type, symbol) -> event
    held: dict[tuple[str, str], Event] = field(default_factory=dict)
    #: with a feed: (due ns, sequence, key) of each held event, earliest first
    due: list[tuple[int, int, tuple[str, str]]] = field(default_factory=list)
    #: the synthetic market's option subscriptions, one batch per type (see :mod:`.batch`)
    batches: dict[str, OptionBatch] = field(default_factory=dict)


class ServerConnection:
    """The server side of one DXLink connection, with no I/O.

    Example::

        conn = ServerConnection(SimConfig(), Market(0), check_token=lambda t: t == "x", now=0.0)
        conn.receive_text('{"type":"SETUP","channel":0,"version":"0.1-js/1"}', now=0.0)
        for frame in conn.data_to_send():
            ...  # send each as a websocket text frame
        conn.tick(now=0.5)  # at the latest at conn.next_deadline()

    Args:
        config: simulator settings.
        market: the (shared) synthetic market.
        check_token: returns whether a token is valid; None = no-auth (demo) mode.
        now: connection start, epoch seconds.
        user_id: reported in ``AUTH_STATE AUTHORIZED``.
        feed: where events come from instead of ``market`` (e.g. a recording played back by
            :class:`tastyrec.replay.ReplayFeed`); subscriptions are passed on to it and its
            events are sent to the channels subscribed to them with the contract the synthetic
            market gets, in the feed's time: a :data:`CONFLATED` type at most once per symbol
            per aggregation period (the latest, held until the period since the last one sent
            has passed), every event of a stream type.
    """

    def __init__(
        self,
        config: SimConfig,
        market: Market,
        check_token: Callable[[str], bool] | None,
        now: float,
        user_id: str = "sim-user",
        feed: Feed | None = None,
    ) -> None:
        self.config = config
        self.market = market
        self.feed = feed
        self.check_token = check_token
        self.user_id = user_id
        self.setup_done = False
        self.authorized = False
        self.client_keepalive_s = 60.0
        self.channels: dict[int, _Channel] = {}
        #: (code, reason) once the server wants the connection closed
        self.close: tuple[int, str] | None = None
        #: decoded client messages not yet collected by :meth:`messages_received`
        self._received: list[AnyMessage | UnknownMessage] = []
        self._out: list[str] = []
        self._last_received = now
        self._last_sent = now
        self._now = now
        self._auth_failures = 0
        self._held_seq = 0

    # -- I/O boundary --------------------------------------------------------------------------

    def data_to_send(self) -> list[str]:
        """Frames to send (text), in order; empties the queue."""
        out, self._out = self._out, []
        return out

    def messages_received(self) -> list[AnyMessage | UnknownMessage]:
        """Client messages decoded since the last call (for test assertions)."""
        out, self._received = self._received, []
        return out

    def _send(self, msg: Message) -> None:
        self._out.append(encode(msg).decode())
        self._last_sent = self._now

    def _error(self, channel: int, error: str, message: str) -> None:
        logger.debug("> ERROR %s on channel %d: %s", error, channel, message)
        self._send(Error(channel=channel, error=error, message=message))

    # -- server-initiated actions ------------------------------------------------------------------

    def send_error(self, error: str, message: str, channel: int = 0) -> None:
        """Queue an ERROR (fault injection)."""
        self._error(channel, error, message)

    def switch_format(self) -> None:
        """Switch every channel COMPACT -> FULL (FULL -> COMPACT), announcing nothing: the
        following FEED_DATA simply come in the other format (fault injection,
        docs/dxlink.md#the-format-can-change-mid-session)."""
        for ch in self.channels.values():
            ch.data_format = "FULL" if ch.data_format == "COMPACT" else "COMPACT"
        logger.debug("= data format switched without FEED_CONFIG")

    def expire(self) -> None:
        """Withdraw authorisation: unsolicited ``AUTH_STATE UNAUTHORIZED``; data stops flowing."""
        if not self.setup_done:
            return
        self.authorized = False
        self._send(AuthState(channel=0, state="UNAUTHORIZED"))

    # -- inbound -------------------------------------------------------------------------------

    def receive_text(self, raw: str | bytes, now: float) -> None:
        """Handle one client frame."""
        self._last_received = self._now = now
        if self.close is not None:
            return
        try:
            msg = decode(raw)
        except RemoteProtocolError as exc:
            self._error(0, "INVALID_MESSAGE", str(exc))
            return
        self._received.append(msg)
        logger.debug("< %s", redact(msg))
        if isinstance(msg, Keepalive | Error):
            return  # inbound ERRORs are informational (the JS client sends TIMEOUT)
        if isinstance(msg, Setup):
            self._on_setup(msg)
            return
        if not self.setup_done:
            self._error(msg.channel, "BAD_ACTION", "SETUP step missing")
            return
        if isinstance(msg, Auth):
            self._on_auth(msg)
            return
        if isinstance(msg, UnknownMessage):
            self._error(msg.channel, "BAD_ACTION", f"Unknown message type {msg.type}")
            return
        if not self.authorized:
            self._error(msg.channel, "BAD_ACTION", "AUTH step missing")
            return
        if isinstance(msg, ChannelRequest):
            self._on_channel_request(msg, now)
        elif isinstance(msg, ChannelCancel):
            self._on_channel_cancel(msg)
        elif isinstance(msg, FeedSetup | FeedSubscription):
            ch = self.channels.get(msg.channel)
            if ch is None:
                self._error(msg.channel, "BAD_ACTION", f"Channel with id {msg.channel} not exists")
            elif isinstance(msg, FeedSetup):
                self._on_feed_setup(ch, msg)
            else:
                self._on_feed_subscription(ch, msg, now)
        else:
            self._error(msg.channel, "BAD_ACTION", f"Unexpected message {type(msg).__name__}")

    def _on_setup(self, msg: Setup) -> None:
        if msg.keepalive_timeout is not None and msg.keepalive_timeout > 0:
            self.client_keepalive_s = float(msg.keepalive_timeout)
        if self.setup_done:
            return
        self.setup_done = True
        t = self.config.keepalive_timeout
        self._send(
            Setup(
                channel=0,
                keepalive_timeout=t,
                accept_keepalive_timeout=t,
                version=SERVER_VERSION,
            )
        )
        if self.check_token is None:
            self.authorized = True
            self._send(AuthState(channel=0, state="AUTHORIZED", user_id=self.user_id))
        else:
            self._send(AuthState(channel=0, state="UNAUTHORIZED"))

    def _on_auth(self, msg: Auth) -> None:
        if self.check_token is None or self.check_token(msg.token):
            self._auth_failures = 0
            self.authorized = True
            logger.debug("= AUTHORIZED")
            self._send(AuthState(channel=0, state="AUTHORIZED", user_id=self.user_id))
            return
        self.authorized = False
        self._auth_failures += 1
        logger.debug("= token rejected (%d in a row)", self._auth_failures)
        self._send(AuthState(channel=0, state="UNAUTHORIZED"))
        if self._auth_failures >= self.config.max_auth_failures:
            self._error(0, "UNAUTHORIZED", "Too many failed authorization attempts")
            self.close = (1008, "unauthorized")

    def _on_channel_request(self, msg: ChannelRequest, now: float) -> None:
        # a repeated request (the JS client re-sends after every AUTHORIZED) re-opens cleanly
        contract = msg.parameters.get("contract")
        self.channels[msg.channel] = _Channel(
            msg.channel,
            msg.service,
            dict(msg.parameters),
            self.config.default_aggregation_s,
            contract=contract if isinstance(contract, str) else None,
            next_flush=now,
        )
        params = {**msg.parameters, "subFormat": "LIST"}
        self._send(ChannelOpened(channel=msg.channel, service=msg.service, parameters=params))

    def _on_channel_cancel(self, msg: ChannelCancel) -> None:
        if self.channels.pop(msg.channel, None) is None:
            self._error(msg.channel, "BAD_ACTION", f"Channel with id {msg.channel} not exists")
            return
        self._send(ChannelClosed(channel=msg.channel))

    def _on_feed_setup(self, ch: _Channel, msg: FeedSetup) -> None:
        if msg.accept_aggregation_period is not None and msg.accept_aggregation_period >= 0:
            ch.aggregation_s = float(msg.accept_aggregation_period)
        if msg.accept_data_format in ("COMPACT", "FULL"):
            ch.data_format = msg.accept_data_format
        for name, names in (msg.accept_event_fields or {}).items():
            if names:
                ch.fields[name] = tuple(names)  # merge per type: later setups replace a type
        self._send(
            FeedConfig(
                channel=ch.id, aggregation_period=ch.aggregation_s, data_format=ch.data_format
            )
        )

    def _on_feed_subscription(self, ch: _Channel, msg: FeedSubscription, now: float) -> None:
        if ch.service != "FEED":
            self._error(ch.id, "BAD_ACTION", f"Channel with id {ch.id} is not a FEED channel")
            return
        if msg.reset:
            for kind, symbol, source in list(ch.subs):
                self._remove(ch, Subscription(type=kind, symbol=symbol, source=source))
            ch.subs.clear()
            ch.latest.clear()
            ch.stream.clear()
            for batch in ch.batches.values():
                batch.clear()
        for s in msg.remove or ():
            self._remove(ch, s)
        unknown: list[str] = []
        unbuildable: list[str] = []
        too_big = False
        for s in msg.add or ():
            if s.type not in EVENT_TYPES:
                unknown.append(s.type)
            elif s.type == "Candle" and self.feed is None and not _buildable(s.symbol):
                unbuildable.append(s.symbol)
            elif not self._add(ch, s, now):
                too_big = True
        if unknown:
            self._error(ch.id, "BAD_ACTION", f"Unknown event type(s): {', '.join(unknown)}")
        if unbuildable:
            self._error(ch.id, "BAD_ACTION", _unbuildable_message(unbuildable))
        if too_big:
            self._error(ch.id, "BAD_ACTION", CANDLE_TOO_BIG)

    @staticmethod
    def _key(s: Subscription) -> tuple[str, str, str | None]:
        return (s.type, s.symbol, s.source)

    def _remove(self, ch: _Channel, s: Subscription) -> None:
        batch = ch.batches.get(s.type) if s.source is None else None
        if batch is not None and batch.remove(s.symbol):
            return
        sub = ch.subs.pop(self._key(s), None)
        if sub is None:
            return
        wire = sub.candle.normalized if sub.candle is not None else sub.symbol
        if self.feed is not None and not any(
            (sub.type, sub.symbol) == k[:2] for c in self.channels.values() for k in c.subs
        ):
            self.feed.unsubscribe(sub.type, wire)
        ch.latest.pop((sub.type, wire), None)
        ch.held.pop((sub.type, wire), None)  # its entry in ch.due is skipped when it comes up
        ch.sent_ns.pop((sub.type, wire), None)
        ch.stream = [
            e for e in ch.stream if not (type(e).__name__ == s.type and e.event_symbol == wire)
        ]

    def _candle_count(self) -> int:
        return sum(1 for c in self.channels.values() for k in c.subs if k[0] == "Candle")

    def _add(self, ch: _Channel, s: Subscription, now: float) -> bool:
        key = self._key(s)
        existing = ch.subs.get(key)
        if self.feed is not None:
            candle = parse_candle_symbol(s.symbol) if s.type == "Candle" else None
            if existing is None:
                ch.subs[key] = _Sub(s.type, s.symbol, s.from_time, math.inf, candle)
                self.feed.subscribe(s.type, candle.normalized if candle else s.symbol, now)
            return True
        if s.type == "Candle":
            cap = self.config.candle_cap
            if existing is None and cap is not None and self._candle_count() >= cap:
                return False
            if existing is not None:
                if existing.from_time == s.from_time:
                    return True
                self._remove(ch, s)  # a new fromTime replaces the subscription (new snapshot)
            sub = _Sub(s.type, s.symbol, s.from_time, now, parse_candle_symbol(s.symbol))
            ch.subs[key] = sub
            self._candle_snapshot(ch, sub, now)
            return True
        if existing is None and s.type in BOOK_TYPES and s.source is None:
            batch = ch.batches.get(s.type)
            if batch is not None and s.symbol in batch:
                return True
            rate = self.config.option_rate_hz(s.type)
            if rate > 0 and s.symbol.startswith("."):
                if batch is None:
                    batch = ch.batches[s.type] = OptionBatch(s.type, self.market, rate, now)
                if batch.add(s.symbol):
                    return True
        if existing is None:
            # TimeAndSale: prints from now on; the others send their current value at once
            last = int(now * 1000) if s.type == "TimeAndSale" else None
            ch.subs[key] = _Sub(s.type, s.symbol, s.from_time, now, last=last)
        return True

    # -- outbound data -------------------------------------------------------------------------

    def _candle_snapshot(self, ch: _Channel, sub: _Sub, now: float) -> None:
        """Start the history snapshot: a part per :meth:`tick` from the next one on (so a long
        history never holds up other channels or connections), then live candles. On a channel
        whose contract is not ``HISTORY``: the empty snapshot alone
        (docs/dxlink.md#candle-history-needs-history)."""
        cs = sub.candle
        if cs is None or not cs.supported:
            return  # refused before it got here (_buildable)
        if ch.contract != HISTORY:
            empty = Candle(event_symbol=cs.normalized, event_flags=EMPTY_SNAPSHOT)
            sub.snapshot = iter([[empty]])
            sub.live = False
            sub.next_due = now
            return
        now_ms = int(now * 1000)
        from_ms = sub.from_time if sub.from_time is not None else now_ms
        sub.snapshot = self.market.candle_snapshot_parts(
            cs, from_ms, now_ms, self.config.candle_snapshot_limit, self.config.candle_snapshot_part
        )
        sub.last = cs.slot(now_ms)
        sub.next_due = now

    def _snapshot_part(self, ch: _Channel, sub: _Sub, now: float) -> None:
        """Queue the next part of ``sub``'s snapshot; live candles are due once it is all sent."""
        assert sub.snapshot is not None
        part = next(sub.snapshot, None)
        if part is not None:
            ch.stream.extend(part)
            sub.next_due = now  # the next part at the next tick
            return
        sub.snapshot = None
        rate = self.config.rate_hz("Candle")
        sub.next_due = now + (1.0 / rate if rate > 0 and sub.live else math.inf)

    def _generate(self, ch: _Channel, sub: _Sub, t: float) -> None:
        """Queue the events of one subscription due at time ``t`` (seconds)."""
        m = self.market
        t_ms = int(t * 1000)
        kind = sub.type
        if kind == "Candle":
            cs = sub.candle
            if cs is None or not cs.supported:
                return
            slot = cs.slot(t_ms)
            if sub.last is not None and slot > sub.last:
                ch.stream.append(
                    m.candle(cs, sub.last, t_ms)
                )  # the final version of the closed one
            sub.last = slot
            ch.stream.append(m.candle(cs, slot, t_ms))
            return
        if kind == "TimeAndSale":
            after = sub.last if sub.last is not None else t_ms - 1000
            ch.stream.extend(m.time_and_sales(sub.symbol, after, t_ms))
            sub.last = t_ms
            return
        event: Event | None
        if kind in ("Trade", "TradeETH"):
            trade = m.trade(sub.symbol, t_ms)
            if trade is None or (sub.last is not None and trade.time <= sub.last):
                return  # no new print since the last Trade sent
            sub.last = trade.time
            event = trade
            if kind == "TradeETH":
                event = TradeETH(*msgspec.structs.astuple(trade))
        elif kind in _PRICED:
            event = _PRICED[kind](m, sub.symbol, t_ms)
        else:
            return
        if event is None:
            return
        if kind in CONFLATED:
            ch.latest[(kind, event.event_symbol)] = event
        else:
            ch.stream.append(event)

    def tick(self, now: float) -> None:
        """Advance to ``now``: generate due events, flush channels, keepalive, timeout."""
        self._now = now
        if self.close is not None:
            return
        silent = now - self._last_received
        if silent >= self.config.keepalive_timeout:
            self._error(
                0,
                "TIMEOUT",
                "The timeout has been reached. The message was last received "
                f"{int(silent)} seconds ago.",
            )
            self.close = (1000, "keepalive timeout")
            return
        if self.authorized:
            if self.feed is not None:
                self._route(self.feed.poll(now), self.feed.reached_ns())
            for ch in self.channels.values():
                self._tick_channel(ch, now)
        if not self._out and now - self._last_sent >= self.client_keepalive_s / 2:
            self._send(Keepalive(channel=0))

    def _route(self, events: list[tuple[int, Event]], reached_ns: float) -> None:
        """Queue events from the feed on every channel subscribed to them, conflated in the
        feed's time (see ``feed`` in the class docstring)."""
        if events:
            routes: dict[tuple[str, str], list[_Channel]] = {}
            for ch in self.channels.values():
                for sub in ch.subs.values():
                    wire = sub.candle.normalized if sub.candle is not None else sub.symbol
                    routes.setdefault((sub.type, wire), []).append(ch)
            for t, event in events:
                key = (type(event).__name__, event.event_symbol)
                for ch in routes.get(key, ()):
                    self._release(ch, t)
                    period_ns = round(ch.aggregation_s * 1e9)
                    if key[0] not in CONFLATED or period_ns <= 0:
                        ch.stream.append(event)
                    elif key in ch.held:
                        ch.held[key] = event  # the latest goes when the period has passed
                    elif t >= ch.sent_ns.get(key, t - period_ns) + period_ns:
                        ch.stream.append(event)
                        ch.sent_ns[key] = t
                    else:
                        ch.held[key] = event
                        self._held_seq += 1
                        heapq.heappush(ch.due, (ch.sent_ns[key] + period_ns, self._held_seq, key))
        for ch in self.channels.values():
            self._release(ch, reached_ns)

    @staticmethod
    def _release(ch: _Channel, until_ns: float) -> None:
        """Send the held events whose period has passed by ``until_ns``, earliest first."""
        while ch.due and ch.due[0][0] <= until_ns:
            due, _, key = heapq.heappop(ch.due)
            event = ch.held.pop(key, None)
            if event is not None:  # None: unsubscribed meanwhile
                ch.stream.append(event)
                ch.sent_ns[key] = due

    def _tick_channel(self, ch: _Channel, now: float) -> None:
        for sub in ch.subs.values():
            if sub.snapshot is not None:
                self._snapshot_part(ch, sub, now)
                continue
            rate = self.config.rate_hz(sub.type)
            if rate <= 0:
                continue
            period = 1.0 / rate
            if now - sub.next_due > 2.0 + period:  # after a stall: no burst of stale events
                sub.next_due = now
            while sub.next_due <= now:
                self._generate(ch, sub, sub.next_due)
                sub.next_due += period
        for batch in ch.batches.values():
            batch.tick(now)
        if now >= ch.next_flush or self.feed is not None:  # a feed's events are conflated already
            self._flush(ch)
            ch.next_flush = max(ch.next_flush + ch.aggregation_s, now) if ch.aggregation_s else now

    def _fields(self, ch: _Channel, name: str, s: EventSpec) -> tuple[str, ...]:
        return ch.fields.get(name) or s.wire_names

    def _flush(self, ch: _Channel) -> None:
        by_type: dict[str, list[Event]] = {}
        for e in ch.stream:
            by_type.setdefault(type(e).__name__, []).append(e)
        for (name, _), e in ch.latest.items():
            by_type.setdefault(name, []).append(e)
        ch.stream = []
        ch.latest = {}
        for name, events in by_type.items():
            self._emit(ch, name, events)
        for name, batch in ch.batches.items():
            if batch.pending:
                self._emit_columns(ch, name, batch.take())

    def _announce(self, ch: _Channel, name: str, s: EventSpec) -> tuple[str, ...]:
        """The fields ``name`` is sent with on ``ch``, announced first if they changed."""
        fields = self._fields(ch, name, s)
        if ch.announced.get(name) != fields:
            ch.announced[name] = fields
            self._send(
                FeedConfig(
                    channel=ch.id,
                    aggregation_period=ch.aggregation_s,
                    data_format=ch.data_format,
                    event_fields={name: list(fields)},
                )
            )
        return fields

    def _emit(self, ch: _Channel, name: str, events: list[Event]) -> None:
        fields = self._announce(ch, name, spec(EVENT_TYPES[name]))
        limit = self.config.max_frame_bytes
        self._out += event_frames(ch.id, ch.data_format, name, fields, events, limit)
        self._last_sent = self._now

    def _emit_columns(
        self, ch: _Channel, name: str, groups: Iterable[dict[str, list[Any] | Any]]
    ) -> None:
        """Send events given as columns (an :class:`~.batch.OptionBatch`'s), encoded in bulk."""
        fields = self._announce(ch, name, spec(EVENT_TYPES[name]))
        limit = self.config.max_frame_bytes
        self._out += column_frames(ch.id, ch.data_format, name, fields, groups, limit)
        self._last_sent = self._now

    # -- scheduling ----------------------------------------------------------------------------

    def next_deadline(self) -> float:
        """The latest time (epoch s) at which :meth:`tick` must be called next."""
        deadline = min(
            self._last_received + self.config.keepalive_timeout,
            self._last_sent + self.client_keepalive_s / 2,
        )
        if self.authorized:
            for ch in self.channels.values():
                if ch.stream or ch.latest:
                    deadline = min(deadline, ch.next_flush)
                for sub in ch.subs.values():
                    deadline = min(deadline, sub.next_due)
                for batch in ch.batches.values():
                    deadline = min(deadline, batch.next_deadline())
                    if batch.pending:
                        deadline = min(deadline, ch.next_flush)
            if self.feed is not None:
                due = self.feed.next_due()
                if due is not None:
                    deadline = min(deadline, due)
        return deadline


def _buildable(symbol: str) -> bool:
    """Whether the simulator builds candles for this Candle symbol (a time period)."""
    cs = parse_candle_symbol(symbol)
    return cs is not None and cs.supported


def _unbuildable_message(symbols: list[str]) -> str:
    return (
        f"Candle symbol(s) {', '.join(map(repr, symbols))} not supported: the simulator builds "
        "candles of a time period only (s, m, h, d, w, mo, y), such as 'SPY{=5m}'; no period "
        "means tick candles"
    )

