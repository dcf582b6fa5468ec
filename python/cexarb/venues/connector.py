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
import math
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from decimal import Decimal
from types import TracebackType
from typing import Any, ClassVar, Self

import aiohttp

from cexarb._core import OrderBook
from cexarb.model import (
    Balance,
    Fill,
    FundingInfo,
    Instrument,
    Order,
    OrderStatus,
    Position,
    Side,
    TimeInForce,
)
from cexarb.retention import TerminalOrderRetention
from cexarb.venues.base import (
    BookUpdate,
    MarketEvent,
    OrderRequest,
    OrderUpdate,
    PrivateEvent,
)
from cexarb.venues.book_manager import BookManager, BookSnapshot, SequenceRule
from cexarb.venues.order_entry import OrderEntryClient
from cexarb.venues.ratelimit import RateLimiter, RateLimitExceeded, VenueLimits
from cexarb.venues.rest import OutcomeUnknownError, QueryParams, RestClient, VenueError
from cexarb.venues.secrets import ApiCredentials
from cexarb.venues.ws import Backoff, WsClient, WsEvent

__all__ = ["MARKET_DATA_TIMEOUT_S", "TIMEOUT_S", "ConnectorBase", "new_client_order_id", "now_ns"]

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0
"""Total timeout (seconds) of one REST request / order-entry request."""
_MAX_SEEN_FILLS = 100_000
_RESOLVE_DELAYS_S = (0.0, 0.5, 1.0, 2.0, 4.0)
"""Default delays (s) between the queries that resolve an order whose outcome was unknown: 7.5 s in
all, longer than a venue-side request expiry (Gate ``x-gate-exptime``, 5 s) plus
:data:`_EXPIRY_MARGIN_S`; :meth:`ConnectorBase._resolve_unknown` waits that out anyway."""
_RESOLVE_RETRY_INITIAL_S = 0.5
_RESOLVE_RETRY_MAX_S = 30.0
"""Once ``resolve_delays_s`` is spent without a definitive answer (the queries failed), the order
of unknown outcome is queried again after 0.5 s, 1 s, 2 s ... capped at 30 s, until the venue
answers."""
_BACKFILL_RETRY_INITIAL_S = 0.5
_BACKFILL_RETRY_MAX_S = 30.0
"""A failed backfill after a private-stream outage is retried after 0.5 s, 1 s, 2 s ... capped at
30 s, until one pass succeeds (the fills missed during the outage exist only in REST)."""
_BACKFILL_ATTEMPT_TIMEOUT_S = 60.0
"""Bound of one backfill pass (every instrument's fills and every open order's query), seconds."""
_EXPIRY_MARGIN_S = 1.0
"""Seconds past a request's venue-side expiry before "not found" may mean "never placed": covers
the venue's clock lagging ours (the expiry is stamped from our clock, checked on the venue's)."""
MARKET_DATA_TIMEOUT_S = 30.0
"""Default ``market_data_timeout_s``: seconds a market stream may go without a data frame (pongs
and pings do not count) before it is treated as stalled -- closed, reconnected, resubscribed and
its books resynchronised. A venue answering pings but sending no depth would otherwise leave the
books "valid" for ever. On very quiet symbols this costs a resync per quiet 30 s; pass a longer
timeout (or None: never) there."""


def new_client_order_id() -> str:
    """A fresh client order id: ``cx`` + 18 hex digits."""
    # 20 chars of [0-9a-f]: fits Gate's 28-char text and MEXC's newClientOrderId
    return "cx" + os.urandom(9).hex()


def now_ns() -> int:
    """Wall-clock time, ns since the epoch."""
    return time.time_ns()


class ConnectorBase(abc.ABC):
    """Venue-neutral connector core; subclasses connect, decode and address orders.

    ``enforce_rate_limits`` (default True): every REST request and order takes a slot of a
    client-side :class:`~cexarb.venues.ratelimit.RateLimiter` built from the venue's published
    ``limits`` (waiting, or failing with ``RateLimitExceeded`` past the request's deadline).
    False runs without a client-side limiter -- the venue still enforces its limits (429s are
    then only mapped to errors, never waited out here); meant for a simulator with its limits off
    (benchmarks) or a caller that paces its own requests.

    ``max_terminal_orders`` (default 10,000; None keeps all) and ``terminal_order_min_age_s``
    (default 60): the tracked orders stay bounded over a long run (:mod:`cexarb.retention`):
    finished orders beyond the newest ``max_terminal_orders`` are dropped once finished that long
    (a late push or fill for one is still delivered to the handlers; only the tracked record is
    gone). Open orders are always tracked.

    ``market_data_timeout_s`` (default :data:`MARKET_DATA_TIMEOUT_S`, 30 s; None: never): a market
    stream with no data frame for that long (only pongs/pings) is reconnected and resynchronised.

    ``order_expiry_s`` (None by default; Gate sets it from its ``x-gate-exptime`` deadline): how
    long after it was signed an order request stays valid at the venue, seconds. An order of
    unknown outcome is reported "not found ... not placed" only once that (plus a margin) has
    passed since the outcome became unknown, whatever ``resolve_delays_s`` says.
    """

    #: venue-side validity of an order request after signing, seconds (None: not bounded here)
    order_expiry_s: float | None = None

    name: ClassVar[str]
    market: ClassVar[str]  # "spot" / "futures"
    limits: ClassVar[VenueLimits]
    #: True when the venue's spot buys pay their fee out of the base received (Gate.io spot
    #: ``fee_currency``, MEXC spot ``commissionAsset`` / ``feeCurrency`` = the base; PROTOCOLS.md
    #: §1.2, §1.5, §2.2): the account gets ``qty - Fill.fee_base`` base. The paper engine gives
    #: the venue's simulated account the same rule (``SimVenue(buy_fee_in_base=...)``).
    #: False: every fee in quote.
    buy_fee_in_base: ClassVar[bool] = False

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
        market_data_timeout_s: float | None = MARKET_DATA_TIMEOUT_S,
        order_timeout_s: float = TIMEOUT_S,
        enforce_rate_limits: bool = True,
        seed: int | None = None,
        max_terminal_orders: int | None = 10_000,
        terminal_order_min_age_s: float = 60.0,
    ) -> None:
        self._credentials = credentials
        self.rest_url = rest_url.rstrip("/")
        self.ws_url = ws_url
        self._symbols_wanted = list(symbols) if symbols is not None else None
        self.depth_interval = depth_interval
        self._backoff = backoff or Backoff(initial_s=0.2, max_s=5.0)
        self._stall_timeout_s = stall_timeout_s
        # market stream: reconnect after this long without a data frame (pongs do not count)
        self._market_data_timeout_s = market_data_timeout_s
        self._order_timeout_s = order_timeout_s  # deadline of one order / cancel request
        # after an order's outcome was unknown: query it by client order id after these delays,
        # then, if the venue never knew it, report it REJECTED (see _resolve_unknown)
        self.resolve_delays_s: tuple[float, ...] = _RESOLVE_DELAYS_S
        # ...and, if those queries all failed, again with capped backoff until the venue answers
        self.resolve_retry_initial_s = _RESOLVE_RETRY_INITIAL_S
        self.resolve_retry_max_s = _RESOLVE_RETRY_MAX_S
        # the REST backfill after a private-stream outage: retried with capped backoff until a
        # pass succeeds, each pass bounded
        self.backfill_retry_initial_s = _BACKFILL_RETRY_INITIAL_S
        self.backfill_retry_max_s = _BACKFILL_RETRY_MAX_S
        self.backfill_attempt_timeout_s = _BACKFILL_ATTEMPT_TIMEOUT_S
        self._seed = seed
        # the client-side limiter of the venue's published limits (``limits``), shared by REST and
        # order entry; enforce_rate_limits=False runs without one (the venue still enforces its own:
        # for a simulator with its limits off, or when another layer paces the requests)
        self._limiter: RateLimiter | None = RateLimiter(self.limits) if enforce_rate_limits else None
        self._rest: RestClient | None = None
        self._order_entry: OrderEntryClient | None = None
        self._books: BookManager | None = None
        self._ws_market: WsClient | None = None
        self._ws_private: WsClient | None = None
        self._instruments: dict[str, Instrument] = {}  # by key
        self._by_symbol: dict[str, Instrument] = {}
        # the hot path's lookups, filled once: book by instrument key or symbol, key by symbol
        self._book_by_name: dict[str, OrderBook] = {}
        self._key_by_symbol: dict[str, str] = {}
        self._market_handlers: list[Callable[[MarketEvent], None]] = []
        self._private_handlers: list[Callable[[PrivateEvent], None]] = []
        self._orders: dict[str, Order] = {}  # by client order id
        self.order_retention = TerminalOrderRetention(self._orders, max_terminal_orders, terminal_order_min_age_s)
        self._seen_fills: set[str] = set()
        self._seen_order: deque[str] = deque()
        self._tasks: set[asyncio.Task[Any]] = set()
        # set when the close starts (aclose): from then on no background task is started
        # (_spawn) and the retry loops (backfill, unknown-outcome resolution) stop
        self._closed = False
        self._close_reported = False  # the orders left unresolved at close were logged
        self._started_s = 0.0
        self._private_reconnected = False
        # backfill: a pass is running or waiting to be retried / another pass was asked for
        self._backfill_running = False
        self._backfill_wanted = False
        # orders of unknown outcome, by client order id, until the venue (or the stream) told
        self._unresolved: dict[str, Order] = {}
        # counters (tests, metrics)
        self.decode_errors = 0
        self.backfilled_fills = 0
        self.backfill_failures = 0
        self.resolve_query_failures = 0
        self.duplicate_fills = 0
        self.private_reconnects = 0
        self.unknown_outcomes = 0

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
        self._closed = self._close_reported = False  # (re)started
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
            book = self._books.add_symbol(inst.symbol, inst.tick_size, inst.lot_size)
            self._book_by_name[inst.key] = self._book_by_name[inst.symbol] = book
            self._key_by_symbol[inst.symbol] = inst.key

    async def aclose(self) -> None:
        """Stop the WebSockets, background tasks, book fetches and HTTP clients (bounded waits).

        From its start no background task is started any more (an order whose placement fails
        during or after the close -- its outcome unknown -- is not queried: it stays in
        :attr:`unresolved_orders`) and the retry loops stop; the orders of unknown outcome left
        unresolved are logged once at WARNING."""
        await self.aclose_ws_and_tasks()
        await self.aclose_clients()

    async def aclose_ws_and_tasks(self) -> None:
        self._closed = True  # first: a task spawned after the cancel pass below would outlive it
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
        self._closed = True
        if self._order_entry is not None:
            await self._order_entry.aclose()
            # a placement the close just failed records its (unknown) outcome before the report
            await asyncio.sleep(0)
        if self._rest is not None:
            await self._rest.aclose()
        self._report_unresolved_at_close()

    def _report_unresolved_at_close(self) -> None:
        """Log (once per close, at WARNING) the orders of unknown outcome the close left
        unresolved: nothing queries them any more."""
        if self._close_reported:
            return
        self._close_reported = True
        unresolved = self.unresolved_orders
        if unresolved:
            log.warning(
                "venue=%s %d orders of unknown outcome left unresolved at close: ids %s",
                self.name,
                len(unresolved),
                ", ".join(unresolved),
            )

    def _rest_open(self) -> bool:
        """True while the REST session can send (started, not closed)."""
        if self._rest is None:
            return False
        try:
            self._rest.session  # noqa: B018 - raises RuntimeError once closed
        except RuntimeError:
            return False
        return True

    def _stopping(self, exc: BaseException | None = None) -> bool:
        """True once the connector is closing, or when ``exc`` (a failed request) is the REST
        client being closed / not open: background retries (backfill, unknown-outcome queries)
        then end instead of failing for ever."""
        return self._closed or (isinstance(exc, RuntimeError) and not self._rest_open())

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
        book = self._book_by_name.get(instrument_key)  # the same object the manager keeps
        if book is not None:
            return book
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

    #: A market buy on a venue whose MARKET buy spends quote (:meth:`market_buy_as_ioc_limit`)
    #: goes out as an IOC limit this many bps above the price that walks the local book's asks
    #: for its quantity.
    market_buy_band_bps: float = 50.0

    def market_buy_as_ioc_limit(self, request: OrderRequest) -> OrderRequest:
        """The wire form of a market buy of ``request.qty`` base units: an IOC limit buy.

        Gate.io and MEXC spot take a MARKET buy's size in quote currency to spend (Gate API v4
        ``POST /spot/orders`` ``amount``; MEXC ``quoteOrderQty``; PROTOCOLS.md §1.2 and "Units"),
        which would fill an inexact base quantity and leave a hedge off by the slippage. So a
        market buy goes out as an IOC limit for exactly ``qty`` at a protective limit price
        (quote units): the worst price of walking the local book's asks for ``qty`` (its last
        level when the book is thinner; the best ask for a small order), raised by
        :attr:`market_buy_band_bps` and rounded *up* to the tick, in integer ticks (formatted
        once by :meth:`OrderRequest.create`). Whatever the band does not reach is cancelled by
        the venue, never left resting. The order record keeps type MARKET; the venue sees the
        limit.

        Raises:
            ValueError: the instrument's book is not streamed, not in sync or has no asks (the
                order is then rejected locally with this reason, before anything is sent), or
                a negative / non-finite band.
        """
        inst = request.instrument
        band = self.market_buy_band_bps
        if not math.isfinite(band) or band < 0:
            raise ValueError(f"{self.name}: market_buy_band_bps must be a finite number >= 0, got {band!r}")
        try:
            book = self.book(inst.key)
        except (KeyError, RuntimeError) as exc:  # not streamed here, or the connector not started
            raise ValueError(f"{self.name}: market buy of {inst.symbol} needs its book: {exc}") from None
        if not book.is_valid:
            raise ValueError(
                f"{self.name}: market buy of {inst.symbol} needs the local book to price it: "
                f"book not in sync ({book.invalid_reason})"
            )
        execution = book.executable_price("buy", request.qty)
        if execution.worst_price is None:
            raise ValueError(f"{self.name}: market buy of {inst.symbol}: the book has no asks to price it")
        worst_ticks = inst.price_to_ticks(execution.worst_price)  # a book level: on the grid
        ticks = math.ceil(Decimal(worst_ticks) * (1 + Decimal(repr(band)) / 10_000))
        return OrderRequest.create(
            inst,
            Side.BUY,
            request.qty,
            price_ticks=ticks,
            time_in_force=TimeInForce.IOC,
            client_order_id=request.client_order_id,
            tag=request.tag,
        )

    def funding(self, instrument_key: str) -> FundingInfo | None:
        """Funding terms (:meth:`~cexarb.venues.base.PublicVenue.funding`): None here, for a spot
        venue's instruments; a connector with perpetuals overrides it. No I/O.

        Raises:
            KeyError: ``instrument_key`` is not an instrument of this connector, naming it.
        """
        self._instrument(instrument_key)
        return None

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
        key = self._key_by_symbol.get(symbol)
        if key is None:
            inst = self._by_symbol.get(symbol)
            if inst is None:
                return
            key = self._key_by_symbol[symbol] = inst.key
        handlers = self._market_handlers
        if not handlers:
            return
        event = BookUpdate(instrument_key=key, ts_ns=time.time_ns(), price_changed=book.bbo_price_changed)
        for handler in handlers:  # what _emit_market does, inline: one call less per book change
            try:
                handler(event)
            except Exception:
                log.exception("venue=%s market handler failed on BookUpdate", self.name)

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
            if order.status.is_terminal and update.status is not order.status and update.filled_qty <= order.filled_qty:
                return  # a terminal state is final unless the venue reports more fills
            if update.filled_qty >= order.filled_qty:
                was_terminal = order.status.is_terminal
                order.status = update.status
                order.filled_qty = update.filled_qty
                order.avg_fill_price = update.avg_fill_price
                order.updated_ns = update.ts_ns
                if update.status is OrderStatus.REJECTED:
                    order.reject_reason = update.reason
                if update.status.is_terminal and not was_terminal:
                    self.order_retention.terminal(order.client_order_id, now_ns())

    def _spawn(self, coro: Any) -> bool:
        """Run ``coro`` as a background task of this connector (cancelled by :meth:`aclose`);
        refused once the close started -- a task spawned after the close's cancel pass would run
        for ever -- closing ``coro`` (never awaited) and returning False."""
        if self._closed:
            coro.close()
            log.debug("venue=%s closed: background task %s not started", self.name, getattr(coro, "__qualname__", coro))
            return False
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    @property
    def private_backfill_pending(self) -> bool:
        """True while this connector's private state (fills delivered, tracked orders) may be
        incomplete: the private stream was lost (or overflowed) and the REST backfill of what it
        missed has not completed yet -- it is running, or failed and is being retried. Read-only;
        no I/O."""
        return self._private_reconnected or self._backfill_running or self._backfill_wanted

    def _request_backfill(self) -> None:
        """Ask for a :meth:`_backfill` (in the background): at once marked pending
        (:attr:`private_backfill_pending`), joined to the running one if there is one."""
        self._backfill_wanted = True
        if not self._backfill_running:
            self._spawn(self._backfill())

    async def _backfill(self) -> None:
        """After a reconnect (or an overflow): deliver the fills the stream missed (REST) and
        re-query the tracked open orders, retried in the background until one pass succeeds.

        The missed fills exist only in REST, so a failed pass (5xx / 429 beyond the REST
        client's retries, a body that does not decode, a pass longer than
        ``backfill_attempt_timeout_s``) is logged at ERROR, counted in ``backfill_failures`` and
        retried after ``backfill_retry_initial_s``, doubling up to ``backfill_retry_max_s``, until
        one succeeds; :meth:`aclose` cancels it (and one asked for once the close started does
        not start: the backfill stays pending). A backfill asked for while one is running makes
        that one run another pass (pushes may have been missed after its pass started) instead of
        starting a second. Fills are de-duplicated by venue trade id, so a pass repeated after a
        partial failure delivers nothing twice. :attr:`private_backfill_pending` is True until
        then."""
        self._backfill_wanted = True
        if self._backfill_running:
            return  # the running backfill makes another pass
        self._backfill_running = True
        failures = 0
        try:
            while self._backfill_wanted:
                if self._stopping():
                    return  # closed: still owed (pending), nobody left to fetch it
                self._backfill_wanted = False
                try:
                    async with asyncio.timeout(self.backfill_attempt_timeout_s):
                        await self._backfill_pass()
                except Exception as exc:  # noqa: BLE001 - whatever failed, the missed fills are still owed
                    self._backfill_wanted = True
                    if self._stopping(exc):
                        log.warning(
                            "venue=%s backfill after reconnect stopped: the connector closed (%s); private state incomplete",
                            self.name,
                            type(exc).__name__,
                        )
                        return
                    failures += 1
                    self.backfill_failures += 1
                    delay = min(self.backfill_retry_max_s, self.backfill_retry_initial_s * 2 ** (failures - 1))
                    log.error(
                        "venue=%s backfill after reconnect failed (%s, attempt %d); private state incomplete, "
                        "retrying in %.1f s",
                        self.name,
                        type(exc).__name__,
                        failures,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                if failures:
                    log.warning("venue=%s backfill after reconnect succeeded after %d failures", self.name, failures)
                failures = 0
        finally:
            self._backfill_running = False

    async def _backfill_pass(self) -> None:
        """One backfill pass: every instrument's recent fills (REST), delivered once each, then a
        query of every tracked open order, delivering what changed. Raises whatever failed."""
        for inst in list(self._instruments.values()):
            fills = await self._fetch_fills(inst.symbol, limit=1000)
            for fill in sorted(fills, key=lambda f: f.ts_ns):
                if fill.ts_ns < self._started_s * 1e9 - 5e9:
                    continue
                if self._deliver_fill(fill):
                    self.backfilled_fills += 1
        for cid, order in list(self._orders.items()):
            if not order.is_open:
                continue
            # get_order applies the venue's state to the tracked order: compare with before
            before = (order.status, order.filled_qty)
            await self.get_order(order.instrument.key, cid)
            self._emit_if_changed(order, before)

    def _emit_if_changed(self, order: Order, before: tuple[OrderStatus, float]) -> None:
        """Deliver the tracked ``order``'s state as an OrderUpdate if a REST answer moved it on
        from ``before`` (status, filled qty) -- the stream never told the handlers."""
        if (order.status, order.filled_qty) == before:
            return
        self._emit_private(
            OrderUpdate(
                client_order_id=order.client_order_id,
                venue_order_id=order.venue_order_id or "",
                instrument_key=order.instrument.key,
                status=order.status,
                filled_qty=order.filled_qty,
                avg_fill_price=order.avg_fill_price,
                ts_ns=order.updated_ns or now_ns(),
                reason=order.reject_reason,
            )
        )

    def _placement_failed(self, order: Order, exc: VenueError | RateLimitExceeded) -> Order:
        """``order`` after its placement raised ``exc``: outcome unknown (timeout, dropped
        connection, 5xx) keeps it PENDING_NEW and resolves it in the background; a venue error
        makes it REJECTED with the venue's code; our own limiter (nothing was sent) makes it
        REJECTED as ``client rate limit: ...``."""
        if isinstance(exc, OutcomeUnknownError):
            self._on_outcome_unknown(order, exc)
            return order
        order.status = OrderStatus.REJECTED
        if isinstance(exc, VenueError):
            order.reject_reason = exc.code or type(exc).__name__
        else:
            order.reject_reason = f"client rate limit: {exc}"
        order.updated_ns = time.time_ns()
        self.order_retention.terminal(order.client_order_id, order.updated_ns)
        return order

    def _on_outcome_unknown(self, order: Order, exc: VenueError) -> None:
        """``place_order`` could not tell whether ``order`` reached the venue (timeout, dropped
        connection, 5xx, an answer that did not decode): it stays PENDING_NEW and is resolved in
        the background (listed in :attr:`unresolved_orders` until then)."""
        self.unknown_outcomes += 1
        self._unresolved[order.client_order_id] = order
        if self._closed:
            # the close cancelled the connector's tasks already: a resolver started now would
            # query a closed client for ever
            log.warning(
                "venue=%s order %s outcome unknown (%s) while the connector closes: not queried, "
                "left unresolved",
                self.name,
                order.client_order_id,
                exc.message,
            )
            return
        log.warning(
            "venue=%s order %s outcome unknown (%s); querying it by client order id",
            self.name,
            order.client_order_id,
            exc.message,
        )
        self._spawn(self._resolve_unknown(order))

    @property
    def unresolved_orders(self) -> tuple[str, ...]:
        """Client order ids of the orders whose placement had an unknown outcome and whose state
        the venue has not told yet (still PENDING_NEW, still tracked): the connector keeps
        querying them in the background. Read-only; no I/O."""
        for cid, order in list(self._unresolved.items()):
            if order.status is not OrderStatus.PENDING_NEW or self._orders.get(cid) is not order:
                del self._unresolved[cid]  # the stream, a query or a backfill told us
        return tuple(self._unresolved)

    async def _resolve_unknown(self, order: Order) -> None:
        """Query an order of unknown outcome by client order id until the venue gives a
        definitive answer, then deliver its state. Never re-sends the order; stops early when
        the stream moved the order on (or the id was reused); :meth:`aclose` cancels it, and it
        stops at its next step once the close started (a query failing because the client is
        closed ends it): the order then stays in :attr:`unresolved_orders`.

        The queries go out after each of ``resolve_delays_s``, then -- while they keep failing
        (5xx, 429, timeouts, an answer that does not decode) -- after
        ``resolve_retry_initial_s``, doubling up to ``resolve_retry_max_s``, for as long as it
        takes: a failed query proves nothing. The first failure per order is logged at WARNING,
        every one counted in ``resolve_query_failures``. "Not found" is definitive -- the order
        was not placed: delivered REJECTED -- only from a query made once the schedule is spent
        and, with ``order_expiry_s`` set, after the request expired at the venue (expiry + 1 s
        after the outcome became unknown): before that the request may still reach the venue.
        An empty ``resolve_delays_s`` turns the queries off (the stream or a reconnect backfill
        then tells; the order stays in :attr:`unresolved_orders` meanwhile)."""
        cid, key = order.client_order_id, order.instrument.key
        loop = asyncio.get_running_loop()
        # the request was signed (its expiry started) before this; None: no venue-side expiry
        expired_at = None if self.order_expiry_s is None else loop.time() + self.order_expiry_s + _EXPIRY_MARGIN_S
        schedule = tuple(self.resolve_delays_s)
        if not schedule:
            return
        queries = 0  # made (answered or not)
        retries = 0  # after the schedule, because nothing definitive came
        failures = 0
        absent = False  # the last answer was "not found"
        try:
            while True:
                if self._stopping():
                    return  # closed: left unresolved (reported by the close)
                if queries < len(schedule):
                    delay = schedule[queries]
                elif absent and expired_at is not None and loop.time() < expired_at:
                    # not found yet, but the request may still reach the venue: ask after it expired
                    delay = expired_at - loop.time()
                else:
                    delay = min(self.resolve_retry_max_s, self.resolve_retry_initial_s * 2**retries)
                    retries += 1
                if delay > 0:
                    await asyncio.sleep(delay)
                    if self._stopping():
                        return
                if order.status is not OrderStatus.PENDING_NEW or self._orders.get(cid) is not order:
                    return  # the stream (or another query) told us, or the id was reused
                before = (order.status, order.filled_qty)
                asked_at = loop.time()
                queries += 1
                try:
                    fresh = await self.get_order(key, cid)
                except Exception as exc:  # noqa: BLE001 - any failure proves nothing: ask again
                    if self._stopping(exc):  # the client closed under the query: nobody left to ask
                        log.info("venue=%s order %s (outcome unknown): connector closed, not queried further", self.name, cid)
                        return
                    failures += 1
                    self.resolve_query_failures += 1
                    absent = False
                    log.log(
                        logging.WARNING if failures == 1 else logging.DEBUG,
                        "venue=%s order %s (outcome unknown) query failed: %s (failure %d); still querying",
                        self.name,
                        cid,
                        type(exc).__name__,
                        failures,
                    )
                    continue
                if fresh is None:
                    absent = True
                    if queries >= len(schedule) and (expired_at is None or asked_at >= expired_at):
                        break  # definitive: not placed
                    continue
                if order.status is OrderStatus.PENDING_NEW:  # known, but no state change applied
                    order.status = fresh.status
                    order.venue_order_id = fresh.venue_order_id or order.venue_order_id
                if failures:
                    log.warning(
                        "venue=%s order %s resolved as %s after %d failed queries",
                        self.name,
                        cid,
                        order.status.name,
                        failures,
                    )
                self._emit_if_changed(order, before)
                return
            if order.status is OrderStatus.PENDING_NEW and self._orders.get(cid) is order:
                log.warning("venue=%s order %s not found at the venue: not placed", self.name, cid)
                before = (order.status, order.filled_qty)
                order.status = OrderStatus.REJECTED
                order.reject_reason = "outcome unknown: not found at the venue"
                order.updated_ns = now_ns()
                self.order_retention.terminal(cid, order.updated_ns)
                self._emit_if_changed(order, before)
        finally:
            resolved = order.status is not OrderStatus.PENDING_NEW or self._orders.get(cid) is not order
            if resolved and self._unresolved.get(cid) is order:
                del self._unresolved[cid]

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
    def _order_wire(self, request: OrderRequest) -> tuple[str, str, QueryParams, bytes]:
        """``(method, path, query params, body)`` of the request that places ``request``, built by
        the same codec functions :meth:`place_order` uses (ValueError: not expressible)."""
        ...

    #: the latest depth frame as it came off the socket (:meth:`warm_market` decodes it again)
    _last_depth_frame: str | bytes | None = None

    @abc.abstractmethod
    def _decode_depth_frame(self, data: str | bytes) -> object:
        """The depth push in ``data``, decoded as the market handler decodes it (no side effect)."""
        ...

    def warm_market(self) -> bool:
        """Decode the latest depth frame again and drop the result: the market handler's parse,
        run without touching any book (a warmer for :class:`cexarb.hotpath.BusyPoll`). False,
        doing nothing, before the first depth frame. Only frames the handler decoded are kept,
        so the same decoder on the same bytes does not raise."""
        data = self._last_depth_frame
        if data is None:
            return False
        self._decode_depth_frame(data)
        return True

    def warm_order(self, request: OrderRequest) -> int:
        """Run :meth:`place_order`'s path for ``request`` up to the socket write, and send nothing.

        Builds the venue's order request -- codec, exact decimal strings, a fresh timestamp and
        signature, the HTTP bytes -- and the :class:`Order` record, then drops them: no byte leaves
        the process, no order is recorded, the rate limiter is not touched. It keeps the order
        path's code and data in the CPU caches between orders (:class:`cexarb.hotpath.BusyPoll`
        runs it as a warmer). Returns the size of the request it built, bytes.

        Raises:
            ValueError: ``request`` is not expressible on this venue (as :meth:`place_order` would
                reject it).
            RuntimeError: no credentials, or the connector is not started.
        """
        method, path, params, body = self._order_wire(request)
        data = self._oe.build(method, path, params, body)
        request.to_order(0)
        return len(data)

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
