"""Recorder: a DXLinkStreamer's columnar tap (and events from user code) -> journal -> Parquet.

An async context manager. It records every batch the streamer's tap yields, for all its
subscriptions, and events handed to :meth:`Recorder.record` (tastyrec's event Structs or the
tastytrade SDK's event objects). Per event type, batches go to an :class:`~.sink.EventSink` (the
journal, rotation) and to a :class:`~tastyrec.live.LiveFrame`; sealed journal segments are turned
into Parquet in a worker thread. The crash-safety argument is in :mod:`tastyrec.record.sink`.
Snapshot markers (the one event of an empty candle snapshot, eventFlags 14) carry no data and are
left out before all that (:mod:`tastyrec.record._snapshots`).

Bookkeeping tables, one small Parquet file per recording session, rewritten atomically:

* ``_sessions/<name>.parquet``: session id, start, end, source, symbols, event types, status
  (``recording``, ``ended``, ``failed``, ``recovered``), rows, files, tastyrec version.
* ``_gaps/<name>.parquet``: one row per disconnect -> reconnect: the receipt time of the last event
  before the break, when it was noticed, when the subscriptions were restored, why, and which
  stream broke (``stream``: ``dxlink`` or ``account``).

Account streams. Given an :class:`~tastyrec.account.AlertStreamer` too (``account_streamer=``),
the recorder reads its :meth:`~tastyrec.account.AlertStreamer.tap` (every notification, never
dropped) and writes each payload class to its own table named after the class (``PlacedOrder``,
``AccountBalance``, ``CurrentPosition``..., ``UnknownNotification`` for types tastyrec does not
know), with the Arrow schema of :mod:`tastyrec.record.account_schema`, through the same sinks,
journal, rotation and recovery as market data, on the same ``recv_ns`` axis. The account
streamer's disconnects are rows of the gaps table (``stream = 'account'``): the recorder wraps the
streamer's ``disconnect_fn``/``reconnect_fn`` (the originals still run, with their arguments) to
note the moments exactly.

Reconciliation (FIELD_REPORTS #13: the account stream has lost order events). Given a REST
session too (``account_session=``, a :class:`~tastyrec.session.Session`), the recorder fetches the
subscribed accounts' orders of the day, open positions and balances when the account stream
connects (once the accounts are subscribed), after every reconnect and every
``reconcile_every_s`` (default 5 minutes), and records what the stream had not already said
(:mod:`tastyrec.account.reconcile` defines "already said") into the same tables, with
``from_snapshot = true``, ``event_time`` null and ``recv_ns`` the receipt time of the REST answer,
so replay and queries place them on the same timeline. Each run is listed in
:attr:`Recorder.reconciliations`; a failed REST call is logged and retried at the next trigger,
never fatal to the recording. Noting what the stream said is a dictionary update per order,
position or balance notification, in the loop that already batches them: account streams carry
a few notifications a second, not market-data rates.

The account tap is drained by polling every few milliseconds rather than by a cancellable
``receive``: cancelling a task in ``receive`` can lose the item being handed to it, and the
AlertStreamer has no ``close_tap`` to end the tap from our side.

A running recorder holds a lock on ``_journal/<session>.lock``. Another recorder starting in the
same folder (or ``tastyrec recover``) converts the journal segments of sessions whose lock is free
— recorders that died — and leaves those of live recorders alone. A session's final status:
``ended`` (stopped cleanly), ``failed`` (stopped on an error), ``recovered`` (died; converted by
``recover``). A recorder that stops but cannot write that status (a full disk) renames its lock
to ``<session>.fail`` or ``<session>.done`` (a rename needs no space), which ``recover`` turns
into the status.

Deviation from STYLE.md: the Parquet conversion runs in a worker thread; journal appends run on
the event loop (one ``write`` into the page cache each), which keeps batches in receipt order
without a lock. ``fsync`` runs in the worker thread on a duplicated descriptor.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, cast
from urllib.parse import urlsplit, urlunsplit

import anyio
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

from .._arrow_values import rows as python_rows
from .._version import __version__
from ..account.reconcile import RECONCILED_TYPES, RestClient, StreamKnowledge, fetch_snapshot
from ..dxlink.compact import ColumnBatch
from ..dxlink.protocol import contract_for
from ..dxlink.streamer import Gap
from ..events.account import AccountEvent, UnknownNotification
from ..events.base import Event
from ..events.registry import EVENT_TYPES
from ..exceptions import SchemaError, StorageError, TastyrecError, _unwrap_group
from ..live import LiveFrame
from ..schema import (
    RECV_COLUMN,
    RECV_EXACT_COLUMN,
    SCHEMA_VERSION,
    arrow_schema,
    receipt_arrays,
    receipt_ns,
)
from . import layout
from ._snapshots import SnapshotMarkers
from .account_schema import (
    AccountRecord,
    account_arrow_schema,
    account_events_to_batch,
    is_account_type,
)
from .journal import FsyncPolicy, fsync_dir
from .sink import (
    EventSink,
    RotationPolicy,
    WrittenFile,
    convert_segment,
    journal_segments,
    prune_journal,
)
from .status import RecorderStats
from .tables import gap_schema, session_schema

if TYPE_CHECKING:
    import duckdb

    from ..account.protocol import NotificationReceived
    from ..account.streamer import AlertStreamer
    from ..dxlink.streamer import DXLinkStreamer

__all__ = ("SCHEMA_VERSION", "Reconciliation", "Recorder", "RecoveryReport", "recover")

logger = logging.getLogger(__name__)

#: Version of the recorded column layout, in every file's metadata.
#: How often the recorder checks rotation by age, pending user events and gaps.
TICK_S: Final = 0.05
#: How often the account tap is drained when it was empty, and the most taken at once.
ACCOUNT_POLL_S: Final = 0.01
#: How often the reconciliation task looks at the account stream's state and its timer.
RECONCILE_POLL_S: Final = 0.05
ACCOUNT_BATCH: Final = 4096
#: Default seconds between two reconciliations of the account stream against REST.
RECONCILE_EVERY_S: Final = 300.0


@dataclass
class Reconciliation:
    """One reconciliation run: why, when it started and ended (epoch ns; ``ended_ns`` None while
    it runs), the accounts, rows recorded, the last error if any."""

    reason: str  # "connect", "reconnect", "subscribe" or "timer"
    at_ns: int
    accounts: tuple[str, ...]
    rows: int = 0
    error: str | None = None
    ended_ns: int | None = None


#: ``stream`` values of the gaps table.
DXLINK_STREAM: Final = "dxlink"
ACCOUNT_STREAM: Final = "account"


def safe_source(url: str) -> str:
    """``url`` without credentials, query or fragment: the provenance kept in files."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "unknown"
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


# --- bookkeeping tables --------------------------------------------------------------------


def _write_small_table(path: Path, table: pa.Table) -> None:
    """Atomically replace a small Parquet file (tmp, fsync, rename, fsync folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # a unique temporary name: two writers (a timer, the exit) never share one
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh, compression="zstd")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # a full disk: no half-written file left behind
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def _session_name(start_ns: int, session_id: str) -> str:
    return layout.file_name(start_ns, session_id, 0)


@dataclass
class _Session:
    session_id: str
    start_ns: int
    source: str | None
    symbols: list[str] = field(default_factory=list)
    event_types: list[str] = field(default_factory=list)
    status: str = "recording"
    end_ns: int | None = None
    rows: int = 0
    files: int = 0

    def write(self, root: Path) -> None:
        row = {
            "session_id": [self.session_id],
            "start": [self.start_ns],
            "end": [self.end_ns],
            "source": [self.source],
            "symbols": [sorted(self.symbols)],
            "event_types": [sorted(self.event_types)],
            "status": [self.status],
            "rows": [self.rows],
            "files": [self.files],
            "tastyrec_version": [__version__],
        }
        name = _session_name(self.start_ns, self.session_id)
        _write_small_table(
            root / layout.SESSIONS_DIR / f"{name}.parquet",
            pa.table(row, schema=session_schema()),
        )


# --- session locks -------------------------------------------------------------------------


def _lock_path(root: Path, session_id: str) -> Path:
    return root / layout.JOURNAL_DIR / f"{session_id}.lock"


#: marker suffix -> the final status it stands for
_MARKERS: Final = {"fail": "failed", "done": "ended"}


def _marker_path(root: Path, session_id: str, status: str) -> Path:
    """The lock file renamed when a recorder stopped but could not write its final status in
    its session row (a full disk): :func:`recover` then writes it (``failed`` or ``ended``). A
    rename needs no free space, and the name is as long as the lock's, so the folder entry is
    reused."""
    suffix = "fail" if status == "failed" else "done"
    return root / layout.JOURNAL_DIR / f"{session_id}.{suffix}"


class _SessionLock:
    """An exclusive ``flock`` on ``_journal/<session>.lock``, held while the recorder runs."""

    def __init__(self, path: Path) -> None:
        import fcntl

        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self, marker: Path | None = None) -> None:
        """Unlock and remove the lock file, or rename it to ``marker`` (see
        :func:`_marker_path`)."""
        if self._fd is None:
            return
        try:
            if marker is not None:
                os.replace(self.path, marker)
            else:
                self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:  # the lock file stays: recover() then says "recovered"
            logger.warning("could not leave the status marker %s: %s", marker, exc)
        os.close(self._fd)
        self._fd = None


def _is_alive(lock: Path) -> bool:
    """Whether a recorder holds ``lock`` (False for a missing file or a free lock)."""
    import fcntl

    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock we may have taken
    return False


# --- recovery ------------------------------------------------------------------------------


@dataclass
class RecoveryReport:
    """What :func:`recover` did."""

    files: list[WrittenFile] = field(default_factory=list)
    #: sessions whose journal was recovered
    sessions: list[str] = field(default_factory=list)
    #: journal segments left alone because their recorder is still running
    skipped_live: int = 0

    @property
    def rows(self) -> int:
        """Rows recovered into Parquet."""
        return sum(f.rows for f in self.files)

    @property
    def torn_bytes(self) -> int:
        """Bytes of torn tails dropped."""
        return sum(f.torn_bytes for f in self.files)


def _session_of(segment: Path) -> str:
    # name: <stamp>Z-<session>-<seq>.arrows
    return segment.stem.rsplit("-", 2)[-2]


def recover(root: str | os.PathLike[str]) -> RecoveryReport:
    """Turn journal segments left by recorders that died into Parquet. Blocking.

    Keeps every intact record, drops only torn tails; segments of running recorders are left
    alone. Marks the dead (killed) sessions ``recovered`` in the sessions table; a recorder that
    stopped but could not write its final status there (a full disk) left a marker
    (``_journal/<session>.fail`` or ``.done``), and its session is marked ``failed`` or ``ended``
    instead; a ``failed`` row keeps its status and gets the rows recovered from its journal.
    Safe to run twice.

    Raises:
        StorageError: a file could not be written (the journal is kept).
    """
    base = Path(root)
    report = RecoveryReport()
    by_session: dict[str, list[Path]] = defaultdict(list)
    for segment in journal_segments(base):
        by_session[_session_of(segment)].append(segment)
    for pattern in ("*.lock", *(f"*.{suffix}" for suffix in _MARKERS)):
        for lock in sorted((base / layout.JOURNAL_DIR).glob(pattern)):
            by_session.setdefault(lock.stem, [])
    for session_id, segments in sorted(by_session.items()):
        lock = _lock_path(base, session_id)
        if _is_alive(lock):
            report.skipped_live += len(segments)
            continue
        written = [w for w in (convert_segment(base, s) for s in segments) if w is not None]
        for pattern in (f"*/date=*/*-{session_id}-*.tmp", f"_*/*-{session_id}-*.tmp"):
            for stale in base.glob(pattern):  # temporary files of a write the crash cut short
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
        report.files += written
        report.sessions.append(session_id)
        markers = [lock.with_suffix(f".{suffix}") for suffix in _MARKERS]
        status = next((_MARKERS[m.suffix[1:]] for m in markers if m.exists()), None)
        _mark_recovered(base, session_id, written, status)
        for path in (lock, *markers):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    if not report.skipped_live:
        prune_journal(base)
    if report.files:
        logger.warning(
            "= recovered %d rows into %d files from the journal of %d interrupted session(s)",
            report.rows,
            len(report.files),
            len(report.sessions),
        )
    return report


def _mark_recovered(
    root: Path, session_id: str, written: list[WrittenFile], status: str | None = None
) -> None:
    """Rewrite a dead session's row from what is on disk now (rows, files, types, end), with
    ``status`` (the recorder's marker), else ``failed`` if the row says so, else
    ``recovered``."""
    files = sorted(root.glob(f"*/date=*/*-{session_id}-*.parquet"))
    metas = [pq.read_metadata(f) for f in files]
    ends = [w.last_recv_ns for w in written if w.last_recv_ns is not None]
    for path in (root / layout.SESSIONS_DIR).glob(f"*-{session_id}-*.parquet"):
        # times as epoch ns: pyarrow gives nanosecond timestamps to Python only through pandas
        row = python_rows(pq.read_table(path))[0]
        was_failed = row["status"] == "failed"
        if row["status"] != "recording" and not (was_failed and (written or status)):
            continue
        session = _Session(
            session_id,
            row["start"],
            row["source"],
            list(row["symbols"] or ()),
            sorted({f.parent.parent.name for f in files} | set(row["event_types"] or ())),
            status="failed" if was_failed else status or "recovered",
            end_ns=row["end"] if row["end"] is not None else (max(ends) if ends else None),
            rows=sum(m.num_rows for m in metas),
            files=len(files),
        )
        session.write(root)


# --- the recorder --------------------------------------------------------------------------


class Recorder:
    """Record a DXLinkStreamer's events (and events from user code) into rotating Parquet.

    Example usage::

        async with DXLinkStreamer(url=url, token=token) as streamer:
            async with Recorder("data", streamer) as recorder:
                await streamer.subscribe(Quote, ["SPY", "QQQ"])
                await anyio.sleep(60)
                print(recorder.latest(Quote))

    Account notifications are recorded beside market data, on the same receipt-time axis::

        async with DXLinkStreamer(url=url, token=token) as streamer, AlertStreamer(
            url=account_url, token=access_token
        ) as alerts:
            async with Recorder("data", streamer, account_streamer=alerts):
                await alerts.subscribe_accounts(["5WT00000"])
                await streamer.subscribe(Quote, ["SPY"])
                await anyio.sleep(60)

    Files appear as ``<out>/<EventType>/date=YYYY-MM-DD/<name>.parquet`` at each rotation and
    when the block is left (account tables are named after the payload classes:
    ``<out>/PlacedOrder/...``). Leaving the block (also by cancellation, e.g. Ctrl-C) flushes
    everything received.

    Args:
        out: the recording folder (created if needed).
        streamer: a :class:`~tastyrec.dxlink.streamer.DXLinkStreamer` to record through its
            columnar tap; ``None`` to record only what :meth:`record` is given.
        account_streamer: an :class:`~tastyrec.account.AlertStreamer` to record through its
            :meth:`~tastyrec.account.AlertStreamer.tap` (what it subscribes to, now or later);
            ``None`` for none. Its ``disconnect_fn``/``reconnect_fn`` are wrapped while
            recording (to note gaps) and restored on exit.
        source: provenance stored in every file (default: the streamer's URL without credentials).
        symbols: symbols to list in the sessions table (default: the streamer's subscriptions).
        rotation: when files are closed (rows, bytes, age).
        fsync: journal durability, ``"interval"`` (default), ``"always"`` or ``"never"``.
        fsync_interval_s: seconds between journal syncs with ``"interval"``.
        live_rows: rows of each type kept in the live frame (``None``: no row bound).
        live_age_s: seconds of each type kept in the live frame (``None``: no age bound).
        recover: convert journals left by crashed recorders in ``out`` at the start.
        account_session: a logged-in REST session (:class:`~tastyrec.session.Session`) to
            reconcile the account stream against (module docstring); ``None``: no
            reconciliation.
        reconcile_every_s: seconds between reconciliations besides those at connect and
            reconnect (``None``: only those).
        clock: monotonic seconds, for the reconciliation timer; injectable for tests.
    """

    def __init__(
        self,
        out: str | os.PathLike[str] = "data",
        streamer: DXLinkStreamer | None = None,
        *,
        account_streamer: AlertStreamer | None = None,
        source: str | None = None,
        symbols: Sequence[str] = (),
        rotation: RotationPolicy | None = None,
        fsync: FsyncPolicy | str = FsyncPolicy.INTERVAL,
        fsync_interval_s: float = 1.0,
        live_rows: int | None = 100_000,
        live_age_s: float | None = 300.0,
        recover: bool = True,
        account_session: RestClient | None = None,
        reconcile_every_s: float | None = RECONCILE_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = Path(out)
        self.account_session = account_session
        self.reconcile_every_s = reconcile_every_s
        self.clock = clock
        #: reconciliation runs against REST, oldest first
        self.reconciliations: list[Reconciliation] = []
        self._said = StreamKnowledge()
        self._reconcile_scope = anyio.CancelScope()
        self.streamer = streamer
        self.account_streamer = account_streamer
        if source is None and streamer is not None and streamer.url is not None:
            source = safe_source(streamer.url)
        if source is None and account_streamer is not None:
            source = safe_source(account_streamer.url)
        self.source = source
        #: the account streamer's breaks, oldest first (like ``DXLinkStreamer.gaps``)
        self.account_gaps: list[Gap] = []
        self.rotation = rotation or RotationPolicy()
        self.fsync = FsyncPolicy(fsync)
        self.fsync_interval_s = fsync_interval_s
        self.live_rows = live_rows
        self.live_age_s = live_age_s
        self.recover = recover
        self.session_id = secrets.token_hex(4)
        self.stats = RecorderStats(started_ns=time.time_ns())
        #: Parquet files written by this recorder, oldest first
        self.files: list[WrittenFile] = []
        #: what the start-up recovery did (None until entered, or with recover=False)
        self.recovered: RecoveryReport | None = None
        self._symbols = list(symbols)
        self._sinks: dict[str, EventSink] = {}
        self._live: dict[str, LiveFrame] = {}
        self._session: _Session | None = None
        self._lock: _SessionLock | None = None
        self._tg: TaskGroup | None = None
        self._tap: MemoryObjectReceiveStream[ColumnBatch] | None = None
        self._consumer_done = anyio.Event()
        self._consumer_error: TastyrecError | None = None
        self._sealed: list[Path] = []
        self._sealed_ready = anyio.Event()
        self._converter_done = anyio.Event()
        self._converter_scope = anyio.CancelScope()
        self._ticker_scope = anyio.CancelScope()
        self._stats_lock = threading.Lock()
        self._converted: set[Path] = set()
        self._user: list[tuple[Event | Any, int]] = []
        self._user_since = 0.0
        self._gaps_written: tuple[int, int | None, int, int | None] = (0, None, 0, None)
        self._alert_tap: MemoryObjectReceiveStream[NotificationReceived] | None = None
        self._alerts_done = anyio.Event()
        self._alerts_stop = anyio.Event()
        self._alerts_callbacks: tuple[Any, Any] | None = None
        self._account_last_ns: int | None = None
        self._account_live: dict[str, list[pa.RecordBatch]] = {}
        self._last_sync = time.monotonic()
        self._bad_user = 0
        self._logged: set[str] = set()
        self._markers = SnapshotMarkers()

    def __repr__(self) -> str:
        return f"Recorder(out={str(self.root)!r}, session={self.session_id!r})"

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._lock = _SessionLock(_lock_path(self.root, self.session_id))
        except OSError as exc:
            raise StorageError(
                f"cannot write to the output folder {str(self.root)!r}: "
                f"{exc.strerror or exc}; choose another folder or fix its permissions"
            ) from exc
        try:
            if self.recover:
                self.recovered = await anyio.to_thread.run_sync(recover, self.root)
            self._session = _Session(self.session_id, self.stats.started_ns, self.source)
            self._update_session()
            await anyio.to_thread.run_sync(self._session.write, self.root)
        except BaseException:
            self._lock.release()
            raise
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        if self.streamer is not None:
            self._tap = self.streamer.tap()
            tg.start_soon(self._consume, self._tap)
        if self.account_streamer is not None:
            self._alert_tap = self.account_streamer.tap()
            self._wrap_account_callbacks(self.account_streamer)
            tg.start_soon(self._consume_alerts, self._alert_tap)
            if self.account_session is not None:
                tg.start_soon(self._reconcile_loop)
        tg.start_soon(self._ticker, self._ticker_scope)
        tg.start_soon(self._converter)
        logger.info("= recording session %s into %s (%s)", self.session_id, self.root, self.source)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None and self._session is not None
        failed = exc_type is not None and not issubclass(exc_type, anyio.get_cancelled_exc_class())
        error: Exception | None = None
        with anyio.CancelScope(shield=True):
            try:
                await self._finish()
            except Exception as e:  # re-raised below, once the task group is closed
                error, failed = e, True
            self._session.status = "failed" if failed else "ended"
            self._session.end_ns = time.time_ns()
            self._update_session()
            status_written = False
            try:
                await anyio.to_thread.run_sync(self._session.write, self.root)
                status_written = True
                await anyio.to_thread.run_sync(self._write_gaps)
            except OSError as write_error:
                logger.warning(
                    "could not write the session tables: %s%s",
                    write_error,
                    ""
                    if status_written
                    else f"; `tastyrec recover` will mark the session {self._session.status}",
                )
        self._tg.cancel_scope.cancel()
        try:
            result = await self._tg.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as eg:
            raise _unwrap_group(eg) from None
        finally:
            self._tg = None
            if self._lock is not None:
                marker = _marker_path(self.root, self.session_id, self._session.status)
                self._lock.release(None if status_written else marker)
            logger.info("= %s", self.stats.summary(time.time_ns()))
        if error is not None:
            raise error
        return result

    async def _finish(self) -> None:
        """Drain the tap and user events, seal every file and convert all of it."""
        self._ticker_scope.cancel()
        self._reconcile_scope.cancel()
        try:
            streamer, tap = self.streamer, self._tap
            if streamer is not None and tap is not None:
                try:
                    with anyio.move_on_after(10):  # the tap ends even if this times out
                        # (no reader left after a failure: nothing to flush into)
                        await streamer.close_tap(tap, flush=not self._consumer_done.is_set())
                    with anyio.move_on_after(10):
                        await self._consumer_done.wait()  # it drains the tap to its end
                finally:
                    tap.close()
                if self._consumer_error is not None:
                    raise self._consumer_error
            if self._alert_tap is not None:
                self._alerts_stop.set()  # it drains what is waiting, then ends
                with anyio.move_on_after(10):
                    await self._alerts_done.wait()
                self._alert_tap.close()
                self._unwrap_account_callbacks()
                if self._consumer_error is not None:
                    raise self._consumer_error
            self._flush_user()
            for sink in self._sinks.values():
                self._seal(sink.seal())
        finally:
            # the converter may be busy, or cancelled already (Ctrl-C): stop it, finish here
            self._converter_scope.cancel()
            await self._converter_done.wait()
        while self._sealed:
            await self._convert_next()
        prune_journal(self.root)

    async def _consume(self, tap: MemoryObjectReceiveStream[ColumnBatch]) -> None:
        """Record every batch of the tap until it ends (:meth:`DXLinkStreamer.close_tap`).

        Shielded: cancelling a task that is waiting in ``receive`` can lose the item being
        handed to it, so this task is never cancelled; it stops when the tap ends, which
        ``_finish`` (or the streamer closing) makes happen.
        """
        try:
            with anyio.CancelScope(shield=True):
                async for batch in tap:
                    self._ingest(batch.event_type, batch.batch)
        except TastyrecError as exc:  # a full disk: fail the recording, keep the journal
            self._consumer_error = exc
            raise
        finally:
            self._consumer_done.set()

    async def _consume_alerts(self, tap: MemoryObjectReceiveStream[NotificationReceived]) -> None:
        """Record every account notification of the tap until :meth:`_finish` stops it (or the
        account streamer closes it), in batches of what is waiting. Shielded, like
        :meth:`_consume`; it never waits in ``receive`` (see the module docstring)."""
        try:
            with anyio.CancelScope(shield=True):
                ended = False
                while not ended:
                    items: list[NotificationReceived] = []
                    try:
                        while len(items) < ACCOUNT_BATCH:
                            items.append(tap.receive_nowait())
                    except anyio.WouldBlock:
                        pass
                    except (anyio.EndOfStream, anyio.ClosedResourceError):
                        ended = True
                    if items:
                        self._ingest_notifications(items)
                        continue
                    if self._alerts_stop.is_set():
                        break
                    if not ended:
                        with anyio.move_on_after(ACCOUNT_POLL_S):
                            await self._alerts_stop.wait()
        except TastyrecError as exc:  # a full disk: fail the recording, keep the journal
            self._consumer_error = exc
            raise
        finally:
            self._alerts_done.set()

    def _ingest_notifications(self, items: list[NotificationReceived]) -> None:
        """Journal account notifications: one batch per payload class, rows in receipt order."""
        by_class: dict[type[Any], list[tuple[Any, int | None, int]]] = {}
        said = self._said
        for item in items:
            payload = item.event
            if type(payload) in RECONCILED_TYPES:
                said.note(payload)
            by_class.setdefault(type(payload), []).append(
                (payload, item.timestamp_ms, item.recv_ns)
            )
        for cls, rows in by_class.items():
            try:
                batch = account_events_to_batch(cls, rows)
            except SchemaError:  # one value Arrow cannot hold exactly: keep the others
                good = [r for r in rows if self._account_convertible(cls, r)]
                if not good:
                    continue
                batch = account_events_to_batch(cls, good)
            self._ingest(cls, batch)
        self._account_last_ns = max(self._account_last_ns or 0, items[-1].recv_ns)

    def _account_convertible(self, cls: type[Any], row: tuple[Any, int | None, int]) -> bool:
        try:
            account_events_to_batch(cls, [row])
        except SchemaError as exc:
            self._bad_user += 1
            key = f"account:{cls.__name__}"
            level = logging.DEBUG if key in self._logged else logging.WARNING
            self._logged.add(key)
            logger.log(level, "skipped a %s notification: %s", cls.__name__, exc)
            return False
        return True

    # --- reconciliation -------------------------------------------------------------------

    async def _reconcile_loop(self) -> None:
        """Reconcile at connect (accounts subscribed), reconnect and on the timer."""
        alerts, every = self.account_streamer, self.reconcile_every_s
        assert alerts is not None
        with self._reconcile_scope:
            connects, done, due = 0, frozenset[str](), math.inf
            while True:
                accounts = tuple(alerts.protocol.subscriptions.accounts)
                reason = None
                if alerts.connected and accounts:
                    if alerts.stats.connects != connects:
                        reason = "connect" if connects == 0 else "reconnect"
                    elif not done.issuperset(accounts):
                        reason = "subscribe"
                    elif self.clock() >= due:
                        reason = "timer"
                if reason is None:
                    await anyio.sleep(RECONCILE_POLL_S)
                    continue
                connects, done = alerts.stats.connects, frozenset(accounts)
                await self._reconcile(reason, accounts)
                due = self.clock() + every if every is not None else math.inf

    async def _reconcile(self, reason: str, accounts: tuple[str, ...]) -> None:
        assert self.account_session is not None
        run = Reconciliation(reason, time.time_ns(), accounts)
        self.reconciliations.append(run)
        for account in accounts:
            try:
                payloads = await fetch_snapshot(self.account_session, account)
            except TastyrecError as exc:  # retried at the next trigger
                run.error = str(exc)
                logger.warning("= reconciling account %s (%s) failed: %s", account, reason, exc)
                continue
            recv_ns = time.time_ns()
            self._drain_alert_tap()  # what the stream said first is not news
            by_class: dict[type[Any], list[tuple[Any, int | None, int]]] = {}
            for payload in self._said.news(payloads):
                by_class.setdefault(type(payload), []).append((payload, None, recv_ns))
            for cls, rows in by_class.items():
                try:
                    batch = account_events_to_batch(cls, rows, from_snapshot=True)
                except SchemaError:
                    good = [r for r in rows if self._account_convertible(cls, r)]
                    if not good:
                        continue
                    batch = account_events_to_batch(cls, good, from_snapshot=True)
                self._ingest(cls, batch)
                run.rows += batch.num_rows
            if by_class:
                self._account_last_ns = max(self._account_last_ns or 0, recv_ns)
        run.ended_ns = time.time_ns()
        logger.info(
            "= reconciled %s against REST (%s): %d rows the stream had not said",
            ", ".join(accounts),
            reason,
            run.rows,
        )

    def _drain_alert_tap(self) -> None:
        """Ingest what waits in the account tap now (no await: the consumer cannot interleave)."""
        tap = self._alert_tap
        if tap is None or self._alerts_done.is_set():
            return
        items: list[NotificationReceived] = []
        with contextlib.suppress(anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            while True:
                items.append(tap.receive_nowait())
        if items:
            self._ingest_notifications(items)

    def _wrap_account_callbacks(self, alerts: AlertStreamer) -> None:
        """Note the account streamer's breaks as gaps; the user's callbacks still run."""
        disconnect_fn, reconnect_fn = alerts.disconnect_fn, alerts.reconnect_fn
        self._alerts_callbacks = (disconnect_fn, reconnect_fn)

        async def on_disconnect(streamer: Any, *args: Any) -> None:
            if not self.account_gaps or self.account_gaps[-1].resumed_ns is not None:
                self.account_gaps.append(
                    Gap(self._account_last_ns, time.time_ns(), "account streamer connection lost")
                )
            if disconnect_fn is not None:
                await disconnect_fn(streamer, *args)

        async def on_reconnect(streamer: Any, *args: Any) -> None:
            if self.account_gaps and self.account_gaps[-1].resumed_ns is None:
                self.account_gaps[-1].resumed_ns = time.time_ns()
            if reconnect_fn is not None:
                await reconnect_fn(streamer, *args)

        alerts.disconnect_fn, alerts.reconnect_fn = on_disconnect, on_reconnect

    def _unwrap_account_callbacks(self) -> None:
        if self._alerts_callbacks is not None and self.account_streamer is not None:
            alerts = self.account_streamer
            alerts.disconnect_fn, alerts.reconnect_fn = self._alerts_callbacks
            self._alerts_callbacks = None

    async def _ticker(self, scope: anyio.CancelScope) -> None:
        with scope:
            await self._tick_forever()

    async def _tick_forever(self) -> None:
        while True:
            await anyio.sleep(TICK_S)
            now = time.monotonic()
            if self._user and now - self._user_since >= TICK_S:
                self._flush_user()
            for sink in self._sinks.values():
                self._seal(sink.rotate_if_due())
            if (
                self.fsync is FsyncPolicy.INTERVAL
                and now - self._last_sync >= self.fsync_interval_s
            ):
                self._last_sync = now
                syncs = [s for s in (k.sync_later() for k in self._sinks.values()) if s]
                for sync in syncs:
                    await anyio.to_thread.run_sync(sync)
            self._poll_streamer()
            gaps = self.streamer.gaps if self.streamer is not None else []
            account_gaps = self.account_gaps
            state = (
                len(gaps),
                gaps[-1].resumed_ns if gaps else None,
                len(account_gaps),
                account_gaps[-1].resumed_ns if account_gaps else None,
            )
            if state != self._gaps_written:
                self._gaps_written = state
                await anyio.to_thread.run_sync(self._write_gaps)

    async def _converter(self) -> None:
        try:
            with self._converter_scope:
                while True:
                    await self._sealed_ready.wait()
                    self._sealed_ready = anyio.Event()
                    while self._sealed:
                        await self._convert_next()
                    self._update_session()
                    assert self._session is not None
                    await anyio.to_thread.run_sync(self._session.write, self.root)
        finally:
            self._converter_done.set()

    async def _convert_next(self) -> None:
        # taken off the list only once converted: a cancellation before the thread starts
        # leaves it for _finish; a started conversion is never abandoned
        segment = self._sealed[0]
        await anyio.to_thread.run_sync(self._convert, segment)
        if self._sealed and self._sealed[0] == segment:
            self._sealed.pop(0)

    def _convert(self, segment: Path) -> None:
        """Convert one sealed segment and count it (in a worker thread); once per segment."""
        if segment in self._converted:
            return
        written = convert_segment(self.root, segment)
        self._converted.add(segment)
        if written is None:
            return
        with self._stats_lock:
            self.files.append(written)
            self.stats.files += 1
            self.stats.bytes_written += written.bytes
            self.stats.rows_written += written.rows
        logger.info("= wrote %s (%d rows, %d bytes)", written.path, written.rows, written.bytes)

    def _seal(self, segments: list[Path]) -> None:
        if segments:
            self._sealed += segments
            self._sealed_ready.set()

    # --- ingest ----------------------------------------------------------------------------

    def _ingest(self, event_type: type[Any], batch: pa.RecordBatch) -> None:
        """Journal one batch of a market event type or an account payload class."""
        if not batch.num_rows:
            return
        name = event_type.__name__
        account = is_account_type(event_type)
        if not account:
            batch = self._markers.drop(name, batch)  # an empty snapshot is no bar
            if not batch.num_rows:
                return
        sink = self._sinks.get(name)
        if sink is None:
            sink = self._sinks[name] = EventSink(
                self.root,
                _schema_of(event_type),
                self.session_id,
                self.rotation,
                self.fsync,
                self._account_metadata() if account else self._metadata(name),
            )
            if not account:
                self._live[name] = LiveFrame(
                    event_type, max_rows=self.live_rows, max_age_s=self.live_age_s
                )
        journaled = sink.journaled_bytes
        self._seal(sink.append(batch))  # raises StorageError: nothing is counted then
        self.stats.rows[name] += batch.num_rows
        self.stats.journal_bytes += sink.journaled_bytes - journaled
        last = int(receipt_ns(batch)[-1].as_py())
        self.stats.last_recv_ns[name] = max(last, self.stats.last_recv_ns.get(name, 0))
        if account:
            self._keep_account_rows(name, batch)
        else:
            self._live[name].add(batch)

    def _keep_account_rows(self, name: str, batch: pa.RecordBatch) -> None:
        """Keep the newest ``live_rows`` rows of an account table for :meth:`frame`."""
        kept = self._account_live.setdefault(name, [])
        kept.append(batch)
        if self.live_rows is not None:
            rows = sum(b.num_rows for b in kept)
            while len(kept) > 1 and rows - kept[0].num_rows >= self.live_rows:
                rows -= kept.pop(0).num_rows

    def _base_metadata(self, source: str | None) -> dict[str, str]:
        return {
            "tastyrec.version": __version__,
            "tastyrec.schema_version": SCHEMA_VERSION,
            "tastyrec.session_id": self.session_id,
            "tastyrec.source": source or "user",
        }

    def _account_metadata(self) -> dict[str, str]:
        alerts = self.account_streamer
        source = safe_source(alerts.url) if alerts is not None else self.source
        meta = self._base_metadata(source)
        meta["tastyrec.stream"] = ACCOUNT_STREAM
        if alerts is not None:
            meta["tastyrec.accounts"] = ",".join(alerts.protocol.subscriptions.accounts)
        return meta

    def _metadata(self, event_type: str) -> dict[str, str]:
        meta = self._base_metadata(self.source)
        if self.streamer is not None:
            meta["tastyrec.dxlink_contract"] = contract_for(event_type)
            for channel in self.streamer.protocol.channels.values():
                if channel.event_type == event_type:
                    meta["tastyrec.aggregation_period_s"] = repr(channel.aggregation_period)
        return meta

    def record(self, *events: Event | AccountEvent | Any) -> None:
        """Record events handed over by user code: tastyrec event Structs or SDK event objects,
        or account payloads (:class:`~tastyrec.events.account.PlacedOrder`... ; their
        ``event_time`` is left null).

        Cheap: events are buffered and written in batches within ~50 ms. The receipt time
        recorded is the time of this call. An event whose values do not fit its schema is
        skipped, counted in ``stats.bad`` and logged, never fatal to the recording.

        Raises:
            SchemaError: an object that is not an event (nothing of this call is recorded).
        """
        self.record_many(events)

    def record_many(self, events: Iterable[Event | Any]) -> None:
        """Like :meth:`record`, for an iterable of events."""
        now = time.time_ns()
        items = [(e, now) for e in events]
        for event, _ in items:
            _check_event(event)
        if not self._user:
            self._user_since = time.monotonic()
        self._user += items
        if len(self._user) >= 4096:
            self._flush_user()

    def _flush_user(self) -> None:
        if not self._user:
            return
        from .convert import to_batches

        pending, self._user = self._user, []
        by_type: dict[type[Any], tuple[list[Any], list[int]]] = {}
        for event, recv_ns in pending:
            events, times = by_type.setdefault(type(event), ([], []))
            events.append(event)
            times.append(recv_ns)
        for cls, (events, times) in by_type.items():
            if is_account_type(cls):
                rows = [(e, None, t) for e, t in zip(events, times, strict=True)]
                try:
                    batch = account_events_to_batch(cls, rows)
                except SchemaError:
                    fitting = [r for r in rows if self._account_convertible(cls, r)]
                    if not fitting:
                        continue
                    batch = account_events_to_batch(cls, fitting)
                self._ingest(cls, batch)
                continue
            try:
                batches = to_batches(events)
            except SchemaError:  # find the bad ones; keep the rest
                good = [i for i, e in enumerate(events) if self._convertible(e)]
                events, times = [events[i] for i in good], [times[i] for i in good]
                batches = to_batches(events) if events else []
            for batch in batches:
                fixed = batch.batch
                for name, array in zip(
                    (RECV_COLUMN, RECV_EXACT_COLUMN),
                    receipt_arrays(np.array(times, np.int64)),
                    strict=True,
                ):
                    index = fixed.schema.get_field_index(name)
                    fixed = fixed.set_column(index, fixed.schema.field(index), array)
                self._ingest(batch.event_type, fixed)

    def _convertible(self, event: Any) -> bool:
        from .convert import to_batches

        try:
            to_batches([event])
        except SchemaError as exc:
            self._bad_user += 1
            key = type(event).__name__
            level = logging.DEBUG if key in self._logged else logging.WARNING
            self._logged.add(key)
            logger.log(level, "skipped a %s handed to record(): %s", key, exc)
            return False
        return True

    def _poll_streamer(self) -> None:
        streamer, alerts = self.streamer, self.account_streamer
        reconnects, gaps, bad = 0, len(self.account_gaps), self._bad_user
        if streamer is not None:
            reconnects += max(0, streamer.stats.connects - 1)
            gaps += len(streamer.gaps)
            bad += streamer.stats.bad_frames
            self.stats.skipped = streamer.stats.skipped
        if alerts is not None:
            reconnects += max(0, alerts.stats.connects - 1)
            bad += alerts.stats.bad_frames
        self.stats.reconnects = reconnects
        self.stats.gaps = gaps
        self.stats.bad = bad

    def _update_session(self) -> None:
        assert self._session is not None
        symbols = set(self._symbols)
        types = set(self.stats.rows)
        if self.streamer is not None:
            for name, entries in self.streamer.protocol.subscriptions.items():
                types.add(name)
                symbols.update(entry[1] for entry in entries)
        if self.account_streamer is not None:  # accounts are listed with the symbols
            symbols.update(self.account_streamer.protocol.subscriptions.accounts)
        self._session.symbols = sorted(symbols)
        self._session.event_types = sorted(types)
        self._session.rows = sum(self.stats.rows.values())
        self._session.files = self.stats.files
        self._poll_streamer()

    def _write_gaps(self) -> None:
        assert self._session is not None
        gaps = [(DXLINK_STREAM, g) for g in (self.streamer.gaps if self.streamer else [])]
        gaps += [(ACCOUNT_STREAM, g) for g in self.account_gaps]
        if not gaps:
            return
        gaps.sort(key=lambda item: item[1].disconnected_ns)
        table = pa.table(
            {
                "session_id": [self.session_id] * len(gaps),
                "last_received": [g.last_received_ns for _, g in gaps],
                "disconnected": [g.disconnected_ns for _, g in gaps],
                "resumed": [g.resumed_ns for _, g in gaps],
                "reason": [g.reason for _, g in gaps],
                "stream": [stream for stream, _ in gaps],
            },
            schema=gap_schema(),
        )
        name = _session_name(self._session.start_ns, self.session_id)
        _write_small_table(self.root / layout.GAPS_DIR / f"{name}.parquet", table)

    # --- live frame ------------------------------------------------------------------------

    def frame(self, event_type: type[Event] | type[AccountEvent]) -> pl.DataFrame:
        """Recent events of one type held in memory (bounded by ``live_rows``/``live_age_s``).

        For an account payload class: its newest ``live_rows`` rows, with the columns of its
        table (legs and fills as nested lists).
        """
        if is_account_type(event_type):
            batches = self._account_live.get(event_type.__name__, [])
            table = pa.Table.from_batches(batches, account_arrow_schema(event_type))
            frame = pl.from_arrow(table, rechunk=True)
            assert isinstance(frame, pl.DataFrame)
            return frame
        assert issubclass(event_type, Event)
        live = self._live.get(event_type.__name__)
        if live is None:
            return LiveFrame(event_type, max_rows=1).frame()
        return live.frame()

    def latest(self, event_type: type[Event]) -> pl.DataFrame:
        """The newest event of one type per symbol."""
        live = self._live.get(event_type.__name__)
        if live is None:
            return LiveFrame(event_type, max_rows=1).latest()
        return live.latest()

    # --- SQL over files and the live tail --------------------------------------------------

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection over everything recorded so far: files *and* unconverted rows.

        Like :func:`tastyrec.connect` on the output folder, but each event type's view also
        holds the rows still in the journal (the open file and files waiting for conversion),
        with no row twice across a rotation (argued in :mod:`tastyrec.query._live`). A
        snapshot: call again for newer rows. Call it from the event loop running the recorder
        (it reads the journal, memory-mapped: fast, but blocking).

        Example usage::

            con = recorder.connect()
            con.sql("SELECT event_symbol, count(*) FROM Quote GROUP BY 1").show()

        Raises:
            StorageError: a file or journal segment cannot be read.
        """
        from ..query._live import live_connection

        written, segments = self._tail_snapshot()
        return live_connection(self.root, self.session_id, written, segments)

    def _tail_snapshot(self) -> tuple[set[Path], list[Path]]:
        """(files converted, segments not yet converted), consistent with each other.

        Taken on the event loop, without awaiting: ``_sealed`` and the open segments cannot
        change meanwhile, and a segment leaves ``_sealed`` only after its file is in
        ``self.files``.
        """
        self._flush_user()  # events handed to record() count as received
        with self._stats_lock:
            written = {f.path for f in self.files}
        segments = list(self._sealed)
        segments += [s.journal.path for s in self._sinks.values() if s.journal is not None]
        return written, segments


def _schema_of(cls: type[Any]) -> pa.Schema:
    """The Arrow schema of a market event type or an account payload class."""
    if is_account_type(cls):
        return account_arrow_schema(cast("type[AccountRecord]", cls))
    return arrow_schema(cast("type[Event]", cls))


def _check_event(event: Any) -> None:
    if isinstance(event, Event | AccountEvent | UnknownNotification):
        if isinstance(event, Event) or is_account_type(type(event)):
            return
        raise SchemaError(f"cannot record a {type(event).__name__!r}: not a notification payload")
    name = type(event).__name__
    if name not in EVENT_TYPES:
        raise SchemaError(
            f"cannot record a {name!r}: give tastyrec or tastytrade SDK event objects "
            f"({', '.join(EVENT_TYPES)})"
        )
