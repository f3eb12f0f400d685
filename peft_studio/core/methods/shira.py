"""SHiRA: train a sparse, fixed set of a Linear's own weights (Bhardwaj et al., 2024): as many as LoRA would add,
r (in + out), at random positions, so the update is high-rank and touches nothing else.

Follows PEFT's SHiRA (peft/tuners/shira) with its random mask: the positions are the first r (in + out) of a
randperm of the out x in weight from a generator seeded with random_seed (none: a fresh generator's own fixed
seed, PEFT's default), taken in row-major order; the values start at zero (the model starts at W0) and

    h = (W0 + S) x + b,   S zero except the trained values at those positions

A custom mask function (mask_type other than random) cannot be reproduced and is refused.
"""

from __future__ import annotations

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
from .peft_fields import whole
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys, unknown


def random_positions(out_features: int, in_features: int, r: int, seed: int | None) -> torch.Tensor:
    """(2, r (in + out)) rows and columns of the trained weights, in row-major order: PEFT's random_mask."""
    generator = torch.Generator()  # unseeded: its own fixed default seed, as in PEFT
    if seed is not None:
        generator.manual_seed(seed)
    count = r * (in_features + out_features)
    flat = torch.randperm(out_features * in_features, generator=generator, device="cpu")[:count].sort().values
    return torch.stack([flat // in_features, flat % in_features]).to(torch.int)


class ShiraLinear(WeightUpdate):
    """A frozen Linear whose weight gains trained values at fixed sparse positions."""

    def __init__(self, base_layer: nn.Module, r: int, seed: int | None) -> None:
        super().__init__(base_layer)
        self.out_features, self.in_features = base_layer.out_features, base_layer.in_features
        self.r, self.seed = r, seed
        count = r * (self.in_features + self.out_features)
        # the positions follow from the seed: a plain attribute, exported beside the values as PEFT saves them
        self.shira_indices = random_positions(self.out_features, self.in_features, r, seed) \
            if torch.empty(0).device.type != "meta" else torch.zeros(2, count, dtype=torch.int)
        self.shira_weight = nn.Parameter(torch.zeros(count))  # zeros: the model starts at W0

    def delta_weight(self) -> torch.Tensor:
        indices = self.shira_indices.to(self.shira_weight.device).long()
        dense = torch.zeros(self.out_features, self.in_features, dtype=self.shira_weight.dtype,
                            device=self.shira_weight.device)
        return dense.index_put((indices[0], indices[1]), self.shira_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        weight = self.weight_out_in() + self.delta_weight()  # W0 + S: one matmul, as PEFT runs it
        return F.linear(x, weight, self.base_layer.bias)

    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        return result + F.linear(x, self.delta_weight())


@dataclass
class ShiraConfig(MethodConfig):
    r: int = option(32, "sets how many weights train per Linear: r x (in + out), as many as LoRA of rank r adds "
                        "(the update itself is not limited to rank r)", low=1, high=4096)
    random_seed: int = option(-1, "seed of the trained positions (-1: none, PEFT's default: a fresh generator's own "
                                  "fixed seed)", low=-1, high=2**31 - 1)
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")


class ShiraMethod(TargetedMethod):
    name = "shira"
    family_group = SELECTIVE
    refused_layers = {"Conv1D": "PEFT's SHiRA wraps nn.Linear only, not transformers' Conv1D (GPT-2's [in, out] "
                                "weights)"}
    title = "SHiRA"
    config_cls = ShiraConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless SHiRA is already chosen
    targets_default_from = "lora"
    example_space = {**Method.example_space, "r": (1, 2, 4), "random_seed": (-1, 0, 42)}
    peft_space = {"r": (2, 8), "random_seed": (None, 0, 7)}
    peft_type = "SHIRA"
    exchange_tolerance = 1e-5  # the bar for outputs equal to PEFT's
    peft_config_fields = {"mask_type": ((str,), "text"), "random_seed": ((int, type(None)), "a whole number or null"),
                          "init_weights": ((bool,), "true or false")}
    glyph = "S·"
    colour = "#566573"
    card = MethodCard(
        where="inside a frozen Linear: a sparse, fixed set of its own weights trains (as many as LoRA would add)",
        intuition="changing a few scattered weights can move a layer as much as a low-rank update, with full rank "
                  "and no extra matmul",
        advantages="high-rank; only the trained values and their positions are stored; switching adapters touches "
                   "few weights; mergeable",
        limitations="random positions, not learned; building W0 + S each step costs a full weight copy",
        formula="h = (W0 + S) x,  S: r (in + out) trained values at seeded positions",
    )

    def validate(self, config: ShiraConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        for site in self.selected_sites(config, base):
            if config.r * (site.in_features + site.out_features) > site.in_features * site.out_features:
                raise ConfigError(f"r = {config.r} would train r x (in + out) = "
                                  f"{config.r * (site.in_features + site.out_features)} weights of {site.id}, more "
                                  f"than its {site.in_features * site.out_features} (PEFT refuses it too)")

    def attach(self, model: StudioModel, config: ShiraConfig) -> None:
        seed = None if config.random_seed < 0 else config.random_seed
        for site in self.selected_sites(config, model.base):
            model.swap(site.module_path, ShiraLinear(model.base.get_submodule(site.module_path), config.r, seed))

    def parameter_count(self, config: ShiraConfig, base: FrozenBase) -> int:
        return sum(config.r * (s.in_features + s.out_features) for s in self.selected_sites(config, base))

    def formula_text(self, config: ShiraConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        return f"sum over {len(sites)} Linear(s) of r x (in + out) = {self.parameter_count(config, base):,}"

    def code(self, config: ShiraConfig) -> str:
        return f"{code_line(ShiraLinear.delta_weight, 'index_put')}  # then: " \
               f"{code_line(ShiraLinear.forward, 'weight_out_in')}"

    def shape_notes(self, config: ShiraConfig, base: FrozenBase, seq_len: int) -> list[str]:
        return [f"{s.id}: {config.r * (s.in_features + s.out_features)} of {s.out_features}x{s.in_features} weights "
                f"train ({config.r * (s.in_features + s.out_features) / (s.out_features * s.in_features):.1%})"
                for s in self.selected_sites(config, base)]

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: ShiraConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        tensors: dict[str, torch.Tensor] = {}
        targets = []
        for path, layer in modules_of(base, ShiraLinear):
            name = hf_name(path, base)
            targets.append(name)
            tensors[f"{KEY_PREFIX}{name}.shira_weight"] = layer.shira_weight
            tensors[f"{KEY_PREFIX}{name}.shira_indices"] = layer.shira_indices
        settings = {"r": config.r, "mask_type": "random",
                    "random_seed": None if config.random_seed < 0 else config.random_seed,
                    "target_modules": targets, "fan_in_fan_out": False, "init_weights": True}
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        if peft_config.get("mask_type", "random") != "random":
            raise AdapterFileError(f"{where}: mask_type {peft_config.get('mask_type')!r} is a custom mask function; "
                                   "the studio reproduces PEFT's random mask only")
        r = whole(peft_config, "r", where, 32, high=4096)
        seed = peft_config.get("random_seed")
        if seed is not None and (type(seed) is not int or not 0 <= seed < 2**31):
            raise AdapterFileError(f"{where}: random_seed must be null or a whole number in [0, 2^31) (got {seed!r})")
        studio: dict[str, torch.Tensor] = {}
        for module, parts in split_module_keys(tensors, ("shira_weight", "shira_indices"), where, "a SHiRA").items():
            if "shira_weight" not in parts or "shira_indices" not in parts:
                raise unknown(where, module, "needs both shira_weight and shira_indices")
            weight, indices = parts["shira_weight"], parts["shira_indices"]
            expect_shape(weight, 1, f"{where}: {module}.shira_weight", AdapterFileError, "a vector")
            if indices.is_floating_point() and not bool((indices == indices.round()).all()):  # float32 on Windows
                raise unknown(where, f"{module}.shira_indices", "holds fractions where positions belong")
            if indices.dim() != 2 or indices.shape[0] != 2 or indices.shape[1] != weight.shape[0]:
                raise unknown(where, f"{module}.shira_indices", f"has shape {tuple(indices.shape)}; expected (2, "
                                                                f"{weight.shape[0]}) for its {weight.shape[0]} values")
            rows, columns = (int(indices[0].max()) + 1, int(indices[1].max()) + 1) if indices.numel() else (0, 0)
            if weight.shape[0] % r:
                raise unknown(where, f"{module}.shira_weight", f"has {weight.shape[0]} values: not r x (in + out) "
                                                               f"for r = {r}")
            in_plus_out = weight.shape[0] // r
            drawn = self._positions_for(indices, in_plus_out, rows, columns, r, seed)
            if drawn is None or not torch.equal(drawn.long(), indices.long()):
                raise AdapterFileError(f"{where}: {module}.shira_indices are not the positions random_seed "
                                       f"{seed} draws for r = {r} (a custom mask cannot be reproduced)")
            studio[f"{module}.shira_weight"] = weight
        options = {"r": r, "random_seed": -1 if seed is None else seed}
        return options, studio

    @staticmethod
    def _positions_for(indices: torch.Tensor, in_plus_out: int, rows: int, columns: int, r: int,
                       seed: int | None) -> torch.Tensor | None:
        """The positions the seed draws for the layer these indices fit: out + in is known from the count, and out
        >= the highest row + 1, in >= the highest column + 1; each split of out + in that fits is tried."""
        for out_features in range(rows, in_plus_out - columns + 1):
            in_features = in_plus_out - out_features
            if out_features * in_features < r * in_plus_out:
                continue
            drawn = random_positions(out_features, in_features, r, seed)
            if torch.equal(drawn.long(), indices.long()):
                return drawn
        return None

    def peft_check_model(self, base: FrozenBase, options: dict[str, Any], where: str) -> None:
        seed = None if options["random_seed"] < 0 else options["random_seed"]
        for path, layer in modules_of(base, ShiraLinear):
            if layer.seed != seed:
                raise AdapterFileError(f"{where}: the adapter's positions come from random_seed {seed}; the model's "
                                       f"{path} from {layer.seed}")
