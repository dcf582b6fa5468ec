"""cexarb: cross-exchange arbitrage, hedging and market making on a Rust hot path.

``cexarb._core`` is the Rust extension (order book, pricing, hedge maths, transition table);
everything else is Python orchestration on asyncio.
"""

__version__ = "0.1.0"
