"""Prompt tuning: n trainable soft-prompt vectors in front of the token embeddings (Lester et al., 2021)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..bases.frozen import FrozenBase
from ..bases.sites import PROMPT, Site
from ..model import StudioModel
from .config import MethodConfig, option
from .method import Method, MethodCard, ShapeChange, code_line, require_kind


class SoftPrompt(nn.Module):
    """Concatenates n learned vectors before the sequence and marks them as real tokens."""

    def __init__(self, tokens: int, width: int) -> None:
        super().__init__()
        self.prompt = nn.Parameter(torch.randn(tokens, width))  # N(0, 1), as PEFT's random init

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = embeds.shape[0]
        prompt = self.prompt.unsqueeze(0).expand(batch, -1, -1)
        prompt_mask = torch.ones(batch, self.prompt.shape[0], dtype=mask.dtype, device=mask.device)
        return torch.cat([prompt, embeds], dim=1), torch.cat([prompt_mask, mask], dim=1)


@dataclass
class PromptTuningConfig(MethodConfig):
    tokens: int = option(8, "number of soft-prompt vectors n (sequence length L -> L+n)", low=1, high=64)


class PromptTuningMethod(Method):
    name = "prompt-tuning"
    title = "Prompt Tuning"
    config_cls = PromptTuningConfig
    site_kinds = (PROMPT,)
    claims_kinds = (PROMPT,)
    glyph = "P"
    colour = "#d14d8b"
    card = MethodCard(
        where="before the input embedding: n soft-prompt vectors",
        intuition="feed the model a soft prompt: learned vectors, not readable words",
        advantages="extremely few parameters; one tiny vector set per task",
        limitations="limited transformation power: it only touches the input side",
        formula="x' = [P ; E(tokens)],  L -> L + n",
    )

    def selected_sites(self, config: PromptTuningConfig, base: FrozenBase) -> list[Site]:
        return require_kind(base, self.name, PROMPT)[:1]

    def live_formula(self, config: PromptTuningConfig) -> str:
        return self.card.formula.replace("+ n", f"+ {config.tokens}")

    def code(self, config: PromptTuningConfig) -> str:
        return code_line(SoftPrompt.forward, "torch.cat([prompt, embeds]")

    def shape_change(self, config: PromptTuningConfig) -> ShapeChange:
        return ShapeChange(input_tokens=config.tokens)

    def attach(self, model: StudioModel, config: PromptTuningConfig) -> None:
        site = self.selected_sites(config, model.base)[0]
        model.swap(site.module_path, SoftPrompt(config.tokens, site.in_features))

    def parameter_count(self, config: PromptTuningConfig, base: FrozenBase) -> int:
        return config.tokens * self.selected_sites(config, base)[0].in_features

    def formula_text(self, config: PromptTuningConfig, base: FrozenBase) -> str:
        return f"n x d = {config.tokens} x {base.hidden_size} = {self.parameter_count(config, base):,}"

    def shape_notes(self, config: PromptTuningConfig, base: FrozenBase, seq_len: int) -> list[str]:
        return [f"sequence length {seq_len} -> {seq_len + config.tokens}",
                f"soft prompt {config.tokens}x{base.hidden_size} concatenated before the token embeddings"]
