"""Chain recording INTO object storage: ``record_chains("s3://…")`` and
``tastyrec record --chain SPY --demo --out s3://…``.

The demo (built-in simulator and fake tastytrade API, no credentials) records an SPY chain into
a real S3-compatible server (moto's server mode on 127.0.0.1, ``tests/integration/s3server.py``):
the option Quotes and Greeks and the ``_subscriptions`` table arrive in the bucket, queryable by
``tastyrec.connect("s3://…")``, and the local journal dir is empty at the end. Every wait is
bounded; nothing sleeps "long enough".
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import pyarrow.parquet as pq
import pytest

import tastyrec
from tastyrec.objectstore import s3_filesystem
from tests.integration.conftest import journal_rows
from tests.integration.s3server import S3Server
from tests.integration.test_record_s3 import (
    BUCKET,
    assert_no_secret,
    grep_secrets,
    visible_keys,
)
from tests.integration.waits import WAIT_S, wait_until

DEST = f"s3://{BUCKET}/chains/desk1"


def bucket_table(folder: str):
    """The Parquet objects under ``DEST/folder`` read as one table (pyarrow's S3 filesystem)."""
    keys = [k for k in visible_keys(DEST) if f"/{folder}/" in k]
    assert keys, (folder, visible_keys(DEST))
    fs = s3_filesystem()
    return pq.ParquetDataset(keys, filesystem=fs).read(), keys


def counts(dest: str) -> dict[str, int]:
    con = tastyrec.connect(dest)
    try:
        types = [r[0] for r in con.sql("SHOW TABLES").fetchall()]
        return {
            t: con.sql(f'SELECT count(*) FROM "{t}"').fetchall()[0][0]
            for t in types
            if t not in ("sessions", "gaps")
        }
    finally:
        con.close()


def assert_journal_dir_empty(journal_dir: Path) -> None:
    leftovers = [p for p in journal_dir.rglob("*") if p.is_file() and p.suffix != ".lock"]
    assert not leftovers, leftovers


@pytest.mark.anyio
async def test_record_chains_into_s3_uploads_options_and_subscriptions(
    s3: S3Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tastyrec.demo import demo_session
    from tastyrec.record.chains import ChainRecorder, record_chains
    from tastyrec.record.recorder import Recorder
    from tastyrec.record.sink import RotationPolicy
    from tastyrec.record.status import StatusDisplay
    from tastyrec.record.upload import UploadRetry

    caplog.set_level("INFO")
    journal_dir = tmp_path / "journal"
    seen: dict[str, object] = {}

    async def until_uploaded(recorder: Recorder, chains: ChainRecorder) -> None:
        options = chains.symbols()
        assert options
        backlog = recorder.stats.upload
        assert backlog is not None
        # every option has Greeks, files were uploaded, and so was the live _subscriptions table
        await wait_until(
            lambda: recorder.stats.rows["Greeks"] >= 2 * len(options)
            and backlog.uploaded_files >= 2
            and any("/_subscriptions/" in k for k in visible_keys(DEST)),
            3 * WAIT_S,
        )
        seen["options"] = set(options)
        display = StatusDisplay(recorder.stats, out=DEST, live=False)
        seen["line"] = display._line(recorder.stats.started_ns)

    with anyio.fail_after(6 * WAIT_S):
        async with demo_session() as session:
            recorder = await record_chains(
                DEST,
                session,
                ["SPY"],
                dte=(0, 3),
                strikes=2,
                run=until_uploaded,
                rotation=RotationPolicy(max_rows=200),
                journal=journal_dir,
                upload_retry=UploadRetry(first_s=0.1, max_s=0.4),
                upload_timeout_s=WAIT_S,
            )
    assert recorder.destination is not None and recorder.root == journal_dir
    # the status display shows the upload backlog, as for --symbols
    assert f"uploads to {DEST}:" in str(seen["line"]), seen["line"]

    # everything recorded is in the bucket, once; nothing is left locally
    assert counts(DEST) == {t: n for t, n in recorder.stats.rows.items() if n}
    assert recorder.stats.upload is not None and recorder.stats.upload.files == 0
    assert_journal_dir_empty(journal_dir)

    con = tastyrec.connect(DEST)
    greeks = {r[0] for r in con.sql("SELECT DISTINCT event_symbol FROM Greeks").fetchall()}
    assert seen["options"] <= greeks and all(s.startswith(".") for s in greeks)
    quoted = {r[0] for r in con.sql("SELECT DISTINCT event_symbol FROM Quote").fetchall()}
    assert "SPY" in quoted and seen["options"] <= quoted  # the underlying and the options
    [(status,)] = con.sql("SELECT status FROM sessions").fetchall()
    assert status == "ended"
    con.close()

    # the _subscriptions table's final version (the close rows included), one object
    table, keys = bucket_table("_subscriptions")
    assert len(keys) == 1 and recorder.session_id in keys[0]
    actions = table["action"].to_pylist()
    assert actions.count("subscribe") == actions.count("unsubscribe") > 0
    assert "close" in table["reason"].to_pylist()
    assert seen["options"] <= set(table["symbol"].to_pylist())
    grep_secrets(journal_dir)
    assert_no_secret(caplog.text)


def test_cli_record_chain_into_s3(s3: S3Server, tmp_path: Path, cli) -> None:
    """``tastyrec record --chain SPY --demo --out s3://… --journal J``: no longer refused; Ctrl-C
    ends it with exit 0 once everything is uploaded, and J is left empty."""
    cli.env.update({k: v for k, v in os.environ.items() if k.startswith("AWS_")})
    journal_dir = tmp_path / "journal"
    proc = cli.start(
        "record", "--chain", "SPY", "--demo", "--dte", "0-3", "--strikes", "2",
        "--out", DEST, "--journal", str(journal_dir), "--no-status", "--rotate-rows", "300",
        "--for", "10m",
    )  # fmt: skip
    proc.wait_for(
        "option Greeks and Quotes to be journaled and a file uploaded",
        lambda: journal_rows(journal_dir).get("Greeks", 0) >= 20
        and any("/Quote/" in k for k in visible_keys(DEST)),
        timeout=3 * WAIT_S,
    )
    proc.popen.send_signal(signal.SIGINT)
    assert proc.wait(3 * WAIT_S, "exit after Ctrl-C") == 0, proc.stderr
    assert DEST in proc.stdout, proc.stdout  # the summary names the bucket, not the journal dir
    got = counts(DEST)
    assert got.get("Greeks", 0) >= 20 and got.get("Quote", 0) > 0, got
    table, _ = bucket_table("_subscriptions")
    assert set(table["action"].to_pylist()) == {"subscribe", "unsubscribe"}
    con = tastyrec.connect(DEST)
    [(status,)] = con.sql("SELECT status FROM sessions").fetchall()
    assert status == "ended"
    con.close()
    assert_journal_dir_empty(journal_dir)
    assert_no_secret(proc.stdout, proc.stderr)


def test_chain_recorder_out_url_is_refused_not_made_a_folder(tmp_path: Path, monkeypatch) -> None:
    """``ChainRecorder(out="s3://…")`` (no recorder) writes only a local table: the URL is
    refused with the way to do it, and no folder named ``s3:`` appears."""
    from tastyrec.exceptions import UnsupportedLocation
    from tastyrec.record.chains import ChainRecorder

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsupportedLocation, match=r"recorder=Recorder\('s3://"):
        ChainRecorder(object(), object(), ["SPY"], out=DEST)  # type: ignore[arg-type]
    assert not (tmp_path / "s3:").exists()
    chains = ChainRecorder(object(), object(), ["SPY"], out=tmp_path / "rec")  # type: ignore[arg-type]
    assert chains.path is not None and chains.path.parent == tmp_path / "rec" / "_subscriptions"


def test_cli_chain_into_s3_kill_9_with_the_store_down_then_recover(
    s3: S3Server, tmp_path: Path, cli
) -> None:
    """The store is down from the start: data files and the _subscriptions table wait in the
    journal dir; kill -9; the store comes back; ``tastyrec recover --journal J --out s3://…``
    uploads the options' rows (every journaled row, once) and the table, and empties J."""
    from tests.integration.test_record_s3 import local_waiting

    cli.env.update({k: v for k, v in os.environ.items() if k.startswith("AWS_")})
    journal_dir = tmp_path / "journal"
    s3.stop()
    proc = cli.start(
        "record", "--chain", "SPY", "--demo", "--dte", "0-3", "--strikes", "2",
        "--out", DEST, "--journal", str(journal_dir), "--no-status", "--rotate-rows", "100",
        "--fsync", "always", "--for", "10m",
    )  # fmt: skip
    proc.wait_for(
        "Greeks files and the _subscriptions table waiting for upload",
        lambda: (
            len(list(journal_dir.glob("Greeks/date=*/*.parquet"))) >= 2
            and any(journal_dir.glob("_subscriptions/*.parquet"))
        ),
        timeout=3 * WAIT_S,
    )
    proc.popen.send_signal(signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL
    # what the journal dir holds: published files, and the intact rows of the segments not
    # converted yet (a converted file's segment is kept until its upload)
    from tastyrec.storage import layout
    from tastyrec.storage.journal import read_segment

    held = sum(pq.read_metadata(p).num_rows for p in local_waiting(journal_dir))
    for segment in journal_dir.glob("_journal/*/date=*/*.arrows"):
        if not layout.parquet_for_journal(journal_dir, segment).exists():
            held += read_segment(segment).rows
    s3.start()
    done = cli.run("recover", "--journal", str(journal_dir), "--out", DEST, timeout=3 * WAIT_S)
    assert done.popen.returncode == 0, done.stderr
    assert sum(counts(DEST).values()) == held
    table, keys = bucket_table("_subscriptions")
    assert len(keys) == 1 and "subscribe" in table["action"].to_pylist()
    con = tastyrec.connect(DEST)
    assert con.sql("SELECT DISTINCT status FROM sessions").fetchall() == [("recovered",)]
    greeks = con.sql("SELECT count(*) FROM Greeks WHERE event_symbol LIKE '.%'").fetchall()
    assert greeks[0][0] >= 200
    con.close()
    assert_journal_dir_empty(journal_dir)
    assert_no_secret(proc.stdout, proc.stderr, done.stdout, done.stderr)
