"""Issue 4, P5: the order-entry client's prepared path -- a signed request without a query is built
from a request head and a signature start computed once per (method, path)
(:meth:`GateSigner.rest_line_signer`, :meth:`GateAuth.line_signer`).

Checked: the bytes equal the general path's (same clock), with and without a body and with extra
headers; the prepared paths are bounded and requests past the bound are still signed right; a new
``auth`` (key rotation) drops what was prepared with the old key; a real aiohttp server verifies
every signature (:func:`verify_rest`).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from cexarb.venues.gateio.signing import GateSigner, verify_rest
from cexarb.venues.order_entry import _MAX_PREPARED, OrderEntryClient
from cexarb.venues.rest import GateAuth
from cexarb.venues.secrets import ApiCredentials, Secret
from loopback import serve

KEY, SECRET = "gate-key-p5", "gate-secret-p5"
NEW_KEY, NEW_SECRET = "gate-key-p5-rotated", "gate-secret-p5-rotated"
BODY = b'{"currency_pair":"BTC_USDT","side":"buy","amount":"0.001","price":"60000.5","time_in_force":"ioc","text":"t-c1"}'
PATH = "/api/v4/spot/orders"


def _client(auth: GateAuth) -> OrderEntryClient:
    return OrderEntryClient("gateio-spot", "http://127.0.0.1:9", auth=auth)


def _general(client: OrderEntryClient, method: str, path: str, body: bytes) -> bytes:
    """What build() gives without the prepared path (the adapter's sign_lines)."""
    prepared, line_signer = client._prepared, client._line_signer
    client._prepared, client._line_signer = {}, None
    try:
        return client.build(method, path, (), body)
    finally:
        client._prepared, client._line_signer = prepared, line_signer


@pytest.mark.parametrize("extra", [{}, {"X-Gate-Size-Decimal": "1"}])
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("POST", PATH, BODY), ("DELETE", f"{PATH}/t-c1", b""), ("POST", PATH, b"")],
)
def test_prepared_bytes_equal_the_general_path(
    extra: dict[str, str], method: str, path: str, body: bytes
) -> None:
    signer = GateSigner(ApiCredentials(KEY, SECRET), clock_s=lambda: 1_700_000_000.25)
    client = _client(GateAuth(signer, extra_headers=extra))
    prepared = client.build(method, path, (), body)
    assert (method, path) in client._prepared
    assert prepared == client.build(method, path, (), body)  # the second from the cache
    assert prepared == _general(client, method, path, body)
    assert b"Timestamp: 1700000000\r\n" in prepared and prepared.endswith(
        b"\r\n\r\n" + body
    )


def test_the_timestamp_follows_the_clock() -> None:
    now = [1_700_000_000.9]
    client = _client(
        GateAuth(GateSigner(ApiCredentials(KEY, SECRET), clock_s=lambda: now[0]))
    )
    first = client.build("POST", PATH, (), BODY)
    now[0] += 1.0
    second = client.build("POST", PATH, (), BODY)
    assert (
        b"Timestamp: 1700000000\r\n" in first and b"Timestamp: 1700000001\r\n" in second
    )
    assert second == _general(client, "POST", PATH, BODY)


def test_a_path_with_a_line_break_is_refused() -> None:
    client = _client(GateAuth(GateSigner(ApiCredentials(KEY, SECRET))))
    with pytest.raises(ValueError, match="line break"):
        client.build("POST", "/api/v4/spot/orders\r\nX: 1", (), BODY)


class Venue:
    """Verifies every Gate signature against ``key``/``secret`` (swappable: key rotation)."""

    def __init__(self) -> None:
        self.key, self.secret = KEY, SECRET
        self.verified = 0
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.any)

    async def any(self, request: web.Request) -> web.Response:
        body = await request.read()
        verify_rest(
            Secret(self.secret),
            method=request.method,
            path=request.rel_url.raw_path,
            raw_query=request.rel_url.raw_query_string,
            body=body,
            headers=dict(request.headers),
            expected_key=Secret(self.key),
            server_time_s=time.time(),
        )
        self.verified += 1
        return web.json_response({"path": request.rel_url.raw_path, "n": self.verified})


@contextlib.asynccontextmanager
async def _client_of(venue: Venue) -> AsyncIterator[OrderEntryClient]:
    """An order-entry client with the original key, connected to ``venue`` served on loopback."""
    async with serve(venue.app) as url:
        auth = GateAuth(GateSigner(ApiCredentials(KEY, SECRET)))
        async with OrderEntryClient("gateio-spot", url, auth=auth, request_timeout_s=5.0) as client:
            yield client


async def test_prepared_paths_are_bounded_and_every_request_verifies() -> None:
    venue = Venue()
    async with _client_of(venue) as client:
        n = _MAX_PREPARED + 8
        for i in range(n):  # cancels by id: a new path each time
            resp = await client.start_request(
                "DELETE", f"{PATH}/t-c{i}", idempotent=True
            )
            assert json.loads(resp.body)["path"] == f"{PATH}/t-c{i}"
        assert len(client._prepared) == _MAX_PREPARED
        resp = await client.start_request(
            "POST", PATH, (), BODY
        )  # not prepared: the general path
        assert resp.status == 200
        assert venue.verified == n + 1


async def test_a_new_auth_drops_what_was_prepared_with_the_old_key() -> None:
    venue = Venue()
    async with _client_of(venue) as client:
        await client.start_request("POST", PATH, (), BODY)
        assert ("POST", PATH) in client._prepared
        venue.key, venue.secret = NEW_KEY, NEW_SECRET
        client.auth = GateAuth(GateSigner(ApiCredentials(NEW_KEY, NEW_SECRET)))
        assert not client._prepared
        resp = await client.start_request("POST", PATH, (), BODY)
        assert resp.status == 200 and venue.verified == 2
