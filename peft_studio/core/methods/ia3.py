"""IA3: learned per-channel scales on keys, values and the feed-forward activation (Liu et al., 2022).

An IA3 site scales either the OUTPUT of a module (a Linear site, or an activation) or the INPUT of
a Linear (a linear-input site, named `q-in`, `down-in`, ...). Studio names say which. A PEFT module
list means what it means in PEFT: a Hugging Face name in `targets` scales the module's input when it
also matches `feedforward` (PEFT's feedforward_modules; by default the base's PEFT default, which is
`output.dense` for BERT: the input of attention.output.dense and of output.dense), else its output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..bases.frozen import FrozenBase
from ..bases.hf_names import hf_module
from ..bases.sites import ACTIVATION, LINEAR, LINEAR_INPUT, Site
from ..errors import AdapterFileError, ConfigError
from ..files.safe_io import expect_shape
from ..model.studio_model import StudioModel
from .config import MethodConfig, option, parse_list
from .method import INSIDE_LAYERS, MethodCard, TargetedMethod, code_line, site_paths
from .module_patterns import ModuleSelector
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys, unknown
from .targets import default_targets, resolve_targets


class ChannelScale(nn.Module):
    """Multiplies the last dimension by a learned vector that starts at ones (the identity): the output of
    `inner` (or x itself on an activation), or, with scale_input, the input of `inner` (PEFT's feed-forward IA3)."""

    def __init__(self, width: int, inner: nn.Module | None = None, scale_input: bool = False) -> None:
        super().__init__()
        self.inner = inner  # a Linear whose output (or input) is scaled, or None on an activation
        self.scale_input = scale_input
        self.site_kind = LINEAR_INPUT if scale_input else None  # the census puts its vector on the input site
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
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")
    feedforward: str | None = option(None, "PEFT's feedforward_modules: Hugging Face names in targets that match one "
                                           "of these scale the module's input, not its output (default: the base's "
                                           "PEFT default, output.dense on BERT)")


class IA3Method(TargetedMethod):
    name = "ia3"
    family_group = INSIDE_LAYERS
    title = "IA3"
    config_cls = IA3Config
    site_kinds = (ACTIVATION, LINEAR, LINEAR_INPUT)
    claims_kinds = (ACTIVATION, LINEAR_INPUT)
    # PEFT scales the input of feed-forward modules and the output of the others; drawn targets on MiniLM are
    # module names, so feedforward_modules is drawn among them
    peft_space = {"feedforward_modules": ([], ["output.dense"], ["intermediate.dense", "output.dense"])}
    peft_type = "IA3"
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
        index = base.site_index()
        candidates = [s for s in index.sites if s.kind in self.site_kinds]
        studio_names = {s.name for s in candidates} | {s.id for s in candidates}
        resolved: list[str] = []
        for target in names:
            # a studio name says output or input itself, unless it is also the module's Hugging Face name (a
            # decoder's q_proj, down_proj): then it means what it means in PEFT
            hf_named = any(c.kind == LINEAR and c.name == target and _hf_matches(base, c, [target])
                           for c in candidates)
            if target in studio_names and not hf_named:
                resolved.append(target)
                continue
            # A PEFT module name: the module's input when it is a feed-forward module, else its output.
            ids: list[str] = []
            for site in index.named(target):
                if site.kind != LINEAR:
                    continue
                if _hf_matches(base, site, feedforward):  # its input site (the index names modules by output)
                    ids += [c.id for c in candidates if c.kind == LINEAR_INPUT and c.module_path == site.module_path]
                else:
                    ids.append(site.id)
            ids += _inputs_by_activation(base, candidates, target, feedforward, ids)
            resolved.extend(ids or [target])  # an unknown name stays, so resolve_targets names it in its error
        return resolve_targets(base, self.name, self.site_kinds, resolved, config.layers)

    def effective_options(self, config: IA3Config, base: FrozenBase) -> dict[str, Any]:
        values = super().effective_options(config, base)
        values["feedforward"] = ",".join(self.feedforward(config, base))
        return values

    def attach(self, model: StudioModel, config: IA3Config) -> None:
        for site in self.selected_sites(config, model.base):
            inner = model.base.get_submodule(site.module_path) if site.kind != ACTIVATION else None
            model.swap(site.module_path, ChannelScale(site.out_features, inner, site.kind == LINEAR_INPUT))

    def parameter_count(self, config: IA3Config, base: FrozenBase) -> int:
        return sum(s.out_features for s in self.selected_sites(config, base))

    def formula_text(self, config: IA3Config, base: FrozenBase) -> str:
        widths = " + ".join(str(s.out_features) for s in self.selected_sites(config, base))
        return f"sum of scaled widths = {widths} = {self.parameter_count(config, base):,}"

    def lens(self, experiment: Any, sentence: str) -> list[Any]:
        """Each gain vector's histogram: 1 leaves a channel as it was, < 1 damps, > 1 amplifies, < 0 flips."""
        from ..lenses.activations import gain_figures

        paths = site_paths(experiment.base)
        vectors = []
        for path, module in experiment.base.named_modules():
            if isinstance(module, ChannelScale):
                site = paths.get(path, path)
                if module.scale_input:  # the census puts an input scale on the Linear's input site
                    site = next((s.id for s in experiment.base.sites()
                                 if s.module_path == path and s.kind == LINEAR_INPUT), site)
                vectors.append((site, module.ia3_scale))
        return gain_figures(vectors)

    def code(self, config: IA3Config) -> str:
        return code_line(ChannelScale.forward, "(x if self.inner")

    def peft_export(self, base: FrozenBase, config: IA3Config) -> tuple[dict, dict[str, torch.Tensor]]:
        return ia3_peft_export(base)

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        return ia3_peft_translate(peft_config, tensors, where)

    def shape_notes(self, config: IA3Config, base: FrozenBase, seq_len: int) -> list[str]:
        return [f"{s.id}: scale vector ({s.out_features},) multiplies the {s.label} channel by channel"
                for s in self.selected_sites(config, base)]


def _inputs_by_activation(base: FrozenBase, candidates: list[Site], target: str, feedforward: list[str],
                          found: list[str]) -> list[str]:
    """A feed-forward module without an input site of its own (a decoder's down_proj / mlp.c_proj): its input is
    the activation site just before it, which is where PEFT's input scale acts. A feed-forward module with neither
    is refused: the studio would otherwise scale its output, which PEFT does not."""
    out: list[str] = []
    for i, site in enumerate(candidates):
        if site.kind != LINEAR or not _hf_matches(base, site, [target]) or not _hf_matches(base, site, feedforward):
            continue
        if any(c.kind == LINEAR_INPUT and c.module_path == site.module_path for c in candidates):
            continue  # found among `found` already
        before = candidates[i - 1] if i else None
        if before is None or before.kind != ACTIVATION or before.layer != site.layer:
            raise ConfigError(f"targets: {target!r} is a feed-forward module (feedforward_modules), whose input IA3 "
                              f"scales as PEFT does; base {base.name!r} has no site on the input of {site.id}")
        if before.id not in found:
            out.append(before.id)
    return out


def _hf_matches(base: FrozenBase, site: Site, names: list[str]) -> bool:
    """PEFT's list rule: the module's Hugging Face name equals an entry or ends with "." + it."""
    hf = base.hf_module(site.module_path)
    return hf is not None and any(hf == name or hf.endswith("." + name) for name in names)


_FFN_ACT = re.compile(r"layers\.(\d+)\.ffn\.act_scale")  # PEFT has no activation site: it is down's input


def _linear_after(base: FrozenBase, path: str) -> str | None:
    """The module path of the first Linear site after the activation site at `path` (None if none)."""
    sites = base.site_index().sites
    index = next((i for i, s in enumerate(sites) if s.module_path == path and s.kind == ACTIVATION), None)
    if index is None:
        return None
    return next((s.module_path for s in sites[index + 1:] if s.kind == LINEAR), None)


def ia3_peft_export(base: FrozenBase) -> tuple[dict, dict[str, torch.Tensor]]:
    tensors: dict[str, torch.Tensor] = {}
    targets, feedforward = [], []
    for path, module in modules_of(base, ChannelScale):
        if path.endswith(".inner"):
            raise AdapterFileError(f"export to PEFT format: PEFT allows one IA3 vector per module, but "
                                   f"{path.removesuffix('.inner')} has two (its input and its output)")
        match = _FFN_ACT.fullmatch(path)
        after = None if match or module.scale_input or module.inner is not None else _linear_after(base, path)
        if after is not None:  # a decoder's activation scale: the input of the Linear after it (down_proj, c_proj)
            name = hf_name(after, base)
            feedforward.append(name)
            tensor = module.ia3_scale.view(1, -1)
        elif match or module.scale_input:  # PEFT scales the input of a feed-forward module
            name = f"encoder.layer.{match.group(1)}.output.dense" if match else hf_name(path, base)
            feedforward.append(name)
            tensor = module.ia3_scale.view(1, -1)
        elif module.inner is not None:
            name = hf_name(path, base)
            tensor = module.ia3_scale.view(-1, 1)
        else:
            raise AdapterFileError(f"export to PEFT format: IA3 at {path} has no PEFT equivalent")
        if name in targets:
            raise AdapterFileError(f"export to PEFT format: PEFT allows one IA3 vector per module, but {name} has "
                                   "two (the feed-forward activation is the down projection's input)")
        targets.append(name)
        tensors[f"{KEY_PREFIX}{name}.ia3_l"] = tensor
    settings = {"target_modules": targets, "feedforward_modules": feedforward, "fan_in_fan_out": False,
                "init_ia3_weights": True}
    return settings, tensors


def ia3_peft_translate(config: dict, tensors: dict[str, torch.Tensor], where: str) -> tuple[dict, dict]:
    """A PEFT module in feedforward_modules scales its input (the studio's `<site>.input`), others their output."""
    feedforward = ModuleSelector(config.get("feedforward_modules"), "feedforward_modules", where, AdapterFileError)
    studio: dict[str, torch.Tensor] = {}
    sites: list[str] = []
    for module, parts in split_module_keys(tensors, ("ia3_l",), where, "an IA3").items():
        tensor, name = parts["ia3_l"], hf_module(module) or module
        is_ff = feedforward.matches(name) or feedforward.matches(f"bert.{name}")
        expect_shape(tensor, 2, f"{where}: {name}.ia3_l", AdapterFileError, "(1, in)" if is_ff else "(out, 1)")
        if is_ff != (tensor.shape[0] == 1 and tensor.shape[1] != 1) or (not is_ff and tensor.shape[1] != 1):
            shape = tuple(tensor.shape)
            kind, expected = ("feed-forward", "(1, in)") if is_ff else ("plain", "(out, 1)")
            raise unknown(where, f"{name}.ia3_l", f"shape {shape} does not fit a {kind} IA3 module ({expected})")
        down = re.fullmatch(r"layers\.(\d+)\.ffn\.down", module)
        if is_ff and down:  # the input of output.dense is the feed-forward activation: the studio's own site for it
            module = f"layers.{down.group(1)}.ffn.act_scale"
            sites.append(module)
        else:
            sites.append(f"{module}.input" if is_ff else module)  # the encoder's site ids
        studio[f"{module}.ia3_scale"] = tensor.reshape(-1)
    return {"targets": ",".join(sites), "layers": None, "feedforward": ""}, studio
