"""Gate.io spot v4 connector: one object that is both a :class:`~cexarb.venues.base.PublicVenue`
and a :class:`~cexarb.venues.base.PrivateVenue`, built from the shared venue machinery.

* **REST** (:class:`~cexarb.venues.rest.RestClient`, one aiohttp session, :class:`GateAuth`,
  :func:`gate_error`, the venue's published rate limits) for instruments, snapshots, queries,
  balances; **orders and cancels** on the keep-alive :class:`~cexarb.venues.order_entry.OrderEntryClient`.
* **Market WS** (:class:`~cexarb.venues.ws.WsClient` on the REST session): ``spot.order_book_update``
  (100 ms) per symbol into a :class:`~cexarb.venues.book_manager.BookManager` with the Gate
  ``U``/``u`` rule and ``with_id`` REST snapshots; ``spot.trades`` and ``spot.book_ticker``.
  Handlers of :meth:`subscribe_market` get :class:`BookUpdate` / :class:`Trade` / :class:`BookTicker`.
* **Private WS** (signed subscriptions): ``spot.orders`` -> :class:`OrderUpdate`,
  ``spot.usertrades`` -> :class:`Fill`, ``spot.balances`` -> the per-currency cache of
  :meth:`GateSpot.cached_balances` (REST :meth:`GateSpot.balances` stays the source of truth).
  Fills are de-duplicated by venue trade id; after a reconnect, once the usertrades subscription
  is acknowledged again, the fills the connection missed are fetched over REST (``my_trades``)
  and delivered -- none lost, none twice -- and the orders we track are re-queried.
* Client order ids go out as Gate ``text`` (``t-<id>``); an empty one is assigned here. Prices and
  quantities are the request's exact wire strings (:func:`codec.spot_order_body`).
* Keys come in an :class:`~cexarb.venues.secrets.ApiCredentials` and are never logged.

The venue-neutral machinery (lifecycle, books, handler delivery, fill de-duplication, backfill) is
:class:`~cexarb.venues.connector.ConnectorBase`; :class:`GateConnectorBase` adds what Gate spot and
USDT futures share (signed WS subscriptions, Gate frames, the Gate order path), and the futures
connector (:mod:`cexarb.venues.gateio.futures`) reuses it.
"""

from __future__ import annotations

import abc
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, ClassVar

import msgspec

from cexarb._core import parse_gate_depth
from cexarb.model import (
    Balance,
    Fill,
    Instrument,
    Order,
    OrderStatus,
    OrderType,
    Side,
)
from cexarb.venues.base import OrderRequest
from cexarb.venues.book_manager import GATE_RULE, BookSnapshot
from cexarb.venues.connector import (
    MARKET_DATA_TIMEOUT_S,
    TIMEOUT_S,
    ConnectorBase,
    new_client_order_id,
    now_ns,
)
from cexarb.venues.gateio import codec
from cexarb.venues.gateio.signing import ORDER_EXPTIME_MS, GateSigner
from cexarb.venues.order_entry import OrderEntryClient, OrderEntryResponse
from cexarb.venues.ratelimit import GATE_SPOT_LIMITS, EndpointClass, RateLimitExceeded
from cexarb.venues.rest import (
    GateAuth,
    OrderNotFoundError,
    OrderNotOpenError,
    OutcomeUnknownError,
    VenueError,
    gate_error,
)
from cexarb.venues.secrets import ApiCredentials
from cexarb.venues.ws import (
    Backoff,
    WsClient,
    WsConnected,
    WsDisconnected,
    WsEvent,
    WsFrame,
    WsOverflow,
    gate_heartbeat,
)

__all__ = ["GateConnectorBase", "GateSpot"]

log = logging.getLogger(__name__)

_API = "/api/v4"
# read on every order: module globals (an Enum class attribute costs a metaclass lookup)
_ORDER = EndpointClass.ORDER
_MARKET = OrderType.MARKET
_BUY = Side.BUY
_SPOT_ORDERS = f"{_API}/spot/orders"


class GateConnectorBase(ConnectorBase):
    """What Gate spot and USDT futures share; subclasses fill in paths and codecs.

    ``order_exptime_ms`` (default :data:`~cexarb.venues.gateio.signing.ORDER_EXPTIME_MS`, 5,000
    ms): every order placement carries ``x-gate-exptime`` = now + this, so Gate refuses it if it
    arrives later; ``order_expiry_s`` follows it (the resolve of an unknown outcome outlasts it).
    None sends no expiry (the order is then valid for Gate's whole 60 s Timestamp window).
    """

    depth_channel: ClassVar[str]
    rest_headers: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        credentials: ApiCredentials | None = None,
        *,
        rest_url: str = "https://api.gateio.ws",
        ws_url: str = "",
        symbols: Sequence[str] | None = None,
        depth_interval: str = "100ms",
        backoff: Backoff | None = None,
        stall_timeout_s: float = 30.0,
        market_data_timeout_s: float | None = MARKET_DATA_TIMEOUT_S,
        order_timeout_s: float = TIMEOUT_S,
        enforce_rate_limits: bool = True,
        seed: int | None = None,
        max_terminal_orders: int | None = 10_000,
        terminal_order_min_age_s: float = 60.0,
        order_exptime_ms: int | None = ORDER_EXPTIME_MS,
    ) -> None:
        super().__init__(
            credentials,
            rest_url=rest_url,
            ws_url=ws_url,
            symbols=symbols,
            depth_interval=depth_interval,
            backoff=backoff,
            stall_timeout_s=stall_timeout_s,
            market_data_timeout_s=market_data_timeout_s,
            order_timeout_s=order_timeout_s,
            enforce_rate_limits=enforce_rate_limits,
            seed=seed,
            max_terminal_orders=max_terminal_orders,
            terminal_order_min_age_s=terminal_order_min_age_s,
        )
        self._signer = GateSigner(credentials, exptime_ms=order_exptime_ms) if credentials is not None else None
        self.order_expiry_s = None if order_exptime_ms is None else order_exptime_ms / 1000
        self._private_conn_gen = 0
        self._ids = itertools.count(1)
        #: private pushes (orders, user trades) for a symbol this connector does not trade: skipped
        self.unknown_symbol_pushes = 0

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        auth = GateAuth(self._signer, extra_headers=self.rest_headers) if self._signer is not None else None
        await self._open_rest_and_books(auth=auth, error_mapper=gate_error, rule=GATE_RULE, headers=self.rest_headers)
        session = self._http.session
        self._ws_market = WsClient(
            f"{self.name} market",
            self.ws_url,
            session,
            handler=self._on_market_event,
            heartbeat=gate_heartbeat(self.market),
            backoff=self._backoff,
            stall_timeout_s=self._stall_timeout_s,
            data_timeout_s=self._market_data_timeout_s,
            headers=self.rest_headers,
            seed=self._seed,
        )
        for inst in self._instruments.values():
            await self._ws_market.subscribe(
                f"depth:{inst.symbol}", self._depth_sub(inst.symbol)
            )
            await self._ws_market.subscribe(
                f"trades:{inst.symbol}",
                self._public_sub(f"{self.market}.trades", [inst.symbol]),
            )
            await self._ws_market.subscribe(
                f"ticker:{inst.symbol}",
                self._public_sub(f"{self.market}.book_ticker", [inst.symbol]),
            )
        self._ws_market.start()
        if self._signer is not None:
            self._order_entry = OrderEntryClient(
                self.name,
                self.rest_url,
                auth=auth,
                error_mapper=gate_error,
                limiter=self._limiter,
                request_timeout_s=self._order_timeout_s,
                headers=self.rest_headers,
            )
            await self._order_entry.connect()
            await self._prepare_private()
            self._ws_private = WsClient(
                f"{self.name} private",
                self.ws_url,
                session,
                handler=self._on_private_event,
                heartbeat=gate_heartbeat(self.market),
                backoff=self._backoff,
                stall_timeout_s=self._stall_timeout_s,
                headers=self.rest_headers,
                seed=self._seed,
            )
            for key, channel, payload in self._private_channels():
                await self._ws_private.subscribe(
                    key, self._private_sub(channel, payload)
                )
            self._ws_private.start()

    # ---- subscriptions ------------------------------------------------------------------------------

    def _depth_payload(self, symbol: str) -> list[str]:
        return [symbol, self.depth_interval]

    def _depth_sub(self, symbol: str) -> Callable[[], bytes]:
        payload = self._depth_payload(symbol)
        return lambda: codec.encode_ws_request(
            self.depth_channel,
            "subscribe",
            payload,
            time_s=int(time.time()),
            request_id=next(self._ids),
        )

    def _public_sub(self, channel: str, payload: list[str]) -> Callable[[], bytes]:
        return lambda: codec.encode_ws_request(
            channel,
            "subscribe",
            payload,
            time_s=int(time.time()),
            request_id=next(self._ids),
        )

    def _private_sub(self, channel: str, payload: list[str]) -> Callable[[], bytes]:
        signer = self._signer
        return lambda: codec.encode_ws_request(
            channel,
            "subscribe",
            payload,
            time_s=int(time.time()),
            request_id=next(self._ids),
            signer=signer,
        )

    # subclass hooks
    # Gate hooks
    async def _prepare_private(self) -> None:
        """Anything the private channels need first (futures: the user id)."""

    @abc.abstractmethod
    def _private_channels(self) -> list[tuple[str, str, list[str]]]:
        """``(subscription key, channel, payload)`` of each signed private subscription."""
        ...

    @abc.abstractmethod
    def _order_body(self, request: OrderRequest) -> bytes:
        """The JSON body of ``POST`` :attr:`_order_path` (ValueError: not expressible)."""
        ...

    #: The orders endpoint (``.../orders``); a class attribute, not a method: the order path
    #: reads it, and each Python call there runs cold after a quiet spell
    #: (``benchmarks/diagnostics/cold_path.py``)
    _order_path: str

    @abc.abstractmethod
    def _symbol_param(self) -> str:
        """The query parameter naming the instrument (``currency_pair`` / ``contract``)."""
        ...

    @abc.abstractmethod
    def _decode_order(self, data: bytes) -> Any:
        """One order record (with ``to_update``) from a response body."""
        ...

    @abc.abstractmethod
    def _decode_orders(self, data: bytes) -> list[Any]:
        """A list of order records (with ``to_update``) from a response body."""
        ...

    # ---- streams ------------------------------------------------------------------------------------

    def _on_market_event(self, event: WsEvent) -> None:
        books = self._books
        if type(event) is not WsFrame or books is None:
            self._manager.handle_ws_event(event, lambda frame: None)
            return
        data = event.data
        push = parse_gate_depth(data)  # the hot frame, parsed in Rust (None: anything else)
        if push is not None:
            books.on_update(push)  # its levels go to the Rust book natively (OrderBook.apply_push)
            self._last_depth_frame = data
            return
        try:
            msg = codec.decode_ws_frame(data)
        except codec.GateCodecError as exc:
            self.decode_errors += 1
            log.error(
                "venue=%s malformed market frame skipped (%d bytes): %s",
                self.name,
                len(event.data),
                exc,
            )
            return
        if type(msg) is codec.GateOrderBookUpdate:
            books.on_update(msg)  # a DepthPush as it is: no copy into a DepthUpdate
        elif isinstance(msg, codec.GateTradesUpdate):
            for t in msg.trades:
                inst = self._by_symbol.get(
                    getattr(t, "currency_pair", "") or getattr(t, "contract", "")
                )
                if inst is not None:
                    self._emit_market(t.to_trade(inst.key))
        elif isinstance(msg, codec.GateBookTickerUpdate):
            inst = self._by_symbol.get(msg.symbol)
            if inst is not None:
                self._emit_market(msg.to_book_ticker(inst.key))
        elif isinstance(msg, codec.GateWsError):
            log.error(
                "venue=%s market subscription error on %s: code %d",
                self.name,
                msg.channel,
                msg.code,
            )

    def _on_private_event(self, event: WsEvent) -> None:
        if isinstance(event, WsConnected):
            self._private_conn_gen = event.conn_id
            if event.reconnect:
                self.private_reconnects += 1
                self._private_reconnected = True
            return
        if isinstance(event, (WsDisconnected, WsOverflow)):
            self._private_reconnected = (
                True  # something may have been lost: backfill after the next ack
            )
            self._on_private_lost()
            if isinstance(event, WsOverflow):
                # still connected (no ack will come): the backfill starts now, retried until done
                self._private_reconnected = False
                self._request_backfill()
            return
        try:
            msg = codec.decode_ws_frame(event.data)
        except codec.GateCodecError as exc:
            self.decode_errors += 1
            log.error(
                "venue=%s malformed private frame skipped (%d bytes): %s",
                self.name,
                len(event.data),
                exc,
            )
            return
        if isinstance(msg, codec.GateUserTradesUpdate):
            for t in msg.trades:
                inst = self._push_instrument(t, msg.channel)
                if inst is not None:
                    self._deliver_fill(t.to_fill(inst))
        elif isinstance(msg, codec.GateOrdersUpdate):
            for o in msg.orders:
                inst = self._push_instrument(o, msg.channel)
                if inst is None:
                    continue
                try:
                    update = o.to_update(inst.key)
                except codec.GateCodecError as exc:
                    self.decode_errors += 1
                    log.error("venue=%s order push skipped: %s", self.name, exc)
                    continue
                self._apply_update(update)
                self._emit_private(update)
        elif isinstance(msg, codec.GateWsAck):
            if msg.channel.endswith(".usertrades") and self._private_reconnected:
                self._private_reconnected = False
                self._request_backfill()  # retried in the background until it succeeds
            self._on_private_ack(msg)
        elif isinstance(msg, codec.GateWsError):
            log.error(
                "venue=%s private subscription error on %s: code %d",
                self.name,
                msg.channel,
                msg.code,
            )
        else:
            self._on_other_private(msg)

    def _push_instrument(self, record: Any, channel: str) -> Instrument | None:
        """The instrument a private push ``record`` (an order or a user trade) is about, by its
        ``currency_pair`` (spot) / ``contract`` (futures); None -- logged and counted, never silent
        -- when the field is missing or empty (a malformed push: ``decode_errors``) or names a
        symbol this connector does not trade (``unknown_symbol_pushes``)."""
        field = "contract" if self.market == "futures" else "currency_pair"
        symbol = getattr(record, field, "") or ""
        inst = self._by_symbol.get(symbol)
        if inst is not None:
            return inst
        if not symbol:
            self.decode_errors += 1
            log.error(
                "venue=%s malformed %s push skipped: %s missing or empty (id %r)",
                self.name,
                channel,
                field,
                getattr(record, "id", None),
            )
        else:
            self.unknown_symbol_pushes += 1
            log.warning(
                "venue=%s %s push for %s=%r, not an instrument of this connector: skipped (id %r)",
                self.name,
                channel,
                field,
                symbol[:64],
                getattr(record, "id", None),
            )
        return None

    def _on_other_private(self, msg: Any) -> None:
        """Subclass hook for e.g. positions pushes."""

    def _on_private_ack(self, msg: codec.GateWsAck) -> None:
        """Subclass hook: a private subscription (or unsubscription) was acknowledged."""

    def _on_private_lost(self) -> None:
        """Subclass hook: the private stream dropped or overflowed (pushes may have been lost)."""

    # ---- PrivateVenue -------------------------------------------------------------------------------

    def place_order(self, request: OrderRequest) -> Coroutine[Any, Any, Order]:
        """Send ``request``; await the result for its Order (PENDING_NEW until acked, or REJECTED).

        No task hop: when the order can go at once (a rate-limit slot free, the order connection
        idle) it is signed and written on the socket before this returns, and the coroutine only
        waits for the reply -- ``loop.create_task(venue.place_order(req))`` in a market handler
        sends the order right there. Otherwise it waits for its slot / connection when awaited.
        """
        if not request.client_order_id:
            request = msgspec.structs.replace(
                request, client_order_id=new_client_order_id()
            )
        try:
            method, path, _, body = self._order_wire(request)  # what warm_order builds too
        except ValueError as exc:
            order = request.to_order(now_ns())
            self._orders[request.client_order_id] = order
            order.status = OrderStatus.REJECTED
            order.reject_reason = str(exc)
            self.order_retention.terminal(order.client_order_id, order.created_ns)
            return _resolved(order)
        oe = self._order_entry
        if oe is None:
            oe = self._oe  # raises: no credentials / not started
        reply = oe.start_request(method, path, (), body, endpoint_class=_ORDER, symbol=request.instrument.symbol)
        # the record after the write: no reply or push can be handled before we return to the loop
        order = request.to_order(now_ns())
        self._orders[request.client_order_id] = order
        return self._order_reply(request, order, reply)

    def _decode_depth_frame(self, data: str | bytes) -> object:
        return parse_gate_depth(data)

    def _order_wire(self, request: OrderRequest) -> tuple[str, str, tuple[()], bytes]:
        return "POST", self._order_path, (), self._order_body(request)

    async def _order_reply(
        self, request: OrderRequest, order: Order, reply: Awaitable[OrderEntryResponse]
    ) -> Order:
        """The rest of :meth:`place_order`: the venue's answer applied to ``order``."""
        try:
            resp = await reply
        except (VenueError, RateLimitExceeded) as exc:
            return self._placement_failed(order, exc)
        try:
            update = self._decode_order(resp.body).to_update(request.instrument.key)
        except ValueError as exc:  # GateCodecError: bad JSON / shape / values
            # a 2xx: the venue took the order, but we cannot read its answer -- outcome unknown,
            # as after a 5xx (queried by client order id in the background, never re-sent)
            self.decode_errors += 1
            self._on_outcome_unknown(
                order, OutcomeUnknownError(self.name, f"undecodable order reply: {exc}", http_status=resp.status)
            )
            return order
        self._apply_update(update)
        return order

    async def cancel_order(self, instrument_key: str, client_order_id: str) -> bool:
        """``DELETE .../orders/t-<id>`` (Gate APIv4 "Cancel a single order", PROTOCOLS.md §2.2,
        §3.2); True if the order was open when the request was sent (and is now cancelled).

        The cancel is idempotent and sent again once if its connection drops before an answer;
        when that first attempt went through, the retry hears ``ORDER_NOT_FOUND`` /
        ``ORDER_CLOSED``. So a not-found / not-open answer is checked by querying the order (by
        its venue order id when known -- Gate spot resolves ``t-`` text ids only while the order
        is open -- else by client order id; the answer is applied to the tracked order): True if
        it is CANCELED and we did not already know it finished before sending (a second cancel
        of an order we saw cancelled stays False); False otherwise (filled, unknown, still
        open). The limiter counts the path as the route ``.../orders/{order_id}``
        (:func:`~cexarb.venues.ratelimit.gate_endpoint`).

        Raises:
            VenueError / RateLimitExceeded: the cancel (or the check) failed otherwise.
        """
        inst = self._instrument(instrument_key)
        path = f"{self._order_path}/{codec.text_for_client_order_id(client_order_id)}"
        params = self._cancel_params(inst)
        tracked = self._orders.get(client_order_id)
        # before sending: the push of a first attempt that went through may land before the answer
        was_open = tracked is None or not tracked.status.is_terminal
        try:
            resp = await self._oe.delete(
                path,
                params,
                endpoint_class=EndpointClass.CANCEL,
                symbol=inst.symbol,
                idempotent=True,
            )
        except (OrderNotFoundError, OrderNotOpenError) as exc:
            if not was_open:
                return False  # we knew it had finished: no retry to make sense of
            return await self._cancelled_already(inst.key, client_order_id, exc)
        self._apply_update(self._decode_order(resp.body).to_update(inst.key))
        return True

    async def _cancelled_already(self, instrument_key: str, client_order_id: str, exc: VenueError) -> bool:
        """After a cancel answered not-found / not-open: is the order CANCELED on the venue?
        (:meth:`get_order` applies what it finds to the tracked order.)"""
        tracked = self._orders.get(client_order_id)
        venue_id = tracked.venue_order_id if tracked is not None else None
        if venue_id and venue_id.isdigit():
            order = await self._get_order_at(instrument_key, venue_id)
        else:
            order = await self.get_order(instrument_key, client_order_id)
        cancelled = order is not None and order.status is OrderStatus.CANCELED
        log.info(
            "venue=%s cancel %s answered %s; the order is %s",
            self.name,
            client_order_id,
            exc.code or type(exc).__name__,
            order.status.name if order is not None else "not found",
        )
        return cancelled

    def _cancel_params(self, inst: Instrument) -> list[tuple[str, str]]:
        return [(self._symbol_param(), inst.symbol)]

    async def cancel_all(self, instrument_key: str | None = None) -> int:
        insts = (
            [self._instrument(instrument_key)]
            if instrument_key
            else list(self._instruments.values())
        )
        n = 0
        for inst in insts:
            resp = await self._oe.delete(
                self._order_path,
                [(self._symbol_param(), inst.symbol)],
                endpoint_class=EndpointClass.CANCEL,
                symbol=inst.symbol,
                idempotent=True,
            )
            for o in self._decode_orders(resp.body):
                self._apply_update(o.to_update(inst.key))
                n += 1
        return n

    async def get_order(
        self, instrument_key: str, client_order_id: str
    ) -> Order | None:
        return await self._get_order_at(instrument_key, codec.text_for_client_order_id(client_order_id))

    async def get_order_by_venue_id(self, instrument_key: str, venue_order_id: str) -> Order | None:
        """``GET .../orders/{order_id}`` with Gate's numeric order id.

        Raises:
            ValueError: ``venue_order_id`` is not a Gate order id (digits only).
        """
        if not venue_order_id.isdigit():
            raise ValueError(f"Gate order id must be digits, got venue_order_id={venue_order_id!r}")
        return await self._get_order_at(instrument_key, venue_order_id)

    async def _get_order_at(self, instrument_key: str, order_ref: str) -> Order | None:
        """One order by Gate's ``{order_id}`` path segment: ``t-<text>`` or the numeric id.

        Rate-limited per endpoint: the limiter counts every such path as the one route
        ``.../orders/{order_id}`` (Gate's "200r/10s per endpoint";
        :meth:`~cexarb.venues.ratelimit.VenueLimits.endpoint`), not one window per order id."""
        inst = self._instrument(instrument_key)
        path = f"{self._order_path}/{order_ref}"
        try:
            resp = await self._http.get(path, self._cancel_params(inst), signed=True)
        except OrderNotFoundError:
            return None
        venue_order = self._decode_order(resp.body)
        order = self._order_from_venue(venue_order)
        if order is not None:
            self._apply_update(venue_order.to_update(inst.key))
        return order


async def _resolved(order: Order) -> Order:
    return order


class GateSpot(GateConnectorBase):
    """Gate.io spot v4 connector (see the module docs).

    Args:
        credentials: API key/secret (None: market data only).
        rest_url: ``https://api.gateio.ws`` (or the simulator's ``base_url``).
        ws_url: ``wss://api.gateio.ws/ws/v4/`` (or the simulator's ``ws_base_url + "/ws/v4/"``).
        symbols: currency pairs to load and stream (None: every tradable pair -- name them live).
        enforce_rate_limits: pace REST and orders with a client-side limiter of Gate's published
            limits (default); False: none (see :class:`~cexarb.venues.connector.ConnectorBase`).
    """

    name = "gateio-spot"
    market = "spot"
    limits = GATE_SPOT_LIMITS
    depth_channel = "spot.order_book_update"
    #: a buy's fee is taken from the base received (order / trade ``fee_currency``, §2.2)
    buy_fee_in_base = True

    def __init__(
        self, credentials: ApiCredentials | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("ws_url", "wss://api.gateio.ws/ws/v4/")
        super().__init__(credentials, **kwargs)
        # the spot.balances cache (see cached_balances): latest Balance per currency, the
        # currencies pushed since the stream (re)started, and the private connection whose
        # spot.balances subscription is acknowledged (None: no live balances stream)
        self._balance_cache: dict[str, Balance] = {}
        self._balance_pushed: set[str] = set()
        self._balances_live_conn: int | None = None
        self.balance_pushes = 0  # spot.balances rows applied (tests, metrics)

    async def _load_instruments(self) -> None:
        resp = await self._http.get(f"{_API}/spot/currency_pairs")
        for pair in codec.decode_currency_pairs(resp.body):
            if self._symbols_wanted is not None and pair.id not in self._symbols_wanted:
                continue
            if not pair.is_tradable:
                continue
            inst = pair.to_instrument()
            self._instruments[inst.key] = inst
            self._by_symbol[inst.symbol] = inst

    async def _fetch_snapshot(self, symbol: str) -> BookSnapshot:
        params = [("currency_pair", symbol), ("limit", "1000"), ("with_id", "true")]
        resp = await self._http.get(f"{_API}/spot/order_book", params)
        return BookSnapshot.from_gate(codec.decode_spot_order_book(resp.body))

    def _private_channels(self) -> list[tuple[str, str, list[str]]]:
        symbols = [i.symbol for i in self._instruments.values()]
        return [
            ("orders", "spot.orders", symbols),
            ("usertrades", "spot.usertrades", symbols),
            ("balances", "spot.balances", []),
        ]

    def _order_body(self, request: OrderRequest) -> bytes:
        if request.type is _MARKET and request.side is _BUY:
            request = self.market_buy_as_ioc_limit(request)
        return codec.spot_order_body(request)

    _order_path = _SPOT_ORDERS

    def _symbol_param(self) -> str:
        return "currency_pair"

    def _decode_order(self, data: bytes) -> codec.GateSpotOrder:
        return codec.decode_spot_order(data)

    def _decode_orders(self, data: bytes) -> list[codec.GateSpotOrder]:
        return codec.decode_spot_orders(data)

    def _order_from_venue(self, o: codec.GateSpotOrder) -> Order | None:
        inst = self._by_symbol.get(o.currency_pair)
        if inst is None:
            return None
        upd = o.to_update(inst.key)
        return Order(
            client_order_id=upd.client_order_id,
            instrument=inst,
            side=Side.BUY if o.side == "buy" else Side.SELL,
            type=OrderType.MARKET if o.type == "market" else OrderType.LIMIT,
            qty=o.amount,
            price=o.price or None,
            venue_order_id=upd.venue_order_id,
            status=upd.status,
            filled_qty=upd.filled_qty,
            avg_fill_price=upd.avg_fill_price,
            fees=o.fee
            if o.fee_currency == inst.quote
            else o.fee * (upd.avg_fill_price or 0.0),
            created_ns=int(o.create_time_ms * 1_000_000),
            updated_ns=upd.ts_ns,
            reject_reason=upd.reason if upd.status is OrderStatus.REJECTED else None,
        )

    async def _fetch_fills(self, symbol: str, limit: int = 100) -> list[Fill]:
        inst = self._by_symbol[symbol]
        resp = await self._http.get(
            f"{_API}/spot/my_trades",
            [("currency_pair", symbol), ("limit", str(limit))],
            signed=True,
        )
        return [t.to_fill(inst) for t in codec.decode_spot_trades(resp.body)]

    async def open_orders(self, instrument_key: str | None = None) -> list[Order]:
        resp = await self._http.get(f"{_API}/spot/open_orders", signed=True)
        out: list[Order] = []
        for group in codec.decode_spot_open_orders(resp.body):
            for o in group.orders:
                order = self._order_from_venue(o)
                if order is not None and (
                    instrument_key is None or order.instrument.key == instrument_key
                ):
                    out.append(order)
        return out

    async def balances(self) -> dict[str, Balance]:
        """Spot balances by currency from REST ``GET /spot/accounts`` (Gate APIv4 "List spot
        accounts", PROTOCOLS.md §2.2): ``free`` = ``available``, ``locked`` = ``locked``, in
        units of each currency. The source of truth; :meth:`cached_balances` is the push-fed view.

        Also fills the push-fed cache for currencies that have had no ``spot.balances`` push
        since the stream (re)started -- only when the balances stream was live (subscription
        acknowledged, same connection) for the whole request, so no change can fall between
        this answer and the pushes that follow it.
        """
        live = self._balances_live_conn
        resp = await self._http.get(f"{_API}/spot/accounts", signed=True)
        out = {a.currency: a.to_balance() for a in codec.decode_spot_accounts(resp.body)}
        if live is not None and live == self._balances_live_conn:
            for currency, bal in out.items():
                if currency not in self._balance_pushed:
                    self._balance_cache[currency] = Balance(asset=currency, free=bal.free, locked=bal.locked)
        return out

    @property
    def balances_stream_live(self) -> bool:
        """True while the ``spot.balances`` subscription of the current private connection is
        acknowledged: every balance change from now on reaches :meth:`cached_balances`."""
        return self._balances_live_conn is not None

    def cached_balances(self) -> dict[str, Balance]:
        """Latest spot balance per currency without a request: each ``spot.balances`` push row
        (Gate spot WS v4 "Spot balance channel": ``available`` -> ``free``, ``freeze`` ->
        ``locked``, absolute amounts after the change, units of the currency; PROTOCOLS.md §2.4)
        replaces its currency's entry; :meth:`balances` fills currencies not pushed since.

        Emptied when the private stream drops or overflows (a push may have been missed) and
        refilled by the next pushes / :meth:`balances` call. A copy: changing it changes nothing.
        """
        return {c: Balance(asset=b.asset, free=b.free, locked=b.locked) for c, b in self._balance_cache.items()}

    def _on_other_private(self, msg: Any) -> None:
        if isinstance(msg, codec.GateBalancesUpdate) and msg.channel == "spot.balances":
            for row in msg.balances:
                if isinstance(row, codec.GateBalanceChange):  # the spot schema (decoder-checked)
                    self._balance_cache[row.currency] = row.to_balance()
                    self._balance_pushed.add(row.currency)
                    self.balance_pushes += 1

    def _on_private_ack(self, msg: codec.GateWsAck) -> None:
        if msg.channel == "spot.balances":
            self._balances_live_conn = self._private_conn_gen if msg.event == "subscribe" else None

    def _on_private_lost(self) -> None:
        self._balances_live_conn = None
        self._balance_cache.clear()
        self._balance_pushed.clear()
