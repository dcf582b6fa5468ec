"""Helpers shared by the loopback tests: an aiohttp app or the simulator served on 127.0.0.1 and a
started connector as async context managers (every wait bounded), the three venue connectors
pointed at a simulator, a bounded condition wait, and the local book compared with the
simulator's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from cexarb.venues.gateio.futures import GateUsdtFutures
from cexarb.venues.gateio.spot import GateSpot
from cexarb.venues.mexc.spot import MexcSpot
from cexarb.venues.secrets import ApiCredentials
from cexarb.venues.sim.server import AccountSpec, SimServer
from cexarb.venues.ws import Backoff

C = TypeVar("C")


@asynccontextmanager
async def serve(app: web.Application, scheme: str = "http", path: str = "") -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 at a free port; yields ``{scheme}://127.0.0.1:{port}{path}``."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"{scheme}://127.0.0.1:{runner.addresses[0][1]}{path}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def sim_server(binance_dir: Path, *accounts: AccountSpec, **options: Any) -> AsyncIterator[SimServer]:
    """A :class:`SimServer` on 127.0.0.1 for ``accounts``, started and stopped within 30 s."""
    srv = SimServer(binance_dir, list(accounts), **options)
    await asyncio.wait_for(srv.start(), 30)
    try:
        yield srv
    finally:
        await asyncio.wait_for(srv.stop(), 30)


def _connector_options(options: dict[str, Any]) -> dict[str, Any]:
    """Fast reconnects and a fixed seed unless the test says otherwise."""
    return {"backoff": Backoff(initial_s=0.05, max_s=0.3), "seed": 1} | options


def gate_spot(server: SimServer, key: str, secret: str, uid: int | None = None, **options: Any) -> GateSpot:
    """A Gate spot connector for ``BTC_USDT`` on ``server`` (not started)."""
    creds = ApiCredentials(key, secret, uid=str(uid)) if uid is not None else ApiCredentials(key, secret)
    return GateSpot(
        creds,
        rest_url=server.base_url,
        ws_url=server.ws_base_url + "/ws/v4/",
        symbols=["BTC_USDT"],
        **_connector_options(options),
    )


def gate_futures(server: SimServer, key: str, secret: str, **options: Any) -> GateUsdtFutures:
    """A Gate USDT futures connector for ``BTC_USDT`` on ``server`` (not started; no uid: it reads
    it from ``/account/detail``)."""
    return GateUsdtFutures(
        ApiCredentials(key, secret),
        rest_url=server.base_url,
        ws_url=server.ws_base_url + "/v4/ws/usdt",
        symbols=["BTC_USDT"],
        **_connector_options(options),
    )


def mexc_spot(server: SimServer, key: str, secret: str, **options: Any) -> MexcSpot:
    """A MEXC spot connector for ``BTCUSDT`` on ``server`` (not started)."""
    return MexcSpot(
        ApiCredentials(key, secret),
        rest_url=server.base_url,
        ws_url=server.ws_base_url + "/ws",
        symbols=["BTCUSDT"],
        **_connector_options(options),
    )


@asynccontextmanager
async def started(conn: C) -> AsyncIterator[C]:
    """``conn`` entered (connected, books synced) and exited within 15 s each."""
    await asyncio.wait_for(conn.__aenter__(), 15)  # type: ignore[attr-defined]
    try:
        yield conn
    finally:
        await asyncio.wait_for(conn.__aexit__(None, None, None), 15)  # type: ignore[attr-defined]


async def wait_for(cond: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition") -> None:
    """Poll ``cond`` every 20 ms until true; AssertionError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def assert_book_matches_server(venue: Any, server: SimServer, key: str, n: int = 20, timeout_s: float = 5.0) -> None:
    """Freeze the simulated market, let the last pushes arrive, compare the top ``n`` levels."""
    server.market.paused = True
    try:
        vb = server.market.books[key]
        local = venue.book(key)

        def same() -> bool:
            if not local.is_valid or local.last_update_id != vb.update_id:
                return False
            bids, asks = local.depth(n)
            sb, sa = vb.top(n)
            return [(float(p), float(q)) for p, q in bids] == [(vb.price(t), q) for t, q in sb] and [
                (float(p), float(q)) for p, q in asks
            ] == [(vb.price(t), q) for t, q in sa]

        await wait_for(same, timeout_s, "local book == server book")
    finally:
        server.market.paused = False
