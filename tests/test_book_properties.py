"""Laws of the Rust core, checked with hypothesis on small hand-built books.

* snapshot + deltas equals the snapshot of the final state (STYLE §4);
* best bid < best ask unless the book says it is crossed (and the reference book agrees on every
  outcome code);
* ticks -> ``ticks_to_decimal_str`` -> Decimal -> ticks round-trips exactly;
* bad input (NaN, inf, negative qty, off-grid or non-positive price, wrong array shape) raises
  ``BookInputError`` (a ValueError) and leaves the book exactly as it was, also on a book that is
  not synced (no snapshot, after a gap, crossed), with ``first_update_id > last_update_id`` too;
* ``executable_price`` equals a plain-Python walk of the levels;
* ``rebalance_qty`` never overshoots: whole lots, opposite sign, ``|result| <= |delta|``.
"""

from __future__ import annotations

import math
from decimal import Decimal
from types import SimpleNamespace

import numpy as np
import pytest
import reference_book as ref
from cexarb import _core
from cexarb._core import (
    APPLIED,
    CROSSED,
    GAP,
    NOT_SYNCED,
    STALE,
    BookInputError,
    CexarbError,
    OrderBook,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CODES = {ref.APPLIED: APPLIED, ref.STALE: STALE, ref.GAP: GAP, ref.NOT_SYNCED: NOT_SYNCED, ref.CROSSED: CROSSED}
TICKS = ["0.01", "0.1", "0.5", "1", "0.00001", "0.25"]
LOTS = ["0.001", "0.00001", "1", "0.1", "0.01", "0.5"]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def dec_float(units: int, step: str) -> float:
    """Nearest float to the exact decimal ``units * step`` (what an exchange string parses to)."""
    return float(Decimal(units) * Decimal(step))


def levels_array(side: dict[int, int], tick: str, lot: str) -> np.ndarray:
    rows = [(dec_float(t, tick), dec_float(q, lot)) for t, q in side.items()]
    return np.array(rows, dtype=np.float64).reshape(-1, 2)


def side_strategy(lo: int, hi: int, max_size: int = 12, zero_ok: bool = False):
    qty = st.integers(min_value=0 if zero_ok else 1, max_value=5_000)
    return st.dictionaries(st.integers(min_value=lo, max_value=hi), qty, max_size=max_size)


def full_state(book: OrderBook) -> tuple:
    bids, asks = book.depth(1_000_000)
    return (
        bids.tobytes(),
        asks.tobytes(),
        book.last_update_id,
        book.version,
        book.is_valid,
        book.is_crossed,
        book.gap_count,
        book.n_bids,
        book.n_asks,
        book.best_bid(),
        book.best_ask(),
    )


def model_depth(side: dict[int, int], tick: str, lot: str, bids: bool) -> list[tuple[int, float]]:
    keys = sorted((t for t, q in side.items() if q > 0), reverse=bids)
    return [(t, dec_float(side[t], lot)) for t in keys]


def book_depth(levels: np.ndarray, tick: str) -> list[tuple[int, float]]:
    return [(round(p / float(tick)), q) for p, q in levels.tolist()]


# ---- snapshot + deltas == final snapshot ---------------------------------------------------------


batch = st.tuples(side_strategy(900, 1_049, 6, zero_ok=True), side_strategy(1_051, 1_200, 6, zero_ok=True))


@SETTINGS
@given(
    tick=st.sampled_from(TICKS),
    lot=st.sampled_from(LOTS),
    bids=side_strategy(900, 1_049),
    asks=side_strategy(1_051, 1_200),
    batches=st.lists(batch, max_size=15),
    futures=st.booleans(),
)
def test_snapshot_plus_deltas_equals_final_snapshot(tick, lot, bids, asks, batches, futures) -> None:
    book = OrderBook(float(tick), float(lot))
    book.apply_snapshot(levels_array(bids, tick, lot), levels_array(asks, tick, lot), 100)
    model_bids, model_asks = dict(bids), dict(asks)
    last = 100
    for i, (b, a) in enumerate(batches):
        first, u = last + 1, last + 1 + i % 3
        if futures:  # first futures event must straddle the snapshot id: U <= L <= u
            first = last if i == 0 else last + 1
        code = book.apply_update(
            levels_array(b, tick, lot), levels_array(a, tick, lot), first, u, last if futures else None
        )
        assert code == APPLIED
        model_bids.update(b)
        model_asks.update(a)
        last = u
    final = OrderBook(float(tick), float(lot))
    final.apply_snapshot(
        levels_array({t: q for t, q in model_bids.items() if q}, tick, lot),
        levels_array({t: q for t, q in model_asks.items() if q}, tick, lot),
        last,
    )
    for x, y in zip(book.depth(10_000), final.depth(10_000), strict=True):
        assert np.array_equal(x, y)
    got_bids, got_asks = book.depth(10_000)
    assert book_depth(got_bids, tick) == model_depth(model_bids, tick, lot, bids=True)
    assert book_depth(got_asks, tick) == model_depth(model_asks, tick, lot, bids=False)
    assert book.last_update_id == final.last_update_id == last
    assert (book.n_bids, book.n_asks) == (final.n_bids, final.n_asks)
    assert book.is_valid and final.is_valid


# ---- bid < ask unless crossed; codes agree with the reference book -----------------------------------


@SETTINGS
@given(
    bids=side_strategy(1_000, 1_010, 5),
    asks=side_strategy(1_008, 1_020, 5),
    batches=st.lists(
        st.tuples(
            side_strategy(995, 1_015, 4, zero_ok=True),
            side_strategy(1_005, 1_025, 4, zero_ok=True),
            st.sampled_from(["next", "next", "next", "stale", "gap"]),
        ),
        max_size=12,
    ),
)
def test_bid_below_ask_unless_crossed(bids, asks, batches) -> None:
    tick, lot = "0.5", "0.001"
    book = OrderBook(float(tick), float(lot))
    reference = ref.ReferenceBook()
    to_text = lambda side: [(str(Decimal(t) * Decimal(tick)), str(Decimal(q) * Decimal(lot))) for t, q in side.items()]  # noqa: E731
    book.apply_snapshot(levels_array(bids, tick, lot), levels_array(asks, tick, lot), 10)
    reference.snapshot(to_text(bids), to_text(asks), 10)
    last = 10
    for b, a, kind in batches:
        first, u = {"next": (last + 1, last + 2), "stale": (last - 1, last), "gap": (last + 3, last + 4)}[kind]
        code = book.apply_update(levels_array(b, tick, lot), levels_array(a, tick, lot), first, u)
        expected = reference.update(to_text(b), to_text(a), first, u)
        assert code == CODES[expected], (kind, code, expected)
        if code in (APPLIED, CROSSED):
            last = u
        bb, ba = book.best_bid(), book.best_ask()
        assert book.bbo() == (*(bb or (None, None)), *(ba or (None, None)))
        if book.is_crossed:
            assert not book.is_valid and bb is not None and ba is not None and bb[0] >= ba[0]
            assert reference.crossed
        elif bb is not None and ba is not None:
            assert bb[0] < ba[0]
        assert book.is_valid == reference.valid
        assert book.gap_count == reference.gap_count


def test_crossed_snapshot_is_flagged() -> None:
    book = OrderBook(0.5, 0.001)
    book.apply_snapshot([(10.0, 1.0)], [(9.5, 1.0)], 5)
    assert book.is_crossed and not book.is_valid and book.invalid_reason
    book.apply_snapshot([(9.0, 1.0)], [(9.5, 1.0)], 6)
    assert not book.is_crossed and book.is_valid


# ---- ticks <-> decimal strings -------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(ticks=st.integers(min_value=-(10**12), max_value=10**12), tick=st.sampled_from([*TICKS, "5", "10", "0.001", "0.00000001"]))
def test_ticks_decimal_string_round_trip(ticks: int, tick: str) -> None:
    text = _core.ticks_to_decimal_str(ticks, float(tick))
    value = Decimal(text)
    assert value == ticks * Decimal(tick), (ticks, tick, text)
    assert value / Decimal(tick) == ticks
    assert "e" not in text.lower()
    if ticks > 0 and value < 10**9:
        book = OrderBook(float(tick), 1.0)
        assert book.price_to_ticks(float(text)) == ticks


@pytest.mark.parametrize(("step", "decimals"), [("0.01", 2), ("0.1", 1), ("1", 0), ("0.00001", 5), ("0.5", 1), ("0.25", 2)])
def test_decimals_for_step(step: str, decimals: int) -> None:
    assert _core.decimals_for_step(float(step)) == decimals


# ---- bad input leaves the book unchanged ----------------------------------------------------------------

BAD_LEVELS = {
    "nan_price": (math.nan, 1.0),
    "inf_price": (math.inf, 1.0),
    "neg_inf_price": (-math.inf, 1.0),
    "nan_qty": (100.0, math.nan),
    "inf_qty": (100.0, math.inf),
    "negative_qty": (100.0, -0.5),
    "off_grid_price": (100.3, 1.0),
    "zero_price": (0.0, 1.0),
    "negative_price": (-100.0, 1.0),
}
BAD_SHAPES = {
    "three_columns": np.ones((2, 3)),
    "one_dim": np.array([100.0, 1.0]),
    "three_dim": np.ones((1, 2, 2)),
}


def _good_book(bids: dict[int, int], asks: dict[int, int]) -> OrderBook:
    book = OrderBook(0.5, 0.001)
    book.apply_snapshot(levels_array(bids, "0.5", "0.001"), levels_array(asks, "0.5", "0.001"), 50)
    assert book.apply_update(np.empty((0, 2)), [(dec_float(1_300, "0.5"), 1.0)], 51, 51) == APPLIED
    return book


@SETTINGS
@given(
    bids=side_strategy(100, 199, 8),
    asks=side_strategy(201, 300, 8),
    good=side_strategy(150, 199, 6, zero_ok=True),
    bad=st.sampled_from(sorted(BAD_LEVELS)),
    position=st.integers(min_value=0, max_value=6),
    on_bids=st.booleans(),
    via=st.sampled_from(["update", "snapshot", "delta"]),
)
def test_bad_level_raises_and_changes_nothing(bids, asks, good, bad, position, on_bids, via) -> None:
    book = _good_book(bids, asks)
    before = full_state(book)
    rows = levels_array(good, "0.5", "0.001").tolist()
    rows.insert(min(position, len(rows)), list(BAD_LEVELS[bad]))
    bad_side = np.array(rows, dtype=np.float64)
    other = levels_array({}, "0.5", "0.001")
    b, a = (bad_side, other) if on_bids else (other, bad_side)
    with pytest.raises(BookInputError) as info:
        if via == "update":
            book.apply_update(b, a, 52, 53)
        elif via == "snapshot":
            book.apply_snapshot(b, a, 60)
        else:
            book.apply_delta(_core.L2Delta(b, a, 52, 53))  # raises at construction or at apply
    assert isinstance(info.value, ValueError) and isinstance(info.value, CexarbError)
    assert full_state(book) == before
    # still usable: the next good update applies
    assert book.apply_update(levels_array(good, "0.5", "0.001"), other, 52, 53) == APPLIED


def _unsynced_book(kind: str, bids: dict[int, int], asks: dict[int, int]) -> OrderBook:
    """A book that ignores updates (NOT_SYNCED): no snapshot yet, after a gap, or crossed."""
    if kind == "no_snapshot":
        return OrderBook(0.5, 0.001)
    book = _good_book(bids, asks)
    if kind == "gap":
        assert book.apply_update(np.empty((0, 2)), np.empty((0, 2)), 60, 61) == GAP
    else:
        assert book.apply_update([(dec_float(1_300, "0.5"), 1.0)], np.empty((0, 2)), 52, 52) == CROSSED
    assert not book.is_valid
    return book


@SETTINGS
@given(
    kind=st.sampled_from(["no_snapshot", "gap", "crossed"]),
    bids=side_strategy(100, 199, 8),
    asks=side_strategy(201, 300, 8),
    good=side_strategy(150, 199, 6, zero_ok=True),
    bad=st.sampled_from([*sorted(BAD_LEVELS), "first_after_last", *sorted(BAD_SHAPES)]),
    position=st.integers(min_value=0, max_value=6),
    on_bids=st.booleans(),
    futures=st.booleans(),
    via=st.sampled_from(["update", "push", "delta"]),
)
def test_bad_input_on_unsynced_book_raises_and_changes_nothing(
    kind, bids, asks, good, bad, position, on_bids, futures, via
) -> None:
    book = _unsynced_book(kind, bids, asks)
    before = full_state(book)
    rows = levels_array(good, "0.5", "0.001")
    other = levels_array({}, "0.5", "0.001")
    first, last = 62, 63
    if bad == "first_after_last":
        first, last = 64, 63
        bad_side = rows
    elif bad in BAD_SHAPES:
        bad_side = BAD_SHAPES[bad]
    else:
        listed = rows.tolist()
        listed.insert(min(position, len(listed)), list(BAD_LEVELS[bad]))
        bad_side = np.array(listed, dtype=np.float64)
    b, a = (bad_side, other) if on_bids else (other, bad_side)
    prev = first - 1 if futures else None
    with pytest.raises(BookInputError) as info:
        if via == "update":
            book.apply_update(b, a, first, last, prev)
        elif via == "push":
            book.apply_push(SimpleNamespace(bids=b, asks=a), first, last, prev)
        else:
            book.apply_delta(_core.L2Delta(b, a, first, last, prev))  # raises at construction or at apply
    assert isinstance(info.value, ValueError)
    assert full_state(book) == before
    # good input is still ignored
    assert book.apply_update(rows, other, 62, 63, prev) == NOT_SYNCED
    assert full_state(book) == before


@pytest.mark.parametrize("shape", sorted(BAD_SHAPES))
@pytest.mark.parametrize("via", ["update", "snapshot"])
def test_bad_shape_raises_and_changes_nothing(shape: str, via: str) -> None:
    book = _good_book({180: 5, 190: 7}, {210: 3, 220: 9})
    before = full_state(book)
    with pytest.raises(BookInputError, match="shape"):
        if via == "update":
            book.apply_update(BAD_SHAPES[shape], np.empty((0, 2)), 52, 53)
        else:
            book.apply_snapshot(np.empty((0, 2)), BAD_SHAPES[shape], 60)
    assert full_state(book) == before


def test_bad_level_objects_raise() -> None:
    book = _good_book({180: 5}, {210: 3})
    before = full_state(book)
    for bad in ([(1.0,)], [("a", "b")], "abc", [None], [(1.0, 2.0, 3.0)]):
        with pytest.raises(BookInputError):
            book.apply_update(bad, [], 52, 53)
    assert full_state(book) == before


# ---- executable_price == a plain-Python walk ----------------------------------------------------------------


def walk(levels: list[tuple[float, float]], qty: float) -> dict:
    remaining, notional, filled, n, worst = qty, 0.0, 0.0, 0, None
    for price, level_qty in levels:
        if remaining <= qty * 1e-12:
            break
        take = min(level_qty, remaining)
        notional += price * take
        filled += take
        remaining -= take
        n += 1
        worst = price
    return {"filled": filled, "notional": notional, "levels": n, "worst": worst, "complete": remaining <= qty * 1e-12}


@SETTINGS
@given(
    bids=side_strategy(100, 199, 10),
    asks=side_strategy(201, 300, 10),
    side=st.sampled_from(["buy", "sell"]),
    qty_eighths=st.integers(min_value=1, max_value=80_000),
    tick=st.sampled_from(["0.5", "0.25", "0.01", "0.1"]),
)
def test_executable_price_matches_python_walk(bids, asks, side, qty_eighths, tick) -> None:
    lot = "0.125"  # binary-exact quantities
    book = OrderBook(float(tick), 0.001)
    book.apply_snapshot(levels_array(bids, tick, lot), levels_array(asks, tick, lot), 1)
    qty = qty_eighths / 8
    rows = sorted(asks.items()) if side == "buy" else sorted(bids.items(), reverse=True)
    levels = [(dec_float(t, tick), dec_float(q, lot)) for t, q in rows]
    expected = walk(levels, qty)
    got = book.executable_price(side, qty)
    assert got.levels == expected["levels"]
    assert got.complete == expected["complete"]
    assert got.filled_qty == pytest.approx(expected["filled"], rel=1e-12)
    assert got.notional == pytest.approx(expected["notional"], rel=1e-12)
    if expected["filled"] == 0:
        assert got.avg_price is None and got.worst_price is None and got.slippage_bps is None
        return
    avg = expected["notional"] / expected["filled"]
    best = levels[0][0]
    assert got.avg_price == pytest.approx(avg, rel=1e-12)
    assert got.worst_price == pytest.approx(expected["worst"], rel=1e-12)
    slip = (avg - best) / best * 1e4 if side == "buy" else (best - avg) / best * 1e4
    assert got.slippage_bps == pytest.approx(slip, rel=1e-9, abs=1e-9)
    assert got.slippage_bps >= -1e-9  # walking the book never improves on the best level
    # the book's own view of the same quantity at the worst price
    within = book.qty_within(side, expected["worst"])
    assert within >= got.filled_qty - 1e-9


def test_executable_price_rejects_bad_qty() -> None:
    book = _good_book({180: 5}, {210: 3})
    for qty in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(CexarbError):
            book.executable_price("buy", qty)
    with pytest.raises(CexarbError):
        book.executable_price("hold", 1.0)


# ---- rebalance_qty never overshoots -----------------------------------------------------------------------------


@settings(max_examples=600, deadline=None)
@given(
    delta=st.one_of(
        st.floats(min_value=-50, max_value=50, allow_nan=False, allow_infinity=False),
        st.integers(min_value=-50_000, max_value=50_000).map(lambda k: k / 1000),
    ),
    lot=st.sampled_from(LOTS),
    min_notional=st.sampled_from([0.0, 5.0, 100.0, 1_000.0]),
    price=st.floats(min_value=100.0, max_value=100_000.0),
)
def test_rebalance_qty_never_overshoots(delta: float, lot: str, min_notional: float, price: float) -> None:
    qty = _core.rebalance_qty(delta, float(lot), min_notional, price)
    assert abs(qty) <= abs(delta), (delta, lot, qty)
    units = Decimal(repr(qty)) / Decimal(lot)
    assert units == units.to_integral_value(), f"{qty} is not a whole number of {lot} lots"
    if qty != 0.0:
        assert math.copysign(1.0, qty) == -math.copysign(1.0, delta)
        assert abs(qty) * price >= min_notional * (1 - 1e-12)
        assert abs(qty) + float(lot) > abs(delta)  # the largest whole-lot qty, rounded toward zero
    else:
        lots = math.floor(abs(delta) / float(lot) + 1e-9)
        assert lots == 0 or lots * float(lot) * price < min_notional * (1 + 1e-9)


def test_rebalance_qty_examples() -> None:
    assert _core.rebalance_qty(0.0034, 0.001, 5.0, 60_000.0) == -0.003
    assert _core.rebalance_qty(-0.0034, 0.001, 500.0, 60_000.0) == 0.0  # 0.003 * 60k = 180 < 500
    assert _core.rebalance_qty(0.003, 0.001, 0.0, 60_000.0) == -0.003  # 0.003/0.001 = 2.999...96
    assert _core.rebalance_qty(0.0, 0.001, 0.0, 60_000.0) == 0.0
    with pytest.raises(ValueError):
        _core.rebalance_qty(math.nan, 0.001, 0.0, 60_000.0)
