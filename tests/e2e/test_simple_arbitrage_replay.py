"""SIMPLE_ARBITRAGE replayed on the real Binance BTCUSDT spot + USDⓈ-M perp recording."""

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


def run(recording: Recording, config: BacktestConfig | None = None, **params: Any) -> BacktestResult:
    strategy = registry.create(
        StrategyType.SIMPLE_ARBITRAGE, instrument_a=SPOT, instrument_b=PERP, position_size_usdt=1_000.0, **params
    )
    return asyncio.run(run_backtest(recording, strategy, config))


def test_no_trade_when_spread_never_pays_fees(recording: Recording) -> None:
    res = run(recording, min_profit_threshold=0.0005)
    assert [t[2] for t in res.transitions] == ["COMPLETED"]
    assert res.orders == []
    best = res.strategy.additional_data["best_spread_bps_seen"]
    assert best is not None and best < 5.0  # 15 bps of taker fees vs a ~4 bps basis


def test_forced_cycles_state_sequence_hedged_legs_and_pnl(recording: Recording) -> None:
    # a threshold of -30 bps accepts paying fees: exercises the full cycle on real books
    res = run(recording, min_profit_threshold=-0.003, max_cycles=3)
    states = [t[2] for t in res.transitions]
    cycle = ["OPPORTUNITY_DETECTED", "VALIDATING_OPPORTUNITY", "EXECUTING_BUY_SIDE", "EXECUTING_SELL_SIDE",
             "MONITORING_EXECUTION", "PROFIT_REALIZED"]
    assert states == cycle + ["SCANNING_OPPORTUNITIES"] + cycle + ["SCANNING_OPPORTUNITIES"] + cycle + ["COMPLETED"]
    assert res.strategy.additional_data["cycles"] == 3
    buys = [o for o in res.orders if o.tag == "arb_buy"]
    sells = [o for o in res.orders if o.tag == "arb_sell"]
    assert len(buys) == len(sells) == 3
    for b, s in zip(buys, sells, strict=True):
        assert b.side is Side.BUY and s.side is Side.SELL
        assert b.status is OrderStatus.FILLED and s.status is OrderStatus.FILLED
        assert b.filled_qty == pytest.approx(s.filled_qty)  # both legs of equal size: hedged
        assert b.instrument.key != s.instrument.key
    # realised profit per cycle equals an independent recomputation from fills and fees
    profits = res.strategy.additional_data["cycle_profits"]
    by_order: dict[str, list] = {}
    for f in res.fills:
        by_order.setdefault(f.client_order_id, []).append(f)
    for (b, s), profit in zip(zip(buys, sells, strict=True), profits, strict=True):
        fills = by_order[b.client_order_id] + by_order[s.client_order_id]
        expected = sum(f.price * f.qty * (1 if f.side is Side.SELL else -1) - f.fee for f in fills)
        assert profit == pytest.approx(expected, abs=1e-9)
        # and from the order records and the published taker rates alone (every leg is a taker
        # IOC; Binance VIP 0: spot 0.1 %, USD-M perp 0.05 %), without the fills' own fee figures
        rate = {SPOT: 0.001, PERP: 0.0005}
        by_orders = (s.avg_fill_price * s.filled_qty * (1 - rate[s.instrument.key])
                     - b.avg_fill_price * b.filled_qty * (1 + rate[b.instrument.key]))
        assert profit == pytest.approx(by_orders, abs=1e-6)
    # flat at the end in net base units across the two venues
    spot_pos, perp_pos = res.series[f"position:{SPOT}"][-1], res.series[f"position:{PERP}"][-1]
    assert spot_pos + perp_pos == pytest.approx(0.0, abs=1e-12)


def test_rejected_buy_leg_cools_down_instead_of_hammering(recording: Recording) -> None:
    # no quote on the perp venue: every perp buy is rejected by the venue (insufficient balance)
    config = BacktestConfig(balances={"binance-usdm": {"USDT": 0.0}})
    res = run(recording, config, min_profit_threshold=-0.003, max_cycles=0, cooldown_ms=5_000.0)
    rejected = [o for o in res.orders if o.status is OrderStatus.REJECTED]
    assert rejected and all(o.reject_reason == "insufficient_balance" for o in rejected)
    window_s = (res.window_ns[1] - res.window_ns[0]) / 1e9
    assert len(res.orders) <= window_s / 5.0 + 2  # at most one attempt per cooldown
    assert res.strategy.additional_data["failed_cycles"] == len(res.orders)
    assert res.strategy.final_state == "COMPLETED"


def test_inverse_instrument_is_refused_with_a_clear_error(recording: Recording) -> None:
    strategy = registry.create(
        StrategyType.SIMPLE_ARBITRAGE, instrument_a=SPOT, instrument_b="binance-coinm:BTCUSD_PERP"
    )
    res = asyncio.run(run_backtest(recording, strategy))
    assert res.strategy.final_state == "ERROR"
    assert "inverse_perp" in (res.strategy.error or "") and res.orders == []
