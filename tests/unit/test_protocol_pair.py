"""Client and server cores paired with no sockets (h11's habit): DXLinkProtocol <-> sim engine."""

from __future__ import annotations

import json
import math

from tastyrec import Candle, Greeks, Quote, Summary, TimeAndSale
from tastyrec.dxlink import protocol as p
from tastyrec.dxlink.compact import ColumnAccumulator, structs
from tastyrec.dxlink.messages import ChannelRequest
from tastyrec.events.registry import spec
from tastyrec.schema import arrow_schema
from tastyrec.sim.engine import ServerConnection, SimConfig
from tastyrec.sim.market import Market

T0 = 1_795_000_000.0  # epoch seconds


class Pair:
    """A client protocol wired to a server engine; time advances only when told."""

    def __init__(self, token: str | None = "tok", valid: str | None = "tok") -> None:
        self.now = T0
        self.client = p.DXLinkProtocol()
        self.server = ServerConnection(
            SimConfig(),
            Market(7),
            check_token=None if valid is None else (lambda t: t == valid),
            now=self.now,
        )
        self.client.connect(token)
        self.events: list[p.ProtocolEvent] = []
        self.pump()

    def pump(self) -> list[p.ProtocolEvent]:
        """Exchange messages until both sides are quiet; return the client's new events."""
        new: list[p.ProtocolEvent] = []
        for _ in range(100):
            moved = False
            for data in self.client.data_to_send():
                self.server.receive_text(data, self.now)
                moved = True
            for frame in self.server.data_to_send():
                self.client.receive_text(frame, int(self.now * 1e9))
                moved = True
            new.extend(self.client.events_received())
            if not moved:
                break
        self.events.extend(new)
        return new

    def advance(self, seconds: float, step: float = 0.1) -> list[p.ProtocolEvent]:
        new = []
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            self.server.tick(self.now)
            new.extend(self.pump())
        return new


def feed_events(events: list[p.ProtocolEvent], cls: type) -> list:
    out = []
    for e in events:
        if isinstance(e, p.FeedEvents) and e.event_type is cls:
            out.extend(structs(e.plan, e.values))
    return out


def test_handshake_authorizes_with_a_valid_token():
    pair = Pair()
    assert pair.client.state is p.ConnectionState.AUTHORIZED
    assert any(isinstance(e, p.Authorized) for e in pair.events)
    assert pair.client.server_keepalive_timeout == 60


def test_wrong_token_is_rejected_after_the_initial_unauthorized():
    pair = Pair(token="wrong")
    assert [type(e) for e in pair.events if not isinstance(e, p.ServerSetup)] == [p.AuthRejected]


def test_no_auth_server_needs_no_token():
    pair = Pair(token=None, valid=None)
    assert pair.client.state is p.ConnectionState.AUTHORIZED


def test_quotes_greeks_and_tape_flow_and_decode():
    pair = Pair()
    pair.client.subscribe(Quote, ["SPY", "SPX"])
    pair.client.subscribe(Greeks, [".SPY261218C600"])
    pair.client.subscribe(TimeAndSale, ["SPY"])
    pair.client.subscribe(Summary, ["SPY"])
    events = pair.pump() + pair.advance(2.0)
    quotes = feed_events(events, Quote)
    assert {q.event_symbol for q in quotes} == {"SPY", "SPX"}
    assert all(q.bid_price < q.ask_price for q in quotes)
    assert all(math.isnan(q.bid_size) for q in quotes if q.event_symbol == "SPX")
    greeks = feed_events(events, Greeks)
    assert greeks and all(0 <= g.delta <= 1 for g in greeks)
    assert feed_events(events, TimeAndSale)
    assert feed_events(events, Summary)
    # the announced fields drove the decoding
    assert all(
        e.plan.announced == e.plan.spec.wire_names for e in events if isinstance(e, p.FeedEvents)
    )


def test_columns_from_the_wire_match_the_structs():
    pair = Pair()
    pair.client.subscribe(Quote, ["SPY", "QQQ", "SPX"])
    events = pair.pump() + pair.advance(1.0)
    acc = ColumnAccumulator()
    expected = []
    for e in events:
        if isinstance(e, p.FeedEvents):
            acc.add(e.plan, e.values, e.recv_ns)
            expected.extend(structs(e.plan, e.values))
    (batch,) = acc.flush()
    assert batch.batch.schema == arrow_schema(Quote)
    rows = batch.batch.to_pydict()
    assert rows["event_symbol"] == [q.event_symbol for q in expected]
    assert rows["ask_price"] == [q.ask_price for q in expected]
    assert [t.timestamp() * 1000 for t in rows["bid_time"]] == [q.bid_time for q in expected]


def test_candle_history_snapshot_then_live_updates():
    pair = Pair()
    from_ms = int((T0 - 3600) * 1000)
    pair.client.subscribe(Candle, ["SPY{=5m}"], from_time=from_ms)
    events = pair.pump() + pair.advance(1.0)
    candles = feed_events(events, Candle)
    assert candles[0].snapshot_begin
    snapshot_end = next(i for i, c in enumerate(candles) if c.snapshot_end or c.snapshot_snip)
    history = candles[: snapshot_end + 1]
    assert len(history) >= 12  # an hour of 5-minute candles
    assert all(c.event_symbol == "SPY{=5m}" for c in candles)
    assert all(c.time >= from_ms - 5 * 60_000 for c in history)
    assert all(c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high for c in history)


def test_reconnect_restores_subscriptions_on_a_new_server_connection():
    pair = Pair()
    pair.client.subscribe(Quote, ["SPY"])
    pair.client.subscribe(Candle, ["SPY{=m}"], from_time=int((T0 - 600) * 1000))
    pair.pump()
    pair.client.close()
    # a fresh server connection, as after a reconnect
    pair.server = ServerConnection(
        SimConfig(), Market(7), check_token=lambda t: t == "tok", now=pair.now
    )
    pair.client.connect("tok")
    events = pair.pump() + pair.advance(1.0)
    assert feed_events(events, Quote)
    assert feed_events(events, Candle)[0].snapshot_begin


def _channel_requests(server: ServerConnection) -> dict[int, str]:
    """Channel id -> the contract of each CHANNEL_REQUEST the server got since the last call."""
    return {
        msg.channel: msg.parameters["contract"]
        for msg in server.messages_received()
        if isinstance(msg, ChannelRequest)
    }


def _history(events: list[p.ProtocolEvent]) -> list[Candle]:
    """The candles of the first snapshot in ``events``, SNAPSHOT_BEGIN to END/SNIP."""
    candles = feed_events(events, Candle)
    assert candles and candles[0].snapshot_begin, candles[:1]
    end = next(i for i, c in enumerate(candles) if c.snapshot_end or c.snapshot_snip)
    return candles[: end + 1]


def test_candles_go_on_a_history_channel_the_rest_on_auto_also_after_a_reconnect():
    """FIELD_REPORTS #3: Candle history needs contract HISTORY (on AUTO production sends one
    empty snapshot, and so does the engine); every other type stays on AUTO. A reconnect
    re-requests each type's channel with the same id and contract, and the history comes back."""
    pair = Pair()
    pair.client.subscribe(Quote, ["SPY"])
    pair.client.subscribe(Candle, ["SPY{=m}"], from_time=int((T0 - 1800) * 1000))
    pair.client.subscribe(Greeks, [".SPY261218C600"])
    pair.client.subscribe(TimeAndSale, ["SPY"])
    events = pair.pump() + pair.advance(1.0)
    expected = {1: "AUTO", 3: "HISTORY", 5: "AUTO", 7: "AUTO"}
    assert _channel_requests(pair.server) == expected
    assert {ch.id: (ch.event_type, ch.contract) for ch in pair.client.channels.values()} == {
        1: ("Quote", "AUTO"),
        3: ("Candle", "HISTORY"),
        5: ("Greeks", "AUTO"),
        7: ("TimeAndSale", "AUTO"),
    }
    assert (p.contract_for("Candle"), p.contract_for("Quote")) == ("HISTORY", "AUTO")
    history = _history(events)
    assert len(history) == 31  # half an hour of 1-minute bars and the live one: not empty
    assert not any(c.snapshot_marker for c in history)
    assert all(c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high for c in history)
    assert feed_events(events, Quote) and feed_events(events, Greeks)

    pair.client.close()
    pair.server = ServerConnection(
        SimConfig(), Market(7), check_token=lambda t: t == "tok", now=pair.now
    )
    pair.client.connect("tok")
    events = pair.pump() + pair.advance(1.0)
    assert _channel_requests(pair.server) == expected
    again = _history(events)
    assert [c.time for c in again] == [c.time for c in history]
    assert not any(c.snapshot_marker for c in again)
    assert feed_events(events, Quote) and feed_events(events, TimeAndSale)


def test_unsubscribe_stops_the_symbol():
    pair = Pair()
    pair.client.subscribe(Quote, ["SPY", "QQQ"])
    pair.pump()
    pair.advance(0.5)
    pair.client.unsubscribe(Quote, ["SPY"])
    pair.pump()
    events = pair.advance(1.0)
    assert {q.event_symbol for q in feed_events(events, Quote)} == {"QQQ"}


def _setup_from_another_client(pair: Pair, **setup: object) -> None:
    """A FEED_SETUP as another client library would send it, on the pair's open channel 1."""
    pair.server.receive_text(json.dumps({"type": "FEED_SETUP", "channel": 1, **setup}), pair.now)


def test_feed_setup_naming_no_format_gets_one_and_decodes():
    """FIELD_REPORTS #1: every FEED_SETUP field is optional; the FEED_CONFIG answering one with
    none still says COMPACT, and the data decodes."""
    pair = Pair()
    pair.client.subscribe(Quote, ["SPY"])
    pair.pump()
    for setup in ({}, {"acceptEventFields": {"Quote": ["eventSymbol", "bidPrice", "askPrice"]}}):
        _setup_from_another_client(pair, **setup)
        (frame,) = pair.server.data_to_send()
        assert json.loads(frame) == {
            "type": "FEED_CONFIG",
            "channel": 1,
            "aggregationPeriod": 0.1,
            "dataFormat": "COMPACT",
        }
        pair.client.receive_text(frame)
        configs = [e for e in pair.pump() if isinstance(e, p.FeedConfigured)]
        assert [(c.data_format, c.aggregation_period) for c in configs] == [("COMPACT", 0.1)]
    events = pair.advance(0.5)
    (config, *_) = [e for e in events if isinstance(e, p.FeedConfigured)]
    assert config.event_fields == {"Quote": ("eventSymbol", "bidPrice", "askPrice")}
    quotes = feed_events(events, Quote)
    assert quotes and all(q.event_symbol == "SPY" and q.bid_price < q.ask_price for q in quotes)
    assert all(math.isnan(q.bid_size) for q in quotes)  # not asked for: the Struct default


def test_event_type_slot_carries_the_type_name_and_decodes():
    """FIELD_REPORTS #2: with ``eventType`` among the fields, production (and now the simulator)
    puts the type name in that slot; the client skips it and decodes the rest."""
    pair = Pair()
    pair.client.subscribe(Quote, ["SPY", "QQQ"])
    pair.pump()
    fields = ["eventType", *spec(Quote).wire_names]
    _setup_from_another_client(
        pair, acceptDataFormat="COMPACT", acceptEventFields={"Quote": fields}
    )
    pair.pump()
    events = pair.advance(0.5)
    batches = [e for e in events if isinstance(e, p.FeedEvents)]
    assert batches
    for e in batches:
        assert e.plan.announced == tuple(fields) and e.plan.unknown == ("eventType",)
        assert e.values[:: e.plan.width] == ["Quote"] * e.count
    # the values are the market's: each quote is the market's quote at one of the tick times
    market, t, ticks = Market(7), T0, []
    for _ in range(10):
        ticks.append(int(t * 1000))
        t += 0.1  # as the engine steps its 10 Hz quote schedule
    quotes = feed_events(events, Quote)
    assert {q.event_symbol for q in quotes} == {"SPY", "QQQ"}

    def key(q: Quote) -> tuple:
        return (q.event_symbol, q.bid_time, q.ask_time, q.bid_price, q.ask_price, q.ask_size)

    for q in quotes:
        assert key(q) in {key(market.quote(q.event_symbol, t_ms)) for t_ms in ticks}, q
