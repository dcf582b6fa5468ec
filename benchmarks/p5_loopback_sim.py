"""Test-only helper of ``test_p5_tick_to_order_loopback.py``: the loopback simulator
(:class:`~cexarb.venues.sim.server.SimServer`, rate limits off, market replay paused) in its own
process, plus a small driver that pushes one Gate spot depth frame on demand and stamps when it
is sent and when the order it provokes arrives.

Run as a script: ``python benchmarks/p5_loopback_sim.py DATA_DIR API_KEY API_SECRET UID``; it
prints its port when ready. Nothing here edits the shared simulator; the hooks are added to this
process only:

* ``POST /_p5/run`` (JSON ``{"n", "warmup", "gap_ms", "prime_timeout_s"}``): for each frame, the
  ``gateio-spot`` book changes 10 levels away from the top (5 bids, 5 asks, quantities nudged by
  +/- 0.001 BTC, so no BBO / ``spot.book_ticker`` push and no crossing) through the simulator's
  own ``VenueBook._apply`` (ids stay consistent with the REST ``with_id`` snapshot); every
  ``spot.order_book_update`` (our connector) / ``spot.obu`` (ccxt 4.5.90's ``watch_order_book``)
  subscription's 100 ms / 20 ms buffer is flushed at once, producing the
  simulator's own frame, which is written straight to the socket with ``time.monotonic_ns()``
  taken just before the write. The driver then waits for the order POST whose Gate ``text`` ends
  in ``-<u>`` (``u`` = the frame's last update id), records it, waits ``gap_ms`` (the client
  finishes with the reply and the private pushes) and sends the next frame. The answer is the
  ``[u, sent_ns, received_ns]`` rows of the measured frames (warm-up excluded).
* "received" = ``time.monotonic_ns()`` of the last ``data_received`` of the request's TCP
  connection before its body is complete (aiohttp's ``RequestHandler.data_received`` wrapped
  in this process), i.e. when the last byte of the signed order request arrived, before any HTTP
  framework work. Both stamps are taken in this process (``CLOCK_MONOTONIC``).
* ``GET /_p5/subs``: how many depth subscriptions are live (the client waits for its own).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web, web_protocol
from cexarb.venues.sim.server import _CLOSE, AccountSpec, SimServer

ORDER_PATH = "/api/v4/spot/orders"
SPOT_KEY = "gateio-spot:BTC_USDT"
NUDGE = 0.001


#: id(RequestHandler) -> monotonic ns of its latest TCP read (the handler class has __slots__)
RX_NS: dict[int, int] = {}


def _patch_receive_stamp() -> None:
    """Stamp the arrival of every TCP read of the HTTP server (this process only)."""
    original = web_protocol.RequestHandler.data_received
    clock = time.monotonic_ns
    rx = RX_NS

    def data_received(self: Any, data: bytes) -> None:
        rx[id(self)] = clock()
        original(self, data)

    web_protocol.RequestHandler.data_received = data_received  # type: ignore[method-assign]


class Driver:
    def __init__(self, server: SimServer) -> None:
        self.server = server
        self.book = server.market.books[SPOT_KEY]
        self.expect: str | None = None  # "-<u>" suffix of the awaited order's text
        self.waiter: asyncio.Future[int] | None = None
        self.orders_seen = 0
        self.flip = 0

    # ---- hooks ----------------------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method == "POST" and request.path == ORDER_PATH:
            body = await request.read()  # cached: the handler reads it again
            received = RX_NS.get(id(request.protocol), 0)
            self.orders_seen += 1
            waiter = self.waiter
            if waiter is not None and not waiter.done() and self.expect is not None:
                try:
                    text = msgspec.json.decode(body).get("text") or ""
                except msgspec.DecodeError:
                    text = ""
                if text.endswith(self.expect):
                    waiter.set_result(received)
        return await handler(request)

    def subs(self) -> list[Any]:
        out = []
        for session in list(self.server.gate.sessions):
            if session.venue != "gateio-spot" or session.conn.closed:
                continue
            for (channel, _item), sub in session.book_subs.items():
                if channel in ("spot.order_book_update", "spot.obu"):  # ccxt 4.5.90 watches spot.obu
                    out.append(sub)
        return out

    # ---- one frame ----------------------------------------------------------------------------

    async def push(self) -> tuple[int, int]:
        """Change the book, send the depth frame now; returns (u, sent_ns)."""
        bids, asks = self.book.top(6)
        d = NUDGE if self.flip % 2 == 0 else -NUDGE
        self.flip += 1
        change = self.book._apply(
            [(t, round(q + d, 8)) for t, q in bids[1:6]],
            [(t, round(q + d, 8)) for t, q in asks[1:6]],
            time.time_ns() // 1_000_000,
        )
        assert change is not None
        self.expect = f"-{change.last_id}"  # the order this frame provokes carries its id
        sent = 0
        for sub in self.subs():
            sub.buffer.cancel()
            sub.buffer.flush()  # the simulator's own frame, queued on the connection
            conn = sub.s.conn
            frames = []
            while not conn.queue.empty():
                item = conn.queue.get_nowait()
                if item[0] is _CLOSE:
                    conn.queue.put_nowait(item)
                    break
                frames.append(item)
            for i, (frame, binary) in enumerate(frames):
                if i == len(frames) - 1:
                    sent = time.monotonic_ns()
                if binary:
                    await conn.ws.send_bytes(frame if isinstance(frame, bytes) else frame.encode())
                else:
                    await conn.ws.send_str(frame if isinstance(frame, str) else frame.decode())
        return change.last_id, sent

    async def one(self, timeout_s: float) -> tuple[int, int, int] | None:
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        u, sent = await self.push()
        try:
            received = await asyncio.wait_for(self.waiter, timeout_s)
        except TimeoutError:
            return None
        finally:
            self.expect = None
            self.waiter = None
        return u, sent, received

    # ---- admin ----------------------------------------------------------------------------------

    async def run(self, request: web.Request) -> web.Response:
        spec = await request.json()
        n, warmup = int(spec["n"]), int(spec.get("warmup", 200))
        gap_s = float(spec.get("gap_ms", 3.0)) / 1e3
        prime_deadline = time.monotonic() + float(spec.get("prime_timeout_s", 30.0))
        if not self.subs():
            return web.json_response({"error": "no spot depth subscription"}, status=409)
        # prime: until the client is in sync and answers a frame with an order
        primes = 0
        while await self.one(0.2) is None:
            primes += 1
            if time.monotonic() > prime_deadline:
                return web.json_response({"error": f"no order after {primes} frames"}, status=504)
        await asyncio.sleep(gap_s)
        rows: list[tuple[int, int, int]] = []
        misses = 0
        for i in range(warmup + n):
            got = await self.one(2.0)
            if got is None:
                misses += 1
                if misses > 5:
                    return web.json_response({"error": f"{misses} frames without an order"}, status=504)
            elif i >= warmup:
                rows.append(got)
            await asyncio.sleep(gap_s)
        return web.json_response({"rows": rows, "primes": primes, "misses": misses, "orders_seen": self.orders_seen})

    async def subs_count(self, request: web.Request) -> web.Response:
        return web.json_response({"subs": len(self.subs())})


async def main(data_dir: str, key: str, secret: str, uid: int) -> None:
    _patch_receive_stamp()
    server = SimServer(Path(data_dir), [AccountSpec(api_key=key, api_secret=secret, uid=uid)], rate_limits=False)
    driver = Driver(server)
    server.app.middlewares.append(driver.middleware)
    server.app.router.add_post("/_p5/run", driver.run)
    server.app.router.add_get("/_p5/subs", driver.subs_count)
    await server.start()
    book = server.market.books[SPOT_KEY]
    deadline = time.monotonic() + 30
    while len(book.bids) < 8 or len(book.asks) < 8:  # the recording's first snapshot is in
        if time.monotonic() > deadline:
            raise RuntimeError("gateio-spot book stayed empty")
        await asyncio.sleep(0.05)
    server.market.paused = True  # from here on only the driver changes the book
    print(server.port, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


if __name__ == "__main__":
    args = sys.argv[1:]
    try:
        import uvloop

        uvloop.run(main(args[0], args[1], args[2], int(args[3])))
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(main(args[0], args[1], args[2], int(args[3])))
