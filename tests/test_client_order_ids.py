"""The engine's client order ids, ``{tag}-{session}-{n}``, fit every venue for any strategy id:
Gate.io's ``text`` allows 1-28 characters of ``[0-9A-Za-z_.-]`` after ``t-`` (the shortest limit
of the venues), so a long or odd strategy id (the registry's defaults are 18-22 characters) must
not make orders fail mid-run once ``n`` grows. The tag is stable from run to run, so a later
run recognises an earlier run's orders (and only those)."""

from __future__ import annotations

from cexarb.engine import (
    CLIENT_ORDER_ID_MAX_LEN,
    _earlier_run_of,
    client_order_id_prefix,
    new_session_id,
    strategy_tag,
)
from cexarb.venues.gateio.codec import text_for_client_order_id
from hypothesis import given
from hypothesis import strategies as st


@given(st.text(min_size=1, max_size=60), st.integers(min_value=1, max_value=99_999_999))
def test_every_id_fits_gate_for_any_strategy_id(strategy_id: str, n: int) -> None:
    session = new_session_id()
    coid = f"{client_order_id_prefix(strategy_id, session)}-{n}"
    assert len(coid) <= CLIENT_ORDER_ID_MAX_LEN
    assert text_for_client_order_id(coid) == "t-" + coid  # raises if Gate would refuse it
    tag = strategy_tag(strategy_id)
    assert strategy_tag(strategy_id) == tag  # stable: the next run computes the same tag
    assert _earlier_run_of(coid, {tag})


def test_short_ids_are_kept_and_long_ones_hashed() -> None:
    assert strategy_tag("sfh-live") == "sfh-live"
    assert strategy_tag("arb_gate.mex") == "arb_gate.mex"  # 12 characters: kept
    hashed = strategy_tag("arb_gate.mexc")  # 13: the first 5, "." and 6 hex digits
    assert hashed.startswith("arb_g.") and len(hashed) == 12 and int(hashed[6:], 16) >= 0
    assert strategy_tag("a b") == "a_b." + strategy_tag("a b")[4:] and len(strategy_tag("a b")) == 10
    long_a, long_b = strategy_tag("spot_futures_hedging-1"), strategy_tag("spot_futures_hedging-2")
    assert long_a.startswith("spot_.") and len(long_a) == 12 and long_a != long_b


def test_only_the_engines_form_of_a_configured_tag_is_an_earlier_runs() -> None:
    tags = {"sfh-live"}
    assert _earlier_run_of("sfh-live-9f3a1c-7", tags)
    assert not _earlier_run_of("sfh-live-2-9f3a1c-1", tags)  # another strategy, "sfh-live-2"
    assert not _earlier_run_of("sfh-live-manual", tags)
    assert not _earlier_run_of("other-9f3a1c-7", tags)
    assert len(new_session_id()) == 6
