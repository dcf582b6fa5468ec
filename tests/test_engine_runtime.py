"""Engine runtime paths (paper and live share them), with the market driven by the test: two
in-process market-data sources (a Rust book each, pushed to the engine's handler on demand) stand
in for the connectors, so each event's timing is the test's.

* A strategy that makes an illegal transition ends in ERROR: the engine stops once every
  strategy has finished, and ``cexarb run`` exits 1 for it.
* A timer cancelled or replaced after it fired (its event queued while the strategy was busy in
  a handler) is not delivered; a replaced timer is delivered once, at its new time.
* Fills and updates queued before a stop reach the strategy before its EndOfData."""

from __future__ import annotations

import asyncio
import enum
import time
from typing import Any

from cexarb import _core
from cexarb.config import parse_config
from cexarb.engine import Engine
from cexarb.model import Fill, Instrument, InstrumentKind, Side, TimeInForce
from cexarb.run_cli import exit_code
from cexarb.strategy import (
    EndOfData,
    EventKind,
    StrategyMachine,
    StrategyParams,
    StrategyType,
)
from cexarb.strategy.machine import BookWatch, TimerEvent
from cexarb.venues.base import BookUpdate, OrderRequest

SPOT, PERP = "gateio-spot:BTC_USDT", "gateio-futures:BTC_USDT"


class MarketSource:
    """One venue's market data under the test's control: an instrument, its book, and the
    engine's market handlers (pushed to by :meth:`push`)."""

    def __init__(self, venue: str, kind: InstrumentKind) -> None:
        spot = kind is InstrumentKind.SPOT
        self.key = f"{venue}:BTC_USDT"
        self.inst = Instrument(venue=venue, symbol="BTC_USDT", kind=kind, base="BTC", quote="USDT", tick_size=0.1,
                               lot_size=0.0001 if spot else 1.0, min_notional=1.0,
                               contract_size=1.0 if spot else 0.0001, taker_fee=0.001,
                               funding_interval_hours=0.0 if spot else 8.0)
        self._book = _core.OrderBook(0.1, self.inst.lot_size)
        self._book.apply_snapshot([(49_999.5, 10.0)], [(50_000.5, 10.0)], 1)
        self._market_handlers: list[Any] = []

    def instruments(self) -> dict[str, Instrument]:
        return {self.key: self.inst}

    def book(self, key: str) -> Any:
        return self._book

    def subscribe_market(self, handler: Any) -> None:
        self._market_handlers.append(handler)

    def funding(self, key: str) -> Any:
        raise KeyError(key)

    def push(self) -> None:
        for handler in list(self._market_handlers):
            handler(BookUpdate(instrument_key=self.key, ts_ns=time.time_ns()))


def _engine(strategies: list[Any], duration_s: float = 0.0, close_timeout_s: float = 2.0) -> tuple[Engine, MarketSource]:
    config = parse_config(f"""
duration_s = {duration_s}
sync_timeout_s = 5.0
close_timeout_s = {close_timeout_s}
[venues.gateio-spot]
symbols = ["BTC_USDT"]
[venues.gateio-futures]
symbols = ["BTC_USDT"]
[paper]
latency = {{ order_entry_ns = 1000000, ack_ns = 1000000 }}
balances = {{ gateio-spot = {{ USDT = 10000.0, BTC = 1.0 }}, gateio-futures = {{ USDT = 10000.0 }} }}
[[strategies]]
type = "spot_futures_hedging"
params = {{ spot_instrument = "{SPOT}", futures_instrument = "{PERP}" }}
""")
    spot = MarketSource("gateio-spot", InstrumentKind.SPOT)
    engine = Engine(config, paper=True, connectors={"gateio-spot": spot,
                                                    "gateio-futures": MarketSource("gateio-futures", InstrumentKind.PERP)})
    engine.strategies = strategies
    return engine, spot


async def _started(engine: Engine) -> asyncio.Task[Any]:
    task = asyncio.ensure_future(engine.run(install_signal_handlers=False))
    for _ in range(200):  # bounded: up to 2 s
        if engine.runners:
            return task
        await asyncio.sleep(0.01)
    raise AssertionError("the engine did not start")


class _S(enum.IntEnum):
    A = 0
    B = 1
    DONE = 2
    FAILED = 3


class _P(StrategyParams, frozen=True, kw_only=True):
    strategy_id: str = "t"


class _Base(StrategyMachine[_P]):
    strategy_type = StrategyType.SIMPLE_ARBITRAGE  # not registered
    State, Params = _S, _P
    INITIAL, COMPLETED, ERROR = _S.A, _S.DONE, _S.FAILED
    TRANSITIONS = {_S.A: (_S.B, _S.DONE), _S.B: (_S.DONE,)}  # noqa: RUF012 - base API

    def watched_instruments(self) -> tuple[str, ...]:
        return (SPOT,)

    async def on_b(self, event: Any) -> None:
        if isinstance(event, EndOfData):
            self.transition(_S.DONE, EventKind.END_OF_DATA)


class IllegalStep(_Base):
    """On a book: A -> B, then B -> A, which is not declared (a strategy bug)."""

    async def on_a(self, event: Any) -> None:
        if isinstance(event, BookUpdate):
            self.transition(_S.B, EventKind.BOOK)
            self.transition(_S.A, EventKind.BOOK)


class DoneOnBook(_Base):
    async def on_a(self, event: Any) -> None:
        if isinstance(event, BookUpdate):
            self.transition(_S.DONE, EventKind.BOOK)


async def test_an_illegal_transition_ends_the_strategy_in_error_and_the_engine_stops() -> None:
    engine, spot = _engine([IllegalStep(_P(strategy_id="bad")), DoneOnBook(_P(strategy_id="good"))])
    task = await _started(engine)
    spot.push()
    result = await asyncio.wait_for(task, 10)  # duration 0: only "every strategy finished" ends it
    assert result.stop_reason == "all strategies finished"
    bad, good = result.strategies["bad"], result.strategies["good"]
    assert bad.result.final_state == "FAILED" and "illegal transition B -> A" in (bad.error or "")
    assert good.result.success
    assert exit_code(result) == 1  # cexarb run: a strategy did not complete
    engine2, spot2 = _engine([DoneOnBook(_P(strategy_id="good"))])
    task2 = await _started(engine2)
    spot2.push()
    assert exit_code(await asyncio.wait_for(task2, 10)) == 0


class Timers(_Base):
    """A timer cancelled, and one replaced, while their events were queued behind a handler busy
    for 100 ms (awaiting a venue's reply, say)."""

    def __init__(self, params: _P) -> None:
        super().__init__(params)
        self.books = 0
        self.delivered: list[tuple[str, int]] = []
        self.replaced_due = 0

    async def on_a(self, event: Any) -> None:
        now = self.ctx.now_ns()
        if isinstance(event, BookUpdate):
            self.books += 1
            if self.books == 1:
                self.ctx.set_timer("cancelled", now + 20_000_000)
                await asyncio.sleep(0.1)  # it fires meanwhile: its event is queued
                self.ctx.cancel_timer("cancelled")
            elif self.books == 2:
                self.ctx.set_timer("replaced", now + 20_000_000)
                await asyncio.sleep(0.1)
                self.replaced_due = self.ctx.now_ns() + 200_000_000
                self.ctx.set_timer("replaced", self.replaced_due)
        elif isinstance(event, TimerEvent):
            self.delivered.append((event.name, event.ts_ns))
        elif isinstance(event, EndOfData):
            self.transition(_S.DONE, EventKind.END_OF_DATA)


async def test_a_timer_cancelled_or_replaced_after_it_fired_is_not_delivered() -> None:
    strategy = Timers(_P())
    engine, spot = _engine([strategy], duration_s=1.0)
    task = await _started(engine)
    spot.push()
    await asyncio.sleep(0.3)
    spot.push()
    await asyncio.wait_for(task, 10)
    assert strategy.delivered == [("replaced", strategy.replaced_due)]
    assert strategy.ctx._timers == {} and strategy.ctx._armed == {}


class BuyThenEnd(_Base):
    """Buys once on the first book; on EndOfData notes the fills it has seen."""

    def __init__(self, params: _P) -> None:
        super().__init__(params)
        self.seen: list[str] = []
        self.filled_at_end: float | None = None
        self.filled = 0.0

    async def on_a(self, event: Any) -> None:
        self.seen.append(type(event).__name__)
        if isinstance(event, BookUpdate) and self.seen.count("BookUpdate") == 1:
            await self.ctx.submit(OrderRequest.create(self.ctx.instrument(SPOT), Side.BUY, 0.001, tag="buy"))
        elif isinstance(event, Fill):
            self.filled += event.qty
        elif isinstance(event, EndOfData):
            self.filled_at_end = self.filled
            self.transition(_S.DONE, EventKind.END_OF_DATA)


async def test_fills_queued_before_a_stop_reach_the_strategy_before_its_end_of_data() -> None:
    strategy = BuyThenEnd(_P(strategy_id="eod"))
    engine, spot = _engine([strategy], close_timeout_s=0.5)
    task = await _started(engine)
    # the stop comes in the same loop iteration as the fill (a signal or the duration timer)
    engine.runners[0].ctx.orders.add_listener(lambda e: engine.stop("signal") if isinstance(e, Fill) else None)
    spot.push()
    result = await asyncio.wait_for(task, 10)
    assert strategy.seen[-1] == "EndOfData" and "Fill" in strategy.seen
    assert strategy.filled_at_end == 0.001 == result.strategies["eod"].positions[SPOT]


class EnterOnBook(_Base):
    """Buys on every book it is given."""

    def __init__(self, params: _P) -> None:
        super().__init__(params)
        self.seen: list[str] = []

    async def on_a(self, event: Any) -> None:
        self.seen.append(type(event).__name__)
        if isinstance(event, BookUpdate):
            await self.ctx.submit(OrderRequest.create(self.ctx.instrument(SPOT), Side.BUY, 0.001, tag="entry"))
        elif isinstance(event, EndOfData):
            self.transition(_S.DONE, EventKind.END_OF_DATA)


async def test_a_book_queued_when_the_stop_comes_is_not_delivered_before_end_of_data() -> None:
    """Ctrl-C (or the duration) while a book update is queued: the strategy gets EndOfData, not
    the book -- after a stop nothing may open or add to a position."""
    strategy = EnterOnBook(_P())
    engine, spot = _engine([strategy], close_timeout_s=1.0)
    task = await _started(engine)
    await asyncio.sleep(0.2)
    spot.push()
    engine.stop("signal")  # same loop iteration: the book is queued, not handled yet
    result = await asyncio.wait_for(task, 10)
    assert strategy.seen == ["EndOfData"], strategy.seen
    assert result.strategies["t"].result.orders_executed == 0


async def test_live_start_reports_a_held_position_even_when_open_orders_cannot_be_read(caplog) -> None:
    """Live start reads each account's open orders (orders an earlier run left) and positions;
    a venue whose open-orders read fails is logged, and its positions are still reported."""
    from cexarb.model import Position

    class Account(MarketSource):
        """A live account whose open-orders read fails and that holds a perp short."""

        async def open_orders(self, instrument_key: str | None = None) -> list[Any]:
            raise ConnectionError("venue down")

        async def positions(self) -> dict[str, Position]:
            return {self.key: Position(instrument_key=self.key, qty=-3.0)}

        def subscribe(self, handler: Any) -> None:
            pass

        async def place_order(self, request: OrderRequest) -> Any:
            raise AssertionError("no order in this test")

        async def cancel_order(self, instrument_key: str, client_order_id: str) -> bool:
            return False

    strategy = DoneOnBook(_P(strategy_id="live"))
    engine, _ = _engine([strategy])
    spot, perp = Account("gateio-spot", InstrumentKind.SPOT), Account("gateio-futures", InstrumentKind.PERP)
    engine = Engine(engine.config, paper=False, connectors={"gateio-spot": spot, "gateio-futures": perp})
    engine.strategies = [strategy]
    strategy.watched_instruments = lambda: (SPOT, PERP)  # type: ignore[method-assign]
    with caplog.at_level("WARNING", logger="cexarb.engine"):
        task = await _started(engine)
        spot.push()
        await asyncio.wait_for(task, 10)
    assert "open orders could not be read at start (ConnectionError: venue down)" in caplog.text
    assert f"holds a position of -3 {PERP} at start" in caplog.text


class TakeAsks(_Base):
    """Buys 0.05 BTC IOC at the best ask on every book it is given (paper: the simulated venue
    matches it against the market source's book)."""

    def __init__(self, params: _P) -> None:
        super().__init__(params)
        self.orders: list[Any] = []

    async def on_a(self, event: Any) -> None:
        if isinstance(event, BookUpdate):
            inst = self.ctx.instrument(SPOT)
            ask = self.ctx.book(SPOT).best_ask()
            if ask is not None:
                self.orders.append(await self.ctx.submit(OrderRequest.create(
                    inst, Side.BUY, 0.05, price=ask[0], time_in_force=TimeInForce.IOC, tag="take")))
        elif isinstance(event, EndOfData):
            self.transition(_S.DONE, EventKind.END_OF_DATA)


async def test_paper_liquidity_taken_comes_back_when_the_level_empties_and_refills() -> None:
    """Paper: an IOC takes the whole best ask level (0.05 BTC); the market then empties that level and a new
    order refills it, with nothing of ours resting. The paper venue must see each message (the
    engine hands it every depth message while it holds a record of liquidity taken), so the
    refill is new liquidity for the next IOC -- not netted away as 'the same 10 BTC, ours'."""
    strategy = TakeAsks(_P())
    engine, spot = _engine([strategy], close_timeout_s=1.0)
    task = await _started(engine)
    strategy.book_watch = lambda: BookWatch.NONE  # type: ignore[method-assign]  # the test decides
    book = spot.book(SPOT)
    book.apply_update([], [(50_000.5, 0.05), (50_001.0, 100.0)], 2, 2)  # 0.05 BTC at the best ask

    async def take() -> Any:
        before = len(strategy.orders)
        strategy.book_watch = lambda: BookWatch.TOP  # type: ignore[method-assign]
        spot.push()
        for _ in range(200):  # bounded: 2 s
            if len(strategy.orders) > before and strategy.orders[-1].status.is_terminal:
                break
            await asyncio.sleep(0.01)
        strategy.book_watch = lambda: BookWatch.NONE  # type: ignore[method-assign]
        assert len(strategy.orders) == before + 1, "the strategy did not order"
        return strategy.orders[-1]

    first = await take()
    assert first.filled_qty == 0.05
    book.apply_update([], [(50_000.5, 0.0)], 3, 3)  # the level empties ...
    spot.push()
    await asyncio.sleep(0.05)
    book.apply_update([], [(50_000.5, 0.05)], 4, 4)  # ... and a new order refills it
    spot.push()
    await asyncio.sleep(0.05)
    second = await take()
    engine.stop("test done")
    await asyncio.wait_for(task, 10)
    assert second.filled_qty == 0.05, second
