"""tastyrec.transport.redact: the one token redactor, on URLs, frames and log lines."""

from __future__ import annotations

import logging

import pytest

from tastyrec.transport import redact, redacting_logger

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
