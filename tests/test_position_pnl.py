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
