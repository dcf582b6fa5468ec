"""Request signing (MEXC HMAC-SHA256, Gate HMAC-SHA512) against the documented vectors, the
server-side verify rules (timestamps, recvWindow), and credentials that never leak.

Vectors: ``shared/venues/PROTOCOLS.md`` §1.3 (MEXC, both the query-only and the mixed
query+body form) and §2.3 (Gate GET and POST), each re-computed there from the official docs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import pickle
import stat
from pathlib import Path

import pytest
from cexarb.model import Instrument, InstrumentKind, OrderType, Side, TimeInForce
from cexarb.venues.base import OrderRequest
from cexarb.venues.gateio import codec as gate_codec
from cexarb.venues.gateio import signing as gate
from cexarb.venues.mexc import codec as mexc_codec
from cexarb.venues.mexc import signing as mexc
from cexarb.venues.secrets import ApiCredentials, CredentialsError, Secret

# ---- MEXC [MX-DOC] "Signed Endpoint Security" example -------------------------------------------
MEXC_SECRET = Secret("45d0b3c26f2644f19bfb98b07741b2f5")
MEXC_KEY = "mx0aBYs33eIilxBWC5"
MEXC_QUERY = "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=11&recvWindow=5000&timestamp=1644489390087"
MEXC_SIG = "fd3e4e8543c5188531eb7279d68ae7d26a573d0fc5ab0d18eb692451654d837a"
MEXC_MIXED_QUERY = "symbol=BTCUSDT&side=BUY&type=LIMIT"
MEXC_MIXED_BODY = "quantity=1&price=11&recvWindow=5000&timestamp=1644489390087"
MEXC_MIXED_SIG = "d1a676610ceb39174c8039b3f548357994b2a34139a8addd33baadba65684592"
MEXC_TS = 1644489390087

# ---- Gate [GT-DOC] authentication vectors ---------------------------------------------------
GATE_SECRET = Secret("secret")
GATE_TS = "1541993715"
GATE_GET_SIG = (
    "55f84ea195d6fe57ce62464daaa7c3c02fa9d1dde954e4c898289c9a2407a3d6"
    "fb3faf24deff16790d726b66ac9f74526668b13bd01029199cc4fcc522418b8a"
)
GATE_POST_BODY = '{"contract":"BTC_USD","type":"limit","size":100,"price":6800,"time_in_force":"gtc"}'
GATE_POST_SIG = (
    "eae42da914a590ddf727473aff25fc87d50b64783941061f47a3fdb92742541f"
    "c4c2c14017581b4199a1418d54471c269c03a38d788d802e2c306c37636389f0"
)


# =============================================================================================
# MEXC


def test_mexc_documented_vector_query_only() -> None:
    assert mexc.sign(MEXC_SECRET, MEXC_QUERY) == MEXC_SIG


def test_mexc_documented_vector_mixed_query_and_body() -> None:
    # totalParams = query + body concatenated directly, no '&'
    assert mexc.sign(MEXC_SECRET, MEXC_MIXED_QUERY + MEXC_MIXED_BODY) == MEXC_MIXED_SIG
    assert mexc.sign(MEXC_SECRET, MEXC_MIXED_QUERY + "&" + MEXC_MIXED_BODY) != MEXC_MIXED_SIG


def test_mexc_signer_builds_the_documented_query() -> None:
    signer = mexc.MexcSigner(ApiCredentials(MEXC_KEY, MEXC_SECRET), recv_window_ms=5000)
    params = [("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "LIMIT"), ("quantity", "1"), ("price", "11")]
    query = signer.signed_query(params, timestamp_ms=MEXC_TS)
    assert query == f"{MEXC_QUERY}&signature={MEXC_SIG}"
    assert signer.headers()[mexc.API_KEY_HEADER] == MEXC_KEY


def test_mexc_encode_params_upper_hex_and_refuses_floats() -> None:
    assert mexc.encode_params([("symbols", "BTCUSDT,ETHUSDT")]) == "symbols=BTCUSDT%2CETHUSDT"
    with pytest.raises(TypeError, match="price"):
        mexc.encode_params([("price", 0.1)])


@pytest.mark.parametrize(
    ("query", "body", "signature_where"),
    [
        (MEXC_QUERY, "", "query"),
        (MEXC_MIXED_QUERY, MEXC_MIXED_BODY, "body"),
        (MEXC_MIXED_QUERY, MEXC_MIXED_BODY, "query"),
    ],
    ids=["query-only", "mixed-sig-in-body", "mixed-sig-in-query"],
)
def test_mexc_verify_accepts_the_vectors(query: str, body: str, signature_where: str) -> None:
    sig = mexc.sign(MEXC_SECRET, query + body)
    if signature_where == "query":
        query = f"{query}&signature={sig}"
    else:
        body = f"{body}&signature={sig}"
    req = mexc.verify(MEXC_SECRET, query, body, server_time_ms=MEXC_TS + 100)
    assert req.params["symbol"] == "BTCUSDT" and req.params["price"] == "11"
    assert req.timestamp_ms == MEXC_TS and req.recv_window_ms == 5000
    assert "signature" not in req.params


def _signed(query: str) -> str:
    return f"{query}&signature={mexc.sign(MEXC_SECRET, query)}"


@pytest.mark.parametrize(
    ("server_time_ms", "ok"),
    [
        (MEXC_TS, True),
        (MEXC_TS + 5000, True),  # serverTime - timestamp <= recvWindow
        (MEXC_TS + 5001, False),  # ... > recvWindow
        (MEXC_TS - 999, True),  # timestamp < serverTime + 1000
        (MEXC_TS - 1000, False),  # timestamp >= serverTime + 1000: from the future
    ],
)
def test_mexc_verify_timestamp_window(server_time_ms: int, ok: bool) -> None:
    query = _signed(MEXC_QUERY)
    if ok:
        mexc.verify(MEXC_SECRET, query, server_time_ms=server_time_ms)
    else:
        with pytest.raises(mexc.MexcAuthError) as err:
            mexc.verify(MEXC_SECRET, query, server_time_ms=server_time_ms)
        assert err.value.code == 700003


def test_mexc_verify_recv_window_rules() -> None:
    no_window = _signed("symbol=BTCUSDT&timestamp=1000")
    mexc.verify(MEXC_SECRET, no_window, server_time_ms=6000)  # default 5000
    with pytest.raises(mexc.MexcAuthError) as err:
        mexc.verify(MEXC_SECRET, no_window, server_time_ms=6001)
    assert err.value.code == 700003
    # MEXC's 700005: "recvWindow must less than 60000" (PROTOCOLS.md: 700005 recvWindow >= 60000)
    wide = _signed("symbol=BTCUSDT&recvWindow=59999&timestamp=1000")
    mexc.verify(MEXC_SECRET, wide, server_time_ms=60999)
    for too_wide in ("60000", "60001"):
        with pytest.raises(mexc.MexcAuthError) as err:
            mexc.verify(MEXC_SECRET, _signed(f"symbol=BTCUSDT&recvWindow={too_wide}&timestamp=1000"), server_time_ms=1000)
        assert err.value.code == 700005
    with pytest.raises(ValueError, match="recv_window_ms"):
        mexc.MexcSigner(ApiCredentials(MEXC_KEY, MEXC_SECRET), recv_window_ms=60001)


def test_mexc_verify_rejects_bad_signature_key_and_params() -> None:
    tampered = _signed(MEXC_QUERY).replace("price=11", "price=12")
    with pytest.raises(mexc.MexcAuthError) as err:
        mexc.verify(MEXC_SECRET, tampered, server_time_ms=MEXC_TS)
    assert err.value.code == 700002
    with pytest.raises(mexc.MexcAuthError) as err:
        mexc.verify(MEXC_SECRET, MEXC_QUERY, server_time_ms=MEXC_TS)  # unsigned
    assert err.value.code == 700002
    with pytest.raises(mexc.MexcAuthError) as err:
        mexc.verify(MEXC_SECRET, _signed("symbol=BTCUSDT"), server_time_ms=MEXC_TS)
    assert err.value.code == 44444
    with pytest.raises(mexc.MexcAuthError) as err:
        mexc.verify(MEXC_SECRET, _signed("timestamp=soon"), server_time_ms=MEXC_TS)
    assert err.value.code == 33333
    good = _signed(MEXC_QUERY)
    with pytest.raises(mexc.MexcAuthError) as err:
        mexc.verify(MEXC_SECRET, good, server_time_ms=MEXC_TS, api_key_header="other", expected_key=Secret(MEXC_KEY))
    assert err.value.code == 10072 and err.value.http_status == 401
    mexc.verify(MEXC_SECRET, good, server_time_ms=MEXC_TS, api_key_header=MEXC_KEY, expected_key=Secret(MEXC_KEY))


def test_mexc_signed_order_request_round_trips_through_verify() -> None:
    inst = Instrument(
        venue="mexc-spot",
        symbol="BTCUSDT",
        kind=InstrumentKind.SPOT,
        base="BTC",
        quote="USDT",
        tick_size=0.01,
        lot_size=0.000001,
    )
    req = OrderRequest.create(
        inst, Side.BUY, 0.0015, price=61234.5, client_order_id="c1", time_in_force=TimeInForce.POST_ONLY
    )
    params = mexc_codec.order_params(req)
    # exact decimal strings from ticks/lots (Instrument.format_price / format_qty)
    assert params == [
        ("symbol", "BTCUSDT"),
        ("side", "BUY"),
        ("type", "LIMIT_MAKER"),
        ("quantity", "0.001500"),
        ("price", "61234.50"),
        ("newClientOrderId", "c1"),
    ]
    assert inst.format_qty(req.qty_lots) == "0.001500" and inst.format_price(req.price_ticks or 0) == "61234.50"
    signer = mexc.MexcSigner(ApiCredentials(MEXC_KEY, MEXC_SECRET))
    query = signer.signed_query(params, timestamp_ms=1_700_000_000_000)
    verified = mexc.verify(MEXC_SECRET, query, server_time_ms=1_700_000_000_100)
    assert verified.params["type"] == "LIMIT_MAKER" and verified.params["newClientOrderId"] == "c1"
    assert float(verified.params["price"]) == 61234.5
    market = OrderRequest.create(inst, Side.BUY, 0.001, client_order_id="c2", type=OrderType.MARKET)
    with pytest.raises(ValueError, match="quote_order_qty"):
        mexc_codec.order_params(market)
    assert ("quoteOrderQty", "61.23") in mexc_codec.order_params(market, quote_order_qty="61.23")


# =============================================================================================
# Gate


def test_gate_documented_get_vector() -> None:
    sig = gate.sign_rest(
        GATE_SECRET, "GET", "/api/v4/futures/orders", "contract=BTC_USD&status=finished&limit=50", "", GATE_TS
    )
    assert sig == GATE_GET_SIG
    assert gate.EMPTY_BODY_SHA512.startswith("cf83e135") and gate.EMPTY_BODY_SHA512.endswith("927da3e")


def test_gate_documented_post_vector() -> None:
    sig = gate.sign_rest(GATE_SECRET, "POST", "/api/v4/futures/orders", "", GATE_POST_BODY, GATE_TS)
    assert sig == GATE_POST_SIG


def test_gate_signer_headers_match_the_vector() -> None:
    signer = gate.GateSigner(ApiCredentials("key", GATE_SECRET), clock_s=lambda: 1541993715.9)
    headers = signer.rest_headers("POST", "/api/v4/futures/orders", "", GATE_POST_BODY)
    assert headers["Timestamp"] == GATE_TS and headers["SIGN"] == GATE_POST_SIG and headers["KEY"] == "key"


def test_gate_query_is_signed_unencoded_and_sent_encoded() -> None:
    sent, signed = gate.encode_query([("currency_pair", "BTC_USDT"), ("text", "t-a b")])
    assert signed == "currency_pair=BTC_USDT&text=t-a b"
    assert sent == "currency_pair=BTC_USDT&text=t-a%20b"
    headers = gate.GateSigner(ApiCredentials("key", GATE_SECRET)).rest_headers(
        "GET", "/api/v4/spot/orders", signed, timestamp=GATE_TS
    )
    gate.verify_rest(
        GATE_SECRET,
        method="GET",
        path="/api/v4/spot/orders",
        raw_query=sent,
        body="",
        headers=headers,
        expected_key=Secret("key"),
        server_time_s=float(GATE_TS),
    )


def _gate_headers(sig: str = GATE_GET_SIG, ts: str = GATE_TS, key: str = "key") -> dict[str, str]:
    return {"KEY": key, "Timestamp": ts, "SIGN": sig}


def _verify_get(headers: dict[str, str], server_time_s: float) -> None:
    gate.verify_rest(
        GATE_SECRET,
        method="GET",
        path="/api/v4/futures/orders",
        raw_query="contract=BTC_USD&status=finished&limit=50",
        body="",
        headers=headers,
        expected_key=Secret("key"),
        server_time_s=server_time_s,
    )


@pytest.mark.parametrize(("skew", "ok"), [(0, True), (60, True), (-60, True), (61, False), (-61, False)])
def test_gate_verify_timestamp_within_60s(skew: int, ok: bool) -> None:
    if ok:
        _verify_get(_gate_headers(), float(GATE_TS) + skew)
    else:
        with pytest.raises(gate.GateAuthError) as err:
            _verify_get(_gate_headers(), float(GATE_TS) + skew)
        assert err.value.label == "REQUEST_EXPIRED"


def test_gate_verify_float_timestamp_as_the_official_sdk_sends() -> None:
    ts = "1541993715.123"
    sig = gate.sign_rest(
        GATE_SECRET, "GET", "/api/v4/futures/orders", "contract=BTC_USD&status=finished&limit=50", "", ts
    )
    _verify_get(_gate_headers(sig=sig, ts=ts), 1541993716.0)


def test_gate_verify_rejects_bad_signature_key_and_missing_headers() -> None:
    with pytest.raises(gate.GateAuthError) as err:
        _verify_get(_gate_headers(sig=GATE_POST_SIG), float(GATE_TS))
    assert err.value.label == "INVALID_SIGNATURE" and err.value.http_status == 401
    with pytest.raises(gate.GateAuthError) as err:
        _verify_get(_gate_headers(key="nope"), float(GATE_TS))
    assert err.value.label == "INVALID_KEY"
    with pytest.raises(gate.GateAuthError) as err:
        _verify_get({"KEY": "key", "SIGN": GATE_GET_SIG}, float(GATE_TS))
    assert err.value.label == "MISSING_REQUIRED_HEADER" and "Timestamp" in str(err.value)
    with pytest.raises(gate.GateAuthError) as err:
        _verify_get(_gate_headers(ts="yesterday"), float(GATE_TS))
    assert err.value.label == "INVALID_PARAM_VALUE"
    # header names are case-insensitive
    _verify_get({"key": "key", "timestamp": GATE_TS, "sign": GATE_GET_SIG}, float(GATE_TS))


def test_gate_ws_channel_auth_signature() -> None:
    message = "channel=spot.orders&event=subscribe&time=1611541000"
    expected = hmac.new(b"secret", message.encode(), hashlib.sha512).hexdigest()
    assert gate.sign_ws_channel(GATE_SECRET, "spot.orders", "subscribe", 1611541000) == expected
    signer = gate.GateSigner(ApiCredentials("key", GATE_SECRET))
    frame = gate_codec.encode_ws_request(
        "spot.orders", "subscribe", ["BTC_USDT"], time_s=1611541000, request_id=7, signer=signer
    )
    request = gate_codec.decode_ws_request(frame)
    assert request.auth is not None and request.auth.SIGN == expected and request.auth.KEY == "key"
    assert "SIGN" not in repr(request.auth) or "masked" in repr(request.auth)
    gate.verify_ws_channel(
        GATE_SECRET,
        channel=request.channel,
        event=request.event,
        time_s=request.time,
        auth={"method": request.auth.method, "KEY": request.auth.KEY, "SIGN": request.auth.SIGN},
        expected_key=Secret("key"),
        server_time_s=1611541030,
    )
    for kwargs, label in (
        ({"server_time_s": 1611541061}, "REQUEST_EXPIRED"),
        ({"server_time_s": 1611541000, "event": "unsubscribe"}, "INVALID_SIGNATURE"),
        ({"server_time_s": 1611541000, "auth": None}, "INVALID_KEY"),
    ):
        args = {
            "channel": "spot.orders",
            "event": "subscribe",
            "time_s": 1611541000,
            "auth": {"method": "api_key", "KEY": "key", "SIGN": expected},
            "expected_key": Secret("key"),
        }
        args.update(kwargs)
        with pytest.raises(gate.GateAuthError) as err:
            gate.verify_ws_channel(GATE_SECRET, **args)  # type: ignore[arg-type]
        assert err.value.label == label


def test_gate_ws_api_login_signature() -> None:
    expected = hmac.new(b"secret", b"api\nspot.login\n\n1681984544", hashlib.sha512).hexdigest()
    payload = gate.GateSigner(ApiCredentials("key", GATE_SECRET)).ws_api_login_payload("spot.login", "r1", 1681984544)
    assert payload == {"api_key": "key", "signature": expected, "timestamp": "1681984544", "req_id": "r1"}


# =============================================================================================
# Secrets


SECRET_VALUE = "s3cr3t-DO-NOT-PRINT-0123456789abcdef"
KEY_VALUE = "key-DO-NOT-PRINT-9876"


def _leaks(text: str) -> bool:
    return SECRET_VALUE in text or KEY_VALUE in text


def test_secret_is_masked_everywhere(caplog: pytest.LogCaptureFixture) -> None:
    creds = ApiCredentials(KEY_VALUE, SECRET_VALUE, uid="123")
    renderings = [
        repr(creds),
        str(creds),
        f"{creds}",
        f"{creds!r}",
        f"{creds.secret}",
        f"{creds.secret:>40}",
        repr(creds.secret),
        str(creds.key),
        "%s %r" % (creds, creds.secret),  # noqa: UP031 - old-style formatting too
        f"{creds} {creds.secret!r}",
        repr([creds]),
        repr({"c": creds}),
        repr(mexc.MexcSigner(creds)),
        repr(gate.GateSigner(creds)),
    ]
    for text in renderings:
        assert not _leaks(text), text
    log = logging.getLogger("cexarb.test.secrets")
    with caplog.at_level(logging.DEBUG, logger="cexarb.test.secrets"):
        log.info("creds %s %r", creds, creds)
        log.info("secret %s", creds.secret)
        log.info(f"f-string {creds} {creds.secret}")  # the point of the test
        try:
            raise ValueError(creds)
        except ValueError:
            log.exception("with traceback")
    assert caplog.records and not _leaks(caplog.text)
    assert creds.secret.reveal() == SECRET_VALUE and creds.key.reveal() == KEY_VALUE
    assert creds.key.fingerprint() == hashlib.sha256(KEY_VALUE.encode()).hexdigest()[:8]
    assert creds.key.fingerprint() in repr(creds)


def test_secret_refuses_pickling_and_compares_in_constant_time() -> None:
    creds = ApiCredentials(KEY_VALUE, SECRET_VALUE)
    with pytest.raises(TypeError, match="pickle"):
        pickle.dumps(creds.secret)
    with pytest.raises(TypeError, match="pickle"):
        pickle.dumps(creds)
    assert Secret(SECRET_VALUE) == creds.secret and Secret("other") != creds.secret
    with pytest.raises(ValueError, match="non-empty"):
        Secret("")


def test_credentials_from_env_names_the_variable_not_the_value() -> None:
    env = {"MX_KEY": KEY_VALUE, "MX_SECRET": SECRET_VALUE, "EMPTY": " "}
    creds = ApiCredentials.from_env("MX_KEY", "MX_SECRET", environ=env)
    assert creds.secret.reveal() == SECRET_VALUE and creds.source == "env:MX_KEY,MX_SECRET"
    with pytest.raises(CredentialsError, match="MX_MISSING") as err:
        ApiCredentials.from_env("MX_KEY", "MX_MISSING", environ=env)
    assert not _leaks(str(err.value))
    with pytest.raises(CredentialsError, match="EMPTY"):
        ApiCredentials.from_env("EMPTY", "MX_SECRET", environ=env)
    assert ApiCredentials.load("env:MX_KEY,MX_SECRET", environ=env).key.reveal() == KEY_VALUE


def test_credentials_from_toml_and_json_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    toml_file = tmp_path / "keys.toml"
    toml_file.write_text(
        f'[mexc]\nkey = "{KEY_VALUE}"\nsecret = "{SECRET_VALUE}"\n[gate]\nkey = "g"\nsecret = "h"\nuid = 42\n'
    )
    toml_file.chmod(0o600)
    creds = ApiCredentials.from_file(toml_file, section="mexc")
    assert creds.secret.reveal() == SECRET_VALUE and creds.source == f"file:{toml_file}#mexc"
    gate_creds = ApiCredentials.load(f"file:{toml_file}#gate")
    assert gate_creds.uid == "42" and gate_creds.key.reveal() == "g"
    json_file = tmp_path / "keys.json"
    json_file.write_text(json.dumps({"key": KEY_VALUE, "secret": SECRET_VALUE}))
    json_file.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="cexarb.venues.secrets"):
        creds = ApiCredentials.load(str(json_file))
    assert creds.key.reveal() == KEY_VALUE
    assert "readable by group/others" in caplog.text and not _leaks(caplog.text)
    assert stat.S_IMODE(json_file.stat().st_mode) == 0o644


def test_credentials_file_errors_never_quote_the_document(tmp_path: Path) -> None:
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text(f'key = "{KEY_VALUE}"\nsecret = {SECRET_VALUE}\n')  # unquoted value
    bad_json = tmp_path / "bad.json"
    bad_json.write_text(f'{{"key": "{KEY_VALUE}", "secret": {SECRET_VALUE}}}')
    missing_field = tmp_path / "partial.json"
    missing_field.write_text(json.dumps({"key": KEY_VALUE, "secret": 12345}))
    cases = [
        (lambda: ApiCredentials.from_file(bad_toml), "invalid TOML"),
        (lambda: ApiCredentials.from_file(bad_json), "invalid JSON"),
        (lambda: ApiCredentials.from_file(missing_field), "'secret' is not a non-empty string"),
        (lambda: ApiCredentials.from_file(bad_toml, section="mexc"), "invalid TOML"),
        (lambda: ApiCredentials.from_file(tmp_path / "absent.toml"), "cannot read"),
        (lambda: ApiCredentials.load("env:ONLY_ONE"), "expected env:KEY_VAR,SECRET_VAR"),
        # a key pasted where a spec belongs (a bare value naming no file) is not repeated back
        (lambda: ApiCredentials.load(KEY_VALUE), "it names no file"),
        (lambda: ApiCredentials.load(SECRET_VALUE), "not shown: it may be a key"),
        (lambda: ApiCredentials.load(f"env:{KEY_VALUE}"), "expected env:KEY_VAR,SECRET_VAR"),
    ]
    for call, message in cases:
        with pytest.raises(CredentialsError) as err:
            call()
        assert message in str(err.value)
        assert not _leaks(str(err.value))
        assert err.value.__cause__ is None and (err.value.__context__ is None or err.value.__suppress_context__)
