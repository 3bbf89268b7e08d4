"""The DXLink candle-symbol grammar: ``<base>{=<n><unit>[,attr...]}``.

Role: build the candle symbol the tastytrade SDK builds (:func:`candle_symbol`) and split one into
its parts (:func:`parse_candle_symbol`): the period, the other attributes, the symbol the server
echoes in events (:attr:`CandleSymbol.normalized`) and the time slots of a time-based period.
Pure: no I/O, no clock. Used by the live streamer, replay and the simulator alike.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

__all__ = ("CandleSymbol", "candle_symbol", "parse_candle_symbol")

_DAY_MS: Final = 86_400_000
_CANDLE_RE: Final = re.compile(r"^(?P<base>[^{}]+)\{(?P<attrs>[^{}]*)\}$")
_PERIOD_RE: Final = re.compile(r"^=?(?P<n>\d*)(?P<unit>[a-z]+)$")
_FIXED_UNITS_MS: Final = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": _DAY_MS, "w": 7 * _DAY_MS}
#: 1970-01-05 was the first Monday after the epoch: weeks start on Monday
_WEEK_OFFSET_MS: Final = 4 * _DAY_MS


def candle_symbol(symbol: str, interval: str, extended_trading_hours: bool = False) -> str:
    """The candle symbol the tastytrade SDK builds: ``SPY{=5m,tho=true}`` or ``SPY{=5m}``."""
    return (
        f"{symbol}{{={interval}}}"
        if extended_trading_hours
        else f"{symbol}{{={interval},tho=true}}"
    )


@dataclass(frozen=True, slots=True)
class CandleSymbol:
    """A candle symbol ``<base>{=<n><unit>[,attr...]}`` split into its parts."""

    base: str
    n: int  #: period multiplier
    unit: str  #: s, m, h, d, w, mo, y (others are recognised but produce no candles)
    attrs: tuple[str, ...]  #: the other attributes, as given (e.g. ``tho=true``)

    @property
    def normalized(self) -> str:
        """The symbol the server echoes: a period of 1 is dropped (``{=1d}`` -> ``{=d}``)."""
        period = f"={'' if self.n == 1 else self.n}{self.unit}"
        return f"{self.base}{{{','.join((period, *self.attrs))}}}"

    @property
    def supported(self) -> bool:
        """Whether candles of this period can be built from a price path (time periods only)."""
        return self.n > 0 and (self.unit in _FIXED_UNITS_MS or self.unit in ("mo", "y"))

    def slot(self, t_ms: int) -> int:
        """Number of the candle containing ``t_ms``."""
        if self.unit in _FIXED_UNITS_MS:
            length = _FIXED_UNITS_MS[self.unit] * self.n
            offset = _WEEK_OFFSET_MS if self.unit == "w" else 0
            return (t_ms - offset) // length
        d = datetime.fromtimestamp(t_ms / 1000, UTC)
        months = (d.year - 1970) * 12 + d.month - 1
        return months // (self.n * (12 if self.unit == "y" else 1))

    def start(self, slot: int) -> int:
        """Start time (epoch ms) of candle number ``slot``."""
        if self.unit in _FIXED_UNITS_MS:
            length = _FIXED_UNITS_MS[self.unit] * self.n
            offset = _WEEK_OFFSET_MS if self.unit == "w" else 0
            return slot * length + offset
        months = slot * self.n * (12 if self.unit == "y" else 1)
        year, month = 1970 + months // 12, months % 12 + 1
        return calendar.timegm((year, month, 1, 0, 0, 0)) * 1000


def parse_candle_symbol(symbol: str) -> CandleSymbol | None:
    """Parse a candle symbol; None if it has no ``{...}`` attributes or no period."""
    m = _CANDLE_RE.match(symbol)
    if m is None:
        return None
    period: tuple[int, str] | None = None
    attrs: list[str] = []
    for attr in m.group("attrs").split(","):
        if attr.startswith("=") and period is None:
            pm = _PERIOD_RE.match(attr)
            if pm is None:
                return None
            period = (int(pm.group("n")) if pm.group("n") else 1, pm.group("unit"))
        elif attr:
            attrs.append(attr)
    if period is None:
        return None
    return CandleSymbol(m.group("base"), period[0], period[1], tuple(attrs))
