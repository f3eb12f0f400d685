"""Uni-LoRA: one trained vector theta_d, scattered by fixed random indices into every adapted Linear's LoRA factors
(Li et al., 2025, "One Vector Is All You Need").

Follows PEFT's UniLora (peft/tuners/unilora): the LoRA factors of all adapted Linears, A (r, in) then B (out, r) per
Linear in the model's module order, are flattened into one list of D positions; each position is assigned an entry
of theta_d (length d) by a balanced shuffle seeded with proj_seed (every entry used floor(D / d) or ceil(D / d)
times), and scaled by 1 / sqrt(how often its entry is used). Then

    A = theta_d[idx_A] * s_A,   B = theta_d[idx_B] * s_B,   h = W0 x + b + B (A x)

theta_d starts uniform in [-init_theta_d_bound, init_theta_d_bound] (both factors random: the update starts
non-zero, as in PEFT). Only theta_d trains; indices and scales follow from proj_seed and the adapted Linears.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR, Site
from ..errors import AdapterFileError
from ..files.safe_io import expect_shape
from ..model.studio_model import StudioModel
from .config import MethodConfig, option
from .mergeable import WeightUpdate
from .method import REPARAMETERISED, Method, MethodCard, TargetedMethod, code_line
from .peft_fields import flag, number, refuse_set, whole
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys, unknown

THETA_KEY = "base_model.unilora_theta_d"  # PEFT's key of the shared vector (adapter name removed)
INDEX_LEAVES = ("unilora_indices_A", "unilora_indices_B", "unilora_scales_A", "unilora_scales_B")


def generate_index(count: int, length: int, seed: int) -> torch.Tensor:
    """PEFT's UniLoraModel.generate_index: `count` positions, each entry of 0..length-1 used floor(count / length)
    times plus `count % length` distinct extras, shuffled by numpy's default_rng(seed)."""
    rng = np.random.default_rng(seed)
    data = np.repeat(np.arange(length), count // length)
    if count % length:
        data = np.concatenate([data, rng.choice(length, size=count % length, replace=False)])
    rng.shuffle(data)
    return torch.as_tensor(data, dtype=torch.long)


def inverse_sqrt_counts(indices: torch.Tensor, length: int) -> torch.Tensor:
    """1 / sqrt(uses) per theta_d entry (0 for an unused one), as PEFT scales each gathered value."""
    counts = torch.bincount(indices, minlength=length)
    scales = torch.zeros(length, dtype=torch.float32)
    used = counts > 0
    scales[used] = counts[used].float().rsqrt()
    return scales


class ThetaVector(nn.Module):
    """The one trained vector every adapted Linear reads (kept in StudioModel.extras)."""

    def __init__(self, length: int, bound: float, init_weights: bool, proj_seed: int) -> None:
        super().__init__()
        self.proj_seed = proj_seed  # the seed of the positions every layer reads it at
        self.unilora_theta_d = nn.Parameter(torch.empty(length))
        with torch.no_grad():
            if init_weights:
                self.unilora_theta_d.uniform_(-bound, bound)
            else:  # PEFT's init_weights=False: a standard normal start
                self.unilora_theta_d.normal_()


class UniLoraLinear(WeightUpdate):
    """A frozen Linear plus B (A x), A and B gathered from the shared theta_d at fixed positions."""

    def __init__(self, base_layer: nn.Module, theta: ThetaVector, r: int, dropout: float) -> None:
        super().__init__(base_layer)
        self.in_features, self.out_features, self.r = base_layer.in_features, base_layer.out_features, r
        self.__dict__["theta"] = theta  # a plain reference: the vector is registered once, in model.extras
        self.unilora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # fixed by proj_seed and the set of adapted Linears (UniLoraMethod.attach assigns them): plain attributes,
        # not parameters, so the census shows theta_d alone
        self.indices_A = torch.zeros(r, self.in_features, dtype=torch.long)
        self.indices_B = torch.zeros(self.out_features, r, dtype=torch.long)
        self.scales_A = torch.zeros(r, self.in_features)
        self.scales_B = torch.zeros(self.out_features, r)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A (r x in) and B (out x r): theta_d's entries at the fixed positions, times their scales."""
        theta = self.theta.unilora_theta_d
        device = theta.device
        a = theta[self.indices_A.to(device)] * self.scales_A.to(device)
        b = theta[self.indices_B.to(device)] * self.scales_B.to(device)
        return a, b

    def delta_weight(self) -> torch.Tensor:
        a, b = self.factors()
        return b @ a

    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        a, b = self.factors()
        return result + F.linear(F.linear(self.unilora_dropout(x), a), b)  # B (A x), both gathered from theta_d


def assign_indices(layers: list[UniLoraLinear], length: int, seed: int) -> None:
    """PEFT's _assign_unilora_indices_and_scales: one index stream over A then B of each layer, in order."""
    sizes = [(layer.indices_A.numel(), layer.indices_B.numel()) for layer in layers]
    indices = generate_index(sum(a + b for a, b in sizes), length, seed)
    scales = inverse_sqrt_counts(indices, length)
    start = 0
    for layer, (size_a, size_b) in zip(layers, sizes, strict=True):
        layer.indices_A = indices[start:start + size_a].view(layer.r, layer.in_features).clone()
        layer.indices_B = indices[start + size_a:start + size_a + size_b].view(layer.out_features, layer.r).clone()
        layer.scales_A, layer.scales_B = scales[layer.indices_A], scales[layer.indices_B]
        start += size_a + size_b


@dataclass
class UniLoraConfig(MethodConfig):
    r: int = option(4, "rank of the update B A (both factors are gathered from theta_d)", low=1, high=4096)
    theta_d_length: int = option(256, "length of theta_d, the one trained vector shared by every adapted Linear",
                                 low=1, high=2**24)
    proj_seed: int = option(42, "seed of the fixed positions that scatter theta_d into A and B (PEFT's proj_seed)",
                            low=0, high=2**31 - 1)
    dropout: float = option(0.0, "dropout on the input of A during training (PEFT's unilora_dropout)", low=0.0,
                            high=0.99)
    init_theta_d_bound: float = option(0.02, "theta_d starts uniform in [-bound, bound]", low=1e-12, high=1e3)
    init_weights: bool = option(True, "start theta_d uniform within the bound (false: standard normal, as PEFT)")
    save_indices: bool = option(False, "write the indices and scales into an exported PEFT folder too (PEFT "
                                       "otherwise draws them again from proj_seed)")
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")


class UniLoraMethod(TargetedMethod):
    family_group = REPARAMETERISED
    name = "unilora"
    title = "Uni-LoRA"
    config_cls = UniLoraConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless Uni-LoRA is already chosen
    targets_default_from = "lora"
    example_space = {**Method.example_space, "r": (1, 2, 4), "theta_d_length": (16, 64), "proj_seed": (0, 42),
                     "save_indices": (False, True)}
    peft_space = {"r": (1, 4), "theta_d_length": (32, 256), "proj_seed": (0, 42), "save_indices": (False, True)}
    peft_type = "UNILORA"
    exchange_tolerance = 1e-5  # the bar for outputs equal to PEFT's
    # PEFT counts how often each theta_d entry is used with torch.bincount, which has no meta-device kernel: its
    # count (theta_d_length, whatever the base) is held to PEFT's on MiniLM's real weights (test_hf_peft_family)
    peft_on_meta_device = False
    peft_config_fields = {"theta_d_length": ((int,), "a whole number"), "proj_seed": ((int,), "a whole number"),
                          "unilora_dropout": ((int, float), "a number"),
                          "init_theta_d_bound": ((int, float), "a number"), "init_weights": ((bool,), "true or false"),
                          "save_indices": ((bool,), "true or false")}
    glyph = "θ"
    colour = "#a04000"
    card = MethodCard(
        where="beside a frozen Linear: LoRA factors whose every entry is one of a single trained vector's, shared "
              "by all adapted Linears",
        intuition="LoRA's parameters are highly redundant: tie them all, through a fixed random assignment, to one "
                  "small vector theta_d and train only that",
        advantages="the whole adapter is one vector (d numbers, independent of the model's size); indices come "
                   "back from a seed; mergeable into W0",
        limitations="each step gathers full r x (in + out) factors per Linear; the assignment is random, not "
                    "learned; the update starts non-zero",
        formula="h = W0 x + B A x,  A = θ[idx_A] s_A,  B = θ[idx_B] s_B  (θ: one trained vector)",
    )

    def attach(self, model: StudioModel, config: UniLoraConfig) -> None:
        theta = ThetaVector(config.theta_d_length, config.init_theta_d_bound, config.init_weights, config.proj_seed)
        model.extras["unilora"] = theta
        layers = []
        for site in self.selected_sites(config, model.base):
            layer = UniLoraLinear(model.base.get_submodule(site.module_path), theta, config.r, config.dropout)
            model.swap(site.module_path, layer)
            layers.append(layer)
        if torch.empty(0).device.type != "meta":  # a shapes-only model has no values to index
            assign_indices(layers, config.theta_d_length, config.proj_seed)

    def parameter_count(self, config: UniLoraConfig, base: FrozenBase) -> int:
        return config.theta_d_length

    def _factor_entries(self, sites: list[Site], r: int) -> int:
        return sum(r * (s.in_features + s.out_features) for s in sites)

    def formula_text(self, config: UniLoraConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        entries = self._factor_entries(sites, config.r)
        return (f"theta_d = {config.theta_d_length:,}, shared by {len(sites)} Linear(s) whose factors hold "
                f"r x (in + out) = {entries:,} entries (each entry of theta_d used about "
                f"{entries / config.theta_d_length:,.1f} times)")

    def live_formula(self, config: UniLoraConfig) -> str:
        return f"{self.card.formula}, r = {config.r}, |θ| = {config.theta_d_length}"

    def code(self, config: UniLoraConfig) -> str:
        return f"{code_line(UniLoraLinear.factors, 'indices_A')}  # then: {code_line(UniLoraLinear.update, 'F.linear')}"

    def shape_notes(self, config: UniLoraConfig, base: FrozenBase, seq_len: int) -> list[str]:
        return [f"theta_d: {config.theta_d_length} trained numbers, shared"] + [
            f"{s.id}: A {config.r}x{s.in_features} and B {s.out_features}x{config.r} gathered from theta_d"
            for s in self.selected_sites(config, base)]

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: UniLoraConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        layers = modules_of(base, UniLoraLinear)
        tensors: dict[str, torch.Tensor] = {THETA_KEY: layers[0][1].theta.unilora_theta_d}
        targets = []
        for path, layer in layers:
            name = hf_name(path, base)
            targets.append(name)
            if config.save_indices:
                tensors.update({f"{KEY_PREFIX}{name}.unilora_indices_A": layer.indices_A,
                                f"{KEY_PREFIX}{name}.unilora_indices_B": layer.indices_B,
                                f"{KEY_PREFIX}{name}.unilora_scales_A": layer.scales_A,
                                f"{KEY_PREFIX}{name}.unilora_scales_B": layer.scales_B})
        settings = {"r": config.r, "proj_seed": config.proj_seed, "theta_d_length": config.theta_d_length,
                    "target_modules": targets, "unilora_dropout": config.dropout,
                    "fan_in_fan_out": any(layer.fan_in_fan_out for _, layer in layers), "bias": "none",
                    "init_theta_d_bound": config.init_theta_d_bound, "init_weights": config.init_weights,
                    "save_indices": config.save_indices, "layers_to_transform": None, "layers_pattern": None}
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        if peft_config.get("bias", "none") != "none":
            raise AdapterFileError(f"{where}: bias {peft_config.get('bias')!r} trains base biases too; only 'none'")
        refuse_set(peft_config, where, {"layers_pattern": "the studio selects layers by index on its own bases"})
        flag(peft_config, "fan_in_fan_out", where, False)  # PEFT sets it from the layer type itself
        options: dict[str, Any] = {
            "r": whole(peft_config, "r", where, 4, high=4096),
            "theta_d_length": whole(peft_config, "theta_d_length", where, 256, high=2**24),
            "proj_seed": whole(peft_config, "proj_seed", where, 42, low=0),
            "dropout": number(peft_config, "unilora_dropout", where, 0.0, 0.0, 1.0, high_open=True),
            "init_theta_d_bound": number(peft_config, "init_theta_d_bound", where, 0.02, 1e-12, 1e3),
            "init_weights": flag(peft_config, "init_weights", where, True),
            "save_indices": flag(peft_config, "save_indices", where, False)}
        tensors = dict(tensors)
        theta = tensors.pop(THETA_KEY, None)
        if theta is None or tuple(theta.shape) != (options["theta_d_length"],):
            found = "none" if theta is None else f"shape {tuple(theta.shape)}"
            raise AdapterFileError(f"{where}: {THETA_KEY} should be theta_d of length {options['theta_d_length']}; "
                                   f"found {found}")
        if options["save_indices"]:  # the modules, in PEFT's order, are named by their saved indices
            options["targets"] = ",".join(self._saved_order(tensors, options, where))
        else:
            if tensors:
                raise unknown(where, next(iter(tensors)), "not a Uni-LoRA tensor (save_indices is false: only "
                                                          "theta_d is saved)")
            options["targets"], options["layers"] = self._named_targets(peft_config, where)
        return options, {"extras.unilora.unilora_theta_d": theta}

    @staticmethod
    def _named_targets(peft_config: dict[str, Any], where: str) -> tuple[str, str | None]:
        """targets and layers from target_modules (a list of names, matched as PEFT does: whole or dotted suffix)
        and layers_to_transform: without saved indices, the tensors name no module."""
        names = peft_config.get("target_modules")
        if not isinstance(names, list) or not names:
            raise AdapterFileError(f"{where}: target_modules should list module names (a Uni-LoRA adapter without "
                                   "save_indices names its Linears only there; a regular expression is not "
                                   "supported)")
        layers = peft_config.get("layers_to_transform")
        chosen = None if layers is None else ",".join(map(str, sorted({layers} if type(layers) is int else
                                                                      set(layers))))
        return ",".join(names), chosen

    @staticmethod
    def _saved_order(tensors: dict, options: dict[str, Any], where: str) -> list[str]:
        """The adapted modules in the order PEFT assigned their indices, after checking that the saved indices
        are exactly proj_seed's stream cut into A then B per module, and the scales the ones it implies."""
        modules = split_module_keys(tensors, INDEX_LEAVES, where, "a Uni-LoRA")
        r, length = options["r"], options["theta_d_length"]
        flat: dict[str, torch.Tensor] = {}
        for module, parts in modules.items():
            if set(parts) != set(INDEX_LEAVES):
                raise unknown(where, module, f"needs all of {', '.join(INDEX_LEAVES)} (save_indices is true)")
            for leaf in INDEX_LEAVES:
                expect_shape(parts[leaf], 2, f"{where}: {module}.{leaf}", AdapterFileError, "a matrix")
            a, b = parts["unilora_indices_A"], parts["unilora_indices_B"]
            if a.shape[0] != r or b.shape[1] != r or a.is_floating_point() or b.is_floating_point():
                raise unknown(where, module, f"its indices should be whole numbers of shapes (r, in) and (out, r) "
                                             f"for r = {r}")
            flat[module] = torch.cat([a.reshape(-1), b.reshape(-1)]).long()
        stream = generate_index(sum(v.numel() for v in flat.values()), length, options["proj_seed"])
        scales = inverse_sqrt_counts(stream, length)
        order: list[str] = []
        start = 0
        while len(order) < len(flat):
            found = next((m for m, v in flat.items() if m not in order
                          and torch.equal(stream[start:start + v.numel()], v)), None)
            if found is None:
                raise AdapterFileError(f"{where}: the saved unilora_indices are not the ones proj_seed "
                                       f"{options['proj_seed']} draws for these Linears")
            parts = modules[found]
            for leaf in ("A", "B"):
                wanted = scales[parts[f"unilora_indices_{leaf}"].long()]
                if not torch.equal(parts[f"unilora_scales_{leaf}"].float(), wanted):
                    raise unknown(where, f"{found}.unilora_scales_{leaf}", "are not 1 / sqrt(uses) of its indices")
            order.append(found)
            start += flat[found].numel()
        return order

    def peft_check_model(self, base: FrozenBase, options: dict[str, Any], where: str) -> None:
        """The model's Uni-LoRA Linears, rank, theta_d length and seed are the adapter's: the indices are drawn
        from all of them together, so any difference scatters theta_d differently."""
        layers = modules_of(base, UniLoraLinear)
        wanted = [s.module_path for s in self.selected_sites(self.config(
            {"targets": options["targets"], "layers": options.get("layers")}), base)]
        paths = [path for path, _ in layers]
        if paths != wanted:
            raise AdapterFileError(f"{where}: the adapter adapts {','.join(wanted)[:120]}; the model "
                                   f"{','.join(paths)[:120]}")
        if options.get("save_indices") and paths != options["targets"].split(","):
            raise AdapterFileError(f"{where}: the saved indices follow the modules in the order "
                                   f"{options['targets'][:120]}; the model's order is {','.join(paths)[:120]}")
        theta = layers[0][1].theta if layers else None
        drawn = (layers[0][1].r, theta.unilora_theta_d.numel(), theta.proj_seed) if theta is not None else None
        if drawn != (options["r"], options["theta_d_length"], options["proj_seed"]):
            raise AdapterFileError(f"{where}: the adapter has r {options['r']}, theta_d_length "
                                   f"{options['theta_d_length']}, proj_seed {options['proj_seed']}; the model "
                                   f"{drawn}")
