"""SPOT_FUTURES_HEDGING order timeouts on small hand-built books, driven through the real replay
driver and simulated venue with slow order entry.

A timed-out order is not an unfilled one: it may still fill. On its timeout the strategy cancels
it and waits (up to another ``order_timeout_s``) for its final state, then acts on what it filled;
nothing is re-sized or re-sent while it may still fill. If it is still open after that grace, the
strategy fails saying so. Every test checks that the strategy never has two orders working at once
and that it never ends net long or short more than one perp lot (unless it failed with an order
still open, which it says)."""

from __future__ import annotations

import asyncio
import itertools

from cexarb.backtest import Backtest, BacktestConfig, BacktestResult
from cexarb.model import Order, OrderStatus
from cexarb.strategy import StrategyType, registry
from cexarb.venues.base import OrderUpdate, PrivateEvent
from cexarb.venues.sim.venue import SimLatency, SimVenue
from handbuilt import Msg, fast_cancels
from test_spot_futures_rebalancing import MS, PERP, SPOT, T0, _steady_perp, recording

PERP_LOT = PERP.lot_size
NORMAL = SimLatency()  # 1 ms each way
SLOW = SimLatency(order_entry_ns=150 * MS)  # orders reach the venue after the 0.1 s timeout, within 0.2 s
SILENT = SimLatency(order_entry_ns=500 * MS)  # ... after the grace as well


def make(perp_msgs: list[Msg] | None = None, latency: SimLatency = NORMAL, **params: object) -> Backtest:
    defaults: dict[str, object] = {
        "position_size_usdt": 12_000.0, "max_hedge_ratio_drift": 0.01, "max_holding_time_s": 1.0,
        "order_timeout_s": 0.1,
    }
    strategy = registry.create(
        StrategyType.SPOT_FUTURES_HEDGING, spot_instrument=SPOT.key, futures_instrument=PERP.key,
        **{**defaults, **params},
    )
    rec = recording(perp_msgs if perp_msgs is not None else _steady_perp())
    return Backtest(rec, strategy, BacktestConfig(end_of_data_lead_s=0.0, latency=latency))


def venues(bt: Backtest) -> tuple[SimVenue, SimVenue]:
    spot, perp = bt.private[SPOT.venue], bt.private[PERP.venue]
    assert isinstance(spot, SimVenue) and isinstance(perp, SimVenue)
    return spot, perp


def slow_while(bt: Backtest, state: str, latency: SimLatency, *slow: SimVenue) -> None:
    """The venues ``slow`` take ``latency`` for what is sent to them while the strategy is in
    ``state``, their own latency otherwise."""
    normal = [venue.latency for venue in slow]

    def on_transition(ts_ns: int, from_state: str, to_state: str, reason: str) -> None:
        for venue, own in zip(slow, normal, strict=True):
            venue.latency = latency if to_state == state else own

    bt.strategy.on_transition = on_transition


def states(res: BacktestResult) -> list[str]:
    return [t[2] for t in res.transitions]


def position(res: BacktestResult, key: str) -> float:
    return res.series[f"position:{key}"][-1]


def assert_one_order_at_a_time(orders: list[Order]) -> None:
    """Each order was sent only after the previous one reached its final state at the venue."""
    assert all(o.status.is_terminal for o in orders), [(o.tag, o.status.value) for o in orders]
    for prev, nxt in itertools.pairwise(orders):
        assert nxt.created_ns >= prev.updated_ns, f"{nxt.tag} sent while {prev.tag} was still working"


def assert_net_within_one_lot(res: BacktestResult) -> None:
    assert abs(position(res, SPOT.key) + position(res, PERP.key)) <= PERP_LOT + 1e-12


def test_orders_that_fill_after_their_timeout_are_waited_for_and_acted_on() -> None:
    """Every order (spot entry, hedge, both closes) reaches the venue 150 ms after it is sent, past
    the 0.1 s timeout but within the grace: each is cancelled too late, fills, and the strategy
    carries on with what it filled. (Before: ERROR at the spot timeout, the spot long unhedged.)"""
    res = asyncio.run(make(latency=SLOW).run())
    assert states(res) == ["OPENING_SPOT_POSITION", "OPENING_FUTURES_HEDGE", "MONITORING_POSITIONS",
                           "CLOSING_POSITIONS", "COMPLETED"], res.strategy.error
    assert [(o.tag, o.status) for o in res.orders] == [
        ("spot_entry", OrderStatus.FILLED), ("futures_hedge", OrderStatus.FILLED),
        ("close_futures", OrderStatus.FILLED), ("close_spot", OrderStatus.FILLED),
    ]
    assert_one_order_at_a_time(res.orders)
    assert position(res, SPOT.key) == 0.0 and position(res, PERP.key) == 0.0
    timeouts = [text for _, kind, text in res.markers if kind == "timeout"]
    assert len(timeouts) == 4 and all("cancel sent" in t for t in timeouts)


def test_spot_entry_still_open_after_the_grace_fails_saying_so() -> None:
    res = asyncio.run(make(latency=SILENT).run())
    assert states(res) == ["OPENING_SPOT_POSITION", "ERROR"]
    error = res.strategy.error or ""
    assert "spot entry" in error and "still open at the venue" in error, error
    # it fails at the end of the grace (2 x order_timeout_s after the order went out), not before
    entry_ns = res.orders[0].created_ns
    assert res.transitions[-1][0] - entry_ns == 200 * MS
    assert [o.tag for o in res.orders] == ["spot_entry"]


def test_spot_entry_already_done_when_its_timer_fires_is_hedged() -> None:
    """The spot venue's order updates never reach the strategy (lost on the way) though the order
    records are kept: the spot entry's record is FILLED when its timeout fires, and the strategy
    hedges it at once, with no cancel sent."""
    bt = make()
    deliver = bt.orders._listeners[0]

    def lose_spot_order_updates(event: PrivateEvent) -> None:
        if not (isinstance(event, OrderUpdate) and event.instrument_key == SPOT.key):
            deliver(event)

    bt.orders._listeners[0] = lose_spot_order_updates
    res = asyncio.run(bt.run())
    assert states(res)[:3] == ["OPENING_SPOT_POSITION", "OPENING_FUTURES_HEDGE", "MONITORING_POSITIONS"]
    spot_entry, hedge = res.orders[:2]
    assert spot_entry.status is OrderStatus.FILLED and hedge.tag == "futures_hedge"
    assert hedge.created_ns - spot_entry.created_ns == 100 * MS  # at the timeout
    assert not any(kind == "timeout" for _, kind, _ in res.markers)
    # the close's updates are lost too (same venue), but its records are acted on at their timeouts
    assert position(res, PERP.key) == 0.0 and position(res, SPOT.key) == 0.0


def test_spot_entry_cancelled_at_its_timeout_with_nothing_filled_ends_flat() -> None:
    bt = make()
    spot, _ = venues(bt)
    spot.latency = SILENT
    fast_cancels(spot)
    res = asyncio.run(bt.run())
    assert states(res) == ["OPENING_SPOT_POSITION", "COMPLETED"]
    assert [(o.tag, o.status, o.filled_qty) for o in res.orders] == [("spot_entry", OrderStatus.CANCELED, 0.0)]
    assert "timeout" in res.strategy.additional_data["exit_reason"]
    assert position(res, SPOT.key) == 0.0


def test_hedge_timeouts_never_stack_hedges() -> None:
    """The audit's case: the hedge reaches the venue 250 ms after it is sent, with a 0.1 s timeout.
    Before, each timeout re-sent a full hedge while the earlier ones were still in flight, and all
    of them filled (net short two lots' worth of spot and more). Now the one hedge is cancelled
    (too late), the grace expires with it still open, and the strategy fails saying so; the hedge
    then fills and the position is hedged, not over-hedged."""
    bt = make()
    _, perp = venues(bt)
    slow_while(bt, "OPENING_FUTURES_HEDGE", SimLatency(order_entry_ns=250 * MS), perp)
    res = asyncio.run(bt.run())
    assert states(res) == ["OPENING_SPOT_POSITION", "OPENING_FUTURES_HEDGE", "ERROR"]
    error = res.strategy.error or ""
    assert "futures hedge" in error and "still open at the venue" in error, error
    hedges = [o for o in res.orders if o.tag == "futures_hedge"]
    assert len(hedges) == 1 and hedges[0].status is OrderStatus.FILLED
    assert_one_order_at_a_time(res.orders)
    assert_net_within_one_lot(res)


def test_hedge_cancelled_at_its_timeout_is_resent_only_after_the_cancel_is_confirmed() -> None:
    """Hedges that never reach the venue in time are cancelled (the cancel beats them there); each
    retry goes out only once the previous hedge is known dead, sized from positions then; after
    ``max_hedge_retries`` the naked spot is unwound. Before, a retry went out while the timed-out
    hedge was still working."""
    bt = make(max_hedge_retries=1)
    _, perp = venues(bt)
    slow_while(bt, "OPENING_FUTURES_HEDGE", SILENT, perp)
    fast_cancels(perp)
    res = asyncio.run(bt.run())
    assert states(res) == ["OPENING_SPOT_POSITION", "OPENING_FUTURES_HEDGE", "CLOSING_POSITIONS", "COMPLETED"]
    assert [(o.tag, o.status, o.filled_qty) for o in res.orders[1:]] == [
        ("futures_hedge", OrderStatus.CANCELED, 0.0), ("futures_hedge", OrderStatus.CANCELED, 0.0),
        ("close_spot", OrderStatus.FILLED, 0.19999),
    ]
    assert res.orders[1].qty == res.orders[2].qty == 0.2
    assert_one_order_at_a_time(res.orders)
    assert position(res, SPOT.key) == 0.0 and position(res, PERP.key) == 0.0


def test_rebalance_filled_after_its_timeout_is_not_sent_again() -> None:
    """A partial hedge is topped up by a rebalance that fills after its timeout: the strategy
    waits for it instead of sending another one (before, it went back to monitoring as if the
    rebalance had failed, and its retry 20 ms later saw the hedge still short and sent a second
    rebalance while the first was in flight: over-hedged)."""
    perp_msgs: list[Msg] = [
        (T0, [(59990.0, 3.0)], [(59990.1, 5.0)], 1000, 1000, None, True),
        (T0 + 2_500_000, [(59990.0, 0.1)], [], 999, 1001, 998, False),  # partial hedge -> rebalance
        (T0 + 50 * MS, [(59990.0, 3.0)], [], 1002, 1003, 1001, False),
        *[(T0 + k * 100 * MS, [], [(59990.1, 5.0 + k / 1000)], 1002 + 2 * k, 1003 + 2 * k, 1001 + 2 * k, False)
          for k in range(1, 21)],
    ]
    bt = make(perp_msgs, max_holding_time_s=3600.0, rebalance_retry_s=0.02)
    _, perp = venues(bt)
    slow_while(bt, "REBALANCING", SLOW, perp)
    res = asyncio.run(bt.run())
    assert states(res)[:5] == ["OPENING_SPOT_POSITION", "OPENING_FUTURES_HEDGE", "MONITORING_POSITIONS",
                               "REBALANCING", "MONITORING_POSITIONS"]
    assert states(res)[-2:] == ["CLOSING_POSITIONS", "COMPLETED"]
    rebalances = [o for o in res.orders if o.tag == "rebalance"]
    assert [(o.status, o.filled_qty) for o in rebalances] == [(OrderStatus.FILLED, 0.1)]
    assert res.strategy.additional_data["rebalance_count"] == 1
    assert_one_order_at_a_time(res.orders)
    assert position(res, SPOT.key) == 0.0 and position(res, PERP.key) == 0.0


def test_close_orders_filled_after_their_timeout_finish_the_close() -> None:
    """Both close orders fill after their timeouts: the close goes on (before: ERROR at the first
    timeout, with the spot leg never sold)."""
    bt = make()
    slow_while(bt, "CLOSING_POSITIONS", SLOW, *venues(bt))
    res = asyncio.run(bt.run())
    assert states(res)[-2:] == ["CLOSING_POSITIONS", "COMPLETED"], res.strategy.error
    closes = [o for o in res.orders if o.tag.startswith("close")]
    assert [(o.tag, o.status) for o in closes] == [("close_futures", OrderStatus.FILLED),
                                                  ("close_spot", OrderStatus.FILLED)]
    assert_one_order_at_a_time(res.orders)
    assert position(res, SPOT.key) == 0.0 and position(res, PERP.key) == 0.0


def test_entry_refused_when_the_hedge_is_below_the_perp_min_notional() -> None:
    """50 USDT buys spot above its 5 USDT minimum, but the hedge (0.001 BTC perp, ~60 USDT) is below
    the perp's 100 USDT minimum: refuse before buying (before: bought spot, every hedge was
    rejected min_notional, then the spot was sold back, paying fees both ways)."""
    res = asyncio.run(make(position_size_usdt=50.0).run())
    assert states(res) == ["ERROR"]
    error = res.strategy.error or ""
    assert "position_size_usdt 50" in error and "min notional" in error and PERP.key in error, error
    assert res.orders == []
