"""The sample recording copied onto several New York days (for backtests over many days).

Every event file of ``tests/data/sample`` (one day, schema version 1) is written again for each
day asked, in the current schema, with its receipt times moved by whole days: the same rows on
``2026-11-21``, ``2026-11-22``... Bookkeeping tables are left out.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tastyrec.schema import RECV_COLUMN, RECV_EXACT_COLUMN, SCHEMA_VERSION, upgrade
from tastyrec.storage import layout

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
DAY_NS = 86_400 * 10**9


def copy_sample_days(dst: Path, days: int, src: Path = SAMPLE) -> Path:
    """``dst`` holding ``days`` consecutive days of the sample (from its own day on)."""
    for folder in sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for seq, file in enumerate(sorted(folder.glob("date=*/*.parquet")), 1):
            table = upgrade(pq.read_table(file))
            meta = dict(table.schema.metadata or {})
            meta[b"tastyrec.schema_version"] = SCHEMA_VERSION.encode()
            for k in range(days):
                exact = pc.add(table.column(RECV_EXACT_COLUMN), k * DAY_NS)
                micros = pc.divide(exact, 1000).cast(pa.timestamp("us", tz="UTC"))
                shifted = table.set_column(
                    table.schema.get_field_index(RECV_EXACT_COLUMN),
                    table.schema.field(RECV_EXACT_COLUMN),
                    exact,
                ).set_column(
                    table.schema.get_field_index(RECV_COLUMN),
                    table.schema.field(RECV_COLUMN),
                    micros,
                )
                first = int(pc.min(exact).as_py())
                name = layout.file_name(first, "5a3b1e00", seq)
                path = layout.parquet_path(dst, folder.name, layout.partition_date(first), name)
                path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(shifted.replace_schema_metadata(meta), path)
    return dst
