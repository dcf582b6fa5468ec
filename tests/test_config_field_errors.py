"""``parse_config`` errors name the offending field's full dotted path (``ConfigError.field`` and
the start of the message), also when a struct's ``__post_init__`` refuses the value, where msgspec
itself only names the table (``paper``, ``risk``, ``paper.latency``, or nothing at the top level);
the message keeps the offending value."""

from __future__ import annotations

import pytest
from cexarb.config import ConfigError, parse_config
from test_paper_engine import config_text_static

GOOD = config_text_static("paper")
GATE_URL = 'rest_url = "http://127.0.0.1:1"'

# (config text, field, text the message must contain: the offending value)
CASES = {
    "paper.leverage": (GOOD + "\n[paper]\nleverage = 0.0\n", "paper.leverage", "got 0.0"),
    "paper.default_quote_balance": (GOOD + "\n[paper]\ndefault_quote_balance = -5.0\n",
                                    "paper.default_quote_balance", "got -5.0"),
    "paper.balances": (GOOD + "\n[paper]\nbalances = { gateio-spot = { USDT = -5.0 } }\n",
                       "paper.balances.gateio-spot.USDT", "got -5.0"),
    "paper.latency": (GOOD + "\n[paper]\nlatency = { order_entry_ns = 1, ack_ns = -3 }\n",
                      "paper.latency.ack_ns", "got -3"),
    "risk.float": (GOOD + "\n[risk]\nmax_order_notional = -1.5\n", "risk.max_order_notional", "got -1.5"),
    "risk.max_open_orders": (GOOD + "\n[risk]\nmax_open_orders = -2\n", "risk.max_open_orders", "got -2"),
    "latency.warm_interval_us": (GOOD + "\n[latency]\nwarm_interval_us = 0\n", "latency.warm_interval_us", "got 0"),
    "latency.arena_reserve_mib": (GOOD + "\n[latency]\narena_reserve_mib = -1\n", "latency.arena_reserve_mib",
                                  "got -1"),
    "sync_timeout_s": ("sync_timeout_s = -1.0\n" + GOOD, "sync_timeout_s", "got -1.0"),
    "duration_s": ("duration_s = inf\n" + GOOD, "duration_s", "got inf"),
    "max_terminal_orders": ("max_terminal_orders = 0\n" + GOOD, "max_terminal_orders", "got 0"),
    "venues.stall_timeout_s": (GOOD.replace(GATE_URL, GATE_URL + "\nstall_timeout_s = 0.0", 1),
                               "venues.gateio-spot.stall_timeout_s", "got 0.0"),
    # unchanged: msgspec's own errors still name the field
    "unknown field": (GOOD + "\n[paper]\nleverag = 2.0\n", "paper.leverag", "unknown field `leverag`"),
    "wrong type": (GOOD + '\n[paper]\nleverage = "x"\n', "paper.leverage", "Expected `float`, got `str`"),
}


@pytest.mark.parametrize(("text", "field", "value"), list(CASES.values()), ids=list(CASES))
def test_config_error_names_the_full_dotted_path(text: str, field: str, value: str) -> None:
    assert parse_config(GOOD).mode == "paper"
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert info.value.field == field, str(info.value)
    assert str(info.value).startswith(f"{field}: "), str(info.value)
    assert value in str(info.value), str(info.value)
