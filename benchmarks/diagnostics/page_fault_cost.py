"""What one page fault costs on this machine: first touch of fresh anonymous memory, and of memory
the process just unmapped and mapped again (what pymalloc's arena churn does), against a second
touch of the same pages (no fault).

On the 2-vCPU VM of the benchmarks: fresh 64 MiB 4.4-22 µs per page over runs (22 µs when the
host has to back the page again: the guest reports free memory to it), 1 MiB mapped again
3.8-4.2 µs per page, a second touch 0.08-0.15 µs (the loop alone); bare metal is ~0.1-0.3 µs per
fault. This is why :mod:`cexarb.memory` keeps pages touched ahead of need.

Run: ``.venv/bin/python benchmarks/diagnostics/page_fault_cost.py``
"""

from __future__ import annotations

import mmap
import statistics
import time

PAGE = mmap.PAGESIZE


def touch(m: mmap.mmap, value: int) -> int:
    """Write one byte per page; returns ns."""
    t0 = time.perf_counter_ns()
    for off in range(0, len(m), PAGE):
        m[off] = value
    return time.perf_counter_ns() - t0


def main() -> None:
    size = 64 << 20
    for _ in range(3):
        m = mmap.mmap(-1, size)
        first, second = touch(m, 1), touch(m, 2)
        m.close()
        n = size // PAGE
        print(f"fresh {size >> 20} MiB: first touch {first / n:,.0f} ns/page, second {second / n:,.0f} ns/page")
    per_page = []
    for _ in range(40):
        m = mmap.mmap(-1, 1 << 20)
        per_page.append(touch(m, 1) / ((1 << 20) // PAGE))
        m.close()
    print(f"1 MiB mapped, touched, unmapped, 40 times: median {statistics.median(per_page):,.0f} ns/page")


if __name__ == "__main__":
    main()
