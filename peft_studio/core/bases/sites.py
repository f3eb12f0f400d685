"""What a base declares about itself: the sites methods may use and the blocks a diagram draws."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# Site kinds, in data-flow order. Each kind is where one family of methods puts its part.
PROMPT = "prompt"  # before the input embeddings (prompt tuning)
KV_PREFIX = "kv-prefix"  # the keys/values of one attention (prefix tuning)
ADAPTER = "adapter"  # between sublayers, on the residual stream (bottleneck adapters)
ACTIVATION = "activation"  # a hidden activation that can be scaled (IA3)
LINEAR = "linear"  # a frozen Linear (LoRA, QLoRA, DoRA, VeRA, IA3 on its output)
LINEAR_INPUT = "linear-input"  # the input of a frozen Linear (IA3 on a feed-forward module, as PEFT)
NORM = "norm"  # a LayerNorm whose gamma and beta can train (LayerNorm tuning)
EMBEDDING = "embedding"  # a frozen embedding table (LoRA on an Embedding, as PEFT's lora.Embedding)
TOKEN_ROWS = "token-rows"  # chosen rows of the token embedding table train in place (trainable tokens)
GATED_PROMPT = "gated-prompt"  # a decoder attention's own gated prompt, added to its output (LLaMA-Adapter)
SITE_KINDS = (PROMPT, EMBEDDING, TOKEN_ROWS, KV_PREFIX, GATED_PROMPT, ADAPTER, ACTIVATION, LINEAR, LINEAR_INPUT,
              NORM)

# Linear layer types a method cannot take, as PEFT refuses them (its OFT takes nn.Linear, not GPT-2's Conv1D):
# layer type -> {method name: why}. The method registry fills it from each method's `refused_layers`, so a base
# marks such sites unavailable (with the reason) without knowing any method.
LAYER_REFUSALS: dict[str, dict[str, str]] = {}


def layer_refusals(layer_type: str) -> dict[str, str]:
    """Method name -> why it cannot sit on a Linear of this type (e.g. "Conv1D")."""
    return dict(LAYER_REFUSALS.get(layer_type, {}))



@dataclass(frozen=True)
class Site:
    """One place a method may attach a trainable part."""

    id: str  # unique, e.g. "layers.0.attn.q"
    kind: str  # one of SITE_KINDS
    name: str  # short target name used by --targets / --placement, e.g. "q", "after-attn"
    module_path: str  # the (slot or Linear) module inside the base
    layer: int | None  # transformer layer index, None outside the layer stack
    in_features: int  # width entering the site
    out_features: int  # width leaving the site (== in_features for slots)
    label: str  # a human label for tooltips, e.g. "query projection"
    unavailable: dict[str, str] = field(default_factory=dict)  # method name -> reason

    def available_for(self, method: str) -> bool:
        return method not in self.unavailable


@dataclass(frozen=True)
class Block:
    """A box of the model diagram: a module of the base, possibly holding sub-blocks."""

    id: str
    label: str
    kind: str  # input, embedding, attention, ffn, linear, norm, activation, pool, layer, output
    module_path: str | None = None
    layer: int | None = None
    children: tuple[Block, ...] = ()
    note: str = ""  # what it does, for tooltips
    residual: bool = False  # this block adds the residual stream back (x + sublayer(x)): the diagram draws the arc


def longest_prefix(path: str, candidates: Iterable[tuple[str, str | None]], strict: bool = False) -> str | None:
    """The key whose module path is the longest dotted prefix of `path` (itself, or an ancestor when
    `strict`): the one matcher that puts a tensor on its site, a census row on its box, a site in its box."""
    best, best_len = None, -1
    for key, prefix in candidates:
        if not prefix or (strict and prefix == path):
            continue
        if (path == prefix or path.startswith(prefix + ".")) and len(prefix) > best_len:
            best, best_len = key, len(prefix)
    return best


class PathIndex:
    """Keys by module path, for the longest-dotted-prefix lookup without scanning every candidate: a path's
    ancestors are looked up in a dict (a 70B base's 1,045 tensors x 1,042 sites was a million comparisons
    per edit). Among keys with the same path the first given wins, as in `longest_prefix`."""

    def __init__(self, candidates: Iterable[tuple[str, str | None]]) -> None:
        self.by_path: dict[str, list[str]] = {}
        for key, path in candidates:
            if path:
                self.by_path.setdefault(path, []).append(key)

    def keys_at(self, path: str, strict: bool = False) -> list[str]:
        """The keys of the longest indexed path that is `path` or an ancestor (only ancestors when `strict`)."""
        here = path
        if strict:
            here = here.rpartition(".")[0] if "." in here else ""
        while here:
            keys = self.by_path.get(here)
            if keys:
                return keys
            here = here.rpartition(".")[0] if "." in here else ""
        return []

    def lookup(self, path: str, strict: bool = False) -> str | None:
        keys = self.keys_at(path, strict)
        return keys[0] if keys else None


class SiteIndex:
    """A base's sites, declared once and indexed: by id, by the names `--targets` accepts (short name, id,
    and every dotted suffix of the Hugging Face module name, as PEFT matches target modules), and by module
    path. FrozenBase.site_index() builds it once per base: an edit asks for sites dozens of times."""

    def __init__(self, sites: Iterable[Site], hf_module: Callable[[str], str | None] = lambda _path: None) -> None:
        self.sites: tuple[Site, ...] = tuple(sites)
        self.by_id: dict[str, Site] = {}
        self.order: dict[str, int] = {}
        self.by_target: dict[str, list[Site]] = {}
        for i, site in enumerate(self.sites):
            self.by_id.setdefault(site.id, site)
            self.order.setdefault(site.id, i)
            names = {site.name, site.id}
            hf_name = hf_module(site.module_path)
            if hf_name and site.kind != LINEAR_INPUT:  # a module name means the module (its output); an input
                # is asked for by its site name or id
                parts = hf_name.split(".")
                names.update(".".join(parts[k:]) for k in range(len(parts)))
            for name in names:
                self.by_target.setdefault(name, []).append(site)
        self.paths = PathIndex((s.id, s.module_path) for s in self.sites)

    def named(self, target: str) -> list[Site]:
        """Sites a target name selects: the one site with that id, else those whose short name equals it or
        whose Hugging Face module name ends with it (the pooler's id is also its module name)."""
        site = self.by_id.get(target)
        return [site] if site is not None else self.by_target.get(target, [])

    def owner(self, path: str, kind: str | None = None) -> Site | None:
        """The site whose module holds `path` (the longest module-path prefix); among sites sharing that module,
        one of `kind` first (a method module on one of two sites with the same path)."""
        ids = self.paths.keys_at(path)
        if not ids:
            return None
        sites = [self.by_id[i] for i in ids]
        return next((s for s in sites if s.kind == kind), sites[0])
