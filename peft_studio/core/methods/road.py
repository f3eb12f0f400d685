"""RoAd: 2-D rotations (with a scale) of pairs of a frozen Linear's output channels (Liao et al., 2024, "2D Rotary
Adaptation").

Follows PEFT's RoAd for nn.Linear (peft/tuners/road): the outputs are split into groups of group_size; in each
group channel i is paired with channel i + group_size / 2, and each pair is turned by an angle theta and scaled by
alpha. road_1 shares one (theta, alpha) by both channels of a pair, road_2 gives each channel its own, road_4 its
own two angles and scales. theta starts at 0 and alpha at 1, so the layer starts at W0:

    h = R (W0 x + b),   (y_i, y_j) = alpha (cos theta y_i - sin theta y_j, sin theta y_i + cos theta y_j)
    (merged: W = R W0 and b = R b)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR, Site
from ..errors import AdapterFileError, ConfigError
from ..files.safe_io import expect_shape
from ..model.studio_model import StudioModel
from .config import MethodConfig, option
from .mergeable import WeightUpdate
from .method import REPARAMETERISED, Method, MethodCard, TargetedMethod, code_line
from .oft import LINEAR_ONLY
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys

PEFT_GROUP = 64  # PEFT's default group_size
VARIANTS = ("road_1", "road_2", "road_4")
PER_OUTPUT = {"road_1": 0.5, "road_2": 1, "road_4": 2}  # angles (and as many scales) per output channel


def columns(variant: str, group: int, theta: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """PEFT's `_prepare_cols`: alpha cos theta and alpha sin theta per output channel."""
    if variant == "road_1":
        theta = theta.reshape(-1, group // 2).repeat_interleave(2, dim=0).flatten()
        alpha = alpha.reshape(-1, group // 2).repeat_interleave(2, dim=0).flatten()
        return alpha * theta.cos(), alpha * theta.sin()
    if variant == "road_2":
        return alpha * theta.cos(), alpha * theta.sin()
    theta, alpha = theta.reshape(-1, 2, group), alpha.reshape(-1, 2, group)
    return alpha[:, 0, :].flatten() * theta[:, 0, :].cos().flatten(), \
        alpha[:, 1, :].flatten() * theta[:, 1, :].sin().flatten()


class RoadLinear(WeightUpdate):
    """A frozen Linear whose outputs are rotated in pairs: h = R (W0 x + b)."""

    def __init__(self, base_layer: nn.Module, variant: str, group_size: int) -> None:
        super().__init__(base_layer)
        self.variant, self.group_size = variant, group_size
        size = int(base_layer.out_features * PER_OUTPUT[variant])
        self.road_theta = nn.Parameter(torch.zeros(size))  # theta 0, alpha 1: R = I
        self.road_alpha = nn.Parameter(torch.ones(size))

    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        first, second = columns(self.variant, self.group_size, self.road_theta, self.road_alpha)
        grouped = result.reshape(-1, 2, self.group_size // 2)  # channel i pairs with i + group_size / 2
        rotated_half = torch.stack((-grouped[:, 1, :], grouped[:, 0, :]), dim=1).reshape(result.shape)
        return result * first + rotated_half * second  # each pair turned by theta, scaled by alpha

    def rotation(self) -> torch.Tensor:
        """R ([out, out]) with h = R (W0 x + b): PEFT's `_get_delta_weight`."""
        first, second = columns(self.variant, self.group_size, self.road_theta, self.road_alpha)
        matrix = torch.diag(first)
        size, half = second.shape[0], self.group_size // 2
        swapped = second.reshape(-1, 2, half)[:, [1, 0], :].flatten()
        off = torch.diag(swapped).reshape(-1, 2, half, size)[:, [1, 0], :, :]
        off[:, 0, :, :] *= -1
        return matrix + off.reshape(size, size)

    def merged_weight(self) -> torch.Tensor:
        return self.rotation() @ self.weight_out_in()

    def merged_bias(self) -> torch.Tensor | None:
        bias = self.base_layer.bias
        return None if bias is None else self.rotation() @ bias


@dataclass
class RoadConfig(MethodConfig):
    variant: str = option("road_1", "road_1: one angle and scale per pair of channels; road_2: per channel; road_4: "
                                    "two per channel", choices=VARIANTS)
    group_size: int = option(0, f"channels per group (pairs are i and i + group_size / 2); 0: PEFT's {PEFT_GROUP}, "
                                f"or the largest even width up to {PEFT_GROUP} that divides every adapted output",
                             low=0, high=4096)
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")


class RoadMethod(TargetedMethod):
    name = "road"
    family_group = REPARAMETERISED
    title = "RoAd"
    config_cls = RoadConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless RoAd is already chosen
    targets_default_from = "lora"
    refused_layers = {"Conv1D": LINEAR_ONLY.format("RoAd")}
    rotation_side = "output"
    example_space = {**Method.example_space, "variant": VARIANTS, "group_size": (0, 2, 8)}
    peft_space = {"variant": VARIANTS, "group_size": (64, 8)}
    peft_type = "ROAD"
    peft_config_fields = {"variant": ((str,), "road_1, road_2 or road_4"), "group_size": ((int,), "a whole number"),
                          "init_weights": ((bool,), "true or false")}
    peft_config_ranges = {"group_size": (2, 4096)}
    glyph = "↻"
    colour = "#148f77"
    card = MethodCard(
        where="after a frozen Linear: its output channels turned in pairs, each pair by its own 2-D rotation",
        intuition="fine-tuning mostly changes the angle of a layer's outputs, not their length: learn the angles",
        advantages="the fewest parameters of the weight updates (out per Linear for road_1); element-wise, so "
                   "different adapters can serve one batch; mergeable (W = R W0, b = R b)",
        limitations="only rotates and scales within fixed channel pairs: no new directions",
        formula="h = R (W0 x + b),  R: 2x2 blocks alpha [cos t, -sin t; sin t, cos t] on channel pairs",
    )

    def group_in_force(self, config: RoadConfig, sites: list[Site]) -> int:
        """config.group_size, or (0) PEFT's 64 where it divides every output width, else the largest even one."""
        if config.group_size:
            return config.group_size
        fitting = [g for g in range(2, PEFT_GROUP + 1, 2) if all(s.out_features % g == 0 for s in sites)]
        return max(fitting) if fitting else PEFT_GROUP

    def layout(self, config: RoadConfig, base: FrozenBase) -> tuple[int, list[Site]]:
        sites = self.selected_sites(config, base)
        group = self.group_in_force(config, sites)
        if group % 2:
            raise ConfigError(f"group_size ({group}) must be even: channel i pairs with i + group_size / 2")
        for site in sites:
            if site.out_features % group:
                raise ConfigError(f"{site.id}: its output width ({site.out_features}) must be divisible by "
                                  f"group_size ({group})")
        return group, sites

    def validate(self, config: RoadConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        self.layout(config, base)

    def effective_options(self, config: RoadConfig, base: FrozenBase) -> dict[str, Any]:
        values = super().effective_options(config, base)
        values["group_size"] = self.layout(config, base)[0]
        return values

    def attach(self, model: StudioModel, config: RoadConfig) -> None:
        group, sites = self.layout(config, model.base)
        for site in sites:
            original = model.base.get_submodule(site.module_path)
            model.swap(site.module_path, RoadLinear(original, config.variant, group))

    def parameter_count(self, config: RoadConfig, base: FrozenBase) -> int:
        return sum(int(2 * site.out_features * PER_OUTPUT[config.variant])
                   for site in self.selected_sites(config, base))

    def formula_text(self, config: RoadConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        share = {"road_1": "out / 2", "road_2": "out", "road_4": "2 out"}[config.variant]
        return f"sum over {len(sites)} Linear(s) of 2 x {share} (theta, alpha) = {self.parameter_count(config, base):,}"

    def live_formula(self, config: RoadConfig) -> str:
        shared = {"road_1": "one (t, alpha) per pair", "road_2": "one per channel",
                  "road_4": "two per channel"}[config.variant]
        group = f"groups of {config.group_size}" if config.group_size else f"groups of up to {PEFT_GROUP}"
        return f"{self.card.formula}  ({config.variant}: {shared}; {group})"

    def code(self, config: RoadConfig) -> str:
        return code_line(RoadLinear.update, "result * first")

    def shape_notes(self, config: RoadConfig, base: FrozenBase, seq_len: int) -> list[str]:
        group, sites = self.layout(config, base)
        return [f"{s.id}: road_theta and road_alpha ({int(s.out_features * PER_OUTPUT[config.variant])},) each; "
                f"{s.out_features // group} group(s) of {group} outputs" for s in sites]

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: RoadConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        tensors: dict[str, torch.Tensor] = {}
        targets = []
        for path, module in modules_of(base, RoadLinear):
            name = hf_name(path, base)
            targets.append(name)
            tensors[f"{KEY_PREFIX}{name}.road_theta"] = module.road_theta
            tensors[f"{KEY_PREFIX}{name}.road_alpha"] = module.road_alpha
        settings = {"variant": config.variant, "group_size": self.layout(config, base)[0], "target_modules": targets,
                    "init_weights": True}
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        variant = peft_config.get("variant", "road_1")
        if variant not in VARIANTS:
            raise AdapterFileError(f"{where}: variant {variant!r} is not one of {', '.join(VARIANTS)}")
        studio: dict[str, torch.Tensor] = {}
        for module, parts in split_module_keys(tensors, ("road_theta", "road_alpha"), where, "a RoAd").items():
            for leaf, tensor in parts.items():
                expect_shape(tensor, 1, f"{where}: {module}.{leaf}", AdapterFileError, "a vector")
                studio[f"{module}.{leaf}"] = tensor
        return {"variant": variant, "group_size": peft_config.get("group_size", PEFT_GROUP)}, studio
