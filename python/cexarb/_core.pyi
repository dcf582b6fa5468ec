"""Typed stubs for ``cexarb._core``, the Rust extension (PyO3).

Units everywhere: prices in quote currency per base unit (per contract for inverse perps),
quantities in base units or contracts, fees and rates as fractions (0.001 = 10 bps), spreads
and basis in basis points, timestamps in nanoseconds since the Unix epoch.
"""

from typing import Final, Literal, Sequence, final

import numpy as np
import numpy.typing as npt

Side = Literal["buy", "sell"]
Levels = npt.NDArray[np.float64] | Sequence[tuple[float, float]] | Sequence[Sequence[float]]

class CexarbError(ValueError):
    """Base class of every error raised by the core (bad input, sequence, transition)."""

class BookInputError(CexarbError):
    """Bad book input (NaN/inf, negative qty, off-grid price, bad shape); the book is unchanged."""

class SequenceGapError(CexarbError):
    """Raised by :meth:`OrderBook.require_valid` when the book is invalid after a sequence gap."""

class IllegalTransitionError(CexarbError):
    """A state transition that the table does not allow; the message names both states."""

class PricingError(CexarbError):
    """Bad input to a pricing/hedge function (non-finite, non-positive where positive needed)."""

# Result codes of OrderBook.apply_update / apply_delta
APPLIED: Final[int]  # 0: the update was applied
STALE: Final[int]  # 1: ended before the book's id; ignored
GAP: Final[int]  # 2: sequence gap; book now invalid until the next snapshot
NOT_SYNCED: Final[int]  # 3: book has no snapshot yet or is invalid; update ignored
CROSSED: Final[int]  # 4: applied, but the book is now crossed (bid >= ask) and marked invalid

@final
class Execution:
    """Result of walking one side of the book for a quantity (frozen)."""

    avg_price: float | None  # None when nothing could be filled
    filled_qty: float
    notional: float  # sum(price * qty) over the levels walked, quote currency
    worst_price: float | None  # last (worst) level touched
    complete: bool  # True when the book held the whole qty
    levels: int  # number of levels touched
    slippage_bps: float | None  # (avg - best) / best * 1e4, signed so that worse is positive

@final
class L2Delta:
    """One exchange depth message, built in advance (replay/benchmarks), applied with apply_delta."""

    def __init__(
        self,
        bids: Levels,
        asks: Levels,
        first_update_id: int,
        last_update_id: int,
        prev_update_id: int | None = None,
        is_snapshot: bool = False,
    ) -> None: ...
    @property
    def n_levels(self) -> int: ...
    @property
    def first_update_id(self) -> int: ...
    @property
    def last_update_id(self) -> int: ...
    @property
    def prev_update_id(self) -> int | None: ...
    @property
    def is_snapshot(self) -> bool: ...

@final
class OrderBook:
    """L2 price-level order book; levels keyed by integer ticks (round(price / tick_size)).

    Sequence rules (Binance "How to manage a local order book correctly"): the rules used are
    chosen per update by whether ``prev_update_id`` is given (futures ``pu``) or not (spot).
    """

    def __init__(self, tick_size: float, lot_size: float) -> None: ...
    def apply_snapshot(self, bids: Levels, asks: Levels, update_id: int) -> None: ...
    def apply_update(
        self,
        bids: Levels,
        asks: Levels,
        first_update_id: int,
        last_update_id: int,
        prev_update_id: int | None = None,
    ) -> int: ...
    def apply_delta(self, delta: L2Delta) -> int: ...
    def apply_push(
        self,
        push: GateDepth | object,  # or any object with ``bids`` / ``asks`` levels
        first_update_id: int,
        last_update_id: int,
        prev_update_id: int | None = None,
    ) -> int:
        """apply_update with the levels of ``push``: a :class:`GateDepth` hands them over natively
        (no Python list per level), any other object as its ``bids`` / ``asks``. Same codes and
        errors as apply_update."""
    def flush(self) -> int: ...
    @property
    def pending_rows(self) -> int: ...
    def best_bid(self) -> tuple[float, float] | None: ...
    def best_ask(self) -> tuple[float, float] | None: ...
    def bbo(self) -> tuple[float | None, float | None, float | None, float | None]:
        """``(bid_price, bid_qty, ask_price, ask_qty)`` in one call; None for a side with no level."""
        ...
    def best_bid_ticks(self) -> int | None: ...
    def best_ask_ticks(self) -> int | None: ...
    def mid(self) -> float | None: ...
    def spread_bps(self) -> float | None: ...
    def depth(self, n: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
    def executable_price(self, side: Side, qty: float) -> Execution: ...
    def qty_within(self, side: Side, price_limit: float) -> float: ...
    def qty_at(self, side: Literal["bid", "ask"], price: float) -> float: ...
    def require_valid(self) -> None: ...
    def price_to_ticks(self, price: float) -> int: ...
    def ticks_to_price(self, ticks: int) -> float: ...
    @property
    def tick_size(self) -> float: ...
    @property
    def lot_size(self) -> float: ...
    @property
    def is_valid(self) -> bool: ...
    @property
    def is_crossed(self) -> bool: ...
    @property
    def invalid_reason(self) -> str | None: ...
    @property
    def last_update_id(self) -> int | None: ...
    @property
    def n_bids(self) -> int: ...
    @property
    def n_asks(self) -> int: ...
    @property
    def gap_count(self) -> int: ...
    @property
    def version(self) -> int: ...  # +1 per applied snapshot or update
    @property
    def bbo_changed(self) -> bool: ...
    @property
    def bbo_price_changed(self) -> bool: ...

def replay_deltas(book: OrderBook, deltas: Sequence[L2Delta]) -> tuple[int, int, int]:
    """Apply each delta in a native Rust loop (GIL released), reading best bid/ask after each.

    Returns (applied, stale, gaps); CROSSED counts as applied, NOT_SYNCED in none. Raises
    BookInputError at the first bad delta (earlier deltas stay applied).
    """

@final
class ReplayCursor:
    """The replay driver's fast path (:mod:`cexarb.backtest`): depth messages merged in time
    order, applied to their books in a Rust loop while nothing in Python needs to run.

    Args: ``books`` (one per stream), ``deltas`` (the messages in merged order), ``src`` (each
    message's stream index), ``ts_ns`` (each message's time, ns), ``watched`` (per stream: may its
    BBO changes wake the strategy). Raises ValueError on mismatched lengths, a stream index out of
    range or a non-L2Delta item, naming the argument and index.
    """

    def __init__(
        self, books: list[OrderBook], deltas: list[L2Delta], src: list[int], ts_ns: list[int], watched: list[bool]
    ) -> None: ...
    def __len__(self) -> int: ...
    def advance(self, j: int, j_end: int, stop_ns: int, watch: int) -> tuple[int, int]:
        """Apply messages ``j, j+1, ...`` until Python must handle one; returns ``(k, code)``.

        ``code`` -1: message ``k`` was not applied (its time >= ``stop_ns``, ``k == j_end``, or
        past the last message); ``j..k`` were applied and woke nothing. ``code`` >= 0: message
        ``k`` was applied with that apply code and is not APPLIED, or woke the strategy on a
        watched stream (``watch``: the BookWatch now, 0 NONE, 1 PRICE: a best price moved, 2 TOP:
        any BBO change). Raises BookInputError on invalid input (that book unchanged, earlier
        messages stay applied), RuntimeError when a book is borrowed elsewhere.
        """

@final
class GateDepth:
    """A Gate ``spot.order_book_update`` / ``futures.order_book_update`` push parsed in Rust
    (frozen). Reads like the codec's ``GateOrderBookUpdate``; ``bids`` / ``asks`` build new lists
    of ``(price, qty)`` (prices quote per base unit; qty base units or contracts; 0 deletes)."""

    @property
    def channel(self) -> str: ...
    @property
    def symbol(self) -> str: ...
    @property
    def ts_ms(self) -> int:
        """``t``, epoch milliseconds."""
    @property
    def first_id(self) -> int:
        """``U``."""
    @property
    def last_id(self) -> int:
        """``u``."""
    @property
    def full(self) -> bool: ...
    @property
    def depth(self) -> int:
        """``l`` (0 when absent)."""
    @property
    def bids(self) -> list[tuple[float, float]]: ...
    @property
    def asks(self) -> list[tuple[float, float]]: ...
    @property
    def n_levels(self) -> int: ...

def gate_spot_limit_body(
    symbol: str, side: str, amount: str, price: str, time_in_force: str, client_order_id: str
) -> bytes | None:
    """Compact JSON ``POST /spot/orders`` body of a Gate spot limit order (the codec's
    ``GateSpotOrderBody`` bytes; Gate API v4 "Create an order"): ``amount`` base units and
    ``price`` quote as exact decimal strings, ``side`` buy / sell, ``time_in_force`` gtc / ioc /
    post_only (Gate poc), ``text`` = ``"t-" + client_order_id``. None when a field needs escaping
    or a check (symbol outside ``[0-9A-Za-z_]{1,64}``, decimals outside ``[0-9.]+``, client order
    id not 1-28 of ``[0-9A-Za-z_.-]``, unknown side / time in force)."""

def parse_gate_depth(data: bytes | str) -> GateDepth | None:
    """The frame as a :class:`GateDepth` when it is a ``*.order_book_update`` push of the subset
    the Rust parser takes (plain JSON numbers / decimal strings, non-negative; see
    ``rust/src/gate.rs``); None for any other frame or push -- decode those with
    ``cexarb.venues.gateio.codec.decode_ws_frame``, which names what is wrong with a bad one.
    Raises TypeError when ``data`` is neither bytes nor str."""

# ---- pricing ----
def entry_spread_bps(
    buy_book: OrderBook, sell_book: OrderBook, qty: float, buy_taker_fee: float, sell_taker_fee: float
) -> float | None:
    """Entry spread, bps, of buying ``qty`` (base units) on ``buy_book`` at its executable average
    ask and selling on ``sell_book`` at its average bid, net of taker fees (fractions):
    ``(sell_avg * (1 - sell_fee) - buy_avg * (1 + buy_fee)) / buy_avg * 1e4``. None when a book is
    invalid or too shallow. PricingError: ``qty`` not finite and > 0, a fee not finite."""
def exit_spread_bps(
    long_book: OrderBook, short_book: OrderBook, qty: float, long_taker_fee: float, short_taker_fee: float
) -> float | None:
    """Exit spread, bps, of selling ``qty`` on ``long_book`` at its average bid and buying it back
    on ``short_book`` at its average ask, net of taker fees:
    ``(long_sell_avg * (1 - long_fee) - short_buy_avg * (1 + short_fee)) / short_buy_avg * 1e4``.
    None when a book is invalid or too shallow. PricingError as :func:`entry_spread_bps`."""
def basis_bps(perp_price: float, spot_price: float) -> float:
    """Basis of the perp over spot, bps: ``(perp_price - spot_price) / spot_price * 1e4`` (prices
    quote per base unit). PricingError: a price not finite and > 0."""
def annualized_funding_rate(rate_per_interval: float, interval_hours: float) -> float:
    """Simple (not compounded) annualised funding: ``rate_per_interval * 24 * 365 /
    interval_hours``, as a fraction per year. Binance USD-M perpetuals settle funding every 8
    hours by default (Binance "Introduction to Binance Futures Funding Rates"; the interval is
    per symbol, ``fundingIntervalHours`` of ``GET /fapi/v1/fundingInfo``). PricingError: rate not
    finite, interval not finite and > 0."""
def expected_funding_pnl(perp_qty: float, mark_price: float, funding_rate: float, n_intervals: float) -> float:
    """Funding PnL, quote currency: ``-perp_qty * mark_price * funding_rate * n_intervals`` (perp
    qty signed base units; positive funding: longs pay shorts). PricingError: not finite."""
def ticks_to_decimal_str(ticks: int, tick_size: float) -> str: ...
def best_cross(
    a: OrderBook, b: OrderBook, qty: float, a_taker_fee: float, b_taker_fee: float
) -> tuple[bool, float, float, float, float, float, int, int] | None: ...
def order_wire(
    qty_lots: int, lot_size: float, price_ticks: int | None, tick_size: float
) -> tuple[str, str | None, float, float | None]: ...
def order_fields(
    instrument: object, qty: float, price: float | None, price_ticks: int | None, limit_required: bool
) -> tuple[int, int | None, str, str | None, float, float | None]:
    """``OrderRequest.create``'s checks and formatting in one call: ``(qty_lots, price_ticks,
    wire_qty, wire_price, qty, price)``. ``instrument``: anything with ``lot_size`` / ``tick_size``;
    ``qty`` base units (contracts) on the lot grid, ``price`` quote on the tick grid (within 1e-6
    step + 1e-12 relative) and at least one tick, or ``price_ticks`` whole ticks (an ``int`` or
    ``__index__`` object, >= 1; a float is a ValueError, never truncated), not both; neither:
    market (None price fields), a ValueError when ``limit_required``. ValueError messages name
    the field and the value given; PricingError for a bad tick/lot size (``lot_size`` /
    ``tick_size`` not finite and > 0, named)."""
@final
class ArbEntry:
    """SIMPLE_ARBITRAGE entry scan of two books in one call: sizing at book a's mid (the coarser
    lot), both directions walked net of taker fees, and at/above ``threshold_bps`` the buy leg's
    IOC limit ``ceil(best_ask_ticks * (1 + slippage_tolerance) - 1e-9)`` as exact strings;
    ``slippage_tolerance`` a fraction within [0, 1) (PricingError otherwise, naming it).

    ``scan()`` -> None (a book invalid/empty, neither direction fills) or ``(buy_on_a, spread_bps,
    qty, buy_slippage_bps, sell_slippage_bps, buy_best_ticks, order)`` with ``order`` None below
    the threshold, else ``(qty_lots, limit_ticks, wire_qty, wire_price, qty, price)``.
    Raises PricingError: size below the min notional, or off the buy instrument's lot grid;
    RuntimeError when a book is being mutated (``replay_deltas`` on another thread).
    """

    def __init__(
        self,
        a: OrderBook,
        b: OrderBook,
        notional: float,
        min_notional: float,
        threshold_bps: float,
        slippage_tolerance: float,
        a_tick_size: float,
        a_lot_size: float,
        a_taker_fee: float,
        b_tick_size: float,
        b_lot_size: float,
        b_taker_fee: float,
    ) -> None: ...
    def scan(
        self,
    ) -> tuple[bool, float, float, float, float, int, tuple[int, int, str, str, float, float] | None] | None: ...

# ---- signing ----
@final
class PrefixedHmacSha512:
    """HMAC-SHA512 (RFC 2104) with ``key`` and a fixed ``prefix`` absorbed once; never prints them."""

    def __init__(self, key: bytes, prefix: bytes) -> None: ...
    def hexdigest(self, tail: bytes) -> bytes:
        """Lower-case hex HMAC of ``prefix + tail``."""
    def gate_rest_lines(self, body: bytes, timestamp: bytes, key_line: bytes, extra: bytes) -> bytes:
        """Gate.io v4 REST header lines (KEY line, Timestamp, SIGN, Content-Type, ``extra``) for a
        request whose ``METHOD\\npath\\nquery\\n`` is the prefix."""

# ---- risk ----
@final
class PreTradeRisk:
    """Pre-trade limits (0 = off): notionals in quote currency, price band in bps of the mid."""

    def __init__(
        self, max_order_notional: float, max_position_notional: float, price_band_bps: float, max_open_orders: int
    ) -> None: ...
    def check(
        self,
        book: OrderBook,
        side_sign: float,
        qty: float,
        price: float | None,
        position_qty: float,
        open_orders: int,
        contract_size: float,
        inverse: bool,
    ) -> tuple[str, float, float] | None:
        """None, or the first breach ``(code, value, limit)``: book_invalid, no_mid,
        order_notional, position_notional, price_band (bps through the mid), open_orders.
        Raises PricingError naming the field for a malformed order (fails closed): ``qty``,
        ``contract_size`` or ``price`` not finite and > 0, ``side_sign`` not +1 / -1,
        ``position_qty`` not finite."""
def decimals_for_step(step: float) -> int: ...

# ---- hedge ----
def hedge_ratio(spot_qty: float, spot_price: float, perp_qty: float, perp_price: float) -> float | None:
    """Signed hedge ratio ``-(perp_qty * perp_price) / (spot_qty * spot_price)``: hedge notional
    over hedged notional, quantities signed in base units (a short is negative), prices quote
    per base unit. A short perp against long spot at equal notionals gives ``+1.0``; a perp leg
    on the same side as the spot (the wrong side: delta doubled) gives a negative ratio, so its
    drift from a target of 1 is about 2. None when the spot notional is 0. Raises PricingError
    for a non-finite input or ratio."""
def delta_base(spot_qty: float, perp_qty: float) -> float:
    """Net delta ``spot_qty + perp_qty``, signed base units. PricingError: an input not finite."""
def delta_quote(spot_qty: float, perp_qty: float, price: float) -> float:
    """Net delta in quote currency ``(spot_qty + perp_qty) * price``. PricingError: not finite."""
def hedge_drift(current_ratio: float, target_ratio: float) -> float:
    """``|current_ratio - target_ratio|`` (ratios as :func:`hedge_ratio`). PricingError: not finite."""
def rebalance_qty(delta_base: float, lot_size: float, min_notional: float, price: float) -> float:
    """Signed order qty (base units) removing ``delta_base``, rounded toward zero to whole lots
    (never overshoots); 0.0 when ``|qty| * price`` (quote) is below ``min_notional``. PricingError:
    ``delta_base`` not finite, ``lot_size`` / ``price`` not finite and > 0, ``min_notional`` < 0."""

@final
class EwmaVolatility:
    """EWMA volatility of log returns (J.P. Morgan/Reuters, RiskMetrics Technical Document, 4th
    ed. 1996, section 5.2.1): ``var = lam * var + (1 - lam) * r**2``, ``r = ln(p / p_prev)``,
    ``lam = 0.5 ** (1 / halflife)``; the value ``sqrt(var)`` is a fraction per update."""

    def __init__(self, halflife: float) -> None:
        """``halflife`` in updates; PricingError when not finite and > 0."""
    def update(self, price: float) -> float | None:
        """Adds a price (quote, finite and > 0, else PricingError with the state unchanged);
        returns the volatility, None before 2 prices."""
    @property
    def value(self) -> float | None: ...
    @property
    def count(self) -> int: ...  # prices seen

@final
class RollingOls:
    """Ordinary least squares ``y = alpha + beta * x`` over the last ``window`` points:
    ``beta = cov(x, y) / var(x)``, ``alpha = mean(y) - beta * mean(x)``, from running sums of
    deviations from a shift re-chosen at each recompute (stable at price levels such as
    60000 +- 0.01, where raw sums cancel)."""

    def __init__(self, window: int) -> None:
        """``window`` points, 2 ..= 2**24; PricingError (a ValueError) naming it otherwise."""
    def update(self, x: float, y: float) -> float | None:
        """Adds a point; returns beta, None with < 2 points or ``var(x) == 0`` (up to float
        noise). PricingError (state unchanged): ``x`` / ``y`` or a running sum not finite."""
    @property
    def beta(self) -> float | None: ...
    @property
    def alpha(self) -> float | None: ...
    @property
    def count(self) -> int: ...  # points in the window (at most window)

# ---- state machines ----
@final
class TransitionTable:
    def __init__(
        self, state_names: Sequence[str], allowed: Sequence[tuple[int, int]], initial: int, audit_capacity: int = 4096
    ) -> None: ...
    def is_allowed(self, from_state: int, to_state: int) -> bool: ...
    def transition(self, to_state: int, event: int, ts_ns: int) -> int: ...
    def transition_path(self, path: Sequence[int], event: int, ts_ns: int) -> int:
        """All-or-nothing walk along ``path``; returns the state before it."""
    def audit(self) -> list[tuple[int, int, int, int]]: ...
    def counts(self) -> list[int]: ...
    def reset(self, state: int) -> None: ...  # no transition check; audit and counts are kept
    @property
    def state(self) -> int: ...
    @property
    def n_states(self) -> int: ...
    @property
    def total_transitions(self) -> int: ...
    def state_name(self, state: int) -> str: ...

# ---- memory (rust/src/arena.rs; used through cexarb.memory) ----
def _arena_cache_install(prev_ctx: int, prev_alloc: int, prev_free: int, max_cached_bytes: int) -> tuple[int, int, int]: ...
def _arena_cache_top_up(target_bytes: int, max_pages: int) -> int: ...
def _arena_cache_stats() -> dict[str, int] | None: ...
