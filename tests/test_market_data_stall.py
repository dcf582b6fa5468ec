"""A market stream that answers pings but sends no market data is a stall by default: the
connectors' ``market_data_timeout_s`` defaults to :data:`MARKET_DATA_TIMEOUT_S` (30 s), and pongs
and protocol pings do not count as data -- the stream is reconnected and its books are not
trusted meanwhile. The venue's REST comes from the simulator; its market WebSocket is a small
aiohttp server here that acknowledges subscriptions, then sends only pongs and pings."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import WSMsgType, web
from cexarb.venues.connector import MARKET_DATA_TIMEOUT_S, ConnectorBase
from cexarb.venues.gateio.futures import GateUsdtFutures
from cexarb.venues.gateio.spot import GateSpot
from cexarb.venues.mexc.spot import MexcSpot
from cexarb.venues.sim.server import AccountSpec, SimServer
from cexarb.venues.ws import Backoff
from loopback import serve, sim_server, started, wait_for

SPOT_KEY = "gateio-spot:BTC_USDT"


def test_market_data_timeout_is_on_by_default() -> None:
    assert MARKET_DATA_TIMEOUT_S == 30.0
    for cls in (GateSpot, GateUsdtFutures, MexcSpot):
        venue: ConnectorBase = cls()
        assert venue._market_data_timeout_s == MARKET_DATA_TIMEOUT_S, cls.__name__
    # None still turns it off, explicitly
    assert GateSpot(market_data_timeout_s=None)._market_data_timeout_s is None


@pytest.fixture
async def server(binance_dir) -> AsyncIterator[SimServer]:
    async with sim_server(binance_dir, AccountSpec(api_key="k", api_secret="s", uid=1)) as srv:
        yield srv


@pytest.fixture
async def pong_only_ws() -> AsyncIterator[tuple[str, dict[str, int]]]:
    """A Gate-like market WebSocket: acks each subscription, answers ``spot.ping`` with
    ``spot.pong``, and otherwise sends unsolicited pongs and protocol pings every 50 ms -- never
    a depth, trade or ticker push."""
    counts = {"connections": 0, "pongs": 0}

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        counts["connections"] += 1

        def pong() -> str:
            counts["pongs"] += 1
            return json.dumps({"time": int(time.time()), "channel": "spot.pong", "event": "", "result": None})

        async def chatter() -> None:
            while not ws.closed:
                await ws.send_str(pong())
                await ws.ping()
                await asyncio.sleep(0.05)

        task = asyncio.get_running_loop().create_task(chatter())
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                req = json.loads(msg.data)
                if req.get("channel") == "spot.ping":
                    await ws.send_str(pong())
                elif req.get("event") == "subscribe":
                    ack = {"time": int(time.time()), "id": req.get("id"), "channel": req["channel"],
                           "event": "subscribe", "result": {"status": "success"}}
                    await ws.send_str(json.dumps(ack))
        except (ConnectionError, RuntimeError):
            pass
        finally:
            task.cancel()
        return ws

    app = web.Application()
    app.router.add_get("/ws/v4/", handler)
    async with serve(app, "ws", "/ws/v4/") as url:
        yield url, counts


async def test_pongs_only_stream_is_a_stall(server: SimServer, pong_only_ws: tuple[str, dict[str, int]]) -> None:
    url, counts = pong_only_ws
    # the default wiring: the market WsClient gets the 30 s data timeout
    async with started(GateSpot(rest_url=server.base_url, ws_url=url, symbols=["BTC_USDT"])) as venue:
        await wait_for(lambda: counts["connections"] >= 1, 5, "the market connection")
        assert venue._ws_market.data_timeout_s == MARKET_DATA_TIMEOUT_S
    # the mechanism, with the timeout short enough for a test: pongs and pings keep arriving,
    # yet no data frame -> stalled, reconnected; the book never counts as valid
    options = {"backoff": Backoff(initial_s=0.05, max_s=0.2), "seed": 1}
    venue = GateSpot(rest_url=server.base_url, ws_url=url, symbols=["BTC_USDT"], market_data_timeout_s=0.6, **options)
    async with started(venue):
        ws = venue._ws_market
        reasons: set[str] = set()

        def stalled() -> bool:
            reasons.add(ws.last_disconnect_reason)
            return ws.stalls >= 1

        await wait_for(stalled, 5, "the data timeout to fire on a pong-only stream")
        assert any(r.startswith("stalled: no data frame") for r in reasons), reasons
        assert ws.pongs > 0 and counts["pongs"] > 0  # it was alive all along
        await wait_for(lambda: ws.reconnects >= 1, 3, "a reconnect")
        assert not venue.book(SPOT_KEY).is_valid
