"""The ``cexarb`` command.

``cexarb demo`` replays the bundled real Binance BTC spot + USDⓈ-M perp recording through the
default strategy (SPOT_FUTURES_HEDGING) and writes ``report.html`` and ``summary.json``.
``cexarb backtest`` is the same engine with every option open (``--param name=value``).
``cexarb run CONFIG --paper`` runs strategies on venue market data with simulated fills;
``cexarb sim-server`` serves MEXC / Gate.io on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import msgspec

__all__ = ["main"]

DEFAULT_OUT = "cexarb-demo"

# Demo defaults: sized and timed so that the strategy opens, is monitored (rebalancing if the hedge
# drifts) and closes inside the ~344 s in which the spot and perp recordings overlap.
DEMO_PARAMS: dict[str, dict[str, Any]] = {
    "spot_futures_hedging": {
        "position_size_usdt": 10_000.0,
        "target_funding_rate": 0.05,
        "min_basis_bps": -10.0,
        "max_entry_slippage_bps": 5.0,
        "max_hedge_ratio_drift": 0.005,
        "max_holding_time_s": 240.0,
    },
    "simple_arbitrage": {
        "position_size_usdt": 1_000.0,
        "min_profit_threshold": 0.0005,
        "max_cycles": 0,
    },
}


def default_data_dir() -> Path:
    """``$CEXARB_DATA/book/binance_btc_20240808`` or ``../shared/data/book/...`` from the repo/cwd."""
    env = os.environ.get("CEXARB_DATA")
    candidates = []
    if env:
        candidates.append(Path(env) / "book" / "binance_btc_20240808")
        candidates.append(Path(env))
    here = Path(__file__).resolve()
    for base in (Path.cwd(), *here.parents):
        candidates.append(base / ".." / "shared" / "data" / "book" / "binance_btc_20240808")
    for c in candidates:
        if c.is_dir() and any(c.glob("*_book.csv.gz")):
            return c.resolve()
    raise SystemExit("cexarb: recorded data not found; pass --data DIR (a folder of *_book.csv.gz files)")


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _instrument_defaults(strategy: str, keys: list[str], kinds: dict[str, str]) -> dict[str, Any]:
    spots = [k for k in keys if kinds[k] == "spot"]
    perps = [k for k in keys if kinds[k] == "perp"]
    if strategy == "spot_futures_hedging":
        if not spots or not perps:
            raise SystemExit(f"cexarb: spot_futures_hedging needs a spot and a linear perp in the data; have {keys}")
        return {"spot_instrument": spots[0], "futures_instrument": perps[0]}
    if len(keys) < 2:
        raise SystemExit(f"cexarb: simple_arbitrage needs two instruments in the data; have {keys}")
    a = spots[0] if spots else keys[0]
    b = perps[0] if perps and perps[0] != a else next(k for k in keys if k != a)
    return {"instrument_a": a, "instrument_b": b}


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cexarb.backtest import BacktestConfig, run_backtest
    from cexarb.replay import load_recording
    from cexarb.report import build_summary, format_summary, write_report, write_summary
    from cexarb.strategy import registry
    from cexarb.venues.sim.venue import SimLatency

    data_dir = Path(args.data).resolve() if args.data else default_data_dir()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"loading {data_dir} ...", file=sys.stderr)
    recording = load_recording(data_dir)
    keys = list(recording.streams)
    kinds = {k: recording.streams[k].instrument.kind.value for k in keys}
    params: dict[str, Any] = _instrument_defaults(args.strategy, keys, kinds)
    if args.command == "demo":
        params.update(DEMO_PARAMS.get(args.strategy, {}))
    for item in args.param or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"cexarb: --param expects name=value, got {item!r}")
        params[name.strip()] = _parse_value(value.strip())
    try:
        strategy = registry.create(args.strategy, **params)
    except ValueError as exc:
        raise SystemExit(f"cexarb: {exc}") from None
    config = BacktestConfig(
        latency=SimLatency(
            order_entry_ns=int(args.order_latency_ms * 1e6),
            ack_ns=int(args.ack_latency_ms * 1e6),
            market_data_ns=int(args.md_latency_ms * 1e6),
        ),
        funding_rate=args.funding_rate,
        buy_fee_in_base=frozenset(
            recording.streams[k].instrument.venue for k in keys if kinds[k] == "spot"
        ) if args.spot_buy_fee_in == "base" else frozenset(),
    )
    bar = tqdm(total=1, unit="msg", unit_scale=True, desc="replaying", file=sys.stderr, disable=args.quiet,
               mininterval=0.2, dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh() if done == total else bar.update(0)

    try:
        result = _event_loop_run(run_backtest(recording, strategy, config, progress))
    finally:
        bar.close()
    # every parameter the strategy ran with (defaults included), not only those given
    effective = {k: v for k, v in msgspec.to_builtins(strategy.params).items() if v is not None}  # no unset aliases
    summary = build_summary(result, effective, str(data_dir))
    write_summary(summary, out / "summary.json")
    write_report(result, summary, out / "report.html")
    print(format_summary(summary))
    print(f"report        {out / 'report.html'}\nsummary       {out / 'summary.json'}")
    return 0 if result.strategy.final_state != "ERROR" else 1


def _event_loop_run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency, absent only on Windows
        return asyncio.run(coro)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cexarb", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("demo", "replay the bundled real BTC spot + perp recording through a strategy and write a report"),
        ("backtest", "replay recorded data through a strategy with explicit parameters"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--strategy", default="spot_futures_hedging",
                       choices=["spot_futures_hedging", "simple_arbitrage"], help="strategy type")
        p.add_argument("--data", help="folder of <venue>_<SYMBOL>_<stamp>_{book,trades,bbo}.csv.gz files "
                                      "(default: the bundled Binance BTC recording)")
        p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default ./{DEFAULT_OUT})")
        p.add_argument("--param", action="append", metavar="NAME=VALUE",
                       help="strategy parameter override (JSON value), repeatable")
        p.add_argument("--funding-rate", type=float, default=0.0001,
                       help="assumed funding rate per interval for perps (fraction; default 0.0001)")
        p.add_argument("--order-latency-ms", type=float, default=1.0, help="order entry latency (default 1 ms)")
        p.add_argument("--ack-latency-ms", type=float, default=1.0, help="ack/fill report latency (default 1 ms)")
        p.add_argument("--md-latency-ms", type=float, default=0.0, help="extra market-data latency (default 0)")
        p.add_argument("--spot-buy-fee-in", choices=("base", "quote"), default="base",
                       help="asset a spot buy pays its fee in (default base: Binance charges a trading fee in the "
                            "asset received unless it is paid in BNB, https://www.binance.com/en-GB/support/faq/"
                            "what-is-binance-spot-trading-fee-and-how-to-calculate-e85d6e703b874674840122196b89780a; "
                            "quote: as if every fee were charged in USDT)")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sub.add_parser("run", help="run strategies from a TOML config (--paper: simulated fills on live or loopback "
                               "market data; see `cexarb run --help`)", add_help=False)
    sub.add_parser("sim-server", help="serve MEXC spot, Gate.io spot and Gate.io USDT futures on loopback "
                                      "(see `cexarb sim-server --help`)", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sim-server"]:  # its own parser (loopback MEXC / Gate.io simulator)
        from cexarb.sim_server_cli import main as sim_server_main

        return sim_server_main(argv[1:])
    if argv[:1] == ["run"]:  # its own parser (engine from a TOML config; --paper)
        from cexarb.run_cli import main as run_main

        return run_main(argv[1:])
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if args.command in ("demo", "backtest"):
        return _run(args)
    raise SystemExit(f"cexarb: unknown command {args.command!r}")  # pragma: no cover - argparse rejects first


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
