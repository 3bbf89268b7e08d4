"""The built-in demo: servers that stand in for tastytrade, for ``--demo`` on the command line.

Wiring only — a :class:`~tastyrec.sim.Simulator` (DXLink), a fake REST API
(:class:`~tastyrec.sim.rest.ApiSimulator`) and a :class:`~tastyrec.session.Session` logged in to
it — kept above the library: the recorder, the streamers and the chain recorder know nothing of
the simulator. Used by the CLI commands (``tastyrec listen --demo``, ``tastyrec record --demo``).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Final

import anyio

from .session import Session
from .sim import Simulator
from .sim.engine import SimConfig
from .sim.rest import ApiSimulator

__all__ = ("DEMO_CONFIG", "demo_dxlink", "demo_session")

#: The demo simulator's rates (events per symbol per second), light enough for thousands of
#: options priced in this process.
DEMO_CONFIG: Final = SimConfig(
    quote_rate_hz=1.0, greeks_rate_hz=0.5, trade_rate_hz=0.5, summary_rate_hz=0.1
)


@contextlib.asynccontextmanager
async def demo_dxlink() -> AsyncIterator[tuple[str, str | None]]:
    """``(url, token)`` of a DXLink :class:`~tastyrec.sim.Simulator` on 127.0.0.1 that needs no
    token (``tastyrec listen --demo``), running until the block is left."""
    async with Simulator(token=None) as sim:
        yield sim.url, None


@contextlib.asynccontextmanager
async def demo_session(seed: int = 0, config: SimConfig | None = None) -> AsyncIterator[Session]:
    """A :class:`~tastyrec.session.Session` on the built-in fakes: no account, no network.

    Runs a DXLink :class:`~tastyrec.sim.Simulator` and a fake tastytrade REST API
    (:class:`~tastyrec.sim.rest.ApiSimulator`, chains for SPY, QQQ, IWM, AAPL, MSFT, NVDA, TSLA,
    AMZN, SPX, NDX, XSP) on 127.0.0.1, and yields a session logged in to the fake with its
    credentials: what ``tastyrec record --chain SPY --demo`` records from.

    The simulator prices every option in Python, in long synchronous stretches (a Summary
    samples the day's path): it runs on an event loop of its own in a worker thread (an anyio
    blocking portal), so that the recorder's loop keeps its turn, and by default at
    :data:`DEMO_CONFIG`'s modest rates.
    """
    from anyio.from_thread import start_blocking_portal

    sim = Simulator(
        seed=seed,
        token=f"demo-{secrets.token_hex(8)}",
        config=config if config is not None else DEMO_CONFIG,
    )
    with contextlib.ExitStack() as stack:
        portal_cm = start_blocking_portal("asyncio")
        portal = await anyio.to_thread.run_sync(portal_cm.__enter__)
        stack.push(portal_cm)  # exited last, also on errors below
        served = portal.wrap_async_context_manager(sim)
        await anyio.to_thread.run_sync(served.__enter__)
        try:
            async with (
                ApiSimulator(sim, seed=seed) as api,
                Session(api.client_secret, api.refresh_token, api_url=api.url) as session,
            ):
                yield session
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(served.__exit__, None, None, None)
                await anyio.to_thread.run_sync(portal_cm.__exit__, None, None, None)
            stack.pop_all()
