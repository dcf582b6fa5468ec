"""Fills missed while the private stream was down exist only in REST: a backfill after the
reconnect that fails (5xx beyond the REST client's retries) must be retried in the background
until it succeeds -- not dropped until some later reconnect -- with
``private_backfill_pending`` telling the caller the private state is incomplete meanwhile, and
every fill delivered exactly once.

Gate spot and MEXC spot on the real loopback simulator (``close_sockets`` + ``http_error`` on the
venue's my-trades route); every wait bounded.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from cexarb.model import Fill, OrderStatus, Side, TimeInForce
from cexarb.venues.base import OrderRequest
from cexarb.venues.sim.server import AccountSpec
from cexarb.venues.ws import Backoff
from loopback import gate_spot, mexc_spot, sim_server, started, wait_for

GATE_KEY, GATE_SECRET, GATE_UID = "gate-key-1", "gate-secret-1", 10001
MEXC_KEY, MEXC_SECRET = "mx-key-1", "mx-secret-1"
# the private stream reconnects 0.5 s after the drop: the order placed meanwhile fills unseen
SLOW_RECONNECT = Backoff(initial_s=0.5, max_s=0.5)

CASES = {
    "gateio-spot": ("gateio-spot:BTC_USDT", 2_000, "/api/v4/spot/my_trades"),
    "mexc-spot": ("mexc-spot:BTCUSDT", 20_000, "/api/v3/myTrades"),
}


def _venue(name: str, server: Any) -> Any:
    if name == "gateio-spot":
        return gate_spot(server, GATE_KEY, GATE_SECRET, GATE_UID, backoff=SLOW_RECONNECT)
    return mexc_spot(server, MEXC_KEY, MEXC_SECRET, backoff=SLOW_RECONNECT)


@pytest.mark.parametrize("name", list(CASES))
async def test_failed_backfill_is_retried_until_the_missed_fill_is_delivered(binance_dir: Path, name: str) -> None:
    key, take_ticks, trades_path = CASES[name]
    accounts = (
        AccountSpec(api_key=GATE_KEY, api_secret=GATE_SECRET, uid=GATE_UID),
        AccountSpec(api_key=MEXC_KEY, api_secret=MEXC_SECRET),
    )
    async with sim_server(binance_dir, *accounts) as server:
        venue = _venue(name, server)
        async with started(venue):
            venue.backfill_retry_initial_s = 0.1
            venue.backfill_retry_max_s = 0.3
            await venue.wait_synced(key, 5)
            assert venue.private_backfill_pending is False
            fills: list[Fill] = []
            venue.subscribe(lambda e: fills.append(e) if isinstance(e, Fill) else None)
            reconnects = venue.private_reconnects
            # every my-trades request fails (each REST retry too) until the fault is disarmed
            fault = server.faults.http_error(name, 503, count=10_000, path_prefix=trades_path)
            assert server.faults.close_sockets(name) >= 1
            inst = venue.instruments()[key]
            ask = server.market.books[key].best()[1]
            take = OrderRequest.create(
                inst, Side.BUY, 0.001, price_ticks=ask[0] + take_ticks,
                time_in_force=TimeInForce.IOC, client_order_id="bfr1",
            )
            order = await asyncio.wait_for(venue.place_order(take), 3)
            assert order.status is not OrderStatus.REJECTED
            await wait_for(lambda: venue.private_reconnects > reconnects, 5, "the private stream back")
            # the backfill after the reconnect failed, more than once: still owed, still pending
            await wait_for(lambda: venue.backfill_failures >= 2, 3, "failed backfill attempts")
            assert venue.private_backfill_pending is True
            assert [f for f in fills if f.client_order_id == "bfr1"] == []
            # REST healthy again (the stream stays up and never re-sends the fill): the retried
            # backfill delivers it, once
            assert server.faults.disarm(fault)
            await wait_for(lambda: any(f.client_order_id == "bfr1" for f in fills), 3, "the missed fill")
            await wait_for(lambda: not venue.private_backfill_pending, 3, "the backfill done")
            await asyncio.sleep(0.3)  # a duplicate (another pass, a late push) would show by now
            mine = [f for f in fills if f.client_order_id == "bfr1"]
            assert len(mine) == len({f.fill_id for f in mine}) >= 1
            assert sum(f.qty for f in mine) == pytest.approx(0.001)
            assert venue.backfilled_fills == len(mine)
        # stopped with the connector: no backfill task left running
        assert all(t.done() for t in venue._tasks)
