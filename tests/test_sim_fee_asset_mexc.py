"""MEXC spot fee asset end to end: the MEXC connector against the loopback simulator (127.0.0.1,
port 0). MEXC charges a buy's fee in the base received (``myTrades`` ``commissionAsset`` / private
deal ``feeCurrency`` = the base, PROTOCOLS.md §1.2, §1.5) and a sell's in the quote, so a buy of
``qty`` BTC at the taker rate ``r`` (the simulator's: 0.05 %) gives ``Fill.fee_base = r * qty``
(BTC) and ``Fill.fee = r * qty * price`` (USDT), and the account's BTC rises by ``qty - fee_base``.
Every wait is bounded in time."""

from __future__ import annotations

import asyncio

import pytest
from cexarb.model import Fill, OrderStatus, Side, TimeInForce
from cexarb.venues.base import OrderRequest
from cexarb.venues.sim.market import MEXC_SPOT
from cexarb.venues.sim.server import AccountSpec
from loopback import mexc_spot, sim_server, started, wait_for

KEY, SECRET = "mx-fee-key", "mx-fee-secret"
BOOK_KEY = "mexc-spot:BTCUSDT"


@pytest.fixture
async def server(binance_dir):
    async with sim_server(binance_dir, AccountSpec(api_key=KEY, api_secret=SECRET)) as srv:
        yield srv


def taker(server, inst, side: Side, qty: float, cid: str) -> OrderRequest:
    """An IOC limit 200 USDT through the touch: fills at once, as a taker."""
    bid, ask = server.market.books[BOOK_KEY].best()
    ticks = ask[0] + 20_000 if side is Side.BUY else bid[0] - 20_000
    return OrderRequest.create(inst, side, qty, price_ticks=ticks, time_in_force=TimeInForce.IOC, client_order_id=cid)


async def test_mexc_connector_buy_fee_in_base_sell_fee_in_quote(server):
    async with started(mexc_spot(server, KEY, SECRET)) as venue:
        assert type(venue).buy_fee_in_base is True
        streamed: list[Fill] = []
        venue.subscribe(lambda e: streamed.append(e) if isinstance(e, Fill) else None)
        inst = venue.instruments()[BOOK_KEY]
        rate = inst.taker_fee
        assert rate == MEXC_SPOT.taker_fee == 0.0005
        before = await asyncio.wait_for(venue.balances(), 5)

        order = await asyncio.wait_for(venue.place_order(taker(server, inst, Side.BUY, 0.004, "fb1")), 5)
        await wait_for(lambda: order.status is OrderStatus.FILLED, 5, "the buy filled")
        await wait_for(lambda: sum(f.qty for f in streamed if f.client_order_id == "fb1") == pytest.approx(0.004),
                       5, "the buy's fills on the stream")
        rest_fills = await asyncio.wait_for(venue.fills(BOOK_KEY), 5)
        for mine in ([f for f in streamed if f.client_order_id == "fb1"],
                     [f for f in rest_fills if f.client_order_id == "fb1"]):
            assert mine and sum(f.qty for f in mine) == pytest.approx(0.004)
            assert all(f.fee_base == pytest.approx(rate * f.qty, rel=1e-9) for f in mine), mine
            assert all(f.fee == pytest.approx(rate * f.qty * f.price, rel=1e-9) for f in mine), mine
        fee_base = sum(f.fee_base for f in streamed if f.client_order_id == "fb1")
        after = await asyncio.wait_for(venue.balances(), 5)
        assert after["BTC"].total - before["BTC"].total == pytest.approx(0.004 - fee_base, abs=1e-12)
        paid = sum(f.price * f.qty for f in streamed if f.client_order_id == "fb1")
        assert before["USDT"].total - after["USDT"].total == pytest.approx(paid, abs=1e-6)  # the notional only

        sell = await asyncio.wait_for(venue.place_order(taker(server, inst, Side.SELL, 0.002, "fs1")), 5)
        await wait_for(lambda: sell.status is OrderStatus.FILLED, 5, "the sell filled")
        await wait_for(lambda: sum(f.qty for f in streamed if f.client_order_id == "fs1") == pytest.approx(0.002),
                       5, "the sell's fills on the stream")
        sells = [f for f in streamed if f.client_order_id == "fs1"]
        assert all(f.fee_base == 0.0 and f.fee == pytest.approx(rate * f.qty * f.price, rel=1e-6) for f in sells)
        final = await asyncio.wait_for(venue.balances(), 5)
        assert final["BTC"].total == pytest.approx(after["BTC"].total - 0.002, abs=1e-12)
        got = sum(f.price * f.qty for f in sells)
        assert final["USDT"].total == pytest.approx(after["USDT"].total + got * (1 - rate), abs=1e-6)
