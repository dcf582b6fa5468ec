"""Per-symbol book sync (BookManager) over real sockets: the recorded Gate.io WS sessions
(PROVENANCE §2: spot 2021-04-22 and USDT futures 2023-05-24, 10 symbols each) replayed by a test
WebSocket server speaking Gate's protocol, their REST ``with_id`` snapshots served by a test REST
server, our WsClient + RestClient + BookManager on the other side.

The server keeps the venue's true book per symbol (the recorded snapshot plus every recorded
update after it, in plain dicts keyed by the venue's price strings -- independent of the Rust
book). The first snapshot request of a symbol gets the *recorded* REST reply; later ones (resyncs)
get the true book at that moment with ``id`` = the last ``u`` applied. Faults: an update not sent
(dropped), the socket closed mid-session, malformed frames.

Oracles: 0 gaps on the recording; after a dropped update exactly that symbol resyncs once and
every book ends equal to a fresh stitch (snapshot + all updates, no drop) and to the server's
truth; other symbols untouched. Plus the MEXC rule (fromVersion/toVersion) end to end with
protobuf frames, Gate ``full`` resets, crossed books, book age. Bounded loops and waits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from cexarb._core import OrderBook
from cexarb.venues.book_manager import (
    GATE_RULE,
    MEXC_RULE,
    BookManager,
    BookSnapshot,
    DepthUpdate,
    Verdict,
    decode_gate_depth,
    decode_mexc_depth,
)
from cexarb.venues.gateio import codec as g
from cexarb.venues.mexc import codec as mx
from cexarb.venues.mexc import proto
from cexarb.venues.rest import RestClient, RetryPolicy
from cexarb.venues.ws import Backoff, WsClient, WsConnected, WsDisconnected, WsEvent
from hypothesis import given, settings
from hypothesis import strategies as st
from loopback import serve

GATE = Path("api") / "gateio"
MARKETS = {
    "spot": {
        "session": "spot/cryptofeed_ws_session_2021-04-22.jsonl",
        "books": "spot/cryptofeed_rest_order_book_with_id_2021-04-22.jsonl",
        "symbol_param": "currency_pair",
        "rest_path": "/api/v4/spot/order_book",
        "ws_path": "/ws/v4/",
        "channel": "spot.order_book_update",
    },
    "futures": {
        "session": "futures_usdt/cryptofeed_ws_session_2023-05-24.jsonl",
        "books": "futures_usdt/cryptofeed_rest_order_book_with_id_2023-05-24.jsonl",
        "symbol_param": "contract",
        "rest_path": "/api/v4/futures/usdt/order_book",
        "ws_path": "/v4/ws/usdt",
        "channel": "futures.order_book_update",
    },
}


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


class Recording:
    """One recorded Gate session: its received frames in order, the REST snapshots, grids."""

    def __init__(self, folder: Path, market: str) -> None:
        spec = MARKETS[market]
        self.market = market
        self.futures = market == "futures"
        self.frames = [line["msg"] for line in _lines(folder / spec["session"]) if line["dir"] == "recv"]
        self.snapshots: dict[str, dict[str, Any]] = {}
        for line in _lines(folder / spec["books"]):
            symbol = parse_qs(urlsplit(line["url"]).query)[spec["symbol_param"]][0]
            self.snapshots[symbol] = line["response"]
        self.book_frames = [
            i for i, f in enumerate(self.frames) if f.get("channel") == spec["channel"] and f.get("event") == "update"
        ]
        self.updates: dict[str, list[dict[str, Any]]] = {}
        for i in self.book_frames:
            result = self.frames[i]["result"]
            self.updates.setdefault(result["s"], []).append(result)
        # grids: finest decimals seen per symbol (legacy off-grid levels exist: see
        # test_gateio_book_stitching.book_tick)
        self.grid: dict[str, tuple[float, float]] = {}
        for symbol, snap in self.snapshots.items():
            levels = [self._level(lv) for lv in snap["bids"] + snap["asks"]]
            levels += [self._level(lv) for u in self.updates.get(symbol, []) for lv in u["b"] + u["a"]]
            tick = 10.0 ** -max(_decimals(p) for p, _ in levels)
            lot = 10.0 ** -max(_decimals(q) for _, q in levels)
            self.grid[symbol] = (tick, lot)

    def _level(self, level: Any) -> tuple[str, str]:
        if isinstance(level, dict):
            return str(level["p"]), str(level["s"])
        return str(level[0]), str(level[1])

    def fresh_stitch(self, symbol: str) -> OrderBook:
        """The reference: the recorded snapshot + every update after it, straight into a core book."""
        tick, lot = self.grid[symbol]
        snap = (g.decode_futures_order_book if self.futures else g.decode_spot_order_book)(
            json.dumps(self.snapshots[symbol])
        )
        book = OrderBook(tick, lot)
        book.apply_snapshot(snap.bids, snap.asks, snap.id)
        for i in self.book_frames:
            update = g.decode_ws_frame(json.dumps(self.frames[i]))
            assert isinstance(update, g.GateOrderBookUpdate)
            if update.symbol == symbol:
                assert update.first_id is not None
                book.apply_update(update.bids, update.asks, update.first_id, update.last_id)
        assert book.is_valid and book.gap_count == 0
        return book


@pytest.fixture(scope="module", params=["spot", "futures"])
def recording(request: pytest.FixtureRequest, data_dir: Path) -> Recording:
    folder = data_dir / GATE
    if not folder.is_dir():
        pytest.skip(f"Gate.io recordings not found at {folder}")
    return Recording(folder, request.param)


class GateVenue:
    """Test WS + REST server replaying a recording, with the true books and fault switches."""

    def __init__(self, rec: Recording) -> None:
        self.rec = rec
        self.drop: set[int] = set()  # frame indexes not sent (the venue still applied them)
        self.close_at: int | None = None  # close the socket right before this frame index
        self.inject: dict[int, list[str]] = {}  # extra raw frames sent before a frame index
        self.frame_pause_s = 0.001
        self.truth: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        self.truth_id: dict[str, int] = {}
        self.snapshot_requests: dict[str, int] = {}
        for symbol, snap in rec.snapshots.items():
            bids = dict(rec._level(lv) for lv in snap["bids"])
            asks = dict(rec._level(lv) for lv in snap["asks"])
            self.truth[symbol] = (bids, asks)
            self.truth_id[symbol] = int(snap["id"])
        self.ws: web.WebSocketResponse | None = None
        self.subscribed: list[list[str]] = []
        self.replay_task: asyncio.Task[None] | None = None
        self.done = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_get(MARKETS[rec.market]["ws_path"], self.ws_handler)
        self.app.router.add_get(MARKETS[rec.market]["rest_path"], self.order_book)

    def _apply_truth(self, result: dict[str, Any]) -> None:
        symbol = result["s"]
        if symbol not in self.truth or result["u"] <= self.truth_id[symbol]:
            return  # before the recorded snapshot: already in it
        assert result["U"] == self.truth_id[symbol] + 1 or self.truth_id[symbol] == int(
            self.rec.snapshots[symbol]["id"]
        )
        bids, asks = self.truth[symbol]
        for side, levels in ((bids, result["b"]), (asks, result["a"])):
            for level in levels:
                price, qty = self.rec._level(level)
                if float(qty) == 0:
                    side.pop(price, None)
                else:
                    side[price] = level["s"] if isinstance(level, dict) else qty
        self.truth_id[symbol] = result["u"]

    async def order_book(self, request: web.Request) -> web.Response:
        symbol = request.query[MARKETS[self.rec.market]["symbol_param"]]
        assert request.query["with_id"] == "true"
        n = self.snapshot_requests[symbol] = self.snapshot_requests.get(symbol, 0) + 1
        if n == 1:
            return web.json_response(self.rec.snapshots[symbol])  # the recorded REST reply, verbatim
        bids, asks = self.truth[symbol]
        bid_rows = sorted(bids.items(), key=lambda kv: -float(kv[0]))
        ask_rows = sorted(asks.items(), key=lambda kv: float(kv[0]))
        if self.rec.futures:
            body: dict[str, Any] = {
                "id": self.truth_id[symbol],
                "current": time.time(),
                "update": time.time(),
                "bids": [{"p": p, "s": s} for p, s in bid_rows],
                "asks": [{"p": p, "s": s} for p, s in ask_rows],
            }
        else:
            body = {"id": self.truth_id[symbol], "current": 0, "update": 0, "bids": bid_rows, "asks": ask_rows}
        return web.json_response(body)

    async def ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.ws = ws
        subs: list[str] = []
        self.subscribed.append(subs)
        async with asyncio.timeout(30):
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                req = g.decode_ws_request(msg.data)
                if req.channel.endswith(".ping"):
                    await ws.send_str(json.dumps({"time": 1, "channel": req.channel.replace("ping", "pong")}))
                    continue
                subs.append(str(req.payload[0]) if req.payload else "")
                await ws.send_bytes(g.encode_ws_ack(req.channel, req.event, time_s=int(time.time())))
                if self.replay_task is None and len(subs) == len(self.rec.snapshots):
                    self.replay_task = asyncio.create_task(self.replay())
        if self.ws is ws:
            self.ws = None
        return ws

    async def replay(self) -> None:
        try:
            for i, frame in enumerate(self.rec.frames):
                if i == self.close_at and self.ws is not None:
                    await self.ws.close()
                    self.ws = None
                    await asyncio.sleep(0.1)  # frames in this window are lost with the socket
                for extra in self.inject.get(i, []):
                    if self.ws is not None:
                        await self.ws.send_str(extra)
                if frame.get("event") == "update" and frame.get("channel", "").endswith("order_book_update"):
                    self._apply_truth(frame["result"])
                if i not in self.drop and self.ws is not None and not self.ws.closed:
                    await self.ws.send_str(json.dumps(frame))
                await asyncio.sleep(self.frame_pause_s)
        finally:
            self.done.set()


class Client:
    """Our side: WsClient -> BookManager, snapshots through RestClient."""

    def __init__(self, rec: Recording, base: str, session_holder: RestClient) -> None:
        self.rec = rec
        self.rest = session_holder
        self.base = base
        spec = MARKETS[rec.market]
        self.spec = spec
        self.manager = BookManager(
            f"gateio-{rec.market}", GATE_RULE, self.fetch, snapshot_timeout_s=5.0, first_push_wait_s=0.3, seed=7
        )
        for symbol, (tick, lot) in rec.grid.items():
            self.manager.add_symbol(symbol, tick, lot)
        self.invalid_seen: dict[str, int] = dict.fromkeys(rec.grid, 0)
        self.after_event: Callable[[BookManager], None] | None = None  # called after each WS event

    async def fetch(self, symbol: str) -> BookSnapshot:
        params = [(self.spec["symbol_param"], symbol), ("limit", "100"), ("with_id", "true")]
        response = await self.rest.get(self.spec["rest_path"], params)
        decode = g.decode_futures_order_book if self.rec.futures else g.decode_spot_order_book
        return BookSnapshot.from_gate(decode(response.body))

    def handler(self, event: WsEvent) -> None:
        self.manager.handle_ws_event(event, decode_gate_depth)
        if self.after_event is not None:
            self.after_event(self.manager)

    def subscriptions(self) -> list[tuple[str, Callable[[], str]]]:
        channel = self.spec["channel"]
        return [
            (
                f"book:{symbol}",
                (
                    lambda s=symbol: g.encode_ws_request(
                        channel, "subscribe", [s, "100ms"], time_s=int(time.time())
                    ).decode()  # a text frame, as Gate expects
                ),
            )
            for symbol in self.rec.snapshots
        ]


async def _run(
    rec: Recording,
    configure: Callable[[GateVenue], None] = lambda v: None,
    after_event: Callable[[BookManager], None] | None = None,
) -> tuple[GateVenue, Client, WsClient]:
    venue = GateVenue(rec)
    configure(venue)
    async with serve(venue.app) as base:
        retry = RetryPolicy(max_attempts=2, base_delay_s=0.01)
        async with RestClient(f"gateio-{rec.market}", base, retry=retry) as rest:
            client = Client(rec, base, rest)
            client.after_event = after_event
            ws_url = base.replace("http://", "ws://") + MARKETS[rec.market]["ws_path"]
            ws = WsClient(
                "gate book",
                ws_url,
                rest.session,
                handler=client.handler,
                backoff=Backoff(initial_s=0.02, max_s=0.1),
                seed=3,
            )
            async with client.manager, ws:
                for key, make in client.subscriptions():
                    await ws.subscribe(key, make)
                async with asyncio.timeout(30):
                    await venue.done.wait()
                    final = {s: u[-1]["u"] for s, u in rec.updates.items()}
                    for _ in range(3000):  # until every book caught up with the end of the session
                        if all(
                            client.manager.is_synced(s) and client.manager.stats(s).last_id == final[s] for s in final
                        ):
                            break
                        await asyncio.sleep(0.005)
    return venue, client, ws


def _assert_same_book(a: OrderBook, b: OrderBook, symbol: str) -> None:
    assert a.is_valid and b.is_valid, symbol
    assert a.last_update_id == b.last_update_id, symbol
    assert (a.n_bids, a.n_asks) == (b.n_bids, b.n_asks), symbol
    depth = max(a.n_bids, a.n_asks, 1)
    for x, y in zip(a.depth(depth), b.depth(depth), strict=True):
        np.testing.assert_array_equal(x, y, err_msg=symbol)


def _assert_equals_truth(book: OrderBook, venue: GateVenue, symbol: str) -> None:
    bids, asks = venue.truth[symbol]
    got_bids, got_asks = book.depth(max(book.n_bids, book.n_asks, 1))
    assert sorted((float(p), float(q)) for p, q in bids.items()) == sorted(map(tuple, got_bids.tolist())), symbol
    assert sorted((float(p), float(q)) for p, q in asks.items()) == sorted(map(tuple, got_asks.tolist())), symbol


async def test_recorded_session_stitches_with_zero_gaps(recording: Recording) -> None:
    venue, client, ws = await _run(recording)
    m = client.manager
    assert len(m.symbols) == 10
    for symbol in m.symbols:
        stats = m.stats(symbol)
        assert stats.synced and stats.gap_count == 0 and stats.resync_count == 0, stats
        assert stats.snapshots == 1 and venue.snapshot_requests[symbol] == 1, stats  # the recorded snapshot
        assert stats.applied + stats.stale == len(recording.updates[symbol]), stats
        assert stats.stale <= 9, stats
        assert stats.age_s is not None and stats.age_s >= 0
        _assert_same_book(m.book(symbol), recording.fresh_stitch(symbol), symbol)
        _assert_equals_truth(m.book(symbol), venue, symbol)
    assert sum(m.stats(s).applied for s in m.symbols) > 100
    assert m.decode_errors == 0 and ws.reconnects == 0


def _drop_target(rec: Recording) -> tuple[str, int]:
    """A symbol with an applied update in the middle of the session (frame index to drop)."""
    for symbol, snap in sorted(rec.snapshots.items()):
        after = [
            i
            for i in rec.book_frames
            if rec.frames[i]["result"]["s"] == symbol and rec.frames[i]["result"]["u"] > snap["id"]
        ]
        if len(after) >= 5:
            return symbol, after[len(after) // 2]
    raise AssertionError("no symbol with enough updates")


async def test_dropped_update_resyncs_only_that_symbol(recording: Recording) -> None:
    target, frame = _drop_target(recording)
    venue, client, _ = await _run(recording, lambda v: v.drop.add(frame))
    m = client.manager
    stats = m.stats(target)
    assert stats.gap_count == 1 and stats.resync_count == 1 and stats.snapshots == 2, stats
    assert venue.snapshot_requests[target] == 2
    for symbol in m.symbols:
        _assert_same_book(m.book(symbol), recording.fresh_stitch(symbol), symbol)  # == a fresh stitch
        _assert_equals_truth(m.book(symbol), venue, symbol)
        if symbol != target:
            other = m.stats(symbol)
            assert other.gap_count == 0 and other.resync_count == 0 and other.snapshots == 1, other
            assert venue.snapshot_requests[symbol] == 1


async def test_invalidated_symbol_mid_session_resyncs_alone(recording: Recording) -> None:
    """``invalidate`` of one symbol (its connection dropped, on a venue with one connection per
    group of symbols) mid-session: that book goes invalid at once, counts one resync, and syncs
    again from its own snapshot and the pushes that follow; the 9 others never notice."""
    target, _ = _drop_target(recording)
    seen: list[tuple[bool, bool, int, int]] = []

    def invalidate_once(m: BookManager) -> None:
        if not seen and m.is_synced(target) and m.stats(target).applied >= 2:
            m.invalidate(target, "test: its connection dropped")
            s = m.stats(target)
            seen.append((s.synced, m.book(target).is_valid, s.resync_count, s.buffered))

    venue, client, ws = await _run(recording, after_event=invalidate_once)
    m = client.manager
    assert seen == [(False, False, 1, 0)]  # out of sync at once, counted, nothing kept
    stats = m.stats(target)
    assert stats.synced and stats.resync_count == 1 and stats.gap_count == 0, stats
    assert stats.snapshots == 2 and venue.snapshot_requests[target] == 2, stats
    assert ws.reconnects == 0
    for symbol in m.symbols:
        _assert_same_book(m.book(symbol), recording.fresh_stitch(symbol), symbol)
        _assert_equals_truth(m.book(symbol), venue, symbol)
        if symbol != target:
            other = m.stats(symbol)
            assert other.resync_count == 0 and other.gap_count == 0 and other.snapshots == 1, other
            assert venue.snapshot_requests[symbol] == 1


async def test_socket_closed_mid_session_resyncs_every_book(recording: Recording) -> None:
    close_at = recording.book_frames[len(recording.book_frames) // 2]
    venue, client, ws = await _run(recording, lambda v: setattr(v, "close_at", close_at))
    m = client.manager
    assert ws.reconnects == 1 and len(venue.subscribed) == 2 and len(venue.subscribed[1]) == 10
    for symbol in m.symbols:
        stats = m.stats(symbol)
        assert stats.synced, stats
        if stats.snapshots > 1:
            assert stats.resync_count >= 1
        _assert_same_book(m.book(symbol), recording.fresh_stitch(symbol), symbol)
        _assert_equals_truth(m.book(symbol), venue, symbol)
    assert sum(m.stats(s).resync_count for s in m.symbols) >= 5  # the synced ones resynced


async def test_malformed_frames_are_logged_and_skipped(recording: Recording, caplog: pytest.LogCaptureFixture) -> None:
    at = recording.book_frames[len(recording.book_frames) // 3]
    channel = MARKETS[recording.market]["channel"]
    garbage = [
        "{not json",
        json.dumps({"time": 1, "channel": channel, "event": "update", "result": {"s": "X", "U": "a"}}),
        json.dumps({"time": 1, "channel": channel, "event": "update", "result": [1, 2, 3]}),
    ]
    caplog.set_level(logging.ERROR, logger="cexarb.venues.book_manager")
    _, client, ws = await _run(recording, lambda v: v.inject.__setitem__(at, garbage))
    m = client.manager
    assert m.decode_errors == 3 and ws.reconnects == 0
    assert sum("malformed frame" in r.getMessage() for r in caplog.records) == 3
    for symbol in m.symbols:
        assert m.stats(symbol).gap_count == 0
        _assert_same_book(m.book(symbol), recording.fresh_stitch(symbol), symbol)


# ---- the rules and the manager without a network ---------------------------------------------------


def test_rules_match_the_venue_documents() -> None:
    # Gate: drop u <= id; first U <= id+1 <= u; then U == prev u + 1
    assert GATE_RULE.first(100, 95, 100) is Verdict.STALE
    assert GATE_RULE.first(100, 98, 101) is Verdict.APPLY
    assert GATE_RULE.first(100, 102, 105) is Verdict.GAP
    assert GATE_RULE.next(105, 106, 110) is Verdict.APPLY
    assert GATE_RULE.next(105, 107, 110) is Verdict.GAP
    # MEXC: drop toVersion < v; first fromVersion <= v <= toVersion; then from == prev to + 1
    assert MEXC_RULE.first(100, 95, 99) is Verdict.STALE
    assert MEXC_RULE.first(100, 96, 100) is Verdict.APPLY  # Gate would call this stale
    assert MEXC_RULE.first(100, 101, 105) is Verdict.GAP  # Gate would apply this
    assert MEXC_RULE.next(105, 106, 110) is Verdict.APPLY
    assert MEXC_RULE.next(105, 108, 110) is Verdict.GAP


def _depth(
    symbol: str, first: int, last: int, bids: list[tuple[float, float]], asks: list[tuple[float, float]]
) -> DepthUpdate:
    return DepthUpdate(symbol=symbol, first_id=first, last_id=last, bids=bids, asks=asks)


async def test_mexc_rule_on_the_core_book_with_translated_ids() -> None:
    snapshots = [BookSnapshot(last_id=100, bids=[(10.0, 1.0)], asks=[(11.0, 1.0)])]
    m = BookManager("mexc-spot", MEXC_RULE, lambda s: _pop(snapshots), first_push_wait_s=1.0)
    book = m.add_symbol("BTCUSDT", 0.1, 0.001)
    async with m:
        m.on_update(_depth("BTCUSDT", 90, 95, [(9.0, 1.0)], []))  # stale (toVersion < 100)
        m.on_update(_depth("BTCUSDT", 96, 100, [(10.0, 2.0)], []))  # first: contains 100
        m.on_update(_depth("BTCUSDT", 101, 103, [], [(11.0, 3.0)]))
        await m.wait_synced("BTCUSDT", 2.0)
        assert book.last_update_id == 103 and book.best_bid() == (10.0, 2.0) and book.best_ask() == (11.0, 3.0)
        assert m.stats("BTCUSDT").stale == 1 and m.stats("BTCUSDT").applied == 2
        m.on_update(_depth("BTCUSDT", 104, 104, [(10.5, 1.0)], []))
        assert book.best_bid() == (10.5, 1.0) and book.is_valid
        snapshots.append(BookSnapshot(last_id=120, bids=[(10.2, 1.0)], asks=[(11.0, 1.0)]))
        m.on_update(_depth("BTCUSDT", 106, 110, [], []))  # gap: 105 missing
        assert not book.is_valid and not m.is_synced("BTCUSDT")
        m.on_update(_depth("BTCUSDT", 111, 121, [(10.3, 1.0)], []))  # buffered; straddles 120
        await m.wait_synced("BTCUSDT", 2.0)
        assert book.last_update_id == 121 and book.best_bid() == (10.3, 1.0)
        assert m.resync_count("BTCUSDT") == 1 and m.stats("BTCUSDT").gap_count == 1


async def test_snapshot_older_than_the_stream_is_fetched_again() -> None:
    snapshots = [
        BookSnapshot(last_id=50, bids=[(10.0, 1.0)], asks=[(11.0, 1.0)]),  # older than the buffer
        BookSnapshot(last_id=102, bids=[(10.0, 5.0)], asks=[(11.0, 1.0)]),
    ]
    calls: list[str] = []

    async def fetch(symbol: str) -> BookSnapshot:
        calls.append(symbol)
        return snapshots.pop(0)

    m = BookManager("gateio-spot", GATE_RULE, fetch, retry_delay_s=0.01, first_push_wait_s=1.0)
    book = m.add_symbol("A_B", 0.1, 0.1)
    async with m:
        m.on_update(_depth("A_B", 100, 101, [(10.0, 2.0)], []))
        m.on_update(_depth("A_B", 102, 103, [(10.0, 3.0)], []))
        await m.wait_synced("A_B", 2.0)
    assert calls == ["A_B", "A_B"] and book.last_update_id == 103 and book.best_bid() == (10.0, 3.0)
    assert m.stats("A_B").snapshots == 2 and m.resync_count("A_B") == 0  # still the first sync


async def test_full_push_resets_without_rest_and_crossed_update_resyncs() -> None:
    fetches: list[str] = []

    async def fetch(symbol: str) -> BookSnapshot:
        fetches.append(symbol)
        return BookSnapshot(last_id=10, bids=[(1.0, 1.0)], asks=[(2.0, 1.0)])

    m = BookManager("gateio-spot", GATE_RULE, fetch, first_push_wait_s=0.05)
    a = m.add_symbol("A", 0.1, 0.1)
    b = m.add_symbol("B", 0.1, 0.1)
    async with m:
        m.on_update(
            DepthUpdate(symbol="A", first_id=None, last_id=500, bids=[(5.0, 1.0)], asks=[(6.0, 1.0)], full=True)
        )
        assert m.is_synced("A") and a.last_update_id == 500 and m.stats("A").full_resets == 1
        m.on_update(_depth("A", 501, 502, [(5.5, 1.0)], []))
        assert a.best_bid() == (5.5, 1.0)
        m.on_update(
            DepthUpdate(symbol="A", first_id=None, last_id=900, bids=[(4.0, 1.0)], asks=[(4.5, 1.0)], full=True)
        )
        assert a.best_bid() == (4.0, 1.0) and a.last_update_id == 900 and m.resync_count("A") == 0
        m.on_update(_depth("B", 10, 11, [], []))
        await m.wait_synced("B", 2.0)
        m.on_update(_depth("A", 901, 901, [(4.6, 1.0)], []))  # bid above the ask: crossed
        assert not m.is_synced("A") and m.resync_count("A") == 1
        assert m.is_synced("B") and b.is_valid and m.resync_count("B") == 0  # B untouched
        await m.wait_synced("A", 2.0)  # resynced from REST this time
    assert fetches == ["B", "A"]
    m.on_update(_depth("ZZZ", 1, 2, [], []))
    assert m.unknown_symbol_updates == 1


async def test_book_age_and_disconnect_invalidates() -> None:
    now = [100.0]
    current = [BookSnapshot(last_id=1, bids=[(1.0, 1.0)], asks=[(2.0, 1.0)])]

    async def fetch(symbol: str) -> BookSnapshot:
        return current[0]

    m = BookManager("gateio-spot", GATE_RULE, fetch, clock=lambda: now[0], first_push_wait_s=0.5)
    book = m.add_symbol("A", 0.1, 0.1)
    async with m:
        assert m.age_s("A") is None
        m.on_update(_depth("A", 1, 2, [], []))
        await m.wait_synced("A", 2.0)
        now[0] += 1.5
        assert m.age_s("A") == pytest.approx(1.5)
        m.handle_ws_event(WsDisconnected(1, "test"), decode_gate_depth)
        # invalid at once; the resync is counted now, and once: the reconnect does not count it again
        assert not book.is_valid and not m.is_synced("A") and m.resync_count("A") == 1
        current[0] = BookSnapshot(last_id=3, bids=[(1.5, 1.0)], asks=[(2.0, 1.0)])
        m.handle_ws_event(WsConnected(2, True), decode_gate_depth)
        assert m.resync_count("A") == 1
        m.on_update(_depth("A", 3, 4, [(1.6, 1.0)], []))
        await m.wait_synced("A", 2.0)
        assert book.is_valid and book.best_bid() == (1.6, 1.0) and m.age_s("A") == 0.0


async def test_invalidate_one_symbol_resyncs_only_that_symbol() -> None:
    """``invalidate(symbol)``: that book is invalid at once and counts one resync; no snapshot
    while its stream is down; its next pushes are buffered, its own snapshot fetched, the buffer
    replayed (as after a gap). The other books, their counters and ages are untouched."""
    now = [100.0]
    snapshot_ids = {"A": 10, "B": 20, "C": 30}
    fetches: list[str] = []

    async def fetch(symbol: str) -> BookSnapshot:
        fetches.append(symbol)
        return BookSnapshot(last_id=snapshot_ids[symbol], bids=[(1.0, 1.0)], asks=[(2.0, 1.0)])

    m = BookManager("gateio-spot", GATE_RULE, fetch, clock=lambda: now[0], first_push_wait_s=0.5)
    books = {s: m.add_symbol(s, 0.1, 0.1) for s in snapshot_ids}

    def top(symbol: str) -> tuple[Any, ...]:
        book = books[symbol]
        bids, asks = book.depth(5)
        return book.is_valid, book.last_update_id, bids.tolist(), asks.tolist()

    async with m:
        for s, last in snapshot_ids.items():
            m.on_update(_depth(s, last, last + 1, [(1.1, 1.0)], []))
            await m.wait_synced(s, 2.0)
            m.on_update(_depth(s, last + 2, last + 3, [], [(1.9, 1.0)]))  # live
        assert fetches == ["A", "B", "C"]
        now[0] += 2.0
        before = {s: m.stats(s) for s in snapshot_ids}
        tops = {s: top(s) for s in snapshot_ids}
        assert all(st.resync_count == 0 and st.age_s == 2.0 for st in before.values())

        with pytest.raises(KeyError, match="'ZZZ'"):
            m.invalidate("ZZZ", "test")
        m.invalidate("A", "its connection dropped")
        a = m.stats("A")
        assert not a.synced and not books["A"].is_valid and a.last_id is None and a.buffered == 0
        assert a.resync_count == 1 and a.age_s == 2.0  # age: still since the last change
        m.invalidate("A", "again")  # the same resync: not counted twice
        await asyncio.sleep(0.05)
        assert fetches == ["A", "B", "C"] and m.resync_count("A") == 1  # no fetch while down

        # A's stream is back (the venue moved on to 50): buffered, A's snapshot, replay
        snapshot_ids["A"] = 50
        m.on_update(_depth("A", 45, 47, [(1.2, 1.0)], []))  # older than the snapshot: dropped
        m.on_update(_depth("A", 48, 51, [(1.3, 2.0)], []))  # straddles 51
        m.on_update(_depth("A", 52, 52, [], [(1.8, 1.0)]))
        await m.wait_synced("A", 2.0)
        a = m.stats("A")
        assert fetches == ["A", "B", "C", "A"]
        assert a.resync_count == 1 and a.snapshots == before["A"].snapshots + 1 and a.gap_count == 0
        assert a.last_id == 52 and a.stale == before["A"].stale + 1 and a.age_s == 0.0
        assert books["A"].best_bid() == (1.3, 2.0) and books["A"].best_ask() == (1.8, 1.0)
        for s in ("B", "C"):  # untouched: the same counters, age, book
            assert m.stats(s) == before[s] and top(s) == tops[s]

        # invalidate_all is invalidate per symbol: each counts once, the reconnect adds nothing
        m.invalidate_all("disconnected")
        assert [m.resync_count(s) for s in "ABC"] == [2, 1, 1]
        assert not any(b.is_valid for b in books.values())
        m.resync_all("reconnect")
        assert [m.resync_count(s) for s in "ABC"] == [2, 1, 1]
        for s, last in {"A": 60, "B": 70, "C": 80}.items():
            snapshot_ids[s] = last
            m.on_update(_depth(s, last, last + 1, [], []))
            await m.wait_synced(s, 2.0)
        assert [m.resync_count(s) for s in "ABC"] == [2, 1, 1]
        m.on_update(_depth("B", 73, 75, [], []))  # a gap (72 missing) counts again
        assert m.resync_count("B") == 2


async def test_mexc_protobuf_stream_with_a_dropped_push_over_sockets() -> None:
    """MEXC end to end: binary PushDataV3ApiWrapper frames (body 313) on a WS, /api/v3/depth on
    REST; one push dropped -> one resync; the book equals the server's."""
    symbol = "BTCUSDT"
    truth_bids: dict[float, float] = {100.0 + i * 0.1: 1.0 for i in range(10)}
    truth_asks: dict[float, float] = {102.0 + i * 0.1: 1.0 for i in range(10)}
    version = [1000]
    depth_requests = [0]
    done = asyncio.Event()

    def push(first: int, last: int, bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> bytes:
        body = proto.PublicAggreDepths(
            bids=[proto.DepthLevel(price=f"{p:.1f}", quantity=f"{q:g}") for p, q in bids],
            asks=[proto.DepthLevel(price=f"{p:.1f}", quantity=f"{q:g}") for p, q in asks],
            event_type="spot@public.aggre.depth.v3.api.pb@100ms",
            from_version=str(first),
            to_version=str(last),
        )
        channel = mx.channel_aggre_depth(symbol)
        return proto.encode_push(proto.PushData(channel=channel, body=body, symbol=symbol, send_time=1))

    async def depth(request: web.Request) -> web.Response:
        depth_requests[0] += 1
        return web.json_response(
            {
                "lastUpdateId": version[0],
                "bids": [[f"{p:.1f}", f"{q:g}"] for p, q in sorted(truth_bids.items(), reverse=True)],
                "asks": [[f"{p:.1f}", f"{q:g}"] for p, q in sorted(truth_asks.items())],
            }
        )

    async def ws_handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async with asyncio.timeout(10):
            async for msg in ws:
                req = mx.decode_ws_request(msg.data)
                if req.verb == "PING":
                    await ws.send_str(mx.encode_pong().decode())
                    continue
                await ws.send_str(mx.encode_ack(req.params[0]).decode())
                for step in range(60):
                    first = version[0] + 1
                    last = first + step % 3  # pushes cover 1-3 versions
                    bid = (100.0 + (step % 10) * 0.1, float(step % 4))  # 0 deletes
                    ask = (102.0 + (step % 10) * 0.1, float(1 + step % 3))
                    for side, (p, q) in ((truth_bids, bid), (truth_asks, ask)):
                        if q == 0:
                            side.pop(p, None)
                        else:
                            side[p] = q
                    version[0] = last
                    if step != 30:  # push 30 is lost
                        await ws.send_bytes(push(first, last, [bid], [ask]))
                    await asyncio.sleep(0.002)
                done.set()
        return ws

    app = web.Application()
    app.router.add_get("/api/v3/depth", depth)
    app.router.add_get("/ws", ws_handler)
    async with serve(app) as base, RestClient("mexc-spot", base) as rest:

        async def fetch(sym: str) -> BookSnapshot:
            response = await rest.get("/api/v3/depth", [("symbol", sym), ("limit", "1000")])
            return BookSnapshot.from_mexc(mx.decode_depth(response.body))

        manager = BookManager("mexc-spot", MEXC_RULE, fetch, first_push_wait_s=1.0)
        book = manager.add_symbol(symbol, 0.1, 0.001)
        ws = WsClient(
            "mexc book",
            base.replace("http://", "ws://") + "/ws",
            rest.session,
            handler=lambda ev: manager.handle_ws_event(ev, decode_mexc_depth),
        )
        async with manager, ws:
            await ws.subscribe("depth", lambda: mx.encode_subscribe([mx.channel_aggre_depth(symbol)]).decode())
            async with asyncio.timeout(10):
                await done.wait()
                for _ in range(1000):
                    if manager.is_synced(symbol) and manager.stats(symbol).last_id == version[0]:
                        break
                    await asyncio.sleep(0.005)
    stats = manager.stats(symbol)
    assert stats.gap_count == 1 and stats.resync_count == 1 and stats.snapshots == 2 == depth_requests[0]
    assert book.is_valid and book.last_update_id == version[0]
    bids, asks = book.depth(100)
    assert sorted(map(tuple, bids.tolist())) == sorted(truth_bids.items())
    assert sorted(map(tuple, asks.tolist())) == sorted(truth_asks.items())
    assert manager.decode_errors == 0


async def _pop(items: list[BookSnapshot]) -> BookSnapshot:
    return items.pop(0)


def _manager_state(m: BookManager, book: OrderBook) -> tuple[Any, ...]:
    s = m.stats("A")
    top = book.depth(5) if book.is_valid else None
    return (
        s.synced, s.last_id, s.gap_count, s.stale, s.applied, s.resync_count, s.full_resets, s.buffered,
        book.is_valid, book.last_update_id,
        None if top is None else (top[0].tolist(), top[1].tolist()),
    )


_PUSH = st.tuples(
    st.sampled_from(["next"] * 8 + ["stale", "duplicate", "gap", "overlap", "full", "backwards"]),
    st.lists(
        st.tuples(st.sampled_from(["bids", "asks"]), st.integers(80, 120), st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 0.0, -1.0, float("nan")])),
        max_size=4,
    ),
    st.sampled_from([False] * 5 + [True]),  # one price off the tick grid
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_PUSH, min_size=1, max_size=25))
def test_live_core_check_matches_the_rule_in_python(pushes: list[Any]) -> None:
    """Gate's live pushes are checked by the core book in one call (the live path of ``on_update``); fed the
    same pushes -- contiguous, stale, duplicated, overlapping, gapped, backwards ids, full resets,
    bad rows (negative, NaN, off the grid), crossing levels -- a manager deciding by the rule in
    Python first (the path every push took before) ends every step in the same state: sync flag,
    ids, counters, buffered pushes, validity and top 5 levels."""

    async def fetch(symbol: str) -> BookSnapshot | None:
        return None  # no REST: the managers are brought back by full pushes

    async def run() -> None:
        fast = BookManager("gateio-spot", GATE_RULE, fetch, first_push_wait_s=60.0)
        slow = BookManager("gateio-spot", GATE_RULE, fetch, first_push_wait_s=60.0)
        slow._core_is_rule = False
        books = [fast.add_symbol("A", 0.1, 0.1), slow.add_symbol("A", 0.1, 0.1)]
        assert fast._core_is_rule
        last = 1000

        def full() -> DepthUpdate:
            return DepthUpdate(
                symbol="A", first_id=None, last_id=last, bids=[(9.0, 1.0), (8.5, 2.0)], asks=[(11.0, 1.0)], full=True
            )

        async with fast, slow:
            for m in (fast, slow):
                m.on_update(full())
            for kind, rows, off_grid in pushes:
                if kind == "full":
                    last += 5
                    push = full()
                else:
                    first, end = {
                        "next": (last + 1, last + 2),
                        "stale": (last - 3, last - 1),
                        "duplicate": (last - 1, last),
                        "gap": (last + 3, last + 4),
                        "overlap": (last - 1, last + 2),
                        "backwards": (last + 2, last + 1),
                    }[kind]
                    levels: dict[str, list[tuple[float, float]]] = {"bids": [], "asks": []}
                    for side, ticks, qty in rows:
                        levels[side].append((ticks / 10, qty))
                    if off_grid:
                        levels["bids"].append((9.03, 1.0))
                    push = DepthUpdate(symbol="A", first_id=first, last_id=end, bids=levels["bids"], asks=levels["asks"])
                for m in (fast, slow):
                    m.on_update(push)
                assert _manager_state(fast, books[0]) == _manager_state(slow, books[1]), (kind, rows, off_grid)
                last = max(last, books[0].last_update_id or last)
                if not fast.is_synced("A"):  # bring both back, as a venue's full push would
                    last += 5
                    for m in (fast, slow):
                        m.on_update(full())

    asyncio.run(run())
