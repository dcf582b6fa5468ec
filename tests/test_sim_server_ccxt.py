"""A third-party client on the loopback simulator: ccxt (PyPI) pointed at the server's URLs must
load markets, fetch the book and balance, create / cancel / list orders and watch the book on
MEXC spot, Gate spot and Gate USDT futures. Skipped when ccxt is not installed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cexarb.venues.sim.server import AccountSpec, SimServer

ccxtpro = pytest.importorskip("ccxt.pro")

KEY, SECRET = "ccxt-key", "ccxt-secret"


@pytest.fixture
async def server(binance_dir):
    srv = SimServer(binance_dir, [AccountSpec(api_key=KEY, api_secret=SECRET)])
    await asyncio.wait_for(srv.start(), 30)
    try:
        yield srv
    finally:
        await asyncio.wait_for(srv.stop(), 30)


def _point(obj: Any, url: str) -> Any:
    if isinstance(obj, dict):
        return {k: _point(v, url) for k, v in obj.items()}
    return url if isinstance(obj, str) else obj


def gate_client(srv: SimServer) -> Any:
    ex = ccxtpro.gate({"apiKey": KEY, "secret": SECRET, "enableRateLimit": False, "timeout": 10_000})
    rest = srv.base_url + "/api/v4"
    ex.urls["api"] = {
        "public": _point(ex.urls["api"]["public"], rest),
        "private": _point(ex.urls["api"]["private"], rest),
        "spot": srv.ws_base_url + "/ws/v4/",
        "swap": {
            "usdt": srv.ws_base_url + "/v4/ws/usdt",
            "btc": srv.ws_base_url + "/v4/ws/btc",
        },
    }
    return ex


def mexc_client(srv: SimServer) -> Any:
    ex = ccxtpro.mexc({"apiKey": KEY, "secret": SECRET, "enableRateLimit": False, "timeout": 10_000})
    ex.urls["api"]["spot"] = {"public": srv.base_url, "private": srv.base_url}
    ex.urls["api"]["contract"] = {
        "public": srv.base_url + "/api/v1/contract",
        "private": srv.base_url + "/api/v1/private",
    }
    ex.urls["api"]["ws"] = {
        "spot": srv.ws_base_url + "/ws",
        "swap": srv.ws_base_url + "/edge",
    }
    return ex


async def _exercise(ex: Any, symbol: str, amount: float, balance_params: dict[str, Any]) -> None:
    w = asyncio.wait_for
    markets = await w(ex.load_markets(), 20)
    assert symbol in markets
    book = await w(ex.fetch_order_book(symbol, 10), 10)
    best_bid, best_ask = book["bids"][0][0], book["asks"][0][0]
    assert best_bid < best_ask and book["nonce"]
    balance = await w(ex.fetch_balance(balance_params), 10)
    assert balance["free"]["USDT"] == pytest.approx(100_000.0)
    price = float(ex.price_to_precision(symbol, best_bid * 0.97))
    order = await w(ex.create_order(symbol, "limit", "buy", amount, price), 10)
    open_orders = await w(ex.fetch_open_orders(symbol), 10)
    assert [o["id"] for o in open_orders] == [order["id"]]
    canceled = await w(ex.cancel_order(order["id"], symbol), 10)
    assert canceled["id"] == order["id"]
    assert await w(ex.fetch_open_orders(symbol), 10) == []
    nonces = []
    for _ in range(3):
        watched = await w(ex.watch_order_book(symbol), 40)
        assert watched["bids"][0][0] < watched["asks"][0][0]
        nonces.append(watched["nonce"])
    assert nonces == sorted(nonces)


async def test_ccxt_mexc_spot(server):
    ex = mexc_client(server)
    try:
        await _exercise(ex, "BTC/USDT", 0.001, {})
    finally:
        await ex.close()


async def test_ccxt_gate_spot(server):
    ex = gate_client(server)
    try:
        await _exercise(ex, "BTC/USDT", 0.001, {})
    finally:
        await ex.close()


async def test_ccxt_gate_usdt_futures(server):
    ex = gate_client(server)
    try:
        await _exercise(ex, "BTC/USDT:USDT", 1, {"type": "swap"})
        order = await asyncio.wait_for(ex.create_order("BTC/USDT:USDT", "market", "sell", 3), 10)
        assert order["status"] == "closed" and order["filled"] == 3
        positions = await asyncio.wait_for(ex.fetch_positions(["BTC/USDT:USDT"]), 10)
        assert positions[0]["contracts"] == 3 and positions[0]["side"] == "short"
    finally:
        await ex.close()
