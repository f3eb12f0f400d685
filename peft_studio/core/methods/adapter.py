"""Bottleneck adapters: h + up(act(down(h))) between sublayers (Houlsby et al., 2019; Pfeiffer et al., 2020)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..bases.frozen import FrozenBase
from ..bases.sites import ADAPTER, Site
from ..errors import ConfigError
from ..model.studio_model import StudioModel
from .config import MethodConfig, layer_ranges, option, parse_layers
from .method import INSIDE_LAYERS, Method, MethodCard, code_line, require_kind, site_paths
from .targets import resolve_targets, targets_for_sites

STYLES = ("houlsby", "pfeiffer")
NONLINEARITIES = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "swish": nn.SiLU}


class BottleneckAdapter(nn.Module):
    """The seed's adapter: down-project, nonlinearity, up-project, add back to the input.

    Houlsby style (the default): it reads the sublayer's output h, and the layer computes
    LN(x + h + up(act(down(h)))). Pfeiffer style (AdapterHub's seq_bn): it reads LN(h + x), the layer's
    own LayerNorm of output plus residual, and the layer computes LN(x + h + up(act(down(LN(h + x)))))."""

    def __init__(self, width: int, bottleneck: int, nonlinearity: str, init: str, style: str = "houlsby") -> None:
        super().__init__()
        self.style = style
        self.adapter_down = nn.Linear(width, bottleneck)  # created first, as in the seed
        self.adapter_up = nn.Linear(bottleneck, width)
        self.act = NONLINEARITIES[nonlinearity]()
        if init == "identity":  # starts as the identity map, as AdapterHub initialises
            nn.init.zeros_(self.adapter_up.weight)
            nn.init.zeros_(self.adapter_up.bias)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor | None = None,
                norm: nn.Module | None = None) -> torch.Tensor:
        if self.style == "pfeiffer":  # validate() allows it only where the layer hands over both
            return hidden + self.adapter_up(self.act(self.adapter_down(norm(hidden + residual))))
        return hidden + self.adapter_up(self.act(self.adapter_down(hidden)))


@dataclass
class AdapterConfig(MethodConfig):
    bottleneck: int = option(16, "bottleneck width m: d -> m -> d", low=1, high=4096)
    placement: str | None = option(None, "where between sublayers: after-attn, after-ffn (Pfeiffer) or both "
                                         "(Houlsby) on a transformer; after-pool on the seed's base "
                                         "(default: the base's)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")
    targets: str | None = option(None, "comma list of adapter site ids, e.g. layers.0.attn_adapter "
                                       "(overrides placement and layers: any set of clicked points)")
    nonlinearity: str = option("tanh", "the bottleneck's nonlinearity (the seed uses tanh)",
                               choices=tuple(NONLINEARITIES))
    init: str = option("default", "default: PyTorch Linear init, as the seed; identity: up-projection zeros",
                       choices=("default", "identity"))
    style: str = option("houlsby", "houlsby: the adapter reads the sublayer's output (Houlsby et al.; AdapterHub "
                                   "double_seq_bn); pfeiffer: it reads the LayerNorm of output + residual, as "
                                   "AdapterHub's seq_bn (post-LN transformers only)", choices=STYLES)


class AdapterMethod(Method):
    name = "adapter"
    family_group = INSIDE_LAYERS
    peft_nearest = ("lora", "PEFT has no bottleneck adapter; LoRA's B A is a low-rank bottleneck too, beside a Linear "
                            "and without the nonlinearity")
    title = "Adapter"
    config_cls = AdapterConfig
    site_kinds = (ADAPTER,)
    claims_kinds = (ADAPTER,)
    example_space = {**Method.example_space, "bottleneck": (1, 4, 20), "placement": ("after-attn", "after-ffn", "both"),
                     "nonlinearity": ("tanh", "relu"), "init": ("default", "identity")}
    glyph = "A"
    colour = "#2a9d8f"
    card = MethodCard(
        where="a small bottleneck module between layers, on the residual path",
        intuition="plug a tiny expansion card into the motherboard: a trainable side path, added back",
        advantages="easy multi-task switching: one base, many small swappable adapters",
        limitations="adds a little extra computation at inference (it cannot be merged away)",
        formula="h' = h + W_up act(W_down h)",
    )

    def placements(self, base: FrozenBase) -> dict[str, tuple[str, ...]]:
        """Placement name -> adapter site names, from the base's own adapter sites ('both' when two)."""
        names = list(dict.fromkeys(s.name for s in self.usable_sites(base)))
        table = {name: (name,) for name in names}
        if len(names) == 2:
            table["both"] = tuple(names)
        return table

    def field_choices(self, field_name: str, base: FrozenBase) -> tuple[str, ...] | None:
        if field_name == "placement":
            return tuple(self.placements(base))
        return super().field_choices(field_name, base)

    def effective_options(self, config: AdapterConfig, base: FrozenBase) -> dict[str, Any]:
        values = config.to_dict()
        values["placement"] = self._placement(config, base)
        if config.targets is None:  # placement x layers: say which layers; targets stay empty
            values["layers"] = layer_ranges({s.layer for s in self.selected_sites(config, base) if s.layer is not None})
        return values

    def _placement(self, config: AdapterConfig, base: FrozenBase) -> str:
        table = self.placements(base)
        placement = config.placement or base.method_defaults().get(self.name, {}).get("placement") or next(iter(table))
        if placement not in table:
            raise ConfigError(f"placement must be one of {', '.join(table)} on base {base.name} (got {placement!r})")
        return placement

    def selected_sites(self, config: AdapterConfig, base: FrozenBase) -> list[Site]:
        sites = require_kind(base, self.name, ADAPTER)
        if config.targets is not None:
            return resolve_targets(base, self.name, self.site_kinds, config.targets, config.layers)
        names = self.placements(base)[self._placement(config, base)]
        layers = set(parse_layers(config.layers, base.num_layers)) if base.num_layers else None
        chosen = [s for s in sites if s.name in names and (layers is None or s.layer in layers)]
        if not chosen:
            raise ConfigError("layers: no adapter site selected")
        return chosen

    def options_for_sites(self, sites: list[Site], base: FrozenBase, current: dict[str, Any]) -> dict[str, Any]:
        selection = targets_for_sites(sites, self.usable_sites(base), base.num_layers)
        names = tuple(selection["targets"].split(","))
        placement = next((p for p, members in self.placements(base).items() if set(members) == set(names)), None)
        if placement is None:  # not a placement x layers product: name the sites themselves
            return {**current, "placement": None, **selection}
        return {**current, "placement": placement, "layers": selection["layers"], "targets": None}

    def attach(self, model: StudioModel, config: AdapterConfig) -> None:
        for site in self.selected_sites(config, model.base):
            model.swap(site.module_path, BottleneckAdapter(site.in_features, config.bottleneck,
                                                           config.nonlinearity, config.init, config.style))

    def parameter_count(self, config: AdapterConfig, base: FrozenBase) -> int:
        m = config.bottleneck
        return sum(2 * s.in_features * m + m + s.in_features for s in self.selected_sites(config, base))

    def formula_text(self, config: AdapterConfig, base: FrozenBase) -> str:
        sites, m, d = self.selected_sites(config, base), config.bottleneck, base.hidden_size
        return (f"adapters x (d m + m + m d + d) = {len(sites)} x ({d}x{m} + {m} + {m}x{d} + {d}) "
                f"= {self.parameter_count(config, base):,}")

    def validate(self, config: AdapterConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        if config.style == "pfeiffer" and (base.norm_placement != "post" or not base.num_layers):
            raise ConfigError(f"style 'pfeiffer' reads the LayerNorm of a post-LN layer's output + residual; base "
                              f"{base.name} has none (use houlsby)")

    def live_formula(self, config: AdapterConfig) -> str:
        read = "LN(h + x)" if config.style == "pfeiffer" else "h"
        return f"h' = h + W_up {config.nonlinearity}(W_down {read}),  d -> m = {config.bottleneck} -> d"

    def lens(self, experiment: Any, sentence: str) -> list[Any]:
        """Each adapter's bottleneck on the sentence, and its branch against the main path."""
        from ..lenses.activations import bottleneck_figures

        ids, mask = experiment.tokenizer.batch([sentence])
        return bottleneck_figures(experiment.base, lambda: experiment.model(ids, mask),
                                  lambda m: isinstance(m, BottleneckAdapter), site_paths(experiment.base))

    def code(self, config: AdapterConfig) -> str:
        act = NONLINEARITIES[config.nonlinearity].__name__
        line = "norm(hidden + residual)" if config.style == "pfeiffer" else "self.adapter_down(hidden)))"
        return f"{code_line(BottleneckAdapter.forward, line)}  # self.act = nn.{act}()"

    def shape_notes(self, config: AdapterConfig, base: FrozenBase, seq_len: int) -> list[str]:
        m = config.bottleneck
        return [f"{s.id}: {s.in_features} -> {m} -> {s.in_features}, added back to the residual"
                for s in self.selected_sites(config, base)]
