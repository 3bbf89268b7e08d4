"""polars over a recording: a LazyFrame per event type over the catalog's files.

The frame has the event type's columns (:func:`tastyrec.schema.polars_schema`) and ``date``, the
New York date of receipt from the hive partition. Filters on ``date`` prune whole files; filters
on ``event_symbol`` are pushed into the Parquet reader, which skips row groups by their
statistics. Files written by other schema versions are read into the current schema: a column a
file lacks reads as null, a column the current schema lacks is left out (use :func:`connect` to
see every column of every file). Schema version 1's nanosecond ``recv_ns`` is read as
nanoseconds, then made what version 2 has (:func:`tastyrec.schema.upgrade_frame`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path

import polars as pl

from .. import catalog
from ..events.base import Event
from ..exceptions import StorageError
from ..schema import RECV_COLUMN, polars_schema, upgrade_frame

__all__ = ("scan",)

_CAST = pl.ScanCastOptions(
    integer_cast="upcast",
    float_cast="upcast",
    datetime_cast=["nanosecond-downcast", "microsecond-upcast", "convert-timezone"],
)


def scan(
    path: str | os.PathLike[str],
    event_type: type[Event],
    *,
    start: date | datetime | None = None,
    end: date | datetime | None = None,
    symbols: Iterable[str] | None = None,
) -> pl.LazyFrame:
    """A polars LazyFrame over the recorded events of one type.

    Example usage::

        spy = (
            tastyrec.scan("data", Quote)
            .filter(pl.col("event_symbol") == "SPY", pl.col("date") == date(2026, 11, 20))
            .collect()
        )

    Args:
        path: the recording folder.
        event_type: the event class (``Quote``, ``Trade``...).
        start: keep rows from this New York date (a date) or receipt time (a datetime) on.
        end: keep rows up to this New York date, inclusive (a date), or received before this
            time (a datetime).
        symbols: keep only these symbols (the same as filtering ``event_symbol``).

    Returns:
        A LazyFrame; nothing is read until it is collected. With no files, an empty frame
        with the right schema.

    Raises:
        StorageError: ``path`` is not a folder.
    """
    root = Path(path)
    if not root.is_dir():
        raise StorageError(f"no recording at {str(root)!r}: give the folder a recording wrote")
    schema = dict(polars_schema(event_type))
    # every file's recv_ns read as nanoseconds, version 1's exact: upgrade_frame takes it from there
    read_schema = {**schema, RECV_COLUMN: pl.Datetime("ns", "UTC")}
    files = catalog.recording_files(root, event_type.__name__, start=start, end=end)
    if not files:
        frame = pl.LazyFrame(schema=schema).with_columns(pl.lit(None, pl.Date).alias("date"))
    else:
        frame = pl.scan_parquet(
            files,
            hive_partitioning=True,
            hive_schema={"date": pl.Date},
            schema=read_schema,
            missing_columns="insert",
            extra_columns="ignore",
            cast_options=_CAST,
        )
        frame = upgrade_frame(frame, list(read_schema))
    if isinstance(start, datetime):
        frame = frame.filter(pl.col(RECV_COLUMN) >= _utc(start))
    elif isinstance(start, date):
        frame = frame.filter(pl.col("date") >= start)
    if isinstance(end, datetime):
        frame = frame.filter(pl.col(RECV_COLUMN) < _utc(end))
    elif isinstance(end, date):
        frame = frame.filter(pl.col("date") <= end)
    if symbols is not None:
        frame = frame.filter(pl.col("event_symbol").is_in(list(symbols)))
    return frame


def _utc(moment: datetime) -> pl.Expr:
    from datetime import UTC

    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return pl.lit(aware.astimezone(UTC)).cast(pl.Datetime("ns", "UTC"))
