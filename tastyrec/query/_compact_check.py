"""The lossless check of a compacted file, before it is published (:mod:`._compact` step 4).

Each row group handed to the Parquet writer is digested (its row count and a position-weighted
checksum of every column); the written file is then opened afresh, every row group decoded from
disk and digested again, and the two must match: :func:`verify` argues why that is a real check
and why it is cheap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..exceptions import StorageError

__all__ = ("Digest", "digest", "is_string", "verify")

#: A written row group's digest: rows, then per column a checksum or (no checksum for its type)
#: the column itself, compared whole.
Digest = tuple[int, list[int | pa.ChunkedArray]]


def is_string(kind: pa.DataType) -> bool:
    """Whether ``kind`` is a (large) string type."""
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def verify(path: Path, schema: pa.Schema, written: list[Digest], rows: int) -> None:
    """The file at ``path`` decodes to exactly the row groups ``written``; or StorageError.

    Why this is a real lossless check, and why it is cheap:

    * What was handed to the writer holds every input row once: the inputs' rows were
      counted against each input's footer, then gathered through a permutation (a sort's
      output), row group by row group.
    * Each row group's digest is taken from the very arrays handed to the writer: the row
      count, and per column a position-weighted checksum of the decoded values —
      ``sum(bits[i] * w[i]) mod 2**64`` over the values' exact bit patterns (so NaN payloads and
      ``-0.0`` count; nulls by their validity), string columns by their lengths and bytes,
      with fixed random odd weights ``w``. Any single changed value changes it (odd weights
      are invertible modulo 2**64), as does moving a value to another row; a random
      corruption goes unnoticed with probability about 2**-64. Columns of other types
      (booleans, decimals, nested) are kept and compared whole.
    * Here the file is opened afresh: its footer is parsed, its row count, row groups and
      schema checked, and every row group decoded from disk — decompressed, dictionary and
      delta decoded — and digested the same way. A torn, truncated, mis-encoded or
      misplaced write cannot match, so it is never published.

    The digests cost ~5 ms per 256Ki-row row group; the decode, on both cores, is the price
    of reading back. Nothing but digests is kept between writing and checking (keeping the
    written rows to compare bit for bit doubled the memory, and fresh memory is slow).
    """

    def fail(what: str) -> StorageError:
        return StorageError(
            f"compaction check failed: {what} in {str(path)!r}; the old files are untouched"
        )

    try:
        pf = pq.ParquetFile(path)
        meta = pf.metadata
        if meta.num_rows != rows or sum(n for n, _ in written) != rows:
            raise fail(f"{meta.num_rows} rows where {rows} were expected")
        if meta.num_row_groups != len(written):
            raise fail(f"{meta.num_row_groups} row groups where {len(written)} were written")
        found = pf.schema_arrow
        if found.names != schema.names or found.types != schema.types:
            raise fail("columns that differ from the inputs'")
        for n, (count, sums) in enumerate(written):
            got = pf.read_row_group(n, use_threads=True)
            found_count, found_sums = digest(got)
            if found_count != count:
                raise fail(f"row group {n} of {found_count} rows, not {count}")
            for name, want, have in zip(schema.names, sums, found_sums, strict=True):
                if isinstance(want, int) or isinstance(have, int):
                    same = want == have
                else:
                    same = _bits(want).equals(_bits(have))
                if not same:
                    raise fail(f"column {name!r} differing from its inputs in row group {n}")
    except (OSError, pa.ArrowException) as exc:
        raise fail(f"an unreadable file ({exc})") from exc


_WEIGHTS: np.ndarray = np.zeros(0, dtype=np.uint64)


def _weights(n: int) -> np.ndarray:
    """The first ``n`` checksum weights: odd, pseudo-random, the same in every run.

    ``w[i]`` is splitmix64 of ``i``, so a longer table extends a shorter one.
    """
    global _WEIGHTS
    if len(_WEIGHTS) < n:
        x = np.arange(max(n, 2 * len(_WEIGHTS), 1 << 18), dtype=np.uint64)
        x += np.uint64(0x9E3779B97F4A7C15)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
        _WEIGHTS = x | np.uint64(1)
    return _WEIGHTS[:n]


def digest(table: pa.Table) -> Digest:
    """Row count and, per column, its checksum (or the column itself): see :func:`verify`."""
    sums: list[int | pa.ChunkedArray] = []
    for column in table.columns:
        if _checksummed(column.type):
            # positions count from the row group's start, however it is chunked
            sums.append(
                _checksum(column.combine_chunks())
                if column.num_chunks != 1
                else _checksum(column.chunk(0))
            )
        else:
            sums.append(column)
    return table.num_rows, sums


def _checksummed(kind: pa.DataType) -> bool:
    fixed = pa.types.is_primitive(kind) and not pa.types.is_boolean(kind)
    return (fixed and kind.bit_width in (8, 16, 32, 64)) or is_string(kind)


def _checksum(array: pa.Array) -> int:
    """Position-weighted sum of the values' bits (strings: lengths and bytes), mod 2**64."""
    n = len(array)
    if not n:
        return 0
    buffers = array.buffers()
    valid = None if not array.null_count else np.asarray(array.is_valid(), dtype=np.uint64)
    total = 0 if valid is None else int(np.dot(valid, _weights(n)[::-1]))
    if is_string(array.type):
        width = 8 if pa.types.is_large_string(array.type) else 4
        offsets = np.frombuffer(buffers[1], f"<i{width}", n + 1, array.offset * width)
        values = np.diff(offsets).astype(np.uint64)
        start, end = int(offsets[0]), int(offsets[-1])
        data = np.zeros(-(-(end - start) // 8), dtype=np.uint64)
        if end > start and buffers[2] is not None:
            data.view(np.uint8)[: end - start] = np.frombuffer(
                buffers[2], np.uint8, end - start, start
            )
        total += int(np.dot(data, _weights(len(data))[::-1]))
    else:
        width = array.type.bit_width // 8
        values = np.frombuffer(buffers[1], f"<u{width}", n, array.offset * width)
        if width != 8:
            values = values.astype(np.uint64)
    if valid is not None:
        values = values * valid  # the bits under a null are undefined
    return (total + int(np.dot(values, _weights(n)))) % (1 << 64)


def _bits(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Floats as their bit patterns (NaN == NaN), other columns unchanged."""
    if pa.types.is_float64(column.type):
        return pa.chunked_array([c.view(pa.int64()) for c in column.chunks], pa.int64())
    if pa.types.is_float32(column.type):
        return pa.chunked_array([c.view(pa.int32()) for c in column.chunks], pa.int32())
    return column
