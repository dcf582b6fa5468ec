"""An independent plain-Python L2 book with Binance sequencing: the oracle for the Rust book.

Nothing here imports cexarb. Prices and quantities are kept as ``Decimal`` built from the
exchange's decimal strings, so the book is exact; each side keeps a sorted list of its price
keys (``bisect``) next to the ``{price: qty}`` dict.

Sequence rules, from Binance "How to manage a local order book correctly" (spot WebSocket
streams; USDⓈ-M / COIN-M futures market streams). An event is futures-style when it carries
``pu`` (``prev_update_id``):

* no snapshot yet, or the book is invalid (after a gap or a cross): ``not_synced``, ignored;
* first event after a snapshot with id ``L``: spot is ``stale`` when ``u <= L`` and needs
  ``U <= L + 1 <= u``; futures is ``stale`` when ``u < L`` and needs ``U <= L <= u``;
* later events: ``stale`` when ``u <= last u`` (already contained); spot needs
  ``U == last u + 1``, futures ``pu == last u``;
* an event that fails its condition is a ``gap``: not applied, the book is invalid until the
  next snapshot;
* after applying, a book with ``best bid >= best ask`` is ``crossed`` and invalid; so is a
  crossed snapshot (events are then ``not_synced`` until the next snapshot).
"""

from __future__ import annotations

import bisect
import csv
import gzip
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

APPLIED = "applied"
STALE = "stale"
GAP = "gap"
NOT_SYNCED = "not_synced"
CROSSED = "crossed"

LevelText = tuple[str, str]


class _Side:
    """One side: ``{price: qty}`` plus the price keys sorted ascending."""

    __slots__ = ("keys", "levels")

    def __init__(self) -> None:
        self.levels: dict[Decimal, Decimal] = {}
        self.keys: list[Decimal] = []

    def clear(self) -> None:
        self.levels.clear()
        self.keys.clear()

    def set(self, price: Decimal, qty: Decimal) -> None:
        if qty == 0:
            if price in self.levels:
                del self.levels[price]
                del self.keys[bisect.bisect_left(self.keys, price)]
        else:
            if price not in self.levels:
                bisect.insort(self.keys, price)
            self.levels[price] = qty


class ReferenceBook:
    """Exact L2 book; see the module docstring for the rules."""

    def __init__(self) -> None:
        self.bids = _Side()
        self.asks = _Side()
        self.last_update_id: int | None = None
        self.valid = False
        self.awaiting_first = False
        self.gap_count = 0
        self.crossed = False

    # -- input ---------------------------------------------------------------------------------

    def snapshot(self, bids: Iterable[LevelText], asks: Iterable[LevelText], update_id: int) -> None:
        """Replace the book (REST snapshot ``lastUpdateId = update_id``)."""
        self.bids.clear()
        self.asks.clear()
        for p, q in bids:
            self.bids.set(Decimal(p), Decimal(q))
        for p, q in asks:
            self.asks.set(Decimal(p), Decimal(q))
        self.last_update_id = update_id
        self.awaiting_first = True
        self.crossed = self._is_crossed()
        self.valid = not self.crossed

    def _is_crossed(self) -> bool:
        bb, ba = self.best_bid(), self.best_ask()
        return bb is not None and ba is not None and bb[0] >= ba[0]

    def update(
        self,
        bids: Iterable[LevelText],
        asks: Iterable[LevelText],
        first_update_id: int,
        last_update_id: int,
        prev_update_id: int | None = None,
    ) -> str:
        """Apply one depth event; returns APPLIED / STALE / GAP / NOT_SYNCED / CROSSED."""
        if not self.valid or self.last_update_id is None:
            return NOT_SYNCED
        big_u, u, last = first_update_id, last_update_id, self.last_update_id
        futures = prev_update_id is not None
        if self.awaiting_first:
            if (u < last) if futures else (u <= last):
                return STALE
            ok = (big_u <= last <= u) if futures else (big_u <= last + 1 <= u)
        else:
            if u <= last:
                return STALE
            ok = (prev_update_id == last) if futures else (big_u == last + 1)
        if not ok:
            self.valid = False
            self.gap_count += 1
            return GAP
        for p, q in bids:
            self.bids.set(Decimal(p), Decimal(q))
        for p, q in asks:
            self.asks.set(Decimal(p), Decimal(q))
        self.last_update_id = u
        self.awaiting_first = False
        if self._is_crossed():
            self.valid = False
            self.crossed = True
            return CROSSED
        return APPLIED

    # -- queries -------------------------------------------------------------------------------

    def best_bid(self) -> tuple[Decimal, Decimal] | None:
        if not self.bids.keys:
            return None
        p = self.bids.keys[-1]
        return p, self.bids.levels[p]

    def best_ask(self) -> tuple[Decimal, Decimal] | None:
        if not self.asks.keys:
            return None
        p = self.asks.keys[0]
        return p, self.asks.levels[p]

    def top(self, n: int) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """Best ``n`` levels per side, best first: bids descending, asks ascending."""
        bid_keys = self.bids.keys[: -n - 1 : -1] if n else []
        ask_keys = self.asks.keys[:n]
        return (
            [(p, self.bids.levels[p]) for p in bid_keys],
            [(p, self.asks.levels[p]) for p in ask_keys],
        )

    @property
    def n_bids(self) -> int:
        return len(self.bids.keys)

    @property
    def n_asks(self) -> int:
        return len(self.asks.keys)


# ---- an independent reader of book.csv (csv module, strings kept) ----------------------------


@dataclass(slots=True)
class CsvMessage:
    """One message of ``book.csv`` as text: the snapshot or one depth event."""

    msg_seq: int
    local_ns: int
    is_snapshot: bool
    first_update_id: int | None
    last_update_id: int
    prev_update_id: int | None
    bids: list[LevelText] = field(default_factory=list)
    asks: list[LevelText] = field(default_factory=list)

    def apply_to(self, book: ReferenceBook) -> str | None:
        """Apply to ``book``; returns the outcome (None for a snapshot)."""
        if self.is_snapshot:
            book.snapshot(self.bids, self.asks, self.last_update_id)
            return None
        assert self.first_update_id is not None
        return book.update(self.bids, self.asks, self.first_update_id, self.last_update_id, self.prev_update_id)


def iter_book_csv(path: Path) -> Iterator[CsvMessage]:
    """Messages of a ``*_book.csv.gz`` file in order (PROVENANCE §1 format), read with ``csv``."""
    with gzip.open(path, "rt", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        assert header == [
            "local_ns",
            "exch_ms",
            "msg_seq",
            "is_snapshot",
            "side",
            "price",
            "qty",
            "first_update_id",
            "last_update_id",
            "prev_update_id",
        ], header
        current: CsvMessage | None = None
        for local_ns, _exch, seq, snap, side, price, qty, first, last, prev in reader:
            msg_seq = int(seq)
            if current is None or msg_seq != current.msg_seq:
                if current is not None:
                    yield current
                current = CsvMessage(
                    msg_seq=msg_seq,
                    local_ns=int(local_ns),
                    is_snapshot=snap == "1",
                    first_update_id=int(first) if first else None,
                    last_update_id=int(last),
                    prev_update_id=int(prev) if prev else None,
                )
            (current.bids if side == "bid" else current.asks).append((price, qty))
        if current is not None:
            yield current
