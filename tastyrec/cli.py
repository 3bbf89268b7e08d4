"""The ``tastyrec`` command line (click). The only place where logging is configured.

Commands:

* ``tastyrec simulate`` — run the DXLink simulator and print its URL (``dxlink ws://...``) as the
  first line of stdout.
* ``tastyrec listen`` — stream events from a DXLink server (or, with ``--demo``, from a built-in
  simulator) and print them as JSON lines.
"""

from __future__ import annotations

import logging
import math
import re
import signal
import sys
from collections.abc import Sequence
from typing import Any, Final

import anyio
import click
import msgspec

from ._version import __version__
from .events.registry import EVENT_TYPES, event_class
from .exceptions import TastyrecError

__all__ = ("main",)

TOKEN_ENV: Final = "TASTYREC_DXLINK_TOKEN"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """``"90s"``, ``"5m"``, ``"1.5h"``, ``"250ms"`` or a plain number of seconds -> seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise click.BadParameter(f"{text!r} is not a duration such as 30s, 5m or 1h")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@click.group()
@click.version_option(__version__, prog_name="tastyrec")
@click.option("-v", "--verbose", count=True, help="More logging on stderr (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Record tastytrade's real-time streams into Parquet and play them back."""
    _setup_logging(verbose)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=0, show_default=True, help="TCP port; 0 picks a free one.")
@click.option("--seed", default=0, show_default=True, help="Market seed (same seed, same prices).")
@click.option(
    "--token",
    default="sim-token",
    show_default=True,
    help="The token clients must send in AUTH.",
)
@click.option("--no-auth", is_flag=True, help="Authorise clients without a token (demo mode).")
@click.option(
    "--chaos",
    multiple=True,
    metavar="KIND[:EVERY]",
    help="Inject a fault periodically: drop, stall, malformed, error or expire, every EVERY "
    "(default 30s). Repeatable.",
)
@click.option(
    "--keepalive-timeout",
    default=60.0,
    show_default=True,
    help="Seconds of client silence before the server times the client out.",
)
@click.option("--quote-rate", default=10.0, show_default=True, help="Quotes per symbol per second.")
def simulate(
    host: str,
    port: int,
    seed: int,
    token: str,
    no_auth: bool,
    chaos: Sequence[str],
    keepalive_timeout: float,
    quote_rate: float,
) -> None:
    """Run a local DXLink server with a synthetic market, until interrupted.

    The first line of stdout is `dxlink ws://HOST:PORT/realtime`; point any DXLink client at it
    (tastyrec, the tastytrade SDK, the dxFeed JavaScript client). Any symbol works: SPY, SPX,
    option symbols such as .SPY261218C600, candle symbols such as SPY{=5m}.
    """
    from .sim import SimConfig, Simulator

    schedule = []
    for item in chaos:
        kind, _, every = item.partition(":")
        schedule.append((kind, parse_duration(every) if every else 30.0))
    config = SimConfig(
        keepalive_timeout=keepalive_timeout, quote_rate_hz=quote_rate, chaos=tuple(schedule)
    )

    async def run() -> None:
        async with Simulator(
            host=host, port=port, seed=seed, token=None if no_auth else token, config=config
        ) as sim:
            click.echo(f"dxlink {sim.url}")
            sys.stdout.flush()
            auth = "no token needed" if no_auth else f"token: {token!r}"
            click.echo(f"serving a simulated market ({auth}); Ctrl-C to stop", err=True)
            await sim.serve_forever()

    _run(run)


@main.command()
@click.option(
    "--symbols", required=True, help="Comma-separated symbols, e.g. SPY,QQQ,.SPY261218C600."
)
@click.option(
    "--events",
    default="Quote",
    show_default=True,
    help=f"Comma-separated event types: {', '.join(EVENT_TYPES)}.",
)
@click.option("--url", help="DXLink websocket URL.")
@click.option("--token", envvar=TOKEN_ENV, help=f"Quote token (or ${TOKEN_ENV}).")
@click.option("--demo", is_flag=True, help="Use a built-in simulator; no account needed.")
@click.option("--for", "duration", default=None, help="Stop after this long (30s, 5m, 1h).")
@click.option("--count", default=None, type=int, help="Stop after this many events.")
def listen(
    symbols: str,
    events: str,
    url: str | None,
    token: str | None,
    demo: bool,
    duration: str | None,
    count: int | None,
) -> None:
    """Print events from a DXLink server as JSON lines (snake_case fields plus event_type)."""
    from .dxlink.streamer import DXLinkStreamer
    from .sim import Simulator

    try:
        types = [event_class(name.strip()) for name in events.split(",") if name.strip()]
    except TastyrecError as exc:
        raise click.BadParameter(str(exc), param_hint="--events") from None
    symbol_list = [s.strip() for s in symbols.split(",") if s.strip()]
    if not demo and url is None:
        raise click.UsageError(
            f"give --url and --token (or ${TOKEN_ENV}) for a DXLink server, or try --demo "
            "for the built-in simulator"
        )
    seconds = parse_duration(duration) if duration else math.inf
    encoder = msgspec.json.Encoder()

    async def stream(server_url: str, server_token: str | None) -> None:
        printed = 0
        async with DXLinkStreamer(url=server_url, token=server_token) as streamer:
            for cls in types:
                await streamer.subscribe(cls, symbol_list)
            with anyio.move_on_after(seconds):
                async with anyio.create_task_group() as tg:
                    send, receive = anyio.create_memory_object_stream[Any](1000)

                    async def pump(cls: Any) -> None:
                        async for event in streamer.listen(cls):
                            await send.send(event)

                    for cls in types:
                        tg.start_soon(pump, cls)
                    async for event in receive:
                        row = msgspec.structs.asdict(event)
                        row["event_type"] = type(event).__name__
                        sys.stdout.write(encoder.encode(row).decode() + "\n")
                        printed += 1
                        if count is not None and printed >= count:
                            tg.cancel_scope.cancel()
                            break
        sys.stdout.flush()

    async def run() -> None:
        if demo:
            async with Simulator(token=None) as sim:
                await stream(sim.url, None)
        else:
            assert url is not None
            await stream(url, token)

    _run(run)


def _run(fn: Any) -> None:
    """Run ``fn`` until it returns or SIGINT/SIGTERM arrives (then exit 0)."""

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
    except TastyrecError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"{exc}") from None
