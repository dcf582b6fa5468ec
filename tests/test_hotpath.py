"""Busy polling and hot-path warming (:mod:`cexarb.hotpath`, ``ConnectorBase.warm_order``).

On the real event loop (uvloop where the suite runs on it): the loop keeps polling while
:class:`BusyPoll` runs and sleeps again after ``stop``; warmers run at most once per interval; a
failing warmer is counted, logged once and does not stop the polling. Against the loopback
simulator, for each venue: ``warm_market`` decodes the latest depth frame again and leaves the
book as it was; ``warm_order`` builds a signed request and sends nothing (the order
client's request count is unchanged, the venue has no such order), after which the same request
is placed for real and accepted. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time

import pytest
from cexarb.hotpath import BusyPoll
from cexarb.model import OrderStatus, Side, TimeInForce
from cexarb.venues.base import OrderRequest
from cexarb.venues.gateio.futures import GateUsdtFutures
from cexarb.venues.gateio.spot import GateSpot
from cexarb.venues.mexc.spot import MexcSpot
from cexarb.venues.secrets import ApiCredentials
from cexarb.venues.sim.server import AccountSpec
from loopback import gate_futures, gate_spot, mexc_spot, sim_server, started, wait_for

KEY, SECRET, UID = "hot-key-1", "hot-secret-1", 10001


async def test_busy_poll_keeps_the_loop_polling_and_stops() -> None:
    poll = BusyPoll()
    with poll:
        assert poll.running
        await asyncio.sleep(0.02)  # an otherwise idle loop: without BusyPoll, one wake
        polls = poll.polls
    assert polls > 10, polls  # one per loop iteration (thousands on an idle machine); a sleeping loop: 1
    assert not poll.running
    await asyncio.sleep(0.01)
    assert poll.polls == polls  # stopped: no more iterations counted
    assert poll.warm_runs == 0  # no warmers, none run


async def test_warmers_run_at_most_once_per_interval() -> None:
    runs: list[int] = []
    poll = BusyPoll(warm_interval_us=2_000.0)
    poll.add_warmer(lambda: runs.append(time.perf_counter_ns()))
    t0 = time.perf_counter_ns()
    with poll:
        await asyncio.sleep(0.03)
    elapsed_ns = time.perf_counter_ns() - t0
    assert 1 <= len(runs) == poll.warm_runs <= elapsed_ns // 2_000_000 + 1
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    # (stamped inside the warmer, a little after the poll read the clock: 100 µs of slack)
    assert all(g >= 1_900_000 for g in gaps), gaps


async def test_a_failing_warmer_is_counted_logged_once_and_polling_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good: list[int] = []

    def bad() -> None:
        raise ValueError("warm-up failed on purpose")

    poll = BusyPoll(warm_interval_us=500.0)
    poll.add_warmer(bad)
    poll.add_warmer(lambda: good.append(1))
    with caplog.at_level(logging.WARNING, logger="cexarb.hotpath"), poll:
        await asyncio.sleep(0.02)
    assert (
        poll.warm_errors == poll.warm_runs == len(good) >= 2
    )  # the warmer after it still ran
    warnings = [r for r in caplog.records if "warmer" in r.getMessage()]
    assert (
        len(warnings) == 1 and "warm-up failed on purpose" in warnings[0].getMessage()
    )
    poll.remove_warmer(bad)
    with poll:
        await asyncio.sleep(0.005)
    assert poll.warm_errors == len(good) - (
        poll.warm_runs - poll.warm_errors
    )  # no new errors
    with pytest.raises(ValueError):
        poll.remove_warmer(bad)


@pytest.mark.parametrize("interval", [0, -1.0, float("nan"), float("inf"), "100"])
def test_bad_interval_is_refused_naming_the_field(interval: object) -> None:
    with pytest.raises(ValueError, match="warm_interval_us"):
        BusyPoll(warm_interval_us=interval)  # type: ignore[arg-type]


def test_a_warmer_must_be_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        BusyPoll().add_warmer(42)  # type: ignore[arg-type]


def _gate_spot(server) -> GateSpot:
    return gate_spot(server, KEY, SECRET, UID)


def _gate_futures(server) -> GateUsdtFutures:
    return gate_futures(server, KEY, SECRET)


def _mexc(server) -> MexcSpot:
    return mexc_spot(server, KEY, SECRET)


@pytest.mark.parametrize(
    ("make", "key", "qty"),
    [
        (_gate_spot, "gateio-spot:BTC_USDT", 0.001),
        (_gate_futures, "gateio-futures:BTC_USDT", 1.0),
        (_mexc, "mexc-spot:BTCUSDT", 0.001),
    ],
    ids=["gate-spot", "gate-futures", "mexc-spot"],
)
async def test_warm_market_and_warm_order_touch_nothing(
    binance_dir, make, key: str, qty: float
) -> None:
    async with (
        sim_server(
            binance_dir, AccountSpec(api_key=KEY, api_secret=SECRET, uid=UID)
        ) as server,
        started(make(server)) as venue,
    ):
        # warm_market: the latest depth frame decoded again, no book touched (sync code: no
        # frame can arrive between the two reads)
        await wait_for(lambda: venue._last_depth_frame is not None, 10, "a depth frame")
        book = venue.book(key)
        before = (book.last_update_id, *(a.tolist() for a in book.depth(20)))
        assert all(venue.warm_market() for _ in range(3))
        assert (book.last_update_id, *(a.tolist() for a in book.depth(20))) == before

        inst = venue.instruments()[key]
        bid, _ = server.market.books[key].best()
        request = OrderRequest.create(
            inst,
            Side.BUY,
            qty,
            price_ticks=bid[0] - 20_000,
            time_in_force=TimeInForce.GTC,
            client_order_id="warm1",
        )
        oe = venue._oe
        sent_before, orders_before = oe.requests, dict(venue._orders)
        poll = BusyPoll(warm_interval_us=200.0)
        poll.add_warmer(lambda: venue.warm_order(request))
        assert (
            venue.warm_order(request) > 100
        )  # the request line, signed headers and body
        with poll:
            await asyncio.sleep(0.02)
        assert poll.warm_runs >= 2 and poll.warm_errors == 0
        assert oe.requests == sent_before  # nothing written on the order connection
        assert dict(venue._orders) == orders_before  # and nothing recorded
        assert (
            await asyncio.wait_for(venue.get_order(key, "warm1"), 5) is None
        )  # the venue never saw it
        order = await asyncio.wait_for(
            venue.place_order(request), 5
        )  # the same request, for real
        assert order.status is OrderStatus.NEW and order.client_order_id == "warm1"
        assert await asyncio.wait_for(venue.cancel_order(key, "warm1"), 5)


def test_warm_market_before_any_frame_does_nothing() -> None:
    venue = GateSpot(
        ApiCredentials(KEY, SECRET),
        rest_url="http://127.0.0.1:9",
        ws_url="ws://127.0.0.1:9/ws/v4/",
    )
    assert venue.warm_market() is False


async def test_warm_order_refuses_what_place_order_would_reject(binance_dir) -> None:
    async with (
        sim_server(
            binance_dir, AccountSpec(api_key=KEY, api_secret=SECRET, uid=UID)
        ) as server,
        started(_gate_spot(server)) as venue,
    ):
        inst = venue.instruments()["gateio-spot:BTC_USDT"]
        # Gate spot has no reduce-only orders (PROTOCOLS.md): place_order rejects it unsent
        request = OrderRequest.create(
            inst,
            Side.BUY,
            0.001,
            price_ticks=600_000,
            time_in_force=TimeInForce.IOC,
            client_order_id="warm2",
            reduce_only=True,
        )
        with pytest.raises(ValueError):
            venue.warm_order(request)
        order = await asyncio.wait_for(venue.place_order(request), 5)
        assert order.status is OrderStatus.REJECTED


async def test_simple_arbitrage_warm_reads_the_books_and_changes_nothing(recording) -> None:
    """``StrategyMachine.warm``: a no-op before start; on real books, SIMPLE_ARBITRAGE's entry scan
    runs and its state, transitions, orders and statistics stay as they were."""
    from cexarb import _core
    from cexarb.backtest import ReplayPublicVenue
    from cexarb.clock import SimClock
    from cexarb.execution import OrderManager
    from cexarb.risk import RiskPolicy
    from cexarb.strategy import StrategyContext, StrategyType, registry

    spot, perp = "binance-spot:BTCUSDT", "binance-usdm:BTCUSDT"
    instruments = {k: recording.streams[k].instrument for k in (spot, perp)}
    books = {k: _core.OrderBook(i.tick_size, i.lot_size) for k, i in instruments.items()}
    for key, book in books.items():  # the first 200 real messages of each stream
        for delta in recording.streams[key].book.deltas[:200]:
            book.apply_delta(delta)
        book.flush()
    public = {i.venue: ReplayPublicVenue(i.venue, {k: i}, {k: books[k]}) for k, i in instruments.items()}
    clock = SimClock(0)
    orders = OrderManager(clock, {}, books.__getitem__, RiskPolicy())
    strategy = registry.create(
        StrategyType.SIMPLE_ARBITRAGE, instrument_a=spot, instrument_b=perp, position_size_usdt=1_000.0,
        min_profit_threshold=-0.05,
    )
    strategy.warm()  # not bound, not started: nothing to read yet, no error
    strategy.bind(StrategyContext(clock=clock, public=public, private={}, orders=orders))
    await strategy.start()
    assert strategy._entry.scan() is not None  # books ready: the scan has something to compute
    before = (strategy.state, strategy._table.total_transitions, strategy.scans, orders.n_orders)
    for _ in range(3):
        strategy.warm()
    assert (strategy.state, strategy._table.total_transitions, strategy.scans, orders.n_orders) == before


async def test_a_bound_method_warmer_is_removed_and_logged_by_equality(caplog: pytest.LogCaptureFixture) -> None:
    """``obj.method`` fetched twice gives two objects that compare equal: removal and the
    first-error log follow the warmer, not the object's id."""

    class Failing:
        def warm(self) -> None:
            raise RuntimeError("boom")

    target = Failing()
    poll = BusyPoll(warm_interval_us=200.0)
    poll.add_warmer(target.warm)
    with caplog.at_level(logging.WARNING, logger="cexarb.hotpath"), poll:
        await asyncio.sleep(0.005)
    assert poll.warm_errors >= 1
    assert len([r for r in caplog.records if "warmer" in r.getMessage()]) == 1
    poll.remove_warmer(target.warm)  # a new bound method object, equal to the registered one
    assert poll._warmers == [] and poll._failed == []
