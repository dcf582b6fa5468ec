"""Issue 4 §3, "malformed frames give a logged error and no crash", end to end on loopback: the
simulator's ``malformed_frame`` fault (:mod:`cexarb.venues.sim.faults`) writes bad frames on a
venue's market-data WebSocket, each just before a real depth push, and our connectors (GateSpot,
GateUsdtFutures, MexcSpot) read them off a real socket -- real server on 127.0.0.1, the real event
loop, no mocks.

For each connector: every bad frame is one ERROR record naming the venue and the skipped frame and
one ``decode_errors``; the market stream goes on (later depth pushes are applied, no resync, no
reconnect, the book == the simulator's book once it has moved again); orders and the private
stream still work (a resting order placed and cancelled, a taking order's fill pushed).

What each variant puts on the wire (Gate: text frames, MEXC: binary frames):

* ``garbage``   -- Gate: text that is not JSON; MEXC: bytes that are not a PushDataV3ApiWrapper;
* ``truncated`` -- the next depth push without its last byte;
* ``bad_type``  -- Gate only: the next ``*.order_book_update`` push with ``result.u`` a string.

Every wait is bounded (``loopback.wait_for`` or ``asyncio.wait_for``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import loopback
import msgspec
import pytest
import test_connector_faults
from cexarb.model import Fill, OrderStatus
from cexarb.venues.base import OrderUpdate
from cexarb.venues.gateio import codec as gate_codec
from cexarb.venues.mexc import codec as mexc_codec
from cexarb.venues.sim.faults import (
    GATE_GARBAGE_FRAME,
    MEXC_GARBAGE_FRAME,
    Fault,
    FaultKind,
)
from cexarb.venues.sim.server import SimServer
from loopback import wait_for
from test_connector_faults import (
    SPECS,
    Spec,
    connected,
    resting_buy,
    server_orders,
    taking_buy,
)

server = test_connector_faults.server  # the simulator fixture, with its Gate and MEXC accounts




def _malformed_records(caplog: pytest.LogCaptureFixture, venue: str) -> list[logging.LogRecord]:
    """The connector's ERROR records for a skipped market frame of ``venue``."""
    return [
        r
        for r in caplog.records
        if r.levelno == logging.ERROR
        and f"venue={venue} " in r.getMessage()
        and "malformed market frame skipped" in r.getMessage()
    ]


async def _malformed_frames_are_skipped(
    server: SimServer, spec: Spec, variants: dict[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    """Arm ``malformed_frame`` with each ``variant: count`` on ``spec``'s venue, then check (a) the
    ERROR records, (b) ``decode_errors``, (c) the market stream and book, (d) orders and the
    private stream."""
    caplog.set_level(logging.ERROR)
    async with connected(server, spec) as venue:
        await venue.wait_synced(spec.key, 10)
        book, manager = venue.book(spec.key), venue.book_manager
        before = manager.stats(spec.symbol)
        errors_before = venue.decode_errors
        market_reconnects, private_reconnects = venue._ws_market.reconnects, venue.private_reconnects
        caplog.clear()

        faults = [server.faults.malformed_frame(spec.name, variant, count) for variant, count in variants.items()]
        total = sum(variants.values())
        await wait_for(
            lambda: all(f.fired == n for f, n in zip(faults, variants.values(), strict=True))
            and venue.decode_errors >= errors_before + total,
            5,
            f"{total} malformed frames to reach the connector",
        )
        assert not server.faults.has(spec.name, FaultKind.MALFORMED_FRAME)

        # (c) the stream goes on: the push behind each bad frame and later ones are applied, in
        # sequence (no gap, no resync, no reconnect)
        applied, seen_id = manager.stats(spec.symbol).applied, book.last_update_id
        server_id = server.market.books[spec.key].update_id
        await wait_for(
            lambda: manager.stats(spec.symbol).applied > applied + 2
            and book.is_valid
            and (book.last_update_id or 0) > max(seen_id or 0, server_id),
            5,
            "depth pushes after the malformed frames",
        )
        await loopback.assert_book_matches_server(venue, server, spec.key, 20, timeout_s=5.0)
        after = manager.stats(spec.symbol)
        assert (after.resync_count, after.gap_count, after.snapshots) == (
            before.resync_count,
            before.gap_count,
            before.snapshots,
        )
        assert venue._ws_market.reconnects == market_reconnects

        # (b) exactly one decode error per bad frame
        assert venue.decode_errors == errors_before + total
        # (a) one ERROR record per bad frame, naming the venue and the skipped frame
        records = _malformed_records(caplog, spec.name)
        assert len(records) == total, [r.getMessage() for r in records]

        # (d) orders and the private stream: a resting order placed and cancelled, a taking
        # order's fill pushed on the private stream (fills come only from it, or from a
        # backfill after a reconnect -- and there was none)
        events: list[Any] = []
        venue.subscribe(events.append)
        order = await asyncio.wait_for(venue.place_order(resting_buy(server, venue, spec, "mf1")), 3)
        assert order.status is OrderStatus.NEW and len(server_orders(server, spec, "mf1")) == 1
        assert await asyncio.wait_for(venue.cancel_order(spec.key, "mf1"), 3)
        await wait_for(
            lambda: any(
                isinstance(e, OrderUpdate) and e.client_order_id == "mf1" and e.status is OrderStatus.CANCELED
                for e in events
            ),
            3,
            "the cancel reported",
        )
        assert await asyncio.wait_for(venue.open_orders(spec.key), 3) == []
        taker = await asyncio.wait_for(venue.place_order(taking_buy(server, venue, spec, "mf2")), 3)
        assert taker.status is not OrderStatus.REJECTED
        await wait_for(
            lambda: any(isinstance(e, Fill) and e.client_order_id == "mf2" for e in events),
            3,
            "the taking order's fill on the private stream",
        )
        assert venue.private_reconnects == private_reconnects
        assert venue.decode_errors == errors_before + total  # nothing else was malformed


async def test_mexc_spot_malformed_binary_frames_on_the_socket_are_logged_and_skipped(server, caplog):
    """Binary frames that are not a PushDataV3ApiWrapper: garbage, and a depth push cut short."""
    await _malformed_frames_are_skipped(server, SPECS["mexc-spot"], {"garbage": 2, "truncated": 1}, caplog)


async def test_gate_spot_malformed_text_frames_on_the_socket_are_logged_and_skipped(server, caplog):
    """Text frames that are not JSON (garbage, a push cut short) and a ``spot.order_book_update``
    push with a wrong-typed field."""
    variants = {"garbage": 1, "truncated": 1, "bad_type": 2}
    await _malformed_frames_are_skipped(server, SPECS["gateio-spot"], variants, caplog)


async def test_gate_futures_malformed_text_frames_on_the_socket_are_logged_and_skipped(server, caplog):
    """As on spot, for ``futures.order_book_update``."""
    variants = {"garbage": 1, "truncated": 2, "bad_type": 1}
    await _malformed_frames_are_skipped(server, SPECS["gateio-futures"], variants, caplog)


# ---- the fault itself: what goes on the wire, and what arming refuses -------------------------------


async def _frames_around_faults(
    ws: aiohttp.ClientWebSocketResponse,
    is_depth: Callable[[bytes | str], bool | None],
    arm: Callable[[], list[Fault]],
    n_bad: int,
) -> list[tuple[bytes | str, bool]]:
    """Read ``ws`` (at most 500 frames, 5 s each), calling ``arm`` after the second depth push;
    return once ``n_bad`` frames were malformed (``is_depth``: None; False for other frames, which
    are left out) and two pushes followed the last: the frames from the first push on, each with
    True for a depth push, False for a malformed frame. Every armed fault fired once."""
    frames: list[tuple[bytes | str, bool]] = []
    faults: list[Fault] = []
    for _ in range(500):
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), msg
        depth = is_depth(msg.data)
        if depth is False:
            continue
        frames.append((msg.data, depth is True))
        if not faults and len(frames) == 2:
            faults = arm()
        if [ok for _, ok in frames].count(False) == n_bad and [ok for _, ok in frames[-2:]] == [True, True]:
            assert [f.fired for f in faults] == [1] * len(faults)
            return frames
    raise AssertionError(f"no {n_bad} malformed frames and pushes after them")


def _bad_then_push(frames: list[tuple[bytes | str, bool]]) -> list[tuple[bytes | str, bytes | str]]:
    """Each malformed frame with the frame after it, which must be a depth push."""
    pairs = []
    for k, (data, ok) in enumerate(frames):
        if not ok:
            nxt, nxt_ok = frames[k + 1]
            assert nxt_ok, "a malformed frame is followed by the depth push it was armed on"
            pairs.append((data, nxt))
    return pairs


async def test_gate_malformed_frames_on_the_wire(server):
    """On a raw socket: each bad frame is written just before a depth push that is sent unchanged
    (the pushes stay in sequence); ``garbage`` is the fixed text, ``truncated`` that push without
    its last byte, ``bad_type`` that push with ``result.u`` = ``"x"``."""

    def is_depth(data: bytes | str) -> bool | None:
        try:
            frame = gate_codec.decode_ws_frame(data)
        except gate_codec.GateCodecError:
            return None
        return isinstance(frame, gate_codec.GateOrderBookUpdate)

    def arm() -> list[Fault]:
        return [server.faults.malformed_frame("gateio-spot", v) for v in ("garbage", "truncated", "bad_type")]

    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.ws_connect(server.ws_base_url + "/ws/v4/") as ws,
    ):
        request = gate_codec.encode_ws_request(
            "spot.order_book_update", "subscribe", ["BTC_USDT", "100ms"], time_s=int(time.time())
        )
        await ws.send_str(request.decode())
        frames = await _frames_around_faults(ws, is_depth, arm, 3)
    (garbage, _), (truncated, push), (bad_type, push2) = _bad_then_push(frames)
    assert garbage == GATE_GARBAGE_FRAME
    assert isinstance(push, str) and truncated == push[:-1]
    bad_obj, push_obj = msgspec.json.decode(bad_type), msgspec.json.decode(push2)
    assert bad_obj["channel"] == "spot.order_book_update" and bad_obj["result"]["u"] == "x"
    assert isinstance(push_obj["result"]["u"], int)
    bad_obj["result"]["u"] = push_obj["result"]["u"]
    assert bad_obj == push_obj
    updates = [gate_codec.decode_ws_frame(data) for data, ok in frames if ok]
    for prev, nxt in itertools.pairwise(updates):
        assert nxt.first_id == prev.last_id + 1  # no gap: the bad frames took no ids


async def test_mexc_malformed_frames_on_the_wire(server):
    """As on Gate, binary: ``garbage`` is the fixed bytes, ``truncated`` the push without its last
    byte; neither decodes as a PushDataV3ApiWrapper."""

    def is_depth(data: bytes | str) -> bool | None:
        if isinstance(data, str):  # the subscription ack
            return False
        try:
            mexc_codec.decode_push(data)
        except ValueError:
            return None
        return True

    def arm() -> list[Fault]:
        return [server.faults.malformed_frame("mexc-spot", v) for v in ("garbage", "truncated")]

    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.ws_connect(server.ws_base_url + "/ws") as ws,
    ):
        await ws.send_bytes(mexc_codec.encode_subscribe(["spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT"]))
        frames = await _frames_around_faults(ws, is_depth, arm, 2)
    (garbage, _), (truncated, push) = _bad_then_push(frames)
    assert garbage == MEXC_GARBAGE_FRAME
    assert isinstance(push, bytes) and truncated == push[:-1]
    versions = [mexc_codec.depth_update_from_push(mexc_codec.decode_push(data)) for data, ok in frames if ok]
    for prev, nxt in itertools.pairwise(versions):
        assert nxt.from_version == prev.to_version + 1  # no gap


def test_malformed_frame_arming_checks_the_variant():
    from cexarb.venues.sim.faults import Faults

    faults = Faults()
    with pytest.raises(ValueError, match="variant"):
        faults.malformed_frame("mexc-spot", "bad_type")  # MEXC frames are protobuf: no JSON field
    with pytest.raises(ValueError, match="variant"):
        faults.arm_from_json({"venue": "gateio-spot", "kind": "malformed_frame", "variant": "nope"})
    armed = faults.arm_from_json({"venue": "gateio-futures", "kind": "malformed_frame", "count": 2})
    assert (armed.kind, armed.variant, armed.count) == (FaultKind.MALFORMED_FRAME, "", 2)
    assert faults.take("gateio-futures", FaultKind.MALFORMED_FRAME) is armed
