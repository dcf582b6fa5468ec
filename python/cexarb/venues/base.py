"""Venue interfaces, split as the spec does: public market data vs private trading.

A strategy never knows whether its venues are replayed, simulated behind a loopback server, or
live: the engine hands it objects that satisfy :class:`PublicVenue` and :class:`PrivateVenue`.

Private venues report order progress as :class:`OrderUpdate` and :class:`Fill` events to the
handlers registered with ``subscribe``; the execution layer owns the strategy-side ``Order``
objects and applies those events to them.
"""

from __future__ import annotations

import enum
from typing import Callable, Protocol, runtime_checkable

import msgspec

from cexarb import _core
from cexarb._core import OrderBook
from cexarb.model import (
    Balance,
    BookTicker,
    Fill,
    FundingEvent,
    FundingInfo,
    Instrument,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Side,
    TimeInForce,
    Trade,
)

__all__ = [
    "BookUpdate",
    "MarketEvent",
    "OrderRequest",
    "OrderUpdate",
    "PrivateEvent",
    "PrivateVenue",
    "PublicVenue",
    "RejectReason",
]


class RejectReason(enum.StrEnum):
    PRICE_OFF_TICK = "price_off_tick"
    QTY_OFF_LOT = "qty_off_lot"
    QTY_NOT_POSITIVE = "qty_not_positive"
    MIN_NOTIONAL = "min_notional"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    POST_ONLY_WOULD_TAKE = "post_only_would_take"
    NO_LIQUIDITY = "no_liquidity"
    BOOK_INVALID = "book_invalid"
    UNKNOWN_INSTRUMENT = "unknown_instrument"
    DUPLICATE_CLIENT_ORDER_ID = "duplicate_client_order_id"
    VENUE_ERROR = "venue_error"


# OrderRequest.create's checks and formatting, in Rust (grid check as in the Rust book: within
# 1e-6 of a whole tick/lot plus 1e-12 relative float noise)
_order_fields = _core.order_fields
# read on the order path as module globals (an Enum class attribute costs a metaclass lookup)
_LIMIT = OrderType.LIMIT
_MARKET = OrderType.MARKET


class OrderRequest(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What a strategy asks a venue to do. Price and quantity are held as integer ticks and lots.

    Build with :meth:`create`, which converts float price/qty at the edge and raises ValueError
    naming the field when the price is not on the tick grid or the quantity not a whole number of
    lots. ``wire_price`` / ``wire_qty`` are the exact decimal strings sent to a venue, formatted
    once from the ticks and lots; ``price`` / ``qty`` are the floats nearest those decimals (not
    ``ticks * tick_size``). An empty ``client_order_id`` is assigned by the order manager when the
    order is submitted.
    """

    instrument: Instrument
    side: Side
    type: OrderType
    qty_lots: int
    price_ticks: int | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    client_order_id: str = ""
    reduce_only: bool = False
    tag: str = ""
    # Derived once by create() from the integer ticks/lots (never from the float arguments):
    wire_qty: str = ""
    wire_price: str | None = None
    qty: float = 0.0
    price: float | None = None

    @classmethod
    def create(
        cls,
        instrument: Instrument,
        side: Side,
        qty: float,
        *,
        price: float | None = None,
        price_ticks: int | None = None,
        type: OrderType | None = None,
        time_in_force: TimeInForce = TimeInForce.GTC,
        client_order_id: str | None = None,
        reduce_only: bool = False,
        tag: str = "",
    ) -> OrderRequest:
        """Validate and convert an order given in floats.

        Args:
            qty: base units (or contracts where the instrument counts contracts); must be a whole
                number of lots within 1e-6 lot (plus 1e-12 relative float noise).
            price: limit price, quote currency, on the tick grid within 1e-6 tick; None = market.
            price_ticks: the limit price as whole ticks instead of ``price`` (exact; no rounding).

        Raises:
            ValueError: naming ``qty`` or ``price`` and the offending value.
        """
        # one boundary crossing: the checks (messages name the field and the value given), the
        # integer ticks/lots, both exact decimal strings and the floats nearest them
        lots, ticks, wire_qty, wire_price, fqty, fprice = _order_fields(
            instrument, qty, price, price_ticks, type is _LIMIT
        )
        otype = type if type is not None else (_MARKET if ticks is None else _LIMIT)
        return cls(
            instrument=instrument,
            side=side,
            type=otype,
            qty_lots=lots,
            price_ticks=ticks,
            time_in_force=time_in_force,
            client_order_id=client_order_id or "",
            reduce_only=reduce_only,
            tag=tag,
            wire_qty=wire_qty,
            wire_price=wire_price,
            qty=fqty,
            price=fprice,
        )

    def to_order(self, ts_ns: int) -> Order:
        """The strategy-side Order record for this request (status PENDING_NEW)."""
        return Order(
            client_order_id=self.client_order_id,
            instrument=self.instrument,
            side=self.side,
            type=self.type,
            qty=self.qty,
            price=self.price,
            time_in_force=self.time_in_force,
            reduce_only=self.reduce_only,
            created_ns=ts_ns,
            updated_ns=ts_ns,
            tag=self.tag,
        )


class OrderUpdate(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A change of an order's state reported by a venue (ack, partial fill, cancel, reject).

    ``filled_qty`` / ``avg_fill_price`` are cumulative over the order's life.
    """

    client_order_id: str
    venue_order_id: str
    instrument_key: str
    status: OrderStatus
    filled_qty: float
    avg_fill_price: float
    ts_ns: int
    reason: str | None = None


class BookUpdate(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The top of the local L2 book of ``instrument_key`` changed at ``ts_ns``.

    ``price_changed`` is True when a best bid/ask price moved (False: only a best quantity).
    """

    instrument_key: str
    ts_ns: int
    price_changed: bool = True


MarketEvent = BookUpdate | Trade | BookTicker | FundingEvent
PrivateEvent = OrderUpdate | Fill


@runtime_checkable
class PublicVenue(Protocol):
    """Market data of one venue: instruments, maintained L2 books, trades, BBO, funding."""

    name: str

    def instruments(self) -> dict[str, Instrument]:
        """Instruments by ``Instrument.key``."""
        ...

    def book(self, instrument_key: str) -> OrderBook:
        """The maintained local L2 book (read it; never mutate it)."""
        ...

    def subscribe_market(self, handler: Callable[[MarketEvent], None]) -> None:
        """Call ``handler`` for every market event of this venue."""
        ...

    def funding(self, instrument_key: str) -> FundingInfo | None:
        """The current funding terms of perpetual ``instrument_key``: rate per funding interval
        (fraction), next funding time (ns since the epoch), interval (ns) and when the rate was
        last read (ns) -- see :class:`~cexarb.model.FundingInfo`. Kept current by the venue (Gate
        USDT futures: ``futures.tickers`` pushes and a REST re-read after each funding time,
        PROTOCOLS.md §3.2, §3.4); reading it does no I/O.

        Returns None for spot instruments (and for a perpetual whose funding the venue does not
        know). Raises KeyError naming the key when the instrument is not this venue's.
        """
        ...


@runtime_checkable
class PrivateVenue(Protocol):
    """Trading on one venue: orders, fills, balances, positions."""

    name: str

    async def place_order(self, request: OrderRequest) -> Order:
        """Send an order; returns its Order record (PENDING_NEW until acked, or REJECTED)."""
        ...

    async def cancel_order(self, instrument_key: str, client_order_id: str) -> bool:
        """Request a cancel; True if the order was open when the request was sent."""
        ...

    async def cancel_all(self, instrument_key: str | None = None) -> int:
        """Cancel every open order (of one instrument); returns how many were open."""
        ...

    async def get_order(self, instrument_key: str, client_order_id: str) -> Order | None:
        """The venue's current record of an order by our client order id (None: unknown)."""
        ...

    async def get_order_by_venue_id(self, instrument_key: str, venue_order_id: str) -> Order | None:
        """The venue's current record of an order by the venue's order id (None: unknown)."""
        ...

    async def open_orders(self, instrument_key: str | None = None) -> list[Order]: ...

    async def fills(self, instrument_key: str | None = None) -> list[Fill]: ...

    async def balances(self) -> dict[str, Balance]: ...

    async def positions(self) -> dict[str, Position]: ...

    def subscribe(self, handler: Callable[[PrivateEvent], None]) -> None:
        """Call ``handler`` for every OrderUpdate and Fill of this account."""
        ...
