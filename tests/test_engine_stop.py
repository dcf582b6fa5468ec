"""Engine stop paths: a stop during start-up ends start-up at once (no strategy begins), and on
shutdown every resting paper order is cancelled and the result reports how many stayed open.
Every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import math
import time
from typing import Any

import pytest
from cexarb.config import parse_config
from cexarb.engine import Engine
from cexarb.model import OrderStatus, Side
from cexarb.strategy import (
    EndOfData,
    EventKind,
    StrategyMachine,
    StrategyParams,
    StrategyType,
)
from cexarb.venues.base import BookUpdate, OrderRequest
from cexarb.venues.sim.server import AccountSpec, SimServer
from test_paper_engine import paper_config_text

SPOT = "gateio-spot:BTC_USDT"
PERP = "gateio-futures:BTC_USDT"


def _config(rest_url: str, ws_base: str, *, sync_timeout_s: float, duration_s: float) -> str:
    return paper_config_text(rest_url, ws_base, duration_s=duration_s, sync_timeout_s=sync_timeout_s)


# ---- stop during start-up ------------------------------------------------------------------------


async def test_stop_during_start_up_returns_promptly_and_no_strategy_begins():
    """The venue accepts TCP connections and never answers: start-up would wait out
    ``sync_timeout_s`` (10 s); ``engine.stop()`` 0.3 s in ends it within about 2 s."""
    conns: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(writer)  # accept, read nothing, answer nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        text = _config(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", sync_timeout_s=10.0, duration_s=0.0)
        engine = Engine(parse_config(text), paper=True)
        before = {t for t in asyncio.all_tasks() if not t.done()}
        t0 = time.monotonic()
        task = asyncio.create_task(engine.run(install_signal_handlers=False))
        await asyncio.sleep(0.3)
        assert not task.done(), task
        engine.stop("test stop")
        result = await asyncio.wait_for(task, 8.0)
        elapsed = time.monotonic() - t0
        assert elapsed < 2.5, elapsed
        assert result.stop_reason == "test stop during start-up", result.stop_reason
        assert result.strategies == {} and engine.runners == []
        assert result.pending_tasks == 0
        assert all(s.state == s.INITIAL and not s.transition_log for s in engine.strategies)
        await asyncio.sleep(0)
        leftover = {t for t in asyncio.all_tasks() if not t.done()} - before - {asyncio.current_task()}
        assert not leftover, leftover
    finally:
        for w in conns:
            w.close()
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 5.0)


async def test_stop_before_run_skips_start_up():
    engine = Engine(parse_config(_config("http://127.0.0.1:1", "ws://127.0.0.1:1", sync_timeout_s=10.0,
                                         duration_s=0.0)), paper=True)
    engine.stop("early")
    result = await asyncio.wait_for(engine.run(install_signal_handlers=False), 5.0)
    assert result.stop_reason == "early during start-up" and result.strategies == {}


# ---- resting orders cancelled on shutdown --------------------------------------------------------


class _S(enum.IntEnum):
    WAITING = 0
    RESTING = 1
    DONE = 2
    FAILED = 3


class _P(StrategyParams, frozen=True, kw_only=True):
    strategy_id: str = "rest-bid"


class RestFarBid(StrategyMachine[_P]):
    """Test strategy: on the first book, a GTC limit buy 100 ticks under the best bid (never
    fills in a few seconds); on EndOfData it finishes, leaving the order for the engine."""

    strategy_type = StrategyType.SIMPLE_ARBITRAGE  # not registered; set on the engine directly
    State, Params = _S, _P
    INITIAL, COMPLETED, ERROR = _S.WAITING, _S.DONE, _S.FAILED
    TRANSITIONS = {_S.WAITING: (_S.RESTING, _S.DONE), _S.RESTING: (_S.DONE,)}  # noqa: RUF012 - base API

    def __init__(self, params: _P) -> None:
        super().__init__(params)
        self.order: Any = None

    def watched_instruments(self) -> tuple[str, ...]:
        return (SPOT,)

    async def on_waiting(self, event: Any) -> None:
        if isinstance(event, EndOfData):
            self.transition(_S.DONE, EventKind.END_OF_DATA)
            return
        if not isinstance(event, BookUpdate):
            return
        bid = self.ctx.book(SPOT).best_bid()
        if bid is None:
            return
        inst = self.ctx.instrument(SPOT)
        ticks = round(bid[0] / inst.tick_size) - 100
        price = ticks * inst.tick_size
        lots = max(1, math.ceil(2 * max(inst.min_notional, 1.0) / price / inst.lot_size))
        self.transition(_S.RESTING, EventKind.BOOK)
        self.order = await self.ctx.submit(
            OrderRequest.create(inst, Side.BUY, lots * inst.lot_size, price_ticks=ticks, tag="far-bid")
        )

    async def on_resting(self, event: Any) -> None:
        if isinstance(event, EndOfData):
            self.transition(_S.DONE, EventKind.END_OF_DATA)


@pytest.fixture
async def sim_server(binance_dir):
    srv = SimServer(binance_dir, [AccountSpec(api_key="k", api_secret="s")], speed=4.0)
    await asyncio.wait_for(srv.start(), 30)
    try:
        yield srv
    finally:
        await asyncio.wait_for(srv.stop(), 30)


async def _paper_run_with_a_resting_bid(sim_server: Any) -> tuple[Engine, RestFarBid, asyncio.Task[Any]]:
    """A paper engine running :class:`RestFarBid`, returned once its bid rests at the paper venue."""
    text = _config(sim_server.base_url, sim_server.ws_base_url, sync_timeout_s=20.0, duration_s=60.0)
    engine = Engine(parse_config(text), paper=True)
    strategy = RestFarBid(_P())
    engine.strategies = [strategy]
    task = asyncio.create_task(engine.run(install_signal_handlers=False))
    deadline = time.monotonic() + 30.0
    for _ in range(1_500):  # bounded: 1500 x 20 ms, and 30 s
        if task.done() or time.monotonic() > deadline:
            break
        if strategy.order is not None and strategy.order.status is OrderStatus.NEW:
            break
        await asyncio.sleep(0.02)
    if task.done() or strategy.order is None or strategy.order.status is not OrderStatus.NEW:
        engine.stop("the bid never rested")
        await asyncio.wait_for(task, 30)
        raise AssertionError(f"the bid never rested: {strategy.order!r}")
    return engine, strategy, task


async def test_order_whose_cancel_never_arrives_is_reported_and_logged(sim_server, caplog):
    """The paper venue drops the cancel-all: after the cancels' deadline the order is logged at
    WARNING (client id, instrument) and counted in ``open_orders_after_cancel``."""
    engine, strategy, task = await _paper_run_with_a_resting_bid(sim_server)
    try:

        async def dropped(instrument_key: str | None = None) -> int:
            return 0

        engine.runners[0].sims["gateio-spot"].cancel_all = dropped  # type: ignore[method-assign]
    finally:
        engine.stop("test done")
        result = await asyncio.wait_for(task, 30)
    run = result.strategies["rest-bid"]
    assert run.open_orders_at_stop == 1 and run.open_orders_after_cancel == 1
    coid = strategy.order.client_order_id
    warned = [r for r in caplog.records if r.levelname == "WARNING" and "still open" in r.getMessage()]
    assert len(warned) == 1 and coid in warned[0].getMessage() and SPOT in warned[0].getMessage(), warned


async def test_resting_order_is_cancelled_on_stop_and_none_left_open(sim_server, caplog):
    engine, strategy, task = await _paper_run_with_a_resting_bid(sim_server)
    try:
        sim = engine.runners[0].sims["gateio-spot"]
        assert len(sim.resting(SPOT)) == 1
        at_venue = await asyncio.wait_for(sim.open_orders(), 5)
        assert [o.client_order_id for o in at_venue] == [strategy.order.client_order_id]
    finally:
        engine.stop("test done")
        result = await asyncio.wait_for(task, 30)
    run = result.strategies["rest-bid"]
    assert run.error is None and run.result.final_state == "DONE", (run.transitions, run.error)
    # the order was open when cancel-all ran, and the cancel reached the simulated venue
    assert run.open_orders_at_stop == 1
    assert run.open_orders_after_cancel == 0
    assert strategy.order.status is OrderStatus.CANCELED, strategy.order
    assert sim.resting(SPOT) == []
    assert await asyncio.wait_for(sim.open_orders(), 5) == []
    assert not [r for r in caplog.records if "still open" in r.getMessage()]
    assert result.pending_tasks == 0


# ---- live: the stop's cancels ----------------------------------------------------------------------


async def test_live_stop_sends_every_cancel_at_once_within_close_timeout_s():
    """A slow venue (each cancel answered after 60 s) and five open orders: the live stop sends
    all five cancels at once and is done within close_timeout_s, not one close_timeout_s per
    order (a supervisor's kill would otherwise leave the later orders uncancelled)."""
    from cexarb._core import OrderBook
    from cexarb.clock import SimClock
    from cexarb.engine import _Runner
    from cexarb.execution import OrderManager
    from cexarb.model import Instrument, InstrumentKind
    from cexarb.strategy import StrategyContext, registry
    from test_paper_engine import config_text_static

    inst = Instrument(venue="gateio-spot", symbol="BTC_USDT", kind=InstrumentKind.SPOT, base="BTC", quote="USDT",
                      tick_size=0.1, lot_size=0.000001)
    book = OrderBook(inst.tick_size, inst.lot_size)
    book.apply_snapshot([[100.0, 5.0]], [[100.1, 5.0]], 1)
    sent: list[float] = []

    class SlowCancelVenue:
        def subscribe(self, handler: Any) -> None:
            pass

        async def place_order(self, request: OrderRequest) -> Any:
            order = request.to_order(0)
            order.status = OrderStatus.NEW
            return order

        async def cancel_order(self, instrument_key: str, client_order_id: str) -> bool:
            sent.append(time.monotonic())
            await asyncio.sleep(60)
            return True

    clock = SimClock(1)
    om = OrderManager(clock, {"gateio-spot": SlowCancelVenue()}, lambda key: book)
    for _ in range(5):
        await om.submit(OrderRequest.create(inst, Side.BUY, 0.001, price=99.0))
    assert om.n_open_orders == 5
    strategy = registry.create("spot_futures_hedging", spot_instrument=SPOT, futures_instrument=PERP)
    runner = _Runner(strategy, StrategyContext(clock=clock, public={}, private={}, orders=om), {})
    config = parse_config("mode = \"live\"\nclose_timeout_s = 0.5\n" + config_text_static("live").replace(
        'mode = "live"', "", 1))
    engine = Engine(config, paper=False, connectors={})
    t0 = time.monotonic()
    await asyncio.wait_for(engine._cancel_all(runner), 10)
    took = time.monotonic() - t0
    assert len(sent) == 5 and max(sent) - t0 < 0.1, [round(t - t0, 3) for t in sent]
    assert 0.4 < took < 1.5, took
    assert runner.open_at_stop == 5 and runner.open_after_cancel == 5  # never confirmed: reported
