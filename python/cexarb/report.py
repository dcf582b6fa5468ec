"""Backtest summary (JSON, printed table) and HTML report with plotly charts.

``summary.json`` is deterministic: two runs on the same data and parameters give byte-identical
files except for the ``timing`` object (wall time, events per second).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from cexarb.backtest import BacktestResult
from cexarb.model import InstrumentKind

__all__ = ["build_summary", "format_summary", "write_report", "write_summary"]


def _iso(ts_ns: int | float) -> str:
    return dt.datetime.fromtimestamp(int(ts_ns) / 1e9, tz=dt.timezone.utc).isoformat(timespec="milliseconds")


def _r(x: float | None, nd: int = 6) -> float | None:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return round(float(x), nd)


def _assumptions(res: BacktestResult) -> dict[str, Any]:
    cfg = res.config
    return {
        "fees": {
            i.key: {"maker_fee": i.maker_fee, "taker_fee": i.taker_fee, "fee_tier": "Binance regular user (VIP 0)"
                    if i.venue.startswith("binance") else "venue default"}
            for i in res.instruments
        },
        "buy_fee_in_base": sorted(cfg.buy_fee_in_base),
        "funding_rate_per_interval": cfg.funding_rate,
        "funding_rate_assumed": True,
        "funding_note": (
            "The recording has no funding stream: the funding rate is a replay parameter, applied at the "
            "venue's funding times that fall inside the replayed window."
        ),
        "funding_settlements_in_window": len(res.funding_events),
        "latency_ms": {
            "order_entry": cfg.latency.order_entry_ns / 1e6,
            "ack": cfg.latency.ack_ns / 1e6,
            "market_data": cfg.latency.market_data_ns / 1e6,
        },
        "fill_model": (
            "market/marketable orders walk the recorded L2 book (no market impact beyond liquidity already taken "
            "in the same book version); resting orders fill when recorded trades trade through their price after "
            "the queue ahead of them (risk-averse queue)"
        ),
        "leverage": cfg.leverage,
        "instruments": {
            i.key: {"kind": i.kind.value, "tick_size": i.tick_size, "lot_size": i.lot_size,
                    "min_notional": i.min_notional, "contract_size": i.contract_size}
            for i in res.instruments
        },
    }


def build_summary(res: BacktestResult, params: dict[str, Any], data_dir: str) -> dict[str, Any]:
    """The figures of a run as a JSON-ready dict; everything outside ``timing`` is deterministic.

    ``params`` are the strategy's parameters as it ran (give all of them, defaults included:
    the report states them as the run's sizes and thresholds)."""
    s = res.strategy
    fills_by_inst: dict[str, int] = {}
    for f in res.fills:
        fills_by_inst[f.instrument_key] = fills_by_inst.get(f.instrument_key, 0) + 1
    gross = s.realized_pnl + s.unrealized_pnl
    return {
        "data": {"folder": Path(data_dir).name, "window_utc": [_iso(res.window_ns[0]), _iso(res.window_ns[1])],
                 "window_s": _r((res.window_ns[1] - res.window_ns[0]) / 1e9, 3)},
        "strategy": {"type": s.strategy_type, "id": s.strategy_id, "params": params, "final_state": s.final_state,
                     "success": s.success, "error": s.error},
        "messages": {"book": res.book_messages, "trades": res.trade_messages, "total": res.messages,
                     "trades_to_fill_model": res.trades_to_fill_model, "book_gaps": res.book_gaps},
        "orders": {"submitted": s.orders_executed, "fills": s.fills, "fills_by_instrument": fills_by_inst,
                   "rejected": sum(1 for o in res.orders if o.status.value == "rejected")},
        "pnl_usdt": {
            "gross": _r(gross), "realized_gross": _r(s.realized_pnl), "unrealized": _r(s.unrealized_pnl),
            "fees": _r(s.total_fees), "funding": _r(s.funding), "net": _r(s.net_pnl),
        },
        "risk": {"max_abs_delta_base": _r(res.max_abs_delta_base, 8), "max_abs_delta_usdt": _r(res.max_abs_delta_quote, 4)},
        "transitions": {"total": s.state_transition_count, "entries_per_state": res.transition_counts,
                        "log": [[_iso(t), a, b, why] for t, a, b, why in res.transitions]},
        "strategy_detail": _jsonable(s.additional_data),
        "assumptions": _assumptions(res),
        "timing": {"wall_time_s": round(res.wall_time_s, 3), "events_per_s": round(res.events_per_s, 1)},
    }


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return _r(obj, 8)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def write_summary(summary: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def format_summary(summary: dict[str, Any]) -> str:
    """A human-readable summary for the terminal."""
    p, m, o, t = summary["pnl_usdt"], summary["messages"], summary["orders"], summary["timing"]
    st = summary["strategy"]
    lines = [
        f"strategy      {st['type']} ({st['id']}): final state {st['final_state']}"
        + (f" — error: {st['error']}" if st["error"] else ""),
        f"data          {summary['data']['folder']} {summary['data']['window_utc'][0]} → "
        f"{summary['data']['window_utc'][1]} ({summary['data']['window_s']} s)",
        f"messages      {m['total']:,} ({m['book']:,} book, {m['trades']:,} trades, of which "
        f"{m['trades_to_fill_model']:,} met a resting order), gaps {m['book_gaps']}",
        (f"speed         {t['events_per_s']:,.0f} events/s (book messages + trades fed to the fill model), "
         f"{t['wall_time_s']:.2f} s wall"),
        f"orders        {o['submitted']} submitted, {o['fills']} fills, {o['rejected']} rejected",
        f"PnL (USDT)    gross {p['gross']:+.4f}  fees {p['fees']:.4f}  funding {p['funding']:+.4f}  net {p['net']:+.4f}",
        f"max delta     {summary['risk']['max_abs_delta_base']} base ({summary['risk']['max_abs_delta_usdt']} USDT) "
        "over the run (includes legging in/out)"
        + (f"; {summary['strategy_detail']['max_abs_delta_base']} base while hedged"
           if "max_abs_delta_base" in (summary.get("strategy_detail") or {}) else ""),
        "transitions   " + ", ".join(f"{k}={v}" for k, v in summary["transitions"]["entries_per_state"].items() if v),
    ]
    detail = summary.get("strategy_detail") or {}
    if "exit_reason" in detail and detail["exit_reason"]:
        lines.append(f"exit          {detail['exit_reason']}")
    a = summary["assumptions"]
    lines.append(
        f"assumed       funding {a['funding_rate_per_interval']} per interval (not recorded), latency entry "
        f"{a['latency_ms']['order_entry']} ms / ack {a['latency_ms']['ack']} ms / md {a['latency_ms']['market_data']} ms"
    )
    return "\n".join(lines)


_MARKER_STYLE = {
    "entry": ("triangle-up", "#2ca02c"),
    "hedge": ("diamond", "#1f77b4"),
    "rebalance": ("star", "#ff7f0e"),
    "exit": ("triangle-down", "#d62728"),
    "completed": ("circle", "#9467bd"),
    "funding": ("square", "#17becf"),
    "error": ("x", "#000000"),
}


def write_report(res: BacktestResult, summary: dict[str, Any], path: Path) -> None:
    """Write a self-contained HTML report (plotly inlined: it opens offline)."""
    import plotly.graph_objects as go
    import plotly.io as pio
    from plotly.subplots import make_subplots

    ts = np.asarray(res.series["ts_ns"], dtype=np.int64).astype("datetime64[ns]")
    keys = [i.key for i in res.instruments]
    spot = next((i.key for i in res.instruments if i.kind is InstrumentKind.SPOT), keys[0])
    others = [k for k in keys if k != spot]
    fig = make_subplots(
        rows=4, cols=1, shared_xaxes=True, vertical_spacing=0.04, row_heights=[0.34, 0.22, 0.22, 0.22],
        subplot_titles=("Mid prices (quote currency)", f"Basis vs {spot} (bps)", "Positions", "Net PnL (USDT)"),
    )
    for k in keys:
        fig.add_trace(go.Scattergl(x=ts, y=res.series[f"mid:{k}"], name=f"mid {k}", mode="lines"), row=1, col=1)
    spot_mid = np.asarray(res.series[f"mid:{spot}"])
    for k in others:
        basis = (np.asarray(res.series[f"mid:{k}"]) - spot_mid) / spot_mid * 1e4
        fig.add_trace(go.Scattergl(x=ts, y=basis, name=f"basis {k} − spot (bps)", mode="lines"), row=2, col=1)
    for k in keys:
        fig.add_trace(go.Scattergl(x=ts, y=res.series[f"position:{k}"], name=f"position {k}", mode="lines",
                                   line={"shape": "hv"}), row=3, col=1)
    fig.add_trace(go.Scattergl(x=ts, y=res.series["net_pnl"], name="net PnL", mode="lines"), row=4, col=1)
    # markers: on the price panel at the mid of the leg they concern, and as vertical lines across
    # every panel (so the basis, position and PnL panels show entries, rebalances and exits too)
    perp = others[0] if others else spot
    ts_all = np.asarray(res.series["ts_ns"])
    for kind, (symbol, color) in _MARKER_STYLE.items():
        pts = [(t, text) for t, k, text in res.markers if k == kind]
        if not pts or not len(ts_all):
            continue
        t_arr = np.asarray([p[0] for p in pts], dtype=np.int64)
        idx = np.clip(np.searchsorted(ts_all, t_arr), 0, len(ts_all) - 1)
        leg = perp if kind in ("hedge", "rebalance", "funding") else spot
        fig.add_trace(go.Scatter(
            x=t_arr.astype("datetime64[ns]"), y=np.asarray(res.series[f"mid:{leg}"])[idx], mode="markers", name=kind,
            marker={"symbol": symbol, "size": 13, "color": color, "line": {"width": 1, "color": "white"}},
            text=[p[1] for p in pts], hovertemplate="%{text}<extra>" + kind + "</extra>",
        ), row=1, col=1)
        if kind in ("entry", "rebalance", "exit"):
            for t in t_arr:
                fig.add_vline(x=int(t) / 1e6, line={"color": color, "width": 1, "dash": "dot"}, opacity=0.7)
    fig.update_layout(height=1000, template="plotly_white", legend={"orientation": "h", "y": -0.05},
                      margin={"l": 60, "r": 20, "t": 40, "b": 40})
    chart = pio.to_html(fig, include_plotlyjs=True, full_html=False)
    a = summary["assumptions"]
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in [
            ("Strategy", f"{summary['strategy']['type']} — final state {summary['strategy']['final_state']}"),
            ("Data", f"{summary['data']['folder']}: {summary['data']['window_utc'][0]} → {summary['data']['window_utc'][1]}"),
            ("Messages", f"{summary['messages']['total']:,} ({summary['messages']['book']:,} book, "
                         f"{summary['messages']['trades']:,} trades, {summary['messages']['trades_to_fill_model']:,} "
                         f"of them met a resting order), gaps {summary['messages']['book_gaps']}"),
            ("Orders / fills", f"{summary['orders']['submitted']} / {summary['orders']['fills']}"),
            ("PnL gross / fees / funding / net (USDT)",
             f"{summary['pnl_usdt']['gross']:+.4f} / {summary['pnl_usdt']['fees']:.4f} / "
             f"{summary['pnl_usdt']['funding']:+.4f} / {summary['pnl_usdt']['net']:+.4f}"),
            ("Max delta", f"{summary['risk']['max_abs_delta_base']} base ({summary['risk']['max_abs_delta_usdt']} USDT) "
                          "over the run, legging in/out included"
                          + (f"; {summary['strategy_detail']['max_abs_delta_base']} base while hedged"
                             if "max_abs_delta_base" in (summary.get("strategy_detail") or {}) else "")),
            ("Exit", (summary.get("strategy_detail") or {}).get("exit_reason", "")),
            ("Parameters", json.dumps(summary["strategy"]["params"], sort_keys=True)),
        ]
    )
    assumptions = "".join(
        f"<li>{html.escape(text)}</li>"
        for text in [
            f"Funding rate {a['funding_rate_per_interval']} per interval — ASSUMED (not in the recording). "
            + a["funding_note"] + f" Settlements inside the window: {a['funding_settlements_in_window']}.",
            "Fees: " + "; ".join(f"{k}: maker {v['maker_fee']}, taker {v['taker_fee']} ({v['fee_tier']})"
                                 for k, v in a["fees"].items())
            + ". Spot buys pay their fee "
            + (f"in the base received on {', '.join(a['buy_fee_in_base'])}, in quote elsewhere"
               if a["buy_fee_in_base"] else "in quote on every venue"),
            f"Latency: order entry {a['latency_ms']['order_entry']} ms, ack {a['latency_ms']['ack']} ms, "
            f"market data {a['latency_ms']['market_data']} ms.",
            "Fill model: " + a["fill_model"] + ".",
            "Sizes: " + "; ".join(f"{k}: tick {v['tick_size']}, lot {v['lot_size']}, min notional {v['min_notional']}"
                                  for k, v in a["instruments"].items()),
        ]
    )
    transitions = "".join(
        f"<tr><td>{html.escape(t)}</td><td>{html.escape(a_)}</td><td>{html.escape(b)}</td><td>{html.escape(w)}</td></tr>"
        for t, a_, b, w in summary["transitions"]["log"]
    )
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cexarb report — {html.escape(summary['strategy']['type'])}</title>
<style>
body{{font-family:system-ui,-apple-system,sans-serif;margin:24px;color:#222}}
table{{border-collapse:collapse;margin:8px 0 16px}} th,td{{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}}
th{{background:#f6f6f6}} h1{{font-size:22px}} h2{{font-size:17px;margin-top:24px}}
</style></head><body>
<h1>cexarb backtest — {html.escape(summary['strategy']['type'])}</h1>
<table>{rows}</table>
<h2>Assumptions</h2><ul>{assumptions}</ul>
<h2>Charts</h2>{chart}
<h2>State transitions</h2>
<table><tr><th>time (UTC, recorder clock)</th><th>from</th><th>to</th><th>why</th></tr>{transitions}</table>
</body></html>
"""
    path.write_text(doc, encoding="utf-8")

