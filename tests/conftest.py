"""Shared fixtures: where the recorded data lives, and the loaded Binance recording (once per session).

The data root is ``../shared/data`` relative to the repository root, or ``$CEXARB_DATA`` when set
(the folder that holds ``book/binance_btc_20240808/``). It is read-only: tests write only under
their ``tmp_path``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BINANCE_SUBDIR = Path("book") / "binance_btc_20240808"
BINANCE_STAMP = "20240808T2354Z"
# instrument key -> file prefix in BINANCE_SUBDIR
BINANCE_PREFIXES = {
    "binance-spot:BTCUSDT": f"binance-spot_BTCUSDT_{BINANCE_STAMP}",
    "binance-usdm:BTCUSDT": f"binance-usdm_BTCUSDT_{BINANCE_STAMP}",
    "binance-coinm:BTCUSD_PERP": f"binance-coinm_BTCUSD_PERP_{BINANCE_STAMP}",
}


def data_root() -> Path:
    """``$CEXARB_DATA`` if set, else ``<repo>/../shared/data``."""
    env = os.environ.get("CEXARB_DATA")
    return Path(env).expanduser().resolve() if env else (REPO_ROOT.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data root; skips the test when it is missing."""
    root = data_root()
    if not root.is_dir():
        pytest.skip(f"recorded data not found at {root} (set CEXARB_DATA to the shared/data folder)")
    return root


@pytest.fixture(scope="session")
def binance_dir(data_dir: Path) -> Path:
    """``book/binance_btc_20240808`` under the data root; skips the test when it is missing."""
    folder = data_dir / BINANCE_SUBDIR
    if not folder.is_dir():
        pytest.skip(f"Binance recording not found at {folder} (see shared/data/PROVENANCE.md §1)")
    return folder


@pytest.fixture(scope="session")
def recording(binance_dir: Path):  # -> cexarb.replay.Recording
    """The three Binance instruments loaded from the CSVs, cached for the session."""
    from cexarb.replay import load_recording

    return load_recording(binance_dir)


@pytest.fixture(scope="session")
def raw_streams(binance_dir: Path):  # -> dict[str, tuple[BookStream, TradeStream, BboStream]]
    """The same three instruments rebuilt from ``*_raw.jsonl.gz``, cached for the session."""
    from cexarb.replay import known_instrument, load_raw

    out = {}
    for key, prefix in BINANCE_PREFIXES.items():
        venue, symbol = key.split(":")
        instrument = known_instrument(venue, symbol)
        out[key] = load_raw(binance_dir / f"{prefix}_raw.jsonl.gz", instrument)
    return out
