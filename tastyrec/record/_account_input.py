"""The recorder's account input: the account streamer's tap and the reconciliation driver.

A mixin of :class:`~tastyrec.record.recorder.Recorder` (whose docstring describes account
streams and reconciliation), kept apart so that the recorder module holds the lifecycle, the
ticker and the conversion path. :class:`InputBase` is what every input shares: journaling a
batch of account payloads with a counted, logged skip of the rows Arrow cannot hold.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.lowlevel
import pyarrow as pa
from anyio.streams.memory import MemoryObjectReceiveStream

from ..account.reconcile import RECONCILED_TYPES, RestClient, StreamKnowledge, fetch_snapshot
from ..exceptions import SchemaError, TastyrecError
from ..storage.account_schema import account_events_to_batch

if TYPE_CHECKING:
    from ..account.protocol import NotificationReceived
    from ..account.streamer import AlertStreamer

__all__ = ("ACCOUNT_BATCH", "RECONCILE_EVERY_S", "AccountInput", "InputBase", "Reconciliation")

logger = logging.getLogger("tastyrec.record.recorder")

#: The most account notifications taken from the tap into one batch.
ACCOUNT_BATCH: Final = 4096
#: How often the reconciliation task looks at the account stream's state and its timer.
RECONCILE_POLL_S: Final = 0.05
#: Default seconds between two reconciliations of the account stream against REST.
RECONCILE_EVERY_S: Final = 300.0

#: (payload, event time in epoch ms or None, receipt time in epoch ns): one account row
AccountRow = tuple[Any, int | None, int]


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


class InputBase:
    """What the recorder's inputs share (the recorder sets these attributes)."""

    _bad_user: int
    _logged: set[str]

    def _ingest(self, event_type: type[Any], batch: pa.RecordBatch) -> None:
        raise NotImplementedError  # the recorder's

    def _skip(self, key: str, message: str, *args: object) -> None:
        """Count a bad value and log it: a warning the first time per ``key``, then debug."""
        self._bad_user += 1
        level = logging.DEBUG if key in self._logged else logging.WARNING
        self._logged.add(key)
        logger.log(level, message, *args)

    def _ingest_account_rows(
        self, cls: type[Any], rows: list[AccountRow], *, from_snapshot: bool = False
    ) -> int:
        """Journal rows of one payload class; a row Arrow cannot hold exactly is skipped
        (:meth:`_skip`), the others kept. Returns the rows journaled."""
        try:
            batch = account_events_to_batch(cls, rows, from_snapshot=from_snapshot)
        except SchemaError:  # one value Arrow cannot hold exactly: keep the others
            good = [r for r in rows if self._account_convertible(cls, r)]
            if not good:
                return 0
            batch = account_events_to_batch(cls, good, from_snapshot=from_snapshot)
        self._ingest(cls, batch)
        return int(batch.num_rows)

    def _account_convertible(self, cls: type[Any], row: AccountRow) -> bool:
        try:
            account_events_to_batch(cls, [row])
        except SchemaError as exc:
            name = cls.__name__
            self._skip(f"account:{name}", "skipped a %s notification: %s", name, exc)
            return False
        return True


class AccountInput(InputBase):
    """The account streamer's tap (never dropped) and reconciliation against REST."""

    account_streamer: AlertStreamer | None
    account_session: RestClient | None
    reconcile_every_s: float | None
    clock: Callable[[], float]
    reconciliations: list[Reconciliation]
    _said: StreamKnowledge
    _reconcile_scope: anyio.CancelScope
    _alert_tap: MemoryObjectReceiveStream[NotificationReceived] | None
    _alerts_done: anyio.Event
    _account_last_ns: int | None
    _consumer_error: TastyrecError | None

    async def _consume_alerts(self, tap: MemoryObjectReceiveStream[NotificationReceived]) -> None:
        """Record every account notification of the tap until it ends (``close_tap``, or the
        account streamer closing), in batches of what is waiting. Shielded, like
        :meth:`~tastyrec.record.recorder.Recorder._consume`."""
        try:
            with anyio.CancelScope(shield=True):
                async for item in tap:
                    items = [item]
                    with contextlib.suppress(
                        anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError
                    ):
                        while len(items) < ACCOUNT_BATCH:
                            items.append(tap.receive_nowait())
                    self._ingest_notifications(items)
        except TastyrecError as exc:  # a full disk: fail the recording, keep the journal
            self._consumer_error = exc
            raise
        finally:
            self._alerts_done.set()

    def _ingest_notifications(self, items: list[NotificationReceived]) -> None:
        """Journal account notifications: one batch per payload class, rows in receipt order."""
        by_class: dict[type[Any], list[AccountRow]] = {}
        said = self._said
        for item in items:
            payload = item.event
            if type(payload) in RECONCILED_TYPES:
                said.note(payload)
            by_class.setdefault(type(payload), []).append(
                (payload, item.timestamp_ms, item.recv_ns)
            )
        for cls, rows in by_class.items():
            self._ingest_account_rows(cls, rows)
        self._account_last_ns = max(self._account_last_ns or 0, items[-1].recv_ns)

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
            await self._settle_alert_tap()  # what the stream said first is not news
            by_class: dict[type[Any], list[AccountRow]] = {}
            for payload in self._said.news(payloads):
                by_class.setdefault(type(payload), []).append((payload, None, recv_ns))
            for cls, rows in by_class.items():
                run.rows += self._ingest_account_rows(cls, rows, from_snapshot=True)
            if by_class:
                self._account_last_ns = max(self._account_last_ns or 0, recv_ns)
        run.ended_ns = time.time_ns()
        logger.info(
            "= reconciled %s against REST (%s): %d rows the stream had not said",
            ", ".join(accounts),
            reason,
            run.rows,
        )

    async def _settle_alert_tap(self) -> None:
        """Return once every notification the account stream has handed over is ingested.

        The consumer is either waiting in ``receive`` (then nothing is in flight: a sender
        hands items to a waiting reader directly, else they wait in the buffer), or woken
        with an item it ingests without awaiting anything: let it run until it waits again,
        then take what is buffered (no await: the consumer cannot interleave).
        """
        tap = self._alert_tap
        if tap is None:
            return
        for _ in range(1000):  # each pass lets the woken consumer run; it takes one or two
            if self._alerts_done.is_set():
                return
            if tap.statistics().tasks_waiting_receive:
                break
            await anyio.lowlevel.checkpoint()
        items: list[NotificationReceived] = []
        with contextlib.suppress(anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            while True:
                items.append(tap.receive_nowait())
        if items:
            self._ingest_notifications(items)
