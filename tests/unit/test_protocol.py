"""DXLinkProtocol: text in -> events out, no sockets, no clock."""

from __future__ import annotations

import json
import math
import sys

import pytest

from tastyrec import Candle, Greeks, Quote, Trade
from tastyrec.dxlink import messages as m, protocol as p
from tastyrec.dxlink.compact import structs
from tastyrec.events.registry import spec
from tastyrec.exceptions import LocalProtocolError, RemoteProtocolError

QUOTE_FIELDS = list(spec(Quote).wire_names)


def sent(proto: p.DXLinkProtocol) -> list[dict]:
    return [json.loads(b) for b in proto.data_to_send()]


def feed(proto: p.DXLinkProtocol, *messages: dict, recv_ns: int = 0) -> list[p.ProtocolEvent]:
    for msg in messages:
        proto.receive_text(json.dumps(msg), recv_ns)
    return proto.events_received()


SERVER_SETUP = {
    "type": "SETUP",
    "channel": 0,
    "keepaliveTimeout": 60,
    "acceptKeepaliveTimeout": 60,
    "version": "1.0-1.2.1-20240722-153442",
}


def authorized(token: str | None = "tok") -> p.DXLinkProtocol:
    proto = p.DXLinkProtocol()
    proto.connect(token)
    sent(proto)
    feed(
        proto,
        SERVER_SETUP,
        {"type": "AUTH_STATE", "channel": 0, "state": "UNAUTHORIZED"},
        {"type": "AUTH_STATE", "channel": 0, "state": "AUTHORIZED", "userId": "u1"},
    )
    return proto


def open_channel(proto: p.DXLinkProtocol, channel: int, fields: dict | None = None) -> list[dict]:
    feed(
        proto,
        {
            "type": "CHANNEL_OPENED",
            "channel": channel,
            "service": "FEED",
            "parameters": {"contract": "AUTO", "subFormat": "LIST"},
        },
    )
    out = sent(proto)
    if fields is not None:
        feed(
            proto,
            {
                "type": "FEED_CONFIG",
                "channel": channel,
                "dataFormat": "COMPACT",
                "aggregationPeriod": 0.1,
                "eventFields": fields,
            },
        )
    return out


def test_connect_sends_setup_then_auth_and_token_is_not_in_repr():
    proto = p.DXLinkProtocol(keepalive_timeout=30)
    proto.connect("secret-token")
    setup, auth = sent(proto)
    assert setup["type"] == "SETUP" and setup["channel"] == 0
    assert setup["version"].startswith("0.1-") and setup["keepaliveTimeout"] == 30
    assert auth == {"type": "AUTH", "channel": 0, "token": "secret-token"}
    assert "secret-token" not in repr(m.Auth(channel=0, token="secret-token"))
    assert "secret-token" not in m.redact(m.decode(json.dumps(auth)))


def test_first_unauthorized_is_not_a_rejection():
    proto = p.DXLinkProtocol()
    proto.connect("tok")
    events = feed(
        proto, SERVER_SETUP, {"type": "AUTH_STATE", "channel": 0, "state": "UNAUTHORIZED"}
    )
    assert [type(e) for e in events] == [p.ServerSetup]
    assert proto.state is p.ConnectionState.UNAUTHORIZED
    assert proto.keepalive_interval == 30
    events = feed(proto, {"type": "AUTH_STATE", "channel": 0, "state": "AUTHORIZED", "userId": "u"})
    assert events == [p.Authorized("u")]


def test_second_unauthorized_is_a_rejection():
    proto = p.DXLinkProtocol()
    proto.connect("bad")
    events = feed(
        proto,
        SERVER_SETUP,
        {"type": "AUTH_STATE", "channel": 0, "state": "UNAUTHORIZED"},
        {"type": "AUTH_STATE", "channel": 0, "state": "UNAUTHORIZED"},
    )
    assert isinstance(events[-1], p.AuthRejected)


def test_no_token_on_a_server_that_needs_one_is_a_rejection():
    proto = p.DXLinkProtocol()
    proto.connect(None)
    assert [x["type"] for x in sent(proto)] == ["SETUP"]
    events = feed(
        proto, SERVER_SETUP, {"type": "AUTH_STATE", "channel": 0, "state": "UNAUTHORIZED"}
    )
    assert isinstance(events[-1], p.AuthRejected)


def test_unauthorized_after_authorized_is_expiry_and_reauth_reopens_channels():
    proto = authorized()
    proto.subscribe(Quote, ["SPY"])
    assert sent(proto)[0]["type"] == "CHANNEL_REQUEST"
    open_channel(proto, 1)
    events = feed(proto, {"type": "AUTH_STATE", "channel": 0, "state": "UNAUTHORIZED"})
    assert events == [p.AuthExpired()]
    proto.authenticate("new-token")
    assert sent(proto) == [{"type": "AUTH", "channel": 0, "token": "new-token"}]
    feed(proto, {"type": "AUTH_STATE", "channel": 0, "state": "AUTHORIZED"})
    assert [x["type"] for x in sent(proto)] == ["CHANNEL_REQUEST"]


def test_no_channel_request_before_authorized():
    proto = p.DXLinkProtocol()
    proto.connect("tok")
    sent(proto)
    proto.subscribe(Quote, ["SPY"])
    assert sent(proto) == []
    feed(
        proto,
        SERVER_SETUP,
        {"type": "AUTH_STATE", "channel": 0, "state": "UNAUTHORIZED"},
        {"type": "AUTH_STATE", "channel": 0, "state": "AUTHORIZED"},
    )
    (request,) = sent(proto)
    assert request == {
        "type": "CHANNEL_REQUEST",
        "channel": 1,
        "service": "FEED",
        "parameters": {"contract": "AUTO"},
    }


def test_channel_open_sends_feed_setup_and_subscriptions_with_odd_ids():
    proto = authorized()
    proto.subscribe(Quote, ["SPY", "SPX"], refresh_interval=0.5)
    proto.subscribe(Greeks, [".SPY261218C600"])
    assert [x["channel"] for x in sent(proto)] == [1, 3]
    setup, sub = open_channel(proto, 1)
    assert setup == {
        "type": "FEED_SETUP",
        "channel": 1,
        "acceptAggregationPeriod": 0.5,
        "acceptDataFormat": "COMPACT",
        "acceptEventFields": {"Quote": QUOTE_FIELDS},
    }
    assert sub["reset"] is True
    assert sub["add"] == [{"type": "Quote", "symbol": "SPY"}, {"type": "Quote", "symbol": "SPX"}]
    # while open, changes go out as deltas
    proto.subscribe(Quote, "QQQ")
    proto.unsubscribe(Quote, ["SPY", "NOT-SUBSCRIBED"])
    assert sent(proto) == [
        {"type": "FEED_SUBSCRIPTION", "channel": 1, "add": [{"type": "Quote", "symbol": "QQQ"}]},
        {"type": "FEED_SUBSCRIPTION", "channel": 1, "remove": [{"type": "Quote", "symbol": "SPY"}]},
    ]
    proto.unsubscribe_all(Quote)
    assert sent(proto) == [{"type": "FEED_SUBSCRIPTION", "channel": 1, "reset": True}]
    assert proto.subscribed(Quote) == []


def test_candle_subscription_carries_from_time_in_ms():
    proto = authorized()
    proto.subscribe(Candle, ["SPY{=5m}"], from_time=1721660400000)
    sent(proto)
    _, sub = open_channel(proto, 1)
    assert sub["add"] == [{"type": "Candle", "symbol": "SPY{=5m}", "fromTime": 1721660400000}]


def test_large_subscriptions_are_chunked():
    proto = authorized()
    assert proto.max_message_bytes == p.MAX_SUBSCRIPTION_BYTES == 8192  # FIELD_REPORTS #7
    proto.max_entries = 500
    symbols = [f".SPY261218C{strike}" for strike in range(1200)]
    proto.subscribe(Quote, symbols)
    sent(proto)
    proto.receive_text(json.dumps({"type": "CHANNEL_OPENED", "channel": 1, "service": "FEED"}))
    raw = proto.data_to_send()[1:]
    messages = [json.loads(x) for x in raw]
    assert len(messages) >= 3
    assert all(len(x) <= 8192 for x in raw)
    assert all(len(x["add"]) <= 500 for x in messages)
    assert [e["symbol"] for x in messages for e in x["add"]] == symbols
    assert messages[0]["reset"] is True and all("reset" not in x for x in messages[1:])
    # every chunk is as full as it may be: the next chunk's first entry would not have fitted
    for chunk, following in zip(raw, messages[1:], strict=False):
        first = json.dumps(following["add"][0], separators=(",", ":"))
        assert len(chunk) + 1 + len(first) > 8192


def _subscription_sizes(symbols: list[str], limit: int, reset: bool) -> list[int]:
    """Encoded sizes of the FEED_SUBSCRIPTIONs adding ``symbols``: all of them restored with
    ``reset`` when the channel opens, or added as a delta to a channel already open."""
    proto = authorized()
    proto.max_message_bytes = limit
    if reset:
        proto.subscribe(Quote, symbols)
        sent(proto)
        proto.receive_text(json.dumps({"type": "CHANNEL_OPENED", "channel": 1, "service": "FEED"}))
        raw = proto.data_to_send()[1:]  # after FEED_SETUP
    else:
        proto.subscribe(Quote, ["OTHER"])
        sent(proto)
        open_channel(proto, 1)
        proto.subscribe(Quote, symbols)
        raw = proto.data_to_send()
    messages = [json.loads(x) for x in raw]
    assert [e["symbol"] for x in messages for e in x["add"]] == symbols
    assert [x.get("reset", False) for x in messages] == [reset] + [False] * (len(raw) - 1)
    return [len(x) for x in raw]


@pytest.mark.parametrize("reset", [True, False], ids=["reset+add", "add"])
def test_subscription_chunk_boundary_is_exact(reset):
    """A message exactly at the limit is sent whole; at one byte less it splits in two, the
    first as full as the limit allows."""
    symbols = [f"SYM{i:03d}" for i in range(40)]
    entry = len('{"type":"Quote","symbol":"SYM000"}')
    (whole,) = _subscription_sizes(symbols, 100_000, reset)
    assert _subscription_sizes(symbols, whole, reset) == [whole]
    first, second = _subscription_sizes(symbols, whole - 1, reset)
    assert first <= whole - 1 < first + 1 + entry
    # exact accounting: the second message repeats the envelope and drops one comma
    envelope = len('{"type":"FEED_SUBSCRIPTION","channel":1,"add":[]}')
    assert first + second == whole + envelope - 1
    # a limit below a single entry still sends every entry, one per message
    sizes = _subscription_sizes(symbols[:3], 10, reset)
    assert len(sizes) == 3 and min(sizes) > 10


def test_reconnect_restores_channels_and_subscriptions():
    proto = authorized()
    proto.subscribe(Quote, ["SPY"])
    proto.subscribe(Candle, ["SPY{=m}"], from_time=1000)
    sent(proto)
    open_channel(proto, 1)
    open_channel(proto, 3)
    proto.close()
    proto.connect("tok")
    assert [x["type"] for x in sent(proto)] == ["SETUP", "AUTH"]
    feed(
        proto,
        SERVER_SETUP,
        {"type": "AUTH_STATE", "channel": 0, "state": "UNAUTHORIZED"},
        {"type": "AUTH_STATE", "channel": 0, "state": "AUTHORIZED"},
    )
    assert [(x["type"], x["channel"]) for x in sent(proto)] == [
        ("CHANNEL_REQUEST", 1),
        ("CHANNEL_REQUEST", 3),
    ]
    _, candle_sub = open_channel(proto, 3)
    assert candle_sub["add"] == [{"type": "Candle", "symbol": "SPY{=m}", "fromTime": 1000}]


def test_compact_data_decoded_by_announced_fields():
    proto = authorized()
    proto.subscribe(Quote, ["SPY", "SPX"])
    sent(proto)
    open_channel(proto, 1, {"Quote": QUOTE_FIELDS})
    values = [
        "SPY", 0, 0, 0, 1721664000000, "Q", 1721664000125, "P", 559.35, 559.36, 300.0, 1200.0,
        "SPX", 0, 0, 0, 1721663999000, "\u0000", 1721663999000, "\u0000",
        5560.1, 5561.45, "NaN", "NaN",
    ]  # fmt: skip
    (ev,) = feed(proto, {"type": "FEED_DATA", "channel": 1, "data": ["Quote", values]}, recv_ns=7)
    assert isinstance(ev, p.FeedEvents)
    assert ev.event_type is Quote and ev.count == 2 and ev.recv_ns == 7
    spy, spx = structs(ev.plan, ev.values)
    assert (spy.bid_price, spy.ask_size, spy.bid_exchange_code) == (559.35, 1200.0, "Q")
    assert spx.ask_exchange_code == "\u0000" and math.isnan(spx.bid_size)


def test_announced_fields_change_the_decoding_and_fall_back_to_requested():
    proto = authorized()
    proto.subscribe(Trade, ["SPY"])
    sent(proto)
    open_channel(proto, 1)  # FEED_CONFIG without eventFields yet
    (ev,) = feed(
        proto,
        {"type": "FEED_DATA", "channel": 1, "data": ["Trade", ["SPY"] + [0] * 13]},
    )
    assert ev.plan.announced == spec(Trade).wire_names
    feed(
        proto,
        {
            "type": "FEED_CONFIG",
            "channel": 1,
            "dataFormat": "COMPACT",
            "aggregationPeriod": 0.1,
            "eventFields": {"Trade": ["eventType", "eventSymbol", "price", "dayVolume", "size"]},
        },
    )
    data = [
        "Trade",
        ["Trade", "SPY", 559.36, 1.3743299e7, 100.0, "Trade", "BTC/USD", 1.5, "NaN", "NaN"],
    ]
    (ev,) = feed(proto, {"type": "FEED_DATA", "channel": 1, "data": data})
    spy, btc = structs(ev.plan, ev.values)
    assert (spy.price, spy.day_volume, spy.size) == (559.36, 13743299.0, 100.0)
    assert btc.event_symbol == "BTC/USD" and math.isnan(btc.size)


def test_several_pairs_full_format_and_unknown_types():
    proto = authorized()
    proto.subscribe(Quote, ["SPY"])
    sent(proto)
    open_channel(proto, 1)
    events = feed(
        proto,
        {
            "type": "FEED_DATA",
            "channel": 1,
            "data": ["Quote", ["A"] + [0] * 11, "Mystery", [1, 2], "Quote", ["B"] + [0] * 11],
        },
    )
    assert [type(e).__name__ for e in events] == ["FeedEvents", "Skipped", "FeedEvents"]
    full = [
        {"eventType": "Quote", "eventSymbol": "SPY", "bidPrice": 1.5, "askPrice": "NaN"},
        {"eventType": "Mystery", "eventSymbol": "X"},
    ]
    events = feed(proto, {"type": "FEED_DATA", "channel": 1, "data": full})
    # FULL on a channel announced COMPACT: decoded, and the switch reported (FIELD_REPORTS #5)
    assert events[0] == p.FormatSwitched(1, "FULL")
    events = events[1:]
    assert isinstance(events[0], p.FeedEvents) and isinstance(events[1], p.Skipped)
    (quote,) = structs(events[0].plan, events[0].values)
    assert (
        quote.bid_price == 1.5 and math.isnan(quote.ask_price) and quote.bid_exchange_code is None
    )


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        '{"type": "FEED_DATA", "channel": 1, "data": ["Quote", [1, 2, 3]]}',
        '{"type": "FEED_DATA", "channel": 9, "data": ["Quote", []]}',
        '{"type": "FEED_DATA", "channel": 1, "data": ["Quote"]}',
        '{"type": "SETUP", "channel": 0}',
        '{"type": "AUTH_STATE", "channel": 0, "state": "MAYBE"}',
    ],
)
def test_malformed_server_messages_are_remote_errors(message):
    proto = authorized()
    proto.subscribe(Quote, ["SPY"])
    sent(proto)
    open_channel(proto, 1)
    with pytest.raises(RemoteProtocolError):
        proto.receive_text(message)
    assert proto.events_received() == []


def nested(depth: int, kind: str) -> str:
    """A JSON value nested ``depth`` arrays (``[[[1]]]``) or objects (``{"a":{"a":1}}``) deep."""
    if kind == "arrays":
        return "[" * depth + "1" + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


#: where a hostile server can nest: event values (COMPACT, FULL), the data list itself, channel
#: parameters, and messages of a type we do not know
DEEP_FRAMES = {
    "compact-value": '{{"type":"FEED_DATA","channel":1,"data":["Quote",[{}]]}}',
    "compact-symbol": (
        '{{"type":"FEED_DATA","channel":1,"data":["Quote",[{},0,0,0,0,"Q",0,"Q",1,2,3,4]]}}'
    ),
    "full-value": (
        '{{"type":"FEED_DATA","channel":1,"data":[{{"eventType":"Quote","eventSymbol":"SPY",'
        '"bidPrice":{}}}]}}'
    ),
    "data-item": '{{"type":"FEED_DATA","channel":1,"data":[{}]}}',
    "parameters": (
        '{{"type":"CHANNEL_OPENED","channel":1,"service":"FEED","parameters":{{"contract":{}}}}}'
    ),
    "unknown-type": '{{"type":"DOM_SNAPSHOT","channel":1,"bids":{}}}',
}


def deep_frame(where: str, depth: int, kind: str) -> str:
    return DEEP_FRAMES[where].format(nested(depth, kind))


@pytest.mark.parametrize("kind", ["arrays", "objects"])
@pytest.mark.parametrize("where", sorted(DEEP_FRAMES))
@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_frames_are_remote_errors(depth, where, kind):
    """A ~2 KB frame nesting 1,000 deep made msgspec raise RecursionError, which escaped the
    recorder's receive loop: it is a malformed message like any other."""
    depth = max(depth, sys.getrecursionlimit())  # deep enough whatever the process's limit
    frame = deep_frame(where, depth, kind)
    assert len(frame) >= 2 * depth
    with pytest.raises(RemoteProtocolError, match="nested too deeply|invalid|malformed"):
        m.decode(frame)
    proto = authorized()
    proto.subscribe(Quote, ["SPY"])
    sent(proto)
    open_channel(proto, 1)
    with pytest.raises(RemoteProtocolError):
        proto.receive_text(frame)
    assert proto.events_received() == []
    # and the protocol goes on
    (ev,) = feed(proto, {"type": "FEED_DATA", "channel": 1, "data": ["Quote", ["SPY"] + [0] * 11]})
    assert isinstance(ev, p.FeedEvents) and ev.count == 1


def _at_stack_depth(frames: int, fn, *args):
    return fn(*args) if frames == 0 else _at_stack_depth(frames - 1, fn, *args)


@pytest.mark.parametrize("kind", ["arrays", "objects"])
@pytest.mark.parametrize("where", sorted(DEEP_FRAMES))
def test_nesting_never_escapes_as_recursion_error_at_any_depth(where, kind):
    """Whatever the nesting and however deep the caller's stack (the streamer calls from inside
    anyio tasks), a frame is decoded and converted, or refused with RemoteProtocolError."""
    for stack in (0, 150, 400):
        for depth in (2, 3, 50, 500, 700, 900, 990):
            proto = authorized()
            proto.subscribe(Quote, ["SPY"])
            sent(proto)
            open_channel(proto, 1)
            frame = deep_frame(where, depth, kind)
            try:
                _at_stack_depth(stack, proto.receive_text, frame)
            except RemoteProtocolError:
                continue
            for ev in proto.events_received():
                if isinstance(ev, p.FeedEvents):
                    with pytest.raises(RemoteProtocolError):
                        _at_stack_depth(stack, structs, ev.plan, ev.values)
                else:
                    assert isinstance(ev, p.Skipped | p.ChannelOpened), ev


def test_feed_config_states_format_and_period_even_at_their_usual_values():
    """FIELD_REPORTS #1: ``dataFormat`` and ``aggregationPeriod`` are always encoded (they were
    dropped when equal to the field default); absent ones decode as "unchanged"."""
    raw = m.encode(m.FeedConfig(channel=1, aggregation_period=0.0, data_format="COMPACT"))
    assert json.loads(raw) == {
        "type": "FEED_CONFIG",
        "channel": 1,
        "aggregationPeriod": 0.0,
        "dataFormat": "COMPACT",
    }
    proto = authorized()
    proto.subscribe(Quote, ["SPY"])
    sent(proto)
    open_channel(proto, 1)
    full = {"type": "FEED_CONFIG", "channel": 1, "dataFormat": "FULL", "aggregationPeriod": 1}
    assert feed(proto, full) == [p.FeedConfigured(1, 1.0, "FULL", {})]
    # asyncapi's own example FEED_CONFIG carries only eventFields
    fields = {"Quote": ["eventSymbol", "bidPrice"]}
    assert feed(proto, {"type": "FEED_CONFIG", "channel": 1, "eventFields": fields}) == [
        p.FeedConfigured(1, None, "FULL", {"Quote": ("eventSymbol", "bidPrice")})
    ]
    assert proto.channels[1].data_format == "FULL"


def test_server_error_and_unknown_messages_are_surfaced():
    proto = authorized()
    events = feed(
        proto,
        {"type": "ERROR", "channel": 0, "error": "BAD_ACTION", "message": "nope"},
        {"type": "DOM_SNAPSHOT", "channel": 5},
    )
    assert events == [
        p.ServerErrorReceived("BAD_ACTION", "nope", 0),
        p.Skipped("unknown message type", "DOM_SNAPSHOT"),
    ]


def test_local_misuse_raises_local_errors():
    proto = p.DXLinkProtocol()
    with pytest.raises(LocalProtocolError):
        proto.receive_text("{}")
    with pytest.raises(LocalProtocolError):
        proto.send_keepalive()
    with pytest.raises(LocalProtocolError):
        proto.subscribe(dict, ["SPY"])  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        proto.subscribe(Quote, ["SPY", ""])


def test_channel_closed_by_server_is_requested_again():
    proto = authorized()
    proto.subscribe(Quote, ["SPY"])
    sent(proto)
    open_channel(proto, 1)
    events = feed(proto, {"type": "CHANNEL_CLOSED", "channel": 1})
    assert events == [p.ChannelClosed(1, "Quote", by_server=True)]
    assert [x["type"] for x in sent(proto)] == ["CHANNEL_REQUEST"]
