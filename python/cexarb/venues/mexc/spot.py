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
  MEXC allows at most 30 subscriptions per *connection* (PROTOCOLS.md §1.4 [MX-DOC]): the
  channels are split over as many market connections as needed (depth channels first, so up to
  30 symbols share one book connection), each a :class:`~cexarb.venues.ws.WsClient` with its own
  reconnect / resubscribe / heartbeat; a reconnect resubscribes that connection's channels only,
  and a disconnect / reconnect / overflow invalidates and resyncs only the books whose depth
  channels that connection carries (the books on the other connections stay live).
* **User data** at ``/ws?listenKey=``: the key is created with ``POST /api/v3/userDataStream``
  and kept alive with ``PUT`` every 30 min; a rejected key (``Invalid listen key``) is replaced
  before the next reconnect. ``private.orders`` -> :class:`OrderUpdate`, ``private.deals`` ->
  :class:`Fill`, de-duplicated by trade id; after a reconnect the missed fills are read from
  ``myTrades`` once the subscription is acknowledged again (shared logic of
  :class:`~cexarb.venues.connector.ConnectorBase`). ``private.account`` pushes update a per-asset
  balance cache (:meth:`MexcSpot.cached_balances`, no REST call).
* A **market buy** goes out as an ``IMMEDIATE_OR_CANCEL`` limit for the exact base quantity,
  priced from the local book (:meth:`MexcSpot.market_buy_as_ioc_limit`); a market sell is a
  MEXC ``MARKET`` order with ``quantity``.
* The ``POST /api/v3/order`` ack carries no status: :meth:`place_order` returns the order
  ``NEW`` (acked) and keeps updating that same object from the stream.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

import msgspec

from cexarb.model import (
    Balance,
    Fill,
    Order,
    OrderStatus,
    OrderType,
    Side,
)
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
MAX_CHANNELS_PER_CONNECTION = 30
"""MEXC's limit of subscriptions per WebSocket connection (PROTOCOLS.md §1.4 [MX-DOC])."""
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
        max_channels_per_connection: market channels per WebSocket connection, 1..30 (default
            30, MEXC's limit per connection, PROTOCOLS.md §1.4); more channels open more
            connections (:attr:`market_connections`).
    """

    name = "mexc-spot"
    market = "spot"
    limits = MEXC_SPOT_LIMITS
    #: a buy's fee is taken from the base received (``commissionAsset`` / ``feeCurrency``, §1.2, §1.5)
    buy_fee_in_base = True


    def __init__(
        self, credentials: ApiCredentials | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("ws_url", "wss://wbs-api.mexc.com/ws")
        kwargs.setdefault("rest_url", "https://api.mexc.com")  # [MX-DOC] REST base URL
        self.listen_key_keepalive_s = float(kwargs.pop("listen_key_keepalive_s", LISTEN_KEY_KEEPALIVE_S))
        cap = kwargs.pop("max_channels_per_connection", MAX_CHANNELS_PER_CONNECTION)
        if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= MAX_CHANNELS_PER_CONNECTION:
            raise ValueError(
                f"max_channels_per_connection must be an int in 1..{MAX_CHANNELS_PER_CONNECTION}, got {cap!r}"
            )
        self.max_channels_per_connection: int = cap
        super().__init__(credentials, **kwargs)
        self._mexc_signer = MexcSigner(credentials) if credentials is not None else None
        self._listen_key: str | None = None
        self.listen_key_renewals = 0
        self.listen_key_keepalives = 0
        self.listen_key_keepalive_failures = 0
        # market WebSocket connections, <= max_channels_per_connection channels each (the first
        # is also ConnectorBase._ws_market)
        self._ws_markets: list[WsClient] = []
        # latest balance per asset, from private.account pushes and the last balances() answer
        self._balances: dict[str, Balance] = {}
        self._balance_push_count: dict[str, int] = {}  # per asset: pushes applied so far
        self.balance_pushes = 0
        self._balances_to_refresh = False  # the cache was dropped on a private disconnect

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        auth = MexcAuth(self._mexc_signer) if self._mexc_signer is not None else None
        await self._open_rest_and_books(auth=auth, error_mapper=mexc_error, rule=MEXC_RULE)
        session = self._http.session
        groups = self._market_channel_groups()
        for n, chunk in enumerate(groups):
            depth_symbols = frozenset(
                ch.symbol for ch in map(codec.parse_channel, chunk) if ch.kind == "aggre.depth"
            )
            # a single connection (the usual case) takes the book manager's all-books handling
            # as is; with several, each gets a handler scoped to its own books
            handler = (
                self._on_market_event if len(groups) == 1 else self._market_conn_handler(depth_symbols)
            )
            ws = WsClient(
                f"{self.name} market" + (f" #{n}" if n else ""),
                self.ws_url,
                session,
                handler=handler,
                heartbeat=mexc_heartbeat(),
                backoff=self._backoff,
                stall_timeout_s=self._stall_timeout_s,
                data_timeout_s=self._market_data_timeout_s,
                seed=None if self._seed is None else self._seed + n,
            )
            # one SUBSCRIPTION request with this connection's channels, re-sent on its reconnects
            await ws.subscribe(f"public:{n}", functools.partial(codec.encode_subscribe, chunk))
            self._ws_markets.append(ws)
        self._ws_market = self._ws_markets[0] if self._ws_markets else None
        for ws in self._ws_markets:
            ws.start()
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

    @property
    def market_connections(self) -> list[WsClient]:
        """The market WebSocket connections, each with <= :attr:`max_channels_per_connection`
        channels (read them; do not start or stop them)."""
        return list(self._ws_markets)

    def _market_channel_groups(self) -> list[list[str]]:
        """The market channels split per connection (<= :attr:`max_channels_per_connection`
        each, MEXC's 30 per connection, PROTOCOLS.md §1.4): every symbol's ``aggre.depth`` first,
        then ``aggre.deals``, then ``aggre.bookTicker``, so the books share as few connections as
        possible."""
        insts = list(self._instruments.values())
        channels = (
            [codec.channel_aggre_depth(i.symbol) for i in insts]
            + [codec.channel_aggre_deals(i.symbol) for i in insts]
            + [codec.channel_aggre_book_ticker(i.symbol) for i in insts]
        )
        cap = self.max_channels_per_connection
        return [channels[i : i + cap] for i in range(0, len(channels), cap)]

    def _market_conn_handler(self, depth_symbols: frozenset[str]) -> Callable[[WsEvent], None]:
        """The handler of a market connection that carries the books of ``depth_symbols`` only
        (possibly none): frames go to :meth:`_on_market_event` as on the single connection; a
        disconnect invalidates those books only (:meth:`BookManager.invalidate
        <cexarb.venues.book_manager.BookManager.invalidate>`: invalid at once, one resync
        counted), a reconnect or overflow resyncs those books only (a snapshot of each). The
        books of the other connections are untouched; a connection carrying no book touches
        none."""
        on_frame = self._on_market_event

        def handler(event: WsEvent) -> None:
            if type(event) is WsFrame:
                on_frame(event)
                return
            if not depth_symbols:
                return
            books = self._manager
            if isinstance(event, WsConnected):
                if event.reconnect:
                    for symbol in depth_symbols:
                        books.resync(symbol, "reconnect")
            elif isinstance(event, WsDisconnected):
                for symbol in depth_symbols:
                    books.invalidate(symbol, f"disconnected: {event.reason}")
            elif isinstance(event, WsOverflow):
                for symbol in depth_symbols:
                    books.resync(symbol, f"{event.dropped} frames dropped")

        return handler

    async def aclose_ws_and_tasks(self) -> None:
        """Stop every market connection (the first one through the base class), the private
        stream, the tasks and the book fetches (bounded waits)."""
        extra = [ws for ws in self._ws_markets if ws is not self._ws_market]
        if extra:
            await asyncio.gather(*(ws.stop(timeout_s=5.0) for ws in extra))
        await super().aclose_ws_and_tasks()

    async def aclose(self) -> None:
        key, self._listen_key = self._listen_key, None
        await self.aclose_ws_and_tasks()
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
        """Extend the listen key every ``listen_key_keepalive_s`` (``PUT /api/v3/userDataStream``)
        for as long as the connector runs; renew it when the venue refuses it.

        Nothing but a cancel (:meth:`aclose`) ends this task: without it the key -- and with it
        the user-data stream -- dies 60 min later. A transient failure (5xx, 429, timeout) keeps
        the key (still valid) and retries within 60 s; a refusal renews the key, a renewal that
        fails is retried within 60 s; any other error (a body that does not decode...) is logged,
        counted in ``listen_key_keepalive_failures`` and retried within 60 s. Should the task
        still end otherwise, that is logged at ERROR."""
        try:
            await self._keep_listen_key_loop()
        except asyncio.CancelledError:
            raise
        except BaseException:
            log.exception(
                "venue=%s listen key keep-alive task ended unexpectedly: the user-data stream will die "
                "when the key expires",
                self.name,
            )
            raise

    async def _keep_listen_key_loop(self) -> None:
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
                if not await self._renew_listen_key():
                    delay = min(delay, 60.0)  # the old key may be dead: try again soon
                continue
            except Exception as exc:  # noqa: BLE001 - the keep-alive must outlive any one failure
                self.listen_key_keepalive_failures += 1
                delay = min(delay, 60.0)
                log.error(
                    "venue=%s listen key keep-alive failed unexpectedly (%s); retrying in %.0f s",
                    self.name,
                    type(exc).__name__,
                    delay,
                )
                continue
            self.listen_key_keepalives += 1

    async def _renew_listen_key(self) -> bool:
        """Replace the listen key (``POST /api/v3/userDataStream``); the private stream uses the
        new one from its next (re)connect. False, logged, when that failed for any reason (a
        refusal, a rate limit, a body that does not decode): the caller retries; never raises
        but for a cancel."""
        try:
            self._listen_key = await self._new_listen_key()
        except (VenueError, RateLimitExceeded) as exc:
            log.warning(
                "venue=%s listen key renewal failed: %s", self.name, type(exc).__name__
            )
            return False
        except Exception as exc:  # noqa: BLE001 - e.g. MexcCodecError: a malformed answer
            log.error(
                "venue=%s listen key renewal failed unexpectedly: %s", self.name, type(exc).__name__
            )
            return False
        self.listen_key_renewals += 1
        if self._ws_private is not None:
            self._ws_private.url = self._user_url()  # used from the next (re)connect on
        return True

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
                if self._balances_to_refresh:  # account pushes were missed meanwhile
                    self._balances_to_refresh = False
                    self._spawn(self._refresh_balances())
            return
        if isinstance(event, (WsDisconnected, WsOverflow)):
            self._private_reconnected = True
            if isinstance(event, WsDisconnected) and self._balances:
                # pushes are missed until the stream is back: no stale entry is served meanwhile
                # (as the Gate spot connector does); refreshed from REST on the reconnect
                self._balances.clear()
                self._balances_to_refresh = True
            if isinstance(event, WsOverflow):
                # still connected (no ack will come): the backfill starts now, retried until done
                self._private_reconnected = False
                self._request_backfill()
                if self._balances:
                    self._spawn(self._refresh_balances())
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
                self._request_backfill()  # retried in the background until it succeeds
            return
        try:
            push = codec.decode_push(data)
            body = push.body
            if isinstance(body, proto.PrivateAccount):  # per asset, no symbol
                self._apply_balance_push(codec.balance_from_push(push))
                return
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

    # ---- balances cache ---------------------------------------------------------------------------

    def _apply_balance_push(self, balance: Balance) -> None:
        """One ``spot@private.account.v3.api.pb`` push (body 307, PROTOCOLS.md §1.5
        [MX-PROTO]): ``balanceAmount`` (available) and ``frozenAmount`` of one asset *after*
        the change, base/quote units of that asset; replaces the cached entry."""
        if not balance.asset:
            self.decode_errors += 1
            log.error("venue=%s account push without vcoinName skipped", self.name)
            return
        self._balances[balance.asset] = balance
        self._balance_push_count[balance.asset] = self._balance_push_count.get(balance.asset, 0) + 1
        self.balance_pushes += 1

    def cached_balances(self) -> dict[str, Balance]:
        """The latest balance per asset known without a REST call: free (available) and locked
        (frozen) amounts in units of each asset, from ``spot@private.account`` pushes
        (PROTOCOLS.md §1.4/§1.5: body 307 carries the balance after each change) and the last
        :meth:`balances` answer, whichever is newer per asset. Only assets that were pushed or
        returned by :meth:`balances` appear (call :meth:`balances` once to seed every asset).
        While the private stream is down the cache is empty (pushes are being missed); after
        the reconnect it is refreshed by ``GET /api/v3/account``.
        Returns copies; no I/O."""
        return {a: msgspec.structs.replace(b) for a, b in self._balances.items()}

    def cached_balance(self, asset: str) -> Balance | None:
        """:meth:`cached_balances` of one ``asset`` (None: never pushed nor fetched)."""
        bal = self._balances.get(asset)
        return None if bal is None else msgspec.structs.replace(bal)

    async def _refresh_balances(self) -> None:
        try:
            await self.balances()
        except (VenueError, RateLimitExceeded) as exc:
            log.warning("venue=%s balance refresh failed: %s", self.name, type(exc).__name__)

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
        try:
            ack = codec.decode_order_ack(resp.body)
        except ValueError as exc:
            # a 2xx: the venue took the order, but we cannot read its answer -- outcome unknown,
            # as after a 5xx (queried by client order id in the background, never re-sent)
            self.decode_errors += 1
            self._on_outcome_unknown(
                order, OutcomeUnknownError(self.name, f"undecodable order reply: {exc}", http_status=resp.status)
            )
            return order
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
        """``POST /api/v3/order`` with every parameter in the query (as ccxt sends it,
        PROTOCOLS.md §1.3); a market buy as :meth:`market_buy_as_ioc_limit` builds it."""
        if request.type is OrderType.MARKET and request.side is Side.BUY:
            request = self.market_buy_as_ioc_limit(request)
        return "POST", f"{_V}/order", codec.order_params(request), b""

    async def cancel_order(self, instrument_key: str, client_order_id: str) -> bool:
        """``DELETE /api/v3/order`` by ``origClientOrderId`` (PROTOCOLS.md §1.2); True if the
        order was open and is now cancelled.

        The cancel is idempotent, so the order-entry client sends it once more when the
        connection dropped before any answer. If the first attempt went through, the retry is
        answered "unknown order" (-2011): so on "not found" / "not open", and on a 5xx, dropped
        connection or timeout, the order is queried by client order id (``GET /api/v3/order``)
        and the answer is True when the venue reports it CANCELED (that state is applied) and
        this connector did not already know it finished (a second cancel of a cancelled order
        is still False); False when it is filled / unknown. After a 5xx / drop / timeout whose
        order is still open (the cancel did not happen) or whose query fails too, the original
        error is raised.

        Raises:
            ServerError, NetworkError, RequestTimeoutError: see above.
        """
        inst = self._instrument(instrument_key)
        params = [("symbol", inst.symbol), ("origClientOrderId", client_order_id)]
        tracked = self._orders.get(client_order_id)
        was_open = tracked is None or not tracked.status.is_terminal
        try:
            resp = await self._oe.delete(
                f"{_V}/order",
                params,
                endpoint_class=EndpointClass.CANCEL,
                symbol=inst.symbol,
                idempotent=True,
            )
        except (OrderNotFoundError, OrderNotOpenError):
            if not was_open:
                return False
            try:
                return await self._cancel_confirmed(inst.key, client_order_id) is True
            except (VenueError, RateLimitExceeded) as exc:
                log.warning(
                    "venue=%s cancel %s: not found, and the query failed (%s)",
                    self.name,
                    client_order_id,
                    type(exc).__name__,
                )
                return False
        except (ServerError, NetworkError, RequestTimeoutError) as exc:
            try:
                cancelled = await self._cancel_confirmed(inst.key, client_order_id)
            except (VenueError, RateLimitExceeded):
                raise exc from None
            if cancelled is None:  # still open: the cancel did not happen
                raise
            return cancelled and was_open
        self._apply_update(codec.decode_order(resp.body).to_update(inst.key))
        return True

    async def _cancel_confirmed(self, instrument_key: str, client_order_id: str) -> bool | None:
        """After a cancel whose answer was lost or "not found": the venue's state of the order
        (``GET /api/v3/order``, applied to the tracked order by :meth:`get_order`). True:
        CANCELED (also MEXC's PARTIALLY_CANCELED); False: finished otherwise or unknown; None:
        still open."""
        order = await self.get_order(instrument_key, client_order_id)
        if order is None:
            return False
        if order.status is OrderStatus.CANCELED:
            log.info("venue=%s cancel %s: confirmed cancelled by a query", self.name, client_order_id)
            return True
        return None if order.is_open else False

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
        """Every asset's free and locked amount (units of the asset) from ``GET /api/v3/account``
        (PROTOCOLS.md §1.2, weight 10). Also refreshes :meth:`cached_balances`, except for an
        asset whose account push arrived while the request was in flight (the push is newer)."""
        pushes_before = dict(self._balance_push_count)
        resp = await self._http.get(f"{_V}/account", signed=True)
        out = {b.asset: b.to_balance() for b in codec.decode_account(resp.body).balances}
        for asset, bal in out.items():
            if self._balance_push_count.get(asset, 0) == pushes_before.get(asset, 0):
                self._balances[asset] = msgspec.structs.replace(bal)
        return out
