"""WebSocket client against a real aiohttp WebSocket server on 127.0.0.1 with injected faults:
server close, refused handshakes, stalls, missing pongs, a slow consumer, malformed frames, and
the venues' heartbeats (MEXC ``PING``/``ping`` -> ``PONG``, Gate ``spot.ping`` -> ``spot.pong``,
protocol pings, a bare ``ping`` text frame from the server).

Every wait is bounded by ``asyncio.timeout``; every loop by a count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web
from cexarb.venues.ws import (
    Backoff,
    Heartbeat,
    WsClient,
    WsConnected,
    WsDisconnected,
    WsEvent,
    WsFrame,
    WsNotConnectedError,
    WsOverflow,
    gate_heartbeat,
    mexc_heartbeat,
)
from loopback import serve

FAST = Backoff(initial_s=0.02, max_s=0.1, reset_after_s=5.0)


class WsServer:
    """A venue-like WebSocket endpoint at ``/ws``.

    On a subscribe request (any JSON with ``method`` SUBSCRIPTION or ``event`` subscribe) it acks
    and pushes ``frames_per_sub`` data frames. Faults per connection number (1-based):
    ``close_after[n]`` closes after that many data frames, ``stall[n]`` stops sending and answering
    after the pushes, ``refuse_first`` handshakes are refused with 503. It answers MEXC
    ``PING``/``ping`` with ``PONG`` and Gate ``*.ping`` with ``*.pong`` unless ``ignore_pings``.
    """

    def __init__(self) -> None:
        self.connections = 0
        self.handshakes = 0
        self.refuse_first = 0
        self.frames_per_sub = 3
        self.binary = False
        self.close_after: dict[int, int] = {}
        self.stall: set[int] = set()
        self.ignore_pings = False
        self.send_text_ping = False
        self.extra: list[str | bytes] = []  # frames pushed right after the ack
        self.received: dict[int, list[str]] = {}
        self.pings: list[str] = []
        self.pong_from_client = asyncio.Event()
        self.protocol_pong = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_get("/ws", self.handler)
        self.app.router.add_get("/ws-protocol-ping", self.protocol_ping_handler)

    async def handler(self, request: web.Request) -> web.StreamResponse:
        self.handshakes += 1
        if self.handshakes <= self.refuse_first:
            return web.Response(status=503, text="try later")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        n = self.connections
        self.received[n] = []
        sent = 0
        async with asyncio.timeout(10):
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                text = msg.data
                if text == "pong":
                    self.pong_from_client.set()
                    continue
                request_obj = json.loads(text)
                method = str(request_obj.get("method", ""))
                channel = str(request_obj.get("channel", ""))
                if method.upper() == "PING" or channel.endswith(".ping"):
                    self.pings.append(text)
                    if not self.ignore_pings and n not in self.stall:
                        if method:
                            await ws.send_str('{"id":0,"code":0,"msg":"PONG"}')
                        else:
                            market = channel.split(".")[0]
                            await ws.send_str(json.dumps({"time": 1, "channel": f"{market}.pong", "result": None}))
                    continue
                self.received[n].append(text)
                await ws.send_str('{"id":0,"code":0,"msg":"ack"}')
                for extra in self.extra:
                    await (ws.send_bytes(extra) if isinstance(extra, bytes) else ws.send_str(extra))
                if self.send_text_ping:
                    await ws.send_str("ping")
                for i in range(self.frames_per_sub):
                    if self.close_after.get(n) == sent:
                        await ws.close()
                        return ws
                    payload = json.dumps({"conn": n, "seq": sent, "i": i})
                    await (ws.send_bytes(payload.encode()) if self.binary else ws.send_str(payload))
                    sent += 1
                if self.close_after.get(n) == sent:
                    await ws.close()
                    return ws
        return ws

    async def protocol_ping_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        await ws.ping(b"are-you-there")
        async with asyncio.timeout(5):
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.PONG and msg.data == b"are-you-there":
                    self.protocol_pong.set()
                    await ws.close()
        return ws


@pytest.fixture
async def server() -> AsyncIterator[tuple[WsServer, str]]:
    s = WsServer()
    async with serve(s.app) as url:
        yield s, url.replace("http://", "ws://")


def _sub(text: str) -> Callable[[], str]:
    return lambda: text


async def _collect(client: WsClient, until: Callable[[list[WsEvent]], bool], limit: int = 200) -> list[WsEvent]:
    events: list[WsEvent] = []
    async with asyncio.timeout(5):
        for _ in range(limit):
            events.append(await client.recv())
            if until(events):
                return events
    raise AssertionError(f"condition not met after {limit} events: {events}")


def _data(events: list[WsEvent]) -> list[dict[str, int]]:
    return [json.loads(e.data) for e in events if isinstance(e, WsFrame) and "conn" in str(e.data)]


async def test_receives_frames_and_resubscribes_after_server_close(server: tuple[WsServer, str]) -> None:
    s, url = server
    s.close_after = {1: 2}  # the first connection dies after 2 data frames
    async with aiohttp.ClientSession() as session, WsClient("t", f"{url}/ws", session, backoff=FAST, seed=1) as ws:
        await ws.subscribe("book:A", _sub('{"method":"SUBSCRIPTION","params":["A"]}'))
        await ws.subscribe("book:B", _sub('{"method":"SUBSCRIPTION","params":["B"]}'))
        events = await _collect(ws, lambda ev: sum(isinstance(e, WsConnected) for e in ev) == 2 and len(_data(ev)) >= 8)
    kinds = [type(e).__name__ for e in events if not isinstance(e, WsFrame)]
    assert kinds == ["WsConnected", "WsDisconnected", "WsConnected"]
    first, second = [e for e in events if isinstance(e, WsConnected)]
    assert (first.reconnect, second.reconnect) == (False, True)
    assert s.received[1][0] == '{"method":"SUBSCRIPTION","params":["A"]}'
    assert s.received[2] == ['{"method":"SUBSCRIPTION","params":["A"]}', '{"method":"SUBSCRIPTION","params":["B"]}']
    data = _data(events)
    assert [d["conn"] for d in data[:2]] == [1, 1] and all(d["conn"] == 2 for d in data[2:])
    assert ws.reconnects == 1 and "closed by peer" in ws.last_disconnect_reason


async def test_binary_frames_are_delivered_as_bytes(server: tuple[WsServer, str]) -> None:
    s, url = server
    s.binary = True
    async with aiohttp.ClientSession() as session, WsClient("t", f"{url}/ws", session) as ws:
        await ws.subscribe("x", _sub('{"method":"SUBSCRIPTION","params":["X"]}'))
        events = await _collect(
            ws, lambda ev: sum(isinstance(e, WsFrame) and isinstance(e.data, bytes) for e in ev) == 3
        )
    frames = [e for e in events if isinstance(e, WsFrame) and isinstance(e.data, bytes)]
    assert [json.loads(f.data)["seq"] for f in frames] == [0, 1, 2] and all(f.recv_ns > 0 for f in frames)


async def test_refused_handshakes_back_off_then_connect(server: tuple[WsServer, str]) -> None:
    s, url = server
    s.refuse_first = 3
    async with aiohttp.ClientSession() as session, WsClient("t", f"{url}/ws", session, backoff=FAST, seed=2) as ws:
        async with asyncio.timeout(5):
            await ws.connected.wait()
    assert s.handshakes == 4 and ws.connects == 1 and ws.reconnects == 0
    rng = random.Random(0)
    delays = [FAST.delay(n, rng) for n in range(10)]
    assert all(0 <= d <= min(FAST.max_s, FAST.initial_s * 2**n) for n, d in enumerate(delays))
    assert len(set(delays)) == len(delays)  # jittered


async def test_gives_up_after_max_reconnects() -> None:
    with contextlib.closing(__import__("socket").socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        ws = WsClient("t", f"ws://127.0.0.1:{port}/ws", session, backoff=FAST, max_reconnects=2)
        async with asyncio.timeout(5):
            await ws.run()  # returns after 3 failed connects
        assert ws.connects == 0 and "connect failed" in ws.last_disconnect_reason


@pytest.mark.parametrize(
    ("heartbeat", "expected_ping"),
    [
        (mexc_heartbeat(interval_s=0.05), '{"method":"PING"}'),
        (mexc_heartbeat(interval_s=0.05, lowercase=True), '{"method":"ping"}'),
        (gate_heartbeat("spot", interval_s=0.05), '"channel":"spot.ping"'),
        (gate_heartbeat("futures", interval_s=0.05), '"channel":"futures.ping"'),
    ],
    ids=["mexc", "mexc-lowercase", "gate-spot", "gate-futures"],
)
async def test_app_level_pings_get_pongs_that_are_not_delivered(
    server: tuple[WsServer, str], heartbeat: Heartbeat, expected_ping: str
) -> None:
    s, url = server
    s.frames_per_sub = 0
    async with aiohttp.ClientSession() as session, WsClient("t", f"{url}/ws", session, heartbeat=heartbeat) as ws:
        await ws.subscribe("x", _sub('{"method":"SUBSCRIPTION","params":["X"]}'))
        async with asyncio.timeout(5):
            for _ in range(100):
                if ws.pongs >= 3:
                    break
                await asyncio.sleep(0.02)
        assert ws.pongs >= 3 and ws.reconnects == 0
        events = []
        while ws.pending():
            events.append(await ws.recv(timeout_s=1))
    assert all(expected_ping in p for p in s.pings)
    assert not any(isinstance(e, WsFrame) and ("PONG" in str(e.data) or ".pong" in str(e.data)) for e in events)


async def test_answers_a_bare_ping_text_frame_from_the_server(server: tuple[WsServer, str]) -> None:
    s, url = server
    s.send_text_ping = True
    async with aiohttp.ClientSession() as session, WsClient("t", f"{url}/ws", session) as ws:
        await ws.subscribe("x", _sub('{"event":"subscribe"}'))
        async with asyncio.timeout(5):
            await s.pong_from_client.wait()
        events = await _collect(ws, lambda ev: len(_data(ev)) == 3)
    assert not any(isinstance(e, WsFrame) and e.data == "ping" for e in events)


async def test_protocol_level_pings_are_answered(server: tuple[WsServer, str]) -> None:
    s, url = server
    async with aiohttp.ClientSession() as session, WsClient("t", f"{url}/ws-protocol-ping", session):
        async with asyncio.timeout(5):
            await s.protocol_pong.wait()


async def test_a_stalled_stream_is_detected_and_reconnected(server: tuple[WsServer, str]) -> None:
    s, url = server
    s.stall = {1}  # connection 1 sends its frames then goes silent (no pongs either)
    hb = mexc_heartbeat(interval_s=0.1, pong_timeout_s=5.0)
    async with (
        aiohttp.ClientSession() as session,
        WsClient("t", f"{url}/ws", session, heartbeat=hb, stall_timeout_s=0.3, backoff=FAST) as ws,
    ):
        await ws.subscribe("x", _sub('{"method":"SUBSCRIPTION","params":["X"]}'))
        events = await _collect(ws, lambda ev: sum(isinstance(e, WsConnected) for e in ev) == 2 and len(_data(ev)) == 6)
    assert ws.stalls == 1
    disconnects = [e for e in events if isinstance(e, WsDisconnected)]
    assert len(disconnects) == 1 and "stalled" in disconnects[0].reason


async def test_missing_pongs_trigger_a_reconnect(server: tuple[WsServer, str]) -> None:
    s, url = server
    s.ignore_pings = True
    s.frames_per_sub = 0
    hb = gate_heartbeat("spot", interval_s=0.05, pong_timeout_s=0.2)
    async with (
        aiohttp.ClientSession() as session,
        WsClient("t", f"{url}/ws", session, heartbeat=hb, backoff=FAST) as ws,
    ):
        await ws.subscribe("x", _sub('{"event":"subscribe"}'))
        events = await _collect(ws, lambda ev: sum(isinstance(e, WsConnected) for e in ev) == 2)
    reasons = [e.reason for e in events if isinstance(e, WsDisconnected)]
    assert reasons and "no pong" in reasons[0]


async def test_no_data_frames_for_data_timeout_reconnects(server: tuple[WsServer, str]) -> None:
    s, url = server
    s.frames_per_sub = 0  # pongs keep coming, data never does
    hb = mexc_heartbeat(interval_s=0.05)
    async with (
        aiohttp.ClientSession() as session,
        WsClient("t", f"{url}/ws", session, heartbeat=hb, data_timeout_s=0.4, backoff=FAST) as ws,
    ):
        await ws.subscribe("x", _sub('{"method":"SUBSCRIPTION","params":["X"]}'))
        # the subscribe ack counts as data; after it, nothing for 0.4 s
        events = await _collect(ws, lambda ev: any(isinstance(e, WsDisconnected) for e in ev))
    assert "no data frame" in next(e.reason for e in events if isinstance(e, WsDisconnected))


async def test_bounded_queue_drops_oldest_and_reports_overflow(server: tuple[WsServer, str]) -> None:
    s, url = server
    s.frames_per_sub = 50
    async with aiohttp.ClientSession() as session, WsClient("t", f"{url}/ws", session, queue_size=5) as ws:
        await ws.subscribe("x", _sub('{"method":"SUBSCRIPTION","params":["X"]}'))
        async with asyncio.timeout(5):
            for _ in range(200):  # let the server push everything without reading
                if ws.frames >= 51:
                    break
                await asyncio.sleep(0.01)
        assert ws.pending() == 5
        first = await ws.recv(timeout_s=1)
        rest = [await ws.recv(timeout_s=1) for _ in range(5)]
    assert isinstance(first, WsOverflow) and first.dropped == ws.dropped == 47  # 52 events, 5 kept
    assert [json.loads(e.data)["seq"] for e in rest if isinstance(e, WsFrame)] == [45, 46, 47, 48, 49]


async def test_handler_errors_on_malformed_frames_are_logged_and_reading_goes_on(
    server: tuple[WsServer, str], caplog: pytest.LogCaptureFixture
) -> None:
    s, url = server
    s.extra = ["{not json", b"\x00\xff\xfe garbage"]
    good: list[dict[str, int]] = []
    done = asyncio.Event()

    def handler(event: WsEvent) -> None:
        if isinstance(event, WsFrame):
            obj = json.loads(event.data)  # raises on the malformed ones
            if "conn" in obj:
                good.append(obj)
                if len(good) == 3:
                    done.set()

    caplog.set_level(logging.ERROR, logger="cexarb.venues.ws")
    async with aiohttp.ClientSession() as session, WsClient("t", f"{url}/ws", session, handler=handler) as ws:
        await ws.subscribe("x", _sub('{"method":"SUBSCRIPTION","params":["X"]}'))
        async with asyncio.timeout(5):
            await done.wait()
        assert ws.handler_errors == 2 and ws.reconnects == 0
    assert [g["seq"] for g in good] == [0, 1, 2]
    assert sum("handler failed" in r.getMessage() for r in caplog.records) == 2


async def test_send_needs_a_connection_and_unsubscribe_forgets(server: tuple[WsServer, str]) -> None:
    s, url = server
    async with aiohttp.ClientSession() as session:
        ws = WsClient("t", f"{url}/ws", session)
        with pytest.raises(WsNotConnectedError):
            await ws.send("x")
        async with ws:
            async with asyncio.timeout(5):
                await ws.connected.wait()
            await ws.subscribe("a", _sub('{"method":"SUBSCRIPTION","params":["A"]}'))
            await ws.unsubscribe("a", _sub('{"method":"UNSUBSCRIPTION","params":["A"]}'))
            assert ws.subscriptions == []
            await ws.send('{"method":"SUBSCRIPTION","params":["Z"]}')
            await _collect(ws, lambda ev: len(_data(ev)) == 6)
        assert not ws.connected.is_set()
    assert s.received[1] == [
        '{"method":"SUBSCRIPTION","params":["A"]}',
        '{"method":"UNSUBSCRIPTION","params":["A"]}',
        '{"method":"SUBSCRIPTION","params":["Z"]}',
    ]


async def test_stop_while_reconnecting_ends_promptly() -> None:
    with contextlib.closing(__import__("socket").socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        ws = WsClient("t", f"ws://127.0.0.1:{port}/ws", session, backoff=Backoff(initial_s=10, max_s=10))
        ws.start()
        await asyncio.sleep(0.05)
        async with asyncio.timeout(2):
            await ws.stop()
