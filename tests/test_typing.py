"""Static typing of the public API: run mypy on tests/typing (assert_type fails on a mismatch)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")


def test_listen_is_typed_by_the_event_class():
    target = Path(__file__).parent / "typing" / "check_listen.py"
    limit = sys.getrecursionlimit()
    try:
        stdout, stderr, status = api.run(["--strict", "--no-incremental", str(target)])
    finally:
        # mypy raises the interpreter's recursion limit (to 2**14) for good; later tests about
        # deeply nested frames must see the limit every program starts with
        sys.setrecursionlimit(limit)
    assert status == 0, stdout + stderr
