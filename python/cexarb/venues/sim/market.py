"""The live market behind the loopback simulator: recorded books replayed in wall-clock time.

Recordings (``shared/data/book/binance_btc_20240808``, PROVENANCE.md §1) are replayed at their
own pace (``speed`` x real time) from the moment the market starts, and **loop** when a
recording ends. Each recorded instrument drives one or more :class:`VenueBook` s, the books the
server serves under a venue symbol, in that venue's units:

=====================  ==========================  =============================================
venue book             recording                   conversion
=====================  ==========================  =============================================
MEXC ``BTCUSDT``       ``binance-spot:BTCUSDT``    none (tick 0.01, lot 0.000001 BTC)
Gate ``BTC_USDT`` spot ``binance-spot:BTCUSDT``    prices aggregated to Gate's tick 0.1 (bids
                                                   floored, asks ceiled to the tick, quantities
                                                   summed); amounts in BTC
Gate ``BTC_USDT`` perp ``binance-usdm:BTCUSDT``    tick 0.1 (same); sizes in whole contracts of
                                                   ``quanto_multiplier`` 0.0001 BTC
=====================  ==========================  =============================================

Sequencing: every venue book has its own update id, +1 per changed level; a replayed depth
message that changes ``n`` levels of a venue book is one :class:`DepthChange` covering ids
``[first_id, last_id]`` with ``last_id - first_id + 1 == n``. When a recording loops, its book is
reset to the recording's snapshot through one ordinary change (the levels that differ), so ids
stay continuous forever and a client never sees a reset it did not ask for.

Each venue book also keeps a Rust :class:`~cexarb._core.OrderBook` in venue units (the book the
matching core of :class:`~cexarb.venues.sim.venue.SimVenue` reads). Listeners registered with
:meth:`VenueBook.add_listener` / :meth:`LiveMarket.add_trade_listener` are called synchronously
after each change, in recorded order (depth and trades of one instrument interleaved by their
recorded time).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from cexarb._core import OrderBook
from cexarb.model import Instrument, InstrumentKind
from cexarb.replay import BookStream, TradeStream, load_book, load_trades

__all__ = [
    "GATE_FUTURES",
    "GATE_FUTURES_QUANTO",
    "GATE_SPOT",
    "MAPPING_HELP",
    "MEXC_SPOT",
    "DepthChange",
    "LiveMarket",
    "TradeTick",
    "VenueBook",
    "VenueBookSpec",
    "load_source",
]

log = logging.getLogger(__name__)

# ---- instruments served (venue units) ---------------------------------------------------------

#: MEXC spot BTCUSDT as exchangeInfo describes it: quoteAssetPrecision 2, baseAssetPrecision 6,
#: quoteAmountPrecision (min notional) 1 USDT, maker 0 %, taker 0.05 %.
MEXC_SPOT = Instrument(
    venue="mexc-spot",
    symbol="BTCUSDT",
    kind=InstrumentKind.SPOT,
    base="BTC",
    quote="USDT",
    tick_size=0.01,
    lot_size=0.000001,
    min_notional=1.0,
    maker_fee=0.0,
    taker_fee=0.0005,
)

#: Gate spot BTC_USDT: precision 1 (tick 0.1), amount_precision 6, min_quote_amount 3 USDT,
#: fee "0.2" percent (maker = taker = 0.2 %).
GATE_SPOT = Instrument(
    venue="gateio-spot",
    symbol="BTC_USDT",
    kind=InstrumentKind.SPOT,
    base="BTC",
    quote="USDT",
    tick_size=0.1,
    lot_size=0.000001,
    min_notional=3.0,
    maker_fee=0.002,
    taker_fee=0.002,
)

GATE_FUTURES_QUANTO = 0.0001
#: Gate USDT perpetual BTC_USDT: order_price_round 0.1, sizes in whole contracts of
#: quanto_multiplier 0.0001 BTC, maker 0.02 %, taker 0.05 %, funding every 8 h.
GATE_FUTURES = Instrument(
    venue="gateio-futures",
    symbol="BTC_USDT",
    kind=InstrumentKind.PERP,
    base="BTC",
    quote="USDT",
    tick_size=0.1,
    lot_size=1.0,
    contract_size=GATE_FUTURES_QUANTO,
    maker_fee=0.0002,
    taker_fee=0.0005,
    funding_interval_hours=8.0,
)

SPOT_SOURCE = "binance-spot:BTCUSDT"
USDM_SOURCE = "binance-usdm:BTCUSDT"

MAPPING_HELP = (
    "symbols served (recording binance_btc_20240808, replayed in real time, looping):\n"
    "  MEXC spot  BTCUSDT   <- binance-spot BTCUSDT (tick 0.01, lot 0.000001 BTC, min notional 1 USDT,\n"
    "                          maker 0%, taker 0.05%)\n"
    "  Gate spot  BTC_USDT  <- binance-spot BTCUSDT aggregated to tick 0.1 (bids floored, asks ceiled),\n"
    "                          lot 0.000001 BTC, min 3 USDT, fee 0.2%\n"
    "  Gate perp  BTC_USDT  <- binance-usdm BTCUSDT, tick 0.1, contracts of 0.0001 BTC (quanto_multiplier),\n"
    "                          maker 0.02%, taker 0.05%, funding 0.01% every 8 h (00/08/16 UTC)\n"
)


class VenueBookSpec(NamedTuple):
    """How a venue book is derived from a recorded instrument.

    Attributes:
        instrument: the venue's instrument (venue units).
        source: recorded instrument key (``binance-spot:BTCUSDT``).
        qty_scale: venue quantity = recorded quantity * qty_scale (1/quanto_multiplier for
            contracts).
        integer_qty: venue quantities are whole numbers (contracts).
    """

    instrument: Instrument
    source: str
    qty_scale: float = 1.0
    integer_qty: bool = False


DEFAULT_SPECS = (
    VenueBookSpec(MEXC_SPOT, SPOT_SOURCE),
    VenueBookSpec(GATE_SPOT, SPOT_SOURCE),
    VenueBookSpec(GATE_FUTURES, USDM_SOURCE, qty_scale=1.0 / GATE_FUTURES_QUANTO, integer_qty=True),
)


class DepthChange(NamedTuple):
    """Levels of one venue book changed by one replayed message (venue units, absolute, 0 deletes).

    ``bids`` / ``asks`` are ``(price_ticks, qty)``; ids ``[first_id, last_id]`` (one per level);
    ``ts_ms`` wall-clock ms when applied.
    """

    first_id: int
    last_id: int
    bids: list[tuple[int, float]]
    asks: list[tuple[int, float]]
    ts_ms: int


class TradeTick(NamedTuple):
    """A recorded public trade re-issued on a venue: ``qty`` in venue units, ``trade_id`` the
    venue's own counter, ``ts_ms`` wall clock."""

    instrument_key: str
    trade_id: int
    price: float
    qty: float
    taker_is_buy: bool
    ts_ms: int


class VenueBook:
    """A book served under a venue symbol (see the module docstring).

    Attributes:
        instrument: venue instrument.
        book: the Rust book in venue units (read it; the market is its only writer).
        update_id: id of the last change (the REST ``with_id`` / ``lastUpdateId`` value).
        bids, asks: venue levels, price ticks -> qty.
        ts_ms: wall-clock ms of the last change.
    """

    def __init__(self, spec: VenueBookSpec, start_id: int) -> None:
        self.spec = spec
        self.instrument = spec.instrument
        self.book = OrderBook(spec.instrument.tick_size, spec.instrument.lot_size)
        self.update_id = start_id
        self.bids: dict[int, float] = {}
        self.asks: dict[int, float] = {}
        self.ts_ms = 0
        self._listeners: list[Callable[[VenueBook, DepthChange], None]] = []
        self._price_cache: dict[int, float] = {}

    @property
    def key(self) -> str:
        return self.instrument.key

    def add_listener(self, listener: Callable[[VenueBook, DepthChange], None]) -> None:
        """Call ``listener(book, change)`` after every change (synchronously)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[VenueBook, DepthChange], None]) -> None:
        try:
            self._listeners.remove(listener)
        except ValueError:
            pass

    def price(self, ticks: int) -> float:
        """The float of the exact decimal price of ``ticks``."""
        p = self._price_cache.get(ticks)
        if p is None:
            p = self._price_cache[ticks] = self.instrument.ticks_to_price(ticks)
        return p

    def price_str(self, ticks: int) -> str:
        return self.instrument.format_price(ticks)

    def qty_str(self, qty: float) -> str:
        """Venue quantity as a decimal string (contracts as integers)."""
        if self.spec.integer_qty:
            return str(int(qty))
        text = f"{qty:.8f}".rstrip("0").rstrip(".")
        return text or "0"

    def top(self, n: int) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """Best ``n`` levels a side: bids descending, asks ascending, ``(ticks, qty)``."""
        bids = sorted(self.bids.items(), key=lambda kv: -kv[0])[:n]
        asks = sorted(self.asks.items())[:n]
        return bids, asks

    def best(self) -> tuple[tuple[int, float] | None, tuple[int, float] | None]:
        """Best bid and ask ``(ticks, qty)`` (None for an empty side)."""
        bid = max(self.bids.items(), default=None)
        ask = min(self.asks.items(), default=None)
        return bid, ask

    def mid(self) -> float | None:
        bid, ask = self.best()
        if bid is None or ask is None:
            return None
        return (self.price(bid[0]) + self.price(ask[0])) / 2.0

    def _apply(self, bids: list[tuple[int, float]], asks: list[tuple[int, float]], ts_ms: int) -> DepthChange | None:
        n = len(bids) + len(asks)
        if n == 0:
            return None
        for ticks, qty in bids:
            if qty > 0:
                self.bids[ticks] = qty
            else:
                self.bids.pop(ticks, None)
        for ticks, qty in asks:
            if qty > 0:
                self.asks[ticks] = qty
            else:
                self.asks.pop(ticks, None)
        first = self.update_id + 1
        self.update_id += n
        self.ts_ms = ts_ms
        price = self.price
        if self.book.last_update_id is None:
            self.book.apply_snapshot(
                [(price(t), q) for t, q in self.bids.items()],
                [(price(t), q) for t, q in self.asks.items()],
                self.update_id,
            )
        else:
            self.book.apply_update(
                [(price(t), q) for t, q in bids],
                [(price(t), q) for t, q in asks],
                first,
                self.update_id,
            )
        change = DepthChange(first, self.update_id, bids, asks, ts_ms)
        for listener in list(self._listeners):
            try:
                listener(self, change)
            except Exception:  # a listener must not stop the market
                log.exception("depth listener failed venue_book=%s", self.key)
        return change


class _Source(NamedTuple):
    book: BookStream
    trades: TradeStream | None


@functools.lru_cache(maxsize=4)
def load_source(folder: str, venue: str, symbol: str) -> _Source:
    """Load one recorded instrument's book and trades (cached per process: tests share it).

    Raises:
        ValueError: no ``<venue>_<symbol>_*_book.csv.gz`` in ``folder``, or a malformed file.
    """
    root = Path(folder)
    books = sorted(root.glob(f"{venue}_{symbol}_*_book.csv*"))
    if not books:
        raise ValueError(f"{root}: no {venue}_{symbol}_*_book.csv[.gz] recording")
    book = load_book(books[0])
    trades_files = sorted(root.glob(f"{venue}_{symbol}_*_trades.csv*"))
    trades = load_trades(trades_files[0], f"{venue}:{symbol}") if trades_files else None
    return _Source(book, trades)


class _Feed:
    """One recorded instrument replayed in a loop, driving its venue books."""

    def __init__(self, source_key: str, data: _Source, books: list[VenueBook]) -> None:
        self.key = source_key
        self.stream = data.book
        self.trades = data.trades
        self.books = books
        inst = self.stream.instrument
        self.src_tick = inst.tick_size
        self.bids: dict[int, float] = {}
        self.asks: dict[int, float] = {}
        ln = self.stream.local_ns
        self.t0_ns = int(ln[0])
        end = int(ln[-1])
        if self.trades is not None and len(self.trades):
            end = max(end, int(self.trades.local_ns[-1]))
        self.duration_ns = max(end - self.t0_ns, 1) + 100_000_000  # a pause of 0.1 s before looping
        self.i_book = 0
        self.i_trade = 0
        self.loops = 0
        self.factors = []
        for b in books:
            k = b.instrument.tick_size / self.src_tick
            if abs(k - round(k)) > 1e-9 or round(k) < 1:
                raise ValueError(
                    f"{b.key}: tick {b.instrument.tick_size} is not a whole multiple of the recording's {self.src_tick}"
                )
            self.factors.append(round(k))
        if self.trades is not None:
            # trades before the book's first message are skipped (the book is not valid yet)
            while self.i_trade < len(self.trades) and int(self.trades.local_ns[self.i_trade]) < self.t0_ns:
                self.i_trade += 1
        self.first_trade = self.i_trade

    # -- recorded time of the next event (relative to t0), or None at the end of a loop
    def next_rel_ns(self) -> int | None:
        nb = int(self.stream.local_ns[self.i_book]) - self.t0_ns if self.i_book < len(self.stream) else None
        nt = None
        if self.trades is not None and self.i_trade < len(self.trades):
            nt = int(self.trades.local_ns[self.i_trade]) - self.t0_ns
        if nb is None:
            return nt
        if nt is None:
            return nb
        return min(nb, nt)

    def _bucket_qty(self, side: dict[int, float], bucket: int, k: int, is_bid: bool) -> float:
        if k == 1:
            return side.get(bucket, 0.0)
        lo = bucket * k if is_bid else bucket * k - k + 1
        total = 0.0
        for s in range(lo, lo + k):
            total += side.get(s, 0.0)
        return total

    def _venue_levels(
        self, book: VenueBook, k: int, touched_bid: set[int], touched_ask: set[int]
    ) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """Venue levels whose quantity differs from the venue book after fine levels changed."""
        scale = book.spec.qty_scale
        integer = book.spec.integer_qty
        out: list[list[tuple[int, float]]] = [[], []]
        for idx, (touched, fine, venue_side, is_bid) in enumerate(
            (
                (touched_bid, self.bids, book.bids, True),
                (touched_ask, self.asks, book.asks, False),
            )
        ):
            buckets = {(s // k) if is_bid else -((-s) // k) for s in touched}
            for b in sorted(buckets, reverse=is_bid):
                q = self._bucket_qty(fine, b, k, is_bid) * scale
                q = float(round(q)) if integer else round(q, 10)
                if q != venue_side.get(b, 0.0):
                    out[idx].append((b, q))
        return out[0], out[1]

    def apply_book_message(self, i: int, ts_ms: int) -> None:
        stream = self.stream
        tick = self.src_tick
        touched_bid: set[int] = set()
        touched_ask: set[int] = set()
        if stream.is_snapshot[i]:
            touched_bid.update(self.bids)
            touched_ask.update(self.asks)
            self.bids.clear()
            self.asks.clear()
        for levels, side, touched in (
            (stream.bids(i), self.bids, touched_bid),
            (stream.asks(i), self.asks, touched_ask),
        ):
            for price, qty in levels.tolist():
                s = round(price / tick)
                touched.add(s)
                if qty > 0:
                    side[s] = qty
                else:
                    side.pop(s, None)
        for book, k in zip(self.books, self.factors):
            bids, asks = self._venue_levels(book, k, touched_bid, touched_ask)
            book._apply(bids, asks, ts_ms)

    def trade(self, i: int, ts_ms: int) -> list[tuple[VenueBook, float, float, bool]]:
        """(book, price, venue qty, taker_is_buy) per venue book of recorded trade ``i``."""
        assert self.trades is not None
        price = float(self.trades.price[i])
        qty = float(self.trades.qty[i])
        buy = bool(self.trades.taker_is_buy[i])
        out = []
        for book in self.books:
            q = qty * book.spec.qty_scale
            q = float(round(q)) if book.spec.integer_qty else q
            if q > 0:
                out.append((book, price, q, buy))
        return out

    def restart(self) -> None:
        """End of the recording: start over (the snapshot, message 0, comes next)."""
        self.i_book = 0
        self.i_trade = self.first_trade
        self.loops += 1


class LiveMarket:
    """Replays recorded instruments in wall-clock time under venue symbols (module docstring).

    Args:
        data_dir: folder of the recording (``*_book.csv.gz`` / ``*_trades.csv.gz``).
        speed: replay speed (1.0 = real time).
        specs: venue books to serve (default: MEXC BTCUSDT, Gate spot and futures BTC_USDT).

    Use: ``market.start()`` (on the running loop) applies the recordings' snapshots at once and
    starts the replay task; ``await market.stop()``.
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        speed: float = 1.0,
        specs: tuple[VenueBookSpec, ...] = DEFAULT_SPECS,
    ) -> None:
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be finite and > 0, got {speed!r}")
        self.speed = speed
        self.books: dict[str, VenueBook] = {}
        by_source: dict[str, list[VenueBook]] = {}
        for n, spec in enumerate(specs):
            # distinct, large starting ids per book, as a venue's ids would be
            book = VenueBook(spec, start_id=1_000_000_000 * (n + 1))
            self.books[book.key] = book
            by_source.setdefault(spec.source, []).append(book)
        self._feeds: list[_Feed] = []
        for source, books in by_source.items():
            venue, _, symbol = source.partition(":")
            self._feeds.append(
                _Feed(
                    source,
                    load_source(str(Path(data_dir).resolve()), venue, symbol),
                    books,
                )
            )
        self._origin_ns = min(f.t0_ns for f in self._feeds)
        self._trade_listeners: list[Callable[[VenueBook, TradeTick], None]] = []
        self._trade_seq = 0
        self._task: asyncio.Task[None] | None = None
        self._start_wall_ns = 0
        self._feed_base_ns: list[int] = []
        self.paused = False

    def book(self, instrument_key: str) -> VenueBook:
        return self.books[instrument_key]

    def add_trade_listener(self, listener: Callable[[VenueBook, TradeTick], None]) -> None:
        """Call ``listener(book, trade)`` for every recorded trade re-issued on a venue book."""
        self._trade_listeners.append(listener)

    def start(self) -> None:
        """Apply every event due at time 0 (the snapshots) and start replaying. Needs a running loop."""
        if self._task is not None:
            return
        # each feed keeps its offset from the common origin (cross-venue alignment kept); the
        # replay starts where every recording has begun, so every book is valid from the start
        self._feed_base_ns = [f.t0_ns - self._origin_ns for f in self._feeds]
        lead_ns = max(self._feed_base_ns)
        self._start_wall_ns = time.time_ns() - int(lead_ns / self.speed)
        self.step(time.time_ns())
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sim-market")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    def _rec_now_ns(self, wall_ns: int) -> int:
        return int((wall_ns - self._start_wall_ns) * self.speed)

    def step(self, wall_ns: int) -> int:
        """Apply every recorded event due by ``wall_ns``; returns how many were applied."""
        rec_now = self._rec_now_ns(wall_ns)
        ts_ms = wall_ns // 1_000_000
        applied = 0
        for n, feed in enumerate(self._feeds):
            while True:
                rel = feed.next_rel_ns()
                if rel is None:
                    feed.restart()
                    self._feed_base_ns[n] += feed.duration_ns
                    log.info("recording %s looped (loop %d)", feed.key, feed.loops)
                    continue
                if self._feed_base_ns[n] + rel > rec_now:
                    break
                self._apply_next(feed, ts_ms, wall_ns)
                applied += 1
        return applied

    def _apply_next(self, feed: _Feed, ts_ms: int, wall_ns: int) -> None:
        nb = int(feed.stream.local_ns[feed.i_book]) if feed.i_book < len(feed.stream) else None
        nt = None
        if feed.trades is not None and feed.i_trade < len(feed.trades):
            nt = int(feed.trades.local_ns[feed.i_trade])
        if nb is not None and (nt is None or nb <= nt):
            feed.apply_book_message(feed.i_book, ts_ms)
            feed.i_book += 1
            return
        i = feed.i_trade
        feed.i_trade += 1
        for book, price, qty, buy in feed.trade(i, ts_ms):
            self._trade_seq += 1
            tick = TradeTick(book.key, self._trade_seq, price, qty, buy, ts_ms)
            for listener in list(self._trade_listeners):
                try:
                    listener(book, tick)
                except Exception:
                    log.exception("trade listener failed venue_book=%s", book.key)

    def _next_due_wall_ns(self) -> int | None:
        best: int | None = None
        for n, feed in enumerate(self._feeds):
            rel = feed.next_rel_ns()
            if rel is None:
                return time.time_ns()  # loop now
            rec = self._feed_base_ns[n] + rel
            wall = self._start_wall_ns + int(rec / self.speed)
            if best is None or wall < best:
                best = wall
        return best

    async def _run(self) -> None:
        while True:
            if self.paused:
                before = time.time_ns()
                await asyncio.sleep(0.05)
                # while paused, the recording's clock stands still
                self._start_wall_ns += time.time_ns() - before
                continue
            due = self._next_due_wall_ns()
            now = time.time_ns()
            if due is not None and due > now:
                await asyncio.sleep(min((due - now) / 1e9, 0.25))
                continue
            self.step(time.time_ns())
            await asyncio.sleep(0)
