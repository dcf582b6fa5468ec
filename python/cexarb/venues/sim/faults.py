"""Fault injection for the loopback simulator, switchable per test.

A :class:`Faults` object lives on the running server (``SimServer.faults``, or the admin route
``POST /_sim/faults``). Each fault is armed for one venue (``mexc-spot``, ``gateio-spot``,
``gateio-futures``) and fires on the next matching event(s), ``count`` times, then disarms:

==================  ==========================================================================
kind                effect
==================  ==========================================================================
``drop_depth``      the next depth push is not sent (its ids are skipped: the client sees a gap)
``reorder_depth``   the next depth push is held back and sent after the one that follows it
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

__all__ = ["VENUES", "Fault", "FaultKind", "Faults"]

log = logging.getLogger(__name__)

VENUES = ("mexc-spot", "gateio-spot", "gateio-futures")


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
