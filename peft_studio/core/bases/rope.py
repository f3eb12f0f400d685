"""Rotary position embeddings (Su et al., 2021) with the scalings transformers implements for Llama-style models.

`rope_spec` reads a config.json the way transformers 5 standardises it (`rope_parameters`, or the older
`rope_scaling` + `rope_theta`); `Rotary` gives the cos/sin tables for a forward pass. Every formula below
mirrors transformers' `modeling_rope_utils.py` operation by operation (same dtypes, same order), so the angles
are the same bits, not merely close:

- default:  inv_freq_i = 1 / theta^(2i/d)
- linear:   inv_freq / factor (position interpolation)
- dynamic:  NTK-aware: theta grows with the sequence once it passes max_position_embeddings; like
            transformers the grown frequencies are kept for later, shorter calls until a call is shorter
            than max_position_embeddings again (state in the module)
- yarn:     a ramp between interpolated and extrapolated frequencies, cos/sin scaled by attention_factor
- llama3:   long wavelengths divided by factor, short ones kept, a smooth ramp between

Types transformers has and the studio does not (longrope, proportional, ...) and a partial rotary factor are
refused by name, never ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import BaseLoadError
from .config_limits import checked_rope_theta

ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "llama3")
DEFAULT_THETA = 10_000.0
# rope parameters each type needs, as transformers' validation requires them
REQUIRED = {"linear": ("factor",), "dynamic": ("factor",), "yarn": ("factor",),
            "llama3": ("factor", "low_freq_factor", "high_freq_factor")}
NUMBERS = ("rope_theta", "factor", "low_freq_factor", "high_freq_factor", "attention_factor", "beta_fast",
           "beta_slow", "mscale", "mscale_all_dim", "original_max_position_embeddings")


@dataclass(frozen=True)
class RopeSpec:
    """The rotary settings of a model, standardised as transformers does."""

    rope_type: str = "default"
    theta: float = DEFAULT_THETA
    factor: float | None = None
    original_max_positions: int | None = None
    low_freq_factor: float | None = None
    high_freq_factor: float | None = None
    attention_factor: float | None = None
    beta_fast: float | None = None
    beta_slow: float | None = None
    mscale: float | None = None
    mscale_all_dim: float | None = None
    truncate: bool = True

    def describe(self) -> str:
        scaled = "" if self.rope_type == "default" else f", {self.rope_type} scaling x{self.factor:g}"
        return f"RoPE theta {self.theta:g}{scaled}"


def _number(params: Mapping[str, Any], key: str, where: str) -> float | None:
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise BaseLoadError(f"{where}: rope_parameters.{key} must be a positive number (got {value!r})")
    return float(value)


def rope_spec(raw: Mapping[str, Any], where: str, max_positions: int) -> RopeSpec:
    """The rotary settings of a Llama-style config.json; an unsupported type or field is refused by name."""
    params = raw.get("rope_scaling") or raw.get("rope_parameters") or {}
    if not isinstance(params, Mapping):
        raise BaseLoadError(f"{where}: rope_scaling / rope_parameters must be an object (got {params!r})")
    params = dict(params)
    top_theta = checked_rope_theta(raw.get("rope_theta"), where)
    if "rope_theta" not in params and top_theta is not None:
        params["rope_theta"] = top_theta
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in ROPE_TYPES:
        raise BaseLoadError(f"{where}: rope_type {rope_type!r} is not implemented by the studio "
                            f"(supported: {', '.join(ROPE_TYPES)}); it would change every output")
    nested = [key for key in params if isinstance(params[key], Mapping)]
    if nested:
        raise BaseLoadError(f"{where}: per-layer-type rope_parameters ({', '.join(nested)}) are not supported")
    for key in ("partial_rotary_factor",):
        value = params.get(key, raw.get(key))
        if value is not None and value != 1:
            raise BaseLoadError(f"{where}: {key} {value!r} (rotary on part of each head) is not implemented by "
                                "the studio")
    for key in REQUIRED.get(rope_type, ()):
        if params.get(key) is None:
            raise BaseLoadError(f"{where}: rope_parameters.{key} is missing (rope_type {rope_type!r} needs it)")
    values = {key: _number(params, key, where) for key in NUMBERS}
    original = None
    if rope_type in ("llama3", "yarn"):  # transformers: the config's own field wins, else max_position_embeddings
        top = raw.get("original_max_position_embeddings")
        original = top if isinstance(top, int) and top > 0 else int(values["original_max_position_embeddings"]
                                                                     or max_positions)
    truncate = params.get("truncate", True)
    if not isinstance(truncate, bool):
        raise BaseLoadError(f"{where}: rope_parameters.truncate must be true or false (got {truncate!r})")
    return RopeSpec(rope_type, values["rope_theta"] or DEFAULT_THETA, values["factor"], original,
                    values["low_freq_factor"], values["high_freq_factor"], values["attention_factor"],
                    values["beta_fast"], values["beta_slow"], values["mscale"], values["mscale_all_dim"], truncate)


# ---- inverse frequencies (transformers' ROPE_INIT_FUNCTIONS, operation by operation) ----------------------------
def _default(spec: RopeSpec, dim: int) -> torch.Tensor:
    return 1.0 / (spec.theta ** (torch.arange(0, dim, 2, dtype=torch.int64, device="cpu").to(dtype=torch.float) / dim))


def _dynamic(spec: RopeSpec, dim: int, max_positions: int, seq_len: torch.Tensor | None) -> torch.Tensor:
    factor = spec.factor
    if seq_len is None:
        length: Any = max_positions
    else:
        length = torch.maximum(seq_len, torch.tensor(max_positions, dtype=seq_len.dtype, device="cpu"))
    base = spec.theta * ((factor * length / max_positions) - (factor - 1)) ** (dim / (dim - 2))
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64, device="cpu").to(dtype=torch.float) / dim))


def _yarn_mscale(scale: float, mscale: float = 1) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def _yarn(spec: RopeSpec, dim: int, max_positions: int) -> tuple[torch.Tensor, float]:
    base, original = spec.theta, spec.original_max_positions or max_positions
    factor = spec.factor if spec.factor is not None else max_positions / original
    attention_factor = spec.attention_factor
    if attention_factor is None:
        if spec.mscale and spec.mscale_all_dim:
            attention_factor = float(_yarn_mscale(factor, spec.mscale) / _yarn_mscale(factor, spec.mscale_all_dim))
        else:
            attention_factor = _yarn_mscale(factor)
    beta_fast, beta_slow = spec.beta_fast or 32, spec.beta_slow or 1

    def correction_dim(rotations: float) -> float:
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if spec.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # transformers: prevent a division by zero
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32, device="cpu") - low) / (high - low), 0, 1)
    pos_freqs = base ** (torch.arange(0, dim, 2, device="cpu").to(dtype=torch.float) / dim)
    extrapolation, interpolation = 1.0 / pos_freqs, 1.0 / (factor * pos_freqs)
    keep = 1 - ramp
    return interpolation * (1 - keep) + extrapolation * keep, attention_factor


def _llama3(spec: RopeSpec, dim: int) -> torch.Tensor:
    inv_freq = _default(spec, dim)
    factor, low, high, old = spec.factor, spec.low_freq_factor, spec.high_freq_factor, spec.original_max_positions
    low_wavelen, high_wavelen = old / low, old / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)


def inverse_frequencies(spec: RopeSpec, dim: int, max_positions: int,
                        seq_len: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """(inv_freq [dim/2] float32, the factor cos and sin are multiplied by)."""
    if spec.rope_type == "linear":
        return _default(spec, dim) / spec.factor, 1.0
    if spec.rope_type == "dynamic":
        return _dynamic(spec, dim, max_positions, seq_len), 1.0
    if spec.rope_type == "yarn":
        return _yarn(spec, dim, max_positions)
    if spec.rope_type == "llama3":
        return _llama3(spec, dim), 1.0
    return _default(spec, dim), 1.0


class Rotary(nn.Module):
    """cos/sin tables for given positions. No parameters and no buffers: nothing here is a weight (a buffer would
    count in the frozen base's fingerprint, and dynamic scaling changes it as transformers does)."""

    def __init__(self, spec: RopeSpec, head_dim: int, max_positions: int) -> None:
        super().__init__()
        self.spec, self.head_dim, self.max_positions = spec, head_dim, max_positions
        self.inv_freq, self.scaling = inverse_frequencies(spec, head_dim, max_positions)
        self.original_inv_freq = self.inv_freq
        self.cached_length = max_positions  # dynamic: the sequence length the frequencies were grown for

    def _dynamic_update(self, positions: torch.Tensor) -> None:
        """transformers' `dynamic_frequency_update`: grow past the cached length, reset below the original."""
        seq_len = torch.max(positions) + 1
        if seq_len > self.cached_length:
            self.inv_freq, self.scaling = inverse_frequencies(self.spec, self.head_dim, self.max_positions,
                                                              seq_len.cpu())
            self.cached_length = int(seq_len)
        if seq_len < self.max_positions < self.cached_length:
            self.inv_freq, self.cached_length = self.original_inv_freq, self.max_positions

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [L, head_dim] for 1-D positions (every row of a right-padded batch shares them)."""
        if self.spec.rope_type == "dynamic":
            self._dynamic_update(positions)
        freqs = positions[:, None].float() * self.inv_freq.to(device=positions.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * self.scaling).to(dtype), (emb.sin() * self.scaling).to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, L, d] rotated by position: x cos + rotate_half(x) sin (transformers' rotate-half layout)."""
    return (x * cos) + (rotate_half(x) * sin)
