"""Clocks: simulated time for replay (deterministic), wall time for live.

The replay driver owns a :class:`SimClock`: recorded events carry their own ``local_ns`` and the
simulated venue schedules acks, fills and order arrivals on the clock at ``now + latency``.
Scheduled callbacks due at or before a data event's timestamp run before that event; ties run
in the order they were scheduled, so a replay is deterministic.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Callable, Protocol

__all__ = ["Clock", "LiveClock", "SimClock", "TimerHandle"]


class TimerHandle:
    """Returned by :meth:`Clock.schedule`; ``cancel()`` stops the callback from running."""

    __slots__ = ("ts_ns", "callback", "cancelled")

    def __init__(self, ts_ns: int, callback: Callable[[], None]) -> None:
        self.ts_ns = ts_ns
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Clock(Protocol):
    def now_ns(self) -> int:
        """Current time, ns since the Unix epoch."""
        ...

    def schedule(self, ts_ns: int, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback()`` at ``ts_ns`` (or as soon as possible after, never before)."""
        ...


class SimClock:
    """Simulated time: advanced by the replay driver, never by the wall clock."""

    def __init__(self, start_ns: int = 0) -> None:
        self._now = start_ns
        self.queue: list[tuple[int, int, TimerHandle]] = []
        self._seq = itertools.count()

    def now_ns(self) -> int:
        return self._now

    def advance(self, ts_ns: int) -> None:
        """Move time forward to ``ts_ns`` (never backward) without running callbacks."""
        if ts_ns > self._now:
            self._now = ts_ns

    def schedule(self, ts_ns: int, callback: Callable[[], None]) -> TimerHandle:
        handle = TimerHandle(max(ts_ns, self._now), callback)
        heapq.heappush(self.queue, (handle.ts_ns, next(self._seq), handle))
        return handle

    def next_due_ns(self) -> int | None:
        """Time of the earliest pending callback, or None."""
        while self.queue and self.queue[0][2].cancelled:
            heapq.heappop(self.queue)
        return self.queue[0][0] if self.queue else None

    def run_next(self, until_ns: int) -> bool:
        """Run the earliest callback if it is due at or before ``until_ns``; time moves to its due
        time. Returns False when none is due (time unchanged)."""
        queue = self.queue
        while queue and queue[0][0] <= until_ns:
            ts, _, handle = heapq.heappop(queue)
            if handle.cancelled:
                continue
            if ts > self._now:
                self._now = ts
            handle.callback()
            return True
        return False

    def run_due(self, until_ns: int) -> int:
        """Run every callback due at or before ``until_ns`` in time order; returns how many ran.

        Time is set to each callback's due time while it runs, then to ``until_ns``. A callback may
        schedule more; those due by ``until_ns`` run in this call too.
        """
        ran = 0
        heap = self.queue
        while heap and heap[0][0] <= until_ns:
            ts, _, handle = heapq.heappop(heap)
            if handle.cancelled:
                continue
            if ts > self._now:
                self._now = ts
            handle.callback()
            ran += 1
        self.advance(until_ns)
        return ran

    @property
    def pending(self) -> int:
        return sum(1 for _, _, h in self.queue if not h.cancelled)


class LiveClock:
    """Wall-clock time on the running asyncio loop."""

    def now_ns(self) -> int:
        return time.time_ns()

    def schedule(self, ts_ns: int, callback: Callable[[], None]) -> TimerHandle:
        import asyncio

        loop = asyncio.get_running_loop()
        handle = TimerHandle(ts_ns, callback)
        delay_s = max(0.0, (ts_ns - time.time_ns()) / 1e9)

        def _run() -> None:
            if not handle.cancelled:
                callback()

        loop.call_later(delay_s, _run)
        return handle
