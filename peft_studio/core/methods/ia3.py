"""IA3: learned per-channel scales on keys, values and the feed-forward activation (Liu et al., 2022).

An IA3 site scales either the OUTPUT of a module (a Linear site, or an activation) or the INPUT of
a Linear (a linear-input site, named `q-in`, `down-in`, ...). Studio names say which. A PEFT module
list means what it means in PEFT: a Hugging Face name in `targets` scales the module's input when it
also matches `feedforward` (PEFT's feedforward_modules; by default the base's PEFT default, which is
`output.dense` for BERT: the input of attention.output.dense and of output.dense), else its output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..bases.frozen import FrozenBase
from ..bases.sites import ACTIVATION, LINEAR, LINEAR_INPUT, Site
from ..model import StudioModel
from .config import MethodConfig, option, parse_list
from .method import Method, MethodCard, code_line
from .targets import default_targets, resolve_targets, targets_for_sites


class ChannelScale(nn.Module):
    """Multiplies the last dimension by a learned vector that starts at ones (the identity): the output of
    `inner` (or x itself on an activation), or, with scale_input, the input of `inner` (PEFT's feed-forward IA3)."""

    def __init__(self, width: int, inner: nn.Module | None = None, scale_input: bool = False) -> None:
        super().__init__()
        self.inner = inner  # a Linear whose output (or input) is scaled, or None on an activation
        self.scale_input = scale_input
        self.ia3_scale = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale_input:
            return self.inner(x * self.ia3_scale)  # input scaling: PEFT's feedforward_modules
        return (x if self.inner is None else self.inner(x)) * self.ia3_scale


@dataclass
class IA3Config(MethodConfig):
    targets: str | None = option(None, "comma list: k, v, ffn-act, other Linear outputs (q, o, up, down) or inputs "
                                       "(q-in, o-in, down-in, ...); site ids and Hugging Face names work too "
                                       "(default: the base's)")
    layers: str | None = option(None, "comma list of layer indices (default: every layer)")
    feedforward: str | None = option(None, "PEFT's feedforward_modules: Hugging Face names in targets that match one "
                                           "of these scale the module's input, not its output (default: the base's "
                                           "PEFT default, output.dense on BERT)")


class IA3Method(Method):
    name = "ia3"
    title = "IA3"
    config_cls = IA3Config
    site_kinds = (ACTIVATION, LINEAR, LINEAR_INPUT)
    claims_kinds = (ACTIVATION, LINEAR_INPUT)
    glyph = "×"
    colour = "#d4a017"
    card = MethodCard(
        where="per-channel scaling vectors on keys, values and the feed-forward activation",
        intuition="add gain knobs to key channels: amplify some dimensions, suppress others",
        advantages="extremely few parameters; lightweight; can be folded into the weights",
        limitations="weaker expressiveness for complex changes: it can only rescale",
        formula="h' = l * h  (elementwise, l starts at 1)",
    )

    def feedforward(self, config: IA3Config, base: FrozenBase) -> list[str]:
        """PEFT's feedforward_modules in force: the config's, else the base's PEFT default."""
        value = config.feedforward if config.feedforward is not None else \
            base.method_defaults().get(self.name, {}).get("feedforward")
        if value is None or not str(value).strip():  # "" says: no feed-forward modules
            return []
        return parse_list("feedforward", value) or []

    def selected_sites(self, config: IA3Config, base: FrozenBase) -> list[Site]:
        names = parse_list("targets", config.targets) or default_targets(base, self.name)
        feedforward = self.feedforward(config, base)
        candidates = [s for s in base.sites() if s.kind in self.site_kinds]
        studio_names = {s.name for s in candidates} | {s.id for s in candidates}
        resolved: list[str] = []
        for target in names:
            if target in studio_names:  # a studio name says output or input itself
                resolved.append(target)
                continue
            # A PEFT module name: the module's input when it is a feed-forward module, else its output.
            ids = [s.id for s in candidates if s.kind in (LINEAR, LINEAR_INPUT) and _hf_matches(base, s, [target])
                   and (s.kind == LINEAR_INPUT) == _hf_matches(base, s, feedforward)]
            resolved.extend(ids or [target])  # an unknown name stays, so resolve_targets names it in its error
        return resolve_targets(base, self.name, self.site_kinds, resolved, config.layers)

    def effective_options(self, config: IA3Config, base: FrozenBase) -> dict[str, Any]:
        values = super().effective_options(config, base)
        values["feedforward"] = ",".join(self.feedforward(config, base))
        return values

    def options_for_sites(self, sites: list[Site], base: FrozenBase, current: dict[str, Any]) -> dict[str, Any]:
        return {**current, **targets_for_sites(sites, self.usable_sites(base), base.num_layers)}

    def attach(self, model: StudioModel, config: IA3Config) -> None:
        for site in self.selected_sites(config, model.base):
            inner = model.base.get_submodule(site.module_path) if site.kind != ACTIVATION else None
            model.swap(site.module_path, ChannelScale(site.out_features, inner, site.kind == LINEAR_INPUT))

    def parameter_count(self, config: IA3Config, base: FrozenBase) -> int:
        return sum(s.out_features for s in self.selected_sites(config, base))

    def formula_text(self, config: IA3Config, base: FrozenBase) -> str:
        widths = " + ".join(str(s.out_features) for s in self.selected_sites(config, base))
        return f"sum of scaled widths = {widths} = {self.parameter_count(config, base):,}"

    def code(self, config: IA3Config) -> str:
        return code_line(ChannelScale.forward, "(x if self.inner")

    def shape_notes(self, config: IA3Config, base: FrozenBase, seq_len: int) -> list[str]:
        return [f"{s.id}: scale vector ({s.out_features},) multiplies the {s.label} channel by channel"
                for s in self.selected_sites(config, base)]


def _hf_matches(base: FrozenBase, site: Site, names: list[str]) -> bool:
    """PEFT's list rule: the module's Hugging Face name equals an entry or ends with "." + it."""
    hf = base.hf_module(site.module_path)
    return hf is not None and any(hf == name or hf.endswith("." + name) for name in names)
