"""The fast order path: signed HTTP/1.1 requests on persistent keep-alive connections.

``aiohttp.ClientSession.post`` costs ~130 µs of client CPU per request (issue 4, P5); an order
that leaves 100 µs later is a worse fill. :class:`OrderEntryClient` keeps its own connection(s)
to the venue's REST host open and writes each request as one pre-assembled byte string on an
:mod:`asyncio` transport; responses are parsed with ``httptools`` (the llhttp parser that uvloop's
ecosystem uses). Market data and every other REST call stay on aiohttp
(:mod:`cexarb.venues.rest`).

* **Connections**: ``pool_size`` persistent connections (default 1: orders to one venue are
  sequential on it; no pipelining -- one request in flight per connection). TLS when the base
  URL is ``https``. TCP_NODELAY is set (asyncio and uvloop set it on TCP transports).
* **Reconnect on close**: a connection closed by the venue (``Connection: close``, idle timeout,
  reset) is dropped and replaced in the background with backoff, so the next order finds a warm
  one; a request that finds none connects inline within its deadline. ``keepalive_path`` (e.g.
  ``/api/v3/ping``) makes the client send a cheap GET on idle connections every
  ``keepalive_interval_s`` so the venue never closes them for idling.
* **Deadline per request** (``timeout_s``, default ``request_timeout_s``): connection wait or
  connect, rate-limit wait and response all included. No connection in time:
  :class:`~cexarb.venues.rest.RequestTimeoutError` (:class:`~cexarb.venues.rest.NetworkError`
  when an inline connect fails or times out; nothing sent); the limiter would make the request
  wait past its deadline: :class:`~cexarb.venues.ratelimit.RateLimitExceeded` (nothing sent).
  When a request in flight expires, the connection is closed (a late response would
  desynchronise it) and :class:`~cexarb.venues.rest.OutcomeUnknownError` is raised for a
  non-idempotent request (the order may exist: query it by client order id), or
  :class:`~cexarb.venues.rest.RequestTimeoutError` for an idempotent one.
* **Signing and errors**: the same :class:`~cexarb.venues.rest.RequestAuth` adapters and error
  mappers as the REST client (:class:`~cexarb.venues.rest.MexcAuth`,
  :class:`~cexarb.venues.rest.GateAuth`, :func:`~cexarb.venues.rest.mexc_error`,
  :func:`~cexarb.venues.rest.gate_error`): a non-2xx answer raises the same typed errors.
* **Retries**: an idempotent request (a cancel by client order id) is retried once on a fresh
  connection when its connection dropped before any response byte (without a second rate-limit
  slot); an order never is.
* **Rate limits**: ``limiter`` slots are taken per request (class ``ORDER`` by default), in this
  order: first a connection (waiting for one when all are busy), *then* the slot (waiting for it
  with the connection held), then the write, with no await in between. The venue counts a
  request when it arrives, the limiter by the time of its slot: a slot taken before waiting for
  a busy connection would go out late, and requests whose slots were spread over a window would
  all be written together once a connection freed up -- more in one of the venue's windows than
  the limit (a 429 or a ban, what the limiter is there to prevent). Holding the connection during
  the slot wait delays the requests queued for a connection by at most that wait (with
  ``pool_size`` 1, a cancel of another class waits behind an order waiting for its slot; more
  connections let it go on another one). A request refused by the limiter, or cancelled during
  either wait, gives its connection back at once; one cancelled while waiting for a connection
  has taken no slot. The limiter cannot give back a reserved slot: a request cancelled during its
  slot wait stays counted until its window passes (over-counted, never under-counted).
  A connection the venue closes during the slot wait is replaced: the request writes on an idle
  one if there is one, else waits for a connection and a new slot (within the deadline).
* **Prepared requests**: with an auth adapter that has ``line_signer`` (Gate's
  :class:`~cexarb.venues.rest.GateAuth`), a signed request without a query (an order) is built
  from its request line and fixed headers encoded once per (method, path), and a signature whose
  fixed start (``METHOD\npath\n\n``) was absorbed into the HMAC state once: per order, the body's
  SHA-512, the HMAC of ~140 bytes and one bytes format. The bytes are the same as the general
  path's.
* **No task hop** (:meth:`OrderEntryClient.start_request`): when a connection is idle and a
  rate-limit slot is free now, the request is signed and written on the socket *before* the call
  returns; the returned coroutine only waits for the response (``loop.create_task(client.start_request(..))``
  sends at once instead of on the task's first step). :meth:`OrderEntryClient.request` is the same
  request awaited in one go. The connection goes back to the pool when its response is parsed
  (in the protocol callback), so a response that nobody awaits never strands the connection.

Nothing here logs request lines, headers or bodies (they carry keys and signatures).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import ssl as ssl_module
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any, Final, Protocol, Self, runtime_checkable
from urllib.parse import urlsplit

import httptools

from cexarb.venues.ratelimit import EndpointClass, RateLimiter
from cexarb.venues.rest import (
    BadResponseError,
    ErrorMapper,
    NetworkError,
    NoAuth,
    OutcomeUnknownError,
    QueryParams,
    RequestAuth,
    RequestTimeoutError,
    ServerError,
    generic_error,
)

__all__ = ["OrderEntryClient", "OrderEntryResponse"]

log = logging.getLogger(__name__)

_IDEMPOTENT: Final = frozenset({"GET", "HEAD"})
_TIMER_SLACK_S: Final = 0.002  # a deadline this close is due (uvloop timers have ms resolution)
_MAX_PREPARED: Final = 32  # (method, path) pairs whose request head and signature start are kept


class OrderEntryResponse:
    """A 2xx response: ``status``, ``body`` bytes, ``headers`` (lower-cased names, str values),
    ``elapsed_ns`` from the write to the last byte parsed."""

    __slots__ = ("body", "elapsed_ns", "raw_headers", "status")

    def __init__(self, status: int, raw_headers: list[tuple[bytes, bytes]], body: bytes, elapsed_ns: int) -> None:
        self.status = status
        self.raw_headers = raw_headers
        self.body = body
        self.elapsed_ns = elapsed_ns

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.raw_headers}

    def __repr__(self) -> str:
        return f"OrderEntryResponse(status={self.status}, {len(self.body)} bytes, {self.elapsed_ns / 1e3:.0f} µs)"


@runtime_checkable
class _LineAuth(Protocol):
    """An auth adapter that can also give its headers as ready HTTP/1.1 lines (GateAuth)."""

    def sign_lines(self, method: str, path: str, params: QueryParams, body: bytes) -> tuple[str, bytes]: ...


class _ConnectionLost(Exception):
    """The connection closed before the response was complete; ``got_bytes`` if any arrived."""

    def __init__(self, got_bytes: bool) -> None:
        super().__init__("connection lost")
        self.got_bytes = got_bytes


class _Response:
    __slots__ = ("body", "elapsed_ns", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, elapsed_ns: int) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.elapsed_ns = elapsed_ns


class _Connection(asyncio.Protocol):
    """One keep-alive connection: writes a request, parses the response with httptools, and puts
    itself back in the pool (or closes) as soon as the response is complete."""

    def __init__(self, client: OrderEntryClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[_Response] | None = None
        self.deadline = math.inf  # loop time by which the response in flight must be complete
        self.closed = False
        self.got_bytes = False
        self.sent_ns = 0
        self.last_used = time.monotonic()
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # Write at once: uvloop queues a write below the high-water mark until the end of the
        # current batch of callbacks (after the rest of the market handler, the WS read loop...);
        # with the mark at 0 every write goes to the socket inside transport.write(). A request
        # the socket cannot take whole only pauses the protocol (no-op) until libuv drained it.
        try:
            transport.set_write_buffer_limits(high=0)  # type: ignore[attr-defined]
        except (AttributeError, NotImplementedError, RuntimeError):  # pragma: no cover - odd transports
            pass

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(BadResponseError(self.client.venue, f"malformed HTTP response: {type(exc).__name__}"))
            self.close()

    def eof_received(self) -> bool | None:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(_ConnectionLost(self.got_bytes))
        self.client._on_connection_lost(self)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._headers = []
        self._body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        parts = self._body
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        parser = self.parser
        response = _Response(parser.get_status_code(), self._headers, body, time.perf_counter_ns() - self.sent_ns)
        waiter, self.waiter = self.waiter, None
        if waiter is None or waiter.done():  # a response nobody waits for: the connection is out of step
            log.warning("venue=%s unexpected HTTP response on the order connection; closing it", self.client.venue)
            self.close()
            return
        if parser.should_keep_alive():
            self.client._release(self)  # free before the waiting coroutine runs
        else:
            self.close()  # connection_lost() then schedules the replacement
        waiter.set_result(response)

    # ours
    def expire(self) -> None:
        """The request's deadline passed without a complete response: close (a late response would
        desynchronise the connection) and fail the waiter with TimeoutError."""
        waiter, self.waiter = self.waiter, None
        self.close()
        self.client._all.discard(self)
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError())

    def abandon(self, waiter: asyncio.Future[_Response]) -> None:
        """The caller stopped waiting for ``waiter`` (cancelled): if the request is still in flight on
        this connection, the connection is out of step -- close it."""
        if self.waiter is waiter:
            self.waiter = None
            self.close()
            self.client._all.discard(self)

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()


class OrderEntryClient:
    """Signed requests on persistent connections; ``async with OrderEntryClient(...) as oe:``.

    Args:
        venue: venue name, for errors and logs.
        base_url: ``http(s)://host[:port]``.
        auth: signs requests with ``signed=True`` (an adapter with ``sign_lines``, such as
            :class:`~cexarb.venues.rest.GateAuth`, is used through it: headers come as ready lines).
        error_mapper: non-2xx -> typed error (:func:`~cexarb.venues.rest.mexc_error`...).
        limiter: the venue's rate limiter (None: none).
        pool_size: persistent connections kept open.
        connect_timeout_s: deadline of one connect (also bounded by the request's deadline).
        request_timeout_s: default deadline of a request.
        headers: sent on every request (``User-Agent``...).
        ssl_context: TLS context for ``https`` (default: the system's).
        keepalive_path: a cheap GET path to send on idle connections (None: none).
        keepalive_interval_s: idle time after which ``keepalive_path`` is sent.
        reconnect_max_s: cap of the background reconnect backoff.
    """

    def __init__(
        self,
        venue: str,
        base_url: str,
        *,
        auth: RequestAuth | None = None,
        error_mapper: ErrorMapper = generic_error,
        limiter: RateLimiter | None = None,
        pool_size: int = 1,
        connect_timeout_s: float = 3.0,
        request_timeout_s: float = 2.0,
        headers: Mapping[str, str] | None = None,
        ssl_context: ssl_module.SSLContext | None = None,
        keepalive_path: str | None = None,
        keepalive_interval_s: float = 15.0,
        reconnect_max_s: float = 5.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be http(s)://host[:port], got {base_url!r}")
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size!r}")
        self.venue = venue
        self.host = parts.hostname
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        default_port = self.port == (443 if self.tls else 80)
        self._host_header = self.host if default_port else f"{self.host}:{self.port}"
        self.auth = auth  # also sets _sign_lines
        self.error_mapper = error_mapper
        self.limiter = limiter
        self.pool_size = pool_size
        self.connect_timeout_s = connect_timeout_s
        self.request_timeout_s = request_timeout_s
        self.keepalive_path = keepalive_path
        self.keepalive_interval_s = keepalive_interval_s
        self.reconnect_max_s = reconnect_max_s
        self._ssl: ssl_module.SSLContext | None = (
            (ssl_context or ssl_module.create_default_context()) if self.tls else None
        )
        base_headers = {"User-Agent": "cexarb/0.1", "Accept": "application/json", **(headers or {})}
        self._static = "".join(f"{k}: {v}\r\n" for k, v in base_headers.items()).encode("latin-1")
        self._host_line = f"Host: {self._host_header}\r\n"
        self._fixed = f"{self._host_line}".encode("latin-1") + self._static  # Host + static lines
        self._last_headers: dict[str, str] | None = None
        self._last_header_bytes = b""
        self._public = NoAuth()
        self._idle: deque[_Connection] = deque()
        self._all: set[_Connection] = set()
        self._waiters: deque[asyncio.Future[_Connection]] = deque()
        self._opening = 0
        self._closing = False
        self._refill_task: asyncio.Task[None] | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        # one timer for the deadlines of every request in flight, armed for the earliest and
        # re-armed when it fires (not one call_at + cancel per request)
        self._sweep_timer: asyncio.TimerHandle | None = None
        self._sweep_at = math.inf
        self._rng = random.Random()
        # counters
        self.requests = 0
        self.connects = 0
        self.connection_losses = 0

    @property
    def auth(self) -> RequestAuth | None:
        """Signs requests with ``signed=True``; may be replaced (key rotation)."""
        return self._auth

    @auth.setter
    def auth(self, auth: RequestAuth | None) -> None:
        self._auth = auth
        self._sign_lines: Callable[[str, str, QueryParams, bytes], tuple[str, bytes]] | None = (
            auth.sign_lines if isinstance(auth, _LineAuth) else None
        )
        self._line_signer: Callable[[str, str], Callable[[bytes], bytes]] | None = getattr(auth, "line_signer", None)
        # (method, path) -> (request line + fixed headers, body -> signed header lines): signed
        # requests without a query to the same few paths (orders) -- see build()
        self._prepared: dict[tuple[str, str], tuple[bytes, Callable[[bytes], bytes]]] = {}

    # ---- lifecycle -----------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def connect(self) -> None:
        """Open the pool now (so the first order does not pay the handshake).

        Raises:
            NetworkError: a connection could not be opened within ``connect_timeout_s``.
        """
        self._closing = False
        loop = asyncio.get_running_loop()
        while len(self._all) + self._opening < self.pool_size:
            conn = await self._open(loop.time() + self.connect_timeout_s)
            self._release(conn)
        if self.keepalive_path and self._keepalive_task is None:
            self._keepalive_task = asyncio.create_task(self._keepalive(), name=f"order-entry keepalive {self.venue}")

    async def aclose(self) -> None:
        """Close every connection and stop the background tasks."""
        self._closing = True
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
            self._sweep_at = math.inf
        tasks = [t for t in (self._refill_task, self._keepalive_task) if t is not None and not t.done()]
        self._refill_task = self._keepalive_task = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        for conn in list(self._all):
            conn.close()
        self._all.clear()
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(NetworkError(self.venue, "order entry client closed"))

    @property
    def open_connections(self) -> int:
        return sum(1 for c in self._all if not c.closed)

    # ---- connections ---------------------------------------------------------------------------------

    async def _open(self, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        self._opening += 1
        try:
            timeout = min(self.connect_timeout_s, deadline - loop.time())
            if timeout <= 0:
                raise TimeoutError
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self.tls else None,
                )
        except TimeoutError:
            raise NetworkError(self.venue, f"connect to {self.host}:{self.port} timed out") from None
        except OSError as exc:
            raise NetworkError(
                self.venue, f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        finally:
            self._opening -= 1
        self.connects += 1
        self._all.add(conn)
        return conn

    def _release(self, conn: _Connection) -> None:
        if conn.closed or self._closing:
            self._all.discard(conn)
            conn.close()
            return
        conn.last_used = time.monotonic()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    def _take_idle(self) -> _Connection | None:
        """An open idle connection, or None."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    async def _acquire(self, deadline: float) -> _Connection:
        conn = self._take_idle()
        if conn is not None:
            return conn
        loop = asyncio.get_running_loop()
        if len(self._all) + self._opening < self.pool_size:
            return await self._open(deadline)
        remaining = deadline - loop.time()
        if remaining <= 0:  # before queueing: a waiter nobody awaits would be handed a connection
            raise TimeoutError
        waiter: asyncio.Future[_Connection] = loop.create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(remaining):
                return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release(waiter.result())  # handed over just as we gave up: pass it on
            raise

    def _on_connection_lost(self, conn: _Connection) -> None:
        self._all.discard(conn)
        try:
            self._idle.remove(conn)
        except ValueError:
            pass
        if self._closing:
            return
        self.connection_losses += 1
        log.info("venue=%s order connection closed; reconnecting in the background", self.venue)
        if self._refill_task is None or self._refill_task.done():
            self._refill_task = asyncio.get_running_loop().create_task(
                self._refill(), name=f"order-entry reconnect {self.venue}"
            )

    async def _refill(self) -> None:
        """Reopen closed connections with backoff (full jitter) until the pool is full again."""
        loop = asyncio.get_running_loop()
        failures = 0
        while not self._closing and len(self._all) + self._opening < self.pool_size:
            try:
                conn = await self._open(loop.time() + self.connect_timeout_s)
            except NetworkError as exc:
                failures += 1
                delay = self._rng.uniform(0.0, min(self.reconnect_max_s, 0.05 * 2**failures))
                log.warning(
                    "venue=%s order connection reconnect failed (%s); retry in %.0f ms",
                    self.venue,
                    exc.message,
                    delay * 1e3,
                )
                await asyncio.sleep(delay)
                continue
            failures = 0
            self._release(conn)

    async def _keepalive(self) -> None:
        """Send ``keepalive_path`` on connections idle for ``keepalive_interval_s``."""
        assert self.keepalive_path is not None
        while not self._closing:
            await asyncio.sleep(self.keepalive_interval_s / 2)
            now = time.monotonic()
            if any(now - c.last_used >= self.keepalive_interval_s for c in self._idle):
                try:
                    await self.request(
                        "GET",
                        self.keepalive_path,
                        signed=False,
                        endpoint_class=EndpointClass.PUBLIC,
                        timeout_s=self.request_timeout_s,
                    )
                except Exception as exc:  # noqa: BLE001 - a failed keep-alive only means a reconnect
                    log.info("venue=%s order connection keep-alive failed: %s", self.venue, type(exc).__name__)

    # ---- requests ------------------------------------------------------------------------------------

    async def post(self, path: str, params: QueryParams = (), body: bytes = b"", **kwargs: Any) -> OrderEntryResponse:
        return await self.request("POST", path, params, body, **kwargs)

    async def delete(self, path: str, params: QueryParams = (), body: bytes = b"", **kwargs: Any) -> OrderEntryResponse:
        return await self.request("DELETE", path, params, body, **kwargs)

    def build(
        self, method: str, path: str, params: QueryParams = (), body: bytes = b"", *, signed: bool = True
    ) -> bytes:
        """The exact bytes of one request (signed now). Contains keys and signatures: never log it.

        A signed request without a query, with an auth adapter that has ``line_signer`` (Gate),
        takes the prepared path: its request line, fixed headers and the fixed part of its
        signature are computed once per (method, path) (:data:`_MAX_PREPARED` of them; paths
        with an id in them, like a cancel's, soon stop being prepared and take the general path).
        """
        if signed and not params:
            prepared = self._prepared.get((method, path))
            if prepared is None and self._line_signer is not None and len(self._prepared) < _MAX_PREPARED:
                prepared = self._prepare(method, path)
            if prepared is not None:
                head, sign = prepared
                return b"%s%sContent-Length: %d\r\n\r\n%s" % (head, sign(body), len(body), body)
        auth = self._auth
        if signed and auth is not None:
            sign_lines = self._sign_lines
            if sign_lines is not None:
                query, header_bytes = sign_lines(method, path, params, body)
            else:
                query, headers = auth.sign(method, path, params, body)
                header_bytes = self._header_bytes(headers)
        else:
            query, headers = self._public.sign(method, path, params, body)
            header_bytes = self._header_bytes(headers)
        target = f"{path}?{query}" if query else path
        return b"".join(
            (
                f"{method} {target} HTTP/1.1\r\n".encode("latin-1"),
                self._fixed,
                header_bytes,
                b"Content-Length: %d\r\n\r\n" % len(body),
                body,
            )
        )

    def _prepare(self, method: str, path: str) -> tuple[bytes, Callable[[bytes], bytes]]:
        """Prepare ``method path`` for :meth:`build` (ValueError: a line break in the path or a
        header)."""
        assert self._line_signer is not None
        if any(c in path for c in "\r\n ") or not method.isalpha():
            raise ValueError(f"request line {method!r} {path!r} contains a line break or a space")
        prepared = (f"{method} {path} HTTP/1.1\r\n".encode("latin-1") + self._fixed, self._line_signer(method, path))
        self._prepared[(method, path)] = prepared
        return prepared

    def _header_bytes(self, headers: dict[str, str]) -> bytes:
        if headers != self._last_headers:  # MEXC's are the same every time: encode them once
            lines = []
            for k, v in headers.items():
                if "\r" in v or "\n" in v or "\r" in k or "\n" in k:
                    raise ValueError(f"header {k!r} contains a line break")
                lines.append(f"{k}: {v}\r\n")
            self._last_headers = dict(headers)
            self._last_header_bytes = "".join(lines).encode("latin-1")
        return self._last_header_bytes

    def _write(
        self,
        conn: _Connection,
        loop: asyncio.AbstractEventLoop,
        data: bytes,
        deadline: float,
    ) -> asyncio.Future[_Response]:
        """Write ``data`` on ``conn`` (which must be idle and open) and arm its deadline. The
        waiter comes after the write: nothing is read before the caller returns to the loop."""
        assert conn.transport is not None
        conn.got_bytes = False
        conn.sent_ns = time.perf_counter_ns()
        conn.transport.write(data)
        waiter: asyncio.Future[_Response] = loop.create_future()
        conn.waiter = waiter
        conn.deadline = deadline
        self.requests += 1
        if deadline < self._sweep_at:  # else the armed timer fires first and re-arms
            self._arm_sweep(loop, deadline)
        return waiter

    def _arm_sweep(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
        self._sweep_at = at
        self._sweep_timer = loop.call_at(at, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Expire the requests past their deadline; re-arm for the earliest one still in flight."""
        self._sweep_timer = None
        self._sweep_at = math.inf
        now = loop.time()
        earliest = math.inf
        for conn in list(self._all):
            if conn.waiter is None:
                continue
            if conn.deadline <= now + _TIMER_SLACK_S:
                conn.expire()
            elif conn.deadline < earliest:
                earliest = conn.deadline
        if earliest < math.inf and not self._closing:
            self._arm_sweep(loop, earliest)

    def start_request(
        self,
        method: str,
        path: str,
        params: QueryParams = (),
        body: bytes = b"",
        *,
        signed: bool = True,
        idempotent: bool | None = None,
        endpoint_class: EndpointClass = EndpointClass.ORDER,
        symbol: str = "",
        timeout_s: float | None = None,
    ) -> Coroutine[Any, Any, OrderEntryResponse]:
        """:meth:`request`, with the request signed and written before this returns when it can go
        at once (a rate-limit slot free now, a connection idle); await the returned coroutine for
        the response. Otherwise the request waits for a connection, then its slot, when awaited, as
        :meth:`request` does. Same arguments, results and errors as :meth:`request`; must be
        called with the event loop running.

        Raises:
            ValueError: a header with a line break (before anything is sent).
        """
        if idempotent is None:
            idempotent = method in _IDEMPOTENT
        timeout = self.request_timeout_s if timeout_s is None else timeout_s
        idle = self._idle
        if idle:
            conn: _Connection | None = idle.pop()
            if conn is not None and conn.closed:  # not normally: a lost connection leaves the pool
                conn = self._take_idle()
            if conn is not None:
                limiter = self.limiter
                if limiter is None or limiter.try_acquire(endpoint_class, endpoint=path, symbol=symbol):
                    loop = asyncio.get_running_loop()
                    deadline = loop.time() + timeout
                    prepared = self._prepared.get((method, path)) if signed and not params else None
                    try:
                        if prepared is not None:  # build()'s prepared path, inline (an order's path)
                            head, sign = prepared
                            data = b"%s%sContent-Length: %d\r\n\r\n%s" % (head, sign(body), len(body), body)
                        else:
                            data = self.build(method, path, params, body, signed=signed)
                    except BaseException:
                        self._release(conn)
                        raise
                    transport = conn.transport
                    if prepared is None or transport is None:
                        waiter = self._write(conn, loop, data, deadline)
                    else:  # _write, inline: the order goes out here; the rest is bookkeeping
                        conn.got_bytes = False
                        conn.sent_ns = time.perf_counter_ns()
                        transport.write(data)
                        waiter = conn.waiter = loop.create_future()
                        conn.deadline = deadline
                        self.requests += 1
                        # after the write (it costs the order nothing): without a timer armed for
                        # this deadline a venue that never answers would hold the order -- and the
                        # connection -- for ever
                        if deadline < self._sweep_at:
                            self._arm_sweep(loop, deadline)
                    return self._complete(conn, waiter, method, path, params, body, signed, idempotent, deadline)
                idle.append(conn)  # no slot now: the slow path waits for one
        return self.request(
            method,
            path,
            params,
            body,
            signed=signed,
            idempotent=idempotent,
            endpoint_class=endpoint_class,
            symbol=symbol,
            timeout_s=timeout,
        )

    async def request(
        self,
        method: str,
        path: str,
        params: QueryParams = (),
        body: bytes = b"",
        *,
        signed: bool = True,
        idempotent: bool | None = None,
        endpoint_class: EndpointClass = EndpointClass.ORDER,
        symbol: str = "",
        timeout_s: float | None = None,
    ) -> OrderEntryResponse:
        """Send one request on a persistent connection and return its 2xx response.

        Args:
            method: ``POST``/``DELETE``/``GET``/``PUT``.
            path: absolute path, query excluded.
            params: query parameters in the order to send and sign (decimal strings).
            body: the exact body bytes (Gate JSON; MEXC sends everything in the query).
            signed: sign with ``auth``.
            idempotent: may be retried after a dropped connection (default: GET/HEAD only; mark a
                cancel by client order id idempotent).
            endpoint_class, symbol: for the rate limiter.
            timeout_s: deadline of the whole request (default ``request_timeout_s``).

        Raises:
            VenueError: the typed error of a non-2xx answer (see :mod:`cexarb.venues.rest`);
            OutcomeUnknownError: a non-idempotent request whose fate is unknown (timeout, drop);
            RequestTimeoutError / NetworkError: an idempotent one that did not complete;
            RateLimitExceeded: the client-side limiter would wait past the deadline (asked once the
                request has a connection, right before the write: see "Rate limits" above).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.request_timeout_s if timeout_s is None else timeout_s)
        if idempotent is None:
            idempotent = method in _IDEMPOTENT
        conn, waiter = await self._send(
            loop, method, path, params, body, signed, idempotent, deadline, endpoint_class, symbol
        )
        return await self._complete(conn, waiter, method, path, params, body, signed, idempotent, deadline)

    async def _send(
        self,
        loop: asyncio.AbstractEventLoop,
        method: str,
        path: str,
        params: QueryParams,
        body: bytes,
        signed: bool,
        idempotent: bool,
        deadline: float,
        endpoint_class: EndpointClass | None,
        symbol: str = "",
    ) -> tuple[_Connection, asyncio.Future[_Response]]:
        """Wait for a connection, then for a rate-limit slot of ``endpoint_class`` (None: take none),
        then sign and write the request on it: the slot is taken as late as possible, so the venue
        sees requests arrive when the limiter counted them (module docstring, "Rate limits"). Both
        waits are within the deadline; the connection goes back to the pool if the slot is
        refused, the wait is cancelled or signing fails."""
        limiter = self.limiter
        while True:
            try:
                conn = await self._acquire(deadline)
            except TimeoutError:
                raise self._timeout(method, path, idempotent, sent=False) from None
            if conn.closed:  # lost between its hand-over and now: it has left the pool already
                continue
            try:
                if limiter is not None and endpoint_class is not None:
                    remaining = deadline - loop.time()
                    if remaining <= 0:  # the connection came at the deadline: too late to send
                        raise self._timeout(method, path, idempotent, sent=False)
                    # no await (no suspension) when the slot is free now
                    await limiter.acquire(endpoint_class, endpoint=path, symbol=symbol, max_wait_s=remaining)
                    if conn.closed:  # the venue closed it during the slot wait
                        if self._closing:
                            raise NetworkError(self.venue, "order entry client closed")
                        spare = self._take_idle()
                        if spare is None:  # the slot is spent: a connection first, then a new slot
                            continue
                        conn = spare  # idle now: the slot just taken is still current
                data = self.build(method, path, params, body, signed=signed)
            except BaseException:
                self._release(conn)
                raise
            return conn, self._write(conn, loop, data, deadline)

    async def _complete(
        self,
        conn: _Connection,
        waiter: asyncio.Future[_Response],
        method: str,
        path: str,
        params: QueryParams,
        body: bytes,
        signed: bool,
        idempotent: bool,
        deadline: float,
    ) -> OrderEntryResponse:
        """Wait for the response of the request written on ``conn``; an idempotent request whose
        connection dropped before any response byte is sent once more on another connection."""
        retried = False
        while True:
            try:
                response = await waiter
            except TimeoutError:  # conn.expire() closed the connection
                raise self._timeout(method, path, idempotent, sent=True) from None
            except _ConnectionLost as lost:
                loop = asyncio.get_running_loop()
                if idempotent and not retried and not lost.got_bytes and loop.time() < deadline:
                    log.info("venue=%s %s %s: connection dropped, retrying on a new one", self.venue, method, path)
                    retried = True
                    conn, waiter = await self._send(
                        loop, method, path, params, body, signed, idempotent, deadline, None
                    )
                    continue
                if idempotent:
                    raise NetworkError(self.venue, f"{method} {path}: connection closed before the response") from None
                raise OutcomeUnknownError(
                    self.venue, f"{method} {path}: connection closed after the request was sent"
                ) from None
            except BaseException:
                conn.abandon(waiter)  # cancelled mid-request: the connection is out of step
                raise
            status = response.status
            if 200 <= status < 300:
                return OrderEntryResponse(status, response.headers, response.body, response.elapsed_ns)
            raise self._error(response, method, path, idempotent)

    def _error(self, response: _Response, method: str, path: str, idempotent: bool) -> Exception:
        status = response.status
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers}
        error = self.error_mapper(self.venue, status, response.body, headers)
        if isinstance(error, ServerError) and not idempotent:
            error = OutcomeUnknownError(self.venue, error.message, http_status=status, code=error.code)
        if self.limiter is not None and status in (429, 418):
            retry_after = getattr(error, "retry_after_s", None)
            self.limiter.penalize(retry_after if retry_after is not None else 1.0)
        log.info("venue=%s %s %s -> %d %s (%s)", self.venue, method, path, status, error.code, type(error).__name__)
        return error

    def _timeout(self, method: str, path: str, idempotent: bool, *, sent: bool) -> Exception:
        message = f"{method} {path}: no response before the deadline"
        if idempotent or not sent:
            return RequestTimeoutError(self.venue, message)
        return OutcomeUnknownError(self.venue, message)
