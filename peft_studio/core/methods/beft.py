"""BEFT: a trainable offset added to a frozen Linear's output, beside its frozen bias (PEFT's BEFT).

Follows PEFT's BEFT for nn.Linear (peft/tuners/beft): one vector beft_bias (1 x out) per adapted Linear, zeros at
the start, by default on the value projection only:

    h = W0 x + b + beta          (merged: b = b + beta, possible only where the Linear has a bias)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR
from ..errors import AdapterFileError
from ..files.safe_io import expect_shape
from ..model.studio_model import StudioModel
from .config import MethodConfig, option
from .mergeable import WeightUpdate
from .method import INSIDE_LAYERS, MethodCard, TargetedMethod, code_line
from .oft import LINEAR_ONLY
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys

VALUE_SITES = ("v", "v_proj")  # PEFT's BEFT default targets the value projection (BERT's value, Llama's v_proj)


class BeftLinear(WeightUpdate):
    """A frozen Linear plus a trainable output offset."""

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.beft_bias = nn.Parameter(torch.zeros(1, base_layer.out_features))  # zeros: starts at W0

    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        return result + self.beft_bias.flatten()  # the learned offset beside the frozen bias

    def can_merge(self) -> bool:
        return super().can_merge() and getattr(self.base_layer, "bias", None) is not None  # PEFT: needs a bias

    def merged_weight(self) -> torch.Tensor:
        return self.weight_out_in()

    def merged_bias(self) -> torch.Tensor | None:
        return self.base_layer.bias + self.beft_bias.squeeze()


@dataclass
class BeftConfig(MethodConfig):
    targets: str | None = option(None, "comma list of Linear sites (default: the value projection, as PEFT; Hugging "
                                       "Face names and site ids work too)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")


class BeftMethod(TargetedMethod):
    name = "beft"
    family_group = INSIDE_LAYERS
    title = "BEFT"
    config_cls = BeftConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless BEFT is already chosen
    targets_default_from = "lora"  # where the base has no value projection (the seed's single Linear)
    refused_layers = {"Conv1D": LINEAR_ONLY.format("BEFT")}
    peft_space = {}
    peft_type = "BEFT"
    peft_config_fields = {"init_weights": ((bool,), "true or false")}
    glyph = "+β"
    colour = "#5d6d7e"
    card = MethodCard(
        where="after a frozen Linear: a learned offset added to its output (by default the value projection's)",
        intuition="shift what a layer hands on without touching its weights: BitFit's idea, as a new vector beside "
                  "the frozen bias",
        advantages="out parameters per Linear, nothing else; merges into the bias",
        limitations="a constant shift only: no input-dependent change; not mergeable where a Linear has no bias",
        formula="h = W0 x + b + beta  (beta starts at 0)",
    )

    def targets_in_force(self, config: BeftConfig, base: FrozenBase) -> str | None:
        if config.targets is None and self.name not in base.method_defaults():
            values = sorted({s.name for s in self.usable_sites(base) if s.name in VALUE_SITES})
            if values:
                return ",".join(values)
        return super().targets_in_force(config, base)

    def attach(self, model: StudioModel, config: BeftConfig) -> None:
        for site in self.selected_sites(config, model.base):
            model.swap(site.module_path, BeftLinear(model.base.get_submodule(site.module_path)))

    def parameter_count(self, config: BeftConfig, base: FrozenBase) -> int:
        return sum(s.out_features for s in self.selected_sites(config, base))

    def formula_text(self, config: BeftConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        return f"sum over {len(sites)} Linear(s) of out = {self.parameter_count(config, base):,}"

    def code(self, config: BeftConfig) -> str:
        return code_line(BeftLinear.update, "beft_bias")

    def shape_notes(self, config: BeftConfig, base: FrozenBase, seq_len: int) -> list[str]:
        return [f"{s.id}: beft_bias (1, {s.out_features}) added to its output"
                for s in self.selected_sites(config, base)]

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: BeftConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        tensors: dict[str, torch.Tensor] = {}
        targets = []
        for path, module in modules_of(base, BeftLinear):
            name = hf_name(path, base)
            targets.append(name)
            tensors[f"{KEY_PREFIX}{name}.beft_bias"] = module.beft_bias
        return {"target_modules": targets, "init_weights": True}, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        studio: dict[str, torch.Tensor] = {}
        for module, parts in split_module_keys(tensors, ("beft_bias",), where, "a BEFT").items():
            tensor = parts["beft_bias"]
            expect_shape(tensor, 2, f"{where}: {module}.beft_bias", AdapterFileError, "(1, out)")
            studio[f"{module}.beft_bias"] = tensor
        return {}, studio
