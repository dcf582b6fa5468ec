"""P2 floor: the tick-to-order path of SIMPLE_ARBITRAGE with no framework around it.

The same real messages and work as ``benchmarks/test_p2_tick_to_order.py`` -- apply, the Rust
entry scan (``ArbEntry``), the table steps in one call, the ``OrderRequest`` and its ``Order``
record, the Rust risk check, a time stamp where the venue would receive the request -- written
inline in the loop: no ``StrategyMachine.handle``, handler coroutine, ``OrderManager.submit`` or
venue coroutine. The gap to P2 is what the framework layers cost.

Run: ``.venv/bin/python benchmarks/diagnostics/p2_floor.py`` (4 passes; prints each pass's
p50/p99 and each message's fastest pass).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cexarb import _core
from cexarb.gcpolicy import SafePointGc
from cexarb.model import OrderType, Side, TimeInForce
from cexarb.replay import load_recording
from cexarb.venues.base import OrderRequest
from test_p2_tick_to_order import DATA, PERP, SPOT, _merged


def one_pass(messages: list, spot, perp) -> np.ndarray:  # type: ignore[type-arg]
    pc = time.perf_counter_ns
    books = [_core.OrderBook(i.tick_size, i.lot_size) for i in (spot, perp)]
    entry = _core.ArbEntry(
        books[0], books[1], 1_000.0, max(spot.min_notional, perp.min_notional), -500.0, 0.002,
        spot.tick_size, spot.lot_size, spot.taker_fee, perp.tick_size, perp.lot_size, perp.taker_fee,
    )
    table = _core.TransitionTable(["scan", "detected", "validating", "buying"], [(0, 1), (1, 2), (2, 3)], 0)
    risk = _core.PreTradeRisk(250_000.0, 500_000.0, 100.0, 0)
    orders: dict[str, object] = {}
    latency = np.full(len(messages), np.nan)
    n = 0
    with SafePointGc() as gcp:
        for j, (src, delta) in enumerate(messages):
            t0 = pc()
            book = books[src]
            book.apply_delta(delta)
            if book.bbo_changed:
                x = entry.scan()
                if x is not None and x[6] is not None:
                    table.transition_path((1, 2, 3), 2, 0)
                    lots, ticks, wire_qty, wire_price, qty, price = x[6]
                    n += 1
                    coid = f"cx-{n}"
                    request = OrderRequest(
                        instrument=spot if x[0] else perp, side=Side.BUY, type=OrderType.LIMIT, qty_lots=lots,
                        price_ticks=ticks, time_in_force=TimeInForce.IOC, client_order_id=coid, tag="arb_buy",
                        wire_qty=wire_qty, wire_price=wire_price, qty=qty, price=price,
                    )
                    orders[coid] = request.to_order(0)
                    if risk.check(books[0] if x[0] else books[1], 1.0, qty, price, 0.0, 0, 1.0, False) is None:
                        latency[j] = pc() - t0
                    table.reset(0)
            book.flush()
            gcp.collect_if_due()
    return latency / 1e3


def main(passes: int = 4) -> None:
    recording = load_recording(DATA / "book" / "binance_btc_20240808")
    messages = _merged(recording)
    spot, perp = recording.streams[SPOT].instrument, recording.streams[PERP].instrument
    runs = np.array([one_pass(messages, spot, perp) for _ in range(passes)])
    traded = ~np.isnan(runs[0])
    for r in runs:
        print(f"pass: p50 {np.percentile(r[traded], 50):.2f} us, p99 {np.percentile(r[traded], 99):.2f} us")
    fastest = runs[:, traded].min(axis=0)
    print(f"each message's fastest pass: p50 {np.percentile(fastest, 50):.2f} us, p99 {np.percentile(fastest, 99):.2f} us")


if __name__ == "__main__":
    main()
