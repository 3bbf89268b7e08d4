"""Traps a new user met on the command line (issue 17), each met the way the user met it: a real
``tastyrec`` subprocess (the ``cli`` fixture), real folders, real sockets on 127.0.0.1.

Every subprocess is bounded by ``cli.run``'s timeout, which only bounds failure.
"""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.integration.conftest import TASTYREC
from tests.integration.test_record_cli import all_files, assert_one_clear_error, record_demo


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A ws:// URL whose port is bound here but not listening: connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}/realtime"


def error_line(stderr: str) -> str:
    (line,) = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    return line


# --- 1. URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/realtime", "127.0.0.1:9", "ws://:9/"])
@pytest.mark.parametrize("command", ["record", "listen"])
def test_a_url_that_is_not_a_websocket_url_is_one_line_naming_url(cli, command, url):
    out = cli.workdir / "rec"
    args = ["--out", str(out)] if command == "record" else []
    proc = cli.run(command, "--symbols", "SPY", "--url", url, "--token", "t", *args)
    assert proc.popen.returncode == 2
    assert_one_clear_error(proc.stderr, "'--url'", repr(url), "ws://", "wss://")
    assert len(proc.stderr.splitlines()) <= 4, proc.stderr  # usage, hint, blank, error
    assert not out.exists()


def test_an_account_url_that_is_not_a_websocket_url_names_account_url(cli):
    proc = cli.run(
        "record", "--account", "5WT0001", "--account-url", "https://x", "--account-token", "t"
    )
    assert proc.popen.returncode == 2
    assert_one_clear_error(proc.stderr, "'--account-url'", "wss://streamer.tastyworks.com")


@pytest.mark.parametrize("command", ["record", "listen"])
def test_a_refused_port_fails_at_once_with_a_clean_message(cli, command, refused_url):
    out = cli.workdir / "rec"
    args = ["--out", str(out), "--no-status"] if command == "record" else []
    # 20 s bounds failure: the streamers' connect timeout (30 s) must not be what ends this
    proc = cli.run(command, "--symbols", "SPY", "--url", refused_url, "--token", "t", *args)
    assert proc.popen.returncode == 1
    assert_one_clear_error(proc.stderr, "connection refused", repr(refused_url), "check the URL")
    assert "code=None" not in proc.stderr and "reason=" not in proc.stderr
    assert not all_files(out)


@pytest.mark.parametrize("command", ["record", "listen"])
def test_demo_with_a_url_is_refused(cli, command):
    out = cli.workdir / "rec"
    args = ["--out", str(out), "--for", "1s"] if command == "record" else ["--count", "1"]
    proc = cli.run(command, "--symbols", "SPY", "--demo", "--url", "ws://127.0.0.1:9/", *args)
    assert proc.popen.returncode == 2
    assert_one_clear_error(proc.stderr, "--demo", "--url", "cannot be combined")
    assert proc.stdout == ""
    assert not out.exists()


# --- 2. option values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--for", "banana"),
        ("--for", "0"),
        ("--rotate-rows", "0"),
        ("--rotate-rows", "many"),
        ("--rotate-bytes", "0"),
        ("--rotate-bytes", "big"),
        ("--rotate-age", "0s"),
        ("--rotate-age", "soon"),
        ("--fsync-interval", "often"),
        ("--order-every", "1 minute"),
        ("--strikes", "0"),
        ("--candles", "banana"),
        ("--candles", "1m,0m"),
    ],
)
def test_a_bad_value_names_its_option(cli, option, value):
    out = cli.workdir / "rec"
    proc = record_demo(cli, out, option, value)
    assert proc.popen.returncode == 2
    line = error_line(proc.stderr)
    assert f"for '{option}':" in line or f"for {option}:" in line, line
    assert "RotationPolicy" not in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("option", "value"), [("--for", "later"), ("--for", "0"), ("--count", "0")]
)
def test_listen_bad_values_name_their_option(cli, option, value):
    proc = cli.run("listen", "--symbols", "SPY", "--demo", option, value)
    assert proc.popen.returncode == 2
    assert f"'{option}'" in error_line(proc.stderr)


@pytest.mark.parametrize("where", ["the-file", "under-the-file"])
def test_out_naming_a_file_says_it_is_a_file(cli, where):
    blocker = cli.workdir / "notes.txt"
    blocker.write_text("keep me\n")
    out = blocker if where == "the-file" else blocker / "rec"
    proc = record_demo(cli, out)
    assert proc.popen.returncode == 2
    assert_one_clear_error(proc.stderr, "--out", repr(str(out)), "a file", "give a folder")
    assert blocker.read_text() == "keep me\n"
    assert proc.stdout == ""


def test_good_values_still_record(cli):
    out = cli.workdir / "rec"
    proc = record_demo(
        cli, out, "--rotate-rows", "1000", "--rotate-bytes", "1MB", "--rotate-age", "10m",
        "--fsync-interval", "250ms",
    )  # fmt: skip
    assert proc.popen.returncode == 0, proc.stderr
    assert list(Path(out).glob("Quote/date=*/*.parquet"))


# --- 3. the recording folder: one rule for every command that reads one ----------------------

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
#: every command that reads a recording, with what it needs besides the folder
READERS = {
    "info": [],
    "recover": [],
    "compact": [],
    "replay": ["--events", "Quote"],
    "serve": [],
    "sql": ["SELECT count(*) AS n FROM Quote"],
}


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def data(cli) -> Path:
    """A copy of the sample recording at ``data`` in the subprocesses' working folder."""
    folder = Path(cli.workdir, "data")
    shutil.copytree(SAMPLE, folder)
    return folder


@pytest.mark.parametrize("command", ["info", "recover", "replay", "sql", "compact"])
def test_every_reader_defaults_to_the_data_folder(cli, data, command):
    proc = cli.run(command, *READERS[command])
    assert proc.popen.returncode == 0, proc.stderr
    expected = {
        "info": "Quote",
        "recover": "recovered 0 rows",
        "replay": '"event_type":"Quote"',
        "sql": str(sum(pq.read_metadata(f).num_rows for f in data.glob("Quote/*/*.parquet"))),
        "compact": "",
    }[command]
    assert expected in proc.stdout
    if command == "compact":
        assert "compacted" in proc.stdout or "up to date" in proc.stdout


def test_serve_defaults_to_the_data_folder(cli, data):
    proc = cli.start("serve")
    proc.wait_for("the URL", lambda: proc.stdout.startswith("dxlink ws://"))
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0, proc.stderr


@pytest.mark.parametrize("command", sorted(READERS))
def test_a_missing_default_folder_says_what_to_do(cli, command):
    proc = cli.run(command, *READERS[command])
    assert proc.popen.returncode == 2
    assert_one_clear_error(proc.stderr, "no folder 'data'", "tastyrec record --out")
    assert not (cli.workdir / "data").exists()


@pytest.mark.parametrize("command", sorted(READERS))
def test_a_file_instead_of_a_folder_says_it_is_a_file(cli, command):
    (cli.workdir / "notes.txt").write_text("keep me\n")
    where = ["--data", "notes.txt"] if command == "sql" else ["notes.txt"]
    proc = cli.run(command, *where, *READERS[command])
    assert proc.popen.returncode == 2
    assert_one_clear_error(proc.stderr, "'notes.txt' is a file", "tastyrec record --out")
    assert (cli.workdir / "notes.txt").read_text() == "keep me\n"


def test_compact_removes_its_lock_when_done(cli, data):
    proc = cli.run("compact")
    assert proc.popen.returncode == 0, proc.stderr
    assert "compacted" in proc.stdout
    assert not (data / "_compact.lock").exists()
    again = cli.run("compact")
    assert again.popen.returncode == 0, again.stderr
    assert not (data / "_compact.lock").exists()


def test_compact_refuses_a_folder_that_is_not_a_recording_and_creates_nothing(cli):
    folder = cli.workdir / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"\xff\xd8")
    (folder / "2026").mkdir()
    before = tree(folder)
    proc = cli.run("compact", "photos")
    assert proc.popen.returncode == 1
    assert_one_clear_error(proc.stderr, "'photos' is not a recording", "tastyrec record --out")
    assert tree(folder) == before


def test_replay_of_symbols_never_recorded_says_what_is_there(cli, data):
    proc = cli.run("replay", "--symbols", "XYZ,ABC")
    assert proc.popen.returncode == 1
    assert proc.stdout == ""
    assert_one_clear_error(proc.stderr, "no events for --symbols XYZ,ABC", "'data'", "QQQ, SPY")


def test_replay_with_nothing_in_the_window_says_so(cli, data):
    proc = cli.run("replay", "--events", "Quote", "--symbols", "SPY", "--start", "2030-01-01")
    assert proc.popen.returncode == 1
    assert proc.stdout == ""
    assert_one_clear_error(proc.stderr, "no Quote events for --symbols SPY", "--start 2030-01-01")


def test_replay_speed_errors_name_the_option(cli, data):
    for value in ("fast-ish", "0"):
        proc = cli.run("replay", "--speed", value)
        assert proc.popen.returncode == 2
        assert "--speed" in error_line(proc.stderr)


# --- 4. the status display during `tastyrec record` --------------------------------------------


def test_the_summary_names_the_output_folder(cli):
    out = cli.workdir / "rec"
    proc = record_demo(cli, out)
    assert proc.popen.returncode == 0, proc.stderr
    assert f") in {out}; " in proc.stdout


def test_the_live_status_on_a_terminal_names_the_folder_time_left_and_ctrl_c(cli):
    """``tastyrec record`` with its stderr on a real terminal (a pty), as a user sees it."""
    out = cli.workdir / "rec"
    master, slave = pty.openpty()
    with open(cli.workdir / "stdout", "wb") as stdout:
        proc = subprocess.Popen(
            [*TASTYREC, "record", "--demo", "--symbols", "SPY", "--for", "3s", "--out", str(out)],
            stdout=stdout,
            stderr=slave,
            stdin=subprocess.DEVNULL,
            env={**cli.env, "COLUMNS": "120", "LINES": "40", "TERM": "xterm"},
            cwd=cli.workdir,
        )
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + 30  # bounds failure only: the recording stops after 3 s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the process exited and the terminal closed
                    break
                if not chunk:
                    break
                screen += chunk
        assert proc.wait(10) == 0, screen.decode(errors="replace")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = screen.decode()
    summary = (cli.workdir / "stdout").read_text()
    assert summary.startswith("recorded ") and f"in {out}; " in summary
    frames = re.findall(rf"recording to {re.escape(str(out))} for [^\r\n]*", text)
    assert frames, text
    assert all(f.endswith(" left; Ctrl-C to stop") for f in frames), frames
    assert "saved " in text and "journaled" in text
    assert "0 B written" not in text
    # the last frame is erased when the recording ends: up-and-clear for each of its lines
    last = text.rindex("recording to ")
    shown = text.index("\x1b[?25h", last)
    assert text[shown:].count("\x1b[1A\x1b[2K") >= text[last:shown].count("\n") > 5


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--order-every", "often"),
        ("--chaos", "drop:soon"),
        ("--chaos", "banana"),
        ("--chaos", "drop:0"),
    ],
)
def test_simulate_bad_values_name_their_option(cli, option, value):
    proc = cli.run("simulate", option, value)
    assert proc.popen.returncode == 2
    line = error_line(proc.stderr)
    assert f"for '{option}':" in line or f"for {option}:" in line, line
    assert "Traceback" not in proc.stderr
