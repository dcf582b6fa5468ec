"""P2 tail breakdown: where the slowest tick-to-order samples spend their time.

The loop of ``benchmarks/test_p2_tick_to_order.py`` (same strategy, order manager, venue and GC
policy) with one more time stamp, after ``apply_delta``, so each sample splits into the book
apply and the strategy path (wake -> venue). Prints, per pass and for the fastest of the passes
per message, p50/p99 of the total, and the median apply / strategy time and row count of the
samples at or above the p99 against the rest (times in µs).

Run: ``.venv/bin/python benchmarks/diagnostics/p2_tail.py [passes]`` (default 4).
``ARENA_MIB=0`` runs without the arena reserve (default 16 MiB, as the benchmark); each line also
gives the page faults taken inside the samples (``getrusage`` around each sample).
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cexarb.gcpolicy import SafePointGc
from cexarb.replay import load_recording
from cexarb.venues.base import BookUpdate
from test_p2_tick_to_order import DATA, PERP, SPOT, _merged, build_rig

ARENA_MIB = int(os.environ.get("ARENA_MIB", "16"))


def one_pass(messages: list, instruments: dict) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[type-arg]
    """Per message: (total µs, apply µs); NaN where no order went out. Prints the page faults
    taken inside the samples."""
    strategy, blist, keys, arrivals, scanning, book_watch, TOP = build_rig(instruments)
    total = np.full(len(messages), np.nan)
    apply = np.full(len(messages), np.nan)
    pc = time.perf_counter_ns
    faults = [0]

    def minflt() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    async def run() -> None:
        await strategy.start()
        for j, (src, delta) in enumerate(messages):
            f0 = minflt()
            t0 = pc()
            book = blist[src]
            book.apply_delta(delta)
            t1 = pc()
            if book.bbo_changed and book_watch() == TOP:
                before = len(arrivals)
                await strategy.handle(BookUpdate(instrument_key=keys[src], ts_ns=0))
                if len(arrivals) > before:
                    total[j] = arrivals[-1] - t0
                    apply[j] = t1 - t0
                strategy._table.reset(scanning)
            faults[0] += minflt() - f0
            book.flush()
            collect_if_due()

    with SafePointGc(arena_reserve_mib=ARENA_MIB or None) as gcp:
        collect_if_due = gcp.collect_if_due
        asyncio.run(run())
    print(f"page faults inside the samples: {faults[0]}")
    return total / 1e3, apply / 1e3


def _report(label: str, total: np.ndarray, apply: np.ndarray, rows: np.ndarray) -> None:
    ok = ~np.isnan(total)
    t, a, r = total[ok], apply[ok], rows[ok]
    p99 = np.percentile(t, 99)
    tail = t >= p99
    s = t - a
    print(
        f"{label}: p50 {np.percentile(t, 50):.2f} p99 {p99:.2f} | tail n={tail.sum()}: apply {np.median(a[tail]):.2f} "
        f"strategy {np.median(s[tail]):.2f} rows {np.median(r[tail]):.0f} | rest: apply {np.median(a[~tail]):.2f} "
        f"strategy {np.median(s[~tail]):.2f} rows {np.median(r[~tail]):.0f}"
    )


def main(passes: int = 4) -> None:
    recording = load_recording(DATA / "book" / "binance_btc_20240808")
    messages = _merged(recording)
    instruments = {k: recording.streams[k].instrument for k in (SPOT, PERP)}
    rows = np.array([d.n_levels for _, d in messages], dtype=np.float64)
    runs = [one_pass(messages, instruments) for _ in range(passes)]
    for total, apply in runs:
        _report("pass", total, apply, rows)
    totals = np.vstack([t for t, _ in runs])
    applies = np.vstack([a for _, a in runs])
    best = np.nanargmin(np.where(np.isnan(totals), np.inf, totals), axis=0)
    cols = np.arange(totals.shape[1])
    _report("fastest", totals[best, cols], applies[best, cols], rows)
    big = rows >= 200
    fa = applies[best, cols]
    ok = ~np.isnan(fa)
    print(f"big messages (>=200 rows) traded: {int((big & ok).sum())}, apply median {np.median(fa[big & ok]):.2f}, "
          f"strategy median {np.median((totals[best, cols] - fa)[big & ok]):.2f}; small: apply median "
          f"{np.median(fa[~big & ok]):.2f}, strategy median {np.median((totals[best, cols] - fa)[~big & ok]):.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4)
