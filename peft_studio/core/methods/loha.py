"""LoHa: the weight change is the Hadamard (element-wise) product of two low-rank products (Hyeon-Woo et al.,
FedPara 2022; LyCORIS).

Follows PEFT's LoHa for a Linear (peft/tuners/loha/layer.py): with W1 = hada_w1_a hada_w1_b and
W2 = hada_w2_a hada_w2_b (each out x r times r x in),

    h = W0 x + b + (alpha / r) (W1 * W2) x

W1_a, W1_b and W2_a start Kaiming-uniform and W2_b at zeros, so the model starts at W0. During training,
module_dropout skips the whole update with that probability and rank_dropout zeroes output rows of the update
(the survivors rescaled by their mean), as PEFT does. The update is a full out x in matrix built every step:
rank r per factor, but up to r^2 as a product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR
from ..model.studio_model import StudioModel
from .config import MethodConfig, option
from .lycoris import (
    LYCORIS_FIELDS,
    LycorisUpdate,
    check_scaling,
    export_own_parameters,
    lycoris_options,
    translate_leaves,
)
from .method import REPARAMETERISED, Method, MethodCard, TargetedMethod, code_line
from .peft_format import unknown


class LohaLinear(LycorisUpdate):
    """A frozen Linear plus (alpha / r) (W1_a W1_b) * (W2_a W2_b)."""

    def __init__(self, base_layer: nn.Module, r: int, alpha: float, rank_dropout: float = 0.0,
                 module_dropout: float = 0.0) -> None:
        super().__init__(base_layer, r, alpha, rank_dropout, module_dropout)
        out_features, in_features = self.out_features, self.in_features
        self.hada_w1_a = nn.Parameter(torch.empty(out_features, r))
        self.hada_w1_b = nn.Parameter(torch.empty(r, in_features))
        self.hada_w2_a = nn.Parameter(torch.empty(out_features, r))
        self.hada_w2_b = nn.Parameter(torch.zeros(r, in_features))  # zero: W2 = 0, so the model starts at W0
        for weight in (self.hada_w1_a, self.hada_w1_b, self.hada_w2_a):  # PEFT's order
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))

    def delta_weight(self) -> torch.Tensor:
        return ((self.hada_w1_a @ self.hada_w1_b) * (self.hada_w2_a @ self.hada_w2_b)) * self.scaling


@dataclass
class LohaConfig(MethodConfig):
    r: int = option(8, "rank of each of the two low-rank products (their Hadamard product reaches rank r^2)",
                    low=1, high=4096)
    alpha: float = option(8.0, "scale numerator: the update is multiplied by alpha / r", low=-1e6, high=1e6)
    rank_dropout: float = option(0.0, "training only: probability of dropping each output row of the update",
                                 low=0.0, high=0.99)
    module_dropout: float = option(0.0, "training only: probability of skipping the whole update for a step",
                                   low=0.0, high=0.99)
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")


class LohaMethod(TargetedMethod):
    name = "loha"
    family_group = REPARAMETERISED
    refused_layers = {"Conv1D": ("PEFT's LoHa wraps nn.Linear (and Conv1d/Conv2d), not transformers' Conv1D, which "
                                  "stores GPT-2's weights as [in, out]")}
    title = "LoHa"
    config_cls = LohaConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless LoHa is already chosen
    targets_default_from = "lora"  # with no targets of its own, the base's LoRA targets (PEFT: query, value)
    example_space = {**Method.example_space, "r": (1, 2, 4), "alpha": (4.0, 8.0), "rank_dropout": (0.0, 0.3),
                     "module_dropout": (0.0, 0.1)}
    peft_space = {"r": (2, 4), "alpha": (4, 8), "rank_dropout": (0.0, 0.2)}
    peft_type = "LOHA"
    exchange_tolerance = 1e-5  # the bar for outputs equal to PEFT's
    peft_config_fields = LYCORIS_FIELDS
    glyph = "⊙"
    colour = "#2e86c1"
    card = MethodCard(
        where="beside a frozen Linear: the element-wise product of two low-rank products, added to W0",
        intuition="a Hadamard product of two rank-r matrices can reach rank r^2: more expressive than LoRA for the "
                  "same parameters",
        advantages="higher effective rank than LoRA at equal size; mergeable into W0 like LoRA",
        limitations="builds the full out x in update every step (slower, more memory than LoRA's two thin "
                    "matmuls); two products to tune",
        formula="h = W0 x + (alpha / r) ((B1 A1) ⊙ (B2 A2)) x",
    )

    def attach(self, model: StudioModel, config: LohaConfig) -> None:
        for site in self.selected_sites(config, model.base):
            original = model.base.get_submodule(site.module_path)
            model.swap(site.module_path, LohaLinear(original, config.r, config.alpha, config.rank_dropout,
                                                    config.module_dropout))

    def parameter_count(self, config: LohaConfig, base: FrozenBase) -> int:
        return sum(2 * config.r * (s.in_features + s.out_features) for s in self.selected_sites(config, base))

    def formula_text(self, config: LohaConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        return f"sum over {len(sites)} Linear(s) of 2 x r x (in + out) = {self.parameter_count(config, base):,}"

    def live_formula(self, config: LohaConfig) -> str:
        return self.card.formula.replace("(alpha / r)", f"({config.alpha:g}/{config.r} = "
                                                         f"{config.alpha / config.r:g})")

    def code(self, config: LohaConfig) -> str:
        return f"{code_line(LohaLinear.delta_weight, 'hada_w1_a')}  # then: " \
               f"{code_line(LycorisUpdate.update, 'F.linear')}"

    def shape_notes(self, config: LohaConfig, base: FrozenBase, seq_len: int) -> list[str]:
        return [f"{s.id}: B1, B2 {s.out_features}x{config.r}; A1, A2 {config.r}x{s.in_features}; the update "
                f"(B1 A1) ⊙ (B2 A2) is {s.out_features}x{s.in_features}, rank up to "
                f"{min(config.r ** 2, s.in_features, s.out_features)}" for s in self.selected_sites(config, base)]

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: LohaConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        targets, tensors = export_own_parameters(base, LohaLinear)
        settings = {"r": config.r, "alpha": config.alpha, "rank_dropout": config.rank_dropout,
                    "module_dropout": config.module_dropout, "target_modules": targets, "exclude_modules": None,
                    "use_effective_conv2d": False, "init_weights": True, "layers_to_transform": None,
                    "layers_pattern": None, "rank_pattern": {}, "alpha_pattern": {}}
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        options = lycoris_options(peft_config, where)
        r = options["r"]

        def check(module: str, parts: dict[str, torch.Tensor]) -> None:
            missing = [leaf for leaf in LOHA_LEAVES if leaf not in parts]
            if missing:
                raise unknown(where, module, f"has no {missing[0]} (a LoHa module has {', '.join(LOHA_LEAVES)})")
            out_features, in_features = parts["hada_w1_a"].shape[0], parts["hada_w1_b"].shape[1]
            expected = {"hada_w1_a": (out_features, r), "hada_w1_b": (r, in_features),
                        "hada_w2_a": (out_features, r), "hada_w2_b": (r, in_features)}
            for leaf, shape in expected.items():
                if tuple(parts[leaf].shape) != shape:
                    raise unknown(where, f"{module}.{leaf}", f"has shape {tuple(parts[leaf].shape)}, expected "
                                                             f"{shape} for r={r}")

        return options, translate_leaves(tensors, LOHA_LEAVES, where, "a LoHa", check)

    def peft_check_model(self, base: FrozenBase, options: dict[str, Any], where: str) -> None:
        check_scaling(base, LohaLinear, options, where)


LOHA_LEAVES = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")
