"""SimVenue: taker walks, latency, queue model, cancels, balances, positions, funding, determinism.

Small hand-built Rust books for the rules; one test on the recorded Binance spot BTCUSDT data
(``../shared/data/book/binance_btc_20240808``) for the queue model on a real market.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cexarb._core import OrderBook
from cexarb.clock import SimClock
from cexarb.model import Fill, Instrument, InstrumentKind, OrderStatus, Side, TimeInForce
from cexarb.venues.base import OrderRequest, OrderUpdate, PrivateEvent, PrivateVenue
from cexarb.venues.sim import SimLatency, SimVenue

MS = 1_000_000
SPOT = Instrument(
    venue="sim",
    symbol="BTCUSDT",
    kind=InstrumentKind.SPOT,
    base="BTC",
    quote="USDT",
    tick_size=0.01,
    lot_size=0.00001,
    min_notional=5.0,
    maker_fee=0.0002,
    taker_fee=0.001,
)
PERP = Instrument(
    venue="sim",
    symbol="BTCUSDT_PERP",
    kind=InstrumentKind.PERP,
    base="BTC",
    quote="USDT",
    tick_size=0.01,
    lot_size=0.00001,
    min_notional=5.0,
    maker_fee=0.0002,
    taker_fee=0.0005,
    funding_interval_hours=8.0,
)
ASKS = [(100.00, 1.0), (100.01, 2.0), (100.02, 5.0)]
BIDS = [(99.99, 2.0), (99.98, 3.0), (99.97, 4.0)]
DATA = Path(os.environ.get("CEXARB_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data") / "book" / "binance_btc_20240808"


def make_book(
    bids: list[tuple[float, float]] = BIDS, asks: list[tuple[float, float]] = ASKS, uid: int = 1
) -> OrderBook:
    book = OrderBook(0.01, 0.00001)
    book.apply_snapshot(bids, asks, uid)
    return book


class Harness:
    """A venue on a SimClock with a recording subscriber: ``events`` = [(delivery ns, event)]."""

    def __init__(self, latency: SimLatency | None = None, balances: dict[str, float] | None = None, **kw: Any) -> None:
        self.clock = SimClock(0)
        self.books = {SPOT.key: make_book(), PERP.key: make_book()}
        self.venue = SimVenue(
            "sim",
            self.clock,
            {SPOT.key: SPOT, PERP.key: PERP},
            self.books,
            latency=latency if latency is not None else SimLatency(order_entry_ns=1 * MS, ack_ns=1 * MS),
            balances=balances if balances is not None else {"USDT": 10_000.0, "BTC": 1.0},
            **kw,
        )
        self.events: list[tuple[int, PrivateEvent]] = []
        self.venue.subscribe(lambda e: self.events.append((self.clock.now_ns(), e)))

    def run(self, until_ns: int) -> None:
        self.clock.run_due(until_ns)

    def updates(self, coid: str | None = None) -> list[OrderUpdate]:
        return [
            e
            for _, e in self.events
            if isinstance(e, OrderUpdate) and (coid is None or e.client_order_id == coid)
        ]

    def fills(self, coid: str | None = None) -> list[Fill]:
        return [e for _, e in self.events if isinstance(e, Fill) and (coid is None or e.client_order_id == coid)]

    def kinds(self, coid: str) -> list[str]:
        return [
            "fill" if isinstance(e, Fill) else e.status.value
            for _, e in self.events
            if e.client_order_id == coid
        ]


def req(
    side: Side, qty: float, price: float | None = None, coid: str = "o1", inst: Instrument = SPOT, **kw: Any
) -> OrderRequest:
    return OrderRequest.create(inst, side, qty, price=price, client_order_id=coid, **kw)


def test_is_private_venue() -> None:
    assert isinstance(Harness().venue, PrivateVenue)


def test_latency_validation() -> None:
    with pytest.raises(ValueError, match="order_entry_ns"):
        SimLatency(order_entry_ns=-1)
    assert SimLatency().order_entry_ns == 1 * MS and SimLatency().ack_ns == 1 * MS and SimLatency().market_data_ns == 0


async def test_market_buy_walks_levels_one_fill_per_level() -> None:
    h = Harness()
    order = await h.venue.place_order(req(Side.BUY, 2.5))
    assert order.status is OrderStatus.PENDING_NEW and order.venue_order_id == "sim-1"
    h.run(10 * MS)
    assert h.kinds("o1") == ["new", "fill", "fill", "filled"]
    fills = h.fills()
    assert [(f.price, f.qty) for f in fills] == [(100.00, 1.0), (100.01, pytest.approx(1.5))]
    assert all(not f.is_maker for f in fills)
    assert [f.fill_id for f in fills] == ["sim-fill-1", "sim-fill-2"]
    for f in fills:
        assert f.fee == pytest.approx(0.001 * f.price * f.qty)
    last = h.updates()[-1]
    assert last.status is OrderStatus.FILLED
    assert last.filled_qty == pytest.approx(2.5)
    assert last.avg_fill_price == pytest.approx((100.00 * 1.0 + 100.01 * 1.5) / 2.5)
    assert h.venue.n_fills == 2 and h.venue.n_orders == 1
    assert h.venue.fees_paid == pytest.approx(0.001 * (100.0 + 100.01 * 1.5))


async def test_latency_order_matched_at_arrival_ack_after_the_round_trip() -> None:
    lat = SimLatency(order_entry_ns=2 * MS, ack_ns=3 * MS, market_data_ns=1 * MS)
    h = Harness(latency=lat)
    h.clock.advance(10 * MS)
    await h.venue.place_order(req(Side.BUY, 1.0))
    h.run(12 * MS)  # before arrival at 10 + 1 + 2 = 13 ms: nothing matched
    assert h.venue.n_fills == 0 and h.events == []
    # the recorded book moves before arrival: the order trades against the book at arrival time
    h.books[SPOT.key].apply_snapshot(BIDS, [(100.05, 0.4), (100.06, 1.0)], 2)
    h.run(13 * MS)
    assert h.venue.n_fills == 2 and h.events == []  # matched, not yet reported
    assert [(f.price, f.ts_ns) for f in await h.venue.fills()] == [(100.05, 13 * MS), (100.06, 13 * MS)]
    h.run(14 * MS)
    assert h.events == []
    # the venue, 1 ms ahead of the strategy's view, decided at the strategy's 10 + 2 = 12 ms: the
    # strategy hears at 12 + ack 3 = 15 ms, the round trip (entry + ack), not 13 + 3 = 16 ms
    h.run(15 * MS)
    assert {t for t, _ in h.events} == {15 * MS}
    assert h.kinds("o1") == ["new", "fill", "fill", "filled"]
    assert all(e.ts_ns == 13 * MS for _, e in h.events)


async def test_ioc_partial_fill_then_canceled() -> None:
    h = Harness()
    await h.venue.place_order(req(Side.BUY, 5.0, 100.01, time_in_force=TimeInForce.IOC))
    h.run(10 * MS)
    assert h.kinds("o1") == ["new", "fill", "fill", "partially_filled", "canceled"]
    assert [(f.price, f.qty) for f in h.fills()] == [(100.00, 1.0), (100.01, 2.0)]
    final = await h.venue.get_order(SPOT.key, "o1")
    assert final is not None and final.status is OrderStatus.CANCELED and final.filled_qty == pytest.approx(3.0)
    assert final.venue_order_id
    by_id = await h.venue.get_order_by_venue_id(SPOT.key, final.venue_order_id)
    assert by_id is not None and by_id.client_order_id == "o1" and by_id.filled_qty == final.filled_qty
    assert await h.venue.get_order_by_venue_id(SPOT.key, "nosuch") is None
    assert await h.venue.open_orders() == []
    assert h.venue.balances_now()["USDT"].locked == 0.0


async def test_market_order_no_liquidity_and_partial() -> None:
    h = Harness()
    h.books[SPOT.key].apply_snapshot(BIDS, [(100.0, 0.5)], 2)
    await h.venue.place_order(req(Side.BUY, 1.0, coid="m1"))
    h.run(10 * MS)
    assert h.kinds("m1") == ["new", "fill", "partially_filled", "canceled"]
    h.books[SPOT.key].apply_snapshot([], [(100.0, 0.5)], 3)
    await h.venue.place_order(req(Side.SELL, 0.1, coid="m2"))  # no bids at placement
    assert h.updates("m2") == []  # rejected synchronously, reported after ack
    h.run(20 * MS)
    (u,) = h.updates("m2")
    assert u.status is OrderStatus.REJECTED and u.reason == "no_liquidity"


async def test_book_invalid_at_arrival_rejects() -> None:
    h = Harness()
    await h.venue.place_order(req(Side.BUY, 0.1, 99.0, coid="l1"))
    # the next recorded message leaves a sequence gap: the book is invalid when the order arrives
    h.books[SPOT.key].apply_update([(99.99, 1.0)], [], 10, 11)
    assert not h.books[SPOT.key].is_valid
    h.run(10 * MS)
    assert [(u.status, u.reason) for u in h.updates("l1")] == [(OrderStatus.REJECTED, "book_invalid")]


async def test_post_only_would_take_rejected_else_rests() -> None:
    h = Harness()
    rej = await h.venue.place_order(req(Side.BUY, 0.5, 100.00, coid="p1", time_in_force=TimeInForce.POST_ONLY))
    assert rej.status is OrderStatus.PENDING_NEW  # decided at arrival, against the book then
    await h.venue.place_order(req(Side.BUY, 0.5, 99.99, coid="p2", time_in_force=TimeInForce.POST_ONLY))
    h.run(10 * MS)
    assert [(u.status, u.reason) for u in h.updates("p1")] == [(OrderStatus.REJECTED, "post_only_would_take")]
    assert [u.status for u in h.updates("p2")] == [OrderStatus.NEW]
    assert h.venue.n_fills == 0
    assert [o.client_order_id for o in await h.venue.open_orders()] == ["p2"]


async def test_resting_limit_queue_ahead_consumed_by_trades_at_price() -> None:
    h = Harness()
    await h.venue.place_order(req(Side.BUY, 1.0, 99.99))
    h.run(5 * MS)
    (resting,) = h.venue.resting(SPOT.key)
    assert resting.queue_ahead == pytest.approx(2.0)  # recorded bid qty at 99.99 at arrival
    assert h.venue.on_trade(SPOT.key, 99.99, 1.5, False, 6 * MS) == 0
    assert h.venue.resting(SPOT.key)[0].queue_ahead == pytest.approx(0.5)
    assert h.venue.on_trade(SPOT.key, 100.00, 3.0, True, 6 * MS) == 0  # buy taker: not our side
    assert h.venue.on_trade(SPOT.key, 99.99, 0.8, False, 7 * MS) == 1  # 0.5 queue, 0.3 to us
    assert h.venue.on_trade(SPOT.key, 99.99, 5.0, False, 8 * MS) == 1  # the remaining 0.7
    h.run(20 * MS)
    assert h.kinds("o1") == ["new", "fill", "partially_filled", "fill", "filled"]
    fills = h.fills("o1")
    assert [f.qty for f in fills] == [pytest.approx(0.3), pytest.approx(0.7)]
    assert all(f.is_maker and f.price == 99.99 for f in fills)
    assert fills[0].fee == pytest.approx(0.0002 * 99.99 * 0.3)
    assert [f.ts_ns for f in fills] == [7 * MS, 8 * MS]
    assert h.venue.resting(SPOT.key) == []


async def test_trade_through_fills_regardless_of_queue() -> None:
    h = Harness()
    await h.venue.place_order(req(Side.BUY, 1.0, 99.98))
    h.run(5 * MS)
    assert h.venue.resting(SPOT.key)[0].queue_ahead == pytest.approx(3.0)
    assert h.venue.on_trade(SPOT.key, 99.97, 0.4, False, 6 * MS) == 1  # strictly below our bid
    h.run(10 * MS)
    (fill,) = h.fills("o1")
    assert fill.qty == pytest.approx(0.4) and fill.price == 99.98 and fill.is_maker
    assert h.venue.resting(SPOT.key)[0].remaining_lots == 60_000


async def test_resting_sell_filled_by_buy_takers() -> None:
    h = Harness()
    await h.venue.place_order(req(Side.SELL, 0.5, 100.01, coid="s"))
    h.run(5 * MS)
    assert h.venue.resting(SPOT.key)[0].queue_ahead == pytest.approx(2.0)
    assert h.venue.on_trade(SPOT.key, 100.01, 2.1, False, 6 * MS) == 0  # sell taker: not our side
    assert h.venue.on_trade(SPOT.key, 100.01, 2.1, True, 6 * MS) == 1  # 2.0 queue, 0.1 to us
    assert h.venue.on_trade(SPOT.key, 100.02, 1.0, True, 7 * MS) == 1  # through our ask: the rest
    h.run(20 * MS)
    fills = h.fills("s")
    assert [f.qty for f in fills] == [pytest.approx(0.1), pytest.approx(0.4)]
    assert [f.price for f in fills] == [100.01, 100.01]
    assert h.venue.balances_now()["BTC"].total == pytest.approx(0.5)


async def test_on_book_caps_queue_and_fills_when_opposite_side_crosses() -> None:
    h = Harness()
    await h.venue.place_order(req(Side.BUY, 1.0, 99.99))
    h.run(5 * MS)
    book = h.books[SPOT.key]
    book.apply_update([(99.99, 0.7)], [], 2, 2)  # recorded level shrank (cancels): queue capped
    h.venue.on_book(SPOT.key, 6 * MS)
    assert h.venue.resting(SPOT.key)[0].queue_ahead == pytest.approx(0.7)
    book.apply_update([(99.99, 1.5)], [], 3, 3)  # grew behind us: queue unchanged
    h.venue.on_book(SPOT.key, 7 * MS)
    assert h.venue.resting(SPOT.key)[0].queue_ahead == pytest.approx(0.7)
    # asks come down to 99.98 and 99.99 (our bid level traded away): we fill as maker at our price
    book.apply_snapshot([(99.97, 1.0)], [(99.98, 0.25), (99.99, 0.25), (100.00, 1.0)], 4)
    assert h.venue.on_book(SPOT.key, 8 * MS) == 2
    assert h.venue.on_book(SPOT.key, 8 * MS) == 0  # same book version: that liquidity is used
    h.run(20 * MS)
    fills = h.fills("o1")
    assert [(f.price, f.qty, f.is_maker) for f in fills] == [(99.99, 0.25, True), (99.99, 0.25, True)]
    assert h.updates("o1")[-1].status is OrderStatus.PARTIALLY_FILLED


async def test_cancel_before_fill_releases_lock() -> None:
    h = Harness()
    await h.venue.place_order(req(Side.BUY, 1.0, 99.0))
    h.run(5 * MS)
    assert h.venue.balances_now()["USDT"].locked == pytest.approx(99.0 * 1.0 * 1.001)
    assert await h.venue.cancel_order(SPOT.key, "o1") is True
    assert h.venue.on_trade(SPOT.key, 98.0, 10.0, False, 5 * MS) == 1  # fills before the cancel arrives
    h.run(20 * MS)
    assert h.kinds("o1") == ["new", "fill", "filled"]  # cancel arrived after the fill: nothing
    assert await h.venue.cancel_order(SPOT.key, "o1") is False  # already terminal

    await h.venue.place_order(req(Side.BUY, 1.0, 99.0, coid="o2"))
    h.run(25 * MS)
    assert await h.venue.cancel_order(SPOT.key, "o2") is True
    h.run(25 * MS + 999_999)
    assert h.venue.resting(SPOT.key)[0].key == "o2"  # cancel not arrived yet
    h.run(40 * MS)
    assert h.kinds("o2") == ["new", "canceled"]
    assert h.venue.resting(SPOT.key) == []
    assert h.venue.balances_now()["USDT"].locked == 0.0
    assert h.venue.on_trade(SPOT.key, 98.0, 10.0, False, 41 * MS) == 0


async def test_cancel_sent_while_order_in_flight_and_cancel_all() -> None:
    h = Harness()
    await h.venue.place_order(req(Side.BUY, 0.1, 99.0, coid="a"))
    await h.venue.place_order(req(Side.SELL, 0.1, 101.0, coid="b"))
    assert await h.venue.cancel_all(SPOT.key) == 2  # both still in flight: cancels arrive after them
    h.run(10 * MS)
    assert h.kinds("a") == ["new", "canceled"] and h.kinds("b") == ["new", "canceled"]
    assert await h.venue.cancel_all() == 0


async def test_min_notional_rejected_synchronously() -> None:
    h = Harness()
    order = await h.venue.place_order(req(Side.BUY, 0.01, 99.0))  # 0.99 USDT < 5
    assert order.status is OrderStatus.REJECTED and order.reject_reason == "min_notional"
    market = await h.venue.place_order(req(Side.SELL, 0.04, coid="m"))  # 0.04 * mid 99.995 < 5
    assert market.reject_reason == "min_notional"
    h.run(10 * MS)
    assert [(t, u.status, u.reason) for t, u in h.events if isinstance(u, OrderUpdate)] == [
        (1 * MS, OrderStatus.REJECTED, "min_notional"),
        (1 * MS, OrderStatus.REJECTED, "min_notional"),
    ]
    assert h.venue.n_orders == 2 and h.venue.n_rejected == 2 and await h.venue.open_orders() == []


async def test_unknown_instrument_and_duplicate_client_order_id() -> None:
    h = Harness()
    other = msgspec.structs.replace(SPOT, symbol="ETHUSDT")
    bad = await h.venue.place_order(req(Side.BUY, 0.1, 99.0, inst=other))
    assert bad.reject_reason == "unknown_instrument"
    ok = await h.venue.place_order(req(Side.BUY, 0.1, 99.0, coid="d"))
    dup = await h.venue.place_order(req(Side.BUY, 0.2, 98.0, coid="d"))
    assert ok.status is OrderStatus.PENDING_NEW and dup.reject_reason == "duplicate_client_order_id"
    h.run(10 * MS)
    original = await h.venue.get_order(SPOT.key, "d")
    assert original is not None and original.qty == pytest.approx(0.1) and original.status is OrderStatus.NEW


async def test_insufficient_balance_rejected_and_state_unchanged() -> None:
    h = Harness(balances={"USDT": 1_000.0, "BTC": 0.5})
    before = h.venue.balances_now()
    buy = await h.venue.place_order(req(Side.BUY, 10.0, 99.99, coid="b1"))  # needs ~1001 USDT
    sell = await h.venue.place_order(req(Side.SELL, 0.6, 101.0, coid="s1"))  # has 0.5 BTC
    mkt = await h.venue.place_order(req(Side.BUY, 9.99, coid="m1"))  # walks to 100.02 -> > 1000
    perp = await h.venue.place_order(req(Side.SELL, 10.0, 99.0, coid="p1", inst=PERP))  # margin 990 + fee ok
    assert [o.reject_reason for o in (buy, sell, mkt)] == ["insufficient_balance"] * 3
    assert perp.status is OrderStatus.PENDING_NEW
    after = h.venue.balances_now()
    assert after["BTC"] == before["BTC"]
    assert after["USDT"].locked == pytest.approx(10.0 * 99.0 * (1.0 + 0.0005))
    again = await h.venue.place_order(req(Side.BUY, 0.1, 99.0, coid="b2"))  # the rest is reserved
    assert again.reject_reason == "insufficient_balance"
    assert await h.venue.place_order(req(Side.SELL, 0.5, 101.0, coid="s2")) is not None
    assert h.venue.balances_now()["BTC"].free == pytest.approx(0.0)


async def test_balances_and_positions_after_fills() -> None:
    h = Harness(balances={"USDT": 10_000.0, "BTC": 0.0})
    await h.venue.place_order(req(Side.BUY, 1.5, coid="b"))  # 1 @ 100.00 + 0.5 @ 100.01
    await h.venue.place_order(req(Side.BUY, 1.0, 99.50, coid="r"))  # rests, locks quote
    h.run(5 * MS)
    cost = 100.00 + 0.5 * 100.01
    bal = h.venue.balances_now()
    assert bal["BTC"].free == pytest.approx(1.5) and bal["BTC"].locked == 0.0
    assert bal["USDT"].total == pytest.approx(10_000.0 - cost * 1.001)
    assert bal["USDT"].locked == pytest.approx(99.50 * 1.001)
    pos = (await h.venue.positions())[SPOT.key]
    assert pos.qty == pytest.approx(1.5) and pos.avg_price == pytest.approx(cost / 1.5)
    assert pos.fees == pytest.approx(cost * 0.001)
    # sell 1.0 at the bid: realised pnl against the average entry
    await h.venue.place_order(req(Side.SELL, 1.0, coid="s"))
    h.run(10 * MS)
    pos = (await h.venue.positions())[SPOT.key]
    assert pos.qty == pytest.approx(0.5)
    assert pos.realized_pnl == pytest.approx(1.0 * (99.99 - cost / 1.5))
    bal = h.venue.balances_now()
    assert bal["BTC"].total == pytest.approx(0.5)
    assert bal["USDT"].total == pytest.approx(10_000.0 - cost * 1.001 + 99.99 * (1 - 0.001))
    assert h.venue.fees_paid == pytest.approx(cost * 0.001 + 99.99 * 0.001)


async def test_perp_position_margin_and_funding() -> None:
    h = Harness(balances={"USDT": 1_000.0}, leverage=5.0)
    await h.venue.place_order(req(Side.SELL, 2.0, coid="short", inst=PERP))  # 99.99 x2
    h.run(5 * MS)
    pos = h.venue.position(PERP.key)
    assert pos.qty == pytest.approx(-2.0) and pos.avg_price == pytest.approx(99.99)
    fee = 0.0005 * 2.0 * 99.99
    bal = h.venue.balances_now()["USDT"]
    assert bal.total == pytest.approx(1_000.0 - fee)
    assert bal.locked == pytest.approx(2.0 * 99.99 / 5.0)
    # shorts receive a positive funding rate: -qty * mark * rate
    amount = h.venue.apply_funding(PERP.key, 0.0001, 100.0, 6 * MS)
    assert amount == pytest.approx(2.0 * 100.0 * 0.0001)
    assert h.venue.position(PERP.key).funding == pytest.approx(amount)
    assert h.venue.balances_now()["USDT"].total == pytest.approx(1_000.0 - fee + amount)
    assert h.venue.apply_funding(PERP.key, -0.0002, 100.0, 7 * MS) == pytest.approx(-0.04)
    with pytest.raises(ValueError, match="spot"):
        h.venue.apply_funding(SPOT.key, 0.0001, 100.0, 8 * MS)
    # close at the ask: realised pnl settles in quote, margin released
    await h.venue.place_order(req(Side.BUY, 2.0, coid="close", inst=PERP, reduce_only=True))
    h.run(10 * MS)
    pos = h.venue.position(PERP.key)
    assert pos.qty == 0.0 and pos.realized_pnl == pytest.approx(-1.0 * (100.00 - 99.99) - 1.0 * (100.01 - 99.99))
    bal = h.venue.balances_now()["USDT"]
    assert bal.locked == 0.0
    fee2 = 0.0005 * (100.00 + 100.01)
    assert bal.total == pytest.approx(1_000.0 - fee + amount - 0.04 + pos.realized_pnl - fee2)


async def test_consumed_liquidity_not_taken_twice_within_one_book_version() -> None:
    h = Harness()
    h.books[SPOT.key].apply_snapshot(BIDS, [(100.00, 1.0), (100.01, 1.0)], 2)
    await h.venue.place_order(req(Side.BUY, 1.0, coid="x1"))
    await h.venue.place_order(req(Side.BUY, 1.0, coid="x2"))
    await h.venue.place_order(req(Side.BUY, 1.0, coid="x3"))
    h.run(5 * MS)
    assert [(f.client_order_id, f.price) for f in h.fills()] == [("x1", 100.00), ("x2", 100.01)]
    assert h.updates("x3")[-1].reason == "no_liquidity"
    # a post-only bid at 100.01 no longer takes: that recorded liquidity is ours already
    await h.venue.place_order(req(Side.BUY, 0.1, 100.01, coid="po", time_in_force=TimeInForce.POST_ONLY))
    h.run(10 * MS)
    assert h.updates("po")[-1].status is OrderStatus.NEW
    await h.venue.cancel_order(SPOT.key, "po")
    h.run(15 * MS)
    # the next depth message only adds 100.02: 100.00 and 100.01 are still ours (their recorded
    # quantities did not change, see ConsumedLiquidity), so x4 takes the new level
    h.books[SPOT.key].apply_update([], [(100.02, 1.0)], 3, 3)
    await h.venue.place_order(req(Side.BUY, 1.0, coid="x4"))
    h.run(20 * MS)
    assert [f.price for f in h.fills("x4")] == [100.02]


async def _scenario() -> list[bytes]:
    h = Harness(latency=SimLatency(order_entry_ns=700_000, ack_ns=1_300_000, market_data_ns=200_000))
    venue, book = h.venue, h.books[SPOT.key]
    await venue.place_order(req(Side.BUY, 1.2, coid="a"))
    await venue.place_order(req(Side.BUY, 0.7, 99.99, coid="b"))
    await venue.place_order(req(Side.SELL, 0.3, 100.03, coid="c", time_in_force=TimeInForce.POST_ONLY))
    h.run(2 * MS)
    venue.on_trade(SPOT.key, 99.99, 2.4, False, 2 * MS)
    book.apply_update([(99.99, 0.1)], [(100.03, 0.2)], 2, 2)
    venue.on_book(SPOT.key, 3 * MS)
    h.run(3 * MS)
    venue.on_trade(SPOT.key, 100.05, 1.0, True, 3 * MS)
    await venue.place_order(req(Side.SELL, 0.5, 99.98, coid="d", time_in_force=TimeInForce.IOC))
    await venue.cancel_order(SPOT.key, "b")
    h.run(20 * MS)
    return [msgspec.json.encode((t, type(e).__name__, e)) for t, e in h.events]


async def test_deterministic_event_sequence() -> None:
    first, second = await _scenario(), await _scenario()
    assert first == second
    assert len(first) > 10


# ---- recorded data ----------------------------------------------------------------------------


@pytest.mark.skipif(not DATA.exists(), reason="recorded data not available")
def test_recorded_spot_resting_bid_fills_only_after_sell_trades_pass_its_queue() -> None:
    """Binance spot BTCUSDT: a bid joined at the best bid fills only once recorded sells get past the queue."""
    from cexarb import replay

    prefix = DATA / "binance-spot_BTCUSDT_20240808T2354Z"
    stream = replay.load_book(f"{prefix}_book.csv.gz")
    inst = stream.instrument
    trades = replay.load_trades(f"{prefix}_trades.csv.gz", inst.key)
    book = OrderBook(inst.tick_size, inst.lot_size)
    clock = SimClock(int(stream.local_ns[0]))
    venue = SimVenue("bn", clock, {inst.key: inst}, {inst.key: book}, balances={"USDT": 100_000.0})
    events: list[PrivateEvent] = []
    venue.subscribe(events.append)
    # the two recorded streams merged by local time, depth before trades at equal times
    merged = sorted(
        [(int(t), 0, i) for i, t in enumerate(stream.local_ns)]
        + [(int(t), 1, i) for i, t in enumerate(trades.local_ns)]
    )
    place_at = int(stream.local_ns[0]) + 20_000_000_000  # 20 s into the recording
    placed_ns: int | None = None
    price = 0.0
    queue_at_arrival: float | None = None
    reaching: list[tuple[int, float, float, float, int]] = []  # (ts, price, qty, queue before, fills)
    for ts, kind, i in merged:
        clock.run_due(ts)
        if kind == 0:
            assert book.apply_delta(stream.deltas[i]) == 0
            venue.on_book(inst.key, ts)
            if placed_ns is None and ts >= place_at:
                best = book.best_bid()
                assert best is not None
                price = best[0]
                venue.submit(OrderRequest.create(inst, Side.BUY, 0.01, price=price, client_order_id="bid"))
                placed_ns = ts
            continue
        resting = venue.resting(inst.key)
        if resting and queue_at_arrival is None:
            queue_at_arrival = resting[0].queue_ahead
        queue_before = resting[0].queue_ahead if resting else 0.0
        t_price, t_qty, taker_is_buy = float(trades.price[i]), float(trades.qty[i]), bool(trades.taker_is_buy[i])
        n = venue.on_trade(inst.key, t_price, t_qty, taker_is_buy, ts)
        if resting and not taker_is_buy and t_price <= price:
            reaching.append((ts, t_price, t_qty, queue_before, n))
        if venue.n_fills and not venue.resting(inst.key):
            break
    clock.run_due(clock.now_ns() + 10 * MS)
    assert placed_ns is not None and queue_at_arrival is not None
    assert queue_at_arrival > 1.0  # joined behind > 1 BTC recorded at the best bid
    fills = [e for e in events if isinstance(e, Fill)]
    assert fills, "the resting bid never filled in the recording"
    assert sum(f.qty for f in fills) == pytest.approx(0.01)
    assert all(f.is_maker and f.price == price and f.fee == pytest.approx(0.001 * f.notional) for f in fills)
    at_price = [r for r in reaching if r[1] == price]
    # recorded sells at our price that arrived while the queue was ahead went to the queue, not to us
    before_fill = [r for r in reaching if r[0] < fills[0].ts_ns]
    assert at_price and before_fill and all(r[4] == 0 for r in before_fill)
    assert sum(r[2] for r in before_fill) > 0.0
    # a fill needs a sell through our price or one larger than what was left of the queue
    for _, t_price, t_qty, queue_before, n in reaching:
        if n:
            assert t_price < price or t_qty > queue_before
        elif t_price == price:
            assert t_qty <= queue_before + 1e-9
    # a fill-at-touch model would have filled on the first recorded sell at our price
    assert fills[0].ts_ns - at_price[0][0] > 1_000_000_000
    updates = [e for e in events if isinstance(e, OrderUpdate)]
    assert updates[0].status is OrderStatus.NEW and updates[-1].status is OrderStatus.FILLED
    assert math.isclose(updates[-1].filled_qty, 0.01)


async def test_latency_market_data_ahead_of_ack_delivers_at_once_and_resting_fills_shift_back() -> None:
    # md 5 ms > entry 1 + ack 1: the venue's decision (at the strategy's 11 ms) was already
    # known by the time the sim matches at 10 + 5 + 1 = 16 ms: delivered then, not at 17 ms
    h = Harness(latency=SimLatency(order_entry_ns=1 * MS, ack_ns=1 * MS, market_data_ns=5 * MS))
    h.clock.advance(10 * MS)
    await h.venue.place_order(req(Side.BUY, 0.5, 99.98, coid="r"))  # rests behind the book's 3.0 at 99.98
    h.run(16 * MS)
    assert [(t, e.status.value) for t, e in h.events] == [(16 * MS, "new")]
    # a recorded trade at clock 30 ms happened at the venue 5 ms earlier (strategy time 25 ms):
    # the resting fill is reported at 25 + 1 = 26 ms, i.e. at once when the trade is replayed
    h.clock.advance(30 * MS)
    h.venue.on_trade(SPOT.key, 99.97, 4.0, False, 30 * MS)  # sells through 99.98 and its queue
    h.run(30 * MS)
    assert [t for t, e in h.events if isinstance(e, Fill)] == [30 * MS]


async def test_venue_refusal_reaches_the_caller_one_round_trip_later_without_rejects_in_reply() -> None:
    lat = SimLatency(order_entry_ns=2 * MS, ack_ns=3 * MS)
    # the loopback simulator's way (default): the refusal is in the reply, its update after ack_ns
    h = Harness(latency=lat)
    h.clock.advance(10 * MS)
    order = await h.venue.place_order(req(Side.BUY, 0.01, 100.0, coid="small"))  # 1 USDT < 5 min notional
    assert order.status is OrderStatus.REJECTED and order.reject_reason == "min_notional"
    h.run(100 * MS)
    assert [(t, e.status.value) for t, e in h.events] == [(13 * MS, "rejected")]
    # replay / paper: the caller learns of it when a real client would, after the round trip
    h = Harness(latency=lat, venue_rejects_in_reply=False)
    h.clock.advance(10 * MS)
    order = await h.venue.place_order(req(Side.BUY, 0.01, 100.0, coid="small"))
    assert order.status is OrderStatus.PENDING_NEW
    for coid, qty in (("big", 1_000.0), ("empty", 0.5)):  # insufficient balance; no liquidity (market)
        if coid == "empty":
            h.books[SPOT.key].apply_snapshot(BIDS, [], 2)
            pending = await h.venue.place_order(req(Side.BUY, qty, coid=coid))
        else:
            pending = await h.venue.place_order(req(Side.BUY, qty, 100.0, coid=coid))
        assert pending.status is OrderStatus.PENDING_NEW, coid
    h.run(14 * MS)
    assert h.events == []  # not before 10 + 2 + 3 = 15 ms
    h.run(100 * MS)
    assert [(t, e.client_order_id, e.status.value, e.reason) for t, e in h.events] == [
        (15 * MS, "small", "rejected", "min_notional"),
        (15 * MS, "big", "rejected", "insufficient_balance"),
        (15 * MS, "empty", "rejected", "no_liquidity"),
    ]
    assert (await h.venue.get_order(SPOT.key, "small")).status is OrderStatus.REJECTED  # the venue's view
    assert h.venue.n_rejected == 3 and await h.venue.open_orders() == []
    assert h.venue.balances_now()["USDT"].locked == 0.0
    # the request's own faults stay in the reply
    dup = await h.venue.place_order(req(Side.BUY, 0.5, 100.0, coid="small"))
    assert dup.status is OrderStatus.REJECTED and dup.reject_reason == "duplicate_client_order_id"
