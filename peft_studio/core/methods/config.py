"""Validated method settings whose field metadata (help, range, choices) also builds forms and CLI flags."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..files.limits import INT64_RANGE, float32_number

MAX_SOFT_TOKENS = 2**16  # prompt / prefix tokens: a sanity bound; the base's positions and memory decide (checked)


def option(default: Any, help: str, *, low: float | None = None, high: float | None = None,
           choices: tuple[str, ...] | None = None) -> Any:
    """A config field carrying what a form or a CLI flag needs to present and check it."""
    meta = {"help": help, "low": low, "high": high, "choices": choices}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class MethodConfig:
    """Settings shared by every method."""

    freeze_head: bool = option(False, "keep the classification head frozen (train the method's part only)")

    def check_ranges(self) -> None:
        """Raise ConfigError naming the field and its allowed range for any value outside it."""
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if meta.get("choices") and value not in meta["choices"]:
                raise ConfigError(f"{f.name} must be one of {', '.join(meta['choices'])} (got {value!r})")
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name} must be a finite number (got {value})")
            # checked against the dtype the value lives in: float32 tensors, int64 indices and seeds
            if isinstance(value, float):
                float32_number(value, f.name, nonzero=True)
            elif not INT64_RANGE[0] <= value <= INT64_RANGE[1]:
                raise ConfigError(f"{f.name} must fit a 64-bit integer, {_range_text(*INT64_RANGE)} (got {value})")
            low, high = meta.get("low"), meta.get("high")
            if low is not None and value < low or high is not None and value > high:
                raise ConfigError(f"{f.name} must be in {_range_text(low, high)} (got {value})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _range_text(low: float | None, high: float | None) -> str:
    return f"[{'-inf' if low is None else _num(low)}, {'inf' if high is None else _num(high)}]"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def make_config(config_cls: type[MethodConfig], options: dict[str, Any]) -> MethodConfig:
    """Build a config from loose options (CLI/GUI), ignoring None; unknown names are an error."""
    known = {f.name: f for f in dataclasses.fields(config_cls)}
    values: dict[str, Any] = {}
    for name, value in options.items():
        if value is None:
            continue
        if name not in known:
            raise ConfigError(f"option {name!r} does not apply to this method (it takes: {', '.join(known)})")
        values[name] = _coerce(name, value, known[name].default)
    config = config_cls(**values)
    config.check_ranges()
    return config


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Turn CLI strings into the field's type, naming the field when it cannot."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false (got {value!r})")
    if isinstance(default, int | float):
        return _number(name, value, int if isinstance(default, int) else float)
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):  # a single layer index from a JSON file
        return str(value)
    if isinstance(value, list | tuple) and all(isinstance(v, str | int) and not isinstance(v, bool) for v in value):
        return ",".join(str(v) for v in value)
    raise ConfigError(f"{name} must be text or a list of names (got {value!r})")


def _number(name: str, value: Any, kind: type) -> int | float:
    """A number of the field's kind from a number or its text; booleans, NaN and fractions for ints refused."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{name} must be a number (got {value!r})")
    if isinstance(value, str) and len(value) > 64:
        raise ConfigError(f"{name} must be a number (got a {len(value)}-character text)")
    try:
        number = float(value) if kind is float or isinstance(value, float) or "." in str(value) \
            or "e" in str(value).lower() else int(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name} must be a number (got {value!r})") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise ConfigError(f"{name} must be a finite number (got {value!r})")
    if kind is int:
        if isinstance(number, float) and not number.is_integer():
            raise ConfigError(f"{name} must be a whole number (got {value!r})")
        return int(number)
    return float(number)


def parse_list(name: str, value: str | list | tuple | None) -> list[str] | None:
    """'q, v' -> ['q', 'v']; None stays None (the method's default)."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    items = [item.strip() for item in items if item.strip()]
    if not items:
        raise ConfigError(f"{name} is empty: give a comma list")
    return items


def parse_layers(value: str | list | tuple | None, num_layers: int) -> list[int]:
    """Layer indices; None means every layer. Out of range or not a number -> ConfigError."""
    if value is None:
        return list(range(num_layers))
    if num_layers == 0:
        raise ConfigError("layers: this base has no transformer layers")
    return parse_indices("layers", value, num_layers)


def parse_indices(name: str, value: str | list | tuple, size: int) -> list[int]:
    """Sorted distinct indices in [0, size) from a comma list of numbers and ranges such as 4-7 (both ends
    included); out of range or not a number -> ConfigError naming the option."""
    indices: set[int] = set()
    for item in parse_list(name, value) or []:
        span = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", str(item))  # "4-7": 4 to 7, both included
        try:
            low, high = (int(span[1]), int(span[2])) if span else (int(item), int(item))
        except ValueError:
            raise ConfigError(f"{name} must be integers in [0, {size - 1}] or ranges such as "
                              f"0-{size - 1} (got {item!r})") from None
        for index in (low, high):
            if not 0 <= index < size:
                raise ConfigError(f"{name} must be in [0, {size - 1}] (got {index})")
        if high < low:
            raise ConfigError(f"{name}: the range {item!r} runs backwards; write {high}-{low}")
        indices.update(range(low, high + 1))
    return sorted(indices)


def layer_ranges(indices: list[int] | tuple[int, ...] | set[int]) -> str:
    """Layer indices as short text that parse_layers reads back: runs of three or more as ranges,
    so every layer of an 80-layer model shows as '0-79' rather than eighty numbers."""
    ordered = sorted(set(indices))
    parts: list[str] = []
    start = 0
    for i in range(1, len(ordered) + 1):
        if i == len(ordered) or ordered[i] != ordered[i - 1] + 1:
            run = ordered[start:i]
            parts.append(f"{run[0]}-{run[-1]}" if len(run) >= 3 else ",".join(map(str, run)))
            start = i
    return ",".join(parts)
