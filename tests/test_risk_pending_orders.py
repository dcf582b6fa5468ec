"""``max_position_notional`` counts the strategy's orders still open or on their way, not only its
fills: orders sent one after another cannot together pass it. ``max_open_orders`` counts the
orders on their way too. Real simulated venue on a SimClock; a book of 5 BTC each side."""

from __future__ import annotations

import asyncio

from cexarb import _core
from cexarb.clock import SimClock
from cexarb.execution import OrderManager
from cexarb.model import OrderStatus, Side
from cexarb.replay import known_instrument
from cexarb.risk import RiskLimits, RiskPolicy
from cexarb.venues.base import OrderRequest
from cexarb.venues.sim.venue import SimVenue

SPOT = known_instrument("binance-spot", "BTCUSDT")


def _manager(**limits: float) -> tuple[OrderManager, SimClock]:
    book = _core.OrderBook(SPOT.tick_size, SPOT.lot_size)
    book.apply_snapshot([(59990.0, 5.0)], [(60010.0, 5.0)], 1)
    clock = SimClock(1)
    venue = SimVenue("binance-spot", clock, {SPOT.key: SPOT}, {SPOT.key: book}, balances={"USDT": 1e6})
    risk = RiskPolicy(RiskLimits(max_order_notional=1000.0, max_position_notional=1000.0, **limits))  # type: ignore[arg-type]
    return OrderManager(clock, {"binance-spot": venue}, lambda key: book, risk), clock


def test_market_buys_sent_before_their_fills_cannot_pass_the_position_limit() -> None:
    om, clock = _manager(max_open_orders=50)

    async def burst() -> list[OrderStatus]:
        return [(await om.submit(OrderRequest.create(SPOT, Side.BUY, 0.015))).status for _ in range(5)]

    statuses = asyncio.run(burst())  # ~900 USDT each, none filled yet (1 ms order entry)
    assert statuses[0] is OrderStatus.PENDING_NEW
    assert statuses[1:] == [OrderStatus.REJECTED] * 4, statuses
    clock.run_due(10**12)
    assert om.positions[SPOT.key].qty == 0.015  # 900 USDT: within the 1,000 limit
    assert all("max_position_notional" in (o.reject_reason or "") for o in om.orders.values()
               if o.status is OrderStatus.REJECTED)
    # once filled, the position itself counts as before: a second 900 USDT buy is refused
    late = asyncio.run(om.submit(OrderRequest.create(SPOT, Side.BUY, 0.015)))
    assert late.status is OrderStatus.REJECTED
    # an order that reduces the position is not held back by the buys
    sell = asyncio.run(om.submit(OrderRequest.create(SPOT, Side.SELL, 0.015)))
    assert sell.status is OrderStatus.PENDING_NEW


def test_resting_buys_count_toward_the_position_limit() -> None:
    om, _ = _manager(max_open_orders=50)

    async def rest() -> list[OrderStatus]:
        return [(await om.submit(OrderRequest.create(SPOT, Side.BUY, 0.015, price=59990.0))).status for _ in range(3)]

    assert asyncio.run(rest()) == [OrderStatus.PENDING_NEW, OrderStatus.REJECTED, OrderStatus.REJECTED]
