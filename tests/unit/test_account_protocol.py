"""AccountProtocol alone and paired with the simulator's engine, no sockets (h11's habit)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tastyrec.account import messages as m, protocol as p
from tastyrec.events.account import (
    AccountBalance,
    CurrentPosition,
    PlacedComplexOrder,
    PlacedOrder,
    UnknownNotification,
)
from tastyrec.exceptions import LocalProtocolError, RemoteProtocolError
from tastyrec.sim.account_server import AccountServerConnection
from tastyrec.sim.brokerage import AccountBook, AccountSimConfig, occ_to_streamer_symbol
from tastyrec.sim.market import Market

T0 = 1_795_000_000.0
TOKEN = "tok-abc"
CALL = "SPY   261218C00600000"
CALL2 = "SPY   261218C00610000"


def sent(proto: p.AccountProtocol) -> list[dict]:
    return [json.loads(d) for d in proto.data_to_send()]


# --- the client alone --------------------------------------------------------------------------


def test_every_message_carries_the_authorization_value_and_a_new_request_id():
    proto = p.AccountProtocol(source="test/1")
    assert proto.connect(TOKEN) == []  # nothing to restore yet
    r1 = proto.subscribe_accounts(["5WT00000"])
    r2 = proto.subscribe_quote_alerts()
    r3 = proto.heartbeat()
    msgs = sent(proto)
    assert [r1, r2, r3] == [1, 2, 3]
    assert [msg["action"] for msg in msgs] == ["connect", "quote-alerts-subscribe", "heartbeat"]
    assert {msg["auth-token"] for msg in msgs} == {f"Bearer {TOKEN}"}
    assert [msg["request-id"] for msg in msgs] == [1, 2, 3]
    assert msgs[0]["value"] == ["5WT00000"] and "value" not in msgs[1]
    assert {msg["source"] for msg in msgs} == {"test/1"}
    assert proto.pending == {1: "connect", 2: "quote-alerts-subscribe", 3: "heartbeat"}


def test_a_full_authorization_value_is_sent_unchanged_and_can_be_replaced():
    proto = p.AccountProtocol()
    proto.connect(f"Bearer {TOKEN}")
    proto.subscribe_public_watchlists()
    proto.set_auth_token("new-token")
    proto.heartbeat()
    assert [msg["auth-token"] for msg in sent(proto)] == [f"Bearer {TOKEN}", "Bearer new-token"]


def test_replies_are_matched_to_requests():
    proto = p.AccountProtocol()
    proto.connect(TOKEN)
    rid = proto.subscribe_accounts("5WT00000")  # a single string is one account
    proto.data_to_send()
    proto.receive_text(
        json.dumps(
            {
                "status": "error",
                "action": "connect",
                "web-socket-session-id": "4d02ac05",
                "message": "failed",
                "request-id": rid,
            }
        ),
        0,
    )
    (reply,) = proto.events_received()
    assert reply == p.Reply(rid, "connect", False, "failed", "4d02ac05")
    assert proto.session_id == "4d02ac05" and proto.pending == {}
    # a reply to nothing we sent is reported without an id
    proto.receive_text(b'{"status":"ok","action":"heartbeat","request-id":99}', 0)
    (reply,) = proto.events_received()
    assert reply.request_id is None and reply.ok


def test_subscriptions_are_desired_state_restored_on_every_connect():
    proto = p.AccountProtocol()
    proto.connect(TOKEN)
    proto.subscribe_accounts(["A1", "A2"])
    proto.subscribe_accounts(["A2", "A3"])
    proto.subscribe_public_watchlists()
    proto.subscribe_quote_alerts()
    proto.subscribe_user_messages("U123")
    assert sent(proto)[1]["value"] == ["A1", "A2", "A3"]  # connect carries every account
    proto.close()
    assert proto.subscribe_quote_alerts() is None  # no socket: desired state only
    assert proto.data_to_send() == []
    with pytest.raises(LocalProtocolError):
        proto.heartbeat()
    ids = proto.connect(TOKEN)
    msgs = sent(proto)
    assert [msg["request-id"] for msg in msgs] == ids
    assert [(msg["action"], msg.get("value")) for msg in msgs] == [
        ("connect", ["A1", "A2", "A3"]),
        ("public-watchlists-subscribe", None),
        ("quote-alerts-subscribe", None),
        ("user-message-subscribe", "U123"),
    ]


def test_notifications_batches_unknown_types_and_bad_payloads():
    proto = p.AccountProtocol()
    proto.connect(TOKEN)
    watchlist = {"type": "PublicWatchlists", "data": {"name": "W"}, "timestamp": 5}
    proto.receive_text(json.dumps(watchlist), 11)
    batch = {
        "results": [
            {"type": "OrderChain", "data": {"id": 1}, "timestamp": 6},
            {"type": "Order", "data": {"id": 2}, "timestamp": 7},  # missing required keys
        ]
    }
    proto.receive_text(json.dumps(batch), 12)
    first, unknown, bad = proto.events_received()
    assert isinstance(first, p.NotificationReceived)
    assert (first.type_name, first.timestamp_ms, first.recv_ns) == ("PublicWatchlists", 5, 11)
    assert isinstance(unknown, p.NotificationReceived)
    assert unknown.event == UnknownNotification("OrderChain", {"id": 1}, 6)
    assert isinstance(bad, p.Skipped) and bad.reason == "bad Order"


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1, 2]",
        '{"hello": 1}',
        '{"type": 5}',
        # nesting 1,000 deep (~2 KB): msgspec raises RecursionError, not a DecodeError
        '{"type":"Order","data":' + '{"a":' * 1000 + "1" + "}" * 1000 + "}",
        '{"results":[' + "[" * 1000 + "]" * 1000 + "]}",
        '{"action":"heartbeat","status":"ok","value":' + "[" * 1000 + "]" * 1000 + "}",
    ],
)
def test_malformed_frames_raise_remote_protocol_error(frame):
    proto = p.AccountProtocol()
    proto.connect(TOKEN)
    with pytest.raises(RemoteProtocolError):
        proto.receive_text(frame, 0)


@pytest.mark.parametrize("type_name", ["Order", "SomethingNew"])
def test_data_nested_within_the_recursion_limit_but_absurdly_deep_is_skipped(type_name):
    """Decodable (100 < the recursion limit) but nested so deep that storing it (unknown data
    is kept as JSON text) could hit the limit at a deeper stack: skipped, counted, not fatal."""
    proto = p.AccountProtocol()
    proto.connect(TOKEN)
    proto.data_to_send()
    data = '{"a":' * 100 + "1" + "}" * 100
    proto.receive_text(f'{{"type":"{type_name}","data":{data},"timestamp":5}}', 7)
    ok = {"type": "SomethingNew", "data": {"a": {"b": [1, {"c": 2}]}}, "timestamp": 6}
    proto.receive_text(json.dumps(ok), 8)
    bad, fine = proto.events_received()
    assert isinstance(bad, p.Skipped) and bad.reason == f"bad {type_name}"
    assert "nested deeper than 64" in bad.detail
    assert isinstance(fine, p.NotificationReceived)
    assert fine.event == UnknownNotification("SomethingNew", ok["data"], 6)


def test_requests_never_show_the_token():
    proto = p.AccountProtocol()
    proto.connect("secret-xyz")
    proto.subscribe_accounts(["A"])
    (data,) = proto.data_to_send()
    assert "secret-xyz" not in m.redact(data)
    assert "secret-xyz" not in repr(m.decode_request(data))
    assert "secret-xyz" not in repr(proto)
    with pytest.raises(LocalProtocolError):
        proto.subscribe_accounts([])


def test_occ_symbols_map_to_streamer_symbols():
    assert occ_to_streamer_symbol(CALL) == ".SPY261218C600"
    assert occ_to_streamer_symbol("SPY   261218P00602500") == ".SPY261218P602.5"
    assert occ_to_streamer_symbol("AAPL") == "AAPL"


# --- client <-> simulated server ---------------------------------------------------------------


class Pair:
    """A client protocol wired to a server connection and an account book; time moves when told."""

    def __init__(self, token: str = TOKEN, **config) -> None:
        self.now = T0
        self.config = AccountSimConfig(
            **{"order_every_s": None, "step_s": 0.1, "fill_step_s": 0.05, **config}
        )
        self.book = AccountBook(Market(3), self.now, config=self.config)
        self.server = AccountServerConnection(
            lambda v: v == f"Bearer {TOKEN}", "0badf00d", self.config, self.now
        )
        self.client = p.AccountProtocol()
        self.client.connect(token)
        self.events: list[p.ProtocolEvent] = []

    def pump(self) -> list[p.ProtocolEvent]:
        for out in self.book.take():
            self.server.deliver(out)
        for data in self.client.data_to_send():
            self.server.receive_text(data, self.now)
        for frame in self.server.data_to_send():
            self.client.receive_text(frame, int(self.now * 1e9))
        new = self.client.events_received()
        self.events.extend(new)
        return new

    def advance(self, seconds: float, step: float = 0.05) -> list[p.ProtocolEvent]:
        new = self.pump()
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            self.book.tick(self.now)
            new += self.pump()
        return new

    def payloads(self, cls: type) -> list:
        return [
            e.event
            for e in self.events
            if isinstance(e, p.NotificationReceived) and isinstance(e.event, cls)
        ]


def test_connect_reply_echoes_value_session_and_request_id():
    pair = Pair()
    rid = pair.client.subscribe_accounts(["5WT00000"])
    (reply,) = pair.pump()
    assert reply == p.Reply(rid, "connect", True, None, "0badf00d", ["5WT00000"])
    hb = pair.client.heartbeat()
    assert pair.pump() == [p.Reply(hb, "heartbeat", True, None, "0badf00d")]


def test_wrong_token_form_is_refused_with_failed_and_socket_stays_usable():
    pair = Pair(token="Bearer Bearer tok-abc")  # an extra "Bearer "
    rid = pair.client.subscribe_accounts(["5WT00000"])
    (reply,) = pair.pump()
    assert (reply.request_id, reply.ok, reply.message) == (rid, False, "failed")
    assert pair.server.close is None
    pair.client.set_auth_token(TOKEN)
    pair.client.subscribe_accounts(["5WT00000"])
    assert pair.pump()[0].ok


def test_strict_mode_requires_connect_first():
    pair = Pair(strict=True)
    pair.client.subscribe_quote_alerts()
    (reply,) = pair.pump()
    assert not reply.ok and reply.message == "connect-not-completed"
    pair.client.subscribe_accounts(["5WT00000"])
    pair.client.subscribe_quote_alerts()
    assert [r.ok for r in pair.pump()] == [True, True]


def test_single_leg_lifecycle_partial_fills_then_position_and_balance():
    pair = Pair(fills_per_leg=3)
    pair.client.subscribe_accounts(["5WT00000"])
    pair.pump()
    oid = pair.book.place_order(pair.now, [("AAPL", "Buy to Open", 100)])
    pair.advance(2.0)
    orders = [o for o in pair.payloads(PlacedOrder) if o.id == oid]
    assert [o.status for o in orders] == [
        "Received",
        "Routed",
        "In Flight",
        "Live",
        "Live",
        "Live",
        "Filled",
    ]
    assert [len(o.legs[0].fills) for o in orders] == [0, 0, 0, 0, 1, 2, 3]
    assert [o.legs[0].remaining_quantity for o in orders[-3:]] == [67, 34, 0]
    final = orders[-1]
    assert final.terminal_at is not None and not final.cancellable
    fills = final.legs[0].fills
    assert sum(f.quantity for f in fills) == 100
    (pos,) = pair.payloads(CurrentPosition)
    assert pos.symbol == "AAPL" and pos.quantity == 100 and pos.quantity_direction == "Long"
    cost = sum(f.quantity * f.fill_price for f in fills)
    assert pos.average_open_price == (cost / 100).quantize(Decimal("0.0001"))
    (bal,) = pair.payloads(AccountBalance)
    assert bal.cash_balance == Decimal(100000) - cost
    assert bal.net_liquidating_value == bal.cash_balance + bal.long_equity_value
    # the position comes after the last fill, the balance after the position
    kinds = [type(e.event).__name__ for e in pair.events if isinstance(e, p.NotificationReceived)]
    assert kinds[-3:] == ["PlacedOrder", "CurrentPosition", "AccountBalance"]


def test_multi_leg_order_is_filled_after_its_first_leg_then_the_rest_follow():
    pair = Pair()
    pair.client.subscribe_accounts(["5WT00000"])
    pair.pump()
    oid = pair.book.place_order(pair.now, [(CALL, "Buy to Open", 4), (CALL2, "Sell to Open", 4)])
    pair.advance(2.0)
    orders = [o for o in pair.payloads(PlacedOrder) if o.id == oid]
    filled = [o for o in orders if o.status == "Filled"]
    first = filled[0]
    assert len(first.legs[0].fills) == 2 and first.legs[1].fills == []  # only the first leg
    assert [len(o.legs[1].fills) for o in filled] == [0, 1, 2]
    assert filled[-1].legs[1].remaining_quantity == 0
    positions = {pos.symbol: pos for pos in pair.payloads(CurrentPosition)}
    assert positions[CALL].quantity_direction == "Long"
    assert positions[CALL2].quantity_direction == "Short"
    assert positions[CALL2].multiplier == 100
    (bal,) = pair.payloads(AccountBalance)
    net = sum(
        f.quantity * f.fill_price * 100 * (1 if leg.action.startswith("Buy") else -1)
        for leg in filled[-1].legs
        for f in leg.fills
    )
    assert bal.cash_balance == Decimal(100000) - net


def test_closing_fill_realizes_a_gain_and_a_year_summary():
    pair = Pair(fills_per_leg=1)
    pair.client.subscribe_accounts(["5WT00000"])
    pair.pump()
    pair.book.place_order(pair.now, [("SPY", "Buy to Open", 10)])
    pair.advance(1.0)
    pair.book.place_order(pair.now, [("SPY", "Sell to Close", 10)])
    pair.advance(60.0, step=0.5)  # prices move in between
    _opened, closed = pair.payloads(CurrentPosition)
    assert closed.quantity == 0 and closed.quantity_direction == "Zero"
    buy, sell = [o for o in pair.payloads(PlacedOrder) if o.status == "Filled"]
    gain = (sell.legs[0].fills[0].fill_price - buy.legs[0].fills[0].fill_price) * 10
    assert closed.realized_day_gain == gain
    events = [e.event for e in pair.events if isinstance(e, p.NotificationReceived)]
    summaries = [e for e in events if type(e).__name__ == "UnderlyingYearGainSummary"]
    assert summaries[-1].yearly_realized_gain == gain
    assert pair.payloads(AccountBalance)[-1].cash_balance == Decimal(100000) + gain


def test_resting_limit_order_cancelled_and_another_rejected():
    pair = Pair()
    pair.client.subscribe_accounts(["5WT00000"])
    pair.pump()
    oid = pair.book.place_order(
        pair.now, [("SPY", "Buy to Open", 1)], order_type="Limit", price="-1.00"
    )
    pair.advance(1.0)
    assert pair.payloads(PlacedOrder)[-1].status == "Live"
    assert pair.payloads(PlacedOrder)[-1].price == Decimal("-1.00")
    pair.book.cancel(pair.now, oid)
    pair.advance(1.0)
    assert [o.status for o in pair.payloads(PlacedOrder)[-2:]] == ["Cancel Requested", "Cancelled"]
    with pytest.raises(LocalProtocolError):
        pair.book.cancel(pair.now, oid)
    rid = pair.book.place_order(pair.now, [("SPY", "Buy to Open", 1)], reject_reason="No BP")
    pair.advance(1.0)
    last = pair.payloads(PlacedOrder)[-1]
    assert (last.id, last.status, last.reject_reason) == (rid, "Rejected", "No BP")
    assert pair.payloads(CurrentPosition) == []  # nothing filled


def test_oco_fill_cancels_the_sibling():
    pair = Pair()
    pair.client.subscribe_accounts(["5WT00000"])
    pair.pump()
    cid = pair.book.place_complex_order(
        pair.now,
        "OCO",
        [
            {"legs": [("SPY", "Buy to Open", 5)], "order_type": "Limit", "price": "-10000"},
            {"legs": [("SPY", "Buy to Open", 5)], "order_type": "Limit", "price": "-1"},
        ],
    )
    pair.advance(2.0)
    complexes = pair.payloads(PlacedComplexOrder)
    assert complexes[0].id == cid and complexes[0].type == "OCO"
    final = complexes[-1]
    assert final.terminal_at is not None
    assert sorted(o.status for o in final.orders) == ["Cancelled", "Filled"]
    assert all(o.complex_order_id == cid for o in final.orders)


def test_notifications_reach_only_subscribers():
    pair = Pair()
    pair.client.subscribe_accounts(["OTHER"])
    pair.book.place_order(pair.now, [("SPY", "Buy to Open", 1)])
    pair.book.publish_watchlist(pair.now, "W", ["SPY"])
    pair.book.trigger_quote_alert(pair.now, "SPY", 500)
    pair.advance(1.0)
    assert pair.payloads(PlacedOrder) == []
    assert [e for e in pair.events if isinstance(e, p.NotificationReceived)] == []
    pair.client.subscribe_public_watchlists()
    pair.pump()
    pair.book.publish_watchlist(pair.now, "W", ["SPY", "QQQ"])
    pair.pump()
    (wl,) = [e.event for e in pair.events if isinstance(e, p.NotificationReceived)]
    assert wl.name == "W" and [x["symbol"] for x in wl.watchlist_entries] == ["SPY", "QQQ"]


def test_batch_mode_and_epoch_ms_updated_at():
    pair = Pair(batch=True, order_updated_at_ms=True)
    pair.client.subscribe_accounts(["5WT00000"])
    pair.pump()
    pair.book.place_order(pair.now, [("SPY", "Buy to Open", 1)])
    pair.book.place_order(pair.now, [("QQQ", "Buy to Open", 1)])
    for out in pair.book.take():
        pair.server.deliver(out)
    (frame,) = pair.server.data_to_send()
    batch = json.loads(frame)
    assert [n["data"]["underlying-symbol"] for n in batch["results"]] == ["SPY", "QQQ"]
    assert isinstance(batch["results"][0]["data"]["updated-at"], int)
    pair.client.receive_text(frame, 0)
    orders = [e.event for e in pair.client.events_received()]
    assert [o.status for o in orders] == ["Received", "Received"]


def test_idle_socket_is_closed():
    pair = Pair(idle_timeout_s=5.0)
    pair.server.tick(T0 + 4)
    assert pair.server.close is None
    pair.server.tick(T0 + 6)
    assert pair.server.close == (1000, "idle timeout")


def test_book_places_orders_on_its_own_schedule():
    book = AccountBook(Market(1), T0, config=AccountSimConfig(order_every_s=10.0, step_s=0.1))
    assert book.next_deadline() == T0 + 10
    t = T0
    while t < T0 + 35:
        t += 0.5
        book.tick(t)
    received = [o for o in book.published if o[0] == "Order" and o[1].status == "Received"]
    assert len(received) == 3


def test_connect_to_an_account_the_session_does_not_own_gets_an_error_reply():
    config = AccountSimConfig(order_every_s=None)
    server = AccountServerConnection(
        lambda v: v == f"Bearer {TOKEN}", "0badf00d", config, T0, accounts=["5WT00000"]
    )
    client = p.AccountProtocol()
    client.connect(TOKEN)
    rid = client.subscribe_accounts(["5WT00000", "5WT99999"])
    for data in client.data_to_send():
        server.receive_text(data, T0)
    for frame in server.data_to_send():
        client.receive_text(frame, 0)
    (reply,) = client.events_received()
    assert (reply.request_id, reply.ok) == (rid, False)
    assert reply.message == "unauthorized account '5WT99999'"
    assert server.accounts == set()  # neither: a refused connect subscribes nothing
    client.subscriptions.accounts.remove("5WT99999")
    client.subscribe_accounts(["5WT00000"])
    for data in client.data_to_send():
        server.receive_text(data, T0)
    for frame in server.data_to_send():
        client.receive_text(frame, 0)
    assert [r.ok for r in client.events_received()] == [True]
    assert server.accounts == {"5WT00000"}


def test_pings_keep_a_socket_alive_and_a_silent_one_is_still_closed():
    config = AccountSimConfig(order_every_s=None, idle_timeout_s=60.0)
    pinging = AccountServerConnection(lambda v: True, "00000001", config, T0)
    silent = AccountServerConnection(lambda v: True, "00000002", config, T0)
    for t in range(20, 601, 20):  # ten minutes of websocket pings every 20 s, no text at all
        pinging.receive_ping(T0 + t)
        for conn in (pinging, silent):
            conn.tick(T0 + t + 1)
    assert pinging.close is None
    assert pinging.next_deadline() == T0 + 600 + 60
    assert silent.close == (1000, "idle timeout")
    pinging.tick(T0 + 661)  # pings stop: cut one idle timeout after the last
    assert pinging.close == (1000, "idle timeout")
