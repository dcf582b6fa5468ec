"""Replay a strategy on recorded real market data against the in-process simulated venue.

One strategy code path: the strategy gets :class:`ReplayPublicVenue` objects (the recorded books,
rebuilt message by message in the Rust core) and :class:`~cexarb.venues.sim.venue.SimVenue`
private venues; live trading hands it real connectors instead.

Event order (deterministic): the recorded depth messages and trades of the strategy's instruments
are merged by ``local_ns`` (ties: depth before trade, then stream, then row); simulated-venue
callbacks (order arrivals, acks, fills) and strategy timers due at or before an event's time run
before it. The strategy is woken only by what it watches: a top-of-book change of one of its
instruments, its own order updates and fills, its timers, funding, end of data.

The recording holds no funding rate: funding is a replay parameter (``funding_rate`` per
interval), applied at the venue's funding times (00:00/08:00/16:00 UTC for Binance) that fall
inside the replayed window; the report says it was assumed.
"""

from __future__ import annotations

import bisect
import collections
import functools
import logging
import math
import time
from typing import Any, Callable

import msgspec
import numpy as np

from cexarb import _core
from cexarb.clock import SimClock
from cexarb.gcpolicy import SafePointGc
from cexarb.execution import OrderManager
from cexarb.model import Fill, FundingEvent, FundingInfo, Instrument, InstrumentKind, Order
from cexarb.replay import Recording
from cexarb.risk import RiskLimits, RiskPolicy
from cexarb.strategy.machine import BookWatch, EndOfData, StrategyContext, StrategyMachine, StrategyResult
from cexarb.venues.base import BookUpdate, MarketEvent
from cexarb.venues.sim.venue import SimLatency, SimVenue

__all__ = ["BacktestConfig", "BacktestResult", "ReplayPublicVenue", "Backtest", "run_backtest"]

log = logging.getLogger(__name__)

_NS_PER_HOUR = 3_600_000_000_000


class BacktestConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Replay parameters; every assumption here is printed in the report.

    Attributes:
        latency: simulated order-entry / ack / market-data latency (ns).
        funding_rate: assumed funding rate per interval for every perp (fraction; 0.0001 = 1 bp
            per 8 h ≈ 10.95 % APR, Binance's baseline when premium is zero).
        balances: starting balances, ``{venue: {asset: amount}}``; venues not named get
            ``default_quote_balance`` of their quote asset and ``default_base_balance`` of base.
        default_quote_balance / default_base_balance: see ``balances`` (base inventory lets an
            arbitrage sell on a spot venue it did not buy on: pre-positioned inventory).
        leverage: perp margin = notional / leverage.
        end_of_data_lead_s: EndOfData reaches the strategy this long before the last common
            message, so it closes on live recorded books.
        settle_s: after the last message (and again after a final EndOfData), the replay runs
            the clock this much longer, seconds, so orders in flight complete against the final
            books; clock callbacks due later (a strategy timer hours away) never run.
        sample_interval_ms: spacing of the time series kept for the report.
        risk: pre-trade limits.
        buy_fee_in_base: venues whose spot buys pay their fee out of the base received (the
            fill's ``fee_base``; Gate.io and MEXC spot do so, and Binance spot does unless the
            fee is paid in BNB). Default none: every fee in quote.
    """

    latency: SimLatency = SimLatency()
    funding_rate: float = 0.0001
    balances: dict[str, dict[str, float]] = {}
    default_quote_balance: float = 1_000_000.0
    default_base_balance: float = 10.0
    leverage: float = 1.0
    end_of_data_lead_s: float = 2.0
    settle_s: float = 5.0
    sample_interval_ms: float = 250.0
    risk: RiskLimits = RiskLimits()
    buy_fee_in_base: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not math.isfinite(self.funding_rate):
            raise ValueError(f"funding_rate must be finite, got {self.funding_rate!r}")
        if not (math.isfinite(self.leverage) and self.leverage > 0):
            raise ValueError(f"leverage must be finite and > 0, got {self.leverage!r}")
        if not (math.isfinite(self.sample_interval_ms) and self.sample_interval_ms > 0):
            raise ValueError(f"sample_interval_ms must be > 0, got {self.sample_interval_ms!r}")
        if not (math.isfinite(self.end_of_data_lead_s) and self.end_of_data_lead_s >= 0):
            raise ValueError(f"end_of_data_lead_s must be >= 0, got {self.end_of_data_lead_s!r}")
        if not (math.isfinite(self.settle_s) and self.settle_s >= 0):
            raise ValueError(f"settle_s must be finite and >= 0, got {self.settle_s!r}")


class ReplayPublicVenue:
    """A :class:`~cexarb.venues.base.PublicVenue` over recorded books (one venue's instruments).

    ``clock`` and ``funding_rate`` (the replay's assumed rate per funding interval, a fraction:
    recordings hold none) give :meth:`funding` its answer; without them a perp's funding is
    unknown (None).
    """

    def __init__(
        self,
        name: str,
        instruments: dict[str, Instrument],
        books: dict[str, _core.OrderBook],
        *,
        clock: SimClock | None = None,
        funding_rate: float | None = None,
    ) -> None:
        if funding_rate is not None and not math.isfinite(funding_rate):
            raise ValueError(f"ReplayPublicVenue {name}: funding_rate must be finite, got {funding_rate!r}")
        self.name = name
        self._instruments = instruments
        self._books = books
        self._handlers: list[Callable[[MarketEvent], None]] = []
        self._clock = clock
        self._funding_rate = funding_rate

    def instruments(self) -> dict[str, Instrument]:
        return dict(self._instruments)

    def book(self, instrument_key: str) -> _core.OrderBook:
        return self._books[instrument_key]

    def subscribe_market(self, handler: Callable[[MarketEvent], None]) -> None:
        self._handlers.append(handler)

    def funding(self, instrument_key: str) -> FundingInfo | None:
        """The assumed funding terms of perp ``instrument_key`` at the replay clock: the replay's
        rate (fraction per interval, ``assumed=True``), the next funding time after now (ns; the
        whole intervals since the epoch at which :class:`Backtest` settles funding) and the
        interval (ns; the instrument's ``funding_interval_hours``, 8 h when unstated). None for
        spot, or without a clock and rate. KeyError naming the key if it is not this venue's."""
        inst = self._instruments.get(instrument_key)
        if inst is None:
            raise KeyError(f"{self.name}: unknown instrument {instrument_key!r}; known: {sorted(self._instruments)}")
        if inst.kind is InstrumentKind.SPOT or self._clock is None or self._funding_rate is None:
            return None
        now = self._clock.now_ns()
        interval = int((inst.funding_interval_hours or 8.0) * _NS_PER_HOUR)
        return FundingInfo(
            instrument_key=instrument_key,
            rate=self._funding_rate,
            next_funding_ns=(now // interval + 1) * interval,
            interval_ns=interval,
            updated_ns=now,
            assumed=True,
        )

    def publish(self, event: MarketEvent) -> None:
        for handler in self._handlers:
            handler(event)


class BacktestResult(msgspec.Struct, kw_only=True):
    """Everything a report needs. Times ns; money in quote currency (USDT)."""

    strategy: StrategyResult
    instruments: list[Instrument]
    window_ns: tuple[int, int]
    book_messages: int
    #: recorded trades in the replay window
    trade_messages: int
    book_gaps: int
    wall_time_s: float
    #: (book messages + trades fed to the fill model) per second of wall time
    events_per_s: float
    orders: list[Order]
    fills: list[Fill]
    transitions: list[tuple[int, str, str, str]]
    transition_counts: dict[str, int]
    markers: list[tuple[int, str, str]]
    funding_events: list[FundingEvent]
    series: dict[str, list[float]]
    max_abs_delta_base: float
    max_abs_delta_quote: float
    config: BacktestConfig
    #: trades of the window fed to the fill model: only those of an instrument with resting
    #: orders at the time (the others cannot fill anything and are skipped)
    trades_to_fill_model: int = 0

    @property
    def messages(self) -> int:
        return self.book_messages + self.trade_messages

    def __repr__(self) -> str:
        # brief: asyncio formats a finished task's result with repr() (e.g. when asyncio.run
        # restores its SIGINT handler), and the full series would cost milliseconds
        s = self.strategy
        return (f"BacktestResult({s.strategy_type} {s.final_state}, {self.messages} messages, "
                f"{len(self.orders)} orders, {len(self.fills)} fills, net {s.net_pnl:.4f})")


class Backtest:
    """Runs one strategy over a :class:`~cexarb.replay.Recording`.

    Args:
        recording: loaded recorded data.
        strategy: an unbound strategy (``registry.create(...)``); only its
            ``watched_instruments()`` are replayed.
        config: replay parameters.
    """

    def __init__(self, recording: Recording, strategy: StrategyMachine[Any], config: BacktestConfig | None = None):
        self.recording = recording
        self.strategy = strategy
        self.config = config or BacktestConfig()
        keys = list(strategy.watched_instruments()) or list(recording.streams)
        missing = [k for k in keys if k not in recording.streams]
        if missing:
            raise ValueError(f"strategy instruments {missing} not in recording {recording.name!r}; "
                             f"available: {sorted(recording.streams)}")
        self.keys = keys
        self.instruments = {k: recording.streams[k].instrument for k in keys}
        self.books = {k: _core.OrderBook(i.tick_size, i.lot_size) for k, i in self.instruments.items()}
        self.clock = SimClock()
        by_venue: dict[str, dict[str, Instrument]] = collections.defaultdict(dict)
        for k, inst in self.instruments.items():
            by_venue[inst.venue][k] = inst
        cfg = self.config
        self.public = {
            v: ReplayPublicVenue(
                v, insts, {k: self.books[k] for k in insts}, clock=self.clock, funding_rate=cfg.funding_rate
            )
            for v, insts in by_venue.items()
        }
        unknown = sorted(set(cfg.buy_fee_in_base) - set(by_venue))
        if unknown:
            raise ValueError(f"buy_fee_in_base names venues not in the recording: {unknown} (venues: {sorted(by_venue)})")
        self.private: dict[str, SimVenue] = {}
        for v, insts in by_venue.items():
            balances = dict(cfg.balances.get(v, {}))
            if v not in cfg.balances:
                for inst in insts.values():
                    balances.setdefault(inst.quote, cfg.default_quote_balance)
                    if inst.kind is InstrumentKind.SPOT:
                        balances.setdefault(inst.base, cfg.default_base_balance)
            self.private[v] = SimVenue(
                v, self.clock, insts, {k: self.books[k] for k in insts},
                latency=cfg.latency, balances=balances, leverage=cfg.leverage,
                buy_fee_in_base=v in cfg.buy_fee_in_base,
                venue_rejects_in_reply=False,  # a refusal reaches the strategy one round trip later
            )
        self.orders = OrderManager(self.clock, self.private, lambda key: self.books[key], RiskPolicy(cfg.risk))
        perps = [k for k, i in self.instruments.items() if i.kind is not InstrumentKind.SPOT]
        self.ctx = StrategyContext(
            clock=self.clock, public=self.public, private=self.private, orders=self.orders,
            funding_rates={k: cfg.funding_rate for k in perps},
        )
        self._pending: collections.deque[Any] = collections.deque()
        self.orders.add_listener(self._pending.append)
        self.ctx._timer_sink = self._pending.append
        strategy.bind(self.ctx)
        self.funding_events: list[FundingEvent] = []
        self._max_delta = (0.0, 0.0)

    # ------------------------------------------------------------------ helpers
    def _window(self) -> tuple[int, int]:
        starts = [int(self.recording.streams[k].book.local_ns[0]) for k in self.keys]
        ends = [int(self.recording.streams[k].book.local_ns[-1]) for k in self.keys]
        start, end = max(starts), min(ends)
        if end <= start:
            raise ValueError(f"instruments {self.keys} do not overlap in time in {self.recording.name!r}")
        return start, end

    def _book_events(self, end: int) -> tuple[list[int], list[int], list[int]]:
        """Depth messages of the strategy's instruments up to ``end``, merged by ``local_ns``
        (ties: stream order, then row): parallel lists (ts_ns, stream index, row)."""
        ts_parts, src_parts, row_parts = [], [], []
        for i, key in enumerate(self.keys):
            bts = np.asarray(self.recording.streams[key].book.local_ns, dtype=np.int64)
            n = int(np.searchsorted(bts, end, side="right"))
            ts_parts.append(bts[:n])
            src_parts.append(np.full(n, i, np.int16))
            row_parts.append(np.arange(n, dtype=np.int64))
        ts = np.concatenate(ts_parts)
        src = np.concatenate(src_parts)
        row = np.concatenate(row_parts)
        order = np.lexsort((row, src, ts))
        return ts[order].tolist(), src[order].tolist(), row[order].tolist()

    def _trade_windows(self, end: int) -> list[tuple[int, int]]:
        """Per stream: (first row, end row) of the trades from the stream's first depth message up
        to ``end`` inclusive."""
        out: list[tuple[int, int]] = []
        for key in self.keys:
            data = self.recording.streams[key]
            if data.trades is None or not len(data.trades.local_ns):
                out.append((0, 0))
                continue
            tts = np.asarray(data.trades.local_ns, dtype=np.int64)
            lo = int(np.searchsorted(tts, int(data.book.local_ns[0]), side="left"))
            hi = int(np.searchsorted(tts, end, side="right"))
            out.append((lo, hi))
        return out

    def _trades_of(self, i: int) -> tuple[list[int], list[float], list[float], list[bool]]:
        """Stream ``i``'s trades as Python lists (local_ns, price, qty, taker_is_buy), made the
        first time an order rests on it: a replay in which nothing rests never converts them."""
        cols = self._trade_cols[i]
        if cols is None:
            trades = self.recording.streams[self.keys[i]].trades
            if trades is None:
                cols = ([], [], [], [])
            else:
                cols = (np.asarray(trades.local_ns, dtype=np.int64).tolist(), trades.price.tolist(),
                        trades.qty.tolist(), trades.taker_is_buy.tolist())
            self._trade_cols[i] = cols
        return cols

    def _schedule_funding(self, start: int, end: int) -> None:
        cfg = self.config
        for key, inst in self.instruments.items():
            if inst.kind is InstrumentKind.SPOT:
                continue
            interval = int((inst.funding_interval_hours or 8.0) * _NS_PER_HOUR)
            t = (start // interval + 1) * interval
            while t <= end:
                self.clock.schedule(t, functools.partial(self._funding, key, t, cfg.funding_rate))
                t += interval

    def _funding(self, key: str, ts: int, rate: float) -> None:
        mark = self.books[key].mid()
        if mark is None:
            return
        event = FundingEvent(instrument_key=key, rate=rate, mark_price=mark, ts_ns=ts, assumed=True)
        venue = self.private[self.instruments[key].venue]
        amount = venue.apply_funding(key, rate, mark, ts)
        self.orders.on_funding(event, amount)
        self.funding_events.append(event)
        self._pending.append(event)

    async def _drain(self) -> None:
        """Deliver pending private events and timers to the strategy at the current time."""
        pending, strategy = self._pending, self.strategy
        while pending:
            event = pending.popleft()
            await strategy.handle(event)
            if type(event) is Fill:
                self._track_delta()

    async def _settle(self, horizon_ns: int) -> None:
        """Deliver what is pending and run the clock callbacks due up to ``horizon_ns`` (ns), one
        by one in time order (each callback's consequences at its own time); stop at the first
        callback due later, leaving the clock at the last one run."""
        clock = self.clock
        for _ in range(100_000):  # bounded: a strategy re-arming a timer at the same time
            await self._drain()
            nxt = clock.next_due_ns()
            if nxt is None or nxt > horizon_ns:
                return
            await self._run_until(nxt)
        log.error("replay: callbacks still due after 100,000 steps of the settle window; stopped")

    async def _run_until(self, ts: int) -> None:
        """Run every clock callback due at or before ``ts`` in time order, delivering what each one
        produces at its own time (so an ack due at t reaches the strategy at t, and whatever the
        strategy sends then is scheduled from t), then move time to ``ts``."""
        clock = self.clock
        while clock.run_next(ts):
            if self._pending:
                await self._drain()
        clock.advance(ts)

    async def _advance_to(self, ts: int) -> None:
        """Bring the replay to just before the depth message at ``ts``: clock callbacks due at or
        before ``ts`` and recorded trades before ``ts``, merged in time order (a callback before a
        trade at the same time), as the fill model needs them.

        A trade matters only to an instrument with resting orders: trades of the others are
        skipped (their cursors jump). When an order starts resting at time t, the trades before t
        of its instrument are skipped, as they traded before it arrived.
        """
        clock, queue, cur = self.clock, self.clock.queue, self._trade_cursor
        windows, resting = self._trade_win, self._resting
        while True:
            t_next, i_next = ts, -1
            for i, live in enumerate(resting):
                if live:
                    hi = windows[i][1]
                    tts = self._trades_of(i)[0]
                    c = bisect.bisect_left(tts, clock.now_ns(), cur[i], hi)
                    cur[i] = c
                    if c < hi and tts[c] < t_next:
                        t_next, i_next = tts[c], i
            if queue and queue[0][0] <= ts and (i_next < 0 or queue[0][0] <= t_next):
                if clock.run_next(ts) and self._pending:
                    await self._drain()
                continue
            if i_next < 0:
                break
            c = cur[i_next]
            cur[i_next] = c + 1
            clock.advance(t_next)
            _, prices, qtys, taker_is_buy = self._trades_of(i_next)
            self._sim_venues[i_next].on_trade(self.keys[i_next], prices[c], qtys[c], taker_is_buy[c], t_next)
            self._trades_fed += 1
            if self._pending:
                await self._drain()
        clock.advance(ts)

    # ------------------------------------------------------------------ run
    async def run(self, progress: Callable[[int, int], None] | None = None) -> BacktestResult:
        """Replay the whole window; returns the result (also when the strategy ends in ERROR).

        Garbage collection runs at safe points only (:class:`cexarb.gcpolicy.SafePointGc`): after
        each book message has been handled, never between a message and the orders it provokes.
        No arena reserve (:mod:`cexarb.memory`, a latency tool of the live engine): a replay
        takes the same page faults either way, and filling the reserve costs ~10 ms per run
        (measured: demo replay median 76-87 ms with it, 64-84 ms without, 3 A/B pairs).
        """
        with SafePointGc() as gcp:
            return await self._run(progress, gcp.collect_if_due)

    async def _run(self, progress: Callable[[int, int], None] | None, collect_if_due: Callable[[], int]) -> BacktestResult:
        wall0 = time.perf_counter()
        cfg = self.config
        start, end = self._window()
        T, S, R = self._book_events(end)
        n_book = len(T)
        keys = self.keys
        books = [self.books[k] for k in keys]
        streams = [self.recording.streams[k] for k in keys]
        deltas = [s.book.deltas for s in streams]
        self._trade_win = self._trade_windows(end)
        self._trade_cursor = [lo for lo, _ in self._trade_win]
        self._trades_fed = 0
        n_trades = sum(hi - lo for lo, hi in self._trade_win)
        self._trade_cols: list[tuple[list[int], list[float], list[float], list[bool]] | None] = [None] * len(keys)
        venues = self._sim_venues = [self.private[self.instruments[k].venue] for k in keys]
        resting = self._resting = [v.resting_view(k) for v, k in zip(venues, keys, strict=True)]
        # truthy while orders rest OR consumed-liquidity records exist: then every depth message
        # of that instrument goes through SimVenue.on_book (the records must see each one)
        looks = [v.book_view(k) for v, k in zip(venues, keys, strict=True)]
        watched = set(self.strategy.watched_instruments()) or set(keys)
        is_watched = [k in watched for k in keys]
        clock, queue = self.clock, self.clock.queue
        strategy, pending = self.strategy, self._pending
        APPLIED, CROSSED = _core.APPLIED, _core.CROSSED

        sample_ns = int(cfg.sample_interval_ms * 1e6)
        next_sample = start
        series: dict[str, list[float]] = {"ts_ns": [], "net_pnl": []}
        for k in keys:
            series[f"mid:{k}"] = []
            series[f"position:{k}"] = []
        self._series = series
        self._sample_legs = [
            (k, self.books[k], self.instruments[k], series[f"mid:{k}"], series[f"position:{k}"]) for k in keys
        ]
        gaps = 0
        started = False
        eod_ns = max(start, end - int(cfg.end_of_data_lead_s * 1e9))
        end_of_data = EndOfData(ts_ns=eod_ns)
        clock.schedule(eod_ns, lambda: pending.append(end_of_data))
        self._schedule_funding(start, end)
        handle = strategy.handle
        book_watch = strategy.book_watch
        TOP, PRICE = int(BookWatch.TOP), int(BookWatch.PRICE)
        n_gap_codes = (_core.GAP, CROSSED)

        # The fast path: while nothing rests on the simulated venues, no instrument holds
        # consumed-liquidity records (``looks``) and nothing waits in Python, the Rust cursor
        # applies messages until one needs Python (a timer, clock or report-sample time reached,
        # a non-APPLIED outcome, or a BBO change the strategy watches)
        cursor = _core.ReplayCursor(
            books, [deltas[s][r] for s, r in zip(S, R, strict=True)], S, T, is_watched
        )
        advance = cursor.advance
        NONE = int(BookWatch.NONE)
        j = 0
        while j < n_book:
            status = -1  # not applied yet
            if not pending and not any(looks):
                stop = next_sample if started else start
                if queue and queue[0][0] < stop:
                    stop = queue[0][0]
                j_end = (j + 1023) & ~1023 if progress is not None else n_book  # progress: each 1024th
                upto, status = advance(j, j_end, stop, book_watch() if started else NONE)
                if upto >= n_book:
                    break
                j = upto
            ts, src = T[j], S[j]
            j += 1
            book = books[src]
            # Python ran for this message (callbacks, fill model, strategy, sample): only then can
            # a collection be due, as applying a message to a book allocates no Python objects
            ran = False
            if status < 0:
                if (queue and queue[0][0] <= ts) or any(resting):
                    await self._advance_to(ts)
                    ran = True
                else:  # nothing rests and nothing is due: the trades before ts concern no one
                    clock.advance(ts)  # (the trade cursors catch up lazily in _advance_to)
                status = book.apply_delta(deltas[src][R[j - 1]])
            else:  # applied by the cursor: nothing was due before it, nothing rests or is consumed
                clock.advance(ts)
            if status != APPLIED:
                if status in n_gap_codes:
                    gaps += 1
                    log.error("book %s: %s", keys[src], book.invalid_reason)
                if ran:
                    collect_if_due()
                continue
            if looks[src]:
                venues[src].on_book(keys[src], ts)
                ran = True
            if ts < start:
                if ran:
                    collect_if_due()
                continue
            if not started:
                started = ran = True
                await strategy.begin()
            if book.bbo_changed and is_watched[src]:
                watch = book_watch()
                if watch == TOP or (watch == PRICE and book.bbo_price_changed):
                    await handle(BookUpdate(instrument_key=keys[src], ts_ns=ts, price_changed=book.bbo_price_changed))
                    ran = True
            if ts >= next_sample:
                next_sample = ts + sample_ns
                self._sample(ts)
                ran = True
            if pending:
                await self._drain()
                ran = True
            if progress is not None and ((j - 1) & 1023) == 0:
                progress(j - 1, n_book)
                ran = True
            if ran:
                collect_if_due()  # safe point: the message and what it provoked are done
        if n_book:
            clock.advance(T[-1])
        await self._advance_to(end + 1)  # trades after the last depth message, up to the end

        # after the last message: let in-flight orders finish against the final books, for at
        # most settle_s; a callback due later (a strategy's max holding time, hours away) never
        # runs: the data cannot say what the market did then
        settle_ns = int(cfg.settle_s * 1e9)
        await self._settle(clock.now_ns() + settle_ns)
        if not started:
            await strategy.begin()
        if not strategy.is_finished:
            await strategy.handle(EndOfData(ts_ns=clock.now_ns(), reason="replay finished"))
            await self._settle(clock.now_ns() + settle_ns)  # the orders it sends in reply
        if progress is not None:
            progress(n_book, n_book)
        self._sample(clock.now_ns())
        wall = time.perf_counter() - wall0
        result = strategy.result()
        return BacktestResult(
            strategy=result,
            instruments=list(self.instruments.values()),
            window_ns=(start, end),
            book_messages=n_book,
            trade_messages=n_trades,
            book_gaps=gaps,
            wall_time_s=wall,
            events_per_s=(n_book + self._trades_fed) / wall if wall > 0 else 0.0,
            orders=list(self.orders.orders.values()),
            fills=list(self.orders.fills),
            transitions=list(strategy.transition_log),
            transition_counts=strategy.transition_counts(),
            markers=list(strategy.markers),
            funding_events=list(self.funding_events),
            series=series,
            max_abs_delta_base=self._max_delta[0],
            max_abs_delta_quote=self._max_delta[1],
            config=cfg,
            trades_to_fill_model=self._trades_fed,
        )

    def _track_delta(self) -> None:
        """After a fill: update the running max |net delta| (base units, and quote at mid).
        Samples update it too (:meth:`_sample`), as the quote value moves with price."""
        delta = 0.0
        price = math.nan
        for key, book, inst, _, _ in self._sample_legs:
            pos = self.orders.positions.get(key)
            mid = book.mid()
            if pos is not None and pos.qty and mid is not None:
                delta += inst.base_qty(pos.qty, mid)
                price = mid
        self._note_delta(delta, price)

    def _note_delta(self, delta: float, price: float) -> None:
        if delta:
            self._max_delta = (max(self._max_delta[0], abs(delta)), max(self._max_delta[1], abs(delta * price)))

    def _sample(self, ts: int) -> None:
        """Append one point to the report series: mids, positions, net PnL; track max delta."""
        series = self._series
        series["ts_ns"].append(float(ts))
        positions = self.orders.positions
        pnl = delta = 0.0
        price = math.nan
        for key, book, inst, mids, qtys in self._sample_legs:
            mid = book.mid()
            mids.append(math.nan if mid is None else mid)
            pos = positions.get(key)
            if pos is None:
                qtys.append(0.0)
                continue
            qty = pos.qty
            qtys.append(qty)
            pnl += pos.realized_pnl - pos.fees + pos.funding
            if qty and mid is not None:
                pnl += inst.unrealized_pnl(qty, pos.avg_price, mid)
                delta += inst.base_qty(qty, mid)
                price = mid
        series["net_pnl"].append(pnl)
        self._note_delta(delta, price)


async def run_backtest(
    recording: Recording,
    strategy: StrategyMachine[Any],
    config: BacktestConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    """Convenience: ``await Backtest(recording, strategy, config).run(progress)``."""
    return await Backtest(recording, strategy, config).run(progress)

