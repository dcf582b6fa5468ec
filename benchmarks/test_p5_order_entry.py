"""P5: a signed order POST round trip over loopback -- our order-entry transport vs aiohttp vs ccxt.

A loopback aiohttp server (its own process, uvloop when installed) answers MEXC's
``POST /api/v3/order`` after checking the HMAC signature and timestamp exactly as MEXC does
(:func:`cexarb.venues.mexc.signing.verify`), with MEXC's order-ack JSON. One sample is the time
from building and signing the request (fresh timestamp, new client order id) to having the
decoded answer, measured inside the client's event loop (uvloop when installed) with
``perf_counter_ns``. Clients, in the same run against the same server:

* ``ours``: :class:`cexarb.venues.order_entry.OrderEntryClient` (persistent keep-alive
  connection on an asyncio transport, httptools parser) + :class:`~cexarb.venues.rest.MexcAuth`;
* ``aiohttp``: ``ClientSession.post`` with the same signing and decoding (what the REST client
  uses for everything but orders);
* ``ccxt``: ``ccxt.async_support.mexc.create_order`` (skipped when ccxt is not installed; its
  markets are loaded from the same server, its own rate limiter off).

``CEXARB_P5_N`` samples per client (default 2,000) after 200 warm-up requests. The pytest-benchmark
row of each client is the whole batch; p50/p99 per request are in ``extra_info`` and printed as a
table with the ratios at the end. Goal (issue 4): p50 <= 100 µs and p99 <= 300 µs, >= 4x faster
than ccxt.

Run: ``.venv/bin/python -m pytest benchmarks/test_p5_order_entry.py --benchmark-only -s``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import numpy as np
import pytest
from cexarb.venues.mexc import codec as mx
from cexarb.venues.mexc.signing import MexcSigner
from cexarb.venues.order_entry import OrderEntryClient
from cexarb.venues.rest import MexcAuth, mexc_error
from cexarb.venues.secrets import ApiCredentials
from yarl import URL

try:
    import uvloop

    LOOP_FACTORY: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    LOOP_NAME = "uvloop"
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    LOOP_FACTORY = None
    LOOP_NAME = "asyncio"

N = int(os.environ.get("CEXARB_P5_N", "2000"))
WARMUP = 200
KEY, SECRET = "mx0aBYs33eIilxBWC5", "45d0b3c26f2644f19bfb98b07741b2f5"
PATH = "/api/v3/order"
GROUP = "P5-order-entry"
RESULTS: dict[tuple[str, str], np.ndarray] = {}

SERVER = r"""
import asyncio, sys, time
from aiohttp import web
from cexarb.venues.mexc.signing import MexcAuthError, verify
from cexarb.venues.secrets import Secret

KEY, SECRET = Secret(sys.argv[1]), Secret(sys.argv[2])
count = 0
SYMBOL = {
    "symbol": "BTCUSDT", "status": "1", "baseAsset": "BTC", "baseAssetPrecision": 6, "quoteAsset": "USDT",
    "quotePrecision": 2, "quoteAssetPrecision": 2, "baseCommissionPrecision": 6, "quoteCommissionPrecision": 2,
    "orderTypes": ["LIMIT", "MARKET", "LIMIT_MAKER"], "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
    "quoteAmountPrecision": "1", "baseSizePrecision": "0.000001", "permissions": ["SPOT"], "filters": [],
    "maxQuoteAmount": "2000000", "makerCommission": "0", "takerCommission": "0.0005",
    "quoteAmountPrecisionMarket": "1", "maxQuoteAmountMarket": "100000", "fullName": "Bitcoin",
    "tradeSideType": "1", "st": False,
}


async def order(request):
    global count
    received_ns = time.perf_counter_ns()  # CLOCK_MONOTONIC: comparable with the client process
    try:
        params = verify(SECRET, request.rel_url.raw_query_string, (await request.read()).decode(),
                        server_time_ms=time.time_ns() // 1_000_000,
                        api_key_header=request.headers.get("X-MEXC-APIKEY"), expected_key=KEY).params
    except MexcAuthError as exc:
        return web.json_response({"code": exc.code, "msg": exc.msg}, status=exc.http_status)
    count += 1
    return web.json_response({
        "symbol": params["symbol"], "orderId": f"C02__{count}", "orderListId": -1, "price": params.get("price"),
        "origQty": params.get("quantity"), "type": params["type"], "side": params["side"],
        "transactTime": time.time_ns() // 1_000_000,
    }, headers={"X-Recv-Ns": str(received_ns)})


async def exchange_info(request):
    return web.json_response({"timezone": "CST", "serverTime": time.time_ns() // 1_000_000, "symbols": [SYMBOL]})


async def stats(request):
    return web.json_response({"orders": count + raw_count})


ACK = (b'{"symbol":"BTCUSDT","orderId":"C02__raw","orderListId":-1,"price":"60000.5","origQty":"0.001",'
       b'"type":"LIMIT","side":"BUY","transactTime":1700000000000}')
raw_count = 0


class RawHttp(asyncio.Protocol):
    # A bare HTTP/1.1 responder: stamps the time the request's bytes arrive (before any HTTP
    # framework work), answers a fixed ack; no signature check. Isolates the client's own cost.

    def connection_made(self, transport):
        self.transport = transport
        self.buf = bytearray()

    def data_received(self, data):
        global raw_count
        now = time.perf_counter_ns()
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in bytes(self.buf[:end]).split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if len(self.buf) < end + 4 + length:
                return
            del self.buf[: end + 4 + length]
            raw_count += 1
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Recv-Ns: %d\r\nContent-Length: %d\r\n\r\n%s"
                % (now, len(ACK), ACK)
            )


async def main():
    loop = asyncio.get_running_loop()
    raw = await loop.create_server(RawHttp, "127.0.0.1", 0)
    app = web.Application()
    app.router.add_post("/api/v3/order", order)
    app.router.add_get("/api/v3/exchangeInfo", exchange_info)
    app.router.add_get("/stats", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], raw.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, KEY, SECRET], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the server prints its ports when ready
        ports = line.split()
        if len(ports) != 2 or not all(p.isdigit() for p in ports):
            proc.kill()
            raise RuntimeError(f"P5 server did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
        yield {"aiohttp": f"http://127.0.0.1:{ports[0]}", "raw": f"http://127.0.0.1:{ports[1]}"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


def _run(coro_fn: Callable[[], Awaitable[np.ndarray]]) -> np.ndarray:
    with asyncio.Runner(loop_factory=LOOP_FACTORY) as runner:
        return runner.run(coro_fn())  # type: ignore[arg-type]


async def _measure(send: Callable[[int], Awaitable[int]]) -> np.ndarray:
    """Rows (round trip ns, request-received-by-server ns): ``send`` returns the server's
    receive time (``X-Recv-Ns``, CLOCK_MONOTONIC like ``perf_counter_ns`` here)."""
    for i in range(WARMUP):
        await send(i)
    out = np.empty((N, 2), dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(N):
        start = clock()
        received = await send(WARMUP + i)
        out[i, 0] = clock() - start
        out[i, 1] = received - start
    return out


def _params(i: int) -> list[tuple[str, str]]:
    return [
        ("symbol", "BTCUSDT"),
        ("side", "BUY"),
        ("type", "LIMIT"),
        ("quantity", "0.001"),
        ("price", "60000.5"),
        ("newClientOrderId", f"p5-{i}"),
    ]


async def _ours(base: str, info_base: str) -> np.ndarray:
    auth = MexcAuth(MexcSigner(ApiCredentials(KEY, SECRET)))
    async with OrderEntryClient("mexc-spot", base, auth=auth, error_mapper=mexc_error) as oe:

        async def send(i: int) -> int:
            response = await oe.post(PATH, _params(i))
            ack = mx.decode_order_ack(response.body)
            assert ack.symbol == "BTCUSDT"
            return _recv_ns(response.raw_headers)

        samples = await _measure(send)
        assert oe.connects == 1  # one keep-alive connection for every request
        return samples


async def _aiohttp(base: str, info_base: str) -> np.ndarray:
    auth = MexcAuth(MexcSigner(ApiCredentials(KEY, SECRET)))
    timeout = aiohttp.ClientTimeout(total=5.0, sock_connect=2.0, sock_read=5.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def send(i: int) -> int:
            query, headers = auth.sign("POST", PATH, _params(i), b"")
            async with session.post(URL(f"{base}{PATH}?{query}", encoded=True), headers=headers) as response:
                body = await response.read()
                if response.status != 200:
                    raise mexc_error("mexc-spot", response.status, body, {})
                received = int(response.headers["X-Recv-Ns"])
            ack = mx.decode_order_ack(body)
            assert ack.symbol == "BTCUSDT"
            return received

        return await _measure(send)


async def _ccxt(base: str, info_base: str) -> np.ndarray:
    import ccxt.async_support as ccxt_async

    exchange = ccxt_async.mexc({"apiKey": KEY, "secret": SECRET, "enableRateLimit": False})
    exchange.urls["api"]["spot"] = {"public": info_base, "private": info_base}
    try:
        exchange.set_markets(await exchange.fetch_spot_markets())  # exchangeInfo from the aiohttp server
        exchange.urls["api"]["spot"] = {"public": base, "private": base}

        async def send(i: int) -> int:
            order = await exchange.create_order(
                "BTC/USDT", "limit", "buy", 0.001, 60000.5, {"newClientOrderId": f"p5-{i}"}
            )
            assert order["id"].startswith("C02__")
            headers = exchange.last_response_headers
            return int(headers.get("X-Recv-Ns") or headers.get("x-recv-ns"))

        return await _measure(send)
    finally:
        await exchange.close()


def _recv_ns(raw_headers: list[tuple[bytes, bytes]]) -> int:
    for name, value in raw_headers:
        if name.lower() == b"x-recv-ns":
            return int(value)
    raise AssertionError("no X-Recv-Ns header")


CLIENTS: dict[str, Callable[[str, str], Awaitable[np.ndarray]]] = {"ours": _ours, "aiohttp": _aiohttp, "ccxt": _ccxt}


async def _server_orders(base: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/stats") as response:
        return int((await response.json())["orders"])


@pytest.mark.parametrize("server_kind", ["aiohttp", "raw"])
@pytest.mark.parametrize("client", list(CLIENTS))
def test_p5_order_round_trip(benchmark: Any, servers: dict[str, str], client: str, server_kind: str) -> None:
    if client == "ccxt":
        pytest.importorskip("ccxt")
    benchmark.group = f"{GROUP} ({server_kind} server)"
    server = servers[server_kind]
    stats_url = servers["aiohttp"]
    before = _run(lambda: _server_orders(stats_url))  # type: ignore[arg-type,return-value]
    samples: dict[str, np.ndarray] = {}

    def batch() -> None:
        samples["ns"] = _run(lambda: CLIENTS[client](server, stats_url))

    benchmark.pedantic(batch, rounds=1, iterations=1, warmup_rounds=0)
    rows = samples["ns"]
    after = _run(lambda: _server_orders(stats_url))  # type: ignore[arg-type,return-value]
    assert after - before == N + WARMUP  # every signed order was verified and acked by the server
    assert (rows[:, 1] > 0).all() and (rows[:, 1] < rows[:, 0]).all()  # received within the round trip
    RESULTS[(server_kind, client)] = rows
    benchmark.extra_info.update(
        {
            "loop": LOOP_NAME,
            "n": N,
            "rtt_p50_us": float(np.percentile(rows[:, 0], 50)) / 1e3,
            "rtt_p99_us": float(np.percentile(rows[:, 0], 99)) / 1e3,
            "send_to_server_p50_us": float(np.percentile(rows[:, 1], 50)) / 1e3,
            "send_to_server_p99_us": float(np.percentile(rows[:, 1], 99)) / 1e3,
        }
    )


def test_p5_summary(benchmark: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """The p50/p99 table of the clients measured above, with ratios against ours."""
    benchmark.group = GROUP + " summary"
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    if ("aiohttp", "ours") not in RESULTS:
        pytest.skip("run the P5 round-trip benchmarks first (same module)")

    def pct(rows: np.ndarray, col: int, q: float) -> float:
        return float(np.percentile(rows[:, col], q))

    lines = [f"P5 signed MEXC order POST over loopback, server in its own process ({LOOP_NAME}, {N} requests each)"]
    for kind, label in (
        ("aiohttp", "aiohttp server (checks the signature)"),
        ("raw", "bare asyncio HTTP responder (stamps arrival before any framework work)"),
    ):
        if (kind, "ours") not in RESULTS:
            continue
        ours = RESULTS[(kind, "ours")]
        lines.append(f" {label}:")
        for col, title in ((0, "round trip (sign -> decoded answer)"), (1, "sign -> request at the server")):
            lines.append(f"  {title}:")
            for (k, name), rows in RESULTS.items():
                if k != kind:
                    continue
                p50, p99 = pct(rows, col, 50), pct(rows, col, 99)
                lines.append(
                    f"    {name:<8} p50 {p50 / 1e3:7.1f} µs  p99 {p99 / 1e3:7.1f} µs"
                    f"   = {p50 / pct(ours, col, 50):4.1f}x / {p99 / pct(ours, col, 99):4.1f}x ours"
                )
    for kind in ("aiohttp", "raw"):
        if (kind, "ours") in RESULTS:
            ours = RESULTS[(kind, "ours")]
            p50, p99 = pct(ours, 1, 50), pct(ours, 1, 99)
            met = "met" if p50 <= 1e5 and p99 <= 3e5 else "NOT met"
            line = f"  {kind} server, ours sign -> received: p50 {p50 / 1e3:.0f} µs, p99 {p99 / 1e3:.0f} µs (goal 100/300: {met})"
            if (kind, "ccxt") in RESULTS:
                line += f"; ccxt / ours at p50 {pct(RESULTS[(kind, 'ccxt')], 1, 50) / p50:.1f}x (goal >= 4x)"
            lines.append(line)
    # reported, not asserted: on this shared VM the host's speed drifts between the rows above
    # (one run had ours at 784 µs and aiohttp at 621 µs, the next two runs ours 1.4-2.1x faster)
    for kind in ("aiohttp", "raw"):
        if (kind, "aiohttp") in RESULTS and (kind, "ours") in RESULTS:
            ours_p50, theirs_p50 = pct(RESULTS[(kind, "ours")], 0, 50), pct(RESULTS[(kind, "aiohttp")], 0, 50)
            lines.append(f"  {kind} server, request -> response p50: aiohttp / ours {theirs_p50 / ours_p50:.2f}x "
                         f"({'ours faster' if ours_p50 < theirs_p50 else 'ours NOT faster in this run'})")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    benchmark.extra_info["summary"] = lines
