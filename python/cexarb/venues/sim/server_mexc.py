"""MEXC spot v3 on the loopback simulator: REST ``/api/v3/...`` and WebSocket ``/ws``.

Wire facts from ``shared/venues/PROTOCOLS.md`` §1: signed endpoints are checked with
:func:`~cexarb.venues.mexc.signing.verify` (HMAC-SHA256 over query + body, ``recvWindow``,
``X-MEXC-APIKEY``); errors are ``{"code", "msg"}`` with HTTP 400 (401 for key errors, 429 for
rate limits with ``Retry-After``); order ids are strings. The WebSocket answers JSON control
frames (``SUBSCRIPTION`` / ``UNSUBSCRIPTION`` / ``PING``, also lower-case ``ping``) and pushes
binary protobuf ``PushDataV3ApiWrapper`` frames (aggre depth with ``fromVersion``/``toVersion``
that continue the REST ``lastUpdateId``, aggre deals, aggre book ticker, limit depth); user
data at ``/ws?listenKey=`` (orders 304, deals 306, account 307), ``Invalid listen key`` text for a
bad key. ``GET /api/v1/contract/detail`` answers an empty contract list (ccxt's
``load_markets`` asks for it).

Simplifications: ``FILL_OR_KILL`` and batch orders are not served; a ``LIMIT_MAKER`` that would
take is accepted and comes back ``CANCELED`` (as MEXC does). A market buy is served with
``quoteOrderQty`` (quote to spend) or ``quantity`` (base); an ``IMMEDIATE_OR_CANCEL`` limit is
what :class:`~cexarb.venues.mexc.spot.MexcSpot` sends for a market buy.

Fees as MEXC charges them: a buy pays its fee in the **base** received (the account gets
``quantity - fee`` BTC and pays exactly the notional in USDT), a sell in the quote; ``myTrades``
``commission`` / ``commissionAsset`` and the private deal push's ``feeAmount`` / ``feeCurrency``
state it so (PROTOCOLS.md §1.2, §1.5; real payloads in ``shared/data/api/mexc``: the docs'
``GET /api/v3/myTrades`` example, a BNBBTC buy (``"isBuyer": true``), pays ``"commissionAsset":
"BNB"``, the base; a live ccxt-captured ATLASUSDT sell row pays ``"commissionAsset": "USDT"``,
the quote). Order answers carry no fee fields (``executedQty`` is the gross quantity). The
simulator's rates: maker 0, taker 0.05 % (:data:`~cexarb.venues.sim.market.MEXC_SPOT`).

Account pushes (body 307) go out on every balance change of the account: one push per changed
asset with ``balanceAmount`` / ``frozenAmount`` after the change (PROTOCOLS.md §1.5).

Test hooks beyond :mod:`cexarb.venues.sim.faults`: :meth:`MexcHandlers.fail_cancel_replies`
(the next cancels are executed but their reply is lost or a 5xx), and every WebSocket's
subscriptions are readable as ``conn.state["mexc_session"].subs`` on ``SimServer.sockets``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from cexarb.model import Fill, OrderStatus, OrderType, Side, TimeInForce
from cexarb.venues.base import OrderRequest, OrderUpdate, PrivateEvent, RejectReason
from cexarb.venues.mexc import codec, proto
from cexarb.venues.mexc.signing import API_KEY_HEADER, MexcAuthError, verify
from cexarb.venues.sim.faults import FaultKind
from cexarb.venues.sim.market import MEXC_SPOT, DepthChange, TradeTick, VenueBook
from cexarb.venues.sim.server import (
    OrderRecord,
    SimAccount,
    SimServer,
    WsConn,
    fmt_num,
    now_ms,
)

__all__ = ["MexcHandlers", "setup_routes"]

log = logging.getLogger(__name__)

VENUE = "mexc-spot"
_JSON = msgspec.json.Encoder()
LISTEN_KEY_TTL_S = 3600
_TYPES = {
    "LIMIT": TimeInForce.GTC,
    "LIMIT_MAKER": TimeInForce.POST_ONLY,
    "IMMEDIATE_OR_CANCEL": TimeInForce.IOC,
}
_PB_ORDER_TYPE = {
    "LIMIT": 1,
    "LIMIT_MAKER": 2,
    "IMMEDIATE_OR_CANCEL": 3,
    "FILL_OR_KILL": 4,
    "MARKET": 5,
}


def fee_wire(fill: Fill) -> tuple[str, str]:
    """``(amount, asset)`` of a fill's fee as MEXC states it (``myTrades`` ``commission`` /
    ``commissionAsset``, private deal ``feeAmount`` / ``feeCurrency``; PROTOCOLS.md §1.2, §1.5).

    A buy pays in the base received: ``Fill.fee_base``, base units, 12 decimals (a 1e-6 BTC lot
    at the 0.05 % taker rate pays 5e-10 BTC), also when it is zero (a maker buy at rate 0). A
    sell, or a buy whose fee is a quote rebate (``fee < 0``, no ``fee_base``), pays ``Fill.fee``
    in the quote (USDT).
    """
    if fill.side is Side.BUY and (fill.fee_base > 0.0 or fill.fee == 0.0):
        return fmt_num(fill.fee_base, 12), MEXC_SPOT.base
    return fmt_num(fill.fee), MEXC_SPOT.quote


class MexcError(Exception):
    def __init__(
        self,
        code: int,
        msg: str,
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.status = status
        self.headers = headers


#: ``Retry-After`` (s) of a fault-injected 429 (the limiter's own says when its window resets)
_INJECTED_RETRY_AFTER_S = 10


def _too_many_requests(retry_after_s: int) -> MexcError:
    """MEXC's HTTP 429: ``{"code": 429, "msg": "Too Many Requests"}`` with ``Retry-After``."""
    return MexcError(429, "Too Many Requests", 429, {"Retry-After": str(retry_after_s)})


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=_JSON.encode(body), content_type="application/json")


def _dec(text: str | None, name: str) -> Decimal:
    if text is None or text == "":
        raise MexcError(
            700004,
            f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
        )
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise MexcError(33333, f"Parameter error: {name} is not a number") from None
    if not value.is_finite() or value <= 0:
        raise MexcError(33333, f"Parameter error: {name} must be > 0")
    return value


def _steps(value: Decimal, step: float, name: str) -> int:
    n = value / Decimal(repr(step))
    if n != n.to_integral_value():
        raise MexcError(
            33333,
            f"Parameter error: {name} {value} has too many decimals (step {step!r})",
        )
    return int(n)


def _book(server: SimServer) -> VenueBook:
    return server.market.books[MEXC_SPOT.key]


def _status(order_status: OrderStatus, filled: float) -> str:
    if order_status is OrderStatus.FILLED:
        return "FILLED"
    if order_status in (OrderStatus.CANCELED, OrderStatus.REJECTED):
        return "PARTIALLY_CANCELED" if filled > 0 else "CANCELED"
    if order_status is OrderStatus.PARTIALLY_FILLED:
        return "PARTIALLY_FILLED"
    return "NEW"


def _pb_status(order_status: OrderStatus, filled: float) -> int:
    return {
        "NEW": 1,
        "FILLED": 2,
        "PARTIALLY_FILLED": 3,
        "CANCELED": 4,
        "PARTIALLY_CANCELED": 5,
    }[_status(order_status, filled)]


class MexcHandlers:
    """MEXC request handlers bound to one :class:`SimServer` (``SimServer.mexc``)."""

    def __init__(self, server: SimServer) -> None:
        self.server = server
        # armed by fail_cancel_replies: per cancel to come, None = drop the connection, else a status
        self._cancel_reply_faults: list[int | None] = []
        self.cancel_replies_failed = 0

    def fail_cancel_replies(self, count: int = 1, *, status: int | None = None) -> None:
        """Test hook: the next ``count`` cancels (``DELETE /api/v3/order``) are *executed*, then
        their reply is lost -- the connection is dropped before any byte (``status`` None) -- or
        replaced by an HTTP ``status`` 5xx server-error body. (``lose_ack`` of
        :mod:`~cexarb.venues.sim.faults` does this for placements only.)

        Raises:
            ValueError: ``count`` < 1 or ``status`` not a 5xx.
        """
        if count < 1:
            raise ValueError(f"fail_cancel_replies count must be >= 1, got {count!r}")
        if status is not None and not 500 <= status <= 599:
            raise ValueError(f"fail_cancel_replies status must be 5xx or None, got {status!r}")
        self._cancel_reply_faults.extend([status] * count)

    # ---- guard ---------------------------------------------------------------------------------

    async def _guard(
        self, request: web.Request, *, signed: bool, weight: int
    ) -> tuple[SimAccount | None, dict[str, str]]:
        fault = self.server.faults.take(VENUE, FaultKind.HTTP_ERROR, request.path)
        if fault is not None:
            if fault.status == 429:
                # the same reply as the limiter's own 429 below (PROTOCOLS.md §1.7: Retry-After)
                raise _too_many_requests(_INJECTED_RETRY_AFTER_S)
            raise MexcError(fault.status, "Internal error", fault.status)
        body = (await request.read()).decode("utf-8", "replace")
        route = request.match_info.route.resource
        name = (route.canonical if route is not None else request.path) + ":" + request.method
        account = None
        params: dict[str, str]
        if signed:
            account = self.server.account_for_key(request.headers.get(API_KEY_HEADER))
            if account is None:
                raise MexcError(10072, "Api key info invalid", 401)
            try:
                verified = verify(
                    account.api_secret,
                    request.rel_url.raw_query_string,
                    body,
                    server_time_ms=now_ms(),
                    api_key_header=request.headers.get(API_KEY_HEADER),
                    expected_key=account.api_key,
                )
            except MexcAuthError as exc:
                raise MexcError(exc.code, exc.msg, exc.http_status) from None
            params = verified.params
            scope = f"uid:{account.uid}"
        else:
            params = dict(request.query)
            scope = f"ip:{request.remote}"
        ok, _remain, reset = self.server.rate_limiter.hit(("mexc", scope, name), 500, 10.0, weight)
        if not ok:
            raise _too_many_requests(max(1, int(reset - time.time() + 0.999)))
        return account, params

    def _wrap(
        self, handler: Callable[..., Any], *, signed: bool = False, weight: int = 1
    ) -> Callable[[web.Request], Any]:
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                account, params = await self._guard(request, signed=signed, weight=weight)
                if signed:
                    response: web.StreamResponse = await handler(request, account, params)
                else:
                    response = await handler(request, params)
                return response
            except MexcError as exc:
                return web.Response(
                    status=exc.status,
                    body=_JSON.encode({"code": exc.code, "msg": exc.msg}),
                    content_type="application/json",
                    headers=exc.headers,
                )

        return run

    def _symbol(self, params: dict[str, str], required: bool = True) -> None:
        sym = params.get("symbol")
        if sym is None:
            if required:
                raise MexcError(
                    700004,
                    "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
                )
            return
        if sym.upper() != MEXC_SPOT.symbol:
            raise MexcError(10007, "bad symbol")

    # ---- public --------------------------------------------------------------------------------

    async def ping(self, request: web.Request, params: dict[str, str]) -> web.Response:
        return json_response({})

    async def server_time(self, request: web.Request, params: dict[str, str]) -> web.Response:
        return json_response({"serverTime": now_ms()})

    def symbol_json(self) -> dict[str, Any]:
        i = MEXC_SPOT
        return {
            "symbol": i.symbol,
            "status": "1",
            "baseAsset": i.base,
            "baseAssetPrecision": 6,
            "quoteAsset": i.quote,
            "quotePrecision": 2,
            "quoteAssetPrecision": 2,
            "baseCommissionPrecision": 6,
            "quoteCommissionPrecision": 2,
            "orderTypes": ["LIMIT", "MARKET", "LIMIT_MAKER"],
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "quoteAmountPrecision": fmt_num(i.min_notional),
            "baseSizePrecision": fmt_num(i.lot_size),
            "permissions": ["SPOT"],
            "filters": [],
            "maxQuoteAmount": "2000000",
            "makerCommission": fmt_num(i.maker_fee),
            "takerCommission": fmt_num(i.taker_fee),
            "quoteAmountPrecisionMarket": fmt_num(i.min_notional),
            "maxQuoteAmountMarket": "100000",
            "fullName": "Bitcoin",
            "tradeSideType": 1,
            "st": False,
        }

    async def exchange_info(self, request: web.Request, params: dict[str, str]) -> web.Response:
        wanted = params.get("symbol") or params.get("symbols")
        symbols = [self.symbol_json()]
        if wanted is not None and MEXC_SPOT.symbol not in wanted.upper().split(","):
            symbols = []
        return json_response(
            {
                "timezone": "CST",
                "serverTime": now_ms(),
                "rateLimits": [],
                "exchangeFilters": [],
                "symbols": symbols,
            }
        )

    async def default_symbols(self, request: web.Request, params: dict[str, str]) -> web.Response:
        return json_response({"code": 0, "data": [MEXC_SPOT.symbol], "msg": "success"})

    async def depth(self, request: web.Request, params: dict[str, str]) -> web.Response:
        self._symbol(params)
        try:
            limit = int(params.get("limit", "100"))
        except ValueError:
            raise MexcError(33333, "Parameter error: limit") from None
        limit = max(1, min(limit, 5000))
        book = _book(self.server)
        bids, asks = book.top(limit)
        return json_response(
            {
                "lastUpdateId": book.update_id,
                "bids": [[book.price_str(t), book.qty_str(q)] for t, q in bids],
                "asks": [[book.price_str(t), book.qty_str(q)] for t, q in asks],
                "timestamp": now_ms(),
            }
        )

    def _ticker(self) -> dict[str, Any]:
        book = _book(self.server)
        bid, ask = book.best()
        return {
            "symbol": MEXC_SPOT.symbol,
            "bidPrice": book.price_str(bid[0]) if bid else "",
            "bidQty": book.qty_str(bid[1]) if bid else "",
            "askPrice": book.price_str(ask[0]) if ask else "",
            "askQty": book.qty_str(ask[1]) if ask else "",
        }

    async def book_ticker(self, request: web.Request, params: dict[str, str]) -> web.Response:
        if "symbol" in params:
            self._symbol(params)
            return json_response(self._ticker())
        return json_response([self._ticker()])

    def _last(self) -> str:
        trades = self.server.market_trades[MEXC_SPOT.key]
        return fmt_num(trades[-1].price) if trades else fmt_num(_book(self.server).mid() or 0.0)

    async def ticker_24hr(self, request: web.Request, params: dict[str, str]) -> web.Response:
        t = self._ticker()
        last = self._last()
        now = now_ms()
        t.update(
            {
                "priceChange": "0",
                "priceChangePercent": "0",
                "prevClosePrice": last,
                "lastPrice": last,
                "openPrice": last,
                "highPrice": last,
                "lowPrice": last,
                "volume": "0",
                "quoteVolume": "0",
                "openTime": now - 86_400_000,
                "closeTime": now,
                "count": None,
            }
        )
        if "symbol" in params:
            self._symbol(params)
            return json_response(t)
        return json_response([t])

    async def ticker_price(self, request: web.Request, params: dict[str, str]) -> web.Response:
        t = {"symbol": MEXC_SPOT.symbol, "price": self._last()}
        if "symbol" in params:
            self._symbol(params)
            return json_response(t)
        return json_response([t])

    async def trades(self, request: web.Request, params: dict[str, str]) -> web.Response:
        self._symbol(params)
        try:
            limit = max(1, min(int(params.get("limit", "500")), 1000))
        except ValueError:
            raise MexcError(33333, "Parameter error: limit") from None
        rows = self.server.market_trades[MEXC_SPOT.key][-limit:][::-1]
        return json_response(
            [
                {
                    "id": None,
                    "price": fmt_num(t.price),
                    "qty": fmt_num(t.qty),
                    "quoteQty": fmt_num(t.price * t.qty),
                    "time": t.ts_ms,
                    "isBuyerMaker": not t.taker_is_buy,
                    "isBestMatch": True,
                }
                for t in rows
            ]
        )

    async def contract_detail(self, request: web.Request, params: dict[str, str]) -> web.Response:
        return json_response({"success": True, "code": 0, "data": []})

    # ---- signed: account ---------------------------------------------------------------------------

    async def account(self, request: web.Request, account: SimAccount, params: dict[str, str]) -> web.Response:
        balances = account.venues[VENUE].balances_now()
        return json_response(
            {
                "makerCommission": None,
                "takerCommission": None,
                "buyerCommission": None,
                "sellerCommission": None,
                "canTrade": True,
                "canWithdraw": True,
                "canDeposit": True,
                "updateTime": None,
                "accountType": "SPOT",
                "balances": [
                    {
                        "asset": a,
                        "free": fmt_num(b.free),
                        "locked": fmt_num(b.locked),
                        "available": fmt_num(b.free),
                    }
                    for a, b in balances.items()
                ],
                "permissions": ["SPOT"],
            }
        )

    async def trade_fee(self, request: web.Request, account: SimAccount, params: dict[str, str]) -> web.Response:
        self._symbol(params)
        return json_response(
            {
                "data": {
                    "makerCommission": MEXC_SPOT.maker_fee,
                    "takerCommission": MEXC_SPOT.taker_fee,
                },
                "code": 0,
                "msg": "success",
                "timestamp": now_ms(),
            }
        )

    async def capital_config(self, request: web.Request, account: SimAccount, params: dict[str, str]) -> web.Response:
        out = []
        for coin, name in (("BTC", "Bitcoin"), ("USDT", "Tether")):
            out.append(
                {
                    "coin": coin,
                    "name": name,
                    "networkList": [
                        {
                            "coin": coin,
                            "depositEnable": True,
                            "withdrawEnable": True,
                            "name": name,
                            "network": coin,
                            "netWork": coin,
                            "withdrawFee": "0",
                            "withdrawMin": "0",
                            "withdrawMax": "1000000",
                            "minConfirm": 1,
                            "contract": "",
                        }
                    ],
                }
            )
        return json_response(out)

    # ---- signed: orders -----------------------------------------------------------------------------

    def order_json(self, account: SimAccount, r: OrderRecord) -> dict[str, Any]:
        order = account.order_state(r)
        filled = order.filled_qty
        return {
            "symbol": MEXC_SPOT.symbol,
            "orderId": str(r.order_id),
            "orderListId": -1,
            "clientOrderId": r.text or None,
            "price": r.price_str,
            "origQty": r.amount_str if r.quote_amount is None else "0",
            "executedQty": fmt_num(filled),
            "cummulativeQuoteQty": fmt_num(filled * order.avg_fill_price),
            "status": _status(order.status, filled),
            "timeInForce": None,
            "type": r.wire_type,
            "side": r.side.value.upper(),
            "stopPrice": None,
            "icebergQty": None,
            "time": r.create_ms,
            "updateTime": r.update_ms,
            "isWorking": True,
            "origQuoteOrderQty": fmt_num(r.quote_amount) if r.quote_amount is not None else "0",
        }

    def cancel_json(self, account: SimAccount, r: OrderRecord) -> dict[str, Any]:
        full = self.order_json(account, r)
        return {
            "symbol": full["symbol"],
            "origClientOrderId": r.text or None,
            "orderId": full["orderId"],
            "clientOrderId": r.text or None,
            "price": full["price"],
            "origQty": full["origQty"],
            "executedQty": full["executedQty"],
            "cummulativeQuoteQty": full["cummulativeQuoteQty"],
            "status": full["status"],
            "timeInForce": None,
            "type": full["type"],
            "side": full["side"],
        }

    async def place(self, request: web.Request, account: SimAccount, params: dict[str, str]) -> web.StreamResponse:
        self._symbol(params)
        inst = MEXC_SPOT
        side_text = params.get("side", "").upper()
        if side_text not in ("BUY", "SELL"):
            raise MexcError(33333, "Parameter error: side must be BUY or SELL")
        side = Side.BUY if side_text == "BUY" else Side.SELL
        wire_type = params.get("type", "").upper()
        if wire_type == "FILL_OR_KILL":
            raise MexcError(30041, "order type FILL_OR_KILL is not supported by the simulator")
        if wire_type not in ("LIMIT", "LIMIT_MAKER", "IMMEDIATE_OR_CANCEL", "MARKET"):
            raise MexcError(30041, "order type not allowed")
        text = params.get("newClientOrderId", "") or ""
        if len(text) > 32:
            raise MexcError(33333, "Parameter error: newClientOrderId longer than 32 characters")
        if text:
            existing = account.record_by_text(VENUE, text)
            if existing is not None:
                raise MexcError(30036, "duplicate newClientOrderId")
        fault = self.server.faults.take(VENUE, FaultKind.REJECT_ORDER)
        if fault is not None:
            raise MexcError(fault.code or 30016, fault.message or "order rejected (simulated fault)")
        quote_amount: float | None = None
        if wire_type == "MARKET":
            if side is Side.BUY and params.get("quoteOrderQty"):
                quote_amount = float(_dec(params.get("quoteOrderQty"), "quoteOrderQty"))
                from cexarb.venues.sim.server_gateio import _lots_for_quote

                lots = _lots_for_quote(_book(self.server), quote_amount)
                if lots <= 0:
                    raise MexcError(
                        30002,
                        f"Minimum transaction volume cannot be less than：{fmt_num(inst.min_notional)}USDT",
                    )
                amount_str = inst.format_qty(lots)
            else:
                lots = _steps(_dec(params.get("quantity"), "quantity"), inst.lot_size, "quantity")
                amount_str = inst.format_qty(lots)
            request_obj = OrderRequest.create(inst, side, inst.lots_to_qty(lots), time_in_force=TimeInForce.IOC)
            price_str = "0"
            otype = OrderType.MARKET
        else:
            ticks = _steps(_dec(params.get("price"), "price"), inst.tick_size, "price")
            lots = _steps(_dec(params.get("quantity"), "quantity"), inst.lot_size, "quantity")
            request_obj = OrderRequest.create(
                inst,
                side,
                inst.lots_to_qty(lots),
                price_ticks=ticks,
                time_in_force=_TYPES[wire_type],
            )
            price_str = inst.format_price(ticks)
            amount_str = inst.format_qty(lots)
            otype = OrderType.LIMIT
        oid = self.server.next_order_id()
        request_obj = msgspec.structs.replace(request_obj, client_order_id=str(oid))
        record = OrderRecord(
            order_id=oid,
            text=text,
            venue=VENUE,
            instrument=inst,
            side=side,
            type=otype,
            tif=wire_type,
            wire_type=wire_type,
            price_str=price_str,
            amount_str=amount_str,
            lots=lots,
            quote_amount=quote_amount,
        )
        order = self.server.place(account, record, request_obj)
        if order.status is OrderStatus.REJECTED and order.reject_reason != RejectReason.POST_ONLY_WOULD_TAKE:
            account.orders[VENUE].pop(oid, None)
            if text:
                account.by_text[VENUE].pop(text, None)
            reason = order.reject_reason
            if reason == RejectReason.INSUFFICIENT_BALANCE:
                if side is Side.SELL:
                    raise MexcError(30004, "Insufficient position")
                raise MexcError(10101, "Insufficient balance")
            if reason == RejectReason.MIN_NOTIONAL:
                raise MexcError(
                    30002,
                    f"Minimum transaction volume cannot be less than：{fmt_num(inst.min_notional)}USDT",
                )
            if reason in (RejectReason.NO_LIQUIDITY, RejectReason.BOOK_INVALID):
                raise MexcError(30010, "no valid trade price")
            raise MexcError(30016, f"order rejected: {reason}")
        # ack faults are taken only by an accepted placement: a rejected one leaves them armed
        failed = self.server.take_error_after_execute(VENUE)
        if failed is not None:  # executed, but a gateway error replaces the reply
            raise MexcError(failed, "Internal error", failed)
        delay = self.server.faults.take(VENUE, FaultKind.DELAY_ACK)
        lose = self.server.faults.take(VENUE, FaultKind.LOSE_ACK)
        if delay is not None:
            await asyncio.sleep(delay.seconds)
        if lose is not None:
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError()
        return json_response(
            {
                "symbol": inst.symbol,
                "orderId": str(oid),
                "orderListId": -1,
                "price": price_str,
                "origQty": amount_str,
                "type": wire_type,
                "side": side_text,
                "stpMode": "",
                "transactTime": record.create_ms,
            }
        )

    def _find(self, account: SimAccount, params: dict[str, str]) -> OrderRecord:
        self._symbol(params)
        oid = params.get("orderId")
        coid = params.get("origClientOrderId")
        record = None
        if oid:
            record = account.record(VENUE, oid)
        elif coid:
            record = account.record_by_text(VENUE, coid)
        else:
            raise MexcError(
                700004,
                "Mandatory parameter 'orderId' or 'origClientOrderId' was not sent.",
            )
        if record is None:
            raise MexcError(-2011, "Unknown order sent.")
        return record

    async def query(self, request: web.Request, account: SimAccount, params: dict[str, str]) -> web.Response:
        return json_response(self.order_json(account, self._find(account, params)))

    async def cancel(self, request: web.Request, account: SimAccount, params: dict[str, str]) -> web.Response:
        record = self._find(account, params)
        if account.order_state(record).status.is_terminal:
            raise MexcError(-2011, "Unknown order sent.")
        await account.venues[VENUE].cancel_order(MEXC_SPOT.key, record.key)
        if self._cancel_reply_faults:
            status = self._cancel_reply_faults.pop(0)
            self.cancel_replies_failed += 1
            if status is not None:
                raise MexcError(status, "Internal error", status)
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError()
        return json_response(self.cancel_json(account, record))

    def _open(self, account: SimAccount) -> list[OrderRecord]:
        return sorted(
            (r for r in account.orders[VENUE].values() if not account.order_state(r).status.is_terminal),
            key=lambda r: r.order_id,
        )

    async def open_orders(self, request: web.Request, account: SimAccount, params: dict[str, str]) -> web.Response:
        self._symbol(params, required=False)
        return json_response([self.order_json(account, r) for r in self._open(account)])

    async def cancel_open(self, request: web.Request, account: SimAccount, params: dict[str, str]) -> web.Response:
        syms = params.get("symbol", "")
        if MEXC_SPOT.symbol not in syms.upper().split(","):
            raise MexcError(10007, "bad symbol")
        out = []
        for r in self._open(account):
            await account.venues[VENUE].cancel_order(MEXC_SPOT.key, r.key)
            out.append(self.cancel_json(account, r))
        return json_response(out)

    async def all_orders(self, request: web.Request, account: SimAccount, params: dict[str, str]) -> web.Response:
        self._symbol(params)
        try:
            limit = max(1, min(int(params.get("limit", "500")), 1000))
        except ValueError:
            raise MexcError(33333, "Parameter error: limit") from None
        rows = sorted(account.orders[VENUE].values(), key=lambda r: r.order_id)[-limit:]
        return json_response([self.order_json(account, r) for r in rows])

    def fill_json(self, account: SimAccount, fill: Fill) -> dict[str, Any]:
        record = account.record(VENUE, fill.client_order_id)
        seq = fill.fill_id.rsplit("-", 1)[-1]
        commission, commission_asset = fee_wire(fill)
        return {
            "symbol": MEXC_SPOT.symbol,
            "id": seq,
            "orderId": fill.client_order_id,
            "orderListId": -1,
            "price": fmt_num(fill.price),
            "qty": fmt_num(fill.qty),
            "quoteQty": fmt_num(fill.price * fill.qty),
            "commission": commission,
            "commissionAsset": commission_asset,
            "time": fill.ts_ns // 1_000_000,
            "isBuyer": fill.side is Side.BUY,
            "isMaker": fill.is_maker,
            "isBestMatch": True,
            "isSelfTrade": False,
            "clientOrderId": (record.text or None) if record is not None else None,
        }

    async def my_trades(self, request: web.Request, account: SimAccount, params: dict[str, str]) -> web.Response:
        self._symbol(params)
        oid = params.get("orderId")
        try:
            limit = max(1, min(int(params.get("limit", "100")), 1000))
        except ValueError:
            raise MexcError(33333, "Parameter error: limit") from None
        fills = await account.venues[VENUE].fills(MEXC_SPOT.key)
        rows = [self.fill_json(account, f) for f in fills if oid is None or f.client_order_id == oid]
        return json_response(rows[-limit:])

    # ---- listen keys ------------------------------------------------------------------------------

    async def listen_key(self, request: web.Request, account: SimAccount, params: dict[str, str]) -> web.Response:
        now = time.time()
        keys = account.listen_keys
        for k in [k for k, exp in keys.items() if exp < now]:
            del keys[k]
        if request.method == "POST":
            if len(keys) >= 60:
                raise MexcError(730705, "at most 60 listen keys per account")
            key = secrets.token_hex(32)
            keys[key] = now + LISTEN_KEY_TTL_S
            return json_response({"listenKey": key})
        if request.method == "GET":
            return json_response({"listenKey": list(keys)})
        key = params.get("listenKey", "")
        if key not in keys:
            raise MexcError(730706, "Invalid listen key")
        if request.method == "PUT":
            keys[key] = now + LISTEN_KEY_TTL_S
        else:
            del keys[key]
        return json_response({"listenKey": key})

    def account_for_listen_key(self, key: str) -> SimAccount | None:
        now = time.time()
        for account in self.server.accounts:
            exp = account.listen_keys.get(key)
            if exp is not None and exp >= now:
                return account
        return None

    # ---- WebSocket ----------------------------------------------------------------------------------

    async def ws(self, request: web.Request) -> web.StreamResponse:
        listen_key = request.query.get("listenKey")
        account = None
        if listen_key is not None:
            account = self.account_for_listen_key(listen_key)
        session: _MexcWsSession | None = None

        def on_open(conn: WsConn) -> None:
            nonlocal session
            if listen_key is not None and account is None:
                conn.send(codec.INVALID_LISTEN_KEY)
                conn.close_after_queued()
                return
            session = _MexcWsSession(self, conn, account)
            conn.state["mexc_session"] = session  # tests read its subscriptions

        def on_message(conn: WsConn, kind: WSMsgType, data: bytes | str) -> None:
            if session is not None:
                session.on_message(data)

        return await self.server.serve_ws(request, VENUE, on_open, on_message, private=account is not None)


class _MexcWsSession:
    """Subscriptions of one MEXC WebSocket (public, or user data when ``account`` is set)."""

    def __init__(self, handlers: MexcHandlers, conn: WsConn, account: SimAccount | None) -> None:
        self.h = handlers
        self.server = handlers.server
        self.conn = conn
        self.account = account
        self.book = _book(self.server)
        self.subs: dict[str, Callable[[], None]] = {}
        conn.cleanups.append(self.close)

    def close(self) -> None:
        subs, self.subs = self.subs, {}
        for cleanup in subs.values():
            cleanup()

    def on_message(self, data: bytes | str) -> None:
        try:
            req = codec.decode_ws_request(data)
        except codec.MexcCodecError:
            self.conn.send(codec.encode_ack("Invalid request", code=1).decode())
            return
        if req.verb == "PING":
            self.conn.send(codec.encode_pong().decode())
            return
        ok: list[str] = []
        bad: list[str] = []
        for channel in req.params:
            try:
                parsed = codec.parse_channel(channel)
            except codec.MexcCodecError:
                bad.append(channel)
                continue
            private = parsed.kind.startswith("private.")
            if private != (self.account is not None) or (not private and parsed.symbol != MEXC_SPOT.symbol):
                bad.append(channel)
                continue
            if parsed.kind not in ("aggre.depth", "aggre.deals", "aggre.bookTicker", "limit.depth") and not private:
                bad.append(channel)
                continue
            if req.verb == "UNSUBSCRIPTION":
                cleanup = self.subs.pop(channel, None)
                if cleanup is not None:
                    cleanup()
                ok.append(channel)
                continue
            if channel in self.subs or len(self.subs) >= 30:
                bad.append(channel)
                continue
            self.subs[channel] = self._subscribe(channel, parsed)
            ok.append(channel)
        if ok:
            self.conn.send(codec.encode_ack(",".join(ok), request_id=req.id or 0).decode())
        if bad:
            msg = f"Not Subscribed successfully! [{','.join(bad)}].  Reason： Blocked! "
            self.conn.send(codec.encode_ack(msg, request_id=req.id or 0).decode())

    def _push(
        self,
        channel: str,
        body: Any,
        *,
        symbol: str | None = MEXC_SPOT.symbol,
        depth: bool = False,
    ) -> None:
        ts = now_ms()
        frame = proto.encode_push(
            proto.PushData(
                channel=channel,
                body=body,
                symbol=symbol,
                send_time=ts,
                create_time=ts if symbol else None,
            )
        )
        self.conn.send(frame, binary=True, depth=depth)

    def _subscribe(self, channel: str, parsed: codec.MexcChannel) -> Callable[[], None]:
        kind = parsed.kind
        interval = 0.01 if parsed.interval == "10ms" else 0.1
        event_type = channel.rsplit("@", 1)[0]
        book = self.book
        loop = asyncio.get_running_loop()
        if kind == "aggre.depth":
            from cexarb.venues.sim.server import DepthBuffer

            def flush(first: int, last: int, bids: dict[int, float], asks: dict[int, float]) -> None:
                if self.conn.closed:
                    return
                body = proto.PublicAggreDepths(
                    asks=[
                        proto.DepthLevel(price=book.price_str(t), quantity=book.qty_str(q))
                        for t, q in sorted(asks.items())
                    ],
                    bids=[
                        proto.DepthLevel(price=book.price_str(t), quantity=book.qty_str(q))
                        for t, q in sorted(bids.items(), reverse=True)
                    ],
                    event_type=event_type,
                    from_version=str(first),
                    to_version=str(last),
                )
                self._push(channel, body, depth=True)

            buffer = DepthBuffer(interval, flush)

            def on_change(b: VenueBook, change: DepthChange) -> None:
                buffer.add(change.first_id, change.last_id, change.bids, change.asks)

            book.add_listener(on_change)

            def cleanup() -> None:
                book.remove_listener(on_change)
                buffer.cancel()

            return cleanup
        if kind in ("aggre.bookTicker", "limit.depth"):
            state: dict[str, Any] = {"handle": None, "last": None}

            def emit() -> None:
                state["handle"] = None
                if self.conn.closed:
                    return
                if kind == "aggre.bookTicker":
                    bid, ask = book.best()
                    if (bid, ask) == state["last"]:
                        return
                    state["last"] = (bid, ask)
                    body: Any = proto.PublicAggreBookTicker(
                        bid_price=book.price_str(bid[0]) if bid else "",
                        bid_quantity=book.qty_str(bid[1]) if bid else "",
                        ask_price=book.price_str(ask[0]) if ask else "",
                        ask_quantity=book.qty_str(ask[1]) if ask else "",
                        version=str(book.update_id),
                    )
                else:
                    bids, asks = book.top(parsed.levels)
                    body = proto.PublicLimitDepths(
                        asks=[proto.DepthLevel(price=book.price_str(t), quantity=book.qty_str(q)) for t, q in asks],
                        bids=[proto.DepthLevel(price=book.price_str(t), quantity=book.qty_str(q)) for t, q in bids],
                        event_type=event_type,
                        version=str(book.update_id),
                    )
                self._push(channel, body)

            def on_tick(b: VenueBook, change: DepthChange) -> None:
                if state["handle"] is None:
                    state["handle"] = loop.call_later(interval if kind == "aggre.bookTicker" else 0.1, emit)

            book.add_listener(on_tick)

            def cleanup_tick() -> None:
                book.remove_listener(on_tick)
                if state["handle"] is not None:
                    state["handle"].cancel()

            return cleanup_tick
        if kind == "aggre.deals":
            pending: list[TradeTick] = []
            handle: list[asyncio.TimerHandle | None] = [None]

            def emit_deals() -> None:
                handle[0] = None
                if self.conn.closed or not pending:
                    return
                deals = [
                    proto.AggreDeal(
                        price=fmt_num(t.price),
                        quantity=fmt_num(t.qty),
                        trade_type=1 if t.taker_is_buy else 2,
                        time=t.ts_ms,
                    )
                    for t in pending
                ]
                pending.clear()
                self._push(channel, proto.PublicAggreDeals(deals=deals, event_type=event_type))

            def on_trade(b: VenueBook, t: TradeTick) -> None:
                if b.key != MEXC_SPOT.key:
                    return
                pending.append(t)
                if handle[0] is None:
                    handle[0] = loop.call_later(interval, emit_deals)

            listeners = self.server.market._trade_listeners
            listeners.append(on_trade)

            def cleanup_deals() -> None:
                if on_trade in listeners:
                    listeners.remove(on_trade)
                if handle[0] is not None:
                    handle[0].cancel()

            return cleanup_deals
        return self._private(channel, kind)

    def _private(self, channel: str, kind: str) -> Callable[[], None]:
        account = self.account
        assert account is not None
        sim = account.venues[VENUE]
        last_bal = {a: (b.free, b.locked) for a, b in sim.balances_now().items()}

        def on_events(acc: SimAccount, events: list[PrivateEvent]) -> None:
            if self.conn.closed:
                return
            ts = now_ms()
            for ev in events:
                if kind == "private.orders" and isinstance(ev, OrderUpdate):
                    if ev.status is OrderStatus.REJECTED and not ev.venue_order_id:
                        continue  # refused at placement (the REST error): it never existed, no push
                    record = acc.record(VENUE, ev.client_order_id)
                    if record is None:
                        continue
                    order = acc.order_state(record)
                    filled = order.filled_qty
                    cum_amount = filled * order.avg_fill_price
                    qty = MEXC_SPOT.lots_to_qty(record.lots)
                    price = float(record.price_str) if record.price_str else 0.0
                    body = proto.PrivateOrder(
                        id=str(record.order_id),
                        client_id=record.text,
                        price=record.price_str,
                        quantity=record.amount_str,
                        amount=fmt_num(price * qty),
                        avg_price=fmt_num(order.avg_fill_price),
                        order_type=_PB_ORDER_TYPE.get(record.wire_type, 1),
                        trade_type=1 if record.side is Side.BUY else 2,
                        is_maker=False,
                        remain_amount=fmt_num(max(price * qty - cum_amount, 0.0)),
                        remain_quantity=fmt_num(max(qty - filled, 0.0)),
                        cumulative_quantity=fmt_num(filled),
                        cumulative_amount=fmt_num(cum_amount),
                        status=_pb_status(ev.status, filled),
                        create_time=record.create_ms,
                    )
                    self._push(channel, body)
                elif kind == "private.deals" and isinstance(ev, Fill):
                    record = acc.record(VENUE, ev.client_order_id)
                    fee_amount, fee_currency = fee_wire(ev)
                    body2 = proto.PrivateDeal(
                        price=fmt_num(ev.price),
                        quantity=fmt_num(ev.qty),
                        amount=fmt_num(ev.price * ev.qty),
                        trade_type=1 if ev.side is Side.BUY else 2,
                        is_maker=ev.is_maker,
                        trade_id=ev.fill_id.rsplit("-", 1)[-1],
                        client_order_id=record.text if record is not None else "",
                        order_id=ev.client_order_id,
                        fee_amount=fee_amount,
                        fee_currency=fee_currency,
                        time=ev.ts_ns // 1_000_000,
                    )
                    self._push(channel, body2)
            if kind == "private.account":
                for asset, bal in sim.balances_now().items():
                    prev = last_bal.get(asset, (0.0, 0.0))
                    if (bal.free, bal.locked) == prev:
                        continue
                    last_bal[asset] = (bal.free, bal.locked)
                    body3 = proto.PrivateAccount(
                        vcoin_name=asset,
                        coin_id=asset,
                        balance_amount=fmt_num(bal.free),
                        balance_amount_change=fmt_num(bal.free - prev[0]),
                        frozen_amount=fmt_num(bal.locked),
                        frozen_amount_change=fmt_num(bal.locked - prev[1]),
                        type="ENTRUST" if any(isinstance(e, OrderUpdate) for e in events) else "TRADE",
                        time=ts,
                    )
                    self._push(channel, body3, symbol=None)

        listeners = account.listeners[VENUE]
        listeners.append(on_events)

        def cleanup() -> None:
            if on_events in listeners:
                listeners.remove(on_events)

        return cleanup


def setup_routes(app: web.Application, server: SimServer) -> MexcHandlers:
    """Add every MEXC route to ``app``; returns the handlers (``SimServer.mexc``)."""
    h = MexcHandlers(server)
    r = app.router
    pub = h._wrap

    def signed(fn: Any, weight: int = 1) -> Any:
        return h._wrap(fn, signed=True, weight=weight)

    V = "/api/v3"
    r.add_get(V + "/ping", pub(h.ping))
    r.add_get(V + "/time", pub(h.server_time))
    r.add_get(V + "/exchangeInfo", pub(h.exchange_info, weight=10))
    r.add_get(V + "/defaultSymbols", pub(h.default_symbols))
    r.add_get(V + "/depth", pub(h.depth))
    r.add_get(V + "/ticker/bookTicker", pub(h.book_ticker))
    r.add_get(V + "/ticker/24hr", pub(h.ticker_24hr))
    r.add_get(V + "/ticker/price", pub(h.ticker_price))
    r.add_get(V + "/trades", pub(h.trades))
    r.add_get("/api/v1/contract/detail", pub(h.contract_detail))
    r.add_get(V + "/account", signed(h.account, 10))
    r.add_get(V + "/tradeFee", signed(h.trade_fee, 20))
    r.add_get(V + "/capital/config/getall", signed(h.capital_config, 10))
    r.add_post(V + "/order", signed(h.place))
    r.add_get(V + "/order", signed(h.query, 2))
    r.add_delete(V + "/order", signed(h.cancel))
    r.add_get(V + "/openOrders", signed(h.open_orders, 3))
    r.add_delete(V + "/openOrders", signed(h.cancel_open))
    r.add_get(V + "/allOrders", signed(h.all_orders, 10))
    r.add_get(V + "/myTrades", signed(h.my_trades, 10))
    for method in ("POST", "PUT", "DELETE", "GET"):
        r.add_route(method, V + "/userDataStream", signed(h.listen_key))
    r.add_get("/ws", h.ws)
    return h
