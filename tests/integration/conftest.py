"""Fixtures for tests that run the ``tastyrec`` command line as real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

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
            time.sleep(0.02)


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
