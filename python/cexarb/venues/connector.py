"""What every venue connector shares, whatever the venue's wire format.

:class:`ConnectorBase` is one object that is both a :class:`~cexarb.venues.base.PublicVenue` and a
:class:`~cexarb.venues.base.PrivateVenue`. It holds the venue-neutral machinery: the lifecycle
(``async with``, bounded shutdown of WebSockets, tasks, book fetches and HTTP clients), the REST
session and order-entry accessors, the book manager and the ``PublicVenue`` methods, handler
registration and delivery, fill de-duplication by venue trade id, order tracking
(:meth:`ConnectorBase._apply_update`), the REST backfill after a private-stream reconnect,
:meth:`ConnectorBase.fills` and a flat :meth:`ConnectorBase.positions`.

What a venue must supply (connecting, instruments, snapshots, fills, order entry and decoding its
frames) is declared abstract. The Gate.io connectors share a further layer,
:class:`~cexarb.venues.gateio.spot.GateConnectorBase`; MEXC subclasses :class:`ConnectorBase`
directly.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, ClassVar, Self

import aiohttp

from cexarb._core import OrderBook
from cexarb.model import Balance, Fill, Instrument, Order, OrderStatus, Position
from cexarb.venues.base import (
    BookUpdate,
    MarketEvent,
    OrderRequest,
    OrderUpdate,
    PrivateEvent,
)
from cexarb.venues.book_manager import BookManager, BookSnapshot, SequenceRule
from cexarb.venues.order_entry import OrderEntryClient
from cexarb.venues.ratelimit import RateLimiter, VenueLimits
from cexarb.venues.rest import RestClient, VenueError
from cexarb.venues.secrets import ApiCredentials
from cexarb.venues.ws import Backoff, WsClient, WsEvent

__all__ = ["TIMEOUT_S", "ConnectorBase", "new_client_order_id", "now_ns"]

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0
"""Total timeout (seconds) of one REST request / order-entry request."""
_MAX_SEEN_FILLS = 100_000


def new_client_order_id() -> str:
    """A fresh client order id: ``cx`` + 18 hex digits."""
    # 20 chars of [0-9a-f]: fits Gate's 28-char text and MEXC's newClientOrderId
    return "cx" + os.urandom(9).hex()


def now_ns() -> int:
    """Wall-clock time, ns since the epoch."""
    return time.time_ns()


class ConnectorBase(abc.ABC):
    """Venue-neutral connector core; subclasses connect, decode and address orders."""

    name: ClassVar[str]
    market: ClassVar[str]  # "spot" / "futures"
    limits: ClassVar[VenueLimits]

    def __init__(
        self,
        credentials: ApiCredentials | None = None,
        *,
        rest_url: str,
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
        self._private_reconnected = False
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

    @abc.abstractmethod
    async def start(self) -> None:
        """Open the REST session, load instruments, start the market (and private) streams."""
        ...

    async def _open_rest_and_books(
        self,
        *,
        auth: Any,
        error_mapper: Callable[..., Any],
        rule: SequenceRule,
        headers: dict[str, str] | None = None,
    ) -> None:
        """First step of every ``start``: open the venue's one REST session (this connector's rate
        limiter, explicit timeouts), load the instruments and create the book manager with the
        venue's sequence rule and one book per instrument."""
        self._started_s = time.time()
        self._rest = RestClient(
            self.name,
            self.rest_url,
            auth=auth,
            error_mapper=error_mapper,
            limiter=self._limiter,
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_S, sock_connect=3.0, sock_read=8.0),
            headers=headers,
            seed=self._seed,
        )
        await self._rest.__aenter__()
        await self._load_instruments()
        self._books = BookManager(
            self.name, rule, self._fetch_snapshot, on_book=self._on_book, first_push_wait_s=2.0, seed=self._seed
        )
        for inst in self._instruments.values():
            self._books.add_symbol(inst.symbol, inst.tick_size, inst.lot_size)

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

    # ---- venue hooks ------------------------------------------------------------------------------

    @abc.abstractmethod
    async def _load_instruments(self) -> None:
        """Fill ``_instruments`` / ``_by_symbol`` from the venue (REST)."""
        ...

    @abc.abstractmethod
    async def _fetch_snapshot(self, symbol: str) -> BookSnapshot:
        """A REST depth snapshot of ``symbol`` for the book manager."""
        ...

    @abc.abstractmethod
    async def _fetch_fills(self, symbol: str, limit: int = 100) -> list[Fill]:
        """Our recent fills on ``symbol`` (REST)."""
        ...

    @abc.abstractmethod
    def _order_from_venue(self, venue_order: Any) -> Order | None:
        """An :class:`Order` from the venue's order record (None: unknown instrument)."""
        ...

    @abc.abstractmethod
    def _on_market_event(self, event: WsEvent) -> None:
        """Handler of the market WebSocket."""
        ...

    @abc.abstractmethod
    def _on_private_event(self, event: WsEvent) -> None:
        """Handler of the private (user data) WebSocket."""
        ...

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
                ts_ns=now_ns(),
                price_changed=book.bbo_price_changed,
            )
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
                            ts_ns=fresh.updated_ns or now_ns(),
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

    @abc.abstractmethod
    async def place_order(self, request: OrderRequest) -> Order: ...

    @abc.abstractmethod
    async def cancel_order(self, instrument_key: str, client_order_id: str) -> bool: ...

    @abc.abstractmethod
    async def cancel_all(self, instrument_key: str | None = None) -> int: ...

    @abc.abstractmethod
    async def get_order(
        self, instrument_key: str, client_order_id: str
    ) -> Order | None: ...

    @abc.abstractmethod
    async def open_orders(self, instrument_key: str | None = None) -> list[Order]: ...

    @abc.abstractmethod
    async def balances(self) -> dict[str, Balance]: ...

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
