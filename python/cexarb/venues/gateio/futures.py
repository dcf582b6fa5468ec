"""Gate.io USDT-margined futures v4 connector (``/api/v4/futures/usdt``, WS ``/v4/ws/usdt``).

Same machinery as the spot connector (:class:`~cexarb.venues.gateio.spot.GateConnectorBase`: one
aiohttp session, book manager with Gate's ``U``/``u`` rule on ``futures.order_book_update`` and
``with_id`` snapshots, keep-alive order entry, signed private channels, fill de-duplication and
REST backfill after a reconnect). Futures specifics:

* instruments from ``/futures/usdt/contracts``: tick ``order_price_round``, lot 1 contract,
  ``contract_size`` = ``quanto_multiplier``; quantities (orders, fills, positions, book levels)
  are **contracts**;
* the funding rate and next funding time of each contract (:meth:`GateUsdtFutures.funding`,
  refreshed by :meth:`GateUsdtFutures.refresh_funding`; a :class:`FundingEvent` is delivered to
  market handlers at each refresh);
* positions from REST (``/futures/usdt/positions``) and kept current from ``futures.positions``;
* private channels carry the user id first: ``ApiCredentials.uid``, else ``/account/detail``.
"""

from __future__ import annotations

import time
from typing import Any

from cexarb.model import (
    Balance,
    Fill,
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

__all__ = ["GateUsdtFutures"]

_P = f"{_API}/futures/usdt"
_TIF = {"gtc": TimeInForce.GTC, "ioc": TimeInForce.IOC, "poc": TimeInForce.POST_ONLY}


class GateUsdtFutures(GateConnectorBase):
    """Gate.io USDT perpetual futures connector.

    Args:
        credentials: API key/secret (and ``uid``; fetched when absent). None: market data only.
        rest_url: ``https://api.gateio.ws`` (or the simulator's ``base_url``).
        ws_url: ``wss://fx-ws.gateio.ws/v4/ws/usdt`` (or ``ws_base_url + "/v4/ws/usdt"``).
        symbols: contracts to load and stream (None: every trading contract).
    """

    name = "gateio-futures"
    market = "futures"
    limits = GATE_FUTURES_LIMITS
    depth_channel = "futures.order_book_update"

    def __init__(
        self, credentials: ApiCredentials | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("ws_url", "wss://fx-ws.gateio.ws/v4/ws/usdt")
        super().__init__(credentials, **kwargs)
        self._uid: str | None = credentials.uid if credentials is not None else None
        self._funding: dict[
            str, tuple[float, int]
        ] = {}  # key -> (rate, next funding ns)
        self._positions: dict[str, Position] = {}

    # ---- public ------------------------------------------------------------------------------------

    def _depth_payload(self, symbol: str) -> list[str]:
        return [symbol, self.depth_interval, "100"]

    async def _load_instruments(self) -> None:
        resp = await self._http.get(f"{_P}/contracts")
        self._ingest_contracts(codec.decode_contracts(resp.body), initial=True)

    def _ingest_contracts(
        self, contracts: list[codec.GateContract], *, initial: bool
    ) -> None:
        now = time.time_ns()
        for c in contracts:
            if self._symbols_wanted is not None and c.name not in self._symbols_wanted:
                continue
            if c.in_delisting or c.status not in ("trading", ""):
                continue
            if initial:
                inst = c.to_instrument()
                self._instruments[inst.key] = inst
                self._by_symbol[inst.symbol] = inst
            if c.name in self._by_symbol:
                key = self._by_symbol[c.name].key
                self._funding[key] = (c.funding_rate, c.funding_next_apply_ns)
                if not initial:
                    self._emit_market(c.to_funding(now))

    async def refresh_funding(self) -> dict[str, tuple[float, int]]:
        """Re-read the contracts' funding rates (REST); delivers a FundingEvent per contract."""
        resp = await self._http.get(f"{_P}/contracts")
        self._ingest_contracts(codec.decode_contracts(resp.body), initial=False)
        return dict(self._funding)

    def funding(self, instrument_key: str) -> tuple[float, int]:
        """``(rate per interval, next funding time ns)`` as last read."""
        return self._funding[self._instrument(instrument_key).key]

    async def _fetch_snapshot(self, symbol: str) -> BookSnapshot:
        params = [("contract", symbol), ("limit", "300"), ("with_id", "true")]
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
