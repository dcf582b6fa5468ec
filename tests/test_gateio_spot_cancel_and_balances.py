"""Gate spot connector against the loopback simulator: a cancel whose first attempt went through
but whose answer was lost (the retry hears "order closed") still reports True; ``spot.balances``
pushes keep a per-currency cache equal to the REST balances. Every wait is bounded."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from cexarb.model import Balance, Fill, OrderStatus, Side, TimeInForce
from cexarb.venues.base import OrderRequest
from cexarb.venues.sim.faults import Fault, FaultKind
from cexarb.venues.sim.server import AccountSpec
from cexarb.venues.ws import WsFrame
from loopback import gate_spot, sim_server, started, wait_for

KEY, SECRET, UID = "gate-key-1", "gate-secret-1", 10001
SPOT_KEY = "gateio-spot:BTC_USDT"
VENUE = "gateio-spot"


@pytest.fixture
async def server(binance_dir):
    async with sim_server(binance_dir, AccountSpec(api_key=KEY, api_secret=SECRET, uid=UID)) as srv:
        yield srv


@pytest.fixture
async def venue(server):
    async with started(gate_spot(server, KEY, SECRET, UID)) as conn:
        yield conn


def _resting(venue, server, cid: str) -> OrderRequest:
    inst = venue.instruments()[SPOT_KEY]
    bid = server.market.books[SPOT_KEY].best()[0]
    return OrderRequest.create(inst, Side.BUY, 0.001, price_ticks=bid[0] - 20_000, client_order_id=cid)


async def test_cancel_executed_but_its_answer_lost_is_retried_and_reports_true(server, venue):
    order = await asyncio.wait_for(venue.place_order(_resting(venue, server, "lost1")), 5)
    assert order.status is OrderStatus.NEW
    # the simulator executes the cancel, then drops the connection instead of answering: the
    # idempotent cancel goes again and hears ORDER_CLOSED
    fault = server.faults.arm(
        Fault(venue=VENUE, kind=FaultKind.LOSE_ACK, path_prefix="/api/v4/spot/orders/t-lost1")
    )
    assert await asyncio.wait_for(venue.cancel_order(SPOT_KEY, "lost1"), 5) is True
    assert fault.fired == 1 and fault not in server.faults.armed
    assert venue._orders["lost1"].status is OrderStatus.CANCELED  # the queried state was applied
    got = await asyncio.wait_for(venue.get_order(SPOT_KEY, "lost1"), 5)
    assert got is not None and got.status is OrderStatus.CANCELED
    # a later cancel of an order we know is cancelled: False, as before
    assert await asyncio.wait_for(venue.cancel_order(SPOT_KEY, "lost1"), 5) is False
    # an order that was never placed: False
    assert await asyncio.wait_for(venue.cancel_order(SPOT_KEY, "nosuch"), 5) is False


async def test_cancel_of_an_order_that_filled_reports_false(server, venue):
    """Not-open because it filled (our tracked copy still open): the check finds FILLED -> False."""
    inst = venue.instruments()[SPOT_KEY]
    ask = server.market.books[SPOT_KEY].best()[1]
    req = OrderRequest.create(
        inst, Side.BUY, 0.001, price_ticks=ask[0] + 2_000, time_in_force=TimeInForce.IOC, client_order_id="gone1"
    )
    assert (await asyncio.wait_for(venue.place_order(req), 5)).status is OrderStatus.FILLED
    venue._orders["gone1"].status = OrderStatus.NEW  # as if the fill had not reached us yet
    assert await asyncio.wait_for(venue.cancel_order(SPOT_KEY, "gone1"), 5) is False
    assert venue._orders["gone1"].status is OrderStatus.FILLED


async def test_balance_pushes_keep_a_cache_equal_to_the_rest_balances(server, venue):
    events: list[object] = []
    venue.subscribe(events.append)
    await venue.wait_synced(SPOT_KEY, 10)
    await wait_for(lambda: venue.balances_stream_live, 5, "spot.balances subscribed")
    assert venue.cached_balances() == {}  # nothing pushed or read yet
    # REST fills the cache while the stream is live
    rest = await asyncio.wait_for(venue.balances(), 5)
    assert venue.cached_balances() == rest and rest["BTC"].free == 1.0

    # a resting order locks quote: the push moves USDT to locked
    pushes = venue.balance_pushes
    assert (await asyncio.wait_for(venue.place_order(_resting(venue, server, "lock1")), 5)).status is OrderStatus.NEW
    await wait_for(lambda: venue.cached_balances()["USDT"].locked > 0, 5, "a locking push")
    assert venue.balance_pushes > pushes

    # a taker order fills: BTC and USDT pushes arrive; the cache equals the simulator's REST answer
    inst = venue.instruments()[SPOT_KEY]
    ask = server.market.books[SPOT_KEY].best()[1]
    req = OrderRequest.create(
        inst, Side.BUY, 0.002, price_ticks=ask[0] + 2_000, time_in_force=TimeInForce.IOC, client_order_id="bal1"
    )
    assert (await asyncio.wait_for(venue.place_order(req), 5)).status is OrderStatus.FILLED
    await wait_for(
        lambda: any(isinstance(e, Fill) and e.client_order_id == "bal1" for e in events)
        # the buy's fee is taken from the BTC received (Gate: fee_currency is the base)
        and venue.cached_balances()["BTC"].free == pytest.approx(1.002 - 0.002 * inst.taker_fee, abs=1e-12),
        5,
        "the fill's balance push",
    )
    rest = await asyncio.wait_for(venue.balances(), 5)
    cached = venue.cached_balances()
    for currency in ("BTC", "USDT"):
        assert (cached[currency].free, cached[currency].locked) == (rest[currency].free, rest[currency].locked), currency
    assert cached["USDT"].free < 100_000.0 - 0.002 * server.market.books[SPOT_KEY].price(ask[0])

    # the private stream drops: the cache is emptied (a push may be lost), refilled after
    assert server.faults.close_sockets(VENUE) >= 2
    await wait_for(lambda: not venue.balances_stream_live or venue.private_reconnects >= 1, 5, "stream lost")
    await wait_for(lambda: venue.private_reconnects >= 1 and venue.balances_stream_live, 10, "stream back")
    rest = await asyncio.wait_for(venue.balances(), 5)
    assert venue.cached_balances() == rest


def test_the_documented_push_fills_the_cache(data_dir: Path):
    """The official docs' ``spot.balances`` example (no captured traffic exists: an illustrative
    payload written by Gate, ``docs_examples/gate_spot_ws_examples.json``) decodes into the cache;
    ``freeze`` is the locked amount."""
    from cexarb.venues.gateio.spot import GateSpot
    from cexarb.venues.secrets import ApiCredentials

    path = data_dir / "api" / "gateio" / "docs_examples" / "gate_spot_ws_examples.json"
    if not path.is_file():
        pytest.skip(f"Gate docs examples not found at {path}")
    frames = [e["json"] for e in json.loads(path.read_text())["examples"] if e.get("json", {}).get("channel") == "spot.balances"]
    assert frames
    venue = GateSpot(ApiCredentials("k", "s"), rest_url="http://127.0.0.1:9")
    venue._on_private_event(WsFrame(json.dumps(frames[0]), time.time_ns(), 1))
    assert venue.cached_balances() == {"USDT": Balance(asset="USDT", free=222244.3827, locked=5.0)}
    assert venue.balance_pushes == 1
