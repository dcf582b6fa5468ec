"""Loaders for recorded market data: L2 book streams, trades and BBO (bookTicker) per instrument.

The recording format is the one in ``shared/data/PROVENANCE.md`` §1 (Binance BTC, 2024-08-08):
per instrument, files named ``<venue>_<SYMBOL>_<stamp>_{book,trades,bbo}.csv.gz`` and
``<venue>_<SYMBOL>_<stamp>_raw.jsonl.gz``. The venue contains no ``_`` (``binance-spot``,
``binance-usdm``, ``binance-coinm``); the symbol may (``BTCUSD_PERP``); the stamp is the last
``_`` field before the suffix.

CSV formats (header line required, exactly these columns):

* ``book``: ``local_ns,exch_ms,msg_seq,is_snapshot,side,price,qty,first_update_id,last_update_id,
  prev_update_id``. One row per level; the rows of one message share ``msg_seq`` and are
  contiguous. ``is_snapshot=1`` rows replace the book (the REST snapshot), others are absolute
  level quantities (``qty`` 0 deletes the level). ``first_update_id``/``last_update_id`` are the
  depth event's ``U``/``u``, ``prev_update_id`` the futures event's ``pu`` (empty for spot and for
  snapshot rows). ``exch_ms`` may be empty.
* ``trades``: ``local_ns,exch_ms,trade_ms,trade_id,price,qty,taker_side`` (``buy``/``sell``).
* ``bbo``: ``local_ns,exch_ms,update_id,bid_price,bid_qty,ask_price,ask_qty``.

Units: ``*_ns`` nanoseconds since the Unix epoch on the recorder's clock; ``*_ms`` milliseconds
since the epoch on the exchange's clock (-1 where the field is empty); prices in quote currency
(per contract for inverse perps); quantities in base units, or contracts for inverse perps.

Instruments: :func:`known_instrument` holds the recorded Binance instruments. For other
recordings of the same format, :func:`infer_instrument` builds one from the venue name and the
decimal strings in the book file, and an optional ``instruments.json`` in the folder (a JSON list
of :class:`~cexarb.model.Instrument` objects) overrides both.

Malformed input raises ``ValueError`` naming the file, the 1-based line and the field.
CSV parsing is vectorised with numpy over the decompressed bytes (numbers parsed exactly, as
``float(text)`` would); ``*_raw.jsonl.gz`` is decoded with msgspec view Structs. The recorded set
(1.41M level rows, 46k trades, 188k BBO rows) loads from CSV in about 2.5 s of CPU on a shared
2-core machine, from the raw JSONL files in about 2.3 s.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import msgspec
import numpy as np
import numpy.typing as npt

from cexarb._core import L2Delta
from cexarb.model import Instrument, InstrumentKind

__all__ = [
    "BOOK_COLUMNS",
    "BBO_COLUMNS",
    "TRADE_COLUMNS",
    "BboStream",
    "BookStream",
    "InstrumentData",
    "Recording",
    "TradeStream",
    "infer_instrument",
    "known_instrument",
    "load_bbo",
    "load_book",
    "load_instruments_json",
    "load_raw",
    "load_recording",
    "load_trades",
    "parse_file_name",
]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

BOOK_COLUMNS = (
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
)
TRADE_COLUMNS = ("local_ns", "exch_ms", "trade_ms", "trade_id", "price", "qty", "taker_side")
BBO_COLUMNS = ("local_ns", "exch_ms", "update_id", "bid_price", "bid_qty", "ask_price", "ask_qty")

_POW10 = np.array([10.0**k for k in range(23)], dtype=np.float64)  # exact doubles
_BYTE_MASKS = np.array([(1 << (8 * n)) - 1 for n in range(9)], dtype=np.uint64)  # low n bytes

_FILE_RE = re.compile(
    r"^(?P<venue>[^_]+)_(?P<symbol>.+)_(?P<stamp>[^_]+)_(?P<kind>book|trades|bbo|raw)"
    r"\.(?:csv|jsonl)(?:\.gz)?$"
)

# ---------------------------------------------------------------------------------------------
# Instruments
# ---------------------------------------------------------------------------------------------

_KNOWN: dict[tuple[str, str], Instrument] = {
    # Binance spot BTCUSDT: PRICE_FILTER tickSize 0.01, LOT_SIZE stepSize 0.00001,
    # NOTIONAL minNotional 5; regular-tier fees 0.1 % maker / 0.1 % taker.
    ("binance-spot", "BTCUSDT"): Instrument(
        venue="binance-spot",
        symbol="BTCUSDT",
        kind=InstrumentKind.SPOT,
        base="BTC",
        quote="USDT",
        tick_size=0.01,
        lot_size=0.00001,
        min_notional=5.0,
        maker_fee=0.001,
        taker_fee=0.001,
    ),
    # Binance USDⓈ-M BTCUSDT perpetual: tickSize 0.1, stepSize 0.001, MIN_NOTIONAL 100;
    # regular-tier fees 0.02 % / 0.05 %; funding every 8 h (00:00/08:00/16:00 UTC).
    ("binance-usdm", "BTCUSDT"): Instrument(
        venue="binance-usdm",
        symbol="BTCUSDT",
        kind=InstrumentKind.PERP,
        base="BTC",
        quote="USDT",
        tick_size=0.1,
        lot_size=0.001,
        min_notional=100.0,
        maker_fee=0.0002,
        taker_fee=0.0005,
        funding_interval_hours=8.0,
    ),
    # Binance COIN-M BTCUSD_PERP: tickSize 0.1, 1 contract = 100 USD, stepSize 1 contract;
    # regular-tier fees 0.02 % / 0.05 %; funding every 8 h.
    ("binance-coinm", "BTCUSD_PERP"): Instrument(
        venue="binance-coinm",
        symbol="BTCUSD_PERP",
        kind=InstrumentKind.INVERSE_PERP,
        base="BTC",
        quote="USD",
        tick_size=0.1,
        lot_size=1.0,
        contract_size=100.0,
        maker_fee=0.0002,
        taker_fee=0.0005,
        funding_interval_hours=8.0,
    ),
}

_QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USD", "EUR", "TRY", "BTC", "ETH", "BNB")


def known_instrument(venue: str, symbol: str) -> Instrument | None:
    """The recorded Binance instruments (PROVENANCE §1 caveats, Binance exchangeInfo at 2024-08).

    Args:
        venue: ``"binance-spot"``, ``"binance-usdm"`` or ``"binance-coinm"``.
        symbol: venue symbol, ``"BTCUSDT"`` or ``"BTCUSD_PERP"``.

    Returns:
        The instrument, or None when (venue, symbol) is not one of the recorded three.
    """
    return _KNOWN.get((venue, symbol))


def _kind_for_venue(venue: str) -> InstrumentKind:
    name = venue.lower()
    if "spot" in name:
        return InstrumentKind.SPOT
    if "coinm" in name or "inverse" in name:
        return InstrumentKind.INVERSE_PERP
    return InstrumentKind.PERP


def _split_symbol(symbol: str) -> tuple[str, str]:
    core = symbol.upper()
    if "_" in core:
        head, _, tail = core.rpartition("_")
        if tail == "PERP" or tail.isdigit():  # BTCUSD_PERP, BTCUSD_240927
            core = head
        elif head and tail:  # Gate.io style BTC_USDT
            return head, tail
    for quote in _QUOTE_ASSETS:
        if core.endswith(quote) and len(core) > len(quote):
            return core[: -len(quote)], quote
    return core, ""


def infer_instrument(venue: str, symbol: str, *, price_decimals: int, qty_decimals: int) -> Instrument:
    """An instrument for a recording that is not in :func:`known_instrument`.

    Rules (override any of them with ``instruments.json``, see :func:`load_instruments_json`):

    * ``kind``: SPOT when the venue name contains ``spot``, INVERSE_PERP when it contains
      ``coinm`` or ``inverse``, otherwise PERP (linear perpetual).
    * ``tick_size = 10**-price_decimals``, ``lot_size = 10**-qty_decimals``, where the decimals
      are the most significant decimals seen in any price / quantity string of the book file
      (trailing zeros ignored: ``"61837.63000000"`` has 2, ``"35"`` has 0). This is the coarsest
      grid consistent with the data; the venue's real step can only be finer or equal. Old
      resting orders can be finer than today's step: the recorded Binance spot book has 7 deep
      levels with 6-decimal quantities (``25.426189`` at 200000), so the whole file implies a lot
      of 0.000001 where the venue's step is 0.00001.
    * ``base``/``quote`` from the symbol: a ``_PERP`` or ``_<date>`` suffix is removed, a
      ``BASE_QUOTE`` symbol is split at ``_``, otherwise a known quote asset suffix (USDT, USDC,
      USD, ...) is split off; ``quote`` is ``""`` if none matches.
    * fees and ``min_notional`` 0 (unknown), ``contract_size`` 1, ``funding_interval_hours`` 8 for
      perpetuals (the Binance default; the format is Binance's), 0 for spot.

    Raises:
        ValueError: negative decimals.
    """
    if price_decimals < 0 or qty_decimals < 0:
        raise ValueError(f"{venue}:{symbol}: decimals must be >= 0, got {price_decimals}, {qty_decimals}")
    kind = _kind_for_venue(venue)
    base, quote = _split_symbol(symbol)
    return Instrument(
        venue=venue,
        symbol=symbol,
        kind=kind,
        base=base,
        quote=quote,
        tick_size=float(f"1e-{price_decimals}"),
        lot_size=float(f"1e-{qty_decimals}"),
        funding_interval_hours=0.0 if kind is InstrumentKind.SPOT else 8.0,
    )


def load_instruments_json(path: str | Path) -> dict[tuple[str, str], Instrument]:
    """Read an ``instruments.json`` override file: a JSON list of Instrument objects.

    Each object has the :class:`~cexarb.model.Instrument` fields (``venue``, ``symbol``, ``kind``
    as ``"spot"``/``"perp"``/``"inverse_perp"``, ``base``, ``quote``, ``tick_size``,
    ``lot_size`` required; the rest optional).

    Returns:
        ``{(venue, symbol): Instrument}``.

    Raises:
        ValueError: not valid JSON or a field of the wrong type/value, naming the file.
    """
    path = Path(path)
    try:
        items = msgspec.json.decode(path.read_bytes(), type=list[Instrument])
    except (msgspec.DecodeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid instruments file: {exc}") from exc
    return {(inst.venue, inst.symbol): inst for inst in items}


def parse_file_name(name: str) -> tuple[str, str, str, str] | None:
    """Split a recording file name into ``(venue, symbol, stamp, kind)``.

    ``kind`` is ``book``, ``trades``, ``bbo`` or ``raw``. Returns None for other names.
    Example: ``binance-coinm_BTCUSD_PERP_20240808T2354Z_book.csv.gz`` ->
    ``("binance-coinm", "BTCUSD_PERP", "20240808T2354Z", "book")``.
    """
    match = _FILE_RE.match(name)
    if match is None:
        return None
    return match["venue"], match["symbol"], match["stamp"], match["kind"]


# ---------------------------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------------------------


class BookStream(msgspec.Struct, frozen=True, kw_only=True, eq=False):
    """A validated L2 depth stream of one instrument, one entry per message.

    Message ``i`` has ``local_ns[i]``, ``exch_ms[i]``, the ids, and its levels
    ``bids(i)`` / ``asks(i)`` (views into ``levels``), and ``deltas[i]``, the same message as a
    ready-to-apply :class:`cexarb._core.L2Delta`. Message 0 is the REST snapshot
    (``is_snapshot[0]``; its L2Delta has ``is_snapshot=True`` and ``first_update_id ==
    last_update_id ==`` the snapshot's ``lastUpdateId``); later messages are depth events with
    absolute level quantities (0 = delete).

    Attributes:
        instrument: the instrument.
        local_ns: int64 (n_messages,), recorder receive time, ns. Buffered pre-snapshot events
            carry the snapshot's time (PROVENANCE §1), so it is non-decreasing.
        exch_ms: int64 (n_messages,), exchange event time ``E``, ms; -1 when absent.
        is_snapshot: bool (n_messages,).
        first_update_id: int64 (n_messages,), ``U``; -1 for snapshots.
        last_update_id: int64 (n_messages,), ``u`` (snapshot: ``lastUpdateId``).
        prev_update_id: int64 (n_messages,), futures ``pu``; -1 when absent (spot, snapshots).
        levels: float64 (n_level_rows, 2), columns price, qty, message after message, bids
            before asks inside a message, each side in the exchange's order.
        offsets: int64 (n_messages + 1,), message ``i`` is ``levels[offsets[i]:offsets[i+1]]``.
        bid_end: int64 (n_messages,), message ``i``'s bids end (asks start) at ``bid_end[i]``.
        deltas: one L2Delta per message.
        n_level_rows: total level rows (snapshot included).
    """

    instrument: Instrument
    local_ns: I64
    exch_ms: I64
    is_snapshot: Bools
    first_update_id: I64
    last_update_id: I64
    prev_update_id: I64
    levels: F64
    offsets: I64
    bid_end: I64
    deltas: list[L2Delta]
    n_level_rows: int

    def __len__(self) -> int:
        return len(self.local_ns)

    @property
    def n_messages(self) -> int:
        """Number of messages (snapshot included)."""
        return len(self.local_ns)

    def bids(self, i: int) -> F64:
        """Bid levels of message ``i``: float64 (n, 2) price, qty (a view)."""
        return self.levels[self.offsets[i] : self.bid_end[i]]

    def asks(self, i: int) -> F64:
        """Ask levels of message ``i``: float64 (n, 2) price, qty (a view)."""
        return self.levels[self.bid_end[i] : self.offsets[i + 1]]

    def prev_id(self, i: int) -> int | None:
        """``prev_update_id`` of message ``i`` as the core takes it (None when absent)."""
        pu = int(self.prev_update_id[i])
        return None if pu < 0 else pu


class TradeStream(msgspec.Struct, frozen=True, kw_only=True, eq=False):
    """Public trades of one instrument (Binance ``trade`` stream), one entry per trade.

    Attributes:
        instrument_key: ``venue:symbol``.
        local_ns: int64 (n,), recorder receive time, ns.
        exch_ms: int64 (n,), event time ``E``, ms (-1 when absent).
        trade_ms: int64 (n,), trade time ``T``, ms.
        trade_id: int64 (n,).
        price: float64 (n,), quote currency.
        qty: float64 (n,), base units (contracts for inverse perps).
        taker_is_buy: bool (n,), True when the aggressor bought (Binance ``m`` false).
    """

    instrument_key: str
    local_ns: I64
    exch_ms: I64
    trade_ms: I64
    trade_id: I64
    price: F64
    qty: F64
    taker_is_buy: Bools

    def __len__(self) -> int:
        return len(self.local_ns)


class BboStream(msgspec.Struct, frozen=True, kw_only=True, eq=False):
    """Best bid/offer updates of one instrument (Binance ``bookTicker``).

    Attributes:
        instrument_key: ``venue:symbol``.
        local_ns: int64 (n,), recorder receive time, ns.
        exch_ms: int64 (n,), event time ``E``, ms; -1 when absent (spot bookTicker has none).
        update_id: int64 (n,), order book update id ``u``.
        bid_price, bid_qty, ask_price, ask_qty: float64 (n,).
    """

    instrument_key: str
    local_ns: I64
    exch_ms: I64
    update_id: I64
    bid_price: F64
    bid_qty: F64
    ask_price: F64
    ask_qty: F64

    def __len__(self) -> int:
        return len(self.local_ns)


class InstrumentData(msgspec.Struct, frozen=True, kw_only=True, eq=False):
    """Everything recorded for one instrument: the book stream, and trades/BBO when recorded."""

    instrument: Instrument
    book: BookStream
    trades: TradeStream | None = None
    bbo: BboStream | None = None


class Recording(msgspec.Struct, frozen=True, kw_only=True, eq=False):
    """A recorded session: per instrument key (``venue:symbol``) its streams, one local clock."""

    name: str
    streams: dict[str, InstrumentData]

    def overlap_ns(self, keys: Iterable[str] | None = None) -> tuple[int, int]:
        """Time range covered by the book streams of ``keys`` (all streams when None).

        Returns:
            ``(start, end)`` in ns: start = latest first book ``local_ns``, end = earliest last
            one. ``start > end`` means the streams do not overlap.

        Raises:
            ValueError: an unknown key, or no key.
        """
        chosen = list(self.streams) if keys is None else list(keys)
        if not chosen:
            raise ValueError("overlap_ns: no instrument keys given")
        for key in chosen:
            if key not in self.streams:
                raise ValueError(f"overlap_ns: unknown instrument key {key!r}; have {sorted(self.streams)}")
        start = max(int(self.streams[k].book.local_ns[0]) for k in chosen)
        end = min(int(self.streams[k].book.local_ns[-1]) for k in chosen)
        return start, end


# ---------------------------------------------------------------------------------------------
# Vectorised CSV reading
# ---------------------------------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path}: not a valid gzip file: {exc}") from exc
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    if data and not data.endswith(b"\n"):
        data += b"\n"
    return data


def _parse_unsigned(mat: npt.NDArray[np.uint8], lens: I64) -> tuple[npt.NDArray[np.uint64], I64] | None:
    """Fast exact parse of plain unsigned decimals (``123``, ``61837.63000000``) from a char matrix.

    Returns ``(mantissa, frac_digits)`` (the value is ``mantissa / 10**frac_digits``), or None when
    some field is not plain digits with at most one ``.``, has no digit, or has more than 19
    digits: the caller then uses numpy's general (slower) string conversion.
    """
    n, width = mat.shape
    by_pos = np.ascontiguousarray(mat.T)
    acc = np.zeros(n, dtype=np.uint64)
    n_digits = np.zeros(n, dtype=np.int64)
    frac = np.zeros(n, dtype=np.int64)
    seen_dot = np.zeros(n, dtype=bool)
    ten = np.uint64(10)
    for j in range(width):
        c = by_pos[j]
        inside = lens > j
        digit = c - np.uint8(48)
        is_digit = (digit < 10) & inside
        is_dot = (c == 46) & inside
        if (inside & ~is_digit & ~is_dot).any() or (is_dot & seen_dot).any():
            return None
        acc = np.where(is_digit, acc * ten + digit, acc)
        n_digits += is_digit
        frac += is_digit & seen_dot
        seen_dot |= is_dot
    if (n_digits == 0).any() or (n_digits > 19).any():
        return None
    return acc, frac


class _Table:
    """Field boundaries of a headered, unquoted CSV file; fields are converted on demand.

    Rows are 0-based; the file line of row ``r`` is ``r + 2`` (line 1 is the header).
    """

    __slots__ = ("buf", "columns", "ends", "n_rows", "path", "starts", "words")

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = path
        self.columns = tuple(columns)
        data = _read_bytes(path)
        header_end = data.find(b"\n")
        header = data[:header_end].decode("utf-8", "replace") if header_end >= 0 else ""
        if header.split(",") != list(self.columns):
            raise ValueError(f"{path}: line 1: header {header!r} != expected {','.join(self.columns)!r}")
        data += bytes(8)  # padding so that every field can be read as whole 8-byte words
        buf = np.frombuffer(data, dtype=np.uint8)
        body_start = header_end + 1
        body = buf[body_start : len(buf) - 8]
        n_cols = len(self.columns)
        seps = np.flatnonzero((body == ord(",")) | (body == ord("\n")))
        is_newline = body[seps] == ord("\n")
        seps += body_start
        n_rows = int(np.count_nonzero(is_newline))
        expected = np.zeros(n_cols, dtype=bool)
        expected[-1] = True
        if len(seps) != n_rows * n_cols or not (is_newline.reshape(n_rows, n_cols) == expected).all():
            self._raise_field_count(buf, body_start, seps, is_newline)
        grid = seps.reshape(n_rows, n_cols)
        self.starts = np.empty((n_rows, n_cols), dtype=np.int64)
        self.starts[:, 0] = body_start
        self.starts[1:, 0] = grid[:-1, -1] + 1
        self.starts[:, 1:] = grid[:, :-1] + 1
        self.ends = grid
        self.buf = buf
        # Unaligned little-endian 8-byte word starting at every byte offset (a strided view).
        self.words = np.ndarray(shape=(len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))
        self.n_rows = n_rows

    def _raise_field_count(
        self, buf: npt.NDArray[np.uint8], body_start: int, seps: I64, is_newline: Bools
    ) -> None:
        newlines = seps[is_newline]
        commas = seps[~is_newline]
        n_rows = len(newlines)
        per_line = np.bincount(np.searchsorted(newlines, commas), minlength=n_rows)[:n_rows]
        bad = np.flatnonzero(per_line != len(self.columns) - 1)
        row = int(bad[0]) if len(bad) else n_rows
        line_start = body_start if row == 0 else int(newlines[row - 1]) + 1
        empty = row < n_rows and int(newlines[row]) == line_start
        what = "an empty line" if empty else f"{int(per_line[row]) + 1 if row < n_rows else '?'} fields"
        raise ValueError(
            f"{self.path}: line {row + 2}: expected {len(self.columns)} fields ({','.join(self.columns)}), got {what}"
        )

    # -- errors ---------------------------------------------------------------------------------

    def text(self, row: int, col: str) -> str:
        c = self.columns.index(col)
        s, e = int(self.starts[row, c]), int(self.ends[row, c])
        return bytes(self.buf[s:e]).decode("utf-8", "replace")

    def error(self, row: int, col: str, problem: str) -> ValueError:
        return ValueError(f"{self.path}: line {row + 2}: field {col!r} = {self.text(row, col)!r}: {problem}")

    # -- field access -----------------------------------------------------------------------------

    def _rows(self, rows: I64 | None) -> I64:
        return np.arange(self.n_rows, dtype=np.int64) if rows is None else rows

    def _word_matrix(self, starts: I64, lens: I64) -> npt.NDArray[np.uint64]:
        """Bytes ``[start, start + len)`` of each row as zero-padded 8-byte words (n, n_words)."""
        n_words = max((int(lens.max()) + 7) // 8 if len(lens) else 0, 1)
        out = np.empty((len(starts), n_words), dtype=np.uint64)
        for k in range(n_words):
            # fancy indexing reads the strided view in place (np.take would copy it first)
            out[:, k] = self.words[starts + 8 * k] & _BYTE_MASKS[np.clip(lens - 8 * k, 0, 8)]
        return out

    def chars(self, col: str, rows: I64 | None = None) -> tuple[npt.NDArray[np.uint8], I64]:
        """Field bytes as a zero-padded uint8 matrix (n, width) and the field lengths."""
        c = self.columns.index(col)
        starts = self.starts[:, c] if rows is None else self.starts[rows, c]
        lens = (self.ends[:, c] if rows is None else self.ends[rows, c]) - starts
        words = self._word_matrix(starts, lens)
        return words.view(np.uint8).reshape(len(starts), -1), lens

    def strings(self, col: str, rows: I64 | None = None) -> tuple[npt.NDArray[np.bytes_], I64]:
        """Fields as a fixed-width bytes array (numpy ``S<width>``) and their lengths."""
        mat, lens = self.chars(col, rows)
        return mat.view(f"S{mat.shape[1]}").ravel(), lens

    def ints(self, col: str, rows: I64 | None = None, *, allow_empty: bool = False) -> I64:
        """Integer column; empty fields become -1 when ``allow_empty``, else are an error."""
        mat, lens = self.chars(col, rows)
        row_ids = self._rows(rows)
        empty = lens == 0
        if empty.any() and not allow_empty:
            raise self.error(int(row_ids[np.argmax(empty)]), col, "empty, expected an integer")
        fast = None if empty.any() or (mat == ord(".")).any() else _parse_unsigned(mat, lens)
        if fast is not None and (fast[0] <= np.uint64(2**63 - 1)).all():
            return fast[0].astype(np.int64)
        values = mat.view(f"S{mat.shape[1]}").ravel()
        if empty.any():
            values = np.where(empty, np.bytes_(b"-1"), values)
        try:
            return values.astype(np.int64)
        except (ValueError, OverflowError):
            for i, raw in enumerate(values.tolist()):
                try:
                    int(raw)
                    if not -(2**63) <= int(raw) < 2**63:
                        raise OverflowError
                except (ValueError, OverflowError):
                    raise self.error(int(row_ids[i]), col, "not an int64 integer") from None
            raise

    def floats(self, col: str, rows: I64 | None = None, *, positive: bool) -> F64:
        """Finite float column, > 0 when ``positive`` else >= 0."""
        mat, lens = self.chars(col, rows)
        row_ids = self._rows(rows)
        values = mat.view(f"S{mat.shape[1]}").ravel()
        fast = _parse_unsigned(mat, lens)
        try:
            if fast is not None and (fast[0] < np.uint64(2**53)).all() and (fast[1] <= 22).all():
                # exact: mantissa and 10**frac are exact doubles, one correctly rounded division
                out = fast[0].astype(np.float64) / _POW10[fast[1]]
            else:
                out = values.astype(np.float64)
        except ValueError:
            for i, raw in enumerate(values.tolist()):
                try:
                    float(raw)
                except ValueError:
                    raise self.error(int(row_ids[i]), col, "not a number") from None
            raise
        bad = ~np.isfinite(out) | ((out <= 0.0) if positive else (out < 0.0))
        if bad.any():
            need = "finite and > 0" if positive else "finite and >= 0"
            raise self.error(int(row_ids[np.argmax(bad)]), col, f"must be {need}")
        return out

    def choice(self, col: str, true_text: bytes, false_text: bytes) -> Bools:
        """Two-valued text column as bool (True for ``true_text``)."""
        values, _ = self.strings(col)
        is_true: Bools = np.asarray(values == true_text, dtype=bool)
        bad = ~is_true & (values != false_text)
        if bad.any():
            raise self.error(
                int(np.argmax(bad)), col, f"must be {true_text.decode()!r} or {false_text.decode()!r}"
            )
        return is_true

    def decimals(self, col: str) -> int:
        """Most significant decimals in the column's numbers (trailing zeros ignored)."""
        mat, _ = self.chars(col)
        width = mat.shape[1]
        is_dot = mat == ord(".")
        has_dot = is_dot.any(axis=1)
        dot_pos = is_dot.argmax(axis=1)
        nonzero = (mat >= ord("1")) & (mat <= ord("9"))
        last_nonzero = width - 1 - nonzero[:, ::-1].argmax(axis=1)
        dec = np.where(has_dot & nonzero.any(axis=1) & (last_nonzero > dot_pos), last_nonzero - dot_pos, 0)
        return int(dec.max()) if len(dec) else 0

    def same_within(self, first_col: str, last_col: str, first_row: I64) -> None:
        """Check that columns ``first_col..last_col`` of every row equal those of ``first_row``.

        ``first_row[r]`` is the first row of row ``r``'s message; the columns are compared as one
        span of text (8 bytes at a time).
        """
        c0, c1 = self.columns.index(first_col), self.columns.index(last_col)
        starts = self.starts[:, c0]
        lens = self.ends[:, c1] - starts
        same = lens == lens[first_row]
        mine = self._word_matrix(starts, lens)
        other = mine[first_row]
        same &= (mine == other).all(axis=1)
        if not same.all():
            row = int(np.argmax(~same))
            for c in range(c0, c1 + 1):
                col = self.columns[c]
                if self.text(row, col) != self.text(int(first_row[row]), col):
                    raise self.error(row, col, f"differs from line {int(first_row[row]) + 2} of the same message")
            raise AssertionError("unreachable: spans differ but no field does")


# ---------------------------------------------------------------------------------------------
# Book
# ---------------------------------------------------------------------------------------------


def _make_deltas(
    levels: F64,
    offsets: I64,
    bid_end: I64,
    is_snapshot: Bools,
    first_id: I64,
    last_id: I64,
    prev_id: I64,
) -> list[L2Delta]:
    deltas: list[L2Delta] = []
    append = deltas.append
    for o0, b1, o1, snap, first, last, prev in zip(
        offsets[:-1].tolist(),
        bid_end.tolist(),
        offsets[1:].tolist(),
        is_snapshot.tolist(),
        first_id.tolist(),
        last_id.tolist(),
        prev_id.tolist(),
        strict=True,
    ):
        append(
            L2Delta(
                levels[o0:b1],
                levels[b1:o1],
                last if snap else first,
                last,
                None if prev < 0 else prev,
                snap,
            )
        )
    return deltas


def _book_stream(
    instrument: Instrument,
    local_ns: I64,
    exch_ms: I64,
    is_snapshot: Bools,
    first_id: I64,
    last_id: I64,
    prev_id: I64,
    levels: F64,
    offsets: I64,
    bid_end: I64,
) -> BookStream:
    return BookStream(
        instrument=instrument,
        local_ns=local_ns,
        exch_ms=exch_ms,
        is_snapshot=is_snapshot,
        first_update_id=first_id,
        last_update_id=last_id,
        prev_update_id=prev_id,
        levels=levels,
        offsets=offsets,
        bid_end=bid_end,
        deltas=_make_deltas(levels, offsets, bid_end, is_snapshot, first_id, last_id, prev_id),
        n_level_rows=len(levels),
    )


def _instrument_for(path: Path, table: _Table | None) -> Instrument:
    parsed = parse_file_name(path.name)
    if parsed is None:
        raise ValueError(
            f"{path}: cannot infer the instrument: name is not <venue>_<SYMBOL>_<stamp>_<kind>.csv[.gz]; "
            "pass instrument="
        )
    venue, symbol, _, _ = parsed
    known = known_instrument(venue, symbol)
    if known is not None:
        return known
    if table is None:
        raise ValueError(f"{path}: unknown instrument {venue}:{symbol}")
    return infer_instrument(venue, symbol, price_decimals=table.decimals("price"), qty_decimals=table.decimals("qty"))


def load_book(path: str | Path, instrument: Instrument | None = None) -> BookStream:
    """Load a validated L2 stream from ``*_book.csv[.gz]`` (format in the module docstring).

    Args:
        path: the book file.
        instrument: the instrument; None = :func:`known_instrument` for the venue/symbol in the
            file name, else :func:`infer_instrument` from the file's decimal strings.

    Returns:
        The stream; rows of one message are grouped (bids before asks, order kept per side).

    Raises:
        ValueError: malformed file (naming file, line and field): wrong header or field count, a
            non-integer id/time, non-finite or negative price/qty (price must be > 0), side not
            ``bid``/``ask``, ``is_snapshot`` not 0/1, message fields (times, ids, flags) that
            differ between rows of one message, ``msg_seq`` not 1, 2, 3, ... by message, or a
            depth row without ``first_update_id``.
    """
    path = Path(path)
    table = _Table(path, BOOK_COLUMNS)
    if table.n_rows == 0:
        raise ValueError(f"{path}: no rows")
    if instrument is None:
        instrument = _instrument_for(path, table)

    # Message boundaries: where the msg_seq text changes.
    seq_text, _ = table.strings("msg_seq")
    new_msg = np.empty(table.n_rows, dtype=bool)
    new_msg[0] = True
    np.not_equal(seq_text[1:], seq_text[:-1], out=new_msg[1:])
    starts = np.flatnonzero(new_msg)
    msg_of_row = np.cumsum(new_msg) - 1
    first_row = starts[msg_of_row]
    n_msgs = len(starts)

    seq = table.ints("msg_seq", starts)
    bad_seq = np.flatnonzero(seq != np.arange(1, n_msgs + 1))
    if len(bad_seq):
        m = int(bad_seq[0])
        raise table.error(int(starts[m]), "msg_seq", f"expected {m + 1} (messages numbered 1, 2, 3, ... in order)")
    table.same_within("local_ns", "is_snapshot", first_row)
    table.same_within("first_update_id", "prev_update_id", first_row)

    local_ns = table.ints("local_ns", starts)
    exch_ms = table.ints("exch_ms", starts, allow_empty=True)
    snap_val = table.ints("is_snapshot", starts)
    if ((snap_val != 0) & (snap_val != 1)).any():
        raise table.error(int(starts[np.argmax((snap_val != 0) & (snap_val != 1))]), "is_snapshot", "must be 0 or 1")
    is_snapshot = snap_val == 1
    first_id = table.ints("first_update_id", starts, allow_empty=True)
    missing_first = ~is_snapshot & (first_id < 0)
    if missing_first.any():
        raise table.error(int(starts[np.argmax(missing_first)]), "first_update_id", "required for a depth event")
    first_id = np.where(is_snapshot, -1, first_id)
    last_id = table.ints("last_update_id", starts)
    prev_id = table.ints("prev_update_id", starts, allow_empty=True)
    bad_ids = ~is_snapshot & (first_id > last_id)
    if bad_ids.any():
        raise table.error(int(starts[np.argmax(bad_ids)]), "first_update_id", "greater than last_update_id")

    is_ask = table.choice("side", b"ask", b"bid")
    price = table.floats("price", positive=True)
    qty = table.floats("qty", positive=False)

    key = msg_of_row * 2 + is_ask
    levels = np.empty((table.n_rows, 2), dtype=np.float64)
    if (np.diff(key) < 0).any():  # asks before bids somewhere: group stably
        order = np.argsort(key, kind="stable")
        levels[:, 0] = price[order]
        levels[:, 1] = qty[order]
    else:
        levels[:, 0] = price
        levels[:, 1] = qty
    offsets = np.append(starts, table.n_rows).astype(np.int64)
    n_bids = np.bincount(msg_of_row, weights=~is_ask, minlength=n_msgs).astype(np.int64)
    bid_end = offsets[:-1] + n_bids
    return _book_stream(instrument, local_ns, exch_ms, is_snapshot, first_id, last_id, prev_id, levels, offsets, bid_end)


def load_trades(path: str | Path, instrument_key: str) -> TradeStream:
    """Load ``*_trades.csv[.gz]``: ``local_ns,exch_ms,trade_ms,trade_id,price,qty,taker_side``.

    Raises:
        ValueError: malformed file, naming file, line and field (non-integer time/id, price not
            finite > 0, qty not finite >= 0, taker_side not ``buy``/``sell``).
    """
    table = _Table(Path(path), TRADE_COLUMNS)
    return TradeStream(
        instrument_key=instrument_key,
        local_ns=table.ints("local_ns"),
        exch_ms=table.ints("exch_ms", allow_empty=True),
        trade_ms=table.ints("trade_ms"),
        trade_id=table.ints("trade_id"),
        price=table.floats("price", positive=True),
        qty=table.floats("qty", positive=False),
        taker_is_buy=table.choice("taker_side", b"buy", b"sell"),
    )


def load_bbo(path: str | Path, instrument_key: str) -> BboStream:
    """Load ``*_bbo.csv[.gz]``: ``local_ns,exch_ms,update_id,bid_price,bid_qty,ask_price,ask_qty``.

    Raises:
        ValueError: malformed file, naming file, line and field (prices must be finite > 0,
            quantities finite >= 0).
    """
    table = _Table(Path(path), BBO_COLUMNS)
    return BboStream(
        instrument_key=instrument_key,
        local_ns=table.ints("local_ns"),
        exch_ms=table.ints("exch_ms", allow_empty=True),
        update_id=table.ints("update_id"),
        bid_price=table.floats("bid_price", positive=True),
        bid_qty=table.floats("bid_qty", positive=False),
        ask_price=table.floats("ask_price", positive=True),
        ask_qty=table.floats("ask_qty", positive=False),
    )


# ---------------------------------------------------------------------------------------------
# Raw JSONL (combined-stream envelope + REST snapshot)
# ---------------------------------------------------------------------------------------------


class _Line(msgspec.Struct):
    local_ns: int
    msg: msgspec.Raw


class _Message(msgspec.Struct):
    """Either a combined-stream event (``stream``, ``data``) or a REST depth snapshot."""

    stream: str | None = None
    data: msgspec.Raw = msgspec.Raw(b"null")
    lastUpdateId: int | None = None  # noqa: N815 - Binance field name
    E: int | None = None
    bids: list[tuple[float, float]] = []
    asks: list[tuple[float, float]] = []


class _Depth(msgspec.Struct):
    s: str
    E: int
    U: int
    u: int
    b: list[tuple[float, float]]
    a: list[tuple[float, float]]
    pu: int | None = None


class _Trade(msgspec.Struct):
    s: str
    E: int
    T: int
    t: int
    p: float
    q: float
    m: bool


class _BookTicker(msgspec.Struct):
    s: str
    u: int
    b: float
    B: float
    a: float
    A: float
    E: int | None = None


# strict=False: Binance sends prices and quantities as decimal strings; msgspec parses them.
_LINE_DECODER = msgspec.json.Decoder(_Line)
_MESSAGE_DECODER = msgspec.json.Decoder(_Message, strict=False)
_DEPTH_DECODER = msgspec.json.Decoder(_Depth, strict=False)
_TRADE_DECODER = msgspec.json.Decoder(_Trade, strict=False)
_BOOK_TICKER_DECODER = msgspec.json.Decoder(_BookTicker, strict=False)


def _decode_lines(path: Path, data: bytes) -> list[_Line]:
    try:
        return _LINE_DECODER.decode_lines(data)
    except msgspec.DecodeError:
        for number, line in enumerate(data.splitlines(), 1):
            try:
                _LINE_DECODER.decode(line)
            except msgspec.DecodeError as exc:
                raise ValueError(f"{path}: line {number}: {exc}") from None
        raise


def _column_i64(rows: Sequence[tuple[object, ...]], i: int) -> I64:
    return np.array([r[i] for r in rows], dtype=np.int64)


def _column_f64(rows: Sequence[tuple[object, ...]], i: int) -> F64:
    return np.array([r[i] for r in rows], dtype=np.float64)


def _is_stale(u: int, last_update_id: int, futures: bool) -> bool:
    """Binance: drop buffered events with ``u <= lastUpdateId`` (spot), ``u < lastUpdateId`` (futures)."""
    return u < last_update_id if futures else u <= last_update_id


def load_raw(path: str | Path, instrument: Instrument | None = None) -> tuple[BookStream, TradeStream, BboStream]:
    """Parse ``*_raw.jsonl[.gz]`` and rebuild the validated book stream, trades and BBO.

    Each line is ``{"local_ns": int, "msg": <Binance message>}``; ``msg`` is a combined-stream
    event ``{"stream": "<sym>@depth@100ms" | "<sym>@trade" | "<sym>@bookTicker", "data": {...}}``
    or the REST depth snapshot ``{"lastUpdateId", "bids", "asks"[, "E", "T"]}``. Other streams are
    ignored.

    The book stream is rebuilt as ``book.csv`` was (PROVENANCE §1, after Binance "How to manage a
    local order book correctly"): depth events before the snapshot are buffered; at the snapshot
    they are replayed with the snapshot's ``local_ns``, dropping stale ones (spot ``u <=
    lastUpdateId``; futures, i.e. events carrying ``pu``, ``u < lastUpdateId``). The stale rule
    also drops events that arrive after the snapshot but before the first applicable one. Events
    after that are kept as they come (gaps are for the book to detect). ``exch_ms`` is ``E``.

    Args:
        path: the raw file.
        instrument: the instrument; None = :func:`known_instrument` for the venue/symbol in the
            file name (there is no inference here: prices are parsed straight to floats).

    Returns:
        ``(book, trades, bbo)``.

    Raises:
        ValueError: malformed line or field (naming file and line), a message for another
            symbol, no REST snapshot in the file, or ``instrument`` None for an unknown one.
    """
    path = Path(path)
    if instrument is None:
        instrument = _instrument_for(path, None)
    key = instrument.key
    lines = _decode_lines(path, _read_bytes(path))

    # book accumulators (per message) and flat levels
    m_local: list[int] = []
    m_exch: list[int] = []
    m_snap: list[bool] = []
    m_first: list[int] = []
    m_last: list[int] = []
    m_prev: list[int] = []
    m_nbid: list[int] = []
    m_nlev: list[int] = []
    flat: list[tuple[float, float]] = []

    def emit(
        local: int,
        exch: int,
        snap: bool,
        first: int,
        last: int,
        prev: int,
        bids: list[tuple[float, float]],
        asks: list[tuple[float, float]],
    ) -> None:
        m_local.append(local)
        m_exch.append(exch)
        m_snap.append(snap)
        m_first.append(first)
        m_last.append(last)
        m_prev.append(prev)
        m_nbid.append(len(bids))
        m_nlev.append(len(bids) + len(asks))
        flat.extend(bids)
        flat.extend(asks)

    t_rows: list[tuple[int, int, int, int, float, float, bool]] = []
    b_rows: list[tuple[int, int, int, float, float, float, float]] = []
    buffered: list[tuple[int, _Depth]] = []
    snapshot_id: int | None = None  # set at the snapshot, cleared once an event is applied

    for number, line in enumerate(lines, 1):
        try:
            msg = _MESSAGE_DECODER.decode(line.msg)
            if msg.lastUpdateId is not None:
                snapshot_id = msg.lastUpdateId
                emit(line.local_ns, -1 if msg.E is None else msg.E, True, -1, snapshot_id, -1, msg.bids, msg.asks)
                pending, buffered = buffered, []
                for _, ev in pending:
                    if snapshot_id is not None and _is_stale(ev.u, snapshot_id, ev.pu is not None):
                        continue
                    snapshot_id = None
                    emit(line.local_ns, ev.E, False, ev.U, ev.u, -1 if ev.pu is None else ev.pu, ev.b, ev.a)
                continue
            stream = msg.stream or ""
            if "@depth" in stream:
                ev = _DEPTH_DECODER.decode(msg.data)
                if ev.s != instrument.symbol:
                    raise ValueError(f"symbol {ev.s!r} != {instrument.symbol!r}")
                if not m_local:
                    buffered.append((line.local_ns, ev))
                    continue
                if snapshot_id is not None:
                    if _is_stale(ev.u, snapshot_id, ev.pu is not None):
                        continue
                    snapshot_id = None
                emit(line.local_ns, ev.E, False, ev.U, ev.u, -1 if ev.pu is None else ev.pu, ev.b, ev.a)
            elif stream.endswith("@trade"):
                tr = _TRADE_DECODER.decode(msg.data)
                if tr.s != instrument.symbol:
                    raise ValueError(f"symbol {tr.s!r} != {instrument.symbol!r}")
                t_rows.append((line.local_ns, tr.E, tr.T, tr.t, tr.p, tr.q, not tr.m))
            elif stream.endswith("@bookTicker"):
                bt = _BOOK_TICKER_DECODER.decode(msg.data)
                if bt.s != instrument.symbol:
                    raise ValueError(f"symbol {bt.s!r} != {instrument.symbol!r}")
                b_rows.append((line.local_ns, -1 if bt.E is None else bt.E, bt.u, bt.b, bt.B, bt.a, bt.A))
        except (msgspec.DecodeError, ValueError) as exc:
            raise ValueError(f"{path}: line {number}: {exc}") from None

    if not m_local:
        raise ValueError(f"{path}: no REST depth snapshot (lastUpdateId) in the file")
    levels = np.array(flat, dtype=np.float64).reshape(-1, 2)
    bad = ~np.isfinite(levels).all(axis=1) | (levels[:, 0] <= 0) | (levels[:, 1] < 0)
    if bad.any():
        raise ValueError(f"{path}: level {levels[np.argmax(bad)].tolist()}: price must be finite > 0, qty finite >= 0")
    offsets = np.zeros(len(m_local) + 1, dtype=np.int64)
    np.cumsum(np.array(m_nlev, dtype=np.int64), out=offsets[1:])
    bid_end = offsets[:-1] + np.array(m_nbid, dtype=np.int64)
    book = _book_stream(
        instrument,
        np.array(m_local, dtype=np.int64),
        np.array(m_exch, dtype=np.int64),
        np.array(m_snap, dtype=bool),
        np.array(m_first, dtype=np.int64),
        np.array(m_last, dtype=np.int64),
        np.array(m_prev, dtype=np.int64),
        levels,
        offsets,
        bid_end,
    )

    trades = TradeStream(
        instrument_key=key,
        local_ns=_column_i64(t_rows, 0),
        exch_ms=_column_i64(t_rows, 1),
        trade_ms=_column_i64(t_rows, 2),
        trade_id=_column_i64(t_rows, 3),
        price=_column_f64(t_rows, 4),
        qty=_column_f64(t_rows, 5),
        taker_is_buy=np.array([r[6] for r in t_rows], dtype=bool),
    )
    bbo = BboStream(
        instrument_key=key,
        local_ns=_column_i64(b_rows, 0),
        exch_ms=_column_i64(b_rows, 1),
        update_id=_column_i64(b_rows, 2),
        bid_price=_column_f64(b_rows, 3),
        bid_qty=_column_f64(b_rows, 4),
        ask_price=_column_f64(b_rows, 5),
        ask_qty=_column_f64(b_rows, 6),
    )
    return book, trades, bbo


# ---------------------------------------------------------------------------------------------
# Recording folder
# ---------------------------------------------------------------------------------------------


def load_recording(folder: str | Path) -> Recording:
    """Load every instrument recorded in ``folder``.

    Files are matched by name (:func:`parse_file_name`). Per instrument the book comes from
    ``*_book.csv[.gz]``, or from ``*_raw.jsonl[.gz]`` (:func:`load_raw`) when there is no book
    CSV; trades and BBO from their CSVs when present (else from the raw file, else None).
    Instruments: ``instruments.json`` in the folder if it lists (venue, symbol), else
    :func:`known_instrument`, else :func:`infer_instrument` from the book file.

    Returns:
        ``Recording(name=<folder name>, streams={"venue:symbol": InstrumentData})``.

    Raises:
        ValueError: no recording files, two stamps for one instrument, an instrument without a
            book or raw file, or any malformed file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a directory")
    overrides: dict[tuple[str, str], Instrument] = {}
    if (folder / "instruments.json").exists():
        overrides = load_instruments_json(folder / "instruments.json")

    groups: dict[tuple[str, str], dict[str, Path]] = {}
    stamps: dict[tuple[str, str], str] = {}
    for file in sorted(folder.iterdir()):
        parsed = parse_file_name(file.name)
        if parsed is None or not file.is_file():
            continue
        venue, symbol, stamp, kind = parsed
        ident = (venue, symbol)
        if stamps.setdefault(ident, stamp) != stamp:
            raise ValueError(f"{folder}: {venue}:{symbol} has two recordings ({stamps[ident]}, {stamp}); use one folder each")
        groups.setdefault(ident, {})[kind] = file
    if not groups:
        raise ValueError(f"{folder}: no <venue>_<SYMBOL>_<stamp>_{{book,trades,bbo,raw}} files")

    streams: dict[str, InstrumentData] = {}
    for (venue, symbol), files in groups.items():
        instrument = overrides.get((venue, symbol)) or known_instrument(venue, symbol)
        key = f"{venue}:{symbol}"
        trades: TradeStream | None = None
        bbo: BboStream | None = None
        if "book" in files:
            book = load_book(files["book"], instrument)
            instrument = book.instrument
        elif "raw" in files:
            if instrument is None:
                raise ValueError(f"{files['raw']}: unknown instrument {key}: add it to instruments.json")
            book, trades, bbo = load_raw(files["raw"], instrument)
        else:
            raise ValueError(f"{folder}: {key} has no book or raw file")
        if "trades" in files:
            trades = load_trades(files["trades"], key)
        if "bbo" in files:
            bbo = load_bbo(files["bbo"], key)
        streams[key] = InstrumentData(instrument=instrument, book=book, trades=trades, bbo=bbo)
    return Recording(name=folder.name, streams=streams)
