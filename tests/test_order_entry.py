"""The fast order path (persistent keep-alive HTTP/1.1 on an asyncio transport, httptools parser)
against a real aiohttp server on 127.0.0.1 that verifies MEXC and Gate.io signatures, plus a raw
TCP server for malformed HTTP.

Faults: ``Connection: close`` answers, an idle connection closed by the server, a connection
dropped mid-request, slow responses (deadline), 4xx/429/5xx venue errors, chunked bodies,
garbage responses. Checked: one connection reused across requests, reconnect on close, typed
errors, OutcomeUnknownError for an order whose fate is unknown, retry only when idempotent,
rate-limit slots, keep-alive pings, nothing secret logged. Every loop is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from cexarb.venues import rest
from cexarb.venues.gateio.signing import GateAuthError, GateSigner, verify_rest
from cexarb.venues.mexc.signing import MexcAuthError, MexcSigner, verify
from cexarb.venues.order_entry import OrderEntryClient
from cexarb.venues.ratelimit import (
    EndpointClass,
    Limit,
    RateLimiter,
    RateLimitExceeded,
    Scope,
    VenueLimits,
)
from cexarb.venues.secrets import ApiCredentials, Secret
from loopback import serve

KEY, SECRET = "mx0aBYs33eIilxBWC5", "45d0b3c26f2644f19bfb98b07741b2f5"
CREDS = ApiCredentials(KEY, SECRET)
ORDER = [("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "LIMIT"), ("quantity", "0.001"), ("price", "60000.5")]


class Venue:
    def __init__(self) -> None:
        self.peers: list[int] = []
        self.hits: dict[str, int] = {}
        self.verified = 0
        self.drop = 0
        self.slow_s = 0.0
        self.transports: list[asyncio.BaseTransport] = []
        self.app = web.Application()
        r = self.app.router
        r.add_route("*", "/api/v3/order", self.mexc_order)
        r.add_post("/api/v4/spot/orders", self.gate_order)
        r.add_get("/api/v3/ping", self.ping)
        r.add_post("/close", self.close_after)
        r.add_route("*", "/drop", self.dropper)
        r.add_route("*", "/slow", self.slow)
        r.add_post("/chunked", self.chunked)
        r.add_route("*", "/status/{code}", self.status)

    def _seen(self, request: web.Request, name: str) -> None:
        self.hits[name] = self.hits.get(name, 0) + 1
        assert request.transport is not None
        self.peers.append(request.transport.get_extra_info("peername")[1])
        if request.transport not in self.transports:
            self.transports.append(request.transport)

    async def mexc_order(self, request: web.Request) -> web.Response:
        self._seen(request, "mexc_order")
        try:
            params = verify(
                Secret(SECRET),
                request.rel_url.raw_query_string,
                (await request.read()).decode(),
                server_time_ms=int(time.time() * 1000),
                api_key_header=request.headers.get("X-MEXC-APIKEY"),
                expected_key=Secret(KEY),
            ).params
        except MexcAuthError as exc:
            return web.json_response({"code": exc.code, "msg": exc.msg}, status=exc.http_status)
        self.verified += 1
        if params.get("quantity") == "999":
            return web.json_response({"code": 10101, "msg": "Insufficient balance"}, status=400)
        status = "CANCELED" if request.method == "DELETE" else "NEW"
        return web.json_response({"symbol": params["symbol"], "orderId": str(self.verified), "status": status})

    async def gate_order(self, request: web.Request) -> web.Response:
        self._seen(request, "gate_order")
        body = await request.read()
        try:
            verify_rest(
                Secret(SECRET),
                method="POST",
                path=request.rel_url.raw_path,
                raw_query=request.rel_url.raw_query_string,
                body=body,
                headers=dict(request.headers),
                expected_key=Secret(KEY),
                server_time_s=time.time(),
            )
        except GateAuthError as exc:
            return web.json_response({"label": exc.label, "message": exc.message}, status=exc.http_status)
        self.verified += 1
        return web.json_response({"id": "1", "text": json.loads(body)["text"], "status": "open"}, status=201)

    async def ping(self, request: web.Request) -> web.Response:
        self._seen(request, "ping")
        return web.json_response({})

    async def close_after(self, request: web.Request) -> web.Response:
        self._seen(request, "close")
        return web.json_response({"ok": True}, headers={"Connection": "close"})

    async def dropper(self, request: web.Request) -> web.Response:
        self._seen(request, "drop")
        if self.drop > 0:
            self.drop -= 1
            assert request.transport is not None
            request.transport.close()
            await asyncio.sleep(0.05)
        return web.json_response({"ok": True})

    async def slow(self, request: web.Request) -> web.Response:
        self._seen(request, "slow")
        await asyncio.sleep(self.slow_s)
        return web.json_response({"ok": True})

    async def chunked(self, request: web.Request) -> web.StreamResponse:
        self._seen(request, "chunked")
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b'{"parts":', b"[1,2,", b"3]}"):
            await response.write(part)
        await response.write_eof()
        return response

    async def status(self, request: web.Request) -> web.Response:
        self._seen(request, "status")
        code = int(request.match_info["code"])
        if code == 429:
            return web.json_response({"code": 429, "msg": "Too many"}, status=429, headers={"Retry-After": "3"})
        return web.json_response({"code": 0, "msg": "boom"}, status=code)


@pytest.fixture
async def venue() -> AsyncIterator[tuple[Venue, str]]:
    v = Venue()
    async with serve(v.app) as url:
        yield v, url


def _mexc(url: str, **kwargs: object) -> OrderEntryClient:
    return OrderEntryClient(
        "mexc-spot",
        url,
        auth=rest.MexcAuth(MexcSigner(CREDS)),
        error_mapper=rest.mexc_error,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_signed_orders_reuse_one_keep_alive_connection(venue: tuple[Venue, str]) -> None:
    v, url = venue
    async with _mexc(url) as oe:
        for i in range(50):
            response = await oe.post("/api/v3/order", ORDER + [("newClientOrderId", f"c{i}")])
            assert response.status == 200 and json.loads(response.body)["orderId"] == str(i + 1)
            assert 0 < response.elapsed_ns < 1_000_000_000
        cancel = await oe.delete("/api/v3/order", [("symbol", "BTCUSDT"), ("origClientOrderId", "c0")], idempotent=True)
        assert json.loads(cancel.body)["status"] == "CANCELED"
        assert cancel.headers["content-type"].startswith("application/json")
        assert oe.connects == 1 and oe.requests == 51
    assert v.verified == 51 and len(set(v.peers)) == 1  # every request on the same TCP connection


async def test_gate_signed_post_with_json_body(venue: tuple[Venue, str]) -> None:
    v, url = venue
    auth = rest.GateAuth(GateSigner(CREDS))
    async with OrderEntryClient("gateio-spot", url, auth=auth, error_mapper=rest.gate_error) as oe:
        body = b'{"currency_pair":"BTC_USDT","side":"buy","amount":"0.001","price":"60000.5","text":"t-c1"}'
        response = await oe.post("/api/v4/spot/orders", body=body)
        assert response.status == 201 and json.loads(response.body)["text"] == "t-c1"
        oe.auth = rest.GateAuth(GateSigner(ApiCredentials(KEY, "wrong")))
        with pytest.raises(rest.AuthenticationError) as info:
            await oe.post("/api/v4/spot/orders", body=body)
        assert info.value.code == "INVALID_SIGNATURE"
    assert v.verified == 1


async def test_connection_close_answer_reconnects(venue: tuple[Venue, str]) -> None:
    v, url = venue
    async with _mexc(url) as oe:
        assert (await oe.post("/close", signed=False)).status == 200
        async with asyncio.timeout(2):  # the background refill opens a warm replacement
            while oe.open_connections < 1 or oe.connects < 2:
                await asyncio.sleep(0.005)
        assert (await oe.post("/api/v3/order", ORDER)).status == 200
        assert oe.connects == 2
    assert len(set(v.peers)) == 2


async def test_idle_connection_closed_by_the_server_is_replaced(venue: tuple[Venue, str]) -> None:
    v, url = venue
    async with _mexc(url) as oe:
        await oe.post("/api/v3/order", ORDER)
        v.transports[0].close()  # the venue drops the idle keep-alive connection
        async with asyncio.timeout(2):
            while oe.connects < 2 or oe.open_connections < 1:
                await asyncio.sleep(0.005)
        response = await oe.post("/api/v3/order", ORDER)
        assert response.status == 200 and oe.connection_losses == 1


async def test_drop_mid_request_is_outcome_unknown_for_orders_and_retried_for_idempotent(
    venue: tuple[Venue, str],
) -> None:
    v, url = venue
    async with _mexc(url) as oe:
        v.drop = 1
        with pytest.raises(rest.OutcomeUnknownError):
            await oe.post("/drop", signed=False)
        v.drop = 1
        response = await oe.delete("/drop", signed=False, idempotent=True)
        assert response.status == 200
        v.drop = 2
        with pytest.raises(rest.NetworkError):  # idempotent, but the retry dropped too
            await oe.delete("/drop", signed=False, idempotent=True)
        assert (await oe.post("/api/v3/order", ORDER)).status == 200
    assert v.hits["drop"] == 5


async def test_deadline_per_request(venue: tuple[Venue, str]) -> None:
    v, url = venue
    v.slow_s = 0.5
    async with _mexc(url) as oe:
        start = time.monotonic()
        with pytest.raises(rest.OutcomeUnknownError):
            await oe.post("/slow", signed=False, timeout_s=0.1)
        with pytest.raises(rest.RequestTimeoutError):
            await oe.request("GET", "/slow", signed=False, timeout_s=0.1)
        assert time.monotonic() - start < 0.5
        v.slow_s = 0.0
        assert (await oe.post("/api/v3/order", ORDER)).status == 200  # on a fresh connection
        assert oe.connects >= 2


async def test_venue_errors_are_typed(venue: tuple[Venue, str]) -> None:
    _, url = venue
    async with _mexc(url) as oe:
        with pytest.raises(rest.InsufficientFundsError) as info:
            await oe.post("/api/v3/order", [("symbol", "BTCUSDT"), ("quantity", "999")])
        assert info.value.code == "10101"
        with pytest.raises(rest.RateLimitedError) as limited:
            await oe.post("/status/429", signed=False)
        assert limited.value.retry_after_s == 3.0
        with pytest.raises(rest.OutcomeUnknownError) as unknown:  # a 5xx on an order: fate unknown
            await oe.post("/status/503", signed=False)
        assert unknown.value.http_status == 503
        with pytest.raises(rest.ServerError) as server_error:  # a GET's 5xx is a plain ServerError
            await oe.request("GET", "/status/503", signed=False)
        assert not isinstance(server_error.value, rest.OutcomeUnknownError)
        assert (await oe.post("/api/v3/order", ORDER)).status == 200
        assert oe.connects == 1  # error answers keep the connection


async def test_429_penalizes_the_limiter(venue: tuple[Venue, str]) -> None:
    _, url = venue
    limiter = RateLimiter(VenueLimits(venue="mexc-spot", classes={EndpointClass.ORDER: ()}))
    async with _mexc(url, limiter=limiter) as oe:
        with pytest.raises(rest.RateLimitedError):
            await oe.post("/status/429", signed=False)
        assert limiter.headroom(EndpointClass.ORDER) == 0.0
        with pytest.raises(RateLimitExceeded):  # held for Retry-After (3 s) > the 0.2 s deadline
            await oe.post("/api/v3/order", ORDER, timeout_s=0.2)


async def test_client_side_limit_refuses_before_sending(venue: tuple[Venue, str]) -> None:
    v, url = venue
    limits = VenueLimits(venue="t", classes={EndpointClass.ORDER: (Limit(limit=2, period_s=10, scope=Scope.SYMBOL),)})
    async with _mexc(url, limiter=RateLimiter(limits)) as oe:
        await oe.post("/api/v3/order", ORDER, symbol="BTCUSDT")
        await oe.post("/api/v3/order", ORDER, symbol="BTCUSDT")
        with pytest.raises(RateLimitExceeded):
            await oe.post("/api/v3/order", ORDER, symbol="BTCUSDT", timeout_s=0.1)
        await oe.post("/api/v3/order", ORDER, symbol="ETHUSDT")
    assert v.hits["mexc_order"] == 3


async def test_chunked_response_is_reassembled(venue: tuple[Venue, str]) -> None:
    _, url = venue
    async with _mexc(url) as oe:
        response = await oe.post("/chunked", signed=False)
        assert json.loads(response.body) == {"parts": [1, 2, 3]}
        assert (await oe.post("/chunked", signed=False)).body == response.body
        assert oe.connects == 1


async def test_pool_serves_concurrent_requests(venue: tuple[Venue, str]) -> None:
    v, url = venue
    async with _mexc(url, pool_size=2) as oe:
        async with asyncio.timeout(5):
            responses = await asyncio.gather(*(oe.post("/api/v3/order", ORDER) for _ in range(20)))
        assert all(r.status == 200 for r in responses)
        assert oe.connects == 2
    assert len(set(v.peers)) == 2 and v.verified == 20


async def test_keepalive_pings_idle_connections(venue: tuple[Venue, str]) -> None:
    v, url = venue
    async with _mexc(url, keepalive_path="/api/v3/ping", keepalive_interval_s=0.05) as oe:
        async with asyncio.timeout(2):
            while v.hits.get("ping", 0) < 2:
                await asyncio.sleep(0.01)
        assert oe.connects == 1


async def test_malformed_response_is_an_error_and_the_connection_is_replaced() -> None:
    answers = [b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n{}", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"]
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            async with asyncio.timeout(5):
                for _ in range(10):
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    await reader.readexactly(length)
                    writer.write(answers[min(connections - 1, 1)])
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with OrderEntryClient("t", f"http://127.0.0.1:{port}") as oe:
            with pytest.raises(rest.BadResponseError):
                await oe.post("/x", signed=False)
            response = await oe.post("/x", signed=False)
            assert response.body == b"{}" and oe.connects == 2
    finally:
        server.close()
        await server.wait_closed()


async def test_refused_connect_is_a_network_error() -> None:
    with contextlib.closing(__import__("socket").socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    oe = OrderEntryClient("t", f"http://127.0.0.1:{port}")
    with pytest.raises(rest.NetworkError, match="cannot connect"):
        await oe.connect()
    with pytest.raises(ValueError):
        OrderEntryClient("t", "ftp://x")


async def test_nothing_secret_is_logged(venue: tuple[Venue, str], caplog: pytest.LogCaptureFixture) -> None:
    v, url = venue
    caplog.set_level(logging.DEBUG)
    async with _mexc(url) as oe:
        await oe.post("/api/v3/order", ORDER)
        with pytest.raises(rest.InsufficientFundsError):
            await oe.post("/api/v3/order", [("symbol", "BTCUSDT"), ("quantity", "999")])
        v.transports[0].close()
        async with asyncio.timeout(2):
            while oe.connects < 2:
                await asyncio.sleep(0.005)
        request_bytes = oe.build("POST", "/api/v3/order", ORDER)
        assert KEY.encode() in request_bytes and b"signature=" in request_bytes  # it is signed...
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("cexarb"))
    assert "order connection closed" in text
    assert KEY not in text and SECRET not in text and "signature" not in text  # ...and never logged
