"""``cexarb sim-server`` (``cexarb.sim_server_cli.main``): --help states balances, symbols and
recordings; the process serves on an ephemeral port, logs one ready line, and stops on SIGTERM;
accounts come from TOML."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request

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


def test_cli_serves_and_stops(binance_dir):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
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
        str(binance_dir),
    ]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    try:
        url = None
        for _ in range(200):
            line = proc.stderr.readline() if proc.stderr else ""
            if not line:
                break
            m = re.search(r"ready on (http://127\.0\.0\.1:\d+)", line)
            if m:
                url = m.group(1)
                break
        assert url is not None, "no ready line"
        with urllib.request.urlopen(url + "/api/v3/ping", timeout=10) as r:
            assert r.read() == b"{}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
