"""LayerNorm tuning: only the gamma and beta of the chosen LayerNorms train (Zhao et al., 2023).

As PEFT's LN tuning (peft/tuners/ln_tuning), the trainable gamma and beta are a copy of the
LayerNorm owned by the method, so the base's own LayerNorm stays frozen and bit-identical: the
method module runs its copy instead of the original.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..bases.frozen import FrozenBase
from ..bases.sites import NORM
from ..errors import AdapterFileError
from ..files.safe_io import expect_shape
from ..model.studio_model import StudioModel
from .config import MethodConfig, option
from .method import SELECTIVE, MethodCard, TargetedMethod, code_line, require_kind
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys


class TunedNorm(nn.Module):
    """Holds the frozen LayerNorm and a trainable copy of it (gamma, beta); runs the copy."""

    def __init__(self, base_layer: nn.LayerNorm) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.ln_tuning_layers = copy.deepcopy(base_layer).requires_grad_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln_tuning_layers(x)  # gamma * (x - mean) / sqrt(var + eps) + beta, gamma and beta train


@dataclass
class LNTuningConfig(MethodConfig):
    targets: str | None = option(None, "comma list of LayerNorm sites: emb-norm, attn-norm, ffn-norm (final-norm on "
                                       "pre-LN bases); Hugging Face names such as LayerNorm work too (default: all)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")


class LNTuningMethod(TargetedMethod):
    name = "ln-tuning"
    family_group = SELECTIVE
    title = "LayerNorm tuning"
    config_cls = LNTuningConfig
    site_kinds = (NORM,)
    claims_kinds = (NORM,)
    peft_space = {}
    peft_type = "LN_TUNING"
    glyph = "γβ"
    colour = "#2e86c1"
    card = MethodCard(
        where="inside each chosen LayerNorm: its gain gamma and bias beta",
        intuition="re-centre and re-scale the normalised features a layer hands on, nothing else",
        advantages="tiny (2 d per LayerNorm), no new modules or shapes; merging is just using the new gamma, beta",
        limitations="per-channel affine changes only, like IA3 and BitFit: no new directions",
        formula="y = gamma * (x - mean) / sqrt(var + eps) + beta  (gamma, beta train)",
    )

    def targets_in_force(self, config: LNTuningConfig, base: FrozenBase) -> str | None:
        if config.targets is None and self.name not in base.method_defaults():  # every LayerNorm of the base
            return ",".join(dict.fromkeys(s.name for s in require_kind(base, self.name, NORM)))
        return config.targets

    def attach(self, model: StudioModel, config: LNTuningConfig) -> None:
        for site in self.selected_sites(config, model.base):
            model.swap(site.module_path, TunedNorm(model.base.get_submodule(site.module_path)))

    def parameter_count(self, config: LNTuningConfig, base: FrozenBase) -> int:
        # 2 d for a LayerNorm (gamma, beta), d for an RMSNorm (gamma only): count the norm's own tensors
        norms = [base.get_submodule(s.module_path) for s in self.selected_sites(config, base)]
        return sum(p.numel() for norm in norms for p in getattr(norm, "base_layer", norm).parameters())

    def formula_text(self, config: LNTuningConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        return f"{len(sites)} norm(s) x (gamma + beta) = {self.parameter_count(config, base):,}"

    def code(self, config: LNTuningConfig) -> str:
        return code_line(TunedNorm.forward, "ln_tuning_layers")

    def shape_notes(self, config: LNTuningConfig, base: FrozenBase, seq_len: int) -> list[str]:
        return [f"{s.id}: gamma ({s.out_features},) and beta ({s.out_features},) train"
                for s in self.selected_sites(config, base)]

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: LNTuningConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        tensors: dict[str, torch.Tensor] = {}
        targets = []
        for path, module in modules_of(base, TunedNorm):
            name = hf_name(path, base)
            targets.append(name)
            tensors[f"{KEY_PREFIX}{name}.ln_tuning_layers.weight"] = module.ln_tuning_layers.weight
            if getattr(module.ln_tuning_layers, "bias", None) is not None:  # an RMSNorm has a weight only
                tensors[f"{KEY_PREFIX}{name}.ln_tuning_layers.bias"] = module.ln_tuning_layers.bias
        return {"target_modules": targets}, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        leaves = ("ln_tuning_layers.weight", "ln_tuning_layers.bias")
        studio = {}
        for module, parts in split_module_keys(tensors, leaves, where, "a LayerNorm-tuning").items():
            for leaf, tensor in parts.items():
                expect_shape(tensor, 1, f"{where}: {module}.{leaf}", AdapterFileError, "a vector")
                studio[f"{module}.{leaf}"] = tensor
        return {}, studio
