"""Loopback simulator, MEXC side: signed REST with MEXC's rules and errors, orders, protobuf WS
depth with fromVersion/toVersion continuity, user-data stream, rate limits; real server on
127.0.0.1 (port 0), real aiohttp client."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any

import aiohttp
import pytest
from cexarb.venues.mexc import codec
from cexarb.venues.mexc.signing import MexcSigner, encode_params
from cexarb.venues.secrets import ApiCredentials
from cexarb.venues.sim.server import AccountSpec, SimServer

KEY, SECRET = "mx-key-1", "mx-secret-1"
T = aiohttp.ClientTimeout(total=10)
BOOK_KEY = "mexc-spot:BTCUSDT"
SIGNER = MexcSigner(ApiCredentials(KEY, SECRET))


@pytest.fixture
async def server(binance_dir):
    srv = SimServer(binance_dir, [AccountSpec(api_key=KEY, api_secret=SECRET)])
    await asyncio.wait_for(srv.start(), 30)
    try:
        yield srv
    finally:
        await asyncio.wait_for(srv.stop(), 30)


@pytest.fixture
async def http():
    async with aiohttp.ClientSession(timeout=T) as session:
        yield session


async def mexc(
    http: aiohttp.ClientSession,
    srv: SimServer,
    method: str,
    path: str,
    params: list[tuple[str, str]] | None = None,
    *,
    signer: MexcSigner | None = SIGNER,
    timestamp_ms: int | None = None,
) -> tuple[int, bytes, Any]:
    if signer is not None:
        query = signer.signed_query(params or [], timestamp_ms=timestamp_ms)
        headers = signer.headers()
    else:
        query = encode_params(params or [])
        headers = {}
    url = srv.base_url + "/api/v3" + path + ("?" + query if query else "")
    async with http.request(method, url, headers=headers) as r:
        return r.status, await r.read(), r.headers


async def test_mexc_public_rest(server, http):
    status, body, _ = await mexc(http, server, "GET", "/ping", signer=None)
    assert status == 200 and codec.decode_empty(body) == {}
    _, body, _ = await mexc(http, server, "GET", "/time", signer=None)
    assert abs(codec.decode_server_time(body).server_time - time.time() * 1000) < 5000
    _, body, _ = await mexc(http, server, "GET", "/exchangeInfo", [("symbol", "BTCUSDT")], signer=None)
    inst = codec.symbol_to_instrument(codec.decode_exchange_info(body).symbols[0])
    assert (
        inst.symbol,
        inst.tick_size,
        inst.lot_size,
        inst.taker_fee,
        inst.min_notional,
    ) == ("BTCUSDT", 0.01, 1e-6, 0.0005, 1.0)
    _, body, _ = await mexc(
        http,
        server,
        "GET",
        "/depth",
        [("symbol", "BTCUSDT"), ("limit", "50")],
        signer=None,
    )
    depth = codec.decode_depth(body)
    assert len(depth.bids) == 50 and depth.bids[0][0] < depth.asks[0][0]
    assert depth.last_update_id <= server.market.books[BOOK_KEY].update_id
    _, body, _ = await mexc(http, server, "GET", "/ticker/bookTicker", [("symbol", "BTCUSDT")], signer=None)
    t = codec.decode_ticker(body)
    assert t.bid_price is not None and t.ask_price is not None and t.bid_price < t.ask_price
    status, body, _ = await mexc(http, server, "GET", "/depth", [("symbol", "ETHUSDT")], signer=None)
    assert status == 400 and codec.decode_error(body).code == 10007
    async with http.get(server.base_url + "/api/v1/contract/detail") as r:
        assert (await r.json())["data"] == []


async def test_mexc_signature_and_recv_window(server, http):
    status, body, _ = await mexc(http, server, "GET", "/account")
    acct = codec.decode_account(body)
    assert status == 200 and {b.asset: b.free for b in acct.balances} == {
        "USDT": 100_000.0,
        "BTC": 1.0,
    }
    wrong = MexcSigner(ApiCredentials(KEY, "wrong-secret"))
    status, body, _ = await mexc(http, server, "GET", "/account", signer=wrong)
    assert (status, codec.decode_error(body).code) == (400, 700002)
    status, body, _ = await mexc(http, server, "GET", "/account", timestamp_ms=int(time.time() * 1000) - 10_000)
    assert codec.decode_error(body).code == 700003
    status, body, _ = await mexc(http, server, "GET", "/account", timestamp_ms=int(time.time() * 1000) + 5_000)
    assert codec.decode_error(body).code == 700003  # more than 1 s in the server's future
    other = MexcSigner(ApiCredentials("unknown", SECRET))
    status, body, _ = await mexc(http, server, "GET", "/account", signer=other)
    assert (status, codec.decode_error(body).code) == (401, 10072)
    wide = MexcSigner(ApiCredentials(KEY, SECRET), recv_window_ms=59_999)
    status, _, _ = await mexc(http, server, "GET", "/account", signer=wide)
    assert status == 200
    # recvWindow must be less than 60000 (PROTOCOLS.md §1.7: 700005 for >= 60000): the server
    # refuses 60000 itself, and the client refuses to be configured with it
    for window in (60_000, 60_001):
        query = f"recvWindow={window}&timestamp={int(time.time() * 1000)}"
        signature = hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
        url = f"{server.base_url}/api/v3/account?{query}&signature={signature}"
        async with http.get(url, headers={"X-MEXC-APIKEY": KEY}) as r:
            status, body = r.status, await r.read()
        assert (status, codec.decode_error(body).code) == (400, 700005), window
    for window in (60_000, 0):
        with pytest.raises(ValueError, match=f"recvWindow.*got {window}"):
            MexcSigner(ApiCredentials(KEY, SECRET), recv_window_ms=window)


async def test_mexc_order_lifecycle(server, http):
    book = server.market.books[BOOK_KEY]
    low = book.price_str(book.best()[0][0] - 100_000)
    params = [
        ("symbol", "BTCUSDT"),
        ("side", "BUY"),
        ("type", "LIMIT"),
        ("quantity", "0.001"),
        ("price", low),
        ("newClientOrderId", "mx1"),
    ]
    status, body, _ = await mexc(http, server, "POST", "/order", params)
    assert status == 200, body
    ack = codec.decode_order_ack(body)
    status, body, _ = await mexc(
        http,
        server,
        "GET",
        "/order",
        [("symbol", "BTCUSDT"), ("origClientOrderId", "mx1")],
    )
    order = codec.decode_order(body)
    assert order.venue_order_id == ack.venue_order_id and order.status == "NEW" and order.client_order_id == "mx1"
    _, body, _ = await mexc(http, server, "GET", "/openOrders", [("symbol", "BTCUSDT")])
    assert [o.venue_order_id for o in codec.decode_orders(body)] == [ack.venue_order_id]
    status, body, _ = await mexc(
        http,
        server,
        "DELETE",
        "/order",
        [("symbol", "BTCUSDT"), ("orderId", ack.venue_order_id)],
    )
    assert status == 200 and codec.decode_order(body).status == "CANCELED"
    status, body, _ = await mexc(
        http,
        server,
        "DELETE",
        "/order",
        [("symbol", "BTCUSDT"), ("orderId", ack.venue_order_id)],
    )
    assert codec.decode_error(body).code == -2011
    high = book.price_str(book.best()[1][0] + 1_000)
    params = [
        ("symbol", "BTCUSDT"),
        ("side", "BUY"),
        ("type", "IMMEDIATE_OR_CANCEL"),
        ("quantity", "0.0015"),
        ("price", high),
    ]
    _, body, _ = await mexc(http, server, "POST", "/order", params)
    oid = codec.decode_order_ack(body).venue_order_id
    _, body, _ = await mexc(http, server, "GET", "/order", [("symbol", "BTCUSDT"), ("orderId", oid)])
    filled = codec.decode_order(body)
    assert filled.status == "FILLED" and filled.executed_qty == pytest.approx(0.0015)
    _, body, _ = await mexc(http, server, "GET", "/myTrades", [("symbol", "BTCUSDT")])
    trades = codec.decode_my_trades(body)
    assert trades and all(t.order_id == oid and t.is_buyer and not t.is_maker for t in trades)
    params = [
        ("symbol", "BTCUSDT"),
        ("side", "BUY"),
        ("type", "LIMIT_MAKER"),
        ("quantity", "0.001"),
        ("price", high),
    ]
    _, body, _ = await mexc(http, server, "POST", "/order", params)
    maker = codec.decode_order_ack(body).venue_order_id
    _, body, _ = await mexc(http, server, "GET", "/order", [("symbol", "BTCUSDT"), ("orderId", maker)])
    assert codec.decode_order(body).status == "CANCELED"  # post-only that would take
    params = [
        ("symbol", "BTCUSDT"),
        ("side", "SELL"),
        ("type", "LIMIT"),
        ("quantity", "5"),
        ("price", high),
    ]
    status, body, _ = await mexc(http, server, "POST", "/order", params)
    assert (status, codec.decode_error(body).code) == (400, 30004)
    params = [
        ("symbol", "BTCUSDT"),
        ("side", "BUY"),
        ("type", "LIMIT"),
        ("quantity", "0.00001"),
        ("price", low),
    ]
    status, body, _ = await mexc(http, server, "POST", "/order", params)
    assert codec.decode_error(body).code == 30002  # below the minimum notional
    params = [
        ("symbol", "BTCUSDT"),
        ("side", "BUY"),
        ("type", "MARKET"),
        ("quoteOrderQty", "100"),
    ]
    status, body, _ = await mexc(http, server, "POST", "/order", params)
    assert status == 200


async def _binary_push(ws: aiohttp.ClientWebSocketResponse) -> Any:
    for _ in range(200):
        msg = await asyncio.wait_for(ws.receive(), 5)
        if msg.type == aiohttp.WSMsgType.BINARY:
            return codec.decode_push(msg.data)
    raise AssertionError("no binary push")


async def test_mexc_ws_depth_versions_continue_rest(server, http):
    channel = codec.channel_aggre_depth("BTCUSDT", "100ms")
    async with http.ws_connect(server.ws_base_url + "/ws") as ws:
        await ws.send_bytes(codec.encode_subscribe([channel]))
        ack = codec.decode_text_frame((await asyncio.wait_for(ws.receive(), 5)).data)
        assert isinstance(ack, codec.MexcWsAck) and ack.msg == channel and ack.code == 0
        first = codec.depth_update_from_push(await _binary_push(ws))
        _, body, _ = await mexc(
            http,
            server,
            "GET",
            "/depth",
            [("symbol", "BTCUSDT"), ("limit", "5000")],
            signer=None,
        )
        snap = codec.decode_depth(body)
        prev = first
        found_start = first.from_version <= snap.last_update_id + 1 <= first.to_version
        for _ in range(15):
            upd = codec.depth_update_from_push(await _binary_push(ws))
            assert upd.from_version == prev.to_version + 1  # no gap
            found_start = found_start or upd.from_version <= snap.last_update_id + 1 <= upd.to_version
            prev = upd
        assert found_start or snap.last_update_id >= prev.to_version
        for ping in (b'{"method":"ping"}', b'{"method":"PING"}'):
            await ws.send_bytes(ping)
            for _ in range(200):
                msg = await asyncio.wait_for(ws.receive(), 5)
                if msg.type == aiohttp.WSMsgType.TEXT:
                    frame = codec.decode_text_frame(msg.data)
                    assert isinstance(frame, codec.MexcWsAck) and frame.is_pong
                    break
        await ws.send_bytes(codec.encode_subscribe(["spot@public.aggre.depth.v3.api.pb@100ms@ETHUSDT"]))
        for _ in range(200):
            msg = await asyncio.wait_for(ws.receive(), 5)
            if msg.type == aiohttp.WSMsgType.TEXT:
                assert "Not Subscribed successfully" in msg.data
                break
        server.faults.drop_depth("mexc-spot")
        a = codec.depth_update_from_push(await _binary_push(ws))
        b = codec.depth_update_from_push(await _binary_push(ws))
        assert b.from_version > a.to_version + 1 or a.from_version > prev.to_version + 1


async def test_mexc_user_data_stream(server, http):
    async with http.ws_connect(server.ws_base_url + "/ws?listenKey=nope") as ws:
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert isinstance(codec.decode_text_frame(msg.data), codec.InvalidListenKey)
    status, body, _ = await mexc(http, server, "POST", "/userDataStream")
    key = codec.decode_listen_key(body).listen_key
    assert status == 200 and isinstance(key, str)
    status, _, _ = await mexc(http, server, "PUT", "/userDataStream", [("listenKey", key)])
    assert status == 200
    channels = [
        "spot@private.orders.v3.api.pb",
        "spot@private.deals.v3.api.pb",
        "spot@private.account.v3.api.pb",
    ]
    async with http.ws_connect(server.ws_base_url + f"/ws?listenKey={key}") as ws:
        await ws.send_bytes(codec.encode_subscribe(channels))
        ack = codec.decode_text_frame((await asyncio.wait_for(ws.receive(), 5)).data)
        assert isinstance(ack, codec.MexcWsAck) and ack.msg == ",".join(channels)
        book = server.market.books[BOOK_KEY]
        high = book.price_str(book.best()[1][0] + 1_000)
        params = [
            ("symbol", "BTCUSDT"),
            ("side", "BUY"),
            ("type", "IMMEDIATE_OR_CANCEL"),
            ("quantity", "0.001"),
            ("price", high),
            ("newClientOrderId", "ud1"),
        ]
        _, body, _ = await mexc(http, server, "POST", "/order", params)
        oid = codec.decode_order_ack(body).venue_order_id
        inst = server.market.books[BOOK_KEY].instrument
        got: dict[str, Any] = {"fills": [], "orders": [], "balances": [], "deals": []}
        for _ in range(50):
            push = await _binary_push(ws)
            if push.channel == channels[0]:
                got["orders"].append(codec.order_update_from_push(push))
            elif push.channel == channels[1]:
                got["deals"].append(push.body)
                got["fills"].append(codec.fill_from_push(push, inst))
            else:
                got["balances"].append(codec.balance_from_push(push))
            if got["fills"] and got["balances"] and any(u.status.is_terminal for u in got["orders"]):
                break
        assert all(f.venue_order_id == oid and f.client_order_id == "ud1" for f in got["fills"])
        assert sum(f.qty for f in got["fills"]) == pytest.approx(0.001)
        # a buy's fee in the base received: feeCurrency BTC, feeAmount = taker rate x quantity
        assert got["deals"] and all(d.fee_currency == "BTC" for d in got["deals"]), got["deals"]
        assert all(
            float(d.fee_amount) == pytest.approx(inst.taker_fee * float(d.quantity), rel=1e-9) for d in got["deals"]
        )
        assert all(f.fee_base == pytest.approx(inst.taker_fee * f.qty, rel=1e-9) for f in got["fills"])
        assert {b.asset for b in got["balances"]} >= {"BTC", "USDT"}
    status, _, _ = await mexc(http, server, "DELETE", "/userDataStream", [("listenKey", key)])
    assert status == 200


async def test_mexc_rate_limit_429(server, http):
    codes = []
    for _ in range(55):  # exchangeInfo weighs 10: the 51st in a 10 s window exceeds 500
        status, body, headers = await mexc(http, server, "GET", "/exchangeInfo", signer=None)
        codes.append(status)
        if status == 429:
            assert codec.decode_error(body).code == 429 and int(headers["Retry-After"]) >= 1
            break
    assert codes[-1] == 429 and codes.count(200) >= 40
    server.faults.http_error("mexc-spot", 502, path_prefix="/api/v3/ping")
    server.rate_limiter.enabled = False
    status, _, _ = await mexc(http, server, "GET", "/ping", signer=None)
    assert status == 502


async def test_mexc_lost_or_failed_cancel_reply_still_cancels(server, http):
    """``MexcHandlers.fail_cancel_replies``: the cancel is executed, its answer is lost (dropped
    connection) or a 5xx; a second DELETE says unknown order and a query says CANCELED."""
    book = server.market.books[BOOK_KEY]
    low = book.price_str(book.best()[0][0] - 100_000)
    with pytest.raises(ValueError, match="status must be 5xx"):
        server.mexc.fail_cancel_replies(1, status=404)
    with pytest.raises(ValueError, match="count must be >= 1"):
        server.mexc.fail_cancel_replies(0)
    for n, fail in enumerate((None, 503)):
        cid = f"cx{n}"
        params = [
            ("symbol", "BTCUSDT"),
            ("side", "BUY"),
            ("type", "LIMIT"),
            ("quantity", "0.001"),
            ("price", low),
            ("newClientOrderId", cid),
        ]
        status, body, _ = await mexc(http, server, "POST", "/order", params)
        assert status == 200, body
        server.mexc.fail_cancel_replies(1, status=fail)
        which = [("symbol", "BTCUSDT"), ("origClientOrderId", cid)]
        if fail is None:
            # the connection drops without an answer; aiohttp may retry the (idempotent) DELETE
            # itself, which then finds the order already cancelled
            try:
                status, body, _ = await mexc(http, server, "DELETE", "/order", which)
            except aiohttp.ClientError:
                pass
            else:
                assert (status, codec.decode_error(body).code) == (400, -2011)
        else:
            status, body, _ = await mexc(http, server, "DELETE", "/order", which)
            assert status == fail and codec.decode_error(body).code == fail
        assert server.mexc.cancel_replies_failed == n + 1
        status, body, _ = await mexc(http, server, "DELETE", "/order", which)
        assert (status, codec.decode_error(body).code) == (400, -2011)
        _, body, _ = await mexc(http, server, "GET", "/order", which)
        assert codec.decode_order(body).status == "CANCELED"


async def test_mexc_market_sell_by_quantity_and_ioc_buy_by_quantity_and_price(server, http):
    """What MexcSpot sends for market orders: a MARKET sell with ``quantity`` (base) and, for a
    market buy, an IMMEDIATE_OR_CANCEL limit with ``quantity`` and a protective ``price``."""
    book = server.market.books[BOOK_KEY]
    high = book.price_str(book.best()[1][0] + 1_000)
    for cid, params in (
        ("ms1", [("side", "SELL"), ("type", "MARKET"), ("quantity", "0.002000")]),
        ("mb1", [("side", "BUY"), ("type", "IMMEDIATE_OR_CANCEL"), ("quantity", "0.002000"), ("price", high)]),
    ):
        status, body, _ = await mexc(
            http, server, "POST", "/order", [("symbol", "BTCUSDT"), *params, ("newClientOrderId", cid)]
        )
        assert status == 200, body
        _, body, _ = await mexc(http, server, "GET", "/order", [("symbol", "BTCUSDT"), ("origClientOrderId", cid)])
        order = codec.decode_order(body)
        assert order.status == "FILLED" and order.executed_qty == pytest.approx(0.002)


async def test_mexc_buy_fee_in_base_sell_fee_in_quote_over_rest(server, http):
    """MEXC spot fees (PROTOCOLS.md §1.2 ``myTrades`` ``commission`` / ``commissionAsset``): a buy
    pays the taker rate (0.05 %) of its quantity in BTC out of the BTC received and exactly the
    notional in USDT; a sell pays the rate of its quote amount in USDT. Amounts BTC, USDT."""
    book = server.market.books[BOOK_KEY]
    inst = book.instrument
    rate = inst.taker_fee
    assert rate == 0.0005

    async def balances() -> dict[str, float]:
        _, body, _ = await mexc(http, server, "GET", "/account")
        return {b.asset: b.free for b in codec.decode_account(body).balances}

    async def trades_of(oid: str) -> list[dict[str, Any]]:
        status, body, _ = await mexc(http, server, "GET", "/myTrades", [("symbol", "BTCUSDT"), ("orderId", oid)])
        assert status == 200, body
        rows = json.loads(body)
        assert rows and all(r["orderId"] == oid for r in rows), rows
        # the connector's parse of the same rows: fee valued in quote, its base part as fee_base
        for row, fill in zip(rows, [t.to_fill(inst) for t in codec.decode_my_trades(body)], strict=True):
            base_fee = float(row["commission"]) if row["commissionAsset"] == "BTC" else 0.0
            assert fill.fee_base == pytest.approx(base_fee, rel=1e-12, abs=0.0)
            assert fill.fee == pytest.approx(rate * fill.qty * fill.price, rel=1e-6)
        return rows

    start = await balances()
    assert start == {"USDT": 100_000.0, "BTC": 1.0}
    high = book.price_str(book.best()[1][0] + 1_000)
    params = [("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "IMMEDIATE_OR_CANCEL"), ("quantity", "0.004"),
              ("price", high), ("newClientOrderId", "feebuy1")]
    status, body, _ = await mexc(http, server, "POST", "/order", params)
    assert status == 200, body
    buy_rows = await trades_of(codec.decode_order_ack(body).venue_order_id)
    assert all(r["isBuyer"] is True and r["commissionAsset"] == "BTC" for r in buy_rows), buy_rows
    assert all(float(r["commission"]) == pytest.approx(rate * float(r["qty"]), rel=1e-9) for r in buy_rows)
    qty = sum(float(r["qty"]) for r in buy_rows)
    paid = sum(float(r["quoteQty"]) for r in buy_rows)
    fee_btc = sum(float(r["commission"]) for r in buy_rows)
    assert qty == pytest.approx(0.004)
    after_buy = await balances()
    assert after_buy["BTC"] == pytest.approx(1.0 + qty - fee_btc, abs=1e-12)
    assert after_buy["USDT"] == pytest.approx(100_000.0 - paid, abs=1e-6)  # no USDT fee on a buy

    low = book.price_str(book.best()[0][0] - 1_000)
    params = [("symbol", "BTCUSDT"), ("side", "SELL"), ("type", "IMMEDIATE_OR_CANCEL"), ("quantity", "0.002"),
              ("price", low), ("newClientOrderId", "feesell1")]
    status, body, _ = await mexc(http, server, "POST", "/order", params)
    assert status == 200, body
    sell_rows = await trades_of(codec.decode_order_ack(body).venue_order_id)
    assert all(r["isBuyer"] is False and r["commissionAsset"] == "USDT" for r in sell_rows), sell_rows
    assert all(
        float(r["commission"]) == pytest.approx(rate * float(r["quoteQty"]), rel=1e-6) for r in sell_rows
    )
    got = sum(float(r["quoteQty"]) for r in sell_rows)
    after_sell = await balances()
    assert after_sell["BTC"] == pytest.approx(after_buy["BTC"] - 0.002, abs=1e-12)
    assert after_sell["USDT"] == pytest.approx(after_buy["USDT"] + got * (1 - rate), abs=1e-6)


async def test_mexc_injected_429_is_the_limiters_reply(server, http):
    """A fault-injected 429 answers as the limiter does: ``{"code": 429}`` with ``Retry-After``
    (whole seconds, PROTOCOLS.md §1.7)."""
    for path, signer in (("/ping", None), ("/account", SIGNER)):
        server.faults.http_error("mexc-spot", 429, path_prefix="/api/v3" + path)
        status, body, headers = await mexc(http, server, "GET", path, signer=signer)
        assert (status, codec.decode_error(body).code) == (429, 429), path
        assert 1 <= int(headers["Retry-After"]) <= 600


async def test_mexc_rejected_order_leaves_ack_faults_armed(server, http):
    """``lose_ack`` / ``delay_ack`` belong to the next *accepted* placement: an order the venue
    refuses (10101 insufficient balance) answers its error and leaves them armed."""
    book = server.market.books[BOOK_KEY]
    low = book.price_str(book.best()[0][0] - 100_000)
    order = [("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "LIMIT"), ("price", low)]
    server.faults.lose_ack("mexc-spot")
    server.faults.delay_ack("mexc-spot", 0.5)
    status, body, _ = await mexc(http, server, "POST", "/order", [*order, ("quantity", "100")])
    assert (status, codec.decode_error(body).code) == (400, 10101)
    assert sorted(f.kind for f in server.faults.armed) == ["delay_ack", "lose_ack"]
    t0 = time.monotonic()
    with pytest.raises(aiohttp.ClientError):
        await mexc(http, server, "POST", "/order", [*order, ("quantity", "0.001"), ("newClientOrderId", "acc1")])
    assert time.monotonic() - t0 >= 0.5 and server.faults.armed == []
    params = [("symbol", "BTCUSDT"), ("origClientOrderId", "acc1")]
    status, body, _ = await mexc(http, server, "GET", "/order", params)
    assert status == 200 and json.loads(body)["status"] == "NEW"
