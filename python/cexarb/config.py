"""Run configuration for ``cexarb run CONFIG [--paper]``: a TOML file decoded by msgspec.

Errors name the offending field (``venues.gateio-spot.rest_url: Expected `str`, got `int```,
``strategies[0].params.position_size_usdt: ...``); unknown fields are errors, so a typo never
passes silently.

Example (paper trading spot/futures hedging on Gate.io against a local ``cexarb sim-server``)::

    mode = "paper"                # "paper" (fills from the in-process simulated venue) or "live"
    duration_s = 0                # stop after this long (0 = until SIGINT / SIGTERM)
    max_terminal_orders = 10000   # per strategy: finished orders kept in memory (cexarb.retention)
    terminal_order_min_age_s = 60 # ... each for at least this long after it finished
    cancel_stale_orders = true    # live: cancel open orders an earlier run of a strategy left

    [venues.gateio-spot]          # the table name is the venue: gateio-spot, gateio-futures, mexc-spot
    rest_url = "http://127.0.0.1:8080"
    ws_url = "ws://127.0.0.1:8080/ws/v4/"
    symbols = ["BTC_USDT"]
    credentials = "env:GATE_KEY,GATE_SECRET"   # optional; only live trading uses keys

    [venues.gateio-futures]
    rest_url = "http://127.0.0.1:8080"
    ws_url = "ws://127.0.0.1:8080/v4/ws/usdt"
    symbols = ["BTC_USDT"]

    [paper]                       # the simulated venue that fills paper orders
    leverage = 10.0
    latency = { order_entry_ns = 1000000, ack_ns = 1000000 }
    balances = { gateio-spot = { USDT = 10000.0, BTC = 0.0 }, gateio-futures = { USDT = 10000.0 } }

    [risk]                        # cexarb.risk.RiskLimits
    max_order_notional = 5000.0

    [latency]                     # optional; cexarb.hotpath
    busy_poll = false             # true: the event loop polls without sleeping (costs one core)
    arena_reserve_mib = 16        # heap memory touched ahead of need (cexarb.memory; 0 = off)

    [[strategies]]
    type = "spot_futures_hedging"
    [strategies.params]           # the strategy's Params (validated by the strategy registry)
    strategy_id = "sfh-gate"
    spot_instrument = "gateio-spot:BTC_USDT"
    futures_instrument = "gateio-futures:BTC_USDT"
    position_size_usdt = 200.0

Credentials: ``credentials`` is a spec for :meth:`cexarb.venues.secrets.ApiCredentials.load`
(``env:KEY_VAR,SECRET_VAR[,UID_VAR]`` or ``file:PATH[#SECTION]``). Environment overrides win over
the file: ``CEXARB_<VENUE>_API_KEY`` and ``CEXARB_<VENUE>_API_SECRET`` (and optionally
``CEXARB_<VENUE>_UID``), ``<VENUE>`` being the venue name upper-cased with ``-`` as ``_``
(``CEXARB_GATEIO_SPOT_API_KEY``). Keys are never logged or printed.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from cexarb.risk import RiskLimits
from cexarb.strategy import registry
from cexarb.strategy.machine import StrategyMachine
from cexarb.venues.secrets import ApiCredentials, CredentialsError
from cexarb.venues.sim.venue import SimLatency

__all__ = [
    "VENUE_KINDS",
    "ConfigError",
    "LatencyConfig",
    "PaperConfig",
    "RunConfig",
    "StrategyConfig",
    "VenueConfig",
    "env_credentials",
    "load_config",
    "parse_config",
]

#: venue names a config may use (the connectors' ``name``)
VENUE_KINDS = ("gateio-spot", "gateio-futures", "mexc-spot")


class ConfigError(ValueError):
    """The configuration is invalid; ``field`` is the dotted path of the offending field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class VenueConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One venue's connection.

    Attributes:
        rest_url: REST base URL (the venue's, or the simulator's ``http://127.0.0.1:PORT``).
        ws_url: WebSocket URL (empty: the connector's default production URL).
        symbols: venue symbols to load and stream (``BTC_USDT``); empty: those the strategies use.
        credentials: ``env:...`` / ``file:...`` spec for live trading (see the module docstring).
        stall_timeout_s: reconnect a WebSocket silent this long.
    """

    rest_url: str = ""
    ws_url: str = ""
    symbols: list[str] = []
    credentials: str = ""
    stall_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not (0 < self.stall_timeout_s < math.inf):
            raise ValueError(f"stall_timeout_s must be finite and > 0, got {self.stall_timeout_s!r}")


class PaperConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The in-process simulated venue that fills paper orders (one paper account per strategy).

    Attributes:
        latency: order-entry / ack latency of the simulated venue (ns).
        balances: starting balances ``{venue: {asset: amount}}`` of each strategy's paper account;
            venues not named get ``default_quote_balance`` of quote (and nothing of base).
        default_quote_balance: see ``balances``.
        leverage: derivatives margin = notional / leverage.
    """

    latency: SimLatency = SimLatency()
    balances: dict[str, dict[str, float]] = {}
    default_quote_balance: float = 10_000.0
    leverage: float = 1.0

    def __post_init__(self) -> None:
        if not (self.leverage > 0 and self.leverage < float("inf")):
            raise ValueError(f"leverage must be finite and > 0, got {self.leverage!r}")
        if not (0 <= self.default_quote_balance < math.inf):
            raise ValueError(f"default_quote_balance must be finite and >= 0, got {self.default_quote_balance!r}")
        for venue, assets in self.balances.items():
            for asset, amount in assets.items():
                if not (0 <= amount < math.inf):
                    raise ValueError(f"balances.{venue}.{asset} must be finite and >= 0, got {amount!r}")


class LatencyConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the engine's event loop waits for market data (:mod:`cexarb.hotpath`).

    Attributes:
        busy_poll: poll the sockets without ever sleeping (:class:`cexarb.hotpath.BusyPoll`), so
            a market frame finds the loop running instead of waking it, and run the warmers (each
            connector's ``warm_market``, each strategy's ``warm``). Costs one core at 100 %; only
            worth it with a core to spare for it (on a 2-core VM shared with other busy processes
            it made the tail worse, see benchmarks/test_p5_tick_to_order_loopback.py).
        warm_interval_us: the least time between two runs of the hot-path warmers, µs (> 0).
        arena_reserve_mib: memory kept touched ahead of the heap's growth, MiB (>= 0; 0 turns
            the reserve off): pymalloc arenas topped up at the engine's safe points so that an
            order path that allocates takes no page fault (:mod:`cexarb.memory`).
    """

    busy_poll: bool = False
    warm_interval_us: float = 100.0
    arena_reserve_mib: int = 16

    def __post_init__(self) -> None:
        if self.arena_reserve_mib < 0:
            raise ValueError(f"arena_reserve_mib must be >= 0, got {self.arena_reserve_mib!r}")
        if not (0 < self.warm_interval_us < float("inf")):
            raise ValueError(f"warm_interval_us must be finite and > 0, got {self.warm_interval_us!r}")


class StrategyConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One strategy: its registry type and its parameters (validated by :func:`registry.create`)."""

    type: str
    params: dict[str, Any] = {}


class RunConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The whole file; see the module docstring for an example.

    Attributes:
        mode: ``"paper"`` or ``"live"``; live needs ``--paper`` absent and keys for every venue.
        duration_s: stop after this long, seconds (0 = until a signal or every strategy ended).
        sync_timeout_s: how long to wait for every watched book to be in sync before starting.
        close_timeout_s: on stop, how long strategies get to close their positions.
        max_terminal_orders: per strategy, the finished orders (filled, canceled, rejected) kept
            in memory at least (>= 1); older ones are dropped once finished for
            ``terminal_order_min_age_s``, so a long run's memory and order-map rebuilds stay
            bounded (:mod:`cexarb.retention`). Counters and positions cover the whole run.
        terminal_order_min_age_s: see ``max_terminal_orders``, seconds (>= 0): how long a
            finished order still takes late fills and updates.
        cancel_stale_orders: live only: at start, cancel the open orders an earlier run of a
            configured strategy left on the account (client order id
            ``{strategy_id}-{session}-{n}`` of another session), which this run could not
            manage; false leaves them open (each is logged at WARNING either way). Other
            clients' orders are never touched.
    """

    venues: dict[str, VenueConfig]
    strategies: list[StrategyConfig]
    mode: Literal["paper", "live"] = "paper"
    duration_s: float = 0.0
    sync_timeout_s: float = 20.0
    close_timeout_s: float = 15.0
    max_terminal_orders: int = 10_000
    terminal_order_min_age_s: float = 60.0
    cancel_stale_orders: bool = True
    paper: PaperConfig = PaperConfig()
    risk: RiskLimits = RiskLimits()
    latency: LatencyConfig = LatencyConfig()

    def __post_init__(self) -> None:
        if not (0 <= self.duration_s < math.inf):  # 0 already means "until stopped"
            raise ValueError(f"duration_s must be finite and >= 0, got {self.duration_s!r}")
        for name in ("sync_timeout_s", "close_timeout_s"):
            if not (0 < getattr(self, name) < math.inf):
                raise ValueError(f"{name} must be finite and > 0, got {getattr(self, name)!r}")
        if self.max_terminal_orders < 1:
            raise ValueError(f"max_terminal_orders must be >= 1, got {self.max_terminal_orders!r}")
        if not (0 <= self.terminal_order_min_age_s < float("inf")):
            raise ValueError(f"terminal_order_min_age_s must be finite and >= 0, got {self.terminal_order_min_age_s!r}")

    def build_strategies(self) -> list[StrategyMachine[Any]]:
        """Create every strategy through the registry.

        Raises:
            ConfigError: naming ``strategies[i].type`` or ``strategies[i].params.<field>``.
        """
        out: list[StrategyMachine[Any]] = []
        seen: set[str] = set()
        for i, sc in enumerate(self.strategies):
            try:
                strategy = registry.create(sc.type, **sc.params)
            except registry.StrategyParamError as exc:
                field = f"strategies[{i}].params.{exc.field}" if exc.field else f"strategies[{i}].params"
                raise ConfigError(str(exc), field) from None
            except ValueError as exc:
                raise ConfigError(str(exc), f"strategies[{i}].type") from None
            if strategy.strategy_id in seen:
                raise ConfigError(f"duplicate strategy_id {strategy.strategy_id!r}", f"strategies[{i}].params.strategy_id")
            seen.add(strategy.strategy_id)
            out.append(strategy)
        return out


def _field_of(message: str) -> tuple[str, str | None]:
    """Split msgspec's ``... - at `$.a.b[0]``` into (message, ``a.b[0]``)."""
    marker = " - at `$"
    if marker in message:
        text, _, rest = message.partition(marker)
        path = rest.rstrip("`").lstrip(".")
        return text, path or None
    return message, None


_CLASS_PREFIX = re.compile(r"[A-Z][A-Za-z0-9_]*\.")


def _post_init_field(text: str) -> str | None:
    """The field a struct's ``__post_init__`` names in ``<field> must ..., got <value>``, relative
    to its struct (msgspec's path stops at the struct): ``leverage``, ``balances.gateio-spot.USDT``;
    a class prefix (``RiskLimits.max_open_orders``, ``SimLatency.ack_ns``) is dropped. None if the
    message is not of that form."""
    name, sep, _ = text.partition(" must ")
    if not sep:
        return None
    if (prefix := _CLASS_PREFIX.match(name)) is not None:
        name = name[prefix.end():]
    return name if name.split(".", 1)[0].isidentifier() else None


def _validation_error(exc: msgspec.ValidationError, table: str | None) -> tuple[str, str | None]:
    """(message, dotted path of the offending field) of a msgspec error decoding ``table``
    (None: the whole config). msgspec names the table, not the field, for a missing or unknown
    field and for a ``__post_init__`` error; those add the field to the path."""
    text, field = _field_of(str(exc))
    if table:
        field = f"{table}.{field}" if field else table
    for marker in ("missing required field `", "unknown field `"):
        if marker in text:
            name: str | None = text.split(marker, 1)[1].split("`", 1)[0]
            break
    else:
        name = _post_init_field(text)
    if name:
        field = f"{field}.{name}" if field else name
    return text, field


def parse_config(data: Mapping[str, Any] | str | bytes, *, source: str = "<config>") -> RunConfig:
    """Decode a config from a TOML text or an already-parsed mapping.

    Raises:
        ConfigError: TOML syntax, a wrong type, a missing or unknown field, a value out of range
            (``field`` and the message name the field's full dotted path, ``paper.leverage``),
            an unknown venue name, or a strategy instrument on a venue not configured.
    """
    if isinstance(data, (str, bytes)):
        text = data.decode() if isinstance(data, bytes) else data
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    venues = data.get("venues")
    if isinstance(venues, Mapping):  # decode each venue table first: errors then name the venue
        for name, table in venues.items():
            try:
                msgspec.convert(table, VenueConfig, strict=True)
            except msgspec.ValidationError as exc:
                text, field = _validation_error(exc, f"venues.{name}")
                raise ConfigError(f"{text} ({source})", field) from None
    try:
        cfg = msgspec.convert(dict(data), RunConfig, strict=True)
    except msgspec.ValidationError as exc:
        text, field = _validation_error(exc, None)
        raise ConfigError(f"{text} ({source})", field) from None
    for name in cfg.venues:
        if name not in VENUE_KINDS:
            raise ConfigError(f"unknown venue {name!r}; known: {', '.join(VENUE_KINDS)}", f"venues.{name}")
    for name in cfg.paper.balances:
        if name not in cfg.venues:
            raise ConfigError(f"balances for venue {name!r} not in [venues]", f"paper.balances.{name}")
    if not cfg.strategies:
        raise ConfigError("at least one [[strategies]] entry is needed", "strategies")
    for i, strategy in enumerate(cfg.build_strategies()):
        for key in strategy.watched_instruments():
            venue, _, symbol = key.partition(":")
            if venue not in cfg.venues:
                raise ConfigError(f"instrument {key!r} is on venue {venue!r}, which is not in [venues]",
                                  f"strategies[{i}].params")
            symbols = cfg.venues[venue].symbols
            if symbols and symbol not in symbols:
                raise ConfigError(f"instrument {key!r}: symbol {symbol!r} not in venues.{venue}.symbols",
                                  f"strategies[{i}].params")
    return cfg


def load_config(path: str | Path) -> RunConfig:
    """Read and decode a TOML config file (ConfigError names the file and the field)."""
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config {str(p)!r}: {exc.strerror}") from None
    return parse_config(text, source=str(p))


def _env_prefix(venue: str) -> str:
    return "CEXARB_" + venue.upper().replace("-", "_")


def env_credentials(venue: str, cfg: VenueConfig, environ: Mapping[str, str] | None = None) -> ApiCredentials | None:
    """The venue's credentials: ``CEXARB_<VENUE>_API_KEY/_API_SECRET[/_UID]`` if both set, else the
    config's ``credentials`` spec, else None.

    Raises:
        ConfigError: only one of the two variables is set, or the spec cannot be loaded (the
            message names the source, never a value).
    """
    env = os.environ if environ is None else environ
    prefix = _env_prefix(venue)
    key, secret = env.get(f"{prefix}_API_KEY", ""), env.get(f"{prefix}_API_SECRET", "")
    if key and secret:
        return ApiCredentials(key, secret, uid=env.get(f"{prefix}_UID") or None, source=f"env:{prefix}_API_KEY")
    if key or secret:
        raise ConfigError(f"set both {prefix}_API_KEY and {prefix}_API_SECRET (only one is set)",
                          f"venues.{venue}.credentials")
    if not cfg.credentials:
        return None
    try:
        return ApiCredentials.load(cfg.credentials, environ=env)
    except CredentialsError as exc:
        raise ConfigError(str(exc), f"venues.{venue}.credentials") from None
