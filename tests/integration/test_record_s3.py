"""Recording INTO object storage: ``Recorder(out="s3://…")`` and ``tastyrec record --out s3://…``.

Against a real S3-compatible server (moto's server mode, a subprocess on 127.0.0.1:
``tests/integration/s3server.py``) and the built-in simulator; what arrives in the bucket is
copied back to a local folder and compared row for row with what the simulator sent (or with
what the journal held at a kill -9). Every wait is bounded; nothing sleeps "long enough".
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import anyio
import pyarrow.fs as pafs
import pytest

from tastyrec.objectstore import S3Location, s3_filesystem
from tests.integration.s3server import FAKE_ENV, S3Server
from tests.integration.test_record_crash import (
    SYMBOLS,
    assert_same_rows,
    expected_after_recovery,
    journal,
    read_parquet,
)
from tests.integration.waits import WAIT_S, wait_until

BUCKET = "tastyrec-test"
DEST = f"s3://{BUCKET}/rec/desk1"




def download(dest: str, local: Path) -> Path:
    """Copy every object under ``dest`` into ``local`` (the bucket as a local recording)."""
    loc = S3Location(BUCKET, dest.removeprefix(f"s3://{BUCKET}/"))
    fs = s3_filesystem()
    selector = pafs.FileSelector(loc.path, recursive=True, allow_not_found=True)
    for info in fs.get_file_info(selector):
        if info.type != pafs.FileType.File or info.size == 0:  # skip directory markers
            continue
        target = local / info.path.removeprefix(loc.path + "/")
        target.parent.mkdir(parents=True, exist_ok=True)
        with fs.open_input_stream(info.path) as src:
            target.write_bytes(src.read())
    return local


def visible_keys(dest: str) -> list[str]:
    loc = S3Location(BUCKET, dest.removeprefix(f"s3://{BUCKET}/"))
    selector = pafs.FileSelector(loc.path, recursive=True, allow_not_found=True)
    return sorted(
        i.path
        for i in s3_filesystem().get_file_info(selector)
        if i.type == pafs.FileType.File and i.size
    )


def local_waiting(journal_dir: Path) -> list[Path]:
    return sorted(p for p in journal_dir.glob("*/date=*/*.parquet") if not p.parts[-3][0] == "_")


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            assert FAKE_ENV[name] not in text, name


def grep_secrets(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
                assert FAKE_ENV[name].encode() not in data, (path, name)


async def _record(tmp_path: Path, *, until_rows: int, during=None, journal_dir: Path | None = None):
    """Record Quotes of the simulator into ``DEST`` with small files; returns (recorder,
    expected rows in receipt order: what the simulator sent, first ones)."""
    from tastyrec.dxlink.streamer import DXLinkStreamer
    from tastyrec.events import Quote
    from tastyrec.record.recorder import Recorder
    from tastyrec.record.sink import RotationPolicy
    from tastyrec.record.upload import UploadRetry
    from tastyrec.sim import Simulator
    from tastyrec.sim.engine import SimConfig
    from tests.integration.wire import expected_rows, sent_events

    config = SimConfig(quote_rate_hz=50.0, keepalive_timeout=30.0)
    async with Simulator(seed=5, token=None, config=config, keep_sent=True) as sim:
        streamer = DXLinkStreamer(url=sim.url, token=None, queue_size=0, tap_interval=0.05)
        async with streamer:
            recorder = Recorder(
                DEST,
                streamer,
                journal=journal_dir or tmp_path / "journal",
                rotation=RotationPolicy(max_rows=40),
                upload_retry=UploadRetry(first_s=0.1, max_s=0.4),
                upload_timeout_s=WAIT_S,
            )
            async with recorder:
                await streamer.subscribe(Quote, SYMBOLS.split(","), refresh_interval=0.01)
                with anyio.fail_after(WAIT_S):  # bounds failure only
                    if during is not None:
                        await during(recorder)
                    await wait_until(lambda: recorder.stats.rows["Quote"] >= until_rows)
        assert sim.sent is not None
        sent = expected_rows(Quote, sent_events(sim.sent)["Quote"])
    return recorder, sent


def check_bucket(tmp_path: Path, recorder, sent) -> None:
    from tastyrec.events import Quote
    from tests.integration.wire import recorded_rows

    local = download(DEST, tmp_path / "from-bucket")
    rows = recorded_rows(local, Quote)
    assert len(rows) == recorder.stats.rows["Quote"]  # every row journaled, once
    assert rows == sent[: len(rows)]  # the first ones sent, in order, none twice
    files = sorted(local.glob("Quote/date=*/*.parquet"))
    assert len(files) == recorder.stats.files >= 2
    sessions = [r for p in local.glob("_sessions/*.parquet") for r in read_parquet(p).to_pylist()]
    assert [(s["session_id"], s["status"]) for s in sessions] == [(recorder.session_id, "ended")]
    # nothing hidden or partial is visible: only Parquet files
    assert all(k.endswith(".parquet") for k in visible_keys(DEST)), visible_keys(DEST)


@pytest.mark.anyio
async def test_record_into_s3_every_row_arrives_once(
    s3: S3Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    journal_dir = tmp_path / "journal"
    recorder, sent = await _record(tmp_path, until_rows=200, journal_dir=journal_dir)
    check_bucket(tmp_path, recorder, sent)
    assert recorder.destination == S3Location(BUCKET, "rec/desk1")
    backlog = recorder.stats.upload
    assert backlog is not None and backlog.files == 0 and backlog.last_error is None
    # uploaded: the local copies and their journal segments are gone, bookkeeping too
    assert not local_waiting(journal_dir)
    assert not list(journal_dir.rglob("*.arrows"))
    assert not list(journal_dir.rglob("*.parquet"))
    # secrets in no file of the journal dir, no object, no log line
    grep_secrets(journal_dir)
    grep_secrets(tmp_path / "from-bucket")
    assert_no_secret(caplog.text)


@pytest.mark.anyio
async def test_store_down_mid_recording_backlog_shown_then_everything_arrives_once(
    s3: S3Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server is killed before the first upload (a restart empties moto's store, so the
    outage starts before anything is there), the recording goes on, files wait in the journal
    dir and the status says so; the server comes back and the backlog drains: every row once."""
    from tastyrec.record.status import StatusDisplay

    journal_dir = tmp_path / "journal"
    seen: dict[str, str] = {}

    async def outage(recorder) -> None:
        s3.stop()
        backlog = recorder.stats.upload
        await wait_until(lambda: backlog.files >= 2 and backlog.last_error is not None)
        display = StatusDisplay(recorder.stats, out=DEST, live=False)
        seen["line"] = display._line(recorder.stats.started_ns)
        assert len(local_waiting(journal_dir)) >= 2  # kept locally, with their segments
        s3.start()
        await wait_until(lambda: not backlog.files and backlog.last_error is None)

    caplog.set_level("INFO")
    recorder, sent = await _record(tmp_path, until_rows=0, during=outage, journal_dir=journal_dir)
    assert re.search(
        r"uploads to s3://tastyrec-test/rec/desk1: \d+ files \(.*\) waiting", seen["line"]
    )
    assert "last error" in seen["line"]
    assert_no_secret(seen["line"], caplog.text)
    assert "upload failed, the file stays in" in caplog.text
    check_bucket(tmp_path, recorder, sent)
    assert not local_waiting(journal_dir)


@pytest.mark.parametrize("outage", [True, False], ids=["store-down", "store-up"])
def test_kill_9_with_a_backlog_then_recover_uploads_it_once(
    s3: S3Server, tmp_path: Path, cli, outage: bool
) -> None:
    """``tastyrec record --out s3://…`` with the store down: files pile up in --journal; kill -9;
    the store comes back; ``tastyrec recover --journal J --out s3://…`` uploads exactly what the
    journal dir held (published files + intact journal records), and a second run nothing."""
    cli.env.update({k: v for k, v in os.environ.items() if k.startswith("AWS_")})
    journal_dir = tmp_path / "journal"
    if outage:
        s3.stop()
    proc = cli.start(
        "record", "--symbols", SYMBOLS, "--demo", "--out", DEST, "--journal", str(journal_dir),
        "--fsync", "always", "--no-status", "--rotate-rows", "20", "--for", "10m",
    )  # fmt: skip
    if outage:
        proc.wait_for(
            "3 Quote files waiting for upload",
            lambda: len(list(journal_dir.glob("Quote/date=*/*.parquet"))) >= 3,
            timeout=WAIT_S,
        )
    else:
        proc.wait_for(
            "3 Quote files uploaded",
            lambda: len([k for k in visible_keys(DEST) if "/Quote/" in k]) >= 3,
            timeout=WAIT_S,
        )
    proc.popen.send_signal(signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL
    published = {p: read_parquet(p) for p in local_waiting(journal_dir)}
    want = expected_after_recovery(journal_dir, published, journal(journal_dir))
    arrived = {}
    if outage:
        s3.start()  # empty: nothing had arrived
    else:  # what had arrived before the kill
        before = download(DEST, tmp_path / "at-kill")
        arrived = {
            p.relative_to(before): read_parquet(p) for p in before.glob("*/date=*/*.parquet")
        }

    done = cli.run("recover", "--journal", str(journal_dir), "--out", DEST, timeout=WAIT_S * 2)
    assert done.popen.returncode == 0, done.stderr
    assert "uploaded" in done.stdout, done.stdout
    local = download(DEST, tmp_path / "from-bucket")
    got = {p.relative_to(local): read_parquet(p) for p in local.glob("*/date=*/*.parquet")}
    expected = arrived | {p.relative_to(journal_dir): t for p, t in want.files.items()}
    assert sorted(got) == sorted(expected)
    for rel, table in expected.items():
        assert_same_rows(got[rel], table, str(rel))
    assert not local_waiting(journal_dir) and not list(journal_dir.rglob("*.arrows"))
    sessions = [r for p in local.glob("_sessions/*.parquet") for r in read_parquet(p).to_pylist()]
    assert [s["status"] for s in sessions] == ["recovered"]
    # the row counts the files uploaded before the kill too
    assert sessions[0]["rows"] == sum(t.num_rows for t in got.values())
    assert sessions[0]["files"] == len(got)
    grep_secrets(journal_dir)
    grep_secrets(local)
    assert_no_secret(proc.stderr, proc.stdout, done.stderr, done.stdout)

    with s3.recording() as requests:
        again = cli.run("recover", "--journal", str(journal_dir), "--out", DEST, timeout=WAIT_S)
    assert again.popen.returncode == 0, again.stderr
    assert "uploaded 0 files" in again.stdout, again.stdout
    assert not [r for r in requests if r.method in ("PUT", "POST")], requests


def test_record_refuses_journal_without_s3_and_bad_urls(cli, tmp_path: Path) -> None:
    proc = cli.run(
        "record", "--symbols", "SPY", "--demo", "--out", str(tmp_path / "d"),
        "--journal", str(tmp_path / "j"), "--for", "1s",
    )  # fmt: skip
    assert proc.popen.returncode == 2 and "--journal goes with --out s3://" in proc.stderr
    proc = cli.run("record", "--symbols", "SPY", "--demo", "--out", "s3://Bad_Bucket/x")
    assert proc.popen.returncode == 2 and "bucket" in proc.stderr
    assert not (cli.workdir / "s3:").exists()


def test_default_journal_dir_is_sanitised_and_under_the_cache(tmp_path: Path) -> None:
    from tastyrec.record.upload import default_journal_dir

    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    a = default_journal_dir(S3Location("my.bucket", "a b/c/ünï"), env)
    b = default_journal_dir(S3Location("my.bucket", "a_b/c"), env)
    for d in (a, b):
        assert d.parent == tmp_path / "cache" / "tastyrec" / "journal"
        assert re.fullmatch(r"[A-Za-z0-9._-]+", d.name), d.name
    assert a != b


@pytest.mark.anyio
async def test_store_still_down_at_the_end_fails_with_the_way_out_then_recover_uploads(
    s3: S3Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Leaving the block waits ``upload_timeout_s`` (bounded) for the backlog; with the store
    still down it raises UploadsPending naming the journal dir and the recover command; the
    data is all there, and ``upload_recovered`` (what ``tastyrec recover --out`` runs) uploads
    it once the store is back."""
    from tastyrec.dxlink.streamer import DXLinkStreamer
    from tastyrec.events import Quote
    from tastyrec.record.recorder import Recorder
    from tastyrec.record.sink import RotationPolicy
    from tastyrec.record.upload import UploadRetry, UploadsPending, upload_recovered
    from tastyrec.sim import Simulator
    from tastyrec.sim.engine import SimConfig
    from tests.integration.wire import expected_rows, recorded_rows, sent_events

    caplog.set_level("INFO")
    journal_dir = tmp_path / "journal"
    s3.stop()
    config = SimConfig(quote_rate_hz=50.0, keepalive_timeout=30.0)
    recorder = None
    async with Simulator(seed=7, token=None, config=config, keep_sent=True) as sim:
        async with DXLinkStreamer(url=sim.url, token=None, queue_size=0) as streamer:
            with pytest.raises(UploadsPending) as failed:
                recorder = Recorder(
                    DEST,
                    streamer,
                    journal=journal_dir,
                    rotation=RotationPolicy(max_rows=40),
                    upload_retry=UploadRetry(first_s=0.1, max_s=0.2),
                    upload_timeout_s=1.0,
                )
                async with recorder:
                    await streamer.subscribe(Quote, SYMBOLS.split(","), refresh_interval=0.01)
                    await wait_until(lambda: recorder.stats.files >= 2)
        sent = expected_rows(Quote, sent_events(sim.sent)["Quote"])
    message = str(failed.value)
    assert str(journal_dir) in message and DEST in message
    assert f"tastyrec recover --journal {journal_dir} --out {DEST}" in message
    assert_no_secret(message, caplog.text)
    assert recorder is not None
    assert len(local_waiting(journal_dir)) == recorder.stats.files  # nothing lost, nothing sent

    s3.start()
    report, uploader = upload_recovered(journal_dir, S3Location(BUCKET, "rec/desk1"))
    # the recorder had converted everything: recover finds each file beside its kept segment
    # (deleted only after the upload), converts nothing new, and the uploads follow
    assert report.rows == recorder.stats.rows_written == recorder.stats.rows["Quote"]
    assert not list(journal_dir.rglob("*.arrows"))
    assert uploader.backlog.uploaded_files >= recorder.stats.files
    local = download(DEST, tmp_path / "from-bucket")
    rows = recorded_rows(local, Quote)
    assert len(rows) == recorder.stats.rows["Quote"] and rows == sent[: len(rows)]
    assert not local_waiting(journal_dir)
    sessions = [r for p in local.glob("_sessions/*.parquet") for r in read_parquet(p).to_pylist()]
    assert [s["status"] for s in sessions] == ["ended"]
