"""Paper and live engine: strategies on live market data, event-driven, under a TaskGroup.

:class:`Engine` builds the configured venues' connectors (market data only in paper mode: no
credentials, so nothing can reach the venue; with each venue's credentials in live mode), waits
until every watched book is in sync, and runs each strategy as its own asyncio task. Wiring
mirrors :mod:`cexarb.backtest`, with wall time:

* a :class:`~cexarb.clock.LiveClock` (simulated-venue arrivals, acks and strategy timers are
  ``loop.call_later`` callbacks on the running loop);
* per strategy, a paper account: one :class:`~cexarb.venues.sim.venue.SimVenue` per venue trading
  against the connector's maintained Rust book (read only) and charging fees in the asset the
  venue does (the connector class's ``buy_fee_in_base``: Gate.io and MEXC spot buys pay in the
  base received, so a paper buy books ``qty - Fill.fee_base``, as live), an
  :class:`OrderManager` with the configured :class:`RiskPolicy`, and a :class:`StrategyContext` whose public venues are the
  connectors. Private events therefore reach only the strategy that owns the account.
* delivery: market events are routed to the strategies that watch the instrument; book updates
  are coalesced per instrument (latest wins, ``price_changed`` OR-ed) so a slow strategy never
  builds a backlog; private events and timers are queued in order and delivered before book
  updates. A strategy is woken only by what it watches (its state's :class:`BookWatch`).
* resting paper orders are matched by ``SimVenue.on_book`` after each book change and
  ``SimVenue.on_trade`` for each public trade of their instrument.
* funding rates of perps come from the public venue interface,
  :meth:`~cexarb.venues.base.PublicVenue.funding` (a :class:`~cexarb.model.FundingInfo`: rate per
  interval, next funding time ns), which the connector keeps current itself (Gate:
  ``futures.tickers`` pushes, a REST re-read after each funding time), and from its
  :class:`FundingEvent` pushes; the rates strategies read (``ctx.funding_rates``) follow both.
  Paper funding is settled at each contract's next funding time as the venue states it (Gate
  ``funding_next_apply``): every paper account holding the perp gets ``SimVenue.apply_funding`` at
  the venue's current rate and the contract's mark price, its order manager books the amount, and
  the strategy receives the :class:`FundingEvent` carrying the price used. Venues settle funding
  at the mark price, not the mid (Gate.io USDT futures: funding = position size x
  ``quanto_multiplier`` x mark price x funding rate -- Gate's "Funding = Position Value x Funding
  Rate", https://www.gate.io/article/27396, with the notional of PROTOCOLS.md §3.2 at the
  contract's ``mark_price``). The mark is the latest one the venue stated
  (``FundingInfo.mark_price`` / ``FundingEvent.mark_price``; Gate: every ``futures.tickers`` push
  and the contracts re-read) when it was read at most :data:`FUNDING_MARK_MAX_AGE_S` (60 s) from
  the funding time; otherwise the
  book's mid is used and a WARNING says why. The next time is whatever the venue states next. A
  funding read or settlement that raises is logged with its traceback, counted
  (``Engine.funding_failures``) and not retried; the other perps and later funding times go on.

Start-up (starting every connector, then waiting until every watched book is in sync) has one
deadline, ``sync_timeout_s`` seconds for the whole of it, and races the stop event: a signal or
:meth:`stop` during start-up ends it at once (the connectors already started are closed, the
one being started is cancelled and closed), no strategy begins, and :meth:`run` returns with a
``stop_reason`` ending in ``"during start-up"``.

Stop: SIGINT/SIGTERM (when :meth:`Engine.run` installs handlers), ``duration_s``, :meth:`stop`,
or every strategy finished. On stop each running strategy gets ``EndOfData(reason="engine
stopping")`` and up to ``close_timeout_s`` to close out; then every paper account cancels all
its open orders (waiting a bounded time for the cancels to arrive; every order still open after
that is logged at WARNING and counted in ``StrategyRun.open_orders_after_cancel``), the
connectors close, and :meth:`run` returns an :class:`EngineResult`.

Live mode (``paper=False``, ``mode = "live"``): every venue needs credentials (refused otherwise,
:class:`LiveTradingRefused`, naming the venues without keys; a key is never printed). Orders go to
the venues through the same connectors (signed REST / WebSocket), under the same
:class:`RiskPolicy`, one :class:`OrderManager` per strategy. Strategies sharing a venue share its
account: each strategy's view of it (:class:`_AccountView`) sends its orders and passes it only
the private events of its own client order ids (``{strategy_id}-{session}-{n}``). Nothing is
simulated: no paper account. The venue settles funding on the account; at each funding time
the engine books each strategy's share in its PnL -- its own perp position at the venue's stated
rate and mark price (:meth:`Instrument.funding_payment`, the venue's formula), since the account
holds the positions of every strategy on it (the venue's ledger entry can differ by its rounding). On stop each strategy's own open orders are cancelled
one by one -- never the account's cancel-all, which would cancel other clients' orders -- and the
engine waits (bounded, ``close_timeout_s``) for the venue to confirm each end.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import math
import os
import re
import signal
import time
from collections.abc import Callable
from typing import Any

import msgspec

from cexarb.clock import LiveClock
from cexarb.config import RunConfig
from cexarb.execution import OrderManager
from cexarb.gcpolicy import SafePointGc
from cexarb.hotpath import BusyPoll
from cexarb.model import (
    Fill,
    FundingEvent,
    FundingInfo,
    Instrument,
    InstrumentKind,
    Order,
    Side,
    Trade,
)
from cexarb.risk import RiskPolicy
from cexarb.strategy.machine import (
    BookWatch,
    EndOfData,
    StrategyContext,
    StrategyError,
    StrategyMachine,
    StrategyResult,
)
from cexarb.venues.base import BookUpdate, MarketEvent
from cexarb.venues.sim.venue import SimVenue

__all__ = ["Engine", "EngineResult", "LiveTradingRefused", "StrategyRun", "build_connector"]

log = logging.getLogger(__name__)

#: while strategies are idle, the engine still reaches a GC safe point this often (seconds)
GC_IDLE_INTERVAL_S = 0.1

#: paper funding is settled at the latest mark price the venue stated only when it was read at most
#: this many seconds from the funding time (seconds; older, or none: the book's mid, with a
#: warning). A minute: Gate recomputes its funding rate every minute
#: (https://www.gate.io/article/27396); the Gate connector keeps the mark of every
#: ``futures.tickers`` push and of each contracts re-read (``FundingInfo.mark_price``).
FUNDING_MARK_MAX_AGE_S = 60.0


class LiveTradingRefused(RuntimeError):
    """Live trading was asked for without credentials for every venue."""


#: The shortest client order id limit of the venues: Gate.io's ``text`` is ``"t-"`` plus 1-28
#: characters of ``[0-9A-Za-z_.-]`` (Gate APIv4, "Create an order", field ``text``;
#: PROTOCOLS.md §2.3). Every id the engine hands out fits it.
CLIENT_ORDER_ID_MAX_LEN = 28
#: digits of the order number ``n`` the engine's ids leave room for (99,999,999 orders a run)
_ORDER_NUMBER_DIGITS = 8
_TAG_MAX_LEN = CLIENT_ORDER_ID_MAX_LEN - 6 - 2 - _ORDER_NUMBER_DIGITS  # tag-ssssss-nnnnnnnn
_TAG_CHARS = re.compile(r"[0-9A-Za-z_.\-]+")
_SESSION_ORDER_NUMBER = re.compile(r"[0-9a-f]{6}-[0-9]+")


def strategy_tag(strategy_id: str) -> str:
    """The strategy's part of its client order ids: ``strategy_id`` itself when it is at most 12
    characters of ``[0-9A-Za-z_.-]``, else its first 5 characters (others as ``_``), ``.`` and 6
    hex digits of its BLAKE2b hash: stable from run to run, so a later run recognises an earlier
    run's orders."""
    if len(strategy_id) <= _TAG_MAX_LEN and _TAG_CHARS.fullmatch(strategy_id):
        return strategy_id
    head = "".join(c if _TAG_CHARS.fullmatch(c) else "_" for c in strategy_id[:5])
    return f"{head}.{hashlib.blake2b(strategy_id.encode(), digest_size=3).hexdigest()}"


def new_session_id() -> str:
    """6 hex digits telling this run's client order ids from another run's (from the process id
    and the wall clock in ms)."""
    return f"{(os.getpid() * 0x9E3779B1 + time.time_ns() // 1_000_000) & 0xFFFFFF:06x}"


def client_order_id_prefix(strategy_id: str, session: str) -> str:
    """``{tag}-{session}`` (:func:`strategy_tag`, :func:`new_session_id`): a strategy's client
    order ids are ``{prefix}-{n}``, at most :data:`CLIENT_ORDER_ID_MAX_LEN` characters up to
    n = 99,999,999.

    Raises:
        ValueError: ``session`` is longer than 6 characters (no room left for the number).
    """
    prefix = f"{strategy_tag(strategy_id)}-{session}"
    if len(prefix) + 1 + _ORDER_NUMBER_DIGITS > CLIENT_ORDER_ID_MAX_LEN:
        raise ValueError(f"client order id prefix {prefix!r} leaves no room for the order number")
    return prefix


def _earlier_run_of(client_order_id: str, tags: set[str]) -> bool:
    """Whether ``client_order_id`` has the engine's form ``{tag}-{6 hex session}-{n}`` for one of
    the strategy ``tags`` (a tag may itself contain ``-``)."""
    for tag in tags:
        if client_order_id.startswith(tag + "-") and _SESSION_ORDER_NUMBER.fullmatch(client_order_id[len(tag) + 1:]):
            return True
    return False


class _AccountView:
    """One strategy's view of a live venue account (a connector with credentials): orders go to
    the connector; of the account's private events, only those whose client order id starts with
    the strategy's prefix reach the strategy's handlers (events with no client order id, such as
    balance updates, reach every strategy). Every other attribute is the connector's."""

    def __init__(self, venue: Any, client_order_id_prefix: str) -> None:
        self._venue = venue
        self._prefix = client_order_id_prefix + "-"
        # the order path without a lookup through __getattr__
        self.place_order = venue.place_order
        self.cancel_order = venue.cancel_order

    def __getattr__(self, name: str) -> Any:
        return getattr(self._venue, name)

    def subscribe(self, handler: Callable[[Any], None]) -> None:
        prefix = self._prefix

        def own_events(event: Any) -> None:
            coid = getattr(event, "client_order_id", None)
            if coid is None or coid.startswith(prefix):
                handler(event)

        self._venue.subscribe(own_events)

    async def cancel_all(self, instrument_key: str | None = None) -> int:
        raise RuntimeError("cancel_all on a shared live account would cancel other clients' orders; "
                           "cancel the strategy's own orders one by one")


def build_connector(venue: str, cfg: Any, symbols: list[str], credentials: Any = None) -> Any:
    """The connector object for a configured venue (not started)."""
    from cexarb.venues.ws import Backoff

    kwargs: dict[str, Any] = {
        "symbols": symbols,
        "backoff": Backoff(initial_s=0.1, max_s=5.0),
        "stall_timeout_s": cfg.stall_timeout_s,
    }
    if cfg.rest_url:
        kwargs["rest_url"] = cfg.rest_url
    if cfg.ws_url:
        kwargs["ws_url"] = cfg.ws_url
    if venue == "gateio-spot":
        from cexarb.venues.gateio.spot import GateSpot

        return GateSpot(credentials, **kwargs)
    if venue == "gateio-futures":
        from cexarb.venues.gateio.futures import GateUsdtFutures

        return GateUsdtFutures(credentials, **kwargs)
    if venue == "mexc-spot":
        from cexarb.venues.mexc.spot import MexcSpot

        return MexcSpot(credentials, **kwargs)
    raise ValueError(f"unknown venue {venue!r}")


class StrategyRun(msgspec.Struct, kw_only=True):
    """One strategy's outcome."""

    result: StrategyResult
    orders: list[Order]
    fills: list[Fill]
    transitions: list[tuple[int, str, str, str]]
    positions: dict[str, float]  # strategy-side position per instrument (instrument units)
    open_orders_at_stop: int  # orders still open when cancel-all ran (before the cancels)
    #: orders still open once the cancels' deadline (about 2 s plus two simulated round trips)
    #: had passed; 0 = every order was cancelled or done. Each is logged at WARNING.
    open_orders_after_cancel: int = 0
    error: str | None = None
    funding: list[tuple[FundingEvent, float]] = []  # settlements: event and amount booked (quote, + received)


class EngineResult(msgspec.Struct, kw_only=True):
    """What :meth:`Engine.run` returns."""

    mode: str
    stop_reason: str
    wall_time_s: float
    strategies: dict[str, StrategyRun]
    book_updates: int
    trades: int
    pending_tasks: int  # tasks the engine started that were still alive at the end (0 = clean)
    #: live start: open orders that earlier runs of the configured strategies had left on the
    #: accounts, found / cancelled (see ``RunConfig.cancel_stale_orders``)
    stale_orders_found: int = 0
    stale_orders_cancelled: int = 0


class _Runner:
    """One strategy, its paper account (``sims``; empty in live mode) and its inbox."""

    def __init__(self, strategy: StrategyMachine[Any], ctx: StrategyContext, sims: dict[str, SimVenue]) -> None:
        self.strategy = strategy
        self.ctx = ctx
        self.sims = sims
        self.private: collections.deque[Any] = collections.deque()
        self.books: dict[str, BookUpdate] = {}
        self.wake = asyncio.Event()
        self.watched = frozenset(strategy.watched_instruments())
        self.error: str | None = None
        self.open_at_stop = 0
        self.open_after_cancel = 0
        self.funding_events: list[tuple[FundingEvent, float]] = []  # settled on this account

    def push_private(self, event: Any) -> None:
        self.private.append(event)
        self.wake.set()

    def push_book(self, event: BookUpdate) -> None:
        prev = self.books.get(event.instrument_key)
        if prev is not None and prev.price_changed and not event.price_changed:
            event = msgspec.structs.replace(event, price_changed=True)
        self.books[event.instrument_key] = event
        self.wake.set()

    async def drain(self) -> None:
        """Deliver everything queued: private events and timers first, then coalesced books."""
        strategy = self.strategy
        for _ in range(100_000):  # bounded: events produced while draining are picked up next pass
            if self.private:
                await strategy.handle(self.private.popleft())
                continue
            if not self.books:
                return
            key = next(iter(self.books))
            update = self.books.pop(key)
            watch = strategy.book_watch()
            if watch == BookWatch.TOP or (watch == BookWatch.PRICE and update.price_changed):
                await strategy.handle(update)


class Engine:
    """Runs the configured strategies on live market data, with paper fills or live orders.

    Args:
        config: the decoded run configuration.
        paper: True for paper trading (fills from the in-process simulated venue); False trades
            live on the venues (every venue needs credentials).
        connectors: pre-built connectors by venue name (tests); default: built from ``config``.
        credentials: live mode: ``ApiCredentials`` by venue name; default: each venue's from the
            environment or its ``credentials`` spec (:func:`cexarb.config.env_credentials`).

    Raises:
        LiveTradingRefused: live mode and a venue has no credentials (names the venues, never a
            key). ConfigError: a credentials spec cannot be loaded.
    """

    def __init__(self, config: RunConfig, *, paper: bool = True, connectors: dict[str, Any] | None = None,
                 credentials: dict[str, Any] | None = None) -> None:
        self._credentials: dict[str, Any] = {}
        if not paper and connectors is None:
            from cexarb.config import env_credentials

            given = credentials or {}
            for venue, vcfg in config.venues.items():
                cred = given.get(venue) or env_credentials(venue, vcfg)
                if cred is not None:
                    self._credentials[venue] = cred
            missing = sorted(set(config.venues) - set(self._credentials))
            if missing:
                raise LiveTradingRefused(
                    f"live trading needs API keys for every venue; none for {', '.join(missing)} (set "
                    "venues.<venue>.credentials or CEXARB_<VENUE>_API_KEY / _API_SECRET), or run with --paper"
                )
        self.config = config
        self.paper = paper
        self.strategies = config.build_strategies()
        self.clock = LiveClock()
        self._given_connectors = connectors
        self.connectors: dict[str, Any] = {}
        self.runners: list[_Runner] = []
        self._by_key: dict[str, list[_Runner]] = collections.defaultdict(list)
        self._sims_by_key: dict[str, list[SimVenue]] = collections.defaultdict(list)
        self._stop = asyncio.Event()
        self._collect_if_due: Callable[[], int] = lambda: -1  # set by run()
        self.stop_reason = ""
        self.book_updates = 0
        self.trades = 0
        self.funding_rates: dict[str, float] = {}
        #: latest valid mark price pushed per perp (``FundingEvent.mark_price``, quote currency, > 0
        #: and finite) and the local wall time it arrived (ns since the epoch); settles paper funding
        self.funding_marks: dict[str, tuple[float, int]] = {}
        #: a pushed mark settles funding when it arrived at most this long before the funding time (ns)
        self.funding_mark_max_age_ns = int(FUNDING_MARK_MAX_AGE_S * 1e9)
        #: paper funding failures: venue funding reads and settlements that raised (each logged with
        #: its traceback; a failed settlement is not retried, a failed read is retried next round)
        self.funding_failures = 0
        self._instruments: dict[str, Instrument] = {}
        self._contexts: list[StrategyContext] = []
        #: the loop's busy polling while :meth:`run` runs, when ``config.latency.busy_poll``
        self.busy_poll: BusyPoll | None = None
        #: live start (:meth:`_stale_orders`): the open orders an earlier run of a configured
        #: strategy left on an account, and how many of them were cancelled
        self.stale_orders: list[Order] = []
        self.stale_orders_cancelled = 0

    # ------------------------------------------------------------------ control
    def stop(self, reason: str = "stop requested") -> None:
        """Ask the engine to stop (safe from signal handlers and callbacks)."""
        if not self._stop.is_set():
            self.stop_reason = reason
            log.info("engine stopping: %s", reason)
            self._stop.set()

    # ------------------------------------------------------------------ setup
    def _symbols(self) -> dict[str, list[str]]:
        wanted: dict[str, list[str]] = {v: list(c.symbols) for v, c in self.config.venues.items()}
        for s in self.strategies:
            for key in s.watched_instruments():
                venue, _, symbol = key.partition(":")
                if symbol not in wanted[venue]:
                    wanted[venue].append(symbol)
        return wanted

    async def _start_up(self, stack: contextlib.AsyncExitStack) -> bool:
        """Start the connectors and wait until every watched book is in sync, racing :meth:`stop`.

        One deadline, ``sync_timeout_s`` seconds from now, covers the whole start-up (every
        connector's ``start`` and the books' sync). Connectors started are pushed on ``stack``
        (closed when it unwinds). Returns True once in sync; False when the stop event was set
        first (start-up is then cancelled: the connector being started is closed).

        Raises:
            TimeoutError: naming ``sync_timeout_s`` when the deadline passed first.
        """
        deadline = time.monotonic() + self.config.sync_timeout_s
        work = asyncio.ensure_future(self._start_and_sync(stack, deadline))
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait((work, stopper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not work.done():
                work.cancel()
            # bounded: the cancelled start-up closes at most one connector (its aclose, <= 10 s)
            await asyncio.gather(stopper, work, return_exceptions=True)
        if work.cancelled():
            return False
        work.result()  # re-raises a start-up failure
        return True

    async def _start_and_sync(self, stack: contextlib.AsyncExitStack, deadline: float) -> None:
        """Start-up's work, against one ``deadline`` (``time.monotonic()`` seconds)."""
        await self._start_connectors(stack, deadline)
        await self._wait_synced(deadline)

    async def _start_connectors(self, stack: contextlib.AsyncExitStack, deadline: float) -> None:
        """Build and start each configured venue's connector (market data only), all by
        ``deadline`` (``time.monotonic()`` seconds)."""
        if self._given_connectors is not None:
            self.connectors = dict(self._given_connectors)
            return
        symbols = self._symbols()
        for venue, vcfg in self.config.venues.items():
            if not symbols[venue]:
                continue
            # paper: market data only (no credentials: nothing can reach the venue); live: the keys
            conn = build_connector(venue, vcfg, symbols[venue], credentials=self._credentials.get(venue))
            try:
                await asyncio.wait_for(conn.start(), max(0.0, deadline - time.monotonic()))
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.aclose(), 10)
                if isinstance(exc, TimeoutError):
                    raise TimeoutError(f"venue {venue} not started within sync_timeout_s="
                                       f"{self.config.sync_timeout_s} s (the whole start-up's deadline)") from exc
                raise
            stack.push_async_callback(self._close_connector, venue, conn)
            self.connectors[venue] = conn

    @staticmethod
    async def _close_connector(venue: str, conn: Any) -> None:
        try:
            await asyncio.wait_for(conn.aclose(), 15)
        except Exception as exc:  # noqa: BLE001 - closing must not hide the run's outcome
            log.error("venue=%s close failed: %s", venue, exc)

    async def _stale_orders(self) -> None:
        """Live start: find the open orders that an earlier run of a configured strategy left on
        the accounts (a crash, a kill, a stop whose cancels did not all get through) and, with
        ``cancel_stale_orders`` (the default), cancel them before the strategies start.

        This run cannot manage them: it starts flat and its order managers know only their own
        session's client order ids (``{tag}-{session}-{n}``, :func:`client_order_id_prefix`), so
        such an order could fill into a position nobody hedges or closes. An order is an earlier
        run's when its client order id is ``{tag}-{6 hex session}-{n}`` for a configured
        strategy's tag and another session; every other order on the account (another
        client's, a manual one) is counted in the log and left alone. Two processes running the
        same ``strategy_id`` on one account would cancel each other's orders here: give each its
        own ``strategy_id``.

        Each venue's read and each cancel are bounded (10 s); a venue whose open orders cannot be
        read is logged at ERROR and the run goes on.
        """
        tags = {strategy_tag(r.strategy.strategy_id) for r in self.runners}
        current = tuple(r.ctx.orders.client_order_id_prefix + "-" for r in self.runners)
        for venue, conn in self.connectors.items():
            try:
                orders = await asyncio.wait_for(conn.open_orders(), 10)
            except Exception as exc:  # noqa: BLE001 - a read failure must not stop the run
                log.error("venue=%s: open orders could not be read at start (%s: %s); orders an "
                          "earlier run left open, if any, are not cancelled", venue, type(exc).__name__, exc)
                orders = []
            stale = [o for o in orders
                     if not o.client_order_id.startswith(current) and _earlier_run_of(o.client_order_id, tags)]
            others = len(orders) - len(stale)
            if others:
                log.info("venue=%s: %d open orders of other clients on the account (left alone)", venue, others)
            for order in stale:
                self.stale_orders.append(order)
                log.warning("venue=%s: open order client_order_id=%s (%s %s %g @ %s) was left by an earlier run "
                            "of this strategy; %s", venue, order.client_order_id, order.instrument.key,
                            order.side.value, order.remaining_qty, order.price,
                            "cancelling it" if self.config.cancel_stale_orders else
                            "left open (cancel_stale_orders = false): this run does not manage it")
                if not self.config.cancel_stale_orders:
                    continue
                try:
                    await asyncio.wait_for(conn.cancel_order(order.instrument.key, order.client_order_id), 10)
                    self.stale_orders_cancelled += 1
                except Exception as exc:  # noqa: BLE001 - the others must still be cancelled
                    log.error("venue=%s: cancel of stale order %s failed: %s", venue, order.client_order_id, exc)
            await self._positions_at_start(venue, conn)

    async def _positions_at_start(self, venue: str, conn: Any) -> None:
        """Live start: log at WARNING each position the account already holds in an instrument a
        strategy trades (a derivatives venue's ``positions()``). Strategies start flat: such a
        position is not theirs, they neither hedge nor close it."""
        watched = {k for r in self.runners for k in r.watched}
        try:
            held = await asyncio.wait_for(conn.positions(), 10)
        except Exception as exc:  # noqa: BLE001 - a read failure must not stop the run
            log.error("venue=%s: positions could not be read at start (%s: %s)", venue, type(exc).__name__, exc)
            return
        for key, position in held.items():
            if key in watched and position.qty:
                log.warning("venue=%s: the account holds a position of %g %s at start; the strategies start "
                            "flat and do not hedge or close it", venue, position.qty, key)

    async def _wait_synced(self, deadline: float) -> None:
        """Wait until every watched book is in sync, by ``deadline`` (``time.monotonic()`` s)."""
        keys = {k for s in self.strategies for k in s.watched_instruments()}
        for key in sorted(keys):
            conn = self.connectors[key.partition(":")[0]]
            remaining = max(0.1, deadline - time.monotonic())
            if hasattr(conn, "wait_synced"):
                await conn.wait_synced(key, remaining)
            else:
                while not conn.book(key).is_valid:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"book {key} not in sync after {self.config.sync_timeout_s} s")
                    await asyncio.sleep(0.05)

    def _build_runners(self) -> None:
        session = new_session_id()
        tags: dict[str, str] = {}
        for strategy in self.strategies:
            tag = strategy_tag(strategy.strategy_id)
            if tag in tags:
                raise ValueError(f"strategies {tags[tag]!r} and {strategy.strategy_id!r} have the same client "
                                 f"order id tag {tag!r}: rename one")
            tags[tag] = strategy.strategy_id
        instruments: dict[str, Instrument] = {}
        for conn in self.connectors.values():
            instruments.update(conn.instruments())
        self._instruments = instruments
        for key, inst in instruments.items():
            info = self._funding_info(key, inst)
            if info is not None:
                self.funding_rates[key] = info.rate
        for strategy in self.strategies:
            prefix = client_order_id_prefix(strategy.strategy_id, session)
            sims = self._paper_accounts() if self.paper else {}
            private: dict[str, Any] = sims if self.paper else {  # live: its view of each account
                venue: _AccountView(conn, prefix) for venue, conn in self.connectors.items()
            }
            books = {k: self.connectors[i.venue].book(k) for k, i in instruments.items()}
            orders = OrderManager(
                self.clock, private, lambda key, b=books: b[key], RiskPolicy(self.config.risk),  # type: ignore[misc]
                client_order_id_prefix=prefix,
                max_terminal_orders=self.config.max_terminal_orders,
                terminal_order_min_age_s=self.config.terminal_order_min_age_s,
            )
            orders.own_ids_only = not self.paper  # live: only such ids' events reach the strategy
            ctx = StrategyContext(
                clock=self.clock, public=self.connectors, private=private, orders=orders,
                funding_rates=self.funding_rates,
            )
            ctx.funding_rates = self.funding_rates  # shared: rate pushes reach every strategy
            runner = _Runner(strategy, ctx, sims)
            orders.add_listener(runner.push_private)
            ctx._timer_sink = runner.push_private
            strategy.bind(ctx)
            self.runners.append(runner)
            for key in runner.watched:
                self._by_key[key].append(runner)
            for key, inst in instruments.items():
                if inst.venue in sims:
                    self._sims_by_key[key].append(sims[inst.venue])

    def _paper_accounts(self) -> dict[str, SimVenue]:
        """One strategy's paper account: a simulated venue per configured venue, trading against
        the connector's book with the ``[paper]`` balances, latency and leverage."""
        cfg = self.config.paper
        sims: dict[str, SimVenue] = {}
        for venue, conn in self.connectors.items():
            insts = conn.instruments()
            balances = dict(cfg.balances.get(venue, {}))
            if venue not in cfg.balances:
                for inst in insts.values():
                    balances.setdefault(inst.quote, cfg.default_quote_balance)
            sims[venue] = SimVenue(
                venue, self.clock, insts, {k: conn.book(k) for k in insts},  # type: ignore[arg-type]
                latency=cfg.latency, balances=balances, leverage=cfg.leverage,
                max_terminal_orders=self.config.max_terminal_orders,
                terminal_order_min_age_s=self.config.terminal_order_min_age_s,
                # the venue's fee asset: Gate / MEXC spot buys pay in the base received
                buy_fee_in_base=getattr(conn, "buy_fee_in_base", False) is True,
                venue_rejects_in_reply=False,  # a refusal reaches the strategy one round trip later
            )
        return sims

    # ------------------------------------------------------------------ market routing
    def _on_market(self, event: MarketEvent) -> None:
        if isinstance(event, BookUpdate):
            self.book_updates += 1
            key = event.instrument_key
            for sim in self._sims_by_key.get(key, ()):
                if sim.book_view(key):  # resting orders, or liquidity taken to reconcile
                    sim.on_book(key, event.ts_ns)
            for runner in self._by_key.get(key, ()):
                runner.push_book(event)
        elif isinstance(event, Trade):
            self.trades += 1
            key = event.instrument_key
            for sim in self._sims_by_key.get(key, ()):
                if sim.resting_view(key):
                    sim.on_trade(key, event.price, event.qty, event.taker_side is Side.BUY, event.ts_ns)
        elif isinstance(event, FundingEvent):
            self.funding_rates[event.instrument_key] = event.rate
            if 0.0 < event.mark_price < math.inf:  # 0.0: the push had no mark (an earlier one keeps its age)
                self.funding_marks[event.instrument_key] = (event.mark_price, time.time_ns())

    # ------------------------------------------------------------------ strategy tasks
    async def _run_strategy(self, runner: _Runner) -> None:
        strategy = runner.strategy
        try:
            await strategy.begin()
            while not strategy.is_finished and not self._stop.is_set():
                await runner.drain()
                self._collect_if_due()  # safe point: everything queued was handled, orders are out
                if strategy.is_finished or self._stop.is_set():
                    break
                runner.wake.clear()
                if runner.private or runner.books:
                    continue
                waiter = asyncio.ensure_future(runner.wake.wait())
                stopper = asyncio.ensure_future(self._stop.wait())
                try:
                    await asyncio.wait((waiter, stopper), timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for f in (waiter, stopper):
                        f.cancel()
                    await asyncio.gather(waiter, stopper, return_exceptions=True)
            await self._close_out(runner)
        except StrategyError as exc:
            # an illegal transition: the machine is in no state to close its own positions, so it
            # ends in ERROR (finished: the engine stops once every strategy is) and its orders
            # are cancelled below; its positions are in the result
            runner.error = str(exc)
            log.error("strategy %s failed: %s", strategy.strategy_id, exc)
            if not strategy.is_finished:
                strategy.fail(str(exc), cause=exc)
        finally:
            await self._cancel_all(runner)
            if all(r.strategy.is_finished for r in self.runners):
                self.stop(self.stop_reason or "all strategies finished")

    async def _close_out(self, runner: _Runner) -> None:
        """Give a strategy that is still running EndOfData and up to close_timeout_s to finish."""
        strategy = runner.strategy
        # fills, order updates and timers that came before the stop come before EndOfData; book
        # updates still queued do not: after a stop a strategy must not open or add to positions
        for _ in range(100_000):  # bounded: events produced meanwhile are delivered too
            if not runner.private:
                break
            await strategy.handle(runner.private.popleft())
        runner.books.clear()
        if strategy.is_finished:
            return
        await strategy.handle(EndOfData(ts_ns=self.clock.now_ns(), reason=f"engine stopping: {self.stop_reason}"))
        deadline = time.monotonic() + self.config.close_timeout_s
        while not strategy.is_finished and time.monotonic() < deadline:
            await runner.drain()
            if strategy.is_finished:
                break
            runner.wake.clear()
            if runner.private or runner.books:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runner.wake.wait(), min(0.5, max(0.01, deadline - time.monotonic())))
        if not strategy.is_finished:
            log.error("strategy %s did not finish within close_timeout_s=%s", strategy.strategy_id,
                      self.config.close_timeout_s)

    async def _cancel_all(self, runner: _Runner) -> None:
        """Cancel every open order of the strategy and wait (bounded) for the venue to confirm
        each end: paper, the account's cancel-all on the simulated venue (about 2 s plus two
        simulated round trips); live, each of the strategy's own open orders (the account may hold
        other clients' orders), all sent at once, the cancels and the wait together within
        ``close_timeout_s``. The wait wakes on each order event."""
        om = runner.ctx.orders
        runner.open_at_stop = om.n_open_orders
        if self.paper:
            for sim in runner.sims.values():
                await sim.cancel_all()
            lat = self.config.paper.latency
            deadline = time.monotonic() + 2.0 + 2 * (lat.match_delay_ns + lat.ack_ns) / 1e9
        else:
            # every cancel at once (the connector's rate limiter spaces them as the venue
            # requires), all within one close_timeout_s: one after another, a slow venue would
            # hold the last cancels back past a supervisor's kill
            deadline = time.monotonic() + self.config.close_timeout_s
            orders = om.open_orders
            results = await asyncio.gather(
                *(asyncio.wait_for(om.cancel(o), max(0.0, deadline - time.monotonic())) for o in orders),
                return_exceptions=True,
            )
            for order, outcome in zip(orders, results, strict=True):
                if isinstance(outcome, BaseException):
                    log.error("strategy %s: cancel of %s failed: %s: %s", runner.strategy.strategy_id,
                              order.client_order_id, type(outcome).__name__, outcome)
        while om.n_open_orders and time.monotonic() < deadline:
            runner.wake.clear()  # set by every order event the order manager passes on
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runner.wake.wait(), max(0.0, deadline - time.monotonic()))
        left = runner.ctx.orders.open_orders
        runner.open_after_cancel = len(left)
        for order in left:
            log.warning("strategy %s: order client_order_id=%s instrument=%s still open (status %s) "
                        "after cancel-all", runner.strategy.strategy_id, order.client_order_id,
                        order.instrument.key, order.status.name)
        for name in list(runner.ctx._timers):
            runner.ctx.cancel_timer(name)

    def _funding_info(self, key: str, inst: Instrument) -> FundingInfo | None:
        """The venue's current funding terms of ``key`` (``PublicVenue.funding``); None for spot
        instruments and for perps whose venue states none."""
        if inst.kind is InstrumentKind.SPOT:
            return None
        conn = self.connectors.get(inst.venue)
        if conn is None:
            return None
        try:
            info: FundingInfo | None = conn.funding(key)
        except KeyError:
            return None
        return info

    def _next_funding(self) -> list[tuple[int, str]]:
        """(next funding time ns, key) of every paper-traded perp whose venue states one; also
        brings ``funding_rates`` (what strategies read) up to the venues' current rates. A read
        that raises is logged and counted (``funding_failures``) and that perp left out of this
        round: the other perps are read, and the keeper reads it again in its next round."""
        due: list[tuple[int, str]] = []
        for key, inst in self._instruments.items():
            if self.paper and key not in self._sims_by_key:
                continue
            try:
                info = self._funding_info(key, inst)
            except Exception:  # one venue's failed read must not end the paper run
                self.funding_failures += 1
                log.exception("funding terms of %s not read (venue %s raised); its next funding time is read "
                              "again in the keeper's next round", key, inst.venue)
                continue
            if info is None:
                continue
            self.funding_rates[key] = info.rate
            if info.next_funding_ns > 0:
                due.append((info.next_funding_ns, key))
        return sorted(due)

    def _funding_price(self, key: str, inst: Instrument, ts_ns: int) -> float | None:
        """The price (quote currency) that settles ``key``'s funding at ``ts_ns`` (ns since the
        epoch): the latest mark price the venue stated (a ``FundingEvent`` push,
        :attr:`funding_marks`, or the venue's funding terms, ``FundingInfo.mark_price``, which
        every ticker push updates) when it was read no more than ``funding_mark_max_age_ns``
        before or after ``ts_ns``; else the book's mid, with a WARNING saying the mid was used
        instead of the mark and why; None (also warned) when the book has no mid either.

        Source: venues settle funding at the mark price (Gate.io USDT futures: size x
        ``quanto_multiplier`` x mark price x rate; module docstring)."""
        pushed = self.funding_marks.get(key)
        info = self._funding_info(key, inst)  # the venue's terms keep the mark of every ticker push
        if info is not None and info.mark_price > 0 and (pushed is None or info.mark_updated_ns > pushed[1]):
            pushed = (info.mark_price, info.mark_updated_ns)
        if pushed is not None and abs(ts_ns - pushed[1]) <= self.funding_mark_max_age_ns:
            return pushed[0]
        if pushed is None:
            why = "no mark price has been pushed for it"
        else:
            why = (f"the last mark stated ({pushed[0]}) was read {abs(ts_ns - pushed[1]) / 1e9:.1f} s "
                   f"{'before' if pushed[1] <= ts_ns else 'after'} the funding time, more than the "
                   f"{self.funding_mark_max_age_ns / 1e9:g} s allowed")
        mid: float | None = self.connectors[inst.venue].book(key).mid()
        if mid is None:
            log.warning("funding of %s at %d not settled: no fresh mark price (%s) and the book has no mid",
                        key, ts_ns, why)
            return None
        log.warning("funding of %s at %d settled at the book's mid %s instead of the mark price: %s",
                    key, ts_ns, mid, why)
        return mid

    def settle_funding(self, key: str, ts_ns: int, rate: float | None = None) -> int:
        """Settle one funding payment of perp ``key`` at ``ts_ns`` (ns since the epoch) for every
        strategy (paper accounts; live, the strategies' shares), at ``rate`` (fraction per interval) when given -- the rate the venue stated
        for that funding time, read before it -- else the venue's current rate
        (``PublicVenue.funding``, else the latest pushed).

        The price (quote currency) is the contract's mark price, as venues settle funding (Gate.io
        USDT futures: funding = position size x ``quanto_multiplier`` x mark price x funding rate;
        https://www.gate.io/article/27396, PROTOCOLS.md §3.2): the latest mark the venue pushed if
        it arrived at most ``funding_mark_max_age_ns`` (:data:`FUNDING_MARK_MAX_AGE_S`) before
        ``ts_ns``, else the book's mid, logged at WARNING with the reason. Nothing is settled when
        neither is known. Each account's amount (quote, + received) is ``SimVenue.apply_funding``'s
        in paper mode; live, the venue pays the account and each strategy books its share,
        :meth:`Instrument.funding_payment` of its own position.

        Returns:
            The number of strategies told: each gets the :class:`FundingEvent`, whose
            ``mark_price`` is the price used (accounts that are flat get it with nothing booked).

        Raises:
            ValueError: from ``SimVenue.apply_funding`` (e.g. a non-finite rate), on the first
                account, before any is booked. Whatever the venue's ``book`` / ``funding`` raises
                also propagates. The funding keeper logs and counts either and does not retry it.
        """
        inst = self._instruments.get(key)
        if inst is None:
            return 0
        if rate is None:
            info = self._funding_info(key, inst)
            if info is not None:
                self.funding_rates[key] = info.rate
            rate = self.funding_rates.get(key)
        if rate is None:
            return 0
        price = self._funding_price(key, inst, ts_ns)
        if price is None:
            return 0
        event = FundingEvent(instrument_key=key, rate=rate, mark_price=price, ts_ns=ts_ns)
        told = 0
        for runner in self.runners:
            if self.paper:
                sim = runner.sims.get(inst.venue)
                if sim is None:
                    continue
                amount = sim.apply_funding(key, rate, price, ts_ns)
            else:  # live: the venue pays the account; the strategy's share of it on its position
                pos = runner.ctx.orders.positions.get(key)
                amount = inst.funding_payment(pos.qty, rate, price) if pos is not None and pos.qty else 0.0
            runner.ctx.orders.on_funding(event, amount)
            runner.funding_events.append((event, amount))
            runner.push_private(event)
            told += 1
        log.info("funding %s rate %s mark %s %s %d strategies", key, rate, price,
                 "settled on the paper accounts of" if self.paper else "booked (live) for", told)
        return told

    async def _funding_keeper(self) -> None:
        """Settles funding (paper accounts; live, each strategy's share) at each perp's stated
        funding time, until stopped.

        The venue moves its stated time and rate on by itself once a funding time has passed
        (the connector re-reads them), possibly before this task wakes. So the keeper keeps, per
        perp, the time and rate the venue stated while that time was still ahead, and settles
        every such time once it has passed at that rate, whatever the venue states by then. A
        time first seen already past (no account was open before it) is not settled; a time
        settled once is never settled again.

        Failures do not end the run: a settlement that raises is logged with its traceback
        (instrument and funding time), counted in ``funding_failures`` and marked handled -- never
        retried, so no account is booked twice -- and a venue read that raises is logged, counted
        and tried again next round (rounds are at most 60 s apart and wake at the stated funding
        times, so no tight loop). The other perps and later funding times go on. Cancellation
        (``asyncio.CancelledError``) is not caught."""
        settled: set[tuple[int, str]] = set()
        stated: dict[str, tuple[int, float]] = {}  # key -> (funding time ns, rate), read before it
        while not self._stop.is_set():
            now = time.time_ns()
            for next_ns, key in self._next_funding():
                if next_ns <= now:
                    continue  # not re-read yet, or first seen when already past
                prev = stated.get(key)
                # a passed time not yet settled stays until it is; otherwise the venue's word
                if prev is None or prev[0] > now or (prev[0], key) in settled:
                    stated[key] = (next_ns, self.funding_rates[key])
            for key, (due_ns, rate) in sorted(stated.items(), key=lambda kv: kv[1][0]):
                if due_ns <= now and (due_ns, key) not in settled:
                    settled.add((due_ns, key))  # first: a settlement that fails is not retried
                    try:
                        self.settle_funding(key, due_ns, rate)
                    except Exception:  # one failed settlement must not end the paper run
                        self.funding_failures += 1
                        log.exception("funding of %s at %d (ns) failed at rate %s; not retried (no account is "
                                      "booked twice), the keeper goes on", key, due_ns, rate)
            ahead = [t for t, _ in stated.values() if t > now]
            wait_s = min(60.0, (min(ahead) - now) / 1e9) if ahead else 60.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), max(wait_s, 0.0))

    async def _gc_keeper(self) -> None:
        """Safe-point collections while strategies are idle (market data still allocates)."""
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), GC_IDLE_INTERVAL_S)
            except TimeoutError:
                self._collect_if_due()

    async def _timekeeper(self) -> None:
        duration = self.config.duration_s
        if duration > 0:
            try:
                await asyncio.wait_for(self._stop.wait(), duration)
            except TimeoutError:
                self.stop(f"duration {duration:g} s elapsed")

    # ------------------------------------------------------------------ run
    async def run(self, *, install_signal_handlers: bool = True) -> EngineResult:
        """Run until stopped; returns per-strategy results. Connectors are closed on return."""
        wall0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        if install_signal_handlers:
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(sig, self.stop, f"signal {sig.name}")
                    installed.append(sig)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass
        tasks: list[asyncio.Task[Any]] = []
        reserve_mib = self.config.latency.arena_reserve_mib
        gc_policy = SafePointGc(collect_first=True, arena_reserve_mib=reserve_mib or None)
        gc_entered = False
        self._collect_if_due = gc_policy.collect_if_due
        try:
            async with contextlib.AsyncExitStack() as stack:
                if not await self._start_up(stack):
                    self.stop_reason = f"{self.stop_reason or 'stop requested'} during start-up"
                    log.info("engine stopped during start-up: %s", self.stop_reason)
                    return self._result(wall0, {}, tasks)
                self._build_runners()
                if not self.paper:
                    await self._stale_orders()
                for conn in self.connectors.values():
                    conn.subscribe_market(self._on_market)
                # the start-up heap (modules, instruments, snapshots) never needs collecting: it is
                # frozen, and collections run only at safe points (after a strategy has handled
                # what was queued for it, and on an idle timer), never between a market message
                # and the orders it provokes (cexarb.gcpolicy)
                gc_policy.__enter__()
                gc_entered = True
                if self.config.latency.busy_poll:  # poll the sockets without sleeping (cexarb.hotpath)
                    self.busy_poll = poll = BusyPoll(warm_interval_us=self.config.latency.warm_interval_us)
                    # warmers: each connector's depth parse and each strategy's next decision
                    # (paper orders go to the in-process simulated venue: no order path to warm)
                    for conn in self.connectors.values():
                        if hasattr(conn, "warm_market"):
                            poll.add_warmer(conn.warm_market)
                    for runner in self.runners:
                        poll.add_warmer(runner.strategy.warm)
                    poll.start()
                log.info("engine running %d strategies (%s) on %s", len(self.runners),
                         "paper" if self.paper else "LIVE", ", ".join(self.connectors))
                async with asyncio.TaskGroup() as tg:
                    tasks.append(tg.create_task(self._timekeeper(), name="engine-timekeeper"))
                    tasks.append(tg.create_task(self._gc_keeper(), name="engine-gc"))
                    tasks.append(tg.create_task(self._funding_keeper(), name="engine-funding"))
                    for runner in self.runners:
                        tasks.append(tg.create_task(self._run_strategy(runner), name=f"strategy-{runner.strategy.strategy_id}"))
                self._detach_market()
                runs = {r.strategy.strategy_id: self._strategy_run(r) for r in self.runners}
        finally:
            if self.busy_poll is not None:
                self.busy_poll.stop()
            if gc_entered:
                gc_policy.__exit__(None, None, None)
            for sig in installed:
                loop.remove_signal_handler(sig)
        return self._result(wall0, runs, tasks)

    def _result(self, wall0: float, runs: dict[str, StrategyRun], tasks: list[asyncio.Task[Any]]) -> EngineResult:
        """The run's :class:`EngineResult`; ``wall0`` is ``time.perf_counter()`` (s) at start."""
        return EngineResult(
            mode="paper" if self.paper else "live",
            stop_reason=self.stop_reason or "all strategies finished",
            wall_time_s=time.perf_counter() - wall0,
            strategies=runs,
            book_updates=self.book_updates,
            trades=self.trades,
            pending_tasks=sum(1 for t in tasks if not t.done()),
            stale_orders_found=len(self.stale_orders),
            stale_orders_cancelled=self.stale_orders_cancelled,
        )

    def _detach_market(self) -> None:
        for conn in self.connectors.values():
            handlers: list[Callable[..., Any]] | None = getattr(conn, "_market_handlers", None)
            if handlers is not None and self._on_market in handlers:
                handlers.remove(self._on_market)

    @staticmethod
    def _strategy_run(runner: _Runner) -> StrategyRun:
        om = runner.ctx.orders
        return StrategyRun(
            result=runner.strategy.result(),
            orders=list(om.orders.values()),
            fills=list(om.fills),
            transitions=list(runner.strategy.transition_log),
            positions={k: p.qty for k, p in om.positions.items()},
            open_orders_at_stop=runner.open_at_stop,
            open_orders_after_cancel=runner.open_after_cancel,
            error=runner.error or runner.strategy.error,
            funding=list(runner.funding_events),
        )
