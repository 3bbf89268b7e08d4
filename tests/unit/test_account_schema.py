"""Account payloads -> Arrow -> Parquet -> back, and queried with DuckDB (nested legs and fills)."""

from __future__ import annotations

from decimal import Decimal

import duckdb
import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tastyrec.events.account import (
    ACCOUNT_TYPES,
    AccountBalance,
    PlacedComplexOrder,
    PlacedOrder,
    Watchlist,
    wire_name,
)
from tastyrec.events.base import Event
from tastyrec.events.registry import FieldKind, spec, struct_fields
from tastyrec.exceptions import SchemaError
from tastyrec.schema import ARROW_TYPES
from tastyrec.sim.brokerage import AccountBook, AccountSimConfig
from tastyrec.sim.market import Market
from tastyrec.storage.account_schema import (
    DECIMAL_TYPE,
    account_arrow_schema,
    account_events_from_arrow,
    account_events_to_batch,
)

T0 = 1_795_000_000.0


@pytest.fixture(scope="module")
def book() -> AccountBook:
    """A book that traded: single- and multi-leg orders, an OCO, a deposit, a watchlist."""
    b = AccountBook(Market(5), T0, config=AccountSimConfig(order_every_s=None, step_s=0.1))
    b.place_order(T0, [("SPY", "Buy to Open", 100)])
    b.place_order(
        T0,
        [("SPY   261218C00600000", "Buy to Open", 3), ("SPY   261218C00610000", "Sell to Open", 3)],
    )
    b.place_complex_order(
        T0,
        "OCO",
        [
            {"legs": [("QQQ", "Buy to Open", 1)], "order_type": "Limit", "price": "-100000"},
            {"legs": [("QQQ", "Buy to Open", 1)], "order_type": "Limit", "price": "-1"},
        ],
    )
    b.deposit(T0, "1000.5")
    b.publish_watchlist(T0, "Tech", ["AAPL", "MSFT"])
    b.update_trading_status(T0, is_closing_only=True)
    b.trigger_quote_alert(T0, "AAPL", "199.5")
    t = T0
    while t < T0 + 3:
        t += 0.05
        b.tick(t)
    b.place_order(t, [("SPY", "Sell to Close", 40)])  # realizes a gain: a year summary
    while t < T0 + 6:
        t += 0.05
        b.tick(t)
    return b


def payloads(book: AccountBook, cls: type) -> list:
    return [p for name, p in book.published if name == wire_name(cls)]


def test_schema_is_derived_from_the_struct():
    schema = account_arrow_schema(PlacedOrder)
    assert schema.names[:2] == ["id", "account_number"]
    assert schema.names[-4:] == ["event_time", "recv_ns", "recv_epoch_ns", "from_snapshot"]
    assert schema.field("recv_ns").type == pa.timestamp("us", tz="UTC")
    assert schema.field("recv_epoch_ns").type == pa.int64()
    assert schema.field("from_snapshot").type == pa.bool_()
    assert schema.field("price").type == DECIMAL_TYPE
    fills = schema.field("legs").type.value_type.field("fills").type
    assert pa.types.is_list(fills) and fills.value_type.field("fill_price").type == DECIMAL_TYPE
    assert schema.field("complex_order_id").type == pa.string()  # int | str: JSON text
    assert schema.field("updated_at").type == pa.timestamp("us", tz="UTC")
    assert not schema.field("id").nullable and schema.field("price").nullable
    for cls in ACCOUNT_TYPES.values():
        assert account_arrow_schema(cls).names[-1] == "from_snapshot"


@pytest.mark.parametrize("cls", list(ACCOUNT_TYPES.values()), ids=lambda c: c.__name__)
def test_account_columns_come_from_the_registry(cls):
    """One derivation: the registry's fields of the Struct, typed by ``schema.ARROW_TYPES``."""
    fields = struct_fields(cls)
    schema = account_arrow_schema(cls)
    assert schema.names[: len(fields)] == [f.name for f in fields]
    for f in fields:
        column = schema.field(f.name)
        assert column.nullable is not f.required
        if f.kind is FieldKind.STRUCT:
            assert pa.types.is_struct(column.type)
            assert column.type.names == [g.name for g in struct_fields(f.struct)]
        elif f.kind is FieldKind.STRUCT_LIST:
            assert pa.types.is_list(column.type)
            assert column.type.value_type.names == [g.name for g in struct_fields(f.struct)]
        else:
            assert column.type == ARROW_TYPES[f.kind]


def test_kinds_of_account_fields():
    kinds = {f.name: f.kind for f in struct_fields(PlacedOrder)}
    assert kinds["price"] is FieldKind.DECIMAL
    assert kinds["legs"] is FieldKind.STRUCT_LIST
    assert kinds["complex_order_id"] is FieldKind.JSON  # int | str
    assert kinds["updated_at"] is FieldKind.DATETIME
    assert kinds["account_number"] is FieldKind.STRING


def test_an_event_field_of_an_account_kind_is_refused():
    """Market events keep DXLink's five wire kinds: the shared derivation does not widen them."""

    class Odd(Event, frozen=True):
        amount: Decimal = Decimal(0)

    assert struct_fields(Odd)[-1].kind is FieldKind.DECIMAL
    with pytest.raises(SchemaError, match="unsupported field type"):
        spec(Odd)
    with pytest.raises(SchemaError, match="not a msgspec Struct"):
        struct_fields(int)  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", list(ACCOUNT_TYPES.values()), ids=lambda c: c.__name__)
def test_round_trip_through_parquet(book, tmp_path, cls):
    events = payloads(book, cls)
    assert events, f"the book published no {cls.__name__}"
    items = [
        (e, 1_795_000_000_000 + i, 1_795_000_000_000_000_000 + i) for i, e in enumerate(events)
    ]
    batch = account_events_to_batch(cls, items)
    path = tmp_path / f"{cls.__name__}.parquet"
    pq.write_table(pa.Table.from_batches([batch]), path)
    back = account_events_from_arrow(cls, pq.read_table(path))
    assert [e for e, _, _ in back] == events  # exact: decimals, times, nested legs and fills
    assert [r for _, _, r in back] == [r for _, _, r in items]
    assert back[0][1] is not None and back[0][1].year == 2026


def test_duckdb_queries_nested_fills_exactly(book, tmp_path):
    orders = payloads(book, PlacedOrder)
    batch = account_events_to_batch(PlacedOrder, [(o, None, i) for i, o in enumerate(orders)])
    pq.write_table(pa.Table.from_batches([batch]), tmp_path / "PlacedOrder.parquet")
    balances = payloads(book, AccountBalance)
    pq.write_table(
        pa.Table.from_batches(
            [
                account_events_to_batch(
                    AccountBalance, [(b, None, i) for i, b in enumerate(balances)]
                )
            ]
        ),
        tmp_path / "AccountBalance.parquet",
    )
    con = duckdb.connect()
    con.execute(
        f"CREATE VIEW PlacedOrder AS SELECT * FROM read_parquet('{tmp_path}/PlacedOrder.parquet')"
    )
    # the last message of each filled order carries all its fills
    rows = con.execute(
        """
        WITH last AS (
            SELECT * FROM PlacedOrder WHERE status = 'Filled'
            QUALIFY row_number() OVER (PARTITION BY id ORDER BY recv_epoch_ns DESC) = 1
        ), legs AS (SELECT id, UNNEST(legs) AS leg FROM last),
        fills AS (SELECT id, leg.symbol AS symbol, leg.action AS action, UNNEST(leg.fills) AS f
                  FROM legs)
        SELECT symbol, SUM(f.quantity) AS qty,
               SUM(f.quantity * f.fill_price * CASE WHEN action LIKE 'Buy%' THEN 1 ELSE -1 END
                   * CASE WHEN symbol LIKE 'SPY %' THEN 100 ELSE 1 END) AS paid
        FROM fills GROUP BY symbol ORDER BY symbol
        """
    ).fetchall()
    assert [(s, q) for s, q, _ in rows] == [
        ("QQQ", Decimal(1)),
        ("SPY", Decimal(140)),  # bought 100, sold 40
        ("SPY   261218C00600000", Decimal(3)),
        ("SPY   261218C00610000", Decimal(3)),
    ]
    paid = sum(p for _, _, p in rows)
    (cash,) = con.execute(
        f"SELECT cash_balance FROM read_parquet('{tmp_path}/AccountBalance.parquet') "
        "ORDER BY recv_epoch_ns DESC LIMIT 1"  # the last published
    ).fetchone()
    # exact decimals: the money adds up to the cent
    assert cash == Decimal(100000) + Decimal("1000.5") - paid
    assert isinstance(cash, Decimal)


def test_values_that_do_not_fit_are_refused(book):
    (wl,) = payloads(book, Watchlist)
    with pytest.raises(SchemaError, match="in a batch of"):
        account_events_to_batch(PlacedComplexOrder, [(wl, None, 0)])
    bal = payloads(book, AccountBalance)[0]
    tiny = msgspec.structs.replace(bal, cash_balance=Decimal("0.00000000001"))
    with pytest.raises(SchemaError, match="cannot store AccountBalance"):
        account_events_to_batch(AccountBalance, [(tiny, None, 0)])
