"""The Rust pieces of the tick-to-order path: ``_core.ArbEntry`` (SIMPLE_ARBITRAGE scan, validation
and buy-leg pricing in one call) and ``_core.PreTradeRisk`` behind :class:`cexarb.risk.RiskPolicy`.

``ArbEntry`` is checked on the real Binance spot + USDⓈ-M books against an independent
recomputation from the general functions (``best_cross``, the mid, ``OrderRequest.create``); the
risk policy against a plain-Python statement of its rules, on hand-built books and with hypothesis.
"""

from __future__ import annotations

import math

import pytest
from cexarb import _core
from cexarb.clock import SimClock
from cexarb.execution import OrderManager
from cexarb.model import (
    Instrument,
    InstrumentKind,
    Order,
    OrderStatus,
    Position,
    Side,
    TimeInForce,
)
from cexarb.replay import known_instrument
from cexarb.risk import RiskLimits, RiskPolicy, RiskRejection
from cexarb.venues.base import OrderRequest
from hypothesis import given, settings
from hypothesis import strategies as st

SPOT_KEY, PERP_KEY = "binance-spot:BTCUSDT", "binance-usdm:BTCUSDT"
SPOT = known_instrument("binance-spot", "BTCUSDT")
PERP = known_instrument("binance-usdm", "BTCUSDT")
COINM = known_instrument("binance-coinm", "BTCUSD_PERP")


def _book(inst: Instrument, bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> _core.OrderBook:
    book = _core.OrderBook(inst.tick_size, inst.lot_size)
    book.apply_snapshot(bids, asks, 1)
    return book


def _entry(a: _core.OrderBook, b: _core.OrderBook, notional: float, threshold_bps: float, slip: float = 0.002):
    return _core.ArbEntry(
        a, b, notional, max(SPOT.min_notional, PERP.min_notional), threshold_bps, slip,
        SPOT.tick_size, SPOT.lot_size, SPOT.taker_fee, PERP.tick_size, PERP.lot_size, PERP.taker_fee,
    )


def _expected(a: _core.OrderBook, b: _core.OrderBook, notional: float, threshold_bps: float, slip: float):
    """The same scan from the general functions, as SIMPLE_ARBITRAGE did before ArbEntry."""
    if not (a.is_valid and b.is_valid) or a.mid() is None:
        return None
    step = max(SPOT.lot_size, PERP.lot_size)
    mid = a.mid()
    qty = math.floor(notional / mid / step + 1e-9) * step
    x = _core.best_cross(a, b, qty, SPOT.taker_fee, PERP.taker_fee)
    if x is None:
        return None
    buy_on_a, spread, _, _, buy_slip, sell_slip, ask_ticks, _ = x
    order = None
    if spread >= threshold_bps:
        inst = SPOT if buy_on_a else PERP
        ticks = math.ceil(ask_ticks * (1 + slip) - 1e-9)
        r = OrderRequest.create(inst, Side.BUY, qty, price_ticks=ticks, time_in_force=TimeInForce.IOC)
        order = (r.qty_lots, r.price_ticks, r.wire_qty, r.wire_price, r.qty, r.price)
    return (buy_on_a, spread, qty, buy_slip, sell_slip, ask_ticks, order)


def test_arb_entry_equals_the_general_functions_on_real_books(recording) -> None:
    spot, perp = recording.streams[SPOT_KEY].book, recording.streams[PERP_KEY].book
    events = sorted([(int(t), 0, i) for i, t in enumerate(spot.local_ns)] + [(int(t), 1, i) for i, t in enumerate(perp.local_ns)])
    books = [_core.OrderBook(SPOT.tick_size, SPOT.lot_size), _core.OrderBook(PERP.tick_size, PERP.lot_size)]
    # threshold in the middle of the recorded spreads: both outcomes occur
    cases = [(_entry(books[0], books[1], 1_000.0, -9.0), 1_000.0, -9.0, 0.002),
             (_entry(books[0], books[1], 25_000.0, -12.0, 0.0005), 25_000.0, -12.0, 0.0005)]
    compared = with_order = 0
    for n, (_, src, i) in enumerate(events):
        books[src].apply_delta((spot, perp)[src].deltas[i])
        if n % 3:
            continue
        for entry, notional, threshold, slip in cases:
            got = entry.scan()
            want = _expected(books[0], books[1], notional, threshold, slip)
            assert got == want, (n, got, want)
            compared += 1
            with_order += got is not None and got[6] is not None
    assert compared > 5_000 and 0 < with_order < compared, (compared, with_order)


def test_arb_entry_boundaries_and_errors() -> None:
    cheap = _book(SPOT, [(60_000.00, 1.0)], [(60_000.01, 1.0)])
    rich = _book(PERP, [(60_030.0, 1.0)], [(60_030.1, 1.0)])
    x = _entry(cheap, rich, 6_000.0, -100.0).scan()
    assert x is not None
    buy_on_a, spread, qty, buy_slip, sell_slip, ask_ticks, order = x
    assert buy_on_a and qty == pytest.approx(0.099) and buy_slip == sell_slip == 0.0
    assert ask_ticks == 6_000_001
    # limit = ceil(6000001 * 1.002) ticks, formatted on the spot grid (tick 0.01, lot 0.00001)
    assert order == (9_900, 6_012_002, "0.09900", "60120.02", 0.099, 60120.02)
    # exactly at the threshold trades; just above it does not
    assert _entry(cheap, rich, 6_000.0, spread).scan()[6] is not None
    assert _entry(cheap, rich, 6_000.0, spread + 1e-9).scan()[6] is None
    # too thin for the size, or an invalid book: None
    assert _entry(cheap, rich, 100_000.0, -100.0).scan() is None
    gapped = _book(SPOT, [(60_000.00, 1.0)], [(60_000.01, 1.0)])
    gapped.apply_update([], [], 5, 6)
    assert _entry(gapped, rich, 6_000.0, -100.0).scan() is None
    # below one lot / the min notional: PricingError (a ValueError) naming the figures
    with pytest.raises(ValueError, match=r"position size 2 buys 0 .*worth 0.00, below the min notional 100"):
        _entry(cheap, rich, 2.0, -100.0).scan()
    with pytest.raises(ValueError, match="notional"):
        _entry(cheap, rich, -1.0, 0.0)
    with pytest.raises(ValueError, match="slippage_tolerance"):
        _entry(cheap, rich, 100.0, 0.0, slip=math.nan)


# ---------------------------------------------------------------------------------------------
# risk

def _policy(**limits: float) -> RiskPolicy:
    base = {"max_order_notional": 0.0, "max_position_notional": 0.0, "price_band_bps": 0.0, "max_open_orders": 0}
    base.update(limits)
    return RiskPolicy(RiskLimits(**base))


BOOK = _book(SPOT, [(59_999.99, 5.0)], [(60_000.01, 5.0)])  # mid 60,000


def _req(side: Side, qty: float, price: float | None = None, inst: Instrument = SPOT) -> OrderRequest:
    return OrderRequest.create(inst, side, qty, price=price)


@pytest.mark.parametrize(
    ("limits", "request_", "position", "open_orders", "message"),
    [
        ({"max_order_notional": 1_000.0}, _req(Side.BUY, 0.02, 60_000.0), None, 0,
         "order notional 1200.00 > max_order_notional 1000.00"),
        ({"max_order_notional": 1_000.0}, _req(Side.SELL, 0.02), None, 0,  # market: valued at the mid
         "order notional 1200.00 > max_order_notional 1000.00"),
        ({"max_position_notional": 3_000.0}, _req(Side.BUY, 0.02, 60_000.0), 0.04, 0,
         "position notional after order 3600.00 > max_position_notional 3000.00"),
        ({"price_band_bps": 10.0}, _req(Side.BUY, 0.01, 60_090.0), None, 0,
         "limit price 60090.0 is 15.0 bps through mid > price_band_bps 10.0"),
        ({"price_band_bps": 10.0}, _req(Side.SELL, 0.01, 59_910.0), None, 0,
         "limit price 59910.0 is 15.0 bps through mid > price_band_bps 10.0"),
        ({"max_open_orders": 3}, _req(Side.BUY, 0.01), None, 3, "open orders 3 >= max_open_orders 3"),
    ],
)
def test_each_limit_rejects_with_its_message(limits, request_, position, open_orders, message) -> None:
    policy = _policy(**limits)
    pos = Position(instrument_key=SPOT.key, qty=position) if position is not None else None
    with pytest.raises(RiskRejection) as info:
        policy.check(request_, BOOK, pos, open_orders)
    assert str(info.value) == message
    assert policy.rejections == 1


def test_within_limits_and_reducing_orders_pass() -> None:
    policy = _policy(max_order_notional=1_500.0, max_position_notional=3_000.0, price_band_bps=10.0, max_open_orders=3)
    policy.check(_req(Side.BUY, 0.02, 60_000.0), BOOK, None, 2)
    # a sell that reduces a long beyond the position limit is allowed
    policy.check(_req(Side.SELL, 0.02, 60_000.0), BOOK, Position(instrument_key=SPOT.key, qty=0.1), 0)
    # a buy through the band is rejected, a sell at the same price is not through it
    policy.check(_req(Side.SELL, 0.01, 60_050.0), BOOK, None, 0)
    assert policy.rejections == 0


def test_inverse_perp_notional_and_unusable_books() -> None:
    book = _book(COINM, [(60_000.0, 50.0)], [(60_000.1, 50.0)])
    policy = _policy(max_order_notional=1_000.0)
    # 11 contracts of 100 USD = 1,100 USD whatever the price
    with pytest.raises(RiskRejection, match="order notional 1100.00"):
        policy.check(_req(Side.BUY, 11, 60_000.0, COINM), book, None, 0)
    policy.check(_req(Side.BUY, 10, 60_000.0, COINM), book, None, 0)
    gapped = _book(SPOT, [(59_999.99, 5.0)], [(60_000.01, 5.0)])
    gapped.apply_update([], [], 5, 6)
    with pytest.raises(RiskRejection, match=r"book of binance-spot:BTCUSDT is not valid \(.*gap"):
        _policy().check(_req(Side.BUY, 0.01), gapped, None, 0)
    one_sided = _book(SPOT, [(59_999.99, 5.0)], [])
    with pytest.raises(RiskRejection, match="has no mid"):
        _policy().check(_req(Side.BUY, 0.01), one_sided, None, 0)


def test_new_limits_take_effect_for_the_next_order() -> None:
    policy = _policy(max_order_notional=1_000.0)
    with pytest.raises(RiskRejection):
        policy.check(_req(Side.BUY, 0.02, 60_000.0), BOOK, None, 0)
    policy.limits = RiskLimits(max_order_notional=2_000.0)
    policy.check(_req(Side.BUY, 0.02, 60_000.0), BOOK, None, 0)


def test_bad_limits_name_the_field() -> None:
    with pytest.raises(ValueError, match="max_open_orders must be >= 0, got -1"):
        RiskLimits(max_open_orders=-1)
    with pytest.raises(ValueError, match="price_band_bps"):
        RiskLimits(price_band_bps=math.nan)


def _reference(limits: RiskLimits, inst: Instrument, side: Side, qty: float, price: float | None,
               position: float, open_orders: int, mid: float) -> str | None:
    """The rules in plain Python: the first limit breached, or None."""
    def notional(q: float, p: float) -> float:
        return abs(q) * inst.contract_size * (1.0 if inst.kind is InstrumentKind.INVERSE_PERP else p)

    if limits.max_order_notional and notional(qty, mid if price is None else price) > limits.max_order_notional:
        return "order notional"
    after = position + qty * side.sign
    if limits.max_position_notional and abs(after) > abs(position) and notional(after, mid) > limits.max_position_notional:
        return "position notional"
    if limits.price_band_bps and price is not None and (price - mid) / mid * 1e4 * side.sign > limits.price_band_bps:
        return "limit price"
    if limits.max_open_orders and open_orders >= limits.max_open_orders:
        return "open orders"
    return None


@settings(max_examples=300, deadline=None)
@given(
    limit=st.tuples(st.sampled_from([0.0, 500.0, 2_000.0]), st.sampled_from([0.0, 1_000.0, 5_000.0]),
                    st.sampled_from([0.0, 5.0, 50.0]), st.sampled_from([0, 1, 4])),
    buy=st.booleans(),
    lots=st.integers(1, 10_000),
    offset_ticks=st.one_of(st.none(), st.integers(-10_000, 10_000)),
    position_lots=st.integers(-20_000, 20_000),
    open_orders=st.integers(0, 5),
)
def test_policy_agrees_with_the_reference(limit, buy, lots, offset_ticks, position_lots, open_orders) -> None:
    limits = RiskLimits(max_order_notional=limit[0], max_position_notional=limit[1], price_band_bps=limit[2],
                        max_open_orders=limit[3])
    side = Side.BUY if buy else Side.SELL
    qty = lots * SPOT.lot_size
    price = None if offset_ticks is None else round(6_000_000 + offset_ticks) * SPOT.tick_size
    req = OrderRequest.create(SPOT, side, qty, price=price)
    position = position_lots * SPOT.lot_size
    want = _reference(limits, SPOT, side, req.qty, req.price, position, open_orders, BOOK.mid())
    try:
        RiskPolicy(limits).check(req, BOOK, Position(instrument_key=SPOT.key, qty=position), open_orders)
        got = None
    except RiskRejection as exc:
        got = str(exc)
    assert (got is None) == (want is None) and (got is None or got.startswith(want)), (got, want)


class _CaptureVenue:
    name = "binance-spot"

    def __init__(self) -> None:
        self.requests: list[OrderRequest] = []

    def subscribe(self, handler) -> None:
        pass

    async def place_order(self, request: OrderRequest) -> Order:
        self.requests.append(request)
        return request.to_order(0)


async def test_order_manager_keeps_risk_rejections_off_the_venue() -> None:
    venue = _CaptureVenue()
    om = OrderManager(SimClock(7), {"binance-spot": venue}, {SPOT.key: BOOK}.__getitem__,
                      _policy(max_order_notional=1_000.0))
    big = await om.submit(_req(Side.BUY, 0.02, 60_000.0))
    assert big.status is OrderStatus.REJECTED and big.reject_reason.startswith("risk: order notional 1200.00")
    assert venue.requests == [] and om.n_rejected == 1
    # ids: assigned by submit, or taken by the strategy beforehand; a reused id is refused
    ok = await om.submit(_req(Side.BUY, 0.01, 60_000.0))
    coid = om.next_client_order_id()
    own = await om.submit(OrderRequest.create(SPOT, Side.BUY, 0.01, price=60_000.0, client_order_id=coid))
    assert [big.client_order_id, ok.client_order_id, own.client_order_id] == ["cx-1", "cx-2", "cx-3"]
    assert [r.client_order_id for r in venue.requests] == ["cx-2", "cx-3"]
    assert om.n_open_orders == 2
    with pytest.raises(ValueError, match="duplicate client_order_id 'cx-3'"):
        await om.submit(OrderRequest.create(SPOT, Side.BUY, 0.01, price=60_000.0, client_order_id=coid))
