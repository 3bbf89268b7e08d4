"""A real S3-compatible server for tests: moto's server mode in a subprocess on 127.0.0.1.

moto (``moto[server]`` >= 5.2.6, FIELD_REPORTS #17) answers the S3 REST API with an in-memory
store; started as a separate process it can be killed and restarted under the test's control, the
way an object store goes away and comes back. moto keeps its state in that process only, so a
restart empties it (:meth:`S3Server.restart` creates the bucket again), unless the server is
``S3Server(..., persistent=True)``: then ``moto_persistent.py`` runs it and saves the buckets
after every completed write, before answering, and the next process on the port starts with
them -- a SIGKILL keeps exactly the completed requests, as a real store does
(``test_persistent_moto_keeps_completed_writes_across_a_kill``).

Why not moto's own request recorder (``/moto-api/recorder/*``, replayed by
``replay-recording``) for that: it cannot rebuild this store, measured with moto 5.2.6 and
pyarrow 26:

* pyarrow's PUTs (whole files and multipart parts) are sent ``Transfer-Encoding: chunked`` with
  ``Content-Encoding: aws-chunked`` and no ``Content-Length``; the recorder reads the body only
  by ``Content-Length`` and records ``""``: replayed, every uploaded Parquet file is 0 bytes, and
  so is each server-side copy of one;
* a multipart upload's parts and completion name the ``uploadId`` the first server made up; the
  replayed ``CreateMultipartUpload`` gets a new one, the parts go nowhere and the object is
  missing;
* replayed objects get new ``Last-Modified`` times (what
  :func:`tastyrec.objectstore.remove_staging_leftovers` ages).

boto3's requests (``Content-Length``, e.g. the conditional lease writes) do replay faithfully.
(Measured with moto 5.2.6; a test pinning that behaviour would fail the day moto improves, so
there is none.)

Every wait is bounded (``WAIT_S``); nothing here sleeps "long enough". To count the requests a
query made, :meth:`S3Server.recording` switches on moto's request recorder: it writes each request
to a file *while handling it*, so every request a client got an answer to is in the file when the
client's call returns (werkzeug's access log, written after the response, can lag behind).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

WAIT_S = 20.0
#: the script that runs moto with a store that survives a kill (``S3Server(persistent=True)``)
PERSISTENT_SERVER = Path(__file__).with_name("moto_persistent.py")

#: fake credentials for tests: the server does not check them
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIATESTFAKEKEYID0001",
    "AWS_SECRET_ACCESS_KEY": "fake-secret-Zq9vXw3LmN8pR2tY7uK1",
    "AWS_SESSION_TOKEN": "fake-session-token-Hb4Jc6Dd8Ff0Gg2",
    "AWS_REGION": "us-east-1",
    # never look for an EC2 instance's credentials (a network call with a timeout)
    "AWS_EC2_METADATA_DISABLED": "true",
}


def fake_aws_environment(folder: Path) -> dict[str, str | None]:
    """What to change in ``os.environ`` for the fake credentials: every ``AWS_*`` variable of
    the machine's user removed (``None``), :data:`FAKE_ENV` set, and the AWS files pointed at
    paths under ``folder`` that do not exist (no profile of the user is read)."""
    changes: dict[str, str | None] = {n: None for n in os.environ if n.startswith("AWS_")}
    changes.update(FAKE_ENV)
    changes["AWS_CONFIG_FILE"] = str(folder / "no-aws-config")
    changes["AWS_SHARED_CREDENTIALS_FILE"] = str(folder / "no-aws-credentials")
    return changes


def use_fake_aws_environment(folder: Path) -> None:
    """:func:`fake_aws_environment` applied to ``os.environ`` (for scripts: the benchmarks)."""
    for name, value in fake_aws_environment(folder).items():
        if value is None:
            del os.environ[name]
        else:
            os.environ[name] = value


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class S3Server:
    """moto's S3 server as a subprocess: :meth:`start`, :meth:`stop`, :meth:`restart`.

    ``endpoint`` is ``http://127.0.0.1:<port>``; the port stays the same across restarts so a
    client configured once reconnects to the new process.
    """

    def __init__(
        self,
        log_dir: Path,
        bucket: str = "tastyrec-test",
        env: dict[str, str] | None = None,
        *,
        persistent: bool = False,
    ) -> None:
        self.bucket = bucket
        self.persistent = persistent
        self.extra_env = dict(env or {})
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"moto-{self.port}.log"
        self.recording_path = log_dir / f"moto-{self.port}.requests.jsonl"
        #: with ``persistent``: the buckets as of the last completed write (moto_persistent.py)
        self.snapshot_path = log_dir / f"moto-{self.port}.buckets.pickle"
        self._proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the server, wait (bounded) until it answers, create the bucket."""
        assert self._proc is None, "already running"
        log = self.log_path.open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        # moto's request log is werkzeug's; unbuffered so a test reads it right after a request
        env["PYTHONUNBUFFERED"] = "1"
        env["MOTO_RECORDER_FILEPATH"] = str(self.recording_path)
        env.update(self.extra_env)
        if self.persistent:
            program = [sys.executable, str(PERSISTENT_SERVER), str(self.snapshot_path)]
        else:
            program = [sys.executable, "-m", "moto.server"]
        self._proc = subprocess.Popen(
            [*program, "-H", "127.0.0.1", "-p", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        deadline = time.monotonic() + WAIT_S
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self._proc.returncode}")
            with contextlib.suppress(OSError):
                # created unless kept from before a restart (persistent): moto's PUT of an
                # existing bucket in us-east-1 replaces it with an empty one. Otherwise one
                # request only: with IAM auth on, moto lets a set number through unsigned
                self._request("PUT", f"/{self.bucket}", absent_only=self.persistent)
                return
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"moto server did not answer within {WAIT_S} s")
            time.sleep(0.05)  # kept: polls another process until it answers (bounded by WAIT_S)

    def stop(self) -> int | None:
        """Kill the server (SIGKILL: an outage, not a shutdown) and wait for it to be gone;
        its exit status (``-9`` when the kill ended it; ``None`` if it was not running)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        return proc.wait(timeout=WAIT_S)

    def restart(self) -> None:
        """Stop (SIGKILL) and start again on the same port: a new process. Its store is empty
        with the bucket created, unless ``persistent``: then it holds what every completed write
        left (moto keeps its state in memory; see the module doc for why its request recorder
        cannot carry it over)."""
        self.stop()
        self.start()

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs."""
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- inspection -----------------------------------------------------------------------

    def _request(self, method: str, target: str, *, absent_only: bool = False) -> bytes:
        """One request to the server itself; with ``absent_only``, only if a HEAD of ``target``
        finds nothing (404)."""
        if absent_only:
            try:
                self._request("HEAD", target)
                return b""
            except OSError as exc:
                if "HTTP 404" not in str(exc):
                    raise
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request(method, target)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status >= 400:
                raise OSError(f"{method} {target}: HTTP {resp.status}")
            return body
        finally:
            conn.close()

    def post(self, target: str) -> bytes:
        """POST to the server itself (``/moto-api/...``); ``OSError`` on an HTTP error."""
        return self._request("POST", target)

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[Request]]:
        """Record the requests made inside the block into the list yielded (filled at its end)."""
        self._request("POST", "/moto-api/recorder/reset-recording")
        self._request("POST", "/moto-api/recorder/start-recording")
        recorded: list[Request] = []
        try:
            yield recorded
        finally:
            self._request("POST", "/moto-api/recorder/stop-recording")
            with self.recording_path.open(encoding="utf-8") as lines:
                for line in lines:
                    entry = json.loads(line)
                    headers = {k.lower(): v for k, v in entry["headers"].items()}
                    recorded.append(
                        Request(
                            entry["method"],
                            entry["url"],
                            headers.get("range"),
                            headers.get("x-amz-copy-source"),
                        )
                    )


class Request(NamedTuple):
    """A request the server recorded: method, URL (``http://host/bucket/key?query``), the Range
    and x-amz-copy-source headers."""

    method: str
    url: str
    range: str | None
    copy_source: str | None

    @property
    def path(self) -> str:
        """``/bucket/key`` (no query)."""
        return urlsplit(self.url).path

    @property
    def query(self) -> str:
        return urlsplit(self.url).query


@contextlib.contextmanager
def running_s3_server(
    log_dir: Path,
    bucket: str = "tastyrec-test",
    env: dict[str, str] | None = None,
    *,
    persistent: bool = False,
) -> Iterator[S3Server]:
    """An :class:`S3Server`, started, and always killed at the end."""
    server = S3Server(log_dir, bucket, env, persistent=persistent)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def iam_access_key(server: S3Server, user: str) -> dict[str, str]:
    """A new IAM user of ``server`` allowed every S3 action, and its access key
    (``AccessKeyId``, ``SecretAccessKey``). For a server started with IAM checks on
    (``INITIAL_NO_AUTH_ACTION_COUNT``): these three requests must be among the unchecked ones."""
    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",
    )
    iam.create_user(UserName=user)
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }
    iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=json.dumps(policy))
    key: dict[str, str] = iam.create_access_key(UserName=user)["AccessKey"]
    return key


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 in front of the server that calls ``on_cut`` once, when the
    clients have sent ``cut_at`` bytes: a fault at an exact point of an upload, not a race.

    The connections open at the cut are closed there and their later bytes dropped, whatever
    ``on_cut`` did (kill the server, kill the uploading process). Connections made after the cut
    are forwarded again (to a restarted server), or closed at once when nothing listens upstream.
    :meth:`pause` stops listening (clients get "connection refused", as from a dead server, not
    an accepted connection that closes: curl may then wait out its 30 s stall limit) and
    :meth:`resume` listens again on the same port.
    """

    def __init__(self, upstream_port: int, cut_at: int, on_cut: Callable[[], None]) -> None:
        self.upstream_port = upstream_port
        self.cut_at = cut_at
        self.on_cut = on_cut
        self.sent = 0
        self.cut = threading.Event()
        self._lock = threading.Lock()
        self._live: set[int] = set()
        self._dead: set[int] = set()
        self._next_id = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def pause(self) -> None:
        """Stop listening: new connections are refused."""
        # shut down first: a bare close() leaves the socket listening (and accepting once more)
        # while the accept thread is blocked in accept() on it
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def resume(self) -> None:
        """Listen again on the same port."""
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def __enter__(self) -> CuttingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self, listener: socket.socket) -> None:
        while not self._closed:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                conn_id = self._next_id
                self._next_id += 1
                self._live.add(conn_id)
            for args in ((client, upstream, conn_id, True), (upstream, client, conn_id, False)):
                threading.Thread(target=self._pump, args=args, daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, conn_id: int, counted: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    if conn_id in self._dead:
                        break
                    if counted and not self.cut.is_set():
                        room = self.cut_at - self.sent
                        self.sent += len(data)
                        if room <= len(data):
                            self.cut.set()
                            self._dead |= self._live
                            self.on_cut()
                            break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._live.discard(conn_id)
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
