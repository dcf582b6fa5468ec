"""Gate.io spot connector end to end against the loopback simulator (127.0.0.1, port 0): market
data and book sync, orders by client id, partial fills, balances, and recovery from a dropped
depth update and from a socket close. Every wait is bounded."""

from __future__ import annotations

import asyncio
import time

import pytest
from cexarb.model import BookTicker, Fill, OrderStatus, Side, TimeInForce
from cexarb.venues.base import (
    BookUpdate,
    OrderRequest,
    OrderUpdate,
    PrivateVenue,
    PublicVenue,
)
from cexarb.venues.gateio.spot import GateSpot
from cexarb.venues.secrets import ApiCredentials
from cexarb.venues.sim.server import AccountSpec
from loopback import (
    assert_book_matches_server,
    gate_spot,
    sim_server,
    started,
    wait_for,
)

KEY, SECRET, UID = "gate-key-1", "gate-secret-1", 10001
SPOT_KEY = "gateio-spot:BTC_USDT"


@pytest.fixture
async def server(binance_dir):
    async with sim_server(binance_dir, AccountSpec(api_key=KEY, api_secret=SECRET, uid=UID)) as srv:
        yield srv


@pytest.fixture
async def venue(server):
    async with started(gate_spot(server, KEY, SECRET, UID)) as conn:
        yield conn


async def test_gate_spot_market_data_and_book_sync(server, venue):
    assert isinstance(venue, PublicVenue) and isinstance(venue, PrivateVenue)
    inst = venue.instruments()[SPOT_KEY]
    assert (inst.symbol, inst.tick_size, inst.lot_size) == ("BTC_USDT", 0.1, 1e-6)
    events: list[object] = []
    venue.subscribe_market(events.append)
    await venue.wait_synced(SPOT_KEY, 10)
    await wait_for(
        lambda: (
            any(isinstance(e, BookUpdate) for e in events)
            and any(isinstance(e, BookTicker) for e in events)
        ),
        5,
        "book updates and tickers",
    )
    assert all(
        e.instrument_key == SPOT_KEY
        for e in events
        if isinstance(e, (BookUpdate, BookTicker))
    )
    await assert_book_matches_server(venue, server, SPOT_KEY)
    stats = venue.book_manager.stats("BTC_USDT")
    assert stats.synced and stats.snapshots >= 1 and stats.resync_count == 0


async def test_gate_spot_dropped_depth_update_resyncs(server, venue):
    await venue.wait_synced(SPOT_KEY, 10)
    before = venue.book_manager.resync_count("BTC_USDT")
    server.faults.drop_depth("gateio-spot")
    await wait_for(
        lambda: venue.book_manager.resync_count("BTC_USDT") > before, 5, "a resync"
    )
    await venue.wait_synced(SPOT_KEY, 10)
    await assert_book_matches_server(venue, server, SPOT_KEY)


async def test_gate_spot_orders_partial_fill_cancel_query(server, venue):
    inst = venue.instruments()[SPOT_KEY]
    events: list[object] = []
    venue.subscribe(events.append)
    book = server.market.books[SPOT_KEY]
    bid, ask = book.best()
    start = await asyncio.wait_for(venue.balances(), 5)
    assert start["USDT"].free == 100_000.0 and start["BTC"].free == 1.0

    # a resting order, queried and cancelled by its client id
    rest = OrderRequest.create(
        inst, Side.BUY, 0.001, price_ticks=bid[0] - 20_000, client_order_id="rest1"
    )
    order = await asyncio.wait_for(venue.place_order(rest), 5)
    assert order.status is OrderStatus.NEW and order.venue_order_id
    got = await asyncio.wait_for(venue.get_order(SPOT_KEY, "rest1"), 5)
    assert (
        got is not None
        and got.status is OrderStatus.NEW
        and got.price == rest.price
        and got.qty == 0.001
    )
    assert [
        o.client_order_id
        for o in await asyncio.wait_for(venue.open_orders(SPOT_KEY), 5)
    ] == ["rest1"]
    bal = await asyncio.wait_for(venue.balances(), 5)
    assert bal["USDT"].locked > 0
    assert await asyncio.wait_for(venue.cancel_order(SPOT_KEY, "rest1"), 5) is True
    assert await asyncio.wait_for(venue.cancel_order(SPOT_KEY, "rest1"), 5) is False
    got = await asyncio.wait_for(venue.get_order(SPOT_KEY, "rest1"), 5)
    assert got is not None and got.status is OrderStatus.CANCELED
    assert await asyncio.wait_for(venue.get_order(SPOT_KEY, "nosuch"), 5) is None
    # the same order by the venue's order id
    by_id = await asyncio.wait_for(venue.get_order_by_venue_id(SPOT_KEY, order.venue_order_id), 5)
    assert by_id is not None and by_id.client_order_id == "rest1" and by_id.status is OrderStatus.CANCELED
    assert await asyncio.wait_for(venue.get_order_by_venue_id(SPOT_KEY, "999999999"), 5) is None

    # partial fill: half the liquidity, the IOC remainder cancelled
    server.faults.partial_fill("gateio-spot", 0.5)
    ioc = OrderRequest.create(
        inst,
        Side.BUY,
        0.004,
        price_ticks=ask[0] + 2_000,
        time_in_force=TimeInForce.IOC,
        client_order_id="part1",
    )
    order = await asyncio.wait_for(venue.place_order(ioc), 5)
    assert order.status is OrderStatus.CANCELED and order.filled_qty == pytest.approx(
        0.002
    )
    await wait_for(
        lambda: (
            sum(
                e.qty
                for e in events
                if isinstance(e, Fill) and e.client_order_id == "part1"
            )
            == pytest.approx(0.002)
            and any(
                isinstance(e, OrderUpdate)
                and e.client_order_id == "part1"
                and e.status.is_terminal
                for e in events
            )
        ),
        5,
        "fills and final order update on the stream",
    )
    got = await asyncio.wait_for(venue.get_order(SPOT_KEY, "part1"), 5)
    assert (
        got is not None
        and got.filled_qty == pytest.approx(0.002)
        and got.status is OrderStatus.CANCELED
    )
    fills = await asyncio.wait_for(venue.fills(SPOT_KEY), 5)
    assert sum(f.qty for f in fills if f.client_order_id == "part1") == pytest.approx(
        0.002
    )
    bal = await asyncio.wait_for(venue.balances(), 5)
    # Gate charges a spot buy's fee in the base currency received (fee_currency BTC)
    assert bal["BTC"].free == pytest.approx(1.002 - 0.002 * inst.taker_fee, abs=1e-12)

    # cancel-all; a client order id is assigned when none is given
    for i in range(2):
        req = OrderRequest.create(
            inst, Side.SELL, 0.001, price_ticks=ask[0] + 20_000 + i
        )
        placed = await asyncio.wait_for(venue.place_order(req), 5)
        assert placed.client_order_id and placed.status is OrderStatus.NEW
    assert await asyncio.wait_for(venue.cancel_all(SPOT_KEY), 5) == 2
    assert await asyncio.wait_for(venue.open_orders(), 5) == []

    # a venue rejection comes back as a REJECTED order, not an exception
    huge = OrderRequest.create(
        inst, Side.BUY, 100.0, price_ticks=bid[0] - 20_000, client_order_id="huge"
    )
    order = await asyncio.wait_for(venue.place_order(huge), 5)
    assert (
        order.status is OrderStatus.REJECTED
        and order.reject_reason == "BALANCE_NOT_ENOUGH"
    )


async def test_gate_spot_socket_close_no_lost_or_duplicated_fills(server, venue):
    inst = venue.instruments()[SPOT_KEY]
    fills: list[Fill] = []
    venue.subscribe(lambda e: fills.append(e) if isinstance(e, Fill) else None)
    await venue.wait_synced(SPOT_KEY, 10)

    async def take(cid: str) -> None:
        ask = server.market.books[SPOT_KEY].best()[1]
        req = OrderRequest.create(
            inst,
            Side.BUY,
            0.001,
            price_ticks=ask[0] + 2_000,
            time_in_force=TimeInForce.IOC,
            client_order_id=cid,
        )
        order = await asyncio.wait_for(venue.place_order(req), 5)
        assert order.status is OrderStatus.FILLED

    await take("before")
    await wait_for(
        lambda: any(f.client_order_id == "before" for f in fills), 5, "first fill"
    )
    resyncs = venue.book_manager.resync_count("BTC_USDT")
    assert server.faults.close_sockets("gateio-spot") >= 2  # market and private sockets
    await take("during")  # executed while the private stream is down or reconnecting
    await wait_for(lambda: venue.private_reconnects >= 1, 5, "private reconnect")
    await take("after")
    server_fills = await asyncio.wait_for(venue.fills(SPOT_KEY), 5)
    expected = {f.fill_id for f in server_fills}
    await wait_for(
        lambda: {f.fill_id for f in fills} >= expected, 5, "every fill delivered"
    )
    ids = [f.fill_id for f in fills]
    assert len(ids) == len(set(ids)), "a fill was delivered twice"
    assert set(ids) == expected
    for cid in ("before", "during", "after"):
        assert sum(f.qty for f in fills if f.client_order_id == cid) == pytest.approx(
            0.001
        )
    # the market stream came back too: that book resynchronised and matches the server
    await wait_for(
        lambda: venue.book_manager.resync_count("BTC_USDT") > resyncs, 5, "book resync"
    )
    await venue.wait_synced(SPOT_KEY, 10)
    await assert_book_matches_server(venue, server, SPOT_KEY)


async def test_gate_spot_malformed_frame_is_logged_not_fatal(server, venue, caplog):
    from cexarb.venues.ws import WsFrame

    await venue.wait_synced(SPOT_KEY, 10)
    before = venue.decode_errors
    venue._on_market_event(WsFrame("{not json", time.time_ns(), 0))
    assert venue.decode_errors == before + 1
    # an order push without currency_pair decodes but names no instrument: logged and counted
    venue._on_private_event(
        WsFrame('{"channel":"spot.orders","event":"update","result":[{"id":1}]}', 0, 0)
    )
    assert venue.decode_errors == before + 2
    assert "malformed" in caplog.text and "currency_pair missing or empty" in caplog.text
    # one for a pair this connector does not trade: counted apart, not a decode error
    venue._on_private_event(
        WsFrame(
            '{"channel":"spot.orders","event":"update","result":[{"id":"2","currency_pair":"DOGE_USDT"}]}',
            0,
            0,
        )
    )
    assert venue.decode_errors == before + 2 and venue.unknown_symbol_pushes == 1
    assert "'DOGE_USDT'" in caplog.text
    await venue.wait_synced(SPOT_KEY, 5)


async def test_gate_spot_market_buy_goes_out_as_an_ioc_limit_for_the_exact_base_qty(server, venue):
    """Gate spot market buys take quote to spend; ours buy an exact base qty via an IOC limit."""
    from cexarb.model import OrderType

    await venue.wait_synced(SPOT_KEY, 5)
    inst = venue.instruments()[SPOT_KEY]
    _, ask = server.market.books[SPOT_KEY].best()
    market = OrderRequest.create(inst, Side.BUY, 0.003, type=OrderType.MARKET, client_order_id="mkt1")
    wire = venue.market_buy_as_ioc_limit(market)
    assert wire.type is OrderType.LIMIT and wire.time_in_force is TimeInForce.IOC and wire.wire_qty == market.wire_qty
    assert wire.price_ticks is not None and wire.price_ticks >= ask[0]
    order = await asyncio.wait_for(venue.place_order(market), 5)
    assert order.type is OrderType.MARKET and order.status is OrderStatus.FILLED
    assert order.filled_qty == pytest.approx(0.003, abs=1e-12)
    seen = await asyncio.wait_for(venue.get_order(SPOT_KEY, "mkt1"), 5)
    assert seen is not None and seen.price == wire.price and seen.filled_qty == pytest.approx(0.003, abs=1e-12)
    # without a book to price it, a market buy is refused locally: nothing reaches the venue
    unstarted = GateSpot(ApiCredentials("k", "s"), rest_url=server.base_url)
    with pytest.raises(ValueError, match="needs its book"):
        unstarted.market_buy_as_ioc_limit(market)


async def test_gate_spot_order_the_client_limiter_cannot_fit_is_rejected_locally(server):
    """Gate allows 10 spot orders/s per pair: an 11th that cannot get a slot before the order
    deadline comes back REJECTED by our own limiter and never reaches the venue."""
    conn = gate_spot(server, KEY, SECRET, UID, order_timeout_s=0.2)
    async with conn:
        inst = conn.instruments()[SPOT_KEY]
        bid = server.market.books[SPOT_KEY].best()[0]
        before = sum(v.n_orders for acc in server.accounts for v in acc.venues.values())
        orders = []
        for i in range(11):
            req = OrderRequest.create(inst, Side.BUY, 0.001, price_ticks=bid[0] - 20_000 - i,
                                      time_in_force=TimeInForce.IOC, client_order_id=f"rl{i}")
            orders.append(await asyncio.wait_for(conn.place_order(req), 5))
        assert all(o.status is not OrderStatus.REJECTED for o in orders[:10]), [o.reject_reason for o in orders]
        last = orders[10]
        assert last.status is OrderStatus.REJECTED and last.reject_reason.startswith("client rate limit"), last
        after = sum(v.n_orders for acc in server.accounts for v in acc.venues.values())
        assert after - before == 10


async def test_gate_spot_tracks_a_bounded_number_of_finished_orders(server):
    """A long run's tracked orders stay bounded (cexarb.retention): finished ones beyond the
    newest ``max_terminal_orders`` go, open ones stay, and the venue's late pushes for an evicted
    order still reach the handlers."""
    async with started(
        gate_spot(server, KEY, SECRET, UID, max_terminal_orders=3, terminal_order_min_age_s=0.0)
    ) as venue:
        inst = venue.instruments()[SPOT_KEY]
        events: list[object] = []
        venue.subscribe(events.append)
        await venue.wait_synced(SPOT_KEY, 10)
        bid, ask = server.market.books[SPOT_KEY].best()

        def ioc(cid: str) -> OrderRequest:
            return OrderRequest.create(
                inst, Side.BUY, 0.001, price_ticks=ask[0] + 2_000, time_in_force=TimeInForce.IOC, client_order_id=cid
            )

        await asyncio.wait_for(venue.place_order(ioc("warm")), 5)  # the private stream is up once its fill is in
        await wait_for(lambda: any(isinstance(e, Fill) and e.client_order_id == "warm" for e in events), 5, "first fill")
        rest = OrderRequest.create(inst, Side.BUY, 0.001, price_ticks=bid[0] - 20_000, client_order_id="keep1")
        assert (await asyncio.wait_for(venue.place_order(rest), 5)).status is OrderStatus.NEW
        ids = [f"ioc{i}" for i in range(12)]
        for cid in ids:
            await asyncio.wait_for(venue.place_order(ioc(cid)), 5)
        await wait_for(
            lambda: {e.client_order_id for e in events if isinstance(e, OrderUpdate) and e.status.is_terminal}
            >= set(ids),
            5,
            "every IOC order finished",
        )
        tracked = set(venue._orders)
        assert "keep1" in tracked  # open: always tracked
        assert len(tracked - {"keep1"}) <= 3 + 1  # the bound (plus one noted as the last finished)
        assert venue.order_retention.evicted >= len(ids) - 4
        assert {"ioc0", "ioc1"}.isdisjoint(tracked)
        assert ids[-1] in tracked
        # every fill still reached the handlers once
        fills = [e for e in events if isinstance(e, Fill)]
        assert sorted({f.client_order_id for f in fills}) == sorted([*ids, "warm"])
        assert len(fills) == len({f.fill_id for f in fills})
