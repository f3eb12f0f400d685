"""Resolve --targets names (short names or Hugging Face module names) to a base's sites."""

from __future__ import annotations

from ..bases.frozen import FrozenBase
from ..bases.sites import Site
from ..errors import ConfigError
from .config import parse_layers, parse_list

# Hugging Face BERT module name of each Linear site, so a PEFT user's target_modules list works.
# Matching follows PEFT: a target matches a name equal to it or ending with "." + target.
HF_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "o": "attention.output.dense",
    "up": "intermediate.dense",
    "down": "output.dense",
}


def _matches(target: str, site: Site) -> bool:
    if target == site.name or target == site.id:
        return True
    hf_name = HF_NAMES.get(site.name)
    return hf_name is not None and (hf_name == target or hf_name.endswith("." + target))


def resolve_targets(base: FrozenBase, method: str, kinds: tuple[str, ...], targets: str | list | None,
                    layers: str | list | None, default: list[str]) -> list[Site]:
    """Sites of the given kinds named by `targets` in the chosen layers, in base order."""
    names = parse_list("targets", targets) or default
    layer_set = set(parse_layers(layers, base.num_layers)) if base.num_layers else None
    candidates = [s for s in base.sites() if s.kind in kinds]
    allowed = sorted({s.name for s in candidates if s.available_for(method)})
    chosen: list[Site] = []
    for target in names:
        matched = [s for s in candidates if _matches(target, s)]
        if not matched:
            raise ConfigError(f"targets: unknown site {target!r} for {method} on {base.name} "
                              f"(allowed: {', '.join(allowed)})")
        for site in matched:
            if not site.available_for(method):
                raise ConfigError(f"targets: {target!r} cannot take {method}: {site.unavailable[method]}")
            in_layers = layer_set is None or site.layer is None or site.layer in layer_set
            if in_layers and site not in chosen:
                chosen.append(site)
    order = {s.id: i for i, s in enumerate(base.sites())}
    return sorted(chosen, key=lambda s: order[s.id])


def default_targets(base: FrozenBase, preferred: list[str]) -> list[str]:
    """The preferred names this base has, else its first Linear (e.g. the seed's `proj`)."""
    names = base.linear_names()
    chosen = [n for n in preferred if n in names]
    return chosen or names[:1]
