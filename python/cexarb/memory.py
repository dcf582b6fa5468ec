"""Heap growth without page faults on the hot path: a reserve of pre-touched pymalloc arenas.

CPython's small-object allocator takes memory from the OS in arenas (1 MiB on 64-bit CPython
3.10+) whose pages are mapped on first touch, and gives an arena back when its last object dies.
A trading process keeps orders and fills, so its heap grows, and the growth lands on whichever
path allocates next: measured on the P2 tick-to-order path (one pass of the real BTC spot + perp
replay, every wake trading), ~3,600 page faults inside the measured samples, on 26 % of them, all
in pymalloc's ``pymalloc_pool_extend`` (``perf record -e page-faults``), and a page fault costs
3.8-22 µs on the benchmarks' VM (``benchmarks/diagnostics/page_fault_cost.py``).

:func:`install_arena_reserve` puts the core's arena cache (``rust/src/arena.rs``) in front of
pymalloc's arena allocator: freed arenas are kept (up to a cap) rather than unmapped, and
:meth:`ArenaReserve.top_up`, called at a driver's safe point, keeps a few arenas allocated with
their pages already touched. :class:`cexarb.gcpolicy.SafePointGc` does both when given a reserve.

The hook is CPython's ``PyObject_GetArenaAllocator`` / ``PyObject_SetArenaAllocator`` (Python
docs, "Memory Management", "Customize pymalloc Arena Allocator"), reached through
``ctypes.pythonapi``. It is process-wide and stays until exit: memory held by the reserve is not
returned to the OS (bounded by ``max_cached_mib``).
"""

from __future__ import annotations

import ctypes
import threading

from cexarb import _core

__all__ = ["ArenaReserve", "install_arena_reserve"]


class _PyObjectArenaAllocator(ctypes.Structure):
    _fields_ = [("ctx", ctypes.c_void_p), ("alloc", ctypes.c_void_p), ("free", ctypes.c_void_p)]


_MIB = 1 << 20


class ArenaReserve:
    """The process's arena reserve (one per process; get it from :func:`install_arena_reserve`).

    Attributes:
        reserve_mib: memory :meth:`top_up` keeps allocated with its pages touched, MiB (in
            whole arenas).
        max_cached_mib: most memory the cache holds at once (freed arenas kept plus the reserve),
            MiB; frees beyond it go back to the OS.
    """

    def __init__(self, reserve_mib: int, max_cached_mib: int) -> None:
        self.reserve_mib = reserve_mib
        self.max_cached_mib = max_cached_mib
        self._target = reserve_mib * _MIB

    def top_up(self, max_pages: int = 16) -> int:
        """Touches at most ``max_pages`` pages of arenas taken ahead of need, while the cache
        holds less than :attr:`reserve_mib`; returns the pages touched (0: the reserve is full).
        One page fault per page: measured 4-22 µs each on the 2-vCPU VM of the benchmarks
        (~0.25 µs on bare metal), so the default bounds a call to ~0.06-0.35 ms there. Call at a
        safe point. Touches nothing until pymalloc has asked for an arena since installation
        (:func:`install_arena_reserve` makes it ask)."""
        return _core._arena_cache_top_up(self._target, max_pages)

    def fill(self) -> int:
        """Tops the reserve up completely (no page bound); returns the pages touched. For start-up
        and other moments where a pause of a few ms is harmless."""
        return _core._arena_cache_top_up(self._target, 1 << 40)

    def stats(self) -> dict[str, int]:
        """``arena_size`` (bytes), ``cached`` (arenas held now), ``hits`` / ``misses`` (requests
        served from the cache / passed to the OS), ``kept`` / ``released`` (frees held /
        returned), ``prefaulted`` (arenas touched ahead of need), ``pages_touched``."""
        stats = _core._arena_cache_stats()
        return dict(stats) if stats is not None else {}

    def reserved_arenas(self) -> int:
        """How many arenas :attr:`reserve_mib` is with this interpreter's arena size."""
        size = self.stats().get("arena_size", 0)
        return self._target // size if size else 0


_lock = threading.Lock()
_installed: ArenaReserve | None = None


def install_arena_reserve(reserve_mib: int = 16, max_cached_mib: int = 128) -> ArenaReserve:
    """Installs the arena cache for this process and fills its reserve, or returns the one
    installed (unchanged: the first call's sizes hold for the process).

    Args:
        reserve_mib: memory to keep allocated with its pages touched ahead of need, MiB (arenas
            are 1 MiB on 64-bit CPython 3.10+).
        max_cached_mib: most memory the cache holds, freed arenas included, MiB; what is freed
            beyond it goes back to the OS. Must be >= ``reserve_mib``.

    Returns:
        The process's :class:`ArenaReserve`. Installing and filling 16 MiB takes ~20 ms.

    Raises:
        ValueError: a size is negative, or ``max_cached_mib < reserve_mib``.
        RuntimeError: this interpreter has no ``PyObject_SetArenaAllocator`` (not CPython).
    """
    global _installed
    if reserve_mib < 0:
        raise ValueError(f"reserve_mib must be >= 0, got {reserve_mib!r}")
    if max_cached_mib < reserve_mib:
        raise ValueError(f"max_cached_mib must be >= reserve_mib ({reserve_mib!r}), got {max_cached_mib!r}")
    with _lock:
        if _installed is not None:
            return _installed
        try:
            get = ctypes.pythonapi.PyObject_GetArenaAllocator
            set_ = ctypes.pythonapi.PyObject_SetArenaAllocator
        except AttributeError as exc:  # pragma: no cover - CPython always has them
            raise RuntimeError("this interpreter has no PyObject_SetArenaAllocator") from exc
        get.argtypes = set_.argtypes = [ctypes.POINTER(_PyObjectArenaAllocator)]
        get.restype = set_.restype = None
        prev = _PyObjectArenaAllocator()
        get(ctypes.byref(prev))
        ctx, alloc, free = _core._arena_cache_install(prev.ctx or 0, prev.alloc or 0, prev.free or 0, max_cached_mib * _MIB)
        ours = _PyObjectArenaAllocator(ctx or None, alloc, free)
        set_(ctypes.byref(ours))
        _installed = reserve = ArenaReserve(reserve_mib, max_cached_mib)
    _learn_arena_size()
    reserve.fill()
    return reserve


def _learn_arena_size(max_chunks: int = 512) -> None:
    """Makes pymalloc ask for one arena, so the cache knows the arena size before the first
    top-up: small objects are allocated (128 KiB at a time, at most 64 MiB) until a request comes,
    then dropped (the arena they filled stays in the cache)."""
    held = []
    for _ in range(max_chunks):
        stats = _core._arena_cache_stats()
        if stats is None or stats["arena_size"]:
            break
        held.append([object() for _ in range(8192)])
    del held
