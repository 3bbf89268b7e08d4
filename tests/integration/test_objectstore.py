"""tastyrec.objectstore against a real S3-compatible server (moto's, a subprocess on 127.0.0.1).

Faults are placed exactly, never raced: :class:`CuttingProxy` cuts the byte stream of an upload
after N bytes and kills the server or the uploading process right there; backoff waits go
through an injected ``sleep`` that records them (and restarts the server when the test says so).
Requests are counted with moto's request recorder, which writes each request while handling it.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from tastyrec import objectstore
from tastyrec.objectstore import (
    Backoff,
    ObjectStoreError,
    S3Config,
    S3Location,
    parse_location,
    s3_config,
    s3_filesystem,
    upload,
)
from tests.integration.s3server import (
    FAKE_ENV,
    WAIT_S,
    CuttingProxy,
    Request,
    S3Server,
    iam_access_key,
    running_s3_server,
)

MiB = 1024 * 1024
SECRETS = (
    FAKE_ENV["AWS_SECRET_ACCESS_KEY"],
    FAKE_ENV["AWS_SESSION_TOKEN"],
    FAKE_ENV["AWS_ACCESS_KEY_ID"],
)




def fs_for(endpoint: str, **kwargs: int) -> pafs.S3FileSystem:
    host = endpoint.removeprefix("http://")
    return s3_filesystem(S3Config(host, "http", "us-east-1"), **kwargs)


def random_file(path: Path, size: int, seed: int = 1) -> bytes:
    """``size`` incompressible bytes, the same for the same ``seed``, written to ``path``."""
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


def read_object(fs: pafs.S3FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as src:
        data: bytes = src.read()
        return data


def keys_under(fs: pafs.S3FileSystem, path: str) -> list[str]:
    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    return sorted(i.path for i in fs.get_file_info(selector) if i.type == pafs.FileType.File)


class RecordingSleep:
    """An injected ``sleep``: records each delay and runs ``on_call[n]`` on the n-th call."""

    def __init__(self, **on_call: object) -> None:
        self.delays: list[float] = []
        self.actions = on_call

    def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        action = self.actions.get(f"call{len(self.delays)}")
        if callable(action):
            action()


# -- locations and configuration -------------------------------------------------------------


def test_parse_location() -> None:
    assert parse_location("s3://bucket/rec/2026/") == S3Location("bucket", "rec/2026")
    assert parse_location("s3a://bucket") == S3Location("bucket", "")
    assert str(parse_location("s3://bucket/rec")) == "s3://bucket/rec"
    assert parse_location("data/rec") == Path("data/rec")
    assert parse_location(Path("s3:/x")) == Path("s3:/x")
    assert S3Location("bucket", "rec").join("Quote", "date=2026-12-01/") == S3Location(
        "bucket", "rec/Quote/date=2026-12-01"
    )
    for bad in ("gs://bucket/x", "http://host/x", "s3://", "s3://Bad_Bucket/x", "s3://b/../x"):
        with pytest.raises(ValueError):
            parse_location(bad)


def test_credentials_in_urls_are_refused_without_repeating_them() -> None:
    secret = SECRETS[0]
    with pytest.raises(ValueError) as err:
        parse_location(f"s3://AKIA:{secret}@bucket/rec")
    assert secret not in str(err.value)
    with pytest.raises(ValueError) as err:
        s3_config({"AWS_ENDPOINT_URL": f"http://user:{secret}@127.0.0.1:9000"})
    assert secret not in str(err.value)


def test_s3_config_reads_the_aws_variables_and_profile(tmp_path: Path) -> None:
    assert s3_config({}) == S3Config()
    assert s3_config({"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_REGION": "eu-west-1"}) == (
        S3Config("127.0.0.1:9000", "http", "eu-west-1")
    )
    # the S3-specific variable wins; a bare loopback address is plain http, anything else https
    env = {"AWS_ENDPOINT_URL": "https://a.example", "AWS_ENDPOINT_URL_S3": "localhost:9000"}
    assert s3_config(env) == S3Config("localhost:9000", "http", None)
    assert s3_config({"AWS_ENDPOINT_URL": "minio.internal:9000"}).scheme == "https"
    assert s3_config({"AWS_DEFAULT_REGION": "us-west-2"}).region == "us-west-2"
    config = tmp_path / "config"
    config.write_text(
        "[default]\nregion = us-east-1\n\n"
        "[profile lab]\nendpoint_url = http://127.0.0.1:9100\n"
    )
    assert s3_config({"AWS_CONFIG_FILE": str(config)}) == S3Config()
    lab = {"AWS_CONFIG_FILE": str(config), "AWS_PROFILE": "lab"}
    assert s3_config(lab) == S3Config("127.0.0.1:9100", "http", None)
    assert s3_config({**lab, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"}) == S3Config()
    with pytest.raises(ValueError):
        s3_config({"AWS_ENDPOINT_URL": "http://127.0.0.1:9000/bucket"})


@pytest.mark.parametrize(
    ("message", "transient"),
    [
        ("AWS Error NETWORK_CONNECTION during PutObject operation: curlCode: 7", True),
        ("AWS Error SERVICE_UNAVAILABLE during UploadPart operation: reduce your rate", True),
        ("AWS Error SLOW_DOWN during PutObject operation", True),
        ("AWS Error INTERNAL_FAILURE during CompleteMultipartUpload operation", True),
        ("AWS Error UNKNOWN during PutObject operation: HTTP response code: 503", True),
        ("AWS Error NO_SUCH_UPLOAD during UploadPart operation", True),
        ("AWS Error NO_SUCH_BUCKET during CreateMultipartUpload operation", False),
        ("AWS Error ACCESS_DENIED during PutObject operation: Access Denied", False),
        ("AWS Error INVALID_ACCESS_KEY_ID during HeadObject operation", False),
    ],
)
def test_transient_failures_are_told_from_permanent_ones(message: str, transient: bool) -> None:
    assert objectstore.is_transient(OSError(message)) is transient
    assert objectstore.is_transient(ConnectionResetError()) is True
    assert objectstore.is_transient(FileNotFoundError("x")) is False


# -- uploads ---------------------------------------------------------------------------------


def test_pyarrow_stream_completes_what_it_has(s3: S3Server) -> None:
    """Why upload() stages and copies: pyarrow's S3 output stream, closed by ``with`` on an
    exception (or by its destructor), completes the upload with the bytes written so far."""
    fs = s3_filesystem()
    with pytest.raises(RuntimeError), fs.open_output_stream("tastyrec-test/partial") as out:
        out.write(b"x" * (7 * MiB))
        raise RuntimeError("interrupted before the last 5 MiB")
    assert fs.get_file_info("tastyrec-test/partial").size == 7 * MiB


def _writes(requests: list[Request]) -> list[Request]:
    """The writes, less pyarrow's empty directory markers (``PUT .../date=D/`` after a delete)."""
    marker = ("PUT", True)
    return [
        r
        for r in requests
        if r.method in ("PUT", "POST", "DELETE") and (r.method, r.path.endswith("/")) != marker
    ]


def test_small_file_is_one_put_large_file_a_multipart_upload_then_one_copy(
    s3: S3Server, tmp_path: Path
) -> None:
    fs = s3_filesystem()
    small, large = tmp_path / "small.parquet", tmp_path / "large.parquet"
    small_data, large_data = random_file(small, 1000), random_file(large, 12 * MiB, seed=2)
    final = "/tastyrec-test/rec/Quote/date%3D2026-12-01/a.parquet"
    with s3.recording() as requests:
        info = upload(small, "s3://tastyrec-test/rec/Quote/date=2026-12-01/a.parquet", fs=fs)
    assert info.size == 1000 and info.url.endswith("/a.parquet")
    writes = _writes(requests)
    staging = writes[0].path
    assert staging.startswith("/tastyrec-test/rec/Quote/date%3D2026-12-01/.a.parquet.")
    assert staging.endswith(".uploading")
    assert [(r.method, r.path, r.query, r.copy_source is not None) for r in writes] == [
        ("PUT", staging, "", False),
        ("PUT", final, "", True),
        ("DELETE", staging, "", False),
    ]
    assert requests[-1].method == "HEAD" and requests[-1].path == final
    assert read_object(fs, info.path) == small_data

    final = final.replace("a.parquet", "b.parquet")
    with s3.recording() as requests:
        info = upload(large, S3Location("tastyrec-test", "rec/Quote/date=2026-12-01/b.parquet"))
    writes = _writes(requests)
    staging = writes[0].path
    assert staging.endswith(".uploading")
    assert writes[0].method == "POST" and writes[0].query == "uploads"
    parts = [r for r in writes if "partNumber=" in r.query]
    assert len(parts) >= 2 and all(r.path == staging for r in parts)
    # the final key is written once, by the store's copy of the completed staging object
    assert [(r.method, r.copy_source is not None) for r in writes if r.path == final] == [
        ("PUT", True)
    ]
    assert writes[-1].method == "DELETE" and writes[-1].path == staging
    assert requests[-1].method == "HEAD" and requests[-1].path == final
    assert read_object(fs, info.path) == large_data
    assert keys_under(fs, "tastyrec-test") == [
        "tastyrec-test/rec/Quote/date=2026-12-01/a.parquet",
        "tastyrec-test/rec/Quote/date=2026-12-01/b.parquet",
    ]


def visible(keys: list[str]) -> list[str]:
    """The keys a reader sees: not the hidden staging objects an interrupted upload leaves."""
    hidden = [k for k in keys if k.rsplit("/", 1)[-1].startswith(".")]
    assert all(k.endswith(".uploading") for k in hidden)
    return [k for k in keys if k not in hidden]


def test_connection_cut_mid_upload_leaves_no_object(s3: S3Server, tmp_path: Path) -> None:
    """The server keeps its state; the client loses the connection after 6 MiB of a 16 MiB file:
    pyarrow must not complete the multipart upload with the parts that got through."""
    source = tmp_path / "big.parquet"
    random_file(source, 16 * MiB)
    with CuttingProxy(s3.port, cut_at=6 * MiB, on_cut=lambda: None) as proxy:
        fs = fs_for(proxy.endpoint, sdk_attempts=1)
        with pytest.raises(ObjectStoreError) as err:
            upload(source, "s3://tastyrec-test/rec/x.parquet", fs=fs, backoff=Backoff(attempts=1))
        assert proxy.cut.is_set()
    assert err.value.transient
    direct = s3_filesystem()
    assert direct.get_file_info("tastyrec-test/rec/x.parquet").type == pafs.FileType.NotFound
    assert visible(keys_under(direct, "tastyrec-test")) == []
    # what an interrupted attempt may leave, removed once old enough (by the injected clock);
    # one made here for sure, beside whatever pyarrow's destructor completed
    root = S3Location("tastyrec-test", "rec")
    made = objectstore.staging_path(root.join("Quote/date=2026-12-01/y.parquet"), "f00d")
    with direct.open_output_stream(made) as out:
        out.write(b"partial")
    leftovers = [k for k in keys_under(direct, "tastyrec-test") if k.endswith(".uploading")]
    assert made in leftovers
    now = datetime.now(UTC)
    assert objectstore.remove_staging_leftovers(direct, root, older_than_s=3600, now=now) == []
    later = now + timedelta(hours=2)
    removed = objectstore.remove_staging_leftovers(direct, root, older_than_s=3600, now=later)
    assert removed == leftovers
    assert [k for k in keys_under(direct, "tastyrec-test") if k.endswith(".uploading")] == []


_UPLOADER = textwrap.dedent(
    """
    import sys
    from tastyrec.objectstore import upload
    upload(sys.argv[1], sys.argv[2])
    """
)


def test_uploader_killed_mid_upload_leaves_no_object(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 of the uploading process after 6 MiB of 24 MiB went out: no object, ever."""
    source = tmp_path / "big.parquet"
    random_file(source, 24 * MiB)
    child: list[subprocess.Popen[bytes]] = []
    with CuttingProxy(s3.port, cut_at=6 * MiB, on_cut=lambda: child[0].kill()) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        child.append(
            subprocess.Popen(
                [sys.executable, "-c", _UPLOADER, str(source), "s3://tastyrec-test/rec/k.parquet"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        assert child[0].wait(timeout=WAIT_S * 3) == -signal.SIGKILL
        assert proxy.cut.is_set()
    fs = fs_for(s3.endpoint)
    assert fs.get_file_info("tastyrec-test/rec/k.parquet").type == pafs.FileType.NotFound
    assert visible(keys_under(fs, "tastyrec-test")) == []


def test_server_killed_mid_upload_then_back_the_object_arrives_once(
    s3: S3Server, tmp_path: Path
) -> None:
    source = tmp_path / "big.parquet"
    data = random_file(source, 12 * MiB)
    proxy = CuttingProxy(s3.port, cut_at=6 * MiB, on_cut=lambda: (s3.stop(), proxy.pause()))

    def back() -> None:
        s3.start()
        proxy.resume()

    # the server dies after 6 MiB; the 1st backoff wait finds it down still, the 2nd restarts it
    sleep = RecordingSleep(call2=back)
    with proxy:
        fs = fs_for(proxy.endpoint, sdk_attempts=1)
        info = upload(source, "s3://tastyrec-test/rec/o.parquet", fs=fs, sleep=sleep)
    assert proxy.cut.is_set()
    assert sleep.delays == [0.5, 1.0]
    assert info.size == 12 * MiB
    direct = fs_for(s3.endpoint)
    assert visible(keys_under(direct, "tastyrec-test")) == ["tastyrec-test/rec/o.parquet"]
    assert read_object(direct, "tastyrec-test/rec/o.parquet") == data


def test_store_down_waits_with_exponential_backoff_and_gives_up(
    s3: S3Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "f.parquet"
    random_file(source, 1000)
    s3.stop()
    sleep = RecordingSleep()
    backoff = Backoff(first_s=0.5, factor=2.0, max_s=3.0, attempts=5)
    fs = s3_filesystem(sdk_attempts=1)
    with caplog.at_level(logging.DEBUG), pytest.raises(ObjectStoreError) as err:
        upload(source, "s3://tastyrec-test/rec/f.parquet", fs=fs, backoff=backoff, sleep=sleep)
    assert sleep.delays == [0.5, 1.0, 2.0, 3.0]
    assert err.value.transient and err.value.url == "s3://tastyrec-test/rec/f.parquet"
    assert "s3://tastyrec-test/rec/f.parquet" in str(err.value)
    assert len([r for r in caplog.records if "retrying" in r.getMessage()]) == 4
    # back: the same call goes through, once
    s3.start()
    sleep = RecordingSleep()
    upload(source, "s3://tastyrec-test/rec/f.parquet", fs=fs, backoff=backoff, sleep=sleep)
    assert sleep.delays == []
    assert keys_under(fs, "tastyrec-test") == ["tastyrec-test/rec/f.parquet"]


def test_permanent_errors_are_not_retried(s3: S3Server, tmp_path: Path) -> None:
    source = tmp_path / "f.parquet"
    random_file(source, 1000)
    sleep = RecordingSleep()
    with pytest.raises(ObjectStoreError) as err:
        upload(source, "s3://no-such-bucket/rec/f.parquet", sleep=sleep)
    assert not err.value.transient and sleep.delays == []
    with pytest.raises(FileNotFoundError):
        upload(tmp_path / "missing.parquet", "s3://tastyrec-test/rec/f.parquet", sleep=sleep)
    with pytest.raises(ValueError):
        upload(source, "s3://tastyrec-test", sleep=sleep)
    with pytest.raises(ValueError):
        upload(source, str(tmp_path / "local"), sleep=sleep)


def test_secrets_never_reach_errors_logs_or_reprs(
    s3: S3Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "f.parquet"
    random_file(source, 1000)
    texts: list[str] = []
    fs = s3_filesystem(sdk_attempts=1)
    texts += [repr(fs), repr(s3_config()), repr(objectstore.fsspec_filesystem(fs))]
    # what a process pool or a Dask worker receives
    texts.append(pickle.dumps(fs).decode("latin-1"))
    with caplog.at_level(logging.DEBUG):
        for url in ("s3://no-such-bucket/rec/f.parquet", "s3://tastyrec-test/rec/f.parquet"):
            if url.startswith("s3://tastyrec-test"):
                s3.stop()
            with pytest.raises(ObjectStoreError) as err:
                upload(source, url, fs=fs, backoff=Backoff(attempts=3), sleep=lambda _: None)
            texts += [str(err.value), repr(err.value), repr(err.value.__cause__)]
        with pytest.raises(ObjectStoreError) as err:
            objectstore.list_parquet(fs, S3Location("tastyrec-test", "rec"))
        texts.append(str(err.value))
    # an error text that echoes a credential (as a server's may) is redacted
    echo = ObjectStoreError(f"denied for {SECRETS[0]} / {SECRETS[1]}")
    texts += [str(echo), repr(echo)]
    texts.append(caplog.text)
    assert "retrying" in caplog.text and "no-such-bucket" in "".join(texts)
    for secret in SECRETS:
        for text in texts:
            assert secret not in text
    assert "***" in str(echo)


# -- listing and reading ---------------------------------------------------------------------

DAYS = ("2026-12-01", "2026-12-02", "2026-12-03")
ROOT = S3Location("tastyrec-test", "rec")


def write_recording(fs: pafs.S3FileSystem, tmp_path: Path, rows: int) -> dict[str, int]:
    """Quote and Trade files for three days (two Quote files a day), uploaded under ``ROOT``,
    with journal and sessions bookkeeping beside them. Returns the Quote rows per day."""
    counts: dict[str, int] = {}
    for n, day in enumerate(DAYS):
        for event_type, files in (("Quote", 2), ("Trade", 1)):
            for seq in range(files):
                k = rows * (n + 1) + seq
                rng = np.random.default_rng(n * 10 + seq)
                table = pa.table(
                    {
                        "eventSymbol": pa.array(np.where(np.arange(k) % 2 == 0, "SPY", "QQQ")),
                        "bidPrice": pa.array(rng.random(k)),
                    }
                )
                local = tmp_path / f"{event_type}-{day}-{seq}.parquet"
                pq.write_table(table, local, row_group_size=max(k // 4, 1))
                upload(local, ROOT.join(event_type, f"date={day}", f"s1-{seq:05d}.parquet"), fs=fs)
                if event_type == "Quote":
                    counts[day] = counts.get(day, 0) + k
    (tmp_path / "journal.arrows").write_bytes(b"journal")
    upload(tmp_path / "journal.arrows", ROOT.join("_journal/Quote/date=2026-12-03/x.arrows"), fs=fs)
    upload(tmp_path / "journal.arrows", ROOT.join("_sessions/s1.parquet"), fs=fs)
    return counts


def test_listing_walks_prefixes_not_the_bucket(s3: S3Server, tmp_path: Path) -> None:
    fs = s3_filesystem()
    write_recording(fs, tmp_path, rows=10)
    everything = objectstore.list_parquet(fs, ROOT)
    assert len(everything) == 9
    assert not any("/_" in i.path for i in everything)
    day = date(2026, 12, 2)
    with s3.recording() as requests:
        one_day = objectstore.list_parquet(fs, ROOT, ["Quote"], day, day)
    assert [i.path.rsplit("/", 2)[1:] for i in one_day] == [
        ["date=2026-12-02", "s1-00000.parquet"],
        ["date=2026-12-02", "s1-00001.parquet"],
    ]
    assert [(r.method, r.path) for r in requests] == [("GET", "/tastyrec-test")]
    assert "prefix=rec%2FQuote%2Fdate%3D2026-12-02%2F" in requests[0].query
    assert "delimiter=%2F" in requests[0].query
    with s3.recording() as requests:
        since = objectstore.list_parquet(fs, ROOT, ["Trade"], start=date(2026, 12, 2))
    assert [i.path.split("/")[3] for i in since] == ["date=2026-12-02", "date=2026-12-03"]
    listed = sorted(r.query.split("prefix=")[1] for r in requests)
    assert listed == [
        "rec%2FTrade%2F",
        "rec%2FTrade%2Fdate%3D2026-12-02%2F",
        "rec%2FTrade%2Fdate%3D2026-12-03%2F",
    ]
    assert objectstore.list_parquet(fs, S3Location("tastyrec-test", "nothing-here")) == []


def _bytes_read(requests: list, partition: str) -> int:
    total = 0
    for r in requests:
        if r.method == "GET" and partition in r.path and r.range:
            first, last = r.range.removeprefix("bytes=").split("-")
            total += int(last) - int(first) + 1
        elif r.method == "GET" and partition in r.path:
            raise AssertionError(f"a whole-object GET of {r.path}")
    return total


def test_duckdb_reads_s3_without_httpfs_and_prunes_partitions(
    s3: S3Server, tmp_path: Path
) -> None:
    fs = s3_filesystem()
    counts = write_recording(fs, tmp_path, rows=50_000)
    con = duckdb.connect()
    objectstore.register_duckdb(con, fs)
    objectstore.register_duckdb(con, fs)  # idempotent
    loaded = con.sql("select extension_name from duckdb_extensions() where loaded").fetchall()
    assert ("httpfs",) not in loaded
    # the date in the path: only that partition is listed and read
    with s3.recording() as requests:
        got = con.sql(
            "select date, count(*) from read_parquet("
            "'s3://tastyrec-test/rec/Quote/date=2026-12-02/*.parquet', hive_partitioning=true) "
            "group by all"
        ).fetchall()
    assert got == [(date(2026, 12, 2), counts["2026-12-02"])]
    touched = {r.path for r in requests if "date" in r.path}
    assert touched and all("date%3D2026-12-02" in p for p in touched)
    # a glob over every day and a WHERE on the partition column: the pruned days' files are not
    # read, except the glob's first file, from which DuckDB binds the schema (its footer; the whole
    # file when it is small). The recorder's readers pass file lists from list_parquet instead.
    sizes = {i.path: i.size for i in objectstore.list_parquet(fs, ROOT, ["Quote"])}
    with s3.recording() as requests:
        got = con.sql(
            "select count(*), sum(bidPrice) > 0 from read_parquet("
            "'s3://tastyrec-test/rec/Quote/*/*.parquet', hive_partitioning=true) "
            "where date = '2026-12-03'"
        ).fetchall()
    assert got == [(counts["2026-12-03"], True)]
    first = "/tastyrec-test/rec/Quote/date%3D2026-12-01/s1-00000.parquet"
    read = {r.path for r in requests if r.method == "GET" and r.range}
    assert {p for p in read if "date%3D2026-12-03" not in p} == {first}
    assert _bytes_read(requests, "date%3D2026-12-03") > 0
    assert _bytes_read(requests, "date%3D2026-12-02") == 0
    # the same files on local disk give the same answer
    local = tmp_path / "local"
    for path in sizes:
        target = local / path.removeprefix("tastyrec-test/rec/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(read_object(fs, path))
    assert con.sql(
        f"select count(*) from read_parquet('{local}/Quote/*/*.parquet', hive_partitioning=true)"
    ).fetchall() == [(sum(counts.values()),)]


def test_pyarrow_dataset_and_polars_read_one_day(s3: S3Server, tmp_path: Path) -> None:
    fs = s3_filesystem()
    counts = write_recording(fs, tmp_path, rows=1000)
    day = date(2026, 12, 2)
    with s3.recording() as requests:
        dataset = objectstore.dataset(fs, ROOT, "Quote", day, day)
        table = dataset.to_table(filter=pc.field("date") == "2026-12-02")
    assert table.num_rows == counts["2026-12-02"]
    assert all("2026-12-02" in r.path or "2026-12-02" in r.query for r in requests)
    # every day listed by pyarrow, one day read
    dataset = objectstore.dataset(fs, ROOT, "Quote")
    with s3.recording() as requests:
        frame = pl.scan_pyarrow_dataset(dataset).filter(pl.col("date") == "2026-12-03").collect()
    assert frame.height == counts["2026-12-03"]
    assert frame["date"].unique().to_list() == ["2026-12-03"]
    reads = [r for r in requests if r.method == "GET" and "date%3D" in r.path]
    assert reads and all("date%3D2026-12-03" in r.path for r in reads)


_PROFILE_UPLOAD = textwrap.dedent(
    """
    import sys
    from tastyrec.objectstore import Backoff, upload
    print(upload(sys.argv[1], sys.argv[2], backoff=Backoff(attempts=1)).url)
    """
)


def test_credentials_and_endpoint_from_an_aws_profile(tmp_path: Path) -> None:
    """A server that checks signatures (moto with IAM auth on): ``AWS_PROFILE`` picks the
    credentials in the shared credentials file (read by pyarrow's SDK) and the endpoint in the
    config file (read by s3_config); a wrong secret is a permanent error that does not repeat it.
    A fresh process each time: the SDK reads the AWS files once per process."""

    # the first 4 requests are not checked: the bucket, then the IAM user, policy and key
    with running_s3_server(tmp_path, env={"INITIAL_NO_AUTH_ACTION_COUNT": "4"}) as server:
        key = iam_access_key(server, "recorder")
        wrong = "wrong-secret-Mm3Nn5Pp7Qq9"
        credentials = tmp_path / "credentials"
        credentials.write_text(
            f"[lab]\naws_access_key_id = {key['AccessKeyId']}\n"
            f"aws_secret_access_key = {key['SecretAccessKey']}\n\n"
            f"[bad]\naws_access_key_id = {key['AccessKeyId']}\naws_secret_access_key = {wrong}\n"
        )
        config = tmp_path / "config"
        config.write_text(
            "".join(
                f"[profile {name}]\nendpoint_url = {server.endpoint}\nregion = us-east-1\n"
                for name in ("lab", "bad")
            )
        )
        source = tmp_path / "f.parquet"
        random_file(source, 1000)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env |= {
            "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
            "AWS_CONFIG_FILE": str(config),
            "AWS_EC2_METADATA_DISABLED": "true",
        }

        def run(profile: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-c", _PROFILE_UPLOAD, str(source), "s3://tastyrec-test/p/f"],
                env={**env, "AWS_PROFILE": profile},
                capture_output=True,
                text=True,
                timeout=WAIT_S * 3,
                check=False,
            )

        good = run("lab")
        assert good.returncode == 0, good.stderr
        assert good.stdout.strip() == "s3://tastyrec-test/p/f"
        bad = run("bad")
        assert bad.returncode == 1
        assert "ObjectStoreError" in bad.stderr and "SIGNATURE_DOES_NOT_MATCH" in bad.stderr
        assert wrong not in bad.stderr + bad.stdout
        assert key["SecretAccessKey"] not in good.stderr + good.stdout + bad.stderr + bad.stdout


def test_duckdb_symbol_filter_reads_only_matching_row_groups(s3: S3Server, tmp_path: Path) -> None:
    """A file sorted by symbol (as compaction writes them): a query for one symbol fetches the
    footer and that symbol's row groups, not the file -- Parquet statistics over ranged GETs."""
    fs = s3_filesystem()
    symbols = ["AAPL", "MSFT", "QQQ", "SPY"]
    per_symbol = 250_000
    rng = np.random.default_rng(7)
    table = pa.table(
        {
            "eventSymbol": pa.array(np.repeat(symbols, per_symbol)),
            "bidPrice": pa.array(rng.random(per_symbol * len(symbols))),
        }
    )
    local = tmp_path / "sorted.parquet"
    pq.write_table(table, local, row_group_size=per_symbol)
    info = upload(local, ROOT.join("Quote/date=2026-12-01/s1-00000.parquet"), fs=fs)
    con = duckdb.connect()
    objectstore.register_duckdb(con, fs)
    with s3.recording() as requests:
        got = con.sql(
            f"select count(*), sum(bidPrice) > 0 from read_parquet('{info.url}') "
            "where eventSymbol = 'QQQ'"
        ).fetchall()
    assert got == [(per_symbol, True)]
    read = _bytes_read(requests, "s1-00000.parquet")
    assert 0 < read < info.size / 2, (read, info.size)
