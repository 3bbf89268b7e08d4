"""One channel's subscriptions of one event type to option symbols, served as one batch.

Role: the simulator's chain-scale path (sans-I/O, like :mod:`.engine`, which owns these). A
channel subscribed to 20,000 options for Quote, Greeks, TheoPrice and Summary holds four
:class:`OptionBatch` objects instead of 80,000 per-symbol subscriptions: each keeps its options
in an :class:`~.options.OptionBook` and a schedule, and yields their events as columns computed
for many options at once (:func:`~.options.columns`), which :mod:`.engine` encodes in bulk.

Schedule: every option gets an event every ``1 / rate`` seconds, spread over the period: the
options are dealt round-robin into ``buckets`` phase groups, bucket ``b`` due at
``anchor + b * period / buckets + k * period``, so a 1 Hz chain gives a twentieth of its
options every 50 ms instead of all of them at once. A new option's first event (the current
value, as for any subscription) comes at the next tick, at most :data:`FRESH_PER_TICK` new
options per flush of the channel (aggregation period), so a 20,000-symbol subscription is
served in slices that never hold the connection's other work up for long. After a stall the
schedule resumes from now (no burst of stale events), like the per-symbol path.

Conflation (the channel's aggregation period) is by generation: :meth:`take` gives each option's
latest generated event only. Values are a function of ``(seed, symbol, time)``: an event
generated at ``t`` is priced when it is taken, as it would have been at ``t``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Final

import numpy as np

from .market import Market
from .options import OptionBook, columns

__all__ = ("FRESH_PER_TICK", "OptionBatch")

#: at most this many newly subscribed options get their first event per flush of the channel
FRESH_PER_TICK: Final = 1_000
#: the period is split into buckets about this far apart (at most _MAX_BUCKETS)
_BUCKET_S: Final = 0.05
_MAX_BUCKETS: Final = 100

_I8 = np.ndarray[Any, np.dtype[np.int64]]
_B1 = np.ndarray[Any, np.dtype[np.bool_]]


class OptionBatch:
    """The options one channel subscribed for one event type (see the module docstring).

    Args:
        name: the event type (one of :data:`~.options.BOOK_TYPES`).
        market: the market pricing them.
        rate_hz: events per option per second (> 0).
        now: epoch seconds; the schedule's anchor.
    """

    def __init__(self, name: str, market: Market, rate_hz: float, now: float) -> None:
        self.name = name
        self.market = market
        self.period = 1.0 / rate_hz
        self.buckets = max(1, min(_MAX_BUCKETS, int(self.period / _BUCKET_S)))
        step = self.period / self.buckets
        self.next_due = [now + step * (b + 1) for b in range(self.buckets)]
        self.book = OptionBook()
        self.index: dict[str, int] = {}
        self._active: _B1 = np.zeros(64, dtype=np.bool_)
        self._ready: _B1 = np.zeros(64, dtype=np.bool_)  #: first event generated
        self._bucket: _I8 = np.zeros(64, dtype=np.int64)
        self._gen: _I8 = np.zeros(64, dtype=np.int64)  #: generation of the latest event
        self._fresh: list[int] = []
        self._fresh_pending = False  #: first events generated and not yet taken
        self._generation = 0
        #: (time ms, generation, options) of the events generated and not yet taken
        self._pending: list[tuple[int, int, _I8]] = []
        self.count = 0  #: options subscribed

    def __contains__(self, symbol: str) -> bool:
        i = self.index.get(symbol)
        return i is not None and bool(self._active[i])

    def _grow(self, n: int) -> None:
        size = len(self._active)
        if n <= size:
            return
        new = max(n, 2 * size)
        for attr in ("_active", "_ready", "_bucket", "_gen"):
            old = getattr(self, attr)
            grown = np.zeros(new, dtype=old.dtype)
            grown[:size] = old
            setattr(self, attr, grown)

    def add(self, symbol: str) -> bool:
        """Subscribe an option symbol; False if ``symbol`` is not one (the caller serves it)."""
        i = self.index.get(symbol)
        if i is None:
            params = self.market.option_params(symbol)
            if params is None:
                return False
            i = self.index[symbol] = self.book.add(params)
            self._grow(i + 1)
            self._bucket[i] = i % self.buckets
        elif self._active[i]:
            return True
        self._active[i] = True
        self._ready[i] = False
        self._fresh.append(i)
        self.count += 1
        return True

    def remove(self, symbol: str) -> bool:
        """Unsubscribe ``symbol``; False if it was not subscribed here."""
        i = self.index.get(symbol)
        if i is None or not self._active[i]:
            return False
        self._active[i] = False
        self._ready[i] = False
        self.count -= 1
        return True

    def clear(self) -> None:
        """Unsubscribe everything (the options stay in the book, inactive)."""
        self._active[:] = False
        self._ready[:] = False
        self._fresh.clear()
        self._pending.clear()
        self._fresh_pending = False
        self.count = 0

    def _generate(self, t_s: float, idx: _I8) -> None:
        if len(idx) == 0:
            return
        self._generation += 1
        self._gen[idx] = self._generation
        self._pending.append((int(t_s * 1000), self._generation, idx))

    def tick(self, now: float) -> None:
        """Generate the events due by ``now``."""
        if self._fresh and not self._fresh_pending:
            self._fresh_pending = True
            fresh = np.unique(np.array(self._fresh[:FRESH_PER_TICK], dtype=np.int64))
            del self._fresh[:FRESH_PER_TICK]
            fresh = fresh[self._active[fresh] & ~self._ready[fresh]]
            self._ready[fresh] = True
            self._generate(now, fresh)
        n = len(self.book)
        for b, due in enumerate(self.next_due):
            if due > now:
                continue
            if now - due > 2.0 + self.period:  # after a stall: no burst of stale events
                due = now
            members: _I8 | None = None
            while due <= now:
                if members is None:
                    members = np.flatnonzero(self._ready[:n] & (self._bucket[:n] == b))
                self._generate(due, members)
                due += self.period
            self.next_due[b] = due

    def next_deadline(self) -> float:
        """When :meth:`tick` has something to do next (epoch s): -inf if now."""
        if self._fresh and not self._fresh_pending:
            return -math.inf
        return min(self.next_due) if self.count else math.inf

    @property
    def pending(self) -> bool:
        """Whether events were generated and not yet taken."""
        return bool(self._pending)

    def take(self) -> Iterator[dict[str, list[Any] | Any]]:
        """The events generated since the last call, as columns (one dict per instant), each
        option's latest only; the unsubscribed ones are left out."""
        pending, self._pending = self._pending, []
        self._fresh_pending = False
        for t_ms, generation, idx in pending:
            keep = idx[(self._gen[idx] == generation) & self._active[idx]]
            if len(keep):
                yield columns(self.book, self.market, self.name, keep, t_ms)
