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
* **Deadline per request** (``timeout_s``, default ``request_timeout_s``): rate-limit wait,
  connect and response all included. On expiry the connection is closed (a late response would
  desynchronise it) and :class:`~cexarb.venues.rest.OutcomeUnknownError` is raised for a
  non-idempotent request (the order may exist: query it by client order id), or
  :class:`~cexarb.venues.rest.RequestTimeoutError` for an idempotent one.
* **Signing and errors**: the same :class:`~cexarb.venues.rest.RequestAuth` adapters and error
  mappers as the REST client (:class:`~cexarb.venues.rest.MexcAuth`,
  :class:`~cexarb.venues.rest.GateAuth`, :func:`~cexarb.venues.rest.mexc_error`,
  :func:`~cexarb.venues.rest.gate_error`): a non-2xx answer raises the same typed errors.
* **Retries**: an idempotent request (a cancel by client order id) is retried once on a fresh
  connection when its connection dropped before any response byte; an order never is.
* **Rate limits**: ``limiter`` slots are taken per request (class ``ORDER`` by default).

Nothing here logs request lines, headers or bodies (they carry keys and signatures).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl as ssl_module
import time
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final, Self
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


class _ConnectionLost(Exception):
    """The connection closed before the response was complete; ``got_bytes`` if any arrived."""

    def __init__(self, got_bytes: bool) -> None:
        super().__init__("connection lost")
        self.got_bytes = got_bytes


class _Response:
    __slots__ = ("body", "headers", "keep_alive", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, keep_alive: bool) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive


class _Connection(asyncio.Protocol):
    """One keep-alive connection: writes a request, parses the response with httptools."""

    def __init__(self, client: OrderEntryClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[_Response] | None = None
        self.closed = False
        self.got_bytes = False
        self.last_used = time.monotonic()
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

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
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        response = _Response(self.parser.get_status_code(), self._headers, body, self.parser.should_keep_alive())
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(response)
        else:  # a response nobody waits for: the connection is out of step
            log.warning("venue=%s unexpected HTTP response on the order connection; closing it", self.client.venue)
            self.close()

    # ours
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
        auth: signs requests with ``signed=True``.
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
        self.auth = auth
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
        self._rng = random.Random()
        # counters
        self.requests = 0
        self.connects = 0
        self.connection_losses = 0

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

    async def _acquire(self, deadline: float) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        loop = asyncio.get_running_loop()
        if len(self._all) + self._opening < self.pool_size:
            return await self._open(deadline)
        waiter: asyncio.Future[_Connection] = loop.create_future()
        self._waiters.append(waiter)
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError
        async with asyncio.timeout(remaining):
            return await waiter

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
        """The exact bytes of one request (signed now). Contains keys and signatures: never log it."""
        auth: RequestAuth = self.auth if (signed and self.auth is not None) else self._public
        query, headers = auth.sign(method, path, params, body)
        target = f"{path}?{query}" if query else path
        if headers != self._last_headers:  # MEXC's are the same every time: encode them once
            lines = []
            for k, v in headers.items():
                if "\r" in v or "\n" in v or "\r" in k or "\n" in k:
                    raise ValueError(f"header {k!r} contains a line break")
                lines.append(f"{k}: {v}\r\n")
            self._last_headers = dict(headers)
            self._last_header_bytes = "".join(lines).encode("latin-1")
        start = f"{method} {target} HTTP/1.1\r\n{self._host_line}".encode("latin-1")
        length = f"Content-Length: {len(body)}\r\n\r\n".encode("latin-1")
        return b"".join((start, self._static, self._last_header_bytes, length, body))

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
            RateLimitExceeded: the client-side limiter would wait past the deadline.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.request_timeout_s if timeout_s is None else timeout_s)
        if idempotent is None:
            idempotent = method in _IDEMPOTENT
        if self.limiter is not None:
            await self.limiter.acquire(endpoint_class, endpoint=path, symbol=symbol, max_wait_s=deadline - loop.time())
        attempts = 2 if idempotent else 1
        for attempt in range(attempts):
            try:
                conn = await self._acquire(deadline)
            except TimeoutError:
                raise self._timeout(method, path, idempotent, sent=False) from None
            if conn.closed:  # pragma: no cover - _acquire returns open ones
                continue
            data = self.build(method, path, params, body, signed=signed)
            waiter: asyncio.Future[_Response] = loop.create_future()
            conn.waiter = waiter
            conn.got_bytes = False
            timer = loop.call_at(deadline, _expire, waiter)
            start = time.perf_counter_ns()
            self.requests += 1
            try:
                assert conn.transport is not None
                conn.transport.write(data)
                response = await waiter
            except TimeoutError:
                conn.close()
                self._all.discard(conn)
                raise self._timeout(method, path, idempotent, sent=True) from None
            except _ConnectionLost as lost:
                if attempt + 1 < attempts and not lost.got_bytes and loop.time() < deadline:
                    log.info("venue=%s %s %s: connection dropped, retrying on a new one", self.venue, method, path)
                    continue
                if idempotent:
                    raise NetworkError(self.venue, f"{method} {path}: connection closed before the response") from None
                raise OutcomeUnknownError(
                    self.venue, f"{method} {path}: connection closed after the request was sent"
                ) from None
            except BaseException:
                conn.close()  # cancelled mid-request: the connection is out of step
                self._all.discard(conn)
                raise
            finally:
                timer.cancel()
            elapsed = time.perf_counter_ns() - start
            if response.keep_alive:
                self._release(conn)
            else:
                conn.close()  # connection_lost() then schedules the replacement
            status = response.status
            if 200 <= status < 300:
                return OrderEntryResponse(status, response.headers, response.body, elapsed)
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers}
            error = self.error_mapper(self.venue, status, response.body, headers)
            if isinstance(error, ServerError) and not idempotent:
                error = OutcomeUnknownError(self.venue, error.message, http_status=status, code=error.code)
            if self.limiter is not None and status in (429, 418):
                retry_after = getattr(error, "retry_after_s", None)
                self.limiter.penalize(retry_after if retry_after is not None else 1.0)
            log.info("venue=%s %s %s -> %d %s (%s)", self.venue, method, path, status, error.code, type(error).__name__)
            raise error
        raise self._timeout(method, path, idempotent, sent=True)

    def _timeout(self, method: str, path: str, idempotent: bool, *, sent: bool) -> Exception:
        message = f"{method} {path}: no response before the deadline"
        if idempotent or not sent:
            return RequestTimeoutError(self.venue, message)
        return OutcomeUnknownError(self.venue, message)


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
