"""The README's commands are the ones CI runs, every README code block runs, and every example
runs.

The README's ``sh`` and ``python`` blocks run in README order in one empty folder, as a reader
would run them one after the other (the ``data/`` the first block records is what the later ones
query and replay), against a real ``tastyrec simulate`` subprocess on 127.0.0.1 (port 0). Before a
block runs, these substitutions -- and only these -- are made:

* ``127.0.0.1:PORT`` becomes the simulator's address;
* ``--for DURATION`` becomes ``--for 2s`` (recording an hour would not prove more);
* ``anyio.sleep(N)`` becomes ``anyio.sleep(1)`` when N is longer;
* a leading ``python3 -m venv .venv && . .venv/bin/activate && pip install ... &&`` is dropped:
  the blocks run with the test suite's own installed tastyrec (its bin folder first on PATH).

Blocks marked ``not run`` (with the reason) are skipped; ``runs until stopped`` blocks run until
they print a line, then get SIGTERM. The marking is described in tests/readme.py. An unmarked
block that fails, or a block that cannot be classified, fails the test: new blocks are covered
without anyone adding them here.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from tests.integration.conftest import journal_rows
from tests.readme import NOT_RUN, UNTIL_STOPPED, Block, ReadmeError, blocks

ROOT = Path(__file__).parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
#: bounds a block that hangs; never waited for when the block works
BLOCK_TIMEOUT_S = 180.0
INSTALL_PREFIX = re.compile(
    r"^python3 -m venv \.venv && \. \.venv/bin/activate && pip install [^&]*&& ", re.M
)


def readme_env() -> dict[str, str]:
    """The environment of a README block: no credentials; this suite's tastyrec first on PATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TASTYREC_", "TASTYTRADE_", "WEBSOCKETS_"))
    }
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"  # a runs-until-stopped block's first line shows at once
    return env


def substitute(block: Block, port: int) -> str:
    """The block's code with the substitutions of the module docstring made."""
    code = block.code.replace("127.0.0.1:PORT", f"127.0.0.1:{port}")
    code = re.sub(r"--for \d+[smh]\b", "--for 2s", code)
    code = re.sub(
        r"anyio\.sleep\((\d+(?:\.\d+)?)\)",
        lambda m: f"anyio.sleep({min(float(m.group(1)), 1.0):g})",
        code,
    )
    if block.lang == "sh":
        code = INSTALL_PREFIX.sub("", code)
    return code


@dataclass
class Outcome:
    block: Block
    ok: bool
    detail: str = ""


def _stop(popen: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the block's process group (its own session: the shell and what it started)."""
    try:
        os.killpg(popen.pid, sig)
    except ProcessLookupError:
        return
    try:
        popen.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(10)


def run_block(block: Block, workdir: Path, port: int) -> Outcome:
    """Run one block in ``workdir``; whether it did what a reader expects."""
    code = substitute(block, port)
    if block.lang == "python":
        script = workdir / f"readme_block_{block.line}.py"
        script.write_text(code)
        argv = [sys.executable, str(script)]
    else:
        argv = ["bash", "-e", "-o", "pipefail", "-c", code]
    out, err = workdir / f"block{block.line}.stdout", workdir / f"block{block.line}.stderr"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        popen = subprocess.Popen(
            argv,
            cwd=workdir,
            env=readme_env(),
            stdin=subprocess.DEVNULL,
            stdout=fo,
            stderr=fe,
            start_new_session=True,
        )
    try:
        if block.mark == UNTIL_STOPPED:
            deadline = time.monotonic() + BLOCK_TIMEOUT_S
            while "\n" not in out.read_text():
                if popen.poll() is not None:
                    return Outcome(
                        block, False, f"exited ({popen.returncode}) before printing anything"
                    )
                if time.monotonic() > deadline:
                    return Outcome(block, False, f"printed nothing within {BLOCK_TIMEOUT_S} s")
                time.sleep(0.05)
            _stop(popen, signal.SIGTERM)
            if "Traceback" in err.read_text():
                return Outcome(block, False, "a traceback before it was stopped")
            return Outcome(block, True)
        try:
            code_ = popen.wait(BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return Outcome(block, False, f"still running after {BLOCK_TIMEOUT_S} s")
        if code_ != 0:
            return Outcome(block, False, f"exit status {code_}")
        return Outcome(block, True)
    finally:
        if popen.poll() is None:
            _stop(popen, signal.SIGKILL)


def run_blocks(found: list[Block], workdir: Path, port: int) -> list[Outcome]:
    """Run every runnable block in order (each whatever the others did)."""
    return [
        run_block(block, workdir, port) for block in found if block.lang and block.mark != NOT_RUN
    ]


def report(outcomes: list[Outcome], workdir: Path) -> str:
    lines = []
    for o in outcomes:
        if o.ok:
            continue
        stderr = (workdir / f"block{o.block.line}.stderr").read_text()[-3000:]
        lines.append(f"{o.block.name}: {o.detail}\n{o.block.code}--- stderr:\n{stderr}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """``tastyrec simulate`` on 127.0.0.1, as the README starts it; its port."""
    folder = tmp_path_factory.mktemp("simulate")
    out = folder / "stdout"
    with open(out, "wb") as fo, open(folder / "stderr", "wb") as fe:
        popen = subprocess.Popen(
            [sys.executable, "-m", "tastyrec", "simulate", "--port", "0"],
            stdout=fo,
            stderr=fe,
            stdin=subprocess.DEVNULL,
            env=readme_env(),
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while not (first := out.read_text().partition("\n"))[1]:
            assert popen.poll() is None, (folder / "stderr").read_text()
            assert time.monotonic() < deadline, "tastyrec simulate printed no URL in 60 s"
            time.sleep(0.02)
        match = re.fullmatch(r"dxlink ws://127\.0\.0\.1:(\d+)/realtime", first[0])
        assert match, first[0]  # the README promises this first line
        yield int(match.group(1))
    finally:
        _stop(popen, signal.SIGKILL)


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    (command,) = [line for line in ci.splitlines() if "pytest" in line and "pip install" in line]
    assert command.strip() in readme


def test_readme_first_command_installs_and_runs_the_main_job(tmp_path):
    readme = (ROOT / "README.md").read_text()
    first = readme.split("```sh", 1)[1].split("```", 1)[0].strip()
    assert "pip install ." in first
    job = first.rsplit("&&", 1)[1].split()
    assert job[:2] == ["tastyrec", "record"] and "--demo" in job  # no credentials needed
    # run it as written (installed here already); once the journal holds what it promises,
    # quotes and Greeks, stop it as a user would (Ctrl-C) rather than waiting out --for
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASTYREC_")}
    with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tastyrec", *job[1:]], stdout=out, stderr=err, env=env,
            stdin=subprocess.DEVNULL, cwd=tmp_path,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not all(journal_rows(tmp_path / "data").get(t) for t in ("Quote", "Greeks")):
            assert proc.poll() is None, (tmp_path / "err").read_text()
            assert time.monotonic() < deadline, "no quotes and Greeks journaled in 60 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, (tmp_path / "err").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert (tmp_path / "out").read_text().startswith("recorded ")
    assert list(tmp_path.glob("data/Quote/date=*/*.parquet"))
    assert list(tmp_path.glob("data/Greeks/date=*/*.parquet"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(example):
    result = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), "an example prints what it shows"


def test_there_are_examples():
    assert EXAMPLES


@pytest.mark.slow
def test_every_readme_block_runs(simulator: int, tmp_path: Path) -> None:
    found = blocks()
    outcomes = run_blocks(found, tmp_path, simulator)
    assert not [o for o in outcomes if not o.ok], report(outcomes, tmp_path)
    runnable = [b for b in found if b.lang and b.mark != NOT_RUN]
    assert len(outcomes) == len(runnable) > 10
    # what the blocks did, seen from outside: the README's recordings and the --out of the
    # Recording section; the query block's Parquet export
    assert list(tmp_path.glob("data/Quote/date=*/*.parquet"))
    assert (tmp_path / "trades.parquet").stat().st_size > 0
    # the candle symbols the README says are recorded (`--candles 1m,5m`) are the ones recorded
    candles = duckdb.sql(
        f"SELECT DISTINCT event_symbol FROM '{tmp_path}/data/Candle/*/*.parquet' ORDER BY 1"
    ).fetchall()
    assert candles == [("SPY{=5m,tho=true}",), ("SPY{=m,tho=true}",)]
    readme_words = " ".join((ROOT / "README.md").read_text().split())
    assert "which is recorded as `SPY{=m,tho=true}`" in readme_words


SYNTHETIC = """\
# A

```sh
echo fine > fine.txt
```

<!-- not run: needs an account -->
```sh
exit 7
```

```python
raise SystemExit(3)
```

```
a file listing, never run
```

- in a list:

  ```sh
  echo indented >> fine.txt
  ```
"""


def test_an_unmarked_block_that_fails_fails_and_a_marked_one_is_skipped(tmp_path: Path) -> None:
    found = blocks(SYNTHETIC)
    assert [(b.lang, b.mark) for b in found] == [
        ("sh", None),
        ("sh", NOT_RUN),
        ("python", None),
        ("", None),
        ("sh", None),
    ]
    outcomes = run_blocks(found, tmp_path, port=1)
    assert [(o.block.line, o.ok) for o in outcomes] == [(3, True), (12, False), (22, True)]
    assert outcomes[1].detail == "exit status 3"
    assert (tmp_path / "fine.txt").read_text() == "fine\nindented\n"
    assert "README.md:12 (A): exit status 3" in report(outcomes, tmp_path)


def test_a_runs_until_stopped_block_must_print_before_it_is_stopped(tmp_path: Path) -> None:
    text = (
        "<!-- runs until stopped -->\n```python\nimport time\nprint('serving')\n"
        "time.sleep(600)\n```\n\n<!-- runs until stopped -->\n```sh\nexit 0\n```\n"
    )
    outcomes = run_blocks(blocks(text), tmp_path, port=1)
    assert [(o.ok, o.detail) for o in outcomes] == [
        (True, ""),
        (False, "exited (0) before printing anything"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("```console\n$ ls\n```\n", "unknown language tag 'console'"),
        ("<!-- skip -->\n```sh\nls\n```\n", "unknown block marker"),
        ("<!-- not run -->\n```sh\nls\n```\n", "say why the block is not run"),
        ("```sh\nls\n", "never closed"),
    ],
)
def test_a_block_the_tests_cannot_classify_is_an_error(text: str, message: str) -> None:
    with pytest.raises(ReadmeError, match=re.escape(message)):
        blocks(text)


def test_the_substitutions_are_the_documented_ones() -> None:
    block = Block(
        1,
        "x",
        "sh",
        "python3 -m venv .venv && . .venv/bin/activate && pip install . && tastyrec record "
        "--demo --for 30s\ntastyrec listen --url ws://127.0.0.1:PORT/realtime --for 1h\n",
    )
    assert substitute(block, 4321) == (
        "tastyrec record --demo --for 2s\n"
        "tastyrec listen --url ws://127.0.0.1:4321/realtime --for 2s\n"
    )
    code = Block(1, "x", "python", "await anyio.sleep(60)\nawait anyio.sleep(0.5)\n").code
    assert substitute(Block(1, "x", "python", code), 1) == (
        "await anyio.sleep(1)\nawait anyio.sleep(0.5)\n"
    )
