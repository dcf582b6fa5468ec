"""The loopback server's ``partial_fill`` fault caps the faulted order only.

Review (``/tmp/s10/review/partial_fault.py``): the fault used to withhold liquidity by recording
it as consumed (``ConsumedLiquidity.consume``). Since liquidity our orders took stays taken until
the recorded level changes, that record outlived the faulted order: with asks 100.00 x 1.0, a
faulted IOC buy of 0.2 filled 0.1, and after a bid-only depth message an unfaulted IOC buy of 1.0
at 100.00 got nothing although 0.9 was left. Here the same against the real loopback server
(Gate spot connector, REST orders), on a paused market whose levels the test sets itself. Every
wait is bounded.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from cexarb.model import OrderStatus, Side, TimeInForce
from cexarb.venues.base import OrderRequest
from cexarb.venues.sim.server import AccountSpec
from loopback import gate_spot, sim_server, started

KEY, SECRET, UID = "gate-key-pf", "gate-secret-pf", 10001
SPOT_KEY = "gateio-spot:BTC_USDT"


@pytest.fixture
async def server(binance_dir):
    async with sim_server(binance_dir, AccountSpec(api_key=KEY, api_secret=SECRET, uid=UID)) as srv:
        yield srv


@pytest.fixture
async def venue(server):
    async with started(gate_spot(server, KEY, SECRET, UID)) as conn:
        await conn.wait_synced(SPOT_KEY, 10)
        yield conn


def _depth(server, bids: list[tuple[int, float]], asks: list[tuple[int, float]]) -> None:
    """One depth change of the served book (venue ticks, qty), as the market's feed applies it."""
    server.market.books[SPOT_KEY]._apply(bids, asks, int(time.time() * 1000))


async def _buy(venue, qty: float, ticks: int, coid: str, tif: TimeInForce = TimeInForce.IOC):
    inst = venue.instruments()[SPOT_KEY]
    request = OrderRequest.create(inst, Side.BUY, qty, price_ticks=ticks, time_in_force=tif, client_order_id=coid)
    return await asyncio.wait_for(venue.place_order(request), 5)


async def _faulted_ioc(server, venue) -> tuple[int, int]:
    """Asks a0 x 0.01, a0+1 x 0.01, a0+2 x 0.05; a faulted (0.5) IOC buy 0.004 up to a0+2 fills
    0.002 at a0. Returns (best bid ticks, a0)."""
    server.market.paused = True  # the recording stands still: only our depth changes below
    book = server.market.books[SPOT_KEY]
    (bid, _), (a0, _) = book.best()
    _depth(server, [], [(a0, 0.01), (a0 + 1, 0.01), (a0 + 2, 0.05)])
    server.faults.partial_fill("gateio-spot", 0.5)
    faulted = await _buy(venue, 0.004, a0 + 2, "faulted")  # could take 0.004 at a0: finds half
    assert faulted.status is OrderStatus.CANCELED and faulted.filled_qty == pytest.approx(0.002)
    return bid, a0


async def test_withheld_liquidity_is_there_for_the_next_order_after_a_bid_only_message(server, venue):
    bid, a0 = await _faulted_ioc(server, venue)
    _depth(server, [(bid - 5, 0.5)], [])  # a bid-only depth message: the asks are unchanged
    nxt = await _buy(venue, 0.02, a0 + 1, "next")  # no fault armed
    # a0: 0.01 recorded, 0.002 ours already -> 0.008; a0 + 1: all 0.01 (the old code: nothing)
    assert nxt.filled_qty == pytest.approx(0.018), nxt
    assert nxt.status is OrderStatus.CANCELED  # IOC: the 0.002 beyond a0 + 1 is not there
    # what we took stays ours (the consumed-liquidity rule): nothing more up to a0 + 1
    _depth(server, [(bid - 6, 0.5)], [])
    again = await _buy(venue, 0.001, a0 + 1, "again")
    assert again.status is OrderStatus.CANCELED and again.filled_qty == 0.0


async def test_withheld_liquidity_is_there_for_the_next_order_in_the_same_book_version(server, venue):
    _, a0 = await _faulted_ioc(server, venue)
    same = await _buy(venue, 0.01, a0, "same-version")  # no depth message since the faulted order
    assert same.status is OrderStatus.CANCELED and same.filled_qty == pytest.approx(0.008)


async def test_partial_fill_fault_on_a_gtc_order_rests_the_rest(server, venue):
    server.market.paused = True
    book = server.market.books[SPOT_KEY]
    _, (a0, _) = book.best()
    _depth(server, [], [(a0, 0.01)])
    server.faults.partial_fill("gateio-spot", 0.5)
    gtc = await _buy(venue, 0.004, a0, "gtc", TimeInForce.GTC)
    assert gtc.status is OrderStatus.PARTIALLY_FILLED and gtc.filled_qty == pytest.approx(0.002)
    assert [o.client_order_id for o in await asyncio.wait_for(venue.open_orders(SPOT_KEY), 5)] == ["gtc"]
    # what the rest was denied stays out of reach while a0 is unchanged (else the rest itself
    # would fill from it at the next message): an unfaulted IOC finds nothing at a0 either
    ioc = await _buy(venue, 0.01, a0, "ioc")
    assert ioc.filled_qty == 0.0
    assert await asyncio.wait_for(venue.cancel_order(SPOT_KEY, "gtc"), 5) is True


async def test_a_gtc_rest_does_not_fill_from_the_liquidity_it_was_denied(server, venue):
    """After the faulted GTC rests, a depth message that leaves the asks as they were (here a
    bid-only one) must not fill the rest from the same asks as a maker."""
    server.market.paused = True
    book = server.market.books[SPOT_KEY]
    (bid, _), (a0, _) = book.best()
    _depth(server, [], [(a0, 0.01)])
    server.faults.partial_fill("gateio-spot", 0.5)
    gtc = await _buy(venue, 0.004, a0, "gtc", TimeInForce.GTC)
    assert gtc.filled_qty == pytest.approx(0.002)
    _depth(server, [(bid - 5, 0.5)], [])
    await asyncio.sleep(0.3)
    got = await asyncio.wait_for(venue.get_order(SPOT_KEY, "gtc"), 5)
    assert got.status is OrderStatus.PARTIALLY_FILLED and got.filled_qty == pytest.approx(0.002)
    assert await asyncio.wait_for(venue.cancel_order(SPOT_KEY, "gtc"), 5) is True
