"""The compaction lease on object storage (``_compact.lock``, :mod:`tastyrec.query._compact_s3`):
taken with S3 conditional writes against a real S3-compatible server (moto) on 127.0.0.1.

Races are released at one moment by a barrier; the compaction that wins then waits (bounded) for
the loser's answer before it goes on, so "exactly one runs" does not depend on which one is
faster. Lease expiry is judged on an injected clock, never the machine's.
"""

from __future__ import annotations

import http.client
import http.server
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

import tastyrec
from tastyrec import catalog, objectstore
from tastyrec.exceptions import StorageError
from tastyrec.objectstore import ObjectStoreError, S3Config, S3Location
from tastyrec.query import _compact as compaction
from tastyrec.query._compact_s3 import LEASE, LOCK_NAME, compact_s3
from tests.integration.s3server import FAKE_ENV, WAIT_S, S3Server

SAMPLE = Path(__file__).parent.parent / "data" / "sample"
TYPES = ["Quote", "Trade"]
T0 = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)
SECRETS = (
    FAKE_ENV["AWS_SECRET_ACCESS_KEY"],
    FAKE_ENV["AWS_SESSION_TOKEN"],
    FAKE_ENV["AWS_ACCESS_KEY_ID"],
)


class Clock:
    """A clock a test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def root(s3: S3Server) -> S3Location:
    """The sample recording's Quote and Trade files (three files a partition) in the bucket."""
    loc = S3Location(s3.bucket, "rec")
    fs = objectstore.s3_filesystem()
    for event_type in TYPES:
        for file in sorted((SAMPLE / event_type).rglob("*.parquet")):
            objectstore.upload(file, loc.join(file.relative_to(SAMPLE).as_posix()), fs=fs)
    return loc


def run(
    root: S3Location,
    clock: Callable[[], datetime] | None = None,
    progress: Callable[[compaction.CompactionResult], None] | None = None,
) -> list[compaction.CompactionResult]:
    """compact_s3 of the Quote and Trade partitions on ``clock`` (:data:`T0` by default)."""
    return compact_s3(
        root,
        day=None,
        event_types=TYPES,
        max_rows=compaction.DEFAULT_MAX_ROWS,
        row_group_rows=compaction.ROW_GROUP_ROWS,
        progress=progress,
        now=clock or Clock(),
    )


def lock(root: S3Location) -> S3Location:
    return root.join(LOCK_NAME)


def read_lease(root: S3Location) -> tuple[dict[str, str], str] | None:
    found = objectstore.get_bytes(objectstore.s3_client(), lock(root))
    return None if found is None else (json.loads(found[0]), found[1])


def put_lease(root: S3Location, owner: str, expires: datetime) -> str:
    body = json.dumps({"owner": owner, "expires": expires.isoformat()}).encode()
    return objectstore.put_bytes(objectstore.s3_client(), lock(root), body)


def files(root: S3Location, event_type: str) -> list[str]:
    return [
        i.path
        for i in objectstore.list_parquet(objectstore.s3_filesystem(), root, [event_type])
    ]


def rows(where: str | Path, event_type: str) -> pl.DataFrame:
    con = tastyrec.connect(where)
    frame = pl.from_arrow(con.sql(f'SELECT * FROM "{event_type}"').to_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame.sort(pl.all())


def assert_compacted(root: S3Location) -> None:
    for event_type in TYPES:
        (merged,) = files(root, event_type)
        assert catalog.is_compacted(merged)
        assert rows(root.url, event_type).equals(rows(SAMPLE, event_type))


@pytest.mark.parametrize("before", ["no lease", "a stale lease"])
def test_two_compactions_racing_exactly_one_runs(root: S3Location, before: str) -> None:
    clock = Clock()
    if before == "a stale lease":  # both read it, both try to replace it: one If-Match wins
        put_lease(root, "dead", T0 - timedelta(seconds=1))
    barrier = threading.Barrier(2, timeout=WAIT_S)
    loser_answered = threading.Event()
    outcomes: dict[str, object] = {}

    def winner_waits(result: compaction.CompactionResult) -> None:
        # the lease is held: the other compaction must be refused meanwhile
        assert loser_answered.wait(WAIT_S), "the other compaction neither ran nor was refused"

    def compaction_thread(name: str) -> None:
        barrier.wait()
        try:
            outcomes[name] = run(root, clock, winner_waits)
        except StorageError as exc:
            outcomes[name] = exc
            loser_answered.set()

    threads = [threading.Thread(target=compaction_thread, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S * 3)
        assert not thread.is_alive()
    errors = [o for o in outcomes.values() if isinstance(o, StorageError)]
    results = [o for o in outcomes.values() if isinstance(o, list)]
    assert len(errors) == 1 and len(results) == 1, outcomes
    message = str(errors[0])
    assert "another `tastyrec compact` holds the lease" in message
    assert f"{root.url}/{LOCK_NAME}" in message and "wait for it to finish" in message
    assert [r.event_type for r in results[0]] == TYPES
    assert read_lease(root) is None  # released at the end
    assert_compacted(root)


def test_a_live_lease_is_respected(root: S3Location) -> None:
    etag = put_lease(root, "other", T0 + timedelta(minutes=30))
    before = {t: files(root, t) for t in TYPES}
    with pytest.raises(StorageError, match="holds the lease .* until 2026-12-07 15:30:00 UTC"):
        run(root, Clock())
    assert read_lease(root) == ({"owner": "other", "expires": "2026-12-07T15:30:00+00:00"}, etag)
    assert {t: files(root, t) for t in TYPES} == before


@pytest.mark.parametrize("body", ["expired", "unreadable"])
def test_a_stale_lease_is_taken_over(
    root: S3Location, body: str, caplog: pytest.LogCaptureFixture
) -> None:
    if body == "expired":
        put_lease(root, "dead", T0 - timedelta(seconds=1))
    else:
        objectstore.put_bytes(objectstore.s3_client(), lock(root), b"\x00 not json")
    held: list[dict[str, str]] = []

    def look(result: compaction.CompactionResult) -> None:
        lease = read_lease(root)
        assert lease is not None
        held.append(lease[0])

    with caplog.at_level(logging.WARNING, "tastyrec"):
        results = run(root, Clock(), look)
    assert len(results) == 2
    assert "took over the compaction lease" in caplog.text
    # this run's lease while it ran: its own token, an hour from the (injected) clock
    assert [h["expires"] for h in held] == [(T0 + LEASE).isoformat()] * 2
    assert held[0]["owner"] not in ("dead", "") and held[0] == held[1]
    assert read_lease(root) is None
    assert_compacted(root)


def test_the_lease_is_released_after_a_failure(
    root: S3Location, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(step: str) -> None:
        if step == "s3-upload":
            raise StorageError("the store broke mid-compaction")

    monkeypatch.setattr(compaction, "_step_hook", fail)
    before = {t: files(root, t) for t in TYPES}
    with pytest.raises(StorageError, match="broke mid-compaction"):
        run(root, Clock())
    assert read_lease(root) is None
    assert {t: files(root, t) for t in TYPES} == before
    monkeypatch.setattr(compaction, "_step_hook", None)
    run(root, Clock())  # the next run takes the lease at once
    assert_compacted(root)


def expiries_at_half_an_hour_per_partition(root: S3Location) -> list[str]:
    """Compact ``root`` with each partition taking half the lease's life (injected clock);
    the lease's expiry seen after each partition."""
    clock = Clock()
    seen: list[str] = []

    def half_an_hour_per_partition(result: compaction.CompactionResult) -> None:
        lease = read_lease(root)
        assert lease is not None
        seen.append(lease[0]["expires"])
        clock.now += LEASE / 2

    run(root, clock, half_an_hour_per_partition)
    return seen


def test_a_long_compaction_renews_its_lease(root: S3Location) -> None:
    seen = expiries_at_half_an_hour_per_partition(root)
    # renewed before the second partition: an hour from then
    assert seen == [(T0 + LEASE).isoformat(), (T0 + LEASE / 2 + LEASE).isoformat()]
    assert read_lease(root) is None


def test_a_compaction_that_lost_its_lease_stops_and_leaves_the_new_one(root: S3Location) -> None:
    clock = Clock()

    def stalled_then_taken_over(result: compaction.CompactionResult) -> None:
        clock.now += LEASE + timedelta(minutes=1)  # stalled past the expiry...
        put_lease(root, "newcomer", clock.now + LEASE)  # ...and another run took over

    with pytest.raises(StorageError, match="lost its lease") as err:
        run(root, clock, stalled_then_taken_over)
    assert "run `tastyrec compact` again" in str(err.value)
    lease = read_lease(root)
    assert lease is not None and lease[0]["owner"] == "newcomer"  # not deleted
    assert len(files(root, "Quote")) == 1 and len(files(root, "Trade")) == 3


class NoConditionalWrites:
    """An HTTP proxy in front of the store that answers a PUT or DELETE carrying one of the
    ``refuse`` headers with 501 NotImplemented (as stores without conditional writes do) and
    forwards everything else."""

    def __init__(
        self, upstream_port: int, refuse: tuple[str, ...] = ("If-None-Match", "If-Match")
    ) -> None:
        refused: list[str] = []
        self.refused = refused

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.command in ("PUT", "DELETE") and any(h in self.headers for h in refuse):
                    refused.append(self.command)
                    error = (
                        b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NotImplemented"
                        b"</Code><Message>A header you provided implies functionality that is"
                        b" not implemented</Message></Error>"
                    )
                    self.send_response(501)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(error)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=WAIT_S)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    headers["Host"] = f"127.0.0.1:{upstream_port}"
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_DELETE = do_HEAD = do_POST = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(WAIT_S)


@pytest.fixture
def refused(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """The conditional headers the store refuses (``("If-None-Match", "If-Match")`` unless a
    test parametrizes it indirectly)."""
    return getattr(request, "param", ("If-None-Match", "If-Match"))


@pytest.fixture
def no_conditional_writes(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch, refused: tuple[str, ...]
) -> Iterator[list[str]]:
    """The lease's client talks to the store through :class:`NoConditionalWrites` (the data
    goes directly); yields the list of refused requests."""
    proxy = NoConditionalWrites(s3.port, refused)
    real = objectstore.s3_client
    through = S3Config(endpoint_override=f"127.0.0.1:{proxy.port}", scheme="http")
    monkeypatch.setattr(objectstore, "s3_client", lambda *a, **k: real(through))
    try:
        yield proxy.refused
    finally:
        proxy.close()


def test_a_store_without_conditional_writes_gets_the_weaker_lease_with_a_warning(
    root: S3Location, no_conditional_writes: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "tastyrec"):
        results = run(root, Clock())
    assert len(results) == 2
    assert no_conditional_writes[0] == "PUT"  # If-None-Match refused: fell back
    warning = caplog.text
    assert "does not support conditional writes" in warning
    assert "two compactions started at the same instant can both run" in warning
    assert read_lease(root) is None  # released (unconditionally) all the same
    assert_compacted(root)


def test_a_live_lease_is_respected_without_conditional_writes(
    root: S3Location, no_conditional_writes: list[str]
) -> None:
    put_lease(root, "other", T0 + timedelta(minutes=30))
    with pytest.raises(StorageError, match="holds the lease"):
        run(root, Clock())
    lease = read_lease(root)
    assert lease is not None and lease[0]["owner"] == "other"


@pytest.mark.parametrize("refused", [("If-Match",)], indirect=True)
def test_a_store_without_if_match_refuses_to_take_over_a_stale_lease_and_says_what_to_do(
    root: S3Location, no_conditional_writes: list[str]
) -> None:
    etag = put_lease(root, "dead", T0 - timedelta(seconds=1))
    with pytest.raises(StorageError, match="cannot replace it atomically") as err:
        run(root, Clock())
    assert "delete that object if no compaction is running" in str(err.value)
    assert no_conditional_writes == ["PUT"]
    lease = read_lease(root)
    assert lease is not None and lease == ({"owner": "dead", "expires": lease[0]["expires"]}, etag)


@pytest.mark.parametrize("refused", [("If-Match",)], indirect=True)
def test_a_store_without_if_match_still_renews_and_releases_the_lease(
    root: S3Location, no_conditional_writes: list[str]
) -> None:
    seen = expiries_at_half_an_hour_per_partition(root)
    assert seen == [(T0 + LEASE).isoformat(), (T0 + LEASE / 2 + LEASE).isoformat()]
    assert no_conditional_writes == ["PUT", "DELETE"]  # the renewal's and the release's If-Match
    assert read_lease(root) is None


def test_the_client_keeps_secrets_out_of_errors_logs_and_reprs(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client = objectstore.s3_client(sdk_attempts=1)
    texts = [repr(client), repr(client.meta), repr(objectstore.s3_config())]
    loc = S3Location(s3.bucket, "rec/x")
    with caplog.at_level(logging.DEBUG, "tastyrec"):
        with pytest.raises(ObjectStoreError) as err:
            objectstore.put_if(client, S3Location("no-such-bucket", "x"), b"x")
        texts += [str(err.value), repr(err.value)]
        assert "no-such-bucket" in str(err.value) and not err.value.transient
        s3.stop()
        for call in (
            lambda: objectstore.put_if(client, loc, b"x"),
            lambda: objectstore.get_bytes(client, loc),
            lambda: objectstore.delete_if(client, loc, '"x"'),
        ):
            with pytest.raises(ObjectStoreError) as err:
                call()
            assert err.value.transient, err.value
            texts += [str(err.value), repr(err.value), repr(err.value.__cause__)]
        monkeypatch.setenv("AWS_PROFILE", "nowhere")
        with pytest.raises(ObjectStoreError, match="nowhere") as err:
            objectstore.s3_client()
        texts.append(str(err.value))
    texts.append(caplog.text)
    for secret in SECRETS:
        for text in texts:
            assert secret not in text


def test_the_lease_is_refused_cleanly_when_the_store_is_down(s3: S3Server) -> None:
    s3.stop()
    with pytest.raises(ObjectStoreError, match=f"writing s3://{s3.bucket}/rec/{LOCK_NAME}"):
        run(S3Location(s3.bucket, "rec"), Clock())


def test_compact_cli_in_a_profile_only_environment(
    root: S3Location, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``tastyrec compact s3://`` as a subprocess whose keys come from a profile only."""
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[p]\n"
        f"aws_access_key_id = {FAKE_ENV['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {FAKE_ENV['AWS_SECRET_ACCESS_KEY']}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_PROFILE="p",
        AWS_SHARED_CREDENTIALS_FILE=str(credentials),
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ENDPOINT_URL=objectstore.s3_client().meta.endpoint_url,
    )
    proc = subprocess.run(
        [sys.executable, "-m", "tastyrec", "compact", root.url],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert_compacted(root)
    assert read_lease(root) is None


def test_compact_cli_refused_by_a_live_lease_says_why(root: S3Location) -> None:
    # the CLI judges expiry on the real clock: a lease a day ahead of it is live for this test
    put_lease(root, "other", datetime.now(UTC) + timedelta(days=1))
    proc = subprocess.run(
        [sys.executable, "-m", "tastyrec", "compact", root.url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "another `tastyrec compact` holds the lease" in proc.stderr
    assert f"{root.url}/{LOCK_NAME}" in proc.stderr and "Traceback" not in proc.stderr
    lease = read_lease(root)
    assert lease is not None and lease[0]["owner"] == "other"
