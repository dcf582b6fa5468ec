"""P3: state-transition check + audit from Python. Goal: <= 1 us per transition.

Group ``P3-transition``: the Rust TransitionTable called directly, the same through
``StrategyMachine.transition`` (what strategies call: check, audit, transition log), and a
pure-Python baseline (dict-of-sets check + deque audit ring) in the same run, so one run gives
the ratios.
"""

from __future__ import annotations

import collections

import pytest

from cexarb import _core
from cexarb.clock import SimClock
from cexarb.execution import OrderManager
from cexarb.strategy import EventKind, HedgingState, StrategyContext, StrategyType, registry

N = 10_000
CYCLE = [(3, 4), (4, 3)]  # MONITORING_POSITIONS <-> REBALANCING


class PyTable:
    """Pure-Python baseline with the same behaviour: allowed-set check, audit ring, counts."""

    def __init__(self, names: list[str], allowed: list[tuple[int, int]], initial: int, capacity: int = 4096) -> None:
        self.names = names
        self.allowed: dict[int, set[int]] = collections.defaultdict(set)
        for a, b in allowed:
            self.allowed[a].add(b)
        self.state = initial
        self.audit: collections.deque[tuple[int, int, int, int]] = collections.deque(maxlen=capacity)
        self.counts = [0] * len(names)

    def transition(self, to: int, event: int, ts_ns: int) -> int:
        prev = self.state
        if to not in self.allowed[prev]:
            raise ValueError(f"illegal transition {self.names[prev]} -> {self.names[to]}")
        self.audit.append((prev, to, event, ts_ns))
        self.counts[to] += 1
        self.state = to
        return prev


def _names_allowed() -> tuple[list[str], list[tuple[int, int]]]:
    names = [s.name for s in HedgingState]
    allowed = [(3, 4), (4, 3), (0, 1), (1, 2), (2, 3), (3, 5), (4, 5), (5, 6)]
    return names, allowed


@pytest.mark.benchmark(group="P3-transition")
def test_p3_rust_table(benchmark) -> None:
    names, allowed = _names_allowed()
    table = _core.TransitionTable(names, allowed, 3)
    step = table.transition

    def run() -> None:
        for i in range(N // 2):
            step(4, 1, i)
            step(3, 3, i)

    benchmark(run)
    benchmark.extra_info["ns_per_transition"] = benchmark.stats.stats.median / N * 1e9
    assert table.total_transitions > 0 and table.state == 3


@pytest.mark.benchmark(group="P3-transition")
def test_p3_strategy_machine_transition(benchmark) -> None:
    clock = SimClock(1)
    s = registry.create(StrategyType.SPOT_FUTURES_HEDGING, spot_instrument="a:X", futures_instrument="b:Y")
    s.bind(StrategyContext(clock=clock, public={}, private={}, orders=OrderManager(clock, {}, lambda k: None)))
    s._table.reset(int(HedgingState.MONITORING_POSITIONS))
    mon, reb, ev = HedgingState.MONITORING_POSITIONS, HedgingState.REBALANCING, EventKind.BOOK

    def run() -> None:
        s.transition_log.clear()
        for _ in range(N // 2):
            s.transition(reb, ev)
            s.transition(mon, ev)

    benchmark(run)
    benchmark.extra_info["ns_per_transition"] = benchmark.stats.stats.median / N * 1e9
    assert s.state is mon


@pytest.mark.benchmark(group="P3-transition")
def test_p3_pure_python_baseline(benchmark) -> None:
    names, allowed = _names_allowed()
    table = PyTable(names, allowed, 3)
    step = table.transition

    def run() -> None:
        for i in range(N // 2):
            step(4, 1, i)
            step(3, 3, i)

    benchmark(run)
    benchmark.extra_info["ns_per_transition"] = benchmark.stats.stats.median / N * 1e9
    assert table.state == 3
