"""The replay's fast path, :class:`cexarb._core.ReplayCursor`: depth messages applied in a Rust
loop until one needs Python. On the real BTCUSDT spot + USDⓈ-M perp recording it stops at exactly
the messages a plain per-message loop would hand to Python, leaves the books as that loop does,
and a whole :class:`~cexarb.backtest.Backtest` with it gives the same orders, fills and series as
the same replay with the fast path turned off."""

from __future__ import annotations

import asyncio

import pytest
from cexarb import _core
from cexarb import backtest as backtest_module
from cexarb.backtest import Backtest, BacktestConfig
from cexarb.cli import DEMO_PARAMS
from cexarb.strategy import StrategyType, registry

SPOT, PERP = "binance-spot:BTCUSDT", "binance-usdm:BTCUSDT"
TOP, PRICE, NONE = 2, 1, 0


def _merged(recording) -> tuple[list, list[int], list[int], list]:  # type: ignore[no-untyped-def]
    """(deltas, src, ts_ns, instruments) of both streams merged by local_ns (ties: stream, row)."""
    rows = []
    for i, key in enumerate((SPOT, PERP)):
        b = recording.streams[key].book
        rows.extend((int(t), i, r) for r, t in enumerate(b.local_ns))
    rows.sort()
    deltas = [recording.streams[(SPOT, PERP)[i]].book.deltas[r] for _, i, r in rows]
    return deltas, [i for _, i, _ in rows], [t for t, _, _ in rows], [
        recording.streams[k].instrument for k in (SPOT, PERP)
    ]


def _books(instruments) -> list[_core.OrderBook]:  # type: ignore[no-untyped-def]
    return [_core.OrderBook(i.tick_size, i.lot_size) for i in instruments]


@pytest.mark.parametrize("watch", [TOP, PRICE])
def test_the_cursor_stops_where_a_per_message_loop_would_wake_python(recording, watch: int) -> None:
    deltas, src, ts, instruments = _merged(recording)
    n = len(deltas)
    stop_ns = ts[n // 2]  # a timer due half-way: nothing at or after it may be applied
    # the reference: one apply_delta per message, noting each message Python must see
    ref = _books(instruments)
    expected = []
    for j in range(n):
        if ts[j] >= stop_ns:
            break
        book = ref[src[j]]
        code = book.apply_delta(deltas[j])
        woke = src[j] == 1 and (book.bbo_changed if watch == TOP else book.bbo_price_changed)
        if code != _core.APPLIED or woke:  # only the perp (stream 1) is watched here
            expected.append((j, code))
    books = _books(instruments)
    cursor = _core.ReplayCursor(books, deltas, src, ts, [False, True])
    assert len(cursor) == n
    got, j = [], 0
    for _ in range(n + 1):  # bounded: each call moves past at least one message or stops
        k, code = cursor.advance(j, n, stop_ns, watch)
        if code < 0:
            break
        got.append((k, code))
        j = k + 1
    assert got == expected and len(got) > 100
    assert k == next(i for i in range(n) if ts[i] >= stop_ns) and ts[k - 1] < stop_ns <= ts[k]
    for a, b in zip(books, ref, strict=True):  # the same books: top 20 levels and update id
        assert a.last_update_id == b.last_update_id
        for x, y in zip(a.depth(20), b.depth(20), strict=True):
            assert x.tolist() == y.tolist()


def test_the_cursor_stops_at_j_end_and_with_watch_none_only_on_non_applied(recording) -> None:
    deltas, src, ts, instruments = _merged(recording)
    books = _books(instruments)
    cursor = _core.ReplayCursor(books, deltas, src, ts, [True, True])
    k, code = cursor.advance(0, 1024, ts[-1] + 1, NONE)
    # the first messages before each stream's snapshot answer NOT_SYNCED: handed to Python
    first = next(i for i in range(len(deltas)) if deltas[i].is_snapshot)
    if first > 0:
        assert (k, code) == (0, _core.NOT_SYNCED)
        k = 1
        for _ in range(2048):
            k, code = cursor.advance(k, 1024, ts[-1] + 1, NONE)
            if code < 0:
                break
            assert code != _core.APPLIED
            k += 1
    assert (k, code) == (1024, -1)  # stopped at j_end, message 1024 not applied
    assert cursor.advance(len(deltas), len(deltas), ts[-1] + 1, TOP) == (len(deltas), -1)


def test_bad_arguments_name_the_argument(recording) -> None:
    deltas, src, ts, instruments = _merged(recording)
    books = _books(instruments)
    with pytest.raises(ValueError, match="one entry per message"):
        _core.ReplayCursor(books, deltas[:10], src, ts, [True, True])
    with pytest.raises(ValueError, match="watched must have one entry per book"):
        _core.ReplayCursor(books, deltas, src, ts, [True])
    with pytest.raises(ValueError, match=r"src\[3\] = 7 is not a stream index"):
        _core.ReplayCursor(books, deltas[:5], [0, 1, 0, 7, 1], ts[:5], [True, True])
    with pytest.raises(ValueError, match=r"deltas\[1\] must be an L2Delta, got str"):
        _core.ReplayCursor(books, [deltas[0], "x"], [0, 0], ts[:2], [True, True])


class _NoFastPath:
    """Stands in for ReplayCursor with the fast path off: every message goes through Python."""

    def __init__(self, *args: object) -> None:
        pass

    def advance(self, j: int, j_end: int, stop_ns: int, watch: int) -> tuple[int, int]:
        return j, -1


def _demo(recording, fast: bool, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(backtest_module._core, "ReplayCursor", _NoFastPath)
        strategy = registry.create(StrategyType.SPOT_FUTURES_HEDGING, spot_instrument=SPOT, futures_instrument=PERP,
                                   **DEMO_PARAMS["spot_futures_hedging"])
        return asyncio.run(Backtest(recording, strategy, BacktestConfig()).run(progress=lambda j, n: None))


def test_a_replay_with_the_fast_path_equals_one_without(recording, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, slow = _demo(recording, True, monkeypatch), _demo(recording, False, monkeypatch)
    assert fast.strategy.final_state == slow.strategy.final_state == "COMPLETED"
    assert len(fast.fills) == 4 and fast.fills == slow.fills
    assert [(o.client_order_id, o.status, o.filled_qty, o.created_ns) for o in fast.orders] == [
        (o.client_order_id, o.status, o.filled_qty, o.created_ns) for o in slow.orders
    ]
    assert fast.series == slow.series and fast.transitions == slow.transitions
    assert fast.strategy.net_pnl == slow.strategy.net_pnl
    assert (fast.book_gaps, fast.max_abs_delta_base) == (slow.book_gaps, slow.max_abs_delta_base)
