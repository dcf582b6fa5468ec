"""Hostile and edge input to ``cexarb._core`` (the Rust core): array layouts, concurrent book
mutation, absurd sizes, float precision at BTC prices, wrong-side hedges, NaN risk inputs,
saturating casts and truncated ticks. Each case used to corrupt state, panic, abort or fail
open; now it gives the right answer or a ValueError naming the field."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from cexarb import _core

BIDS = [[100.0, 1.5], [99.99, 2.5], [99.98, 3.0]]
ASKS = [[100.01, 0.5], [100.02, 4.0]]


def _layouts(rows: list[list[float]]) -> list[tuple[str, npt.NDArray[np.float64]]]:
    c = np.array(rows, dtype=np.float64)
    padded = np.zeros((len(rows), 3))
    padded[:, :2] = c
    spaced = np.zeros((2 * len(rows), 2))
    spaced[::2] = c
    return [
        ("C", c),
        ("F", np.asfortranarray(c)),
        ("transposed", np.array([c[:, 0], c[:, 1]]).T),  # F-contiguous (prices, qtys).T
        ("column slice", padded[:, :2]),
        ("row stride", spaced[::2]),
        ("reversed twice", c[::-1][::-1]),
    ]


def _depth(book: _core.OrderBook) -> tuple[list[list[float]], list[list[float]]]:
    bids, asks = book.depth(10)
    return bids.tolist(), asks.tolist()


@pytest.mark.parametrize("layout", range(6))
def test_every_array_layout_gives_the_c_order_book(layout: int) -> None:
    (name, bids), (_, asks) = _layouts(BIDS)[layout], _layouts(ASKS)[layout]
    want = (BIDS, ASKS)
    snap = _core.OrderBook(0.01, 0.001)
    snap.apply_snapshot(bids, asks, 1)
    assert _depth(snap) == want, name
    upd = _core.OrderBook(0.01, 0.001)
    upd.apply_snapshot([(50.0, 1.0)], [(150.0, 1.0)], 1)
    assert upd.apply_update(bids, asks, 2, 2) == _core.APPLIED
    assert _depth(upd)[0][:3] == BIDS, name
    delta = _core.OrderBook(0.01, 0.001)
    assert delta.apply_delta(_core.L2Delta(bids, asks, 0, 1, is_snapshot=True)) == _core.APPLIED
    assert _depth(delta) == want, name


def test_reversed_rows_are_read_row_by_row() -> None:
    book = _core.OrderBook(0.01, 0.001)
    book.apply_snapshot(np.array(BIDS)[::-1], np.array(ASKS)[::-1], 1)
    assert _depth(book) == (BIDS, ASKS)


def test_transposed_snapshot_of_the_audit() -> None:
    book = _core.OrderBook(0.01, 0.001)
    book.apply_snapshot(np.array([[100.0, 99.99], [1.5, 2.5]]).T, np.empty((0, 2)), 1)
    assert _depth(book)[0] == [[100.0, 1.5], [99.99, 2.5]]


def test_scanning_a_book_mutated_on_another_thread_raises_instead_of_panicking() -> None:
    a, b = _core.OrderBook(0.01, 0.001), _core.OrderBook(0.01, 0.001)
    a.apply_snapshot([(100.0, 5.0)], [(100.02, 5.0)], 1)
    b.apply_snapshot([(100.0, 5.0)], [(100.02, 5.0)], 1)
    bids = [(round(99.0 - 0.01 * i, 2), 1.0) for i in range(400)]
    asks = [(round(100.02 + 0.01 * i, 2), 1.0) for i in range(400)]
    deltas = [_core.L2Delta(bids, asks, 0, 10, is_snapshot=True)]
    deltas += [_core.L2Delta(bids, asks, 11 + i, 11 + i) for i in range(4000)]
    arb = _core.ArbEntry(a, b, 100.0, 5.0, 0.0, 0.001, 0.01, 0.001, 0.001, 0.01, 0.001, 0.001)
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.setdefault("r", _core.replay_deltas(a, deltas)), daemon=True)
    # Scan while the replay runs, bounded in time and count: the replay takes ~0.1 s here, in which
    # ~30-50k scans run (each refused: book a is mutably borrowed); the bounds only stop a runaway.
    deadline = time.monotonic() + 10.0
    max_scans = 1_000_000
    scans = refused = 0
    unexpected: list[BaseException] = []  # the first few only: they name the fault
    thread.start()
    while thread.is_alive() and scans < max_scans and len(unexpected) < 5 and time.monotonic() < deadline:
        scans += 1
        try:
            arb.scan()
        except BaseException as exc:  # noqa: BLE001 - a PanicException is a BaseException
            if type(exc) is RuntimeError and "book a is being mutated" in str(exc):
                refused += 1
            else:
                unexpected.append(exc)
    thread.join(timeout=max(0.0, deadline - time.monotonic()) + 5.0)
    assert not thread.is_alive(), "replay_deltas did not finish"
    assert not unexpected, (scans, refused, unexpected)
    assert scans > 0
    assert result["r"] == (4001, 0, 0)
    assert arb.scan() is not None


@pytest.mark.parametrize("window", [1, 0, 2**24 + 1, 2**62, 2**64, -1, -(2**70)])
def test_rolling_ols_window_out_of_range_is_a_value_error(window: int) -> None:
    with pytest.raises(_core.PricingError, match=f"window {window} must be >= 2 and <= 16777216"):
        _core.RollingOls(window)


def test_rolling_ols_huge_window_does_not_abort_the_process() -> None:
    code = "from cexarb import _core\ntry:\n    _core.RollingOls(2**40)\nexcept ValueError as e:\n    print(e)\n"
    run = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "window 1099511627776 must be >= 2" in run.stdout


def test_rolling_ols_matches_polyfit_at_btc_prices() -> None:
    rng = np.random.default_rng(7)
    n = 20_000
    x = 60_000.0 + 0.01 * np.cumsum(rng.choice([-1, 1], size=n))
    y = 0.9 * x + 5.0 + rng.normal(0.0, 0.01, size=n)
    for window in (20, 500):
        ols = _core.RollingOls(window)
        worst = 0.0
        for i in range(n):
            beta = ols.update(float(x[i]), float(y[i]))
            if i >= window and i % 7 == 0:
                xs, ys = x[i - window + 1 : i + 1], y[i - window + 1 : i + 1]
                assert np.var(xs) > 0
                assert beta is not None, (window, i)
                # polyfit on x - xs[0], y - ys[0] (exact subtractions, same slope): polyfit on the raw x is
                # itself ill-conditioned here (up to ~1e-8 off the exact slope at window 20)
                want = np.polyfit(xs - xs[0], ys - ys[0], 1)[0]
                worst = max(worst, abs(beta - want) / abs(want))
                raw, intercept = np.polyfit(xs, ys, 1)
                assert abs(beta - raw) < 1e-6 * abs(raw)
                alpha = ols.alpha
                assert alpha is not None and abs(alpha - intercept) < 1e-3 * abs(intercept) + 1e-3
        assert worst < 1e-9, (window, worst)


def test_rolling_ols_overflowing_sums_raise() -> None:
    ols = _core.RollingOls(3)
    ols.update(1e200, 1.0)
    with pytest.raises(_core.PricingError, match="must be finite"):
        ols.update(-1e200, 2.0)
    assert ols.count == 1


def test_hedge_ratio_is_signed() -> None:
    assert _core.hedge_ratio(1.0, 60_000.0, -1.0, 60_000.0) == 1.0
    assert _core.hedge_ratio(1.0, 60_000.0, 1.0, 60_000.0) == -1.0  # wrong side: not a hedge
    assert _core.hedge_drift(-1.0, 1.0) == 2.0
    assert _core.hedge_ratio(0.0, 60_000.0, -1.0, 60_000.0) is None


@pytest.mark.parametrize(
    ("field", "args"),
    [
        ("qty", (1.0, math.nan, None, 0.0, 0, 1.0, False)),
        ("qty", (1.0, -5.0, None, 0.0, 0, 1.0, False)),
        ("qty", (1.0, 0.0, None, 0.0, 0, 1.0, False)),
        ("price", (1.0, 1.0, math.nan, 0.0, 0, 1.0, False)),
        ("price", (1.0, 1.0, math.inf, 0.0, 0, 1.0, False)),
        ("price", (1.0, 1.0, -100.0, 0.0, 0, 1.0, False)),
        ("contract_size", (1.0, 1.0, None, 0.0, 0, math.nan, False)),
        ("contract_size", (1.0, 1.0, None, 0.0, 0, -1.0, False)),
        ("side_sign", (0.5, 1.0, None, 0.0, 0, 1.0, False)),
        ("side_sign", (math.nan, 1.0, None, 0.0, 0, 1.0, False)),
        ("position_qty", (1.0, 1.0, None, math.nan, 0, 1.0, False)),
    ],
)
def test_pre_trade_risk_fails_closed_on_malformed_orders(field: str, args: tuple[Any, ...]) -> None:
    book = _core.OrderBook(0.01, 0.001)
    book.apply_snapshot([(100.0, 1.0)], [(100.02, 1.0)], 1)
    risk = _core.PreTradeRisk(1000.0, 1000.0, 50.0, 5)
    assert risk.check(book, 1.0, 1.0, None, 0.0, 0, 1.0, False) is None
    with pytest.raises(_core.PricingError, match=f"^{field} "):
        risk.check(book, *args)


@pytest.mark.parametrize("slippage", [1.0, 1e14, 1e300, math.inf, math.nan, -0.01])
def test_arb_entry_slippage_tolerance_is_a_fraction_below_one(slippage: float) -> None:
    a, b = _core.OrderBook(0.01, 0.001), _core.OrderBook(0.01, 0.001)
    with pytest.raises(_core.PricingError, match="slippage_tolerance"):
        _core.ArbEntry(a, b, 100.0, 5.0, 0.0, slippage, 0.01, 0.001, 0.001, 0.01, 0.001, 0.001)


SPOT = SimpleNamespace(lot_size=0.001, tick_size=0.01)


@pytest.mark.parametrize("ticks", [5.7, 5.0, np.float64(5.7), math.inf])
def test_order_fields_price_ticks_must_be_an_int(ticks: Any) -> None:
    with pytest.raises(ValueError, match="price_ticks must be a whole number of ticks"):
        _core.order_fields(SPOT, 1.0, None, ticks, False)


def test_order_fields_price_ticks_ints_and_range() -> None:
    assert _core.order_fields(SPOT, 1.0, None, 5, False)[1] == 5
    assert _core.order_fields(SPOT, 1.0, None, np.int64(7), False)[1] == 7
    with pytest.raises(ValueError, match=r"price_ticks 1180591620717411303424 is beyond"):
        _core.order_fields(SPOT, 1.0, None, 2**70, False)
    with pytest.raises(ValueError, match="price_ticks must be > 0"):
        _core.order_fields(SPOT, 1.0, None, 0, False)


def test_order_fields_price_below_one_tick() -> None:
    with pytest.raises(ValueError, match=r"order price 1e-09 is below one tick_size 0.01"):
        _core.order_fields(SPOT, 1.0, 1e-9, None, False)
    assert _core.order_fields(SPOT, 1.0, 0.01, None, False)[1:4:2] == (1, "0.01")


@pytest.mark.parametrize(("field", "lot", "tick"), [("lot_size", 0.0, 0.01), ("lot_size", -0.001, 0.01),
                                                    ("tick_size", 0.001, -0.01), ("tick_size", 0.001, 0.0)])
def test_order_fields_bad_steps_are_named(field: str, lot: float, tick: float) -> None:
    with pytest.raises(_core.PricingError, match=f"^{field} .* must be finite and > 0"):
        _core.order_fields(SimpleNamespace(lot_size=lot, tick_size=tick), 1.0, 1.0, None, False)


@pytest.mark.parametrize(("field", "call"), [
    ("update_id", lambda b: b.apply_snapshot([], [], -1)),
    ("update_id", lambda b: b.apply_snapshot([], [], 2**64)),
    ("first_update_id", lambda b: b.apply_update([], [], -5, 1)),
    ("last_update_id", lambda b: b.apply_update([], [], 1, 2**70)),
    ("prev_update_id", lambda b: b.apply_update([], [], 1, 2, -1)),
    ("first_update_id", lambda b: _core.L2Delta([], [], -1, 1)),
])
def test_out_of_range_update_ids_are_value_errors_naming_the_field(field: str, call: Any) -> None:
    book = _core.OrderBook(0.01, 0.001)
    with pytest.raises(_core.BookInputError, match=f"^{field} -?[0-9]+ must be an integer within"):
        call(book)
    with pytest.raises(TypeError, match="update_id"):
        book.apply_snapshot([], [], 1.5)
    book.apply_snapshot([(1.0, 1.0)], [(2.0, 1.0)], 2**64 - 1)
    assert book.last_update_id == 2**64 - 1
