"""Shared helpers of the unit tests: Arrow batches of recorded events."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pyarrow as pa
import pytest

from tastyrec.events import Quote
from tastyrec.schema import arrow_schema


def quote_batch(recv_ns: Sequence[int], start: int = 0) -> pa.RecordBatch:
    """Quotes with distinct, checkable values (row i has bid_price start+i), NaN sizes mixed in."""
    schema = arrow_schema(Quote)
    n = len(recv_ns)
    cols: dict[str, pa.Array] = {}
    for f in schema:
        if f.name == "event_symbol":
            cols[f.name] = pa.array([f"SYM{(start + i) % 7}" for i in range(n)], f.type)
        elif f.name == "recv_ns":
            cols[f.name] = pa.array([t // 1000 for t in recv_ns], f.type)
        elif f.name == "recv_epoch_ns":
            cols[f.name] = pa.array(list(recv_ns), f.type)
        elif pa.types.is_string(f.type):
            cols[f.name] = pa.array(["Q"] * n, f.type)
        elif pa.types.is_floating(f.type):
            vals = [float(start + i) if (start + i) % 5 else math.nan for i in range(n)]
            cols[f.name] = pa.array(vals, f.type)
        elif pa.types.is_timestamp(f.type):
            cols[f.name] = pa.array([1_700_000_000_000 + start + i for i in range(n)], pa.int64())
            cols[f.name] = cols[f.name].cast(f.type)
        else:
            cols[f.name] = pa.array([start + i for i in range(n)], f.type)
    return pa.RecordBatch.from_pydict(cols, schema=schema)


@pytest.fixture
def make_quotes() -> Callable[..., pa.RecordBatch]:
    return quote_batch
