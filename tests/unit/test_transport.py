"""tastyrec.transport without sockets: the one token redactor (URLs, frames, log lines) and the
mapping of websockets' close exceptions."""

from __future__ import annotations

import logging

import pytest
import websockets
from websockets.frames import Close

from tastyrec.exceptions import ConnectionClosedError
from tastyrec.transport import map_exceptions, redact, redacting_logger

S = "s3cr3t-T0KEN"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"wss://user:{S}@host:443/realtime", "wss://host:443/realtime"),
        (f"ws://{S}@127.0.0.1:9/x", "ws://127.0.0.1:9/x"),
        (f"wss://u:a@b{S}@host/x", "wss://host/x"),  # an unencoded "@" in the password
        (f"wss://host/realtime?token={S}", "wss://host/realtime?token=<redacted>"),
        (
            f"wss://host/r?v=1&access_token={S}&x=2;API-KEY={S}#sig={S}",
            "wss://host/r?v=1&access_token=<redacted>&x=2;API-KEY=<redacted>#sig=<redacted>",
        ),
        (
            f"/realtime?password={S}&client_secret={S}",
            "/realtime?password=<redacted>&client_secret=<redacted>",
        ),
        (
            f"GET /realtime?Authorization=Bearer%20{S} HTTP/1.1",
            "GET /realtime?Authorization=<redacted> HTTP/1.1",
        ),
        (
            f'\'{{"type":"AUTH","channel":0,"token":"{S}"}}\'',
            '\'{"type":"AUTH","channel":0,"token":<redacted>}\'',
        ),
        (
            f'{{"action":"heartbeat","auth-token":"Bearer {S}"}}',
            '{"action":"heartbeat","auth-token":<redacted>}',
        ),
        (
            f"to ws://u:{S}@h/x?token={S} lost: code=1006",
            "to ws://h/x?token=<redacted> lost: code=1006",
        ),
        # nothing secret: unchanged
        ("wss://host:443/realtime?symbols=SPY&v=2", "wss://host:443/realtime?symbols=SPY&v=2"),
        ("mail me at someone@example.com", "mail me at someone@example.com"),
        ("", ""),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected  # idempotent


def test_websockets_header_lines_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="websockets.client")
    log = redacting_logger("websockets.client")
    log.debug("> GET %s HTTP/1.1", f"/realtime?token={S}")
    log.debug("> %s: %s", "Authorization", "Basic dXNlcjpzM2NyM3QtVDBLRU4=")
    log.debug("< %s: %s", "Set-Cookie", f"session={S}")
    log.debug("> %s: %s", "Host", "127.0.0.1:9")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "> GET /realtime?token=<redacted> HTTP/1.1",
        "> Authorization: <redacted>",
        "< Set-Cookie: <redacted>",
        "> Host: 127.0.0.1:9",
    ]


def _closed(exc: Exception, max_size: int | None) -> ConnectionClosedError:
    with pytest.raises(ConnectionClosedError) as info, map_exceptions(max_size):
        raise exc
    assert info.value.__cause__ is exc
    return info.value


@pytest.mark.parametrize(
    ("max_size", "limit"), [(64 * 2**20, "64 MiB"), (8192, "8 KiB"), (1000, "1000 bytes")]
)
def test_our_1009_for_an_inbound_message_says_too_big_and_the_limit(max_size, limit):
    # what websockets raises from recv() after its parser hit PayloadTooBig: it sent 1009 and
    # dropped the connection, so no close frame was received (this used to read
    # "connection closed: code=None reason=''")
    reason = f"frame with {max_size + 1} bytes exceeds limit of {max_size} bytes"
    for rcvd in (None, Close(1009, reason)):  # the peer may echo our close before we go
        exc = websockets.ConnectionClosedError(
            rcvd, Close(1009, reason), rcvd_then_sent=None if rcvd is None else False
        )
        closed = _closed(exc, max_size)
        assert str(closed) == (
            f"message too big: the server sent a message over the {limit} inbound limit "
            f"({reason}); closed the connection with 1009"
        )
        # an echo of our close is not the server closing with 1009 (our message too big), which
        # the streamer treats as fatal
        assert closed.code is None and closed.reason == ""


def test_other_closes_keep_code_and_reason():
    # the server closing with 1009 (a message of ours too big) is the server's code, not ours
    exc = websockets.ConnectionClosedError(
        Close(1009, "too long"), Close(1009, "too long"), rcvd_then_sent=True
    )
    closed = _closed(exc, 2**20)
    assert (closed.code, closed.reason) == (1009, "too long")
    assert str(closed) == "connection closed: code=1009 reason='too long'"
    closed = _closed(websockets.ConnectionClosedError(None, None), 2**20)
    assert str(closed) == "connection closed: code=None reason=''"
