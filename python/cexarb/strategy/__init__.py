"""Strategies: the state-machine framework, the registry, and the strategy families.

Importing this package registers every strategy with :mod:`cexarb.strategy.registry`.
"""

from cexarb.strategy import registry
from cexarb.strategy.machine import (
    BookWatch,
    EndOfData,
    EventKind,
    StrategyContext,
    StrategyError,
    StrategyMachine,
    StrategyParams,
    StrategyResult,
    StrategyType,
    TimerEvent,
)
from cexarb.strategy.simple_arbitrage import ArbitrageState, SimpleArbitrage, SimpleArbitrageParams
from cexarb.strategy.spot_futures_hedging import HedgingState, SpotFuturesHedging, SpotFuturesHedgingParams

__all__ = [
    "ArbitrageState",
    "BookWatch",
    "EndOfData",
    "EventKind",
    "HedgingState",
    "SimpleArbitrage",
    "SimpleArbitrageParams",
    "SpotFuturesHedging",
    "SpotFuturesHedgingParams",
    "StrategyContext",
    "StrategyError",
    "StrategyMachine",
    "StrategyParams",
    "StrategyResult",
    "StrategyType",
    "TimerEvent",
    "registry",
]
