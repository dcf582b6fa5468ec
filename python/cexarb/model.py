"""Domain values shared by venues, strategies, the simulator and the journal.

All are ``msgspec.Struct(frozen=True, kw_only=True)`` unless they are mutable records (Order,
Position) that the owning component updates in place. Units: prices in quote currency per base
unit (per contract for inverse perps), quantities in base units for spot and linear perps
(``qty``) and whole contracts where a venue counts contracts (``contracts``), fees and rates as
fractions (0.001 = 10 bps), timestamps in nanoseconds since the Unix epoch (``*_ns``).
"""

from __future__ import annotations

import enum
import math

import msgspec

from cexarb import _core

__all__ = [
    "Balance",
    "BookTicker",
    "Fill",
    "FundingEvent",
    "FundingInfo",
    "Instrument",
    "InstrumentKind",
    "Order",
    "OrderStatus",
    "OrderType",
    "Position",
    "Side",
    "TimeInForce",
    "Trade",
    "split_fee",
]


class InstrumentKind(enum.StrEnum):
    """What an instrument is: spot pair, linear (USDT-margined) perpetual, inverse (coin-margined) perpetual."""

    SPOT = "spot"
    PERP = "perp"
    INVERSE_PERP = "inverse_perp"


class Side(enum.StrEnum):
    BUY = "buy"
    SELL = "sell"

    sign: int
    """+1 for buy, -1 for sell (a plain member attribute: read on every order and fill)."""

    def __init__(self, value: str) -> None:
        self.sign = 1 if value == "buy" else -1

    @property
    def opposite(self) -> Side:
        return _OPPOSITE[self]


# a dict lookup: cheaper than comparing members through the enum class
_OPPOSITE: dict[Side, Side] = {Side.BUY: Side.SELL, Side.SELL: Side.BUY}


class OrderType(enum.StrEnum):
    MARKET = "market"
    LIMIT = "limit"


class TimeInForce(enum.StrEnum):
    """GTC rests; IOC fills what it can now and cancels the rest; POST_ONLY is rejected if it would take."""

    GTC = "gtc"
    IOC = "ioc"
    POST_ONLY = "post_only"


class OrderStatus(enum.StrEnum):
    PENDING_NEW = "pending_new"  # sent, no ack yet
    NEW = "new"  # acknowledged, resting
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"

    is_terminal: bool
    """FILLED, CANCELED or REJECTED (a plain member attribute: read on every order update)."""

    def __init__(self, value: str) -> None:
        self.is_terminal = value in ("filled", "canceled", "rejected")


class Instrument(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A tradable instrument on one venue.

    Attributes:
        venue: venue name, e.g. ``"binance-spot"``, ``"gateio-futures"``.
        symbol: venue symbol, e.g. ``"BTCUSDT"``, ``"BTC_USDT"``.
        kind: spot / linear perp / inverse perp.
        base, quote: asset names.
        tick_size: price increment, quote currency.
        lot_size: quantity increment, base units (spot, linear perp) or contracts (inverse perp).
        min_notional: smallest order value accepted, quote currency (0 = none).
        contract_size: base units per contract for linear perps counted in contracts (Gate.io
            ``quanto_multiplier``), quote currency per contract for inverse perps (Binance COIN-M:
            100 USD); 1.0 where quantities are already base units.
        maker_fee, taker_fee: fractions of notional; negative = rebate.
        funding_interval_hours: perpetual funding interval (0 for spot).
    """

    venue: str
    symbol: str
    kind: InstrumentKind
    base: str
    quote: str
    tick_size: float
    lot_size: float
    min_notional: float = 0.0
    contract_size: float = 1.0
    maker_fee: float = 0.0
    taker_fee: float = 0.0
    funding_interval_hours: float = 0.0

    def __post_init__(self) -> None:
        for field in ("tick_size", "lot_size", "contract_size"):
            value = getattr(self, field)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"Instrument {self.symbol}: {field} must be finite and > 0, got {value!r}")
        for field in ("min_notional", "maker_fee", "taker_fee", "funding_interval_hours"):
            value = getattr(self, field)
            if not math.isfinite(value):
                raise ValueError(f"Instrument {self.symbol}: {field} must be finite, got {value!r}")
        if self.min_notional < 0:
            raise ValueError(f"Instrument {self.symbol}: min_notional must be >= 0, got {self.min_notional!r}")

    @property
    def key(self) -> str:
        """``venue:symbol``, unique across venues."""
        return f"{self.venue}:{self.symbol}"

    @property
    def is_derivative(self) -> bool:
        return self.kind is not InstrumentKind.SPOT

    def price_to_ticks(self, price: float) -> int:
        """Nearest whole number of ticks; raises ValueError when ``price`` is not finite."""
        if not math.isfinite(price):
            raise ValueError(f"{self.symbol}: price must be finite, got {price!r}")
        return round(price / self.tick_size)

    def qty_to_lots(self, qty: float) -> int:
        """Whole lots in ``qty``, rounded toward zero (never more than asked for)."""
        if not math.isfinite(qty):
            raise ValueError(f"{self.symbol}: qty must be finite, got {qty!r}")
        lots = qty / self.lot_size
        return int(math.copysign(math.floor(abs(lots) + 1e-9), lots))

    def format_price(self, ticks: int) -> str:
        """Exact decimal string for a price given in ticks (no float formatting)."""
        return _core.ticks_to_decimal_str(ticks, self.tick_size)

    def format_qty(self, lots: int) -> str:
        """Exact decimal string for a quantity given in lots."""
        return _core.ticks_to_decimal_str(lots, self.lot_size)

    def lots_to_qty(self, lots: int) -> float:
        """The float nearest the exact decimal quantity of ``lots`` (not ``lots * lot_size``)."""
        return float(_core.ticks_to_decimal_str(lots, self.lot_size))

    def ticks_to_price(self, ticks: int) -> float:
        """The float nearest the exact decimal price of ``ticks`` (not ``ticks * tick_size``)."""
        return float(_core.ticks_to_decimal_str(ticks, self.tick_size))

    def base_qty(self, qty: float, price: float) -> float:
        """Base-unit exposure of ``qty`` (contracts for inverse perps) at ``price``."""
        if self.kind is InstrumentKind.INVERSE_PERP:
            return qty * self.contract_size / price
        return qty * self.contract_size if self.contract_size != 1.0 else qty

    def funding_payment(self, qty: float, rate: float, mark_price: float) -> float:
        """Funding a signed position of ``qty`` (contracts) receives at one settlement, quote
        currency (negative: paid): ``-qty * contract_size * mark_price * rate`` for linear perps
        (Gate.io USDT futures: position value at the mark price x funding rate, longs pay when the
        rate is positive), ``-qty * contract_size * rate`` for inverse perps (simplified: paid in
        quote). ``rate`` is per funding interval, a fraction; ``mark_price`` quote per base unit."""
        if self.kind is InstrumentKind.INVERSE_PERP:
            return -qty * self.contract_size * rate
        return -qty * self.contract_size * mark_price * rate

    def unrealized_pnl(self, qty: float, avg_price: float, mark_price: float) -> float:
        """Mark-to-market PnL in quote currency of a signed position opened at ``avg_price``.

        Linear: ``qty * contract_size * (mark - avg)``. Inverse (Binance COIN-M "PnL" formula):
        ``contracts * contract_size * (1/avg - 1/mark)`` in base, valued at ``mark``.
        """
        if qty == 0.0:
            return 0.0
        if self.kind is InstrumentKind.INVERSE_PERP:
            return qty * self.contract_size * (1.0 / avg_price - 1.0 / mark_price) * mark_price
        return qty * self.contract_size * (mark_price - avg_price)

    def notional(self, qty: float, price: float) -> float:
        """Quote-currency value of ``qty`` at ``price`` (absolute)."""
        if self.kind is InstrumentKind.INVERSE_PERP:
            return abs(qty) * self.contract_size
        return abs(qty) * self.contract_size * price


class Order(msgspec.Struct, kw_only=True, gc=False):
    """An order and its live state. The venue (real or simulated) updates status/filled fields.

    ``price`` is None for market orders. ``filled_qty`` and ``avg_fill_price`` are cumulative.
    """

    client_order_id: str
    instrument: Instrument
    side: Side
    type: OrderType
    qty: float
    price: float | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False
    venue_order_id: str | None = None
    status: OrderStatus = OrderStatus.PENDING_NEW
    filled_qty: float = 0.0
    avg_fill_price: float = 0.0
    fees: float = 0.0
    created_ns: int = 0
    updated_ns: int = 0
    reject_reason: str | None = None
    tag: str = ""

    @property
    def remaining_qty(self) -> float:
        return max(self.qty - self.filled_qty, 0.0)

    @property
    def is_open(self) -> bool:
        return not self.status.is_terminal


class Fill(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One execution against an order. ``fee`` is in quote currency (negative = rebate).

    ``qty`` is the executed quantity (base units or contracts) as the venue reports it.
    ``fee_base`` is the part of the fee the venue took in the base currency, base units: a spot
    buy on Gate.io or MEXC pays its fee out of the base received (Gate ``fee_currency``, MEXC
    ``commissionAsset`` equal to the base; PROTOCOLS.md §1, §2), so the account holds
    ``qty - fee_base`` more base, not ``qty``. ``fee`` already includes its value in quote
    (``fee_base * price``); positions apply both (:meth:`Position.apply_fill`).
    ``fee_asset`` / ``fee_other``: a fee paid in a third asset (Gate GT, MEXC MX, Binance BNB),
    its amount in that asset. It is not in ``fee`` (no price for that asset here), so quote PnL
    leaves it out; it is kept here rather than lost (:func:`split_fee`).
    """

    client_order_id: str
    venue_order_id: str
    instrument_key: str
    side: Side
    price: float
    qty: float
    fee: float
    is_maker: bool
    ts_ns: int
    fill_id: str = ""
    fee_base: float = 0.0
    fee_asset: str = ""
    fee_other: float = 0.0

    @property
    def notional(self) -> float:
        return self.price * self.qty


def split_fee(amount: float, asset: str, price: float, instrument: Instrument) -> tuple[float, float, str, float]:
    """A venue's fee report (``amount`` of ``asset`` on a fill at ``price``) as the
    :class:`Fill` fields ``(fee, fee_base, fee_asset, fee_other)``.

    In the quote asset (or no asset given): ``fee`` = ``amount``. In the base asset (a spot buy
    on Gate.io / MEXC, PROTOCOLS.md §1, §2): ``fee`` = ``amount * price`` (quote) and, when it is
    a charge, ``fee_base`` = ``amount`` (base units). In a third asset (GT, MX, BNB): ``fee`` 0.0
    and the amount kept as ``fee_asset`` / ``fee_other``. A negative amount is a rebate.
    """
    if asset == instrument.base:
        return amount * price, (amount if amount > 0 else 0.0), "", 0.0
    if asset and asset != instrument.quote:
        return 0.0, 0.0, asset, amount
    return amount, 0.0, "", 0.0


class Position(msgspec.Struct, kw_only=True):
    """Net position in one instrument: signed ``qty`` (long > 0) and average entry price.

    ``realized_pnl`` is gross of fees, quote currency; ``fees`` accumulates fees paid.
    ``funding`` accumulates funding received (negative = paid).
    """

    instrument_key: str
    qty: float = 0.0
    avg_price: float = 0.0
    realized_pnl: float = 0.0
    fees: float = 0.0
    funding: float = 0.0

    def apply_fill(
        self,
        side: Side,
        qty: float,
        price: float,
        fee: float,
        instrument: Instrument | None = None,
        fee_base: float = 0.0,
    ) -> float:
        """Update with a fill; returns the PnL it realised (gross of fees), quote currency.

        Args:
            side, qty, price: the fill (qty in the instrument's units: base or contracts).
            fee: fee paid, quote currency (added to ``fees``).
            instrument: gives contract size and kind. Linear: PnL = qty × contract_size ×
                (exit − entry); the entry is the qty-weighted mean price. Inverse (coin-margined):
                PnL = contracts × contract_size × (1/entry − 1/exit) in base, valued at the exit
                price; the entry is the contract-weighted harmonic mean (Binance COIN-M "PnL"
                and "average entry price" definitions). None = linear, contract size 1.
            fee_base: base units the venue took as its fee (:class:`Fill`): the holding changes by
                ``side.sign * qty - fee_base``, so the fill counts as that net quantity at
                ``price`` (a buy of ``qty - fee_base``, a sell of ``qty + fee_base``); the fee's
                value is in ``fee``, the quote paid or received stays ``qty * price``, so PnL
                counts the fee once.

        Raises:
            ValueError: ``fee_base`` negative, not finite, or more than a buy's ``qty``.
        """
        signed = qty * side.sign
        if fee_base:
            if not (math.isfinite(fee_base) and fee_base > 0) or (side is Side.BUY and fee_base > qty):
                raise ValueError(f"fee_base must be a finite amount >= 0 (<= qty {qty!r} on a buy), got {fee_base!r}")
            signed -= fee_base
            if abs(signed) < 1e-12:  # the whole buy went in fees
                self.fees += fee
                return 0.0
            qty = abs(signed)
        inverse = instrument is not None and instrument.kind is InstrumentKind.INVERSE_PERP
        size = instrument.contract_size if instrument is not None else 1.0
        realized = 0.0
        if self.qty == 0.0 or (self.qty > 0) == (signed > 0):
            new_qty = self.qty + signed
            held = abs(self.qty)
            if inverse:
                self.avg_price = abs(new_qty) / (held / self.avg_price + qty / price) if held else price
            else:
                self.avg_price = (self.avg_price * held + price * qty) / abs(new_qty)
            self.qty = new_qty
        else:
            closing = min(abs(signed), abs(self.qty))
            direction = 1.0 if self.qty > 0 else -1.0
            if inverse:
                realized = closing * size * (1.0 / self.avg_price - 1.0 / price) * direction * price
            else:
                realized = closing * size * (price - self.avg_price) * direction
            new_qty = self.qty + signed
            if abs(new_qty) < 1e-12:
                new_qty = 0.0
            if new_qty != 0.0 and (new_qty > 0) != (self.qty > 0):
                self.avg_price = price  # flipped: remainder opened at this price
            elif new_qty == 0.0:
                self.avg_price = 0.0
            self.qty = new_qty
        self.realized_pnl += realized
        self.fees += fee
        return realized

    def unrealized_pnl(self, mark_price: float) -> float:
        """Mark-to-market PnL of the open quantity, quote currency."""
        return self.qty * (mark_price - self.avg_price)


class Balance(msgspec.Struct, kw_only=True):
    """Free and locked amount of one asset on one venue."""

    asset: str
    free: float = 0.0
    locked: float = 0.0

    @property
    def total(self) -> float:
        return self.free + self.locked


class BookTicker(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Best bid/offer update (Binance ``bookTicker``, Gate ``book_ticker``)."""

    instrument_key: str
    bid_price: float
    bid_qty: float
    ask_price: float
    ask_qty: float
    ts_ns: int
    update_id: int = 0


class Trade(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A public trade; ``taker_side`` is the aggressor's side."""

    instrument_key: str
    price: float
    qty: float
    taker_side: Side
    ts_ns: int
    trade_id: int = 0


class FundingEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A funding settlement on a perpetual: ``rate`` per interval as a fraction.

    ``assumed`` is True when the rate was not recorded but given as a replay parameter.
    """

    instrument_key: str
    rate: float
    mark_price: float
    ts_ns: int
    assumed: bool = False


class FundingInfo(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The current funding terms of a perpetual, as a venue states them now (not a settlement:
    that is :class:`FundingEvent`). Returned by ``PublicVenue.funding``.

    Attributes:
        instrument_key: ``venue:symbol`` of the perpetual.
        rate: funding rate per funding interval, a fraction (0.0001 = 1 bp per interval; positive:
            longs pay shorts) -- the rate that will be settled at ``next_funding_ns`` as last
            stated by the venue (Gate: contract / ``futures.tickers`` ``funding_rate``,
            PROTOCOLS.md §3.2, §3.4).
        next_funding_ns: the next funding settlement time, ns since the epoch (Gate contract
            ``funding_next_apply``, seconds on the wire); 0 when the venue does not state it.
        interval_ns: length of one funding interval, ns (Gate ``funding_interval``, seconds on
            the wire); 0 when unknown.
        updated_ns: local wall-clock time (ns since the epoch) the rate was last read from the
            venue (REST or a push); simulated time in a replay.
        assumed: True when the rate is a replay parameter, not something a venue stated.
        mark_price: the contract's mark price, quote currency, as last stated by the venue (Gate:
            contract / ``futures.tickers`` ``mark_price``); 0.0 when none was stated. Funding
            settles at it.
        mark_updated_ns: local wall-clock time (ns since the epoch) ``mark_price`` was read; 0
            when none was.

    Raises:
        ValueError: a non-finite rate, a negative or non-finite mark price, or a negative time /
            interval, naming the field and value.
    """

    instrument_key: str
    rate: float
    next_funding_ns: int
    interval_ns: int
    updated_ns: int
    assumed: bool = False
    mark_price: float = 0.0
    mark_updated_ns: int = 0

    def __post_init__(self) -> None:
        if not math.isfinite(self.rate):
            raise ValueError(f"FundingInfo {self.instrument_key}: rate must be finite, got {self.rate!r}")
        if not (0.0 <= self.mark_price < math.inf):
            raise ValueError(f"FundingInfo {self.instrument_key}: mark_price must be finite and >= 0, "
                             f"got {self.mark_price!r}")
        for field in ("next_funding_ns", "interval_ns", "updated_ns", "mark_updated_ns"):
            value = getattr(self, field)
            if value < 0:
                raise ValueError(f"FundingInfo {self.instrument_key}: {field} must be >= 0, got {value!r}")
