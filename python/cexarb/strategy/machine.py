"""The strategy state-machine framework (spec: state-machines.md, "Base Architecture").

A strategy declares its states (an ``IntEnum`` numbered 0..n-1), its allowed transitions once
(``TRANSITIONS``), and one async handler per state. The declared transitions are compiled into
the Rust :class:`cexarb._core.TransitionTable`, which checks each transition in O(1) and keeps an
audit ring (from, to, event, ts_ns). An illegal transition raises :class:`StrategyError` naming
both states.

The driver is event-driven: the engine calls :meth:`StrategyMachine.handle` with each event the
strategy watches (book updates of its instruments, its own order updates and fills, its timers,
funding, end of data); the handler of the current state runs. Nothing sleeps or polls.
"""

from __future__ import annotations

import collections
import enum
import functools
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable, ClassVar, Generic, Mapping, TypeVar

import msgspec

from cexarb import _core
from cexarb.model import Fill, FundingEvent, Instrument, Order
from cexarb.venues.base import BookUpdate, OrderRequest, OrderUpdate, PrivateVenue, PublicVenue

if TYPE_CHECKING:
    from cexarb.clock import Clock, TimerHandle
    from cexarb.execution import OrderManager

__all__ = [
    "BookWatch",
    "EventKind",
    "StrategyContext",
    "StrategyError",
    "StrategyEvent",
    "StrategyMachine",
    "StrategyParams",
    "StrategyResult",
    "StrategyType",
    "TimerEvent",
    "EndOfData",
]

log = logging.getLogger(__name__)


class StrategyType(enum.StrEnum):
    """The strategy families the registry can create (spec: state-machines.md, "Trading Strategies")."""

    SIMPLE_ARBITRAGE = "simple_arbitrage"
    SPOT_FUTURES_HEDGING = "spot_futures_hedging"


class EventKind(enum.IntEnum):
    """Event codes stored in the transition audit ring."""

    START = 0
    BOOK = 1
    TRADE = 2
    ORDER_UPDATE = 3
    FILL = 4
    TIMER = 5
    FUNDING = 6
    END_OF_DATA = 7
    ERROR = 8
    STOP = 9


class BookWatch(enum.IntEnum):
    """What top-of-book changes wake a strategy in a given state (DESIGN: wake a strategy only
    when what it watches changes)."""

    NONE = 0  # book updates are not delivered (the state waits for orders / timers)
    PRICE = 1  # only when a best bid or best ask *price* moves (states that read mids/prices)
    TOP = 2  # any change of best bid/ask price or quantity (states that size against depth)


class TimerEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A timer set by the strategy fired."""

    name: str
    ts_ns: int


class EndOfData(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The replay has no more data (or the engine is stopping): close out."""

    ts_ns: int
    reason: str = "end_of_data"


StrategyEvent = BookUpdate | OrderUpdate | Fill | TimerEvent | FundingEvent | EndOfData

_EVENT_KIND: dict[type, EventKind] = {
    BookUpdate: EventKind.BOOK,
    OrderUpdate: EventKind.ORDER_UPDATE,
    Fill: EventKind.FILL,
    TimerEvent: EventKind.TIMER,
    FundingEvent: EventKind.FUNDING,
    EndOfData: EventKind.END_OF_DATA,
}


class StrategyError(Exception):
    """A strategy failed; ``state`` is the state it was in (name), ``cause`` the original error."""

    def __init__(self, message: str, *, state: str, cause: BaseException | None = None) -> None:
        super().__init__(f"[{state}] {message}")
        self.state = state
        self.cause = cause


class StrategyParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every strategy's parameters; validated by msgspec in :func:`registry.create`."""

    strategy_id: str = ""


class StrategyResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a strategy reports when it ends (spec: state-machines.md ``StrategyResult``).

    PnL figures are in quote currency (USDT): ``realized_pnl`` gross of fees, ``total_fees`` paid,
    ``funding`` received (negative = paid), ``net_pnl = realized + unrealized - fees + funding``.
    """

    success: bool
    strategy_id: str
    strategy_type: str
    final_state: str
    execution_time_ms: float
    state_transition_count: int
    realized_pnl: float
    unrealized_pnl: float
    total_fees: float
    funding: float
    net_pnl: float
    orders_executed: int
    fills: int
    error: str | None = None
    additional_data: dict[str, Any] = {}


class StrategyContext:
    """Everything a strategy may touch: clock, venues, instruments, order manager, timers.

    The engine builds one per strategy. Strategies read books through :meth:`book` and send
    orders through :meth:`submit` / :meth:`cancel` (which go through the order manager, risk
    checks and journal), never to a venue directly.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        public: Mapping[str, PublicVenue],
        private: Mapping[str, PrivateVenue],
        orders: OrderManager,
        funding_rates: Mapping[str, float] | None = None,
    ) -> None:
        self.clock = clock
        self.public = dict(public)
        self.private = dict(private)
        self.orders = orders
        self._instruments: dict[str, Instrument] = {}
        self._book_venue: dict[str, PublicVenue] = {}
        for venue in self.public.values():
            for key, inst in venue.instruments().items():
                self._instruments[key] = inst
                self._book_venue[key] = venue
        self.funding_rates: dict[str, float] = dict(funding_rates or {})
        self._timer_sink: Callable[[TimerEvent], None] | None = None
        self._timers: dict[str, TimerHandle] = {}
        # the TimerEvent each armed timer will deliver, by name: a queued event is delivered only
        # while it is still this one (not cancelled, not replaced since it fired)
        self._armed: dict[str, TimerEvent] = {}

    def now_ns(self) -> int:
        return self.clock.now_ns()

    def instrument(self, key: str) -> Instrument:
        """The instrument ``venue:symbol``; KeyError naming the key and the known ones."""
        try:
            return self._instruments[key]
        except KeyError:
            raise KeyError(f"unknown instrument {key!r}; known: {sorted(self._instruments)}") from None

    def book(self, key: str) -> _core.OrderBook:
        try:
            return self._book_venue[key].book(key)
        except KeyError:
            raise KeyError(f"no book for instrument {key!r}; known: {sorted(self._book_venue)}") from None

    def funding_rate(self, key: str) -> float | None:
        """Current funding rate per interval (fraction) for a perp, or None if unknown."""
        return self.funding_rates.get(key)

    def submit(self, request: OrderRequest) -> Awaitable[Order]:
        """Risk-check and send ``request`` through the order manager; await it for the Order
        record (:meth:`cexarb.execution.OrderManager.submit`, returned as is: no extra frame)."""
        return self.orders.submit(request)

    async def cancel(self, order: Order) -> bool:
        return await self.orders.cancel(order)

    def set_timer(self, name: str, ts_ns: int) -> None:
        """Deliver ``TimerEvent(name)`` to the strategy at ``ts_ns`` (replaces a timer of that name)."""
        self.cancel_timer(name)
        sink = self._timer_sink
        if sink is None:
            raise RuntimeError("timers need a running engine (context not bound)")
        event = self._armed[name] = TimerEvent(name=name, ts_ns=ts_ns)
        # a partial over an untracked event: one object for the collector, not a closure and cells
        self._timers[name] = self.clock.schedule(ts_ns, functools.partial(sink, event))

    def cancel_timer(self, name: str) -> None:
        """Cancel the timer ``name`` (nothing if none is armed). A TimerEvent it already queued
        (it fired, the strategy has not handled it yet) is not delivered."""
        self._armed.pop(name, None)
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _take_timer(self, event: TimerEvent) -> bool:
        """Whether ``event`` is still its timer's current event (then it is disarmed, delivered
        once); False for one cancelled or replaced after it fired and queued."""
        if self._armed.get(event.name) is not event:
            return False
        del self._armed[event.name]
        self._timers.pop(event.name, None)
        return True


P = TypeVar("P", bound=StrategyParams)
S = TypeVar("S", bound=enum.IntEnum)


class StrategyMachine(Generic[P]):
    """Base class of every strategy state machine.

    Subclasses set:
        strategy_type: the registry key.
        State: an ``IntEnum`` whose values are 0..n-1 (n <= 64).
        Params: the msgspec Struct of parameters.
        TRANSITIONS: ``{state: (allowed next states, ...)}``, declared once.
        INITIAL, COMPLETED, ERROR: the entry, success and failure states.
        BOOK_WATCH: optional ``{state: BookWatch}``; states not named wake on any top-of-book
            change (``BookWatch.TOP``); COMPLETED and ERROR never do.
    and implement one ``async def on_<state name lower>(self, event)`` per non-terminal state.

    Raises:
        StrategyError: from :meth:`transition` on an illegal transition, naming both states.
    """

    strategy_type: ClassVar[StrategyType]
    State: ClassVar[type[enum.IntEnum]]
    Params: ClassVar[type[StrategyParams]]
    TRANSITIONS: ClassVar[Mapping[Any, tuple[Any, ...]]]
    INITIAL: ClassVar[Any]
    COMPLETED: ClassVar[Any]
    ERROR: ClassVar[Any]
    BOOK_WATCH: ClassVar[Mapping[Any, BookWatch]] = {}
    #: entries kept in ``transition_log`` and ``markers`` (oldest dropped first)
    LOG_MAX: ClassVar[int] = 1_000_000

    def __init__(self, params: P) -> None:
        self.params = params
        self.strategy_id = params.strategy_id or f"{self.strategy_type.value}-1"
        names = [s.name for s in sorted(self.State, key=int)]
        if [int(s) for s in sorted(self.State, key=int)] != list(range(len(names))):
            raise TypeError(f"{type(self).__name__}.State values must be 0..n-1")
        allowed = {(int(a), int(b)) for a, targets in self.TRANSITIONS.items() for b in targets}
        # Every non-terminal state may fail into ERROR (spec: "-> ERROR" exits on every state).
        terminal = {int(self.COMPLETED), int(self.ERROR)}
        allowed |= {(int(s), int(self.ERROR)) for s in self.State if int(s) not in terminal}
        self._table = _core.TransitionTable(names, sorted(allowed), int(self.INITIAL))
        self._names = tuple(names)
        self._terminal = frozenset((int(self.COMPLETED), int(self.ERROR)))
        self._watch = tuple(
            int(BookWatch.NONE) if int(s) in self._terminal else int(self.BOOK_WATCH.get(s, BookWatch.TOP))
            for s in sorted(self.State, key=int)
        )
        self._handlers: dict[int, Callable[[Any], Awaitable[None]]] = {}
        for state in self.State:
            handler = getattr(self, f"on_{state.name.lower()}", None)
            if handler is not None:
                self._handlers[int(state)] = handler
            elif state not in (self.COMPLETED, self.ERROR):
                raise TypeError(f"{type(self).__name__} has no handler on_{state.name.lower()} for state {state.name}")
        self._handler_by_state = tuple(
            None if i in self._terminal else self._handlers.get(i) for i in range(len(names))
        )
        self._ctx: StrategyContext | None = None
        self._now: Callable[[], int] = self._unbound_now
        self.error: str | None = None
        self.started_ns: int | None = None
        self.ended_ns: int | None = None
        # (ts_ns, kind, text) for reports, and (ts_ns, from, to, reason) per transition: the most
        # recent LOG_MAX of each, so a long live run does not grow without bound (the Rust audit
        # ring is bounded too)
        self.markers: collections.deque[tuple[int, str, str]] = collections.deque(maxlen=self.LOG_MAX)
        self.transition_log: collections.deque[tuple[int, str, str, str]] = collections.deque(maxlen=self.LOG_MAX)
        self.on_transition: Callable[[int, str, str, str], None] | None = None

    # ---- binding and identity
    def bind(self, ctx: StrategyContext) -> None:
        self._ctx = ctx
        self._now = ctx.clock.now_ns  # read on every transition

    def _unbound_now(self) -> int:
        raise RuntimeError(f"strategy {self.strategy_id} is not bound to a context")

    @property
    def ctx(self) -> StrategyContext:
        if self._ctx is None:
            raise RuntimeError(f"strategy {self.strategy_id} is not bound to a context")
        return self._ctx

    @property
    def state(self) -> Any:
        return self.State(self._table.state)

    @property
    def is_finished(self) -> bool:
        return self._table.state in self._terminal

    def book_watch(self) -> int:
        """The :class:`BookWatch` level of the current state (the driver asks before waking)."""
        return self._watch[self._table.state]

    def warm(self) -> None:
        """Run the reads of this strategy's next decision on the current books and act on nothing.

        A hot-path warmer (:class:`cexarb.hotpath.BusyPoll`; the engine runs it with
        ``[latency] busy_poll = true``): it keeps the decision path in the CPU caches between
        events. It must not change any state, send anything or raise for a book that is not
        ready. The default does nothing.
        """

    def watched_instruments(self) -> tuple[str, ...]:
        """Instrument keys whose book updates wake this strategy; subclasses override."""
        return ()

    # ---- transitions
    def transition(self, to: Any, event: EventKind = EventKind.START, reason: str = "") -> None:
        """Move to state ``to``; checked by the Rust table and recorded in its audit ring.

        Raises:
            StrategyError: the transition is not declared in TRANSITIONS (names both states).
            RuntimeError: the machine is not bound to a context.
        """
        ts = self._now()
        try:
            previous = self._table.transition(to, event, ts)
        except _core.IllegalTransitionError as exc:
            raise StrategyError(str(exc), state=self._names[self._table.state], cause=exc) from exc
        names = self._names
        entry = (ts, names[previous], names[to], reason)
        self.transition_log.append(entry)
        if self.on_transition is not None:
            self.on_transition(*entry)

    def transition_path(self, path: tuple[Any, ...], event: EventKind, reasons: tuple[str, ...]) -> None:
        """Move through the states of ``path`` in order, all or nothing, in one call to the Rust
        table (each step checked, audited and logged as by :meth:`transition`, same timestamp).

        For a strategy that decides several steps at once on one event (e.g. detected ->
        validating -> executing on the same book message). A strategy on a latency-critical
        path may split it: :meth:`advance` (the table only) before it sends an order, and
        :meth:`record_path` (the Python log and ``on_transition``) once the order is out.

        Raises:
            StrategyError: a step is not declared (names both states); no step is made.
            ValueError: ``reasons`` does not give one reason per step.
        """
        if len(reasons) != len(path):
            raise ValueError(f"transition_path needs one reason per step: {len(path)} steps, {len(reasons)} reasons")
        previous, ts = self.advance(path, event)
        self.record_path(previous, path, reasons, ts)

    def advance(self, path: tuple[int, ...], event: int) -> tuple[int, int]:
        """The table part of :meth:`transition_path`: all steps checked and audited in Rust.

        Returns:
            ``(state before the path, ts_ns of the steps)`` for :meth:`record_path`.

        Raises:
            StrategyError: a step is not declared (names both states); no step is made.
        """
        ts = self._now()
        try:
            return self._table.transition_path(path, event, ts), ts
        except _core.IllegalTransitionError as exc:
            raise StrategyError(str(exc), state=self._names[self._table.state], cause=exc) from exc

    def record_path(self, previous: int, path: tuple[Any, ...], reasons: tuple[str, ...], ts: int) -> None:
        """The log part of :meth:`transition_path`: one ``transition_log`` entry per step (and
        ``on_transition``), for steps :meth:`advance` made at ``ts``."""
        names, log_, notify = self._names, self.transition_log, self.on_transition
        for to, reason in zip(path, reasons, strict=True):
            entry = (ts, names[previous], names[to], reason)
            log_.append(entry)
            if notify is not None:
                notify(*entry)
            previous = to

    def fail(self, message: str, event: EventKind = EventKind.ERROR, cause: BaseException | None = None) -> None:
        """Record the error and move to ERROR (always allowed from a non-terminal state)."""
        self.error = message
        self.markers.append((self.ctx.now_ns(), "error", message))
        if not self.is_finished:
            self.transition(self.ERROR, event, message)

    def audit(self) -> list[tuple[int, int, int, int]]:
        """The transition audit ring: (from, to, event, ts_ns), oldest first."""
        return self._table.audit()

    def transition_counts(self) -> dict[str, int]:
        """How many times each state was entered."""
        counts = self._table.counts()
        return {self.State(i).name: c for i, c in enumerate(counts)}

    @property
    def transition_count(self) -> int:
        return self._table.total_transitions

    # ---- driving
    async def start(self) -> None:
        """Called once by the engine before any event (subclasses bind and validate here)."""
        self.started_ns = self.ctx.now_ns()

    async def begin(self) -> None:
        """What the engine calls: :meth:`start`, with a failure recorded as ERROR (not raised)."""
        try:
            await self.start()
        except Exception as exc:
            log.error("%s: start failed: %s", self.strategy_id, exc)
            if self.started_ns is None:
                self.started_ns = self.ctx.now_ns()
            self.fail(f"{type(exc).__name__}: {exc}", EventKind.START, exc)

    async def handle(self, event: StrategyEvent) -> None:
        """Run the current state's handler for ``event``.

        An exception from a handler moves the machine to ERROR with the error recorded; it is
        re-raised as :class:`StrategyError` only if it is one already (illegal transition).
        """
        if event.__class__ is TimerEvent and not self.ctx._take_timer(event):
            return  # cancelled or replaced after it fired and was queued: stale
        handler = self._handler_by_state[self._table.state]
        if handler is None:  # COMPLETED / ERROR
            return
        try:
            await handler(event)
        except StrategyError as exc:
            self.error = str(exc)
            raise
        except Exception as exc:  # a strategy bug or venue failure must not kill the engine
            log.exception("%s: handler for %s failed", self.strategy_id, self.state.name)
            self.fail(f"{type(exc).__name__}: {exc}", _EVENT_KIND.get(type(event), EventKind.ERROR), exc)
        if self.ended_ns is None and self._table.state in self._terminal:
            self.ended_ns = self.ctx.now_ns()

    def result(self) -> StrategyResult:
        """Summary of the run so far; subclasses add ``additional_data`` via :meth:`extra_result`."""
        om = self.ctx.orders
        realized, unrealized, fees, funding = om.pnl_components(self.ctx)
        end = self.ended_ns if self.ended_ns is not None else self.ctx.now_ns()
        start = self.started_ns if self.started_ns is not None else end
        return StrategyResult(
            success=self._table.state == int(self.COMPLETED),
            strategy_id=self.strategy_id,
            strategy_type=self.strategy_type.value,
            final_state=self.state.name,
            execution_time_ms=(end - start) / 1e6,
            state_transition_count=self._table.total_transitions,
            realized_pnl=realized,
            unrealized_pnl=unrealized,
            total_fees=fees,
            funding=funding,
            net_pnl=realized + unrealized - fees + funding,
            orders_executed=om.n_orders,
            fills=om.n_fills,
            error=self.error,
            additional_data=self.extra_result(),
        )

    def extra_result(self) -> dict[str, Any]:
        return {}

