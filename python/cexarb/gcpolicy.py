"""Cyclic garbage collection at safe points, never in the middle of a tick-to-order path.

CPython's cyclic collector runs when the count of new container objects passes
``gc.get_threshold()[0]`` (700 by default): at whichever allocation crosses it, which on a trading
path is often between a book message and the order it provokes. Measured on the P2 path (one
pass of the real BTC spot + perp replay, SIMPLE_ARBITRAGE trading on every wake): 197
generation-0 collections of ~45 µs each, 17 generation-1 of ~0.5 ms and 2 full ones, i.e. about 2
wakes in 100 paid a collection -- the whole p99 of the path.

:class:`SafePointGc` switches the automatic collector off while a driver runs and lets the
driver collect at points it chooses (after a message has been handled and its orders are out,
and on an idle timer), with CPython's own thresholds and generation rule: generation 0 when its
count passes threshold 0, generation 1 every threshold-1 generation-0 collections, a full
collection every threshold-2 generation-1 collections (CPython adds a "long-lived pending > 25 %"
condition for the full collection that Python cannot read; without it full collections are
somewhat more frequent, which costs memory nothing). Memory stays bounded as with the automatic
collector as long as the driver reaches a safe point regularly.

It also freezes the start-up heap (``gc.freeze``): modules, instruments, recordings and
snapshots are never garbage, so collections scan only what the trading loop allocates.

With ``arena_reserve_mib`` it also keeps memory ready for the heap to grow into
(:mod:`cexarb.memory`): pymalloc arenas whose pages are touched ahead of need, topped up at the
same safe points, so an order path that allocates does not take page faults.

References: Python docs, ``gc`` module (``disable``, ``get_count``, ``get_threshold``,
``freeze``); "Garbage collector design", CPython developer guide (generations and thresholds).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from types import TracebackType
from typing import Self

__all__ = ["SafePointGc"]


class SafePointGc:
    """Context manager: automatic GC off (start-up heap frozen) inside, :meth:`collect_if_due` at
    the driver's safe points.

    Args:
        freeze: ``gc.freeze()`` on entry, ``gc.unfreeze()`` on exit. Garbage that exists at entry
            is frozen with the rest and collected after exit (unless ``collect_first``).
        collect_first: a full ``gc.collect()`` before freezing (~5-20 ms with a loaded process:
            worth it once for a long live run, not per backtest).
        arena_reserve_mib: install the process's arena reserve (:func:`cexarb.memory.install_arena_reserve`,
            process-wide, kept after exit) with this much memory touched ahead of need, in MiB;
            fill it on entry and top it up at each :meth:`collect_if_due` (at most 16 pages per
            call, see :meth:`cexarb.memory.ArenaReserve.top_up`). None (the default): no
            reserve. If a reserve is installed already, that one is used, with its own size.

    Attributes:
        collections: collections made by :meth:`collect_if_due`, per generation ``[g0, g1, g2]``.

    Nested use is allowed: an inner manager leaves the collector as the outer one set it.
    """

    def __init__(self, *, freeze: bool = True, collect_first: bool = False, arena_reserve_mib: int | None = None) -> None:
        if arena_reserve_mib is not None and arena_reserve_mib < 0:
            raise ValueError(f"arena_reserve_mib must be >= 0 or None, got {arena_reserve_mib!r}")
        self.freeze = freeze
        self.collect_first = collect_first
        self.arena_reserve_mib = arena_reserve_mib
        self._top_up: Callable[[], int] | None = None
        self.collections = [0, 0, 0]
        self._was_enabled = False
        self._threshold = (700, 10, 10)
        self._entered = False

    def __enter__(self) -> Self:
        if self._entered:
            raise RuntimeError("SafePointGc is not re-entrant; use a new instance")
        self._entered = True
        if self.arena_reserve_mib is not None:
            from cexarb.memory import install_arena_reserve

            reserve_mib = self.arena_reserve_mib
            reserve = install_arena_reserve(reserve_mib, max(128, reserve_mib))
            reserve.fill()  # what earlier users of the process took, before the safe points start
            self._top_up = reserve.top_up
        self._threshold = gc.get_threshold()
        self._was_enabled = gc.isenabled()
        if self.freeze:
            if self.collect_first:
                gc.collect()
            gc.freeze()
        gc.disable()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._was_enabled:
            gc.enable()
        if self.freeze:
            gc.unfreeze()
        self._entered = False

    def collect_if_due(self) -> int:
        """Collect the generation CPython would collect now, if any; call at a safe point.

        Returns:
            The generation collected (0, 1 or 2), or -1 when no collection was due. Costs one
            ``gc.get_count()`` when none is due (and with an arena reserve, one call to the core
            that tops it up when the heap has grown into it).
        """
        if self._top_up is not None:
            self._top_up()
        c0, c1, c2 = gc.get_count()
        t0, t1, t2 = self._threshold
        if t0 <= 0 or c0 <= t0:
            return -1
        # CPython's collect_generations(): the oldest generation whose count passed its threshold
        generation = 2 if c2 > t2 else 1 if c1 > t1 else 0
        gc.collect(generation)
        self.collections[generation] += 1
        return generation
