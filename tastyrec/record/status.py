"""The recorder's status: a live rich table on a terminal, periodic log lines elsewhere.

:class:`RecorderStats` holds the recorder's counters. The recorder owns and mutates it, and this
module only reads it. :class:`StatusDisplay` turns those counters into a view:

* On a terminal (``console.is_terminal``) it shows a rich ``Live`` table: its first line names
  the output folder, the time recorded, the time left (with ``--for``) and how to stop (Ctrl-C);
  then rows and events/s per event type and the age of the newest event; then what is safely
  recorded so far, the Parquet files finished, and reconnects, gaps and skipped input. The table
  is transient: it is erased when the display stops, so no stale last frame stays on screen
  above the final summary.
* Otherwise it logs one INFO line every ``log_interval_s`` (10 x ``interval_s`` by default).

"Safely recorded" counts the rows and bytes in the journal, not in Parquet files: a recorder
journals every batch at once and makes a Parquet file of it only at rotation (every hour by
default) and at the end, so during the first hour "0 files written" would tell a user that
nothing is saved, while everything journaled survives a crash (``tastyrec recover``).

It starts no threads. ``Live`` runs with ``auto_refresh=False``, and the recorder's event loop calls
:meth:`StatusDisplay.refresh` every ``interval_s``. Rates are deltas of the row counters between
two renders, timed by the injected clock, so tests drive it with a fake clock and never sleep.

Log records reach the terminal above the live table only if they are printed through the same
console. The CLI should therefore use ``rich.logging.RichHandler(console=display.console)`` while
the display is live. A plain ``StreamHandler`` writes under the table and garbles it.

This module must not import anything from tastyrec: the recorder imports it, not the other way
round.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

__all__ = ("RecorderStats", "StatusDisplay", "UploadBacklog")

_log = logging.getLogger(__name__)

#: Newest-event ages at or above this are shown in yellow: that feed may be stale (or just quiet).
_STALE_S: Final = 60.0


@dataclass
class UploadBacklog:
    """Uploads to object storage (``record --out s3://…``), updated by the uploader thread."""

    #: where the files go (``s3://bucket/prefix``)
    dest: str = ""
    #: files and bytes waiting in the local journal dir
    files: int = 0
    bytes: int = 0
    #: files and bytes uploaded (and confirmed) so far
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    #: failed passes, and the last failure's message (redacted; ``None`` after a good pass)
    failures: int = 0
    last_error: str | None = None
    #: seconds until the next attempt while backing off
    retry_in_s: float | None = None

    def line(self) -> str:
        """``uploads to s3://b/p: 2 files (3.1 MB) waiting, 10 uploaded (40 MB); last error: …``"""
        text = (
            f"uploads to {self.dest}: {_plural(self.files, 'file')} ({_bytes(self.bytes)}) "
            f"waiting, {self.uploaded_files:,} uploaded ({_bytes(self.uploaded_bytes)})"
        )
        if self.last_error is not None:
            retry = "" if self.retry_in_s is None else f", retrying in {self.retry_in_s:g} s"
            text += f"; last error{retry}: {self.last_error[:200]}"
        return text


@dataclass
class RecorderStats:
    """Counters of one recording session, mutated by the recorder and read by the display.

    Example usage::

        stats = RecorderStats(started_ns=time.time_ns())
        stats.rows["Quote"] += 1
        stats.last_recv_ns["Quote"] = recv_ns
        print(stats.summary(time.time_ns()))
    """

    #: Wall clock (``time.time_ns()``) at the start of the session.
    started_ns: int
    #: Rows recorded (journaled) per event type name.
    rows: Counter[str] = field(default_factory=Counter)
    #: Bytes written to the journal (what survives a crash before the rows reach Parquet).
    journal_bytes: int = 0
    #: Newest local receipt time (epoch ns) per event type name.
    last_recv_ns: dict[str, int] = field(default_factory=dict)
    #: Parquet files written this session.
    files: int = 0
    #: Bytes of those files.
    bytes_written: int = 0
    #: Rows in those files.
    rows_written: int = 0
    reconnects: int = 0
    gaps: int = 0
    #: Malformed frames and bad values skipped.
    bad: int = 0
    #: Other skips by reason (unknown event types...).
    skipped: Counter[str] = field(default_factory=Counter)
    #: Uploads to object storage (``None``: recording into a local folder).
    upload: UploadBacklog | None = None

    def summary(self, now_ns: int, out: str | None = None) -> str:
        """One line for the end of the session.

        Example: ``recorded 1,234,567 events (Quote 1,000,000, Trade 234,567) in 60.0 s into 12
        files (45.6 MB) in data; 1 reconnect, 0 gaps, 0 bad``, followed by ``, 3 skipped (...)``
        when anything else was skipped.

        Args:
            now_ns: The wall clock (epoch ns) at the end of the session.
            out: The output folder, named after the files when given.

        Returns:
            The line, without a trailing newline.
        """
        per_type = ", ".join(f"{name} {n:,}" for name, n in self.rows.most_common())
        line = _plural(self.rows.total(), "event")
        if per_type:
            line += f" ({per_type})"
        elapsed = _duration((now_ns - self.started_ns) / 1e9)
        where = "" if out is None else f" in {out}"
        return (
            f"recorded {line} in {elapsed} into {_plural(self.files, 'file')}"
            f" ({_bytes(self.bytes_written)}){where}; {_problems(self)}"
        )


class StatusDisplay:
    """Shows :class:`RecorderStats` as a live table on a terminal, or as periodic log lines.

    The recorder calls :meth:`refresh` every ``interval_s`` from its event loop. Use the display as
    a context manager so that the live table starts and stops. In log mode, entering and leaving
    do nothing.

    Example usage::

        with StatusDisplay(stats, out=str(root)) as display:
            while recording:
                await anyio.sleep(display.interval_s)
                display.refresh()
        print(stats.summary(time.time_ns()))

    Args:
        stats: The counters to show; read at every render, never modified.
        out: Where the recording goes (the data root), shown in the title.
        console: The console to draw on. Defaults to a new console on stderr.
        interval_s: How often the recorder calls :meth:`refresh`.
        log_interval_s: In log mode, the minimum time between two log lines. Defaults to
            ``10 * interval_s``.
        clock: Wall clock in epoch ns, the clock of ``stats.started_ns`` and
            ``stats.last_recv_ns``.
        live: ``True`` for the live table, ``False`` for log lines, ``None`` for the live table
            exactly when the console is a terminal.
        ends_ns: When the recording stops by itself (``--for``), on ``clock``; the time left is
            shown. ``None``: it runs until stopped.
    """

    def __init__(
        self,
        stats: RecorderStats,
        *,
        out: str,
        console: Console | None = None,
        interval_s: float = 1.0,
        log_interval_s: float | None = None,
        clock: Callable[[], int] = time.time_ns,
        live: bool | None = None,
        ends_ns: int | None = None,
    ) -> None:
        self.stats = stats
        self.out = out
        self.console = console if console is not None else Console(stderr=True)
        self.interval_s = interval_s
        self.log_interval_s = 10 * interval_s if log_interval_s is None else log_interval_s
        self.clock = clock
        self.live = self.console.is_terminal if live is None else live
        self.ends_ns = ends_ns
        self._live: Live | None = None
        # Rates are deltas since the previous render; the first one is taken from the start.
        self._prev_ns = stats.started_ns
        self._prev_rows: Counter[str] = Counter()
        self._rates: dict[str, float] = {}
        self._log_interval_ns = round(self.log_interval_s * 1e9)
        self._last_log_ns = clock()

    def render(self) -> Group | str:
        """Build the current view from the stats.

        Events/s per type are the rows added since the previous render divided by the time since
        then. Each call therefore starts a new rate window, and nothing else changes state. Two
        renders at the same instant keep the previous rates.

        Returns:
            In live mode a rich group (a title line, the table, the lines under it: as wide as
            the terminal, not wrapped to the table's width); in log mode a one-line string.
        """
        now = self.clock()
        self._update_rates(now)
        return self._table(now) if self.live else self._line(now)

    def refresh(self) -> None:
        """Update the live table, or log a line if ``log_interval_s`` has passed since the last."""
        if self.live:
            if self._live is not None:
                self._live.update(self.render(), refresh=True)
            return
        now = self.clock()
        if now - self._last_log_ns >= self._log_interval_ns:
            self._last_log_ns = now
            _log.info("%s", self.render())

    def __enter__(self) -> StatusDisplay:
        if self.live and self._live is None:
            # transient on a terminal: erased at stop, so that the summary printed next is not
            # under a stale last frame; elsewhere (--status into a file) the last frame stays
            self._live = Live(
                self.render(),
                console=self.console,
                auto_refresh=False,
                transient=self.console.is_terminal,
            )
            self._live.start(refresh=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            live, self._live = self._live, None
            live.stop()

    def _update_rates(self, now_ns: int) -> None:
        elapsed_ns = now_ns - self._prev_ns
        if elapsed_ns <= 0:
            return
        rows = self.stats.rows
        self._rates = {
            name: max(n - self._prev_rows[name], 0) * 1e9 / elapsed_ns for name, n in rows.items()
        }
        self._prev_rows = Counter(rows)
        self._prev_ns = now_ns

    def _age_s(self, name: str, now_ns: int) -> float | None:
        recv_ns = self.stats.last_recv_ns.get(name)
        return None if recv_ns is None else max(now_ns - recv_ns, 0) / 1e9

    def _saved(self) -> str:
        """What survives a crash now: every journaled row."""
        s = self.stats
        return f"saved {_plural(s.rows.total(), 'row')} ({_bytes(s.journal_bytes)} journaled)"

    def _written(self) -> str:
        s = self.stats
        if not s.files:
            return "no Parquet file yet (made at each rotation and at the end)"
        return (
            f"{_plural(s.files, 'Parquet file')} finished ({_plural(s.rows_written, 'row')},"
            f" {_bytes(s.bytes_written)})"
        )

    def _title(self, now_ns: int) -> str:
        s = self.stats
        title = f"recording to {self.out} for {_duration((now_ns - s.started_ns) / 1e9)}"
        if self.ends_ns is not None:
            title += f", {_duration((self.ends_ns - now_ns) / 1e9)} left"
        return title + "; Ctrl-C to stop"

    def _line(self, now_ns: int) -> str:
        s = self.stats
        per_type = []
        for name in sorted(s.rows):
            age = self._age_s(name, now_ns)
            newest = "" if age is None else f" (newest {_age(age)} ago)"
            per_type.append(f"{name} {_rate(self._rates.get(name, 0.0))}{newest}")
        total = sum(self._rates.values())
        head = f"{_plural(s.rows.total(), 'event')}, {_rate(total)}"
        if per_type:
            head += ": " + ", ".join(per_type)
        line = f"{head}; {self._saved()}; {self._written()}; {_problems(s)}"
        return line if s.upload is None else f"{line}; {s.upload.line()}"

    def _table(self, now_ns: int) -> Group:
        s = self.stats
        caption = f"{self._saved()}\n{self._written()}\n{_problems(s, skipped=False)}"
        if s.skipped:
            caption += f"\n{_skipped(s)}"
        if s.upload is not None:
            caption += f"\n{s.upload.line()}"
        table = Table()
        table.add_column("event")
        table.add_column("rows", justify="right")
        table.add_column("events/s", justify="right")
        table.add_column("newest", justify="right")
        names = sorted(s.rows)
        if not names:
            table.add_row(Text("no events yet", style="dim"), "", "", "", end_section=True)
        ages = []
        for i, name in enumerate(names):
            age = self._age_s(name, now_ns)
            if age is not None:
                ages.append(age)
            table.add_row(
                name,
                f"{s.rows[name]:,}",
                _rate(self._rates.get(name, 0.0)),
                _age_text(age),
                end_section=i == len(names) - 1,
            )
        table.add_row(
            Text("total", style="bold"),
            f"{s.rows.total():,}",
            _rate(sum(self._rates.values())),
            _age_text(min(ages, default=None)),
        )
        return Group(Text(self._title(now_ns)), table, Text(caption))


def _problems(stats: RecorderStats, *, skipped: bool = True) -> str:
    line = (
        f"{_plural(stats.reconnects, 'reconnect')}, {_plural(stats.gaps, 'gap')}, {stats.bad:,} bad"
    )
    if skipped and stats.skipped:
        line += f", {_skipped(stats)}"
    return line


def _skipped(stats: RecorderStats) -> str:
    reasons = ", ".join(f"{reason} {n:,}" for reason, n in stats.skipped.most_common())
    return f"{stats.skipped.total():,} skipped ({reasons})"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def _rate(per_s: float) -> str:
    """``0/s``, ``0.5/s``, ``850/s``, ``1.2 k/s``, ``3.4 M/s``."""
    if per_s == 0:
        return "0/s"
    if per_s < 9.95:
        return f"{per_s:.1f}/s"
    if per_s < 999.5:
        return f"{per_s:.0f}/s"
    value, prefix = _scaled(per_s)
    return f"{value:.1f} {prefix}/s"


def _bytes(n: int) -> str:
    """Decimal units: ``512 B``, ``1.5 kB``, ``45.6 MB``, ``1.2 GB``."""
    if n < 1000:
        return f"{n} B"
    value, prefix = _scaled(n)
    return f"{value:.1f} {prefix}B"


def _scaled(value: float) -> tuple[float, str]:
    """A value of at least 999.5 in thousands, millions... so that it shows as 1.0 to 999.9."""
    for prefix in "kMGTP":
        value /= 1000
        if value < 999.95:
            return value, prefix
    return value, "P"


def _age(seconds: float) -> str:
    """``0.1 s``, ``42 s``, ``3 m``, ``2 h``, ``5 d`` (minutes and up rounded down)."""
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    if seconds < 59.5:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} m"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


def _age_text(seconds: float | None) -> Text:
    if seconds is None:
        return Text("-", style="dim")
    return Text(_age(seconds), style="yellow" if seconds >= _STALE_S else "")


def _duration(seconds: float) -> str:
    """``4.2 s``, ``12 m 5 s``, ``3 h 12 m`` for session lengths."""
    if seconds < 60:
        return f"{max(seconds, 0.0):.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} m {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} m"
