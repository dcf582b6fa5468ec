"""MEXC spot v3: protocol layer (no networking).

* :mod:`cexarb.venues.mexc.proto` -- exact proto3 codec of ``PushDataV3ApiWrapper`` (the binary
  WebSocket pushes), encode and decode.
* :mod:`cexarb.venues.mexc.codec` -- JSON control frames, pushes -> domain events, REST payloads,
  outgoing order parameters.
* :mod:`cexarb.venues.mexc.signing` -- HMAC-SHA256 request signing and the server-side check.

Source: ``shared/venues/PROTOCOLS.md`` §1.
"""
