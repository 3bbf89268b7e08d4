"""SQL over a day of recorded data with DuckDB: per-symbol activity, spreads and gaps.

Run: python examples/sql_day.py [RECORDING] (default: the sample recording shipped in tests/).
"""

from __future__ import annotations

import sys
from pathlib import Path

import tastyrec.query as tq

ROOT = Path(__file__).parent.parent
path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests" / "data" / "sample"

con = tq.connect(path)
day = con.sql("SELECT max(date) FROM Quote").fetchall()[0][0]
print(f"recording {path.name}, New York date {day}")
con.sql(
    f"""
    SELECT q.event_symbol,
           count(*)                                   AS quotes,
           round(avg(ask_price - bid_price), 4)       AS avg_spread,
           min(recv_ns)                               AS first_quote,
           max(recv_ns)                               AS last_quote,
           any_value(t.trades)                        AS trades
    FROM Quote q
    LEFT JOIN (SELECT event_symbol, count(*) AS trades FROM Trade
               WHERE date = DATE '{day}' GROUP BY 1) t USING (event_symbol)
    WHERE q.date = DATE '{day}'
    GROUP BY q.event_symbol
    ORDER BY q.event_symbol
    """
).show()
# nanosecond timestamps subtract through epoch_ns
gaps = con.sql(
    "SELECT count(*), max(epoch_ns(resumed) - epoch_ns(disconnected)) / 1e6 FROM gaps"
).fetchall()[0]
print(f"{gaps[0]} recorded gap(s); longest: {gaps[1] or 0:.1f} ms")
