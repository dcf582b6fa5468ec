"""MEXC spot v3 wire codecs: WS control frames, protobuf pushes -> domain events, REST payloads.

Everything a connector or the loopback simulator reads or writes on the MEXC wire, with no I/O:

* WebSocket text frames (JSON): ``SUBSCRIPTION`` / ``UNSUBSCRIPTION`` / ``PING`` requests (also
  the lower-case ``ping`` ccxt sends), acks ``{"id":0,"code":0,"msg":...}``, ``PONG``, and the
  plain-text ``Invalid listen key`` [MX-DOC][CCXT]. Channel names are built and parsed here.
* WebSocket binary frames: :func:`decode_push` (the protobuf codec lives in
  :mod:`cexarb.venues.mexc.proto`), and conversions of its bodies to our events.
* REST bodies: ``/api/v3/depth``, ``exchangeInfo`` (-> :class:`~cexarb.model.Instrument`),
  orders (place / cancel / query / open / all), ``account``, ``myTrades``, ``tradeFee``,
  ``time``, ``userDataStream``, public trades / tickers / klines, and the error body
  ``{"code", "msg"}``.
* Outgoing order parameters as exact decimal strings from ticks and lots.

Source of every field: ``shared/venues/PROTOCOLS.md`` §1 ([MX-DOC], [MX-PROTO], [CCXT]). JSON
types vary between the docs, the live API and ccxt's fixtures (``lastUpdateId``, ``time``,
``orderId`` as number or string), so numeric fields are decoded with ``strict=False`` (numeric
strings accepted) and ids as ``int | str`` normalised to ``str``.

Every decoder raises :class:`MexcCodecError` (a ValueError) naming the payload kind and the JSON
path or protobuf field that was wrong; decoded payload text is never echoed (it may be large).
"""

from __future__ import annotations

import math
from typing import Any, Final, Literal, TypeVar

import msgspec

from cexarb.model import (
    Balance,
    BookTicker,
    Fill,
    Instrument,
    InstrumentKind,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    Trade,
    split_fee,
)
from cexarb.venues.base import OrderRequest, OrderUpdate
from cexarb.venues.mexc import proto
from cexarb.venues.mexc.proto import ProtoDecodeError, PushData

__all__ = [
    "BODY_TYPES",
    "VENUE",
    "InvalidListenKey",
    "MexcAccount",
    "MexcAggTrade",
    "MexcBalance",
    "MexcChannel",
    "MexcCodecError",
    "MexcDepth",
    "MexcDepthUpdate",
    "MexcError",
    "MexcExchangeInfo",
    "MexcKline",
    "MexcListenKey",
    "MexcMyTrade",
    "MexcOrder",
    "MexcOrderAck",
    "MexcServerTime",
    "MexcSymbol",
    "MexcTicker",
    "MexcTrade",
    "MexcTradeFee",
    "MexcWsAck",
    "MexcWsRequest",
    "balance_from_push",
    "body_type",
    "book_ticker_from_push",
    "channel_aggre_book_ticker",
    "channel_aggre_deals",
    "channel_aggre_depth",
    "decode_account",
    "decode_agg_trades",
    "decode_depth",
    "decode_depth_push",
    "decode_empty",
    "decode_error",
    "decode_exchange_info",
    "decode_klines",
    "decode_listen_key",
    "decode_my_trades",
    "decode_order",
    "decode_order_ack",
    "decode_orders",
    "decode_push",
    "decode_server_time",
    "decode_symbol",
    "decode_text_frame",
    "decode_ticker",
    "decode_tickers",
    "decode_trade_fee",
    "decode_trades",
    "decode_ws_request",
    "depth_update_from_push",
    "encode_ack",
    "encode_ping",
    "encode_pong",
    "encode_subscribe",
    "encode_unsubscribe",
    "fill_from_push",
    "order_params",
    "order_status",
    "order_update_from_push",
    "parse_channel",
    "symbol_to_instrument",
    "trades_from_push",
]

VENUE: Final = "mexc-spot"
INVALID_LISTEN_KEY: Final = "Invalid listen key"

T = TypeVar("T")


class MexcCodecError(ValueError):
    """A MEXC payload that does not decode; the message names the payload kind and the path."""


def _decode(decoder: msgspec.json.Decoder[T], data: bytes | str, what: str) -> T:
    try:
        return decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # ValidationError is a DecodeError
        raise MexcCodecError(f"MEXC {what}: {exc} ({len(data)} bytes)") from None


def _id(value: int | str | None) -> str:
    return "" if value is None else str(value)


# =============================================================================================
# WebSocket: channels

ChannelKind = Literal[
    "aggre.depth",
    "aggre.deals",
    "aggre.bookTicker",
    "limit.depth",
    "bookTicker.batch",
    "kline",
    "increase.depth",
    "private.orders",
    "private.deals",
    "private.account",
]


class MexcChannel(msgspec.Struct, frozen=True, kw_only=True):
    """A parsed channel name.

    ``interval`` is ``"100ms"``/``"10ms"`` for aggre channels, the kline interval (``Min15``)
    for kline; ``levels`` the depth of ``limit.depth`` (5/10/20).
    """

    kind: ChannelKind
    symbol: str = ""
    interval: str = ""
    levels: int = 0

    @property
    def name(self) -> str:
        """The channel string as sent on the wire."""
        if self.kind.startswith("private."):
            return f"spot@{self.kind}.v3.api.pb"
        if self.kind == "limit.depth":
            return f"spot@public.limit.depth.v3.api.pb@{self.symbol}@{self.levels}"
        if self.kind == "kline":
            return f"spot@public.kline.v3.api.pb@{self.symbol}@{self.interval}"
        if self.kind in ("bookTicker.batch", "increase.depth"):
            return f"spot@public.{self.kind}.v3.api.pb@{self.symbol}"
        return f"spot@public.{self.kind}.v3.api.pb@{self.interval}@{self.symbol}"


_AGGRE_INTERVALS = ("100ms", "10ms")
_LIMIT_LEVELS = (5, 10, 20)


def channel_aggre_depth(symbol: str, interval: str = "100ms") -> str:
    """``spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT`` (diff depth; the one a book needs)."""
    return MexcChannel(kind="aggre.depth", symbol=symbol, interval=interval).name


def channel_aggre_deals(symbol: str, interval: str = "100ms") -> str:
    """``spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT`` (public trades)."""
    return MexcChannel(kind="aggre.deals", symbol=symbol, interval=interval).name


def channel_aggre_book_ticker(symbol: str, interval: str = "100ms") -> str:
    """``spot@public.aggre.bookTicker.v3.api.pb@100ms@BTCUSDT`` (best bid/ask)."""
    return MexcChannel(kind="aggre.bookTicker", symbol=symbol, interval=interval).name


#: the protobuf body each channel kind carries [MX-DOC][MX-PROTO]
BODY_TYPES: Final[dict[str, type[msgspec.Struct]]] = {
    "aggre.depth": proto.PublicAggreDepths,
    "aggre.deals": proto.PublicAggreDeals,
    "aggre.bookTicker": proto.PublicAggreBookTicker,
    "limit.depth": proto.PublicLimitDepths,
    "bookTicker.batch": proto.PublicBookTickerBatch,
    "kline": proto.PublicSpotKline,
    "increase.depth": proto.PublicIncreaseDepths,
    "private.orders": proto.PrivateOrder,
    "private.deals": proto.PrivateDeal,
    "private.account": proto.PrivateAccount,
}


def body_type(channel: str) -> type[msgspec.Struct]:
    """The protobuf body class pushed on ``channel`` (what the simulator must encode).

    Raises:
        MexcCodecError: an unknown or malformed channel.
    """
    return BODY_TYPES[parse_channel(channel).kind]


def parse_channel(channel: str) -> MexcChannel:
    """Parse a channel name (what the simulator does with a ``SUBSCRIPTION`` param).

    Raises:
        MexcCodecError: unknown channel, or a bad interval / level / symbol, naming it.
    """
    parts = channel.split("@")
    if len(parts) < 2 or parts[0] != "spot":
        raise MexcCodecError(f"MEXC channel {channel!r}: expected 'spot@...'")
    topic = parts[1]
    if topic.startswith("private.") and topic.endswith(".v3.api.pb") and len(parts) == 2:
        kind = topic[: -len(".v3.api.pb")]
        if kind in ("private.orders", "private.deals", "private.account"):
            return MexcChannel(kind=kind)  # type: ignore[arg-type]
        raise MexcCodecError(f"MEXC channel {channel!r}: unknown private channel {kind!r}")
    if not (topic.startswith("public.") and topic.endswith(".v3.api.pb")):
        raise MexcCodecError(f"MEXC channel {channel!r}: not a protobuf (.v3.api.pb) channel")
    kind = topic[len("public.") : -len(".v3.api.pb")]
    args = parts[2:]

    def symbol_ok(sym: str) -> str:
        if not sym or not sym.isalnum() or sym.upper() != sym:
            raise MexcCodecError(f"MEXC channel {channel!r}: symbol {sym!r} must be upper-case alphanumeric")
        return sym

    if kind in ("aggre.depth", "aggre.deals", "aggre.bookTicker"):
        if len(args) != 2 or args[0] not in _AGGRE_INTERVALS:
            raise MexcCodecError(f"MEXC channel {channel!r}: expected @(100ms|10ms)@SYMBOL")
        return MexcChannel(kind=kind, interval=args[0], symbol=symbol_ok(args[1]))  # type: ignore[arg-type]
    if kind == "limit.depth":
        if len(args) != 2 or not args[1].isdigit() or int(args[1]) not in _LIMIT_LEVELS:
            raise MexcCodecError(f"MEXC channel {channel!r}: expected @SYMBOL@(5|10|20)")
        return MexcChannel(kind="limit.depth", symbol=symbol_ok(args[0]), levels=int(args[1]))
    if kind == "kline":
        if len(args) != 2 or not args[1]:
            raise MexcCodecError(f"MEXC channel {channel!r}: expected @SYMBOL@INTERVAL")
        return MexcChannel(kind="kline", symbol=symbol_ok(args[0]), interval=args[1])
    if kind in ("bookTicker.batch", "increase.depth"):
        if len(args) != 1:
            raise MexcCodecError(f"MEXC channel {channel!r}: expected @SYMBOL")
        return MexcChannel(kind=kind, symbol=symbol_ok(args[0]))  # type: ignore[arg-type]
    raise MexcCodecError(f"MEXC channel {channel!r}: unknown public channel {kind!r}")


# =============================================================================================
# WebSocket: JSON control frames


class MexcWsRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A client request: ``method`` SUBSCRIPTION / UNSUBSCRIPTION / PING (ccxt sends ``ping``)."""

    method: str
    params: list[str] = []
    id: int | None = None

    @property
    def verb(self) -> str:
        """``method`` upper-cased (the server treats ``ping`` as ``PING``)."""
        return self.method.upper()


class MexcWsAck(msgspec.Struct, frozen=True, kw_only=True):
    """Server answer to a request: ``msg`` is the channel(s) for a subscription, ``PONG`` for a
    ping; ``code`` 0 = success."""

    id: int = 0
    code: int = 0
    msg: str = ""

    @property
    def is_pong(self) -> bool:
        return self.msg == "PONG"


class InvalidListenKey(msgspec.Struct, frozen=True):
    """The server's plain-text ``Invalid listen key`` frame (user-data stream with a bad key)."""


_WS_REQUEST = msgspec.json.Decoder(MexcWsRequest)
_WS_ACK = msgspec.json.Decoder(MexcWsAck, strict=False)
_ENCODER = msgspec.json.Encoder()


def encode_subscribe(channels: list[str], request_id: int | None = None) -> bytes:
    """``{"method":"SUBSCRIPTION","params":[...]}`` (≤ 30 channels per connection [MX-DOC])."""
    return _ENCODER.encode(MexcWsRequest(method="SUBSCRIPTION", params=list(channels), id=request_id))


def encode_unsubscribe(channels: list[str], request_id: int | None = None) -> bytes:
    return _ENCODER.encode(MexcWsRequest(method="UNSUBSCRIPTION", params=list(channels), id=request_id))


def encode_ping() -> bytes:
    return b'{"method":"PING"}'


def encode_ack(msg: str, *, code: int = 0, request_id: int = 0) -> bytes:
    """Server side: ``{"id":0,"code":0,"msg":"<channel>"}``."""
    return _ENCODER.encode(MexcWsAck(id=request_id, code=code, msg=msg))


def encode_pong(request_id: int = 0) -> bytes:
    return encode_ack("PONG", request_id=request_id)


def decode_ws_request(data: bytes | str) -> MexcWsRequest:
    """Server side: a client's JSON request.

    Raises:
        MexcCodecError: not JSON, not an object with a string ``method``, or an unknown method.
    """
    request = _decode(_WS_REQUEST, data, "WS request")
    if request.verb not in ("SUBSCRIPTION", "UNSUBSCRIPTION", "PING"):
        raise MexcCodecError(f"MEXC WS request: unknown method {request.method[:40]!r}")
    return request


def decode_text_frame(data: bytes | str) -> MexcWsAck | InvalidListenKey:
    """Client side: a text frame (acks, ``PONG``, ``Invalid listen key``).

    Raises:
        MexcCodecError: anything else, naming the problem.
    """
    text = data.decode("utf-8", "replace") if isinstance(data, (bytes, bytearray)) else data
    if text.strip() == INVALID_LISTEN_KEY:
        return InvalidListenKey()
    return _decode(_WS_ACK, data, "WS text frame")


def decode_push(data: bytes | bytearray | memoryview) -> PushData:
    """Client side: a binary frame (``PushDataV3ApiWrapper``).

    Raises:
        MexcCodecError: malformed protobuf, naming the field and byte offset.
    """
    try:
        return proto.decode_push(data)
    except ProtoDecodeError as exc:
        raise MexcCodecError(f"MEXC push: {exc}") from None


# =============================================================================================
# Pushes -> domain events


def _num(value: str, what: str) -> float:
    """A decimal string MEXC sent, as float; "" -> 0.0; anything else non-numeric raises."""
    if not value:
        return 0.0
    try:
        out = float(value)
    except ValueError:
        raise MexcCodecError(f"MEXC {what}: not a number: {value[:40]!r}") from None
    if not math.isfinite(out):
        raise MexcCodecError(f"MEXC {what}: not finite: {value[:40]!r}")
    return out


def _version(value: str, what: str) -> int:
    if not value.isdigit():
        raise MexcCodecError(f"MEXC {what}: version must be a non-negative integer string, got {value[:40]!r}")
    return int(value)


def _levels(levels: list[proto.DepthLevel], what: str) -> list[tuple[float, float]]:
    try:
        return [(float(lvl.price), float(lvl.quantity)) for lvl in levels]
    except ValueError:
        for lvl in levels:
            _num(lvl.price, f"{what} price")
            _num(lvl.quantity, f"{what} quantity")
        raise  # pragma: no cover - _num raised already


class MexcDepthUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """A diff-depth push (body 313) ready for the book: absolute quantities, 0 deletes.

    ``from_version``..``to_version`` is the range of book versions it covers (PROTOCOLS.md §1.6).
    ``ts_ms`` is the wrapper's ``sendTime`` (or ``createTime``; 0 when neither is set).
    """

    symbol: str
    from_version: int
    to_version: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]
    ts_ms: int = 0


def _push_ts_ms(push: PushData) -> int:
    return push.send_time or push.create_time or 0


def _push_symbol(push: PushData) -> str:
    if push.symbol:
        return push.symbol
    # the channel ends with @SYMBOL for every public channel except limit.depth (@SYMBOL@N)
    try:
        return parse_channel(push.channel).symbol
    except MexcCodecError:
        return ""


def depth_update_from_push(push: PushData) -> MexcDepthUpdate:
    """Body 313 (or 302: ``version`` used as both ends) as a :class:`MexcDepthUpdate`.

    Raises:
        MexcCodecError: another body, a non-integer version, ``from_version > to_version``, or a
            non-numeric price/quantity.
    """
    body = push.body
    if isinstance(body, proto.PublicAggreDepths):
        first = _version(body.from_version, "aggre depth fromVersion")
        last = _version(body.to_version, "aggre depth toVersion")
    elif isinstance(body, proto.PublicIncreaseDepths):
        first = last = _version(body.version, "increase depth version")
    else:
        raise MexcCodecError(f"MEXC push on {push.channel!r}: expected a depth body, got {type(body).__name__}")
    if first > last:
        raise MexcCodecError(f"MEXC aggre depth: fromVersion {first} > toVersion {last}")
    return MexcDepthUpdate(
        symbol=_push_symbol(push),
        from_version=first,
        to_version=last,
        bids=_levels(body.bids, "depth bid"),
        asks=_levels(body.asks, "depth ask"),
        ts_ms=_push_ts_ms(push),
    )


def decode_depth_push(data: bytes) -> MexcDepthUpdate:
    """A binary aggre-depth frame straight to a :class:`MexcDepthUpdate` (the book's hot path).

    Uses :func:`proto.decode_aggre_depth` (no intermediate Structs) and falls back to
    :func:`decode_push` + :func:`depth_update_from_push` for anything unusual, so the result
    and the errors are the same as that pair's.

    Raises:
        MexcCodecError: malformed frame, another body, or bad versions / numbers.
    """
    fast = proto.decode_aggre_depth(data) if isinstance(data, bytes) else None
    if fast is None or fast.from_version > fast.to_version:
        return depth_update_from_push(decode_push(data))
    symbol = fast.symbol
    if not symbol:
        try:
            symbol = parse_channel(fast.channel).symbol
        except MexcCodecError:
            symbol = ""
    return MexcDepthUpdate(
        symbol=symbol,
        from_version=fast.from_version,
        to_version=fast.to_version,
        bids=fast.bids,
        asks=fast.asks,
        ts_ms=fast.send_time or fast.create_time or 0,
    )


def trades_from_push(push: PushData, instrument_key: str | None = None) -> list[Trade]:
    """Body 314 (or 301) as public trades; ``tradeType`` 1 = taker bought, 2 = taker sold."""
    body = push.body
    if not isinstance(body, (proto.PublicAggreDeals, proto.PublicDeals)):
        raise MexcCodecError(f"MEXC push on {push.channel!r}: expected a deals body, got {type(body).__name__}")
    key = instrument_key or f"{VENUE}:{_push_symbol(push)}"
    out = []
    for deal in body.deals:
        if deal.trade_type not in (1, 2):
            raise MexcCodecError(f"MEXC deal: tradeType must be 1 (buy) or 2 (sell), got {deal.trade_type}")
        trade_id = getattr(deal, "trade_id", "")
        out.append(
            Trade(
                instrument_key=key,
                price=_num(deal.price, "deal price"),
                qty=_num(deal.quantity, "deal quantity"),
                taker_side=Side.BUY if deal.trade_type == 1 else Side.SELL,
                ts_ns=deal.time * 1_000_000,
                trade_id=int(trade_id) if trade_id.isdigit() else 0,
            )
        )
    return out


def book_ticker_from_push(push: PushData, instrument_key: str | None = None) -> BookTicker:
    """Body 315 (or 305) as a :class:`~cexarb.model.BookTicker`; ``update_id`` = ``version``."""
    body = push.body
    if not isinstance(body, (proto.PublicAggreBookTicker, proto.PublicBookTicker)):
        raise MexcCodecError(f"MEXC push on {push.channel!r}: expected a book ticker body, got {type(body).__name__}")
    version = getattr(body, "version", "")
    return BookTicker(
        instrument_key=instrument_key or f"{VENUE}:{_push_symbol(push)}",
        bid_price=_num(body.bid_price, "bidPrice"),
        bid_qty=_num(body.bid_quantity, "bidQuantity"),
        ask_price=_num(body.ask_price, "askPrice"),
        ask_qty=_num(body.ask_quantity, "askQuantity"),
        ts_ns=_push_ts_ms(push) * 1_000_000,
        update_id=int(version) if version.isdigit() else 0,
    )


#: WS private order ``status`` -> ours [MX-PROTO PrivateOrdersV3Api]
_WS_ORDER_STATUS: Final = {
    1: OrderStatus.NEW,
    2: OrderStatus.FILLED,
    3: OrderStatus.PARTIALLY_FILLED,
    4: OrderStatus.CANCELED,
    5: OrderStatus.CANCELED,  # partially cancelled: cancelled after a partial fill
}

#: REST order ``status`` -> ours [MX-DOC]
_REST_ORDER_STATUS: Final = {
    "NEW": OrderStatus.NEW,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "PARTIALLY_CANCELED": OrderStatus.CANCELED,
}


def order_status(status: str | int) -> OrderStatus:
    """REST (``"PARTIALLY_FILLED"``) or WS (``3``) order status as ours.

    Raises:
        MexcCodecError: an unknown status, naming it.
    """
    table: dict[Any, OrderStatus] = _WS_ORDER_STATUS if isinstance(status, int) else _REST_ORDER_STATUS
    out = table.get(status)
    if out is None:
        raise MexcCodecError(f"MEXC order status {status!r} is unknown")
    return out


def order_update_from_push(push: PushData, instrument_key: str | None = None) -> OrderUpdate:
    """Body 304 (private order) as an :class:`~cexarb.venues.base.OrderUpdate`.

    ``filled_qty`` = ``cumulativeQuantity``, ``avg_fill_price`` = ``avgPrice``; ``ts_ns`` from
    the wrapper's send time, else the order's create time.
    """
    body = push.body
    if not isinstance(body, proto.PrivateOrder):
        raise MexcCodecError(f"MEXC push on {push.channel!r}: expected a private order body, got {type(body).__name__}")
    ts_ms = _push_ts_ms(push) or body.create_time
    return OrderUpdate(
        client_order_id=body.client_id,
        venue_order_id=body.id,
        instrument_key=instrument_key or f"{VENUE}:{push.symbol or ''}",
        status=order_status(body.status),
        filled_qty=_num(body.cumulative_quantity, "order cumulativeQuantity"),
        avg_fill_price=_num(body.avg_price, "order avgPrice"),
        ts_ns=ts_ms * 1_000_000,
    )


def fill_from_push(push: PushData, instrument: Instrument) -> Fill:
    """Body 306 (private deal) as a :class:`~cexarb.model.Fill`.

    ``fee`` is converted to quote currency: as is when ``feeCurrency`` is the quote asset,
    times the fill price when it is the base asset (and then also as ``fee_base``, base units:
    the account received ``quantity - fee_base``); a fee paid in a third asset (MX) is kept as
    ``fee_asset`` / ``fee_other`` and is 0.0 in ``fee`` (:func:`~cexarb.model.split_fee`).
    """
    body = push.body
    if not isinstance(body, proto.PrivateDeal):
        raise MexcCodecError(f"MEXC push on {push.channel!r}: expected a private deal body, got {type(body).__name__}")
    if body.trade_type not in (1, 2):
        raise MexcCodecError(f"MEXC private deal: tradeType must be 1 (buy) or 2 (sell), got {body.trade_type}")
    price = _num(body.price, "deal price")
    fee, fee_base, fee_asset, fee_other = split_fee(_num(body.fee_amount, "deal feeAmount"), body.fee_currency,
                                                    price, instrument)
    return Fill(
        client_order_id=body.client_order_id,
        venue_order_id=body.order_id,
        instrument_key=instrument.key,
        side=Side.BUY if body.trade_type == 1 else Side.SELL,
        price=price,
        qty=_num(body.quantity, "deal quantity"),
        fee=fee,
        is_maker=body.is_maker,
        ts_ns=(body.time or _push_ts_ms(push)) * 1_000_000,
        fill_id=body.trade_id,
        fee_base=fee_base,
        fee_asset=fee_asset,
        fee_other=fee_other,
    )


def balance_from_push(push: PushData) -> Balance:
    """Body 307 (account change) as a :class:`~cexarb.model.Balance` (available / frozen)."""
    body = push.body
    if not isinstance(body, proto.PrivateAccount):
        raise MexcCodecError(f"MEXC push on {push.channel!r}: expected an account body, got {type(body).__name__}")
    return Balance(
        asset=body.vcoin_name,
        free=_num(body.balance_amount, "account balanceAmount"),
        locked=_num(body.frozen_amount, "account frozenAmount"),
    )


# =============================================================================================
# REST payloads


class MexcError(msgspec.Struct, frozen=True, kw_only=True):
    """Error body ``{"code": int, "msg": str}`` (codes in PROTOCOLS.md §1.7)."""

    code: int
    msg: str = ""


class MexcServerTime(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """``GET /api/v3/time``: ``serverTime`` ms."""

    server_time: int


class MexcDepth(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """``GET /api/v3/depth``: snapshot with its version ``lastUpdateId``; levels ``[price, qty]``."""

    last_update_id: int
    bids: list[tuple[float, float]] = []
    asks: list[tuple[float, float]] = []


class MexcSymbol(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One ``exchangeInfo`` symbol (only the fields we read).

    ``base_size_precision`` is in practice the minimum base quantity and
    ``quote_amount_precision`` the minimum order notional (PROTOCOLS.md §1.2, as ccxt reads
    them); ``maker/taker_commission`` are fractions; ``status`` 1 online, 2 paused, 3 offline.
    """

    symbol: str
    status: int = 1
    base_asset: str
    quote_asset: str
    base_asset_precision: int
    quote_asset_precision: int
    base_size_precision: float = 0.0
    quote_amount_precision: float = 0.0
    quote_amount_precision_market: float = 0.0
    max_quote_amount: float = 0.0
    maker_commission: float = 0.0
    taker_commission: float = 0.0
    order_types: list[str] = []
    is_spot_trading_allowed: bool = True
    trade_side_type: int = 1

    @property
    def is_tradable(self) -> bool:
        """Online and spot trading allowed (ccxt's ``active``)."""
        return self.status == 1 and self.is_spot_trading_allowed


class MexcExchangeInfo(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """``GET /api/v3/exchangeInfo``."""

    timezone: str = ""
    server_time: int = 0
    symbols: list[MexcSymbol] = []


class MexcOrderAck(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """``POST /api/v3/order`` reply (``orderId`` is a string on MEXC)."""

    symbol: str
    order_id: int | str
    price: float | None = None
    orig_qty: float | None = None
    type: str = ""
    side: str = ""
    transact_time: int = 0

    @property
    def venue_order_id(self) -> str:
        return _id(self.order_id)


class MexcOrder(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """An order as ``GET /api/v3/order``, ``DELETE /api/v3/order``, ``openOrders`` and
    ``allOrders`` return it (fields we read; quantities base units, amounts quote)."""

    symbol: str
    order_id: int | str
    client_order_id: str | None = None
    orig_client_order_id: str | None = None
    price: float | None = None
    orig_qty: float | None = None
    executed_qty: float = 0.0
    cummulative_quote_qty: float = 0.0
    status: str
    type: str = ""
    side: str = ""
    time: int | None = None
    update_time: int | None = None
    orig_quote_order_qty: float | None = None

    @property
    def venue_order_id(self) -> str:
        return _id(self.order_id)

    @property
    def avg_fill_price(self) -> float:
        """``cummulativeQuoteQty / executedQty`` (0.0 before any fill)."""
        return self.cummulative_quote_qty / self.executed_qty if self.executed_qty > 0 else 0.0

    def to_update(self, instrument_key: str | None = None) -> OrderUpdate:
        """As an :class:`OrderUpdate` (``client_order_id`` from ``clientOrderId``, or the
        original one on a cancel reply)."""
        return OrderUpdate(
            client_order_id=self.orig_client_order_id or self.client_order_id or "",
            venue_order_id=self.venue_order_id,
            instrument_key=instrument_key or f"{VENUE}:{self.symbol}",
            status=order_status(self.status),
            filled_qty=self.executed_qty,
            avg_fill_price=self.avg_fill_price,
            ts_ns=(self.update_time or self.time or 0) * 1_000_000,
        )


class MexcBalance(msgspec.Struct, frozen=True, kw_only=True):
    asset: str
    free: float = 0.0
    locked: float = 0.0

    def to_balance(self) -> Balance:
        return Balance(asset=self.asset, free=self.free, locked=self.locked)


class MexcAccount(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """``GET /api/v3/account``."""

    can_trade: bool = True
    account_type: str = ""
    balances: list[MexcBalance] = []


class MexcMyTrade(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One ``GET /api/v3/myTrades`` row; ``commission`` in ``commissionAsset``; ``time`` ms."""

    symbol: str
    id: int | str
    order_id: int | str
    price: float
    qty: float
    quote_qty: float = 0.0
    commission: float = 0.0
    commission_asset: str = ""
    time: int = 0
    is_buyer: bool
    is_maker: bool
    client_order_id: str | None = None

    def to_fill(self, instrument: Instrument) -> Fill:
        """As a :class:`Fill`, commission converted to quote as in :func:`fill_from_push`."""
        fee, fee_base, fee_asset, fee_other = split_fee(self.commission, self.commission_asset, self.price, instrument)
        return Fill(
            client_order_id=self.client_order_id or "",
            venue_order_id=_id(self.order_id),
            instrument_key=instrument.key,
            side=Side.BUY if self.is_buyer else Side.SELL,
            price=self.price,
            qty=self.qty,
            fee=fee,
            is_maker=self.is_maker,
            ts_ns=self.time * 1_000_000,
            fill_id=_id(self.id),
            fee_base=fee_base,
            fee_asset=fee_asset,
            fee_other=fee_other,
        )


class MexcTradeFeeRates(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    maker_commission: float
    taker_commission: float


class MexcTradeFee(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /api/v3/tradeFee``: fractions."""

    data: MexcTradeFeeRates
    code: int = 0
    msg: str = ""


class MexcListenKey(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """``/api/v3/userDataStream`` bodies: one key (POST/PUT/DELETE) or a list (GET)."""

    listen_key: str | list[str]


class MexcTrade(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """``GET /api/v3/trades`` row (``isBuyerMaker`` true = the taker sold)."""

    id: int | str | None = None
    price: float
    qty: float
    quote_qty: float = 0.0
    time: int
    is_buyer_maker: bool


class MexcAggTrade(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /api/v3/aggTrades`` row: ``p`` price, ``q`` qty, ``T`` ms, ``m`` buyer is maker."""

    p: float
    q: float
    T: int
    m: bool
    a: int | str | None = None


class MexcTicker(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """``ticker/bookTicker`` and ``ticker/24hr`` (both carry the best bid/ask)."""

    symbol: str
    bid_price: float | None = None
    bid_qty: float | None = None
    ask_price: float | None = None
    ask_qty: float | None = None
    last_price: float | None = None


class MexcKline(msgspec.Struct, frozen=True, array_like=True):
    """``GET /api/v3/klines`` row: open time ms, OHLC, volume, close time ms, quote volume."""

    open_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    close_time: int
    quote_volume: float


_ERROR = msgspec.json.Decoder(MexcError, strict=False)
_TIME = msgspec.json.Decoder(MexcServerTime, strict=False)
_DEPTH = msgspec.json.Decoder(MexcDepth, strict=False)
_EXCHANGE_INFO = msgspec.json.Decoder(MexcExchangeInfo, strict=False)
_SYMBOL = msgspec.json.Decoder(MexcSymbol, strict=False)
_ORDER_ACK = msgspec.json.Decoder(MexcOrderAck, strict=False)
_ORDER = msgspec.json.Decoder(MexcOrder, strict=False)
_ORDERS = msgspec.json.Decoder(list[MexcOrder], strict=False)
_ACCOUNT = msgspec.json.Decoder(MexcAccount, strict=False)
_MY_TRADES = msgspec.json.Decoder(list[MexcMyTrade], strict=False)
_TRADE_FEE = msgspec.json.Decoder(MexcTradeFee, strict=False)
_LISTEN_KEY = msgspec.json.Decoder(MexcListenKey, strict=False)
_TRADES = msgspec.json.Decoder(list[MexcTrade], strict=False)
_AGG_TRADES = msgspec.json.Decoder(list[MexcAggTrade], strict=False)
_TICKER = msgspec.json.Decoder(MexcTicker, strict=False)
_TICKERS = msgspec.json.Decoder(list[MexcTicker], strict=False)
_KLINES = msgspec.json.Decoder(list[MexcKline], strict=False)
_EMPTY = msgspec.json.Decoder(dict[str, Any], strict=False)


def decode_error(data: bytes | str) -> MexcError:
    """An error body ``{"code", "msg"}``."""
    return _decode(_ERROR, data, "error body")


def decode_server_time(data: bytes | str) -> MexcServerTime:
    return _decode(_TIME, data, "GET /api/v3/time")


def decode_depth(data: bytes | str) -> MexcDepth:
    """``GET /api/v3/depth`` (``lastUpdateId`` as number or string)."""
    return _decode(_DEPTH, data, "GET /api/v3/depth")


def decode_exchange_info(data: bytes | str) -> MexcExchangeInfo:
    return _decode(_EXCHANGE_INFO, data, "GET /api/v3/exchangeInfo")


def decode_symbol(data: bytes | str) -> MexcSymbol:
    """One ``exchangeInfo`` symbol object on its own (the docs' example is one)."""
    return _decode(_SYMBOL, data, "exchangeInfo symbol")


def decode_order_ack(data: bytes | str) -> MexcOrderAck:
    return _decode(_ORDER_ACK, data, "POST /api/v3/order")


def decode_order(data: bytes | str) -> MexcOrder:
    """``GET`` / ``DELETE /api/v3/order``."""
    return _decode(_ORDER, data, "/api/v3/order")


def decode_orders(data: bytes | str) -> list[MexcOrder]:
    """``openOrders``, ``allOrders``, ``DELETE openOrders``."""
    return _decode(_ORDERS, data, "order list")


def decode_account(data: bytes | str) -> MexcAccount:
    return _decode(_ACCOUNT, data, "GET /api/v3/account")


def decode_my_trades(data: bytes | str) -> list[MexcMyTrade]:
    return _decode(_MY_TRADES, data, "GET /api/v3/myTrades")


def decode_trade_fee(data: bytes | str) -> MexcTradeFee:
    return _decode(_TRADE_FEE, data, "GET /api/v3/tradeFee")


def decode_listen_key(data: bytes | str) -> MexcListenKey:
    return _decode(_LISTEN_KEY, data, "/api/v3/userDataStream")


def decode_trades(data: bytes | str) -> list[MexcTrade]:
    return _decode(_TRADES, data, "GET /api/v3/trades")


def decode_agg_trades(data: bytes | str) -> list[MexcAggTrade]:
    return _decode(_AGG_TRADES, data, "GET /api/v3/aggTrades")


def decode_ticker(data: bytes | str) -> MexcTicker:
    """``ticker/bookTicker?symbol=`` or ``ticker/24hr?symbol=``."""
    return _decode(_TICKER, data, "ticker")


def decode_tickers(data: bytes | str) -> list[MexcTicker]:
    return _decode(_TICKERS, data, "ticker list")


def decode_klines(data: bytes | str) -> list[MexcKline]:
    return _decode(_KLINES, data, "GET /api/v3/klines")


def decode_empty(data: bytes | str) -> dict[str, Any]:
    """``/api/v3/ping`` and ``/api/v3/order/test``: ``{}``."""
    return _decode(_EMPTY, data, "empty object")


def symbol_to_instrument(symbol: MexcSymbol) -> Instrument:
    """An ``exchangeInfo`` symbol as an :class:`Instrument`, the way ccxt derives it [CCXT]:

    tick = 10^-quoteAssetPrecision, lot = 10^-baseAssetPrecision, min notional =
    quoteAmountPrecision, maker/taker fee = makerCommission/takerCommission (fractions). The
    minimum base quantity (``baseSizePrecision``) has no Instrument field; read it from the
    symbol.

    Raises:
        MexcCodecError: a negative precision or invalid values, naming the symbol and field.
    """
    for name in ("base_asset_precision", "quote_asset_precision"):
        if getattr(symbol, name) < 0:
            raise MexcCodecError(f"MEXC symbol {symbol.symbol}: {name} must be >= 0, got {getattr(symbol, name)}")
    try:
        return Instrument(
            venue=VENUE,
            symbol=symbol.symbol,
            kind=InstrumentKind.SPOT,
            base=symbol.base_asset,
            quote=symbol.quote_asset,
            tick_size=10.0**-symbol.quote_asset_precision,
            lot_size=10.0**-symbol.base_asset_precision,
            min_notional=symbol.quote_amount_precision,
            maker_fee=symbol.maker_commission,
            taker_fee=symbol.taker_commission,
        )
    except ValueError as exc:
        raise MexcCodecError(f"MEXC symbol {symbol.symbol}: {exc}") from None


# =============================================================================================
# Outgoing order parameters


def order_params(request: OrderRequest, *, quote_order_qty: str | None = None) -> list[tuple[str, str]]:
    """``POST /api/v3/order`` parameters (unsigned, in ccxt's order) for ``request``.

    Mapping [MX-DOC] (PROTOCOLS.md §1.2): LIMIT + GTC -> ``LIMIT``; + POST_ONLY ->
    ``LIMIT_MAKER``; + IOC -> ``IMMEDIATE_OR_CANCEL``; MARKET -> ``MARKET`` with ``quantity``
    (sell, base units) or ``quoteOrderQty`` (buy spends quote; pass ``quote_order_qty``, a
    decimal string in quote units). Price (quote units) and quantity (base units) are the
    request's exact decimal strings (formatted once from ticks and lots). ``newClientOrderId``
    is the client order id. :class:`~cexarb.venues.mexc.spot.MexcSpot` never sends a MARKET buy:
    it turns one into an IOC limit for the exact base quantity
    (:meth:`~cexarb.venues.mexc.spot.MexcSpot.market_buy_as_ioc_limit`) before calling this.

    Raises:
        ValueError: reduce-only (no such thing on spot), a market buy without
            ``quote_order_qty``, a limit order without a price, or no client order id.
    """
    if request.reduce_only:
        raise ValueError("MEXC spot: reduce_only is not supported, got reduce_only=True")
    if not request.client_order_id:
        raise ValueError("MEXC order: client_order_id is empty; assign one before sending")
    side = "BUY" if request.side is Side.BUY else "SELL"
    params: list[tuple[str, str]] = [("symbol", request.instrument.symbol), ("side", side)]
    if request.type is OrderType.MARKET:
        params.append(("type", "MARKET"))
        if request.side is Side.BUY:
            if not quote_order_qty:
                raise ValueError(
                    f"MEXC market buy needs quote_order_qty (quote to spend), got {quote_order_qty!r}; "
                    "to buy an exact base quantity send an IMMEDIATE_OR_CANCEL limit "
                    "(MexcSpot.market_buy_as_ioc_limit)"
                )
            params.append(("quoteOrderQty", quote_order_qty))
        else:
            params.append(("quantity", request.wire_qty))
    else:
        if request.wire_price is None:
            raise ValueError("MEXC limit order: price is None")
        otype = {
            TimeInForce.GTC: "LIMIT",
            TimeInForce.POST_ONLY: "LIMIT_MAKER",
            TimeInForce.IOC: "IMMEDIATE_OR_CANCEL",
        }[request.time_in_force]
        params += [("type", otype), ("quantity", request.wire_qty), ("price", request.wire_price)]
    params.append(("newClientOrderId", request.client_order_id))
    return params
