"""HRA: a chain of r Householder reflections multiplies a frozen Linear's weight (Yuan et al., 2024, "Bridging
the Gap between Low-rank and Orthogonal Adaptation via Householder Reflection Adaptation").

Follows PEFT's HRA for nn.Linear (peft/tuners/hra): r trainable vectors u_i (the columns of hra_u, in x r), each
normalised, give H = (I - 2 u_1 u_1^T) ... (I - 2 u_r u_r^T); with apply_GS the u_i are first made orthonormal
(Gram-Schmidt) and H = I - 2 U U^T. PEFT starts an even r with the vectors in equal pairs, so consecutive
reflections cancel and the layer starts at W0; an odd r starts from random vectors (PEFT warns), and so here.

    h = (W0 H) x + b          (merged: W = W0 H)
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
from .method import REPARAMETERISED, Method, MethodCard, TargetedMethod, code_line
from .oft import LINEAR_ONLY
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys


class HraLinear(WeightUpdate):
    """A frozen Linear whose weight is multiplied by r Householder reflections: W = W0 H."""

    def __init__(self, base_layer: nn.Module, r: int, apply_gs: bool, init_weights: bool = True) -> None:
        super().__init__(base_layer)
        self.r, self.apply_GS = r, apply_gs
        in_features = base_layer.in_features
        if r % 2 or not init_weights:  # PEFT: no symmetric start for an odd r (or when asked), so random vectors
            self.hra_u = nn.Parameter(torch.empty(in_features, r))
            nn.init.kaiming_uniform_(self.hra_u, a=math.sqrt(5))
        else:  # each vector twice in a row: H = I at the start
            half = torch.zeros(in_features, r // 2)
            nn.init.kaiming_uniform_(half, a=math.sqrt(5))
            self.hra_u = nn.Parameter(torch.repeat_interleave(half, 2, dim=1))

    def reflections(self) -> torch.Tensor:
        """H ([in, in]) as PEFT's get_delta_weight computes it."""
        u = self.hra_u
        eye = torch.eye(u.shape[0], device=u.device, dtype=u.dtype)
        if self.apply_GS:
            basis = [(u[:, 0] / u[:, 0].norm()).view(-1, 1)]
            for i in range(1, self.r):
                column = u[:, i].view(-1, 1)
                for previous in basis:
                    column = column - (previous.t() @ column) * previous
                basis.append((column / column.norm()).view(-1, 1))
            stacked = torch.cat(basis, dim=1)
            return eye - 2 * stacked @ stacked.t()
        u = u / u.norm(dim=0)
        product = eye
        for i in range(self.r):
            column = u[:, i].view(-1, 1)
            product = product - 2 * product @ column @ column.t()  # times (I - 2 u u^T)
        return product

    def adapted(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_out_in().detach() @ self.reflections()  # W0 H, as PEFT (W0 itself gets no gradient)
        return F.linear(x, weight, self.base_layer.bias)

    def rotation(self) -> torch.Tensor:
        """H ([in, in]) with h = W0 (H x) + b."""
        return self.reflections()

    def merged_weight(self) -> torch.Tensor:
        return self.weight_out_in() @ self.reflections()


@dataclass
class HraConfig(MethodConfig):
    r: int = option(8, "number of Householder reflections (even: the layer starts exactly at W0)", low=1, high=4096)
    apply_GS: bool = option(False, "Gram-Schmidt the vectors first: H = I - 2 U U^T with orthonormal U")
    init_weights: bool = option(True, "start an even r from pairs of equal vectors, so H = I (false: random "
                                      "vectors; apply_GS needs that, as equal vectors cannot be orthonormalised)")
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")


class HraMethod(TargetedMethod):
    name = "hra"
    family_group = REPARAMETERISED
    title = "HRA"
    config_cls = HraConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless HRA is already chosen
    targets_default_from = "lora"
    refused_layers = {"Conv1D": LINEAR_ONLY.format("HRA")}
    example_space = {**Method.example_space, ("r", "apply_GS", "init_weights"): (
        (2, False, True), (3, False, True), (8, False, True), (4, False, False), (3, True, True), (8, True, False))}
    peft_space = {"r": (2, 8), "apply_GS": (False, True)}  # PEFT's pairs, moved apart by the test's nudge
    peft_type = "HRA"
    peft_config_fields = {"apply_GS": ((bool,), "true or false"), "init_weights": ((bool,), "true or false")}
    glyph = "H"
    colour = "#7d3c98"
    card = MethodCard(
        where="on a frozen Linear's weight: r Householder reflections multiply it from the input side",
        intuition="each reflection mirrors the input space in one learned plane; a chain of them is any orthogonal "
                  "map of rank-r reach, so HRA is both low-rank (W0 H - W0 has rank <= r) and orthogonal",
        advantages="in x r parameters like one LoRA factor; keeps W0's angles; mergeable (W = W0 H)",
        limitations="r sequential in x in products per step; an odd r does not start at W0 (PEFT's rule)",
        formula="h = (W0 H) x + b,  H = (I - 2 u_1 u_1^T) ... (I - 2 u_r u_r^T),  ||u_i|| = 1",
    )

    def validate(self, config: HraConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        if config.apply_GS and config.init_weights and config.r % 2 == 0:
            raise ConfigError(f"apply_GS with init_weights true and an even r ({config.r}): PEFT starts from pairs of "
                              "equal vectors, which Gram-Schmidt cannot make orthonormal (0/0: the reflections are "
                              "rounding noise and training diverges); set init_weights false or use an odd r")

    def attach(self, model: StudioModel, config: HraConfig) -> None:
        for site in self.selected_sites(config, model.base):
            original = model.base.get_submodule(site.module_path)
            model.swap(site.module_path, HraLinear(original, config.r, config.apply_GS, config.init_weights))

    def parameter_count(self, config: HraConfig, base: FrozenBase) -> int:
        return sum(site.in_features * config.r for site in self.selected_sites(config, base))

    def formula_text(self, config: HraConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        return f"sum over {len(sites)} Linear(s) of in x r = {self.parameter_count(config, base):,}"

    def live_formula(self, config: HraConfig) -> str:
        if config.apply_GS:
            return f"h = (W0 H) x + b,  H = I - 2 U U^T,  U = Gram-Schmidt(u_1..u_{config.r})"
        return self.card.formula.replace("u_r", f"u_{config.r}")

    def code(self, config: HraConfig) -> str:
        return code_line(HraLinear.adapted, "self.reflections()")

    def shape_notes(self, config: HraConfig, base: FrozenBase, seq_len: int) -> list[str]:
        start = "" if config.r % 2 == 0 and config.init_weights else \
            " (random vectors: starts from random reflections, not at W0)"
        return [f"{s.id}: hra_u ({s.in_features}, {config.r}) -> H {s.in_features}x{s.in_features}{start}"
                for s in self.selected_sites(config, base)]

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: HraConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        tensors: dict[str, torch.Tensor] = {}
        targets = []
        for path, module in modules_of(base, HraLinear):
            name = hf_name(path, base)
            targets.append(name)
            tensors[f"{KEY_PREFIX}{name}.hra_u"] = module.hra_u
        settings = {"r": config.r, "apply_GS": config.apply_GS, "target_modules": targets, "bias": "none",
                    "init_weights": config.init_weights, "layers_to_transform": None, "layers_pattern": None,
                    "exclude_modules": None}
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        r = peft_config.get("r", 8)
        if peft_config.get("bias", "none") != "none":
            raise AdapterFileError(f"{where}: bias {peft_config.get('bias')!r} trains base biases too; only 'none'")
        studio: dict[str, torch.Tensor] = {}
        for module, parts in split_module_keys(tensors, ("hra_u",), where, "an HRA").items():
            tensor = parts["hra_u"]
            expect_shape(tensor, 2, f"{where}: {module}.hra_u", AdapterFileError, f"(in, {r})")
            if tensor.shape[1] != r:
                raise AdapterFileError(f"{where}: {module}.hra_u holds {tensor.shape[1]} vectors, r is {r}")
            studio[f"{module}.hra_u"] = tensor
        gs = bool(peft_config.get("apply_GS", False))
        # init_weights only chose starting values, which the adapter's replace; PEFT's pairs would refuse apply_GS
        init = bool(peft_config.get("init_weights", True)) and not (gs and r % 2 == 0)
        return {"r": r, "apply_GS": gs, "init_weights": init}, studio
