"""The recorder's status display (tastyrec.record.status): fake clock, no sleeps, no terminal."""

from __future__ import annotations

import io
import logging

import pytest
from rich.console import Console, Group

from tastyrec.record.status import (
    RecorderStats,
    StatusDisplay,
    UploadBacklog,
    _age,
    _bytes,
    _duration,
    _rate,
)

S = 1_000_000_000  # ns per second
T0 = 1_750_000_000 * S
LOGGER = "tastyrec.record.status"


class FakeClock:
    def __init__(self, now_ns: int = T0) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, seconds: float) -> None:
        self.now_ns += round(seconds * S)


def terminal() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=120)


def printed(renderable: object) -> str:
    console = terminal()
    console.print(renderable)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(text, str)
    return text


def make(
    *,
    live: bool | None = False,
    console: Console | None = None,
    interval_s: float = 1.0,
    log_interval_s: float | None = None,
    for_s: float | None = None,
) -> tuple[RecorderStats, StatusDisplay, FakeClock]:
    clock = FakeClock()
    stats = RecorderStats(started_ns=clock())
    display = StatusDisplay(
        stats,
        out="data",
        console=console,
        interval_s=interval_s,
        log_interval_s=log_interval_s,
        clock=clock,
        live=live,
        ends_ns=None if for_s is None else clock() + round(for_s * S),
    )
    return stats, display, clock


def line(display: StatusDisplay) -> str:
    rendered = display.render()
    assert isinstance(rendered, str)
    return rendered


# --- human-friendly numbers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("per_s", "text"),
    [
        (0, "0/s"),
        (0.5, "0.5/s"),
        (9.9, "9.9/s"),
        (42.4, "42/s"),
        (850, "850/s"),
        (999.4, "999/s"),
        (999.6, "1.0 k/s"),
        (1234, "1.2 k/s"),
        (12_345, "12.3 k/s"),
        (999_960, "1.0 M/s"),
        (3_400_000, "3.4 M/s"),
    ],
)
def test_rate(per_s: float, text: str) -> None:
    assert _rate(per_s) == text


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (1536, "1.5 kB"),
        (45_600_000, "45.6 MB"),
        (999_990_000, "1.0 GB"),
        (1_200_000_000, "1.2 GB"),
        (7 * 10**18, "7000.0 PB"),
    ],
)
def test_bytes(n: int, text: str) -> None:
    assert _bytes(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0.0 s"),
        (0.1, "0.1 s"),
        (9.94, "9.9 s"),
        (42.4, "42 s"),
        (119, "1 m"),
        (180, "3 m"),
        (2 * 3600 + 59 * 60, "2 h"),
        (3 * 86400, "3 d"),
    ],
)
def test_age(seconds: float, text: str) -> None:
    assert _age(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-1, "0.0 s"),
        (60.0 - 1e-9, "60.0 s"),
        (60, "1 m 0 s"),
        (725, "12 m 5 s"),
        (11_520, "3 h 12 m"),
    ],
)
def test_duration(seconds: float, text: str) -> None:
    assert _duration(seconds) == text


# --- summary -------------------------------------------------------------------------------------


def test_summary_formats_numbers_and_orders_types_by_count() -> None:
    stats = RecorderStats(started_ns=T0)
    stats.rows.update({"Trade": 234_567, "Quote": 1_000_000})
    stats.files, stats.bytes_written, stats.reconnects = 12, 45_600_000, 1
    assert stats.summary(T0 + 60 * S) == (
        "recorded 1,234,567 events (Quote 1,000,000, Trade 234,567) in 1 m 0 s"
        " into 12 files (45.6 MB); 1 reconnect, 0 gaps, 0 bad"
    )
    assert stats.summary(T0 + 59_900_000_000).endswith("in 59.9 s into 12 files (45.6 MB)"
                                                       "; 1 reconnect, 0 gaps, 0 bad")  # fmt: skip


def test_summary_pluralisation() -> None:
    stats = RecorderStats(started_ns=T0, files=1, bytes_written=1, reconnects=2, gaps=1, bad=3)
    stats.rows["Quote"] = 1
    assert stats.summary(T0 + S // 2) == (
        "recorded 1 event (Quote 1) in 0.5 s into 1 file (1 B); 2 reconnects, 1 gap, 3 bad"
    )


def test_summary_of_an_empty_session() -> None:
    assert RecorderStats(started_ns=T0).summary(T0 + 5 * S) == (
        "recorded 0 events in 5.0 s into 0 files (0 B); 0 reconnects, 0 gaps, 0 bad"
    )


def test_summary_names_the_output_folder() -> None:
    stats = RecorderStats(started_ns=T0, files=2, bytes_written=2_000)
    stats.rows["Quote"] = 10
    assert stats.summary(T0 + S, out="/srv/rec") == (
        "recorded 10 events (Quote 10) in 1.0 s into 2 files (2.0 kB) in /srv/rec;"
        " 0 reconnects, 0 gaps, 0 bad"
    )


def test_summary_lists_skips_by_reason() -> None:
    stats = RecorderStats(started_ns=T0)
    stats.skipped.update({"unknown event type": 3, "unsubscribed symbol": 1_200})
    assert stats.summary(T0).endswith(
        "0 bad, 1,203 skipped (unsubscribed symbol 1,200, unknown event type 3)"
    )


# --- rates and ages ------------------------------------------------------------------------------


def test_rates_are_deltas_since_the_previous_render() -> None:
    stats, display, clock = make()
    stats.rows["Quote"] += 1200  # first window: since started_ns
    clock.advance(1)
    assert "Quote 1.2 k/s" in line(display)
    stats.rows["Quote"] += 500
    stats.rows["Trade"] += 30
    clock.advance(2)
    text = line(display)
    assert "Quote 250/s" in text
    assert "Trade 15/s" in text
    assert "1,730 events, 265/s" in text
    clock.advance(1)  # nothing new: rates drop to zero, totals stay
    text = line(display)
    assert "1,730 events, 0/s: Quote 0/s, Trade 0/s" in text


def test_render_at_the_same_instant_keeps_the_previous_rates() -> None:
    stats, display, clock = make()
    stats.rows["Quote"] += 100
    clock.advance(1)
    assert "Quote 100/s" in line(display)
    stats.rows["Quote"] += 100
    assert "Quote 100/s" in line(display)  # no time passed: no new window, no division by 0
    clock.advance(1)
    assert "Quote 100/s" in line(display)  # the 100 rows above are counted in this window


def test_age_of_the_newest_event() -> None:
    stats, display, clock = make()
    stats.rows.update({"Quote": 10, "Trade": 1})
    stats.last_recv_ns["Quote"] = clock() - 100_000_000
    stats.last_recv_ns["Trade"] = clock() - 180 * S
    text = line(display)
    # no time has passed since the start: no rate window yet, but ages are known
    assert "Quote 0/s (newest 0.1 s ago), Trade 0/s (newest 3 m ago)" in text
    stats.last_recv_ns["Quote"] = clock() + S  # a receipt stamped ahead of the clock: age 0
    assert "(newest 0.0 s ago)" in line(display)


def test_log_line_shows_files_and_problems() -> None:
    stats, display, clock = make()
    stats.rows["Quote"], stats.journal_bytes = 1_500, 3_100_000
    stats.files, stats.rows_written, stats.bytes_written = 1, 1_000, 2_500_000
    stats.reconnects, stats.bad = 1, 2
    stats.skipped["unknown event type"] = 4
    text = line(display)
    assert text == (
        "1,500 events, 0/s: Quote 0/s; saved 1,500 rows (3.1 MB journaled);"
        " 1 Parquet file finished (1,000 rows, 2.5 MB);"
        " 1 reconnect, 0 gaps, 2 bad, 4 skipped (unknown event type 4)"
    )


# --- log mode ------------------------------------------------------------------------------------


def test_log_mode_emits_a_line_every_ten_intervals(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    stats, display, clock = make(interval_s=0.5)
    assert display.log_interval_s == 5.0
    with display:
        for _ in range(25):
            clock.advance(0.5)
            stats.rows["Quote"] += 50
            display.refresh()
    records = [r for r in caplog.records if r.name == LOGGER]
    assert [r.levelno for r in records] == [logging.INFO, logging.INFO]
    none_yet = "no Parquet file yet (made at each rotation and at the end)"
    assert [r.getMessage() for r in records] == [
        f"500 events, 100/s: Quote 100/s; saved 500 rows (0 B journaled); {none_yet};"
        " 0 reconnects, 0 gaps, 0 bad",
        f"1,000 events, 100/s: Quote 100/s; saved 1,000 rows (0 B journaled); {none_yet};"
        " 0 reconnects, 0 gaps, 0 bad",
    ]


def test_log_interval_counts_from_the_last_line_not_a_fixed_grid(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    _, display, clock = make(log_interval_s=10)
    clock.advance(25)  # the event loop stalled: one line, not a burst of two
    display.refresh()
    clock.advance(9)
    display.refresh()
    assert len(caplog.records) == 1
    clock.advance(1)
    display.refresh()
    assert len(caplog.records) == 2


def test_not_a_terminal_means_log_mode(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    console = Console(file=io.StringIO(), width=120)
    display = StatusDisplay(
        RecorderStats(started_ns=T0), out="data", console=console, clock=FakeClock()
    )
    assert not display.live
    assert isinstance(display.render(), str)
    with display:
        display.refresh()
    assert console.file.getvalue() == ""  # type: ignore[attr-defined]


# --- live mode -----------------------------------------------------------------------------------


def test_terminal_means_live_mode() -> None:
    display = StatusDisplay(RecorderStats(started_ns=T0), out="data", console=terminal())
    assert display.live


def test_table_contains_type_names_and_numbers() -> None:
    stats, display, clock = make(live=True, console=terminal())
    stats.rows.update({"Quote": 12_000, "Trade": 300})
    stats.last_recv_ns.update({"Quote": clock(), "Trade": clock()})
    clock.advance(1)
    stats.last_recv_ns["Trade"] -= 179 * S  # 180 s old
    stats.files, stats.rows_written, stats.bytes_written, stats.gaps = 12, 12_000, 45_600_000, 1
    stats.journal_bytes = 51_200_000
    stats.skipped["unknown event type"] = 3
    view = display.render()
    assert isinstance(view, Group)
    text = printed(view)
    for expected in (
        "recording to data for 1.0 s; Ctrl-C to stop",
        "Quote", "12,000", "12.0 k/s", "1.0 s",
        "Trade", "300/s", "3 m",
        "total", "12,300", "12.3 k/s",
        "saved 12,300 rows (51.2 MB journaled)",
        "12 Parquet files finished (12,000 rows, 45.6 MB)",
        "0 reconnects, 1 gap, 0 bad",
        "3 skipped (unknown event type 3)",
    ):  # fmt: skip
        assert expected in text, expected


def test_table_before_the_first_event() -> None:
    _, display, _ = make(live=True)
    text = printed(display.render())
    assert "no events yet" in text
    assert "saved 0 rows (0 B journaled)" in text
    assert "no Parquet file yet (made at each rotation and at the end)" in text


def test_before_the_first_rotation_the_table_shows_what_is_saved() -> None:
    """The trap: files appear only at rotation, so "0 files written" for the first hour read
    as "nothing is saved". The journaled rows and bytes are what is safe."""
    stats, display, clock = make(live=True)
    stats.rows.update({"Quote": 41_000, "Trade": 1_000})
    stats.journal_bytes = 7_300_000
    clock.advance(30 * 60)
    text = printed(display.render())
    assert "saved 42,000 rows (7.3 MB journaled)" in text
    assert "no Parquet file yet" in text
    assert "0 files" not in text and "0 B written" not in text


def test_the_first_line_names_the_folder_the_time_left_and_how_to_stop() -> None:
    _, display, clock = make(live=True, for_s=300)
    clock.advance(65)
    first = printed(display.render()).splitlines()[0].strip()
    assert first == "recording to data for 1 m 5 s, 3 m 55 s left; Ctrl-C to stop"
    clock.advance(240)  # past the end (the last refresh may come late): never negative
    first = printed(display.render()).splitlines()[0].strip()
    assert first == "recording to data for 5 m 5 s, 0.0 s left; Ctrl-C to stop"


def test_without_an_end_no_time_left_is_shown() -> None:
    _, display, clock = make(live=True)
    clock.advance(5)
    first = printed(display.render()).splitlines()[0].strip()
    assert first == "recording to data for 5.0 s; Ctrl-C to stop"


def test_the_live_table_is_erased_when_the_display_stops() -> None:
    """No stale last frame stays above the summary printed after the recording."""
    console = terminal()
    stats, display, clock = make(console=console, live=True)
    with display:
        clock.advance(1)
        stats.rows["Quote"] += 2_000
        display.refresh()
    console.print("recorded 2,000 events", highlight=False)
    screen = console.file.getvalue()  # type: ignore[attr-defined]
    last_frame = screen.rindex("recording to data for")
    stopped = screen.index("\x1b[?25h", last_frame)  # the cursor shown again: the display stopped
    assert "2,000" in screen[last_frame:stopped]  # the last frame was drawn...
    frame_lines = screen[last_frame:stopped].count("\n")
    summary = screen.index("recorded 2,000 events")
    # ...then erased before the summary: the cursor moves up over each line and clears it
    assert screen[stopped:summary].count("\x1b[1A\x1b[2K") >= frame_lines > 5


def test_live_display_draws_on_the_console_and_logs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    console = terminal()
    stats, display, clock = make(console=console, live=None)
    assert display.live
    display.refresh()  # not entered yet: nothing to draw on
    assert console.file.getvalue() == ""  # type: ignore[attr-defined]
    with display:
        for _ in range(20):
            clock.advance(1)
            stats.rows["Quote"] += 2_000
            display.refresh()
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "Quote" in out
    assert "40,000" in out  # the final render at exit
    assert "2.0 k/s" in out
    assert not caplog.records


def test_upload_backlog_is_shown_in_the_line_and_the_table() -> None:
    stats, display, _ = make()
    assert "uploads" not in line(display)  # a local recording says nothing about uploads
    stats.upload = UploadBacklog(dest="s3://b/rec", files=3, bytes=2_500_000, uploaded_files=7)
    stats.upload.uploaded_bytes = 9_000_000
    text = line(display)
    assert "uploads to s3://b/rec: 3 files (2.5 MB) waiting, 7 uploaded (9.0 MB)" in text
    assert "last error" not in text
    stats.upload.last_error = "uploading to s3://b/rec/x: connection refused"
    stats.upload.retry_in_s = 4.0
    assert "last error, retrying in 4 s: uploading to s3://b/rec/x: connection refused" in line(
        display
    )
    _, table, _ = make(live=True, console=terminal())
    table.stats.upload = stats.upload
    assert "3 files (2.5 MB) waiting" in printed(table.render())
