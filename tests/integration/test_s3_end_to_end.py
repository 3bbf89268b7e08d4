"""One recording's whole life on object storage, with real processes: record into ``s3://``, the
store's process is killed in the middle of an upload, the recorder is killed (``kill -9``) with a
backlog, the store is restarted, ``tastyrec recover`` uploads the backlog, then the recording
is queried, replayed, compacted and queried again -- every row journaled before the kill arrives
exactly once, at every stage (issue 19's "Tests run against a real S3-compatible server").

The parts, all real:

* the store: moto's S3 server, a subprocess on 127.0.0.1 (``tests/integration/s3server.py``)
  whose objects survive a kill (``S3Server(persistent=True)``: every completed write is kept,
  ``tests/integration/moto_persistent.py``), reached through a
  :class:`~tests.integration.s3server.CuttingProxy`. The outage is real: when the uploads have
  sent an exact number of bytes after the proxy is armed (inside the staging PUT's body of the
  first upload), the proxy stops listening and moto's process is SIGKILLed; later a new moto
  process starts on the same port with what the old one had completed, and the proxy listens
  again. The proxy only places the kill at an exact byte (a fault, not a race). moto's own
  request recorder cannot carry the store over a restart (measured with moto 5.2.6, pyarrow 26:
  pyarrow's PUTs are ``Transfer-Encoding: chunked`` with no ``Content-Length``, and the
  recorder, which reads a body by ``Content-Length`` only, records them empty -- replayed, every
  uploaded file is 0 bytes, and so is its server-side copy; a multipart upload's parts name an
  ``uploadId`` the replayed server does not know), hence
  moto_persistent.py, itself checked by
  :func:`test_persistent_moto_keeps_completed_writes_across_a_kill`. A second scenario,
  :func:`test_moto_killed_mid_upload_and_restarted_the_recorder_uploads_everything_once`, kills
  and restarts moto under a recorder that stays up (its uploader's retries carry the backlog);
* the recorder: a subprocess (:data:`DRIVER`) running :class:`~tastyrec.record.recorder.Recorder`
  with ``out="s3://…"``, a local journal dir, small rotations and ``fsync="always"``, its
  DXLinkStreamer connected to a simulator in the same process (dropped once, so the session has
  a gap to record), fed numbered Quote and Trade events through :meth:`Recorder.record` on the
  test's command. Why not ``tastyrec record --demo``: the simulator's rows carry no unique key,
  so "none twice, none missing" could only be checked file by file against the journal; here
  every row has one (its type and ``sequence``, numbered 0, 1, 2... by the driver), and the
  driver acknowledges ("journaled N") only once the recorder has appended all N rows to its
  journal (``stats.rows``): a ``kill -9`` loses no appended row (the page cache survives the
  process), so every acknowledged row must arrive, and what the journal dir held at the kill
  (read back with the journal reader) is the exact set that must arrive;
* ``tastyrec recover``, ``tastyrec sql`` and ``tastyrec compact``: the command line, as
  subprocesses; ``tastyrec.connect`` and ``ReplayStreamer`` in this process.

Every wait is bounded (a failure, never the pass, depends on it); nothing sleeps "long enough".
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

import tastyrec
from tastyrec import catalog
from tastyrec.events import Quote, Trade
from tastyrec.objectstore import S3Location, s3_client, s3_filesystem, upload
from tastyrec.replay import ReplayStreamer
from tastyrec.storage.journal import read_segment
from tastyrec.storage.layout import parquet_for_journal
from tests.integration.conftest import Proc
from tests.integration.s3server import FAKE_ENV, CuttingProxy, S3Server
from tests.integration.waits import WAIT_S, wait_until_sync

logger = logging.getLogger(__name__)

BUCKET = "tastyrec-test"
PREFIX = "e2e/desk"
DEST = f"s3://{BUCKET}/{PREFIX}"
TYPES = ("Quote", "Trade")
#: rows of each type per file (the recorder's rotation); a chunk of the driver's is one file each
ROWS_PER_FILE = 300
#: the outage begins this many bytes into the first upload after it is armed: past the request
#: line and headers of the staging PUT (about 1.5 kB), inside its body (a file is ~10 kB)
CUT_INTO = 4_000

DRIVER = r"""
import itertools, sys
import anyio
from tastyrec.dxlink.streamer import DXLinkStreamer
from tastyrec.events import Quote, Trade
from tastyrec.record.recorder import Recorder
from tastyrec.record.sink import RotationPolicy
from tastyrec.record.upload import UploadRetry
from tastyrec.sim import Simulator

SYMBOLS = ("SPY", "QQQ", "AAPL")


def event(n):
    # even numbers are Quotes, odd ones Trades; `sequence` is the row's unique key
    symbol = SYMBOLS[(n // 2) % len(SYMBOLS)]
    price = 100.0 + n / 1000
    if n % 2 == 0:
        return Quote(
            event_symbol=symbol, event_time=0, sequence=n, time_nano_part=0, bid_time=0,
            bid_exchange_code="Q", ask_time=0, ask_exchange_code="Q", bid_price=price,
            ask_price=price + 0.01, bid_size=float(n % 97), ask_size=float(n % 89),
        )
    return Trade(
        event_symbol=symbol, event_time=0, time=0, time_nano_part=0, sequence=n,
        exchange_code="Q", day_id=0, tick_direction="UP", extended_trading_hours=False,
        price=price, change=0.0, size=float(n % 101), day_volume=float(n), day_turnover=0.0,
    )


def say(*words):
    print(*words, flush=True)


async def main(dest, journal, rows_per_file):
    fed = 0
    async with Simulator(token=None) as sim:
        streamer = DXLinkStreamer(
            url=sim.url, token=None, reconnect_delays=lambda: itertools.repeat(0.05)
        )
        async with streamer:
            recorder = Recorder(
                dest, streamer, journal=journal, fsync="always",
                rotation=RotationPolicy(max_rows=rows_per_file),
                upload_retry=UploadRetry(first_s=0.05, max_s=0.2),
            )
            async with recorder:
                say("ready", recorder.session_id)
                while True:
                    line = await anyio.to_thread.run_sync(sys.stdin.readline)
                    command, *args = line.split() or ["eof"]
                    if command == "files":  # this many files of each type, one at a time
                        for _ in range(int(args[0])):
                            n = 2 * rows_per_file
                            recorder.record_many(event(i) for i in range(fed, fed + n))
                            fed += n
                            with anyio.fail_after(20):  # journaled: appended to the journal
                                while sum(recorder.stats.rows.values()) < fed:
                                    await anyio.sleep(0.01)
                        assert recorder.stats.bad == 0
                        say("journaled", fed)
                    elif command == "rows":  # rows into the open files, journaled
                        n = int(args[0])
                        recorder.record_many(event(i) for i in range(fed, fed + n))
                        fed += n
                        with anyio.fail_after(20):
                            while sum(recorder.stats.rows.values()) < fed:
                                await anyio.sleep(0.01)
                        say("journaled", fed)
                    elif command == "more":  # handed over, not waited for
                        n = int(args[0])
                        recorder.record_many(event(i) for i in range(fed, fed + n))
                        fed += n
                        say("fed", fed)
                    elif command == "backlog":  # the uploader's counters
                        up = recorder.stats.upload
                        say("backlog", up.files, up.failures, up.uploaded_files)
                    elif command == "drop":  # a disconnect: the session's gap
                        await sim.drop()
                        with anyio.fail_after(20):
                            while not (streamer.gaps and streamer.gaps[-1].resumed_ns):
                                await anyio.sleep(0.01)
                        say("gap", len(streamer.gaps))
                    else:
                        say("bye", command)
                        return


anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
"""


# --- helpers ---------------------------------------------------------------------------------


class Driver:
    """The recording subprocess: commands on its stdin, answers read from its stdout file."""

    def __init__(self, workdir: Path, journal: Path, env: dict[str, str]) -> None:
        out, err = workdir / "driver.stdout", workdir / "driver.stderr"
        with open(out, "wb") as fo, open(err, "wb") as fe:
            popen = subprocess.Popen(
                [sys.executable, "-c", DRIVER, DEST, str(journal), str(ROWS_PER_FILE)],
                stdin=subprocess.PIPE,
                stdout=fo,
                stderr=fe,
                env=env,
                cwd=workdir,
            )
        self.proc = Proc(popen, out, err)
        self.answers = 0
        self.session_id = ""

    def ready(self) -> None:
        self.session_id = self.answer("ready")

    def answer(self, word: str) -> str:
        """The next answer line, which must start with ``word``; returns the rest."""
        n = self.answers + 1
        lines = self.proc.wait_for(
            f"the driver's answer {word!r}",
            # complete lines only: a line being written may be read half-way
            lambda: (lines := self.proc.stdout.split("\n")[:-1]) and len(lines) >= n and lines,
            timeout=WAIT_S,
        )
        self.answers = n
        got, _, rest = lines[n - 1].partition(" ")
        assert got == word, (lines[n - 1], self.proc.stderr)
        return rest

    def send(self, command: str, answer: str) -> str:
        assert self.proc.popen.stdin is not None
        self.proc.popen.stdin.write(f"{command}\n".encode())
        self.proc.popen.stdin.flush()
        return self.answer(answer)

    def kill(self) -> None:
        """``kill -9``."""
        self.proc.popen.send_signal(signal.SIGKILL)
        assert self.proc.wait(WAIT_S) == -signal.SIGKILL
        self.close()

    def close(self) -> None:
        if self.proc.alive():
            self.proc.popen.kill()
            self.proc.popen.wait(WAIT_S)
        assert self.proc.popen.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.popen.stdin.close()


@pytest.fixture
def start_driver(tmp_path: Path) -> Iterator[Callable[[Path, dict[str, str]], Driver]]:
    """Starts the recording subprocess (waits until it records); kills it at teardown."""
    started: list[Driver] = []

    def start(journal: Path, env: dict[str, str]) -> Driver:
        started.append(Driver(tmp_path, journal, env))
        started[-1].ready()
        return started[-1]

    yield start
    for driver in started:
        driver.close()


def poll(what: str, predicate: Callable[[], Any], proc: Proc | None = None) -> Any:
    """Wait (bounded) until ``predicate()`` is truthy; fail if ``proc`` exits first."""
    if proc is not None:
        return proc.wait_for(what, predicate, timeout=WAIT_S)
    return wait_until_sync(what, predicate)


def objects(fs: pafs.S3FileSystem) -> dict[str, int]:
    """Every object under the recording's prefix: key relative to it -> size."""
    root = S3Location(BUCKET, PREFIX).path
    selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    return {
        i.path.removeprefix(root + "/"): i.size
        for i in fs.get_file_info(selector)
        if i.type == pafs.FileType.File and i.size  # not the zero-byte folder markers
    }


def data_keys(keys: dict[str, int] | list[str]) -> list[str]:
    return sorted(k for k in keys if k.split("/")[0] in TYPES and not hidden(k))


def hidden(key: str) -> bool:
    return key.rsplit("/", 1)[-1].startswith(".")


def read_object(fs: pafs.S3FileSystem, key: str) -> pa.Table:
    with fs.open_input_file(S3Location(BUCKET, PREFIX).join(*key.split("/")).path) as fh:
        return pq.ParquetFile(fh).read()


def waiting(journal: Path) -> list[str]:
    """Data files in the journal dir waiting for upload (relative paths)."""
    return sorted(
        p.relative_to(journal).as_posix()
        for t in TYPES
        for p in journal.glob(f"{t}/date=*/*.parquet")
    )


def keys_of(table: pa.Table, event_type: str) -> list[tuple[str, int]]:
    return [(event_type, n) for n in table.column("sequence").to_pylist()]


def what_must_arrive(fs: pafs.S3FileSystem, journal: Path) -> dict[str, list[tuple[str, int]]]:
    """After the kill: each file the recording must end up with (its key under the prefix) and
    its rows' keys -- the files in the bucket, the files waiting in the journal dir, and the
    intact records of every journal segment (a segment whose file exists holds its rows)."""
    files: dict[str, list[tuple[str, int]]] = {}

    def add(key: str, rows: list[tuple[str, int]]) -> None:
        assert files.setdefault(key, rows) == rows, f"{key}: two versions"

    for key in data_keys(objects(fs)):
        add(key, keys_of(read_object(fs, key), key.split("/")[0]))
    for key in waiting(journal):
        add(key, keys_of(pq.read_table(journal / key), key.split("/")[0]))
    for segment in sorted(journal.glob("_journal/*/date=*/*.arrows")):
        contents = read_segment(segment)
        if contents.rows:
            table = pa.Table.from_batches(contents.batches, contents.schema)
            key = parquet_for_journal(journal, segment).relative_to(journal).as_posix()
            add(key, keys_of(table, key.split("/")[0]))
    return files


def assert_exactly(rows: list[tuple[str, int]], expected: set[tuple[str, int]], what: str) -> None:
    twice = sorted(k for k, n in Counter(rows).items() if n > 1)
    assert not twice, f"{what}: {len(twice)} rows twice, e.g. {twice[:5]}"
    missing, extra = sorted(expected - set(rows)), sorted(set(rows) - expected)
    assert not missing, f"{what}: {len(missing)} rows missing, e.g. {missing[:5]}"
    assert not extra, f"{what}: {len(extra)} rows never journaled, e.g. {extra[:5]}"


def queried(data: str) -> list[tuple[str, int]]:
    con = tastyrec.connect(data)
    return [
        (t, n) for t in TYPES for (n,) in con.sql(f'SELECT sequence FROM "{t}"').fetchall()
    ]


async def replayed(data: str) -> tuple[list[tuple[str, int]], int]:
    """Every Quote and Trade a ReplayStreamer hands out over ``data`` (and its gaps)."""
    async with ReplayStreamer(data) as replay:
        for cls in (Quote, Trade):
            await replay.subscribe(cls, ["SPY", "QQQ", "AAPL"])
        got = [(type(e).__name__, e.sequence) async for e in replay.listen(Quote, Trade)]
        return got, len(replay.gaps)


@contextlib.contextmanager
def timed(figures: dict[str, float], name: str) -> Iterator[None]:
    start = time.monotonic()
    yield
    figures[name] = round(time.monotonic() - start, 2)


# --- the scenario ----------------------------------------------------------------------------


def moto_killer(s3: S3Server) -> tuple[CuttingProxy, list[int | None]]:
    """A proxy in front of ``s3`` that, once armed (``proxy.cut_at``), stops accepting and
    SIGKILLs moto's process at that byte; the list gets the killed process's exit status."""
    killed: list[int | None] = []

    def kill_moto() -> None:  # in the proxy's thread, at the cut
        # refuse connections first: one accepted (and closed, nothing upstream) while moto dies
        # can stall the SDK for curl's 30 s low-speed limit (docs/object-storage.md)
        proxy.pause()
        killed.append(s3.stop())

    proxy = CuttingProxy(s3.port, cut_at=1 << 62, on_cut=kill_moto)
    return proxy, killed


def proxy_env(env: dict[str, str], proxy: CuttingProxy) -> dict[str, str]:
    """``env`` with this process's ``AWS_*`` configuration, its endpoint the proxy."""
    aws = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    return {**env, **aws, "AWS_ENDPOINT_URL": proxy.endpoint}


@pytest.mark.slow
async def test_record_outage_kill_recover_query_replay_compact_every_row_once(
    s3_persistent: S3Server, tmp_path: Path, cli, start_driver
) -> None:
    s3 = s3_persistent  # its objects survive a kill of its process
    figures: dict[str, float] = {}
    fs = s3_filesystem()  # this process: straight to the server (AWS_ENDPOINT_URL of `s3`)
    journal = tmp_path / "journal"
    proxy, killed = moto_killer(s3)
    through_proxy = proxy_env(cli.env, proxy)
    with proxy:
        # -- record with the store up: several files uploaded, the session's gap recorded
        with timed(figures, "record"):
            driver = start_driver(journal, through_proxy)
            assert driver.send("drop", "gap") == "1"
            acked = int(driver.send("files 3", "journaled"))
            poll(
                "3 files of each type uploaded",
                lambda: len(data_keys(objects(fs))) == 3 * len(TYPES) and not waiting(journal),
                driver.proc,
            )
            before_outage = data_keys(objects(fs))
            first_pid = s3.pid

            # -- the store's process is killed inside the next upload; files pile up in the
            # journal dir
            proxy.cut_at = proxy.sent + CUT_INTO
            acked = int(driver.send("files 3", "journaled"))
            poll("the kill", proxy.cut.is_set, driver.proc)
            assert killed == [-signal.SIGKILL] and not s3.running
            poll(
                "a backlog of 3 files of each type",
                lambda: len(waiting(journal)) == 3 * len(TYPES),
                driver.proc,
            )
            # rows in the open journal segments (no file yet), then more handed over that the
            # recorder may or may not have journaled when it is killed
            acked = int(driver.send("rows 201", "journaled"))
            fed = int(driver.send("more 77", "fed"))
            driver.kill()  # kill -9 with the backlog
        # -- a new moto process on the same port, with every write the old one completed
        s3.start()
        assert s3.pid != first_pid
        assert data_keys(objects(fs)) == before_outage  # kept; nothing of the cut upload
        must = what_must_arrive(fs, journal)
        expected = {k for rows in must.values() for k in rows}
        every = [k for rows in must.values() for k in rows]
        assert len(every) == len(expected)  # no row in two files
        # what the kill kept, of each type: every acknowledged row, and a gapless prefix of what
        # was fed (the two types are journaled one after the other: a kill may fall between)
        journaled = len(expected)
        assert acked <= journaled <= fed
        for parity, event_type in enumerate(TYPES):
            kept = sorted(n for t, n in expected if t == event_type)
            assert kept == list(range(parity, parity + 2 * len(kept), 2)), event_type
            assert len(kept) >= len(range(parity, acked, 2)), event_type

        # -- the store is reachable again: `tastyrec recover` uploads the backlog
        proxy.resume()
        cli.env.update(through_proxy)
        with timed(figures, "recover"):
            done = cli.run("recover", "--journal", str(journal), "--out", DEST, timeout=60)
        assert done.popen.returncode == 0, done.stderr
        assert "uploaded" in done.stdout, done.stdout
        # the journal dir is emptied: no segment, no file waiting, no lock
        assert not [p for p in journal.rglob("*") if p.is_file()], list(journal.rglob("*"))
        keys = objects(fs)
        got_files = {k: keys_of(read_object(fs, k), k.split("/")[0]) for k in data_keys(keys)}
        assert got_files == must  # the same files, with the same rows
        # nothing partial under a final key: only Parquet files, each whole (read above);
        # a staged copy an upload left is hidden (leading dot) from every reader
        assert all(k.endswith(".parquet") for k in keys if not hidden(k)), sorted(keys)
        assert all(k.endswith(".uploading") for k in keys if hidden(k)), sorted(keys)

        # -- bookkeeping: the killed session recovered, its gap kept
        con = tastyrec.connect(DEST)
        sessions = con.sql("SELECT session_id, status, rows, files FROM sessions").fetchall()
        assert sessions == [(driver.session_id, "recovered", journaled, len(must))]
        gaps = con.sql("SELECT session_id, stream FROM gaps").fetchall()
        assert gaps == [(driver.session_id, "dxlink")]

        # -- query: in this process and with `tastyrec sql`
        with timed(figures, "query"):
            assert_exactly(queried(DEST), expected, "connect()")
            sql = cli.run(
                "sql", "--data", DEST, "--format", "csv",
                "SELECT 'Quote' AS t, sequence FROM Quote UNION ALL "
                "SELECT 'Trade', sequence FROM Trade",
            )  # fmt: skip
        assert sql.popen.returncode == 0, sql.stderr
        table = pacsv.read_csv(io.BytesIO(sql.stdout.encode()))
        rows = list(zip(table["t"].to_pylist(), table["sequence"].to_pylist(), strict=True))
        assert_exactly(rows, expected, "tastyrec sql")

        # -- replay: every type, through the live interface
        with timed(figures, "replay"):
            events, replay_gaps = await replayed(DEST)
        assert_exactly(events, expected, "ReplayStreamer")
        assert replay_gaps == 1

        # -- compact, then the same rows again
        with timed(figures, "compact"):
            compact = cli.run("compact", DEST, timeout=60)
        assert compact.popen.returncode == 0, compact.stderr
        keys = objects(fs)
        merged = data_keys(keys)
        # one file per partition (two partitions if the run straddled a New York midnight),
        # merged wherever there was more than one
        partitions = Counter(k.rsplit("/", 1)[0] for k in must)
        assert sorted(k.rsplit("/", 1)[0] for k in merged) == sorted(partitions)
        for key in merged:
            if partitions[key.rsplit("/", 1)[0]] > 1:
                assert catalog.is_compacted(key.rsplit("/", 1)[1]), key
        assert not [k for k in keys if "lock" in k], sorted(keys)
        assert_exactly(queried(DEST), expected, "connect() after compact")
        events, _ = await replayed(DEST)
        assert_exactly(events, expected, "ReplayStreamer after compact")
        assert tastyrec.connect(DEST).sql("SELECT count(*) FROM sessions").fetchall() == [(1,)]
    # no credential in any output of the processes
    for proc in (driver.proc, done, sql, compact):
        for text in (proc.stdout, proc.stderr):
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
                assert FAKE_ENV[name] not in text, name
    logger.info("end-to-end phases (s): %s; %d of %d rows fed journaled", figures, journaled, fed)


# --- the store's own process killed mid-upload and restarted --------------------------------


def rows_of(fs: pafs.S3FileSystem) -> dict[str, list[tuple[str, int]]]:
    """Each data file under the prefix (key relative to it) -> its rows' keys (read whole)."""
    return {k: keys_of(read_object(fs, k), k.split("/")[0]) for k in data_keys(objects(fs))}


def final_puts(s3: S3Server, key: str) -> int:
    """Successful PUTs (a copy: the final key is written only by one) of ``key`` (relative to
    the prefix) in the server's access log, every process on its port (werkzeug logs a request
    after answering it: complete once the client has its answer)."""
    line = f'"PUT /{BUCKET}/{PREFIX}/{key} HTTP/1.1" 200'
    return s3.log_path.read_text(errors="replace").count(line)


@pytest.mark.slow
async def test_moto_killed_mid_upload_and_restarted_the_recorder_uploads_everything_once(
    s3_persistent: S3Server, tmp_path: Path, cli, start_driver
) -> None:
    """Issue 19's "stop the server mid-upload and restart it" with a recorder that stays up:
    moto's process is SIGKILLed when the proxy has seen ``CUT_INTO`` bytes of an upload (inside
    its staging PUT's body), stays down while the recorder journals 3 more files of each type and
    its uploader fails and backs off, then a new moto process starts on the same port with every
    write the old one completed (``S3Server(persistent=True)``, tests/integration/
    moto_persistent.py). The live recorder's uploader carries the backlog across: the files
    uploaded before the kill are kept and not uploaded again, the cut file, the backlog, the
    files recorded after the restart and the open files flushed at a clean stop arrive, each row
    once; each final key was written by exactly one successful PUT (its copy) across both server
    processes. (The first scenario kills the recorder too and uploads its backlog with
    ``tastyrec recover``; this one is the uploader's own retries.)

    The proxy only places the kill at an exact byte (a fault, not a race) and refuses
    connections while moto is down; after the restart it forwards to the new process.
    """
    s3 = s3_persistent
    fs = s3_filesystem()  # this process: straight to the server
    journal = tmp_path / "journal"
    proxy, killed = moto_killer(s3)
    through_proxy = proxy_env(cli.env, proxy)
    with proxy:
        driver = start_driver(journal, through_proxy)
        driver.send("files 2", "journaled")
        poll(
            "2 files of each type uploaded",
            lambda: len(data_keys(objects(fs))) == 2 * len(TYPES) and not waiting(journal),
            driver.proc,
        )
        before_kill = rows_of(fs)
        first_pid = s3.pid

        # -- moto is killed inside the next upload; the recorder goes on, its uploader retries
        proxy.cut_at = proxy.sent + CUT_INTO
        driver.send("files 3", "journaled")
        poll("the kill", proxy.cut.is_set, driver.proc)
        assert killed == [-signal.SIGKILL] and not s3.running
        poll(
            "a backlog of 3 files of each type",
            lambda: len(waiting(journal)) == 3 * len(TYPES),
            driver.proc,
        )
        failures_before = int(driver.send("backlog", "backlog").split()[1])
        poll(
            "the uploader failing again (backing off, not giving up)",
            lambda: int(driver.send("backlog", "backlog").split()[1]) > failures_before,
            driver.proc,
        )

        # -- a new moto process on the same port, with what the old one had completed
        s3.start()
        assert s3.pid != first_pid
        assert rows_of(fs) == before_kill  # kept, whole; nothing of the cut upload
        proxy.resume()
        driver.send("files 2", "journaled")
        poll(
            "the backlog and the new files uploaded",
            lambda: len(data_keys(objects(fs))) == 7 * len(TYPES) and not waiting(journal),
            driver.proc,
        )
        fed = int(driver.send("rows 101", "journaled"))  # open files, flushed at the stop
        backlog = driver.send("backlog", "backlog").split()
        driver.send("bye", "bye")
        assert driver.proc.wait(WAIT_S, "stop") == 0, driver.proc.stderr
    # the recorder stopped cleanly with everything uploaded: nothing left in the journal dir
    assert not [p for p in journal.rglob("*") if p.is_file()], list(journal.rglob("*"))
    assert int(backlog[1]) > failures_before  # the outage was crossed by retries

    expected = {(TYPES[n % 2], n) for n in range(fed)}
    arrived = rows_of(fs)
    assert {k: arrived[k] for k in before_kill} == before_kill
    assert_exactly([k for rows in arrived.values() for k in rows], expected, "the bucket")
    assert_exactly(queried(DEST), expected, "connect() after the restart")
    # each final key written once: by one copy, in one of the two server processes (the access
    # log line follows the answer: waited for, then counted)
    poll("the access log", lambda: all(final_puts(s3, k) for k in arrived))
    assert {k: final_puts(s3, k) for k in arrived} == dict.fromkeys(arrived, 1)
    # nothing partial under a final key: each data file is whole Parquet (read above); staged
    # copies are hidden (leading dot)
    keys = objects(fs)
    assert all(k.endswith(".parquet") for k in keys if not hidden(k)), sorted(keys)
    assert all(k.endswith(".uploading") for k in keys if hidden(k)), sorted(keys)
    sessions = tastyrec.connect(DEST).sql("SELECT session_id, status, rows, files FROM sessions")
    assert sessions.fetchall() == [(driver.session_id, "ended", fed, len(arrived))]
    for text in (driver.proc.stdout, driver.proc.stderr):
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            assert FAKE_ENV[name] not in text, name
    logger.info("restart: %d rows fed, %d files, %s failed passes", fed, len(arrived), backlog[1])


def test_persistent_moto_keeps_completed_writes_across_a_kill(
    s3_persistent: S3Server, tmp_path: Path
) -> None:
    """What ``S3Server(persistent=True)`` keeps when its process is SIGKILLed: every completed
    write (a small upload, a 12 MiB multipart upload, a conditional write, a delete), byte for
    byte; not a PUT whose body was still arriving; and the next process answers conditional
    requests from the kept state."""
    s3 = s3_persistent
    fs = s3_filesystem()
    small, big = tmp_path / "small.parquet", tmp_path / "big.bin"
    pq.write_table(pa.table({"n": list(range(1000))}), small)
    big.write_bytes(os.urandom(12 << 20))
    upload(small, S3Location(s3.bucket, "k/small.parquet"), fs=fs)
    upload(big, S3Location(s3.bucket, "k/big.bin"), fs=fs)
    upload(small, S3Location(s3.bucket, "k/gone.parquet"), fs=fs)
    fs.delete_file(f"{s3.bucket}/k/gone.parquet")
    client = s3_client()
    client.put_object(Bucket=s3.bucket, Key="k/lease", Body=b"one", IfNoneMatch="*")

    def stored() -> dict[str, bytes]:
        selector = pafs.FileSelector(s3.bucket, recursive=True)
        files = [i.path for i in fs.get_file_info(selector) if i.type == pafs.FileType.File]
        out = {}
        for path in files:
            with fs.open_input_stream(path) as fh:
                out[path.removeprefix(f"{s3.bucket}/")] = fh.read()
        return out

    before = stored()
    assert before["k/big.bin"] == big.read_bytes() and "k/gone.parquet" not in before
    # a PUT of 100,000 bytes of which 5,000 have arrived when the server dies
    with socket.create_connection(("127.0.0.1", s3.port), timeout=WAIT_S) as sock:
        sock.sendall(
            f"PUT /{s3.bucket}/k/partial HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Length: 100000\r\n\r\n".encode() + b"x" * 5000
        )
        pid = s3.pid
        assert s3.stop() == -signal.SIGKILL
    s3.start()
    assert s3.pid != pid
    assert stored() == before  # no k/partial, every other object byte-identical
    with pytest.raises(ClientError, match="PreconditionFailed"):
        client.put_object(Bucket=s3.bucket, Key="k/lease", Body=b"two", IfNoneMatch="*")
