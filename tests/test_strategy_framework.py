"""Strategy framework: registry validation, the Rust-backed transition table, error handling."""

from __future__ import annotations

import asyncio
import enum

import pytest

from cexarb import _core
from cexarb.clock import SimClock
from cexarb.execution import OrderManager
from cexarb.strategy import (
    EventKind,
    HedgingState,
    StrategyContext,
    StrategyError,
    StrategyMachine,
    StrategyParams,
    StrategyType,
    registry,
)
from cexarb.strategy.registry import StrategyParamError
from cexarb.venues.base import BookUpdate

SFH = dict(spot_instrument="binance-spot:BTCUSDT", futures_instrument="binance-usdm:BTCUSDT")


def bind(strategy: StrategyMachine, clock: SimClock | None = None) -> StrategyMachine:
    clock = clock or SimClock(1_000)
    orders = OrderManager(clock, {}, lambda key: None)
    strategy.bind(StrategyContext(clock=clock, public={}, private={}, orders=orders))
    return strategy


def test_registry_lists_registered_types() -> None:
    assert registry.list() == [StrategyType.SIMPLE_ARBITRAGE, StrategyType.SPOT_FUTURES_HEDGING]


def test_create_validates_and_accepts_strings() -> None:
    s = registry.create("spot_futures_hedging", **SFH, position_size_usdt=500)
    assert s.params.position_size_usdt == 500.0
    assert s.state is HedgingState.ANALYZING_MARKET


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({**SFH, "position_size_usdt": "lots"}, "position_size_usdt"),  # wrong type
        ({"spot_instrument": "binance-spot:BTCUSDT"}, "futures_instrument"),  # missing
        ({**SFH, "positon_size_usdt": 1.0}, "positon_size_usdt"),  # unknown (typo)
        ({**SFH, "position_size_usdt": -5.0}, "position_size_usdt"),  # __post_init__ range
        ({**SFH, "hedge_ratio": 2.0}, "hedge_ratio"),
    ],
)
def test_create_rejects_bad_params_naming_the_field(params: dict, field: str) -> None:
    with pytest.raises(StrategyParamError) as info:
        registry.create(StrategyType.SPOT_FUTURES_HEDGING, **params)
    assert info.value.field == field
    assert field in str(info.value)


def test_spec_parameter_names_are_accepted() -> None:
    # spot-futures-hedging.md's max_holding_time_hours and state-machines.md's max_position_imbalance
    s = registry.create(StrategyType.SPOT_FUTURES_HEDGING, **SFH, max_holding_time_hours=2, max_position_imbalance=0.03)
    assert s.params.max_holding_time_s == 7200.0 and s.params.max_hedge_ratio_drift == 0.03
    # both names of one setting agreeing is fine; disagreeing, or out of range, names the field
    s = registry.create(StrategyType.SPOT_FUTURES_HEDGING, **SFH, max_holding_time_hours=0.5, max_holding_time_s=1800)
    assert s.params.max_holding_time_s == 1800.0
    for bad in ({"max_holding_time_hours": 2, "max_holding_time_s": 5.0}, {"max_holding_time_hours": -1}):
        with pytest.raises(StrategyParamError) as info:
            registry.create(StrategyType.SPOT_FUTURES_HEDGING, **SFH, **bad)
        assert info.value.field == "max_holding_time_hours", str(info.value)


def test_unknown_strategy_type() -> None:
    with pytest.raises(ValueError, match="unknown strategy type 'nope'"):
        registry.create("nope")


def test_illegal_transition_names_both_states_and_leaves_state() -> None:
    s = bind(registry.create(StrategyType.SPOT_FUTURES_HEDGING, **SFH))
    with pytest.raises(StrategyError) as info:
        s.transition(HedgingState.REBALANCING, EventKind.BOOK)
    assert "ANALYZING_MARKET" in str(info.value) and "REBALANCING" in str(info.value)
    assert info.value.state == "ANALYZING_MARKET"
    assert isinstance(info.value.cause, _core.IllegalTransitionError)
    assert s.state is HedgingState.ANALYZING_MARKET
    assert s.audit() == []


def test_a_transition_path_is_all_or_nothing() -> None:
    s = bind(registry.create(StrategyType.SPOT_FUTURES_HEDGING, **SFH))
    H = HedgingState
    # the second step (OPENING_SPOT_POSITION -> REBALANCING) is not declared: nothing happens
    with pytest.raises(StrategyError) as info:
        s.transition_path((H.OPENING_SPOT_POSITION, H.REBALANCING), EventKind.BOOK, ("a", "b"))
    assert "OPENING_SPOT_POSITION" in str(info.value) and "REBALANCING" in str(info.value)
    assert s.state is H.ANALYZING_MARKET and s.audit() == [] and list(s.transition_log) == []
    with pytest.raises(ValueError, match="one reason per step"):
        s.transition_path((H.OPENING_SPOT_POSITION,), EventKind.BOOK, ())
    s.transition_path((H.OPENING_SPOT_POSITION, H.OPENING_FUTURES_HEDGE), EventKind.BOOK, ("spot", "hedge"))
    assert s.state is H.OPENING_FUTURES_HEDGE
    assert [(a, b, r) for _, a, b, r in s.transition_log] == [
        ("ANALYZING_MARKET", "OPENING_SPOT_POSITION", "spot"),
        ("OPENING_SPOT_POSITION", "OPENING_FUTURES_HEDGE", "hedge"),
    ]
    assert [(f, t, e) for f, t, e, _ in s.audit()] == [(0, 1, int(EventKind.BOOK)), (1, 2, int(EventKind.BOOK))]


def test_the_python_logs_keep_the_most_recent_entries() -> None:
    s = bind(registry.create(StrategyType.SPOT_FUTURES_HEDGING, **SFH))
    s.transition_log = type(s.transition_log)(maxlen=2)
    H = HedgingState
    for to in (H.OPENING_SPOT_POSITION, H.OPENING_FUTURES_HEDGE, H.MONITORING_POSITIONS):
        s.transition(to, EventKind.BOOK, to.name)
    assert [r for *_, r in s.transition_log] == ["OPENING_FUTURES_HEDGE", "MONITORING_POSITIONS"]
    assert type(s).LOG_MAX >= 100_000 and s.markers.maxlen == type(s).LOG_MAX


def test_transitions_are_audited_with_event_and_time() -> None:
    clock = SimClock(5_000)
    s = bind(registry.create(StrategyType.SPOT_FUTURES_HEDGING, **SFH), clock)
    s.transition(HedgingState.OPENING_SPOT_POSITION, EventKind.BOOK, "go")
    clock.advance(7_000)
    s.transition(HedgingState.OPENING_FUTURES_HEDGE, EventKind.ORDER_UPDATE, "filled")
    assert s.audit() == [
        (int(HedgingState.ANALYZING_MARKET), int(HedgingState.OPENING_SPOT_POSITION), int(EventKind.BOOK), 5_000),
        (int(HedgingState.OPENING_SPOT_POSITION), int(HedgingState.OPENING_FUTURES_HEDGE), int(EventKind.ORDER_UPDATE), 7_000),
    ]
    assert s.transition_counts()["OPENING_FUTURES_HEDGE"] == 1
    assert s.transition_count == 2
    assert s.transition_log[-1] == (7_000, "OPENING_SPOT_POSITION", "OPENING_FUTURES_HEDGE", "filled")


def test_every_state_may_fail_into_error() -> None:
    for state in HedgingState:
        if state in (HedgingState.COMPLETED, HedgingState.ERROR):
            continue
        s = bind(registry.create(StrategyType.SPOT_FUTURES_HEDGING, **SFH))
        s._table.reset(int(state))
        s.fail("boom")
        assert s.state is HedgingState.ERROR and s.error == "boom"


class _ToyState(enum.IntEnum):
    IDLE = 0
    RUNNING = 1
    DONE = 2
    FAILED = 3


class _ToyParams(StrategyParams, frozen=True, kw_only=True):
    pass


class _Toy(StrategyMachine[_ToyParams]):
    strategy_type = StrategyType.SIMPLE_ARBITRAGE  # not registered; only the base class is exercised
    State = _ToyState
    Params = _ToyParams
    INITIAL, COMPLETED, ERROR = _ToyState.IDLE, _ToyState.DONE, _ToyState.FAILED
    TRANSITIONS = {_ToyState.IDLE: (_ToyState.RUNNING,), _ToyState.RUNNING: (_ToyState.DONE,)}

    async def on_idle(self, event: object) -> None:
        self.transition(_ToyState.RUNNING, EventKind.BOOK)

    async def on_running(self, event: object) -> None:
        raise RuntimeError("venue went away")


def test_handler_exception_moves_to_error_and_engine_survives() -> None:
    toy = bind(_Toy(_ToyParams()))
    ev = BookUpdate(instrument_key="x:y", ts_ns=1)
    asyncio.run(toy.handle(ev))
    assert toy.state is _ToyState.RUNNING
    asyncio.run(toy.handle(ev))
    assert toy.state is _ToyState.FAILED
    assert toy.error == "RuntimeError: venue went away"
    assert toy.is_finished
    asyncio.run(toy.handle(ev))  # finished machines ignore events
    assert toy.state is _ToyState.FAILED


def test_missing_handler_is_a_type_error() -> None:
    class Broken(_Toy):
        on_running = None  # type: ignore[assignment]

    with pytest.raises(TypeError, match="on_running"):
        Broken(_ToyParams())
