"""Simulators: local fakes of tastytrade's servers, for tests and demos, on 127.0.0.1.

* :class:`Simulator` -- the DXLink market-data server (synthetic market, fault injection); a
  :class:`~tastyrec.sim.engine.Feed` can replace its market (``tastyrec serve`` replays a
  recording through it).
* :class:`AccountSimulator` -- the account streamer, with a simulated account that trades;
  :func:`open_simulators` runs both on one market.
* :class:`ApiSimulator` -- tastytrade's REST API (OAuth, quote tokens, accounts, option chains).

Example usage::

    from tastyrec.sim import Simulator, SimConfig

    async with Simulator(port=0, token="sim-token", config=SimConfig(quote_rate_hz=5)) as sim:
        print(f"dxlink {sim.url}")
        await sim.serve_forever()

:mod:`.market` (pure synthetic market) and :mod:`.engine` (sans-I/O protocol) import no I/O
libraries; only :mod:`.server` imports websockets and anyio.
"""

from __future__ import annotations

from .account import AccountSimulator, open_simulators, run_simulators
from .brokerage import AccountSimConfig
from .engine import SimConfig
from .rest import ApiSimulator
from .server import Simulator

__all__ = (
    "AccountSimConfig",
    "AccountSimulator",
    "ApiSimulator",
    "SimConfig",
    "Simulator",
    "open_simulators",
    "run_simulators",
)
