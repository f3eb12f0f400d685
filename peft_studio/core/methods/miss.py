"""MiSS (Matrix Shard Sharing, PEFT's former Bone): one small trainable block shared by every r-wide shard of a
frozen Linear's weight (Kang & Yin, 2024).

Follows PEFT's MiSS for nn.Linear (peft/tuners/miss); `init_weights` picks the variant, all starting at W0:

    true (balance):  h = W0 x + b + (sum_j x[j r : (j+1) r]) D        D: r x out, zeros (x padded to a multiple of r)
    mini:            the same with D = [d d ... d] (d: r x mini_r repeated out / mini_r times)
    bat:             W = W0 + W0_ij D_i + D_i on each r x r block W0_ij (D_i: one r x r block per output shard)
    false:           balance with random D (PEFT's test setting: it does not start at W0)

(merged: W[o, c] = W0[o, c] + D[c mod r, o] for balance and mini, the bat W above for bat).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

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

PEFT_R = 64  # PEFT's default r
VARIANTS = ("true", "bat", "mini", "false")


class MissLinear(WeightUpdate):
    """A frozen Linear plus MiSS's shared block `miss_block` (its shape depends on the variant)."""

    def __init__(self, base_layer: nn.Module, r: int, variant: str, mini_r: int, dropout: float) -> None:
        super().__init__(base_layer)
        out_features = base_layer.out_features
        self.r, self.variant, self.mini_r = r, variant, mini_r
        self.miss_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        shape = {"bat": (out_features // r, r, r), "mini": (r, mini_r)}.get(variant, (r, out_features))
        self.miss_block = nn.Parameter(torch.zeros(shape))  # zeros: the layer starts at W0
        if variant == "false":
            nn.init.kaiming_uniform_(self.miss_block, a=math.sqrt(5))

    def shared(self) -> torch.Tensor:
        """D ([r, out]) for balance and mini (mini: d repeated across the outputs)."""
        if self.variant == "mini":
            return self.miss_block.repeat(1, self.base_layer.out_features // self.mini_r)
        return self.miss_block

    def bat_delta(self) -> torch.Tensor:
        """PEFT's get_delta_weight for bat: W0_ij D_i + D_i on each r x r block ([out, in])."""
        weight, block, r = self.weight_out_in(), self.miss_block, self.r
        shards = weight.reshape(weight.size(0) // r, r, weight.size(1) // r, r).permute(2, 0, 1, 3)
        return (shards @ block + block).permute(1, 2, 0, 3).reshape(*weight.shape)

    def adapted(self, x: torch.Tensor) -> torch.Tensor:
        if self.variant == "bat":
            weight = self.weight_out_in().clone()
            return F.linear(x, weight + self.bat_delta(), self.base_layer.bias)
        result = self.base_layer(x)
        shared, r = self.shared(), self.r
        if x.size(-1) % r:
            x = F.pad(x, (0, (r - x.size(-1) % r) % r))
        folded = torch.sum(self.miss_dropout(x).reshape(*x.shape[:-1], x.size(-1) // r, r), dim=-2)
        return result + folded @ shared  # the input folded into r channels, through the shared block

    def delta_weight(self) -> torch.Tensor:
        if self.variant == "bat":
            return self.bat_delta()
        columns = torch.arange(self.base_layer.in_features, device=self.miss_block.device) % self.r
        return self.shared().T[:, columns]  # W[o, c] += D[c mod r, o]


@dataclass
class MissConfig(MethodConfig):
    r: int = option(0, f"shard width r (0: PEFT's {PEFT_R}, or less where an adapted Linear is narrower, or, for bat, "
                       f"the largest width up to {PEFT_R} that divides every adapted Linear)", low=0, high=4096)
    init_weights: str = option("true", "the variant: true (balance: D is r x out), mini (D is r x mini_r, repeated), "
                                       "bat (an r x r block per output shard, applied to W0's blocks), false "
                                       "(balance from a random D)", choices=VARIANTS)
    mini_r: int = option(1, "columns of the mini block (init_weights mini); must divide each output width", low=1,
                         high=4096)
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")
    miss_dropout: float = option(0.0, "dropout on the input before it is folded (not used by bat, as in PEFT)",
                                 low=0.0, high=0.99)


class MissMethod(TargetedMethod):
    name = "miss"
    family_group = REPARAMETERISED
    title = "MiSS"
    config_cls = MissConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless MiSS is already chosen
    targets_default_from = "lora"
    refused_layers = {"Conv1D": LINEAR_ONLY.format("MiSS")}
    example_space = {**Method.example_space, ("r", "init_weights", "mini_r"): (
        (0, "true", 1), (4, "true", 1), (5, "true", 1), (8, "bat", 1), (0, "bat", 1), (4, "mini", 1),
        (4, "mini", 8), (3, "false", 1)), "miss_dropout": (0.0, 0.1)}
    peft_space = {("r", "init_weights", "mini_r"): ((8, True, 1), (10, True, 1), (16, "bat", 1), (8, "mini", 4),
                                                    (8, False, 1)), "miss_dropout": (0.0, 0.1)}
    peft_type = "MISS"
    peft_config_fields = {"init_weights": ((bool, str), "true, false, bat or mini"),
                          "mini_r": ((int,), "a whole number"), "miss_dropout": ((int, float), "a number")}
    peft_config_ranges = {"mini_r": (1, 4096), "miss_dropout": (0, 0.99)}
    glyph = "▦"
    colour = "#a04000"
    card = MethodCard(
        where="beside a frozen Linear: one small block shared by every r-wide shard of its weight",
        intuition="fold the input into r channels (sum the shards) and learn one r x out map for all of them: "
                  "every shard of W gets the same update",
        advantages="r x out parameters like half a LoRA, no A projection, no random init; mergeable",
        limitations="the update repeats across shards, so it is coarse; bat's W0-dependent update costs a "
                    "full-weight product per step",
        formula="h = W0 x + b + (sum_j x_j) D,  x_j the r-wide shards of x,  D: r x out",
    )

    def config(self, options: dict[str, Any], base: FrozenBase | None = None) -> MissConfig:
        value = options.get("init_weights")
        if isinstance(value, bool):  # PEFT's JSON writes true / false
            options = {**options, "init_weights": "true" if value else "false"}
        return super().config(options, base)

    def r_in_force(self, config: MissConfig, sites: list[Site]) -> int:
        """config.r, or (0) PEFT's 64 where it fits: at most the narrowest input; for bat, dividing every width."""
        if config.r or not sites:
            return config.r or PEFT_R
        if config.init_weights == "bat":
            widths = [w for s in sites for w in (s.in_features, s.out_features)]
            return max(d for d in range(1, PEFT_R + 1) if all(w % d == 0 for w in widths))
        return min(PEFT_R, *(s.in_features for s in sites))

    def validate(self, config: MissConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        self.layout(config, base)

    def layout(self, config: MissConfig, base: FrozenBase) -> tuple[int, list[Site]]:
        """(r, sites), checked as PEFT checks them."""
        sites = self.selected_sites(config, base)
        r = self.r_in_force(config, sites)
        if config.init_weights == "bat" and config.miss_dropout:
            raise ConfigError("miss_dropout is not used with init_weights bat (PEFT applies no dropout there); "
                              "set it to 0")
        for site in sites:
            if r > site.in_features:
                raise ConfigError(f"{site.id}: r ({r}) must be at most its input width ({site.in_features})")
            if config.init_weights == "bat" and (site.in_features % r or site.out_features % r):
                raise ConfigError(f"{site.id}: with init_weights bat its weight ({site.out_features} x "
                                  f"{site.in_features}) must split into r x r blocks (r = {r})")
            if config.init_weights == "mini" and site.out_features % config.mini_r:
                raise ConfigError(f"{site.id}: mini_r ({config.mini_r}) must divide its output width "
                                  f"({site.out_features})")
        return r, sites

    def effective_options(self, config: MissConfig, base: FrozenBase) -> dict[str, Any]:
        values = super().effective_options(config, base)
        values["r"] = self.layout(config, base)[0]
        return values

    def attach(self, model: StudioModel, config: MissConfig) -> None:
        r, sites = self.layout(config, model.base)
        for site in sites:
            original = model.base.get_submodule(site.module_path)
            model.swap(site.module_path, MissLinear(original, r, config.init_weights, config.mini_r,
                                                    config.miss_dropout))

    def parameter_count(self, config: MissConfig, base: FrozenBase) -> int:
        r, sites = self.layout(config, base)
        per = (lambda s: r * config.mini_r) if config.init_weights == "mini" else (lambda s: r * s.out_features)
        return sum(per(site) for site in sites)

    def formula_text(self, config: MissConfig, base: FrozenBase) -> str:
        r, sites = self.layout(config, base)
        each = "r x mini_r" if config.init_weights == "mini" else "r x out"
        return f"sum over {len(sites)} Linear(s) of {each} (r = {r}) = {self.parameter_count(config, base):,}"

    def live_formula(self, config: MissConfig) -> str:
        if config.init_weights == "bat":
            return "W = W0 + W0_ij D_i + D_i on each r x r block W0_ij,  D_i: r x r per output shard"
        if config.init_weights == "mini":
            return f"{self.card.formula.replace('D: r x out', 'D = [d ... d]')},  d: r x {config.mini_r}"
        return self.card.formula

    def code(self, config: MissConfig) -> str:
        if config.init_weights == "bat":
            return code_line(MissLinear.bat_delta, "shards @ block")
        return code_line(MissLinear.adapted, "folded @ shared")

    def shape_notes(self, config: MissConfig, base: FrozenBase, seq_len: int) -> list[str]:
        r, sites = self.layout(config, base)
        notes = []
        for s in sites:
            shape = {"bat": f"({s.out_features // r}, {r}, {r})", "mini": f"({r}, {config.mini_r})"}.get(
                config.init_weights, f"({r}, {s.out_features})")
            pad = f"; the input is padded {s.in_features} -> {-(-s.in_features // r) * r}" \
                if s.in_features % r and config.init_weights != "bat" else ""
            notes.append(f"{s.id}: miss_block {shape}{pad}")
        return notes

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: MissConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        tensors: dict[str, torch.Tensor] = {}
        targets = []
        for path, module in modules_of(base, MissLinear):
            name = hf_name(path, base)
            targets.append(name)
            tensors[f"{KEY_PREFIX}{name}.miss_block"] = module.miss_block
        init = {"true": True, "false": False}.get(config.init_weights, config.init_weights)
        settings = {"r": self.layout(config, base)[0], "init_weights": init, "mini_r": config.mini_r,
                    "miss_dropout": config.miss_dropout, "target_modules": targets, "bias": "none",
                    "layers_to_transform": None, "layers_pattern": None, "exclude_modules": None}
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        if peft_config.get("bias", "none") != "none":
            raise AdapterFileError(f"{where}: bias {peft_config.get('bias')!r} trains base biases too; only 'none'")
        init = peft_config.get("init_weights", True)
        variant = ("true" if init else "false") if isinstance(init, bool) else init
        if variant not in VARIANTS:
            raise AdapterFileError(f"{where}: init_weights {init!r} is not a MiSS variant (true, false, bat, mini)")
        r = peft_config.get("r", PEFT_R)
        studio: dict[str, torch.Tensor] = {}
        for module, parts in split_module_keys(tensors, ("miss_block",), where, "a MiSS").items():
            tensor = parts["miss_block"]
            expect_shape(tensor, 3 if variant == "bat" else 2, f"{where}: {module}.miss_block", AdapterFileError,
                         "(out / r, r, r)" if variant == "bat" else "(r, out) or (r, mini_r)")
            studio[f"{module}.miss_block"] = tensor
        dropout = float(peft_config.get("miss_dropout") or 0.0)
        options = {"r": r, "init_weights": "true" if variant == "false" else variant,  # false only chose a start
                   "mini_r": peft_config.get("mini_r", 1), "miss_dropout": 0.0 if variant == "bat" else dropout}
        return options, studio

    def peft_import_notes(self, peft_config: dict[str, Any], where: str) -> list[str]:
        if peft_config.get("init_weights") == "bat" and peft_config.get("miss_dropout"):
            return [f"{where}: miss_dropout {peft_config['miss_dropout']} is left out: PEFT applies no dropout with "
                    "init_weights bat, so it changed nothing in training either"]
        return []
