"""The ``tastyrec sql``, ``tastyrec info`` and ``tastyrec compact`` commands (click).

* ``tastyrec sql "SELECT ..." [--data PATH] [--format table|csv|json|parquet] [-o FILE]
  [--start T] [--end T]`` — a readable table on a terminal; CSV when piped (or the format asked
  for); ``--start``/``--end`` keep the event rows of that window (:mod:`tastyrec._time`).
* ``tastyrec info [PATH]`` — per event type: files, rows, bytes, symbols, first and last time;
  then the sessions and gaps.
* ``tastyrec compact [PATH] [--date D]`` — merge each partition's small files into large ones.

Every command reading a recording takes its folder the same way: ``PATH`` (``--data`` for
``sql``) defaults to ``data``, the folder ``tastyrec record`` writes by default, and a missing
folder or a file is refused before anything is opened (:func:`tastyrec._cli.recording_folder`).

Registered on the main group by :mod:`tastyrec.cli`. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import sys
import time
from datetime import date
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import click

from .._cli import (
    DEFAULT_DATA,
    location_argument,
    recording_location,
    time_window,
)

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa
    from rich.console import Console

    from ..objectstore import S3Location
    from ._compact import CompactionResult

__all__ = ("compact", "info", "sql")

FORMATS: Final = ("table", "csv", "json", "parquet")
#: rows a terminal table shows at most; the rest are counted
TABLE_ROWS: Final = 200


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


@click.command()
@click.argument("query")
@click.option(
    "--data",
    "-d",
    default=DEFAULT_DATA,
    show_default=True,
    type=click.Path(),
    callback=recording_location,
    help="Recording folder (what `tastyrec record --out` wrote), or s3://bucket/prefix.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="Output format [default: table on a terminal, csv otherwise].",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file instead of standard output.",
)
@time_window("Event views keep rows")
def sql(
    query: str,
    data: Path | S3Location,
    fmt: str | None,
    output: Path | None,
    start: str | None,
    end: str | None,
) -> None:
    """Run a SQL QUERY over a recording with DuckDB.

    Each recorded event type is a view (Quote, Trade, Greeks...) with a `date` column, the New
    York date of receipt; `sessions` and `gaps` hold the bookkeeping. --start/--end keep the
    event rows received in that window (naive times are New York time). Example:

        tastyrec sql "SELECT event_symbol, count(*) FROM Quote GROUP BY 1"
    """
    import duckdb

    from ..exceptions import TastyrecError
    from ..storage.sql import connect

    if fmt is None:
        fmt = "table" if output is None and sys.stdout.isatty() else "csv"
    if fmt == "parquet" and output is None and sys.stdout.isatty():
        raise click.UsageError("parquet is binary: give -o FILE or pipe the output")
    if output is not None and not output.parent.is_dir():
        raise click.UsageError(f"no folder {str(output.parent)!r} for -o: create it first")
    try:
        con = connect(data, start=start, end=end)
    except TastyrecError as exc:
        raise _fail(exc) from None
    try:
        relation = con.sql(query)
        if relation is not None and fmt == "csv":
            # DuckDB writes CSV itself: no pyarrow to import, no Arrow copy of the result, and
            # the same text into a pipe, a file or -o FILE
            _write_csv(relation, output)
            return
        table = relation.to_arrow_table() if relation is not None else None
    except duckdb.Error as exc:
        views = sorted(r[0] for r in con.sql("SHOW TABLES").fetchall())
        raise click.ClickException(
            f"{exc}\n(tables in {str(data)!r}: {', '.join(views) or 'none'}; "
            f"`tastyrec info {data}` shows what was recorded)"
        ) from None
    if table is None:  # a statement (SET, CREATE VIEW...): nothing to show
        return
    try:
        if fmt == "table":
            _print_table(table, output)
        elif output is not None:
            with open(output, "wb") as fh:
                _write(table, fmt, fh)
        else:
            _write(table, fmt, sys.stdout.buffer)
            sys.stdout.buffer.flush()
    except OSError as exc:
        if output is None:
            raise
        raise click.ClickException(f"cannot write {str(output)!r}: {exc.strerror or exc}") from None


def _write_csv(relation: duckdb.DuckDBPyRelation, output: Path | None) -> None:
    if output is not None:
        relation.write_csv(str(output), header=True)
        return
    sys.stdout.flush()
    if _stdout_is_a_pipe():
        relation.write_csv("/dev/stdout", header=True)
        return
    # a file (DuckDB reopening /dev/stdout would truncate what `>>` appended to) or a
    # terminal: through a temporary file
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tastyrec-sql-") as folder:
        path = Path(folder) / "result.csv"
        relation.write_csv(str(path), header=True)
        with open(path, "rb") as fh:
            shutil.copyfileobj(fh, sys.stdout.buffer)
    sys.stdout.buffer.flush()


def _stdout_is_a_pipe() -> bool:
    """Whether DuckDB can write to ``/dev/stdout``: a pipe, not a file (reopening a file
    opened with ``>>`` would truncate it) nor a terminal."""
    import os
    import stat

    try:
        return stat.S_ISFIFO(os.fstat(sys.stdout.fileno()).st_mode)
    except (OSError, ValueError):  # no real file descriptor (e.g. captured in tests)
        return False


def _write(table: pa.Table, fmt: str, sink: IO[bytes]) -> None:
    if fmt == "json":  # JSON lines: one object per row
        import polars as pl

        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        frame.write_ndjson(sink)
    else:
        import pyarrow.parquet as pq

        pq.write_table(table, sink, compression="zstd")


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _console(fh: IO[str] | None = None) -> Console:
    from rich.console import Console

    if fh is not None:
        return Console(file=fh, width=200, soft_wrap=True)
    return Console(width=None if sys.stdout.isatty() else 200)


def _print_table(table: pa.Table, output: Path | None) -> None:
    """Show ``table`` as a table; on a terminal too narrow for it, one record per block.

    A file, or standard output that is not a terminal, gets the table at its full width: no
    cell is ever cut short.
    """
    console = _console(open(output, "w", encoding="utf-8") if output is not None else None)
    try:
        _render_table(table, console, fit=output is None and sys.stdout.isatty())
    finally:
        if output is not None:
            console.file.close()


def _render_table(table: pa.Table, console: Console, *, fit: bool) -> None:
    """Print up to :data:`TABLE_ROWS` rows of ``table`` on ``console``.

    Args:
        table: the query's result.
        console: where to print.
        fit: the console's width is a hard limit (a terminal): when the table is wider, print
            records vertically (``column: value`` lines, like psql's ``\\x``) instead of cutting
            every cell short. Otherwise the table is printed at its natural width.
    """
    from rich.table import Table
    from rich.text import Text

    from .._arrow_values import text_columns

    shown = table.slice(0, TABLE_ROWS)
    cells = text_columns(shown, _cell)
    caption = f"{table.num_rows:,} rows"
    more = table.num_rows - TABLE_ROWS
    if more > 0:
        caption += f" ({more:,} not shown: use --format csv or -o FILE for all)"
    view = Table(show_lines=False, header_style="bold", caption=caption)
    for field in table.schema:
        numeric = field.type.num_fields == 0 and str(field.type).startswith(
            ("int", "uint", "double", "float", "decimal")
        )
        header = Text(field.name) + Text(f"\n{field.type}", style="dim")
        view.add_column(header, justify="right" if numeric else "left")
    for row in zip(*cells, strict=True):
        view.add_row(*(Text(c) for c in row))  # Text: a value's brackets are not markup
    natural = console.measure(view, options=console.options.update(max_width=1 << 20)).maximum
    if not fit:
        console.width = max(console.width, natural)
        console.print(view)
    elif natural <= console.width:
        console.print(view)
    else:
        _print_vertical(table.column_names, cells, caption, console)


def _print_vertical(
    names: list[str], cells: list[list[str]], caption: str, console: Console
) -> None:
    """One block per record: a ``-[ row N ]`` rule, then ``column: value`` lines."""
    from rich.text import Text

    width = max(len(n) for n in names) + 1
    for number, row in enumerate(zip(*cells, strict=True), start=1):
        title = f"-[ row {number} ]"
        console.print(Text(title + "-" * max(0, min(console.width, 60) - len(title)), "dim"))
        for name, value in zip(names, row, strict=True):
            line = Text.assemble((f"{name + ':':<{width}} ", "bold"), value)
            console.print(line, soft_wrap=True)  # a long value wraps; nothing is cut
    if not cells or not cells[0]:
        console.print(Text("columns: " + ", ".join(names), "dim"), soft_wrap=True)
    console.print(Text(caption, "dim italic"))


@click.command()
@location_argument
def info(path: Path | S3Location) -> None:
    """Show what the recording at PATH (a folder or s3://bucket/prefix) holds (default: data).

    Per event type: files, rows, bytes, symbols, first and last receipt time, dates; then the
    recording sessions and the gaps (disconnects) recorded.
    """
    from rich.table import Table

    from ..exceptions import TastyrecError
    from ._inventory import inventory

    try:
        inv = inventory(path)
    except TastyrecError as exc:
        raise _fail(exc) from None
    console = _console()
    if not inv.types:
        console.print(f"no recorded events in {str(path)!r}")
    else:
        types = Table(title=f"{path}: {inv.rows:,} rows, {_bytes(inv.bytes)}", title_justify="left")
        for name in ("type", "files", "rows", "bytes", "symbols", "first (UTC)", "last (UTC)"):
            types.add_column(name, justify="left" if name in ("type",) else "right")
        types.add_column("dates")
        for t in inv.types:
            files = f"{t.files}" + (f" ({t.compacted} compacted)" if t.compacted else "")
            types.add_row(
                t.event_type,
                files,
                f"{t.rows:,}",
                _bytes(t.bytes),
                f"{t.symbols:,}",
                _time(t.first_ns),
                _time(t.last_ns),
                _dates(t.dates),
            )
        console.print(types)
    sessions = Table(title=f"sessions: {len(inv.sessions)}", title_justify="left")
    for name in ("session", "start (UTC)", "end (UTC)", "status", "rows", "files", "source"):
        sessions.add_column(name, justify="right" if name in ("rows", "files") else "left")
    for s in inv.sessions:
        sessions.add_row(
            str(s["session_id"]),
            _time(s["start"]),
            _time(s["end"]),
            str(s["status"]),
            f"{s['rows']:,}",
            str(s["files"]),
            str(s["source"] or ""),
        )
    console.print(sessions)
    gaps = Table(title=f"gaps: {len(inv.gaps)}", title_justify="left")
    for name in ("session", "last received (UTC)", "disconnected (UTC)", "resumed (UTC)", "reason"):
        gaps.add_column(name)
    for g in inv.gaps:
        gaps.add_row(
            str(g["session_id"]),
            _time(g["last_received"]),
            _time(g["disconnected"]),
            _time(g["resumed"]),
            str(g["reason"] or ""),
        )
    console.print(gaps)


def _time(value: object) -> str:
    """An epoch-ns time of :func:`~tastyrec.query.inventory` in UTC, nanoseconds in full."""
    if not isinstance(value, int):
        return "" if value is None else str(value)
    from .._arrow_values import format_ns

    return format_ns(value)


def _dates(days: tuple[date, ...]) -> str:
    if not days:
        return ""
    if len(days) == 1:
        return days[0].isoformat()
    return f"{days[0].isoformat()} .. {days[-1].isoformat()} ({len(days)})"


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1000
    return f"{n} B"


def _parse_date(ctx: click.Context, param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    from .._time import day

    try:
        return day(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@location_argument
@click.option(
    "--date",
    "day",
    callback=_parse_date,
    default=None,
    help="Only partitions of this New York date (YYYY-MM-DD) [default: all].",
)
def compact(path: Path | S3Location, day: date | None) -> None:
    """Merge each partition's small files at PATH (default: data) into large ones, sorted by
    symbol and time.

    Safe while a recorder writes into PATH (only finished files are merged), idempotent, and
    checked: the merged file is read back and compared before the old files are deleted.
    """
    from ..exceptions import TastyrecError
    from ._compact import compact as run

    started = time.perf_counter()

    def report(result: CompactionResult) -> None:
        where = f"{result.event_type} date={result.day.isoformat()}"
        if result.outputs:
            click.echo(
                f"{where}: {len(result.inputs)} files -> {len(result.outputs)} "
                f"({result.rows:,} rows, {_bytes(result.bytes_in)} -> {_bytes(result.bytes_out)}) "
                f"in {result.seconds:.2f} s",
                err=True,
            )
        else:
            cleaned = f" (removed {result.cleaned} replaced files)" if result.cleaned else ""
            click.echo(f"{where}: up to date{cleaned}", err=True)

    try:
        results = run(path, day=day, progress=report)
    except TastyrecError as exc:
        raise _fail(exc) from None
    merged = [r for r in results if r.outputs]
    files_in = sum(len(r.inputs) for r in merged)
    files_out = sum(len(r.outputs) for r in merged)
    rows = sum(r.rows for r in merged)
    seconds = time.perf_counter() - started
    if not results:
        click.echo(f"nothing recorded in {str(path)!r}" + (f" on {day}" if day else ""))
    elif not merged:
        click.echo(f"{len(results)} partitions up to date")
    else:
        click.echo(
            f"compacted {files_in} files into {files_out} ({rows:,} rows) in "
            f"{len(merged)} of {len(results)} partitions in {seconds:.2f} s"
        )
