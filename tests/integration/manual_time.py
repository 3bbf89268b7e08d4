"""Time that moves only when a test says (the ``clock`` and ``sleep`` a streamer takes), and
reconnects waited for as events.

Keepalive, heartbeat and watchdog behaviour is then tested without real waits: a sleeper wakes
exactly when :meth:`ManualTime.advance` passes its deadline, never because the machine was slow
or fast.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel


class ManualTime:
    """A monotonic clock (seconds, from 0) and a sleep on it; see the module docstring."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, anyio.Event]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        entry = (self.now + seconds, anyio.Event())
        self._sleepers.append(entry)
        try:
            await entry[1].wait()
        finally:
            if entry in self._sleepers:
                self._sleepers.remove(entry)

    def advance(self, seconds: float) -> None:
        """Move the clock on; wake every sleeper whose deadline it reached."""
        self.now += seconds
        for entry in list(self._sleepers):
            if entry[0] <= self.now:
                self._sleepers.remove(entry)
                entry[1].set()

    def deadlines(self) -> list[float]:
        """When the sleepers wake, soonest first."""
        return sorted(deadline for deadline, _ in self._sleepers)


class Reconnects:
    """A streamer's reconnects, counted through its ``reconnect_fn`` (the one it had still runs
    first): wait for the n-th with :meth:`wait`, an event, instead of polling a counter.

    The shell calls ``reconnect_fn`` once a new connection has every subscription back and the
    gap it closes has its ``resumed_ns``.
    """

    def __init__(self, streamer: Any) -> None:
        self.count = 0
        self._changed = anyio.Event()
        inner = streamer.reconnect_fn

        async def reconnected(s: Any, *args: Any) -> None:
            if inner is not None:
                await inner(s, *args)
            self.count += 1
            self._changed.set()

        streamer.reconnect_fn = reconnected

    async def wait(self, n: int = 1, limit_s: float = 10.0) -> None:
        """Return once ``n`` reconnects have happened; fail after ``limit_s`` (a bound)."""
        with anyio.fail_after(limit_s):
            while self.count < n:
                self._changed = anyio.Event()
                await self._changed.wait()
