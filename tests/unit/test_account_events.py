"""Account payload Structs: decoding the wire's traps (signs, numbers, epoch-ms times) and back."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import msgspec
import pytest

from tastyrec.events.account import (
    ACCOUNT_TYPES,
    AccountBalance,
    CurrentPosition,
    PlacedComplexOrder,
    PlacedOrder,
    QuoteAlert,
    UnderlyingYearGainSummary,
    UnknownNotification,
    Watchlist,
    decode_payload,
    encode_payload,
    wire_name,
)
from tastyrec.exceptions import SchemaError
from tastyrec.sim.brokerage import AccountBook, AccountSimConfig
from tastyrec.sim.market import Market

# the protocol doc's example order, with a limit price paid (Debit) and a fill
ORDER = {
    "id": 1,
    "account-number": "5WT00000",
    "time-in-force": "Day",
    "order-type": "Limit",
    "size": 100,
    "underlying-symbol": "AAPL",
    "underlying-instrument-type": "Equity",
    "price": "185.25",
    "price-effect": "Debit",
    "status": "Live",
    "cancellable": True,
    "editable": True,
    "edited": False,
    "updated-at": 1688584052750,  # epoch ms, as seen on the wire
    "received-at": "2023-07-05T19:07:32.444+00:00",
    "legs": [
        {
            "instrument-type": "Equity",
            "symbol": "AAPL",
            "quantity": 100,
            "remaining-quantity": 60,
            "action": "Buy to Open",
            "fills": [
                {
                    "fill-id": "f1",
                    "quantity": "40",
                    "fill-price": "185.2",
                    "filled-at": "2023-07-05T19:07:33.001+00:00",
                    "destination-venue": "XNAS",
                }
            ],
        }
    ],
    "some-future-key": {"ignored": True},
}


def test_order_signs_numbers_and_epoch_ms():
    order = decode_payload("Order", ORDER)
    assert isinstance(order, PlacedOrder)
    assert order.price == Decimal("-185.25") and order.price_effect == "Debit"
    assert order.size == Decimal(100) and order.legs[0].quantity == Decimal(100)
    assert order.updated_at == datetime(2023, 7, 5, 19, 7, 32, 750000, tzinfo=UTC)
    assert order.received_at == datetime(2023, 7, 5, 19, 7, 32, 444000, tzinfo=UTC)
    (fill,) = order.legs[0].fills
    assert fill.quantity == Decimal(40) and fill.fill_price == Decimal("185.2")
    assert fill.destination_venue == "XNAS"


def test_order_round_trips_through_the_wire_form():
    order = decode_payload("Order", ORDER)
    wire = encode_payload(order)
    assert wire["price"] == "185.25" and wire["price-effect"] == "Debit"
    assert wire["size"] == 100 and wire["legs"][0]["quantity"] == 100  # numbers, as sent
    assert wire["updated-at"] == "2023-07-05T19:07:32.750+00:00"
    assert "gtc-date" not in wire  # absent stays absent
    assert decode_payload("Order", msgspec.json.decode(msgspec.json.encode(wire))) == order


def test_credit_is_positive_and_the_sdk_agrees():
    order = decode_payload("Order", {**ORDER, "price-effect": "Credit"})
    assert order.price == Decimal("185.25")
    sdk_order = pytest.importorskip("tastytrade.order")
    assert sdk_order.PlacedOrder(**ORDER).price == decode_payload("Order", ORDER).price


def test_balance_signs_including_the_sdk_crypto_key():
    book = AccountBook(Market(0), 1_795_000_000.0, config=AccountSimConfig(order_every_s=None))
    wire = encode_payload(book.balance("5WT00000", 1_795_000_000.0))
    wire |= {
        "pending-cash": "12.5",
        "pending-cash-effect": "Debit",
        "unsettled-cryptocurrency-fiat-amount": "3",
        "unsettled-cryptocurrency-fiat-effect": "Debit",
        "buying-power-adjustment": "7",
        "buying-power-adjustment-effect": "Credit",
    }
    bal = decode_payload("AccountBalance", wire)
    assert isinstance(bal, AccountBalance)
    assert bal.pending_cash == Decimal("-12.5")
    assert bal.unsettled_cryptocurrency_fiat_amount == Decimal(-3)
    assert bal.buying_power_adjustment == Decimal(7)
    assert bal.snapshot_date == date(2026, 11, 18)
    # the doc's spelling of the effect key works too
    del wire["unsettled-cryptocurrency-fiat-effect"]
    wire["unsettled-cryptocurrency-fiat-amount-effect"] = "Debit"
    assert decode_payload("AccountBalance", wire).unsettled_cryptocurrency_fiat_amount == -3
    sdk_account = pytest.importorskip("tastytrade.account")
    sdk = sdk_account.AccountBalance(**encode_payload(bal))
    assert sdk.pending_cash == bal.pending_cash
    assert sdk.unsettled_cryptocurrency_fiat_amount == bal.unsettled_cryptocurrency_fiat_amount


def test_position_and_gain_summary_signs():
    pos = {
        "account-number": "5WT00000",
        "symbol": "SPY",
        "instrument-type": "Equity",
        "underlying-symbol": "SPY",
        "quantity": "100",
        "quantity-direction": "Short",
        "close-price": "500.1",
        "average-open-price": "499",
        "multiplier": 1,
        "cost-effect": "Credit",
        "is-suppressed": False,
        "is-frozen": False,
        "realized-day-gain": "20",
        "realized-day-gain-effect": "Debit",
        "realized-today": "20",
        "realized-today-effect": "Debit",
        "created-at": "2023-07-05T19:07:32.444+00:00",
        "updated-at": "2023-07-05T19:07:32.444+00:00",
    }
    p = decode_payload("CurrentPosition", pos)
    assert isinstance(p, CurrentPosition)
    assert p.realized_day_gain == Decimal(-20) == p.realized_today
    assert p.multiplier == Decimal(1) and p.quantity == Decimal(100)
    assert encode_payload(p)["realized-day-gain"] == "20"
    summary = {
        "year": 2026,
        "account-number": "5WT00000",
        "symbol": "SPY",
        "instrument-type": "Equity",
        "fees": "1.5",
        "fees-effect": "Debit",
        "commissions": "0",
        "commissions-effect": "None",
        "yearly-realized-gain": "10",
        "yearly-realized-gain-effect": "Credit",
        "realized-lot-gain": "10",
        "realized-lot-gain-effect": "Credit",
    }
    s = decode_payload("UnderlyingYearGainSummary", summary)
    assert isinstance(s, UnderlyingYearGainSummary)
    assert s.fees == Decimal("-1.5") and s.yearly_realized_gain == Decimal(10)


def test_every_type_has_a_wire_name_and_watchlist_defaults():
    assert {wire_name(cls) for cls in ACCOUNT_TYPES.values()} == set(ACCOUNT_TYPES)
    assert wire_name(PlacedOrder) == "Order" and wire_name(Watchlist) == "PublicWatchlists"
    wl = decode_payload("PublicWatchlists", {"name": "Crypto"})
    assert wl == Watchlist(name="Crypto", group_name="default", order_index=9999)
    with pytest.raises(SchemaError):
        wire_name(UnknownNotification)  # type: ignore[arg-type]


def test_complex_order_nests_orders():
    cx = decode_payload(
        "ComplexOrder",
        {"id": 9, "account-number": "5WT00000", "type": "OCO", "orders": [ORDER, ORDER]},
    )
    assert isinstance(cx, PlacedComplexOrder)
    assert [o.price for o in cx.orders] == [Decimal("-185.25")] * 2
    assert cx.orders[0].updated_at.year == 2023


def test_unknown_type_is_kept_raw():
    event = decode_payload("OrderChain", {"id": 3}, 1688595114405)
    assert event == UnknownNotification("OrderChain", {"id": 3}, 1688595114405)


@pytest.mark.parametrize(
    "data",
    [
        {k: v for k, v in ORDER.items() if k != "account-number"},  # required key missing
        {**ORDER, "price": "not a number"},
        {**ORDER, "id": "one"},
    ],
)
def test_bad_payload_is_a_schema_error(data):
    with pytest.raises(SchemaError, match="invalid Order notification"):
        decode_payload("Order", data)
    with pytest.raises(SchemaError, match="not an object"):
        decode_payload("QuoteAlert", ["x"])


def test_quote_alert():
    alert = decode_payload(
        "QuoteAlert",
        {
            "user-external-id": "U1",
            "symbol": "AAPL",
            "alert-external-id": "A1",
            "expires-at": 1688595114405,  # an int field, never converted to a time
            "field": "Last",
            "operator": ">",
            "threshold": "200",
            "threshold-numeric": "200.0",
            "dx-symbol": "AAPL",
        },
    )
    assert isinstance(alert, QuoteAlert)
    assert alert.expires_at == 1688595114405 and alert.threshold_numeric == Decimal(200)
