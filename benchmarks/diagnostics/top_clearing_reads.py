"""Reads after a depth message that clears the top of a side (a price jump deleting more levels
than the top rows a message stores at once, ``rust/src/book.rs`` "Top first").

Replays the BTCUSDT spot + USDⓈ-M perp merge of ``benchmarks/test_p2_tick_to_order.py`` up to
message ``J`` (default 7,145: 1,226 level changes, its bids' top cleared), applies it, and prints
the rows still pending and the least time of 200 calls of ``best_bid`` / ``best_ask`` /
``executable_price`` and of the SIMPLE_ARBITRAGE entry scan (``ArbEntry.scan``), before and after
``flush`` (µs). Since the book stores a cleared top's pending rows down to the first surviving
level at apply time, the reads with rows pending cost what they cost after the flush.

Run: ``.venv/bin/python benchmarks/diagnostics/top_clearing_reads.py [J]``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cexarb import _core
from cexarb.replay import load_recording
from test_p2_tick_to_order import DATA, PERP, SPOT, _merged


def _least_us(call, n: int = 200) -> float:  # type: ignore[no-untyped-def]
    best = 10**18
    for _ in range(n):
        t0 = time.perf_counter_ns()
        call()
        best = min(best, time.perf_counter_ns() - t0)
    return best / 1e3


def main(j: int) -> None:
    rec = load_recording(DATA / "book" / "binance_btc_20240808")
    messages = _merged(rec)
    spot, perp = (rec.streams[k].instrument for k in (SPOT, PERP))
    books = [_core.OrderBook(i.tick_size, i.lot_size) for i in (spot, perp)]
    for src, delta in messages[:j]:
        books[src].apply_delta(delta)
        books[src].flush()
    entry = _core.ArbEntry(
        books[0], books[1], 1_000.0, max(spot.min_notional, perp.min_notional), -500.0, 0.002,
        spot.tick_size, spot.lot_size, spot.taker_fee, perp.tick_size, perp.lot_size, perp.taker_fee,
    )
    src, delta = messages[j]
    book = books[src]
    book.apply_delta(delta)
    print(f"message {j}: {delta.n_levels} level changes, {book.pending_rows} rows pending after apply")
    for label in ("rows pending", "after flush"):
        print(f"  {label:<13} best_bid {_least_us(book.best_bid):6.2f}  best_ask {_least_us(book.best_ask):6.2f}  "
              f"sell 0.016 {_least_us(lambda: book.executable_price('sell', 0.016)):6.2f}  "
              f"buy 0.016 {_least_us(lambda: book.executable_price('buy', 0.016)):6.2f}  "
              f"scan {_least_us(entry.scan):6.2f} µs")
        book.flush()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7145)
