"""Bounded order records (``cexarb.retention``): the order manager and the connectors keep finished
orders only as long as asked, open orders always, and a late fill within the minimum age still
finds its order. The order manager runs against the in-process simulated venue (the real fill
model on a small hand-built book); the connector part against the loopback simulator.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from cexarb._core import OrderBook
from cexarb.clock import SimClock
from cexarb.execution import OrderManager
from cexarb.model import (
    Instrument,
    InstrumentKind,
    Order,
    OrderStatus,
    Side,
    TimeInForce,
)
from cexarb.retention import TerminalOrderRetention
from cexarb.risk import RiskLimits, RiskPolicy
from cexarb.venues.base import OrderRequest
from cexarb.venues.sim import SimLatency, SimVenue

MS = 1_000_000
S = 1_000_000_000
SPOT = Instrument(
    venue="sim", symbol="BTCUSDT", kind=InstrumentKind.SPOT, base="BTC", quote="USDT",
    tick_size=0.01, lot_size=0.00001, min_notional=5.0, maker_fee=0.0002, taker_fee=0.001,
)


def _order(coid: str, status: OrderStatus = OrderStatus.NEW) -> Order:
    order = OrderRequest.create(SPOT, Side.BUY, 0.001, price=100.0, client_order_id=coid).to_order(0)
    order.status = status
    return order


# ---- TerminalOrderRetention ------------------------------------------------------------------


def test_oldest_terminal_orders_go_once_over_the_bound_and_old_enough() -> None:
    orders = {f"o{i}": _order(f"o{i}", OrderStatus.FILLED) for i in range(5)}
    orders["open"] = _order("open")  # never noted, never evicted
    dropped: list[str] = []
    r = TerminalOrderRetention(orders, max_orders=2, min_age_s=10.0, on_evict=lambda coid, order: dropped.append(coid))
    for i in range(5):
        r.terminal(f"o{i}", i * S)  # o0 at 0 s ... o4 at 4 s: none 10 s old yet
    assert set(orders) == {"o0", "o1", "o2", "o3", "o4", "open"}
    assert r.pending == 5
    r.terminal("o4", 12 * S)  # o4 again (its last time counts); o0..o2 are now >= 10 s old
    assert dropped == ["o0", "o1", "o2"]
    assert set(orders) == {"o3", "o4", "open"}
    assert r.evicted == 3 and r.pending == 2


def test_an_order_open_again_is_not_evicted_until_it_ends_again() -> None:
    orders = {"a": _order("a", OrderStatus.REJECTED), "b": _order("b", OrderStatus.FILLED)}
    r = TerminalOrderRetention(orders, max_orders=1, min_age_s=0.0)
    r.terminal("a", 0)
    orders["a"].status = OrderStatus.NEW  # a later update overturned the rejection
    r.terminal("b", 1)  # over the bound: "a" is the oldest, but open
    assert "a" in orders and "b" in orders
    orders["a"].status = OrderStatus.CANCELED
    r.terminal("a", 2)
    assert set(orders) == {"a"}  # "b" went: the oldest terminal once "a" was noted again


def test_unbounded_keeps_everything_and_bad_settings_name_the_field() -> None:
    orders = {"a": _order("a", OrderStatus.FILLED)}
    r = TerminalOrderRetention(orders, max_orders=None)
    for t in range(100):
        r.terminal("a", t * S)
    assert orders and r.pending == 0 and r.evicted == 0
    with pytest.raises(ValueError, match="max_orders must be >= 1 or None, got 0"):
        TerminalOrderRetention({}, max_orders=0)
    with pytest.raises(ValueError, match="min_age_s must be finite and >= 0, got -1"):
        TerminalOrderRetention({}, max_orders=5, min_age_s=-1)


# ---- OrderManager on the simulated venue --------------------------------------------------------


class _Rig:
    def __init__(self, **om_kwargs: object) -> None:
        self.clock = SimClock(0)
        book = OrderBook(0.01, 0.00001)
        book.apply_snapshot([(99.99, 50.0), (99.98, 50.0)], [(100.00, 50.0), (100.01, 50.0)], 1)
        self.venue = SimVenue(
            "sim", self.clock, {SPOT.key: SPOT}, {SPOT.key: book},
            latency=SimLatency(order_entry_ns=1 * MS, ack_ns=1 * MS), balances={"USDT": 1e9, "BTC": 1e3},
        )
        self.om = OrderManager(
            self.clock, {"sim": self.venue}, {SPOT.key: book}.__getitem__, RiskPolicy(RiskLimits(max_open_orders=0)),
            **om_kwargs,  # type: ignore[arg-type]
        )

    async def trade(self, n: int, every_ns: int, side: Side = Side.BUY, tif: TimeInForce = TimeInForce.IOC) -> list[Order]:
        out = []
        for _ in range(n):
            price = 100.00 if side is Side.BUY else 99.99
            out.append(await self.om.submit(OrderRequest.create(SPOT, side, 0.1, price=price, time_in_force=tif)))
            self.clock.run_due(self.clock.now_ns() + every_ns)
        self.clock.run_due(self.clock.now_ns() + 10 * MS)  # the last acks and fills (2 ms latency)
        return out


def test_order_manager_bounds_finished_orders_and_keeps_counts_and_position() -> None:
    rig = _Rig(max_terminal_orders=50, terminal_order_min_age_s=1.0)

    async def run() -> list[Order]:
        return await rig.trade(400, every_ns=10 * MS)  # 400 IOC buys that fill, 10 ms apart

    sent = asyncio.run(run())
    om = rig.om
    assert all(o.status is OrderStatus.FILLED for o in sent)
    assert om.n_orders == 400 and om.n_fills == 400
    assert om.positions[SPOT.key].qty == pytest.approx(40.0)
    # at 10 ms per order, 1 s of age is ~100 orders: the newest ~150 are held, the rest evicted
    assert 50 <= len(om.orders) <= 160, len(om.orders)
    assert om.evicted_orders == 400 - len(om.orders)
    assert len(om.fills) == 50  # the latest fills
    newest = sent[-1].client_order_id
    assert om.orders[newest] is sent[-1]
    assert [f.client_order_id for f in om.fills_of(newest)] == [newest]
    oldest = sent[0].client_order_id
    assert oldest not in om.orders and om.fills_of(oldest) == []



def test_open_orders_are_never_evicted() -> None:
    rig = _Rig(max_terminal_orders=5, terminal_order_min_age_s=0.0)

    async def run() -> tuple[list[Order], list[Order]]:
        resting = []
        for _ in range(3):  # GTC buys below the best bid: they rest
            req = OrderRequest.create(SPOT, Side.BUY, 0.1, price=99.00, time_in_force=TimeInForce.GTC)
            resting.append(await rig.om.submit(req))
            rig.clock.run_due(rig.clock.now_ns() + MS)
        return resting, await rig.trade(30, every_ns=1 * MS)

    resting, done = asyncio.run(run())
    om = rig.om
    assert all(o.status is OrderStatus.NEW for o in resting)
    assert all(om.orders[o.client_order_id] is o for o in resting)
    assert len(om.orders) == 3 + 5 and om.evicted_orders == 25
    assert [o.client_order_id for o in done[-5:]] == [k for k in om.orders if k not in {o.client_order_id for o in resting}]


def test_a_late_fill_finds_its_order_within_the_min_age_and_moves_the_position_after(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Within the min age a late fill finds its order; after its record was evicted it is still
    applied to the position (counted, logged, passed on), so the position stays the venue's; a
    fill for an id this manager never issued is ignored."""
    rig = _Rig(max_terminal_orders=1, terminal_order_min_age_s=1.0)
    seen: list[object] = []
    rig.om.add_listener(seen.append)

    async def run() -> list[Order]:
        return await rig.trade(10, every_ns=10 * MS)  # 100 ms in all: nothing 1 s old yet

    sent = asyncio.run(run())
    om = rig.om
    assert om.evicted_orders == 0
    first = sent[0]
    fill = om.fills_of(first.client_order_id)[0]
    late = msgspec.structs.replace(fill, fill_id="late-1", qty=0.05)  # e.g. a backfill after a reconnect
    qty = om.positions[SPOT.key].qty
    om.on_private_event(late)
    assert om.positions[SPOT.key].qty == pytest.approx(qty + 0.05)
    assert om.fills_of(first.client_order_id)[-1] is late
    # 2 s later the next finished order evicts all but the newest
    rig.clock.advance(rig.clock.now_ns() + 2 * S)
    asyncio.run(rig.trade(1, every_ns=MS))
    assert first.client_order_id not in om.orders and om.evicted_orders == 10
    qty, n_fills = om.positions[SPOT.key].qty, om.n_fills
    later = msgspec.structs.replace(late, fill_id="late-2")
    with caplog.at_level("WARNING"):
        om.on_private_event(later)
    assert om.positions[SPOT.key].qty == pytest.approx(qty + 0.05)
    assert om.n_fills == n_fills + 1 and om.n_late_fills == 1 and om.fills[-1] is later and seen[-1] is later
    assert "record no longer kept" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        om.on_private_event(msgspec.structs.replace(late, client_order_id="other-client-7", fill_id="x1"))
        # our prefix, but a number never handed out
        om.on_private_event(msgspec.structs.replace(late, client_order_id=f"{om.client_order_id_prefix}-999",
                                                    fill_id="x2"))
    assert om.positions[SPOT.key].qty == pytest.approx(qty + 0.05) and om.n_late_fills == 1
    assert caplog.text.count("unknown client_order_id") == 2


def test_default_keeps_every_order_as_a_backtest_needs() -> None:
    rig = _Rig()

    async def run() -> list[Order]:
        return await rig.trade(200, every_ns=100 * MS)

    sent = asyncio.run(run())
    assert len(rig.om.orders) == 200 and len(rig.om.fills) == 200 and rig.om.evicted_orders == 0
    assert all(rig.om.fills_of(o.client_order_id) for o in sent)


def test_order_manager_refuses_a_bad_bound_naming_it() -> None:
    with pytest.raises(ValueError, match="max_orders must be >= 1 or None, got 0"):
        _Rig(max_terminal_orders=0)


def test_the_simulated_venue_bounds_finished_orders_for_a_long_paper_run() -> None:
    rig = _Rig()  # the manager keeps all; the venue is the one bounded here
    rig.venue = SimVenue(
        "sim", rig.clock, {SPOT.key: SPOT}, rig.venue._books,
        latency=SimLatency(order_entry_ns=1 * MS, ack_ns=1 * MS), balances={"USDT": 1e9, "BTC": 1e3},
        max_terminal_orders=20, terminal_order_min_age_s=0.5,
    )
    rig.om.venues["sim"] = rig.venue
    rig.venue.subscribe(rig.om.on_private_event)

    async def run() -> list[Order]:
        return await rig.trade(300, every_ns=10 * MS)  # 3 s of orders

    sent = asyncio.run(run())
    venue = rig.venue
    assert venue.n_orders == 300 and venue.n_fills == 300
    assert len(venue._orders) <= 20 + 60  # the bound plus ~0.5 s of finished orders at 10 ms each
    assert len(venue._by_venue_id) == len(venue._orders)
    assert venue.position(SPOT.key).qty == pytest.approx(30.0)
    assert rig.om.positions[SPOT.key].qty == pytest.approx(30.0)  # every fill reached the manager

    async def query() -> tuple[object, object, list[object]]:
        return (
            await venue.get_order(SPOT.key, sent[-1].client_order_id),
            await venue.get_order(SPOT.key, sent[0].client_order_id),
            await venue.fills(),
        )

    newest, oldest, fills = asyncio.run(query())
    assert newest is not None and oldest is None
    assert len(fills) == 20
