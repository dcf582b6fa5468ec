"""Gate spot connector against the loopback simulator: with the client-side limiter configured
from Gate's published limits (``GATE_SPOT_LIMITS``, the connector's default) the client paces
orders (10/s per UID and market), queries by id (200/10 s per endpoint: the route
``/spot/orders/{order_id}``, not one window per id) and cancels so that the simulator, which
counts the same way, never answers 429. Without the limiter the same burst is refused (the
control). Every loop is bounded in count; every wait in time."""

from __future__ import annotations

import asyncio
import time

import pytest
from cexarb.model import OrderStatus, Side
from cexarb.venues.base import OrderRequest
from cexarb.venues.ratelimit import GATE_SPOT_LIMITS, EndpointClass
from cexarb.venues.sim.server import AccountSpec
from loopback import gate_spot, sim_server, started

KEY, SECRET, UID = "gate-key-1", "gate-secret-1", 10001
SPOT_KEY = "gateio-spot:BTC_USDT"
N_ORDERS = 25  # > 2 x the 10/s placement window: the client must wait twice


@pytest.fixture
async def server(binance_dir):
    async with sim_server(binance_dir, AccountSpec(api_key=KEY, api_secret=SECRET, uid=UID)) as srv:
        yield srv


def _resting(venue, server, i: int) -> OrderRequest:
    inst = venue.instruments()[SPOT_KEY]
    bid = server.market.books[SPOT_KEY].best()[0]
    return OrderRequest.create(inst, Side.BUY, 0.001, price_ticks=bid[0] - 20_000 - i, client_order_id=f"pace{i}")


async def test_client_limiter_from_published_limits_never_draws_a_429(server):
    assert server.gate.rate_limited == 0
    async with started(gate_spot(server, KEY, SECRET, UID, order_timeout_s=5.0)) as venue:
        limiter = venue._limiter
        assert limiter is not None and limiter.limits is GATE_SPOT_LIMITS and limiter.scale == 1.0
        t0 = time.monotonic()
        for i in range(N_ORDERS):  # one after the other: each leaves when the limiter has a slot
            order = await asyncio.wait_for(venue.place_order(_resting(venue, server, i)), 5)
            assert order.status is OrderStatus.NEW, (i, order.status, order.reject_reason)
        assert time.monotonic() - t0 >= 1.9  # 25 orders at 10/s: two full-window waits
        for i in range(N_ORDERS):  # 25 different ids: one endpoint, one window
            got = await asyncio.wait_for(venue.get_order(SPOT_KEY, f"pace{i}"), 5)
            assert got is not None and got.status is OrderStatus.NEW
        used = 1.0 - limiter.headroom(EndpointClass.PRIVATE, endpoint="/api/v4/spot/orders/t-anything")
        assert used == pytest.approx(N_ORDERS / 200)  # every query counted in the template's window
        for i in range(N_ORDERS):
            assert await asyncio.wait_for(venue.cancel_order(SPOT_KEY, f"pace{i}"), 5) is True
        assert await asyncio.wait_for(venue.open_orders(SPOT_KEY), 5) == []
    assert server.gate.rate_limited == 0, "the simulator answered 429 although the client paced"


async def test_without_the_client_limiter_the_same_burst_draws_429s(server):
    """The control: the simulator does enforce the 10/s per UID+market, so the test above means
    something."""
    async with started(gate_spot(server, KEY, SECRET, UID, enforce_rate_limits=False)) as venue:
        orders = [
            await asyncio.wait_for(venue.place_order(_resting(venue, server, i)), 5) for i in range(N_ORDERS)
        ]
        refused = [o for o in orders if o.status is OrderStatus.REJECTED]
        # 25 orders in well under a second span at most two 1 s windows: >= 5 are over
        assert len(refused) >= N_ORDERS - 20, [o.status for o in orders]
        assert all(o.reject_reason == "TOO_MANY_REQUESTS" for o in refused), {o.reject_reason for o in refused}
        assert server.gate.rate_limited == len(refused)
        await asyncio.wait_for(venue.cancel_all(SPOT_KEY), 5)
