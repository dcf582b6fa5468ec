"""REST client base shared by every venue connector: one aiohttp session per venue, signing hook,
rate limits, retries only where they are safe, and venue errors as typed exceptions.

What a connector writes on top: its paths, its msgspec decoders, and which calls are idempotent.
What it gets:

* :class:`RestClient` -- an async context manager holding the venue's single
  :class:`aiohttp.ClientSession` (opened in ``__aenter__`` with an explicit
  :class:`aiohttp.ClientTimeout`, closed in ``__aexit__``; ``session`` is shared with the
  venue's WebSockets). :meth:`RestClient.request` takes the client-side rate-limit slot
  (:mod:`cexarb.venues.ratelimit`), signs (a :class:`RequestAuth`), sends with a deadline over
  all attempts, and returns the 2xx body as bytes; anything else raises a :class:`VenueError`.
* Retries (exponential backoff with full jitter, within the deadline) only for idempotent calls
  (GET by default; a connector marks e.g. a cancel by client id idempotent) on 5xx, 429 with a
  ``Retry-After`` that fits, timeouts and connection errors. A non-idempotent call (placing an
  order) is retried only when the connection could not even be opened -- then nothing was sent;
  otherwise a timeout or a 5xx raises :class:`OutcomeUnknownError`: the order may exist, query it
  by client order id.
* Auth adapters over the existing signers: :class:`MexcAuth` (signature in the query, exactly the
  bytes sent), :class:`GateAuth` (``KEY``/``Timestamp``/``SIGN`` headers over the unencoded
  query), and error mappers :func:`mexc_error` / :func:`gate_error` (PROTOCOLS.md §1.7, §2.6,
  §3.6) used by this client and by :mod:`cexarb.venues.order_entry`.

Logging (STYLE.md §2): method, path, status and time only -- never the query (it carries MEXC's
signature), headers, bodies of signed requests, keys or signatures.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Protocol, Self
from urllib.parse import quote

import aiohttp
import msgspec
from yarl import URL

from cexarb.venues.gateio import codec as gate_codec
from cexarb.venues.gateio.signing import GateSigner, encode_query
from cexarb.venues.mexc import codec as mexc_codec
from cexarb.venues.mexc.signing import MexcSigner
from cexarb.venues.mexc.signing import sign as mexc_sign
from cexarb.venues.ratelimit import EndpointClass, RateLimiter, RateLimitExceeded

__all__ = [
    "AuthenticationError",
    "BadResponseError",
    "ClockSkewError",
    "ErrorMapper",
    "GateAuth",
    "InsufficientFundsError",
    "InvalidOrderError",
    "MexcAuth",
    "NetworkError",
    "NoAuth",
    "OrderNotFoundError",
    "OrderNotOpenError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "PostOnlyWouldTakeError",
    "RateLimitExceeded",
    "RateLimitedError",
    "RequestAuth",
    "RequestTimeoutError",
    "RestClient",
    "RestResponse",
    "RetryPolicy",
    "ServerError",
    "VenueError",
    "encode_plain_query",
    "gate_error",
    "generic_error",
    "mexc_error",
    "parse_retry_after",
]

log = logging.getLogger(__name__)

QueryParams = Sequence[tuple[str, str | int | bool]] | Mapping[str, str | int | bool]


# =============================================================================================
# Typed errors


class VenueError(Exception):
    """A request the venue refused or that did not complete.

    Attributes:
        venue: venue name (``mexc-spot``...).
        http_status: HTTP status (0 when there was no response).
        code: the venue's error code or label as a string (MEXC ``"10101"``, Gate
            ``"BALANCE_NOT_ENOUGH"``; "" when none).
        message: the venue's message (truncated), never request data.
    """

    def __init__(self, venue: str, message: str, *, http_status: int = 0, code: str = "") -> None:
        self.venue = venue
        self.http_status = http_status
        self.code = code
        self.message = message
        where = f"HTTP {http_status}" if http_status else "no response"
        super().__init__(f"{venue}: {where}{' ' + code if code else ''}: {message}")


class AuthenticationError(VenueError):
    """Bad key or signature (MEXC 602/700001/700002/10072, Gate INVALID_KEY/INVALID_SIGNATURE)."""


class PermissionDeniedError(AuthenticationError):
    """Key lacks permission / IP not whitelisted / WAF block (MEXC 700006/700007, HTTP 403)."""


class ClockSkewError(AuthenticationError):
    """Timestamp outside the venue's window (MEXC 700003, Gate REQUEST_EXPIRED): resync the clock."""


class InsufficientFundsError(VenueError):
    """Not enough balance or margin (MEXC 10101/30004, Gate BALANCE_NOT_ENOUGH...)."""


class InvalidOrderError(VenueError):
    """The venue rejected the order's parameters (size, price, type, symbol, limits)."""


class PostOnlyWouldTakeError(InvalidOrderError):
    """A post-only order would have taken liquidity (Gate POC_FILL_IMMEDIATELY/ORDER_POC_IMMEDIATE)."""


class OrderNotFoundError(VenueError):
    """No such order (MEXC -2011, Gate ORDER_NOT_FOUND)."""


class OrderNotOpenError(InvalidOrderError):
    """The order exists but is no longer open (Gate ORDER_CLOSED/ORDER_CANCELLED/ORDER_FINISHED)."""


class RateLimitedError(VenueError):
    """HTTP 429 (or 418 IP ban); ``retry_after_s`` from ``Retry-After`` (None when absent)."""

    def __init__(
        self, venue: str, message: str, *, http_status: int, code: str = "", retry_after_s: float | None
    ) -> None:
        super().__init__(venue, message, http_status=http_status, code=code)
        self.retry_after_s = retry_after_s


class ServerError(VenueError):
    """HTTP 5xx: the venue failed; a write's outcome is unknown."""


class BadResponseError(VenueError):
    """A response that is not HTTP/JSON as expected (malformed, truncated)."""


class NetworkError(VenueError):
    """No response: connection refused/reset/closed."""


class OutcomeUnknownError(VenueError):
    """A non-idempotent request (an order) may or may not have been executed: a timeout, a 5xx,
    or the connection dropped after the request was written. Query by client order id."""


class RequestTimeoutError(VenueError):
    """The request's deadline passed before a response (idempotent calls; see OutcomeUnknownError)."""


# =============================================================================================
# Error mappers: (venue, status, body, lower-cased headers) -> VenueError

ErrorMapper = Callable[[str, int, bytes, Mapping[str, str]], VenueError]


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None when absent/unparseable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _text(body: bytes, limit: int = 200) -> str:
    return body[:limit].decode("utf-8", "replace").strip()


def _status_error(venue: str, status: int, code: str, message: str, headers: Mapping[str, str]) -> VenueError | None:
    """Errors decided by the HTTP status alone (429/418, 5xx, 401, 403)."""
    if status in (429, 418):
        return RateLimitedError(
            venue,
            message or "too many requests",
            http_status=status,
            code=code,
            retry_after_s=parse_retry_after(headers.get("retry-after")),
        )
    if status >= 500:
        return ServerError(venue, message or "server error", http_status=status, code=code)
    return None


def generic_error(venue: str, status: int, body: bytes, headers: Mapping[str, str]) -> VenueError:
    """Any venue: by HTTP status only."""
    message = _text(body)
    out = _status_error(venue, status, "", message, headers)
    if out is not None:
        return out
    if status == 401:
        return AuthenticationError(venue, message, http_status=status)
    if status == 403:
        return PermissionDeniedError(venue, message, http_status=status)
    if status == 404:
        return OrderNotFoundError(venue, message, http_status=status)
    return VenueError(venue, message or "error", http_status=status)


_MEXC_CODES: Final[dict[int, type[VenueError]]] = {
    10101: InsufficientFundsError,
    30004: InsufficientFundsError,
    30005: InvalidOrderError,
    30002: InvalidOrderError,
    30003: InvalidOrderError,
    30010: InvalidOrderError,
    30014: InvalidOrderError,
    30021: InvalidOrderError,
    10007: InvalidOrderError,
    30016: InvalidOrderError,
    30018: InvalidOrderError,
    30019: InvalidOrderError,
    30029: InvalidOrderError,
    30041: InvalidOrderError,
    33333: InvalidOrderError,
    44444: InvalidOrderError,
    30026: OrderNotFoundError,
    -2011: OrderNotFoundError,
    602: AuthenticationError,
    700001: AuthenticationError,
    700002: AuthenticationError,
    10072: AuthenticationError,
    700005: AuthenticationError,
    700006: PermissionDeniedError,
    700007: PermissionDeniedError,
    700003: ClockSkewError,
}


def mexc_error(venue: str, status: int, body: bytes, headers: Mapping[str, str]) -> VenueError:
    """MEXC ``{"code", "msg"}`` as a typed error (codes: PROTOCOLS.md §1.7)."""
    try:
        err = mexc_codec.decode_error(body)
        code, message = err.code, err.msg
    except ValueError:
        code, message = None, _text(body)
    code_s = "" if code is None else str(code)
    out = _status_error(venue, status, code_s, message, headers)
    if out is not None:
        return out
    if code == 429:
        return RateLimitedError(venue, message, http_status=status, code=code_s, retry_after_s=None)
    cls = _MEXC_CODES.get(code) if code is not None else None
    if cls is not None:
        return cls(venue, message, http_status=status, code=code_s)
    if code is None:
        return generic_error(venue, status, body, headers)
    if status == 403:
        return PermissionDeniedError(venue, message, http_status=status, code=code_s)
    return VenueError(venue, message, http_status=status, code=code_s)


_GATE_LABELS: Final[dict[str, type[VenueError]]] = {
    "BALANCE_NOT_ENOUGH": InsufficientFundsError,
    "INSUFFICIENT_AVAILABLE": InsufficientFundsError,
    "FUTURES_BALANCE_NOT_ENOUGH": InsufficientFundsError,
    "INVALID_SIGNATURE": AuthenticationError,
    "INVALID_KEY": AuthenticationError,
    "MISSING_REQUIRED_HEADER": AuthenticationError,
    "FORBIDDEN": PermissionDeniedError,
    "REQUEST_EXPIRED": ClockSkewError,
    "ORDER_NOT_FOUND": OrderNotFoundError,
    "ORDER_CLOSED": OrderNotOpenError,
    "ORDER_CANCELLED": OrderNotOpenError,
    "ORDER_FINISHED": OrderNotOpenError,
    "POC_FILL_IMMEDIATELY": PostOnlyWouldTakeError,
    "ORDER_POC_IMMEDIATE": PostOnlyWouldTakeError,
    "INVALID_PARAM_VALUE": InvalidOrderError,
    "INVALID_CURRENCY_PAIR": InvalidOrderError,
    "INVALID_CURRENCY": InvalidOrderError,
    "TOO_MANY_ORDERS": InvalidOrderError,
    "SIZE_TOO_SMALL": InvalidOrderError,
    "SIZE_TOO_LARGE": InvalidOrderError,
    "PRICE_TOO_DEVIATED": InvalidOrderError,
    "CONTRACT_NOT_FOUND": InvalidOrderError,
    "INCREASE_POSITION": InvalidOrderError,
    "REDUCE_EXCEEDED": InvalidOrderError,
    "ORDER_FOK": InvalidOrderError,
    "CONTRACT_IN_DELISTING": InvalidOrderError,
    "POSITION_EMPTY": InvalidOrderError,
    "RISK_LIMIT_EXCEEDED": InvalidOrderError,
    "LIQUIDATE_IMMEDIATELY": InvalidOrderError,
}


def gate_error(venue: str, status: int, body: bytes, headers: Mapping[str, str]) -> VenueError:
    """Gate ``{"label", "message"|"detail"}`` as a typed error (labels: PROTOCOLS.md §2.6, §3.6)."""
    try:
        err = gate_codec.decode_error(body)
        label, message = err.label, err.text
    except ValueError:
        return generic_error(venue, status, body, headers)
    if label == "TOO_MANY_REQUESTS" and status not in (429, 418):
        return RateLimitedError(
            venue,
            message,
            http_status=status,
            code=label,
            retry_after_s=parse_retry_after(headers.get("retry-after")),
        )
    out = _status_error(venue, status, label, message, headers)
    if out is not None:
        return out
    cls = _GATE_LABELS.get(label)
    if cls is not None:
        return cls(venue, message, http_status=status, code=label)
    if status == 401:
        return AuthenticationError(venue, message, http_status=status, code=label)
    return VenueError(venue, message, http_status=status, code=label)


# =============================================================================================
# Signing hook


def encode_plain_query(params: QueryParams) -> str:
    """``k=v&..`` percent-encoded (upper-case hex; ``A-Za-z0-9_.-~`` left as is), in the given
    order; floats refused (TypeError naming the parameter)."""
    return _fast_query(params)


class RequestAuth(Protocol):
    """Turns (method, path, params, body) into the exact query string to send and the headers.

    Called once per attempt (a retried request gets a fresh timestamp and signature). The result
    holds keys and signatures: never log it.
    """

    def sign(self, method: str, path: str, params: QueryParams, body: bytes) -> tuple[str, dict[str, str]]: ...


class NoAuth:
    """Public requests: the query percent-encoded, no headers."""

    def sign(self, method: str, path: str, params: QueryParams, body: bytes) -> tuple[str, dict[str, str]]:
        return encode_plain_query(params), {}


class MexcAuth:
    """MEXC: ``recvWindow``, ``timestamp`` and ``signature`` appended to the query (signed over
    query + body exactly as sent) and the ``X-MEXC-APIKEY`` header [MX-DOC].

    The output is byte for byte :meth:`MexcSigner.signed_query`'s (a test checks it), built
    faster: a value made only of characters that percent-encoding leaves alone
    (``A-Za-z0-9_.-~``, i.e. every price, quantity, symbol and client order id) is copied instead
    of going through :func:`urllib.parse.quote` -- 18 µs of the 24 µs signing took on the order
    path.

    Args:
        signer: the account's signer (its key, secret, ``recvWindow`` and clock are used).
    """

    __slots__ = ("_clock_ms", "_headers", "_secret", "_tail", "signer")

    def __init__(self, signer: MexcSigner) -> None:
        self.signer = signer
        self._headers = signer.headers()
        # reading the signer's own credentials and clock keeps one source of truth for both paths
        credentials = signer._credentials  # same package, same account
        self._secret = credentials.secret
        self._clock_ms = signer._clock_ms
        self._tail = f"recvWindow={signer.recv_window_ms}&timestamp="

    def __repr__(self) -> str:
        return f"MexcAuth({self.signer!r})"

    def sign(self, method: str, path: str, params: QueryParams, body: bytes) -> tuple[str, dict[str, str]]:
        query = _fast_query(params)
        tail = f"{self._tail}{self._clock_ms()}"
        query = f"{query}&{tail}" if query else tail
        signature = mexc_sign(self._secret, query + body.decode() if body else query)
        return f"{query}&signature={signature}", self._headers  # shared: callers never mutate it


_NEEDS_QUOTING = re.compile(r"[^A-Za-z0-9_.~\-]").search


def _fast_query(params: QueryParams) -> str:
    """``k=v&..`` exactly as :func:`encode_plain_query` / MEXC's ``encode_params`` (upper-case
    percent-encoding of everything but ``A-Za-z0-9_.-~``), without calling ``quote`` on values
    that need none."""
    items = params.items() if isinstance(params, Mapping) else params
    parts = []
    for k, v in items:
        if isinstance(v, str):
            value = v
        elif isinstance(v, bool):
            value = "true" if v else "false"
        elif isinstance(v, float):
            raise TypeError(f"parameter {k}: pass a decimal string (formatted from ticks/lots), not float {v!r}")
        else:
            value = str(v)
        key = str(k)
        if _NEEDS_QUOTING(key):
            key = quote(key, safe="")
        if _NEEDS_QUOTING(value):
            value = quote(value, safe="")
        parts.append(f"{key}={value}")
    return "&".join(parts)


class GateAuth:
    """Gate: ``KEY``/``Timestamp``/``SIGN`` headers over the unencoded query and the body's
    SHA-512 [GT-DOC]; ``path`` must include ``/api/v4``. ``extra_headers`` e.g.
    ``{"X-Gate-Size-Decimal": "1"}`` on futures."""

    __slots__ = ("_extra_lines", "extra_headers", "signer")

    def __init__(self, signer: GateSigner, *, extra_headers: Mapping[str, str] | None = None) -> None:
        self.signer = signer
        self.extra_headers = dict(extra_headers or {})
        self._extra_lines: bytes | None = None  # encoded by the first sign_lines (validated there)

    def sign(self, method: str, path: str, params: QueryParams, body: bytes) -> tuple[str, dict[str, str]]:
        sent, raw = encode_query(params)
        headers = self.signer.rest_headers(method, path, raw, body)
        headers.update(self.extra_headers)
        return sent, headers

    def sign_lines(self, method: str, path: str, params: QueryParams, body: bytes) -> tuple[str, bytes]:
        """What :meth:`sign` gives, the headers already as HTTP/1.1 lines (``Accept`` left to the
        caller): the order-entry client's fast path.

        Raises:
            ValueError: a header name or value with a line break (or not Latin-1).
        """
        extra = self._extra_lines
        if extra is None:
            lines = []
            for k, v in self.extra_headers.items():
                if "\r" in k or "\n" in k or "\r" in v or "\n" in v:
                    raise ValueError(f"header {k!r} contains a line break")
                lines.append(f"{k}: {v}\r\n")
            extra = self._extra_lines = "".join(lines).encode("latin-1")
        if params:
            sent, raw = encode_query(params)
            return sent, self.signer.rest_header_lines(method, path, raw, body) + extra
        return "", self.signer.rest_header_lines(method, path, "", body) + extra

    def line_signer(self, method: str, path: str) -> Callable[[bytes], bytes]:
        """``body -> header lines`` of requests ``METHOD path`` without a query: what
        :meth:`sign_lines` gives for that body, with the fixed part of the signature computed once
        (:meth:`GateSigner.rest_line_signer`) -- the order-entry client's prepared path.

        Raises:
            ValueError: a header name or value with a line break (or not Latin-1).
        """
        self.sign_lines(method, path, (), b"")  # validates and encodes the extra header lines
        assert self._extra_lines is not None
        return self.signer.rest_line_signer(method, path, "", self._extra_lines)


# =============================================================================================
# The client


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Backoff for retried (idempotent) requests: attempt n waits
    ``uniform(0, min(max_delay_s, base_delay_s * 2**n))`` (full jitter), or the 429's
    ``Retry-After`` when longer, always within the request's deadline."""

    max_attempts: int = 3
    base_delay_s: float = 0.1
    max_delay_s: float = 2.0
    default_retry_after_s: float = 1.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.max_delay_s, self.base_delay_s * (2**attempt)))


class RestResponse(msgspec.Struct, frozen=True, kw_only=True):
    """A 2xx response: ``body`` raw bytes (decode with the venue codec), headers lower-cased."""

    status: int
    body: bytes
    headers: dict[str, str]
    elapsed_s: float
    attempts: int = 1


_IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
#: aiohttp's "connection could not be opened in time" (3.10+), a TimeoutError that sent nothing
_CONNECT_TIMEOUT: Final[type[Exception]] = getattr(aiohttp, "ConnectionTimeoutError", aiohttp.ClientConnectorError)


class RestClient:
    """The venue's REST client; use as ``async with RestClient(...) as rest:``.

    Args:
        venue: venue name, for errors and logs.
        base_url: scheme and host (``https://api.mexc.com``); paths are absolute.
        auth: signs requests with ``signed=True`` (:class:`MexcAuth`, :class:`GateAuth`).
        error_mapper: non-2xx -> typed error (:func:`mexc_error`, :func:`gate_error`).
        limiter: the venue's :class:`~cexarb.venues.ratelimit.RateLimiter` (None: no client limit).
        timeout: session timeouts; ``total`` is also the default deadline of one request
            (all attempts included).
        retry: backoff for idempotent requests.
        headers: sent on every request (``User-Agent``...).
        connector_limit: max simultaneous connections to the venue.
        seed: RNG seed for the jitter (tests).
    """

    def __init__(
        self,
        venue: str,
        base_url: str,
        *,
        auth: RequestAuth | None = None,
        error_mapper: ErrorMapper = generic_error,
        limiter: RateLimiter | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        connector_limit: int = 16,
        seed: int | None = None,
    ) -> None:
        self.venue = venue
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.error_mapper = error_mapper
        self.limiter = limiter
        self.timeout = timeout or aiohttp.ClientTimeout(total=10.0, sock_connect=3.0, sock_read=8.0)
        self.retry = retry or RetryPolicy()
        self.headers = {"User-Agent": "cexarb/0.1", "Accept": "application/json", **(headers or {})}
        self.connector_limit = connector_limit
        self._rng = random.Random(seed)
        self._session: aiohttp.ClientSession | None = None
        self._public_auth = NoAuth()
        self.requests_sent = 0
        self.retries = 0

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(limit=self.connector_limit, ttl_dns_cache=300, keepalive_timeout=30.0)
        self._session = aiohttp.ClientSession(
            timeout=self.timeout, connector=connector, headers=self.headers, raise_for_status=False
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The venue's one ClientSession (for its WebSockets too).

        Raises:
            RuntimeError: outside ``async with``.
        """
        if self._session is None or self._session.closed:
            raise RuntimeError(f"{self.venue} RestClient is not open: use 'async with'")
        return self._session

    async def get(self, path: str, params: QueryParams = (), **kwargs: Any) -> RestResponse:
        return await self.request("GET", path, params, **kwargs)

    async def request(
        self,
        method: str,
        path: str,
        params: QueryParams = (),
        *,
        body: bytes | str = b"",
        signed: bool = False,
        idempotent: bool | None = None,
        endpoint_class: EndpointClass | None = None,
        symbol: str = "",
        weight: int | None = None,
        timeout_s: float | None = None,
    ) -> RestResponse:
        """Send one logical request (retried when safe) and return its 2xx response.

        Args:
            method: ``GET``/``POST``/``PUT``/``DELETE``.
            path: absolute path (``/api/v3/order``, ``/api/v4/spot/orders``).
            params: query parameters, in the order to send (and sign); decimal strings, no floats.
            body: the exact body bytes (JSON for Gate, usually empty for MEXC).
            signed: sign with ``auth``.
            idempotent: may be retried after it might have reached the venue (default: GET/HEAD).
            endpoint_class: for the rate limiter (default PRIVATE when signed, else PUBLIC).
            symbol: market, for per-symbol limits.
            weight: the request's weight (default: the venue's published weight for ``path``).
            timeout_s: deadline over all attempts and waits (default ``timeout.total``).

        Raises:
            VenueError: a subclass per venue error (see the module docs);
            RateLimitExceeded: the client-side limiter would wait beyond the deadline;
            OutcomeUnknownError: a non-idempotent request timed out, hit a 5xx or lost its
                connection after being written.
        """
        session = self.session
        method = method.upper()
        if idempotent is None:
            idempotent = method in _IDEMPOTENT_METHODS
        if endpoint_class is None:
            endpoint_class = EndpointClass.PRIVATE if signed else EndpointClass.PUBLIC
        if signed and self.auth is None:
            raise ValueError(f"{self.venue} {method} {path}: signed request but the client has no auth")
        data = body.encode() if isinstance(body, str) else body
        deadline_s = timeout_s if timeout_s is not None else (self.timeout.total or 10.0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + deadline_s
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise self._timeout_error(method, path, idempotent, deadline_s)
            if self.limiter is not None:
                await self.limiter.acquire(
                    endpoint_class, endpoint=path, symbol=symbol, weight=weight, max_wait_s=remaining
                )
            auth: RequestAuth = self.auth if (signed and self.auth is not None) else self._public_auth
            query, extra_headers = auth.sign(method, path, params, data)
            url = URL(f"{self.base_url}{path}?{query}" if query else f"{self.base_url}{path}", encoded=True)
            error: VenueError
            retryable: bool
            wait_hint: float | None = None
            try:
                self.requests_sent += 1
                async with asyncio.timeout(deadline - loop.time()):
                    async with session.request(method, url, data=data or None, headers=extra_headers) as resp:
                        payload = await resp.read()
                        status = resp.status
                        headers = {k.lower(): v for k, v in resp.headers.items()}
            except _CONNECT_TIMEOUT as exc:
                # sock_connect expired: the connection never opened, nothing was sent
                error = NetworkError(self.venue, f"connect timed out: {type(exc).__name__}")
                retryable = True
            except TimeoutError:
                log.warning("venue=%s %s %s: timed out (attempt %d)", self.venue, method, path, attempt)
                raise self._timeout_error(method, path, idempotent, deadline_s) from None
            except aiohttp.ClientConnectorError as exc:
                # the connection could not be opened: nothing was sent, any call may be retried
                error = NetworkError(self.venue, f"cannot connect: {exc.os_error.strerror or exc}")
                retryable = True
            except (aiohttp.ClientError, OSError) as exc:
                kind = type(exc).__name__
                if idempotent:
                    error = NetworkError(self.venue, f"connection failed during the request: {kind}")
                else:
                    error = OutcomeUnknownError(self.venue, f"connection failed after the request was sent: {kind}")
                retryable = idempotent
            else:
                elapsed = loop.time() - start
                log.debug("venue=%s %s %s -> %d in %.1f ms", self.venue, method, path, status, elapsed * 1e3)
                if 200 <= status < 300:
                    return RestResponse(
                        status=status, body=payload, headers=headers, elapsed_s=elapsed, attempts=attempt
                    )
                error = self.error_mapper(self.venue, status, payload, headers)
                if isinstance(error, RateLimitedError):
                    wait_hint = (
                        error.retry_after_s if error.retry_after_s is not None else self.retry.default_retry_after_s
                    )
                    # a retry that would wait out a penalty reaching past the deadline is no use:
                    # the typed 429 now, not a wait until the deadline
                    retryable = idempotent and loop.time() + wait_hint < deadline
                    if self.limiter is not None:
                        self.limiter.penalize(wait_hint)
                        wait_hint = None  # the limiter now holds the next attempt
                elif isinstance(error, ServerError):
                    if not idempotent:
                        error = OutcomeUnknownError(self.venue, error.message, http_status=status, code=error.code)
                    retryable = idempotent
                else:
                    retryable = False
                log.info(
                    "venue=%s %s %s -> %d %s (%s)", self.venue, method, path, status, error.code, type(error).__name__
                )
            if not retryable or attempt >= self.retry.max_attempts:
                raise error
            delay = max(self.retry.delay(attempt - 1, self._rng), wait_hint or 0.0)
            if loop.time() + delay >= deadline:
                raise error
            self.retries += 1
            log.info(
                "venue=%s %s %s: retry %d in %.0f ms after %s",
                self.venue,
                method,
                path,
                attempt,
                delay * 1e3,
                type(error).__name__,
            )
            await asyncio.sleep(delay)

    def _timeout_error(self, method: str, path: str, idempotent: bool, deadline_s: float) -> VenueError:
        message = f"{method} {path}: no response within {deadline_s:.3f} s"
        if idempotent:
            return RequestTimeoutError(self.venue, message)
        return OutcomeUnknownError(self.venue, message)
