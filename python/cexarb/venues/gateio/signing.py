"""Gate.io APIv4 signing (spot and futures share it) and verification (the simulator's side).

REST (``shared/venues/PROTOCOLS.md`` §2.3, [GT-DOC] authentication, [GT-SDK] ``api_client.py``):

* Headers ``KEY``, ``Timestamp`` (Unix **seconds**, within 60 s of server time), ``SIGN``.
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
from urllib.parse import quote, unquote

from cexarb.venues.secrets import ApiCredentials, Secret

__all__ = [
    "EMPTY_BODY_SHA512",
    "MAX_CLOCK_SKEW_S",
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

#: hex SHA-512 of the empty string, what an empty body hashes to
EMPTY_BODY_SHA512 = hashlib.sha512(b"").hexdigest()
#: Timestamp must be within this many seconds of server time [GT-DOC]
MAX_CLOCK_SKEW_S = 60

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

    Args:
        credentials: API key, secret (and ``uid``, used by futures private channels).
        clock_s: wall clock in seconds (float); tests pass a fixed one.
    """

    __slots__ = ("_clock_s", "_credentials")

    def __init__(self, credentials: ApiCredentials, *, clock_s: Callable[[], float] | None = None) -> None:
        self._credentials = credentials
        self._clock_s = clock_s or time.time

    def __repr__(self) -> str:
        return f"GateSigner(credentials={self._credentials!r})"

    @property
    def uid(self) -> str | None:
        return self._credentials.uid

    def rest_headers(
        self, method: str, path: str, query: str = "", body: str | bytes = "", *, timestamp: str | None = None
    ) -> dict[str, str]:
        """``KEY``, ``Timestamp``, ``SIGN`` (+ JSON content type) for one request. Never log them.

        Args:
            path: with ``/api/v4``, no host.
            query: the **unencoded** query (second value of :func:`encode_query`).
            body: the exact body bytes/text that will be sent.
            timestamp: integer seconds as a string; default now.
        """
        ts = str(int(self._clock_s())) if timestamp is None else timestamp
        return {
            "KEY": self._credentials.key.reveal(),
            "Timestamp": ts,
            "SIGN": sign_rest(self._credentials.secret, method, path, query, body, ts),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    def ws_auth(self, channel: str, event: str, time_s: int) -> dict[str, str]:
        """The ``auth`` object of a private-channel subscribe/unsubscribe request."""
        return {
            "method": "api_key",
            "KEY": self._credentials.key.reveal(),
            "SIGN": sign_ws_channel(self._credentials.secret, channel, event, time_s),
        }

    def ws_api_login_payload(self, channel: str, req_id: str, time_s: int) -> dict[str, str]:
        """``payload`` of a ``spot.login`` / ``futures.login`` request."""
        return {
            "api_key": self._credentials.key.reveal(),
            "signature": sign_ws_api(self._credentials.secret, channel, "", time_s),
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
        headers: request headers (``KEY``, ``Timestamp``, ``SIGN``; looked up case-insensitively).
        server_time_s: server clock, seconds.

    Raises:
        GateAuthError: ``MISSING_REQUIRED_HEADER`` (400), ``INVALID_KEY``, ``REQUEST_EXPIRED``
            (Timestamp more than 60 s away from server time), ``INVALID_SIGNATURE``.
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
