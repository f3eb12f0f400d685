"""DoRA: LoRA's B A learns the direction, a per-output magnitude vector the length (Liu et al., 2024).

Follows PEFT's `use_dora=True` for a Linear (peft/tuners/lora/dora.py): the row norms of W0 + s B A
are treated as a constant (no gradient), and the DoRA term is added on top of the frozen output:

    h = W0 x + b + (m / ||W0 + s B A||_row - 1) * W0 x + (m / ||W0 + s B A||_row) * s B A x

which is m / ||W0 + s B A|| * (W0 + s B A) x + b: the merged weight with each row rescaled to length m.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR
from ..errors import ConfigError
from .lora import (
    BIASES,
    LoraConfig,
    LoraLinear,
    LoraMethod,
    SiteRank,
    lora_check_model,
    lora_peft_export,
    lora_peft_translate,
)
from .method import REPARAMETERISED, Method, MethodCard, code_line


class DoraLinear(LoraLinear):
    """LoRA plus a trainable magnitude per output row, initialised to the row norms of W0 (B A starts at 0)."""

    def __init__(self, base_layer: nn.Module, r: int, alpha: float, dropout: float, use_rslora: bool = False,
                 init: str = "true") -> None:
        weight = getattr(base_layer, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            raise ConfigError("DoRA needs a Linear with a readable weight (a 4-bit Linear has none to take norms of)")
        super().__init__(base_layer, r, alpha, dropout, use_rslora, init)
        with torch.no_grad():
            self.lora_magnitude_vector = nn.Parameter(self.weight_norm())

    def weight_norm(self) -> torch.Tensor:
        """||W0 + s B A|| per output row, detached: DoRA section 4.3, as PEFT (computed without a graph, so autograd
        keeps nothing of the [out, in] matrix)."""
        with torch.no_grad():
            weight = self.weight_out_in() + self.scaling * (self.lora_B @ self.lora_A)
            return torch.linalg.norm(weight, dim=1)

    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        scale = (self.lora_magnitude_vector / self.weight_norm()).view(1, -1)
        if isinstance(self.lora_dropout, nn.Identity) or not self.training:
            bias = self.base_layer.bias
            base_result = result if bias is None else result - bias
        else:  # with dropout, PEFT recomputes W0 x on the dropped-out input
            x = self.lora_dropout(x)
            base_result = F.linear(x, self.weight_out_in())
        lora_result = x @ self.lora_A.T @ self.lora_B.T
        return result + (scale - 1) * base_result + scale * lora_result * self.scaling  # DoRA term

    def merged_weight(self) -> torch.Tensor:
        """W = m / ||W0 + s B A|| * (W0 + s B A), row by row."""
        factor = (self.lora_magnitude_vector / self.weight_norm()).view(-1, 1)
        return factor * (self.weight_out_in() + self.delta_weight())


@dataclass
class DoraConfig(LoraConfig):
    pass


class DoraMethod(LoraMethod):
    name = "dora"
    family_group = REPARAMETERISED
    title = "DoRA"
    config_cls = DoraConfig
    site_kinds = (LINEAR,)  # PEFT's DoRA on an Embedding is not reproduced
    claims_kinds = ()  # a click on a Linear means LoRA unless DoRA is already chosen
    residual_inits = ()  # PiSSA / OLoRA with DoRA: not reproduced (refused by name)
    targets_default_from = "lora"  # with no targets of its own, the base's LoRA targets (as PEFT)
    example_space = {**Method.example_space, "r": (1, 4), "alpha": (8.0, 16.0), "bias": BIASES,
                     "use_rslora": (False, True), "rank_pattern": (None, '{"v_proj|v|value": 2}')}
    peft_space = {"r": (2, 4), "lora_alpha": (8,), "use_dora": (True,), "bias": BIASES, "use_rslora": (False, True)}
    peft_type = "LORA"  # with use_dora=True
    glyph = "D"
    colour = "#6c3483"
    card = MethodCard(
        where="beside a frozen Linear: LoRA's B A plus one magnitude per output row",
        intuition="split each weight row into a length and a direction: B A turns the direction, m sets the length",
        advantages="closer to full fine-tuning than LoRA at the same rank; still mergeable into W0",
        limitations="d_out more parameters per Linear and a row-norm per step: slower than plain LoRA",
        formula="h = m / ||W0 + (alpha / r) B A|| * (W0 + (alpha / r) B A) x",
    )

    def make_layer(self, original: nn.Module, entry: SiteRank, config: DoraConfig) -> nn.Module:
        return DoraLinear(original, entry.r, entry.alpha, config.dropout, config.use_rslora, config.init_lora_weights)

    def parameter_count(self, config: DoraConfig, base: FrozenBase) -> int:
        return super().parameter_count(config, base) + sum(s.out_features for s in self.selected_sites(config, base))

    def formula_text(self, config: DoraConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        return (f"LoRA's {super().parameter_count(config, base):,} + one magnitude per output row of {len(sites)} "
                f"Linear(s) = {self.parameter_count(config, base):,}")

    def live_formula(self, config: DoraConfig) -> str:
        return self.card.formula.replace("(alpha / r)", f"({config.alpha:g}/{config.r})")

    def code(self, config: DoraConfig) -> str:
        return code_line(DoraLinear.update, "DoRA term")

    def shape_notes(self, config: DoraConfig, base: FrozenBase, seq_len: int) -> list[str]:
        return [f"{note}, magnitude m ({e.site.out_features},)"
                for note, e in zip(super().shape_notes(config, base, seq_len), self.site_ranks(config, base),
                                   strict=True)]

    # ---- Hugging Face PEFT exchange: LoRA's format with use_dora and the magnitude vectors -------------
    def peft_export(self, base: FrozenBase, config: DoraConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        return lora_peft_export(base, config, self, DoraLinear, extra=(MAGNITUDE,))

    def peft_claims(self, peft_config: dict[str, Any]) -> bool:
        return bool(peft_config.get("use_dora"))

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        return lora_peft_translate(peft_config, tensors, where, extra=(MAGNITUDE,))

    def peft_check_model(self, base: FrozenBase, options: dict[str, Any], where: str) -> None:
        lora_check_model(base, DoraLinear, options, where, self)


MAGNITUDE = "lora_magnitude_vector"  # PEFT's key leaf and the studio's parameter name
