"""LoRA: h = W0 x + (alpha / r) B A x beside a frozen Linear (Hu et al., 2021; PEFT conventions)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..bases.frozen import FrozenBase
from ..bases.hf_names import hf_module
from ..bases.sites import LINEAR
from ..errors import AdapterFileError
from ..files.safe_io import expect_shape
from ..model.studio_model import StudioModel
from .config import MethodConfig, option
from .mergeable import WeightUpdate
from .method import Method, MethodCard, TargetedMethod, code_line
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys, unknown


class LoraLinear(WeightUpdate):
    """A frozen Linear plus a trainable low-rank update; `merge` folds the update into W0."""

    def __init__(self, base_layer: nn.Module, r: int, alpha: float, dropout: float) -> None:
        super().__init__(base_layer)
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lora_A = nn.Parameter(torch.empty(r, base_layer.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base_layer.out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as PEFT: A random, B zero -> starts at W0

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A) * self.scaling

    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        return result + (self.lora_dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scaling


@dataclass
class LoraConfig(MethodConfig):
    r: int = option(8, "rank of the update B A", low=1, high=4096)
    alpha: float = option(16.0, "scale numerator: the update is multiplied by alpha / r", low=1e-6, high=1e6)
    dropout: float = option(0.0, "dropout on the input of A during training", low=0.0, high=0.99)
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "such as layers.0.attn.q work too; default: the base's)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")


class LoraMethod(TargetedMethod):
    name = "lora"
    title = "LoRA"
    config_cls = LoraConfig
    site_kinds = (LINEAR,)
    claims_kinds = (LINEAR,)
    example_space = {**Method.example_space, "r": (1, 4, 8), "alpha": (1.0, 8.0, 16.0)}
    peft_space = {"r": (2, 4), "lora_alpha": (8, 16)}
    peft_type = "LORA"
    glyph = "BA"
    colour = "#f07f16"
    card = MethodCard(
        where="beside a frozen Linear: a low-rank update B A added to its output",
        intuition="the change a task needs to a weight matrix is low-rank, so learn it as two thin matrices",
        advantages="no extra inference cost once merged into W0; mature tooling; the usual first choice",
        limitations="rank r caps how different the new weights can be; one more hyper-parameter pair (r, alpha)",
        formula="h = W0 x + (alpha / r) B A x",
    )

    def attach(self, model: StudioModel, config: LoraConfig) -> None:
        for site in self.selected_sites(config, model.base):
            original = model.base.get_submodule(site.module_path)
            model.swap(site.module_path, LoraLinear(original, config.r, config.alpha, config.dropout))

    def parameter_count(self, config: LoraConfig, base: FrozenBase) -> int:
        return sum(config.r * (s.in_features + s.out_features) for s in self.selected_sites(config, base))

    def formula_text(self, config: LoraConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        return f"sum over {len(sites)} Linear(s) of r x (in + out) = {self.parameter_count(config, base):,}"

    def live_formula(self, config: LoraConfig) -> str:
        return self.card.formula.replace("(alpha / r)", f"({config.alpha:g}/{config.r} = {config.alpha / config.r:g})")

    def code(self, config: LoraConfig) -> str:
        return code_line(LoraLinear.update, "lora_A")

    def shape_notes(self, config: LoraConfig, base: FrozenBase, seq_len: int) -> list[str]:
        return [f"{s.id}: A {config.r}x{s.in_features}, B {s.out_features}x{config.r}, "
                f"scale alpha/r = {config.alpha:g}/{config.r} = {config.alpha / config.r:g}"
                for s in self.selected_sites(config, base)]

    # ---- Hugging Face PEFT exchange (LoRA and QLoRA) ----------------------------------------------
    def peft_export(self, base: FrozenBase, config: LoraConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        return lora_peft_export(base, config)

    def peft_claims(self, peft_config: dict[str, Any]) -> bool:
        return not peft_config.get("use_dora")  # use_dora is DoRA's

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        return lora_peft_translate(peft_config, tensors, where)

    def peft_check_model(self, base: FrozenBase, options: dict[str, Any], where: str) -> None:
        lora_check_model(base, LoraLinear, options, where)


# ---- Hugging Face PEFT exchange ------------------------------------------------------------------------
def lora_peft_export(base: FrozenBase, config: LoraConfig, kind: type = LoraLinear,
                     extra: tuple[str, ...] = ()) -> tuple[dict, dict[str, torch.Tensor]]:
    """LoRA's adapter_config.json settings and lora_A / lora_B (plus `extra` parameters) by PEFT key."""
    tensors: dict[str, torch.Tensor] = {}
    targets = []
    for path, module in modules_of(base, kind):
        name = hf_name(path, base)
        targets.append(name)
        tensors[f"{KEY_PREFIX}{name}.lora_A.weight"] = module.lora_A
        tensors[f"{KEY_PREFIX}{name}.lora_B.weight"] = module.lora_B
        for leaf in extra:
            tensors[f"{KEY_PREFIX}{name}.{leaf}"] = getattr(module, leaf)
    settings = {"r": config.r, "lora_alpha": config.alpha, "lora_dropout": config.dropout, "target_modules": targets,
                "bias": "none", "fan_in_fan_out": False, "init_lora_weights": True, "use_rslora": False,
                "use_dora": bool(extra), "layers_to_transform": None, "rank_pattern": {}, "alpha_pattern": {}}
    return settings, tensors


def lora_peft_translate(config: dict, tensors: dict[str, torch.Tensor], where: str,
                        extra: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """Options and studio tensors from a PEFT LoRA adapter (DoRA: extra = its magnitude leaf)."""
    if config.get("use_qalora"):
        raise AdapterFileError(f"{where}: use_qalora is not supported (plain LoRA only)")
    if config.get("bias", "none") != "none" or config.get("lora_bias"):
        raise AdapterFileError(f"{where}: bias {config.get('bias')!r} trains base biases too; only bias 'none' is "
                               "supported")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise AdapterFileError(f"{where}: rank_pattern / alpha_pattern (per-module ranks) are not supported")
    if config.get("fan_in_fan_out"):
        raise AdapterFileError(f"{where}: fan_in_fan_out is for GPT-2 style Conv1D layers, not a BERT encoder")
    r = config.get("r")
    if type(r) is not int or r < 1:
        raise AdapterFileError(f"{where}: r must be a positive integer (got {r!r})")
    alpha = float(config.get("lora_alpha") or 8)
    if config.get("use_rslora"):  # rsLoRA scales by alpha / sqrt(r): the same scale as alpha * sqrt(r) / r
        alpha *= math.sqrt(r)
    studio: dict[str, torch.Tensor] = {}
    leaves = ("lora_A.weight", "lora_B.weight", *extra)
    shapes = {"lora_A.weight": (2, "(r, in)"), "lora_B.weight": (2, "(out, r)")}
    for module, parts in split_module_keys(tensors, leaves, where, "a LoRA").items():
        for leaf, tensor in parts.items():
            key = f"{hf_module(module)}.{leaf}"
            dims, what = shapes.get(leaf, (1, "(out,)"))
            expect_shape(tensor, dims, f"{where}: {key}", AdapterFileError, what)
            if leaf in shapes:
                rank = tensor.shape[0] if leaf == "lora_A.weight" else tensor.shape[1]
                if rank != r:
                    raise unknown(where, key, f"has rank {rank}, adapter_config.json says r={r}")
            studio[f"{module}.{leaf.removesuffix('.weight')}"] = tensor
    options = {"r": r, "alpha": alpha, "dropout": float(config.get("lora_dropout") or 0.0)}
    return options, studio


def lora_check_model(base: FrozenBase, kind: type, options: dict, where: str) -> None:
    """The model's LoRA scale must be the adapter's (a shape check cannot see alpha)."""
    for path, module in modules_of(base, kind):
        if not math.isclose(module.scaling, options["alpha"] / options["r"], rel_tol=1e-6):
            raise AdapterFileError(f"{where}: LoRA scale alpha/r = {options['alpha']:g}/{options['r']}, the model's "
                                   f"{path} uses {module.scaling:g}")

