"""IA3: learned per-channel scales on keys, values and the feed-forward activation (Liu et al., 2022)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..bases.frozen import FrozenBase
from ..bases.sites import ACTIVATION, LINEAR, Site
from ..model import StudioModel
from .config import MethodConfig, option
from .method import Method, MethodCard, code_line
from .targets import resolve_targets, targets_for_sites


class ChannelScale(nn.Module):
    """Multiplies the last dimension by a learned vector that starts at ones (the identity)."""

    def __init__(self, width: int, inner: nn.Module | None = None) -> None:
        super().__init__()
        self.inner = inner  # a Linear whose output is scaled, or None on an activation
        self.ia3_scale = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x if self.inner is None else self.inner(x)) * self.ia3_scale


@dataclass
class IA3Config(MethodConfig):
    targets: str | None = option(None, "comma list: k, v, ffn-act, or other Linear outputs; site ids such as "
                                       "layers.0.attn.k work too (default: the base's)")
    layers: str | None = option(None, "comma list of layer indices (default: every layer)")


class IA3Method(Method):
    name = "ia3"
    title = "IA3"
    config_cls = IA3Config
    site_kinds = (ACTIVATION, LINEAR)
    claims_kinds = (ACTIVATION,)
    glyph = "×"
    colour = "#d4a017"
    card = MethodCard(
        where="per-channel scaling vectors on keys, values and the feed-forward activation",
        intuition="add gain knobs to key channels: amplify some dimensions, suppress others",
        advantages="extremely few parameters; lightweight; can be folded into the weights",
        limitations="weaker expressiveness for complex changes: it can only rescale",
        formula="h' = l * h  (elementwise, l starts at 1)",
    )

    def selected_sites(self, config: IA3Config, base: FrozenBase) -> list[Site]:
        return resolve_targets(base, self.name, self.site_kinds, config.targets, config.layers)

    def options_for_sites(self, sites: list[Site], base: FrozenBase, current: dict[str, Any]) -> dict[str, Any]:
        return {**current, **targets_for_sites(sites, self.usable_sites(base), base.num_layers)}

    def attach(self, model: StudioModel, config: IA3Config) -> None:
        for site in self.selected_sites(config, model.base):
            inner = model.base.get_submodule(site.module_path) if site.kind == LINEAR else None
            model.swap(site.module_path, ChannelScale(site.out_features, inner))

    def parameter_count(self, config: IA3Config, base: FrozenBase) -> int:
        return sum(s.out_features for s in self.selected_sites(config, base))

    def formula_text(self, config: IA3Config, base: FrozenBase) -> str:
        widths = " + ".join(str(s.out_features) for s in self.selected_sites(config, base))
        return f"sum of scaled widths = {widths} = {self.parameter_count(config, base):,}"

    def code(self, config: IA3Config) -> str:
        return code_line(ChannelScale.forward, "ia3_scale")

    def shape_notes(self, config: IA3Config, base: FrozenBase, seq_len: int) -> list[str]:
        return [f"{s.id}: scale vector ({s.out_features},) multiplies the {s.label} channel by channel"
                for s in self.selected_sites(config, base)]
