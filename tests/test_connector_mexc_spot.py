"""MEXC spot connector end to end against the loopback simulator (127.0.0.1, port 0): protobuf
market data and book sync, orders by client id, partial fills, balances, the listen-key user
stream, and recovery from a dropped depth update and from a socket close. Every wait is bounded."""

from __future__ import annotations

import asyncio
import time

import pytest
from cexarb.model import BookTicker, Fill, OrderStatus, OrderType, Side, TimeInForce
from cexarb.venues.base import (
    BookUpdate,
    OrderRequest,
    OrderUpdate,
    PrivateVenue,
    PublicVenue,
)
from cexarb.venues.mexc import codec
from cexarb.venues.mexc.spot import MexcSpot
from cexarb.venues.secrets import ApiCredentials
from cexarb.venues.sim.server import AccountSpec
from cexarb.venues.ws import WsConnected, WsDisconnected
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
    # a MEXC buy pays its fee in the base received (taker rate 0.05 %): 0.002 BTC less the fee
    assert (await asyncio.wait_for(venue.balances(), 5))["BTC"].free == pytest.approx(
        1.0 + 0.002 * (1 - inst.taker_fee), abs=1e-12
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
    before = venue.decode_errors
    venue._on_market_event(WsFrame(b"\x0a\xff\xff", time.time_ns(), 0))
    assert venue.decode_errors == before + 1
    venue._on_private_event(WsFrame(b"\x12\x01", time.time_ns(), 0))
    assert venue.decode_errors == before + 2
    venue._on_market_event(WsFrame("{nope", time.time_ns(), 0))
    assert venue.decode_errors == before + 3 and "malformed" in caplog.text
    await venue.wait_synced(BOOK_KEY, 5)


# ---- market buys: an IOC limit for the exact base quantity -------------------------------------


async def test_mexc_spot_market_buy_goes_out_as_ioc_limit_and_fills_the_base_qty(server, venue):
    """MEXC MARKET buys take quote to spend (PROTOCOLS.md §1.2); ours go out as
    IMMEDIATE_OR_CANCEL for the exact base qty at the book's price + the band, ceil to the tick."""
    inst = venue.instruments()[BOOK_KEY]
    await venue.wait_synced(BOOK_KEY, 10)
    account = server.accounts[0]
    server.market.paused = True  # a still book: the price the test expects is the one sent
    try:
        await assert_book_matches_server(venue, server, BOOK_KEY)
        market = OrderRequest.create(inst, Side.BUY, 0.003, type=OrderType.MARKET, client_order_id="mkt1")
        worst = venue.book(BOOK_KEY).executable_price("buy", 0.003).worst_price
        assert worst is not None
        worst_ticks = round(worst / inst.tick_size)
        limit_ticks = -(-worst_ticks * (10_000 + 50) // 10_000)  # +50 bps, rounded up
        assert venue.market_buy_band_bps == 50.0
        method, path, params, body = venue._order_wire(market)
        assert (method, path, body) == ("POST", "/api/v3/order", b"")
        assert params == [
            ("symbol", "BTCUSDT"),
            ("side", "BUY"),
            ("type", "IMMEDIATE_OR_CANCEL"),
            ("quantity", "0.003000"),
            ("price", inst.format_price(limit_ticks)),
            ("newClientOrderId", "mkt1"),
        ]
        order = await asyncio.wait_for(venue.place_order(market), 5)
        assert order.type is OrderType.MARKET and order.status is not OrderStatus.REJECTED, order.reject_reason
        await wait_for(lambda: order.status is OrderStatus.FILLED, 5, "the market buy filled")
        assert order.filled_qty == pytest.approx(0.003, abs=1e-12)
        record = account.record_by_text("mexc-spot", "mkt1")
        assert record is not None
        assert (record.wire_type, record.amount_str, record.price_str) == (
            "IMMEDIATE_OR_CANCEL",
            "0.003000",
            inst.format_price(limit_ticks),
        )
        # a market sell is still a MARKET order with the base quantity
        sell = OrderRequest.create(inst, Side.SELL, 0.002, type=OrderType.MARKET, client_order_id="mkt2")
        assert ("type", "MARKET") in venue._order_wire(sell)[2]
        order = await asyncio.wait_for(venue.place_order(sell), 5)
        await wait_for(lambda: order.status is OrderStatus.FILLED, 5, "the market sell filled")
        assert order.filled_qty == pytest.approx(0.002, abs=1e-12)
        record = account.record_by_text("mexc-spot", "mkt2")
        assert record is not None and (record.wire_type, record.amount_str) == ("MARKET", "0.002000")
    finally:
        server.market.paused = False


async def test_mexc_spot_market_buy_without_a_book_is_rejected_locally(server, venue):
    inst = venue.instruments()[BOOK_KEY]
    account = server.accounts[0]
    market = OrderRequest.create(inst, Side.BUY, 0.001, type=OrderType.MARKET, client_order_id="nobook1")
    # a connector that is not started has no book at all
    unstarted = MexcSpot(ApiCredentials(KEY, SECRET), rest_url=server.base_url, symbols=["BTCUSDT"])
    order = await asyncio.wait_for(unstarted.place_order(market), 5)
    assert order.status is OrderStatus.REJECTED
    assert "mexc-spot: market buy of BTCUSDT needs its book" in (order.reject_reason or "")
    # a book out of sync is not priced from either: rejected before anything is sent
    await venue.wait_synced(BOOK_KEY, 10)
    venue.book_manager.invalidate_all("test")
    order = await asyncio.wait_for(venue.place_order(market), 5)
    assert order.status is OrderStatus.REJECTED
    assert "needs the local book to price it: book not in sync" in (order.reject_reason or "")
    assert account.record_by_text("mexc-spot", "nobook1") is None
    await venue.wait_synced(BOOK_KEY, 10)  # the next push resyncs it


# ---- market channels over several connections (<= 30 per connection) ---------------------------


def _public_subs(server) -> list[list[str]]:
    """The channel sets of the simulator's open public MEXC sockets, smallest first."""
    out = []
    for conn in list(server.sockets["mexc-spot"]):
        session = conn.state.get("mexc_session")
        if conn.private or conn.closed or session is None:
            continue
        out.append(sorted(session.subs))
    return sorted(out, key=lambda subs: (len(subs), subs))


async def test_mexc_spot_market_channels_split_over_connections(server):
    with pytest.raises(ValueError, match="max_channels_per_connection"):
        MexcSpot(rest_url=server.base_url, max_channels_per_connection=31)
    with pytest.raises(ValueError, match="max_channels_per_connection"):
        MexcSpot(rest_url=server.base_url, max_channels_per_connection=0)
    depth = codec.channel_aggre_depth("BTCUSDT")
    deals = codec.channel_aggre_deals("BTCUSDT")
    ticker = codec.channel_aggre_book_ticker("BTCUSDT")
    async with started(mexc_spot(server, KEY, SECRET, max_channels_per_connection=2)) as venue:
        conns = venue.market_connections
        assert len(conns) == 2 and conns[0] is venue._ws_market
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
        expected = [[ticker], sorted([depth, deals])]
        await wait_for(lambda: _public_subs(server) == expected, 5, "two public sockets")
        resyncs = venue.book_manager.resync_count("BTCUSDT")
        # the simulator closes the ticker socket only: that connection alone reconnects and
        # resubscribes its own channel; the book connection and the book are untouched
        target = next(
            c for c in server.sockets["mexc-spot"] if ticker in getattr(c.state.get("mexc_session"), "subs", {})
        )
        target.close_soon(abort=False, code=1012, message=b"test close")
        await wait_for(lambda: conns[1].reconnects == 1 and conns[1].connected.is_set(), 5, "ticker reconnect")
        assert (conns[0].connects, conns[0].reconnects) == (1, 0)
        assert conns[1].subscriptions == ["public:1"] and conns[0].subscriptions == ["public:0"]
        await wait_for(lambda: _public_subs(server) == expected, 5, "the ticker resubscribed")
        n = len(events)
        await wait_for(
            lambda: any(isinstance(e, BookTicker) for e in events[n:])
            and any(isinstance(e, BookUpdate) for e in events[n:]),
            5,
            "tickers and book updates after the reconnect",
        )
        assert venue.book_manager.resync_count("BTCUSDT") == resyncs
        assert venue.book(BOOK_KEY).is_valid
        await assert_book_matches_server(venue, server, BOOK_KEY)
        # now the simulator closes the depth socket: that connection reconnects and its book
        # resyncs exactly once (invalidated on the disconnect, one snapshot after the reconnect);
        # the ticker connection is untouched
        depth_socket = next(
            c for c in server.sockets["mexc-spot"] if depth in getattr(c.state.get("mexc_session"), "subs", {})
        )
        snapshots = venue.book_manager.stats("BTCUSDT").snapshots
        depth_socket.close_soon(abort=False, code=1012, message=b"test close")
        await wait_for(lambda: conns[0].reconnects == 1 and conns[0].connected.is_set(), 5, "depth reconnect")
        await wait_for(lambda: venue.book_manager.stats("BTCUSDT").snapshots > snapshots, 5, "a snapshot")
        await venue.wait_synced(BOOK_KEY, 10)
        assert venue.book_manager.resync_count("BTCUSDT") == resyncs + 1
        assert venue.book_manager.stats("BTCUSDT").snapshots == snapshots + 1
        assert (conns[1].connects, conns[1].reconnects) == (2, 1)
        await wait_for(lambda: _public_subs(server) == expected, 5, "the depth resubscribed")
        await assert_book_matches_server(venue, server, BOOK_KEY)
        resyncs += 1
        # a connection handler scoped to some books: events of a book-less connection touch no
        # book; a disconnect or reconnect of one carrying other books leaves this book alone (the
        # simulator serves one MEXC symbol: a second, stream-less book stands for them)
        venue._market_conn_handler(frozenset())(WsDisconnected(9, "test"))
        assert venue.book(BOOK_KEY).is_valid
        other = venue.book_manager.add_symbol("ETHUSDT", 0.01, 0.0001)
        btc = venue.book_manager.stats("BTCUSDT")
        venue._market_conn_handler(frozenset({"ETHUSDT"}))(WsDisconnected(9, "test"))
        venue._market_conn_handler(frozenset({"ETHUSDT"}))(WsConnected(9, True))
        assert venue.book(BOOK_KEY).is_valid and venue.book_manager.is_synced("BTCUSDT")
        assert venue.book_manager.resync_count("BTCUSDT") == resyncs and not other.is_valid
        assert venue.book_manager.stats("BTCUSDT").snapshots == btc.snapshots
        # ... and one carrying this book: a disconnect invalidates it (one resync), the reconnect
        # fetches its snapshot without counting a second one
        venue._market_conn_handler(frozenset({"BTCUSDT"}))(WsDisconnected(9, "test"))
        assert not venue.book(BOOK_KEY).is_valid and not venue.book_manager.is_synced("BTCUSDT")
        assert venue.book_manager.resync_count("BTCUSDT") == resyncs + 1
        venue._market_conn_handler(frozenset({"BTCUSDT"}))(WsConnected(9, True))
        assert venue.book_manager.resync_count("BTCUSDT") == resyncs + 1
        await venue.wait_synced(BOOK_KEY, 10)
        venue._market_conn_handler(frozenset({"BTCUSDT"}))(WsConnected(9, True))  # a reconnect alone
        assert venue.book_manager.resync_count("BTCUSDT") == resyncs + 2
        await venue.wait_synced(BOOK_KEY, 10)
    # closing the connector closed every market connection
    assert all(not ws.connected.is_set() and ws._task is None for ws in conns)
    await wait_for(lambda: not server.sockets["mexc-spot"], 5, "every simulator socket closed")


async def test_mexc_spot_default_is_one_market_connection(server, venue):
    assert len(venue.market_connections) == 1
    assert _public_subs(server) == [
        sorted(
            [
                codec.channel_aggre_depth("BTCUSDT"),
                codec.channel_aggre_deals("BTCUSDT"),
                codec.channel_aggre_book_ticker("BTCUSDT"),
            ]
        )
    ]


# ---- account pushes -> the balance cache -------------------------------------------------------


async def test_mexc_spot_account_pushes_update_the_balance_cache(server, venue):
    inst = venue.instruments()[BOOK_KEY]
    sim = server.accounts[0].venues["mexc-spot"]
    await venue.wait_synced(BOOK_KEY, 10)
    assert venue.cached_balances() == {} and venue.cached_balance("BTC") is None
    order = await asyncio.wait_for(venue.place_order(taker(inst, server, Side.BUY, 0.002, "bal1")), 5)
    await wait_for(lambda: order.status is OrderStatus.FILLED, 5, "the fill")

    def cache_is_current() -> bool:
        now = sim.balances_now()
        cached = venue.cached_balances()
        return all(
            a in cached
            and cached[a].free == pytest.approx(now[a].free, rel=0, abs=1e-9)
            and cached[a].locked == pytest.approx(now[a].locked, rel=0, abs=1e-9)
            for a in ("BTC", "USDT")
        )

    await wait_for(cache_is_current, 5, "account pushes for BTC and USDT")
    assert venue.balance_pushes >= 2
    cached = venue.cached_balances()
    # the buy's fee was taken from the BTC received (MEXC commissionAsset = base)
    assert cached["BTC"].free == pytest.approx(1.0 + 0.002 * (1 - inst.taker_fee), abs=1e-9)
    rest = await asyncio.wait_for(venue.balances(), 5)  # the simulator's REST view
    assert cached["BTC"] == rest["BTC"] and cached["USDT"] == rest["USDT"]
    cached["BTC"].free = -1.0  # a copy: the cache is not changed through it
    assert venue.cached_balance("BTC") == rest["BTC"]
    # the private stream drops: nothing stale is served, and the reconnect refreshes from REST
    reconnects = venue.private_reconnects
    assert server.faults.close_sockets("mexc-spot") >= 1
    await wait_for(lambda: venue.private_reconnects > reconnects and cache_is_current(), 10,
                   "the private reconnect and the cache refreshed from REST")
    assert venue.cached_balance("BTC") == (await asyncio.wait_for(venue.balances(), 5))["BTC"]


# ---- a cancel whose answer was lost ------------------------------------------------------------


async def test_mexc_spot_cancel_whose_reply_was_lost_or_5xx_is_confirmed(server, venue):
    inst = venue.instruments()[BOOK_KEY]
    bid = server.market.books[BOOK_KEY].best()[0]
    oe = venue._oe
    for n, status in enumerate((None, 503)):
        cid = f"lost{n}"
        req = OrderRequest.create(inst, Side.BUY, 0.001, price_ticks=bid[0] - 200_000 - n, client_order_id=cid)
        order = await asyncio.wait_for(venue.place_order(req), 5)
        assert order.status is OrderStatus.NEW
        losses = oe.connection_losses
        # the venue cancels the order, but the answer is lost (dropped connection: the client
        # retries and hears "unknown order") or is a 5xx: a query confirms the cancel
        server.mexc.fail_cancel_replies(1, status=status)
        assert await asyncio.wait_for(venue.cancel_order(BOOK_KEY, cid), 5) is True
        assert server.mexc.cancel_replies_failed == n + 1
        if status is None:
            assert oe.connection_losses > losses
        assert order.status is OrderStatus.CANCELED
        # the same cancel again: the order was no longer open
        assert await asyncio.wait_for(venue.cancel_order(BOOK_KEY, cid), 5) is False
    assert await asyncio.wait_for(venue.cancel_order(BOOK_KEY, "never-placed"), 5) is False
