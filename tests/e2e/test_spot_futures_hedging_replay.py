"""SPOT_FUTURES_HEDGING replayed on the real Binance BTCUSDT spot + USDⓈ-M perp recording."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cexarb.backtest import BacktestConfig, BacktestResult, run_backtest
from cexarb.model import OrderStatus, Side
from cexarb.replay import Recording
from cexarb.strategy import StrategyType, registry

SPOT = "binance-spot:BTCUSDT"
PERP = "binance-usdm:BTCUSDT"

DEMO = dict(
    spot_instrument=SPOT,
    futures_instrument=PERP,
    position_size_usdt=10_000.0,
    target_funding_rate=0.05,
    min_basis_bps=-10.0,
    max_entry_slippage_bps=5.0,
    max_hedge_ratio_drift=0.005,
    max_holding_time_s=240.0,
)


def run(recording: Recording, config: BacktestConfig | None = None, **overrides: Any) -> BacktestResult:
    strategy = registry.create(StrategyType.SPOT_FUTURES_HEDGING, **{**DEMO, **overrides})
    return asyncio.run(run_backtest(recording, strategy, config))


@pytest.fixture(scope="module")
def demo_result(recording: Recording) -> BacktestResult:
    return run(recording)


def test_state_sequence(demo_result: BacktestResult) -> None:
    path = [t[2] for t in demo_result.transitions]
    assert path == [
        "OPENING_SPOT_POSITION",
        "OPENING_FUTURES_HEDGE",
        "MONITORING_POSITIONS",
        "CLOSING_POSITIONS",
        "COMPLETED",
    ]
    assert demo_result.strategy.success
    assert demo_result.strategy.additional_data["exit_reason"].startswith("max holding time")
    assert demo_result.book_gaps == 0


def test_orders_and_both_legs_hedged(demo_result: BacktestResult) -> None:
    orders = demo_result.orders
    assert [o.tag for o in orders] == ["spot_entry", "futures_hedge", "close_futures", "close_spot"]
    assert all(o.status is OrderStatus.FILLED for o in orders)
    spot_buy, perp_sell, perp_buy, spot_sell = orders
    assert spot_buy.side is Side.BUY and perp_sell.side is Side.SELL
    # notional hedge within half a perp lot (0.001 BTC) of the spot leg
    assert abs(perp_sell.filled_qty - spot_buy.filled_qty) <= 0.0005 + 1e-12
    assert perp_buy.filled_qty == pytest.approx(perp_sell.filled_qty)
    assert spot_sell.filled_qty == pytest.approx(spot_buy.filled_qty)
    # spot notional is the requested size to within one lot
    assert spot_buy.filled_qty * spot_buy.avg_fill_price == pytest.approx(10_000.0, abs=61_900 * 0.00001 + 1e-6)
    # while hedged (monitoring) the net delta never exceeded half a perp lot; the run's overall
    # max delta is the spot leg itself, held unhedged between the spot fill and the hedge fill
    assert demo_result.strategy.additional_data["max_abs_delta_base"] <= 0.0005 + 1e-12
    assert demo_result.max_abs_delta_base == pytest.approx(spot_buy.filled_qty)
    # flat at the end
    assert all(abs(f) < 1e-12 for k, f in ((k, v[-1]) for k, v in demo_result.series.items() if k.startswith("position:")))


def test_pnl_equals_independent_recomputation(demo_result: BacktestResult) -> None:
    cash = sum(-f.side.sign * f.price * f.qty for f in demo_result.fills)
    fees = sum(f.fee for f in demo_result.fills)
    expected_fees = sum(
        f.price * f.qty * (0.001 if f.instrument_key == SPOT else 0.0005) for f in demo_result.fills
    )  # Binance VIP0 taker fees, all fills are taker (market orders)
    s = demo_result.strategy
    assert fees == pytest.approx(expected_fees, rel=1e-12)
    assert s.total_fees == pytest.approx(fees, rel=1e-12)
    assert s.realized_pnl == pytest.approx(cash, abs=1e-9)
    assert s.unrealized_pnl == pytest.approx(0.0, abs=1e-9)
    assert s.funding == 0.0  # no funding time (00:00 UTC) inside 23:54:15 -> 23:59:59.8
    assert s.net_pnl == pytest.approx(cash - fees, abs=1e-9)


def test_spot_fee_in_base_closes_what_is_held(recording: Recording) -> None:
    # `cexarb demo` runs so (Binance charges a spot buy's fee in the BTC received unless it is
    # paid in BNB): the spot leg holds the fill less the fee, the close sells that in whole lots
    res = run(recording, BacktestConfig(buy_fee_in_base=frozenset({"binance-spot"})))
    assert [o.tag for o in res.orders] == ["spot_entry", "futures_hedge", "close_futures", "close_spot"]
    spot_buy, perp_sell, _, spot_sell = res.orders
    lot = 0.00001
    fee_base = sum(f.fee_base for f in res.fills if f.client_order_id == spot_buy.client_order_id)
    assert fee_base == pytest.approx(0.001 * spot_buy.filled_qty, rel=1e-12)
    held = spot_buy.filled_qty - fee_base
    assert spot_sell.filled_qty <= held and held - spot_sell.filled_qty < lot  # never more than held
    dust = res.series[f"position:{SPOT}"][-1]
    assert dust == pytest.approx(held - spot_sell.filled_qty, abs=1e-12) and 0 <= dust < lot
    assert res.series[f"position:{PERP}"][-1] == 0.0
    assert abs(perp_sell.filled_qty - held) <= 0.0005 + 1e-12  # hedged to the held base, half a perp lot
    # net PnL = cash flows - the fees paid in quote + the dust at the last spot price (the base
    # fee is counted once: in the base it removed)
    cash = sum(-f.side.sign * f.price * f.qty for f in res.fills)
    quote_fees = sum(f.fee - f.fee_base * f.price for f in res.fills)
    assert res.strategy.net_pnl == pytest.approx(cash - quote_fees + dust * spot_sell.avg_fill_price, abs=1e-3)


def test_deterministic(recording: Recording, demo_result: BacktestResult) -> None:
    again = run(recording)
    assert again.fills == demo_result.fills
    assert again.transitions == demo_result.transitions
    assert again.series == demo_result.series
    assert again.strategy.net_pnl == demo_result.strategy.net_pnl


def test_no_entry_when_funding_below_target(recording: Recording) -> None:
    res = run(recording, BacktestConfig(funding_rate=0.00001))  # 1.1 % APR < 5 % target
    assert [t[2] for t in res.transitions] == ["COMPLETED"]
    assert res.orders == []
    assert "no opportunity" in res.strategy.additional_data["exit_reason"]


def test_end_of_data_closes_positions(recording: Recording) -> None:
    res = run(recording, max_holding_time_s=3600.0)
    assert [t[2] for t in res.transitions][-2:] == ["CLOSING_POSITIONS", "COMPLETED"]
    assert res.strategy.additional_data["exit_reason"].startswith("end of data")
    assert res.orders[-1].status is OrderStatus.FILLED


def test_stop_loss_exit(recording: Recording) -> None:
    # fees alone (~15 bps of the entry) breach a 0.1 % stop: the strategy must exit on the stop
    res = run(recording, stop_loss_pct=0.001)
    assert res.strategy.additional_data["exit_reason"].startswith("stop-loss")
    assert res.strategy.final_state == "COMPLETED"
