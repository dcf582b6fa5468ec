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
  simulator's own frame, which is written straight to the socket (not through the connection's
  queue and writer task; its WebSocket framing built first, the same bytes aiohttp's writer
  sends) with ``time.monotonic_ns()`` taken just before the write (the connection's write
  buffer high-water mark is 0, so uvloop writes inside the call instead of at the end of the
  loop's batch of callbacks). The
  driver then waits for the order POST whose Gate ``text`` ends in ``-<u>`` (``u`` = the
  frame's last update id), records it, waits ``gap_ms`` (the client finishes with the reply and
  the private pushes) and sends the next frame. The answer is the
  ``[u, sent_ns, received_ns]`` rows of the measured frames (warm-up excluded).
* "received" = ``time.monotonic_ns()`` of the last ``data_received`` with bytes of the request's
  TCP connection before its body is complete (aiohttp's ``RequestHandler.data_received`` wrapped
  in this process; its own ``data_received(b"")`` calls on resuming reads are skipped), i.e.
  when the last byte of the signed order request arrived, before any HTTP framework work. Both
  stamps are taken in this process (``CLOCK_MONOTONIC``).
* ``GET /_p5/subs``: how many depth subscriptions are live (the client waits for its own).
"""

from __future__ import annotations

import asyncio
import struct
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
    """Stamp the arrival of every TCP read of the HTTP server (this process only).

    Only reads that carry bytes count: aiohttp's server calls ``data_received(b"")`` itself when
    it resumes reading after dispatching a request, hundreds of µs after the request arrived.
    """
    original = web_protocol.RequestHandler.data_received
    clock = time.monotonic_ns
    rx = RX_NS

    def data_received(self: Any, data: bytes) -> None:
        if data:  # aiohttp also calls it with b"" when it resumes reading: not an arrival
            rx[id(self)] = clock()
        original(self, data)

    web_protocol.RequestHandler.data_received = data_received  # type: ignore[method-assign]


def _write_at_once(ws: web.WebSocketResponse) -> None:
    """Make the frame's ``send_str`` reach the socket inside the call: uvloop otherwise queues a
    small write until the end of the current batch of callbacks, so the ``sent`` stamp would
    precede the socket write by the rest of the driver's step (both clients alike). aiohttp keeps
    the transport on its writer (no public accessor); without one the stamp is as before."""
    transport = getattr(getattr(ws, "_writer", None), "transport", None)
    if transport is not None and transport.get_write_buffer_limits() != (0, 0):
        transport.set_write_buffer_limits(high=0)


def _raw_text_frame(ws: web.WebSocketResponse, payload: bytes) -> tuple[Any, bytes] | None:
    """(transport, bytes) of an unmasked, uncompressed server text frame of ``payload`` -- the
    bytes aiohttp's writer would produce -- so ``sent`` is stamped right before the socket write
    rather than before aiohttp's framing; None (use ``send_str``) when compression was negotiated
    or the transport is not reachable."""
    writer = getattr(ws, "_writer", None)
    transport = getattr(writer, "transport", None)
    if transport is None or ws.compress or getattr(writer, "use_mask", True) or transport.is_closing():
        return None
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x81, n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x81, 126, n)
    else:
        header = struct.pack("!BBQ", 0x81, 127, n)
    return transport, header + payload


def _expire(waiter: asyncio.Future[int]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class Driver:
    def __init__(self, server: SimServer) -> None:
        self.server = server
        self.book = server.market.books[SPOT_KEY]
        self.expect: str | None = None  # "-<u>" suffix of the awaited order's text
        self.waiter: asyncio.Future[int] | None = None
        self.orders_seen = 0
        self.raw_frames = 0  # frames written by _raw_text_frame (the rest went through send_str)
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
            conn = sub.s.conn
            queue = conn.queue
            frames: list[tuple[bytes | str, bool]] = []
            while not queue.empty():  # frames queued before (none, normally) go first
                item = queue.get_nowait()
                if item[0] is _CLOSE:
                    queue.put_nowait(item)
                    break
                frames.append(item)
            # the simulator's own frame, taken from the connection's send instead of its queue:
            # queuing it would wake the connection's writer task, which would then run after the
            # send (to find the queue empty) -- server work between the frame and the order
            queue.put_nowait = frames.append  # type: ignore[method-assign]
            try:
                sub.buffer.flush()
            finally:
                del queue.put_nowait
            _write_at_once(conn.ws)
            for i, (frame, binary) in enumerate(frames):
                last = i == len(frames) - 1
                payload = frame if isinstance(frame, bytes) else frame.encode()
                if last and not binary:
                    raw = _raw_text_frame(conn.ws, payload)
                    if raw is not None:  # the frame's bytes are ready: stamp, then write them
                        self.raw_frames += 1
                        transport, data = raw
                        sent = time.monotonic_ns()
                        transport.write(data)
                        continue
                if last:
                    sent = time.monotonic_ns()
                if binary:
                    await conn.ws.send_bytes(payload)
                else:
                    await conn.ws.send_str(payload.decode())
        return change.last_id, sent

    async def one(self, timeout_s: float) -> tuple[int, int, int] | None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[int] = loop.create_future()
        self.waiter = waiter
        # the deadline is armed before the frame goes out: after the send the server only awaits
        timer = loop.call_later(timeout_s, _expire, waiter)
        try:
            u, sent = await self.push()
            received = await waiter
        except TimeoutError:
            return None
        finally:
            timer.cancel()
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
        return web.json_response(
            {"rows": rows, "primes": primes, "misses": misses, "orders_seen": self.orders_seen, "raw_frames": self.raw_frames}
        )

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
