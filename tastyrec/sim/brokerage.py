"""The simulated brokerage, sans-I/O: accounts, orders walking their lifecycle, fills, positions,
balances, and the notifications they publish.

Role: :class:`AccountBook` is the account (orders, fills, positions, cash) and decides *what*
happens and when; it publishes :class:`Outgoing` notifications, which
:class:`~.account_server.AccountServerConnection` hands to the sockets subscribed to them. It
takes the time (epoch seconds) as an argument and never reads a clock; :mod:`.account` runs it over
websockets. Payloads are the Structs of :mod:`tastyrec.events.account`, encoded with
:func:`~tastyrec.events.account.encode_payload`, so client and fake server cannot drift apart. This
module must not import websockets, anyio, asyncio, ``time`` or the protocol server.

Why over 600 lines: :class:`AccountBook` is one model whose orders, fills, positions, cash and
published payloads share state and invariants (cash moves exactly by fill notional, a position is
the sum of its fills); cut in two, each half would reach into the other's private fields.

Theory of operation
-------------------
*Orders* (docs/account-streamer.md#notifications). Each order is a generator that yields the delay
before its next step: ``Received`` at once, then ``Routed``, ``In Flight`` and ``Live`` ``step_s``
apart. A live order fills when it is marketable against the simulated :class:`~.market.Market` (a
market order always is; a limit order when the legs' prices net to no worse than its limit): buys
at the ask, sells at the bid, each leg in ``fills_per_leg`` partial fills ``fill_step_s`` apart,
every fill published as a full ``Order``. A single-leg order stays ``Live`` until its last fill; a
multi-leg order is marked ``Filled`` when its first leg is fully filled (that message shows only
that leg's fills) and the other legs' fills follow at once, the last message carrying them all.
Then a ``CurrentPosition`` for each leg, ``UnderlyingYearGainSummary`` when a fill realized a gain,
and one ``AccountBalance``. :meth:`AccountBook.cancel` walks ``Cancel Requested`` -> ``Cancelled``;
:meth:`AccountBook.reject` ends an order ``Rejected`` at once.

*Consistency.* Cash moves by exactly the signed fill notional (buy: ``-qty * price * multiplier``);
a position's quantity is the sum of its fills; its average open price is the weighted price of the
fills that opened it, and closing fills realize ``(price - average) * qty * multiplier``. Balances
mark positions at the market mid: ``net_liquidating_value = cash + long values - short values``.

*The book's own orders* (``order_every_s``) open, add to or close a position in one of a few
equities, sized from the position plus what working orders will still fill and capped at
``auto_max_position_value`` at the mark, so the account stays bounded however long it runs; ended
orders beyond the last 1,000 and payloads beyond the last 10,000 are forgotten, so its memory does
not grow either.

*Complex orders.* OCO, OTO and OTOCO: the sub-orders are ordinary orders with a
``complex-order-id``; the ``ComplexOrder`` is published when they are placed and when it ends. When
an OCO leg fills, its siblings are cancelled; an OTO's orders are placed once its trigger fills.
"""

from __future__ import annotations

import random
import re
from collections import deque
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final

import msgspec

from ..events.account import (
    AccountBalance,
    AccountEvent,
    CurrentPosition,
    ExternalTransaction,
    FillInfo,
    Leg,
    PlacedComplexOrder,
    PlacedOrder,
    QuoteAlert,
    TradingStatus,
    UnderlyingYearGainSummary,
    Watchlist,
    encode_payload,
    wire_name,
)
from ..exceptions import LocalProtocolError
from .market import Market

__all__ = (
    "DEFAULT_ACCOUNT",
    "AccountBook",
    "AccountSimConfig",
    "Outgoing",
    "occ_to_streamer_symbol",
)

DEFAULT_ACCOUNT: Final = "5WT00000"
_CENT: Final = Decimal("0.01")
_ZERO: Final = Decimal(0)
_TERMINAL: Final = frozenset({"Filled", "Cancelled", "Rejected", "Expired", "Removed"})
_OCC_RE: Final = re.compile(r"^(?P<root>[A-Z0-9]{1,6}) *(?P<date>\d{6})(?P<cp>[CP])(?P<k>\d{8})$")
#: ended orders kept (``cancel``/``reject`` of an older one: "no order"), payloads kept in
#: ``published``: a book that trades for days holds no more than this
_KEEP_ENDED_ORDERS: Final = 1_000
_KEEP_PUBLISHED: Final = 10_000
#: symbols the book trades by itself (``order_every_s``)
_AUTO_SYMBOLS: Final = ("SPY", "AAPL", "QQQ", "MSFT", "IWM")


@dataclass(frozen=True)
class AccountSimConfig:
    """Timings and modes of the account simulator.

    Attributes:
        step_s: seconds between an order's status changes (Received -> Routed -> In Flight -> Live).
        fill_step_s: seconds between partial fills of a leg.
        fills_per_leg: how many partial fills a leg is split into (at most its quantity).
        order_every_s: the book places an order by itself this often (None: never).
        idle_timeout_s: a socket that sends nothing, not even a ping, this long is closed (the
            real server: ~60 s).
        strict: reject every action but ``connect`` before a successful ``connect``
            (``connect-not-completed``); off by default, since the real server accepts watchlist
            and quote-alert subscriptions without it.
        batch: send notifications produced together as one ``{"results": [...]}`` frame.
        order_updated_at_ms: send order ``updated-at`` as epoch milliseconds (seen on the wire).
        starting_cash: each account's cash at start.
        auto_max_position_value: the book's own orders never take a position worth more than
            this at the mark (default: the starting cash shared among the symbols it trades).
        drop_order_every: chaos: silently drop every Nth ``Order`` notification (None: none),
            as production has lost order events (docs/account-streamer.md#lost-order-events); the
            REST API still shows the orders' state (:class:`~.rest.ApiSimulator`).
    """

    step_s: float = 0.2
    fill_step_s: float = 0.1
    fills_per_leg: int = 2
    order_every_s: float | None = 15.0
    idle_timeout_s: float = 60.0
    strict: bool = False
    batch: bool = False
    order_updated_at_ms: bool = False
    starting_cash: Decimal = Decimal("100000")
    auto_max_position_value: Decimal = Decimal("20000")
    drop_order_every: int | None = None


@dataclass(slots=True, eq=False)
class Outgoing:
    """A notification for the sockets: who may see it (``topic``, ``account``) and its frame.

    The frame is encoded when first asked for (a socket subscribed to it), not when published:
    a book that runs for days with nobody listening spends nothing on JSON.
    """

    topic: str  # "account", "public-watchlists" or "quote-alerts"
    account: str | None
    type_name: str
    payload: AccountEvent | None  # None: a raw frame (emit_raw)
    timestamp_ms: int
    updated_at_ms: bool = False  # send order ``updated-at`` as epoch ms
    raw: dict[str, Any] | None = None
    _frame: dict[str, Any] | None = field(default=None, init=False, repr=False)

    @property
    def frame(self) -> dict[str, Any]:
        """``{"type", "data", "timestamp"}``, encoded once."""
        if self._frame is None:
            if self.raw is not None:
                self._frame = self.raw
            else:
                assert self.payload is not None
                data = encode_payload(self.payload)
                if self.updated_at_ms:
                    data["updated-at"] = self.timestamp_ms
                self._frame = {"type": self.type_name, "data": data, "timestamp": self.timestamp_ms}
        return self._frame


def occ_to_streamer_symbol(symbol: str) -> str:
    """The dxFeed symbol of an OCC option symbol: ``SPY   261218C00600000`` -> ``.SPY261218C600``;
    other symbols are returned unchanged."""
    match = _OCC_RE.match(symbol)
    if match is None:
        return symbol
    strike = Decimal(match["k"]) / 1000
    text = f"{strike.normalize():f}"
    return f".{match['root']}{match['date']}{match['cp']}{text}"


def _dt(now: float) -> datetime:
    return datetime.fromtimestamp(round(now, 3), UTC)


def _effect(value: Decimal) -> str:
    return "Debit" if value < 0 else "Credit" if value > 0 else "None"


def _cents(x: float | Decimal) -> Decimal:
    return Decimal(str(x)).quantize(_CENT, ROUND_HALF_UP)


@dataclass
class _Leg:
    symbol: str
    instrument_type: str
    action: str
    quantity: Decimal
    fills: list[FillInfo] = field(default_factory=list)

    @property
    def sign(self) -> int:
        return -1 if self.action.startswith("Sell") else 1

    @property
    def remaining(self) -> Decimal:
        return self.quantity - sum((f.quantity for f in self.fills), _ZERO)


@dataclass
class _Order:
    id: int
    account: str
    order_type: str
    time_in_force: str
    legs: list[_Leg]
    price: Decimal | None  # signed: negative = debit
    placed: float
    status: str = "Received"
    reject_reason: str | None = None
    complex_id: int | None = None
    times: dict[str, float] = field(default_factory=dict)
    shown_legs: int = 0  # multi-leg: how many legs the Filled messages show so far

    @property
    def underlying(self) -> str:
        return _underlying(self.legs[0].symbol)

    @property
    def size(self) -> Decimal:
        return min(leg.quantity for leg in self.legs)


@dataclass
class _Complex:
    id: int
    account: str
    type: str
    order_ids: list[int]
    trigger_id: int | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)  # OTO orders, placed on fill
    terminal_at: float | None = None


@dataclass
class _Position:
    account: str
    symbol: str
    instrument_type: str
    multiplier: Decimal
    quantity: Decimal = _ZERO  # signed
    average_open: Decimal = _ZERO
    realized: Decimal = _ZERO
    created: float = 0.0


def _underlying(symbol: str) -> str:
    match = _OCC_RE.match(symbol)
    return match["root"] if match else symbol


def _instrument_type(symbol: str) -> str:
    return "Equity Option" if _OCC_RE.match(symbol) else "Equity"


_Step = Generator[float, None, None]


class AccountBook:
    """A simulated brokerage: accounts, orders walking their lifecycle, positions and cash.

    Example usage::

        book = AccountBook(Market(0), now=t0)
        oid = book.place_order(t0, [("SPY", "Buy to Open", 100)])
        book.tick(t0 + 5)
        for out in book.take(): ...   # Order, CurrentPosition, AccountBalance notifications

    Args:
        market: prices for fills and marks.
        now: epoch seconds at start.
        accounts: the account numbers (the first is the default for every method).
        seed: drives the orders the book places by itself.
        config: timings and modes.
    """

    def __init__(
        self,
        market: Market,
        now: float,
        accounts: Sequence[str] = (DEFAULT_ACCOUNT,),
        seed: int = 0,
        config: AccountSimConfig | None = None,
    ) -> None:
        if not accounts:
            raise ValueError("an account book needs at least one account")
        self.market = market
        self.config = config if config is not None else AccountSimConfig()
        self.accounts = list(accounts)
        self.cash = dict.fromkeys(self.accounts, self.config.starting_cash)
        self.orders: dict[int, _Order] = {}
        self.positions: dict[tuple[str, str], _Position] = {}
        self.complex_orders: dict[int, _Complex] = {}
        #: the last payloads published, by wire type (the last one per key wins on the client)
        self.published: deque[tuple[str, AccountEvent]] = deque(maxlen=_KEEP_PUBLISHED)
        self._ended: deque[int] = deque()  # ended orders still in ``orders``, oldest first
        self._random = random.Random(seed)
        self._ids = 1000
        self._steps: dict[int, tuple[float, _Step]] = {}
        self._out: list[Outgoing] = []
        self._now_s = now  # the time of the step or action being processed
        self._trading_status = {a: self._initial_status(a, now) for a in self.accounts}
        # What the REST API serves (``/accounts/{n}/orders/live``, ``/positions``, ``/balances``):
        # the last payload published per order, position and account. Each value is an
        # immutable Struct replaced whole, so the API's HTTP thread reads them safely (a C-level
        # copy of the dict under the GIL) while the event loop runs the book.
        self.rest_orders: dict[int, PlacedOrder] = {}
        self.rest_positions: dict[tuple[str, str], CurrentPosition] = {}
        self.rest_balances = {a: self.balance(a, now) for a in self.accounts}
        every = self.config.order_every_s
        self._next_auto = now + every if every is not None else None

    # --- public actions --------------------------------------------------------------------

    def place_order(
        self,
        now: float,
        legs: Iterable[tuple[str, str, int | Decimal]],
        *,
        order_type: str = "Market",
        price: Decimal | float | str | None = None,
        account: str | None = None,
        time_in_force: str = "Day",
        reject_reason: str | None = None,
        complex_id: int | None = None,
    ) -> int:
        """Place an order; it is published ``Received`` at once and walks on by :meth:`tick`.

        Args:
            now: epoch seconds.
            legs: ``(symbol, action, quantity)``: equities (``"SPY"``) or OCC option symbols
                (``"SPY   261218C00600000"``); actions ``Buy to Open``, ``Sell to Close``...
            order_type: ``Market`` or ``Limit``.
            price: the limit price, signed the SDK's way (negative = debit); ``Limit`` only.
            account: the account (default: the first).
            time_in_force: echoed as is.
            reject_reason: reject the order after ``Received`` with this reason.
            complex_id: the complex order it belongs to.

        Returns:
            The order id.
        """
        self._now_s = now
        account = self._account(account)
        made = [_Leg(sym, _instrument_type(sym), action, Decimal(qty)) for sym, action, qty in legs]
        if not made:
            raise ValueError("an order needs at least one leg")
        for leg in made:
            if leg.quantity <= 0 or leg.action not in _ACTIONS:
                raise ValueError(f"bad leg {(leg.symbol, leg.action, leg.quantity)!r}")
        if order_type not in ("Market", "Limit"):
            raise ValueError(f"unsupported order type {order_type!r} (Market or Limit)")
        limit = None if price is None else Decimal(str(price))
        if (order_type == "Limit") != (limit is not None):
            raise ValueError("a Limit order needs a price, a Market order takes none")
        self._ids += 1
        order = _Order(
            self._ids, account, order_type, time_in_force, made, limit, now, complex_id=complex_id
        )
        order.reject_reason = reject_reason
        order.times["received"] = now
        self.orders[order.id] = order
        self._publish_order(order, now)
        self._start(order.id, self._lifecycle(order), now)
        return order.id

    def cancel(self, now: float, order_id: int) -> None:
        """Cancel a working order: ``Cancel Requested`` now, ``Cancelled`` one step later."""
        self._now_s = now
        order = self._order(order_id)
        if order.status in _TERMINAL or order.status == "Cancel Requested":
            raise LocalProtocolError(f"order {order_id} cannot be cancelled: {order.status!r}")
        order.status = "Cancel Requested"
        self._publish_order(order, now)
        self._start(order_id, self._cancelling(order), now)

    def reject(self, now: float, order_id: int, reason: str = "Rejected by the simulator") -> None:
        """Reject a working order that has no fills at once (``Rejected``, terminal)."""
        self._now_s = now
        order = self._order(order_id)
        if order.status in _TERMINAL or any(leg.fills for leg in order.legs):
            raise LocalProtocolError(f"order {order_id} cannot be rejected: {order.status!r}")
        self._steps.pop(order_id, None)
        self._end(order, "Rejected", now, reason)

    def place_complex_order(
        self,
        now: float,
        type: str,
        orders: Sequence[dict[str, Any]],
        *,
        trigger: dict[str, Any] | None = None,
        account: str | None = None,
    ) -> int:
        """Place an OCO (``orders``), OTO (``trigger`` then ``orders``) or OTOCO order.

        Each order is the keyword arguments of :meth:`place_order` (``legs``, ``order_type``,
        ``price``). Returns the complex order id.
        """
        if type not in ("OCO", "OTO", "OTOCO"):
            raise ValueError(f"unsupported complex order type {type!r}")
        if (trigger is None) != (type == "OCO") or not orders:
            raise ValueError(f"a {type} order needs {'no ' if type == 'OCO' else 'a '}trigger")
        account = self._account(account)
        self._ids += 1
        cx = _Complex(self._ids, account, type, [])
        self.complex_orders[cx.id] = cx
        if trigger is not None:
            cx.trigger_id = self.place_order(now, account=account, complex_id=cx.id, **trigger)
            cx.pending = list(orders)
        else:
            for spec in orders:
                cx.order_ids.append(
                    self.place_order(now, account=account, complex_id=cx.id, **spec)
                )
        self._publish_complex(cx, now)
        return cx.id

    def deposit(self, now: float, amount: Decimal | float | str, account: str | None = None) -> int:
        """Move money in (positive) or out (negative): ExternalTransaction, then AccountBalance."""
        account = self._account(account)
        value = Decimal(str(amount))
        self.cash[account] += value
        self._ids += 1
        day = _dt(now).date()
        tx = ExternalTransaction(
            id=self._ids,
            account_number=account,
            amount=abs(value),
            updated_at=_dt(now),
            bank_account_type="CHECKING",
            banking_date=day,
            created_at=_dt(now),
            direction="Incoming" if value >= 0 else "Outgoing",
            disbursement_type="ACH",
            ext_transfer_id=f"SIM-{self._ids}",
            funds_available_date=day,
            is_cancelable=False,
            is_clearing_accepted=True,
            state="Completed",
            transfer_method="ACH",
        )
        self._emit("account", account, tx, now)
        self._emit("account", account, self.balance(account, now), now)
        return tx.id

    def trigger_quote_alert(
        self, now: float, symbol: str, threshold: Decimal | float | str, operator: str = ">"
    ) -> None:
        """Publish a triggered ``QuoteAlert`` (to sockets subscribed to quote alerts)."""
        self._ids += 1
        value = Decimal(str(threshold))
        alert = QuoteAlert(
            user_external_id="U0000000001",
            symbol=symbol,
            alert_external_id=f"A{self._ids}",
            field="Last",
            operator=operator,
            threshold=str(value),
            expires_at=int(now * 1000) + 86_400_000,
            completed_at=_dt(now),
            created_at=_dt(now - 3600),
            triggered_at=_dt(now),
            threshold_numeric=value,
            dx_symbol=symbol,
        )
        self._emit("quote-alerts", None, alert, now)

    def publish_watchlist(self, now: float, name: str, symbols: Iterable[str]) -> None:
        """Publish a changed public watchlist (``PublicWatchlists``)."""
        entries = [{"symbol": s, "instrument-type": _instrument_type(s)} for s in symbols]
        self._emit("public-watchlists", None, Watchlist(name=name, watchlist_entries=entries), now)

    def update_trading_status(self, now: float, account: str | None = None, **changes: Any) -> None:
        """Change and publish an account's ``TradingStatus`` (e.g. ``is_closing_only=True``)."""
        account = self._account(account)
        status = msgspec.structs.replace(
            self._trading_status[account], updated_at=_dt(now), **changes
        )
        self._trading_status[account] = status
        self._emit("account", account, status, now)

    def emit_raw(self, now: float, type_name: str, data: Any, account: str | None = None) -> None:
        """Publish any notification as it is (unknown types, bad payloads) to the account."""
        ms = int(now * 1000)
        frame = {"type": type_name, "data": data, "timestamp": ms}
        self._out.append(
            Outgoing("account", self._account(account), type_name, None, ms, raw=frame)
        )

    # --- state -----------------------------------------------------------------------------

    def balance(self, account: str, now: float) -> AccountBalance:
        """The account's balances now, positions marked at the market mid."""
        long_eq = short_eq = long_der = short_der = _ZERO
        for pos in self.positions.values():
            if pos.account != account or pos.quantity == 0:
                continue
            value = abs(pos.quantity) * self._mark(pos.symbol, now) * pos.multiplier
            if pos.instrument_type == "Equity":
                long_eq, short_eq = (
                    (long_eq + value, short_eq) if pos.quantity > 0 else (long_eq, short_eq + value)
                )
            else:
                long_der, short_der = (
                    (long_der + value, short_der)
                    if pos.quantity > 0
                    else (long_der, short_der + value)
                )
        cash = self.cash[account]
        nlv = cash + long_eq - short_eq + long_der - short_der
        requirement = _cents((short_eq + long_eq) * Decimal("0.25") + short_der)
        equity_bp = max(_ZERO, _cents((nlv - requirement) * 2))
        derivative_bp = max(_ZERO, _cents(nlv - requirement))
        z = _ZERO
        return AccountBalance(
            account_number=account,
            cash_balance=_cents(cash),
            long_equity_value=_cents(long_eq),
            short_equity_value=_cents(short_eq),
            long_derivative_value=_cents(long_der),
            short_derivative_value=_cents(short_der),
            long_futures_value=z,
            short_futures_value=z,
            long_futures_derivative_value=z,
            short_futures_derivative_value=z,
            long_margineable_value=_cents(long_eq),
            short_margineable_value=_cents(short_eq),
            margin_equity=_cents(nlv),
            equity_buying_power=equity_bp,
            derivative_buying_power=derivative_bp,
            day_trading_buying_power=z,
            futures_margin_requirement=z,
            available_trading_funds=derivative_bp,
            maintenance_requirement=requirement,
            maintenance_call_value=z,
            reg_t_call_value=z,
            day_trading_call_value=z,
            day_equity_call_value=z,
            net_liquidating_value=_cents(nlv),
            cash_available_to_withdraw=max(_ZERO, _cents(min(cash, derivative_bp))),
            day_trade_excess=derivative_bp,
            pending_cash=z,
            pending_cash_effect="None",
            long_cryptocurrency_value=z,
            short_cryptocurrency_value=z,
            cryptocurrency_margin_requirement=z,
            unsettled_cryptocurrency_fiat_amount=z,
            unsettled_cryptocurrency_fiat_effect="None",
            closed_loop_available_balance=_cents(cash),
            equity_offering_margin_requirement=z,
            long_bond_value=z,
            bond_margin_requirement=z,
            used_derivative_buying_power=_cents(short_der),
            snapshot_date=_dt(now).date(),
            reg_t_margin_requirement=requirement,
            futures_overnight_margin_requirement=z,
            futures_intraday_margin_requirement=z,
            maintenance_excess=derivative_bp,
            pending_margin_interest=z,
            effective_cryptocurrency_buying_power=z,
            updated_at=_dt(now),
            time_of_day="EOD" if _dt(now).hour >= 21 else "BOD",
            currency="USD",
        )

    def position(self, account: str, symbol: str, now: float) -> CurrentPosition:
        """The position in ``symbol`` now (quantity 0 once closed)."""
        pos = self.positions[(account, symbol)]
        qty = pos.quantity
        mark = self._mark(symbol, now)
        today = _dt(now).date()
        gain = _cents(pos.realized)
        return CurrentPosition(
            account_number=account,
            symbol=symbol,
            instrument_type=pos.instrument_type,
            underlying_symbol=_underlying(symbol),
            quantity=abs(qty),
            quantity_direction="Long" if qty > 0 else "Short" if qty < 0 else "Zero",
            close_price=mark,
            average_open_price=pos.average_open,
            multiplier=pos.multiplier,
            cost_effect="Credit" if qty < 0 else "Debit",
            is_suppressed=False,
            is_frozen=False,
            realized_day_gain=gain,
            realized_day_gain_effect=_effect(gain),
            realized_day_gain_date=today,
            realized_today=gain,
            realized_today_effect=_effect(gain),
            realized_today_date=today,
            created_at=_dt(pos.created),
            updated_at=_dt(now),
            mark=mark,
            mark_price=mark,
            restricted_quantity=_ZERO,
            streamer_symbol=occ_to_streamer_symbol(symbol),
        )

    # --- time --------------------------------------------------------------------------------

    def next_deadline(self) -> float:
        """When :meth:`tick` next has something to do (``inf`` if never)."""
        times = [t for t, _ in self._steps.values()]
        if self._next_auto is not None:
            times.append(self._next_auto)
        return min(times, default=float("inf"))

    def tick(self, now: float) -> None:
        """Run every step due by ``now`` (in time order), and the self-placed orders."""
        if self._next_auto is not None and now >= self._next_auto:
            every = self.config.order_every_s
            assert every is not None
            self._next_auto = max(self._next_auto + every, now)
            self._auto_order(now)
        for _ in range(10_000):  # bounded: a step never schedules in the past forever
            due = [(t, oid) for oid, (t, _) in self._steps.items() if t <= now]
            if not due:
                return
            t, oid = min(due)
            _, gen = self._steps.pop(oid)
            self._now_s = t
            try:
                delay = next(gen)
            except StopIteration:
                continue
            if oid not in self._steps:  # the step did not replace the generator (cancel)
                self._steps[oid] = (t + delay, gen)

    def take(self) -> list[Outgoing]:
        """The notifications produced since the last call, in order."""
        out, self._out = self._out, []
        return out

    # --- lifecycle -------------------------------------------------------------------------

    def _start(self, oid: int, gen: _Step, now: float) -> None:
        # the first step only waits: run it now so the next one is due at now + its delay
        self._steps[oid] = (now + next(gen), gen)

    def _lifecycle(self, order: _Order) -> _Step:
        cfg = self.config
        yield cfg.step_s
        if order.reject_reason is not None:
            self._end(order, "Rejected", self._now_s, order.reject_reason)
            return
        for status in ("Routed", "In Flight", "Live"):
            now = self._now_s
            order.status = status
            order.times[status] = now
            self._publish_order(order, now)
            yield cfg.step_s
        while True:
            now = self._now_s
            prices = self._prices(order, now)
            if self._marketable(order, prices):
                break
            yield cfg.step_s  # a resting limit order: look again later
        for i, leg in enumerate(order.legs):
            chunks = _chunks(leg.quantity, cfg.fills_per_leg)
            for j, qty in enumerate(chunks):
                now = self._now_s
                price = prices[i] if j == 0 else self._leg_price(leg, now)
                self._fill(order, leg, qty, price, now)
                last_of_leg = j == len(chunks) - 1
                if i == 0:
                    if last_of_leg:
                        order.shown_legs = 1
                        self._end(order, "Filled", now, settle=False)
                    else:
                        self._publish_order(order, now)
                        yield cfg.fill_step_s
                else:  # the other legs' fills follow at once
                    order.shown_legs = i + 1
                    self._publish_order(order, now)
        self._settle(order, self._now_s)

    def _cancelling(self, order: _Order) -> _Step:
        yield self.config.step_s
        self._end(order, "Cancelled", self._now_s)

    def _end(
        self,
        order: _Order,
        status: str,
        now: float,
        reason: str | None = None,
        *,
        settle: bool = True,
    ) -> None:
        order.status = status
        order.times["terminal"] = now
        if order.complex_id is None:  # complex orders keep theirs: their snapshots show them
            self._ended.append(order.id)
            while len(self._ended) > _KEEP_ENDED_ORDERS:
                forgotten = self._ended.popleft()
                del self.orders[forgotten]
                self.rest_orders.pop(forgotten, None)
        if status == "Cancelled":
            order.times["cancelled"] = now
        if reason is not None:
            order.reject_reason = reason
        self._publish_order(order, now)
        if status == "Filled" and settle:
            self._settle(order, now)
        elif status != "Filled":
            self._complex_update(order, now)

    def _settle(self, order: _Order, now: float) -> None:
        """After the last fill: positions, realized gains, the balance, complex orders."""
        touched: list[str] = []
        gains: set[str] = set()
        for leg in order.legs:
            if leg.symbol not in touched:
                touched.append(leg.symbol)
        for symbol in touched:
            self._emit("account", order.account, self.position(order.account, symbol, now), now)
            pos = self.positions[(order.account, symbol)]
            if pos.realized != 0:
                gains.add(_underlying(symbol))
        for underlying in sorted(gains):
            self._emit(
                "account", order.account, self._year_gain(order.account, underlying, now), now
            )
        self._emit("account", order.account, self.balance(order.account, now), now)
        self._complex_update(order, now)

    def _fill(self, order: _Order, leg: _Leg, qty: Decimal, price: Decimal, now: float) -> None:
        n = sum(len(lg.fills) for lg in order.legs) + 1
        leg.fills.append(
            FillInfo(
                fill_id=f"{order.id}-{n}",
                quantity=qty,
                fill_price=price,
                filled_at=_dt(now),
                destination_venue="SIM",
                ext_group_fill_id=f"G{order.id}",
                ext_exec_id=f"E{order.id}-{n}",
            )
        )
        key = (order.account, leg.symbol)
        pos = self.positions.get(key)
        if pos is None:
            mult = Decimal(100) if leg.instrument_type == "Equity Option" else Decimal(1)
            pos = self.positions[key] = _Position(
                order.account, leg.symbol, leg.instrument_type, mult, created=now
            )
        signed = qty * leg.sign
        self.cash[order.account] -= signed * price * pos.multiplier
        old = pos.quantity
        if old == 0 or (old > 0) == (signed > 0):  # opening
            total = abs(old) + qty
            pos.average_open = (abs(old) * pos.average_open + qty * price) / total
            pos.average_open = pos.average_open.quantize(Decimal("0.0001"), ROUND_HALF_UP)
        else:  # closing (and maybe reversing)
            closed = min(qty, abs(old))
            direction = 1 if old > 0 else -1
            pos.realized += (price - pos.average_open) * closed * direction * pos.multiplier
            if qty > abs(old):
                pos.average_open = price
        pos.quantity = old + signed
        if pos.quantity == 0:
            pos.average_open = _ZERO

    def _prices(self, order: _Order, now: float) -> list[Decimal]:
        return [self._leg_price(leg, now) for leg in order.legs]

    def _leg_price(self, leg: _Leg, now: float) -> Decimal:
        bid, ask = self.market.bid_ask(occ_to_streamer_symbol(leg.symbol), int(now * 1000))
        return max(_CENT, _cents(ask if leg.sign > 0 else bid))

    def _mark(self, symbol: str, now: float) -> Decimal:
        bid, ask = self.market.bid_ask(occ_to_streamer_symbol(symbol), int(now * 1000))
        return max(_CENT, _cents((bid + ask) / 2))

    def _marketable(self, order: _Order, prices: list[Decimal]) -> bool:
        if order.price is None:
            return True
        size = order.size
        paying = sum(
            (p * leg.sign * leg.quantity / size for p, leg in zip(prices, order.legs, strict=True)),
            _ZERO,
        )
        return paying <= -order.price

    def _auto_order(self, now: float) -> None:
        """Place the book's own order (``order_every_s``): open, add to or close one position.

        Sizes come from the *exposure*, the position plus what working orders will still fill,
        so orders placed faster than they fill never over-close; an opening or adding order keeps
        the exposure within ``auto_max_position_value`` at the mark, and a full position is
        closed. Every position thus stays bounded however long the book runs.
        """
        r = self._random
        account = self.accounts[0]
        symbol = r.choice(_AUTO_SYMBOLS)
        exposure = self._exposure(account, symbol)
        limit = int(self.config.auto_max_position_value / self._mark(symbol, now))
        room = limit - abs(exposure)
        if exposure != 0 and (room < 1 or r.random() < 0.5):
            action = "Sell to Close" if exposure > 0 else "Buy to Close"
            qty = abs(exposure)
        elif room < 1:
            return  # the cap is below one share of it: nothing to do
        else:
            side = (exposure > 0) if exposure != 0 else r.random() < 2 / 3
            action = "Buy to Open" if side else "Sell to Open"
            qty = Decimal(r.randint(1, int(room)))
        self.place_order(now, [(symbol, action, qty)], account=account)

    def _exposure(self, account: str, symbol: str) -> Decimal:
        """The signed position in ``symbol`` once every working order has filled."""
        pos = self.positions.get((account, symbol))
        total = pos.quantity if pos is not None else _ZERO
        for oid in self._steps:  # every working order has a next step
            order = self.orders[oid]
            if order.account != account or order.status in _TERMINAL:
                continue
            for leg in order.legs:
                if leg.symbol == symbol:
                    total += leg.sign * leg.remaining
        return total

    # --- publishing --------------------------------------------------------------------------

    def _snapshot(self, order: _Order, now: float) -> PlacedOrder:
        multi_filled = len(order.legs) > 1 and order.shown_legs > 0
        legs = []
        for i, leg in enumerate(order.legs):
            fills = list(leg.fills) if not multi_filled or i < order.shown_legs else []
            shown = leg.quantity - sum((f.quantity for f in fills), _ZERO)
            legs.append(
                Leg(
                    instrument_type=leg.instrument_type,
                    symbol=leg.symbol,
                    action=leg.action,
                    quantity=leg.quantity,
                    remaining_quantity=shown,
                    fills=fills,
                )
            )
        t = order.times
        working = order.status not in _TERMINAL
        return PlacedOrder(
            id=order.id,
            account_number=order.account,
            time_in_force=order.time_in_force,
            order_type=order.order_type,
            size=order.size,
            underlying_symbol=order.underlying,
            underlying_instrument_type="Equity",
            price=order.price,
            price_effect=None if order.price is None else _effect(order.price),
            status=order.status,
            cancellable=working and order.status != "Cancel Requested",
            editable=working and order.status != "Cancel Requested",
            edited=False,
            received_at=_dt(t["received"]),
            in_flight_at=_dt(t["In Flight"]) if "In Flight" in t else None,
            live_at=_dt(t["Live"]) if "Live" in t else None,
            cancelled_at=_dt(t["cancelled"]) if "cancelled" in t else None,
            terminal_at=_dt(t["terminal"]) if "terminal" in t else None,
            updated_at=_dt(now),
            reject_reason=order.reject_reason if order.status == "Rejected" else None,
            complex_order_id=order.complex_id,
            destination_venue="SIM" if "Routed" in t else None,
            ext_client_order_id=f"SIM{order.id}",
            source="tastyrec-sim",
            legs=legs,
        )

    def _publish_order(self, order: _Order, now: float) -> None:
        placed = self._snapshot(order, now)
        self._emit("account", order.account, placed, now)
        self._out[-1].updated_at_ms = self.config.order_updated_at_ms

    def _complex_snapshot(self, cx: _Complex, now: float) -> PlacedComplexOrder:
        orders = [self._snapshot(self.orders[i], now) for i in cx.order_ids]
        trigger = None if cx.trigger_id is None else self._snapshot(self.orders[cx.trigger_id], now)
        return PlacedComplexOrder(
            id=cx.id,
            account_number=cx.account,
            type=cx.type,
            orders=orders,
            trigger_order=trigger,
            terminal_at=None if cx.terminal_at is None else _dt(cx.terminal_at),
            related_orders=[],
        )

    def _publish_complex(self, cx: _Complex, now: float) -> None:
        self._emit("account", cx.account, self._complex_snapshot(cx, now), now)

    def _complex_update(self, order: _Order, now: float) -> None:
        if order.complex_id is None:
            return
        cx = self.complex_orders[order.complex_id]
        if order.id == cx.trigger_id:
            if order.status == "Filled":
                for spec in cx.pending:
                    cx.order_ids.append(
                        self.place_order(now, account=cx.account, complex_id=cx.id, **spec)
                    )
                cx.pending = []
                self._publish_complex(cx, now)
                return
            cx.terminal_at = now  # trigger cancelled or rejected: nothing else happens
        elif cx.type in ("OCO", "OTOCO") and order.status == "Filled":
            for oid in cx.order_ids:
                sibling = self.orders[oid]
                if oid != order.id and sibling.status not in _TERMINAL:
                    if sibling.status != "Cancel Requested":
                        self.cancel(now, oid)
            return  # published again when the sibling is Cancelled
        if all(self.orders[i].status in _TERMINAL for i in cx.order_ids):
            cx.terminal_at = now
        if cx.terminal_at is not None:
            self._publish_complex(cx, now)

    def _year_gain(self, account: str, underlying: str, now: float) -> UnderlyingYearGainSummary:
        gain = sum(
            (
                p.realized
                for p in self.positions.values()
                if p.account == account and _underlying(p.symbol) == underlying
            ),
            _ZERO,
        )
        instrument = next(
            p.instrument_type
            for p in self.positions.values()
            if p.account == account and _underlying(p.symbol) == underlying
        )
        return UnderlyingYearGainSummary(
            year=_dt(now).year,
            account_number=account,
            symbol=underlying,
            instrument_type=instrument,
            fees=_ZERO,
            fees_effect="None",
            commissions=_ZERO,
            commissions_effect="None",
            yearly_realized_gain=_cents(gain),
            yearly_realized_gain_effect=_effect(gain),
            realized_lot_gain=_cents(gain),
            realized_lot_gain_effect=_effect(gain),
        )

    def _emit(self, topic: str, account: str | None, payload: AccountEvent, now: float) -> None:
        name = wire_name(type(payload))
        self.published.append((name, payload))
        if isinstance(payload, PlacedOrder):
            self.rest_orders[payload.id] = payload
        elif isinstance(payload, CurrentPosition):
            key = (payload.account_number, payload.symbol)
            if payload.quantity:
                self.rest_positions[key] = payload
            else:  # closed: not among the open positions REST lists
                self.rest_positions.pop(key, None)
        elif isinstance(payload, AccountBalance):
            self.rest_balances[payload.account_number] = payload
        self._out.append(Outgoing(topic, account, name, payload, int(now * 1000)))

    def _initial_status(self, account: str, now: float) -> TradingStatus:
        return TradingStatus(
            id=1,
            account_number=account,
            updated_at=_dt(now),
            equities_margin_calculation_type="Reg T",
            fee_schedule_name="default",
            futures_margin_rate_multiplier=Decimal("0.0"),
            has_intraday_equities_margin=False,
            is_aggregated_at_clearing=False,
            is_closed=False,
            is_closing_only=False,
            is_cryptocurrency_enabled=False,
            is_frozen=False,
            is_full_equity_margin_required=False,
            is_futures_closing_only=False,
            is_futures_intra_day_enabled=False,
            is_futures_enabled=False,
            is_in_day_trade_equity_maintenance_call=False,
            is_in_margin_call=False,
            is_pattern_day_trader=False,
            is_small_notional_futures_intra_day_enabled=False,
            is_roll_the_day_forward_enabled=False,
            are_far_otm_net_options_restricted=True,
            options_level="Defined Risk Spreads",
            short_calls_enabled=False,
            small_notional_futures_margin_rate_multiplier=Decimal("0.0"),
            is_equity_offering_enabled=False,
            is_equity_offering_closing_only=False,
            day_trade_count=0,
        )

    def _account(self, account: str | None) -> str:
        if account is None:
            return self.accounts[0]
        if account not in self.cash:
            raise ValueError(f"unknown account {account!r}; the simulator has {self.accounts!r}")
        return account

    def _order(self, order_id: int) -> _Order:
        try:
            return self.orders[order_id]
        except KeyError:
            raise LocalProtocolError(f"no order {order_id!r}") from None


_ACTIONS: Final = frozenset(
    {"Buy to Open", "Buy to Close", "Sell to Open", "Sell to Close", "Buy", "Sell"}
)


def _chunks(quantity: Decimal, parts: int) -> list[Decimal]:
    """Split a leg's quantity into at most ``parts`` whole partial fills (the last the largest)."""
    n = max(1, min(parts, int(quantity)))
    base = (quantity / n).to_integral_value(rounding="ROUND_FLOOR")
    chunks = [base] * (n - 1)
    return [*chunks, quantity - base * (n - 1)]
