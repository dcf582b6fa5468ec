"""Gate.io USDT futures connector end to end against the loopback simulator (127.0.0.1, port 0):
contracts, book sync (one depth setting for subscription and snapshot), funding, orders by client id, partial fills, positions, balances, and
recovery from a dropped depth update and from a socket close. Every wait is bounded."""

from __future__ import annotations

import asyncio
import time

import pytest
from cexarb.model import (
    BookTicker,
    Fill,
    InstrumentKind,
    OrderStatus,
    Side,
    TimeInForce,
)
from cexarb.venues.base import (
    BookUpdate,
    OrderRequest,
    OrderUpdate,
    PrivateVenue,
    PublicVenue,
)
from cexarb.venues.gateio.futures import DEFAULT_DEPTH, GateUsdtFutures
from cexarb.venues.rest import RestClient
from cexarb.venues.sim.server import AccountSpec
from loopback import (
    assert_book_matches_server,
    gate_futures,
    sim_server,
    started,
    wait_for,
)

KEY, SECRET, UID = "gate-key-1", "gate-secret-1", 10001
FUT_KEY = "gateio-futures:BTC_USDT"


@pytest.fixture
async def server(binance_dir):
    async with sim_server(binance_dir, AccountSpec(api_key=KEY, api_secret=SECRET, uid=UID)) as srv:
        yield srv


@pytest.fixture
async def venue(server):
    # no uid in the credentials: the connector reads it from /account/detail
    async with started(gate_futures(server, KEY, SECRET)) as conn:
        yield conn


def taker(inst, server, side: Side, contracts: int, cid: str, **kw) -> OrderRequest:
    bid, ask = server.market.books[FUT_KEY].best()
    ticks = ask[0] + 2_000 if side is Side.BUY else bid[0] - 2_000
    return OrderRequest.create(
        inst,
        side,
        float(contracts),
        price_ticks=ticks,
        time_in_force=TimeInForce.IOC,
        client_order_id=cid,
        **kw,
    )


async def test_gate_futures_market_data_funding_and_book_sync(server, venue):
    assert isinstance(venue, PublicVenue) and isinstance(venue, PrivateVenue)
    inst = venue.instruments()[FUT_KEY]
    assert inst.kind is InstrumentKind.PERP
    assert (inst.tick_size, inst.lot_size, inst.contract_size) == (0.1, 1.0, 0.0001)
    info = venue.funding(FUT_KEY)
    assert info is not None and info.instrument_key == FUT_KEY
    assert info.rate == pytest.approx(0.0001)  # the simulator's rate, per 8 h interval
    assert info.next_funding_ns == server.funding_next_s * 1_000_000_000 > time.time_ns()
    assert info.interval_ns == 8 * 3600 * 1_000_000_000
    assert 0 < time.time_ns() - info.updated_ns < 60 * 1_000_000_000 and not info.assumed
    events: list[object] = []
    venue.subscribe_market(events.append)
    await venue.wait_synced(FUT_KEY, 10)
    await wait_for(
        lambda: (
            any(isinstance(e, BookUpdate) for e in events)
            and any(isinstance(e, BookTicker) for e in events)
        ),
        5,
        "book updates and tickers",
    )
    await venue.refresh_funding()
    assert any(
        type(e).__name__ == "FundingEvent" and e.instrument_key == FUT_KEY
        for e in events
    )
    await assert_book_matches_server(venue, server, FUT_KEY)


def test_gate_futures_depth_must_be_a_level_gate_offers():
    """PROTOCOLS.md §3.4: futures.order_book_update levels 100/50/20, the 20 ms interval only 20."""
    for depth, interval in ((300, "100ms"), (10, "100ms"), (50, "20ms"), ("100", "100ms"), (100.0, "100ms")):
        with pytest.raises(ValueError, match=rf"depth must be one of .* got {depth!r}"):
            GateUsdtFutures(depth=depth, depth_interval=interval)
    with pytest.raises(ValueError, match="depth_interval must be one of .* got '1000ms'"):
        GateUsdtFutures(depth_interval="1000ms")
    with pytest.raises(ValueError, match="funding_retry_s must be finite and > 0, got 0"):
        GateUsdtFutures(funding_retry_s=0)
    assert GateUsdtFutures().depth == DEFAULT_DEPTH == 100
    assert GateUsdtFutures(depth=20, depth_interval="20ms").depth == 20


def _depth_levels_subscribed(server) -> list[int]:
    """The levels of the futures.order_book_update subscriptions the simulator parsed off the wire."""
    levels = []
    for session in list(server.gate.sessions):
        for channel, item in list(session.book_subs):
            if channel == "futures.order_book_update":
                levels.append(int(item.split("|")[2]))
    return levels


@pytest.mark.parametrize("depth", [20, None])
async def test_gate_futures_subscribed_level_equals_snapshot_limit(server, monkeypatch, depth):
    """One depth setting: the level the simulator receives in the subscription is the limit of the
    REST snapshot requests (PROTOCOLS.md §3.5), and the book stays the simulator's after updates
    and after a resync (a second snapshot)."""
    snapshot_limits: list[str] = []
    real_get = RestClient.get

    async def recording_get(self, path, params=(), **kwargs):
        if path.endswith("/futures/usdt/order_book"):
            snapshot_limits.append(dict(params)["limit"])
        return await real_get(self, path, params, **kwargs)

    monkeypatch.setattr(RestClient, "get", recording_get)
    options = {} if depth is None else {"depth": depth}
    expected = DEFAULT_DEPTH if depth is None else depth
    async with started(gate_futures(server, KEY, SECRET, **options)) as conn:
        await conn.wait_synced(FUT_KEY, 10)
        await wait_for(lambda: len(_depth_levels_subscribed(server)) == 1, 5, "the depth subscription")
        assert _depth_levels_subscribed(server) == [expected]
        assert snapshot_limits and set(snapshot_limits) == {str(expected)}
        updates: list[object] = []
        conn.subscribe_market(lambda e: updates.append(e) if isinstance(e, BookUpdate) else None)
        await wait_for(lambda: len(updates) >= 5, 10, "book updates after the snapshot")
        n = min(20, expected // 2)  # a depth-limited book is exact well inside its depth
        await assert_book_matches_server(conn, server, FUT_KEY, n=n)
        before = conn.book_manager.resync_count("BTC_USDT")
        server.faults.drop_depth("gateio-futures")
        await wait_for(lambda: conn.book_manager.resync_count("BTC_USDT") > before, 5, "a resync")
        await conn.wait_synced(FUT_KEY, 10)
        assert len(snapshot_limits) >= 2 and set(snapshot_limits) == {str(expected)}
        await assert_book_matches_server(conn, server, FUT_KEY, n=n)


async def test_gate_futures_dropped_depth_update_resyncs(server, venue):
    await venue.wait_synced(FUT_KEY, 10)
    before = venue.book_manager.resync_count("BTC_USDT")
    server.faults.drop_depth("gateio-futures")
    await wait_for(
        lambda: venue.book_manager.resync_count("BTC_USDT") > before, 5, "a resync"
    )
    await venue.wait_synced(FUT_KEY, 10)
    await assert_book_matches_server(venue, server, FUT_KEY)


async def test_gate_futures_orders_positions_balances(server, venue):
    inst = venue.instruments()[FUT_KEY]
    events: list[object] = []
    venue.subscribe(events.append)
    start = await asyncio.wait_for(venue.balances(), 5)
    assert start["USDT"].free == 100_000.0
    assert all(
        p.qty == 0 for p in (await asyncio.wait_for(venue.positions(), 5)).values()
    )

    order = await asyncio.wait_for(
        venue.place_order(taker(inst, server, Side.BUY, 10, "open1")), 5
    )
    assert order.status is OrderStatus.FILLED and order.filled_qty == 10
    pos = await asyncio.wait_for(venue.positions(), 5)
    assert pos[FUT_KEY].qty == 10 and pos[FUT_KEY].avg_price > 0
    bal = await asyncio.wait_for(venue.balances(), 5)
    assert bal["USDT"].locked > 0 and bal["USDT"].free < 100_000.0

    # partial fill of an IOC: half the contracts, the rest cancelled
    server.faults.partial_fill("gateio-futures", 0.5)
    order = await asyncio.wait_for(
        venue.place_order(taker(inst, server, Side.BUY, 4, "part1")), 5
    )
    assert order.status is OrderStatus.CANCELED and order.filled_qty == 2
    await wait_for(
        lambda: (
            sum(
                e.qty
                for e in events
                if isinstance(e, Fill) and e.client_order_id == "part1"
            )
            == 2
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
    got = await asyncio.wait_for(venue.get_order(FUT_KEY, "part1"), 5)
    assert (
        got is not None
        and got.filled_qty == 2
        and got.status is OrderStatus.CANCELED
        and got.side is Side.BUY
    )
    assert (await asyncio.wait_for(venue.positions(), 5))[FUT_KEY].qty == 12
    await wait_for(
        lambda: (
            venue.cached_positions().get(FUT_KEY) is not None
            and venue.cached_positions()[FUT_KEY].qty == 12
        ),
        5,
        "position push",
    )

    # a resting order: queried, listed, cancelled by client id
    bid = server.market.books[FUT_KEY].best()[0]
    rest = OrderRequest.create(
        inst, Side.BUY, 3.0, price_ticks=bid[0] - 10_000, client_order_id="rest1"
    )
    order = await asyncio.wait_for(venue.place_order(rest), 5)
    assert order.status is OrderStatus.NEW
    got = await asyncio.wait_for(venue.get_order(FUT_KEY, "rest1"), 5)
    assert (
        got is not None
        and got.status is OrderStatus.NEW
        and got.qty == 3
        and got.price == rest.price
    )
    assert [
        o.client_order_id for o in await asyncio.wait_for(venue.open_orders(FUT_KEY), 5)
    ] == ["rest1"]
    assert await asyncio.wait_for(venue.cancel_order(FUT_KEY, "rest1"), 5) is True
    assert await asyncio.wait_for(venue.cancel_order(FUT_KEY, "rest1"), 5) is False
    got = await asyncio.wait_for(venue.get_order(FUT_KEY, "rest1"), 5)
    assert got is not None and got.status is OrderStatus.CANCELED
    assert await asyncio.wait_for(venue.get_order(FUT_KEY, "nosuch"), 5) is None
    # the same order by the venue's order id
    by_id = await asyncio.wait_for(venue.get_order_by_venue_id(FUT_KEY, order.venue_order_id), 5)
    assert by_id is not None and by_id.client_order_id == "rest1" and by_id.status is OrderStatus.CANCELED
    assert await asyncio.wait_for(venue.get_order_by_venue_id(FUT_KEY, "999999999"), 5) is None

    # cancel-all
    for i in range(2):
        req = OrderRequest.create(inst, Side.BUY, 1.0, price_ticks=bid[0] - 10_000 - i)
        assert (
            await asyncio.wait_for(venue.place_order(req), 5)
        ).status is OrderStatus.NEW
    assert await asyncio.wait_for(venue.cancel_all(), 5) == 2
    assert await asyncio.wait_for(venue.open_orders(), 5) == []

    # reduce-only: the wrong direction is rejected, closing works
    wrong = taker(inst, server, Side.BUY, 1, "ro-bad", reduce_only=True)
    assert (
        await asyncio.wait_for(venue.place_order(wrong), 5)
    ).status is OrderStatus.REJECTED
    close = taker(inst, server, Side.SELL, 12, "close1", reduce_only=True)
    assert (
        await asyncio.wait_for(venue.place_order(close), 5)
    ).status is OrderStatus.FILLED
    assert (await asyncio.wait_for(venue.positions(), 5))[FUT_KEY].qty == 0
    fills = await asyncio.wait_for(venue.fills(FUT_KEY), 5)
    assert sum(f.qty * f.side.sign for f in fills) == 0


async def test_gate_futures_socket_close_no_lost_or_duplicated_fills(server, venue):
    inst = venue.instruments()[FUT_KEY]
    fills: list[Fill] = []
    venue.subscribe(lambda e: fills.append(e) if isinstance(e, Fill) else None)
    await venue.wait_synced(FUT_KEY, 10)

    async def take(cid: str) -> None:
        order = await asyncio.wait_for(
            venue.place_order(taker(inst, server, Side.BUY, 1, cid)), 5
        )
        assert order.status is OrderStatus.FILLED

    await take("before")
    await wait_for(
        lambda: any(f.client_order_id == "before" for f in fills), 5, "first fill"
    )
    resyncs = venue.book_manager.resync_count("BTC_USDT")
    assert server.faults.close_sockets("gateio-futures") >= 2
    await take("during")
    await wait_for(lambda: venue.private_reconnects >= 1, 5, "private reconnect")
    await take("after")
    expected = {f.fill_id for f in await asyncio.wait_for(venue.fills(FUT_KEY), 5)}
    await wait_for(
        lambda: {f.fill_id for f in fills} >= expected, 5, "every fill delivered"
    )
    ids = [f.fill_id for f in fills]
    assert len(ids) == len(set(ids)), "a fill was delivered twice"
    assert set(ids) == expected
    for cid in ("before", "during", "after"):
        assert sum(f.qty for f in fills if f.client_order_id == cid) == 1
    await wait_for(
        lambda: venue.book_manager.resync_count("BTC_USDT") > resyncs, 5, "book resync"
    )
    await venue.wait_synced(FUT_KEY, 10)
    await assert_book_matches_server(venue, server, FUT_KEY)


async def test_gate_futures_malformed_frames_are_logged_and_counted(server, venue, caplog):
    """Each unusable frame is one decode error, logged; none is fatal and the book stays in sync."""
    from cexarb.venues.ws import WsFrame

    await venue.wait_synced(FUT_KEY, 10)
    before = venue.decode_errors
    # depth updates with a wrong type: not taken by the Rust parser, refused by the codec
    venue._on_market_event(
        WsFrame(
            '{"time":1,"channel":"futures.order_book_update","event":"update",'
            '"result":{"t":1,"s":"BTC_USDT","U":"x","u":5,"b":[],"a":[]}}',
            time.time_ns(),
            0,
        )
    )
    assert venue.decode_errors == before + 1
    venue._on_market_event(
        WsFrame(
            '{"time":1,"channel":"futures.order_book_update","event":"update",'
            '"result":{"t":1,"s":"BTC_USDT","U":4,"u":5,"b":[{"p":"abc","s":1}],"a":[]}}',
            time.time_ns(),
            0,
        )
    )
    assert venue.decode_errors == before + 2
    assert "malformed market frame" in caplog.text
    # private: a user trade missing its size, an orders result that is not a list
    venue._on_private_event(
        WsFrame('{"time":1,"channel":"futures.usertrades","event":"update","result":[{"id":"1"}]}', 0, 0)
    )
    venue._on_private_event(
        WsFrame('{"time":1,"channel":"futures.orders","event":"update","result":{"id":1}}', 0, 0)
    )
    assert venue.decode_errors == before + 4
    assert "malformed private frame" in caplog.text
    # an order push without its contract decodes but names no instrument: logged and counted
    venue._on_private_event(
        WsFrame('{"time":1,"channel":"futures.orders","event":"update","result":[{"id":1}]}', 0, 0)
    )
    assert venue.decode_errors == before + 5
    assert "futures.orders push skipped: contract missing or empty" in caplog.text
    # one for a contract this connector does not trade: counted apart
    venue._on_private_event(
        WsFrame(
            '{"time":1,"channel":"futures.orders","event":"update","result":[{"id":2,"contract":"DOGE_USDT"}]}',
            0,
            0,
        )
    )
    assert venue.decode_errors == before + 5 and venue.unknown_symbol_pushes == 1
    await venue.wait_synced(FUT_KEY, 5)
    assert venue.book(FUT_KEY).is_valid
