"""Paper trading end to end: ``Engine`` (and ``cexarb run CONFIG --paper``'s ``main``) runs
SPOT_FUTURES_HEDGING on market data streamed by the loopback simulator (Gate spot + Gate USDT
futures WebSockets), with fills from the in-process simulated venue. The server must receive no
orders. Every wait is bounded."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from cexarb.config import ConfigError, load_config, parse_config
from cexarb.engine import Engine
from cexarb.model import Fill, FundingEvent, Instrument, OrderStatus
from cexarb.run_cli import main as run_main
from cexarb.venues.gateio.futures import GateUsdtFutures
from cexarb.venues.gateio.spot import GateSpot
from cexarb.venues.mexc.spot import MexcSpot
from cexarb.venues.sim.server import AccountSpec, SimServer

SPOT = "gateio-spot:BTC_USDT"
PERP = "gateio-futures:BTC_USDT"
REPO = Path(__file__).resolve().parents[1]


def config_text(server: SimServer, duration_s: float) -> str:
    return paper_config_text(server.base_url, server.ws_base_url, duration_s=duration_s)


def paper_config_text(base: str, ws: str, *, duration_s: float, sync_timeout_s: float = 20.0) -> str:
    """A paper run of SPOT_FUTURES_HEDGING on Gate spot + USDT futures at ``base`` / ``ws``."""
    return f"""
mode = "paper"
duration_s = {duration_s}
sync_timeout_s = {sync_timeout_s}
close_timeout_s = 8.0

[venues.gateio-spot]
rest_url = "{base}"
ws_url = "{ws}/ws/v4/"
symbols = ["BTC_USDT"]

[venues.gateio-futures]
rest_url = "{base}"
ws_url = "{ws}/v4/ws/usdt"
symbols = ["BTC_USDT"]

[paper]
leverage = 10.0
latency = {{ order_entry_ns = 1000000, ack_ns = 1000000 }}
balances = {{ gateio-spot = {{ USDT = 10000.0 }}, gateio-futures = {{ USDT = 10000.0 }} }}

[[strategies]]
type = "spot_futures_hedging"
[strategies.params]
strategy_id = "sfh-paper"
spot_instrument = "{SPOT}"
futures_instrument = "{PERP}"
position_size_usdt = 300.0
target_funding_rate = 0.01
min_basis_bps = -200.0
max_entry_slippage_bps = 50.0
stop_loss_pct = 0.5
profit_target_pct = 0.5
basis_stop_bps = 1000.0
max_hedge_ratio_drift = 0.2
"""


@pytest.fixture
async def server(binance_dir):
    srv = SimServer(binance_dir, [AccountSpec(api_key="k", api_secret="s")], speed=4.0)
    await asyncio.wait_for(srv.start(), 30)
    try:
        yield srv
    finally:
        await asyncio.wait_for(srv.stop(), 30)


def server_orders(server: SimServer) -> int:
    return sum(v.n_orders for acc in server.accounts for v in acc.venues.values()) + sum(
        len(o) for acc in server.accounts for o in acc.orders.values()
    )


async def test_paper_engine_opens_hedge_and_shuts_down_cleanly(server, tmp_path):
    path = tmp_path / "paper.toml"
    path.write_text(config_text(server, duration_s=10.0))
    cfg = load_config(path)
    engine = Engine(cfg, paper=True)
    before = {t for t in asyncio.all_tasks() if not t.done()}
    t0 = time.monotonic()
    result = await asyncio.wait_for(engine.run(install_signal_handlers=False), 60)
    elapsed = time.monotonic() - t0
    assert 9.0 <= elapsed < 50, elapsed
    assert result.stop_reason.startswith("duration"), result.stop_reason
    assert result.pending_tasks == 0
    await asyncio.sleep(0)
    leftover = {t for t in asyncio.all_tasks() if not t.done()} - before - {asyncio.current_task()}
    assert not leftover, leftover
    assert result.book_updates > 0

    run = result.strategies["sfh-paper"]
    states = [to for _, _, to, _ in run.transitions]
    # hedged: the spot leg filled, then the futures hedge, then monitoring
    assert states[:3] == ["OPENING_SPOT_POSITION", "OPENING_FUTURES_HEDGE", "MONITORING_POSITIONS"], states
    # the engine's stop delivered EndOfData: it closed both legs and completed
    assert "CLOSING_POSITIONS" in states and run.result.final_state == "COMPLETED", (states, run.error)
    assert run.error is None
    spot_fills = [f for f in run.fills if f.instrument_key == SPOT]
    perp_fills = [f for f in run.fills if f.instrument_key == PERP]
    assert spot_fills and perp_fills
    # both legs hedged at entry: spot bought, perp sold, notionals within the drift bound
    spot_buy = sum(f.qty for f in spot_fills if f.side.value == "buy")
    perp_sell = sum(f.qty for f in perp_fills if f.side.value == "sell")
    assert spot_buy > 0 and perp_sell > 0
    inst_perp = engine.connectors["gateio-futures"].instruments()[PERP]
    inst_spot = engine.connectors["gateio-spot"].instruments()[SPOT]
    px = spot_fills[0].price
    ratio = inst_perp.base_qty(perp_sell, px) / inst_spot.base_qty(spot_buy, px)
    assert abs(ratio - 1.0) < 0.2, ratio
    # closed flat; no order left open. Gate spot buys pay their fee in BTC (Fill.fee_base, booked
    # by the paper account as live): the spot leg keeps the fee's sub-lot dust, which no order can
    # sell (the strategy sells whole lots of what it holds)
    spot_sell = sum(f.qty for f in spot_fills if f.side.value == "sell")
    for f in spot_fills:
        rate = (inst_spot.maker_fee if f.is_maker else inst_spot.taker_fee) if f.side.value == "buy" else 0.0
        assert f.fee_base == pytest.approx(rate * f.qty, rel=1e-9), f
    fee_base = sum(f.fee_base for f in spot_fills)
    assert run.positions[SPOT] == pytest.approx(spot_buy - spot_sell - fee_base, abs=1e-12)
    assert 0.0 <= run.positions[SPOT] < inst_spot.lot_size, run.positions
    assert abs(run.positions[PERP]) < 1e-9, run.positions
    assert all(o.status.is_terminal for o in run.orders)
    assert all(o.status is not OrderStatus.REJECTED for o in run.orders), [o.reject_reason for o in run.orders]
    # fills came from the in-process simulated venue: the server saw no order
    assert server_orders(server) == 0


async def test_run_cli_paper_main(server, tmp_path, capsys):
    path = tmp_path / "paper.toml"
    path.write_text(config_text(server, duration_s=30.0))
    code = await asyncio.wait_for(asyncio.to_thread(run_main, [str(path), "--paper", "--duration", "6"]), 60)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "sfh-paper: spot_futures_hedging" in out and "duration 6 s elapsed" in out
    assert server_orders(server) == 0


def config_text_static(mode: str) -> str:
    return f"""
mode = "{mode}"
[venues.gateio-spot]
rest_url = "http://127.0.0.1:1"
[venues.gateio-futures]
rest_url = "http://127.0.0.1:1"
[[strategies]]
type = "spot_futures_hedging"
params = {{ spot_instrument = "{SPOT}", futures_instrument = "{PERP}" }}
"""


def test_config_errors_name_the_field():
    good = config_text_static("paper")
    assert parse_config(good).mode == "paper"
    cases = {
        good.replace('rest_url = "http://127.0.0.1:1"', "rest_url = 1", 1): "venues.gateio-spot.rest_url",
        "bogus = 1\n" + good: "bogus",
        good.replace("gateio-spot]", "binance-x]", 1): "venues.binance-x",
        good.replace("params = {", 'params = { position_size_usdt = "x",'): "strategies[0].params.position_size_usdt",
        good.replace('mode = "paper"', 'mode = "demo"'): "mode",
        good + "\n[latency]\nwarm_interval_us = 0\n": "latency.warm_interval_us",
        good + "\n[latency]\nbusy_pol = true\n": "latency.busy_pol",
    }
    for text, field in cases.items():
        with pytest.raises(ConfigError) as info:
            parse_config(text)
        assert info.value.field == field, (field, str(info.value))


def test_config_refuses_bad_paper_balances_infinite_timeouts_and_unknown_latency_keys():
    good = config_text_static("paper")
    cases = {
        good + "\n[paper]\nbalances = { gateio-spot = { USDT = nan } }\n": "balances.gateio-spot.USDT must be finite",
        good + "\n[paper]\nbalances = { gateio-spot = { BTC = -1.0 } }\n": "balances.gateio-spot.BTC must be finite and >= 0",
        good + "\n[paper]\ndefault_quote_balance = -5.0\n": "default_quote_balance must be finite and >= 0",
        good + "\n[paper]\nlatency = { order_entry_nz = 1 }\n": "order_entry_nz",
        "sync_timeout_s = inf\n" + good: "sync_timeout_s must be finite",
        "close_timeout_s = inf\n" + good: "close_timeout_s must be finite",
        good.replace('rest_url = "http://127.0.0.1:1"', 'rest_url = "http://127.0.0.1:1"\nstall_timeout_s = inf', 1):
            "stall_timeout_s must be finite",
    }
    for text, message in cases.items():
        with pytest.raises(ConfigError) as info:
            parse_config(text)
        assert message in str(info.value), (message, str(info.value))


def test_example_config_parses():
    cfg = load_config(REPO / "examples" / "paper_gate_sfh.toml")
    assert set(cfg.venues) == {"gateio-spot", "gateio-futures"}
    assert [s.strategy_id for s in cfg.build_strategies()] == ["sfh-gate"]


MEXC_SPOT, GATE_SPOT = "mexc-spot:BTCUSDT", "gateio-spot:BTC_USDT"


def arb_config_text(base: str, ws: str, *, mode: str, strategy_id: str, busy_poll: bool = False) -> str:
    """One forced SIMPLE_ARBITRAGE cycle (threshold below the fees) between MEXC spot and Gate
    spot at ``base`` / ``ws``; paper accounts of 10,000 USDT and 0.1 BTC on each venue."""
    return f"""
mode = "{mode}"
duration_s = 20.0
sync_timeout_s = 20.0
close_timeout_s = 8.0

[venues.mexc-spot]
rest_url = "{base}"
ws_url = "{ws}/ws"
symbols = ["BTCUSDT"]

[venues.gateio-spot]
rest_url = "{base}"
ws_url = "{ws}/ws/v4/"
symbols = ["BTC_USDT"]

[paper]
latency = {{ order_entry_ns = 1000000, ack_ns = 1000000 }}
balances = {{ mexc-spot = {{ USDT = 10000.0, BTC = 0.1 }}, gateio-spot = {{ USDT = 10000.0, BTC = 0.1 }} }}

[[strategies]]
type = "simple_arbitrage"
[strategies.params]
strategy_id = "{strategy_id}"
instrument_a = "{MEXC_SPOT}"
instrument_b = "{GATE_SPOT}"
position_size_usdt = 200.0
min_profit_threshold = -0.01
max_cycles = 1

[latency]
busy_poll = {str(busy_poll).lower()}
"""


def assert_one_arb_cycle(engine: Engine, run: Any) -> tuple[list[Fill], list[Fill], dict[str, Instrument]]:
    """The run completed one cycle: bought on one venue, sold on the other, nothing refused, the
    legs netting to within half a sell lot. Returns (buy fills, sell fills, instruments by key)."""
    assert run.error is None and run.result.final_state == "COMPLETED", (run.transitions, run.error)
    assert run.result.additional_data["cycles"] == 1
    assert all(o.status is not OrderStatus.REJECTED for o in run.orders), [o.reject_reason for o in run.orders]
    buys = [f for f in run.fills if f.side.value == "buy"]
    sells = [f for f in run.fills if f.side.value == "sell"]
    assert buys and sells and {f.instrument_key for f in buys} != {f.instrument_key for f in sells}
    insts = {k: i for c in engine.connectors.values() for k, i in c.instruments().items()}
    sell_lot = insts[sells[0].instrument_key].lot_size
    assert abs(sum(run.positions.values())) <= sell_lot / 2 + 1e-12
    return buys, sells, insts


def assert_funding_booked(engine: Engine, run: Any, funding_at_s: int) -> tuple[FundingEvent, float]:
    """One funding settlement at ``funding_at_s`` (epoch s) booked for the run's short perp:
    ``|qty| x contract size x mark x rate``, and in its PnL. Returns (event, amount)."""
    assert run.error is None, run.error
    assert len(run.funding) == 1, run.funding
    event, amount = run.funding[0]
    assert event.instrument_key == PERP and event.ts_ns == funding_at_s * 1_000_000_000
    inst = engine.connectors["gateio-futures"].instruments()[PERP]
    short_contracts = -sum(f.qty * f.side.sign for f in run.fills if f.instrument_key == PERP and f.ts_ns <= event.ts_ns)
    assert short_contracts > 0
    assert amount == pytest.approx(short_contracts * inst.contract_size * event.mark_price * event.rate, rel=1e-9)
    assert run.result.funding == pytest.approx(amount, rel=1e-9)
    return event, amount


@pytest.mark.parametrize("busy_poll", [False, True], ids=["sleeping-loop", "busy-poll"])
async def test_paper_engine_runs_simple_arbitrage_between_mexc_and_gate(server, tmp_path, busy_poll):
    """MEXC spot (protobuf WS market data) and Gate spot in one paper run: one forced arbitrage
    cycle (threshold below the fees) buys on one venue and sells the same qty on the other. The
    same with ``[latency] busy_poll = true`` (cexarb.hotpath): the loop polls while the engine
    runs and stops polling when it returns."""
    path = tmp_path / "arb.toml"
    path.write_text(arb_config_text(server.base_url, server.ws_base_url, mode="paper", strategy_id="arb-paper",
                                    busy_poll=busy_poll))
    engine = Engine(load_config(path), paper=True)
    result = await asyncio.wait_for(engine.run(install_signal_handlers=False), 60)
    if busy_poll:
        assert engine.busy_poll is not None and not engine.busy_poll.running
        # it polled while the engine ran (how often depends on the machine and on the simulator
        # sharing this loop; tests/test_hotpath.py checks that an idle loop keeps polling) and
        # the warmers (both connectors' depth parse, the strategy's entry scan) ran without error
        assert engine.busy_poll.polls >= 1 and engine.busy_poll.warm_runs >= 1, (
            engine.busy_poll.polls, engine.busy_poll.warm_runs,
        )
        assert engine.busy_poll.warm_errors == 0
    else:
        assert engine.busy_poll is None
    run = result.strategies["arb-paper"]
    assert result.stop_reason == "all strategies finished", result.stop_reason
    buys, sells, insts = assert_one_arb_cycle(engine, run)
    # the buy venue (Gate or MEXC spot, both charging a buy's fee in the BTC received,
    # Fill.fee_base = rate x qty) holds the quantity less that fee, and the sell leg sells that
    # received quantity in the sell instrument's nearest lot
    for f in buys:
        inst = insts[f.instrument_key]
        assert f.fee_base == pytest.approx((inst.maker_fee if f.is_maker else inst.taker_fee) * f.qty, rel=1e-9)
    received = sum(f.qty - f.fee_base for f in buys)
    sell_lot = insts[sells[0].instrument_key].lot_size
    assert received > 0 and sum(f.qty for f in sells) == pytest.approx(round(received / sell_lot) * sell_lot, abs=1e-12)
    assert server_orders(server) == 0


async def test_paper_funding_is_settled_at_the_venues_funding_time(server, tmp_path):
    """The simulator states a funding time a few seconds ahead; the paper short perp of the
    hedge receives rate x notional at the venue's mark price then, booked in the strategy's PnL."""
    funding_at = int(time.time()) + 7
    server.funding_next_s = funding_at
    path = tmp_path / "paper.toml"
    path.write_text(config_text(server, duration_s=11.0))
    engine = Engine(load_config(path), paper=True)
    result = await asyncio.wait_for(engine.run(install_signal_handlers=False), 60)
    run = result.strategies["sfh-paper"]
    event, _ = assert_funding_booked(engine, run, funding_at)
    assert event.rate == pytest.approx(0.0001)
    states = [to for _, _, to, _ in run.transitions]
    assert "MONITORING_POSITIONS" in states, states


# ---- fee asset: Gate and MEXC spot buys pay their fee in the base received ----------------------


def test_connector_classes_state_their_fee_asset():
    assert GateSpot.buy_fee_in_base is True and MexcSpot.buy_fee_in_base is True
    assert GateUsdtFutures.buy_fee_in_base is False


async def test_paper_gate_spot_buy_books_qty_less_the_base_fee(server, tmp_path):
    path = tmp_path / "paper.toml"
    path.write_text(config_text(server, 40.0))
    engine = Engine(load_config(path), paper=True)
    task = asyncio.create_task(engine.run(install_signal_handlers=False))
    try:
        deadline = time.monotonic() + 30.0
        for _ in range(1_500):  # bounded: 1500 x 20 ms, and 30 s
            if task.done() or time.monotonic() > deadline:
                break
            if engine.runners and engine.runners[0].strategy.state.name == "MONITORING_POSITIONS":
                break
            await asyncio.sleep(0.02)
        assert not task.done(), task
        runner = engine.runners[0]
        assert runner.strategy.state.name == "MONITORING_POSITIONS", runner.strategy.state
        spot_sim, perp_sim = runner.sims["gateio-spot"], runner.sims["gateio-futures"]
        assert spot_sim.buy_fee_in_base is True and perp_sim.buy_fee_in_base is False
        inst = engine.connectors["gateio-spot"].instruments()[SPOT]
        om = runner.ctx.orders
        fills = [f for f in om.fills if f.instrument_key == SPOT]
        buys = [f for f in fills if f.side.value == "buy"]
        assert buys and len(buys) == len(fills), fills  # opened: spot bought, nothing sold yet
        for f in buys:
            rate = inst.maker_fee if f.is_maker else inst.taker_fee
            assert rate > 0
            assert f.fee_base == pytest.approx(rate * f.qty, rel=1e-12), f
            assert f.fee == pytest.approx(f.fee_base * f.price, rel=1e-12), f  # its value in USDT
        qty = sum(f.qty for f in buys)
        fee_base = sum(f.fee_base for f in buys)
        # the strategy's books and the paper account's own position: qty less the base fee
        assert om.position(SPOT).qty == pytest.approx(qty - fee_base, abs=1e-12)
        assert spot_sim.position(SPOT).qty == pytest.approx(qty - fee_base, abs=1e-12)
        # the paper account's balances: BTC received net of the fee, exactly the notional in USDT
        bal = spot_sim.balances_now()
        assert bal["BTC"].total == pytest.approx(qty - fee_base, abs=1e-12)
        assert bal["USDT"].total == pytest.approx(10_000.0 - sum(f.price * f.qty for f in buys), abs=1e-6)
        # the perp hedge's fees stay in USDT
        perp_fills = [f for f in om.fills if f.instrument_key == PERP]
        assert perp_fills and all(f.fee_base == 0.0 and f.fee > 0 for f in perp_fills)
    finally:
        engine.stop("test done")
        result = await asyncio.wait_for(task, 60)
    assert result.pending_tasks == 0
    assert result.strategies["sfh-paper"].error is None
