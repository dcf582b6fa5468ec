"""Host speed: the same fixed pure-Python work timed 11,332 times per pass, as many samples as
P2 has (``benchmarks/test_p2_tick_to_order.py``), with a little work between samples as the P2
loop has.

Nothing in it depends on this project: its p50 moving between passes, and its p99 over its p50,
are what the host alone does to a P2-sized sample of a fixed few-µs path. On this project's
2-vCPU VM the same work has measured p50 5.0 µs in one pass and 8.8-9.6 µs in the next (the
vCPU's speed halves for stretches), so a pass's p99 is the path's slow-mode cost whenever a slow
stretch covers more than 1 % of the pass.

Run: ``.venv/bin/python benchmarks/diagnostics/host_speed.py [passes]`` (default 3).
"""

from __future__ import annotations

import sys
import time

import numpy as np

SAMPLES = 11_332


def work(n: int = 140) -> int:
    """A few µs of interpreter work that never changes."""
    s = 0
    for i in range(n):
        s += i * i
    return s


def one_pass() -> np.ndarray:
    clock = time.perf_counter_ns
    t = np.empty(SAMPLES)
    for k in range(SAMPLES):
        t0 = clock()
        work()
        t[k] = clock() - t0
        for _ in range(60):  # the rest of the loop between two samples
            pass
    return t / 1e3


def main(passes: int) -> None:
    for i in range(passes):
        t = one_pass()
        p50, p99 = np.percentile(t, 50), np.percentile(t, 99)
        print(f"pass {i}: p50 {p50:.2f} µs  p99 {p99:.2f} µs  p99/p50 {p99 / p50:.2f}  max {t.max():.0f} µs")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
