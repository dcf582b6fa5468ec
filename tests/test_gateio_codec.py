"""Gate.io spot and USDT-futures codecs on every real payload we have (``shared/data/api/gateio``).

PROVENANCE §2 (recorded WS sessions and REST snapshots, counted), §3 (ccxt fixtures, live HTTP
bodies), §4 (official docs examples). The recorded sessions store each message as parsed JSON;
we re-serialise it to bytes and decode that, as a connector would the socket's text.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
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
from cexarb.venues.gateio import codec as g
from hypothesis import given, settings
from hypothesis import strategies as st

GATE = Path("api") / "gateio"
SPOT_SESSION = "spot/cryptofeed_ws_session_2021-04-22.jsonl"
SPOT_BOOKS = "spot/cryptofeed_rest_order_book_with_id_2021-04-22.jsonl"
SPOT_PAIRS = "spot/cryptofeed_rest_currency_pairs_2021-04-22.jsonl"
FUT_SESSION = "futures_usdt/cryptofeed_ws_session_2023-05-24.jsonl"
FUT_BOOKS = "futures_usdt/cryptofeed_rest_order_book_with_id_2023-05-24.jsonl"
FUT_CONTRACTS = "futures_usdt/cryptofeed_rest_contracts_2023-05-24.jsonl"


@pytest.fixture(scope="module")
def gate_dir(data_dir: Path) -> Path:
    folder = data_dir / GATE
    if not folder.is_dir():
        pytest.skip(f"Gate.io payloads not found at {folder}")
    return folder


def _lines(folder: Path, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / name).read_text().splitlines() if line.strip()]


def _examples(folder: Path, name: str) -> list[dict[str, Any]]:
    return list(json.loads((folder / "docs_examples" / name).read_text())["examples"])


def _raw(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# =============================================================================================
# Recorded sessions and REST snapshots (PROVENANCE §2)


def _session_kinds(folder: Path, name: str) -> Counter[tuple[str, str]]:
    kinds: Counter[tuple[str, str]] = Counter()
    for line in _lines(folder, name):
        if line["dir"] == "connect":
            kinds[("connect", "")] += 1
        elif line["dir"] == "sent":
            request = g.decode_ws_request(_raw(line["msg"]))
            assert request.event == "subscribe" and request.payload
            kinds[("sent", request.channel)] += 1
        else:
            message = g.decode_ws_frame(_raw(line["msg"]))
            kinds[(type(message).__name__, message.channel)] += 1
    return kinds


def test_spot_session_every_line_decodes_with_provenance_counts(gate_dir: Path) -> None:
    kinds = _session_kinds(gate_dir, SPOT_SESSION)
    assert sum(kinds.values()) == 262
    assert kinds[("GateOrderBookUpdate", "spot.order_book_update")] == 172
    assert kinds[("GateOtherUpdate", "spot.tickers")] == 22
    assert kinds[("GateTradesUpdate", "spot.trades")] == 9
    assert kinds[("GateOtherUpdate", "spot.candlesticks")] == 14
    assert sum(v for (k, _), v in kinds.items() if k == "sent") == 22
    assert sum(v for (k, _), v in kinds.items() if k == "GateWsAck") == 22
    assert kinds[("connect", "")] == 1


def test_futures_session_every_line_decodes_with_provenance_counts(gate_dir: Path) -> None:
    kinds = _session_kinds(gate_dir, FUT_SESSION)
    assert sum(kinds.values()) == 473
    assert kinds[("GateOrderBookUpdate", "futures.order_book_update")] == 352
    assert kinds[("GateBookTickerUpdate", "futures.book_ticker")] == 75
    assert kinds[("GateOtherUpdate", "futures.candlesticks")] == 1
    assert sum(v for (k, _), v in kinds.items() if k == "sent") == 22
    assert sum(v for (k, _), v in kinds.items() if k == "GateWsAck") == 22


def test_recorded_book_updates_have_the_documented_shape(gate_dir: Path) -> None:
    spot = [g.decode_ws_frame(_raw(x["msg"])) for x in _lines(gate_dir, SPOT_SESSION) if x["dir"] == "recv"]
    first = next(m for m in spot if isinstance(m, g.GateOrderBookUpdate))
    assert (first.symbol, first.first_id, first.last_id, first.full) == ("HAI_ETH", 2691446, 2691446, False)
    assert first.bids[0] == (0.00010322, 5360.209) and first.ts_ms == 1619093532978
    fut = [g.decode_ws_frame(_raw(x["msg"])) for x in _lines(gate_dir, FUT_SESSION) if x["dir"] == "recv"]
    book = next(m for m in fut if isinstance(m, g.GateOrderBookUpdate))
    assert (book.symbol, book.first_id, book.last_id, book.bids, book.asks) == (
        "RDNT_USDT",
        203083177,
        203083177,
        [],
        [(0.2983, 0.0)],
    )
    ticker = next(m for m in fut if isinstance(m, g.GateBookTickerUpdate))
    assert (ticker.symbol, ticker.update_id, ticker.bid_price, ticker.bid_qty, ticker.ask_price, ticker.ask_qty) == (
        "PHB_USDT",
        6159967,
        0.7379,
        814.0,
        0.739,
        677.0,
    )
    bbo = ticker.to_book_ticker("gateio-futures:PHB_USDT")
    assert bbo.ts_ns == 1684930165621_000_000 and bbo.update_id == 6159967


def test_rest_snapshots_decode(gate_dir: Path) -> None:
    spot = [g.decode_spot_order_book(_raw(x["response"])) for x in _lines(gate_dir, SPOT_BOOKS)]
    fut = [g.decode_futures_order_book(_raw(x["response"])) for x in _lines(gate_dir, FUT_BOOKS)]
    assert len(spot) == 10 and len(fut) == 10
    assert spot[0].id == 2691446 and spot[0].asks[0] == (0.00010396, 5876.967)
    assert all(len(b.bids) > 0 and len(b.asks) > 0 and b.id > 0 for b in spot + fut)
    assert fut[0].asks[0] == (0.2974, 803.0) and fut[0].update_ms == pytest.approx(1684930166350.0)


def test_currency_pairs_and_contracts_as_instruments(gate_dir: Path) -> None:
    pairs = g.decode_currency_pairs(_raw(_lines(gate_dir, SPOT_PAIRS)[0]["response"]))
    assert len(pairs) == 1458
    instruments = {p.id: p.to_instrument() for p in pairs}
    assert instruments["BTC_USDT"] == Instrument(
        venue="gateio-spot",
        symbol="BTC_USDT",
        kind=InstrumentKind.SPOT,
        base="BTC",
        quote="USDT",
        tick_size=0.01,
        lot_size=0.0001,
        min_notional=1.0,
        maker_fee=0.002,
        taker_fee=0.002,  # fee "0.2" percent
    )
    contracts = g.decode_contracts(_raw(_lines(gate_dir, FUT_CONTRACTS)[0]["response"]))
    assert len(contracts) == 302
    btc = next(c for c in contracts if c.name == "BTC_USDT")
    inst = btc.to_instrument()
    assert inst == Instrument(
        venue="gateio-futures",
        symbol="BTC_USDT",
        kind=InstrumentKind.PERP,
        base="BTC",
        quote="USDT",
        tick_size=0.1,
        lot_size=1.0,
        contract_size=0.0001,
        maker_fee=-0.000152,
        taker_fee=0.00075,
        funding_interval_hours=8.0,
    )
    assert (btc.funding_rate, btc.funding_interval) == (0.000086, 28800)
    assert btc.funding_next_apply_ns == int(btc.funding_next_apply) * 1_000_000_000
    funding = btc.to_funding(ts_ns=1)
    assert funding.instrument_key == "gateio-futures:BTC_USDT" and funding.rate == 0.000086
    assert inst.notional(10, 27000.0) == pytest.approx(10 * 0.0001 * 27000.0)
    assert all(c.to_instrument().lot_size == 1.0 for c in contracts)


# =============================================================================================
# Docs REST examples and ccxt fixtures


_SPOT_REST: list[tuple[str, Callable[[bytes], Any]]] = [
    ("get_spot_currency_pairs", g.decode_currency_pairs),
    ("get_spot_currency_pairs_currency_pair", g.decode_currency_pair),
    ("get_spot_order_book", g.decode_spot_order_book),
    ("get_spot_tickers", g.decode_tickers),
    ("get_spot_trades", g.decode_spot_trades),
    ("get_spot_time", g.decode_server_time),
    ("post_spot_orders", g.decode_spot_order_body),  # the request body
    ("post_spot_orders", g.decode_spot_order),  # action_mode ACK reply
    ("post_spot_orders", g.decode_spot_order),
    ("post_spot_orders", g.decode_spot_order),
    ("get_spot_orders_order_id", g.decode_spot_order),
    ("delete_spot_orders_order_id", g.decode_spot_order),
    ("delete_spot_orders", g.decode_spot_orders),
    ("get_spot_open_orders", g.decode_spot_open_orders),
    ("get_spot_orders", g.decode_spot_orders),
    ("get_spot_accounts", g.decode_spot_accounts),
    ("get_spot_my_trades", g.decode_spot_trades),
    ("get_spot_fee", g.decode_spot_fee),
    ("patch_spot_orders_order_id", g.decode_spot_amend_body),  # the request body
    ("patch_spot_orders_order_id", g.decode_spot_order),
    ("get_account_detail", g.decode_account_detail),
]
_FUTURES_REST: list[tuple[str, Callable[[bytes], Any]]] = [
    ("get_futures_settle_contracts", g.decode_contracts),
    ("get_futures_settle_contracts_contract", g.decode_contract),
    ("get_futures_settle_order_book", g.decode_futures_order_book),
    ("get_futures_settle_funding_rate", g.decode_funding_rates),
    ("get_futures_settle_tickers", g.decode_tickers),
    ("get_futures_settle_trades", g.decode_futures_trades),
    ("post_futures_settle_orders", g.decode_futures_order_body),  # the request body
    ("post_futures_settle_orders", g.decode_futures_order),
    ("get_futures_settle_orders_order_id", g.decode_futures_order),
    ("delete_futures_settle_orders_order_id", g.decode_futures_order),
    ("delete_futures_settle_orders", g.decode_futures_orders),
    ("get_futures_settle_orders", g.decode_futures_orders),
    ("put_futures_settle_orders_order_id", g.decode_futures_amend_body),  # the request body
    ("put_futures_settle_orders_order_id", g.decode_futures_order),
    ("get_futures_settle_accounts", g.decode_futures_account),
    ("get_futures_settle_positions", g.decode_positions),
    ("get_futures_settle_positions_contract", g.decode_position),
    ("post_futures_settle_positions_contract_leverage", g.decode_position),
    ("get_futures_settle_my_trades", g.decode_futures_trades),
    ("get_futures_settle_fee", g.decode_futures_fees),
    ("get_futures_settle_account_book", g.decode_account_book),
]
_CCXT: dict[str, Callable[[bytes], Any]] = {
    "POST /futures/usdt/orders": g.decode_futures_order,
    "DELETE /futures/usdt/price_orders/{order_id}": g.decode_price_order,
    "GET /futures/usdt/liq_orders": g.decode_liquidations,
    "GET /futures/usdt/positions": g.decode_positions,
    "GET /spot/my_trades": g.decode_spot_trades,
    "GET /futures/usdt/my_trades": g.decode_futures_trades,
    "GET /spot/orders?status=finished": g.decode_spot_orders,
    "GET /spot/price_orders?status=finished": g.decode_price_orders,
    "GET /futures/usdt/price_orders?status=finished": g.decode_price_orders,
    "GET /futures/usdt/orders?status=finished": g.decode_futures_orders,
    "GET /spot/trades": g.decode_spot_trades,
    "GET /spot/tickers": g.decode_tickers,
    "GET /spot/candlesticks": g.decode_candlesticks,
    "GET /spot/open_orders": g.decode_spot_open_orders,
    "GET /spot/price_orders?status=open": g.decode_price_orders,
    "GET /futures/usdt/price_orders?status=open": g.decode_price_orders,
    "GET /spot/time": g.decode_server_time,
    "GET /futures/btc/contracts": g.decode_contracts,
}


def _decode_docs(folder: Path, name: str, table: list[tuple[str, Callable[[bytes], Any]]]) -> list[Any]:
    examples = _examples(folder, name)
    assert len(examples) == len(table) == 21
    out = []
    for example, (doc, decoder) in zip(examples, table, strict=True):
        assert example["doc"].endswith(f"/{doc}.md")
        out.append(decoder(_raw(example["json"])))
    return out


def test_every_spot_rest_example_decodes(gate_dir: Path) -> None:
    d = _decode_docs(gate_dir, "gate_spot_rest_examples.json", _SPOT_REST)
    assert d[0][0].to_instrument().tick_size == 1e-6 and d[0][0].to_instrument().lot_size == 0.001
    assert d[2] == g.GateBookSnapshot(
        id=123456, bids=[(1.17, 201.863), (1.16, 725.464)], asks=[(1.52, 1.151), (1.53, 1.218)], update_ms=1623898993121
    )
    assert d[5].server_time == 1597026383085
    assert d[6] == g.GateSpotOrderBody(
        currency_pair="BTC_USDT",
        side="buy",
        amount="0.001",
        price="65000",
        type="limit",
        time_in_force="gtc",
        text="t-abc123",
        account="unified",
        iceberg="0",
    )
    stp = d[8].to_update()
    assert (stp.status, stp.reason, stp.filled_qty, stp.client_order_id) == (OrderStatus.CANCELED, "stp", 0.5, "123456")
    filled = d[9].to_update()
    assert (filled.status, filled.filled_qty, filled.avg_fill_price, filled.client_order_id, filled.venue_order_id) == (
        OrderStatus.FILLED,
        0.001,
        63469.3,
        "abc123",
        "1852454420",
    )
    assert filled.ts_ns == 1710488334074 * 1_000_000
    assert d[13][0].orders[0].to_update().status is OrderStatus.PARTIALLY_FILLED
    assert d[15][0].to_balance().free == 968.8
    inst = d[1].to_instrument()
    fill = d[16][0].to_fill(inst)
    assert (fill.is_maker, fill.side, fill.fee, fill.client_order_id) == (
        True,
        Side.BUY,
        pytest.approx(0.0005 * 0.03),
        "test",
    )
    assert (d[17].maker_fee, d[17].taker_fee) == (0.002, 0.002)
    assert d[20].key.mode == 1


def test_every_futures_rest_example_decodes(gate_dir: Path) -> None:
    d = _decode_docs(gate_dir, "gate_futures_usdt_rest_examples.json", _FUTURES_REST)
    assert d[0][0].to_instrument().contract_size == 0.0001
    assert d[2] == g.GateBookSnapshot(
        id=123456,
        bids=[(1.17, 150.0), (1.16, 203.0)],
        asks=[(1.52, 100.0), (1.53, 40.0)],
        update_ms=pytest.approx(1623898993121.0),
    )
    assert d[3][0] == g.GateFundingRate(t=1543968000, r=0.000157)
    assert d[6].size_contracts == 6024 and d[6].tif == "gtc" and d[6].text == "t-my-custom-id"
    cancelled = d[7].to_update()
    assert (cancelled.status, cancelled.filled_qty, cancelled.client_order_id) == (
        OrderStatus.CANCELED,
        0.0,
        "my-custom-id",
    )
    assert d[14].to_balance().free == pytest.approx(9669.091377934145)
    position = d[15][0].to_position()
    assert (position.instrument_key, position.qty, position.avg_price) == ("gateio-futures:BTC_USDT", -9440.0, 3779.55)
    assert d[19]["1INCH_USDT"].maker_fee == -0.0001
    assert d[20][0].type == "fee"


def test_every_ccxt_fixture_decodes(gate_dir: Path) -> None:
    entries = json.loads((gate_dir / "ccxt_fixtures" / "gate_http_responses.json").read_text())["entries"]
    assert len(entries) == 18
    d = {e["endpoint"]: _CCXT[e["endpoint"]](_raw(e["httpResponse"])) for e in entries}
    assert set(d) == set(_CCXT)
    market = d["POST /futures/usdt/orders"].to_update()
    assert (market.status, market.filled_qty, market.avg_fill_price, market.venue_order_id) == (
        OrderStatus.FILLED,
        100.0,
        0.005416,
        "299207900263708423",
    )
    assert d["GET /futures/usdt/positions"][0].to_position().qty == 1.0
    sell = d["GET /futures/usdt/orders?status=finished"][0]
    assert sell.side is Side.SELL and sell.to_update().filled_qty == 1.0
    spot_market_buy = d["GET /spot/orders?status=finished"][0].to_update()
    # a market buy: amount 5.0 is quote; filled base = filled_total / avg_deal_price
    assert spot_market_buy.filled_qty == pytest.approx(4.998985 / 68.02)
    assert d["GET /spot/time"].server_time == 1731448079476  # a string in the fixture
    inverse = d["GET /futures/btc/contracts"][0].to_instrument()
    assert inverse.kind is InstrumentKind.INVERSE_PERP and inverse.contract_size == 1.0
    trades = d["GET /futures/usdt/my_trades"]
    assert trades[0].venue_trade_id == "29768497" and trades[0].to_trade().taker_side is Side.SELL


def test_rest_errors_and_malformed_bodies() -> None:
    err = g.decode_error(b'{"label":"BALANCE_NOT_ENOUGH","message":"Not enough balance"}')
    assert (err.label, err.text) == ("BALANCE_NOT_ENOUGH", "Not enough balance")
    assert g.decode_error(b'{"label":"INVALID_PARAM_VALUE","detail":"bad"}').text == "bad"
    for decoder, body, message in (
        (g.decode_spot_order_book, b'{"asks":[],"bids":[]}', "no 'id' (request it with with_id=true)"),
        (g.decode_futures_order_book, b'{"id":1,"asks":[{"p":"1"}]}', "missing required field `s` - at `$.asks[0]`"),
        (g.decode_currency_pairs, b'[{"id":"A_B"}]', "missing required field `base` - at `$[0]`"),
        (g.decode_spot_accounts, b"[", "GET /spot/accounts: Input data was truncated"),
        (g.decode_spot_accounts, b'[{"currency":"\xff"}]', "GET /spot/accounts: 'utf-8' codec can't decode byte 0xff"),
        (
            g.decode_spot_order_body,
            b'{"currency_pair":"A_B","side":"buy","amount":1}',
            "Expected `str`, got `int` - at `$.amount`",
        ),
    ):
        with pytest.raises(g.GateCodecError, match=re.escape(message)):
            decoder(body)
    bad = g.decode_spot_order(b'{"id":"1","status":"weird","finish_as":"odd"}')
    with pytest.raises(g.GateCodecError, match="unknown status 'weird' / finish_as 'odd'"):
        bad.to_update()


# =============================================================================================
# Docs WS examples


def _is_request(obj: dict[str, Any]) -> bool:
    if "header" in obj or "result" in obj:
        return False
    return "payload" in obj or "auth" in obj


def _decode_ws_examples(folder: Path, name: str) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for example in _examples(folder, name):
        obj = example["json"]
        if _is_request(obj):
            request = g.decode_ws_request(_raw(obj))
            assert request.channel == obj["channel"]
            kinds["request"] += 1
        else:
            message = g.decode_ws_frame(_raw(obj))
            kinds[type(message).__name__] += 1
    return kinds


def test_every_spot_ws_example_decodes(gate_dir: Path) -> None:
    kinds = _decode_ws_examples(gate_dir, "gate_spot_ws_examples.json")
    assert sum(kinds.values()) == 49
    assert kinds == {
        "request": 9,
        "GateApiResponse": 16,
        "GateOtherUpdate": 8,
        "GateWsAck": 3,
        "GateOrderBookUpdate": 3,
        "GateTradesUpdate": 2,
        "GateOrdersUpdate": 2,
        "GateUserTradesUpdate": 2,
        "GatePong": 1,
        "GateBookTickerUpdate": 1,
        "GateWsError": 1,
        "GateBalancesUpdate": 1,
    }


def test_every_futures_ws_example_decodes(gate_dir: Path) -> None:
    kinds = _decode_ws_examples(gate_dir, "gate_futures_ws_examples.json")
    assert sum(kinds.values()) == 81
    assert kinds == {
        "GateWsAck": 35,
        "GateApiResponse": 15,
        "GateOtherUpdate": 10,
        "request": 10,
        "GateOrderBookUpdate": 3,
        "GatePong": 1,
        "GateTradesUpdate": 1,
        "GateBookTickerUpdate": 1,
        "GateWsError": 1,
        "GateOrdersUpdate": 1,
        "GateUserTradesUpdate": 1,
        "GateBalancesUpdate": 1,
        "GatePositionsUpdate": 1,
    }


def _frame(folder: Path, name: str, channel: str, *, index: int = 0, event: str = "update") -> g.GateWsMessage:
    objs = [
        e["json"]
        for e in _examples(folder, name)
        if e["json"].get("channel") == channel and e["json"].get("event", "update") == event
    ]
    return g.decode_ws_frame(_raw(objs[index]))


def test_ws_book_updates_incl_full_and_obu(gate_dir: Path) -> None:
    spot_full = _frame(gate_dir, "gate_spot_ws_examples.json", "spot.order_book_update")
    assert isinstance(spot_full, g.GateOrderBookUpdate)
    assert (spot_full.full, spot_full.depth, spot_full.first_id, spot_full.last_id) == (True, 100, 48776301, 48776306)
    assert spot_full.bids == [(19137.74, 0.0001), (19088.37, 0.0)]
    obu_full = _frame(gate_dir, "gate_spot_ws_examples.json", "spot.obu", event="update")
    assert isinstance(obu_full, g.GateOrderBookUpdate)
    assert (obu_full.symbol, obu_full.depth, obu_full.full, obu_full.first_id, obu_full.last_id) == (
        "BTC_USDT",
        50,
        True,
        None,
        73777715168,
    )
    obu_delta = _frame(gate_dir, "gate_spot_ws_examples.json", "spot.obu", index=1)
    assert isinstance(obu_delta, g.GateOrderBookUpdate)
    assert (obu_delta.full, obu_delta.first_id, obu_delta.last_id) == (False, obu_full.last_id + 1, 73777715212)
    fut = _frame(gate_dir, "gate_futures_ws_examples.json", "futures.order_book_update")
    assert isinstance(fut, g.GateOrderBookUpdate)
    assert fut.bids == [(54672.1, 0.0), (54664.5, 58794.0)] and fut.depth == 100 and not fut.full
    fobu = _frame(gate_dir, "gate_futures_ws_examples.json", "futures.obu", index=1)
    assert isinstance(fobu, g.GateOrderBookUpdate) and fobu.depth == 400 and fobu.asks == []
    err = _frame(gate_dir, "gate_futures_ws_examples.json", "futures.obu", event="subscribe")
    assert isinstance(err, g.GateWsError) and (err.code, err.message) == (2, "Alert sub ob.BTC_USDT.400")


def test_ws_private_pushes_as_domain_events(gate_dir: Path) -> None:
    spot_orders = _frame(gate_dir, "gate_spot_ws_examples.json", "spot.orders")
    assert isinstance(spot_orders, g.GateOrdersUpdate)
    order = spot_orders.orders[0]
    assert isinstance(order, g.GateSpotOrder) and order.event == "put"
    assert order.to_update().status is OrderStatus.PARTIALLY_FILLED  # open; the docs' filled_amount is 812.8
    inst = Instrument(
        venue="gateio-spot",
        symbol="BTC_USDT",
        kind=InstrumentKind.SPOT,
        base="BTC",
        quote="USDT",
        tick_size=0.01,
        lot_size=0.0001,
    )
    fills = _frame(gate_dir, "gate_spot_ws_examples.json", "spot.usertrades")
    assert isinstance(fills, g.GateUserTradesUpdate)
    fill = fills.trades[0].to_fill(inst)
    assert (fill.side, fill.qty, fill.price, fill.is_maker, fill.fee, fill.venue_order_id) == (
        Side.SELL,
        1.0,
        10000.0,
        False,
        0.002,
        "30784428",
    )
    balances = _frame(gate_dir, "gate_spot_ws_examples.json", "spot.balances")
    assert isinstance(balances, g.GateBalancesUpdate)
    b = balances.balances[0]
    assert isinstance(b, g.GateBalanceChange) and b.to_balance().locked == 5.0
    fut_orders = _frame(gate_dir, "gate_futures_ws_examples.json", "futures.orders")
    assert isinstance(fut_orders, g.GateOrdersUpdate)
    fo = fut_orders.orders[0]
    assert isinstance(fo, g.GateFuturesOrder)
    upd = fo.to_update()
    assert (upd.status, upd.filled_qty, upd.avg_fill_price, upd.ts_ns) == (
        OrderStatus.FILLED,
        1.0,
        40000.4,
        1628736848321 * 1_000_000,
    )
    positions = _frame(gate_dir, "gate_futures_ws_examples.json", "futures.positions")
    assert isinstance(positions, g.GatePositionsUpdate) and positions.positions[0].update_id == 170919
    fbal = _frame(gate_dir, "gate_futures_ws_examples.json", "futures.balances")
    assert isinstance(fbal, g.GateBalancesUpdate) and fbal.balances[0].type == "fee"
    api = next(
        g.decode_ws_frame(_raw(e["json"]))
        for e in _examples(gate_dir, "gate_futures_ws_examples.json")
        if e["json"].get("ack") is False and e["json"].get("header", {}).get("channel") == "futures.order_place"
    )
    assert isinstance(api, g.GateApiResponse) and api.status == 200 and api.result is not None
    assert g.decode_futures_order(api.result).to_update().status is OrderStatus.FILLED


# =============================================================================================
# Server-side encoders, outgoing bodies


def test_server_frames_round_trip() -> None:
    ack = g.decode_ws_frame(g.encode_ws_ack("spot.obu", "subscribe", time_s=1700000000, request_id=3))
    assert ack == g.GateWsAck(channel="spot.obu", event="subscribe", id=3, time_ms=1700000000000)
    err = g.decode_ws_frame(
        g.encode_ws_error("spot.obu", "subscribe", 2, "Alert sub ob.BTC_USDT.50", time_s=1700000000)
    )
    assert isinstance(err, g.GateWsError) and err.code == 2
    update = g.encode_ws_update(
        "futures.order_book_update",
        {"t": 1, "s": "BTC_USDT", "U": 5, "u": 7, "b": [{"p": "100.1", "s": 3}], "a": [], "l": "20"},
        time_ms=1700000000123,
    )
    book = g.decode_ws_frame(update)
    assert book == g.GateOrderBookUpdate(
        channel="futures.order_book_update",
        symbol="BTC_USDT",
        ts_ms=1,
        first_id=5,
        last_id=7,
        bids=[(100.1, 3.0)],
        asks=[],
        depth=20,
    )
    assert isinstance(g.decode_ws_frame(g.encode_ws_ping("futures", time_s=1).replace(b"ping", b"pong")), g.GatePong)
    assert g.decode_ws_request(g.encode_ws_ping("spot", time_s=5)) == g.GateWsRequest(time=5, channel="spot.ping")


SPOT = Instrument(
    venue="gateio-spot",
    symbol="BTC_USDT",
    kind=InstrumentKind.SPOT,
    base="BTC",
    quote="USDT",
    tick_size=0.1,
    lot_size=0.000001,
)
PERP = Instrument(
    venue="gateio-futures",
    symbol="BTC_USDT",
    kind=InstrumentKind.PERP,
    base="BTC",
    quote="USDT",
    tick_size=0.1,
    lot_size=1.0,
    contract_size=0.0001,
)


def test_spot_order_bodies() -> None:
    limit = OrderRequest.create(
        SPOT, Side.BUY, 0.0015, price=65000.1, client_order_id="abc", time_in_force=TimeInForce.POST_ONLY
    )
    body = g.decode_spot_order_body(g.spot_order_body(limit))
    assert body == g.GateSpotOrderBody(
        currency_pair="BTC_USDT", side="buy", amount="0.001500", price="65000.1", time_in_force="poc", text="t-abc"
    )
    sell = g.decode_spot_order_body(
        g.spot_order_body(OrderRequest.create(SPOT, Side.SELL, 0.5, client_order_id="s", type=OrderType.MARKET))
    )
    assert (sell.type, sell.amount, sell.time_in_force, sell.price) == ("market", "0.500000", "ioc", None)
    buy = OrderRequest.create(SPOT, Side.BUY, 0.5, client_order_id="b", type=OrderType.MARKET)
    with pytest.raises(ValueError, match="quote_amount"):
        g.spot_order_body(buy)
    assert g.decode_spot_order_body(g.spot_order_body(buy, quote_amount="100.5")).amount == "100.5"
    with pytest.raises(ValueError, match="must be 1-28 characters"):
        g.spot_order_body(OrderRequest.create(SPOT, Side.BUY, 0.5, price=1.0, client_order_id="has space"))
    with pytest.raises(ValueError, match="must be 1-28 characters"):
        g.text_for_client_order_id("x" * 29)
    assert g.client_order_id_from_text("t-abc") == "abc" and g.client_order_id_from_text("api") == "api"


def test_futures_order_bodies() -> None:
    short = OrderRequest.create(PERP, Side.SELL, 12, price=27000.5, client_order_id="h1", reduce_only=True)
    body = g.decode_futures_order_body(g.futures_order_body(short))
    assert body == g.GateFuturesOrderBody(
        contract="BTC_USDT", size=-12, price="27000.5", tif="gtc", text="t-h1", reduce_only=True
    )
    market = g.decode_futures_order_body(
        g.futures_order_body(OrderRequest.create(PERP, Side.BUY, 3, client_order_id="m", type=OrderType.MARKET))
    )
    assert (market.size, market.price, market.tif) == (3, "0", "ioc")
    assert g.futures_order_body(short).startswith(b'{"contract":"BTC_USDT","size":-12,')  # compact JSON
    with pytest.raises(ValueError, match="lot_size must be 1 contract"):
        g.futures_order_body(OrderRequest.create(SPOT, Side.BUY, 1.0, price=1.0, client_order_id="x"))


# =============================================================================================
# Malformed frames: always GateCodecError (a ValueError), never another exception type


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"", "Gate WS frame: Input data was truncated"),
        (b"[1,2]", "Gate WS frame: Expected `object`, got `array`"),
        (b'{"event":"update","result":{}}', "Gate WS frame: no 'channel'"),
        (b'{"channel":"spot.orders","event":"update"}', "on 'spot.orders' (event 'update'): no 'result'"),
        (b'{"channel":"spot.orders","event":"subscribe","payload":["A"]}', "subscribe reply without 'result'"),
        (
            b'{"channel":"spot.order_book_update","event":"update","result":{"t":1,"s":"A","U":"x","u":2}}',
            "spot.order_book_update result: Expected `int`, got `str` - at `$.U`",
        ),
        (
            b'{"channel":"futures.order_book_update","event":"update","result":{"t":1,"s":"A","U":1,"u":2,"b":[["1","2"]]}}',
            "at `$.b[0]`",
        ),
        (
            b'{"channel":"spot.obu","event":"update","result":{"t":1,"s":"BTC_USDT","u":2}}',
            "is not 'ob.<PAIR>.<LEVEL>'",
        ),
        (
            b'{"channel":"spot.obu","event":"update","result":{"t":1,"s":"ob.A_B.50","u":2}}',
            "incremental push without 'U'",
        ),
        (
            b'{"channel":"spot.book_ticker","event":"update","result":{"t":1,"u":2,"s":"A","b":"x"}}',
            "spot.book_ticker b: not a number: 'x'",
        ),
        (
            b'{"channel":"futures.positions","event":"update","result":{}}',
            "futures.positions result: Expected `array`, got `object`",
        ),
    ],
)
def test_malformed_frames_name_the_problem(frame: bytes, message: str) -> None:
    with pytest.raises(g.GateCodecError, match=re.escape(message)):
        g.decode_ws_frame(frame)


def test_mutated_recorded_frames_never_raise_another_exception_type(gate_dir: Path) -> None:
    frames = [_raw(x["msg"]) for x in _lines(gate_dir, FUT_SESSION) if x["dir"] == "recv"][:40]
    frames += [_raw(x["msg"]) for x in _lines(gate_dir, SPOT_SESSION) if x["dir"] == "recv"][:40]
    rng = random.Random(20230524)
    tried = 0
    for frame in frames:
        for cut in range(0, len(frame), max(1, len(frame) // 25)):
            _decode_or_error(frame[:cut])
            tried += 1
        for _ in range(20):
            data = bytearray(frame)
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] = rng.choice(b'0123456789"{}[],:.-aeflnrstuxU \xff')
            _decode_or_error(bytes(data))
            tried += 1
    assert tried > 2000


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=80), st.text(max_size=80).map(str.encode)))
def test_arbitrary_bytes_never_raise_another_exception_type(data: bytes) -> None:
    for decode in (g.decode_ws_frame, g.decode_ws_request, g.decode_spot_order_book, g.decode_futures_orders):
        try:
            decode(data)
        except g.GateCodecError:
            pass


def _decode_or_error(data: bytes) -> None:
    try:
        g.decode_ws_frame(data)
    except g.GateCodecError:
        pass


def test_gate_struct_reprs_do_not_show_auth() -> None:
    request = g.GateWsRequest(
        time=1, channel="spot.orders", event="subscribe", auth=g.GateWsAuth(KEY="k" * 32, SIGN="s" * 128)
    )
    assert "kkkk" not in repr(request) and "ssss" not in repr(request)
    assert msgspec.json.decode(msgspec.json.encode(request))["auth"]["KEY"] == "k" * 32
