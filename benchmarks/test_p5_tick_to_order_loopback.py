"""P5 tick-to-order over loopback: a Gate spot depth frame SENT by the simulator -> the signed
order request it provokes RECEIVED by the simulator -- our connector vs ccxt, same run.

The server is :class:`~cexarb.venues.sim.server.SimServer` in its own process and event loop
(uvloop), rate limits off, market replay paused, with the test-only driver of
``benchmarks/p5_loopback_sim.py``: it changes the ``gateio-spot`` book by 10 levels away from the
top, sends the simulator's own ``spot.order_book_update`` frame at once (``time.monotonic_ns()``
just before the socket write), waits for the order POST whose ``text`` carries that frame's
update id (``time.monotonic_ns()`` when its last byte arrived), waits ``CEXARB_P5_GAP_MS``
(default 3 ms) and sends the next frame: one frame in flight at a time. Both stamps are taken in
the server process and bracket only the wire: "sent" right before the frame's socket write (the
write is not deferred by uvloop, and the frame skips the connection's queue and writer task),
"received" at the first byte-carrying read that completes the request (aiohttp's own
``data_received(b"")`` calls after dispatch do not count -- counting them added the server's
request handling, ~250 µs here, to both clients). Clients, one after the other, in this process
on uvloop:

* ``ours``: :class:`cexarb.venues.gateio.spot.GateSpot` (``enforce_rate_limits=False``: no
  client-side rate limiter, as ccxt's is off) -- the market WS frame reaches the connector inside
  the connection's ``data_received`` (:class:`~cexarb.venues.ws.WsClient` direct delivery: no
  task switch), is decoded, its
  :class:`~cexarb.venues.book_manager.BookManager` applies it, the ``subscribe_market`` handler
  gets the :class:`~cexarb.venues.base.BookUpdate`, builds an IOC ``OrderRequest`` 100 USDT under
  the local best bid and spawns ``place_order`` as a task -- ``place_order`` signs the order and
  writes it on the keep-alive :class:`~cexarb.venues.order_entry.OrderEntryClient` before it
  returns its coroutine; the task only waits for the reply;
* ``ours-busy-poll``: the same, with :class:`cexarb.hotpath.BusyPoll` on the client's loop: it
  polls the sockets without sleeping (one core at 100 %), and at most every 100 µs runs the
  path all but the book change and the send (the latest depth frame parsed again,
  :meth:`~cexarb.venues.connector.ConnectorBase.warm_market`; the book read, the ``OrderRequest``, and
  :meth:`~cexarb.venues.connector.ConnectorBase.warm_order`: body, signature, request bytes),
  which keeps that path in the CPU caches between frames. Opt-in: the default ``ours`` row is
  the framework as it runs unless asked;
* ``ccxt``: ``ccxt.pro.gate`` 4.5.90 (skipped when not installed) -- a loop of
  ``watch_order_book`` then an awaited ``create_order`` (same IOC order, ``text`` = nonce).

``CEXARB_P5_FRAMES`` measured frames per client (default 2,000) after 200 warm-up frames. The
IOC orders never fill (they rest nowhere), so balances and the book stay as they are. The
pytest-benchmark row of a client is its whole batch; p50/p99 are in ``extra_info`` and printed
with the ccxt/ours ratio. Goal (issue 4): ours p50 <= 100 µs, p99 <= 300 µs, >= 4x faster than
ccxt (reported, not asserted).

``test_p5_interleaved`` runs ``ours`` and ``ccxt`` again in alternating rounds and reports the
median of the per-round ccxt/ours ratios: on this shared VM the host's speed drifts between
the runs of the rows above, which moves their ratio by more than the client code does.

Run: ``CEXARB_P5_FRAMES=2000 .venv/bin/python -m pytest benchmarks/test_p5_tick_to_order_loopback.py --benchmark-only -s``
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from cexarb.gcpolicy import SafePointGc
from cexarb.hotpath import BusyPoll
from cexarb.model import OrderStatus, Side, TimeInForce
from cexarb.venues.base import BookUpdate, OrderRequest
from cexarb.venues.gateio.spot import GateSpot
from cexarb.venues.secrets import ApiCredentials
from cexarb.venues.ws import Backoff
from conftest import BINANCE_SUBDIR, data_root

try:
    import uvloop

    LOOP_FACTORY: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    LOOP_NAME = "uvloop"
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    LOOP_FACTORY = None
    LOOP_NAME = "asyncio"

N = int(os.environ.get("CEXARB_P5_FRAMES", "2000"))
WARMUP = 200
GAP_MS = float(os.environ.get("CEXARB_P5_GAP_MS", "3"))
WARM_US = 100.0  # ours-busy-poll: the order path is run (all but the send) at most every 100 µs
KEY, SECRET, UID = "p5-gate-key", "p5-gate-secret", 10001
SPOT_KEY = "gateio-spot:BTC_USDT"
QTY = 0.001
BELOW_TICKS = 1000  # 100 USDT under the best bid: an IOC that never fills
GROUP = "P5-tick-to-order-loopback"
HELPER = Path(__file__).with_name("p5_loopback_sim.py")
RESULTS: dict[str, np.ndarray] = {}  # frame sent -> order received, ns
HANDLER: dict[str, np.ndarray] = {}  # frame sent -> the client's strategy code sees the book, ns


@pytest.fixture(scope="module")
def sim() -> Iterator[str]:
    folder = data_root() / BINANCE_SUBDIR
    if not folder.is_dir():
        pytest.skip(f"recorded data not found at {folder} (set CEXARB_DATA to the shared/data folder)")
    proc = subprocess.Popen(
        [sys.executable, str(HELPER), str(folder), KEY, SECRET, str(UID)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()  # the server prints its port when ready
        if not line.isdigit():
            proc.kill()
            raise RuntimeError(f"P5 simulator did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
        yield f"127.0.0.1:{line}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


async def _drive(host: str, frames: int = N) -> np.ndarray:
    """Wait for the client's depth subscription, then let the server run the frames; returns
    ``[u, sent_ns, received_ns]`` rows (``u``: the frame's last update id).

    Both clients run with the heap built during their start-up frozen (``gc.collect()`` then
    ``gc.freeze()``, as :class:`cexarb.engine.Engine` does once it runs): full collections then
    scan only what the trading loop allocates, not pytest's, numpy's and ccxt's module objects.
    Our clients also collect as the engine does (:class:`cexarb.gcpolicy.SafePointGc`: the
    automatic collector off, a collection when CPython's thresholds say one is due at the safe
    point after each order's reply); ccxt runs with CPython's automatic collector, as ccxt users do.
    """
    gc.collect()
    gc.freeze()
    try:
        return await _drive_frames(host, frames)
    finally:
        gc.unfreeze()


async def _drive_frames(host: str, frames: int) -> np.ndarray:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        deadline = time.monotonic() + 30
        while True:
            async with session.get(f"http://{host}/_p5/subs") as resp:
                if (await resp.json())["subs"] == 1:
                    break
            if time.monotonic() > deadline:
                raise AssertionError("the client's depth subscription never came (or an old one stayed)")
            await asyncio.sleep(0.05)
        spec = {"n": frames, "warmup": WARMUP, "gap_ms": GAP_MS, "prime_timeout_s": 30}
        async with session.post(f"http://{host}/_p5/run", json=spec) as resp:
            body = await resp.json()
            assert resp.status == 200, body
    rows = np.asarray(body["rows"], dtype=np.int64)
    assert rows.shape == (frames, 3), (rows.shape, body.get("misses"))
    assert body["misses"] == 0, f"{body['misses']} frames got no order"
    return rows


def _with_handler(rows: np.ndarray, seen: dict[int, int]) -> np.ndarray:
    """``[sent, received, handler]`` ns: ``handler`` = when the client's strategy code saw the
    frame's book (``monotonic_ns`` in this process; 0 if not seen)."""
    handler = np.asarray([seen.get(int(u), 0) for u in rows[:, 0]], dtype=np.int64)
    return np.column_stack([rows[:, 1], rows[:, 2], handler])


async def _ours(host: str, busy_poll: bool = False, frames: int = N) -> np.ndarray:
    venue = GateSpot(
        ApiCredentials(KEY, SECRET, uid=str(UID)),
        rest_url=f"http://{host}",
        ws_url=f"ws://{host}/ws/v4/",
        symbols=["BTC_USDT"],
        backoff=Backoff(initial_s=0.05, max_s=0.3),
        # no client-side rate limiter, as ccxt runs with enableRateLimit False: Gate spot allows
        # 10 orders/s, far below one per frame (the simulator's limits are off)
        enforce_rate_limits=False,
        seed=1,
    )
    async with venue:
        inst = venue.instruments()[SPOT_KEY]
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[Any]] = set()
        last = [0]
        bad: list[Any] = []
        seen: dict[int, int] = {}
        clock = time.monotonic_ns

        # as cexarb.engine runs: no collection between frame and order, an arena reserve
        gc_policy = SafePointGc(arena_reserve_mib=16)

        def done(task: asyncio.Task[Any]) -> None:
            tasks.discard(task)
            if task.cancelled():
                return
            exc = task.exception()
            if exc is not None or task.result().status not in (OrderStatus.CANCELED, OrderStatus.FILLED):
                bad.append(exc or task.result())
            gc_policy.collect_if_due()  # the safe point: the order is out and answered

        def order_for(book: Any, u: int) -> OrderRequest:
            return OrderRequest.create(
                inst,
                Side.BUY,
                QTY,
                price_ticks=book.best_bid_ticks() - BELOW_TICKS,
                time_in_force=TimeInForce.IOC,
                client_order_id=f"p5-{u}",
            )

        def on_market(event: object) -> None:
            if type(event) is not BookUpdate:
                return
            now = clock()
            book = venue.book(SPOT_KEY)
            u = book.last_update_id
            if u is None or u <= last[0]:
                return
            last[0] = u
            seen[u] = now
            task = loop.create_task(venue.place_order(order_for(book, u)))
            tasks.add(task)
            task.add_done_callback(done)

        def warm() -> None:
            """The frame's parse and on_market's path, all but the book change and the send
            (cexarb.hotpath)."""
            venue.warm_market()
            book = venue.book(SPOT_KEY)
            if book.best_bid_ticks() is not None:
                venue.warm_order(order_for(book, last[0]))

        venue.subscribe_market(on_market)
        poll = BusyPoll(warm_interval_us=WARM_US)
        if busy_poll:
            poll.add_warmer(warm)
            poll.start()
        try:
            with gc_policy:
                rows = await _drive(host, frames)
        finally:
            poll.stop()
        if busy_poll:
            assert poll.warm_errors == 0, f"{poll.warm_errors} warm-ups failed"
        if tasks:
            await asyncio.wait(list(tasks), timeout=5)
        assert not bad, f"{len(bad)} orders failed, first: {bad[0]!r}"
        return _with_handler(rows, seen)


async def _ccxt(host: str, frames: int = N) -> np.ndarray:
    import ccxt.pro as ccxtpro

    ex = ccxtpro.gate({"apiKey": KEY, "secret": SECRET, "enableRateLimit": False, "timeout": 10_000})

    def point(obj: Any, url: str) -> Any:
        if isinstance(obj, dict):
            return {k: point(v, url) for k, v in obj.items()}
        return url if isinstance(obj, str) else obj

    ex.urls["api"] = {
        "public": point(ex.urls["api"]["public"], f"http://{host}/api/v4"),
        "private": point(ex.urls["api"]["private"], f"http://{host}/api/v4"),
        "spot": f"ws://{host}/ws/v4/",
        "swap": {"usdt": f"ws://{host}/v4/ws/usdt", "btc": f"ws://{host}/v4/ws/btc"},
    }
    bad: list[Any] = []
    seen: dict[int, int] = {}
    clock = time.monotonic_ns

    async def trade() -> None:
        while True:
            book = await ex.watch_order_book("BTC/USDT")
            now = clock()
            u = book["nonce"]
            seen[u] = now
            price = book["bids"][0][0] - BELOW_TICKS * 0.1
            order = await ex.create_order(
                "BTC/USDT", "limit", "buy", QTY, price, {"timeInForce": "IOC", "text": f"t-p5-{u}"}
            )
            if order.get("status") not in ("canceled", "closed"):
                bad.append(order)

    try:
        await asyncio.wait_for(ex.load_markets(), 30)
        task = asyncio.get_running_loop().create_task(trade())
        try:
            drive = asyncio.ensure_future(_drive(host, frames))
            await asyncio.wait([drive, task], return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                drive.cancel()
                task.result()  # raises what stopped ccxt
                raise AssertionError("the ccxt loop ended")
            rows = drive.result()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # ccxt's own errors on close
                await task
        assert not bad, f"{len(bad)} ccxt orders not done, first: {bad[0]!r}"
        return _with_handler(rows, seen)
    finally:
        await ex.close()


async def _ours_busy_poll(host: str) -> np.ndarray:
    return await _ours(host, busy_poll=True)


CLIENTS: dict[str, Callable[[str], Awaitable[np.ndarray]]] = {
    "ours": _ours,
    "ours-busy-poll": _ours_busy_poll,
    "ccxt": _ccxt,
}


@pytest.mark.parametrize("client", list(CLIENTS))
def test_p5_tick_to_order(benchmark: Any, sim: str, client: str) -> None:
    if client == "ccxt":
        pytest.importorskip("ccxt.pro")
    benchmark.group = GROUP
    out: dict[str, np.ndarray] = {}

    def batch() -> None:
        with asyncio.Runner(loop_factory=LOOP_FACTORY) as runner:
            out["rows"] = runner.run(CLIENTS[client](sim))

    benchmark.pedantic(batch, rounds=1, iterations=1, warmup_rounds=0)
    rows = out["rows"]
    lat = rows[:, 1] - rows[:, 0]
    assert (lat > 0).all()
    assert (rows[:, 2] > 0).all(), "a measured frame never reached the client's handler"
    to_handler = rows[:, 2] - rows[:, 0]
    RESULTS[client] = lat
    HANDLER[client] = to_handler
    benchmark.extra_info.update(
        {
            "loop": LOOP_NAME,
            "frames": N,
            "gap_ms": GAP_MS,
            "p50_us": float(np.percentile(lat, 50)) / 1e3,
            "p99_us": float(np.percentile(lat, 99)) / 1e3,
            "max_us": float(lat.max()) / 1e3,
            "to_handler_p50_us": float(np.percentile(to_handler, 50)) / 1e3,
            "to_handler_p99_us": float(np.percentile(to_handler, 99)) / 1e3,
        }
    )


def test_p5_tick_to_order_summary(benchmark: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """p50/p99 of the clients measured above and the ccxt/ours ratio."""
    benchmark.group = GROUP + " summary"
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    if "ours" not in RESULTS:
        pytest.skip("run the P5 tick-to-order benchmarks first (same module)")

    def pct(lat: np.ndarray, q: float) -> float:
        return float(np.percentile(lat, q)) / 1e3

    lines = [
        (
            f"P5 depth frame sent -> signed order received, Gate spot over loopback "
            f"(simulator in its own process; clients on {LOOP_NAME}; {N} frames each, one in flight)"
        )
    ]
    for name, lat in RESULTS.items():
        lines.append(
            f"  {name:<14} p50 {pct(lat, 50):7.1f} µs  p99 {pct(lat, 99):7.1f} µs  "
            f"min {lat.min() / 1e3:6.1f} µs  max {lat.max() / 1e3:8.1f} µs"
        )
    lines.append("  of which frame sent -> the client's handler / watch_order_book returns (client clock):")
    for name, lat in HANDLER.items():
        lines.append(f"  {name:<14} p50 {pct(lat, 50):7.1f} µs  p99 {pct(lat, 99):7.1f} µs")
    for name in ("ours", "ours-busy-poll"):
        if name not in RESULTS:
            continue
        ours = RESULTS[name]
        met = "met" if pct(ours, 50) <= 100 and pct(ours, 99) <= 300 else "NOT met"
        line = f"  {name} goal p50 <= 100 µs, p99 <= 300 µs: {met}"
        if "ccxt" in RESULTS:
            r50 = pct(RESULTS["ccxt"], 50) / pct(ours, 50)
            r99 = pct(RESULTS["ccxt"], 99) / pct(ours, 99)
            line += f"; ccxt / {name}: {r50:.1f}x at p50, {r99:.1f}x at p99 (goal >= 4x: {'met' if r50 >= 4 else 'NOT met'})"
        lines.append(line)
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    benchmark.extra_info["summary"] = lines


ROUNDS = int(os.environ.get("CEXARB_P5_ROUNDS", "6"))
ROUND_FRAMES = int(os.environ.get("CEXARB_P5_ROUND_FRAMES", "400"))


def test_p5_interleaved(benchmark: Any, sim: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``ours``, ``ours-busy-poll`` and ``ccxt`` in interleaved rounds (``CEXARB_P5_ROUNDS``,
    default 6, of ``CEXARB_P5_ROUND_FRAMES``, default 400, measured frames each after the usual
    warm-up; the order reverses every round), so a drift of this host's speed between the
    clients' runs (the separate runs above have given ccxt/ours from 2.6x to 5x on this VM) falls
    on all of them. Reports ccxt/x of the p50s round by round, their median, and p50/p99 over all
    rounds."""
    pytest.importorskip("ccxt.pro")
    benchmark.group = GROUP + " interleaved"
    names = ("ours", "ours-busy-poll", "ccxt")
    per: dict[str, list[np.ndarray]] = {name: [] for name in names}
    runs: dict[str, Callable[[str], Awaitable[np.ndarray]]] = {
        "ours": lambda host: _ours(host, frames=ROUND_FRAMES),
        "ours-busy-poll": lambda host: _ours(host, busy_poll=True, frames=ROUND_FRAMES),
        "ccxt": lambda host: _ccxt(host, frames=ROUND_FRAMES),
    }

    def rounds() -> None:
        for r in range(ROUNDS):
            for name in names if r % 2 == 0 else names[::-1]:
                with asyncio.Runner(loop_factory=LOOP_FACTORY) as runner:
                    rows = runner.run(runs[name](sim))
                lat = rows[:, 1] - rows[:, 0]
                assert (lat > 0).all()
                per[name].append(lat)

    benchmark.pedantic(rounds, rounds=1, iterations=1, warmup_rounds=0)

    def pct(lat: np.ndarray, q: float) -> float:
        return float(np.percentile(lat, q)) / 1e3

    pooled = {name: np.concatenate(lats) for name, lats in per.items()}
    lines = [f"P5 interleaved: {ROUNDS} rounds x {ROUND_FRAMES} frames per client, order reversed every round"]
    for name, lat in pooled.items():
        lines.append(f"  {name:<14} all rounds: p50 {pct(lat, 50):7.1f} µs  p99 {pct(lat, 99):7.1f} µs")
    medians: dict[str, float] = {}
    for name in ("ours", "ours-busy-poll"):
        ratios = [pct(c, 50) / pct(o, 50) for o, c in zip(per[name], per["ccxt"], strict=True)]
        medians[name] = median = float(np.median(ratios))
        lines.append(
            f"  ccxt/{name} p50 by round: " + ", ".join(f"{r:.1f}x" for r in ratios)
            + f"; median {median:.1f}x (goal >= 4x: {'met' if median >= 4 else 'NOT met'})"
        )
        benchmark.extra_info[f"ratios_p50_{name}"] = ratios
    benchmark.extra_info.update(
        {
            "rounds": ROUNDS,
            "round_frames": ROUND_FRAMES,
            **{f"median_ratio_p50_{name}": m for name, m in medians.items()},
            **{f"{name}_p50_us": pct(lat, 50) for name, lat in pooled.items()},
            **{f"{name}_p99_us": pct(lat, 99) for name, lat in pooled.items()},
        }
    )
    with capsys.disabled():
        print("\n" + "\n".join(lines))
