"""Position accounting: linear and inverse (coin-margined) PnL and average entry."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cexarb.model import Position, Side
from cexarb.replay import known_instrument

COINM = known_instrument("binance-coinm", "BTCUSD_PERP")  # 1 contract = 100 USD
USDM = known_instrument("binance-usdm", "BTCUSDT")


def test_inverse_pnl_and_harmonic_entry() -> None:
    pos = Position(instrument_key=COINM.key)
    pos.apply_fill(Side.BUY, 10, 50_000.0, 0.0, COINM)
    pos.apply_fill(Side.BUY, 10, 60_000.0, 0.0, COINM)
    assert pos.avg_price == pytest.approx(20 / (10 / 50_000 + 10 / 60_000))  # 54,545.45
    realized = pos.apply_fill(Side.SELL, 20, 55_000.0, 0.0, COINM)
    # 20 contracts x 100 USD x (1/entry - 1/exit) BTC, valued at the exit price
    assert realized == pytest.approx(2_000 * (1 / pos_avg(50_000, 60_000) - 1 / 55_000) * 55_000)
    assert pos.qty == 0 and pos.avg_price == 0.0
    assert COINM.unrealized_pnl(10, 50_000.0, 55_000.0) == pytest.approx(1_000 * (1 / 50_000 - 1 / 55_000) * 55_000)


def pos_avg(p1: float, p2: float) -> float:
    return 2 / (1 / p1 + 1 / p2)


def test_linear_round_trip_and_flip() -> None:
    pos = Position(instrument_key=USDM.key)
    pos.apply_fill(Side.SELL, 0.2, 61_000.0, 1.0, USDM)
    assert (pos.qty, pos.avg_price) == (-0.2, 61_000.0)
    realized = pos.apply_fill(Side.BUY, 0.3, 60_000.0, 1.0, USDM)  # covers 0.2, opens 0.1 long
    assert realized == pytest.approx(0.2 * 1_000.0)
    assert pos.qty == pytest.approx(0.1) and pos.avg_price == 60_000.0
    assert pos.fees == 2.0


@given(
    fills=st.lists(
        st.tuples(st.sampled_from([Side.BUY, Side.SELL]), st.integers(1, 50), st.integers(40_000, 70_000)),
        min_size=1,
        max_size=30,
    )
)
def test_linear_realized_plus_unrealized_equals_cash_flow(fills: list[tuple[Side, int, int]]) -> None:
    """PnL law: realised + unrealised at a mark == cash flow + position value at that mark."""
    pos = Position(instrument_key=USDM.key)
    cash = 0.0
    for side, lots, price in fills:
        qty = lots * 0.001
        pos.apply_fill(side, qty, float(price), 0.0, USDM)
        cash -= side.sign * qty * price
    mark = 55_000.0
    total = pos.realized_pnl + USDM.unrealized_pnl(pos.qty, pos.avg_price, mark)
    assert total == pytest.approx(cash + pos.qty * mark, abs=1e-6)


def test_base_fee_leaves_the_position_at_entry_and_is_counted_once() -> None:
    # a Gate/MEXC spot buy of 0.002 BTC at 60,000 paying 0.2 % in BTC: the account holds
    # 0.001996 BTC; the fee's value (0.24 USDT) is in fees, not again in the mark-to-market
    pos = Position(instrument_key="gateio-spot:BTC_USDT")
    realized = pos.apply_fill(Side.BUY, 0.002, 60_000.0, 0.24, None, fee_base=0.000004)
    assert realized == 0.0
    assert pos.qty == pytest.approx(0.001996, abs=1e-15) and pos.avg_price == 60_000.0
    assert pos.unrealized_pnl(60_000.0) - pos.fees == pytest.approx(-0.24)
    # selling what is held closes the position flat: PnL = price move on what was held - fees
    realized = pos.apply_fill(Side.SELL, 0.001996, 60_100.0, 0.239984, None)
    assert pos.qty == 0.0 and pos.avg_price == 0.0
    assert realized == pytest.approx(0.001996 * 100.0)
    assert pos.realized_pnl - pos.fees == pytest.approx(0.1996 - 0.24 - 0.239984)


def test_base_fee_that_consumes_the_position_flattens_it() -> None:
    pos = Position(instrument_key="x")
    pos.apply_fill(Side.BUY, 0.000004, 60_000.0, 0.24, None, fee_base=0.000004)
    assert pos.qty == 0.0 and pos.avg_price == 0.0


@pytest.mark.parametrize("bad", [-1e-6, float("nan"), float("inf"), 0.0021])
def test_bad_fee_base_is_rejected_and_changes_nothing(bad: float) -> None:
    pos = Position(instrument_key="x")
    with pytest.raises(ValueError, match="fee_base"):
        pos.apply_fill(Side.BUY, 0.002, 60_000.0, 0.24, None, fee_base=bad)
    assert pos.qty == 0.0 and pos.fees == 0.0



def _cash_pnl(fills: list[tuple[Side, float, float, float, float]], mark: float) -> float:
    """Independent PnL from what the account holds: quote paid/received (qty * price), a fee paid
    in quote (when none was taken in base: ``fee`` is then only the base fee's value, not cash),
    and the base held (sum of sign * qty - fee_base) valued at ``mark``."""
    cash = sum(-side.sign * qty * price - (fee if fee_base == 0.0 else 0.0) for side, qty, price, fee, fee_base in fills)
    base = sum(side.sign * qty - fee_base for side, qty, _, _, fee_base in fills)
    return cash + base * mark


@pytest.mark.parametrize(
    "fills",
    [
        # adding to a long at a different price (a base fee on each buy)
        [(Side.BUY, 1.0, 100.0, 0.1, 0.001), (Side.BUY, 1.0, 110.0, 0.11, 0.001)],
        # a buy whose net quantity exactly covers a short: flat, no phantom position
        [(Side.SELL, 1.0, 100.0, 0.1, 0.0), (Side.BUY, 1.001, 90.0, 0.09, 0.001)],
        # a buy that covers a short and flips long by less than its fee would without it
        [(Side.SELL, 1.0, 100.0, 0.1, 0.0), (Side.BUY, 1.5, 90.0, 0.135, 0.0015), (Side.SELL, 0.4985, 95.0, 0.05, 0.0)],
        # a buy of the short's size: its base fee leaves a short of exactly fee_base, at the entry
        [(Side.SELL, 1.0, 100.0, 0.1, 0.0), (Side.BUY, 1.0, 90.0, 0.09, 0.001)],
        # a sell paying its fee in base: more base leaves than the quantity sold
        [(Side.BUY, 2.0, 100.0, 0.2, 0.0), (Side.SELL, 1.0, 105.0, 0.105, 0.001)],
    ],
)
def test_base_fees_match_an_independent_cash_recomputation(fills) -> None:
    pos = Position(instrument_key="x")
    for side, qty, price, fee, fee_base in fills:
        pos.apply_fill(side, qty, price, fee, None, fee_base=fee_base)
    held = sum(side.sign * qty - fee_base for side, qty, _, _, fee_base in fills)
    assert pos.qty == pytest.approx(held, abs=1e-12)
    for mark in (80.0, 100.0, 123.0):
        ours = pos.realized_pnl + pos.unrealized_pnl(mark) - pos.fees
        assert ours == pytest.approx(_cash_pnl(fills, mark), abs=1e-9), (mark, pos)
    if pos.qty == 0.0:
        assert pos.avg_price == 0.0
