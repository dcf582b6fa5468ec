"""Fault injection for the loopback simulator, switchable per test.

A :class:`Faults` object lives on the running server (``SimServer.faults``, or the admin route
``POST /_sim/faults``). Each fault is armed for one venue (``mexc-spot``, ``gateio-spot``,
``gateio-futures``) and fires on the next matching event(s), ``count`` times, then disarms:

==================  ==========================================================================
kind                effect
==================  ==========================================================================
``drop_depth``      the next depth push is not sent (its ids are skipped: the client sees a gap)
``reorder_depth``   the next depth push is held back and sent after the one that follows it
``malformed_frame`` (``variant``) one malformed frame is written on the venue's market-data
                    WebSocket just before its next depth push, which follows unchanged (no
                    gap: a client that skips the bad frame stays in sync); ``count`` such frames
                    go before the next ``count`` depth pushes (a ``drop_depth`` /
                    ``reorder_depth`` armed too then acts on the push, not on the bad frame,
                    which is still written). What is sent, by ``variant`` (:func:`malformed_frame`):

                    * ``garbage`` (the default) -- Gate: the text frame
                      :data:`GATE_GARBAGE_FRAME` (not JSON); MEXC: the binary frame
                      :data:`MEXC_GARBAGE_FRAME` (not a ``PushDataV3ApiWrapper``: its
                      ``channel`` field claims a 4 GiB length);
                    * ``truncated`` -- the depth push itself without its last byte (Gate: JSON
                      missing its closing brace; MEXC: a protobuf whose last field runs past
                      the end of the frame), in the push's own frame type;
                    * ``bad_type`` (Gate only) -- the depth push as valid JSON with
                      ``result.u`` (its last update id) the string ``"x"`` instead of an integer
``stall_stream``    (``seconds``) no frame at all is written on the venue's sockets for that
                    long; frames queue up and are sent afterwards, in order
``close_sockets``   immediate: every open WebSocket of the venue is closed (``abort`` drops the
                    TCP connection without a close frame)
``delay_ack``       (``seconds``) the next order placement is executed at once but its HTTP
                    reply is held for that long
``lose_ack``        the next order placement is executed but the connection is dropped instead
                    of replying (the client must query the order by its client id)
``partial_fill``    (``fraction``) the next marketable order finds only ``fraction`` of its
                    quantity at the touch; the rest rests (GTC) or is cancelled (IOC)
``reject_order``    the next order placement is refused with the venue's error (Gate
                    ``INVALID_PARAM_VALUE`` / MEXC 30016 unless ``label`` / ``code`` is given)
``http_error``      (``status``, ``path_prefix``) the next REST request(s) of the venue (whose
                    path starts with ``path_prefix`` when given) answer ``status`` (429 with the
                    venue's rate-limit body, 5xx with a server-error body) without executing
``http_error_after_execute``  (``status``, a 5xx) the next order placement(s) the venue accepts
                    execute (rest or fill), then answer ``status`` with the venue's server-error
                    body instead of the order: a gateway error after the matching engine took
                    it (the client must find the order by its client id, and not send it again)
==================  ==========================================================================

Everything here is synchronous and I/O-free except :meth:`Faults.close_sockets`, which closes
sockets through the callback the server registered.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec

__all__ = [
    "GATE_GARBAGE_FRAME",
    "MALFORMED_VARIANTS",
    "MEXC_GARBAGE_FRAME",
    "VENUES",
    "Fault",
    "FaultKind",
    "Faults",
    "malformed_frame",
]

log = logging.getLogger(__name__)

VENUES = ("mexc-spot", "gateio-spot", "gateio-futures")

#: ``malformed_frame`` variants each venue accepts (``""`` = ``garbage``)
MALFORMED_VARIANTS: dict[str, tuple[str, ...]] = {
    "mexc-spot": ("garbage", "truncated"),
    "gateio-spot": ("garbage", "truncated", "bad_type"),
    "gateio-futures": ("garbage", "truncated", "bad_type"),
}
#: the Gate ``garbage`` frame (text): not JSON
GATE_GARBAGE_FRAME = "{sim: malformed frame, not JSON"
#: the MEXC ``garbage`` frame (binary): field 1 (``channel``, length-delimited) claiming
#: 0xFFFFFFFF bytes of which 31 follow (ASCII text) -- not a ``PushDataV3ApiWrapper``
MEXC_GARBAGE_FRAME = b"\x0a\xff\xff\xff\xff\x0fsim: not a PushDataV3ApiWrapper"


class FaultKind(enum.StrEnum):
    DROP_DEPTH = "drop_depth"
    REORDER_DEPTH = "reorder_depth"
    STALL_STREAM = "stall_stream"
    CLOSE_SOCKETS = "close_sockets"
    DELAY_ACK = "delay_ack"
    LOSE_ACK = "lose_ack"
    PARTIAL_FILL = "partial_fill"
    REJECT_ORDER = "reject_order"
    HTTP_ERROR = "http_error"
    HTTP_ERROR_AFTER_EXECUTE = "http_error_after_execute"
    MALFORMED_FRAME = "malformed_frame"


class Fault(msgspec.Struct, kw_only=True):
    """One armed fault (the fields a kind does not use are ignored)."""

    venue: str
    kind: FaultKind
    count: int = 1
    seconds: float = 0.0
    fraction: float = 0.5
    status: int = 503
    path_prefix: str = ""
    label: str = ""
    code: int = 0
    message: str = ""
    abort: bool = False
    variant: str = ""
    fired: int = 0


class Faults:
    """Armed faults per venue, consumed by the server's handlers (see the module docstring)."""

    def __init__(self) -> None:
        self._armed: list[Fault] = []
        self._stall_until: dict[str, float] = {}
        self._closer: Callable[[str, bool], int] | None = None
        self.history: list[Fault] = []

    def set_socket_closer(self, closer: Callable[[str, bool], int]) -> None:
        """Server hook: ``closer(venue, abort) -> sockets closed``."""
        self._closer = closer

    # ---- arming ---------------------------------------------------------------------------------

    def arm(self, fault: Fault) -> Fault:
        """Arm ``fault`` (``close_sockets`` and ``stall_stream`` act at once).

        Raises:
            ValueError: unknown venue, or a count/seconds/fraction/status out of range.
        """
        if fault.venue not in VENUES:
            raise ValueError(f"fault venue must be one of {VENUES}, got {fault.venue!r}")
        if fault.count < 1:
            raise ValueError(f"fault count must be >= 1, got {fault.count}")
        if not 0.0 <= fault.seconds <= 600.0:
            raise ValueError(f"fault seconds must be in [0, 600], got {fault.seconds}")
        if not 0.0 <= fault.fraction < 1.0:
            raise ValueError(f"fault fraction must be in [0, 1), got {fault.fraction}")
        if not 400 <= fault.status <= 599:
            raise ValueError(f"fault status must be 4xx/5xx, got {fault.status}")
        if fault.kind is FaultKind.HTTP_ERROR_AFTER_EXECUTE and not 500 <= fault.status <= 599:
            raise ValueError(f"fault status must be a 5xx for {fault.kind.value}, got {fault.status}")
        if fault.kind is FaultKind.MALFORMED_FRAME and fault.variant not in ("", *MALFORMED_VARIANTS[fault.venue]):
            raise ValueError(
                f"fault variant must be one of {MALFORMED_VARIANTS[fault.venue]} for {fault.venue}, "
                f"got {fault.variant!r}"
            )
        log.info(
            "fault armed venue=%s kind=%s count=%d",
            fault.venue,
            fault.kind.value,
            fault.count,
        )
        self.history.append(fault)
        if fault.kind is FaultKind.STALL_STREAM:
            self._stall_until[fault.venue] = time.monotonic() + fault.seconds
            fault.fired = 1
            return fault
        if fault.kind is FaultKind.CLOSE_SOCKETS:
            fault.fired = self._closer(fault.venue, fault.abort) if self._closer is not None else 0
            return fault
        self._armed.append(fault)
        return fault

    def arm_from_json(self, data: dict[str, Any]) -> Fault:
        """Arm a fault described by the admin API's JSON (the :class:`Fault` fields)."""
        return self.arm(msgspec.convert(data, Fault, strict=False))

    def drop_depth(self, venue: str, count: int = 1) -> Fault:
        return self.arm(Fault(venue=venue, kind=FaultKind.DROP_DEPTH, count=count))

    def reorder_depth(self, venue: str, count: int = 1) -> Fault:
        return self.arm(Fault(venue=venue, kind=FaultKind.REORDER_DEPTH, count=count))

    def malformed_frame(self, venue: str, variant: str = "garbage", count: int = 1) -> Fault:
        """One malformed frame (``variant``) before each of the next ``count`` depth pushes of
        ``venue`` (see the module docstring and :func:`malformed_frame`)."""
        return self.arm(Fault(venue=venue, kind=FaultKind.MALFORMED_FRAME, variant=variant, count=count))

    def stall_stream(self, venue: str, seconds: float) -> Fault:
        return self.arm(Fault(venue=venue, kind=FaultKind.STALL_STREAM, seconds=seconds))

    def close_sockets(self, venue: str, *, abort: bool = False) -> int:
        """Close every WebSocket of ``venue`` now; returns how many were open."""
        return self.arm(Fault(venue=venue, kind=FaultKind.CLOSE_SOCKETS, abort=abort)).fired

    def delay_ack(self, venue: str, seconds: float, count: int = 1) -> Fault:
        return self.arm(Fault(venue=venue, kind=FaultKind.DELAY_ACK, seconds=seconds, count=count))

    def lose_ack(self, venue: str, count: int = 1) -> Fault:
        return self.arm(Fault(venue=venue, kind=FaultKind.LOSE_ACK, count=count))

    def partial_fill(self, venue: str, fraction: float = 0.5, count: int = 1) -> Fault:
        return self.arm(Fault(venue=venue, kind=FaultKind.PARTIAL_FILL, fraction=fraction, count=count))

    def reject_order(
        self,
        venue: str,
        count: int = 1,
        *,
        label: str = "",
        code: int = 0,
        message: str = "",
    ) -> Fault:
        return self.arm(
            Fault(
                venue=venue,
                kind=FaultKind.REJECT_ORDER,
                count=count,
                label=label,
                code=code,
                message=message,
            )
        )

    def http_error(self, venue: str, status: int = 503, count: int = 1, *, path_prefix: str = "") -> Fault:
        return self.arm(
            Fault(
                venue=venue,
                kind=FaultKind.HTTP_ERROR,
                status=status,
                count=count,
                path_prefix=path_prefix,
            )
        )

    def http_error_after_execute(self, venue: str, status: int = 503, count: int = 1) -> Fault:
        return self.arm(Fault(venue=venue, kind=FaultKind.HTTP_ERROR_AFTER_EXECUTE, status=status, count=count))

    def disarm(self, fault: Fault) -> bool:
        """Disarm one armed ``fault`` now (the others, and any stall, stay); False if it had
        already fired out or been disarmed."""
        for i, armed in enumerate(self._armed):
            if armed is fault:  # by identity: two faults armed alike compare equal
                del self._armed[i]
                return True
        return False

    def clear(self) -> None:
        """Disarm everything and end any stall."""
        self._armed.clear()
        self._stall_until.clear()

    # ---- consuming (server side) ----------------------------------------------------------------

    def take(self, venue: str, kind: FaultKind, path: str | None = None) -> Fault | None:
        """The first armed fault of ``kind`` for ``venue`` (matching ``path``), consumed once."""
        for fault in self._armed:
            if fault.venue != venue or fault.kind is not kind:
                continue
            if path is not None and fault.path_prefix and not path.startswith(fault.path_prefix):
                continue
            fault.fired += 1
            fault.count -= 1
            if fault.count <= 0:
                self._armed.remove(fault)
            log.info("fault fired venue=%s kind=%s", venue, kind.value)
            return fault
        return None

    def has(self, venue: str, kind: FaultKind) -> bool:
        return any(f.venue == venue and f.kind is kind for f in self._armed)

    def stall_remaining_s(self, venue: str) -> float:
        """Seconds left of a stall on ``venue`` (0 when none)."""
        until = self._stall_until.get(venue)
        if until is None:
            return 0.0
        left = until - time.monotonic()
        if left <= 0:
            del self._stall_until[venue]
            return 0.0
        return left

    @property
    def armed(self) -> list[Fault]:
        return list(self._armed)


def malformed_frame(fault: Fault, push: bytes | str) -> bytes | str:
    """The malformed frame a ``malformed_frame`` ``fault`` sends before the depth push ``push``
    (bytes: a MEXC binary frame; str: a Gate text frame), of the push's own frame type.

    ``garbage``: :data:`MEXC_GARBAGE_FRAME` / :data:`GATE_GARBAGE_FRAME`; ``truncated``: ``push``
    without its last byte; ``bad_type`` (text only): ``push`` with ``result.u`` set to ``"x"``.
    """
    variant = fault.variant or "garbage"
    if variant == "truncated":
        return push[:-1]
    if isinstance(push, bytes):
        return MEXC_GARBAGE_FRAME
    if variant == "bad_type":
        obj = msgspec.json.decode(push)
        if isinstance(obj, dict) and isinstance(obj.get("result"), dict):
            obj["result"]["u"] = "x"
            return msgspec.json.encode(obj).decode()
    return GATE_GARBAGE_FRAME
