"""Cartridges: a trained key/value cache served as a prefix (Eyuboglu et al., 2025, "Cartridges: Lightweight and
general-purpose long context representations via self-study").

Served exactly as prefix tuning without a projection (n keys and values in front of every layer's attention,
prefix_tuning.py), but the cache is the parameter itself and its first `frozen_tokens` positions stay fixed: the
paper keeps the first token as an attention sink, which many models lean on, so training cannot move it. Follows
PEFT's CartridgeEncoder (peft/tuners/cartridge): one [n, layers x 2 x d] table saved as `prompt_embeddings`
(layer 0 keys, layer 0 values, layer 1 keys, ...), its first num_frozen_tokens rows frozen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..bases.frozen import FrozenBase
from ..errors import AdapterFileError, ConfigError
from ..model.studio_model import StudioModel
from .config import MAX_SOFT_TOKENS, MethodConfig, option
from .method import PROMPT_SIDE, MethodCard, ShapeChange, code_line
from .prefix_tuning import POSITION_CHOICES, KVPrefix, PrefixTuningMethod, shift_positions


class CartridgePrefix(KVPrefix):
    """n keys and values for one attention: the first `frozen` fixed (an attention sink), the rest trained."""

    def __init__(self, tokens: int, width: int, frozen: int) -> None:
        nn.Module.__init__(self)
        self.frozen_keys = nn.Parameter(torch.randn(frozen, width), requires_grad=False)
        self.frozen_values = nn.Parameter(torch.randn(frozen, width), requires_grad=False)
        self.keys = nn.Parameter(torch.randn(tokens - frozen, width))
        self.values = nn.Parameter(torch.randn(tokens - frozen, width))
        self.__dict__["projection"] = None
        self.index = 0

    def prefix_parts(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(self.frozen_keys, self.frozen_values), (self.keys, self.values)]


@dataclass
class CartridgeConfig(MethodConfig):
    tokens: int = option(8, "cache length n (attention keys L -> L+n); bounded by the base's positions and the "
                            "memory check", low=1, high=MAX_SOFT_TOKENS)
    frozen_tokens: int = option(1, "first cache positions kept fixed, as an attention sink (PEFT's "
                                   "num_frozen_tokens; the paper freezes 1)", low=0, high=MAX_SOFT_TOKENS)
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")
    positions: str = option("kept", "token positions: kept (0 .. L-1) or shifted by n as PEFT's prefix on BERT "
                                    "(needed to exchange cartridges with PEFT)", choices=POSITION_CHOICES)


class CartridgeMethod(PrefixTuningMethod):
    name = "cartridge"
    family_group = PROMPT_SIDE
    title = "Cartridges"
    config_cls = CartridgeConfig
    example_space = {**PrefixTuningMethod.example_space, "tokens": (2, 3), "frozen_tokens": (0, 1, 2)}
    example_space.pop("prefix_projection")
    peft_space = {"num_virtual_tokens": (2, 4), "num_frozen_tokens": (0, 1, 2)}
    peft_type = "CARTRIDGE"
    peft_config_fields = {"num_frozen_tokens": ((int,), "a whole number")}
    peft_config_ranges = {"num_frozen_tokens": (0, MAX_SOFT_TOKENS)}
    colour = "#5b3fa8"
    card = MethodCard(
        where="a key/value cache in front of each layer's attention, its first positions frozen",
        intuition="the model reads a trained cache as if it had already read a long document",
        advantages="served as an ordinary KV cache: no extra modules at inference, swapped per corpus",
        limitations="the cache costs attention time like a prefix; trained for one corpus",
        formula="attn(q, [C_k ; K], [C_v ; V]),  C = [frozen sink ; trained],  keys L -> L + n",
    )

    def validate(self, config: CartridgeConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        if config.frozen_tokens > config.tokens:
            raise ConfigError(f"frozen_tokens: {config.frozen_tokens} frozen positions in a cache of "
                              f"{config.tokens} (at most tokens)")

    def shape_change(self, config: CartridgeConfig) -> ShapeChange:
        return ShapeChange(key_tokens=config.tokens, frozen_key_tokens=config.frozen_tokens)

    def code(self, config: CartridgeConfig) -> str:
        return code_line(CartridgePrefix.prefix_parts, "(self.frozen_keys, self.frozen_values)")

    def attach(self, model: StudioModel, config: CartridgeConfig) -> None:
        for site in self.selected_sites(config, model.base):  # the keys' width as prefix tuning's (K/V heads)
            model.swap(site.module_path, CartridgePrefix(config.tokens, site.in_features, config.frozen_tokens))
        shift_positions(model, config)

    def parameter_count(self, config: CartridgeConfig, base: FrozenBase) -> int:
        sites = self.selected_sites(config, base)
        return len(sites) * 2 * (config.tokens - config.frozen_tokens) * sites[0].in_features

    def formula_text(self, config: CartridgeConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        layers, n, f, d = len(sites), config.tokens, config.frozen_tokens, sites[0].in_features
        total = self.parameter_count(config, base)
        return f"layers x 2 x (n - frozen) x d = {layers} x 2 x ({n} - {f}) x {d} = {total:,}"

    # ---- Hugging Face PEFT exchange: prefix tuning's layout, the frozen rows first ---------------------------
    def peft_evaluated(self, config: CartridgeConfig) -> bool:
        return False

    def peft_export(self, base: FrozenBase, config: CartridgeConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        settings, tensors = self.prefix_export(base, config)
        return {**settings, "num_frozen_tokens": config.frozen_tokens}, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        options, studio = super().peft_translate(peft_config, tensors, where)
        tokens = options["tokens"]
        frozen = peft_config.get("num_frozen_tokens", 1)  # PEFT's default
        if not 0 <= frozen <= tokens:
            raise AdapterFileError(f"{where}: num_frozen_tokens {frozen} of a cache of {tokens} tokens (at most "
                                   f"num_virtual_tokens)")
        split: dict[str, torch.Tensor] = {}
        for key, table in studio.items():  # layers.i.attn.kv_prefix.keys / .values: [n, d]
            path, part = key.rsplit(".", 1)
            split[f"{path}.frozen_{part}"], split[key] = table[:frozen], table[frozen:]
        return {"tokens": tokens, "frozen_tokens": frozen, "positions": "shifted"}, split
