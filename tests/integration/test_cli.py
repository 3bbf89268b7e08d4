"""The command line, run as users run it (a real subprocess)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from tastyrec.cli import main, parse_duration

TASTYREC = [sys.executable, "-m", "tastyrec"]


def test_simulate_prints_its_url_first_and_exits_0_on_sigterm():
    proc = subprocess.Popen(
        [*TASTYREC, "simulate", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("dxlink ws://127.0.0.1:") and first.rstrip().endswith("/realtime")
        url = first.split()[1]
        listen = subprocess.run(
            [
                *TASTYREC,
                "listen",
                "--url",
                url,
                "--token",
                "sim-token",
                "--symbols",
                "SPY",
                "--count",
                "2",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert listen.returncode == 0, listen.stderr
        rows = [json.loads(line) for line in listen.stdout.splitlines()]
        assert len(rows) == 2 and all(r["event_symbol"] == "SPY" for r in rows)
        assert "sim-token" not in listen.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err


def test_listen_demo_prints_json_lines_with_snake_case_fields():
    result = subprocess.run(
        [
            *TASTYREC,
            "listen",
            "--demo",
            "--symbols",
            "SPX,.SPY261218C600",
            "--events",
            "Quote,Greeks",
            "--count",
            "6",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 6
    assert {r["event_type"] for r in rows} <= {"Quote", "Greeks"}
    spx = [r for r in rows if r["event_symbol"] == "SPX"]
    assert all(r["bid_size"] is None for r in spx)  # NaN prints as null


def test_listen_without_a_server_says_what_to_do():
    result = CliRunner().invoke(
        main, ["listen", "--symbols", "SPY"], env={"TASTYREC_DXLINK_TOKEN": ""}
    )
    assert result.exit_code == 2
    assert "--demo" in result.output and "--url" in result.output


def test_unknown_event_type_is_a_usage_error():
    result = CliRunner().invoke(main, ["listen", "--demo", "--symbols", "SPY", "--events", "Quot"])
    assert result.exit_code == 2 and "unknown event type 'Quot'" in result.output


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("30s", 30), ("5m", 300), ("1.5h", 5400), ("250ms", 0.25)]
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds
