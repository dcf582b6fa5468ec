"""Gate.io APIv4 signing (spot and futures share it) and verification (the simulator's side).

REST (``shared/venues/PROTOCOLS.md`` §2.3, [GT-DOC] authentication, [GT-SDK] ``api_client.py``):

* Headers ``KEY``, ``Timestamp`` (Unix **seconds**, within 60 s of server time), ``SIGN``.
* Optional header ``x-gate-exptime`` (Unix **milliseconds**, not signed): Gate refuses the request
  (``REQUEST_EXPIRED``) if it arrives later [GT-SDK]. :class:`GateSigner` puts it on every POST
  (order placement) at now + :data:`ORDER_EXPTIME_MS`, so an order whose answer was lost cannot go
  live after the connector stopped looking for it (``ConnectorBase.resolve_delays_s`` outlasts it).
* ``SIGN`` = hex HMAC-SHA512(secret, ``METHOD\\nPATH\\nQUERY\\nhex(SHA512(BODY))\\nTimestamp``):
  METHOD upper case; PATH with ``/api/v4`` and no host; QUERY as in the URL but **not**
  URL-encoded ("" if none); BODY "" if none.

WebSocket:

* Private channels: the subscribe request carries ``"auth": {"method": "api_key", "KEY", "SIGN"}``
  with SIGN = hex HMAC-SHA512(secret, ``channel=<channel>&event=<event>&time=<time>``), ``time``
  being the request's integer seconds [GT-DOC spot/futures WS "Authentication"].
* WS trading API (``spot.login``, ``futures.order_place``...): SIGN over
  ``"api\\n<channel>\\n<req_param JSON>\\n<time>"`` [GT-DOC][GT-SDK gatews].

Nothing here logs; keep headers, auth objects and signatures out of logs.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Final
from urllib.parse import quote, unquote

from cexarb import _core
from cexarb.venues.secrets import ApiCredentials, Secret

__all__ = [
    "EMPTY_BODY_SHA512",
    "EXPTIME_HEADER",
    "MAX_CLOCK_SKEW_S",
    "ORDER_EXPTIME_MS",
    "GateAuthError",
    "GateSigner",
    "body_hash",
    "encode_query",
    "sign_rest",
    "sign_ws_api",
    "sign_ws_channel",
    "signature_payload",
    "verify_rest",
    "verify_ws_channel",
]

try:  # CPython's own SHA-512 (HACL* from 3.12): no OpenSSL EVP fetch/context per hash, which on
    # the order path costs several times the hash itself when caches are cold
    from _sha2 import sha512 as _sha512  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - CPython <= 3.11
    try:
        from _sha512 import sha512 as _sha512  # type: ignore[import-not-found, no-redef, unused-ignore]
    except ImportError:  # pragma: no cover - not CPython
        from hashlib import sha512 as _sha512  # type: ignore[assignment, no-redef, unused-ignore]

_IPAD: Final = bytes(x ^ 0x36 for x in range(256))
_OPAD: Final = bytes(x ^ 0x5C for x in range(256))
_SHA512_BLOCK: Final = 128


class _HmacSha512:
    """HMAC-SHA512 (RFC 2104) with the key's inner and outer pad states computed once; each
    :meth:`hexdigest` copies them (two SHA-512 state copies, no key schedule, no OpenSSL)."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _SHA512_BLOCK:
            key = _sha512(key).digest()
        key = key.ljust(_SHA512_BLOCK, b"\0")
        self._inner = _sha512(key.translate(_IPAD))
        self._outer = _sha512(key.translate(_OPAD))

    def hexdigest(self, message: bytes) -> str:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return str(outer.hexdigest())


#: hex SHA-512 of the empty string, what an empty body hashes to
EMPTY_BODY_SHA512 = hashlib.sha512(b"").hexdigest()
#: Timestamp must be within this many seconds of server time [GT-DOC]
MAX_CLOCK_SKEW_S = 60

#: the expiry header's name (Gate's SDK spelling; HTTP header names are case-insensitive)
EXPTIME_HEADER: Final = "x-gate-exptime"
#: Default deadline (milliseconds after signing) a POST carries in ``x-gate-exptime``: an order
#: placement reaching Gate later than this is refused. Shorter than the connector's resolve window
#: (``cexarb.venues.connector._RESOLVE_DELAYS_S``, 7.5 s) so "not found" there means "never placed".
ORDER_EXPTIME_MS: Final = 5_000

QueryValue = str | int | bool


def body_hash(body: str | bytes) -> str:
    """hex SHA-512 of the request body as sent ("" -> :data:`EMPTY_BODY_SHA512`)."""
    data = body.encode() if isinstance(body, str) else body
    return hashlib.sha512(data).hexdigest()


def signature_payload(method: str, path: str, query: str, body: str | bytes, timestamp: str) -> str:
    """The 5-line string Gate signs (query unencoded, body hashed)."""
    return f"{method.upper()}\n{path}\n{query}\n{body_hash(body)}\n{timestamp}"


def sign_rest(secret: Secret, method: str, path: str, query: str, body: str | bytes, timestamp: str) -> str:
    """hex HMAC-SHA512 of :func:`signature_payload`; ``timestamp`` exactly as sent in the header."""
    payload = signature_payload(method, path, query, body, timestamp)
    return hmac.new(secret.reveal().encode(), payload.encode(), hashlib.sha512).hexdigest()


def sign_ws_channel(secret: Secret, channel: str, event: str, time_s: int) -> str:
    """SIGN of a private-channel (un)subscribe request: over ``channel=..&event=..&time=..``."""
    message = f"channel={channel}&event={event}&time={time_s}"
    return hmac.new(secret.reveal().encode(), message.encode(), hashlib.sha512).hexdigest()


def sign_ws_api(secret: Secret, channel: str, req_param: str, time_s: int) -> str:
    """SIGN of a WS trading-API request (``spot.login``...): over ``api\\n<channel>\\n<req_param>\\n<time>``.

    ``req_param`` is the JSON text of the request's ``req_param`` ("" for login).
    """
    message = f"api\n{channel}\n{req_param}\n{time_s}"
    return hmac.new(secret.reveal().encode(), message.encode(), hashlib.sha512).hexdigest()


def encode_query(params: Mapping[str, QueryValue] | Iterable[tuple[str, QueryValue]]) -> tuple[str, str]:
    """(URL-encoded query to send, unencoded query to sign), both ``k=v&..`` in the given order.

    Floats are refused (TypeError naming the parameter): amounts go out as decimal strings.
    """
    if not params:
        return "", ""
    items = list(params.items() if isinstance(params, Mapping) else params)
    raw_parts = []
    sent_parts = []
    for k, v in items:
        if isinstance(v, float):
            raise TypeError(f"query parameter {k}: pass a decimal string, not float {v!r}")
        value = ("true" if v else "false") if isinstance(v, bool) else str(v)
        raw_parts.append(f"{k}={value}")
        sent_parts.append(f"{quote(str(k), safe='')}={quote(value, safe='')}")
    return "&".join(sent_parts), "&".join(raw_parts)


class GateSigner:
    """Signs Gate.io REST and WS requests for one account.

    The HMAC-SHA512 pad states are computed once (copied per signature, on CPython's own SHA-512),
    the ``KEY`` header line is encoded once and the ``Timestamp`` string is reused within a
    second: :meth:`rest_header_lines` (the order path's) costs one SHA-512 of the body and two
    SHA-512 state copies.

    Args:
        credentials: API key, secret (and ``uid``, used by futures private channels).
        clock_s: wall clock in seconds (float); tests pass a fixed one.
        exptime_ms: every POST (an order placement) carries ``x-gate-exptime`` = now (ms) + this;
            None sends no expiry (the request then stays valid for the 60 s Timestamp window).
    """

    __slots__ = ("_clock_s", "_credentials", "_hmac", "_key_line", "_ts_int", "_ts_str", "exptime_ms")

    def __init__(
        self,
        credentials: ApiCredentials,
        *,
        clock_s: Callable[[], float] | None = None,
        exptime_ms: int | None = ORDER_EXPTIME_MS,
    ) -> None:
        if exptime_ms is not None and (type(exptime_ms) is not int or exptime_ms <= 0):
            raise ValueError(f"GateSigner: exptime_ms must be a positive int (ms) or None, got {exptime_ms!r}")
        self._credentials = credentials
        self._clock_s = clock_s or time.time
        self.exptime_ms = exptime_ms
        self._hmac = _HmacSha512(credentials.secret.reveal().encode())
        key = credentials.key.reveal()
        self._key_line: bytes | None = None  # None: the key cannot go in an HTTP header
        if "\r" not in key and "\n" not in key:
            try:
                self._key_line = f"KEY: {key}\r\n".encode("latin-1")
            except UnicodeEncodeError:
                pass
        self._ts_int = -1
        self._ts_str = ""

    def __repr__(self) -> str:
        return f"GateSigner(credentials={self._credentials!r})"

    @property
    def uid(self) -> str | None:
        return self._credentials.uid

    def _timestamp(self) -> str:
        """Now in integer seconds, as the ``Timestamp`` header string (cached within a second)."""
        now = int(self._clock_s())
        if now != self._ts_int:
            self._ts_int = now
            self._ts_str = str(now)
        return self._ts_str

    def _sign(self, payload: str) -> str:
        return self._hmac.hexdigest(payload.encode())

    def _exptime(self, method: str) -> int | None:
        """The ``x-gate-exptime`` value (Unix ms) of a ``method`` request signed now; None: none."""
        if self.exptime_ms is None or method.upper() != "POST":
            return None
        return int(self._clock_s() * 1000) + self.exptime_ms

    def rest_headers(
        self, method: str, path: str, query: str = "", body: str | bytes = "", *, timestamp: str | None = None
    ) -> dict[str, str]:
        """``KEY``, ``Timestamp``, ``SIGN`` (+ JSON content type, and ``x-gate-exptime`` on a POST)
        for one request. Never log them.

        Args:
            path: with ``/api/v4``, no host.
            query: the **unencoded** query (second value of :func:`encode_query`).
            body: the exact body bytes/text that will be sent.
            timestamp: integer seconds as a string; default now.
        """
        ts = self._timestamp() if timestamp is None else timestamp
        headers = {
            "KEY": self._credentials.key.reveal(),
            "Timestamp": ts,
            "SIGN": self._sign(signature_payload(method, path, query, body, ts)),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        exptime = self._exptime(method)
        if exptime is not None:
            headers[EXPTIME_HEADER] = str(exptime)
        return headers

    def rest_header_lines(self, method: str, path: str, query: str = "", body: bytes = b"") -> bytes:
        """The ``KEY``, ``Timestamp``, ``SIGN`` and ``Content-Type`` header lines of one request as
        HTTP/1.1 bytes (each ending ``\\r\\n``), signed now, then ``x-gate-exptime`` on a POST --
        what :meth:`rest_headers` gives, without ``Accept`` (the order-entry client sends its own).
        ``method`` upper case; ``query`` unencoded. Never log them.

        Raises:
            ValueError: the API key contains a line break or a non-Latin-1 character.
        """
        key_line = self._key_line
        if key_line is None:
            raise ValueError("Gate API key cannot be sent in an HTTP header (line break or non-Latin-1 character)")
        now = int(self._clock_s())
        if now != self._ts_int:
            self._ts_int = now
            self._ts_str = str(now)
        ts = self._ts_str
        body_hex = _sha512(body).hexdigest() if body else EMPTY_BODY_SHA512
        sign = self._hmac.hexdigest(f"{method.upper()}\n{path}\n{query}\n{body_hex}\n{ts}".encode())
        lines = key_line + f"Timestamp: {ts}\r\nSIGN: {sign}\r\nContent-Type: application/json\r\n".encode()
        exptime = self._exptime(method)
        if exptime is not None:
            lines += b"x-gate-exptime: %d\r\n" % exptime
        return lines

    def rest_line_signer(self, method: str, path: str, query: str = "", extra: bytes = b"") -> Callable[[bytes], bytes]:
        """A function ``body -> header lines`` for requests ``METHOD path?query``: for each body the
        lines :meth:`rest_header_lines` gives (``KEY``, ``Timestamp``, ``SIGN``, ``Content-Type``),
        signed when called, then, for a POST, the ``x-gate-exptime`` line (now + :attr:`exptime_ms`,
        read per call), then ``extra`` (ready HTTP/1.1 lines). The HMAC state after the
        fixed start of the signed text (``METHOD\npath\nquery\n``) is computed here once, so a
        signature costs the body's SHA-512 and the HMAC of ~140 bytes. Never log the lines.

        Raises:
            ValueError: the API key contains a line break or a non-Latin-1 character.
        """
        key_line = self._key_line
        if key_line is None:
            raise ValueError("Gate API key cannot be sent in an HTTP header (line break or non-Latin-1 character)")
        # the key pads and the fixed start absorbed once, in Rust: a request is one call (body
        # SHA-512, HMAC of the tail, hex, header lines) -- on a cold path a dozen Python-level
        # hash calls cost several times that
        mac = _core.PrefixedHmacSha512(
            self._credentials.secret.reveal().encode(), f"{method.upper()}\n{path}\n{query}\n".encode()
        )
        gate_rest_lines = mac.gate_rest_lines
        clock = self._clock_s
        ts_cache: list[object] = [-1, b""]  # integer second, its Timestamp bytes
        if method.upper() != "POST":

            def lines(body: bytes) -> bytes:
                now = int(clock())
                if now != ts_cache[0]:
                    ts_cache[0] = now
                    ts_cache[1] = b"%d" % now
                return gate_rest_lines(body, ts_cache[1], key_line, extra)  # type: ignore[arg-type]

            return lines

        def post_lines(body: bytes) -> bytes:
            t = clock()
            now = int(t)
            if now != ts_cache[0]:
                ts_cache[0] = now
                ts_cache[1] = b"%d" % now
            exptime_ms = self.exptime_ms
            tail = extra if exptime_ms is None else b"x-gate-exptime: %d\r\n%s" % (int(t * 1000) + exptime_ms, extra)
            return gate_rest_lines(body, ts_cache[1], key_line, tail)  # type: ignore[arg-type]

        return post_lines

    def ws_auth(self, channel: str, event: str, time_s: int) -> dict[str, str]:
        """The ``auth`` object of a private-channel subscribe/unsubscribe request."""
        return {
            "method": "api_key",
            "KEY": self._credentials.key.reveal(),
            "SIGN": self._sign(f"channel={channel}&event={event}&time={time_s}"),
        }

    def ws_api_login_payload(self, channel: str, req_id: str, time_s: int) -> dict[str, str]:
        """``payload`` of a ``spot.login`` / ``futures.login`` request."""
        return {
            "api_key": self._credentials.key.reveal(),
            "signature": self._sign(f"api\n{channel}\n\n{time_s}"),
            "timestamp": str(time_s),
            "req_id": req_id,
        }


# ---------------------------------------------------------------------------------------------
# Server side


class GateAuthError(ValueError):
    """A request Gate would refuse: ``label`` / ``message`` as in Gate's error body, HTTP 401."""

    def __init__(self, label: str, message: str, http_status: int = 401) -> None:
        super().__init__(f"Gate {label}: {message}")
        self.label = label
        self.message = message
        self.http_status = http_status


def _parse_timestamp(raw: str, name: str) -> Decimal:
    if not raw.strip():
        raise GateAuthError("MISSING_REQUIRED_HEADER", f"missing required header: {name}", 400)
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise GateAuthError("INVALID_PARAM_VALUE", f"{name} is not a number: {raw[:32]!r}", 400) from None
    if not value.is_finite():
        raise GateAuthError("INVALID_PARAM_VALUE", f"{name} is not finite: {raw[:32]!r}", 400)
    return value


def verify_rest(
    secret: Secret,
    *,
    method: str,
    path: str,
    raw_query: str,
    body: str | bytes,
    headers: Mapping[str, str],
    expected_key: Secret,
    server_time_s: float,
) -> None:
    """Check a signed REST request as Gate does.

    Args:
        raw_query: the query as received (URL-encoded); it is unquoted before hashing, since the
            client signs the unencoded form.
        headers: request headers (``KEY``, ``Timestamp``, ``SIGN``, optional ``x-gate-exptime``
            in Unix ms; looked up case-insensitively).
        server_time_s: server clock, seconds.

    Raises:
        GateAuthError: ``MISSING_REQUIRED_HEADER`` (400), ``INVALID_PARAM_VALUE`` (400: a
            non-numeric Timestamp / x-gate-exptime), ``INVALID_KEY``, ``REQUEST_EXPIRED``
            (Timestamp more than 60 s away from server time, or x-gate-exptime already past),
            ``INVALID_SIGNATURE``.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    key = lower.get("key")
    sign = lower.get("sign")
    if not key:
        raise GateAuthError("MISSING_REQUIRED_HEADER", "missing required header: KEY", 400)
    if not sign:
        raise GateAuthError("MISSING_REQUIRED_HEADER", "missing required header: SIGN", 400)
    ts_raw = lower.get("timestamp") or ""
    ts = _parse_timestamp(ts_raw, "Timestamp")
    if not hmac.compare_digest(key.encode(), expected_key.reveal().encode()):
        raise GateAuthError("INVALID_KEY", "Invalid key provided")
    if abs(ts - Decimal(repr(server_time_s))) > MAX_CLOCK_SKEW_S:
        raise GateAuthError("REQUEST_EXPIRED", "gap between request Timestamp and server time exceeds 60")
    exptime_raw = lower.get(EXPTIME_HEADER)
    if exptime_raw is not None:
        exptime_ms = _parse_timestamp(exptime_raw, EXPTIME_HEADER)
        server_ms = Decimal(repr(server_time_s)) * 1000
        if server_ms > exptime_ms:
            raise GateAuthError(
                "REQUEST_EXPIRED",
                f"request expired: {EXPTIME_HEADER} {exptime_raw.strip()[:32]} ms is before server time "
                f"{int(server_ms)} ms",
            )
    expected = sign_rest(secret, method, path, unquote(raw_query), body, ts_raw)
    if not hmac.compare_digest(sign.lower().encode(), expected.encode()):
        raise GateAuthError("INVALID_SIGNATURE", "Signature mismatch")


def verify_ws_channel(
    secret: Secret,
    *,
    channel: str,
    event: str,
    time_s: int,
    auth: Mapping[str, str] | None,
    expected_key: Secret,
    server_time_s: float,
) -> None:
    """Check the ``auth`` object of a private-channel WS request as Gate does.

    Raises:
        GateAuthError: label ``INVALID_KEY`` / ``REQUEST_EXPIRED`` / ``INVALID_SIGNATURE``; the WS
            server answers these as error code 4 ("auth failed") [GT-DOC].
    """
    if not auth or auth.get("method") != "api_key" or not auth.get("KEY") or not auth.get("SIGN"):
        raise GateAuthError("INVALID_KEY", "auth required: {method: api_key, KEY, SIGN}")
    if not hmac.compare_digest(str(auth["KEY"]).encode(), expected_key.reveal().encode()):
        raise GateAuthError("INVALID_KEY", "Invalid key provided")
    if abs(time_s - server_time_s) > MAX_CLOCK_SKEW_S:
        raise GateAuthError("REQUEST_EXPIRED", "request time differs from server time by more than 60 s")
    expected = sign_ws_channel(secret, channel, event, time_s)
    if not hmac.compare_digest(str(auth["SIGN"]).lower().encode(), expected.encode()):
        raise GateAuthError("INVALID_SIGNATURE", "Signature mismatch")
