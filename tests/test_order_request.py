"""OrderRequest: prices and quantities leave as exact decimal strings formatted from ticks/lots."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cexarb.model import OrderType, Side, TimeInForce
from cexarb.replay import known_instrument
from cexarb.venues.base import OrderRequest

SPOT = known_instrument("binance-spot", "BTCUSDT")
PERP = known_instrument("binance-usdm", "BTCUSDT")


def test_limit_order_wire_strings_are_exact() -> None:
    r = OrderRequest.create(SPOT, Side.BUY, 0.16174, price=61837.63, time_in_force=TimeInForce.IOC)
    assert (r.qty_lots, r.price_ticks) == (16174, 6183763)
    assert (r.wire_qty, r.wire_price) == ("0.16174", "61837.63")
    assert r.qty == 0.16174 and r.price == 61837.63  # the floats nearest the decimals
    assert r.type is OrderType.LIMIT and r.client_order_id == ""


def test_price_ticks_and_market_orders() -> None:
    r = OrderRequest.create(PERP, Side.SELL, 0.162, price_ticks=618001)
    assert r.wire_price == "61800.1" and r.price == 61800.1
    m = OrderRequest.create(PERP, Side.SELL, 0.162)
    assert m.type is OrderType.MARKET and m.wire_price is None and m.price is None
    order = m.to_order(5)
    assert order.qty == 0.162 and order.created_ns == 5 and order.price is None


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"qty": 0.000015}, "lot_size"),
        ({"qty": -1.0}, "qty must be finite and > 0"),
        ({"qty": math.nan}, "qty must be finite and > 0"),
        ({"qty": 0.001, "price": 61837.635}, "tick_size"),
        ({"qty": 0.001, "price": math.inf}, "price must be finite"),
        ({"qty": 0.001, "type": OrderType.LIMIT}, "price is required"),
        ({"qty": 0.001, "price": 1.0, "price_ticks": 100}, "not both"),
        ({"qty": 0.001, "price_ticks": 0}, "price_ticks must be > 0"),
    ],
)
def test_bad_orders_name_the_field_and_value(kwargs: dict, needle: str) -> None:
    qty = kwargs.pop("qty")
    with pytest.raises(ValueError, match=needle):
        OrderRequest.create(SPOT, Side.BUY, qty, **kwargs)


@given(ticks=st.integers(min_value=1, max_value=10**9), lots=st.integers(min_value=1, max_value=10**9))
def test_wire_strings_round_trip_to_ticks_and_lots(ticks: int, lots: int) -> None:
    r = OrderRequest.create(SPOT, Side.BUY, lots * 0.00001, price_ticks=ticks)
    assert r.qty_lots == lots
    assert Decimal(r.wire_price) == Decimal(ticks) * Decimal("0.01")
    assert Decimal(r.wire_qty) == Decimal(lots) * Decimal("0.00001")


def test_order_wire_is_one_call_for_both_strings_and_floats() -> None:
    from cexarb import _core

    assert _core.order_wire(1700, 0.00001, 6183763, 0.01) == ("0.01700", "61837.63", 0.017, 61837.63)
    assert _core.order_wire(3, 1.0, None, 0.1) == ("3", None, 3.0, None)
    with pytest.raises(ValueError, match="tick_size|step"):
        _core.order_wire(1, 0.001, 5, float("nan"))
