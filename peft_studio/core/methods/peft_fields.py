"""Reading a method's own adapter_config.json fields: typed, ranged, and refused by name when the studio does not
compute what they ask for (never silently ignored).

hf_peft.py checks the JSON types of the fields a method lists in `peft_config_fields`; these helpers turn them into
studio options with the ranges the studio's config allows, and say which field and why when they cannot.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import AdapterFileError


def whole(config: dict[str, Any], name: str, where: str, default: int | None = None, low: int = 1,
          high: int = 2**31 - 1) -> int:
    """An integer field in [low, high]; `default` when absent or null (None: the field is required)."""
    value = config.get(name)
    if value is None and default is not None:
        return default
    if type(value) is not int or not low <= value <= high:
        raise AdapterFileError(f"{where}: {name} must be a whole number in [{low}, {high}] (got {value!r})")
    return value


def number(config: dict[str, Any], name: str, where: str, default: float, low: float = -math.inf,
           high: float = math.inf, high_open: bool = False) -> float:
    """A finite number field in [low, high] (or [low, high) when `high_open`); `default` when absent or null."""
    value = config.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not low <= value <= high or (high_open and value == high):
        closing = ")" if high_open else "]"
        raise AdapterFileError(f"{where}: {name} must be a finite number in [{low:g}, {high:g}{closing} "
                               f"(got {value!r})")
    return float(value)


def flag(config: dict[str, Any], name: str, where: str, default: bool) -> bool:
    value = config.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise AdapterFileError(f"{where}: {name} must be true or false (got {value!r})")
    return value


def refuse_set(config: dict[str, Any], where: str, fields: dict[str, str]) -> None:
    """Refuse each field that is present with a value other than its off value (null, false, empty, 'none'):
    `fields` maps the field's name to what the studio would get wrong."""
    for name, why in fields.items():
        value = config.get(name)
        if value in (None, False, "none", {}, []):
            continue
        raise AdapterFileError(f"{where}: {name} = {str(value)[:60]} is not supported: {why}")


# Per-module ranks and alphas (LoRA-like configs): one r and one alpha per adapter in the studio.
PATTERNS = {"rank_pattern": "the studio uses one rank for every module of an adapter",
            "alpha_pattern": "the studio uses one alpha for every module of an adapter"}
