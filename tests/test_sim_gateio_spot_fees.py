"""Gate spot fees on the loopback simulator (127.0.0.1, port 0), as Gate charges them without GT
deduction: a buy pays its fee in the base received (``fee_currency`` BTC, ``rebated_fee_currency``
USDT; the account gets ``amount - fee`` BTC and pays exactly the notional in USDT), a sell in the
quote (``fee_currency`` USDT, ``rebated_fee_currency`` BTC). Sources: PROTOCOLS.md §2.2 (order
and trade fields) and the live Gate bodies in ``shared/data/api/gateio/ccxt_fixtures`` (an
LTC_USDT buy: ``"fee_currency": "LTC"``). Checked in REST order / trade / account answers, the
``spot.orders`` / ``spot.usertrades`` / ``spot.balances`` pushes, and the Gate spot connector's
quote-valued ``Fill.fee``. Amounts BTC, USDT; the simulator's spot fee rate is 0.2 % (maker and
taker). Every wait is bounded in time; loops are bounded in count."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from cexarb.model import Fill, OrderStatus, Side, TimeInForce
from cexarb.venues.base import OrderRequest
from cexarb.venues.gateio import codec
from cexarb.venues.gateio.signing import GateSigner, encode_query
from cexarb.venues.secrets import ApiCredentials
from cexarb.venues.sim.market import GATE_SPOT
from cexarb.venues.sim.server import AccountSpec, SimServer
from loopback import gate_spot, sim_server, started, wait_for

KEY, SECRET, UID = "gate-fee-key", "gate-fee-secret", 10001
SPOT_KEY = "gateio-spot:BTC_USDT"
RATE = 0.002  # GATE_SPOT maker = taker fee, fraction
SIGNER = GateSigner(ApiCredentials(KEY, SECRET, uid=str(UID)))
T = aiohttp.ClientTimeout(total=10)


@pytest.fixture
async def server(binance_dir):
    async with sim_server(binance_dir, AccountSpec(api_key=KEY, api_secret=SECRET, uid=UID)) as srv:
        yield srv


@pytest.fixture
async def http():
    async with aiohttp.ClientSession(timeout=T) as session:
        yield session


async def rest(
    http: aiohttp.ClientSession, srv: SimServer, method: str, path: str,
    params: list[tuple[str, Any]] | None = None, body: Any = None,
) -> tuple[int, Any]:
    sent, raw = encode_query(params or [])
    full = "/api/v4" + path
    data = json.dumps(body, separators=(",", ":")) if body is not None else ""
    headers = SIGNER.rest_headers(method, full, raw, data)
    url = srv.base_url + full + ("?" + sent if sent else "")
    async with http.request(method, url, data=data or None, headers=headers) as r:
        return r.status, await r.json(content_type=None)


async def spot_balances(http: aiohttp.ClientSession, srv: SimServer) -> dict[str, tuple[float, float]]:
    """(available, locked) by currency from ``GET /spot/accounts``."""
    status, body = await rest(http, srv, "GET", "/spot/accounts")
    assert status == 200, body
    return {a["currency"]: (float(a["available"]), float(a["locked"])) for a in body}


def ioc(srv: SimServer, side: str, amount: str, text: str) -> dict[str, Any]:
    """A marketable IOC limit order 50 USDT through the touch."""
    book = srv.market.books[SPOT_KEY]
    bid, ask = book.best()
    assert bid is not None and ask is not None
    price = book.price_str(ask[0] + 500) if side == "buy" else book.price_str(bid[0] - 500)
    return {"currency_pair": "BTC_USDT", "side": side, "amount": amount, "price": price,
            "time_in_force": "ioc", "text": text}


async def test_gate_spot_buy_fee_in_base_sell_fee_in_quote_over_rest(server, http):
    before = await spot_balances(http, server)
    assert before == {"USDT": (100_000.0, 0.0), "BTC": (1.0, 0.0)}
    status, buy = await rest(http, server, "POST", "/spot/orders", body=ioc(server, "buy", "0.01", "t-feebuy"))
    assert status == 201 and buy["finish_as"] == "filled", buy
    filled, total = float(buy["filled_amount"]), float(buy["filled_total"])
    assert filled == pytest.approx(0.01)
    assert (buy["fee_currency"], buy["rebated_fee_currency"]) == ("BTC", "USDT")
    assert float(buy["fee"]) == pytest.approx(RATE * filled, rel=1e-12)
    _, trades = await rest(http, server, "GET", "/spot/my_trades", [("currency_pair", "BTC_USDT")])
    rows = [t for t in trades if t["order_id"] == buy["id"]]
    assert rows and all(t["fee_currency"] == "BTC" for t in rows), rows
    assert all(float(t["fee"]) == pytest.approx(RATE * float(t["amount"]), rel=1e-12) for t in rows)
    assert sum(float(t["fee"]) for t in rows) == pytest.approx(float(buy["fee"]), rel=1e-12)
    after_buy = await spot_balances(http, server)
    # amount - fee BTC received; exactly the notional USDT paid (no USDT fee)
    assert after_buy["BTC"][0] == pytest.approx(1.0 + filled - RATE * filled, abs=1e-12)
    assert after_buy["USDT"][0] == pytest.approx(100_000.0 - total, abs=1e-6)
    # the same order read back states the same fee
    _, got = await rest(http, server, "GET", f"/spot/orders/{buy['id']}", [("currency_pair", "BTC_USDT")])
    assert (got["fee"], got["fee_currency"]) == (buy["fee"], "BTC")

    status, sell = await rest(http, server, "POST", "/spot/orders", body=ioc(server, "sell", "0.005", "t-feesell"))
    assert status == 201 and sell["finish_as"] == "filled", sell
    s_filled, s_total = float(sell["filled_amount"]), float(sell["filled_total"])
    assert (sell["fee_currency"], sell["rebated_fee_currency"]) == ("USDT", "BTC")
    assert float(sell["fee"]) == pytest.approx(RATE * s_total, rel=1e-9)
    _, trades = await rest(http, server, "GET", "/spot/my_trades", [("currency_pair", "BTC_USDT")])
    assert all(t["fee_currency"] == "USDT" for t in trades if t["order_id"] == sell["id"])
    after_sell = await spot_balances(http, server)
    assert after_sell["BTC"][0] == pytest.approx(after_buy["BTC"][0] - s_filled, abs=1e-12)
    assert after_sell["USDT"][0] == pytest.approx(after_buy["USDT"][0] + s_total * (1 - RATE), abs=1e-6)
    # an open buy states fee 0 in BTC
    low = server.market.books[SPOT_KEY].best()[0]
    assert low is not None
    resting = {"currency_pair": "BTC_USDT", "side": "buy", "amount": "0.001",
               "price": server.market.books[SPOT_KEY].price_str(low[0] - 20_000)}
    status, body = await rest(http, server, "POST", "/spot/orders", body=resting)
    assert status == 201 and (body["status"], body["fee"], body["fee_currency"]) == ("open", "0", "BTC"), body


async def _recv(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def test_gate_spot_buy_fee_in_base_on_the_private_pushes(server, http):
    async with http.ws_connect(server.ws_base_url + "/ws/v4/") as ws:
        now = int(time.time())
        for channel, payload in (("spot.orders", ["BTC_USDT"]), ("spot.usertrades", ["BTC_USDT"]),
                                 ("spot.balances", [])):
            await ws.send_str(codec.encode_ws_request(channel, "subscribe", payload, time_s=now,
                                                      signer=SIGNER).decode())
            assert isinstance(codec.decode_ws_frame(json.dumps(await _recv(ws))), codec.GateWsAck)
        status, buy = await rest(http, server, "POST", "/spot/orders", body=ioc(server, "buy", "0.004", "t-wsfee"))
        assert status == 201 and buy["finish_as"] == "filled", buy
        fee = RATE * float(buy["filled_amount"])
        finished: dict[str, Any] | None = None
        trades: list[dict[str, Any]] = []
        btc: dict[str, Any] | None = None
        for _ in range(100):  # bounded: count here, 5 s per frame
            frame = await _recv(ws)
            if frame.get("event") != "update":
                continue
            if frame["channel"] == "spot.orders":
                finished = next((o for o in frame["result"] if o["event"] == "finish"), finished)
            elif frame["channel"] == "spot.usertrades":
                trades.extend(frame["result"])
            elif frame["channel"] == "spot.balances":
                btc = next((b for b in frame["result"] if b["currency"] == "BTC"), btc)
            if finished is not None and btc is not None and trades and (
                sum(float(t["amount"]) for t in trades) == pytest.approx(float(buy["filled_amount"]))
            ):
                break
        assert finished is not None and (finished["fee_currency"], finished["fee"]) == ("BTC", buy["fee"])
        assert all(t["fee_currency"] == "BTC" for t in trades), trades
        assert sum(float(t["fee"]) for t in trades) == pytest.approx(fee, rel=1e-12)
        assert btc is not None and float(btc["total"]) == pytest.approx(1.0 + float(buy["filled_amount"]) - fee,
                                                                        abs=1e-12)


async def test_gate_spot_connector_values_a_base_fee_in_quote(server):
    """The connector converts the base fee of a buy to quote (PrivateVenue fills and orders state
    fees in quote): fee BTC x price."""
    async with started(gate_spot(server, KEY, SECRET, UID)) as venue:
        streamed: list[Fill] = []
        venue.subscribe(lambda e: streamed.append(e) if isinstance(e, Fill) else None)
        await wait_for(lambda: venue.balances_stream_live, 5, "the private stream")
        inst = venue.instruments()[SPOT_KEY]
        ask = server.market.books[SPOT_KEY].best()[1]
        assert ask is not None
        req = OrderRequest.create(inst, Side.BUY, 0.003, price_ticks=ask[0] + 2_000,
                                  time_in_force=TimeInForce.IOC, client_order_id="feeq1")
        order = await asyncio.wait_for(venue.place_order(req), 5)
        assert order.status is OrderStatus.FILLED
        # spot.usertrades (pushed) and /spot/my_trades (REST) both parse to quote-valued fees
        await wait_for(lambda: sum(f.qty for f in streamed if f.client_order_id == "feeq1") == pytest.approx(0.003),
                       5, "the buy's fills on the stream")
        rest_fills = await asyncio.wait_for(venue.fills(SPOT_KEY), 5)
        for mine in ([f for f in streamed if f.client_order_id == "feeq1"],
                     [f for f in rest_fills if f.client_order_id == "feeq1"]):
            assert sum(f.qty for f in mine) == pytest.approx(0.003)
            assert all(f.fee == pytest.approx(RATE * f.qty * f.price, rel=1e-9) for f in mine), mine
            # the base part of the fee, base units: what the account did not receive
            assert all(f.fee_base == pytest.approx(RATE * f.qty, rel=1e-9) for f in mine), mine
        got = await asyncio.wait_for(venue.get_order(SPOT_KEY, "feeq1"), 5)
        assert got is not None
        assert got.fees == pytest.approx(RATE * got.filled_qty * got.avg_fill_price, rel=1e-9)
        bal = await asyncio.wait_for(venue.balances(), 5)
        assert bal["BTC"].free == pytest.approx(1.0 + 0.003 * (1 - RATE), abs=1e-12)
        assert GATE_SPOT.maker_fee == GATE_SPOT.taker_fee == RATE


async def test_gate_spot_position_follows_the_base_received_net_of_the_fee(server):
    """The order manager's position after a Gate spot buy equals the BTC the account actually
    received (qty - fee in base), so a strategy that sells its whole position back sells what it
    holds; PnL stays exact: the fee is counted once (in fees), not again in the mark-to-market."""
    from cexarb.clock import LiveClock
    from cexarb.execution import OrderManager

    async with started(gate_spot(server, KEY, SECRET, UID)) as venue:
        await wait_for(lambda: venue.balances_stream_live, 5, "the private stream")
        inst = venue.instruments()[SPOT_KEY]
        before = (await asyncio.wait_for(venue.balances(), 5))["BTC"].total
        om = OrderManager(LiveClock(), {inst.venue: venue}, venue.book)
        await wait_for(lambda: venue.book(SPOT_KEY).is_valid, 5, "the book in sync (the risk check reads it)")
        ask = server.market.books[SPOT_KEY].best()[1]
        assert ask is not None
        req = OrderRequest.create(inst, Side.BUY, 0.004, price_ticks=ask[0] + 2_000,
                                  time_in_force=TimeInForce.IOC, client_order_id="feepos1")
        order = await asyncio.wait_for(om.submit(req), 5)
        await wait_for(lambda: om.orders["feepos1"].filled_qty == pytest.approx(0.004)
                       and sum(f.qty for f in om.fills_of("feepos1")) == pytest.approx(0.004), 5, "the buy's fills")
        assert order.status is OrderStatus.FILLED
        after = (await asyncio.wait_for(venue.balances(), 5))["BTC"].total
        pos = om.positions[SPOT_KEY]
        assert pos.qty == pytest.approx(after - before, abs=1e-12)
        assert pos.qty == pytest.approx(0.004 * (1 - RATE), abs=1e-12)
        fills = om.fills_of("feepos1")
        vwap = sum(f.price * f.qty for f in fills) / sum(f.qty for f in fills)
        assert pos.avg_price == pytest.approx(vwap, rel=1e-12)
        # marked at the entry price the net PnL is minus the fee exactly (counted once)
        assert pos.unrealized_pnl(vwap) - pos.fees == pytest.approx(-RATE * 0.004 * vwap, rel=1e-9)
