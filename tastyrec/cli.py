"""The ``tastyrec`` command line (click). The only place where logging is configured.

Commands:

* ``tastyrec simulate`` — run the DXLink simulator and the account-streamer simulator (one market)
  and print their URLs: ``dxlink ws://...`` as the first line of stdout, then ``account ws://...``
  and ``account-number 5WT00000``.
* ``tastyrec listen`` — stream events from a DXLink server (or, with ``--demo``, from a built-in
  simulator) and print them as JSON lines.
* ``tastyrec record`` — the main job: record a DXLink stream (and, with ``--account``, the account
  streamer's orders, fills, balances and positions) into rotating Parquet files.
* ``tastyrec recover`` — turn journals left by a crashed recorder into Parquet.
* ``tastyrec replay`` / ``tastyrec serve`` — a recording as JSON lines, or served over DXLink
  (:mod:`tastyrec.replay.commands`).
* ``tastyrec sql`` / ``info`` / ``compact`` — DuckDB over recordings (:mod:`tastyrec.query`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any, Final

import anyio
import click
import msgspec

from ._version import __version__
from .events.registry import EVENT_TYPES, event_class
from .exceptions import TastyrecError, _unwrap_group

__all__ = ("main",)

TOKEN_ENV: Final = "TASTYREC_DXLINK_TOKEN"
ACCOUNT_TOKEN_ENV: Final = "TASTYREC_ACCOUNT_TOKEN"
#: How often the demo account places an order by itself (``record --demo --account``).
DEMO_ORDER_EVERY: Final = "1s"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_SIZE_UNITS: Final = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
#: Event types recorded by default; Greeks are added for option symbols.
DEFAULT_EVENTS: Final = ("Quote", "Trade", "Summary", "Profile")
#: tastytrade OAuth credentials (see tastyrec.session)
SECRET_ENV: Final = "TASTYTRADE_CLIENT_SECRET"
REFRESH_ENV: Final = "TASTYTRADE_REFRESH_TOKEN"
NO_CREDENTIALS: Final = (
    "no credentials: set TASTYTRADE_CLIENT_SECRET and TASTYTRADE_REFRESH_TOKEN to record from "
    "your tastytrade account (--sandbox for the cert environment), or give --url and --token "
    "(or set ${env}) for any DXLink server, or try --demo to record from the built-in simulator"
)
NO_ACCOUNT_CREDENTIALS: Final = (
    "recording accounts needs --account-url (wss://streamer.tastyworks.com, sandbox "
    "wss://streamer.cert.tastyworks.com) and --account-token (or set ${env}): a tastytrade OAuth "
    "access token (tastyrec cannot log in for you yet); or try --demo to record the simulated "
    "account"
)


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


def _event_types(text: str | None) -> list[type[Any]] | None:
    if text is None:
        return None
    try:
        return [event_class(name.strip()) for name in text.split(",") if name.strip()]
    except TastyrecError as exc:
        raise click.BadParameter(str(exc), param_hint="--events") from None


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


class _LazyGroup(click.Group):
    """A group whose commands in other modules are imported only when they run (or --help):
    ``tastyrec sql`` does not import websockets, ``tastyrec record`` does not import DuckDB."""

    #: command name -> "module:attribute"
    lazy: Final = {
        "compact": "tastyrec.query.commands:compact",
        "info": "tastyrec.query.commands:info",
        "replay": "tastyrec.replay.commands:replay",
        "serve": "tastyrec.replay.commands:serve",
        "sql": "tastyrec.query.commands:sql",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.lazy.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        import importlib

        module, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_LazyGroup)
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
@click.option(
    "--account-port", default=0, show_default=True, help="TCP port of the account streamer."
)
@click.option(
    "--order-every",
    default="15s",
    show_default=True,
    metavar="SECONDS",
    help="The simulated account places an order by itself this often (30s, 500ms; 0: never).",
)
def simulate(
    host: str,
    port: int,
    seed: int,
    token: str,
    no_auth: bool,
    chaos: Sequence[str],
    keepalive_timeout: float,
    quote_rate: float,
    account_port: int,
    order_every: str,
) -> None:
    """Run a local DXLink server and account streamer on one synthetic market, until interrupted.

    The first line of stdout is `dxlink ws://HOST:PORT/realtime`; point any DXLink client at it
    (tastyrec, the tastytrade SDK, the dxFeed JavaScript client). Any symbol works: SPY, SPX,
    option symbols such as .SPY261218C600, candle symbols such as SPY{=5m}.

    Then `account ws://HOST:PORT` and `account-number NUMBER`: an account streamer (tastytrade's
    AlertStreamer protocol) with a simulated account whose orders are received, routed, filled at
    the simulated market's prices (partial fills, multi-leg orders, cancels and rejects too),
    with balances and positions updated after fills. Its auth-token is `Bearer TOKEN`.

    Then `api http://HOST:PORT`: a fake tastytrade REST API (OAuth, quote tokens for this DXLink
    server, accounts, option chains). With TASTYTRADE_API_URL set to it, `tastyrec record
    --symbols SPY` and `--chain SPY` log in as they would at tastytrade (the credentials are
    printed on stderr).
    """
    from .sim import SimConfig

    schedule = []
    for item in chaos:
        kind, _, every = item.partition(":")
        schedule.append((kind, parse_duration(every) if every else 30.0))
    config = SimConfig(
        keepalive_timeout=keepalive_timeout, quote_rate_hz=quote_rate, chaos=tuple(schedule)
    )
    every_s = parse_duration(order_every)
    auth_token = None if no_auth else token

    async def run() -> None:
        from .sim.account import open_simulators
        from .sim.rest import ApiSimulator

        async with open_simulators(
            host=host,
            dxlink_port=port,
            account_port=account_port,
            seed=seed,
            dxlink_token=auth_token,
            account_token=auth_token,
            sim_config=config,
            order_every_s=every_s or None,
        ) as (dx, acct):
            api = ApiSimulator(dxlink=dx, host=host)
            api.start()
            try:
                for line in (
                    f"dxlink {dx.url}",
                    f"account {acct.url}",
                    f"account-number {acct.account_number}",
                    f"api {api.url}",
                ):
                    click.echo(line)
                sys.stdout.flush()
                auth = "no token needed" if no_auth else f"token: {token!r}"
                click.echo(
                    f"serving a simulated market and account ({auth}) and a fake tastytrade API "
                    f"(TASTYTRADE_API_URL={api.url} TASTYTRADE_CLIENT_SECRET={api.client_secret} "
                    f"TASTYTRADE_REFRESH_TOKEN={api.refresh_token}); Ctrl-C to stop",
                    err=True,
                )
                await anyio.sleep_forever()
            finally:
                api.close()

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


@main.command()
@click.option(
    "--symbols",
    default=None,
    help="Comma-separated symbols (SPY,QQQ,.SPY261218C600), or @FILE with one symbol a line "
    "(required unless --account is given).",
)
@click.option(
    "--events",
    default=None,
    help="Comma-separated event types [default: Quote,Trade,Summary,Profile, plus Greeks for "
    f"option symbols]. Any of: {', '.join(EVENT_TYPES)}.",
)
@click.option(
    "--candles",
    default=None,
    metavar="1m,5m",
    help="Also record candles of these periods, from the start of the New York day.",
)
@click.option("--out", default="data", show_default=True, help="Recording folder.")
@click.option("--for", "duration", default=None, help="Stop cleanly after this long (30s, 5m, 1h).")
@click.option("--url", help="DXLink websocket URL.")
@click.option("--token", envvar=TOKEN_ENV, help=f"Quote token (or ${TOKEN_ENV}).")
@click.option("--demo", is_flag=True, help="Record from a built-in simulator; no account needed.")
@click.option(
    "--rotate-rows",
    default=5_000_000,
    show_default=True,
    help="Start a new file after this many rows.",
)
@click.option(
    "--rotate-bytes",
    default="512MB",
    show_default=True,
    help="... or after this much uncompressed data (the Parquet file is several times smaller).",
)
@click.option("--rotate-age", default="1h", show_default=True, help="... or after this long.")
@click.option(
    "--fsync",
    type=click.Choice(["interval", "always", "never"]),
    default="interval",
    show_default=True,
    help="When the journal is forced to disk: every --fsync-interval, after every batch, or "
    "when the OS likes (safe against a killed process, not against power loss).",
)
@click.option("--fsync-interval", default="1s", show_default=True, help="For --fsync interval.")
@click.option(
    "--status/--no-status",
    default=None,
    help="Live status table [default: on a terminal]; otherwise a log line every 10 s.",
)
@click.option(
    "--account",
    "accounts",
    multiple=True,
    metavar="ACCOUNT_NUMBER",
    help="Also record this account's orders, fills, balances and positions (repeatable); "
    "with --demo, the simulated account(s).",
)
@click.option(
    "--chain",
    default=None,
    metavar="SPY,SPX",
    help="Record these underlyings' option chains around the money (--strikes either side per "
    "expiry within --dte, re-centred as the price moves) and the underlyings themselves.",
)
@click.option(
    "--dte", default="0-45", show_default=True, help="With --chain: days to expiration, N or N-M."
)
@click.option(
    "--strikes",
    default=10,
    show_default=True,
    help="With --chain: strikes either side of the price.",
)
@click.option("--sandbox", is_flag=True, help="Use tastytrade's sandbox (cert) environment.")
@click.option("--account-url", help="Account streamer URL (wss://streamer.tastyworks.com).")
@click.option(
    "--account-token",
    envvar=ACCOUNT_TOKEN_ENV,
    help=f"OAuth access token for the account streamer (or ${ACCOUNT_TOKEN_ENV}).",
)
@click.option(
    "--order-every",
    default=DEMO_ORDER_EVERY,
    show_default=True,
    metavar="SECONDS",
    help="With --demo --account: the simulated account places an order this often.",
)
def record(
    symbols: str | None,
    events: str | None,
    candles: str | None,
    out: str,
    duration: str | None,
    url: str | None,
    token: str | None,
    demo: bool,
    rotate_rows: int,
    rotate_bytes: str,
    rotate_age: str,
    fsync: str,
    fsync_interval: str,
    status: bool | None,
    accounts: Sequence[str],
    chain: str | None,
    dte: str,
    strikes: int,
    sandbox: bool,
    account_url: str | None,
    account_token: str | None,
    order_every: str,
) -> None:
    """Record a DXLink stream into rotating Parquet files under --out (the main job).

    Files: OUT/<EventType>/date=YYYY-MM-DD/*.parquet (New York date of receipt), readable by
    DuckDB, polars and Spark. Ctrl-C (or SIGTERM) flushes everything and exits cleanly; after a
    crash, the next record into the same folder (or `tastyrec recover OUT`) restores the journal.

    With --account, the account streamer's notifications go to the same folder, on the same
    receipt-time axis, in tables named after their classes: OUT/PlacedOrder/...,
    OUT/AccountBalance/..., OUT/CurrentPosition/... (never DXLink's Order).
    """
    from .record.recorder import Recorder
    from .record.sink import RotationPolicy

    account_list = list(dict.fromkeys(a.strip() for a in accounts if a.strip()))
    chain_list = parse_symbols(chain) if chain else []
    if symbols is None and not account_list and not chain_list:
        raise click.UsageError(
            "give --symbols, --chain and/or --account ACCOUNT_NUMBER: what to record"
        )
    symbol_list = parse_symbols(symbols) if symbols is not None else []
    types = _event_types(events)
    periods = [p.strip() for p in candles.split(",") if p.strip()] if candles else []
    # a tastytrade login (env credentials) when neither --demo nor --url says otherwise
    login = not demo and url is None and bool(symbol_list or chain_list)
    if login and not (os.environ.get(SECRET_ENV) and os.environ.get(REFRESH_ENV)):
        raise click.UsageError(NO_CREDENTIALS.format(env=TOKEN_ENV))
    if chain_list and account_list:
        raise click.UsageError(
            "--chain and --account cannot be combined yet: record the account in a second "
            "`tastyrec record --account ...` into the same --out folder"
        )
    if chain_list and url is not None:
        raise click.UsageError(
            "--chain needs tastytrade's option chains: use the TASTYTRADE_* credentials (or "
            "--demo), not --url"
        )
    dte_range = (0, 45)
    if chain_list:
        from .chain import parse_dte

        try:
            dte_range = parse_dte(dte)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--dte") from None
    if not demo and account_list and (account_url is None or not account_token):
        raise click.UsageError(NO_ACCOUNT_CREDENTIALS.format(env=ACCOUNT_TOKEN_ENV))
    every_s = parse_duration(order_every)
    seconds = parse_duration(duration) if duration else math.inf
    try:
        rotation = RotationPolicy(
            max_rows=rotate_rows,
            max_bytes=parse_size(rotate_bytes),
            max_age_s=parse_duration(rotate_age),
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    sync_s = parse_duration(fsync_interval)
    plan = _subscription_plan(symbol_list, types)

    async def run() -> None:
        if chain_list:
            await _record_chains()
        elif login:
            from .session import Session

            async with Session(is_test=sandbox) as session:
                await _record(None, None, _tastytrade(sandbox), account_url, account_token, session)
        elif demo and account_list:
            from .sim.account import open_simulators

            async with open_simulators(
                dxlink_token=None,
                account_token=None,
                order_every_s=every_s or None,
                accounts=account_list,
            ) as (sim, acct):
                click.echo(
                    f"recording from the built-in simulators ({sim.url}, account streamer "
                    f"{acct.url}, accounts {', '.join(account_list)})",
                    err=True,
                )
                await _record(sim.url, None, "simulator", acct.url, "demo")
        elif demo:
            from .sim import Simulator

            async with Simulator(token=None) as sim:
                click.echo(f"recording from the built-in simulator ({sim.url})", err=True)
                await _record(sim.url, None, "simulator", None, None)
        else:
            await _record(url, token, None, account_url, account_token)

    async def _record_chains() -> None:
        from .record.chains import DEFAULT_CHAIN_EVENTS, demo_session, record_chains

        async with contextlib.AsyncExitStack() as stack:
            if demo:
                session = await stack.enter_async_context(demo_session())
                click.echo(
                    "recording chains from the built-in simulator and fake tastytrade API",
                    err=True,
                )
            else:
                from .session import Session

                session = await stack.enter_async_context(Session(is_test=sandbox))

            async def show(recorder: Any, chains: Any) -> None:
                for cls, names in plan.items():  # --symbols beside the chains
                    await chains.streamer.subscribe(cls, names)
                click.echo(
                    f"following {len(chains.symbols()):,} options of {', '.join(chain_list)}",
                    err=True,
                )
                _print_recovery(recorder)
                await _show_status(recorder, seconds, status)

            recorder = await record_chains(
                out,
                session,
                chain_list,
                dte=dte_range,
                strikes=strikes,
                event_types=types if types is not None else list(DEFAULT_CHAIN_EVENTS),
                run=show,
                rotation=rotation,
                fsync=fsync,
                fsync_interval_s=sync_s,
                source="simulator" if demo else _tastytrade(sandbox),
            )
            click.echo(recorder.stats.summary(time.time_ns()))

    async def _record(
        server: str | None,
        server_token: str | None,
        source: str | None,
        alerts_url: str | None,
        alerts_token: str | None,
        session: Any = None,
    ) -> None:
        async with contextlib.AsyncExitStack() as stack:
            streamer = alerts = None
            if symbol_list:
                from .dxlink.streamer import DXLinkStreamer

                if session is not None:  # URL and quote token from tastytrade, renewed
                    dxlink = DXLinkStreamer(session, queue_size=0, tap_interval=0.05)
                else:
                    assert server is not None
                    dxlink = DXLinkStreamer(
                        url=server, token=server_token, queue_size=0, tap_interval=0.05
                    )
                streamer = await stack.enter_async_context(dxlink)
            if account_list:
                from .account import AlertStreamer

                assert alerts_url is not None and alerts_token
                # queue_size=1: nothing listens; the recorder reads the tap, which never drops
                alerts = await stack.enter_async_context(
                    AlertStreamer(url=alerts_url, token=alerts_token, queue_size=1)
                )
            recorder = Recorder(
                out,
                streamer,
                account_streamer=alerts,
                source=source,
                symbols=symbol_list,
                rotation=rotation,
                fsync=fsync,
                fsync_interval_s=sync_s,
            )
            entered = False
            try:
                async with recorder:
                    entered = True
                    if alerts is not None:
                        await alerts.subscribe_accounts(account_list)
                    if streamer is not None:
                        for cls, names in plan.items():
                            await streamer.subscribe(cls, names)
                        for period in periods:
                            await streamer.subscribe_candle(
                                symbol_list, period, start_time=_day_start()
                            )
                    _print_recovery(recorder)
                    await _show_status(recorder, seconds, status)
            finally:
                if entered:  # also after Ctrl-C: the recorder has flushed by now
                    click.echo(recorder.stats.summary(time.time_ns()))

    _run(run)


def _tastytrade(sandbox: bool) -> str:
    """The source recorded in the files for a tastytrade login (no credentials in it)."""
    return "tastytrade sandbox" if sandbox else "tastytrade"


def _subscription_plan(symbols: list[str], types: list[type[Any]] | None) -> dict[Any, list[str]]:
    if types is not None:
        return dict.fromkeys(types, symbols)
    plan: dict[Any, list[str]] = {event_class(name): symbols for name in DEFAULT_EVENTS}
    options = [s for s in symbols if s.startswith(".")]
    if options:
        plan[event_class("Greeks")] = options
    return plan


def _day_start() -> Any:
    from datetime import datetime, time as dtime

    from .record.layout import MARKET_TZ

    return datetime.combine(datetime.now(MARKET_TZ).date(), dtime(0), MARKET_TZ)


def _print_recovery(recorder: Any) -> None:
    report = recorder.recovered
    if report is not None and report.files:
        click.echo(
            f"recovered {report.rows:,} rows into {len(report.files)} files from an interrupted "
            "recording",
            err=True,
        )


async def _show_status(recorder: Any, seconds: float, status: bool | None) -> None:
    """Run the status display until ``seconds`` pass (or cancellation)."""
    from rich.console import Console

    from .record.status import StatusDisplay

    display = StatusDisplay(
        recorder.stats, out=str(recorder.root), console=Console(stderr=True), live=status
    )
    root = logging.getLogger()
    handlers = root.handlers[:]
    if display.live:  # log lines go above the live table instead of garbling it
        from rich.logging import RichHandler

        root.handlers = [RichHandler(console=display.console, show_path=False)]
    else:
        logging.getLogger("tastyrec.record.status").setLevel(logging.INFO)
    try:
        with display, anyio.move_on_after(seconds):
            while True:
                await anyio.sleep(display.interval_s)
                display.refresh()
    finally:
        root.handlers = handlers


@main.command()
@click.argument("path", default="data")
def recover(path: str) -> None:
    """Turn journals left by a crashed recorder under PATH into Parquet files.

    Keeps every complete record and drops only a torn tail. Journals of recorders still
    running are left alone. Running it twice is harmless.
    """
    from pathlib import Path

    from .record.recorder import recover as run_recover

    if not Path(path).is_dir():
        raise click.BadParameter(f"{path!r} is not a folder", param_hint="PATH")
    try:
        report = run_recover(path)
    except TastyrecError as exc:
        raise click.ClickException(str(exc)) from None
    torn = f"; dropped {report.torn_bytes:,} bytes of torn tail" if report.torn_bytes else ""
    live = (
        f"; left {report.skipped_live} journal segments of a running recorder alone"
        if report.skipped_live
        else ""
    )
    click.echo(
        f"recovered {report.rows:,} rows into {len(report.files)} files from "
        f"{len(report.sessions)} interrupted sessions{torn}{live}"
    )


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
    except BaseExceptionGroup as eg:  # a task group's failure: report its real cause
        exc = _unwrap_group(eg)
        if isinstance(exc, TastyrecError | OSError):
            raise click.ClickException(str(exc)) from None
        raise
    except (TastyrecError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
