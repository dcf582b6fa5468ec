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
  ``spot.usertrades`` -> :class:`Fill`. Fills are de-duplicated by venue trade id; after a
  reconnect, once the usertrades subscription is acknowledged again, the fills the connection
  missed are fetched over REST (``my_trades``) and delivered -- none lost, none twice -- and the
  orders we track are re-queried.
* Client order ids go out as Gate ``text`` (``t-<id>``); an empty one is assigned here. Prices and
  quantities are the request's exact wire strings (:func:`codec.spot_order_body`).
* Keys come in an :class:`~cexarb.venues.secrets.ApiCredentials` and are never logged.

The futures connector (:mod:`cexarb.venues.gateio.futures`) reuses :class:`GateConnectorBase`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, ClassVar, Self

import aiohttp
import msgspec

from cexarb._core import OrderBook
from cexarb.model import (
    Balance,
    Fill,
    Instrument,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Side,
)
from cexarb.venues.base import (
    BookUpdate,
    MarketEvent,
    OrderRequest,
    OrderUpdate,
    PrivateEvent,
)
from cexarb.venues.book_manager import GATE_RULE, BookManager, BookSnapshot, DepthUpdate
from cexarb.venues.gateio import codec
from cexarb.venues.gateio.signing import GateSigner
from cexarb.venues.order_entry import OrderEntryClient
from cexarb.venues.ratelimit import (
    GATE_SPOT_LIMITS,
    EndpointClass,
    RateLimiter,
    VenueLimits,
)
from cexarb.venues.rest import (
    GateAuth,
    OrderNotFoundError,
    OrderNotOpenError,
    OutcomeUnknownError,
    RestClient,
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
_TIMEOUT_S = 10.0
_MAX_SEEN_FILLS = 100_000


def _new_client_order_id() -> str:
    # 20 chars of [0-9a-f]: fits Gate's 28-char text and MEXC's newClientOrderId
    return "cx" + os.urandom(9).hex()


def _now_ns() -> int:
    return time.time_ns()


class GateConnectorBase:
    """What Gate spot and USDT futures share; subclasses fill in paths and codecs."""

    name: ClassVar[str]
    market: ClassVar[str]  # "spot" / "futures"
    limits: ClassVar[VenueLimits]
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
        seed: int | None = None,
    ) -> None:
        self._credentials = credentials
        self.rest_url = rest_url.rstrip("/")
        self.ws_url = ws_url
        self._symbols_wanted = list(symbols) if symbols is not None else None
        self.depth_interval = depth_interval
        self._backoff = backoff or Backoff(initial_s=0.2, max_s=5.0)
        self._stall_timeout_s = stall_timeout_s
        self._seed = seed
        self._signer = GateSigner(credentials) if credentials is not None else None
        self._limiter = RateLimiter(self.limits)
        self._rest: RestClient | None = None
        self._order_entry: OrderEntryClient | None = None
        self._books: BookManager | None = None
        self._ws_market: WsClient | None = None
        self._ws_private: WsClient | None = None
        self._instruments: dict[str, Instrument] = {}  # by key
        self._by_symbol: dict[str, Instrument] = {}
        self._market_handlers: list[Callable[[MarketEvent], None]] = []
        self._private_handlers: list[Callable[[PrivateEvent], None]] = []
        self._orders: dict[str, Order] = {}  # by client order id
        self._seen_fills: set[str] = set()
        self._seen_order: deque[str] = deque()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started_s = 0.0
        self._private_conn_gen = 0
        self._private_reconnected = False
        self._ids = itertools.count(1)
        # counters (tests, metrics)
        self.decode_errors = 0
        self.backfilled_fills = 0
        self.duplicate_fills = 0
        self.private_reconnects = 0

    # ---- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        self._started_s = time.time()
        auth = (
            GateAuth(self._signer, extra_headers=self.rest_headers)
            if self._signer is not None
            else None
        )
        self._rest = RestClient(
            self.name,
            self.rest_url,
            auth=auth,
            error_mapper=gate_error,
            limiter=self._limiter,
            timeout=aiohttp.ClientTimeout(
                total=_TIMEOUT_S, sock_connect=3.0, sock_read=8.0
            ),
            headers=self.rest_headers,
            seed=self._seed,
        )
        await self._rest.__aenter__()
        await self._load_instruments()
        self._books = BookManager(
            self.name,
            GATE_RULE,
            self._fetch_snapshot,
            on_book=self._on_book,
            first_push_wait_s=2.0,
            seed=self._seed,
        )
        for inst in self._instruments.values():
            self._books.add_symbol(inst.symbol, inst.tick_size, inst.lot_size)
        session = self._rest.session
        self._ws_market = WsClient(
            f"{self.name} market",
            self.ws_url,
            session,
            handler=self._on_market_event,
            heartbeat=gate_heartbeat(self.market),
            backoff=self._backoff,
            stall_timeout_s=self._stall_timeout_s,
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
                request_timeout_s=_TIMEOUT_S,
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

    async def aclose(self) -> None:
        """Stop the WebSockets, background tasks, book fetches and HTTP clients (bounded waits)."""
        await self.aclose_ws_and_tasks()
        await self.aclose_clients()

    async def aclose_ws_and_tasks(self) -> None:
        for ws in (self._ws_private, self._ws_market):
            if ws is not None:
                await ws.stop(timeout_s=5.0)
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        if self._books is not None:
            await self._books.aclose()

    async def aclose_clients(self) -> None:
        if self._order_entry is not None:
            await self._order_entry.aclose()
        if self._rest is not None:
            await self._rest.aclose()

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
    async def _load_instruments(self) -> None:
        raise NotImplementedError

    async def _fetch_snapshot(self, symbol: str) -> BookSnapshot:
        raise NotImplementedError

    async def _prepare_private(self) -> None:
        """Anything the private channels need first (futures: the user id)."""

    def _private_channels(self) -> list[tuple[str, str, list[str]]]:
        raise NotImplementedError

    def _order_body(self, request: OrderRequest) -> bytes:
        raise NotImplementedError

    def _order_path(self) -> str:
        raise NotImplementedError

    def _symbol_param(self) -> str:
        raise NotImplementedError

    def _decode_order(self, data: bytes) -> Any:
        raise NotImplementedError

    def _decode_orders(self, data: bytes) -> list[Any]:
        raise NotImplementedError

    def _order_from_venue(self, venue_order: Any) -> Order | None:
        raise NotImplementedError

    async def _fetch_fills(self, symbol: str, limit: int = 100) -> list[Fill]:
        raise NotImplementedError

    # ---- PublicVenue --------------------------------------------------------------------------------

    def instruments(self) -> dict[str, Instrument]:
        return dict(self._instruments)

    def book(self, instrument_key: str) -> OrderBook:
        return self._manager.book(self._instrument(instrument_key).symbol)

    def subscribe_market(self, handler: Callable[[MarketEvent], None]) -> None:
        self._market_handlers.append(handler)

    @property
    def book_manager(self) -> BookManager:
        return self._manager

    async def wait_synced(self, instrument_key: str, timeout_s: float = 10.0) -> None:
        """Wait until the book of ``instrument_key`` is in sync (TimeoutError otherwise)."""
        await self._manager.wait_synced(
            self._instrument(instrument_key).symbol, timeout_s
        )

    @property
    def _manager(self) -> BookManager:
        if self._books is None:
            raise RuntimeError(
                f"{self.name} connector is not started: use 'async with'"
            )
        return self._books

    def _instrument(self, instrument_key: str) -> Instrument:
        inst = self._instruments.get(instrument_key) or self._by_symbol.get(
            instrument_key
        )
        if inst is None:
            raise KeyError(f"{self.name}: unknown instrument {instrument_key!r}")
        return inst

    def _emit_market(self, event: MarketEvent) -> None:
        for handler in self._market_handlers:
            try:
                handler(event)
            except Exception:
                log.exception(
                    "venue=%s market handler failed on %s",
                    self.name,
                    type(event).__name__,
                )

    def _on_book(self, symbol: str, book: OrderBook) -> None:
        inst = self._by_symbol.get(symbol)
        if inst is None or not self._market_handlers:
            return
        self._emit_market(
            BookUpdate(
                instrument_key=inst.key,
                ts_ns=_now_ns(),
                price_changed=book.bbo_price_changed,
            )
        )

    def _on_market_event(self, event: WsEvent) -> None:
        books = self._manager
        if not isinstance(event, WsFrame):
            books.handle_ws_event(event, lambda frame: None)
            return
        try:
            msg = codec.decode_ws_frame(event.data)
        except codec.GateCodecError as exc:
            self.decode_errors += 1
            log.error(
                "venue=%s malformed market frame skipped (%d bytes): %s",
                self.name,
                len(event.data),
                exc,
            )
            return
        if isinstance(msg, codec.GateOrderBookUpdate):
            books.on_update(DepthUpdate.from_gate(msg))
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

    # ---- private stream -----------------------------------------------------------------------------

    def subscribe(self, handler: Callable[[PrivateEvent], None]) -> None:
        self._private_handlers.append(handler)

    def _emit_private(self, event: PrivateEvent) -> None:
        for handler in self._private_handlers:
            try:
                handler(event)
            except Exception:
                log.exception(
                    "venue=%s private handler failed on %s",
                    self.name,
                    type(event).__name__,
                )

    def _deliver_fill(self, fill: Fill) -> bool:
        """Deliver ``fill`` once (by venue trade id); False if already delivered."""
        fid = fill.fill_id or f"{fill.venue_order_id}:{fill.ts_ns}:{fill.qty}"
        if fid in self._seen_fills:
            self.duplicate_fills += 1
            return False
        self._seen_fills.add(fid)
        self._seen_order.append(fid)
        if len(self._seen_order) > _MAX_SEEN_FILLS:
            self._seen_fills.discard(self._seen_order.popleft())
        self._emit_private(fill)
        return True

    def _apply_update(self, update: OrderUpdate) -> None:
        order = self._orders.get(update.client_order_id)
        if order is not None:
            order.venue_order_id = update.venue_order_id or order.venue_order_id
            if update.filled_qty >= order.filled_qty:
                order.status = update.status
                order.filled_qty = update.filled_qty
                order.avg_fill_price = update.avg_fill_price
                order.updated_ns = update.ts_ns
                if update.status is OrderStatus.REJECTED:
                    order.reject_reason = update.reason

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
            if isinstance(event, WsOverflow):
                self._spawn(self._backfill())
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
                inst = self._by_symbol.get(
                    getattr(t, "currency_pair", "") or getattr(t, "contract", "")
                )
                if inst is not None:
                    self._deliver_fill(t.to_fill(inst))
        elif isinstance(msg, codec.GateOrdersUpdate):
            for o in msg.orders:
                inst = self._by_symbol.get(
                    getattr(o, "currency_pair", "") or getattr(o, "contract", "")
                )
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
                self._spawn(self._backfill())
        elif isinstance(msg, codec.GateWsError):
            log.error(
                "venue=%s private subscription error on %s: code %d",
                self.name,
                msg.channel,
                msg.code,
            )
        else:
            self._on_other_private(msg)

    def _on_other_private(self, msg: Any) -> None:
        """Subclass hook for e.g. positions pushes."""

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _backfill(self) -> None:
        """After a reconnect: deliver the fills the stream missed (REST), re-query tracked orders."""
        try:
            for inst in self._instruments.values():
                fills = await self._fetch_fills(inst.symbol, limit=1000)
                for fill in sorted(fills, key=lambda f: f.ts_ns):
                    if fill.ts_ns < self._started_s * 1e9 - 5e9:
                        continue
                    if self._deliver_fill(fill):
                        self.backfilled_fills += 1
            for cid, order in list(self._orders.items()):
                if not order.is_open:
                    continue
                fresh = await self.get_order(order.instrument.key, cid)
                if fresh is not None and (
                    fresh.status != order.status or fresh.filled_qty != order.filled_qty
                ):
                    self._emit_private(
                        OrderUpdate(
                            client_order_id=cid,
                            venue_order_id=fresh.venue_order_id or "",
                            instrument_key=order.instrument.key,
                            status=fresh.status,
                            filled_qty=fresh.filled_qty,
                            avg_fill_price=fresh.avg_fill_price,
                            ts_ns=fresh.updated_ns or _now_ns(),
                            reason=fresh.reject_reason,
                        )
                    )
        except VenueError as exc:
            log.warning(
                "venue=%s backfill after reconnect failed: %s",
                self.name,
                type(exc).__name__,
            )
            self._private_reconnected = True

    # ---- PrivateVenue -------------------------------------------------------------------------------

    @property
    def _oe(self) -> OrderEntryClient:
        if self._order_entry is None:
            raise RuntimeError(f"{self.name}: no credentials / not started")
        return self._order_entry

    @property
    def _http(self) -> RestClient:
        if self._rest is None:
            raise RuntimeError(
                f"{self.name} connector is not started: use 'async with'"
            )
        return self._rest

    async def place_order(self, request: OrderRequest) -> Order:
        if not request.client_order_id:
            request = msgspec.structs.replace(
                request, client_order_id=_new_client_order_id()
            )
        order = request.to_order(_now_ns())
        self._orders[request.client_order_id] = order
        try:
            body = self._order_body(request)
        except ValueError as exc:
            order.status = OrderStatus.REJECTED
            order.reject_reason = str(exc)
            return order
        try:
            resp = await self._oe.post(
                self._order_path(),
                (),
                body,
                endpoint_class=EndpointClass.ORDER,
                symbol=request.instrument.symbol,
            )
        except OutcomeUnknownError as exc:
            log.warning(
                "venue=%s order %s outcome unknown: %s",
                self.name,
                request.client_order_id,
                exc.message,
            )
            return order  # PENDING_NEW: the stream or get_order tells
        except VenueError as exc:
            order.status = OrderStatus.REJECTED
            order.reject_reason = exc.code or type(exc).__name__
            order.updated_ns = _now_ns()
            return order
        venue_order = self._decode_order(resp.body)
        self._apply_update(venue_order.to_update(request.instrument.key))
        return order

    async def cancel_order(self, instrument_key: str, client_order_id: str) -> bool:
        inst = self._instrument(instrument_key)
        path = f"{self._order_path()}/{codec.text_for_client_order_id(client_order_id)}"
        params = self._cancel_params(inst)
        try:
            resp = await self._oe.delete(
                path,
                params,
                endpoint_class=EndpointClass.CANCEL,
                symbol=inst.symbol,
                idempotent=True,
            )
        except (OrderNotFoundError, OrderNotOpenError):
            return False
        self._apply_update(self._decode_order(resp.body).to_update(inst.key))
        return True

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
                self._order_path(),
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
        inst = self._instrument(instrument_key)
        path = f"{self._order_path()}/{codec.text_for_client_order_id(client_order_id)}"
        try:
            resp = await self._http.get(path, self._cancel_params(inst), signed=True)
        except OrderNotFoundError:
            return None
        venue_order = self._decode_order(resp.body)
        order = self._order_from_venue(venue_order)
        if order is not None:
            self._apply_update(venue_order.to_update(inst.key))
        return order

    async def fills(self, instrument_key: str | None = None) -> list[Fill]:
        insts = (
            [self._instrument(instrument_key)]
            if instrument_key
            else list(self._instruments.values())
        )
        out: list[Fill] = []
        for inst in insts:
            out.extend(await self._fetch_fills(inst.symbol, limit=1000))
        out.sort(key=lambda f: f.ts_ns)
        return out

    async def positions(self) -> dict[str, Position]:
        return {}


class GateSpot(GateConnectorBase):
    """Gate.io spot v4 connector (see the module docs).

    Args:
        credentials: API key/secret (None: market data only).
        rest_url: ``https://api.gateio.ws`` (or the simulator's ``base_url``).
        ws_url: ``wss://api.gateio.ws/ws/v4/`` (or the simulator's ``ws_base_url + "/ws/v4/"``).
        symbols: currency pairs to load and stream (None: every tradable pair -- name them live).
    """

    name = "gateio-spot"
    market = "spot"
    limits = GATE_SPOT_LIMITS
    depth_channel = "spot.order_book_update"

    def __init__(
        self, credentials: ApiCredentials | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("ws_url", "wss://api.gateio.ws/ws/v4/")
        super().__init__(credentials, **kwargs)

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
        return codec.spot_order_body(request)

    def _order_path(self) -> str:
        return f"{_API}/spot/orders"

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
        resp = await self._http.get(f"{_API}/spot/accounts", signed=True)
        return {
            a.currency: a.to_balance() for a in codec.decode_spot_accounts(resp.body)
        }
