"""What the command modules share: option parsing, logging set-up, running a job until
SIGINT/SIGTERM.

This module imports click and the standard library's light modules only; anything heavier is
imported where it is used. Together with the lazy group of :mod:`tastyrec.cli`, that keeps
``tastyrec sql`` from paying for anyio, msgspec and the event classes before DuckDB runs.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Final

import click

__all__ = (
    "TOKEN_ENV",
    "event_types",
    "parse_duration",
    "parse_size",
    "parse_symbols",
    "run",
    "setup_logging",
)

TOKEN_ENV: Final = "TASTYREC_DXLINK_TOKEN"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_SIZE_UNITS: Final = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_duration(text: str) -> float:
    """``"90s"``, ``"5m"``, ``"1.5h"``, ``"250ms"`` or a plain number of seconds -> seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise click.BadParameter(f"{text!r} is not a duration such as 30s, 5m or 1h")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_size(text: str) -> int:
    """``"256MB"``, ``"1.5G"``, ``"512MiB"`` or a plain number of bytes -> bytes."""
    match = _SIZE.match(text)
    if match is None:
        raise click.BadParameter(f"{text!r} is not a size such as 64MB or 1GB")
    unit = (match.group(2) or "").lower()
    binary = "i" in unit
    prefix = unit.rstrip("b").rstrip("i")
    scale = 1024 ** " kmgt".index(prefix or " ") if binary else _SIZE_UNITS[prefix]
    return int(float(match.group(1)) * scale)


def parse_symbols(text: str) -> list[str]:
    """``"SPY,QQQ"`` or ``"@file"`` (one symbol a line, ``#`` comments) -> unique symbols."""
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as fh:
                items = [line.split("#", 1)[0].strip() for line in fh]
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {text[1:]!r}: {exc.strerror}", param_hint="--symbols"
            ) from None
    else:
        items = [s.strip() for s in text.split(",")]
    symbols = list(dict.fromkeys(s for s in items if s))
    if not symbols:
        raise click.BadParameter("no symbols given", param_hint="--symbols")
    return symbols


def event_types(text: str | None) -> list[type[Any]] | None:
    if text is None:
        return None
    from .events.registry import event_class
    from .exceptions import TastyrecError

    try:
        return [event_class(name.strip()) for name in text.split(",") if name.strip()]
    except TastyrecError as exc:
        raise click.BadParameter(str(exc), param_hint="--events") from None


def setup_logging(verbose: int) -> None:
    import logging

    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run(fn: Any) -> None:
    """Run ``fn`` until it returns or SIGINT/SIGTERM arrives (then exit 0)."""
    import signal

    import anyio

    from .exceptions import TastyrecError, _unwrap_group

    async def with_signals() -> None:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(watch)
            await fn()
            tg.cancel_scope.cancel()

    try:
        anyio.run(with_signals, backend="asyncio")
    except KeyboardInterrupt:
        pass
    except BaseExceptionGroup as eg:  # a task group's failure: report its real cause
        exc = _unwrap_group(eg)
        if isinstance(exc, TastyrecError | OSError):
            raise click.ClickException(str(exc)) from None
        raise
    except (TastyrecError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
