"""Pre-trade risk checks (DESIGN.md "Risk"). Limits come from config, never from strategy code.

Every order a strategy submits passes :meth:`RiskPolicy.check` before it reaches a venue; a
breach rejects the order locally with a reason naming the limit and the value.
"""

from __future__ import annotations

import math
from typing import NoReturn

import msgspec

from cexarb._core import OrderBook
from cexarb.model import Position
from cexarb.venues.base import OrderRequest

__all__ = ["RiskLimits", "RiskPolicy", "RiskRejection"]


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


class RiskRejection(Exception):
    """An order breached a limit; the message names the limit, the value and the limit's value."""


class RiskPolicy:
    """Applies :class:`RiskLimits` to order requests."""

    def __init__(self, limits: RiskLimits | None = None) -> None:
        self.limits = limits or RiskLimits()
        self.rejections = 0

    def check(self, request: OrderRequest, book: OrderBook, position: Position | None, open_orders: int) -> None:
        """Raise :class:`RiskRejection` if ``request`` breaches a limit.

        Args:
            request: the order.
            book: the instrument's current L2 book (for mid and staleness).
            position: the strategy's current position in the instrument, or None.
            open_orders: the strategy's open orders now.
        """
        lim = self.limits
        inst = request.instrument
        if not book.is_valid:
            self._reject(f"book of {inst.key} is not valid ({book.invalid_reason})")
        mid = book.mid()
        if mid is None:
            self._reject(f"book of {inst.key} has no mid")
        price = request.price
        if lim.max_order_notional:
            notional = inst.notional(request.qty, mid if price is None else price)
            if notional > lim.max_order_notional:
                self._reject(f"order notional {notional:.2f} > max_order_notional {lim.max_order_notional:.2f}")
        if lim.max_position_notional:
            current = position.qty if position is not None else 0.0
            after = current + request.qty * request.side.sign
            if abs(after) > abs(current):
                after_notional = inst.notional(after, mid)
                if after_notional > lim.max_position_notional:
                    self._reject(
                        f"position notional after order {after_notional:.2f} > max_position_notional "
                        f"{lim.max_position_notional:.2f}"
                    )
        if lim.price_band_bps and price is not None:
            through_bps = (price - mid) / mid * 1e4 * request.side.sign
            if through_bps > lim.price_band_bps:
                self._reject(f"limit price {price} is {through_bps:.1f} bps through mid > price_band_bps "
                             f"{lim.price_band_bps}")
        if lim.max_open_orders and open_orders >= lim.max_open_orders:
            self._reject(f"open orders {open_orders} >= max_open_orders {lim.max_open_orders}")

    def _reject(self, message: str) -> NoReturn:
        self.rejections += 1
        raise RiskRejection(message)
