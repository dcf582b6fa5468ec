"""SimVenue ``buy_fee_in_base``: spot buys pay their fee out of the base received, as Gate.io and
MEXC spot charge it (Gate ``fee_currency`` / MEXC ``commissionAsset``, ``feeCurrency`` = the base;
PROTOCOLS.md §1.2, §1.5, §2.2). Hand-built Rust books on a SimClock; amounts BTC and USDT, fee
rates fractions (taker 0.1 %, maker 0.02 %)."""

from __future__ import annotations

from typing import Any

import pytest
from cexarb._core import OrderBook
from cexarb.clock import SimClock
from cexarb.model import (
    Fill,
    Instrument,
    InstrumentKind,
    OrderStatus,
    Position,
    Side,
    TimeInForce,
)
from cexarb.venues.base import OrderRequest
from cexarb.venues.sim import SimLatency, SimVenue

MS = 1_000_000
SPOT = Instrument(
    venue="sim", symbol="BTCUSDT", kind=InstrumentKind.SPOT, base="BTC", quote="USDT",
    tick_size=0.01, lot_size=0.00001, min_notional=5.0, maker_fee=0.0002, taker_fee=0.001,
)
PERP = Instrument(
    venue="sim", symbol="BTCUSDT_PERP", kind=InstrumentKind.PERP, base="BTC", quote="USDT",
    tick_size=0.01, lot_size=0.00001, min_notional=5.0, maker_fee=0.0002, taker_fee=0.0005,
    funding_interval_hours=8.0,
)
ASKS = [(100.00, 1.0), (100.01, 2.0), (100.02, 5.0)]
BIDS = [(99.99, 2.0), (99.98, 3.0), (99.97, 4.0)]


def make_venue(spot: Instrument = SPOT, **kw: Any) -> tuple[SimVenue, SimClock, list[Fill]]:
    clock = SimClock(0)
    books = {}
    for inst in (spot, PERP):
        book = OrderBook(0.01, 0.00001)
        book.apply_snapshot(BIDS, ASKS, 1)
        books[inst.key] = book
    venue = SimVenue(
        "sim", clock, {spot.key: spot, PERP.key: PERP}, books,
        latency=SimLatency(order_entry_ns=1 * MS, ack_ns=1 * MS),
        balances={"USDT": 10_000.0, "BTC": 1.0}, leverage=5.0, **kw,
    )
    fills: list[Fill] = []
    venue.subscribe(lambda e: fills.append(e) if isinstance(e, Fill) else None)
    return venue, clock, fills


def req(side: Side, qty: float, price: float | None = None, coid: str = "o1", inst: Instrument = SPOT,
        **kw: Any) -> OrderRequest:
    return OrderRequest.create(inst, side, qty, price=price, client_order_id=coid, **kw)


def totals(venue: SimVenue) -> dict[str, float]:
    return {a: b.total for a, b in venue.balances_now().items()}


def test_taker_buy_pays_its_fee_in_base_and_exactly_the_notional_in_quote() -> None:
    venue, clock, fills = make_venue(buy_fee_in_base=True)
    assert venue.buy_fee_in_base is True
    venue.submit(req(Side.BUY, 2.5))  # walks 100.00 x 1.0, 100.01 x 1.5
    clock.run_due(10 * MS)
    assert [(f.price, f.qty) for f in fills] == [(100.00, 1.0), (100.01, pytest.approx(1.5))]
    for f in fills:
        assert f.fee_base == pytest.approx(0.001 * f.qty, rel=1e-12)
        assert f.fee == pytest.approx(f.fee_base * f.price, rel=1e-12)  # its value in quote
    fee_base = sum(f.fee_base for f in fills)
    notional = sum(f.price * f.qty for f in fills)
    got = totals(venue)
    assert got["BTC"] == pytest.approx(1.0 + 2.5 - fee_base, abs=1e-12)
    assert got["USDT"] == pytest.approx(10_000.0 - notional, abs=1e-9)  # no quote fee on top
    # the venue's own position holds what the account received, booked as an order manager books
    # the same fills (Position.apply_fill with fee_base: the fee leaves at the entry price)
    pos = venue.position(SPOT.key)
    assert pos.qty == pytest.approx(2.5 - fee_base, abs=1e-12)
    ref = Position(instrument_key=SPOT.key)
    for f in fills:
        ref.apply_fill(f.side, f.qty, f.price, f.fee, SPOT, f.fee_base)
    assert (pos.qty, pos.avg_price, pos.realized_pnl) == (ref.qty, ref.avg_price, ref.realized_pnl)
    assert 100.00 < pos.avg_price < 100.01
    assert pos.fees == pytest.approx(sum(f.fee for f in fills), rel=1e-12)
    assert venue.fees_paid == pytest.approx(pos.fees, rel=1e-12)
    assert venue.base_fees["o1"] == pytest.approx(fee_base, rel=1e-12) and len(venue.base_fees) == 1
    assert [f.fee_base for f in venue._fills] == [f.fee_base for f in fills]


async def test_the_order_states_the_quote_value_and_sells_pay_in_quote() -> None:
    venue, clock, fills = make_venue(buy_fee_in_base=True)
    venue.submit(req(Side.BUY, 1.0, coid="b1"))
    clock.run_due(10 * MS)
    order = await venue.get_order(SPOT.key, "b1")
    assert order is not None and order.status is OrderStatus.FILLED
    assert order.fees == pytest.approx(0.001 * 100.0, rel=1e-12)  # quote currency, as without the option
    after_buy = totals(venue)
    venue.submit(req(Side.SELL, 0.5, coid="s1"))
    clock.run_due(20 * MS)
    (sell,) = [f for f in fills if f.client_order_id == "s1"]
    assert sell.fee_base == 0.0 and sell.fee == pytest.approx(0.001 * 99.99 * 0.5, rel=1e-12)
    got = totals(venue)
    assert got["BTC"] == pytest.approx(after_buy["BTC"] - 0.5, abs=1e-12)
    assert got["USDT"] == pytest.approx(after_buy["USDT"] + 99.99 * 0.5 * (1 - 0.001), abs=1e-9)
    assert venue.base_fees["s1"] == 0.0
    assert venue.position(SPOT.key).qty == pytest.approx(1.0 - 0.001 - 0.5, abs=1e-12)


def test_resting_buy_filled_as_maker_pays_the_maker_rate_in_base() -> None:
    venue, clock, fills = make_venue(buy_fee_in_base=True)
    venue.submit(req(Side.BUY, 1.0, 99.99, coid="m1", time_in_force=TimeInForce.GTC))
    clock.run_due(10 * MS)
    assert fills == [] and venue.resting(SPOT.key)
    # sells trade through our level: the queue ahead (2.0 at 99.99) goes first, then us
    venue.on_trade(SPOT.key, 99.98, 5.0, False, 20 * MS)
    clock.run_due(30 * MS)
    assert fills and all(f.is_maker for f in fills)
    assert sum(f.qty for f in fills) == pytest.approx(1.0)
    assert all(f.fee_base == pytest.approx(0.0002 * f.qty, rel=1e-12) for f in fills)
    assert totals(venue)["BTC"] == pytest.approx(1.0 + 1.0 * (1 - 0.0002), abs=1e-12)
    assert totals(venue)["USDT"] == pytest.approx(10_000.0 - 99.99, abs=1e-9)


def test_default_and_derivatives_charge_every_fee_in_quote() -> None:
    for kw in ({}, {"buy_fee_in_base": False}):
        venue, clock, fills = make_venue(**kw)
        assert venue.buy_fee_in_base is False
        venue.submit(req(Side.BUY, 1.0))
        clock.run_due(10 * MS)
        (f,) = fills
        assert f.fee_base == 0.0 and f.fee == pytest.approx(0.1, rel=1e-12)
        assert totals(venue) == {"USDT": pytest.approx(10_000.0 - 100.0 - 0.1), "BTC": 1.0 + 1.0}
        assert venue.position(SPOT.key).qty == 1.0 and venue.base_fees["o1"] == 0.0
    # a perp buy on a buy_fee_in_base venue: margin and fees in quote, no base fee
    venue, clock, fills = make_venue(buy_fee_in_base=True)
    venue.submit(req(Side.BUY, 1.0, inst=PERP, coid="p1"))
    clock.run_due(10 * MS)
    (f,) = fills
    assert f.fee_base == 0.0 and f.fee == pytest.approx(0.0005 * 100.0, rel=1e-12)
    assert venue.position(PERP.key).qty == 1.0
    assert totals(venue) == {"USDT": pytest.approx(10_000.0 - 0.05), "BTC": 1.0}


def test_a_maker_rebate_on_a_buy_is_credited_in_quote() -> None:
    rebate = Instrument(
        venue="sim", symbol="BTCUSDT", kind=InstrumentKind.SPOT, base="BTC", quote="USDT",
        tick_size=0.01, lot_size=0.00001, maker_fee=-0.0001, taker_fee=0.001,
    )
    venue, clock, fills = make_venue(rebate, buy_fee_in_base=True)
    venue.submit(req(Side.BUY, 1.0, 99.99, coid="r1", inst=rebate))
    clock.run_due(10 * MS)
    venue.on_trade(rebate.key, 99.98, 5.0, False, 20 * MS)
    clock.run_due(30 * MS)
    assert sum(f.qty for f in fills) == pytest.approx(1.0)
    assert all(f.fee_base == 0.0 and f.fee < 0 for f in fills)
    assert totals(venue)["BTC"] == pytest.approx(2.0, abs=1e-12)
    assert totals(venue)["USDT"] == pytest.approx(10_000.0 - 99.99 * (1 - 0.0001), abs=1e-9)


def test_buy_fee_in_base_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match=r"buy_fee_in_base must be a bool, got 'yes'"):
        make_venue(buy_fee_in_base="yes")
