"""VeRA: frozen random A and B shared by every adapted Linear, two trainable vectors per Linear
(Kopiczko et al., 2024).

Follows PEFT's VeRA (peft/tuners/vera): A (r, largest in) and B (largest out, r) are drawn once
with Kaiming-uniform bounds from a CPU generator seeded with `projection_prng_key`, A first; each
Linear uses the top-left slice that fits it. lambda_b starts at zeros (so the model starts at W0)
and lambda_d at d_initial:

    h = W0 x + b + lambda_b * (B[:out] (lambda_d * (A[:, :in] x)))
"""

from __future__ import annotations

import math
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
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys


def kaiming_uniform(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """PEFT's `_kaiming_init`: U(-b, b) with b = sqrt(3) * sqrt(2) / sqrt(fan_in), fan_in = shape[1]."""
    bound = math.sqrt(3.0) * math.sqrt(2) / math.sqrt(shape[1])
    return torch.empty(shape).uniform_(-bound, bound, generator=generator)


class VeraProjection(nn.Module):
    """The shared random pair, frozen: parameters that never train, owned by the method (the census shows them
    as frozen method tensors); drawn from the key, so an adapter file needs only the vectors."""

    def __init__(self, r: int, in_features: int, out_features: int, key: int) -> None:
        super().__init__()
        generator = torch.Generator(device="cpu").manual_seed(key)
        self.vera_A = nn.Parameter(kaiming_uniform((r, in_features), generator), requires_grad=False)
        self.vera_B = nn.Parameter(kaiming_uniform((out_features, r), generator), requires_grad=False)


class VeraLinear(WeightUpdate):
    """A frozen Linear plus lambda_b * B (lambda_d * A x) with the shared frozen A and B."""

    def __init__(self, base_layer: nn.Linear, projection: VeraProjection, r: int, dropout: float,
                 d_initial: float) -> None:
        super().__init__(base_layer)
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        # A plain reference, not a submodule: the shared pair is registered once, in model.extras.
        self.__dict__["projection"] = projection
        self.vera_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.vera_lambda_b = nn.Parameter(torch.zeros(self.out_features))
        self.vera_lambda_d = nn.Parameter(torch.full((r,), float(d_initial)))

    def delta_weight(self) -> torch.Tensor:
        """diag(lambda_b) B diag(lambda_d) A, as PEFT's VeRA merges it."""
        sliced_A = self.projection.vera_A[:, : self.in_features]
        sliced_B = self.projection.vera_B[: self.out_features, :]
        return (self.vera_lambda_b[:, None] * sliced_B) @ (self.vera_lambda_d[:, None] * sliced_A)

    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        sliced_A = self.projection.vera_A[:, : self.in_features]
        sliced_B = self.projection.vera_B[: self.out_features, :]
        hidden = self.vera_lambda_d * F.linear(self.vera_dropout(x), sliced_A)  # frozen A, trainable lambda_d
        return result + self.vera_lambda_b * F.linear(hidden, sliced_B)  # frozen B, trainable lambda_b


@dataclass
class VeraConfig(MethodConfig):
    r: int = option(256, "rank of the shared random A and B (only r scalars per Linear train, so it can be high)",
                    low=1, high=4096)
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")
    dropout: float = option(0.0, "dropout on the input of A during training", low=0.0, high=0.99)
    d_initial: float = option(0.1, "initial value of every lambda_d entry (lambda_b starts at 0)",
                              low=-1e3, high=1e3)
    projection_prng_key: int = option(0, "seed of the shared random A and B (PEFT's projection_prng_key)",
                                      low=0, high=2**31 - 1)


class VeraMethod(TargetedMethod):
    name = "vera"
    family_group = REPARAMETERISED
    title = "VeRA"
    config_cls = VeraConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless VeRA is already chosen
    targets_default_from = "lora"  # with no targets of its own, the base's LoRA targets (as PEFT)
    example_space = {**Method.example_space, "r": (8, 32), "projection_prng_key": (0, 3), "d_initial": (0.1, 1.0)}
    peft_space = {"r": (8, 16), "projection_prng_key": (0, 11), "save_projection": (True, False)}
    peft_type = "VERA"
    peft_config_fields = {"projection_prng_key": ((int,), "a whole number"),
                          "save_projection": ((bool,), "true or false"),
                          "vera_dropout": ((int, float), "a number"), "d_initial": ((int, float), "a number")}
    glyph = "λ"
    colour = "#16a085"
    card = MethodCard(
        where="beside a frozen Linear: frozen random A and B shared by all layers, two trainable vectors per Linear",
        intuition="random projections are already rich; learn only which directions to use (d) and how loud (b)",
        advantages="far fewer parameters than LoRA (out + r per Linear); the shared pair is regenerated from a seed",
        limitations="needs a high rank to be expressive; each step still runs the full r-wide random projections",
        formula="h = W0 x + Λb B Λd A x  (A, B frozen random, shared)",
    )

    def projection_shape(self, config: VeraConfig, base: FrozenBase) -> tuple[int, int]:
        """(largest in, largest out) over the adapted Linears: the shared pair must fit each of them."""
        sites = self.selected_sites(config, base)
        return max(s.in_features for s in sites), max(s.out_features for s in sites)

    def attach(self, model: StudioModel, config: VeraConfig) -> None:
        fan_in, fan_out = self.projection_shape(config, model.base)
        projection = VeraProjection(config.r, fan_in, fan_out, config.projection_prng_key)
        model.extras["vera_projection"] = projection
        for site in self.selected_sites(config, model.base):
            original = model.base.get_submodule(site.module_path)
            model.swap(site.module_path, VeraLinear(original, projection, config.r, config.dropout, config.d_initial))

    def parameter_count(self, config: VeraConfig, base: FrozenBase) -> int:
        return sum(s.out_features + config.r for s in self.selected_sites(config, base))

    def formula_text(self, config: VeraConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        fan_in, fan_out = self.projection_shape(config, base)
        return (f"sum over {len(sites)} Linear(s) of out + r = {self.parameter_count(config, base):,} "
                f"(frozen, shared: A {config.r}x{fan_in} + B {fan_out}x{config.r})")

    def live_formula(self, config: VeraConfig) -> str:
        return f"{self.card.formula}, r = {config.r}"

    def code(self, config: VeraConfig) -> str:
        first, then = (code_line(VeraLinear.update, part) for part in ("vera_lambda_d *", "vera_lambda_b *"))
        return f"{first}  # then: {then}"

    def shape_notes(self, config: VeraConfig, base: FrozenBase, seq_len: int) -> list[str]:
        return [f"{s.id}: lambda_d ({config.r},), lambda_b ({s.out_features},); uses A[:, :{s.in_features}] and "
                f"B[:{s.out_features}] of the shared frozen pair" for s in self.selected_sites(config, base)]

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: VeraConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        tensors: dict[str, torch.Tensor] = {}
        targets = []
        projection = None
        for path, module in modules_of(base, VeraLinear):
            name = hf_name(path, base)
            targets.append(name)
            tensors[f"{KEY_PREFIX}{name}.vera_lambda_b"] = module.vera_lambda_b
            tensors[f"{KEY_PREFIX}{name}.vera_lambda_d"] = module.vera_lambda_d
            projection = module.projection
        if projection is not None:  # save_projection: the pair travels too (PEFT's default)
            tensors["base_model.vera_A"], tensors["base_model.vera_B"] = projection.vera_A, projection.vera_B
        settings = {"r": config.r, "target_modules": targets, "projection_prng_key": config.projection_prng_key,
                    "save_projection": True, "vera_dropout": config.dropout, "d_initial": config.d_initial,
                    "fan_in_fan_out": False, "bias": "none", "init_weights": True, "layers_to_transform": None}
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        r, key = peft_config.get("r"), peft_config.get("projection_prng_key", 0)
        if not isinstance(r, int) or isinstance(r, bool) or r < 1:
            raise AdapterFileError(f"{where}: r must be a positive integer (got {r!r})")
        most = int(VeraConfig.__dataclass_fields__["projection_prng_key"].metadata["high"])
        if not isinstance(key, int) or isinstance(key, bool) or not 0 <= key <= most:  # before drawing with it
            raise AdapterFileError(f"{where}: projection_prng_key must be a whole number in [0, {most}] "
                                   f"(got {str(key)[:30]})")
        if peft_config.get("bias", "none") != "none":
            raise AdapterFileError(f"{where}: bias {peft_config.get('bias')!r} trains base biases too; only 'none'")
        tensors = dict(tensors)
        pair = tensors.pop("base_model.vera_A", None), tensors.pop("base_model.vera_B", None)
        if pair[0] is not None and pair[1] is not None:
            expect_shape(pair[0], 2, f"{where}: vera_A", AdapterFileError, f"({r}, in)")
            expect_shape(pair[1], 2, f"{where}: vera_B", AdapterFileError, f"(out, {r})")
            if pair[0].shape[0] != r or pair[1].shape[1] != r:
                raise AdapterFileError(f"{where}: vera_A / vera_B have rank {pair[0].shape[0]} / {pair[1].shape[1]}, "
                                       f"r is {r}")  # saved projections must be the key's, which the studio draws
            drawn = VeraProjection(r, pair[0].shape[1], pair[1].shape[0], key)
            if not (torch.equal(drawn.vera_A, pair[0].float()) and torch.equal(drawn.vera_B, pair[1].float())):
                raise AdapterFileError(f"{where}: the saved vera_A / vera_B are not the ones projection_prng_key "
                                       f"{key} draws")
        studio: dict[str, torch.Tensor] = {}
        for module, parts in split_module_keys(tensors, ("vera_lambda_b", "vera_lambda_d"), where, "a VeRA").items():
            for leaf, tensor in parts.items():
                expect_shape(tensor, 1, f"{where}: {module}.{leaf}", AdapterFileError, "a vector")
                if leaf == "vera_lambda_d" and tensor.shape[0] != r:
                    raise AdapterFileError(f"{where}: {module}.vera_lambda_d has {tensor.shape[0]} entries, r is {r}")
                studio[f"{module}.{leaf}"] = tensor
        dropout, d_initial = float(peft_config.get("vera_dropout") or 0.0), float(peft_config.get("d_initial", 0.1))
        if not 0 <= dropout < 1 or not math.isfinite(d_initial):
            raise AdapterFileError(f"{where}: vera_dropout must be in [0, 1) and d_initial finite")
        options = {"r": r, "projection_prng_key": key, "dropout": dropout, "d_initial": d_initial}
        return options, studio
