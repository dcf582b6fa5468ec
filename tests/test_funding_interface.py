"""Funding on the public venue interface (``PublicVenue.funding`` -> ``FundingInfo``): the Gate
USDT futures connector against the loopback simulator (rate and next funding time as the
simulator states them, a REST re-read once a funding time has passed, a re-read of a rate no push
refreshed, ``futures.tickers`` pushes), the documented ticker payload, spot venues (None), the
replay venue, and the struct's checks. Every wait is bounded in time; loops are bounded in count.

Rates are fractions per funding interval; times ns since the epoch (the simulator states
seconds: ``server.funding_next_s``). The simulator's rate is ``server.funding_rate``;
``server.set_funding_rate`` changes it and pushes ``futures.tickers`` (PROTOCOLS.md §3.4)."""

from __future__ import annotations

import asyncio
import json
import time

import msgspec
import pytest
from cexarb import _core
from cexarb.backtest import ReplayPublicVenue
from cexarb.clock import SimClock
from cexarb.model import FundingEvent, FundingInfo, Instrument, InstrumentKind
from cexarb.venues.base import PublicVenue
from cexarb.venues.sim.server import AccountSpec
from cexarb.venues.ws import WsFrame
from loopback import gate_futures, gate_spot, mexc_spot, sim_server, started, wait_for

KEY, SECRET, UID = "fund-key-1", "fund-secret-1", 10001
FUT_KEY = "gateio-futures:BTC_USDT"
NS = 1_000_000_000
EIGHT_HOURS_NS = 8 * 3600 * NS
# the connector re-reads quickly in these tests (seconds)
FAST = {"funding_refresh_delay_s": 0.2, "funding_retry_s": 0.2}


@pytest.fixture
async def server(binance_dir):
    async with sim_server(binance_dir, AccountSpec(api_key=KEY, api_secret=SECRET, uid=UID)) as srv:
        yield srv


# ---- the struct and the replay venue (no I/O) ------------------------------------------------------


def test_funding_info_names_bad_fields():
    ok = {"instrument_key": FUT_KEY, "rate": 0.0001, "next_funding_ns": 1, "interval_ns": 1, "updated_ns": 1}
    assert FundingInfo(**ok).rate == 0.0001
    with pytest.raises(ValueError, match=r"rate must be finite, got nan"):
        FundingInfo(**(ok | {"rate": float("nan")}))
    for field in ("next_funding_ns", "interval_ns", "updated_ns"):
        with pytest.raises(ValueError, match=rf"{field} must be >= 0, got -5"):
            FundingInfo(**(ok | {field: -5}))


def test_replay_venue_states_the_assumed_funding():
    spot = Instrument(venue="replay", symbol="BTCUSDT", kind=InstrumentKind.SPOT, base="BTC",
                      quote="USDT", tick_size=0.01, lot_size=0.00001)
    perp = Instrument(venue="replay", symbol="BTCPERP", kind=InstrumentKind.PERP, base="BTC",
                      quote="USDT", tick_size=0.1, lot_size=0.001, funding_interval_hours=8.0)
    insts = {spot.key: spot, perp.key: perp}
    books = {k: _core.OrderBook(i.tick_size, i.lot_size) for k, i in insts.items()}
    t0 = 1_723_161_255 * NS  # 2024-08-08 23:54:15 UTC
    clock = SimClock(t0)
    venue = ReplayPublicVenue("replay", insts, books, clock=clock, funding_rate=0.0002)
    assert isinstance(venue, PublicVenue)
    assert venue.funding(spot.key) is None
    info = venue.funding(perp.key)
    assert info is not None and info.assumed and info.rate == 0.0002
    assert info.next_funding_ns == 1_723_161_600 * NS  # 2024-08-09 00:00 UTC
    assert info.interval_ns == EIGHT_HOURS_NS and info.updated_ns == t0
    clock.advance(1_723_161_600 * NS)  # at the funding time: the next one is 8 h on
    assert venue.funding(perp.key).next_funding_ns == 1_723_161_600 * NS + EIGHT_HOURS_NS
    with pytest.raises(KeyError, match="nosuch"):
        venue.funding("replay:nosuch")
    # no clock / rate given (as benchmarks build it): a perp's funding is unknown
    assert ReplayPublicVenue("replay", insts, books).funding(perp.key) is None
    with pytest.raises(ValueError, match="funding_rate must be finite, got inf"):
        ReplayPublicVenue("replay", insts, books, clock=clock, funding_rate=float("inf"))


# ---- Gate USDT futures against the simulator ---------------------------------------------------------


async def test_gate_futures_funding_is_the_simulators(server):
    async with started(gate_futures(server, KEY, SECRET)) as conn:
        info = conn.funding(FUT_KEY)
        assert info == FundingInfo(
            instrument_key=FUT_KEY,
            rate=server.funding_rate,
            next_funding_ns=server.funding_next_s * NS,
            interval_ns=EIGHT_HOURS_NS,
            updated_ns=info.updated_ns,
            mark_price=info.mark_price,
            mark_updated_ns=info.updated_ns,  # read with the rate, from the same contracts answer
        )
        assert info.mark_price > 0  # the contracts answer states a mark (the sim: its futures mid)
        with pytest.raises(KeyError, match="ETH_USDT"):
            conn.funding("gateio-futures:ETH_USDT")


async def test_gate_futures_rereads_funding_once_the_funding_time_passed(server):
    """No refresh call: the connector re-reads the contracts after the stated funding time and
    takes the venue's next time and rate (retrying while the venue still states the past time)."""
    funding_at = int(time.time()) + 3
    server.funding_next_s = funding_at
    server.set_funding_rate(0.0001)
    events: list[FundingEvent] = []
    async with started(gate_futures(server, KEY, SECRET, funding_max_age_s=None, **FAST)) as conn:
        conn.subscribe_market(lambda e: events.append(e) if isinstance(e, FundingEvent) else None)
        info = conn.funding(FUT_KEY)
        assert info.next_funding_ns == funding_at * NS and info.rate == pytest.approx(0.0001)
        server.set_funding_rate(0.00025)  # the venue's rate for the next interval
        deadline = time.monotonic() + 10
        while time.time() < funding_at:  # until the funding time (a few s, bounded)
            assert time.monotonic() < deadline, "funding time never came"
            await asyncio.sleep(0.05)
        server.settle_funding()  # the venue settles and states its next funding time
        assert server.funding_next_s > funding_at
        await wait_for(
            lambda: conn.funding(FUT_KEY).next_funding_ns == server.funding_next_s * NS, 10,
            "the next funding time re-read",
        )
        info = conn.funding(FUT_KEY)
        assert info.rate == pytest.approx(0.00025) and conn.funding_refreshes >= 1
        assert time.time_ns() - info.updated_ns < 10 * NS
        assert any(e.instrument_key == FUT_KEY and e.rate == pytest.approx(0.00025) for e in events)


async def test_gate_futures_rereads_a_rate_no_push_refreshed(server):
    """A rate no ticker push has refreshed for funding_max_age_s is read again over REST: the
    market is frozen (no market-driven ticker push) and the venue's rate changes without a push
    (the attribute, not set_funding_rate), so only the re-read can bring it."""
    async with started(gate_futures(server, KEY, SECRET, funding_max_age_s=0.5, **FAST)) as conn:
        await wait_for(lambda: conn.tickers_status == "subscribed", 5, "the tickers subscription ack")
        assert conn.funding(FUT_KEY).rate == pytest.approx(server.funding_rate)
        server.market.paused = True
        try:
            await asyncio.sleep(1.5)  # a market-driven push still due (they are >= 1 s apart) goes first
            pushes, refreshes = conn.funding_pushes, conn.funding_refreshes
            server.funding_rate = -0.0003  # no push: only the REST answers state it
            await wait_for(lambda: conn.funding(FUT_KEY).rate == pytest.approx(-0.0003), 5, "the new rate")
            assert conn.funding_refreshes > refreshes and conn.funding_pushes == pushes
            assert conn.funding(FUT_KEY).next_funding_ns == server.funding_next_s * NS
        finally:
            server.market.paused = False


async def test_gate_futures_ticker_push_updates_the_rate(server):
    """futures.tickers pushes carry funding_rate (PROTOCOLS.md §3.4): a change at the venue
    reaches funding() by push, no REST re-read."""
    async with started(gate_futures(server, KEY, SECRET, funding_max_age_s=None)) as conn:
        await wait_for(lambda: conn.tickers_status != "pending", 5, "the tickers subscription reply")
        assert conn.tickers_status == "subscribed"
        refreshes = conn.funding_refreshes
        pushes = conn.funding_pushes
        server.set_funding_rate(0.00042)
        await wait_for(lambda: conn.funding(FUT_KEY).rate == pytest.approx(0.00042), 5, "the pushed rate")
        assert conn.funding_pushes > pushes and conn.funding_refreshes == refreshes
        assert conn.funding(FUT_KEY).next_funding_ns == server.funding_next_s * NS


async def test_gate_futures_takes_the_documented_ticker_payload(server, data_dir):
    """The Gate docs' futures.tickers notification (shared/data/api, official example), fed to
    the connector's ticker handler: its funding_rate becomes the rate, the next funding time stays
    the REST one, a FundingEvent reports the change; a bad funding_rate is skipped and counted."""
    path = data_dir / "api" / "gateio" / "docs_examples" / "gate_futures_ws_examples.json"
    examples = json.loads(path.read_text())["examples"]
    frames = [e["json"] for e in examples
              if e["json"].get("channel") == "futures.tickers" and e["json"].get("event") == "update"]
    assert len(frames) == 1
    frame = frames[0]
    assert frame["result"][0]["funding_rate"] == "-0.000114"
    frame["result"][0]["contract"] = "BTC_USDT"  # the docs example names BTC_USD
    events: list[FundingEvent] = []
    async with started(gate_futures(server, KEY, SECRET, funding_max_age_s=None)) as conn:
        conn.subscribe_market(lambda e: events.append(e) if isinstance(e, FundingEvent) else None)
        before = conn.funding(FUT_KEY)
        recv_ns = time.time_ns()
        conn._on_funding_event(WsFrame(msgspec.json.encode(frame), recv_ns, 1))
        info = conn.funding(FUT_KEY)
        assert info.rate == pytest.approx(-0.000114) and info.updated_ns == recv_ns
        assert (info.next_funding_ns, info.interval_ns) == (before.next_funding_ns, before.interval_ns)
        assert [(e.rate, e.mark_price) for e in events] == [(pytest.approx(-0.000114), pytest.approx(118.35))]
        errors = conn.decode_errors
        frame["result"][0]["funding_rate"] = "abc"
        conn._on_funding_event(WsFrame(msgspec.json.encode(frame), recv_ns + 1, 1))
        assert conn.decode_errors == errors + 1 and conn.funding(FUT_KEY) == info


# ---- spot venues ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "key"), [(gate_spot, "gateio-spot:BTC_USDT"), (mexc_spot, "mexc-spot:BTCUSDT")], ids=["gate", "mexc"]
)
async def test_spot_venues_state_no_funding(server, make, key):
    async with started(make(server, KEY, SECRET)) as conn:
        assert conn.funding(key) is None
        assert isinstance(conn, PublicVenue)
        with pytest.raises(KeyError, match="NOSUCH"):
            conn.funding(key.split(":")[0] + ":NOSUCH")
