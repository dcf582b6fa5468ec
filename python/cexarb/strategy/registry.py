"""Strategy factory: ``create(StrategyType.X, **params)`` and ``list()``.

Strategies register themselves on import (the package ``cexarb.strategy`` imports every
strategy module). Parameters are validated by msgspec against the strategy's ``Params`` Struct:
a wrong type, a missing required field or an unknown field fails with a
:class:`StrategyParamError` that names the field.
"""

from __future__ import annotations

import builtins
from typing import Any

import msgspec

from cexarb.strategy.machine import StrategyMachine, StrategyType

__all__ = ["StrategyParamError", "create", "get", "list", "register", "registered"]

_REGISTRY: dict[StrategyType, type[StrategyMachine[Any]]] = {}


class StrategyParamError(ValueError):
    """Invalid strategy parameters; ``field`` names the offending parameter when known."""

    def __init__(self, strategy_type: StrategyType, message: str, field: str | None) -> None:
        super().__init__(f"{strategy_type.value}: {message}")
        self.field = field


def register(cls: type[StrategyMachine[Any]]) -> type[StrategyMachine[Any]]:
    """Class decorator: make ``cls`` creatable by its ``strategy_type``."""
    existing = _REGISTRY.get(cls.strategy_type)
    if existing is not None and existing is not cls:
        raise ValueError(f"strategy type {cls.strategy_type.value} already registered by {existing.__name__}")
    _REGISTRY[cls.strategy_type] = cls
    return cls


def get(strategy_type: StrategyType | str) -> type[StrategyMachine[Any]]:  # noqa: D103
    st = _coerce(strategy_type)
    try:
        return _REGISTRY[st]
    except KeyError:
        raise ValueError(f"strategy type {st.value} is not registered; registered: {registered()}") from None


def registered() -> builtins.list[StrategyType]:
    """Registered strategy types, in declaration order."""
    return [st for st in StrategyType if st in _REGISTRY]


list = registered  # noqa: A001 - the spec's name: registry.list()


def create(strategy_type: StrategyType | str, **params: Any) -> StrategyMachine[Any]:
    """Build a strategy from keyword parameters validated against its ``Params``.

    Raises:
        StrategyParamError: unknown strategy type, or a parameter of the wrong type, missing, or
            unknown; the message and ``.field`` name the parameter.
    """
    cls = get(strategy_type)
    try:
        p = msgspec.convert(params, cls.Params, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        field = None
        if "`$." in text:
            field = text.split("`$.", 1)[1].split("`", 1)[0].split("[", 1)[0].split(".", 1)[0]
        elif "missing required field `" in text:
            field = text.split("missing required field `", 1)[1].split("`", 1)[0]
        elif "unknown field `" in text:
            field = text.split("unknown field `", 1)[1].split("`", 1)[0]
        elif text.split(" ", 1)[0] in cls.Params.__struct_fields__:  # __post_init__ messages lead with the field
            field = text.split(" ", 1)[0]
        raise StrategyParamError(cls.strategy_type, text, field) from None
    return cls(p)


def _coerce(strategy_type: StrategyType | str) -> StrategyType:
    if isinstance(strategy_type, StrategyType):
        return strategy_type
    try:
        return StrategyType(str(strategy_type).lower())
    except ValueError:
        raise ValueError(
            f"unknown strategy type {strategy_type!r}; known: {[s.value for s in StrategyType]}"
        ) from None
