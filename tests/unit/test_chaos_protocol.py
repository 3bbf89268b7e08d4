"""Production's failure modes (FIELD_REPORTS.md #4-#6) on the protocol cores, with no sockets.

A client protocol and a server engine are paired (h11's habit) and every message between them is
kept in one transcript, in the order each side handled it, so the order rules can be checked.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tastyrec import Quote, TimeAndSale
from tastyrec.dxlink import protocol as p
from tastyrec.dxlink.compact import structs
from tastyrec.events.registry import spec
from tastyrec.sim.engine import ServerConnection, SimConfig
from tastyrec.sim.market import Market
from tests.integration.wire import expected_rows, normalise, sent_events

T0 = 1_795_000_000.0


class Transcript:
    """One client protocol talking to successive server connections; every message kept."""

    def __init__(self) -> None:
        self.now = T0
        self.client = p.DXLinkProtocol()
        #: ("C" or "S", decoded message), in the order the receiving side handled them
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.frames: list[str] = []  # server frames, for tests/integration/wire.py
        self.events: list[p.ProtocolEvent] = []
        self.server = self.new_server()

    def new_server(self) -> ServerConnection:
        return ServerConnection(
            SimConfig(), Market(7), check_token=lambda t: t == "tok", now=self.now
        )

    def pump(self) -> None:
        for _ in range(100):
            moved = False
            for data in self.client.data_to_send():
                self.messages.append(("C", json.loads(data)))
                self.server.receive_text(data, self.now)
                moved = True
            for frame in self.server.data_to_send():
                self.messages.append(("S", json.loads(frame)))
                self.frames.append(frame)
                self.client.receive_text(frame, int(self.now * 1e9))
                moved = True
            self.events.extend(self.client.events_received())
            if not moved:
                return
        raise AssertionError("the pair never went quiet")

    def advance(self, seconds: float, step: float = 0.1) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            self.server.tick(self.now)
            self.pump()


def check_setup_order(messages: list[tuple[str, dict[str, Any]]]) -> None:
    """Assert tastytrade's strict order (FIELD_REPORTS.md #6) on one connection's transcript:
    SETUP -> AUTH, wait for AUTHORIZED -> CHANNEL_REQUEST -> (CHANNEL_OPENED) -> FEED_SETUP ->
    FEED_SUBSCRIPTION, and the server never had to complain."""
    sent = [(i, msg) for i, (side, msg) in enumerate(messages) if side == "C"]
    assert [msg["type"] for _, msg in sent[:2]] == ["SETUP", "AUTH"]
    authorized = [
        i
        for i, (side, msg) in enumerate(messages)
        if side == "S" and msg["type"] == "AUTH_STATE" and msg["state"] == "AUTHORIZED"
    ]
    assert authorized, "never authorised"
    opened: dict[int, int] = {}
    setup: dict[int, int] = {}
    requested: dict[int, int] = {}
    for i, (side, msg) in enumerate(messages):
        kind, ch = msg["type"], msg.get("channel", 0)
        assert not (side == "S" and kind == "ERROR"), f"server error at {i}: {msg}"
        if side == "C" and kind == "CHANNEL_REQUEST":
            assert authorized[0] < i, f"CHANNEL_REQUEST before AUTHORIZED: {msg}"
            requested.setdefault(ch, i)
        elif side == "S" and kind == "CHANNEL_OPENED":
            assert requested.get(ch, i) < i
            opened.setdefault(ch, i)
        elif side == "C" and kind == "FEED_SETUP":
            assert ch in opened, f"FEED_SETUP before CHANNEL_OPENED: {msg}"
            setup.setdefault(ch, i)
        elif side == "C" and kind == "FEED_SUBSCRIPTION":
            assert ch in setup, f"FEED_SUBSCRIPTION before FEED_SETUP: {msg}"
    assert requested and set(requested) == set(opened) == set(setup)


def test_the_client_follows_the_strict_setup_order_also_after_a_reconnect() -> None:
    t = Transcript()
    t.client.connect("tok")
    # subscriptions asked for before the server has said anything: they must wait for AUTHORIZED
    t.client.subscribe(Quote, ["SPY", "QQQ"])
    t.client.subscribe(TimeAndSale, ["SPY"])
    t.pump()
    t.client.subscribe(Quote, ["AAPL"])  # on an open channel: a delta, after its FEED_SETUP
    t.advance(0.5)
    check_setup_order(t.messages)
    assert {"SPY", "QQQ", "AAPL"} <= {
        e.event_symbol for e in _decoded(t.events) if isinstance(e, Quote)
    }
    # the server restarts (close 1012): a new connection, and the same order again
    t.client.close()
    t.server, first = t.new_server(), len(t.messages)
    t.client.connect("tok")
    t.pump()
    t.advance(0.5)
    again = t.messages[first:]
    check_setup_order(again)
    adds = [m for side, m in again if side == "C" and m["type"] == "FEED_SUBSCRIPTION"]
    assert {(a["type"], a["symbol"]) for m in adds for a in m.get("add", [])} == {
        ("Quote", "SPY"),
        ("Quote", "QQQ"),
        ("Quote", "AAPL"),
        ("TimeAndSale", "SPY"),
    }


@pytest.mark.parametrize(
    "bad",
    [
        # a channel requested before AUTHORIZED
        [("C", "SETUP"), ("C", "AUTH"), ("C", "CHANNEL_REQUEST"), ("S", "AUTHORIZED")],
        # FEED_SETUP before the channel opened
        [("C", "SETUP"), ("C", "AUTH"), ("S", "AUTHORIZED"), ("C", "CHANNEL_REQUEST"),
         ("C", "FEED_SETUP"), ("S", "CHANNEL_OPENED")],
        # a subscription before FEED_SETUP
        [("C", "SETUP"), ("C", "AUTH"), ("S", "AUTHORIZED"), ("C", "CHANNEL_REQUEST"),
         ("S", "CHANNEL_OPENED"), ("C", "FEED_SUBSCRIPTION"), ("C", "FEED_SETUP")],
    ],
)  # fmt: skip
def test_the_order_check_catches_each_violation(bad: list[tuple[str, str]]) -> None:
    messages = []
    for side, kind in bad:
        msg: dict[str, Any] = {"type": kind, "channel": 0 if kind in ("SETUP", "AUTH") else 1}
        if kind == "AUTHORIZED":
            msg = {"type": "AUTH_STATE", "channel": 0, "state": "AUTHORIZED"}
        messages.append((side, msg))
    with pytest.raises(AssertionError):
        check_setup_order(messages)


def _decoded(events: list[p.ProtocolEvent]) -> list[Any]:
    return [e for ev in events if isinstance(ev, p.FeedEvents) for e in structs(ev.plan, ev.values)]


def _rows(cls: type[Any], events: list[Any]) -> list[tuple[Any, ...]]:
    names = [f.name for f in spec(cls).fields]
    return [tuple(normalise(getattr(e, n)) for n in names) for e in events if isinstance(e, cls)]


def test_a_silent_switch_to_full_and_back_decodes_every_event() -> None:
    """FIELD_REPORTS #5: the server switches a channel from COMPACT to FULL with no FEED_CONFIG;
    every FEED_DATA is decoded by its own shape, nothing lost or misdecoded."""
    t = Transcript()
    t.client.connect("tok")
    t.client.subscribe(Quote, ["SPY", "SPX"])  # SPX: NaN sizes, "\u0000" exchange codes
    t.client.subscribe(TimeAndSale, ["SPY"])  # null buyer/seller: omitted in FULL
    t.pump()
    t.advance(1.0)
    switched = len(t.messages)
    t.server.switch_format()
    t.advance(1.0)
    t.server.switch_format()  # and back, again unannounced
    t.advance(1.0)
    after = t.messages[switched:]
    assert not [m for side, m in after if side == "S" and m["type"] == "FEED_CONFIG"]
    shapes = [
        "FULL" if isinstance(m["data"][0], dict) else "COMPACT"
        for side, m in t.messages
        if side == "S" and m["type"] == "FEED_DATA"
    ]
    assert shapes[0] == "COMPACT" and "FULL" in shapes and shapes[-1] == "COMPACT"
    sent = sent_events(t.frames)
    decoded = _decoded(t.events)
    for cls in (Quote, TimeAndSale):
        assert _rows(cls, decoded) == expected_rows(cls, sent[cls.__name__]), cls.__name__
    assert not [e for e in t.events if isinstance(e, p.Skipped)]
    # told once per channel per switch, so the streamer can count and log it
    switches = [e for e in t.events if isinstance(e, p.FormatSwitched)]
    assert sorted((e.data_format, e.channel) for e in switches) == sorted(
        (fmt, ch) for fmt in ("FULL", "COMPACT") for ch in t.client.channels
    )
