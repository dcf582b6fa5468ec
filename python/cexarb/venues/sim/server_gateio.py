"""Gate.io APIv4 on the loopback simulator: spot and USDT-futures REST and WebSockets.

Routes (``shared/venues/PROTOCOLS.md`` §2, §3): REST under ``/api/v4`` (spot, ``futures/usdt``,
``account/detail``, and empty lists for the other market families ccxt's ``load_markets``
queries: margin, delivery, options, ``futures/btc``), WS at ``/ws/v4/`` (spot) and
``/v4/ws/usdt`` (futures).

Rules kept exactly: signed REST (``KEY``/``Timestamp``/``SIGN``, ±60 s) through
:func:`~cexarb.venues.gateio.signing.verify_rest`; errors ``{"label", "message"}`` with the
venue's HTTP status; ``with_id`` books whose ``id`` stitches onto the WS ``U``/``u``; futures
sizes as integers, or decimal strings when the request (or WS handshake) carries
``X-Gate-Size-Decimal: 1``; WS private channels signed per request (error code 4 on failure),
futures private payloads starting with the user id; duplicate subscriptions answer code 2.

Level-limited depth streams (``futures.order_book_update`` at its ``level``, ``*.obu`` at 50 /
400) carry only the subscribed top levels, with a 0 for a level that leaves them (:class:`_BookSub`);
``spot.order_book_update`` carries every changed level. Rate limits as Gate documents them
(PROTOCOLS.md §2.6, §3.6), counted per route template, never per concrete path: public 200 / 10 s
per endpoint and IP; spot placement 10/s per UID *and* currency pair; futures placement 100/s per
UID; cancels 200/s per UID over single and batch routes; other private 200 / 10 s per endpoint and
UID; every answer past the limiter carries ``X-Gate-RateLimit-*`` headers. A ``lose_ack`` fault
armed with a ``path_prefix`` that matches a cancel's path executes that cancel and drops its reply.

Spot fees as Gate charges them without GT deduction: a buy pays its fee in the **base** received
(the account gets ``amount - fee`` BTC; order and trade answers and pushes say ``fee_currency``
``BTC``, ``rebated_fee_currency`` ``USDT``), a sell in the quote (``USDT`` / ``BTC``); live
payloads in ``shared/data/api/gateio/ccxt_fixtures`` (:data:`~cexarb.venues.sim.server.BUY_FEE_IN_BASE`).

Funding: the contract, ticker and funding-history answers state ``SimServer.funding_rate``
(:meth:`~cexarb.venues.sim.server.SimServer.set_funding_rate` changes it); ``futures.tickers``
(PROTOCOLS.md §3.4, the docs' "Tickers notification" fields) pushes on subscribe, on market
changes at most once a second per subscription, and at once when the rate changes.

Simplifications (said so the connector team knows): an open spot buy still locks its quote
``notional * (1 + fee rate)`` (Gate locks the notional); ``spot.tickers`` is not served; ticker
24 h volumes and change are "0"; ``fok`` orders, iceberg, amend, batch orders and the WS trading
API are not served; rate-limit windows are fixed (aligned to the clock), not sliding;
``spot.balances`` rows always say ``change_type`` ``order-create``.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from cexarb.model import Fill, OrderStatus, OrderType, Side, TimeInForce
from cexarb.venues.base import OrderRequest, OrderUpdate, PrivateEvent, RejectReason
from cexarb.venues.gateio import codec
from cexarb.venues.gateio.signing import (
    MAX_CLOCK_SKEW_S,
    GateAuthError,
    verify_rest,
    verify_ws_channel,
)
from cexarb.venues.sim.faults import FaultKind
from cexarb.venues.sim.market import (
    GATE_FUTURES,
    GATE_FUTURES_QUANTO,
    GATE_SPOT,
    DepthChange,
    TradeTick,
    VenueBook,
)
from cexarb.venues.sim.server import (
    FUNDING_INTERVAL_S,
    FUTURES_LEVERAGE,
    DepthBuffer,
    OrderRecord,
    SimAccount,
    SimServer,
    WsConn,
    fmt_num,
    now_ms,
)

__all__ = ["GateHandlers", "setup_routes"]

log = logging.getLogger(__name__)

P = "/api/v4"
SPOT = "gateio-spot"
FUT = "gateio-futures"
_JSON = msgspec.json.Encoder()

#: a request's (limit, remaining) of its rate-limit window, for the reply headers
#: ``futures.order_book_update`` levels per interval (PROTOCOLS.md §3.4: "100"/"50"/"20", the
#: 20 ms interval only "20"); the keys are the intervals either market's channel accepts (§2.4)
_BOOK_LEVELS: dict[str, tuple[str, ...]] = {"100ms": ("100", "50", "20"), "20ms": ("20",)}
_PRIVATE_TOPICS = ("orders", "usertrades", "balances", "positions")
_RATE_KEY: web.RequestKey[tuple[int, int]] = web.RequestKey("gate_rate", tuple)

_SPOT_TIF = {
    "gtc": TimeInForce.GTC,
    "ioc": TimeInForce.IOC,
    "poc": TimeInForce.POST_ONLY,
}


class GateError(Exception):
    """An error reply: HTTP ``status`` with ``{"label", "message"}``."""

    def __init__(self, status: int, label: str, message: str) -> None:
        super().__init__(f"{label}: {message}")
        self.status = status
        self.label = label
        self.message = message


def error_response(status: int, label: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=_JSON.encode({"label": label, "message": message}),
        content_type="application/json",
        headers=headers,
    )


def _limit_for(venue: str, *, private: bool, kind: str) -> tuple[int, float]:
    """``(limit, window_s)`` of a request's rate-limit window (PROTOCOLS.md §2.6, §3.6): public
    200 / 10 s; spot placement 10 / 1 s, futures placement 100 / 1 s, cancels 200 / 1 s, other
    private 200 / 10 s."""
    if not private:
        return 200, 10.0
    if kind == "place":
        return (10, 1.0) if venue == SPOT else (100, 1.0)
    if kind == "cancel":
        return 200, 1.0
    return 200, 10.0


def _too_many_requests(exc: _RateLimited) -> web.Response:
    """Gate's 429 ``TOO_MANY_REQUESTS`` with the ``X-Gate-RateLimit-*`` headers (limiter and
    injected fault alike)."""
    headers = {
        "X-Gate-RateLimit-Requests-Remain": "0",
        "X-Gate-RateLimit-Limit": str(exc.limit),
        "X-Gate-RateLimit-Reset-Timestamp": str(int(exc.reset * 1000)),
    }
    return error_response(429, "TOO_MANY_REQUESTS", "Request Rate limit Exceeded", headers)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=_JSON.encode(body),
        content_type="application/json",
        headers=headers,
    )


def _dec(text: str, name: str) -> Decimal:
    try:
        value = Decimal(str(text).strip())
    except (InvalidOperation, ValueError):
        raise GateError(400, "INVALID_PARAM_VALUE", f"{name} is not a number: {str(text)[:32]!r}") from None
    if not value.is_finite():
        raise GateError(400, "INVALID_PARAM_VALUE", f"{name} is not finite")
    return value


def _steps(value: Decimal, step: float, name: str) -> int:
    """``value`` as a whole number of ``step`` (exact), else INVALID_PRECISION."""
    n = value / Decimal(repr(step))
    if n != n.to_integral_value():
        raise GateError(400, "INVALID_PRECISION", f"{name} {value} is not a multiple of {step!r}")
    return int(n)


def _fill_seq(fill: Fill) -> int:
    tail = fill.fill_id.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _book_of(server: SimServer, venue: str) -> VenueBook:
    inst = GATE_SPOT if venue == SPOT else GATE_FUTURES
    return server.market.books[inst.key]


class GateHandlers:
    """Request handlers bound to one :class:`SimServer` (``SimServer.gate``)."""

    def __init__(self, server: SimServer) -> None:
        self.server = server
        self.sessions: set[_GateWsSession] = set()
        self.rate_limited = 0  # 429 answers given by the rate limits (not by faults): tests

    # =========================================================================================
    # guard: faults, rate limits, auth

    def _venue_of(self, request: web.Request) -> str:
        return FUT if request.path.startswith(P + "/futures") else SPOT

    def _rate(
        self, request: web.Request, scope: str, kind: str, limit: int, window_s: float, name: str | None = None
    ) -> None:
        """One hit on the window ``(scope, kind, name)``; ``name`` defaults to the endpoint: the
        route's canonical template (``/api/v4/spot/orders/{order_id}``), never the concrete path
        -- Gate counts "per endpoint", whatever the order id."""
        if name is None:
            route = request.match_info.route.resource
            name = route.canonical if route is not None else request.path
        ok, remain, reset = self.server.rate_limiter.hit(("gate", scope, kind, name), limit, window_s)
        if not ok:
            self.rate_limited += 1
            raise _RateLimited(limit, reset)
        request[_RATE_KEY] = (limit, remain)  # the X-Gate-RateLimit-* headers of the reply

    async def _guard(
        self, request: web.Request, *, private: bool, kind: str = "other"
    ) -> tuple[SimAccount | None, bytes]:
        """Faults, auth and rate limits for one request; returns (account, body)."""
        venue = self._venue_of(request)
        fault = self.server.faults.take(venue, FaultKind.HTTP_ERROR, request.path)
        if fault is not None:
            if fault.status == 429:
                # the same reply as the limiter's own 429 (X-Gate-RateLimit-* headers): the
                # window of the request's endpoint class, reset at that window's end
                limit, window_s = _limit_for(venue, private=private, kind=kind)
                raise _RateLimited(limit, (int(time.time() // window_s) + 1) * window_s)
            raise GateError(fault.status, "SERVER_ERROR", "Internal server error")
        body = await request.read()
        if not private:
            peer = request.remote or "?"
            self._rate(request, peer, "public", *_limit_for(venue, private=False, kind=kind))
            return None, body
        key = request.headers.get("KEY", "")
        if not key:
            raise GateError(400, "MISSING_REQUIRED_HEADER", "missing required header: KEY")
        account = self.server.account_for_key(key)
        if account is None:
            raise GateError(401, "INVALID_KEY", "Invalid key provided")
        try:
            verify_rest(
                account.api_secret,
                method=request.method,
                path=request.path,
                raw_query=request.rel_url.raw_query_string,
                body=body,
                headers=request.headers,
                expected_key=account.api_key,
                server_time_s=time.time(),
            )
        except GateAuthError as exc:
            raise GateError(exc.http_status, exc.label, exc.message) from None
        # Gate APIv4 "Frequency limit rule" (PROTOCOLS.md §2.6, §3.6; the client's
        # cexarb.venues.ratelimit GATE_SPOT_LIMITS / GATE_FUTURES_LIMITS count the same way):
        # spot placement + amend "a total of 10r/s (UID+Market)" -- per user *and* currency pair;
        # futures placement 100r/s per user; cancels (single and batch) "a total of 200r/s" per
        # user, all routes together; other private endpoints 200r/10s per user per endpoint.
        uid = str(account.uid)
        limit, window_s = _limit_for(venue, private=True, kind=kind)
        if kind == "place":
            if venue == SPOT:
                self._rate(request, uid, "place-spot", limit, window_s, name=_currency_pair_of(body))
            else:
                self._rate(request, uid, "place-futures", limit, window_s, name="")
        elif kind == "cancel":
            self._rate(request, uid, "cancel-" + venue, limit, window_s, name="")
        else:
            self._rate(request, uid, "private", limit, window_s)
        return account, body

    def _wrap(
        self,
        handler: Callable[[web.Request], Any],
        *,
        private: bool = False,
        kind: str = "other",
    ) -> Callable[[web.Request], Any]:
        async def run(request: web.Request) -> web.StreamResponse:
            response: web.StreamResponse
            try:
                account, body = await self._guard(request, private=private, kind=kind)
                if private:
                    response = await handler(request, account, body)  # type: ignore[call-arg]
                else:
                    response = await handler(request)
            except _RateLimited as exc:
                return _too_many_requests(exc)
            except GateError as exc:
                response = error_response(exc.status, exc.label, exc.message)
            except codec.GateCodecError as exc:
                response = error_response(400, "INVALID_REQUEST_BODY", str(exc))
            rate = request.get(_RATE_KEY)
            if rate is not None and not response.prepared:
                # every answer past the limiter carries its endpoint's window (Gate APIv4 "Rate
                # Limit" headers; the reset timestamp is "just the current timestamp" when not over)
                response.headers["X-Gate-RateLimit-Requests-Remain"] = str(rate[1])
                response.headers["X-Gate-RateLimit-Limit"] = str(rate[0])
                response.headers["X-Gate-RateLimit-Reset-Timestamp"] = str(now_ms())
            return response

        return run

    # =========================================================================================
    # public REST

    async def spot_time(self, request: web.Request) -> web.Response:
        return json_response({"server_time": now_ms()})

    def _pair_json(self) -> dict[str, Any]:
        i = GATE_SPOT
        return {
            "id": i.symbol,
            "base": i.base,
            "base_name": "Bitcoin",
            "quote": i.quote,
            "quote_name": "Tether",
            "fee": fmt_num(i.taker_fee * 100),
            "min_base_amount": "0.00001",
            "min_quote_amount": fmt_num(i.min_notional),
            "max_base_amount": "1000",
            "max_quote_amount": "5000000",
            "amount_precision": 6,
            "precision": 1,
            "trade_status": "tradable",
            "sell_start": 1516378650,
            "buy_start": 1516378650,
            "delisting_time": 0,
            "type": "normal",
            "trade_url": "",
            "st_tag": False,
        }

    async def currency_pairs(self, request: web.Request) -> web.Response:
        return json_response([self._pair_json()])

    async def currency_pair(self, request: web.Request) -> web.Response:
        if request.match_info["pair"] != GATE_SPOT.symbol:
            raise GateError(
                400,
                "INVALID_CURRENCY_PAIR",
                f"Invalid currency pair {request.match_info['pair'][:32]}",
            )
        return json_response(self._pair_json())

    async def currencies(self, request: web.Request) -> web.Response:
        out = []
        for cur, name in (("BTC", "Bitcoin"), ("USDT", "Tether")):
            out.append(
                {
                    "currency": cur,
                    "name": name,
                    "delisted": False,
                    "withdraw_disabled": False,
                    "withdraw_delayed": False,
                    "deposit_disabled": False,
                    "trade_disabled": False,
                    "chain": cur,
                    "chains": [
                        {
                            "name": cur,
                            "addr": "",
                            "withdraw_disabled": False,
                            "deposit_disabled": False,
                        }
                    ],
                }
            )
        return json_response(out)

    async def empty_list(self, request: web.Request) -> web.Response:
        return json_response([])

    def _contract_json(self) -> dict[str, Any]:
        i = GATE_FUTURES
        book = _book_of(self.server, FUT)
        mid = book.mid() or 0.0
        bid, ask = book.best()
        mark = fmt_num(round(mid, 1), 1)
        return {
            "name": i.symbol,
            "type": "direct",
            "quanto_multiplier": fmt_num(GATE_FUTURES_QUANTO),
            "ref_discount_rate": "0",
            "order_price_deviate": "0.5",
            "maintenance_rate": "0.004",
            "mark_type": "index",
            "last_price": mark,
            "mark_price": mark,
            "index_price": mark,
            "funding_rate_indicative": _rate_str(self.server.funding_rate),
            "mark_price_round": "0.1",
            "funding_offset": 0,
            "in_delisting": False,
            "risk_limit_base": "1000000",
            "interest_rate": "0.0003",
            "order_price_round": "0.1",
            "order_size_min": 1,
            "order_size_max": 1000000,
            "ref_rebate_rate": "0.2",
            "funding_interval": FUNDING_INTERVAL_S,
            "risk_limit_step": "1000000",
            "leverage_min": "1",
            "leverage_max": "125",
            "risk_limit_max": "30000000",
            "maker_fee_rate": fmt_num(i.maker_fee),
            "taker_fee_rate": fmt_num(i.taker_fee),
            "funding_rate": _rate_str(self.server.funding_rate),
            "funding_next_apply": self.server.funding_next_s,
            "funding_cap_ratio": "0.75",
            "short_users": 0,
            "long_users": 0,
            "funding_impact_value": "60000",
            "orders_limit": 200,
            "trade_id": 0,
            "orderbook_id": book.update_id,
            "enable_bonus": True,
            "enable_credit": True,
            "create_time": 1669688556,
            "status": "trading",
            "launch_time": 1609459200,
            "highest_bid": book.price_str(bid[0]) if bid else "",
            "lowest_ask": book.price_str(ask[0]) if ask else "",
        }

    async def contracts(self, request: web.Request) -> web.Response:
        if request.match_info["settle"] != "usdt":
            return json_response([])
        return json_response([self._contract_json()])

    async def contract(self, request: web.Request) -> web.Response:
        if request.match_info["contract"] != GATE_FUTURES.symbol:
            raise GateError(400, "CONTRACT_NOT_FOUND", "Contract not found")
        return json_response(self._contract_json())

    def _limit(self, request: web.Request, default: int, maximum: int) -> int:
        raw = request.query.get("limit")
        if raw is None:
            return default
        try:
            n = int(raw)
        except ValueError:
            raise GateError(400, "INVALID_PARAM_VALUE", f"limit is not an integer: {raw[:16]!r}") from None
        if n < 1:
            raise GateError(400, "INVALID_PARAM_VALUE", "limit must be >= 1")
        return min(n, maximum)

    async def spot_order_book(self, request: web.Request) -> web.Response:
        if request.query.get("currency_pair") != GATE_SPOT.symbol:
            raise GateError(400, "INVALID_CURRENCY_PAIR", "Invalid currency pair")
        limit = self._limit(request, 10, 5000)
        book = _book_of(self.server, SPOT)
        bids, asks = book.top(limit)
        body: dict[str, Any] = {}
        if request.query.get("with_id") == "true":
            body["id"] = book.update_id
        body["current"] = now_ms()
        body["update"] = book.ts_ms
        body["asks"] = [[book.price_str(t), book.qty_str(q)] for t, q in asks]
        body["bids"] = [[book.price_str(t), book.qty_str(q)] for t, q in bids]
        return json_response(body)

    async def futures_order_book(self, request: web.Request) -> web.Response:
        if request.query.get("contract") != GATE_FUTURES.symbol:
            raise GateError(400, "CONTRACT_NOT_FOUND", "Contract not found")
        limit = self._limit(request, 10, 300)
        book = _book_of(self.server, FUT)
        bids, asks = book.top(limit)
        dec = request.headers.get("X-Gate-Size-Decimal") == "1"
        body: dict[str, Any] = {}
        if request.query.get("with_id") == "true":
            body["id"] = book.update_id
        body["current"] = time.time()
        body["update"] = book.ts_ms / 1000.0
        body["asks"] = [{"p": book.price_str(t), "s": _size(q, dec)} for t, q in asks]
        body["bids"] = [{"p": book.price_str(t), "s": _size(q, dec)} for t, q in bids]
        return json_response(body)

    async def spot_tickers(self, request: web.Request) -> web.Response:
        pair = request.query.get("currency_pair")
        if pair is not None and pair != GATE_SPOT.symbol:
            raise GateError(400, "INVALID_CURRENCY_PAIR", "Invalid currency pair")
        book = _book_of(self.server, SPOT)
        bid, ask = book.best()
        trades = self.server.market_trades[GATE_SPOT.key]
        last = fmt_num(trades[-1].price) if trades else (fmt_num(book.mid() or 0.0))
        t: dict[str, Any] = {
            "currency_pair": GATE_SPOT.symbol,
            "last": last,
            "lowest_ask": book.price_str(ask[0]) if ask else "",
            "highest_bid": book.price_str(bid[0]) if bid else "",
            "change_percentage": "0",
            "base_volume": "0",
            "quote_volume": "0",
            "high_24h": last,
            "low_24h": last,
        }
        if pair is not None:
            t["lowest_size"] = book.qty_str(ask[1]) if ask else ""
            t["highest_size"] = book.qty_str(bid[1]) if bid else ""
        return json_response([t])

    async def futures_tickers(self, request: web.Request) -> web.Response:
        contract = request.query.get("contract")
        if contract is not None and contract != GATE_FUTURES.symbol:
            raise GateError(400, "CONTRACT_NOT_FOUND", "Contract not found")
        book = _book_of(self.server, FUT)
        bid, ask = book.best()
        mark, last = self._mark_and_last()
        dec = request.headers.get("X-Gate-Size-Decimal") == "1"
        rate = _rate_str(self.server.funding_rate)
        return json_response(
            [
                {
                    "contract": GATE_FUTURES.symbol,
                    "last": last,
                    "change_percentage": "0",
                    "total_size": "0",
                    "volume_24h": "0",
                    "volume_24h_base": "0",
                    "volume_24h_quote": "0",
                    "volume_24h_settle": "0",
                    "mark_price": mark,
                    "funding_rate": rate,
                    "funding_rate_indicative": rate,
                    "index_price": mark,
                    "highest_bid": book.price_str(bid[0]) if bid else "",
                    "highest_size": _size(bid[1], dec) if bid else "",
                    "lowest_ask": book.price_str(ask[0]) if ask else "",
                    "lowest_size": _size(ask[1], dec) if ask else "",
                    "high_24h": last,
                    "low_24h": last,
                }
            ]
        )

    def _mark_and_last(self) -> tuple[str, str]:
        """(mark price, last price) of the USDT contract, USDT decimal strings: mark = index =
        the futures mid rounded to the 0.1 ``mark_price_round``; last = the last public trade's
        price (the mark before any trade)."""
        book = _book_of(self.server, FUT)
        mark = fmt_num(round(book.mid() or 0.0, 1), 1)
        trades = self.server.market_trades[GATE_FUTURES.key]
        return mark, (fmt_num(trades[-1].price) if trades else mark)

    def futures_ticker_push_json(self) -> dict[str, str]:
        """One ``futures.tickers`` push item (PROTOCOLS.md §3.4; the fields and string types of
        the Gate docs' "Tickers notification" example in
        ``shared/data/api/gateio/docs_examples/gate_futures_ws_examples.json``): prices USDT,
        ``funding_rate`` / ``funding_rate_indicative`` fractions per funding interval (both the
        server's :attr:`~cexarb.venues.sim.server.SimServer.funding_rate`), sizes and volumes
        "0" (the simulator keeps no 24 h statistics)."""
        mark, last = self._mark_and_last()
        rate = _rate_str(self.server.funding_rate)
        return {
            "contract": GATE_FUTURES.symbol,
            "last": last,
            "change_percentage": "0",
            "funding_rate": rate,
            "funding_rate_indicative": rate,
            "mark_price": mark,
            "index_price": mark,
            "total_size": "0",
            "volume_24h": "0",
            "volume_24h_btc": "0",
            "volume_24h_usd": "0",
            "quanto_base_rate": "",
            "volume_24h_quote": "0",
            "volume_24h_settle": "0",
            "volume_24h_base": "0",
            "low_24h": last,
            "high_24h": last,
        }

    def push_tickers(self) -> int:
        """Send a ``futures.tickers`` push to every subscription now (the funding rate changed:
        :meth:`SimServer.set_funding_rate`); returns how many were sent."""
        n = 0
        for session in list(self.sessions):
            for sub in list(session.ticker_subs.values()):
                n += sub.push(force=True)
        return n

    async def spot_trades(self, request: web.Request) -> web.Response:
        if request.query.get("currency_pair") != GATE_SPOT.symbol:
            raise GateError(400, "INVALID_CURRENCY_PAIR", "Invalid currency pair")
        limit = self._limit(request, 100, 1000)
        trades = self.server.market_trades[GATE_SPOT.key][-limit:][::-1]
        return json_response([_spot_public_trade(t) for t in trades])

    async def futures_trades(self, request: web.Request) -> web.Response:
        if request.query.get("contract") != GATE_FUTURES.symbol:
            raise GateError(400, "CONTRACT_NOT_FOUND", "Contract not found")
        limit = self._limit(request, 100, 1000)
        dec = request.headers.get("X-Gate-Size-Decimal") == "1"
        trades = self.server.market_trades[GATE_FUTURES.key][-limit:][::-1]
        return json_response([_futures_public_trade(t, dec) for t in trades])

    async def funding_rate(self, request: web.Request) -> web.Response:
        if request.query.get("contract") != GATE_FUTURES.symbol:
            raise GateError(400, "CONTRACT_NOT_FOUND", "Contract not found")
        limit = self._limit(request, 100, 1000)
        rows = [{"t": t, "r": _rate_str(r)} for t, r in reversed(self.server.funding_history)][:limit]
        if not rows:  # the last settlement before the server started, at the current rate
            rows = [
                {
                    "t": self.server.funding_next_s - FUNDING_INTERVAL_S,
                    "r": _rate_str(self.server.funding_rate),
                }
            ]
        return json_response(rows)

    # =========================================================================================
    # private REST: account

    async def account_detail(self, request: web.Request, account: SimAccount, body: bytes) -> web.Response:
        return json_response(
            {
                "user_id": account.uid,
                "ip_whitelist": [],
                "currency_pairs": [],
                "key": {"mode": 1},
                "tier": 0,
                "tier_expire_time": "0001-01-01T00:00:00Z",
                "copy_trading_role": 0,
            }
        )

    async def spot_accounts(self, request: web.Request, account: SimAccount, body: bytes) -> web.Response:
        want = request.query.get("currency")
        venue = account.venues[SPOT]
        out = []
        for asset, bal in venue.balances_now().items():
            if want is not None and asset != want:
                continue
            out.append(
                {
                    "currency": asset,
                    "available": fmt_num(bal.free),
                    "locked": fmt_num(bal.locked),
                    "update_id": venue.n_orders + venue.n_fills,
                }
            )
        return json_response(out)

    async def spot_fee(self, request: web.Request, account: SimAccount, body: bytes) -> web.Response:
        return json_response(
            {
                "user_id": account.uid,
                "taker_fee": fmt_num(GATE_SPOT.taker_fee),
                "maker_fee": fmt_num(GATE_SPOT.maker_fee),
                "gt_discount": False,
                "gt_taker_fee": "0",
                "gt_maker_fee": "0",
                "loan_fee": "0.18",
                "point_type": "1",
                "futures_taker_fee": fmt_num(GATE_FUTURES.taker_fee),
                "futures_maker_fee": fmt_num(GATE_FUTURES.maker_fee),
                "delivery_taker_fee": fmt_num(GATE_FUTURES.taker_fee),
                "delivery_maker_fee": fmt_num(GATE_FUTURES.maker_fee),
                "debit_fee": 3,
                "currency_pair": request.query.get("currency_pair", ""),
            }
        )

    def futures_account_json(self, account: SimAccount) -> dict[str, Any]:
        venue = account.venues[FUT]
        bal = venue.balances_now().get("USDT")
        free = bal.free if bal else 0.0
        locked = bal.locked if bal else 0.0
        pos = venue._positions.get(GATE_FUTURES.key)  # read only
        mark = _book_of(self.server, FUT).mid() or 0.0
        pos_margin = 0.0
        upnl = 0.0
        if pos is not None and pos.qty != 0.0:
            pos_margin = GATE_FUTURES.notional(pos.qty, pos.avg_price) / FUTURES_LEVERAGE
            upnl = GATE_FUTURES.unrealized_pnl(pos.qty, pos.avg_price, mark)
        return {
            "user": account.uid,
            "currency": "USDT",
            "total": fmt_num(free + locked),
            "unrealised_pnl": fmt_num(upnl),
            "position_margin": fmt_num(pos_margin),
            "order_margin": fmt_num(max(locked - pos_margin, 0.0)),
            "available": fmt_num(free),
            "point": "0",
            "bonus": "0",
            "in_dual_mode": False,
            "enable_credit": False,
            "position_initial_margin": fmt_num(pos_margin),
            "maintenance_margin": "0",
            "enable_evolved_classic": True,
            "cross_initial_margin": "0",
            "cross_maintenance_margin": "0",
            "cross_order_margin": "0",
            "cross_unrealised_pnl": "0",
            "cross_available": fmt_num(free),
            "cross_margin_balance": fmt_num(free + locked),
            "isolated_position_margin": fmt_num(pos_margin),
            "history": {
                "dnw": "0",
                "pnl": "0",
                "fee": "0",
                "refr": "0",
                "fund": "0",
                "point_dnw": "0",
            },
        }

    async def futures_accounts(self, request: web.Request, account: SimAccount, body: bytes) -> web.Response:
        return json_response(self.futures_account_json(account))

    def position_json(self, account: SimAccount, dec: bool) -> dict[str, Any]:
        venue = account.venues[FUT]
        pos = venue._positions.get(GATE_FUTURES.key)  # read only
        qty = pos.qty if pos is not None else 0.0
        entry = pos.avg_price if pos is not None else 0.0
        mark = _book_of(self.server, FUT).mid() or 0.0
        value = abs(qty) * GATE_FUTURES_QUANTO * mark
        pending = sum(1 for r in account.orders[FUT].values() if not account.order_state(r).status.is_terminal)
        return {
            "user": account.uid,
            "contract": GATE_FUTURES.symbol,
            "size": _size(qty, dec),
            "leverage": fmt_num(FUTURES_LEVERAGE),
            "risk_limit": "1000000",
            "leverage_max": "125",
            "maintenance_rate": "0.004",
            "value": fmt_num(value),
            "margin": fmt_num(GATE_FUTURES.notional(qty, entry) / FUTURES_LEVERAGE if qty else 0.0),
            "entry_price": fmt_num(entry),
            "liq_price": "0",
            "mark_price": fmt_num(round(mark, 1), 1),
            "initial_margin": "0",
            "maintenance_margin": "0",
            "unrealised_pnl": fmt_num(GATE_FUTURES.unrealized_pnl(qty, entry, mark) if qty else 0.0),
            "realised_pnl": fmt_num((pos.realized_pnl - pos.fees + pos.funding) if pos is not None else 0.0),
            "pnl_pnl": fmt_num(pos.realized_pnl if pos is not None else 0.0),
            "pnl_fund": fmt_num(pos.funding if pos is not None else 0.0),
            "pnl_fee": fmt_num(-pos.fees if pos is not None else 0.0),
            "history_pnl": "0",
            "last_close_pnl": "0",
            "realised_point": "0",
            "history_point": "0",
            "adl_ranking": 5,
            "pending_orders": pending,
            "close_order": None,
            "mode": "single",
            "cross_leverage_limit": "0",
            "update_time": int(time.time()),
            "update_id": account.position_update_id,
            "open_time": 0,
        }

    async def positions(self, request: web.Request, account: SimAccount, body: bytes) -> web.Response:
        dec = request.headers.get("X-Gate-Size-Decimal") == "1"
        pos = self.position_json(account, dec)
        if request.query.get("holding") == "true" and float(pos["size"]) == 0.0:
            return json_response([])
        return json_response([pos])

    async def position(self, request: web.Request, account: SimAccount, body: bytes) -> web.Response:
        if request.match_info["contract"] != GATE_FUTURES.symbol:
            raise GateError(400, "CONTRACT_NOT_FOUND", "Contract not found")
        dec = request.headers.get("X-Gate-Size-Decimal") == "1"
        return json_response(self.position_json(account, dec))

    async def futures_fee(self, request: web.Request, account: SimAccount, body: bytes) -> web.Response:
        return json_response(
            {
                GATE_FUTURES.symbol: {
                    "taker_fee": fmt_num(GATE_FUTURES.taker_fee),
                    "maker_fee": fmt_num(GATE_FUTURES.maker_fee),
                }
            }
        )

    # =========================================================================================
    # orders: JSON

    def spot_order_json(self, account: SimAccount, r: OrderRecord, event: str | None = None) -> dict[str, Any]:
        order = account.order_state(r)
        inst = GATE_SPOT
        filled = order.filled_qty
        filled_total = filled * order.avg_fill_price
        status, finish_as = _gate_status(order.status, order.reject_reason, r)
        if r.quote_amount is not None:
            left = fmt_num(max(r.quote_amount - filled_total, 0.0))
        else:
            left = inst.format_qty(max(r.lots - round(filled / inst.lot_size), 0))
        # Gate (no GT deduction): a buy pays its fee in the base received, a sell in the quote;
        # rebated_fee_currency is the other one (live ccxt capture: buy "fee_currency": "LTC",
        # "rebated_fee_currency": "USDT"; sell "USDT" / "BTC")
        if r.side is Side.BUY:
            fee = _base_fee_str(_spot_base_fees(account).get(r.key, 0.0))
            fee_currency, rebated_currency = inst.base, inst.quote
        else:
            fee, fee_currency, rebated_currency = fmt_num(order.fees), inst.quote, inst.base
        out: dict[str, Any] = {
            "id": str(r.order_id),
            "text": r.text or "api",
            "amend_text": "-",
            "create_time": str(r.create_ms // 1000),
            "update_time": str(r.update_ms // 1000),
            "create_time_ms": r.create_ms,
            "update_time_ms": r.update_ms,
            "status": status,
            "currency_pair": inst.symbol,
            "type": r.wire_type,
            "account": "spot",
            "side": r.side.value,
            "amount": r.amount_str,
            "price": r.price_str,
            "time_in_force": r.tif,
            "iceberg": "0",
            "left": left,
            "filled_amount": fmt_num(filled),
            "fill_price": fmt_num(filled_total),
            "filled_total": fmt_num(filled_total),
            "avg_deal_price": fmt_num(order.avg_fill_price) if filled > 0 else "0",
            "fee": fee,
            "fee_currency": fee_currency,
            "point_fee": "0",
            "gt_fee": "0",
            "gt_maker_fee": "0",
            "gt_taker_fee": "0",
            "gt_discount": False,
            "rebated_fee": "0",
            "rebated_fee_currency": rebated_currency,
            "finish_as": finish_as,
            "stp_id": 0,
            "stp_act": "-",
        }
        if event is not None:
            out["event"] = event
            out["user"] = account.uid
        return out

    def futures_order_json(self, account: SimAccount, r: OrderRecord, dec: bool) -> dict[str, Any]:
        order = account.order_state(r)
        sign = r.side.sign
        filled = round(order.filled_qty)
        status, finish_as = _gate_status(order.status, order.reject_reason, r)
        finished = status != "open"
        out: dict[str, Any] = {
            "id": r.order_id,
            "user": account.uid,
            "contract": GATE_FUTURES.symbol,
            "create_time": r.create_ms / 1000.0,
            "create_time_ms": r.create_ms,
            "update_time": r.update_ms / 1000.0,
            "size": _size(sign * r.lots, dec),
            "iceberg": _size(0, dec),
            "left": _size(sign * (r.lots - filled), dec),
            "price": r.price_str,
            "fill_price": fmt_num(order.avg_fill_price) if filled else "0",
            "mkfr": fmt_num(GATE_FUTURES.maker_fee),
            "tkfr": fmt_num(GATE_FUTURES.taker_fee),
            "tif": r.tif,
            "refu": 0,
            "is_reduce_only": r.reduce_only,
            "is_close": r.is_close,
            "is_liq": False,
            "text": r.text or "api",
            "status": "finished" if finished else "open",
            "finish_as": finish_as if finished else "_new",
            "stp_id": 0,
            "stp_act": "-",
            "amend_text": "-",
            "biz_info": "-",
        }
        if finished:
            out["finish_time"] = r.update_ms / 1000.0
            out["finish_time_ms"] = r.update_ms
        return out

    # =========================================================================================
    # orders: place / cancel / query

    def _ack_faults(self, request: web.Request, venue: str) -> tuple[float, bool]:
        """Take the armed ``delay_ack`` / ``lose_ack`` of an accepted placement (call it after
        every rejection check: a refused order leaves them armed for the next one)."""
        delay = self.server.faults.take(venue, FaultKind.DELAY_ACK)
        # with the path: a lose_ack armed for cancel paths (a path prefix) is not a placement's
        lose = self.server.faults.take(venue, FaultKind.LOSE_ACK, request.path)
        return (delay.seconds if delay else 0.0), lose is not None

    def _error_after_execute(self, venue: str) -> None:
        """An armed ``http_error_after_execute`` fault (:meth:`SimServer.http_error_after_execute`)
        on an accepted (executed) placement: answer its 5xx instead of the order."""
        status = self.server.take_error_after_execute(venue)
        if status is not None:
            raise GateError(status, "SERVER_ERROR", "Internal server error")

    def _reject_fault(self, venue: str) -> None:
        fault = self.server.faults.take(venue, FaultKind.REJECT_ORDER)
        if fault is not None:
            raise GateError(
                400,
                fault.label or "INVALID_PARAM_VALUE",
                fault.message or "order rejected (simulated fault)",
            )

    async def _reply_order(
        self,
        request: web.Request,
        venue: str,
        body: dict[str, Any],
        delay_s: float,
        lose: bool,
    ) -> web.StreamResponse:
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        if lose:
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError()
        return json_response(body, status=201)

    def _check_text(self, account: SimAccount, venue: str, text: str | None) -> str:
        if text is None or text == "":
            return ""
        if not text.startswith("t-") or not codec._TEXT_BODY.fullmatch(text[2:]):
            raise GateError(
                400,
                "INVALID_PARAM_VALUE",
                "text must start with 't-' followed by 1-28 of [0-9A-Za-z_.-]",
            )
        existing = account.record_by_text(venue, text)
        if existing is not None and not account.order_state(existing).status.is_terminal:
            raise GateError(400, "INVALID_PARAM_VALUE", f"duplicate text {text} of an open order")
        return text

    def _reject_from_venue(self, account: SimAccount, record: OrderRecord, venue: str) -> None:
        """Map a venue-side rejection to Gate's error (and forget the record: it never existed)."""
        order = account.order_state(record)
        if order.status is not OrderStatus.REJECTED:
            return
        account.orders[venue].pop(record.order_id, None)
        if record.text:
            account.by_text[venue].pop(record.text, None)
        reason = order.reject_reason or ""
        spot = venue == SPOT
        if reason == RejectReason.INSUFFICIENT_BALANCE:
            if spot:
                raise GateError(400, "BALANCE_NOT_ENOUGH", "Not enough balance")
            raise GateError(400, "INSUFFICIENT_AVAILABLE", "Insufficient available balance")
        if reason == RejectReason.POST_ONLY_WOULD_TAKE:
            if spot:
                raise GateError(
                    400,
                    "POC_FILL_IMMEDIATELY",
                    "Order would match and take immediately so it's cancelled",
                )
            raise GateError(
                400,
                "ORDER_POC_IMMEDIATE",
                "Order would match and take immediately so it's cancelled",
            )
        if reason == RejectReason.MIN_NOTIONAL:
            raise GateError(
                400,
                "INVALID_PARAM_VALUE",
                f"Your order size is too small. The minimum is {fmt_num(GATE_SPOT.min_notional)} USDT",
            )
        if reason in (RejectReason.NO_LIQUIDITY, RejectReason.BOOK_INVALID):
            raise GateError(400, "INVALID_PARAM_VALUE", "no liquidity to fill the market order")
        raise GateError(400, "INVALID_PARAM_VALUE", f"order rejected: {reason}")

    async def spot_place(self, request: web.Request, account: SimAccount, raw: bytes) -> web.StreamResponse:
        body = codec.decode_spot_order_body(raw)
        if body.currency_pair != GATE_SPOT.symbol:
            raise GateError(
                400,
                "INVALID_CURRENCY_PAIR",
                f"Invalid currency pair {body.currency_pair[:32]}",
            )
        if body.account not in ("spot", "unified", "cross_margin"):
            raise GateError(400, "INVALID_PARAM_VALUE", f"account {body.account[:16]} not supported")
        if body.side not in ("buy", "sell"):
            raise GateError(400, "INVALID_PARAM_VALUE", "side must be buy or sell")
        if body.type not in ("limit", "market"):
            raise GateError(400, "INVALID_PARAM_VALUE", "type must be limit or market")
        side = Side.BUY if body.side == "buy" else Side.SELL
        inst = GATE_SPOT
        text = self._check_text(account, SPOT, body.text)
        self._reject_fault(SPOT)
        quote_amount: float | None = None
        if body.type == "limit":
            tif_text = body.time_in_force or "gtc"
            if tif_text not in _SPOT_TIF:
                raise GateError(
                    400,
                    "INVALID_PARAM_VALUE",
                    f"time_in_force {tif_text[:8]} not supported (gtc, ioc, poc)",
                )
            if body.price is None:
                raise GateError(400, "INVALID_PARAM_VALUE", "price is required for a limit order")
            price = _dec(body.price, "price")
            if price <= 0:
                raise GateError(400, "INVALID_PARAM_VALUE", "price must be > 0")
            ticks = _steps(price, inst.tick_size, "price")
            amount = _dec(body.amount, "amount")
            if amount <= 0:
                raise GateError(400, "INVALID_PARAM_VALUE", "amount must be > 0")
            lots = _steps(amount, inst.lot_size, "amount")
            request_obj = OrderRequest.create(
                inst,
                side,
                inst.lots_to_qty(lots),
                price_ticks=ticks,
                time_in_force=_SPOT_TIF[tif_text],
            )
            price_str = inst.format_price(ticks)
            amount_str = inst.format_qty(lots)
        else:
            tif_text = body.time_in_force if body.time_in_force in ("ioc", "fok") else "ioc"
            if tif_text == "fok":
                raise GateError(
                    400,
                    "INVALID_PARAM_VALUE",
                    "time_in_force fok is not supported by the simulator",
                )
            amount = _dec(body.amount, "amount")
            if amount <= 0:
                raise GateError(400, "INVALID_PARAM_VALUE", "amount must be > 0")
            if side is Side.BUY:  # market buy: amount is quote to spend
                quote_amount = float(amount)
                lots = _lots_for_quote(_book_of(self.server, SPOT), quote_amount)
                if lots <= 0:
                    raise GateError(
                        400,
                        "INVALID_PARAM_VALUE",
                        "market buy amount buys less than one lot",
                    )
                amount_str = fmt_num(quote_amount)
            else:
                lots = _steps(amount, inst.lot_size, "amount")
                amount_str = inst.format_qty(lots)
            request_obj = OrderRequest.create(inst, side, inst.lots_to_qty(lots), time_in_force=TimeInForce.IOC)
            price_str = "0"
        oid = self.server.next_order_id()
        request_obj = msgspec.structs.replace(request_obj, client_order_id=str(oid))
        record = OrderRecord(
            order_id=oid,
            text=text,
            venue=SPOT,
            instrument=inst,
            side=side,
            type=OrderType.LIMIT if body.type == "limit" else OrderType.MARKET,
            tif=tif_text,
            wire_type=body.type,
            price_str=price_str,
            amount_str=amount_str,
            lots=lots,
            quote_amount=quote_amount,
        )
        self.server.place(account, record, request_obj)
        self._reject_from_venue(account, record, SPOT)
        self._error_after_execute(SPOT)
        delay, lose = self._ack_faults(request, SPOT)  # after the rejection: it keeps them armed
        return await self._reply_order(request, SPOT, self.spot_order_json(account, record), delay, lose)

    async def futures_place(self, request: web.Request, account: SimAccount, raw: bytes) -> web.StreamResponse:
        body = codec.decode_futures_order_body(raw)
        dec = request.headers.get("X-Gate-Size-Decimal") == "1"
        inst = GATE_FUTURES
        if body.contract != inst.symbol:
            raise GateError(400, "CONTRACT_NOT_FOUND", "Contract not found")
        size_d = _dec(str(body.size), "size")
        if size_d != size_d.to_integral_value():
            raise GateError(
                400,
                "INVALID_PARAM_VALUE",
                f"size {size_d} must be a whole number of contracts",
            )
        size = int(size_d)
        venue = account.venues[FUT]
        pos = venue._positions.get(inst.key)  # read only
        pos_lots = round(pos.qty) if pos is not None else 0
        if body.close:
            if size != 0:
                raise GateError(400, "INVALID_PARAM_VALUE", "size must be 0 when close is set")
            if pos_lots == 0:
                raise GateError(400, "POSITION_EMPTY", "Position is empty")
            size = -pos_lots
        if size == 0:
            raise GateError(400, "SIZE_TOO_SMALL", "Order size too small")
        reduce_only = body.reduce_only or body.close
        side = Side.BUY if size > 0 else Side.SELL
        if reduce_only and (pos_lots == 0 or (pos_lots > 0) == (size > 0)):
            raise GateError(
                400,
                "INCREASE_POSITION",
                "reduce-only order would increase the position",
            )
        text = self._check_text(account, FUT, body.text)
        self._reject_fault(FUT)
        price = _dec(body.price, "price")
        tif_text = body.tif or "gtc"
        if tif_text == "fok":
            raise GateError(400, "INVALID_PARAM_VALUE", "tif fok is not supported by the simulator")
        if tif_text not in _SPOT_TIF:
            raise GateError(
                400,
                "INVALID_PARAM_VALUE",
                f"tif {tif_text[:8]} not supported (gtc, ioc, poc)",
            )
        lots = abs(size)
        if price == 0:
            if tif_text != "ioc":
                raise GateError(
                    400,
                    "INVALID_PARAM_VALUE",
                    "market order (price 0) must use tif ioc",
                )
            request_obj = OrderRequest.create(
                inst,
                side,
                float(lots),
                time_in_force=TimeInForce.IOC,
                reduce_only=reduce_only,
            )
            price_str = "0"
            otype = OrderType.MARKET
        else:
            if price < 0:
                raise GateError(400, "INVALID_PARAM_VALUE", "price must be >= 0")
            ticks = _steps(price, inst.tick_size, "price")
            request_obj = OrderRequest.create(
                inst,
                side,
                float(lots),
                price_ticks=ticks,
                time_in_force=_SPOT_TIF[tif_text],
                reduce_only=reduce_only,
            )
            price_str = inst.format_price(ticks)
            otype = OrderType.LIMIT
        oid = self.server.next_order_id()
        request_obj = msgspec.structs.replace(request_obj, client_order_id=str(oid))
        record = OrderRecord(
            order_id=oid,
            text=text,
            venue=FUT,
            instrument=inst,
            side=side,
            type=otype,
            tif=tif_text,
            wire_type="limit" if otype is OrderType.LIMIT else "market",
            price_str=price_str,
            amount_str=str(size),
            lots=lots,
            reduce_only=reduce_only,
            is_close=body.close,
        )
        self.server.place(account, record, request_obj)
        self._reject_from_venue(account, record, FUT)
        self._error_after_execute(FUT)
        delay, lose = self._ack_faults(request, FUT)  # after the rejection: it keeps them armed
        return await self._reply_order(request, FUT, self.futures_order_json(account, record, dec), delay, lose)

    def _find(self, account: SimAccount, venue: str, order_id: str) -> OrderRecord:
        record = (
            account.record_by_text(venue, order_id) if order_id.startswith("t-") else account.record(venue, order_id)
        )
        if record is None:
            raise GateError(404, "ORDER_NOT_FOUND", "Order not found")
        return record

    async def _cancel(self, account: SimAccount, venue: str, record: OrderRecord) -> bool:
        sim = account.venues[venue]
        return await sim.cancel_order(record.instrument.key, record.key)

    async def spot_order_get(self, request: web.Request, account: SimAccount, body: bytes) -> web.Response:
        record = self._find(account, SPOT, request.match_info["order_id"])
        return json_response(self.spot_order_json(account, record))

    def _cancel_reply_lost(self, request: web.Request, venue: str) -> bool:
        """A ``lose_ack`` fault armed **with a path prefix** matching this cancel's path: the
        cancel is executed and its reply lost (the connection dropped). ``lose_ack`` faults
        without a prefix stay placement faults (:mod:`cexarb.venues.sim.faults`)."""
        path = request.path
        faults = self.server.faults
        # the fault take() would hand out for this path: only a prefixed one is a cancel's
        first = next(
            (
                f
                for f in faults.armed
                if f.venue == venue
                and f.kind is FaultKind.LOSE_ACK
                and (not f.path_prefix or path.startswith(f.path_prefix))
            ),
            None,
        )
        if first is None or not first.path_prefix:
            return False
        return faults.take(venue, FaultKind.LOSE_ACK, path) is not None

    async def spot_order_cancel(self, request: web.Request, account: SimAccount, body: bytes) -> web.StreamResponse:
        record = self._find(account, SPOT, request.match_info["order_id"])
        if account.order_state(record).status.is_terminal:
            raise GateError(400, "ORDER_CLOSED", "Order already closed")
        lose = self._cancel_reply_lost(request, SPOT)
        await self._cancel(account, SPOT, record)
        if lose:
            return await self._reply_order(request, SPOT, {}, 0.0, True)
        return json_response(self.spot_order_json(account, record))

    async def spot_orders_list(self, request: web.Request, account: SimAccount, body: bytes) -> web.Response:
        pair = request.query.get("currency_pair")
        if pair != GATE_SPOT.symbol:
            raise GateError(400, "INVALID_CURRENCY_PAIR", "Invalid currency pair")
        status = request.query.get("status", "open")
        limit = self._limit(request, 100, 1000)
        rows = self._records(account, SPOT, status)[:limit]
        return json_response([self.spot_order_json(account, r) for r in rows])

    def _records(self, account: SimAccount, venue: str, status: str) -> list[OrderRecord]:
        if status not in ("open", "finished"):
            raise GateError(400, "INVALID_PARAM_VALUE", "status must be open or finished")
        want_open = status == "open"
        rows = [
            r for r in account.orders[venue].values() if (not account.order_state(r).status.is_terminal) == want_open
        ]
        rows.sort(key=lambda r: r.order_id, reverse=not want_open)
        return rows

    async def spot_open_orders(self, request: web.Request, account: SimAccount, body: bytes) -> web.Response:
        rows = self._records(account, SPOT, "open")
        if not rows:
            return json_response([])
        return json_response(
            [
                {
                    "currency_pair": GATE_SPOT.symbol,
                    "total": len(rows),
                    "orders": [self.spot_order_json(account, r) for r in rows],
                }
            ]
        )

    async def spot_cancel_all(self, request: web.Request, account: SimAccount, body: bytes) -> web.Response:
        pair = request.query.get("currency_pair")
        if pair is not None and pair != GATE_SPOT.symbol:
            raise GateError(400, "INVALID_CURRENCY_PAIR", "Invalid currency pair")
        side = request.query.get("side")
        out = []
        for r in self._records(account, SPOT, "open"):
            if side is not None and r.side.value != side:
                continue
            await self._cancel(account, SPOT, r)
            row = self.spot_order_json(account, r)
            row["succeeded"] = True
            out.append(row)
        return json_response(out)

    async def futures_order_get(self, request: web.Request, account: SimAccount, body: bytes) -> web.Response:
        record = self._find(account, FUT, request.match_info["order_id"])
        dec = request.headers.get("X-Gate-Size-Decimal") == "1"
        return json_response(self.futures_order_json(account, record, dec))

    async def futures_order_cancel(self, request: web.Request, account: SimAccount, body: bytes) -> web.StreamResponse:
        record = self._find(account, FUT, request.match_info["order_id"])
        if account.order_state(record).status.is_terminal:
            raise GateError(400, "ORDER_FINISHED", "Order finished")
        lose = self._cancel_reply_lost(request, FUT)
        await self._cancel(account, FUT, record)
        if lose:
            return await self._reply_order(request, FUT, {}, 0.0, True)
        dec = request.headers.get("X-Gate-Size-Decimal") == "1"
        return json_response(self.futures_order_json(account, record, dec))

    async def futures_orders_list(self, request: web.Request, account: SimAccount, body: bytes) -> web.Response:
        contract = request.query.get("contract")
        if contract is not None and contract != GATE_FUTURES.symbol:
            raise GateError(400, "CONTRACT_NOT_FOUND", "Contract not found")
        status = request.query.get("status", "open")
        limit = self._limit(request, 100, 1000)
        dec = request.headers.get("X-Gate-Size-Decimal") == "1"
        rows = self._records(account, FUT, status)[:limit]
        return json_response([self.futures_order_json(account, r, dec) for r in rows])

    async def futures_cancel_all(self, request: web.Request, account: SimAccount, body: bytes) -> web.Response:
        contract = request.query.get("contract")
        if contract is not None and contract != GATE_FUTURES.symbol:
            raise GateError(400, "CONTRACT_NOT_FOUND", "Contract not found")
        side = request.query.get("side")  # "ask" / "bid"
        dec = request.headers.get("X-Gate-Size-Decimal") == "1"
        out = []
        for r in self._records(account, FUT, "open"):
            if side == "ask" and r.side is not Side.SELL or side == "bid" and r.side is not Side.BUY:
                continue
            await self._cancel(account, FUT, r)
            out.append(self.futures_order_json(account, r, dec))
        return json_response(out)

    async def spot_my_trades(self, request: web.Request, account: SimAccount, body: bytes) -> web.Response:
        pair = request.query.get("currency_pair")
        if pair is not None and pair != GATE_SPOT.symbol:
            raise GateError(400, "INVALID_CURRENCY_PAIR", "Invalid currency pair")
        limit = self._limit(request, 100, 1000)
        order_id = request.query.get("order_id")
        fills = await account.venues[SPOT].fills(GATE_SPOT.key)
        rows = [
            self.spot_fill_json(account, f)
            for f in reversed(fills)
            if order_id is None or f.client_order_id == order_id
        ]
        return json_response(rows[:limit])

    async def futures_my_trades(self, request: web.Request, account: SimAccount, body: bytes) -> web.Response:
        contract = request.query.get("contract")
        if contract is not None and contract != GATE_FUTURES.symbol:
            raise GateError(400, "CONTRACT_NOT_FOUND", "Contract not found")
        limit = self._limit(request, 100, 1000)
        order_id = request.query.get("order")
        dec = request.headers.get("X-Gate-Size-Decimal") == "1"
        fills = await account.venues[FUT].fills(GATE_FUTURES.key)
        rows = [
            self.futures_fill_json(account, f, dec)
            for f in reversed(fills)
            if order_id is None or f.client_order_id == order_id
        ]
        return json_response(rows[:limit])

    def spot_fill_json(self, account: SimAccount, fill: Fill) -> dict[str, Any]:
        """One ``/spot/my_trades`` row (also a ``spot.usertrades`` item): ``fee`` in
        ``fee_currency`` -- base for a buy (the fee rate x the base amount), quote (USDT) for a
        sell, as Gate charges without GT deduction (PROTOCOLS.md §2.2)."""
        record = account.record(SPOT, fill.client_order_id)
        ms = fill.ts_ns // 1_000_000
        inst = GATE_SPOT
        if fill.fee_base:  # the part the venue took in the base (SimVenue buy_fee_in_base)
            fee, fee_currency = _base_fee_str(fill.fee_base), inst.base
        else:
            fee, fee_currency = fmt_num(fill.fee), inst.quote
        return {
            "id": str(_fill_seq(fill)),
            "create_time": str(ms // 1000),
            "create_time_ms": f"{ms}.000",
            "currency_pair": GATE_SPOT.symbol,
            "side": fill.side.value,
            "role": "maker" if fill.is_maker else "taker",
            "amount": fmt_num(fill.qty),
            "price": fmt_num(fill.price),
            "order_id": fill.client_order_id,
            "fee": fee,
            "fee_currency": fee_currency,
            "point_fee": "0",
            "gt_fee": "0",
            "amend_text": "-",
            "sequence_id": str(_fill_seq(fill)),
            "text": (record.text if record is not None and record.text else "api"),
        }

    def futures_fill_json(self, account: SimAccount, fill: Fill, dec: bool) -> dict[str, Any]:
        record = account.record(FUT, fill.client_order_id)
        ms = fill.ts_ns // 1_000_000
        return {
            "id": _fill_seq(fill),
            "trade_id": str(_fill_seq(fill)),
            "create_time": ms / 1000.0,
            "create_time_ms": ms,
            "contract": GATE_FUTURES.symbol,
            "order_id": fill.client_order_id,
            "size": _size(fill.side.sign * fill.qty, dec),
            "close_size": _size(0, dec),
            "price": fmt_num(fill.price),
            "role": "maker" if fill.is_maker else "taker",
            "text": (record.text if record is not None and record.text else "api"),
            "fee": fmt_num(fill.fee),
            "point_fee": "0",
        }

    # =========================================================================================
    # WebSocket

    async def ws_spot(self, request: web.Request) -> web.WebSocketResponse:
        return await self._ws(request, "spot")

    async def ws_futures(self, request: web.Request) -> web.WebSocketResponse:
        return await self._ws(request, "futures")

    async def _ws(self, request: web.Request, market: str) -> web.WebSocketResponse:
        venue = SPOT if market == "spot" else FUT
        dec = request.headers.get("X-Gate-Size-Decimal") == "1"
        session: _GateWsSession | None = None

        def on_open(conn: WsConn) -> None:
            nonlocal session
            session = _GateWsSession(self, conn, market, dec)
            self.sessions.add(session)
            conn.cleanups.append(lambda: self.sessions.discard(session) if session is not None else None)

        def on_message(conn: WsConn, kind: WSMsgType, data: bytes | str) -> None:
            if session is not None:
                session.on_message(data)

        return await self.server.serve_ws(request, venue, on_open, on_message)

    def push_full(self, venue: str) -> int:
        """Send a ``full: true`` push on every ``*.order_book_update`` / ``*.obu`` subscription of
        ``venue`` now (the 2025 reset semantics); returns how many were sent."""
        n = 0
        for session in list(self.sessions):
            if session.venue == venue:
                n += session.push_full()
        return n


class _PairOnly(msgspec.Struct):
    currency_pair: str = ""


_PAIR_ONLY = msgspec.json.Decoder(_PairOnly)


def _currency_pair_of(body: bytes) -> str:
    """The ``currency_pair`` of a spot order body, for the per-market placement window ("" when
    the body is not an order: the handler then answers its 400)."""
    try:
        return _PAIR_ONLY.decode(body).currency_pair
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ""


class _RateLimited(Exception):
    def __init__(self, limit: int, reset: float) -> None:
        super().__init__("rate limited")
        self.limit = limit
        self.reset = reset


def _rate_str(rate: float) -> str:
    """A funding rate (fraction per interval) as Gate writes it: a plain decimal string, every
    digit of the float kept (``0.00042`` -> "0.00042", ``-1e-05`` -> "-0.00001")."""
    text = format(Decimal(repr(float(rate))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _base_fee_str(fee: float) -> str:
    """A base-currency fee (e.g. BTC) as a plain decimal string; 12 decimals keep the fee of one
    1e-6 lot at a 0.2 % rate (2e-9) and the digits Gate shows ("0.0000028704")."""
    return fmt_num(fee, 12)


def _spot_base_fees(account: SimAccount) -> Mapping[str, float]:
    """Each spot buy order's fee so far in base units, by client order id (``SimVenue.base_fees``)."""
    venue = account.venues[SPOT]
    return venue.base_fees


def _size(value: float, dec: bool) -> int | str:
    n = round(value)
    return str(n) if dec else n


def _lots_for_quote(book: VenueBook, quote: float) -> int:
    """Base lots a market buy spending ``quote`` gets by walking the asks (floored)."""
    inst = book.instrument
    _, asks = book.top(10_000)
    remaining = quote
    lots = 0
    for ticks, qty in asks:
        price = book.price(ticks)
        level_lots = int(qty / inst.lot_size + 1e-9)
        affordable = int(remaining / (price * inst.lot_size) + 1e-9)
        take = min(level_lots, affordable)
        lots += take
        remaining -= take * inst.lot_size * price
        if take < level_lots:
            break
    return lots


def _gate_status(status: OrderStatus, reason: str | None, r: OrderRecord) -> tuple[str, str]:
    """(spot ``status``, ``finish_as``) for a venue status."""
    if not status.is_terminal:
        return "open", "open"
    if status is OrderStatus.FILLED:
        return "closed", "filled"
    if status is OrderStatus.REJECTED:
        return (
            "cancelled",
            "poc" if reason == RejectReason.POST_ONLY_WOULD_TAKE else "cancelled",
        )
    if r.tif == "ioc" or r.type is OrderType.MARKET:
        return "cancelled", "ioc"
    return "cancelled", "cancelled"


def _spot_public_trade(t: TradeTick) -> dict[str, Any]:
    return {
        "id": str(t.trade_id),
        "create_time": str(t.ts_ms // 1000),
        "create_time_ms": f"{t.ts_ms}.000",
        "currency_pair": GATE_SPOT.symbol,
        "side": "buy" if t.taker_is_buy else "sell",
        "amount": fmt_num(t.qty),
        "price": fmt_num(t.price),
        "sequence_id": str(t.trade_id),
    }


def _futures_public_trade(t: TradeTick, dec: bool) -> dict[str, Any]:
    return {
        "id": t.trade_id,
        "create_time": t.ts_ms // 1000,
        "create_time_ms": t.ts_ms,
        "contract": GATE_FUTURES.symbol,
        "size": _size(t.qty if t.taker_is_buy else -t.qty, dec),
        "price": fmt_num(t.price),
        "is_internal": False,
    }


# =============================================================================================
# WebSocket session


class _GateWsSession:
    """Subscriptions of one Gate WebSocket (spot or futures)."""

    def __init__(self, handlers: GateHandlers, conn: WsConn, market: str, dec: bool) -> None:
        self.h = handlers
        self.server = handlers.server
        self.conn = conn
        self.market = market
        self.venue = SPOT if market == "spot" else FUT
        self.dec = dec
        self.book = _book_of(self.server, self.venue)
        self.subs: dict[tuple[str, str], Callable[[], None]] = {}
        self.book_subs: dict[tuple[str, str], _BookSub] = {}
        self.ticker_subs: dict[tuple[str, str], _TickerSub] = {}
        conn.cleanups.append(self.close)

    def close(self) -> None:
        subs, self.subs = self.subs, {}
        for cleanup in subs.values():
            cleanup()
        self.book_subs.clear()
        self.ticker_subs.clear()

    def _send(self, obj: Any, *, depth: bool = False) -> None:
        self.conn.send(_JSON.encode(obj).decode(), depth=depth)

    def _error(self, channel: str, event: str, code: int, message: str, req_id: int | None) -> None:
        self.conn.send(
            codec.encode_ws_error(
                channel,
                event,
                code,
                message,
                time_s=int(time.time()),
                request_id=req_id,
            ).decode()
        )

    def on_message(self, data: bytes | str) -> None:
        try:
            req = codec.decode_ws_request(data)
        except codec.GateCodecError:
            self._error("", "", 1, "invalid request body", None)
            return
        channel = req.channel
        prefix = self.market + "."
        topic = channel[len(prefix) :] if channel.startswith(prefix) else ""
        skew = req.time - time.time()
        if abs(skew) > MAX_CLOCK_SKEW_S and topic not in _PRIVATE_TOPICS:
            # every request's `time` must be within 60 s of the server's (PROTOCOLS.md §2.4);
            # signed (private) requests fail in the auth check with code 4
            self._error(
                channel,
                req.event,
                2,
                f"invalid argument: time {req.time} differs from server time by {abs(skew):.0f} s "
                f"(more than {MAX_CLOCK_SKEW_S} s)",
                req.id,
            )
            return
        if channel == prefix + "ping":
            now = time.time()
            self._send(
                {
                    "time": int(now),
                    "time_ms": int(now * 1000),
                    "channel": prefix + "pong",
                    "event": "",
                    "result": None,
                }
            )
            return
        if req.event not in ("subscribe", "unsubscribe"):
            self._error(channel, req.event, 1, f"unknown event {req.event[:16]!r}", req.id)
            return
        if not channel.startswith(prefix):
            self._error(channel, req.event, 2, f"unknown channel {channel[:40]}", req.id)
            return
        payload = req.payload if isinstance(req.payload, list) else []
        args = [str(x) for x in payload]
        try:
            if topic in _PRIVATE_TOPICS:
                account = self._auth(req, channel)
                self._private(req, topic, args, account)
            elif topic in ("order_book_update", "obu", "book_ticker", "trades") or (
                topic == "tickers" and self.market == "futures"
            ):
                self._public(req, topic, args)
            else:
                self._error(channel, req.event, 2, f"unknown channel {channel[:40]}", req.id)
        except _WsError as exc:
            self._error(channel, req.event, exc.code, exc.message, req.id)

    def _ack(self, req: codec.GateWsRequest) -> None:
        self.conn.send(codec.encode_ws_ack(req.channel, req.event, time_s=int(time.time()), request_id=req.id).decode())

    def _auth(self, req: codec.GateWsRequest, channel: str) -> SimAccount:
        auth = req.auth
        key = auth.KEY if auth is not None else ""
        account = self.server.account_for_key(key)
        if account is None:
            raise _WsError(4, "auth failed: invalid key")
        try:
            verify_ws_channel(
                account.api_secret,
                channel=channel,
                event=req.event,
                time_s=req.time,
                auth=msgspec.structs.asdict(auth) if auth is not None else None,
                expected_key=account.api_key,
                server_time_s=time.time(),
            )
        except GateAuthError as exc:
            raise _WsError(4, f"auth failed: {exc.message}") from None
        return account

    # ---- public ---------------------------------------------------------------------------------

    def _public(self, req: codec.GateWsRequest, topic: str, args: list[str]) -> None:
        symbol = GATE_SPOT.symbol if self.market == "spot" else GATE_FUTURES.symbol
        if topic == "obu":
            items = [(a, a) for a in args]
            for stream, _ in items:
                parts = stream.split(".")
                if len(parts) != 3 or parts[0] != "ob" or parts[1] != symbol or parts[2] not in ("50", "400"):
                    raise _WsError(
                        2,
                        f"invalid stream {stream[:40]} (ob.{symbol}.50 or ob.{symbol}.400)",
                    )
        elif topic == "order_book_update":
            if not args or args[0] != symbol:
                raise _WsError(
                    2,
                    f"unknown currency pair or contract {args[0][:32] if args else ''}",
                )
            interval = args[1] if len(args) > 1 else "100ms"
            if interval not in _BOOK_LEVELS:
                raise _WsError(2, f"invalid interval {interval[:8]!r} (20ms or 100ms)")
            if self.market == "spot":
                # spot: payload [pair, interval], every changed level, no level argument (§2.4)
                if len(args) > 2:
                    raise _WsError(2, f"invalid payload: spot.order_book_update takes [pair, interval], got level {args[2][:8]!r}")
                level = "100"
            else:
                # futures: [contract, interval, level]; level 100/50/20 at 100ms, 20 only at 20ms (§3.4)
                level = args[2] if len(args) > 2 else "100"
                if len(args) > 3 or level not in _BOOK_LEVELS[interval]:
                    allowed = "/".join(_BOOK_LEVELS[interval])
                    raise _WsError(
                        2, f"invalid level {level[:8]!r} for interval {interval!r} (level {allowed} at {interval})"
                    )
            items = [(f"{symbol}|{interval}|{level}", symbol)]
        else:
            if not args or any(a != symbol for a in args):
                raise _WsError(
                    2,
                    f"unknown currency pair or contract {args[0][:32] if args else ''}",
                )
            items = [(a, a) for a in args]
        channel = req.channel
        if req.event == "unsubscribe":
            for item, _ in items:
                cleanup = self.subs.pop((channel, item), None)
                self.book_subs.pop((channel, item), None)
                self.ticker_subs.pop((channel, item), None)
                if cleanup is not None:
                    cleanup()
            self._ack(req)
            return
        for item, _ in items:
            if (channel, item) in self.subs:
                raise _WsError(2, f"Alert sub {item}")
        self._ack(req)
        for item, _ in items:
            if topic in ("obu", "order_book_update"):
                sub = _BookSub(self, channel, topic, item)
                self.book_subs[(channel, item)] = sub
                self.subs[(channel, item)] = sub.close
                sub.start()
            elif topic == "book_ticker":
                self.subs[(channel, item)] = self._book_ticker(channel)
            elif topic == "tickers":
                ticker = _TickerSub(self, channel)
                self.ticker_subs[(channel, item)] = ticker
                self.subs[(channel, item)] = ticker.close
                ticker.start()
            else:
                self.subs[(channel, item)] = self._trades(channel)

    def push_full(self) -> int:
        n = 0
        for sub in list(self.book_subs.values()):
            sub.push_full()
            n += 1
        return n

    def _book_ticker(self, channel: str) -> Callable[[], None]:
        last: list[Any] = [None]
        book = self.book
        dec = self.dec

        def on_change(b: VenueBook, change: DepthChange) -> None:
            bid, ask = b.best()
            if (bid, ask) == last[0]:
                return
            last[0] = (bid, ask)
            if self.market == "spot":
                bq: Any = b.qty_str(bid[1]) if bid else ""
                aq: Any = b.qty_str(ask[1]) if ask else ""
            else:
                bq = _size(bid[1], dec) if bid else 0
                aq = _size(ask[1], dec) if ask else 0
            result = {
                "t": change.ts_ms,
                "u": change.last_id,
                "s": b.instrument.symbol,
                "b": b.price_str(bid[0]) if bid else "",
                "B": bq,
                "a": b.price_str(ask[0]) if ask else "",
                "A": aq,
            }
            self.conn.send(codec.encode_ws_update(channel, result, time_ms=change.ts_ms).decode())

        book.add_listener(on_change)
        return lambda: book.remove_listener(on_change)

    def _trades(self, channel: str) -> Callable[[], None]:
        key = self.book.key
        dec = self.dec
        spot = self.market == "spot"

        def on_trade(b: VenueBook, t: TradeTick) -> None:
            if b.key != key or self.conn.closed:
                return
            result: Any = _spot_public_trade(t) if spot else [_futures_public_trade(t, dec)]
            self.conn.send(codec.encode_ws_update(channel, result, time_ms=t.ts_ms).decode())

        listeners = self.server.market._trade_listeners
        listeners.append(on_trade)

        def cleanup() -> None:
            if on_trade in listeners:
                listeners.remove(on_trade)

        return cleanup

    # ---- private --------------------------------------------------------------------------------

    def _private(self, req: codec.GateWsRequest, topic: str, args: list[str], account: SimAccount) -> None:
        channel = req.channel
        if self.market == "futures":
            if not args or args[0] != str(account.uid):
                raise _WsError(2, "payload must start with your user id")
            filters = args[1:]
        else:
            filters = args
        symbol = self.book.instrument.symbol
        if topic in ("orders", "usertrades", "positions") and (
            not filters or any(f not in (symbol, "!all") for f in filters)
        ):
            raise _WsError(
                2,
                f"unknown currency pair or contract {filters[0][:32] if filters else ''}",
            )
        key = (channel, "private")
        if req.event == "unsubscribe":
            old = self.subs.pop(key, None)
            if old is not None:
                old()
            self._ack(req)
            return
        if key in self.subs:
            raise _WsError(2, f"Alert sub {channel}")
        self._ack(req)
        listeners = account.listeners[self.venue]
        fn = self._private_listener(channel, topic, account)
        listeners.append(fn)

        def cleanup() -> None:
            if fn in listeners:
                listeners.remove(fn)

        self.subs[key] = cleanup

    def _private_listener(
        self, channel: str, topic: str, account: SimAccount
    ) -> Callable[[SimAccount, list[PrivateEvent]], None]:
        h = self.h
        venue = self.venue
        dec = self.dec
        spot = self.market == "spot"
        sim = account.venues[venue]
        last_balances: dict[str, tuple[float, float]] = {a: (b.free, b.locked) for a, b in sim.balances_now().items()}
        last_total: list[float] = [sum(last_balances.get("USDT", (0.0, 0.0)))]

        def on_events(acc: SimAccount, events: list[PrivateEvent]) -> None:
            if self.conn.closed:
                return
            ts_ms = now_ms()
            if topic == "orders":
                rows = []
                for ev in events:
                    if not isinstance(ev, OrderUpdate):
                        continue
                    if ev.status is OrderStatus.REJECTED and not ev.venue_order_id:
                        continue  # refused at placement (the REST 400): it never existed, no push
                    record = acc.record(venue, ev.client_order_id)
                    if record is None:
                        continue
                    if spot:
                        kind = (
                            "put" if ev.status is OrderStatus.NEW else ("finish" if ev.status.is_terminal else "update")
                        )
                        rows.append(h.spot_order_json(acc, record, kind))
                    else:
                        rows.append(h.futures_order_json(acc, record, dec))
                if rows:
                    self.conn.send(codec.encode_ws_update(channel, rows, time_ms=ts_ms).decode())
            elif topic == "usertrades":
                fills = [ev for ev in events if isinstance(ev, Fill)]
                if fills:
                    rows = [h.spot_fill_json(acc, f) if spot else h.futures_fill_json(acc, f, dec) for f in fills]
                    for row in rows:
                        row["user_id"] = acc.uid
                    self.conn.send(codec.encode_ws_update(channel, rows, time_ms=ts_ms).decode())
            elif topic == "balances":
                now = sim.balances_now()
                if spot:
                    rows = []
                    for asset, bal in now.items():
                        prev = last_balances.get(asset, (0.0, 0.0))
                        if (bal.free, bal.locked) == prev:
                            continue
                        last_balances[asset] = (bal.free, bal.locked)
                        rows.append(
                            {
                                "timestamp": str(ts_ms // 1000),
                                "timestamp_ms": str(ts_ms),
                                "user": str(acc.uid),
                                "currency": asset,
                                "change": fmt_num(bal.total - sum(prev)),
                                "total": fmt_num(bal.total),
                                "available": fmt_num(bal.free),
                                "freeze": fmt_num(bal.locked),
                                "freeze_change": fmt_num(bal.locked - prev[1]),
                                "change_type": "order-create",
                            }
                        )
                    if rows:
                        self.conn.send(codec.encode_ws_update(channel, rows, time_ms=ts_ms).decode())
                else:
                    usdt = now.get("USDT")
                    total = usdt.total if usdt else 0.0
                    if total != last_total[0]:
                        change = total - last_total[0]
                        last_total[0] = total
                        row = {
                            "balance": fmt_num(total),
                            "change": fmt_num(change),
                            "text": f"{GATE_FUTURES.symbol}",
                            "time": ts_ms // 1000,
                            "time_ms": ts_ms,
                            "type": "fee" if change < 0 else "pnl",
                            "user": str(acc.uid),
                            "currency": "USDT",
                        }
                        self.conn.send(codec.encode_ws_update(channel, [row], time_ms=ts_ms).decode())
            elif topic == "positions" and any(isinstance(ev, Fill) for ev in events):
                row = h.position_json(acc, dec)
                row["time"] = ts_ms // 1000
                row["time_ms"] = ts_ms
                self.conn.send(codec.encode_ws_update(channel, [row], time_ms=ts_ms).decode())

        return on_events


class _WsError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _TickerSub:
    """One ``futures.tickers`` subscription of one contract (PROTOCOLS.md §3.4; payload
    ``[contract, ...]``, ack as every futures channel, pushes ``result: [ticker]`` in the Gate docs'
    "Tickers notification" format, :meth:`GateHandlers.futures_ticker_push_json`).

    Pushes: one right after the subscription's ack; then when the market changes the ticker
    (book or public trade: mark / last price), at most once per :attr:`MIN_INTERVAL_S` seconds
    (a change inside the interval is sent when it ends, with the state then); and at once when
    the funding rate changes (:meth:`SimServer.set_funding_rate`, ``force``).
    """

    #: seconds between two market-driven pushes of the contract, at least (Gate's ticker pace)
    MIN_INTERVAL_S = 1.0

    def __init__(self, session: _GateWsSession, channel: str) -> None:
        self.s = session
        self.channel = channel
        self.book = session.book
        self.last_row: dict[str, str] | None = None
        self.last_push_s = -math.inf  # time.monotonic() of the last push
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.book.add_listener(self._on_book)
        self.s.server.market.add_trade_listener(self._on_trade)
        self.push(force=True)

    def close(self) -> None:
        self.book.remove_listener(self._on_book)
        listeners = self.s.server.market._trade_listeners
        if self._on_trade in listeners:
            listeners.remove(self._on_trade)
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _on_book(self, book: VenueBook, change: DepthChange) -> None:
        self._changed()

    def _on_trade(self, book: VenueBook, trade: TradeTick) -> None:
        if book.key == self.book.key:
            self._changed()

    def _changed(self) -> None:
        if self._handle is not None:
            return  # a push is already due at the end of the interval
        wait_s = self.last_push_s + self.MIN_INTERVAL_S - time.monotonic()
        if wait_s <= 0:
            self.push()
        else:
            self._handle = asyncio.get_running_loop().call_later(wait_s, self._due)

    def _due(self) -> None:
        self._handle = None
        self.push()

    def push(self, *, force: bool = False) -> int:
        """Send the contract's ticker (unless unchanged since the last push and not ``force``);
        returns 1 if a frame was queued, else 0."""
        if self.s.conn.closed:
            return 0
        row = self.s.h.futures_ticker_push_json()
        if not force and row == self.last_row:
            return 0
        if self._handle is not None:  # this push carries the pending change too
            self._handle.cancel()
            self._handle = None
        self.last_row = row
        self.last_push_s = time.monotonic()
        ts = now_ms()
        self.s.conn.send(codec.encode_ws_update(self.channel, [row], time_ms=ts).decode())
        return 1


class _BookSub:
    """One depth subscription: ``spot.order_book_update`` / ``futures.order_book_update`` (item
    ``SYM|interval|level``) or ``*.obu`` (item ``ob.SYM.50|400``).

    Level-limited streams (``futures.order_book_update`` at its ``level``, ``*.obu`` at 50/400;
    PROTOCOLS.md §3.4, §3.5, §2.5) carry the top ``depth`` levels of a side only, as Gate does:
    each push holds the levels of the current top ``depth`` that changed or entered it since the
    last push, and a 0 for each level that left it (or was deleted within it). A client that
    applies them to a REST snapshot of ``limit = depth`` (or the ``full`` push) keeps exactly the
    venue's top ``depth``. ``spot.order_book_update`` has no level: every changed level.
    """

    def __init__(self, session: _GateWsSession, channel: str, topic: str, item: str) -> None:
        self.s = session
        self.channel = channel
        self.topic = topic
        self.item = item
        self.book = session.book
        if topic == "obu":
            self.depth = int(item.rsplit(".", 1)[1])
            interval = 0.02 if self.depth == 50 else 0.1
        else:
            _, interval_text, level = item.split("|")
            self.depth = int(level)
            interval = 0.02 if interval_text == "20ms" else 0.1
        self.buffer = DepthBuffer(interval, self._flush)
        self.futures_levels = session.market == "futures" and topic == "order_book_update"
        self.level_limited = topic == "obu" or session.market == "futures"
        # the top `depth` levels a side as the client knows them (after the last push / at start)
        self.sent_bids: dict[int, float] = {}
        self.sent_asks: dict[int, float] = {}

    def start(self) -> None:
        self.book.add_listener(self._on_change)
        if self.level_limited:
            bids, asks = self._top()
            self.sent_bids, self.sent_asks = dict(bids), dict(asks)
        if self.topic == "obu":
            self.push_full()

    def _top(self) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """The book's best ``depth`` levels a side (bids descending, asks ascending)."""
        book = self.book
        return heapq.nlargest(self.depth, book.bids.items()), heapq.nsmallest(self.depth, book.asks.items())

    def _limit_side(
        self, changed: dict[int, float], top: list[tuple[int, float]], sent: dict[int, float], bids: bool
    ) -> tuple[dict[int, float], dict[int, float]]:
        """(levels to push, the new view) for one side of a level-limited stream."""
        now = dict(top)
        out = {t: q for t, q in now.items() if t in changed or sent.get(t) != q}
        full = len(top) >= self.depth
        worst = top[-1][0] if top else 0
        for t in changed:  # deleted, or moved out, within the visible top: tell the client
            if t not in now and (not full or (t > worst if bids else t < worst)):
                out[t] = 0.0
        for t in sent:  # pushed below the top by better levels
            if t not in now:
                out[t] = 0.0
        return out, now

    def close(self) -> None:
        self.book.remove_listener(self._on_change)
        self.buffer.cancel()

    def _on_change(self, book: VenueBook, change: DepthChange) -> None:
        self.buffer.add(change.first_id, change.last_id, change.bids, change.asks)

    def _levels(self, levels: list[tuple[int, float]]) -> list[Any]:
        b = self.book
        if self.futures_levels:
            dec = self.s.dec
            return [{"p": b.price_str(t), "s": _size(q, dec)} for t, q in levels]
        if self.s.market == "futures":  # futures.obu: [p, s] with integer-string sizes
            return [[b.price_str(t), str(int(q))] for t, q in levels]
        return [[b.price_str(t), b.qty_str(q)] for t, q in levels]

    def _flush(self, first: int, last: int, bids: dict[int, float], asks: dict[int, float]) -> None:
        if self.s.conn.closed:
            return
        ts = now_ms()
        if self.level_limited:
            top_bids, top_asks = self._top()
            bids, self.sent_bids = self._limit_side(bids, top_bids, self.sent_bids, True)
            asks, self.sent_asks = self._limit_side(asks, top_asks, self.sent_asks, False)
        b = sorted(bids.items(), key=lambda kv: -kv[0])
        a = sorted(asks.items())
        symbol = self.book.instrument.symbol
        if self.topic == "obu":
            result: dict[str, Any] = {
                "t": ts,
                "s": self.item,
                "U": first,
                "u": last,
                "b": self._levels(b),
                "a": self._levels(a),
            }
        else:
            result = {
                "t": ts,
                "s": symbol,
                "U": first,
                "u": last,
                "b": self._levels(b),
                "a": self._levels(a),
                "l": str(self.depth),
            }
            if self.s.market == "spot":
                result["e"] = "depthUpdate"
                result["E"] = ts // 1000
        self.s.conn.send(
            codec.encode_ws_update(self.channel, result, time_ms=ts).decode(),
            depth=True,
        )

    def push_full(self) -> None:
        """Flush what is pending, then send the whole book for the subscribed depth (``full``)."""
        self.buffer.flush()
        ts = now_ms()
        bids, asks = self._top()
        if self.level_limited:
            self.sent_bids, self.sent_asks = dict(bids), dict(asks)
        u = self.book.update_id
        if self.topic == "obu":
            result: dict[str, Any] = {"t": ts, "full": True, "s": self.item, "u": u}
        else:
            result = {
                "t": ts,
                "full": True,
                "l": str(self.depth),
                "s": self.book.instrument.symbol,
                "U": u,
                "u": u,
            }
        result["b"] = self._levels(bids)
        result["a"] = self._levels(asks)
        self.s.conn.send(codec.encode_ws_update(self.channel, result, time_ms=ts).decode())


# =============================================================================================
# routes


def setup_routes(app: web.Application, server: SimServer) -> GateHandlers:
    """Add every Gate route to ``app``; returns the handlers (``SimServer.gate``)."""
    h = GateHandlers(server)
    r = app.router
    pub = h._wrap

    def priv(fn: Any, kind: str = "other") -> Any:
        return h._wrap(fn, private=True, kind=kind)

    # public spot
    r.add_get(P + "/spot/time", pub(h.spot_time))
    r.add_get(P + "/spot/currency_pairs", pub(h.currency_pairs))
    r.add_get(P + "/spot/currency_pairs/{pair}", pub(h.currency_pair))
    r.add_get(P + "/spot/currencies", pub(h.currencies))
    r.add_get(P + "/spot/order_book", pub(h.spot_order_book))
    r.add_get(P + "/spot/tickers", pub(h.spot_tickers))
    r.add_get(P + "/spot/trades", pub(h.spot_trades))
    # market families we do not serve (ccxt's load_markets asks for them)
    for path in (
        "/margin/currency_pairs",
        "/margin/cross/currency_pairs",
        "/delivery/{settle}/contracts",
        "/options/underlyings",
        "/options/contracts",
        "/wallet/currency_chains",
        "/unified/currencies",
    ):
        r.add_get(P + path, pub(h.empty_list))
    # public futures
    r.add_get(P + "/futures/{settle}/contracts", pub(h.contracts))
    r.add_get(P + "/futures/usdt/contracts/{contract}", pub(h.contract))
    r.add_get(P + "/futures/usdt/order_book", pub(h.futures_order_book))
    r.add_get(P + "/futures/usdt/tickers", pub(h.futures_tickers))
    r.add_get(P + "/futures/usdt/trades", pub(h.futures_trades))
    r.add_get(P + "/futures/usdt/funding_rate", pub(h.funding_rate))
    # private
    r.add_get(P + "/account/detail", priv(h.account_detail))
    r.add_get(P + "/spot/accounts", priv(h.spot_accounts))
    r.add_get(P + "/spot/fee", priv(h.spot_fee))
    r.add_post(P + "/spot/orders", priv(h.spot_place, "place"))
    r.add_get(P + "/spot/orders", priv(h.spot_orders_list))
    r.add_delete(P + "/spot/orders", priv(h.spot_cancel_all, "cancel"))
    r.add_get(P + "/spot/orders/{order_id}", priv(h.spot_order_get))
    r.add_delete(P + "/spot/orders/{order_id}", priv(h.spot_order_cancel, "cancel"))
    r.add_get(P + "/spot/open_orders", priv(h.spot_open_orders))
    r.add_get(P + "/spot/my_trades", priv(h.spot_my_trades))
    r.add_get(P + "/futures/usdt/accounts", priv(h.futures_accounts))
    r.add_get(P + "/futures/usdt/positions", priv(h.positions))
    r.add_get(P + "/futures/usdt/positions/{contract}", priv(h.position))
    r.add_get(P + "/futures/usdt/fee", priv(h.futures_fee))
    r.add_post(P + "/futures/usdt/orders", priv(h.futures_place, "place"))
    r.add_get(P + "/futures/usdt/orders", priv(h.futures_orders_list))
    r.add_delete(P + "/futures/usdt/orders", priv(h.futures_cancel_all, "cancel"))
    r.add_get(P + "/futures/usdt/orders/{order_id}", priv(h.futures_order_get))
    r.add_delete(P + "/futures/usdt/orders/{order_id}", priv(h.futures_order_cancel, "cancel"))
    r.add_get(P + "/futures/usdt/my_trades", priv(h.futures_my_trades))
    # WebSockets
    r.add_get("/ws/v4/", h.ws_spot)
    r.add_get("/v4/ws/usdt", h.ws_futures)
    return h
