"""`tastyrec record` with tastytrade credentials from the environment, end to end and offline:
`tastyrec simulate` serves a fake tastytrade REST API beside its DXLink server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

SECRET = "sim-client-secret"
REFRESH = "sim-refresh-token"


@pytest.fixture
def api(cli: Any) -> dict[str, str]:
    """`tastyrec simulate` running; its announced URLs by kind."""
    proc = cli.start("simulate", "--quote-rate", "20")
    text = proc.wait_for("the api line", lambda: "api " in proc.stdout and proc.stdout)
    return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)


def login(cli: Any, api: dict[str, str], refresh: str = REFRESH) -> None:
    cli.env.update(
        TASTYTRADE_API_URL=api["api"],
        TASTYTRADE_CLIENT_SECRET=SECRET,
        TASTYTRADE_REFRESH_TOKEN=refresh,
    )


def no_secrets_in(*texts: str, folder: Path | None = None) -> None:
    for text in texts:
        assert SECRET not in text and REFRESH not in text
    for path in folder.rglob("*") if folder else ():
        if path.is_file():
            data = path.read_bytes()
            assert SECRET.encode() not in data and REFRESH.encode() not in data, path


def test_record_symbols_logs_in_with_environment_credentials(cli: Any, api: dict[str, str]) -> None:
    login(cli, api)
    out = cli.workdir / "data"
    proc = cli.record_until(out, lambda rows: rows.get("Quote", 0) > 10, "--symbols", "SPY,QQQ")
    files = list(out.glob("Quote/date=*/*.parquet"))
    assert files and sum(pq.read_metadata(f).num_rows for f in files) > 10
    (session_file,) = out.glob("_sessions/*.parquet")
    assert pq.read_table(session_file).column("source").to_pylist() == ["tastytrade"]
    assert pq.read_metadata(files[0]).metadata[b"tastyrec.source"] == b"tastytrade"
    no_secrets_in(proc.stdout, proc.stderr, folder=out)


def test_record_chain_follows_the_chain_around_the_money(cli: Any, api: dict[str, str]) -> None:
    login(cli, api)
    out = cli.workdir / "data"
    proc = cli.record_until(
        out,
        lambda rows: rows.get("Greeks", 0) > 0 and rows.get("Quote", 0) > 0,
        "--chain", "SPY", "--strikes", "2", "--dte", "0-30", timeout=90,
    )  # fmt: skip
    symbols = set(pq.read_table(out / "Greeks", columns=["event_symbol"]).column(0).to_pylist())
    assert symbols and all(s.startswith(".SPY") for s in symbols)
    underlying = pq.read_table(out / "Quote", columns=["event_symbol"]).column(0).to_pylist()
    assert "SPY" in underlying
    subs = pq.read_table(out / "_subscriptions").to_pylist()
    assert {row["action"] for row in subs} >= {"subscribe"}
    no_secrets_in(proc.stdout, proc.stderr, folder=out)


def test_a_revoked_refresh_token_says_what_to_do_and_records_nothing(
    cli: Any, api: dict[str, str]
) -> None:
    login(cli, api, refresh="not-the-right-token")
    out = cli.workdir / "data"
    proc = cli.run("record", "--symbols", "SPY", "--for", "2s", "--out", str(out), "--no-status",
                   timeout=60)  # fmt: skip
    assert proc.popen.returncode == 1
    assert "refresh token" in proc.stderr.lower()
    assert "Traceback" not in proc.stderr
    assert "not-the-right-token" not in proc.stderr
    assert not list(out.glob("Quote/date=*/*.parquet"))


def test_without_any_credentials_the_message_names_all_three_ways(cli: Any) -> None:
    proc = cli.run("record", "--chain", "SPY")
    assert proc.popen.returncode == 2
    assert "TASTYTRADE_CLIENT_SECRET" in proc.stderr and "--demo" in proc.stderr


def test_chain_and_account_together_are_refused_with_what_to_do(cli: Any) -> None:
    proc = cli.run("record", "--chain", "SPY", "--account", "5WT00000", "--demo")
    assert proc.popen.returncode == 2
    assert "--chain and --account" in proc.stderr and "same --out folder" in proc.stderr
