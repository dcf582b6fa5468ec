"""Issue 4, P5: :class:`~cexarb.venues.ws.WsClient` direct delivery -- with a handler, a data frame
reaches it inside the connection's ``data_received`` (no aiohttp queue, no reader-task wake-up),
against a real aiohttp WebSocket server on 127.0.0.1.

Checked: every data frame is delivered once and in order, mixed with frames that take the queue
(a bare ``ping`` the reader answers, frames that arrive behind it); app-level pongs are consumed;
a handler error is logged and reading goes on; a reconnect installs direct delivery again on the
new connection; ``direct=False`` delivers the same frames through ``receive()``.

Every wait is bounded by ``asyncio.timeout``; every loop by a count.
"""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest
from aiohttp import web
from cexarb.venues.ws import (
    Backoff,
    WsClient,
    WsConnected,
    WsDisconnected,
    WsEvent,
    WsFrame,
    gate_heartbeat,
)
from loopback import serve

FAST = Backoff(initial_s=0.02, max_s=0.1, reset_after_s=5.0)


class Pusher:
    """``/ws``: after a ``go`` text frame, sends ``script`` (str: text frame, bytes: binary), each
    as its own send, in one go; ``close`` after the script ends the connection (first one only)."""

    def __init__(self, script: list[str | bytes], *, close_first: bool = False) -> None:
        self.script = script
        self.close_first = close_first
        self.connections = 0
        self.pongs = 0
        self.app = web.Application()
        self.app.router.add_get("/ws", self.handler)

    async def handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        n = self.connections
        async with asyncio.timeout(10):
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                if msg.data == "pong":
                    self.pongs += 1
                elif msg.data == "go":
                    for item in self.script:
                        await (
                            ws.send_bytes(item)
                            if isinstance(item, bytes)
                            else ws.send_str(item)
                        )
                    if self.close_first and n == 1:
                        await ws.close()
                        return ws
        return ws


def _frame(i: int) -> str:
    return json.dumps({"seq": i})


async def _run(
    script: list[str | bytes],
    *,
    direct: bool = True,
    close_first: bool = False,
    fail_on: int | None = None,
) -> tuple[list[WsEvent], WsClient, Pusher, list[bool]]:
    """Connect, send ``go`` on each connection, collect the handler's events until the script's
    data frames arrived (twice with ``close_first``). Returns (events, client, server, direct_active
    seen by the handler at each WsConnected)."""
    pusher = Pusher(script, close_first=close_first)
    events: list[WsEvent] = []
    active: list[bool] = []
    wanted = sum(
        1 for s in script if s not in ("ping",) and '"spot.pong"' not in str(s)
    ) * (2 if close_first else 1)
    done = asyncio.Event()
    client: WsClient | None = None

    def handler(event: WsEvent) -> None:
        events.append(event)
        assert client is not None
        if isinstance(event, WsConnected):
            active.append(client.direct_active)
            asyncio.get_running_loop().create_task(client.send("go"))
        if sum(1 for e in events if isinstance(e, WsFrame)) >= wanted:
            done.set()
        if (
            fail_on is not None
            and isinstance(event, WsFrame)
            and json.loads(event.data).get("seq") == fail_on
        ):
            raise ValueError("handler bug")

    async with serve(pusher.app, "ws", "/ws") as url, aiohttp.ClientSession() as session:
        client = WsClient(
            "t",
            url,
            session,
            handler=handler,
            heartbeat=gate_heartbeat("spot"),
            backoff=FAST,
            direct=direct,
        )
        async with client:
            async with asyncio.timeout(5):
                await done.wait()
    return events, client, pusher, active


def _seqs(events: list[WsEvent]) -> list[int]:
    out = []
    for e in events:
        if isinstance(e, WsFrame):
            data = e.data.decode() if isinstance(e.data, bytes) else e.data
            out.append(json.loads(data)["seq"])
    return out


async def test_data_frames_reach_the_handler_in_data_received_in_order() -> None:
    script: list[str | bytes] = (
        [_frame(i) for i in range(5)]
        + [_frame(5).encode()]
        + [_frame(i) for i in range(6, 10)]
    )
    events, client, _, active = await _run(script)
    assert isinstance(events[0], WsConnected) and active == [True]
    assert _seqs(events) == list(range(10))
    assert (
        isinstance(events[6], WsFrame) and events[6].data == _frame(5).encode()
    )  # binary stays bytes
    assert client.direct_frames == 10 and client.frames == 10


async def test_frames_behind_a_queued_ping_keep_their_order_and_the_ping_is_answered() -> (
    None
):
    pong = json.dumps({"time": 1, "channel": "spot.pong", "result": None})
    script: list[str | bytes] = [
        _frame(0),
        _frame(1),
        "ping",
        _frame(2),
        pong,
        _frame(3),
        _frame(4),
    ]
    events, client, pusher, _ = await _run(script)
    assert _seqs(events) == [0, 1, 2, 3, 4]  # the ping and the pong are not delivered
    assert client.frames == 5 and 2 <= client.direct_frames <= 5
    async with asyncio.timeout(2):
        while (
            pusher.pongs < 1
        ):  # the reader answered the bare ping (a send, so not in data_received)
            await asyncio.sleep(0.01)


async def test_a_handler_error_is_logged_and_reading_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="cexarb.venues.ws"):
        events, client, _, _ = await _run([_frame(i) for i in range(4)], fail_on=1)
    assert _seqs(events) == [0, 1, 2, 3]
    assert client.handler_errors == 1 and client.direct_frames == 4
    assert "handler failed" in caplog.text


async def test_a_reconnect_installs_direct_delivery_again() -> None:
    events, client, pusher, active = await _run(
        [_frame(i) for i in range(3)], close_first=True
    )
    kinds = [type(e) for e in events]
    assert kinds[0] is WsConnected and WsDisconnected in kinds
    second = kinds.index(WsConnected, 1)
    reconnect = events[second]
    assert isinstance(reconnect, WsConnected) and reconnect.reconnect
    assert _seqs(events) == [0, 1, 2, 0, 1, 2]
    assert active == [True, True] and pusher.connections == 2
    assert client.direct_frames == 6


async def test_direct_false_delivers_the_same_frames_through_receive() -> None:
    script: list[str | bytes] = [_frame(0), "ping", _frame(1), _frame(2).encode()]
    events, client, _, active = await _run(script, direct=False)
    assert active == [False]
    assert _seqs(events) == [0, 1, 2]
    assert client.direct_frames == 0 and client.frames == 3
