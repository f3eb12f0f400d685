"""Site selection by name: `targets` x `layers` to sites, and back (the click model's inverse).

A target is a site's short name (`q`), its id (`layers.0.attn.q`), or a Hugging Face module name
from the base's one name table (`query`, `attention.self.query`). As in PEFT, a name matches a
module equal to it or ending with "." + name.
"""

from __future__ import annotations

from typing import Any

from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR_INPUT, Site
from ..errors import ConfigError
from .config import parse_layers, parse_list


def _matches(target: str, site: Site, base: FrozenBase) -> bool:
    if target in (site.name, site.id):
        return True
    if site.kind == LINEAR_INPUT:  # a module name means the module (its output); its input is asked for by site
        return False
    hf_name = base.hf_module(site.module_path)
    return hf_name is not None and (hf_name == target or hf_name.endswith("." + target))


def resolve_targets(base: FrozenBase, method: str, kinds: tuple[str, ...], targets: str | list | None,
                    layers: str | list | None) -> list[Site]:
    """Sites of the given kinds named by `targets` (default: the base's own default for this method)
    in the chosen layers (given layers, only sites inside them, as PEFT's layers_to_transform), in base order.
    A selection that matches no site is refused, as PEFT refuses
    target modules that match nothing."""
    names = expand_presets(base, parse_list("targets", targets) or default_targets(base, method))
    layer_set = set(parse_layers(layers, base.num_layers)) if base.num_layers and layers is not None else None
    candidates = [s for s in base.sites() if s.kind in kinds]
    allowed = sorted({s.name for s in candidates if s.available_for(method)})
    chosen: list[Site] = []
    by_id = {s.id: s for s in candidates}
    for target in names:  # a site id means that one site (the pooler's id is also its Hugging Face name)
        matched = [by_id[target]] if target in by_id else [s for s in candidates if _matches(target, s, base)]
        if not matched:
            raise ConfigError(f"targets: unknown site {target!r} for {method} on {base.name} "
                              f"(allowed: {', '.join(allowed)})")
        for site in matched:
            if not site.available_for(method):
                raise ConfigError(f"targets: {target!r} cannot take {method}: {site.unavailable[method]}")
            # as PEFT's layers_to_transform: given layers, a site outside the layer stack (an embedding, a pooler,
            # a final norm) is not selected
            in_layers = layer_set is None or site.layer in layer_set
            if in_layers and site not in chosen:
                chosen.append(site)
    if not chosen:
        raise ConfigError(f"targets {','.join(names)} in layers {layers} select no site: nothing would be adapted")
    order = {s.id: i for i, s in enumerate(base.sites())}
    return sorted(chosen, key=lambda s: order[s.id])


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
    linear = [s.name for s in base.sites() if s.kind == "linear"]
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
        return {"targets": ",".join(names), "layers": None if every_layer or not layers else ",".join(map(str, layers))}
    return {"targets": ",".join(s.id for s in sites), "layers": None}
