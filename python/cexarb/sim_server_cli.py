"""``cexarb sim-server``: the loopback exchange simulator (MEXC spot + Gate.io spot/USDT futures).

``main(argv)`` parses the arguments, starts :class:`~cexarb.venues.sim.server.SimServer` and
serves until interrupted. Once listening it writes two lines to stderr whatever ``--log-level``
says (in the log format): the recording each symbol replays (folder and file), then
``cexarb sim-server ready on http://HOST:PORT (...)`` -- scripts wait for ``ready on``.
The lead wires it into ``cexarb``'s CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "main"]

log = logging.getLogger("cexarb.sim_server")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: the recording folder used when ``--data`` is not given (looked up by
#: :func:`cexarb.cli.default_data_dir`: ``$CEXARB_DATA/book/<this>`` or
#: ``../shared/data/book/<this>`` from the working directory or the package)
DEFAULT_RECORDING = "binance_btc_20240808"


def _announce(msg: str, *args: object) -> None:
    """Log ``msg`` at INFO, or -- when the log level hides INFO -- write the same formatted
    line straight to stderr: startup lines stay visible under ``--log-level WARNING``."""
    if log.isEnabledFor(logging.INFO):
        log.info(msg, *args)
        return
    record = log.makeRecord(log.name, logging.INFO, __file__, 0, msg, args, None)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.handle(record)
    handler.flush()


def _epilog() -> str:
    from cexarb.venues.sim.market import MAPPING_HELP
    from cexarb.venues.sim.server import (
        DEFAULT_BALANCES,
        FUNDING_RATE,
        FUTURES_LEVERAGE,
    )

    # MAPPING_HELP's first line names the default recording; --data replaces it, so say both
    _first, _, mapping = MAPPING_HELP.partition("\n")
    lines = [
        f"symbols served, replayed in real time (looping) from the recording folder: by default {DEFAULT_RECORDING}",
        "($CEXARB_DATA/book/... or ../shared/data/book/...); --data DIR replaces it for every symbol",
        "(DIR must hold <source>_<SYMBOL>_*_book.csv[.gz] of each source below; the startup line",
        "names the folder and file each symbol replays):",
        mapping,
    ]
    lines.append("starting balances of every account (override per account in --accounts):")
    for venue, balances in DEFAULT_BALANCES.items():
        text = ", ".join(f"{amount:,.8g} {asset}" for asset, amount in balances.items())
        lines.append(f"  {venue:15s} {text}")
    lines.append(
        f"  futures leverage {FUTURES_LEVERAGE:g}x (margin = notional / leverage), funding rate {FUNDING_RATE:g}"
    )
    lines.append("")
    lines.append("routes on the one port:")
    lines.append("  MEXC REST  /api/v3/...      MEXC WS  /ws  (user data: /ws?listenKey=...)")
    lines.append("  Gate REST  /api/v4/...      Gate WS  /ws/v4/ (spot), /v4/ws/usdt (USDT futures)")
    lines.append("  admin      /_sim/status, /_sim/book?venue=, POST|DELETE /_sim/faults, POST /_sim/rate_limits")
    lines.append("")
    lines.append("accounts file (TOML):")
    lines.append(
        '  [[account]]\n  api_key = "k2"\n  api_secret = "s2"\n  uid = 10002\n'
        "  [account.balances.gateio-spot]\n  USDT = 5000.0"
    )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cexarb sim-server",
        description="Loopback simulator speaking the MEXC spot v3 and Gate.io v4 (spot, USDT futures) wire "
        "protocols, backed by recorded books replayed in real time.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=8765,
        help="listen port (0 = any free port; default 8765)",
    )
    parser.add_argument("--api-key", required=True, help="API key of the first account")
    parser.add_argument("--api-secret", required=True, help="API secret of the first account")
    parser.add_argument(
        "--uid",
        type=int,
        default=10001,
        help="Gate user id of the first account (default 10001)",
    )
    parser.add_argument(
        "--accounts",
        type=Path,
        help="TOML file with more accounts ([[account]] tables)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        help=f"recording folder replayed for every symbol, replacing the default {DEFAULT_RECORDING} "
        "($CEXARB_DATA/book/... or ../shared/data/book/...)",
    )
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed, 1.0 = real time")
    parser.add_argument(
        "--no-rate-limits",
        action="store_true",
        help="do not enforce the venues' rate limits",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser


async def _serve(args: argparse.Namespace) -> int:
    from cexarb.venues.sim.server import AccountSpec, SimServer, load_accounts_toml

    accounts = [AccountSpec(api_key=args.api_key, api_secret=args.api_secret, uid=args.uid)]
    if args.accounts is not None:
        accounts += load_accounts_toml(args.accounts)
    if args.data is not None:
        data = args.data
    else:
        from cexarb.cli import default_data_dir

        data = default_data_dir()
    server = SimServer(
        data,
        accounts,
        speed=args.speed,
        rate_limits=not args.no_rate_limits,
        host=args.host,
        port=args.port,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    await server.start()
    try:
        for key, (source, path) in server.recording_sources().items():
            _announce(
                "recording for %s: %s from %s",
                key,
                source,
                path if path is not None else server.data_dir,
            )
        _announce(
            "cexarb sim-server ready on %s (MEXC /api/v3 + /ws, Gate /api/v4 + /ws/v4/ + /v4/ws/usdt; %d account(s))",
            server.base_url,
            len(server.accounts),
        )
        await stop.wait()
    finally:
        await server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cexarb sim-server``; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format=LOG_FORMAT,
        stream=sys.stderr,
    )
    try:
        return asyncio.run(_serve(args))
    except (ValueError, OSError) as exc:
        print(f"cexarb sim-server: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
