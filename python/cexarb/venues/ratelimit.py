"""Client-side rate limits per venue and endpoint class, from the venues' published limits.

Every REST request (and every order on the fast order path) takes a slot from the limiter of its
venue before it goes out. A request belongs to an :class:`EndpointClass` (public market data,
other private calls, order placement, cancels); each class has one or more :class:`Limit`
windows, each *scoped* per endpoint, per symbol, or shared by the whole class. A request
waits until every window that applies to it has room, or fails at once with
:class:`RateLimitExceeded` when the wait would be longer than the caller can afford (an order
that would leave 2 s late is better not sent).

Windows are **sliding logs** (the time and weight of every request in the last ``period_s``), so
no sliding or fixed window of the venue's can ever see more than ``limit`` weight; a leaky bucket
would allow up to twice the limit over a sliding window. Reservations are first come, first
served: a request never overtakes one that is already waiting on the same window.

A 429/418 answer puts the venue (or one class) in a penalty box until its ``Retry-After``
(:meth:`RateLimiter.penalize`). :meth:`RateLimiter.headroom` gives the free fraction of the
tightest window, for the risk layer's "rate-limit headroom" check.

Published limits (``shared/venues/PROTOCOLS.md`` §1.7, §2.6, §3.6):

* **MEXC spot v3** [MX-DOC]: every endpoint has its own budget of 500 weight / 10 s, per IP for
  public and per UID for signed endpoints; weights: ``exchangeInfo`` 10, ``account`` 10,
  ``tradeFee`` 20, others 1; ``account`` and ``batchOrders`` are also limited to 2 requests/s.
* **Gate.io spot v4** [GT-DOC]: public 200 req / 10 s per endpoint; order place + amend 10 req/s
  per UID **and market** ("a total of 10r/s (UID+Market)": one window per currency pair, not one
  for all pairs); cancel (single and batch together) 200 req/s per UID; other private 200 req /
  10 s per endpoint.
* **Gate.io USDT futures v4** [GT-DOC]: order place/amend 100 req/s per UID (all contracts);
  cancel 200 req/s; others 200 req / 10 s per endpoint.

(Gate: ``docs/gateio/rate_limits.md`` "Frequency limit rule" of the APIv4 docs, read through the
``rosssaunders/coincise`` copy, PROTOCOLS.md [GT-DOC].)

"Per endpoint" means per **route**, not per concrete path: Gate counts ``GET
/spot/orders/{order_id}`` once whatever the order id, so a path with an id in it is keyed by its
route template (:meth:`VenueLimits.endpoint`, :func:`gate_endpoint`): querying 300 different
orders in 10 s is over the limit, though each order's own path was asked once.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Final

import msgspec

__all__ = [
    "GATE_FUTURES_LIMITS",
    "GATE_SPOT_LIMITS",
    "MEXC_SPOT_LIMITS",
    "VENUE_LIMITS",
    "EndpointClass",
    "Limit",
    "RateLimitExceeded",
    "RateLimiter",
    "Scope",
    "VenueLimits",
    "gate_endpoint",
]

log = logging.getLogger(__name__)


class EndpointClass(enum.StrEnum):
    """What a request is, for rate limiting."""

    PUBLIC = "public"  # market data, server time, instruments
    PRIVATE = "private"  # signed, not an order or cancel: balances, queries, listen keys
    ORDER = "order"  # place / amend
    CANCEL = "cancel"  # cancel one / cancel all


class Scope(enum.StrEnum):
    """What one window counts: each endpoint path, each symbol, or the whole class together."""

    ENDPOINT = "endpoint"
    SYMBOL = "symbol"
    CLASS = "class"


class Limit(msgspec.Struct, frozen=True, kw_only=True):
    """At most ``limit`` weight in any ``period_s`` seconds, counted per ``scope``.

    ``paths``: when not empty, the window applies only to these endpoint paths (e.g. MEXC's
    2 req/s on ``/api/v3/account``); ``count_requests``: count 1 per request instead of the
    request's weight.
    """

    limit: int
    period_s: float
    scope: Scope = Scope.ENDPOINT
    paths: frozenset[str] = frozenset()
    count_requests: bool = False

    def __post_init__(self) -> None:
        if self.limit <= 0 or not (self.period_s > 0 and math.isfinite(self.period_s)):
            raise ValueError(f"Limit needs limit > 0 and a finite period_s > 0, got {self.limit!r}/{self.period_s!r}")


class VenueLimits(msgspec.Struct, frozen=True, kw_only=True):
    """The published limits of one venue: windows per endpoint class, weights per path.

    ``templates``: ``(collection path + "/", route template)`` pairs; a request path that is one
    more segment under a collection (``/api/v4/spot/orders/t-abc``) counts as the route template
    (``/api/v4/spot/orders/{order_id}``) in per-endpoint windows (:meth:`endpoint`).
    """

    venue: str
    classes: Mapping[EndpointClass, tuple[Limit, ...]]
    weights: Mapping[str, int] = {}
    templates: tuple[tuple[str, str], ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        for prefix, template in self.templates:
            if not prefix.endswith("/") or not template.startswith(prefix):
                raise ValueError(
                    f"{self.venue} templates: prefix must end with '/' and start its template, "
                    f"got prefix={prefix!r} template={template!r}"
                )

    def weight(self, path: str) -> int:
        """Weight of one request to ``path`` (1 unless the venue publishes another)."""
        return self.weights.get(path, 1)

    def endpoint(self, path: str) -> str:
        """The endpoint ``path`` counts against: its route template when it is one segment below a
        templated collection (``/api/v4/spot/orders/123`` -> ``/api/v4/spot/orders/{order_id}``),
        else ``path`` itself. The query string is never part of ``path``."""
        for prefix, template in self.templates:
            if path.startswith(prefix):
                rest = path[len(prefix) :]
                if rest and "/" not in rest:
                    return template
        return path


class RateLimitExceeded(Exception):
    """The request would have to wait longer than allowed; nothing was reserved.

    ``wait_s`` is how long it would have had to wait.
    """

    def __init__(self, venue: str, endpoint_class: EndpointClass, endpoint: str, wait_s: float) -> None:
        super().__init__(
            f"{venue} {endpoint_class} {endpoint or '-'}: rate limit needs a {wait_s * 1e3:.0f} ms wait, over the allowed"
        )
        self.venue = venue
        self.endpoint_class = endpoint_class
        self.endpoint = endpoint
        self.wait_s = wait_s


_MEXC_BUDGET = Limit(limit=500, period_s=10.0, scope=Scope.ENDPOINT)
MEXC_SPOT_LIMITS: Final = VenueLimits(
    venue="mexc-spot",
    classes={
        EndpointClass.PUBLIC: (_MEXC_BUDGET,),
        EndpointClass.PRIVATE: (
            _MEXC_BUDGET,
            Limit(limit=2, period_s=1.0, paths=frozenset({"/api/v3/account"}), count_requests=True),
        ),
        EndpointClass.ORDER: (
            _MEXC_BUDGET,
            Limit(limit=2, period_s=1.0, paths=frozenset({"/api/v3/batchOrders"}), count_requests=True),
        ),
        EndpointClass.CANCEL: (_MEXC_BUDGET,),
    },
    weights={"/api/v3/exchangeInfo": 10, "/api/v3/account": 10, "/api/v3/tradeFee": 20},
    source="MEXC spot v3 docs, 'Limits' (PROTOCOLS.md §1.7)",
)

_GATE_PER_ENDPOINT = Limit(limit=200, period_s=10.0, scope=Scope.ENDPOINT)
_GATE_API = "/api/v4"
#: Gate routes with a path parameter our connectors (or the simulator) use: collection + "/" and
#: the route template its one-segment children count as (Gate APIv4 docs, the endpoint list;
#: PROTOCOLS.md §2.2, §3.2). Settle stays literal (``usdt``): the only one traded here.
_GATE_TEMPLATES: Final = (
    (f"{_GATE_API}/spot/orders/", f"{_GATE_API}/spot/orders/{{order_id}}"),
    (f"{_GATE_API}/spot/price_orders/", f"{_GATE_API}/spot/price_orders/{{order_id}}"),
    (f"{_GATE_API}/spot/currency_pairs/", f"{_GATE_API}/spot/currency_pairs/{{currency_pair}}"),
    (f"{_GATE_API}/futures/usdt/orders/", f"{_GATE_API}/futures/usdt/orders/{{order_id}}"),
    (f"{_GATE_API}/futures/usdt/price_orders/", f"{_GATE_API}/futures/usdt/price_orders/{{order_id}}"),
    (f"{_GATE_API}/futures/usdt/contracts/", f"{_GATE_API}/futures/usdt/contracts/{{contract}}"),
    (f"{_GATE_API}/futures/usdt/positions/", f"{_GATE_API}/futures/usdt/positions/{{contract}}"),
)
GATE_SPOT_LIMITS: Final = VenueLimits(
    venue="gateio-spot",
    classes={
        EndpointClass.PUBLIC: (_GATE_PER_ENDPOINT,),
        EndpointClass.PRIVATE: (_GATE_PER_ENDPOINT,),
        # "batch/single order placement and amend: a total of 10r/s (UID+Market)": per pair
        EndpointClass.ORDER: (Limit(limit=10, period_s=1.0, scope=Scope.SYMBOL),),
        # "batch/single order cancellation: a total of 200r/s": per UID, all pairs and routes
        EndpointClass.CANCEL: (Limit(limit=200, period_s=1.0, scope=Scope.CLASS),),
    },
    templates=_GATE_TEMPLATES,
    source="Gate.io APIv4 docs, 'Frequency limit rule' (PROTOCOLS.md §2.6)",
)
GATE_FUTURES_LIMITS: Final = VenueLimits(
    venue="gateio-futures",
    classes={
        EndpointClass.PUBLIC: (_GATE_PER_ENDPOINT,),
        EndpointClass.PRIVATE: (_GATE_PER_ENDPOINT,),
        # "batch/single order placement and amend: a total of 100r/s" per UID, all contracts
        EndpointClass.ORDER: (Limit(limit=100, period_s=1.0, scope=Scope.CLASS),),
        EndpointClass.CANCEL: (Limit(limit=200, period_s=1.0, scope=Scope.CLASS),),
    },
    templates=_GATE_TEMPLATES,
    source="Gate.io APIv4 docs, 'Frequency limit rule' (PROTOCOLS.md §3.6)",
)


def gate_endpoint(path: str) -> str:
    """The Gate endpoint (route template) ``path`` is rate-limited as: ``/api/v4/spot/orders/t-x``
    and ``/api/v4/futures/usdt/orders/123`` count as ``.../orders/{order_id}``; a path without a
    path parameter is its own endpoint. Gate counts "per endpoint" (APIv4 docs, "Frequency limit
    rule"; PROTOCOLS.md §2.6, §3.6), as the simulator does (its route's canonical template)."""
    return GATE_SPOT_LIMITS.endpoint(path)

#: published limits by venue name (the ``Instrument.venue`` strings)
VENUE_LIMITS: Final[dict[str, VenueLimits]] = {
    v.venue: v for v in (MEXC_SPOT_LIMITS, GATE_SPOT_LIMITS, GATE_FUTURES_LIMITS)
}


_MAX_ROUTES: Final = 4096  # cached (class, endpoint, symbol) routes before the cache is cleared


class _Window:
    """Sliding log of (time, weight) in the last ``period_s``; times never decrease."""

    __slots__ = ("entries", "limit", "period_s", "total")

    def __init__(self, limit: int, period_s: float) -> None:
        self.limit = limit
        self.period_s = period_s
        self.entries: deque[tuple[float, int]] = deque()
        self.total = 0

    def _purge(self, now: float) -> None:
        horizon = now - self.period_s
        entries = self.entries
        while entries and entries[0][0] <= horizon:
            self.total -= entries.popleft()[1]

    def earliest(self, weight: int, now: float) -> float:
        """The earliest time >= now (and >= the newest reservation) at which ``weight`` fits."""
        self._purge(now)
        last = self.entries[-1][0] if self.entries else now
        excess = self.total + weight - self.limit
        if excess <= 0:
            return max(now, last)
        freed = 0
        for stamp, w in self.entries:
            freed += w
            if freed >= excess:
                return max(now, last, stamp + self.period_s)
        return max(now, last)  # pragma: no cover - weight <= limit is checked by the caller

    def commit(self, at: float, weight: int) -> None:
        self.entries.append((at, weight))
        self.total += weight

    def used(self, now: float) -> int:
        """Weight in the window now, reservations for later included."""
        self._purge(now)
        return self.total


class RateLimiter:
    """The client-side limiter of one venue (one per API key for private classes).

    Args:
        limits: the venue's published limits (:data:`VENUE_LIMITS`).
        scale: fraction of each published limit to use (0 < scale <= 1): keep a margin for
            clock differences and for other clients of the same key.
        clock: monotonic seconds; tests pass a fake one.
    """

    def __init__(self, limits: VenueLimits, *, scale: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < scale <= 1:
            raise ValueError(f"scale must be in (0, 1], got {scale!r}")
        self.limits = limits
        self.scale = scale
        self._clock = clock
        self._windows: dict[tuple[int, str, str], _Window] = {}
        # (class, endpoint, symbol) -> its windows and whether each counts requests (cache)
        self._routes: dict[tuple[EndpointClass, str, str], tuple[tuple[_Window, bool], ...]] = {}
        self._penalty_until: dict[EndpointClass | None, float] = {}
        self.waited_s = 0.0  # total time spent waiting (metrics)
        self.rejected = 0  # RateLimitExceeded raised

    @property
    def venue(self) -> str:
        return self.limits.venue

    def _windows_for(self, endpoint_class: EndpointClass, endpoint: str, symbol: str) -> list[tuple[_Window, Limit]]:
        """The windows a request to ``endpoint`` (a path or its route template) takes a slot in."""
        endpoint = self.limits.endpoint(endpoint)
        out = []
        for i, limit in enumerate(self.limits.classes.get(endpoint_class, ())):
            if limit.paths and endpoint not in limit.paths:
                continue
            if limit.scope is Scope.ENDPOINT:
                scope_key = endpoint
            elif limit.scope is Scope.SYMBOL:
                scope_key = symbol
            else:
                scope_key = ""
            key = (i, str(endpoint_class), scope_key)
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = _Window(max(1, int(limit.limit * self.scale)), limit.period_s)
            out.append((window, limit))
        return out

    def _plan(
        self, endpoint_class: EndpointClass, endpoint: str, symbol: str, weight: int | None
    ) -> tuple[float, float, list[tuple[_Window, int]]]:
        now = self._clock()
        w = self.limits.weight(endpoint) if weight is None else weight
        if w <= 0:
            raise ValueError(f"rate-limit weight must be > 0, got {w!r}")
        at = now
        if self._penalty_until:
            for cls in (None, endpoint_class):
                at = max(at, self._penalty_until.get(cls, 0.0))
        key = (endpoint_class, endpoint, symbol)
        windows = self._routes.get(key)
        if windows is None:
            # a path with an id in it is cached under its route template (never under the path:
            # one entry per order id would flush the cache, and they share one window anyway)
            template = self.limits.endpoint(endpoint)
            if template != endpoint:
                key = (endpoint_class, template, symbol)
                windows = self._routes.get(key)
        if windows is None:
            if len(self._routes) >= _MAX_ROUTES:  # e.g. a venue whose id paths have no template
                self._routes.clear()
            windows = self._routes[key] = tuple(
                (window, limit.count_requests) for window, limit in self._windows_for(endpoint_class, endpoint, symbol)
            )
        planned = []
        for window, count_requests in windows:
            units = 1 if count_requests else w
            if units > window.limit:
                raise ValueError(
                    f"{self.venue} {endpoint}: weight {units} exceeds the window limit {window.limit} per {window.period_s} s"
                )
            at = max(at, window.earliest(units, now))
            planned.append((window, units))
        return now, at, planned

    def try_acquire(
        self, endpoint_class: EndpointClass, *, endpoint: str = "", symbol: str = "", weight: int | None = None
    ) -> bool:
        """Take a slot now if there is one (no wait); False (nothing taken) otherwise."""
        now, at, planned = self._plan(endpoint_class, endpoint, symbol, weight)
        if at > now:
            return False
        for window, units in planned:
            window.commit(now, units)
        return True

    async def acquire(
        self,
        endpoint_class: EndpointClass,
        *,
        endpoint: str = "",
        symbol: str = "",
        weight: int | None = None,
        max_wait_s: float = math.inf,
    ) -> float:
        """Reserve a slot in every window that applies, then wait for it; returns the wait (s).

        Args:
            endpoint: the request path (e.g. ``/api/v3/order``), for per-endpoint windows; a path
                with an id in it counts as its route template (:meth:`VenueLimits.endpoint`).
            symbol: the market, for per-symbol windows (Gate spot orders: per UID and pair).
            weight: the request's weight; default the venue's published weight for the path.
            max_wait_s: the longest wait the caller accepts.

        Raises:
            RateLimitExceeded: the wait would exceed ``max_wait_s`` (nothing reserved).
            ValueError: a weight larger than a window's whole limit.
        """
        now, at, planned = self._plan(endpoint_class, endpoint, symbol, weight)
        wait = at - now
        if wait > max_wait_s:
            self.rejected += 1
            raise RateLimitExceeded(self.venue, endpoint_class, endpoint, wait)
        for window, units in planned:
            window.commit(at, units)
        if wait > 0:
            self.waited_s += wait
            log.debug(
                "venue=%s class=%s endpoint=%s rate-limit wait %.1f ms",
                self.venue,
                endpoint_class,
                endpoint,
                wait * 1e3,
            )
            await asyncio.sleep(wait)
        return wait

    def penalize(self, retry_after_s: float, endpoint_class: EndpointClass | None = None) -> None:
        """Hold every request (of one class, or all) for ``retry_after_s`` after a 429/418."""
        if not (retry_after_s >= 0 and math.isfinite(retry_after_s)):
            raise ValueError(f"retry_after_s must be finite and >= 0, got {retry_after_s!r}")
        until = self._clock() + retry_after_s
        if until > self._penalty_until.get(endpoint_class, 0.0):
            self._penalty_until[endpoint_class] = until
        log.warning(
            "venue=%s rate limited by the venue: holding %s requests for %.1f s",
            self.venue,
            endpoint_class or "all",
            retry_after_s,
        )

    def headroom(self, endpoint_class: EndpointClass, *, endpoint: str = "", symbol: str = "") -> float:
        """Free fraction (0..1) of the tightest window that applies now; 0 while penalized."""
        now = self._clock()
        for cls in (None, endpoint_class):
            if self._penalty_until.get(cls, 0.0) > now:
                return 0.0
        free = 1.0
        for window, _ in self._windows_for(endpoint_class, endpoint, symbol):
            free = min(free, max(0.0, 1.0 - window.used(now) / window.limit))
        return free
