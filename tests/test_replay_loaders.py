"""``cexarb.replay`` loaders on the recorded Binance data (PROVENANCE §1) and on broken copies."""

from __future__ import annotations

import gzip
import shutil
import time
from pathlib import Path

import msgspec
import numpy as np
import pytest

from cexarb import _core, replay
from cexarb.model import Instrument, InstrumentKind

BINANCE_STAMP = "20240808T2354Z"
# instrument key -> file prefix in book/binance_btc_20240808 (PROVENANCE §1)
BINANCE_PREFIXES = {
    "binance-spot:BTCUSDT": f"binance-spot_BTCUSDT_{BINANCE_STAMP}",
    "binance-usdm:BTCUSDT": f"binance-usdm_BTCUSDT_{BINANCE_STAMP}",
    "binance-coinm:BTCUSD_PERP": f"binance-coinm_BTCUSD_PERP_{BINANCE_STAMP}",
}

KEYS = list(BINANCE_PREFIXES)

# PROVENANCE §1 table: depth msgs applied, level rows (snapshot + delta), trades, BBO rows
EXPECTED = {
    "binance-spot:BTCUSDT": (6_493, 300_094, 2_000, 19_904, 73_174),
    "binance-usdm:BTCUSDT": (6_547, 445_262, 2_000, 21_313, 66_089),
    "binance-coinm:BTCUSD_PERP": (44_772, 661_405, 2_000, 5_235, 48_355),
}
BOOK_FIELDS = (
    "local_ns",
    "exch_ms",
    "is_snapshot",
    "first_update_id",
    "last_update_id",
    "prev_update_id",
    "levels",
    "offsets",
    "bid_end",
)
TRADE_FIELDS = ("local_ns", "exch_ms", "trade_ms", "trade_id", "price", "qty", "taker_is_buy")
BBO_FIELDS = ("local_ns", "exch_ms", "update_id", "bid_price", "bid_qty", "ask_price", "ask_qty")


# ---- counts, instruments, clocks ------------------------------------------------------------


def test_recording_has_three_instruments(recording) -> None:
    assert recording.name == "binance_btc_20240808"
    assert sorted(recording.streams) == sorted(KEYS)
    for key, data in recording.streams.items():
        assert data.instrument.key == key
        assert data.book.instrument == data.instrument
        venue, symbol = key.split(":")
        assert data.instrument == replay.known_instrument(venue, symbol)


@pytest.mark.parametrize("key", KEYS)
def test_row_counts_match_provenance(key: str, recording) -> None:
    depth_msgs, level_rows, snapshot_rows, trades, bbo_rows = EXPECTED[key]
    data = recording.streams[key]
    book = data.book
    assert book.n_messages == len(book) == len(book.deltas) == depth_msgs + 1
    assert book.n_level_rows == level_rows == len(book.levels) == int(book.offsets[-1])
    assert bool(book.is_snapshot[0]) and not book.is_snapshot[1:].any()
    assert book.deltas[0].is_snapshot and book.deltas[0].n_levels == snapshot_rows
    assert book.deltas[0].first_update_id == book.deltas[0].last_update_id == int(book.last_update_id[0])
    assert sum(d.n_levels for d in book.deltas) == level_rows
    assert len(book.bids(0)) == len(book.asks(0)) == 1_000  # 1,000 levels a side in the snapshot
    assert data.trades is not None and len(data.trades) == trades
    assert data.bbo is not None and len(data.bbo) == bbo_rows


@pytest.mark.parametrize("key", KEYS)
def test_ids_and_prev_ids(key: str, recording) -> None:
    book = recording.streams[key].book
    first, last, prev = book.first_update_id[1:], book.last_update_id[1:], book.prev_update_id[1:]
    assert (first <= last).all()
    assert book.first_update_id[0] == -1 and book.prev_update_id[0] == -1
    if key == "binance-spot:BTCUSDT":
        assert (prev == -1).all() and book.deltas[1].prev_update_id is None
        assert (first[1:] == last[:-1] + 1).all()  # spot continuity: U == previous u + 1
    else:
        assert (prev >= 0).all() and book.deltas[1].prev_update_id == int(prev[0])
        assert (prev[1:] == last[:-1]).all()  # futures continuity: pu == previous u
    for i in (1, len(book) // 2, len(book) - 1):
        d = book.deltas[i]
        assert (d.first_update_id, d.last_update_id) == (int(book.first_update_id[i]), int(book.last_update_id[i]))
        assert d.n_levels == len(book.bids(i)) + len(book.asks(i))


@pytest.mark.parametrize("key", KEYS)
def test_local_ns_monotone(key: str, recording) -> None:
    data = recording.streams[key]
    for name, ts in (("book", data.book.local_ns), ("trades", data.trades.local_ns), ("bbo", data.bbo.local_ns)):
        assert ts.dtype == np.int64 and len(ts), name
        assert (np.diff(ts) >= 0).all(), f"{key} {name} local_ns decreases"
    # exchange time is known for futures depth and absent (-1) only where Binance sends none
    if key == "binance-spot:BTCUSDT":
        assert data.book.exch_ms[0] == -1 and (data.bbo.exch_ms == -1).all()
    else:
        assert (data.book.exch_ms > 0).all() and (data.bbo.exch_ms > 0).all()
    assert (data.book.exch_ms[1:] > 0).all() and (data.trades.exch_ms > 0).all()


def test_overlap_matches_provenance(recording) -> None:
    start, end = recording.overlap_ns()
    # PROVENANCE: all three overlap 2024-08-08 23:54:16 -> 23:59:59.8 UTC
    assert np.datetime64(start, "ns").astype("datetime64[s]") == np.datetime64("2024-08-08T23:54:16")
    assert np.datetime64(end, "ns").astype("datetime64[ms]").astype(str).startswith("2024-08-08T23:59:59.8")
    spot_coinm = recording.overlap_ns(["binance-spot:BTCUSDT", "binance-coinm:BTCUSD_PERP"])
    assert spot_coinm[1] > end and spot_coinm[1] >= 1723161900 * 10**9  # both run past 00:05:00
    with pytest.raises(ValueError, match="unknown instrument key"):
        recording.overlap_ns(["binance-spot:ETHUSDT"])


@pytest.mark.parametrize("key", KEYS)
def test_trades_and_bbo_values(key: str, recording) -> None:
    data = recording.streams[key]
    tick = data.instrument.tick_size
    for prices in (data.trades.price, data.bbo.bid_price, data.bbo.ask_price):
        assert np.allclose(prices / tick, np.rint(prices / tick), atol=1e-6)
        assert ((prices > 50_000) & (prices < 70_000)).all()
    assert (data.bbo.bid_price < data.bbo.ask_price).all()
    assert data.trades.taker_is_buy.dtype == bool and 0 < data.trades.taker_is_buy.mean() < 1
    assert (np.diff(data.trades.trade_id) > 0).all()


# ---- raw.jsonl == book.csv -------------------------------------------------------------------


@pytest.mark.parametrize("key", KEYS)
def test_raw_equals_csv(key: str, recording, raw_streams) -> None:
    csv_data = recording.streams[key]
    raw_book, raw_trades, raw_bbo = raw_streams[key]
    assert raw_book.instrument == csv_data.instrument
    assert len(raw_book) == len(csv_data.book) and raw_book.n_level_rows == csv_data.book.n_level_rows
    for name in BOOK_FIELDS:
        a, b = getattr(raw_book, name), getattr(csv_data.book, name)
        assert a.shape == b.shape and np.array_equal(a, b), f"book.{name} differs"
    for name in TRADE_FIELDS:
        assert np.array_equal(getattr(raw_trades, name), getattr(csv_data.trades, name)), f"trades.{name}"
    for name in BBO_FIELDS:
        assert np.array_equal(getattr(raw_bbo, name), getattr(csv_data.bbo, name)), f"bbo.{name}"
    for a, b in zip(raw_book.deltas, csv_data.book.deltas, strict=True):
        assert (a.first_update_id, a.last_update_id, a.prev_update_id, a.is_snapshot, a.n_levels) == (
            b.first_update_id,
            b.last_update_id,
            b.prev_update_id,
            b.is_snapshot,
            b.n_levels,
        )


@pytest.mark.parametrize("key", KEYS)
def test_raw_and_csv_replay_to_identical_books(key: str, recording, raw_streams) -> None:
    inst = recording.streams[key].instrument
    from_csv = _core.OrderBook(inst.tick_size, inst.lot_size)
    from_raw = _core.OrderBook(inst.tick_size, inst.lot_size)
    for a, b in zip(recording.streams[key].book.deltas, raw_streams[key][0].deltas, strict=True):
        assert from_csv.apply_delta(a) == from_raw.apply_delta(b) == _core.APPLIED
        assert from_csv.best_bid() == from_raw.best_bid() and from_csv.best_ask() == from_raw.best_ask()
    for x, y in zip(from_csv.depth(1_000_000), from_raw.depth(1_000_000), strict=True):
        assert np.array_equal(x, y)
    assert from_csv.last_update_id == from_raw.last_update_id
    assert from_csv.gap_count == from_raw.gap_count == 0


def test_raw_buffers_and_drops_stale_events(binance_dir: Path, raw_streams) -> None:
    """PROVENANCE: 3 / 6 / 25 events precede the snapshot; 2 / 4 / 23 of them are stale."""
    expected = {"binance-spot:BTCUSDT": (3, 2), "binance-usdm:BTCUSDT": (6, 4), "binance-coinm:BTCUSD_PERP": (25, 23)}
    for key, (before, stale) in expected.items():
        book = raw_streams[key][0]
        snap_ns = int(book.local_ns[0])
        replayed = int(np.count_nonzero(book.local_ns[1:] == snap_ns))
        assert replayed == before - stale, key
        # the first applied event straddles the snapshot id (Binance's sync condition)
        last = int(book.last_update_id[0])
        first_u, first_uu = int(book.first_update_id[1]), int(book.last_update_id[1])
        if key == "binance-spot:BTCUSDT":
            assert first_u <= last + 1 <= first_uu
        else:
            assert first_u <= last <= first_uu


# ---- timing ------------------------------------------------------------------------------------


def test_load_time(binance_dir: Path) -> None:
    """All three instruments (1.41M level rows, 46k trades, 188k BBO rows) load in seconds."""
    t0 = time.process_time()
    rec = replay.load_recording(binance_dir)
    cpu = time.process_time() - t0
    assert len(rec.streams) == 3
    print(f"load_recording: {cpu:.2f} s CPU")
    assert cpu < 20.0  # generous: ~2-3 s on a shared 2-core machine


# ---- malformed input ---------------------------------------------------------------------------


def _head_lines(path: Path, n: int) -> list[str]:
    with gzip.open(path, "rt", newline="") as fh:
        return [next(fh) for _ in range(n)]


def _write(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt", newline="") as fh:
        fh.writelines(lines)
    return path


def _book_head(binance_dir: Path, n: int = 2_100) -> list[str]:
    return _head_lines(binance_dir / f"{BINANCE_PREFIXES['binance-usdm:BTCUSDT']}_book.csv.gz", n)


def _set_field(line: str, index: int, value: str) -> str:
    parts = line.rstrip("\n").split(",")
    parts[index] = value
    return ",".join(parts) + "\n"


BROKEN_BOOK = [
    # (line number to break, field index, new text, expected message fragments)
    (2_050, 5, "61800.2x", ["line 2050", "'price'", "not a number"]),
    (10, 6, "-1.5", ["line 10", "'qty'", ">= 0"]),
    (2_040, 6, "nan", ["line 2040", "'qty'"]),
    (7, 4, "bidd", ["line 7", "'side'"]),
    (2_060, 0, "17231612553197", ["line 2060", "'local_ns'", "differs from line"]),
    (2_070, 8, "", ["line 2070", "'last_update_id'"]),
    (2_080, 2, "x", ["line 2080", "'msg_seq'"]),
    (3, 5, "0", ["line 3", "'price'", "> 0"]),
]


@pytest.mark.parametrize(("line_no", "field", "text", "fragments"), BROKEN_BOOK)
def test_malformed_book_names_file_line_field(
    binance_dir: Path, tmp_path: Path, line_no: int, field: int, text: str, fragments: list[str]
) -> None:
    lines = _book_head(binance_dir)
    lines[line_no - 1] = _set_field(lines[line_no - 1], field, text)
    path = _write(tmp_path / f"binance-usdm_BTCUSDT_{BINANCE_STAMP}_book.csv.gz", lines)
    with pytest.raises(ValueError) as info:
        replay.load_book(path)
    message = str(info.value)
    assert path.name in message
    for fragment in fragments:
        assert fragment in message, message


def test_malformed_book_structure(binance_dir: Path, tmp_path: Path) -> None:
    lines = _book_head(binance_dir)
    path = tmp_path / "x_book.csv.gz"
    bad = lines.copy()
    bad[99] = bad[99].rstrip("\n") + ",extra\n"
    with pytest.raises(ValueError, match=r"line 100: expected 10 fields.*got 11 fields"):
        replay.load_book(_write(path, bad), replay.known_instrument("binance-usdm", "BTCUSDT"))
    bad = lines.copy()
    bad[49] = "\n"
    with pytest.raises(ValueError, match=r"line 50: .*empty line"):
        replay.load_book(_write(path, bad), replay.known_instrument("binance-usdm", "BTCUSDT"))
    bad = ["local_ns,exch_ms,msg_seq\n", *lines[1:]]
    with pytest.raises(ValueError, match=r"line 1: header"):
        replay.load_book(_write(path, bad), replay.known_instrument("binance-usdm", "BTCUSDT"))
    # msg_seq out of order: message 3 before message 2
    seq2 = [ln for ln in lines if ln.split(",")[2] == "2"]
    seq3 = [ln for ln in lines if ln.split(",")[2] == "3"]
    reordered = [lines[0], *[ln for ln in lines[1:] if ln.split(",")[2] == "1"], *seq3, *seq2]
    with pytest.raises(ValueError, match=r"line 2002: field 'msg_seq' = '3'"):
        replay.load_book(_write(path, reordered), replay.known_instrument("binance-usdm", "BTCUSDT"))
    path.write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="gzip"):
        replay.load_book(path, replay.known_instrument("binance-usdm", "BTCUSDT"))


def test_malformed_trades_and_bbo(binance_dir: Path, tmp_path: Path) -> None:
    prefix = BINANCE_PREFIXES["binance-spot:BTCUSDT"]
    trades = _head_lines(binance_dir / f"{prefix}_trades.csv.gz", 40)
    trades[20] = _set_field(trades[20], 6, "long")
    path = _write(tmp_path / "t.csv.gz", trades)
    with pytest.raises(ValueError, match=r"t\.csv\.gz: line 21: field 'taker_side' = 'long'"):
        replay.load_trades(path, "binance-spot:BTCUSDT")
    bbo = _head_lines(binance_dir / f"{prefix}_bbo.csv.gz", 40)
    bbo[30] = _set_field(bbo[30], 2, "12.5")
    path = _write(tmp_path / "b.csv.gz", bbo)
    with pytest.raises(ValueError, match=r"b\.csv\.gz: line 31: field 'update_id' = '12.5': not an int64"):
        replay.load_bbo(path, "binance-spot:BTCUSDT")
    bbo = _head_lines(binance_dir / f"{prefix}_bbo.csv.gz", 40)
    bbo[5] = _set_field(bbo[5], 5, "inf")
    path = _write(tmp_path / "b.csv.gz", bbo)
    with pytest.raises(ValueError, match=r"line 6: field 'ask_price' = 'inf'"):
        replay.load_bbo(path, "binance-spot:BTCUSDT")


def test_malformed_raw_names_line(binance_dir: Path, tmp_path: Path) -> None:
    prefix = BINANCE_PREFIXES["binance-spot:BTCUSDT"]
    lines = _head_lines(binance_dir / f"{prefix}_raw.jsonl.gz", 30)
    lines[11] = lines[11][: len(lines[11]) // 2] + "\n"  # truncated JSON
    path = _write(tmp_path / f"binance-spot_BTCUSDT_{BINANCE_STAMP}_raw.jsonl.gz", lines)
    with pytest.raises(ValueError, match=r"raw\.jsonl\.gz: line 12"):
        replay.load_raw(path)
    lines = _head_lines(binance_dir / f"{prefix}_raw.jsonl.gz", 30)
    path = _write(tmp_path / f"binance-spot_BTCUSDT_{BINANCE_STAMP}_raw.jsonl.gz", lines)
    wrong = replay.known_instrument("binance-usdm", "BTCUSDT")
    ethusdt = msgspec.structs.replace(wrong, symbol="ETHUSDT")
    with pytest.raises(ValueError, match=r"line 1: symbol 'BTCUSDT' != 'ETHUSDT'"):
        replay.load_raw(path, ethusdt)
    no_snapshot = [ln for ln in lines if "lastUpdateId" not in ln]
    path = _write(tmp_path / f"binance-spot_BTCUSDT_{BINANCE_STAMP}_raw.jsonl.gz", no_snapshot)
    with pytest.raises(ValueError, match="no REST depth snapshot"):
        replay.load_raw(path)
    # a short valid prefix loads: snapshot at line 8 replays the buffered events
    path = _write(tmp_path / f"binance-spot_BTCUSDT_{BINANCE_STAMP}_raw.jsonl.gz", lines)
    book, trades, bbo = replay.load_raw(path)
    assert book.is_snapshot[0] and len(book) >= 2 and len(trades) + len(bbo) > 0


# ---- file names, known and inferred instruments ----------------------------------------------------


def test_parse_file_name() -> None:
    assert replay.parse_file_name("binance-coinm_BTCUSD_PERP_20240808T2354Z_book.csv.gz") == (
        "binance-coinm",
        "BTCUSD_PERP",
        "20240808T2354Z",
        "book",
    )
    assert replay.parse_file_name("binance-spot_BTCUSDT_20240808T2354Z_raw.jsonl.gz") == (
        "binance-spot",
        "BTCUSDT",
        "20240808T2354Z",
        "raw",
    )
    assert replay.parse_file_name("gate-futures_BTC_USDT_x_trades.csv") == ("gate-futures", "BTC_USDT", "x", "trades")
    assert replay.parse_file_name("PROVENANCE.md") is None
    assert replay.parse_file_name("binance-spot_BTCUSDT_book.csv.gz") is None  # no stamp


def test_known_instruments() -> None:
    spot = replay.known_instrument("binance-spot", "BTCUSDT")
    usdm = replay.known_instrument("binance-usdm", "BTCUSDT")
    coinm = replay.known_instrument("binance-coinm", "BTCUSD_PERP")
    assert spot is not None and usdm is not None and coinm is not None
    assert (spot.kind, spot.tick_size, spot.lot_size, spot.min_notional, spot.maker_fee, spot.taker_fee) == (
        InstrumentKind.SPOT,
        0.01,
        0.00001,
        5.0,
        0.001,
        0.001,
    )
    assert (spot.base, spot.quote, spot.funding_interval_hours) == ("BTC", "USDT", 0.0)
    assert (usdm.kind, usdm.tick_size, usdm.lot_size, usdm.min_notional, usdm.maker_fee, usdm.taker_fee) == (
        InstrumentKind.PERP,
        0.1,
        0.001,
        100.0,
        0.0002,
        0.0005,
    )
    assert (usdm.base, usdm.quote, usdm.funding_interval_hours) == ("BTC", "USDT", 8.0)
    assert (coinm.kind, coinm.tick_size, coinm.lot_size, coinm.contract_size) == (InstrumentKind.INVERSE_PERP, 0.1, 1.0, 100.0)
    assert (coinm.maker_fee, coinm.taker_fee, coinm.funding_interval_hours) == (0.0002, 0.0005, 8.0)
    assert (coinm.base, coinm.quote) == ("BTC", "USD")
    assert replay.known_instrument("binance-spot", "ETHUSDT") is None


def _copy_head(src: Path, dst: Path, n_lines: int) -> None:
    _write(dst, _head_lines(src, n_lines))


def test_unknown_instrument_inferred(binance_dir: Path, tmp_path: Path) -> None:
    """A copy renamed to other venues: kind from the venue name, tick/lot from the decimals."""
    copies = {
        # new name: (source key, expected kind, tick, lot, base, quote)
        "mexc-spot_ETHUSDT": ("binance-spot:BTCUSDT", InstrumentKind.SPOT, 0.01, 0.00001, "ETH", "USDT"),
        "okx-swap_BTC_USDT": ("binance-usdm:BTCUSDT", InstrumentKind.PERP, 0.1, 0.001, "BTC", "USDT"),
        "bybit-inverse_BTCUSD": ("binance-coinm:BTCUSD_PERP", InstrumentKind.INVERSE_PERP, 0.1, 1.0, "BTC", "USD"),
    }
    for new, (key, *_rest) in copies.items():
        src = BINANCE_PREFIXES[key]
        _copy_head(binance_dir / f"{src}_book.csv.gz", tmp_path / f"{new}_20240101T0000Z_book.csv.gz", 4_001)
        _copy_head(binance_dir / f"{src}_trades.csv.gz", tmp_path / f"{new}_20240101T0000Z_trades.csv.gz", 101)
    rec = replay.load_recording(tmp_path)
    assert rec.name == tmp_path.name
    for new, (_key, kind, tick, lot, base, quote) in copies.items():
        venue, symbol = new.split("_", 1)
        data = rec.streams[f"{venue}:{symbol}"]
        inst = data.instrument
        assert (inst.venue, inst.symbol, inst.kind, inst.tick_size, inst.lot_size) == (venue, symbol, kind, tick, lot)
        assert (inst.base, inst.quote) == (base, quote)
        assert inst.funding_interval_hours == (0.0 if kind is InstrumentKind.SPOT else 8.0)
        assert data.book.instrument == inst and data.bbo is None and data.trades is not None
        assert len(data.trades) == 100
        book = _core.OrderBook(inst.tick_size, inst.lot_size)
        assert set(book.apply_delta(d) for d in data.book.deltas) == {_core.APPLIED}

    # instruments.json overrides inference
    override = Instrument(
        venue="mexc-spot",
        symbol="ETHUSDT",
        kind=InstrumentKind.SPOT,
        base="ETH",
        quote="USDT",
        tick_size=0.001,
        lot_size=0.0001,
        min_notional=1.0,
        taker_fee=0.0005,
    )
    (tmp_path / "instruments.json").write_bytes(msgspec.json.encode([override]))
    rec = replay.load_recording(tmp_path)
    assert rec.streams["mexc-spot:ETHUSDT"].instrument == override
    assert rec.streams["okx-swap:BTC_USDT"].instrument.tick_size == 0.1  # others still inferred
    (tmp_path / "instruments.json").write_text('[{"venue": "x"}]')
    with pytest.raises(ValueError, match="instruments.json"):
        replay.load_recording(tmp_path)


def test_inference_over_a_whole_file(binance_dir: Path, tmp_path: Path) -> None:
    """The full spot book has 7 deep levels with 6-decimal quantities: the inferred lot is finer."""
    src = binance_dir / f"{BINANCE_PREFIXES['binance-spot:BTCUSDT']}_book.csv.gz"
    shutil.copy(src, tmp_path / "other-spot_BTCUSDT_20240808T2354Z_book.csv.gz")
    book = replay.load_book(tmp_path / "other-spot_BTCUSDT_20240808T2354Z_book.csv.gz")
    assert (book.instrument.kind, book.instrument.tick_size, book.instrument.lot_size) == (InstrumentKind.SPOT, 0.01, 1e-6)
    assert book.n_level_rows == 300_094


def test_recording_folder_errors(binance_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no <venue>"):
        replay.load_recording(tmp_path)
    with pytest.raises(ValueError, match="not a directory"):
        replay.load_recording(tmp_path / "missing")
    src = binance_dir / f"{BINANCE_PREFIXES['binance-spot:BTCUSDT']}_book.csv.gz"
    _copy_head(src, tmp_path / "binance-spot_BTCUSDT_A_book.csv.gz", 2_100)
    shutil.copy(tmp_path / "binance-spot_BTCUSDT_A_book.csv.gz", tmp_path / "binance-spot_BTCUSDT_B_book.csv.gz")
    with pytest.raises(ValueError, match="two recordings"):
        replay.load_recording(tmp_path)


def test_infer_instrument_rules() -> None:
    inst = replay.infer_instrument("gate-futures", "BTC_USDT", price_decimals=1, qty_decimals=0)
    assert (inst.kind, inst.base, inst.quote, inst.tick_size, inst.lot_size) == (InstrumentKind.PERP, "BTC", "USDT", 0.1, 1.0)
    inst = replay.infer_instrument("binance-coinm", "ETHUSD_PERP", price_decimals=2, qty_decimals=0)
    assert (inst.kind, inst.base, inst.quote, inst.tick_size) == (InstrumentKind.INVERSE_PERP, "ETH", "USD", 0.01)
    inst = replay.infer_instrument("kraken-spot", "XBTEUR", price_decimals=8, qty_decimals=8)
    assert (inst.kind, inst.base, inst.quote, inst.tick_size, inst.lot_size) == (InstrumentKind.SPOT, "XBT", "EUR", 1e-8, 1e-8)
    with pytest.raises(ValueError):
        replay.infer_instrument("x-spot", "AB", price_decimals=-1, qty_decimals=0)
