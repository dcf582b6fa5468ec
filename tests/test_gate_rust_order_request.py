"""``OrderRequest.create`` in one Rust call (``_core.order_fields``, ``rust/src/order.rs``) against
the Python checks it replaced: same counts, strings, floats, order type -- and the same error
type and message (naming the field and the value) on every bad input. And the Gate spot limit
order body built in Rust (``_core.gate_spot_limit_body``) byte for byte against the codec's."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
from cexarb import _core
from cexarb.model import OrderType, Side, TimeInForce
from cexarb.replay import known_instrument
from cexarb.venues.base import OrderRequest
from cexarb.venues.gateio import codec as g
from hypothesis import given, settings
from hypothesis import strategies as st

SPOT = known_instrument("binance-spot", "BTCUSDT")  # tick 0.01, lot 0.00001
PERP = known_instrument("binance-usdm", "BTCUSDT")  # tick 0.1, lot 0.001
COARSE = SPOT.__class__(**{**{f: getattr(SPOT, f) for f in SPOT.__struct_fields__}, "tick_size": 5.0, "lot_size": 1.0})
_GRID_TOL = 1e-6


def reference(
    instrument: Any, qty: Any, price: Any, price_ticks: Any, type: OrderType | None
) -> tuple[Any, ...]:
    """The Python implementation of OrderRequest.create before the Rust call, with two fixes the
    Rust call made since: ``price_ticks`` must be a whole number (an int; a float was truncated),
    and a price must be at least one tick (1e-9 became 0 ticks and the wire price "0.00")."""
    if not (qty > 0 and qty != math.inf):
        raise ValueError(f"order qty must be finite and > 0, got {qty!r}")
    lots_f = qty / instrument.lot_size
    lots = round(lots_f)
    if lots <= 0 or abs(lots_f - lots) > max(_GRID_TOL, lots_f * 1e-12):
        raise ValueError(f"order qty {qty!r} is not a multiple of lot_size {instrument.lot_size!r}")
    if price_ticks is not None:
        if price is not None:
            raise ValueError(f"give price or price_ticks, not both (price {price!r}, price_ticks {price_ticks!r})")
        if price_ticks <= 0:
            raise ValueError(f"order price_ticks must be > 0, got {price_ticks!r}")
        if not isinstance(price_ticks, int):
            raise ValueError(f"order price_ticks must be a whole number of ticks (an int), got {price_ticks!r}")
        if price_ticks >= 2**63:
            raise ValueError(f"order price_ticks {price_ticks!r} is beyond the supported range (< 2**63)")
        ticks = int(price_ticks)
        otype = OrderType.LIMIT if type is None else type
    elif price is None:
        ticks = None
        otype = OrderType.MARKET if type is None else type
        if otype is OrderType.LIMIT:
            raise ValueError("order price is required for a limit order, got None")
    else:
        if not (price > 0 and price != math.inf):
            raise ValueError(f"order price must be finite and > 0, got {price!r}")
        ticks_f = price / instrument.tick_size
        ticks = round(ticks_f)
        if abs(ticks_f - ticks) > max(_GRID_TOL, ticks_f * 1e-12):
            raise ValueError(f"order price {price!r} is not a multiple of tick_size {instrument.tick_size!r}")
        if ticks < 1:
            raise ValueError(f"order price {price!r} is below one tick_size {instrument.tick_size!r}")
        otype = OrderType.LIMIT if type is None else type
    wire_qty, wire_price, fqty, fprice = _core.order_wire(lots, instrument.lot_size, ticks, instrument.tick_size)
    return (lots, ticks, wire_qty, wire_price, fqty, fprice, otype)


def ours(instrument: Any, qty: Any, price: Any, price_ticks: Any, type: OrderType | None) -> tuple[Any, ...]:
    r = OrderRequest.create(instrument, Side.BUY, qty, price=price, price_ticks=price_ticks, type=type)
    return (r.qty_lots, r.price_ticks, r.wire_qty, r.wire_price, r.qty, r.price, r.type)


def outcome(fn: Any, *args: Any) -> tuple[Any, ...]:
    try:
        return ("ok", fn(*args))
    except ValueError as exc:
        return ("ValueError", type(exc).__name__, str(exc))


def assert_same(*args: Any) -> None:
    assert outcome(ours, *args) == outcome(reference, *args), args


QTYS = st.one_of(
    st.floats(min_value=-1e3, max_value=1e7),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.integers(min_value=1, max_value=10**6).map(lambda n: n * 0.00001),
    st.integers(min_value=-5, max_value=10**6),
    st.sampled_from([0.0, -0.0, 1e-300, 0.000015, 0.001, 0.0010000001, 0.16174, 2.5, 3.5]),
)
PRICES = st.one_of(
    st.none(),
    st.floats(min_value=-1e3, max_value=1e9),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.integers(min_value=1, max_value=10**9).map(lambda n: n * 0.01),
    st.sampled_from([61837.63, 61837.635, 1e-9, 0.005, 0.015, 2.5, 7.5]),
)
TICKS = st.one_of(st.none(), st.integers(min_value=-3, max_value=10**12), st.sampled_from([True, 5.0, 5.5, -0.5]))
TYPES = st.sampled_from([None, OrderType.LIMIT, OrderType.MARKET])


@settings(max_examples=1500, deadline=None)
@given(inst=st.sampled_from([SPOT, PERP, COARSE]), qty=QTYS, price=PRICES, price_ticks=TICKS, otype=TYPES)
def test_rust_create_equals_the_python_checks(inst: Any, qty: Any, price: Any, price_ticks: Any, otype: Any) -> None:
    assert_same(inst, qty, price, price_ticks, otype)


@pytest.mark.parametrize(
    ("qty", "price", "price_ticks", "otype", "message"),
    [
        (0.000015, None, None, None, "order qty 1.5e-05 is not a multiple of lot_size 1e-05"),
        (-1, None, None, None, "order qty must be finite and > 0, got -1"),
        (math.nan, None, None, None, "order qty must be finite and > 0, got nan"),
        (0.001, 61837.635, None, None, "order price 61837.635 is not a multiple of tick_size 0.01"),
        (0.001, math.inf, None, None, "order price must be finite and > 0, got inf"),
        (0.001, None, None, OrderType.LIMIT, "order price is required for a limit order, got None"),
        (0.001, 1.0, 100, None, "give price or price_ticks, not both (price 1.0, price_ticks 100)"),
        (0.001, None, 0, None, "order price_ticks must be > 0, got 0"),
        (0.001, None, -0.5, None, "order price_ticks must be > 0, got -0.5"),
    ],
)
def test_each_error_names_the_field_and_value(qty: Any, price: Any, price_ticks: Any, otype: Any, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        OrderRequest.create(SPOT, Side.BUY, qty, price=price, price_ticks=price_ticks, type=otype)
    assert str(exc.value) == message
    assert_same(SPOT, qty, price, price_ticks, otype)


def test_order_fields_direct() -> None:
    assert _core.order_fields(SPOT, 0.0017, None, 6183763, True) == (170, 6183763, "0.00170", "61837.63", 0.0017, 61837.63)
    assert _core.order_fields(PERP, 0.162, None, None, False) == (162, None, "0.162", None, 0.162, None)
    assert _core.order_fields(SPOT, 0.001, 61837.63, None, False)[1] == 6183763
    with pytest.raises(TypeError):
        _core.order_fields(SPOT, "1", None, None, False)
    bad = SimpleNamespace(lot_size=0.001, tick_size=math.nan)  # any object with the two sizes
    with pytest.raises(_core.PricingError, match="step"):
        _core.order_fields(bad, 0.001, None, 5, False)


# =============================================================================================
# the Gate spot limit order body (``_core.gate_spot_limit_body``) vs the codec's Struct encoding

GATE_SPOT = SPOT.__class__(
    **{**{f: getattr(SPOT, f) for f in SPOT.__struct_fields__}, "venue": "gateio-spot", "symbol": "BTC_USDT"}
)


def _struct_body(r: OrderRequest) -> bytes:
    """The body as the codec's general path encodes it (msgspec, defaults omitted)."""
    return g._JSON.encode(
        g.GateSpotOrderBody(
            currency_pair=r.instrument.symbol,
            side=str(r.side),
            amount=r.wire_qty,
            price=r.wire_price,
            time_in_force=g._SPOT_TIF[r.time_in_force],
            text=g.text_for_client_order_id(r.client_order_id),
        )
    )


def _fstring_body(r: OrderRequest) -> bytes:
    """The body as the Python fast path formatted it before the Rust call."""
    tif = g._SPOT_TIF[r.time_in_force]
    tif_field = "" if tif == "gtc" else f',"time_in_force":"{tif}"'
    return (
        f'{{"currency_pair":"{r.instrument.symbol}","side":"{r.side}","amount":"{r.wire_qty}",'
        f'"price":"{r.wire_price}"{tif_field},"text":"t-{r.client_order_id}"}}'
    ).encode()


@settings(max_examples=500, deadline=None)
@given(
    lots=st.integers(min_value=1, max_value=10**9),
    ticks=st.integers(min_value=1, max_value=10**9),
    side=st.sampled_from(list(Side)),
    tif=st.sampled_from(list(TimeInForce)),
    cid=st.text(alphabet="0123456789abcXYZ_.-", min_size=1, max_size=28),
)
def test_rust_spot_limit_body_is_byte_identical(lots: int, ticks: int, side: Side, tif: TimeInForce, cid: str) -> None:
    r = OrderRequest.create(
        GATE_SPOT, side, lots * GATE_SPOT.lot_size, price_ticks=ticks, time_in_force=tif, client_order_id=cid
    )
    body = _core.gate_spot_limit_body(r.instrument.symbol, r.side, r.wire_qty, r.wire_price, r.time_in_force, cid)
    assert body is not None
    assert body == _struct_body(r) == _fstring_body(r) == g.spot_order_body(r)
    assert g.decode_spot_order_body(body).text == f"t-{cid}"


@pytest.mark.parametrize(
    ("symbol", "side", "amount", "price", "tif", "cid"),
    [
        ('BTC"USDT', "buy", "1", "1", "gtc", "a"),
        ("BTC_USDT", "buy", "1", "1", "gtc", "has space"),
        ("BTC_USDT", "buy", "1", "1", "gtc", "x" * 29),
        ("BTC_USDT", "buy", "1", "1", "gtc", ""),
        ("BTC_USDT", "buy", "1", "1e5", "gtc", "a"),
        ("BTC_USDT", "buy", "", "1", "gtc", "a"),
        ("BTC_USDT", "bid", "1", "1", "gtc", "a"),
        ("BTC_USDT", "buy", "1", "1", "fok", "a"),
    ],
)
def test_rust_spot_limit_body_leaves_the_rest_to_the_codec(
    symbol: str, side: str, amount: str, price: str, tif: str, cid: str
) -> None:
    assert _core.gate_spot_limit_body(symbol, side, amount, price, tif, cid) is None


def test_spot_order_body_errors_unchanged() -> None:
    bad = OrderRequest.create(GATE_SPOT, Side.BUY, 0.5, price=1.0, client_order_id="has space")
    with pytest.raises(ValueError, match="must be 1-28 characters"):
        g.spot_order_body(bad)
    odd = msgspec_replace(GATE_SPOT, symbol='BTC"USDT')
    r = OrderRequest.create(odd, Side.SELL, 0.5, price=1.0, client_order_id="ok")
    assert g.spot_order_body(r) == _struct_body(r)  # escaped by msgspec, not the Rust path
    assert b'BTC\\"USDT' in g.spot_order_body(r)


def msgspec_replace(inst: Any, **changes: Any) -> Any:
    return inst.__class__(**{**{f: getattr(inst, f) for f in inst.__struct_fields__}, **changes})
