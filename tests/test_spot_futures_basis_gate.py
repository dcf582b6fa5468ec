"""SPOT_FUTURES_HEDGING's basis gate (``min_basis_bps``) on the real BTCUSDT spot + USDⓈ-M perp
recording.

The strategy enters only when the executable entry basis -- the perp's average bid for the hedge
size over the spot's average ask for the entry size, bps -- is at least ``min_basis_bps`` (and
funding, slippage hold). The test walks both books itself, message by message over the replay's
window, sizing both legs as the strategy does, and finds the best executable entry basis the
window offers; then:

* with the demo parameters (``min_basis_bps`` -10) the strategy enters, at a basis >= -10;
* with ``min_basis_bps`` just above the best basis of any message of the window, nothing is sent
  and the strategy completes saying there was no opportunity;
* with ``min_basis_bps`` just below the best basis the strategy could act on, it enters at the
  first message offering at least that, with that basis.

Funding does not gate here: the replay assumes a constant rate (``BacktestConfig.funding_rate``,
10.95 % APR for 8 h intervals), above the demo's 5 % APR target, so the basis is what decides.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from cexarb import _core
from cexarb.backtest import Backtest, BacktestConfig, BacktestResult
from cexarb.cli import DEMO_PARAMS
from cexarb.strategy import StrategyType, registry

SPOT, PERP = "binance-spot:BTCUSDT", "binance-usdm:BTCUSDT"
DEMO = DEMO_PARAMS["spot_futures_hedging"]
NO_OPPORTUNITY = "no opportunity before end of data"
EPS_BPS = 1e-6  # "just" above / below: the strategy computes the same float with the same inputs


@dataclass(frozen=True)
class Candidate:
    ts_ns: int
    basis_bps: float  # executable entry basis for the demo size, as the strategy computes it
    wakes: bool  # a top-of-book change of a watched instrument: the strategy analyses it
    slippage_ok: bool  # both legs complete and within max_entry_slippage_bps


@dataclass(frozen=True)
class Walk:
    candidates: list[Candidate]  # every applied message in the window with both books valid
    eod_ns: int  # EndOfData reaches the strategy here: no entry at or after it


def _entry_basis(spot_book: Any, perp_book: Any, spot: Any, perp: Any) -> tuple[float, float] | None:
    """(entry basis bps, worst leg slippage bps) for the demo size, sized as
    ``SpotFuturesHedging.on_analyzing_market`` sizes it; None when a leg cannot be sized or filled."""
    spot_mid, perp_mid, ask = spot_book.mid(), perp_book.mid(), spot_book.best_ask()
    if spot_mid is None or perp_mid is None or ask is None:
        return None
    qty = math.floor(DEMO["position_size_usdt"] / ask[0] / spot.lot_size + 1e-9) * spot.lot_size
    units = qty * 1.0 * spot_mid / perp_mid / perp.base_qty(1.0, perp_mid)  # hedge_ratio 1.0 (default)
    perp_qty = round(units / perp.lot_size) * perp.lot_size
    if qty <= 0 or perp_qty <= 0:
        return None
    spot_exec = spot_book.executable_price("buy", qty)
    perp_exec = perp_book.executable_price("sell", perp_qty)
    if not (spot_exec.complete and perp_exec.complete):
        return None
    slippage = max(spot_exec.slippage_bps or 0.0, perp_exec.slippage_bps or 0.0)
    return _core.basis_bps(perp_exec.avg_price, spot_exec.avg_price), slippage


@pytest.fixture(scope="module")
def walk(recording: Any) -> Walk:
    """Both books rebuilt message by message, merged as :class:`Backtest` merges them (by
    ``local_ns``; ties: spot then perp, then row), over the replay window (the two streams'
    overlap): the entry basis after each applied message."""
    keys = (SPOT, PERP)
    streams = [recording.streams[k] for k in keys]
    insts = [s.instrument for s in streams]
    start = max(int(s.book.local_ns[0]) for s in streams)
    end = min(int(s.book.local_ns[-1]) for s in streams)
    ts_parts, src_parts, row_parts = [], [], []
    for i, s in enumerate(streams):
        bts = np.asarray(s.book.local_ns, dtype=np.int64)
        n = int(np.searchsorted(bts, end, side="right"))
        ts_parts.append(bts[:n])
        src_parts.append(np.full(n, i))
        row_parts.append(np.arange(n))
    ts_all, src_all, row_all = (np.concatenate(p) for p in (ts_parts, src_parts, row_parts))
    order = np.lexsort((row_all, src_all, ts_all))
    books = [_core.OrderBook(i.tick_size, i.lot_size) for i in insts]
    max_slippage = DEMO["max_entry_slippage_bps"]
    out: list[Candidate] = []
    for ts, src, row in zip(ts_all[order].tolist(), src_all[order].tolist(), row_all[order].tolist(), strict=True):
        book = books[src]
        if book.apply_delta(streams[src].book.deltas[row]) != _core.APPLIED or ts < start:
            continue
        if not (books[0].is_valid and books[1].is_valid):
            continue
        got = _entry_basis(books[0], books[1], *insts)
        if got is not None:
            out.append(Candidate(ts, got[0], book.bbo_changed, got[1] <= max_slippage))
    eod_ns = max(start, end - int(BacktestConfig().end_of_data_lead_s * 1e9))
    assert len(out) > 5000  # the window's ~10k messages, nearly all with both books valid
    return Walk(out, eod_ns)


def _run(recording: Any, **params: float) -> BacktestResult:
    strategy = registry.create(StrategyType.SPOT_FUTURES_HEDGING, spot_instrument=SPOT, futures_instrument=PERP,
                               **{**DEMO, **params})
    return asyncio.run(Backtest(recording, strategy, BacktestConfig()).run())


def _actionable(walk: Walk) -> list[Candidate]:
    """Messages the strategy would act on: it is woken, slippage holds, before EndOfData."""
    return [c for c in walk.candidates if c.wakes and c.slippage_ok and c.ts_ns < walk.eod_ns]


def _entry_ts(res: BacktestResult) -> int:
    return next(ts for ts, _, to, _ in res.transitions if to == "OPENING_SPOT_POSITION")


def test_funding_does_not_gate_the_replay(recording: Any) -> None:
    perp = recording.streams[PERP].instrument
    apr = _core.annualized_funding_rate(BacktestConfig().funding_rate, perp.funding_interval_hours or 8.0)
    assert apr >= DEMO["target_funding_rate"]


def test_demo_parameters_enter_at_a_basis_at_or_above_min_basis(recording: Any, walk: Walk) -> None:
    res = _run(recording)
    assert res.strategy.orders_executed > 0 and len(res.orders) > 0
    entry = res.strategy.additional_data["entry"]
    assert entry["entry_basis_bps"] >= DEMO["min_basis_bps"]
    # the first message the strategy can act on with a basis at or above the threshold
    first = next(c for c in _actionable(walk) if c.basis_bps >= DEMO["min_basis_bps"])
    assert _entry_ts(res) == first.ts_ns
    assert entry["entry_basis_bps"] == pytest.approx(first.basis_bps, abs=1e-9)


def test_min_basis_just_above_the_best_in_the_window_sends_nothing(recording: Any, walk: Walk) -> None:
    # the best basis after ANY message of the window, woken or not, slippage or not: an upper
    # bound of every basis the strategy could see
    best = max(c.basis_bps for c in walk.candidates)
    assert best > DEMO["min_basis_bps"]  # the demo threshold is not what stops it
    res = _run(recording, min_basis_bps=best + EPS_BPS)
    assert res.orders == [] and res.fills == [] and res.strategy.orders_executed == 0
    assert res.strategy.final_state == "COMPLETED"
    assert res.strategy.additional_data["exit_reason"] == NO_OPPORTUNITY
    assert res.strategy.additional_data["entry"] == {}
    assert [t[2] for t in res.transitions] == ["COMPLETED"]


def test_min_basis_just_below_the_best_actionable_basis_enters_there(recording: Any, walk: Walk) -> None:
    actionable = _actionable(walk)
    best = max(c.basis_bps for c in actionable)
    threshold = best - EPS_BPS
    first = next(c for c in actionable if c.basis_bps >= threshold)  # the best, or an earlier tie
    res = _run(recording, min_basis_bps=threshold)
    assert len(res.orders) > 0 and res.orders[0].tag == "spot_entry"
    entry_basis = res.strategy.additional_data["entry"]["entry_basis_bps"]
    assert entry_basis >= threshold
    assert entry_basis == pytest.approx(first.basis_bps, abs=1e-9)
    assert _entry_ts(res) == first.ts_ns
    # and later than the demo's entry at the window's first message: the gate held it back
    assert _entry_ts(res) > _entry_ts(_run(recording))
