"""``tastyrec replay`` and ``tastyrec serve``: a recording as JSON lines, or as a DXLink server.

Registered on the ``tastyrec`` group by :mod:`tastyrec.cli`.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import msgspec

from .._cli import bind_options, location_argument, speed_option, time_window
from ..events.base import Event

if TYPE_CHECKING:
    from ..objectstore import S3Location

__all__ = ("replay", "serve")


def _recorded_types(path: Path | S3Location) -> list[type[Event]]:
    from ..catalog import location_event_types
    from ..events.registry import EVENT_TYPES

    return [EVENT_TYPES[name] for name in location_event_types(path) if name in EVENT_TYPES]


def _speed(text: str) -> float:
    value = text.strip().lower()
    if value in ("max", "inf", "fast"):
        return math.inf
    value = value.removesuffix("x")  # 10x
    try:
        speed = float(value)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a speed: give a multiple of real time (1, 10, 0.5) or 'max'",
            param_hint="--speed",
        ) from None
    if not speed > 0:
        raise click.BadParameter(
            f"{text!r} is not a positive speed: give a multiple of real time (1, 10, 0.5) or 'max'",
            param_hint="--speed",
        )
    return speed


@click.command()
@location_argument
@click.option("--events", help="Event types, e.g. Quote,Trade [default: every type recorded].")
@click.option("--symbols", help="Symbols, comma-separated or @FILE [default: all].")
@time_window("Events")
@speed_option("max")
def replay(
    path: Path | S3Location,
    events: str | None,
    symbols: str | None,
    start: str | None,
    end: str | None,
    speed: str,
) -> None:
    """Print a recording's events (PATH: a folder or s3://bucket/prefix, default: data) as JSON
    lines, in receipt order.

    Each line has the event's fields (snake_case, as in the tastytrade SDK) and `event_type`;
    NaN prints as null. For jq and friends:

        tastyrec replay data --events Quote --symbols SPY | jq .bid_price
    """
    from .._cli import event_types as _event_types, parse_symbols, run as _run
    from . import ReplayStreamer

    types = _event_types(events) or _recorded_types(path)
    if not types:
        raise click.ClickException(f"no recorded events in {str(path)!r}")
    names = parse_symbols(symbols) if symbols else ["*"]
    pace = _speed(speed)
    encoder = msgspec.json.Encoder()
    out = sys.stdout.buffer
    printed = 0

    async def run() -> None:
        nonlocal printed
        async with ReplayStreamer(path, start=start, end=end, speed=pace) as streamer:
            for cls in types:
                await streamer.subscribe(cls, names)
            lines: list[bytes] = []
            async for event in streamer.listen(*types):
                printed += 1
                row: dict[str, Any] = msgspec.structs.asdict(event)
                row["event_type"] = type(event).__name__
                lines.append(encoder.encode(row))
                if len(lines) >= 1024 or pace != math.inf:
                    out.write(b"\n".join(lines) + b"\n")
                    lines.clear()
                    if pace != math.inf:
                        out.flush()
            if lines:
                out.write(b"\n".join(lines) + b"\n")
            out.flush()

    try:
        _run(run)
    except BrokenPipeError:  # `| head`: the reader has gone, which is fine
        sys.stderr.close()
        return
    if not printed:
        # like grep: exit 1 when the filters selected nothing, so that a script (and a user
        # who mistyped a symbol) can tell that from a replay that printed events
        raise click.ClickException(
            _nothing_matched(path, types if events else [], names if symbols else None, start, end)
        )


#: recorded symbols shown at most when none of --symbols matched
SHOWN_SYMBOLS = 20


def _nothing_matched(
    path: Path | S3Location,
    types: list[type[Event]],
    names: list[str] | None,
    start: str | None,
    end: str | None,
) -> str:
    """Why a replay printed nothing, and what the recording holds instead.

    Args:
        types: the event types asked for with ``--events`` (empty: every type recorded).
        names: the symbols asked for with ``--symbols``, if any.
    """
    kinds = (" " + ", ".join(cls.__name__ for cls in types)) if types else ""
    window = " with" if start or end else ""
    window += "".join(
        f" {option} {value}" for option, value in (("--start", start), ("--end", end)) if value
    )
    if not types:
        types = _recorded_types(path)
    if not names:
        return f"no{kinds} events in {str(path)!r}{window}"
    recorded = _recorded_symbols(path, types)
    wanted = ",".join(names)
    if recorded and not set(names) & set(recorded):
        shown = ", ".join(recorded[:SHOWN_SYMBOLS])
        if len(recorded) > SHOWN_SYMBOLS:
            shown += f"... ({len(recorded):,} in all)"
        return (
            f"no{kinds} events for --symbols {wanted} in {str(path)!r}: the recording has {shown}"
        )
    if not recorded:
        return f"no{kinds} events for --symbols {wanted} in {str(path)!r}: it has no symbols"
    return f"no{kinds} events for --symbols {wanted} in {str(path)!r}{window}"


def _recorded_symbols(path: Path | S3Location, types: list[type[Event]]) -> list[str]:
    """The symbols recorded for ``types`` (read from the ``event_symbol`` columns only)."""
    import pyarrow.compute as pc

    from .reader import _open, recording_files, table_name

    found: set[str] = set()
    for cls in types:
        for file in recording_files(path, table_name(cls)):
            parquet = _open(file)
            if "event_symbol" not in parquet.schema_arrow.names:
                continue  # account tables have no symbols
            column = parquet.read(columns=["event_symbol"]).column(0)
            found.update(s for s in pc.unique(column.cast("string")).to_pylist() if s)
    return sorted(found)


@click.command()
@location_argument
@bind_options()
@speed_option("1")
@time_window("Each connection replays the events")
@click.option("--token", default=None, help="Require this AUTH token (default: none needed).")
def serve(
    path: Path | S3Location,
    host: str,
    port: int,
    speed: str,
    start: str | None,
    end: str | None,
    token: str | None,
) -> None:
    """Serve a recording (PATH, default: data; or s3://bucket/prefix) over DXLink: any DXLink
    client can run against a recorded day.

    Prints `dxlink ws://HOST:PORT/realtime` as the first line of stdout, then serves until
    Ctrl-C. Each connection gets its own replay, from the start of the recording (or --start)
    at --speed, of whatever it subscribes to.
    """
    from .._cli import run as _run
    from ..sim import Simulator
    from .feed import ReplayFeed

    pace = _speed(speed)
    if not _recorded_types(path):
        raise click.ClickException(f"no recorded events in {str(path)!r}")

    async def run() -> None:
        import anyio

        def feed() -> ReplayFeed:
            return ReplayFeed(path, speed=pace, start=start, end=end)

        async with Simulator(host=host, port=port, token=token, feed_factory=feed) as server:
            click.echo(f"dxlink {server.url}")
            sys.stdout.flush()
            await anyio.sleep_forever()

    _run(run)
