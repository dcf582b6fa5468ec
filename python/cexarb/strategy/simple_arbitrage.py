"""SIMPLE_ARBITRAGE: buy where it is cheap, sell where it is rich, when the gap pays the fees.

Behaviour from spec/state-machines.md ("1. Simple Arbitrage"):

``SCANNING_OPPORTUNITIES → OPPORTUNITY_DETECTED → VALIDATING_OPPORTUNITY → EXECUTING_BUY_SIDE →
EXECUTING_SELL_SIDE → MONITORING_EXECUTION → PROFIT_REALIZED`` then back to scanning for the next
cycle, or COMPLETED when ``max_cycles`` is reached or data ends (any state → ERROR).

* Scanning, on every top-of-book change of either instrument: the executable entry spread for
  ``position_size_usdt`` in both directions (buy A / sell B and buy B / sell A), walking each
  book for the size and net of both taker fees (:func:`cexarb._core.entry_spread_bps`).
* Detected when the better direction's net spread ≥ ``min_profit_threshold``; validated again
  on the current books with each leg's slippage vs best ≤ ``slippage_tolerance``.
* Buy leg: IOC limit at best ask × (1 + slippage_tolerance) rounded up to the tick. Sell leg:
  IOC limit for the quantity actually received, in the sell instrument's nearest whole lot, at
  best bid × (1 − slippage_tolerance) rounded down to the tick. "Received" is the buy's filled
  quantity less the base the venue kept as its fee (:attr:`cexarb.model.Fill.fee_base`: Gate.io
  and MEXC spot take a buy's fee out of the base received), so both legs hold the same base and
  the hedge is delta-neutral to within half a sell lot.
  An unfilled sell remainder is recovered with a market order (at most twice), after which the
  received remainder is unwound on the buy venue (again for what a partly filled unwind left,
  up to ``max_recovery_attempts + 1`` unwinds): no leg is left naked, and the unwind never
  sells more base than the buy put there.
* Execution timeout: legs not done within ``max_execution_time_ms`` of detection → the cycle's
  working orders are cancelled and, once the venue has confirmed each one's end, whatever the buy
  put on the buy venue and the sell did not cover is sold back there at market (the position is
  closed, spec "Automatic position closure on execution timeouts"); then ERROR, naming what was
  closed. An order whose end the venue has not confirmed within the grace (``max_execution_time_ms``,
  at least 5 s) is left for the operator: ERROR says which.
* Monitoring: both legs done within ``max_execution_time_ms`` (else as above); profit realised =
  sell proceeds − buy cost − the fees paid in quote, plus the cycle's net base change (the lot
  remainder, or a base fee the sell did not cover) valued at the buy's average price. With
  fees in quote only that is sell proceeds − buy cost − fees (quote currency).

If the venue reports the buy's fills after its final order update (Gate.io's ``spot.usertrades``
and ``spot.orders`` are separate channels), the sell is sized on the fills known then: a base fee
not yet reported is not subtracted, and the cycle ends short of it (counted in the profit).

Inventory: selling on a spot venue needs base inventory there (arbitrage with pre-positioned
inventory); selling a perp opens or adds to a short.
"""

from __future__ import annotations

import enum
import math
from typing import Any

from cexarb import _core
from cexarb.model import InstrumentKind, Order, OrderStatus, OrderType, Side, TimeInForce
from cexarb.strategy.machine import (
    EndOfData, EventKind, StrategyError, StrategyMachine, StrategyParams, StrategyType, TimerEvent,
)
from cexarb.strategy.registry import register
from cexarb.venues.base import BookUpdate, OrderRequest, OrderUpdate

__all__ = ["ArbitrageState", "SimpleArbitrage", "SimpleArbitrageParams"]


class ArbitrageState(enum.IntEnum):
    SCANNING_OPPORTUNITIES = 0
    OPPORTUNITY_DETECTED = 1
    VALIDATING_OPPORTUNITY = 2
    EXECUTING_BUY_SIDE = 3
    EXECUTING_SELL_SIDE = 4
    MONITORING_EXECUTION = 5
    PROFIT_REALIZED = 6
    COMPLETED = 7
    ERROR = 8


class SimpleArbitrageParams(StrategyParams, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Parameters (spec names).

    Attributes:
        instrument_a / instrument_b: instrument keys ``venue:symbol`` of the same asset.
        position_size_usdt: notional per cycle, quote currency.
        min_profit_threshold: minimum net entry spread as a fraction (0.005 = 0.5 % = 50 bps).
        max_execution_time_ms: both legs must be done within this, from detection.
        slippage_tolerance: max fraction between best price and the limit price / average fill.
        max_cycles: completed cycles before COMPLETED (0 = unlimited).
        max_recovery_attempts: market orders tried for an unfilled sell remainder before unwinding.
        cooldown_ms: after a cycle that traded nothing (rejected or unfilled buy), opportunities
            are ignored for this long, so a persistent rejection does not hammer the venue.
    """

    instrument_a: str
    instrument_b: str
    position_size_usdt: float = 100.0
    min_profit_threshold: float = 0.005
    max_execution_time_ms: float = 5000.0
    slippage_tolerance: float = 0.002
    max_cycles: int = 1
    max_recovery_attempts: int = 2
    cooldown_ms: float = 1000.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.cooldown_ms) and self.cooldown_ms >= 0):
            raise ValueError(f"cooldown_ms must be finite and >= 0, got {self.cooldown_ms!r}")
        for name in ("position_size_usdt", "max_execution_time_ms"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and > 0, got {value!r}")
        if not (math.isfinite(self.min_profit_threshold) and self.min_profit_threshold > -1):
            raise ValueError(f"min_profit_threshold must be a finite fraction > -1, got {self.min_profit_threshold!r}")
        if not (math.isfinite(self.slippage_tolerance) and 0 <= self.slippage_tolerance < 0.1):
            raise ValueError(f"slippage_tolerance must be within 0..0.1, got {self.slippage_tolerance!r}")
        if self.max_cycles < 0:
            raise ValueError(f"max_cycles must be >= 0, got {self.max_cycles!r}")
        if self.max_recovery_attempts < 0:
            raise ValueError(f"max_recovery_attempts must be >= 0, got {self.max_recovery_attempts!r}")
        if self.instrument_a == self.instrument_b:
            raise ValueError(f"instrument_b must differ from instrument_a, got {self.instrument_b!r}")


A = ArbitrageState
# Enum members read through their class cost ~0.1 µs each (the metaclass lookup); the
# tick-to-order path reads these module constants instead.
_SCANNING, _DETECTED, _VALIDATING, _BUYING = (
    A.SCANNING_OPPORTUNITIES, A.OPPORTUNITY_DETECTED, A.VALIDATING_OPPORTUNITY, A.EXECUTING_BUY_SIDE,
)
_SCANNING_CODE = int(A.SCANNING_OPPORTUNITIES)
_EV_BOOK = EventKind.BOOK
_EV_BOOK_CODE = int(EventKind.BOOK)
# detection and validation on the same book message: the states walked in one table call
_ENTRY_PATH = (int(A.OPPORTUNITY_DETECTED), int(A.VALIDATING_OPPORTUNITY), int(A.EXECUTING_BUY_SIDE))
_ENTRY_REASONS = ("net spread above threshold", "validate on current books", "validated")
_SLIPPAGE_PATH = (int(A.OPPORTUNITY_DETECTED), int(A.VALIDATING_OPPORTUNITY), int(A.SCANNING_OPPORTUNITIES))
_SLIPPAGE_REASONS = ("net spread above threshold", "validate on current books", "slippage above tolerance")
_BUY, _LIMIT, _IOC, _REJECTED = Side.BUY, OrderType.LIMIT, TimeInForce.IOC, OrderStatus.REJECTED

#: after the execution deadline, how long at least the venue has to confirm the end of the
#: cycle's orders (cancelled or filled) before the strategy stops waiting, ms
_CANCEL_GRACE_MIN_MS = 5000.0

#: the buy leg of an opportunity: (qty_lots, limit_ticks, wire_qty, wire_price, qty, price)
_BuyOrder = tuple[int, int, str, str, float, float]
#: :meth:`SimpleArbitrage._scan`: (buy_on_a, net spread bps, qty, buy slippage bps, sell slippage
#: bps, buy book's best ask ticks, buy order or None below the threshold)
_Scan = tuple[bool, float, float, float, float, int, "_BuyOrder | None"]


@register
class SimpleArbitrage(StrategyMachine[SimpleArbitrageParams]):
    """Cross-venue price-difference capture with sequential legs (spec: state-machines.md)."""

    strategy_type = StrategyType.SIMPLE_ARBITRAGE
    State = ArbitrageState
    Params = SimpleArbitrageParams
    INITIAL = A.SCANNING_OPPORTUNITIES
    COMPLETED = A.COMPLETED
    ERROR = A.ERROR
    TRANSITIONS = {
        A.SCANNING_OPPORTUNITIES: (A.OPPORTUNITY_DETECTED, A.COMPLETED),
        A.OPPORTUNITY_DETECTED: (A.VALIDATING_OPPORTUNITY, A.SCANNING_OPPORTUNITIES),
        A.VALIDATING_OPPORTUNITY: (A.EXECUTING_BUY_SIDE, A.SCANNING_OPPORTUNITIES),
        A.EXECUTING_BUY_SIDE: (A.EXECUTING_SELL_SIDE, A.SCANNING_OPPORTUNITIES),  # scanning: nothing bought
        A.EXECUTING_SELL_SIDE: (A.MONITORING_EXECUTION,),
        A.MONITORING_EXECUTION: (A.PROFIT_REALIZED,),
        A.PROFIT_REALIZED: (A.SCANNING_OPPORTUNITIES, A.COMPLETED),
    }

    def __init__(self, params: SimpleArbitrageParams) -> None:
        super().__init__(params)
        self.buy_key = ""
        self.sell_key = ""
        self.detected_spread_bps = 0.0
        self.best_spread_bps: float | None = None  # best net spread seen while scanning
        self.cycles = 0
        self.cycle_start_ns = 0
        self.buy_order: Order | None = None
        self.sell_orders: list[Order] = []
        self.unwind_orders: list[Order] = []
        self._acted_on: set[str] = set()
        self.timed_out = False  # the cycle passed its execution deadline: closing, then ERROR
        self.recovery_attempts = 0
        self.cycle_profits: list[float] = []
        self.scans = 0
        self.ending = False
        self.cooldown_until_ns = 0
        self.failed_cycles = 0

    def watched_instruments(self) -> tuple[str, ...]:
        return (self.params.instrument_a, self.params.instrument_b)

    async def start(self) -> None:
        await super().start()
        p, ctx = self.params, self.ctx
        # read on every wake: cache the instruments and books (fails early on unknown keys)
        self._inst = {p.instrument_a: ctx.instrument(p.instrument_a), p.instrument_b: ctx.instrument(p.instrument_b)}
        self._book = {p.instrument_a: ctx.book(p.instrument_a), p.instrument_b: ctx.book(p.instrument_b)}
        a, b = self._inst[p.instrument_a], self._inst[p.instrument_b]
        for inst in (a, b):
            if inst.kind is InstrumentKind.INVERSE_PERP or inst.contract_size != 1.0:
                raise ValueError(
                    f"{inst.key}: simple_arbitrage trades equal base quantities on both legs; "
                    f"{inst.kind.value} with contract_size {inst.contract_size} is not supported"
                )
        self._book_a, self._book_b = self._book[p.instrument_a], self._book[p.instrument_b]
        # the scan, the validation and the buy leg's price and wire strings in one Rust call
        self._entry = _core.ArbEntry(
            self._book_a, self._book_b, p.position_size_usdt, max(a.min_notional, b.min_notional),
            p.min_profit_threshold * 1e4, p.slippage_tolerance,
            a.tick_size, a.lot_size, a.taker_fee, b.tick_size, b.lot_size, b.taker_fee,
        )
        self._slippage_bps = p.slippage_tolerance * 1e4
        self._orders = ctx.orders

    def warm(self) -> None:
        """The entry scan (:class:`cexarb._core.ArbEntry`: reads both books, changes nothing) on the
        current books, its result dropped: what the next book update runs first while scanning."""
        entry = getattr(self, "_entry", None)  # set by start()
        if entry is None or self._table.state != _SCANNING_CODE:
            return
        try:
            entry.scan()
        except _core.PricingError:  # a size error: the handler reports it on the next update
            pass

    # ---------------------------------------------------------------- helpers
    def _scan(self) -> _Scan | None:
        """The better direction now, from :class:`cexarb._core.ArbEntry` (one call): ``(buy_on_a,
        net spread bps, qty, buy slippage bps, sell slippage bps, buy book's best ask ticks, order)``
        with ``order`` = ``(qty_lots, limit_ticks, wire_qty, wire_price, qty, price)`` of the buy
        leg's IOC limit when the spread reaches ``min_profit_threshold`` (else None); None when a
        book is invalid or too thin.

        The size is the largest ≤ position_size_usdt (at instrument A's mid) in whole lots of both
        instruments; both directions walk both books for it, net of both taker fees
        (:func:`cexarb._core.best_cross`). The buy limit is the best ask raised by
        ``slippage_tolerance`` and rounded up to the tick.

        Raises:
            ValueError: the size is below the min notional of either instrument.
        """
        try:
            return self._entry.scan()
        except _core.PricingError as exc:
            raise self._size_error(exc) from None

    def _size_error(self, exc: Exception) -> ValueError:
        p = self.params
        return ValueError(f"position_size_usdt {p.position_size_usdt} on {p.instrument_a} / {p.instrument_b}: {exc}")

    def _cool_down(self) -> None:
        """A cycle traded nothing: ignore opportunities for ``cooldown_ms``."""
        self.failed_cycles += 1
        self.cooldown_until_ns = self.ctx.now_ns() + int(self.params.cooldown_ms * 1e6)

    def _end_cycle_state(self) -> A:
        if self.ending or (self.params.max_cycles and self.cycles >= self.params.max_cycles):
            return A.COMPLETED
        return A.SCANNING_OPPORTUNITIES

    # ---------------------------------------------------------------- handlers
    async def on_scanning_opportunities(self, event: Any) -> None:
        if event.__class__ is not BookUpdate:
            if isinstance(event, EndOfData):
                self.transition(A.COMPLETED, EventKind.END_OF_DATA, "end of data")
            return
        if event.ts_ns < self.cooldown_until_ns:
            return
        self.scans += 1
        try:  # self._scan() inlined: this is the tick-to-order path
            x = self._entry.scan()
        except _core.PricingError as exc:
            raise self._size_error(exc) from None
        if x is None:
            return
        spread = x[1]
        if self.best_spread_bps is None or spread > self.best_spread_bps:
            self.best_spread_bps = spread
        if x[6] is None:  # below min_profit_threshold
            return
        p = self.params
        if x[0]:
            self.buy_key, self.sell_key = p.instrument_a, p.instrument_b
        else:
            self.buy_key, self.sell_key = p.instrument_b, p.instrument_a
        self.detected_spread_bps = spread
        self.cycle_start_ns = ts = self._now()
        # Detected, and validated on the same books: the scan walked both legs for the size on
        # the current message, so detection -> validation -> buy is one step of the table.
        if x[3] > self._slippage_bps or x[4] > self._slippage_bps:
            self.transition_path(_SLIPPAGE_PATH, _EV_BOOK, _SLIPPAGE_REASONS)
            return
        # the tick-to-order path: the Rust table now (self.advance inlined, same timestamp as the
        # detection), the request, the order out; the log and the bookkeeping once it is out
        try:
            previous = self._table.transition_path(_ENTRY_PATH, _EV_BOOK_CODE, ts)
        except _core.IllegalTransitionError as exc:
            raise StrategyError(str(exc), state=self.state.name, cause=exc) from exc
        self.buy_order = await self._orders.submit(self._buy_request(x))
        self.record_path(previous, _ENTRY_PATH, _ENTRY_REASONS, ts)
        self._buy_sent(x[1])

    async def on_opportunity_detected(self, event: Any) -> None:
        # detection moves on at once (above); this runs only for an event that arrives in between
        self.transition(_VALIDATING, _EV_BOOK, "validate on current books")
        await self.on_validating_opportunity(event)

    async def on_validating_opportunity(self, event: Any) -> None:
        p = self.params
        x = self._scan()  # on the books as they are now
        if x is None or x[6] is None or x[0] != (self.buy_key == p.instrument_a):
            self.transition(_SCANNING, _EV_BOOK, "opportunity gone on validation")
            return
        if x[3] > self._slippage_bps or x[4] > self._slippage_bps:
            self.transition(_SCANNING, _EV_BOOK, "slippage above tolerance")
            return
        self.transition(_BUYING, _EV_BOOK, "validated")
        self.buy_order = await self._orders.submit(self._buy_request(x))
        self._buy_sent(x[1])

    def _buy_request(self, x: _Scan) -> OrderRequest:
        """The buy leg of a validated scan: an IOC limit at its price (state EXECUTING_BUY_SIDE).

        ArbEntry has put qty and price on the buy instrument's grids and formatted them exactly
        (what :meth:`OrderRequest.create` does), so the request is built directly.
        """
        assert x[6] is not None
        lots, ticks, wire_qty, wire_price, qty, price = x[6]
        return OrderRequest(
            instrument=self._inst[self.buy_key], side=_BUY, type=_LIMIT, qty_lots=lots, price_ticks=ticks,
            time_in_force=_IOC, client_order_id=self._orders.next_client_order_id(), tag="arb_buy",
            wire_qty=wire_qty, wire_price=wire_price, qty=qty, price=price,
        )

    def _buy_sent(self, spread_bps: float) -> None:
        """Bookkeeping once the buy order is out: markers, the execution deadline, a rejection."""
        self.sell_orders, self.unwind_orders, self.recovery_attempts = [], [], 0
        self._acted_on = set()  # sell-side orders whose end has been acted on
        self.timed_out = False
        self.markers.append(
            (self.cycle_start_ns, "entry", f"arb: buy {self.buy_key}, sell {self.sell_key}, {spread_bps:.2f} bps")
        )
        self.ctx.set_timer("execution_deadline", self.cycle_start_ns + int(self.params.max_execution_time_ms * 1e6))
        assert self.buy_order is not None
        if self.buy_order.status is _REJECTED:
            self.ctx.cancel_timer("execution_deadline")
            self._cool_down()
            self.transition(_SCANNING, EventKind.ORDER_UPDATE, f"buy rejected: {self.buy_order.reject_reason}")

    async def on_executing_buy_side(self, event: Any) -> None:
        if isinstance(event, EndOfData):
            self.ending = True
        if isinstance(event, TimerEvent) and event.name in ("execution_deadline", "cancel_grace"):
            await self._on_deadline(event.name)
            return
        order = self.buy_order
        if not (isinstance(event, OrderUpdate) and order and event.client_order_id == order.client_order_id):
            return
        if not order.status.is_terminal:
            return
        if self.timed_out:
            await self._close_after_timeout()
            return
        if order.filled_qty <= 0:
            self.ctx.cancel_timer("execution_deadline")
            self._cool_down()
            self.transition(
                A.SCANNING_OPPORTUNITIES, EventKind.ORDER_UPDATE, f"buy leg not filled ({order.status.value}: {order.reject_reason})"
            )
            return
        received = self._received_qty()
        self.transition(A.EXECUTING_SELL_SIDE, EventKind.ORDER_UPDATE, f"bought {order.filled_qty:g}, received {received:g}")
        await self._sell(received, market=False)

    def _sold_qty(self) -> float:
        return sum(o.filled_qty for o in self.sell_orders)

    def _received_qty(self) -> float:
        """Base units the buy leg put on the buy venue: its filled quantity less the base the venue
        kept as its fee (:attr:`cexarb.model.Fill.fee_base` of the buy's fills reported so far)."""
        assert self.buy_order is not None
        fee_base = sum(f.fee_base for f in self._orders.fills_of(self.buy_order.client_order_id))
        return max(self.buy_order.filled_qty - fee_base, 0.0)

    async def _sell(self, qty: float, market: bool) -> None:
        p = self.params
        inst = self.ctx.instrument(self.sell_key)
        # the nearest whole lot: the legs differ by at most half a sell lot (the sell venue's
        # inventory or margin carries it; only the unwind, on the buy venue, rounds down)
        lots = math.floor(qty / inst.lot_size + 0.5)
        if lots <= 0:
            await self._legs_done()
            return
        if market:
            req = OrderRequest.create(inst, Side.SELL, lots * inst.lot_size, type=OrderType.MARKET, tag="arb_sell_recovery")
        else:
            bid = self.ctx.book(self.sell_key).best_bid()
            if bid is None:
                await self._sell(qty, market=True)
                return
            limit_ticks = math.floor(bid[0] * (1 - p.slippage_tolerance) / inst.tick_size + 1e-9)
            req = OrderRequest.create(
                inst, Side.SELL, lots * inst.lot_size, price_ticks=limit_ticks, time_in_force=TimeInForce.IOC,
                tag="arb_sell",
            )
        order = await self.ctx.submit(req)
        self.sell_orders.append(order)
        if order.status is OrderStatus.REJECTED:
            self._acted_on.add(order.client_order_id)  # its update, when it comes, changes nothing
            await self._recover()

    async def _recover(self) -> None:
        """An unfilled sell remainder: retry at market, then unwind the received remainder (never
        more base than the buy put on the buy venue, rounded down to its lot)."""
        if any(o.is_open for o in self.unwind_orders):
            return  # an unwind is out: its update ends the legs
        unwound = sum(o.filled_qty for o in self.unwind_orders)
        remaining = self._received_qty() - self._sold_qty() - unwound
        sell_inst = self.ctx.instrument(self.sell_key)
        if remaining < sell_inst.lot_size * 0.5:
            await self._legs_done()
            return
        self.markers.append((self.ctx.now_ns(), "error", f"sell leg short by {remaining:g}; recovering"))
        if self.recovery_attempts < self.params.max_recovery_attempts:
            self.recovery_attempts += 1
            await self._sell(remaining, market=True)
            return
        await self._unwind()

    async def _unwind(self) -> None:
        """Sell back on the buy venue, at market, what the buy received and no sell or earlier
        unwind took (whole buy lots, never more than held); a partly filled unwind is followed by
        another, up to ``max_recovery_attempts + 1`` in all. The legs end when nothing (under a
        lot) is left, the attempts are spent, or an unwind is refused."""
        buy_inst = self.ctx.instrument(self.buy_key)
        remaining = self._received_qty() - self._sold_qty() - sum(o.filled_qty for o in self.unwind_orders)
        lots = math.floor(remaining / buy_inst.lot_size + 1e-9)
        if lots > 0 and len(self.unwind_orders) <= self.params.max_recovery_attempts:
            order = await self.ctx.submit(
                OrderRequest.create(buy_inst, Side.SELL, lots * buy_inst.lot_size, type=OrderType.MARKET, tag="arb_unwind")
            )
            self.unwind_orders.append(order)
            if order.status is not OrderStatus.REJECTED:
                return  # its update calls this again
            self._acted_on.add(order.client_order_id)
        if lots > 0:
            self.markers.append((self.ctx.now_ns(), "error", f"unwind left {remaining:g} on {self.buy_key}"))
        await self._legs_done()

    async def on_executing_sell_side(self, event: Any) -> None:
        if isinstance(event, EndOfData):
            self.ending = True
            return
        if isinstance(event, TimerEvent) and event.name in ("execution_deadline", "cancel_grace"):
            await self._on_deadline(event.name)
            return
        if not isinstance(event, OrderUpdate):
            return
        mine = {o.client_order_id: o for o in self.sell_orders + self.unwind_orders}
        order = mine.get(event.client_order_id)
        if order is None or not order.status.is_terminal or order.client_order_id in self._acted_on:
            return  # not ours, not done, or done and already acted on (a rejection seen at submit)
        self._acted_on.add(order.client_order_id)
        if self.timed_out:
            await self._close_after_timeout()
            return
        if order in self.unwind_orders:
            await self._unwind()  # the rest, if it filled only in part
        elif order.status is OrderStatus.FILLED:
            await self._legs_done()
        else:
            await self._recover()

    def _cycle_orders(self) -> list[Order]:
        return [o for o in (self.buy_order, *self.sell_orders, *self.unwind_orders) if o is not None]

    async def _on_deadline(self, timer: str) -> None:
        """``execution_deadline``: cancel the cycle's working orders, then close (once each has
        ended). ``cancel_grace``: the venue has not confirmed their end within the grace
        (``max_execution_time_ms``, at least ``_CANCEL_GRACE_MIN_MS``): ERROR naming them, their
        positions left for the operator."""
        p = self.params
        grace_ms = max(p.max_execution_time_ms, _CANCEL_GRACE_MIN_MS)
        if timer == "cancel_grace":
            if self.timed_out and not self.is_finished:
                still = [o.client_order_id for o in self._cycle_orders() if o.is_open]
                self.fail(
                    f"execution timeout ({p.max_execution_time_ms} ms): orders {still} still open at the venue "
                    f"{grace_ms} ms after their cancel; position left as it is",
                    EventKind.TIMER,
                )
            return
        self.timed_out = True
        leg = "buy" if self.state is A.EXECUTING_BUY_SIDE else "sell"
        self.markers.append((self.ctx.now_ns(), "error", f"{leg} leg not done within {p.max_execution_time_ms} ms: closing"))
        for order in self._cycle_orders():
            if order.is_open:
                await self.ctx.cancel(order)
        self.ctx.set_timer("cancel_grace", self.ctx.now_ns() + int(grace_ms * 1e6))
        await self._close_after_timeout()

    async def _close_after_timeout(self) -> None:
        """After the deadline, once no order of the cycle is working: sell back on the buy venue
        what the buy received and the sells did not cover (whole lots, never more than held),
        then ERROR. Waits (returns) while an order is still open: its update calls this again."""
        if self.is_finished or any(o.is_open for o in self._cycle_orders()):
            return
        p = self.params
        received = self._received_qty() if self.buy_order is not None else 0.0
        sold, unwound = self._sold_qty(), sum(o.filled_qty for o in self.unwind_orders)
        remaining = received - sold - unwound
        buy_inst = self.ctx.instrument(self.buy_key)
        lots = math.floor(remaining / buy_inst.lot_size + 1e-9)
        closing = self.unwind_orders and self.unwind_orders[-1].tag == "arb_timeout_unwind"
        if lots > 0 and not closing:
            if self.state is A.EXECUTING_BUY_SIDE:
                self.transition(A.EXECUTING_SELL_SIDE, EventKind.TIMER, f"timed out holding {remaining:g}: closing")
            order = await self.ctx.submit(
                OrderRequest.create(buy_inst, Side.SELL, lots * buy_inst.lot_size, type=OrderType.MARKET,
                                    tag="arb_timeout_unwind")
            )
            self.unwind_orders.append(order)
            if order.status is not OrderStatus.REJECTED:
                return  # its update calls this again
            self._acted_on.add(order.client_order_id)
        self.ctx.cancel_timer("cancel_grace")
        self.ctx.cancel_timer("execution_deadline")
        left = received - sold - sum(o.filled_qty for o in self.unwind_orders)
        self.fail(
            f"legs not done within {p.max_execution_time_ms} ms: received {received:g} on {self.buy_key}, "
            f"sold {sold:g} on {self.sell_key}, closed {received - sold - left:g} on {self.buy_key}; "
            f"{max(left, 0.0):g} left open",
            EventKind.TIMER,
        )

    async def _legs_done(self) -> None:
        self.ctx.cancel_timer("execution_deadline")
        self.transition(A.MONITORING_EXECUTION, EventKind.ORDER_UPDATE, "both legs done")
        await self.on_monitoring_execution(None)

    async def on_monitoring_execution(self, event: Any) -> None:
        orders = [o for o in [self.buy_order, *self.sell_orders, *self.unwind_orders] if o is not None]
        elapsed_ms = (self.ctx.now_ns() - self.cycle_start_ns) / 1e6
        om = self.ctx.orders
        fills = [f for o in orders for f in om.fills_of(o.client_order_id)]
        proceeds = sum(f.price * f.qty * (-f.side.sign) for f in fills)
        # a fee taken in base (Fill.fee_base) is counted once: in the base it removed, which is
        # either sold short of (net_base 0) or left as a net base change valued at the buy price
        quote_fees = sum(f.fee - f.fee_base * f.price for f in fills)
        net_base = sum(f.qty * f.side.sign - f.fee_base for f in fills)
        buy = self.buy_order
        profit = proceeds - quote_fees + (net_base * buy.avg_fill_price if buy is not None and net_base else 0.0)
        self.cycle_profits.append(profit)
        self.cycles += 1
        self.transition(A.PROFIT_REALIZED, EventKind.ORDER_UPDATE, f"cycle profit {profit:.4f} in {elapsed_ms:.1f} ms")
        self.markers.append((self.ctx.now_ns(), "exit", f"arb cycle {self.cycles}: profit {profit:.4f}"))
        await self.on_profit_realized(event)

    async def on_profit_realized(self, event: Any) -> None:
        nxt = self._end_cycle_state()
        self.transition(nxt, EventKind.ORDER_UPDATE, "next cycle" if nxt is A.SCANNING_OPPORTUNITIES else "done")

    def extra_result(self) -> dict[str, Any]:
        return {
            "cycles": self.cycles,
            "cycle_profits": list(self.cycle_profits),
            "best_spread_bps_seen": self.best_spread_bps,
            "min_profit_threshold_bps": self.params.min_profit_threshold * 1e4,
            "scans": self.scans,
            "failed_cycles": self.failed_cycles,
        }
