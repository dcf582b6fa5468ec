"""An order of unknown outcome whose follow-up queries fail must not stay PENDING_NEW for ever:
the connector keeps querying it by client order id (never re-sending it) with capped backoff
until the venue answers -- found: its state; definitively not found: REJECTED -- lists it in
``unresolved_orders`` meanwhile, and stops when the connector closes.

MEXC spot (a 5xx on placement, nothing executed) and Gate spot (a 5xx after the venue executed
the order, its stream held back) on the real loopback simulator; every wait bounded.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from cexarb.model import OrderStatus, Side
from cexarb.venues.base import OrderRequest
from cexarb.venues.gateio import codec as gate_codec
from cexarb.venues.sim.server import AccountSpec
from loopback import gate_spot, mexc_spot, sim_server, started, wait_for

GATE_KEY, GATE_SECRET, GATE_UID = "gate-key-1", "gate-secret-1", 10001
MEXC_KEY, MEXC_SECRET = "mx-key-1", "mx-secret-1"
ACCOUNTS = (
    AccountSpec(api_key=GATE_KEY, api_secret=GATE_SECRET, uid=GATE_UID),
    AccountSpec(api_key=MEXC_KEY, api_secret=MEXC_SECRET),
)


async def test_not_placed_order_with_failing_queries_ends_rejected_once_rest_recovers(binance_dir: Path) -> None:
    async with sim_server(binance_dir, *ACCOUNTS) as server:
        venue = mexc_spot(server, MEXC_KEY, MEXC_SECRET)
        async with started(venue):
            key = "mexc-spot:BTCUSDT"
            venue.resolve_delays_s = (0.0, 0.1, 0.2)
            venue.resolve_retry_initial_s = 0.1
            venue.resolve_retry_max_s = 0.3
            # the placement answers 503 without executing; every query of the order then 503s too
            fault = server.faults.http_error("mexc-spot", 503, count=10_000, path_prefix="/api/v3/order")
            inst = venue.instruments()[key]
            bid = server.market.books[key].best()[0]
            request = OrderRequest.create(inst, Side.BUY, 0.001, price_ticks=bid[0] - 200_000, client_order_id="unk1")
            order = await asyncio.wait_for(venue.place_order(request), 3)
            assert order.status is OrderStatus.PENDING_NEW and venue.unknown_outcomes == 1
            assert venue.unresolved_orders == ("unk1",)
            # past the whole schedule, the queries still failing: unresolved, still being asked
            await wait_for(lambda: venue.resolve_query_failures >= 4, 4, "failed queries past the schedule")
            assert order.status is OrderStatus.PENDING_NEW and venue.unresolved_orders == ("unk1",)
            # REST healthy again: the next query's "not found" is definitive
            assert server.faults.disarm(fault)
            await wait_for(lambda: order.status is OrderStatus.REJECTED, 3, "the order resolved as not placed")
            assert order.reject_reason and "not found" in order.reject_reason
            assert venue.unresolved_orders == ()
            account = server.accounts_by_key[MEXC_KEY]
            assert [r for r in account.orders["mexc-spot"].values() if r.text == "unk1"] == []  # never re-sent


async def test_executed_order_with_failing_queries_is_found_once_rest_recovers(binance_dir: Path) -> None:
    async with sim_server(binance_dir, *ACCOUNTS) as server:
        venue = gate_spot(server, GATE_KEY, GATE_SECRET, GATE_UID)
        async with started(venue):
            key = "gateio-spot:BTC_USDT"
            venue.resolve_delays_s = (0.0, 0.1, 0.2)
            venue.resolve_retry_initial_s = 0.1
            venue.resolve_retry_max_s = 0.3
            # the venue executes the order (it rests) but answers 503; its stream is held back for
            # longer than the test, so only the connector's own query can tell; the query route
            # (.../orders/<id>) answers 503 until disarmed
            server.http_error_after_execute("gateio-spot", 503)
            queries = server.faults.http_error("gateio-spot", 503, count=10_000, path_prefix="/api/v4/spot/orders/")
            server.faults.stall_stream("gateio-spot", 8.0)
            inst = venue.instruments()[key]
            bid = server.market.books[key].best()[0]
            request = OrderRequest.create(inst, Side.BUY, 0.001, price_ticks=bid[0] - 20_000, client_order_id="unk2")
            order = await asyncio.wait_for(venue.place_order(request), 3)
            assert order.status is OrderStatus.PENDING_NEW and venue.unknown_outcomes == 1
            await wait_for(lambda: venue.resolve_query_failures >= 4, 4, "failed queries past the schedule")
            assert order.status is OrderStatus.PENDING_NEW and venue.unresolved_orders == ("unk2",)
            assert server.faults.disarm(queries)
            await wait_for(lambda: order.status is OrderStatus.NEW, 3, "the order found NEW")
            assert order.venue_order_id and venue.unresolved_orders == ()
            account = server.accounts_by_key[GATE_KEY]
            text = gate_codec.text_for_client_order_id("unk2")
            assert len([r for r in account.orders["gateio-spot"].values() if r.text == text]) == 1
            server.faults.clear()  # the stream flows again
            await asyncio.wait_for(venue.cancel_all(key), 3)


async def test_resolution_stops_when_the_connector_closes(binance_dir: Path) -> None:
    async with sim_server(binance_dir, *ACCOUNTS) as server:
        venue = mexc_spot(server, MEXC_KEY, MEXC_SECRET)
        async with started(venue):
            key = "mexc-spot:BTCUSDT"
            venue.resolve_delays_s = (0.0, 0.1)
            venue.resolve_retry_initial_s = 0.1
            venue.resolve_retry_max_s = 0.2
            server.faults.http_error("mexc-spot", 503, count=10_000, path_prefix="/api/v3/order")
            inst = venue.instruments()[key]
            bid = server.market.books[key].best()[0]
            request = OrderRequest.create(inst, Side.BUY, 0.001, price_ticks=bid[0] - 200_000, client_order_id="unk3")
            await asyncio.wait_for(venue.place_order(request), 3)
            await wait_for(lambda: venue.resolve_query_failures >= 3, 4, "failed queries")
        assert all(t.done() for t in venue._tasks)
        failures = venue.resolve_query_failures
        await asyncio.sleep(0.5)
        assert venue.resolve_query_failures == failures  # nothing queries after the close
