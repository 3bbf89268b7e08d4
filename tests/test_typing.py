"""Static typing of the public API: run mypy on tests/typing (assert_type fails on a mismatch)."""

from __future__ import annotations

from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")


def test_listen_is_typed_by_the_event_class():
    target = Path(__file__).parent / "typing" / "check_listen.py"
    stdout, stderr, status = api.run(["--strict", "--no-incremental", str(target)])
    assert status == 0, stdout + stderr
