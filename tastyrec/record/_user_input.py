"""The recorder's third input: events handed over by user code (:meth:`Recorder.record`).

A mixin of :class:`~tastyrec.record.recorder.Recorder`, kept apart so that the recorder module
holds the lifecycle, the ticker and the conversion path. Events are buffered and journaled in
batches (the recorder's ticker flushes them within ~50 ms); the receipt time recorded is the time
of the call; an event whose values do not fit its schema is a counted, logged skip.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..events.account import AccountEvent, UnknownNotification
from ..events.base import Event
from ..events.registry import EVENT_TYPES
from ..exceptions import SchemaError
from ..schema import RECV_COLUMN, RECV_EXACT_COLUMN, receipt_arrays
from ..storage.account_schema import is_account_type
from ._account_input import AccountRow, InputBase

__all__ = ("USER_BATCH", "UserInput", "check_event")

#: Pending user events that trigger a flush without waiting for the ticker.
USER_BATCH = 4096


class UserInput(InputBase):
    """:meth:`record` and :meth:`record_many`, and the flush of what they buffered."""

    _user: list[tuple[Event | Any, int]]
    _user_since: float

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
            check_event(event)
        if not self._user:
            self._user_since = time.monotonic()
        self._user += items
        if len(self._user) >= USER_BATCH:
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
                rows: list[AccountRow] = [(e, None, t) for e, t in zip(events, times, strict=True)]
                self._ingest_account_rows(cls, rows)
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
            key = type(event).__name__
            self._skip(key, "skipped a %s handed to record(): %s", key, exc)
            return False
        return True


def check_event(event: Any) -> None:
    """Refuse what is not an event: :class:`SchemaError` naming what to give instead."""
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
