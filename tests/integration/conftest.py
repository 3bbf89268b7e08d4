"""Fixtures for tests that run the ``tastyrec`` command line as real subprocesses."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.s3server import S3Server, fake_aws_environment, running_s3_server

TASTYREC = [sys.executable, "-m", "tastyrec"]
#: the quote token variable; never inherited by the subprocesses
TOKEN_ENV = "TASTYREC_DXLINK_TOKEN"


@dataclass
class Proc:
    """A ``tastyrec`` subprocess whose stdout and stderr go to files (no pipe can fill up)."""

    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float, what: str = "exit") -> int:
        """The exit code; fail (the process is killed at teardown) if it takes longer."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        pytest.fail(f"tastyrec did not {what} within {timeout} s:\n{self.stderr}")

    def wait_for(self, what: str, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Poll ``predicate`` until it is truthy (returned); fail if the process exits first."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if not self.alive():
                pytest.fail(
                    f"tastyrec exited ({self.popen.returncode}) while waiting for {what}:\n"
                    f"{self.stderr}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout} s waiting for {what}:\n{self.stderr}")
            time.sleep(0.02)  # kept: polls another process's files (no event crosses to here)


def journal_rows(out: Path) -> dict[str, int]:
    """Rows a running recorder has journaled so far into ``out``, per type."""
    from tastyrec.exceptions import StorageError
    from tastyrec.storage.journal import read_segment

    rows: dict[str, int] = {}
    for seg in out.glob("_journal/*/date=*/*.arrows"):
        try:
            n = read_segment(seg).rows
        except (StorageError, FileNotFoundError):
            continue  # being created, or converted and removed meanwhile
        rows[seg.parent.parent.name] = rows.get(seg.parent.parent.name, 0) + n
    return rows


def faketime_library() -> Path | None:
    """libfaketime's shared library, as the ``libfaketime`` test dependency ships it."""
    found = importlib.util.find_spec("libfaketime")
    if found is None or not found.submodule_search_locations or sys.platform != "linux":
        return None
    lib = Path(found.submodule_search_locations[0], "vendor/libfaketime/src/libfaketime.so.1")
    return lib if lib.is_file() else None


def pinned_clock_env(when: datetime) -> dict[str, str]:
    """Environment variables under which a subprocess's wall clock reads ``when`` now and runs
    on from there (libfaketime, preloaded); monotonic clocks stay real, so timeouts still work.

    The clock is given as an offset from the real one, so it needs no time-zone parsing and a
    child of the pinned process (which inherits the variables) reads the same time.
    """
    lib = faketime_library()
    if lib is None:
        pytest.skip("pinning the clock needs libfaketime (the test extras) on Linux")
    offset = round(when.timestamp() - time.time())
    already = os.environ.get("FAKETIME", "")  # this process is pinned too: time.time() is fake
    if already[:1] in "+-" and already.endswith("s") and already[1:-1].isdigit():
        offset += int(already[:-1])
    preload = os.environ.get("LD_PRELOAD")
    return {
        "LD_PRELOAD": f"{lib}:{preload}" if preload and str(lib) not in preload else str(lib),
        "FAKETIME": f"{offset:+d}s",
        "DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_NO_CACHE": "1",
    }


class Cli:
    """Starts ``python -m tastyrec ...`` subprocesses; kills whatever is left at teardown."""

    def __init__(self, workdir: Path, command: Sequence[str] = tuple(TASTYREC)) -> None:
        self.workdir = workdir
        #: what runs ``tastyrec`` (another venv's executable in tests/plain_install)
        self.command = list(command)
        # no credentials leak in from the environment of whoever runs the tests
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k != TOKEN_ENV and not k.startswith("TASTYTRADE_")
        }
        self._procs: list[Proc] = []

    def pin_clock(self, when: datetime) -> None:
        """Subprocesses started from now on see ``when`` as the current time (see
        :func:`pinned_clock_env`)."""
        self.env.update(pinned_clock_env(when))

    def start(self, *args: str, cwd: Path | None = None) -> Proc:
        n = len(self._procs)
        out, err = self.workdir / f"proc{n}.stdout", self.workdir / f"proc{n}.stderr"
        with open(out, "wb") as fo, open(err, "wb") as fe:
            popen = subprocess.Popen(
                [*self.command, *args],
                stdout=fo,
                stderr=fe,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=cwd or self.workdir,
            )
        proc = Proc(popen, out, err)
        self._procs.append(proc)
        return proc

    def run(self, *args: str, timeout: float = 20.0, cwd: Path | None = None) -> Proc:
        """Run to completion (bounded by ``timeout``)."""
        proc = self.start(*args, cwd=cwd)
        proc.wait(timeout, f"finish `{' '.join(args)}`")
        return proc

    def record_until(
        self, out: Path, enough: Callable[[dict[str, int]], bool], *args: str, timeout: float = 60
    ) -> Proc:
        """``tastyrec record --out OUT ARGS`` until ``enough(journal_rows(out))`` holds, then
        stopped as a user does (Ctrl-C), which must end it with exit 0: waits for the rows
        needed, however loaded the machine, instead of recording for a fixed time."""
        proc = self.start("record", "--for", "10m", "--out", str(out), "--no-status", *args)
        proc.wait_for("the rows to be journaled", lambda: enough(journal_rows(out)), timeout)
        proc.popen.send_signal(signal.SIGINT)
        assert proc.wait(30, "exit after Ctrl-C") == 0, proc.stderr
        return proc

    def close(self) -> None:
        for proc in self._procs:
            if proc.alive():
                proc.popen.kill()
                proc.popen.wait(10)


@pytest.fixture
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """Run the command line; ``cli.workdir`` is a fresh folder (the subprocesses' cwd)."""
    runner = Cli(tmp_path_factory.mktemp("cli"))
    try:
        yield runner
    finally:
        runner.close()


# --- object storage: a moto S3 server on 127.0.0.1 (tests/integration/s3server.py) ---

@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials, no AWS files of the machine's user, for this test only."""
    for name, value in fake_aws_environment(tmp_path).items():
        if value is None:
            monkeypatch.delenv(name)
        else:
            monkeypatch.setenv(name, value)


@pytest.fixture
def s3(aws_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """A running moto server with a bucket; ``AWS_ENDPOINT_URL`` points at it."""
    with running_s3_server(tmp_path) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
        yield server


@pytest.fixture
def s3_persistent(
    aws_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[S3Server]:
    """Like ``s3``, but the server's objects survive its SIGKILL: ``restart()`` (or ``stop()``
    then ``start()``) brings a new process up with every write that had completed."""
    with running_s3_server(tmp_path, persistent=True) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
        yield server
