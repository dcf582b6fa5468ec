"""The Rust parser of Gate depth pushes (``_core.parse_gate_depth``, ``rust/src/gate.rs``) against
the msgspec codec (``gateio.codec.decode_ws_frame``) on every recorded Gate WS frame, and the books
both build: stitched directly on the core book and through the :class:`BookManager`.

The Rust parser takes a subset of the frames the codec takes (see ``rust/src/gate.rs``); on that
subset both must give the same values, and every other frame (other channels, malformed pushes)
must come back None so the codec decodes it or raises its error.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cexarb._core import APPLIED, BookInputError, GateDepth, OrderBook, parse_gate_depth
from cexarb.venues.book_manager import (
    GATE_RULE,
    BookManager,
    BookSnapshot,
    decode_gate_depth,
)
from cexarb.venues.gateio import codec as g
from cexarb.venues.ws import WsFrame
from hypothesis import given, settings
from hypothesis import strategies as st
from test_gateio_book_stitching import Stream, _load, book_tick

GATE = Path("api") / "gateio"
SESSIONS = ("spot/cryptofeed_ws_session_2021-04-22.jsonl", "futures_usdt/cryptofeed_ws_session_2023-05-24.jsonl")
EXAMPLES = ("gate_spot_ws_examples.json", "gate_futures_ws_examples.json")
DEPTH_CHANNELS = ("spot.order_book_update", "futures.order_book_update")


@pytest.fixture(scope="module")
def gate_dir(data_dir: Path) -> Path:
    folder = data_dir / GATE
    if not folder.is_dir():
        pytest.skip(f"Gate.io payloads not found at {folder}")
    return folder


def _raw(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _server_frames(folder: Path) -> list[bytes]:
    """Every frame a Gate server sent in the recordings and the docs examples (not requests)."""
    frames = []
    for name in SESSIONS:
        for line in (folder / name).read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                if rec["dir"] == "recv":
                    frames.append(_raw(rec["msg"]))
    for name in EXAMPLES:
        for example in json.loads((folder / "docs_examples" / name).read_text())["examples"]:
            obj = example["json"]
            if "header" in obj or "result" in obj or not ("payload" in obj or "auth" in obj):
                frames.append(_raw(obj))
    return frames


def assert_same(push: GateDepth, ref: g.GateOrderBookUpdate) -> None:
    assert (push.channel, push.symbol, push.ts_ms, push.first_id, push.last_id, push.full, push.depth) == (
        ref.channel,
        ref.symbol,
        ref.ts_ms,
        ref.first_id,
        ref.last_id,
        ref.full,
        ref.depth,
    )
    assert push.bids == ref.bids and push.asks == ref.asks  # floats compared exactly
    assert push.n_levels == len(ref.bids) + len(ref.asks)


def _decode(data: bytes | str) -> g.GateWsMessage | None:
    try:
        return g.decode_ws_frame(data)
    except g.GateCodecError:
        return None


def _check_subset(data: bytes | str) -> bool:
    """The subset property on one frame; True when Rust took it."""
    push = parse_gate_depth(data)
    ref = _decode(data)
    if push is None:
        return False
    assert isinstance(ref, g.GateOrderBookUpdate), (data, ref)
    assert_same(push, ref)
    return True


# =============================================================================================
# every recorded frame


def test_every_recorded_gate_ws_frame_decodes_the_same_both_ways(gate_dir: Path) -> None:
    frames = _server_frames(gate_dir)
    taken = {"spot.order_book_update": 0, "futures.order_book_update": 0}
    others = 0
    for raw in frames:
        ref = g.decode_ws_frame(raw)
        for data in (raw, raw.decode()):
            push = parse_gate_depth(data)
            if isinstance(ref, g.GateOrderBookUpdate) and ref.channel in DEPTH_CHANNELS:
                assert push is not None, raw[:200]
                assert_same(push, ref)
            else:
                assert push is None, raw[:200]
        if isinstance(ref, g.GateOrderBookUpdate) and ref.channel in DEPTH_CHANNELS:
            taken[ref.channel] += 1
        else:
            others += 1
    # sessions: 180 spot / 356 futures pushes (PROVENANCE §2; 172 / 352 on the streams with a
    # snapshot); docs: the spot full push and its incremental, the futures pushes
    assert taken["spot.order_book_update"] >= 172 and taken["futures.order_book_update"] >= 352, taken
    assert others > 100  # tickers, candlesticks, trades, acks, obu, API replies... all left to the codec


def test_a_differently_formatted_push_is_left_to_the_codec(gate_dir: Path) -> None:
    rec = next(
        json.loads(line)
        for line in (gate_dir / SESSIONS[0]).read_text().splitlines()
        if '"event":"update"' in line and "spot.order_book_update" in line
    )
    spaced = json.dumps(rec["msg"]).encode()  # ", " / ": " separators: the tag is not found
    assert parse_gate_depth(spaced) is None
    assert isinstance(g.decode_ws_frame(spaced), g.GateOrderBookUpdate)


def test_non_frames_raise_type_error() -> None:
    with pytest.raises(TypeError, match="bytes or str, got int"):
        parse_gate_depth(5)  # type: ignore[arg-type]


# =============================================================================================
# mutated frames: Rust takes a subset, never a frame the codec rejects or reads differently


def test_mutated_recorded_depth_frames_keep_the_subset_property(gate_dir: Path) -> None:
    frames = [f for f in _server_frames(gate_dir) if b"order_book_update" in f[:160] and b'"update"' in f[:160]]
    frames = frames[:30] + frames[-30:]
    rng = random.Random(4)
    tried = taken = 0
    for frame in frames:
        for cut in range(0, len(frame), max(1, len(frame) // 20)):
            taken += _check_subset(frame[:cut])
            tried += 1
        for _ in range(40):
            data = bytearray(frame)
            for _ in range(rng.randint(1, 2)):
                data[rng.randrange(len(data))] = rng.choice(b'0123456789"{}[],:.-+eEaflnrstuU \\\xff')
            taken += _check_subset(bytes(data))
            tried += 1
    assert tried > 3000 and taken > 100  # many mutations (digits) still decode: compared above


_DECIMALS = st.one_of(
    st.from_regex(r"(0|[1-9][0-9]{0,12})(\.[0-9]{1,12})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
    st.floats(min_value=0, allow_nan=False, allow_infinity=False).map(repr),
    st.text(alphabet="0123456789.eE+-naif ", max_size=12),
)


@settings(max_examples=400, deadline=None)
@given(price=_DECIMALS, qty=_DECIMALS, futures=st.booleans(), number=st.booleans())
def test_numbers_parse_like_msgspec(price: str, qty: str, futures: bool, number: bool) -> None:
    """A level's price / qty as a decimal string (or a bare JSON number): Rust takes it only when
    msgspec reads it, and reads the same float."""
    q = qty if number else json.dumps(qty)
    if futures:
        result = f'{{"t":1,"s":"A_B","U":1,"u":2,"b":[{{"p":{json.dumps(price)},"s":{q}}}]}}'
        channel = "futures.order_book_update"
    else:
        result = f'{{"t":1,"s":"A_B","U":1,"u":2,"a":[[{json.dumps(price)},{q}]]}}'
        channel = "spot.order_book_update"
    frame = f'{{"time":1,"channel":"{channel}","event":"update","result":{result}}}'
    _check_subset(frame)


# =============================================================================================
# the books


@pytest.fixture(scope="module", params=["spot", "futures"])
def streams_and_frames(request: pytest.FixtureRequest, gate_dir: Path) -> tuple[dict[str, Stream], dict[str, list[bytes]]]:
    streams = _load(gate_dir, request.param)
    session = SESSIONS[0] if request.param == "spot" else SESSIONS[1]
    frames: dict[str, list[bytes]] = {}
    for line in (gate_dir / session).read_text().splitlines():
        rec = json.loads(line)
        if rec["dir"] != "recv":
            continue
        raw = _raw(rec["msg"])
        if isinstance(g.decode_ws_frame(raw), g.GateOrderBookUpdate):
            push = parse_gate_depth(raw)
            assert push is not None
            frames.setdefault(push.symbol, []).append(raw)
    return streams, frames


def _book_state(book: OrderBook) -> tuple[Any, ...]:
    bids, asks = book.depth(100_000)
    return (book.last_update_id, book.is_valid, book.gap_count, bids.tobytes(), asks.tobytes(), book.n_bids, book.n_asks)


def test_stitched_books_equal_both_ways(streams_and_frames: tuple[dict[str, Stream], dict[str, list[bytes]]]) -> None:
    streams, frames = streams_and_frames
    assert len(streams) == 10
    applied = 0
    for symbol, stream in streams.items():
        pushes = [parse_gate_depth(f) for f in frames.get(symbol, [])]
        assert len(pushes) == len(stream.updates), symbol
        tick, lot = book_tick(stream), stream.instrument.lot_size
        ref, ours = OrderBook(tick, lot), OrderBook(tick, lot)
        for book in (ref, ours):
            book.apply_snapshot(stream.snapshot.bids, stream.snapshot.asks, stream.snapshot.id)
        for update, push in zip(stream.updates, pushes, strict=True):
            assert push is not None
            assert_same(push, update)
            r1 = ref.apply_update(update.bids, update.asks, update.first_id, update.last_id)
            r2 = ours.apply_push(push, push.first_id, push.last_id)
            assert r1 == r2, symbol
            applied += r2 == APPLIED
            assert (ref.best_bid(), ref.best_ask()) == (ours.best_bid(), ours.best_ask())
        ref.flush()
        ours.flush()
        assert _book_state(ref) == _book_state(ours), symbol
        assert ours.is_valid and ours.gap_count == 0, symbol
    assert applied > 100


async def test_book_manager_builds_the_same_books_from_either_push(
    streams_and_frames: tuple[dict[str, Stream], dict[str, list[bytes]]],
) -> None:
    """The manager's own path (buffer before sync, stitch, live pushes) fed GateDepth vs the
    codec's GateOrderBookUpdate: same books, same counters."""
    streams, frames = streams_and_frames
    results = []
    for use_rust in (False, True):

        async def fetch(symbol: str) -> BookSnapshot:
            return BookSnapshot.from_gate(streams[symbol].snapshot)

        m = BookManager("gateio", GATE_RULE, fetch, first_push_wait_s=0.5, retry_delay_s=0.01)
        books = {s: m.add_symbol(s, book_tick(st_), st_.instrument.lot_size) for s, st_ in streams.items()}
        async with m:
            for symbol in streams:
                raws = frames.get(symbol, [])
                pushes = [parse_gate_depth(f) if use_rust else g.decode_ws_frame(f) for f in raws]
                half = max(1, len(pushes) // 2)
                for p in pushes[:half]:  # buffered until the snapshot stitches
                    m.on_update(p)
                if pushes:
                    await m.wait_synced(symbol, 5.0)
                for p in pushes[half:]:  # live
                    m.on_update(p)
        state = {}
        for symbol, book in books.items():
            book.flush()
            s = m.stats(symbol)
            state[symbol] = (_book_state(book), s.synced, s.applied, s.stale, s.gap_count, s.resync_count, s.snapshots)
        results.append(state)
    assert results[0] == results[1]
    assert sum(v[2] for v in results[1].values()) > 100  # pushes applied


def test_decode_gate_depth_takes_the_rust_path_and_falls_back(gate_dir: Path) -> None:
    frames = _server_frames(gate_dir)
    depth = next(f for f in frames if b'"spot.order_book_update","event":"update"' in f[:160])
    assert isinstance(decode_gate_depth(WsFrame(depth.decode(), 0, 1)), GateDepth)
    obu = g.encode_ws_update(
        "spot.obu", {"t": 1, "full": True, "s": "ob.A_B.50", "u": 5, "b": [["1", "2"]], "a": []}, time_ms=1000
    )
    assert decode_gate_depth(WsFrame(obu, 0, 1)) is not None  # the codec's push (Rust takes no obu)
    with pytest.raises(g.GateCodecError, match="spot.order_book_update result"):
        # a malformed depth push: Rust does not take it, the codec names the problem
        decode_gate_depth(
            WsFrame(b'{"channel":"spot.order_book_update","event":"update","result":{"t":1,"s":"A","U":1}}', 0, 1)
        )


def test_bad_levels_are_rejected_by_the_book_whole() -> None:
    book = OrderBook(0.1, 0.001)
    book.apply_snapshot([(10.0, 1.0)], [(11.0, 1.0)], 10)
    frame = (
        b'{"channel":"spot.order_book_update","event":"update","result":{"t":1,"s":"A_B","U":11,"u":11,'
        b'"b":[["10.1","1"],["10.05","1"]],"a":[]}}'
    )
    push = parse_gate_depth(frame)
    assert push is not None
    with pytest.raises(BookInputError, match="10.05") as ours:
        book.apply_push(push, 11, 11)
    with pytest.raises(BookInputError) as ref:
        book.apply_update(push.bids, push.asks, 11, 11)
    assert str(ours.value) == str(ref.value)
    assert book.best_bid() == (10.0, 1.0) and book.last_update_id == 10  # all or nothing
    # U > u: the core's id check, the same as apply_update's
    bad_ids = parse_gate_depth(frame.replace(b'"U":11', b'"U":12'))
    assert bad_ids is not None
    with pytest.raises(BookInputError):
        book.apply_push(bad_ids, 12, 11)


def test_apply_push_reads_any_push_with_levels() -> None:
    from cexarb.venues.book_manager import DepthUpdate

    book = OrderBook(0.1, 0.001)
    book.apply_snapshot([(10.0, 1.0)], [(11.0, 1.0)], 10)
    update = DepthUpdate(symbol="A", first_id=11, last_id=12, bids=[(10.5, 2.0)], asks=np.empty(0).tolist())
    assert book.apply_push(update, 11, 12) == APPLIED and book.best_bid() == (10.5, 2.0)
    with pytest.raises(AttributeError):
        book.apply_push(object(), 13, 13)
