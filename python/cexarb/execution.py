"""Order orchestration on the strategy side (DESIGN.md "Execution").

:class:`OrderManager` owns the strategy's ``Order`` records: it checks each request against the
risk policy, sends it to the instrument's private venue, and applies the venue's
:class:`~cexarb.venues.base.OrderUpdate` / :class:`~cexarb.model.Fill` events to the records and
to the strategy's positions, then forwards them to the strategy. One code path for replay, paper
and live: only the venue objects differ.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping, MutableSequence
from typing import TYPE_CHECKING

import msgspec

from cexarb._core import OrderBook
from cexarb.model import (
    Fill,
    FundingEvent,
    Instrument,
    Order,
    OrderStatus,
    Position,
    Side,
)
from cexarb.retention import TerminalOrderRetention
from cexarb.risk import RiskPolicy, RiskRejection
from cexarb.venues.base import OrderRequest, OrderUpdate, PrivateEvent, PrivateVenue

if TYPE_CHECKING:
    from cexarb.clock import Clock, TimerHandle
    from cexarb.strategy.machine import StrategyContext

__all__ = ["OrderManager"]

log = logging.getLogger(__name__)

# module constants: an enum member read through its class costs ~0.1 µs (order path)
_REJECTED, _PENDING_NEW = OrderStatus.REJECTED, OrderStatus.PENDING_NEW
_BUY, _SELL = Side.BUY, Side.SELL


def _fill_tol(event: OrderUpdate) -> float:
    """How far an order's booked fills may fall short of the filled quantity its update reports
    and still count as all there: float rounding of the venue's decimal quantities."""
    return max(1e-12, 1e-9 * event.filled_qty)


class OrderManager:
    """Sends orders through risk to venues and tracks orders, fills and positions.

    Args:
        clock: time source (simulated in replay).
        venues: private venues by venue name (``Instrument.venue``).
        risk: pre-trade policy; None applies default limits.
        book_lookup: ``key -> OrderBook`` for risk checks and marking positions.
        client_order_id_prefix: requests without a client order id get ``{prefix}-{n}``, n counting
            from 1 per manager (deterministic in replay; live engines use a per-session prefix).
        max_terminal_orders: bound the records for a long run (:mod:`cexarb.retention`): at least
            this many orders that reached a terminal state are kept, the older ones evicted (with
            their fills) once they have been terminal ``terminal_order_min_age_s`` or longer, and
            :attr:`fills` keeps the latest this many fills. None (the default) keeps everything,
            as a backtest's report needs. Counters (:attr:`n_orders`, :attr:`n_fills`) and
            positions always cover the whole run.
        terminal_order_min_age_s: see ``max_terminal_orders``, seconds on ``clock``. A late
            update for an order evicted before it arrived is logged and ignored (the order had
            ended); a late fill of an order whose id this manager issued (``{prefix}-{n}``) is
            logged, counted in :attr:`n_late_fills` and applied to the position and
            :attr:`fills`, so positions stay equal to the venue's. A fill for an id it did not
            issue (another client's order on the account, or a strategy's own id whose record
            was evicted) is logged and ignored.

    Attributes:
        orders: order records by client order id (open ones, and terminal ones as retained).
        fills: fills in arrival order (all of them, or the latest ``max_terminal_orders``).
        positions: positions by instrument key.
        fees_other: fees paid in a third asset (``Fill.fee_asset``: GT, MX, BNB), total per asset;
            they are not in the quote PnL (no price for the asset here).

    Raises:
        ValueError: ``max_terminal_orders`` < 1 or a negative ``terminal_order_min_age_s``.
    """

    def __init__(
        self,
        clock: Clock,
        venues: Mapping[str, PrivateVenue],
        book_lookup: Callable[[str], OrderBook],
        risk: RiskPolicy | None = None,
        client_order_id_prefix: str = "cx",
        *,
        max_terminal_orders: int | None = None,
        terminal_order_min_age_s: float = 60.0,
    ) -> None:
        self.clock = clock
        self.client_order_id_prefix = client_order_id_prefix
        self._next_coid = 0
        #: refuse requests whose client order id does not start with ``{prefix}-`` (set by the
        #: live engine: a shared account's events reach this manager only for such ids)
        self.own_ids_only = False
        self.venues = dict(venues)
        self.risk = risk or RiskPolicy()
        self._book = book_lookup
        self.orders: dict[str, Order] = {}
        self._open: dict[str, Order] = {}  # orders not in a terminal state
        # requests on their way to the venue (submit), replaced by their record when a venue
        # event makes it before place_order returns
        self._inflight: dict[str, OrderRequest | Order] = {}
        # what the open and in-flight orders may still add, per (key, side): [total qty, n
        # orders], kept as orders change (the risk check reads it in O(1), not by walking every
        # order). An in-flight request counts its whole qty until place_order returns (no
        # per-order entry on the order path); an open order its remainder, per client order id
        # in _pending_of (key and side, remaining qty).
        self._pending_of: dict[str, tuple[tuple[str, Side], float]] = {}
        self._pending_sum: dict[tuple[str, Side], list[float]] = {}
        # per Instrument object seen by submit, by id(): (the instrument, its key, its buy and its
        # sell pending total): the order path reads them without building the key string or
        # hashing (key, side) tuples. An entry holds its instrument, so the id stays that
        # object's while the entry exists. The totals are the lists in _pending_sum (never
        # replaced, only updated in place).
        self._hot: dict[int, tuple[Instrument, str, list[float], list[float]]] = {}
        self.positions: dict[str, Position] = {}
        self.fills: MutableSequence[Fill] = [] if max_terminal_orders is None else deque(maxlen=max_terminal_orders)
        self._fills_by_order: dict[str, list[Fill]] = {}
        self._retention = TerminalOrderRetention(
            self.orders, max_terminal_orders, terminal_order_min_age_s, on_evict=self._drop_fills
        )
        self._instruments: dict[str, Instrument] = {}  # of the orders recorded, by key
        self.n_orders = 0
        self.n_fills = 0
        #: fills of orders whose record had been evicted, applied to positions all the same
        self.n_late_fills = 0
        #: how long an order update that reports fills not received yet waits for them (seconds
        #: on ``clock``) before it is applied anyway, logged and counted in
        #: :attr:`n_updates_before_fills`
        self.fill_wait_s = 5.0
        self.n_updates_before_fills = 0
        # client order id -> (the latest update waiting for its fills, the hold's fill_wait_s
        # timer); a hold released by its fills cancels its timer, so a timer that runs always
        # belongs to the hold in place
        self._held: dict[str, tuple[OrderUpdate, TimerHandle]] = {}
        self.n_rejected = 0
        #: fees paid in a third asset (GT, MX, BNB), total per asset: not in the quote PnL
        self.fees_other: dict[str, float] = {}
        self._warned_fee_assets: set[str] = set()
        self._listeners: list[Callable[[PrivateEvent], None]] = []
        for venue in self.venues.values():
            venue.subscribe(self.on_private_event)

    def _drop_fills(self, client_order_id: str, order: Order) -> None:
        self._fills_by_order.pop(client_order_id, None)

    @property
    def evicted_orders(self) -> int:
        """Terminal orders evicted from :attr:`orders` so far (see ``max_terminal_orders``)."""
        return self._retention.evicted

    def fills_of(self, client_order_id: str) -> list[Fill]:
        """The fills of one order in arrival order (a copy; empty for an unknown or evicted id)."""
        return list(self._fills_by_order.get(client_order_id, ()))

    def add_listener(self, listener: Callable[[PrivateEvent], None]) -> None:
        """Called after each OrderUpdate/Fill has been applied to the records."""
        self._listeners.append(listener)

    def position(self, key: str) -> Position:
        pos = self.positions.get(key)
        if pos is None:
            pos = self.positions[key] = Position(instrument_key=key)
        return pos

    @property
    def open_orders(self) -> list[Order]:
        return list(self._open.values())

    @property
    def n_open_orders(self) -> int:
        return len(self._open)

    def next_client_order_id(self) -> str:
        """A new client order id ``{prefix}-{n}`` (n counts from 1 per manager), for a strategy that
        builds its request with the id already set; :meth:`submit` assigns one otherwise."""
        self._next_coid += 1
        return f"{self.client_order_id_prefix}-{self._next_coid}"

    async def submit(self, request: OrderRequest) -> Order:
        """Risk-check and send ``request``; returns the Order record (REJECTED on a breach).

        A risk rejection never reaches the venue; the record carries the reason. On the order
        path the request goes to the venue first and its record is made just after (the
        tick-to-order latency does not include building it); a venue event for the order that
        arrives while the request is on its way makes the record then.

        Raises:
            ValueError: ``request.client_order_id`` was used before by this manager, or (with
                :attr:`own_ids_only`) does not start with ``client_order_id_prefix + "-"``.
            Whatever the venue's ``place_order`` raises (the record stays PENDING_NEW, not
            open, until a venue update for it arrives: the venue may have taken it).
        """
        coid = request.client_order_id
        if not coid:
            coid = self.next_client_order_id()
            request = msgspec.structs.replace(request, client_order_id=coid)
        elif coid in self.orders or coid in self._inflight:
            raise ValueError(f"duplicate client_order_id {coid!r}")
        elif self.own_ids_only and not coid.startswith(self.client_order_id_prefix + "-"):
            raise ValueError(f"client_order_id {coid!r} does not start with this manager's prefix "
                             f"{self.client_order_id_prefix + '-'!r}: on a live account only such ids' events reach it "
                             "(leave it empty, or use next_client_order_id())")
        inst = request.instrument
        hot = self._hot.get(id(inst)) or self._hot_entry(inst)
        key = hot[1]
        side = request.side
        total = hot[2] if side is _BUY else hot[3]
        venue = self.venues.get(inst.venue)
        try:
            self.risk.check(request, self._book(key), self.positions.get(key), len(self._open) + len(self._inflight),
                            side.sign * total[0])
        except RiskRejection as exc:
            order = self._record(request)
            order.status = _REJECTED
            order.reject_reason = f"risk: {exc}"
            self.n_rejected += 1
            log.warning("order %s rejected by risk: %s", coid, exc)
            self._retention.terminal(coid, order.created_ns)
            return order
        if venue is None:
            order = self._record(request)
            order.status = _REJECTED
            order.reject_reason = f"no private venue {inst.venue!r}"
            self.n_rejected += 1
            self._retention.terminal(coid, order.created_ns)
            return order
        inflight = self._inflight
        inflight[coid] = request
        total[0] += request.qty
        total[1] += 1
        sent_ns = self.clock.now_ns()  # the record's created_ns: when the request went out
        try:
            sent = await venue.place_order(request)
        except BaseException:
            # the send failed or the task was cancelled, the outcome unknown: the record stays
            # PENDING_NEW until a venue update for it arrives -- unless one arrived on the way
            # and showed the order open at the venue: then it is open here too (the stop
            # cancels it, the risk check counts it)
            order = self._landed(coid, total, request.qty, sent_ns)
            if not order.status.is_terminal and (order.status is not _PENDING_NEW or coid in self._fills_by_order):
                self._open[coid] = order
                self._set_pending(coid, key, side, order.remaining_qty)
            raise
        order = self._landed(coid, total, request.qty, sent_ns)
        if sent.status is _REJECTED and order.status is _PENDING_NEW:
            order.status = _REJECTED
            order.reject_reason = sent.reject_reason
            self.n_rejected += 1
        if sent.venue_order_id and not order.venue_order_id:
            order.venue_order_id = sent.venue_order_id
        if not order.status.is_terminal:
            self._open[coid] = order
            self._set_pending(coid, key, side, order.remaining_qty)
        elif sent.status is _REJECTED:  # the venue refused it (terminal updates note themselves)
            self._retention.terminal(coid, self.clock.now_ns())
        return order

    def _hot_entry(self, inst: Instrument) -> tuple[Instrument, str, list[float], list[float]]:
        """The order path's entry for ``inst`` (see ``_hot``), made and kept. Bounded: a caller
        that builds a new Instrument object per order only refills a small map."""
        if len(self._hot) >= 256:
            self._hot.clear()
        key = inst.key
        sums = self._pending_sum
        entry = (inst, key, sums.setdefault((key, _BUY), [0.0, 0]), sums.setdefault((key, _SELL), [0.0, 0]))
        self._hot[id(inst)] = entry
        return entry

    def _landed(self, coid: str, total: list[float], qty: float, sent_ns: int) -> Order:
        """A request's flight ended (:meth:`submit`): its whole ``qty`` leaves the pending
        ``total`` (an open order's remainder is counted again by the caller), and its record is
        the one an event made on the way or, made now, created at ``sent_ns``."""
        pending = self._inflight.pop(coid)
        total[1] -= 1
        total[0] = total[0] - qty if total[1] else 0.0
        return pending if isinstance(pending, Order) else self._record(pending, sent_ns)

    def _pending_qty(self, key: str, side: Side) -> float:
        """Signed quantity (+ buys) of the orders on ``key`` and ``side`` still open (their
        remainder) or on their way to the venue: what the position may still become. O(1)."""
        entry = self._pending_sum.get((key, side))
        return 0.0 if entry is None else side.sign * entry[0]

    def _set_pending(self, coid: str, key: str, side: Side, qty: float) -> None:
        """Open order ``coid`` on ``key``/``side`` now adds ``qty`` (0: nothing, it ended) to the
        pending totals. A total whose last order ended is reset to exactly 0.0, so rounding in
        the running sum never outlives the orders that made it."""
        old = self._pending_of.pop(coid, None)
        if old is not None:
            entry = self._pending_sum[old[0]]
            entry[1] -= 1
            entry[0] = entry[0] - old[1] if entry[1] else 0.0
        if qty > 0.0:
            ks = (key, side)
            total = self._pending_sum.get(ks)
            if total is None:
                total = self._pending_sum[ks] = [0.0, 0]
            total[0] += qty
            total[1] += 1
            self._pending_of[coid] = (ks, qty)

    def _record(self, request: OrderRequest, created_ns: int | None = None) -> Order:
        """The Order record of ``request`` (PENDING_NEW, created at ``created_ns``, default now),
        kept and counted."""
        order = request.to_order(self.clock.now_ns() if created_ns is None else created_ns)
        self.orders[request.client_order_id] = order
        self._instruments[order.instrument.key] = order.instrument
        self.n_orders += 1
        return order

    async def cancel(self, order: Order) -> bool:
        if not order.is_open:
            return False
        venue = self.venues[order.instrument.venue]
        return await venue.cancel_order(order.instrument.key, order.client_order_id)

    def on_private_event(self, event: PrivateEvent) -> None:
        """Apply a venue event to our records, then notify listeners (the engine routes to strategies)."""
        if isinstance(event, Fill):
            order = self.orders.get(event.client_order_id) or self._record_inflight(event.client_order_id)
            if order is not None:
                self._apply_fill(event, order.instrument)
                self._fills_by_order.setdefault(event.client_order_id, []).append(event)
                held = self._held.get(event.client_order_id)
                if held is not None and self._booked_qty(event.client_order_id) >= held[0].filled_qty - _fill_tol(held[0]):
                    for listener in self._listeners:
                        listener(event)
                    self._release_held(event.client_order_id)
                    return
            else:
                inst = self._instruments.get(event.instrument_key)
                if inst is None or not self._issued_here(event.client_order_id):
                    log.warning("fill for unknown client_order_id %s ignored", event.client_order_id)
                    return
                # a late fill of an order whose record was evicted (terminal_order_min_age_s
                # ago): the position must still take it, or it would differ from the venue's
                log.warning("fill %s of %s (record no longer kept) applied to the %s position",
                            event.fill_id, event.client_order_id, event.instrument_key)
                self.n_late_fills += 1
                self._apply_fill(event, inst)
        elif isinstance(event, OrderUpdate):
            order = self.orders.get(event.client_order_id) or self._record_inflight(event.client_order_id)
            if order is None:
                log.warning("update for unknown client_order_id %s ignored", event.client_order_id)
                return
            if order.status.is_terminal and order.status is not OrderStatus.REJECTED:
                return  # late duplicate
            coid = order.client_order_id
            if event.filled_qty > self._booked_qty(coid) + _fill_tol(event):
                # The venue reports fills not received yet: its order and fill streams are
                # separate channels (Gate spot.orders / spot.usertrades, MEXC orders / deals),
                # either may come first. Applied once its fills are booked, so an order's status
                # and the position never disagree (a FILLED order with its position not moved).
                held = self._held.get(coid)
                timer = held[1] if held is not None else self.clock.schedule(
                    self.clock.now_ns() + int(self.fill_wait_s * 1e9), lambda: self._release_held(coid, timed_out=True))
                self._held[coid] = (event, timer)  # the latest state (filled qty only grows)
                return
            held = self._held.pop(coid, None)
            if held is not None:  # an update held before is older than this one
                held[1].cancel()
            self._apply_update(order, event)
        for listener in self._listeners:
            listener(event)

    @property
    def updates_waiting_for_fills(self) -> list[str]:
        """Client order ids whose latest venue update reports fills not booked yet: held until
        they are (or ``fill_wait_s`` passed), see :meth:`on_private_event`."""
        return list(self._held)

    def _booked_qty(self, client_order_id: str) -> float:
        """Quantity of the fills booked for the order (instrument units)."""
        return sum(f.qty for f in self._fills_by_order.get(client_order_id, ()))

    def _release_held(self, client_order_id: str, timed_out: bool = False) -> None:
        """Apply the order update held for ``client_order_id`` (if any) and pass it on: its fills
        are booked, or ``fill_wait_s`` passed without them (logged: the position may then be
        short of the venue's until they arrive). Its timer is cancelled: a later hold of the
        same order waits its own ``fill_wait_s``."""
        held = self._held.pop(client_order_id, None)
        if held is None:
            return
        event, timer = held
        timer.cancel()
        order = self.orders.get(client_order_id) or self._record_inflight(client_order_id)
        if order is None:
            return
        if timed_out:
            log.warning("order %s: the venue reports %.12g filled but only %.12g of fills arrived within %.1f s; "
                        "applying its %s update (fills still to come are booked when they arrive)",
                        client_order_id, event.filled_qty, self._booked_qty(client_order_id), self.fill_wait_s,
                        event.status.name)
            self.n_updates_before_fills += 1
        self._apply_update(order, event)
        for listener in self._listeners:
            listener(event)

    def _apply_update(self, order: Order, event: OrderUpdate) -> None:
        """Apply a venue's order update to the record, the open set and the pending totals."""
        order.status = event.status
        order.venue_order_id = event.venue_order_id or order.venue_order_id
        order.filled_qty = event.filled_qty
        order.avg_fill_price = event.avg_fill_price
        order.updated_ns = event.ts_ns
        if event.reason:
            order.reject_reason = event.reason
        if event.status is OrderStatus.REJECTED:
            self.n_rejected += 1
        coid = order.client_order_id
        if event.status.is_terminal:
            self._open.pop(coid, None)
            self._retention.terminal(coid, self.clock.now_ns())
            if coid in self._pending_of:
                self._set_pending(coid, order.instrument.key, order.side, 0.0)
        elif coid not in self._inflight:  # (in flight: its whole qty counts until submit sets it)
            if coid not in self._open:
                # open at the venue though its place_order raised (a lost reply): track it
                self._open[coid] = order
            self._set_pending(coid, order.instrument.key, order.side, order.remaining_qty)

    def _apply_fill(self, event: Fill, instrument: Instrument) -> None:
        """Book ``event`` on its instrument's position, the fill list and the fee counters."""
        self.position(event.instrument_key).apply_fill(
            event.side, event.qty, event.price, event.fee, instrument, event.fee_base
        )
        self.fills.append(event)
        self.n_fills += 1
        if event.fee_other:
            self.fees_other[event.fee_asset] = self.fees_other.get(event.fee_asset, 0.0) + event.fee_other
            if event.fee_asset not in self._warned_fee_assets:
                self._warned_fee_assets.add(event.fee_asset)
                log.warning("fees paid in %s are not counted in quote PnL (fees_other keeps them)",
                            event.fee_asset)

    def _issued_here(self, client_order_id: str) -> bool:
        """Whether ``client_order_id`` is one :meth:`next_client_order_id` has handed out."""
        prefix = self.client_order_id_prefix + "-"
        if not client_order_id.startswith(prefix):
            return False
        n = client_order_id[len(prefix):]
        return n.isdigit() and 0 < int(n) <= self._next_coid

    def _record_inflight(self, client_order_id: str) -> Order | None:
        """The record of an order whose request is still on its way (an event came first), made
        now; None when no such request is in flight."""
        pending = self._inflight.get(client_order_id)
        if pending is None:
            return None
        if isinstance(pending, Order):
            return pending
        order = self._inflight[client_order_id] = self._record(pending)
        return order

    def on_funding(self, event: FundingEvent, amount: float) -> None:
        """Book a funding payment (quote currency, + received) against the position."""
        self.position(event.instrument_key).funding += amount

    def pnl_components(self, ctx: StrategyContext) -> tuple[float, float, float, float]:
        """(realized gross, unrealized at mid, fees, funding), all in quote currency."""
        realized = unrealized = fees = funding = 0.0
        for key, pos in self.positions.items():
            realized += pos.realized_pnl
            fees += pos.fees
            funding += pos.funding
            if pos.qty != 0.0:
                mid = ctx.book(key).mid()
                if mid is not None:
                    unrealized += ctx.instrument(key).unrealized_pnl(pos.qty, pos.avg_price, mid)
        return realized, unrealized, fees, funding
