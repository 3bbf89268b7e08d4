"""A refused first connection fails at once; a refused reconnect is retried (tastyrec.transport).

Real sockets on 127.0.0.1: "refused" is a port bound by this test and never listened on, so no
other process can take it and every connection to it is refused. Waits are bounded by
``anyio.fail_after`` and only bound failure; the reconnect test moves on when the client asks
for its next backoff delay (it has just been refused), not after a sleep.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncGenerator, Iterator
from typing import cast

import anyio
import pytest
from websockets.asyncio.server import ServerConnection, serve

from tastyrec import transport
from tastyrec.account import AlertStreamer
from tastyrec.dxlink.streamer import DXLinkStreamer
from tastyrec.exceptions import ConnectionClosedError
from tests.integration.waits import WAIT_S

pytestmark = pytest.mark.anyio

#: bounds failure only; a refused connection is reported in milliseconds


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A ws:// URL whose port is bound here but not listening: connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}/realtime"


def assert_refused_message(exc: BaseException, url: str) -> None:
    text = str(exc)
    assert text.startswith(f"cannot connect to {url!r}: connection refused"), text
    assert "check the URL" in text
    assert "code=None" not in text and "reason=" not in text


async def test_a_refused_first_attempt_fails_at_once(refused_url: str) -> None:
    with anyio.fail_after(WAIT_S), pytest.raises(ConnectionClosedError) as caught:
        async for _ in transport.connections(refused_url, reconnect_delays=lambda: iter([0.0])):
            pytest.fail("nothing listens there")
    # reconnect_delays was never asked for a delay: nothing was retried
    assert caught.value.code is None
    assert_refused_message(caught.value, refused_url)


@pytest.mark.parametrize("streamer", [DXLinkStreamer, AlertStreamer])
async def test_streamers_report_a_refused_url_without_waiting_for_connect_timeout(
    refused_url: str, streamer: type[DXLinkStreamer] | type[AlertStreamer]
) -> None:
    # connect_timeout far beyond the bound: only the refusal itself can end this in time
    client = streamer(url=refused_url, token="t", connect_timeout=3600)
    with anyio.fail_after(WAIT_S), pytest.raises(ConnectionClosedError) as caught:
        async with client:
            pytest.fail("nothing listens there")
    assert_refused_message(caught.value, refused_url)


async def test_after_a_successful_connection_a_refused_reconnect_is_retried() -> None:
    refused = anyio.Event()

    def delays() -> Iterator[float]:
        while True:
            refused.set()  # asked for a delay: an attempt has just failed
            yield 0.01

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    first = await serve(echo, "127.0.0.1", 0)
    port = first.sockets[0].getsockname()[1]
    url = f"ws://127.0.0.1:{port}/"
    second = None
    try:
        with anyio.fail_after(WAIT_S):
            conns = cast(
                AsyncGenerator[transport.Transport, None],
                transport.connections(url, reconnect_delays=delays),
            )
            conn = await anext(conns)
            await conn.send(b'"one"')
            assert await conn.recv() == b'"one"'
            first.close()  # stop listening and drop the connection: reconnects are refused
            await first.wait_closed()
            reconnected: list[transport.Transport] = []

            async def reconnect() -> None:
                reconnected.append(await anext(conns))

            async with anyio.create_task_group() as tg:
                tg.start_soon(reconnect)
                await refused.wait()  # refused at least once, and still trying
                second = await serve(echo, "127.0.0.1", port)
            (conn,) = reconnected
            await conn.send(b'"two"')
            assert await conn.recv() == b'"two"'
            await conn.close()
            await conns.aclose()
    finally:
        for server in (first, second):
            if server is not None:
                server.close()
                await server.wait_closed()
