"""The one meaning of a time a user gives tastyrec (``start``, ``end``, ``--start``, ``--end``).

Every reader -- :func:`~tastyrec.scan`, :func:`~tastyrec.connect`, the catalog,
:class:`~tastyrec.ReplayStreamer`, :func:`~tastyrec.replay.replay_frames`, ``tastyrec serve``'s
feed and every command-line time option -- turns user times into epoch nanoseconds here, and
nowhere else. The rule:

* an aware :class:`~datetime.datetime` is the instant it says;
* a **naive** datetime, and ISO text without an offset (``"2026-11-20T09:30"``), is **New York
  time** (``America/New_York``, the market's clock, DST-correct); a wall time that happens twice
  or never on a DST day follows Python's ``fold`` (``fold=0``: the offset before the change);
* ISO text with an offset (``"2026-11-20T14:30Z"``, ``"...T09:30-05:00"``) is that instant;
* an ``int`` is epoch nanoseconds (UTC);
* a :class:`~datetime.date` (or ``"YYYY-MM-DD"`` text) is a whole New York day: as ``start`` it
  means that day's midnight, as ``end`` the *next* midnight, so ``end=date(2026, 11, 20)`` keeps
  November 20th (a date ``end`` is inclusive; a datetime ``end`` is exclusive);
* ``start`` is inclusive, ``end`` exclusive: rows with ``start <= recv_ns < end`` are selected,
  ``recv_ns`` being the receipt time every recorded row carries.

The machine's own time zone never matters. Pandas ``Timestamp`` values are datetimes and keep
their nanoseconds; numpy integers are epoch nanoseconds like ``int``. Anything else (a float, a
bool) is a :class:`TypeError`; unreadable text a :class:`ValueError` whose message shows what to
give instead.

Imports the standard library only (the layout takes :data:`MARKET_TZ` from here), so the
command line can parse times before loading anything heavy.
"""

from __future__ import annotations

import operator
from datetime import date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

#: The market's time zone: naive user times, and partition dates, are New York time.
MARKET_TZ: Final = ZoneInfo("America/New_York")

__all__ = ("TIME_EXAMPLES", "TimeLike", "day", "end_ns", "parse_text", "start_ns", "to_ns")

#: What a user may give as a time.
TimeLike = datetime | date | str | int

#: What every "not a time" message suggests.
TIME_EXAMPLES: Final = (
    "give an ISO date or date-time, e.g. 2026-11-20, 2026-11-20T09:30 (New York time) "
    "or 2026-11-20T14:30Z"
)

_US_NS: Final = 1_000


def parse_text(text: str) -> date | datetime:
    """ISO text as a date (``"2026-11-20"``) or a datetime (naive unless it has an offset).

    Raises:
        ValueError: not an ISO date or date-time.
    """
    stripped = text.strip()
    try:
        return date.fromisoformat(stripped)  # a day: a date-time is not a date here
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(stripped)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: {TIME_EXAMPLES}") from None


def day(text: str) -> date:
    """A ``YYYY-MM-DD`` New York date given as text (``tastyrec compact --date``).

    Raises:
        ValueError: anything else, a date-time included.
    """
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a date such as 2026-11-20") from None


def _value(value: TimeLike) -> date | datetime | int:
    if isinstance(value, str):
        return parse_text(value)
    if isinstance(value, date):
        return value
    if not isinstance(value, bool) and hasattr(value, "__index__"):
        return operator.index(value)  # an int, or numpy's int64 (from a column)
    raise TypeError(
        f"not a time: {value!r}; give a datetime, a date, ISO text or epoch nanoseconds"
    )


def _midnight_ns(day_: date) -> int:
    """Epoch ns of the New York midnight that starts ``day_``."""
    return _instant_ns(datetime(day_.year, day_.month, day_.day))


def _instant_ns(moment: datetime) -> int:
    """Epoch ns of a datetime (naive: New York time), exactly (no float on the way)."""
    # the wall time as a plain datetime: a pandas Timestamp's own arithmetic is not ours
    wall = datetime(
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond,
        fold=moment.fold,
    )
    # the value's own offset if it has one (pytz zones included), else New York's that day
    offset = moment.utcoffset() if moment.tzinfo is not None else None
    if offset is None:
        offset = wall.replace(tzinfo=MARKET_TZ).utcoffset()
        assert offset is not None  # a ZoneInfo always knows its offset
    delta = wall - offset - datetime(1970, 1, 1)
    nanos = getattr(moment, "nanosecond", 0)  # pandas.Timestamp keeps nanoseconds
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros * _US_NS + (nanos if isinstance(nanos, int) else 0)


def to_ns(value: TimeLike) -> int:
    """Epoch nanoseconds of a time as a *start* (or a point in time): a date is the New York
    midnight that begins it. See the module docstring for the rule.

    Raises:
        TypeError: not a datetime, date, str or int.
        ValueError: text that is not an ISO date or date-time.
    """
    parsed = _value(value)
    if isinstance(parsed, int):
        return parsed
    if isinstance(parsed, datetime):
        return _instant_ns(parsed)
    return _midnight_ns(parsed)


def start_ns(value: TimeLike | None) -> int | None:
    """Epoch ns of an inclusive lower bound (``start``); ``None`` stays ``None``."""
    return None if value is None else to_ns(value)


def end_ns(value: TimeLike | None) -> int | None:
    """Epoch ns of an exclusive upper bound (``end``); ``None`` stays ``None``.

    A date (or ``YYYY-MM-DD`` text) is inclusive of that whole New York day: its bound is the
    next New York midnight (23 or 25 hours later on DST days).
    """
    if value is None:
        return None
    parsed = _value(value)
    if isinstance(parsed, date) and not isinstance(parsed, datetime):
        return _midnight_ns(parsed + timedelta(days=1))
    return to_ns(parsed)
