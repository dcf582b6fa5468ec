"""MEXC spot v3 connector: :class:`~cexarb.venues.base.PublicVenue` and
:class:`~cexarb.venues.base.PrivateVenue` in one object.

* **REST** (:class:`~cexarb.venues.rest.RestClient` with :class:`MexcAuth` -- HMAC-SHA256 in the
  query, ``X-MEXC-APIKEY``, ``recvWindow`` -- :func:`mexc_error`, MEXC's published limits) for
  ``exchangeInfo``, ``depth`` snapshots, queries, ``account``, ``myTrades`` and the listen key;
  **orders and cancels** on the keep-alive :class:`~cexarb.venues.order_entry.OrderEntryClient`.
* **Market WS** (protobuf): ``aggre.depth`` (100 ms) per symbol into a
  :class:`~cexarb.venues.book_manager.BookManager` with the MEXC ``fromVersion``/``toVersion``
  rule and ``/api/v3/depth`` (``lastUpdateId``) snapshots; ``aggre.deals`` -> :class:`Trade`;
  ``aggre.bookTicker`` -> :class:`BookTicker`. ``PING`` every 10 s (MEXC drops idle sockets).
* **User data** at ``/ws?listenKey=``: the key is created with ``POST /api/v3/userDataStream``
  and kept alive with ``PUT`` every 30 min; a rejected key (``Invalid listen key``) is replaced
  before the next reconnect. ``private.orders`` -> :class:`OrderUpdate`, ``private.deals`` ->
  :class:`Fill`, de-duplicated by trade id; after a reconnect the missed fills are read from
  ``myTrades`` once the subscription is acknowledged again (shared logic of
  :class:`~cexarb.venues.connector.ConnectorBase`).
* The ``POST /api/v3/order`` ack carries no status: :meth:`place_order` returns the order
  ``NEW`` (acked) and keeps updating that same object from the stream.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import msgspec

from cexarb.model import Balance, Fill, Order, OrderStatus, OrderType, Side
from cexarb.venues.base import OrderRequest
from cexarb.venues.book_manager import MEXC_RULE, BookSnapshot, DepthUpdate
from cexarb.venues.connector import (
    ConnectorBase,
    new_client_order_id,
    now_ns,
)
from cexarb.venues.mexc import codec, proto
from cexarb.venues.mexc.signing import MexcSigner
from cexarb.venues.order_entry import OrderEntryClient
from cexarb.venues.ratelimit import MEXC_SPOT_LIMITS, EndpointClass, RateLimitExceeded
from cexarb.venues.rest import (
    MexcAuth,
    NetworkError,
    OrderNotFoundError,
    OrderNotOpenError,
    OutcomeUnknownError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    VenueError,
    mexc_error,
)
from cexarb.venues.secrets import ApiCredentials
from cexarb.venues.ws import (
    WsClient,
    WsConnected,
    WsDisconnected,
    WsEvent,
    WsFrame,
    WsOverflow,
    mexc_heartbeat,
)

__all__ = ["MexcSpot"]

log = logging.getLogger(__name__)

_V = "/api/v3"
_PRIVATE_CHANNELS = [
    "spot@private.orders.v3.api.pb",
    "spot@private.deals.v3.api.pb",
    "spot@private.account.v3.api.pb",
]
LISTEN_KEY_KEEPALIVE_S = 30 * 60
# keep-alive failures after which the listen key is still valid (kept, retried sooner)
_TRANSIENT = (
    RateLimitedError,
    ServerError,
    NetworkError,
    RequestTimeoutError,
    OutcomeUnknownError,
    RateLimitExceeded,
)


class MexcSpot(ConnectorBase):
    """MEXC spot v3 connector (see the module docs).

    Args:
        credentials: API key/secret (None: market data only).
        rest_url: ``https://api.mexc.com`` (or the simulator's ``base_url``).
        ws_url: ``wss://wbs-api.mexc.com/ws`` (or ``ws_base_url + "/ws"``); the user-data URL is
            this plus ``?listenKey=``.
        symbols: symbols to load and stream (None: every symbol -- name them live).
        listen_key_keepalive_s: period of the listen key's keep-alive ``PUT`` (default 30 min;
            the key lives 60 min).
    """

    name = "mexc-spot"
    market = "spot"
    limits = MEXC_SPOT_LIMITS

    def __init__(
        self, credentials: ApiCredentials | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("ws_url", "wss://wbs-api.mexc.com/ws")
        kwargs.setdefault("rest_url", "https://api.mexc.com")  # [MX-DOC] REST base URL
        self.listen_key_keepalive_s = float(kwargs.pop("listen_key_keepalive_s", LISTEN_KEY_KEEPALIVE_S))
        super().__init__(credentials, **kwargs)
        self._mexc_signer = MexcSigner(credentials) if credentials is not None else None
        self._listen_key: str | None = None
        self.listen_key_renewals = 0
        self.listen_key_keepalives = 0
        self.listen_key_keepalive_failures = 0

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        auth = MexcAuth(self._mexc_signer) if self._mexc_signer is not None else None
        await self._open_rest_and_books(auth=auth, error_mapper=mexc_error, rule=MEXC_RULE)
        channels: list[str] = []
        for inst in self._instruments.values():
            channels += [
                codec.channel_aggre_depth(inst.symbol),
                codec.channel_aggre_deals(inst.symbol),
                codec.channel_aggre_book_ticker(inst.symbol),
            ]
        session = self._http.session
        self._ws_market = WsClient(
            f"{self.name} market",
            self.ws_url,
            session,
            handler=self._on_market_event,
            heartbeat=mexc_heartbeat(),
            backoff=self._backoff,
            stall_timeout_s=self._stall_timeout_s,
            data_timeout_s=self._market_data_timeout_s,
            seed=self._seed,
        )
        for i in range(0, len(channels), 30):  # <= 30 channels per request
            chunk = channels[i : i + 30]
            await self._ws_market.subscribe(
                f"public:{i}", functools.partial(codec.encode_subscribe, chunk)
            )
        self._ws_market.start()
        if self._mexc_signer is not None:
            self._order_entry = OrderEntryClient(
                self.name,
                self.rest_url,
                auth=auth,
                error_mapper=mexc_error,
                limiter=self._limiter,
                request_timeout_s=self._order_timeout_s,
                keepalive_path=f"{_V}/ping",
            )
            await self._order_entry.connect()
            self._listen_key = await self._new_listen_key()
            self._ws_private = WsClient(
                f"{self.name} private",
                self._user_url(),
                session,
                handler=self._on_private_event,
                heartbeat=mexc_heartbeat(),
                backoff=self._backoff,
                stall_timeout_s=self._stall_timeout_s,
                seed=self._seed,
            )
            await self._ws_private.subscribe(
                "private", lambda: codec.encode_subscribe(_PRIVATE_CHANNELS)
            )
            self._ws_private.start()
            self._spawn(self._keep_listen_key())

    async def aclose(self) -> None:
        key, self._listen_key = self._listen_key, None
        await super().aclose_ws_and_tasks()
        if key is not None and self._rest is not None:
            try:
                await self._http.request(
                    "DELETE",
                    f"{_V}/userDataStream",
                    [("listenKey", key)],
                    signed=True,
                    timeout_s=2.0,
                )
            except (VenueError, RateLimitExceeded, RuntimeError) as exc:
                log.info(
                    "venue=%s listen key not deleted: %s", self.name, type(exc).__name__
                )
        await super().aclose_clients()

    # ---- listen key ---------------------------------------------------------------------------------

    def _user_url(self) -> str:
        return f"{self.ws_url}?listenKey={self._listen_key}"

    async def _new_listen_key(self) -> str:
        resp = await self._http.request("POST", f"{_V}/userDataStream", signed=True)
        key = codec.decode_listen_key(resp.body).listen_key
        if not isinstance(key, str):
            raise VenueError(self.name, "userDataStream POST returned a list of keys")
        return key

    async def _keep_listen_key(self) -> None:
        delay = self.listen_key_keepalive_s
        while True:
            await asyncio.sleep(delay)
            delay = self.listen_key_keepalive_s
            try:
                # extending a key is idempotent: retried on a 5xx / dropped connection
                await self._http.request(
                    "PUT",
                    f"{_V}/userDataStream",
                    [("listenKey", self._listen_key or "")],
                    signed=True,
                    idempotent=True,
                )
            except _TRANSIENT as exc:
                # the key is still valid (60 min): keep it (the open stream uses it), retry sooner
                self.listen_key_keepalive_failures += 1
                delay = min(delay, 60.0)
                log.warning(
                    "venue=%s listen key keep-alive failed (%s); retrying in %.0f s",
                    self.name,
                    type(exc).__name__,
                    delay,
                )
                continue
            except VenueError as exc:
                self.listen_key_keepalive_failures += 1
                log.warning(
                    "venue=%s listen key keep-alive failed (%s); renewing",
                    self.name,
                    type(exc).__name__,
                )
                await self._renew_listen_key()
                continue
            self.listen_key_keepalives += 1

    async def _renew_listen_key(self) -> None:
        try:
            self._listen_key = await self._new_listen_key()
        except (VenueError, RateLimitExceeded) as exc:
            log.warning(
                "venue=%s listen key renewal failed: %s", self.name, type(exc).__name__
            )
            return
        self.listen_key_renewals += 1
        if self._ws_private is not None:
            self._ws_private.url = self._user_url()  # used from the next (re)connect on

    # ---- hooks ------------------------------------------------------------------------------------

    async def _load_instruments(self) -> None:
        params = (
            [("symbols", ",".join(self._symbols_wanted))]
            if self._symbols_wanted
            else []
        )
        if self._symbols_wanted and len(self._symbols_wanted) == 1:
            params = [("symbol", self._symbols_wanted[0])]
        resp = await self._http.get(f"{_V}/exchangeInfo", params)
        for sym in codec.decode_exchange_info(resp.body).symbols:
            if (
                self._symbols_wanted is not None
                and sym.symbol not in self._symbols_wanted
            ):
                continue
            inst = codec.symbol_to_instrument(sym)
            self._instruments[inst.key] = inst
            self._by_symbol[inst.symbol] = inst

    async def _fetch_snapshot(self, symbol: str) -> BookSnapshot:
        resp = await self._http.get(
            f"{_V}/depth", [("symbol", symbol), ("limit", "5000")]
        )
        return BookSnapshot.from_mexc(codec.decode_depth(resp.body))

    async def _fetch_fills(self, symbol: str, limit: int = 100) -> list[Fill]:
        inst = self._by_symbol[symbol]
        resp = await self._http.get(
            f"{_V}/myTrades", [("symbol", symbol), ("limit", str(limit))], signed=True
        )
        return [t.to_fill(inst) for t in codec.decode_my_trades(resp.body)]

    def _order_from_venue(self, o: codec.MexcOrder) -> Order | None:
        inst = self._by_symbol.get(o.symbol)
        if inst is None:
            return None
        upd = o.to_update(inst.key)
        return Order(
            client_order_id=upd.client_order_id,
            instrument=inst,
            side=Side.BUY if o.side == "BUY" else Side.SELL,
            type=OrderType.MARKET if o.type == "MARKET" else OrderType.LIMIT,
            qty=o.orig_qty or 0.0,
            price=o.price or None,
            venue_order_id=upd.venue_order_id,
            status=upd.status,
            filled_qty=upd.filled_qty,
            avg_fill_price=upd.avg_fill_price,
            created_ns=(o.time or 0) * 1_000_000,
            updated_ns=upd.ts_ns,
        )

    # ---- streams ----------------------------------------------------------------------------------

    def _on_market_event(self, event: WsEvent) -> None:
        books = self._manager
        if not isinstance(event, WsFrame):
            books.handle_ws_event(event, lambda frame: None)
            return
        data = event.data
        if isinstance(data, str):
            self._on_text(data, "market")
            return
        try:
            push = codec.decode_push(data)
            body = push.body
            if isinstance(body, proto.PublicAggreDepths):
                books.on_update(
                    DepthUpdate.from_mexc(codec.depth_update_from_push(push))
                )
                self._last_depth_frame = data
            elif isinstance(body, (proto.PublicAggreDeals, proto.PublicDeals)):
                inst = self._inst_of(push)
                if inst is not None:
                    for trade in codec.trades_from_push(push, inst.key):
                        self._emit_market(trade)
            elif isinstance(
                body, (proto.PublicAggreBookTicker, proto.PublicBookTicker)
            ):
                inst = self._inst_of(push)
                if inst is not None:
                    self._emit_market(codec.book_ticker_from_push(push, inst.key))
        except ValueError as exc:
            self.decode_errors += 1
            log.error(
                "venue=%s malformed market frame skipped (%d bytes): %s",
                self.name,
                len(data),
                exc,
            )

    def _on_text(self, data: str, stream: str) -> Any:
        try:
            frame = codec.decode_text_frame(data)
        except ValueError:
            if "Not Subscribed" in data or "Blocked" in data:
                log.error("venue=%s %s subscription refused", self.name, stream)
            else:
                self.decode_errors += 1
                log.error(
                    "venue=%s malformed %s text frame skipped (%d bytes)",
                    self.name,
                    stream,
                    len(data),
                )
            return None
        if isinstance(frame, codec.MexcWsAck) and frame.code != 0:
            log.error(
                "venue=%s %s request refused: code %d", self.name, stream, frame.code
            )
        return frame

    def _on_private_event(self, event: WsEvent) -> None:
        if isinstance(event, WsConnected):
            if event.reconnect:
                self.private_reconnects += 1
                self._private_reconnected = True
            return
        if isinstance(event, (WsDisconnected, WsOverflow)):
            self._private_reconnected = True
            if isinstance(event, WsOverflow):
                self._spawn(self._backfill())
            return
        data = event.data
        if isinstance(data, str):
            frame = self._on_text(data, "private")
            if isinstance(frame, codec.InvalidListenKey):
                self._spawn(self._renew_listen_key())
            elif (
                isinstance(frame, codec.MexcWsAck)
                and "private.deals" in frame.msg
                and self._private_reconnected
            ):
                self._private_reconnected = False
                self._spawn(self._backfill())
            return
        try:
            push = codec.decode_push(data)
            body = push.body
            inst = self._inst_of(push)
            if inst is None:
                return
            if isinstance(body, proto.PrivateDeal):
                self._deliver_fill(codec.fill_from_push(push, inst))
            elif isinstance(body, proto.PrivateOrder):
                update = codec.order_update_from_push(push, inst.key)
                self._apply_update(update)
                self._emit_private(update)
        except ValueError as exc:
            self.decode_errors += 1
            log.error(
                "venue=%s malformed private frame skipped (%d bytes): %s",
                self.name,
                len(data),
                exc,
            )

    def _inst_of(self, push: proto.PushData) -> Any:
        inst = self._by_symbol.get(push.symbol or "")
        if inst is None and not push.symbol and len(self._by_symbol) == 1:
            inst = next(iter(self._by_symbol.values()))
        return inst

    # ---- PrivateVenue -------------------------------------------------------------------------------

    async def place_order(self, request: OrderRequest) -> Order:
        if not request.client_order_id:
            request = msgspec.structs.replace(
                request, client_order_id=new_client_order_id()
            )
        order = request.to_order(now_ns())
        self._orders[request.client_order_id] = order
        try:
            method, path, params, _ = self._order_wire(request)  # what warm_order builds too
        except ValueError as exc:
            order.status = OrderStatus.REJECTED
            order.reject_reason = str(exc)
            self.order_retention.terminal(order.client_order_id, order.created_ns)
            return order
        try:
            resp = await self._oe.request(
                method,
                path,
                params,
                endpoint_class=EndpointClass.ORDER,
                symbol=request.instrument.symbol,
            )
        except (VenueError, RateLimitExceeded) as exc:
            return self._placement_failed(order, exc)
        ack = codec.decode_order_ack(resp.body)
        order.venue_order_id = ack.venue_order_id
        if (
            order.status is OrderStatus.PENDING_NEW
        ):  # the stream may already have moved it on
            order.status = OrderStatus.NEW
            order.updated_ns = now_ns()
        return order

    def _decode_depth_frame(self, data: str | bytes) -> object:
        if isinstance(data, str):
            raise TypeError(f"MEXC depth frames are binary (protobuf), got text data={data[:40]!r}")
        return DepthUpdate.from_mexc(codec.depth_update_from_push(codec.decode_push(data)))

    def _order_wire(self, request: OrderRequest) -> tuple[str, str, list[tuple[str, str]], bytes]:
        return "POST", f"{_V}/order", codec.order_params(request), b""

    async def cancel_order(self, instrument_key: str, client_order_id: str) -> bool:
        inst = self._instrument(instrument_key)
        params = [("symbol", inst.symbol), ("origClientOrderId", client_order_id)]
        try:
            resp = await self._oe.delete(
                f"{_V}/order",
                params,
                endpoint_class=EndpointClass.CANCEL,
                symbol=inst.symbol,
                idempotent=True,
            )
        except (OrderNotFoundError, OrderNotOpenError):
            return False
        self._apply_update(codec.decode_order(resp.body).to_update(inst.key))
        return True

    async def cancel_all(self, instrument_key: str | None = None) -> int:
        insts = (
            [self._instrument(instrument_key)]
            if instrument_key
            else list(self._instruments.values())
        )
        n = 0
        for inst in insts:
            resp = await self._oe.delete(
                f"{_V}/openOrders",
                [("symbol", inst.symbol)],
                endpoint_class=EndpointClass.CANCEL,
                symbol=inst.symbol,
                idempotent=True,
            )
            for o in codec.decode_orders(resp.body):
                self._apply_update(o.to_update(inst.key))
                n += 1
        return n

    async def get_order(
        self, instrument_key: str, client_order_id: str
    ) -> Order | None:
        return await self._get_order_by(instrument_key, "origClientOrderId", client_order_id)

    async def get_order_by_venue_id(self, instrument_key: str, venue_order_id: str) -> Order | None:
        """``GET /api/v3/order`` with ``orderId`` (MEXC's order id).

        Raises:
            ValueError: an empty ``venue_order_id``.
        """
        if not venue_order_id:
            raise ValueError(f"venue_order_id must not be empty, got {venue_order_id!r}")
        return await self._get_order_by(instrument_key, "orderId", venue_order_id)

    async def _get_order_by(self, instrument_key: str, field: str, value: str) -> Order | None:
        inst = self._instrument(instrument_key)
        params = [("symbol", inst.symbol), (field, value)]
        try:
            resp = await self._http.get(f"{_V}/order", params, signed=True)
        except OrderNotFoundError:
            return None
        venue_order = codec.decode_order(resp.body)
        order = self._order_from_venue(venue_order)
        if order is not None:
            self._apply_update(venue_order.to_update(inst.key))
        return order

    async def open_orders(self, instrument_key: str | None = None) -> list[Order]:
        insts = (
            [self._instrument(instrument_key)]
            if instrument_key
            else list(self._instruments.values())
        )
        out: list[Order] = []
        for inst in insts:
            resp = await self._http.get(
                f"{_V}/openOrders", [("symbol", inst.symbol)], signed=True
            )
            for o in codec.decode_orders(resp.body):
                order = self._order_from_venue(o)
                if order is not None:
                    out.append(order)
        return out

    async def balances(self) -> dict[str, Balance]:
        resp = await self._http.get(f"{_V}/account", signed=True)
        return {
            b.asset: b.to_balance() for b in codec.decode_account(resp.body).balances
        }
