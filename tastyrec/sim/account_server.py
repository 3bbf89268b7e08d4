"""The account-streamer simulator's server side, sans-I/O: one client socket's view of the
protocol (actions in, status replies and notifications out).

Role: :class:`AccountServerConnection` answers a socket's actions and queues those
:class:`~.brokerage.Outgoing` notifications of the :class:`~.brokerage.AccountBook` that the
socket subscribed to. It takes the time (epoch seconds) as an argument and never reads a clock;
:mod:`.account` runs it over websockets. Frames go through :mod:`tastyrec.account.messages`, the
client's own codec, so client and fake server cannot drift apart. This module must not import
websockets, anyio, asyncio or ``time``.

Behaviour (docs/account-streamer.md#status-replies, #heartbeats-and-idle-sockets). Every action
is answered with one status message carrying a per-socket 8-hex ``web-socket-session-id``,
``request-id`` only if the request had one, ``value`` for ``connect``. A missing or wrong
``auth-token`` gets ``status: error``, ``message: "failed"`` and the socket stays open. Account
notifications go only to sockets that ``connect``-ed that account, ``PublicWatchlists``/
``QuoteAlert`` only to sockets that subscribed to them. Nothing is pushed on connect, nothing
replayed after a reconnect. A ``connect`` naming an account the session does not own gets an error
reply (``unauthorized account '5WT99999'``) instead of silence. A socket silent for
``idle_timeout_s`` is closed; websocket pings count as activity.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..account import messages as m
from ..exceptions import RemoteProtocolError
from .brokerage import AccountSimConfig, Outgoing

__all__ = ("AccountServerConnection",)


class AccountServerConnection:
    """One client socket's protocol state on the simulated server.

    Args:
        check_token: whether an ``auth-token`` value is accepted.
        session_id: this socket's ``web-socket-session-id`` (8 hex characters).
        config: modes (``strict``, ``batch``, ``idle_timeout_s``).
        now: epoch seconds when the socket opened.
        accounts: the account numbers an accepted token may ``connect`` (None: any); a
            ``connect`` naming another gets an error reply and subscribes none of them.
    """

    def __init__(
        self,
        check_token: Callable[[str], bool],
        session_id: str,
        config: AccountSimConfig,
        now: float,
        accounts: Iterable[str] | None = None,
    ) -> None:
        self.check_token = check_token
        self.session_id = session_id
        self.config = config
        #: the accounts the session may subscribe to (None: any)
        self.owned: frozenset[str] | None = None if accounts is None else frozenset(accounts)
        #: accounts this socket ``connect``-ed
        self.accounts: set[str] = set()
        self.public_watchlists = False
        self.quote_alerts = False
        self.connected = False
        #: decoded requests, in arrival order (for tests)
        self.received: list[m.Request] = []
        #: set when the server closes the socket: (code, reason)
        self.close: tuple[int, str] | None = None
        self._last_recv = now
        self._out: list[bytes] = []
        self._notes: list[dict[str, Any]] = []

    def receive_text(self, raw: str | bytes, now: float) -> None:
        """Handle one client frame: answer it with a status message."""
        self._last_recv = now
        try:
            req = m.decode_request(raw)
        except RemoteProtocolError:
            self._reply({"status": "error", "action": "", "message": "invalid message"})
            return
        self.received.append(req)
        reply: dict[str, Any] = {"status": "ok", "action": req.action}
        error = self._handle(req)
        if error is not None:
            reply = {"status": "error", "action": req.action, "message": error}
        reply["web-socket-session-id"] = self.session_id
        if req.action in ("connect", "account-subscribe") and error is None:
            reply["value"] = req.value
        if req.request_id is not None:
            reply["request-id"] = req.request_id
        self._reply(reply)

    def _handle(self, req: m.Request) -> str | None:
        if not req.auth_token or not self.check_token(req.auth_token):
            return "failed"
        action = req.action
        if action in ("connect", "account-subscribe"):
            value = req.value
            numbers = [value] if isinstance(value, str) else list(value or [])
            if not numbers:
                return "failed"
            if self.owned is not None:
                foreign = [n for n in numbers if n not in self.owned]
                if foreign:
                    # the real wording is unknown (docs/account-streamer.md#status-replies):
                    # say which account
                    return f"unauthorized account {foreign[0]!r}"
            self.accounts.update(numbers)
            self.connected = True
            return None
        if action not in m.ACTIONS:
            return "not implemented"
        if self.config.strict and not self.connected:
            return "connect-not-completed"
        if action == "public-watchlists-subscribe":
            self.public_watchlists = True
        elif action == "quote-alerts-subscribe":
            self.quote_alerts = True
        return None  # heartbeat, user-message-subscribe

    def deliver(self, out: Outgoing) -> bool:
        """Queue a notification if this socket subscribed to it; returns whether it did."""
        if out.topic == "account":
            wanted = out.account in self.accounts
        elif out.topic == "public-watchlists":
            wanted = self.public_watchlists
        else:
            wanted = self.quote_alerts
        if wanted:
            self._notes.append(out.frame)
        return wanted

    def receive_ping(self, now: float) -> None:
        """A websocket ping (or pong) arrived: the socket is not idle (the tastytrade SDK
        keeps the session alive with pings alone:
        docs/account-streamer.md#websocket-pings-count-as-activity)."""
        self._last_recv = now

    def tick(self, now: float) -> None:
        """Close a socket that has sent nothing, not even a ping, for ``idle_timeout_s``."""
        if self.close is None and now - self._last_recv > self.config.idle_timeout_s:
            self.close = (1000, "idle timeout")

    def next_deadline(self) -> float:
        """When :meth:`tick` may close the socket."""
        return self._last_recv + self.config.idle_timeout_s

    def _reply(self, reply: dict[str, Any]) -> None:
        self._flush_notes()
        self._out.append(m.encode(reply))

    def _flush_notes(self) -> None:
        if not self._notes:
            return
        if self.config.batch and len(self._notes) > 1:
            self._out.append(m.encode({"results": self._notes}))
        else:
            self._out.extend(m.encode(n) for n in self._notes)
        self._notes = []

    def data_to_send(self) -> list[bytes]:
        """Take the frames to send, in order."""
        self._flush_notes()
        out, self._out = self._out, []
        return out
