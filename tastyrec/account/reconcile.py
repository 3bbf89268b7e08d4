"""Reconciliation: what tastytrade's REST API says about an account that its stream did not.

Role: production's account stream has lost order events (docs/account-streamer.md#lost-order-events:
fills that never arrived while heartbeats went on). The stream alone cannot be trusted to hold an
account's full history, so the recorder also asks the REST API, at every connect and reconnect of
the account stream and every ``reconcile_every_s``, for the account's orders of the day (``GET
/accounts/{n}/orders/live``), open positions (``GET /accounts/{n}/positions``) and balances (``GET
/accounts/{n}/balances``), and records what the stream had not already said. This module holds the
pure part, :class:`StreamKnowledge` (what the stream said, and whether a snapshot payload adds to
it), and :func:`fetch_snapshot` (the three calls through the session's authenticated client and
retry policy: :meth:`tastyrec.session.Session.get`; no second HTTP client). It imports neither the
recorder nor the simulator.

"Already said" — a snapshot payload is recorded only when it is news:

* **orders**, by id: the stream's last word on the order has the same ``status`` and the same
  fill ids (so a partial fill the stream missed while the order stayed ``Live`` is news).
  ``updated-at`` is not part of the key (the stream sends it as epoch ms or ISO text, REST as
  ISO; a missed notification may share its ``updated-at`` with nothing), but it guards against
  a stale snapshot: a payload *older* than what the stream said is never recorded.
* **positions**, by ``(account, symbol)``: same ``quantity``, ``quantity-direction`` and
  ``average-open-price``. Marks (``close-price``, ``mark``) move with the market and are not
  news.
* **balances**, by account: same ``cash-balance`` and ``pending-cash``, the values only account
  activity moves. Market values, buying power and net liquidating value move with every mark;
  comparing them would record a balance at every reconciliation.

A payload recorded from a snapshot is also noted, so the next reconciliation does not record it
again. Before comparing, the recorder ingests what already waits in the stream's tap, so a
notification that arrived while the REST calls ran is "said" first.

Limits: a stream notification still on the wire when the snapshot is compared is recorded when
it arrives, after the snapshot row saying the same (stream rows are never suppressed: they are
the record of what the stream did). Reconciliation cannot tell a closed position the stream did
not report (REST lists open positions only), and does not fetch complex orders, trading status,
transactions or gain summaries.

Why rows in the same tables, marked by a column (``from_snapshot``) and not tables of their own:
a snapshot order *is* a ``PlacedOrder`` of the same schema, the state the stream would have
sent; queries such as "last status of each order" and replay's timeline must see both sources
together, ordered by ``recv_ns`` (the receipt time of the REST answer), and a query that wants
only the stream filters ``NOT from_snapshot``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, Protocol

from ..events.account import (
    AccountBalance,
    AccountEvent,
    CurrentPosition,
    PlacedOrder,
    decode_payload,
)

__all__ = (
    "RECONCILED_TYPES",
    "RestClient",
    "StreamKnowledge",
    "fetch_snapshot",
)

#: The payload classes reconciliation fetches and records.
RECONCILED_TYPES: Final = (PlacedOrder, CurrentPosition, AccountBalance)


class RestClient(Protocol):
    """What reconciliation needs of a session: :meth:`tastyrec.session.Session.get`."""

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class _Said:
    value: tuple[Any, ...]
    updated_at: datetime | None


def _key_value(payload: AccountEvent) -> tuple[Any, tuple[Any, ...]] | None:
    if isinstance(payload, PlacedOrder):
        fills = frozenset(f.fill_id for leg in payload.legs for f in leg.fills)
        return ("order", payload.id), (payload.status, fills)
    if isinstance(payload, CurrentPosition):
        key = ("position", payload.account_number, payload.symbol)
        return key, (payload.quantity, payload.quantity_direction, payload.average_open_price)
    if isinstance(payload, AccountBalance):
        pending: Decimal = payload.pending_cash
        return ("balance", payload.account_number), (payload.cash_balance, pending)
    return None


class StreamKnowledge:
    """What the account stream (and earlier snapshots) said, by order, position and account.

    Example usage::

        said = StreamKnowledge()
        said.note(order_from_the_stream)
        news = said.news(await fetch_snapshot(session, "5WT00000"))  # noted too
    """

    def __init__(self) -> None:
        self._said: dict[Any, _Said] = {}

    def __len__(self) -> int:
        return len(self._said)

    def note(self, payload: Any) -> None:
        """Remember a payload the stream delivered (other classes are ignored)."""
        kv = _key_value(payload)
        if kv is not None:
            self._said[kv[0]] = _Said(kv[1], getattr(payload, "updated_at", None))

    def is_news(self, payload: AccountEvent) -> bool:
        """Whether a snapshot payload says something the stream did not (module docstring)."""
        kv = _key_value(payload)
        if kv is None:
            return False
        said = self._said.get(kv[0])
        if said is None:
            return True
        if said.value == kv[1]:
            return False
        updated_at = getattr(payload, "updated_at", None)
        # a snapshot older than the stream's last word is stale, not news
        return not (
            said.updated_at is not None and updated_at is not None and updated_at < said.updated_at
        )

    def news(self, payloads: Iterable[AccountEvent]) -> list[AccountEvent]:
        """The payloads that are news, in order; each is noted."""
        out = []
        for payload in payloads:
            if self.is_news(payload):
                out.append(payload)
                self.note(payload)
        return out


async def fetch_snapshot(session: RestClient, account: str) -> list[AccountEvent]:
    """The account's orders of the day, open positions and balances, as the stream's Structs.

    Args:
        session: a logged-in :class:`~tastyrec.session.Session` (its retries apply).
        account: the account number.

    Raises:
        ApiError: a call failed (after the session's retries), or CredentialsError.
        SchemaError: an answer whose payloads do not fit the Structs.
    """
    base = f"/accounts/{account}"
    orders = await session.get(f"{base}/orders/live")
    positions = await session.get(f"{base}/positions")
    balances = await session.get(f"{base}/balances")
    out: list[AccountEvent] = [decode_payload("Order", item) for item in _items(orders)]
    out += [decode_payload("CurrentPosition", item) for item in _items(positions)]
    out.append(decode_payload("AccountBalance", balances))
    return out


def _items(data: dict[str, Any]) -> list[Any]:
    items = data.get("items", [])
    return items if isinstance(items, list) else []
