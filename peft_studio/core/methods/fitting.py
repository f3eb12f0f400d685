"""Options a method can start from on a given base: its defaults where they are valid there, else the first value
of each example option that is (PEFT sizes some defaults for real models: FourierFT's 1000 spectral coefficients
or SHiRA's r = 32 do not fit a 16-wide toy Linear). The family run, the window's method list and the tests use it,
so a method is offered wherever some setting of it fits, and refused with its reason where none does."""

from __future__ import annotations

from typing import Any

from ..bases.frozen import FrozenBase
from ..errors import ConfigError
from . import METHODS
from .config import make_config


def option_pairs(key: Any, value: Any) -> list[tuple[str, Any]]:
    """An example_space entry: one option, or a tuple of options drawn together (BOFT's block size and number)."""
    return list(zip(key, value, strict=True)) if isinstance(key, tuple) else [(key, value)]


def valid_values(method_name: str, base: FrozenBase) -> dict[Any, tuple[Any, ...]]:
    """Each example_space value that is valid on this base on its own; an option with no valid value is left out."""
    method = METHODS[method_name]
    valid: dict[Any, tuple[Any, ...]] = {}
    for option, values in method.example_space.items():
        kept = []
        for value in values:
            try:
                method.validate(make_config(method.config_cls, dict(option_pairs(option, value))), base)
            except ConfigError:
                continue
            kept.append(value)
        if kept:
            valid[option] = tuple(kept)
    return valid


def fitting_options(method_name: str, base: FrozenBase) -> dict[str, Any] | None:
    """{} when the method's defaults are valid on `base`, else the first valid example value of each option;
    None when neither is valid (the method cannot sit on this base at all)."""
    method = METHODS[method_name]
    try:
        method.validate(method.default_config(), base)
        return {}
    except ConfigError:
        pass
    options = dict(pair for option, values in valid_values(method_name, base).items()
                   for pair in option_pairs(option, values[0]))
    try:
        method.validate(make_config(method.config_cls, options), base)
    except ConfigError:
        return None
    return options
