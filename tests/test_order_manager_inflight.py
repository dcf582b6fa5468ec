"""The order manager sends a request first and makes its record just after (the record is off
the tick-to-order path); a venue event for the order that arrives while the request is on its
way -- here a venue that answers inside ``place_order`` -- makes the record then, and nothing is
lost or applied twice."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
import pytest
from cexarb._core import OrderBook
from cexarb.clock import SimClock
from cexarb.execution import OrderManager
from cexarb.model import Fill, Instrument, InstrumentKind, Order, OrderStatus, Side
from cexarb.venues.base import OrderRequest, OrderUpdate, PrivateEvent

SPOT = Instrument(
    venue="instant", symbol="BTCUSDT", kind=InstrumentKind.SPOT, base="BTC", quote="USDT",
    tick_size=0.01, lot_size=0.00001, min_notional=5.0, maker_fee=0.0002, taker_fee=0.001,
)


class InstantVenue:
    """A venue that fills an order completely and tells its subscribers before ``place_order``
    returns (a synchronous answer), or raises when told to."""

    name = "instant"

    def __init__(self) -> None:
        self.handlers: list[Callable[[PrivateEvent], None]] = []
        self.seen_records: list[bool] = []  # did the manager hold a record when the request came?
        self.manager: OrderManager | None = None
        self.fail = False

    def subscribe(self, handler: Callable[[PrivateEvent], None]) -> None:
        self.handlers.append(handler)

    async def place_order(self, request: OrderRequest) -> Order:
        assert self.manager is not None
        self.seen_records.append(request.client_order_id in self.manager.orders)
        if self.fail:
            raise ConnectionError("venue unreachable")
        coid = request.client_order_id
        for event in (
            Fill(client_order_id=coid, venue_order_id="v1", instrument_key=SPOT.key, side=request.side,
                 price=request.price or 0.0, qty=request.qty, fee=0.01, is_maker=False, ts_ns=5, fill_id="t1"),
            OrderUpdate(client_order_id=coid, venue_order_id="v1", instrument_key=SPOT.key,
                        status=OrderStatus.FILLED, filled_qty=request.qty, avg_fill_price=request.price or 0.0,
                        ts_ns=5),
        ):
            for handler in self.handlers:
                handler(event)
        order = request.to_order(0)
        order.status = OrderStatus.FILLED
        order.venue_order_id = "v1"
        return order


def _manager() -> tuple[OrderManager, InstantVenue]:
    book = OrderBook(SPOT.tick_size, SPOT.lot_size)
    book.apply_snapshot([[100.0, 5.0]], [[100.01, 5.0]], 1)
    venue = InstantVenue()
    om = OrderManager(SimClock(1_000), {"instant": venue}, lambda key: book)
    venue.manager = om
    return om, venue


def test_events_during_place_order_make_the_record_once() -> None:
    om, venue = _manager()
    seen: list[PrivateEvent] = []
    om.add_listener(seen.append)
    request = OrderRequest.create(SPOT, Side.BUY, 0.001, price=100.01, client_order_id="a1")
    order = asyncio.run(om.submit(request))
    assert venue.seen_records == [False]  # the request left before its record was made
    assert om.orders["a1"] is order  # the record the events made is the one returned
    assert order.status is OrderStatus.FILLED and order.filled_qty == pytest.approx(0.001)
    assert order.venue_order_id == "v1" and order.created_ns == 1_000
    assert om.n_orders == 1 and om.n_fills == 1 and len(om.fills_of("a1")) == 1
    assert om.positions[SPOT.key].qty == pytest.approx(0.001)
    assert om.n_open_orders == 0  # terminal before submit returned: never open
    assert [type(e) for e in seen] == [Fill, OrderUpdate]
    assert not om._inflight


def test_a_venue_error_leaves_a_pending_record_and_the_id_taken() -> None:
    om, venue = _manager()
    venue.fail = True
    request = OrderRequest.create(SPOT, Side.BUY, 0.001, price=100.01, client_order_id="b1")
    with pytest.raises(ConnectionError):
        asyncio.run(om.submit(request))
    assert om.orders["b1"].status is OrderStatus.PENDING_NEW and om.n_orders == 1
    assert not om._inflight
    with pytest.raises(ValueError, match="duplicate client_order_id 'b1'"):
        asyncio.run(om.submit(request))



def test_an_order_whose_send_raised_is_tracked_once_the_venue_reports_it_open() -> None:
    """A lost reply: place_order raised, but the venue took the order. Its NEW update makes it an
    open order (cancel on stop sees it, the risk check counts it) instead of a record nobody
    tracks; its fill then ends it."""
    om, venue = _manager()
    venue.fail = True
    request = OrderRequest.create(SPOT, Side.BUY, 0.002, price=100.01, client_order_id="d1")
    with pytest.raises(ConnectionError):
        asyncio.run(om.submit(request))
    assert om.n_open_orders == 0 and om._pending_qty(SPOT.key, Side.BUY) == 0.0
    update = OrderUpdate(client_order_id="d1", venue_order_id="v9", instrument_key=SPOT.key,
                         status=OrderStatus.NEW, filled_qty=0.0, avg_fill_price=0.0, ts_ns=7)
    om.on_private_event(update)
    assert [o.client_order_id for o in om.open_orders] == ["d1"]
    assert om.orders["d1"].venue_order_id == "v9"
    assert om._pending_qty(SPOT.key, Side.BUY) == pytest.approx(0.002)
    om.on_private_event(Fill(client_order_id="d1", venue_order_id="v9", instrument_key=SPOT.key, side=Side.BUY,
                             price=100.01, qty=0.002, fee=0.0, is_maker=False, ts_ns=8, fill_id="t9"))
    om.on_private_event(msgspec.structs.replace(update, status=OrderStatus.FILLED, filled_qty=0.002,
                                                avg_fill_price=100.01))
    assert om.n_open_orders == 0 and om._pending_qty(SPOT.key, Side.BUY) == 0.0


def _resting(om: OrderManager, venue: InstantVenue, coid: str, qty: float) -> Order:
    """An order the venue took and left open (NEW), as its update says."""
    venue.fail = True
    with pytest.raises(ConnectionError):
        asyncio.run(om.submit(OrderRequest.create(SPOT, Side.BUY, qty, price=100.01, client_order_id=coid)))
    om.on_private_event(OrderUpdate(client_order_id=coid, venue_order_id="v-" + coid, instrument_key=SPOT.key,
                                    status=OrderStatus.NEW, filled_qty=0.0, avg_fill_price=0.0, ts_ns=7))
    return om.orders[coid]


def _fill(coid: str, qty: float, n: int) -> Fill:
    return Fill(client_order_id=coid, venue_order_id="v-" + coid, instrument_key=SPOT.key, side=Side.BUY,
                price=100.01, qty=qty, fee=0.0, is_maker=False, ts_ns=9, fill_id=f"{coid}-t{n}")


def test_an_update_reporting_fills_not_received_yet_waits_for_them() -> None:
    """Live venues send order updates and fills on separate channels (Gate spot.orders /
    spot.usertrades): a FILLED update may come before its fills. The order manager applies it
    (and passes it on) only once the fills it reports are booked, so a strategy never sees a
    FILLED order with its position not moved."""
    om, venue = _manager()
    seen: list[PrivateEvent] = []
    om.add_listener(seen.append)
    order = _resting(om, venue, "e1", 0.003)
    seen.clear()
    filled = OrderUpdate(client_order_id="e1", venue_order_id="v-e1", instrument_key=SPOT.key,
                         status=OrderStatus.FILLED, filled_qty=0.003, avg_fill_price=100.01, ts_ns=10)
    om.on_private_event(filled)  # before any fill: held
    assert order.status is OrderStatus.NEW and seen == [] and om.n_open_orders == 1
    om.on_private_event(_fill("e1", 0.001, 1))  # one of two fills: still held
    assert order.status is OrderStatus.NEW and [type(e) for e in seen] == [Fill]
    om.on_private_event(_fill("e1", 0.002, 2))  # all there: the fill, then the update
    assert [type(e) for e in seen] == [Fill, Fill, OrderUpdate] and seen[-1] is filled
    assert order.status is OrderStatus.FILLED and order.filled_qty == pytest.approx(0.003)
    assert om.positions[SPOT.key].qty == pytest.approx(0.003) and om.n_open_orders == 0
    assert om.n_updates_before_fills == 0


def test_an_update_whose_fills_never_come_is_applied_after_fill_wait_s(caplog: pytest.LogCaptureFixture) -> None:
    om, venue = _manager()
    order = _resting(om, venue, "e2", 0.003)
    om.on_private_event(OrderUpdate(client_order_id="e2", venue_order_id="v-e2", instrument_key=SPOT.key,
                                    status=OrderStatus.FILLED, filled_qty=0.003, avg_fill_price=100.01, ts_ns=10))
    assert order.status is OrderStatus.NEW
    clock = om.clock
    assert isinstance(clock, SimClock)
    clock.run_due(clock.now_ns() + int(om.fill_wait_s * 1e9) - 1)
    assert order.status is OrderStatus.NEW  # not yet
    with caplog.at_level("WARNING"):
        clock.run_due(clock.now_ns() + 1)
    assert order.status is OrderStatus.FILLED and om.n_updates_before_fills == 1
    assert "only 0 of fills arrived within 5.0 s" in caplog.text
    om.on_private_event(_fill("e2", 0.003, 1))  # the late fill is still booked
    assert om.positions[SPOT.key].qty == pytest.approx(0.003)

def test_a_duplicate_id_is_refused_while_the_first_is_still_on_its_way() -> None:
    om, venue = _manager()
    request = OrderRequest.create(SPOT, Side.BUY, 0.001, price=100.01, client_order_id="c1")
    errors: list[Exception] = []

    original = venue.place_order

    async def place_twice(req: OrderRequest) -> Order:
        try:  # the same id submitted again from inside the first send
            await om.submit(req)
        except ValueError as exc:
            errors.append(exc)
        return await original(req)

    venue.place_order = place_twice  # type: ignore[method-assign]
    asyncio.run(om.submit(request))
    assert len(errors) == 1 and "duplicate client_order_id 'c1'" in str(errors[0])
    assert om.n_orders == 1 and om.n_fills == 1


class AckThenFailVenue(InstantVenue):
    """A venue that acknowledges the order (NEW, on the private stream) while the request is on
    its way, and then the send fails (a lost reply) or hangs (until the task is cancelled)."""

    def __init__(self, hang: bool = False) -> None:
        super().__init__()
        self.hang = hang

    async def place_order(self, request: OrderRequest) -> Order:
        for handler in self.handlers:
            handler(OrderUpdate(client_order_id=request.client_order_id, venue_order_id="v-ack",
                                instrument_key=SPOT.key, status=OrderStatus.NEW, filled_qty=0.0,
                                avg_fill_price=0.0, ts_ns=3))
        if self.hang:
            await asyncio.sleep(60)
        raise ConnectionError("reply lost")


@pytest.mark.parametrize("hang", [False, True], ids=["send-raised", "task-cancelled"])
def test_an_order_acknowledged_on_its_way_stays_open_when_its_send_fails(hang: bool) -> None:
    """The venue's NEW came while the request was in flight, then place_order raised or the
    strategy's task was cancelled: the order rests at the venue, so it is open here too (the
    stop's cancel walks the open orders; the risk check counts its quantity)."""
    book = OrderBook(SPOT.tick_size, SPOT.lot_size)
    book.apply_snapshot([[100.0, 5.0]], [[100.01, 5.0]], 1)
    venue = AckThenFailVenue(hang)
    om = OrderManager(SimClock(1_000), {"instant": venue}, lambda key: book)
    venue.manager = om
    request = OrderRequest.create(SPOT, Side.BUY, 0.002, price=100.01, client_order_id="f1")

    async def run() -> None:
        task = asyncio.ensure_future(om.submit(request))
        await asyncio.sleep(0.01)
        if hang:
            task.cancel()
        with pytest.raises(asyncio.CancelledError if hang else ConnectionError):
            await task

    asyncio.run(run())
    assert om.orders["f1"].status is OrderStatus.NEW and om.orders["f1"].venue_order_id == "v-ack"
    assert [o.client_order_id for o in om.open_orders] == ["f1"]
    assert om._pending_qty(SPOT.key, Side.BUY) == pytest.approx(0.002)
    assert not om._inflight
    om.on_private_event(OrderUpdate(client_order_id="f1", venue_order_id="v-ack", instrument_key=SPOT.key,
                                    status=OrderStatus.CANCELED, filled_qty=0.0, avg_fill_price=0.0, ts_ns=9))
    assert om.n_open_orders == 0 and om._pending_qty(SPOT.key, Side.BUY) == 0.0


def test_an_earlier_holds_timer_does_not_release_a_later_hold_early() -> None:
    """A hold released by its fills leaves its fill_wait_s timer behind; a later hold of the same
    order (its FILLED update before the last fills) waits its own full fill_wait_s."""
    om, venue = _manager()
    clock = om.clock
    assert isinstance(clock, SimClock)
    order = _resting(om, venue, "g1", 0.003)

    def update(status: OrderStatus, filled: float) -> OrderUpdate:
        return OrderUpdate(client_order_id="g1", venue_order_id="v-g1", instrument_key=SPOT.key, status=status,
                           filled_qty=filled, avg_fill_price=100.01, ts_ns=clock.now_ns())

    t0, wait = clock.now_ns(), int(om.fill_wait_s * 1e9)
    om.on_private_event(update(OrderStatus.PARTIALLY_FILLED, 0.001))  # held, timer at t0 + wait
    clock.run_due(t0 + wait // 5)
    om.on_private_event(_fill("g1", 0.001, 1))  # released by its fill
    assert order.status is OrderStatus.PARTIALLY_FILLED
    clock.run_due(t0 + 4 * wait // 5)
    om.on_private_event(update(OrderStatus.FILLED, 0.003))  # held again: its timer at +wait from now
    held_at = clock.now_ns()
    clock.run_due(t0 + wait + 1)  # the first hold's timer: must not release this one
    assert order.status is OrderStatus.PARTIALLY_FILLED and om.updates_waiting_for_fills == ["g1"]
    assert om.n_updates_before_fills == 0
    clock.run_due(held_at + wait + 1)  # its own timer
    assert order.status is OrderStatus.FILLED and om.n_updates_before_fills == 1


def test_own_ids_only_refuses_an_id_outside_the_prefix() -> None:
    """Live, a shared account's events reach a strategy only for ids with its prefix: an order
    with another id would fill unseen, so the order manager refuses it before sending."""
    om, venue = _manager()
    om.own_ids_only = True
    with pytest.raises(ValueError, match="does not start with this manager's prefix 'cx-'"):
        asyncio.run(om.submit(OrderRequest.create(SPOT, Side.BUY, 0.001, price=100.01, client_order_id="hedge-1")))
    assert om.n_orders == 0 and venue.seen_records == []
    order = asyncio.run(om.submit(OrderRequest.create(SPOT, Side.BUY, 0.001, price=100.01)))  # id assigned
    assert order.client_order_id == "cx-1" and order.status is OrderStatus.FILLED
