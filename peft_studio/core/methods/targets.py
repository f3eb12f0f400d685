"""Site selection by name: `targets` x `layers` to sites, and back (the click model's inverse).

A target is a site's short name (`q`), its id (`layers.0.attn.q`), or a Hugging Face module name
from the base's one name table (`query`, `attention.self.query`). As in PEFT, a name matches a
module equal to it or ending with "." + name.
"""

from __future__ import annotations

from typing import Any

from ..bases.frozen import FrozenBase
from ..bases.sites import Site
from ..errors import ConfigError
from .config import layer_ranges, parse_layers, parse_list


def resolve_targets(base: FrozenBase, method: str, kinds: tuple[str, ...], targets: str | list | None,
                    layers: str | list | None) -> list[Site]:
    """Sites of the given kinds named by `targets` (default: the base's own default for this method)
    in the chosen layers (given layers, only sites inside them, as PEFT's layers_to_transform), in base order.
    A selection that matches no site is refused, as PEFT refuses
    target modules that match nothing."""
    names = expand_presets(base, parse_list("targets", targets) or default_targets(base, method))
    layer_set = set(parse_layers(layers, base.num_layers)) if base.num_layers and layers is not None else None
    index = base.site_index()
    chosen: dict[str, Site] = {}
    for target in names:
        matched = [s for s in index.named(target) if s.kind in kinds]
        if not matched:
            allowed = sorted({s.name for s in index.sites if s.kind in kinds and s.available_for(method)})
            raise ConfigError(f"targets: unknown site {target!r} for {method} on {base.name} "
                              f"(allowed: {', '.join(allowed)})")
        for site in matched:
            if not site.available_for(method):
                raise ConfigError(f"targets: {target!r} cannot take {method}: {site.unavailable[method]}")
            # as PEFT's layers_to_transform: given layers, a site outside the layer stack (an embedding, a pooler,
            # a final norm) is not selected
            if layer_set is None or site.layer in layer_set:
                chosen.setdefault(site.id, site)
    if not chosen:
        raise ConfigError(f"targets {','.join(names)} in layers {layers} select no site: nothing would be adapted")
    return sorted(chosen.values(), key=lambda s: index.order[s.id])


def expand_presets(base: FrozenBase, names: list[str]) -> list[str]:
    """Replace the base's preset names ("attention", "MLP", "all-linear", any case) by their targets."""
    presets = {key.lower(): value for key, value in base.target_presets().items()}
    expanded = [target for name in names for target in presets.get(name.lower(), (name,))]
    return list(dict.fromkeys(expanded))


def default_targets(base: FrozenBase, method: str) -> list[str]:
    """The base's declared default targets for this method, else its first Linear (the seed's `proj`)."""
    declared = parse_list("targets", base.method_defaults().get(method, {}).get("targets"))
    if declared:
        return declared
    linear = [s.name for s in base.site_index().sites if s.kind == "linear"]
    return linear[:1]


def targets_for_sites(sites: list[Site], candidates: list[Site], num_layers: int) -> dict[str, Any]:
    """`targets` and `layers` options that select exactly `sites` among `candidates`.

    Short names x layers when the set is such a product (readable: `q,v` in layers `0,1`), else the
    site ids themselves, so any set of clicks is expressible and nothing extra is selected."""
    if not sites:
        raise ConfigError("no site selected")
    names = list(dict.fromkeys(s.name for s in sites))
    layers = sorted({s.layer for s in sites if s.layer is not None})
    every_layer = layers == list(range(num_layers))
    product = {c.id for c in candidates if c.name in names and (every_layer or not layers or c.layer in layers)}
    if product == {s.id for s in sites}:
        return {"targets": ",".join(names), "layers": None if every_layer or not layers else layer_ranges(layers)}
    return {"targets": ",".join(s.id for s in sites), "layers": None}
