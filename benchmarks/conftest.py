"""Shared benchmark fixtures: the recorded Binance book streams, loaded once per session.

Data root: ``$CEXARB_DATA`` or ``<repo>/../shared/data`` (read-only). Benchmarks that need the
recording skip cleanly when it is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BINANCE_SUBDIR = Path("book") / "binance_btc_20240808"
# fixed order, so every benchmark walks the streams the same way
P1_KEYS = ("binance-spot:BTCUSDT", "binance-usdm:BTCUSDT", "binance-coinm:BTCUSD_PERP")


def data_root() -> Path:
    env = os.environ.get("CEXARB_DATA")
    return Path(env).expanduser().resolve() if env else (REPO_ROOT.parent / "shared" / "data").resolve()


class FinalBbo(msgspec.Struct, frozen=True):
    """Final top of book of one stream: prices in ticks, quantities as floats."""

    bid_ticks: int
    bid_qty: float
    ask_ticks: int
    ask_qty: float


class P1Data(msgspec.Struct, frozen=True, kw_only=True):
    """The three book streams (``cexarb.replay.BookStream``) and their expected final BBO."""

    streams: tuple  # tuple[BookStream, ...] in P1_KEYS order
    final_bbo: tuple[FinalBbo, ...]
    n_messages: int
    n_level_changes: int

    @property
    def rounds(self) -> int:
        """Rounds per benchmark (``CEXARB_BENCH_ROUNDS``, default 5)."""
        return int(os.environ.get("CEXARB_BENCH_ROUNDS", "5"))

    def check_final_bbo(self, got: list[tuple[float, float, float, float]], who: str) -> None:
        """Assert ``got`` (bid price, bid qty, ask price, ask qty per stream) is the reference BBO."""
        assert len(got) == len(self.final_bbo), who
        for stream, expected, (bp, bq, ap, aq) in zip(self.streams, self.final_bbo, got, strict=True):
            tick = stream.instrument.tick_size
            key = stream.instrument.key
            assert round(bp / tick) == expected.bid_ticks, (who, key, bp, expected)
            assert round(ap / tick) == expected.ask_ticks, (who, key, ap, expected)
            assert bq == pytest.approx(expected.bid_qty, rel=1e-12), (who, key, bq, expected)
            assert aq == pytest.approx(expected.ask_qty, rel=1e-12), (who, key, aq, expected)


def _final_bbo(stream) -> FinalBbo:
    """Final BBO by a plain dict replay of the stream's level rows (independent of every book)."""
    tick = stream.instrument.tick_size
    bids: dict[int, float] = {}
    asks: dict[int, float] = {}
    ticks_all = np.rint(stream.levels[:, 0] / tick).astype(np.int64).tolist()
    qty_all = stream.levels[:, 1].tolist()
    offsets, bid_end = stream.offsets.tolist(), stream.bid_end.tolist()
    for i, snap in enumerate(stream.is_snapshot.tolist()):
        if snap:
            bids.clear()
            asks.clear()
        for side, lo, hi in ((bids, offsets[i], bid_end[i]), (asks, bid_end[i], offsets[i + 1])):
            for t, q in zip(ticks_all[lo:hi], qty_all[lo:hi]):
                if q:
                    side[t] = q
                else:
                    side.pop(t, None)
    b, a = max(bids), min(asks)
    return FinalBbo(b, bids[b], a, asks[a])


_P1_CACHE: list[P1Data] = []


@pytest.fixture(scope="session")
def p1_data() -> P1Data:
    """Load the three recorded book streams once (skips when the data is missing)."""
    if _P1_CACHE:
        return _P1_CACHE[0]
    folder = data_root() / BINANCE_SUBDIR
    if not folder.is_dir():
        pytest.skip(f"recorded data not found at {folder} (set CEXARB_DATA to the shared/data folder)")
    from cexarb.replay import load_recording

    recording = load_recording(folder)
    streams = tuple(recording.streams[key].book for key in P1_KEYS)
    data = P1Data(
        streams=streams,
        final_bbo=tuple(_final_bbo(s) for s in streams),
        n_messages=sum(len(s) for s in streams),
        n_level_changes=sum(s.n_level_rows for s in streams),
    )
    _P1_CACHE.append(data)
    return data


#: apply_delta / native replay_deltas time of each pair of ``test_p1_boundary_paired``
P1_PAIRED: list[float] = []


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """After the benchmark table: P1 data size and the medians as ratios."""
    if not _P1_CACHE:
        return
    data = _P1_CACHE[0]
    session = getattr(config, "_benchmarksession", None)
    benches = [b for b in getattr(session, "benchmarks", []) if getattr(b, "group", None) == "P1-book-ingest"]
    write = terminalreporter.write_line
    write("")
    write(f"P1 data: {data.n_messages:,} messages, {data.n_level_changes:,} level changes (3 Binance book streams)")
    medians: dict[str, float] = {}
    for bench in benches:
        stats = getattr(bench, "stats", None)
        median = getattr(stats, "median", None)
        if median is None:
            median = getattr(getattr(stats, "stats", None), "median", None)
        if median is not None:
            medians[bench.name.split("[")[0].removeprefix("test_p1_")] = float(median)
    if not medians:
        return
    for name, median in sorted(medians.items(), key=lambda kv: kv[1]):
        per_msg = median / data.n_messages * 1e9
        write(f"  {name:<32} median {median * 1e3:9.2f} ms  {per_msg:8.1f} ns/message")
    ours = medians.get("ours_apply_delta")
    native = medians.get("ours_native_replay_deltas")
    peers = {k: v for k, v in medians.items() if not k.startswith("ours")}
    if ours and native:
        write(f"  ours (apply_delta per message) / native replay_deltas loop, medians of separate tests: {ours / native:.2f}x (goal <= 1.2x)")
    if P1_PAIRED:
        write(
            f"  the same, paired passes (median of {len(P1_PAIRED)} pair ratios): "
            f"{float(np.median(P1_PAIRED)):.2f}x (goal <= 1.2x)"
        )
    if ours and peers:
        best_peer = min(peers, key=peers.__getitem__)
        write(f"  fastest peer {best_peer} / ours (apply_delta): {peers[best_peer] / ours:.1f}x slower than ours")
