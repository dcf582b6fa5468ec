"""Helpers shared by the loopback tests: an aiohttp app or the simulator served on 127.0.0.1 and a
started connector as async context managers (every wait bounded), a bounded condition wait, and
the local book compared with the simulator's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from cexarb.venues.sim.server import AccountSpec, SimServer

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
