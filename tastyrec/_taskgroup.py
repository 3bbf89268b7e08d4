"""Entering and leaving an anyio task group by hand, with the real cause raised on failure.

The streaming shell, the recorder and the chain recorder each hold a task group across
``__aenter__``/``__aexit__``, so they cannot use ``async with``. These two helpers are the one
way to do that: a failure comes out as the one meaningful exception of the group
(:func:`tastyrec.exceptions._unwrap_group`), never as an ``ExceptionGroup`` the caller did not
ask for.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup

from .exceptions import _unwrap_group

__all__ = ("leave_group", "start_in_group", "within")


async def start_in_group(
    tg: TaskGroup,
    run: Callable[..., Coroutine[Any, Any, Any]],
    *,
    timeout_s: float | None = None,
    timeout_error: BaseException | None = None,
    cleanup: Callable[[], Awaitable[None]] | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> None:
    """Enter ``tg`` and start ``run`` in it (``await tg.start(run)``), within ``timeout_s``
    (of ``sleep``'s clock when given, an injected one: see :func:`within`; else anyio's).

    On failure the group is cancelled, ``cleanup`` awaited (shielded), the group left, and the
    real cause raised: ``timeout_error`` (if given) when ``run`` was not ready in time, else the
    one meaningful exception of the group.
    """
    await tg.__aenter__()
    try:
        if timeout_s is not None and sleep is not None:
            if not await within(sleep, timeout_s, lambda: tg.start(run)):
                raise TimeoutError
        else:
            with anyio.fail_after(timeout_s):
                await tg.start(run)
    except BaseException as exc:
        tg.cancel_scope.cancel()
        if cleanup is not None:
            with anyio.CancelScope(shield=True):
                await cleanup()
        await leave_group(tg)
        if isinstance(exc, TimeoutError) and timeout_error is not None:
            raise timeout_error from None
        if isinstance(exc, BaseExceptionGroup):  # run failed before it was ready
            raise _unwrap_group(exc) from None
        raise


async def leave_group(
    tg: TaskGroup,
    exc_type: type[BaseException] | None = None,
    exc: BaseException | None = None,
    tb: TracebackType | None = None,
) -> bool | None:
    """Leave ``tg`` (``tg.__aexit__``), raising the real cause of a failure unwrapped."""
    try:
        return await tg.__aexit__(exc_type, exc, tb)
    except BaseExceptionGroup as eg:
        raise _unwrap_group(eg) from None


async def within(
    sleep: Callable[[float], Awaitable[None]],
    seconds: float,
    wait: Callable[[], Awaitable[object]],
) -> bool:
    """Race ``wait()`` against ``sleep(seconds)`` (the injected sleep, not anyio's clock):
    True if ``wait`` finished first (a wait already over wins), False if the sleep did; the
    loser is cancelled."""
    expired = False
    async with anyio.create_task_group() as tg:

        async def expire() -> None:
            nonlocal expired
            await sleep(seconds)
            expired = True
            tg.cancel_scope.cancel()

        tg.start_soon(expire)
        await wait()
        tg.cancel_scope.cancel()
    return not expired
