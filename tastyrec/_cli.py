"""What the command modules share: option parsing, logging set-up, running a job until
SIGINT/SIGTERM.

This module imports click and the standard library's light modules only; anything heavier is
imported where it is used. Together with the lazy group of :mod:`tastyrec.cli`, that keeps
``tastyrec sql`` from paying for anyio, msgspec and the event classes before DuckDB runs.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import click

if TYPE_CHECKING:
    from .objectstore import S3Location

__all__ = (
    "DEFAULT_DATA",
    "TOKEN_ENV",
    "Duration",
    "Size",
    "TimeParam",
    "bind_options",
    "check_out_folder",
    "count_option",
    "duration_option",
    "dxlink_options",
    "event_types",
    "journal_option",
    "parse_duration",
    "parse_size",
    "parse_symbols",
    "location_argument",
    "recording_folder",
    "recording_location",
    "run",
    "setup_logging",
    "speed_option",
    "time_window",
    "ws_url",
)

_F = TypeVar("_F", bound=Callable[..., Any])

TOKEN_ENV: Final = "TASTYREC_DXLINK_TOKEN"
#: The folder ``record`` writes and every command reading a recording reads, unless told.
DEFAULT_DATA: Final = "data"
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


_N = TypeVar("_N", int, float)


class _Quantity(click.ParamType[_N, Any]):
    """A click type parsed from text by :meth:`parse` (a value of the type itself passes
    through, as click's defaults do), optionally required to be positive: errors name the
    option."""

    #: the Python type of a converted value, and an example for the error message
    kind: type[_N]
    example: str

    def __init__(self, *, positive: bool = False) -> None:
        self.positive = positive

    def parse(self, text: str) -> _N:
        raise NotImplementedError

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> _N:
        if isinstance(value, self.kind):
            return value
        try:
            parsed = self.parse(str(value))
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)
        if self.positive and not parsed > 0:
            self.fail(f"{value!r} is not a positive {self.name} such as {self.example}", param, ctx)
        return parsed


class Duration(_Quantity[float]):
    """A click type for durations (``30s``, ``5m``, ``1h``): errors name the option."""

    name = "duration"
    kind = float
    example = "30s, 5m or 1h"

    def parse(self, text: str) -> float:
        return parse_duration(text)


class Size(_Quantity[int]):
    """A click type for positive sizes in bytes (``64MB``, ``1GB``): errors name the option."""

    name = "size"
    kind = int
    example = "64MB or 1GB"

    def __init__(self) -> None:
        super().__init__(positive=True)

    def parse(self, text: str) -> int:
        return parse_size(text)


#: a real URL for each URL option, shown when the one given is not a websocket URL
_URL_EXAMPLES: Final = {
    "url": "wss://tasty-openapi-ws.dxfeed.com/realtime",
    "account_url": "wss://streamer.tastyworks.com",
}


def ws_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback: ``value`` must be a ``ws://`` or ``wss://`` URL with a host."""
    if value is None:
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        ok = parts.scheme.lower() in ("ws", "wss") and bool(parts.hostname)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number 0-65535)
    except ValueError:
        ok = False
    if not ok:
        example = _URL_EXAMPLES.get(param.name or "", _URL_EXAMPLES["url"])
        raise click.BadParameter(
            f"{value!r} is not a websocket URL: give ws://HOST:PORT/PATH or wss://HOST/PATH, "
            f"e.g. {example}"
        )
    return value


class TimeParam(click.ParamType[str, Any]):
    """A click type for ``--start`` / ``--end``: checked against the one rule of user time
    (:mod:`tastyrec._time`: ISO text, naive = New York time, a date is a whole New York day),
    and passed on as the text given, so that a date keeps its meaning as a start or an end.
    Errors name the option (exit 2)."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from ._time import parse_text

        text = str(value)
        try:
            parse_text(text)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return text


def _stack(*options: Callable[[_F], _F]) -> Callable[[_F], _F]:
    """One decorator applying ``options`` in the order they are listed (as in ``--help``)."""

    def apply(fn: _F) -> _F:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


def bind_options() -> Callable[[_F], _F]:
    """The ``--host`` and ``--port`` options of a command that serves on a socket."""
    return _stack(
        click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind."),
        click.option("--port", default=0, show_default=True, help="TCP port; 0 picks a free one."),
    )


def dxlink_options(demo_help: str) -> Callable[[_F], _F]:
    """The ``--url``, ``--token`` and ``--demo`` options of a command that reads a DXLink
    server (``demo_help``: what ``--demo`` does in that command)."""
    return _stack(
        click.option(
            "--url", callback=ws_url, help="DXLink websocket URL (ws://... or wss://...)."
        ),
        click.option("--token", envvar=TOKEN_ENV, help=f"Quote token (or ${TOKEN_ENV})."),
        click.option("--demo", is_flag=True, help=demo_help),
    )


def duration_option(
    *param_decls: str,
    default: str | None = None,
    positive: bool = False,
    metavar: str | None = None,
    help: str,
) -> Callable[[_F], _F]:
    """An option taking a duration (``30s``, ``5m``, ``1h``: :class:`Duration`; ``positive``:
    not zero); its default, if it has one, is shown in ``--help``."""
    return click.option(
        *param_decls,
        type=Duration(positive=positive),
        default=default,
        show_default=default is not None,
        metavar=metavar,
        help=help,
    )


def count_option(
    *param_decls: str,
    default: int | None = None,
    metavar: str | None = None,
    help: str,
) -> Callable[[_F], _F]:
    """An option taking a whole number of at least 1; its default, if it has one, is shown in
    ``--help``."""
    return click.option(
        *param_decls,
        type=click.IntRange(min=1),
        default=default,
        show_default=default is not None,
        metavar=metavar,
        help=help,
    )


def journal_option(help: str) -> Callable[[_F], _F]:
    """The ``--journal`` folder of the commands that record to object storage (``record``,
    ``recover``): where the journal and the files waiting for upload are kept."""
    return click.option("--journal", type=click.Path(file_okay=False), default=None, help=help)


def speed_option(default: str) -> Callable[[_F], _F]:
    """The ``--speed`` option of the commands that replay a recording (``replay``, ``serve``)."""
    return click.option(
        "--speed",
        default=default,
        show_default=True,
        help="Multiple of real time (1 = as recorded), or max.",
    )


def time_window(rows: str) -> Callable[[_F], _F]:
    """The ``--start`` and ``--end`` options of a command reading a recording: ``rows`` (e.g.
    ``"Events"``) received in ``[start, end)`` under the one rule of :mod:`tastyrec._time`."""
    start = click.option(
        "--start",
        type=TimeParam(),
        help=f"{rows} received from this time on (ISO; naive = New York time; a date: from "
        "its midnight).",
    )
    end = click.option(
        "--end",
        type=TimeParam(),
        help="... and before this time (a date: through that New York day).",
    )

    return _stack(start, end)


def recording_folder(ctx: click.Context, param: click.Parameter, value: Path | str) -> Path:
    """Click callback for the recording folder every reading command takes (default ``data``):
    it must be a local folder that exists (:func:`tastyrec._location.existing_recording`: an
    ``s3://`` URL is refused). Checked before anything is opened, created or imported."""
    from ._location import existing_recording
    from .exceptions import RecordingNotFound, UnsupportedLocation

    try:
        return existing_recording(value)
    except UnsupportedLocation as exc:
        raise click.BadParameter(str(exc)) from None
    except RecordingNotFound as exc:
        here = ""
        if str(value) == DEFAULT_DATA and not Path(value).exists():
            here = f"; the default, {DEFAULT_DATA!r}, is looked for in the current folder"
        raise click.BadParameter(f"{exc}{here}") from None


def recording_location(
    ctx: click.Context, param: click.Parameter, value: Path | str
) -> Path | S3Location:
    """Click callback for the recording of a command that also reads object storage (``sql``,
    ``info``): a local folder as :func:`recording_folder`, or an ``s3://bucket/prefix`` with
    keys under it (:func:`tastyrec.catalog.existing_location`); other URLs are refused."""
    from .catalog import reading_location
    from .exceptions import StorageError, UnsupportedLocation

    try:
        loc = reading_location(value)
    except UnsupportedLocation as exc:
        raise click.BadParameter(str(exc)) from None
    if isinstance(loc, Path):
        return recording_folder(ctx, param, value)
    from .catalog import existing_location

    try:
        return existing_location(loc)
    except StorageError as exc:  # nothing there, or the store could not be asked (redacted)
        raise click.BadParameter(str(exc)) from None


#: the PATH argument of ``info``: a local folder or ``s3://bucket/prefix`` (default ``data``)
location_argument = click.argument(
    "path",
    default=DEFAULT_DATA,
    required=False,
    type=click.Path(),
    callback=recording_location,
)

#: the PATH argument of every command that reads a recording: default ``data``, checked first
recording_argument = click.argument(
    "path",
    default=DEFAULT_DATA,
    required=False,
    type=click.Path(),  # text: the callback sees `s3://...` as typed, not folded by pathlib
    callback=recording_folder,
)


def check_out_folder(out: str) -> None:
    """Refuse an output folder that is a URL (:func:`tastyrec._location.recording_path`), a
    file, or lies under a file (``record --out``), exit 2."""
    from ._location import recording_path
    from .exceptions import UnsupportedLocation

    try:
        path = recording_path(out)
    except UnsupportedLocation as exc:
        raise click.BadParameter(str(exc), param_hint="--out") from None
    for folder in (path, *path.parents):
        if folder.is_file():
            where = "is a file" if folder == path else f"is under {str(folder)!r}, a file"
            raise click.BadParameter(
                f"{out!r} {where}: give a folder to record into (it is created if missing)",
                param_hint="--out",
            )
        if folder.exists():
            return


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
