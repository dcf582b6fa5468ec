"""In-process simulated venue (:class:`SimVenue`) for replay and backtests.

The venue trades against the replay's recorded Rust books (it reads them, never mutates them),
with latency on order entry and on the way back, maker/taker fees, balances, positions and
funding. Matching decisions come from :mod:`cexarb.venues.sim.matching`; this module adds time,
validation, accounting and event delivery. Everything is driven by a :class:`~cexarb.clock.SimClock`:
no wall clock, no randomness, so the same replay gives the same events.

Latency model (:class:`SimLatency`, all nanoseconds):

* The recorded book at clock time ``t`` is what the strategy sees at ``t``. The venue is
  ``market_data_ns`` ahead of the strategy's view, so an order (or cancel) sent at ``t`` is
  matched against the recorded book at ``t + market_data_ns + order_entry_ns`` (its *arrival*).
* A state change the venue decides while the clock reads ``T`` (ack, fill, cancel, reject) was
  decided, in the strategy's time, at ``T - market_data_ns`` (the venue is that far ahead), so
  it reaches the subscribers at ``T - market_data_ns + ack_ns`` (never before the clock's
  now); events carry ``T`` in ``ts_ns``. An order sent at ``t`` is so reported at
  ``t + order_entry_ns + ack_ns``: the round trip, whatever ``market_data_ns`` is. Rejects at
  ``place_order`` are delivered at ``t + ack_ns`` (the request's own faults, and the venue's
  refusals with ``venue_rejects_in_reply``) or at ``t + order_entry_ns + ack_ns`` (the venue's
  refusals without it: replay and paper trading).

The replay driver calls :meth:`SimVenue.on_book` after applying each depth message to a book and
:meth:`SimVenue.on_trade` for each recorded trade, having run the clock's due callbacks first
(``clock.run_due(ts_ns)``), and :meth:`SimVenue.apply_funding` at funding times.
"""

from __future__ import annotations

import copy
import logging
import math
import types
from collections import deque
from collections.abc import Callable, Iterator, Mapping, MutableSequence

import msgspec

from cexarb._core import OrderBook
from cexarb.clock import SimClock
from cexarb.model import (
    Balance,
    Fill,
    Instrument,
    InstrumentKind,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Side,
    TimeInForce,
)
from cexarb.retention import TerminalOrderRetention
from cexarb.venues.base import OrderRequest, OrderUpdate, PrivateEvent, RejectReason
from cexarb.venues.sim.matching import (
    BookSide,
    ConsumedLiquidity,
    Match,
    QueueModelName,
    RestingOrder,
    RiskAverseQueue,
    iter_levels,
    lots_of,
)

__all__ = ["SimLatency", "SimVenue"]

log = logging.getLogger(__name__)

_BALANCE_EPS = 1e-9  # relative slack when comparing a requirement with a free balance


def _tick_price(inst: Instrument, ticks: int) -> float:
    """The float nearest the exact decimal price of ``ticks`` (``9999 * 0.01`` is not ``99.99``)."""
    return float(inst.format_price(ticks))


class SimLatency(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Latencies of the simulated venue, nanoseconds (see the module docstring for the model).

    Attributes:
        order_entry_ns: strategy -> venue, for orders and cancels.
        ack_ns: venue -> strategy, for acks, order updates and fills.
        market_data_ns: how far the venue is ahead of the recorded book the strategy sees; adds
            to the matching delay of orders and cancels.
    """

    order_entry_ns: int = 1_000_000
    ack_ns: int = 1_000_000
    market_data_ns: int = 0

    def __post_init__(self) -> None:
        for field in ("order_entry_ns", "ack_ns", "market_data_ns"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"SimLatency.{field} must be an int >= 0 ns, got {value!r}")

    @property
    def match_delay_ns(self) -> int:
        """Delay from sending an order (or cancel) to the venue matching it."""
        return self.market_data_ns + self.order_entry_ns


class _SimOrder:
    """Venue-side record of one order (the venue's truth; callers get copies of ``order``)."""

    __slots__ = (
        "fee_base",
        "filled_lots",
        "instrument",
        "lots",
        "notional_sum",
        "opening_lots",
        "order",
        "price_ticks",
        "ref_price",
    )

    def __init__(
        self,
        order: Order,
        instrument: Instrument,
        lots: int,
        price_ticks: int | None,
        ref_price: float,
        opening_lots: int,
    ) -> None:
        self.order = order
        self.instrument = instrument
        self.lots = lots
        self.filled_lots = 0
        self.price_ticks = price_ticks
        self.ref_price = ref_price  # limit price, or the estimate a market order was reserved at
        self.notional_sum = 0.0  # sum(price * qty) over fills, for the average price
        self.opening_lots = opening_lots  # derivatives: lots that increase |position| (margin)
        self.fee_base = 0.0  # base units taken as fees out of the base received (buy_fee_in_base)

    @property
    def remaining_lots(self) -> int:
        return self.lots - self.filled_lots


def _sim_order_is_terminal(so: _SimOrder) -> bool:
    return so.order.status.is_terminal


class _BaseFeeView(Mapping[str, float]):
    """Read-only live view: client order id -> base units the venue took as fees from that order's
    fills so far (0.0 for orders without such a fee). Orders the retention dropped are gone."""

    __slots__ = ("_orders",)

    def __init__(self, orders: Mapping[str, _SimOrder]) -> None:
        self._orders = orders

    def __getitem__(self, client_order_id: str) -> float:
        return self._orders[client_order_id].fee_base

    def __iter__(self) -> Iterator[str]:
        return iter(self._orders)

    def __len__(self) -> int:
        return len(self._orders)


class SimVenue:
    """A simulated private venue trading against recorded books (implements ``PrivateVenue``).

    Args:
        name: venue name; venue order ids are ``"{name}-{n}"``, fill ids ``"{name}-fill-{n}"``.
        clock: the replay's simulated clock; arrivals and event deliveries are scheduled on it.
        instruments: tradable instruments by ``Instrument.key``; fees come from here.
        books: the replay's recorded books by instrument key (read only).
        latency: see :class:`SimLatency`.
        balances: starting free amount per asset (e.g. ``{"USDT": 10_000.0, "BTC": 0.0}``).
        queue_model: resting-order fill model; only ``"risk_averse"`` exists.
        leverage: derivatives margin = notional / leverage, in the quote asset (> 0).
        max_terminal_orders / terminal_order_min_age_s: for a long paper run, keep at least this
            many finished orders (and the latest this many fills) and drop older finished ones
            once finished this long, seconds on ``clock`` (:mod:`cexarb.retention`); a dropped
            order is unknown to :meth:`get_order` and its client order id may be used again.
            None (the default) keeps every order and fill, as a backtest does.
        buy_fee_in_base: spot buys pay their fee out of the base received, as Gate.io and MEXC
            spot charge it (Gate order / trade ``fee_currency`` = the base, PROTOCOLS.md §2.2, a
            live LTC_USDT buy in ``shared/data/api/gateio/ccxt_fixtures`` pays in ``LTC``; MEXC
            ``myTrades`` ``commissionAsset`` / private deal ``feeCurrency`` = the base, §1.2 and
            §1.5, the docs' ``myTrades`` example in ``shared/data/api/mexc/docs_examples``: a
            BNBBTC buy pays ``BNB``). Only spot (non-derivative) instruments, only positive fee rates: a buy fill
            of ``qty`` base at ``price`` and rate ``r > 0`` credits ``qty * (1 - r)`` base and
            debits exactly ``qty * price`` quote; its Fill has ``fee_base = r * qty`` (base
            units) and ``fee = r * qty * price`` (that fee valued in quote, as always), and the
            venue's own position takes ``fee_base`` out (``Position.apply_fill``). Sells, and a
            rebate (``r < 0``, credited in quote: Gate's ``rebated_fee_currency`` of a buy is the
            quote), are as with False. :attr:`base_fees` sums ``fee_base`` per order. False (the
            default): every fee in quote, as on Binance spot when fees are paid in BNB (Binance
            charges in the asset received otherwise, as with True: "Trading fees are always
            charged in the asset you receive", Binance FAQ "What is Binance Spot Trading Fee").

    Accounting (quote currency unless said otherwise):

    * Spot: a buy reserves ``qty * price * (1 + max(maker_fee, taker_fee, 0))`` of quote while open
      (market buys at the executable price when placed), a sell reserves its base quantity (the
      same with ``buy_fee_in_base``: a few bps more quote than Gate locks). Fills move base and
      quote; fees are charged in quote (a buy's in base with ``buy_fee_in_base``).
    * Perps (linear and inverse): orders reserve margin ``notional / leverage`` plus the fee for the
      part that increases the position (``reduce_only`` orders reserve none); open positions keep
      ``notional(|qty|, avg_price) / leverage`` locked. Realized PnL and fees settle in quote.
      Inverse perps are simplified: notional = contracts * contract_size (quote), fees and margin
      in quote, realized PnL is the base-currency PnL valued at the fill price.
    * ``locked`` is recomputed from open orders and positions, ``free = total - locked``.
    * Taker fills at arrival are capped by what the balance affords at each level (a spot market
      buy whose price moved after placement fills less, never overdraws).

    Events per order (each list delivered together, ``ack_ns`` after the venue decided it):

    * rejected at ``place_order``: ``REJECTED`` (reason); the returned Order is already REJECTED,
      or, for the venue's own refusals without ``venue_rejects_in_reply``, PENDING_NEW (the
      REJECTED update follows one round trip later; :meth:`submit`).
    * at arrival: ``REJECTED`` (``book_invalid``, ``post_only_would_take``, ``no_liquidity`` for a
      market order that found nothing, ``insufficient_balance`` if nothing was affordable), or
      ``NEW``, one Fill per level taken, then ``FILLED`` / ``PARTIALLY_FILLED`` (the rest rests,
      GTC and POST_ONLY) / ``[PARTIALLY_FILLED,] CANCELED`` (IOC and market remainders).
    * resting fills (:meth:`on_trade`, :meth:`on_book`): Fills, then ``PARTIALLY_FILLED`` /
      ``FILLED``. A cancel that arrives while the order is open: ``CANCELED``; otherwise nothing.

    Positions (:meth:`positions`) are ``model.Position`` per instrument, updated with
    ``Position.apply_fill`` in the instrument's quantity units; for spot they are the base
    holdings bought/sold since the start.
    """

    def __init__(
        self,
        name: str,
        clock: SimClock,
        instruments: dict[str, Instrument],
        books: dict[str, OrderBook],
        *,
        latency: SimLatency | None = None,
        balances: dict[str, float] | None = None,
        queue_model: QueueModelName = "risk_averse",
        leverage: float = 1.0,
        max_terminal_orders: int | None = None,
        terminal_order_min_age_s: float = 60.0,
        buy_fee_in_base: bool = False,
        venue_rejects_in_reply: bool = True,
    ) -> None:
        if queue_model != "risk_averse":
            raise ValueError(f"queue_model must be 'risk_averse', got {queue_model!r}")
        if not (math.isfinite(leverage) and leverage > 0):
            raise ValueError(f"leverage must be finite and > 0, got {leverage!r}")
        if not isinstance(buy_fee_in_base, bool):
            raise TypeError(f"buy_fee_in_base must be a bool, got {buy_fee_in_base!r}")
        for key, inst in instruments.items():
            if key != inst.key:
                raise ValueError(f"instruments key {key!r} differs from Instrument.key {inst.key!r}")
            if key not in books:
                raise ValueError(f"no book given for instrument {key!r}")
        self.name = name
        self.latency = latency if latency is not None else SimLatency()
        self.leverage = leverage
        #: spot buys pay their fee in the base received (see the class docstring)
        self.buy_fee_in_base = buy_fee_in_base
        #: False: the venue's own refusals reach the caller one round trip later (:meth:`submit`)
        self.venue_rejects_in_reply = venue_rejects_in_reply
        self._clock = clock
        self._instruments = dict(instruments)
        self._books = books
        self._total: dict[str, float] = {}
        for asset, amount in (balances or {}).items():
            if not math.isfinite(amount):
                raise ValueError(f"starting balance of {asset!r} must be finite, got {amount!r}")
            self._total[asset] = float(amount)
        for inst in self._instruments.values():
            self._total.setdefault(inst.quote, 0.0)
            if inst.kind is InstrumentKind.SPOT:
                self._total.setdefault(inst.base, 0.0)
        # per instrument, one dict shared by its queue and its consumption record: non-empty while
        # orders rest or records exist (book_view: the drivers' per-message check, a dict truthiness)
        self._watch: dict[str, dict[str, bool]] = {k: {} for k in self._instruments}
        self._book_views = {k: types.MappingProxyType(w) for k, w in self._watch.items()}
        self._queues = {
            k: RiskAverseQueue(i.tick_size, i.lot_size, self._watch[k]) for k, i in self._instruments.items()
        }
        self._consumed = {
            k: ConsumedLiquidity(i.tick_size, i.lot_size, self._watch[k]) for k, i in self._instruments.items()
        }
        self._orders: dict[str, _SimOrder] = {}  # every order by client order id
        self._by_venue_id: dict[str, str] = {}  # venue order id -> client order id
        self._open: dict[str, _SimOrder] = {}  # not terminal (pending arrival, resting), insertion order
        self._positions: dict[str, Position] = {}
        self._fills: MutableSequence[Fill] = [] if max_terminal_orders is None else deque(maxlen=max_terminal_orders)
        self._retention = TerminalOrderRetention(
            self._orders, max_terminal_orders, terminal_order_min_age_s, on_evict=self._forget_venue_id,
            is_terminal=_sim_order_is_terminal,
        )
        self._handlers: list[Callable[[PrivateEvent], None]] = []
        self._order_seq = 0
        self._fill_seq = 0
        self._rest_seq = 0
        self.n_orders = 0  # place_order calls, including rejected ones
        self.n_rejected = 0
        self.n_fills = 0
        self.fees_paid = 0.0  # quote currency, all instruments (negative = net rebates)

    def _forget_venue_id(self, client_order_id: str, so: _SimOrder) -> None:
        """Retention dropped this order: its venue order id goes too (venue ids are never reused)."""
        if so.order.venue_order_id:
            self._by_venue_id.pop(so.order.venue_order_id, None)

    # ---- PrivateVenue -------------------------------------------------------------------------

    def subscribe(self, handler: Callable[[PrivateEvent], None]) -> None:
        """Call ``handler(event)`` for every OrderUpdate and Fill, at venue time + ``ack_ns``."""
        self._handlers.append(handler)

    async def place_order(self, request: OrderRequest) -> Order:
        """Send an order; see :meth:`submit`."""
        return self.submit(request)

    async def cancel_order(self, instrument_key: str, client_order_id: str) -> bool:
        """Request a cancel; see :meth:`request_cancel`."""
        return self.request_cancel(instrument_key, client_order_id)

    async def cancel_all(self, instrument_key: str | None = None) -> int:
        """Request a cancel of every open order (of one instrument); returns how many were open."""
        keys = [
            coid for coid, so in self._open.items() if instrument_key is None or so.instrument.key == instrument_key
        ]
        for coid in keys:
            self.request_cancel(self._open[coid].instrument.key, coid)
        return len(keys)

    async def get_order(self, instrument_key: str, client_order_id: str) -> Order | None:
        """The venue's current view of an order (a copy); None if unknown on that instrument."""
        so = self._orders.get(client_order_id)
        if so is None or so.order.instrument.key != instrument_key:
            return None
        return copy.copy(so.order)

    async def get_order_by_venue_id(self, instrument_key: str, venue_order_id: str) -> Order | None:
        """As :meth:`get_order`, by the venue order id this venue assigned at acceptance."""
        client_order_id = self._by_venue_id.get(venue_order_id)
        return None if client_order_id is None else await self.get_order(instrument_key, client_order_id)

    async def open_orders(self, instrument_key: str | None = None) -> list[Order]:
        """Copies of the orders not yet terminal (including those still in flight), oldest first."""
        return [
            copy.copy(so.order)
            for so in self._open.values()
            if instrument_key is None or so.instrument.key == instrument_key
        ]

    async def fills(self, instrument_key: str | None = None) -> list[Fill]:
        """Every fill so far (of one instrument), in execution order."""
        return [f for f in self._fills if instrument_key is None or f.instrument_key == instrument_key]

    async def balances(self) -> dict[str, Balance]:
        """Free and locked amount per asset (see the class docstring for what is locked)."""
        return self.balances_now()

    async def positions(self) -> dict[str, Position]:
        """Copies of the positions by instrument key (instruments traded so far)."""
        return {k: copy.copy(p) for k, p in self._positions.items()}

    @property
    def base_fees(self) -> Mapping[str, float]:
        """Base units taken as fees so far, by client order id (a read-only live view; nonzero
        only for spot buys with ``buy_fee_in_base``). ``Order.fees`` is the same fee in quote."""
        return _BaseFeeView(self._orders)

    # ---- synchronous API (replay driver, tests) ----------------------------------------------

    def balances_now(self) -> dict[str, Balance]:
        locked = self._locked()
        return {
            asset: Balance(asset=asset, free=total - locked.get(asset, 0.0), locked=locked.get(asset, 0.0))
            for asset, total in self._total.items()
        }

    def position(self, instrument_key: str) -> Position:
        """The live position record of an instrument (created flat on first use)."""
        pos = self._positions.get(instrument_key)
        if pos is None:
            pos = self._positions[instrument_key] = Position(instrument_key=instrument_key)
        return pos

    def submit(self, request: OrderRequest) -> Order:
        """Validate and send an order; returns the caller's Order record (a copy).

        Checks, in order, each a rejection with ``reject_reason``; nothing else changes:
        duplicate client order id, unknown instrument, quantity not positive, a limit price not
        positive (the request's own faults: the returned Order is REJECTED and an OrderUpdate
        REJECTED follows after ``ack_ns``); then the venue's refusals: for a market order an
        invalid book or an empty opposite side, min notional (limit orders at their limit price,
        market orders at the current mid, as Binance's NOTIONAL filter does), insufficient free
        balance for the reservation. With ``venue_rejects_in_reply`` (the default: the loopback
        simulator answers the request with them, as the venues' REST replies do) those too return
        a REJECTED Order; without it (replay and paper trading, where no time passes in the call)
        the Order comes back PENDING_NEW and the REJECTED OrderUpdate reaches the caller one round
        trip later (``order_entry_ns + ack_ns``), when a real client would learn of it. Otherwise
        the order is PENDING_NEW and arrives at the venue after ``latency.match_delay_ns``.
        ``n_orders`` counts every call, ``n_rejected`` the rejects.
        """
        now = self._clock.now_ns()
        self.n_orders += 1
        key = request.instrument.key
        inst = self._instruments.get(key)
        order = request.to_order(now)
        if inst is not None:
            order.instrument = inst
        if request.client_order_id in self._orders:
            return self._reject_sync(order, RejectReason.DUPLICATE_CLIENT_ORDER_ID, store=False)
        if inst is None:
            return self._reject_sync(order, RejectReason.UNKNOWN_INSTRUMENT)
        lots = request.qty_lots
        if lots <= 0:
            return self._reject_sync(order, RejectReason.QTY_NOT_POSITIVE)
        book = self._books[key]
        qty = inst.lots_to_qty(lots)
        price_ticks = request.price_ticks
        if request.type is OrderType.LIMIT:
            if price_ticks is None or price_ticks <= 0:
                return self._reject_sync(order, RejectReason.PRICE_OFF_TICK)
            ref_price = _tick_price(inst, price_ticks)
            notional_price = ref_price
        else:
            price_ticks = None
            if not book.is_valid:
                return self._reject_by_venue(order, RejectReason.BOOK_INVALID)
            ex = book.executable_price("buy" if request.side is Side.BUY else "sell", qty)
            if ex.worst_price is None or ex.avg_price is None:
                return self._reject_by_venue(order, RejectReason.NO_LIQUIDITY)
            mid = book.mid()
            notional_price = mid if mid is not None else ex.avg_price
            # reserve at the worst level the current book would need (its last level if too thin)
            ref_price = ex.worst_price
        if inst.min_notional > 0 and inst.notional(qty, notional_price) < inst.min_notional * (1 - 1e-12):
            return self._reject_by_venue(order, RejectReason.MIN_NOTIONAL)
        opening_lots = lots
        if inst.is_derivative:
            opening_lots = 0 if request.reduce_only else self._opening_lots(inst, request.side, lots)
        probe = _SimOrder(order, inst, lots, price_ticks, ref_price, opening_lots)
        asset, need = self._reservation(probe)
        if need > 0:
            free = self._total.get(asset, 0.0) - self._locked().get(asset, 0.0)
            if need > free + _BALANCE_EPS * max(1.0, abs(free)):
                return self._reject_by_venue(order, RejectReason.INSUFFICIENT_BALANCE)
        # accepted: from here on state changes
        self._order_seq += 1
        order.venue_order_id = f"{self.name}-{self._order_seq}"
        self._by_venue_id[order.venue_order_id] = order.client_order_id
        self._orders[order.client_order_id] = probe
        self._open[order.client_order_id] = probe
        self._clock.schedule(now + self.latency.match_delay_ns, lambda: self._arrive(probe))
        return copy.copy(order)

    def request_cancel(self, instrument_key: str, client_order_id: str) -> bool:
        """Send a cancel; it acts at ``now + match_delay_ns`` if the order is still open then.

        Returns:
            True if the order was open (per the venue's current state) when the cancel was sent.
            A cancel that arrives after the order filled does nothing.
        """
        so = self._open.get(client_order_id)
        if so is None or so.instrument.key != instrument_key:
            return False
        self._clock.schedule(self._clock.now_ns() + self.latency.match_delay_ns, lambda: self._cancel_arrive(so))
        return True

    def on_trade(self, instrument_key: str, price: float, qty: float, taker_is_buy: bool, ts_ns: int) -> int:
        """A recorded trade (replay driver); fills our resting orders it reaches. Returns #fills."""
        queue = self._queues.get(instrument_key)
        if queue is None or not len(queue):
            return 0
        inst = self._instruments[instrument_key]
        taker = Side.BUY if taker_is_buy else Side.SELL
        matches = queue.on_trade(inst.price_to_ticks(price), qty, taker)
        return self._apply_matches(matches, ts_ns)

    def on_book(self, instrument_key: str, ts_ns: int) -> int:
        """The replay applied a depth message to ``instrument_key``'s book. Returns #fills.

        Drivers call it after every depth message while :meth:`book_view` is truthy: it
        reconciles the consumption records with the message (also when no order rests), then
        lets resting orders re-read the book.
        """
        queue = self._queues.get(instrument_key)
        if queue is None:
            return 0
        book = self._books[instrument_key]
        if not len(queue):
            if book.is_valid:
                self._consumed[instrument_key].sync(book)  # O(records); nothing when there are none
            return 0
        matches = queue.on_book(book, self._consumed[instrument_key])
        return self._apply_matches(matches, ts_ns)

    def apply_funding(self, instrument_key: str, rate: float, mark_price: float, ts_ns: int) -> float:
        """Settle one funding payment on a perpetual position; returns the amount received (quote).

        Amount = ``-qty * contract_size * mark_price * rate`` for linear perps, ``-contracts *
        contract_size * rate`` for inverse perps (notional in quote; simplified: paid in quote).
        Longs pay when the rate is positive. Credited to the quote balance and ``Position.funding``.

        Raises:
            ValueError: unknown instrument, a spot instrument, or a non-finite rate / mark price.
        """
        inst = self._instruments.get(instrument_key)
        if inst is None:
            raise ValueError(f"apply_funding: unknown instrument {instrument_key!r}")
        if not inst.is_derivative:
            raise ValueError(f"apply_funding: {instrument_key!r} is spot, funding applies to perpetuals")
        if not (math.isfinite(rate) and math.isfinite(mark_price) and mark_price > 0):
            raise ValueError(
                f"apply_funding: rate and mark_price must be finite (mark > 0), got {rate!r}, {mark_price!r}"
            )
        pos = self._positions.get(instrument_key)
        if pos is None or pos.qty == 0.0:
            return 0.0
        amount = inst.funding_payment(pos.qty, rate, mark_price)
        self._total[inst.quote] = self._total.get(inst.quote, 0.0) + amount
        pos.funding += amount
        log.debug("funding venue=%s symbol=%s rate=%s amount=%s ts_ns=%s", self.name, inst.symbol, rate, amount, ts_ns)
        return amount

    def resting_view(self, instrument_key: str) -> Mapping[str, RestingOrder]:
        """Live read-only view of ``instrument_key``'s resting orders, truthy when any rest.

        The drivers hold it to skip :meth:`on_trade` (and the per-trade work) while nothing
        rests, which is most of the time for taker strategies. For depth messages use
        :meth:`book_view`.
        """
        return self._queues[instrument_key].live

    def book_view(self, instrument_key: str) -> Mapping[str, bool]:
        """Live read-only view, truthy while ``instrument_key`` has resting orders OR holds
        consumed-liquidity records (liquidity our orders took, :class:`ConsumedLiquidity`).

        The drivers' per-message check: while it is truthy they must call :meth:`on_book` after
        *every* depth message of the instrument (no netting of messages: a level that went and
        came back, or fell and grew, between two of our takers is new liquidity); while it is
        falsy they may skip it. Its truthiness is a plain mapping length (no Python call); its
        entries (``"resting"``, ``"consumed"``) say which of the two holds.
        """
        return self._book_views[instrument_key]

    def resting(self, instrument_key: str) -> list[RestingOrder]:
        """Resting orders of an instrument with their queue position (inspection, tests)."""
        return self._queues[instrument_key].orders()

    # ---- internals -----------------------------------------------------------------------------

    def _opening_lots(self, inst: Instrument, side: Side, lots: int) -> int:
        pos = self._positions.get(inst.key)
        pos_lots = round(pos.qty / inst.lot_size) if pos is not None else 0
        after = pos_lots + side.sign * lots
        return max(abs(after) - abs(pos_lots), 0)

    def _reservation(self, so: _SimOrder) -> tuple[str, float]:
        """(asset, amount) an open order keeps locked for its remaining quantity."""
        inst = so.instrument
        remaining = so.remaining_lots * inst.lot_size
        if inst.kind is InstrumentKind.SPOT:
            if so.order.side is Side.SELL:
                return inst.base, remaining
            fee_rate = max(inst.maker_fee, inst.taker_fee, 0.0)
            return inst.quote, inst.notional(remaining, so.ref_price) * (1.0 + fee_rate)
        opening = min(so.remaining_lots, so.opening_lots) * inst.lot_size
        fee_rate = max(inst.maker_fee, inst.taker_fee, 0.0)
        return inst.quote, inst.notional(opening, so.ref_price) * (1.0 / self.leverage + fee_rate)

    def _locked(self) -> dict[str, float]:
        locked: dict[str, float] = {}
        for so in self._open.values():
            asset, amount = self._reservation(so)
            if amount:
                locked[asset] = locked.get(asset, 0.0) + amount
        for key, pos in self._positions.items():
            inst = self._instruments[key]
            if inst.is_derivative and pos.qty != 0.0:
                locked[inst.quote] = locked.get(inst.quote, 0.0) + inst.notional(pos.qty, pos.avg_price) / self.leverage
        return locked

    def _affordable_lots(self, so: _SimOrder, price: float) -> int:
        """Most lots of ``so`` a taker fill at ``price`` can take without overdrawing."""
        inst = so.instrument
        side = so.order.side
        locked = self._locked()
        _own_asset, own_reserved = self._reservation(so)
        if inst.kind is InstrumentKind.SPOT:
            if side is Side.SELL:
                avail = self._total.get(inst.base, 0.0) - locked.get(inst.base, 0.0) + own_reserved
                return lots_of(avail, inst.lot_size)
            avail = self._total.get(inst.quote, 0.0) - locked.get(inst.quote, 0.0) + own_reserved
            unit = inst.notional(inst.lot_size, price) * (1.0 + max(inst.taker_fee, 0.0))
            return lots_of(avail / unit, 1.0)
        pos = self._positions.get(inst.key)
        pos_lots = round(pos.qty / inst.lot_size) if pos is not None else 0
        reducing = min(abs(pos_lots), so.remaining_lots) if pos_lots * side.sign < 0 else 0
        if so.order.reduce_only:
            return reducing
        avail = self._total.get(inst.quote, 0.0) - locked.get(inst.quote, 0.0) + own_reserved
        unit = inst.notional(inst.lot_size, price) * (1.0 / self.leverage + max(inst.taker_fee, 0.0))
        return reducing + lots_of(avail / unit, 1.0)

    def _emit(self, ts_ns: int, events: list[PrivateEvent], *, venue_clock: bool = True) -> None:
        """Deliver ``events`` to the subscribers ``ack_ns`` after the venue decided them: at
        ``ts_ns - market_data_ns + ack_ns`` for a decision the venue made at clock ``ts_ns``
        (``venue_clock``; the venue runs ``market_data_ns`` ahead of the strategy's view), at
        ``ts_ns + ack_ns`` for one made at the strategy's time (a synchronous reject); never
        before the clock's now (module docstring, "Latency model")."""
        if not events:
            return

        def deliver() -> None:
            for event in events:
                for handler in self._handlers:
                    handler(event)

        lat, now = self.latency, self._clock.now_ns()
        at = max(ts_ns, now) + lat.ack_ns - (lat.market_data_ns if venue_clock else 0)
        self._clock.schedule(max(at, now), deliver)

    def _update(self, so: _SimOrder, ts_ns: int, reason: str | None = None) -> OrderUpdate:
        order = so.order
        return OrderUpdate(
            client_order_id=order.client_order_id,
            venue_order_id=order.venue_order_id or "",
            instrument_key=so.instrument.key,
            status=order.status,
            filled_qty=order.filled_qty,
            avg_fill_price=order.avg_fill_price,
            ts_ns=ts_ns,
            reason=reason,
        )

    def _reject_by_venue(self, order: Order, reason: RejectReason) -> Order:
        """A refusal by the venue's own checks: in the reply (``venue_rejects_in_reply``), or one
        round trip later: the caller gets the Order PENDING_NEW, the venue decides at the order's
        arrival time and its REJECTED OrderUpdate follows ``ack_ns`` after that."""
        if self.venue_rejects_in_reply:
            return self._reject_sync(order, reason)
        pending = copy.copy(order)
        self._reject_sync(order, reason, decided_ns=self._clock.now_ns() + self.latency.order_entry_ns)
        return pending

    def _reject_sync(
        self, order: Order, reason: RejectReason, *, store: bool = True, decided_ns: int | None = None
    ) -> Order:
        """Reject ``order`` now (the venue's record and counters); its OrderUpdate reaches the
        subscribers ``ack_ns`` after ``decided_ns`` (strategy time; default now)."""
        now = self._clock.now_ns()
        order.status = OrderStatus.REJECTED
        order.reject_reason = reason.value
        order.updated_ns = now
        self.n_rejected += 1
        if store and order.client_order_id not in self._orders:
            inst = order.instrument
            self._orders[order.client_order_id] = _SimOrder(order, inst, 0, None, 0.0, 0)
            self._retention.terminal(order.client_order_id, now)
        update = OrderUpdate(
            client_order_id=order.client_order_id,
            venue_order_id="",
            instrument_key=order.instrument.key,
            status=OrderStatus.REJECTED,
            filled_qty=0.0,
            avg_fill_price=0.0,
            ts_ns=now,
            reason=reason.value,
        )
        log.info(
            "order rejected venue=%s symbol=%s client_order_id=%s reason=%s",
            self.name,
            order.instrument.symbol,
            order.client_order_id,
            reason.value,
        )
        self._emit(now if decided_ns is None else decided_ns, [update], venue_clock=False)
        return copy.copy(order)

    def _finish(self, so: _SimOrder, status: OrderStatus, ts_ns: int, reason: str | None = None) -> OrderUpdate:
        so.order.status = status
        so.order.updated_ns = ts_ns
        if status is OrderStatus.REJECTED:
            so.order.reject_reason = reason
            self.n_rejected += 1
        self._open.pop(so.order.client_order_id, None)
        self._queues[so.instrument.key].remove(so.order.client_order_id)
        self._retention.terminal(so.order.client_order_id, ts_ns)
        return self._update(so, ts_ns, reason)

    def _fill(self, so: _SimOrder, price: float, lots: int, is_maker: bool, ts_ns: int) -> Fill:
        """Book one execution: order, balances, position, counters. Returns the Fill event."""
        inst = so.instrument
        order = so.order
        side = order.side
        qty = inst.lots_to_qty(lots)
        notional = inst.notional(qty, price)
        fee = (inst.maker_fee if is_maker else inst.taker_fee) * notional
        so.filled_lots += lots
        so.notional_sum += price * qty
        order.filled_qty = inst.lots_to_qty(so.filled_lots)
        order.avg_fill_price = so.notional_sum / order.filled_qty
        order.fees += fee
        order.updated_ns = ts_ns
        order.status = OrderStatus.FILLED if so.remaining_lots <= 0 else OrderStatus.PARTIALLY_FILLED
        pos = self.position(inst.key)
        fee_base = 0.0
        if inst.kind is InstrumentKind.SPOT:
            sign = side.sign
            if self.buy_fee_in_base and side is Side.BUY and fee > 0.0:
                # the fee leaves the base received (worth ``fee`` quote); the quote pays the notional
                fee_base = (inst.maker_fee if is_maker else inst.taker_fee) * qty
                so.fee_base += fee_base
                self._total[inst.base] = self._total.get(inst.base, 0.0) + qty - fee_base
                self._total[inst.quote] = self._total.get(inst.quote, 0.0) - notional
            else:
                self._total[inst.base] = self._total.get(inst.base, 0.0) + sign * qty
                self._total[inst.quote] = self._total.get(inst.quote, 0.0) - sign * notional - fee
            pos.apply_fill(side, qty, price, fee, inst, fee_base)
        else:
            realized_quote = pos.apply_fill(side, qty, price, fee, inst)
            self._total[inst.quote] = self._total.get(inst.quote, 0.0) + realized_quote - fee
        self._fill_seq += 1
        self.n_fills += 1
        self.fees_paid += fee
        fill = Fill(
            client_order_id=order.client_order_id,
            venue_order_id=order.venue_order_id or "",
            instrument_key=inst.key,
            side=side,
            price=price,
            qty=qty,
            fee=fee,
            is_maker=is_maker,
            ts_ns=ts_ns,
            fill_id=f"{self.name}-fill-{self._fill_seq}",
            fee_base=fee_base,
        )
        self._fills.append(fill)
        return fill

    def _apply_matches(self, matches: list[Match], ts_ns: int) -> int:
        """Book maker matches from the queue; one batch of events (fills, then updates) per call."""
        if not matches:
            return 0
        fills: list[PrivateEvent] = []
        touched: dict[str, _SimOrder] = {}
        for m in matches:
            so = self._open.get(m.key)
            if so is None:  # cannot happen: the queue only holds open orders
                log.warning("venue=%s match for unknown order client_order_id=%s", self.name, m.key)
                continue
            fills.append(self._fill(so, m.price, m.lots, True, ts_ns))
            touched[m.key] = so
        updates: list[PrivateEvent] = []
        for so in touched.values():
            if so.remaining_lots <= 0:
                updates.append(self._finish(so, OrderStatus.FILLED, ts_ns))
            else:
                updates.append(self._update(so, ts_ns))
        self._emit(ts_ns, fills + updates)
        return len(fills)

    def _arrive(self, so: _SimOrder) -> None:
        """The order reaches the matching engine (clock time = send + match delay)."""
        order = so.order
        if order.status is not OrderStatus.PENDING_NEW:
            return
        ts = self._clock.now_ns()
        inst = so.instrument
        key = inst.key
        book = self._books[key]
        consumed = self._consumed[key]
        events: list[PrivateEvent] = []
        if not book.is_valid:
            self._emit(ts, [self._finish(so, OrderStatus.REJECTED, ts, RejectReason.BOOK_INVALID.value)])
            return
        side = order.side
        tif = order.time_in_force
        is_market = order.type is OrderType.MARKET
        if tif is TimeInForce.POST_ONLY and not is_market:
            levels = iter_levels(book, side, so.price_ticks, inst.tick_size, inst.lot_size, consumed)
            if next(levels, None) is not None:
                reason = RejectReason.POST_ONLY_WOULD_TAKE.value
                self._emit(ts, [self._finish(so, OrderStatus.REJECTED, ts, reason)])
                return
        else:
            taken_side = "ask" if side is Side.BUY else "bid"
            capped = False
            for ticks, price, available in iter_levels(
                book, side, so.price_ticks, inst.tick_size, inst.lot_size, consumed
            ):
                lots = min(so.remaining_lots, available)
                affordable = self._affordable_lots(so, price)
                if affordable < lots:
                    lots = affordable
                    capped = True
                if lots <= 0:
                    break
                consumed.consume(book.version, taken_side, ticks, lots)
                events.append(self._fill(so, price, lots, False, ts))
                if so.remaining_lots <= 0 or capped:
                    break
            if not events and (is_market or capped):
                reason = RejectReason.INSUFFICIENT_BALANCE if capped else RejectReason.NO_LIQUIDITY
                self._emit(ts, [self._finish(so, OrderStatus.REJECTED, ts, reason.value)])
                return
        order.updated_ns = ts
        ack = OrderUpdate(
            client_order_id=order.client_order_id,
            venue_order_id=order.venue_order_id or "",
            instrument_key=key,
            status=OrderStatus.NEW,
            filled_qty=0.0,
            avg_fill_price=0.0,
            ts_ns=ts,
        )
        out: list[PrivateEvent] = [ack, *events]
        if so.remaining_lots <= 0:
            out.append(self._finish(so, OrderStatus.FILLED, ts))
        elif is_market or tif is TimeInForce.IOC:
            if events:
                out.append(self._update(so, ts))  # PARTIALLY_FILLED
            out.append(self._finish(so, OrderStatus.CANCELED, ts))
        else:
            if events:
                out.append(self._update(so, ts))  # PARTIALLY_FILLED, the rest rests
            else:
                order.status = OrderStatus.NEW
            if so.price_ticks is None:  # cannot happen: market orders took the branch above
                raise RuntimeError(f"resting order {order.client_order_id!r} has no price")
            # the rest may sit at a price the recorded opposite side still crosses: those levels
            # are ours already (ConsumedLiquidity keeps them until the recorded book changes
            # them), so it fills only from what the book newly shows there or from trades
            own: BookSide = "bid" if side is Side.BUY else "ask"
            rest_price = _tick_price(inst, so.price_ticks)
            self._rest_seq += 1
            self._queues[key].add(
                RestingOrder(
                    order.client_order_id,
                    side,
                    so.price_ticks,
                    rest_price,
                    so.remaining_lots,
                    book.qty_at(own, rest_price),
                    self._rest_seq,
                )
            )
        self._emit(ts, out)

    def _cancel_arrive(self, so: _SimOrder) -> None:
        if so.order.status.is_terminal:
            return
        ts = self._clock.now_ns()
        self._emit(ts, [self._finish(so, OrderStatus.CANCELED, ts)])
