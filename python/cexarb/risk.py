"""Pre-trade risk checks (DESIGN.md "Risk"). Limits come from config, never from strategy code.

Every order a strategy submits passes :meth:`RiskPolicy.check` before it reaches a venue; a
breach rejects the order locally with a reason naming the limit and the value.
"""

from __future__ import annotations

import math
from typing import NoReturn

import msgspec

from cexarb import _core
from cexarb._core import OrderBook
from cexarb.model import InstrumentKind, Position
from cexarb.venues.base import OrderRequest

__all__ = ["RiskLimits", "RiskPolicy", "RiskRejection"]

_INVERSE = InstrumentKind.INVERSE_PERP


class RiskLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Risk limits; 0 disables a limit.

    Attributes:
        max_order_notional: largest single order, quote currency.
        max_position_notional: largest absolute position per instrument after the order, quote.
        price_band_bps: a limit order's price may be at most this far through the mid, bps.
        max_open_orders: open orders across the strategy.
    """

    max_order_notional: float = 250_000.0
    max_position_notional: float = 500_000.0
    price_band_bps: float = 100.0
    max_open_orders: int = 50

    def __post_init__(self) -> None:
        for name in ("max_order_notional", "max_position_notional", "price_band_bps"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"RiskLimits.{name} must be finite and >= 0, got {value!r}")
        if self.max_open_orders < 0:
            raise ValueError(f"RiskLimits.max_open_orders must be >= 0, got {self.max_open_orders!r}")


class RiskRejection(Exception):
    """An order breached a limit; the message names the limit, the value and the limit's value."""


class RiskPolicy:
    """Applies :class:`RiskLimits` to order requests; the check itself runs in Rust
    (:class:`cexarb._core.PreTradeRisk`, one call per order)."""

    def __init__(self, limits: RiskLimits | None = None) -> None:
        self.limits = limits or RiskLimits()
        self.rejections = 0

    @property
    def limits(self) -> RiskLimits:
        """The limits in force; assigning new ones takes effect for the next order."""
        return self._limits

    @limits.setter
    def limits(self, limits: RiskLimits) -> None:
        self._limits = limits
        self._core = _core.PreTradeRisk(
            limits.max_order_notional, limits.max_position_notional, limits.price_band_bps, limits.max_open_orders
        )

    def check(
        self, request: OrderRequest, book: OrderBook, position: Position | None, open_orders: int,
        pending_qty: float = 0.0,
    ) -> None:
        """Raise :class:`RiskRejection` if ``request`` breaches a limit.

        Checked in this order: the book is valid and has a mid; order notional (at the limit
        price, or the mid for a market order) <= ``max_order_notional``; position notional after
        the order (at the mid; only when the order grows the absolute position) <=
        ``max_position_notional``; a limit price at most ``price_band_bps`` through the mid;
        ``open_orders`` < ``max_open_orders``. Notional: ``|qty| * contract_size * price``, or
        ``|qty| * contract_size`` for an inverse perp.

        Args:
            request: the order.
            book: the instrument's current L2 book (for mid and validity).
            position: the strategy's current position in the instrument, or None.
            open_orders: the strategy's open orders now, those on their way to the venue included.
            pending_qty: signed quantity (instrument units, + buys) of the strategy's orders on
                this instrument and side still open or on their way: counted into the position,
                so orders sent one after another cannot together pass ``max_position_notional``.
        """
        inst = request.instrument
        qty = position.qty if position is not None else 0.0
        breach = self._core.check(
            book, request.side.sign, request.qty, request.price, qty + pending_qty,
            open_orders, inst.contract_size, inst.kind is _INVERSE,
        )
        if breach is not None:
            self._reject(self._message(breach, request, book))

    def _message(self, breach: tuple[str, float, float], request: OrderRequest, book: OrderBook) -> str:
        code, value, limit = breach
        key = request.instrument.key
        if code == "book_invalid":
            return f"book of {key} is not valid ({book.invalid_reason})"
        if code == "no_mid":
            return f"book of {key} has no mid"
        if code == "order_notional":
            return f"order notional {value:.2f} > max_order_notional {limit:.2f}"
        if code == "position_notional":
            return f"position notional after order {value:.2f} > max_position_notional {limit:.2f}"
        if code == "price_band":
            return f"limit price {request.price} is {value:.1f} bps through mid > price_band_bps {self.limits.price_band_bps}"
        return f"open orders {value:.0f} >= max_open_orders {limit:.0f}"

    def _reject(self, message: str) -> NoReturn:
        self.rejections += 1
        raise RiskRejection(message)
