"""The simulated account over long runs: sans-I/O, the clock injected (time jumps from one deadline
of the book to the next), so a simulated day takes seconds."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from tastyrec.events.account import AccountBalance, CurrentPosition, PlacedOrder
from tastyrec.sim.brokerage import AccountBook, AccountSimConfig
from tastyrec.sim.market import Market

T0 = 1_795_000_000.0  # 2026-11-18 09:46:40 UTC; nothing below depends on the hour or the zone
DAY_S = 86_400.0


def test_the_account_trading_by_itself_for_a_day_stays_bounded_and_its_money_adds_up():
    """Orders every 5 s for 24 simulated hours (~17,000 orders): no exception; every balance
    published equals the starting cash plus the fills published before it, every position the sum
    of its fills; positions stay within the configured value, cash and net liq stay bounded."""
    config = AccountSimConfig(order_every_s=5.0)
    cap = config.auto_max_position_value
    book = AccountBook(Market(11), T0, config=config)
    fills: dict[str, tuple[str, Decimal]] = {}  # fill id -> (symbol, signed cash change)
    shares: dict[str, Decimal] = defaultdict(Decimal)  # symbol -> signed filled quantity
    cash = config.starting_cash
    received = balances = positions = 0
    largest_position = Decimal(0)
    lowest_nlv = highest_nlv = config.starting_cash
    now = T0
    while now < T0 + DAY_S:
        now = book.next_deadline()
        assert now < float("inf")
        book.tick(now)
        for out in book.take():
            payload = out.payload
            if isinstance(payload, PlacedOrder):
                received += payload.status == "Received"
                for leg in payload.legs:
                    sign = -1 if leg.action.startswith("Sell") else 1
                    for fill in leg.fills:
                        if fill.fill_id not in fills:
                            flow = -sign * fill.quantity * fill.fill_price
                            fills[fill.fill_id] = (leg.symbol, flow)
                            cash += flow
                            shares[leg.symbol] += sign * fill.quantity
            elif isinstance(payload, CurrentPosition):
                positions += 1
                signed = (
                    -payload.quantity if payload.quantity_direction == "Short" else payload.quantity
                )
                assert signed == shares[payload.symbol]
                largest_position = max(largest_position, payload.quantity * payload.close_price)
            elif isinstance(payload, AccountBalance):
                balances += 1
                b = payload
                assert b.cash_balance == cash
                assert b.net_liquidating_value == (
                    b.cash_balance
                    + b.long_equity_value
                    - b.short_equity_value
                    + b.long_derivative_value
                    - b.short_derivative_value
                )
                lowest_nlv = min(lowest_nlv, b.net_liquidating_value)
                highest_nlv = max(highest_nlv, b.net_liquidating_value)
    assert received >= DAY_S / 5.0 * 0.9  # it kept trading all day
    assert balances >= received * 0.9 and positions >= received * 0.9
    # the cap holds at the mark when an order is placed; prices move a little before it fills
    assert largest_position <= cap * Decimal("1.05")
    assert abs(cash - config.starting_cash) <= 5 * len(shares) * cap
    assert config.starting_cash / 2 < lowest_nlv <= highest_nlv < config.starting_cash * 2
    assert {s: book.positions[(book.accounts[0], s)].quantity for s in shares} == dict(shares)
    # memory does not grow with the run: ended orders and published payloads are capped
    assert len(book.orders) <= 1_100 and len(book.published) <= 10_000


def test_orders_placed_faster_than_they_fill_never_over_close():
    """With an order every 0.1 s (each takes ~1 s to fill) many are working at once: sizes come
    from the position plus the working orders, so no position ever exceeds the cap."""
    config = AccountSimConfig(order_every_s=0.1)
    book = AccountBook(Market(2), T0, config=config)
    now = T0
    largest = Decimal(0)
    while now < T0 + 300:
        now = book.next_deadline()
        book.tick(now)
        for out in book.take():
            if isinstance(out.payload, CurrentPosition):
                p = out.payload
                largest = max(largest, p.quantity * p.close_price)
    assert Decimal(0) < largest <= config.auto_max_position_value * Decimal("1.05")
