"""``Recorder.connect()`` (live SQL) on a recorder INTO object storage: every row once.

Against a real S3-compatible server (moto's server mode on 127.0.0.1). The recorder's uploader
talks to it through a :class:`~tests.integration.s3server.CuttingProxy` that the test pauses to
hold uploads (connections refused, as from a dead store) while the reader lists and reads the
server directly: some files are uploaded and deleted locally, some wait in the journal dir,
some rows are still in the journal; the views hold each row once (``sequence`` is a per-row
unique key), together with an earlier session's files already in the bucket. The races the
module argues (a file uploaded and deleted between the listing and the query, or between the
local listing and the bucket's, or a segment converted and uploaded after the snapshot) are
made to happen at those exact points, not left to timing.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import anyio
import pyarrow.parquet as pq
import pytest

from tastyrec.events import Quote
from tastyrec.objectstore import S3Location, s3_config, s3_filesystem, upload
from tastyrec.record import live_sql
from tastyrec.record.recorder import Recorder
from tastyrec.record.sink import RotationPolicy
from tastyrec.record.upload import UploadRetry
from tests.integration.s3server import CuttingProxy, S3Server
from tests.integration.test_record_s3 import BUCKET, local_waiting, visible_keys
from tests.integration.waits import WAIT_S, wait_until, wait_until_sync

pytestmark = pytest.mark.anyio

DEST = f"s3://{BUCKET}/live/desk1"
LOCATION = S3Location(BUCKET, "live/desk1")
SAMPLE = Path(__file__).parent.parent / "data" / "sample"
ROWS_PER_FILE = 10


def quote(i: int) -> Quote:
    return Quote(
        event_symbol=("SPY", "QQQ", "AAPL")[i % 3],
        sequence=i,
        bid_price=float(i),
        ask_price=float(i) + 0.5,
    )


def seed_history() -> dict[str, int]:
    """An earlier session's files (the sample recording, schema version 1) in the bucket."""
    fs = s3_filesystem()
    rows: dict[str, int] = {}
    for path in sorted(SAMPLE.rglob("*.parquet")):
        rel = path.relative_to(SAMPLE)
        upload(path, LOCATION.join(*rel.parts), fs=fs)
        if not rel.parts[0].startswith("_"):
            rows[rel.parts[0]] = rows.get(rel.parts[0], 0) + pq.read_metadata(path).num_rows
    return rows


def live_quotes(con) -> tuple[int, int, int]:
    """(rows of this session, distinct sequences among them, rows of the Quote view)."""
    mine = con.sql(
        "SELECT count(*), count(DISTINCT sequence) FROM Quote WHERE event_symbol IN "
        "('SPY', 'QQQ', 'AAPL') AND recv_epoch_ns >= ?",
        params=[START_NS],
    ).fetchall()[0]
    total = con.sql("SELECT count(*) FROM Quote").fetchall()[0][0]
    return mine[0], mine[1], total


START_NS = 0  # set by the test: the recorder's start (the sample's rows are older)


def uploaded_quotes(session_id: str) -> list[str]:
    """This session's Quote files in the bucket (not a staging object a cut upload left)."""
    return [
        k
        for k in visible_keys(DEST)
        if "/Quote/" in k and session_id in k and k.endswith(".parquet")
        and not k.rpartition("/")[2].startswith(".")
    ]


async def record(recorder: Recorder, numbers: range, files: int) -> None:
    """Record quotes ``numbers``, handed over in batches that end on multiples of
    ``ROWS_PER_FILE`` (a file rotates after the batch that fills it), until ``files`` files."""
    i = numbers.start
    while i < numbers.stop:
        end = min(numbers.stop, (i // ROWS_PER_FILE + 1) * ROWS_PER_FILE)
        for n in range(i, end):
            recorder.record(quote(n))
        await wait_until(lambda: recorder.stats.rows["Quote"] == end)  # noqa: B023
        i = end
    await wait_until(lambda: recorder.stats.files >= files)
    assert recorder.stats.files == files


async def test_live_sql_on_s3_sees_uploaded_pending_and_journal_rows_once(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    global START_NS
    history = seed_history()
    journal_dir = tmp_path / "journal"
    proxy = CuttingProxy(s3.port, cut_at=1 << 60, on_cut=lambda: None)
    recorder = Recorder(
        DEST,
        journal=journal_dir,
        rotation=RotationPolicy(max_rows=ROWS_PER_FILE),
        upload_retry=UploadRetry(first_s=0.05, max_s=0.2),
        upload_timeout_s=WAIT_S,
        recover=False,
    )
    assert recorder._uploader is not None
    # the uploader goes through the proxy; the reader talks to the server itself
    recorder._uploader.fs = s3_filesystem(
        s3_config({**os.environ, "AWS_ENDPOINT_URL": proxy.endpoint}), sdk_attempts=1
    )
    backlog = recorder._uploader.backlog
    with proxy, anyio.fail_after(6 * WAIT_S):
        async with recorder:
            START_NS = recorder.stats.started_ns
            # A: 35 rows: 3 files uploaded (and deleted locally), 5 rows in the journal
            await record(recorder, range(35), files=3)
            await wait_until(lambda: backlog.uploaded_files >= 3 and not backlog.files)
            await wait_until(lambda: not local_waiting(journal_dir))
            con = recorder.connect()
            assert live_quotes(con) == (35, 35, 35 + history["Quote"])
            assert con.sql("SELECT count(*) FROM Trade").fetchall()[0][0] == history["Trade"]
            sessions = con.sql("SELECT session_id, status FROM sessions").fetchall()
            assert (recorder.session_id, "recording") in sessions and len(sessions) >= 2

            # B: the store is unreachable for the uploader: 3 more files wait locally, 8 rows
            # are in the journal
            proxy.pause()
            await record(recorder, range(35, 68), files=6)
            await wait_until(
                lambda: len(local_waiting(journal_dir)) == 3 and backlog.last_error is not None
            )
            assert len(uploaded_quotes(recorder.session_id)) == 3
            held = await recorder.aconnect()  # the views made in a worker thread
            assert live_quotes(held) == (68, 68, 68 + history["Quote"])
            # a snapshot taken just before the recorder listed its last file: that file's
            # segment (kept until the upload) holds its rows
            written, segments = recorder._tail_snapshot()
            last = max(written, key=lambda p: p.name)
            segment = journal_dir / "_journal" / "Quote" / last.parent.name / (
                last.stem + ".arrows"
            )
            assert segment.exists()
            early = (written - {last}, [segment, *segments])
            con = live_sql.live_connection(
                journal_dir, recorder.session_id, *early, store=LOCATION
            )
            assert live_quotes(con) == (68, 68, 68 + history["Quote"])

            # C: the uploads go through; the files are deleted locally after the snapshots
            proxy.resume()
            recorder._uploader.wake()
            await wait_until(lambda: not backlog.files and not local_waiting(journal_dir))
            assert not segment.exists()
            # the views made before still read every row once (the links stay)
            assert live_quotes(held) == (68, 68, 68 + history["Quote"])
            # the early snapshot now finds the segment gone: the file is read from the bucket
            con = live_sql.live_connection(
                journal_dir, recorder.session_id, *early, store=LOCATION
            )
            assert live_quotes(con) == (68, 68, 68 + history["Quote"])

            # D: files uploaded and deleted between the local listing and the bucket's
            proxy.pause()
            await record(recorder, range(68, 90), files=9)
            await wait_until(lambda: len(local_waiting(journal_dir)) == 3)
            listing = live_sql.catalog.location_event_types

            def list_after_uploads(*args, **kwargs):
                proxy.resume()
                recorder._uploader.wake()
                wait_until_sync("the uploads", lambda: not local_waiting(journal_dir))
                return listing(*args, **kwargs)

            monkeypatch.setattr(live_sql.catalog, "location_event_types", list_after_uploads)
            con = await recorder.aconnect()
            monkeypatch.setattr(live_sql.catalog, "location_event_types", listing)
            assert live_quotes(con) == (90, 90, 90 + history["Quote"])
            nulls = con.sql("SELECT count(*) FROM Quote WHERE date IS NULL").fetchall()
            assert nulls == [(0,)]
            links = list((journal_dir / live_sql.LIVE_DIR).rglob("*.parquet"))
            assert links  # the views of this connection read links
            del con, held
            gc.collect()
        final = recorder.stats.rows["Quote"]
    assert final == 90
    # the links went with the connections; everything is in the bucket, once
    assert not list(journal_dir.rglob("*.parquet"))
    assert not (journal_dir / live_sql.LIVE_DIR).exists()
    import tastyrec

    con = tastyrec.connect(DEST)
    assert live_quotes(con) == (90, 90, 90 + history["Quote"])
    [(status,)] = con.sql(
        "SELECT status FROM sessions WHERE session_id = ?", params=[recorder.session_id]
    ).fetchall()
    assert status == "ended"


def test_stale_link_folders_of_dead_processes_are_removed(tmp_path: Path) -> None:
    base = tmp_path / live_sql.LIVE_DIR
    dead = base / "999999999-abcd"  # beyond pid_max: no such process
    mine = base / f"{os.getpid()}-abcd"
    for folder in (dead, mine):
        (folder / "Quote").mkdir(parents=True)
        (folder / "Quote" / "x.parquet").write_bytes(b"x")
    live_sql.remove_stale_snapshots(tmp_path)
    assert not dead.exists() and mine.exists()


async def test_a_recorder_into_s3_removes_a_dead_process_s_links_on_start(
    s3: S3Server, tmp_path: Path
) -> None:
    journal_dir = tmp_path / "journal"
    dead = journal_dir / live_sql.LIVE_DIR / "999999999-abcd" / "Quote" / "date=2026-12-07"
    dead.mkdir(parents=True)
    (dead / "x.parquet").write_bytes(b"x")
    with anyio.fail_after(2 * WAIT_S):
        async with Recorder(DEST, journal=journal_dir, upload_timeout_s=WAIT_S):
            assert not (journal_dir / live_sql.LIVE_DIR / "999999999-abcd").exists()


def test_a_local_file_a_bucket_compaction_replaced_is_read_once(
    s3: S3Server, tmp_path: Path
) -> None:
    """A file uploaded, then compacted in the bucket, before the uploader deleted its local
    copy: the compacted object holds its rows, the local copy is left out of the views."""
    import tastyrec

    history = seed_history()
    results = tastyrec.compact(DEST, event_types=["Quote"])
    assert any(len(r.inputs) > 1 for r in results), results  # the sample's Quote files merged
    journal_dir = tmp_path / "journal"
    replaced = sorted(SAMPLE.glob("Quote/date=*/*.parquet"))[0]
    waiting = journal_dir / replaced.relative_to(SAMPLE)
    waiting.parent.mkdir(parents=True)
    waiting.write_bytes(replaced.read_bytes())
    con = live_sql.live_connection(journal_dir, "0badc0de", set(), [], store=LOCATION)
    assert con.sql("SELECT count(*) FROM Quote").fetchall() == [(history["Quote"],)]
    # and a local file the bucket does not hold at all (not uploaded yet) is read
    other = waiting.with_name(waiting.name.replace("44f3ceba", "5eed5eed"))
    waiting.rename(other)
    con = live_sql.live_connection(journal_dir, "0badc0de", set(), [], store=LOCATION)
    added = pq.read_metadata(other).num_rows
    assert con.sql("SELECT count(*) FROM Quote").fetchall() == [(history["Quote"] + added,)]


async def test_store_down_live_sql_fails_clearly_and_the_recording_goes_on(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bucket cannot be listed (the reader goes through a paused proxy; the uploader talks
    to the server): ``connect()`` raises ``ObjectStoreError`` (no secret in it) and the
    recording is unharmed; once the store answers again, a new call sees every row."""
    from tastyrec.objectstore import ObjectStoreError
    from tests.integration.test_record_s3 import assert_no_secret

    global START_NS
    journal_dir = tmp_path / "journal"
    proxy = CuttingProxy(s3.port, cut_at=1 << 60, on_cut=lambda: None)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)  # what the reader uses
    recorder = Recorder(
        DEST,
        journal=journal_dir,
        rotation=RotationPolicy(max_rows=ROWS_PER_FILE),
        upload_retry=UploadRetry(first_s=0.05, max_s=0.2),
        upload_timeout_s=WAIT_S,
    )
    assert recorder._uploader is not None
    recorder._uploader.fs = s3_filesystem(
        s3_config({**os.environ, "AWS_ENDPOINT_URL": s3.endpoint})
    )
    with proxy, anyio.fail_after(4 * WAIT_S):
        async with recorder:
            START_NS = recorder.stats.started_ns
            await record(recorder, range(15), files=1)
            proxy.pause()
            with pytest.raises(ObjectStoreError) as failed:
                recorder.connect()
            assert_no_secret(str(failed.value))
            assert not (journal_dir / live_sql.LIVE_DIR).exists()  # its links went at once
            await record(recorder, range(15, 25), files=2)
            proxy.resume()
            con = recorder.connect()
            assert live_quotes(con)[:2] == (25, 25)
            del con
            gc.collect()
    assert not list(journal_dir.rglob("*.parquet"))


async def test_aconnect_on_a_local_recording(tmp_path: Path) -> None:
    """``aconnect()`` on a local recording: files and journal rows, each once, as ``connect()``."""
    global START_NS
    async with Recorder(
        tmp_path, rotation=RotationPolicy(max_rows=ROWS_PER_FILE), recover=False
    ) as recorder:
        START_NS = recorder.stats.started_ns
        await record(recorder, range(25), files=2)
        con = await recorder.aconnect()
        assert live_quotes(con) == (25, 25, 25)
        assert con.sql("SELECT count(*) FROM sessions").fetchall() == [(1,)]
        assert not (tmp_path / live_sql.LIVE_DIR).exists()  # links only for s3://
