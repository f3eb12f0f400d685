"""TinyLoRA: a tiny trained vector v, projected by fixed random tensors into an r x r matrix between W0's own top
singular directions (Morris et al., 2026, "Learning to Reason in 13 Parameters"; LoRA-XS with R = Σ v_i P_i).

Follows PEFT's TinyLora (peft/tuners/tinylora): for each adapted Linear (or Embedding table) W0 = U S Vh (float32
SVD, computed once at attach: one full decomposition per adapted weight), A = sqrt(S_r) Vh_r (r x in) and
B = U_r sqrt(S_r) (out x r) are frozen, r capped at the weight's smaller side. P (u x r x r) is drawn N(0, 1 / r)
from a generator seeded with projection_seed + the module's position among the adapted modules (the model's
module order). v (u numbers) trains; with weight_tying t, round(n (1 - t)) groups of consecutive modules share one
v. Then

    R = Σ_i v_i P_i,   h = W0 x + b + B R A x          (an Embedding: row B[id] R A added to the looked-up row)

v starts at zero (PEFT's init_weights=True), so the model starts at W0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..bases.frozen import FrozenBase
from ..bases.sites import EMBEDDING, LINEAR, Site
from ..errors import AdapterFileError
from ..files.safe_io import expect_shape
from ..model.studio_model import StudioModel
from .config import MethodConfig, option
from .mergeable import WeightUpdate
from .method import REPARAMETERISED, Method, MethodCard, TargetedMethod, code_line
from .peft_fields import flag, number, refuse_set, whole
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys, unknown

V_PREFIX = "base_model.tinylora_v."  # PEFT's keys of the shared vectors, one per group (adapter name removed)
LEAVES = ("tinylora_A", "tinylora_B", "tinylora_P")
INITS = ("zeros", "uniform")  # PEFT's init_weights true (v = 0: the model starts at W0) and "uniform"


def groups(count: int, weight_tying: float) -> tuple[int, int]:
    """(number of v vectors, modules per group) for `count` adapted modules: PEFT's rounding."""
    number_of_groups = max(1, round(count * (1.0 - weight_tying)))
    return number_of_groups, max(1, count // number_of_groups)


def group_of(position: int, count: int, weight_tying: float) -> int:
    number_of_groups, size = groups(count, weight_tying)
    return min(position // size, number_of_groups - 1)


def projection(u: int, r: int, seed: int) -> torch.Tensor:
    """P (u x r x r), N(0, 1 / r) entries drawn from a CPU generator seeded with `seed`, as PEFT draws it."""
    generator = torch.Generator().manual_seed(seed)
    return torch.normal(mean=0.0, std=1.0 / (r**0.5), size=(u, r, r), generator=generator, device="cpu")


class TinyVectors(nn.Module):
    """The trained vectors, one per group of modules (kept in StudioModel.extras)."""

    def __init__(self, count: int, u: int, init: str, bound: float) -> None:
        super().__init__()
        self.tinylora_v = nn.ParameterDict({str(i): nn.Parameter(torch.zeros(u)) for i in range(count)})
        if init == "uniform":
            with torch.no_grad():
                for v in self.tinylora_v.values():
                    v.uniform_(-bound, bound)


class TinyLoraLayer(WeightUpdate):
    """A frozen Linear (or Embedding) plus B R A, A and B from W0's SVD, R = Σ v_i P_i from its group's v."""

    def __init__(self, base_layer: nn.Module, vectors: TinyVectors, group: int, r: int, u: int, seed: int,
                 dropout: float) -> None:
        super().__init__(base_layer)
        self.embedding = isinstance(base_layer, nn.Embedding)
        self.__dict__["vectors"] = vectors  # a plain reference: the vectors are registered once, in model.extras
        self.group = group
        self.tinylora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        weight = self.weight_out_in()  # [out, in]; an Embedding's table [rows, width]
        rank = min(r, *weight.shape)
        if weight.device.type == "meta":  # a shapes-only model: nothing to decompose or draw
            a, b, p = torch.empty(rank, weight.shape[1]), torch.empty(weight.shape[0], rank), torch.empty(u, rank, rank)
        else:
            a, b = svd_factors(weight.detach(), rank)
            p = projection(u, rank, seed)
        self.r = rank
        self.tinylora_A = nn.Parameter(a, requires_grad=False)
        self.tinylora_B = nn.Parameter(b, requires_grad=False)
        self.tinylora_P = nn.Parameter(p, requires_grad=False)

    def v(self) -> torch.Tensor:
        return self.vectors.tinylora_v[str(self.group)]

    def R(self) -> torch.Tensor:  # noqa: N802 - the paper's and PEFT's name
        return torch.einsum("i,ijk->jk", self.v(), self.tinylora_P)  # R = Σ_i v_i P_i

    def delta_weight(self) -> torch.Tensor:
        return self.tinylora_B @ self.R() @ self.tinylora_A  # [out, in] (an Embedding's [rows, width])

    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        if self.embedding:  # PEFT's Embedding: the id's row of B, then R, then A (dropout after the lookup)
            return result + self.tinylora_dropout(F.embedding(x, self.tinylora_B)) @ self.R() @ self.tinylora_A
        hidden = F.linear(F.linear(self.tinylora_dropout(x), self.tinylora_A), self.R())
        return result + F.linear(hidden, self.tinylora_B)  # B R A x, only v trains


def svd_factors(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sqrt(S_r) Vh_r, U_r sqrt(S_r)) of the float32 SVD of W0, as PEFT's _init_svd computes them."""
    dtype = weight.dtype
    U, S, Vh = torch.linalg.svd(weight.float(), full_matrices=False)  # noqa: N806 - the decomposition's names
    root = torch.sqrt(S[:rank].to(dtype))
    return (root.unsqueeze(1) * Vh[:rank, :].to(dtype)).contiguous(), \
        (U[:, :rank].to(dtype) * root.unsqueeze(0)).contiguous()


@dataclass
class TinyLoraConfig(MethodConfig):
    r: int = option(2, "how many of W0's top singular directions the update moves in (frozen; capped at the "
                       "weight's smaller side)", low=1, high=4096)
    u: int = option(64, "length of each trained vector v", low=1, high=2**20)
    weight_tying: float = option(0.0, "how far modules share v: 0 each its own, 1 one v for all (PEFT's rounding "
                                      "of n (1 - weight_tying) groups)", low=0.0, high=1.0)
    projection_seed: int = option(42, "seed of the fixed random P; module i uses projection_seed + i", low=0,
                                  high=2**31 - 2**20)
    init_weights: str = option("zeros", "how v starts: zeros (PEFT's true: the model starts at W0) or uniform in "
                                        "[-init_v_bound, init_v_bound]", choices=INITS)
    init_v_bound: float = option(0.02, "bound of the uniform start", low=0.0, high=1e3)
    dropout: float = option(0.0, "dropout on the input of A during training (an Embedding: after its lookup; "
                                 "PEFT's tinylora_dropout)", low=0.0, high=0.99)
    save_projection: bool = option(True, "write P into an exported PEFT folder (false: PEFT draws it again from "
                                         "the seed)")
    targets: str | None = option(None, "comma list of Linear or embedding sites, e.g. q,v (Hugging Face names and "
                                       "site ids work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")


class TinyLoraMethod(TargetedMethod):
    family_group = REPARAMETERISED
    name = "tinylora"
    title = "TinyLoRA"
    config_cls = TinyLoraConfig
    site_kinds = (LINEAR, EMBEDDING)
    claims_kinds = ()  # a click on a Linear means LoRA unless TinyLoRA is already chosen
    targets_default_from = "lora"
    example_space = {**Method.example_space, "r": (1, 2, 4), "u": (1, 4, 13), "weight_tying": (0.0, 0.5, 1.0),
                     "init_weights": INITS, "save_projection": (True, False)}
    peft_space = {"r": (1, 2), "u": (3, 16), "weight_tying": (0.0, 0.5, 1.0), "save_projection": (True, False),
                  "init_weights": (True, "uniform")}
    peft_type = "TINYLORA"
    exchange_tolerance = 1e-5  # the bar for outputs equal to PEFT's
    peft_config_fields = {"u": ((int,), "a whole number"), "weight_tying": ((int, float), "a number"),
                          "projection_seed": ((int,), "a whole number"), "save_projection": ((bool,), "true or false"),
                          "init_v_bound": ((int, float), "a number"), "tinylora_dropout": ((int, float), "a number"),
                          "init_weights": ((bool, str), "true, false or 'uniform'")}
    glyph = "v·P"
    colour = "#6c3483"
    card = MethodCard(
        where="beside a frozen Linear: W0's own top singular directions, mixed by a tiny trained vector through "
              "fixed random r x r matrices",
        intuition="move the weight only inside the subspace it already uses most, and let a handful of numbers "
                  "choose how (v steers a fixed random basis of r x r mixings)",
        advantages="as few as u numbers per group of layers (13 in the paper for a whole model with tying); "
                   "mergeable into W0",
        limitations="an SVD of every adapted weight at build time; the update stays inside rank r of W0's top "
                    "directions; random P, not learned",
        formula="h = W0 x + B (Σ_i v_i P_i) A x,  A = √S_r Vhᵣ,  B = U_r √S_r  (A, B, P frozen)",
    )

    def attach(self, model: StudioModel, config: TinyLoraConfig) -> None:
        sites = self.selected_sites(config, model.base)
        vectors = TinyVectors(groups(len(sites), config.weight_tying)[0], config.u, config.init_weights,
                              config.init_v_bound)
        model.extras["tinylora"] = vectors
        for position, site in enumerate(sites):
            original = model.base.get_submodule(site.module_path)
            model.swap(site.module_path, TinyLoraLayer(
                original, vectors, group_of(position, len(sites), config.weight_tying), config.r, config.u,
                config.projection_seed + position, config.dropout))

    def parameter_count(self, config: TinyLoraConfig, base: FrozenBase) -> int:
        return config.u * groups(len(self.selected_sites(config, base)), config.weight_tying)[0]

    def formula_text(self, config: TinyLoraConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        count, size = groups(len(sites), config.weight_tying)
        return (f"u x groups = {config.u} x {count} = {self.parameter_count(config, base):,} ({len(sites)} "
                f"module(s), {size} per group; A, B and P frozen)")

    def live_formula(self, config: TinyLoraConfig) -> str:
        return f"{self.card.formula}, r = {config.r}, u = {config.u}"

    def code(self, config: TinyLoraConfig) -> str:
        return f"{code_line(TinyLoraLayer.R, 'einsum')}  # then: {code_line(TinyLoraLayer.update, 'F.linear(hidden')}"

    def shape_notes(self, config: TinyLoraConfig, base: FrozenBase, seq_len: int) -> list[str]:
        sites = self.selected_sites(config, base)
        return [self._note(site, position, sites, config) for position, site in enumerate(sites)]

    @staticmethod
    def _note(site: Site, position: int, sites: list[Site], config: TinyLoraConfig) -> str:
        rank = min(config.r, site.in_features, site.out_features)
        if site.kind == EMBEDDING:
            rows, width = site.in_features, site.out_features
            return (f"{site.id}: B {rows}x{rank}, P {config.u}x{rank}x{rank}, A {rank}x{width} (frozen); v group "
                    f"{group_of(position, len(sites), config.weight_tying)}")
        return (f"{site.id}: A {rank}x{site.in_features}, P {config.u}x{rank}x{rank}, B {site.out_features}x{rank} "
                f"(frozen); v group {group_of(position, len(sites), config.weight_tying)}")

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: TinyLoraConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        layers = modules_of(base, TinyLoraLayer)
        tensors: dict[str, torch.Tensor] = {f"{V_PREFIX}{key}": v
                                            for key, v in layers[0][1].vectors.tinylora_v.items()}
        targets = []
        for path, layer in layers:
            name = hf_name(path, base)
            targets.append(name)
            for leaf in LEAVES if config.save_projection else LEAVES[:2]:  # A and B always: PEFT saves them
                tensors[f"{KEY_PREFIX}{name}.{leaf}"] = getattr(layer, leaf)
        settings = {"r": config.r, "u": config.u, "weight_tying": config.weight_tying,
                    "projection_seed": config.projection_seed, "save_projection": config.save_projection,
                    "init_v_bound": config.init_v_bound, "target_modules": targets,
                    "tinylora_dropout": config.dropout,
                    "fan_in_fan_out": any(layer.fan_in_fan_out for _, layer in layers), "bias": "none",
                    "init_weights": True if config.init_weights == "zeros" else "uniform",
                    "layers_to_transform": None, "layers_pattern": None}
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        if peft_config.get("bias", "none") != "none":
            raise AdapterFileError(f"{where}: bias {peft_config.get('bias')!r} trains base biases too; only 'none'")
        refuse_set(peft_config, where, {"layers_pattern": "the studio selects layers by index on its own bases"})
        flag(peft_config, "fan_in_fan_out", where, False)  # PEFT sets it from the layer type itself
        init = peft_config.get("init_weights", True)
        if init not in (True, False, "uniform"):
            raise AdapterFileError(f"{where}: init_weights must be true, false or 'uniform' (got {str(init)[:30]!r})")
        options: dict[str, Any] = {
            "r": whole(peft_config, "r", where, 2, high=4096), "u": whole(peft_config, "u", where, 64, high=2**20),
            "weight_tying": number(peft_config, "weight_tying", where, 0.0, 0.0, 1.0),
            "projection_seed": whole(peft_config, "projection_seed", where, 42, low=0, high=2**31 - 2**20),
            "save_projection": flag(peft_config, "save_projection", where, True),
            "init_v_bound": number(peft_config, "init_v_bound", where, 0.02, 0.0, 1e3),
            "dropout": number(peft_config, "tinylora_dropout", where, 0.0, 0.0, 1.0, high_open=True),
            # how v started (false: PEFT left it uninitialised); it is loaded, so only a further run differs
            "init_weights": "uniform" if init == "uniform" else "zeros"}
        tensors = dict(tensors)
        studio: dict[str, torch.Tensor] = {}
        for key in [k for k in tensors if k.startswith(V_PREFIX)]:
            vector = tensors.pop(key)
            group = key.removeprefix(V_PREFIX)
            if not group.isdigit() or vector.dim() != 1 or vector.shape[0] != options["u"]:
                raise unknown(where, key, f"should be a vector v of length u = {options['u']} for a numbered group")
            studio[f"extras.tinylora.tinylora_v.{int(group)}"] = vector
        if not studio:
            raise AdapterFileError(f"{where}: no {V_PREFIX}<group> vectors: not a TinyLoRA adapter")
        leaves = LEAVES if options["save_projection"] else LEAVES[:2]
        modules = split_module_keys(tensors, LEAVES, where, "a TinyLoRA")
        for module, parts in modules.items():
            if set(parts) != set(leaves):
                raise unknown(where, module, f"needs {', '.join(leaves)} (save_projection is "
                                             f"{str(options['save_projection']).lower()})")
            expect_shape(parts["tinylora_A"], 2, f"{where}: {module}.tinylora_A", AdapterFileError, "(r, in)")
            expect_shape(parts["tinylora_B"], 2, f"{where}: {module}.tinylora_B", AdapterFileError, "(out, r)")
            rank = parts["tinylora_A"].shape[0]
            if parts["tinylora_B"].shape[1] != rank or rank > options["r"]:
                raise unknown(where, module, f"tinylora_A / tinylora_B have ranks {rank} / "
                                             f"{parts['tinylora_B'].shape[1]}; r is {options['r']}")
            if "tinylora_P" in parts and tuple(parts["tinylora_P"].shape) != (options["u"], rank, rank):
                raise unknown(where, f"{module}.tinylora_P", f"has shape {tuple(parts['tinylora_P'].shape)}; "
                                                             f"expected (u, r, r) = ({options['u']}, {rank}, {rank})")
            studio.update({f"{module}.{leaf}": tensor for leaf, tensor in parts.items()})
        return options, studio

    def peft_check_model(self, base: FrozenBase, options: dict[str, Any], where: str) -> None:
        """The frozen P follows the seed and each module's position when the file does not hold it; the groups
        follow weight_tying: both must be the adapter's."""
        layers = modules_of(base, TinyLoraLayer)
        for position, (path, layer) in enumerate(layers):
            if layer.group != group_of(position, len(layers), options["weight_tying"]):
                raise AdapterFileError(f"{where}: weight_tying {options['weight_tying']:g} puts {path} in another "
                                       "group of v than the model does")
            if not options["save_projection"] and not torch.equal(
                    layer.tinylora_P, projection(options["u"], layer.r, options["projection_seed"] + position)):
                raise AdapterFileError(f"{where}: the model's P at {path} is not the one projection_seed "
                                       f"{options['projection_seed']} draws for it")
