"""Option chains: tastytrade's nested chain endpoint as ``{expiration: [Option, ...]}``.

Role: fetch ``/option-chains/{symbol}/nested`` through a session (tastyrec's
:class:`~tastyrec.session.Session` or the tastytrade SDK's: anything with the SDK's
``_get(path)``), turn it into :class:`Option` values with the SDK's attribute names
(``chain[exp][0].streamer_symbol``, ``strike_price``, ``option_type``, ``expiration_date``), and
choose the strikes around the money that a chain recording subscribes to.

Why the nested endpoint, while the SDK's ``get_option_chain`` reads the flat
``/option-chains/{symbol}`` one: the nested answer carries each strike's call and put symbols
(OCC and dxFeed) in a few hundred bytes, where the flat one is a full instrument object per
option, megabytes for SPX. The returned mapping has the SDK's shape: expirations in date order;
two roots expiring on the same day (SPX and SPXW) share one list, as in the SDK.

Pure apart from the one call in :func:`get_option_chain`; imports no HTTP or DXLink module.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import quote

from .exceptions import ApiError

__all__ = (
    "Option",
    "OptionType",
    "get_option_chain",
    "parse_dte",
    "parse_nested_chain",
    "select_strikes",
)


class _RestSession(Protocol):
    async def _get(self, path: str, /) -> dict[str, Any]: ...


class OptionType(StrEnum):
    """Call or put, with the letters tastytrade uses (the SDK's values)."""

    CALL = "C"
    PUT = "P"


@dataclass(frozen=True, slots=True)
class Option:
    """One option of a chain, with the tastytrade SDK's attribute names.

    Attributes:
        symbol: the OCC symbol, e.g. ``"SPY   250117C00600000"``.
        streamer_symbol: the dxFeed symbol to subscribe to, e.g. ``".SPY250117C600"``.
        underlying_symbol: e.g. ``"SPX"``.
        root_symbol: e.g. ``"SPXW"`` (differs from the underlying for index weeklies).
        strike_price: the strike, exactly as tastytrade sends it.
        option_type: :attr:`OptionType.CALL` or :attr:`OptionType.PUT`.
        expiration_date: the last trading day.
        days_to_expiration: as of when the chain was fetched.
        expiration_type: ``"Regular"``, ``"Weekly"``, ``"Quarterly"``, ``"End-Of-Month"``...
        settlement_type: ``"PM"`` or ``"AM"``.
        shares_per_contract: usually 100.
    """

    symbol: str
    streamer_symbol: str
    underlying_symbol: str
    root_symbol: str
    strike_price: Decimal
    option_type: OptionType
    expiration_date: date
    days_to_expiration: int
    expiration_type: str = ""
    settlement_type: str = ""
    shares_per_contract: int = 100


async def get_option_chain(session: _RestSession, symbol: str) -> dict[date, list[Option]]:
    """The option chain of ``symbol``: expiration date -> options (calls and puts by strike).

    Example usage::

        chain = await get_option_chain(session, "SPY")
        first = min(chain)
        print(chain[first][0].streamer_symbol)  # e.g. .SPY250117C480

    Args:
        session: tastyrec's ``Session`` or the tastytrade SDK's.
        symbol: the underlying, e.g. ``"SPY"``, ``"SPX"``.

    Raises:
        ApiError: the request failed (404 for a symbol without options) or the answer is not a
            nested chain.
    """
    path = f"/option-chains/{quote(symbol, safe='')}/nested"
    return parse_nested_chain(await session._get(path))


def parse_nested_chain(data: Mapping[str, Any]) -> dict[date, list[Option]]:
    """The ``data`` of a nested chain answer as ``{expiration: [Option, ...]}``, dates ascending.

    Within a date, options come root by root (in the answer's order), then by strike, the call
    before the put.

    Raises:
        ApiError: a required key is missing or malformed.
    """
    chain: dict[date, list[Option]] = defaultdict(list)
    try:
        for item in data["items"]:
            underlying = str(item["underlying-symbol"])
            root = str(item["root-symbol"])
            shares = int(item.get("shares-per-contract", 100))
            for exp in item["expirations"]:
                day = date.fromisoformat(exp["expiration-date"])
                dte = int(exp["days-to-expiration"])
                kind = str(exp.get("expiration-type", ""))
                settlement = str(exp.get("settlement-type", ""))
                rows = sorted(exp["strikes"], key=lambda s: Decimal(s["strike-price"]))
                for strike in rows:
                    price = Decimal(strike["strike-price"])
                    for option_type, occ, dx in (
                        (OptionType.CALL, strike["call"], strike["call-streamer-symbol"]),
                        (OptionType.PUT, strike["put"], strike["put-streamer-symbol"]),
                    ):
                        chain[day].append(
                            Option(
                                symbol=str(occ),
                                streamer_symbol=str(dx),
                                underlying_symbol=underlying,
                                root_symbol=root,
                                strike_price=price,
                                option_type=option_type,
                                expiration_date=day,
                                days_to_expiration=dte,
                                expiration_type=kind,
                                settlement_type=settlement,
                                shares_per_contract=shares,
                            )
                        )
    except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise ApiError(
            f"the option chain answer is not a nested chain ({type(exc).__name__}: {exc}); "
            "check TASTYTRADE_API_URL"
        ) from None
    return {day: chain[day] for day in sorted(chain)}


def parse_dte(text: str) -> tuple[int, int]:
    """``"0-45"`` -> ``(0, 45)``; ``"7"`` -> ``(7, 7)`` (days to expiration, inclusive).

    Raises:
        ValueError: not ``N`` or ``N-M`` with ``0 <= N <= M``.
    """
    lo, sep, hi = text.strip().partition("-")
    try:
        first = int(lo)
        last = int(hi) if sep else first
    except ValueError:
        raise ValueError(f"bad DTE range {text!r}: use N or N-M, e.g. 0-45") from None
    if not 0 <= first <= last:
        raise ValueError(f"bad DTE range {text!r}: use N or N-M with 0 <= N <= M")
    return first, last


def select_strikes(
    chain: Mapping[date, Iterable[Option]],
    price: float,
    strikes: int,
    dte: tuple[int, int] = (0, 45),
    today: date | None = None,
) -> list[Option]:
    """The options around the money: ``strikes`` strikes either side of ``price``, per expiry.

    For each expiration within ``dte`` and each root expiring that day (SPX and SPXW are
    separate), the ``strikes`` highest strikes below ``price`` and the ``strikes`` lowest at or
    above it are kept, calls and puts both: up to ``4 * strikes`` options per expiry and root.

    Args:
        chain: from :func:`get_option_chain`.
        price: the underlying's price (e.g. its last quote's mid).
        strikes: strikes kept on each side of ``price``.
        dte: days to expiration, inclusive range.
        today: counts days to expiration from this date; by default the chain's own
            ``days_to_expiration`` (as of when it was fetched) is used.

    Returns:
        the chosen options, by expiration, root, strike, call before put.
    """
    if strikes < 0:
        raise ValueError(f"strikes must be >= 0, not {strikes!r}")
    lo, hi = dte
    out: list[Option] = []
    for day in sorted(chain):
        by_root: dict[str, list[Option]] = defaultdict(list)
        for option in chain[day]:
            days = (day - today).days if today is not None else option.days_to_expiration
            if lo <= days <= hi:
                by_root[option.root_symbol].append(option)
        for options in by_root.values():
            grid = sorted({o.strike_price for o in options})
            at = bisect.bisect_left(grid, Decimal(repr(float(price))))
            keep = set(grid[max(0, at - strikes) : at + strikes])
            out.extend(
                sorted(
                    (o for o in options if o.strike_price in keep),
                    key=lambda o: (o.strike_price, o.option_type is not OptionType.CALL),
                )
            )
    return out
