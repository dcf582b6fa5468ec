"""Heap growth without page faults on the hot path: a reserve of pre-touched pymalloc arenas.

CPython's small-object allocator takes memory from the OS in arenas (1 MiB on 64-bit CPython
3.10+) whose pages are mapped on first touch, and gives an arena back when its last object dies.
A trading process keeps orders and fills, so its heap grows, and the growth lands on whichever
path allocates next: measured on the P2 tick-to-order path (one pass of the real BTC spot + perp
replay, every wake trading), ~3,600 page faults inside the measured samples, on 26 % of them, all
in pymalloc's ``pymalloc_pool_extend`` (``perf record -e page-faults``).

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


class ArenaReserve:
    """The process's arena reserve (one per process; get it from :func:`install_arena_reserve`).

    Attributes:
        reserve: arenas :meth:`top_up` keeps ready, pages touched.
        max_cached: most arenas held at once (freed ones kept plus the reserve).
    """

    def __init__(self, reserve: int, max_cached: int) -> None:
        self.reserve = reserve
        self.max_cached = max_cached

    def top_up(self, max_new: int = 1) -> int:
        """Allocates and touches up to ``max_new`` arenas while fewer than :attr:`reserve` are
        held; returns how many it added. ~0.1-0.3 ms per arena on a VM: call at a safe point.
        Adds nothing until pymalloc has asked for its first arena since installation."""
        return _core._arena_cache_top_up(self.reserve, max_new)

    def stats(self) -> dict[str, int]:
        """``arena_size`` (bytes), ``cached`` (held now), ``hits`` / ``misses`` (requests served
        from the reserve / passed to the OS), ``kept`` / ``released`` (frees held / returned),
        ``prefaulted`` (arenas touched ahead of need)."""
        stats = _core._arena_cache_stats()
        return dict(stats) if stats is not None else {}


_lock = threading.Lock()
_installed: ArenaReserve | None = None


def install_arena_reserve(reserve_mib: int = 16, max_cached_mib: int = 128) -> ArenaReserve:
    """Installs the arena cache for this process, or returns the one installed.

    Args:
        reserve_mib: memory to keep allocated and touched ahead of need, in MiB (arenas of 1 MiB
            on 64-bit CPython 3.10+; rounded up to whole arenas).
        max_cached_mib: most memory the cache holds, freed arenas included, in MiB; what is
            freed beyond it goes back to the OS. Must be >= ``reserve_mib``.

    Returns:
        The process's :class:`ArenaReserve`. A second call returns the first one unchanged.

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
        # arena size: learnt by the cache from pymalloc's requests; 1 MiB assumed for the caps
        arena_mib = 1
        reserve = -(-reserve_mib // arena_mib)
        max_cached = max_cached_mib // arena_mib
        ctx, alloc, free = _core._arena_cache_install(prev.ctx or 0, prev.alloc or 0, prev.free or 0, max_cached)
        ours = _PyObjectArenaAllocator(ctx or None, alloc, free)
        set_(ctypes.byref(ours))
        _installed = ArenaReserve(reserve, max_cached)
    _learn_arena_size()
    _installed.top_up(max_new=reserve)
    return _installed


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
