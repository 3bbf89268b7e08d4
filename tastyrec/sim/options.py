"""Options priced for many symbols at once: the simulator's chain-scale market.

Role: the one implementation of the synthetic market's option prices (Black-Scholes on the
simulated underlying, with a smile), quotes, Greeks, TheoPrice and Summary, computed for a whole
set of option symbols at one instant with numpy, one array per field. :class:`~.market.Market`
prices a single option through the same code (a set of one), so an option's values are the same
whether it is asked for alone or as one of 20,000: nothing here depends on the other symbols of
the set or on their order.

Pure, like :mod:`.market`: no I/O, no clock, no randomness not derived from ``(seed, symbol)``.

What stays per element in Python: ``math.erf`` (numpy has none; it is ~0.1 us an element).
Prices are rounded with numpy (:func:`_round`), not with Python's ``round`` (~1.5 us a call):
every option value, a Trade's or a Quote's, a single option's or a chain's, is rounded by that
one function, so they agree to the cent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np

if TYPE_CHECKING:
    from .market import Market

__all__ = ("OptionBook", "OptionParams", "black_scholes", "columns")

_F8 = np.ndarray[Any, np.dtype[np.float64]]
_I8 = np.ndarray[Any, np.dtype[np.int64]]
_U8 = np.ndarray[Any, np.dtype[np.uint64]]

DAY_MS: Final = 86_400_000
YEAR_MS: Final = 365 * DAY_MS
INTEREST: Final = 0.045
_SQRT2: Final = math.sqrt(2.0)
_SQRT_2PI: Final = math.sqrt(2.0 * math.pi)
_M64: Final = (1 << 64) - 1
_OPTION_EXCHANGES: Final = np.array(("C", "X", "Z", "W", "I", "H", "Q", "A", "M", "N"))
#: the event types an :class:`OptionBook` computes
BOOK_TYPES: Final = frozenset({"Quote", "Greeks", "TheoPrice", "Summary"})


@dataclass(frozen=True, slots=True)
class OptionParams:
    """What pricing an option needs, from its symbol and its underlying's market info."""

    symbol: str
    underlying: str
    expiration_ms: int
    sign: float  #: +1.0 call, -1.0 put
    strike: float
    key: int  #: the option symbol's own hash key (sizes, exchanges, open interest)
    lot_volume: float  #: the option symbol's typical daily volume
    und_key16: int  #: the underlying's key & 0xFFFF (phase of the volatility wobble)
    und_vol: float
    und_div: float


def _mix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _mix_array(x: _U8) -> _U8:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    out: _U8 = x ^ (x >> np.uint64(31))
    return out


def _units(keys: _U8, salt: int, n: int) -> _F8:
    """``_unit(key ^ salt, n)`` of :mod:`.market` for every key, bit for bit."""
    mixed = np.uint64(_mix(n & _M64))
    out: _F8 = _mix_array(keys ^ np.uint64(salt) ^ mixed) / 18446744073709551616.0
    return out


def _round(x: _F8, digits: int) -> list[float]:
    """``x`` rounded to ``digits`` decimals, as Python floats. numpy's rounding (scale, round
    half to even, unscale) is not Python's correctly rounded ``round`` in the last place, but
    every option value goes through this one function, so quotes, trades and Greeks agree."""
    out: list[float] = np.round(x, digits).tolist()
    return out


def _ncdf(x: _F8) -> _F8:
    flat = (x / _SQRT2).ravel().tolist()
    erf = np.fromiter(map(math.erf, flat), np.float64, len(flat))
    out: _F8 = 0.5 * (1.0 + erf.reshape(x.shape))
    return out


@dataclass(frozen=True, slots=True)
class Bs:
    """Black-Scholes values, one array element per option (NaN Greeks once expired)."""

    theo: _F8
    iv: _F8
    delta: _F8
    gamma: _F8
    theta: _F8  #: per calendar day
    rho: _F8  #: per 1% rate move
    vega: _F8  #: per 1 vol point
    spot: _F8
    div: _F8


def black_scholes(
    spot: _F8,
    t_ms: _I8 | int,
    strike: _F8,
    expiration_ms: _I8,
    sign: _F8,
    div: _F8,
    vol: _F8,
    key16: _F8,
) -> Bs:
    """Price options (arrays broadcast together): theo, smile volatility and Greeks.

    The smile: ``vol * (1 - 0.25 m + 0.35 m^2) * wobble`` with ``m`` the log-moneyness over
    ``sqrt(years)`` clipped to [-3, 3] and an hourly 5 % wobble phased by the underlying.
    """
    r = INTEREST
    years = (expiration_ms - t_ms) / YEAR_MS
    live = years > 0
    expired = not live.all()
    if expired:  # priced as if a year out, then replaced: no NaN or warning on the way
        years = np.where(live, years, 1.0)
    m = np.minimum(np.maximum(np.log(strike / spot) / np.sqrt(np.maximum(years, 1e-4)), -3.0), 3.0)
    wobble = 1.0 + 0.05 * np.sin(np.asarray(t_ms) / 3_600_000.0 + key16)
    iv = vol * (1.0 - 0.25 * m + 0.35 * m * m) * wobble
    sq = np.sqrt(years)
    d1 = (np.log(spot / strike) + (r - div + 0.5 * iv * iv) * years) / (iv * sq)
    d2 = d1 - iv * sq
    dq, dr = np.exp(-div * years), np.exp(-r * years)
    pdf = np.exp(-0.5 * d1 * d1) / _SQRT_2PI
    n1 = _ncdf(sign * d1)
    n2 = _ncdf(sign * d2)
    gamma = dq * pdf / (spot * iv * sq)
    vega = spot * dq * pdf * sq / 100.0
    common = -spot * dq * pdf * iv / (2.0 * sq)
    theo = np.maximum(sign * (spot * dq * n1 - strike * dr * n2), 0.0)
    delta = sign * dq * n1
    theta = (common - sign * r * strike * dr * n2 + sign * div * spot * dq * n1) / 365.0
    rho = sign * strike * years * dr * n2 / 100.0
    shape = theo.shape
    if spot.shape != shape:
        spot = np.broadcast_to(spot, shape)
    if div.shape != shape:
        div = np.broadcast_to(div, shape)
    if expired:
        intrinsic = np.maximum(sign * (spot - strike), 0.0)
        theo = np.where(live, theo, intrinsic)
        iv, delta, gamma, theta, rho, vega = (
            np.where(live, x, math.nan) for x in (iv, delta, gamma, theta, rho, vega)
        )
    return Bs(theo, iv, delta, gamma, theta, rho, vega, spot, div)


def bid_ask(theo: _F8) -> tuple[list[float], list[float]]:
    """An option's bid and ask around its theo on its tick (0.01 under 3.00, else 0.05)."""
    tick = np.where(theo < 3.0, 0.01, 0.05)
    half = np.maximum(tick, theo * 0.01)
    bid = np.maximum(np.floor((theo - half) / tick) * tick, 0.0)
    ask = np.maximum(np.ceil((theo + half) / tick) * tick, bid + tick)
    return _round(bid, 2), _round(ask, 2)


class OptionBook:
    """A set of option symbols as arrays, priced together (see the module docstring).

    Symbols are appended (:meth:`add`) and never reordered, so an index stays an option's for
    the book's life; the arrays are rebuilt lazily after additions.
    """

    def __init__(self, params: Sequence[OptionParams] = ()) -> None:
        self.params: list[OptionParams] = []
        self.underlyings: list[str] = []
        self._und_index: dict[str, int] = {}
        self._built = 0
        self._und: list[int] = []
        self.symbols: list[str] = []
        f8, i8 = np.dtype(np.float64), np.dtype(np.int64)
        self.und: _I8 = np.empty(0, i8)
        self.expiration: _I8 = np.empty(0, i8)
        self.sign: _F8 = np.empty(0, f8)
        self.strike: _F8 = np.empty(0, f8)
        self.key: _U8 = np.empty(0, np.dtype(np.uint64))
        self.lot_volume: _F8 = np.empty(0, f8)
        self.key16: _F8 = np.empty(0, f8)
        self.vol: _F8 = np.empty(0, f8)
        self.div: _F8 = np.empty(0, f8)
        for p in params:
            self.add(p)

    def __len__(self) -> int:
        return len(self.params)

    def add(self, p: OptionParams) -> int:
        """Append an option; returns its index."""
        u = self._und_index.get(p.underlying)
        if u is None:
            u = self._und_index[p.underlying] = len(self.underlyings)
            self.underlyings.append(p.underlying)
        self.params.append(p)
        self._und.append(u)
        return len(self.params) - 1

    def _build(self) -> None:
        """Append the options added since the last build to the arrays (a chain subscribed a
        few hundred symbols a message costs each message its own symbols only)."""
        done = self._built
        if done == len(self.params):
            return
        ps = self.params[done:]
        new = {
            "und": np.array(self._und[done:], dtype=np.int64),
            "expiration": np.array([p.expiration_ms for p in ps], dtype=np.int64),
            "sign": np.array([p.sign for p in ps], dtype=np.float64),
            "strike": np.array([p.strike for p in ps], dtype=np.float64),
            "key": np.array([p.key for p in ps], dtype=np.uint64),
            "lot_volume": np.array([p.lot_volume for p in ps], dtype=np.float64),
            "key16": np.array([p.und_key16 for p in ps], dtype=np.float64),
            "vol": np.array([p.und_vol for p in ps], dtype=np.float64),
            "div": np.array([p.und_div for p in ps], dtype=np.float64),
        }
        for name, values in new.items():
            setattr(self, name, np.concatenate((getattr(self, name), values)))
        self.symbols.extend(p.symbol for p in ps)
        self._built = len(self.params)

    def price(self, market: Market, idx: _I8, t_ms: int) -> Bs:
        """Black-Scholes of the options ``idx`` at ``t_ms`` (one underlying price each)."""
        self._build()
        und = self.und[idx]
        spots = np.array([market.path(u, t_ms) for u in self.underlyings], dtype=np.float64)
        return self._bs(idx, spots[und], t_ms)

    def _bs(self, idx: _I8, spot: _F8, t_ms: _I8 | int) -> Bs:
        return black_scholes(
            spot,
            t_ms,
            self.strike[idx],
            self.expiration[idx],
            self.sign[idx],
            self.div[idx],
            self.vol[idx],
            self.key16[idx],
        )

    def theo_at(self, i: int, spots: _F8, times_ms: _I8) -> _F8:
        """Option ``i``'s theo at each time, given its underlying's price at each."""
        self._build()
        idx = np.full(len(times_ms), i, dtype=np.int64)
        return self._bs(idx, spots, times_ms).theo

    def symbols_of(self, idx: _I8) -> list[str]:
        self._build()
        symbols = self.symbols
        return [symbols[i] for i in idx.tolist()]

    def keys_of(self, idx: _I8) -> _U8:
        self._build()
        out: _U8 = self.key[idx]
        return out


def _ts_index(time_ms: int) -> int:
    return ((time_ms // 1000) << 32) | ((time_ms % 1000) << 22)


def columns(
    book: OptionBook, market: Market, name: str, idx: _I8, t_ms: int
) -> dict[str, list[Any] | Any]:
    """The events ``name`` (one of :data:`BOOK_TYPES`) of the options ``idx`` at ``t_ms``, as
    columns: field name -> a list (one value per option) or one value shared by all."""
    symbols = book.symbols_of(idx)
    if name == "Summary":
        return _summary(book, market, idx, t_ms, symbols)
    b = book.price(market, idx, t_ms)
    if name == "Quote":
        bid, ask = bid_ask(b.theo)
        keys = book.keys_of(idx)
        second, half, tenth = t_ms // 1000, t_ms // 500, t_ms // 100
        exchanges = len(_OPTION_EXCHANGES)
        bx = _OPTION_EXCHANGES[(_units(keys, 0x61, second) * exchanges).astype(np.int64)]
        ax = _OPTION_EXCHANGES[(_units(keys, 0x62, second) * exchanges).astype(np.int64)]
        bsize = (1 + (200 * _units(keys, 0x63, half)).astype(np.int64)).astype(np.float64)
        asize = (1 + (200 * _units(keys, 0x64, half)).astype(np.int64)).astype(np.float64)
        bsize[_units(keys, 0x65, tenth) < 0.01] = math.nan  # the real feed has the odd NaN size
        bid_time = t_ms - (500 * _units(keys, 0x66, tenth)).astype(np.int64)
        ask_time = t_ms - (500 * _units(keys, 0x67, tenth)).astype(np.int64)
        return {
            "event_symbol": symbols,
            "event_time": 0,
            "sequence": 0,
            "time_nano_part": 0,
            "bid_time": bid_time.tolist(),
            "bid_exchange_code": bx.tolist(),
            "ask_time": ask_time.tolist(),
            "ask_exchange_code": ax.tolist(),
            "bid_price": bid,
            "ask_price": ask,
            "bid_size": bsize.tolist(),
            "ask_size": asize.tolist(),
        }
    head = {
        "event_symbol": symbols,
        "event_time": 0,
        "event_flags": 0,
        "index": _ts_index(t_ms),
        "time": t_ms,
        "sequence": 0,
        "price": _round(b.theo, 4),
    }
    if name == "Greeks":
        return {
            **head,
            "volatility": b.iv.tolist(),
            "delta": b.delta.tolist(),
            "gamma": b.gamma.tolist(),
            "theta": b.theta.tolist(),
            "rho": b.rho.tolist(),
            "vega": b.vega.tolist(),
        }
    if name == "TheoPrice":
        return {
            **head,
            "underlying_price": _round(b.spot, 4),
            "delta": np.nan_to_num(b.delta, nan=0.0).tolist(),
            "gamma": np.nan_to_num(b.gamma, nan=0.0).tolist(),
            "dividend": b.div.tolist(),
            "interest": INTEREST,
        }
    raise ValueError(f"an option book has no {name} events")


def _summary(
    book: OptionBook, market: Market, idx: _I8, t_ms: int, symbols: list[str]
) -> dict[str, list[Any] | Any]:
    """Today's open/high/low and yesterday's close of each option.

    An option's day is sampled where its underlying's is: its prices at the day's start, at the
    times of its underlying's highest and lowest 5-minute samples so far, and now (a handful of
    prices per option, not a day's worth); high and low are the extremes of those.
    """
    book._build()
    day = t_ms // DAY_MS
    start = day * DAY_MS
    n = len(idx)
    und = book.und[idx]
    # per underlying: spot and time of the open, high and low samples, now, and the prev close
    rows = []
    for u in book.underlyings:
        now = market.path(u, t_ms)
        first, t_high, high, t_low, low = market.day_extremes(u, t_ms)
        if math.isnan(first):
            first, t_high, high, t_low, low = now, t_ms, now, t_ms, now
        rows.append((first, start, high, t_high, low, t_low, now, t_ms, market.path(u, start - 1)))
    table = np.array(rows, dtype=np.float64)[und]
    spots = table[:, [0, 2, 4, 6, 8]]
    times = np.empty((n, 5), dtype=np.int64)
    times[:, :4] = table[:, [1, 3, 5, 7]].astype(np.int64)
    times[:, 4] = start - 1
    rep = np.repeat(idx, 5)
    theo = book._bs(rep, spots.ravel(), times.ravel()).theo.reshape(n, 5)
    samples = theo[:, :4]
    keys = book.keys_of(idx)
    lot = book.lot_volume[idx]
    oi = (10_000 * _units(keys, 0x81, day)).astype(np.int64)
    prev_volume = np.rint(lot * (0.6 + _units(keys, 0, day))).tolist()
    return {
        "event_symbol": symbols,
        "event_time": 0,
        "day_id": day,
        "day_close_price_type": "REGULAR",
        "prev_day_id": day - 1,
        "prev_day_close_price_type": "FINAL",
        "open_interest": oi.tolist(),
        "day_open_price": _round(samples[:, 0], 2),
        "day_high_price": _round(samples.max(axis=1), 2),
        "day_low_price": _round(samples.min(axis=1), 2),
        "day_close_price": math.nan,
        "prev_day_close_price": _round(theo[:, 4], 2),
        "prev_day_volume": prev_volume,
    }
