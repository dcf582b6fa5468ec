"""WebSocket client shared by every venue connector: one reader task, reconnect with exponential
backoff and full jitter, heartbeats, resubscription, a bounded queue and stall detection.

A :class:`WsClient` keeps one connection to one URL alive for as long as it runs. It does not
decode venue messages: it hands every frame (text as ``str``, binary as ``bytes``) together with
connection events to the consumer, which decodes with the venue codec and catches its errors.

* **One reader task** per connection (STYLE.md §2 Async): it receives, answers heartbeats, sends
  the app-level pings when due, and detects stalls -- all in the same loop, so there is no second
  task that could race it. Every network await has a deadline.
* **Events** (:data:`WsEvent`): :class:`WsFrame` for data, :class:`WsConnected` after every
  (re)connect once subscriptions were re-sent (``reconnect`` True after the first),
  :class:`WsDisconnected` with the reason, :class:`WsOverflow` when frames were dropped because
  the consumer fell behind. After a disconnect or an overflow the consumer must resynchronise
  its state (the book manager resyncs every book).
* **Delivery**: a ``handler`` callback runs for each event (lowest latency; an exception is
  logged and the connection goes on), or, without one, a bounded queue read with
  :meth:`WsClient.recv`; when the queue is full the oldest frame is dropped, counted, and the
  next :meth:`~WsClient.recv` returns :class:`WsOverflow` first.
* **Direct delivery** (handler mode, ``direct=True``): a data frame is handed to the handler
  inside the connection's ``data_received``, right where aiohttp's own WebSocket parser
  completes it, instead of through aiohttp's message queue, a wake-up of the reader task and
  ``ws.receive()`` -- one event-loop iteration and a task switch less per frame. aiohttp still
  owns the connection, the handshake, the parsing, the sends and the control frames (pings,
  pongs, close), which go through its queue to the reader task as before; so does any frame
  that arrives while earlier ones wait in that queue (order is kept) or before the
  subscriptions were sent and :class:`WsConnected` delivered. This reaches into aiohttp's
  WebSocket internals (checked when a connection opens: with an aiohttp whose internals differ,
  every frame simply goes through ``receive()``; :attr:`WsClient.direct_active` tells which).
* **Heartbeats** (:class:`Heartbeat`): protocol-level pings (aiohttp ``heartbeat``; aiohttp
  answers the server's pings, which Gate requires), app-level pings per venue --
  :func:`mexc_heartbeat` sends ``{"method":"PING"}`` (or lower-case ``ping`` as ccxt does) and
  expects ``{"msg":"PONG"}``; :func:`gate_heartbeat` sends ``spot.ping``/``futures.ping`` and
  expects ``*.pong`` -- and a bare ``ping`` text frame from the server is answered ``pong``.
  Pongs are consumed here, not delivered. No pong within ``pong_timeout_s`` -> reconnect.
* **Stall detection**: no frame at all for ``stall_timeout_s`` (or no data frame for
  ``data_timeout_s``, when set) -> close and reconnect.
* **Reconnect** (:class:`Backoff`): delay ``uniform(0, min(max_s, initial_s * 2**n))`` after the
  n-th failure in a row; a connection that lived ``reset_after_s`` resets n.
* **Subscriptions** (:meth:`WsClient.subscribe`) are kept by key and their frames are built anew
  on every (re)connect (Gate's requests carry a time and, for private channels, a signature).

Sources: PROTOCOLS.md §1.4 (MEXC: PING/PONG, ccxt's lower-case ping every 8 s, 60 s idle close),
§2.4/§3.4 (Gate: server protocol pings, app-level ``spot.ping``/``futures.ping``).
Logging never includes frame contents (private subscribe frames carry keys and signatures).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Final, Self

import aiohttp
import msgspec

from cexarb.venues.gateio import codec as gate_codec
from cexarb.venues.mexc import codec as mexc_codec

__all__ = [
    "Backoff",
    "Heartbeat",
    "WsClient",
    "WsConnected",
    "WsDisconnected",
    "WsEvent",
    "WsFrame",
    "WsNotConnectedError",
    "WsOverflow",
    "gate_heartbeat",
    "mexc_heartbeat",
]

log = logging.getLogger(__name__)

Payload = bytes | str


class WsFrame(msgspec.Struct, frozen=True):
    """One data frame: ``data`` str (text) or bytes (binary); ``recv_ns`` wall clock at receipt."""

    data: Payload
    recv_ns: int
    conn_id: int


class WsConnected(msgspec.Struct, frozen=True):
    """Connected and subscriptions re-sent; ``reconnect`` is False only for the first connect."""

    conn_id: int
    reconnect: bool


class WsDisconnected(msgspec.Struct, frozen=True):
    """The connection ended (``reason`` says why); frames may have been lost until the next connect."""

    conn_id: int
    reason: str


class WsOverflow(msgspec.Struct, frozen=True):
    """``dropped`` frames were lost because the consumer fell behind: resynchronise."""

    dropped: int


WsEvent = WsFrame | WsConnected | WsDisconnected | WsOverflow


class WsNotConnectedError(ConnectionError):
    """A send while there is no open connection."""


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True):
    """How to keep a connection alive and tell that it is.

    Attributes:
        interval_s: app-level ping period (0: no app-level ping).
        make_ping: builds the ping frame (called each time: Gate's carries the time).
        is_pong: True for the venue's pong frame (consumed, not delivered).
        pong_timeout_s: reconnect when a ping got no pong within this time.
        protocol_ping_s: WebSocket-level ping period (aiohttp ``heartbeat``; None: off). aiohttp
            always answers the server's pings.
        answer_text_ping: reply ``pong`` to a bare ``ping`` text frame.
    """

    interval_s: float = 0.0
    make_ping: Callable[[], Payload] | None = None
    is_pong: Callable[[Payload], bool] | None = None
    pong_timeout_s: float = 10.0
    protocol_ping_s: float | None = None
    answer_text_ping: bool = True


def mexc_heartbeat(*, interval_s: float = 10.0, lowercase: bool = False, pong_timeout_s: float = 10.0) -> Heartbeat:
    """MEXC: ``{"method":"PING"}`` (``{"method":"ping"}`` as ccxt sends, with ``lowercase``) every
    ``interval_s``; pong ``{"id":0,"code":0,"msg":"PONG"}``. MEXC closes a connection after 60 s
    without data flow, so the interval must stay well under that [MX-DOC]."""
    frame = b'{"method":"ping"}' if lowercase else mexc_codec.encode_ping()

    def is_pong(data: Payload) -> bool:
        if isinstance(data, bytes):
            return False  # pushes are protobuf; the pong is text
        return '"PONG"' in data and len(data) < 128

    return Heartbeat(
        interval_s=interval_s, make_ping=lambda: frame.decode(), is_pong=is_pong, pong_timeout_s=pong_timeout_s
    )


def gate_heartbeat(
    market: str, *, interval_s: float = 10.0, pong_timeout_s: float = 10.0, protocol_ping_s: float | None = None
) -> Heartbeat:
    """Gate: ``{"time":..,"channel":"<market>.ping"}`` every ``interval_s``; pong has channel
    ``<market>.pong`` (``market`` = ``spot`` or ``futures``). Gate's server also sends protocol
    pings, answered by aiohttp [GT-DOC]."""
    if market not in ("spot", "futures"):
        raise ValueError(f"Gate market must be 'spot' or 'futures', got {market!r}")
    pong = f'"{market}.pong"'

    def make_ping() -> Payload:
        return gate_codec.encode_ws_ping(market, time_s=int(time.time())).decode()

    pong_b = pong.encode()

    def is_pong(data: Payload) -> bool:  # the channel comes early in a short frame: no copy, no decode
        if len(data) >= 512:
            return False
        if isinstance(data, bytes):
            return data.find(pong_b, 0, 200) >= 0
        return data.find(pong, 0, 200) >= 0

    return Heartbeat(
        interval_s=interval_s,
        make_ping=make_ping,
        is_pong=is_pong,
        pong_timeout_s=pong_timeout_s,
        protocol_ping_s=protocol_ping_s,
    )


class Backoff(msgspec.Struct, frozen=True, kw_only=True):
    """Reconnect delays: after the n-th failure in a row, ``uniform(0, min(max_s, initial_s * 2**n))``
    (full jitter, so many clients do not reconnect in step); a connection that lived
    ``reset_after_s`` counts as a success."""

    initial_s: float = 0.5
    max_s: float = 30.0
    reset_after_s: float = 30.0

    def delay(self, failures: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.max_s, self.initial_s * (2 ** min(failures, 30))))


_CLOSE_TYPES: Final = frozenset({aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED})

try:  # aiohttp's WebSocket message queue and parser (Cython when built): the direct-delivery hook
    from aiohttp._websocket.reader import WebSocketDataQueue as _AioWsQueue
    from aiohttp._websocket.reader import WebSocketReader as _AioWsReader
    from aiohttp.base_protocol import BaseProtocol as _AioProtocol

    _HAVE_AIO_WS = True
except ImportError:  # pragma: no cover - an aiohttp without them: frames go through receive()
    _HAVE_AIO_WS = False


if _HAVE_AIO_WS:

    class _DirectQueue(_AioWsQueue):
        """aiohttp's WebSocket message queue of one connection, except that a data frame its
        parser completes is delivered to ``client``'s handler right there, inside
        ``data_received``, while nothing waits in the queue (so frames keep their order) and the
        client's reader reads (see :meth:`WsClient._install_direct`). Control frames, a bare
        ``ping`` to answer and everything else are queued for the reader, as aiohttp does.
        Does what :meth:`WsClient._read` does with a frame: deadlines, pongs, counters, handler
        errors logged."""

        def __init__(
            self, protocol: _AioProtocol, limit: int, *, loop: asyncio.AbstractEventLoop, client: WsClient
        ) -> None:
            super().__init__(protocol, limit, loop=loop)
            self.client = client

        def feed_data(self, data: Any, size: int) -> None:
            client = self.client
            clock = client._direct_clock
            handler = client.handler
            if clock is None or handler is None or self._buffer:
                super().feed_data(data, size)
                return
            kind = data[0]
            if kind is _TEXT:
                payload = data[1]
                hb = client.heartbeat
                if hb.answer_text_ping and payload == "ping":  # the reader answers it (a send)
                    super().feed_data(data, size)
                    return
                clock.last_rx = rx = clock.loop.time()
                is_pong = hb.is_pong
                if is_pong is not None and is_pong(payload):
                    client.pongs += 1
                    clock.ping_since = None
                    return
                clock.last_data = rx
            elif kind is _BINARY:
                payload = data[1]
                clock.last_rx = clock.last_data = clock.loop.time()
            else:
                super().feed_data(data, size)
                return
            client.frames += 1
            client.direct_frames += 1
            try:
                handler(WsFrame(payload, time.time_ns(), client._direct_conn))
            except Exception:
                client.handler_errors += 1
                log.exception("ws=%s handler failed on WsFrame", client.name)


class WsClient:
    """A self-healing WebSocket connection; ``async with WsClient(...) as ws:`` starts the reader.

    Args:
        name: for logs (``"gateio-spot market"``).
        url: ``wss://...``.
        session: the venue's one :class:`aiohttp.ClientSession` (the REST client's).
        handler: called in the reader task for every event; None: use :meth:`recv`.
        heartbeat: see :class:`Heartbeat` (default: none beyond answering pings).
        backoff: see :class:`Backoff`.
        queue_size: bound of the event queue (without ``handler``).
        stall_timeout_s: reconnect after this long with no frame at all.
        data_timeout_s: reconnect after this long with no data frame (None: never).
        connect_timeout_s: deadline of the handshake.
        send_timeout_s: deadline of each send.
        headers: handshake headers (Gate futures: ``X-Gate-Size-Decimal``).
        max_reconnects: stop after this many reconnects in a row without success (None: never).
        bytes_as_text: send ``bytes`` payloads as text frames (default: every request of MEXC and
            Gate is JSON text, and their codecs return UTF-8 bytes); False sends them binary.
        direct: with a ``handler``, deliver data frames inside ``data_received`` (see the module
            docs, "Direct delivery"); False: every frame through ``ws.receive()`` in the reader.
        seed: RNG seed for the jitter (tests).
    """

    def __init__(
        self,
        name: str,
        url: str,
        session: aiohttp.ClientSession,
        *,
        handler: Callable[[WsEvent], None] | None = None,
        heartbeat: Heartbeat | None = None,
        backoff: Backoff | None = None,
        queue_size: int = 10_000,
        stall_timeout_s: float = 30.0,
        data_timeout_s: float | None = None,
        connect_timeout_s: float = 10.0,
        send_timeout_s: float = 5.0,
        headers: Mapping[str, str] | None = None,
        max_msg_size: int = 16 * 1024 * 1024,
        max_reconnects: int | None = None,
        bytes_as_text: bool = True,
        direct: bool = True,
        seed: int | None = None,
    ) -> None:
        if queue_size <= 0:
            raise ValueError(f"queue_size must be > 0, got {queue_size!r}")
        self.name = name
        self.url = url
        self.session = session
        self.handler = handler
        self.heartbeat = heartbeat or Heartbeat()
        self.backoff = backoff or Backoff()
        self.stall_timeout_s = stall_timeout_s
        self.data_timeout_s = data_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.send_timeout_s = send_timeout_s
        self.headers = dict(headers or {})
        self.max_msg_size = max_msg_size
        self.max_reconnects = max_reconnects
        self.bytes_as_text = bytes_as_text
        self.direct = direct
        self._rng = random.Random(seed)
        self._subscriptions: dict[str, Callable[[], Payload | list[Payload]]] = {}
        self._queue: deque[WsEvent] = deque()
        self._queue_size = queue_size
        self._queue_ready = asyncio.Event()
        self._overflow = 0
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # direct delivery: the reader's deadlines while it reads (None: frames go through receive())
        self._direct_clock: _ReadDeadlines | None = None
        self._direct_conn = 0
        self.direct_active = False  # the open connection delivers frames directly
        self.connected = asyncio.Event()
        self.conn_id = 0
        # counters (metrics, tests)
        self.connects = 0
        self.reconnects = 0
        self.frames = 0
        self.dropped = 0
        self.stalls = 0
        self.pings_sent = 0
        self.pongs = 0
        self.handler_errors = 0
        self.direct_frames = 0  # frames delivered inside data_received
        self.last_disconnect_reason = ""

    # ---- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def start(self) -> asyncio.Task[None]:
        """Start the reader task (idempotent); prefer ``async with`` or :meth:`run` in a TaskGroup."""
        if self._task is None or self._task.done():
            self._closing = False
            self._task = asyncio.create_task(self.run(), name=f"ws-reader {self.name}")
        return self._task

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Close the connection and end the reader task."""
        self._closing = True
        self._direct_clock = None  # nothing more reaches the handler from data_received
        task, self._task = self._task, None
        ws = self._ws
        if ws is not None and not ws.closed:
            try:
                async with asyncio.timeout(timeout_s):
                    await ws.close()
            except (TimeoutError, aiohttp.ClientError, OSError):
                pass
        if task is not None and not task.done():
            task.cancel()
            # asyncio.wait never raises the task's CancelledError, but does raise our own
            await asyncio.wait([task], timeout=timeout_s)
        self.connected.clear()

    # ---- subscriptions and sends -------------------------------------------------------------

    async def subscribe(self, key: str, make: Callable[[], Payload | list[Payload]]) -> None:
        """Keep a subscription: ``make()`` builds its request frame(s), sent now if connected and
        again after every reconnect."""
        self._subscriptions[key] = make
        if self._ws is not None and not self._ws.closed:
            await self._send_frames(self._ws, make())

    async def unsubscribe(self, key: str, make: Callable[[], Payload | list[Payload]] | None = None) -> None:
        """Forget a subscription; ``make`` builds the unsubscribe frame(s) to send now."""
        self._subscriptions.pop(key, None)
        if make is not None and self._ws is not None and not self._ws.closed:
            await self._send_frames(self._ws, make())

    @property
    def subscriptions(self) -> list[str]:
        return list(self._subscriptions)

    async def send(self, data: Payload) -> None:
        """Send one frame (str as text; bytes as text unless ``bytes_as_text`` is False) with the
        send deadline.

        Raises:
            WsNotConnectedError: no open connection.
            TimeoutError: the send did not complete in ``send_timeout_s``.
        """
        ws = self._ws
        if ws is None or ws.closed:
            raise WsNotConnectedError(f"{self.name}: not connected")
        await self._send_frames(ws, data)

    async def _send_frames(self, ws: aiohttp.ClientWebSocketResponse, frames: Payload | list[Payload]) -> None:
        async with asyncio.timeout(self.send_timeout_s):
            for frame in frames if isinstance(frames, list) else [frames]:
                if isinstance(frame, str):
                    await ws.send_str(frame)
                elif self.bytes_as_text:
                    await ws.send_str(frame.decode())
                else:
                    await ws.send_bytes(frame)

    # ---- consumer side (queue mode) -------------------------------------------------------------

    async def recv(self, timeout_s: float | None = None) -> WsEvent:
        """The next event (queue mode). After frames were dropped, :class:`WsOverflow` first.

        Raises:
            TimeoutError: nothing within ``timeout_s``.
        """
        async with asyncio.timeout(timeout_s):
            while True:
                if self._overflow:
                    dropped, self._overflow = self._overflow, 0
                    return WsOverflow(dropped)
                if self._queue:
                    return self._queue.popleft()
                self._queue_ready.clear()
                await self._queue_ready.wait()

    def pending(self) -> int:
        """Events waiting in the queue."""
        return len(self._queue)

    def _deliver(self, event: WsEvent) -> None:
        handler = self.handler
        if handler is not None:
            try:
                handler(event)
            except Exception:
                self.handler_errors += 1
                log.exception("ws=%s handler failed on %s", self.name, type(event).__name__)
            return
        if len(self._queue) >= self._queue_size:
            self._queue.popleft()
            self.dropped += 1
            self._overflow += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("ws=%s consumer too slow: %d frames dropped so far", self.name, self.dropped)
        self._queue.append(event)
        self._queue_ready.set()

    # ---- the reader task -------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, read and reconnect until :meth:`stop` (or ``max_reconnects`` failures)."""
        loop = asyncio.get_running_loop()
        failures = 0
        try:
            while not self._closing:
                try:
                    async with asyncio.timeout(self.connect_timeout_s):
                        ws = await self.session.ws_connect(
                            self.url,
                            headers=self.headers,
                            heartbeat=self.heartbeat.protocol_ping_s,
                            autoping=True,
                            max_msg_size=self.max_msg_size,
                            compress=0,
                        )
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    failures += 1
                    self.last_disconnect_reason = f"connect failed: {type(exc).__name__}"
                    log.warning("ws=%s connect failed (%s), attempt %d", self.name, type(exc).__name__, failures)
                    if self.max_reconnects is not None and failures > self.max_reconnects:
                        log.error("ws=%s giving up after %d failed connects", self.name, failures)
                        return
                    await asyncio.sleep(self.backoff.delay(failures - 1, self._rng))
                    continue
                self.conn_id += 1
                conn_id = self.conn_id
                opened = loop.time()
                reason = "closed"
                try:
                    self._ws = ws
                    self.direct_active = self._install_direct(ws)
                    await self._send_frames(
                        ws, [f for make in list(self._subscriptions.values()) for f in _as_list(make())]
                    )
                    self.connects += 1
                    reconnect = self.connects > 1
                    if reconnect:
                        self.reconnects += 1
                    log.info(
                        "ws=%s connected (conn %d, %d subscriptions)", self.name, conn_id, len(self._subscriptions)
                    )
                    self.connected.set()
                    self._deliver(WsConnected(conn_id, reconnect))
                    reason = await self._read(ws, conn_id)
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    reason = f"{type(exc).__name__}"
                finally:
                    self._ws = None
                    self._direct_clock = None
                    self.direct_active = False
                    self.connected.clear()
                    if not ws.closed:
                        try:
                            async with asyncio.timeout(1.0):
                                await ws.close()
                        except (TimeoutError, aiohttp.ClientError, OSError):
                            pass
                if self._closing:
                    break
                self.last_disconnect_reason = reason
                log.warning("ws=%s disconnected (conn %d): %s", self.name, conn_id, reason)
                self._deliver(WsDisconnected(conn_id, reason))
                failures = 0 if loop.time() - opened >= self.backoff.reset_after_s else failures + 1
                if self.max_reconnects is not None and failures > self.max_reconnects:
                    log.error("ws=%s giving up after %d short-lived connections", self.name, failures)
                    return
                await asyncio.sleep(self.backoff.delay(max(failures - 1, 0), self._rng))
        finally:
            self.connected.clear()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, conn_id: int) -> str:
        """Read until the connection ends; returns why it ended.

        The receive has no timeout of its own: one :class:`_ReadDeadlines` timer, armed for the
        earliest of stall / data / pong deadline and next ping and re-armed only when it fires,
        interrupts it when something is due (a frame costs two clock reads, not a timer).
        """
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        hb = self.heartbeat
        ping_every = hb.interval_s if (hb.interval_s > 0 and hb.make_ping is not None) else 0.0
        is_pong = hb.is_pong
        answer_text_ping = hb.answer_text_ping
        deliver = self._deliver
        text_type, binary_type = aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY
        wall_ns = time.time_ns
        clock = _ReadDeadlines(loop, task, self.stall_timeout_s, self.data_timeout_s, hb.pong_timeout_s, ping_every)
        clock.arm()
        if self.direct_active:  # from here on data frames may reach the handler in data_received
            self._direct_conn = conn_id
            self._direct_clock = clock
        try:
            while True:
                if clock.due:
                    clock.due = False
                    now = loop.time() + _TIMER_SLACK_S
                    if now >= clock.last_rx + self.stall_timeout_s:
                        self.stalls += 1
                        return f"stalled: no frame for {self.stall_timeout_s:.1f} s"
                    if self.data_timeout_s is not None and now >= clock.last_data + self.data_timeout_s:
                        self.stalls += 1
                        return f"stalled: no data frame for {self.data_timeout_s:.1f} s"
                    if clock.ping_since is not None and now >= clock.ping_since + hb.pong_timeout_s:
                        return f"no pong within {hb.pong_timeout_s:.1f} s"
                    if now >= clock.next_ping and hb.make_ping is not None:
                        await self._send_frames(ws, hb.make_ping())
                        self.pings_sent += 1
                        sent_at = loop.time()
                        if clock.ping_since is None:
                            clock.ping_since = sent_at
                        clock.next_ping = sent_at + ping_every
                    clock.arm()
                    continue
                clock.receiving = True
                try:
                    msg = await ws.receive()
                except asyncio.CancelledError:
                    if clock.cancelled:  # the deadline timer's interrupt (unless also cancelled outside)
                        clock.cancelled = False
                        if task.uncancel() == 0:
                            continue
                    raise
                finally:
                    clock.receiving = False
                kind = msg.type
                if kind is text_type:
                    clock.last_rx = rx = loop.time()
                    text: str = msg.data
                    if answer_text_ping and text == "ping":
                        await self._send_frames(ws, "pong")
                        continue
                    if is_pong is not None and is_pong(text):
                        self.pongs += 1
                        clock.ping_since = None
                        continue
                    clock.last_data = rx
                    self.frames += 1
                    frame = WsFrame(text, wall_ns(), conn_id)
                elif kind is binary_type:
                    clock.last_rx = clock.last_data = loop.time()
                    self.frames += 1
                    frame = WsFrame(msg.data, wall_ns(), conn_id)
                elif kind in (aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG):
                    clock.last_rx = loop.time()  # aiohttp answers pings itself (autoping)
                    continue
                elif kind in _CLOSE_TYPES:
                    return f"closed by peer (code {ws.close_code})"
                elif kind is aiohttp.WSMsgType.ERROR:
                    exc = ws.exception()
                    return f"error: {type(exc).__name__ if exc else 'unknown'}"
                else:  # pragma: no cover - CONTINUATION is assembled by aiohttp
                    clock.last_rx = loop.time()
                    continue
                handler = self.handler
                if handler is None:
                    deliver(frame)
                    continue
                try:  # what _deliver does, inline (one call less per frame)
                    handler(frame)
                except Exception:
                    self.handler_errors += 1
                    log.exception("ws=%s handler failed on %s", self.name, type(frame).__name__)
        finally:
            self._direct_clock = None
            clock.disarm()

    # ---- direct delivery ------------------------------------------------------------------------

    def _install_direct(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        """Give the new connection ``ws`` a :class:`_DirectQueue` (and a fresh aiohttp parser on
        it) in place of aiohttp's queue, before anything was subscribed; False, with nothing
        changed, when direct delivery is off, there is no handler, a message is already queued,
        or this aiohttp's internals are not the ones expected."""
        if not self.direct or self.handler is None or not _HAVE_AIO_WS:
            return False
        try:
            old = ws._reader
            proto = ws._conn.protocol if ws._conn is not None else None
            if proto is None or type(old) is not _AioWsQueue or old._buffer or not hasattr(ws, "_parser"):
                return False
            data_received_cb = ws._on_data_received if self.heartbeat.protocol_ping_s is not None else None
            queue = _DirectQueue(proto, old._limit // 2, loop=asyncio.get_running_loop(), client=self)
            parser = _AioWsReader(queue, self.max_msg_size, compress=False, decode_text=True)
            proto.set_parser(parser, queue, data_received_cb=data_received_cb)
        except (AttributeError, TypeError) as exc:
            log.info("ws=%s direct delivery unavailable (%s): frames go through receive()", self.name, exc)
            return False
        ws._reader = queue
        ws._parser = parser
        return True


_TEXT: Final = aiohttp.WSMsgType.TEXT
_BINARY: Final = aiohttp.WSMsgType.BINARY
_TIMER_SLACK_S: Final = 0.002  # a deadline this close is due (uvloop timers have ms resolution)


class _ReadDeadlines:
    """The deadlines of one connection's reader (loop time) and the one timer that watches them.

    The reader updates ``last_rx`` / ``last_data`` / ``ping_since`` / ``next_ping`` as frames come;
    the timer is armed for the earliest deadline and, when it fires, re-arms for the new earliest
    if frames moved it on, else marks ``due`` and -- while the reader is in ``receive`` --
    cancels the reader task (``cancelled``: the reader uncancels it and handles what is due),
    as :func:`asyncio.timeout` would, but without a timer per frame.
    """

    __slots__ = (
        "cancelled",
        "data_timeout_s",
        "due",
        "handle",
        "last_data",
        "last_rx",
        "loop",
        "next_ping",
        "ping_since",
        "pong_timeout_s",
        "receiving",
        "stall_timeout_s",
        "task",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        task: asyncio.Task[None],
        stall_timeout_s: float,
        data_timeout_s: float | None,
        pong_timeout_s: float,
        ping_every_s: float,
    ) -> None:
        self.loop = loop
        self.task = task
        self.stall_timeout_s = stall_timeout_s
        self.data_timeout_s = data_timeout_s
        self.pong_timeout_s = pong_timeout_s
        now = loop.time()
        self.last_rx = self.last_data = now
        self.next_ping = now + ping_every_s if ping_every_s else math.inf
        self.ping_since: float | None = None
        self.due = False
        self.receiving = False
        self.cancelled = False
        self.handle: asyncio.TimerHandle | None = None

    def wake(self) -> float:
        """The earliest deadline (loop time)."""
        at = min(self.last_rx + self.stall_timeout_s, self.next_ping)
        if self.data_timeout_s is not None:
            at = min(at, self.last_data + self.data_timeout_s)
        if self.ping_since is not None:
            at = min(at, self.ping_since + self.pong_timeout_s)
        return at

    def arm(self) -> None:
        self.disarm()
        self.handle = self.loop.call_at(self.wake(), self._fire)

    def disarm(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _fire(self) -> None:
        self.handle = None
        if self.loop.time() + _TIMER_SLACK_S < self.wake():  # frames came meanwhile: not due yet
            self.arm()
            return
        self.due = True
        if self.receiving and not self.cancelled:
            self.cancelled = True
            self.task.cancel()


def _as_list(frames: Payload | list[Payload]) -> list[Payload]:
    return frames if isinstance(frames, list) else [frames]
