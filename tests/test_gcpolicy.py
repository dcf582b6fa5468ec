"""Safe-point garbage collection (``cexarb.gcpolicy``) and untracked message structs."""

from __future__ import annotations

import gc
import weakref

import pytest
from cexarb.gcpolicy import SafePointGc
from cexarb.model import Order, OrderType, Side
from cexarb.replay import known_instrument
from cexarb.venues.base import BookUpdate, OrderRequest

SPOT = known_instrument("binance-spot", "BTCUSDT")


class _Node:
    def __init__(self) -> None:
        self.peer: object = self  # a reference cycle: only the cyclic collector frees it


def test_inside_the_manager_only_safe_points_collect() -> None:
    assert gc.isenabled()
    with SafePointGc() as gcp:
        assert not gc.isenabled()
        assert gc.get_freeze_count() > 0  # the start-up heap is out of the collector's reach
        node = _Node()
        dead = weakref.ref(node)
        del node
        threshold = gc.get_threshold()[0]
        keep = [[] for _ in range(2 * threshold)]  # pass threshold 0 with live containers
        assert dead() is not None  # nothing collected on allocation
        assert gcp.collect_if_due() == 0
        assert dead() is None and gcp.collections == [1, 0, 0]
        assert gcp.collect_if_due() == -1  # nothing due right after a collection
        del keep
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_generations_follow_cpythons_thresholds_and_memory_stays_bounded() -> None:
    t0, t1, t2 = gc.get_threshold()
    refs = []
    with SafePointGc(freeze=False) as gcp:
        # each round leaves t0 + 1 cycles: one generation-0 collection per round, a generation-1
        # after t1 + 1 of them and a full one after t2 + 1 of those
        for _ in range((t1 + 2) * (t2 + 2)):
            garbage = [_Node() for _ in range(t0 + 1)]
            refs.append(weakref.ref(garbage[0]))
            del garbage
            gcp.collect_if_due()
        g0, g1, g2 = gcp.collections
        assert g0 > g1 > g2 >= 1, gcp.collections
        assert sum(r() is not None for r in refs) <= 2  # the cycles were freed as they went
    assert gc.isenabled()


def test_nested_managers_leave_the_collector_as_the_outer_one_set_it() -> None:
    with SafePointGc(freeze=False):
        with SafePointGc(freeze=False) as inner:
            assert not gc.isenabled()
        assert not gc.isenabled()
        with pytest.raises(RuntimeError, match="not re-entrant"), inner, inner:
            pass
    assert gc.isenabled()


def test_message_structs_are_not_tracked() -> None:
    """Events and orders hold only scalars and frozen structs: no cycle can pass through them, so
    they stay out of the collector (fewer collections on the order path)."""
    request = OrderRequest.create(SPOT, Side.BUY, 0.001, price=60_000.0)
    for obj in (BookUpdate(instrument_key=SPOT.key, ts_ns=1), request, request.to_order(1), SPOT):
        assert not gc.is_tracked(obj), type(obj).__name__
    assert isinstance(request.to_order(1), Order) and request.type is OrderType.LIMIT
