"""Bad input raises on a book that is not synced, as it does on a synced one.

The spec: bad input (NaN, negative qty, price off the tick grid, wrong array shape, and
``first_update_id > last_update_id``) raises a clear ValueError and leaves the book unchanged.
The core validates an update's input before its sequencing decides NOT_SYNCED / STALE / GAP, so
this holds before any snapshot, after a gap and after a cross, through every apply path
(``apply_update``, ``apply_push`` with a Gate push or any object, ``apply_delta``).

Also: ``qty_within`` is ``+0.0`` (not ``-0.0``) when no level is within the limit.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from cexarb._core import (
    APPLIED,
    CROSSED,
    GAP,
    NOT_SYNCED,
    BookInputError,
    L2Delta,
    OrderBook,
    parse_gate_depth,
)

EMPTY = np.empty((0, 2))

# name -> (bids, asks, first_update_id, last_update_id, words the message must contain)
BAD_INPUTS = {
    "nan_price": ([(100.0, 1.0), (math.nan, 1.0)], [], 101, 102, ["bids price", "nan"]),
    "inf_price": ([(math.inf, 1.0)], [], 101, 102, ["bids price", "inf"]),
    "nan_qty": ([], [(100.02, math.nan)], 101, 102, ["asks qty", "nan"]),
    "inf_qty": ([(100.0, math.inf)], [], 101, 102, ["bids qty", "inf"]),
    "negative_qty": ([(100.0, 1.0)], [(100.02, -1.0)], 101, 102, ["asks qty -1", "100.02"]),
    "off_grid_price": ([], [(100.015, 1.0)], 101, 102, ["asks price 100.015", "tick_size 0.01"]),
    "zero_price": ([(0.0, 1.0)], [], 101, 102, ["bids price 0"]),
    "negative_price": ([(-100.0, 1.0)], [], 101, 102, ["bids price -100"]),
    "first_after_last": ([(100.0, 1.0)], [], 105, 102, ["first_update_id 105", "last_update_id 102"]),
    "bad_shape": (np.ones((2, 3)), [], 101, 102, ["bids", "shape", "(2, 3)"]),
    "one_dim": ([], np.array([100.0, 1.0]), 101, 102, ["asks", "shape", "(2,)"]),
    "not_a_pair": ([(100.0,)], [], 101, 102, ["bids level 0"]),
}


def fresh() -> OrderBook:
    book = OrderBook(0.01, 0.00001)
    assert not book.is_valid and book.last_update_id is None
    return book


def synced() -> OrderBook:
    book = OrderBook(0.01, 0.00001)
    book.apply_snapshot([(100.0, 1.0), (99.99, 2.0)], [(100.01, 1.5), (100.02, 2.5)], 100)
    assert book.is_valid
    return book


def gapped() -> OrderBook:
    book = synced()
    # a deep sorted update (its deeper rows stay pending), then a gap
    deep = [((9_998 - i) / 100, 1.0) for i in range(40)]
    assert book.apply_update(deep, EMPTY, 101, 101) == APPLIED
    assert book.apply_update(EMPTY, EMPTY, 105, 106) == GAP
    assert not book.is_valid and book.pending_rows > 0
    return book


def crossed() -> OrderBook:
    book = synced()
    assert book.apply_update([(100.01, 1.0)], EMPTY, 101, 101) == CROSSED
    assert not book.is_valid and book.is_crossed
    return book


UNSYNCED = {"no_snapshot": fresh, "after_gap": gapped, "after_cross": crossed}


def state(book: OrderBook) -> tuple:
    bids, asks = book.depth(1_000_000)
    return (
        bids.tobytes(),
        asks.tobytes(),
        book.is_valid,
        book.is_crossed,
        book.invalid_reason,
        book.last_update_id,
        book.version,
        book.gap_count,
        book.n_bids,
        book.n_asks,
        book.pending_rows,
        book.bbo_changed,
        book.bbo_price_changed,
    )


def check_message(err: BaseException, words: list[str]) -> None:
    text = str(err).lower()
    for word in words:
        assert word.lower() in text, (word, str(err))


@pytest.mark.parametrize("bad", sorted(BAD_INPUTS))
@pytest.mark.parametrize("make", sorted(UNSYNCED))
@pytest.mark.parametrize("futures", [False, True])
def test_apply_update_on_unsynced_book_raises(make: str, bad: str, futures: bool) -> None:
    book = UNSYNCED[make]()
    bids, asks, first, last, words = BAD_INPUTS[bad]
    before = state(book)
    prev = max(first - 1, 0) if futures else None
    with pytest.raises(BookInputError) as info:
        book.apply_update(bids, asks, first, last, prev)
    assert isinstance(info.value, ValueError)
    check_message(info.value, words)
    assert state(book) == before
    # good input is still ignored
    assert book.apply_update([(99.0, 1.0)], EMPTY, 1_000, 1_001, prev) == NOT_SYNCED


@pytest.mark.parametrize("bad", sorted(BAD_INPUTS))
@pytest.mark.parametrize("make", sorted(UNSYNCED))
def test_unsynced_book_raises_what_a_synced_book_raises(make: str, bad: str) -> None:
    bids, asks, first, last, _ = BAD_INPUTS[bad]
    with pytest.raises(BookInputError) as ours:
        UNSYNCED[make]().apply_update(bids, asks, first, last)
    with pytest.raises(BookInputError) as ref:
        synced().apply_update(bids, asks, first, last)
    assert str(ours.value) == str(ref.value)


@pytest.mark.parametrize("bad", sorted(BAD_INPUTS))
@pytest.mark.parametrize("make", sorted(UNSYNCED))
def test_apply_push_object_on_unsynced_book_raises(make: str, bad: str) -> None:
    book = UNSYNCED[make]()
    bids, asks, first, last, words = BAD_INPUTS[bad]
    before = state(book)
    with pytest.raises(BookInputError) as info:
        book.apply_push(SimpleNamespace(bids=bids, asks=asks), first, last)
    check_message(info.value, words)
    assert state(book) == before


@pytest.mark.parametrize("make", sorted(UNSYNCED))
@pytest.mark.parametrize(
    ("frame_levels", "first", "words"),
    [
        (b'"b":[["100.01","1"],["100.015","1"]],"a":[]', 101, ["bids price 100.015"]),
        (b'"b":[["100","1"]],"a":[]', 103, ["first_update_id 103", "last_update_id 102"]),
    ],
)
def test_apply_push_gate_depth_on_unsynced_book_raises(make: str, frame_levels: bytes, first: int, words: list[str]) -> None:
    book = UNSYNCED[make]()
    before = state(book)
    frame = (
        b'{"channel":"spot.order_book_update","event":"update","result":{"t":1,"s":"A_B","U":%d,"u":102,%s}}'
        % (first, frame_levels)
    )
    push = parse_gate_depth(frame)
    assert push is not None
    with pytest.raises(BookInputError) as info:
        book.apply_push(push, push.first_id, push.last_id)
    check_message(info.value, words)
    assert state(book) == before


@pytest.mark.parametrize("bad", ["off_grid_price", "first_after_last"])
@pytest.mark.parametrize("make", sorted(UNSYNCED))
def test_apply_delta_on_unsynced_book_raises(make: str, bad: str) -> None:
    # NaN / inf / negative rows raise already when the L2Delta is built; the grid and the ids are
    # checked when it is applied
    book = UNSYNCED[make]()
    bids, asks, first, last, words = BAD_INPUTS[bad]
    delta = L2Delta(bids, asks, first, last)
    before = state(book)
    with pytest.raises(BookInputError) as info:
        book.apply_delta(delta)
    check_message(info.value, words)
    assert state(book) == before


def test_unsynced_book_still_resyncs_after_rejected_input() -> None:
    book = gapped()
    with pytest.raises(BookInputError):
        book.apply_update([(math.nan, 1.0)], EMPTY, 200, 201)
    book.apply_snapshot([(100.0, 1.0)], [(100.01, 1.0)], 300)
    assert book.is_valid
    assert book.apply_update([(100.0, 2.0)], EMPTY, 301, 301) == APPLIED
    assert book.best_bid() == (100.0, 2.0)


# ---- qty_within: +0.0 when nothing is within the limit ------------------------------------------


@pytest.mark.parametrize(
    ("side", "limit"), [("buy", 100.0), ("buy", 0.01), ("sell", 100.01), ("sell", 1e9)]
)
def test_qty_within_nothing_is_positive_zero(side: str, limit: float) -> None:
    qty = synced().qty_within(side, limit)
    assert qty == 0.0 and math.copysign(1.0, qty) == 1.0


@pytest.mark.parametrize("side", ["buy", "sell"])
@pytest.mark.parametrize("limit", [-1.0, 0.0, 100.0])
def test_qty_within_empty_book_is_positive_zero(side: str, limit: float) -> None:
    qty = fresh().qty_within(side, limit)
    assert qty == 0.0 and math.copysign(1.0, qty) == 1.0


def test_qty_within_some_levels() -> None:
    book = synced()
    assert book.qty_within("buy", 100.02) == 4.0
    assert book.qty_within("sell", 99.99) == 3.0
