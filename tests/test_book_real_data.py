"""The Rust order book against an independent Python book on the recorded Binance streams.

For each of the three ``book.csv.gz`` streams (PROVENANCE §1: 6,493 / 6,547 / 44,772 depth
messages after the snapshot), the Rust book is fed the loader's L2Deltas one message at a time
and the reference (``tests/reference_book.py``) is fed the same file read independently with the
``csv`` module as decimal strings. After every message the outcome codes, best bid/ask and the
top 20 levels per side must be equal (prices compared in ticks, quantities exactly). Then the
sequence rules on real messages: a dropped message is a GAP, a duplicate is STALE, updates
before a snapshot are NOT_SYNCED.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from cexarb import _core
from cexarb._core import APPLIED, CROSSED, GAP, NOT_SYNCED, STALE, OrderBook, SequenceGapError

import reference_book as ref
BINANCE_STAMP = "20240808T2354Z"
# instrument key -> file prefix in book/binance_btc_20240808 (PROVENANCE §1)
BINANCE_PREFIXES = {
    "binance-spot:BTCUSDT": f"binance-spot_BTCUSDT_{BINANCE_STAMP}",
    "binance-usdm:BTCUSDT": f"binance-usdm_BTCUSDT_{BINANCE_STAMP}",
    "binance-coinm:BTCUSD_PERP": f"binance-coinm_BTCUSD_PERP_{BINANCE_STAMP}",
}

CODES = {ref.APPLIED: APPLIED, ref.STALE: STALE, ref.GAP: GAP, ref.NOT_SYNCED: NOT_SYNCED, ref.CROSSED: CROSSED}
DEPTH = 20
KEYS = list(BINANCE_PREFIXES)


def _new_book(stream) -> OrderBook:  # stream: BookStream
    return OrderBook(stream.instrument.tick_size, stream.instrument.lot_size)


class _Ticks:
    """Exact Decimal price -> integer ticks, memoised."""

    def __init__(self, tick_size: float) -> None:
        self.tick = Decimal(repr(tick_size))
        self.memo: dict[Decimal, int] = {}

    def __call__(self, price: Decimal) -> int:
        ticks = self.memo.get(price)
        if ticks is None:
            q = price / self.tick
            assert q == q.to_integral_value(), f"price {price} not on tick {self.tick}"
            ticks = self.memo[price] = int(q)
        return ticks


def _ref_side(levels: list[tuple[Decimal, Decimal]], to_ticks: _Ticks) -> tuple[list[int], list[float]]:
    return [to_ticks(p) for p, _ in levels], [float(q) for _, q in levels]


def _rust_side(levels: np.ndarray, tick_size: float) -> tuple[list[int], list[float]]:
    return np.rint(levels[:, 0] / tick_size).astype(np.int64).tolist(), levels[:, 1].tolist()


@pytest.mark.parametrize("key", KEYS)
def test_every_message_matches_reference(key: str, recording, binance_dir: Path) -> None:
    stream = recording.streams[key].book
    tick = stream.instrument.tick_size
    to_ticks = _Ticks(tick)
    book = _new_book(stream)
    reference = ref.ReferenceBook()
    messages = ref.iter_book_csv(binance_dir / f"{BINANCE_PREFIXES[key]}_book.csv.gz")
    n = with_pending = 0
    for i, (delta, msg) in enumerate(zip(stream.deltas, messages, strict=True)):
        assert (delta.is_snapshot, delta.last_update_id) == (msg.is_snapshot, msg.last_update_id), i
        assert delta.n_levels == len(msg.bids) + len(msg.asks), i
        code = book.apply_delta(delta)
        expected = msg.apply_to(reference)
        if expected is not None:  # depth event (a snapshot returns None from the reference)
            assert code == CODES[expected], f"{key} message {i} (u={msg.last_update_id}): code {code} != {expected}"
        ref_bids, ref_asks = reference.top(DEPTH)
        rust_bids, rust_asks = book.depth(DEPTH)
        if _rust_side(rust_bids, tick) != _ref_side(ref_bids, to_ticks) or _rust_side(rust_asks, tick) != _ref_side(
            ref_asks, to_ticks
        ):
            pytest.fail(
                f"{key} message {i} (u={msg.last_update_id}): top {DEPTH} differs\n"
                f"rust bids {rust_bids[:5].tolist()} asks {rust_asks[:5].tolist()}\n"
                f"ref  bids {[(str(p), str(q)) for p, q in ref_bids[:5]]} asks {[(str(p), str(q)) for p, q in ref_asks[:5]]}"
            )
        bb, ba = reference.best_bid(), reference.best_ask()
        assert bb is not None and ba is not None
        assert book.best_bid_ticks() == to_ticks(bb[0]) and book.best_ask_ticks() == to_ticks(ba[0]), i
        rb, ra = book.best_bid(), book.best_ask()
        assert rb is not None and ra is not None
        assert book.bbo() == (*rb, *ra), i  # the one-call read, pending rows or not
        assert rb[1] == float(bb[1]) and ra[1] == float(ba[1]), i
        assert abs(rb[0] - float(bb[0])) < tick / 2 and abs(ra[0] - float(ba[0])) < tick / 2, i
        if book.pending_rows:
            # a big message: only its top rows are stored yet; every read merges the rest
            with_pending += 1
            if with_pending % 5 == 1:
                all_ref_bids, all_ref_asks = reference.top(1_000_000)
                all_bids, all_asks = book.depth(1_000_000)
                assert _rust_side(all_bids, tick) == _ref_side(all_ref_bids, to_ticks), i
                assert _rust_side(all_asks, tick) == _ref_side(all_ref_asks, to_ticks), i
                assert (book.n_bids, book.n_asks) == (reference.n_bids, reference.n_asks), i
            if i % 2:
                book.flush()  # else the next message stores them first
                assert book.pending_rows == 0
        n += 1
    assert n == len(stream.deltas)
    assert with_pending > 0, "no message took the top-first path"
    assert book.gap_count == 0 and reference.gap_count == 0
    assert book.is_valid and not book.is_crossed and book.invalid_reason is None
    book.require_valid()
    assert (book.n_bids, book.n_asks) == (reference.n_bids, reference.n_asks)
    assert book.last_update_id == reference.last_update_id == stream.deltas[-1].last_update_id


# PROVENANCE §1: final level counts (bids, asks)
FINAL_LEVELS = {
    "binance-spot:BTCUSDT": (1971, 2962),
    "binance-usdm:BTCUSDT": (5018, 4578),
    "binance-coinm:BTCUSD_PERP": (1510, 1733),
}


@pytest.mark.parametrize("key", KEYS)
def test_native_replay_no_gaps_final_levels(key: str, recording) -> None:
    stream = recording.streams[key].book
    book = _new_book(stream)
    applied, stale, gaps = _core.replay_deltas(book, stream.deltas)
    assert (applied, stale, gaps) == (len(stream.deltas), 0, 0)
    assert book.gap_count == 0 and book.is_valid and not book.is_crossed
    assert (book.n_bids, book.n_asks) == FINAL_LEVELS[key]


def _replay(book: OrderBook, deltas) -> list[int]:
    return [book.apply_delta(d) for d in deltas]


def _state(book: OrderBook) -> tuple:
    bids, asks = book.depth(100_000)
    return bids.tobytes(), asks.tobytes(), book.last_update_id, book.is_valid, book.n_bids, book.n_asks


@pytest.mark.parametrize("key", ["binance-spot:BTCUSDT", "binance-usdm:BTCUSDT", "binance-coinm:BTCUSD_PERP"])
def test_dropped_message_is_gap(key: str, recording) -> None:
    stream = recording.streams[key].book
    deltas = stream.deltas
    k = len(deltas) // 2
    book = _new_book(stream)
    assert set(_replay(book, deltas[:k])) == {APPLIED}
    before = _state(book)
    assert book.apply_delta(deltas[k + 1]) == GAP  # deltas[k] dropped
    assert book.gap_count == 1 and not book.is_valid and not book.is_crossed
    assert book.invalid_reason
    with pytest.raises(SequenceGapError):
        book.require_valid()
    # the gap message was not applied; later messages are ignored until a snapshot
    assert _state(book)[:3] == before[:3]
    assert set(_replay(book, deltas[k + 2 : k + 20])) == {NOT_SYNCED}
    assert _state(book)[:3] == before[:3]

    # the reference agrees on the same real messages
    reference = ref.ReferenceBook()
    for i in [0, *range(1, k), k + 1]:
        outcome = _ref_apply(reference, stream, i)
    assert outcome == ref.GAP

    # a new snapshot resynchronises the book
    book.apply_delta(deltas[0])
    assert book.is_valid
    assert set(_replay(book, deltas[1:])) == {APPLIED}
    clean = _new_book(stream)
    _core.replay_deltas(clean, deltas)
    assert _state(book) == _state(clean)
    assert book.gap_count == 1


def _ref_apply(reference: ref.ReferenceBook, stream, i: int) -> str | None:
    """Feed message ``i`` of a loaded stream to the reference (levels as repr strings)."""
    bids = [(repr(p), repr(q)) for p, q in stream.bids(i).tolist()]
    asks = [(repr(p), repr(q)) for p, q in stream.asks(i).tolist()]
    if stream.is_snapshot[i]:
        reference.snapshot(bids, asks, int(stream.last_update_id[i]))
        return None
    return reference.update(
        bids, asks, int(stream.first_update_id[i]), int(stream.last_update_id[i]), stream.prev_id(i)
    )


@pytest.mark.parametrize("key", KEYS)
def test_duplicate_message_is_stale(key: str, recording) -> None:
    stream = recording.streams[key].book
    deltas = stream.deltas
    k = len(deltas) // 3
    book = _new_book(stream)
    _replay(book, deltas[: k + 1])
    before = _state(book)
    version = book.version
    assert book.apply_delta(deltas[k]) == STALE
    assert _state(book) == before and book.version == version
    assert book.is_valid and book.gap_count == 0
    assert set(_replay(book, deltas[k + 1 :])) == {APPLIED}
    assert book.is_valid and book.gap_count == 0


@pytest.mark.parametrize("key", KEYS)
def test_updates_before_snapshot_are_not_synced(key: str, recording) -> None:
    stream = recording.streams[key].book
    book = _new_book(stream)
    assert book.last_update_id is None and not book.is_valid
    assert set(_replay(book, stream.deltas[1:50])) == {NOT_SYNCED}
    assert (book.n_bids, book.n_asks) == (0, 0)
    assert book.best_bid() is None and book.best_ask() is None
    assert book.bbo() == (None, None, None, None)
    assert book.gap_count == 0
    with pytest.raises(SequenceGapError):
        book.require_valid()


@pytest.mark.parametrize("key", KEYS)
def test_first_event_after_snapshot_rules(key: str, recording) -> None:
    """Binance's first-event rule on the real snapshot id ``L``, both for the core and the reference.

    Spot: stale when ``u <= L``, applies when ``U <= L + 1 <= u``. Futures: stale when ``u < L``,
    applies when ``U <= L <= u`` (so ``u == L`` applies), gap when ``U > L``.
    """
    stream = recording.streams[key].book
    snap = stream.deltas[0]
    last = snap.last_update_id
    futures = stream.prev_id(1) is not None
    no_levels = np.empty((0, 2))
    pu = last - 5 if futures else None

    def outcome(first: int, u: int) -> tuple[int, str]:
        book = _new_book(stream)
        book.apply_delta(snap)
        reference = ref.ReferenceBook()
        _ref_apply(reference, stream, 0)
        return book.apply_update(no_levels, no_levels, first, u, pu), reference.update([], [], first, u, pu)

    if futures:
        cases = [(last - 9, last - 1, STALE), (last - 9, last, APPLIED), (last, last + 9, APPLIED), (last + 1, last + 9, GAP)]
    else:
        cases = [(last - 9, last, STALE), (last - 9, last + 1, APPLIED), (last + 1, last + 9, APPLIED), (last + 2, last + 9, GAP)]
    for first, u, expected in cases:
        code, ref_outcome = outcome(first, u)
        assert code == expected == CODES[ref_outcome], (first - last, u - last, code, ref_outcome)
