"""MEXC spot connector end to end against the loopback simulator (127.0.0.1, port 0): protobuf
market data and book sync, orders by client id, partial fills, balances, the listen-key user
stream, and recovery from a dropped depth update and from a socket close. Every wait is bounded."""

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
from cexarb.venues.sim.server import AccountSpec
from loopback import (
    assert_book_matches_server,
    mexc_spot,
    sim_server,
    started,
    wait_for,
)

KEY, SECRET = "mx-key-1", "mx-secret-1"
BOOK_KEY = "mexc-spot:BTCUSDT"


@pytest.fixture
async def server(binance_dir):
    async with sim_server(binance_dir, AccountSpec(api_key=KEY, api_secret=SECRET)) as srv:
        yield srv


@pytest.fixture
async def venue(server):
    async with started(mexc_spot(server, KEY, SECRET)) as conn:
        yield conn


def taker(inst, server, side: Side, qty: float, cid: str) -> OrderRequest:
    bid, ask = server.market.books[BOOK_KEY].best()
    ticks = ask[0] + 20_000 if side is Side.BUY else bid[0] - 20_000
    return OrderRequest.create(
        inst,
        side,
        qty,
        price_ticks=ticks,
        time_in_force=TimeInForce.IOC,
        client_order_id=cid,
    )


async def test_mexc_spot_market_data_and_book_sync(server, venue):
    assert isinstance(venue, PublicVenue) and isinstance(venue, PrivateVenue)
    inst = venue.instruments()[BOOK_KEY]
    assert (inst.symbol, inst.tick_size, inst.lot_size, inst.min_notional) == (
        "BTCUSDT",
        0.01,
        1e-6,
        1.0,
    )
    events: list[object] = []
    venue.subscribe_market(events.append)
    await venue.wait_synced(BOOK_KEY, 10)
    await wait_for(
        lambda: (
            any(isinstance(e, BookUpdate) for e in events)
            and any(isinstance(e, BookTicker) for e in events)
        ),
        5,
        "book updates and tickers",
    )
    await assert_book_matches_server(venue, server, BOOK_KEY)


async def test_mexc_spot_dropped_depth_update_resyncs(server, venue):
    await venue.wait_synced(BOOK_KEY, 10)
    before = venue.book_manager.resync_count("BTCUSDT")
    server.faults.drop_depth("mexc-spot")
    await wait_for(
        lambda: venue.book_manager.resync_count("BTCUSDT") > before, 5, "a resync"
    )
    await venue.wait_synced(BOOK_KEY, 10)
    await assert_book_matches_server(venue, server, BOOK_KEY)


async def test_mexc_spot_orders_partial_fill_cancel_query(server, venue):
    inst = venue.instruments()[BOOK_KEY]
    events: list[object] = []
    venue.subscribe(events.append)
    start = await asyncio.wait_for(venue.balances(), 5)
    assert start["USDT"].free == 100_000.0 and start["BTC"].free == 1.0
    bid = server.market.books[BOOK_KEY].best()[0]

    rest = OrderRequest.create(
        inst, Side.BUY, 0.001, price_ticks=bid[0] - 200_000, client_order_id="rest1"
    )
    order = await asyncio.wait_for(venue.place_order(rest), 5)
    assert order.status is OrderStatus.NEW and order.venue_order_id
    got = await asyncio.wait_for(venue.get_order(BOOK_KEY, "rest1"), 5)
    assert (
        got is not None
        and got.status is OrderStatus.NEW
        and got.qty == 0.001
        and got.price == rest.price
    )
    assert [
        o.client_order_id
        for o in await asyncio.wait_for(venue.open_orders(BOOK_KEY), 5)
    ] == ["rest1"]
    assert (await asyncio.wait_for(venue.balances(), 5))["USDT"].locked > 0
    assert await asyncio.wait_for(venue.cancel_order(BOOK_KEY, "rest1"), 5) is True
    assert await asyncio.wait_for(venue.cancel_order(BOOK_KEY, "rest1"), 5) is False
    got = await asyncio.wait_for(venue.get_order(BOOK_KEY, "rest1"), 5)
    assert got is not None and got.status is OrderStatus.CANCELED
    assert await asyncio.wait_for(venue.get_order(BOOK_KEY, "nosuch"), 5) is None
    # the same order by the venue's order id
    by_id = await asyncio.wait_for(venue.get_order_by_venue_id(BOOK_KEY, order.venue_order_id), 5)
    assert by_id is not None and by_id.client_order_id == "rest1" and by_id.status is OrderStatus.CANCELED
    assert await asyncio.wait_for(venue.get_order_by_venue_id(BOOK_KEY, "C02__999999999"), 5) is None

    server.faults.partial_fill("mexc-spot", 0.5)
    order = await asyncio.wait_for(
        venue.place_order(taker(inst, server, Side.BUY, 0.004, "part1")), 5
    )
    # the REST ack has no status: the same Order object follows the user-data stream
    await wait_for(
        lambda: order.status is OrderStatus.CANCELED,
        5,
        "terminal status from the stream",
    )
    assert order.filled_qty == pytest.approx(0.002)
    await wait_for(
        lambda: (
            sum(
                e.qty
                for e in events
                if isinstance(e, Fill) and e.client_order_id == "part1"
            )
            == pytest.approx(0.002)
        ),
        5,
        "fills on the stream",
    )
    assert any(
        isinstance(e, OrderUpdate) and e.client_order_id == "part1" for e in events
    )
    got = await asyncio.wait_for(venue.get_order(BOOK_KEY, "part1"), 5)
    assert (
        got is not None
        and got.filled_qty == pytest.approx(0.002)
        and got.status is OrderStatus.CANCELED
    )
    fills = await asyncio.wait_for(venue.fills(BOOK_KEY), 5)
    assert sum(f.qty for f in fills if f.client_order_id == "part1") == pytest.approx(
        0.002
    )
    assert (await asyncio.wait_for(venue.balances(), 5))["BTC"].free == pytest.approx(
        1.002
    )

    for i in range(2):
        req = OrderRequest.create(
            inst, Side.BUY, 0.001, price_ticks=bid[0] - 200_000 - i
        )
        assert (
            await asyncio.wait_for(venue.place_order(req), 5)
        ).status is OrderStatus.NEW
    assert await asyncio.wait_for(venue.cancel_all(BOOK_KEY), 5) == 2
    assert await asyncio.wait_for(venue.open_orders(), 5) == []

    tiny = OrderRequest.create(
        inst, Side.BUY, 0.000001, price_ticks=bid[0] - 200_000, client_order_id="tiny"
    )
    order = await asyncio.wait_for(venue.place_order(tiny), 5)
    assert order.status is OrderStatus.REJECTED and order.reject_reason


async def test_mexc_spot_socket_close_no_lost_or_duplicated_fills(server, venue):
    inst = venue.instruments()[BOOK_KEY]
    fills: list[Fill] = []
    venue.subscribe(lambda e: fills.append(e) if isinstance(e, Fill) else None)
    await venue.wait_synced(BOOK_KEY, 10)

    async def take(cid: str) -> None:
        order = await asyncio.wait_for(
            venue.place_order(taker(inst, server, Side.BUY, 0.001, cid)), 5
        )
        assert order.status is not OrderStatus.REJECTED

    await take("before")
    await wait_for(
        lambda: any(f.client_order_id == "before" for f in fills), 5, "first fill"
    )
    resyncs = venue.book_manager.resync_count("BTCUSDT")
    assert server.faults.close_sockets("mexc-spot") >= 2
    await take("during")
    await wait_for(lambda: venue.private_reconnects >= 1, 5, "private reconnect")
    await take("after")
    expected = {f.fill_id for f in await asyncio.wait_for(venue.fills(BOOK_KEY), 5)}
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
    await wait_for(
        lambda: venue.book_manager.resync_count("BTCUSDT") > resyncs, 5, "book resync"
    )
    await venue.wait_synced(BOOK_KEY, 10)
    await assert_book_matches_server(venue, server, BOOK_KEY)


async def test_mexc_spot_malformed_frames_logged_not_fatal(server, venue, caplog):
    from cexarb.venues.ws import WsFrame

    await venue.wait_synced(BOOK_KEY, 10)
    venue._on_market_event(WsFrame(b"\x0a\xff\xff", time.time_ns(), 0))
    venue._on_private_event(WsFrame(b"\x12\x01", time.time_ns(), 0))
    venue._on_market_event(WsFrame("{nope", time.time_ns(), 0))
    assert venue.decode_errors >= 2 and "malformed" in caplog.text
    await venue.wait_synced(BOOK_KEY, 5)
