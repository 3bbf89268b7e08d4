"""Traps a new user met on the command line (issue 17), each met the way the user met it: a real
``tastyrec`` subprocess (the ``cli`` fixture), real folders, real sockets on 127.0.0.1.

Every subprocess is bounded by ``cli.run``'s timeout, which only bounds failure.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

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
    ],
)
def test_a_bad_value_names_its_option(cli, option, value):
    out = cli.workdir / "rec"
    proc = record_demo(cli, out, option, value)
    assert proc.popen.returncode == 2
    line = error_line(proc.stderr)
    assert f"'{option}'" in line, line
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
