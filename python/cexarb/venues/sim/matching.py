"""Matching core of the simulated venue: taker walks over a recorded book and the resting-order fill model.

No I/O, no clock, no accounting: the functions and classes here read a recorded Rust
:class:`~cexarb._core.OrderBook` (never mutate it) and say which of our orders trade, at what
price and for how many lots. :mod:`cexarb.venues.sim.venue` owns latency, balances and events; the
same core can sit behind a loopback HTTP/WS server.

Assumptions (the usual ones for L2 replay, as in hftbacktest):

* **The recorded market does not react to us.** Our orders are not inserted into the recorded
  book, and liquidity we take is not removed from it. To avoid taking the same recorded quantity
  twice, :class:`ConsumedLiquidity` remembers what our orders took at each price level, *across*
  book versions, until the recorded book shows that level changing (our rule, below).
* **Consumed liquidity (our rule).** Per ``(book side, price ticks)`` we keep the quantity we
  took (``taken``) and the recorded quantity we last saw there (``seen``); what is available to us
  at that level is ``recorded - taken``, floored to whole lots. When the book has a new
  ``version`` (the replay applied a depth message), each consumed level, and only those, is
  reconciled with its recorded quantity ``L1``:

  - ``L1 == seen`` (the messages did not touch that level: another side, other levels, or a
    restatement of the same size): nothing changes, what we took stays ours. This is the audit
    case: a bid-only message must not hand the same asks to us again.
  - ``L1 > seen``: the increase is new liquidity and is available to us; ``taken`` is unchanged,
    so we never get more than the growth.
  - ``L1 < seen``: the recorded market traded or cancelled ``seen - L1`` at that level. Trades hit
    the front of the level first, which is where our take was, so the decrease is attributed to
    what we took: ``taken -= min(taken, seen - L1)``. What is available is then
    ``min(L1, seen - taken)``: never more than what the level held after our take, never more
    than it holds now.
  - ``L1 == 0`` (the level is gone): the record is dropped; if the price comes back, what it then
    shows is new liquidity.

  Why it is conservative: with ``avail = seen - taken``, a take lowers ``avail`` by what it
  fills, a decrease never raises it, and an increase raises it by exactly the increase. So at
  every price our cumulative fills never exceed the recorded quantity first seen there plus every
  later increase (and every reappearance) the book showed. The drivers reconcile the records after
  *every* depth message of an instrument while it holds any (``SimVenue.book_view`` is truthy then,
  also with no order resting): netting messages would lose a level that went and came back (1.0
  -> 0 -> 1.0 is a new order, not our old take) or a decrease followed by growth (1.0 -> 0.4 ->
  1.0: 0.6 traded, 0.6 new). The cost is O(levels we hold a record for) per depth message while
  records exist, nothing when there are none, never O(book).

  For comparison, NautilusTrader's ``liquidity_consumption`` (``OrderMatchingEngine``, Rust
  ``crates/execution/src/matching_engine/engine.rs``, ``apply_liquidity_consumption``) keeps
  ``(original_size, consumed)`` per price and resets ``consumed`` to 0 whenever the level's
  recorded size changes at all. Like it, we leave a level no message touched consumed; we are
  stricter after a change: an increase gives back only the increase and a decrease at most what
  the level held after our take, never the whole new level.
* **Risk-averse queue position** (hftbacktest ``RiskAverseQueueModel``): a resting order joins
  behind the whole recorded quantity at its price when it arrives (``queue_ahead``). Only recorded
  trades at our price advance the queue; a recorded quantity decrease at our price (which may be a
  cancel behind us) only caps ``queue_ahead`` at the new level quantity, never advances it further.
* Quantities of our orders are whole lots (``int``); recorded quantities are floats and are
  floored to whole lots when we trade against them.
"""

from __future__ import annotations

import math
import types
from collections.abc import Iterator, Mapping
from typing import Literal

import msgspec

from cexarb._core import OrderBook
from cexarb.model import Side

__all__ = [
    "WATCH_CONSUMED",
    "WATCH_RESTING",
    "BookSide",
    "ConsumedLiquidity",
    "Match",
    "QueueModelName",
    "RestingOrder",
    "RiskAverseQueue",
    "iter_levels",
    "lots_of",
]

QueueModelName = Literal["risk_averse"]
BookSide = Literal["bid", "ask"]

#: entries of a ``watch`` dict (:class:`ConsumedLiquidity`, :class:`RiskAverseQueue`): present
#: while the instrument holds consumption records / resting orders, i.e. while its driver must
#: show the venue every depth message (``SimVenue.book_view``)
WATCH_CONSUMED = "consumed"
WATCH_RESTING = "resting"

_LOT_EPS = 1e-9  # float noise tolerance when converting a recorded qty to whole lots
_FIRST_DEPTH = 32  # levels read per depth() call; doubled while a walk needs more


def lots_of(qty: float, lot_size: float) -> int:
    """Whole lots in a non-negative recorded ``qty`` (floored; float noise tolerated); 0 if ``qty <= 0``."""
    if not qty > 0.0:
        return 0
    return math.floor(qty / lot_size + _LOT_EPS)


class Match(msgspec.Struct, frozen=True, kw_only=True):
    """One execution of one of our orders decided by the matching core.

    Attributes:
        key: the order's key in the core (the venue uses its client order id).
        price_ticks: execution price in ticks of the instrument's ``tick_size``.
        price: execution price, quote currency (the level price for takers, our limit for makers).
        lots: executed quantity in whole lots (> 0).
        is_maker: True for resting-order fills (maker fee), False for taker walks.
    """

    key: str
    price_ticks: int
    price: float
    lots: int
    is_maker: bool


class ConsumedLiquidity:
    """Recorded liquidity our orders have taken, per level, kept until the recorded level changes.

    Keyed by ``(book side, price ticks)`` where the book side is the side that was *taken*
    (``"ask"`` for a buy taker). Each record holds ``taken`` (quantity we took, base units or
    contracts as recorded, > 0) and ``seen`` (the recorded quantity at that level when we last
    looked). :meth:`sync` reconciles the records with a new book version by the rule in the
    module docstring (unchanged level: still ours; growth: only the growth is new; decrease:
    charged to our take; level gone: record dropped). Quantities are kept in recorded units, not
    floored lots, so a level wobbling around a lot boundary cannot mint lots we never had.

    Args:
        tick_size: the instrument's tick size, quote currency (``ticks * tick_size`` is the
            price used to read a level back from the book).
        lot_size: the instrument's lot size, base units (contracts): what is available to us is
            floored to whole lots of it.

    The version-taking methods (:meth:`available_lots`, :meth:`consume`, :meth:`taken_qty`)
    must see the version the record was last synced to (or the current version of the book it
    was synced with, which they then sync to); :func:`iter_levels` syncs before it reads, so
    callers that take liquidity after an :func:`iter_levels` walk (the venue, the loopback
    server, :meth:`RiskAverseQueue.on_book`) need not sync themselves. Between takes, whoever
    applies depth messages must :meth:`sync` after each one while records exist (see ``watch``).

    ``watch`` (optional): a dict shared with the instrument's driver-facing check; it holds the
    entry ``WATCH_CONSUMED`` exactly while at least one record exists (set by :meth:`consume`,
    removed when :meth:`sync` drops the last record), so a driver can test
    "must every depth message be reconciled?" with a plain dict truthiness, no Python call.
    """

    __slots__ = ("_book", "_held", "_lot_size", "_seen", "_taken", "_tick_size", "_version", "_watch")

    def __init__(self, tick_size: float, lot_size: float, watch: dict[str, bool] | None = None) -> None:
        if not (tick_size > 0.0 and lot_size > 0.0):
            raise ValueError(f"tick_size and lot_size must be > 0, got {tick_size!r}, {lot_size!r}")
        self._tick_size = tick_size
        self._lot_size = lot_size
        self._version: int | None = None
        self._book: OrderBook | None = None
        # (book side, ticks) -> recorded units; both dicts always have the same keys (one record)
        self._taken: dict[tuple[str, int], float] = {}
        self._seen: dict[tuple[str, int], float] = {}
        self._watch = watch
        # (book side, ticks) -> whole lots withheld from us in the current version only (hold())
        self._held: dict[tuple[str, int], int] = {}

    def __len__(self) -> int:
        """Number of levels we currently hold consumption for."""
        return len(self._taken)

    def _emptied(self) -> None:
        """The last record went: the driver no longer needs to show us every depth message."""
        if self._watch is not None:
            self._watch.pop(WATCH_CONSUMED, None)

    def _recorded(self, book: OrderBook, book_side: str, ticks: int) -> float:
        side: BookSide = "ask" if book_side == "ask" else "bid"
        return book.qty_at(side, ticks * self._tick_size)

    def sync(self, book: OrderBook) -> None:
        """Reconcile the records with ``book`` if its ``version`` is new to us; O(records).

        Only levels we hold a record for are read back (``book.qty_at``), never the whole book.
        A level whose recorded quantity is unchanged keeps everything we took there.
        """
        version = book.version
        if version == self._version and book is self._book:
            return
        self._version = version
        self._book = book
        if self._held:
            self._held.clear()  # a hold never outlives the version it was made for
        if not self._taken:
            return
        taken, seen = self._taken, self._seen
        noise = self._lot_size * _LOT_EPS
        for key in list(taken):
            now = self._recorded(book, key[0], key[1])
            before = seen[key]
            if now == before:
                continue  # no message since our last look changed this level: still ours
            if not now > 0.0:
                del taken[key], seen[key]  # level gone: what comes back later is new liquidity
                continue
            if now < before:
                # the recorded market traded/cancelled (before - now) here; trades eat the front
                # of the level, where our take was, so the decrease is charged to our take first
                left = taken[key] - (before - now)
                if left <= noise:
                    del taken[key], seen[key]
                    continue
                taken[key] = left
            # growth (now > before): taken unchanged, only the increase becomes available
            seen[key] = now
        if not taken:
            self._emptied()

    def _check(self, version: int) -> None:
        if version == self._version:
            return
        book = self._book
        if book is not None and book.version == version:
            self.sync(book)  # the book moved on since our last look and the caller reads it now
            return
        raise ValueError(
            f"ConsumedLiquidity is synced to book version {self._version}, not {version}: call sync(book) first"
        )

    def available_lots(self, version: int, book_side: str, ticks: int, level_lots: int) -> int:
        """Whole lots of a recorded level (``level_lots`` of it in book ``version``) not already ours."""
        self._check(version)
        key = (book_side, ticks)
        taken = self._taken.get(key)
        available = level_lots if taken is None else min(level_lots, lots_of(self._seen[key] - taken, self._lot_size))
        if self._held:
            available = max(0, available - self._held.get(key, 0))
        return available

    def consume(self, version: int, book_side: str, ticks: int, lots: int) -> None:
        """Record that we took ``lots`` (whole lots, >= 0) at ``ticks`` on ``book_side`` of book ``version``."""
        self._check(version)
        if lots <= 0:
            return
        key = (book_side, ticks)
        qty = lots * self._lot_size
        prior = self._taken.get(key)
        if prior is not None:
            self._taken[key] = prior + qty
            return
        if self._book is None:  # cannot happen: _check passed, so sync(book) ran
            raise RuntimeError("ConsumedLiquidity.consume before sync(book)")
        self._seen[key] = self._recorded(self._book, book_side, ticks)
        self._taken[key] = qty
        if self._watch is not None:
            self._watch[WATCH_CONSUMED] = True

    def hold(self, version: int, book_side: str, ticks: int, lots: int) -> None:
        """Withhold ``lots`` (whole lots, >= 0) at ``ticks`` on ``book_side`` of book ``version``
        from our orders, for that version only: no record is made (what our orders took is
        unchanged), :meth:`available_lots` just shows that much less until :meth:`release_holds`
        or the next :meth:`sync` to a new version. The loopback server's partial-fill fault caps
        one order with it (:meth:`~cexarb.venues.sim.server.SimServer.place`)."""
        self._check(version)
        if lots <= 0:
            return
        key = (book_side, ticks)
        self._held[key] = self._held.get(key, 0) + lots

    def release_holds(self, keep: bool = False) -> None:
        """Drop every :meth:`hold` (the capped order has matched). With ``keep`` (a capped GTC
        order whose rest still crosses the book) the held lots are recorded as taken instead
        (:meth:`consume`): the rest may not fill from liquidity it was shown on arrival and
        denied -- a real venue would have matched it -- so, as for what our orders took, that
        liquidity is ours until the recording changes its level (other orders do not get it
        either: one record serves every order of the instrument)."""
        version = self._version
        if keep and version is not None:  # holds exist only once synced (hold() checks it)
            for (book_side, ticks), lots in self._held.items():
                self.consume(version, book_side, ticks, lots)
        self._held.clear()

    def taken_qty(self, version: int, book_side: str, ticks: int) -> float:
        """Quantity at a level (as of book ``version``) still counted as ours, recorded units."""
        self._check(version)
        return self._taken.get((book_side, ticks), 0.0)


def iter_levels(
    book: OrderBook,
    taker_side: Side,
    limit_ticks: int | None,
    tick_size: float,
    lot_size: float,
    consumed: ConsumedLiquidity,
) -> Iterator[tuple[int, float, int]]:
    """Levels a taker of ``taker_side`` can trade against, best first, net of what we already took.

    A buy walks the asks (prices ``<= limit``), a sell walks the bids (prices ``>= limit``);
    ``limit_ticks`` None means no limit (market order). Levels are read with ``book.depth(n)``,
    doubling ``n`` until the walk stops or the side is exhausted.

    Yields:
        ``(price_ticks, price, available_lots)`` with ``available_lots > 0``. The caller takes
        what it needs and records it with :meth:`ConsumedLiquidity.consume` (before resuming the
        iteration, if it resumes); the book must not change during the iteration.
    """
    book_side = "ask" if taker_side is Side.BUY else "bid"
    consumed.sync(book)
    version = book.version
    n = _FIRST_DEPTH
    start = 0
    while True:
        bids, asks = book.depth(n)
        rows = asks if taker_side is Side.BUY else bids
        count = len(rows)
        for i in range(start, count):
            price = float(rows[i][0])
            ticks = round(price / tick_size)
            if limit_ticks is not None:
                if taker_side is Side.BUY and ticks > limit_ticks:
                    return
                if taker_side is Side.SELL and ticks < limit_ticks:
                    return
            available = consumed.available_lots(version, book_side, ticks, lots_of(float(rows[i][1]), lot_size))
            if available > 0:
                yield ticks, price, available
        if count < n:
            return
        start = count
        n *= 2


class RestingOrder:
    """Our order resting in the simulated queue (mutable; owned by :class:`RiskAverseQueue`).

    Attributes:
        key: client order id.
        side: buy rests on the bid, sell on the ask.
        price_ticks, price: limit price.
        remaining_lots: unfilled quantity, whole lots.
        queue_ahead: recorded quantity ahead of us at our price, base units (contracts for
            instruments that count contracts), as recorded in the book.
        seq: arrival sequence; time priority among our own orders at one price.
    """

    __slots__ = ("key", "price", "price_ticks", "queue_ahead", "remaining_lots", "seq", "side")

    def __init__(
        self, key: str, side: Side, price_ticks: int, price: float, remaining_lots: int, queue_ahead: float, seq: int
    ) -> None:
        self.key = key
        self.side = side
        self.price_ticks = price_ticks
        self.price = price
        self.remaining_lots = remaining_lots
        self.queue_ahead = queue_ahead
        self.seq = seq

    def __repr__(self) -> str:
        return (
            f"RestingOrder({self.key!r}, {self.side.value}, {self.price!r}, lots={self.remaining_lots}, "
            f"queue_ahead={self.queue_ahead!r})"
        )


class RiskAverseQueue:
    """Resting orders of one instrument and the risk-averse fill model for them.

    Fill rules (called by the replay driver through the venue, in recorded-time order):

    * :meth:`on_trade`: a recorded trade strictly *through* our price (a sell taker below our
      bid, a buy taker above our ask) fills us up to the trade quantity and empties our queue
      (the whole level at our price must have traded). A trade *at* our price first consumes
      ``queue_ahead``; the excess fills us. One recorded trade is shared among our orders in
      price-time priority: what it gave to an earlier order of ours is not available to a later one.
    * :meth:`on_book`: after a depth message, ``queue_ahead = min(queue_ahead, recorded qty at our
      price)``; if the recorded opposite side now reaches our price (ask <= our bid / bid >= our
      ask), we fill as maker at *our* price for what the recorded opposite side holds within our
      price, net of what our orders still hold there (:class:`ConsumedLiquidity`: levels we took
      earlier stay ours until the recorded book changes them, so the unfilled rest of a marketable
      GTC order that rests against asks it already took fills only from new liquidity).

    Source: hftbacktest ``RiskAverseQueueModel`` (nkaz001/hftbacktest, ``backtest/models/queue.rs``).

    ``watch`` (optional): a dict shared with the instrument's driver-facing check; it holds the
    entry ``WATCH_RESTING`` exactly while an order rests (see :class:`ConsumedLiquidity`).
    """

    def __init__(self, tick_size: float, lot_size: float, watch: dict[str, bool] | None = None) -> None:
        self.tick_size = tick_size
        self.lot_size = lot_size
        self._orders: dict[str, RestingOrder] = {}
        self._view = types.MappingProxyType(self._orders)
        self._watch = watch

    def _emptied(self) -> None:
        if self._watch is not None and not self._orders:
            self._watch.pop(WATCH_RESTING, None)

    def __len__(self) -> int:
        return len(self._orders)

    @property
    def live(self) -> Mapping[str, RestingOrder]:
        """Read-only live view of the resting orders (truthy when any rest): the drivers' fast
        check before they call :meth:`on_trade` (depth messages: ``SimVenue.book_view``)."""
        return self._view

    def __contains__(self, key: object) -> bool:
        return key in self._orders

    def get(self, key: str) -> RestingOrder | None:
        return self._orders.get(key)

    def add(self, order: RestingOrder) -> None:
        """Rest ``order``; raises ValueError if its key is already resting or it has no lots."""
        if order.key in self._orders:
            raise ValueError(f"resting order {order.key!r} already in the queue")
        if order.remaining_lots <= 0:
            raise ValueError(f"resting order {order.key!r}: remaining_lots must be > 0, got {order.remaining_lots}")
        self._orders[order.key] = order
        if self._watch is not None:
            self._watch[WATCH_RESTING] = True

    def remove(self, key: str) -> RestingOrder | None:
        """Take an order out (cancel); None if it is not resting."""
        order = self._orders.pop(key, None)
        self._emptied()
        return order

    def orders(self) -> list[RestingOrder]:
        """Resting orders in arrival order."""
        return sorted(self._orders.values(), key=lambda o: o.seq)

    def _priority(self, side: Side) -> list[RestingOrder]:
        same = [o for o in self._orders.values() if o.side is side]
        if side is Side.BUY:
            same.sort(key=lambda o: (-o.price_ticks, o.seq))
        else:
            same.sort(key=lambda o: (o.price_ticks, o.seq))
        return same

    def _take(self, order: RestingOrder, lots: int, out: list[Match]) -> None:
        order.remaining_lots -= lots
        out.append(Match(key=order.key, price_ticks=order.price_ticks, price=order.price, lots=lots, is_maker=True))
        if order.remaining_lots <= 0:
            del self._orders[order.key]
            self._emptied()

    def on_trade(self, price_ticks: int, qty: float, taker_side: Side) -> list[Match]:
        """Apply one recorded trade; returns our maker fills (fully filled orders leave the queue).

        Args:
            price_ticks: trade price in ticks.
            qty: trade quantity, base units (contracts where the instrument counts contracts).
            taker_side: the aggressor's side (Binance ``m`` true = seller is the taker).
        """
        if not self._orders or not qty > 0.0:
            return []
        maker_side = taker_side.opposite
        out: list[Match] = []
        given = 0.0
        for order in self._priority(maker_side):
            if maker_side is Side.BUY:
                reached = price_ticks <= order.price_ticks
            else:
                reached = price_ticks >= order.price_ticks
            if not reached:
                break  # priority order: no later order is reached either
            available = qty - given
            if available <= 0.0:
                break
            if price_ticks == order.price_ticks:
                ahead = min(order.queue_ahead, available)
                order.queue_ahead -= ahead
                available -= ahead
            else:
                order.queue_ahead = 0.0
            lots = min(order.remaining_lots, lots_of(available, self.lot_size))
            if lots > 0:
                given += lots * self.lot_size
                self._take(order, lots, out)
        return out

    def on_book(self, book: OrderBook, consumed: ConsumedLiquidity) -> list[Match]:
        """Re-read the recorded book after a depth message; returns maker fills from a crossed price.

        Reconciles ``consumed`` with the book first (every message, crossed or not: see
        :class:`ConsumedLiquidity`). Does nothing while the book is invalid (sequence gap /
        crossed): its levels are not trusted.
        """
        if not book.is_valid:
            return []
        consumed.sync(book)
        if not self._orders:
            return []
        for order in self._orders.values():
            own: BookSide = "bid" if order.side is Side.BUY else "ask"
            recorded = book.qty_at(own, order.price)
            order.queue_ahead = min(order.queue_ahead, recorded)
        out: list[Match] = []
        version = book.version
        for side in (Side.BUY, Side.SELL):
            best = book.best_ask() if side is Side.BUY else book.best_bid()
            if best is None:
                continue
            best_ticks = round(best[0] / self.tick_size)
            opposite = "ask" if side is Side.BUY else "bid"
            for order in self._priority(side):
                crossed = best_ticks <= order.price_ticks if side is Side.BUY else best_ticks >= order.price_ticks
                if not crossed:
                    break
                order.queue_ahead = 0.0
                for ticks, _price, available in iter_levels(
                    book, side, order.price_ticks, self.tick_size, self.lot_size, consumed
                ):
                    lots = min(order.remaining_lots, available)
                    consumed.consume(version, opposite, ticks, lots)
                    self._take(order, lots, out)
                    if order.key not in self._orders:
                        break
        return out
