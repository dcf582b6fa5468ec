"""A third-party client on the loopback simulator: ccxt (PyPI) pointed at the server's URLs must
load markets, fetch the book and balance, create / cancel / list orders and watch the book on
MEXC spot, Gate spot and Gate USDT futures. Skipped when ccxt is not installed."""

from __future__ import annotations

import asyncio
import itertools
import time
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


def _server_top(srv: SimServer, key: str, n: int) -> tuple[list[list[float]], list[list[float]]]:
    """The simulator's best ``n`` levels a side as ccxt parses them: ``[price, amount]`` floats of
    the exact decimal strings the venue sends (prices on the tick grid, contracts as integers)."""
    book = srv.market.books[key]
    bids, asks = book.top(n)
    return (
        [[book.price(t), float(book.qty_str(q))] for t, q in bids],
        [[book.price(t), float(book.qty_str(q))] for t, q in asks],
    )


async def _paused_quiet(srv: SimServer, ex: Any, symbol: str) -> None:
    """Pause the market replay and wait (bounded) until ccxt's local book has taken the last
    pushes: its nonce unchanged over 0.5 s."""
    srv.market.paused = True
    deadline = time.monotonic() + 10.0
    last, since = ex.orderbooks[symbol]["nonce"], time.monotonic()
    for _ in range(200):
        assert time.monotonic() < deadline, "ccxt's book kept changing after the pause"
        await asyncio.sleep(0.05)
        nonce = ex.orderbooks[symbol]["nonce"]
        if nonce != last:
            last, since = nonce, time.monotonic()
        elif time.monotonic() - since >= 0.5:
            return
    raise AssertionError("ccxt's book kept changing after the pause")


async def _exercise(
    ex: Any, srv: SimServer, symbol: str, key: str, amount: float, balance_params: dict[str, Any], *, ack_status: Any
) -> None:
    """``ack_status``: the status ccxt parses from the placement reply (MEXC's POST /order
    answers no status, PROTOCOLS.md §1.2; a query then says open)."""
    w = asyncio.wait_for
    markets = await w(ex.load_markets(), 20)
    assert symbol in markets
    book = srv.market.books[key]
    # the REST book equals the simulator's, level for level, while the replay is paused
    srv.market.paused = True
    try:
        fetched = await w(ex.fetch_order_book(symbol, 10), 10)
        assert (fetched["bids"], fetched["asks"]) == _server_top(srv, key, 10)
        assert fetched["nonce"] == book.update_id
    finally:
        srv.market.paused = False
    best_bid = fetched["bids"][0][0]
    balance = await w(ex.fetch_balance(balance_params), 10)
    assert balance["free"]["USDT"] == pytest.approx(100_000.0)
    price = float(ex.price_to_precision(symbol, best_bid * 0.97))
    order = await w(ex.create_order(symbol, "limit", "buy", amount, price), 10)
    assert order["id"] and order["status"] == ack_status
    assert (order["side"], order["type"], order["amount"], order["price"]) == ("buy", "limit", amount, price)
    queried = await w(ex.fetch_order(order["id"], symbol), 10)
    assert (queried["status"], queried["amount"], queried["price"], queried["filled"]) == ("open", amount, price, 0)
    open_orders = await w(ex.fetch_open_orders(symbol), 10)
    assert [(o["id"], o["status"], o["amount"], o["price"]) for o in open_orders] == [(order["id"], "open", amount, price)]
    canceled = await w(ex.cancel_order(order["id"], symbol), 10)
    assert (canceled["id"], canceled["status"]) == (order["id"], "canceled")
    queried = await w(ex.fetch_order(order["id"], symbol), 10)
    assert (queried["status"], queried["filled"]) == ("canceled", 0)
    assert await w(ex.fetch_open_orders(symbol), 10) == []
    # the watched book: after the first (synced) book every update a later nonce, then, once the
    # replay pauses, the simulator's book level for level. The first push after MEXC's REST
    # snapshot may start at the snapshot's lastUpdateId and ccxt's MEXC nonce is a push's
    # fromVersion: that one may repeat the snapshot's nonce, so it is only >=
    deadline = time.monotonic() + 60.0
    synced = (await w(ex.watch_order_book(symbol), 40))["nonce"]
    nonces: list[int] = []
    for _ in range(5):
        watched = await w(ex.watch_order_book(symbol), max(0.1, deadline - time.monotonic()))
        assert watched["bids"][0][0] < watched["asks"][0][0]
        nonces.append(watched["nonce"])
    assert synced <= nonces[0] and all(a < b for a, b in itertools.pairwise(nonces)), (synced, nonces)
    try:
        await _paused_quiet(srv, ex, symbol)
        local = ex.orderbooks[symbol]
        assert ([list(x) for x in local["bids"][:10]], [list(x) for x in local["asks"][:10]]) == _server_top(srv, key, 10)
        if key.startswith("gateio"):
            assert local["nonce"] == book.update_id  # Gate: ccxt's nonce is the push's last id
    finally:
        srv.market.paused = False


def _mexc_straddle_fix(ex: Any) -> None:
    """ccxt 4.5.x syncs MEXC's aggregated depth by ``fromVersion`` only: the push that straddles
    the REST snapshot (``fromVersion <= lastUpdateId < toVersion``, the one PROTOCOLS.md §1.6
    says to start at) is dropped whole, and with it the changes after the snapshot, so its book
    can keep a stale level for good. Apply that push (its levels are absolute)."""
    apply_delta = ex.handle_book_delta

    def version(d: Any, name: str) -> int | None:
        return ex.safe_integer(d, name)

    def get_cache_index(orderbook: Any, cache: list[Any]) -> int:
        nonce = ex.safe_integer(orderbook, "nonce")
        if nonce is None or not cache or (version(cache[0], "fromVersion") or 0) > nonce + 1:
            return -1
        return next((i for i, d in enumerate(cache) if (version(d, "toVersion") or 0) > nonce), len(cache))

    def handle_book_delta(orderbook: Any, delta: Any) -> None:
        nonce, first = ex.safe_integer(orderbook, "nonce"), version(delta, "fromVersion")
        if nonce is not None and first is not None and first < nonce < (version(delta, "toVersion") or 0):
            delta = {**delta, "fromVersion": str(nonce)}
        apply_delta(orderbook, delta)

    ex.get_cache_index = get_cache_index
    ex.handle_book_delta = handle_book_delta


async def test_ccxt_mexc_spot(server):
    ex = mexc_client(server)
    _mexc_straddle_fix(ex)
    try:
        await _exercise(ex, server, "BTC/USDT", "mexc-spot:BTCUSDT", 0.001, {}, ack_status=None)
    finally:
        await ex.close()


async def test_ccxt_gate_spot(server):
    ex = gate_client(server)
    try:
        await _exercise(ex, server, "BTC/USDT", "gateio-spot:BTC_USDT", 0.001, {}, ack_status="open")
    finally:
        await ex.close()


async def test_ccxt_gate_usdt_futures(server):
    ex = gate_client(server)
    try:
        await _exercise(
            ex, server, "BTC/USDT:USDT", "gateio-futures:BTC_USDT", 1, {"type": "swap"}, ack_status="open"
        )
        order = await asyncio.wait_for(ex.create_order("BTC/USDT:USDT", "market", "sell", 3), 10)
        assert order["status"] == "closed" and order["filled"] == 3
        positions = await asyncio.wait_for(ex.fetch_positions(["BTC/USDT:USDT"]), 10)
        assert positions[0]["contracts"] == 3 and positions[0]["side"] == "short"
    finally:
        await ex.close()
