"""Bounds on an architecture's config.json, checked before anything is built.

Building even on the meta device costs time and Python objects per layer (10,000 layers ran for
minutes), and sizes of 1e9 and more overflow torch's storage arithmetic. So every size is bounded by
what real checkpoints of the families the studio reads use, with room to spare, and each message
says the bound and where it comes from. The sizes must also fit together (heads divide the width,
K/V heads divide the heads, an even rotary dimension), and rope parameters are checked field by
field. Pure Python on the parsed JSON: a refusal takes microseconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..errors import BaseLoadError

# (largest allowed, the largest real value behind it)
SIZE_LIMITS: dict[str, tuple[int, str]] = {
    "layers": (256, "Llama-3.1-405B has 126"),
    "width": (32_768, "Llama-3.1-405B is 16,384 wide"),
    "intermediate": (131_072, "Llama-3.1-405B's MLP is 53,248 wide"),
    "heads": (256, "Llama-3.1-405B has 128"),
    "head_dim": (1_024, "real models use 64 to 256"),
    "vocab": (1_048_576, "Gemma's 256,000 is among the largest"),
    "positions": (16_777_216, "Qwen2.5-1M reads about 1,010,000"),
    "type_vocab": (1_024, "BERT uses 2"),
}
SIZE_MINIMUMS = {"vocab": 2}  # padding and one token at least
MAX_PARAMETERS = 10**12  # the largest dense checkpoints hold about 4e11 (Llama-3.1-405B)
ROPE_THETA_MAX = 1e12  # Llama-3 uses 5e5, Qwen2.5 1e6 to 1e7
EPS_RANGE = (0.0, 1.0)  # norm epsilons are 1e-5 to 1e-12 in practice; 0 or below divides by zero
ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "longrope", "llama3", "su")
ROPE_NUMBERS = ("rope_theta", "factor", "low_freq_factor", "high_freq_factor", "attention_factor", "beta_fast",
                "beta_slow", "mscale", "mscale_all_dim", "partial_rotary_factor")
ROPE_INTS = ("original_max_position_embeddings",)
ROPE_LISTS = ("short_factor", "long_factor")
MAX_ROPE_KEYS = 32


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def size(raw: Mapping[str, Any], key: str, kind: str, where: str, *, default: int | None = None,
         required: bool = True, low: int = 1) -> int | None:
    """A whole-number size field in [low, the bound for `kind`]; None when absent and not required."""
    value = raw.get(key, default)
    if value is None:
        if required:
            raise BaseLoadError(f"{where}: missing {key}")
        return None
    bound, example = SIZE_LIMITS[kind]
    low = max(low, SIZE_MINIMUMS.get(kind, low))
    if type(value) is not int:
        raise BaseLoadError(f"{where}: {key} must be a whole number (got {_show(value)})")
    if not low <= value <= bound:
        raise BaseLoadError(f"{where}: {key} = {value:,} is out of range [{low}, {bound:,}] (bounded by what real "
                            f"checkpoints use: {example})")
    return value


def positive_number(raw: Mapping[str, Any], key: str, where: str, high: float, default: float | None = None) -> float:
    value = raw.get(key, default)
    if value is None:
        value = default
    if type(value) not in (int, float) or not math.isfinite(value) or not 0 < value <= high:
        raise BaseLoadError(f"{where}: {key} must be a number in (0, {high:g}] (got {_show(value)})")
    return float(value)


def epsilon(raw: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = raw.get(key, default)
    if value is None:
        value = default
    if type(value) not in (int, float) or not math.isfinite(value) or not EPS_RANGE[0] < value < EPS_RANGE[1]:
        raise BaseLoadError(f"{where}: {key} must be a number in (0, 1) (got {_show(value)}; real models use "
                            "1e-5 to 1e-12)")
    return float(value)


def check_parameters(where: str, *, vocab: int, width: int, layers: int, per_layer: int, positions: int = 0) -> None:
    """The whole model's parameter count, bounded (each size alone can be legal and the product absurd)."""
    total = (vocab + positions) * width + layers * per_layer
    if total > MAX_PARAMETERS:
        raise BaseLoadError(f"{where}: the sizes describe {total:.3g} parameters; the limit is {MAX_PARAMETERS:.0e} "
                            "(the largest dense checkpoints hold about 4e11)")


def rope_parameters(raw: Mapping[str, Any], where: str, head_dim: int, max_positions: int) -> float | None:
    """Check `rope_parameters` / `rope_scaling` (transformers' two names) field by field; return the
    rope_theta they carry (None: not given there). Malformed or negative values are refused by name."""
    theta = None
    for key in ("rope_scaling", "rope_parameters"):
        if raw.get(key) is None:
            continue
        block = raw[key]
        if not isinstance(block, Mapping):
            raise BaseLoadError(f"{where}: {key} must be an object or null (got {_show(block)})")
        if block and all(isinstance(v, Mapping) or v is None for v in block.values()):
            inner = [(f"{key}.{name}", v) for name, v in block.items() if v is not None]  # per layer type
        else:
            inner = [(key, block)]
        for label, params in inner:
            found = _rope_block(params, f"{where}: {label}", max_positions)
            theta = found if found is not None else theta
    if head_dim % 2 and head_dim > 4:  # transformers refuses an odd fully-rotated head too
        raise BaseLoadError(f"{where}: rotary positions need an even head dimension (got {head_dim})")
    return theta


def _rope_block(params: Mapping[str, Any], where: str, max_positions: int) -> float | None:
    if len(params) > MAX_ROPE_KEYS:
        raise BaseLoadError(f"{where}: {len(params)} fields; rope parameters have at most {MAX_ROPE_KEYS}")
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in ROPE_TYPES:
        raise BaseLoadError(f"{where}: rope_type {_show(kind)} is not one transformers defines "
                            f"({', '.join(ROPE_TYPES)})")
    for name, value in params.items():
        if name in ("rope_type", "type"):
            continue
        if name in ROPE_NUMBERS:
            if type(value) not in (int, float) or not math.isfinite(value) or value <= 0:
                raise BaseLoadError(f"{where}: {name} must be a positive number (got {_show(value)})")
        elif name in ROPE_INTS:
            if type(value) is not int or not 1 <= value <= max_positions:
                raise BaseLoadError(f"{where}: {name} must be a whole number in [1, {max_positions:,}] "
                                    f"(max_position_embeddings; got {_show(value)})")
        elif name in ROPE_LISTS:
            if (not isinstance(value, list) or len(value) > SIZE_LIMITS["head_dim"][0]
                    or not all(type(v) in (int, float) and math.isfinite(v) and v > 0 for v in value)):
                raise BaseLoadError(f"{where}: {name} must be a list of at most {SIZE_LIMITS['head_dim'][0]} "
                                    "positive numbers")
        elif name == "truncate":
            if not isinstance(value, bool):
                raise BaseLoadError(f"{where}: truncate must be true or false (got {_show(value)})")
        else:
            raise BaseLoadError(f"{where}: unknown field {str(name)[:40]!r} (known: "
                                f"{', '.join(ROPE_NUMBERS + ROPE_INTS + ROPE_LISTS)})")
    if "factor" in params and params["factor"] < 1:
        raise BaseLoadError(f"{where}: factor must be at least 1 (got {_show(params['factor'])})")
    low, high = params.get("low_freq_factor"), params.get("high_freq_factor")
    if low is not None and high is not None and high <= low:
        raise BaseLoadError(f"{where}: high_freq_factor ({high}) must be greater than low_freq_factor ({low})")
    return checked_rope_theta(params.get("rope_theta"), where)


def checked_rope_theta(theta: Any, where: str) -> float | None:
    """rope_theta as a float in (0, ROPE_THETA_MAX], wherever a config carries it (top level or a rope block);
    None when absent."""
    if theta is None:
        return None
    if type(theta) not in (int, float) or not math.isfinite(theta) or not 0 < theta <= ROPE_THETA_MAX:
        raise BaseLoadError(f"{where}: rope_theta must be a number in (0, {ROPE_THETA_MAX:g}] (got {_show(theta)})")
    return float(theta)
