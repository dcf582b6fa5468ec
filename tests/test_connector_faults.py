"""Issue 4, "each fault recovers": every fault of the loopback simulator
(:mod:`cexarb.venues.sim.faults`) against our three connectors (GateSpot, GateUsdtFutures,
MexcSpot) end to end on 127.0.0.1 -- real servers, the real event loop, no mocks.

Covered here (the per-connector files cover a dropped depth update, a socket close, a partial fill
and malformed frames):

1. a reordered depth update -> sequence gap detected, resync, book == the simulator's book;
2. a stalled market stream -> the WS client's data timeout fires, it reconnects and resubscribes,
   the book is valid again and == the simulator's book;
3. a delayed order ack -> ``place_order`` returns after the delay, or (past the order deadline)
   ends outcome-unknown; either way the order is found by client order id, never duplicated;
4. a lost order ack -> outcome unknown, the order is recovered by client order id (by the
   connector's own follow-up query, by the reconnect backfill, and through the OrderManager),
   never duplicated;
5. a rejected order -> the venue's code as a typed error, nothing left open, balances unchanged;
6. HTTP 5xx / 429 on REST -> idempotent calls retried and succeed, an order never blindly
   re-sent (an unknown one is resolved by client order id), 429 penalises the rate limiter and
   then succeeds (Gate: no Retry-After, 1 s); a Retry-After past the deadline fails fast (MEXC);
   a 5xx on a placement the venue executed (``http_error_after_execute``) -> found by client
   order id on the first query, its state and fills delivered once, never re-sent;
7. MEXC listen-key keep-alive -> ``PUT userDataStream`` seen by the simulator, user data flows.

Every wait is bounded (``asyncio.wait_for`` or a deadline loop).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from cexarb.clock import LiveClock
from cexarb.execution import OrderManager
from cexarb.model import Fill, OrderStatus, Side, TimeInForce
from cexarb.venues.base import OrderRequest, OrderUpdate
from cexarb.venues.connector import ConnectorBase
from cexarb.venues.gateio import codec as gate_codec
from cexarb.venues.gateio.futures import GateUsdtFutures
from cexarb.venues.gateio.spot import GateSpot
from cexarb.venues.mexc.spot import MexcSpot
from cexarb.venues.ratelimit import EndpointClass
from cexarb.venues.rest import (
    InvalidOrderError,
    OutcomeUnknownError,
    RateLimitedError,
    VenueError,
)
from cexarb.venues.secrets import ApiCredentials
from cexarb.venues.sim.server import AccountSpec, SimServer
from cexarb.venues.ws import Backoff
import loopback
from loopback import sim_server, started, wait_for

GATE_KEY, GATE_SECRET, GATE_UID = "gate-key-1", "gate-secret-1", 10001
MEXC_KEY, MEXC_SECRET = "mx-key-1", "mx-secret-1"


@dataclass(frozen=True)
class Spec:
    """What differs between the three venues, for one parametrised test body."""

    name: str
    cls: type[ConnectorBase]
    ws_path: str
    symbol: str
    qty: float  # one order's size (base units, or contracts on futures)
    rest_ticks: int  # a resting buy sits this many ticks under the best bid
    take_ticks: int  # a taking buy is priced this many ticks over the best ask
    balances_path: str
    order_path: str  # POST: place; GET .../<id>: query (Gate) / GET: query (MEXC)
    open_orders_path: str
    reject_code: str  # the code the simulated rejection carries

    @property
    def key(self) -> str:
        return f"{self.name}:{self.symbol}"

    @property
    def is_gate(self) -> bool:
        return self.name.startswith("gateio")

    def credentials(self) -> ApiCredentials:
        if self.is_gate:
            return ApiCredentials(GATE_KEY, GATE_SECRET, uid=str(GATE_UID))
        return ApiCredentials(MEXC_KEY, MEXC_SECRET)

    def wire_text(self, client_order_id: str) -> str:
        """The client order id as the venue stores it (Gate ``text`` = ``t-<id>``)."""
        if self.is_gate:
            return gate_codec.text_for_client_order_id(client_order_id)
        return client_order_id


SPECS = {
    "gateio-spot": Spec(
        name="gateio-spot",
        cls=GateSpot,
        ws_path="/ws/v4/",
        symbol="BTC_USDT",
        qty=0.001,
        rest_ticks=20_000,
        take_ticks=2_000,
        balances_path="/api/v4/spot/accounts",
        order_path="/api/v4/spot/orders",
        open_orders_path="/api/v4/spot/open_orders",
        reject_code="INVALID_PARAM_VALUE",
    ),
    "gateio-futures": Spec(
        name="gateio-futures",
        cls=GateUsdtFutures,
        ws_path="/v4/ws/usdt",
        symbol="BTC_USDT",
        qty=1.0,
        rest_ticks=10_000,
        take_ticks=2_000,
        balances_path="/api/v4/futures/usdt/accounts",
        order_path="/api/v4/futures/usdt/orders",
        open_orders_path="/api/v4/futures/usdt/orders",
        reject_code="INVALID_PARAM_VALUE",
    ),
    "mexc-spot": Spec(
        name="mexc-spot",
        cls=MexcSpot,
        ws_path="/ws",
        symbol="BTCUSDT",
        qty=0.001,
        rest_ticks=200_000,
        take_ticks=20_000,
        balances_path="/api/v3/account",
        order_path="/api/v3/order",
        open_orders_path="/api/v3/openOrders",
        reject_code="30016",
    ),
}
ALL = list(SPECS)


# ---- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
async def server(binance_dir) -> AsyncIterator[SimServer]:
    async with sim_server(
        binance_dir,
        AccountSpec(api_key=GATE_KEY, api_secret=GATE_SECRET, uid=GATE_UID),
        AccountSpec(api_key=MEXC_KEY, api_secret=MEXC_SECRET),
    ) as srv:
        yield srv


@pytest.fixture(params=ALL)
def spec(request) -> Spec:
    return SPECS[request.param]


@asynccontextmanager
async def connected(server: SimServer, spec: Spec, **options: Any) -> AsyncIterator[Any]:
    """One connector of ``spec`` on ``server`` (``options`` go to its constructor)."""
    conn = spec.cls(
        spec.credentials(),
        rest_url=server.base_url,
        ws_url=server.ws_base_url + spec.ws_path,
        symbols=[spec.symbol],
        backoff=Backoff(initial_s=0.05, max_s=0.3),
        seed=1,
        **options,
    )
    async with started(conn):
        yield conn


@pytest.fixture
async def venue(server, spec) -> AsyncIterator[Any]:
    async with connected(server, spec) as conn:
        yield conn


# ---- helpers --------------------------------------------------------------------------------------


async def assert_book_matches_server(venue: Any, server: SimServer, key: str, n: int = 20) -> None:
    await loopback.assert_book_matches_server(venue, server, key, n, timeout_s=3.0)


def server_orders(server: SimServer, spec: Spec, client_order_id: str) -> list[Any]:
    """The simulator's order records carrying ``client_order_id`` (duplicates would show here)."""
    account = server.accounts_by_key[GATE_KEY if spec.is_gate else MEXC_KEY]
    text = spec.wire_text(client_order_id)
    return [r for r in account.orders[spec.name].values() if r.text == text]


def resting_buy(server: SimServer, venue: Any, spec: Spec, cid: str) -> OrderRequest:
    inst = venue.instruments()[spec.key]
    bid = server.market.books[spec.key].best()[0]
    return OrderRequest.create(inst, Side.BUY, spec.qty, price_ticks=bid[0] - spec.rest_ticks, client_order_id=cid)


def taking_buy(server: SimServer, venue: Any, spec: Spec, cid: str) -> OrderRequest:
    inst = venue.instruments()[spec.key]
    ask = server.market.books[spec.key].best()[1]
    return OrderRequest.create(
        inst,
        Side.BUY,
        spec.qty,
        price_ticks=ask[0] + spec.take_ticks,
        time_in_force=TimeInForce.IOC,
        client_order_id=cid,
    )


def raw_place(venue: Any, spec: Spec, request: OrderRequest) -> Any:
    """The connector's own order request on its order-entry client, without ``place_order``'s
    mapping of errors to order states: shows the typed error our code raises."""
    if spec.is_gate:
        return venue._oe.post(spec.order_path, (), venue._order_body(request))
    from cexarb.venues.mexc import codec as mexc_codec

    return venue._oe.post(spec.order_path, mexc_codec.order_params(request))


async def place(venue: Any, request: OrderRequest, timeout_s: float = 3.0) -> Any:
    return await asyncio.wait_for(venue.place_order(request), timeout_s)


async def get_order(venue: Any, spec: Spec, cid: str) -> Any:
    return await asyncio.wait_for(venue.get_order(spec.key, cid), 3)


async def cancel_all(venue: Any, spec: Spec) -> None:
    await asyncio.wait_for(venue.cancel_all(spec.key), 3)
    assert await asyncio.wait_for(venue.open_orders(spec.key), 3) == []


# ---- 1. reordered depth update ------------------------------------------------------------------


async def test_reordered_depth_update_resyncs_to_server_book(server, spec, venue):
    await venue.wait_synced(spec.key, 5)
    before = venue.book_manager.stats(spec.symbol)
    fault = server.faults.reorder_depth(spec.name)
    await wait_for(lambda: fault.fired == 1, 3, "the reorder fault to fire")
    # the push that overtook its predecessor is a sequence gap: that book (only) resyncs
    await wait_for(lambda: venue.book_manager.resync_count(spec.symbol) > before.resync_count, 3, "a resync")
    assert venue.book_manager.stats(spec.symbol).gap_count > before.gap_count
    await venue.wait_synced(spec.key, 3)
    assert venue.book_manager.stats(spec.symbol).snapshots > before.snapshots
    await assert_book_matches_server(venue, server, spec.key)


# ---- 5. rejected order --------------------------------------------------------------------------


async def test_rejected_order_typed_error_nothing_open_balances_unchanged(server, spec, venue):
    before = await asyncio.wait_for(venue.balances(), 3)
    fault = server.faults.reject_order(spec.name)
    order = await place(venue, resting_buy(server, venue, spec, "rej1"))
    assert fault.fired == 1
    # place_order reports a venue refusal as a REJECTED order carrying the venue's code
    assert order.status is OrderStatus.REJECTED and order.reject_reason == spec.reject_code
    assert await get_order(venue, spec, "rej1") is None
    assert server_orders(server, spec, "rej1") == []
    assert await asyncio.wait_for(venue.open_orders(spec.key), 3) == []
    assert await asyncio.wait_for(venue.balances(), 3) == before

    # the typed error under it, with the venue's own code and message (same request, same path)
    if spec.is_gate:
        server.faults.reject_order(spec.name, label="SIZE_TOO_LARGE", message="size too large (sim)")
        code = "SIZE_TOO_LARGE"
    else:
        server.faults.reject_order(spec.name, code=30029, message="size too large (sim)")
        code = "30029"
    call = raw_place(venue, spec, resting_buy(server, venue, spec, "rej2"))
    with pytest.raises(InvalidOrderError) as info:
        await asyncio.wait_for(call, 3)
    assert (info.value.code, info.value.message, info.value.http_status) == (code, "size too large (sim)", 400)
    assert server_orders(server, spec, "rej2") == []
    assert await asyncio.wait_for(venue.balances(), 3) == before

    # the next order goes through
    ok = await place(venue, resting_buy(server, venue, spec, "rej3"))
    assert ok.status is OrderStatus.NEW and len(server_orders(server, spec, "rej3")) == 1
    await cancel_all(venue, spec)


# ---- 3. delayed order ack -----------------------------------------------------------------------


async def test_delayed_ack_place_returns_after_the_delay(server, spec, venue):
    fault = server.faults.delay_ack(spec.name, 0.4)
    t0 = time.monotonic()
    order = await place(venue, resting_buy(server, venue, spec, "slow1"))
    assert time.monotonic() - t0 >= 0.4 and fault.fired == 1
    assert order.status is OrderStatus.NEW and order.venue_order_id
    got = await get_order(venue, spec, "slow1")
    assert got is not None and got.status is OrderStatus.NEW and got.venue_order_id == order.venue_order_id
    assert len(server_orders(server, spec, "slow1")) == 1
    await cancel_all(venue, spec)


# ---- 4. lost order ack --------------------------------------------------------------------------


async def test_lost_ack_outcome_unknown_then_found_by_client_id(server, spec, venue):
    fault = server.faults.lose_ack(spec.name)
    order = await place(venue, resting_buy(server, venue, spec, "lost1"))
    assert fault.fired == 1
    # the connection dropped after the request was written: neither acked nor rejected (the
    # private stream may already have reported the order NEW)
    assert venue.unknown_outcomes == 1
    assert order.status in (OrderStatus.PENDING_NEW, OrderStatus.NEW)
    got = await get_order(venue, spec, "lost1")
    assert got is not None and got.status is OrderStatus.NEW and got.venue_order_id
    assert order.status is OrderStatus.NEW and order.venue_order_id == got.venue_order_id
    assert len(server_orders(server, spec, "lost1")) == 1
    assert [o.client_order_id for o in await asyncio.wait_for(venue.open_orders(spec.key), 3)] == ["lost1"]
    # the typed error under it: OutcomeUnknownError (not a rejection, not retried)
    server.faults.lose_ack(spec.name)
    with pytest.raises(OutcomeUnknownError):
        await asyncio.wait_for(raw_place(venue, spec, resting_buy(server, venue, spec, "lost3")), 3)
    got = await get_order(venue, spec, "lost3")
    assert got is not None and got.status is OrderStatus.NEW
    assert len(server_orders(server, spec, "lost3")) == 1
    # the order connection came back: the next order is acked normally
    nxt = await place(venue, resting_buy(server, venue, spec, "lost2"))
    assert nxt.status is OrderStatus.NEW and len(server_orders(server, spec, "lost2")) == 1
    await cancel_all(venue, spec)


# ---- 6. HTTP 5xx / 429 on REST -------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503])
async def test_5xx_idempotent_calls_are_retried(server, spec, venue, status):
    placed = await place(venue, resting_buy(server, venue, spec, "q5xx"))
    assert placed.status is OrderStatus.NEW
    query_path = f"{spec.order_path}/{spec.wire_text('q5xx')}" if spec.is_gate else spec.order_path

    fault = server.faults.http_error(spec.name, status, count=2, path_prefix=spec.balances_path)
    balances = await asyncio.wait_for(venue.balances(), 5)  # MEXC: at most 2 account calls / s
    assert fault.fired == 2 and balances["USDT"].locked > 0

    fault = server.faults.http_error(spec.name, status, count=2, path_prefix=query_path)
    got = await get_order(venue, spec, "q5xx")
    assert fault.fired == 2 and got is not None and got.status is OrderStatus.NEW

    fault = server.faults.http_error(spec.name, status, count=2, path_prefix=spec.open_orders_path)
    open_orders = await asyncio.wait_for(venue.open_orders(spec.key), 3)
    assert fault.fired == 2 and [o.client_order_id for o in open_orders] == ["q5xx"]

    # three failures in a row exhaust the retries: a typed error, not a hang
    fault = server.faults.http_error(spec.name, status, count=3, path_prefix=spec.balances_path)
    with pytest.raises(VenueError) as info:
        await asyncio.wait_for(venue.balances(), 5)
    assert info.value.http_status == status and fault.fired == 3
    await cancel_all(venue, spec)


async def test_5xx_on_order_placement_is_not_resent(server, spec, venue):
    fault = server.faults.http_error(spec.name, 503, path_prefix=spec.order_path)
    order = await place(venue, resting_buy(server, venue, spec, "p5xx"))
    assert fault.fired == 1
    # a 5xx on a write is "outcome unknown", not a rejection -- and never re-sent blindly
    assert order.status is OrderStatus.PENDING_NEW and not order.venue_order_id
    assert venue.unknown_outcomes == 1
    assert await get_order(venue, spec, "p5xx") is None
    assert server_orders(server, spec, "p5xx") == []
    # the caller may re-send the same client order id once it knows the first never landed
    again = await place(venue, resting_buy(server, venue, spec, "p5xx"))
    assert again.status is OrderStatus.NEW
    assert len(server_orders(server, spec, "p5xx")) == 1
    await cancel_all(venue, spec)


@pytest.mark.parametrize("spec", ["gateio-spot", "gateio-futures"], indirect=True)
async def test_429_penalises_the_limiter_then_succeeds(server, spec, venue):
    # Gate's 429 carries no Retry-After: the limiter holds every request of the venue for the
    # default 1 s, then the (idempotent) call is retried and succeeds
    fault = server.faults.http_error(spec.name, 429, path_prefix=spec.balances_path)
    waited = venue._limiter.waited_s
    t0 = time.monotonic()
    balances = await asyncio.wait_for(venue.balances(), 3)
    assert balances["USDT"].free > 0 and fault.fired == 1
    assert time.monotonic() - t0 >= 0.9 and venue._limiter.waited_s - waited >= 0.9
    # a 429 on an order is a typed refusal (REJECTED with the venue's label), never re-sent
    fault = server.faults.http_error(spec.name, 429, path_prefix=spec.order_path)
    order = await place(venue, resting_buy(server, venue, spec, "r429"))
    assert fault.fired == 1
    assert order.status is OrderStatus.REJECTED and order.reject_reason == "TOO_MANY_REQUESTS"
    assert server_orders(server, spec, "r429") == []
    # after the penalty the order path works again
    ok = await place(venue, resting_buy(server, venue, spec, "r429-2"))
    assert ok.status is OrderStatus.NEW and len(server_orders(server, spec, "r429-2")) == 1
    await cancel_all(venue, spec)


@pytest.mark.parametrize("spec", ["mexc-spot"], indirect=True)
async def test_429_with_retry_after_past_the_deadline_fails_fast_and_holds_requests(server, spec, venue):
    # the simulator's MEXC 429 says Retry-After: 10 -- as long as the request's whole deadline:
    # the typed 429 at once (no retry into the penalty), and the limiter holds every request
    fault = server.faults.http_error(spec.name, 429, path_prefix=spec.balances_path)
    t0 = time.monotonic()
    with pytest.raises(RateLimitedError) as info:
        await asyncio.wait_for(venue.balances(), 3)
    assert info.value.http_status == 429 and info.value.retry_after_s == 10.0
    assert time.monotonic() - t0 < 1.0 and fault.fired == 1
    assert venue._limiter.headroom(EndpointClass.PRIVATE, endpoint=spec.balances_path) == 0.0
    sent = venue._http.requests_sent
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(venue.balances(), 0.3)  # waits out the penalty, client-side
    assert venue._http.requests_sent == sent  # nothing reached the venue meanwhile
    # (waiting the 10 s out is too slow for this suite; shutting down while penalised must still
    # close everything cleanly -- listen key DELETE included: the fixture's exit checks that)


# ---- 2. stalled market stream --------------------------------------------------------------------


async def test_stalled_market_stream_reconnects_resubscribes_and_resyncs(server, spec):
    # the simulated market pushes a data frame at least every ~0.2 s: 0.6 s without one is a stall
    async with connected(server, spec, market_data_timeout_s=0.6) as venue:
        await venue.wait_synced(spec.key, 5)
        ws = venue._ws_market
        stalls, reconnects, frames = ws.stalls, ws.reconnects, ws.frames
        resyncs = venue.book_manager.resync_count(spec.symbol)
        reasons: set[str] = set()

        def stall_seen() -> bool:
            reasons.add(ws.last_disconnect_reason)
            return ws.stalls > stalls

        server.faults.stall_stream(spec.name, 1.2)
        await wait_for(stall_seen, 2, "the data timeout to fire")
        assert any(r.startswith("stalled: no data frame") for r in reasons), reasons
        # the book is not trusted while its stream is down
        await wait_for(lambda: not venue.book(spec.key).is_valid, 1, "the book invalidated")
        # after the stall: reconnected, resubscribed (data flows again), resynced, == the server
        await wait_for(lambda: ws.reconnects > reconnects and ws.connected.is_set(), 3, "a reconnect")
        await wait_for(lambda: venue.book_manager.resync_count(spec.symbol) > resyncs, 3, "a resync")
        await venue.wait_synced(spec.key, 3)
        assert ws.frames > frames
        await assert_book_matches_server(venue, server, spec.key)


# ---- 3. delayed order ack, past the order deadline ------------------------------------------------


async def test_delayed_ack_past_the_deadline_is_outcome_unknown_then_found(server, spec):
    async with connected(server, spec, order_timeout_s=0.3) as venue:
        venue.resolve_delays_s = (0.0, 0.2, 0.4)
        updates: list[OrderUpdate] = []
        venue.subscribe(lambda e: updates.append(e) if isinstance(e, OrderUpdate) else None)
        fault = server.faults.delay_ack(spec.name, 1.0)
        t0 = time.monotonic()
        order = await place(venue, resting_buy(server, venue, spec, "late1"))
        assert time.monotonic() - t0 < 0.9 and fault.fired == 1
        # no answer within the deadline: not acked, not rejected -- outcome unknown
        assert order.status is OrderStatus.PENDING_NEW and venue.unknown_outcomes == 1
        # the venue has it: the connector finds it by client order id (or the stream tells first)
        await wait_for(lambda: order.status is OrderStatus.NEW, 2, "the order resolved")
        assert any(u.client_order_id == "late1" and u.status is OrderStatus.NEW for u in updates)
        got = await get_order(venue, spec, "late1")
        assert got is not None and got.status is OrderStatus.NEW and got.venue_order_id
        assert order.venue_order_id == got.venue_order_id
        assert len(server_orders(server, spec, "late1")) == 1
        # the timed-out order connection was replaced: the next order is acked in time
        nxt = await place(venue, resting_buy(server, venue, spec, "late2"))
        assert nxt.status is OrderStatus.NEW and len(server_orders(server, spec, "late2")) == 1
        assert [o.client_order_id for o in await asyncio.wait_for(venue.open_orders(spec.key), 3)] == [
            "late1",
            "late2",
        ]
        await cancel_all(venue, spec)


# ---- 4. lost order ack, through the OrderManager -------------------------------------------------


async def test_lost_ack_through_the_order_manager(server, spec, venue):
    venue.resolve_delays_s = (0.0, 0.2, 0.4)
    om = OrderManager(LiveClock(), {venue.name: venue}, venue.book)
    await venue.wait_synced(spec.key, 5)
    fault = server.faults.lose_ack(spec.name)
    order = await asyncio.wait_for(om.submit(taking_buy(server, venue, spec, "omlost1")), 3)
    # the place call itself ended outcome-unknown (no ack, no rejection)...
    assert fault.fired == 1 and venue.unknown_outcomes == 1
    assert order.status is not OrderStatus.REJECTED
    # ...but the venue executed it: the manager's record ends FILLED, with the fill, exactly once
    # (from the private stream, which may even beat the dropped connection)
    await wait_for(
        lambda: order.status is OrderStatus.FILLED and om.n_open_orders == 0,
        3,
        "the manager's order to be filled",
    )
    await wait_for(
        lambda: sum(f.qty for f in om.fills if f.client_order_id == "omlost1") == pytest.approx(spec.qty),
        3,
        "the fill",
    )
    assert len([f for f in om.fills if f.client_order_id == "omlost1"]) == len(
        {f.fill_id for f in om.fills if f.client_order_id == "omlost1"}
    )
    # the position is what the account received: the quantity less any fee the venue took in the
    # base (a Gate spot buy pays its fee so; Fill.fee_base), each fill counted once
    fee_base = sum(f.fee_base for f in om.fills if f.client_order_id == "omlost1")
    assert om.position(spec.key).qty == pytest.approx(spec.qty - fee_base, abs=1e-12)
    assert order.venue_order_id and len(server_orders(server, spec, "omlost1")) == 1
    got = await get_order(venue, spec, "omlost1")
    assert got is not None and got.status is OrderStatus.FILLED and got.venue_order_id == order.venue_order_id


# ---- 6. 5xx on order placement, through the OrderManager ------------------------------------------


async def test_5xx_on_placement_never_resent_and_resolved_as_not_placed(server, spec, venue):
    venue.resolve_delays_s = (0.0, 0.2, 0.4)
    om = OrderManager(LiveClock(), {venue.name: venue}, venue.book)
    await venue.wait_synced(spec.key, 5)
    fault = server.faults.http_error(spec.name, 503, path_prefix=spec.order_path)
    t0 = time.monotonic()
    order = await asyncio.wait_for(om.submit(resting_buy(server, venue, spec, "om5xx")), 3)
    assert fault.fired == 1 and order.status is OrderStatus.PENDING_NEW
    # the connector's follow-up queries never find it (it was not executed, and not re-sent):
    # the manager hears it REJECTED and holds nothing open -- on Gate only once the request's
    # x-gate-exptime has passed (it could still have reached the venue before)
    expiry_s = venue.order_expiry_s or 0.0
    await wait_for(
        lambda: order.status is OrderStatus.REJECTED and om.n_open_orders == 0,
        3 + expiry_s,
        "the order resolved as not placed",
    )
    assert time.monotonic() - t0 >= expiry_s
    assert order.reject_reason and "not found" in order.reject_reason
    assert server_orders(server, spec, "om5xx") == []
    assert await asyncio.wait_for(venue.open_orders(spec.key), 3) == []
    # a new order goes through
    nxt = await asyncio.wait_for(om.submit(resting_buy(server, venue, spec, "om5xx-2")), 3)
    await wait_for(lambda: nxt.status is OrderStatus.NEW, 3, "the next order acked")
    assert len(server_orders(server, spec, "om5xx-2")) == 1
    await cancel_all(venue, spec)


# ---- 6b. 5xx on a placement the venue executed (http_error_after_execute) ------------------------

STALL_S = 1.5  # the streams held back while the order's outcome is unknown (< Gate's exptime)


async def test_5xx_after_execute_resolved_by_client_id_not_resent(server, spec, venue):
    """A gateway 5xx after the matching engine took the order: outcome unknown, never re-sent;
    the connector's follow-up query finds it by client order id at once (no wait for Gate's
    x-gate-exptime, which only a *not found* answer waits out), and its real state and fills
    reach the OrderManager exactly once."""
    venue.resolve_delays_s = (0.0, 0.2, 0.4)
    queries: list[str] = []
    get_order_of_venue = venue.get_order

    async def counting_get_order(instrument_key: str, client_order_id: str) -> Any:
        queries.append(client_order_id)
        return await get_order_of_venue(instrument_key, client_order_id)

    venue.get_order = counting_get_order
    om = OrderManager(LiveClock(), {venue.name: venue}, venue.book)
    await venue.wait_synced(spec.key, 5)
    expiry_s = venue.order_expiry_s or 0.0

    # the venue's streams are held back (STALL_S) so that only the connector's own query by
    # client order id can tell it what happened to the order
    # a resting order: executed (live at the venue), answered 5xx in the venue's format
    fault = server.http_error_after_execute(spec.name, 503)
    server.faults.stall_stream(spec.name, STALL_S)
    t0 = time.monotonic()
    rest = await asyncio.wait_for(om.submit(resting_buy(server, venue, spec, "ax5xx1")), 3)
    assert fault.fired == 1 and venue.unknown_outcomes == 1
    assert rest.status is not OrderStatus.REJECTED
    await wait_for(lambda: rest.status is OrderStatus.NEW and om.n_open_orders == 1, STALL_S, "the order found NEW")
    elapsed = time.monotonic() - t0  # by the query, at once: before the stall or Gate's exptime ended
    assert elapsed < STALL_S and (not expiry_s or elapsed < expiry_s)
    assert queries == ["ax5xx1"]
    assert rest.venue_order_id and len(server_orders(server, spec, "ax5xx1")) == 1
    assert [o.client_order_id for o in await asyncio.wait_for(venue.open_orders(spec.key), 3)] == ["ax5xx1"]

    # a taking order: executed and filled, answered 502; the fill is delivered once
    await asyncio.sleep(max(0.0, STALL_S - (time.monotonic() - t0)) + 0.2)  # the held frames out
    fault = server.http_error_after_execute(spec.name, 502)
    server.faults.stall_stream(spec.name, STALL_S)
    t0 = time.monotonic()
    take = await asyncio.wait_for(om.submit(taking_buy(server, venue, spec, "ax5xx2")), 3)
    assert fault.fired == 1 and venue.unknown_outcomes == 2
    assert take.status is not OrderStatus.REJECTED
    # the query's FILLED arrives at once; the order manager applies it once the fill it reports
    # is booked (the fill comes with the held stream), so status and position never disagree
    await wait_for(lambda: take.status is OrderStatus.FILLED or "ax5xx2" in om.updates_waiting_for_fills,
                   STALL_S, "the order found FILLED")
    elapsed = time.monotonic() - t0
    assert elapsed < STALL_S and (not expiry_s or elapsed < expiry_s)
    assert queries == ["ax5xx1", "ax5xx2"]
    await wait_for(lambda: take.status is OrderStatus.FILLED, STALL_S + 3, "FILLED applied with its fill")
    await wait_for(
        lambda: sum(f.qty for f in om.fills if f.client_order_id == "ax5xx2") == pytest.approx(spec.qty),
        3,
        "the fill",
    )
    await asyncio.sleep(0.3)  # a duplicate (held stream frames + query) would arrive by now
    fills = [f for f in om.fills if f.client_order_id == "ax5xx2"]
    assert len(fills) == len({f.fill_id for f in fills})
    assert sum(f.qty for f in fills) == pytest.approx(spec.qty)
    fee_base = sum(f.fee_base for f in fills)
    assert om.position(spec.key).qty == pytest.approx(spec.qty - fee_base, abs=1e-12)
    assert take.venue_order_id and len(server_orders(server, spec, "ax5xx2")) == 1
    # never re-sent; the unknown outcomes were looked up by client order id (or the stream told
    # first), and nothing concluded "not placed"
    assert queries == ["ax5xx1", "ax5xx2"]
    assert rest.reject_reason in (None, "") and take.reject_reason in (None, "")
    assert server.take_error_after_execute(spec.name) is None  # each fault fired once, disarmed
    await cancel_all(venue, spec)


# ---- 7. MEXC listen-key keep-alive ---------------------------------------------------------------


async def test_mexc_listen_key_keepalive_and_user_data_flows(server):
    spec = SPECS["mexc-spot"]
    async with connected(server, spec, listen_key_keepalive_s=0.2) as venue:
        account = server.accounts_by_key[MEXC_KEY]
        key = venue._listen_key
        assert key is not None
        first_expiry = account.listen_keys[key]
        await wait_for(lambda: venue.listen_key_keepalives >= 2, 2, "two keep-alives")
        assert account.listen_keys[key] > first_expiry  # the simulator extended the key
        # a 5xx on the keep-alive is retried (extending a key is idempotent): same key, no new one
        fault = server.faults.http_error(spec.name, 503, path_prefix="/api/v3/userDataStream")
        done = venue.listen_key_keepalives
        await wait_for(lambda: fault.fired == 1 and venue.listen_key_keepalives > done, 2, "a retried keep-alive")
        assert venue._listen_key == key
        assert (venue.listen_key_renewals, venue.listen_key_keepalive_failures) == (0, 0)
        # user data still flows on the same stream
        events: list[Any] = []
        venue.subscribe(events.append)
        order = await place(venue, taking_buy(server, venue, spec, "ka1"))
        assert order.status is not OrderStatus.REJECTED
        await wait_for(
            lambda: any(isinstance(e, Fill) and e.client_order_id == "ka1" for e in events)
            and any(isinstance(e, OrderUpdate) and e.client_order_id == "ka1" for e in events),
            3,
            "user data after the keep-alives",
        )
        assert venue.private_reconnects == 0


# ---- 4b. lost ack while the private stream is down: the reconnect backfill tells -----------------


async def test_lost_ack_during_private_outage_resolved_by_reconnect_backfill(server, spec, venue):
    venue.resolve_delays_s = ()  # no follow-up query: only the backfill after the reconnect may tell
    om = OrderManager(LiveClock(), {venue.name: venue}, venue.book)
    await venue.wait_synced(spec.key, 5)
    reconnects = venue.private_reconnects
    # the private stream drops, and the order placed meanwhile loses its ack too
    assert server.faults.close_sockets(spec.name) >= 2
    fault = server.faults.lose_ack(spec.name)
    order = await asyncio.wait_for(om.submit(resting_buy(server, venue, spec, "bf1")), 3)
    assert fault.fired == 1 and venue.unknown_outcomes == 1
    await wait_for(lambda: venue.private_reconnects > reconnects, 3, "the private stream back")
    # after the reconnect the connector re-queries what it tracks and delivers what changed
    await wait_for(lambda: order.status is OrderStatus.NEW and om.n_open_orders == 1, 3, "the order's state")
    assert order.venue_order_id and len(server_orders(server, spec, "bf1")) == 1
    await cancel_all(venue, spec)
