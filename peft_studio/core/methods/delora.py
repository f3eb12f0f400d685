"""DeLoRA: LoRA's B A with each rank-one term normalised and the whole update's size bounded by a learned lambda
(Bini et al., 2025, "Decoupling Angles and Strength in Low-rank Adaptation").

Follows PEFT's DeLoRA for nn.Linear (peft/tuners/delora): A (r x in, Kaiming-uniform), B (out x r, zeros, so the
layer starts at W0), a scalar lambda (starts at delora_lambda) and, frozen, the column norms of W0 taken when the
adapter is made (PEFT saves them with the adapter as delora_w_norm):

    h = W0 x + b + B diag(lambda / r / (|a_i| |b_i|)) A (w * x),   w_j = |W0[:, j]|     (merged: W = W0 + that)

so ||delta W|| <= lambda ||W0||-ish whatever A and B do: the direction trains freely, the strength is lambda.
"""

from __future__ import annotations

import math
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
from .method import REPARAMETERISED, Method, MethodCard, TargetedMethod, code_line
from .oft import LINEAR_ONLY
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys

LEAVES = ("delora_A", "delora_B", "delora_lambda", "delora_w_norm")


class DeloraLinear(WeightUpdate):
    """A frozen Linear plus DeLoRA's normalised, lambda-bounded low-rank update."""

    def __init__(self, base_layer: nn.Module, r: int, delora_lambda: float, dropout: float, init_weights: bool) -> None:
        super().__init__(base_layer)
        self.r = r
        self.delora_A = nn.Parameter(torch.empty(r, base_layer.in_features))
        self.delora_B = nn.Parameter(torch.empty(base_layer.out_features, r))
        self.delora_lambda = nn.Parameter(torch.full((1,), float(delora_lambda)))
        nn.init.kaiming_uniform_(self.delora_A, a=math.sqrt(5))
        if init_weights:
            nn.init.zeros_(self.delora_B)  # B = 0: starts at W0
        else:
            nn.init.kaiming_uniform_(self.delora_B, a=math.sqrt(5))
        self.delora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        weight = self.weight_out_in()  # W0's column norms, frozen (PEFT: a saved buffer; ones on the meta device)
        norms = torch.ones(weight.shape[1], device=weight.device) if weight.is_meta else \
            torch.norm(weight.detach(), dim=0)
        self.delora_w_norm = nn.Parameter(norms, requires_grad=False)

    def scaling(self) -> torch.Tensor:
        """lambda / r / (|a_i| |b_i|) per rank-one term (norms clamped at 1e-4, as PEFT)."""
        a_norm = torch.clamp(self.delora_A.norm(dim=1), min=1e-4)
        b_norm = torch.clamp(self.delora_B.norm(dim=0), min=1e-4)
        return (self.delora_lambda / self.r) / (a_norm * b_norm)

    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        hidden = nn.functional.linear(self.delora_dropout(x) * self.delora_w_norm, self.delora_A)
        hidden = nn.functional.linear(hidden * self.scaling(), self.delora_B)  # normalised terms, lambda-scaled
        return result + hidden

    def delta_weight(self) -> torch.Tensor:
        delta = self.delora_B @ torch.diag_embed(self.scaling()) @ self.delora_A
        return delta * self.delora_w_norm.unsqueeze(0)


@dataclass
class DeloraConfig(MethodConfig):
    r: int = option(8, "rank of the update", low=1, high=4096)
    delora_lambda: float = option(15.0, "starting value of lambda, the learned bound on the update's size",
                                  low=0.0, high=1e6)
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")
    module_dropout: float = option(0.0, "dropout on the input of A during training", low=0.0, high=0.99)
    init_weights: bool = option(True, "B starts at zeros, so the layer starts at W0 (false: random B)")


class DeloraMethod(TargetedMethod):
    name = "delora"
    family_group = REPARAMETERISED
    title = "DeLoRA"
    config_cls = DeloraConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless DeLoRA is already chosen
    targets_default_from = "lora"
    refused_layers = {"Conv1D": LINEAR_ONLY.format("DeLoRA")}
    example_space = {**Method.example_space, "r": (1, 4, 8), "delora_lambda": (1.0, 15.0),
                     "module_dropout": (0.0, 0.1), "init_weights": (True, False)}
    peft_space = {"r": (2, 8), "delora_lambda": (5, 15), "module_dropout": (0.0, 0.1)}
    peft_type = "DELORA"
    peft_config_fields = {"delora_lambda": ((int, float), "a number"), "module_dropout": ((int, float), "a number"),
                          "init_weights": ((bool,), "true or false"),
                          "lambda_pattern": ((dict, type(None)), "an object")}
    peft_config_ranges = {"delora_lambda": (0, 1e6), "module_dropout": (0, 0.99)}
    glyph = "Δ"
    colour = "#b7950b"
    card = MethodCard(
        where="beside a frozen Linear: LoRA's B A with each rank-one term normalised and one learned bound lambda",
        intuition="decouple the angle from the strength: A and B choose directions, lambda alone says how far "
                  "the weight may move",
        advantages="robust to learning rate and long training (the update cannot grow past lambda); mergeable",
        limitations="r (in + out) + 1 parameters like LoRA plus norms every step; the bound uses W0's column norms",
        formula="h = W0 x + b + B diag(lambda / r / (|a_i| |b_i|)) A (|W0 columns| * x)",
    )

    def attach(self, model: StudioModel, config: DeloraConfig) -> None:
        for site in self.selected_sites(config, model.base):
            original = model.base.get_submodule(site.module_path)
            model.swap(site.module_path, DeloraLinear(original, config.r, config.delora_lambda,
                                                      config.module_dropout, config.init_weights))

    def parameter_count(self, config: DeloraConfig, base: FrozenBase) -> int:
        return sum(config.r * (s.in_features + s.out_features) + 1 for s in self.selected_sites(config, base))

    def formula_text(self, config: DeloraConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        return (f"sum over {len(sites)} Linear(s) of r x (in + out) + 1 (lambda) = "
                f"{self.parameter_count(config, base):,} (plus W0's column norms, frozen)")

    def live_formula(self, config: DeloraConfig) -> str:
        return self.card.formula.replace("lambda / r", f"lambda / {config.r}") + \
            f",  lambda starts at {config.delora_lambda:g}"

    def code(self, config: DeloraConfig) -> str:
        return code_line(DeloraLinear.update, "self.scaling()")

    def shape_notes(self, config: DeloraConfig, base: FrozenBase, seq_len: int) -> list[str]:
        return [f"{s.id}: A {config.r}x{s.in_features}, B {s.out_features}x{config.r}, lambda (1,), frozen column "
                f"norms ({s.in_features},)" for s in self.selected_sites(config, base)]

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: DeloraConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        tensors: dict[str, torch.Tensor] = {}
        targets = []
        for path, module in modules_of(base, DeloraLinear):
            name = hf_name(path, base)
            targets.append(name)
            for leaf in LEAVES:
                tensors[f"{KEY_PREFIX}{name}.{leaf}"] = getattr(module, leaf)
        settings = {"r": config.r, "delora_lambda": config.delora_lambda, "module_dropout": config.module_dropout,
                    "target_modules": targets, "bias": "none", "init_weights": config.init_weights,
                    "layers_to_transform": None, "layers_pattern": None, "exclude_modules": None,
                    "rank_pattern": {}, "lambda_pattern": {}}
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        if peft_config.get("bias", "none") != "none":
            raise AdapterFileError(f"{where}: bias {peft_config.get('bias')!r} trains base biases too; only 'none'")
        for field in ("rank_pattern", "lambda_pattern"):
            if peft_config.get(field):
                raise AdapterFileError(f"{where}: {field} (per-module ranks or lambdas) is not supported")
        r = peft_config.get("r", 8)
        shapes = {"delora_A": (2, f"({r}, in)"), "delora_B": (2, f"(out, {r})"), "delora_lambda": (1, "(1,)"),
                  "delora_w_norm": (1, "(in,)")}
        studio: dict[str, torch.Tensor] = {}
        for module, parts in split_module_keys(tensors, LEAVES, where, "a DeLoRA").items():
            missing = [leaf for leaf in LEAVES if leaf not in parts]
            if missing:
                raise AdapterFileError(f"{where}: {module} has no {missing[0]}")
            for leaf, tensor in parts.items():
                dims, what = shapes[leaf]
                expect_shape(tensor, dims, f"{where}: {module}.{leaf}", AdapterFileError, what)
                studio[f"{module}.{leaf}"] = tensor
            if parts["delora_A"].shape[0] != r or parts["delora_B"].shape[1] != r:
                raise AdapterFileError(f"{where}: {module}'s delora_A / delora_B do not have rank r = {r}")
        options = {"r": r, "delora_lambda": float(peft_config.get("delora_lambda", 15)),
                   "module_dropout": float(peft_config.get("module_dropout") or 0.0)}
        return options, studio
