"""Readers over ``s3://``: a real S3-compatible server (moto) on 127.0.0.1, the sample recording
uploaded with :func:`tastyrec.objectstore.upload`; answers compared with the local copy, requests
counted with the server's recorder."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path
from urllib.parse import unquote

import duckdb
import polars as pl
import pyarrow.fs as pafs
import pytest

import tastyrec
from tastyrec import catalog, objectstore
from tastyrec.events import Quote, Trade
from tastyrec.exceptions import RecordingNotFound, StorageError, UnsupportedLocation
from tastyrec.objectstore import S3Location
from tastyrec.query import _compact as compaction, inventory
from tastyrec.replay import ReplayStreamer, replay_frames
from tests.integration.s3server import FAKE_ENV, S3Server

SAMPLE = Path(__file__).parent.parent / "data" / "sample"
DAY = date(2026, 11, 21)




def upload_tree(local: Path, root: S3Location) -> list[str]:
    fs = objectstore.s3_filesystem()
    keys = []
    for file in sorted(local.rglob("*.parquet")):
        rel = file.relative_to(local).as_posix()
        objectstore.upload(file, root.join(rel), fs=fs)
        keys.append(rel)
    return keys


@pytest.fixture
def bucket(s3: S3Server) -> S3Location:
    root = S3Location(s3.bucket, "rec")
    upload_tree(SAMPLE, root)
    return root


def keys(s3: S3Server, root: S3Location) -> list[str]:
    fs = objectstore.s3_filesystem()
    selector = pafs.FileSelector(root.path, recursive=True, allow_not_found=True)
    return sorted(
        i.path.removeprefix(root.path + "/")
        for i in fs.get_file_info(selector)
        if i.type == pafs.FileType.File
    )


def table(con: duckdb.DuckDBPyConnection, view: str) -> pl.DataFrame:
    frame = pl.from_arrow(con.sql(f'SELECT * FROM "{view}"').to_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame.sort(pl.all())


def test_connect_over_s3_has_the_local_views_and_rows(bucket):
    local, remote = tastyrec.connect(SAMPLE), tastyrec.connect(bucket.url)
    views = sorted(r[0] for r in local.sql("SHOW TABLES").fetchall())
    assert sorted(r[0] for r in remote.sql("SHOW TABLES").fetchall()) == views
    assert "Quote" in views and "sessions" in views and "gaps" in views
    for view in views:
        assert table(remote, view).equals(table(local, view)), view


def test_scan_over_s3_is_the_local_frame(bucket):
    spy = [pl.col("event_symbol") == "SPY"]
    local = tastyrec.scan(SAMPLE, Quote).filter(*spy).collect().sort(pl.all())
    remote = tastyrec.scan(bucket.url, Quote).filter(*spy).collect().sort(pl.all())
    assert local.height > 0
    assert remote.equals(local)
    window = tastyrec.scan(bucket.url, Quote, start=DAY, end=DAY).collect()
    assert window.height == tastyrec.scan(SAMPLE, Quote).collect().height


def test_a_date_window_lists_only_its_prefixes_and_reads_nothing_outside(s3, bucket):
    with s3.recording() as requests:
        con = tastyrec.connect(bucket.url, start=date(2026, 12, 1), end=date(2026, 12, 1))
        assert con.sql("SHOW TABLES").fetchall() == [("gaps",), ("sessions",)]
    gets = [r for r in requests if r.method == "GET" and ".parquet" in r.url.split("?")[0]]
    # the bookkeeping tables only: no event file of another day was read
    assert gets and all("/_sessions/" in r.url or "/_gaps/" in r.url for r in gets), gets
    lists = [r.query for r in requests if r.method == "GET" and "prefix=" in r.query]
    assert not any("recursive" in q for q in lists)
    # the day's prefix is named directly, never the event type's whole folder
    whole = "prefix=rec/Quote/"
    assert not any((unquote(q) + "&").count(whole + "&") for q in lists), lists


def test_scan_with_a_date_window_reads_no_object_of_another_day(s3, bucket):
    with s3.recording() as requests:
        frame = tastyrec.scan(bucket.url, Quote, start=date(2026, 12, 1), end=date(2026, 12, 2))
        assert frame.collect().height == 0
    read = [r for r in requests if r.method in ("GET", "HEAD") and ".parquet" in r.path]
    assert read == []
    with s3.recording() as requests:
        assert tastyrec.scan(bucket.url, Quote, start=DAY, end=DAY).collect().height == 955
    read = {unquote(r.path) for r in requests if r.method == "GET" and ".parquet" in r.path}
    assert read and all("/Quote/date=2026-11-21/" in k for k in read), read


def test_queries_read_only_the_objects_of_the_views_they_use(s3, bucket, monkeypatch):
    # (row-group pruning inside a file goes through the same register_duckdb path:
    # test_objectstore.py::test_duckdb_symbol_filter_reads_only_matching_row_groups)
    # nothing kept from connect (these small files would be read whole there and never again:
    # test_sql_s3_requests.py), so the query asks the store for what it reads
    monkeypatch.setattr(objectstore, "SNAPSHOT_TAIL_BYTES", 0)
    con = tastyrec.connect(bucket.url)
    con.execute("SET parquet_metadata_cache = false")
    con.execute("SET enable_external_file_cache = false")
    with s3.recording() as requests:
        assert con.sql("SELECT count(*) FROM Trade WHERE event_symbol = 'SPY'").fetchall()
    read = {unquote(r.url.split("?")[0]).split("/rec/")[1] for r in requests if r.method == "GET"}
    assert read and all(k.startswith("Trade/date=2026-11-21/") for k in read), read


def test_info_sql_and_replay_cli_over_s3_print_what_they_print_locally(bucket):
    def run(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "tastyrec", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    query = "SELECT event_symbol, count(*) FROM Quote GROUP BY 1 ORDER BY 1"
    local = run("sql", query, "--data", str(SAMPLE), "--format", "csv")
    assert run("sql", query, "--data", bucket.url, "--format", "csv") == local
    info_local = run("info", str(SAMPLE)).replace(str(SAMPLE), "ROOT")
    info_remote = run("info", bucket.url).replace(bucket.url, "ROOT")
    # the same words and figures (the title's length moves rich's padding)
    assert re.findall(r"[\w:.,=+-]+", info_remote) == re.findall(r"[\w:.,=+-]+", info_local)
    assert "955" in info_remote
    assert inventory(bucket.url).rows == inventory(SAMPLE).rows
    replayed = ("replay", "--events", "Quote,Trade", "--symbols", "SPY")
    assert run(*replayed[:1], bucket.url, *replayed[1:]) == run(
        *replayed[:1], str(SAMPLE), *replayed[1:]
    )


def test_a_missing_prefix_says_what_to_do(s3, bucket):
    with pytest.raises(RecordingNotFound, match="no recording at s3://tastyrec-test/nothing"):
        tastyrec.connect("s3://tastyrec-test/nothing")
    with pytest.raises(RecordingNotFound):
        tastyrec.scan("s3://tastyrec-test/nothing", Quote)
    with pytest.raises(UnsupportedLocation, match="gs://"):
        tastyrec.connect("gs://bucket/rec")
    proc = subprocess.run(
        [sys.executable, "-m", "tastyrec", "info", "s3://tastyrec-test/nothing"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "no recording at s3://tastyrec-test/nothing" in proc.stderr
    assert FAKE_ENV["AWS_SECRET_ACCESS_KEY"] not in proc.stderr + proc.stdout


CRASH = """
import os, sys
from tastyrec.query import _compact
def hook(step):
    if step == "delete":
        os._exit(9)
_compact._step_hook = hook
_compact.compact(sys.argv[1], event_types=["Quote"])
"""


def test_a_reader_finishes_an_interrupted_compaction_on_s3(s3, tmp_path):
    rec = tmp_path / "rec"
    shutil.copytree(SAMPLE, rec)
    proc = subprocess.run(
        [sys.executable, "-c", CRASH, str(rec)], capture_output=True, timeout=60
    )
    assert proc.returncode == 9, proc.stderr
    root = S3Location(s3.bucket, "crashed")
    upload_tree(rec, root)  # the merged file and the three it replaces, as a killed run left them
    quotes = [k for k in keys(s3, root) if k.startswith("Quote/")]
    assert len(quotes) == 4
    con = tastyrec.connect(root.url)
    assert con.sql("SELECT count(*) FROM Quote").fetchall() == [(955,)]
    (left,) = [k for k in keys(s3, root) if k.startswith("Quote/")]
    assert catalog.is_compacted(left.rsplit("/", 1)[1])


def test_two_recordings_in_one_prefix_are_both_read(s3, tmp_path):
    # a second recorder's session: the same rows under its own session id (names are unique
    # per session: <first receipt time>Z-<session>-<seq>.parquet)
    other = tmp_path / "other"
    for file in SAMPLE.rglob("*.parquet"):
        rel = file.relative_to(SAMPLE)
        target = other / rel.parent / rel.name.replace("-44f3ceba-", "-0badcafe-")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target)
    root = S3Location(s3.bucket, "shared")
    upload_tree(SAMPLE, root)
    upload_tree(other, root)
    con = tastyrec.connect(root.url)
    assert con.sql("SELECT count(*) FROM Quote").fetchall() == [(2 * 955,)]
    assert tastyrec.scan(root.url, Quote).collect().height == 2 * 955
    # the same on local disk: two recordings merged into one folder
    merged = tmp_path / "merged"
    shutil.copytree(SAMPLE, merged)
    shutil.copytree(other, merged, dirs_exist_ok=True)
    assert tastyrec.connect(merged).sql("SELECT count(*) FROM Quote").fetchall() == [(2 * 955,)]


def test_replay_frames_over_s3_are_the_local_frames(bucket):
    local = list(replay_frames(SAMPLE, [Quote, Trade], symbols=["SPY"]))
    remote = list(replay_frames(bucket.url, [Quote, Trade], symbols=["SPY"]))
    assert len(remote) == len(local) > 0
    for a, b in zip(remote, local, strict=True):
        assert a.equals(b)


async def test_a_replay_streamer_over_s3_replays_what_the_local_copy_does(bucket):
    async def events(path: str | Path) -> tuple[list[str], int]:
        async with ReplayStreamer(path) as replay:
            await replay.subscribe(Quote, ["SPY", "QQQ"])
            quotes = [repr(q) async for q in replay.listen(Quote)]  # repr: NaN-safe
            return quotes, len(replay.gaps)

    local = await events(SAMPLE)
    assert local[0]
    assert await events(bucket.url) == local


def quote_keys(s3: S3Server, root: S3Location) -> list[str]:
    return [k.rsplit("/", 1)[1] for k in keys(s3, root) if k.startswith("Quote/")]


def test_compact_cli_on_s3_merges_like_the_local_copy(s3, bucket, tmp_path):
    local = tmp_path / "local"
    shutil.copytree(SAMPLE, local)
    for where in (str(local), bucket.url):
        proc = subprocess.run(
            [sys.executable, "-m", "tastyrec", "compact", where],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
    for view in ("Quote", "Trade", "sessions"):
        assert table(tastyrec.connect(bucket.url), view).equals(
            table(tastyrec.connect(local), view)
        )
    (merged,) = quote_keys(s3, bucket)
    assert catalog.is_compacted(merged)
    assert not [k for k in keys(s3, bucket) if "uploading" in k or "lock" in k]


S3_CRASH = """
import os, sys
from tastyrec.query import _compact
def hook(step):
    if step == sys.argv[2]:
        os._exit(9)
_compact._step_hook = hook
_compact.compact(sys.argv[1], event_types=["Quote"])
"""


@pytest.mark.parametrize("step", ["s3-upload", "s3-delete"])
def test_a_compaction_on_s3_killed_at_each_step_is_finished_or_left_untouched(s3, bucket, step):
    before = table(tastyrec.connect(SAMPLE), "Quote")
    proc = subprocess.run(
        [sys.executable, "-c", S3_CRASH, bucket.url, step], capture_output=True, timeout=120
    )
    assert proc.returncode == 9, proc.stderr
    names = quote_keys(s3, bucket)
    # before the upload: the bucket is as it was; before the deletes: merged + its inputs
    assert len(names) == (3 if step == "s3-upload" else 4)
    assert table(tastyrec.connect(bucket.url), "Quote").equals(before)
    # the reader rolled the compaction forward; the next run takes the lease (expired? no: the
    # killed run's lease is fresh, so it is refused) -- delete it as the message says
    assert len(quote_keys(s3, bucket)) == (3 if step == "s3-upload" else 1)
    with pytest.raises(StorageError, match="another `tastyrec compact` holds"):
        tastyrec.compact(bucket.url, event_types=["Quote"])
    objectstore.s3_filesystem().delete_file(bucket.join("_compact.lock").path)
    tastyrec.compact(bucket.url, event_types=["Quote"])
    (merged,) = quote_keys(s3, bucket)
    assert catalog.is_compacted(merged)
    assert table(tastyrec.connect(bucket.url), "Quote").equals(before)


def test_compaction_on_s3_leaves_a_recorders_new_upload_alone(s3, bucket, monkeypatch, tmp_path):
    # a recorder uploads a file into the partition while the compaction runs: it is not an
    # input (compaction deletes only what it listed), and no row is lost or doubled
    new = tmp_path / "new.parquet"
    source = next((SAMPLE / "Quote" / "date=2026-11-21").glob("*-00003.parquet"))
    shutil.copyfile(source, new)
    name = source.name.replace("-44f3ceba-", "-0badcafe-")
    uploaded = []

    def hook(step: str) -> None:
        if step == "s3-upload" and not uploaded:
            objectstore.upload(new, bucket.join("Quote", "date=2026-11-21", name))
            uploaded.append(name)

    monkeypatch.setattr(compaction, "_step_hook", hook)
    rows = tastyrec.connect(SAMPLE).sql("SELECT count(*) FROM Quote").fetchall()[0][0]
    extra = pl.read_parquet(source).height
    tastyrec.compact(bucket.url, event_types=["Quote"])
    left = quote_keys(s3, bucket)
    assert name in left and len(left) == 2
    count = tastyrec.connect(bucket.url).sql("SELECT count(*) FROM Quote").fetchall()[0][0]
    assert count == rows + extra


async def _quotes_of_the_slice(streamer: ReplayStreamer) -> dict[str, object]:
    symbols = set()
    n = 0
    async for quote in streamer.listen(Quote):
        n += 1
        symbols.add(quote.event_symbol)
    return {"quotes": n, "symbols": len(symbols)}


def test_backtest_over_s3_gives_the_local_results_on_a_process_pool(s3, tmp_path):
    """Each task reads its own day (or symbol-day) from the bucket, here in spawned worker
    processes that share no disk with the recording: the results are the local copy's."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from tests.integration.sample_days import copy_sample_days

    local = copy_sample_days(tmp_path / "days", 3)
    root = S3Location(s3.bucket, "days")
    upload_tree(local, root)
    columns = ["day", "symbol", "quotes", "symbols", "error"]
    for by, types in (("day", ()), ("symbol-day", (Quote,))):
        here = tastyrec.backtest(_quotes_of_the_slice, local, by=by, types=types)
        assert here["error"].is_null().all() and here.height >= 3
        pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
        with pool:
            there = tastyrec.backtest(
                _quotes_of_the_slice, root.url, by=by, types=types, executor=pool
            )
        assert there.select(columns).equals(here.select(columns)), by
    with pytest.raises(RecordingNotFound, match="no recording at s3://"):
        tastyrec.backtest(_quotes_of_the_slice, S3Location(s3.bucket, "nothing-here").url)


def _served(root: object) -> list[tuple[int, bytes]]:
    """Everything ``tastyrec serve``'s feed hands a client subscribed to the sample's quotes."""
    import math

    import msgspec

    from tastyrec.replay.feed import SETTLE_S, ReplayFeed

    feed = ReplayFeed(root, speed=math.inf)  # type: ignore[arg-type]
    for symbol in ("SPY", "QQQ", "AAPL", "SPX", ".SPY261218C600"):
        feed.subscribe("Quote", symbol, now=0.0)
    got: list[tuple[int, bytes]] = []
    for _ in range(10_000):  # bounded: every poll hands out at least one event or ends
        events = feed.poll(SETTLE_S + 1.0)
        got += [(ns, msgspec.msgpack.encode(event)) for ns, event in events]
        if not events:
            break
    assert feed.finished
    return got


def test_serve_feeds_a_client_from_s3_what_it_feeds_from_the_local_copy(bucket):
    local = _served(SAMPLE)
    assert len(local) > 100
    assert _served(bucket) == local
    assert _served(bucket.url) == local
