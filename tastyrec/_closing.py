"""The one ``async with`` shape of a resource that :meth:`~AsyncClosing.aclose` releases.

``async with x:`` returns ``x`` and, however the block ends, awaits ``x.aclose()``; a class
that must start something first overrides ``__aenter__`` only. Used by the REST session, the
replay streamer and the simulators' servers.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ("AsyncClosing",)


class AsyncClosing:
    """Base class: ``async with`` enters as ``self`` and exits with :meth:`aclose`."""

    async def aclose(self) -> None:
        """Release what the object holds (a subclass says what)."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
