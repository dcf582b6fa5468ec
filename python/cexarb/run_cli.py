"""``cexarb run CONFIG [--paper] [--duration S]``: run strategies on live market data.

With ``--paper`` (or ``mode = "paper"`` in the config) market data comes from the configured
venues (a local ``cexarb sim-server`` in tests) and fills from the in-process simulated venue;
no order ever reaches a venue. Without ``--paper`` the command refuses (exit code 2) unless the
config says ``mode = "live"`` and every venue has keys (``CEXARB_<VENUE>_API_KEY`` /
``_API_SECRET`` or ``venues.<venue>.credentials``); it then trades LIVE: orders go to the
configured venues (the real ones by default; ``rest_url`` / ``ws_url`` point elsewhere, such as
a ``cexarb sim-server``), under the config's risk limits. Stop with Ctrl-C / SIGTERM or
``--duration``; strategies get EndOfData to close out, then their open orders are cancelled.

Exit codes: 0 every strategy ended COMPLETED and left no order open; 1 anything else (a strategy
in ERROR or not finished when its close-out time ran out, an order whose cancel was not
confirmed, the engine failed or was interrupted); 2 bad usage / config / refused.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cexarb.engine import EngineResult

__all__ = ["build_parser", "exit_code", "main"]

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cexarb run", description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="TOML run configuration (see cexarb.config for the format)")
    p.add_argument("--paper", action="store_true", help="paper trading: fills from the simulated venue")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="stop after S seconds (default: the config's duration_s; 0 = until Ctrl-C)")
    p.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return p


def _print_result(result: object) -> None:
    from cexarb.engine import EngineResult

    assert isinstance(result, EngineResult)
    print(f"stopped: {result.stop_reason} after {result.wall_time_s:.1f} s "
          f"({result.book_updates} book updates, {result.trades} trades)")
    for sid, run in result.strategies.items():
        r = run.result
        print(f"  {sid}: {r.strategy_type} {r.final_state}; orders {r.orders_executed}, fills {r.fills}, "
              f"net PnL {r.net_pnl:.4f} USDT" + (f"; error: {run.error}" if run.error else "")
              + (f"; {run.open_orders_after_cancel} order(s) STILL OPEN at the venue after the stop's cancels"
                 if run.open_orders_after_cancel else ""))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import msgspec

    from cexarb.config import ConfigError, env_credentials, load_config
    from cexarb.engine import Engine

    try:
        cfg = load_config(args.config)
        if args.duration is not None:
            if args.duration < 0:
                raise ConfigError(f"--duration must be >= 0, got {args.duration}")
            cfg = msgspec.structs.replace(cfg, duration_s=float(args.duration))
        paper = args.paper or cfg.mode == "paper"
        credentials = {}
        if not paper:
            if cfg.mode != "live":
                raise ConfigError("not --paper and the config is not mode = \"live\"", "mode")
            credentials = {v: env_credentials(v, vc) for v, vc in cfg.venues.items()}
            missing = [v for v, c in credentials.items() if c is None]
            if missing:
                print(f"cexarb run: refusing live trading: no API keys for {', '.join(missing)} "
                      "(set venues.<venue>.credentials or CEXARB_<VENUE>_API_KEY / _API_SECRET); "
                      "use --paper for paper trading", file=sys.stderr)
                return 2
            targets = ", ".join(f"{v} at {vc.rest_url or 'its production URL'}" for v, vc in cfg.venues.items())
            print(f"cexarb run: LIVE trading: orders go to {targets}", file=sys.stderr)
    except ConfigError as exc:
        print(f"cexarb run: config error: {exc}", file=sys.stderr)
        return 2

    async def _go() -> object:
        engine = Engine(cfg, paper=paper, credentials=None if paper else credentials)
        return await engine.run()

    try:
        result = asyncio.run(_go())
    except KeyboardInterrupt:
        print("cexarb run: interrupted", file=sys.stderr)
        return 1
    except Exception as exc:  # connection failures, sync timeouts: one clear line
        log.debug("engine failed", exc_info=True)
        print(f"cexarb run: engine failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    _print_result(result)
    from cexarb.engine import EngineResult as _EngineResult

    assert isinstance(result, _EngineResult)
    return exit_code(result)


def exit_code(result: EngineResult) -> int:
    """0 only when every strategy ended in its COMPLETED state and left no order open; 1 for
    anything else (an error, a close-out cut short by ``close_timeout_s``, an order whose cancel
    was not confirmed, no strategy run at all): a supervisor must look at such a run."""
    clean = all(run.result.success and run.open_orders_after_cancel == 0 for run in result.strategies.values())
    return 0 if clean and result.strategies else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
