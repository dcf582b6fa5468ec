"""Issue 4, P5: the pieces of the tick-to-order path made fast, checked for the same behaviour.

* order entry: :meth:`OrderEntryClient.start_request` writes the request before it returns (no
  task hop), falls back to the awaited path when the limiter has no slot, gives the connection
  back when the response is parsed (a reply nobody awaits never strands it), and one deadline
  timer serves every request in flight;
* Gate signing: :meth:`GateSigner.rest_header_lines` (pad states computed once, CPython's own
  SHA-512) signs exactly as :func:`sign_rest` / :func:`verify_rest`;
* Gate codec: the one-pass decode of ``*.order_book_update`` frames equals the general path, and
  anything else falls back to it; the formatted spot order body equals the Struct's encoding;
* the connector: ``enforce_rate_limits=False`` runs without a client-side limiter, and
  ``place_order`` has sent the order when it returns its coroutine.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import msgspec
import pytest
from aiohttp import web
from cexarb.model import (
    Instrument,
    InstrumentKind,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from cexarb.venues import rest
from cexarb.venues.base import OrderRequest, OrderUpdate
from cexarb.venues.gateio import codec
from cexarb.venues.gateio.signing import GateSigner, sign_rest, verify_rest
from cexarb.venues.order_entry import OrderEntryClient
from cexarb.venues.ratelimit import (
    EndpointClass,
    Limit,
    RateLimiter,
    Scope,
    VenueLimits,
)
from cexarb.venues.secrets import ApiCredentials, Secret
from cexarb.venues.sim.server import AccountSpec, SimServer
from loopback import gate_spot, serve

KEY, SECRET, UID = "gate-key-1", "gate-secret-1", 10001
CREDS = ApiCredentials(KEY, SECRET)
BODY = b'{"currency_pair":"BTC_USDT","side":"buy","amount":"0.001","price":"60000.5","text":"t-c1"}'
PATH = "/api/v4/spot/orders"


class Venue:
    """Verifies Gate signatures; ``/slow`` answers after ``slow_s``."""

    def __init__(self) -> None:
        self.arrived: list[float] = []
        self.verified = 0
        self.slow_s = 0.0
        self.app = web.Application()
        self.app.router.add_post(PATH, self.order)
        self.app.router.add_post("/slow", self.slow)

    async def order(self, request: web.Request) -> web.Response:
        self.arrived.append(time.monotonic())
        body = await request.read()
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
        self.verified += 1
        return web.json_response({"id": str(self.verified), "text": json.loads(body)["text"]}, status=201)

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.slow_s)
        return web.json_response({})


@pytest.fixture
async def venue() -> AsyncIterator[tuple[Venue, str]]:
    v = Venue()
    async with serve(v.app) as url:
        yield v, url


def _gate(url: str, **kwargs: object) -> OrderEntryClient:
    return OrderEntryClient(
        "gateio-spot",
        url,
        auth=rest.GateAuth(GateSigner(CREDS)),
        error_mapper=rest.gate_error,
        **kwargs,  # type: ignore[arg-type]
    )


# ---- order entry ------------------------------------------------------------------------------


async def test_start_request_writes_before_it_returns(venue: tuple[Venue, str]) -> None:
    v, url = venue
    async with _gate(url) as oe:
        pending = oe.start_request("POST", PATH, (), BODY)
        assert oe.requests == 1  # signed and written already, nothing awaited yet
        await asyncio.sleep(0.2)  # the venue gets it without the coroutine being awaited
        assert v.verified == 1
        response = await pending
        assert response.status == 201 and json.loads(response.body)["text"] == "t-c1"
        assert oe.connects == 1 and oe.open_connections == 1


async def test_a_reply_nobody_awaits_frees_the_connection(venue: tuple[Venue, str]) -> None:
    v, url = venue
    async with _gate(url) as oe:
        orphan = oe.start_request("POST", PATH, (), BODY)
        await asyncio.sleep(0.2)
        orphan.close()  # never awaited: the connection went back to the pool when the reply came
        for _ in range(3):
            assert (await oe.post(PATH, body=BODY)).status == 201
        assert oe.connects == 1 and v.verified == 4


async def test_start_request_without_a_slot_waits_like_request(venue: tuple[Venue, str]) -> None:
    v, url = venue
    limits = VenueLimits(venue="t", classes={EndpointClass.ORDER: (Limit(limit=1, period_s=0.3, scope=Scope.CLASS),)})
    async with _gate(url, limiter=RateLimiter(limits)) as oe:
        assert (await oe.start_request("POST", PATH, (), BODY)).status == 201
        start = time.monotonic()
        pending = oe.start_request("POST", PATH, (), BODY)  # no slot: nothing sent yet
        assert oe.requests == 1
        assert (await pending).status == 201
        assert time.monotonic() - start >= 0.25 and v.verified == 2


async def test_one_deadline_timer_expires_what_is_late(venue: tuple[Venue, str]) -> None:
    v, url = venue
    v.slow_s = 0.5
    async with _gate(url, pool_size=2) as oe:
        start = time.monotonic()
        slow = oe.start_request("POST", "/slow", signed=False, timeout_s=5.0)
        with pytest.raises(rest.OutcomeUnknownError):  # the earlier deadline re-arms the timer
            await oe.post("/slow", signed=False, timeout_s=0.1)
        assert time.monotonic() - start < 0.4
        assert (await slow).status == 200  # the later deadline did not fire early
        v.slow_s = 0.0
        assert (await oe.post(PATH, body=BODY)).status == 201


# ---- signing -------------------------------------------------------------------------------------


def test_rest_header_lines_sign_as_sign_rest() -> None:
    signer = GateSigner(CREDS, clock_s=lambda: 1541993715.9)
    for method, path, query, body in [
        ("POST", PATH, "", BODY),
        ("DELETE", PATH + "/t-c1", "currency_pair=BTC_USDT", b""),
        ("post", PATH, "a=1&b=2", b"{}"),
    ]:
        lines = signer.rest_header_lines(method, path, query, body).decode()
        headers = dict(line.split(": ", 1) for line in lines.split("\r\n") if line)
        assert headers["KEY"] == KEY and headers["Timestamp"] == "1541993715"
        assert headers["Content-Type"] == "application/json"
        assert headers["SIGN"] == sign_rest(Secret(SECRET), method, path, query, body, "1541993715")
        assert headers == {k: v for k, v in signer.rest_headers(method, path, query, body).items() if k != "Accept"}
    long_key = GateSigner(ApiCredentials(KEY, "s" * 300), clock_s=lambda: 1.0)  # key > one SHA-512 block
    sign = long_key.rest_headers("GET", "/p")["SIGN"]
    assert sign == sign_rest(Secret("s" * 300), "GET", "/p", "", "", "1")


def test_rest_header_lines_refuse_a_key_with_a_line_break() -> None:
    signer = GateSigner(ApiCredentials("k\r\nX: y", SECRET))
    with pytest.raises(ValueError, match="line break"):
        signer.rest_header_lines("POST", PATH, "", BODY)


# ---- codec ---------------------------------------------------------------------------------------


def _frame(channel: str, result: dict[str, object], **extra: object) -> str:
    return json.dumps(
        {"time": 1, "time_ms": 1000, "channel": channel, "event": "update", "result": result, **extra},
        separators=(",", ":"),
    )


SPOT_RESULT = {
    "t": 1000,
    "s": "BTC_USDT",
    "U": 5,
    "u": 9,
    "b": [["61822.0", "0.09"], ["61820.5", "0"]],
    "a": [["61826.0", "0.14"]],
    "l": "100",
    "e": "depthUpdate",
    "E": 1,
}
FUTURES_RESULT = {"t": 1000, "s": "BTC_USDT", "U": 5, "u": 9, "b": [{"p": "61822.0", "s": 12}], "a": [], "l": "20"}


@pytest.mark.parametrize(
    ("channel", "result"), [("spot.order_book_update", SPOT_RESULT), ("futures.order_book_update", FUTURES_RESULT)]
)
def test_one_pass_book_decode_equals_the_general_path(channel: str, result: dict[str, object]) -> None:
    text = _frame(channel, result)
    fast = codec.decode_ws_frame(text)
    assert codec._fast_book_update(text) is not None and codec._fast_book_update(text.encode()) == fast
    general = codec._book_update(channel, msgspec.Raw(json.dumps(result).encode()))
    assert fast == general and isinstance(fast, codec.GateOrderBookUpdate)
    assert fast.first_id == 5 and fast.last_id == 9 and fast.bids[0] == (61822.0, 0.09 if "spot" in channel else 12.0)


def test_other_frames_take_the_general_path() -> None:
    spaced = json.dumps({"time": 1, "channel": "spot.order_book_update", "event": "update", "result": SPOT_RESULT})
    assert codec._fast_book_update(spaced) is None  # not Gate's compact form: decoded the general way
    assert isinstance(codec.decode_ws_frame(spaced), codec.GateOrderBookUpdate)
    error = _frame("spot.order_book_update", SPOT_RESULT, error={"code": 2, "message": "bad"})
    assert codec._fast_book_update(error) is None
    assert isinstance(codec.decode_ws_frame(error), codec.GateWsError)
    broken = _frame("spot.order_book_update", {**SPOT_RESULT, "U": "x"})
    assert codec._fast_book_update(broken) is None
    with pytest.raises(codec.GateCodecError, match="order_book_update"):
        codec.decode_ws_frame(broken)
    ack = '{"time":1,"time_ms":1,"channel":"spot.order_book_update","event":"subscribe","result":{"status":"success"}}'
    assert isinstance(codec.decode_ws_frame(ack), codec.GateWsAck)


SPOT = Instrument(
    venue="gateio-spot", symbol="BTC_USDT", kind=InstrumentKind.SPOT, base="BTC", quote="USDT", tick_size=0.1, lot_size=1e-5
)


@pytest.mark.parametrize("tif", [TimeInForce.GTC, TimeInForce.IOC, TimeInForce.POST_ONLY])
@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_formatted_spot_body_equals_the_struct_encoding(tif: TimeInForce, side: Side) -> None:
    req = OrderRequest.create(SPOT, side, 0.00123, price=61822.5, time_in_force=tif, client_order_id="a-1.b_2")
    expected = msgspec.json.encode(
        codec.GateSpotOrderBody(
            currency_pair="BTC_USDT",
            side=side.value,
            amount=req.wire_qty,
            price=req.wire_price,
            time_in_force=codec._SPOT_TIF[tif],
            text="t-a-1.b_2",
        )
    )
    assert codec.spot_order_body(req) == expected
    odd = msgspec.structs.replace(req, instrument=msgspec.structs.replace(SPOT, symbol='BTC"USDT'))
    assert json.loads(codec.spot_order_body(odd))["currency_pair"] == 'BTC"USDT'  # escaped by the Struct path


def test_client_order_id_check_is_unchanged() -> None:
    for good in ("a", "A-b_c.9", "x" * 28):
        assert codec.text_for_client_order_id(good) == "t-" + good
    for bad in ("", "x" * 29, "has space", "ü", "a/b"):
        with pytest.raises(ValueError, match="client_order_id"):
            codec.text_for_client_order_id(bad)


# ---- the connector ----------------------------------------------------------------------------


@pytest.fixture
async def server(binance_dir):  # type: ignore[no-untyped-def]
    srv = SimServer(binance_dir, [AccountSpec(api_key=KEY, api_secret=SECRET, uid=UID)], rate_limits=False)
    await asyncio.wait_for(srv.start(), 30)
    try:
        yield srv
    finally:
        await asyncio.wait_for(srv.stop(), 30)


async def test_place_order_has_sent_when_it_returns_and_limits_can_be_off(server: SimServer) -> None:
    conn = gate_spot(server, KEY, SECRET, UID, enforce_rate_limits=False)
    async with conn:
        assert conn._limiter is None
        pushed: list[OrderUpdate] = []
        conn.subscribe(lambda e: pushed.append(e) if isinstance(e, OrderUpdate) else None)
        key = "gateio-spot:BTC_USDT"
        await conn.wait_synced(key, 10)
        inst = conn.instruments()[key]
        book = conn.book(key)
        bid = book.best_bid_ticks()
        assert bid is not None
        oe = conn._order_entry
        assert oe is not None
        before = oe.requests
        reply = conn.place_order(
            OrderRequest.create(
                inst, Side.BUY, 0.001, price_ticks=bid - 1000, time_in_force=TimeInForce.IOC, client_order_id="fast1"
            )
        )
        assert oe.requests == before + 1  # written before the coroutine ran
        order = await asyncio.wait_for(reply, 5)
        assert order.client_order_id == "fast1" and order.status in (OrderStatus.CANCELED, OrderStatus.FILLED)
        rejected = await conn.place_order(
            OrderRequest.create(inst, Side.BUY, 0.001, price_ticks=bid, type=OrderType.LIMIT, client_order_id="bad id")
        )
        assert rejected.status is OrderStatus.REJECTED and oe.requests == before + 1  # refused before sending
        # the simulator's order pushes come after the reply; leaving before them stalls its shutdown
        deadline = time.monotonic() + 5
        while not any(u.client_order_id == "fast1" and u.status is order.status for u in pushed):
            assert time.monotonic() < deadline, "no order push for fast1"
            await asyncio.sleep(0.02)
