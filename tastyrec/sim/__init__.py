"""The DXLink simulator: a local fake tastytrade/dxFeed market-data server for tests and demos.

Example usage::

    from tastyrec.sim import Simulator, SimConfig

    async with Simulator(port=0, token="sim-token", config=SimConfig(quote_rate_hz=5)) as sim:
        print(f"dxlink {sim.url}")
        await sim.serve_forever()

:mod:`.market` (pure synthetic market) and :mod:`.engine` (sans-I/O protocol) import no I/O
libraries; only :mod:`.server` imports websockets and anyio.
"""

from __future__ import annotations

from .engine import SimConfig
from .server import Simulator

__all__ = ("SimConfig", "Simulator")

# the account-streamer simulator (issue 6)
from .account import AccountSimulator, open_simulators, run_simulators
from .account_engine import AccountSimConfig

__all__ = (  # type: ignore[assignment]
    *__all__,
    "AccountSimConfig",
    "AccountSimulator",
    "open_simulators",
    "run_simulators",
)
