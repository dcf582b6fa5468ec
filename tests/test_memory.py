"""The arena reserve (``cexarb.memory``, ``rust/src/arena.rs``): heap growth into touched pages.

The reserve is process-wide and stays installed, and how much a heap grows into new arenas
depends on what the process freed before; so each check runs in a fresh interpreter (a
subprocess) that prints its figures as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from cexarb.gcpolicy import SafePointGc
from cexarb.memory import install_arena_reserve

_PRELUDE = """
import json, resource
from cexarb.gcpolicy import SafePointGc
from cexarb.memory import install_arena_reserve

def minflt():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

def grow(mib):
    # about mib MiB of small objects (pymalloc): lists of 50 fresh objects, each list's storage
    # (400 bytes) and its objects all under pymalloc's 512-byte limit
    n = mib * (1 << 20) // (50 * 16 + 56 + 400)
    return [[object() for _ in range(50)] for _ in range(n)]
"""


def _run(body: str) -> dict:
    code = _PRELUDE + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_install_learns_the_arena_size_and_fills_the_reserve() -> None:
    out = _run("""
        reserve = install_arena_reserve(8, 64)
        again = install_arena_reserve(4, 8)
        print(json.dumps({"same": again is reserve, "reserve_mib": reserve.reserve_mib,
                          "arenas": reserve.reserved_arenas(), **reserve.stats()}))
    """)
    assert out["same"]  # once per process: a second call returns the first reserve
    assert out["reserve_mib"] == 8
    assert out["arena_size"] >= 256 * 1024  # 1 MiB on 64-bit CPython 3.10+, 256 KiB before
    assert out["arenas"] == 8 * (1 << 20) // out["arena_size"]
    assert out["cached"] >= out["arenas"]
    assert out["prefaulted"] >= out["arenas"] - 1  # the arena that taught the size counts too


def test_heap_growth_takes_reserved_arenas_without_page_faults() -> None:
    # the same growth (6 MiB of small objects) in a process without and with the reserve
    body = """
        import sys
        if sys.argv[-1] == "reserve":
            reserve = install_arena_reserve(16, 64)
        f0 = minflt()
        held = grow(6)
        faults = minflt() - f0
        stats = reserve.stats() if sys.argv[-1] == "reserve" else {}
        del held
        dropped = reserve.stats() if sys.argv[-1] == "reserve" else {}
        print(json.dumps({"faults": faults, "stats": stats, "dropped": dropped}))
    """
    results = {}
    for mode in ("plain", "reserve"):
        code = _PRELUDE + textwrap.dedent(body)
        proc = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    plain, ours = results["plain"], results["reserve"]
    pages = 6 * (1 << 20) // 4096
    assert plain["faults"] > pages // 2, plain  # without: about one fault per new page
    # with: the arenas' pages were touched ahead (what is left: the outer list's storage, malloc)
    assert ours["faults"] < min(pages // 4, plain["faults"] // 4), (ours, plain)
    assert ours["stats"]["hits"] >= 4, ours
    # dropping the objects gives the arenas back to the cache, not to the OS
    assert ours["dropped"]["kept"] > ours["stats"]["kept"]
    assert ours["dropped"]["cached"] > ours["stats"]["cached"]


def test_top_up_refills_what_growth_took_a_few_pages_per_call() -> None:
    out = _run("""
        reserve = install_arena_reserve(8, 64)
        held = grow(12)  # more than the reserve: the cache runs dry
        low = reserve.stats()["cached"]
        n = reserve.reserved_arenas()
        pages_per_arena = reserve.stats()["arena_size"] // 4096
        steps = [reserve.top_up() for _ in range((n + 1) * pages_per_arena // 16 + 2)]
        print(json.dumps({"low": low, "steps": steps, "after": reserve.stats()["cached"], "arenas": n,
                          "pages_per_arena": pages_per_arena}))
    """)
    assert out["low"] < out["arenas"]
    assert max(out["steps"]) <= 16  # at most 16 pages per call, as at a safe point
    assert sum(out["steps"]) == (out["arenas"] - out["low"]) * out["pages_per_arena"]
    assert out["steps"][-1] == 0  # then the reserve is full
    assert out["after"] == out["arenas"]


def test_safe_points_top_the_reserve_up() -> None:
    out = _run("""
        with SafePointGc(freeze=False, arena_reserve_mib=8) as gcp:
            reserve = install_arena_reserve()
            held = grow(12)
            low = reserve.stats()["cached"]
            for _ in range((reserve.reserved_arenas() + 1) * (reserve.stats()["arena_size"] // 4096) // 16):
                gcp.collect_if_due()
            print(json.dumps({"low": low, "after": reserve.stats()["cached"], "arenas": reserve.reserved_arenas()}))
    """)
    assert out["low"] < out["arenas"]
    assert out["after"] >= out["arenas"]


def test_bad_sizes_are_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="reserve_mib must be >= 0, got -1"):
        install_arena_reserve(-1, 8)
    with pytest.raises(ValueError, match="max_cached_mib must be >= reserve_mib"):
        install_arena_reserve(16, 4)
    with pytest.raises(ValueError, match="arena_reserve_mib must be >= 0 or None, got -2"):
        SafePointGc(arena_reserve_mib=-2)
