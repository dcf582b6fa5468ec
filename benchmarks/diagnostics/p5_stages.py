"""P5 stages: where the time of our client's frame -> order path goes, stage by stage.

Runs the ``ours`` client of ``benchmarks/test_p5_tick_to_order_loopback.py`` against the same
simulator process, with a ``time.monotonic_ns()`` stamp (the simulator's clock too) at the entry
of each stage, by wrapping the methods in this process only:

* ``data_received``: aiohttp's client protocol gets the frame's bytes from uvloop (the kernel and
  the wake are before it);
* ``feed_data``: aiohttp's WebSocket reader has parsed the frame (our ``_DirectQueue``);
* ``market_event``: the connector's frame handler;
* ``parsed``: the Rust depth parse returned;
* ``book_manager``: the book manager has the push;
* ``handler``: the strategy's handler runs (the bench's own stamp);
* ``place_order`` / ``start_request`` / ``written`` (the order-entry client's ``_complete``,
  right after the socket write);
* ``received``: the simulator has the last byte of the order request.

Each figure is p50/p90 of (stage - frame sent), µs, over the measured frames. The wrappers add
~0.3 µs per stage. Run: ``.venv/bin/python benchmarks/diagnostics/p5_stages.py`` (optionally
``CEXARB_P5_FRAMES=1500``; ``BUSY_POLL=1`` for the busy-polling client).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import test_p5_tick_to_order_loopback as p5
import uvloop
from aiohttp import client_proto
from cexarb.venues import book_manager, order_entry, ws
from cexarb.venues.gateio import spot as gate_spot

BEFORE_HANDLER = ("data_received", "feed_data", "market_event", "parsed", "book_manager")
AFTER_HANDLER = ("place_order", "start_request", "written")
STAMPS: dict[str, list[int]] = {k: [] for k in BEFORE_HANDLER + AFTER_HANDLER}


def _stamp_entry(cls: type, name: str, stage: str) -> None:
    original = getattr(cls, name)
    stamps, clock = STAMPS[stage], time.monotonic_ns

    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        stamps.append(clock())
        return original(self, *args, **kwargs)

    setattr(cls, name, wrapped)


def _install() -> None:
    _stamp_entry(client_proto.ResponseHandler, "data_received", "data_received")
    _stamp_entry(ws._DirectQueue, "feed_data", "feed_data")
    _stamp_entry(gate_spot.GateConnectorBase, "_on_market_event", "market_event")
    _stamp_entry(book_manager.BookManager, "on_update", "book_manager")
    _stamp_entry(gate_spot.GateConnectorBase, "place_order", "place_order")
    _stamp_entry(order_entry.OrderEntryClient, "start_request", "start_request")
    _stamp_entry(order_entry.OrderEntryClient, "_complete", "written")
    parse, parsed = gate_spot.parse_gate_depth, STAMPS["parsed"]

    def stamped_parse(data: Any) -> Any:
        push = parse(data)
        parsed.append(time.monotonic_ns())
        return push

    gate_spot.parse_gate_depth = stamped_parse


def main() -> None:
    _install()
    folder = p5.data_root() / p5.BINANCE_SUBDIR
    proc = subprocess.Popen(
        [sys.executable, str(p5.HELPER), str(folder), p5.KEY, p5.SECRET, str(p5.UID)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        host = f"127.0.0.1:{proc.stdout.readline().strip()}"
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            rows = runner.run(p5._ours(host, busy_poll=os.environ.get("BUSY_POLL") == "1"))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    sent, received, handler = rows[:, 0], rows[:, 1], rows[:, 2]
    print(f"{len(rows)} frames; p50 / p90 of (stage - frame sent), µs")
    for stage, stamps in STAMPS.items():
        at = np.asarray(stamps, dtype=np.int64)
        until = handler if stage in BEFORE_HANDLER else received  # the stage's last run before it
        idx = np.searchsorted(at, until, side="right") - 1
        ok = idx >= 0
        d = (at[idx[ok]] - sent[ok]) / 1e3
        print(f"  {stage:<14} {np.percentile(d, 50):7.1f} {np.percentile(d, 90):7.1f}")
        if stage == "book_manager":
            h = (handler - sent) / 1e3
            print(f"  {'handler':<14} {np.percentile(h, 50):7.1f} {np.percentile(h, 90):7.1f}")
    r = (received - sent) / 1e3
    print(f"  {'received':<14} {np.percentile(r, 50):7.1f} {np.percentile(r, 90):7.1f}")


if __name__ == "__main__":
    main()
