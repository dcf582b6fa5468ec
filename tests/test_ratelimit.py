"""Client-side rate limiter: published limits per venue and endpoint class, sliding windows,
weights, per-symbol/per-endpoint scopes (Gate id paths by route template), FIFO reservations,
penalties after a 429, headroom.

Fake clocks where only the bookkeeping matters; short real waits (<= 0.6 s) where the waiting
itself is the point. Every loop is bounded.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from cexarb.venues.gateio import codec as gate_codec
from cexarb.venues.mexc import codec as mexc_codec
from cexarb.venues.ratelimit import (
    GATE_FUTURES_LIMITS,
    GATE_SPOT_LIMITS,
    MEXC_SPOT_LIMITS,
    VENUE_LIMITS,
    EndpointClass,
    Limit,
    RateLimiter,
    RateLimitExceeded,
    Scope,
    VenueLimits,
    gate_endpoint,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_published_limits_cover_every_venue_and_class() -> None:
    assert set(VENUE_LIMITS) == {mexc_codec.VENUE, gate_codec.SPOT_VENUE, gate_codec.FUTURES_VENUE}
    for limits in VENUE_LIMITS.values():
        assert set(limits.classes) == set(EndpointClass), limits.venue
        assert limits.source
    # PROTOCOLS.md §1.7 / §2.6 / §3.6
    assert MEXC_SPOT_LIMITS.classes[EndpointClass.PUBLIC][0].limit == 500
    assert MEXC_SPOT_LIMITS.classes[EndpointClass.PUBLIC][0].period_s == 10.0
    assert MEXC_SPOT_LIMITS.weight("/api/v3/exchangeInfo") == 10
    assert MEXC_SPOT_LIMITS.weight("/api/v3/order") == 1
    assert GATE_SPOT_LIMITS.classes[EndpointClass.ORDER] == (Limit(limit=10, period_s=1.0, scope=Scope.SYMBOL),)
    assert GATE_FUTURES_LIMITS.classes[EndpointClass.ORDER][0].limit == 100
    assert GATE_FUTURES_LIMITS.classes[EndpointClass.CANCEL][0].limit == 200


def test_gate_spot_orders_are_limited_per_market() -> None:
    clock = FakeClock()
    limiter = RateLimiter(GATE_SPOT_LIMITS, clock=clock)
    for _ in range(10):
        assert limiter.try_acquire(EndpointClass.ORDER, endpoint="/api/v4/spot/orders", symbol="BTC_USDT")
    assert not limiter.try_acquire(EndpointClass.ORDER, endpoint="/api/v4/spot/orders", symbol="BTC_USDT")
    assert limiter.headroom(EndpointClass.ORDER, symbol="BTC_USDT") == 0.0
    # another market has its own budget; cancels have theirs
    assert limiter.try_acquire(EndpointClass.ORDER, endpoint="/api/v4/spot/orders", symbol="ETH_USDT")
    assert limiter.try_acquire(EndpointClass.CANCEL, endpoint="/api/v4/spot/orders/1")
    clock.now += 0.999
    assert not limiter.try_acquire(EndpointClass.ORDER, symbol="BTC_USDT")
    clock.now += 0.002  # the first order left the 1 s window
    assert limiter.headroom(EndpointClass.ORDER, symbol="BTC_USDT") == pytest.approx(1.0)
    assert limiter.try_acquire(EndpointClass.ORDER, symbol="BTC_USDT")


def test_mexc_weights_and_per_endpoint_budgets() -> None:
    clock = FakeClock()
    limiter = RateLimiter(MEXC_SPOT_LIMITS, clock=clock)
    for _ in range(50):  # 50 x weight 10 = the whole 500 budget of this endpoint
        assert limiter.try_acquire(EndpointClass.PUBLIC, endpoint="/api/v3/exchangeInfo")
    assert not limiter.try_acquire(EndpointClass.PUBLIC, endpoint="/api/v3/exchangeInfo")
    assert limiter.try_acquire(EndpointClass.PUBLIC, endpoint="/api/v3/depth")  # its own budget
    assert limiter.headroom(EndpointClass.PUBLIC, endpoint="/api/v3/exchangeInfo") == 0.0
    assert limiter.headroom(EndpointClass.PUBLIC, endpoint="/api/v3/depth") == pytest.approx(499 / 500)
    # /api/v3/account: weight 10 and also 2 requests/s
    assert limiter.try_acquire(EndpointClass.PRIVATE, endpoint="/api/v3/account")
    assert limiter.try_acquire(EndpointClass.PRIVATE, endpoint="/api/v3/account")
    assert not limiter.try_acquire(EndpointClass.PRIVATE, endpoint="/api/v3/account")
    clock.now += 1.0
    assert limiter.try_acquire(EndpointClass.PRIVATE, endpoint="/api/v3/account")


async def test_a_wait_beyond_the_callers_deadline_fails_at_once_and_reserves_nothing() -> None:
    clock = FakeClock()
    limiter = RateLimiter(MEXC_SPOT_LIMITS, clock=clock)
    for _ in range(50):
        assert limiter.try_acquire(EndpointClass.PUBLIC, endpoint="/api/v3/exchangeInfo")
    start = time.perf_counter()
    with pytest.raises(RateLimitExceeded) as info:
        await limiter.acquire(EndpointClass.PUBLIC, endpoint="/api/v3/exchangeInfo", max_wait_s=0.05)
    assert time.perf_counter() - start < 0.05  # no sleeping
    assert info.value.wait_s == pytest.approx(10.0)
    assert limiter.rejected == 1
    clock.now += 10.0  # everything expired: the rejected call took nothing
    assert limiter.headroom(EndpointClass.PUBLIC, endpoint="/api/v3/exchangeInfo") == 1.0


def test_weight_larger_than_the_window_is_an_error() -> None:
    limiter = RateLimiter(GATE_SPOT_LIMITS, clock=FakeClock())
    with pytest.raises(ValueError, match="exceeds the window limit"):
        limiter.try_acquire(EndpointClass.ORDER, symbol="BTC_USDT", weight=11)
    with pytest.raises(ValueError, match="weight must be > 0"):
        limiter.try_acquire(EndpointClass.ORDER, symbol="BTC_USDT", weight=0)


def test_scale_keeps_a_margin() -> None:
    limiter = RateLimiter(GATE_SPOT_LIMITS, scale=0.5, clock=FakeClock())
    assert sum(limiter.try_acquire(EndpointClass.ORDER, symbol="X") for _ in range(10)) == 5
    with pytest.raises(ValueError):
        RateLimiter(GATE_SPOT_LIMITS, scale=0.0)


async def test_concurrent_callers_wait_in_order_and_never_exceed_a_sliding_window() -> None:
    limits = VenueLimits(
        venue="test", classes={EndpointClass.ORDER: (Limit(limit=5, period_s=0.2, scope=Scope.CLASS),)}
    )
    limiter = RateLimiter(limits)
    planned: dict[int, float] = {}  # when each caller's slot starts: call time + the wait it was given

    async def one(i: int) -> None:
        called = time.monotonic()
        waited = await limiter.acquire(EndpointClass.ORDER, max_wait_s=2.0)
        planned[i] = called + waited

    start = time.monotonic()
    async with asyncio.timeout(5.0):
        await asyncio.gather(*(one(i) for i in range(20)))
    in_call_order = [planned[i] for i in range(20)]
    # first come, first served: slots never go backwards in call order (1 ms call-time skew)
    assert all(b >= a - 1e-3 for a, b in itertools.pairwise(in_call_order))
    slots = sorted(in_call_order)
    for t in slots:  # any window of 0.2 s holds at most 5 slots (1 ms slack for the call-time skew)
        assert sum(1 for u in slots if t <= u < t + 0.199) <= 5
    assert 0.59 <= slots[-1] - start < 0.7  # 4 batches of 5: three waits of 0.2 s
    assert time.monotonic() - start >= 0.59 and limiter.waited_s > 0


async def test_penalty_after_a_429_holds_every_request() -> None:
    limiter = RateLimiter(GATE_FUTURES_LIMITS)
    penalized_at = time.monotonic()
    limiter.penalize(0.15)
    assert limiter.headroom(EndpointClass.PUBLIC, endpoint="/x") == 0.0
    assert not limiter.try_acquire(EndpointClass.PUBLIC, endpoint="/x")
    with pytest.raises(RateLimitExceeded):
        await limiter.acquire(EndpointClass.ORDER, max_wait_s=0.01)
    waited = await limiter.acquire(EndpointClass.ORDER, max_wait_s=1.0)
    assert 0 < waited <= 0.15 and time.monotonic() - penalized_at >= 0.149
    with pytest.raises(ValueError):
        limiter.penalize(float("nan"))


def test_penalty_for_one_class_leaves_the_others() -> None:
    clock = FakeClock()
    limiter = RateLimiter(GATE_SPOT_LIMITS, clock=clock)
    limiter.penalize(5.0, EndpointClass.ORDER)
    assert not limiter.try_acquire(EndpointClass.ORDER, symbol="BTC_USDT")
    assert limiter.try_acquire(EndpointClass.CANCEL)
    clock.now += 5.0
    assert limiter.try_acquire(EndpointClass.ORDER, symbol="BTC_USDT")


def test_gate_id_paths_count_against_their_route_template() -> None:
    """Gate counts "per endpoint" (APIv4 "Frequency limit rule", PROTOCOLS.md §2.6/§3.6): a query
    or cancel by id is the route ``.../orders/{order_id}`` whatever the id -- one window for all
    ids, as the simulator's route keys -- and a path without a parameter is its own endpoint."""
    assert gate_endpoint("/api/v4/spot/orders/t-abc") == "/api/v4/spot/orders/{order_id}"
    assert gate_endpoint("/api/v4/spot/orders/123456") == "/api/v4/spot/orders/{order_id}"
    assert gate_endpoint("/api/v4/futures/usdt/orders/99") == "/api/v4/futures/usdt/orders/{order_id}"
    assert gate_endpoint("/api/v4/futures/usdt/positions/BTC_USDT") == "/api/v4/futures/usdt/positions/{contract}"
    assert gate_endpoint("/api/v4/spot/currency_pairs/BTC_USDT") == "/api/v4/spot/currency_pairs/{currency_pair}"
    for own in ("/api/v4/spot/orders", "/api/v4/spot/orders/", "/api/v4/spot/orders/1/x", "/api/v4/spot/accounts"):
        assert gate_endpoint(own) == own
    assert GATE_FUTURES_LIMITS.endpoint("/api/v4/futures/usdt/orders/t-x") == "/api/v4/futures/usdt/orders/{order_id}"
    assert MEXC_SPOT_LIMITS.endpoint("/api/v3/order") == "/api/v3/order"  # no templates there
    for limits, base in ((GATE_SPOT_LIMITS, "/api/v4/spot/orders"), (GATE_FUTURES_LIMITS, "/api/v4/futures/usdt/orders")):
        clock = FakeClock()
        limiter = RateLimiter(limits, clock=clock)
        for i in range(200):  # 200 different orders queried: the endpoint's whole 10 s budget
            assert limiter.try_acquire(EndpointClass.PRIVATE, endpoint=f"{base}/t-q{i}"), (limits.venue, i)
        assert not limiter.try_acquire(EndpointClass.PRIVATE, endpoint=f"{base}/t-another")
        assert limiter.headroom(EndpointClass.PRIVATE, endpoint=f"{base}/{{order_id}}") == 0.0
        assert limiter.headroom(EndpointClass.PRIVATE, endpoint=f"{base}/77") == 0.0
        assert limiter.try_acquire(EndpointClass.PRIVATE, endpoint=base)  # listing orders: its own
        assert len(limiter._routes) <= 3  # id paths are not cached one by one
        clock.now += 10.0
        assert limiter.try_acquire(EndpointClass.PRIVATE, endpoint=f"{base}/t-another")


def test_gate_cancels_share_one_window_across_ids_and_routes() -> None:
    clock = FakeClock()
    limiter = RateLimiter(GATE_SPOT_LIMITS, clock=clock)
    for i in range(150):
        assert limiter.try_acquire(EndpointClass.CANCEL, endpoint=f"/api/v4/spot/orders/t-c{i}", symbol="BTC_USDT")
    for _ in range(50):  # cancel-all counts in the same 200/s, whatever the pair
        assert limiter.try_acquire(EndpointClass.CANCEL, endpoint="/api/v4/spot/orders", symbol="ETH_USDT")
    assert not limiter.try_acquire(EndpointClass.CANCEL, endpoint="/api/v4/spot/orders/t-last", symbol="SOL_USDT")


def test_gate_order_windows_per_market_on_spot_and_per_user_on_futures() -> None:
    """Spot placement: "a total of 10r/s (UID+Market)" -- each pair its own 10/s; futures
    placement: 100r/s per UID, every contract together (PROTOCOLS.md §2.6, §3.6)."""
    spot = RateLimiter(GATE_SPOT_LIMITS, clock=FakeClock())
    for pair in ("BTC_USDT", "ETH_USDT", "SOL_USDT"):
        assert sum(spot.try_acquire(EndpointClass.ORDER, endpoint="/api/v4/spot/orders", symbol=pair) for _ in range(12)) == 10
    fut = RateLimiter(GATE_FUTURES_LIMITS, clock=FakeClock())
    got = [fut.try_acquire(EndpointClass.ORDER, endpoint="/api/v4/futures/usdt/orders", symbol=c)
           for c in ("BTC_USDT", "ETH_USDT") for _ in range(60)]
    assert sum(got) == 100 and not got[-1]


def test_venue_limits_refuse_a_malformed_template() -> None:
    with pytest.raises(ValueError, match="templates"):
        VenueLimits(venue="x", classes={}, templates=(("/a/orders", "/a/orders/{id}"),))
    with pytest.raises(ValueError, match="templates"):
        VenueLimits(venue="x", classes={}, templates=(("/a/orders/", "/b/{id}"),))
