"""``tastyrec serve`` keeps the DXLink contract: the engine over a ReplayFeed of the sample
recording, paired with a client protocol, the clock injected (no sockets, no sleeps).

TICKER types (Quote...) are conflated per symbol and aggregation period, STREAM types (Trade,
TimeAndSale: FIELD_REPORTS.md #8) are not; the period is counted in *recorded* time (receipt
times), so the replay speed changes when events arrive, never which ones.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tastyrec import Quote, TimeAndSale, Trade
from tastyrec.dxlink import protocol as p
from tastyrec.dxlink.compact import structs
from tastyrec.replay.feed import SETTLE_S, ReplayFeed
from tastyrec.replay.reader import first_receipt_ns
from tastyrec.sim.engine import ServerConnection, SimConfig
from tastyrec.sim.market import Market

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
SYMBOLS = ["SPY", "QQQ", "AAPL", ".SPY261218C600", ".SPY261218P600"]
EQUITIES = SYMBOLS[:3]
T0 = 1_795_000_000.0
STEP_S = 0.05


def recorded(cls: type[Any]) -> list[dict[str, Any]]:
    """The sample's rows of one type, in receipt order (as the replay plays them)."""
    table = pa.concat_tables(
        pq.read_table(f) for f in sorted((SAMPLE / cls.__name__).glob("*/*.parquet"))
    )
    return table.sort_by("recv_ns").to_pylist()


KEY_FIELDS = {
    "Quote": ("event_symbol", "bid_time", "ask_time", "bid_price", "ask_price", "bid_size"),
    "Trade": ("event_symbol", "time", "sequence", "price", "size", "day_volume"),
    "TimeAndSale": ("event_symbol", "index", "time", "price", "size"),
}


def key(cls: type[Any], row_or_event: Any) -> tuple[Any, ...]:
    """What tells one recorded event from another (NaN sizes compare equal as None)."""
    values = []
    for n in KEY_FIELDS[cls.__name__]:
        v = row_or_event[n] if isinstance(row_or_event, dict) else getattr(row_or_event, n)
        if hasattr(v, "timestamp"):  # a recorded timestamp column: epoch ms on the wire
            v = round(v.timestamp() * 1000)
        values.append(None if isinstance(v, float) and math.isnan(v) else v)
    return tuple(values)


def serve(period_s: float, speed: float) -> list[tuple[float, Any]]:
    """Serve the sample to one client asking for ``period_s``; (recorded time s, event) of each
    event the client decoded, the time being how far the replay had got when it arrived."""
    now = T0
    feed = ReplayFeed(SAMPLE, speed=speed)
    server = ServerConnection(SimConfig(), Market(0), None, now, feed=feed)
    client = p.DXLinkProtocol()
    client.connect(None)
    for cls, symbols in ((Quote, SYMBOLS), (TimeAndSale, EQUITIES), (Trade, EQUITIES)):
        client.subscribe(cls, symbols, refresh_interval=period_s)
    first_s = first_receipt_ns(SAMPLE) / 1e9  # type: ignore[operator]
    start: float | None = None
    got: list[tuple[float, Any]] = []

    def exchange() -> None:
        nonlocal start
        for _ in range(100):
            moved = False
            for data in client.data_to_send():
                server.receive_text(data, now)
                moved = True
            for frame in server.data_to_send():
                client.receive_text(frame, 0)
                moved = True
            for ev in client.events_received():
                if isinstance(ev, p.FeedEvents):
                    played = first_s + (now - start) * speed if start is not None else math.nan
                    got.extend((played, e) for e in structs(ev.plan, ev.values))
            if not moved:
                return

    exchange()
    start = now + SETTLE_S  # the feed subscribed at `now`: the replay starts SETTLE_S later
    # the sample is ~20 s; then one more period, for the last held value to be sent
    end = now + 60.0 if speed == math.inf else now + (20.0 + period_s + 1.0) / speed + 1.0
    while now < end:
        now += STEP_S
        server.tick(now)
        exchange()
    assert feed.finished
    return got


def of(got: list[tuple[float, Any]], cls: type[Any]) -> list[tuple[float, Any]]:
    return [(t, e) for t, e in got if isinstance(e, cls)]


@pytest.mark.parametrize("speed", [1.0, 4.0, math.inf])
def test_at_10_s_one_quote_per_symbol_per_10_s_of_recorded_time_and_every_print(
    speed: float,
) -> None:
    got = serve(10.0, speed)
    quotes = recorded(Quote)
    for symbol in SYMBOLS:
        rows = [r for r in quotes if r["event_symbol"] == symbol]
        sent = [(t, e) for t, e in of(got, Quote) if e.event_symbol == symbol]
        keys = [key(Quote, r) for r in rows]
        positions = [keys.index(key(Quote, e)) for _, e in sent]
        # recorded quotes, in recorded order, each sent once
        assert positions == sorted(set(positions)), symbol
        # the first goes at once, the last recorded value is never lost
        assert positions[0] == 0 and positions[-1] == len(rows) - 1, symbol
        span_s = (rows[-1]["recv_ns"] - rows[0]["recv_ns"]).total_seconds()
        assert 2 <= len(sent) <= math.ceil(span_s / 10.0) + 1, (symbol, len(sent), span_s)
        if speed == 1.0:  # the client's clock is the replay's: at most one per 10 s
            times = [t for t, _ in sent]
            assert all(b - a > 10.0 - STEP_S for a, b in zip(times, times[1:], strict=False))
    # STREAM types: every recorded event, in order (FIELD_REPORTS #8)
    for cls in (TimeAndSale, Trade):
        rows = [r for r in recorded(cls) if r["event_symbol"] in EQUITIES]
        assert [key(cls, e) for _, e in of(got, cls)] == [key(cls, r) for r in rows], cls.__name__


def test_which_quotes_are_sent_does_not_depend_on_the_speed() -> None:
    """The period is counted in receipt times, not in the server's clock."""
    runs = [
        [key(Quote, e) for _, e in of(serve(2.0, speed), Quote)] for speed in (1.0, 3.0, math.inf)
    ]
    assert runs[0] == runs[1] == runs[2]
    assert 0 < len(runs[0]) < len(recorded(Quote)) / 4


def test_at_the_default_period_every_event_is_sent() -> None:
    got = serve(0.1, math.inf)
    for cls in (Quote, TimeAndSale, Trade):
        symbols = SYMBOLS if cls is Quote else EQUITIES
        rows = [r for r in recorded(cls) if r["event_symbol"] in symbols]
        assert sorted(key(cls, e) for _, e in of(got, cls)) == sorted(key(cls, r) for r in rows)
