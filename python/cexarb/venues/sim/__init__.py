"""Simulated venue: one matching core used in process (replay) and behind a loopback server.

:class:`SimVenue` trades against the replay's recorded books with latency, fees, balances,
positions and funding; :mod:`cexarb.venues.sim.matching` holds the I/O-free matching core.
"""

from cexarb.venues.sim.matching import (
    ConsumedLiquidity,
    Match,
    RestingOrder,
    RiskAverseQueue,
    iter_levels,
)
from cexarb.venues.sim.venue import SimLatency, SimVenue

__all__ = [
    "ConsumedLiquidity",
    "Match",
    "RestingOrder",
    "RiskAverseQueue",
    "SimLatency",
    "SimVenue",
    "iter_levels",
]
