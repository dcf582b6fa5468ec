"""Cold path: how long one order-path step takes after the process spent a while elsewhere.

Builds one :class:`~cexarb.venues.base.OrderRequest` (and, for scale, calls an empty Python
function) after a gap of spinning in a loop that touches nothing of the order path, or after a
``time.sleep`` of the gap. On a quiet machine with private caches the figures stay flat; on a
shared VM they grow with the gap as other tenants evict the code and data (the reason the live
paths here are 5-10x slower than in-process benches, and what :class:`cexarb.hotpath.BusyPoll`'s
warmers address). Prints p50 / p90, µs, per gap.

Run: ``.venv/bin/python benchmarks/diagnostics/cold_path.py``.
"""

from __future__ import annotations

import time

import numpy as np
from cexarb.model import Instrument, InstrumentKind, Side, TimeInForce
from cexarb.venues.base import OrderRequest

INSTRUMENT = Instrument(
    venue="gateio-spot", symbol="BTC_USDT", kind=InstrumentKind.SPOT, base="BTC", quote="USDT",
    tick_size=0.1, lot_size=1e-6, min_notional=3.0, maker_fee=0.002, taker_fee=0.002,
)


def _create(i: int) -> None:
    OrderRequest.create(INSTRUMENT, Side.BUY, 0.001, price_ticks=600_000 + i, time_in_force=TimeInForce.IOC,
                        client_order_id="cold-1")


def _empty(i: int) -> None:
    pass


def _after_gap(step, gap_us: int, how: str, n: int = 600) -> np.ndarray:  # type: ignore[no-untyped-def]
    clock, out = time.perf_counter_ns, []
    for i in range(n):
        if how == "sleep":
            time.sleep(gap_us / 1e6)
        else:
            end = clock() + gap_us * 1_000
            while clock() < end:
                pass
        t0 = clock()
        step(i)
        out.append(clock() - t0)
    return np.asarray(out) / 1e3


def main() -> None:
    print("step            gap       p50 µs   p90 µs")
    for gap_us in (0, 100, 300, 1_000, 3_000):
        a = _after_gap(_create, gap_us, "spin")
        print(f"OrderRequest    spin {gap_us:>5} {np.percentile(a, 50):8.1f} {np.percentile(a, 90):8.1f}")
    for step, name in ((_create, "OrderRequest"), (_empty, "empty call")):
        a = _after_gap(step, 3_000, "sleep")
        print(f"{name:<15} sleep 3000 {np.percentile(a, 50):8.1f} {np.percentile(a, 90):8.1f}")


if __name__ == "__main__":
    main()
