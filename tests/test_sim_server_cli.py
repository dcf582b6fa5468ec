"""``cexarb sim-server`` (``cexarb.sim_server_cli.main``): --help states balances, symbols and
recordings (the default folder, which ``--data`` replaces); the process serves on an ephemeral
port, writes one line per symbol naming the recording it replays and one ready line -- whatever
``--log-level`` -- and stops on SIGTERM; accounts come from TOML."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from typing import IO

import pytest
from cexarb.sim_server_cli import build_parser
from cexarb.venues.sim.server import load_accounts_toml


def test_help_states_symbols_recordings_and_balances():
    text = build_parser().format_help()
    for needle in (
        "BTCUSDT",
        "BTC_USDT",
        "binance-spot",
        "binance-usdm",
        "100,000 USDT",
        "quanto_multiplier",
        "/ws/v4/",
        "/v4/ws/usdt",
    ):
        assert needle in text


def test_help_states_the_default_recording_and_that_data_replaces_it():
    text = " ".join(build_parser().format_help().split())
    # not "recording binance_btc_20240808" as if it were the only one
    assert "recording binance_btc_20240808" not in text
    assert "by default binance_btc_20240808" in text
    assert "--data DIR replaces it for every symbol" in text
    assert "replacing the default binance_btc_20240808" in text  # --data's own help


def test_accounts_toml(tmp_path):
    path = tmp_path / "accounts.toml"
    path.write_text(
        '[[account]]\napi_key = "k2"\napi_secret = "s2"\nuid = 42\n[account.balances.gateio-spot]\nUSDT = 5.0\n'
    )
    (spec,) = load_accounts_toml(path)
    assert (spec.api_key, spec.uid, spec.balances["gateio-spot"]["USDT"]) == (
        "k2",
        42,
        5.0,
    )
    path.write_text('[[account]]\napi_key = "k2"\n')
    with pytest.raises(ValueError, match="api_secret"):
        load_accounts_toml(path)


def _lines_of(stream: IO[str] | None) -> queue.Queue[str]:
    """``stream``'s lines on a queue, read by a daemon thread ("" at EOF): a bounded wait for
    the next line is ``get(timeout=...)``."""
    out: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        if stream is not None:
            for line in stream:
                out.put(line)
        out.put("")

    threading.Thread(target=pump, daemon=True).start()
    return out


@pytest.mark.parametrize("log_level", ["INFO", "WARNING"])
def test_cli_serves_and_stops(binance_dir, tmp_path, log_level):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if log_level == "WARNING":
        # a recording folder elsewhere (links to the same files): the startup lines name it
        data = tmp_path / "other_recording"
        data.mkdir()
        for f in binance_dir.iterdir():
            (data / f.name).symlink_to(f)
    else:
        data = binance_dir
    cmd = [
        sys.executable,
        "-m",
        "cexarb.sim_server_cli",
        "--port",
        "0",
        "--api-key",
        "k",
        "--api-secret",
        "s",
        "--data",
        str(data),
        "--log-level",
        log_level,
    ]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    try:
        url = None
        recordings: dict[str, str] = {}
        lines = _lines_of(proc.stderr)
        deadline = time.monotonic() + 60
        for _ in range(200):
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if not line:
                break
            m = re.search(r"recording for (\S+): (\S+) from (\S+)$", line.rstrip("\n"))
            if m:
                assert m.group(1) not in recordings, f"recording line twice: {line!r}"
                recordings[m.group(1)] = m.group(3)
            m = re.search(r"ready on (http://127\.0\.0\.1:\d+)", line)
            if m:
                url = m.group(1)
                break
        assert url is not None, "no ready line"
        # each symbol's recording file, in the folder --data named
        assert set(recordings) == {"mexc-spot:BTCUSDT", "gateio-spot:BTC_USDT", "gateio-futures:BTC_USDT"}
        folder = str(data.resolve())
        assert recordings["mexc-spot:BTCUSDT"].startswith(folder + "/binance-spot_BTCUSDT_")
        assert recordings["gateio-futures:BTC_USDT"].startswith(folder + "/binance-usdm_BTCUSDT_")
        with urllib.request.urlopen(url + "/api/v3/ping", timeout=10) as r:
            assert r.read() == b"{}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
