"""Resting limit orders in a replay: filled by recorded trades through the queue (driver + fill model)."""

from __future__ import annotations

import asyncio
import enum
from typing import Any

import numpy as np

from cexarb.backtest import Backtest, BacktestConfig
from cexarb.model import OrderStatus, Side
from cexarb.replay import Recording
from cexarb.strategy import EndOfData, EventKind, StrategyMachine, StrategyParams, StrategyType
from cexarb.venues.base import BookUpdate, OrderRequest, OrderUpdate

SPOT = "binance-spot:BTCUSDT"


class _S(enum.IntEnum):
    WAITING = 0
    RESTING = 1
    DONE = 2
    FAILED = 3


class _P(StrategyParams, frozen=True, kw_only=True):
    delay_s: float = 20.0
    qty: float = 0.01


class JoinBestBid(StrategyMachine[_P]):
    """Test strategy: after ``delay_s`` of data, join the best bid with a GTC limit buy and wait."""

    strategy_type = StrategyType.SIMPLE_ARBITRAGE  # not registered; used directly
    State, Params = _S, _P
    INITIAL, COMPLETED, ERROR = _S.WAITING, _S.DONE, _S.FAILED
    TRANSITIONS = {_S.WAITING: (_S.RESTING, _S.DONE), _S.RESTING: (_S.DONE,)}

    def __init__(self, params: _P) -> None:
        super().__init__(params)
        self.order: Any = None
        self.t0: int | None = None

    def watched_instruments(self) -> tuple[str, ...]:
        return (SPOT,)

    async def on_waiting(self, event: Any) -> None:
        if isinstance(event, EndOfData):
            self.transition(_S.DONE, EventKind.END_OF_DATA)
            return
        if not isinstance(event, BookUpdate):
            return
        self.t0 = self.t0 or event.ts_ns
        if event.ts_ns - self.t0 < self.params.delay_s * 1e9:
            return
        bid = self.ctx.book(SPOT).best_bid()
        assert bid is not None
        self.transition(_S.RESTING, EventKind.BOOK)
        self.order = await self.ctx.submit(
            OrderRequest.create(self.ctx.instrument(SPOT), Side.BUY, self.params.qty, price=bid[0], tag="join")
        )

    async def on_resting(self, event: Any) -> None:
        if isinstance(event, OrderUpdate) and event.status is OrderStatus.FILLED:
            self.transition(_S.DONE, EventKind.ORDER_UPDATE)
        elif isinstance(event, EndOfData):
            self.transition(_S.DONE, EventKind.END_OF_DATA)


def _run(recording: Recording) -> Any:
    bt = Backtest(recording, JoinBestBid(_P()), BacktestConfig())
    return asyncio.run(bt.run())


def test_resting_bid_fills_from_recorded_trades_after_its_queue(recording: Recording) -> None:
    res = _run(recording)
    (order,) = res.orders
    assert order.status is OrderStatus.FILLED and order.filled_qty == 0.01
    fills = res.fills
    assert fills and all(f.is_maker for f in fills)
    trades = recording.streams[SPOT].trades
    ts, px, buy = trades.local_ns, trades.price, trades.taker_is_buy
    placed, first_fill = order.created_ns, fills[0].ts_ns
    # every fill happens at the time of a recorded sell trade at or through our price
    for f in fills:
        at = np.flatnonzero(ts == f.ts_ns)
        assert at.size and any((not buy[i]) and px[i] <= order.price + 1e-9 for i in at)
    # sells at our price did trade between placement and the first fill: they went to the queue ahead
    window = (ts > placed) & (ts < first_fill) & (~buy) & (np.abs(px - order.price) < 1e-9)
    assert window.any()
    assert first_fill - placed > 1_000_000  # not filled on arrival: it waited in the queue
    # the fill model saw exactly the spot trades while the bid rested (from its arrival to its
    # last fill); the perp's trades and the spot's outside that span were skipped
    last_fill = fills[-1].ts_ns
    assert np.sum((ts > placed + 1_000_000) & (ts <= last_fill)) <= res.trades_to_fill_model
    assert res.trades_to_fill_model <= np.sum((ts >= placed) & (ts <= last_fill))
    assert 0 < res.trades_to_fill_model < res.trade_messages


def test_resting_fill_is_deterministic(recording: Recording) -> None:
    a, b = _run(recording), _run(recording)
    assert a.fills == b.fills and a.transitions == b.transitions
