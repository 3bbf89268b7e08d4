"""The DXLink market events, in DXLink wire field order (docs/dxlink.md#event-types-and-fields).

Attribute names are the tastytrade SDK's (``event_symbol``, ``bid_price``...), so user code moves
across unchanged; values are floats rather than the SDK's Decimals (see :mod:`.base` for the value
policy). Only msgspec is imported here.
"""

from __future__ import annotations

from .base import NAN, Event, IndexedEvent, TimeMs

__all__ = (
    "Candle",
    "Greeks",
    "OptionSale",
    "Order",
    "Profile",
    "Quote",
    "Series",
    "Summary",
    "TheoPrice",
    "TimeAndSale",
    "Trade",
    "TradeETH",
    "Underlying",
)


class Quote(Event, frozen=True, gc=False):
    """Best bid and offer.

    Example usage::

        async with DXLinkStreamer(url=url, token=token) as streamer:
            await streamer.subscribe(Quote, ["SPY"])
            quote = await streamer.get_event(Quote)
            print(quote.event_symbol, quote.bid_price, quote.ask_price)
    """

    sequence: int = 0
    #: microsecond and nanosecond part of the time of the last bid or ask change
    time_nano_part: int = 0
    bid_time: TimeMs = 0
    bid_exchange_code: str | None = None
    ask_time: TimeMs = 0
    ask_exchange_code: str | None = None
    bid_price: float = NAN
    ask_price: float = NAN
    bid_size: float = NAN
    ask_size: float = NAN

    @property
    def mid_price(self) -> float:
        """Halfway between bid and ask (NaN when either side is NaN)."""
        return (self.bid_price + self.ask_price) / 2

    @property
    def micro_price(self) -> float:
        """Bid and ask weighted by the opposite side's size; the mid when sizes are 0."""
        total = self.bid_size + self.ask_size
        if not total:
            return self.mid_price
        return (self.bid_size * self.ask_price + self.ask_size * self.bid_price) / total


class Trade(Event, frozen=True, gc=False):
    """Last regular-hours trade and the day's totals."""

    time: TimeMs = 0
    time_nano_part: int = 0
    sequence: int = 0
    exchange_code: str | None = None
    #: days since 1970-01-01
    day_id: int = 0
    #: UNDEFINED, DOWN, ZERO_DOWN, ZERO, ZERO_UP, UP
    tick_direction: str | None = None
    extended_trading_hours: bool = False
    price: float = NAN
    #: change from the previous day's close
    change: float = NAN
    size: float = NAN
    day_volume: float = NAN
    day_turnover: float = NAN


class TradeETH(Trade, frozen=True, gc=False):
    """Last extended-trading-hours trade; the same fields as :class:`Trade`."""


class Greeks(IndexedEvent, frozen=True, gc=False):
    """Option price, implied volatility and greeks."""

    time: TimeMs = 0
    sequence: int = 0
    #: option market price
    price: float = NAN
    #: Black-Scholes implied volatility
    volatility: float = NAN
    delta: float = NAN
    gamma: float = NAN
    theta: float = NAN
    rho: float = NAN
    vega: float = NAN


class Summary(Event, frozen=True, gc=False):
    """Day open, high, low and close, the previous close, and open interest."""

    day_id: int = 0
    #: REGULAR, INDICATIVE, PRELIMINARY, FINAL
    day_close_price_type: str | None = None
    prev_day_id: int = 0
    prev_day_close_price_type: str | None = None
    open_interest: int = 0
    day_open_price: float = NAN
    day_high_price: float = NAN
    day_low_price: float = NAN
    day_close_price: float = NAN
    prev_day_close_price: float = NAN
    prev_day_volume: float = NAN


class Profile(Event, frozen=True, gc=False):
    """Instrument description, trading status, limits and fundamentals."""

    description: str | None = None
    #: UNDEFINED, ACTIVE, INACTIVE
    short_sale_restriction: str | None = None
    #: UNDEFINED, HALTED, ACTIVE
    trading_status: str | None = None
    halt_start_time: TimeMs = 0
    halt_end_time: TimeMs = 0
    ex_dividend_day_id: int = 0
    status_reason: str | None = None
    high_52_week_price: float = NAN
    low_52_week_price: float = NAN
    beta: float = NAN
    shares: float = NAN
    high_limit_price: float = NAN
    low_limit_price: float = NAN
    earnings_per_share: float = NAN
    ex_dividend_amount: float = NAN
    dividend_frequency: float = NAN
    free_float: float = NAN


class Candle(IndexedEvent, frozen=True, gc=False):
    """One OHLCV candle of a candle symbol such as ``SPY{=5m}``."""

    #: candle start time
    time: TimeMs = 0
    sequence: int = 0
    #: number of trades in the candle
    count: int = 0
    volume: float = NAN
    vwap: float = NAN
    bid_volume: float = NAN
    ask_volume: float = NAN
    imp_volatility: float = NAN
    open_interest: float = NAN
    open: float = NAN
    high: float = NAN
    low: float = NAN
    close: float = NAN


class TimeAndSale(IndexedEvent, frozen=True, gc=False):
    """One trade print of the tape."""

    time: TimeMs = 0
    time_nano_part: int = 0
    sequence: int = 0
    exchange_code: str | None = None
    price: float = NAN
    size: float = NAN
    bid_price: float = NAN
    ask_price: float = NAN
    exchange_sale_conditions: str | None = None
    trade_through_exempt: str | None = None
    #: UNDEFINED, BUY, SELL
    aggressor_side: str | None = None
    spread_leg: bool = False
    extended_trading_hours: bool = False
    valid_tick: bool = False
    #: NEW, CORRECTION, CANCEL
    type: str | None = None
    buyer: str | None = None
    seller: str | None = None


class TheoPrice(IndexedEvent, frozen=True, gc=False):
    """Theoretical option price from a pricing model."""

    time: TimeMs = 0
    sequence: int = 0
    price: float = NAN
    underlying_price: float = NAN
    delta: float = NAN
    gamma: float = NAN
    dividend: float = NAN
    interest: float = NAN


class Underlying(IndexedEvent, frozen=True, gc=False):
    """Implied volatility and option volumes of an underlying."""

    time: TimeMs = 0
    sequence: int = 0
    #: 30-day implied volatility
    volatility: float = NAN
    front_volatility: float = NAN
    back_volatility: float = NAN
    call_volume: float = NAN
    put_volume: float = NAN
    option_volume: float = NAN
    put_call_ratio: float = NAN


class Order(IndexedEvent, frozen=True, gc=False):
    """One order of an order book (subscribed with a ``source``)."""

    time: TimeMs = 0
    time_nano_part: int = 0
    sequence: int = 0
    source: str | None = None
    action: str | None = None
    action_time: TimeMs = 0
    order_id: int = 0
    aux_order_id: int = 0
    price: float = NAN
    size: float = NAN
    executed_size: float = NAN
    count: int = 0
    exchange_code: str | None = None
    order_side: str | None = None
    scope: str | None = None
    trade_id: int = 0
    trade_price: float = NAN
    trade_size: float = NAN
    market_maker: str | None = None


class Series(IndexedEvent, frozen=True, gc=False):
    """Per-expiration option series statistics."""

    time: TimeMs = 0
    sequence: int = 0
    #: expiration day id (days since 1970-01-01)
    expiration: int = 0
    volatility: float = NAN
    call_volume: float = NAN
    put_volume: float = NAN
    put_call_ratio: float = NAN
    forward_price: float = NAN
    dividend: float = NAN
    interest: float = NAN


class OptionSale(IndexedEvent, frozen=True, gc=False):
    """One option trade print, with the underlying's price and the greeks at the time."""

    time: TimeMs = 0
    time_nano_part: int = 0
    sequence: int = 0
    exchange_code: str | None = None
    price: float = NAN
    size: float = NAN
    bid_price: float = NAN
    ask_price: float = NAN
    exchange_sale_conditions: str | None = None
    trade_through_exempt: str | None = None
    aggressor_side: str | None = None
    spread_leg: bool = False
    extended_trading_hours: bool = False
    valid_tick: bool = False
    type: str | None = None
    underlying_price: float = NAN
    volatility: float = NAN
    delta: float = NAN
    option_symbol: str | None = None
