"""Super-Tuning: train a sparse support of a Linear's own weights, chosen by their magnitude, optionally beside a
LoRA pair ("Supra") (peft/tuners/supertuning).

Follows PEFT's Supertuning: the k = int(out x in x (1 - sparsity)) largest |W0| entries (the smallest with
select_top false) are found with torch.topk over the flattened [out, in] weight, once, at attach; their trained values
start at zero (the model starts at W0) and

    h = (W0 + S) x + b + (lora_alpha / r) B A x        (S zero except the trained values; B A only with r > 0)

A starts Kaiming-uniform, B at zero, lora_alpha defaults to 2r. nn.Linear only, as PEFT.
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
from ..errors import AdapterFileError, ConfigError
from ..files.safe_io import expect_shape
from ..model.studio_model import StudioModel
from .config import MethodConfig, option
from .mergeable import WeightUpdate
from .method import SELECTIVE, Method, MethodCard, TargetedMethod, code_line
from .peft_fields import flag, number, whole
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys, unknown

LEAVES = ("supertuning_values", "supertuning_indices", "supertuning_lora_A.weight", "supertuning_lora_B.weight")
HALF = 4096  # positions are kept as (position // HALF, position % HALF): both exact in float32 for any weight size


def support_size(out_features: int, in_features: int, sparsity: float) -> int:
    """PEFT's _num_trainable: int(entries x (1 - sparsity))."""
    return int(out_features * in_features * (1 - sparsity))


def top_positions(weight: torch.Tensor, count: int, largest: bool) -> torch.Tensor:
    """Flat positions of the `count` largest (or smallest) |W0| entries, in torch.topk's order, as PEFT finds them."""
    return torch.topk(weight.detach().abs().flatten(), k=count, largest=largest).indices


class SupertuningLinear(WeightUpdate):
    """A frozen Linear whose weight gains trained values on a support fixed by |W0|, plus an optional LoRA pair."""

    def __init__(self, base_layer: nn.Linear, sparsity: float, select_top: bool, r: int, alpha: float,
                 dropout: float) -> None:
        super().__init__(base_layer)
        self.select_top = select_top
        weight = base_layer.weight
        count = support_size(base_layer.out_features, base_layer.in_features, sparsity)
        positions = top_positions(weight, count, select_top) if weight.device.type != "meta" else \
            torch.zeros(count, dtype=torch.long)
        # the support, frozen: two float32 halves so that an imported adapter's saved positions load exactly
        self.supertuning_positions = nn.Parameter(torch.stack([positions // HALF, positions % HALF]).float(),
                                                  requires_grad=False)
        self.supertuning_values = nn.Parameter(torch.zeros(count))  # zeros: the model starts at W0
        self.r, self.scaling = r, (alpha / r if r else 0.0)
        if r:
            self.supertuning_lora_A = nn.Linear(base_layer.in_features, r, bias=False)
            self.supertuning_lora_B = nn.Linear(r, base_layer.out_features, bias=False)
            nn.init.kaiming_uniform_(self.supertuning_lora_A.weight, a=math.sqrt(5))
            nn.init.zeros_(self.supertuning_lora_B.weight)
            self.supertuning_lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def flat_positions(self) -> torch.Tensor:
        halves = self.supertuning_positions.long()
        return halves[0] * HALF + halves[1]

    def sparse_weight(self) -> torch.Tensor:
        """W0 + S: the trained values scatter-added onto the flattened weight (PEFT's forward)."""
        weight = self.weight_out_in()
        return weight.reshape(-1).scatter_add(0, self.flat_positions().to(weight.device),
                                              self.supertuning_values.to(weight.dtype)).reshape_as(weight)

    def delta_weight(self) -> torch.Tensor:
        delta = self.sparse_weight() - self.weight_out_in()
        if self.r:
            delta = delta + self.scaling * (self.supertuning_lora_B.weight @ self.supertuning_lora_A.weight)
        return delta

    def merged_weight(self) -> torch.Tensor:
        merged = self.sparse_weight()  # exactly PEFT's scatter_add onto W0, not W0 + (W0 + S - W0)
        if self.r:
            merged = merged + self.scaling * (self.supertuning_lora_B.weight @ self.supertuning_lora_A.weight)
        return merged

    def adapted(self, x: torch.Tensor) -> torch.Tensor:
        result = F.linear(x, self.sparse_weight(), self.base_layer.bias)  # (W0 + S) x + b: one matmul, as PEFT
        if self.r:
            lora = self.supertuning_lora_B(self.supertuning_lora_A(self.supertuning_lora_dropout(x)))
            result = result + self.scaling * lora
        return result


@dataclass
class SupertuningConfig(MethodConfig):
    sparsity: float = option(0.99, "share of each Linear's weights that stays frozen: int(out x in x (1 - "
                                   "sparsity)) entries train", low=0.0, high=0.999999)
    select_top: bool = option(True, "train the largest-magnitude weights (false: the smallest)")
    r: int = option(0, "rank of the optional LoRA pair beside the support (PEFT's Supra; 0: none)", low=0, high=4096)
    lora_alpha: float = option(0.0, "scale of the LoRA pair, lora_alpha / r (0: PEFT's default 2r)", low=0.0,
                               high=1e6)
    lora_dropout: float = option(0.0, "dropout on the LoRA pair's input during training", low=0.0, high=0.99)
    save_precomputed_indices: bool = option(True, "write the support's positions into an exported PEFT folder "
                                                  "(false: PEFT finds them again from W0)")
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")


class SupertuningMethod(TargetedMethod):
    family_group = SELECTIVE
    name = "supertuning"
    refused_layers = {"Conv1D": "PEFT's Super-Tuning wraps nn.Linear only, not transformers' Conv1D (GPT-2's "
                                "[in, out] weights)"}
    title = "Super-Tuning"
    config_cls = SupertuningConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless Super-Tuning is already chosen
    targets_default_from = "lora"
    example_space = {**Method.example_space, "sparsity": (0.9, 0.99), "select_top": (True, False), "r": (0, 2),
                     "save_precomputed_indices": (True, False)}
    peft_space = {"sparsity": (0.95, 0.99), "select_top": (True, False), "r": (None, 2),
                  "save_precomputed_indices": (True, False)}
    peft_type = "SUPERTUNING"
    exchange_tolerance = 1e-5  # the bar for outputs equal to PEFT's
    peft_config_fields = {"sparsity": ((int, float), "a number"), "select_top": ((bool,), "true or false"),
                          "r": ((int, type(None)), "a whole number or null"),
                          "lora_alpha": ((int, float, type(None)), "a number or null"),
                          "lora_dropout": ((int, float), "a number"), "init_weights": ((bool,), "true or false"),
                          "save_precomputed_indices": ((bool,), "true or false")}
    glyph = "|W|"
    colour = "#7b7d7d"
    card = MethodCard(
        where="inside a frozen Linear: its largest-magnitude weights train (optionally beside a LoRA pair)",
        intuition="the weights that already matter most are the ones worth moving; pick them by magnitude, with "
                  "no data and no randomness",
        advantages="high-rank, data-free support; only the values (and positions) are stored; mergeable; a LoRA "
                   "pair can add a low-rank direction (Supra)",
        limitations="W0 + S is rebuilt each step (a full weight copy); the support is fixed at build time; "
                    "nn.Linear only",
        formula="h = (W0 + S) x [+ (α/r) B A x],  S: the top-|W0| entries train",
    )

    def validate(self, config: SupertuningConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        for site in self.selected_sites(config, base):
            if support_size(site.out_features, site.in_features, config.sparsity) < 1:
                raise ConfigError(f"sparsity {config.sparsity:g} leaves no trainable entry of {site.id}'s "
                                  f"{site.out_features}x{site.in_features} weight (PEFT refuses it too)")

    def alpha(self, config: SupertuningConfig) -> float:
        return config.lora_alpha or 2.0 * config.r

    def attach(self, model: StudioModel, config: SupertuningConfig) -> None:
        for site in self.selected_sites(config, model.base):
            model.swap(site.module_path, SupertuningLinear(
                model.base.get_submodule(site.module_path), config.sparsity, config.select_top, config.r,
                self.alpha(config), config.lora_dropout))

    def parameter_count(self, config: SupertuningConfig, base: FrozenBase) -> int:
        return sum(support_size(s.out_features, s.in_features, config.sparsity)
                   + config.r * (s.in_features + s.out_features) for s in self.selected_sites(config, base))

    def formula_text(self, config: SupertuningConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        lora = " + r x (in + out)" if config.r else ""
        return (f"sum over {len(sites)} Linear(s) of int(out x in x {1 - config.sparsity:.4g}){lora} = "
                f"{self.parameter_count(config, base):,}")

    def live_formula(self, config: SupertuningConfig) -> str:
        return f"{self.card.formula}, sparsity {config.sparsity:g}" + (f", r = {config.r}" if config.r else "")

    def code(self, config: SupertuningConfig) -> str:
        return f"{code_line(SupertuningLinear.sparse_weight, 'scatter_add')}  # then: " \
               f"{code_line(SupertuningLinear.adapted, 'F.linear')}"

    def shape_notes(self, config: SupertuningConfig, base: FrozenBase, seq_len: int) -> list[str]:
        return [f"{s.id}: {support_size(s.out_features, s.in_features, config.sparsity):,} of "
                f"{s.out_features}x{s.in_features} weights train"
                + (f"; LoRA A {config.r}x{s.in_features}, B {s.out_features}x{config.r}" if config.r else "")
                for s in self.selected_sites(config, base)]

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: SupertuningConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        tensors: dict[str, torch.Tensor] = {}
        targets = []
        for path, layer in modules_of(base, SupertuningLinear):
            name = hf_name(path, base)
            targets.append(name)
            tensors[f"{KEY_PREFIX}{name}.supertuning_values"] = layer.supertuning_values
            if config.save_precomputed_indices:
                tensors[f"{KEY_PREFIX}{name}.supertuning_indices"] = layer.flat_positions().to(torch.int32)
            if config.r:
                tensors[f"{KEY_PREFIX}{name}.supertuning_lora_A.weight"] = layer.supertuning_lora_A.weight
                tensors[f"{KEY_PREFIX}{name}.supertuning_lora_B.weight"] = layer.supertuning_lora_B.weight
        settings = {"sparsity": config.sparsity, "select_top": config.select_top, "r": config.r or None,
                    "lora_alpha": self.alpha(config) if config.r else None, "lora_dropout": config.lora_dropout,
                    "init_weights": True, "save_precomputed_indices": config.save_precomputed_indices,
                    "target_modules": targets}
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        r = peft_config.get("r")
        r = 0 if r is None else whole(peft_config, "r", where, high=4096)
        alpha = peft_config.get("lora_alpha")
        options: dict[str, Any] = {
            "sparsity": number(peft_config, "sparsity", where, 0.99, 0.0, 1.0, high_open=True),
            "select_top": flag(peft_config, "select_top", where, True), "r": r,
            "lora_alpha": number(peft_config, "lora_alpha", where, 0.0, 0.0, 1e6) if r and alpha is not None else 0.0,
            "lora_dropout": number(peft_config, "lora_dropout", where, 0.0, 0.0, 1.0, high_open=True),
            "save_precomputed_indices": flag(peft_config, "save_precomputed_indices", where, True)}
        wanted = {"supertuning_values"} | ({"supertuning_indices"} if options["save_precomputed_indices"] else set()) \
            | ({"supertuning_lora_A.weight", "supertuning_lora_B.weight"} if r else set())
        studio: dict[str, torch.Tensor] = {}
        for module, parts in split_module_keys(tensors, LEAVES, where, "a Super-Tuning").items():
            if set(parts) != wanted:
                raise unknown(where, module, f"holds {', '.join(sorted(parts))}; expected {', '.join(sorted(wanted))}")
            values = parts["supertuning_values"]
            expect_shape(values, 1, f"{where}: {module}.supertuning_values", AdapterFileError, "a vector")
            studio[f"{module}.supertuning_values"] = values
            if "supertuning_indices" in parts:  # PEFT loads the saved support, so the studio does too
                positions = parts["supertuning_indices"]
                if positions.is_floating_point() or positions.shape != values.shape or \
                        (positions.numel() and int(positions.min()) < 0):
                    raise unknown(where, f"{module}.supertuning_indices", "should hold one whole-number position "
                                                                          "per value")
                positions = positions.long()
                studio[f"{module}.supertuning_positions"] = torch.stack([positions // HALF, positions % HALF]).float()
            if r:
                for leaf, axis in (("supertuning_lora_A.weight", 0), ("supertuning_lora_B.weight", 1)):
                    expect_shape(parts[leaf], 2, f"{where}: {module}.{leaf}", AdapterFileError, "a matrix")
                    if parts[leaf].shape[axis] != r:
                        raise unknown(where, f"{module}.{leaf}", f"has shape {tuple(parts[leaf].shape)}; r is {r}")
                    studio[f"{module}.{leaf}"] = parts[leaf]
        return options, studio

    def peft_check_model(self, base: FrozenBase, options: dict[str, Any], where: str) -> None:
        """The LoRA pair, and (without saved positions, which PEFT then finds again from W0) the support's rule must
        be the adapter's."""
        for path, layer in modules_of(base, SupertuningLinear):
            if layer.r != options["r"] or (layer.r and not math.isclose(
                    layer.scaling, (options["lora_alpha"] or 2.0 * options["r"]) / options["r"], rel_tol=1e-6)):
                raise AdapterFileError(f"{where}: the adapter's LoRA pair (r {options['r']}) is not the model's at "
                                       f"{path}")
            if not options["save_precomputed_indices"] and layer.select_top != options["select_top"]:
                end = "largest" if options["select_top"] else "smallest"
                raise AdapterFileError(f"{where}: the adapter trains the {end}-magnitude weights; the model's {path} "
                                       "the other end")
