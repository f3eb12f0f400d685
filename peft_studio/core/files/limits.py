"""Type and range checks for values a user gives (setup files, the CLI, the API), before anything is built.

A value of the wrong JSON type is refused, never converted: "false" is not a boolean, 2.5 not a
whole number, true not a number. The ranges keep a model buildable and trainable on one machine.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from ..errors import ConfigError

SEED_RANGE = (0, 2**63 - 1)  # torch.manual_seed and random.Random both take these
INT64_RANGE = (-2**63, 2**63 - 1)  # a whole number that becomes a torch int64 (or a C long)
FLOAT32_MAX = 3.4028234663852886e38  # torch.finfo(torch.float32).max: lr, alpha, scales live in float32
MAX_TEXT_OPTION = 10_000
MAX_LIST_OPTION = 1_000


def type_name(value: Any) -> str:
    names = {bool: "true/false", int: "a whole number", float: "a number", str: "text", list: "a list",
             dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def whole_number(value: Any, name: str, low: int, high: int) -> int:
    """`value` when it is an int (not a bool) in [low, high]; else ConfigError naming `name`."""
    if type(value) is not int:
        raise ConfigError(f"{name} should be a whole number, not {type_name(value)} ({_show(value)})")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be in [{low}, {high}] (got {_show(value)})")
    return value


def real_number(value: Any, name: str, low: float, high: float) -> float:
    """`value` as a float when it is an int or float (not a bool), finite, in [low, high]."""
    if type(value) not in (int, float):
        raise ConfigError(f"{name} should be a number, not {type_name(value)} ({_show(value)})")
    if not (math.isfinite(value) and low <= value <= high):
        raise ConfigError(f"{name} must be a finite number in [{low:g}, {high:g}] (got {_show(value)})")
    return float(value)


def float32_number(value: float, name: str, *, nonzero: bool = False) -> float:
    """`value` when float32 (the dtype torch computes it in) holds it: finite after conversion and, with
    `nonzero`, not rounded to 0 (an lr of 1e-50 would silently train nothing)."""
    try:
        stored = struct.unpack("<f", struct.pack("<f", value))[0]
    except (OverflowError, struct.error):
        raise ConfigError(f"{name} = {_show(value)} does not fit float32, the dtype it is computed in "
                          f"(at most {FLOAT32_MAX:.4g} in size)") from None
    if not math.isfinite(stored):
        raise ConfigError(f"{name} = {_show(value)} is not finite in float32, the dtype it is computed in")
    if nonzero and value != 0 and stored == 0:
        raise ConfigError(f"{name} = {_show(value)} rounds to 0 in float32, the dtype it is computed in "
                          "(at least 1.4e-45 in size)")
    return float(value)


def parse_number(text: str, name: str) -> float:
    """A command-line number: finite only, so `--dropout nan` or `--alpha inf` is refused when parsed."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} should be a number (got {_show(text)})") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number (got {_show(text)})")
    return value


def check_seed(value: Any, name: str = "seed") -> int:
    """A seed torch and random both accept: a whole number in [0, 2**63 - 1]."""
    return whole_number(value, name, *SEED_RANGE)


def check_base_options(base: str, options: Any, where: str = "base_options") -> dict[str, Any]:
    """Checked options for a base, against the ranges and choices its class declares (sizes in range,
    heads dividing the width); a pretrained base declares none: its sizes come from its config.json."""
    from ..bases import base_class

    if not isinstance(options, dict):
        raise ConfigError(f"{where} should be an object, not {type_name(options)}")
    cls = base_class(base)
    known = [*cls.option_ranges, *cls.option_choices]
    if not known:
        if options:
            raise ConfigError(f"{where}: base {base!r} takes no options (its sizes come from its config.json); "
                              f"got {', '.join(map(str, options))}")
        return {}
    checked: dict[str, Any] = {}
    for name, value in options.items():
        if name not in known:
            raise ConfigError(f"{where}: unknown option {str(name)[:40]!r} for base {base!r}; known: "
                              f"{', '.join(known)}")
        if value is None and name in cls.nullable_options:
            checked[name] = None
        elif name in cls.option_choices:
            if value not in cls.option_choices[name]:
                raise ConfigError(f"{where}.{name} must be one of {', '.join(cls.option_choices[name])} "
                                  f"(got {_show(value)})")
            checked[name] = value
        else:
            checked[name] = whole_number(value, f"{where}.{name}", *cls.option_ranges[name])
    problem = cls.check_options(checked)
    if problem:
        raise ConfigError(f"{where}: {problem}")
    return checked


def max_positions(base: str, base_options: dict[str, Any]) -> int | None:
    """How many positions a built-in base embeds (None: the base truncates its own inputs)."""
    from ..bases import base_class

    return base_class(base).max_positions(base_options)


def check_positions(base: str, base_options: dict[str, Any], max_len: int, prompt_tokens: int = 0,
                    where: str = "") -> None:
    """Texts of `max_len` tokens (plus a soft prompt) must fit the base's position table, or the first
    long batch fails in the middle of training."""
    limit = max_positions(base, base_options)
    if limit is not None and max_len + prompt_tokens > limit:
        prompt = f" plus {prompt_tokens} prompt tokens" if prompt_tokens else ""
        raise ConfigError(f"{where}texts of up to {max_len} tokens{prompt} do not fit base {base!r}'s "
                          f"{limit} positions: raise max_positions or lower max_len")


def check_option_value(name: str, value: Any, default: Any) -> Any:
    """A method option of the same JSON type as its default: bool, whole number, number, or text
    (a list of names/indices, or null, where the default is null)."""
    if value is None:
        return None
    if isinstance(default, bool):
        if type(value) is not bool:
            raise ConfigError(f"{name} should be true or false, not {type_name(value)} ({_show(value)})")
    elif isinstance(default, int):
        if type(value) is not int:
            raise ConfigError(f"{name} should be a whole number, not {type_name(value)} ({_show(value)})")
    elif isinstance(default, float):
        real_number(value, name, -math.inf, math.inf)
    elif isinstance(default, str) or default is None:
        if isinstance(value, list) and default is None:
            if len(value) > MAX_LIST_OPTION or not all(type(v) in (str, int) for v in value):
                raise ConfigError(f"{name} should be a comma list (text) or a list of names, not "
                                  f"{_show(value)}")
        elif type(value) is not str:
            raise ConfigError(f"{name} should be text, not {type_name(value)} ({_show(value)})")
        if len(str(value)) > MAX_TEXT_OPTION:
            raise ConfigError(f"{name} is {len(str(value))} characters long; the limit is {MAX_TEXT_OPTION}")
    return value
