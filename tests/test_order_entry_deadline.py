"""An order written inline on the prepared fast path (:meth:`OrderEntryClient.start_request`,
Gate's signed orders) must carry its deadline: when no deadline timer is pending at the write, the
inline branch arms one, so a venue that never answers ends the request outcome-unknown within
``request_timeout_s`` and frees the connection.

Real aiohttp server / real loopback simulator on 127.0.0.1, real event loop; every wait bounded.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

from aiohttp import web
from cexarb.model import OrderStatus, Side
from cexarb.venues import rest
from cexarb.venues.base import OrderRequest
from cexarb.venues.gateio.signing import GateSigner
from cexarb.venues.order_entry import OrderEntryClient
from cexarb.venues.secrets import ApiCredentials
from cexarb.venues.sim.server import AccountSpec
from loopback import gate_spot, serve, sim_server, started, wait_for

PATH = "/api/v4/spot/orders"
BODY = b'{"currency_pair":"BTC_USDT","side":"buy","amount":"0.001","price":"60000.5","text":"t-dl1"}'
GATE_KEY, GATE_SECRET, GATE_UID = "gate-key-1", "gate-secret-1", 10001


async def test_inline_prepared_order_write_arms_its_deadline() -> None:
    state = {"hang_s": 0.0, "orders": 0}

    async def order(request: web.Request) -> web.Response:
        state["orders"] += 1
        await request.read()
        await asyncio.sleep(state["hang_s"])
        return web.json_response({"id": "1"}, status=201)

    app = web.Application()
    app.router.add_post(PATH, order)
    async with serve(app) as url:
        auth = rest.GateAuth(GateSigner(ApiCredentials("k", "s")))
        oe = OrderEntryClient("gateio-spot", url, auth=auth, error_mapper=rest.gate_error, request_timeout_s=0.3)
        async with oe:
            first = await asyncio.wait_for(oe.start_request("POST", PATH, (), BODY), 2)
            assert first.status == 201 and ("POST", PATH) in oe._prepared  # the next one goes inline
            # the first request's deadline timer fires and finds nothing in flight: none pending now
            await wait_for(lambda: oe._sweep_timer is None and oe._sweep_at == math.inf, 2, "the timer idle")
            state["hang_s"] = 3.0  # the venue stops answering
            t0 = time.monotonic()
            pending = oe.start_request("POST", PATH, (), BODY)  # written inline before this returns
            assert oe._sweep_timer is not None and oe._sweep_at < math.inf, "no deadline armed for the order"
            try:
                await asyncio.wait_for(pending, 1.5)
            except rest.OutcomeUnknownError:
                pass
            else:  # pragma: no cover - the venue hangs for 3 s
                raise AssertionError("the hung order returned a response")
            assert time.monotonic() - t0 < 1.0
            # the expired connection was closed and replaced: the next order goes through in time
            state["hang_s"] = 0.0
            nxt = await asyncio.wait_for(oe.start_request("POST", PATH, (), BODY), 2)
            assert nxt.status == 201 and state["orders"] == 3


async def test_gate_spot_order_on_hung_venue_ends_outcome_unknown_in_time(binance_dir: Path) -> None:
    account = AccountSpec(api_key=GATE_KEY, api_secret=GATE_SECRET, uid=GATE_UID)
    async with sim_server(binance_dir, account) as server:
        venue = gate_spot(server, GATE_KEY, GATE_SECRET, GATE_UID, order_timeout_s=0.3)
        async with started(venue):
            key = "gateio-spot:BTC_USDT"
            venue.resolve_delays_s = (0.0, 0.2, 0.4)
            inst = venue.instruments()[key]

            def resting(cid: str) -> OrderRequest:
                bid = server.market.books[key].best()[0]
                return OrderRequest.create(inst, Side.BUY, 0.001, price_ticks=bid[0] - 20_000, client_order_id=cid)

            first = await asyncio.wait_for(venue.place_order(resting("dl1")), 3)
            assert first.status is OrderStatus.NEW
            await wait_for(lambda: venue._oe._sweep_timer is None, 2, "the deadline timer idle")
            server.faults.delay_ack("gateio-spot", 2.5)  # executed at once, answered 2.5 s later
            t0 = time.monotonic()
            second = await asyncio.wait_for(venue.place_order(resting("dl2")), 2)
            assert time.monotonic() - t0 < 1.0, "the order outlived its 0.3 s deadline"
            # no reply in time: outcome unknown (the stream may already have told it is NEW)
            assert venue.unknown_outcomes == 1
            assert second.status in (OrderStatus.PENDING_NEW, OrderStatus.NEW)
            # the order connection is free again: a cancel goes through while the venue still holds
            # the reply, and the unknown order is found (and cancelled) by client order id
            await wait_for(lambda: second.status is not OrderStatus.PENDING_NEW, 3, "the order resolved")
            assert await asyncio.wait_for(venue.cancel_all(key), 3) >= 1
            assert await asyncio.wait_for(venue.open_orders(key), 3) == []
