"""Fees paid in a third asset (Gate GT, MEXC MX) are kept on the fill as ``fee_asset`` /
``fee_other`` instead of being reported as 0.0 and lost; the order manager totals them per asset.
One split (:func:`cexarb.model.split_fee`) serves both venues' codecs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
import pytest
from cexarb._core import OrderBook
from cexarb.clock import SimClock
from cexarb.execution import OrderManager
from cexarb.model import (
    Fill,
    Instrument,
    InstrumentKind,
    Order,
    OrderStatus,
    Side,
    split_fee,
)
from cexarb.venues.base import OrderRequest, OrderUpdate, PrivateEvent
from cexarb.venues.gateio import codec as g
from cexarb.venues.mexc import codec as mx
from cexarb.venues.mexc import proto
from test_mexc_codec import PRIVATE_DEAL
from test_mexc_codec import SPOT as MEXC_SPOT

BTC = Instrument(venue="gateio-spot", symbol="BTC_USDT", kind=InstrumentKind.SPOT, base="BTC", quote="USDT",
                 tick_size=0.1, lot_size=0.000001, min_notional=3.0, maker_fee=0.002, taker_fee=0.002)


@pytest.mark.parametrize(
    ("amount", "asset", "expected"),
    [
        (0.12, "USDT", (0.12, 0.0, "", 0.0)),  # quote
        (0.12, "", (0.12, 0.0, "", 0.0)),  # no asset given: quote
        (0.000002, "BTC", (0.000002 * 60_000.0, 0.000002, "", 0.0)),  # a spot buy's fee in base
        (-0.000001, "BTC", (-0.000001 * 60_000.0, 0.0, "", 0.0)),  # a rebate in base is no base fee
        (0.03, "GT", (0.0, 0.0, "GT", 0.03)),  # third asset: kept, not priced
    ],
)
def test_split_fee(amount: float, asset: str, expected: tuple[float, float, str, float]) -> None:
    assert split_fee(amount, asset, 60_000.0, BTC) == pytest.approx(expected)


def test_gate_fill_with_a_gt_fee_keeps_it() -> None:
    trade = g.GateSpotTrade(id=7, create_time_ms=1.7e12, currency_pair="BTC_USDT", side="buy", role="taker",
                            amount=0.001, price=60_000.0, order_id=9, fee=0.03, fee_currency="GT", text="t-c1")
    fill = trade.to_fill(BTC)
    assert (fill.fee, fill.fee_base, fill.fee_asset, fill.fee_other) == (0.0, 0.0, "GT", 0.03)
    base = msgspec.structs.replace(trade, fee=0.000002, fee_currency="BTC").to_fill(BTC)
    assert (base.fee_base, base.fee_asset, base.fee_other) == (0.000002, "", 0.0)


def test_mexc_fills_with_an_mx_fee_keep_it() -> None:
    deal = msgspec.structs.replace(PRIVATE_DEAL, fee_amount="0.5", fee_currency="MX")
    fill = mx.fill_from_push(proto.PushData(channel="spot@private.deals.v3.api.pb", body=deal), MEXC_SPOT)
    assert (fill.fee, fill.fee_base, fill.fee_asset, fill.fee_other) == (0.0, 0.0, "MX", 0.5)
    row = mx.MexcMyTrade(symbol="BTCUSDT", id=1, order_id=2, price=61_234.5, qty=0.001, commission=0.5,
                         commission_asset="MX", time=1, is_buyer=True, is_maker=False, client_order_id="c-1")
    rest = row.to_fill(MEXC_SPOT)
    assert (rest.fee, rest.fee_asset, rest.fee_other) == (0.0, "MX", 0.5)


class GtFeeVenue:
    """Fills each order at once, charging its fee in GT (told before ``place_order`` returns)."""

    name = "gt"

    def __init__(self) -> None:
        self.handlers: list[Callable[[PrivateEvent], None]] = []

    def subscribe(self, handler: Callable[[PrivateEvent], None]) -> None:
        self.handlers.append(handler)

    async def place_order(self, request: OrderRequest) -> Order:
        coid, price = request.client_order_id, request.price or 0.0
        for event in (
            Fill(client_order_id=coid, venue_order_id="v", instrument_key=GT_SPOT.key, side=request.side, price=price,
                 qty=request.qty, fee=0.0, is_maker=False, ts_ns=5, fill_id=coid, fee_asset="GT", fee_other=0.03),
            OrderUpdate(client_order_id=coid, venue_order_id="v", instrument_key=GT_SPOT.key,
                        status=OrderStatus.FILLED, filled_qty=request.qty, avg_fill_price=price, ts_ns=5),
        ):
            for handler in self.handlers:
                handler(event)
        order = request.to_order(0)
        order.status = OrderStatus.FILLED
        return order


GT_SPOT = msgspec.structs.replace(BTC, venue="gt")


def test_order_manager_totals_third_asset_fees(caplog: pytest.LogCaptureFixture) -> None:
    book = OrderBook(GT_SPOT.tick_size, GT_SPOT.lot_size)
    book.apply_snapshot([[60_000.0, 5.0]], [[60_000.1, 5.0]], 1)
    om = OrderManager(SimClock(1_000), {"gt": GtFeeVenue()}, lambda key: book)
    for i in range(2):
        request = OrderRequest.create(GT_SPOT, Side.BUY, 0.001, price=60_000.1, client_order_id=f"g{i}")
        asyncio.run(om.submit(request))
    assert om.fees_other == {"GT": pytest.approx(0.06)}
    assert om.positions[GT_SPOT.key].fees == 0.0  # not in the quote PnL: no GT price here
    warnings = [r for r in caplog.records if "fees paid in GT" in r.getMessage()]
    assert len(warnings) == 1  # said once, not per fill
