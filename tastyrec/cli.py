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

The group imports click and :mod:`tastyrec._cli` only; each command's module is imported when
that command runs (or for ``--help``), so ``tastyrec sql`` starts without anyio, msgspec,
websockets or the event classes.
"""

from __future__ import annotations

from typing import Final

import click

from ._cli import parse_duration, parse_size, parse_symbols, setup_logging
from ._version import __version__

__all__ = ("main", "parse_duration", "parse_size", "parse_symbols")


class _LazyGroup(click.Group):
    """A group whose commands in other modules are imported only when they run (or --help):
    ``tastyrec sql`` does not import websockets, ``tastyrec record`` does not import DuckDB."""

    #: command name -> "module:attribute"
    lazy: Final = {
        "compact": "tastyrec.query.commands:compact",
        "info": "tastyrec.query.commands:info",
        "listen": "tastyrec.dxlink.commands:listen",
        "record": "tastyrec.record.commands:record",
        "recover": "tastyrec.record.commands:recover",
        "replay": "tastyrec.replay.commands:replay",
        "serve": "tastyrec.replay.commands:serve",
        "simulate": "tastyrec.sim.commands:simulate",
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
    setup_logging(verbose)
