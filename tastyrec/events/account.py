"""Account-streamer payloads: orders, complex orders, balances, positions, alerts, watchlists.

One frozen msgspec Struct per notification ``type`` (docs/account-streamer.md#notifications,
#payloads), with the tastytrade SDK's snake_case attribute names (``account_number``,
``fill_price``...) and the wire's kebab-case keys (``rename="kebab"``). The wire name of each class
is in :data:`ACCOUNT_TYPES` (``Order`` -> :class:`PlacedOrder`, ``PublicWatchlists`` ->
:class:`Watchlist`...), so tables named after the classes never collide with DXLink's own ``Order``
event.

Value policy:

* money and quantities are :class:`~decimal.Decimal` and exact; the wire sends them as JSON strings
  (``"7218.997"``) or numbers (``"size": 100``): both are accepted.
* signed amounts arrive as a magnitude plus a sibling ``<field>-effect`` (``Credit``/``Debit``/
  ``None``); :func:`decode_payload` applies the sign the way the SDK does (Debit = negative) and the
  effect is kept too (``price_effect``...), so :func:`encode_payload` can rebuild the wire form.
  AccountBalance's ``unsettled-cryptocurrency-fiat-amount`` takes its sign from
  ``unsettled-cryptocurrency-fiat-effect`` (the SDK's key) or ``...-amount-effect``.
* timestamps are aware :class:`~datetime.datetime`; ISO-8601 strings and epoch milliseconds (seen
  for order ``updated-at``) are both accepted. Dates are :class:`~datetime.date`.
* enumerations (status, action, instrument type...) stay ``str``: a value the server adds tomorrow
  must not make a notification undecodable.
* fields the SDK requires are required here too; everything else defaults to ``None``. Keys we do
  not know are ignored.

A notification of a type not in :data:`ACCOUNT_TYPES` becomes :class:`UnknownNotification` (kept
raw), never an error. This module imports only msgspec and the standard library.

Size: over 600 lines because it is one schema: the account payload Structs (their field lists are
most of the file, declarations rather than logic) and the one decoder and encoder that must change
with them (:func:`decode_payload`, :func:`encode_payload`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, TypeAlias

import msgspec

from ..exceptions import SchemaError

__all__ = (
    "ACCOUNT_TYPES",
    "AccountBalance",
    "AccountEvent",
    "CurrentPosition",
    "ExternalTransaction",
    "FillInfo",
    "Leg",
    "OrderCondition",
    "OrderRule",
    "PlacedComplexOrder",
    "PlacedOrder",
    "QuoteAlert",
    "TradingStatus",
    "UnderlyingYearGainSummary",
    "UnknownNotification",
    "Watchlist",
    "decode_payload",
    "encode_payload",
    "wire_name",
)


class AccountEvent(msgspec.Struct, frozen=True, kw_only=True, rename="kebab"):
    """Base of every account-streamer payload (a full object, never a diff)."""


# --- orders ------------------------------------------------------------------------------------


class FillInfo(AccountEvent, frozen=True):
    """One fill of an order leg (each fill is published as it happens)."""

    fill_id: str
    quantity: Decimal
    fill_price: Decimal
    filled_at: datetime
    destination_venue: str | None = None
    ext_group_fill_id: str | None = None
    ext_exec_id: str | None = None


class Leg(AccountEvent, frozen=True):
    """One leg of an order: what is traded, how much is left, and its fills so far."""

    instrument_type: str
    symbol: str
    action: str  #: ``Buy to Open``, ``Sell to Close``, ``Buy``, ``Sell``...
    quantity: Decimal | None = None
    remaining_quantity: Decimal | None = None
    fills: list[FillInfo] = []


class OrderCondition(AccountEvent, frozen=True):
    """A condition of an order rule (the SDK's OrderCondition; price components kept raw)."""

    id: str | None = None
    action: str | None = None
    symbol: str | None = None
    instrument_type: str | None = None
    indicator: str | None = None
    comparator: str | None = None
    threshold: Decimal | None = None
    is_threshold_based_on_notional: bool | None = None
    triggered_at: datetime | None = None
    triggered_value: Decimal | None = None
    price_components: list[dict[str, Any]] = []


class OrderRule(AccountEvent, frozen=True):
    """When an order is routed or cancelled, and on which conditions."""

    route_after: datetime | None = None
    routed_at: datetime | None = None
    cancel_at: datetime | None = None
    cancelled_at: datetime | None = None
    order_conditions: list[OrderCondition] = []


class PlacedOrder(AccountEvent, frozen=True):
    """An order (wire type ``Order``), published again on every status change and every fill.

    ``price`` and ``value`` are signed: negative for a debit (paying), positive for a credit.
    """

    id: int
    account_number: str
    time_in_force: str
    order_type: str
    underlying_symbol: str
    underlying_instrument_type: str
    status: str
    cancellable: bool
    editable: bool
    edited: bool
    updated_at: datetime
    legs: list[Leg]
    size: Decimal | None = None
    price: Decimal | None = None
    price_effect: str | None = None
    gtc_date: date | None = None
    value: Decimal | None = None
    value_effect: str | None = None
    stop_trigger: Decimal | None = None
    contingent_status: str | None = None
    confirmation_status: str | None = None
    cancelled_at: datetime | None = None
    cancel_user_id: str | int | None = None
    cancel_username: str | None = None
    replacing_order_id: int | None = None
    replaces_order_id: int | None = None
    received_at: datetime | None = None
    in_flight_at: datetime | None = None
    live_at: datetime | None = None
    terminal_at: datetime | None = None
    reject_reason: str | None = None
    user_id: str | int | None = None
    username: str | None = None
    complex_order_id: int | str | None = None
    complex_order_tag: str | None = None
    preflight_id: int | str | None = None
    order_rule: OrderRule | None = None
    source: str | None = None
    external_identifier: str | None = None
    destination_venue: str | None = None
    ext_exchange_order_number: str | None = None
    ext_client_order_id: str | None = None
    ext_global_order_number: int | None = None


class PlacedComplexOrder(AccountEvent, frozen=True):
    """A complex order (wire type ``ComplexOrder``): OCO, OTO, OTOCO or PAIRS.

    Its orders are also published as their own ``Order`` notifications.
    """

    id: int
    account_number: str
    type: str
    orders: list[PlacedOrder]
    trigger_order: PlacedOrder | None = None
    terminal_at: datetime | None = None
    ratio_price_threshold: Decimal | None = None
    ratio_price_comparator: str | None = None
    ratio_price_is_threshold_based_on_notional: bool | None = None
    related_orders: list[dict[str, Any]] | None = None


# --- balances and positions --------------------------------------------------------------------


class AccountBalance(AccountEvent, frozen=True):
    """An account's balances (the object ``GET /accounts/{n}/balances`` returns)."""

    account_number: str
    cash_balance: Decimal
    long_equity_value: Decimal
    short_equity_value: Decimal
    long_derivative_value: Decimal
    short_derivative_value: Decimal
    long_futures_value: Decimal
    short_futures_value: Decimal
    long_futures_derivative_value: Decimal
    short_futures_derivative_value: Decimal
    long_margineable_value: Decimal
    short_margineable_value: Decimal
    margin_equity: Decimal
    equity_buying_power: Decimal
    derivative_buying_power: Decimal
    day_trading_buying_power: Decimal
    futures_margin_requirement: Decimal
    available_trading_funds: Decimal
    maintenance_requirement: Decimal
    maintenance_call_value: Decimal
    reg_t_call_value: Decimal
    day_trading_call_value: Decimal
    day_equity_call_value: Decimal
    net_liquidating_value: Decimal
    cash_available_to_withdraw: Decimal
    day_trade_excess: Decimal
    pending_cash: Decimal
    long_cryptocurrency_value: Decimal
    short_cryptocurrency_value: Decimal
    cryptocurrency_margin_requirement: Decimal
    unsettled_cryptocurrency_fiat_amount: Decimal
    closed_loop_available_balance: Decimal
    equity_offering_margin_requirement: Decimal
    long_bond_value: Decimal
    bond_margin_requirement: Decimal
    used_derivative_buying_power: Decimal
    snapshot_date: date
    reg_t_margin_requirement: Decimal
    futures_overnight_margin_requirement: Decimal
    futures_intraday_margin_requirement: Decimal
    maintenance_excess: Decimal
    pending_margin_interest: Decimal
    effective_cryptocurrency_buying_power: Decimal
    updated_at: datetime
    pending_cash_effect: str | None = None
    unsettled_cryptocurrency_fiat_effect: str | None = None
    apex_starting_day_margin_equity: Decimal | None = None
    buying_power_adjustment: Decimal | None = None
    buying_power_adjustment_effect: str | None = None
    time_of_day: str | None = None
    currency: str | None = None


class CurrentPosition(AccountEvent, frozen=True):
    """A position (``GET /accounts/{n}/positions`` item); key = account + symbol.

    ``quantity`` is a magnitude with ``quantity_direction`` (``Long``/``Short``/``Zero``), as on the
    wire; a position with quantity 0 is closed.
    """

    account_number: str
    symbol: str
    instrument_type: str
    underlying_symbol: str
    quantity: Decimal
    quantity_direction: str
    close_price: Decimal
    average_open_price: Decimal
    multiplier: Decimal
    cost_effect: str
    is_suppressed: bool
    is_frozen: bool
    realized_day_gain: Decimal
    realized_today: Decimal
    created_at: datetime
    updated_at: datetime
    realized_day_gain_effect: str | None = None
    realized_day_gain_date: date | None = None
    realized_today_effect: str | None = None
    realized_today_date: date | None = None
    mark: Decimal | None = None
    mark_price: Decimal | None = None
    restricted_quantity: Decimal | None = None
    expires_at: datetime | None = None
    fixing_price: Decimal | None = None
    deliverable_type: str | None = None
    average_yearly_market_close_price: Decimal | None = None
    average_daily_market_close_price: Decimal | None = None
    streamer_symbol: str | None = None
    order_id: int | None = None
    update_type: str | None = None


# --- the others --------------------------------------------------------------------------------


class TradingStatus(AccountEvent, frozen=True):
    """What an account may trade (margin, options level, futures, crypto...)."""

    id: int
    account_number: str
    updated_at: datetime
    equities_margin_calculation_type: str | None = None
    fee_schedule_name: str | None = None
    futures_margin_rate_multiplier: Decimal | None = None
    has_intraday_equities_margin: bool | None = None
    is_aggregated_at_clearing: bool | None = None
    is_closed: bool | None = None
    is_closing_only: bool | None = None
    is_cryptocurrency_enabled: bool | None = None
    is_frozen: bool | None = None
    is_full_equity_margin_required: bool | None = None
    is_futures_closing_only: bool | None = None
    is_futures_intra_day_enabled: bool | None = None
    is_futures_enabled: bool | None = None
    is_in_day_trade_equity_maintenance_call: bool | None = None
    is_in_margin_call: bool | None = None
    is_pattern_day_trader: bool | None = None
    is_small_notional_futures_intra_day_enabled: bool | None = None
    is_roll_the_day_forward_enabled: bool | None = None
    are_far_otm_net_options_restricted: bool | None = None
    options_level: str | None = None
    short_calls_enabled: bool | None = None
    small_notional_futures_margin_rate_multiplier: Decimal | None = None
    is_equity_offering_enabled: bool | None = None
    is_equity_offering_closing_only: bool | None = None
    is_portfolio_margin_enabled: bool | None = None
    is_risk_reducing_only: bool | None = None
    day_trade_count: int | None = None
    autotrade_account_type: str | None = None
    clearing_account_number: str | None = None
    clearing_aggregation_identifier: str | None = None
    is_cryptocurrency_closing_only: bool | None = None
    pdt_reset_on: date | None = None
    cmta_override: int | None = None
    enhanced_fraud_safeguards_enabled_at: datetime | None = None


class ExternalTransaction(AccountEvent, frozen=True):
    """Money moving in or out of the account (a deposit, a withdrawal)."""

    id: int
    account_number: str
    amount: Decimal
    updated_at: datetime
    bank_account_type: str | None = None
    banking_date: date | None = None
    created_at: datetime | None = None
    direction: str | None = None
    disbursement_type: str | None = None
    ext_transfer_id: str | None = None
    funds_available_date: date | None = None
    is_cancelable: bool | None = None
    is_clearing_accepted: bool | None = None
    state: str | None = None
    transfer_method: str | None = None


class UnderlyingYearGainSummary(AccountEvent, frozen=True):
    """Realized gain, fees and commissions of one underlying this year (signed amounts)."""

    year: int
    account_number: str
    symbol: str
    instrument_type: str
    fees: Decimal
    commissions: Decimal
    yearly_realized_gain: Decimal
    realized_lot_gain: Decimal
    fees_effect: str | None = None
    commissions_effect: str | None = None
    yearly_realized_gain_effect: str | None = None
    realized_lot_gain_effect: str | None = None


class QuoteAlert(AccountEvent, frozen=True):
    """A user's quote alert that triggered (or changed)."""

    user_external_id: str
    symbol: str
    alert_external_id: str
    field: str
    operator: str
    threshold: str
    expires_at: int | None = None
    completed_at: datetime | None = None
    created_at: datetime | None = None
    triggered_at: datetime | None = None
    threshold_numeric: Decimal | None = None
    dx_symbol: str | None = None


class Watchlist(AccountEvent, frozen=True):
    """A public watchlist (wire type ``PublicWatchlists``); entries kept as sent."""

    name: str
    watchlist_entries: list[dict[str, Any]] | None = None
    group_name: str = "default"
    order_index: int = 9999


class UnknownNotification(msgspec.Struct, frozen=True):
    """A notification of a type tastyrec does not know (e.g. ``OrderChain``), kept raw."""

    type: str
    data: Any
    timestamp: int | None = None


AnyAccountEvent: TypeAlias = (
    PlacedOrder
    | PlacedComplexOrder
    | AccountBalance
    | CurrentPosition
    | TradingStatus
    | ExternalTransaction
    | UnderlyingYearGainSummary
    | QuoteAlert
    | Watchlist
)

#: wire ``type`` -> Struct (the tastytrade SDK's ``MAP_ALERTS``).
ACCOUNT_TYPES: Final[dict[str, type[AccountEvent]]] = {
    "Order": PlacedOrder,
    "ComplexOrder": PlacedComplexOrder,
    "AccountBalance": AccountBalance,
    "CurrentPosition": CurrentPosition,
    "TradingStatus": TradingStatus,
    "ExternalTransaction": ExternalTransaction,
    "UnderlyingYearGainSummary": UnderlyingYearGainSummary,
    "QuoteAlert": QuoteAlert,
    "PublicWatchlists": Watchlist,
}
_WIRE_NAMES: Final = {cls: name for name, cls in ACCOUNT_TYPES.items()}

#: a signed field whose effect key is not ``<field>-effect`` (the SDK reads this key)
_EFFECT_ALIASES: Final = {
    "unsettled-cryptocurrency-fiat-amount": (
        "unsettled-cryptocurrency-fiat-effect",
        "unsettled-cryptocurrency-fiat-amount-effect",
    )
}
#: wire keys sent as JSON numbers, not strings (docs/account-streamer.md#payloads), per class
_NUMBER_KEYS: Final[dict[type[AccountEvent], frozenset[str]]] = {
    PlacedOrder: frozenset({"size"}),
    Leg: frozenset({"quantity", "remaining-quantity"}),
    CurrentPosition: frozenset({"multiplier"}),
}


def wire_name(cls: type[AccountEvent]) -> str:
    """The notification ``type`` of a payload class (``PlacedOrder`` -> ``"Order"``)."""
    try:
        return _WIRE_NAMES[cls]
    except KeyError:
        raise SchemaError(f"{cls.__name__!r} is not an account-streamer payload type") from None


# --- decoding ----------------------------------------------------------------------------------


@functools.cache
def _plan(
    cls: type[AccountEvent],
) -> tuple[list[tuple[str, str]], list[str], list[tuple[str, Any]]]:
    """What :func:`_prepare` does to one class's dict: (signed key, effect key) pairs, datetime
    keys, and nested Struct keys (with their class, or a list of it)."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    names = {f.encode_name for f in info.fields}
    signed: list[tuple[str, str]] = []
    times: list[str] = []
    nested: list[tuple[str, Any]] = []
    for f in info.fields:
        key = f.encode_name
        if f"{key}-effect" in names:
            signed.append((key, f"{key}-effect"))
        signed.extend((key, alias) for alias in _EFFECT_ALIASES.get(key, ()))
        for t in _members(f.type):
            if isinstance(t, msgspec.inspect.DateTimeType):
                times.append(key)
            elif isinstance(t, msgspec.inspect.StructType):
                nested.append((key, t.cls))
            elif isinstance(t, msgspec.inspect.ListType) and isinstance(
                t.item_type, msgspec.inspect.StructType
            ):
                nested.append((key, [t.item_type.cls]))
    return signed, times, nested


def _members(t: msgspec.inspect.Type) -> list[msgspec.inspect.Type]:
    return list(t.types) if isinstance(t, msgspec.inspect.UnionType) else [t]


def _prepare(cls: type[AccountEvent], data: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with signs applied and epoch-ms times made datetimes, recursively."""
    out = dict(data)
    signed, times, nested = _plan(cls)
    for key, effect_key in signed:
        if out.get(effect_key) == "Debit" and out.get(key) is not None:
            try:
                out[key] = -abs(Decimal(str(out[key])))
            except InvalidOperation:
                pass  # msgspec reports the bad value with its path
    for key in times:
        value = out.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = datetime.fromtimestamp(value / 1000, UTC)
    for key, sub in nested:
        value = out.get(key)
        if isinstance(sub, list) and isinstance(value, list):
            out[key] = [_prepare(sub[0], v) if isinstance(v, dict) else v for v in value]
        elif isinstance(value, dict):
            out[key] = _prepare(sub, value)
    return out


#: deepest nesting of arrays/objects accepted in a notification's data (real ones nest ~4 deep)
_MAX_NESTING: Final = 64


def _nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether decoded JSON nests more than ``limit`` arrays/objects deep (no recursion)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def decode_payload(type_name: str, data: Any, timestamp: int | None = None) -> Any:
    """Build the payload Struct of one notification.

    Args:
        type_name: the notification's ``type`` (``"Order"``...).
        data: its ``data`` object, as decoded JSON.
        timestamp: its ``timestamp`` (epoch ms), kept in :class:`UnknownNotification`.

    Returns:
        The Struct of :data:`ACCOUNT_TYPES`, or :class:`UnknownNotification` for another type.

    Raises:
        SchemaError: a known type whose data does not fit (a required key missing, a bad value),
            or data of any type nesting more than 64 arrays/objects deep.
    """
    if _nesting_exceeds(data, _MAX_NESTING):
        # decoded, but close enough to the recursion limit that encoding it again (the
        # recorder stores unknown or free-form data as JSON text) could raise RecursionError
        raise SchemaError(f"{type_name} notification data nested deeper than {_MAX_NESTING}")
    cls = ACCOUNT_TYPES.get(type_name)
    if cls is None:
        return UnknownNotification(type_name, data, timestamp)
    if not isinstance(data, dict):
        raise SchemaError(f"{type_name} notification data is not an object: {type(data).__name__}")
    try:
        return msgspec.convert(_prepare(cls, data), cls)
    except RecursionError:
        raise SchemaError(f"invalid {type_name} notification: nested too deeply") from None
    except msgspec.ValidationError as exc:
        raise SchemaError(f"invalid {type_name} notification: {exc}") from None


# --- encoding (the simulator's side) -----------------------------------------------------------


def encode_payload(event: AccountEvent) -> dict[str, Any]:
    """The wire ``data`` object of a payload: kebab-case keys, decimal strings, signs moved back
    into ``-effect`` siblings, absent (``None``) keys left out, times as
    ``2023-07-05T19:07:32.444+00:00``. The inverse of :func:`decode_payload`."""
    return _encode(event)


def _encode(event: AccountEvent) -> dict[str, Any]:
    cls = type(event)
    out: dict[str, Any] = {}
    for name, key in zip(cls.__struct_fields__, cls.__struct_encode_fields__, strict=True):
        value = getattr(event, name)
        if value is None:
            continue
        out[key] = _value(value)
    signed, _, _ = _plan(cls)
    for key, effect_key in signed:
        value = getattr(event, _snake(key))
        if value is None:
            continue
        if effect_key.endswith("-amount-effect"):
            continue  # only the SDK's key is written
        negative = value < 0 or (value == 0 and out.get(effect_key) == "Debit")
        out[key] = str(abs(value))
        if negative:
            out[effect_key] = "Debit"
        elif out.get(effect_key) not in ("Credit", "None"):
            out[effect_key] = "Credit" if value != 0 else "None"
    for key in _NUMBER_KEYS.get(cls, ()):
        value = getattr(event, _snake(key))
        if isinstance(value, Decimal):
            out[key] = int(value) if value == value.to_integral_value() else float(value)
    return out


def _snake(key: str) -> str:
    return key.replace("-", "_")


def _value(value: Any) -> Any:
    if isinstance(value, AccountEvent):
        return _encode(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list):
        return [_value(v) for v in value]
    return value
