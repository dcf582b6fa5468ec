"""SPOT_FUTURES_HEDGING: long spot, short perpetual, delta-neutral, to earn funding and basis.

Behaviour from spec/spot-futures-hedging.md:

``ANALYZING_MARKET → OPENING_SPOT_POSITION → OPENING_FUTURES_HEDGE → MONITORING_POSITIONS ⇄
REBALANCING → CLOSING_POSITIONS → COMPLETED`` (any state → ERROR).

* Entry (ANALYZING_MARKET): both books valid; annualised funding ≥ ``target_funding_rate``;
  executable entry basis (perp bid average − spot ask average for the size, bps) ≥
  ``min_basis_bps``; slippage of each leg within ``max_entry_slippage_bps``.
* Spot leg first (market buy of ``position_size_usdt`` worth, whole lots), then the futures hedge
  sized on the actual spot fill: ``perp qty = spot qty × hedge_ratio × spot mid / perp mid``
  (notional hedge), rounded to the nearest lot. Entry is refused (ERROR) when that hedge is below
  one perp lot or the perp's min notional. A hedge that cannot be placed is retried, sized as the
  target hedge of the spot position less the perp position already held, then the naked spot leg
  is unwound (CLOSING_POSITIONS): exposure never stays unhedged by design.
* Monitoring on every top-of-book change: hedge ratio (futures notional / spot notional), delta,
  PnL (realised + unrealised at mid − fees + funding received). Exit on take-profit, stop-loss,
  basis stop, max holding time, or end of data. Rebalance the futures leg when the hedge ratio
  drifts more than ``max_hedge_ratio_drift`` from target and the correcting order is at least one
  lot and the venue's min notional.
* Closing: futures first (typically faster), then spot.
* Order timeouts: an order not done after ``order_timeout_s`` may still fill, so it is cancelled
  and the strategy waits up to another ``order_timeout_s`` for its final state, then acts on what
  it filled as if it had ended normally. Nothing is re-sized or re-sent while an order may still
  fill: the strategy has at most one order working at a time. An order still open after that grace
  is an error naming the order (it is still working at the venue).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import Any

import msgspec

from cexarb import _core
from cexarb.model import FundingEvent, Order, OrderStatus, Side
from cexarb.strategy.machine import (
    BookWatch,
    EndOfData,
    EventKind,
    StrategyMachine,
    StrategyParams,
    StrategyType,
    TimerEvent,
)
from cexarb.strategy.registry import register
from cexarb.venues.base import BookUpdate, OrderRequest, OrderUpdate

__all__ = ["HedgingState", "SpotFuturesHedging", "SpotFuturesHedgingParams"]


class HedgingState(enum.IntEnum):
    ANALYZING_MARKET = 0
    OPENING_SPOT_POSITION = 1
    OPENING_FUTURES_HEDGE = 2
    MONITORING_POSITIONS = 3
    REBALANCING = 4
    CLOSING_POSITIONS = 5
    COMPLETED = 6
    ERROR = 7


class SpotFuturesHedgingParams(StrategyParams, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Parameters (spec names; units in the names; rates and percentages as fractions).

    Attributes:
        spot_instrument / futures_instrument: instrument keys ``venue:symbol``.
        position_size_usdt: spot notional to buy, quote currency.
        hedge_ratio: target futures notional / spot notional (spec bounds 0.8–1.2).
        target_funding_rate: minimum annualised funding rate to enter (0.01 = 1 % APR).
        min_basis_bps: minimum executable entry basis (perp bid − spot ask), bps; negative allows
            paying some basis.
        max_entry_slippage_bps: maximum slippage of either entry leg vs its best price, bps.
        max_hedge_ratio_drift: |current − target hedge ratio| that triggers a rebalance.
        stop_loss_pct / profit_target_pct: exit when net PnL < −x / > x times position size.
        basis_stop_bps: exit when the mid basis (perp − spot) rises this far above its value at
            entry, bps: long spot / short perp loses ``qty × Δbasis`` as the basis widens.
        max_holding_time_s: exit after holding this long, seconds.
        order_timeout_s: an order not done after this long is cancelled; the strategy then waits
            up to this long again for its final state and acts on its fills (an order still open
            after that is an error), seconds.
        max_hedge_retries: attempts to place the futures hedge before unwinding spot.
        rebalance_retry_s: after a rebalance that did not fill, check the hedge again this much
            later even if prices have not moved.
        max_holding_time_hours / max_position_imbalance: the specs' names
            (spot-futures-hedging.md, state-machines.md), accepted for ``max_holding_time_s``
            (× 3600) and ``max_hedge_ratio_drift``; giving both names of one setting with
            different values is an error.
    """

    spot_instrument: str
    futures_instrument: str
    position_size_usdt: float = 200.0
    hedge_ratio: float = 1.0
    target_funding_rate: float = 0.01
    min_basis_bps: float = -10.0
    max_entry_slippage_bps: float = 5.0
    max_hedge_ratio_drift: float = 0.05
    stop_loss_pct: float = 0.02
    profit_target_pct: float = 0.01
    basis_stop_bps: float = 50.0
    max_holding_time_s: float = 24 * 3600.0
    order_timeout_s: float = 10.0
    max_hedge_retries: int = 2
    rebalance_retry_s: float = 1.0
    max_holding_time_hours: float | None = None
    max_position_imbalance: float | None = None

    def __post_init__(self) -> None:
        for alias, name, scale in (("max_holding_time_hours", "max_holding_time_s", 3600.0),
                                   ("max_position_imbalance", "max_hedge_ratio_drift", 1.0)):
            given = getattr(self, alias)
            if given is None:
                continue
            if not (math.isfinite(given) and given > 0):
                raise ValueError(f"{alias} must be finite and > 0, got {given!r}")
            value, current = given * scale, getattr(self, name)
            if current != _DEFAULTS[name] and current != value:
                raise ValueError(f"{alias} {given!r} and {name} {current!r} name one setting: give one of them")
            msgspec.structs.force_setattr(self, name, value)
        positive = ("position_size_usdt", "max_holding_time_s", "order_timeout_s", "max_hedge_ratio_drift",
                    "rebalance_retry_s")
        for name in positive:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and > 0, got {value!r}")
        if not (0.8 <= self.hedge_ratio <= 1.2):
            raise ValueError(f"hedge_ratio must be within 0.8..1.2 (spec hedge ratio bounds), got {self.hedge_ratio!r}")
        for name in ("stop_loss_pct", "profit_target_pct", "basis_stop_bps", "max_entry_slippage_bps"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        for name in ("target_funding_rate", "min_basis_bps"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)!r}")
        if self.max_hedge_retries < 0:
            raise ValueError(f"max_hedge_retries must be >= 0, got {self.max_hedge_retries!r}")
        if self.spot_instrument == self.futures_instrument:
            raise ValueError(f"futures_instrument must differ from spot_instrument, got {self.futures_instrument!r}")


H = HedgingState
_DEFAULTS = {f.name: f.default for f in msgspec.structs.fields(SpotFuturesHedgingParams)}


@register
class SpotFuturesHedging(StrategyMachine[SpotFuturesHedgingParams]):
    """Delta-neutral long spot / short perp (spec: spot-futures-hedging.md)."""

    strategy_type = StrategyType.SPOT_FUTURES_HEDGING
    State = HedgingState
    Params = SpotFuturesHedgingParams
    INITIAL = H.ANALYZING_MARKET
    COMPLETED = H.COMPLETED
    ERROR = H.ERROR
    TRANSITIONS = {
        H.ANALYZING_MARKET: (H.OPENING_SPOT_POSITION, H.COMPLETED),  # COMPLETED: data ended, no entry
        H.OPENING_SPOT_POSITION: (H.OPENING_FUTURES_HEDGE, H.COMPLETED),  # COMPLETED: nothing filled
        H.OPENING_FUTURES_HEDGE: (H.MONITORING_POSITIONS, H.CLOSING_POSITIONS),  # CLOSING: unwind naked spot
        H.MONITORING_POSITIONS: (H.REBALANCING, H.CLOSING_POSITIONS),
        H.REBALANCING: (H.MONITORING_POSITIONS, H.CLOSING_POSITIONS),
        H.CLOSING_POSITIONS: (H.COMPLETED,),
    }
    # Analysis sizes both legs against depth (any top change); monitoring reads mids only;
    # the order-driven states wait for their orders.
    BOOK_WATCH = {
        H.ANALYZING_MARKET: BookWatch.TOP,
        H.OPENING_SPOT_POSITION: BookWatch.NONE,
        H.OPENING_FUTURES_HEDGE: BookWatch.NONE,
        H.MONITORING_POSITIONS: BookWatch.PRICE,
        H.REBALANCING: BookWatch.NONE,
        H.CLOSING_POSITIONS: BookWatch.NONE,
    }

    def __init__(self, params: SpotFuturesHedgingParams) -> None:
        super().__init__(params)
        p = params
        self.spot_key = p.spot_instrument
        self.perp_key = p.futures_instrument
        # market data (spec context fields)
        self.spot_price = 0.0
        self.futures_price = 0.0
        self.funding_rate = 0.0
        self.basis_bps = 0.0
        self.initial_basis_bps: float | None = None
        # orders
        self.spot_order: Order | None = None
        self.futures_order: Order | None = None
        self.rebalance_order: Order | None = None
        self.close_order: Order | None = None
        # client order id of the order cancelled at its timeout (its grace is running)
        self._timeout_cancelled: str | None = None
        self.hedge_attempts = 0
        self.rebalance_count = 0
        self.rebalance_failures = 0
        self.entry_ns: int | None = None
        self.exit_reason: str | None = None
        # an exit that came while an entry order was working (end of data): acted on once hedged
        self.pending_exit: str | None = None
        self.max_abs_delta_base = 0.0
        self.max_hedge_drift = 0.0
        self.entry_analysis: dict[str, float] = {}

    def watched_instruments(self) -> tuple[str, ...]:
        return (self.spot_key, self.perp_key)

    # ---------------------------------------------------------------- helpers
    def _bind_legs(self) -> None:
        """Cache the two legs' instruments, books and position records (read on every wake)."""
        ctx = self.ctx
        self._spot_inst, self._perp_inst = ctx.instrument(self.spot_key), ctx.instrument(self.perp_key)
        self._spot_book, self._perp_book = ctx.book(self.spot_key), ctx.book(self.perp_key)
        self._spot_pos, self._perp_pos = ctx.orders.position(self.spot_key), ctx.orders.position(self.perp_key)

    def _qty_base(self, key: str) -> float:
        """Signed base-unit exposure of one leg at the current mids."""
        if key == self.spot_key:
            return self._spot_inst.base_qty(self._spot_pos.qty, self.spot_price or 1.0)
        return self._perp_inst.base_qty(self._perp_pos.qty, self.futures_price or 1.0)

    @property
    def spot_qty(self) -> float:
        return self._spot_pos.qty

    @property
    def futures_qty(self) -> float:
        return self._perp_pos.qty

    def _update_market(self) -> bool:
        spot_mid = self._spot_book.mid()
        perp_mid = self._perp_book.mid()
        if spot_mid is None or perp_mid is None:
            return False
        self.spot_price, self.futures_price = spot_mid, perp_mid
        self.basis_bps = _core.basis_bps(perp_mid, spot_mid)
        return True

    def net_pnl(self) -> float:
        """Net PnL of the two legs at mids: realised + unrealised − fees + funding (quote)."""
        total = 0.0
        for pos, inst, mark in ((self._spot_pos, self._spot_inst, self.spot_price),
                                (self._perp_pos, self._perp_inst, self.futures_price)):
            total += pos.realized_pnl - pos.fees + pos.funding
            if pos.qty:
                total += inst.unrealized_pnl(pos.qty, pos.avg_price, mark)
        return total

    def _timeout_at(self) -> int:
        return self.ctx.now_ns() + int(self.params.order_timeout_s * 1e9)

    async def _order_timed_out(self, order: Order, what: str, exposure: str) -> bool:
        """The ``order_timeout`` of ``order`` fired. A timed-out order is not an unfilled one.

        Returns True when ``order`` is already done (terminal): the caller acts on its
        ``filled_qty`` now, as on its final update. Otherwise it may still fill, so nothing may be
        re-sized or re-sent yet: the first time, cancel it and wait up to another
        ``order_timeout_s`` (s) for its final update (which the state handler then acts on); when
        that grace expires with the order still open, fail naming it and ``exposure`` (what it
        leaves at risk). Returns False in both cases.
        """
        if not order.is_open:
            return True
        timeout = self.params.order_timeout_s
        if self._timeout_cancelled != order.client_order_id:
            self._timeout_cancelled = order.client_order_id
            self._mark("timeout", f"{what} {order.client_order_id} not done within {timeout:g} s; cancel sent, "
                                  f"waiting up to {timeout:g} s for its final state")
            self.ctx.set_timer("order_timeout", self._timeout_at())
            await self.ctx.cancel(order)
            return False
        self.fail(
            f"{what} {order.client_order_id} still open at the venue ({order.status.value}, filled "
            f"{order.filled_qty:g} of {order.qty:g}) {timeout:g} s after it was cancelled at its "
            f"{timeout:g} s timeout; {exposure}: check the order and positions at the venue",
            EventKind.TIMER,
        )
        return False

    async def _order_done(self, event: Any, order: Order, what: str, exposure: Callable[[], str]) -> EventKind | None:
        """How ``event`` ends ``order``, if it does: ``ORDER_UPDATE`` for its final update (its
        ``order_timeout`` cancelled), ``TIMER`` for its ``order_timeout`` with the order already
        done (:meth:`_order_timed_out`, which cancels and waits otherwise); None: nothing to act
        on yet. ``exposure()`` says what a still-open order leaves at risk."""
        if isinstance(event, TimerEvent) and event.name == "order_timeout":
            return EventKind.TIMER if await self._order_timed_out(order, what, exposure()) else None
        if isinstance(event, OrderUpdate) and event.client_order_id == order.client_order_id and order.status.is_terminal:
            self.ctx.cancel_timer("order_timeout")
            return EventKind.ORDER_UPDATE
        return None

    def _after_timeout(self, order: Order) -> str:
        """`` after its N s timeout`` when ``order`` was cancelled at its timeout, else ``""``."""
        if self._timeout_cancelled == order.client_order_id:
            return f" after its {self.params.order_timeout_s:g} s timeout"
        return ""

    def _hedge_qty_perp(self, spot_base: float) -> float:
        """Perp quantity (instrument units, positive) hedging ``spot_base`` at the target notional ratio."""
        inst = self.ctx.instrument(self.perp_key)
        perp_base = spot_base * self.params.hedge_ratio * self.spot_price / self.futures_price
        units = perp_base / inst.base_qty(1.0, self.futures_price)
        return round(units / inst.lot_size) * inst.lot_size

    def _mark(self, kind: str, text: str) -> None:
        self.markers.append((self.ctx.now_ns(), kind, text))

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        await super().start()
        self._bind_legs()  # fails early on unknown instrument keys

    # ---------------------------------------------------------------- state handlers
    async def on_analyzing_market(self, event: Any) -> None:
        if isinstance(event, EndOfData):
            self.exit_reason = "no opportunity before end of data"
            self.transition(H.COMPLETED, EventKind.END_OF_DATA, self.exit_reason)
            return
        if not isinstance(event, BookUpdate):
            return
        spot_book, perp_book = self._spot_book, self._perp_book
        if not (spot_book.is_valid and perp_book.is_valid) or not self._update_market():
            return
        p = self.params
        spot, perp = self._spot_inst, self._perp_inst
        rate = self.ctx.funding_rate(self.perp_key)
        if rate is None:
            return  # funding unknown: cannot judge the carry yet
        self.funding_rate = rate
        interval_h = perp.funding_interval_hours or 8.0
        apr = _core.annualized_funding_rate(rate, interval_h)
        ask = spot_book.best_ask()
        if ask is None:
            return
        qty = math.floor(p.position_size_usdt / ask[0] / spot.lot_size + 1e-9) * spot.lot_size
        if qty <= 0 or qty * ask[0] < spot.min_notional:
            self.fail(f"position_size_usdt {p.position_size_usdt} is below one lot / min notional of {spot.key}")
            return
        bid = perp_book.best_bid()
        if bid is None:
            return
        perp_qty = self._hedge_qty_perp(qty)
        hedge_notional = perp.notional(perp_qty, bid[0])  # quote; contract size and inverse aware
        if perp_qty <= 0 or hedge_notional < perp.min_notional:
            self.fail(
                f"position_size_usdt {p.position_size_usdt} is hedged by {perp_qty:g} {perp.symbol} perp "
                f"({hedge_notional:.2f} quote at the bid), below one lot ({perp.lot_size:g}) / min notional "
                f"({perp.min_notional:g}) of {perp.key}"
            )
            return
        # the whole-lot hedge must be within the drift that triggers a rebalance: a rebalance
        # corrects in whole perp lots, so a position further off could never be brought back
        # signed: the hedge is short perp against long spot (+1 at equal notionals)
        ratio = _core.hedge_ratio(qty, self.spot_price, -perp.base_qty(perp_qty, self.futures_price),
                                  self.futures_price) or 0.0
        if abs(ratio - p.hedge_ratio) > p.max_hedge_ratio_drift:
            self.fail(
                f"position_size_usdt {p.position_size_usdt}: the nearest whole-lot hedge, {perp_qty:g} "
                f"{perp.symbol} (lot {perp.lot_size:g}), gives a hedge ratio of {ratio:.4f} against the target "
                f"{p.hedge_ratio:g}, beyond max_hedge_ratio_drift {p.max_hedge_ratio_drift:g}: raise the size "
                f"or the drift"
            )
            return
        spot_exec = spot_book.executable_price("buy", qty)
        perp_exec = perp_book.executable_price("sell", perp_qty)
        if not (spot_exec.complete and perp_exec.complete):
            return
        assert spot_exec.avg_price is not None and perp_exec.avg_price is not None
        entry_basis = _core.basis_bps(perp_exec.avg_price, spot_exec.avg_price)
        slippage = max(spot_exec.slippage_bps or 0.0, perp_exec.slippage_bps or 0.0)
        if apr < p.target_funding_rate or entry_basis < p.min_basis_bps or slippage > p.max_entry_slippage_bps:
            return
        self.entry_analysis = {
            "funding_rate": rate,
            "funding_apr": apr,
            "entry_basis_bps": entry_basis,
            "spot_slippage_bps": spot_exec.slippage_bps or 0.0,
            "perp_slippage_bps": perp_exec.slippage_bps or 0.0,
            "round_trip_fee_bps": 2e4 * (spot.taker_fee + perp.taker_fee),
            "expected_funding_per_interval_usdt": _core.expected_funding_pnl(
                -perp_qty * perp.base_qty(1.0, perp_exec.avg_price), perp_exec.avg_price, rate, 1.0
            ),
        }
        self.transition(
            H.OPENING_SPOT_POSITION, EventKind.BOOK, f"funding {apr:.2%} APR, entry basis {entry_basis:.2f} bps"
        )
        self._mark("entry", f"buy {qty:g} {spot.symbol} spot; basis {entry_basis:.2f} bps, funding {apr:.2%} APR")
        self.spot_order = await self.ctx.submit(
            OrderRequest.create(spot, Side.BUY, qty, tag="spot_entry")
        )
        if self.spot_order.status is OrderStatus.REJECTED:
            self.fail(f"spot entry rejected: {self.spot_order.reject_reason}", EventKind.ORDER_UPDATE)
            return
        self.ctx.set_timer("order_timeout", self._timeout_at())

    def _note_end_of_data(self, event: Any) -> bool:
        """While an entry order is working: remember an EndOfData (its reason becomes the exit
        reason the moment the position is hedged, see :meth:`_hedged_then`); True if it was one."""
        if isinstance(event, EndOfData):
            self.pending_exit = f"end of data ({event.reason})"
            return True
        return False

    async def _hedged_then(self, text: str) -> None:
        """The hedge is in place: monitor, or close at once for an exit noted while opening."""
        self._hedged(text)
        if self.pending_exit is not None:
            self.exit_reason, self.pending_exit = self.pending_exit, None
            await self._begin_close(EventKind.END_OF_DATA)
            return
        await self._monitor()  # the fills changed the positions: check the hedge now, not at the next tick

    async def on_opening_spot_position(self, event: Any) -> None:
        order = self.spot_order
        if order is None or self._note_end_of_data(event):
            return
        kind = await self._order_done(event, order, "spot entry", lambda: "if it fills, the spot leg is unhedged")
        if kind is None:
            return
        if order.filled_qty <= 0:
            self.exit_reason = (f"spot entry not filled ({order.status.value}: {order.reject_reason or 'no reason given'})"
                                f"{self._after_timeout(order)}")
            if order.status is OrderStatus.REJECTED:
                self.fail(self.exit_reason, kind)
            else:
                self.transition(H.COMPLETED, kind, self.exit_reason)
            return
        self.transition(H.OPENING_FUTURES_HEDGE, kind, f"spot filled {order.filled_qty:g}{self._after_timeout(order)}")
        await self._place_hedge()

    async def _place_hedge(self) -> None:
        """Sell the perp still missing from the target hedge of the spot position, whole lots.

        Sized as target − held: the target short (perp units) for the spot position at the current
        mids, less the short the perp position already holds (fills of earlier hedge attempts).
        Only called when no hedge order is working. Nothing missing (at least half a lot) counts as
        hedged; a target below one lot unwinds the spot.
        """
        self._update_market()
        perp = self._perp_inst
        target = self._hedge_qty_perp(self._qty_base(self.spot_key))
        if target <= 0:
            self.exit_reason = "spot fill too small to hedge with one futures lot; unwinding spot"
            await self._begin_close(EventKind.ORDER_UPDATE)
            return
        lots = round((target + self.futures_qty) / perp.lot_size)  # futures_qty < 0 when short
        if lots <= 0:
            await self._hedged_then(f"hedged by earlier fills: short {-self.futures_qty:g} perp")
            return
        self.hedge_attempts += 1
        self.futures_order = await self.ctx.submit(
            OrderRequest.create(perp, Side.SELL, lots * perp.lot_size, tag="futures_hedge")
        )
        if self.futures_order.status is OrderStatus.REJECTED:
            await self._hedge_failed(self.futures_order.reject_reason or "rejected")
            return
        self.ctx.set_timer("order_timeout", self._timeout_at())

    async def _hedge_failed(self, why: str) -> None:
        self._mark("error", f"futures hedge failed: {why}")
        if self.hedge_attempts <= self.params.max_hedge_retries:
            await self._place_hedge()
        else:
            self.exit_reason = f"futures hedge failed {self.hedge_attempts} times ({why}); unwinding spot"
            await self._begin_close(EventKind.ORDER_UPDATE)

    async def on_opening_futures_hedge(self, event: Any) -> None:
        order = self.futures_order
        if order is None or self._note_end_of_data(event):
            return
        exposure = lambda: (
            f"positions so far: spot {self.spot_qty:g}, perp {self.futures_qty:g} (the spot leg may be unhedged)"
        )
        if await self._order_done(event, order, "futures hedge", exposure) is None:
            return
        if order.status is not OrderStatus.FILLED:
            if order.filled_qty > 0:  # partial hedge: keep it, the monitor rebalances the rest
                self._mark("hedge", f"partial hedge {order.filled_qty:g}; rebalancing will complete it")
            else:
                await self._hedge_failed(f"{order.status.value}: {order.reject_reason}{self._after_timeout(order)}")
                return
        await self._hedged_then(f"short {order.filled_qty:g} perp @ {order.avg_fill_price:.2f}")

    def _hedged(self, text: str) -> None:
        """The hedge is in place: note the entry time and basis, start monitoring and the holding clock."""
        self._update_market()
        self.entry_ns = self.ctx.now_ns()
        self.initial_basis_bps = self.basis_bps
        self._mark("hedge", text)
        self.transition(H.MONITORING_POSITIONS, EventKind.ORDER_UPDATE, "hedged")
        self.ctx.set_timer("max_holding_time", self.entry_ns + int(self.params.max_holding_time_s * 1e9))

    def _exit_reason(self) -> str | None:
        p = self.params
        pnl = self.net_pnl()
        if pnl > p.position_size_usdt * p.profit_target_pct:
            return f"take-profit: net PnL {pnl:.2f} > {p.position_size_usdt * p.profit_target_pct:.2f}"
        if pnl < -p.position_size_usdt * p.stop_loss_pct:
            return f"stop-loss: net PnL {pnl:.2f} < {-p.position_size_usdt * p.stop_loss_pct:.2f}"
        # long spot / short perp: PnL = -qty x change of (perp - spot), so a rising basis is the loss
        if self.initial_basis_bps is not None and self.basis_bps - self.initial_basis_bps > p.basis_stop_bps:
            return f"basis stop: basis {self.basis_bps:.2f} bps vs {self.initial_basis_bps:.2f} at entry"
        return None

    def _rebalance_qty(self) -> float:
        """Signed futures order (instrument units) restoring the target hedge, or 0."""
        perp = self.ctx.instrument(self.perp_key)
        target_perp_base = -self._qty_base(self.spot_key) * self.params.hedge_ratio * self.spot_price / self.futures_price
        excess_base = self._qty_base(self.perp_key) - target_perp_base
        per_unit = perp.base_qty(1.0, self.futures_price)
        qty_base = _core.rebalance_qty(excess_base, perp.lot_size * per_unit, perp.min_notional, self.futures_price)
        return qty_base / per_unit

    async def on_monitoring_positions(self, event: Any) -> None:
        if type(event) is BookUpdate:
            await self._monitor()
            return
        if isinstance(event, EndOfData):
            self.exit_reason = f"end of data ({event.reason})"
            await self._begin_close(EventKind.END_OF_DATA)
            return
        if isinstance(event, TimerEvent) and event.name == "max_holding_time":
            self.exit_reason = f"max holding time {self.params.max_holding_time_s:g} s reached"
            await self._begin_close(EventKind.TIMER)
            return
        if isinstance(event, TimerEvent) and event.name == "rebalance_retry":
            await self._monitor()
            return
        if isinstance(event, FundingEvent):
            self._mark("funding", f"funding settled at rate {event.rate:.6f}")
            return

    async def _monitor(self) -> None:
        """On a top-of-book change while hedged: delta, hedge drift, exits, rebalancing."""
        if not self._update_market():
            return
        spot_b = self._spot_inst.base_qty(self._spot_pos.qty, self.spot_price)
        perp_b = self._perp_inst.base_qty(self._perp_pos.qty, self.futures_price)
        delta = abs(spot_b + perp_b)
        if delta > self.max_abs_delta_base:
            self.max_abs_delta_base = delta
        # signed base quantities (short perp negative): a perp leg on the wrong side reads negative
        ratio = _core.hedge_ratio(spot_b, self.spot_price, perp_b, self.futures_price) or 0.0
        drift = abs(ratio - self.params.hedge_ratio)
        if drift > self.max_hedge_drift:
            self.max_hedge_drift = drift
        reason = self._exit_reason()
        if reason is not None:
            self.exit_reason = reason
            await self._begin_close(EventKind.BOOK)
            return
        if drift > self.params.max_hedge_ratio_drift:
            qty = self._rebalance_qty()
            if qty != 0.0:
                perp = self.ctx.instrument(self.perp_key)
                side = Side.BUY if qty > 0 else Side.SELL
                self.transition(H.REBALANCING, EventKind.BOOK, f"hedge drift {drift:.4f} > {self.params.max_hedge_ratio_drift}")
                self._mark("rebalance", f"{side.value} {abs(qty):g} perp, drift {drift:.4f}")
                self.rebalance_order = await self.ctx.submit(
                    OrderRequest.create(perp, side, abs(qty), tag="rebalance")
                )
                if self.rebalance_order.status is OrderStatus.REJECTED:
                    await self._rebalance_done(ok=False)
                    return
                self.ctx.set_timer("order_timeout", self._timeout_at())

    async def _rebalance_done(self, ok: bool) -> None:
        self.ctx.cancel_timer("order_timeout")
        if ok:
            self.rebalance_count += 1
            self.rebalance_failures = 0
            self.transition(H.MONITORING_POSITIONS, EventKind.ORDER_UPDATE, "rebalanced")
            return
        self.rebalance_failures += 1
        order = self.rebalance_order
        self._mark("error", f"rebalance failed: {order.reject_reason if order else '?'}")
        if self.rebalance_failures >= 3:
            self.exit_reason = "rebalancing failed 3 times in a row"
            await self._begin_close(EventKind.ORDER_UPDATE)
        else:
            self.transition(H.MONITORING_POSITIONS, EventKind.ORDER_UPDATE, "rebalance failed")
            self.ctx.set_timer("rebalance_retry", self.ctx.now_ns() + int(self.params.rebalance_retry_s * 1e9))

    async def on_rebalancing(self, event: Any) -> None:
        order = self.rebalance_order
        if isinstance(event, TimerEvent) and event.name == "max_holding_time":
            self.exit_reason = f"max holding time {self.params.max_holding_time_s:g} s reached"
            return  # closes once the rebalance order is done (checked below)
        if isinstance(event, EndOfData):
            self.exit_reason = f"end of data ({event.reason})"
            return
        if order is None:
            return
        kind = await self._order_done(event, order, "rebalance order", lambda: "the hedge may change when it fills")
        if kind is None:
            return  # not done yet (a timed-out one is cancelled: acted on at its final update)
        await self._rebalance_done(ok=order.filled_qty > 0)
        # an exit that came due while rebalancing (max holding time, end of data) is acted on once
        # the rebalance order is done, however it ended
        if self.exit_reason is not None and self.state is H.MONITORING_POSITIONS:
            await self._begin_close(kind)

    # ---------------------------------------------------------------- closing
    async def _begin_close(self, event: EventKind) -> None:
        self.ctx.cancel_timer("max_holding_time")
        self.ctx.cancel_timer("rebalance_retry")
        self.ctx.cancel_timer("order_timeout")
        self.transition(H.CLOSING_POSITIONS, event, self.exit_reason or "")
        self._mark("exit", self.exit_reason or "close")
        await self._close_next()

    async def _close_next(self) -> None:
        """Close futures first, then spot; COMPLETED when both are flat."""
        perp_qty = self.futures_qty
        if perp_qty != 0.0:
            perp = self.ctx.instrument(self.perp_key)
            side = Side.BUY if perp_qty < 0 else Side.SELL
            lots = round(abs(perp_qty) / perp.lot_size)
            self.close_order = await self.ctx.submit(
                OrderRequest.create(perp, side, lots * perp.lot_size, reduce_only=True, tag="close_futures")
            )
        else:
            spot = self.ctx.instrument(self.spot_key)
            spot_lots = math.floor(abs(self.spot_qty) / spot.lot_size + 1e-9)
            if spot_lots == 0:
                self.transition(H.COMPLETED, EventKind.ORDER_UPDATE, "both legs flat")
                self._mark("completed", f"net PnL {self.net_pnl():.2f} USDT")
                return
            side = Side.SELL if self.spot_qty > 0 else Side.BUY
            self.close_order = await self.ctx.submit(
                OrderRequest.create(spot, side, spot_lots * spot.lot_size, tag="close_spot")
            )
        if self.close_order.status is OrderStatus.REJECTED:
            self.fail(f"close order rejected: {self.close_order.reject_reason}", EventKind.ORDER_UPDATE)
            return
        self.ctx.set_timer("order_timeout", self._timeout_at())

    async def on_closing_positions(self, event: Any) -> None:
        order = self.close_order
        if order is None:
            return
        kind = await self._order_done(
            event, order, f"close order ({order.tag})",
            lambda: f"positions: spot {self.spot_qty:g}, perp {self.futures_qty:g} so far",
        )
        if kind is None:
            return
        if order.filled_qty <= 0 and order.status is not OrderStatus.FILLED:
            self.fail(
                f"close order ({order.tag}) {order.status.value}{self._after_timeout(order)}: {order.reject_reason}; "
                f"positions still open: spot {self.spot_qty:g}, perp {self.futures_qty:g}",
                kind,
            )
            return
        await self._close_next()

    # ---------------------------------------------------------------- result
    def extra_result(self) -> dict[str, Any]:
        return {
            "exit_reason": self.exit_reason,
            "rebalance_count": self.rebalance_count,
            "hedge_attempts": self.hedge_attempts,
            "initial_basis_bps": self.initial_basis_bps,
            "final_basis_bps": self.basis_bps,
            "max_abs_delta_base": self.max_abs_delta_base,
            "max_hedge_drift": self.max_hedge_drift,
            "entry": dict(self.entry_analysis),
            "holding_time_s": ((self.ended_ns or self.ctx.now_ns()) - self.entry_ns) / 1e9 if self.entry_ns else 0.0,
        }

