"""GLoRA: one generalised prompt for a frozen Linear's weight and bias (Chavan et al., 2023, "One-for-All:
Generalized LoRA for Parameter-Efficient Fine-tuning").

Follows PEFT's GLoRA for nn.Linear (peft/tuners/glora): five trainable paths, each a low-rank product ("lora":
Xd Xu, Xd zeros at the start), a vector, a single constant or nothing ("none"), chosen by config_A_B, config_C and
config_D_E; all start at zero, so the layer starts at W0. C, D and E act on the bias and exist only where the
Linear has one:

    W = W0 + W0 * A + B,     b' = b + b * D + E + W0 C,     h = W x + b'       (merged: exactly that W and b')
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

A_B, C, D_E = ("lora", "vector", "constant", "none"), ("lora", "vector", "none"), ("vector", "constant", "none")
PATHS = ("glora_A", "glora_B", "glora_C", "glora_D", "glora_E")


class LowRankPath(nn.Module):
    """Xd Xu ([rows, cols]); Xd starts at zeros (PEFT: Xu Kaiming-uniform first, then Xd)."""

    def __init__(self, rows: int, cols: int, r: int, init_weights: bool) -> None:
        super().__init__()
        self.Xd = nn.Parameter(torch.zeros(rows, r))
        self.Xu = nn.Parameter(torch.zeros(r, cols))
        nn.init.kaiming_uniform_(self.Xu, a=math.sqrt(5))
        if not init_weights:
            nn.init.kaiming_uniform_(self.Xd, a=math.sqrt(5))

    def forward(self) -> torch.Tensor:
        return self.Xd @ self.Xu


class VectorPath(nn.Module):
    """A vector: a column ([n, 1]) for A, B and C, a row ([n]) for D and E."""

    def __init__(self, features: int, column: bool, init_weights: bool) -> None:
        super().__init__()
        self.X = nn.Parameter(torch.zeros((features, 1) if column else (features,)))
        if not init_weights:
            nn.init.kaiming_uniform_(self.X.unsqueeze(0) if self.X.dim() == 1 else self.X, a=math.sqrt(5))

    def forward(self) -> torch.Tensor:
        return self.X


class ConstantPath(nn.Module):
    def __init__(self, init_weights: bool) -> None:
        super().__init__()
        self.X = nn.Parameter(torch.zeros(1))
        if not init_weights:
            nn.init.normal_(self.X, mean=0.0, std=0.02)

    def forward(self) -> torch.Tensor:
        return self.X[0]


class NoPath(nn.Module):
    """A disabled path: zeros of its shape (PEFT stores them as a buffer; here they are made when used)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self) -> torch.Tensor:
        return torch.zeros(self.shape)


def _path(kind: str, rows: int, cols: int, r: int, column: bool, init_weights: bool) -> nn.Module:
    if kind == "lora":
        return LowRankPath(rows, cols, r, init_weights)
    if kind == "vector":
        return VectorPath(rows, column, init_weights)
    if kind == "constant":
        return ConstantPath(init_weights)
    return NoPath((rows, cols) if column else (rows,))


def _has_bias(layer: nn.Module) -> bool:
    return getattr(getattr(layer, "base_layer", layer), "bias", None) is not None


class GloraLinear(WeightUpdate):
    """A frozen Linear with GLoRA's five paths."""

    def __init__(self, base_layer: nn.Module, config: GloraConfig) -> None:
        super().__init__(base_layer)
        rows, cols, r, init = base_layer.out_features, base_layer.in_features, config.r, config.init_weights
        bias = _has_bias(base_layer)
        self.glora_A = _path(config.config_A_B, rows, cols, r, True, init)
        self.glora_B = _path(config.config_A_B, rows, cols, r, True, init)
        self.glora_C = _path(config.config_C if bias else "none", cols, 1, r, True, init)
        self.glora_D = _path(config.config_D_E if bias else "none", rows, 1, r, False, init)
        self.glora_E = _path(config.config_D_E if bias else "none", rows, 1, r, False, init)

    def effective(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(W0 + W0 * A + B, b + b * D + E + W0 C): the weight and bias the layer computes with."""
        weight, bias = self.weight_out_in(), self.base_layer.bias
        a, b, c, d, e = (getattr(self, path)().to(weight) for path in PATHS)
        weight_eff = weight + weight * a + b
        if bias is None:
            return weight_eff, None
        return weight_eff, bias + bias * d + e + torch.matmul(weight, c).squeeze(-1)

    def adapted(self, x: torch.Tensor) -> torch.Tensor:
        base_result = self.base_layer(x)
        weight, bias = self.effective()
        return (base_result + F.linear(x, weight, bias)) - base_result  # PEFT's sum over active adapters, of one

    def merged_weight(self) -> torch.Tensor:
        return self.effective()[0]

    def merged_bias(self) -> torch.Tensor | None:
        return self.effective()[1]


@dataclass
class GloraConfig(MethodConfig):
    r: int = option(8, "rank of the paths set to lora", low=1, high=4096)
    config_A_B: str = option("lora", "paths A (scales W0) and B (adds to W0): lora (Xd Xu), vector (one per output), "
                                     "constant (one number) or none", choices=A_B)
    config_C: str = option("lora", "path C (W0 C joins the bias): lora, vector or none", choices=C)
    config_D_E: str = option("constant", "paths D (scales the bias) and E (adds to it): vector, constant or none",
                             choices=D_E)
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")
    init_weights: bool = option(True, "start every path at zero, so the layer starts at W0 (false: random)")


class GloraMethod(TargetedMethod):
    name = "glora"
    family_group = REPARAMETERISED
    title = "GLoRA"
    config_cls = GloraConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless GLoRA is already chosen
    targets_default_from = "lora"
    refused_layers = {"Conv1D": LINEAR_ONLY.format("GLoRA")}
    example_space = {**Method.example_space, "r": (1, 4), "config_A_B": A_B, "config_C": C, "config_D_E": D_E,
                     "init_weights": (True, False)}
    peft_space = {"r": (2, 4), "config_A_B": A_B[:3], "config_C": C, "config_D_E": D_E}  # all none trains nothing
    peft_type = "GLORA"
    exchange_tolerance = 2e-4  # W0*A and the bias paths move the hidden states far: 1.0e-4 of float32 noise measured
    peft_config_fields = {"config_A_B": ((str,), "lora, vector, constant or none"),
                          "config_C": ((str,), "lora, vector or none"),
                          "config_D_E": ((str,), "vector, constant or none"),
                          "init_weights": ((bool,), "true or false")}
    glyph = "G"
    colour = "#2874a6"
    card = MethodCard(
        where="on a frozen Linear's weight and bias: scale and shift both, through five small paths",
        intuition="one prompt for everything: W0 * A rescales weights, B adds to them (LoRA), D, E and W0 C do "
                  "the same for the bias; each path can be low-rank, a vector, a constant or off",
        advantages="covers LoRA, IA3-like scaling and bias tuning at once; mergeable into W and b",
        limitations="more parameters than LoRA at the same r (two low-rank paths) and an in x out product per step",
        formula="h = (W0 + W0 * A + B) x + b + b * D + E + W0 C",
    )

    @staticmethod
    def site_count(config: GloraConfig, site: Site, bias: bool) -> int:
        inp, out, r = site.in_features, site.out_features, config.r
        count = {"lora": 2 * r * (inp + out), "vector": 2 * out, "constant": 2, "none": 0}[config.config_A_B]
        if bias:
            count += {"lora": r * (inp + 1), "vector": inp, "none": 0}[config.config_C]
            count += {"vector": 2 * out, "constant": 2, "none": 0}[config.config_D_E]
        return count

    def validate(self, config: GloraConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        if self.parameter_count(config, base) == 0:
            raise ConfigError(f"config_A_B {config.config_A_B}, config_C {config.config_C} and config_D_E "
                              f"{config.config_D_E} leave these Linears nothing to train (C, D and E need a bias)")

    def attach(self, model: StudioModel, config: GloraConfig) -> None:
        for site in self.selected_sites(config, model.base):
            model.swap(site.module_path, GloraLinear(model.base.get_submodule(site.module_path), config))

    def parameter_count(self, config: GloraConfig, base: FrozenBase) -> int:
        return sum(self.site_count(config, site, _has_bias(base.get_submodule(site.module_path)))
                   for site in self.selected_sites(config, base))

    def formula_text(self, config: GloraConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        parts = {"lora": "2 r (in + out)", "vector": "2 out", "constant": "2", "none": "0"}[config.config_A_B]
        bias = {"lora": "r (in + 1)", "vector": "in", "none": "0"}[config.config_C] + " + " + \
            {"vector": "2 out", "constant": "2", "none": "0"}[config.config_D_E]
        return (f"sum over {len(sites)} Linear(s) of A, B: {parts} (+ C, D, E where it has a bias: {bias}) = "
                f"{self.parameter_count(config, base):,}")

    def live_formula(self, config: GloraConfig) -> str:
        return (f"{self.card.formula}  (A, B: {config.config_A_B}; C: {config.config_C}; D, E: {config.config_D_E}"
                f"; r = {config.r})")

    def code(self, config: GloraConfig) -> str:
        return code_line(GloraLinear.effective, "weight_eff = weight + weight * a + b")

    def shape_notes(self, config: GloraConfig, base: FrozenBase, seq_len: int) -> list[str]:
        notes = []
        for site in self.selected_sites(config, base):
            bias = _has_bias(base.get_submodule(site.module_path))
            notes.append(f"{site.id}: A, B {config.config_A_B}; C {config.config_C if bias else 'none (no bias)'}; "
                         f"D, E {config.config_D_E if bias else 'none (no bias)'}: "
                         f"{self.site_count(config, site, bias):,} parameters")
        return notes

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: GloraConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        tensors: dict[str, torch.Tensor] = {}
        targets = []
        for path, module in modules_of(base, GloraLinear):
            name = hf_name(path, base)
            targets.append(name)
            for leaf in PATHS:
                part = getattr(module, leaf)
                if isinstance(part, NoPath):  # PEFT saves a disabled path's zeros buffer
                    tensors[f"{KEY_PREFIX}{name}.{leaf}.zeros"] = part()
                for key, parameter in part.named_parameters():
                    tensors[f"{KEY_PREFIX}{name}.{leaf}.{key}"] = parameter
        settings = {"r": config.r, "config_A_B": config.config_A_B, "config_C": config.config_C,
                    "config_D_E": config.config_D_E, "init_weights": config.init_weights, "target_modules": targets,
                    "bias": "none"}  # PEFT's GloraConfig has no layers_to_transform: the module names say which
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        if peft_config.get("bias", "none") != "none":
            raise AdapterFileError(f"{where}: bias {peft_config.get('bias')!r} trains base biases too; only 'none'")
        options = {"r": peft_config.get("r", 8), "config_A_B": peft_config.get("config_A_B", "lora"),
                   "config_C": peft_config.get("config_C", "lora"),
                   "config_D_E": peft_config.get("config_D_E", "constant")}
        for key, allowed in (("config_A_B", A_B), ("config_C", C), ("config_D_E", D_E)):
            if options[key] not in allowed:
                raise AdapterFileError(f"{where}: {key} {options[key]!r} is not one of {', '.join(allowed)}")
        leaves = tuple(f"{path}.{leaf}" for path in PATHS for leaf in ("Xd", "Xu", "X", "zeros"))
        studio: dict[str, torch.Tensor] = {}
        for module, parts in split_module_keys(tensors, leaves, where, "a GLoRA").items():
            for leaf, tensor in parts.items():
                if leaf.endswith(".zeros"):  # a disabled path: nothing to load, but it must be what PEFT makes
                    if tensor.numel() and tensor.abs().max() != 0:
                        raise AdapterFileError(f"{where}: {module}.{leaf} (a disabled path) holds non-zero values")
                    continue
                expect_shape(tensor, tensor.dim() or 1, f"{where}: {module}.{leaf}", AdapterFileError)
                studio[f"{module}.{leaf}"] = tensor
        return options, studio
