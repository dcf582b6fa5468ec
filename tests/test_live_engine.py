"""Live trading end to end: ``Engine(paper=False)`` and ``cexarb run CONFIG`` (``mode = "live"``,
keys from the environment) trade SPOT_FUTURES_HEDGING through the Gate spot and USDT futures
connectors -- signed REST orders, signed private WebSocket channels -- against the loopback
simulator, which plays the venue: every order reaches it, the strategy's positions equal the
account's there, and the stop leaves no order of the strategy open at the venue. Every wait is
bounded."""

from __future__ import annotations

import asyncio
import time

import pytest
from cexarb.config import load_config, parse_config
from cexarb.engine import Engine, LiveTradingRefused
from cexarb.model import OrderStatus
from cexarb.run_cli import main as run_main
from cexarb.venues.sim.server import AccountSpec, SimServer
from loopback import sim_server
from test_paper_engine import (
    GATE_SPOT,
    MEXC_SPOT,
    PERP,
    SPOT,
    arb_config_text,
    assert_funding_booked,
    assert_one_arb_cycle,
    config_text_static,
    paper_config_text,
)

KEY, SECRET, UID = "live-key", "live-secret", 20001
VENUES = ("GATEIO_SPOT", "GATEIO_FUTURES")


@pytest.fixture
async def server(binance_dir):
    async with sim_server(binance_dir, AccountSpec(api_key=KEY, api_secret=SECRET, uid=UID), speed=4.0) as srv:
        yield srv


@pytest.fixture
def live_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for v in VENUES:
        monkeypatch.setenv(f"CEXARB_{v}_API_KEY", KEY)
        monkeypatch.setenv(f"CEXARB_{v}_API_SECRET", SECRET)
        monkeypatch.setenv(f"CEXARB_{v}_UID", str(UID))


def live_config_text(server: SimServer, duration_s: float) -> str:
    """The paper run's config (SPOT_FUTURES_HEDGING on Gate spot + USDT futures), live."""
    text = paper_config_text(server.base_url, server.ws_base_url, duration_s=duration_s)
    return text.replace('mode = "paper"', 'mode = "live"', 1).replace('strategy_id = "sfh-paper"', 'strategy_id = "sfh-live"')


def _venue_position(server: SimServer, key: str) -> float:
    venue = key.partition(":")[0]
    return server.accounts[0].venues[venue].position(key).qty


def _at_venue(server: SimServer) -> list[str]:
    """The client order ids (Gate ``text`` less its ``t-``) of the orders the simulator -- the
    venue -- holds for the account."""
    return [r.text.removeprefix("t-") for orders in server.accounts[0].orders.values() for r in orders.values()]


def _open_at_venue(server: SimServer) -> list[str]:
    """Of those, the ones the venue still has open."""
    acc = server.accounts[0]
    return [r.text.removeprefix("t-") for orders in acc.orders.values() for r in orders.values()
            if not acc.order_state(r).status.is_terminal]


async def test_live_engine_trades_on_the_venue_and_stops_flat(server, tmp_path, live_keys):
    path = tmp_path / "live.toml"
    path.write_text(live_config_text(server, duration_s=10.0))
    engine = Engine(load_config(path), paper=False)
    result = await asyncio.wait_for(engine.run(install_signal_handlers=False), 90)
    assert result.mode == "live" and result.pending_tasks == 0
    assert result.stop_reason.startswith("duration"), result.stop_reason
    run = result.strategies["sfh-live"]
    assert run.error is None, run.error
    states = [to for _, _, to, _ in run.transitions]
    assert states[:3] == ["OPENING_SPOT_POSITION", "OPENING_FUTURES_HEDGE", "MONITORING_POSITIONS"], states
    assert "CLOSING_POSITIONS" in states and run.result.final_state == "COMPLETED", states
    # every order went to the venue (the simulator), none to an in-process paper account
    assert sorted(_at_venue(server)) == sorted(o.client_order_id for o in run.orders)
    assert len(run.orders) >= 4
    assert all(o.venue_order_id for o in run.orders)
    assert all(o.status is not OrderStatus.REJECTED for o in run.orders), [o.reject_reason for o in run.orders]
    # the fills the strategy booked are the venue's, and so are its positions
    spot_fills = [f for f in run.fills if f.instrument_key == SPOT]
    perp_fills = [f for f in run.fills if f.instrument_key == PERP]
    assert spot_fills and perp_fills
    assert run.positions[PERP] == pytest.approx(_venue_position(server, PERP), abs=1e-12)
    assert abs(run.positions[PERP]) < 1e-9
    spot_buy = sum(f.qty for f in spot_fills if f.side.value == "buy")
    spot_sell = sum(f.qty for f in spot_fills if f.side.value == "sell")
    assert run.positions[SPOT] == pytest.approx(spot_buy - spot_sell - sum(f.fee_base for f in spot_fills), abs=1e-12)
    # nothing of the strategy is left open at the venue, and the engine never used the account's
    # cancel-all (a shared account's other orders are not the strategy's to cancel)
    assert _open_at_venue(server) == []
    assert all(o.status.is_terminal for o in run.orders)
    view = engine.runners[0].ctx.private["gateio-spot"]
    with pytest.raises(RuntimeError, match="other clients' orders"):
        await view.cancel_all()


async def test_a_strategy_sees_only_its_own_orders_on_a_shared_account(server, tmp_path, live_keys):
    """An order placed on the same account by another client (not through the engine) reaches
    the account's private stream; the strategy's order manager never sees it."""
    path = tmp_path / "live.toml"
    path.write_text(live_config_text(server, duration_s=6.0))
    engine = Engine(load_config(path), paper=False)
    task = asyncio.ensure_future(engine.run(install_signal_handlers=False))
    try:
        for _ in range(400):  # bounded: up to 20 s for start-up
            if engine.runners:
                break
            await asyncio.sleep(0.05)
        assert engine.runners
        conn = engine.connectors["gateio-spot"]
        inst = conn.instruments()[SPOT]
        from cexarb.model import Side, TimeInForce
        from cexarb.venues.base import OrderRequest

        book = conn.book(SPOT)
        other = await conn.place_order(OrderRequest.create(
            inst, Side.BUY, 0.001, price_ticks=book.best_bid_ticks() - 1000, time_in_force=TimeInForce.GTC,
            client_order_id="other-client-1",
        ))
        assert other.status is not OrderStatus.REJECTED
        await asyncio.sleep(1.0)
    finally:
        result = await asyncio.wait_for(task, 90)
    run = result.strategies["sfh-live"]
    assert "other-client-1" not in {o.client_order_id for o in run.orders}
    assert all(f.client_order_id != "other-client-1" for f in run.fills)
    # the other client's resting order is still open at the venue: the stop cancelled only the
    # strategy's own orders
    assert _open_at_venue(server) == ["other-client-1"]


async def test_run_cli_trades_live_with_keys_from_the_environment(server, tmp_path, live_keys, capsys):
    path = tmp_path / "live.toml"
    path.write_text(live_config_text(server, duration_s=30.0))
    code = await asyncio.wait_for(asyncio.to_thread(run_main, [str(path), "--duration", "6"]), 90)
    captured = capsys.readouterr()
    assert code == 0, captured
    assert "LIVE trading: orders go to gateio-spot at " + server.base_url in captured.err
    assert "sfh-live: spot_futures_hedging" in captured.out and "duration 6 s elapsed" in captured.out
    assert KEY not in captured.out + captured.err and SECRET not in captured.out + captured.err
    assert len(_at_venue(server)) >= 2


def test_live_without_keys_for_every_venue_is_refused(tmp_path, capsys, monkeypatch):
    text = config_text_static("live")
    path = tmp_path / "live.toml"
    path.write_text(text)
    for v in VENUES:
        for var in (f"CEXARB_{v}_API_KEY", f"CEXARB_{v}_API_SECRET"):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CEXARB_GATEIO_SPOT_API_KEY", "key-x")
    monkeypatch.setenv("CEXARB_GATEIO_SPOT_API_SECRET", "secret-x")
    assert run_main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "refusing live trading: no API keys for gateio-futures" in err
    assert "key-x" not in err and "secret-x" not in err
    with pytest.raises(LiveTradingRefused, match="none for gateio-futures"):
        Engine(parse_config(text), paper=False)


async def test_live_simple_arbitrage_between_mexc_and_gate(binance_dir, tmp_path, monkeypatch):
    """SIMPLE_ARBITRAGE live on MEXC spot (signed REST, protobuf market data, user data over a
    listen key) and Gate spot: one forced cycle buys on one venue and sells the received
    quantity on the other; the venue (the simulator) holds every order and the strategy's
    positions net to within half a sell lot."""
    for v in ("MEXC_SPOT", "GATEIO_SPOT"):
        monkeypatch.setenv(f"CEXARB_{v}_API_KEY", KEY)
        monkeypatch.setenv(f"CEXARB_{v}_API_SECRET", SECRET)
    monkeypatch.setenv("CEXARB_GATEIO_SPOT_UID", str(UID))
    balances = {"mexc-spot": {"USDT": 10_000.0, "BTC": 0.1}, "gateio-spot": {"USDT": 10_000.0, "BTC": 0.1}}
    async with sim_server(binance_dir, AccountSpec(api_key=KEY, api_secret=SECRET, uid=UID, balances=balances),
                          speed=4.0) as srv:
        path = tmp_path / "arb.toml"
        path.write_text(arb_config_text(srv.base_url, srv.ws_base_url, mode="live", strategy_id="arb-live"))
        engine = Engine(load_config(path), paper=False)
        result = await asyncio.wait_for(engine.run(install_signal_handlers=False), 90)
        run = result.strategies["arb-live"]
        assert result.mode == "live"
        assert_one_arb_cycle(engine, run)
        assert sorted(_at_venue(srv)) == sorted(o.client_order_id for o in run.orders)
        for key in (MEXC_SPOT, GATE_SPOT):  # the strategy's positions are the venue's fills
            fills_at_venue = await srv.accounts[0].venues[key.partition(":")[0]].fills(key)
            assert sum(f.qty * f.side.sign for f in fills_at_venue) == pytest.approx(
                sum(f.qty * f.side.sign for f in run.fills if f.instrument_key == key), abs=1e-12)
        assert _open_at_venue(srv) == []


async def test_live_funding_is_booked_for_the_strategy_as_the_venue_pays_it(server, tmp_path, live_keys):
    """The venue (the simulator) states a funding time a few seconds ahead; at it the engine
    books the strategy's share of the account's funding -- its own short perp at the venue's
    stated rate and mark price (Instrument.funding_payment, the venue's formula) -- in its PnL."""
    funding_at = int(time.time()) + 7
    server.funding_next_s = funding_at
    path = tmp_path / "live.toml"
    path.write_text(live_config_text(server, duration_s=11.0))
    engine = Engine(load_config(path), paper=False)
    result = await asyncio.wait_for(engine.run(install_signal_handlers=False), 90)
    event, _ = assert_funding_booked(engine, result.strategies["sfh-live"], funding_at)
    # the price is the mark the venue stated (its contracts answer and ticker pushes), not the mid
    info = engine.connectors["gateio-futures"].funding(PERP)
    assert info.mark_price > 0 and abs(event.mark_price - info.mark_price) <= 0.01 * info.mark_price


@pytest.mark.parametrize("cancel", [True, False])
async def test_live_start_cancels_the_orders_an_earlier_run_left_open(server, tmp_path, live_keys, caplog, cancel):
    """A crash leaves a strategy's resting order at the venue. At the next live start the engine
    finds it (client order id ``{strategy_id}-{session}-{n}`` of another session) and, unless
    ``cancel_stale_orders = false``, cancels it before the strategy runs: this run could not
    manage it. Another client's order, and one of a strategy whose id merely starts the same,
    stay open either way. A perp position the account already holds is logged and is not the
    strategy's."""
    from cexarb.model import Side, TimeInForce
    from cexarb.venues.base import OrderRequest
    from loopback import gate_futures, gate_spot, started

    left = ["sfh-live-9f3a1c-7", "other-client-2", "sfh-live-2-9f3a1c-1"]
    async with started(gate_spot(server, KEY, SECRET, UID)) as conn:
        await conn.wait_synced(SPOT, 15)
        inst, book = conn.instruments()[SPOT], conn.book(SPOT)
        for coid in left:
            order = await conn.place_order(OrderRequest.create(
                inst, Side.BUY, 0.001, price_ticks=book.best_bid_ticks() - 1000, time_in_force=TimeInForce.GTC,
                client_order_id=coid,
            ))
            assert order.status is not OrderStatus.REJECTED, order.reject_reason
    assert sorted(_open_at_venue(server)) == sorted(left)
    # and a perp position an earlier run left (a short of one contract)
    async with started(gate_futures(server, KEY, SECRET)) as fut:
        await fut.wait_synced(PERP, 15)
        short = await fut.place_order(OrderRequest.create(fut.instruments()[PERP], Side.SELL, 1, tag="left"))
        assert short.status is not OrderStatus.REJECTED, short.reject_reason
    await asyncio.sleep(0.2)
    held = _venue_position(server, PERP)
    assert held == -1

    text = live_config_text(server, duration_s=2.0)
    if not cancel:
        text = "cancel_stale_orders = false\n" + text
    path = tmp_path / "live.toml"
    path.write_text(text)
    engine = Engine(load_config(path), paper=False)
    with caplog.at_level("WARNING", logger="cexarb.engine"):
        result = await asyncio.wait_for(engine.run(install_signal_handlers=False), 90)
    assert result.stale_orders_found == 1
    assert [o.client_order_id for o in engine.stale_orders] == ["sfh-live-9f3a1c-7"]
    assert result.stale_orders_cancelled == (1 if cancel else 0)
    assert "sfh-live-9f3a1c-7" in caplog.text and "earlier run" in caplog.text
    still_open = set(_open_at_venue(server))
    assert ("sfh-live-9f3a1c-7" in still_open) is not cancel
    assert {"other-client-2", "sfh-live-2-9f3a1c-1"} <= still_open
    # the strategy itself ran as usual and left nothing of its own session open
    run = result.strategies["sfh-live"]
    assert run.error is None, run.error
    assert not still_open & {o.client_order_id for o in run.orders}
    # the position held at start is reported, and not taken for the strategy's
    assert f"holds a position of {held:g} {PERP} at start" in caplog.text
    assert run.positions[PERP] == pytest.approx(_venue_position(server, PERP) - held, abs=1e-12)
