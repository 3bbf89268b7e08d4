"""The ``tastyrec simulate`` command (click): the simulators and the fake REST API, until
interrupted. Registered on the ``tastyrec`` group by :mod:`tastyrec.cli`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from .._cli import bind_options, count_option, duration_option, parse_duration, run as _run

__all__ = ("simulate",)


@click.command()
@bind_options()
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
    help="Inject a fault periodically: drop, stall, malformed, error, expire, restart (close "
    "1012), full (silent switch to FULL) or 502 (HTTP 502 on reconnect), every EVERY "
    "(default 30s). Repeatable.",
)
@click.option(
    "--keepalive-timeout",
    default=60.0,
    show_default=True,
    help="Seconds of client silence before the server times the client out.",
)
@click.option(
    "--quote-rate",
    default=10.0,
    show_default=True,
    help="Quotes per second of each stock, ETF or index (each option's: 1 a second).",
)
@click.option(
    "--account-port", default=0, show_default=True, help="TCP port of the account streamer."
)
@duration_option(
    "--order-every",
    default="15s",
    metavar="SECONDS",
    help="The simulated account places an order by itself this often (30s, 500ms; 0: never).",
)
@count_option(
    "--drop-order-every",
    metavar="N",
    help="Chaos: the account streamer silently drops every Nth Order notification, as "
    "production has been reported to (a recorder reconciling against the api still records "
    "every order's state).",
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
    order_every: float,
    drop_order_every: int | None,
) -> None:
    """Run a local DXLink server and account streamer on one synthetic market, until interrupted.

    The first line of stdout is `dxlink ws://HOST:PORT/realtime`; point any DXLink client at it
    (tastyrec, the tastytrade SDK, the dxFeed JavaScript client). Any symbol works: SPY, SPX,
    option symbols such as .SPY261218C600, candle symbols such as SPY{=5m}.

    Then `account ws://HOST:PORT` and `account-number NUMBER`: an account streamer (tastytrade's
    AlertStreamer protocol) with a simulated account whose orders are received, routed, filled at
    the simulated market's prices (partial fills, multi-leg orders, cancels and rejects too),
    with balances and positions updated after fills. Its auth-token is `Bearer TOKEN` or, as at
    tastytrade, `Bearer ACCESS_TOKEN` with an OAuth access token the API below issued.

    Then `api http://HOST:PORT`: a fake tastytrade REST API (OAuth, quote tokens for this DXLink
    server, accounts, option chains). With TASTYTRADE_API_URL set to it, `tastyrec record
    --symbols SPY` and `--chain SPY` log in as they would at tastytrade (the credentials are
    printed on stderr).
    """
    from . import SimConfig

    schedule = []
    for item in chaos:
        kind, _, every = item.partition(":")
        from .server import CHAOS_KINDS

        try:
            seconds = parse_duration(every) if every else 30.0
        except click.BadParameter as exc:
            raise click.BadParameter(exc.message, param_hint="--chaos") from None
        if kind not in CHAOS_KINDS or not seconds > 0:
            raise click.BadParameter(
                f"{item!r} is not KIND[:EVERY]: KIND is one of {', '.join(sorted(CHAOS_KINDS))}; "
                "EVERY is a positive duration such as 30s",
                param_hint="--chaos",
            )
        schedule.append((kind, seconds))
    config = SimConfig(
        keepalive_timeout=keepalive_timeout, quote_rate_hz=quote_rate, chaos=tuple(schedule)
    )
    every_s = order_every
    auth_token = None if no_auth else token

    async def run() -> None:
        from .account import open_simulators
        from .brokerage import AccountSimConfig
        from .rest import ApiSimulator

        async with open_simulators(
            host=host,
            dxlink_port=port,
            account_port=account_port,
            seed=seed,
            dxlink_token=auth_token,
            account_token=auth_token,
            sim_config=config,
            account_config=AccountSimConfig(drop_order_every=drop_order_every),
            order_every_s=every_s or None,
        ) as (dx, acct):
            api = ApiSimulator(dxlink=dx, account=acct, host=host)  # its tokens work on acct
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
                import anyio

                await anyio.sleep_forever()
            finally:
                api.close()

    _run(run)
