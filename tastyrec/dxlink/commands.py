"""The ``tastyrec listen`` command (click): a DXLink stream as JSON lines. Registered on the
``tastyrec`` group by :mod:`tastyrec.cli`."""

from __future__ import annotations

import math
import sys
from typing import Any

import anyio
import click
import msgspec

from .._cli import TOKEN_ENV, count_option, duration_option, dxlink_options, run as _run
from ..events.registry import EVENT_TYPES, event_class
from ..exceptions import TastyrecError

__all__ = ("listen",)


@click.command()
@click.option(
    "--symbols", required=True, help="Comma-separated symbols, e.g. SPY,QQQ,.SPY261218C600."
)
@click.option(
    "--events",
    default="Quote",
    show_default=True,
    help=f"Comma-separated event types: {', '.join(EVENT_TYPES)}.",
)
@dxlink_options("Use a built-in simulator; no account needed.")
@duration_option("--for", "duration", positive=True, help="Stop after this long (30s, 5m, 1h).")
@count_option("--count", help="Stop after this many events.")
def listen(
    symbols: str,
    events: str,
    url: str | None,
    token: str | None,
    demo: bool,
    duration: float | None,
    count: int | None,
) -> None:
    """Print events from a DXLink server as JSON lines (snake_case fields plus event_type)."""
    from ..demo import demo_dxlink
    from .streamer import DXLinkStreamer

    try:
        types = [event_class(name.strip()) for name in events.split(",") if name.strip()]
    except TastyrecError as exc:
        raise click.BadParameter(str(exc), param_hint="--events") from None
    symbol_list = [s.strip() for s in symbols.split(",") if s.strip()]
    if demo and url is not None:
        raise click.UsageError(
            "--demo listens to the built-in simulator and cannot be combined with --url: "
            "drop --demo to listen to --url, or drop --url"
        )
    if not demo and url is None:
        raise click.UsageError(
            f"give --url and --token (or ${TOKEN_ENV}) for a DXLink server, or try --demo "
            "for the built-in simulator"
        )
    seconds = duration if duration is not None else math.inf
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
            async with demo_dxlink() as (demo_url, demo_token):
                await stream(demo_url, demo_token)
        else:
            assert url is not None
            await stream(url, token)

    _run(run)
