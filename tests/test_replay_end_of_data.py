"""End of data in a replay, on the real BTC spot + perp recording.

* SPOT_FUTURES_HEDGING told "end of data" while its entry orders are working (the spot entry
  sent, the hedge not filled yet) remembers it and closes as soon as the hedge is in place; it
  used to drop it, hold both legs past the data and close on the books frozen at the end.
* After the last message the replay runs the clock only ``settle_s`` longer: orders in flight
  complete against the final books, and a callback due later (a strategy timer an hour away)
  never runs, since the data cannot say what the market did then."""

from __future__ import annotations

import asyncio
import enum
from typing import Any

from cexarb.backtest import Backtest, BacktestConfig
from cexarb.cli import DEMO_PARAMS
from cexarb.strategy import (
    EndOfData,
    EventKind,
    StrategyMachine,
    StrategyParams,
    StrategyType,
    registry,
)
from cexarb.strategy.machine import TimerEvent
from cexarb.venues.base import BookUpdate

SPOT, PERP = "binance-spot:BTCUSDT", "binance-usdm:BTCUSDT"


def _sfh() -> Any:
    params = dict(DEMO_PARAMS["spot_futures_hedging"], spot_instrument=SPOT, futures_instrument=PERP,
                  max_holding_time_s=3600.0)
    return registry.create("spot_futures_hedging", **params)


def test_end_of_data_while_the_entry_is_working_closes_once_hedged(recording) -> None:
    base = asyncio.run(Backtest(recording, _sfh(), BacktestConfig()).run())
    end = base.window_ns[1]
    spot_sent = base.fills[0].ts_ns - 1_000_000  # the entry's fill is 1 ms after it was sent
    lead_s = (end - (spot_sent + 500_000)) / 1e9  # EndOfData 0.5 ms after the spot entry went out
    result = asyncio.run(Backtest(recording, _sfh(), BacktestConfig(end_of_data_lead_s=lead_s)).run())
    steps = [(a, b, why) for _, a, b, why in result.transitions]
    assert steps[:3] == [
        ("ANALYZING_MARKET", "OPENING_SPOT_POSITION", steps[0][2]),
        ("OPENING_SPOT_POSITION", "OPENING_FUTURES_HEDGE", steps[1][2]),
        ("OPENING_FUTURES_HEDGE", "MONITORING_POSITIONS", "hedged"),
    ], steps
    assert steps[3][:2] == ("MONITORING_POSITIONS", "CLOSING_POSITIONS") and "end of data" in steps[3][2], steps
    assert steps[-1][1] == "COMPLETED" and result.strategy.success
    # closed at once, on the recorded books: every fill within the data, none an hour later
    assert [f.ts_ns <= end for f in result.fills] == [True] * 4
    assert result.strategy.additional_data["holding_time_s"] < 1.0


class _S(enum.IntEnum):
    WAITING = 0
    ARMED = 1
    DONE = 2
    FAILED = 3


class _P(StrategyParams, frozen=True, kw_only=True):
    strategy_id: str = "late-timer"


class LateTimer(StrategyMachine[_P]):
    """Test strategy: on its first book it arms a timer an hour after the last message and
    ignores EndOfData, so only the replay's settle window decides whether the timer runs."""

    strategy_type = StrategyType.SIMPLE_ARBITRAGE  # not registered
    State, Params = _S, _P
    INITIAL, COMPLETED, ERROR = _S.WAITING, _S.DONE, _S.FAILED
    TRANSITIONS = {_S.WAITING: (_S.ARMED,), _S.ARMED: (_S.DONE,)}  # noqa: RUF012 - base API

    def __init__(self, params: _P, fire_at_ns: int) -> None:
        super().__init__(params)
        self.fire_at_ns = fire_at_ns
        self.fired: list[int] = []
        self.ends: list[str] = []

    def watched_instruments(self) -> tuple[str, ...]:
        return (SPOT,)

    async def on_waiting(self, event: Any) -> None:
        if isinstance(event, BookUpdate):
            self.ctx.set_timer("late", self.fire_at_ns)
            self.transition(_S.ARMED, EventKind.BOOK)

    async def on_armed(self, event: Any) -> None:
        if isinstance(event, EndOfData):
            self.ends.append(event.reason)
        elif isinstance(event, TimerEvent):
            self.fired.append(self.ctx.now_ns())
            self.transition(_S.DONE, EventKind.TIMER)


def test_after_the_data_only_the_settle_window_runs(recording) -> None:
    probe = asyncio.run(Backtest(recording, LateTimer(_P(), fire_at_ns=0), BacktestConfig()).run())
    end = probe.window_ns[1]
    hour = 3600 * 10**9
    late = LateTimer(_P(), fire_at_ns=end + hour)
    result = asyncio.run(Backtest(recording, late, BacktestConfig(settle_s=5.0)).run())
    assert late.fired == [] and not result.strategy.success  # the timer an hour away never ran
    assert late.ends == ["end_of_data", "replay finished"], late.ends
    soon = LateTimer(_P(), fire_at_ns=end + 2 * 10**9)  # within the settle window: it runs
    asyncio.run(Backtest(recording, soon, BacktestConfig(settle_s=5.0)).run())
    assert soon.fired == [end + 2 * 10**9]
