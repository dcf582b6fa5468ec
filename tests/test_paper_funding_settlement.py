"""Paper funding settlement (``Engine.settle_funding`` and the engine's funding keeper) on market
data streamed by the loopback simulator, SPOT_FUTURES_HEDGING holding a short Gate USDT perp:

* the price is the mark the venue pushed (``futures.tickers`` -> ``FundingEvent.mark_price``) when
  it arrived at most ``FUNDING_MARK_MAX_AGE_S`` before the funding time, not the book's mid;
* without such a mark (none pushed, or too old) the mid, with a WARNING saying why;
* a settlement or a venue read that raises is logged, counted and not retried, and the keeper
  goes on to settle the other perps.

Amounts are quote currency (USDT, + received): ``-contracts x contract size x price x rate``
(Gate: size x ``quanto_multiplier`` x mark price x funding rate). Rates are fractions per
interval, times ns since the epoch. Every wait is bounded in time; loops are bounded in count."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

import msgspec
import pytest
from cexarb import _core
from cexarb.config import load_config, parse_config
from cexarb.engine import Engine, EngineResult, build_connector
from cexarb.model import FundingEvent, FundingInfo, Instrument, InstrumentKind
from cexarb.venues.sim.server import AccountSpec
from loopback import sim_server, started, wait_for
from test_paper_engine import PERP, paper_config_text

NS = 1_000_000_000
FALLBACK = "instead of the mark price"  # what the engine's mid-fallback warning says


@pytest.fixture
async def server(binance_dir):
    async with sim_server(binance_dir, AccountSpec(api_key="k", api_secret="s"), speed=4.0) as srv:
        yield srv


async def _hedged_run(server: Any, tmp_path: Any) -> tuple[Engine, asyncio.Task[EngineResult]]:
    """A paper run of SPOT_FUTURES_HEDGING (test_paper_engine's config, 60 s) returned once it is
    hedged (MONITORING_POSITIONS: spot bought, perp sold). The venue's funding time is put an hour
    ahead, so neither the keeper nor the connector's re-read settles or pushes anything meanwhile."""
    server.funding_next_s = int(time.time()) + 3600
    path = tmp_path / "paper.toml"
    path.write_text(paper_config_text(server.base_url, server.ws_base_url, duration_s=60.0))
    engine = Engine(load_config(path), paper=True)
    task = asyncio.create_task(engine.run(install_signal_handlers=False))
    deadline = time.monotonic() + 30.0
    for _ in range(1_500):  # bounded: 1500 x 20 ms, and 30 s
        if task.done() or time.monotonic() > deadline:
            break
        if engine.runners and engine.runners[0].strategy.state.name == "MONITORING_POSITIONS":
            return engine, task
        await asyncio.sleep(0.02)
    engine.stop("never hedged")
    await asyncio.wait_for(task, 60)
    raise AssertionError(f"the strategy never hedged: {engine.runners and engine.runners[0].strategy.state!r}")


async def _stop(engine: Engine, task: asyncio.Task[EngineResult]) -> EngineResult:
    engine.stop("test done")
    return await asyncio.wait_for(task, 60)


def _fallback_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "cexarb.engine" and r.levelno == logging.WARNING and FALLBACK in r.getMessage()]


async def test_settlement_uses_a_fresh_pushed_mark_not_the_mid(server, tmp_path, caplog):
    engine, task = await _hedged_run(server, tmp_path)
    try:
        conn = engine.connectors["gateio-futures"]
        pushed: list[FundingEvent] = []
        conn.subscribe_market(lambda e: pushed.append(e) if isinstance(e, FundingEvent) else None)
        assert PERP not in engine.funding_marks
        server.set_funding_rate(0.0003)  # the venue pushes futures.tickers: the new rate and the mark
        await wait_for(lambda: PERP in engine.funding_marks and bool(pushed), 5, "the pushed mark")
        mark, recv_ns = engine.funding_marks[PERP]
        assert mark == pushed[-1].mark_price and pushed[-1].rate == pytest.approx(0.0003)
        assert mark > 0 and mark == pytest.approx(round(mark, 1), abs=1e-9)  # the simulator's mark_price_round 0.1
        runner = engine.runners[0]
        sim = runner.sims["gateio-futures"]
        inst = conn.instruments()[PERP]

        # 1) the venue's pushed mark, 1 s before the funding time, at the venue's current rate
        contracts = sim.position(PERP).qty
        assert contracts < 0  # the hedge's short perp
        ts1 = recv_ns + NS
        assert engine.settle_funding(PERP, ts1) == 1
        event1, amount1 = runner.funding_events[-1]
        assert (event1.instrument_key, event1.ts_ns, event1.mark_price) == (PERP, ts1, mark)
        assert event1.rate == pytest.approx(0.0003)
        assert amount1 > 0 and amount1 == pytest.approx(-contracts * inst.contract_size * mark * 0.0003, rel=1e-12)

        # 2) a mark 2 % off the mid (a hand-built push through the engine's market handler), then a
        # push without a mark (0.0: the ticker carried none), which keeps it; settled exactly at the
        # age bound, the mark is used, not the mid
        far_mark = round(conn.book(PERP).mid() * 1.02, 1)
        engine._on_market(FundingEvent(instrument_key=PERP, rate=0.0003, mark_price=far_mark, ts_ns=time.time_ns()))
        engine._on_market(FundingEvent(instrument_key=PERP, rate=0.0003, mark_price=0.0, ts_ns=time.time_ns()))
        assert engine.funding_marks[PERP][0] == far_mark
        ts2 = engine.funding_marks[PERP][1] + engine.funding_mark_max_age_ns
        contracts, mid = sim.position(PERP).qty, conn.book(PERP).mid()
        assert engine.settle_funding(PERP, ts2, 0.0002) == 1
        event2, amount2 = runner.funding_events[-1]
        assert event2.mark_price == far_mark and abs(far_mark - mid) > 0.01 * mid
        assert amount2 == pytest.approx(-contracts * inst.contract_size * far_mark * 0.0002, rel=1e-12)
        assert _fallback_warnings(caplog) == []
    finally:
        result = await _stop(engine, task)
    run = result.strategies["sfh-paper"]
    assert run.error is None, run.error
    # what the strategy was told and booked: the prices used, each settlement once
    assert [(e.ts_ns, e.mark_price, a) for e, a in run.funding] == [(ts1, mark, amount1), (ts2, far_mark, amount2)]
    assert run.result.funding == pytest.approx(amount1 + amount2, rel=1e-12)
    assert engine.funding_failures == 0


async def test_settlement_falls_back_to_the_mid_when_the_mark_is_missing_or_stale(server, tmp_path, caplog):
    engine, task = await _hedged_run(server, tmp_path)
    try:
        conn = engine.connectors["gateio-futures"]
        runner = engine.runners[0]
        sim = runner.sims["gateio-futures"]
        inst = conn.instruments()[PERP]

        # 1) the start-up contracts read stated a mark (FundingInfo.mark_price, kept current by
        # every ticker push): at a funding time within the age bound it is used, not the mid
        info = conn.funding(PERP)
        assert info.mark_price > 0 and info.mark_updated_ns > 0
        contracts = sim.position(PERP).qty
        assert contracts < 0
        ts0 = info.mark_updated_ns + engine.funding_mark_max_age_ns
        assert engine.settle_funding(PERP, ts0, 0.0002) == 1
        event0, amount0 = runner.funding_events[-1]
        assert event0.mark_price == info.mark_price
        assert amount0 == pytest.approx(-contracts * inst.contract_size * info.mark_price * 0.0002, rel=1e-12)
        assert _fallback_warnings(caplog) == []

        # 1b) a venue that states no mark at all (terms without one, nothing pushed): the mid
        conn._funding[PERP] = msgspec.structs.replace(info, mark_price=0.0, mark_updated_ns=0)
        assert PERP not in engine.funding_marks
        contracts, mid1 = sim.position(PERP).qty, conn.book(PERP).mid()
        assert mid1 is not None
        ts1 = time.time_ns()
        assert engine.settle_funding(PERP, ts1, 0.0002) == 1
        event1, amount1 = runner.funding_events[-1]
        assert event1.mark_price == mid1 and event1.rate == 0.0002
        assert amount1 == pytest.approx(-contracts * inst.contract_size * mid1 * 0.0002, rel=1e-12)
        warned = _fallback_warnings(caplog)
        assert len(warned) == 1, warned
        assert PERP in warned[0] and f"mid {mid1}" in warned[0] and "no mark price has been pushed" in warned[0]

        # 2) the venue pushed a mark, but 61 s before the funding time (the bound is 60 s): the mid
        server.set_funding_rate(0.0003)
        await wait_for(lambda: PERP in engine.funding_marks, 5, "the pushed mark")
        mark, recv_ns = engine.funding_marks[PERP]
        ts2 = recv_ns + engine.funding_mark_max_age_ns + NS
        contracts, mid2 = sim.position(PERP).qty, conn.book(PERP).mid()
        assert engine.settle_funding(PERP, ts2) == 1
        event2, amount2 = runner.funding_events[-1]
        assert event2.mark_price == mid2 and event2.rate == pytest.approx(0.0003)
        assert amount2 == pytest.approx(-contracts * inst.contract_size * mid2 * 0.0003, rel=1e-12)
        warned = _fallback_warnings(caplog)
        assert len(warned) == 2, warned
        assert f"mid {mid2}" in warned[1] and f"mark stated ({mark}) was read 61.0 s before" in warned[1]
        assert "more than the 60 s allowed" in warned[1]
    finally:
        result = await _stop(engine, task)
    run = result.strategies["sfh-paper"]
    assert run.error is None, run.error
    assert [(e.ts_ns, e.mark_price, a) for e, a in run.funding] == [
        (ts0, info.mark_price, amount0), (ts1, mid1, amount1), (ts2, mid2, amount2)
    ]
    assert run.result.funding == pytest.approx(amount0 + amount1 + amount2, rel=1e-12)
    assert engine.funding_failures == 0


class _HandBuiltPerps:
    """A small public venue ``hand`` with two linear perps (tick 0.01 USDT, 1 contract = 1 base)
    whose funding is due at ``due_ns``: ``hand:AAA_USDT`` loses its book at the funding time
    (``book`` raises from then on, so its settlement fails), ``hand:BBB_USDT``'s ``funding`` raises
    on every read after the first (start-up's). No market data."""

    def __init__(self, due_ns: int) -> None:
        self.due_ns = due_ns
        self.perps = {
            i.key: i for i in (
                Instrument(venue="hand", symbol=s, kind=InstrumentKind.PERP, base=s[:3], quote="USDT",
                           tick_size=0.01, lot_size=1.0, funding_interval_hours=8.0)
                for s in ("AAA_USDT", "BBB_USDT")
            )
        }
        self.books = {key: _core.OrderBook(0.01, 1.0) for key in self.perps}
        for book in self.books.values():
            book.apply_snapshot([(99.0, 10.0)], [(101.0, 10.0)], 1)
        self.reads: collections.Counter[str] = collections.Counter()

    def instruments(self) -> dict[str, Instrument]:
        return dict(self.perps)

    def subscribe_market(self, handler: Any) -> None:
        pass

    def book(self, key: str) -> Any:
        if key == "hand:AAA_USDT" and time.time_ns() >= self.due_ns:
            raise RuntimeError(f"{key}: book lost at the funding time")
        return self.books[key]

    def funding(self, key: str) -> FundingInfo:
        self.reads[key] += 1
        if key == "hand:BBB_USDT" and self.reads[key] > 1:
            raise ConnectionError(f"{key}: venue unavailable")
        return FundingInfo(instrument_key=key, rate=0.0001, next_funding_ns=self.due_ns, interval_ns=8 * 3600 * NS,
                           updated_ns=time.time_ns())


async def test_a_failed_settlement_or_read_is_logged_counted_and_the_keeper_goes_on(server, tmp_path, caplog):
    """The keeper runs the whole paper run: the hand-built perps' settlement (6 s in) and reads
    fail, each logged with its traceback and counted, the failed settlement is not retried, and the
    Gate perp is settled at its funding time (10 s in) on the hedge's short."""
    t0 = time.time()
    hand = _HandBuiltPerps(due_ns=int((t0 + 6.0) * NS))
    funding_at = int(t0) + 10
    server.funding_next_s = funding_at
    cfg = parse_config(paper_config_text(server.base_url, server.ws_base_url, duration_s=14.0))
    gate = {v: build_connector(v, cfg.venues[v], ["BTC_USDT"]) for v in ("gateio-spot", "gateio-futures")}
    async with started(gate["gateio-spot"]) as spot, started(gate["gateio-futures"]) as fut:
        engine = Engine(cfg, paper=True, connectors={"gateio-spot": spot, "gateio-futures": fut, "hand": hand})
        result = await asyncio.wait_for(engine.run(install_signal_handlers=False), 60)
    assert result.stop_reason.startswith("duration"), result.stop_reason
    assert result.pending_tasks == 0
    run = result.strategies["sfh-paper"]
    assert run.error is None, run.error

    # the failed settlement: logged once with its traceback, naming the instrument and the time
    errors = [r for r in caplog.records if r.name == "cexarb.engine" and r.levelno == logging.ERROR]
    failed = [r for r in errors if "hand:AAA_USDT" in r.getMessage()]
    assert len(failed) == 1, [r.getMessage() for r in failed]
    assert str(hand.due_ns) in failed[0].getMessage() and failed[0].exc_info is not None
    assert "book lost" in str(failed[0].exc_info[1])
    assert hand.reads["hand:AAA_USDT"] >= 4  # start-up, the keeper's first round, at its time, at Gate's
    # the failed reads: each logged and counted, a few rounds in 14 s (no tight loop)
    unread = [r for r in errors if "hand:BBB_USDT" in r.getMessage()]
    assert 1 <= len(unread) <= 8 and len(unread) == hand.reads["hand:BBB_USDT"] - 1, len(unread)
    assert all(r.exc_info is not None and "venue unavailable" in str(r.exc_info[1]) for r in unread)
    assert engine.funding_failures == 1 + len(unread)

    # the keeper went on: the Gate perp settled once, after the failure, on the hedge's short
    assert len(run.funding) == 1, run.funding
    event, amount = run.funding[0]
    assert event.instrument_key == PERP and event.ts_ns == funding_at * NS > hand.due_ns
    assert event.rate == pytest.approx(0.0001) and event.mark_price > 0
    inst = fut.instruments()[PERP]
    short_contracts = -sum(f.qty * (1 if f.side.value == "buy" else -1) for f in run.fills
                           if f.instrument_key == PERP and f.ts_ns <= event.ts_ns)
    assert short_contracts > 0
    assert amount == pytest.approx(short_contracts * inst.contract_size * event.mark_price * event.rate, rel=1e-9)
    # booked once on the paper account and once by the strategy; nothing on the hand-built perps
    runner = engine.runners[0]
    assert runner.sims["gateio-futures"].position(PERP).funding == pytest.approx(amount, rel=1e-12)
    assert run.result.funding == pytest.approx(amount, rel=1e-12)
    assert [e.instrument_key for e, _ in runner.funding_events] == [PERP]
    assert all(runner.sims["hand"].position(k).funding == 0.0 for k in hand.perps)
