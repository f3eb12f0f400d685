"""PVeRA: VeRA with a probabilistic middle: the frozen random A gives a mean and a log-variance, training samples
between them, inference uses the mean (Fein-Ashley et al., 2025).

Follows PEFT's PVeRA (peft/tuners/pvera): A (2r, largest in) and B (largest out, r) are drawn once with
kaiming_uniform_ from a CPU generator seeded with projection_prng_key, A first; each Linear uses the top-left
slice that fits it. Per Linear lambda_d (2r, starts at d_initial) and lambda_b (out, starts at zeros, so the model
starts at W0) train:

    mu, logvar = split(lambda_d * (A[:, :in] x))          (r each)
    z = mu + eps * exp(logvar / 2) while training,   z = mu at inference
    h = W0 x + b + lambda_b * (B[:out] z)

Merging folds the mean path: ΔW = diag(lambda_b) B diag(lambda_d[:r]) A[:r].
"""

from __future__ import annotations

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
from .mergeable import WeightUpdate
from .method import REPARAMETERISED, Method, MethodCard, TargetedMethod, code_line
from .peft_fields import flag, number, refuse_set, whole
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys, unknown

PAIR_KEYS = ("base_model.pvera_A", "base_model.pvera_B")  # PEFT's keys of the shared pair (adapter name removed)


class PveraProjection(nn.Module):
    """The shared frozen pair (kept in StudioModel.extras), drawn from the key as PEFT draws it."""

    def __init__(self, r: int, in_features: int, out_features: int, key: int) -> None:
        super().__init__()
        self.key = key
        generator = torch.Generator(device="cpu").manual_seed(key)
        a = nn.init.kaiming_uniform_(torch.empty(2 * r, in_features), generator=generator)
        b = nn.init.kaiming_uniform_(torch.empty(out_features, r), generator=generator)
        self.pvera_A = nn.Parameter(a, requires_grad=False)
        self.pvera_B = nn.Parameter(b, requires_grad=False)


class PveraLinear(WeightUpdate):
    """A frozen Linear plus lambda_b * B z, z sampled around the mean lambda_d[:r] * A[:r] x while training."""

    def __init__(self, base_layer: nn.Module, projection: PveraProjection, r: int, dropout: float,
                 d_initial: float, generator_seed: int | None) -> None:
        super().__init__(base_layer)
        self.in_features, self.out_features, self.r = base_layer.in_features, base_layer.out_features, r
        self.__dict__["projection"] = projection  # a plain reference: the pair is registered once, in model.extras
        self.pvera_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.pvera_lambda_b = nn.Parameter(torch.zeros(self.out_features))
        self.pvera_lambda_d = nn.Parameter(torch.full((2 * r,), float(d_initial)))
        self.generator_seed = generator_seed
        # PEFT gives each layer its own CPU generator seeded alike (None: the global one)
        self.generator = None if generator_seed is None or torch.empty(0).device.type == "meta" else \
            torch.Generator().manual_seed(generator_seed)

    def sliced(self) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.projection.pvera_A[:, : self.in_features], self.projection.pvera_B[: self.out_features, :])

    def sample(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """The reparametrised draw while training; the mean at inference (PEFT's sample_at_inference=False)."""
        if not self.training:
            return mu
        std = torch.exp(0.5 * logvar)
        if self.generator is None:
            return mu + torch.randn_like(std) * std
        return mu + torch.randn(std.shape, dtype=std.dtype, generator=self.generator).to(std.device) * std

    def delta_weight(self) -> torch.Tensor:
        """The mean path only, as PEFT merges: diag(lambda_b) B diag(lambda_d[:r]) A[:r]."""
        sliced_A, sliced_B = self.sliced()
        return (self.pvera_lambda_b[:, None] * sliced_B) @ (self.pvera_lambda_d[: self.r, None] * sliced_A[: self.r])

    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        sliced_A, sliced_B = self.sliced()
        mu, logvar = (self.pvera_lambda_d * F.linear(self.pvera_dropout(x), sliced_A)).chunk(2, dim=-1)
        return result + self.pvera_lambda_b * F.linear(self.sample(mu, logvar), sliced_B)  # frozen B, lambda_b


@dataclass
class PveraConfig(MethodConfig):
    r: int = option(256, "rank of the shared random B (A has 2r rows: a mean and a log-variance half)", low=1,
                    high=4096)
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")
    dropout: float = option(0.0, "dropout on the input of A during training (PEFT's pvera_dropout)", low=0.0,
                            high=0.99)
    d_initial: float = option(0.1, "initial value of every lambda_d entry (lambda_b starts at 0)",
                              low=-1e3, high=1e3)
    projection_prng_key: int = option(0, "seed of the shared random A and B (PEFT's projection_prng_key)",
                                      low=0, high=2**31 - 1)
    generator_seed: int = option(-1, "seed of the noise drawn while training, one generator per Linear as PEFT "
                                     "(-1: none, the run's own random stream)", low=-1, high=2**31 - 1)


class PveraMethod(TargetedMethod):
    family_group = REPARAMETERISED
    name = "pvera"
    title = "PVeRA"
    config_cls = PveraConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless PVeRA is already chosen
    targets_default_from = "lora"  # with no targets of its own, the base's LoRA targets (as PEFT)
    example_space = {**Method.example_space, "r": (4, 16), "projection_prng_key": (0, 3), "d_initial": (0.1, 1.0),
                     "generator_seed": (-1, 5)}
    peft_space = {"r": (4, 16), "projection_prng_key": (0, 11), "save_projection": (True, False)}
    peft_type = "PVERA"
    exchange_tolerance = 1e-5  # the bar for outputs equal to PEFT's
    peft_config_fields = {"projection_prng_key": ((int,), "a whole number"),
                          "save_projection": ((bool,), "true or false"),
                          "pvera_dropout": ((int, float), "a number"), "d_initial": ((int, float), "a number"),
                          "init_weights": ((bool,), "true or false"),
                          "sample_at_inference": ((bool,), "true or false"),
                          "generator_seed": ((int, type(None)), "a whole number or null")}
    glyph = "λ~"
    colour = "#117a65"
    card = MethodCard(
        where="beside a frozen Linear: VeRA's frozen random A and B shared by all layers, with A's output read as a "
              "mean and a log-variance",
        intuition="learning a distribution over the random projection's directions, not one point, regularises "
                  "like noise injection while keeping VeRA's tiny vectors",
        advantages="as few parameters as VeRA (out + 2r per Linear); inference and merging use the mean, so they "
                   "cost what VeRA costs",
        limitations="training outputs are random draws; A is twice VeRA's height; needs a high rank like VeRA",
        formula="h = W0 x + Λb B z,  z ~ N(μ, σ²),  [μ, log σ²] = Λd A x  (A, B frozen random, shared; z = μ at "
                "inference)",
    )

    def projection_shape(self, config: PveraConfig, base: FrozenBase) -> tuple[int, int]:
        """(largest in, largest out) over the adapted Linears: the shared pair must fit each of them."""
        sites = self.selected_sites(config, base)
        return max(s.in_features for s in sites), max(s.out_features for s in sites)

    def attach(self, model: StudioModel, config: PveraConfig) -> None:
        fan_in, fan_out = self.projection_shape(config, model.base)
        projection = PveraProjection(config.r, fan_in, fan_out, config.projection_prng_key)
        model.extras["pvera_projection"] = projection
        seed = None if config.generator_seed < 0 else config.generator_seed
        for site in self.selected_sites(config, model.base):
            original = model.base.get_submodule(site.module_path)
            model.swap(site.module_path, PveraLinear(original, projection, config.r, config.dropout,
                                                     config.d_initial, seed))

    def parameter_count(self, config: PveraConfig, base: FrozenBase) -> int:
        return sum(s.out_features + 2 * config.r for s in self.selected_sites(config, base))

    def formula_text(self, config: PveraConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        fan_in, fan_out = self.projection_shape(config, base)
        return (f"sum over {len(sites)} Linear(s) of out + 2r = {self.parameter_count(config, base):,} "
                f"(frozen, shared: A {2 * config.r}x{fan_in} + B {fan_out}x{config.r})")

    def live_formula(self, config: PveraConfig) -> str:
        return f"{self.card.formula}, r = {config.r}"

    def code(self, config: PveraConfig) -> str:
        first, then = (code_line(PveraLinear.update, part) for part in ("chunk(2", "self.sample("))
        return f"{first}  # then: {then}"

    def shape_notes(self, config: PveraConfig, base: FrozenBase, seq_len: int) -> list[str]:
        return [f"{s.id}: lambda_d ({2 * config.r},), lambda_b ({s.out_features},); uses A[:, :{s.in_features}] "
                f"(mean and log-variance halves, {config.r} rows each) and B[:{s.out_features}] of the shared pair"
                for s in self.selected_sites(config, base)]

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: PveraConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        tensors: dict[str, torch.Tensor] = {}
        targets = []
        layers = modules_of(base, PveraLinear)
        for path, module in layers:
            name = hf_name(path, base)
            targets.append(name)
            tensors[f"{KEY_PREFIX}{name}.pvera_lambda_b"] = module.pvera_lambda_b
            tensors[f"{KEY_PREFIX}{name}.pvera_lambda_d"] = module.pvera_lambda_d
        projection = layers[0][1].projection
        tensors[PAIR_KEYS[0]], tensors[PAIR_KEYS[1]] = projection.pvera_A, projection.pvera_B
        settings = {"r": config.r, "target_modules": targets, "projection_prng_key": config.projection_prng_key,
                    "save_projection": True, "pvera_dropout": config.dropout, "d_initial": config.d_initial,
                    "fan_in_fan_out": any(layer.fan_in_fan_out for _, layer in layers), "bias": "none",
                    "init_weights": True, "layers_to_transform": None, "layers_pattern": None,
                    "sample_at_inference": False,
                    "generator_seed": None if config.generator_seed < 0 else config.generator_seed}
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        if peft_config.get("bias", "none") != "none":
            raise AdapterFileError(f"{where}: bias {peft_config.get('bias')!r} trains base biases too; only 'none'")
        refuse_set(peft_config, where, {"sample_at_inference": "its predictions are random draws; the studio "
                                                               "predicts with the mean"})
        flag(peft_config, "fan_in_fan_out", where, False)  # PEFT sets it from the layer type itself
        r = whole(peft_config, "r", where, 256, high=4096)
        key = whole(peft_config, "projection_prng_key", where, 0, low=0)
        seed = peft_config.get("generator_seed")
        if seed is not None and not 0 <= seed < 2**31:
            raise AdapterFileError(f"{where}: generator_seed must be null or a whole number in [0, 2^31) "
                                   f"(got {seed!r})")
        tensors = dict(tensors)
        pair = tensors.pop(PAIR_KEYS[0], None), tensors.pop(PAIR_KEYS[1], None)
        if (pair[0] is None) != (pair[1] is None):
            raise AdapterFileError(f"{where}: {PAIR_KEYS[0]} and {PAIR_KEYS[1]} are saved together or not at all")
        if pair[0] is not None:  # save_projection: the pair must be the one the key draws
            expect_shape(pair[0], 2, f"{where}: pvera_A", AdapterFileError, f"({2 * r}, in)")
            expect_shape(pair[1], 2, f"{where}: pvera_B", AdapterFileError, f"(out, {r})")
            if pair[0].shape[0] != 2 * r or pair[1].shape[1] != r:
                raise AdapterFileError(f"{where}: pvera_A / pvera_B have {pair[0].shape[0]} rows / "
                                       f"{pair[1].shape[1]} columns, r is {r} (2r rows / r columns)")
            drawn = PveraProjection(r, pair[0].shape[1], pair[1].shape[0], key)
            if not (torch.equal(drawn.pvera_A, pair[0].float()) and torch.equal(drawn.pvera_B, pair[1].float())):
                raise AdapterFileError(f"{where}: the saved pvera_A / pvera_B are not the ones projection_prng_key "
                                       f"{key} draws")
        studio: dict[str, torch.Tensor] = {}
        for module, parts in split_module_keys(tensors, ("pvera_lambda_b", "pvera_lambda_d"), where,
                                               "a PVeRA").items():
            for leaf, tensor in parts.items():
                expect_shape(tensor, 1, f"{where}: {module}.{leaf}", AdapterFileError, "a vector")
                if leaf == "pvera_lambda_d" and tensor.shape[0] != 2 * r:
                    raise unknown(where, f"{module}.{leaf}", f"has {tensor.shape[0]} entries, 2r is {2 * r}")
                studio[f"{module}.{leaf}"] = tensor
        options = {"r": r, "projection_prng_key": key,
                   "dropout": number(peft_config, "pvera_dropout", where, 0.0, 0.0, 1.0, high_open=True),
                   "d_initial": number(peft_config, "d_initial", where, 0.1, -1e3, 1e3),
                   "generator_seed": -1 if seed is None else seed}
        return options, studio

    def peft_check_model(self, base: FrozenBase, options: dict[str, Any], where: str) -> None:
        for path, layer in modules_of(base, PveraLinear):
            if (layer.r, layer.projection.key) != (options["r"], options["projection_prng_key"]):
                raise AdapterFileError(f"{where}: the adapter has r {options['r']} and projection_prng_key "
                                       f"{options['projection_prng_key']}; the model's {path} {layer.r} and "
                                       f"{layer.projection.key}")
