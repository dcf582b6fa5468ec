"""A 2xx order reply that does not decode: the venue took the order, so ``place_order`` must not
raise (leaving a live order nobody tracks) -- it returns the order PENDING_NEW, outcome unknown,
and the connector finds it by client order id (never re-sending it), as after a 5xx.

Gate spot, Gate USDT futures (which inherits the Gate order reply) and MEXC spot on the real
loopback simulator; the simulator answers well-formed bodies, so the venue's decoder is replaced
for one call to stand for a malformed body. Every wait bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cexarb.model import OrderStatus, Side
from cexarb.venues.base import OrderRequest
from cexarb.venues.gateio import codec as gate_codec
from cexarb.venues.gateio.codec import GateCodecError
from cexarb.venues.mexc import codec as mexc_codec
from cexarb.venues.mexc.codec import MexcCodecError
from cexarb.venues.sim.server import AccountSpec
from loopback import gate_futures, gate_spot, mexc_spot, sim_server, started, wait_for

GATE_KEY, GATE_SECRET, GATE_UID = "gate-key-1", "gate-secret-1", 10001
MEXC_KEY, MEXC_SECRET = "mx-key-1", "mx-secret-1"

# venue -> (connector factory, instrument key, qty, ticks under the bid, codec module, decoder, error)
CASES: dict[str, tuple[Callable[..., Any], str, float, int, Any, str, type[ValueError]]] = {
    "gateio-spot": (
        lambda s: gate_spot(s, GATE_KEY, GATE_SECRET, GATE_UID),
        "gateio-spot:BTC_USDT", 0.001, 20_000, gate_codec, "decode_spot_order", GateCodecError,
    ),
    "gateio-futures": (
        lambda s: gate_futures(s, GATE_KEY, GATE_SECRET),
        "gateio-futures:BTC_USDT", 1.0, 10_000, gate_codec, "decode_futures_order", GateCodecError,
    ),
    "mexc-spot": (
        lambda s: mexc_spot(s, MEXC_KEY, MEXC_SECRET),
        "mexc-spot:BTCUSDT", 0.001, 200_000, mexc_codec, "decode_order_ack", MexcCodecError,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_undecodable_2xx_order_reply_is_outcome_unknown_then_resolved(
    binance_dir: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    factory, key, qty, ticks, module, decoder, error = CASES[name]
    accounts = (
        AccountSpec(api_key=GATE_KEY, api_secret=GATE_SECRET, uid=GATE_UID),
        AccountSpec(api_key=MEXC_KEY, api_secret=MEXC_SECRET),
    )
    async with sim_server(binance_dir, *accounts) as server:
        venue = factory(server)
        async with started(venue):
            venue.resolve_delays_s = (0.0, 0.2, 0.4)
            inst = venue.instruments()[key]
            bid = server.market.books[key].best()[0]
            request = OrderRequest.create(inst, Side.BUY, qty, price_ticks=bid[0] - ticks, client_order_id="undec1")
            real = getattr(module, decoder)
            calls = []

            def malformed_once(data: bytes | str) -> Any:
                calls.append(len(data))
                monkeypatch.setattr(module, decoder, real)  # only the order reply is "malformed"
                raise error(f"{decoder}: malformed (simulated)")

            monkeypatch.setattr(module, decoder, malformed_once)
            decode_errors = venue.decode_errors
            order = await asyncio.wait_for(venue.place_order(request), 3)  # must not raise
            assert calls, "the order reply was not decoded by the patched decoder"
            assert order.status is OrderStatus.PENDING_NEW and venue.unknown_outcomes == 1
            assert venue.decode_errors == decode_errors + 1
            # resolved by the follow-up query (or the stream): the venue has it, once
            await wait_for(lambda: order.status is OrderStatus.NEW, 3, "the order found NEW")
            assert order.venue_order_id
            assert venue.unresolved_orders == ()
            opened = await asyncio.wait_for(venue.open_orders(key), 3)
            assert [o.client_order_id for o in opened] == ["undec1"]
            await asyncio.wait_for(venue.cancel_all(key), 3)
