"""Lily, low-rank interconnected adaptation across layers: LoRA's A shared by neighbouring layers, LoRA's B a
router-weighted mixture of a few B's shared by every layer (Zhong et al., 2024).

Follows PEFT's Lily (peft/tuners/lily): the adapted Linears of one kind (one target, e.g. every query) form a group,
in layer order; every stride_A consecutive members share one A (r x in), all members share num_B experts
B (num_B x r x out), and each Linear has its own router (num_B x r):

    h = W0 x + b + scaling · (A x) Σ_e p_e B_e,   p = mean over every token of the batch of softmax(router(A x))

The router's weights are averaged over the whole batch, padding included, as PEFT computes them: a text's output
depends on the batch it is in, and a position reads later positions (so Lily is refused for next-token training).
The B's start at zero (init_weights), so the model starts at W0. Not mergeable: the mixture depends on the input.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR
from ..errors import AdapterFileError
from ..files.safe_io import expect_shape
from ..model.studio_model import StudioModel
from .config import MethodConfig, option
from .method import REPARAMETERISED, Method, MethodCard, TargetedMethod, code_line
from .oft import LINEAR_ONLY
from .peft_fields import flag, number, whole
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys, unknown

LEAVES = ("lily_A.weight", "lily_B.weight", "lily_router.weight")
_LAYER = re.compile(r"(?:^|\.)(\d+)(?=\.)")  # the layer index inside a module path ('layers.3.attn.q')
_HF_LAYER = re.compile(r"^(?:.*?\.)?\d+\.")  # 'encoder.layer.3.' / 'model.layers.3.': what PEFT's suffixes drop


def group_of(path: str) -> tuple[str, int]:
    """(the kind of module, its layer index): Lily shares within a kind, in layer order ('layers.3.attn.q' ->
    ('layers.attn.q', 3); a module outside the layers is its own kind, layer -1)."""
    match = _LAYER.search(path)
    if match is None:
        return path, -1
    return path[:match.start(1)] + path[match.end(1) + 1:], int(match.group(1))


def sharing(paths: list[str], stride_a: int) -> dict[str, tuple[str, str]]:
    """Each module path -> (the path that owns its A, the path that owns its B), as PEFT's post-injection hook
    shares them: per kind, in layer order, every stride_A consecutive members share the first one's A and all
    share the first member's B."""
    groups: dict[str, list[tuple[int, str]]] = {}
    for path in paths:
        kind, layer = group_of(path)
        groups.setdefault(kind, []).append((layer, path))
    owners: dict[str, tuple[str, str]] = {}
    for members in groups.values():
        ordered = [path for _, path in sorted(members)]
        for i, path in enumerate(ordered):
            owners[path] = (ordered[(i // stride_a) * stride_a], ordered[0])
    return owners


class LilyLinear(nn.Module):
    """A frozen Linear plus scaling · (A x) · (Σ_e p_e B_e); A and the B's may be shared with other LilyLinears (the
    same modules registered in each: a model's parameters list a shared one once, under its first owner)."""

    def __init__(self, base_layer: nn.Module, lily_a: nn.Linear, lily_b: nn.Linear, num_b: int,
                 scaling: float) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.lily_A, self.lily_B = lily_a, lily_b
        self.lily_router = nn.Linear(lily_a.out_features, num_b, bias=False)
        nn.init.kaiming_uniform_(self.lily_router.weight, a=math.sqrt(5))
        self.num_b, self.scaling = num_b, scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        experts = self.lily_B.weight.reshape(self.num_b, -1, self.lily_B.weight.shape[1])  # num_B x r x out
        hidden = self.lily_A(x.to(self.lily_A.weight.dtype))
        weights = F.softmax(self.lily_router(hidden), dim=-1).reshape(-1, self.num_b).mean(dim=0)  # whole batch
        combined = torch.einsum("e,eio->io", weights, experts)  # the router's mixture of the shared B's
        return result + (torch.matmul(hidden, combined) * self.scaling).to(result.dtype)


@dataclass
class LilyConfig(MethodConfig):
    r: int = option(32, "rank of A and of each B", low=1, high=4096)
    stride_A: int = option(1, "consecutive adapted layers of one kind that share an A", low=1, high=4096)
    num_B: int = option(2, "B experts shared by every adapted layer of one kind, mixed by each layer's router "
                           "(at least 2, as PEFT requires: one would leave the router nothing to learn)",
                        low=2, high=4096)
    scaling: float = option(1.0, "multiplies the update (no alpha / r)", low=-1e6, high=1e6)
    init_weights: bool = option(True, "the B's start at zero (the model starts at W0); false: Kaiming-uniform B's")
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")


class LilyMethod(TargetedMethod):
    family_group = REPARAMETERISED
    name = "lily"
    title = "Lily"
    config_cls = LilyConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless Lily is already chosen
    targets_default_from = "lora"
    reads_padding = True  # the router's mean covers padded positions: a batch's padding changes its outputs
    refused_layers = {"Conv1D": LINEAR_ONLY.format("Lily")}
    next_token_refusal = "its router averages over every position of the batch, so position t reads the later " \
                         "tokens it is to predict (PEFT's Lily does the same)"
    example_space = {**Method.example_space, "r": (1, 4, 8), "stride_A": (1, 2, 3), "num_B": (2, 4),
                     "scaling": (1.0, 0.5), "init_weights": (True, False)}
    peft_space = {"r": (4, 8), "stride_A": (1, 2, 4), "num_B": (2, 3), "scaling": (1.0, 0.5)}
    peft_type = "LILY"
    exchange_tolerance = 1e-5  # the bar for outputs equal to PEFT's
    peft_config_fields = {"stride_A": ((int,), "a whole number"), "num_B": ((int,), "a whole number"),
                          "scaling": ((int, float), "a number"), "init_weights": ((bool,), "true or false")}
    glyph = "⚘"
    colour = "#c39bd3"
    card = MethodCard(
        where="beside a frozen Linear: LoRA's A shared with neighbouring layers, its B a routed mix of a few B's "
              "shared by all layers",
        intuition="layers of one kind need similar updates: share the parts across layers and let each layer's "
                  "router pick its own mixture of the shared B's",
        advantages="far fewer numbers than LoRA at the same rank: an A per stride_A layers, num_B B's per kind",
        limitations="the router averages over the whole batch (padding included): a text's output depends on its "
                    "batch and on later positions (no next-token training); not mergeable into W0",
        formula="h = W0 x + scaling · (A x) Σ_e p_e B_e,  p = mean over the batch of softmax(router(A x))",
    )

    def attach(self, model: StudioModel, config: LilyConfig) -> None:
        sites = {s.module_path: s for s in self.selected_sites(config, model.base)}
        owners = sharing(list(sites), config.stride_A)
        parts: dict[str, nn.Linear] = {}
        for path in sorted(sites, key=lambda p: (group_of(p)[0], group_of(p)[1])):  # by kind, then layer
            site, (a_owner, b_owner) = sites[path], owners[path]
            if f"B:{b_owner}" not in parts:
                b = nn.Linear(site.out_features, config.num_B * config.r, bias=False)
                if config.init_weights:
                    nn.init.zeros_(b.weight)
                else:
                    nn.init.kaiming_uniform_(b.weight, a=math.sqrt(5))
                parts[f"B:{b_owner}"] = b
            if f"A:{a_owner}" not in parts:
                a = nn.Linear(site.in_features, config.r, bias=False)
                nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5))
                parts[f"A:{a_owner}"] = a
            original = model.base.get_submodule(path)
            model.swap(path, LilyLinear(original, parts[f"A:{a_owner}"], parts[f"B:{b_owner}"], config.num_B,
                                        config.scaling))

    def parameter_count(self, config: LilyConfig, base: FrozenBase) -> int:
        sites = {s.module_path: s for s in self.selected_sites(config, base)}
        owners = sharing(list(sites), config.stride_A)
        a_owners = {a for a, _ in owners.values()}
        b_owners = {b for _, b in owners.values()}
        return (sum(config.r * sites[p].in_features for p in a_owners)
                + sum(config.num_B * config.r * sites[p].out_features for p in b_owners)
                + len(sites) * config.r * config.num_B)

    def formula_text(self, config: LilyConfig, base: FrozenBase) -> str:
        sites = {s.module_path: s for s in self.selected_sites(config, base)}
        owners = sharing(list(sites), config.stride_A)
        a_count, b_count = len({a for a, _ in owners.values()}), len({b for _, b in owners.values()})
        return (f"{a_count} A(s) of r x in + {b_count} kind(s) x num_B {config.num_B} B(s) of r x out + "
                f"{len(sites)} router(s) of r x num_B = {self.parameter_count(config, base):,}")

    def live_formula(self, config: LilyConfig) -> str:
        return self.card.formula.replace("scaling", f"{config.scaling:g}").replace("Σ_e", f"Σ_(e<{config.num_B})")

    def code(self, config: LilyConfig) -> str:
        return f"{code_line(LilyLinear.forward, 'whole batch')}  # then: " \
               f"{code_line(LilyLinear.forward, 'torch.matmul(hidden, combined)')}"

    def shape_notes(self, config: LilyConfig, base: FrozenBase, seq_len: int) -> list[str]:
        sites = {s.module_path: s for s in self.selected_sites(config, base)}
        owners = sharing(list(sites), config.stride_A)
        return [f"{sites[p].id}: A {config.r}x{sites[p].in_features} (from {sites[a].id}), B's {config.num_B}x"
                f"{config.r}x{sites[p].out_features} (from {sites[b].id}), router {config.num_B}x{config.r}"
                for p, (a, b) in owners.items()]

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: LilyConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        """PEFT shares by target name, so the targets are written as names every layer has (PEFT's suffixes) with
        layers_to_transform: a suffix that would also match a module the studio did not adapt is refused."""
        layers = modules_of(base, LilyLinear)
        adapted = {path for path, _ in layers}
        names = {path: hf_name(path, base) for path, _ in layers}
        suffixes = sorted({_HF_LAYER.sub("", name, count=1) for name in names.values()})
        indices = sorted({group_of(path)[1] for path in adapted} - {-1})  # -1: a module outside the layers
        every_layer = not indices or indices == list(range(base.num_layers))
        if any(group_of(path)[1] == -1 for path in adapted) and not every_layer:
            raise AdapterFileError("export to PEFT format: Lily's targets go to PEFT as names shared by every layer; "
                                   "a module outside the layers cannot be combined with a subset of layers")
        for site in base.site_index().sites:
            name = base.hf_module(site.module_path) if site.kind == LINEAR else None
            if not name or site.module_path in adapted or (not every_layer and site.layer not in indices):
                continue
            if any(name == suffix or name.endswith(f".{suffix}") for suffix in suffixes):
                raise AdapterFileError(f"export to PEFT format: PEFT would also adapt {name} (it ends with one of "
                                       f"Lily's target names {suffixes}); add {site.name!r} to the targets or "
                                       "leave out the target whose name it shares")
        tensors = {f"{KEY_PREFIX}{names[path]}.{leaf}": parameter for path, layer in layers
                   for leaf, parameter in layer.named_parameters(remove_duplicate=False)
                   if not leaf.startswith("base_layer.")}
        settings = {"r": config.r, "stride_A": config.stride_A, "num_B": config.num_B, "scaling": config.scaling,
                    "init_weights": config.init_weights, "target_modules": suffixes, "exclude_modules": None,
                    "layers_to_transform": None if every_layer else indices, "layers_pattern": None}
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        if isinstance(peft_config.get("target_modules"), str):
            raise AdapterFileError(f"{where}: target_modules as a regular expression is not supported for Lily: PEFT "
                                   "then shares A and B between every adapted module of one shape, the studio "
                                   "within one kind of module")
        options = {"r": whole(peft_config, "r", where, 32, high=4096),
                   "stride_A": whole(peft_config, "stride_A", where, 1, high=4096),
                   "num_B": whole(peft_config, "num_B", where, 2, low=2, high=4096),
                   "scaling": number(peft_config, "scaling", where, 1.0, -1e6, 1e6),
                   "init_weights": flag(peft_config, "init_weights", where, True)}
        r, num_b = options["r"], options["num_B"]
        modules = split_module_keys(tensors, LEAVES, where, "a Lily")
        owners = sharing(list(modules), options["stride_A"])
        studio: dict[str, torch.Tensor] = {}
        for module, parts in modules.items():
            if set(parts) != set(LEAVES):
                raise unknown(where, module, "needs lily_A, lily_B and lily_router weights")
            for leaf, tensor in parts.items():
                expect_shape(tensor, 2, f"{where}: {module}.{leaf}", AdapterFileError, "a matrix")
            shapes = (parts["lily_A.weight"].shape[0], parts["lily_B.weight"].shape[0],
                      tuple(parts["lily_router.weight"].shape))
            if shapes != (r, num_b * r, (num_b, r)):
                raise unknown(where, module, f"has A rows, B rows, router shape {shapes}; r = {r} and num_B = "
                                             f"{num_b} need {(r, num_b * r, (num_b, r))}")
            studio[f"{module}.lily_router.weight"] = parts["lily_router.weight"]
            for leaf, owner in (("lily_A.weight", owners[module][0]), ("lily_B.weight", owners[module][1])):
                shared = modules[owner][leaf]
                if not torch.equal(parts[leaf], shared):  # PEFT saves a shared tensor under every module
                    raise unknown(where, f"{module}.{leaf}", f"differs from {owner}'s, which it shares in Lily "
                                                             f"(stride_A {options['stride_A']})")
                studio[f"{owner}.{leaf}"] = shared
        return options, studio

    def peft_check_model(self, base: FrozenBase, options: dict[str, Any], where: str) -> None:
        for path, layer in modules_of(base, LilyLinear):
            if layer.scaling != options["scaling"]:
                raise AdapterFileError(f"{where}: the adapter scales by {options['scaling']:g}, the model's {path} by "
                                       f"{layer.scaling:g}")
