"""Gate ``x-gate-exptime`` (PROTOCOLS.md §2.3): every order placement carries a short venue-side
deadline, the simulator (:func:`verify_rest`) refuses a request that arrives past it with
``REQUEST_EXPIRED``, and the connector's resolve window for an order of unknown outcome outlasts
that deadline -- so an order it reports "not placed" can no longer go live untracked."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from cexarb.model import OrderStatus, Side, TimeInForce
from cexarb.venues import connector
from cexarb.venues.base import OrderRequest
from cexarb.venues.gateio.signing import (
    EXPTIME_HEADER,
    ORDER_EXPTIME_MS,
    GateAuthError,
    GateSigner,
    verify_rest,
)
from cexarb.venues.order_entry import OrderEntryClient
from cexarb.venues.rest import GateAuth
from cexarb.venues.secrets import ApiCredentials, Secret
from cexarb.venues.sim import server_gateio
from cexarb.venues.sim.server import AccountSpec, SimServer
from loopback import gate_futures, gate_spot, sim_server, started

KEY, SECRET, UID = "gate-key-1", "gate-secret-1", 10001
NOW_S = 1_700_000_000.25
PATH = "/api/v4/spot/orders"
BODY = b'{"currency_pair":"BTC_USDT","side":"buy","amount":"0.001","price":"1000","text":"t-x1"}'


def _signer(**kw: Any) -> GateSigner:
    return GateSigner(ApiCredentials(KEY, SECRET), clock_s=lambda: NOW_S, **kw)


def _header(lines: bytes, name: str) -> str | None:
    for line in lines.split(b"\r\n"):
        k, _, v = line.partition(b": ")
        if k.lower() == name.lower().encode():
            return v.decode()
    return None


# ---- the client side: every POST carries it, other methods do not ----------------------------


def test_the_deadline_is_shorter_than_the_resolve_window() -> None:
    assert 0 < ORDER_EXPTIME_MS <= 5_000
    window_s = sum(connector._RESOLVE_DELAYS_S)
    assert window_s > ORDER_EXPTIME_MS / 1000 + connector._EXPIRY_MARGIN_S


@pytest.mark.parametrize("method", ["POST", "DELETE", "GET"])
def test_signed_headers_carry_exptime_on_posts_only(method: str) -> None:
    expected = str(int(NOW_S * 1000) + ORDER_EXPTIME_MS) if method == "POST" else None
    signer = _signer()
    body = BODY if method == "POST" else b""
    assert signer.rest_headers(method, PATH, "", body).get(EXPTIME_HEADER) == expected
    assert _header(signer.rest_header_lines(method, PATH, "", body), EXPTIME_HEADER) == expected
    # the order-entry fast path (prepared request head, HMAC prefix in Rust)
    assert _header(signer.rest_line_signer(method, PATH)(body), EXPTIME_HEADER) == expected
    client = OrderEntryClient("gateio-spot", "http://127.0.0.1:9", auth=GateAuth(signer))
    built = client.build(method, PATH, (), body)
    assert (method, PATH) in client._prepared
    assert _header(built.split(b"\r\n\r\n")[0], EXPTIME_HEADER) == expected


def test_exptime_follows_the_clock_and_can_be_configured_or_disabled() -> None:
    now = [NOW_S]
    signer = GateSigner(ApiCredentials(KEY, SECRET), clock_s=lambda: now[0], exptime_ms=1_500)
    sign = signer.rest_line_signer("POST", PATH)
    assert _header(sign(BODY), EXPTIME_HEADER) == str(int(NOW_S * 1000) + 1_500)
    now[0] += 0.5  # same Timestamp second, a later deadline
    assert _header(sign(BODY), EXPTIME_HEADER) == str(int(NOW_S * 1000) + 2_000)
    assert EXPTIME_HEADER not in _signer(exptime_ms=None).rest_headers("POST", PATH, "", BODY)
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError, match="exptime_ms"):
            _signer(exptime_ms=bad)


# ---- the venue side: verify_rest ------------------------------------------------------------------


def _verify(headers: dict[str, str], server_time_s: float = NOW_S) -> None:
    verify_rest(
        Secret(SECRET),
        method="POST",
        path=PATH,
        raw_query="",
        body=BODY,
        headers=headers,
        expected_key=Secret(KEY),
        server_time_s=server_time_s,
    )


def test_verify_rest_refuses_a_request_past_its_exptime() -> None:
    headers = _signer().rest_headers("POST", PATH, "", BODY)
    _verify(headers)  # in time
    _verify(headers, NOW_S + ORDER_EXPTIME_MS / 1000)  # exactly at the deadline: still in time
    with pytest.raises(GateAuthError) as info:
        _verify(headers, NOW_S + ORDER_EXPTIME_MS / 1000 + 0.01)
    assert info.value.label == "REQUEST_EXPIRED" and info.value.http_status == 401
    assert EXPTIME_HEADER in info.value.message and headers[EXPTIME_HEADER] in info.value.message
    # a non-number is a bad parameter, named in the message
    with pytest.raises(GateAuthError) as info:
        _verify(headers | {EXPTIME_HEADER: "soon"})
    assert (info.value.label, info.value.http_status) == ("INVALID_PARAM_VALUE", 400)
    assert EXPTIME_HEADER in info.value.message


# ---- end to end against the simulator ------------------------------------------------------------


@pytest.fixture
async def server(binance_dir):
    async with sim_server(binance_dir, AccountSpec(api_key=KEY, api_secret=SECRET, uid=UID)) as srv:
        yield srv


async def test_simulator_refuses_an_order_past_its_exptime(server: SimServer) -> None:
    account = server.accounts_by_key[KEY]
    book = server.market.books["gateio-spot:BTC_USDT"]
    bid, _ = book.best()
    assert bid is not None
    low = book.price_str(bid[0] - 20_000)  # rests
    body = json.dumps({"currency_pair": "BTC_USDT", "side": "buy", "amount": "0.001", "price": low, "text": "t-late"})
    signer = GateSigner(ApiCredentials(KEY, SECRET))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        headers = signer.rest_headers("POST", PATH, "", body)
        headers[EXPTIME_HEADER] = str(int(time.time() * 1000) - 1_000)  # it arrives 1 s too late
        async with http.post(server.base_url + PATH, data=body, headers=headers) as r:
            status, reply = r.status, await r.json(content_type=None)
        assert (status, reply["label"]) == (401, "REQUEST_EXPIRED"), reply
        assert not any(rec.text == "t-late" for rec in account.orders["gateio-spot"].values())
        # the same order in time goes through
        headers = signer.rest_headers("POST", PATH, "", body)
        async with http.post(server.base_url + PATH, data=body, headers=headers) as r:
            assert r.status == 201, await r.text()
    assert [rec.text for rec in account.orders["gateio-spot"].values()] == ["t-late"]


@pytest.mark.parametrize("market", ["spot", "futures"])
async def test_connector_orders_carry_exptime(server: SimServer, monkeypatch: pytest.MonkeyPatch, market: str) -> None:
    seen: list[tuple[str, str, dict[str, str], float]] = []
    real = server_gateio.verify_rest

    def recording(secret: Secret, **kw: Any) -> None:
        seen.append((kw["method"], kw["path"], dict(kw["headers"]), kw["server_time_s"]))
        real(secret, **kw)

    monkeypatch.setattr(server_gateio, "verify_rest", recording)
    conn = gate_spot(server, KEY, SECRET, UID) if market == "spot" else gate_futures(server, KEY, SECRET)
    async with started(conn) as venue:
        assert venue.order_expiry_s == ORDER_EXPTIME_MS / 1000
        inst = next(iter(venue.instruments().values()))
        book = server.market.books[inst.key]
        bid, _ = book.best()
        assert bid is not None
        req = OrderRequest.create(
            inst,
            Side.BUY,
            inst.lot_size * (1 if market == "futures" else 1000),
            price_ticks=bid[0] - 20_000,
            time_in_force=TimeInForce.GTC,
            client_order_id=f"exp-{market}",
        )
        order = await asyncio.wait_for(venue.place_order(req), 5)
        assert order.status is OrderStatus.NEW, order.reject_reason
        posts = [s for s in seen if s[0] == "POST" and s[1].endswith("/orders")]
        assert len(posts) == 1
        _, _, headers, server_s = posts[0]
        exptime = {k.lower(): v for k, v in headers.items()}.get(EXPTIME_HEADER)
        assert exptime is not None, sorted(headers)
        # signed just before it arrived: the deadline is ~5 s after the server's receipt
        assert 0 < int(exptime) - server_s * 1000 <= ORDER_EXPTIME_MS
        assert await asyncio.wait_for(venue.cancel_order(inst.key, req.client_order_id), 5)
