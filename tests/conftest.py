"""What every test shares."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """tastyrec runs on anyio's asyncio backend (websockets is asyncio): async tests and
    fixtures, module-scoped ones included, run there."""
    return "asyncio"
