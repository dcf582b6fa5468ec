"""`cexarb demo` end to end on the real recording: outputs exist, summary is deterministic."""

from __future__ import annotations

import json
from pathlib import Path

from cexarb.cli import main


def _run(out: Path, *extra: str) -> dict:
    assert main(["demo", "--out", str(out), "--quiet", *extra]) == 0
    assert (out / "report.html").is_file()
    return json.loads((out / "summary.json").read_text())


def test_demo_outputs_and_determinism(binance_dir: Path, tmp_path: Path, capsys) -> None:
    a = _run(tmp_path / "a", "--data", str(binance_dir))
    printed = capsys.readouterr().out
    b = _run(tmp_path / "b", "--data", str(binance_dir))
    # byte-identical apart from the timing object
    ta, tb = a.pop("timing"), b.pop("timing")
    assert a == b
    assert set(ta) == {"wall_time_s", "events_per_s"} and ta["events_per_s"] > 0 and tb["events_per_s"] > 0
    text_a = (tmp_path / "a" / "summary.json").read_text().splitlines()
    text_b = (tmp_path / "b" / "summary.json").read_text().splitlines()
    timing_keys = ('"wall_time_s"', '"events_per_s"')
    assert [ln for ln in text_a if not ln.strip().startswith(timing_keys)] == [
        ln for ln in text_b if not ln.strip().startswith(timing_keys)
    ]

    # the default strategy opens, is hedged, and closes inside the data
    assert a["strategy"]["type"] == "spot_futures_hedging"
    assert a["strategy"]["final_state"] == "COMPLETED"
    counts = a["transitions"]["entries_per_state"]
    assert counts["OPENING_SPOT_POSITION"] == 1 and counts["MONITORING_POSITIONS"] >= 1
    assert counts["CLOSING_POSITIONS"] == 1 and counts["COMPLETED"] == 1
    assert a["orders"]["fills"] >= 4 and a["messages"]["book_gaps"] == 0
    assert a["messages"]["book"] > 9_000 and a["messages"]["trades"] > 30_000
    # the demo trades at market only: no resting order, so no trade reaches the fill model
    assert a["messages"]["trades_to_fill_model"] == 0
    pnl = a["pnl_usdt"]
    assert abs(pnl["gross"] - pnl["fees"] + pnl["funding"] - pnl["net"]) < 1e-5
    assert a["assumptions"]["funding_rate_assumed"] is True
    # Binance takes a spot buy's fee out of the BTC received (unless paid in BNB): the demo does too
    assert a["assumptions"]["buy_fee_in_base"] == ["binance-spot"]
    # the parameters as the strategy ran: defaults too, not only the demo's overrides
    params = a["strategy"]["params"]
    assert params["position_size_usdt"] == 10_000.0 and params["max_holding_time_s"] == 240.0
    for name in ("hedge_ratio", "stop_loss_pct", "profit_target_pct", "basis_stop_bps", "order_timeout_s"):
        assert name in params, name
    assert "net" in printed and "report" in printed

    html = (tmp_path / "a" / "report.html").read_text()
    assert "plotly" in html.lower()
    assert "ASSUMED" in html and "Fees:" in html and "Latency:" in html
    assert "Spot buys pay their fee in the base received on binance-spot" in html
    assert "Basis vs" in html and "Net PnL" in html


def test_demo_bad_param_names_field(binance_dir: Path, tmp_path: Path) -> None:
    import pytest

    with pytest.raises(SystemExit) as info:
        main(["demo", "--out", str(tmp_path), "--quiet", "--data", str(binance_dir), "--param", "hedge_ratio=5"])
    assert "hedge_ratio" in str(info.value)


def test_simple_arbitrage_demo_runs(binance_dir: Path, tmp_path: Path) -> None:
    s = _run(tmp_path, "--data", str(binance_dir), "--strategy", "simple_arbitrage")
    assert s["strategy"]["type"] == "simple_arbitrage"
    # spot vs perp never pays 10 + 5 bps of taker fees plus 5 bps of profit here: it keeps scanning
    assert s["strategy"]["final_state"] == "COMPLETED"
    assert s["orders"]["submitted"] == 0
    assert s["strategy_detail"]["best_spread_bps_seen"] < 5.0
