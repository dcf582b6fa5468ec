"""A closed connector must leave nothing running: an order in flight when ``aclose`` closes the
order-entry client becomes an order of unknown outcome *after* the close cancelled the
connector's tasks -- its background resolution (queried with capped backoff for as long as the
queries fail) must not start then, or it would query for ever against a closed client. The order
stays listed in ``unresolved_orders``. The private-stream backfill retry, asked for after the
close, must not start either.

MEXC spot and Gate spot on the real loopback simulator (the ``delay_ack`` fault holds the
placement's reply past the close); every wait bounded.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from cexarb.model import OrderStatus, Side
from cexarb.venues.base import OrderRequest
from cexarb.venues.gateio import codec as gate_codec
from cexarb.venues.sim.faults import FaultKind
from cexarb.venues.sim.server import AccountSpec, SimServer
from loopback import gate_spot, mexc_spot, sim_server, wait_for

GATE_KEY, GATE_SECRET, GATE_UID = "gate-key-1", "gate-secret-1", 10001
MEXC_KEY, MEXC_SECRET = "mx-key-1", "mx-secret-1"
ACCOUNTS = (
    AccountSpec(api_key=GATE_KEY, api_secret=GATE_SECRET, uid=GATE_UID),
    AccountSpec(api_key=MEXC_KEY, api_secret=MEXC_SECRET),
)
# venue -> (instrument key, ticks below the best bid: the order rests, never fills)
CASES = {
    "mexc-spot": ("mexc-spot:BTCUSDT", 200_000),
    "gateio-spot": ("gateio-spot:BTC_USDT", 20_000),
}


def _venue(name: str, server: SimServer) -> Any:
    if name == "gateio-spot":
        return gate_spot(server, GATE_KEY, GATE_SECRET, GATE_UID)
    return mexc_spot(server, MEXC_KEY, MEXC_SECRET)


def _placed_at_sim(server: SimServer, name: str, cid: str) -> bool:
    key = GATE_KEY if name == "gateio-spot" else MEXC_KEY
    text = gate_codec.text_for_client_order_id(cid) if name == "gateio-spot" else cid
    return any(r.text == text for r in server.accounts_by_key[key].orders[name].values())


def _count_rest_requests(server: SimServer, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the REST requests that reach the simulator: every guarded route of both venues asks
    the fault table for an ``http_error`` first (one call per request)."""
    seen = [0]
    take = server.faults.take

    def counting_take(venue: str, kind: FaultKind, path: str | None = None) -> Any:
        if kind is FaultKind.HTTP_ERROR:
            seen[0] += 1
        return take(venue, kind, path)

    monkeypatch.setattr(server.faults, "take", counting_take)
    return seen


async def _cancel_leftovers(venue: Any) -> None:
    """Test hygiene only (a regression must not leak into the next test): cancel what is left."""
    left = [t for t in venue._tasks if not t.done()]
    for task in left:
        task.cancel()
    if left:
        await asyncio.wait(left, timeout=2.0)


@pytest.mark.parametrize("name", list(CASES))
async def test_order_in_flight_at_close_leaves_no_task_and_no_query(
    binance_dir: Path, name: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    key, below = CASES[name]
    cid = "inflight1"
    async with sim_server(binance_dir, *ACCOUNTS) as server:
        venue = _venue(name, server)
        await asyncio.wait_for(venue.__aenter__(), 15)
        try:
            # fast resolution, so a resolver left running would query many times in the wait below
            venue.resolve_delays_s = (0.0, 0.05)
            venue.resolve_retry_initial_s = 0.05
            venue.resolve_retry_max_s = 0.1
            requests = _count_rest_requests(server, monkeypatch)
            inst = venue.instruments()[key]
            bid = server.market.books[key].best()[0]
            request = OrderRequest.create(inst, Side.BUY, 0.001, price_ticks=bid[0] - below, client_order_id=cid)
            # the venue executes the order at once (it rests) but holds the reply for 2 s
            server.faults.delay_ack(name, 2.0)
            placing = asyncio.ensure_future(venue.place_order(request))
            await wait_for(lambda: _placed_at_sim(server, name, cid), 3, "the order at the simulator")
            assert not placing.done()
            caplog.set_level(logging.INFO, logger="cexarb.venues.connector")
            # close while the order's reply is still held: the placement's outcome becomes unknown
            await asyncio.wait_for(venue.aclose(), 10)
            order = await asyncio.wait_for(placing, 3)
            assert order.status is OrderStatus.PENDING_NEW and venue.unknown_outcomes == 1
            # nothing of the connector's left running after a short, bounded wait ...
            await wait_for(lambda: all(t.done() for t in venue._tasks), 1.0, "no connector task left running")
            # ... and nothing reaches the simulator any more, nothing is queried
            sent, failures = requests[0], venue.resolve_query_failures
            await asyncio.sleep(0.5)
            assert requests[0] == sent
            assert venue.resolve_query_failures == failures
            assert all(t.done() for t in venue._tasks)
            # the order was never resolved: it stays listed, and the close said so at WARNING
            assert venue.unresolved_orders == (cid,)
            at_close = [
                r.getMessage()
                for r in caplog.records
                if r.levelno == logging.WARNING and "left unresolved at close" in r.getMessage()
            ]
            assert len(at_close) == 1 and "1 orders" in at_close[0] and cid in at_close[0], at_close
        finally:
            await _cancel_leftovers(venue)
            await asyncio.wait_for(venue.aclose(), 10)


@pytest.mark.parametrize("name", list(CASES))
async def test_backfill_asked_for_after_close_starts_nothing(
    binance_dir: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with sim_server(binance_dir, *ACCOUNTS) as server:
        venue = _venue(name, server)
        await asyncio.wait_for(venue.__aenter__(), 15)
        try:
            venue.backfill_retry_initial_s = 0.05
            venue.backfill_retry_max_s = 0.1
            requests = _count_rest_requests(server, monkeypatch)
            await asyncio.wait_for(venue.aclose(), 10)
            sent = requests[0]
            # what the private-stream handler does after a reconnect; the connector is closed now
            venue._request_backfill()
            await wait_for(lambda: all(t.done() for t in venue._tasks), 1.0, "no connector task left running")
            await asyncio.sleep(0.3)
            assert venue.backfill_failures == 0 and requests[0] == sent
            assert all(t.done() for t in venue._tasks)
        finally:
            await _cancel_leftovers(venue)
            await asyncio.wait_for(venue.aclose(), 10)
