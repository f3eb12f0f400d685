"""HiRA: a low-rank matrix multiplied element-wise into W0, so the update has W0's rank, not r (Huang et al.,
2025).

Follows PEFT's HiRA for a Linear (peft/tuners/hira/layer.py):

    h = W0 x + b + (W0 ⊙ (B A)) x,   A: r x in (Kaiming-uniform, or N(0, 1/r) with `gaussian`), B: out x r (zeros)

B starts at zero, so the model starts at W0. The same count as LoRA of rank r.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR
from ..model.studio_model import StudioModel
from .config import MethodConfig, option
from .lycoris import export_own_parameters, translate_leaves
from .mergeable import WeightUpdate
from .method import REPARAMETERISED, Method, MethodCard, TargetedMethod, code_line
from .peft_fields import PATTERNS, flag, number, refuse_set, whole
from .peft_format import modules_of, unknown

INITS = ("kaiming_uniform", "gaussian")


class HiraLinear(WeightUpdate):
    """A frozen Linear plus (W0 ⊙ B A) x."""

    def __init__(self, base_layer: nn.Module, r: int, dropout: float, init: str) -> None:
        super().__init__(base_layer)
        self.r = r
        self.hira_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.hira_A = nn.Parameter(torch.empty(r, base_layer.in_features))
        self.hira_B = nn.Parameter(torch.zeros(base_layer.out_features, r))  # zeros: the model starts at W0
        if init == "gaussian":
            nn.init.normal_(self.hira_A, std=1 / r)
        else:
            nn.init.kaiming_uniform_(self.hira_A, a=math.sqrt(5))

    def delta_weight(self) -> torch.Tensor:
        return self.weight_out_in() * (self.hira_B @ self.hira_A)

    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        product = torch.mm(self.hira_A.T, self.hira_B.T)  # (in, out), as PEFT forms it
        return result + F.linear(self.hira_dropout(x), self.weight_out_in() * product.T)  # W0 ⊙ B A


@dataclass
class HiraConfig(MethodConfig):
    r: int = option(32, "rank of B A; the update W0 ⊙ B A can reach W0's rank", low=1, high=4096)
    dropout: float = option(0.0, "dropout on the input during training (PEFT's hira_dropout)", low=0.0, high=0.99)
    init_weights: str = option("kaiming_uniform", "how A starts: kaiming_uniform (PEFT's true) or gaussian "
                                                  "(N(0, 1/r)); B starts at zero either way", choices=INITS)
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")


class HiraMethod(TargetedMethod):
    name = "hira"
    family_group = REPARAMETERISED
    title = "HiRA"
    config_cls = HiraConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless HiRA is already chosen
    targets_default_from = "lora"
    example_space = {**Method.example_space, "r": (1, 4, 8), "init_weights": INITS}
    peft_space = {"r": (2, 8), "init_weights": (True, "gaussian")}
    peft_type = "HIRA"
    exchange_tolerance = 1e-5  # the bar for outputs equal to PEFT's
    peft_config_fields = {"hira_dropout": ((int, float), "a number"),
                          "init_weights": ((bool, str, type(None)), "true, false or 'gaussian'"),
                          "rank_pattern": ((dict, type(None)), "an object")}
    glyph = "⊙W"
    colour = "#1f618d"
    card = MethodCard(
        where="beside a frozen Linear: a low-rank B A multiplied element-wise into W0",
        intuition="scaling each of W0's weights by a low-rank pattern keeps W0's structure and reaches its full "
                  "rank, where LoRA's B A stays at rank r",
        advantages="high-rank updates for LoRA's parameter count; mergeable into W0",
        limitations="the update is tied to W0's entries (a zero weight stays zero); W0 is read again each step",
        formula="h = W0 x + (W0 ⊙ B A) x",
    )

    def attach(self, model: StudioModel, config: HiraConfig) -> None:
        for site in self.selected_sites(config, model.base):
            original = model.base.get_submodule(site.module_path)
            model.swap(site.module_path, HiraLinear(original, config.r, config.dropout, config.init_weights))

    def parameter_count(self, config: HiraConfig, base: FrozenBase) -> int:
        return sum(config.r * (s.in_features + s.out_features) for s in self.selected_sites(config, base))

    def formula_text(self, config: HiraConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        return f"sum over {len(sites)} Linear(s) of r x (in + out) = {self.parameter_count(config, base):,}"

    def code(self, config: HiraConfig) -> str:
        return code_line(HiraLinear.update, "W0 ⊙ B A")

    def shape_notes(self, config: HiraConfig, base: FrozenBase, seq_len: int) -> list[str]:
        return [f"{s.id}: A {config.r}x{s.in_features}, B {s.out_features}x{config.r}; W0 ⊙ B A is "
                f"{s.out_features}x{s.in_features}" for s in self.selected_sites(config, base)]

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: HiraConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        targets, tensors = export_own_parameters(base, HiraLinear)
        layers = modules_of(base, HiraLinear)
        settings = {"r": config.r, "hira_dropout": config.dropout, "target_modules": targets, "exclude_modules": None,
                    "init_weights": True if config.init_weights == "kaiming_uniform" else "gaussian",
                    "fan_in_fan_out": any(layer.fan_in_fan_out for _, layer in layers), "rank_pattern": {},
                    "layers_to_transform": None, "layers_pattern": None}
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        refuse_set(peft_config, where, {"rank_pattern": PATTERNS["rank_pattern"]})
        # PEFT sets fan_in_fan_out from the layer type itself (True on a Conv1D, False on a Linear): a
        # well-typed flag changes nothing the base does not already decide
        flag(peft_config, "fan_in_fan_out", where, False)
        init = peft_config.get("init_weights", True)
        options = {"r": whole(peft_config, "r", where, 32, high=4096),
                   "dropout": number(peft_config, "hira_dropout", where, 0.0, 0.0, 1.0, high_open=True),
                   "init_weights": "gaussian" if isinstance(init, str) and init.lower() == "gaussian" else
                   "kaiming_uniform"}  # how the weights started: they are loaded, so only a further run differs
        r = options["r"]

        def check(module: str, parts: dict[str, torch.Tensor]) -> None:
            if set(parts) != {"hira_A", "hira_B"}:
                raise unknown(where, module, "needs both hira_A and hira_B")
            if parts["hira_A"].shape[0] != r or parts["hira_B"].shape[1] != r:
                raise unknown(where, module, f"hira_A / hira_B have rank {parts['hira_A'].shape[0]} / "
                                             f"{parts['hira_B'].shape[1]}, r is {r}")

        return options, translate_leaves(tensors, ("hira_A", "hira_B"), where, "a HiRA", check)
