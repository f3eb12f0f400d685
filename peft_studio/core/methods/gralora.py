"""GraLoRA: a Linear's input and output are split into k blocks, and each output block gets its own small LoRA
that reads every input block (Jung et al., 2025): LoRA's parameter count with k times the expressivity.

Follows PEFT's GraLoRA (peft/tuners/gralora/layer.py): gralora_A (k, in / k, r) and gralora_B (k, r, out / k);
input block n is projected to rank r by A[n], the r outputs of each block are dealt out in k slices of r / k to the
k output blocks, and output block j mixes its slices with B[j]. With hybrid_r > 0 a plain LoRA of that rank is added.
A's start Kaiming-uniform and B's at zero (so the model starts at W0); the scale is alpha / (r + hybrid_r).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR
from ..errors import AdapterFileError, ConfigError
from ..model.studio_model import StudioModel
from .config import MethodConfig, option
from .lycoris import export_own_parameters
from .mergeable import WeightUpdate
from .method import REPARAMETERISED, Method, MethodCard, TargetedMethod, code_line
from .peft_fields import flag, number, whole
from .peft_format import modules_of, split_module_keys, unknown

LEAVES = ("gralora_A", "gralora_B", "gralora_A_general.weight", "gralora_B_general.weight")


class GraLoraLinear(WeightUpdate):
    """A frozen Linear plus alpha / (r + hybrid_r) times the k x k grid of block LoRAs (and the hybrid LoRA)."""

    def __init__(self, base_layer: nn.Module, r: int, k: int, hybrid_r: int, alpha: float, dropout: float) -> None:
        super().__init__(base_layer)
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.r, self.k, self.hybrid_r, self.scaling = r, k, hybrid_r, alpha / (r + hybrid_r)
        self.gralora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        blocks_a, blocks_b = [], []
        for _ in range(k):  # PEFT's order: each block's A (Kaiming) then its B (zeros)
            a = torch.empty(r, self.in_features // k)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            blocks_a.append(a)
            blocks_b.append(torch.zeros(self.out_features // k, r))
        self.gralora_A = nn.Parameter(torch.stack(blocks_a).transpose(1, 2).contiguous())  # (k, in / k, r)
        self.gralora_B = nn.Parameter(torch.stack(blocks_b).transpose(1, 2).contiguous())  # (k, r, out / k)
        if hybrid_r:
            self.gralora_A_general = nn.Linear(self.in_features, hybrid_r, bias=False)
            self.gralora_B_general = nn.Linear(hybrid_r, self.out_features, bias=False)
            nn.init.kaiming_uniform_(self.gralora_A_general.weight, a=math.sqrt(5))
            nn.init.zeros_(self.gralora_B_general.weight)

    def grid(self, x: torch.Tensor) -> torch.Tensor:
        """The block LoRAs' output for x (..., in), unscaled."""
        k, sub = self.k, self.r // self.k
        lead = x.shape[:-1]
        x = x.reshape(-1, k, self.in_features // k)
        ranks = torch.einsum("bni,nir->bnr", x, self.gralora_A)  # each input block to rank r
        dealt = ranks.view(-1, k, k, sub).permute(0, 2, 1, 3).reshape(-1, k, self.r)  # r/k of each to each block
        return torch.einsum("bjr,jro->bjo", dealt, self.gralora_B).reshape(*lead, self.out_features)

    def delta_weight(self) -> torch.Tensor:
        eye = torch.eye(self.in_features, dtype=self.gralora_A.dtype, device=self.gralora_A.device)
        delta = self.grid(eye).T
        if self.hybrid_r:
            delta = delta + self.gralora_B_general.weight @ self.gralora_A_general.weight
        return delta * self.scaling

    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        dropped = self.gralora_dropout(x)
        result = result + self.scaling * self.grid(dropped)  # the k x k grid of block LoRAs
        if self.hybrid_r:
            result = result + self.scaling * self.gralora_B_general(self.gralora_A_general(dropped))
        return result


@dataclass
class GraLoraConfig(MethodConfig):
    r: int = option(32, "rank of the block LoRAs together (a multiple of gralora_k); the count is LoRA's at rank r",
                    low=1, high=4096)
    gralora_k: int = option(2, "blocks per side: each Linear gets a k x k grid of small LoRAs", low=1, high=1024)
    hybrid_r: int = option(0, "rank of a plain LoRA added beside the grid (hybrid GraLoRA)", low=0, high=4096)
    alpha: float = option(64.0, "scale numerator: the update is multiplied by alpha / (r + hybrid_r)", low=1e-6,
                          high=1e6)
    dropout: float = option(0.0, "dropout on the input during training (PEFT's gralora_dropout)", low=0.0,
                            high=0.99)
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")


class GraLoraMethod(TargetedMethod):
    name = "gralora"
    family_group = REPARAMETERISED
    title = "GraLoRA"
    config_cls = GraLoraConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless GraLoRA is already chosen
    targets_default_from = "lora"
    example_space = {**Method.example_space, "r": (4, 8), "gralora_k": (1, 2, 4), "hybrid_r": (0, 2),
                     "alpha": (8.0, 64.0)}
    peft_space = {"r": (8, 16), "gralora_k": (2, 4), "hybrid_r": (0, 4), "alpha": (16, 64)}
    peft_type = "GRALORA"
    # its layers equal PEFT's to 1e-6 (test_merge_peft); through the whole encoder, which differs from BertModel by
    # ~3e-6 before any adapter, a grid update of scale up to 16 was seen to reach 2.5e-5
    exchange_tolerance = 5e-5
    peft_config_fields = {"gralora_k": ((int,), "a whole number"), "hybrid_r": ((int,), "a whole number"),
                          "alpha": ((int, float), "a number"), "gralora_dropout": ((int, float), "a number"),
                          "init_weights": ((bool,), "true or false")}
    glyph = "▦"
    colour = "#af601a"
    card = MethodCard(
        where="beside a frozen Linear: a k x k grid of small LoRAs, one per input block and output block",
        intuition="one LoRA must serve every output from one shared bottleneck; k x k small ones let each output "
                  "block read each input block through its own channel",
        advantages="LoRA's parameter count with k times the expressivity; mergeable into W0",
        limitations="r must be a multiple of k and the widths multiples of k; block reshapes cost a little time",
        formula="h = W0 x + (alpha / (r + hybrid_r)) [B_j A_n] x  (a k x k grid of rank-r/k blocks)",
    )

    def validate(self, config: GraLoraConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        k = config.gralora_k
        if config.r % k:
            raise ConfigError(f"r ({config.r}) must be divisible by gralora_k ({k}), as PEFT requires")
        for site in self.selected_sites(config, base):
            for what, width in (("in_features", site.in_features), ("out_features", site.out_features)):
                if width % k:
                    raise ConfigError(f"gralora_k ({k}) must divide every adapted width, but {site.id} has {what} "
                                      f"{width} (PEFT refuses it too)")

    def attach(self, model: StudioModel, config: GraLoraConfig) -> None:
        for site in self.selected_sites(config, model.base):
            original = model.base.get_submodule(site.module_path)
            model.swap(site.module_path, GraLoraLinear(original, config.r, config.gralora_k, config.hybrid_r,
                                                       config.alpha, config.dropout))

    def parameter_count(self, config: GraLoraConfig, base: FrozenBase) -> int:
        return sum((config.r + config.hybrid_r) * (s.in_features + s.out_features)
                   for s in self.selected_sites(config, base))

    def formula_text(self, config: GraLoraConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        return (f"sum over {len(sites)} Linear(s) of (r + hybrid_r) x (in + out) = "
                f"{self.parameter_count(config, base):,}")

    def live_formula(self, config: GraLoraConfig) -> str:
        return self.card.formula.replace("(alpha / (r + hybrid_r))",
                                         f"({config.alpha:g}/{config.r + config.hybrid_r})").replace(
            "k x k", f"{config.gralora_k} x {config.gralora_k}")

    def code(self, config: GraLoraConfig) -> str:
        return f"{code_line(GraLoraLinear.grid, 'permute')}  # then: {code_line(GraLoraLinear.update, 'grid of')}"

    def shape_notes(self, config: GraLoraConfig, base: FrozenBase, seq_len: int) -> list[str]:
        k = config.gralora_k
        return [f"{s.id}: A {k}x{s.in_features // k}x{config.r}, B {k}x{config.r}x{s.out_features // k}"
                + (f", hybrid LoRA of rank {config.hybrid_r}" if config.hybrid_r else "")
                for s in self.selected_sites(config, base)]

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: GraLoraConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        targets, tensors = export_own_parameters(base, GraLoraLinear)
        layers = modules_of(base, GraLoraLinear)
        settings = {"r": config.r, "gralora_k": config.gralora_k, "hybrid_r": config.hybrid_r, "alpha": config.alpha,
                    "gralora_dropout": config.dropout, "target_modules": targets, "bias": "none",
                    "fan_in_fan_out": any(layer.fan_in_fan_out for _, layer in layers), "init_weights": True,
                    "layers_to_transform": None, "layers_pattern": None}
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        if peft_config.get("bias", "none") != "none":
            raise AdapterFileError(f"{where}: bias {peft_config.get('bias')!r} trains base biases too; only 'none'")
        # PEFT sets fan_in_fan_out from the layer type itself (True on a Conv1D, False on a Linear): a
        # well-typed flag changes nothing the base does not already decide
        flag(peft_config, "fan_in_fan_out", where, False)
        options = {"r": whole(peft_config, "r", where, 32, high=4096),
                   "gralora_k": whole(peft_config, "gralora_k", where, 2, high=1024),
                   "hybrid_r": whole(peft_config, "hybrid_r", where, 0, low=0, high=4096),
                   "alpha": number(peft_config, "alpha", where, 64.0, 1e-6, 1e6),
                   "dropout": number(peft_config, "gralora_dropout", where, 0.0, 0.0, 1.0, high_open=True)}
        r, k, hybrid = options["r"], options["gralora_k"], options["hybrid_r"]
        studio: dict[str, torch.Tensor] = {}
        for module, parts in split_module_keys(tensors, LEAVES, where, "a GraLoRA").items():
            expected = {"gralora_A", "gralora_B"} | ({"gralora_A_general.weight", "gralora_B_general.weight"}
                                                     if hybrid else set())
            if set(parts) != expected:
                raise unknown(where, module, f"has {', '.join(sorted(parts))}; with hybrid_r = {hybrid} a GraLoRA "
                                             f"module has {', '.join(sorted(expected))}")
            a, b = parts["gralora_A"], parts["gralora_B"]
            if a.dim() != 3 or b.dim() != 3 or a.shape[0] != k or b.shape[0] != k or a.shape[2] != r \
                    or b.shape[1] != r:
                raise unknown(where, module, f"gralora_A {tuple(a.shape)} / gralora_B {tuple(b.shape)} do not fit "
                                             f"gralora_k = {k}, r = {r}")
            studio.update({f"{module}.{leaf}": tensor for leaf, tensor in parts.items()})
        return options, studio

    def peft_check_model(self, base: FrozenBase, options: dict[str, Any], where: str) -> None:
        for path, layer in modules_of(base, GraLoraLinear):
            expected = options["alpha"] / (options["r"] + options["hybrid_r"])
            if not math.isclose(layer.scaling, expected, rel_tol=1e-6):
                raise AdapterFileError(f"{where}: the adapter's scale is {expected:g}; the model's {path} uses "
                                       f"{layer.scaling:g}")
