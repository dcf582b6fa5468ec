"""P4: whole-demo replay throughput vs replaying the same books with no strategy.

Group ``P4-replay``: (a) the demo — SPOT_FUTURES_HEDGING with the demo parameters replayed by
:class:`cexarb.backtest.Backtest` over BTCUSDT spot + USDⓈ-M perp (depth messages, trades, the
simulated venue, order manager, report series); (b) the baseline — the same depth messages in
the same merged order applied to the same Rust books with a best bid/ask read, nothing else.
Throughput is book messages per second for both (the demo also walks ~31k trades), so the ratio
is baseline time / demo time. Goal: >= 0.5. ``test_p4_paired`` measures the same ratio in
alternating pairs, which cancels the host's drift between the two tests.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path

import pytest

from cexarb import _core
from cexarb.backtest import Backtest
from cexarb.cli import DEMO_PARAMS
from cexarb.strategy import StrategyType, registry

SPOT, PERP = "binance-spot:BTCUSDT", "binance-usdm:BTCUSDT"
DATA = Path(os.environ.get("CEXARB_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
ROUNDS = 7
_figures: dict[str, float] = {}


@pytest.fixture(scope="module")
def recording():
    folder = DATA / "book" / "binance_btc_20240808"
    if not folder.is_dir():
        pytest.skip(f"recorded data not found at {folder}")
    from cexarb.replay import load_recording

    return load_recording(folder)


def _strategy():
    return registry.create(
        StrategyType.SPOT_FUTURES_HEDGING, spot_instrument=SPOT, futures_instrument=PERP,
        **DEMO_PARAMS["spot_futures_hedging"],
    )


@pytest.mark.benchmark(group="P4-replay")
def test_p4_demo_replay(benchmark, recording) -> None:
    results = []

    def setup():
        return (Backtest(recording, _strategy()),), {}

    def run(bt: Backtest) -> None:
        results.append(asyncio.run(bt.run()))

    benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1)
    res = results[-1]
    assert res.strategy.final_state == "COMPLETED"
    _figures["demo_s"] = benchmark.stats.stats.median
    _figures["book_messages"] = res.book_messages
    benchmark.extra_info["book_msgs_per_s"] = res.book_messages / benchmark.stats.stats.median
    benchmark.extra_info["all_msgs_per_s"] = res.messages / benchmark.stats.stats.median


@pytest.mark.benchmark(group="P4-replay")
def test_p4_baseline_books_only(benchmark, recording) -> None:
    bt = Backtest(recording, _strategy())
    start, end = bt._window()
    _, srcs, rows = bt._book_events(end)  # the same messages in the same merged order
    deltas = [recording.streams[k].book.deltas for k in (SPOT, PERP)]
    msgs = [deltas[s][r] for s, r in zip(srcs, rows, strict=True)]
    insts = [recording.streams[k].instrument for k in (SPOT, PERP)]

    def setup():
        return ([_core.OrderBook(i.tick_size, i.lot_size) for i in insts],), {}

    def run(books) -> None:
        for src, d in zip(srcs, msgs, strict=True):
            b = books[src]
            b.apply_delta(d)
            b.best_bid()
            b.best_ask()

    benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1)
    _figures["baseline_s"] = benchmark.stats.stats.median
    benchmark.extra_info["book_msgs_per_s"] = len(msgs) / benchmark.stats.stats.median
    if "demo_s" in _figures:
        ratio = _figures["baseline_s"] / _figures["demo_s"]
        benchmark.extra_info["demo_vs_baseline_throughput"] = ratio
        print(f"\nP4: demo {_figures['book_messages'] / _figures['demo_s']:,.0f} book msg/s, baseline "
              f"{len(msgs) / _figures['baseline_s']:,.0f} book msg/s, ratio {ratio:.2f} (goal >= 0.5)")


@pytest.mark.benchmark(group="P4-replay paired")
def test_p4_paired(benchmark, recording) -> None:
    """The demo replay and the books-only baseline alternated in pairs (order flipped every pair),
    each on fresh state: a pair is measured within ~0.15 s, so the host's drift between the two
    tests above (which run seconds apart) does not decide the figure. Reports the median of the
    per-pair ratios (baseline time / demo time) and the ratio of the fastest passes (goal >= 0.5)."""
    bt0 = Backtest(recording, _strategy())
    _, srcs, rows = bt0._book_events(bt0._window()[1])  # the baseline's messages, as above
    deltas = [recording.streams[k].book.deltas for k in (SPOT, PERP)]
    msgs = [deltas[s][r] for s, r in zip(srcs, rows, strict=True)]
    insts = [recording.streams[k].instrument for k in (SPOT, PERP)]

    def demo() -> int:
        bt = Backtest(recording, _strategy())
        t0 = time.perf_counter_ns()
        res = asyncio.run(bt.run())
        elapsed = time.perf_counter_ns() - t0
        assert res.strategy.final_state == "COMPLETED"
        return elapsed

    def baseline() -> int:
        books = [_core.OrderBook(i.tick_size, i.lot_size) for i in insts]
        t0 = time.perf_counter_ns()
        for src, d in zip(srcs, msgs, strict=True):
            b = books[src]
            b.apply_delta(d)
            b.best_bid()
            b.best_ask()
        return time.perf_counter_ns() - t0

    pairs = 2 * ROUNDS
    demo_ns: list[int] = []
    base_ns: list[int] = []

    def run() -> None:
        for i in range(pairs):
            if i % 2:
                base_ns.append(baseline())
                demo_ns.append(demo())
            else:
                demo_ns.append(demo())
                base_ns.append(baseline())

    benchmark.pedantic(run, rounds=1, iterations=1)
    ratios = sorted(b / d for b, d in zip(base_ns, demo_ns, strict=True))
    median = statistics.median(ratios)
    fastest = min(base_ns) / min(demo_ns)
    benchmark.extra_info.update(pairs=pairs, median_pair_ratio=median, fastest_ratio=fastest)
    print(f"\nP4 paired ({pairs} pairs): baseline / demo time, median of pairs {median:.2f} "
          f"(range {ratios[0]:.2f}-{ratios[-1]:.2f}), fastest passes {fastest:.2f} (goal >= 0.5)")
