"""Backtests over many days at once: one replay per day (or symbol-day) on any Executor.

:func:`backtest` splits a recording into New York days (or days and symbols), and runs the
user's strategy on each slice as one task of a :class:`concurrent.futures.Executor`: a
``ProcessPoolExecutor`` on a laptop, a Dask ``distributed.Client(...).get_executor()`` on a
cluster, or ``None`` to run the tasks one after the other here. Each task opens its own
:class:`~tastyrec.replay.ReplayStreamer` over its slice, so only that slice is read, where the
task runs.

Tasks travel to other processes by pickle: the strategy must be a module-level function (not a
lambda or a closure) and its result picklable. The task itself holds only plain values (the
recording's path, the day, the symbol, event type names).

The strategy is ``async def strategy(streamer: ReplayStreamer) -> result``: the streamer's
interface (``listen``, ``get_event``) is async. It gets the streamer entered (``async with``)
and, when ``types`` are given, already subscribed to the slice's symbols (every symbol of the
day with ``by="day"`` and no ``symbols``), so it only listens. A plain function is accepted too
and may return an awaitable. Each task runs its own event loop (``anyio.run``).

Failures stay per task: an exception in the strategy (or a worker that died) becomes the text in
that row's ``error`` column, and the other days go on. ``raise_errors=True`` raises
:class:`BacktestError` at the end, with the whole result attached.
"""

from __future__ import annotations

import concurrent.futures
import inspect
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import anyio
import polars as pl
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import catalog
from ..events.registry import EVENT_TYPES
from ..exceptions import StorageError, TastyrecError
from ..storage import layout
from ..storage.account_schema import RECORDED_ACCOUNT_TYPES
from .streamer import ReplayStreamer

if TYPE_CHECKING:
    from ..objectstore import S3Location

__all__ = ("BacktestError", "BacktestTask", "backtest")

#: Column names of the result frame besides the strategy's own.
DAY_COLUMN: Final = "day"
SYMBOL_COLUMN: Final = "symbol"
RESULT_COLUMN: Final = "result"
ERROR_COLUMN: Final = "error"
SECONDS_COLUMN: Final = "seconds"
#: the ``date=YYYY-MM-DD`` folder of a file's path or URL
_PARTITION: Final = re.compile(r"[/\\]date=(\d{4}-\d{2}-\d{2})[/\\]")

Strategy = Callable[[ReplayStreamer], Any]


class BacktestError(TastyrecError):
    """Some backtest tasks failed (``backtest(..., raise_errors=True)``).

    Attributes:
        results: the whole result frame, failed rows with their ``error``.
    """

    def __init__(self, message: str, results: pl.DataFrame) -> None:
        super().__init__(message)
        self.results = results


@dataclass(frozen=True)
class BacktestTask:
    """One slice of a recording: a New York day, and a symbol with ``by="symbol-day"``."""

    path: str
    day: date
    symbol: str | None
    #: event type names to subscribe the slice's symbols to (empty: the strategy subscribes)
    types: tuple[str, ...]
    #: the symbols of a ``by="day"`` slice (empty: every symbol)
    symbols: tuple[str, ...] = ()


def backtest(
    strategy: Strategy,
    path: str | os.PathLike[str] = "data",
    *,
    executor: concurrent.futures.Executor | None = None,
    by: Literal["day", "symbol-day"] = "day",
    types: Iterable[type[Any]] = (),
    symbols: Iterable[str] | None = None,
    start: date | None = None,
    end: date | None = None,
    raise_errors: bool = False,
) -> pl.DataFrame:
    """Run ``strategy`` over each day (or symbol-day) of a recording, in parallel.

    Example usage::

        async def mean_spread(streamer: ReplayStreamer) -> dict[str, float]:
            spreads = [q.ask_price - q.bid_price async for q in streamer.listen(Quote)]
            return {"quotes": len(spreads), "mean_spread": sum(spreads) / len(spreads)}

        with ProcessPoolExecutor(4) as pool:
            results = tastyrec.backtest(mean_spread, "data", executor=pool, types=[Quote])

    Args:
        strategy: ``async def strategy(streamer) -> result``, a module-level function (tasks
            are pickled); it gets an entered :class:`ReplayStreamer` over one slice.
        path: the recording folder, or ``s3://bucket/prefix`` (each task then reads its own
            slice from the bucket: workers need the same AWS configuration, not a shared disk).
        executor: where tasks run (any ``concurrent.futures.Executor``; a Dask client's
            ``get_executor()``); ``None``: one after the other in this process.
        by: ``"day"``: one task per New York day; ``"symbol-day"``: one per symbol and day
            (needs ``types``: the symbols are those recorded in them).
        types: event classes (``Quote``...) each task's streamer is subscribed to before the
            strategy runs; days are those where they were recorded (every type: none given).
        symbols: only these symbols (subscribed with ``by="day"``; default: every symbol).
        start: first New York day, inclusive.
        end: last New York day, inclusive.
        raise_errors: raise :class:`BacktestError` after all tasks ran if any failed.

    Returns:
        One row per task, in day then symbol order: ``day`` (Date), ``symbol`` (String, null with
        ``by="day"``), the result -- the keys of a mapping as columns, else a ``result`` column
        --, ``error`` (null, or the exception's type and text) and ``seconds`` (the task's time
        where it ran).

    Raises:
        ValueError: ``by`` is unknown, or ``"symbol-day"`` without ``types``.
        StorageError: ``path`` is not a recording folder.
        BacktestError: ``raise_errors`` and a task failed.
    """
    if by not in ("day", "symbol-day"):
        raise ValueError(f'by must be "day" or "symbol-day", not {by!r}')
    type_list = list(types)
    if by == "symbol-day" and not type_list:
        raise ValueError('by="symbol-day" needs types: the symbols are the ones recorded in them')
    root = catalog.reading_location(path)  # a folder, or s3://bucket/prefix
    if isinstance(root, Path) and not root.is_dir():
        raise StorageError(f"no recording at {str(root)!r}: give the folder a recording wrote")
    if not isinstance(root, Path):
        root = catalog.existing_location(root)  # RecordingNotFound: an empty prefix
    wanted = None if symbols is None else tuple(sorted(set(symbols)))
    tasks = plan(root, by, type_list, wanted, start, end)
    outcomes: list[tuple[Any, str | None, float]]
    if executor is None:
        outcomes = [run_task(strategy, task) for task in tasks]
    else:
        futures = [executor.submit(run_task, strategy, task) for task in tasks]
        outcomes = []
        for future in futures:
            try:
                outcomes.append(future.result())
            except Exception as exc:  # the task never ran, or its worker died
                outcomes.append((None, _describe(exc), 0.0))
    results = _frame(tasks, outcomes)
    failed = results.filter(pl.col(ERROR_COLUMN).is_not_null())
    if raise_errors and failed.height:
        first = failed.row(0, named=True)
        raise BacktestError(
            f"{failed.height} of {results.height} backtest tasks failed; the first, "
            f"{first[DAY_COLUMN]} {first[SYMBOL_COLUMN] or ''}: {first[ERROR_COLUMN]}",
            results,
        )
    return results


def plan(
    root: Path | S3Location,
    by: str,
    types: Sequence[type[Any]],
    symbols: tuple[str, ...] | None,
    start: date | None,
    end: date | None,
) -> list[BacktestTask]:
    """The tasks of :func:`backtest`, in day then symbol order (a folder or ``s3://`` alike:
    the catalog lists the files of the window's days only)."""
    names = tuple(cls.__name__ for cls in types)
    for name in names:
        if name not in EVENT_TYPES and name not in RECORDED_ACCOUNT_TYPES:
            raise ValueError(f"{name!r} is not a recorded event type")
    fs = None
    if not isinstance(root, Path):
        from ..objectstore import s3_filesystem

        fs = s3_filesystem()
    where = str(root) if isinstance(root, Path) else root.url
    if by == "day":
        days: set[date] = set()
        for name in names or tuple(catalog.location_event_types(root, fs)):
            days.update(_files_by_day(root, name, start, end, fs))
        return [BacktestTask(where, d, None, names, symbols or ()) for d in sorted(days)]
    pairs: set[tuple[date, str]] = set()
    wanted = None if symbols is None else set(symbols)
    for cls in types:
        if cls.__name__ not in EVENT_TYPES:
            raise ValueError(f'by="symbol-day" needs market event types, not {cls.__name__}')
        for day, files in _files_by_day(root, cls.__name__, start, end, fs).items():
            for file in files:
                # the symbols column alone (dictionary-encoded: a few kB a file)
                if fs is None:
                    table = pq.read_table(file, columns=["event_symbol"])
                else:
                    table = pq.read_table(
                        file.removeprefix("s3://"), columns=["event_symbol"], filesystem=fs
                    )
                found = set(pc.unique(table.column(0)).to_pylist())
                pairs.update((day, s) for s in found if wanted is None or s in wanted)
    return [BacktestTask(where, d, s, names) for d, s in sorted(pairs)]


def _files_by_day(
    root: Path | S3Location,
    event_type: str,
    start: date | None,
    end: date | None,
    fs: Any,
) -> dict[date, list[str]]:
    """The current files of one event type in the window, by their ``date=`` partition."""
    days: dict[date, list[str]] = {}
    for file in catalog.location_files(root, event_type, start=start, end=end, fs=fs):
        found = _PARTITION.search(file)
        if found is not None:
            days.setdefault(date.fromisoformat(found.group(1)), []).append(file)
    return days


def run_task(strategy: Strategy, task: BacktestTask) -> tuple[Any, str | None, float]:
    """Run ``strategy`` over one slice: ``(result, error text or None, seconds)``.

    Module-level, so executors in other processes can unpickle it. Never raises for the
    strategy's errors: they are the error text.
    """
    began = time.perf_counter()
    try:
        result = anyio.run(_run, strategy, task)
    except Exception as exc:
        return None, _describe(exc), time.perf_counter() - began
    return result, None, time.perf_counter() - began


async def _run(strategy: Strategy, task: BacktestTask) -> Any:
    start_ns = layout.day_end_ns(task.day - timedelta(days=1))
    streamer = ReplayStreamer(task.path, start=start_ns, end=layout.day_end_ns(task.day))
    async with streamer:
        wanted = [task.symbol] if task.symbol is not None else list(task.symbols or ("*",))
        for name in task.types:
            cls = EVENT_TYPES.get(name) or RECORDED_ACCOUNT_TYPES[name]
            await streamer.subscribe(cls, wanted)
        result = strategy(streamer)
        if inspect.isawaitable(result):
            result = await result
        return result


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


_Outcome = tuple[Any, str | None, float]


def _frame(tasks: list[BacktestTask], outcomes: list[_Outcome]) -> pl.DataFrame:
    keys = pl.DataFrame(
        {
            DAY_COLUMN: [t.day for t in tasks],
            SYMBOL_COLUMN: [t.symbol for t in tasks],
        },
        schema={DAY_COLUMN: pl.Date, SYMBOL_COLUMN: pl.String},
    )
    values = [r for r, error, _ in outcomes if error is None]
    if values and all(isinstance(v, Mapping) for v in values):
        rows = [dict(r) if error is None else {} for r, error, _ in outcomes]
        middle = pl.DataFrame(rows, infer_schema_length=None)
        if not middle.width:
            middle = pl.DataFrame({RESULT_COLUMN: [None] * len(outcomes)})
    else:
        results = [r if error is None else None for r, error, _ in outcomes]
        try:
            series = pl.Series(RESULT_COLUMN, results, strict=False)
        except (TypeError, ValueError, pl.exceptions.PolarsError):
            series = pl.Series(RESULT_COLUMN, results, dtype=pl.Object)
        middle = pl.DataFrame([series])
    tail = pl.DataFrame(
        {
            ERROR_COLUMN: [error for _, error, _ in outcomes],
            SECONDS_COLUMN: [seconds for _, _, seconds in outcomes],
        },
        schema={ERROR_COLUMN: pl.String, SECONDS_COLUMN: pl.Float64},
    )
    return pl.concat([keys, middle, tail], how="horizontal")
