"""The MEXC listen-key keep-alive must outlive any single failure: a renewal whose answer does not
decode (``MexcCodecError``, a ValueError) used to escape and end the keep-alive task, so the
user-data stream died when the key expired 60 min later. Now it is logged, counted and retried,
and the task keeps extending the key.

Real loopback simulator; the simulator answers a well-formed ``POST /api/v3/userDataStream``, so
the listen-key decoder is replaced for one call to stand for a malformed body. Every wait bounded.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cexarb.venues.mexc import codec as mexc_codec
from cexarb.venues.sim.server import AccountSpec
from loopback import mexc_spot, sim_server, started, wait_for

MEXC_KEY, MEXC_SECRET = "mx-key-1", "mx-secret-1"


async def test_keeper_survives_an_undecodable_renewal(binance_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with sim_server(binance_dir, AccountSpec(api_key=MEXC_KEY, api_secret=MEXC_SECRET)) as server:
        venue = mexc_spot(server, MEXC_KEY, MEXC_SECRET, listen_key_keepalive_s=0.2)
        async with started(venue):
            keepers = [t for t in venue._tasks if "_keep_listen_key" in repr(t.get_coro())]
            assert len(keepers) == 1
            keeper = keepers[0]
            await wait_for(lambda: venue.listen_key_keepalives >= 1, 2, "a first keep-alive")
            key = venue._listen_key
            # the venue refuses the next PUT (400: renew the key), and the renewal's answer is malformed
            real = mexc_codec.decode_listen_key
            renewals_tried: list[int] = []

            def malformed_once(data: bytes | str) -> object:
                renewals_tried.append(len(data))
                monkeypatch.setattr(mexc_codec, "decode_listen_key", real)
                raise mexc_codec.MexcCodecError("MEXC /api/v3/userDataStream: malformed (simulated)")

            monkeypatch.setattr(mexc_codec, "decode_listen_key", malformed_once)
            server.faults.http_error("mexc-spot", 400, count=1, path_prefix="/api/v3/userDataStream")
            await wait_for(lambda: renewals_tried, 2, "the renewal attempt")
            done = venue.listen_key_keepalives
            # the keeper is still alive and extends the (still valid) key again
            await wait_for(lambda: venue.listen_key_keepalives >= done + 2, 2, "keep-alives after the failure")
            assert not keeper.done()
            assert venue.listen_key_keepalive_failures == 1 and venue.listen_key_renewals == 0
            assert venue._listen_key == key
            account = server.accounts_by_key[MEXC_KEY]
            assert key in account.listen_keys
