"""Host noise probe: a loop that only reads ``perf_counter_ns``; every gap between two reads longer
than a threshold is time the process did not run (interrupts, CPU steal, other processes).

Run: ``.venv/bin/python benchmarks/diagnostics/host_gaps.py`` -- prints, per threshold, how often
such a gap came, its mean length and the share of wall time lost. Latency percentiles of this
machine are only comparable between runs with similar figures here.
"""

from __future__ import annotations

import time

import numpy as np


def main(n: int = 3_000_000) -> None:
    pc = time.perf_counter_ns
    ts = np.empty(n, dtype=np.int64)
    for i in range(n):
        ts[i] = pc()
    gaps = np.diff(ts)
    wall_ms = (ts[-1] - ts[0]) / 1e6
    for threshold_ns in (2_000, 5_000, 10_000, 20_000, 50_000):
        g = gaps[gaps > threshold_ns]
        mean_us = g.mean() / 1e3 if len(g) else 0.0
        print(
            f">{threshold_ns / 1e3:.0f} us: {len(g)} gaps in {wall_ms:.0f} ms, one per "
            f"{wall_ms / max(1, len(g)):.2f} ms, mean {mean_us:.1f} us, {g.sum() / 1e6 / wall_ms * 100:.2f} % of time lost"
        )
    print(f"median step {np.median(gaps):.0f} ns")


if __name__ == "__main__":
    main()
