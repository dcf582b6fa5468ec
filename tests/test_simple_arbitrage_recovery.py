"""SIMPLE_ARBITRAGE legs on small hand-built books, driven through the real replay driver and
simulated venue, when the buy venue takes its fee out of the base received (Gate.io and MEXC
spot; ``BacktestConfig.buy_fee_in_base``):

* the sell leg sells what the buy put on the venue (filled less ``Fill.fee_base``), so the two
  legs net to zero base, and the cycle profit equals a recomputation from the fills;
* when the sell leg cannot be placed, the recovery market orders are tried and the received
  quantity is unwound on the buy venue: never more base than the buy put there.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from cexarb.backtest import BacktestConfig, BacktestResult, run_backtest
from cexarb.model import OrderStatus, OrderType, Side
from cexarb.replay import Recording, known_instrument
from cexarb.strategy import StrategyType, registry
from cexarb.venues.sim.venue import SimLatency
from handbuilt import Msg, recording_of

SPOT = known_instrument("binance-spot", "BTCUSDT")  # lot 0.00001 BTC, taker fee 0.1 %
# the perp on the spot's lot, so that a base fee of 0.00001 BTC is a whole lot on both legs
PERP = msgspec.structs.replace(known_instrument("binance-usdm", "BTCUSDT"), lot_size=0.00001)
T0 = 1_723_161_300_000_000_000
MS = 1_000_000
QTY = 0.01  # 600 USDT at 60,000


def _recording(spot_bid_qty: float = 5.0, spot_every_ms: int = 100) -> Recording:
    # spot ask 60,000.00, perp bid 60,300.0: 50 bps gross, 35 bps net of both taker fees; the
    # spot bid (``spot_bid_qty``, from 59,990.00) steps down one tick every ``spot_every_ms`` for
    # 2 s, the level above emptied: each message shows fresh bids (liquidity our orders took stays
    # taken while its recorded level is unchanged, see ConsumedLiquidity)
    n = 2_000 // spot_every_ms
    spot: list[Msg] = [
        (T0, [(59990.00, spot_bid_qty)], [(60000.00, 5.0)], 100, 100, None, True),
        *[(T0 + k * spot_every_ms * MS, [(round(59990.00 - k * 0.01, 2), spot_bid_qty),
                                          (round(59990.00 - (k - 1) * 0.01, 2), 0.0)], [],
           100 + k, 100 + k, None, False)
          for k in range(1, n + 1)],
    ]
    perp: list[Msg] = [
        (T0, [(60300.0, 5.0)], [(60310.0, 5.0)], 1000, 1000, None, True),
        *[(T0 + k * 100 * MS, [], [(60310.0, 5.0 + k / 1000)], 999 + k, 1000 + k, 999 + k, False)
          for k in range(1, 21)],
    ]
    return recording_of({SPOT: spot, PERP: perp})


def _run(config: BacktestConfig, rec: Recording | None = None) -> BacktestResult:
    strategy = registry.create(
        StrategyType.SIMPLE_ARBITRAGE, instrument_a=SPOT.key, instrument_b=PERP.key,
        position_size_usdt=600.0, min_profit_threshold=0.001, max_cycles=1,
    )
    return asyncio.run(run_backtest(rec or _recording(), strategy, config))


def _base_fee_config(**kw: object) -> BacktestConfig:
    return BacktestConfig(buy_fee_in_base=frozenset({"binance-spot"}), end_of_data_lead_s=0.0, **kw)  # type: ignore[arg-type]


def test_sell_leg_sells_the_base_received_after_a_base_fee() -> None:
    res = _run(_base_fee_config())
    assert res.strategy.final_state == "COMPLETED", res.transitions
    buy, sell = res.orders
    assert (buy.tag, buy.side, buy.instrument.key, buy.filled_qty) == ("arb_buy", Side.BUY, SPOT.key, QTY)
    (buy_fill,) = [f for f in res.fills if f.client_order_id == buy.client_order_id]
    assert buy_fill.fee_base == pytest.approx(SPOT.taker_fee * QTY, rel=1e-12)  # 0.00001 BTC kept by the venue
    received = QTY - buy_fill.fee_base
    assert (sell.tag, sell.side, sell.instrument.key) == ("arb_sell", Side.SELL, PERP.key)
    assert sell.status is OrderStatus.FILLED and sell.filled_qty == pytest.approx(received, abs=1e-12)
    # the two legs net to zero base (the old sizing sold the gross fill: 0.00001 BTC short)
    spot_pos, perp_pos = res.series[f"position:{SPOT.key}"][-1], res.series[f"position:{PERP.key}"][-1]
    assert spot_pos == pytest.approx(received, abs=1e-12) and perp_pos == pytest.approx(-received, abs=1e-12)
    # the cycle profit, recomputed from the fills: cash flows, the fees paid in quote (a base fee
    # is in the base not sold, so it is not charged twice), and no base left over
    cash = sum(f.price * f.qty * (1 if f.side is Side.SELL else -1) for f in res.fills)
    quote_fees = sum(f.fee - f.fee_base * f.price for f in res.fills)
    (profit,) = res.strategy.additional_data["cycle_profits"]
    assert profit == pytest.approx(cash - quote_fees, abs=1e-9)
    assert profit == pytest.approx(received * 60300.0 * (1 - PERP.taker_fee) - QTY * 60000.0, abs=1e-6)


def test_unwind_after_a_failed_sell_never_sells_more_than_was_received() -> None:
    # no margin on the perp venue: the sell leg and both recovery market orders are rejected,
    # so the received BTC is sold back on the spot venue
    res = _run(_base_fee_config(balances={"binance-usdm": {"USDT": 0.0}}))
    assert res.strategy.final_state == "COMPLETED", res.transitions
    tags = [o.tag for o in res.orders]
    assert tags == ["arb_buy", "arb_sell", "arb_sell_recovery", "arb_sell_recovery", "arb_unwind"], tags
    assert all(o.status is OrderStatus.REJECTED for o in res.orders[1:4])
    buy, unwind = res.orders[0], res.orders[-1]
    fee_base = sum(f.fee_base for f in res.fills if f.client_order_id == buy.client_order_id)
    assert fee_base > 0
    received = buy.filled_qty - fee_base
    assert (unwind.instrument.key, unwind.side, unwind.type) == (SPOT.key, Side.SELL, OrderType.MARKET)
    assert unwind.status is OrderStatus.FILLED
    assert unwind.qty <= received + 1e-12 and unwind.qty == pytest.approx(received, abs=1e-12)
    # flat again on the spot venue, nothing ever sold short there
    spot_series = res.series[f"position:{SPOT.key}"]
    assert min(spot_series) >= -1e-12 and spot_series[-1] == pytest.approx(0.0, abs=1e-12)
    assert res.series[f"position:{PERP.key}"][-1] == 0.0


def test_a_partly_filled_unwind_is_followed_by_another_for_the_rest() -> None:
    # the spot bid holds 0.005 BTC, fresh every millisecond: the first unwind (0.00999) sells
    # 0.005 and its market remainder is cancelled; the next sells the rest on the next book
    rec = _recording(spot_bid_qty=0.005, spot_every_ms=1)
    res = _run(_base_fee_config(balances={"binance-usdm": {"USDT": 0.0}}), rec)
    assert res.strategy.final_state == "COMPLETED", res.transitions
    unwinds = [o for o in res.orders if o.tag == "arb_unwind"]
    assert [o.filled_qty for o in unwinds] == pytest.approx([0.005, 0.00499]), [(o.qty, o.filled_qty) for o in unwinds]
    assert unwinds[0].status is OrderStatus.CANCELED and unwinds[1].status is OrderStatus.FILLED
    assert res.series[f"position:{SPOT.key}"][-1] == pytest.approx(0.0, abs=1e-12)  # flat, nothing left naked


def test_unknown_venue_in_buy_fee_in_base_is_refused() -> None:
    strategy = registry.create(StrategyType.SIMPLE_ARBITRAGE, instrument_a=SPOT.key, instrument_b=PERP.key)
    config = BacktestConfig(buy_fee_in_base=frozenset({"gateio-spot"}))
    with pytest.raises(ValueError, match=r"buy_fee_in_base.*'gateio-spot'"):
        asyncio.run(run_backtest(_recording(), strategy, config))


def _run_slow(ack_ms: int, max_execution_time_ms: float) -> BacktestResult:
    config = _base_fee_config(latency=SimLatency(order_entry_ns=1 * MS, ack_ns=ack_ms * MS))
    strategy = registry.create(
        StrategyType.SIMPLE_ARBITRAGE, instrument_a=SPOT.key, instrument_b=PERP.key,
        position_size_usdt=600.0, min_profit_threshold=0.001, max_cycles=1,
        max_execution_time_ms=max_execution_time_ms,
    )
    return asyncio.run(run_backtest(_recording(), strategy, config))


def test_buy_leg_timeout_closes_what_was_bought_then_errors() -> None:
    # the buy fills at the venue 1 ms after it is sent, but its fill reaches the strategy 100 ms
    # later, after the 50 ms deadline: the strategy cancels (too late: it has filled), waits for
    # the buy's end, and sells back what it received on the spot venue before reporting ERROR
    res = _run_slow(ack_ms=100, max_execution_time_ms=50.0)
    states = [t[2] for t in res.transitions]
    assert states[-2:] == ["EXECUTING_SELL_SIDE", "ERROR"], res.transitions
    assert [o.tag for o in res.orders] == ["arb_buy", "arb_timeout_unwind"]
    buy, unwind = res.orders
    assert buy.status is OrderStatus.FILLED and unwind.status is OrderStatus.FILLED
    received = QTY - sum(f.fee_base for f in res.fills if f.client_order_id == buy.client_order_id)
    assert (unwind.instrument.key, unwind.side) == (SPOT.key, Side.SELL)
    assert unwind.qty == pytest.approx(received, abs=1e-12)
    assert res.series[f"position:{SPOT.key}"][-1] == pytest.approx(0.0, abs=1e-12)
    assert res.series[f"position:{PERP.key}"][-1] == 0.0
    error = res.strategy.error or ""
    assert "not done within 50.0 ms" in error and "0 left open" in error, error


def test_sell_leg_timeout_waits_for_the_sell_and_closes_nothing_more() -> None:
    # buy acked at ~101 ms, sell sent then; the 150 ms deadline passes before the sell's fill
    # (at ~202 ms) is known: cancel, wait, find it filled -> hedged, nothing to close -> ERROR
    res = _run_slow(ack_ms=100, max_execution_time_ms=150.0)
    assert [o.tag for o in res.orders] == ["arb_buy", "arb_sell"], [o.tag for o in res.orders]
    assert all(o.status is OrderStatus.FILLED for o in res.orders)
    assert res.transitions[-1][2] == "ERROR"
    spot_pos, perp_pos = res.series[f"position:{SPOT.key}"][-1], res.series[f"position:{PERP.key}"][-1]
    assert spot_pos + perp_pos == pytest.approx(0.0, abs=1e-12)  # hedged, as after a normal cycle
    error = res.strategy.error or ""
    assert "closed 0 on" in error and "0 left open" in error, error
