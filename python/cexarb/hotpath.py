"""Busy polling and hot-path warming for a latency-critical event loop.

Two costs sit between a market-data frame reaching the host and the order it provokes leaving it,
and neither is the work itself:

* **The wake.** An event loop with nothing to do sleeps in ``epoll_wait``; the frame then has to
  wake the thread (on a virtual machine: an interrupt to a halted vCPU) before any code runs.
  A loop that *polls* -- ``epoll_wait`` with a zero timeout, over and over -- is already running
  when the frame lands. This is what kernel-bypass stacks and Linux's ``SO_BUSY_POLL`` do
  (https://docs.kernel.org/networking/napi.html, "Busy polling"), at the price of one core kept
  at 100 %.
* **A cold path.** Code and data not touched for a while leave the CPU caches (other processes,
  other tenants of the host, a vCPU moved to another core). Measured on this project's 2-vCPU
  VM with ``benchmarks/diagnostics/cold_path.py`` (building one
  :class:`~cexarb.venues.base.OrderRequest`, p50): 2.8 µs back to back, 2.9--4.3 µs when it last
  ran 100 µs before, 4.4--6 µs after 300 µs, 9--16 µs after 1 ms, 17--38 µs after 3 ms. Trading systems keep the path warm by running
  it, all but the send, every few tens of µs ("cache warming": C. Cook, *When a Microsecond Is an
  Eternity: High Performance Trading Systems in C++*, CppCon 2017).

:class:`BusyPoll` does both on a running asyncio loop (uvloop or the standard one): it keeps one
callback always ready, so the loop polls its sockets without sleeping, and from that callback runs
the registered *warmers* -- callables that exercise the order path without sending anything, e.g.
``lambda: venue.warm_order(build_request())`` with
:meth:`cexarb.venues.connector.ConnectorBase.warm_order` -- at most once per ``warm_interval_us``.

It is off unless asked for: it costs a whole core, and on a machine with fewer cores than busy
processes it makes latency worse, not better.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

__all__ = ["BusyPoll"]

log = logging.getLogger(__name__)


class BusyPoll:
    """Keep an asyncio loop polling without sleeping, and run warmers on the way.

    Args:
        warm_interval_us: the least time between two runs of the warmers, µs (> 0, finite). The
            warmers run from the polling callback, so a frame that arrives while they run waits
            for them: keep each warmer to a few µs.
        loop: the loop to poll; default the running loop at :meth:`start`.

    Attributes:
        polls: loop iterations seen by the polling callback since :meth:`start`.
        warm_runs: times the warmers ran.
        warm_errors: warmer calls that raised (each warmer's first error is logged at WARNING;
            a warmer that raises stays registered, since a failing warm-up must not stop polling).

    Use as ``with BusyPoll() as poll: ...`` inside a coroutine, or :meth:`start` / :meth:`stop`.

    Raises:
        ValueError: ``warm_interval_us`` not a finite number > 0.
    """

    def __init__(
        self,
        *,
        warm_interval_us: float = 100.0,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not (
            isinstance(warm_interval_us, (int, float))
            and 0 < warm_interval_us < float("inf")
        ):
            raise ValueError(
                f"warm_interval_us must be a finite number > 0, got {warm_interval_us!r}"
            )
        self.warm_interval_ns = int(warm_interval_us * 1_000)
        self._loop = loop
        self._warmers: list[Callable[[], object]] = []
        # warmers whose first error was logged, by equality: a bound method fetched again (as
        # remove_warmer may be given) equals the one registered, its id() does not
        self._failed: list[Callable[[], object]] = []
        self._handle: asyncio.Handle | None = None
        self._running = False
        self._next_warm = 0
        self.polls = 0
        self.warm_runs = 0
        self.warm_errors = 0

    @property
    def running(self) -> bool:
        """Whether the loop is being polled."""
        return self._running

    def add_warmer(self, warmer: Callable[[], object]) -> None:
        """Run ``warmer()`` (no arguments; its result is ignored) every ``warm_interval_us``.

        A warmer must not send anything or change trading state: it runs the path an event would
        take, up to but not including the socket write (see the module docs).
        """
        if not callable(warmer):
            raise TypeError(f"warmer must be callable, got {warmer!r}")
        self._warmers.append(warmer)

    def remove_warmer(self, warmer: Callable[[], object]) -> None:
        """Stop running ``warmer`` (ValueError if it was never added)."""
        self._warmers.remove(warmer)
        if warmer in self._failed:
            self._failed.remove(warmer)

    def start(self) -> None:
        """Start polling (idempotent). Must be called on the loop's thread.

        Raises:
            RuntimeError: no loop was given and none is running.
        """
        if self._running:
            return
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._running = True
        self._next_warm = 0
        self._handle = self._loop.call_soon(self._poll)

    def stop(self) -> None:
        """Stop polling (idempotent): the loop sleeps in its poll again when it has nothing to do."""
        self._running = False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _poll(self) -> None:
        """One loop iteration: re-arm (so the next poll has a ready callback and does not sleep),
        then the warmers when their interval has passed."""
        if not self._running:
            return
        assert self._loop is not None
        self._handle = self._loop.call_soon(self._poll)
        self.polls += 1
        warmers = self._warmers
        if not warmers:
            return
        now = time.perf_counter_ns()
        if now < self._next_warm:
            return
        self._next_warm = now + self.warm_interval_ns
        self.warm_runs += 1
        for warmer in warmers:
            try:
                warmer()
            except Exception as exc:  # noqa: BLE001 - a failing warm-up must not stop the polling
                self.warm_errors += 1
                if warmer not in self._failed:
                    self._failed.append(warmer)
                    log.warning(
                        "hot-path warmer %r failed (further failures are counted only): %r",
                        warmer,
                        exc,
                    )
