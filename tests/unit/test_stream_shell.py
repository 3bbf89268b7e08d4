"""The streaming shell both live streamers stand on (tastyrec._stream): the one reconnect
decision, the watchdog on an injected clock, the argument-error rule, and the quote-token
interface between a session and the DXLink streamer. No sockets: what needs a server is in
tests/integration."""

from __future__ import annotations

import errno
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from tastyrec import transport
from tastyrec._stream import Reconnect
from tastyrec.account import AlertStreamer
from tastyrec.dxlink.streamer import DXLinkStreamer
from tastyrec.exceptions import (
    ConnectionClosedError,
    LocalProtocolError,
    TastyrecError,
)
from tastyrec.session import QuoteToken, Session, quote_token_source


class _Clock:
    """Monotonic seconds that move only when the (fake) sleep says so."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()


class _Conn:
    aborted = False

    def abort(self) -> None:
        self.aborted = True


def test_argument_errors_are_value_errors_and_local_protocol_errors() -> None:
    for make in (
        lambda: DXLinkStreamer(),
        lambda: AlertStreamer(url="ws://127.0.0.1:1", token=""),
        lambda: AlertStreamer(url="ws://127.0.0.1:1", token="t", queue_size=0),
    ):
        with pytest.raises(ValueError) as info:
            make()
        assert isinstance(info.value, LocalProtocolError) and isinstance(info.value, TastyrecError)
    with pytest.raises(ValueError, match="cannot listen to"):
        AlertStreamer(url="ws://127.0.0.1:1", token="t").queued(int)


def test_one_decision_lost_connections_retried_attempts_by_the_transport() -> None:
    s = AlertStreamer(url="ws://u:SECRET@127.0.0.1:1/", token="t")
    assert s.process_exception(Reconnect("silent for 30.0 s")) is None
    assert s.process_exception(ConnectionClosedError(1006, "")) is None
    assert s.process_exception(OSError(errno.ECONNRESET, "reset")) is None
    refused = s.process_exception(ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
    assert isinstance(refused, ConnectionClosedError)  # no connection ever: a wrong URL
    assert "SECRET" not in str(refused) and "connection refused" in str(refused)
    s._ever_connected = True
    assert s.process_exception(ConnectionRefusedError(errno.ECONNREFUSED, "refused")) is None
    assert transport.process_exception(OSError("unreachable"), url="ws://x", connected=True) is None


def test_dxlink_adds_1009_as_fatal() -> None:
    s = DXLinkStreamer(url="ws://127.0.0.1:1", token="t", max_message_bytes=4096)
    fatal = s.process_exception(ConnectionClosedError(1009, "too big"))
    assert isinstance(fatal, LocalProtocolError) and "max_message_bytes" in str(fatal)
    assert s.process_exception(ConnectionClosedError(1011, "oops")) is None


def test_a_user_can_replace_the_decision_on_an_instance() -> None:
    s = AlertStreamer(url="ws://127.0.0.1:1", token="t")
    s.process_exception = lambda exc: RuntimeError("never retry")  # type: ignore[method-assign]
    assert isinstance(s._fatal(BaseExceptionGroup("lost", [Reconnect("x")])), RuntimeError)
    fatal = s._attempt_failed(OSError("network"))
    assert isinstance(fatal, RuntimeError) and s.stats.failed_connects == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("make", "limit"),
    [
        (
            lambda c: AlertStreamer(
                url="ws://127.0.0.1:1",
                token="t",
                heartbeat_interval=20,
                reply_timeout=10,
                clock=c,
                sleep=c.sleep,
            ),
            30.0,
        ),
        (
            lambda c: DXLinkStreamer(
                url="ws://127.0.0.1:1", token="t", keepalive_timeout=60, clock=c, sleep=c.sleep
            ),
            60.0,
        ),
    ],
    ids=["account", "dxlink"],
)
async def test_the_watchdog_drops_a_silent_connection_at_its_limit(make: Any, limit: float) -> None:
    clock = _Clock()
    streamer = make(clock)
    conn = _Conn()
    with pytest.raises(Reconnect, match=f"silent for {limit:.1f} s"):
        await streamer._watchdog(conn)
    assert conn.aborted and clock.now == limit and clock.slept == [limit]


def test_a_failed_attempt_during_a_gap_is_noted_in_its_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = AlertStreamer(url="ws://127.0.0.1:1", token="t")
    s._ever_connected = True
    from tastyrec._stream import Gap

    s.gaps.append(Gap(None, 1, "connection closed"))
    assert s._attempt_failed(OSError("HTTP 502 from wss://me:SECRET@host/?token=SECRET")) is None
    assert s.stats.failed_connects == 1 and s.gaps[-1].failed_attempts == 1
    assert "1 reconnect attempt(s) failed" in s.gaps[-1].reason
    assert "SECRET" not in s.gaps[-1].reason and "SECRET" not in caplog.text


def _token(expires: float) -> QuoteToken:
    return QuoteToken("qt", "ws://x/realtime", "api", datetime.fromtimestamp(expires, UTC))


def test_a_session_is_its_own_quote_token_source_and_says_when_to_renew() -> None:
    now = [1_000.0]
    session = Session("secret", "refresh", clock=lambda: now[0], quote_token_margin_s=100.0)
    assert quote_token_source(session) is session and session.renews_quote_token
    assert session.quote_token_due_in() is None  # nothing cached yet
    session._quote_token = _token(expires=2_000.0)
    assert session.quote_token_due_in() == 900.0  # 100 s before it expires
    now[0] = 1_950.0
    assert session.quote_token_due_in() == -50.0  # overdue


@pytest.mark.anyio
async def test_the_sdk_session_gives_tokens_through_its_get() -> None:
    class SdkSession:
        async def _get(self, path: str) -> dict[str, Any]:
            assert path == "/api-quote-tokens"
            return {"token": "qt-1", "dxlink-url": "ws://x/realtime", "level": "api"}

    source = quote_token_source(SdkSession())
    assert not source.renews_quote_token and source.quote_token_due_in() is None
    qt = await source.get_quote_token(force=True)
    assert (qt.token, qt.dxlink_url) == ("qt-1", "ws://x/realtime")
    with pytest.raises(ValueError, match="cannot get a quote token from object"):
        quote_token_source(object())


def test_importing_tastyrec_changes_no_logging_configuration() -> None:
    """The redactor is applied by the callers (an adapter per connection), never installed on a
    logger: importing every streaming module leaves every logger as it was."""
    code = """
import logging
def state():
    loggers = [logging.getLogger(n) for n in ("", "websockets", "websockets.client", "tastyrec")]
    return [(lg.level, list(lg.handlers), list(lg.filters), lg.propagate) for lg in loggers]
before = state()
import tastyrec, tastyrec.transport, tastyrec._stream, tastyrec.dxlink.streamer
import tastyrec.account.streamer, tastyrec.account.messages, tastyrec.record.recorder
assert state() == before, (before, state())
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_one_redactor_for_urls_frames_and_account_frames() -> None:
    from tastyrec._redact import redact
    from tastyrec.account.messages import redact as redact_account_frame

    frame = '{"action":"heartbeat","auth-token":"Bearer SECRET","value":1}'
    assert redact_account_frame(frame) == redact(frame) == (
        '{"action":"heartbeat","auth-token":<redacted>,"value":1}'
    )
    assert transport.redact is redact


async def test_close_tap_lets_a_delivery_under_way_finish_into_the_tap() -> None:
    """A full tap makes a delivery wait for the reader; ending the tap then must not cut that
    delivery short: the reader gets every item whose delivery began before the end ("a" waiting
    in the tap, "b" waiting for room; "c" comes after it and finds the tap ended). Cutting "b"
    short is how a stopping recorder lost the last events it was being given."""
    streamer = AlertStreamer(url="ws://127.0.0.1:1", token="t")
    tap = streamer.tap(max_items=1)
    delivering = anyio.Event()
    got: list[Any] = []

    async def deliver() -> None:  # what the receive loop does with each notification
        for item in ("a", "b", "c"):
            async with streamer._tap_lock:
                delivering.set()
                await streamer._to_taps(item)  # type: ignore[arg-type]

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(deliver)
            await delivering.wait()
            await anyio.wait_all_tasks_blocked()  # "b" waits for room in the full tap
            tg.start_soon(streamer.close_tap, tap)
            await anyio.wait_all_tasks_blocked()
            with tap:
                got.extend([item async for item in tap])
    assert got == ["a", "b"]


@pytest.mark.anyio
async def test_timeouts_race_the_injected_sleep_not_anyios_clock() -> None:
    """A reply, restore or connect timeout is ``_within``: the wait against the injected sleep."""
    clock = _Clock()
    s = AlertStreamer(url="ws://127.0.0.1:1", token="t", clock=clock, sleep=clock.sleep)
    never = anyio.Event()
    assert await s._within(10.0, never.wait) is False
    assert clock.now == 10.0 and clock.slept == [10.0]  # no real time passed: the fake's
    done = anyio.Event()
    done.set()
    assert await s._within(10.0, done.wait) is True
