"""PEANuT: the weight update is a small non-linear network of W0 itself (Zhong et al., 2024, "PEANuT:
Parameter-Efficient Adaptation with Weight-aware Neural Tweakers").

Follows PEFT's PEANuT for nn.Linear (peft/tuners/peanut): each row of W0^T (one per input channel) goes through
A (out -> r), then `depth` encoder and `depth` decoder layers (r -> r, with the activation and U-Net-like
residuals), then B (r -> out, zeros at the start, so the layer starts at W0):

    delta W^T = scaling * B(dec(... enc(f(W0^T A^T)) ...)),     h = W0 x + b + delta W x      (merged: W0 + delta W)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..bases.encoder import ACTIVATIONS
from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR
from ..errors import AdapterFileError
from ..files.safe_io import expect_shape
from ..model.studio_model import StudioModel
from .config import MethodConfig, option
from .mergeable import WeightUpdate
from .method import REPARAMETERISED, Method, MethodCard, TargetedMethod, code_line
from .oft import LINEAR_ONLY
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys

# transformers' ACT2FN names the studio computes the same way (the core does not import transformers)
ACT_FNS = {**ACTIVATIONS, "tanh": lambda: nn.Tanh(), "sigmoid": lambda: nn.Sigmoid(),
           "leaky_relu": lambda: nn.LeakyReLU(0.01), "relu6": lambda: nn.ReLU6(), "linear": lambda: nn.Identity()}


class PeanutLinear(WeightUpdate):
    """A frozen Linear plus a weight update computed from W0 by a small residual network."""

    def __init__(self, base_layer: nn.Module, r: int, depth: int, act_fn: str, scaling: float,
                 init_weights: bool) -> None:
        super().__init__(base_layer)
        out_features = base_layer.out_features
        self.scaling, self.act = scaling, ACT_FNS[act_fn]()
        self.peanut_A = nn.Linear(out_features, r, bias=False)
        self.peanut_encoders = nn.ModuleList([nn.Linear(r, r, bias=False) for _ in range(depth)])
        self.peanut_decoders = nn.ModuleList([nn.Linear(r, r, bias=False) for _ in range(depth)])
        self.peanut_B = nn.Linear(r, out_features, bias=False)
        for layer in (self.peanut_A, *self.peanut_encoders, *self.peanut_decoders):
            nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5))
        if init_weights:
            nn.init.zeros_(self.peanut_B.weight)  # B = 0: starts at W0
        else:
            nn.init.kaiming_uniform_(self.peanut_B.weight, a=math.sqrt(5))

    def delta_weight(self) -> torch.Tensor:
        """PEFT's _compute_delta_weight ([out, in]) from the frozen W0."""
        hidden = self.act(torch.matmul(self.weight_out_in().transpose(0, 1), self.peanut_A.weight.t()))
        residuals = []
        for encoder in self.peanut_encoders:
            residuals.append(hidden)
            hidden = self.act(encoder(hidden))
        for decoder, residual in zip(self.peanut_decoders, reversed(residuals), strict=True):
            hidden = self.act(decoder(hidden)) + residual
        return (self.peanut_B(hidden) * self.scaling).transpose(0, 1)

    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        return result + torch.matmul(x, self.delta_weight().transpose(0, 1))  # the tweak computed from W0


@dataclass
class PeanutConfig(MethodConfig):
    r: int = option(32, "width r of the tweaker network", low=1, high=4096)
    depth: int = option(0, "encoder and decoder layers (r x r each) between A and B", low=0, high=64)
    act_fn: str = option("relu", "the tweaker's activation (transformers' ACT2FN name)", choices=tuple(ACT_FNS))
    scaling: float = option(1.0, "scale of the update", low=-1e6, high=1e6)
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")
    init_weights: bool = option(True, "B starts at zeros, so the layer starts at W0 (false: random B)")


class PeanutMethod(TargetedMethod):
    name = "peanut"
    family_group = REPARAMETERISED
    title = "PEANuT"
    config_cls = PeanutConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless PEANuT is already chosen
    targets_default_from = "lora"
    refused_layers = {"Conv1D": LINEAR_ONLY.format("PEANuT")}
    example_space = {**Method.example_space, "r": (2, 8), "depth": (0, 1, 2), "act_fn": ("relu", "gelu", "tanh"),
                     "scaling": (1.0, 0.5), "init_weights": (True, False)}
    peft_space = {"r": (4, 8), "depth": (0, 2), "act_fn": ("relu", "gelu", "silu"), "scaling": (1.0, 2.0)}
    peft_type = "PEANUT"
    peft_config_fields = {"depth": ((int,), "a whole number"), "act_fn": ((str,), "an activation name"),
                          "scaling": ((int, float), "a number"), "init_weights": ((bool,), "true or false")}
    peft_config_ranges = {"depth": (0, 64), "scaling": (-1e6, 1e6)}
    glyph = "Nt"
    colour = "#7e5109"
    card = MethodCard(
        where="beside a frozen Linear: an update computed from W0 itself by a small neural network",
        intuition="let the pretrained weights say how they should change: a tweaker network reads each column of "
                  "W0 and writes its update, non-linearly",
        advantages="more expressive than LoRA at the same size (the update is a non-linear function of W0); "
                   "mergeable",
        limitations="the update is recomputed from the whole W0 every step (in x out x r work per Linear)",
        formula="delta W^T = s B(f(... f(W0^T A^T) ...)),  h = (W0 + delta W) x + b",
    )

    def attach(self, model: StudioModel, config: PeanutConfig) -> None:
        for site in self.selected_sites(config, model.base):
            model.swap(site.module_path, PeanutLinear(model.base.get_submodule(site.module_path), config.r,
                                                      config.depth, config.act_fn, config.scaling,
                                                      config.init_weights))

    def parameter_count(self, config: PeanutConfig, base: FrozenBase) -> int:
        return sum(2 * config.r * s.out_features + 2 * config.depth * config.r * config.r
                   for s in self.selected_sites(config, base))

    def formula_text(self, config: PeanutConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        return (f"sum over {len(sites)} Linear(s) of 2 r x out + 2 depth x r^2 = "
                f"{self.parameter_count(config, base):,}")

    def live_formula(self, config: PeanutConfig) -> str:
        return (f"{self.card.formula}  (f = {config.act_fn}, depth {config.depth}, r = {config.r}, "
                f"s = {config.scaling:g})")

    def code(self, config: PeanutConfig) -> str:
        return code_line(PeanutLinear.update, "self.delta_weight()")

    def shape_notes(self, config: PeanutConfig, base: FrozenBase, seq_len: int) -> list[str]:
        return [f"{s.id}: A {config.r}x{s.out_features}, {config.depth} encoder + {config.depth} decoder "
                f"{config.r}x{config.r}, B {s.out_features}x{config.r}; reads W0^T ({s.in_features}x{s.out_features})"
                for s in self.selected_sites(config, base)]

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: PeanutConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        tensors: dict[str, torch.Tensor] = {}
        targets = []
        for path, module in modules_of(base, PeanutLinear):
            name = hf_name(path, base)
            targets.append(name)
            for key, parameter in module.named_parameters():
                if key.startswith("peanut_"):
                    tensors[f"{KEY_PREFIX}{name}.{key}"] = parameter
        settings = {"r": config.r, "depth": config.depth, "act_fn": config.act_fn, "scaling": config.scaling,
                    "target_modules": targets, "init_weights": config.init_weights, "layers_to_transform": None,
                    "layers_pattern": None, "exclude_modules": None}
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        act_fn, depth = peft_config.get("act_fn", "relu"), peft_config.get("depth", 0)
        if act_fn not in ACT_FNS:
            raise AdapterFileError(f"{where}: act_fn {act_fn!r} is not one the studio computes "
                                   f"({', '.join(ACT_FNS)})")
        leaves = ("peanut_A.weight", "peanut_B.weight", *(f"peanut_{part}.{i}.weight" for part in
                                                          ("encoders", "decoders") for i in range(depth)))
        studio: dict[str, torch.Tensor] = {}
        for module, parts in split_module_keys(tensors, leaves, where, "a PEANuT").items():
            for leaf, tensor in parts.items():
                expect_shape(tensor, 2, f"{where}: {module}.{leaf}", AdapterFileError, "a matrix")
                studio[f"{module}.{leaf}"] = tensor
        options = {"r": peft_config.get("r", 32), "depth": depth, "act_fn": act_fn,
                   "scaling": float(peft_config.get("scaling", 1.0))}
        return options, studio
