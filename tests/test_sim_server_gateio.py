"""Loopback simulator, Gate.io side: REST (signing, errors, orders, positions), WS (book stitching,
private channels), faults and rate limits, against a real server on 127.0.0.1 (port 0)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import aiohttp
import pytest
from cexarb.venues.gateio import codec
from cexarb.venues.gateio.signing import GateSigner, encode_query
from cexarb.venues.secrets import ApiCredentials
from cexarb.venues.sim.server import AccountSpec, SimServer

KEY, SECRET, UID = "gate-key-1", "gate-secret-1", 10001
T = aiohttp.ClientTimeout(total=10)
SPOT_KEY, FUT_KEY = "gateio-spot:BTC_USDT", "gateio-futures:BTC_USDT"


@pytest.fixture
async def server(binance_dir):
    srv = SimServer(binance_dir, [AccountSpec(api_key=KEY, api_secret=SECRET, uid=UID)])
    await asyncio.wait_for(srv.start(), 30)
    try:
        yield srv
    finally:
        await asyncio.wait_for(srv.stop(), 30)


@pytest.fixture
async def http():
    async with aiohttp.ClientSession(timeout=T) as session:
        yield session


SIGNER = GateSigner(ApiCredentials(KEY, SECRET, uid=str(UID)))


async def gate(
    http: aiohttp.ClientSession,
    srv: SimServer,
    method: str,
    path: str,
    params: list[tuple[str, Any]] | None = None,
    body: Any = None,
    *,
    signer: GateSigner | None = SIGNER,
    headers: dict[str, str] | None = None,
    timestamp: str | None = None,
) -> tuple[int, Any, Any]:
    sent, raw = encode_query(params or [])
    full = "/api/v4" + path
    data = json.dumps(body, separators=(",", ":")) if body is not None else ""
    h = dict(headers or {})
    if signer is not None:
        h.update(signer.rest_headers(method, full, raw, data, timestamp=timestamp))
    url = srv.base_url + full + ("?" + sent if sent else "")
    async with http.request(method, url, data=data or None, headers=h) as r:
        return r.status, await r.json(content_type=None), r.headers


async def test_gate_public_rest(server, http):
    status, body, _ = await gate(http, server, "GET", "/spot/time", signer=None)
    assert status == 200 and abs(codec.decode_server_time(json.dumps(body)).server_time - time.time() * 1000) < 5000
    _, body, _ = await gate(http, server, "GET", "/spot/currency_pairs", signer=None)
    inst = codec.decode_currency_pairs(json.dumps(body))[0].to_instrument()
    assert (inst.symbol, inst.tick_size, inst.lot_size, inst.maker_fee) == (
        "BTC_USDT",
        0.1,
        1e-6,
        0.002,
    )
    _, body, _ = await gate(http, server, "GET", "/futures/usdt/contracts", signer=None)
    fut = codec.decode_contracts(json.dumps(body))[0].to_instrument()
    assert (fut.symbol, fut.tick_size, fut.lot_size, fut.contract_size) == (
        "BTC_USDT",
        0.1,
        1.0,
        0.0001,
    )
    _, body, _ = await gate(http, server, "GET", "/futures/btc/contracts", signer=None)
    assert body == []
    params = [("currency_pair", "BTC_USDT"), ("limit", "20"), ("with_id", "true")]
    _, body, _ = await gate(http, server, "GET", "/spot/order_book", params, signer=None)
    snap = codec.decode_spot_order_book(json.dumps(body))
    assert len(snap.bids) == 20 and snap.bids[0][0] < snap.asks[0][0]
    assert snap.id <= server.market.books[SPOT_KEY].update_id
    params = [("contract", "BTC_USDT"), ("limit", "5"), ("with_id", "true")]
    _, body, _ = await gate(http, server, "GET", "/futures/usdt/order_book", params, signer=None)
    fsnap = codec.decode_futures_order_book(json.dumps(body))
    assert all(q == int(q) for _, q in fsnap.bids + fsnap.asks)  # whole contracts
    _, body, _ = await gate(
        http,
        server,
        "GET",
        "/spot/tickers",
        [("currency_pair", "BTC_USDT")],
        signer=None,
    )
    assert float(body[0]["highest_bid"]) < float(body[0]["lowest_ask"])
    status, body, _ = await gate(
        http,
        server,
        "GET",
        "/spot/order_book",
        [("currency_pair", "ETH_USDT")],
        signer=None,
    )
    assert status == 400 and body["label"] == "INVALID_CURRENCY_PAIR"


async def test_gate_signature_and_timestamp_checks(server, http):
    status, body, _ = await gate(http, server, "GET", "/spot/accounts", signer=None)
    assert (status, body["label"]) == (400, "MISSING_REQUIRED_HEADER")
    other = GateSigner(ApiCredentials("unknown-key", SECRET))
    status, body, _ = await gate(http, server, "GET", "/spot/accounts", signer=other)
    assert (status, body["label"]) == (401, "INVALID_KEY")
    wrong = GateSigner(ApiCredentials(KEY, "not-the-secret"))
    status, body, _ = await gate(http, server, "GET", "/spot/accounts", signer=wrong)
    assert (status, body["label"]) == (401, "INVALID_SIGNATURE")
    status, body, _ = await gate(http, server, "GET", "/spot/accounts", timestamp=str(int(time.time()) - 120))
    assert (status, body["label"]) == (401, "REQUEST_EXPIRED")
    status, body, _ = await gate(http, server, "GET", "/spot/accounts")
    assert status == 200
    balances = {b.currency: b for b in codec.decode_spot_accounts(json.dumps(body))}
    assert balances["USDT"].available == 100_000.0 and balances["BTC"].available == 1.0
    # query signed unencoded, sent encoded
    status, body, _ = await gate(http, server, "GET", "/spot/my_trades", [("currency_pair", "BTC_USDT")])
    assert status == 200 and body == []


async def test_gate_spot_order_lifecycle(server, http):
    book = server.market.books[SPOT_KEY]
    bid, _ask = book.best()
    low = book.price_str(bid[0] - 20_000)  # 2000 USDT below the best bid: rests
    order = {
        "currency_pair": "BTC_USDT",
        "side": "buy",
        "amount": "0.001",
        "price": low,
        "text": "t-rest1",
    }
    status, body, _ = await gate(http, server, "POST", "/spot/orders", body=order)
    assert status == 201, body
    placed = codec.decode_spot_order(json.dumps(body))
    assert placed.status == "open" and placed.text == "t-rest1" and placed.to_update().client_order_id == "rest1"
    status, body, _ = await gate(http, server, "GET", "/spot/orders/t-rest1", [("currency_pair", "BTC_USDT")])
    assert status == 200 and body["id"] == str(placed.id)
    _, body, _ = await gate(http, server, "GET", "/spot/open_orders")
    assert [o["id"] for o in body[0]["orders"]] == [str(placed.id)]
    _, body, _ = await gate(http, server, "GET", "/spot/accounts", [("currency", "USDT")])
    assert float(body[0]["locked"]) > 0
    status, body, _ = await gate(
        http,
        server,
        "DELETE",
        f"/spot/orders/{placed.id}",
        [("currency_pair", "BTC_USDT")],
    )
    assert status == 200 and body["status"] == "cancelled" and body["finish_as"] == "cancelled"
    status, body, _ = await gate(
        http,
        server,
        "DELETE",
        f"/spot/orders/{placed.id}",
        [("currency_pair", "BTC_USDT")],
    )
    assert (status, body["label"]) == (400, "ORDER_CLOSED")
    status, body, _ = await gate(http, server, "GET", "/spot/orders/999", [("currency_pair", "BTC_USDT")])
    assert (status, body["label"]) == (404, "ORDER_NOT_FOUND")
    # marketable IOC: fills at arrival
    high = book.price_str(book.best()[1][0] + 500)
    order = {
        "currency_pair": "BTC_USDT",
        "side": "buy",
        "amount": "0.002",
        "price": high,
        "time_in_force": "ioc",
    }
    status, body, _ = await gate(http, server, "POST", "/spot/orders", body=order)
    assert status == 201 and body["status"] == "closed" and body["finish_as"] == "filled", body
    assert float(body["filled_amount"]) == pytest.approx(0.002)
    _, trades, _ = await gate(http, server, "GET", "/spot/my_trades", [("currency_pair", "BTC_USDT")])
    fills = codec.decode_spot_trades(json.dumps(trades))
    assert fills and all(str(f.order_id) == body["id"] and f.role == "taker" for f in fills)
    assert sum(f.amount for f in fills) == pytest.approx(0.002)
    _, accts, _ = await gate(http, server, "GET", "/spot/accounts", [("currency", "BTC")])
    # the buy's fee is taken from the BTC received (fee_currency BTC), 0.2 % taker
    assert body["fee_currency"] == "BTC" and float(body["fee"]) == pytest.approx(0.002 * 0.002)
    assert float(accts[0]["available"]) == pytest.approx(1.002 - 0.002 * 0.002, abs=1e-12)
    # errors in Gate's own format
    bad = {
        "currency_pair": "BTC_USDT",
        "side": "buy",
        "amount": "0.0000001",
        "price": low,
    }
    status, body, _ = await gate(http, server, "POST", "/spot/orders", body=bad)
    assert (status, body["label"]) == (400, "INVALID_PRECISION")
    huge = {"currency_pair": "BTC_USDT", "side": "buy", "amount": "100", "price": low}
    status, body, _ = await gate(http, server, "POST", "/spot/orders", body=huge)
    assert (status, body["label"]) == (400, "BALANCE_NOT_ENOUGH")
    poc = {
        "currency_pair": "BTC_USDT",
        "side": "buy",
        "amount": "0.001",
        "price": high,
        "time_in_force": "poc",
    }
    status, body, _ = await gate(http, server, "POST", "/spot/orders", body=poc)
    assert (status, body["label"]) == (400, "POC_FILL_IMMEDIATELY")


async def test_gate_futures_orders_and_positions(server, http):
    dec = {"X-Gate-Size-Decimal": "1"}
    order = {
        "contract": "BTC_USDT",
        "size": 10,
        "price": "0",
        "tif": "ioc",
        "text": "t-open",
    }
    status, body, _ = await gate(http, server, "POST", "/futures/usdt/orders", body=order)
    assert status == 201 and body["status"] == "finished" and body["finish_as"] == "filled", body
    assert body["size"] == 10 and body["left"] == 0
    _, pos, _ = await gate(http, server, "GET", "/futures/usdt/positions", headers=dec)
    assert pos[0]["size"] == "10" and float(pos[0]["entry_price"]) > 0
    _, acct, _ = await gate(http, server, "GET", "/futures/usdt/accounts")
    a = codec.decode_futures_account(json.dumps(acct))
    assert a.position_margin > 0 and a.available < 100_000.0
    # reduce-only in the wrong direction is refused; closing works
    status, body, _ = await gate(
        http,
        server,
        "POST",
        "/futures/usdt/orders",
        body={
            "contract": "BTC_USDT",
            "size": 5,
            "price": "0",
            "tif": "ioc",
            "reduce_only": True,
        },
    )
    assert (status, body["label"]) == (400, "INCREASE_POSITION")
    status, body, _ = await gate(
        http,
        server,
        "POST",
        "/futures/usdt/orders",
        body={
            "contract": "BTC_USDT",
            "size": 0,
            "price": "0",
            "tif": "ioc",
            "close": True,
        },
    )
    assert status == 201 and body["finish_as"] == "filled" and body["size"] == -10
    _, pos, _ = await gate(http, server, "GET", "/futures/usdt/positions/BTC_USDT")
    assert pos["size"] == 0
    _, trades, _ = await gate(
        http,
        server,
        "GET",
        "/futures/usdt/my_trades",
        [("contract", "BTC_USDT")],
        headers=dec,
    )
    assert any(t["size"].startswith("-") for t in trades)
    # a resting order, listed then cancelled by its text
    low = server.market.books[FUT_KEY].price_str(server.market.books[FUT_KEY].best()[0][0] - 10_000)
    status, body, _ = await gate(
        http,
        server,
        "POST",
        "/futures/usdt/orders",
        body={"contract": "BTC_USDT", "size": "-3", "price": low, "tif": "poc"},
        headers=dec,
    )
    assert (status, body["label"]) == (400, "ORDER_POC_IMMEDIATE")
    status, body, _ = await gate(
        http,
        server,
        "POST",
        "/futures/usdt/orders",
        body={"contract": "BTC_USDT", "size": "3", "price": low, "text": "t-rest"},
        headers=dec,
    )
    assert status == 201 and body["status"] == "open" and body["size"] == "3"
    _, listed, _ = await gate(
        http,
        server,
        "GET",
        "/futures/usdt/orders",
        [("contract", "BTC_USDT"), ("status", "open")],
    )
    assert [o["id"] for o in listed] == [body["id"]]
    status, body, _ = await gate(http, server, "DELETE", "/futures/usdt/orders/t-rest")
    assert status == 200 and body["finish_as"] == "cancelled"


async def _ws_recv_json(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def _next_update(ws: aiohttp.ClientWebSocketResponse, channel: str) -> dict[str, Any]:
    for _ in range(200):
        frame = await _ws_recv_json(ws)
        if frame.get("channel") == channel and frame.get("event") == "update":
            return frame
    raise AssertionError(f"no {channel} update")


async def test_gate_ws_book_stitches_onto_rest_snapshot(server, http):
    url = server.ws_base_url + "/ws/v4/"
    async with http.ws_connect(url) as ws:
        await ws.send_str(
            codec.encode_ws_request(
                "spot.order_book_update",
                "subscribe",
                ["BTC_USDT", "100ms"],
                time_s=int(time.time()),
                request_id=7,
            ).decode()
        )
        ack = codec.decode_ws_frame(json.dumps(await _ws_recv_json(ws)))
        assert isinstance(ack, codec.GateWsAck) and ack.id == 7
        first = codec.decode_ws_frame(json.dumps(await _next_update(ws, "spot.order_book_update")))
        assert isinstance(first, codec.GateOrderBookUpdate)
        params = [("currency_pair", "BTC_USDT"), ("limit", "5000"), ("with_id", "true")]
        _, body, _ = await gate(http, server, "GET", "/spot/order_book", params, signer=None)
        snap = codec.decode_spot_order_book(json.dumps(body))
        bids = dict(snap.bids)
        asks = dict(snap.asks)
        local_id = snap.id
        applied = 0
        for _ in range(40):
            upd = codec.decode_ws_frame(json.dumps(await _next_update(ws, "spot.order_book_update")))
            assert isinstance(upd, codec.GateOrderBookUpdate)
            if upd.last_id <= local_id:
                continue
            assert upd.first_id is not None and upd.first_id <= local_id + 1, "gap"
            for side, levels in ((bids, upd.bids), (asks, upd.asks)):
                for p, q in levels:
                    if q == 0:
                        side.pop(p, None)
                    else:
                        side[p] = q
            local_id = upd.last_id
            applied += 1
            if applied >= 5:
                break
        assert applied >= 5
        # freeze the market, let the last push out, then compare with the server's book
        server.market.paused = True
        await asyncio.sleep(0.3)
        deadline = time.monotonic() + 5.0
        for _ in range(500):  # drain until 0.3 s of quiet: bounded in count and in time
            assert time.monotonic() < deadline, "the paused market kept pushing"
            try:
                msg = await asyncio.wait_for(ws.receive(), 0.3)
            except TimeoutError:
                break
            upd = codec.decode_ws_frame(msg.data)
            assert isinstance(upd, codec.GateOrderBookUpdate) and upd.first_id == local_id + 1
            for side, levels in ((bids, upd.bids), (asks, upd.asks)):
                for p, q in levels:
                    if q == 0:
                        side.pop(p, None)
                    else:
                        side[p] = q
            local_id = upd.last_id
        else:
            raise AssertionError("500 pushes after pausing the market")
        book = server.market.books[SPOT_KEY]
        assert local_id == book.update_id
        top_bids, top_asks = book.top(20)
        assert sorted(bids.items(), reverse=True)[:20] == [(book.price(t), q) for t, q in top_bids]
        assert sorted(asks.items())[:20] == [(book.price(t), q) for t, q in top_asks]


def _apply_levels(book: dict[float, float], levels: Any) -> None:
    for p, q in levels:
        if q == 0:
            book.pop(p, None)
        else:
            book[p] = q


async def test_gate_ws_level_limited_depth_keeps_exactly_the_top_levels(server, http):
    """``futures.order_book_update`` at level 20 (stitched onto a REST snapshot of limit 20) and
    ``futures.obu`` ``ob.BTC_USDT.50`` (from its full push) carry the subscribed top levels only
    (PROTOCOLS.md §3.4/§3.5): the local books stay near their depth -- never collecting the deep
    levels that change all the time -- and equal the server's top levels once the market pauses."""
    url = server.ws_base_url + "/v4/ws/usdt"
    fut = server.market.books[FUT_KEY]
    async with http.ws_connect(url) as ws:
        now = int(time.time())
        for channel, payload in (("futures.order_book_update", ["BTC_USDT", "20ms", "20"]), ("futures.obu", ["ob.BTC_USDT.50"])):
            await ws.send_str(codec.encode_ws_request(channel, "subscribe", payload, time_s=now).decode())
        books: dict[str, tuple[dict[float, float], dict[float, float]]] = {}
        ids: dict[str, int] = {}
        pending: list[codec.GateOrderBookUpdate] = []
        biggest = {"futures.order_book_update": 0, "futures.obu": 0}

        def apply(upd: codec.GateOrderBookUpdate) -> None:
            ch = upd.channel
            if upd.full:
                books[ch] = (dict(upd.bids), dict(upd.asks))
                ids[ch] = upd.last_id
                return
            if ch not in books or upd.last_id <= ids[ch]:
                return
            assert upd.first_id is not None and upd.first_id <= ids[ch] + 1, (ch, "gap")
            bids, asks = books[ch]
            _apply_levels(bids, upd.bids)
            _apply_levels(asks, upd.asks)
            ids[ch] = upd.last_id
            biggest[ch] = max(biggest[ch], len(bids), len(asks))

        start = time.monotonic()
        deadline = start + 10.0
        snapshot_taken = False
        for _ in range(400):  # ~2 s of 20 ms pushes; bounded in count and time
            assert time.monotonic() < deadline
            frame = codec.decode_ws_frame(json.dumps(await _ws_recv_json(ws)))
            if not isinstance(frame, codec.GateOrderBookUpdate):
                continue
            if frame.channel == "futures.order_book_update" and not snapshot_taken:
                pending.append(frame)
                params = [("contract", "BTC_USDT"), ("limit", "20"), ("with_id", "true")]
                _, body, _ = await gate(http, server, "GET", "/futures/usdt/order_book", params, signer=None)
                snap = codec.decode_futures_order_book(json.dumps(body))
                assert len(snap.bids) == 20
                books[frame.channel] = (dict(snap.bids), dict(snap.asks))
                ids[frame.channel] = snap.id
                snapshot_taken = True
                for held in pending:
                    apply(held)
                continue
            apply(frame)
            if len(ids) == 2 and time.monotonic() - start > 2.0:
                break
        assert set(ids) == {"futures.order_book_update", "futures.obu"}
        # only the top levels travel: the books never grow much past their depth
        assert 0 < biggest["futures.order_book_update"] <= 40, biggest
        assert 0 < biggest["futures.obu"] <= 100, biggest
        server.market.paused = True
        await asyncio.sleep(0.3)
        for _ in range(500):  # drain until 0.3 s of quiet (bounded)
            assert time.monotonic() < deadline + 5.0
            try:
                msg = await asyncio.wait_for(ws.receive(), 0.3)
            except TimeoutError:
                break
            frame = codec.decode_ws_frame(msg.data)
            if isinstance(frame, codec.GateOrderBookUpdate):
                apply(frame)
        for ch, n in (("futures.order_book_update", 20), ("futures.obu", 50)):
            bids, asks = books[ch]
            top_bids, top_asks = fut.top(n)
            assert ids[ch] == fut.update_id, ch
            assert sorted(bids.items(), reverse=True)[:n] == [(fut.price(t), q) for t, q in top_bids], ch
            assert sorted(asks.items())[:n] == [(fut.price(t), q) for t, q in top_asks], ch


async def test_gate_ws_drop_depth_makes_a_gap_and_full_push_resets(server, http):
    url = server.ws_base_url + "/v4/ws/usdt"
    async with http.ws_connect(url) as ws:
        await ws.send_str(
            codec.encode_ws_request(
                "futures.order_book_update",
                "subscribe",
                ["BTC_USDT", "20ms", "20"],
                time_s=int(time.time()),
            ).decode()
        )
        assert isinstance(codec.decode_ws_frame(json.dumps(await _ws_recv_json(ws))), codec.GateWsAck)
        prev = codec.decode_ws_frame(json.dumps(await _next_update(ws, "futures.order_book_update")))
        server.faults.drop_depth("gateio-futures")
        nxt = codec.decode_ws_frame(json.dumps(await _next_update(ws, "futures.order_book_update")))
        assert isinstance(prev, codec.GateOrderBookUpdate) and isinstance(nxt, codec.GateOrderBookUpdate)
        assert nxt.first_id is not None and nxt.first_id > prev.last_id + 1  # the dropped push left a gap
        assert server.gate.push_full("gateio-futures") == 1
        for _ in range(100):
            upd = codec.decode_ws_frame(json.dumps(await _next_update(ws, "futures.order_book_update")))
            if isinstance(upd, codec.GateOrderBookUpdate) and upd.full:
                assert len(upd.bids) == 20 and upd.depth == 20
                break
        else:
            raise AssertionError("no full push")
        # duplicate subscription: error code 2
        await ws.send_str(
            codec.encode_ws_request(
                "futures.order_book_update",
                "subscribe",
                ["BTC_USDT", "20ms", "20"],
                time_s=int(time.time()),
            ).decode()
        )
        for _ in range(100):
            frame = codec.decode_ws_frame(json.dumps(await _ws_recv_json(ws)))
            if isinstance(frame, codec.GateWsError):
                assert frame.code == 2
                break


async def test_gate_ws_futures_tickers_push_the_funding_rate(server, http, data_dir):
    """``futures.tickers`` (PROTOCOLS.md §3.4) on a raw WebSocket: the subscribe ack, a push right
    after it with the fields (all strings) of the Gate docs' "Tickers notification" example and
    the server's funding rate; ``set_funding_rate`` pushes the new rate at once; the unsubscribe
    ack; a second subscription of the same contract answers code 2."""
    path = data_dir / "api" / "gateio" / "docs_examples" / "gate_futures_ws_examples.json"
    docs = [
        e["json"]
        for e in json.loads(path.read_text())["examples"]
        if e["json"].get("channel") == "futures.tickers" and e["json"].get("event") == "update"
    ]
    assert len(docs) == 1
    doc_row = docs[0]["result"][0]
    url = server.ws_base_url + "/v4/ws/usdt"
    async with http.ws_connect(url) as ws:
        now = int(time.time())
        sub = codec.encode_ws_request("futures.tickers", "subscribe", ["BTC_USDT"], time_s=now, request_id=7)
        await ws.send_str(sub.decode())
        ack = await _ws_recv_json(ws)
        assert isinstance(codec.decode_ws_frame(json.dumps(ack)), codec.GateWsAck), ack
        assert (ack["channel"], ack["event"], ack["result"], ack["id"]) == (
            "futures.tickers", "subscribe", {"status": "success"}, 7,
        )
        push = await _next_update(ws, "futures.tickers")
        row = push["result"][0]
        assert len(push["result"]) == 1 and set(row) == set(doc_row), set(row) ^ set(doc_row)
        assert all(isinstance(v, str) for v in row.values()), row
        assert row["contract"] == "BTC_USDT" and float(row["mark_price"]) > 0
        assert float(row["funding_rate"]) == server.funding_rate == float(row["funding_rate_indicative"])
        server.set_funding_rate(-0.000114)
        for _ in range(50):  # market-driven pushes (<= 1 / s) may come first; bounded by count and 5 s each
            push = await _next_update(ws, "futures.tickers")
            if push["result"][0]["funding_rate"] != row["funding_rate"]:
                break
        assert push["result"][0]["funding_rate"] == "-0.000114"
        await ws.send_str(sub.decode())  # again: already subscribed
        for _ in range(50):
            frame = await _ws_recv_json(ws)
            if frame.get("event") != "update":
                break
        assert frame["channel"] == "futures.tickers" and frame["error"]["code"] == 2, frame
        unsub = codec.encode_ws_request("futures.tickers", "unsubscribe", ["BTC_USDT"], time_s=now)
        await ws.send_str(unsub.decode())
        for _ in range(50):
            frame = await _ws_recv_json(ws)
            if frame.get("event") != "update":
                break
        assert isinstance(codec.decode_ws_frame(json.dumps(frame)), codec.GateWsAck), frame
        assert frame["event"] == "unsubscribe"
    with pytest.raises(ValueError, match=r"funding_rate must be a finite number .*got nan"):
        server.set_funding_rate(float("nan"))
    assert server.funding_rate == -0.000114


async def test_gate_ws_futures_tickers_follow_the_market_at_most_once_a_second(server, http):
    """Market-driven ``futures.tickers`` pushes (the replay moves the book every ~100 ms): at
    least one after the subscribe push within 2.5 s, never two within 0.9 s (<= 1 / s)."""
    async with http.ws_connect(server.ws_base_url + "/v4/ws/usdt") as ws:
        sub = codec.encode_ws_request("futures.tickers", "subscribe", ["BTC_USDT"], time_s=int(time.time()))
        await ws.send_str(sub.decode())
        assert isinstance(codec.decode_ws_frame(json.dumps(await _ws_recv_json(ws))), codec.GateWsAck)
        stamps = [(await _next_update(ws, "futures.tickers"))["time_ms"]]  # the subscribe push
        deadline = time.monotonic() + 2.5
        for _ in range(20):  # bounded: count, and 2.5 s overall
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                frame = await asyncio.wait_for(_next_update(ws, "futures.tickers"), left)
            except TimeoutError:
                break
            stamps.append(frame["time_ms"])
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert 2 <= len(stamps) <= 4 and all(g >= 900 for g in gaps), stamps


async def test_gate_ws_private_channels_need_auth(server, http):
    url = server.ws_base_url + "/v4/ws/usdt"
    async with http.ws_connect(url, headers={"X-Gate-Size-Decimal": "1"}) as ws:
        now = int(time.time())
        wrong = GateSigner(ApiCredentials(KEY, "wrong-secret"))
        await ws.send_str(
            codec.encode_ws_request(
                "futures.orders",
                "subscribe",
                [str(UID), "BTC_USDT"],
                time_s=now,
                signer=wrong,
            ).decode()
        )
        err = codec.decode_ws_frame(json.dumps(await _ws_recv_json(ws)))
        assert isinstance(err, codec.GateWsError) and err.code == 4
        for channel, payload in (
            ("futures.orders", [str(UID), "BTC_USDT"]),
            ("futures.usertrades", [str(UID), "BTC_USDT"]),
            ("futures.positions", [str(UID), "!all"]),
        ):
            await ws.send_str(
                codec.encode_ws_request(channel, "subscribe", payload, time_s=now, signer=SIGNER).decode()
            )
            assert isinstance(
                codec.decode_ws_frame(json.dumps(await _ws_recv_json(ws))),
                codec.GateWsAck,
            )
        await ws.send_str(codec.encode_ws_ping("futures", time_s=now).decode())
        assert isinstance(codec.decode_ws_frame(json.dumps(await _ws_recv_json(ws))), codec.GatePong)
        status, _body, _ = await gate(
            http,
            server,
            "POST",
            "/futures/usdt/orders",
            body={
                "contract": "BTC_USDT",
                "size": -4,
                "price": "0",
                "tif": "ioc",
                "text": "t-ws1",
            },
        )
        assert status == 201
        seen: dict[str, Any] = {}
        for _ in range(200):
            frame = codec.decode_ws_frame(json.dumps(await _ws_recv_json(ws)))
            if isinstance(frame, codec.GateOrdersUpdate):
                seen.setdefault("orders", []).extend(frame.orders)
            elif isinstance(frame, codec.GateUserTradesUpdate):
                seen.setdefault("fills", []).extend(frame.trades)
            elif isinstance(frame, codec.GatePositionsUpdate):
                seen["position"] = frame.positions[-1]
            if (
                "orders" in seen
                and "fills" in seen
                and "position" in seen
                and any(o.status == "finished" for o in seen["orders"])
            ):
                break
        fills = seen["fills"]
        assert all(f.text == "t-ws1" for f in fills) and sum(f.size for f in fills) == -4
        assert seen["position"].size == -4
        assert any(o.to_update().client_order_id == "ws1" for o in seen["orders"])


async def test_gate_faults_and_rate_limits(server, http):
    server.faults.http_error("gateio-spot", 503)
    status, body, _ = await gate(http, server, "GET", "/spot/accounts")
    assert status == 503 and "label" in body
    status, _, _ = await gate(http, server, "GET", "/spot/accounts")
    assert status == 200
    server.faults.reject_order("gateio-spot", label="INVALID_PARAM_VALUE")
    low = server.market.books[SPOT_KEY].price_str(server.market.books[SPOT_KEY].best()[0][0] - 20_000)
    order = {
        "currency_pair": "BTC_USDT",
        "side": "buy",
        "amount": "0.0001",
        "price": low,
    }
    status, body, _ = await gate(http, server, "POST", "/spot/orders", body=order)
    assert (status, body["label"]) == (400, "INVALID_PARAM_VALUE")
    # spot order placement: 10 requests/s per user and market
    statuses = []
    for _ in range(25):
        status, body, headers = await gate(http, server, "POST", "/spot/orders", body=order)
        statuses.append(status)
        if status == 429:
            assert body["label"] == "TOO_MANY_REQUESTS" and headers["X-Gate-RateLimit-Limit"] == "10"
    assert 429 in statuses and 201 in statuses
    # per market: another pair's order is not in BTC_USDT's full window (the simulator serves
    # BTC_USDT only, so it is refused as an unknown pair -- 400, not 429)
    status, body, _ = await gate(http, server, "POST", "/spot/orders", body=order | {"currency_pair": "ETH_USDT"})
    assert (status, body["label"]) == (400, "INVALID_CURRENCY_PAIR")
    server.rate_limiter.enabled = False
    status, _, _ = await gate(http, server, "POST", "/spot/orders", body=order)
    assert status == 201


async def test_gate_rate_limit_windows_are_per_route_and_per_user_market(server, http):
    """Gate APIv4 "Frequency limit rule" (PROTOCOLS.md §2.6): queries by id count against the
    route ``/spot/orders/{order_id}`` (one window whatever the id); spot placement 10/s per UID
    and market; cancels 200/s per UID over single and batch routes. Every answer carries its
    window in ``X-Gate-RateLimit-*`` headers. The limiter's clock is pinned: the windows are
    1 s and 10 s, aligned to the epoch second, and the requests below must share theirs."""
    now = time.time()
    server.rate_limiter.clock = lambda: now
    params = [("currency_pair", "BTC_USDT")]
    remains = []
    for oid in ("t-a", "t-b", "123", "t-c"):  # unknown orders: 404, still counted
        status, _, headers = await gate(http, server, "GET", f"/spot/orders/{oid}", params)
        assert status == 404 and headers["X-Gate-RateLimit-Limit"] == "200"
        remains.append(int(headers["X-Gate-RateLimit-Requests-Remain"]))
    assert remains == [199, 198, 197, 196]
    _, _, headers = await gate(http, server, "GET", "/spot/orders", params)  # another endpoint
    assert headers["X-Gate-RateLimit-Requests-Remain"] == "199"
    for oid in ("t-a", "t-b"):
        status, _, headers = await gate(http, server, "DELETE", f"/spot/orders/{oid}", params)
        assert status == 404
    _, _, headers = await gate(http, server, "DELETE", "/spot/orders", params)  # cancel-all: same window
    assert (headers["X-Gate-RateLimit-Limit"], headers["X-Gate-RateLimit-Requests-Remain"]) == ("200", "197")
    _, _, headers = await gate(http, server, "GET", "/spot/currency_pairs/BTC_USDT", signer=None)
    assert headers["X-Gate-RateLimit-Requests-Remain"] == "199"
    _, _, headers = await gate(http, server, "GET", "/spot/currency_pairs/ETH_USDT", signer=None)
    assert headers["X-Gate-RateLimit-Requests-Remain"] == "198"  # one public endpoint, any pair


async def test_gate_cancel_executed_with_its_reply_lost(server, http):
    """A ``lose_ack`` armed with a cancel path prefix: the cancel runs, the connection drops; a
    ``lose_ack`` without a prefix stays a placement fault."""
    from cexarb.venues.sim.faults import Fault, FaultKind

    book = server.market.books[SPOT_KEY]
    order = {
        "currency_pair": "BTC_USDT",
        "side": "buy",
        "amount": "0.001",
        "price": book.price_str(book.best()[0][0] - 20_000),
        "text": "t-gone",
    }
    fault = server.faults.arm(Fault(venue="gateio-spot", kind=FaultKind.LOSE_ACK, path_prefix="/api/v4/spot/orders/"))
    status, _, _ = await gate(http, server, "POST", "/spot/orders", body=order)
    assert status == 201 and fault.fired == 0  # the placement did not take the cancel's fault
    params = [("currency_pair", "BTC_USDT")]
    # aiohttp itself sends an idempotent request (DELETE) once more when its connection drops
    # before any answer -- the very retry the connector makes: it hears the cancel was done
    try:
        status, body, _ = await gate(http, server, "DELETE", "/spot/orders/t-gone", params)
    except aiohttp.ClientError:  # an aiohttp that does not retry
        pass
    else:
        assert (status, body["label"]) == (400, "ORDER_CLOSED")
    assert fault.fired == 1
    status, body, _ = await gate(http, server, "GET", "/spot/orders/t-gone", params)
    assert status == 200 and body["finish_as"] == "cancelled"
    status, body, _ = await gate(http, server, "DELETE", "/spot/orders/t-gone", params)
    assert (status, body["label"]) == (400, "ORDER_CLOSED")


async def test_gate_partial_fill_and_lost_ack(server, http):
    book = server.market.books[SPOT_KEY]
    high = book.price_str(book.best()[1][0] + 2_000)
    server.faults.partial_fill("gateio-spot", 0.5)
    order = {
        "currency_pair": "BTC_USDT",
        "side": "buy",
        "amount": "0.004",
        "price": high,
        "time_in_force": "ioc",
    }
    status, body, _ = await gate(http, server, "POST", "/spot/orders", body=order)
    assert status == 201 and body["finish_as"] == "ioc" and float(body["filled_amount"]) == pytest.approx(0.002)
    server.faults.lose_ack("gateio-spot")
    order = {
        "currency_pair": "BTC_USDT",
        "side": "sell",
        "amount": "0.001",
        "price": book.price_str(book.best()[0][0] - 2_000),
        "time_in_force": "ioc",
        "text": "t-lost",
    }
    with pytest.raises(aiohttp.ClientError):
        await gate(http, server, "POST", "/spot/orders", body=order)
    status, body, _ = await gate(http, server, "GET", "/spot/orders/t-lost", [("currency_pair", "BTC_USDT")])
    assert status == 200 and body["finish_as"] == "filled"  # executed although the ack was lost
    server.faults.delay_ack("gateio-spot", 0.3)
    order["text"] = "t-slow"
    t0 = time.monotonic()
    status, body, _ = await gate(http, server, "POST", "/spot/orders", body=order)
    assert status == 201 and time.monotonic() - t0 >= 0.3


async def test_gate_ws_close_and_stall_faults(server, http):
    async with http.ws_connect(server.ws_base_url + "/ws/v4/") as ws:
        await ws.send_str(
            codec.encode_ws_request("spot.book_ticker", "subscribe", ["BTC_USDT"], time_s=int(time.time())).decode()
        )
        await _ws_recv_json(ws)
        await _next_update(ws, "spot.book_ticker")
        stall_end = time.monotonic() + 0.6
        server.faults.stall_stream("gateio-spot", 0.6)
        await asyncio.sleep(0.05)
        # drain what was already written (bounded) ...
        for _ in range(100):
            try:
                await asyncio.wait_for(ws.receive(), 0.05)
            except TimeoutError:
                break
        else:
            raise AssertionError("frames keep arriving during the stall")
        # ... then nothing arrives until the stall ends (a short bounded wait, 0.1 s of margin)
        quiet_s = stall_end - time.monotonic() - 0.1
        assert quiet_s > 0.2
        with pytest.raises(TimeoutError):
            msg = await asyncio.wait_for(ws.receive(), quiet_s)
            raise AssertionError(f"a frame arrived during the stall: {msg.data!r:.120}")
        # and the queued frames come afterwards
        t0 = time.monotonic()
        got_late = False
        for _ in range(1000):  # bounded in count as well as in time
            if time.monotonic() - t0 >= 2.0:
                break
            try:
                await asyncio.wait_for(ws.receive(), 0.3)
            except TimeoutError:
                continue
            got_late = True
            break
        assert got_late
        assert server.faults.close_sockets("gateio-spot") == 1
        for _ in range(1000):
            msg = await asyncio.wait_for(ws.receive(), 5)
            if msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.CLOSING,
            ):
                break
        assert ws.closed or msg.type != aiohttp.WSMsgType.TEXT


async def _ws_reply(ws: aiohttp.ClientWebSocketResponse) -> Any:
    """The next non-update frame (an ack, error or pong), decoded; bounded in count and time."""
    deadline = time.monotonic() + 5.0
    for _ in range(500):
        assert time.monotonic() < deadline, "no reply within 5 s"
        frame = await _ws_recv_json(ws)
        if frame.get("event") != "update":
            return codec.decode_ws_frame(json.dumps(frame))
    raise AssertionError("no reply within 500 frames")


async def test_gate_ws_requests_need_a_recent_time(server, http):
    """PROTOCOLS.md §2.4: every request's ``time`` must be within 60 s of the server's -- public
    subscriptions and pings too, not only signed ones (error code 2; signed ones fail auth, 4)."""
    stale = int(time.time()) - 3600
    async with http.ws_connect(server.ws_base_url + "/ws/v4/") as ws:
        for channel, payload in (
            ("spot.book_ticker", ["BTC_USDT"]),
            ("spot.obu", ["ob.BTC_USDT.50"]),
            ("spot.order_book_update", ["BTC_USDT", "100ms"]),
        ):
            for t in (stale, int(time.time()) + 3600):
                await ws.send_str(codec.encode_ws_request(channel, "subscribe", payload, time_s=t, request_id=5).decode())
                err = await _ws_reply(ws)
                assert isinstance(err, codec.GateWsError), (channel, t, err)
                assert (err.code, err.channel, err.id) == (2, channel, 5) and "time" in err.message
        await ws.send_str(codec.encode_ws_ping("spot", time_s=stale).decode())
        err = await _ws_reply(ws)
        assert isinstance(err, codec.GateWsError) and err.code == 2 and str(stale) in err.message
        await ws.send_str(
            codec.encode_ws_request("spot.balances", "subscribe", [], time_s=stale, signer=SIGNER).decode()
        )
        err = await _ws_reply(ws)
        assert isinstance(err, codec.GateWsError) and err.code == 4
        # nothing was subscribed: within 60 s the same requests succeed
        now = int(time.time()) - 30
        await ws.send_str(codec.encode_ws_ping("spot", time_s=now).decode())
        assert isinstance(await _ws_reply(ws), codec.GatePong)
        await ws.send_str(codec.encode_ws_request("spot.book_ticker", "subscribe", ["BTC_USDT"], time_s=now).decode())
        assert isinstance(await _ws_reply(ws), codec.GateWsAck)


async def test_gate_ws_book_interval_and_level_pairs(server, http):
    """PROTOCOLS.md §3.4: ``futures.order_book_update`` takes level 100/50/20 at 100ms and only
    20 at 20ms; §2.4: ``spot.order_book_update`` takes [pair, 20ms|100ms] and no level."""
    now = int(time.time())
    cases = {
        "/v4/ws/usdt": (
            "futures.order_book_update",
            [["BTC_USDT", "20ms", "100"], ["BTC_USDT", "20ms", "50"], ["BTC_USDT", "20ms"], ["BTC_USDT", "100ms", "10"],
             ["BTC_USDT", "50ms", "20"], ["BTC_USDT", "100ms", "20", "x"]],
            [["BTC_USDT", "20ms", "20"], ["BTC_USDT", "100ms", "100"], ["BTC_USDT", "100ms", "50"]],
        ),
        "/ws/v4/": (
            "spot.order_book_update",
            [["BTC_USDT", "20ms", "20"], ["BTC_USDT", "100ms", "100"], ["BTC_USDT", "50ms"]],
            [["BTC_USDT", "20ms"], ["BTC_USDT", "100ms"]],
        ),
    }
    for path, (channel, bad, good) in cases.items():
        async with http.ws_connect(server.ws_base_url + path) as ws:
            for payload in bad:
                await ws.send_str(codec.encode_ws_request(channel, "subscribe", payload, time_s=now).decode())
                err = await _ws_reply(ws)
                assert isinstance(err, codec.GateWsError) and err.code == 2, (payload, err)
                assert any(f"'{p}'" in err.message for p in payload[1:]), err.message  # names the value
            for payload in good:
                await ws.send_str(codec.encode_ws_request(channel, "subscribe", payload, time_s=now).decode())
                assert isinstance(await _ws_reply(ws), codec.GateWsAck), payload


async def test_gate_injected_429_carries_the_rate_limit_headers(server, http):
    """A fault-injected 429 is the limiter's own reply: label and ``X-Gate-RateLimit-*`` headers
    (the limit of the request's window, remain 0, a reset timestamp in ms)."""
    order = {"currency_pair": "BTC_USDT", "side": "buy", "amount": "0.0001", "price": "1000"}
    for method, path, body, limit, signer in (
        ("GET", "/spot/order_book", None, "200", None),
        ("GET", "/spot/accounts", None, "200", SIGNER),
        ("POST", "/spot/orders", order, "10", SIGNER),
    ):
        server.faults.http_error("gateio-spot", 429, path_prefix="/api/v4" + path)
        params = [("currency_pair", "BTC_USDT")] if method == "GET" and signer is None else None
        t0_ms = time.time() * 1000
        status, reply, headers = await gate(http, server, method, path, params, body, signer=signer)
        assert (status, reply["label"]) == (429, "TOO_MANY_REQUESTS"), path
        assert headers["X-Gate-RateLimit-Limit"] == limit and headers["X-Gate-RateLimit-Requests-Remain"] == "0"
        assert t0_ms - 1000 <= int(headers["X-Gate-RateLimit-Reset-Timestamp"]) <= t0_ms + 11_000


async def test_gate_rejected_order_leaves_ack_faults_armed(server, http):
    """``lose_ack`` / ``delay_ack`` belong to the next *accepted* placement: a placement the
    venue refuses (balance, post-only) answers its error and leaves them armed."""
    spot = server.market.books[SPOT_KEY]
    server.faults.lose_ack("gateio-spot")
    low = spot.price_str(spot.best()[0][0] - 20_000)
    too_big = {"currency_pair": "BTC_USDT", "side": "buy", "amount": "100", "price": low}
    status, body, _ = await gate(http, server, "POST", "/spot/orders", body=too_big)
    assert (status, body["label"]) == (400, "BALANCE_NOT_ENOUGH")
    assert [f.kind for f in server.faults.armed] == ["lose_ack"]
    with pytest.raises(aiohttp.ClientError):
        await gate(http, server, "POST", "/spot/orders", body=too_big | {"amount": "0.0001", "text": "t-acc"})
    status, body, _ = await gate(http, server, "GET", "/spot/orders/t-acc", [("currency_pair", "BTC_USDT")])
    assert status == 200 and body["status"] == "open"
    fut = server.market.books[FUT_KEY]
    server.faults.delay_ack("gateio-futures", 0.5)
    taking = {"contract": "BTC_USDT", "size": 1, "price": fut.price_str(fut.best()[1][0] + 10), "tif": "poc"}
    t0 = time.monotonic()
    status, body, _ = await gate(http, server, "POST", "/futures/usdt/orders", body=taking)
    assert (status, body["label"]) == (400, "ORDER_POC_IMMEDIATE") and time.monotonic() - t0 < 0.4
    assert [f.kind for f in server.faults.armed] == ["delay_ack"]
    resting = taking | {"price": fut.price_str(fut.best()[0][0] - 100)}
    t0 = time.monotonic()
    status, body, _ = await gate(http, server, "POST", "/futures/usdt/orders", body=resting)
    assert status == 201 and time.monotonic() - t0 >= 0.5 and server.faults.armed == []
