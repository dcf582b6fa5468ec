"""Hand-built replay streams for strategy tests on small books: a :class:`BookStream` from a few
depth messages and an empty :class:`TradeStream`, in the formats the loaders produce."""

from __future__ import annotations

import numpy as np
from cexarb import _core
from cexarb.model import Instrument
from cexarb.replay import BookStream, InstrumentData, Recording, TradeStream
from cexarb.venues.sim.venue import SimLatency, SimVenue

#: one depth message: (local_ns, bids, asks, U, u, pu, is_snapshot), prices in quote, qty in base
Msg = tuple[int, list[tuple[float, float]], list[tuple[float, float]], int, int, int | None, bool]


def book_stream(inst: Instrument, msgs: list[Msg]) -> BookStream:
    """A BookStream from (local_ns, bids, asks, U, u, pu, is_snapshot) messages."""
    levels, offsets, bid_end, deltas = [], [0], [], []
    for ts, bids, asks, first, last, prev, snap in msgs:
        levels.extend(bids)
        bid_end.append(offsets[-1] + len(bids))
        levels.extend(asks)
        offsets.append(offsets[-1] + len(bids) + len(asks))
        deltas.append(_core.L2Delta(bids, asks, first, last, prev, snap))
    i64 = lambda xs: np.asarray(xs, dtype=np.int64)
    return BookStream(
        instrument=inst,
        local_ns=i64([m[0] for m in msgs]),
        exch_ms=i64([-1] * len(msgs)),
        is_snapshot=np.asarray([m[6] for m in msgs]),
        first_update_id=i64([m[3] for m in msgs]),
        last_update_id=i64([m[4] for m in msgs]),
        prev_update_id=i64([-1 if m[5] is None else m[5] for m in msgs]),
        levels=np.asarray(levels, dtype=np.float64).reshape(-1, 2),
        offsets=i64(offsets),
        bid_end=i64(bid_end),
        deltas=deltas,
        n_level_rows=len(levels),
    )


def no_trades(key: str) -> TradeStream:
    e = np.zeros(0, dtype=np.int64)
    return TradeStream(instrument_key=key, local_ns=e, exch_ms=e, trade_ms=e, trade_id=e,
                       price=np.zeros(0), qty=np.zeros(0), taker_is_buy=np.zeros(0, dtype=bool))


def recording_of(streams: dict[Instrument, list[Msg]], name: str = "hand-built") -> Recording:
    """A :class:`Recording` of hand-built depth messages per instrument, with no trades."""
    return Recording(
        name=name,
        streams={
            inst.key: InstrumentData(instrument=inst, book=book_stream(inst, msgs), trades=no_trades(inst.key))
            for inst, msgs in streams.items()
        },
    )


def fast_cancels(venue: SimVenue, latency: SimLatency | None = None) -> None:
    """Cancels reach ``venue`` at ``latency`` (default :class:`SimLatency`: 1 ms) whatever its order
    latency is set to when they are sent (so a cancel beats a slow order there)."""
    request_cancel = venue.request_cancel
    normal = latency if latency is not None else SimLatency()

    def fast(instrument_key: str, client_order_id: str) -> bool:
        slow, venue.latency = venue.latency, normal
        try:
            return request_cancel(instrument_key, client_order_id)
        finally:
            venue.latency = slow

    venue.request_cancel = fast  # type: ignore[method-assign]
