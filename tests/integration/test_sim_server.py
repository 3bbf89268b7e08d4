"""The simulator over real websockets on 127.0.0.1, observed by a raw websockets client."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tastyrec.dxlink.messages import Auth, FeedSubscription, Keepalive
from tastyrec.sim import SimConfig, Simulator
from tastyrec.sim.server import MALFORMED_FRAME
from tests.integration.waits import wait_until

TIMEOUT = 5.0


async def no_connections(sim: Simulator) -> None:
    await wait_until(lambda: not sim.connection_count, TIMEOUT)


async def send(ws: ClientConnection, **msg: Any) -> None:
    await ws.send(json.dumps(msg))


async def recv(ws: ClientConnection, limit_s: float = TIMEOUT) -> dict[str, Any]:
    with anyio.fail_after(limit_s):
        raw = await ws.recv()
    assert isinstance(raw, str)  # text frames only
    msg: dict[str, Any] = json.loads(raw)
    return msg


async def recv_until(ws: ClientConnection, type_: str, **match: Any) -> dict[str, Any]:
    with anyio.fail_after(TIMEOUT):
        while True:
            msg = await recv(ws)
            if msg["type"] == type_ and all(msg.get(k) == v for k, v in match.items()):
                return msg


async def handshake(ws: ClientConnection, token: str | None, keepalive: float = 60) -> None:
    await send(
        ws,
        type="SETUP",
        channel=0,
        version="0.1-test/0",
        keepaliveTimeout=keepalive,
        acceptKeepaliveTimeout=keepalive,
    )
    assert (await recv(ws))["type"] == "SETUP"
    state = await recv(ws)
    if token is None:
        assert state["state"] == "AUTHORIZED"
        return
    assert state["state"] == "UNAUTHORIZED"
    await send(ws, type="AUTH", channel=0, token=token)
    assert (await recv(ws))["state"] == "AUTHORIZED"


async def subscribe(
    ws: ClientConnection, channel: int, *entries: dict[str, Any], contract: str = "AUTO"
) -> None:
    await send(
        ws,
        type="CHANNEL_REQUEST",
        channel=channel,
        service="FEED",
        parameters={"contract": contract},
    )
    await recv_until(ws, "CHANNEL_OPENED", channel=channel)
    await send(
        ws,
        type="FEED_SETUP",
        channel=channel,
        acceptAggregationPeriod=0.1,
        acceptDataFormat="COMPACT",
    )
    await recv_until(ws, "FEED_CONFIG", channel=channel)
    await send(ws, type="FEED_SUBSCRIPTION", channel=channel, add=list(entries))


async def test_end_to_end_quotes_and_bookkeeping():
    async with Simulator(port=0, token="sim-token") as sim:
        assert sim.url.startswith("ws://127.0.0.1:") and sim.url.endswith("/realtime")
        assert sim.token == "sim-token"
        async with connect(sim.url) as ws:
            await handshake(ws, sim.token)
            assert sim.connection_count == 1
            await subscribe(ws, 3, {"type": "Quote", "symbol": "SPY"})
            config = await recv_until(ws, "FEED_CONFIG", channel=3)
            assert "Quote" in config["eventFields"]
            msg = await recv_until(ws, "FEED_DATA", channel=3)
            assert msg["data"][0] == "Quote" and msg["data"][1][0] == "SPY"
        await no_connections(sim)
        assert any(isinstance(m, Auth) for m in sim.received)
        assert any(isinstance(m, FeedSubscription) for m in sim.received)


async def test_no_auth_mode():
    async with Simulator(port=0, token=None) as sim, connect(sim.url) as ws:
        assert sim.token is None
        await handshake(ws, None)


async def test_big_candle_snapshot_frames_stay_below_64k():
    async with Simulator(port=0) as sim, connect(sim.url, max_size=None) as ws:
        await handshake(ws, sim.token)
        candles = {"type": "Candle", "symbol": "SPY{=1m}", "fromTime": 1_000_000_000}
        await subscribe(ws, 1, candles, contract="HISTORY")  # history: FIELD_REPORTS #3
        flags = []
        limit = SimConfig().candle_snapshot_limit  # the newest `limit` of ~29 M candles
        with anyio.fail_after(TIMEOUT):
            while len(flags) < limit:
                raw = await ws.recv()
                assert len(raw) < 60_000 + 1 and len(raw.encode()) < 64 * 1024
                msg = json.loads(raw)
                if msg["type"] == "FEED_DATA":
                    flags.extend(msg["data"][1][2::17])
        assert flags[0] == 0x04 and flags[limit - 1] == 0x10 and not any(flags[1 : limit - 1])


async def test_oversized_client_frame_closes_with_1009():
    async with Simulator(port=0, config=SimConfig(max_inbound_bytes=1024)) as sim:
        async with connect(sim.url) as ws:
            await handshake(ws, sim.token)
            await ws.send(json.dumps({"type": "KEEPALIVE", "channel": 0, "pad": "x" * 2000}))
            with anyio.fail_after(TIMEOUT), pytest.raises(ConnectionClosed) as info:
                while True:
                    await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009


async def test_drop_aborts_without_close_handshake():
    async with Simulator(port=0) as sim, connect(sim.url) as ws:
        await handshake(ws, sim.token)
        await sim.drop()
        with anyio.fail_after(TIMEOUT), pytest.raises(ConnectionClosed) as info:
            while True:
                await ws.recv()
        assert info.value.rcvd is None  # 1006: no close frame
        await no_connections(sim)


async def test_stall_stops_everything_then_resumes():
    async with Simulator(port=0) as sim, connect(sim.url) as ws:
        await handshake(ws, sim.token, keepalive=0.4)  # server keepalive every 0.2 s
        await subscribe(ws, 1, {"type": "Quote", "symbol": "SPY"})
        await recv_until(ws, "FEED_DATA")
        sim.stall(True)
        await sim.quiesce()  # nothing is being sent now
        await sim.send_raw("sentinel")  # raw frames bypass the stall: after all the others
        with anyio.fail_after(TIMEOUT):
            while await ws.recv() != "sentinel":
                pass
        with pytest.raises(TimeoutError):
            await recv(ws, limit_s=0.6)  # neither data nor keepalives
        assert sim.connection_count == 1
        sim.stall(False)
        await recv_until(ws, "FEED_DATA")


async def test_malformed_error_and_expiry_injection():
    async with Simulator(port=0, token="old") as sim, connect(sim.url) as ws:
        await handshake(ws, "old")
        await sim.send_malformed()
        with anyio.fail_after(TIMEOUT):
            while (raw := await ws.recv()) != MALFORMED_FRAME:
                pass
        with pytest.raises(json.JSONDecodeError):
            json.loads(raw)
        await sim.send_error("UNKNOWN", "injected")
        err = await recv_until(ws, "ERROR")
        assert err == {"type": "ERROR", "channel": 0, "error": "UNKNOWN", "message": "injected"}
        await sim.expire_token(new_token="new")
        assert sim.token == "new"
        assert (await recv_until(ws, "AUTH_STATE"))["state"] == "UNAUTHORIZED"
        await send(ws, type="AUTH", channel=0, token="old")
        assert (await recv_until(ws, "AUTH_STATE"))["state"] == "UNAUTHORIZED"
        await send(ws, type="AUTH", channel=0, token="new")
        assert (await recv_until(ws, "AUTH_STATE"))["state"] == "AUTHORIZED"


async def test_keepalives_and_timeout_on_client_silence():
    async with Simulator(port=0, config=SimConfig(keepalive_timeout=0.6)) as sim:
        async with connect(sim.url) as ws:
            await handshake(ws, sim.token, keepalive=0.2)
            assert (await recv(ws, limit_s=1))["type"] == "KEEPALIVE"
            err = await recv_until(ws, "ERROR")
            assert err["error"] == "TIMEOUT"
            with anyio.fail_after(TIMEOUT), pytest.raises(ConnectionClosed) as info:
                while True:
                    await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1000


async def test_client_keepalives_keep_the_connection_open():
    now = [time.time()]  # the simulator's clock, moved by the test: no real waiting
    config = SimConfig(keepalive_timeout=0.5)
    async with Simulator(port=0, config=config, clock=lambda: now[0]) as sim:
        async with connect(sim.url) as ws:
            await handshake(ws, sim.token)
            for i in range(8):  # 0.8 s > keepalive_timeout
                await send(ws, type="KEEPALIVE", channel=0)
                await wait_until(  # the server has read it
                    lambda: sum(isinstance(m, Keepalive) for m in sim.received) > i,  # noqa: B023
                    TIMEOUT,
                )
                now[0] += 0.1
            assert sim.connection_count == 1
            now[0] += 0.6  # then silence for longer than the timeout: the server hangs up
            err = await recv_until(ws, "ERROR")
            assert err["error"] == "TIMEOUT"


async def test_chaos_schedule():
    config = SimConfig(chaos=(("error", 0.2), ("drop", 0.7)))
    async with Simulator(port=0, config=config) as sim, connect(sim.url) as ws:
        await handshake(ws, sim.token)
        err = await recv_until(ws, "ERROR")
        assert err["error"] == "UNKNOWN"
        with anyio.fail_after(TIMEOUT), pytest.raises(ConnectionClosed) as info:
            while True:
                await ws.recv()
        assert info.value.rcvd is None


def test_bad_chaos_kind_is_rejected():
    with pytest.raises(ValueError, match="chaos"):
        Simulator(config=SimConfig(chaos=(("explode", 1.0),)))
