"""MEXC spot v3 request signing (client) and verification (what the server does; the simulator).

Rule (``shared/venues/PROTOCOLS.md`` §1.3, [MX-DOC] "Signed Endpoint Security"):

* ``signature`` = lowercase hex HMAC-SHA256(key = API secret, message = *totalParams*), where
  totalParams is the query string concatenated **directly** (no ``&``) with the request body
  (``application/x-www-form-urlencoded``). Parameters may sit in either part; both are signed
  byte for byte as sent (URL-encoded form, upper-case hex escapes).
* Signed endpoints carry ``timestamp`` (ms) and optional ``recvWindow`` (ms, default 5000,
  less than 60000: 60000 and more are refused with 700005, PROTOCOLS.md §1.7). The server accepts when ``timestamp < serverTime + 1000`` and
  ``serverTime - timestamp <= recvWindow``.
* Header ``X-MEXC-APIKEY``. ccxt (and we) put every parameter in the query string, body empty,
  ``signature`` last.

Nothing here logs; keep signed queries and headers out of logs too (they carry the signature and
the key).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import quote, unquote_plus

from cexarb.venues.secrets import ApiCredentials, Secret

__all__ = [
    "API_KEY_HEADER",
    "DEFAULT_RECV_WINDOW_MS",
    "MAX_RECV_WINDOW_MS",
    "MexcAuthError",
    "MexcSigner",
    "VerifiedRequest",
    "encode_params",
    "sign",
    "verify",
]

API_KEY_HEADER = "X-MEXC-APIKEY"
DEFAULT_RECV_WINDOW_MS = 5000
#: exclusive bound: ``recvWindow`` must be less than this (MEXC answers 700005 otherwise)
MAX_RECV_WINDOW_MS = 60000
#: the server accepts a timestamp up to this far in its future [MX-DOC]
FUTURE_TOLERANCE_MS = 1000

ParamValue = str | int | float | bool


def sign(secret: Secret, total_params: str) -> str:
    """Lowercase hex HMAC-SHA256 of ``total_params`` (query + body, concatenated as sent)."""
    return hmac.new(secret.reveal().encode(), total_params.encode(), hashlib.sha256).hexdigest()


def _value_str(name: str, value: ParamValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        raise TypeError(f"parameter {name}: pass a decimal string (formatted from ticks/lots), not float {value!r}")
    return str(value)


def encode_params(params: Mapping[str, ParamValue] | Iterable[tuple[str, ParamValue]]) -> str:
    """``k=v&k=v`` in the given order, percent-encoded with upper-case hex (``,`` -> ``%2C``).

    Floats are refused (TypeError naming the parameter): prices and quantities go out as exact
    decimal strings from ``Instrument.format_price/format_qty``.
    """
    items = params.items() if isinstance(params, Mapping) else params
    return "&".join(f"{quote(str(k), safe='')}={quote(_value_str(k, v), safe='')}" for k, v in items)


class MexcSigner:
    """Signs MEXC requests for one account.

    Args:
        credentials: API key and secret.
        recv_window_ms: sent as ``recvWindow`` (1..59999, less than 60000; default 5000, as
            ccxt).

    Raises:
        ValueError: ``recv_window_ms`` outside 1..59999 (MEXC refuses a ``recvWindow`` of 60000
            or more).
        clock_ms: wall clock in ms (tests pass a fixed one); the connector may add a measured
            server-time offset.
    """

    __slots__ = ("_clock_ms", "_credentials", "recv_window_ms")

    def __init__(
        self,
        credentials: ApiCredentials,
        *,
        recv_window_ms: int = DEFAULT_RECV_WINDOW_MS,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        valid = isinstance(recv_window_ms, int) and not isinstance(recv_window_ms, bool)
        if not (valid and 0 < recv_window_ms < MAX_RECV_WINDOW_MS):
            raise ValueError(
                f"recvWindow (recv_window_ms) must be an integer in 1..{MAX_RECV_WINDOW_MS - 1} "
                f"(less than {MAX_RECV_WINDOW_MS}), got {recv_window_ms!r}"
            )
        self._credentials = credentials
        self.recv_window_ms = recv_window_ms
        self._clock_ms = clock_ms or _wall_clock_ms

    def __repr__(self) -> str:
        return f"MexcSigner(credentials={self._credentials!r}, recv_window_ms={self.recv_window_ms})"

    def headers(self) -> dict[str, str]:
        """``X-MEXC-APIKEY`` (and JSON content type). Contains the key: never log it."""
        return {API_KEY_HEADER: self._credentials.key.reveal(), "Content-Type": "application/json"}

    def signed_query(
        self,
        params: Mapping[str, ParamValue] | Iterable[tuple[str, ParamValue]] = (),
        *,
        timestamp_ms: int | None = None,
        body: str = "",
    ) -> str:
        """The full query string to send: ``params`` + ``recvWindow`` + ``timestamp`` + ``signature``.

        ``body`` is the (form-encoded) body that will be sent with it, signed after the query;
        normally empty (everything in the query, as ccxt does).
        """
        ts = self._clock_ms() if timestamp_ms is None else timestamp_ms
        query = encode_params(params)
        tail = f"recvWindow={self.recv_window_ms}&timestamp={ts}"
        query = f"{query}&{tail}" if query else tail
        return f"{query}&signature={sign(self._credentials.secret, query + body)}"


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


# ---------------------------------------------------------------------------------------------
# Server side


class MexcAuthError(ValueError):
    """A signed request the MEXC server would refuse; ``code`` / ``msg`` are MEXC's error body.

    Codes [MX-DOC]/[CCXT]: 700001 bad API key format, 10072 invalid access key, 700002 bad
    signature, 700003 timestamp outside recvWindow, 700005 recvWindow too large, 33333/44444
    parameter error / missing parameter.
    """

    def __init__(self, code: int, msg: str, http_status: int = 400) -> None:
        super().__init__(f"MEXC {code}: {msg}")
        self.code = code
        self.msg = msg
        self.http_status = http_status


class VerifiedRequest:
    """Parameters of a request that passed :func:`verify` (query wins over body on duplicates)."""

    __slots__ = ("params", "recv_window_ms", "timestamp_ms")

    def __init__(self, params: dict[str, str], timestamp_ms: int, recv_window_ms: int) -> None:
        self.params = params
        self.timestamp_ms = timestamp_ms
        self.recv_window_ms = recv_window_ms

    def __repr__(self) -> str:
        return f"VerifiedRequest(params={sorted(self.params)}, timestamp_ms={self.timestamp_ms})"


def _split_signature(part: str) -> tuple[str, str | None]:
    """``part`` without its ``signature=`` pair, and the signature (None when absent)."""
    if not part:
        return part, None
    pairs = part.split("&")
    signature = None
    kept = []
    for pair in pairs:
        if pair.startswith("signature="):
            signature = pair[len("signature=") :]
        else:
            kept.append(pair)
    return "&".join(kept), signature


def _parse_pairs(part: str) -> list[tuple[str, str]]:
    out = []
    for pair in part.split("&") if part else ():
        name, _, value = pair.partition("=")
        out.append((unquote_plus(name), unquote_plus(value)))
    return out


def verify(
    secret: Secret,
    query: str,
    body: str = "",
    *,
    server_time_ms: int,
    api_key_header: str | None = None,
    expected_key: Secret | None = None,
) -> VerifiedRequest:
    """Check a signed request exactly as MEXC does; return its parameters.

    Args:
        secret: the account's API secret.
        query: the raw query string as received (no ``?``), URL-encoded as sent.
        body: the raw form-encoded body ("" when none).
        server_time_ms: the server clock, ms.
        api_key_header: value of ``X-MEXC-APIKEY`` (checked when ``expected_key`` is given).
        expected_key: the account's API key.

    Raises:
        MexcAuthError: 10072 unknown key, 700002 signature missing or wrong, 700003 timestamp
            outside the window (``timestamp >= serverTime + 1000`` or
            ``serverTime - timestamp > recvWindow``), 700005 recvWindow >= 60000, 33333 a
            timestamp/recvWindow that is not an integer, 44444 timestamp missing.
    """
    if expected_key is not None:
        if not api_key_header:
            raise MexcAuthError(10072, "Api key info invalid", 401)
        if not hmac.compare_digest(api_key_header.encode(), expected_key.reveal().encode()):
            raise MexcAuthError(10072, "Api key info invalid", 401)
    q_rest, q_sig = _split_signature(query)
    b_rest, b_sig = _split_signature(body)
    signature = q_sig if q_sig is not None else b_sig
    if not signature:
        raise MexcAuthError(700002, "Signature for this request is not valid.")
    expected = sign(secret, q_rest + b_rest)
    if not hmac.compare_digest(signature.lower().encode(), expected.encode()):
        raise MexcAuthError(700002, "Signature for this request is not valid.")
    params: dict[str, str] = {}
    for name, value in _parse_pairs(b_rest):
        params[name] = value
    for name, value in _parse_pairs(q_rest):  # query wins on duplicates [MX-DOC]
        params[name] = value
    raw_ts = params.get("timestamp")
    if raw_ts is None:
        raise MexcAuthError(44444, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
    try:
        timestamp_ms = int(raw_ts)
    except ValueError:
        raise MexcAuthError(33333, f"Parameter 'timestamp' is not an integer: {raw_ts[:32]!r}") from None
    raw_window = params.get("recvWindow")
    recv_window_ms = DEFAULT_RECV_WINDOW_MS
    if raw_window is not None:
        try:
            recv_window_ms = int(raw_window)
        except ValueError:
            raise MexcAuthError(33333, f"Parameter 'recvWindow' is not an integer: {raw_window[:32]!r}") from None
    if recv_window_ms >= MAX_RECV_WINDOW_MS:
        raise MexcAuthError(700005, f"recvWindow must less than {MAX_RECV_WINDOW_MS}, got {recv_window_ms}")
    if not (timestamp_ms < server_time_ms + FUTURE_TOLERANCE_MS and server_time_ms - timestamp_ms <= recv_window_ms):
        raise MexcAuthError(700003, "Timestamp for this request is outside of the recvWindow.")
    return VerifiedRequest(params, timestamp_ms, recv_window_ms)
