"""Waiting in tests: for a condition (the limit only bounds a failure), and reconnect delays
short enough that a test never waits out a real backoff."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import anyio
import pytest

T = TypeVar("T")

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


def wait_until_sync(what: str, predicate: Callable[[], T], limit_s: float = WAIT_S) -> T:
    """:func:`wait_until` for synchronous code watching another thread or process (no event
    crosses to it): poll ``predicate()`` until it is truthy and return its value; fail, naming
    ``what``, after ``limit_s`` (a bound, never the wait)."""
    deadline = time.monotonic() + limit_s
    while not (value := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {limit_s} s waiting for {what}")
        time.sleep(0.01)
    return value
