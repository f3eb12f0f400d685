"""What a base declares about itself: the sites methods may use and the blocks a diagram draws."""

from __future__ import annotations

from collections.abc import Iterable
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
SITE_KINDS = (PROMPT, EMBEDDING, KV_PREFIX, ADAPTER, ACTIVATION, LINEAR, LINEAR_INPUT, NORM)

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
