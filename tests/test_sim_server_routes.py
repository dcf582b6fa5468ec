"""Loopback simulator, cross-venue routes and accounts: unknown REST routes answer 404 in the
venue's own error shape (MEXC ``{"code", "msg"}`` under ``/api/v3/``, Gate ``{"label",
"message"}`` under ``/api/v4/``); every account has its own uid (duplicates refused, free uids
assigned); the ``http_error_after_execute`` fault through the admin API. Real server on
127.0.0.1 (port 0), real aiohttp client."""

from __future__ import annotations

import aiohttp
import pytest
from cexarb.venues.sim.faults import FaultKind
from cexarb.venues.sim.server import AccountSpec, SimServer
from loopback import sim_server

HTTP_ERROR_AFTER_EXECUTE = FaultKind.HTTP_ERROR_AFTER_EXECUTE.value

T = aiohttp.ClientTimeout(total=10)


@pytest.fixture
async def server(binance_dir):
    async with sim_server(binance_dir, AccountSpec(api_key="k1", api_secret="s1")) as srv:
        yield srv


@pytest.fixture
async def http():
    async with aiohttp.ClientSession(timeout=T) as session:
        yield session


# ---- unknown routes -------------------------------------------------------------------------------


MEXC_404 = {"code": 404, "msg": "Not Found"}
GATE_404 = {"label": "NOT_FOUND", "message": "Not Found"}


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v3/nope", MEXC_404), ("/api/v3/order/extra", MEXC_404), ("/api/v3/", MEXC_404),
        ("/api/v4/spot/nope", GATE_404), ("/api/v4/futures/usdt/nope", GATE_404), ("/api/v4/", GATE_404),
    ],
)
async def test_unknown_route_is_a_404_in_the_venues_own_shape(server, http, method, path, body):
    async with http.request(method, server.base_url + path) as r:
        assert r.status == 404
        assert r.content_type == "application/json"
        assert await r.json() == body


async def test_other_unknown_paths_stay_plain_and_known_routes_still_answer(server, http):
    async with http.get(server.base_url + "/nope") as r:
        assert r.status == 404 and r.content_type == "text/plain"
    async with http.get(server.base_url + "/api/v3/ping") as r:
        assert r.status == 200 and await r.json() == {}
    async with http.get(server.base_url + "/api/v4/spot/currency_pairs/BTC_USDT") as r:
        assert r.status == 200 and (await r.json())["id"] == "BTC_USDT"
    # a known Gate path with an unknown id is the route's own answer, not the unknown-path one
    async with http.get(server.base_url + "/api/v4/spot/currency_pairs/NOPE_USDT") as r:
        assert r.status == 400 and (await r.json())["label"] == "INVALID_CURRENCY_PAIR"


# ---- uids -----------------------------------------------------------------------------------------


def test_uid_of_an_account_without_one_skips_taken_uids(binance_dir):
    # the CLI's case: --uid 10002 for the first account, a TOML account without a uid second
    # (its default would have been 10002 too, sharing its rate-limit windows)
    srv = SimServer(
        binance_dir,
        [
            AccountSpec(api_key="k1", api_secret="s1", uid=10002),
            AccountSpec(api_key="k2", api_secret="s2"),
            AccountSpec(api_key="k3", api_secret="s3"),
        ],
    )
    assert [a.uid for a in srv.accounts] == [10002, 10003, 10004]
    # an account named later never loses its uid to an earlier one without a uid
    srv = SimServer(
        binance_dir,
        [AccountSpec(api_key="k1", api_secret="s1"), AccountSpec(api_key="k2", api_secret="s2", uid=10001)],
    )
    assert [a.uid for a in srv.accounts] == [10002, 10001]
    # accounts added later skip taken uids too
    added = srv.add_account(AccountSpec(api_key="k3", api_secret="s3"), default_uid=10001)
    assert added.uid == 10003
    assert len({a.uid for a in srv.accounts}) == 3


def test_duplicate_uid_is_refused_naming_uid_and_both_keys(binance_dir):
    specs = [
        AccountSpec(api_key="k1", api_secret="secret-one", uid=10002),
        AccountSpec(api_key="k2", api_secret="secret-two", uid=10002),
    ]
    with pytest.raises(ValueError, match="duplicate uid 10002") as info:
        SimServer(binance_dir, specs)
    text = str(info.value)
    assert "'k1'" in text and "'k2'" in text
    assert "secret-one" not in text and "secret-two" not in text
    srv = SimServer(binance_dir, [AccountSpec(api_key="k1", api_secret="secret-one", uid=7)])
    with pytest.raises(ValueError, match=r"duplicate uid 7: .*'k1'.*'k9'"):
        srv.add_account(AccountSpec(api_key="k9", api_secret="secret-nine", uid=7))
    with pytest.raises(ValueError, match="uid must be >= 1"):
        srv.add_account(AccountSpec(api_key="k8", api_secret="secret-eight", uid=-3))
    assert [a.uid for a in srv.accounts] == [7]


# ---- http_error_after_execute through the admin API --------------------------------------------------


async def test_admin_arms_and_clears_http_error_after_execute(server, http):
    url = server.base_url + "/_sim/faults"
    body = {"venue": "gateio-futures", "kind": HTTP_ERROR_AFTER_EXECUTE, "status": 502, "count": 2}
    async with http.post(url, json=body) as r:
        assert r.status == 200
        armed = await r.json()
    assert (armed["venue"], armed["kind"], armed["status"], armed["count"]) == (
        "gateio-futures",
        HTTP_ERROR_AFTER_EXECUTE,
        502,
        2,
    )
    async with http.get(server.base_url + "/_sim/status") as r:
        kinds = [f["kind"] for f in (await r.json())["faults_armed"]]
    assert kinds == [HTTP_ERROR_AFTER_EXECUTE]
    for bad, field in (({"status": 404}, "status"), ({"count": 0}, "count"), ({"venue": "nope"}, "venue")):
        async with http.post(url, json=body | bad) as r:
            assert r.status == 400
            assert field in (await r.json())["error"]
    async with http.delete(url) as r:
        assert r.status == 200
    assert server.take_error_after_execute("gateio-futures") is None
