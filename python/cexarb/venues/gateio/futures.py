"""Gate.io USDT-margined futures v4 connector (``/api/v4/futures/usdt``, WS ``/v4/ws/usdt``).

Same machinery as the spot connector (:class:`~cexarb.venues.gateio.spot.GateConnectorBase`: one
aiohttp session, book manager with Gate's ``U``/``u`` rule on ``futures.order_book_update`` and
``with_id`` snapshots, keep-alive order entry, signed private channels, fill de-duplication and
REST backfill after a reconnect). Futures specifics:

* instruments from ``/futures/usdt/contracts``: tick ``order_price_round``, lot 1 contract,
  ``contract_size`` = ``quanto_multiplier``; quantities (orders, fills, positions, book levels)
  are **contracts**;
* one depth setting, ``depth`` (levels): the ``futures.order_book_update`` subscription level
  and the REST snapshot ``limit`` are both this value (PROTOCOLS.md §3.5: a snapshot deeper than
  the subscription holds levels no push ever updates);
* the funding terms of each contract (:meth:`GateUsdtFutures.funding`, a
  :class:`~cexarb.model.FundingInfo`): rate and interval from ``/futures/usdt/contracts``, the rate
  kept current by ``futures.tickers`` pushes (``funding_rate``; the push carries no next funding
  time, PROTOCOLS.md §3.4 and the docs example in ``shared/data/api/gateio/docs_examples``), and
  the contracts re-read over REST after each stated ``funding_next_apply`` has passed (new time,
  new rate) and whenever no push has refreshed a rate for ``funding_max_age_s`` (e.g. the venue
  refused the ticker subscription). Tickers travel on a WebSocket of their own, so the depth
  connection's hot path is untouched. Market handlers get a :class:`FundingEvent` (a rate
  observation, not a settlement) at each REST re-read and when a push changes a rate;
* positions from REST (``/futures/usdt/positions``) and kept current from ``futures.positions``;
* private channels carry the user id first: ``ApiCredentials.uid``, else ``/account/detail``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

import msgspec

from cexarb.model import (
    Balance,
    Fill,
    FundingEvent,
    FundingInfo,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Side,
    TimeInForce,
)
from cexarb.venues.base import OrderRequest
from cexarb.venues.book_manager import BookSnapshot
from cexarb.venues.gateio import codec
from cexarb.venues.gateio.spot import _API, GateConnectorBase
from cexarb.venues.ratelimit import GATE_FUTURES_LIMITS
from cexarb.venues.secrets import ApiCredentials
from cexarb.venues.ws import WsClient, WsConnected, WsEvent, WsFrame, gate_heartbeat

__all__ = ["DEFAULT_DEPTH", "DEPTH_LEVELS", "GateUsdtFutures"]

log = logging.getLogger(__name__)

_P = f"{_API}/futures/usdt"
_TIF = {"gtc": TimeInForce.GTC, "ioc": TimeInForce.IOC, "poc": TimeInForce.POST_ONLY}
_NS = 1_000_000_000

#: Levels Gate accepts for ``futures.order_book_update`` per update interval (PROTOCOLS.md §3.4:
#: level "100"/"50"/"20", the 20 ms interval only "20"); the REST snapshot ``limit`` takes each.
DEPTH_LEVELS: dict[str, tuple[int, ...]] = {"100ms": (20, 50, 100), "20ms": (20,)}
#: Default book depth, levels per side (subscription level = REST snapshot limit).
DEFAULT_DEPTH = 100
_TICKERS = "futures.tickers"
_FUNDING_RETRY_MAX_S = 30.0  # longest wait between REST re-reads while a funding time stays past


class _TickerPush(msgspec.Struct, frozen=True, kw_only=True):
    """One item of a ``futures.tickers`` push (fields we read; strings on the wire, PROTOCOLS.md
    §3.4 and the Gate docs example): ``funding_rate`` a fraction per funding interval."""

    contract: str
    funding_rate: str | float = ""
    mark_price: str | float = ""


_TICKERS_RESULT = msgspec.json.Decoder(list[_TickerPush])


def _ticker_number(value: str | float, field: str, contract: str) -> float | None:
    """A ticker number (``""``: absent -> None); GateCodecError naming the field and value."""
    if value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise codec.GateCodecError(f"Gate {_TICKERS} {contract}: {field} is not a finite number: {str(value)[:32]!r}")
    return number


class GateUsdtFutures(GateConnectorBase):
    """Gate.io USDT perpetual futures connector.

    Args:
        credentials: API key/secret (and ``uid``; fetched when absent). None: market data only.
        rest_url: ``https://api.gateio.ws`` (or the simulator's ``base_url``).
        ws_url: ``wss://fx-ws.gateio.ws/v4/ws/usdt`` (or ``ws_base_url + "/v4/ws/usdt"``).
        symbols: contracts to load and stream (None: every trading contract).
        depth: book depth in levels per side, both the ``futures.order_book_update`` subscription
            level and the REST snapshot ``limit`` (PROTOCOLS.md §3.5); one of
            :data:`DEPTH_LEVELS` for ``depth_interval`` (20, 50 or 100 at "100ms"; only 20 at
            "20ms"). Default :data:`DEFAULT_DEPTH` (100).
        funding_refresh_delay_s: re-read the contracts (REST) this many seconds after a stated
            funding time; while the venue still states the past time, again after
            ``funding_retry_s`` seconds, doubling up to 30 s.
        funding_max_age_s: re-read the contracts when no push has refreshed a contract's rate for
            this many seconds (None: only after funding times).
        Others as :class:`GateConnectorBase` (``depth_interval`` "100ms" or "20ms", ...).

    Raises:
        ValueError: a depth Gate does not offer for the interval, an unknown ``depth_interval``,
            or a non-positive / non-finite funding setting, naming the setting and its value.
    """

    name = "gateio-futures"
    market = "futures"
    limits = GATE_FUTURES_LIMITS
    depth_channel = "futures.order_book_update"

    def __init__(
        self,
        credentials: ApiCredentials | None = None,
        *,
        depth: int = DEFAULT_DEPTH,
        funding_refresh_delay_s: float = 1.0,
        funding_retry_s: float = 1.0,
        funding_max_age_s: float | None = 60.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("ws_url", "wss://fx-ws.gateio.ws/v4/ws/usdt")
        interval = kwargs.get("depth_interval", "100ms")
        levels = DEPTH_LEVELS.get(interval)
        if levels is None:
            raise ValueError(
                f"GateUsdtFutures: depth_interval must be one of {sorted(DEPTH_LEVELS)} "
                f"(PROTOCOLS.md §3.4), got {interval!r}"
            )
        if type(depth) is not int or depth not in levels:
            raise ValueError(
                f"GateUsdtFutures: depth must be one of {list(levels)} levels for "
                f"{self.depth_channel} at {interval} (PROTOCOLS.md §3.4), got {depth!r}"
            )
        for field, value in (
            ("funding_refresh_delay_s", funding_refresh_delay_s),
            ("funding_retry_s", funding_retry_s),
            ("funding_max_age_s", funding_max_age_s),
        ):
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"GateUsdtFutures: {field} must be finite and > 0, got {value!r}")
        super().__init__(credentials, **kwargs)
        self.depth = depth
        self.funding_refresh_delay_s = float(funding_refresh_delay_s)
        self.funding_retry_s = float(funding_retry_s)
        self.funding_max_age_s = None if funding_max_age_s is None else float(funding_max_age_s)
        self._uid: str | None = credentials.uid if credentials is not None else None
        self._funding: dict[str, FundingInfo] = {}  # instrument key -> current terms
        self._ws_funding: WsClient | None = None
        #: ``futures.tickers`` pushes that updated a rate; REST re-reads of the contracts
        self.funding_pushes = 0
        self.funding_refreshes = 0
        #: the ``futures.tickers`` subscription on the current connection: "pending" (no reply
        #: yet), "subscribed" (acknowledged) or "refused" (the venue answered with an error)
        self.tickers_status = "pending"
        self._positions: dict[str, Position] = {}

    # ---- public ------------------------------------------------------------------------------------

    def _depth_payload(self, symbol: str) -> list[str]:
        return [symbol, self.depth_interval, str(self.depth)]

    async def start(self) -> None:
        """The shared Gate start (books, trades, book tickers, private channels), then the
        ``futures.tickers`` WebSocket and the funding keeper."""
        await super().start()
        self._ws_funding = WsClient(
            f"{self.name} funding",
            self.ws_url,
            self._http.session,
            handler=self._on_funding_event,
            heartbeat=gate_heartbeat(self.market),
            backoff=self._backoff,
            stall_timeout_s=self._stall_timeout_s,
            headers=self.rest_headers,
            seed=self._seed,
        )
        for inst in self._instruments.values():
            await self._ws_funding.subscribe(
                f"tickers:{inst.symbol}", self._public_sub(_TICKERS, [inst.symbol])
            )
        self._ws_funding.start()
        self._spawn(self._funding_keeper())

    async def aclose_ws_and_tasks(self) -> None:
        ws, self._ws_funding = self._ws_funding, None
        if ws is not None:
            await ws.stop(timeout_s=5.0)
        await super().aclose_ws_and_tasks()

    async def _load_instruments(self) -> None:
        resp = await self._http.get(f"{_P}/contracts")
        self._ingest_contracts(codec.decode_contracts(resp.body), initial=True)

    def _ingest_contracts(
        self, contracts: list[codec.GateContract], *, initial: bool, read_ns: int | None = None
    ) -> None:
        """Instruments (``initial``) and funding terms from ``/futures/usdt/contracts`` items.

        ``read_ns``: wall-clock ns the request was sent; a rate a push delivered after that is
        newer than the response's and is kept (the response's next funding time is taken).
        """
        now = time.time_ns()
        read_ns = now if read_ns is None else read_ns
        for c in contracts:
            if self._symbols_wanted is not None and c.name not in self._symbols_wanted:
                continue
            if c.in_delisting or c.status not in ("trading", ""):
                continue
            if initial:
                inst = c.to_instrument()
                self._instruments[inst.key] = inst
                self._by_symbol[inst.symbol] = inst
            if c.name not in self._by_symbol:
                continue
            key = self._by_symbol[c.name].key
            before = self._funding.get(key)
            rate, updated_ns = c.funding_rate, now
            if before is not None and before.updated_ns > read_ns:
                rate, updated_ns = before.rate, before.updated_ns
            mark, mark_ns = (c.mark_price, read_ns) if c.mark_price > 0 else (0.0, 0)
            if before is not None and before.mark_updated_ns > mark_ns:
                mark, mark_ns = before.mark_price, before.mark_updated_ns  # a newer pushed mark
            try:
                self._funding[key] = FundingInfo(
                    instrument_key=key,
                    rate=rate,
                    next_funding_ns=c.funding_next_apply_ns,
                    interval_ns=c.funding_interval * _NS,
                    updated_ns=updated_ns,
                    mark_price=mark,
                    mark_updated_ns=mark_ns,
                )
            except ValueError as exc:
                self.decode_errors += 1
                log.error("venue=%s funding of %s not taken: %s", self.name, c.name, exc)
                continue
            if not initial:
                self._emit_market(c.to_funding(now))

    async def refresh_funding(self) -> dict[str, FundingInfo]:
        """Re-read the contracts' funding terms (REST ``/futures/usdt/contracts``, PROTOCOLS.md
        §3.2); delivers a FundingEvent per contract. The funding keeper calls this after each
        funding time; call it to force a re-read. Returns the terms by instrument key."""
        read_ns = time.time_ns()
        resp = await self._http.get(f"{_P}/contracts")
        self._ingest_contracts(codec.decode_contracts(resp.body), initial=False, read_ns=read_ns)
        self.funding_refreshes += 1
        return dict(self._funding)

    def funding(self, instrument_key: str) -> FundingInfo | None:
        """The contract's current funding terms (:class:`~cexarb.model.FundingInfo`: rate per
        funding interval as a fraction, next funding time ns, interval ns, last update ns), as
        last pushed (``futures.tickers``) or read (REST); no I/O. None if the venue stated none.

        Raises:
            KeyError: ``instrument_key`` is not one of this connector's contracts (named).
        """
        return self._funding.get(self._instrument(instrument_key).key)

    def _funding_due_ns(self) -> int:
        """Wall-clock ns at which the contracts should next be re-read: a stated funding time
        plus ``funding_refresh_delay_s``, or a rate ``funding_max_age_s`` old, whichever is first
        (a far time when neither applies)."""
        due = time.time_ns() + 3600 * _NS
        delay_ns = int(self.funding_refresh_delay_s * _NS)
        max_age_ns = None if self.funding_max_age_s is None else int(self.funding_max_age_s * _NS)
        for info in self._funding.values():
            if info.next_funding_ns > 0:
                due = min(due, info.next_funding_ns + delay_ns)
            if max_age_ns is not None:
                due = min(due, info.updated_ns + max_age_ns)
        return due

    async def _funding_keeper(self) -> None:
        """Keeps the funding terms current until the connector closes: re-reads the contracts
        when :meth:`_funding_due_ns` says so; while they are still due after a re-read (the venue
        has not moved on to the next funding time yet, or the request failed) it waits
        ``funding_retry_s``, doubling up to 30 s, between re-reads."""
        retry_s = 0.0
        while True:
            wait_s = (self._funding_due_ns() - time.time_ns()) / _NS
            if wait_s > 0:
                retry_s = 0.0
                await asyncio.sleep(min(wait_s, 3600.0))
                continue  # re-evaluate: a push may have refreshed the rates meanwhile
            if retry_s:
                await asyncio.sleep(retry_s)
            try:
                await asyncio.wait_for(self.refresh_funding(), self._order_timeout_s + 5.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep trying; the terms stay as they were
                log.warning("venue=%s funding re-read failed: %s", self.name, exc)
            retry_s = min(max(retry_s * 2.0, self.funding_retry_s), _FUNDING_RETRY_MAX_S)

    def _on_funding_event(self, event: WsEvent) -> None:
        """Handler of the ``futures.tickers`` WebSocket: each push's ``funding_rate`` becomes the
        contract's current rate (the next funding time stays the REST one: the push has none)."""
        if type(event) is not WsFrame:
            if type(event) is WsConnected:
                self.tickers_status = "pending"
            return
        try:
            msg = codec.decode_ws_frame(event.data)
            if isinstance(msg, codec.GateOtherUpdate):
                if msg.channel == _TICKERS and msg.event in ("update", "all"):
                    self._apply_tickers(_TICKERS_RESULT.decode(msg.result), event.recv_ns)
            elif isinstance(msg, codec.GateWsError) and msg.channel == _TICKERS:
                self.tickers_status = "refused"
                log.warning(
                    "venue=%s %s subscription refused (code %d): rates re-read over REST every %s s",
                    self.name, _TICKERS, msg.code, self.funding_max_age_s,
                )
            elif isinstance(msg, codec.GateWsAck) and msg.channel == _TICKERS:
                self.tickers_status = "subscribed"
        except (codec.GateCodecError, msgspec.DecodeError) as exc:
            self.decode_errors += 1
            log.error("venue=%s malformed %s frame skipped (%d bytes): %s", self.name, _TICKERS, len(event.data), exc)

    def _apply_tickers(self, tickers: list[_TickerPush], recv_ns: int) -> None:
        for t in tickers:
            inst = self._by_symbol.get(t.contract)
            if inst is None:
                continue
            rate = _ticker_number(t.funding_rate, "funding_rate", t.contract)
            before = self._funding.get(inst.key)
            if rate is None or before is None:
                continue
            mark = _ticker_number(t.mark_price, "mark_price", t.contract) or 0.0
            if mark < 0:
                raise codec.GateCodecError(f"Gate {_TICKERS} {t.contract}: mark_price is negative: {t.mark_price!r}")
            if mark > 0:  # every push keeps the mark current (funding settles at it)
                self._funding[inst.key] = msgspec.structs.replace(
                    before, rate=rate, updated_ns=recv_ns, mark_price=mark, mark_updated_ns=recv_ns
                )
            else:
                self._funding[inst.key] = msgspec.structs.replace(before, rate=rate, updated_ns=recv_ns)
            self.funding_pushes += 1
            if rate != before.rate:
                self._emit_market(FundingEvent(instrument_key=inst.key, rate=rate, mark_price=mark, ts_ns=recv_ns))

    async def _fetch_snapshot(self, symbol: str) -> BookSnapshot:
        params = [("contract", symbol), ("limit", str(self.depth)), ("with_id", "true")]
        resp = await self._http.get(f"{_P}/order_book", params)
        return BookSnapshot.from_gate(codec.decode_futures_order_book(resp.body))

    # ---- private -----------------------------------------------------------------------------------

    async def _prepare_private(self) -> None:
        if not self._uid:
            resp = await self._http.get(f"{_API}/account/detail", signed=True)
            self._uid = str(codec.decode_account_detail(resp.body).user_id)

    def _private_channels(self) -> list[tuple[str, str, list[str]]]:
        uid = self._uid or ""
        out: list[tuple[str, str, list[str]]] = []
        for inst in self._instruments.values():
            out.append((f"orders:{inst.symbol}", "futures.orders", [uid, inst.symbol]))
            out.append(
                (f"usertrades:{inst.symbol}", "futures.usertrades", [uid, inst.symbol])
            )
        out.append(("positions", "futures.positions", [uid, "!all"]))
        return out

    def _on_other_private(self, msg: Any) -> None:
        if isinstance(msg, codec.GatePositionsUpdate):
            for p in msg.positions:
                pos = p.to_position()
                self._positions[pos.instrument_key] = pos

    def _order_body(self, request: OrderRequest) -> bytes:
        return codec.futures_order_body(request)

    _order_path = f"{_P}/orders"

    def _symbol_param(self) -> str:
        return "contract"

    def _cancel_params(self, inst: Any) -> list[tuple[str, str]]:
        return []  # futures orders are addressed by id / text alone

    def _decode_order(self, data: bytes) -> codec.GateFuturesOrder:
        return codec.decode_futures_order(data)

    def _decode_orders(self, data: bytes) -> list[codec.GateFuturesOrder]:
        return codec.decode_futures_orders(data)

    def _order_from_venue(self, o: codec.GateFuturesOrder) -> Order | None:
        inst = self._by_symbol.get(o.contract)
        if inst is None:
            return None
        upd = o.to_update(inst.key)
        return Order(
            client_order_id=upd.client_order_id,
            instrument=inst,
            side=Side.BUY if o.size > 0 else Side.SELL,
            type=OrderType.MARKET if o.price == 0 else OrderType.LIMIT,
            qty=abs(o.size),
            price=o.price or None,
            time_in_force=_TIF.get(o.tif, TimeInForce.GTC),
            reduce_only=o.is_reduce_only,
            venue_order_id=upd.venue_order_id,
            status=upd.status,
            filled_qty=upd.filled_qty,
            avg_fill_price=upd.avg_fill_price,
            created_ns=int((o.create_time_ms / 1e3 or o.create_time) * 1e9),
            updated_ns=upd.ts_ns,
            reject_reason=upd.reason if upd.status is OrderStatus.REJECTED else None,
        )

    async def _fetch_fills(self, symbol: str, limit: int = 100) -> list[Fill]:
        inst = self._by_symbol[symbol]
        resp = await self._http.get(
            f"{_P}/my_trades",
            [("contract", symbol), ("limit", str(limit))],
            signed=True,
        )
        return [t.to_fill(inst) for t in codec.decode_futures_trades(resp.body)]

    async def open_orders(self, instrument_key: str | None = None) -> list[Order]:
        insts = (
            [self._instrument(instrument_key)]
            if instrument_key
            else list(self._instruments.values())
        )
        out: list[Order] = []
        for inst in insts:
            resp = await self._http.get(
                f"{_P}/orders",
                [("contract", inst.symbol), ("status", "open")],
                signed=True,
            )
            for o in codec.decode_futures_orders(resp.body):
                order = self._order_from_venue(o)
                if order is not None:
                    out.append(order)
        return out

    async def balances(self) -> dict[str, Balance]:
        resp = await self._http.get(f"{_P}/accounts", signed=True)
        account = codec.decode_futures_account(resp.body)
        return {account.currency or "USDT": account.to_balance()}

    async def positions(self) -> dict[str, Position]:
        """Positions by instrument key (qty in contracts, signed); flat contracts included."""
        resp = await self._http.get(f"{_P}/positions", signed=True)
        out: dict[str, Position] = {}
        for p in codec.decode_positions(resp.body):
            if p.contract in self._by_symbol:
                pos = p.to_position()
                out[pos.instrument_key] = pos
        self._positions.update(out)
        return out

    def cached_positions(self) -> dict[str, Position]:
        """Positions as last pushed on ``futures.positions`` (or read by :meth:`positions`)."""
        return dict(self._positions)
