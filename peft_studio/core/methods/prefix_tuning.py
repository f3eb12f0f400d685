"""Prefix tuning: trainable key/value prefixes in each selected attention (Li & Liang, 2021)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..bases.frozen import FrozenBase
from ..bases.sites import KV_PREFIX, Site
from ..errors import ConfigError
from ..model import StudioModel
from .config import MethodConfig, option, parse_layers
from .method import Method, MethodCard, ShapeChange, code_line, require_kind


class PrefixProjection(nn.Module):
    """PEFT's prefix reparameterisation: Embedding(n, d) -> Linear -> tanh -> Linear(2 d per layer)."""

    def __init__(self, tokens: int, width: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.randn(tokens, width))
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.Tanh(), nn.Linear(hidden, layers * 2 * width))
        self.width = width

    def forward(self) -> torch.Tensor:
        """[layers, 2, n, d]: keys and values for every selected layer."""
        tokens = self.embedding.shape[0]
        return self.mlp(self.embedding).view(tokens, -1, 2, self.width).permute(1, 2, 0, 3)


class KVPrefix(nn.Module):
    """Prepends n keys and values (split into heads) and extends the key mask with ones."""

    def __init__(self, tokens: int, width: int, projection: PrefixProjection | None = None, index: int = 0) -> None:
        super().__init__()
        if projection is None:
            self.keys = nn.Parameter(torch.randn(tokens, width))
            self.values = nn.Parameter(torch.randn(tokens, width))
        # A plain reference, not a submodule: the shared MLP is registered once, in model.extras.
        self.__dict__["projection"] = projection
        self.index = index

    def prefix(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.projection is None:
            return self.keys, self.values
        keys_values = self.projection()[self.index]
        return keys_values[0], keys_values[1]

    def forward(self, keys: torch.Tensor, values: torch.Tensor, key_mask: torch.Tensor):
        batch, heads, _, head_dim = keys.shape
        prefix_k, prefix_v = self.prefix()

        def heads_view(t: torch.Tensor) -> torch.Tensor:
            return t.view(1, -1, heads, head_dim).transpose(1, 2).expand(batch, -1, -1, -1)

        ones = torch.ones(batch, prefix_k.shape[0], dtype=key_mask.dtype, device=key_mask.device)
        keys = torch.cat([heads_view(prefix_k), keys], dim=2)  # keys L -> L + n
        values = torch.cat([heads_view(prefix_v), values], dim=2)
        return keys, values, torch.cat([ones, key_mask], dim=1)


class PositionShift(nn.Module):
    """In the prompt slot: leaves the tokens alone but starts their positions at n, as PEFT's prefix on BERT
    does (transformers counts the n prefix keys as past tokens)."""

    def __init__(self, tokens: int) -> None:
        super().__init__()
        self.position_offset = tokens  # read by the embeddings: positions n .. n + L - 1
        self.reserved_positions = tokens

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return embeds, mask


POSITION_CHOICES = ("kept", "shifted")


@dataclass
class PrefixTuningConfig(MethodConfig):
    tokens: int = option(8, "prefix length n (attention keys L -> L+n)", low=1, high=64)
    layers: str | None = option(None, "comma list of layer indices (default: every layer)")
    prefix_projection: int = option(0, "hidden size of the reparameterisation MLP (0: no projection)",
                                     low=0, high=4096)
    positions: str = option("kept", "token positions: kept (0 .. L-1) or shifted by n as PEFT's prefix on BERT "
                                    "(needed to exchange prefix adapters with PEFT)", choices=POSITION_CHOICES)


class PrefixTuningMethod(Method):
    name = "prefix-tuning"
    title = "Prefix Tuning"
    config_cls = PrefixTuningConfig
    site_kinds = (KV_PREFIX,)
    claims_kinds = (KV_PREFIX,)
    glyph = "KV"
    colour = "#7a4fd0"
    card = MethodCard(
        where="a key/value prefix in each layer's attention",
        intuition="every layer sees extra trainable context when it attends",
        advantages="more expressive than soft prompts: it reaches every layer's attention",
        limitations="higher implementation complexity; the prefix costs attention time at inference",
        formula="attn(q, [P_k ; K], [P_v ; V]),  keys L -> L + n",
    )

    def selected_sites(self, config: PrefixTuningConfig, base: FrozenBase) -> list[Site]:
        sites = require_kind(base, self.name, KV_PREFIX)
        layers = set(parse_layers(config.layers, base.num_layers))
        chosen = [s for s in sites if s.layer in layers]
        if not chosen:
            raise ConfigError("layers: no attention layer selected")
        return chosen

    def validate(self, config: PrefixTuningConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        if config.positions == "shifted":
            if not any(s.module_path == "embeddings.prompt" for s in base.sites()):
                raise ConfigError(f"positions shifted: base {base.name!r} has no position embeddings to shift")
            if base.max_positions is not None and base.max_positions - config.tokens < 2:
                left = base.max_positions - config.tokens
                raise ConfigError(f"tokens: a shifted prefix of {config.tokens} leaves {left} of the "
                                  f"{base.max_positions} positions of {base.name} for the text")

    def options_for_sites(self, sites: list[Site], base: FrozenBase, current: dict[str, Any]) -> dict[str, Any]:
        layers = sorted({s.layer for s in sites if s.layer is not None})
        every = layers == list(range(base.num_layers))
        return {**current, "layers": None if every else ",".join(map(str, layers))}

    def live_formula(self, config: PrefixTuningConfig) -> str:
        return self.card.formula.replace("+ n", f"+ {config.tokens}")

    def code(self, config: PrefixTuningConfig) -> str:
        return code_line(KVPrefix.forward, "prefix_k), keys")

    def shape_change(self, config: PrefixTuningConfig) -> ShapeChange:
        return ShapeChange(key_tokens=config.tokens)

    def attach(self, model: StudioModel, config: PrefixTuningConfig) -> None:
        sites = self.selected_sites(config, model.base)
        width = model.base.hidden_size
        projection = None
        if config.prefix_projection:
            projection = PrefixProjection(config.tokens, width, config.prefix_projection, len(sites))
            model.extras["prefix_projection"] = projection
        for index, site in enumerate(sites):
            model.swap(site.module_path, KVPrefix(config.tokens, width, projection, index))
        if config.positions == "shifted":
            model.swap("embeddings.prompt", PositionShift(config.tokens))

    def parameter_count(self, config: PrefixTuningConfig, base: FrozenBase) -> int:
        layers, n, d, h = len(self.selected_sites(config, base)), config.tokens, base.hidden_size, \
            config.prefix_projection
        if not h:
            return layers * 2 * n * d
        return n * d + (d * h + h) + (h * layers * 2 * d + layers * 2 * d)

    def formula_text(self, config: PrefixTuningConfig, base: FrozenBase) -> str:
        layers, n, d = len(self.selected_sites(config, base)), config.tokens, base.hidden_size
        total = self.parameter_count(config, base)
        if not config.prefix_projection:
            return f"layers x 2 x n x d = {layers} x 2 x {n} x {d} = {total:,}"
        h = config.prefix_projection
        return (f"n d + (d h + h) + (h + 1) x layers x 2 d = "
                f"{n}x{d} + ({d}x{h}+{h}) + ({h}+1)x{layers}x2x{d} = {total:,}")

    def shape_notes(self, config: PrefixTuningConfig, base: FrozenBase, seq_len: int) -> list[str]:
        layers = [s.layer for s in self.selected_sites(config, base)]
        notes = [f"attention keys {seq_len} -> {seq_len + config.tokens} (and values) in layers "
                 f"{', '.join(map(str, layers))}; the sequence itself stays {seq_len}"]
        if config.positions == "shifted":
            notes.append(f"token positions {config.tokens} .. {config.tokens + seq_len - 1} (shifted as PEFT's); "
                         f"texts are cut to {(base.max_positions or 0) - config.tokens} tokens")
        return notes
