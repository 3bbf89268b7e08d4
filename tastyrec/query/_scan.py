"""polars over a recording: a LazyFrame per event type over the catalog's files.

The frame has the event type's columns (:func:`tastyrec.schema.polars_schema`) and ``date``, the
New York date of receipt from the hive partition. Filters on ``date`` prune whole files; filters
on ``event_symbol`` are pushed into the Parquet reader, which skips row groups by their
statistics. Files written by other schema versions are read into the current schema: a column a
file lacks reads as null, a column the current schema lacks is left out (use :func:`connect` to
see every column of every file). Schema version 1's nanosecond ``recv_ns`` is read as
nanoseconds, then made what version 2 has (:func:`tastyrec.schema.upgrade_frame`).

``start`` and ``end`` select rows by receipt time (the exact ``recv_epoch_ns``) under the one
rule of :mod:`tastyrec._time` (naive = New York time; a date is a whole New York day, a date
``end`` included), the same rows :class:`~tastyrec.ReplayStreamer` replays.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import polars as pl

from .. import _time, catalog
from .._time import TimeLike
from ..catalog import existing_location
from ..events.base import Event
from ..schema import RECV_COLUMN, RECV_EXACT_COLUMN, polars_schema, upgrade_frame

if TYPE_CHECKING:
    from ..objectstore import S3Location

__all__ = ("scan",)

_CAST = pl.ScanCastOptions(
    integer_cast="upcast",
    float_cast="upcast",
    datetime_cast=["nanosecond-downcast", "microsecond-upcast", "convert-timezone"],
)


def scan(
    path: str | os.PathLike[str] | S3Location,
    event_type: type[Event],
    *,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
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
        start: keep rows received at or after this: a datetime (naive = New York time), a date
            (from that New York day on), ISO text or epoch ns (:mod:`tastyrec._time`).
        end: keep rows received before this; a date keeps that whole New York day.
        symbols: keep only these symbols (the same as filtering ``event_symbol``).

    Returns:
        A LazyFrame; nothing is read until it is collected. With no files, an empty frame
        with the right schema.

    ``path`` may be ``s3://bucket/prefix``: the catalog lists only the window's ``date=``
    prefixes, and polars' own S3 reader fetches footers and the row groups that filters keep
    (ranged GETs; endpoint and region from :func:`tastyrec.objectstore.polars_storage_options`).
    Credentials are resolved as everywhere in tastyrec, by the AWS SDK's standard chain
    (:func:`tastyrec.objectstore.polars_credential_provider`): the ``AWS_*`` key variables,
    ``AWS_PROFILE`` with ``~/.aws/credentials`` and ``~/.aws/config``, session tokens.

    Raises:
        RecordingNotFound: ``path`` is not a folder, or no key is under the URL (a
            ``StorageError``).
        UnsupportedLocation: ``path`` is a URL of another scheme than ``s3://``.
        ValueError: ``start`` or ``end`` is text that is not a time.
    """
    root = existing_location(path)
    start_ns, end_ns = _time.start_ns(start), _time.end_ns(end)
    schema = dict(polars_schema(event_type))
    # every file's recv_ns read as nanoseconds, version 1's exact: upgrade_frame takes it from there
    read_schema = {**schema, RECV_COLUMN: pl.Datetime("ns", "UTC")}
    files = catalog.location_files(root, event_type.__name__, start=start_ns, end=end_ns)
    storage: dict[str, str] | None = None
    credentials: pl.CredentialProviderAWS | Literal["auto"] = "auto"
    if files and not isinstance(root, Path):
        from ..objectstore import polars_credential_provider, polars_storage_options

        storage = polars_storage_options()
        credentials = polars_credential_provider()
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
            storage_options=storage,
            credential_provider=credentials,
        )
        frame = upgrade_frame(frame, list(read_schema))
    if start_ns is not None:
        frame = frame.filter(pl.col(RECV_EXACT_COLUMN) >= start_ns)
    if end_ns is not None:
        frame = frame.filter(pl.col(RECV_EXACT_COLUMN) < end_ns)
    if symbols is not None:
        frame = frame.filter(pl.col("event_symbol").is_in(list(symbols)))
    return frame

