"""Where recorded data lives on disk: the hive layout, partition dates and file names.

::

    <root>/<EventType>/date=YYYY-MM-DD/<name>.parquet          recorded events (read these)
    <root>/_journal/<EventType>/date=YYYY-MM-DD/<name>.arrows  write-ahead journal segments
    <root>/_sessions/<name>.parquet                            one row per recording session
    <root>/_gaps/<name>.parquet                                one row per disconnect -> reconnect
    <root>/_subscriptions/<name>.parquet                       option-chain subscription changes

* The date is the America/New_York calendar date of *receipt* (the trading day), computed with
  :mod:`zoneinfo`, so a file never spans a New York midnight, DST days included (23 or 25 hours).
* ``<name>`` is ``YYYYMMDDTHHMMSS.fffffffffZ-<session>-<seq>``: the UTC receipt time of the file's
  first row to the nanosecond, the recording session's id (unique per recorder) and a sequence
  number. Names sort by time and never collide between recorders writing into the same folder.
* Folders starting with ``_`` are bookkeeping: Spark, pyarrow datasets and the ``*/date=*/``
  globs of readers skip them; journals end in ``.arrows``, never ``.parquet``.
* A symbol never becomes part of a path; event type names are checked to be plain identifiers.

This module does no I/O beyond path arithmetic.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Final

from .._time import MARKET_TZ
from ..exceptions import SchemaError

__all__ = (
    "GAPS_DIR",
    "JOURNAL_DIR",
    "COMPACT_LOCK",
    "MARKET_TZ",
    "SESSIONS_DIR",
    "SUBSCRIPTIONS_DIR",
    "day_end_ns",
    "file_name",
    "journal_path",
    "parquet_for_journal",
    "parquet_path",
    "partition_date",
)

JOURNAL_DIR: Final = "_journal"
#: held (flock) by a running compaction, removed when it ends: left behind, a compaction was killed
COMPACT_LOCK: Final = "_compact.lock"
SESSIONS_DIR: Final = "_sessions"
GAPS_DIR: Final = "_gaps"
#: The bookkeeping folder of subscription changes (option-chain recordings).
SUBSCRIPTIONS_DIR: Final = "_subscriptions"
JOURNAL_SUFFIX: Final = ".arrows"
PARQUET_SUFFIX: Final = ".parquet"

_TYPE_NAME = re.compile(r"^[A-Z][A-Za-z0-9]{0,63}$")
_NS: Final = 1_000_000_000


def check_type_name(name: str) -> str:
    """``name`` if it is a plain event type name (``Quote``); a path can never come of it.

    Raises:
        SchemaError: anything else (``..``, slashes, empty...).
    """
    if not _TYPE_NAME.match(name):
        raise SchemaError(f"{name!r} is not an event type name")
    return name


def partition_date(recv_ns: int) -> date:
    """The New York calendar date of a UTC receipt time in epoch nanoseconds."""
    return datetime.fromtimestamp(recv_ns // _NS, MARKET_TZ).date()


def day_end_ns(day: date) -> int:
    """Epoch nanoseconds of the New York midnight that ends ``day`` (23, 24 or 25 hours long)."""
    midnight = datetime.combine(day + timedelta(days=1), time(0), MARKET_TZ)
    return int(midnight.timestamp()) * _NS


def file_name(first_recv_ns: int, session_id: str, seq: int) -> str:
    """The sortable, collision-free stem of a file whose first row arrived at ``first_recv_ns``."""
    seconds, nanos = divmod(first_recv_ns, _NS)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}.{nanos:09d}Z-{session_id}-{seq:05d}"


def _partition(event_type: str, day: date) -> Path:
    return Path(check_type_name(event_type), f"date={day.isoformat()}")


def parquet_path(root: Path, event_type: str, day: date, name: str) -> Path:
    """``<root>/<EventType>/date=YYYY-MM-DD/<name>.parquet``."""
    return root / _partition(event_type, day) / (name + PARQUET_SUFFIX)


def journal_path(root: Path, event_type: str, day: date, name: str) -> Path:
    """``<root>/_journal/<EventType>/date=YYYY-MM-DD/<name>.arrows``."""
    return root / JOURNAL_DIR / _partition(event_type, day) / (name + JOURNAL_SUFFIX)


def parquet_for_journal(root: Path, segment: Path) -> Path:
    """The Parquet path a journal segment under ``root`` becomes.

    Raises:
        SchemaError: ``segment`` is not a journal segment path under ``root``.
    """
    try:
        rel = segment.relative_to(root / JOURNAL_DIR)
    except ValueError:
        raise SchemaError(f"{str(segment)!r} is not in {str(root / JOURNAL_DIR)!r}") from None
    parts = rel.parts
    if len(parts) != 3 or not parts[1].startswith("date=") or not parts[2].endswith(JOURNAL_SUFFIX):
        raise SchemaError(f"{str(segment)!r} is not a journal segment path")
    day = date.fromisoformat(parts[1].removeprefix("date="))
    return parquet_path(root, parts[0], day, parts[2].removesuffix(JOURNAL_SUFFIX))
