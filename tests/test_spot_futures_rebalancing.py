"""SPOT_FUTURES_HEDGING recovery paths on small hand-built books driven through the real replay
driver and simulated venue: a partially filled hedge is completed by REBALANCING once liquidity
returns, and a hedge that cannot be placed unwinds the naked spot leg."""

from __future__ import annotations

import asyncio

import pytest
from cexarb.backtest import Backtest, BacktestConfig, BacktestResult, run_backtest
from cexarb.model import OrderStatus
from cexarb.replay import Recording, known_instrument
from cexarb.strategy import StrategyType, registry
from cexarb.venues.sim.venue import SimLatency
from handbuilt import Msg, fast_cancels, recording_of

SPOT = known_instrument("binance-spot", "BTCUSDT")
PERP = known_instrument("binance-usdm", "BTCUSDT")
T0 = 1_723_161_300_000_000_000
MS = 1_000_000


def recording(perp_msgs: list[Msg], spot_msgs: list[Msg] | None = None) -> Recording:
    if spot_msgs is None:
        spot_msgs = [
            (T0, [(60000.00, 5.0)], [(60000.01, 5.0)], 100, 100, None, True),
            *[(T0 + k * 100 * MS, [(60000.00, 5.0 + k / 1000)], [], 100 + k, 100 + k, None, False)
              for k in range(1, 21)],
        ]
    return recording_of({SPOT: spot_msgs, PERP: perp_msgs})


def run(rec: Recording, **params: object) -> BacktestResult:
    defaults: dict[str, object] = {
        "position_size_usdt": 12_000.0, "max_hedge_ratio_drift": 0.01, "max_holding_time_s": 1.5,
        "rebalance_retry_s": 0.5,
    }
    strategy = registry.create(
        StrategyType.SPOT_FUTURES_HEDGING, spot_instrument=SPOT.key, futures_instrument=PERP.key,
        **{**defaults, **params},
    )
    return asyncio.run(run_backtest(rec, strategy, BacktestConfig(end_of_data_lead_s=0.0)))


def test_partial_hedge_is_completed_by_rebalancing() -> None:
    perp_msgs: list[Msg] = [
        (T0, [(59990.0, 3.0)], [(59990.1, 5.0)], 1000, 1000, None, True),
        # after the spot fill (t0 + 2 ms) and before the hedge arrives (t0 + 3 ms), the bid thins
        (T0 + 2_500_000, [(59990.0, 0.1)], [], 999, 1001, 998, False),
        # liquidity returns at t0 + 50 ms
        (T0 + 50 * MS, [(59990.0, 3.0)], [], 1002, 1003, 1001, False),
        *[(T0 + k * 100 * MS, [], [(59990.1, 5.0 + k / 1000)], 1002 + 2 * k, 1003 + 2 * k, 1001 + 2 * k, False)
          for k in range(1, 21)],
    ]
    res = run(recording(perp_msgs))
    states = [t[2] for t in res.transitions]
    # hedged partially -> rebalance at once (the thinned bid is already taken: no liquidity) ->
    # retry 0.5 s later, when liquidity has returned -> filled
    assert states == [
        "OPENING_SPOT_POSITION", "OPENING_FUTURES_HEDGE", "MONITORING_POSITIONS", "REBALANCING",
        "MONITORING_POSITIONS", "REBALANCING", "MONITORING_POSITIONS", "CLOSING_POSITIONS", "COMPLETED",
    ]
    spot_buy, hedge, failed, rebalance = res.orders[:4]
    assert failed.tag == "rebalance" and failed.status is OrderStatus.REJECTED
    assert failed.reject_reason == "no_liquidity"
    assert spot_buy.filled_qty == 0.19999
    assert hedge.tag == "futures_hedge" and hedge.status is OrderStatus.CANCELED
    assert hedge.filled_qty == 0.1  # only what the thinned bid held
    assert rebalance.tag == "rebalance" and rebalance.status is OrderStatus.FILLED
    assert rebalance.filled_qty == 0.1
    assert res.strategy.additional_data["rebalance_count"] == 1
    # after the rebalance the perp short matches the spot leg within half a lot at the target ratio
    assert abs(hedge.filled_qty + rebalance.filled_qty - 0.19999 * 60000.005 / 59990.05) <= 0.0005
    assert res.strategy.final_state == "COMPLETED"


def test_hedge_that_cannot_fill_unwinds_spot() -> None:
    perp_msgs: list[Msg] = [
        (T0, [(59990.0, 3.0)], [(59990.1, 5.0)], 1000, 1000, None, True),
        # the whole bid side vanishes before the hedge arrives, for the rest of the data
        (T0 + 2_500_000, [(59990.0, 0.0)], [], 999, 1001, 998, False),
        *[(T0 + k * 100 * MS, [], [(59990.1, 5.0 + k / 1000)], 1000 + 2 * k, 1001 + 2 * k, 999 + 2 * k, False)
          for k in range(1, 21)],
    ]
    res = run(recording(perp_msgs), max_hedge_retries=1)
    states = [t[2] for t in res.transitions]
    assert states == ["OPENING_SPOT_POSITION", "OPENING_FUTURES_HEDGE", "CLOSING_POSITIONS", "COMPLETED"]
    tags = [(o.tag, o.status.value) for o in res.orders]
    assert tags == [
        ("spot_entry", "filled"), ("futures_hedge", "rejected"), ("futures_hedge", "rejected"), ("close_spot", "filled"),
    ]
    assert "unwinding spot" in res.strategy.additional_data["exit_reason"]
    assert res.series[f"position:{SPOT.key}"][-1] == 0.0


def test_max_holding_time_during_a_rebalance_that_times_out_still_closes() -> None:
    """The max-holding-time exit comes due while a rebalance order is in flight, and the rebalance
    then times out (the order would reach the venue only after the data ends): it is cancelled,
    the cancel is confirmed with nothing filled, and the exit must not be lost -- the position
    closes then, not at the end of the data. The close waits for the cancel's confirmation, so the
    rebalance order can no longer fill after the close (both legs end flat)."""
    perp_msgs: list[Msg] = [
        (T0, [(59990.0, 3.0)], [(59990.1, 5.0)], 1000, 1000, None, True),
        (T0 + 2_500_000, [(59990.0, 0.1)], [], 999, 1001, 998, False),  # partial hedge -> rebalance
        (T0 + 50 * MS, [(59990.0, 3.0)], [], 1002, 1003, 1001, False),
        *[(T0 + k * 100 * MS, [], [(59990.1, 5.0 + k / 1000)], 1002 + 2 * k, 1003 + 2 * k, 1001 + 2 * k, False)
          for k in range(1, 21)],
    ]
    strategy = registry.create(
        StrategyType.SPOT_FUTURES_HEDGING, spot_instrument=SPOT.key, futures_instrument=PERP.key,
        position_size_usdt=12_000.0, max_hedge_ratio_drift=0.01, max_holding_time_s=0.05,
        order_timeout_s=0.3, rebalance_retry_s=0.5,
    )
    bt = Backtest(recording(perp_msgs), strategy, BacktestConfig(end_of_data_lead_s=0.0))
    perp_venue = bt.private[PERP.venue]
    normal = perp_venue.latency
    seen: list[tuple[int, str]] = []

    def on_transition(ts_ns: int, from_state: str, to_state: str, reason: str) -> None:
        seen.append((ts_ns, to_state))
        # the venue goes silent for the rebalance order (it reaches the venue after the data ends),
        # and answers normally again once the strategy has given up on it
        perp_venue.latency = SimLatency(order_entry_ns=60_000 * MS) if to_state == "REBALANCING" else normal

    fast_cancels(perp_venue, normal)  # cancels get through in the normal time, before the silent order
    strategy.on_transition = on_transition
    res = asyncio.run(bt.run())
    states = [s for _, s in seen]
    assert states == [
        "OPENING_SPOT_POSITION", "OPENING_FUTURES_HEDGE", "MONITORING_POSITIONS", "REBALANCING",
        "MONITORING_POSITIONS", "CLOSING_POSITIONS", "COMPLETED",
    ]
    exit_reason = res.strategy.additional_data["exit_reason"]
    assert exit_reason.startswith("max holding time"), exit_reason
    rebalance_start = next(ts for ts, s in seen if s == "REBALANCING")
    closing_start = next(ts for ts, s in seen if s == "CLOSING_POSITIONS")
    # closed when the rebalance's cancel was confirmed: order_timeout_s after it was sent, plus the
    # cancel's 1 ms to the venue and 1 ms back; long before the end
    assert closing_start - rebalance_start == pytest.approx(0.3e9 + 2 * MS, abs=1 * MS)
    assert closing_start < T0 + 1_000 * MS
    rebalance = next(o for o in res.orders if o.tag == "rebalance" and o.status is OrderStatus.CANCELED)
    assert rebalance.filled_qty == 0.0
    assert res.series[f"position:{SPOT.key}"][-1] == 0.0 and res.series[f"position:{PERP.key}"][-1] == 0.0


def _steady_perp() -> list[Msg]:
    return [
        (T0, [(59990.0, 3.0)], [(59990.1, 5.0)], 1000, 1000, None, True),
        *[(T0 + k * 100 * MS, [], [(59990.1, 5.0 + k / 1000)], 999 + k, 1000 + k, 999 + k, False) for k in range(1, 21)],
    ]


def _spot_moving_to(bid: float, ask: float, at_ms: int = 500) -> list[Msg]:
    """Spot at 60000.00 / 60000.01, then at ``at_ms`` the whole top moves to ``bid`` / ``ask``."""
    msgs: list[Msg] = [(T0, [(60000.00, 5.0)], [(60000.01, 5.0)], 100, 100, None, True)]
    for k in range(1, 21):
        ts = T0 + k * 100 * MS
        if k * 100 == at_ms:
            msgs.append((ts, [(60000.00, 0.0), (bid, 5.0)], [(60000.01, 0.0), (ask, 5.0)], 100 + k, 100 + k, None, False))
        else:
            msgs.append((ts, [], [], 100 + k, 100 + k, None, False))
    return msgs


def _run_exit(spot_msgs: list[Msg], **params: object) -> BacktestResult:
    strategy = registry.create(
        StrategyType.SPOT_FUTURES_HEDGING, spot_instrument=SPOT.key, futures_instrument=PERP.key,
        position_size_usdt=12_000.0, max_holding_time_s=3600.0, **params,
    )
    return asyncio.run(run_backtest(recording(_steady_perp(), spot_msgs), strategy, BacktestConfig(end_of_data_lead_s=0.0)))


def test_take_profit_closes_when_net_pnl_passes_the_target() -> None:
    # long 0.19999 BTC spot at 60000.01, short perp at 59990.0; spot then rises 300 USDT: the
    # spot leg gains ~60 USDT, the entry fees were ~18 USDT, so net PnL ~ +42 > 0.2 % of 12,000
    res = _run_exit(_spot_moving_to(60300.00, 60300.01), profit_target_pct=0.002, basis_stop_bps=1_000.0)
    states = [t[2] for t in res.transitions]
    assert states == ["OPENING_SPOT_POSITION", "OPENING_FUTURES_HEDGE", "MONITORING_POSITIONS",
                      "CLOSING_POSITIONS", "COMPLETED"]
    reason = res.strategy.additional_data["exit_reason"]
    assert reason.startswith("take-profit"), reason
    target = float(reason.split("> ")[1])
    assert target == pytest.approx(24.0)
    closing_ts = next(t[0] for t in res.transitions if t[2] == "CLOSING_POSITIONS")
    assert closing_ts >= T0 + 500 * MS  # on the spot move, not before
    assert [o.tag for o in res.orders] == ["spot_entry", "futures_hedge", "close_futures", "close_spot"]
    assert res.series[f"position:{SPOT.key}"][-1] == 0.0 and res.series[f"position:{PERP.key}"][-1] == 0.0
    assert res.strategy.net_pnl > 0


def test_basis_stop_closes_when_the_basis_moves_against_the_entry() -> None:
    # long spot / short perp loses qty x the rise of the basis (perp - spot): spot -60 USDT with
    # the perp unchanged raises the mid basis ~10 bps above its value at entry; net PnL (~ -12 - 18
    # fees) is inside both the take-profit and the stop-loss
    res = _run_exit(_spot_moving_to(59940.00, 59940.01), basis_stop_bps=5.0)
    states = [t[2] for t in res.transitions]
    assert states == ["OPENING_SPOT_POSITION", "OPENING_FUTURES_HEDGE", "MONITORING_POSITIONS",
                      "CLOSING_POSITIONS", "COMPLETED"]
    reason = res.strategy.additional_data["exit_reason"]
    assert reason.startswith("basis stop"), reason
    closing_ts = next(t[0] for t in res.transitions if t[2] == "CLOSING_POSITIONS")
    assert closing_ts >= T0 + 500 * MS  # on the spot move, not before
    assert res.series[f"position:{SPOT.key}"][-1] == 0.0 and res.series[f"position:{PERP.key}"][-1] == 0.0
    assert res.strategy.net_pnl < 0


def test_basis_moving_in_favour_does_not_trigger_the_basis_stop() -> None:
    # spot +60 USDT with the perp unchanged: the mid basis falls ~10 bps below its value at entry,
    # a gain for long spot / short perp: held until the data ends
    res = _run_exit(_spot_moving_to(60060.00, 60060.01), basis_stop_bps=5.0)
    reason = res.strategy.additional_data["exit_reason"]
    assert reason.startswith("end of data"), reason
    assert res.strategy.additional_data["final_basis_bps"] < res.strategy.additional_data["initial_basis_bps"] - 5.0


def test_no_exit_without_a_reason_holds_to_the_end_of_data() -> None:
    # the same moves with both thresholds out of reach: held until the data ends
    res = _run_exit(_spot_moving_to(60060.00, 60060.01), basis_stop_bps=1_000.0)
    assert res.strategy.additional_data["exit_reason"].startswith("end of data")


def test_entry_refused_when_the_whole_lot_hedge_is_beyond_the_drift() -> None:
    # 200 USDT (state-machines.md's example size) buys 0.00333 BTC; the perp's lot is 0.001 BTC,
    # so the nearest hedge, 0.003, is 10 % off target: beyond the 5 % drift, and a rebalance
    # (whole lots) could never correct it. Refused before any order, saying why.
    res = run(recording(_steady_perp()), position_size_usdt=200.0, max_hedge_ratio_drift=0.05)
    assert res.orders == []
    assert res.strategy.final_state == "ERROR"
    assert "max_hedge_ratio_drift 0.05" in (res.strategy.error or ""), res.strategy.error
    # with a drift that allows the lot rounding it enters and is hedged by that whole lot
    res = run(recording(_steady_perp()), position_size_usdt=200.0, max_hedge_ratio_drift=0.15)
    assert [o.tag for o in res.orders][:2] == ["spot_entry", "futures_hedge"]
    assert res.orders[1].filled_qty == pytest.approx(0.003)
