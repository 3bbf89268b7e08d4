"""A session's final status says what happened: ``ended`` (stopped cleanly), ``failed`` (stopped
on an error: even when the error is a full disk that also refuses the sessions-table write, in
which case ``recover`` writes it), ``recovered`` (killed, its journal converted by ``recover``;
the kill -9 tests of the command line are in test_record_crash.py).
"""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pyarrow.parquet as pq
import pytest

from tastyrec.events import Quote
from tastyrec.exceptions import StorageError
from tastyrec.record.recorder import Recorder, recover
from tastyrec.sim import Simulator
from tastyrec.sim.engine import SimConfig
from tastyrec.storage import bookkeeping, journal
from tests.integration.test_recorder import WAIT_S, streamer_for, wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    config = SimConfig(keepalive_timeout=5.0, quote_rate_hz=50.0)
    async with Simulator(seed=3, token=None, config=config) as server:
        yield server


def session_row(root: Path) -> dict[str, Any]:
    [path] = (root / "_sessions").glob("*.parquet")
    [row] = pq.read_table(path).to_pylist()
    return row


def rows_on_disk(root: Path) -> int:
    return sum(pq.read_metadata(f).num_rows for f in root.glob("*/date=*/*.parquet"))


def markers(root: Path) -> list[str]:
    return sorted(p.name.rsplit(".", 1)[1] for p in (root / "_journal").glob("*.*"))


class DiskFull:
    """Make the journal's writes and/or the bookkeeping tables' writes hit ENOSPC."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, *, journal_too: bool = True, tables: bool
    ) -> None:
        self.on = False
        real_write = journal.os.write
        real_table = bookkeeping._write

        def write(fd: int, data: Any) -> int:
            if self.on and journal_too:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(fd, data)

        def write_table(path: Path, table: Any) -> None:
            if self.on and tables:
                raise OSError(errno.ENOSPC, "No space left on device")
            real_table(path, table)

        monkeypatch.setattr(journal.os, "write", write)
        monkeypatch.setattr(bookkeeping, "_write", write_table)


async def record_until_the_disk_fills(sim: Simulator, root: Path, disk: DiskFull) -> int:
    with pytest.raises(StorageError, match="No space left on device"):
        async with streamer_for(sim) as streamer:
            async with Recorder(root, streamer) as recorder:
                await streamer.subscribe(Quote, ["SPY"])
                await wait_until(lambda: recorder.stats.rows["Quote"] > 0)
                recorded = recorder.stats.rows["Quote"]
                disk.on = True
                with anyio.fail_after(WAIT_S):  # a bound: the failure ends this wait
                    await anyio.sleep_forever()
    disk.on = False
    return recorded


async def test_a_clean_stop_is_ended(sim: Simulator, tmp_path: Path) -> None:
    async with streamer_for(sim) as streamer:
        async with Recorder(tmp_path, streamer) as recorder:
            await streamer.subscribe(Quote, ["SPY"])
            await wait_until(lambda: recorder.stats.rows["Quote"] > 0)
    row = session_row(tmp_path)
    assert row["status"] == "ended" and row["rows"] == rows_on_disk(tmp_path) > 0
    assert markers(tmp_path) == []


async def test_a_full_disk_is_failed_and_recover_keeps_it_failed(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal hits ENOSPC, the sessions table can still be written: ``failed`` at once;
    recover converts the journal kept and counts it, and the session stays ``failed``."""
    recorded = await record_until_the_disk_fills(sim, tmp_path, DiskFull(monkeypatch, tables=False))
    assert session_row(tmp_path)["status"] == "failed"
    assert markers(tmp_path) == []  # the row said it: no marker needed
    monkeypatch.undo()
    recover(tmp_path)
    row = session_row(tmp_path)
    assert row["status"] == "failed"
    assert row["rows"] == rows_on_disk(tmp_path) >= recorded


async def test_a_full_disk_that_refuses_the_status_write_is_failed_after_recover(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sessions-table write hits ENOSPC too: the row still says ``recording``, so the
    recorder leaves ``_journal/<session>.fail`` (a rename: no space needed) and ``recover``
    (what ``tastyrec recover`` runs) marks the session ``failed``, not ``recovered``."""
    recorded = await record_until_the_disk_fills(sim, tmp_path, DiskFull(monkeypatch, tables=True))
    assert session_row(tmp_path)["status"] == "recording"  # what the disk allowed
    assert markers(tmp_path) == ["fail"]
    assert not list(tmp_path.rglob("*.tmp"))  # the failed table writes left nothing behind
    monkeypatch.undo()
    report = recover(tmp_path)
    row = session_row(tmp_path)
    assert row["status"] == "failed"
    assert row["rows"] == rows_on_disk(tmp_path) >= recorded
    assert report.sessions == [row["session_id"]]
    assert markers(tmp_path) == []
    recover(tmp_path)  # twice: nothing changes
    assert session_row(tmp_path) == row


async def test_a_clean_stop_whose_status_write_fails_is_ended_after_recover(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = DiskFull(monkeypatch, journal_too=False, tables=True)
    async with Recorder(tmp_path) as recorder:
        recorder.record(Quote("SPY", 0, 0, 0, 0, "Q", 0, "Q", 1.0, 2.0, 3.0, 4.0))
        await wait_until(lambda: session_row(tmp_path)["rows"] == 0)  # written while it could
        disk.on = True
    assert session_row(tmp_path)["status"] == "recording"
    assert markers(tmp_path) == ["done"]
    monkeypatch.undo()
    recover(tmp_path)
    row = session_row(tmp_path)
    assert row["status"] == "ended" and row["rows"] == rows_on_disk(tmp_path)
    assert markers(tmp_path) == []


async def test_a_failed_body_is_failed(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError):
        async with Recorder(tmp_path):
            1 / 0  # noqa: B018
    assert session_row(tmp_path)["status"] == "failed"
    recover(tmp_path)
    assert session_row(tmp_path)["status"] == "failed"
