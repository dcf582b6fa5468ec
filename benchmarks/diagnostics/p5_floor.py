"""P5 floor: the least a Python client on these transports takes from depth frame to order, on
this machine, next to ours and ccxt.

The P5 simulator and driver of ``benchmarks/test_p5_tick_to_order_loopback.py``, and three
clients run in alternating rounds (the host's speed drifts between rounds on this VM):

* ``floor``: no framework. The market WebSocket is aiohttp's, with frames handed over inside
  ``data_received`` as :class:`cexarb.venues.ws.WsClient` does (the same aiohttp hook, a dozen
  lines here); the handler finds ``"u":`` in the text (no JSON parse, no book), formats the IOC
  body at a price fixed at start (100 USDT under the REST best bid: the driver's frames change
  the book 10 levels deep only), signs it with the standard library's ``hmac`` (Gate v4:
  HMAC-SHA512 over method, path, query, SHA-512 of the body and the timestamp), and writes the
  request on a keep-alive ``asyncio`` connection it owns. Replies are drained unparsed.
* ``ours``: the bench's client (:class:`cexarb.venues.gateio.spot.GateSpot`: Rust depth parse,
  book manager, Rust book, ``OrderRequest``, order-entry client).
* ``ccxt``: the bench's ccxt 4.5.90 client (skipped when not installed).

``floor`` is what the kernel, the two wakes and the interpreter cost here with next to no work;
``ours - floor`` is what the framework adds. Prints p50/p90/p99 of frame sent -> order
received (µs, the simulator's clock) per client over all rounds, and ccxt/x at p50 by round.

Run: ``.venv/bin/python benchmarks/diagnostics/p5_floor.py`` (``ROUNDS`` default 4,
``FRAMES`` per round default 400; ``CCXT=0`` leaves ccxt out).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import test_p5_tick_to_order_loopback as p5
import uvloop
from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader

ORDER_PATH = "/api/v4/spot/orders"
TEXT = aiohttp.WSMsgType.TEXT


class _Drain(asyncio.Protocol):
    """The order connection: replies are counted (one per ``HTTP/1.1 `` status line) and dropped."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.replies = 0
        self.bad = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.replies += data.count(b"HTTP/1.1 ")
        self.bad += data.count(b"HTTP/1.1 4") + data.count(b"HTTP/1.1 5")


async def _floor(host: str, frames: int) -> np.ndarray:
    hostname, port = host.split(":")
    secret = p5.SECRET.encode()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{host}/api/v4/spot/order_book", params={"currency_pair": "BTC_USDT"}) as r:
            best_bid = float((await r.json())["bids"][0][0])
        price = f"{best_bid - p5.BELOW_TICKS * 0.1:.1f}"
        loop = asyncio.get_running_loop()
        transport, drain = await loop.create_connection(_Drain, hostname, int(port))
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = f"POST {ORDER_PATH} HTTP/1.1\r\nHost: {host}\r\nKEY: {p5.KEY}\r\n".encode()
        last = [0]

        def on_frame(text: str) -> None:
            i = text.find('"u":')
            if i < 0 or "order_book_update" not in text:
                return
            j = i + 4
            k = j
            while text[k].isdigit():
                k += 1
            u = int(text[j:k])
            if u <= last[0]:
                return
            last[0] = u
            body = (
                f'{{"currency_pair":"BTC_USDT","side":"buy","amount":"{p5.QTY}","price":"{price}",'
                f'"time_in_force":"ioc","text":"t-p5-{u}"}}'
            ).encode()
            ts = b"%d" % int(time.time())
            payload = b"POST\n%s\n\n%s\n%s" % (ORDER_PATH.encode(), hashlib.sha512(body).hexdigest().encode(), ts)
            sign = hmac.new(secret, payload, hashlib.sha512).hexdigest().encode()
            transport.write(
                b"%sTimestamp: %s\r\nSIGN: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (head, ts, sign, len(body), body)
            )

        class Direct(WebSocketDataQueue):  # frames handed over inside data_received
            def feed_data(self, data: Any, size: int) -> None:
                if data[0] is TEXT and not self._buffer:
                    on_frame(data[1])
                    return
                super().feed_data(data, size)

        ws = await session.ws_connect(f"ws://{host}/ws/v4/")
        proto = ws._conn.protocol  # type: ignore[union-attr]
        queue = Direct(proto, 2**16, loop=loop)
        parser = WebSocketReader(queue, 4 * 2**20, compress=False, decode_text=True)
        proto.set_parser(parser, queue)
        ws._reader, ws._parser = queue, parser  # as cexarb.venues.ws.WsClient._install_direct does
        await ws.send_str(
            json.dumps(
                {
                    "time": int(time.time()),
                    "channel": "spot.order_book_update",
                    "event": "subscribe",
                    "payload": ["BTC_USDT", "100ms"],
                }
            )
        )
        try:
            rows = await p5._drive(host, frames)
        finally:
            await ws.close()
            transport.close()
        assert drain.bad == 0, f"{drain.bad} orders refused"
        return rows[:, 1:]  # [sent, received], as the bench's clients return first


async def _ours(host: str, frames: int) -> np.ndarray:
    return await p5._ours(host, frames=frames)


async def _ccxt(host: str, frames: int) -> np.ndarray:
    return await p5._ccxt(host, frames=frames)


def main() -> None:
    rounds = int(os.environ.get("ROUNDS", "4"))
    frames = int(os.environ.get("FRAMES", "400"))
    clients: dict[str, Any] = {"floor": _floor, "ours": _ours}
    if os.environ.get("CCXT", "1") == "1":
        try:
            import ccxt.pro  # noqa: F401

            clients["ccxt"] = _ccxt
        except ImportError:
            print("ccxt not installed: floor and ours only")
    folder = p5.data_root() / p5.BINANCE_SUBDIR
    proc = subprocess.Popen(
        [sys.executable, str(p5.HELPER), str(folder), p5.KEY, p5.SECRET, str(p5.UID)], stdout=subprocess.PIPE, text=True
    )
    lat: dict[str, list[np.ndarray]] = {name: [] for name in clients}
    try:
        assert proc.stdout is not None
        host = f"127.0.0.1:{proc.stdout.readline().strip()}"
        names = list(clients)
        for r in range(rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    rows = runner.run(clients[name](host, frames))
                lat[name].append((rows[:, 1] - rows[:, 0]) / 1e3)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"P5 floor: {rounds} rounds x {frames} frames per client, alternating; frame sent -> order received, µs")
    for name, runs in lat.items():
        a = np.concatenate(runs)
        p50, p90, p99 = np.percentile(a, [50, 90, 99])
        print(f"  {name:<6} p50 {p50:7.1f}  p90 {p90:7.1f}  p99 {p99:7.1f}  (p50 by round: "
              + ", ".join(f"{np.median(x):.0f}" for x in runs) + ")")
    ours_floor = [np.median(o) / np.median(f) for o, f in zip(lat["ours"], lat["floor"], strict=True)]
    print("  ours/floor p50 by round: " + ", ".join(f"{v:.2f}" for v in ours_floor) + f"; median {np.median(ours_floor):.2f}")
    if "ccxt" in lat:
        for name in ("floor", "ours"):
            ratios = [np.median(c) / np.median(x) for c, x in zip(lat["ccxt"], lat[name], strict=True)]
            print(f"  ccxt/{name} p50 by round: " + ", ".join(f"{v:.1f}x" for v in ratios)
                  + f"; median {np.median(ratios):.1f}x")


if __name__ == "__main__":
    main()
