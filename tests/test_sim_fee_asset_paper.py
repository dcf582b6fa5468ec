"""Paper trading charges fees in the asset the venue does: ``Engine`` gives each paper account
``SimVenue(buy_fee_in_base=connector.buy_fee_in_base)``, so a paper spot buy on ``gateio-spot``
pays its fee out of the BTC received (Gate ``fee_currency`` = the base, PROTOCOLS.md §2.2), as
live, and books a position of ``qty - fee_base``; the futures account keeps every fee in USDT.
Market data streams from the loopback simulator (127.0.0.1, port 0); fills come from the
in-process simulated venue. Amounts BTC and USDT. Every wait is bounded in time and count."""

from __future__ import annotations

import asyncio
import time

import pytest
from cexarb.config import load_config
from cexarb.engine import Engine
from cexarb.venues.gateio.futures import GateUsdtFutures
from cexarb.venues.gateio.spot import GateSpot
from cexarb.venues.mexc.spot import MexcSpot
from cexarb.venues.sim.server import AccountSpec, SimServer

SPOT = "gateio-spot:BTC_USDT"
PERP = "gateio-futures:BTC_USDT"
START_USDT = 10_000.0


@pytest.fixture
async def server(binance_dir):
    srv = SimServer(binance_dir, [AccountSpec(api_key="k", api_secret="s")], speed=4.0)
    await asyncio.wait_for(srv.start(), 30)
    try:
        yield srv
    finally:
        await asyncio.wait_for(srv.stop(), 30)


def config_text(server: SimServer) -> str:
    base, ws = server.base_url, server.ws_base_url
    return f"""
mode = "paper"
duration_s = 40.0
sync_timeout_s = 20.0
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
balances = {{ gateio-spot = {{ USDT = {START_USDT} }}, gateio-futures = {{ USDT = {START_USDT} }} }}

[[strategies]]
type = "spot_futures_hedging"
[strategies.params]
strategy_id = "sfh-fee"
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


def test_connector_classes_state_their_fee_asset():
    assert GateSpot.buy_fee_in_base is True and MexcSpot.buy_fee_in_base is True
    assert GateUsdtFutures.buy_fee_in_base is False


async def test_paper_gate_spot_buy_books_qty_less_the_base_fee(server, tmp_path):
    path = tmp_path / "paper.toml"
    path.write_text(config_text(server))
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
        assert bal["USDT"].total == pytest.approx(START_USDT - sum(f.price * f.qty for f in buys), abs=1e-6)
        # the perp hedge's fees stay in USDT
        perp_fills = [f for f in om.fills if f.instrument_key == PERP]
        assert perp_fills and all(f.fee_base == 0.0 and f.fee > 0 for f in perp_fills)
    finally:
        engine.stop("test done")
        result = await asyncio.wait_for(task, 60)
    assert result.pending_tasks == 0
    assert result.strategies["sfh-fee"].error is None
