"""The fast order path takes its rate-limit slot when it has a connection, right before the write.

The venue counts requests when they *arrive*; the client-side limiter counts them by slot time.
A request that took its slot and then waited for a busy connection would go out later than its
slot says, together with others whose slots were spread over a window: the venue would see more
than the limit in one of its windows. Checked against the loopback venue of
``test_order_entry`` (arrival times recorded server-side): arrivals never put more than the limit
in a window; a request whose slot wait passes its deadline raises :class:`RateLimitExceeded` and
gives its connection back; a request cancelled while waiting for its slot (or for its connection)
gives the connection back and sends nothing. Every loop and wait is bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest
from aiohttp import web
from cexarb.venues import rest
from cexarb.venues.order_entry import OrderEntryClient, OrderEntryResponse
from cexarb.venues.ratelimit import (
    EndpointClass,
    Limit,
    RateLimiter,
    RateLimitExceeded,
    Scope,
    VenueLimits,
)
from loopback import serve, wait_for
from test_order_entry import ORDER, Venue, _mexc

PATH = "/api/v3/order"
SLACK_S = 0.02  # arrival jitter allowed on loopback (same event loop as the client)


class ArrivalVenue(Venue):
    """:class:`test_order_entry.Venue` that also records when each request reached a handler."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[tuple[str, float]] = []

    def _seen(self, request: web.Request, name: str) -> None:
        self.arrivals.append((name, time.monotonic()))
        super()._seen(request, name)

    def times(self, name: str) -> list[float]:
        return [t for n, t in self.arrivals if n == name]


@pytest.fixture
async def arrival_venue() -> AsyncIterator[tuple[ArrivalVenue, str]]:
    v = ArrivalVenue()
    async with serve(v.app) as url:
        yield v, url


def _limiter(limit: int, period_s: float) -> RateLimiter:
    """``limit`` orders per ``period_s`` for the whole ORDER class; PUBLIC requests are not limited."""
    return RateLimiter(
        VenueLimits(
            venue="mexc-spot",
            classes={
                EndpointClass.ORDER: (Limit(limit=limit, period_s=period_s, scope=Scope.CLASS),),
                EndpointClass.PUBLIC: (),
            },
        )
    )


def _max_in_window(times: list[float], period_s: float) -> int:
    """The most of ``times`` inside any half-open window ``[t, t + period_s)``."""
    ordered = sorted(times)
    return max((sum(1 for u in ordered[i:] if u < t + period_s) for i, t in enumerate(ordered)), default=0)


def _ping(oe: OrderEntryClient, timeout_s: float) -> Coroutine[Any, Any, OrderEntryResponse]:
    """An unlimited (PUBLIC) GET on the order connection."""
    return oe.request("GET", "/api/v3/ping", signed=False, endpoint_class=EndpointClass.PUBLIC, timeout_s=timeout_s)


async def _busy(oe: OrderEntryClient, v: ArrivalVenue, slow_s: float) -> asyncio.Task[object]:
    """Start a slow PUBLIC request and return once the venue has it (the connection is busy)."""
    v.slow_s = slow_s
    task: asyncio.Task[object] = asyncio.create_task(
        oe.request("POST", "/slow", signed=False, endpoint_class=EndpointClass.PUBLIC, timeout_s=5.0)
    )
    await wait_for(lambda: v.hits.get("slow", 0) == 1, 2.0, "the slow request at the venue")
    return task


async def test_arrivals_never_exceed_the_limit_after_a_busy_connection(
    arrival_venue: tuple[ArrivalVenue, str],
) -> None:
    v, url = arrival_venue
    limit, period_s, orders = 2, 0.4, 6
    async with _mexc(url, limiter=_limiter(limit, period_s), pool_size=1) as oe:
        async with asyncio.timeout(10):
            slow = await _busy(oe, v, slow_s=0.6)
            # six orders while the only connection is busy: slots spread over 2 windows would
            # all go out at once when it frees
            pending = [
                asyncio.create_task(oe.post(PATH, ORDER + [("newClientOrderId", f"c{i}")], timeout_s=5.0))
                for i in range(orders)
            ]
            responses = await asyncio.gather(*pending)
            await slow
    assert all(r.status == 200 for r in responses) and v.verified == orders
    arrived = v.times("mexc_order")
    assert len(arrived) == orders
    # the venue's view: no window of period_s (less loopback jitter) holds more than `limit`
    assert _max_in_window(arrived, period_s - SLACK_S) <= limit, [round(t - arrived[0], 3) for t in arrived]
    assert max(arrived) - min(arrived) >= 2 * period_s - SLACK_S  # they were spaced, not dropped
    assert oe.connects == 1


async def test_slot_wait_past_the_deadline_raises_and_returns_the_connection(
    arrival_venue: tuple[ArrivalVenue, str],
) -> None:
    v, url = arrival_venue
    limiter = _limiter(1, 10.0)
    async with _mexc(url, limiter=limiter, pool_size=1) as oe:
        async with asyncio.timeout(10):
            assert (await oe.post(PATH, ORDER)).status == 200  # the only slot for 10 s
            # idle connection, no slot: start_request falls back to the awaited path, which gets
            # the connection, then finds the slot 10 s away -- past the 0.3 s deadline
            start = time.monotonic()
            with pytest.raises(RateLimitExceeded) as info:
                await oe.start_request("POST", PATH, ORDER, timeout_s=0.3)
            assert info.value.wait_s > 0.3 and time.monotonic() - start < 0.25  # refused at once
            assert (await _ping(oe, 1.0)).status == 200

            # the same behind a busy connection: the order gets it when the slow request is done,
            # is refused, and the request queued behind it still goes out on that connection
            slow = await _busy(oe, v, slow_s=0.2)
            order = asyncio.create_task(oe.post(PATH, ORDER, timeout_s=1.0))
            ping = asyncio.create_task(_ping(oe, 1.0))
            with pytest.raises(RateLimitExceeded):
                await order
            assert (await ping).status == 200 and (await slow).status == 200
        assert oe.connects == 1 and oe.open_connections == 1 and oe.connection_losses == 0
    assert v.hits == {"mexc_order": 1, "ping": 2, "slow": 1}  # the refused orders never went out
    assert limiter.rejected == 2


async def test_cancelled_while_waiting_for_the_slot_releases_the_connection(
    arrival_venue: tuple[ArrivalVenue, str],
) -> None:
    v, url = arrival_venue
    period_s = 0.6
    async with _mexc(url, limiter=_limiter(1, period_s), pool_size=1) as oe:
        async with asyncio.timeout(10):
            assert (await oe.post(PATH, ORDER)).status == 200
            first = time.monotonic()
            # the next order takes the idle connection and waits ~0.6 s for its slot, holding it
            waiting = asyncio.create_task(oe.post(PATH, ORDER, timeout_s=5.0))
            await asyncio.sleep(0.1)
            assert not waiting.done() and oe.requests == 1
            ping = asyncio.create_task(_ping(oe, 5.0))
            await asyncio.sleep(0.05)
            assert not ping.done()  # queued behind the order on the only connection
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert (await ping).status == 200  # the connection came back at once...
            assert time.monotonic() - first < period_s - 0.1  # ...not when the slot came
            assert v.hits == {"mexc_order": 1, "ping": 1}  # the cancelled order was not sent
            # the limiter cannot give a reservation back: the cancelled one expires with its window
            assert (await oe.post(PATH, ORDER, timeout_s=3 * period_s)).status == 200
        assert oe.connects == 1 and oe.open_connections == 1 and oe.requests == 3


async def test_cancelled_while_waiting_for_the_connection_takes_no_slot(
    arrival_venue: tuple[ArrivalVenue, str],
) -> None:
    v, url = arrival_venue
    limiter = _limiter(1, 10.0)
    async with _mexc(url, limiter=limiter, pool_size=1) as oe:
        async with asyncio.timeout(10):
            slow = await _busy(oe, v, slow_s=0.3)
            queued = asyncio.create_task(oe.post(PATH, ORDER, timeout_s=5.0))
            await asyncio.sleep(0.05)
            assert not queued.done() and limiter.headroom(EndpointClass.ORDER) == 1.0  # no slot yet
            queued.cancel()
            with pytest.raises(asyncio.CancelledError):
                await queued
            assert (await slow).status == 200
            assert limiter.headroom(EndpointClass.ORDER) == 1.0
            assert (await oe.post(PATH, ORDER, timeout_s=0.5)).status == 200  # the one slot is still there
        assert oe.connects == 1 and oe.open_connections == 1
    assert v.hits == {"slow": 1, "mexc_order": 1}


async def test_connection_lost_during_the_slot_wait_is_replaced(
    arrival_venue: tuple[ArrivalVenue, str],
) -> None:
    v, url = arrival_venue
    async with _mexc(url, limiter=_limiter(1, 0.4), pool_size=1) as oe:
        async with asyncio.timeout(10):
            assert (await oe.post(PATH, ORDER)).status == 200
            waiting = asyncio.create_task(oe.post(PATH, ORDER, timeout_s=3.0))
            await asyncio.sleep(0.1)  # it holds the connection, waiting for its slot
            v.transports[0].close()  # the venue drops that connection
            response = await waiting
        assert response.status == 200 and oe.connects == 2 and oe.connection_losses == 1
    assert v.verified == 2 and len(set(v.peers)) == 2


async def test_a_request_past_its_deadline_behind_a_busy_connection_strands_nothing(
    arrival_venue: tuple[ArrivalVenue, str],
) -> None:
    v, url = arrival_venue
    async with _mexc(url, pool_size=1) as oe:  # no limiter: the connection wait alone
        async with asyncio.timeout(10):
            slow = await _busy(oe, v, slow_s=0.1)
            with pytest.raises(rest.RequestTimeoutError):  # no connection in time, nothing sent
                await oe.post(PATH, ORDER, timeout_s=0.0)
            assert (await slow).status == 200
            # the connection went back to the pool, not to a waiter nobody awaits
            assert (await oe.post(PATH, ORDER, timeout_s=0.5)).status == 200
        assert oe.connects == 1 and oe.open_connections == 1
    assert v.hits == {"slow": 1, "mexc_order": 1}
