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
from cexarb.model import Fill, FundingEvent, Order, OrderStatus, Position, Side
from cexarb.retention import TerminalOrderRetention
from cexarb.risk import RiskPolicy, RiskRejection
from cexarb.venues.base import OrderRequest, OrderUpdate, PrivateEvent, PrivateVenue

if TYPE_CHECKING:
    from cexarb.clock import Clock
    from cexarb.strategy.machine import StrategyContext

__all__ = ["OrderManager"]

log = logging.getLogger(__name__)

# module constants: an enum member read through its class costs ~0.1 µs (order path)
_REJECTED, _PENDING_NEW = OrderStatus.REJECTED, OrderStatus.PENDING_NEW


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
        terminal_order_min_age_s: see ``max_terminal_orders``, seconds on ``clock``; a late fill
            or update for an order evicted before it arrived is logged and ignored, as one for an
            unknown client order id.

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
        self.venues = dict(venues)
        self.risk = risk or RiskPolicy()
        self._book = book_lookup
        self.orders: dict[str, Order] = {}
        self._open: dict[str, Order] = {}  # orders not in a terminal state
        # requests on their way to the venue (submit), replaced by their record when a venue
        # event makes it before place_order returns
        self._inflight: dict[str, OrderRequest | Order] = {}
        # what each open or in-flight order still adds to its side: client order id ->
        # ((key, side), remaining qty), and the totals per (key, side) with their order counts,
        # kept as orders change (the risk check reads them in O(1), not by walking every order)
        self._pending_of: dict[str, tuple[tuple[str, Side], float]] = {}
        self._pending_sum: dict[tuple[str, Side], list[float]] = {}  # [total qty, n orders]
        self.positions: dict[str, Position] = {}
        self.fills: MutableSequence[Fill] = [] if max_terminal_orders is None else deque(maxlen=max_terminal_orders)
        self._fills_by_order: dict[str, list[Fill]] = {}
        self._retention = TerminalOrderRetention(
            self.orders, max_terminal_orders, terminal_order_min_age_s, on_evict=self._drop_fills
        )
        self.n_orders = 0
        self.n_fills = 0
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
            ValueError: ``request.client_order_id`` was used before by this manager.
            Whatever the venue's ``place_order`` raises (the record stays PENDING_NEW, not
            open, until a venue update for it arrives: the venue may have taken it).
        """
        coid = request.client_order_id
        if not coid:
            coid = self.next_client_order_id()
            request = msgspec.structs.replace(request, client_order_id=coid)
        elif coid in self.orders or coid in self._inflight:
            raise ValueError(f"duplicate client_order_id {coid!r}")
        inst = request.instrument
        key = inst.key
        venue = self.venues.get(inst.venue)
        try:
            self.risk.check(request, self._book(key), self.positions.get(key), len(self._open) + len(self._inflight),
                            self._pending_qty(key, request.side))
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
        self._set_pending(coid, key, request.side, request.qty)
        sent_ns = self.clock.now_ns()  # the record's created_ns: when the request went out
        try:
            sent = await venue.place_order(request)
        except BaseException:
            self._set_pending(coid, key, request.side, 0.0)
            raise
        finally:
            pending = inflight.pop(coid)
            # made by an event that arrived on the way (on_private_event), or now
            order = pending if isinstance(pending, Order) else self._record(pending, sent_ns)
        if sent.status is _REJECTED and order.status is _PENDING_NEW:
            order.status = _REJECTED
            order.reject_reason = sent.reject_reason
            self.n_rejected += 1
        if sent.venue_order_id and not order.venue_order_id:
            order.venue_order_id = sent.venue_order_id
        if not order.status.is_terminal:
            self._open[coid] = order
            self._set_pending(coid, key, order.side, order.remaining_qty)
        else:
            self._set_pending(coid, key, order.side, 0.0)
            if sent.status is _REJECTED:  # the venue refused it (terminal updates note themselves)
                self._retention.terminal(coid, self.clock.now_ns())
        return order

    def _pending_qty(self, key: str, side: Side) -> float:
        """Signed quantity (+ buys) of the orders on ``key`` and ``side`` still open (their
        remainder) or on their way to the venue: what the position may still become. O(1)."""
        entry = self._pending_sum.get((key, side))
        return 0.0 if entry is None else side.sign * entry[0]

    def _set_pending(self, coid: str, key: str, side: Side, qty: float) -> None:
        """Order ``coid`` on ``key``/``side`` now adds ``qty`` (0: nothing, it ended) to the
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
            if order is None:
                log.warning("fill for unknown client_order_id %s ignored", event.client_order_id)
                return
            self.position(event.instrument_key).apply_fill(
                event.side, event.qty, event.price, event.fee, order.instrument, event.fee_base
            )
            self.fills.append(event)
            self._fills_by_order.setdefault(event.client_order_id, []).append(event)
            self.n_fills += 1
            if event.fee_other:
                self.fees_other[event.fee_asset] = self.fees_other.get(event.fee_asset, 0.0) + event.fee_other
                if event.fee_asset not in self._warned_fee_assets:
                    self._warned_fee_assets.add(event.fee_asset)
                    log.warning("fees paid in %s are not counted in quote PnL (fees_other keeps them)",
                                event.fee_asset)
        elif isinstance(event, OrderUpdate):
            order = self.orders.get(event.client_order_id) or self._record_inflight(event.client_order_id)
            if order is None:
                log.warning("update for unknown client_order_id %s ignored", event.client_order_id)
                return
            if order.status.is_terminal and order.status is not OrderStatus.REJECTED:
                return  # late duplicate
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
            else:
                if coid not in self._inflight and coid not in self._open:
                    # open at the venue though its place_order raised (a lost reply): track it
                    self._open[coid] = order
                self._set_pending(coid, order.instrument.key, order.side, order.remaining_qty)
        for listener in self._listeners:
            listener(event)

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
