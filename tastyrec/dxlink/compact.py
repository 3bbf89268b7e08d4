"""FEED_DATA values -> columns (Arrow arrays) or event Structs. No I/O, no clock.

This is the recorder's hot path. A COMPACT ``FEED_DATA`` carries, per event type, one flat list of
``N * len(fields)`` values (docs/dxlink.md#data-formats). Per-value Python work is what makes
decoders slow, so:

* the flat list is sliced once per field with extended slicing (``values[i::width]``);
* doubles go through ``numpy.fromiter(..., float64)``, whose ``float()`` parses ``"NaN"``,
  ``"Infinity"`` and ``"-Infinity"`` itself (``numpy.array`` only when a null, NaN, is present);
* longs are vetted by one ``sum()`` (a float makes the total a float, a string or null raises: the
  server's error, never something to truncate) before ``numpy.fromiter(..., int64)``; columns of
  zeros skip the conversion;
* one-character strings (exchange codes) are joined into the Arrow data buffer directly;
  primitive Arrow arrays wrap the numpy buffers (exact, and no tz-aware cast for times);
* :class:`ColumnAccumulator` concatenates the values of many messages (one ``list.extend`` each)
  and converts a few thousand rows at a time, which is several times faster than converting each
  100-event message on its own (docs/performance.md#decoding).

Values are decoded by the fields the server *announced* (FEED_CONFIG ``eventFields``) when it
announced them, through a :class:`FieldPlan`; fields it did not announce get the Struct default
(NaN, 0, ``None``, ``False``), fields we do not know are ignored and listed in
:attr:`FieldPlan.unknown`.

Bad values raise :class:`~tastyrec.exceptions.RemoteProtocolError`: the caller counts and skips the
message; nothing here drops a single event silently.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pyarrow as pa

from ..events.base import Event
from ..events.registry import EVENT_TYPES, EventSpec, FieldKind, FieldSpec, spec
from ..exceptions import RemoteProtocolError, SchemaError
from ..schema import ARROW_TYPES, arrow_schema, receipt_arrays

__all__ = (
    "ColumnAccumulator",
    "ColumnBatch",
    "FieldPlan",
    "columns",
    "full_to_compact",
    "plan",
    "structs",
)


_Converter = Callable[[list[Any], Any], pa.Array]


@dataclass(frozen=True)
class FieldPlan:
    """How to read one event type's COMPACT values, given the fields the server announced."""

    spec: EventSpec
    announced: tuple[str, ...]
    #: for each Struct field, its position among the announced fields, or None if not announced
    positions: tuple[int | None, ...]
    #: announced fields that the Struct does not have (ignored)
    unknown: tuple[str, ...]

    @property
    def width(self) -> int:
        """Number of values per event on the wire."""
        return len(self.announced)

    @property
    def identity(self) -> bool:
        """True when the server sends exactly the Struct's fields in Struct order."""
        return self.announced == self.spec.wire_names

    @functools.cached_property
    def _steps(self) -> tuple[tuple[FieldSpec, int | None, _Converter], ...]:
        """Per Struct field: its spec, announced position and converter (built once per plan)."""
        return tuple(
            (f, pos, _CONVERTERS[f.kind])
            for f, pos in zip(self.spec.fields, self.positions, strict=True)
        )

    def count(self, values: Sequence[Any]) -> int:
        """Number of events in ``values``; RemoteProtocolError if it is not a whole number."""
        n, rest = divmod(len(values), len(self.announced))
        if rest:
            raise RemoteProtocolError(
                f"{self.spec.name} data has {len(values)} values, not a multiple of "
                f"{self.width} fields"
            )
        return n


@functools.cache
def plan(cls: type[Event], announced: tuple[str, ...] | None = None) -> FieldPlan:
    """The (cached) :class:`FieldPlan` of ``cls`` for the announced field names.

    Names match case-insensitively (the spec spells ``VWAP``, the SDK asks for ``vwap``).
    ``announced=None`` means the Struct's own fields in Struct order.
    """
    s = spec(cls)
    if announced is None:
        announced = s.wire_names
    if not announced:
        raise SchemaError(f"no fields announced for {s.name!r}")
    if "eventsymbol" not in (name.lower() for name in announced):
        raise SchemaError(f"{s.name} fields {announced!r} lack eventSymbol")
    positions: list[int | None] = [None] * len(s.fields)
    unknown = []
    for i, name in enumerate(announced):
        j = s.by_wire_name.get(name.lower())
        if j is None:
            unknown.append(name)
        else:
            positions[j] = i
    return FieldPlan(s, tuple(announced), tuple(positions), tuple(unknown))


def _bad(s: EventSpec, name: str, exc: Exception) -> RemoteProtocolError:
    return RemoteProtocolError(f"bad value in {s.name}.{name}: {exc}")


def _is_ints(col: list[Any]) -> bool:
    # ``sum`` is a C loop over Python ints that also vets the column: a string or null raises
    # TypeError, a single float makes the total a float.
    try:
        return type(sum(col)) is int
    except TypeError:
        return False


def _ints(col: list[Any], default: int) -> np.ndarray[Any, Any]:
    # Only a vetted column goes through ``np.fromiter``, which would truncate 1.5 to 1. Columns of
    # zeros (eventTime, often sequence and timeNanoPart) skip even that.
    if _is_ints(col):
        if not any(col):
            return np.zeros(len(col), np.int64)
        return np.fromiter(col, np.int64, len(col))
    return _ints_checked(col, default)


def _ints_checked(col: list[Any], default: int) -> np.ndarray[Any, Any]:
    """Slow path of :func:`_ints`: nulls become ``default``; anything else non-integer raises."""
    arr = np.array(col)
    if arr.dtype.kind == "i":
        return arr.astype(np.int64)
    if arr.dtype.kind == "O":  # nulls: absent longs are 0 (dxFeed's own default)
        arr = np.array([default if v is None else v for v in col])
        if arr.dtype.kind == "i" or len(col) == 0:
            return arr.astype(np.int64)
    if len(col) == 0:
        return np.zeros(0, np.int64)
    bad = next((v for v in col if type(v) is not int and v is not None), col[0])
    raise ValueError(f"expected integers, got {arr.dtype} values such as {bad!r}")


def _bools(col: list[Any]) -> np.ndarray[Any, Any]:
    arr = np.array([False if v is None else v for v in col] if None in col else col)
    if arr.dtype.kind == "b" or len(col) == 0:
        return arr.astype(np.bool_)
    raise ValueError(f"expected booleans, got values such as {col[0]!r}")


def _primitive(type_: pa.DataType, arr: np.ndarray[Any, Any]) -> pa.Array:
    # wrapping the contiguous numpy buffer is exact, ~1.5x cheaper than pa.array() per call and
    # ~20x faster than a cast to a tz-aware timestamp type
    return pa.Array.from_buffers(type_, len(arr), [None, pa.py_buffer(arr)])


def _doubles(col: list[Any], default: Any = None) -> pa.Array:
    try:  # float() of each value: parses "NaN", "Infinity", "-Infinity"
        arr = np.fromiter(col, np.float64, len(col))
    except TypeError:  # a null, which np.array turns into NaN (an absent double is NaN)
        arr = np.array(col, dtype=np.float64)
    return _primitive(_FLOAT64, arr)


def _strings(col: list[Any], default: Any = None) -> pa.Array:
    # pyarrow spends ~30 ns on each Python string. Exchange codes are one character each (also
    # "\u0000"): joined, they are the data buffer and 0, 1, 2... the offsets, ~2.5x faster.
    # ``join`` raises TypeError on a null or a non-string: pyarrow then sorts that out itself.
    try:
        joined = "".join(col)
    except TypeError:
        return pa.array(col, type=_STRING)
    n = len(col)
    if len(joined) != n or not joined.isascii() or "" in col:
        return pa.array(col, type=_STRING)
    offsets = pa.py_buffer(np.arange(n + 1, dtype=np.int32))
    return pa.Array.from_buffers(_STRING, n, [None, offsets, pa.py_buffer(joined.encode())])


def _longs(col: list[Any], default: int) -> pa.Array:
    return _primitive(_INT64, _ints(col, default))


def _times(col: list[Any], default: int) -> pa.Array:
    return _primitive(_TIME_TYPE, _ints(col, default))


def _booleans(col: list[Any], default: Any = None) -> pa.Array:
    return pa.array(_bools(col))


_FLOAT64: Final = pa.float64()
_INT64: Final = pa.int64()
_STRING: Final = pa.string()
_TIME_TYPE: Final = ARROW_TYPES[FieldKind.TIME_MS]
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_CONVERTERS: Final[dict[FieldKind, _Converter]] = {
    FieldKind.DOUBLE: _doubles,
    FieldKind.STRING: _strings,
    FieldKind.BOOL: _booleans,
    FieldKind.TIME_MS: _times,
    FieldKind.LONG: _longs,
}


def _column(kind: FieldKind, default: Any, col: list[Any]) -> pa.Array:
    return _CONVERTERS[kind](col, default)


def _constant(kind: FieldKind, default: Any, n: int) -> pa.Array:
    if kind is FieldKind.STRING:
        return pa.nulls(n, pa.string())
    if kind is FieldKind.DOUBLE:
        return pa.array(np.full(n, default, dtype=np.float64))
    if kind is FieldKind.BOOL:
        return pa.array(np.full(n, bool(default)))
    return _column(kind, default, [default] * n)


def columns(p: FieldPlan, values: list[Any]) -> list[pa.Array]:
    """Convert a flat COMPACT values list into one Arrow array per Struct field.

    Raises:
        RemoteProtocolError: a value count that is not a multiple of the field count, or a value
            of the wrong type.
    """
    n = p.count(values)
    width = len(p.announced)
    out = []
    for f, pos, convert in p._steps:
        if pos is None:
            out.append(_constant(f.kind, f.default, n))
            continue
        try:
            out.append(convert(values[pos::width], f.default))
        except (ValueError, TypeError, OverflowError, pa.ArrowException) as exc:
            raise _bad(p.spec, f.name, exc) from None
    if out[0].null_count:
        raise RemoteProtocolError(f"{p.spec.name} event without a string eventSymbol")
    return out


def structs(p: FieldPlan, values: list[Any]) -> list[Event]:
    """Convert a flat COMPACT values list into event Structs (for listeners, not the recorder).

    Raises:
        RemoteProtocolError: as :func:`columns`.
    """
    n = p.count(values)
    width = p.width
    cols: list[Iterable[Any]] = []
    for f, pos in zip(p.spec.fields, p.positions, strict=True):
        if pos is None:
            cols.append([f.default] * n)
            continue
        col = values[pos::width]
        try:
            if f.kind is FieldKind.DOUBLE:
                try:
                    cols.append(np.fromiter(col, np.float64, n).tolist())
                except TypeError:  # a null: NaN
                    cols.append(np.array(col, dtype=np.float64).tolist())
            elif f.kind is FieldKind.STRING:
                _check_strings(col)
                cols.append(col)
            elif f.kind is FieldKind.BOOL:
                cols.append(_bools(col).tolist())
            elif _is_ints(col) and (
                not any(col) or _INT64_MIN <= min(col) <= max(col) <= _INT64_MAX
            ):
                cols.append(col)  # already Python ints (int64 ones): keep them
            else:
                cols.append(_ints_checked(col, f.default).tolist())
        except (ValueError, TypeError, OverflowError) as exc:
            raise _bad(p.spec, f.name, exc) from None
    if None in cols[0]:
        raise RemoteProtocolError(f"{p.spec.name} event without a string eventSymbol")
    return list(map(p.spec.cls, *cols))


def _check_strings(col: list[Any]) -> None:
    try:
        "".join(col)  # a C loop that fails on the first non-string
    except TypeError:
        bad = next((v for v in col if v is not None and type(v) is not str), None)
        if bad is not None:
            raise ValueError(f"expected strings, got values such as {bad!r}") from None


def full_to_compact(rows: list[Any]) -> tuple[dict[str, tuple[FieldPlan, list[Any]]], list[str]]:
    """Turn FULL-format rows (one object per event) into COMPACT form, grouped by event type.

    Missing keys are treated as null (the spec omits empty fields), which decoding turns into the
    field default. Returns the known types' values and the names of unknown event types seen
    (their rows are left out, for the caller to count).

    Raises:
        RemoteProtocolError: a row that is not an object with a string ``eventType``.
    """
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("eventType"), str):
            raise RemoteProtocolError(f"FULL event without eventType: {row!r:.80}")
        grouped.setdefault(row["eventType"], []).append(row)
    out = {}
    unknown = []
    for name, group in grouped.items():
        cls = EVENT_TYPES.get(name)
        if cls is None:
            unknown.append(name)
            continue
        p = plan(cls)
        wire = p.spec.wire_names
        out[name] = (p, [row.get(w) for row in group for w in wire])
    return out, unknown


@dataclass(frozen=True)
class ColumnBatch:
    """Decoded events of one type as an Arrow RecordBatch (schema: :func:`arrow_schema`)."""

    event_type: type[Event]
    batch: pa.RecordBatch

    @property
    def num_rows(self) -> int:
        """Number of events in the batch."""
        return int(self.batch.num_rows)


@dataclass
class _Pending:
    plan: FieldPlan
    values: list[Any] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    recv_ns: list[int] = field(default_factory=list)
    rows: int = 0


class ColumnAccumulator:
    """Gathers COMPACT values of many messages and converts them to Arrow in batches.

    Pure: receipt times are passed in. :meth:`add` is one ``list.extend``; :meth:`flush` slices and
    converts everything pending. ``add`` returns True when ``max_rows`` are pending, the caller's
    cue to flush.

    Example::

        acc = ColumnAccumulator()
        acc.add(plan(Quote, fields), values, recv_ns=time.time_ns())
        for batch in acc.flush():
            sink.write(batch.batch)
    """

    def __init__(self, max_rows: int = 4096) -> None:
        self.max_rows = max_rows
        # keyed by id(): hashing a FieldPlan (a tree of frozen dataclasses) cost 13 % of the decode
        self._pending: dict[int, _Pending] = {}
        #: rows pending
        self.rows = 0
        #: messages dropped at flush because a value did not convert
        self.bad_messages = 0
        #: the reason the last such message was dropped
        self.last_error: RemoteProtocolError | None = None

    def add(self, p: FieldPlan, values: list[Any], recv_ns: int) -> bool:
        """Queue one message's values; True when ``max_rows`` or more are pending.

        Raises:
            RemoteProtocolError: the value count is not a multiple of the field count.
        """
        n = p.count(values)
        pending = self._pending.get(id(p))
        if pending is None:  # the _Pending holds p, so its id is not reused while pending
            pending = self._pending[id(p)] = _Pending(p)
        pending.values.extend(values)
        pending.counts.append(n)
        pending.recv_ns.append(recv_ns)
        pending.rows += n
        self.rows += n
        return self.rows >= self.max_rows

    def flush(self) -> list[ColumnBatch]:
        """Convert everything pending into one :class:`ColumnBatch` per (type, field plan).

        A message whose values do not convert is left out of its batch (the rest is kept), counted
        in :attr:`bad_messages`, and its reason kept in :attr:`last_error`.
        """
        out = []
        pending, self._pending, self.rows = self._pending, {}, 0
        for p in pending.values():
            batch = self._convert(p)
            if batch is not None:
                out.append(batch)
        return out

    def _convert(self, pending: _Pending) -> ColumnBatch | None:
        p = pending.plan
        try:
            arrays = columns(p, pending.values)
            recv = np.repeat(np.array(pending.recv_ns, dtype=np.int64), pending.counts)
        except RemoteProtocolError:
            # one bad message spoils the batch: convert message by message to keep the rest
            return self._convert_each(pending)
        return self._batch(p, arrays, recv)

    def _convert_each(self, pending: _Pending) -> ColumnBatch | None:
        p = pending.plan
        parts: list[list[pa.Array]] = []
        recvs = []
        start = 0
        for n, recv_ns in zip(pending.counts, pending.recv_ns, strict=True):
            chunk = pending.values[start : start + n * p.width]
            start += n * p.width
            try:
                parts.append(columns(p, chunk))
            except RemoteProtocolError as exc:
                self.bad_messages += 1
                self.last_error = exc
                continue
            recvs.append(np.full(n, recv_ns, dtype=np.int64))
        if not parts:
            return None
        arrays = [pa.concat_arrays([part[i] for part in parts]) for i in range(len(parts[0]))]
        return self._batch(p, arrays, np.concatenate(recvs))

    @staticmethod
    def _batch(p: FieldPlan, arrays: list[pa.Array], recv: np.ndarray[Any, Any]) -> ColumnBatch:
        schema = arrow_schema(p.spec.cls)
        batch = pa.RecordBatch.from_arrays([*arrays, *receipt_arrays(recv)], schema=schema)
        return ColumnBatch(p.spec.cls, batch)
