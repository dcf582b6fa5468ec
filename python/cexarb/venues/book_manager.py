"""Per-symbol L2 book synchronisation: buffer, snapshot, stitch, and resync one symbol at a time.

A :class:`BookManager` keeps one Rust :class:`~cexarb._core.OrderBook` per symbol of one venue
stream. Depth pushes come in through :meth:`BookManager.on_update` (already decoded, as
:class:`DepthUpdate`); snapshots are fetched through a callback the connector gives
(``fetch_snapshot(symbol)`` -> :class:`BookSnapshot`, normally a REST call). Per symbol:

1. **Syncing**: pushes are buffered (bounded). Once at least one push is buffered (so the stream
   has started and a snapshot taken now cannot be older than it), the snapshot is fetched.
2. **Stitch**: the snapshot is applied and the buffer replayed by the venue's rule
   (:class:`SequenceRule`): stale pushes dropped, the first applied push must straddle the
   snapshot id, later ones must be contiguous. If the snapshot turns out older than the stream
   (the first non-stale push does not straddle it), a new snapshot is fetched (backoff, bounded).
3. **Live**: each push is checked against the rule before it reaches the core book. A sequence
   gap, a crossed book or a push the core rejects puts **that symbol only** back to step 1
   (``resync_count`` + 1); other symbols are untouched.
4. A ``full: true`` push (Gate, PROTOCOLS.md §2.5 rule 6, and the first push of ``*.obu``)
   replaces the book at once, synced or not (``full_resets`` + 1; no REST call).
5. A WebSocket reconnect or overflow loses pushes of every symbol on that connection:
   :meth:`BookManager.resync_all` (:meth:`BookManager.resync` per symbol). A disconnect makes the
   books of that connection invalid right away (:meth:`BookManager.invalidate` per symbol,
   :meth:`BookManager.invalidate_all` for all), so no strategy trades on a frozen book; each such
   symbol then resyncs as after a gap (step 1) and counts one resync, the others are untouched.
   A venue that spreads its symbols over several connections invalidates and resyncs only the
   symbols of the connection that dropped.

Sequence rules (PROTOCOLS.md §1.6, §2.5, §3.5), and how each feeds the core book:

* **Gate** (:data:`GATE_RULE`, spot and futures; ids ``U``/``u``, snapshot ``id``): drop pushes
  with ``u <= id``; the first applied has ``U <= id + 1 <= u``; then ``U == previous u + 1``.
  This *is* the core's spot mode: ``apply_snapshot(.., id)``, ``apply_update(.., U, u)``.
* **MEXC** (:data:`MEXC_RULE`; ``fromVersion``/``toVersion``, snapshot ``lastUpdateId`` = v):
  drop pushes with ``toVersion < v``; the first applied has ``fromVersion <= v <= toVersion``;
  then ``fromVersion == previous toVersion + 1``. The core has no MEXC mode, so the manager
  checks this rule itself, then feeds the core in its futures mode with
  ``prev_update_id = fromVersion - 1``: the core's futures rules (drop ``u < L``, first
  ``U <= L <= u``, then ``pu == previous u``) are then *exactly* MEXC's, so the core's own check
  agrees with the manager's on every push and the core's ``last_update_id`` is MEXC's version.
  (Feeding MEXC pushes in spot mode would be wrong: it would drop the push whose
  ``toVersion == v``, and demand ``U <= v + 1``.)

The manager decides first (so it knows stale vs gap without a core round trip); should the core
ever disagree (return something other than APPLIED), the symbol is resynced and an error logged.
The exception is Gate once a push has been applied since the last snapshot or full reset (the
core is then past its straddle check and its contiguity check *is* Gate's): each live push is one
core call, whose answer (applied, stale, gap, crossed) the manager acts on as it would on its
own verdict; a push whose rows the core rejects goes through the rule as above, so a stale push
is dropped whatever its rows. ``test_live_core_check_matches_the_rule_in_python`` feeds both
paths the same pushes and checks they end every step in the same state.

Invalidating a core book (disconnect, resync) has no core call of its own: the manager applies an
empty push that cannot be contiguous (``U = u = last + 2``), which the core records as a sequence
gap -- the book reads ``is_valid == False`` until the next snapshot, and the core's ``gap_count``
counts these too. The manager's :class:`BookStats` hold the real counts.

Book age (:meth:`BookManager.age_s`) is the time since the book last changed (snapshot or push
applied), on the monotonic clock; None while never synced.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final, Protocol, Self

import msgspec

from cexarb._core import APPLIED, CROSSED, GAP, STALE, OrderBook, parse_gate_depth
from cexarb.venues.gateio import codec as gate_codec
from cexarb.venues.mexc import codec as mexc_codec
from cexarb.venues.ws import WsConnected, WsDisconnected, WsEvent, WsFrame, WsOverflow

__all__ = [
    "GATE_RULE",
    "MEXC_RULE",
    "BookManager",
    "BookSnapshot",
    "BookStats",
    "DepthPush",
    "DepthUpdate",
    "GateRule",
    "MexcRule",
    "SequenceRule",
    "Verdict",
    "decode_gate_depth",
    "decode_mexc_depth",
]

log = logging.getLogger(__name__)

Levels = list[tuple[float, float]]


class DepthUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """One depth push, venue-neutral: ``first_id``..``last_id`` (Gate ``U``/``u``, MEXC
    ``fromVersion``/``toVersion``); ``full`` replaces the book (``first_id`` may then be None).
    Levels ``(price, qty)`` absolute, 0 deletes; ``ts_ms`` the venue's event time."""

    symbol: str
    first_id: int | None
    last_id: int
    bids: Levels
    asks: Levels
    full: bool = False
    ts_ms: int = 0

    @classmethod
    def from_gate(cls, update: gate_codec.GateOrderBookUpdate) -> DepthUpdate:
        return cls(
            symbol=update.symbol,
            first_id=update.first_id,
            last_id=update.last_id,
            bids=update.bids,
            asks=update.asks,
            full=update.full,
            ts_ms=update.ts_ms,
        )

    @classmethod
    def from_mexc(cls, update: mexc_codec.MexcDepthUpdate) -> DepthUpdate:
        return cls(
            symbol=update.symbol,
            first_id=update.from_version,
            last_id=update.to_version,
            bids=update.bids,
            asks=update.asks,
            ts_ms=update.ts_ms,
        )


class DepthPush(Protocol):
    """What :meth:`BookManager.on_update` reads of a depth push: the fields of
    :class:`DepthUpdate`. A venue codec's own push type with these fields (Gate's
    :class:`~cexarb.venues.gateio.codec.GateOrderBookUpdate`, or the Rust-parsed
    :class:`~cexarb._core.GateDepth` of the hot ``*.order_book_update`` frames, whose levels never
    become Python objects on the way to the book) is passed as it is, without a copy."""

    @property
    def symbol(self) -> str: ...
    @property
    def first_id(self) -> int | None: ...
    @property
    def last_id(self) -> int: ...
    @property
    def bids(self) -> Levels: ...
    @property
    def asks(self) -> Levels: ...
    @property
    def full(self) -> bool: ...
    @property
    def ts_ms(self) -> int: ...


class BookSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A REST snapshot: ``last_id`` Gate ``id`` (``with_id=true``) / MEXC ``lastUpdateId``."""

    last_id: int
    bids: Levels
    asks: Levels

    @classmethod
    def from_gate(cls, snapshot: gate_codec.GateBookSnapshot) -> BookSnapshot:
        return cls(last_id=snapshot.id, bids=snapshot.bids, asks=snapshot.asks)

    @classmethod
    def from_mexc(cls, depth: mexc_codec.MexcDepth) -> BookSnapshot:
        return cls(last_id=depth.last_update_id, bids=depth.bids, asks=depth.asks)


class Verdict(enum.Enum):
    APPLY = "apply"
    STALE = "stale"
    GAP = "gap"  # after a snapshot: the snapshot is older than the push (fetch a newer one)


class SequenceRule(Protocol):
    """A venue's stitching rule, and how to feed the core book with it."""

    name: str

    def first(self, snapshot_id: int, first_id: int, last_id: int) -> Verdict:
        """The first push after a snapshot (or full reset) with id ``snapshot_id``."""
        ...

    def next(self, prev_last_id: int, first_id: int, last_id: int) -> Verdict:
        """A push after one that was applied (``prev_last_id`` its last id)."""
        ...

    def core_update(self, book: OrderBook, update: DepthPush, first_id: int, last_id: int) -> int:
        """Apply the push's levels to the core book in the mode that enforces the same rule
        (one core call, :meth:`OrderBook.apply_push`: a Rust-parsed
        :class:`~cexarb._core.GateDepth` hands its levels over natively, other pushes as their
        ``bids`` / ``asks`` lists)."""
        ...


class GateRule:
    """Gate ``U``/``u`` (PROTOCOLS.md §2.5, §3.5) = the core's spot mode."""

    name = "gate"

    def first(self, snapshot_id: int, first_id: int, last_id: int) -> Verdict:
        if last_id <= snapshot_id:
            return _STALE
        return _APPLY if first_id <= snapshot_id + 1 <= last_id else _GAP

    def next(self, prev_last_id: int, first_id: int, last_id: int) -> Verdict:
        if last_id <= prev_last_id:
            return _STALE
        return _APPLY if first_id == prev_last_id + 1 else _GAP

    def core_update(self, book: OrderBook, update: DepthPush, first_id: int, last_id: int) -> int:
        return book.apply_push(update, first_id, last_id)


class MexcRule:
    """MEXC ``fromVersion``/``toVersion`` (PROTOCOLS.md §1.6), fed to the core's futures mode with
    ``prev_update_id = fromVersion - 1`` (see the module docs)."""

    name = "mexc"

    def first(self, snapshot_id: int, first_id: int, last_id: int) -> Verdict:
        if last_id < snapshot_id:
            return _STALE
        return _APPLY if first_id <= snapshot_id <= last_id else _GAP

    def next(self, prev_last_id: int, first_id: int, last_id: int) -> Verdict:
        if last_id <= prev_last_id:
            return _STALE
        return _APPLY if first_id == prev_last_id + 1 else _GAP

    def core_update(self, book: OrderBook, update: DepthPush, first_id: int, last_id: int) -> int:
        return book.apply_push(update, first_id, last_id, max(first_id - 1, 0))


# the verdicts as module globals: read on every push (an Enum class attribute costs a lookup
# through the enum's metaclass)
_APPLY: Final = Verdict.APPLY
_STALE: Final = Verdict.STALE
_GAP: Final = Verdict.GAP

GATE_RULE: Final = GateRule()
MEXC_RULE: Final = MexcRule()


class BookStats(msgspec.Struct, frozen=True, kw_only=True):
    """Counters of one symbol's book."""

    symbol: str
    synced: bool
    last_id: int | None
    age_s: float | None
    resync_count: int  # resyncs after the first sync (gap, crossed, reconnect, rejected push)
    gap_count: int  # sequence gaps seen
    full_resets: int
    snapshots: int  # snapshots fetched and applied
    applied: int
    stale: int
    buffered: int


class _Symbol:
    __slots__ = (
        "applied",
        "awaiting_first",
        "book",
        "buffer",
        "core_live",
        "ever_synced",
        "fetch_task",
        "full_resets",
        "gap_count",
        "invalidated",
        "last_change",
        "last_id",
        "last_ts_ms",
        "next_fetch_at",
        "pushed",
        "resync_count",
        "snapshots",
        "stale",
        "symbol",
        "synced",
        "synced_event",
    )

    def __init__(self, symbol: str, book: OrderBook, max_buffer: int) -> None:
        self.symbol = symbol
        self.book = book
        self.buffer: deque[DepthPush] = deque(maxlen=max_buffer)
        self.synced = False
        self.ever_synced = False
        self.awaiting_first = True
        # a push was applied to the core book since its last snapshot / full reset (the core
        # then checks Gate's contiguity itself; before, it takes a straddling first push)
        self.core_live = False
        self.last_id: int | None = None
        self.fetch_task: asyncio.Task[None] | None = None
        self.next_fetch_at = 0.0
        self.resync_count = 0
        # out of sync by BookManager.invalidate, which counted the resync: the resync() that
        # follows (a reconnect) does not count it again; cleared once in sync
        self.invalidated = False
        self.gap_count = 0
        self.full_resets = 0
        self.snapshots = 0
        self.applied = 0
        self.stale = 0
        self.last_change: float | None = None
        self.last_ts_ms = 0
        self.synced_event = asyncio.Event()
        self.pushed = asyncio.Event()  # set when the buffer gets a push


FetchSnapshot = Callable[[str], Awaitable[BookSnapshot | None]]


class BookManager:
    """Keeps the books of one venue stream in sync (see the module docs).

    Args:
        venue: venue name, for logs.
        rule: :data:`GATE_RULE` or :data:`MEXC_RULE`.
        fetch_snapshot: ``await fetch_snapshot(symbol)`` -> :class:`BookSnapshot`, or None when a
            ``full`` push will come instead (``*.obu``: the callback resubscribes).
        on_book: called as ``on_book(symbol, book)`` after every snapshot, full reset or applied
            push (exceptions are logged).
        max_buffer: pushes buffered per symbol while syncing (oldest dropped beyond).
        snapshot_timeout_s: deadline of one ``fetch_snapshot`` call.
        first_push_wait_s: how long a sync waits for a first buffered push before fetching anyway.
        max_snapshot_attempts: fetches per sync before giving up until the next push arrives.
        retry_delay_s: base of the backoff between fetches (full jitter, doubling, max 5 s).
        clock: monotonic seconds.
    """

    def __init__(
        self,
        venue: str,
        rule: SequenceRule,
        fetch_snapshot: FetchSnapshot,
        *,
        on_book: Callable[[str, OrderBook], None] | None = None,
        max_buffer: int = 10_000,
        snapshot_timeout_s: float = 10.0,
        first_push_wait_s: float = 5.0,
        max_snapshot_attempts: int = 5,
        retry_delay_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
    ) -> None:
        self.venue = venue
        self.rule = rule
        self.fetch_snapshot = fetch_snapshot
        self.on_book = on_book
        self.max_buffer = max_buffer
        self.snapshot_timeout_s = snapshot_timeout_s
        self.first_push_wait_s = first_push_wait_s
        self.max_snapshot_attempts = max_snapshot_attempts
        self.retry_delay_s = retry_delay_s
        self._clock = clock
        self._rng = random.Random(seed)
        self._symbols: dict[str, _Symbol] = {}
        # the core book's own sequence check is exactly this rule once a push was applied
        self._core_is_rule = rule is GATE_RULE
        self._closed = False
        self.unknown_symbol_updates = 0
        self.decode_errors = 0

    # ---- setup and teardown -------------------------------------------------------------------------

    def add_symbol(self, symbol: str, tick_size: float, lot_size: float) -> OrderBook:
        """Track ``symbol``; its (empty, invalid) book is returned and stays the same object."""
        if symbol in self._symbols:
            return self._symbols[symbol].book
        book = OrderBook(tick_size, lot_size)
        self._symbols[symbol] = _Symbol(symbol, book, self.max_buffer)
        return book

    @property
    def symbols(self) -> list[str]:
        return list(self._symbols)

    async def aclose(self) -> None:
        """Cancel every snapshot fetch in flight and wait for them."""
        self._closed = True
        tasks = [s.fetch_task for s in self._symbols.values() if s.fetch_task is not None and not s.fetch_task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---- reading -------------------------------------------------------------------------------

    def book(self, symbol: str) -> OrderBook:
        """The symbol's core book (read it; never mutate it)."""
        return self._symbols[symbol].book

    def is_synced(self, symbol: str) -> bool:
        return self._symbols[symbol].synced

    def age_s(self, symbol: str) -> float | None:
        """Seconds since the book last changed; None while it never was in sync."""
        last = self._symbols[symbol].last_change
        return None if last is None else self._clock() - last

    def resync_count(self, symbol: str) -> int:
        return self._symbols[symbol].resync_count

    def stats(self, symbol: str) -> BookStats:
        s = self._symbols[symbol]
        return BookStats(
            symbol=symbol,
            synced=s.synced,
            last_id=s.last_id,
            age_s=self.age_s(symbol),
            resync_count=s.resync_count,
            gap_count=s.gap_count,
            full_resets=s.full_resets,
            snapshots=s.snapshots,
            applied=s.applied,
            stale=s.stale,
            buffered=len(s.buffer),
        )

    async def wait_synced(self, symbol: str, timeout_s: float) -> None:
        """Wait until ``symbol`` is in sync.

        Raises:
            TimeoutError: not in sync within ``timeout_s``.
        """
        state = self._symbols[symbol]
        async with asyncio.timeout(timeout_s):
            while not state.synced:
                state.synced_event.clear()
                await state.synced_event.wait()

    # ---- input ---------------------------------------------------------------------------------

    def on_update(self, update: DepthPush) -> None:
        """One decoded depth push, a :class:`DepthUpdate` or any :class:`DepthPush` (call in
        arrival order; never awaits)."""
        state = self._symbols.get(update.symbol)
        if state is None:
            self.unknown_symbol_updates += 1
            return
        if update.full:
            self._apply_full(state, update)
            return
        first_id = update.first_id
        if first_id is None:
            log.error("venue=%s symbol=%s incremental push without a first id; resync", self.venue, update.symbol)
            self._resync(state, "push without first id")
            return
        if not state.synced:
            state.buffer.append(update)
            state.pushed.set()
            self._ensure_fetch(state)
            return
        if self._core_is_rule and state.core_live:
            # A push after an applied one, under a rule the core book enforces itself (Gate = the
            # core's spot mode, see the module docs): one core call decides stale / gap /
            # applied, instead of the rule deciding in Python first. The outcome and the state
            # kept are those of _apply (tested side by side in tests/test_book_manager.py).
            book = state.book
            try:
                code = book.apply_push(update, first_id, update.last_id)
            except ValueError:
                code = -1
            if code == APPLIED:
                state.last_id = book.last_update_id
                state.applied += 1
                state.last_change = self._clock()
                state.last_ts_ms = update.ts_ms
                self._notify(state)
            else:
                self._live_core_not_applied(state, update, first_id, code)
            return
        self._apply(state, update, live=True)

    def _live_core_not_applied(self, state: _Symbol, update: DepthPush, first_id: int, code: int) -> None:
        """What the core's answer other than APPLIED means on the live path of :meth:`on_update`
        (``code`` -1: the core raised ValueError)."""
        if code == -1:
            # the core checks the rows before the ids and left the book as it was: the rule
            # decides in Python (a stale push is dropped, whatever its rows)
            self._apply(state, update, live=True)
            return
        if code == STALE:
            state.stale += 1
            return
        if code == GAP:  # the core book is invalid now; fetch a snapshot, keep this push
            state.gap_count += 1
            reason = f"sequence gap: push {first_id}..{update.last_id} after {state.last_id}"
            self._resync(state, reason, keep=update)
            return
        if code != CROSSED:  # NOT_SYNCED: the core book went invalid behind the manager's back
            log.error(
                "venue=%s symbol=%s core book disagrees with the %s rule (result %d)",
                self.venue,
                state.symbol,
                self.rule.name,
                code,
            )
        self._resync(state, "crossed book" if code == CROSSED else "push not applied")

    def handle_ws_event(self, event: WsEvent, decode: Callable[[WsFrame], DepthUpdate | None]) -> None:
        """Glue for a :class:`~cexarb.venues.ws.WsClient` handler: decode frames with ``decode``
        (None: not a depth push), resync everything after a reconnect or an overflow, invalidate
        everything on a disconnect. A frame that does not decode is logged and skipped."""
        if isinstance(event, WsFrame):
            try:
                update = decode(event)
            except ValueError as exc:
                self.decode_errors += 1
                log.error("venue=%s malformed frame skipped (%d bytes): %s", self.venue, len(event.data), exc)
                return
            if update is not None:
                self.on_update(update)
        elif isinstance(event, WsConnected):
            if event.reconnect:
                self.resync_all("reconnect")
        elif isinstance(event, WsDisconnected):
            self.invalidate_all(f"disconnected: {event.reason}")
        elif isinstance(event, WsOverflow):
            self.resync_all(f"{event.dropped} frames dropped")

    def resync(self, symbol: str, reason: str = "requested") -> None:
        """Resynchronise one symbol from a new snapshot, now (as a sequence gap does: the book
        reads invalid, pushes are buffered, that symbol's snapshot is fetched and the buffer
        replayed; ``resync_count`` + 1 unless :meth:`invalidate` already counted this one).

        Raises:
            KeyError: ``symbol`` is not tracked.
        """
        self._resync(self._state(symbol), reason)

    def resync_all(self, reason: str) -> None:
        """:meth:`resync` every symbol."""
        for state in self._symbols.values():
            self._resync(state, reason)

    def invalidate(self, symbol: str, reason: str) -> None:
        """Mark ``symbol``'s book out of sync now, because its stream lost (or is losing) pushes
        -- its WebSocket connection dropped; every other symbol is untouched.

        The core book reads invalid at once (``is_valid`` False: no strategy trades on a frozen
        book); the pushes buffered so far and any snapshot fetch in flight are dropped (they
        cannot stitch across the lost pushes). The book then resyncs as after a sequence gap:
        from its next push on, pushes are buffered, this symbol's snapshot is fetched (one REST
        call, this symbol only) and the buffer replayed -- or at once by :meth:`resync` (a
        reconnect). No snapshot is fetched before that: while the stream is down one could only
        be older than the next push. This counts one resync (``resync_count`` + 1, as a gap does;
        none for a book never in sync yet) -- once: a :meth:`resync` or another
        :meth:`invalidate` before the book is back in sync does not count it again. The book age
        (:meth:`age_s`) keeps running from the last change until the book is back in sync.

        Raises:
            KeyError: ``symbol`` is not tracked.
        """
        self._invalidate_symbol(self._state(symbol), reason)

    def invalidate_all(self, reason: str) -> None:
        """:meth:`invalidate` every symbol (the stream of every symbol is down; pushes restart
        the sync, or :meth:`resync_all` after the reconnect)."""
        for state in self._symbols.values():
            self._invalidate_symbol(state, reason)

    # ---- internals ---------------------------------------------------------------------------------

    def _state(self, symbol: str) -> _Symbol:
        try:
            return self._symbols[symbol]
        except KeyError:
            raise KeyError(f"venue={self.venue}: symbol {symbol!r} is not tracked by this book manager") from None

    def _invalidate_symbol(self, state: _Symbol, reason: str) -> None:
        """:meth:`invalidate` of one symbol."""
        if state.ever_synced and not state.invalidated:
            state.resync_count += 1
            state.invalidated = True
            log.warning(
                "venue=%s symbol=%s resync #%d: %s (snapshot on the next push or reconnect)",
                self.venue,
                state.symbol,
                state.resync_count,
                reason,
            )
        self._invalidate(state, reason)
        state.last_id = None
        if state.fetch_task is not None and not state.fetch_task.done():
            state.fetch_task.cancel()  # its snapshot would stitch a buffer that lost pushes
        state.fetch_task = None

    def _invalidate(self, state: _Symbol, reason: str) -> None:
        was_synced = state.synced
        state.synced = False
        state.awaiting_first = True
        state.core_live = False
        state.buffer.clear()
        state.pushed.clear()
        book = state.book
        if book.is_valid:
            last = book.last_update_id or 0
            book.apply_update([], [], last + 2, last + 2)  # a sentinel gap: the core book reads invalid
        if was_synced:
            log.info("venue=%s symbol=%s out of sync: %s", self.venue, state.symbol, reason)

    def _resync(self, state: _Symbol, reason: str, keep: DepthPush | None = None) -> None:
        if state.invalidated:  # counted by invalidate()
            state.invalidated = False
        elif state.ever_synced:
            state.resync_count += 1
        log.warning("venue=%s symbol=%s resync #%d: %s", self.venue, state.symbol, state.resync_count, reason)
        self._invalidate(state, reason)
        state.last_id = None
        if state.fetch_task is not None and not state.fetch_task.done():
            state.fetch_task.cancel()
        state.fetch_task = None
        if keep is not None:
            state.buffer.append(keep)
            state.pushed.set()
        self._ensure_fetch(state)

    def _ensure_fetch(self, state: _Symbol) -> None:
        if self._closed or (state.fetch_task is not None and not state.fetch_task.done()):
            return
        state.fetch_task = asyncio.get_running_loop().create_task(
            self._sync(state), name=f"book-sync {self.venue} {state.symbol}"
        )

    async def _sync(self, state: _Symbol) -> None:
        """Fetch snapshots until one stitches (bounded attempts, backoff between)."""
        try:
            cooldown = state.next_fetch_at - self._clock()
            if cooldown > 0:  # the previous sync gave up: do not hammer the venue
                await asyncio.sleep(cooldown)
            if not state.buffer:  # fetch once the stream has started, so the snapshot is not older
                try:
                    async with asyncio.timeout(self.first_push_wait_s):
                        await state.pushed.wait()
                except TimeoutError:
                    pass
            for attempt in range(self.max_snapshot_attempts):
                if state.synced:
                    return  # a full push synced it meanwhile
                try:
                    async with asyncio.timeout(self.snapshot_timeout_s):
                        snapshot = await self.fetch_snapshot(state.symbol)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - any connector error: retry with backoff
                    log.warning(
                        "venue=%s symbol=%s snapshot fetch failed: %s", self.venue, state.symbol, type(exc).__name__
                    )
                    snapshot = None
                    ok = False
                else:
                    if snapshot is None:
                        return  # a full push will come (obu resubscribe)
                    if state.synced:
                        return
                    ok = self._stitch(state, snapshot)
                if ok:
                    return
                delay = self._rng.uniform(0.0, min(5.0, self.retry_delay_s * (2**attempt)))
                await asyncio.sleep(delay)
            state.next_fetch_at = self._clock() + min(5.0, self.retry_delay_s * (2**self.max_snapshot_attempts))
            log.error(
                "venue=%s symbol=%s no snapshot stitched after %d attempts; retrying on the next push",
                self.venue,
                state.symbol,
                self.max_snapshot_attempts,
            )
        finally:
            if state.fetch_task is asyncio.current_task():
                state.fetch_task = None

    def _stitch(self, state: _Symbol, snapshot: BookSnapshot) -> bool:
        """Apply ``snapshot`` then the buffer; True when the book is in sync."""
        book = state.book
        try:
            book.apply_snapshot(snapshot.bids, snapshot.asks, snapshot.last_id)
        except ValueError as exc:
            log.error("venue=%s symbol=%s snapshot rejected by the book: %s", self.venue, state.symbol, exc)
            return False
        state.snapshots += 1
        state.core_live = False
        if not book.is_valid:  # a crossed snapshot leaves the core book invalid
            log.warning("venue=%s symbol=%s crossed snapshot %d", self.venue, state.symbol, snapshot.last_id)
            return False
        state.last_id = snapshot.last_id
        state.awaiting_first = True
        state.synced = state.ever_synced = True
        state.invalidated = False
        state.last_change = self._clock()
        buffered = list(state.buffer)
        state.buffer.clear()
        for i, update in enumerate(buffered):
            if not self._apply(state, update, live=False):
                # snapshot older than the stream, or a hole inside the buffer: keep what follows
                # the failing push (it is newer than any snapshot we could get) and fetch again
                state.buffer.extend(buffered[i:])
                state.last_id = None
                return False
        log.info(
            "venue=%s symbol=%s in sync at id %s (%d buffered pushes replayed)",
            self.venue,
            state.symbol,
            state.last_id,
            len(buffered),
        )
        state.synced_event.set()
        self._notify(state)
        return True

    def _apply_full(self, state: _Symbol, update: DepthPush) -> None:
        try:
            state.book.apply_snapshot(update.bids, update.asks, update.last_id)
        except ValueError as exc:
            log.error("venue=%s symbol=%s full push rejected by the book: %s", self.venue, state.symbol, exc)
            self._resync(state, "full push rejected")
            return
        if state.fetch_task is not None and not state.fetch_task.done():
            state.fetch_task.cancel()
            state.fetch_task = None
        state.full_resets += 1
        state.core_live = False
        state.last_id = update.last_id
        state.awaiting_first = False  # a full push has an exact id: the next must be contiguous
        state.last_change = self._clock()
        state.last_ts_ms = update.ts_ms
        if not state.book.is_valid:
            self._resync(state, "crossed full push")
            return
        state.synced = state.ever_synced = True
        state.invalidated = False
        buffered = [u for u in state.buffer if u.last_id > update.last_id]
        state.buffer.clear()
        for u in buffered:
            if not self._apply(state, u, live=True):
                return
        state.synced_event.set()
        self._notify(state)

    def _apply(self, state: _Symbol, update: DepthPush, *, live: bool) -> bool:
        """Check and apply one push to a synced book. False when the book went out of sync
        (resync scheduled when ``live``)."""
        # the ids read once: on a Rust-parsed push each read is a call into the extension
        first_id, last_id = update.first_id, update.last_id
        assert first_id is not None and state.last_id is not None
        rule = self.rule
        if state.awaiting_first:
            verdict = rule.first(state.last_id, first_id, last_id)
        else:
            verdict = rule.next(state.last_id, first_id, last_id)
        if verdict is _STALE:
            state.stale += 1
            return True
        if verdict is _GAP:
            state.gap_count += 1
            if state.awaiting_first:
                reason = f"snapshot {state.last_id} older than push {first_id}..{last_id}"
            else:
                reason = f"sequence gap: push {first_id}..{last_id} after {state.last_id}"
            if live:
                self._resync(state, reason, keep=update)
            else:
                log.info("venue=%s symbol=%s %s", self.venue, state.symbol, reason)
                self._invalidate(state, reason)
            return False
        try:
            result = rule.core_update(state.book, update, first_id, last_id)
        except ValueError as exc:
            log.error("venue=%s symbol=%s push rejected by the book: %s", self.venue, state.symbol, exc)
            result = -1
        if result != APPLIED:
            if result != CROSSED and result != -1:
                log.error(
                    "venue=%s symbol=%s core book disagrees with the %s rule (result %d)",
                    self.venue,
                    state.symbol,
                    rule.name,
                    result,
                )
            reason = "crossed book" if result == CROSSED else "push not applied"
            if live:
                self._resync(state, reason)
            else:
                self._invalidate(state, reason)
            return False
        state.last_id = last_id
        state.awaiting_first = False
        state.core_live = True
        state.applied += 1
        state.last_change = self._clock()
        state.last_ts_ms = update.ts_ms
        if live:
            self._notify(state)
        return True

    def _notify(self, state: _Symbol) -> None:
        book = state.book
        if self.on_book is not None:
            try:
                self.on_book(state.symbol, book)
            except Exception:
                log.exception("venue=%s symbol=%s on_book handler failed", self.venue, state.symbol)
        if book.pending_rows:
            # the deep rows of a big push: stored after what the handlers started (an order
            # task's first step runs first), not before it; reads are exact either way
            try:
                asyncio.get_running_loop().call_soon(book.flush)
            except RuntimeError:  # no running loop
                book.flush()


# ---- decoders for handle_ws_event ------------------------------------------------------------------


def decode_gate_depth(frame: WsFrame) -> DepthPush | None:
    """A Gate WS frame as a depth push (``*.order_book_update`` / ``*.obu``), None for other frames.

    ``*.order_book_update`` pushes come parsed in Rust (:func:`~cexarb._core.parse_gate_depth`,
    a :class:`~cexarb._core.GateDepth`); everything else, and any push that parser does not
    take, through the codec (:class:`DepthUpdate`).

    Raises:
        ValueError: (GateCodecError) a malformed frame.
    """
    data = frame.data
    push = parse_gate_depth(data)
    if push is not None:
        return push
    message = gate_codec.decode_ws_frame(data)
    if isinstance(message, gate_codec.GateOrderBookUpdate):
        return DepthUpdate.from_gate(message)
    return None


def decode_mexc_depth(frame: WsFrame) -> DepthUpdate | None:
    """A MEXC binary aggre-depth frame as a depth push; None for text frames (acks) and other
    bodies.

    Raises:
        ValueError: (MexcCodecError) a malformed frame.
    """
    data = frame.data
    if isinstance(data, str):
        return None
    push = mexc_codec.decode_push(data)
    try:
        return DepthUpdate.from_mexc(mexc_codec.depth_update_from_push(push))
    except mexc_codec.MexcCodecError:
        if "depth" in push.channel:
            raise
        return None
