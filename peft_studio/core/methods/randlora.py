"""RandLoRA: a full-rank update from frozen random low-rank bases shared by every Linear; only small diagonal
scalings train (Albert et al., 2025).

Follows PEFT's RandLoRA (peft/tuners/randlora): one frozen pair drawn from a CPU generator seeded with
projection_prng_key, sized by the largest adapted Linear (min_dim = the smaller side, max_dim = the larger):
A (r, 1, min_dim) and B (max_dim, n, r), with n = ceil(min_dim / r) bases so that n r covers the full rank. PEFT
draws them Kaiming-uniform in bfloat16 (or with `sparse` / `very_sparse`, as sparse +-1 projections) and divides each
by its standard deviation; the studio draws the same numbers. Per Linear, lambda (r x n, zeros, so the model starts
at W0) and gamma (n x min(in, out), 1 / min(in, out)) train:

    h = W0 x + b + (alpha / r) B' (lambda * A * gamma) x      (the sides swapped when in > out)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR, Site
from ..errors import AdapterFileError, ConfigError
from ..files.safe_io import expect_shape
from ..model.studio_model import StudioModel
from .config import MethodConfig, option
from .mergeable import WeightUpdate
from .method import REPARAMETERISED, Method, MethodCard, TargetedMethod, code_line
from .peft_fields import flag, number, whole
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys, unknown

SHARED_KEYS = ("base_model.randlora_A", "base_model.randlora_B")  # PEFT's keys of the shared pair


def basis_dtype() -> torch.dtype:
    """The dtype PEFT draws the bases in: bfloat16 where accelerate reports it available (every CPU; a CUDA device
    that supports it), else float16."""
    if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def bases_count(min_dim: int, r: int) -> int:
    """ceil(min_dim / r): enough rank-r bases to reach full rank (PEFT's num_bases)."""
    return math.ceil(min_dim / r)


class RandomBases(nn.Module):
    """The shared frozen pair, drawn from the key exactly as PEFT draws it (kept in StudioModel.extras)."""

    def __init__(self, r: int, min_dim: int, max_dim: int, key: int, sparse: bool, very_sparse: bool) -> None:
        super().__init__()
        self.key, self.sparse, self.very_sparse = key, sparse and not very_sparse, very_sparse
        count = bases_count(min_dim, r)
        if torch.empty(0).device.type == "meta":  # a shapes-only model: nothing to draw
            self.randlora_A = nn.Parameter(torch.empty(r, 1, min_dim), requires_grad=False)
            self.randlora_B = nn.Parameter(torch.empty(max_dim, count, r), requires_grad=False)
            return
        generator = torch.Generator(device="cpu").manual_seed(key)
        if sparse or very_sparse:  # sparse random projections: +-1 with probability 1/(2s) each, 0 otherwise
            sparsity = math.sqrt(min_dim) if very_sparse else 3
            a = _sparse(torch.rand((r, 1, min_dim), generator=generator, device="cpu"), sparsity)
            b = _sparse(torch.rand((max_dim, count, r), generator=generator, device="cpu"), sparsity)
        else:
            a = _kaiming((r, 1, min_dim), generator)
            b = torch.cat([_kaiming((max_dim, 1, r), generator) for _ in range(count)], dim=1)
        self.randlora_A = nn.Parameter((a / a.std()).float(), requires_grad=False)
        self.randlora_B = nn.Parameter((b / b.std()).float(), requires_grad=False)


def _kaiming(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    tensor = torch.empty(shape, dtype=basis_dtype(), device="cpu")
    return nn.init.kaiming_uniform_(tensor, a=math.sqrt(5), generator=generator)


def _sparse(uniform: torch.Tensor, sparsity: float) -> torch.Tensor:
    out = torch.zeros(uniform.shape, device="cpu")
    out[uniform < 1 / (2 * sparsity)] = -1
    out[uniform > 1 - 1 / (2 * sparsity)] = 1
    return out


class RandLoraLinear(WeightUpdate):
    """A frozen Linear plus (alpha / r) times the shared bases scaled by this Linear's lambda and gamma."""

    def __init__(self, base_layer: nn.Module, bases: RandomBases, r: int, alpha: float, dropout: float) -> None:
        super().__init__(base_layer)
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.r, self.scaling = r, alpha / r
        self.min_dim, self.max_dim = min(self.in_features, self.out_features), max(self.in_features,
                                                                                    self.out_features)
        self.num_bases = bases_count(self.min_dim, r)
        self.__dict__["bases"] = bases  # a plain reference: the pair is registered once, in model.extras
        self.randlora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.randlora_lambda = nn.Parameter(torch.zeros(r, self.num_bases))  # zeros: the model starts at W0
        self.randlora_gamma = nn.Parameter(torch.full((self.num_bases, self.min_dim), 1 / self.min_dim))

    def scaled_bases(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(first, second): x -> second (first x) has this Linear's shape (PEFT's get_scaled_bases)."""
        sliced_a = self.bases.randlora_A[:, : self.num_bases, : self.min_dim]
        sliced_b = self.bases.randlora_B[: self.max_dim, : self.num_bases, :]
        update_b = sliced_b.flatten(start_dim=1)
        update_a = (self.randlora_lambda[:, :, None] * sliced_a * self.randlora_gamma[None]).flatten(end_dim=1)
        if self.min_dim == self.in_features:
            return update_a, update_b
        return update_b.T, update_a.T

    def delta_weight(self) -> torch.Tensor:
        first, second = self.scaled_bases()
        return (second @ first) * self.scaling

    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        first, second = self.scaled_bases()
        return result + F.linear(F.linear(self.randlora_dropout(x), first), second) * self.scaling  # the bases


@dataclass
class RandLoraConfig(MethodConfig):
    r: int = option(32, "rank of each random basis (ceil(min(in, out) / r) bases per Linear reach full rank)",
                    low=1, high=4096)
    alpha: float = option(640.0, "scale numerator: the update is multiplied by alpha / r (PEFT's randlora_alpha)",
                          low=1e-6, high=1e6)
    dropout: float = option(0.0, "dropout on the input during training (PEFT's randlora_dropout)", low=0.0,
                            high=0.99)
    projection_prng_key: int = option(0, "seed of the shared random bases", low=0, high=2**31 - 1)
    sparse: bool = option(False, "sparse +-1 bases (1/6 each), 0 elsewhere")
    very_sparse: bool = option(False, "very sparse +-1 bases (1/(2 sqrt(min_dim)) each)")
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")


class RandLoraMethod(TargetedMethod):
    name = "randlora"
    family_group = REPARAMETERISED
    title = "RandLoRA"
    config_cls = RandLoraConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless RandLoRA is already chosen
    targets_default_from = "lora"
    # scales alpha / r up to 8 (PEFT's default 640 / 32 is 20): perturbed at random rather than trained, larger
    # updates saturate the encoder (see perturbation)
    example_space = {**Method.example_space, "r": (8, 32), "alpha": (16.0, 64.0), "projection_prng_key": (0, 5),
                     "sparse": (False, True)}
    peft_space = {"r": (8, 32), "randlora_alpha": (16, 64), "projection_prng_key": (0, 3),
                  "save_projection": (True, False), "sparse": (False, True), "very_sparse": (False, True)}
    peft_type = "RANDLORA"
    exchange_tolerance = 1e-5  # the bar for outputs equal to PEFT's
    # lambda x gamma x alpha/r (20) through full-rank bases: a 0.1 step makes each Linear's output ~100x its input
    # (the layers still agree with PEFT's bit for bit; the saturated encoder does not to 1e-5)
    perturbation = 0.01
    peft_config_fields = {"projection_prng_key": ((int,), "a whole number"),
                          "save_projection": ((bool,), "true or false"), "sparse": ((bool,), "true or false"),
                          "very_sparse": ((bool,), "true or false"), "randlora_dropout": ((int, float), "a number"),
                          "randlora_alpha": ((int, float), "a number"), "init_weights": ((bool,), "true or false")}
    glyph = "RB"
    colour = "#148f77"
    card = MethodCard(
        where="beside a frozen Linear: frozen random bases shared by every Linear, scaled by two small trainable "
              "matrices per Linear",
        intuition="enough random rank-r bases span the whole space: learn only how much of each to use, and the "
                  "update can be full-rank for few parameters",
        advantages="full-rank updates (unlike LoRA's rank r); the bases regenerate from a seed; mergeable into W0",
        limitations="every step multiplies through all ceil(min_dim / r) bases: slower than LoRA; the count "
                    "grows with min(in, out)",
        formula="h = W0 x + (alpha / r) B (Λ A Γ) x  (A, B frozen random, shared)",
    )

    def projection_dims(self, config: RandLoraConfig, sites: list[Site]) -> tuple[int, int]:
        """(min_dim, max_dim) of the element-wise largest (out, in) over the adapted Linears (PEFT's _find_dim)."""
        largest_out, largest_in = max(s.out_features for s in sites), max(s.in_features for s in sites)
        return min(largest_out, largest_in), max(largest_out, largest_in)

    def validate(self, config: RandLoraConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        if config.sparse and config.very_sparse:
            raise ConfigError("sparse and very_sparse are two kinds of bases: choose one (PEFT uses very_sparse)")

    def attach(self, model: StudioModel, config: RandLoraConfig) -> None:
        sites = self.selected_sites(config, model.base)
        min_dim, max_dim = self.projection_dims(config, sites)
        bases = RandomBases(config.r, min_dim, max_dim, config.projection_prng_key, config.sparse, config.very_sparse)
        model.extras["randlora_bases"] = bases
        for site in sites:
            original = model.base.get_submodule(site.module_path)
            model.swap(site.module_path, RandLoraLinear(original, bases, config.r, config.alpha, config.dropout))

    def parameter_count(self, config: RandLoraConfig, base: FrozenBase) -> int:
        total = 0
        for site in self.selected_sites(config, base):
            low = min(site.in_features, site.out_features)
            total += bases_count(low, config.r) * (config.r + low)
        return total

    def formula_text(self, config: RandLoraConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        min_dim, max_dim = self.projection_dims(config, sites)
        count = bases_count(min_dim, config.r)
        return (f"sum over {len(sites)} Linear(s) of ceil(min(in, out) / r) x (r + min(in, out)) = "
                f"{self.parameter_count(config, base):,} (frozen, shared: A {config.r}x{min_dim}, B {max_dim}x{count}x"
                f"{config.r})")

    def live_formula(self, config: RandLoraConfig) -> str:
        return self.card.formula.replace("(alpha / r)", f"({config.alpha:g}/{config.r} = {config.alpha / config.r:g})")

    def code(self, config: RandLoraConfig) -> str:
        return f"{code_line(RandLoraLinear.scaled_bases, 'randlora_lambda[:, :, None]')}  # then: " \
               f"{code_line(RandLoraLinear.update, 'F.linear')}"

    def shape_notes(self, config: RandLoraConfig, base: FrozenBase, seq_len: int) -> list[str]:
        notes = []
        for s in self.selected_sites(config, base):
            low = min(s.in_features, s.out_features)
            count = bases_count(low, config.r)
            notes.append(f"{s.id}: {count} bases of rank {config.r}; lambda {config.r}x{count}, gamma {count}x{low}")
        return notes

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: RandLoraConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        tensors: dict[str, torch.Tensor] = {}
        targets = []
        layers = modules_of(base, RandLoraLinear)
        for path, layer in layers:
            name = hf_name(path, base)
            targets.append(name)
            tensors[f"{KEY_PREFIX}{name}.randlora_lambda"] = layer.randlora_lambda
            tensors[f"{KEY_PREFIX}{name}.randlora_gamma"] = layer.randlora_gamma
            tensors[f"{KEY_PREFIX}{name}.randlora_A"] = layer.bases.randlora_A  # PEFT saves each layer's copy too
            tensors[f"{KEY_PREFIX}{name}.randlora_B"] = layer.bases.randlora_B
        bases = layers[0][1].bases
        tensors[SHARED_KEYS[0]], tensors[SHARED_KEYS[1]] = bases.randlora_A, bases.randlora_B
        settings = {"r": config.r, "randlora_alpha": config.alpha, "randlora_dropout": config.dropout,
                    "projection_prng_key": config.projection_prng_key, "save_projection": True,
                    "sparse": config.sparse, "very_sparse": config.very_sparse, "target_modules": targets,
                    "fan_in_fan_out": any(layer.fan_in_fan_out for _, layer in layers), "bias": "none",
                    "init_weights": True, "layers_to_transform": None, "layers_pattern": None}
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        if peft_config.get("bias", "none") != "none":
            raise AdapterFileError(f"{where}: bias {peft_config.get('bias')!r} trains base biases too; only 'none'")
        # PEFT sets fan_in_fan_out from the layer type itself (True on a Conv1D, False on a Linear): a
        # well-typed flag changes nothing the base does not already decide
        flag(peft_config, "fan_in_fan_out", where, False)
        options = {"r": whole(peft_config, "r", where, 32, high=4096),
                   "alpha": number(peft_config, "randlora_alpha", where, 640.0, 1e-6, 1e6),
                   "dropout": number(peft_config, "randlora_dropout", where, 0.0, 0.0, 1.0, high_open=True),
                   "projection_prng_key": whole(peft_config, "projection_prng_key", where, 0, low=0,
                                                high=2**31 - 1),
                   "sparse": flag(peft_config, "sparse", where, False),
                   "very_sparse": flag(peft_config, "very_sparse", where, False)}
        if options["sparse"] and options["very_sparse"]:
            options["sparse"] = False  # PEFT checks very_sparse first: those are the bases it drew
        tensors = dict(tensors)
        saved = [tensors.pop(key, None) for key in SHARED_KEYS]
        studio: dict[str, torch.Tensor] = {}
        copies: list[tuple[str, torch.Tensor, torch.Tensor]] = []
        leaves = ("randlora_lambda", "randlora_gamma", "randlora_A", "randlora_B")
        for module, parts in split_module_keys(tensors, leaves, where, "a RandLoRA").items():
            for leaf in ("randlora_lambda", "randlora_gamma"):
                if leaf not in parts:
                    raise unknown(where, module, f"has no {leaf}")
                expect_shape(parts[leaf], 2, f"{where}: {module}.{leaf}", AdapterFileError, "a matrix")
                studio[f"{module}.{leaf}"] = parts[leaf]
            if parts["randlora_lambda"].shape[0] != options["r"]:
                raise unknown(where, f"{module}.randlora_lambda", f"has {parts['randlora_lambda'].shape[0]} rows, "
                                                                  f"r is {options['r']}")
            if "randlora_A" in parts or "randlora_B" in parts:
                copies.append((module, parts.get("randlora_A"), parts.get("randlora_B")))
        self._check_saved_bases(options, saved, copies, where)
        return options, studio

    @staticmethod
    def _check_saved_bases(options: dict[str, Any], saved: list, copies: list, where: str) -> None:
        """Saved bases must be the ones the key draws (the studio draws them; it does not load them)."""
        pairs = [("the shared bases", *saved)] if saved[0] is not None or saved[1] is not None else []
        pairs += [(f"{module}'s copy", a, b) for module, a, b in copies]
        for what, a, b in pairs:
            if a is None or b is None or a.dim() != 3 or b.dim() != 3 or a.shape[0] != options["r"]:
                raise AdapterFileError(f"{where}: {what} of randlora_A / randlora_B are incomplete or not of rank "
                                       f"{options['r']}")
            drawn = RandomBases(options["r"], a.shape[2], b.shape[0], options["projection_prng_key"],
                                options["sparse"], options["very_sparse"])
            if not (torch.equal(drawn.randlora_A, a.float()) and torch.equal(drawn.randlora_B, b.float())):
                raise AdapterFileError(f"{where}: {what} of randlora_A / randlora_B are not the ones "
                                       f"projection_prng_key {options['projection_prng_key']} draws")

    def peft_check_model(self, base: FrozenBase, options: dict[str, Any], where: str) -> None:
        for path, layer in modules_of(base, RandLoraLinear):
            if not math.isclose(layer.scaling, options["alpha"] / options["r"], rel_tol=1e-6):
                raise AdapterFileError(f"{where}: the adapter's scale alpha / r = {options['alpha']:g}/"
                                       f"{options['r']}; the model's {path} uses {layer.scaling:g}")
            drawn = (layer.bases.key, layer.bases.sparse, layer.bases.very_sparse)
            if drawn != (options["projection_prng_key"], options["sparse"], options["very_sparse"]):
                raise AdapterFileError(f"{where}: the adapter's bases come from projection_prng_key "
                                       f"{options['projection_prng_key']} (sparse {options['sparse']}, very_sparse "
                                       f"{options['very_sparse']}); the model's from {drawn}")
