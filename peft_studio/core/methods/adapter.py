"""Bottleneck adapters: h + up(act(down(h))) between sublayers (Houlsby et al., 2019; Pfeiffer et al., 2020)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..bases.frozen import FrozenBase
from ..bases.sites import ADAPTER, Site
from ..errors import ConfigError
from ..model import PeftModel
from .config import MethodConfig, option, parse_layers
from .method import Method, MethodCard, require_kind

NONLINEARITIES = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "swish": nn.SiLU}
PLACEMENTS = {"after-attn": ("after-attn",), "after-ffn": ("after-ffn",), "both": ("after-attn", "after-ffn")}


class BottleneckAdapter(nn.Module):
    """The seed's adapter: down-project, nonlinearity, up-project, add back to the input."""

    def __init__(self, width: int, bottleneck: int, nonlinearity: str, init: str) -> None:
        super().__init__()
        self.adapter_down = nn.Linear(width, bottleneck)  # created first, as in the seed
        self.adapter_up = nn.Linear(bottleneck, width)
        self.act = NONLINEARITIES[nonlinearity]()
        if init == "identity":  # starts as the identity map, as AdapterHub initialises
            nn.init.zeros_(self.adapter_up.weight)
            nn.init.zeros_(self.adapter_up.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.adapter_up(self.act(self.adapter_down(hidden)))


@dataclass
class AdapterConfig(MethodConfig):
    bottleneck: int = option(16, "bottleneck width m: d -> m -> d", low=1, high=4096)
    placement: str = option("after-ffn", "after-attn, after-ffn (Pfeiffer) or both (Houlsby)",
                            choices=tuple(PLACEMENTS))
    layers: str | None = option(None, "comma list of layer indices (default: every layer)")
    nonlinearity: str = option("tanh", "the bottleneck's nonlinearity (the seed uses tanh)",
                               choices=tuple(NONLINEARITIES))
    init: str = option("default", "default: PyTorch Linear init, as the seed; identity: up-projection zeros",
                       choices=("default", "identity"))


class AdapterMethod(Method):
    name = "adapter"
    title = "Adapter"
    config_cls = AdapterConfig
    site_kinds = (ADAPTER,)
    card = MethodCard(
        where="a small bottleneck module between layers, on the residual path",
        intuition="plug a tiny expansion card into the motherboard: a trainable side path, added back",
        advantages="easy multi-task switching: one base, many small swappable adapters",
        limitations="adds a little extra computation at inference (it cannot be merged away)",
        formula="h' = h + W_up act(W_down h)",
        code="adapted = hidden + self.adapter_up(torch.tanh(self.adapter_down(hidden)))",
    )

    def selected_sites(self, config: AdapterConfig, base: FrozenBase) -> list[Site]:
        sites = require_kind(base, self.name, ADAPTER)
        if base.num_layers == 0:  # the seed base: one adapter after the pooled output
            return sites
        if config.placement not in PLACEMENTS:
            raise ConfigError(f"placement must be one of {', '.join(PLACEMENTS)} (got {config.placement!r})")
        layers = set(parse_layers(config.layers, base.num_layers))
        chosen = [s for s in sites if s.layer in layers and s.name in PLACEMENTS[config.placement]]
        if not chosen:
            raise ConfigError("layers: no adapter site selected")
        return chosen

    def attach(self, model: PeftModel, config: AdapterConfig) -> None:
        for site in self.selected_sites(config, model.base):
            model.swap(site.module_path, BottleneckAdapter(site.in_features, config.bottleneck,
                                                           config.nonlinearity, config.init))

    def parameter_count(self, config: AdapterConfig, base: FrozenBase) -> int:
        m = config.bottleneck
        return sum(2 * s.in_features * m + m + s.in_features for s in self.selected_sites(config, base))

    def formula_text(self, config: AdapterConfig, base: FrozenBase) -> str:
        sites, m, d = self.selected_sites(config, base), config.bottleneck, base.hidden_size
        return (f"adapters x (d m + m + m d + d) = {len(sites)} x ({d}x{m} + {m} + {m}x{d} + {d}) "
                f"= {self.parameter_count(config, base):,}")

    def shape_notes(self, config: AdapterConfig, base: FrozenBase, seq_len: int) -> list[str]:
        m = config.bottleneck
        return [f"{s.id}: {s.in_features} -> {m} -> {s.in_features}, added back to the residual"
                for s in self.selected_sites(config, base)]
