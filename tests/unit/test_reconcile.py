"""What "already said" means for reconciliation (tastyrec.account.reconcile), with the
simulated book's own payloads and its REST view; no sockets, no clock."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import msgspec

from tastyrec.account.reconcile import StreamKnowledge
from tastyrec.events.account import AccountBalance, CurrentPosition, PlacedOrder
from tastyrec.sim.brokerage import AccountBook, AccountSimConfig
from tastyrec.sim.market import Market

T0 = 1_795_000_000.0


def traded_book() -> tuple[AccountBook, int]:
    book = AccountBook(Market(5), T0, config=AccountSimConfig(order_every_s=None, step_s=0.1))
    oid = book.place_order(T0, [("SPY", "Buy to Open", 10)])
    t = T0
    while t < T0 + 3:
        t += 0.05
        book.tick(t)
    return book, oid


def streamed(book: AccountBook, cls: type) -> list:
    return [p for _, p in book.published if isinstance(p, cls)]


def test_what_the_stream_said_is_not_news_and_what_it_missed_is() -> None:
    book, oid = traded_book()
    said = StreamKnowledge()
    for _, payload in book.published:
        said.note(payload)
    snapshot = [
        *book.rest_orders.values(),
        *book.rest_positions.values(),
        *book.rest_balances.values(),
    ]
    assert len(snapshot) == 3 and said.news(snapshot) == []
    # the stream missed the Filled message: the REST order is news, once
    orders = streamed(book, PlacedOrder)
    assert orders[-1].status == "Filled"
    missed = StreamKnowledge()
    for payload in orders[:-1]:
        missed.note(payload)
    [news] = missed.news(book.rest_orders.values())
    assert news.id == oid and news.status == "Filled"
    assert missed.news(book.rest_orders.values()) == []  # noted: not news again


def test_a_partial_fill_is_news_while_the_status_stays_live() -> None:
    book, _ = traded_book()
    lives = [o for o in streamed(book, PlacedOrder) if o.status == "Live"]
    first_fill = next(o for o in lives if o.legs[0].fills)
    said = StreamKnowledge()
    said.note(lives[0])  # Live, no fills
    assert said.is_news(first_fill)


def test_an_older_snapshot_than_the_stream_is_not_news() -> None:
    book, _ = traded_book()
    orders = streamed(book, PlacedOrder)
    said = StreamKnowledge()
    said.note(orders[-1])  # Filled
    stale = msgspec.structs.replace(
        orders[1], updated_at=orders[-1].updated_at - timedelta(seconds=1)
    )
    assert stale.status != "Filled" and not said.is_news(stale)


def test_marks_are_not_news_but_quantities_and_cash_are() -> None:
    book, _ = traded_book()
    [position] = book.rest_positions.values()
    [balance] = book.rest_balances.values()
    said = StreamKnowledge()
    said.note(position)
    said.note(balance)
    moved = msgspec.structs.replace(position, close_price=position.close_price + 1)
    assert not said.is_news(moved)
    assert said.is_news(msgspec.structs.replace(position, quantity=position.quantity + 1))
    richer = msgspec.structs.replace(
        balance, net_liquidating_value=balance.net_liquidating_value + 5
    )
    assert not said.is_news(richer)
    assert said.is_news(msgspec.structs.replace(balance, cash_balance=balance.cash_balance + 1))
    # Decimal equality is by value: 1.5 == 1.5000
    padded = balance.cash_balance.quantize(Decimal("0.000001"))
    assert str(padded) != str(balance.cash_balance)
    assert not said.is_news(msgspec.structs.replace(balance, cash_balance=padded))
    assert isinstance(position, CurrentPosition) and isinstance(balance, AccountBalance)
