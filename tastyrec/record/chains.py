"""ChainRecorder: option chains around the money, re-centred as the underlyings move.

Role: given a session (chains over REST) and a :class:`~tastyrec.dxlink.streamer.DXLinkStreamer`
(market data), keep each underlying's options within ``strikes`` strikes either side of its
price subscribed, for every expiry within a DTE range, and record every change of subscription
as data. Recording the events themselves is the :class:`~tastyrec.record.recorder.Recorder`'s
job: it records every subscription of the streamer, so the options this class subscribes are
recorded as they come and go.

How it follows the market:

1. Subscribes each underlying (``Quote`` always: its mid is the price followed, plus
   ``underlying_events``) and fetches its chain (``/option-chains/{symbol}/nested``).
2. On the underlying's first usable quote (bid and ask positive and finite), chooses the options
   with :func:`~tastyrec.chain.select_strikes` around the mid and subscribes them for
   ``event_types`` (default Greeks, Quote, Summary).
3. **Re-centring rule.** The mid at the last selection is the *centre*. When the mid is
   ``threshold`` or more away from it, the selection is made again around the new mid, the new
   symbols subscribed first and then the ones that left unsubscribed (the overlap is untouched:
   no hole in its data). ``threshold`` is ``recentre_strikes`` strike spacings (the smallest
   spacing among the strikes selected). By default ``recentre_strikes`` is
   ``min(2, strikes / 2)`` and never below one half: with N strikes a side the money is never
   more than 2 strikes off the window's centre, at least N - 2 strikes stay on the far side, and
   a price wobbling around one strike (the common case) causes no churn, since it takes a move
   of two spacings from the centre, not the crossing of a strike, to re-centre.
4. Every ``chain_refresh_s`` (checked when the price updates) the chain is fetched again and the
   selection re-made (expirations roll over: yesterday's 0DTE goes, a new 45DTE comes).

Bookkeeping table: ``<root>/_subscriptions/<name>.parquet`` (``<name>`` is the recording
session's, as in ``_sessions``; ``<root>`` is the recorder's folder, or with a recorder into
``s3://…`` its local journal dir, whose uploader mirrors each new version of the table into the
bucket as it does ``_sessions``), one row per symbol and event type subscribed or unsubscribed:
``time`` (UTC, µs), ``session_id``, ``underlying``, ``action`` (``subscribe``/``unsubscribe``),
``event_type``, ``symbol``, ``reason`` (``initial``, ``recentre``, ``chain``, ``close``) and
``price`` (the underlying's mid that led to it). Rewritten atomically
(:mod:`tastyrec.storage.bookkeeping`) at most once per ``write_interval_s`` and when the block is
left, like ``_sessions``.

The price comes from a tap of the streamer (:meth:`DXLinkStreamer.tap`), filtered to the
underlyings' quotes, so the streamer may have no listener queues (``queue_size=0``, as the
recorder uses it). The tap never drops and holds the streamer back when full: the task reading it
only notes prices; REST calls and subscription changes run in other tasks.

Symbols already subscribed for an event type before the recorder started (e.g. ``--symbols``)
are never unsubscribed by it. Leaving the block unsubscribes what it subscribed (``close``).

Imports no websockets and no HTTP client: I/O goes through the session and the streamer.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import anyio
import pyarrow as pa
import pyarrow.compute as pc
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream

from .._taskgroup import leave_group, start_in_group
from ..chain import Option, get_option_chain, select_strikes
from ..dxlink.compact import ColumnBatch
from ..events.base import Event
from ..events.market import Greeks, Quote, Summary
from ..exceptions import ApiError, CredentialsError, LocalProtocolError, UnsupportedLocation
from ..storage.bookkeeping import (
    SUBSCRIPTION_SCHEMA,
    SubscriptionChange,
    subscriptions_path,
    write_subscriptions,
)
from ..storage.layout import SUBSCRIPTIONS_DIR

if TYPE_CHECKING:
    from ..dxlink.streamer import DXLinkStreamer
    from ..session import Session
    from .recorder import Recorder
    from .sink import RotationPolicy

__all__ = (
    "DEFAULT_CHAIN_EVENTS",
    "DEFAULT_UNDERLYING_EVENTS",
    "SUBSCRIPTIONS_DIR",
    "SUBSCRIPTION_SCHEMA",
    "ChainRecorder",
    "SubscriptionChange",
    "record_chains",
    "recentre_threshold",
)

logger = logging.getLogger(__name__)

#: Event types recorded for the options of a chain by default.
DEFAULT_CHAIN_EVENTS: Final[tuple[type[Event], ...]] = (Greeks, Quote, Summary)
#: Event types recorded for the underlyings by default (Quote is always subscribed).
DEFAULT_UNDERLYING_EVENTS: Final[tuple[type[Event], ...]] = (Quote, Summary)
SUBSCRIBE: Final = "subscribe"
UNSUBSCRIBE: Final = "unsubscribe"


def recentre_threshold(
    options: Iterable[Option], strikes: int, recentre_strikes: float | None = None
) -> float:
    """How far (in price) the mid may move from the centre before the chain is re-centred.

    ``recentre_strikes`` strike spacings, the spacing being the smallest gap between the distinct
    strikes of ``options``; by default ``recentre_strikes`` is ``min(2, strikes / 2)``, at least
    one half. ``inf`` when fewer than two strikes are selected (nothing to re-centre).
    """
    if recentre_strikes is None:
        recentre_strikes = max(0.5, min(2.0, strikes / 2))
    grid = sorted({float(o.strike_price) for o in options})
    gaps = [b - a for a, b in zip(grid, grid[1:], strict=False) if b > a]
    if not gaps:
        return math.inf
    return recentre_strikes * min(gaps)


@dataclass
class _Followed:
    """What is known of one underlying."""

    symbol: str
    chain: dict[date, list[Option]] | None = None
    chain_fetched: float = 0.0  #: monotonic seconds
    mid: float | None = None
    centre: float | None = None
    selected: tuple[Option, ...] = ()
    threshold: float = math.inf


class ChainRecorder:
    """Keep option chains around the money subscribed on a streamer, re-centred as prices move.

    Example usage::

        async with Session() as session, DXLinkStreamer(session, queue_size=0) as streamer:
            async with Recorder("data", streamer) as recorder, ChainRecorder(
                session, streamer, ["SPY", "SPX"], dte=(0, 45), strikes=20, recorder=recorder
            ) as chains:
                print(len(chains.symbols()), "options")
                await anyio.sleep(3600)

    Entering subscribes the underlyings, fetches their chains and waits (at most
    ``ready_timeout_s``) until every underlying has a price and its first selection subscribed;
    an underlying without a quote by then is followed from its first quote on (logged).

    Args:
        session: :class:`~tastyrec.session.Session` (or the tastytrade SDK's) for the chains.
        streamer: the streamer to subscribe on (typically the one a ``Recorder`` records).
        underlyings: e.g. ``["SPY", "SPX"]``; SPX's chain has both roots (SPX and SPXW).
        dte: days to expiration, inclusive range (as counted by tastytrade when fetched).
        strikes: strikes kept on each side of the price, per expiry and root.
        event_types: recorded for each option.
        underlying_events: recorded for each underlying (``Quote`` is always added).
        recentre_strikes: re-centre after a move of this many strike spacings (see the module
            docstring; default ``min(2, strikes / 2)``).
        recorder: where the ``_subscriptions`` table goes (its folder and session id; a
            recorder into ``s3://…`` uploads it). Leave this block before the recorder's, as
            :func:`record_chains` does: the table's last version is written on leaving, and a
            recorder into ``s3://…`` that has already stopped leaves it in its journal dir.
        out: the folder for the ``_subscriptions`` table when there is no ``recorder`` (a
            local folder: a URL raises :class:`~tastyrec.exceptions.UnsupportedLocation`);
            with neither, changes are only kept in :attr:`changes`.
        chain_refresh_s: fetch the chains again after this long (expirations roll over).
        refresh_interval: DXLink aggregation period of the channels opened for these types.
        ready_timeout_s: longest wait on entering for the first selections.
        write_interval_s: the table is rewritten at most this often while running.
    """

    def __init__(
        self,
        session: Session | Any,
        streamer: DXLinkStreamer,
        underlyings: Sequence[str],
        *,
        dte: tuple[int, int] = (0, 45),
        strikes: int = 10,
        event_types: Sequence[type[Event]] = DEFAULT_CHAIN_EVENTS,
        underlying_events: Sequence[type[Event]] = DEFAULT_UNDERLYING_EVENTS,
        recentre_strikes: float | None = None,
        recorder: Recorder | None = None,
        out: str | os.PathLike[str] | None = None,
        chain_refresh_s: float = 3600.0,
        refresh_interval: float = 0.1,
        ready_timeout_s: float = 30.0,
        write_interval_s: float = 1.0,
    ) -> None:
        names = list(dict.fromkeys(u.strip().upper() for u in underlyings if u.strip()))
        if not names:
            raise LocalProtocolError("give at least one underlying, e.g. ['SPY']")
        if strikes < 1:
            raise LocalProtocolError(f"strikes must be >= 1, not {strikes!r}")
        if recentre_strikes is not None and not recentre_strikes > 0:
            raise LocalProtocolError(f"recentre_strikes must be > 0, not {recentre_strikes!r}")
        self.session = session
        self.streamer = streamer
        self.underlyings = names
        self.dte = dte
        self.strikes = strikes
        self.event_types: tuple[type[Event], ...] = tuple(dict.fromkeys(event_types))
        both: list[type[Event]] = [Quote, *underlying_events]
        self.underlying_events: tuple[type[Event], ...] = tuple(dict.fromkeys(both))
        self.recentre_strikes = recentre_strikes
        self.recorder = recorder
        self.chain_refresh_s = chain_refresh_s
        self.refresh_interval = refresh_interval
        self.ready_timeout_s = ready_timeout_s
        self.write_interval_s = write_interval_s
        if recorder is not None:
            self.root: Path | None = recorder.root
            self.session_id = recorder.session_id
            start_ns = recorder.stats.started_ns
        else:
            self.root = _table_folder(out) if out is not None else None
            self.session_id = secrets.token_hex(4)
            start_ns = time.time_ns()
        #: the table file (None: kept in memory only)
        self.path: Path | None = (
            subscriptions_path(self.root, start_ns, self.session_id)
            if self.root is not None
            else None
        )
        #: every subscription change, oldest first (the rows of the table)
        self.changes: list[SubscriptionChange] = []
        #: re-centres made (after the initial selections), per underlying
        self.recentres: dict[str, int] = dict.fromkeys(names, 0)
        self._followed = {u: _Followed(u) for u in names}
        self._moved = {u: anyio.Event() for u in names}
        self._ready = {u: anyio.Event() for u in names}
        self._wanted = pa.array(names, pa.string())
        self._preexisting: set[tuple[str, str]] = set()
        #: (event type, symbol) -> underlying, for what was subscribed here
        self._ours: dict[tuple[str, str], str] = {}
        self._lock = anyio.Lock()  # one change of subscriptions at a time
        self._dirty = anyio.Event()
        self._written = 0
        self._tap: MemoryObjectReceiveStream[ColumnBatch] | None = None
        self._tg: TaskGroup | None = None

    def __repr__(self) -> str:
        return f"ChainRecorder(underlyings={self.underlyings!r}, strikes={self.strikes!r})"

    # --- what is followed ------------------------------------------------------------------

    @property
    def selected(self) -> dict[str, list[Option]]:
        """The options subscribed now, per underlying."""
        return {u: list(f.selected) for u, f in self._followed.items()}

    @property
    def centre(self) -> dict[str, float]:
        """The price each underlying's selection was made around."""
        return {u: f.centre for u, f in self._followed.items() if f.centre is not None}

    @property
    def mid(self) -> dict[str, float]:
        """Each underlying's latest mid price."""
        return {u: f.mid for u, f in self._followed.items() if f.mid is not None}

    def threshold(self, underlying: str) -> float:
        """The move from the centre that re-centres ``underlying`` (``inf`` before a selection)."""
        return self._followed[underlying].threshold

    def symbols(self) -> list[str]:
        """Every option symbol subscribed now."""
        return [o.streamer_symbol for f in self._followed.values() for o in f.selected]

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        subs = self.streamer.protocol.subscriptions
        self._preexisting = {(name, key[1]) for name, keys in subs.items() for key in keys}
        self._tg = anyio.create_task_group()
        await start_in_group(self._tg, self._run, cleanup=self._close_tap)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        try:
            with anyio.CancelScope(shield=True):
                await self._close_tap()
                with anyio.move_on_after(5):
                    await self._unsubscribe_all()
                if self.path is not None and self.changes:
                    try:
                        await anyio.to_thread.run_sync(self._write, list(self.changes))
                    except OSError as error:
                        logger.warning("could not write the subscriptions table: %s", error)
            return await leave_group(self._tg, exc_type, exc, tb)
        finally:
            self._tg = None

    async def aclose(self) -> None:
        """Stop following (subscriptions are removed when the ``async with`` block is left)."""
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def _close_tap(self) -> None:
        tap, self._tap = self._tap, None
        if tap is not None:  # a tap left open would hold the streamer back once full
            await self.streamer.close_tap(tap, flush=False)
            tap.close()

    async def _run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self._tap = self.streamer.tap()
            tg.start_soon(self._watch_prices, self._tap)
            for u in self.underlyings:
                await self._subscribe(u, [u], "initial", None, self.underlying_events)
            for underlying in self.underlyings:
                tg.start_soon(self._follow, self._followed[underlying])
            if self.path is not None:
                tg.start_soon(self._writer)
            with anyio.move_on_after(self.ready_timeout_s):
                for event in self._ready.values():
                    await event.wait()
            late = [u for u, e in self._ready.items() if not e.is_set()]
            if late:
                logger.warning(
                    "= no chain around the money for %s within %.0f s (no quote or no chain "
                    "yet); they are followed as soon as both are in",
                    ", ".join(late),
                    self.ready_timeout_s,
                )
            task_status.started()

    # --- prices ----------------------------------------------------------------------------

    async def _watch_prices(self, tap: MemoryObjectReceiveStream[ColumnBatch]) -> None:
        """Note the underlyings' mids from every Quote batch (and nothing else: never blocks)."""
        async for item in tap:
            if item.event_type is not Quote:
                continue
            self.note_quotes(item.batch)

    def note_quotes(self, batch: pa.RecordBatch) -> None:
        """Take the underlyings' mid prices from a batch of Quote rows (tap schema)."""
        mask = pc.is_in(batch.column("event_symbol"), value_set=self._wanted)
        if not pc.any(mask).as_py():
            return
        rows = batch.filter(mask)
        names = rows.column("event_symbol").to_pylist()
        bids = rows.column("bid_price").to_pylist()
        asks = rows.column("ask_price").to_pylist()
        for name, bid, ask in zip(names, bids, asks, strict=True):
            if bid is None or ask is None or not (0 < bid <= ask < math.inf):
                continue  # one-sided or NaN: not a price to centre on
            self._followed[name].mid = (bid + ask) / 2
            self._moved[name].set()

    # --- following -------------------------------------------------------------------------

    async def _follow(self, f: _Followed) -> None:
        await self._fetch_chain(f, initial=True)
        while True:
            await self._moved[f.symbol].wait()
            self._moved[f.symbol] = anyio.Event()
            mid = f.mid
            assert mid is not None
            reason: str | None = None
            if f.centre is None:
                reason = "initial"
            elif time.monotonic() - f.chain_fetched >= self.chain_refresh_s:
                if await self._fetch_chain(f, initial=False):
                    reason = "chain"
            if reason is None and f.centre is not None and abs(mid - f.centre) >= f.threshold:
                reason = "recentre"
            if reason is not None:
                await self.recentre(f.symbol, mid, reason=reason)
                self._ready[f.symbol].set()

    async def _fetch_chain(self, f: _Followed, *, initial: bool) -> bool:
        """Fetch ``f``'s chain; a failure is fatal at the start, else logged (old chain kept)."""
        try:
            chain = await get_option_chain(self.session, f.symbol)
        except CredentialsError:
            raise
        except ApiError as exc:
            if initial:
                raise
            logger.warning(
                "= could not refresh the %s chain (%s); keeping the old one", f.symbol, exc
            )
            f.chain_fetched = time.monotonic()  # retried after another chain_refresh_s
            return False
        f.chain = chain
        f.chain_fetched = time.monotonic()
        if not chain:
            logger.warning("= %s has no option expirations", f.symbol)
        return True

    async def recentre(
        self, underlying: str, price: float | None = None, *, reason: str = "recentre"
    ) -> tuple[list[str], list[str]]:
        """Select ``underlying``'s options around ``price`` (default: its latest mid) now.

        New symbols are subscribed before the ones that left are unsubscribed; both are rows of
        the ``_subscriptions`` table.

        Returns:
            (symbols subscribed, symbols unsubscribed).

        Raises:
            LocalProtocolError: no chain or no price yet for ``underlying``.
        """
        f = self._followed[underlying]
        price = f.mid if price is None else price
        if f.chain is None or price is None:
            raise LocalProtocolError(f"no chain or no price yet for {underlying!r}")
        async with self._lock:
            chosen = tuple(select_strikes(f.chain, price, self.strikes, self.dte))
            old = [o.streamer_symbol for o in f.selected]
            new = [o.streamer_symbol for o in chosen]
            old_set, new_set = set(old), set(new)
            added = [s for s in new if s not in old_set]
            removed = [s for s in old if s not in new_set]
            await self._subscribe(underlying, added, reason, price)
            await self._unsubscribe(underlying, removed, reason, price)
            if f.centre is not None and (added or removed):
                self.recentres[underlying] += 1
            f.selected, f.centre = chosen, price
            f.threshold = recentre_threshold(chosen, self.strikes, self.recentre_strikes)
        if added or removed:
            logger.info(
                "= %s %s around %.2f: +%d -%d options (%d followed, next at +/-%.2f)",
                reason,
                underlying,
                price,
                len(added),
                len(removed),
                len(chosen),
                f.threshold,
            )
        return added, removed

    async def _subscribe(
        self,
        underlying: str,
        symbols: list[str],
        reason: str,
        price: float | None,
        event_types: Sequence[type[Event]] | None = None,
    ) -> None:
        if not symbols:
            return
        for cls in self.event_types if event_types is None else event_types:
            name = cls.__name__
            # noted first: a cancellation within the call still leaves it to be unsubscribed
            self._ours.update(((name, s), underlying) for s in symbols)
            await self.streamer.subscribe(cls, symbols, self.refresh_interval)
            self._note(underlying, SUBSCRIBE, name, symbols, reason, price)

    async def _unsubscribe(
        self,
        underlying: str,
        symbols: list[str],
        reason: str,
        price: float | None,
        event_types: Sequence[type[Event]] | None = None,
    ) -> None:
        for cls in self.event_types if event_types is None else event_types:
            name = cls.__name__
            # never take away what someone else subscribed before we started
            mine = [s for s in symbols if (name, s) not in self._preexisting]
            if not mine:
                continue
            await self.streamer.unsubscribe(cls, mine)
            for s in mine:
                self._ours.pop((name, s), None)
            self._note(underlying, UNSUBSCRIBE, name, mine, reason, price)

    async def _unsubscribe_all(self) -> None:
        """Unsubscribe everything subscribed here (options first, then the underlyings)."""
        async with self._lock:
            for f in self._followed.values():
                f.selected = ()
            by_key: dict[tuple[str, str], list[str]] = {}
            for (name, symbol), underlying in self._ours.items():
                by_key.setdefault((underlying, name), []).append(symbol)
            classes = {cls.__name__: cls for cls in (*self.event_types, *self.underlying_events)}
            ordered = sorted(by_key.items(), key=lambda kv: (kv[1] == [kv[0][0]], kv[0]))
            for (underlying, name), symbols in ordered:
                price = self._followed[underlying].mid
                await self._unsubscribe(underlying, symbols, "close", price, (classes[name],))

    def _note(
        self,
        underlying: str,
        action: str,
        event_type: str,
        symbols: list[str],
        reason: str,
        price: float | None,
    ) -> None:
        now = time.time_ns()
        self.changes.extend(
            SubscriptionChange(now, underlying, action, event_type, s, reason, price)
            for s in symbols
        )
        self._dirty.set()

    # --- the table -------------------------------------------------------------------------

    async def _writer(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty = anyio.Event()
            if len(self.changes) != self._written:
                await anyio.to_thread.run_sync(self._write, list(self.changes))
            await anyio.sleep(self.write_interval_s)

    def _write(self, changes: list[SubscriptionChange]) -> None:
        assert self.path is not None
        write_subscriptions(self.path, self.session_id, changes)
        self._written = len(changes)
        if self.recorder is not None:  # recording into s3://: upload the new version now
            self.recorder._bookkeeping_written()


def _table_folder(out: str | os.PathLike[str]) -> Path:
    """The local folder ``out`` (a URL is refused, never made a folder named ``s3:``)."""
    from .._location import recording_path

    try:
        return recording_path(out)
    except UnsupportedLocation as exc:
        raise UnsupportedLocation(
            f"{exc}. To record chains into object storage, give recorder=Recorder('s3://…'): "
            "its journal dir holds the _subscriptions table and its uploader carries it"
        ) from None


# --- the command line's entry points ---------------------------------------------------------


async def record_chains(
    out: str | os.PathLike[str],
    session: Session | Any,
    underlyings: Sequence[str],
    *,
    dte: tuple[int, int] = (0, 45),
    strikes: int = 10,
    event_types: Sequence[type[Event]] = DEFAULT_CHAIN_EVENTS,
    underlying_events: Sequence[type[Event]] = DEFAULT_UNDERLYING_EVENTS,
    duration_s: float = math.inf,
    recentre_strikes: float | None = None,
    rotation: RotationPolicy | None = None,
    run: Callable[[Recorder, ChainRecorder], Any] | None = None,
    **recorder_options: Any,
) -> Recorder:
    """Record option chains around the money (and their underlyings) until ``duration_s`` passes.

    A :class:`~tastyrec.dxlink.streamer.DXLinkStreamer` on the session's quote token, a
    :class:`~tastyrec.record.recorder.Recorder` into ``out`` and a :class:`ChainRecorder` on top;
    leaving (the duration is over, or cancellation: Ctrl-C) unsubscribes, flushes and writes
    everything.

    Args:
        out: the recording folder, or ``s3://bucket/prefix`` (``journal=``, ``upload_retry=``
            and ``upload_timeout_s=`` go to the recorder with ``recorder_options``).
        session: a :class:`~tastyrec.session.Session` (or the tastytrade SDK's).
        underlyings, dte, strikes, event_types, underlying_events, recentre_strikes: as for
            :class:`ChainRecorder`.
        duration_s: how long to record (``inf``: until cancelled).
        rotation: the recorder's rotation policy.
        run: ``async def run(recorder, chains)`` awaited instead of sleeping ``duration_s``
            (e.g. the CLI's status display); the recording stops when it returns.
        recorder_options: passed on to :class:`~tastyrec.record.recorder.Recorder`.

    Returns:
        the recorder, closed (its ``stats`` and ``files``).
    """
    from ..dxlink.streamer import DXLinkStreamer
    from .recorder import Recorder

    async with DXLinkStreamer(session, queue_size=0, tap_interval=0.05) as streamer:
        recorder = Recorder(out, streamer, rotation=rotation, **recorder_options)
        async with (
            recorder,
            ChainRecorder(
                session,
                streamer,
                underlyings,
                dte=dte,
                strikes=strikes,
                event_types=event_types,
                underlying_events=underlying_events,
                recentre_strikes=recentre_strikes,
                recorder=recorder,
            ) as chains,
        ):
            if run is not None:
                await run(recorder, chains)
            else:
                await anyio.sleep(duration_s)
    return recorder
