"""Loopback simulator: one aiohttp server speaking MEXC spot v3 and Gate.io spot/USDT-futures v4.

On one port (``shared/venues/PROTOCOLS.md`` for every wire fact):

* MEXC REST under ``/api/v3/...`` (+ ``/api/v1/contract/detail`` for ccxt's ``load_markets``),
  MEXC WebSocket at ``/ws`` (public, protobuf pushes) and ``/ws?listenKey=`` (user data);
* Gate REST under ``/api/v4/...`` (spot, ``futures/usdt``, and the routes ccxt's
  ``load_markets`` touches), Gate spot WebSocket at ``/ws/v4/``, USDT futures at ``/v4/ws/usdt``;
* an admin API under ``/_sim/`` (status, books, faults, rate limits) for tests and people.

State: one :class:`~cexarb.venues.sim.market.LiveMarket` (recorded books replayed in wall-clock
time, looping) and, per API key, one :class:`~cexarb.venues.sim.venue.SimVenue` per venue
(``mexc-spot``, ``gateio-spot``, ``gateio-futures``) -- the same matching core and fill model as
in-process replays (spot buys paying their fee in the base received, :data:`BUY_FEE_IN_BASE`),
on an :class:`EagerClock` (wall time; work due now runs at once, so a REST
reply already reflects what the order did on arrival). Signatures and timestamps are checked
with the venues' own rules (:func:`cexarb.venues.mexc.signing.verify`,
:func:`cexarb.venues.gateio.signing.verify_rest`); errors use each venue's format; rate limits
answer 429 the venue's way (:class:`RateLimiter`); faults come from
:class:`~cexarb.venues.sim.faults.Faults` (``http_error_after_execute`` among them: an order
placement executed, then answered 5xx). Unknown routes under ``/api/v3/`` and ``/api/v4/`` answer 404 in the
venue's error shape (:func:`not_found_response`). Every account has its own uid (duplicates are
refused; accounts without one get the first free uid).

Python use (tests)::

    async with SimServer(data_dir, accounts=[AccountSpec("key", "secret")]) as server:
        server.port, server.faults.drop_depth("gateio-spot"), ...
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import msgspec
from aiohttp import WSMsgType, web

from cexarb.clock import LiveClock, TimerHandle
from cexarb.model import Fill, Instrument, Order, OrderType, Side, TimeInForce
from cexarb.venues.base import OrderRequest, PrivateEvent
from cexarb.venues.secrets import Secret
from cexarb.venues.sim.faults import VENUES, Fault, FaultKind, Faults, malformed_frame
from cexarb.venues.sim.market import (
    GATE_FUTURES,
    GATE_SPOT,
    MEXC_SPOT,
    LiveMarket,
    TradeTick,
    VenueBook,
)
from cexarb.venues.sim.matching import iter_levels
from cexarb.venues.sim.venue import SimLatency, SimVenue

__all__ = [
    "BUY_FEE_IN_BASE",
    "DEFAULT_BALANCES",
    "AccountSpec",
    "EagerClock",
    "OrderRecord",
    "RateLimiter",
    "SimAccount",
    "SimServer",
    "WsConn",
    "load_accounts_toml",
]

log = logging.getLogger(__name__)

#: starting balances of every account, per venue (``--help`` states them)
DEFAULT_BALANCES: dict[str, dict[str, float]] = {
    "mexc-spot": {"USDT": 100_000.0, "BTC": 1.0},
    "gateio-spot": {"USDT": 100_000.0, "BTC": 1.0},
    "gateio-futures": {"USDT": 100_000.0},
}
FUTURES_LEVERAGE = 10.0
#: the starting funding rate, a fraction per 8 h interval (0.0001 = 1 bp): ``SimServer.funding_rate``
#: starts here; :meth:`SimServer.set_funding_rate` changes it at run time
FUNDING_RATE = 0.0001
FUNDING_INTERVAL_S = 8 * 3600

#: venues whose spot buys pay their fee in the base received (``SimVenue(buy_fee_in_base=True)``):
#: MEXC (``myTrades`` ``commissionAsset`` / private deal ``feeCurrency`` = the base, PROTOCOLS.md
#: §1.2, §1.5) and Gate (order / trade ``fee_currency`` = the base, §2.2; e.g. ``"fee":
#: "0.00000022", "fee_currency": "BTC"`` on a BTC_USDT buy, and the live ccxt captures in
#: ``shared/data/api/gateio/ccxt_fixtures``). A buy fill of ``qty`` at rate ``r`` credits
#: ``qty * (1 - r)`` base, debits exactly ``qty * price`` quote and carries ``Fill.fee_base``;
#: sells pay in quote. Open buys still lock ``notional * (1 + max fee rate)`` quote.
BUY_FEE_IN_BASE: frozenset[str] = frozenset({"mexc-spot", "gateio-spot"})

INSTRUMENTS: dict[str, Instrument] = {
    "mexc-spot": MEXC_SPOT,
    "gateio-spot": GATE_SPOT,
    "gateio-futures": GATE_FUTURES,
}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def fmt_num(value: float, decimals: int = 8) -> str:
    """A float as a plain decimal string (no exponent), trailing zeros stripped."""
    if not math.isfinite(value):
        return "0"
    text = f"{value:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def not_found_response(path: str) -> web.Response | None:
    """The venue's own 404 for an unknown REST ``path``, by prefix (None: not a venue REST path).

    * ``/api/v3/...`` (MEXC): ``{"code": 404, "msg": "Not Found"}``. MEXC's error-code list does
      not document an unknown-path answer; this follows its HTTP-status-as-code entries
      (``429 Too Many Requests``, ``500 Internal error``; PROTOCOLS.md §1.7).
    * ``/api/v4/...`` (Gate): ``{"label": "NOT_FOUND", "message": "Not Found"}``. Gate lists the
      label ``NOT_FOUND`` as "request path does not exist" (its maintainers' label list,
      gateio/gateapi-python#18); the message text of a live reply is not in our recordings.
    """
    if path.startswith("/api/v3/"):
        body: dict[str, Any] = {"code": 404, "msg": "Not Found"}
    elif path.startswith("/api/v4/"):
        body = {"label": "NOT_FOUND", "message": "Not Found"}
    else:
        return None
    return web.Response(status=404, body=msgspec.json.encode(body), content_type="application/json")


@web.middleware
async def _venue_not_found(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    """Unknown routes under a venue's REST prefix answer 404 in that venue's error shape
    (:func:`not_found_response`); aiohttp's plain-text 404 elsewhere."""
    if isinstance(request.match_info.http_exception, web.HTTPNotFound):
        response = not_found_response(request.path)
        if response is not None:
            return response
    result: web.StreamResponse = await handler(request)
    return result


def _duplicate_uid(uid: int, first_key: str, second_key: str) -> ValueError:
    return ValueError(
        f"duplicate uid {uid}: accounts with api_key {first_key!r} and api_key {second_key!r} "
        "(uids must be unique; leave uid out to have a free one assigned)"
    )


class EagerClock(LiveClock):
    """Wall clock whose callbacks due now run immediately (inside ``schedule``), later ones on
    the running loop. With zero latencies the simulated venue matches an order, and reports its
    events, before ``SimVenue.submit`` returns."""

    def schedule(self, ts_ns: int, callback: Callable[[], None]) -> TimerHandle:
        if ts_ns <= time.time_ns():
            handle = TimerHandle(ts_ns, callback)
            callback()
            return handle
        return super().schedule(ts_ns, callback)


class RateLimiter:
    """Fixed-window request counters per (scope, endpoint class).

    ``hit`` returns ``(allowed, remaining, reset_s)``; ``reset_s`` is the epoch second the window
    ends. ``enabled = False`` lets everything through (benchmarks). ``clock`` (epoch seconds,
    default ``time.time``) places requests in windows; a test that must stay inside one window
    pins it.
    """

    def __init__(self) -> None:
        self.enabled = True
        self.clock: Callable[[], float] = time.time
        self._windows: dict[tuple[str, ...], tuple[int, int]] = {}

    def hit(self, key: tuple[str, ...], limit: int, window_s: float, weight: int = 1) -> tuple[bool, int, float]:
        now = self.clock()
        slot = int(now // window_s)
        start, used = self._windows.get(key, (slot, 0))
        if start != slot:
            used = 0
        reset = (slot + 1) * window_s
        if not self.enabled:
            return True, limit, reset
        if used + weight > limit:
            self._windows[key] = (slot, used)
            return False, 0, reset
        used += weight
        self._windows[key] = (slot, used)
        return True, limit - used, reset

    def reset(self) -> None:
        self._windows.clear()


class AccountSpec(msgspec.Struct, kw_only=True):
    """One account: API key and secret, Gate user id, starting balances per venue
    (missing venues/assets take :data:`DEFAULT_BALANCES`)."""

    api_key: str
    api_secret: str
    uid: int = 0
    balances: dict[str, dict[str, float]] = {}


def load_accounts_toml(path: str | Path) -> list[AccountSpec]:
    """Accounts from a TOML file::

        [[account]]
        api_key = "k2"
        api_secret = "s2"
        uid = 10002                      # optional (Gate user id)
        [account.balances.gateio-spot]   # optional, per venue: mexc-spot, gateio-spot, gateio-futures
        USDT = 5000.0
        BTC = 0.1

    Raises:
        ValueError: unreadable file, bad TOML (position only), or a bad account entry.
    """
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"accounts file {p}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError:
        raise ValueError(f"accounts file {p}: invalid TOML") from None
    entries = doc.get("account")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"accounts file {p}: expected one or more [[account]] tables")
    out = []
    for n, entry in enumerate(entries, 1):
        try:
            spec = msgspec.convert(entry, AccountSpec)
        except msgspec.ValidationError as exc:
            # the message names the field, never a value
            raise ValueError(f"accounts file {p}: account #{n}: {exc}") from None
        for venue in spec.balances:
            if venue not in VENUES:
                raise ValueError(f"accounts file {p}: account #{n}: unknown venue {venue!r} (use {VENUES})")
        out.append(spec)
    return out


class OrderRecord:
    """Server-side record of one order as the venue's wire sees it (the SimVenue holds its state).

    ``key`` is the SimVenue client order id (the venue order id as a string); ``text`` the
    client's own id (Gate ``text``, MEXC ``newClientOrderId``), "" when none was sent.
    """

    __slots__ = (
        "amount_str",
        "create_ms",
        "finish_ms",
        "instrument",
        "is_close",
        "key",
        "lots",
        "order_id",
        "price_str",
        "quote_amount",
        "reduce_only",
        "side",
        "text",
        "tif",
        "type",
        "update_ms",
        "venue",
        "wire_type",
    )

    def __init__(
        self,
        *,
        order_id: int,
        text: str,
        venue: str,
        instrument: Instrument,
        side: Side,
        type: OrderType,
        tif: str,
        wire_type: str,
        price_str: str,
        amount_str: str,
        lots: int,
        quote_amount: float | None = None,
        reduce_only: bool = False,
        is_close: bool = False,
    ) -> None:
        self.order_id = order_id
        self.key = str(order_id)
        self.text = text
        self.venue = venue
        self.instrument = instrument
        self.side = side
        self.type = type
        self.tif = tif
        self.wire_type = wire_type
        self.price_str = price_str
        self.amount_str = amount_str
        self.quote_amount = quote_amount
        self.lots = lots
        self.reduce_only = reduce_only
        self.is_close = is_close
        self.create_ms = now_ms()
        self.update_ms = self.create_ms
        self.finish_ms = 0


class SimAccount:
    """One API key's venues, orders and private listeners."""

    def __init__(self, spec: AccountSpec, uid: int, venues: dict[str, SimVenue]) -> None:
        self.api_key = Secret(spec.api_key)
        self.api_secret = Secret(spec.api_secret)
        self.uid = uid
        self.venues = venues
        self.orders: dict[str, dict[int, OrderRecord]] = {v: {} for v in venues}
        self.by_text: dict[str, dict[str, int]] = {v: {} for v in venues}
        self.listeners: dict[str, list[Callable[[SimAccount, list[PrivateEvent]], None]]] = {v: [] for v in venues}
        self.listen_keys: dict[str, float] = {}  # MEXC listen key -> expiry (epoch s)
        self.position_update_id = 0
        self._pending: dict[str, list[PrivateEvent]] = {v: [] for v in venues}
        for name, venue in venues.items():
            venue.subscribe(self._handler_for(name))

    def _handler_for(self, venue: str) -> Callable[[PrivateEvent], None]:
        def handler(event: PrivateEvent) -> None:
            self._on_event(venue, event)

        return handler

    def __repr__(self) -> str:
        return f"SimAccount(uid={self.uid}, key_fingerprint={self.api_key.fingerprint()})"

    def _on_event(self, venue: str, event: PrivateEvent) -> None:
        record = self.orders[venue].get(int(event.client_order_id)) if event.client_order_id.isdigit() else None
        if record is not None:
            record.update_ms = event.ts_ns // 1_000_000
        if venue == "gateio-futures" and isinstance(event, Fill):
            self.position_update_id += 1
        for listener in list(self.listeners[venue]):
            try:
                listener(self, [event])
            except Exception:
                log.exception("private listener failed venue=%s", venue)

    def record(self, venue: str, order_id: int | str) -> OrderRecord | None:
        try:
            return self.orders[venue].get(int(order_id))
        except (TypeError, ValueError):
            return None

    def record_by_text(self, venue: str, text: str) -> OrderRecord | None:
        oid = self.by_text[venue].get(text)
        return self.orders[venue].get(oid) if oid is not None else None

    def order_state(self, record: OrderRecord) -> Order:
        """The SimVenue's live Order of ``record`` (read only)."""
        venue = self.venues[record.venue]
        so = venue._orders[record.key]  # the venue's truth; read only
        return so.order


_CLOSE = "\x00close"  # queue sentinel: close after the frames before it


class WsConn:
    """One server-side WebSocket: an outgoing queue drained by one writer task.

    Depth frames pass through the venue's depth faults (a malformed frame before, drop / reorder);
    every frame waits out a stall. A client whose queue exceeds ``max_queue`` frames is
    disconnected (it cannot keep up).
    """

    max_queue = 20_000

    def __init__(
        self,
        server: SimServer,
        ws: web.WebSocketResponse,
        venue: str,
        *,
        private: bool = False,
    ) -> None:
        self.server = server
        self.ws = ws
        self.venue = venue
        self.private = private
        self.queue: asyncio.Queue[tuple[bytes | str, bool]] = asyncio.Queue()
        self.closed = False
        self.cleanups: list[Callable[[], None]] = []
        self.state: dict[str, Any] = {}
        self._held: tuple[bytes | str, bool] | None = None
        self._writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write_loop(), name=f"ws-writer-{self.venue}")

    def send(self, frame: bytes | str, *, binary: bool = False, depth: bool = False) -> None:
        """Queue a frame (``depth`` frames are subject to depth faults)."""
        if self.closed:
            return
        if depth:
            faults = self.server.faults
            bad = faults.take(self.venue, FaultKind.MALFORMED_FRAME)
            if bad is not None:
                # written just before this push (which follows as usual): see faults.malformed_frame
                self.queue.put_nowait((malformed_frame(bad, frame), binary))
            if faults.take(self.venue, FaultKind.DROP_DEPTH) is not None:
                return
            if self._held is None and faults.take(self.venue, FaultKind.REORDER_DEPTH) is not None:
                self._held = (frame, binary)
                return
        if self.queue.qsize() >= self.max_queue:
            log.warning(
                "ws client too slow venue=%s queue=%d: closing",
                self.venue,
                self.queue.qsize(),
            )
            self.close_soon(abort=True)
            return
        self.queue.put_nowait((frame, binary))
        if depth and self._held is not None:
            held, self._held = self._held, None
            self.queue.put_nowait(held)

    async def _write_loop(self) -> None:
        ws = self.ws
        faults = self.server.faults
        try:
            while True:
                frame, binary = await self.queue.get()
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the cancel that
                # finish() sends when the send completes at the same moment (CPython gh-86296),
                # leaving this writer waiting on the queue forever
                if frame is _CLOSE:
                    self.closed = True
                    self._run_cleanups()
                    async with asyncio.timeout(10):
                        await ws.close(code=1008, message=b"closed by server")
                    return
                stall = faults.stall_remaining_s(self.venue)
                while stall > 0:
                    await asyncio.sleep(min(stall, 0.05))
                    stall = faults.stall_remaining_s(self.venue)
                if ws.closed:
                    return
                async with asyncio.timeout(10):
                    if binary:
                        await ws.send_bytes(frame if isinstance(frame, bytes) else frame.encode())
                    else:
                        await ws.send_str(frame if isinstance(frame, str) else frame.decode())
        except (TimeoutError, ConnectionError, RuntimeError) as exc:
            log.info("ws writer stopped venue=%s: %s", self.venue, type(exc).__name__)
            self.close_soon(abort=True)

    def close_after_queued(self) -> None:
        """Close the socket (code 1008) once the frames already queued are written."""
        if not self.closed:
            self.queue.put_nowait((_CLOSE, False))

    def close_soon(self, *, abort: bool = False, code: int = 1000, message: bytes = b"") -> None:
        """Close the socket from any context (``abort`` drops the TCP connection)."""
        if self.closed:
            return
        self.closed = True
        self._run_cleanups()
        if abort:
            transport = self.ws._req.transport if self.ws._req is not None else None
            if transport is not None:
                transport.abort()
            return
        asyncio.get_running_loop().create_task(self.ws.close(code=code, message=message))

    def _run_cleanups(self) -> None:
        cleanups, self.cleanups = self.cleanups, []
        for fn in cleanups:
            try:
                fn()
            except Exception:
                log.exception("ws cleanup failed venue=%s", self.venue)

    async def finish(self) -> None:
        self.closed = True
        self._run_cleanups()
        if self._writer is not None:
            self._writer.cancel()
            try:
                await self._writer
            except asyncio.CancelledError:
                pass


class DepthBuffer:
    """Collects venue depth changes for one subscription and flushes them every ``interval_s``
    as one push: ``flush(first_id, last_id, bids, asks)`` with the merged (last-wins) levels."""

    def __init__(
        self,
        interval_s: float,
        flush: Callable[[int, int, dict[int, float], dict[int, float]], None],
    ):
        self.interval_s = interval_s
        self._flush_cb = flush
        self.first_id: int | None = None
        self.last_id = 0
        self.bids: dict[int, float] = {}
        self.asks: dict[int, float] = {}
        self._handle: asyncio.TimerHandle | None = None

    def add(
        self,
        first_id: int,
        last_id: int,
        bids: list[tuple[int, float]],
        asks: list[tuple[int, float]],
    ) -> None:
        if self.first_id is None:
            self.first_id = first_id
        self.last_id = last_id
        self.bids.update(bids)
        self.asks.update(asks)
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(self.interval_s, self.flush)

    def flush(self) -> None:
        self._handle = None
        if self.first_id is None:
            return
        first, last, bids, asks = self.first_id, self.last_id, self.bids, self.asks
        self.first_id, self.bids, self.asks = None, {}, {}
        self._flush_cb(first, last, bids, asks)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class SimServer:
    """The running simulator: market, accounts, faults, rate limits and the aiohttp app.

    Args:
        data_dir: the recording folder (``binance_btc_20240808``).
        accounts: at least one account.
        speed: replay speed of the recordings (1.0 = real time).
        rate_limits: enforce the venues' rate limits (429s); switch at run time with
            ``server.rate_limiter.enabled``.
        host, port: where :meth:`start` listens (port 0 = an ephemeral port).
    """

    def __init__(
        self,
        data_dir: str | Path,
        accounts: list[AccountSpec],
        *,
        speed: float = 1.0,
        rate_limits: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if not accounts:
            raise ValueError("SimServer needs at least one account")
        self.host = host
        self.port = port
        #: the recording folder the books replay from (resolved)
        self.data_dir = Path(data_dir).resolve()
        self.market = LiveMarket(data_dir, speed=speed)
        self.clock = EagerClock()
        self.faults = Faults()
        self.faults.set_socket_closer(self._close_sockets)
        self.rate_limiter = RateLimiter()
        self.rate_limiter.enabled = rate_limits
        self.accounts: list[SimAccount] = []
        self.accounts_by_key: dict[str, SimAccount] = {}
        self.sockets: dict[str, set[WsConn]] = {v: set() for v in VENUES}
        self._order_ids = itertools.count(700_000_000_001)
        self._seen_keys: set[str] = set()
        # the uids the accounts ask for, reserved before any is assigned: an account without one
        # never takes a uid a later account names (two accounts sharing a uid would share its
        # rate-limit windows and Gate ``user`` id)
        self._reserved_uids: dict[int, str] = {}
        for spec in accounts:
            if spec.uid > 0:
                holder = self._reserved_uids.setdefault(spec.uid, spec.api_key)
                if holder != spec.api_key:
                    raise _duplicate_uid(spec.uid, holder, spec.api_key)
        for n, spec in enumerate(accounts):
            self.add_account(spec, default_uid=10_001 + n)
        self.market_trades: dict[str, list[TradeTick]] = {k: [] for k in self.market.books}
        self.funding_next_s = self._next_funding_s(time.time())
        #: Gate USDT futures funding rate, a fraction per funding interval (8 h; 0.0001 = 1 bp),
        #: as the contract's ``funding_rate`` states it (PROTOCOLS.md §3.2): what the next
        #: settlement charges; change it with :meth:`set_funding_rate` (pushes tickers)
        self.funding_rate: float = FUNDING_RATE
        self.funding_history: list[tuple[int, float]] = []
        for book in self.market.books.values():
            book.add_listener(self._on_book_change)
        self.market.add_trade_listener(self._on_trade)
        self.app = self._build_app()
        self._runner: web.AppRunner | None = None
        self._funding_task: asyncio.Task[None] | None = None

    def recording_sources(self) -> dict[str, tuple[str, Path | None]]:
        """Per served book (``mexc-spot:BTCUSDT``): the recorded instrument it replays
        (``binance-spot:BTCUSDT``) and that instrument's book file in :attr:`data_dir` (the one
        :func:`~cexarb.venues.sim.market.load_source` loads; None if it is gone since)."""
        out: dict[str, tuple[str, Path | None]] = {}
        for key, book in self.market.books.items():
            source = book.spec.source
            venue, _, symbol = source.partition(":")
            files = sorted(self.data_dir.glob(f"{venue}_{symbol}_*_book.csv*"))
            out[key] = (source, files[0] if files else None)
        return out

    # ---- accounts and orders --------------------------------------------------------------------

    def add_account(self, spec: AccountSpec, *, default_uid: int | None = None) -> SimAccount:
        if spec.api_key in self._seen_keys:
            raise ValueError("duplicate API key in accounts (keys must be unique)")
        uid = self._uid_for(spec, default_uid)
        self._seen_keys.add(spec.api_key)
        venues: dict[str, SimVenue] = {}
        for name, inst in INSTRUMENTS.items():
            balances = dict(DEFAULT_BALANCES[name])
            balances.update(spec.balances.get(name, {}))
            venues[name] = SimVenue(
                name,
                self.clock,  # type: ignore[arg-type]  # EagerClock schedules like SimClock does
                {inst.key: inst},
                {inst.key: self.market.books[inst.key].book},
                latency=SimLatency(order_entry_ns=0, ack_ns=0, market_data_ns=0),
                balances=balances,
                leverage=FUTURES_LEVERAGE if inst.is_derivative else 1.0,
                buy_fee_in_base=name in BUY_FEE_IN_BASE,
            )
        account = SimAccount(spec, uid, venues)
        self.accounts.append(account)
        self.accounts_by_key[spec.api_key] = account
        return account

    def _uid_for(self, spec: AccountSpec, default_uid: int | None) -> int:
        """``spec``'s uid, or (none given) the first free one from ``default_uid`` up.

        Raises:
            ValueError: a negative uid, or one another account already has (the message names
                the uid and both API keys, never a secret).
        """
        if spec.uid < 0:
            raise ValueError(f"uid must be >= 1 (or 0/absent: assigned), got {spec.uid} for api_key {spec.api_key!r}")
        taken = {a.uid: a.api_key.reveal() for a in self.accounts}
        if spec.uid > 0:
            holder = taken.get(spec.uid)
            if holder is not None:
                raise _duplicate_uid(spec.uid, holder, spec.api_key)
            return spec.uid
        reserved = {uid for uid, key in self._reserved_uids.items() if key != spec.api_key}
        uid = default_uid if default_uid is not None else 10_001 + len(self.accounts)
        while uid in taken or uid in reserved:
            uid += 1
        return uid

    def account_for_key(self, key: str | None) -> SimAccount | None:
        return self.accounts_by_key.get(key or "")

    def next_order_id(self) -> int:
        return next(self._order_ids)

    def place(self, account: SimAccount, record: OrderRecord, request: OrderRequest) -> Order:
        """Send ``request`` to the account's SimVenue (applying a partial-fill fault) and store
        ``record``. Returns the venue's Order (already matched on arrival)."""
        venue = account.venues[record.venue]
        account.orders[record.venue][record.order_id] = record
        if record.text:
            account.by_text[record.venue][record.text] = record.order_id
        fault = None
        if request.time_in_force is not TimeInForce.POST_ONLY:
            fault = self.faults.take(record.venue, FaultKind.PARTIAL_FILL)
        if fault is None:
            venue.submit(request)
            return account.order_state(record)
        self._limit_liquidity(venue, request, fault.fraction)
        rests = False
        try:
            venue.submit(request)  # zero latency on the EagerClock: matched before it returns
            rests = not account.order_state(record).status.is_terminal  # a GTC rest, crossing
        finally:
            # an IOC / market order's cap was its alone: a later order finds everything the book
            # shows that our orders have not taken. A GTC rest keeps what it was denied (else the
            # next depth message would fill it from those same lots as a maker)
            venue._consumed[request.instrument.key].release_holds(keep=rests)
        return account.order_state(record)

    def http_error_after_execute(self, venue: str, status: int = 503, count: int = 1) -> Fault:
        """Arm an ``http_error_after_execute`` fault (:mod:`cexarb.venues.sim.faults`): the next
        ``count`` accepted order placements of ``venue`` execute, then answer ``status`` (5xx)
        in the venue's error format (MEXC ``{"code", "msg"}``, Gate ``{"label": "SERVER_ERROR",
        "message"}``). A placement the venue refuses leaves it armed.

        Raises:
            ValueError: unknown ``venue``, ``status`` not a 5xx, or ``count`` < 1.
        """
        return self.faults.http_error_after_execute(venue, status, count)

    def take_error_after_execute(self, venue: str) -> int | None:
        """Placement handlers, once the venue accepted (executed) an order: the HTTP status to
        answer instead of the order when an ``http_error_after_execute`` fault is armed for
        ``venue`` (consumed once), else None."""
        fault = self.faults.take(venue, FaultKind.HTTP_ERROR_AFTER_EXECUTE)
        return None if fault is None else fault.status

    def _limit_liquidity(self, venue: SimVenue, request: OrderRequest, fraction: float) -> None:
        """Partial-fill fault: withhold all but ``fraction`` of the liquidity ``request`` would
        take (:meth:`ConsumedLiquidity.hold`), so the matching core fills that order less.

        Nothing is recorded as consumed here: the hold lasts until :meth:`place` releases it
        once the order has matched, and never past the current book version. For an IOC or
        market order only what it really took stays ours (:class:`ConsumedLiquidity`) and the
        liquidity withheld from it is there for the next order; for a GTC order whose rest
        still crosses the book the withheld liquidity is recorded as taken, so the rest does
        not fill from it at the next depth message (only from what the recording adds)."""
        inst = request.instrument
        book = self.market.books[inst.key].book
        consumed = venue._consumed[inst.key]  # the venue's consumed-liquidity record (holds only)
        allowed = math.floor(request.qty_lots * fraction)
        taken_side = "ask" if request.side is Side.BUY else "bid"
        walk = list(
            iter_levels(
                book,
                request.side,
                request.price_ticks,
                inst.tick_size,
                inst.lot_size,
                consumed,
            )
        )
        remaining_allowed = allowed
        for ticks, _price, available in walk:
            keep = min(available, remaining_allowed)
            remaining_allowed -= keep
            if available - keep > 0:
                consumed.hold(book.version, taken_side, ticks, available - keep)

    # ---- market hooks -------------------------------------------------------------------------------

    def _on_book_change(self, book: VenueBook, change: Any) -> None:
        ts_ns = change.ts_ms * 1_000_000
        for account in self.accounts:
            venue = account.venues[book.instrument.venue]
            if venue.book_view(book.key):  # orders rest or consumption records exist: each message
                venue.on_book(book.key, ts_ns)

    def _on_trade(self, book: VenueBook, trade: TradeTick) -> None:
        recent = self.market_trades[book.key]
        recent.append(trade)
        if len(recent) > 2000:
            del recent[:1000]
        ts_ns = trade.ts_ms * 1_000_000
        for account in self.accounts:
            venue = account.venues[book.instrument.venue]
            if venue.resting_view(book.key):
                venue.on_trade(book.key, trade.price, trade.qty, trade.taker_is_buy, ts_ns)

    # ---- funding -------------------------------------------------------------------------------------

    @staticmethod
    def _next_funding_s(now_s: float) -> int:
        return (int(now_s) // FUNDING_INTERVAL_S + 1) * FUNDING_INTERVAL_S

    def set_funding_rate(self, rate: float) -> None:
        """Set the Gate USDT futures funding rate (:attr:`funding_rate`; a fraction per 8 h
        funding interval, 0.0001 = 1 bp): the next :meth:`settle_funding` charges it, the
        contract / ticker REST answers state it (``funding_rate``, ``funding_rate_indicative``,
        PROTOCOLS.md §3.2), and every ``futures.tickers`` subscriber gets a push with it at once
        (§3.4) when it changed.

        Raises:
            ValueError: ``rate`` is not a finite number (the message names the value).
        """
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate):
            raise ValueError(f"funding_rate must be a finite number (fraction per interval), got {rate!r}")
        old, self.funding_rate = self.funding_rate, float(rate)
        if self.funding_rate != old:
            self.gate.push_tickers()

    def settle_funding(self) -> None:
        """Apply one funding payment (rate :attr:`funding_rate`, a fraction; mark = futures mid,
        USDT) to every account, and record it for ``GET /futures/usdt/funding_rate``."""
        book = self.market.books[GATE_FUTURES.key]
        mark = book.mid()
        if mark is None:
            return
        rate = self.funding_rate
        for account in self.accounts:
            account.venues["gateio-futures"].apply_funding(GATE_FUTURES.key, rate, mark, time.time_ns())
        self.funding_history.append((self.funding_next_s, rate))
        self.funding_next_s = self._next_funding_s(time.time())

    async def _funding_loop(self) -> None:
        while True:
            await asyncio.sleep(max(0.5, min(self.funding_next_s - time.time(), 60.0)))
            if time.time() >= self.funding_next_s:
                self.settle_funding()

    # ---- sockets ---------------------------------------------------------------------------------------

    def register(self, conn: WsConn) -> None:
        self.sockets[conn.venue].add(conn)

    def unregister(self, conn: WsConn) -> None:
        self.sockets[conn.venue].discard(conn)

    def _close_sockets(self, venue: str, abort: bool) -> int:
        conns = [c for c in self.sockets[venue] if not c.closed]
        for conn in conns:
            conn.close_soon(abort=abort, code=1012, message=b"simulated close")
        return len(conns)

    async def serve_ws(
        self,
        request: web.Request,
        venue: str,
        on_open: Callable[[WsConn], None] | None,
        on_message: Callable[[WsConn, WSMsgType, bytes | str], None],
        *,
        private: bool = False,
        heartbeat: float | None = 20.0,
    ) -> web.WebSocketResponse:
        """Run one WebSocket: ``on_open`` once, then ``on_message`` for each text/binary frame."""
        ws = web.WebSocketResponse(heartbeat=heartbeat, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = WsConn(self, ws, venue, private=private)
        conn.start()
        self.register(conn)
        try:
            if on_open is not None:
                on_open(conn)
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    try:
                        on_message(conn, msg.type, msg.data)
                    except Exception:
                        log.exception("ws handler failed venue=%s", venue)
                elif msg.type == WSMsgType.ERROR:
                    break
                if conn.closed:
                    break
        finally:
            self.unregister(conn)
            await conn.finish()
            if not ws.closed:
                await ws.close()
        return ws

    # ---- app ------------------------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        from cexarb.venues.sim import server_gateio, server_mexc

        app = web.Application(client_max_size=1 << 20, middlewares=[_venue_not_found])
        self.mexc = server_mexc.setup_routes(app, self)
        self.gate = server_gateio.setup_routes(app, self)
        app.router.add_get("/_sim/status", self._admin_status)
        app.router.add_get("/_sim/book", self._admin_book)
        app.router.add_post("/_sim/faults", self._admin_arm)
        app.router.add_delete("/_sim/faults", self._admin_clear)
        app.router.add_post("/_sim/rate_limits", self._admin_rate_limits)
        return app

    async def _admin_status(self, request: web.Request) -> web.Response:
        books = {}
        for key, book in self.market.books.items():
            bid, ask = book.best()
            books[key] = {
                "update_id": book.update_id,
                "best_bid": book.price_str(bid[0]) if bid else None,
                "best_ask": book.price_str(ask[0]) if ask else None,
            }
        body = {
            "books": books,
            "accounts": len(self.accounts),
            "sockets": {v: len(s) for v, s in self.sockets.items()},
            "faults_armed": [msgspec.to_builtins(f) for f in self.faults.armed],
            "rate_limits": self.rate_limiter.enabled,
        }
        return web.json_response(body)

    async def _admin_book(self, request: web.Request) -> web.Response:
        venue = request.query.get("venue", "")
        inst = INSTRUMENTS.get(venue)
        if inst is None:
            return web.json_response({"error": f"venue must be one of {VENUES}"}, status=400)
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            return web.json_response({"error": "limit must be an integer"}, status=400)
        book = self.market.books[inst.key]
        bids, asks = book.top(max(1, limit))
        return web.json_response(
            {
                "update_id": book.update_id,
                "bids": [[book.price_str(t), book.qty_str(q)] for t, q in bids],
                "asks": [[book.price_str(t), book.qty_str(q)] for t, q in asks],
            }
        )

    async def _admin_arm(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            fault = self.faults.arm_from_json(data)
        except (ValueError, msgspec.ValidationError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(msgspec.to_builtins(fault))

    async def _admin_clear(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return web.json_response({"cleared": True})

    async def _admin_rate_limits(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            enabled = bool(data["enabled"])
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": 'expected {"enabled": true|false}'}, status=400)
        self.rate_limiter.enabled = enabled
        self.rate_limiter.reset()
        return web.json_response({"enabled": enabled})

    # ---- lifecycle -------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_base_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> None:
        """Start the market replay and listen on ``host:port`` (``port`` is set to the bound one)."""
        self.market.start()
        self._funding_task = asyncio.get_running_loop().create_task(self._funding_loop(), name="sim-funding")
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        sockets = getattr(site._server, "sockets", None)  # the asyncio server, for the bound port
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        for conns in self.sockets.values():
            for conn in list(conns):
                conn.close_soon(abort=True)
        if self._funding_task is not None:
            self._funding_task.cancel()
            try:
                await self._funding_task
            except asyncio.CancelledError:
                pass
            self._funding_task = None
        if self._runner is not None:
            await asyncio.wait_for(self._runner.cleanup(), 10)
            self._runner = None
        await self.market.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
