"""REST client base against a real aiohttp server on 127.0.0.1 that checks MEXC and Gate.io
signatures exactly as the venues do and injects faults: 5xx, 429 with Retry-After, slow
responses, a connection dropped mid-request, a refused connection, venue error bodies.

Checked: signed requests verify on the server (the signing hook sends the exact bytes signed);
idempotent calls are retried with backoff and succeed; non-idempotent ones are not retried once
sent (OutcomeUnknownError) but are retried when the connection could not be opened; venue errors
become the typed exceptions; the client-side limiter holds requests; nothing secret is logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from cexarb.venues import rest
from cexarb.venues.gateio.signing import GateAuthError, GateSigner, verify_rest
from cexarb.venues.mexc.signing import MexcAuthError, MexcSigner, verify
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


class Venue:
    """A loopback venue: MEXC and Gate signed endpoints plus fault switches; counts hits."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.fail_5xx = 0  # next N requests to /flaky answer 503
        self.fail_429 = 0  # next N requests to /limited answer 429
        self.drop = 0  # next N requests to /drop lose their connection
        self.slow_s = 0.0
        self.app = web.Application()
        r = self.app.router
        r.add_get("/api/v3/time", self.time)
        r.add_post("/api/v3/order", self.mexc_order)
        r.add_post("/api/v4/spot/orders", self.gate_order)
        r.add_get("/api/v4/spot/orders/{id}", self.gate_query)
        r.add_route("*", "/flaky", self.flaky)
        r.add_route("*", "/limited", self.limited)
        r.add_route("*", "/drop", self.dropper)
        r.add_route("*", "/slow", self.slow)
        r.add_get("/html502", self.html502)

    def hit(self, name: str) -> None:
        self.hits[name] = self.hits.get(name, 0) + 1

    async def time(self, request: web.Request) -> web.Response:
        self.hit("time")
        return web.json_response({"serverTime": int(time.time() * 1000)})

    async def mexc_order(self, request: web.Request) -> web.Response:
        self.hit("mexc_order")
        try:
            verified = verify(
                Secret(SECRET),
                request.rel_url.raw_query_string,
                (await request.read()).decode(),
                server_time_ms=int(time.time() * 1000),
                api_key_header=request.headers.get("X-MEXC-APIKEY"),
                expected_key=Secret(KEY),
            )
        except MexcAuthError as exc:
            return web.json_response({"code": exc.code, "msg": exc.msg}, status=exc.http_status)
        if verified.params.get("quantity") == "999":
            return web.json_response({"code": 10101, "msg": "Insufficient balance"}, status=400)
        return web.json_response({"symbol": verified.params["symbol"], "orderId": "C02__1", "orderListId": -1})

    async def _gate_verify(self, request: web.Request) -> web.Response | None:
        try:
            verify_rest(
                Secret(SECRET),
                method=request.method,
                path=request.rel_url.raw_path,
                raw_query=request.rel_url.raw_query_string,
                body=await request.read(),
                headers=dict(request.headers),
                expected_key=Secret(KEY),
                server_time_s=time.time(),
            )
        except GateAuthError as exc:
            return web.json_response({"label": exc.label, "message": exc.message}, status=exc.http_status)
        return None

    async def gate_order(self, request: web.Request) -> web.Response:
        self.hit("gate_order")
        error = await self._gate_verify(request)
        if error is not None:
            return error
        body = json.loads(await request.read())
        if body.get("amount") == "999":
            return web.json_response({"label": "BALANCE_NOT_ENOUGH", "message": "balance not enough"}, status=400)
        return web.json_response({"id": "12345", "text": body.get("text", ""), "status": "open"}, status=201)

    async def gate_query(self, request: web.Request) -> web.Response:
        self.hit("gate_query")
        error = await self._gate_verify(request)
        if error is not None:
            return error
        return web.json_response({"label": "ORDER_NOT_FOUND", "message": "Order not found"}, status=404)

    async def flaky(self, request: web.Request) -> web.Response:
        self.hit("flaky")
        if self.fail_5xx > 0:
            self.fail_5xx -= 1
            return web.json_response({"label": "SERVER_ERROR", "message": "internal"}, status=503)
        return web.json_response({"ok": True})

    async def limited(self, request: web.Request) -> web.Response:
        self.hit("limited")
        if self.fail_429 > 0:
            self.fail_429 -= 1
            return web.json_response(
                {"label": "TOO_MANY_REQUESTS", "message": "slow down"}, status=429, headers={"Retry-After": "0.1"}
            )
        return web.json_response({"ok": True})

    async def dropper(self, request: web.Request) -> web.Response:
        self.hit("drop")
        if self.drop > 0:
            self.drop -= 1
            assert request.transport is not None
            request.transport.close()  # the connection dies with no response
            await asyncio.sleep(0.05)
        return web.json_response({"ok": True})

    async def slow(self, request: web.Request) -> web.Response:
        self.hit("slow")
        await asyncio.sleep(self.slow_s)
        return web.json_response({"ok": True})

    async def html502(self, request: web.Request) -> web.Response:
        self.hit("html502")
        return web.Response(text="<html>Bad Gateway</html>", status=502, content_type="text/html")


@pytest.fixture
async def venue() -> AsyncIterator[tuple[Venue, str]]:
    v = Venue()
    async with serve(v.app) as url:
        yield v, url


def _client(url: str, **kwargs: object) -> rest.RestClient:
    defaults: dict[str, object] = {
        "timeout": aiohttp.ClientTimeout(total=3.0, sock_connect=1.0, sock_read=2.0),
        "retry": rest.RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05),
        "seed": 1,
    }
    defaults.update(kwargs)
    return rest.RestClient("test", url, **defaults)  # type: ignore[arg-type]


async def test_mexc_signed_order_verifies_on_the_server(venue: tuple[Venue, str]) -> None:
    v, url = venue
    params = [("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "LIMIT"), ("quantity", "0.001"), ("price", "60000.5")]
    async with _client(url, auth=rest.MexcAuth(MexcSigner(CREDS)), error_mapper=rest.mexc_error) as client:
        response = await client.request(
            "POST", "/api/v3/order", params, signed=True, endpoint_class=EndpointClass.ORDER
        )
        assert response.status == 200 and json.loads(response.body)["symbol"] == "BTCUSDT"
        with pytest.raises(rest.InsufficientFundsError) as info:
            await client.request("POST", "/api/v3/order", [("symbol", "BTCUSDT"), ("quantity", "999")], signed=True)
        assert info.value.code == "10101" and info.value.http_status == 400
        # a wrong secret is refused with MEXC's code, mapped to AuthenticationError
        bad = rest.MexcAuth(MexcSigner(ApiCredentials(KEY, "wrong-secret")))
        client.auth = bad
        with pytest.raises(rest.AuthenticationError) as auth_info:
            await client.request("POST", "/api/v3/order", [("symbol", "BTCUSDT")], signed=True)
        assert auth_info.value.code == "700002"
        # a timestamp outside recvWindow -> ClockSkewError
        client.auth = rest.MexcAuth(MexcSigner(CREDS, clock_ms=lambda: int(time.time() * 1000) - 60_000))
        with pytest.raises(rest.ClockSkewError):
            await client.request("POST", "/api/v3/order", [("symbol", "BTCUSDT")], signed=True)
    assert v.hits["mexc_order"] == 4  # nothing retried: POST, and 4xx are final


async def test_gate_signed_requests_verify_and_map_labels(venue: tuple[Venue, str]) -> None:
    v, url = venue
    auth = rest.GateAuth(GateSigner(CREDS), extra_headers={"X-Gate-Size-Decimal": "1"})
    async with _client(url, auth=auth, error_mapper=rest.gate_error) as client:
        body = b'{"currency_pair":"BTC_USDT","side":"buy","amount":"0.001","price":"60000.5","text":"t-abc"}'
        response = await client.request("POST", "/api/v4/spot/orders", body=body, signed=True)
        assert response.status == 201 and json.loads(response.body)["text"] == "t-abc"
        with pytest.raises(rest.InsufficientFundsError) as info:
            await client.request("POST", "/api/v4/spot/orders", body=b'{"amount":"999"}', signed=True)
        assert info.value.code == "BALANCE_NOT_ENOUGH"
        # query string with characters that need encoding: Gate signs the unencoded form
        with pytest.raises(rest.OrderNotFoundError):
            await client.get("/api/v4/spot/orders/t-abc", [("currency_pair", "BTC_USDT"), ("x", "a b,c")], signed=True)
        client.auth = rest.GateAuth(GateSigner(ApiCredentials(KEY, "nope")))
        with pytest.raises(rest.AuthenticationError) as auth_info:
            await client.get("/api/v4/spot/orders/1", [("currency_pair", "BTC_USDT")], signed=True)
        assert auth_info.value.code == "INVALID_SIGNATURE"
        client.auth = rest.GateAuth(GateSigner(CREDS, clock_s=lambda: time.time() - 120))
        with pytest.raises(rest.ClockSkewError):
            await client.get("/api/v4/spot/orders/1", signed=True)
    assert v.hits["gate_query"] == 3  # 404/401 are not retried


async def test_idempotent_get_is_retried_through_5xx(venue: tuple[Venue, str]) -> None:
    v, url = venue
    v.fail_5xx = 2
    async with _client(url) as client:
        response = await client.get("/flaky")
        assert response.attempts == 3 and client.retries == 2
        v.fail_5xx = 5
        with pytest.raises(rest.ServerError):
            await client.get("/flaky")
    assert v.hits["flaky"] == 6  # 3 + 3 (max_attempts)


async def test_non_idempotent_post_is_not_retried_after_a_5xx(venue: tuple[Venue, str]) -> None:
    v, url = venue
    v.fail_5xx = 1
    async with _client(url) as client:
        with pytest.raises(rest.OutcomeUnknownError) as info:
            await client.request("POST", "/flaky", body=b"{}")
        assert info.value.http_status == 503
        # marked idempotent (a cancel by client order id): retried
        v.fail_5xx = 1
        response = await client.request("DELETE", "/flaky", idempotent=True)
        assert response.attempts == 2
    assert v.hits["flaky"] == 3


async def test_429_with_retry_after_waits_then_succeeds(venue: tuple[Venue, str]) -> None:
    v, url = venue
    v.fail_429 = 1
    limiter = RateLimiter(VenueLimits(venue="test", classes={EndpointClass.PUBLIC: ()}))
    async with _client(url, limiter=limiter) as client:
        start = time.monotonic()
        response = await client.get("/limited")
        assert time.monotonic() - start >= 0.09  # waited the Retry-After (held by the limiter)
        assert response.attempts == 2
        v.fail_429 = 1
        with pytest.raises(rest.RateLimitedError) as info:  # POST: reported, not retried
            await client.request("POST", "/limited")
        assert info.value.retry_after_s == pytest.approx(0.1)
    assert v.hits["limited"] == 3


async def test_slow_response_hits_the_deadline(venue: tuple[Venue, str]) -> None:
    v, url = venue
    v.slow_s = 1.0
    async with _client(url) as client:
        start = time.monotonic()
        with pytest.raises(rest.RequestTimeoutError):
            await client.get("/slow", timeout_s=0.2)
        with pytest.raises(rest.OutcomeUnknownError):  # an order that timed out may exist
            await client.request("POST", "/slow", timeout_s=0.2)
        assert time.monotonic() - start < 1.0
        v.slow_s = 0.0
        assert (await client.get("/slow")).status == 200  # the session is still usable


async def test_connection_dropped_mid_request(venue: tuple[Venue, str]) -> None:
    v, url = venue
    async with _client(url) as client:
        v.drop = 1
        response = await client.get("/drop")  # idempotent: retried on a new connection
        assert response.status == 200 and v.hits["drop"] == 2  # (by aiohttp itself, or by us)
        v.drop = 1
        with pytest.raises(rest.OutcomeUnknownError):
            await client.request("POST", "/drop", body=b"{}")
    assert v.hits["drop"] == 3


async def test_refused_connection_is_retried_even_for_post() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with _client(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(rest.NetworkError):
            await client.request("POST", "/api/v3/order", body=b"{}")
        assert client.requests_sent == 3  # nothing was sent, so retrying a POST is safe


async def test_non_json_error_body_and_status_mapping(venue: tuple[Venue, str]) -> None:
    _, url = venue
    async with _client(url, error_mapper=rest.gate_error, retry=rest.RetryPolicy(max_attempts=1)) as client:
        with pytest.raises(rest.ServerError) as info:
            await client.get("/html502")
        assert info.value.http_status == 502 and "Bad Gateway" in info.value.message


async def test_client_side_limiter_refuses_before_sending(venue: tuple[Venue, str]) -> None:
    v, url = venue
    limits = VenueLimits(
        venue="test", classes={EndpointClass.PUBLIC: (Limit(limit=2, period_s=10.0, scope=Scope.CLASS),)}
    )
    async with _client(url, limiter=RateLimiter(limits)) as client:
        await client.get("/api/v3/time")
        await client.get("/api/v3/time")
        with pytest.raises(RateLimitExceeded):
            await client.get("/api/v3/time", timeout_s=0.5)
    assert v.hits["time"] == 2


async def test_outside_async_with_is_an_error() -> None:
    client = _client("http://127.0.0.1:1")
    with pytest.raises(RuntimeError, match="not open"):
        await client.get("/x")
    async with client:
        assert not client.session.closed
    with pytest.raises(RuntimeError):
        _ = client.session


async def test_secrets_and_signatures_never_logged(venue: tuple[Venue, str], caplog: pytest.LogCaptureFixture) -> None:
    _, url = venue
    caplog.set_level(logging.DEBUG)
    signer = MexcSigner(CREDS)
    async with _client(url, auth=rest.MexcAuth(signer), error_mapper=rest.mexc_error) as client:
        await client.request("POST", "/api/v3/order", [("symbol", "BTCUSDT"), ("quantity", "1")], signed=True)
        with pytest.raises(rest.InsufficientFundsError):
            await client.request("POST", "/api/v3/order", [("symbol", "BTCUSDT"), ("quantity", "999")], signed=True)
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("cexarb"))
    assert "/api/v3/order" in text  # it did log the requests
    assert KEY not in text and SECRET not in text and "signature" not in text
    assert KEY not in repr(client.auth) and SECRET not in repr(signer)


def test_error_mappers_on_venue_bodies() -> None:
    m = rest.mexc_error
    assert isinstance(m("mexc-spot", 400, b'{"code":30005,"msg":"Oversold"}', {}), rest.InvalidOrderError)
    assert isinstance(m("mexc-spot", 400, b'{"code":-2011,"msg":"Unknown order"}', {}), rest.OrderNotFoundError)
    assert isinstance(m("mexc-spot", 403, b'{"code":700006,"msg":"ip"}', {}), rest.PermissionDeniedError)
    limited = m("mexc-spot", 429, b'{"code":429,"msg":"Too many"}', {"retry-after": "7"})
    assert isinstance(limited, rest.RateLimitedError) and limited.retry_after_s == 7.0
    banned = m("mexc-spot", 418, b"", {})
    assert isinstance(banned, rest.RateLimitedError) and banned.http_status == 418
    assert isinstance(m("mexc-spot", 403, b"<html>waf</html>", {}), rest.PermissionDeniedError)
    g = rest.gate_error
    post_only = g("gateio-spot", 400, b'{"label":"POC_FILL_IMMEDIATELY","message":"x"}', {})
    assert isinstance(post_only, rest.PostOnlyWouldTakeError) and isinstance(post_only, rest.InvalidOrderError)
    closed = g("gateio-futures", 400, b'{"label":"ORDER_FINISHED","detail":"finished"}', {})
    assert isinstance(closed, rest.OrderNotOpenError) and closed.message == "finished"
    assert isinstance(g("gateio-futures", 400, b'{"label":"INSUFFICIENT_AVAILABLE"}', {}), rest.InsufficientFundsError)
    assert isinstance(g("gateio-spot", 400, b'{"label":"SOMETHING_NEW","message":"?"}', {}), rest.VenueError)
    assert rest.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a past date
    assert rest.parse_retry_after("soon") is None


def test_mexc_auth_fast_path_is_byte_identical_to_the_signer() -> None:
    signer = MexcSigner(CREDS, recv_window_ms=7000, clock_ms=lambda: 1644489390087)
    auth = rest.MexcAuth(signer)
    cases: list[list[tuple[str, str | int | bool]]] = [
        [],
        [("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "LIMIT"), ("quantity", "1"), ("price", "11")],
        [("symbols", "BTCUSDT,ETHUSDT"), ("note", "a b/c?d=e&f"), ("u", "é~_.-"), ("n", 5), ("flag", True)],
    ]
    for params in cases:
        for body in (b"", b"quantity=1&price=11"):
            query, headers = auth.sign("POST", "/api/v3/order", params, body)
            assert query == signer.signed_query(params, body=body.decode()), params
            assert headers == signer.headers()
    with pytest.raises(TypeError, match="not float"):
        auth.sign("POST", "/api/v3/order", [("price", 1.5)], b"")
    # the documented vector (PROTOCOLS.md §1.3), through the fast path
    plain = rest.encode_plain_query([("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "LIMIT")])
    assert plain == "symbol=BTCUSDT&side=BUY&type=LIMIT"
