"""Gate.io APIv4 wire codecs, spot and USDT futures: REST payloads and WebSocket frames.

Everything a connector or the loopback simulator reads or writes on the Gate wire, with no I/O.
Gate speaks JSON everywhere; each payload kind has a msgspec view Struct holding only the fields
we read and one decoder, built once at import.

REST (``shared/venues/PROTOCOLS.md`` §2.2, §3.2; [GT-SDK] models): currency pairs / contracts ->
:class:`~cexarb.model.Instrument` (spot tick 10^-``precision``, lot 10^-``amount_precision``,
min notional ``min_quote_amount``, ``fee`` **percent** -> fraction here at the edge; futures tick
``order_price_round``, lot 1 contract, ``quanto_multiplier`` as ``contract_size``, fee rates
already fractions), ``with_id`` order books, orders, accounts, positions, funding, fills, fees,
errors ``{"label", "message"|"detail"}``; request bodies the simulator receives.

WebSocket (§2.4, §3.4): frames are dispatched on (``channel``, ``event``) -- Gate's kind is two
fields, which a msgspec tagged union cannot express -- by decoding a thin envelope whose
``result`` stays a :class:`msgspec.Raw` span and then the result with the channel's own decoder.
:func:`decode_ws_frame` returns one of the Structs of :data:`GateWsMessage` (match on the class):
acks, errors, pongs, ``*.order_book_update`` / ``*.obu`` (incl. ``full: true`` resets) as
:class:`GateOrderBookUpdate` with float levels ready for the Rust book, book tickers, trades,
private orders / user trades / balances / positions, WS trading-API responses, and
:class:`GateOtherUpdate` for channels we do not model (tickers, candlesticks, ...). The hot
frame, a ``spot``/``futures.order_book_update`` push as Gate formats it, is recognised by its
``"channel":..,"event":"update"`` text near the start and decoded in one pass (a typed Struct of
the whole frame, no envelope + ``Raw`` + second decode); anything that does not fit that path
takes the general one, which raises the errors. (Connectors parse that frame in Rust first,
``_core.parse_gate_depth``, and call this only for frames it does not take.) The spot limit
order body is built in Rust (``_core.gate_spot_limit_body``: the same bytes as
:class:`GateSpotOrderBody` encodes) when its symbol, decimals and client order id need no
escaping or check.

JSON types vary (ids int or string, sizes int or decimal string with ``X-Gate-Size-Decimal``,
times int, float or string), so numeric fields decode with ``strict=False`` and ids as
``int | str``. Every decoder raises :class:`GateCodecError` (a ValueError) naming the payload kind
and the JSON path; payload text is never echoed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final, TypeVar

import msgspec

from cexarb._core import gate_spot_limit_body as _spot_limit_body
from cexarb.model import (
    Balance,
    BookTicker,
    Fill,
    FundingEvent,
    Instrument,
    InstrumentKind,
    OrderStatus,
    OrderType,
    Position,
    Side,
    TimeInForce,
    Trade,
    split_fee,
)
from cexarb.venues.base import OrderRequest, OrderUpdate
from cexarb.venues.gateio.signing import GateSigner

__all__ = [
    "FUTURES_VENUE",
    "SPOT_VENUE",
    "GateAccountDetail",
    "GateApiResponse",
    "GateBalanceChange",
    "GateBalancesUpdate",
    "GateBookSnapshot",
    "GateBookTickerUpdate",
    "GateCodecError",
    "GateContract",
    "GateCurrencyPair",
    "GateError",
    "GateFee",
    "GateFundingRate",
    "GateFuturesAccount",
    "GateFuturesBalanceChange",
    "GateFuturesOrder",
    "GateFuturesOrderBody",
    "GateFuturesTrade",
    "GateOrderBookUpdate",
    "GateOrdersUpdate",
    "GateOtherUpdate",
    "GatePong",
    "GatePosition",
    "GatePositionsUpdate",
    "GateSpotAccount",
    "GateSpotOpenOrders",
    "GateSpotOrder",
    "GateSpotOrderBody",
    "GateSpotTrade",
    "GateTicker",
    "GateTradesUpdate",
    "GateUserTradesUpdate",
    "GateWsAck",
    "GateWsAuth",
    "GateWsError",
    "GateWsMessage",
    "GateWsRequest",
    "client_order_id_from_text",
    "decode_ws_frame",
    "decode_ws_request",
    "encode_ws_ack",
    "encode_ws_error",
    "encode_ws_ping",
    "encode_ws_request",
    "encode_ws_update",
    "futures_order_body",
    "spot_order_body",
    "text_for_client_order_id",
]

SPOT_VENUE: Final = "gateio-spot"
FUTURES_VENUE: Final = "gateio-futures"

T = TypeVar("T")


class GateCodecError(ValueError):
    """A Gate payload that does not decode; the message names the payload kind and the path."""


def _decode(decoder: msgspec.json.Decoder[T], data: bytes | str, what: str) -> T:
    try:
        return decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # bad UTF-8 in a string
        raise GateCodecError(f"Gate {what}: {exc} ({len(data)} bytes)") from None


def _id(value: int | str | None) -> str:
    return "" if value is None else str(value)


def _ns(ms: float) -> int:
    """Epoch ms (int, or float with sub-ms digits) -> ns, exact for whole ms, to the µs otherwise."""
    whole = int(ms)
    return whole * 1_000_000 + round((ms - whole) * 1_000) * 1_000


def _ns_from_s(seconds: float) -> int:
    """Epoch seconds (Gate's float seconds, e.g. 1705950365.663) -> ns, to the µs."""
    whole = int(seconds)
    return whole * 1_000_000_000 + round((seconds - whole) * 1_000_000) * 1_000


# =============================================================================================
# Client order ids <-> Gate ``text``

_TEXT_BODY = re.compile(r"[0-9A-Za-z_.\-]{1,28}")
#: the characters of _TEXT_BODY (a set test is cheaper than the regex engine on the order path)
_TEXT_CHARS: Final = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_.-")


def text_for_client_order_id(client_order_id: str) -> str:
    """Gate's ``text`` for our client order id: ``"t-" + id`` [GT-DOC spot orders].

    Raises:
        ValueError: the id is empty, longer than 28 bytes or has characters outside
            ``[0-9A-Za-z_.-]``, naming it.
    """
    if not (0 < len(client_order_id) <= 28 and _TEXT_CHARS.issuperset(client_order_id)):
        raise ValueError(f"Gate client_order_id {client_order_id!r} must be 1-28 characters of [0-9A-Za-z_.-]")
    return "t-" + client_order_id


def client_order_id_from_text(text: str) -> str:
    """Our client order id from Gate's ``text`` (``t-abc`` -> ``abc``; ``api``/``web`` kept)."""
    return text.removeprefix("t-")


# =============================================================================================
# REST: errors, time, instruments


class GateError(msgspec.Struct, frozen=True, kw_only=True):
    """Error body of a non-2xx reply: ``label`` (e.g. ``BALANCE_NOT_ENOUGH``), ``message`` or
    ``detail`` (PROTOCOLS.md §2.6, §3.6)."""

    label: str
    message: str = ""
    detail: str = ""

    @property
    def text(self) -> str:
        return self.message or self.detail


class GateServerTime(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /spot/time``: ``server_time`` ms (int or string)."""

    server_time: int


class GateCurrencyPair(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /spot/currency_pairs[/{pair}]`` item (fields we read).

    ``fee`` is a **percent** ("0.2" = 0.2 %); ``precision`` / ``amount_precision`` are decimal
    places of price / base amount; ``min_quote_amount`` the min notional (quote).
    """

    id: str
    base: str
    quote: str
    fee: float = 0.0
    min_base_amount: float = 0.0
    min_quote_amount: float = 0.0
    amount_precision: int
    precision: int
    trade_status: str = "tradable"

    @property
    def is_tradable(self) -> bool:
        return self.trade_status == "tradable"

    def to_instrument(self) -> Instrument:
        """As an :class:`Instrument`: tick 10^-precision, lot 10^-amount_precision, min notional
        ``min_quote_amount``, maker = taker = ``fee / 100`` (the pair list has one percent fee;
        ``GET /spot/fee`` gives the account's actual fractions).

        Raises:
            GateCodecError: negative precision or a value the Instrument rejects, naming it.
        """
        for name in ("precision", "amount_precision"):
            if getattr(self, name) < 0:
                raise GateCodecError(f"Gate pair {self.id}: {name} must be >= 0, got {getattr(self, name)}")
        try:
            return Instrument(
                venue=SPOT_VENUE,
                symbol=self.id,
                kind=InstrumentKind.SPOT,
                base=self.base,
                quote=self.quote,
                tick_size=10.0**-self.precision,
                lot_size=10.0**-self.amount_precision,
                min_notional=self.min_quote_amount,
                maker_fee=self.fee / 100.0,
                taker_fee=self.fee / 100.0,
            )
        except ValueError as exc:
            raise GateCodecError(f"Gate pair {self.id}: {exc}") from None


class GateContract(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /futures/{settle}/contracts[/{contract}]`` item (fields we read).

    ``quanto_multiplier``: base units per contract ("0" on inverse contracts); sizes are whole
    contracts; ``maker_fee_rate`` / ``taker_fee_rate`` fractions (negative = rebate);
    ``funding_rate`` per ``funding_interval`` seconds; ``funding_next_apply`` epoch seconds.
    """

    name: str
    type: str = "direct"
    quanto_multiplier: float = 0.0
    order_price_round: float
    order_size_min: float = 1.0
    order_size_max: float = 0.0
    maker_fee_rate: float = 0.0
    taker_fee_rate: float = 0.0
    mark_price: float = 0.0
    index_price: float = 0.0
    last_price: float = 0.0
    funding_rate: float = 0.0
    funding_rate_indicative: float = 0.0
    funding_interval: int = 0
    funding_next_apply: float = 0.0
    in_delisting: bool = False
    status: str = "trading"

    @property
    def base(self) -> str:
        return self.name.split("_", 1)[0]

    @property
    def quote(self) -> str:
        return self.name.split("_", 1)[1] if "_" in self.name else ""

    def to_instrument(self) -> Instrument:
        """As an :class:`Instrument`: tick ``order_price_round``, lot 1 contract,
        ``contract_size`` = ``quanto_multiplier`` (linear, ``type`` direct). Inverse contracts
        (``type`` inverse, multiplier "0") get contract_size 1.0: one contract is 1 USD on
        Gate's BTC-settled BTC_USD.

        Raises:
            GateCodecError: a non-positive tick or multiplier on a linear contract, naming it.
        """
        inverse = self.type == "inverse"
        contract_size = 1.0 if inverse and self.quanto_multiplier == 0 else self.quanto_multiplier
        try:
            return Instrument(
                venue=FUTURES_VENUE,
                symbol=self.name,
                kind=InstrumentKind.INVERSE_PERP if inverse else InstrumentKind.PERP,
                base=self.base,
                quote=self.quote,
                tick_size=self.order_price_round,
                lot_size=1.0,
                min_notional=0.0,
                contract_size=contract_size,
                maker_fee=self.maker_fee_rate,
                taker_fee=self.taker_fee_rate,
                funding_interval_hours=self.funding_interval / 3600.0,
            )
        except ValueError as exc:
            raise GateCodecError(f"Gate contract {self.name}: {exc}") from None

    def to_funding(self, ts_ns: int) -> FundingEvent:
        """The current (next) funding rate as a :class:`FundingEvent` observed at ``ts_ns``."""
        return FundingEvent(
            instrument_key=f"{FUTURES_VENUE}:{self.name}",
            rate=self.funding_rate,
            mark_price=self.mark_price,
            ts_ns=ts_ns,
        )

    @property
    def funding_next_apply_ns(self) -> int:
        return int(self.funding_next_apply * 1_000_000_000)


class GateFundingRate(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /futures/usdt/funding_rate`` row: ``t`` epoch seconds, ``r`` rate (fraction)."""

    t: int
    r: float


class GateBookSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A REST ``with_id`` order book, spot or futures, ready for ``OrderBook.apply_snapshot``.

    ``id`` is the book's update id (stitch WS updates with ``U <= id + 1 <= u``); levels are
    ``(price, amount)`` floats, base units (spot) or contracts (futures); ``update_ms`` the
    book's update time.
    """

    id: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]
    update_ms: float = 0.0


class _SpotBook(msgspec.Struct, frozen=True, kw_only=True):
    id: int | None = None
    current: float = 0.0
    update: float = 0.0
    asks: list[tuple[float, float]] = []
    bids: list[tuple[float, float]] = []


class _FuturesLevel(msgspec.Struct, frozen=True, kw_only=True):
    p: float
    s: float


class _FuturesBook(msgspec.Struct, frozen=True, kw_only=True):
    id: int | None = None
    current: float = 0.0
    update: float = 0.0  # seconds (float) on futures
    asks: list[_FuturesLevel] = []
    bids: list[_FuturesLevel] = []


# =============================================================================================
# REST: orders, fills, accounts, positions


_SPOT_TIF = {TimeInForce.GTC: "gtc", TimeInForce.IOC: "ioc", TimeInForce.POST_ONLY: "poc"}
# members read on the order path as module globals (an attribute of an Enum class costs a lookup
# through the enum's metaclass)
_BUY: Final = Side.BUY
_LIMIT: Final = OrderType.LIMIT


def _order_status(status: str, finish_as: str, filled: float, what: str) -> tuple[OrderStatus, str | None]:
    """Gate ``status`` + ``finish_as`` as ours, with a reason for non-fill endings."""
    if status == "open" or finish_as == "open":
        return (OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.NEW), None
    if finish_as == "filled" or (status == "closed" and not finish_as):
        return OrderStatus.FILLED, None
    if status in ("closed", "cancelled", "finished"):
        if finish_as in ("poc", "fok") and filled <= 0:
            return OrderStatus.REJECTED, finish_as
        return OrderStatus.CANCELED, finish_as or status
    raise GateCodecError(f"Gate {what}: unknown status {status!r} / finish_as {finish_as!r}")


class GateSpotOrder(msgspec.Struct, frozen=True, kw_only=True):
    """A spot order (REST replies and ``spot.orders`` pushes; fields we read).

    ``amount`` is base units, except a market **buy**'s, which is quote; ``left`` in the same
    unit; ``filled_amount`` base (absent in older replies); ``filled_total`` quote; times ms.
    On ``spot.orders`` pushes ``event`` is put / update / finish.
    """

    id: int | str = ""
    text: str = ""
    currency_pair: str = ""
    status: str = ""
    type: str = "limit"
    side: str = ""
    amount: float = 0.0
    price: float = 0.0
    time_in_force: str = ""
    left: float = 0.0
    filled_amount: float | None = None
    filled_total: float = 0.0
    avg_deal_price: float = 0.0
    fee: float = 0.0
    fee_currency: str = ""
    finish_as: str = ""
    create_time_ms: float = 0.0
    update_time_ms: float = 0.0
    event: str = ""
    succeeded: bool | None = None
    label: str = ""
    message: str = ""

    @property
    def filled_qty(self) -> float:
        """Filled base units: ``filled_amount``, else derived from ``filled_total`` / ``amount - left``."""
        if self.filled_amount is not None:
            return self.filled_amount
        if self.type == "market" and self.side == "buy":
            return self.filled_total / self.avg_deal_price if self.avg_deal_price > 0 else 0.0
        return max(self.amount - self.left, 0.0)

    def to_update(self, instrument_key: str | None = None) -> OrderUpdate:
        filled = self.filled_qty
        status, reason = _order_status(self.status, self.finish_as, filled, f"spot order {self.id}")
        avg = self.avg_deal_price or (self.filled_total / filled if filled > 0 else 0.0)
        return OrderUpdate(
            client_order_id=client_order_id_from_text(self.text),
            venue_order_id=_id(self.id),
            instrument_key=instrument_key or f"{SPOT_VENUE}:{self.currency_pair}",
            status=status,
            filled_qty=filled,
            avg_fill_price=avg,
            ts_ns=_ns(self.update_time_ms or self.create_time_ms),
            reason=reason,
        )


class GateSpotOpenOrders(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /spot/open_orders`` item: the open orders of one pair."""

    currency_pair: str
    total: int = 0
    orders: list[GateSpotOrder] = []


class GateFuturesOrder(msgspec.Struct, frozen=True, kw_only=True):
    """A futures order (REST and ``futures.orders``; fields we read).

    ``size`` signed contracts (positive buy, negative sell), ``left`` unfilled contracts (same
    sign), ``fill_price`` average fill price; ``status`` open / finished; times seconds
    (``*_ms`` in pushes).
    """

    id: int | str = ""
    contract: str = ""
    size: float = 0.0
    left: float = 0.0
    price: float = 0.0
    fill_price: float = 0.0
    tif: str = ""
    text: str = ""
    status: str = ""
    finish_as: str = ""
    is_reduce_only: bool = False
    create_time: float = 0.0
    finish_time: float = 0.0
    update_time: float = 0.0
    create_time_ms: float = 0.0
    finish_time_ms: float = 0.0
    succeeded: bool | None = None
    label: str = ""
    message: str = ""

    @property
    def side(self) -> Side:
        return Side.BUY if self.size > 0 else Side.SELL

    @property
    def filled_contracts(self) -> float:
        return max(abs(self.size) - abs(self.left), 0.0)

    def to_update(self, instrument_key: str | None = None) -> OrderUpdate:
        filled = self.filled_contracts
        status, reason = _order_status(self.status, self.finish_as, filled, f"futures order {self.id}")
        ms = self.finish_time_ms or self.create_time_ms
        ts_ns = _ns(ms) if ms else _ns_from_s(self.finish_time or self.update_time or self.create_time)
        return OrderUpdate(
            client_order_id=client_order_id_from_text(self.text),
            venue_order_id=_id(self.id),
            instrument_key=instrument_key or f"{FUTURES_VENUE}:{self.contract}",
            status=status,
            filled_qty=filled,
            avg_fill_price=self.fill_price if filled > 0 else 0.0,
            ts_ns=ts_ns,
            reason=reason,
        )


class GateSpotTrade(msgspec.Struct, frozen=True, kw_only=True):
    """A spot trade: ``/spot/my_trades`` and ``spot.usertrades`` (ours, with ``order_id``, ``fee``,
    ``role``), or ``/spot/trades`` and ``spot.trades`` (public). ``amount`` base, ``side`` the
    taker's side on public trades and ours on fills; ``create_time_ms`` ms (float)."""

    id: int | str
    create_time_ms: float = 0.0
    create_time: float = 0.0
    currency_pair: str = ""
    side: str
    role: str = ""
    amount: float
    price: float
    order_id: int | str = ""
    fee: float = 0.0
    fee_currency: str = ""
    text: str = ""

    @property
    def ts_ns(self) -> int:
        return _ns(self.create_time_ms) if self.create_time_ms else _ns_from_s(self.create_time)

    def to_trade(self, instrument_key: str | None = None) -> Trade:
        trade_id = _id(self.id)
        return Trade(
            instrument_key=instrument_key or f"{SPOT_VENUE}:{self.currency_pair}",
            price=self.price,
            qty=self.amount,
            taker_side=Side.BUY if self.side == "buy" else Side.SELL,
            ts_ns=self.ts_ns,
            trade_id=int(trade_id) if trade_id.isdigit() else 0,
        )

    def to_fill(self, instrument: Instrument) -> Fill:
        """Our fill; the fee split by :func:`~cexarb.model.split_fee`: in quote, a base-currency
        fee (a spot buy's, PROTOCOLS.md §2.2) also as ``fee_base``, a GT fee kept as
        ``fee_asset`` / ``fee_other``."""
        fee, fee_base, fee_asset, fee_other = split_fee(self.fee, self.fee_currency, self.price, instrument)
        return Fill(
            client_order_id=client_order_id_from_text(self.text),
            venue_order_id=_id(self.order_id),
            instrument_key=instrument.key,
            side=Side.BUY if self.side == "buy" else Side.SELL,
            price=self.price,
            qty=self.amount,
            fee=fee,
            is_maker=self.role == "maker",
            ts_ns=self.ts_ns,
            fill_id=_id(self.id),
            fee_base=fee_base,
            fee_asset=fee_asset,
            fee_other=fee_other,
        )


class GateFuturesTrade(msgspec.Struct, frozen=True, kw_only=True):
    """A futures trade: ``/futures/usdt/my_trades`` / ``futures.usertrades`` (ours: ``order_id``,
    ``role``, ``fee`` in settle currency) or public ``/trades`` / ``futures.trades``. ``size``
    signed contracts; ``create_time`` seconds (float), ``create_time_ms`` ms."""

    id: int | str | None = None
    trade_id: int | str | None = None
    create_time: float = 0.0
    create_time_ms: float = 0.0
    contract: str = ""
    order_id: int | str = ""
    size: float
    price: float
    role: str = ""
    text: str = ""
    fee: float = 0.0

    @property
    def ts_ns(self) -> int:
        return _ns(self.create_time_ms) if self.create_time_ms else _ns_from_s(self.create_time)

    @property
    def venue_trade_id(self) -> str:
        return _id(self.id if self.id is not None else self.trade_id)

    def to_trade(self, instrument_key: str | None = None) -> Trade:
        """Public trade; qty in contracts, taker side from the sign of ``size``."""
        tid = self.venue_trade_id
        return Trade(
            instrument_key=instrument_key or f"{FUTURES_VENUE}:{self.contract}",
            price=self.price,
            qty=abs(self.size),
            taker_side=Side.BUY if self.size > 0 else Side.SELL,
            ts_ns=self.ts_ns,
            trade_id=int(tid) if tid.isdigit() else 0,
        )

    def to_fill(self, instrument: Instrument) -> Fill:
        """Our fill: qty in contracts, fee in the settle currency (USDT = quote)."""
        return Fill(
            client_order_id=client_order_id_from_text(self.text),
            venue_order_id=_id(self.order_id),
            instrument_key=instrument.key,
            side=Side.BUY if self.size > 0 else Side.SELL,
            price=self.price,
            qty=abs(self.size),
            fee=self.fee,
            is_maker=self.role == "maker",
            ts_ns=self.ts_ns,
            fill_id=self.venue_trade_id,
        )


class GateSpotAccount(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /spot/accounts`` item."""

    currency: str
    available: float = 0.0
    locked: float = 0.0
    update_id: int = 0

    def to_balance(self) -> Balance:
        return Balance(asset=self.currency, free=self.available, locked=self.locked)


class GateFuturesAccount(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /futures/usdt/accounts``: ``total`` equity excl. unrealised PnL, ``available``."""

    currency: str = "USDT"
    total: float = 0.0
    available: float = 0.0
    unrealised_pnl: float = 0.0
    position_margin: float = 0.0
    order_margin: float = 0.0
    in_dual_mode: bool = False

    def to_balance(self) -> Balance:
        """``free`` = available, ``locked`` = position + order margin."""
        return Balance(asset=self.currency, free=self.available, locked=self.position_margin + self.order_margin)


class GatePosition(msgspec.Struct, frozen=True, kw_only=True):
    """A futures position (REST and ``futures.positions``): ``size`` signed contracts,
    ``leverage`` 0 = cross, ``mode`` single / dual_long / dual_short, ``update_id`` +1 per change."""

    contract: str
    size: float = 0.0
    leverage: float = 0.0
    entry_price: float = 0.0
    mark_price: float = 0.0
    liq_price: float = 0.0
    value: float = 0.0
    margin: float = 0.0
    unrealised_pnl: float = 0.0
    realised_pnl: float = 0.0
    mode: str = "single"
    update_id: int = 0

    def to_position(self) -> Position:
        """As a :class:`Position`; ``qty`` in contracts (the instrument's lot unit)."""
        return Position(
            instrument_key=f"{FUTURES_VENUE}:{self.contract}",
            qty=self.size,
            avg_price=self.entry_price,
            realized_pnl=self.realised_pnl,
        )


class GateFee(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /spot/fee`` or one value of ``GET /futures/usdt/fee``: fractions."""

    taker_fee: float
    maker_fee: float


class GateTicker(msgspec.Struct, frozen=True, kw_only=True):
    """``/spot/tickers`` or ``/futures/usdt/tickers`` item (fields we read; ``""`` when absent)."""

    currency_pair: str = ""
    contract: str = ""
    last: str = ""
    highest_bid: str = ""
    lowest_ask: str = ""
    highest_size: str = ""
    lowest_size: str = ""
    mark_price: str = ""
    funding_rate: str = ""


class _KeyMode(msgspec.Struct, frozen=True, kw_only=True):
    mode: int = 1


class GateAccountDetail(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /account/detail``: ``key.mode`` 1 classic, 2 unified (ccxt switches endpoints)."""

    user_id: int
    key: _KeyMode = _KeyMode()


class GateAccountBookEntry(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /futures/usdt/account_book`` row: ``type`` fund (funding), fee, pnl, dnw..."""

    time: float
    change: float
    balance: float = 0.0
    type: str = ""
    text: str = ""
    contract: str = ""


class _Trigger(msgspec.Struct, frozen=True, kw_only=True):
    price: float | None = None
    rule: int | str = ""


class GatePriceOrder(msgspec.Struct, frozen=True, kw_only=True):
    """A trigger order, spot (``market``) or futures (``initial.contract``): ids and status."""

    id: int | str
    status: str = ""
    market: str = ""
    trigger: _Trigger = _Trigger()
    finish_as: str = ""


class GateLiquidation(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /futures/usdt/liq_orders`` row."""

    contract: str
    size: float
    fill_price: float = 0.0
    order_price: float = 0.0
    time: float = 0.0


# ---- request bodies (what the simulator receives; what we send) ----------------------------


class GateSpotOrderBody(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """``POST /spot/orders`` body. Amounts and prices are decimal strings; ``amount`` is quote
    for a market buy. ``time_in_force`` gtc / ioc / poc (post-only) / fok."""

    currency_pair: str
    side: str
    amount: str
    type: str = "limit"
    price: str | None = None
    time_in_force: str = "gtc"
    text: str | None = None
    account: str = "spot"
    iceberg: str | None = None
    stp_act: str | None = None
    action_mode: str | None = None


class GateSpotAmendBody(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """``PATCH /spot/orders/{id}`` body."""

    currency_pair: str | None = None
    account: str | None = None
    amount: str | None = None
    price: str | None = None
    amend_text: str | None = None


class GateFuturesOrderBody(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """``POST /futures/usdt/orders`` body: ``size`` signed contracts (int, or decimal string with
    ``X-Gate-Size-Decimal: 1``); ``price`` "0" + ``tif`` ioc = market."""

    contract: str
    size: int | str
    price: str = "0"
    tif: str = "gtc"
    text: str | None = None
    reduce_only: bool = False
    close: bool = False
    iceberg: int | str = 0
    auto_size: str | None = None
    stp_act: str | None = None

    @property
    def size_contracts(self) -> float:
        """``size`` as a number (raises GateCodecError when it is not one)."""
        try:
            return float(self.size)
        except ValueError:
            raise GateCodecError(f"Gate futures order: size {str(self.size)[:32]!r} is not a number") from None


class GateFuturesAmendBody(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """``PUT /futures/usdt/orders/{id}`` body."""

    size: int | str | None = None
    price: str | None = None
    amend_text: str | None = None


# ---- decoders, built once ------------------------------------------------------------------

_ERROR = msgspec.json.Decoder(GateError, strict=False)
_TIME = msgspec.json.Decoder(GateServerTime, strict=False)
_PAIR = msgspec.json.Decoder(GateCurrencyPair, strict=False)
_PAIRS = msgspec.json.Decoder(list[GateCurrencyPair], strict=False)
_CONTRACT = msgspec.json.Decoder(GateContract, strict=False)
_CONTRACTS = msgspec.json.Decoder(list[GateContract], strict=False)
_FUNDING = msgspec.json.Decoder(list[GateFundingRate], strict=False)
_SPOT_BOOK = msgspec.json.Decoder(_SpotBook, strict=False)
_FUTURES_BOOK = msgspec.json.Decoder(_FuturesBook, strict=False)
_SPOT_ORDER = msgspec.json.Decoder(GateSpotOrder, strict=False)
_SPOT_ORDERS = msgspec.json.Decoder(list[GateSpotOrder], strict=False)
_SPOT_OPEN_ORDERS = msgspec.json.Decoder(list[GateSpotOpenOrders], strict=False)
_FUTURES_ORDER = msgspec.json.Decoder(GateFuturesOrder, strict=False)
_FUTURES_ORDERS = msgspec.json.Decoder(list[GateFuturesOrder], strict=False)
_SPOT_TRADES = msgspec.json.Decoder(list[GateSpotTrade], strict=False)
_FUTURES_TRADES = msgspec.json.Decoder(list[GateFuturesTrade], strict=False)
_SPOT_ACCOUNTS = msgspec.json.Decoder(list[GateSpotAccount], strict=False)
_FUTURES_ACCOUNT = msgspec.json.Decoder(GateFuturesAccount, strict=False)
_POSITION = msgspec.json.Decoder(GatePosition, strict=False)
_POSITIONS = msgspec.json.Decoder(list[GatePosition], strict=False)
_FEE = msgspec.json.Decoder(GateFee, strict=False)
_FUTURES_FEES = msgspec.json.Decoder(dict[str, GateFee], strict=False)
_TICKERS = msgspec.json.Decoder(list[GateTicker], strict=False)
_ACCOUNT_DETAIL = msgspec.json.Decoder(GateAccountDetail, strict=False)
_ACCOUNT_BOOK = msgspec.json.Decoder(list[GateAccountBookEntry], strict=False)
_PRICE_ORDER = msgspec.json.Decoder(GatePriceOrder, strict=False)
_PRICE_ORDERS = msgspec.json.Decoder(list[GatePriceOrder], strict=False)
_LIQUIDATIONS = msgspec.json.Decoder(list[GateLiquidation], strict=False)
_CANDLES = msgspec.json.Decoder(list[list[str | float | int | bool]], strict=False)
_SPOT_ORDER_BODY = msgspec.json.Decoder(GateSpotOrderBody)
_SPOT_AMEND_BODY = msgspec.json.Decoder(GateSpotAmendBody)
_FUTURES_ORDER_BODY = msgspec.json.Decoder(GateFuturesOrderBody)
_FUTURES_AMEND_BODY = msgspec.json.Decoder(GateFuturesAmendBody)


def decode_error(data: bytes | str) -> GateError:
    return _decode(_ERROR, data, "error body")


def decode_server_time(data: bytes | str) -> GateServerTime:
    return _decode(_TIME, data, "GET /spot/time")


def decode_currency_pairs(data: bytes | str) -> list[GateCurrencyPair]:
    return _decode(_PAIRS, data, "GET /spot/currency_pairs")


def decode_currency_pair(data: bytes | str) -> GateCurrencyPair:
    return _decode(_PAIR, data, "GET /spot/currency_pairs/{pair}")


def decode_contracts(data: bytes | str) -> list[GateContract]:
    return _decode(_CONTRACTS, data, "GET /futures/{settle}/contracts")


def decode_contract(data: bytes | str) -> GateContract:
    return _decode(_CONTRACT, data, "GET /futures/{settle}/contracts/{contract}")


def decode_funding_rates(data: bytes | str) -> list[GateFundingRate]:
    return _decode(_FUNDING, data, "GET /futures/usdt/funding_rate")


def _snapshot_id(book_id: int | None, what: str) -> int:
    if book_id is None:
        raise GateCodecError(f"Gate {what}: no 'id' (request it with with_id=true)")
    if book_id < 0:
        raise GateCodecError(f"Gate {what}: id must be >= 0, got {book_id}")
    return book_id


def decode_spot_order_book(data: bytes | str) -> GateBookSnapshot:
    """``GET /spot/order_book?...&with_id=true``: levels ``[price, amount]``; ``update`` ms.

    Raises:
        GateCodecError: bad JSON/shape, or no ``id`` (the request lacked ``with_id=true``).
    """
    book = _decode(_SPOT_BOOK, data, "GET /spot/order_book")
    return GateBookSnapshot(
        id=_snapshot_id(book.id, "GET /spot/order_book"), bids=book.bids, asks=book.asks, update_ms=book.update
    )


def decode_futures_order_book(data: bytes | str) -> GateBookSnapshot:
    """``GET /futures/usdt/order_book?...&with_id=true``: levels ``{"p", "s"}``; ``update`` s."""
    book = _decode(_FUTURES_BOOK, data, "GET /futures/usdt/order_book")
    return GateBookSnapshot(
        id=_snapshot_id(book.id, "GET /futures/usdt/order_book"),
        bids=[(lvl.p, lvl.s) for lvl in book.bids],
        asks=[(lvl.p, lvl.s) for lvl in book.asks],
        update_ms=book.update * 1000.0,
    )


def decode_spot_order(data: bytes | str) -> GateSpotOrder:
    """``POST /spot/orders`` (201), ``GET``/``DELETE``/``PATCH /spot/orders/{id}``."""
    return _decode(_SPOT_ORDER, data, "spot order")


def decode_spot_orders(data: bytes | str) -> list[GateSpotOrder]:
    """``GET /spot/orders``, ``DELETE /spot/orders`` (cancel all)."""
    return _decode(_SPOT_ORDERS, data, "spot order list")


def decode_spot_open_orders(data: bytes | str) -> list[GateSpotOpenOrders]:
    return _decode(_SPOT_OPEN_ORDERS, data, "GET /spot/open_orders")


def decode_futures_order(data: bytes | str) -> GateFuturesOrder:
    return _decode(_FUTURES_ORDER, data, "futures order")


def decode_futures_orders(data: bytes | str) -> list[GateFuturesOrder]:
    return _decode(_FUTURES_ORDERS, data, "futures order list")


def decode_spot_trades(data: bytes | str) -> list[GateSpotTrade]:
    """``/spot/my_trades`` and ``/spot/trades``."""
    return _decode(_SPOT_TRADES, data, "spot trade list")


def decode_futures_trades(data: bytes | str) -> list[GateFuturesTrade]:
    """``/futures/usdt/my_trades`` and ``/futures/usdt/trades``."""
    return _decode(_FUTURES_TRADES, data, "futures trade list")


def decode_spot_accounts(data: bytes | str) -> list[GateSpotAccount]:
    return _decode(_SPOT_ACCOUNTS, data, "GET /spot/accounts")


def decode_futures_account(data: bytes | str) -> GateFuturesAccount:
    return _decode(_FUTURES_ACCOUNT, data, "GET /futures/usdt/accounts")


def decode_position(data: bytes | str) -> GatePosition:
    return _decode(_POSITION, data, "futures position")


def decode_positions(data: bytes | str) -> list[GatePosition]:
    return _decode(_POSITIONS, data, "GET /futures/usdt/positions")


def decode_spot_fee(data: bytes | str) -> GateFee:
    return _decode(_FEE, data, "GET /spot/fee")


def decode_futures_fees(data: bytes | str) -> dict[str, GateFee]:
    return _decode(_FUTURES_FEES, data, "GET /futures/usdt/fee")


def decode_tickers(data: bytes | str) -> list[GateTicker]:
    return _decode(_TICKERS, data, "tickers")


def decode_account_detail(data: bytes | str) -> GateAccountDetail:
    return _decode(_ACCOUNT_DETAIL, data, "GET /account/detail")


def decode_account_book(data: bytes | str) -> list[GateAccountBookEntry]:
    return _decode(_ACCOUNT_BOOK, data, "GET /futures/usdt/account_book")


def decode_price_order(data: bytes | str) -> GatePriceOrder:
    return _decode(_PRICE_ORDER, data, "price (trigger) order")


def decode_price_orders(data: bytes | str) -> list[GatePriceOrder]:
    return _decode(_PRICE_ORDERS, data, "price (trigger) order list")


def decode_liquidations(data: bytes | str) -> list[GateLiquidation]:
    return _decode(_LIQUIDATIONS, data, "GET /futures/usdt/liq_orders")


def decode_candlesticks(data: bytes | str) -> list[list[str | float | int | bool]]:
    return _decode(_CANDLES, data, "candlesticks")


def decode_spot_order_body(data: bytes | str) -> GateSpotOrderBody:
    """Server side: a ``POST /spot/orders`` body (strict types: strings stay strings)."""
    return _decode(_SPOT_ORDER_BODY, data, "POST /spot/orders body")


def decode_spot_amend_body(data: bytes | str) -> GateSpotAmendBody:
    return _decode(_SPOT_AMEND_BODY, data, "PATCH /spot/orders body")


def decode_futures_order_body(data: bytes | str) -> GateFuturesOrderBody:
    """Server side: a ``POST /futures/usdt/orders`` body."""
    return _decode(_FUTURES_ORDER_BODY, data, "POST /futures/usdt/orders body")


def decode_futures_amend_body(data: bytes | str) -> GateFuturesAmendBody:
    return _decode(_FUTURES_AMEND_BODY, data, "PUT /futures/usdt/orders body")


# ---- outgoing order bodies -----------------------------------------------------------------

_JSON = msgspec.json.Encoder()


def spot_order_body(request: OrderRequest, *, account: str = "spot", quote_amount: str | None = None) -> bytes:
    """Compact JSON ``POST /spot/orders`` body for ``request`` (exact decimal strings).

    Limit: ``amount`` = qty, ``price``, ``time_in_force`` gtc / ioc / poc. Market: ``type``
    market, ``time_in_force`` ioc, ``amount`` = base qty for a sell, ``quote_amount`` (a decimal
    string, quote to spend) for a buy [GT-DOC]. ``text`` = ``"t-" + client_order_id``.

    Raises:
        ValueError: reduce-only, a market buy without ``quote_amount``, or a bad client order id.
    """
    if request.reduce_only:
        raise ValueError("Gate spot: reduce_only is not supported, got reduce_only=True")
    cid = request.client_order_id
    price = request.wire_price
    if request.type is _LIMIT and account == "spot" and price is not None:
        # the order path's body, built in Rust in one call: the same bytes as the Struct below
        # encodes (defaults omitted: type "limit", account "spot", time_in_force "gtc"); None when
        # a field needs escaping or a check -- the general path below then raises or encodes
        fast = _spot_limit_body(
            request.instrument.symbol, request.side, request.wire_qty, price, request.time_in_force, cid
        )
        if fast is not None:
            return fast
    side = "buy" if request.side is _BUY else "sell"
    text = text_for_client_order_id(cid)
    if request.type is OrderType.MARKET:
        if request.side is Side.BUY and not quote_amount:
            raise ValueError("Gate spot market buy needs quote_amount (quote to spend), got None")
        body = GateSpotOrderBody(
            currency_pair=request.instrument.symbol,
            side=side,
            type="market",
            amount=quote_amount if request.side is Side.BUY and quote_amount else request.wire_qty,
            time_in_force="ioc",
            text=text,
            account=account,
        )
    else:
        body = GateSpotOrderBody(
            currency_pair=request.instrument.symbol,
            side=side,
            amount=request.wire_qty,
            price=request.wire_price,
            time_in_force=_SPOT_TIF[request.time_in_force],
            text=text,
            account=account,
        )
    return _JSON.encode(body)


def futures_order_body(request: OrderRequest) -> bytes:
    """Compact JSON ``POST /futures/usdt/orders`` body: ``size`` = signed whole contracts.

    Market orders go as ``price`` "0" with ``tif`` ioc [GT-DOC]; post-only is ``tif`` poc.

    Raises:
        ValueError: the instrument's lot is not 1 contract, or a bad client order id.
    """
    if request.instrument.lot_size != 1.0:
        raise ValueError(
            f"Gate futures {request.instrument.symbol}: lot_size must be 1 contract, got {request.instrument.lot_size!r}"
        )
    size = request.qty_lots * request.side.sign
    text = text_for_client_order_id(request.client_order_id)
    if request.type is OrderType.MARKET:
        body = GateFuturesOrderBody(
            contract=request.instrument.symbol,
            size=size,
            price="0",
            tif="ioc",
            text=text,
            reduce_only=request.reduce_only,
        )
    else:
        body = GateFuturesOrderBody(
            contract=request.instrument.symbol,
            size=size,
            price=request.wire_price or "0",
            tif=_SPOT_TIF[request.time_in_force],
            text=text,
            reduce_only=request.reduce_only,
        )
    return _JSON.encode(body)


# =============================================================================================
# WebSocket


class GateWsAuth(msgspec.Struct, frozen=True, kw_only=True):
    """``auth`` of a private-channel request: ``method`` api_key, ``KEY``, ``SIGN``."""

    method: str = "api_key"
    KEY: str = ""
    SIGN: str = ""

    def __repr__(self) -> str:
        return f"GateWsAuth(method={self.method!r}, KEY=<masked>, SIGN=<masked>)"


class GateWsRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A client request: subscribe / unsubscribe (``payload`` a list of strings), ping
    (``event`` absent), or WS trading-API ``api`` (``payload`` an object). ``time`` seconds."""

    time: int
    channel: str
    event: str = ""
    id: int | None = None
    payload: list[str | int] | dict[str, Any] | None = None  # ints tolerated (levels, user ids)
    auth: GateWsAuth | None = None


class GateWsAck(msgspec.Struct, frozen=True, kw_only=True):
    """A successful subscribe / unsubscribe reply."""

    channel: str
    event: str
    id: int | None = None
    time_ms: int = 0
    payload: list[str | int] | None = None


class GateWsError(msgspec.Struct, frozen=True, kw_only=True):
    """A failed request: ``code`` 1 bad body, 2 bad argument (also duplicate subscribe),
    3 server error, 4 auth failed [GT-DOC]."""

    channel: str
    event: str
    code: int
    message: str
    id: int | None = None
    time_ms: int = 0


class GatePong(msgspec.Struct, frozen=True, kw_only=True):
    """``spot.pong`` / ``futures.pong``."""

    channel: str
    time_ms: int = 0


class GateOrderBookUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """A depth push of ``spot.order_book_update``, ``futures.order_book_update``, ``spot.obu`` or
    ``futures.obu``.

    ``first_id``/``last_id`` are Gate's ``U``/``u`` (``first_id`` None on an obu ``full``
    snapshot, which carries only ``u``); ``full`` True means "replace the book" (the levels are
    the whole book for the subscribed depth) -- PROTOCOLS.md §2.5. Levels ``(price, amount)``
    floats, absolute, 0 deletes; base units (spot) or contracts (futures). ``depth`` is the
    level count (``l``, or the obu stream's 50/400; 0 when not sent). ``ts_ms`` is ``t``.
    """

    channel: str
    symbol: str
    ts_ms: int
    first_id: int | None
    last_id: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]
    full: bool = False
    depth: int = 0


class GateBookTickerUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """``spot.book_ticker`` / ``futures.book_ticker``; a side with an empty price is None."""

    channel: str
    symbol: str
    ts_ms: int
    update_id: int
    bid_price: float | None
    bid_qty: float
    ask_price: float | None
    ask_qty: float

    def to_book_ticker(self, instrument_key: str) -> BookTicker:
        """As a :class:`BookTicker`; an empty side is reported as price 0.0, qty 0.0."""
        return BookTicker(
            instrument_key=instrument_key,
            bid_price=self.bid_price or 0.0,
            bid_qty=self.bid_qty,
            ask_price=self.ask_price or 0.0,
            ask_qty=self.ask_qty,
            ts_ns=self.ts_ms * 1_000_000,
            update_id=self.update_id,
        )


class GateTradesUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """``spot.trades`` (one trade per push) / ``futures.trades`` (a list)."""

    channel: str
    trades: list[GateSpotTrade] | list[GateFuturesTrade]
    time_ms: int = 0


class GateOrdersUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """``spot.orders`` / ``futures.orders``."""

    channel: str
    orders: list[GateSpotOrder] | list[GateFuturesOrder]
    time_ms: int = 0


class GateUserTradesUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """``spot.usertrades`` / ``futures.usertrades``: our fills."""

    channel: str
    trades: list[GateSpotTrade] | list[GateFuturesTrade]
    time_ms: int = 0


class GateBalanceChange(msgspec.Struct, frozen=True, kw_only=True):
    """One ``spot.balances`` row: ``total`` / ``available`` / ``freeze`` after the change."""

    currency: str
    change: float = 0.0
    total: float = 0.0
    available: float = 0.0
    freeze: float = 0.0
    change_type: str = ""
    timestamp_ms: float = 0.0

    def to_balance(self) -> Balance:
        return Balance(asset=self.currency, free=self.available, locked=self.freeze)


class GateFuturesBalanceChange(msgspec.Struct, frozen=True, kw_only=True):
    """One ``futures.balances`` row: ``balance`` after the change, ``type`` fee / fund / pnl..."""

    balance: float
    change: float = 0.0
    currency: str = ""
    type: str = ""
    text: str = ""
    time_ms: float = 0.0


class GateBalancesUpdate(msgspec.Struct, frozen=True, kw_only=True):
    channel: str
    balances: list[GateBalanceChange] | list[GateFuturesBalanceChange]
    time_ms: int = 0


class GatePositionsUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """``futures.positions``."""

    channel: str
    positions: list[GatePosition]
    time_ms: int = 0


class GateOtherUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """A push on a channel we do not model (tickers, candlesticks, liquidates, ...): ``result``
    left as raw JSON."""

    channel: str
    event: str
    result: msgspec.Raw
    time_ms: int = 0


class GateApiResponse(msgspec.Struct, frozen=True, kw_only=True):
    """A WS trading-API reply (``spot.login``, ``futures.order_place``...): ``ack`` True for the
    receipt, False for the result; ``status`` the HTTP-like status; on error ``label`` /
    ``message``; ``result`` raw JSON (an order, a list, or the login info)."""

    request_id: str
    channel: str
    status: int
    ack: bool = False
    result: msgspec.Raw | None = None
    label: str = ""
    message: str = ""


GateWsMessage = (
    GateWsAck
    | GateWsError
    | GatePong
    | GateOrderBookUpdate
    | GateBookTickerUpdate
    | GateTradesUpdate
    | GateOrdersUpdate
    | GateUserTradesUpdate
    | GateBalancesUpdate
    | GatePositionsUpdate
    | GateOtherUpdate
    | GateApiResponse
)

# ---- envelope and result views ---------------------------------------------------------------


_NO_RAW: Final = msgspec.Raw()


class _ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    code: int = 0
    message: str = ""


class _ApiHeader(msgspec.Struct, frozen=True, kw_only=True):
    status: int = 0
    channel: str = ""


class _ApiErrs(msgspec.Struct, frozen=True, kw_only=True):
    label: str = ""
    message: str = ""


class _ApiData(msgspec.Struct, frozen=True, kw_only=True):
    result: msgspec.Raw = _NO_RAW
    errs: _ApiErrs | None = None


class _Envelope(msgspec.Struct, frozen=True, kw_only=True):
    time: float = 0
    time_ms: int = 0
    id: int | None = None
    channel: str = ""
    event: str = ""
    error: _ErrorBody | None = None
    result: msgspec.Raw = _NO_RAW  # absent: empty span
    payload: list[str | int] | None = None
    # WS trading API replies
    request_id: str | None = None
    ack: bool = False
    header: _ApiHeader | None = None
    data: _ApiData | None = None


class _SpotBookResult(msgspec.Struct, frozen=True, kw_only=True):
    t: int
    full: bool = False
    l: int = 0  # Gate's field name
    s: str
    U: int
    u: int
    b: list[tuple[float, float]] = []
    a: list[tuple[float, float]] = []


class _FuturesBookResult(msgspec.Struct, frozen=True, kw_only=True):
    t: int
    full: bool = False
    l: int = 0
    s: str
    U: int
    u: int
    b: list[_FuturesLevel] = []
    a: list[_FuturesLevel] = []


class _ObuResult(msgspec.Struct, frozen=True, kw_only=True):
    t: int
    full: bool = False
    s: str
    U: int | None = None
    u: int
    b: list[tuple[float, float]] = []
    a: list[tuple[float, float]] = []


class _BookTickerResult(msgspec.Struct, frozen=True, kw_only=True):
    t: int
    u: int
    s: str
    b: str | float = ""
    B: str | float = 0.0
    a: str | float = ""
    A: str | float = 0.0


class _SpotBookFrame(msgspec.Struct, frozen=True, kw_only=True):
    """A whole ``spot.order_book_update`` push, decoded in one pass (the hot frame)."""

    channel: str
    event: str
    result: _SpotBookResult
    error: _ErrorBody | None = None


class _FuturesBookFrame(msgspec.Struct, frozen=True, kw_only=True):
    """A whole ``futures.order_book_update`` push, decoded in one pass."""

    channel: str
    event: str
    result: _FuturesBookResult
    error: _ErrorBody | None = None


_ENVELOPE = msgspec.json.Decoder(_Envelope, strict=False)
_SPOT_BOOK_FRAME = msgspec.json.Decoder(_SpotBookFrame, strict=False)
_FUTURES_BOOK_FRAME = msgspec.json.Decoder(_FuturesBookFrame, strict=False)
# how Gate's depth pushes begin after "time"/"time_ms" (searched near the start only)
_SPOT_BOOK_TAG: Final = '"channel":"spot.order_book_update","event":"update"'
_FUTURES_BOOK_TAG: Final = '"channel":"futures.order_book_update","event":"update"'
_SPOT_BOOK_TAG_B: Final = _SPOT_BOOK_TAG.encode()
_FUTURES_BOOK_TAG_B: Final = _FUTURES_BOOK_TAG.encode()
_TAG_WINDOW: Final = 160
_SPOT_BOOK_RESULT = msgspec.json.Decoder(_SpotBookResult, strict=False)
_FUTURES_BOOK_RESULT = msgspec.json.Decoder(_FuturesBookResult, strict=False)
_OBU_RESULT = msgspec.json.Decoder(_ObuResult, strict=False)
_BOOK_TICKER_RESULT = msgspec.json.Decoder(_BookTickerResult, strict=False)
_SPOT_TRADE = msgspec.json.Decoder(GateSpotTrade, strict=False)
_SPOT_BALANCES = msgspec.json.Decoder(list[GateBalanceChange], strict=False)
_FUTURES_BALANCES = msgspec.json.Decoder(list[GateFuturesBalanceChange], strict=False)
_WS_REQUEST = msgspec.json.Decoder(GateWsRequest)


def _float_or_none(value: str | float, what: str) -> float | None:
    if isinstance(value, float):
        return value
    if value == "":
        return None
    try:
        return float(value)
    except ValueError:
        raise GateCodecError(f"Gate {what}: not a number: {value[:32]!r}") from None


def _obu_stream(s: str, what: str) -> tuple[str, int]:
    """``ob.BTC_USDT.50`` -> (``BTC_USDT``, 50)."""
    parts = s.split(".")
    if len(parts) != 3 or parts[0] != "ob" or not parts[2].isdigit():
        raise GateCodecError(f"Gate {what}: stream {s[:40]!r} is not 'ob.<PAIR>.<LEVEL>'")
    return parts[1], int(parts[2])


def _spot_book_update(channel: str, r: _SpotBookResult) -> GateOrderBookUpdate:
    return GateOrderBookUpdate(
        channel=channel, symbol=r.s, ts_ms=r.t, first_id=r.U, last_id=r.u, bids=r.b, asks=r.a, full=r.full, depth=r.l
    )


def _futures_book_update(channel: str, f: _FuturesBookResult) -> GateOrderBookUpdate:
    return GateOrderBookUpdate(
        channel=channel,
        symbol=f.s,
        ts_ms=f.t,
        first_id=f.U,
        last_id=f.u,
        bids=[(lvl.p, lvl.s) for lvl in f.b],
        asks=[(lvl.p, lvl.s) for lvl in f.a],
        full=f.full,
        depth=f.l,
    )


def _book_update(channel: str, raw: msgspec.Raw) -> GateOrderBookUpdate:
    if channel == "spot.order_book_update":
        return _spot_book_update(channel, _decode(_SPOT_BOOK_RESULT, raw, f"{channel} result"))
    if channel == "futures.order_book_update":
        return _futures_book_update(channel, _decode(_FUTURES_BOOK_RESULT, raw, f"{channel} result"))
    o = _decode(_OBU_RESULT, raw, f"{channel} result")
    symbol, depth = _obu_stream(o.s, f"{channel} result")
    if o.U is None and not o.full:
        raise GateCodecError(f"Gate {channel} result: incremental push without 'U'")
    return GateOrderBookUpdate(
        channel=channel,
        symbol=symbol,
        ts_ms=o.t,
        first_id=o.U,
        last_id=o.u,
        bids=o.b,
        asks=o.a,
        full=o.full,
        depth=depth,
    )


def _book_ticker(channel: str, raw: msgspec.Raw) -> GateBookTickerUpdate:
    r = _decode(_BOOK_TICKER_RESULT, raw, f"{channel} result")
    bid_qty = _float_or_none(r.B, f"{channel} B") or 0.0
    ask_qty = _float_or_none(r.A, f"{channel} A") or 0.0
    return GateBookTickerUpdate(
        channel=channel,
        symbol=r.s,
        ts_ms=r.t,
        update_id=r.u,
        bid_price=_float_or_none(r.b, f"{channel} b"),
        bid_qty=bid_qty,
        ask_price=_float_or_none(r.a, f"{channel} a"),
        ask_qty=ask_qty,
    )


def _base_channel(channel: str) -> str:
    """``spot.orders_v2`` -> ``spot.orders`` (the v2 channels carry the same objects)."""
    return channel.removesuffix("_v2")


def _fast_book_update(data: bytes | str) -> GateOrderBookUpdate | None:
    """The hot path of :func:`decode_ws_frame`: a ``spot``/``futures.order_book_update`` push as
    Gate formats it, decoded in one pass (no envelope + ``Raw`` + second decode). None for any
    other frame, or one this path cannot take -- the general path then decodes it (and raises
    the error with its JSON path)."""
    if isinstance(data, str):
        spot = data.find(_SPOT_BOOK_TAG, 0, _TAG_WINDOW) >= 0
        if not spot and data.find(_FUTURES_BOOK_TAG, 0, _TAG_WINDOW) < 0:
            return None
    else:
        spot = data.find(_SPOT_BOOK_TAG_B, 0, _TAG_WINDOW) >= 0
        if not spot and data.find(_FUTURES_BOOK_TAG_B, 0, _TAG_WINDOW) < 0:
            return None
    try:
        if spot:
            frame = _SPOT_BOOK_FRAME.decode(data)
            if frame.channel != "spot.order_book_update" or frame.event != "update" or frame.error is not None:
                return None
            return _spot_book_update(frame.channel, frame.result)
        ff = _FUTURES_BOOK_FRAME.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    if ff.channel != "futures.order_book_update" or ff.event != "update" or ff.error is not None:
        return None
    return _futures_book_update(ff.channel, ff.result)


def decode_ws_frame(data: bytes | str) -> GateWsMessage:
    """Decode one server frame (client side).

    Returns the Struct for its kind (see :data:`GateWsMessage`). Pushes on channels we do not
    model come back as :class:`GateOtherUpdate`.

    Raises:
        GateCodecError: not JSON, not a frame, or a known channel's result of the wrong shape,
            naming the channel and the JSON path.
    """
    # the hot frame first (what _fast_book_update does for both markets, inline for spot)
    if isinstance(data, str):
        spot = data.find(_SPOT_BOOK_TAG, 0, _TAG_WINDOW)
    else:
        spot = data.find(_SPOT_BOOK_TAG_B, 0, _TAG_WINDOW)
    if spot >= 0:
        try:
            frame = _SPOT_BOOK_FRAME.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError):
            frame = None
        if frame is not None and frame.channel == "spot.order_book_update" and frame.event == "update" and frame.error is None:
            r = frame.result
            return GateOrderBookUpdate(
                channel=frame.channel, symbol=r.s, ts_ms=r.t, first_id=r.U, last_id=r.u, bids=r.b, asks=r.a, full=r.full, depth=r.l
            )
    else:
        book = _fast_book_update(data)
        if book is not None:
            return book
    env = _decode(_ENVELOPE, data, "WS frame")
    if env.header is not None:  # WS trading-API reply
        errs = env.data.errs if env.data is not None else None
        return GateApiResponse(
            request_id=env.request_id or "",
            channel=env.header.channel,
            status=env.header.status,
            ack=env.ack,
            result=env.data.result if env.data is not None and len(env.data.result) else None,
            label=errs.label if errs else "",
            message=errs.message if errs else "",
        )
    channel = env.channel
    if not channel:
        raise GateCodecError("Gate WS frame: no 'channel'")
    event = env.event
    if env.error is not None:
        return GateWsError(
            channel=channel, event=event, code=env.error.code, message=env.error.message, id=env.id, time_ms=env.time_ms
        )
    if event in ("subscribe", "unsubscribe"):
        if not len(env.result):
            raise GateCodecError(f"Gate WS frame on {channel!r}: {event} reply without 'result' (a request?)")
        return GateWsAck(channel=channel, event=event, id=env.id, time_ms=env.time_ms, payload=env.payload)
    if channel.endswith(".pong"):
        return GatePong(channel=channel, time_ms=env.time_ms)
    raw = env.result
    if not len(raw):
        raise GateCodecError(f"Gate WS frame on {channel!r} (event {event!r}): no 'result'")
    if event not in ("update", "all", ""):
        return GateOtherUpdate(channel=channel, event=event, result=raw, time_ms=env.time_ms)
    base = _base_channel(channel)
    topic = base.partition(".")[2]
    if topic in ("order_book_update", "obu"):
        return _book_update(base, raw)
    if topic == "book_ticker":
        return _book_ticker(channel, raw)
    if base == "spot.trades":
        return GateTradesUpdate(
            channel=channel, trades=[_decode(_SPOT_TRADE, raw, f"{channel} result")], time_ms=env.time_ms
        )
    if base == "futures.trades":
        return GateTradesUpdate(
            channel=channel, trades=_decode(_FUTURES_TRADES, raw, f"{channel} result"), time_ms=env.time_ms
        )
    if base == "spot.orders":
        return GateOrdersUpdate(
            channel=channel, orders=_decode(_SPOT_ORDERS, raw, f"{channel} result"), time_ms=env.time_ms
        )
    if base == "futures.orders":
        return GateOrdersUpdate(
            channel=channel, orders=_decode(_FUTURES_ORDERS, raw, f"{channel} result"), time_ms=env.time_ms
        )
    if base == "spot.usertrades":
        return GateUserTradesUpdate(
            channel=channel, trades=_decode(_SPOT_TRADES, raw, f"{channel} result"), time_ms=env.time_ms
        )
    if base == "futures.usertrades":
        return GateUserTradesUpdate(
            channel=channel, trades=_decode(_FUTURES_TRADES, raw, f"{channel} result"), time_ms=env.time_ms
        )
    if base == "spot.balances":
        return GateBalancesUpdate(
            channel=channel, balances=_decode(_SPOT_BALANCES, raw, f"{channel} result"), time_ms=env.time_ms
        )
    if base == "futures.balances":
        return GateBalancesUpdate(
            channel=channel, balances=_decode(_FUTURES_BALANCES, raw, f"{channel} result"), time_ms=env.time_ms
        )
    if base == "futures.positions":
        return GatePositionsUpdate(
            channel=channel, positions=_decode(_POSITIONS, raw, f"{channel} result"), time_ms=env.time_ms
        )
    return GateOtherUpdate(channel=channel, event=event, result=raw, time_ms=env.time_ms)


def decode_ws_request(data: bytes | str) -> GateWsRequest:
    """Server side: a client request (subscribe / unsubscribe / ping / WS trading API)."""
    return _decode(_WS_REQUEST, data, "WS request")


def encode_ws_request(
    channel: str,
    event: str,
    payload: Sequence[str | int] | None = None,
    *,
    time_s: int,
    request_id: int | None = None,
    signer: GateSigner | None = None,
) -> bytes:
    """A subscribe / unsubscribe request; with ``signer`` it carries the signed ``auth`` object
    (private channels; futures private payloads start with the user id).

    The frame contains the API key and a signature when signed: never log it.
    """
    auth = GateWsAuth(**signer.ws_auth(channel, event, time_s)) if signer is not None else None
    return _JSON.encode(
        GateWsRequest(
            time=time_s,
            channel=channel,
            event=event,
            id=request_id,
            payload=None if payload is None else list(payload),
            auth=auth,
        )
    )


def encode_ws_ping(market: str, *, time_s: int) -> bytes:
    """App-level ping: ``{"time":..,"channel":"spot.ping"}`` (``market`` spot / futures)."""
    return _JSON.encode(GateWsRequest(time=time_s, channel=f"{market}.ping"))


def encode_ws_ack(channel: str, event: str, *, time_s: int, request_id: int | None = None) -> bytes:
    """Server side: success reply to subscribe / unsubscribe."""
    frame: dict[str, Any] = {"time": time_s, "time_ms": time_s * 1000, "channel": channel, "event": event}
    if request_id is not None:
        frame["id"] = request_id
    frame["result"] = {"status": "success"}
    return _JSON.encode(frame)


def encode_ws_error(
    channel: str, event: str, code: int, message: str, *, time_s: int, request_id: int | None = None
) -> bytes:
    """Server side: error reply (``code`` 1 bad body, 2 bad argument, 3 server, 4 auth)."""
    frame: dict[str, Any] = {"time": time_s, "time_ms": time_s * 1000, "channel": channel, "event": event}
    if request_id is not None:
        frame["id"] = request_id
    frame["error"] = {"code": code, "message": message}
    frame["result"] = {"status": "fail"}
    return _JSON.encode(frame)


def encode_ws_update(channel: str, result: Any, *, time_ms: int) -> bytes:
    """Server side: an ``update`` push; ``result`` any msgspec-encodable value."""
    return _JSON.encode(
        {"time": time_ms // 1000, "time_ms": time_ms, "channel": channel, "event": "update", "result": result}
    )
