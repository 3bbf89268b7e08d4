"""A deterministic synthetic market: any symbol, any time, the same answer for the same seed.

Role: produce tastyrec event Structs (Quote, Trade, TimeAndSale, Summary, Profile, Greeks,
TheoPrice, Underlying, Candle) for the simulator's engine. Pure: no I/O, no clock (every method
takes the time in epoch milliseconds), no randomness that is not derived from ``(seed, symbol)``.
It must not import websockets, anyio, asyncio or ``time``.

Theory of operation
-------------------
A symbol's log price is a sum of *value noise* at a dozen time scales (30 days down to half a
second): at scale ``L`` the noise takes a hashed unit-variance value at every multiple of ``L``
and is linearly interpolated in between, with an amplitude proportional to ``sqrt(L)`` so the
path looks like a random walk at every zoom level. Because the price at ``t`` is a closed-form
function of ``(seed, symbol, t)`` (a counter-based hash, splitmix64), it can be evaluated at any
time without history: candle history, live quotes and trade prints agree with each other, and a
symbol's path does not depend on what else is subscribed or in which order.

Everything else is derived from that path:

* quotes: bid/ask around the path on the tick grid, hashed sizes and exchange codes; indices
  (SPX, VIX, NDX...) have NaN sizes and ``"\\u0000"`` exchange codes, like the real feed;
* trades: a print happens in a fixed slot grid (250 ms for stocks, 5 s for options) with a hashed
  probability, at the bid or ask of that instant; day volume grows strictly from print to print;
* options (dxFeed symbols such as ``.SPY261218C600`` or ``.SPY261218C602.5``): Black-Scholes on
  the simulated underlying with a smile, expiry at 20:00 UTC on the expiration day; Greeks and
  TheoPrice; quotes around theo; the roots of index weeklies are priced off their index
  (``.SPXW...`` off SPX, ``.NDXP...`` off NDX, also SPXPM, RUTW, VIXW);
* candles: open/close are the path at the candle's bounds, high/low/vwap come from samples inside
  it (so high >= max(open, close) and low <= min(open, close) always hold).

The market trades around the clock (no sessions): ``tho=true`` is accepted and ignored.

Size: over 600 lines because it is one deterministic model: every price, quote, trade, summary,
profile and candle of a symbol derives from the same hashed path and per-symbol info, so the parts
cannot drift apart; option prices for whole chains are :mod:`.options`'.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
import numpy as np

from ..events.base import NAN, SNAPSHOT_BEGIN, SNAPSHOT_END, SNAPSHOT_SNIP
from ..events.candle_symbol import CandleSymbol, parse_candle_symbol
from ..events.market import (
    Candle,
    Greeks,
    Profile,
    Quote,
    Summary,
    TheoPrice,
    TimeAndSale,
    Trade,
    Underlying,
)
from .options import OptionBook, OptionParams, bid_ask as option_bid_ask, columns as option_columns

__all__ = (
    "CandleSymbol",
    "Market",
    "OptionSymbol",
    "parse_candle_symbol",
    "parse_option_symbol",
    "ts_index",
)

_M64: Final = (1 << 64) - 1
DAY_MS: Final = 86_400_000
YEAR_MS: Final = 365 * DAY_MS
#: (scale in seconds, scale id) of the value-noise components of the price path
_SCALES: Final = (
    2_592_000.0,
    432_000.0,
    86_400.0,
    14_400.0,
    3_600.0,
    900.0,
    300.0,
    60.0,
    15.0,
    3.0,
    0.5,
)
_SQRT3: Final = math.sqrt(3.0)
#: option prints whose bid and ask are kept (see _print_at); all forgotten when full
_PRINT_CACHE: Final = 100_000
#: the index array of a book of one option
_ONE: Final = np.zeros(1, dtype=np.int64)
_INTEREST: Final = 0.045
_STOCK_EXCHANGES: Final = ("Q", "P", "Z", "K", "N", "V", "X", "T", "H", "Y", "U", "J")
_OPTION_EXCHANGES: Final = ("C", "X", "Z", "W", "I", "H", "Q", "A", "M", "N")
_TRADE_SLOT_MS: Final = 250
_OPTION_TRADE_SLOT_MS: Final = 5_000

#: base price, annual volatility, dividend yield, description
_KNOWN: Final[dict[str, tuple[float, float, float, str]]] = {
    "SPY": (560.0, 0.15, 0.013, "SPDR S&P 500 ETF Trust"),
    "QQQ": (480.0, 0.20, 0.006, "Invesco QQQ Trust, Series 1"),
    "IWM": (215.0, 0.22, 0.012, "iShares Russell 2000 ETF"),
    "DIA": (410.0, 0.14, 0.016, "SPDR Dow Jones Industrial Average ETF Trust"),
    "TLT": (95.0, 0.16, 0.038, "iShares 20+ Year Treasury Bond ETF"),
    "GLD": (230.0, 0.14, 0.0, "SPDR Gold Shares"),
    "AAPL": (225.0, 0.25, 0.004, "Apple Inc. - Common Stock"),
    "MSFT": (430.0, 0.24, 0.007, "Microsoft Corporation - Common Stock"),
    "NVDA": (120.0, 0.50, 0.0003, "NVIDIA Corporation - Common Stock"),
    "TSLA": (240.0, 0.55, 0.0, "Tesla, Inc. - Common Stock"),
    "AMZN": (185.0, 0.30, 0.0, "Amazon.com, Inc. - Common Stock"),
    "SPX": (5600.0, 0.15, 0.013, "S&P 500 Index"),
    "XSP": (560.0, 0.15, 0.013, "Mini-SPX Index"),
    "NDX": (19800.0, 0.20, 0.006, "Nasdaq-100 Index"),
    "RUT": (2150.0, 0.22, 0.012, "Russell 2000 Index"),
    "DJX": (410.0, 0.14, 0.016, "Dow Jones Industrial Average Index (1/100)"),
    "VIX": (15.0, 0.90, 0.0, "CBOE Volatility Index"),
}
_INDICES: Final = frozenset({"SPX", "XSP", "NDX", "RUT", "DJX", "VIX", "VIX9D", "OEX", "SOX"})
_ETFS: Final = frozenset({"SPY", "QQQ", "IWM", "DIA", "TLT", "GLD", "XLF", "XLE", "EEM", "HYG"})


def ts_index(time_ms: int, sequence: int = 0) -> int:
    """The dxFeed time-series index of an event (docs/dxlink.md#snapshots-and-event-flags)."""
    return ((time_ms // 1000) << 32) | ((time_ms % 1000) << 22) | sequence


def _mix(x: int) -> int:
    """splitmix64 finaliser: a well-spread 64-bit hash of a 64-bit integer."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _unit(key: int, n: int) -> float:
    """A uniform value in [0, 1) for (key, n)."""
    return _mix(key ^ _mix(n & _M64)) / 18446744073709551616.0


def _mix_array(x: np.ndarray) -> np.ndarray:
    """:func:`_mix` of every element of a uint64 array (numpy's integer arithmetic wraps)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    out: np.ndarray = x ^ (x >> np.uint64(31))
    return out


def _unit_array(key: int, n: np.ndarray) -> np.ndarray:
    """:func:`_unit` of ``(key, n)`` for every element of the int64 array ``n``, bit for bit."""
    return _mix_array(np.uint64(key) ^ _mix_array(n.astype(np.uint64))) / 18446744073709551616.0


# ---------------------------------------------------------------------------------------------
# symbols


_OPTION_RE: Final = re.compile(r"^\.([A-Z][A-Z0-9/]*?)(\d{6})([CP])(\d+(?:\.\d+)?)$")


#: option roots priced off another symbol: index weeklies/PM-settled roots -> their index
_ROOT_UNDERLYINGS: Final[dict[str, str]] = {
    "SPXW": "SPX",
    "SPXPM": "SPX",
    "NDXP": "NDX",
    "RUTW": "RUT",
    "VIXW": "VIX",
}


@dataclass(frozen=True, slots=True)
class OptionSymbol:
    """A dxFeed option symbol such as ``.SPY261218C602.5``.

    ``underlying`` is the symbol the option is priced off: the root, except for roots of another
    underlying (``.SPXW...`` -> ``SPX``, ``.NDXP...`` -> ``NDX``), whose root is in ``root``.
    """

    underlying: str
    expiration_ms: int  #: 20:00 UTC on the expiration day
    is_call: bool
    strike: float
    root: str = ""  #: the symbol's root, e.g. ``SPXW``


def parse_option_symbol(symbol: str) -> OptionSymbol | None:
    """Parse a dxFeed option symbol; None if ``symbol`` is not one."""
    m = _OPTION_RE.match(symbol)
    if m is None:
        return None
    ymd = m.group(2)
    try:
        day = datetime(2000 + int(ymd[:2]), int(ymd[2:4]), int(ymd[4:]), 20, tzinfo=UTC)
    except ValueError:
        return None
    root = m.group(1)
    return OptionSymbol(
        _ROOT_UNDERLYINGS.get(root, root),
        int(day.timestamp() * 1000),
        m.group(3) == "C",
        float(m.group(4)),
        root,
    )


# ---------------------------------------------------------------------------------------------
# market


@dataclass(frozen=True, slots=True)
class _Info:
    key: int
    base: float
    vol: float  #: annual volatility of the path
    div: float  #: dividend yield
    description: str
    index: bool
    etf: bool
    tick: float
    lot_volume: float  #: typical daily volume


class Market:
    """A synthetic market, deterministic for ``seed``; every method takes the time in ms.

    Example::

        m = Market(seed=0)
        q = m.quote("SPY", 1721664000000)
        assert q.bid_price < q.ask_price
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._info: dict[str, _Info] = {}
        # path(): per symbol, per scale, (segment index, knot a, knot b) of the last call
        self._knots: dict[str, list[tuple[int | None, float, float]]] = {}
        # day_extremes(): per symbol, (day, next 5-minute sample time, open, time of the high,
        # high, time of the low, low) of the samples taken so far
        self._day_samples: dict[str, tuple[int, int, float, int, float, int, float]] = {}
        self._option_params: dict[str, OptionParams | None] = {}
        self._books: dict[str, OptionBook] = {}
        self._option_prints: dict[tuple[str, int], tuple[float, float]] = {}
        self._option_trades: dict[tuple[str, int], Trade] = {}

    # -- the path ------------------------------------------------------------------------------

    def info(self, symbol: str) -> _Info:
        info = self._info.get(symbol)
        if info is None:
            info = self._info[symbol] = self._make_info(symbol)
        return info

    def _make_info(self, symbol: str) -> _Info:
        digest = hashlib.blake2b(f"{self.seed}\x00{symbol}".encode(), digest_size=8).digest()
        key = int.from_bytes(digest, "big")
        known = _KNOWN.get(symbol)
        if known is not None:
            base, vol, div, description = known
        else:
            base = round(10.0 * math.exp(4.0 * _unit(key, 1)), 2)  # 10 .. 546
            vol = 0.2 + 0.4 * _unit(key, 2)
            div = 0.0 if _unit(key, 3) < 0.5 else round(0.03 * _unit(key, 4), 4)
            description = f"{symbol} Holdings Inc. - Common Stock (simulated)"
        index = symbol in _INDICES
        tick = 0.01 if base < 1000 else 0.05
        lot_volume = 0.0 if index else 2e6 + 6e7 * _unit(key, 5)
        etf = symbol in _ETFS
        return _Info(key, base, vol, div, description, index, etf, tick, lot_volume)

    def path(self, symbol: str, t_ms: int) -> float:
        """The simulated (mid) price of a plain symbol at ``t_ms``; an option's theo price."""
        book = self._book(symbol)
        if book is not None:
            theo: float = book.price(self, _ONE, t_ms).theo[0]
            return theo
        info = self.info(symbol)
        sigma_s = info.vol / math.sqrt(365.0 * 86_400.0)
        t = t_ms / 1000.0
        x = 0.0
        # the knots of each scale's segment are kept per symbol: times near the last one's (the
        # usual case) hash only the scales whose segment changed, not all 2 x len(_SCALES) knots
        knots = self._knots.get(symbol)
        if knots is None:
            knots = self._knots[symbol] = [(None, 0.0, 0.0)] * len(_SCALES)
        for sid, scale in enumerate(_SCALES):
            u = t / scale
            i = math.floor(u)
            f = u - i
            knot = knots[sid]  # one read: another thread may replace it (immutable tuples)
            if knot[0] != i:
                k = info.key ^ ((sid + 1) << 56)
                knot = knots[sid] = (i, _unit(k, i) - 0.5, _unit(k, i + 1) - 0.5)
            _, a, b = knot
            x += (a + (b - a) * f) * 2.0 * _SQRT3 * math.sqrt(scale) * sigma_s * 0.8
        return info.base * math.exp(x)

    def paths(self, symbol: str, times_ms: np.ndarray) -> list[float]:
        """:meth:`path` at every time of the int64 array ``times_ms``, bit for bit, vectorised.

        The value noise is summed for all times at once (the hashes are ~95 % of :meth:`path`'s
        cost); ``math.exp`` and Black-Scholes stay per element so every value is exactly the one
        :meth:`path` gives (numpy's ``exp`` may differ from libm's in the last bit).
        """
        book = self._book(symbol)
        if book is not None:
            und = book.underlyings[0]
            if len(times_ms) <= 64:  # a few times: the scalar path (equal) is cheaper
                spots = np.array([self.path(und, t) for t in times_ms.tolist()], dtype=np.float64)
            else:
                spots = np.array(self.paths(und, times_ms), dtype=np.float64)
            theos: list[float] = book.theo_at(0, spots, times_ms).tolist()
            return theos
        info = self.info(symbol)
        sigma_s = info.vol / math.sqrt(365.0 * 86_400.0)
        t = times_ms / 1000.0
        x = np.zeros(len(times_ms))
        for sid, scale in enumerate(_SCALES):
            u = t / scale
            i = np.floor(u)
            f = u - i
            n = i.astype(np.int64)
            k = info.key ^ ((sid + 1) << 56)
            a = _unit_array(k, n) - 0.5
            b = _unit_array(k, n + 1) - 0.5
            x += (a + (b - a) * f) * 2.0 * _SQRT3 * math.sqrt(scale) * sigma_s * 0.8
        base = info.base
        return [base * math.exp(v) for v in x.tolist()]

    # -- options -------------------------------------------------------------------------------

    def option_params(self, symbol: str) -> OptionParams | None:
        """What pricing ``symbol`` takes (cached); None if it is not an option symbol."""
        params = self._option_params.get(symbol)
        if params is None and symbol not in self._option_params:
            opt = parse_option_symbol(symbol)
            if opt is not None:
                uinfo = self.info(opt.underlying)
                info = self.info(symbol)
                params = OptionParams(
                    symbol,
                    opt.underlying,
                    opt.expiration_ms,
                    1.0 if opt.is_call else -1.0,
                    opt.strike,
                    info.key,
                    info.lot_volume,
                    uinfo.key & 0xFFFF,
                    uinfo.vol,
                    uinfo.div,
                )
            self._option_params[symbol] = params
        return params

    def _book(self, symbol: str) -> OptionBook | None:
        """A book of the one option ``symbol`` (cached); None if it is not an option symbol."""
        book = self._books.get(symbol)
        if book is None:
            params = self.option_params(symbol)
            if params is None:
                return None
            book = self._books[symbol] = OptionBook([params])
        return book

    def _option(self, book: OptionBook, name: str, t_ms: int) -> dict[str, Any]:
        cols = option_columns(book, self, name, _ONE, t_ms)
        return {k: v[0] if isinstance(v, list) else v for k, v in cols.items()}

    def day_extremes(self, symbol: str, t_ms: int) -> tuple[float, int, float, int, float]:
        """(open, time of the high, high, time of the low, low) of a plain symbol's 5-minute
        samples of the day before ``t_ms`` (the first high/low wins); NaN open: none yet."""
        day = t_ms // DAY_MS
        start = day * DAY_MS
        # the samples at start, start + 5 min, ... before t_ms; the earlier ones are kept between
        # calls, so each call prices only the samples since the last one
        cached = self._day_samples.get(symbol)
        if cached is None or cached[0] != day or cached[1] > t_ms + 300_000:
            cached = (day, start, NAN, start, -math.inf, start, math.inf)
        _, next_ms, first, t_high, high, t_low, low = cached
        while next_ms < t_ms:
            value = self.path(symbol, next_ms)
            first = value if next_ms == start else first
            if value > high:
                t_high, high = next_ms, value
            if value < low:
                t_low, low = next_ms, value
            next_ms += 300_000
        self._day_samples[symbol] = (day, next_ms, first, t_high, high, t_low, low)
        return first, t_high, high, t_low, low

    # -- quotes and trades ---------------------------------------------------------------------

    def _bid_ask(self, symbol: str, t_ms: int) -> tuple[float, float, float]:
        """(bid, ask, tick) at ``t_ms``."""
        book = self._book(symbol)
        if book is not None:
            theo = book.price(self, _ONE, t_ms).theo
            bids, asks = option_bid_ask(theo)
            return bids[0], asks[0], 0.01 if theo[0] < 3.0 else 0.05
        info = self.info(symbol)
        mid = self.path(symbol, t_ms)
        tick = info.tick
        width = 1 + int(3 * _unit(info.key ^ 0x51, t_ms // 1000)) if mid > 50 else 1
        if info.index:
            width += 20
        bid = math.floor(mid / tick - width / 2) * tick
        return round(bid, 2), round(bid + width * tick, 2), tick

    def bid_ask(self, symbol: str, t_ms: int) -> tuple[float, float]:
        """The best bid and ask prices at ``t_ms`` (those of :meth:`quote`, without the rest)."""
        bid, ask, _ = self._bid_ask(symbol, t_ms)
        return bid, ask

    def quote(self, symbol: str, t_ms: int) -> Quote:
        """Best bid and offer at ``t_ms``."""
        book = self._book(symbol)
        if book is not None:
            return Quote(**self._option(book, "Quote", t_ms))
        bid, ask, _ = self._bid_ask(symbol, t_ms)
        key = self.info(symbol).key
        second = t_ms // 1000
        if self.info(symbol).index:
            return Quote(symbol, 0, 0, 0, t_ms, "\x00", t_ms, "\x00", bid, ask, NAN, NAN)
        exchanges = _STOCK_EXCHANGES
        bx = exchanges[int(_unit(key ^ 0x61, second) * len(exchanges))]
        ax = exchanges[int(_unit(key ^ 0x62, second) * len(exchanges))]
        bsize = float(100 * (1 + int(30 * _unit(key ^ 0x63, t_ms // 200))))
        asize = float(100 * (1 + int(30 * _unit(key ^ 0x64, t_ms // 200))))
        if _unit(key ^ 0x65, t_ms // 100) < 0.01:  # the real feed has the odd NaN size
            bsize = NAN
        bid_time = t_ms - int(500 * _unit(key ^ 0x66, t_ms // 100))
        ask_time = t_ms - int(500 * _unit(key ^ 0x67, t_ms // 100))
        return Quote(symbol, 0, 0, 0, bid_time, bx, ask_time, ax, bid, ask, bsize, asize)

    def _slot_ms(self, symbol: str) -> int:
        return _OPTION_TRADE_SLOT_MS if symbol.startswith(".") else _TRADE_SLOT_MS

    def _print_at(self, symbol: str, slot: int) -> tuple[int, float, float, str] | None:
        """The print of trade slot ``slot``: (time_ms, price, size, side) or None."""
        info = self.info(symbol)
        if info.index:
            return None
        slot_ms = self._slot_ms(symbol)
        if _unit(info.key ^ 0x71, slot) >= 0.7:
            return None
        t = slot * slot_ms + int(slot_ms * _unit(info.key ^ 0x72, slot))
        if symbol.startswith("."):
            # an option's bid and ask cost a Black-Scholes pricing: each print's is kept, as
            # Trade and TimeAndSale ask for the same recent prints again and again
            key = (symbol, t)
            cached = self._option_prints.get(key)
            if cached is None:
                if len(self._option_prints) >= _PRINT_CACHE:
                    self._option_prints.clear()
                cached = self._option_prints[key] = self._bid_ask(symbol, t)[:2]
            bid, ask = cached
        else:
            bid, ask, _ = self._bid_ask(symbol, t)
        u = _unit(info.key ^ 0x73, slot)
        side, price = ("BUY", ask) if u < 0.45 else ("SELL", bid) if u < 0.9 else ("UNDEFINED", 0)
        if side == "UNDEFINED":
            price = round((bid + ask) / 2, 4)
        if symbol.startswith("."):
            size = float(1 + int(20 * _unit(info.key ^ 0x74, slot)))
        else:
            size = float(1 + int(9 * _unit(info.key ^ 0x74, slot))) * 100.0
        return t, price, size, side

    def _last_print(
        self, symbol: str, slot: int, limit: int = 2_000
    ) -> tuple[int, tuple[int, float, float, str]] | None:
        for s in range(slot, slot - limit, -1):
            p = self._print_at(symbol, s)
            if p is not None:
                return s, p
        return None

    def _day_volume(self, symbol: str, slot: int, size: float) -> float:
        """Strictly increasing in a day: unreported prints fill the gaps (Trade is conflated)."""
        slot_ms = self._slot_ms(symbol)
        first = (slot * slot_ms // DAY_MS) * DAY_MS // slot_ms
        per_slot = 1000.0 if not symbol.startswith(".") else 25.0
        return per_slot * (slot - first) + size

    def trade(self, symbol: str, t_ms: int) -> Trade | None:
        """The last print at or before ``t_ms`` and the day's totals; None for indices."""
        slot = t_ms // self._slot_ms(symbol)
        last = self._last_print(symbol, slot)
        if last is None:
            return None
        s, (t, price, size, _side) = last
        if t > t_ms:  # this slot's print is still in the future
            last = self._last_print(symbol, s - 1)
            if last is None:
                return None
            s, (t, price, size, _side) = last
        if not symbol.startswith("."):
            return self._trade(symbol, s, t, price, size)
        key = (symbol, s)  # an option's: the Trade of each print is kept (see _print_at)
        trade = self._option_trades.get(key)
        if trade is None:
            if len(self._option_trades) >= _PRINT_CACHE:
                self._option_trades.clear()
            trade = self._option_trades[key] = self._trade(symbol, s, t, price, size)
        return trade

    def _trade(self, symbol: str, s: int, t: int, price: float, size: float) -> Trade:
        """The Trade of print slot ``s`` (at ``t``, ``price``, ``size``)."""
        info = self.info(symbol)
        direction = "UNDEFINED"
        prev = self._last_print(symbol, s - 1, 50)
        if prev is not None:
            p1 = prev[1][1]
            if price > p1:
                direction = "UP"
            elif price < p1:
                direction = "DOWN"
            else:
                prev2 = self._last_print(symbol, prev[0] - 1, 50)
                p2 = prev2[1][1] if prev2 is not None else p1
                direction = "ZERO_UP" if p1 > p2 else "ZERO_DOWN" if p1 < p2 else "ZERO"
        day_id = t // DAY_MS
        prev_close = self.path(symbol, day_id * DAY_MS - 1)
        volume = self._day_volume(symbol, s, size)
        exchanges = _OPTION_EXCHANGES if symbol.startswith(".") else _STOCK_EXCHANGES
        exchange = exchanges[int(_unit(info.key ^ 0x75, s) * len(exchanges))]
        turnover = round(volume * self.path(symbol, day_id * DAY_MS + (t % DAY_MS) // 2), 2)
        return Trade(
            symbol,
            0,
            t,
            0,
            0,
            exchange,
            day_id,
            direction,
            False,
            price,
            round(price - prev_close, 4),
            size,
            volume,
            turnover,
        )

    def time_and_sales(self, symbol: str, after_ms: int, until_ms: int) -> list[TimeAndSale]:
        """Every print with ``after_ms < time <= until_ms``, oldest first (at most 1000)."""
        slot_ms = self._slot_ms(symbol)
        first = max(after_ms // slot_ms, until_ms // slot_ms - 1000)
        out = []
        info = self.info(symbol)
        exchanges = _OPTION_EXCHANGES if symbol.startswith(".") else _STOCK_EXCHANGES
        for s in range(first, until_ms // slot_ms + 1):
            p = self._print_at(symbol, s)
            if p is None or not after_ms < p[0] <= until_ms:
                continue
            t, price, size, side = p
            bid, ask, _ = self._bid_ask(symbol, t)
            conditions = None if _unit(info.key ^ 0x76, s) < 0.9 else "@ TI"
            out.append(
                TimeAndSale(
                    symbol,
                    0,
                    0,
                    ts_index(t),
                    t,
                    0,
                    0,
                    exchanges[int(_unit(info.key ^ 0x75, s) * len(exchanges))],
                    price,
                    size,
                    bid,
                    ask,
                    conditions,
                    "\x00",
                    side,
                    False,
                    False,
                    True,
                    "NEW",
                    None,
                    None,
                )
            )
        return out

    # -- reference data ------------------------------------------------------------------------

    def summary(self, symbol: str, t_ms: int) -> Summary:
        """Today's open/high/low (sampled every 5 minutes), yesterday's close and volume.

        An option's day is sampled where its underlying's is (see :mod:`.options`).
        """
        book = self._book(symbol)
        if book is not None:
            return Summary(**self._option(book, "Summary", t_ms))
        info = self.info(symbol)
        day = t_ms // DAY_MS
        start = day * DAY_MS
        first, _, high, _, low = self.day_extremes(symbol, t_ms)
        now = self.path(symbol, t_ms)
        samples = [now if math.isnan(first) else first, max(high, now), min(low, now)]
        oi = int(10_000 * _unit(info.key ^ 0x81, day)) if symbol.startswith(".") else 0
        prev_volume = NAN if info.index else round(info.lot_volume * (0.6 + _unit(info.key, day)))
        return Summary(
            symbol,
            0,
            day,
            "REGULAR",
            day - 1,
            "FINAL",
            oi,
            round(samples[0], 2),
            round(samples[1], 2),
            round(samples[2], 2),
            NAN,
            round(self.path(symbol, start - 1), 2),
            prev_volume,
        )

    def profile(self, symbol: str, t_ms: int) -> Profile:
        """Description, status, 52-week range (daily samples); NaN fundamentals where real."""
        opt = parse_option_symbol(symbol)
        info = self.info(symbol)
        day = t_ms // DAY_MS
        times = np.array([(day - i) * DAY_MS for i in range(0, 365, 3)], dtype=np.int64)
        closes = self.paths(symbol, times)
        stock = not (info.index or info.etf or opt is not None)
        if opt is not None:
            kind = "CALL" if opt.is_call else "PUT"
            description = f"{opt.underlying} {kind} {opt.strike:g} (simulated)"
        else:
            description = info.description
        return Profile(
            symbol,
            0,
            description,
            "INACTIVE" if not info.index else "UNDEFINED",
            "ACTIVE",
            0,
            0,
            (day + 30 - day % 90) if info.div > 0 and not info.index else 0,
            None,
            round(max(closes), 2),
            round(min(closes), 2),
            round(0.6 + 1.2 * _unit(info.key ^ 0x91, 0), 2) if stock else NAN,
            float(int(1e8 + 1e10 * _unit(info.key ^ 0x92, 0))) if stock else NAN,
            NAN,
            NAN,
            round(1 + 10 * _unit(info.key ^ 0x93, 0), 2) if stock else NAN,
            round(info.base * info.div / 4, 4) if info.div > 0 and not info.index else NAN,
            4.0 if info.div > 0 and not info.index else NAN,
            NAN,
        )

    # -- derivatives ---------------------------------------------------------------------------

    def greeks(self, symbol: str, t_ms: int) -> Greeks | None:
        """Black-Scholes greeks of an option symbol (NaN once expired); None otherwise."""
        book = self._book(symbol)
        return None if book is None else Greeks(**self._option(book, "Greeks", t_ms))

    def theo_price(self, symbol: str, t_ms: int) -> TheoPrice | None:
        """Theoretical price of an option symbol; None otherwise."""
        book = self._book(symbol)
        return None if book is None else TheoPrice(**self._option(book, "TheoPrice", t_ms))

    def underlying(self, symbol: str, t_ms: int) -> Underlying | None:
        """Implied volatility and option volumes of a plain symbol; None for options."""
        if parse_option_symbol(symbol) is not None:
            return None
        info = self.info(symbol)
        day = t_ms // DAY_MS
        frac = (t_ms % DAY_MS) / DAY_MS
        wobble = 1.0 + 0.05 * math.sin(t_ms / 3_600_000.0 + (info.key & 0xFFFF))
        calls = float(int(info.lot_volume * 0.02 * frac * (0.5 + _unit(info.key ^ 0xA1, day))))
        puts = float(int(info.lot_volume * 0.02 * frac * (0.5 + _unit(info.key ^ 0xA2, day))))
        return Underlying(
            symbol,
            0,
            0,
            ts_index(t_ms),
            t_ms,
            0,
            info.vol * wobble,
            info.vol * wobble * 1.05,
            info.vol * wobble * 0.97,
            calls,
            puts,
            calls + puts,
            puts / calls if calls else 1.0,
        )

    # -- candles -------------------------------------------------------------------------------

    @staticmethod
    def _candle_times(cs: CandleSymbol, slot: int, now_ms: int) -> list[int]:
        """The times a candle is priced at: open, close, then 7 samples inside it."""
        start = cs.start(slot)
        last = max(start, min(cs.start(slot + 1) - 1, now_ms))
        return [start, last, *(start + (last - start) * j // 8 for j in range(1, 8))]

    def candle(self, cs: CandleSymbol, slot: int, now_ms: int, flags: int = 0) -> Candle:
        """Candle number ``slot`` of ``cs`` as known at ``now_ms`` (the live one is partial)."""
        times = self._candle_times(cs, slot, now_ms)
        if cs.base.startswith("."):  # an option: its 9 prices in one Black-Scholes pass
            samples = self.paths(cs.base, np.array(times, dtype=np.int64))
        else:
            samples = [self.path(cs.base, t) for t in times]
        return self._candle(cs, slot, now_ms, samples, flags)

    def _candle(
        self,
        cs: CandleSymbol,
        slot: int,
        now_ms: int,
        samples: list[float],
        flags: int = 0,
        name: str | None = None,
    ) -> Candle:
        """The candle from its prices at :meth:`_candle_times` (open and close first)."""
        start = cs.start(slot)
        end = cs.start(slot + 1)
        last = max(start, min(end - 1, now_ms))
        o, c = samples[0], samples[1]
        info = self.info(cs.base)
        is_option = cs.base.startswith(".")
        if info.index:
            volume = vwap = bid_volume = ask_volume = NAN
            count = 0
        else:
            per_ms = info.lot_volume / DAY_MS * (0.02 if is_option else 1.0)
            full = per_ms * (end - start) * (0.5 + _unit(info.key ^ 0xB1, slot))
            volume = float(max(1, round(full * (last + 1 - start) / (end - start))))
            vwap = round(sum(samples) / len(samples), 4)
            bid_volume = float(int(volume * 0.45))
            ask_volume = float(int(volume * 0.45))
            count = max(1, int(volume // (5 if is_option else 100)))
        return Candle(
            cs.normalized if name is None else name,
            0,
            flags,
            ts_index(start),
            start,
            0,
            count,
            volume,
            vwap,
            bid_volume,
            ask_volume,
            NAN,
            NAN,
            round(o, 2),
            round(max(samples), 2),
            round(min(samples), 2),
            round(c, 2),
        )

    def candle_snapshot(
        self, cs: CandleSymbol, from_ms: int, now_ms: int, limit: int
    ) -> list[Candle]:
        """History from the candle containing ``from_ms`` to the live one, newest first.

        The first event has SNAPSHOT_BEGIN, the last SNAPSHOT_END, or SNAPSHOT_SNIP when more than
        ``limit`` candles exist (only the newest ``limit`` are sent). One candle: BEGIN|END.
        """
        return [c for part in self.candle_snapshot_parts(cs, from_ms, now_ms, limit) for c in part]

    def candle_snapshot_parts(
        self, cs: CandleSymbol, from_ms: int, now_ms: int, limit: int, part: int = 256
    ) -> Iterator[list[Candle]]:
        """:meth:`candle_snapshot` in parts of at most ``part`` candles, computed as they are
        taken, so a server can interleave a long history with its other work.

        Every candle equals :meth:`candle`'s; the path is priced for a whole part at once (a day
        of 1-minute candles takes tens of milliseconds, not the half second one at a time took).
        """
        limit = max(1, limit)
        last = cs.slot(now_ms)
        first = min(cs.slot(max(from_ms, 0)), last)
        slots = range(last, max(first, last - limit + 1) - 1, -1)
        tail = SNAPSHOT_SNIP if last - first + 1 > limit else SNAPSHOT_END
        name = cs.normalized
        for i in range(0, len(slots), part):
            chunk = slots[i : i + part]
            times = [t for s in chunk for t in self._candle_times(cs, s, now_ms)]
            prices = self.paths(cs.base, np.array(times, dtype=np.int64))
            out = [
                self._candle(cs, s, now_ms, prices[9 * j : 9 * j + 9], name=name)
                for j, s in enumerate(chunk)
            ]
            if i == 0:
                out[0] = _with_flags(out[0], SNAPSHOT_BEGIN)
            if i + part >= len(slots):
                out[-1] = _with_flags(out[-1], out[-1].event_flags | tail)
            yield out


def _with_flags(c: Candle, flags: int) -> Candle:
    return msgspec.structs.replace(c, event_flags=flags)
