"""The sans-I/O simulator engine: JSON in, JSON out, time passed in; no sockets, no sleeps."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import pytest

from tastyrec.dxlink.messages import Auth, Setup
from tastyrec.events import (
    EMPTY_SNAPSHOT,
    REMOVE_EVENT,
    SNAPSHOT_BEGIN,
    SNAPSHOT_END,
    SNAPSHOT_SNIP,
    Candle,
    Quote,
)
from tastyrec.events.registry import spec
from tastyrec.sim import SimConfig
from tastyrec.sim.engine import CANDLE_TOO_BIG, ServerConnection
from tastyrec.sim.market import Market, parse_candle_symbol, ts_index

T0 = 1721664000.0  # 2024-07-22T16:00:00Z, in seconds
TOKEN = "secret-token"
QUOTE_FIELDS = [
    "eventSymbol",
    "eventTime",
    "sequence",
    "timeNanoPart",
    "bidTime",
    "bidExchangeCode",
    "askTime",
    "askExchangeCode",
    "bidPrice",
    "askPrice",
    "bidSize",
    "askSize",
]


class Client:
    """Drives a ServerConnection like a client would; frames come back parsed (and raw)."""

    def __init__(self, config: SimConfig | None = None, auth: bool = True, now: float = T0):
        self.now = now
        self.conn = ServerConnection(
            config or SimConfig(),
            Market(0),
            (lambda t: t == TOKEN) if auth else None,
            now,
        )
        self.raw: list[str] = []

    def send(self, **msg: Any) -> list[dict[str, Any]]:
        self.conn.receive_text(json.dumps(msg), self.now)
        return self.out()

    def out(self) -> list[dict[str, Any]]:
        frames = self.conn.data_to_send()
        self.raw.extend(frames)
        return [json.loads(f) for f in frames]

    def tick(self, dt: float) -> list[dict[str, Any]]:
        """Advance by dt in 10 ms steps, ticking the engine; all frames sent meanwhile."""
        out = []
        end = self.now + dt
        while self.now < end - 1e-9:
            self.now = min(end, self.now + 0.01)
            self.conn.tick(self.now)
            out.extend(self.out())
        return out

    def handshake(self) -> None:
        self.send(type="SETUP", channel=0, version="0.1-test/0", keepaliveTimeout=60)
        self.send(type="AUTH", channel=0, token=TOKEN)
        assert self.conn.authorized

    def open(self, channel: int = 1, contract: str = "AUTO", **setup: Any) -> list[dict[str, Any]]:
        self.send(
            type="CHANNEL_REQUEST",
            channel=channel,
            service="FEED",
            parameters={"contract": contract},
        )
        return self.send(type="FEED_SETUP", channel=channel, **setup)


def data(frames: list[dict[str, Any]], channel: int | None = None) -> list[dict[str, Any]]:
    return [f for f in frames if f["type"] == "FEED_DATA" and channel in (None, f["channel"])]


def rows(frames: list[dict[str, Any]], width: int) -> list[list[Any]]:
    out = []
    for f in data(frames):
        assert len(f["data"]) == 2  # one type/values pair per message
        values = f["data"][1]
        assert len(values) % width == 0
        out.extend(values[i : i + width] for i in range(0, len(values), width))
    return out


def test_token_handshake():
    c = Client()
    out = c.send(
        type="SETUP",
        channel=0,
        version="0.1-DXF-JS/0.3.0",
        keepaliveTimeout=60,
        acceptKeepaliveTimeout=60,
    )
    assert out[0]["type"] == "SETUP" and out[0]["keepaliveTimeout"] == 60
    assert out[0]["acceptKeepaliveTimeout"] == 60 and out[0]["version"]
    assert out[1] == {"type": "AUTH_STATE", "channel": 0, "state": "UNAUTHORIZED"}
    assert c.send(type="AUTH", channel=0, token="wrong") == [
        {"type": "AUTH_STATE", "channel": 0, "state": "UNAUTHORIZED"}
    ]
    out = c.send(type="AUTH", channel=0, token=TOKEN)
    assert out == [
        {"type": "AUTH_STATE", "channel": 0, "state": "AUTHORIZED", "userId": "sim-user"}
    ]
    assert isinstance(c.conn.messages_received()[0], Setup)


def test_auth_right_after_setup_like_the_js_client():
    c = Client()
    c.conn.receive_text('{"type":"SETUP","channel":0,"version":"0.1-DXF-JS/0.3.0"}', T0)
    c.conn.receive_text(json.dumps({"type": "AUTH", "channel": 0, "token": TOKEN}), T0)
    states = [f.get("state") for f in c.out()]
    assert states == [None, "UNAUTHORIZED", "AUTHORIZED"]
    assert any(isinstance(m, Auth) for m in c.conn.messages_received())


def test_no_auth_mode_is_authorized_after_setup_and_never_twice_unprompted():
    c = Client(auth=False)
    out = c.send(type="SETUP", channel=0, version="x")
    assert [f["type"] for f in out] == ["SETUP", "AUTH_STATE"] and out[1]["state"] == "AUTHORIZED"
    out = c.tick(40)
    assert all(f["type"] == "KEEPALIVE" for f in out)


def test_repeated_bad_tokens_close_the_connection():
    c = Client(SimConfig(max_auth_failures=2))
    c.send(type="SETUP", channel=0, version="x")
    c.send(type="AUTH", channel=0, token="bad")
    out = c.send(type="AUTH", channel=0, token="bad")
    assert out[-1] == {
        "type": "ERROR",
        "channel": 0,
        "error": "UNAUTHORIZED",
        "message": "Too many failed authorization attempts",
    }
    assert c.conn.close == (1008, "unauthorized")


def test_requests_before_auth_are_rejected_on_their_channel():
    c = Client()
    c.send(type="SETUP", channel=0, version="x")
    out = c.send(type="CHANNEL_REQUEST", channel=3, service="FEED", parameters={})
    assert out == [
        {"type": "ERROR", "channel": 3, "error": "BAD_ACTION", "message": "AUTH step missing"}
    ]


def test_channels_open_echo_and_close():
    c = Client()
    c.handshake()
    out = c.send(type="CHANNEL_REQUEST", channel=3, service="FEED", parameters={"contract": "AUTO"})
    assert out == [
        {
            "type": "CHANNEL_OPENED",
            "channel": 3,
            "service": "FEED",
            "parameters": {"contract": "AUTO", "subFormat": "LIST"},
        }
    ]
    out = c.send(type="FEED_SUBSCRIPTION", channel=5, add=[{"type": "Quote", "symbol": "SPY"}])
    assert out == [
        {
            "type": "ERROR",
            "channel": 5,
            "error": "BAD_ACTION",
            "message": "Channel with id 5 not exists",
        }
    ]
    assert c.send(type="CHANNEL_CANCEL", channel=3) == [{"type": "CHANNEL_CLOSED", "channel": 3}]
    assert "not exists" in c.send(type="FEED_SETUP", channel=3)[0]["message"]


def test_inbound_keepalive_error_and_garbage_are_tolerated():
    c = Client()
    c.handshake()
    assert c.send(type="KEEPALIVE", channel=0) == []
    assert c.send(type="ERROR", channel=0, error="TIMEOUT", message="client gave up") == []
    c.conn.receive_text("not json", c.now)
    (err,) = c.out()
    assert err["error"] == "INVALID_MESSAGE" and c.conn.close is None


@pytest.mark.parametrize("open_, close", [("[", "]"), ('{"a":', "}")], ids=["arrays", "objects"])
def test_deeply_nested_client_frames_are_invalid_messages(open_, close):
    c = Client()
    c.handshake()
    depth = max(1000, sys.getrecursionlimit())  # deep enough whatever the process's limit
    deep = open_ * depth + "1" + close * depth
    for frame in (
        f'{{"type":"FEED_SUBSCRIPTION","channel":1,"add":{deep}}}',
        f'{{"type":"CHANNEL_REQUEST","channel":1,"service":"FEED","parameters":{{"x":{deep}}}}}',
        f'{{"type":"MYSTERY","channel":1,"x":{deep}}}',
        deep,
    ):
        c.conn.receive_text(frame, c.now)
        (err,) = c.out()
        assert err["error"] == "INVALID_MESSAGE" and c.conn.close is None
    assert c.open(1)[0]["type"] == "FEED_CONFIG"  # still serving


def test_compact_quotes_echo_requested_fields_in_order_with_nan_strings():
    c = Client()
    c.handshake()
    fields = [*QUOTE_FIELDS[:8], "BIDPRICE", "askPrice", "bidSize", "askSize", "bogus"]
    out = c.open(
        7,
        acceptAggregationPeriod=0.1,
        acceptDataFormat="COMPACT",
        acceptEventFields={"Quote": fields},
    )
    assert out == [
        {"type": "FEED_CONFIG", "channel": 7, "aggregationPeriod": 0.1, "dataFormat": "COMPACT"}
    ]
    c.send(
        type="FEED_SUBSCRIPTION",
        channel=7,
        add=[{"type": "Quote", "symbol": "SPY"}, {"type": "Quote", "symbol": "SPX"}],
    )
    out = c.tick(0.05)
    config = out[0]
    assert config["type"] == "FEED_CONFIG" and config["eventFields"] == {"Quote": fields}
    got = {r[0]: r for r in rows(out, len(fields))}
    spy, spx = got["SPY"], got["SPX"]
    assert spy[1] == 0 and spy[8] < spy[9] and isinstance(spy[10], float)
    assert spx[10:12] == ["NaN", "NaN"] and spx[5] == "\x00" and spx[12] is None
    assert any('"\\u0000"' in raw for raw in c.raw)  # the wire spelling of an absent char
    # eventFields is announced once per type
    assert not [f for f in c.tick(1.0) if f["type"] == "FEED_CONFIG"]


def test_default_fields_when_none_requested_and_full_format():
    c = Client()
    c.handshake()
    c.open(1)
    c.send(type="FEED_SUBSCRIPTION", channel=1, add=[{"type": "Quote", "symbol": "AAPL"}])
    out = c.tick(0.1)
    assert out[0]["eventFields"] == {"Quote": list(spec(Quote).wire_names)}
    (row,) = rows(out, len(spec(Quote).wire_names))[:1]
    assert row[0] == "AAPL"

    c.open(
        3,
        acceptDataFormat="FULL",
        acceptEventFields={"Quote": ["eventType", "eventSymbol", "bidPrice", "askSize"]},
    )
    c.send(type="FEED_SUBSCRIPTION", channel=3, add=[{"type": "Quote", "symbol": "SPX"}])
    full = data(c.tick(0.2), 3)
    obj = full[0]["data"][0]
    assert obj["eventType"] == "Quote" and obj["eventSymbol"] == "SPX"
    assert obj["askSize"] == "NaN" and isinstance(obj["bidPrice"], float)


def test_aggregation_conflates_quotes_but_not_time_and_sales():
    c = Client()
    c.handshake()
    c.open(1, acceptAggregationPeriod=1.0)
    c.send(
        type="FEED_SUBSCRIPTION",
        channel=1,
        add=[{"type": "Quote", "symbol": "SPY"}, {"type": "TimeAndSale", "symbol": "SPY"}],
    )
    out = c.tick(3.0)
    quotes = [f for f in data(out) if f["data"][0] == "Quote"]
    sales = [f for f in data(out) if f["data"][0] == "TimeAndSale"]
    assert 3 <= len(quotes) <= 4  # ~30 quotes were generated, conflated to one per second
    assert all(len(f["data"][1]) == len(spec(Quote).wire_names) for f in quotes)
    width = len(c.conn.channels[1].announced["TimeAndSale"])
    prints = [v for f in sales for v in f["data"][1][::width]]
    assert len(prints) > 5  # every print, not just the latest


def test_subscription_remove_reset_and_reopen():
    c = Client()
    c.handshake()
    c.open(1)
    add = [{"type": "Quote", "symbol": "SPY"}, {"type": "Quote", "symbol": "QQQ"}]
    c.send(type="FEED_SUBSCRIPTION", channel=1, add=add)
    assert {r[0] for r in rows(c.tick(0.5), 12)} == {"SPY", "QQQ"}
    c.send(type="FEED_SUBSCRIPTION", channel=1, remove=[{"type": "Quote", "symbol": "SPY"}])
    assert {r[0] for r in rows(c.tick(0.5), 12)} == {"QQQ"}
    c.send(type="FEED_SUBSCRIPTION", channel=1, reset=True, add=[add[0]])
    assert {r[0] for r in rows(c.tick(0.5), 12)} == {"SPY"}
    # a repeated CHANNEL_REQUEST re-opens the channel cleanly (JS client after AUTHORIZED)
    out = c.send(type="CHANNEL_REQUEST", channel=1, service="FEED", parameters={})
    assert out[0]["type"] == "CHANNEL_OPENED"
    assert not data(c.tick(0.5))


def test_unknown_event_type_is_bad_action():
    c = Client()
    c.handshake()
    c.open(1)
    (err,) = c.send(type="FEED_SUBSCRIPTION", channel=1, add=[{"type": "Nope", "symbol": "SPY"}])
    assert err["error"] == "BAD_ACTION" and "Nope" in err["message"]


def test_candle_snapshot_then_live_updates():
    c = Client(SimConfig(candle_rate_hz=1.0))
    c.handshake()
    c.open(1, "HISTORY")
    start = int((T0 - 3600) * 1000)
    c.send(
        type="FEED_SUBSCRIPTION",
        channel=1,
        add=[{"type": "Candle", "symbol": "SPY{=1h}", "fromTime": start}],
    )
    fields = spec(Candle).wire_names
    out = c.tick(0.2)
    snap = rows(out, len(fields))
    assert [r[0] for r in snap] == ["SPY{=h}", "SPY{=h}"]  # normalised symbol
    assert [r[2] for r in snap] == [SNAPSHOT_BEGIN, SNAPSHOT_END]
    assert snap[0][4] == int(T0 * 1000) and snap[1][4] == int(T0 * 1000) - 3_600_000
    assert snap[0][3] == ts_index(snap[0][4])
    live = rows(c.tick(2.0), len(fields))
    assert live and all(r[2] == 0 and r[3] == snap[0][3] for r in live)


def test_candle_snapshot_limit_snips_and_new_from_time_replaces():
    c = Client(SimConfig(candle_snapshot_limit=5))
    c.handshake()
    c.open(1, "HISTORY")
    entry = {"type": "Candle", "symbol": "AAPL{=1d,tho=true}", "fromTime": 1_000_000_000}
    c.send(type="FEED_SUBSCRIPTION", channel=1, add=[entry])
    snap = rows(c.tick(0.05), 17)
    assert len(snap) == 5 and snap[0][0] == "AAPL{=d,tho=true}"
    assert snap[0][2] == SNAPSHOT_BEGIN and snap[-1][2] == SNAPSHOT_SNIP
    c.send(type="FEED_SUBSCRIPTION", channel=1, add=[{**entry, "fromTime": int(T0 * 1000)}])
    again = rows(c.tick(0.05), 17)
    assert again[0][2] == SNAPSHOT_BEGIN | SNAPSHOT_END
    c.send(
        type="FEED_SUBSCRIPTION",
        channel=1,
        remove=[{"type": "Candle", "symbol": "AAPL{=1d,tho=true}"}],
    )
    assert not data(c.tick(2.0))


def test_candle_cap():
    c = Client(SimConfig(candle_cap=2))
    c.handshake()
    c.open(1)
    add = [{"type": "Candle", "symbol": f"{s}{{=5m}}", "fromTime": 0} for s in ("A", "B", "C")]
    out = c.send(type="FEED_SUBSCRIPTION", channel=1, add=add)
    assert out == [
        {"type": "ERROR", "channel": 1, "error": "BAD_ACTION", "message": CANDLE_TOO_BIG}
    ]
    symbols = {r[0] for r in rows(c.tick(0.1), 17)}
    assert symbols == {"A{=5m}", "B{=5m}"}  # the accepted ones keep flowing


def test_frames_stay_below_the_limit():
    c = Client(SimConfig(max_frame_bytes=8_000, candle_snapshot_limit=1000))
    c.handshake()
    c.open(1, "HISTORY")
    c.send(
        type="FEED_SUBSCRIPTION",
        channel=1,
        add=[{"type": "Candle", "symbol": "SPY{=1m}", "fromTime": 0}],
    )
    c.tick(0.2)
    assert len(c.raw) > 10
    assert all(len(f.encode()) <= 8_000 for f in c.raw)
    assert len(rows([json.loads(f) for f in c.raw], 17)) == 1000


def test_a_long_candle_history_is_served_in_parts_then_live():
    """A day of 1-minute candles is priced a part per tick (never all in one call that holds up
    every other connection), newest first, then live updates of the newest one follow."""
    c = Client(SimConfig(candle_rate_hz=1.0, default_aggregation_s=0.0))
    c.handshake()
    c.open(1, "HISTORY")
    day = int(T0 * 1000) - 86_400_000
    c.send(
        type="FEED_SUBSCRIPTION",
        channel=1,
        add=[{"type": "Candle", "symbol": "SPY{=1m}", "fromTime": day}],
    )
    per_tick = []
    while True:
        c.now += 0.001
        c.conn.tick(c.now)
        got = rows(c.out(), 17)
        if not got:
            break
        per_tick.append(got)
    assert len(per_tick) >= 5 and max(len(p) for p in per_tick) <= 256
    snap = [r for p in per_tick for r in p]
    assert len(snap) == 1441
    assert snap[0][2] == SNAPSHOT_BEGIN and snap[-1][2] == SNAPSHOT_END
    assert all(r[2] == 0 for r in snap[1:-1])
    times = [r[4] for r in snap]
    assert times == sorted(times, reverse=True) and times[-1] == day
    market = Market(0)
    cs = parse_candle_symbol("SPY{=1m}")
    assert cs is not None
    for r in (snap[0], snap[700], snap[-1]):  # the values one candle at a time gives
        one = market.candle(cs, cs.slot(r[4]), int(T0 * 1000))
        assert [r[13], r[14], r[15], r[16]] == [one.open, one.high, one.low, one.close]
    live = rows(c.tick(2.0), 17)
    assert live and all(r[2] == 0 and r[4] == times[0] for r in live)


def test_candles_on_auto_get_one_empty_snapshot_and_history_needs_the_history_contract():
    """FIELD_REPORTS #3: the same Candle subscription (fromTime 90 days back) on an AUTO channel
    gets exactly one event, eventFlags 14 with NaN prices and volumes, and nothing after it (not
    even the live updates a HISTORY channel gets every second); on HISTORY, the bars at once."""
    c = Client(SimConfig(candle_rate_hz=1.0, default_aggregation_s=0.0))
    c.handshake()
    c.open(1, "AUTO")
    c.open(3, "HISTORY")
    entry = {"type": "Candle", "symbol": "AAPL{=1d}", "fromTime": int((T0 - 90 * 86_400) * 1000)}
    for channel in (1, 3):
        assert c.send(type="FEED_SUBSCRIPTION", channel=channel, add=[entry]) == []
    out = c.tick(3.0)
    fields = spec(Candle).wire_names
    auto = rows(data(out, 1), len(fields))
    assert auto == [
        # eventSymbol, eventTime, eventFlags, index, time, sequence, count, then NaN doubles
        ["AAPL{=d}", 0, SNAPSHOT_BEGIN | SNAPSHOT_END | REMOVE_EVENT, 0, 0, 0, 0] + ["NaN"] * 10
    ]
    assert SNAPSHOT_BEGIN | SNAPSHOT_END | REMOVE_EVENT == EMPTY_SNAPSHOT == 14
    history = rows(data(out, 3), len(fields))
    end = next(i for i, r in enumerate(history) if r[2] & SNAPSHOT_END)
    assert history[0][2] == SNAPSHOT_BEGIN and end == 90  # 90 days back to today: 91 bars
    bars, live = history[: end + 1], history[end + 1 :]
    assert all(isinstance(r[13], float) and r[15] <= r[13] <= r[14] for r in bars)
    assert len(live) >= 2 and all(r[2] == 0 and r[4] == bars[0][4] for r in live)
    # a new fromTime on AUTO: a new empty snapshot, and again nothing after it
    c.send(type="FEED_SUBSCRIPTION", channel=1, add=[{**entry, "fromTime": int(T0 * 1000)}])
    assert [r[2] for r in rows(data(c.tick(3.0), 1), len(fields))] == [EMPTY_SNAPSHOT]


@pytest.mark.parametrize("contract", ["HISTORY", "AUTO"])
def test_candle_symbols_without_a_time_period_get_an_error(contract):
    """No period (dxFeed reads ``SPY`` as tick candles), a tick, volume or price period: the
    simulator builds none of them, so it says so on the channel instead of accepting a
    subscription that never sends anything; the other candles in the message still flow."""
    c = Client(SimConfig(candle_rate_hz=1.0))
    c.handshake()
    c.open(1, contract)
    refused = ["SPY", "SPY{=t}", "SPY{=100v}", "SPY{tho=true}", "SPY{=0m}"]
    add = [{"type": "Candle", "symbol": s, "fromTime": int(T0 * 1000)} for s in refused]
    (error,) = c.send(
        type="FEED_SUBSCRIPTION",
        channel=1,
        add=[*add, {"type": "Candle", "symbol": "SPY{=1m}", "fromTime": int(T0 * 1000)}],
    )
    assert error == {
        "type": "ERROR",
        "channel": 1,
        "error": "BAD_ACTION",
        "message": "Candle symbol(s) 'SPY', 'SPY{=t}', 'SPY{=100v}', 'SPY{tho=true}', "
        "'SPY{=0m}' not supported: the simulator builds candles of a time period only (s, m, "
        "h, d, w, mo, y), such as 'SPY{=5m}'; no period means tick candles",
    }
    assert {r[0] for r in rows(c.tick(2.0), 17)} == {"SPY{=m}"}
    assert [k[1] for k in c.conn.channels[1].subs] == ["SPY{=1m}"]
    # removing one that was refused is no error
    assert (
        c.send(type="FEED_SUBSCRIPTION", channel=1, remove=[{"type": "Candle", "symbol": "SPY"}])
        == []
    )


class RecordedCandleFeed:
    """A Feed like ``tastyrec serve``'s: two recorded candles of each recorded symbol subscribed
    (a snapshot, as recorded from a HISTORY channel), once."""

    def __init__(self, recorded: set[str]) -> None:
        self.recorded = recorded
        self.symbols: set[str] = set()
        self.given: set[str] = set()
        self.reached = 0

    def subscribe(self, event_type: str, symbol: str, now: float) -> None:
        self.symbols.add(symbol)

    def unsubscribe(self, event_type: str, symbol: str) -> None:
        self.symbols.discard(symbol)

    def poll(self, now: float) -> list[tuple[int, Candle]]:
        out = []
        for s in sorted((self.symbols & self.recorded) - self.given):
            self.given.add(s)
            t = int(T0 * 1000)
            out += [
                Candle(event_symbol=s, event_flags=SNAPSHOT_BEGIN, time=t, open=1.0, close=2.0),
                Candle(event_symbol=s, event_flags=SNAPSHOT_END, time=t - 60_000, open=3.0),
            ]
        self.reached = int(now * 1e9)
        return [(self.reached, c) for c in out]  # received together, as a snapshot is

    def reached_ns(self) -> float:
        return self.reached

    def next_due(self) -> float | None:
        return None


@pytest.mark.parametrize("contract", ["AUTO", "HISTORY"])
def test_serve_sends_the_recorded_candles_on_either_contract(contract):
    """``tastyrec serve`` replays what was recorded (a recording's history is what a HISTORY
    channel got): the recorded candles on AUTO as on HISTORY, and a symbol that was not recorded
    is silent, as live, with no error (a recording may hold tick candles)."""
    c = Client()
    c.conn.feed = feed = RecordedCandleFeed(recorded={"SPY{=m}"})
    c.handshake()
    c.open(1, contract)
    add = [{"type": "Candle", "symbol": s, "fromTime": 0} for s in ("SPY{=1m}", "QQQ")]
    assert c.send(type="FEED_SUBSCRIPTION", channel=1, add=add) == []
    out = c.tick(0.5)
    assert [f["type"] for f in out if f["type"] == "ERROR"] == []
    t = int(T0 * 1000)
    assert [(r[0], r[2], r[4], r[13]) for r in rows(out, 17)] == [
        ("SPY{=m}", SNAPSHOT_BEGIN, t, 1.0),
        ("SPY{=m}", SNAPSHOT_END, t - 60_000, 3.0),
    ]
    assert feed.symbols == {"SPY{=m}", "QQQ"}  # both passed on, as the feed names them


def test_keepalive_and_client_timeout():
    c = Client(SimConfig(keepalive_timeout=5))
    c.send(type="SETUP", channel=0, version="x", keepaliveTimeout=2)
    c.send(type="AUTH", channel=0, token=TOKEN)
    out = c.tick(1.2)
    assert [f["type"] for f in out] == ["KEEPALIVE"]  # after ~1 s idle (half of 2 s)
    assert c.conn.next_deadline() <= c.now + 1.0
    c.send(type="KEEPALIVE", channel=0)
    assert c.conn.close is None
    out = c.tick(5.1)
    assert out[-1]["type"] == "ERROR" and out[-1]["error"] == "TIMEOUT"
    assert "last received 5 seconds ago" in out[-1]["message"]
    assert c.conn.close == (1000, "keepalive timeout")


def test_expiry_withdraws_authorisation_until_a_new_auth():
    c = Client()
    c.handshake()
    c.open(1)
    c.send(type="FEED_SUBSCRIPTION", channel=1, add=[{"type": "Quote", "symbol": "SPY"}])
    assert data(c.tick(0.3))
    c.conn.expire()
    assert c.out() == [{"type": "AUTH_STATE", "channel": 0, "state": "UNAUTHORIZED"}]
    assert not data(c.tick(1.0))
    assert c.send(type="FEED_SETUP", channel=1)[0]["message"] == "AUTH step missing"
    assert c.send(type="AUTH", channel=0, token=TOKEN)[0]["state"] == "AUTHORIZED"
    assert data(c.tick(0.3))


def test_server_error_injection():
    c = Client()
    c.handshake()
    c.conn.send_error("UNKNOWN", "boom")
    assert c.out() == [{"type": "ERROR", "channel": 0, "error": "UNKNOWN", "message": "boom"}]


class OneQuoteFeed:
    """A Feed (what ``tastyrec serve`` plugs into the engine): one known Quote per poll."""

    def __init__(self) -> None:
        self.symbols: set[str] = set()

    def subscribe(self, event_type: str, symbol: str, now: float) -> None:
        self.symbols.add(symbol)

    def unsubscribe(self, event_type: str, symbol: str) -> None:
        self.symbols.discard(symbol)

    def poll(self, now: float) -> list[tuple[int, Quote]]:
        return [
            (
                round(now * 1e9),
                Quote(
                    event_symbol=s, bid_price=101.25, ask_price=101.5, bid_size=3.0, ask_size=4.0
                ),
            )
            for s in sorted(self.symbols)
        ]

    def reached_ns(self) -> float:
        return math.inf

    def next_due(self) -> float | None:
        return None


def feed_client(config: SimConfig | None = None) -> Client:
    c = Client(config)
    c.conn.feed = OneQuoteFeed()
    return c


SOURCES = pytest.mark.parametrize("make", [Client, feed_client], ids=["simulate", "serve"])


@SOURCES
@pytest.mark.parametrize(
    "setup",
    [{}, {"acceptEventFields": {"Quote": QUOTE_FIELDS}}, {"acceptAggregationPeriod": 0}],
    ids=["nothing", "fields-only", "period-zero"],
)
def test_feed_config_always_states_format_and_period(make, setup):
    """FIELD_REPORTS #1: a FEED_SETUP naming no format still gets ``dataFormat`` back, in the
    first FEED_CONFIG and in the one announcing eventFields; a period of 0 is sent too."""
    c = make(SimConfig(default_aggregation_s=1.0))
    c.handshake()
    period = setup.get("acceptAggregationPeriod", 1.0)
    assert c.open(1, **setup) == [
        {"type": "FEED_CONFIG", "channel": 1, "aggregationPeriod": period, "dataFormat": "COMPACT"}
    ]
    c.send(type="FEED_SUBSCRIPTION", channel=1, add=[{"type": "Quote", "symbol": "SPY"}])
    out = c.tick(1.1)
    (config,) = [f for f in out if f["type"] == "FEED_CONFIG"]
    assert config["dataFormat"] == "COMPACT" and config["aggregationPeriod"] == period
    assert config["eventFields"]["Quote"] == setup.get("acceptEventFields", {}).get(
        "Quote", list(spec(Quote).wire_names)
    )
    assert data(out)
    # every FEED_CONFIG on the wire has both fields, whatever was asked
    for raw in c.raw:
        if '"FEED_CONFIG"' in raw:
            assert '"dataFormat":"COMPACT"' in raw and '"aggregationPeriod":' in raw, raw


@SOURCES
def test_event_type_field_carries_the_type_name(make):
    """FIELD_REPORTS #2: where the client asked for ``eventType``, COMPACT rows carry "Quote"
    in that slot (never null); FULL objects carry it whether asked for or not."""
    c = make()
    c.handshake()
    fields = ["eventType", "eventSymbol", "bidPrice", "askPrice", "EVENTTYPE"]
    c.open(1, acceptDataFormat="COMPACT", acceptEventFields={"Quote": fields})
    c.send(type="FEED_SUBSCRIPTION", channel=1, add=[{"type": "Quote", "symbol": "SPY"}])
    out = c.tick(0.3)
    got = rows(out, len(fields))
    assert got
    for row in got:
        assert row[0] == "Quote" and row[4] == "Quote" and row[1] == "SPY", row
        assert 0 < row[2] < row[3]
    if make is feed_client:
        assert got[0] == ["Quote", "SPY", 101.25, 101.5, "Quote"]

    for asked in (["eventType", "eventSymbol", "bidPrice"], ["eventSymbol", "bidPrice"]):
        channel = 3 if "eventType" in asked else 5
        c.open(channel, acceptDataFormat="FULL", acceptEventFields={"Quote": asked})
        c.send(type="FEED_SUBSCRIPTION", channel=channel, add=[{"type": "Quote", "symbol": "QQQ"}])
        (obj, *_) = [o for f in data(c.tick(0.3), channel) for o in f["data"]]
        assert set(obj) == {"eventType", "eventSymbol", "bidPrice"}, obj
        assert obj["eventType"] == "Quote" and obj["eventSymbol"] == "QQQ"
