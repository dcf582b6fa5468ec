"""Gate.io APIv4, spot and USDT-margined futures: protocol layer (no networking).

* :mod:`cexarb.venues.gateio.codec` -- REST payloads (-> Instrument, orders, fills, balances,
  positions, funding), WebSocket frames (subscribe/auth, acks, errors, book updates incl.
  ``full`` resets, tickers, trades, private channels, WS trading API), outgoing order bodies.
* :mod:`cexarb.venues.gateio.signing` -- HMAC-SHA512 REST and WS signing and the server-side
  checks.

Source: ``shared/venues/PROTOCOLS.md`` §2-§3.
"""
