"""Index weekly roots (SPXW, NDXP...) are priced off their index in the simulated market."""

from __future__ import annotations

import math

from tastyrec.sim.market import Market, parse_option_symbol

T0 = 1_736_953_200_000  # 2025-01-15 15:00 UTC


def test_roots_map_to_their_index() -> None:
    spxw = parse_option_symbol(".SPXW250117C5600")
    assert spxw is not None
    assert (spxw.underlying, spxw.root, spxw.strike) == ("SPX", "SPXW", 5600.0)
    ndxp = parse_option_symbol(".NDXP250117P19800")
    assert ndxp is not None and (ndxp.underlying, ndxp.root) == ("NDX", "NDXP")
    spy = parse_option_symbol(".SPY250117C600")
    assert spy is not None and (spy.underlying, spy.root) == ("SPY", "SPY")


def test_spxw_priced_off_spx() -> None:
    m = Market(seed=1)
    spx = m.path("SPX", T0)
    strike = round(spx / 5) * 5
    spxw = m.theo_price(f".SPXW250117C{strike}", T0)
    same_day_spx = m.theo_price(f".SPX250117C{strike}", T0)
    assert spxw is not None and same_day_spx is not None
    assert spxw.underlying_price == round(spx, 4)  # the index, not a made-up "SPXW" stock
    assert spxw.price == same_day_spx.price  # the same option on either root
    assert 0 < spxw.price < 0.05 * spx  # an at-the-money 2-day call: a fraction of the index
    greeks = m.greeks(f".SPXW250117P{strike}", T0)
    assert greeks is not None and -1 < greeks.delta < 0 and not math.isnan(greeks.volatility)
    ndxp = m.theo_price(".NDXP250117C20000", T0)
    assert ndxp is not None and ndxp.underlying_price == round(m.path("NDX", T0), 4)
