"""The README's commands are the ones CI runs, and every example runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


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
    # run it as written (installed here already), only shorter
    job[job.index("--for") + 1] = "2s"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASTYREC_")}
    result = subprocess.run(
        [sys.executable, "-m", "tastyrec", *job[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("recorded ")
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
