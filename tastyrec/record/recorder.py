"""Recorder: a DXLinkStreamer's columnar tap (and events from user code) -> journal -> Parquet.

An async context manager. It records every batch the streamer's tap yields, for all its
subscriptions, and events handed to :meth:`Recorder.record` (tastyrec's event Structs or the
tastytrade SDK's event objects). Per event type, batches go to an :class:`~.sink.EventSink` (the
journal, rotation) and to a :class:`~tastyrec.live.LiveFrame`; sealed journal segments are turned
into Parquet in a worker thread. The crash-safety argument is in :mod:`tastyrec.record.sink`.
Snapshot markers (the one event of an empty candle snapshot, eventFlags 14) carry no data and are
left out before all that (:mod:`tastyrec.record._snapshots`).

Bookkeeping tables (``_sessions``, ``_gaps``): :mod:`tastyrec.storage.bookkeeping`. Session
locks and crash recovery: :mod:`tastyrec.record.recovery`. SQL over the files and the journal tail
(:meth:`Recorder.connect`): :mod:`tastyrec.record.live_sql`.

Account streams. Given an :class:`~tastyrec.account.AlertStreamer` too (``account_streamer=``),
the recorder reads its :meth:`~tastyrec.account.AlertStreamer.tap` (every notification, never
dropped) and writes each payload class to its own table named after the class (``PlacedOrder``,
``AccountBalance``, ``CurrentPosition``..., ``UnknownNotification`` for types tastyrec does not
know), with the Arrow schema of :mod:`tastyrec.storage.account_schema`, through the same sinks,
journal, rotation and recovery as market data, on the same ``recv_ns`` axis. The account
streamer's disconnects are rows of the gaps table (``stream = 'account'``), read from its
:attr:`~tastyrec.account.AlertStreamer.gaps` as the DXLink ones are from the DXLink streamer's.

Reconciliation (docs/account-streamer.md#lost-order-events). Given a REST
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

Both taps are read by a shielded task that is never cancelled (cancelling a task in
``receive`` can lose the item being handed to it); it stops when the streamer's ``close_tap``
ends the tap.

Layout: this module holds the lifecycle, the DXLink tap, the ticker (rotation by age, fsync,
gaps) and the conversion path; the account tap and the reconciliation driver are
:mod:`._account_input`'s, the user-event input :mod:`._user_input`'s (mixins: the three inputs
share the ingest path, the sinks and the counters of one object). Size: a little over 600
lines, of which this docstring and the class's are a sixth.

Deviation from the house style (docs/performance.md#threads says why): the Parquet conversion runs
in a worker thread; journal appends run on the event loop (one ``write`` into the page cache each),
which keeps batches in receipt order without a lock. ``fsync`` runs in the worker thread on a
duplicated descriptor.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, cast
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.lowlevel
import polars as pl
import pyarrow as pa
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

from .._taskgroup import leave_group
from .._version import __version__
from ..account.reconcile import RestClient, StreamKnowledge
from ..dxlink.compact import ColumnBatch
from ..dxlink.protocol import contract_for
from ..dxlink.streamer import Gap
from ..events.account import AccountEvent
from ..events.base import Event
from ..exceptions import StorageError, TastyrecError
from ..live import LiveFrame
from ..schema import (
    SCHEMA_VERSION,
    arrow_schema,
    receipt_ns,
)
from ..storage.account_schema import (
    AccountRecord,
    account_arrow_schema,
    is_account_type,
)
from ..storage.bookkeeping import ACCOUNT_STREAM, DXLINK_STREAM, GapRow, SessionRow, write_gaps
from ..storage.journal import FsyncPolicy
from ._account_input import RECONCILE_EVERY_S, AccountInput, Reconciliation
from ._snapshots import SnapshotMarkers
from ._user_input import UserInput
from .account_window import AccountWindow
from .live_sql import live_connection, live_views, read_tail, remove_stale_snapshots
from .recovery import RecoveryReport, SessionLock, lock_path, marker_path, recover
from .sink import EventSink, RotationPolicy, WrittenFile, convert_segment, prune_journal
from .status import RecorderStats, UploadBacklog
from .upload import (
    Uploader,
    UploadRetry,
    UploadsPending,
    default_journal_dir,
    pending_message,
    s3_destination,
    uploaded_counter,
)

if TYPE_CHECKING:
    import duckdb

    from .._stream import StreamShell
    from ..account.protocol import NotificationReceived
    from ..account.streamer import AlertStreamer
    from ..dxlink.streamer import DXLinkStreamer

__all__ = ("SCHEMA_VERSION", "Reconciliation", "Recorder", "RecoveryReport", "recover")

logger = logging.getLogger(__name__)

#: How often the recorder checks rotation by age, pending user events and gaps.
TICK_S: Final = 0.05


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


# --- the recorder --------------------------------------------------------------------------


class Recorder(AccountInput, UserInput):
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
        out: the recording folder (created if needed), or ``s3://bucket/prefix``: the journal
            and each Parquet file stay in ``journal`` until a worker thread has uploaded the
            file (:mod:`tastyrec.record.upload`); leaving the block waits
            ``upload_timeout_s`` at most for the uploads, then raises
            :class:`~tastyrec.record.upload.UploadsPending` if files are left (safe in
            ``journal``; ``tastyrec recover --journal DIR --out s3://…`` uploads them).
        streamer: a :class:`~tastyrec.dxlink.streamer.DXLinkStreamer` to record through its
            columnar tap; ``None`` to record only what :meth:`record` is given.
        account_streamer: an :class:`~tastyrec.account.AlertStreamer` to record through its
            :meth:`~tastyrec.account.AlertStreamer.tap` (what it subscribes to, now or later);
            ``None`` for none. Its :attr:`~tastyrec.account.AlertStreamer.gaps` are the
            ``account`` rows of the gaps table.
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
        journal: with an ``s3://`` ``out``, the local folder of the journal and of the files
            waiting for upload (default: :func:`~tastyrec.record.upload.default_journal_dir`).
        upload_retry: the uploader's backoff between failed attempts (never gives up while
            recording).
        upload_timeout_s: how long leaving the block waits for the last uploads.
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
        journal: str | os.PathLike[str] | None = None,
        upload_retry: UploadRetry | None = None,
        upload_timeout_s: float = 300.0,
    ) -> None:
        from .._location import recording_path  # another URL is refused, not made a folder

        #: the bucket and prefix recorded into (``out="s3://…"``), else ``None``
        self.destination = s3_destination(out)
        self._uploader: Uploader | None = None
        self.upload_timeout_s = upload_timeout_s
        if self.destination is None:
            self.root = recording_path(out)
        else:  # journal and Parquet files stay local until uploaded (tastyrec.record.upload)
            self.root = (
                Path(journal) if journal is not None else default_journal_dir(self.destination)
            )
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
        self.rotation = rotation or RotationPolicy()
        self.fsync = FsyncPolicy(fsync)
        self.fsync_interval_s = fsync_interval_s
        self.live_rows = live_rows
        self.live_age_s = live_age_s
        self.recover = recover
        self.session_id = secrets.token_hex(4)
        self.stats = RecorderStats(started_ns=time.time_ns())
        if self.destination is not None:
            self._uploader = Uploader(
                self.root,
                self.destination,
                live_session=self.session_id,
                retry=upload_retry or UploadRetry(),
                backlog=UploadBacklog(),
            )
            self.stats.upload = self._uploader.backlog
        #: Parquet files written by this recorder, oldest first
        self.files: list[WrittenFile] = []
        #: what the start-up recovery did (None until entered, or with recover=False)
        self.recovered: RecoveryReport | None = None
        self._symbols = list(symbols)
        self._sinks: dict[str, EventSink] = {}
        self._live: dict[str, LiveFrame] = {}
        self._session: SessionRow | None = None
        self._lock: SessionLock | None = None
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
        self._account_last_ns: int | None = None
        self._account_live = AccountWindow(live_rows)
        self._last_sync = time.monotonic()
        self._bad_user = 0
        self._logged: set[str] = set()
        self._markers = SnapshotMarkers()

    @property
    def account_gaps(self) -> list[Gap]:
        """The account streamer's breaks, oldest first (its ``gaps``, like
        ``DXLinkStreamer.gaps``)."""
        return [] if self.account_streamer is None else self.account_streamer.gaps

    def __repr__(self) -> str:
        return f"Recorder(out={str(self.root)!r}, session={self.session_id!r})"

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._lock = SessionLock(lock_path(self.root, self.session_id))
        except OSError as exc:
            raise StorageError(
                f"cannot write to the output folder {str(self.root)!r}: "
                f"{exc.strerror or exc}; choose another folder or fix its permissions"
            ) from exc
        try:
            if self._uploader is not None:  # live SQL links a crashed process left behind
                remove_stale_snapshots(self.root)
            if self.recover:
                uploaded = None if self._uploader is None else uploaded_counter(self._uploader)
                self.recovered = await anyio.to_thread.run_sync(
                    functools.partial(recover, self.root, uploaded=uploaded)
                )
            self._session = SessionRow(self.session_id, self.stats.started_ns, self.source)
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
            tg.start_soon(self._consume_alerts, self._alert_tap)
            if self.account_session is not None:
                tg.start_soon(self._reconcile_loop)
        tg.start_soon(self._ticker, self._ticker_scope)
        tg.start_soon(self._converter)
        if self._uploader is not None:
            self._uploader.start()
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
            if self._uploader is not None:
                pending = await anyio.to_thread.run_sync(self._finish_uploads)
                if pending is not None and error is None:
                    error = pending
        self._tg.cancel_scope.cancel()
        try:
            result = await leave_group(self._tg, exc_type, exc, tb)
        finally:
            self._tg = None
            if self._lock is not None:
                marker = marker_path(self.root, self.session_id, self._session.status)
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
            inputs = (
                (self.streamer, self._tap, self._consumer_done),
                (self.account_streamer, self._alert_tap, self._alerts_done),
            )
            for streamer, tap, done in inputs:
                if streamer is not None and tap is not None:
                    await self._end_tap(streamer, tap, done)
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

    async def _end_tap(
        self, streamer: StreamShell[Any], tap: MemoryObjectReceiveStream[Any], done: anyio.Event
    ) -> None:
        """End a streamer's tap (what it received is flushed into it first) and wait for its
        reader, which drains it to its end and sets ``done``; 10 s at most for each."""
        try:
            with anyio.move_on_after(10):  # the tap ends even if this times out
                # (no reader left after a failure: nothing to flush into)
                await streamer.close_tap(tap, flush=not done.is_set())
            with anyio.move_on_after(10):
                await done.wait()
        finally:
            tap.close()
        if self._consumer_error is not None:
            raise self._consumer_error

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
        written = convert_segment(self.root, segment, keep_segment=self._uploader is not None)
        self._converted.add(segment)
        if written is None:
            return
        if self._uploader is not None:
            self._uploader.wake(written.path)
        with self._stats_lock:
            self.files.append(written)
            self.stats.files += 1
            self.stats.bytes_written += written.bytes
            self.stats.rows_written += written.rows
        logger.info("= wrote %s (%d rows, %d bytes)", written.path, written.rows, written.bytes)

    def _finish_uploads(self) -> UploadsPending | None:
        """Wait (``upload_timeout_s`` at most, logging progress) until everything is uploaded,
        then stop the uploader; the error to raise if files are left (in a worker thread)."""
        uploader = self._uploader
        assert uploader is not None
        uploader.forget_live_session()
        logged = [0.0]

        def progress(backlog: UploadBacklog) -> None:
            now = time.monotonic()
            if backlog.files and now - logged[0] >= 5.0:
                logged[0] = now
                logger.info("= waiting for uploads: %s", backlog.line())

        try:
            done = uploader.wait_clean(self.upload_timeout_s, progress)
        finally:
            uploader.stop()
        if done:
            prune_journal(self.root)
            return None
        return UploadsPending(pending_message(uploader.backlog, self.root))

    def _bookkeeping_written(self) -> None:
        """A bookkeeping table of this session changed (the chain recorder's
        ``_subscriptions``): recording into ``s3://…``, the uploader looks now (thread-safe)."""
        if self._uploader is not None:
            self._uploader.wake()

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
            self._account_live.add(name, batch)
        else:
            self._live[name].add(batch)

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
        gaps = [
            GapRow(g.last_received_ns, g.disconnected_ns, g.resumed_ns, g.reason, stream)
            for stream, gs in (
                (DXLINK_STREAM, self.streamer.gaps if self.streamer else []),
                (ACCOUNT_STREAM, self.account_gaps),
            )
            for g in gs
        ]
        write_gaps(self.root, self.session_id, self._session.start_ns, gaps)

    # --- live frame ------------------------------------------------------------------------

    def frame(self, event_type: type[Event] | type[AccountEvent]) -> pl.DataFrame:
        """Recent events of one type held in memory (bounded by ``live_rows``/``live_age_s``).

        For an account payload class: its newest ``live_rows`` rows, with the columns of its
        table (legs and fills as nested lists).
        """
        if is_account_type(event_type):
            return self._account_live.frame(cast("type[AccountRecord]", event_type))
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
        with no row twice across a rotation (argued in :mod:`tastyrec.record.live_sql`). A
        snapshot: call again for newer rows. Call it from the event loop running the recorder
        (it reads the journal, memory-mapped: fast, but blocking; DuckDB then reads each
        file's footer to make the views, which on many files or on ``s3://`` takes long
        enough to hold up the recording: :meth:`aconnect` does that in a worker thread).

        Recording into ``s3://…``: the views hold the bucket's files (this recording's
        uploaded ones and every other recorder's under the prefix), the files waiting for
        upload in the journal dir and the journal rows, each row once (the same module's
        argument); listing the bucket makes it a few requests slower, and a store that cannot
        be listed raises :class:`~tastyrec.objectstore.ObjectStoreError`. The files waiting
        for upload are hard-linked into ``<journal dir>/_live/`` for as long as the connection
        exists, so a query still reads them once the uploader has deleted them.

        Example usage::

            con = recorder.connect()
            con.sql("SELECT event_symbol, count(*) FROM Quote GROUP BY 1").show()

        Raises:
            StorageError: a file or journal segment cannot be read (``ObjectStoreError``: the
                bucket could not be listed).
        """
        written, segments = self._tail_snapshot()
        return live_connection(
            self.root, self.session_id, written, segments, store=self.destination
        )

    async def aconnect(self) -> duckdb.DuckDBPyConnection:
        """:meth:`connect` without holding up the recording: the snapshot and the journal are
        read on the event loop (fast), the listings and DuckDB's reading of the files'
        footers to make the views run in a worker thread. Use it on a long recording or one
        into ``s3://…``, where making the views takes seconds (a footer request per object).

        Example usage::

            con = await recorder.aconnect()
            con.sql("SELECT event_symbol, count(*) FROM Quote GROUP BY 1").show()

        Raises:
            StorageError: as :meth:`connect`.
        """
        written, segments = self._tail_snapshot()
        tail = read_tail(self.root, written, segments)
        build = functools.partial(
            live_views, self.root, self.session_id, written, tail, store=self.destination
        )
        return await anyio.to_thread.run_sync(build)

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

