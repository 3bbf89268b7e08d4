"""The ``tastyrec record`` and ``tastyrec recover`` commands (click): the main job, and turning
a crashed recorder's journal into Parquet. Registered on the ``tastyrec`` group by
:mod:`tastyrec.cli`; the recorder and the streamers are imported when a command runs."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import anyio
import click

from .._cli import (
    DEFAULT_DATA,
    TOKEN_ENV,
    Size,
    check_out_folder,
    count_option,
    duration_option,
    dxlink_options,
    event_types,
    journal_option,
    parse_symbols,
    recording_folder,
    run as _run,
    ws_url,
)
from ..events.registry import EVENT_TYPES, event_class
from ..exceptions import TastyrecError

__all__ = ("record", "recover")

ACCOUNT_TOKEN_ENV: Final = "TASTYREC_ACCOUNT_TOKEN"
#: How often the demo account places an order by itself (``record --demo --account``).
DEMO_ORDER_EVERY: Final = "1s"
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


@click.command()
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
@click.option(
    "--out",
    default=DEFAULT_DATA,
    show_default=True,
    help="Recording folder, or s3://bucket/prefix (credentials and endpoint from the standard "
    "AWS variables and profiles; AWS_ENDPOINT_URL for S3-compatible stores).",
)
@journal_option(
    "With --out s3://...: the local folder of the journal and of the files waiting for "
    "upload [default: under the user's cache dir]."
)
@duration_option(
    "--for", "duration", positive=True, help="Stop cleanly after this long (30s, 5m, 1h)."
)
@dxlink_options("Record from a built-in simulator; no account needed.")
@count_option("--rotate-rows", default=5_000_000, help="Start a new file after this many rows.")
@click.option(
    "--rotate-bytes",
    type=Size(),
    default="512MB",
    show_default=True,
    help="... or after this much uncompressed data (the Parquet file is several times smaller).",
)
@duration_option("--rotate-age", default="1h", positive=True, help="... or after this long.")
@click.option(
    "--fsync",
    type=click.Choice(["interval", "always", "never"]),
    default="interval",
    show_default=True,
    help="When the journal is forced to disk: every --fsync-interval, after every batch, or "
    "when the OS likes (safe against a killed process, not against power loss).",
)
@duration_option("--fsync-interval", default="1s", help="For --fsync interval.")
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
@count_option("--strikes", default=10, help="With --chain: strikes either side of the price.")
@click.option("--sandbox", is_flag=True, help="Use tastytrade's sandbox (cert) environment.")
@click.option(
    "--account-url",
    callback=ws_url,
    help="Account streamer URL (wss://streamer.tastyworks.com).",
)
@click.option(
    "--account-token",
    envvar=ACCOUNT_TOKEN_ENV,
    help=f"OAuth access token for the account streamer (or ${ACCOUNT_TOKEN_ENV}).",
)
@duration_option(
    "--order-every",
    default=DEMO_ORDER_EVERY,
    metavar="SECONDS",
    help="With --demo --account: the simulated account places an order this often.",
)
@duration_option(
    "--reconcile-every",
    default="5m",
    positive=True,
    metavar="SECONDS",
    help="With --account: besides at every (re)connect, fetch the accounts' orders, positions "
    "and balances over REST this often and record what the stream missed (needs the "
    "tastytrade login credentials; the demo uses its fake API).",
)
def record(
    symbols: str | None,
    events: str | None,
    candles: str | None,
    out: str,
    journal: str | None,
    duration: float | None,
    url: str | None,
    token: str | None,
    demo: bool,
    rotate_rows: int,
    rotate_bytes: int,
    rotate_age: float,
    fsync: str,
    fsync_interval: float,
    status: bool | None,
    accounts: Sequence[str],
    chain: str | None,
    dte: str,
    strikes: int,
    sandbox: bool,
    account_url: str | None,
    account_token: str | None,
    order_every: float,
    reconcile_every: float,
) -> None:
    """Record a DXLink stream into rotating Parquet files under --out (the main job).

    Files: OUT/<EventType>/date=YYYY-MM-DD/*.parquet (New York date of receipt), readable by
    DuckDB, polars and Spark. Ctrl-C (or SIGTERM) flushes everything and exits cleanly; after a
    crash, the next record into the same folder (or `tastyrec recover OUT`) restores the journal.

    With --account, the account streamer's notifications go to the same folder, on the same
    receipt-time axis, in tables named after their classes: OUT/PlacedOrder/...,
    OUT/AccountBalance/..., OUT/CurrentPosition/... (never DXLink's Order).
    """
    from .recorder import Recorder
    from .sink import RotationPolicy
    from .upload import s3_destination

    if demo and (url is not None or account_url is not None):
        option = "--url" if url is not None else "--account-url"
        raise click.UsageError(
            f"--demo records from the built-in simulator and cannot be combined with {option}: "
            f"drop --demo to record from {option}, or drop {option}"
        )
    account_list = list(dict.fromkeys(a.strip() for a in accounts if a.strip()))
    chain_list = parse_symbols(chain) if chain else []
    if symbols is None and not account_list and not chain_list:
        raise click.UsageError(
            "give --symbols, --chain and/or --account ACCOUNT_NUMBER: what to record"
        )
    symbol_list = parse_symbols(symbols) if symbols is not None else []
    types = event_types(events)
    periods = _candle_periods(candles)
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
        from ..chain import parse_dte

        try:
            dte_range = parse_dte(dte)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--dte") from None
    if not demo and account_list and (account_url is None or not account_token):
        raise click.UsageError(NO_ACCOUNT_CREDENTIALS.format(env=ACCOUNT_TOKEN_ENV))
    try:
        destination = s3_destination(out)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--out") from None
    if destination is None:
        check_out_folder(out)
        if journal is not None:
            raise click.UsageError("--journal goes with --out s3://bucket/prefix")
    every_s = order_every
    seconds = duration if duration is not None else math.inf
    # each limit was checked (positive) by its option's type, which names the option
    rotation = RotationPolicy(max_rows=rotate_rows, max_bytes=rotate_bytes, max_age_s=rotate_age)
    sync_s = fsync_interval
    plan = _subscription_plan(symbol_list, types)

    async def run() -> None:
        if chain_list:
            await _record_chains()
        elif login:
            from ..session import Session

            async with Session(is_test=sandbox) as session:
                await _record(
                    None, None, _tastytrade(sandbox), account_url, account_token, session, session
                )
        elif demo and account_list:
            from ..session import Session
            from ..sim.account import open_simulators
            from ..sim.rest import ApiSimulator

            async with (
                open_simulators(
                    dxlink_token=None,
                    account_token=None,
                    order_every_s=every_s or None,
                    accounts=account_list,
                ) as (sim, acct),
                ApiSimulator(dxlink=sim, account=acct) as api,
                Session(api.client_secret, api.refresh_token, api_url=api.url) as rest,
            ):
                click.echo(
                    f"recording from the built-in simulators ({sim.url}, account streamer "
                    f"{acct.url}, accounts {', '.join(account_list)}, REST {api.url})",
                    err=True,
                )
                await _record(sim.url, None, "simulator", acct.url, "demo", rest=rest)
        elif demo:
            from ..sim import Simulator

            async with Simulator(token=None) as sim:
                click.echo(f"recording from the built-in simulator ({sim.url})", err=True)
                await _record(sim.url, None, "simulator", None, None)
        elif account_list and os.environ.get(SECRET_ENV) and os.environ.get(REFRESH_ENV):
            from ..session import Session

            async with Session(is_test=sandbox) as rest:  # to reconcile the account stream
                await _record(url, token, None, account_url, account_token, rest=rest)
        else:
            if account_list:
                click.echo(
                    f"the account stream is not reconciled against REST: set ${SECRET_ENV} "
                    f"and ${REFRESH_ENV} to log in",
                    err=True,
                )
            await _record(url, token, None, account_url, account_token)

    async def _record_chains() -> None:
        from ..demo import demo_session
        from .chains import DEFAULT_CHAIN_EVENTS, record_chains

        async with contextlib.AsyncExitStack() as stack:
            if demo:
                session = await stack.enter_async_context(demo_session())
                click.echo(
                    "recording chains from the built-in simulator and fake tastytrade API",
                    err=True,
                )
            else:
                from ..session import Session

                session = await stack.enter_async_context(Session(is_test=sandbox))

            entered: list[Any] = []

            async def show(recorder: Any, chains: Any) -> None:
                entered.append(recorder)
                for cls, names in plan.items():  # --symbols beside the chains
                    await chains.streamer.subscribe(cls, names)
                click.echo(
                    f"following {len(chains.symbols()):,} options of {', '.join(chain_list)}",
                    err=True,
                )
                _print_recovery(recorder)
                await _show_status(recorder, seconds, status)

            try:
                await record_chains(
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
                    journal=journal,
                )
            finally:
                for recorder in entered:  # also after Ctrl-C: the recorder has flushed by now
                    where = recorder.destination or recorder.root
                    click.echo(recorder.stats.summary(time.time_ns(), out=str(where)))

    async def _record(
        server: str | None,
        server_token: str | None,
        source: str | None,
        alerts_url: str | None,
        alerts_token: str | None,
        session: Any = None,
        rest: Any = None,
    ) -> None:
        async with contextlib.AsyncExitStack() as stack:
            streamer = alerts = None
            if symbol_list:
                from ..dxlink.streamer import DXLinkStreamer

                if session is not None:  # URL and quote token from tastytrade, renewed
                    dxlink = DXLinkStreamer(session, queue_size=0, tap_interval=0.05)
                else:
                    assert server is not None
                    dxlink = DXLinkStreamer(
                        url=server, token=server_token, queue_size=0, tap_interval=0.05
                    )
                streamer = await stack.enter_async_context(dxlink)
            if account_list:
                from ..account import AlertStreamer

                assert alerts_url is not None and alerts_token
                # queue_size=1: nothing listens; the recorder reads the tap, which never drops
                alerts = await stack.enter_async_context(
                    AlertStreamer(url=alerts_url, token=alerts_token, queue_size=1)
                )
            recorder = Recorder(
                out,
                streamer,
                account_streamer=alerts,
                account_session=rest if alerts is not None else None,
                reconcile_every_s=reconcile_every,
                source=source,
                symbols=symbol_list,
                rotation=rotation,
                fsync=fsync,
                fsync_interval_s=sync_s,
                journal=journal,
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
                    where = recorder.destination or recorder.root
                    click.echo(recorder.stats.summary(time.time_ns(), out=str(where)))

    _run(run)


#: a dxFeed candle period: an optional positive multiplier and a unit (ticks, seconds, minutes,
#: hours, days, weeks, months, option expirations, years, volume, price, price momentum/renko)
_CANDLE_PERIOD: Final = re.compile(r"^(\d*\.?\d+)?(t|s|m|h|d|w|mo|o|y|v|p|pm|pr)$")


def _candle_periods(text: str | None) -> list[str]:
    """``--candles 1m,5m`` -> ``["1m", "5m"]``; anything that is not a period is refused."""
    periods = [p.strip() for p in text.split(",") if p.strip()] if text else []
    for period in periods:
        match = _CANDLE_PERIOD.match(period)
        if match is None or (match.group(1) is not None and not float(match.group(1)) > 0):
            raise click.BadParameter(
                f"{period!r} is not a candle period such as 1m, 5m, 1h or 1d",
                param_hint="--candles",
            )
    return periods


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

    from ..storage.layout import MARKET_TZ

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

    from .status import StatusDisplay

    ends_ns = None if math.isinf(seconds) else time.time_ns() + round(seconds * 1e9)
    display = StatusDisplay(
        recorder.stats,
        out=str(getattr(recorder, "destination", None) or recorder.root),
        console=Console(stderr=True),
        live=status,
        ends_ns=ends_ns,
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


def _recover_path(ctx: click.Context, param: click.Parameter, value: str) -> Path | str:
    """PATH is checked like every reading command's, unless --out s3://… replaces it."""
    if ctx.params.get("out") is not None:
        return value
    return recording_folder(ctx, param, value)


@click.command()
@click.argument(
    "path", default=DEFAULT_DATA, required=False, type=click.Path(), callback=_recover_path
)
@click.option(
    "--out",
    is_eager=True,  # read before PATH, whose check it turns off
    default=None,
    metavar="s3://BUCKET/PREFIX",
    help="The recording was going to object storage: convert the journal in --journal and "
    "upload every file waiting there (instead of PATH).",
)
@journal_option("With --out: the recorder's journal folder [default: the one `record --out` uses].")
@duration_option(
    "--timeout",
    default="5m",
    positive=True,
    metavar="SECONDS",
    help="With --out: how long to keep retrying uploads.",
)
def recover(path: Path | str, out: str | None, journal: str | None, timeout: float) -> None:
    """Turn journals left by a crashed recorder under PATH (default: data) into Parquet files.

    Keeps every complete record and drops only a torn tail. Journals of recorders still
    running are left alone. Running it twice is harmless. With --out s3://…, the files are
    then uploaded from the journal folder, and deleted locally once the upload is confirmed.
    """
    from .recorder import recover as run_recover
    from .upload import default_journal_dir, s3_destination, upload_recovered

    try:
        destination = s3_destination(out) if out is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--out") from None
    if out is not None and destination is None:
        raise click.BadParameter("give an s3://bucket/prefix URL", param_hint="--out")
    if destination is None and journal is not None:
        raise click.UsageError("--journal goes with --out s3://bucket/prefix")
    try:
        if destination is not None:
            folder = Path(journal) if journal else default_journal_dir(destination)
            report, uploader = upload_recovered(folder, destination, timeout_s=timeout)
        else:
            report, uploader = run_recover(Path(path)), None
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
    if uploader is not None:
        up = uploader.backlog
        click.echo(f"uploaded {up.uploaded_files} files ({up.uploaded_bytes:,} bytes) to {up.dest}")
