"""The order manager keeps, per instrument and side, the quantity its open and in-flight orders
may still add (the risk check's ``pending_qty``) as a running total updated as each order changes,
so the check costs the same with 1 or 1,000 resting orders. Property test: after any sequence of
submits, partial fills, fills, cancels and rejects, the running total equals the sum over the
orders recomputed from scratch, and is exactly 0.0 once no order is left on a side."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from cexarb._core import OrderBook
from cexarb.clock import SimClock
from cexarb.execution import OrderManager
from cexarb.model import Instrument, InstrumentKind, Order, OrderStatus, Side
from cexarb.venues.base import OrderRequest, OrderUpdate, PrivateEvent
from hypothesis import given, settings
from hypothesis import strategies as st

SPOT = Instrument(
    venue="scripted", symbol="BTCUSDT", kind=InstrumentKind.SPOT, base="BTC", quote="USDT",
    tick_size=0.01, lot_size=0.00001, min_notional=0.0, maker_fee=0.0002, taker_fee=0.001,
)
PERP = Instrument(
    venue="scripted", symbol="BTCUSDT-PERP", kind=InstrumentKind.PERP, base="BTC", quote="USDT",
    tick_size=0.1, lot_size=0.001, min_notional=0.0, maker_fee=0.0002, taker_fee=0.0005,
)


class ScriptedVenue:
    """Accepts every order as NEW (or REJECTED when told); the test sends the later updates."""

    name = "scripted"

    def __init__(self) -> None:
        self.handlers: list[Callable[[PrivateEvent], None]] = []
        self.reject_next = False

    def subscribe(self, handler: Callable[[PrivateEvent], None]) -> None:
        self.handlers.append(handler)

    async def place_order(self, request: OrderRequest) -> Order:
        order = request.to_order(0)
        order.status = OrderStatus.REJECTED if self.reject_next else OrderStatus.NEW
        self.reject_next = False
        return order

    def send(self, order: Order, status: OrderStatus, filled: float) -> None:
        event = OrderUpdate(client_order_id=order.client_order_id, venue_order_id="v",
                            instrument_key=order.instrument.key, status=status, filled_qty=filled,
                            avg_fill_price=order.price or 0.0, ts_ns=1)
        for handler in self.handlers:
            handler(event)


def _manager() -> tuple[OrderManager, ScriptedVenue]:
    books = {k: OrderBook(i.tick_size, i.lot_size) for k, i in ((SPOT.key, SPOT), (PERP.key, PERP))}
    for book in books.values():
        book.apply_snapshot([[100.0, 5.0]], [[100.1, 5.0]], 1)
    venue = ScriptedVenue()
    return OrderManager(SimClock(1), {"scripted": venue}, books.__getitem__), venue


def _recomputed(om: OrderManager, key: str, side: Side) -> float:
    total = sum(o.remaining_qty for o in om.open_orders if o.side is side and o.instrument.key == key)
    return side.sign * total


ops = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.sampled_from([SPOT, PERP]), st.sampled_from(list(Side)),
                  st.integers(1, 500), st.booleans()),
        st.tuples(st.just("partial"), st.integers(0, 50), st.floats(0.05, 0.95)),
        st.tuples(st.just("end"), st.integers(0, 50),
                  st.sampled_from([OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED])),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_running_pending_totals_equal_a_recount(script: list[tuple]) -> None:
    om, venue = _manager()

    async def run() -> None:
        for op in script:
            if op[0] == "submit":
                _, inst, side, lots, rejected = op
                venue.reject_next = rejected
                await om.submit(OrderRequest.create(inst, side, lots * inst.lot_size, price=100.0))
            else:
                open_orders = om.open_orders
                if not open_orders:
                    continue
                order = open_orders[op[1] % len(open_orders)]
                if op[0] == "partial":
                    venue.send(order, OrderStatus.PARTIALLY_FILLED, order.filled_qty + op[2] * order.remaining_qty)
                else:
                    venue.send(order, op[2], order.qty if op[2] is OrderStatus.FILLED else order.filled_qty)
            for inst in (SPOT, PERP):
                for side in Side:
                    expected = _recomputed(om, inst.key, side)
                    got = om._pending_qty(inst.key, side)
                    assert abs(got - expected) <= 1e-9, (inst.key, side, got, expected)
                    if expected == 0.0:
                        assert got == 0.0

    asyncio.run(run())


def test_an_order_on_its_way_counts_until_the_venue_answers() -> None:
    om, venue = _manager()
    seen: list[float] = []

    async def place_order(request: OrderRequest) -> Order:
        seen.append(om._pending_qty(SPOT.key, Side.SELL))
        raise ConnectionError("venue unreachable")

    venue.place_order = place_order  # type: ignore[method-assign]

    async def run() -> None:
        try:
            await om.submit(OrderRequest.create(SPOT, Side.SELL, 0.25, price=100.0))
        except ConnectionError:
            pass

    asyncio.run(run())
    assert seen == [-0.25]  # counted while on its way
    assert om._pending_qty(SPOT.key, Side.SELL) == 0.0  # the send failed: nothing left pending
