"""MEXC spot v3 codecs on every real payload we have (``shared/data/api/mexc``, PROVENANCE §3-§5).

* The protobuf schema in :mod:`cexarb.venues.mexc.proto` is checked field for field against the
  real ``.proto`` files, and (when ``grpcio-tools`` is installed) byte for byte against
  protoc-generated classes in both directions.
* No real captured MEXC binary frame exists (PROVENANCE §5), so each protobuf push example in
  ``mexc_spot_ws_examples.json`` -- the docs' JSON rendering of the protobuf -- is converted to a
  message, encoded to binary, decoded, and compared field by field with the JSON. The docs name
  the aggre bodies by their legacy keys (``publicdeals`` on the aggre.deals channel...); the
  channel decides which body it is, as on the wire (field 313/314/315).
* Every REST example (docs and ccxt fixtures) decodes; malformed frames raise MexcCodecError (a
  ValueError) naming what was wrong, never another exception type.
"""

from __future__ import annotations

import importlib
import json
import random
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cexarb.model import (
    Instrument,
    InstrumentKind,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from cexarb.venues.base import OrderRequest
from cexarb.venues.mexc import codec, proto
from hypothesis import given, settings
from hypothesis import strategies as st

MEXC = Path("api") / "mexc"


@pytest.fixture(scope="module")
def mexc_dir(data_dir: Path) -> Path:
    folder = data_dir / MEXC
    if not folder.is_dir():
        pytest.skip(f"MEXC payloads not found at {folder}")
    return folder


def _examples(folder: Path, name: str) -> list[dict[str, Any]]:
    return list(json.loads((folder / "docs_examples" / name).read_text())["examples"])


# =============================================================================================
# Schema vs the real .proto files

_MESSAGE_RE = re.compile(r"message\s+(\w+)\s*\{(.*?)\n\}", re.DOTALL)
_FIELD_RE = re.compile(r"^\s*(optional\s+|repeated\s+)?(\w+)\s+(\w+)\s*=\s*(\d+)\s*;", re.MULTILINE)


def _parse_proto_files(folder: Path) -> dict[str, list[tuple[int, str, str, str]]]:
    """message -> [(number, name, type, label)] from the .proto text (oneof members: label 'oneof')."""
    out: dict[str, list[tuple[int, str, str, str]]] = {}
    for path in sorted(folder.glob("*.proto")):
        text = re.sub(r"/\*.*?\*/", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
        text = re.sub(r"//[^\n]*", "", text)
        for match in _MESSAGE_RE.finditer(text):
            body = match.group(2)
            fields = []
            oneof = re.search(r"oneof\s+\w+\s*\{(.*?)\}", body, re.DOTALL)
            if oneof:
                for f in _FIELD_RE.finditer(oneof.group(1)):
                    fields.append((int(f.group(4)), f.group(3), f.group(2), "oneof"))
                body = body[: oneof.start()] + body[oneof.end() :]
            for f in _FIELD_RE.finditer(body):
                fields.append((int(f.group(4)), f.group(3), f.group(2), (f.group(1) or "").strip()))
            out[match.group(1)] = sorted(fields)
    return out


def test_schema_matches_the_proto_files(mexc_dir: Path) -> None:
    parsed = _parse_proto_files(mexc_dir / "proto")
    assert len(list((mexc_dir / "proto").glob("*.proto"))) == 16
    wrapper = parsed.pop("PushDataV3ApiWrapper")
    ours = {
        name: sorted((f.number, f.name, f.type, f.label) for f in fields)
        for name, (_, fields) in proto.MESSAGES.items()
    }
    assert ours == parsed  # every message, every field: number, name, type, label
    ours_wrapper = sorted(
        [(f.number, f.name, f.type, f.label) for f in proto.WRAPPER_FIELDS]
        + [(n, name, msg, "oneof") for n, (name, msg) in proto.BODY_FIELDS.items()]
    )
    assert ours_wrapper == wrapper


# =============================================================================================
# Docs' JSON renderings -> message -> binary -> message


def _spec_by_json_key(cls: type[msgspec.Struct]) -> dict[str, proto.FieldSpec]:
    fields = next(fields for name, (c, fields) in proto.MESSAGES.items() if c is cls)
    out = {}
    for f in fields:
        out[f.name.lower()] = f
        if f.label == "repeated":
            out[(f.name + "List").lower()] = f
    return out


def _from_rendering(cls: type[msgspec.Struct], obj: dict[str, Any]) -> Any:
    specs = _spec_by_json_key(cls)
    values: dict[str, Any] = {}
    for key, value in obj.items():
        spec = specs[key.lower()]  # KeyError = a field the schema does not have
        if spec.label == "repeated":
            sub = proto.MESSAGES[spec.type][0]
            values[spec.attr] = [_from_rendering(sub, item) for item in value]
        elif spec.type in ("int32", "int64"):
            values[spec.attr] = int(value)
        elif spec.type == "bool":
            values[spec.attr] = bool(value)
        else:
            values[spec.attr] = value
    return cls(**values)


_WRAPPER_KEYS = {"channel", "symbol", "symbolid", "createtime", "sendtime"}


def _push_from_rendering(obj: dict[str, Any]) -> proto.PushData:
    body_keys = [k for k in obj if k.lower() not in _WRAPPER_KEYS]
    assert len(body_keys) == 1, body_keys
    body_cls = codec.body_type(obj["channel"])
    wrapper = {k.lower(): v for k, v in obj.items() if k.lower() in _WRAPPER_KEYS}
    return proto.PushData(
        channel=wrapper["channel"],
        symbol=wrapper.get("symbol"),
        symbol_id=wrapper.get("symbolid"),
        create_time=int(wrapper["createtime"]) if "createtime" in wrapper else None,
        send_time=int(wrapper["sendtime"]) if "sendtime" in wrapper else None,
        body=_from_rendering(body_cls, obj[body_keys[0]]),
    )


def _assert_matches_rendering(struct: msgspec.Struct, obj: dict[str, Any]) -> None:
    specs = _spec_by_json_key(type(struct))
    for key, value in obj.items():
        spec = specs[key.lower()]
        got = getattr(struct, spec.attr)
        if spec.label == "repeated":
            assert len(got) == len(value), key
            for g, v in zip(got, value, strict=True):
                _assert_matches_rendering(g, v)
        elif spec.type in ("int32", "int64"):
            assert got == int(value), key
        else:
            assert got == value, key


def _push_examples(folder: Path) -> list[dict[str, Any]]:
    return [e["json"] for e in _examples(folder, "mexc_spot_ws_examples.json") if "channel" in e["json"]]


def test_every_ws_example_decodes(mexc_dir: Path) -> None:
    examples = _examples(mexc_dir, "mexc_spot_ws_examples.json")
    assert len(examples) == 22
    kinds: dict[str, int] = {}
    for example in examples:
        obj = example["json"]
        raw = json.dumps(obj).encode()
        if "channel" in obj:
            push = _push_from_rendering(obj)
            decoded = codec.decode_push(proto.encode_push(push))
            assert decoded == push
            kind = "push"
        elif "method" in obj:
            request = codec.decode_ws_request(raw)
            assert request.verb == "SUBSCRIPTION" and request.params == obj["params"]
            assert codec.decode_ws_request(codec.encode_subscribe(request.params)) == request
            kind = "request"
        elif "listenKey" in obj:
            key = codec.decode_listen_key(raw).listen_key
            assert key == obj["listenKey"]
            kind = "listen_key"
        else:
            ack = codec.decode_text_frame(raw)
            assert isinstance(ack, codec.MexcWsAck) and ack.msg == obj["msg"] and ack.code == 0
            kind = "ack"
        kinds[kind] = kinds.get(kind, 0) + 1
    assert kinds == {"ack": 3, "request": 9, "push": 6, "listen_key": 4}


@pytest.mark.parametrize("index", range(6))
def test_ws_push_example_round_trips_field_by_field(mexc_dir: Path, index: int) -> None:
    obj = _push_examples(mexc_dir)[index]
    push = _push_from_rendering(obj)
    frame = proto.encode_push(push)
    assert isinstance(frame, bytes) and frame[0] == 0x0A  # field 1 (channel), length-delimited
    decoded = codec.decode_push(frame)
    assert decoded.channel == obj["channel"]
    assert decoded.symbol == obj["symbol"]
    sent = obj.get("sendtime", obj.get("sendTime"))
    assert decoded.send_time == (int(sent) if sent is not None else None)
    body_key = next(k for k in obj if k.lower() not in _WRAPPER_KEYS)
    assert decoded.body is not None
    _assert_matches_rendering(decoded.body, obj[body_key])
    assert type(decoded.body) is codec.body_type(obj["channel"])


def test_depth_example_as_a_book_update(mexc_dir: Path) -> None:
    obj = next(o for o in _push_examples(mexc_dir) if "aggre.depth" in o["channel"])
    update = codec.depth_update_from_push(codec.decode_push(proto.encode_push(_push_from_rendering(obj))))
    assert update == codec.MexcDepthUpdate(
        symbol="BTCUSDT",
        from_version=10589632359,
        to_version=10589632359,
        bids=[(92877.58, 0.0)],
        asks=[],
        ts_ms=1736411507002,
    )
    deals = next(o for o in _push_examples(mexc_dir) if "aggre.deals" in o["channel"])
    trades = codec.trades_from_push(codec.decode_push(proto.encode_push(_push_from_rendering(deals))))
    assert [(t.price, t.qty, t.taker_side, t.ts_ns) for t in trades] == [
        (93220.0, 0.04438243, Side.SELL, 1736409765051_000_000)
    ]
    assert trades[0].instrument_key == "mexc-spot:BTCUSDT"
    ticker = next(o for o in _push_examples(mexc_dir) if "aggre.bookTicker" in o["channel"])
    bbo = codec.book_ticker_from_push(codec.decode_push(proto.encode_push(_push_from_rendering(ticker))))
    assert (bbo.bid_price, bbo.bid_qty, bbo.ask_price, bbo.ask_qty) == (93387.28, 3.73485, 93387.29, 7.669875)


# =============================================================================================
# Private pushes (304 / 306 / 307): no JSON rendering in the docs; values in the docs' style

PRIVATE_ORDER = proto.PrivateOrder(
    id="C02__335778738412118016",
    client_id="c-17",
    price="61234.5",
    quantity="0.0015",
    amount="91.85175",
    avg_price="61234.5",
    order_type=1,
    trade_type=1,
    is_maker=True,
    remain_amount="30.61725",
    remain_quantity="0.0005",
    last_deal_quantity="0.001",
    cumulative_quantity="0.001",
    cumulative_amount="61.2345",
    status=3,
    create_time=1736417034280,
)
PRIVATE_DEAL = proto.PrivateDeal(
    price="61234.5",
    quantity="0.001",
    amount="61.2345",
    trade_type=1,
    is_maker=True,
    trade_id="505979017439002624X1",
    client_order_id="c-17",
    order_id="C02__335778738412118016",
    fee_amount="0.0000012",
    fee_currency="BTC",
    time=1736417034289,
)
PRIVATE_ACCOUNT = proto.PrivateAccount(
    vcoin_name="USDT",
    coin_id="128f589271cb4951b03e71e6323eb7be",
    balance_amount="908.14825",
    balance_amount_change="-61.2345",
    frozen_amount="30.61725",
    frozen_amount_change="0",
    type="ENTRUST",
    time=1736417034289,
)
SPOT = Instrument(
    venue="mexc-spot",
    symbol="BTCUSDT",
    kind=InstrumentKind.SPOT,
    base="BTC",
    quote="USDT",
    tick_size=0.01,
    lot_size=0.000001,
)


@pytest.mark.parametrize(
    ("channel", "body"),
    [
        ("spot@private.orders.v3.api.pb", PRIVATE_ORDER),
        ("spot@private.deals.v3.api.pb", PRIVATE_DEAL),
        ("spot@private.account.v3.api.pb", PRIVATE_ACCOUNT),
    ],
    ids=["orders-304", "deals-306", "account-307"],
)
def test_private_push_round_trip(channel: str, body: msgspec.Struct) -> None:
    push = proto.PushData(channel=channel, body=body, symbol="BTCUSDT", send_time=1736417034290)
    frame = proto.encode_push(push)
    number = {proto.PrivateOrder: 304, proto.PrivateDeal: 306, proto.PrivateAccount: 307}[type(body)]
    key = proto._varint_bytes((number << 3) | 2)
    assert key in frame
    assert codec.decode_push(frame) == push
    assert type(body) is codec.body_type(channel)


def test_private_pushes_as_domain_events() -> None:
    order = codec.order_update_from_push(
        proto.PushData(channel="spot@private.orders.v3.api.pb", body=PRIVATE_ORDER, symbol="BTCUSDT")
    )
    assert (
        order.status is OrderStatus.PARTIALLY_FILLED and order.filled_qty == 0.001 and order.avg_fill_price == 61234.5
    )
    assert (order.client_order_id, order.venue_order_id, order.instrument_key) == (
        "c-17",
        "C02__335778738412118016",
        "mexc-spot:BTCUSDT",
    )
    assert order.ts_ns == 1736417034280 * 1_000_000
    fill = codec.fill_from_push(proto.PushData(channel="spot@private.deals.v3.api.pb", body=PRIVATE_DEAL), SPOT)
    assert (
        fill.side is Side.BUY and fill.is_maker and fill.qty == 0.001 and fill.fee == pytest.approx(0.0000012 * 61234.5)
    )
    # the fee was paid in BTC (the base): the account received 0.001 - 0.0000012
    assert fill.fee_base == pytest.approx(0.0000012)
    balance = codec.balance_from_push(proto.PushData(channel="spot@private.account.v3.api.pb", body=PRIVATE_ACCOUNT))
    assert (balance.asset, balance.free, balance.locked) == ("USDT", 908.14825, 30.61725)
    for status, ours in (
        (1, OrderStatus.NEW),
        (2, OrderStatus.FILLED),
        (4, OrderStatus.CANCELED),
        (5, OrderStatus.CANCELED),
    ):
        assert codec.order_status(status) is ours
    with pytest.raises(codec.MexcCodecError, match="status 9"):
        codec.order_status(9)


def test_proto3_presence_and_negative_ints() -> None:
    # implicit-presence defaults are not written; explicit optional "" is
    assert proto.encode(proto.PrivateOrder()) == b""
    assert proto.encode(proto.PrivateOrder(last_deal_quantity="")) == b"\x62\x00"
    assert proto.decode(proto.PrivateOrder, b"\x62\x00").last_deal_quantity == ""
    assert proto.decode(proto.PrivateOrder, b"").last_deal_quantity is None
    negative = proto.PrivateOrder(trade_type=-1, create_time=-(2**63))
    data = proto.encode(negative)
    assert len(data) == (1 + 10) + (2 + 10)  # keys of fields 8 and 16 (1 and 2 bytes) + 10-byte varints
    assert proto.decode(proto.PrivateOrder, data) == negative
    with pytest.raises(ValueError, match="int32"):
        proto.encode(proto.PrivateOrder(trade_type=2**31))


def test_unknown_fields_are_skipped() -> None:
    # a future MEXC field of each wire type, before and inside the body
    extra = b"\x38\x96\x01" + b"\x41" + bytes(8) + b"\x4a\x03abc" + b"\x55" + bytes(4)
    body = proto.encode(proto.PublicAggreBookTicker(bid_price="1", ask_price="2"))
    body += b"\xb8\x06\x01"  # field 103, varint
    frame = b"\x0a\x01c" + extra + b"\xda\x13" + bytes((len(body),)) + body  # field 315
    push = codec.decode_push(frame)
    assert push.channel == "c" and push.body == proto.PublicAggreBookTicker(bid_price="1", ask_price="2")


def test_depth_fast_path_equals_generic_decoder() -> None:
    rng = random.Random(7)
    for n in (0, 1, 5, 60):
        levels = [
            proto.DepthLevel(price=f"{rng.uniform(1, 1e5):.2f}", quantity=f"{rng.uniform(0, 9):.8f}") for _ in range(n)
        ]
        odd = [proto.DepthLevel(price="1" * 130, quantity="2"), proto.DepthLevel(price="3", quantity="")]
        for body in (
            proto.PublicAggreDepths(
                asks=levels,
                bids=levels[::-1] + odd,
                event_type="e",
                from_version="1",
                to_version="9",
                last_order_create_time=-5,
            ),
            proto.PublicLimitDepths(asks=levels, bids=levels, version="7", last_order_create_time=3),
            proto.PublicIncreaseDepths(bids=levels, version="7"),
        ):
            data = proto.encode(body)
            assert proto._decode_depths(type(body), data, 0, len(data), "t") == body
            assert proto._decode_message(type(body), data, 0, len(data), "t") == body


def test_depth_hot_path_equals_decode_push_then_convert() -> None:
    rng = random.Random(11)
    frames = []
    for n in (0, 1, 3, 40):
        levels = [
            proto.DepthLevel(price=f"{rng.uniform(1, 1e5):.2f}", quantity=f"{rng.uniform(0, 9):.8f}") for _ in range(n)
        ]
        for kw in (
            {"symbol": "BTCUSDT", "send_time": 1736411507002},
            {"create_time": 5},
            {"symbol_id": "abc"},  # no symbol: taken from the channel
        ):
            body = proto.PublicAggreDepths(
                asks=levels,
                bids=levels[::-1],
                event_type="e",
                from_version="10",
                to_version="12",
                last_order_create_time=7,
            )
            frames.append(
                proto.encode_push(
                    proto.PushData(channel="spot@public.aggre.depth.v3.api.pb@100ms@ETHUSDT", body=body, **kw)
                )
            )
    # shapes the hot path leaves to the generic decoder
    frames.append(
        proto.encode_push(
            proto.PushData(
                channel="c",
                body=proto.PublicAggreDepths(
                    bids=[proto.DepthLevel(price="1" * 200, quantity="1")], from_version="1", to_version="1"
                ),
            )
        )
    )
    frames.append(proto.encode_push(proto.PushData(channel="c", body=proto.PublicIncreaseDepths(version="4"))))
    for frame in frames:
        assert codec.decode_depth_push(frame) == codec.depth_update_from_push(codec.decode_push(frame))
    assert proto.decode_aggre_depth(frames[0]) is not None and proto.decode_aggre_depth(frames[-1]) is None
    for bad, message in (
        (frames[0][:-3], "runs past the end of the frame"),
        (
            proto.encode_push(
                proto.PushData(channel="c", body=proto.PublicAggreDepths(from_version="x", to_version="1"))
            ),
            "fromVersion",
        ),
        (
            proto.encode_push(
                proto.PushData(channel="c", body=proto.PublicAggreDepths(from_version="3", to_version="1"))
            ),
            "fromVersion 3 > toVersion 1",
        ),
        (
            proto.encode_push(
                proto.PushData(
                    channel="c",
                    body=proto.PublicAggreDepths(
                        from_version="1", to_version="1", bids=[proto.DepthLevel(price="x", quantity="1")]
                    ),
                )
            ),
            "not a number: 'x'",
        ),
    ):
        with pytest.raises(codec.MexcCodecError, match=re.escape(message)):
            codec.decode_depth_push(bad)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_depth_hot_path_never_raises(data: bytes) -> None:
    assert proto.decode_aggre_depth(data) is None or isinstance(proto.decode_aggre_depth(data), proto.AggreDepthFrame)
    prefix = proto.encode_push(
        proto.PushData(channel="c", body=proto.PublicAggreDepths(from_version="1", to_version="2"))
    )
    proto.decode_aggre_depth(prefix + data)
    proto.decode_aggre_depth(prefix[: len(data) % len(prefix)] + data)


# =============================================================================================
# Cross-check against protoc-generated classes (when grpcio-tools is installed)


@pytest.fixture(scope="module")
def pb2(mexc_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    protoc = pytest.importorskip("grpc_tools.protoc", reason="grpcio-tools not installed (optional cross-check)")
    # The .proto files are compiled under a package prefix of ours: protobuf's process-wide
    # descriptor pool is keyed by file name, and ccxt registers the same file names for its own
    # MEXC classes, so bare names would clash with ccxt in the same test process.
    out = tmp_path_factory.mktemp("mexc_pb2")
    pkg = "cexarb_protoc_check"
    (out / "src" / pkg).mkdir(parents=True)
    for proto_file in sorted((mexc_dir / "proto").glob("*.proto")):
        text = re.sub(r'import "([^"/]+\.proto)";', rf'import "{pkg}/\1";', proto_file.read_text())
        text = text.replace('syntax = "proto3";', f'syntax = "proto3";\npackage {pkg};', 1)  # own symbols
        (out / "src" / pkg / proto_file.name).write_text(text)
    files = [str(p) for p in sorted((out / "src" / pkg).glob("*.proto"))]
    assert protoc.main(["protoc", f"-I{out / 'src'}", f"--python_out={out}", *files]) == 0
    sys.path.insert(0, str(out))
    try:
        return importlib.import_module(f"{pkg}.PushDataV3ApiWrapper_pb2")
    finally:
        sys.path.remove(str(out))


def _to_pb(obj: msgspec.Struct, pb_cls: Any) -> Any:
    msg = pb_cls()
    fields = next(fields for name, (c, fields) in proto.MESSAGES.items() if c is type(obj))
    for f in fields:
        value = getattr(obj, f.attr)
        if f.label == "repeated":
            for item in value:
                sub = getattr(msg, f.name).add()
                sub.CopyFrom(_to_pb(item, type(sub)))
        elif value is not None:
            setattr(msg, f.name, value)
    return msg


def _pb_push(push: proto.PushData, module: Any) -> Any:
    msg = module.PushDataV3ApiWrapper(channel=push.channel)
    for f in proto.WRAPPER_FIELDS:
        value = getattr(push, f.attr)
        if value is not None and f.name != "channel":
            setattr(msg, f.name, value)
    if push.body is not None:
        number = next(n for n, (_, m) in proto.BODY_FIELDS.items() if proto.MESSAGES[m][0] is type(push.body))
        name = proto.BODY_FIELDS[number][0]
        getattr(msg, name).CopyFrom(_to_pb(push.body, type(getattr(msg, name))))
    return msg


def test_bytes_identical_to_protoc_generated_classes(pb2: Any, mexc_dir: Path) -> None:
    pushes = [_push_from_rendering(obj) for obj in _push_examples(mexc_dir)]
    pushes += [
        proto.PushData(channel="spot@private.orders.v3.api.pb", body=PRIVATE_ORDER, symbol="BTCUSDT", send_time=1),
        proto.PushData(channel="spot@private.deals.v3.api.pb", body=PRIVATE_DEAL, symbol_id="x", create_time=2),
        proto.PushData(channel="spot@private.account.v3.api.pb", body=PRIVATE_ACCOUNT),
        proto.PushData(channel="neg", body=proto.PrivateOrder(trade_type=-1, create_time=-7, trigger_type=0, state=-3)),
    ]
    for push in pushes:
        ours = proto.encode_push(push)
        theirs = _pb_push(push, pb2).SerializeToString()
        assert ours == theirs, push.channel
        parsed = pb2.PushDataV3ApiWrapper()
        parsed.ParseFromString(ours)
        assert parsed.channel == push.channel
        assert codec.decode_push(theirs) == push


# =============================================================================================
# Malformed frames: always MexcCodecError (a ValueError) naming what was wrong


def _sample_frame() -> bytes:
    levels = [proto.DepthLevel(price="61234.56", quantity="0.5"), proto.DepthLevel(price="61234.57", quantity="0")]
    body = proto.PublicAggreDepths(
        asks=levels, bids=levels, event_type="e", from_version="10", to_version="12", last_order_create_time=99
    )
    return proto.encode_push(
        proto.PushData(
            channel="spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT", symbol="BTCUSDT", send_time=5, body=body
        )
    )


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"", "empty frame"),
        (b"\x0a\x05abc", "length 5 at byte 2 runs past the end"),
        (b"\x0a", "truncated varint"),
        (b"\x28\xff\xff", "truncated varint"),
        (b"\x28" + b"\xff" * 10 + b"\x01", "longer than 10 bytes"),
        (b"\x08\x01", "channel: wire type varint, expected length-delimited"),
        (b"\x0a\x02\xff\xfe", "channel: string at byte 2 is not valid UTF-8"),
        (b"\x0b", "unsupported wire type 3 (start-group)"),
        (b"\x0f", "unsupported wire type 7 (invalid)"),
        (b"\x00", "field number 0"),
        # field 313 (publicAggreDepths) has key bytes ca 13; field 316 (not in the schema) e2 13
        (b"\xca\x13\x03\x0a\x05a", "publicAggreDepths.asks: length 5"),
        (b"\xca\x13\x02\x20\x01", "publicAggreDepths.fromVersion: wire type varint"),
        (b"\xca\x13\x04\x0a\x02\x08\x01", "publicAggreDepths.asks.price: wire type varint"),
        (b"\xca\x13\x02\x41\x00", "publicAggreDepths: truncated 64-bit field #8"),
        (b"\xc8\x13\x01", "publicAggreDepths: wire type varint, expected length-delimited"),
        (b"\xe2\x13\x05ab", "#316: length 5 at byte 3 runs past the end"),
    ],
)
def test_malformed_frames_name_the_problem(frame: bytes, message: str) -> None:
    with pytest.raises(codec.MexcCodecError, match=re.escape(message)):
        codec.decode_push(frame)


def _decode_or_codec_error(frame: bytes) -> None:
    try:
        codec.decode_push(frame)
    except codec.MexcCodecError:
        pass


def test_every_truncation_and_bit_flip_is_a_codec_error_or_a_message() -> None:
    frame = _sample_frame()
    for cut in range(len(frame)):
        _decode_or_codec_error(frame[:cut])
    rng = random.Random(20240808)
    for _ in range(2000):
        data = bytearray(frame)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        _decode_or_codec_error(bytes(data))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_arbitrary_bytes_never_raise_another_exception_type(data: bytes) -> None:
    _decode_or_codec_error(data)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=80), st.text(max_size=80).map(str.encode)))
def test_arbitrary_text_frames_never_raise_another_exception_type(data: bytes) -> None:
    for decode in (codec.decode_text_frame, codec.decode_ws_request, codec.decode_depth, codec.decode_orders):
        try:
            decode(data)
        except codec.MexcCodecError:
            pass


def test_malformed_text_frames_and_requests() -> None:
    assert isinstance(codec.decode_text_frame("Invalid listen key"), codec.InvalidListenKey)
    assert codec.decode_text_frame(codec.encode_pong()).is_pong
    assert codec.decode_ws_request(b'{"method":"ping"}').verb == "PING"  # ccxt's lower-case ping
    for bad, message in (
        (b"not json", "WS text frame"),
        (b'{"id":"x"}', "Expected `int`, got `str` - at `$.id`"),
    ):
        with pytest.raises(codec.MexcCodecError, match=re.escape(message)):
            codec.decode_text_frame(bad)
    for bad, message in (
        (b'{"params":[]}', "missing required field `method`"),
        (b'{"method":"SUB"}', "unknown method 'SUB'"),
    ):
        with pytest.raises(codec.MexcCodecError, match=re.escape(message)):
            codec.decode_ws_request(bad)


def test_bad_versions_and_numbers_in_a_valid_frame() -> None:
    def depth(**kw: Any) -> proto.PushData:
        return proto.PushData(
            channel="spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT", body=proto.PublicAggreDepths(**kw)
        )

    with pytest.raises(codec.MexcCodecError, match="toVersion"):
        codec.depth_update_from_push(depth(from_version="5", to_version="x"))
    with pytest.raises(codec.MexcCodecError, match="fromVersion 6 > toVersion 5"):
        codec.depth_update_from_push(depth(from_version="6", to_version="5"))
    with pytest.raises(codec.MexcCodecError, match="depth bid price: not a number: 'abc'"):
        codec.depth_update_from_push(
            depth(from_version="5", to_version="5", bids=[proto.DepthLevel(price="abc", quantity="1")])
        )
    with pytest.raises(codec.MexcCodecError, match="expected a depth body, got PrivateAccount"):
        codec.depth_update_from_push(proto.PushData(channel="c", body=proto.PrivateAccount()))


# =============================================================================================
# Channels


@pytest.mark.parametrize(
    "channel",
    [
        "spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT",
        "spot@public.aggre.deals.v3.api.pb@10ms@ETHUSDT",
        "spot@public.aggre.bookTicker.v3.api.pb@100ms@BTCUSDT",
        "spot@public.limit.depth.v3.api.pb@BTCUSDT@5",
        "spot@public.kline.v3.api.pb@BTCUSDT@Min15",
        "spot@public.bookTicker.batch.v3.api.pb@BTCUSDT",
        "spot@private.orders.v3.api.pb",
        "spot@private.deals.v3.api.pb",
        "spot@private.account.v3.api.pb",
    ],
)
def test_channel_names_round_trip(channel: str) -> None:
    assert codec.parse_channel(channel).name == channel


@pytest.mark.parametrize(
    ("channel", "message"),
    [
        ("spot@public.aggre.depth.v3.api.pb@50ms@BTCUSDT", "expected @(100ms|10ms)@SYMBOL"),
        ("spot@public.aggre.depth.v3.api.pb@100ms@btcusdt", "must be upper-case"),
        ("spot@public.limit.depth.v3.api.pb@BTCUSDT@7", "expected @SYMBOL@(5|10|20)"),
        ("spot@public.increase.depth.v3.api@BTCUSDT", "not a protobuf"),
        ("spot@private.balances.v3.api.pb", "unknown private channel"),
        ("futures@x", "expected 'spot@...'"),
    ],
)
def test_bad_channels(channel: str, message: str) -> None:
    with pytest.raises(codec.MexcCodecError, match=re.escape(message)):
        codec.parse_channel(channel)
    assert codec.channel_aggre_depth("BTCUSDT") == "spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT"


# =============================================================================================
# REST payloads

_REST_DOC_DECODERS: dict[str, Callable[[bytes], Any]] = {
    "GET /api/v3/exchangeInfo": codec.decode_symbol,
    "GET /api/v3/time": codec.decode_server_time,
    "GET /api/v3/klines": codec.decode_klines,
    "GET /api/v3/depth": codec.decode_depth,
    "GET /api/v3/trades": codec.decode_trades,
    "POST /api/v3/order": codec.decode_order_ack,
    "POST /api/v3/order/test": codec.decode_empty,
    "GET /api/v3/order": codec.decode_order,
    "DELETE /api/v3/order": codec.decode_order,
    "DELETE /api/v3/openOrders": codec.decode_orders,
    "GET /api/v3/openOrders": codec.decode_orders,
    "GET /api/v3/allOrders": codec.decode_orders,
    "GET /api/v3/account": codec.decode_account,
    "GET /api/v3/myTrades": codec.decode_my_trades,
    "GET api/v3/tradeFee": codec.decode_trade_fee,
}
# ccxt fixtures, by the endpoint PROVENANCE §3 infers (the "/api/v3/trades" body has aggTrades keys)
_REST_CCXT_DECODERS: dict[str, Callable[[bytes], Any]] = {
    "GET /api/v3/depth": codec.decode_depth,
    "GET /api/v3/myTrades": codec.decode_my_trades,
    "GET /api/v3/allOrders": codec.decode_orders,
    "GET /api/v3/trades": codec.decode_agg_trades,
    "GET /api/v3/ticker/24hr": codec.decode_ticker,
    "GET /api/v3/klines": codec.decode_klines,
}


def test_every_rest_doc_example_decodes(mexc_dir: Path) -> None:
    examples = _examples(mexc_dir, "mexc_spot_rest_examples.json")
    assert len(examples) == 15
    decoded = {e["heading"]: _REST_DOC_DECODERS[e["heading"]](json.dumps(e["json"]).encode()) for e in examples}
    assert set(decoded) == set(_REST_DOC_DECODERS)
    assert decoded["GET /api/v3/depth"] == codec.MexcDepth(
        last_update_id=1112416, bids=[(15.0, 49999.0)], asks=[(14.0, 1.0)]
    )
    assert decoded["GET /api/v3/time"].server_time == 1645539742000
    assert decoded["POST /api/v3/order"].venue_order_id == "06a480e69e604477bfb48dddd5f0b750"
    order = decoded["GET /api/v3/order"].to_update()
    assert order.status is OrderStatus.NEW and order.client_order_id == "myOrder1" and order.venue_order_id == "1"
    cancel = decoded["DELETE /api/v3/order"].to_update()
    assert cancel.status is OrderStatus.CANCELED and cancel.client_order_id == "myOrder1"  # origClientOrderId
    assert [b.to_balance().total for b in decoded["GET /api/v3/account"].balances] == [1111111.0, 1020000.0]
    trade = decoded["GET /api/v3/myTrades"][0]
    assert (trade.order_id, trade.qty, trade.commission_asset, trade.is_buyer) == (
        "bb41e5663e124046bd9497a3f5692f39",
        12.0,
        "BNB",
        True,
    )
    fee = decoded["GET api/v3/tradeFee"].data
    assert (fee.maker_commission, fee.taker_commission) == (0.003, 0.003)
    assert decoded["GET /api/v3/klines"][0].close == 47436.1


def test_exchange_info_symbol_as_instrument(mexc_dir: Path) -> None:
    example = next(
        e["json"]
        for e in _examples(mexc_dir, "mexc_spot_rest_examples.json")
        if e["heading"] == "GET /api/v3/exchangeInfo"
    )
    info = codec.decode_exchange_info(json.dumps({"timezone": "CST", "serverTime": 1, "symbols": [example]}).encode())
    symbol = info.symbols[0]
    assert symbol.is_tradable and symbol.base_size_precision == 0.1  # min base qty
    inst = codec.symbol_to_instrument(symbol)
    assert inst == Instrument(
        venue="mexc-spot",
        symbol="METALUSDT",
        kind=InstrumentKind.SPOT,
        base="METAL",
        quote="USDT",
        tick_size=1e-5,
        lot_size=0.01,
        min_notional=1.0,
        maker_fee=0.0,
        taker_fee=0.0005,
    )
    assert inst.format_price(inst.price_to_ticks(0.12345)) == "0.12345"
    with pytest.raises(codec.MexcCodecError, match="quote_asset_precision must be >= 0"):
        codec.symbol_to_instrument(msgspec.structs.replace(symbol, quote_asset_precision=-1))


def test_every_ccxt_fixture_decodes(mexc_dir: Path) -> None:
    entries = json.loads((mexc_dir / "ccxt_fixtures" / "mexc_http_responses.json").read_text())["entries"]
    assert len(entries) == 6
    decoded = {
        e["endpoint"]: _REST_CCXT_DECODERS[e["endpoint"]](json.dumps(e["httpResponse"]).encode()) for e in entries
    }
    assert decoded["GET /api/v3/depth"].last_update_id == 20453289489  # a string in the fixture
    fill = decoded["GET /api/v3/myTrades"][0].to_fill(
        Instrument(
            venue="mexc-spot",
            symbol="ATLASUSDT",
            kind=InstrumentKind.SPOT,
            base="ATLAS",
            quote="USDT",
            tick_size=1e-6,
            lot_size=1.0,
        )
    )
    assert (fill.side, fill.qty, fill.price, fill.venue_order_id) == (
        Side.SELL,
        1220.0,
        0.004542,
        "C02__385413065019117569043",
    )
    order = decoded["GET /api/v3/allOrders"][0].to_update()
    assert order.status is OrderStatus.FILLED and order.filled_qty == 1220.0
    assert order.avg_fill_price == pytest.approx(5.54124 / 1220)
    assert decoded["GET /api/v3/ticker/24hr"].bid_price == 73369.83
    assert decoded["GET /api/v3/trades"][0].p == 73238.7


def test_rest_errors_and_malformed_bodies() -> None:
    err = codec.decode_error(b'{"code":700003,"msg":"Timestamp for this request is outside of the recvWindow."}')
    assert err.code == 700003
    for decoder, body, message in (
        (codec.decode_depth, b'{"bids":[]}', "GET /api/v3/depth: Object missing required field `lastUpdateId`"),
        (codec.decode_depth, b'{"lastUpdateId":1,"bids":[["x","1"]]}', "at `$.bids[0][0]`"),
        (codec.decode_account, b"[", "GET /api/v3/account: Expected `object`, got `array`"),
        (codec.decode_account, b'{"balances":[{"asset":"\xfe"}]}', "GET /api/v3/account: 'utf-8' codec can't decode"),
        (codec.decode_order, b'{"symbol":"A","orderId":{},"status":"NEW"}', "at `$.orderId`"),
    ):
        with pytest.raises(codec.MexcCodecError, match=re.escape(message)):
            decoder(body)


def test_order_params_for_each_order_type() -> None:
    def params(side: Side, qty: float, **kw: Any) -> list[tuple[str, str]]:
        return codec.order_params(
            OrderRequest.create(SPOT, side, qty, client_order_id="id1", **kw), quote_order_qty="12.5"
        )

    assert ("type", "LIMIT") in params(Side.SELL, 0.5, price=100.0)
    assert ("type", "IMMEDIATE_OR_CANCEL") in params(Side.SELL, 0.5, price=100.0, time_in_force=TimeInForce.IOC)
    sell = params(Side.SELL, 0.5, type=OrderType.MARKET)
    assert ("type", "MARKET") in sell and ("quantity", "0.500000") in sell and all(k != "price" for k, _ in sell)
    assert ("quoteOrderQty", "12.5") in params(Side.BUY, 0.5, type=OrderType.MARKET)
    with pytest.raises(ValueError, match="reduce_only"):
        params(Side.SELL, 0.5, price=100.0, reduce_only=True)
    with pytest.raises(ValueError, match="client_order_id"):
        codec.order_params(OrderRequest.create(SPOT, Side.SELL, 0.5, price=100.0))


def test_order_params_market_buy_without_quote_order_qty_names_the_field() -> None:
    req = OrderRequest.create(SPOT, Side.BUY, 0.5, type=OrderType.MARKET, client_order_id="id1")
    with pytest.raises(ValueError, match=r"quote_order_qty \(quote to spend\), got None.*IMMEDIATE_OR_CANCEL"):
        codec.order_params(req)
    # the IOC limit MexcSpot sends instead: exact decimal strings from ticks and lots
    ioc = OrderRequest.create(
        SPOT, Side.BUY, 0.5, price_ticks=10_050, time_in_force=TimeInForce.IOC, client_order_id="id1"
    )
    assert codec.order_params(ioc) == [
        ("symbol", SPOT.symbol),
        ("side", "BUY"),
        ("type", "IMMEDIATE_OR_CANCEL"),
        ("quantity", SPOT.format_qty(ioc.qty_lots)),
        ("price", SPOT.format_price(10_050)),
        ("newClientOrderId", "id1"),
    ]
