"""Waiting in tests: for a condition (the limit only bounds a failure), and reconnect delays
short enough that a test never waits out a real backoff."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import anyio

#: bounds a failure only (a wait for an event): generous, so a busy machine never trips it
WAIT_S = 20.0


def fast_delays() -> Iterator[float]:
    """Reconnect delays for tests: 50 ms each."""
    return iter(itertools.repeat(0.05))


async def wait_until(predicate: Callable[[], object], limit_s: float = WAIT_S) -> None:
    """Wait until ``predicate()`` holds; fail after ``limit_s`` (a bound, never the wait)."""
    with anyio.fail_after(limit_s):
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.01)
