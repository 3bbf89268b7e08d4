"""The query examples run (CI) and show what they say they show."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"


def run(*args: str, timeout: float = 90) -> str:
    result = subprocess.run(
        [sys.executable, "-W", "error", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_sql_day():
    out = run(str(EXAMPLES / "sql_day.py"))
    assert "New York date 2026-11-21" in out
    assert "avg_spread" in out and "SPY" in out and "1 recorded gap(s)" in out


def test_bars_asof():
    out = run(str(EXAMPLES / "bars_asof.py"))
    assert "SPY trade bars, 5 s:" in out and "vwap" in out
    assert "trades with the prevailing quote:" in out and "side" in out
    assert "time_weighted_spread" in out


def test_live_frame_demo():
    out = run(str(EXAMPLES / "live_frame_demo.py"))
    assert out.count("live frame holds") == 3
    assert "SQL sees" in out and "latest quote per symbol:" in out


def test_plot_mid_spread(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "mid_spread.png"
    out = run(str(EXAMPLES / "plot_mid_spread.py"), "--symbol", "QQQ", "--out", str(png))
    assert f"wrote {png}" in out
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and png.stat().st_size > 5000


def test_plot_mid_spread_without_matplotlib_says_what_to_install():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        out = run(str(EXAMPLES / "plot_mid_spread.py"))
        assert "pip install 'tastyrec[plot]'" in out
    else:
        pytest.skip("matplotlib is installed")
